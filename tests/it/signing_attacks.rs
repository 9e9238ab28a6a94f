//! Attacks on the refresh and signing paths through the real binary: RSA signatures run on the
//! signing pool (an 8192-bit key makes each one tens of milliseconds), ECDSA, Ed25519 and HMAC
//! inline. Concurrent refreshes of one token at the edge and through `POST /api/jwt/refresh`
//! (one rotation, one successor, every token verifying), a reload that removes the signing key
//! while signatures are pending, clients that go away mid-signature, a flood of more RSA
//! refreshes than the pool has slots × 100, and the token bytes of every algorithm checked
//! against the published keys.
//!
//! An API client that goes away while its refresh is signed is not seen to leave (the gateway
//! reads nothing more from it, and writing the answer to the closed connection succeeds), so
//! its rotation commits, as with any HTTP server; FusionAuth's one-time-use grace period is the
//! client's remedy, and a retry within it gets the pair (README, *Transparent refresh*).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use gatehouse_plugin_api::store::RefreshTokenStore;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// The 8192-bit RSA key of the fixtures (generating one takes seconds).
const RSA8192: &str = include_str!("fixtures/rsa8192_key.pem");

/// The gateway's keys plus the slow RSA key, as PS512 with id `kid`.
pub fn slow_keys(kid: Uuid) -> Keys {
    Keys::generate().with_pem_key(kid, "PS512", RSA8192)
}

/// Options whose application signs with `kid` under `policy` (the rest of a `jwtConfiguration`
/// flow mapping), with a `/app` route that refreshes at the edge.
pub fn options(kid: Uuid, policy: &str) -> Options {
    Options {
        app_jwt: format!("enabled: true, accessTokenKeyId: {kid}, timeToLiveInSeconds: 300, {policy}"),
        extra_routes: format!(
            "  - path: /app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true}}\n    identityHeaders: {{X-User-Id: sub}}\n"
        ),
        ..Default::default()
    }
}

/// A gateway whose application signs with the slow RSA key (`slow`) or the kit's ES256 key,
/// under `policy`. Returns it with the signing key's id.
fn gateway(slow: bool, policy: &str, race_window: Option<u64>) -> (TestGateway, Uuid) {
    let kid = Uuid::new_v4();
    let keys = slow_keys(kid);
    let signing = if slow {
        kid
    } else {
        keys.get(jsonwebtoken::Algorithm::ES256).0
    };
    let mut options = options(signing, policy);
    options.race_window_seconds = race_window;
    (TestGateway::start_with_keys(options, keys), signing)
}

/// Runs `f` on a current-thread runtime over the gateway's SQLite store (a second connection,
/// as another process would have).
fn with_store<T>(
    gw: &TestGateway,
    f: impl AsyncFnOnce(&gatehouse::store::sqlite::SqliteStore) -> T,
) -> T {
    let store = gatehouse::store::sqlite::SqliteStore::open(
        &gw.store_path(),
        Arc::new(gatehouse_plugin_api::SystemClock),
    )
    .expect("open the store");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f(&store))
}

/// `n` more refresh tokens of `session`'s user and application, each a copy of its refresh
/// token under a new id and value (a login each, without `n` runs of the command line).
fn more_sessions(gw: &TestGateway, session: &Session, n: usize) -> Vec<String> {
    let id = Uuid::parse_str(&session.refresh_token_id).expect("uuid");
    with_store(gw, async |store| {
        let original = store
            .get_refresh_token(id)
            .await
            .expect("read")
            .expect("the session's refresh token");
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let mut copy = original.clone();
            copy.id = Uuid::new_v4();
            copy.token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
            store.insert_refresh_token(&copy).await.expect("insert");
            values.push(copy.token);
        }
        values
    })
}

/// The live refresh token values of the user, from the store.
fn live_values(gw: &TestGateway, user: &str) -> Vec<String> {
    let user = Uuid::parse_str(user).expect("uuid");
    with_store(gw, async |store| {
        store
            .list_refresh_tokens(user)
            .await
            .expect("list")
            .into_iter()
            .map(|t| t.token)
            .collect()
    })
}

/// What one refresh answered: the access and refresh token on success, else the status and body.
#[derive(Debug, Clone)]
pub enum Answer {
    Pair { access: String, refresh: String },
    Refused { status: u16, body: String },
}

