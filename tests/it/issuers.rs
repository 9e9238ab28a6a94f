//! Trusted issuers through the real binary: a second Gatehouse as the issuer (discovery), and a
//! JWKS server the test controls — key rotation, a flood of made-up `kid`s, an issuer that is
//! down, slow, or answers garbage, and Keycloak- and Auth0-shaped tokens against route policy.

use std::io::Write;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::auth::keys::{generate_material, KeyAlgorithm, SigningKey};
use gatehouse::config::{KeySource, KeySpec};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::{check_status, client, now, run_cli, Options, TestGateway, APP};

/// How the test JWKS server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The current key set, with `Cache-Control: max-age=1`.
    Up,
    /// Connections are closed unanswered.
    Down,
    /// The key set, after this long.
    Slow(Duration),
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with two mebibytes of JSON.
    Huge,
    /// 200 with a JWKS of 101 copies of the first key, under other kids.
    TooMany,
}

/// A JWKS server the test controls: it counts fetches and can be switched between [`Mode`]s.
pub(super) struct JwksServer {
    port: u16,
    keys: Arc<Mutex<Vec<Value>>>,
    mode: Arc<Mutex<Mode>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    pub(super) fn start(keys: Vec<Value>) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = JwksServer {
            port,
            keys: Arc::new(Mutex::new(keys)),
            mode: Arc::new(Mutex::new(Mode::Up)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let (keys, mode, fetches) = (
            server.keys.clone(),
            server.mode.clone(),
            server.fetches.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (keys, mode, fetches) = (keys.clone(), mode.clone(), fetches.clone());
                std::thread::spawn(move || serve_jwks(stream, &keys, &mode, &fetches));
            }
        });
        server
    }

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}/jwks", self.port)
    }

    pub(super) fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    fn set_keys(&self, keys: Vec<Value>) {
        *self.keys.lock().expect("lock") = keys;
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Answers one request on `stream` as the mode says.
fn serve_jwks(
    mut stream: std::net::TcpStream,
    keys: &Mutex<Vec<Value>>,
    mode: &Mutex<Mode>,
    fetches: &AtomicUsize,
) {
    if super::kit::read_head(&mut stream).is_none() {
        return;
    }
    fetches.fetch_add(1, Ordering::SeqCst);
    let mode = *mode.lock().expect("lock");
    let body = match mode {
        Mode::Down => return,
        Mode::Slow(delay) => {
            // The keys as they were when the request arrived, answered late.
            let body = json!({ "keys": *keys.lock().expect("lock") }).to_string();
            std::thread::sleep(delay);
            body
        }
        Mode::TooMany => {
            let first = keys.lock().expect("lock")[0].clone();
            let many: Vec<Value> = (0..101)
                .map(|i| {
                    let mut key = first.clone();
                    key["kid"] = json!(format!("copy-{i}"));
                    key
                })
                .collect();
            json!({ "keys": many }).to_string()
        }
        Mode::Up => json!({ "keys": *keys.lock().expect("lock") }).to_string(),
        Mode::Garbage => "<html>maintenance</html>".to_string(),
        Mode::Huge => format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(2 << 20)),
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nCache-Control: max-age=1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// A key of an outside issuer: its private PEM and public JWK under `kid`.
pub(super) struct IssuerKey {
    kid: String,
    algorithm: jsonwebtoken::Algorithm,
    pem: String,
    pub(super) jwk: Value,
}

impl IssuerKey {
    pub(super) fn generate(kid: &str, algorithm: KeyAlgorithm) -> IssuerKey {
        let spec = KeySpec {
            id: Uuid::new_v4(),
            name: "issuer".into(),
            algorithm,
            source: KeySource::Generate,
        };
        let material = generate_material(&spec, 0).expect("generate");
        let key = SigningKey::from_spec(&spec, Some(&material)).expect("key");
        let mut jwk = key.public().expect("public").jwk.clone();
        jwk["kid"] = json!(kid);
        IssuerKey {
            kid: kid.into(),
            algorithm: match algorithm {
                KeyAlgorithm::RS256 => jsonwebtoken::Algorithm::RS256,
                _ => jsonwebtoken::Algorithm::ES256,
            },
            pem: material.private_key.expect("private key"),
            jwk,
        }
    }

    /// `claims` signed with this key, the header naming `kid`.
    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let key = match self.algorithm {
            jsonwebtoken::Algorithm::RS256 => EncodingKey::from_rsa_pem(self.pem.as_bytes()),
            _ => EncodingKey::from_ec_pem(self.pem.as_bytes()),
        }
        .expect("encoding key");
        let mut header = Header::new(self.algorithm);
        header.kid = Some(kid.into());
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }

    pub(super) fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }
}

