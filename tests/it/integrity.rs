//! API and store integrity through the binary: concurrent updates serialized (none lost) on
//! SQLite and PostgreSQL, bad input a 400 that echoes nothing and writes nothing, store
//! outages a 503 that logs no one out, and FusionAuth's semantics (validate without leeway,
//! users by login id, 404 under the plugins' prefixes).

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use reqwest::blocking::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// A request with the API key.
fn api(method: reqwest::Method, gw: &TestGateway, path: &str) -> reqwest::blocking::RequestBuilder {
    client()
        .request(method, gw.url(path))
        .header("Authorization", API_KEY)
}

/// Creates an ExternalJWT provider for the kit's application; its id.
fn provider(gw: &TestGateway) -> Uuid {
    let doc = json!({"identityProvider": {
        "name": format!("idp {}", Uuid::new_v4()),
        "type": "ExternalJWT",
        "enabled": true,
        "headerKeyParameter": "kid",
        "keys": {"k": "a-secret-of-at-least-thirty-two-bytes-0123"},
        "applicationConfiguration": {APP: {"enabled": true}},
    }});
    let body = check_status(
        api(reqwest::Method::POST, gw, "/api/identity-provider")
            .json(&doc)
            .send()
            .expect("send"),
        200,
    );
    Uuid::parse_str(body["identityProvider"]["id"].as_str().expect("id")).expect("uuid")
}

/// Ten parallel PATCHes adding a domain each, and one turning `debug` on, twenty times over:
/// every one answers 200 and every change is kept.
fn concurrent_patches_are_all_kept(gw: &TestGateway) {
    let id = provider(gw);
    let path = format!("/api/identity-provider/{id}");
    let mut expected: Vec<String> = Vec::new();
    for round in 0..20 {
        let domains: Vec<String> = (0..10).map(|i| format!("r{round}-{i}.example")).collect();
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for domain in &domains {
                let path = path.clone();
                handles.push(scope.spawn(move || {
                    api(reqwest::Method::PATCH, gw, &path)
                        .json(&json!({"identityProvider": {"domains": [domain]}}))
                        .send()
                        .expect("send")
                        .status()
                        .as_u16()
                }));
            }
            let debug = scope.spawn(|| {
                api(reqwest::Method::PATCH, gw, &path)
                    .header("Content-Type", "application/merge-patch+json")
                    .body(json!({"identityProvider": {"debug": round % 2 == 0}}).to_string())
                    .send()
                    .expect("send")
                    .status()
                    .as_u16()
            });
            for handle in handles {
                assert_eq!(handle.join().expect("join"), 200);
            }
            assert_eq!(debug.join().expect("join"), 200);
        });
        expected.extend(domains);
        let body = check_status(
            api(reqwest::Method::GET, gw, &path).send().expect("send"),
            200,
        );
        let mut stored: Vec<String> = body["identityProvider"]["domains"]
            .as_array()
            .expect("domains")
            .iter()
            .map(|d| d.as_str().expect("text").to_string())
            .collect();
        stored.sort();
        let mut want = expected.clone();
        want.sort();
        assert_eq!(stored, want, "round {round}: an update was lost");
        assert_eq!(body["identityProvider"]["debug"], json!(round % 2 == 0));
    }
}

#[test]
fn concurrent_patches_lose_nothing_on_sqlite() {
    let gw = TestGateway::start();
    concurrent_patches_are_all_kept(&gw);
}

#[test]
fn concurrent_patches_lose_nothing_on_postgres() {
    let db = super::postgres::Database::create();
    let gw = TestGateway::start_with(Options {
        store_url: Some(db.url.clone()),
        ..Default::default()
    });
    concurrent_patches_are_all_kept(&gw);
}

/// A value that must never come back in an answer.
const SECRET: &str = "hunter2-SECRET-a9f3";

/// Sends `body` (raw bytes) with `method` to `path`, with the API key.
fn send_raw(
    gw: &TestGateway,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    api(method, gw, path)
        .header("Content-Type", content_type)
        .body(body.to_vec())
        .send()
        .expect("send")
}

/// A gateway on a database of its own on the test PostgreSQL server, with these options.
fn on_postgres(options: Options) -> (TestGateway, super::postgres::Database) {
    let db = super::postgres::Database::create();
    let gw = TestGateway::start_with(Options {
        store_url: Some(db.url.clone()),
        ..options
    });
    (gw, db)
}