/// The value a `Set-Cookie` of the answer gives cookie `name`; `None` when it sets none or
/// clears it.
fn set_cookie(response: &reqwest::blocking::Response, name: &str) -> Option<String> {
    super::postgres::cookie_value(response, name).filter(|value| !value.is_empty())
}

/// A transparent refresh at the edge with the `refresh_token` cookie `value` only. On success
/// the pair is the cookies set (the refresh token stays `value` when none is set: `Reusable`),
/// and the token the upstream received must be the new access token.
pub fn edge_refresh(client: &reqwest::blocking::Client, gw: &TestGateway, value: &str) -> Answer {
    let response = client
        .get(gw.url("/app/page"))
        .header("Cookie", format!("refresh_token={value}"))
        .send()
        .expect("send");
    let status = response.status().as_u16();
    let access = set_cookie(&response, "access_token");
    let refresh = set_cookie(&response, "refresh_token").unwrap_or_else(|| value.to_string());
    let body = response.text().unwrap_or_default();
    match (status, access) {
        (200, Some(access)) => {
            let echoed: Value = serde_json::from_str(&body).expect("the echo's JSON");
            assert_eq!(
                echoed["headers"]["authorization"],
                json!(format!("Bearer {access}")),
                "the upstream got the new access token"
            );
            Answer::Pair { access, refresh }
        }
        _ => Answer::Refused { status, body },
    }
}

/// `POST /api/jwt/refresh` with `value` in the body.
pub fn api_refresh(client: &reqwest::blocking::Client, gw: &TestGateway, value: &str) -> Answer {
    let response = client
        .post(gw.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": value}))
        .send()
        .expect("send");
    let status = response.status().as_u16();
    let body = response.text().unwrap_or_default();
    if status == 200 {
        let json: Value = serde_json::from_str(&body).expect("JSON");
        Answer::Pair {
            access: json["token"].as_str().expect("token").to_string(),
            refresh: json["refreshToken"]
                .as_str()
                .expect("refreshToken")
                .to_string(),
        }
    } else {
        Answer::Refused { status, body }
    }
}

/// The gateway's published JWKS.
pub fn jwks(gw: &TestGateway) -> Value {
    check_status(
        client()
            .get(gw.url("/.well-known/jwks.json"))
            .send()
            .expect("send"),
        200,
    )
}

/// The header and claims of `token`, after checking its signature with the key the JWKS
/// publishes under its `kid` (or, for an HMAC token, with `secret`). Panics when the key is not
/// published or the signature does not verify.
pub fn verified(token: &str, jwks: &Value, secret: Option<&str>) -> (Value, Value) {
    let part = |i: usize| -> Value {
        let text = token.split('.').nth(i).expect("three parts");
        let bytes = base64_url(text);
        serde_json::from_slice(&bytes).expect("JSON part")
    };
    let (header, claims) = (part(0), part(1));
    let alg = header["alg"].as_str().expect("alg");
    let kid = header["kid"].as_str().expect("kid");
    let (signed, signature) = token.rsplit_once('.').expect("signature");
    let signature = base64_url(signature);
    if alg.starts_with("HS") {
        let secret = secret.expect("an HMAC secret");
        let algorithm = match alg {
            "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
            "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
            _ => aws_lc_rs::hmac::HMAC_SHA512,
        };
        let key = aws_lc_rs::hmac::Key::new(algorithm, secret.as_bytes());
        aws_lc_rs::hmac::verify(&key, signed.as_bytes(), &signature)
            .unwrap_or_else(|_| panic!("{alg} signature does not verify"));
        return (header, claims);
    }
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} ({alg}) is not in the JWKS: {jwks}"));
    use aws_lc_rs::signature as sig;
    let field = |name: &str| base64_url(jwk[name].as_str().expect("JWK field"));
    let ok = match alg {
        "EdDSA" => sig::UnparsedPublicKey::new(&sig::ED25519, field("x"))
            .verify(signed.as_bytes(), &signature)
            .is_ok(),
        "ES256" | "ES384" | "ES512" => {
            let mut point = vec![4u8];
            point.extend(field("x"));
            point.extend(field("y"));
            let algorithm: &'static dyn sig::VerificationAlgorithm = match alg {
                "ES256" => &sig::ECDSA_P256_SHA256_FIXED,
                "ES384" => &sig::ECDSA_P384_SHA384_FIXED,
                _ => &sig::ECDSA_P521_SHA512_FIXED,
            };
            sig::UnparsedPublicKey::new(algorithm, point)
                .verify(signed.as_bytes(), &signature)
                .is_ok()
        }
        _ => {
            let parameters: &'static sig::RsaParameters = match alg {
                "RS256" => &sig::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &sig::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &sig::RSA_PKCS1_2048_8192_SHA512,
                "PS256" => &sig::RSA_PSS_2048_8192_SHA256,
                "PS384" => &sig::RSA_PSS_2048_8192_SHA384,
                "PS512" => &sig::RSA_PSS_2048_8192_SHA512,
                other => panic!("unexpected alg {other}"),
            };
            sig::RsaPublicKeyComponents {
                n: field("n"),
                e: field("e"),
            }
            .verify(parameters, signed.as_bytes(), &signature)
            .is_ok()
        }
    };
    assert!(
        ok,
        "{alg} signature does not verify with the JWKS key {kid}"
    );
    (header, claims)
}