pub(super) const IDP: &str = "https://idp.test";

/// Claims of a token from [`IDP`]; each call differs (`jti`), so no two hit the cache.
pub(super) fn idp_claims() -> Value {
    json!({"iss": IDP, "sub": "user-1", "exp": now() + 300, "iat": now(), "jti": Uuid::new_v4()})
}

/// A gateway trusting [`IDP`], whose JWKS `server` serves, with these extra issuer settings,
/// and a route `/remote` that accepts its tokens.
fn edge_for(server: &JwksServer, settings: &str) -> TestGateway {
    TestGateway::start_with(Options {
        extra: format!(
            "issuers:\n  - {{issuer: {IDP}, jwksUri: {}, algorithms: [ES256, RS256], {settings}}}\n",
            server.url()
        ),
        extra_routes: format!(
            "  - path: /remote\n    upstream: $UPSTREAM\n    auth: {{issuers: [{IDP}]}}\n    identityHeaders: {{X-User-Id: sub}}\n"
        ),
        ..Options::default()
    })
}

/// Waits until `condition` holds (polling), up to `limit`.
fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    condition()
}

fn status(gw: &TestGateway, path: &str, token: &str) -> u16 {
    gw.get_as(path, token).status().as_u16()
}

#[test]
fn a_second_gatehouse_is_trusted_through_discovery() {
    let issuer = TestGateway::start_with(Options {
        issuer: Some("http://127.0.0.1:$PORT".into()),
        ..Options::default()
    });
    let issuer_url = format!("http://127.0.0.1:{}", issuer.port);
    let closed = super::kit::free_port();
    let edge = TestGateway::start_with(Options {
        extra: format!(
            "issuers:\n  - {{issuer: '{issuer_url}', discovery: true, algorithms: [RS256]}}\n  - {{issuer: https://other.test, jwksUri: 'http://127.0.0.1:{closed}/jwks'}}\n"
        ),
        extra_routes: format!(
            "  - path: /remote\n    upstream: $UPSTREAM\n    auth: {{issuers: ['{issuer_url}'], applicationId: {APP}}}\n    identityHeaders: {{X-User-Id: sub}}\n  - path: /elsewhere\n    upstream: $UPSTREAM\n    auth: {{issuers: [https://other.test]}}\n"
        ),
        ..Options::default()
    });
    // Logged in at the issuer: accepted at the edge, with the identity forwarded.
    let session = issuer.login("ann@example.com", &[]);
    let body = check_status(edge.get_as("/remote", &session.token), 200);
    assert_eq!(body["headers"]["x-user-id"], json!(session.user_id));
    // Refused by a route naming another issuer, and by the edge's own routes.
    assert_eq!(status(&edge, "/elsewhere", &session.token), 401);
    assert_eq!(status(&edge, "/", &session.token), 401);
    // A token refreshed at the issuer is accepted too.
    let refreshed = client()
        .post(issuer.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": session.refresh_token}))
        .send()
        .expect("refresh");
    let refreshed = check_status(refreshed, 200);
    let token = refreshed["token"].as_str().expect("token");
    assert_eq!(status(&edge, "/remote", token), 200);
    // The edge's own tokens are not accepted on the remote route.
    let own = edge.login("bob@example.com", &[]);
    assert_eq!(status(&edge, "/remote", &own.token), 401);
    assert_eq!(status(&edge, "/", &own.token), 200);
}

#[test]
fn a_new_kid_is_fetched_once_and_made_up_kids_stay_within_the_rate_limit() {
    let a = IssuerKey::generate("a", KeyAlgorithm::ES256);
    let b = IssuerKey::generate("b", KeyAlgorithm::RS256);
    let server = JwksServer::start(vec![a.jwk.clone()]);
    let edge = edge_for(
        &server,
        "refreshIntervalSeconds: 300, minRefetchSeconds: 2, unknownKeyCacheSeconds: 60",
    );
    assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
    assert_eq!(server.fetches(), 1, "the fetch at start");
    // Rotation: the new kid is accepted on its first request, with one fetch.
    server.set_keys(vec![a.jwk.clone(), b.jwk.clone()]);
    assert_eq!(status(&edge, "/remote", &b.sign(&idp_claims())), 200);
    assert_eq!(server.fetches(), 2);
    // A flood of made-up kids: refused (401), quickly, within the rate limit.
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (port, pem) = (edge.port, a.pem.clone());
            std::thread::spawn(move || {
                let key = IssuerKey {
                    kid: String::new(),
                    algorithm: jsonwebtoken::Algorithm::ES256,
                    pem,
                    jwk: Value::Null,
                };
                let http = client();
                (0..10)
                    .map(|_| {
                        let token = key.sign_as(&Uuid::new_v4().to_string(), &idp_claims());
                        http.get(format!("http://127.0.0.1:{port}/remote"))
                            .bearer_auth(token)
                            .send()
                            .expect("send")
                            .status()
                            .as_u16()
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for thread in threads {
        for code in thread.join().expect("thread") {
            assert!(code == 401 || code == 503, "{code}");
        }
    }
    let elapsed = started.elapsed();
    let windows = elapsed.as_secs() / 2 + 1;
    assert!(
        server.fetches() as u64 <= 2 + windows,
        "{} fetches in {elapsed:?}",
        server.fetches()
    );
    // Known keys still verify.
    assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
}

#[test]
fn outages_keep_serving_cached_keys_and_answer_503_never_401() {
    let a = IssuerKey::generate("a", KeyAlgorithm::ES256);
    let c = IssuerKey::generate("c", KeyAlgorithm::ES256);
    let server = JwksServer::start(vec![a.jwk.clone()]);
    let edge = edge_for(
        &server,
        "refreshIntervalSeconds: 1, minRefetchSeconds: 1, maxStaleSeconds: 300, timeoutSeconds: 5, unknownKeyWaitMillis: 1500",
    );
    assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
    // A good kid with a bad signature is the token's fault: 401.
    let forged = c.sign_as("a", &idp_claims());
    assert_eq!(status(&edge, "/remote", &forged), 401);

    // Garbage, then a huge answer: refused, the last good set kept.
    for (mode, outcome) in [
        (Mode::Garbage, "invalid"),
        (Mode::Huge, "too_large"),
        (Mode::TooMany, "too_many_keys"),
    ] {
        server.set_mode(mode);
        let metric = format!("outcome=\"{outcome}\"");
        assert!(eventually(Duration::from_secs(10), || metrics(&edge)
            .lines()
            .any(
                |l| l.starts_with("gatehouse_issuer_key_fetches_total") && l.contains(&metric)
            )));
        assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
    }

    // Slow: a fetch hangs for seconds, requests with known kids never wait for it.
    server.set_mode(Mode::Slow(Duration::from_secs(3)));
    std::thread::sleep(Duration::from_millis(1500));
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Down: cached keys still serve; an unknown kid is a 503 with Retry-After, not a 401.
    server.set_mode(Mode::Down);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
    let unknown = edge.get_as("/remote", c.sign(&idp_claims()));
    assert_eq!(unknown.status().as_u16(), 503);
    assert_eq!(
        unknown
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let body: Value = unknown.json().expect("json");
    assert_eq!(body["generalErrors"][0]["code"], "[ServiceUnavailable]");

    // Back, with the new key: recovers without a restart.
    server.set_keys(vec![a.jwk.clone(), c.jwk.clone()]);
    server.set_mode(Mode::Up);
    assert!(eventually(Duration::from_secs(10), || status(
        &edge,
        "/remote",
        &c.sign(&idp_claims())
    ) == 200));
    let text = metrics(&edge);
    for expected in [
        format!("gatehouse_issuer_key_fetches_total{{issuer=\"{IDP}\",outcome=\"ok\"}}"),
        format!("gatehouse_issuer_key_fetches_total{{issuer=\"{IDP}\",outcome=\"network\"}}"),
        format!("gatehouse_issuer_keys{{issuer=\"{IDP}\"}} 2"),
        // At least the one above; the polling for recovery may add more.
        format!("gatehouse_issuer_keys_unavailable_total{{issuer=\"{IDP}\"}} "),
        format!("gatehouse_issuer_key_set_age_seconds{{issuer=\"{IDP}\"}}"),
    ] {
        assert!(text.contains(&expected), "{expected} missing:\n{text}");
    }
}

#[test]
fn a_key_set_too_old_to_use_is_fetched_again_as_soon_as_the_issuer_is_back() {
    let a = IssuerKey::generate("a", KeyAlgorithm::ES256);
    let server = JwksServer::start(vec![a.jwk.clone()]);
    // A long schedule, so the scheduled fetches after the failures come far apart.
    let edge = edge_for(
        &server,
        "refreshIntervalSeconds: 20, minRefetchSeconds: 1, maxStaleSeconds: 20, timeoutSeconds: 2",
    );
    assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
    server.set_mode(Mode::Down);
    // Once the set is older than maxStaleSeconds, the issuer's tokens are a 503…
    assert!(eventually(Duration::from_secs(40), || status(
        &edge,
        "/remote",
        &a.sign(&idp_claims())
    ) == 503));
    // …until the issuer is back: then within about minRefetchSeconds, not at the next
    // scheduled fetch (up to refreshIntervalSeconds away).
    server.set_mode(Mode::Up);
    let back = Instant::now();
    assert!(eventually(Duration::from_secs(4), || status(
        &edge,
        "/remote",
        &a.sign(&idp_claims())
    ) == 200));
    assert!(
        back.elapsed() < Duration::from_secs(4),
        "{:?}",
        back.elapsed()
    );
}

fn metrics(gw: &TestGateway) -> String {
    client()
        .get(gw.admin_url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text")
}

#[test]
fn keycloak_and_auth0_shaped_tokens_meet_route_policy() {
    let key = IssuerKey::generate("k1", KeyAlgorithm::RS256);
    let server = JwksServer::start(vec![key.jwk.clone()]);
    let keycloak = "https://kc.test/realms/acme";
    let auth0 = "https://acme.auth0.test/";
    let edge = TestGateway::start_with(Options {
        extra: format!(
            "issuers:\n  - {{issuer: '{keycloak}', jwksUri: '{url}', rolesClaim: realm_access.roles}}\n  - {{issuer: '{auth0}', jwksUri: '{url}', rolesClaim: permissions, audiences: [https://api.acme.test]}}\n",
            url = server.url()
        ),
        extra_routes: format!(
            "  - path: /reports\n    upstream: $UPSTREAM\n    auth: {{issuers: ['{keycloak}'], roles: [analyst], claims: {{email_verified: true}}}}\n  - path: /orders\n    upstream: $UPSTREAM\n    auth: {{issuers: ['{auth0}'], roles: ['read:orders'], audiences: [https://api.acme.test]}}\n"
        ),
        ..Options::default()
    });
    let kc = |roles: &[&str], verified: bool| {
        key.sign(
            &json!({"iss": keycloak, "sub": "u", "exp": now() + 300, "typ": "Bearer",
            "realm_access": {"roles": roles}, "email_verified": verified}),
        )
    };
    assert_eq!(
        status(&edge, "/reports", &kc(&["analyst", "user"], true)),
        200
    );
    assert_eq!(status(&edge, "/reports", &kc(&["user"], true)), 403);
    assert_eq!(status(&edge, "/reports", &kc(&["analyst"], false)), 403);
    assert_eq!(
        status(&edge, "/orders", &kc(&["analyst"], true)),
        401,
        "another issuer"
    );
    let a0 = |aud: Value, permissions: &[&str]| {
        key.sign(&json!({"iss": auth0, "sub": "auth0|1", "exp": now() + 300,
            "aud": aud, "permissions": permissions}))
    };
    let audiences = json!(["https://api.acme.test", "https://acme.auth0.test/userinfo"]);
    assert_eq!(
        status(&edge, "/orders", &a0(audiences.clone(), &["read:orders"])),
        200
    );
    assert_eq!(
        status(
            &edge,
            "/orders",
            &a0(json!("https://api.acme.test"), &["read:orders"])
        ),
        200
    );
    assert_eq!(
        status(&edge, "/orders", &a0(audiences, &["write:orders"])),
        403
    );
    assert_eq!(
        status(
            &edge,
            "/orders",
            &a0(json!("https://other.test"), &["read:orders"])
        ),
        401,
        "the issuer's audiences"
    );
    // A remote key never verifies a token claiming the gateway's own issuer.
    let claims_own = key.sign(&json!({"iss": super::kit::ISSUER, "sub": "x", "exp": now() + 300}));
    assert_eq!(status(&edge, "/", &claims_own), 401);
    // Keys named in the header are never followed.
    let jku = {
        let pem = EncodingKey::from_rsa_pem(key.pem.as_bytes()).expect("key");
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k1".into());
        header.jku = Some("https://evil.test/jwks".into());
        jsonwebtoken::encode(
            &header,
            &json!({"iss": keycloak, "exp": now() + 300, "realm_access": {"roles": ["analyst"]}, "email_verified": true}),
            &pem,
        )
        .expect("sign")
    };
    assert_eq!(status(&edge, "/reports", &jku), 401);
}

#[test]
fn the_issuers_section_is_checked_with_paths() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:1\nissuers:\n  - {issuer: https://a.test, discovery: true, jwksUri: https://a.test/k}\n  - {issuer: https://b.test, jwksUri: https://b.test/k, algorithms: [none, HS256]}\nroutes:\n  - path: /\n    upstream: http://127.0.0.1:2\n    auth: {issuers: [https://nobody.test]}\n",
    )
    .expect("write");
    let (code, _, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("path")],
        dir.path(),
    );
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "issuers[0]: give discovery: true or jwksUri, not both (line 3",
        "issuers[1].algorithms[0]: `none` is never accepted",
        "issuers[1].algorithms[1]: HMAC algorithms cannot be checked with a JWKS",
        "routes[0].auth.issuers[0]: no issuer with this name",
    ] {
        assert!(stderr.contains(expected), "{expected} missing:\n{stderr}");
    }
}

/// A gateway trusting a Keycloak-shaped [`IDP`] (roles under `realm_access.roles`) whose JWKS
/// `server` serves, with a route `/kc` forwarding the roles header and one `/level` requiring
/// `level: 1`.
fn keycloak_edge(server: &JwksServer) -> TestGateway {
    TestGateway::start_with(Options {
        extra: format!(
            "issuers:\n  - {{issuer: {IDP}, jwksUri: {}, algorithms: [ES256], rolesClaim: realm_access.roles}}\n",
            server.url()
        ),
        extra_routes: format!(
            "  - path: /kc\n    upstream: $UPSTREAM\n    auth: {{issuers: [{IDP}]}}\n    identityHeaders: {{X-User-Id: sub, X-User-Roles: roles}}\n  - path: /level\n    upstream: $UPSTREAM\n    auth: {{issuers: [{IDP}], claims: {{level: 1, email_verified: true}}}}\n"
        ),
        ..Options::default()
    })
}

#[test]
fn roles_of_the_issuers_roles_claim_reach_the_roles_header_as_local_ones_do() {
    let key = IssuerKey::generate("k", KeyAlgorithm::ES256);
    let server = JwksServer::start(vec![key.jwk.clone()]);
    let edge = keycloak_edge(&server);
    let token = |extra: Value| {
        let mut claims = idp_claims();
        for (name, value) in extra.as_object().expect("object") {
            claims[name] = value.clone();
        }
        key.sign(&claims)
    };
    let send = |token: &str| {
        client()
            .get(edge.url("/kc"))
            .bearer_auth(token)
            .header("X-User-Roles", "admin")
            .header("X-User-Id", "someone-else")
            .send()
            .expect("send")
    };
    // The roles at realm_access.roles, not a top-level `roles` claim, and never the client's.
    let body = check_status(
        send(&token(
            json!({"realm_access": {"roles": ["analyst", "user"]}, "roles": ["admin"]}),
        )),
        200,
    );
    assert_eq!(body["headers"]["x-user-roles"], "analyst,user");
    assert_eq!(body["headers"]["x-user-id"], "user-1");
    // No roles there: no roles header, whatever the token's top level or the client says.
    let body = check_status(send(&token(json!({"roles": ["admin"]}))), 200);
    assert!(body["headers"].get("x-user-roles").is_none(), "{body}");
    // A role with a comma would read as two roles: refused (401, the claim cannot be
    // forwarded) as for the gateway's own tokens.
    // So are roles that are not a list or one string (an object, a number, a boolean): the
    // policy sees none in them, so the upstream must not get the identity without them.
    for roles in [
        json!(["user,admin"]),
        json!(["user", 7]),
        json!([" admin"]),
        json!({"a": "user"}),
        json!(5),
        json!(true),
    ] {
        let response = send(&token(json!({"realm_access": {"roles": roles}})));
        assert_eq!(response.status().as_u16(), 401, "{roles}");
    }
}

#[test]
fn claims_and_headers_of_remote_tokens_are_read_strictly() {
    let key = IssuerKey::generate("k", KeyAlgorithm::ES256);
    let other = IssuerKey::generate("k", KeyAlgorithm::ES256);
    let server = JwksServer::start(vec![key.jwk.clone()]);
    let edge = keycloak_edge(&server);
    let with = |changes: Value| {
        let mut claims = idp_claims();
        claims["level"] = json!(1);
        claims["email_verified"] = json!(true);
        for (name, value) in changes.as_object().expect("object") {
            match value {
                Value::Null => drop(claims.as_object_mut().expect("object").remove(name)),
                _ => claims[name] = value.clone(),
            }
        }
        claims
    };
    assert_eq!(status(&edge, "/level", &key.sign(&with(json!({})))), 200);
    // 1.0 is the number 1; "1", true for 1, and "true" for true are not.
    assert_eq!(
        status(&edge, "/level", &key.sign(&with(json!({"level": 1.0})))),
        200
    );
    for changes in [
        json!({"level": "1"}),
        json!({"level": true}),
        json!({"level": 2}),
        json!({"email_verified": "true"}),
    ] {
        assert_eq!(
            status(&edge, "/level", &key.sign(&with(changes.clone()))),
            403,
            "{changes}"
        );
    }
    // Times that are not numbers, no exp, an issuer spelled another way: 401.
    for changes in [
        json!({"exp": null}),
        json!({"exp": (now() + 300).to_string()}),
        json!({"exp": 1e300}),
        json!({"nbf": "0"}),
        json!({"exp": now() - 5}),
        json!({"iss": format!("{IDP}/")}),
        json!({"iss": IDP.to_uppercase()}),
        json!({"iss": format!(" {IDP}")}),
        json!({"iss": null}),
        json!({"iss": [IDP]}),
    ] {
        assert_eq!(
            status(&edge, "/level", &key.sign(&with(changes.clone()))),
            401,
            "{changes}"
        );
    }
    // Signed by another key under the same kid, no kid, alg none, a payload naming a claim
    // twice: 401.
    assert_eq!(status(&edge, "/level", &other.sign(&with(json!({})))), 401);
    let good = key.sign(&with(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let no_kid = {
        let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("JWT".into());
        let pem = EncodingKey::from_ec_pem(key.pem.as_bytes()).expect("key");
        jsonwebtoken::encode(&header, &with(json!({})), &pem).expect("sign")
    };
    assert_eq!(status(&edge, "/level", &no_kid), 401);
    for alg in ["none", "None", "NONE", "HS256"] {
        let header = b64(&format!(r#"{{"alg":"{alg}","kid":"k","typ":"JWT"}}"#));
        let forged = format!("{header}.{}.{}", parts[1], parts[2]);
        assert_eq!(status(&edge, "/level", &forged), 401, "{alg}");
        assert_eq!(
            status(&edge, "/level", &format!("{header}.{}.", parts[1])),
            401,
            "{alg}"
        );
    }
    let payload = serde_json::to_string(&with(json!({}))).expect("json");
    let doubled = format!("{{\"level\":2,{}", &payload[1..]);
    let sign_raw = |payload: &str| {
        let header = b64(r#"{"alg":"ES256","kid":"k","typ":"JWT"}"#);
        let input = format!("{header}.{}", b64(payload));
        let pem = EncodingKey::from_ec_pem(key.pem.as_bytes()).expect("key");
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &pem, jsonwebtoken::Algorithm::ES256)
                .expect("sign");
        format!("{input}.{signature}")
    };
    assert_eq!(
        status(&edge, "/level", &sign_raw(&payload)),
        200,
        "raw signing works"
    );
    assert_eq!(
        status(&edge, "/level", &sign_raw(&doubled)),
        401,
        "a claim named twice"
    );
}

#[test]
fn cached_tokens_of_a_removed_or_replaced_key_are_refused_after_the_next_fetch() {
    let a = IssuerKey::generate("a", KeyAlgorithm::ES256);
    let b = IssuerKey::generate("b", KeyAlgorithm::ES256);
    let b2 = IssuerKey::generate("b", KeyAlgorithm::ES256);
    let server = JwksServer::start(vec![a.jwk.clone(), b.jwk.clone()]);
    let edge = edge_for(
        &server,
        "refreshIntervalSeconds: 1, minRefetchSeconds: 1, unknownKeyCacheSeconds: 1",
    );
    let by_a = a.sign(&idp_claims());
    let by_b = b.sign(&idp_claims());
    for _ in 0..3 {
        // Cached after the first.
        assert_eq!(status(&edge, "/remote", &by_a), 200);
        assert_eq!(status(&edge, "/remote", &by_b), 200);
    }
    // The issuer drops key a and publishes another key under kid b.
    server.set_keys(vec![b2.jwk.clone()]);
    let fetches = server.fetches();
    assert!(eventually(Duration::from_secs(10), || server.fetches() >= fetches + 2));
    assert_eq!(status(&edge, "/remote", &by_a), 401, "removed key");
    assert_eq!(status(&edge, "/remote", &by_b), 401, "replaced key");
    assert_eq!(status(&edge, "/remote", &b2.sign(&idp_claims())), 200);
}

#[test]
fn a_key_published_while_a_fetch_is_under_way_is_found_by_one_follow_up_fetch() {
    let a = IssuerKey::generate("a", KeyAlgorithm::ES256);
    let b = IssuerKey::generate("b", KeyAlgorithm::ES256);
    let server = JwksServer::start(vec![a.jwk.clone()]);
    let edge = edge_for(
        &server,
        "refreshIntervalSeconds: 2, minRefetchSeconds: 30, unknownKeyWaitMillis: 10000",
    );
    assert_eq!(status(&edge, "/remote", &a.sign(&idp_claims())), 200);
    // The scheduled fetch begins and takes 1.5 s; key b is published after it began. The
    // request waits for two slow fetches: the bound leaves room for a loaded machine.
    server.set_mode(Mode::Slow(Duration::from_millis(1500)));
    let fetches = server.fetches();
    assert!(eventually(Duration::from_secs(10), || server.fetches() > fetches));
    server.set_keys(vec![a.jwk.clone(), b.jwk.clone()]);
    let before = server.fetches();
    let started = Instant::now();
    // The request saw kid b after the fetch under way began: it is not answered from that
    // fetch, but from the one that follows it.
    assert_eq!(status(&edge, "/remote", &b.sign(&idp_claims())), 200);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.fetches(), before + 1, "one follow-up fetch");
}