#[test]
fn bad_input_is_a_400_that_echoes_nothing_and_writes_nothing_on_sqlite() {
    bad_input_is_a_400_that_echoes_nothing_and_writes_nothing(&TestGateway::start());
}

#[test]
fn bad_input_is_a_400_that_echoes_nothing_and_writes_nothing_on_postgres() {
    let (gw, _db) = on_postgres(Options::default());
    bad_input_is_a_400_that_echoes_nothing_and_writes_nothing(&gw);
}

fn bad_input_is_a_400_that_echoes_nothing_and_writes_nothing(gw: &TestGateway) {
    let id = provider(gw);
    let lambda = check_status(
        api(reqwest::Method::POST, gw, "/api/lambda")
            .json(
                &json!({"lambda": {"name": "l", "type": "ExternalJWTReconcile",
                "body": "function reconcile(user, registration, jwt) {}"}}),
            )
            .send()
            .expect("send"),
        200,
    )["lambda"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let before_provider = gw_get(gw, &format!("/api/identity-provider/{id}"));
    let before_lambda = gw_get(gw, &format!("/api/lambda/{lambda}"));
    // Bodies wrong for every route: not an object, duplicate keys, not UTF-8, not JSON, too
    // deep, a number out of range.
    let deep = "[".repeat(300) + &"]".repeat(300);
    let generic: Vec<Vec<u8>> = vec![
        b"[]".to_vec(),
        format!("\"{SECRET}\"").into_bytes(),
        b"1".to_vec(),
        b"null".to_vec(),
        b"true".to_vec(),
        format!("{{\"{SECRET}\": 1, \"{SECRET}\": 2}}").into_bytes(),
        b"{\"claims\": {\"sub\": \"\xff\xfe\"}}".to_vec(),
        format!("{{\"{SECRET}\": ").into_bytes(),
        deep.into_bytes(),
        b"{\"timeToLiveInSeconds\": 1e999}".to_vec(),
    ];
    // Fields of the wrong type, per route, each holding the secret-looking value somewhere.
    let s = SECRET;
    let routes: Vec<(&str, String, Vec<String>)> = vec![
        (
            "POST",
            "/api/jwt/vend".into(),
            vec![
                format!(r#"{{"claims": "{s}"}}"#),
                format!(r#"{{"timeToLiveInSeconds": "{s}"}}"#),
                format!(r#"{{"keyId": "{s}"}}"#),
            ],
        ),
        (
            "POST",
            "/api/jwt/refresh".into(),
            vec![
                format!(r#"{{"refreshToken": ["{s}"]}}"#),
                format!(r#"{{"refreshToken": 5, "token": "{s}"}}"#),
            ],
        ),
        (
            "POST",
            "/api/jwt/reconcile".into(),
            vec![format!(
                r#"{{"identityProviderId": "{s}", "encodedJWT": 5, "applicationId": "{APP}"}}"#
            )],
        ),
        (
            "POST",
            "/api/identity-provider".into(),
            vec![
                format!(r#"{{"identityProvider": "{s}"}}"#),
                format!(r#"{{"identityProvider": {{"name": 5, "type": "{s}"}}}}"#),
            ],
        ),
        (
            "PUT",
            format!("/api/identity-provider/{id}"),
            vec![
                format!(r#"{{"identityProvider": "{s}"}}"#),
                format!(
                    r#"{{"identityProvider": {{"name": ["x"], "type": "ExternalJWT", "keys": "{s}"}}}}"#
                ),
            ],
        ),
        (
            "PATCH",
            format!("/api/identity-provider/{id}"),
            vec![
                format!(r#"{{"identityProvider": "{s}"}}"#),
                format!(r#"{{"identityProvider": {{"type": "{s}"}}}}"#),
                format!(r#"{{"identityProvider": {{"domains": "{s}"}}}}"#),
            ],
        ),
        (
            "POST",
            "/api/identity-provider/login".into(),
            vec![
                format!(r#"{{"identityProviderId": "{s}", "encodedJWT": 5}}"#),
                format!(
                    r#"{{"applicationId": ["{s}"], "identityProviderId": "{id}", "encodedJWT": "{s}"}}"#
                ),
            ],
        ),
        (
            "POST",
            "/api/identity-provider/link".into(),
            vec![format!(r#"{{"identityProviderId": "{s}", "userId": 5}}"#)],
        ),
        (
            "POST",
            "/api/lambda".into(),
            vec![
                format!(r#"{{"lambda": "{s}"}}"#),
                format!(r#"{{"lambda": {{"body": 5, "type": "{s}"}}}}"#),
            ],
        ),
        (
            "PUT",
            format!("/api/lambda/{lambda}"),
            vec![format!(r#"{{"lambda": {{"name": 5, "body": ["{s}"]}}}}"#)],
        ),
        (
            "PATCH",
            format!("/api/lambda/{lambda}"),
            vec![
                format!(r#"{{"lambda": {{"body": ["{s}"]}}}}"#),
                format!(r#"{{"lambda": {{"type": "{s}"}}}}"#),
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (method, path, specific) in &routes {
        let specific = specific.iter().map(|b| b.clone().into_bytes());
        for body in generic.iter().cloned().chain(specific) {
            let body = &body;
            let response = send_raw(gw, method, path, "application/json", body);
            let status = response.status().as_u16();
            let text = response.text().unwrap_or_default();
            let shown = String::from_utf8_lossy(body);
            let errors: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let has_errors =
                errors.get("generalErrors").is_some() || errors.get("fieldErrors").is_some();
            if status != 400 || !has_errors || text.contains(SECRET) {
                failures.push(format!("{method} {path} {shown}: {status} {text}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Ids that are not UUIDs.
    for path in [
        "/api/jwt/refresh/not-a-uuid",
        "/api/identity-provider/not-a-uuid",
        "/api/lambda/not-a-uuid",
        "/api/user/not-a-uuid",
    ] {
        let response = api(reqwest::Method::GET, gw, path).send().expect("send");
        assert_eq!(response.status().as_u16(), 400, "{path}");
    }
    // Nothing was written.
    assert_eq!(
        gw_get(gw, &format!("/api/identity-provider/{id}")),
        before_provider
    );
    assert_eq!(gw_get(gw, &format!("/api/lambda/{lambda}")), before_lambda);
}

/// `GET path` with the API key, as JSON (200 expected).
fn gw_get(gw: &TestGateway, path: &str) -> Value {
    check_status(
        api(reqwest::Method::GET, gw, path).send().expect("send"),
        200,
    )
}

#[test]
fn json_patch_work_is_bounded_and_deep_documents_are_refused() {
    let gw = TestGateway::start();
    let id = provider(&gw);
    let path = format!("/api/identity-provider/{id}");
    let before = gw_get(&gw, &path);
    // Twenty copies doubling a document: refused as it grows, quickly, nothing written.
    let mut ops = vec![
        json!({"op": "add", "path": "/identityProvider/data", "value": {"a": "x".repeat(2000)}}),
    ];
    for i in 0..20 {
        ops.push(json!({"op": "copy", "from": "/identityProvider/data", "path": format!("/identityProvider/data/c{i}")}));
    }
    let started = Instant::now();
    let response = send_raw(
        &gw,
        "PATCH",
        &path,
        "application/json-patch+json",
        json!(ops).to_string().as_bytes(),
    );
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A patch that deepens `data` past the limit.
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!({ "d": deep });
    }
    let ops = json!([{"op": "add", "path": "/identityProvider/data", "value": deep}]);
    let response = send_raw(
        &gw,
        "PATCH",
        &path,
        "application/json-patch+json",
        ops.to_string().as_bytes(),
    );
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(gw_get(&gw, &path), before);
    // Listing and lookup still work.
    gw_get(&gw, "/api/identity-provider");
}

#[test]
fn validate_has_no_leeway_while_the_proxy_has_on_sqlite() {
    validate_has_no_leeway_while_the_proxy_has(&TestGateway::start_with(Options {
        leeway_seconds: 30,
        ..Default::default()
    }));
}

#[test]
fn validate_has_no_leeway_while_the_proxy_has_on_postgres() {
    let (gw, _db) = on_postgres(Options {
        leeway_seconds: 30,
        ..Default::default()
    });
    validate_has_no_leeway_while_the_proxy_has(&gw);
}

fn validate_has_no_leeway_while_the_proxy_has(gw: &TestGateway) {
    let mut just_expired = claims(Uuid::new_v4(), APP, &["user"]);
    just_expired["exp"] = json!(now() - 1);
    let token = gw.token(Algorithm::RS256, &just_expired);
    assert_eq!(
        gw.get_as("/app", &token).status().as_u16(),
        200,
        "proxy leeway"
    );
    let response = gw.get_as("/api/jwt/validate", &token);
    assert_eq!(response.status().as_u16(), 401);
    let fresh = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    assert_eq!(
        gw.get_as("/api/jwt/validate", &fresh).status().as_u16(),
        200
    );
}

#[test]
fn users_are_found_by_login_id_on_sqlite() {
    users_are_found_by_login_id(&TestGateway::start());
}

#[test]
fn users_are_found_by_login_id_on_postgres() {
    let (gw, _db) = on_postgres(Options::default());
    users_are_found_by_login_id(&gw);
}

fn users_are_found_by_login_id(gw: &TestGateway) {
    let session = gw.login("login-id@example.com", &["user"]);
    for query in [
        "loginId=login-id@example.com",
        "loginId=LOGIN-ID@example.com",
        "loginId=login-id@example.com&loginIdTypes=email",
        "loginId=login-id@example.com&loginIdTypes=email,username",
        "loginId=login-id@example.com&loginIdTypes=username&loginIdTypes=email",
    ] {
        let body = gw_get(gw, &format!("/api/user?{query}"));
        assert_eq!(body["user"]["id"], session.user_id, "{query}");
    }
    let response = api(
        reqwest::Method::GET,
        gw,
        "/api/user?loginId=login-id@example.com&loginIdTypes=username",
    )
    .send()
    .expect("send");
    assert_eq!(response.status().as_u16(), 404);
    let response = api(
        reqwest::Method::GET,
        gw,
        "/api/user?loginId=x&loginIdTypes=shoeSize",
    )
    .send()
    .expect("send");
    assert_eq!(response.status().as_u16(), 400);
}

#[test]
fn unknown_paths_under_the_plugins_prefixes_are_404_and_never_proxied() {
    let gw = TestGateway::start();
    for path in [
        "/api/jwt/nope",
        "/api/jwt",
        "/api/jwt/refresh/a/b",
        "/api/identity-provider/a/b/c",
        "/api/user/x/y",
        "/api/lambda/x/y",
        "/api/system/nope",
    ] {
        let response = client().get(gw.url(path)).send().expect("send");
        assert_eq!(response.status().as_u16(), 404, "{path}");
    }
    // Other paths are the routes' business.
    let response = client().get(gw.url("/apix")).send().expect("send");
    assert_eq!(response.status().as_u16(), 401);
}

/// The answer to a path under a plugin's prefix that no plugin serves is FusionAuth's: an
/// empty 404, with no Errors JSON and no challenge, whatever credentials come with it.
#[test]
fn an_unknown_api_path_is_the_apis_empty_404() {
    let gw = TestGateway::start();
    let session = gw.login("unknown-path@example.com", &[]);
    for request in [
        client().get(gw.url("/api/jwt/nope")),
        client().post(gw.url("/api/identity-provider/a/b/c")),
        client()
            .get(gw.url("/api/user/x/y"))
            .bearer_auth(&session.token),
        // FusionAuth's endpoints for interactive logins and connection tests are not hosted:
        // not read as a provider id.
        client()
            .post(gw.url("/api/identity-provider/start"))
            .header("Authorization", API_KEY)
            .json(&serde_json::json!({"identityProviderId": Uuid::new_v4()})),
        client()
            .get(gw.url("/api/identity-provider/test?connectionTestId=x"))
            .header("Authorization", API_KEY),
        client()
            .post(gw.url("/api/identity-provider/test"))
            .header("Authorization", API_KEY)
            .json(&serde_json::json!({})),
        client()
            .delete(gw.url("/api/identity-provider/start"))
            .header("Authorization", API_KEY),
    ] {
        let response = request.send().expect("send");
        assert_eq!(response.status().as_u16(), 404);
        assert!(response.headers().get("content-type").is_none());
        assert!(response.headers().get("www-authenticate").is_none());
        assert_eq!(response.text().expect("body"), "");
    }
}

/// A gateway whose `/app` route refreshes one-time-use tokens, on `store_url` (its SQLite file
/// when `None`).
fn refreshing_gateway(store_url: Option<String>) -> TestGateway {
    TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse"
            .into(),
        extra_routes: format!(
            "  - path: /app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true}}\n"
        ),
        store_url,
        ..Default::default()
    })
}

/// While the store is out: a refresh at the edge is a 503 with `Retry-After` that keeps the
/// cookies, `POST /api/jwt/refresh` a 503, a valid access token still passes, `/health` says
/// so. Then `restore`, and the same refresh token works: nothing was consumed.
fn outage_logs_no_one_out(gw: &TestGateway, cut: impl FnOnce(), restore: impl FnOnce()) {
    let session = gw.login("outage@example.com", &["user"]);
    let mut expired = claims(
        Uuid::parse_str(&session.user_id).expect("uuid"),
        APP,
        &["user"],
    );
    expired["exp"] = json!(now() - 30);
    let expired = gw.token(Algorithm::RS256, &expired);
    let valid = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let cookie = format!(
        "access_token={expired}; refresh_token={}",
        session.refresh_token
    );
    let refresh_at_edge = || {
        client()
            .get(gw.url("/app/page"))
            .header("Cookie", &cookie)
            .send()
            .expect("send")
    };
    cut();
    let response = refresh_at_edge();
    assert_eq!(response.status().as_u16(), 503);
    assert!(response.headers().get("retry-after").is_some());
    assert!(
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .next()
            .is_none(),
        "cookies were touched during an outage"
    );
    let response = client()
        .post(gw.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": session.refresh_token}))
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 503);
    let errors: Value = response.json().expect("Errors JSON");
    assert!(errors["generalErrors"].is_array(), "{errors}");
    assert_eq!(gw.get_as("/app/page", &valid).status().as_u16(), 200);
    assert_eq!(
        client()
            .get(gw.url("/health"))
            .send()
            .expect("send")
            .status()
            .as_u16(),
        503
    );
    restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    let response = loop {
        let response = refresh_at_edge();
        if response.status().as_u16() != 503 || Instant::now() > deadline {
            break response;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        response.status().as_u16(),
        200,
        "the session survived the outage"
    );
}

#[test]
fn a_locked_sqlite_store_is_an_outage_not_a_logout() {
    let gw = refreshing_gateway(None);
    let lock = std::sync::Mutex::new(None);
    outage_logs_no_one_out(
        &gw,
        || {
            let conn = rusqlite::Connection::open(gw.store_path()).expect("open");
            conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
            *lock.lock().expect("lock") = Some(conn);
        },
        || {
            if let Some(conn) = lock.lock().expect("lock").take() {
                conn.execute_batch("ROLLBACK").expect("unlock");
            }
        },
    );
}

#[test]
fn a_postgres_outage_is_not_a_logout() {
    let db = super::postgres::Database::create();
    let link = CuttableLink::start("127.0.0.1:5432".parse().expect("addr"));
    let url = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", link.port));
    assert_ne!(url, db.url, "the test database is on 127.0.0.1:5432");
    let gw = refreshing_gateway(Some(url));
    outage_logs_no_one_out(&gw, || link.cut(), || link.restore());
}

/// Concurrent logins of one external user, each bringing other claims into the user's data:
/// every one succeeds, one user and one link come of them, and the user's data is one
/// login's whole (never a mix, never a lost write of a half-finished login).
#[test]
fn concurrent_logins_of_one_user_are_serialized() {
    use super::identity_provider::{ext_claims, ExternalKey, Idp};
    let t = Idp::start();
    let key = ExternalKey::generate(Algorithm::ES256);
    let idp = t.provider(json!({
        "keys": {"k": key.verifying},
        "linkingStrategy": "LinkByEmail",
        "claimMap": {"nonce": "UserData"},
    }));
    for round in 0..5 {
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let token = key.sign(
                        Some("k"),
                        None,
                        &ext_claims(
                            "ext-race",
                            Some("race@example.com"),
                            json!({"nonce": format!("{round}-{i}")}),
                        ),
                    );
                    let t = &t;
                    scope.spawn(move || t.login(idp, &token, json!({})).status().as_u16())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        });
        assert!(
            statuses.iter().all(|&s| s == 200),
            "round {round}: {statuses:?}"
        );
    }
    let users = check_status(t.get("/api/user?email=race@example.com"), 200);
    let user_id = users["user"]["id"].as_str().expect("id").to_string();
    let nonce = users["user"]["data"]["nonce"].as_str().expect("nonce");
    assert!(nonce.starts_with("4-"), "the last round's data: {nonce}");
    let links = check_status(
        t.get(&format!("/api/identity-provider/link?userId={user_id}")),
        200,
    );
    assert_eq!(
        links["identityProviderLinks"]
            .as_array()
            .expect("links")
            .len(),
        1
    );
}

/// Within the race window a retired one-time-use value yields the rotation's outcome — the same
/// refresh token and the same access token — on this node and on another sharing the store;
/// after it, with a grace period of 0, it is refused as FusionAuth refuses it.
#[test]
fn the_race_window_answers_a_retired_value_with_the_same_pair_then_refuses() {
    let options = || {
        Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse"
            .into(),
        race_window_seconds: Some(3),
        extra_routes: format!(
            "  - path: /app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true}}\n"
        ),
        ..Default::default()
    }
    };
    let gw = TestGateway::start_with(options());
    let peer = gw.start_peer(&options());
    let session = gw.login("race-window@example.com", &["user"]);
    let refresh = |node: &TestGateway, value: &str| {
        client()
            .post(node.url("/api/jwt/refresh"))
            .json(&json!({"refreshToken": value}))
            .send()
            .expect("send")
    };
    let first = check_status(refresh(&gw, &session.refresh_token), 200);
    assert_ne!(first["refreshToken"], session.refresh_token);
    // The same value again, on this node and on the other: the same pair.
    for node in [&gw, &peer] {
        let again = check_status(refresh(node, &session.refresh_token), 200);
        assert_eq!(again["refreshToken"], first["refreshToken"]);
        assert_eq!(again["token"], first["token"]);
    }
    // At the edge of the other node, with the retired value as a cookie: the same pair.
    let mut expired = claims(
        Uuid::parse_str(&session.user_id).expect("uuid"),
        APP,
        &["user"],
    );
    expired["exp"] = json!(now() - 30);
    let expired = gw.token(Algorithm::RS256, &expired);
    let response = client()
        .get(peer.url("/app/x"))
        .header(
            "Cookie",
            format!(
                "access_token={expired}; refresh_token={}",
                session.refresh_token
            ),
        )
        .send()
        .expect("send");
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert_eq!(response.status().as_u16(), 200);
    let new_refresh = first["refreshToken"].as_str().expect("refresh");
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with(&format!("refresh_token={new_refresh};"))),
        "{cookies:?}"
    );
    // After the window: refused (grace 0), and the new value still works.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(refresh(&gw, &session.refresh_token).status().as_u16(), 400);
    check_status(refresh(&gw, new_refresh), 200);
}

/// Logs never hold a credential, at any level: the engine's header dumps are not written even
/// with `RUST_LOG=trace`, and a request neither listener can read gets a 400 and a log line
/// that names its kind only.
#[test]
fn credentials_never_reach_the_log_at_any_level() {
    let gw = TestGateway::start_with(Options {
        rust_log: "trace".into(),
        ..Options::default()
    });
    let session = gw.login("logs@example.com", &["user"]);
    let http = client();
    let secret_cookie = "sessionsecret-0d9f8e7a6b5c4d3e2f1a";
    // A proxied request, an API request, a refresh, and a refused token.
    let _ = http
        .get(gw.url("/hello"))
        .bearer_auth(&session.token)
        .header("Cookie", format!("theme=1; other={secret_cookie}"))
        .send()
        .expect("send");
    let _ = http
        .post(gw.url("/api/jwt/refresh"))
        .json(&serde_json::json!({"refreshToken": session.refresh_token}))
        .send()
        .expect("send");
    let _ = http
        .get(gw.url("/hello"))
        .header("Cookie", format!("refresh_token={}", session.refresh_token))
        .send()
        .expect("send");
    // Requests that cannot be read, with credentials in their header block.
    let malformed = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nCookie: other={secret_cookie}\r\nAuthorization: Bearer {}\r\nBad Header\r\n\r\n",
        session.token
    );
    for port in [gw.port, gw.admin_port] {
        let (status, response) = raw_http(port, malformed.as_bytes());
        assert_eq!(status, 400, "port {port}: {response}");
    }
    let (status, response) = raw_http(gw.admin_port, malformed.as_bytes());
    assert_eq!(status, 400);
    assert_eq!(
        raw_body(&response)["generalErrors"][0]["code"],
        "[MalformedRequest]"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = gw.log();
    assert!(!log.is_empty());
    for secret in [
        session.token.as_str(),
        session.refresh_token.as_str(),
        secret_cookie,
    ] {
        assert!(
            !log.contains(secret),
            "a credential reached the log:\n{}",
            log.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