/// Decodes unpadded base64url.
fn base64_url(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64url: {text}")) as u32;
        buffer = (buffer << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

/// Sends `edges` edge refreshes and `apis` API refreshes of `value` at once (a barrier), each
/// on its own connection. Returns the answers, edge ones first.
fn all_at_once(gw: &TestGateway, value: &str, edges: usize, apis: usize) -> Vec<Answer> {
    let gw_ref = gw;
    let barrier = Barrier::new(edges + apis);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..edges + apis)
            .map(|i| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let client = client();
                    barrier.wait();
                    if i < edges {
                        edge_refresh(&client, gw_ref, value)
                    } else {
                        api_refresh(&client, gw_ref, value)
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a refresh thread"))
            .collect()
    })
}

/// Checks the answers of concurrent refreshes of one session: every pair carries one and the
/// same refresh token (one rotation, or none for `Reusable`), which is the user's only live
/// value in the store; every access token verifies with the published key, is signed by `kid`
/// and belongs to the session; refusals are only the documented ones (401 at the edge, 400
/// `[invalid]refreshToken` from the API). `all_win`: every request must get the pair. Returns
/// the one successor.
fn check_one_outcome(
    gw: &TestGateway,
    session: &Session,
    kid: Uuid,
    answers: &[Answer],
    all_win: bool,
) -> String {
    let keys = jwks(gw);
    let mut successors = std::collections::BTreeSet::new();
    for answer in answers {
        match answer {
            Answer::Pair { access, refresh } => {
                let (header, claims) = verified(access, &keys, None);
                assert_eq!(header["kid"], json!(kid.to_string()));
                assert_eq!(claims["sid"], json!(session.refresh_token_id));
                assert_eq!(claims["sub"], json!(session.user_id));
                successors.insert(refresh.clone());
            }
            Answer::Refused { status, body } => {
                assert!(
                    !all_win,
                    "every overlapping request gets the pair: {answers:?}"
                );
                assert!(
                    (*status == 401) || (*status == 400 && body.contains("[invalid]refreshToken")),
                    "a refusal other than the documented ones: {status} {body}"
                );
            }
        }
    }
    assert_eq!(
        successors.len(),
        1,
        "one rotation, one successor: {answers:?}"
    );
    let successor = successors.into_iter().next().expect("one");
    let id = Uuid::parse_str(&session.refresh_token_id).expect("uuid");
    let stored = with_store(gw, async |store| {
        store.get_refresh_token(id).await.expect("read")
    });
    assert_eq!(
        stored.map(|t| t.token),
        Some(successor.clone()),
        "the store holds exactly the successor every client was given"
    );
    successor
}

/// One concurrency attack: `edges` + `apis` refreshes of one token, then the outcome checked
/// and the successor (or the reusable value) used once more.
fn concurrent_attack(slow: bool, policy: &str, race_window: Option<u64>, all_win: bool) {
    let (gw, kid) = gateway(slow, policy, race_window);
    let session = gw.login("racer@example.com", &["user"]);
    let answers = all_at_once(&gw, &session.refresh_token, 8, 8);
    let successor = check_one_outcome(&gw, &session, kid, &answers, all_win);
    assert_eq!(live_values(&gw, &session.user_id), vec![successor.clone()]);
    let rotated = successor != session.refresh_token;
    assert_eq!(rotated, policy.contains("OneTimeUse"), "{answers:?}");
    // The successor is live and works once more.
    let next = api_refresh(&client(), &gw, &successor);
    assert!(matches!(next, Answer::Pair { .. }), "{next:?}");
}

#[test]
fn concurrent_rsa_refreshes_of_one_one_time_token_make_one_rotation() {
    concurrent_attack(true, "refreshTokenUsagePolicy: OneTimeUse", None, false);
}

#[test]
fn concurrent_es256_refreshes_of_one_one_time_token_make_one_rotation() {
    concurrent_attack(false, "refreshTokenUsagePolicy: OneTimeUse", None, false);
}

#[test]
fn concurrent_rsa_refreshes_within_a_grace_period_all_get_the_one_pair() {
    let grace = "refreshTokenUsagePolicy: OneTimeUse, refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 30}";
    concurrent_attack(true, grace, None, true);
}

#[test]
fn concurrent_es256_refreshes_within_a_race_window_all_get_the_one_pair() {
    concurrent_attack(false, "refreshTokenUsagePolicy: OneTimeUse", Some(30), true);
}

#[test]
fn concurrent_rsa_refreshes_of_a_reusable_token_all_succeed_without_rotating() {
    concurrent_attack(true, "refreshTokenUsagePolicy: Reusable", None, true);
}

/// `POST /reload` on the admin listener; panics unless it is applied.
fn reload(gw: &TestGateway) {
    let response = client()
        .post(gw.admin_url("/reload"))
        .send()
        .expect("reload");
    let status = response.status().as_u16();
    assert_eq!(status, 200, "{}", response.text().unwrap_or_default());
}

/// The configuration text without the key `kid` (its entry and its inline PEM).
fn without_key(text: &str, kid: Uuid) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with("  - ") {
            skipping = line.contains(&kid.to_string()) && line.contains("id:");
        } else if !line.starts_with("    ") {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(!out.contains(&kid.to_string()), "the key is gone");
    out
}

/// Sends an edge refresh of each of `values` at once, on threads of `scope`.
fn flood<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    gw: &'s TestGateway,
    values: &'s [String],
) -> Vec<std::thread::ScopedJoinHandle<'s, Answer>> {
    values
        .iter()
        .map(|value| scope.spawn(move || edge_refresh(&client(), gw, value)))
        .collect()
}

