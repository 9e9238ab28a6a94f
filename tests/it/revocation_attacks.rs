//! Revocations and key changes attacked through the real binary, against tokens the
//! verified-token cache already holds: every form of `DELETE /api/jwt/refresh` refuses the
//! access tokens it covers at once (at the proxy and by `/api/jwt/validate`) and no other; a
//! reload that removes a key, replaces a key's material under the same id, moves a tenant's
//! issuer, or changes a route's roles or identity headers is judged on the next hit; and on two
//! gateways sharing a store, a revocation through one refuses a token cached on the other within
//! what the README promises (250 ms pushed on PostgreSQL, about a second polled on SQLite).

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::Value;
use uuid::Uuid;

use super::kit::*;
use super::postgres::{options as pg_options, Database};
use super::reload::reload_by_admin;

/// A route of the other application, so its tokens can be tried at the proxy too.
const OTHER_APP_ROUTE: &str = "  - path: /other-app\n    upstream: $UPSTREAM\n    auth: {applicationId: 4c219e58-ed0e-4b18-ad48-f4f92793ae32}\n";

fn options() -> Options {
    assert!(OTHER_APP_ROUTE.contains(OTHER_APP));
    Options {
        extra_routes: OTHER_APP_ROUTE.into(),
        ..Options::default()
    }
}

/// A protected path of `application`'s on the gateway's routes.
fn path_of(application: &str) -> &'static str {
    if application == APP {
        "/x"
    } else {
        "/other-app/x"
    }
}

/// The status of `GET path` with `token` as a Bearer token.
fn status(gw: &TestGateway, path: &str, token: &str) -> u16 {
    gw.get_as(path, token).status().as_u16()
}

/// The status of `GET /api/jwt/validate` with `token`.
fn validate(gw: &TestGateway, token: &str) -> u16 {
    gw.get_as("/api/jwt/validate", token).status().as_u16()
}

/// A token that `gw` accepts and now holds in its verified-token cache (asked twice).
struct Cached {
    token: String,
    path: &'static str,
}

impl Cached {
    fn of(gw: &TestGateway, session: &Session, application: &str) -> Cached {
        let cached = Cached {
            token: session.token.clone(),
            path: path_of(application),
        };
        cached.assert_accepted(gw, "before");
        cached
    }

    fn assert_accepted(&self, gw: &TestGateway, when: &str) {
        for _ in 0..2 {
            assert_eq!(status(gw, self.path, &self.token), 200, "{when}: proxy");
            assert_eq!(validate(gw, &self.token), 200, "{when}: validate");
        }
    }

    fn assert_refused(&self, gw: &TestGateway, when: &str) {
        assert_eq!(status(gw, self.path, &self.token), 401, "{when}: proxy");
        assert_eq!(validate(gw, &self.token), 401, "{when}: validate");
    }
}

/// `DELETE /api/jwt/refresh{query}` with the API key (and `form` as a form body when given);
/// the status.
fn revoke(gw: &TestGateway, query: &str, form: Option<String>) -> u16 {
    let mut request = client()
        .delete(gw.url(&format!("/api/jwt/refresh{query}")))
        .header("Authorization", API_KEY);
    if let Some(form) = form {
        request = request
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form);
    }
    request.send().expect("send").status().as_u16()
}

/// A revocation request made from the sessions: its path and query, and its form body.
type Revocation = fn(&[Session]) -> (String, Option<String>);

