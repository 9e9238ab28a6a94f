//! The verified-token cache attacked through the real binary: a token verified (and cached)
//! on one route must be judged afresh by every other route's policy, the upstream must get on
//! a cache hit exactly the identity headers of a fresh verification, `/api/jwt/validate` must
//! answer a cached token's real claims, and no other byte string (one byte changed, padding,
//! whitespace, a trailing dot) may ride on a cached token's verdict.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// Routes over `$UPSTREAM` that read unusual claims and check claims, audiences and another
/// application.
const ROUTES: &str = r#"
  - path: /odd
    upstream: $UPSTREAM
    auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32}
    identityHeaders: {X-Num: num, X-Flag: flag, X-List: list, X-Obj: obj, X-Nul: nul, X-Text: text, X-User-Id: sub}
  - path: /gold
    upstream: $UPSTREAM
    auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32, claims: {org.tier: gold}}
  - path: /my-api
    upstream: $UPSTREAM
    auth: {audiences: [my-api]}
  - path: /other
    upstream: $UPSTREAM
    auth: {applicationId: 4c219e58-ed0e-4b18-ad48-f4f92793ae32}
  - path: /crlf
    upstream: $UPSTREAM
    auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32}
    identityHeaders: {X-Bad: bad}
"#;

fn gateway(upstream: &RecordingUpstream) -> TestGateway {
    TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra_routes: ROUTES.into(),
        ..Options::default()
    })
}

/// `GET path` with `token`: the status and the body (the upstream's echo when it passed).
fn get(gw: &TestGateway, path: &str, token: &str) -> (u16, Value) {
    let response = client()
        .get(gw.url(path))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// The identity headers the upstream received (names starting with `x-` other than the
/// forwarding ones).
fn identity(echo: &Value) -> Value {
    let mut found = serde_json::Map::new();
    for (name, value) in echo["headers"].as_object().expect("headers") {
        if name.starts_with("x-") && !name.starts_with("x-forwarded") {
            found.insert(name.clone(), value.clone());
        }
    }
    Value::Object(found)
}

#[test]
fn a_cached_verdict_never_carries_to_another_route_and_a_hit_forwards_what_a_fresh_check_would() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let user = Uuid::new_v4();
    let mut claims = claims(user, APP, &["user"]);
    claims["num"] = json!(12.5);
    claims["flag"] = json!(false);
    claims["list"] = json!(["a", 2, true]);
    claims["obj"] = json!({"x": 1});
    claims["nul"] = Value::Null;
    // (Inner spaces only: a claim with surrounding whitespace is refused where forwarded.)
    claims["text"] = json!("ünïcødé ".repeat(200).trim_end());
    claims["org"] = json!({"tier": "silver"});
    claims["bad"] = json!("a\r\nX-Injected: 1");
    let token = gw.token(Algorithm::RS256, &claims);

    // The first request verifies and caches; every later one is a hit and must forward the
    // same identity, byte for byte.
    let (status, first) = get(&gw, "/odd", &token);
    assert_eq!(status, 200, "{first}");
    let expected = json!({
        "x-num": ["12.5"], "x-flag": ["false"], "x-list": ["a,2,true"],
        "x-text": ["ünïcødé ".repeat(200).trim_end()], "x-user-id": [user.to_string()],
    });
    // (The recording upstream trims values; the hits' header blocks are compared byte for
    // byte below.)
    assert_eq!(identity(&first), expected, "{first}");
    for _ in 0..3 {
        let (status, again) = get(&gw, "/odd", &token);
        assert_eq!(status, 200);
        assert_eq!(
            identity(&again),
            expected,
            "a hit forwards what the miss did"
        );
        assert_eq!(again["head"], first["head"], "the same header block");
    }

    // Cached now: every other route still applies its own policy to it.
    assert_eq!(get(&gw, "/gold", &token).0, 403, "claim check on a hit");
    assert_eq!(get(&gw, "/my-api", &token).0, 403, "audience on a hit");
    assert_eq!(get(&gw, "/other", &token).0, 403, "application on a hit");
    assert_eq!(get(&gw, "/admin", &token).0, 403, "role on a hit");
    let (status, refused) = get(&gw, "/crlf", &token);
    assert_eq!(
        status, 401,
        "a claim no header can carry, on a hit: {refused}"
    );
    assert!(
        refused.to_string().contains("cannot be passed on"),
        "{refused}"
    );
    // And the routes it may use still take it, after the refusals.
    assert_eq!(get(&gw, "/odd", &token).0, 200);

    // The other way round: a token cached by a route that passes it meets the claim check
    // of another route that refuses it, and one that passes the check is taken.
    claims["org"] = json!({"tier": "gold"});
    let gold = gw.token(Algorithm::RS256, &claims);
    assert_eq!(get(&gw, "/gold", &gold).0, 200);
    assert_eq!(get(&gw, "/gold", &gold).0, 200);
    assert_eq!(get(&gw, "/other", &gold).0, 403);

    // The API answers a cached token's real claims (decoded from the token, not a summary).
    let validate = client()
        .get(gw.url("/api/jwt/validate"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .expect("send");
    let body = check_status(validate, 200);
    for name in [
        "num", "flag", "list", "obj", "text", "org", "bad", "roles", "sub",
    ] {
        assert_eq!(body["jwt"][name], claims_of(&token)[name], "{name}: {body}");
    }
}

/// The claims a token carries, read from its payload.
fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&bytes).expect("json")
}

#[test]
fn no_other_bytes_ride_on_a_cached_token() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    assert_eq!(get(&gw, "/", &token).0, 200);
    assert_eq!(get(&gw, "/", &token).0, 200, "cached");
    let mut variants = vec![
        format!("{token}="),
        format!("{token}=="),
        format!("{token}."),
        // (Trailing whitespace is not part of a header value, RFC 9110 §5.5: the same token.)
        format!(".{token}"),
        format!("{token}A"),
        token[..token.len() - 1].to_string(),
    ];
    // One byte changed in each part: header, payload, signature.
    let dots: Vec<usize> = token.match_indices('.').map(|(i, _)| i).collect();
    for at in [1, dots[0] + 2, dots[1] + 2, token.len() - 2] {
        let mut bytes = token.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        variants.push(String::from_utf8(bytes).expect("text"));
    }
    for variant in &variants {
        let (status, body) = get(&gw, "/", variant);
        assert_eq!(status, 401, "{variant:?}: {body}");
        let api = client()
            .get(gw.url("/api/jwt/validate"))
            .header("Authorization", format!("Bearer {variant}"))
            .send()
            .expect("send");
        assert_eq!(api.status().as_u16(), 401, "{variant:?} at the API");
    }
    assert_eq!(get(&gw, "/", &token).0, 200, "the original is still taken");
}

#[test]
fn a_cached_token_is_refused_from_its_exp_second_on() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let mut claims = claims(Uuid::new_v4(), APP, &["user"]);
    claims["exp"] = json!(now() + 2);
    let token = gw.token(Algorithm::RS256, &claims);
    assert_eq!(get(&gw, "/", &token).0, 200);
    assert_eq!(get(&gw, "/", &token).0, 200, "cached");
    std::thread::sleep(Duration::from_millis(2100));
    let deadline = claims["exp"].as_i64().expect("exp");
    while now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(&gw, "/", &token).0, 401, "expired on a hit");
    let api = client()
        .get(gw.url("/api/jwt/validate"))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .expect("send");
    assert_eq!(api.status().as_u16(), 401, "expired at the API");
}