#[test]
fn a_reload_removing_the_signing_key_while_signatures_are_pending_hands_out_no_token_of_it() {
    const FILLERS: usize = 120;
    let (gw, slow) = gateway(true, "refreshTokenUsagePolicy: OneTimeUse", None);
    let session = gw.login("reload-race@example.com", &["user"]);
    let fillers = more_sessions(&gw, &session, FILLERS);
    let es256 = gw.keys.get(jsonwebtoken::Algorithm::ES256).0;
    let new_options = options(es256, "refreshTokenUsagePolicy: OneTimeUse");
    let new_text = without_key(&gw.config_text(&new_options), slow);
    let value = session.refresh_token.clone();
    let (first, second, old_jwks) = std::thread::scope(|scope| {
        // The pool's queue: each of these is an 8192-bit signature.
        let queue = flood(scope, &gw, &fillers);
        std::thread::sleep(Duration::from_millis(300));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let first = {
            let (gw, value, done) = (&gw, value.clone(), done.clone());
            scope.spawn(move || {
                let answer = edge_refresh(&client(), gw, &value);
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                answer
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        let old_jwks = jwks(&gw);
        std::fs::write(&gw.config_path, &new_text).expect("config");
        reload(&gw);
        assert!(
            !done.load(std::sync::atomic::Ordering::SeqCst),
            "the first refresh ended before the reload: the queue was too short to attack"
        );
        // Arrives under the new configuration while the first one's signature is pending.
        let second = edge_refresh(&client(), &gw, &value);
        for answer in queue {
            let answer = answer.join().expect("a filler");
            assert!(matches!(answer, Answer::Pair { .. }), "{answer:?}");
        }
        (first.join().expect("first"), second, old_jwks)
    });
    let new_jwks = jwks(&gw);
    assert!(
        !new_jwks.to_string().contains(&slow.to_string()),
        "the removed key is no longer published"
    );
    // The request that arrived before the reload keeps that configuration to its end.
    let Answer::Pair { access, refresh } = &first else {
        panic!("the first refresh: {first:?}");
    };
    verified(access, &old_jwks, None);
    // The one that arrived after it, while the first was under way, overlapped the rotation:
    // the same rotation, with an access token the new configuration trusts.
    let Answer::Pair {
        access: access2,
        refresh: refresh2,
    } = &second
    else {
        panic!("the overlapping refresh after the reload: {second:?}");
    };
    let (header, _) = verified(access2, &new_jwks, None);
    assert_eq!(
        header["kid"],
        json!(es256.to_string()),
        "signed by the new key"
    );
    assert_eq!(refresh2, refresh, "the same rotation");
    assert_eq!(gw.get_as("/app/page", access2).status(), 200);
    // A token of the removed key is refused from now on.
    assert_eq!(gw.get_as("/app/page", access).status(), 401);
    assert_eq!(live_values(&gw, &session.user_id).len(), FILLERS + 1);
    assert!(live_values(&gw, &session.user_id).contains(refresh));
}

/// A client that gives up after `timeout`.
pub fn impatient(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}

/// A refresh whose client goes away while its signature waits on the pool (queued behind an
/// 8192-bit flood) leaves a token the client can still use: the retry with the same value gets
/// a pair, and the store ends with one live successor.
/// Through the API (`api`), under `policy`.
fn abandoned_mid_signature(api: bool, policy: &str) {
    const FILLERS: usize = 60;
    let (gw, kid) = gateway(true, policy, None);
    let session = gw.login("gone@example.com", &["user"]);
    let fillers = more_sessions(&gw, &session, FILLERS);
    // The fillers' signatures fill the pool's queue; once a few are answered the rest are
    // queued (however slowly a loaded machine started them), so the next request waits.
    let answered = std::sync::atomic::AtomicUsize::new(0);
    let answered = &answered;
    std::thread::scope(|scope| {
        let queue: Vec<_> = fillers
            .iter()
            .map(|value| {
                let gw = &gw;
                scope.spawn(move || {
                    let answer = edge_refresh(&client(), gw, value);
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    answer
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while answered.load(std::sync::atomic::Ordering::SeqCst) < 4 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let quick = impatient(Duration::from_millis(300));
        let gone = if api {
            quick
                .post(gw.url("/api/jwt/refresh"))
                .json(&json!({"refreshToken": session.refresh_token}))
                .send()
        } else {
            quick
                .get(gw.url("/app/page"))
                .header("Cookie", format!("refresh_token={}", session.refresh_token))
                .send()
        };
        assert!(
            gone.is_err(),
            "the client gave up before the answer: {gone:?}"
        );
        for answer in queue {
            answer.join().expect("a filler");
        }
    });
    // The abandoned request had time to end by now; the client retries with what it holds.
    std::thread::sleep(Duration::from_millis(500));
    let retry = if api {
        api_refresh(&client(), &gw, &session.refresh_token)
    } else {
        edge_refresh(&client(), &gw, &session.refresh_token)
    };
    check_one_outcome(&gw, &session, kid, &[retry], true);
    assert_eq!(live_values(&gw, &session.user_id).len(), FILLERS + 1);
}

#[test]
fn an_edge_refresh_abandoned_mid_signature_leaves_the_token_usable() {
    abandoned_mid_signature(false, "refreshTokenUsagePolicy: OneTimeUse");
}

#[test]
fn an_api_refresh_abandoned_mid_signature_is_retried_within_the_grace_period() {
    abandoned_mid_signature(
        true,
        "refreshTokenUsagePolicy: OneTimeUse, refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 30}",
    );
}

/// The resident set of process `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_flood_of_rsa_refreshes_queues_while_the_open_route_keeps_serving() {
    // More than the pool's slots (one per core) × 100 RSA signatures (a 2048-bit PS384 key:
    // the 8192-bit one would take longer than a client waits on a loaded 2-core machine).
    let edges = std::thread::available_parallelism().map_or(2, usize::from) * 100 + 10;
    const APIS: usize = 20;
    let keys = Keys::generate();
    let kid = keys.get(jsonwebtoken::Algorithm::PS384).0;
    let gw =
        TestGateway::start_with_keys(options(kid, "refreshTokenUsagePolicy: OneTimeUse"), keys);
    let session = gw.login("flood@example.com", &["user"]);
    let values = more_sessions(&gw, &session, edges + APIS);
    let pid = gw.pid().expect("pid");
    check_status(client().get(gw.url("/public/x")).send().expect("send"), 200);
    let rss_before = rss_kb(pid);
    let patient = || impatient(Duration::from_secs(28));
    let barrier = Barrier::new(edges + APIS + 1);
    let running = std::sync::atomic::AtomicUsize::new(edges + APIS);
    let started = Instant::now();
    let (answers, open_latencies, peak_rss) = std::thread::scope(|scope| {
        let handles: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, value)| {
                let (gw, barrier, running) = (&gw, &barrier, &running);
                scope.spawn(move || {
                    let client = patient();
                    barrier.wait();
                    let answer = if i < edges {
                        edge_refresh(&client, gw, value)
                    } else {
                        api_refresh(&client, gw, value)
                    };
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    (i < edges, answer)
                })
            })
            .collect();
        barrier.wait();
        let (open, mut latencies, mut peak) = (client(), Vec::new(), 0);
        while running.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            let sent = Instant::now();
            check_status(open.get(gw.url("/public/x")).send().expect("send"), 200);
            latencies.push(sent.elapsed());
            peak = peak.max(rss_kb(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        let answers: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().expect("a refresh"))
            .collect();
        (answers, latencies, peak)
    });
    let took = started.elapsed();
    let keys = jwks(&gw);
    let mut refused = 0;
    for (edge, answer) in &answers {
        match answer {
            Answer::Pair { access, .. } => {
                let (header, _) = verified(access, &keys, None);
                assert_eq!(header["kid"], json!(kid.to_string()));
            }
            // Refused with a clear status: the API's bound on requests in flight or its time
            // limit (503 with Errors JSON); never a 500 or a hang.
            Answer::Refused { status, body } => {
                assert!(!edge, "an edge refresh was refused: {status} {body}");
                assert_eq!(*status, 503, "{body}");
                assert!(body.contains("generalErrors"), "{body}");
                refused += 1;
            }
        }
    }
    let mut sorted = open_latencies.clone();
    sorted.sort();
    let worst = *sorted.last().expect("the open route was asked");
    let median = sorted[sorted.len() / 2];
    eprintln!(
        "{} refreshes in {took:?} ({refused} API refusals); open route: {} answers, median \
         {median:?}, worst {worst:?}; RSS {rss_before} kB before, {peak_rss} kB at most",
        answers.len(),
        sorted.len()
    );
    assert!(
        worst < Duration::from_secs(2),
        "the open route waited {worst:?} behind the signing flood"
    );
    assert!(
        peak_rss < rss_before + 256 * 1024,
        "the queue of pending signatures grew the process by {} kB",
        peak_rss - rss_before
    );
}

/// The claims of a token that differ from one signature to the next (instants, id).
fn stable(mut claims: Value) -> Value {
    for varying in ["iat", "exp", "jti", "auth_time", "nbf"] {
        claims.as_object_mut().expect("claims").remove(varying);
    }
    claims
}

#[test]
fn every_algorithm_signs_the_same_claims_and_verifies_with_its_published_key() {
    let hs384 = "h".repeat(48);
    let hs512 = "k".repeat(64);
    // The kit's keys (RS256, PS384, ES256, ES384, EdDSA, HS256) and one of every other
    // algorithm: generated by the gateway (kept in the store) or with a given secret.
    let generated: Vec<(Uuid, &str)> = ["RS384", "RS512", "PS256", "PS512", "ES512"]
        .into_iter()
        .map(|alg| (Uuid::new_v4(), alg))
        .collect();
    let (hs384_id, hs512_id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut extra = String::from("keys:\n");
    for (id, alg) in &generated {
        extra.push_str(&format!("  - {{id: {id}, algorithm: {alg}}}\n"));
    }
    extra.push_str(&format!(
        "  - {{id: {hs384_id}, algorithm: HS384, secret: \"{hs384}\"}}\n  - {{id: {hs512_id}, algorithm: HS512, secret: \"{hs512}\"}}\n"
    ));
    let (mut gw, _) = gateway(false, "refreshTokenUsagePolicy: Reusable", None);
    let config = |gw: &TestGateway, kid: Uuid| {
        gw.config_text(&options(kid, "refreshTokenUsagePolicy: Reusable"))
            .replacen("keys:\n", &extra, 1)
    };
    let hs256 = gw.keys.get(jsonwebtoken::Algorithm::HS256).clone();
    std::fs::write(&gw.config_path, config(&gw, hs256.0)).expect("config");
    gw.restart();
    let mut all: Vec<(Uuid, String, Option<String>)> = gw
        .keys
        .entries
        .iter()
        .map(|(id, alg, text)| {
            let name = key_algorithm(*alg).name().to_string();
            let secret = (*alg == jsonwebtoken::Algorithm::HS256).then(|| text.clone());
            (*id, name, secret)
        })
        .collect();
    all.extend(
        generated
            .iter()
            .map(|(id, alg)| (*id, alg.to_string(), None)),
    );
    all.push((hs384_id, "HS384".into(), Some(hs384.clone())));
    all.push((hs512_id, "HS512".into(), Some(hs512.clone())));
    // HMAC first: its signature is made inline, the baseline the others are compared with.
    all.sort_by_key(|(_, alg, _)| !alg.starts_with("HS"));
    assert_eq!(all.len(), 13, "every algorithm the gateway signs with");

    let session = gw.login("bytes@example.com", &["user"]);
    let values = more_sessions(&gw, &session, 2 * all.len());
    let keys = jwks(&gw);
    let (mut refreshed_baseline, mut vended_baseline) = (None, None);
    for (i, (kid, alg, secret)) in all.iter().enumerate() {
        std::fs::write(&gw.config_path, config(&gw, *kid)).expect("config");
        reload(&gw);
        let mut claims = Vec::new();
        for answer in [
            api_refresh(&client(), &gw, &values[2 * i]),
            edge_refresh(&client(), &gw, &values[2 * i + 1]),
        ] {
            let Answer::Pair { access, .. } = answer else {
                panic!("{alg}: {answer:?}");
            };
            claims.push(access);
        }
        let vended = check_status(
            client()
                .post(gw.url("/api/jwt/vend"))
                .header("Authorization", API_KEY)
                // The application's own key signs only tokens naming the application.
                .json(
                    &json!({"keyId": kid, "claims": {"sub": session.user_id, "scope": "x y",
                                                       "applicationId": APP}}),
                )
                .send()
                .expect("send"),
            200,
        );
        claims.push(vended["token"].as_str().expect("token").to_string());
        let decoded: Vec<(Value, Value)> = claims
            .iter()
            .map(|token| verified(token, &keys, secret.as_deref()))
            .collect();
        for (header, _) in &decoded {
            assert_eq!(header["alg"], json!(alg), "{header}");
            assert_eq!(header["kid"], json!(kid.to_string()), "{header}");
            assert_eq!(header["typ"], json!("JWT"), "{header}");
        }
        let (api, edge, vend) = (
            stable(decoded[0].1.clone()),
            stable(decoded[1].1.clone()),
            stable(decoded[2].1.clone()),
        );
        let mut edge_as_api = edge.clone();
        edge_as_api["sid"] = api["sid"].clone();
        assert_eq!(api, edge_as_api, "{alg}: the edge's and the API's claims");
        let mut comparable = api.clone();
        comparable["sid"] = json!("any");
        let baseline = refreshed_baseline.get_or_insert_with(|| comparable.clone());
        assert_eq!(
            &comparable, baseline,
            "{alg}: the same claims as the HMAC token"
        );
        let vended_baseline = vended_baseline.get_or_insert_with(|| vend.clone());
        assert_eq!(&vend, vended_baseline, "{alg}: the same vended claims");
    }
}