fn encoded(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[test]
fn every_revocation_form_refuses_the_cached_tokens_it_covers_at_once_and_no_other() {
    let gw = TestGateway::start_with(options());
    // (form, the sessions it covers, the sessions it spares), each on fresh users.
    let forms: [(&str, Revocation); 5] = [
        ("by id", |s| (format!("/{}", s[0].refresh_token_id), None)),
        ("by value", |s| {
            (format!("?token={}", encoded(&s[0].refresh_token)), None)
        }),
        ("by value in a form body", |s| {
            (
                String::new(),
                Some(format!("token={}", encoded(&s[0].refresh_token))),
            )
        }),
        ("by user", |s| (format!("?userId={}", s[0].user_id), None)),
        ("by user and application", |s| {
            (
                format!("?userId={}&applicationId={APP}", s[0].user_id),
                None,
            )
        }),
    ];
    for (name, query) in forms {
        let tag = Uuid::new_v4().simple().to_string();
        let (a, b) = (
            format!("a-{tag}@example.com"),
            format!("b-{tag}@example.com"),
        );
        // Two sessions of user A in the application, one in the other application, one of B.
        let sessions = [
            gw.login(&a, &["user"]),
            gw.login(&a, &["user"]),
            gw.login_to(OTHER_APP, &a, &[]),
            gw.login(&b, &["user"]),
        ];
        let cached: Vec<Cached> = sessions
            .iter()
            .zip([APP, APP, OTHER_APP, APP])
            .map(|(s, app)| Cached::of(&gw, s, app))
            .collect();
        let (path, form) = query(&sessions);
        assert_eq!(revoke(&gw, &path, form), 200, "{name}");
        // What each form covers (README, *At the edge*): a session, all of a user's, or a
        // user's in one application.
        let covered: &[usize] = match name {
            "by user" => &[0, 1, 2],
            "by user and application" => &[0, 1],
            _ => &[0],
        };
        for (i, token) in cached.iter().enumerate() {
            if covered.contains(&i) {
                token.assert_refused(&gw, &format!("{name}: session {i}"));
            } else {
                token.assert_accepted(&gw, &format!("{name}: session {i}"));
            }
        }
        // A login right after the revocation works (dated after it).
        let again = gw.login(&a, &["user"]);
        Cached::of(&gw, &again, APP).assert_accepted(&gw, &format!("{name}: after"));
    }
}

#[test]
fn revoking_an_application_refuses_every_users_cached_token_of_it_and_spares_the_other_application()
{
    let gw = TestGateway::start_with(options());
    let tag = Uuid::new_v4().simple().to_string();
    let users = [
        format!("c-{tag}@example.com"),
        format!("d-{tag}@example.com"),
    ];
    let in_app: Vec<Cached> = users
        .iter()
        .map(|u| Cached::of(&gw, &gw.login(u, &["user"]), APP))
        .collect();
    let other = Cached::of(&gw, &gw.login_to(OTHER_APP, &users[0], &[]), OTHER_APP);
    // A token no refresh token stands behind (signed outside, no `sid`): the user and the
    // application are what a revocation names.
    let user = Uuid::new_v4();
    let plain = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));
    assert_eq!(status(&gw, "/x", &plain), 200);
    assert_eq!(revoke(&gw, &format!("?applicationId={APP}"), None), 200);
    for token in &in_app {
        token.assert_refused(&gw, "application revoked");
    }
    assert_eq!(status(&gw, "/x", &plain), 401, "a token without sid");
    other.assert_accepted(&gw, "the other application");
}

/// The YAML block of key `id` in `config` (from its `- id:` line to the next item).
fn key_block(config: &str, id: Uuid) -> String {
    let start = config
        .find(&format!("  - id: {id}\n"))
        .expect("the key's block");
    let rest = &config[start + 1..];
    let end = rest.find("\n  - ").map(|i| i + 2).unwrap_or(rest.len());
    config[start..start + end].to_string()
}

/// A token of the main application for a new user with only the `admin` role, signed with
/// `alg`.
fn admin_token(gw: &TestGateway, alg: Algorithm) -> String {
    gw.token(alg, &claims(Uuid::new_v4(), APP, &["admin"]))
}

/// The upstream's echo of `GET path` with `token`: status and body.
fn echo(gw: &TestGateway, path: &str, token: &str) -> (u16, Value) {
    let response = gw.get_as(path, token);
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn a_reload_judges_cached_tokens_by_the_new_keys_issuers_and_routes_at_once() {
    let gw = TestGateway::start_with(options());
    let (es, ed) = (
        gw.keys.get(Algorithm::ES256).0,
        gw.keys.get(Algorithm::EdDSA).0,
    );
    let removed = admin_token(&gw, Algorithm::ES256);
    let replaced = admin_token(&gw, Algorithm::EdDSA);
    let kept = admin_token(&gw, Algorithm::PS384);
    for token in [&removed, &replaced, &kept] {
        for path in ["/x", "/admin/x"] {
            assert_eq!(status(&gw, path, token), 200, "before, {path}");
            assert_eq!(status(&gw, path, token), 200, "before (cached), {path}");
        }
    }
    let (_, body) = echo(&gw, "/x", &kept);
    assert!(body["headers"]["x-user-id"].is_string(), "{body}");

    // The new file: the ES256 key gone, the EdDSA key's id on new material, `/admin` for
    // another role, `/` forwarding the subject under another name.
    let old = gw.config_text(&options());
    let fresh = Keys::generate();
    let new_ed = &fresh.get(Algorithm::EdDSA).2;
    let ed_block = key_block(&old, ed);
    let mut new_ed_block = format!("  - id: {ed}\n    algorithm: EdDSA\n    privateKey: |\n");
    for line in new_ed.lines() {
        new_ed_block.push_str(&format!("      {line}\n"));
    }
    let new = old
        .replace(&key_block(&old, es), "")
        .replace(&ed_block, &new_ed_block)
        .replace(
            "auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32, roles: [admin],",
            "auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32, roles: [user],",
        )
        .replace(
            "identityHeaders: {X-User-Id: sub, X-User-Email: email, X-User-Roles: roles}",
            "identityHeaders: {X-Subject: sub}",
        );
    assert!(new.contains("roles: [user],") && new.contains("X-Subject: sub"));
    assert!(!new.contains(&format!("id: {es}")));
    std::fs::write(&gw.config_path, new).expect("write");
    let (code, body) = reload_by_admin(&gw);
    assert_eq!(code, 200, "{body}");

    for path in ["/x", "/admin/x"] {
        assert_eq!(status(&gw, path, &removed), 401, "removed key, {path}");
        assert_eq!(status(&gw, path, &replaced), 401, "replaced key, {path}");
    }
    assert_eq!(validate(&gw, &removed), 401);
    assert_eq!(validate(&gw, &replaced), 401);
    // The replaced id verifies its new material.
    let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
    header.kid = Some(ed.to_string());
    let key = jsonwebtoken::EncodingKey::from_ed_pem(new_ed.as_bytes()).expect("ed pem");
    let new_token =
        jsonwebtoken::encode(&header, &claims(Uuid::new_v4(), APP, &["user"]), &key).expect("sign");
    assert_eq!(status(&gw, "/x", &new_token), 200, "new material");
    // The kept key's cached token, under the new routes.
    assert_eq!(status(&gw, "/admin/x", &kept), 403, "the role changed");
    let (code, body) = echo(&gw, "/x", &kept);
    assert_eq!(code, 200);
    assert!(body["headers"]["x-subject"].is_string(), "{body}");
    for gone in ["x-user-id", "x-user-email", "x-user-roles"] {
        assert!(body["headers"].get(gone).is_none(), "{gone}: {body}");
    }

    // The tenant's issuer moves: a cached token of the old issuer is refused.
    assert_eq!(status(&gw, "/x", &kept), 200);
    let moved = std::fs::read_to_string(&gw.config_path)
        .expect("read")
        .replace(
            &format!("issuer: {ISSUER}\n"),
            "issuer: moved.example.com\n",
        );
    assert!(moved.contains("issuer: moved.example.com"));
    std::fs::write(&gw.config_path, moved).expect("write");
    let (code, body) = reload_by_admin(&gw);
    assert_eq!(code, 200, "{body}");
    assert_eq!(status(&gw, "/x", &kept), 401, "the issuer moved");
    // A fresh token of the old issuer is refused the same way.
    assert_eq!(status(&gw, "/x", &admin_token(&gw, Algorithm::PS384)), 401);
    // (`/api/jwt/validate` accepts an `iss` no tenant has, as FusionAuth does for vended
    // tokens: it is the proxy that holds tokens to their tenant's issuer.)
}

/// Polls `token` on `node` every 2 ms until refused; how long that took after `since`, or
/// `give_up`.
fn refused_after(
    node: &TestGateway,
    token: &Cached,
    since: Instant,
    give_up: Duration,
) -> Duration {
    while since.elapsed() < give_up {
        if status(node, token.path, &token.token) == 401 {
            return since.elapsed();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    give_up
}

/// Every revocation form through `origin`, each against a session cached on `other`; the
/// time each took to be refused there.
fn every_form_across(
    origin: &TestGateway,
    other: &TestGateway,
    give_up: Duration,
) -> Vec<Duration> {
    let mut times = Vec::new();
    for form in 0..6 {
        let email = format!("n-{}@example.com", Uuid::new_v4().simple());
        let session = origin.login(&email, &["user"]);
        let cached = Cached::of(other, &session, APP);
        let (query, body) = match form {
            0 => (format!("/{}", session.refresh_token_id), None),
            1 => (format!("?token={}", encoded(&session.refresh_token)), None),
            2 => (
                String::new(),
                Some(format!("token={}", encoded(&session.refresh_token))),
            ),
            3 => (format!("?userId={}", session.user_id), None),
            4 => (
                format!("?userId={}&applicationId={APP}", session.user_id),
                None,
            ),
            _ => (format!("?applicationId={APP}"), None),
        };
        assert_eq!(revoke(origin, &query, body), 200, "form {form}");
        let since = Instant::now();
        times.push(refused_after(other, &cached, since, give_up));
        assert_eq!(validate(other, &cached.token), 401, "form {form}");
    }
    times
}

#[test]
fn a_revocation_on_one_postgres_node_refuses_a_token_cached_on_the_other_within_250_ms() {
    let db = Database::create();
    let mut opts = pg_options(&db, "enabled: true, timeToLiveInSeconds: 300");
    opts.extra_routes.push_str(OTHER_APP_ROUTE);
    let a = TestGateway::start_with(opts.clone());
    let b = a.start_peer(&opts);
    let times = every_form_across(&a, &b, Duration::from_secs(3));
    eprintln!("PostgreSQL, refused on the other node after {times:?}");
    for time in &times {
        assert!(*time < Duration::from_millis(250), "{times:?}");
    }
}

#[test]
fn a_revocation_on_one_sqlite_gateway_refuses_a_token_cached_on_its_peer_within_about_a_second() {
    let a = TestGateway::start_with(options());
    let b = a.start_peer(&options());
    let times = every_form_across(&a, &b, Duration::from_secs(5));
    eprintln!("SQLite, refused on the peer after {times:?}");
    for time in &times {
        // Polled every second (README: within a second), plus the poll's own read.
        assert!(*time < Duration::from_millis(1300), "{times:?}");
    }
}
