//! The JWT API (`/api/jwt/*`, `/.well-known/*`) through the real binary: every endpoint, its
//! variants and its documented status codes. Users with refresh tokens come from the dev command
//! (`TestGateway::login`), which stores them in the gateway's own store.

use std::time::Duration;

use base64::Engine;
use jsonwebtoken::Algorithm;
use reqwest::blocking::{RequestBuilder, Response};
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A part of a compact JWT (0: header, 1: payload), decoded without verification.
fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn claims_of(token: &str) -> Value {
    jwt_part(token, 1)
}

fn header_of(token: &str) -> Value {
    jwt_part(token, 0)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The `Set-Cookie` values of a response.
fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii cookie").to_string())
        .collect()
}

/// The `Set-Cookie` value for cookie `name`.
fn cookie<'a>(cookies: &'a [String], name: &str) -> &'a str {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
}

/// The value of a `Set-Cookie` header.
fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, v)| v)
        .expect("name=value")
}

/// The `Max-Age` attribute of a `Set-Cookie` header.
fn max_age(set_cookie: &str) -> i64 {
    set_cookie
        .split(';')
        .find_map(|attribute| attribute.trim().strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("no Max-Age in {set_cookie}"))
        .parse()
        .expect("numeric Max-Age")
}

fn with_api_key(request: RequestBuilder) -> RequestBuilder {
    request.header("Authorization", API_KEY)
}

/// `POST /api/jwt/refresh` with a JSON body.
fn refresh(gw: &TestGateway, body: Value) -> Response {
    client()
        .post(gw.url("/api/jwt/refresh"))
        .json(&body)
        .send()
        .expect("send")
}

/// `POST /api/jwt/refresh` with `{"refreshToken": value}`, expecting 200; returns the body and
/// the `Set-Cookie` values.
fn refresh_ok(gw: &TestGateway, value: &str) -> (Value, Vec<String>) {
    let response = refresh(gw, json!({ "refreshToken": value }));
    let cookies = set_cookies(&response);
    (check_status(response, 200), cookies)
}

/// Asserts a 400 whose Errors JSON has `code` for field `refreshToken`.
fn assert_refresh_refused(response: Response, code: &str) {
    let body = check_status(response, 400);
    assert_eq!(
        body["fieldErrors"]["refreshToken"][0]["code"], code,
        "{body}"
    );
}

/// The status of `GET /api/jwt/validate` for `token`.
fn validate_status(gw: &TestGateway, token: &str) -> u16 {
    gw.get_as("/api/jwt/validate", token).status().as_u16()
}

/// The status of a proxied request to the main application's route with `token`.
fn proxied_status(gw: &TestGateway, token: &str) -> u16 {
    gw.get_as("/orders", token).status().as_u16()
}

/// `GET /api/jwt/refresh/{id}` with the main API key.
fn retrieve(gw: &TestGateway, id: &str) -> Response {
    with_api_key(client().get(gw.url(&format!("/api/jwt/refresh/{id}"))))
        .send()
        .expect("send")
}

/// The refresh tokens of `user_id`, with the main API key.
fn tokens_of(gw: &TestGateway, user_id: &str) -> Vec<Value> {
    let body = check_status(
        with_api_key(client().get(gw.url(&format!("/api/jwt/refresh?userId={user_id}"))))
            .send()
            .expect("send"),
        200,
    );
    body["refreshTokens"]
        .as_array()
        .expect("refreshTokens array")
        .clone()
}

/// `DELETE /api/jwt/refresh?{query}` with the main API key.
fn revoke_query(gw: &TestGateway, query: &str) -> Response {
    with_api_key(client().delete(gw.url(&format!("/api/jwt/refresh?{query}"))))
        .send()
        .expect("send")
}

/// Asserts a 400 with a FusionAuth Errors JSON body (and a JSON content type).
fn assert_errors_json(response: Response, what: &str) -> Value {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().unwrap_or_default();
    assert_eq!(status, 400, "{what}: unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content type {content_type:?}"
    );
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let general = body["generalErrors"].as_array().map_or(0, Vec::len);
    let fields = body["fieldErrors"].as_object().map_or(0, |m| m.len());
    assert!(general + fields > 0, "{what}: no errors in {body}");
    for item in body["generalErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            body["fieldErrors"]
                .as_object()
                .into_iter()
                .flat_map(|m| m.values())
                .flat_map(|v| v.as_array().into_iter().flatten()),
        )
    {
        assert!(item["code"].is_string(), "{what}: code in {item}");
        assert!(item["message"].is_string(), "{what}: message in {item}");
    }
    body
}

// ---------------------------------------------------------------------------------------------
// GET /api/jwt/issue
// ---------------------------------------------------------------------------------------------

#[test]
fn issue_for_a_registered_application_keeps_exp_and_is_jwt_sso() {
    let gw = TestGateway::start();
    let session = gw.login("sso@example.com", &["user", "admin"]);
    let other = gw.login_to(OTHER_APP, "sso@example.com", &[]);
    assert_eq!(other.user_id, session.user_id, "same user by email");

    let body = check_status(
        gw.get_as(
            &format!("/api/jwt/issue?applicationId={OTHER_APP}"),
            &session.token,
        ),
        200,
    );
    assert!(body.get("refreshToken").is_none(), "{body}");
    let token = body["token"].as_str().expect("token");
    let issued = claims_of(token);
    let source = claims_of(&session.token);
    assert_eq!(
        issued["exp"], source["exp"],
        "same expiration as the source"
    );
    assert_eq!(issued["authenticationType"], "JWT_SSO");
    assert_eq!(issued["applicationId"], OTHER_APP);
    assert_eq!(issued["aud"], OTHER_APP);
    assert_eq!(issued["sub"], session.user_id);
    assert_eq!(issued["roles"], json!(["viewer"]));
    assert_eq!(issued["iss"], ISSUER);
    assert_eq!(validate_status(&gw, token), 200);

    // The access_token cookie authenticates too.
    let body = check_status(
        client()
            .get(gw.url(&format!("/api/jwt/issue?applicationId={APP}")))
            .header("Cookie", format!("access_token={}", session.token))
            .send()
            .expect("send"),
        200,
    );
    let issued = claims_of(body["token"].as_str().expect("token"));
    assert_eq!(issued["applicationId"], APP);
    assert_eq!(issued["roles"], json!(["user", "admin"]));
}

#[test]
fn issue_for_an_unregistered_application_is_202_without_application_claims() {
    let gw = TestGateway::start();
    let session = gw.login("lonely@example.com", &[]);
    let body = check_status(
        gw.get_as(
            &format!(
                "/api/jwt/issue?applicationId={OTHER_APP}&refreshToken={}",
                session.refresh_token
            ),
            &session.token,
        ),
        202,
    );
    // Not registered: no refresh token either.
    assert!(body.get("refreshToken").is_none(), "{body}");
    let issued = claims_of(body["token"].as_str().expect("token"));
    assert!(issued.get("applicationId").is_none(), "{issued}");
    assert!(issued.get("roles").is_none(), "{issued}");
    assert_eq!(issued["sub"], session.user_id);
    assert_eq!(issued["authenticationType"], "JWT_SSO");
    assert_eq!(issued["exp"], claims_of(&session.token)["exp"]);
}

#[test]
fn issue_adds_a_refresh_token_and_the_cookie_wins_over_the_parameter() {
    let gw = TestGateway::start();
    let session = gw.login("sso-refresh@example.com", &[]);
    gw.login_to(OTHER_APP, "sso-refresh@example.com", &[]);
    let issue = |cookie: Option<&str>, parameter: Option<&str>| {
        let mut url = format!("/api/jwt/issue?applicationId={OTHER_APP}");
        if let Some(p) = parameter {
            url.push_str(&format!("&refreshToken={p}"));
        }
        let mut request = client().get(gw.url(&url)).bearer_auth(&session.token);
        if let Some(c) = cookie {
            request = request.header("Cookie", format!("refresh_token={c}"));
        }
        check_status(request.send().expect("send"), 200)
    };

    // The parameter alone.
    let body = issue(None, Some(&session.refresh_token));
    let derived = body["refreshToken"]
        .as_str()
        .expect("a refresh token for the target application")
        .to_string();
    assert_ne!(derived, session.refresh_token);
    // It is a refresh token of the target application that shares the source's start.
    let tokens = tokens_of(&gw, &session.user_id);
    let source = tokens
        .iter()
        .find(|t| t["id"] == session.refresh_token_id)
        .expect("source");
    let stored = tokens
        .iter()
        .find(|t| t["token"] == derived)
        .expect("derived token stored");
    assert_eq!(stored["applicationId"], OTHER_APP);
    assert_eq!(stored["startInstant"], source["startInstant"]);
    let (refreshed, _) = refresh_ok(&gw, &derived);
    assert_eq!(
        claims_of(refreshed["token"].as_str().expect("token"))["applicationId"],
        OTHER_APP
    );

    // The cookie alone.
    let body = issue(Some(&session.refresh_token), None);
    assert!(body["refreshToken"].is_string(), "{body}");
    // Both: the cookie wins, whichever of the two is the valid one.
    let body = issue(Some("not-a-refresh-token"), Some(&session.refresh_token));
    assert!(
        body.get("refreshToken").is_none(),
        "cookie must win: {body}"
    );
    let body = issue(Some(&session.refresh_token), Some("not-a-refresh-token"));
    assert!(body["refreshToken"].is_string(), "cookie must win: {body}");
    // An unknown refresh token: a token, but no refresh token.
    let body = issue(None, Some("unknown"));
    assert!(body["token"].is_string());
    assert!(body.get("refreshToken").is_none(), "{body}");
}

#[test]
fn issue_gives_no_refresh_token_for_someone_elses_an_expired_one_or_another_policy() {
    // The main application slides its refresh tokens; the other one keeps the tenant's Fixed.
    let gw = TestGateway::start_with(Options {
        app_jwt:
            "enabled: true, timeToLiveInSeconds: 300, refreshTokenExpirationPolicy: SlidingWindow"
                .into(),
        ..Options::default()
    });
    let ann = gw.login("ann@example.com", &[]);
    let ann_other = gw.login_to(OTHER_APP, "ann@example.com", &[]);
    let bob = gw.login_to(OTHER_APP, "bob@example.com", &[]);
    let issue = |target: &str, refresh_token: &str| {
        check_status(
            gw.get_as(
                &format!("/api/jwt/issue?applicationId={target}&refreshToken={refresh_token}"),
                &ann.token,
            ),
            200,
        )
    };
    // Different expiration policies (SlidingWindow → Fixed): no refresh token.
    let body = issue(OTHER_APP, &ann.refresh_token);
    assert!(body["token"].is_string());
    assert!(body.get("refreshToken").is_none(), "{body}");
    // Fixed → SlidingWindow: none either.
    let body = issue(APP, &ann_other.refresh_token);
    assert!(body.get("refreshToken").is_none(), "{body}");
    // Another user's refresh token: none.
    let body = issue(OTHER_APP, &bob.refresh_token);
    assert!(body.get("refreshToken").is_none(), "{body}");
    // The user's own, same policy: one.
    let body = issue(OTHER_APP, &ann_other.refresh_token);
    assert!(body["refreshToken"].is_string(), "{body}");
    // Expired: none.
    gw.age_refresh_token(&ann_other.refresh_token_id, (43_200 + 1) * 60_000);
    let body = issue(OTHER_APP, &ann_other.refresh_token);
    assert!(body.get("refreshToken").is_none(), "{body}");
}

#[test]
fn issue_refuses_missing_invalid_and_expired_tokens_and_bad_parameters() {
    let gw = TestGateway::start();
    let session = gw.login("issue-errors@example.com", &[]);
    let http = client();
    let issue_url = gw.url(&format!("/api/jwt/issue?applicationId={APP}"));

    // 401: no token, garbage, expired, foreign signature. The response is empty.
    let response = http.get(&issue_url).send().expect("send");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.text().expect("text").is_empty());
    let mut expired = claims(Uuid::parse_str(&session.user_id).expect("uuid"), APP, &[]);
    expired["exp"] = json!(now() - 5);
    let expired = gw.token(Algorithm::RS256, &expired);
    for (name, token) in [("garbage", "not.a.jwt"), ("expired", expired.as_str())] {
        let status = http
            .get(&issue_url)
            .bearer_auth(token)
            .send()
            .expect("send")
            .status()
            .as_u16();
        assert_eq!(status, 401, "{name}");
    }
    // A well-signed token for a user the gateway does not know.
    let stranger = gw.token(Algorithm::ES256, &claims(Uuid::new_v4(), APP, &[]));
    check_status(
        http.get(&issue_url)
            .bearer_auth(&stranger)
            .send()
            .expect("send"),
        401,
    );

    // 400: applicationId missing, not a UUID, unknown.
    let body = assert_errors_json(
        gw.get_as("/api/jwt/issue", &session.token),
        "no applicationId",
    );
    assert_eq!(
        body["fieldErrors"]["applicationId"][0]["code"],
        "[blank]applicationId"
    );
    for query in [
        "applicationId=not-a-uuid".to_string(),
        format!("applicationId={}", Uuid::new_v4()),
    ] {
        let body = assert_errors_json(
            gw.get_as(&format!("/api/jwt/issue?{query}"), &session.token),
            &query,
        );
        assert!(body["fieldErrors"]["applicationId"].is_array(), "{body}");
    }
}

// ---------------------------------------------------------------------------------------------
// GET /api/jwt/public-key, /.well-known/*
// ---------------------------------------------------------------------------------------------

#[test]
fn public_keys_all_by_kid_by_key_id_and_by_application_never_hmac() {
    let gw = TestGateway::start();
    let hmac = gw.keys.get(Algorithm::HS256).clone();
    let http = client();
    let rs = gw.keys.get(Algorithm::RS256).0.to_string();

    let body = check_status(
        http.get(gw.url("/api/jwt/public-key"))
            .send()
            .expect("send"),
        200,
    );
    let all = body["publicKeys"].as_object().expect("publicKeys map");
    let expected: Vec<String> = gw
        .keys
        .entries
        .iter()
        .filter(|(_, a, _)| *a != Algorithm::HS256)
        .map(|(id, _, _)| id.to_string())
        .collect();
    assert_eq!(all.len(), expected.len(), "{body}");
    for kid in &expected {
        let pem = all[kid].as_str().expect("PEM");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    }
    assert!(!all.contains_key(&hmac.0.to_string()), "HMAC key listed");
    assert!(!body.to_string().contains(&hmac.2), "HMAC secret leaked");

    // One key, by kid (the prose docs and the Python client) or keyId.
    for param in ["kid", "keyId"] {
        for kid in &expected {
            let body = check_status(
                http.get(gw.url(&format!("/api/jwt/public-key?{param}={kid}")))
                    .send()
                    .expect("send"),
                200,
            );
            assert_eq!(body["publicKey"], all[kid], "{param}={kid}");
        }
        for missing in [hmac.0, Uuid::new_v4()] {
            let response = http
                .get(gw.url(&format!("/api/jwt/public-key?{param}={missing}")))
                .send()
                .expect("send");
            assert_eq!(response.status().as_u16(), 404, "{param}={missing}");
            let text = response.text().expect("text");
            assert!(!text.contains(&hmac.2), "HMAC secret leaked");
        }
    }

    // The key that signs an application's access tokens (here the tenant's RS256 key).
    let body = check_status(
        http.get(gw.url(&format!("/api/jwt/public-key?applicationId={APP}")))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["publicKey"], all[&rs]);
    check_status(
        http.get(gw.url(&format!(
            "/api/jwt/public-key?applicationId={}",
            Uuid::new_v4()
        )))
        .send()
        .expect("send"),
        404,
    );
    assert_errors_json(
        http.get(gw.url("/api/jwt/public-key?applicationId=nope"))
            .send()
            .expect("send"),
        "applicationId not a UUID",
    );
}

#[test]
fn an_application_signing_with_hmac_has_no_public_key() {
    let keys = Keys::generate();
    let hmac = keys.get(Algorithm::HS256).0;
    let gw = TestGateway::start_with_keys(
        Options {
            app_jwt: format!("enabled: true, accessTokenKeyId: {hmac}, timeToLiveInSeconds: 300"),
            ..Options::default()
        },
        keys,
    );
    check_status(
        client()
            .get(gw.url(&format!("/api/jwt/public-key?applicationId={APP}")))
            .send()
            .expect("send"),
        404,
    );
    // The other application uses the tenant's RS256 key.
    let body = check_status(
        client()
            .get(gw.url(&format!("/api/jwt/public-key?applicationId={OTHER_APP}")))
            .send()
            .expect("send"),
        200,
    );
    assert!(body["publicKey"]
        .as_str()
        .expect("pem")
        .starts_with("-----BEGIN PUBLIC KEY-----"));
}

#[test]
fn jwks_and_openid_configuration_publish_the_asymmetric_keys() {
    let gw = TestGateway::start();
    let http = client();
    let jwks = check_status(
        http.get(gw.url("/.well-known/jwks.json"))
            .send()
            .expect("send"),
        200,
    );
    let listed = check_status(
        http.get(gw.url("/api/jwt/public-key"))
            .send()
            .expect("send"),
        200,
    );
    let keys = jwks["keys"].as_array().expect("keys");
    let public = listed["publicKeys"].as_object().expect("publicKeys");
    assert_eq!(keys.len(), public.len(), "{jwks}");
    let hmac = gw.keys.get(Algorithm::HS256);
    for jwk in keys {
        let kid = jwk["kid"].as_str().expect("kid");
        assert!(public.contains_key(kid), "{kid} not in the public keys");
        assert!(jwk["kty"].is_string(), "{jwk}");
        assert!(jwk["alg"].is_string(), "{jwk}");
        assert_eq!(jwk["use"], "sig", "{jwk}");
        assert!(jwk.get("k").is_none(), "symmetric key material: {jwk}");
        assert!(jwk.get("d").is_none(), "private key material: {jwk}");
        assert_ne!(kid, hmac.0.to_string());
    }
    assert!(!jwks.to_string().contains(&hmac.2), "HMAC secret leaked");

    let body = check_status(
        http.get(gw.url("/.well-known/openid-configuration"))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["issuer"], ISSUER);
    assert_eq!(
        body["jwks_uri"],
        format!("http://127.0.0.1:{}/.well-known/jwks.json", gw.port)
    );
    let algorithms = body["id_token_signing_alg_values_supported"]
        .as_array()
        .expect("algorithms");
    assert!(algorithms.contains(&json!("RS256")), "{body}");
    assert!(!algorithms.contains(&json!("HS256")), "{body}");

    let body = check_status(
        http.get(gw.url("/.well-known/openid-configuration"))
            .header("X-FusionAuth-TenantId", OTHER_TENANT)
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["issuer"], "other.test");
    check_status(
        http.get(gw.url("/.well-known/openid-configuration"))
            .header("X-FusionAuth-TenantId", Uuid::new_v4().to_string())
            .send()
            .expect("send"),
        404,
    );
    assert_errors_json(
        http.get(gw.url("/.well-known/openid-configuration"))
            .header("X-FusionAuth-TenantId", "nope")
            .send()
            .expect("send"),
        "bad tenant header",
    );
}

// ---------------------------------------------------------------------------------------------
// POST /api/jwt/refresh
// ---------------------------------------------------------------------------------------------

#[test]
fn refresh_returns_an_access_token_cookies_and_records_the_use() {
    // The gateway sits behind a proxy it trusts on loopback, so X-Forwarded-For is believed.
    let gw = TestGateway::start_with(Options {
        extra: "trustedProxies: [127.0.0.1]".into(),
        ..Options::default()
    });
    let session = gw.login("refresh@example.com", &["admin"]);
    let before = now_millis();
    let response = client()
        .post(gw.url("/api/jwt/refresh"))
        .header("X-Forwarded-For", "203.0.113.9")
        .json(&json!({ "refreshToken": session.refresh_token, "token": session.token }))
        .send()
        .expect("send");
    let cookies = set_cookies(&response);
    let body = check_status(response, 200);
    let after = now_millis();

    // Reusable: the same refresh token, and its stable id.
    assert_eq!(body["refreshToken"], session.refresh_token);
    assert_eq!(body["refreshTokenId"], session.refresh_token_id);
    let token = body["token"].as_str().expect("token");
    let claims = claims_of(token);
    assert_eq!(claims["authenticationType"], "REFRESH_TOKEN");
    assert_eq!(claims["sid"], session.refresh_token_id);
    assert_eq!(claims["sub"], session.user_id);
    assert_eq!(claims["applicationId"], APP);
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        300,
        "the application's access token lifetime"
    );
    assert_eq!(validate_status(&gw, token), 200);
    assert_eq!(proxied_status(&gw, token), 200);

    // The cookies: HttpOnly; the access token's a session cookie (as FusionAuth documents
    // it), the refresh token's with Max-Age.
    let access = cookie(&cookies, "access_token");
    assert_eq!(cookie_value(access), token);
    assert!(access.contains("HttpOnly"), "{access}");
    assert!(
        !access.contains("Max-Age") && !access.contains("Expires"),
        "{access}"
    );
    let refresh_cookie = cookie(&cookies, "refresh_token");
    assert_eq!(cookie_value(refresh_cookie), session.refresh_token);
    assert!(refresh_cookie.contains("HttpOnly"), "{refresh_cookie}");
    let thirty_days = 43_200 * 60;
    let age = max_age(refresh_cookie);
    assert!(
        (thirty_days - 30..=thirty_days).contains(&age),
        "{refresh_cookie}"
    );

    // The use is recorded on the token: address (the hop the trusted proxy forwarded) and
    // instant.
    let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
    let device = &stored["refreshToken"]["metaData"]["device"];
    assert_eq!(device["lastAccessedAddress"], "203.0.113.9", "{stored}");
    let instant = device["lastAccessedInstant"].as_i64().expect("instant");
    assert!((before..=after).contains(&instant), "{stored}");

    // Without X-Forwarded-For, the peer address.
    refresh_ok(&gw, &session.refresh_token);
    let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
    assert_eq!(
        stored["refreshToken"]["metaData"]["device"]["lastAccessedAddress"],
        "127.0.0.1"
    );
}

#[test]
fn refresh_takes_the_cookie_over_the_body() {
    let gw = TestGateway::start();
    let session = gw.login("cookie@example.com", &[]);
    let post = |cookie: Option<&str>, body: Option<Value>| {
        let mut request = client().post(gw.url("/api/jwt/refresh"));
        if let Some(c) = cookie {
            request = request.header("Cookie", format!("theme=dark; refresh_token={c}"));
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        request.send().expect("send")
    };
    // The cookie alone, with no body at all.
    let body = check_status(post(Some(&session.refresh_token), None), 200);
    assert_eq!(body["refreshTokenId"], session.refresh_token_id);
    // Cookie valid, body invalid: the cookie wins.
    let body = check_status(
        post(
            Some(&session.refresh_token),
            Some(json!({"refreshToken": "not-a-refresh-token"})),
        ),
        200,
    );
    assert_eq!(body["refreshTokenId"], session.refresh_token_id);
    // Cookie invalid, body valid: the cookie still wins.
    assert_refresh_refused(
        post(
            Some("not-a-refresh-token"),
            Some(json!({"refreshToken": session.refresh_token})),
        ),
        "[invalid]refreshToken",
    );
}

#[test]
fn one_time_use_rotates_and_refuses_the_old_value() {
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse"
            .into(),
        ..Options::default()
    });
    let session = gw.login("rotate@example.com", &[]);
    let (first, cookies) = refresh_ok(&gw, &session.refresh_token);
    let second_value = first["refreshToken"].as_str().expect("value").to_string();
    assert_ne!(second_value, session.refresh_token, "a new value");
    assert_eq!(first["refreshTokenId"], session.refresh_token_id, "same id");
    assert_eq!(
        cookie_value(cookie(&cookies, "refresh_token")),
        second_value
    );
    assert_eq!(
        claims_of(first["token"].as_str().expect("token"))["sid"],
        session.refresh_token_id
    );

    // The old value is refused from now on.
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": session.refresh_token})),
        "[invalid]refreshToken",
    );
    // The new one works once, and rotates again under the same id.
    let (second, _) = refresh_ok(&gw, &second_value);
    let third_value = second["refreshToken"].as_str().expect("value").to_string();
    assert_ne!(third_value, second_value);
    assert_eq!(second["refreshTokenId"], session.refresh_token_id);
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": second_value})),
        "[invalid]refreshToken",
    );
    // The stored token is the latest value, under the original id.
    let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
    assert_eq!(stored["refreshToken"]["token"], third_value);
    assert_eq!(stored["refreshToken"]["id"], session.refresh_token_id);
    assert_eq!(tokens_of(&gw, &session.user_id).len(), 1);
}

/// Parallel refreshes with one one-time-use value (grace period 0): one rotation; a request
/// that overlapped it gets its outcome (the same pair), one that came after it is refused.
#[test]
fn concurrent_one_time_use_refreshes_rotate_exactly_once() {
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse"
            .into(),
        ..Options::default()
    });
    let session = gw.login("race@example.com", &[]);
    let outcomes: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let response = refresh(&gw, json!({"refreshToken": session.refresh_token}));
                    let status = response.status().as_u16();
                    (status, response.json().unwrap_or(Value::Null))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let winners: Vec<&Value> = outcomes
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert!(!winners.is_empty(), "{outcomes:?}");
    let pairs: std::collections::HashSet<(String, String)> = winners
        .iter()
        .map(|b| (b["refreshToken"].to_string(), b["token"].to_string()))
        .collect();
    assert_eq!(pairs.len(), 1, "one rotation, one pair: {outcomes:?}");
    let db = rusqlite::Connection::open(gw.store_path()).expect("open store");
    let rotations: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rotated_refresh_tokens WHERE token_id = ?1",
            [&session.refresh_token_id],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(rotations, 1);
    for (status, body) in &outcomes {
        assert!(*status == 200 || *status == 400, "{status}: {body}");
        if *status == 400 {
            assert_eq!(
                body["fieldErrors"]["refreshToken"][0]["code"],
                "[invalid]refreshToken"
            );
        }
    }
    // The winner's value is the live one.
    let current = winners[0]["refreshToken"].as_str().expect("value");
    let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
    assert_eq!(stored["refreshToken"]["token"], current);
    refresh_ok(&gw, current);
}

#[test]
fn concurrent_reusable_refreshes_all_succeed() {
    let gw = TestGateway::start();
    let session = gw.login("parallel@example.com", &[]);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    refresh(&gw, json!({"refreshToken": session.refresh_token}))
                        .status()
                        .as_u16()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

/// Refresh tokens live one minute here; `age_refresh_token` brings each to a few seconds
/// before its end, so expiry is observed within the test's time budget.
fn one_minute_refresh_tokens(policy: &str) -> Options {
    Options {
        app_jwt: format!(
            "enabled: true, timeToLiveInSeconds: 300, refreshTokenTimeToLiveInMinutes: 1, \
             refreshTokenExpirationPolicy: {policy}"
        ),
        ..Options::default()
    }
}

#[test]
fn fixed_expiration_does_not_move_when_the_token_is_used() {
    let gw = TestGateway::start_with(one_minute_refresh_tokens("Fixed"));
    let session = gw.login("fixed@example.com", &[]);
    let (_, cookies) = refresh_ok(&gw, &session.refresh_token);
    assert!((50..=60).contains(&max_age(cookie(&cookies, "refresh_token"))));

    // 56 s of its 60 s are gone: a use still works, but does not extend it.
    gw.age_refresh_token(&session.refresh_token_id, 56_000);
    let start = check_status(retrieve(&gw, &session.refresh_token_id), 200)["refreshToken"]
        ["startInstant"]
        .clone();
    let (_, cookies) = refresh_ok(&gw, &session.refresh_token);
    assert!(
        max_age(cookie(&cookies, "refresh_token")) <= 4,
        "{cookies:?}"
    );
    let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
    assert_eq!(stored["refreshToken"]["startInstant"], start, "start moved");

    std::thread::sleep(Duration::from_millis(4_300));
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": session.refresh_token})),
        "[invalid]refreshToken",
    );
}

#[test]
fn sliding_window_expiration_moves_with_each_use() {
    let gw = TestGateway::start_with(one_minute_refresh_tokens("SlidingWindow"));
    let session = gw.login("sliding@example.com", &[]);
    gw.age_refresh_token(&session.refresh_token_id, 56_000);
    let before = now_millis();
    let (_, cookies) = refresh_ok(&gw, &session.refresh_token);
    // The window restarted at the use: a full minute again.
    assert!(
        (59..=60).contains(&max_age(cookie(&cookies, "refresh_token"))),
        "{cookies:?}"
    );
    let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
    let start = stored["refreshToken"]["startInstant"]
        .as_i64()
        .expect("startInstant");
    assert!(start >= before, "start did not move: {stored}");

    // Past the original end: still valid, because the use moved the window.
    std::thread::sleep(Duration::from_millis(4_300));
    refresh_ok(&gw, &session.refresh_token);
    // Unused for a whole window: expired.
    gw.age_refresh_token(&session.refresh_token_id, 61_000);
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": session.refresh_token})),
        "[invalid]refreshToken",
    );
}

#[test]
fn refresh_refuses_missing_unknown_expired_revoked_and_foreign_tenant_tokens() {
    let gw = TestGateway::start();
    let session = gw.login("refresh-errors@example.com", &[]);
    // Missing: no body, an empty object, an empty value.
    let response = client()
        .post(gw.url("/api/jwt/refresh"))
        .send()
        .expect("send");
    assert_refresh_refused(response, "[blank]refreshToken");
    assert_refresh_refused(refresh(&gw, json!({})), "[blank]refreshToken");
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": ""})),
        "[blank]refreshToken",
    );
    // Unknown.
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": "unknown-value"})),
        "[invalid]refreshToken",
    );
    // Scoped to another tenant: it does not exist there.
    assert_refresh_refused(
        client()
            .post(gw.url("/api/jwt/refresh"))
            .header("X-FusionAuth-TenantId", OTHER_TENANT)
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .expect("send"),
        "[invalid]refreshToken",
    );
    // Its own tenant is fine.
    check_status(
        client()
            .post(gw.url("/api/jwt/refresh"))
            .header("X-FusionAuth-TenantId", TENANT)
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .expect("send"),
        200,
    );
    // Expired (30 days and a minute old).
    let old = gw.login("refresh-errors@example.com", &[]);
    gw.age_refresh_token(&old.refresh_token_id, (43_200 + 1) * 60_000);
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": old.refresh_token})),
        "[invalid]refreshToken",
    );
    // Revoked.
    check_status(
        revoke_query(&gw, &format!("token={}", session.refresh_token)),
        200,
    );
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": session.refresh_token})),
        "[invalid]refreshToken",
    );
}

// ---------------------------------------------------------------------------------------------
// GET /api/jwt/refresh/{tokenId}, GET /api/jwt/refresh?userId=
// ---------------------------------------------------------------------------------------------

#[test]
fn retrieve_by_id_and_by_user_with_an_api_key() {
    let gw = TestGateway::start();
    let first = gw.login("retrieve@example.com", &[]);
    let second = gw.login("retrieve@example.com", &[]);
    assert_eq!(first.user_id, second.user_id);
    let http = client();

    let body = check_status(retrieve(&gw, &first.refresh_token_id), 200);
    let token = &body["refreshToken"];
    assert_eq!(token["id"], first.refresh_token_id);
    assert_eq!(token["token"], first.refresh_token);
    assert_eq!(token["userId"], first.user_id);
    assert_eq!(token["applicationId"], APP);
    assert_eq!(token["tenantId"], TENANT);
    assert!(token["insertInstant"].is_i64(), "{token}");
    assert!(token["startInstant"].is_i64(), "{token}");
    assert!(token["metaData"].is_object(), "{token}");

    let listed = tokens_of(&gw, &first.user_id);
    let mut ids: Vec<&str> = listed
        .iter()
        .map(|t| t["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    let mut expected = vec![
        first.refresh_token_id.as_str(),
        second.refresh_token_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert!(tokens_of(&gw, &Uuid::new_v4().to_string()).is_empty());

    // 401: no key, a wrong key, a JWT (this API takes API keys only).
    let by_id = gw.url(&format!("/api/jwt/refresh/{}", first.refresh_token_id));
    let by_user = gw.url(&format!("/api/jwt/refresh?userId={}", first.user_id));
    for url in [&by_id, &by_user] {
        let response = http.get(url).send().expect("send");
        assert_eq!(response.status().as_u16(), 401, "{url}");
        assert!(response.text().expect("text").is_empty());
        let status = http
            .get(url)
            .header("Authorization", "wrong-key")
            .send()
            .expect("send")
            .status()
            .as_u16();
        assert_eq!(status, 401, "{url}");
    }
    let status = http
        .get(&by_id)
        .bearer_auth(&first.token)
        .send()
        .expect("send")
        .status()
        .as_u16();
    assert_eq!(status, 401);

    // 404: unknown, and revoked.
    check_status(retrieve(&gw, &Uuid::new_v4().to_string()), 404);
    check_status(
        revoke_query(&gw, &format!("token={}", second.refresh_token)),
        200,
    );
    check_status(retrieve(&gw, &second.refresh_token_id), 404);
    assert_eq!(tokens_of(&gw, &first.user_id).len(), 1);

    // userId is required with an API key.
    let body = assert_errors_json(
        with_api_key(http.get(gw.url("/api/jwt/refresh")))
            .send()
            .expect("send"),
        "no userId",
    );
    assert_eq!(body["fieldErrors"]["userId"][0]["code"], "[blank]userId");
}

#[test]
fn the_users_own_jwt_lists_only_its_own_tokens() {
    let gw = TestGateway::start();
    let ann = gw.login("ann@example.com", &[]);
    let bob = gw.login("bob@example.com", &[]);
    let body = check_status(gw.get_as("/api/jwt/refresh", &ann.token), 200);
    let tokens = body["refreshTokens"].as_array().expect("array");
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["id"], ann.refresh_token_id);
    check_status(
        gw.get_as(
            &format!("/api/jwt/refresh?userId={}", bob.user_id),
            &ann.token,
        ),
        401,
    );
}

#[test]
fn a_tenant_locked_key_cannot_see_or_revoke_another_tenants_tokens() {
    let gw = TestGateway::start();
    let session = gw.login("tenant@example.com", &[]);
    let http = client();
    let locked = |request: RequestBuilder| request.header("Authorization", TENANT_API_KEY);

    check_status(
        locked(http.get(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id))))
            .send()
            .expect("send"),
        404,
    );
    let body = check_status(
        locked(http.get(gw.url(&format!("/api/jwt/refresh?userId={}", session.user_id))))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["refreshTokens"], json!([]));
    // The global key scoped by header behaves the same.
    check_status(
        with_api_key(http.get(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id))))
            .header("X-FusionAuth-TenantId", OTHER_TENANT)
            .send()
            .expect("send"),
        404,
    );
    // A locked key cannot widen its scope with the header.
    check_status(
        locked(http.get(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id))))
            .header("X-FusionAuth-TenantId", TENANT)
            .send()
            .expect("send"),
        401,
    );
    // Revocations: every form answers 404 and changes nothing.
    for query in [
        format!("token={}", session.refresh_token),
        format!("userId={}", session.user_id),
        format!("applicationId={APP}"),
        format!("userId={}&applicationId={APP}", session.user_id),
    ] {
        check_status(
            locked(http.delete(gw.url(&format!("/api/jwt/refresh?{query}"))))
                .send()
                .expect("send"),
            404,
        );
    }
    check_status(
        locked(http.delete(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id))))
            .send()
            .expect("send"),
        404,
    );
    check_status(retrieve(&gw, &session.refresh_token_id), 200);
    refresh_ok(&gw, &session.refresh_token);
    assert_eq!(validate_status(&gw, &session.token), 200);
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/jwt/refresh, DELETE /api/jwt/refresh/{tokenId}
// ---------------------------------------------------------------------------------------------

#[test]
fn revoke_by_token_in_the_query_a_form_body_or_a_json_body() {
    let gw = TestGateway::start();
    let by_query = gw.login("revoke-token@example.com", &[]);
    let by_form = gw.login("revoke-token@example.com", &[]);
    let by_json = gw.login("revoke-token@example.com", &[]);
    let kept = gw.login("revoke-token@example.com", &[]);
    let http = client();

    let response = revoke_query(&gw, &format!("token={}", by_query.refresh_token));
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.text().expect("text").is_empty(), "no body");

    check_status(
        with_api_key(http.delete(gw.url("/api/jwt/refresh")))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={}", by_form.refresh_token))
            .send()
            .expect("send"),
        200,
    );
    check_status(
        with_api_key(http.delete(gw.url("/api/jwt/refresh")))
            .json(&json!({"token": by_json.refresh_token}))
            .send()
            .expect("send"),
        200,
    );
    for revoked in [&by_query, &by_form, &by_json] {
        assert_refresh_refused(
            refresh(&gw, json!({"refreshToken": revoked.refresh_token})),
            "[invalid]refreshToken",
        );
        check_status(retrieve(&gw, &revoked.refresh_token_id), 404);
    }
    refresh_ok(&gw, &kept.refresh_token);
    // An unknown (or already revoked) token: 404.
    check_status(
        revoke_query(&gw, &format!("token={}", by_query.refresh_token)),
        404,
    );
}

#[test]
fn revoke_by_user_by_application_and_by_both() {
    let gw = TestGateway::start();
    let ann_app = gw.login("ann@example.com", &[]);
    let ann_other = gw.login_to(OTHER_APP, "ann@example.com", &[]);
    let bob_app = gw.login("bob@example.com", &[]);
    let bob_other = gw.login_to(OTHER_APP, "bob@example.com", &[]);
    let alive = |s: &Session| retrieve(&gw, &s.refresh_token_id).status().as_u16() == 200;

    // A user's tokens for one application.
    check_status(
        revoke_query(
            &gw,
            &format!("userId={}&applicationId={APP}", ann_app.user_id),
        ),
        200,
    );
    assert!(!alive(&ann_app));
    assert!(alive(&ann_other) && alive(&bob_app) && alive(&bob_other));

    // Every token of an application.
    check_status(revoke_query(&gw, &format!("applicationId={APP}")), 200);
    assert!(!alive(&bob_app));
    assert!(alive(&ann_other) && alive(&bob_other));

    // Every token of a user.
    check_status(
        revoke_query(&gw, &format!("userId={}", bob_other.user_id)),
        200,
    );
    assert!(!alive(&bob_other));
    assert!(alive(&ann_other));
    assert_eq!(tokens_of(&gw, &ann_other.user_id).len(), 1);
    assert!(tokens_of(&gw, &bob_other.user_id).is_empty());

    // Unknown user or application: 404.
    check_status(
        revoke_query(&gw, &format!("userId={}", Uuid::new_v4())),
        404,
    );
    check_status(
        revoke_query(&gw, &format!("applicationId={}", Uuid::new_v4())),
        404,
    );
}

#[test]
fn revoke_by_id_or_value_with_an_api_key_or_the_owners_jwt() {
    let gw = TestGateway::start();
    let ann = gw.login("ann@example.com", &[]);
    let ann_second = gw.login("ann@example.com", &[]);
    let ann_third = gw.login("ann@example.com", &[]);
    let bob = gw.login("bob@example.com", &[]);
    let http = client();
    let delete_by_id = |id: &str| http.delete(gw.url(&format!("/api/jwt/refresh/{id}")));

    // Another user's JWT: 401, and nothing is revoked.
    check_status(
        delete_by_id(&ann.refresh_token_id)
            .bearer_auth(&bob.token)
            .send()
            .expect("send"),
        401,
    );
    check_status(
        http.delete(gw.url(&format!("/api/jwt/refresh?token={}", ann.refresh_token)))
            .bearer_auth(&bob.token)
            .send()
            .expect("send"),
        401,
    );
    // A JWT cannot revoke by user or application.
    check_status(
        http.delete(gw.url(&format!("/api/jwt/refresh?userId={}", bob.user_id)))
            .bearer_auth(&bob.token)
            .send()
            .expect("send"),
        401,
    );
    // No credentials.
    check_status(
        delete_by_id(&ann.refresh_token_id).send().expect("send"),
        401,
    );
    refresh_ok(&gw, &ann.refresh_token);

    // The owner's JWT, by id (Bearer) and by value (access_token cookie, form body).
    check_status(
        delete_by_id(&ann.refresh_token_id)
            .bearer_auth(&ann_third.token)
            .send()
            .expect("send"),
        200,
    );
    check_status(
        http.delete(gw.url("/api/jwt/refresh"))
            .header("Cookie", format!("access_token={}", ann_third.token))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={}", ann_second.refresh_token))
            .send()
            .expect("send"),
        200,
    );
    // An API key, by id.
    check_status(
        with_api_key(delete_by_id(&bob.refresh_token_id))
            .send()
            .expect("send"),
        200,
    );
    for revoked in [&ann, &ann_second, &bob] {
        check_status(retrieve(&gw, &revoked.refresh_token_id), 404);
    }
    check_status(retrieve(&gw, &ann_third.refresh_token_id), 200);
    // Unknown or already revoked: 404.
    check_status(
        with_api_key(delete_by_id(&bob.refresh_token_id))
            .send()
            .expect("send"),
        404,
    );
}

#[test]
fn revoke_without_parameters_is_a_400() {
    let gw = TestGateway::start();
    let body = assert_errors_json(
        with_api_key(client().delete(gw.url("/api/jwt/refresh")))
            .send()
            .expect("send"),
        "no parameters",
    );
    assert!(body["generalErrors"].is_array(), "{body}");
    assert_errors_json(
        with_api_key(client().delete(gw.url("/api/jwt/refresh")))
            .json(&json!({}))
            .send()
            .expect("send"),
        "empty JSON body",
    );
}

#[test]
fn revoked_refresh_tokens_cut_off_the_access_tokens_minted_from_them() {
    let gw = TestGateway::start();
    let ann = gw.login("ann@example.com", &[]);
    let ann_other_session = gw.login("ann@example.com", &[]);
    let bob = gw.login("bob@example.com", &[]);
    let (refreshed, _) = refresh_ok(&gw, &ann.refresh_token);
    let minted = refreshed["token"].as_str().expect("token").to_string();
    assert_eq!(claims_of(&ann.token)["sid"], ann.refresh_token_id);
    assert_eq!(claims_of(&minted)["sid"], ann.refresh_token_id);
    // Seen (and cached) by both paths before the revocation.
    for token in [&ann.token, &minted, &ann_other_session.token, &bob.token] {
        assert_eq!(validate_status(&gw, token), 200);
        assert_eq!(proxied_status(&gw, token), 200);
    }

    check_status(
        with_api_key(
            client().delete(gw.url(&format!("/api/jwt/refresh/{}", ann.refresh_token_id))),
        )
        .send()
        .expect("send"),
        200,
    );
    for token in [&ann.token, &minted] {
        assert_eq!(validate_status(&gw, token), 401);
        let response = gw.get_as("/orders", token);
        let body = check_status(response, 401);
        assert_eq!(body["generalErrors"][0]["code"], "[InvalidToken]");
    }
    // Other sessions of the same user, and other users, are untouched.
    for token in [&ann_other_session.token, &bob.token] {
        assert_eq!(validate_status(&gw, token), 200);
        assert_eq!(proxied_status(&gw, token), 200);
    }

    // Revoking all of a user's tokens cuts off all of its sessions.
    check_status(revoke_query(&gw, &format!("userId={}", bob.user_id)), 200);
    assert_eq!(validate_status(&gw, &bob.token), 401);
    assert_eq!(proxied_status(&gw, &bob.token), 401);
    assert_eq!(validate_status(&gw, &ann_other_session.token), 200);

    // Revoking a value cuts off its session too.
    check_status(
        revoke_query(&gw, &format!("token={}", ann_other_session.refresh_token)),
        200,
    );
    assert_eq!(validate_status(&gw, &ann_other_session.token), 401);
    assert_eq!(proxied_status(&gw, &ann_other_session.token), 401);
}

#[test]
fn a_login_right_after_revoking_all_of_a_users_tokens_is_not_refused() {
    let gw = TestGateway::start();
    let before = gw.login("again@example.com", &[]);
    check_status(
        revoke_query(&gw, &format!("userId={}", before.user_id)),
        200,
    );
    assert_eq!(validate_status(&gw, &before.token), 401);
    // Logging in again (very likely within the same second as the revocation).
    let after = gw.login("again@example.com", &[]);
    assert_eq!(after.user_id, before.user_id);
    assert_eq!(validate_status(&gw, &after.token), 200, "new login refused");
    assert_eq!(proxied_status(&gw, &after.token), 200);
    let (refreshed, _) = refresh_ok(&gw, &after.refresh_token);
    let token = refreshed["token"].as_str().expect("token");
    assert_eq!(validate_status(&gw, token), 200, "refreshed token refused");
}

/// A token dated after a first revocation (issued in its second) is still refused by a second
/// revocation in that same second: the second one is dated after it.
#[test]
fn a_second_revocation_in_the_same_second_refuses_a_token_the_first_one_dated_after_it() {
    let gw = TestGateway::start();
    let app = gw.login("twice@example.com", &[]);
    let other = gw.login_to(OTHER_APP, "twice@example.com", &[]);
    check_status(
        revoke_query(&gw, &format!("userId={}&applicationId={APP}", app.user_id)),
        200,
    );
    let issued = check_status(
        gw.get_as(&format!("/api/jwt/issue?applicationId={APP}"), &other.token),
        200,
    );
    let token = issued["token"].as_str().expect("token");
    assert_eq!(validate_status(&gw, token), 200, "issued after the first");
    check_status(revoke_query(&gw, &format!("userId={}", app.user_id)), 200);
    assert_eq!(validate_status(&gw, token), 401, "missed by the second");
    assert_eq!(proxied_status(&gw, token), 401);
}

#[test]
fn revoking_an_application_cuts_off_its_access_tokens_only() {
    let gw = TestGateway::start();
    let app = gw.login("ann@example.com", &[]);
    let other = gw.login_to(OTHER_APP, "ann@example.com", &[]);
    check_status(revoke_query(&gw, &format!("applicationId={APP}")), 200);
    assert_eq!(validate_status(&gw, &app.token), 401);
    assert_eq!(proxied_status(&gw, &app.token), 401);
    assert_eq!(validate_status(&gw, &other.token), 200);
    refresh_ok(&gw, &other.refresh_token);
}

#[test]
fn revoking_an_application_cuts_off_tokens_that_name_it_only_in_aud() {
    let gw = TestGateway::start();
    // The gateway's own token for an application the user is not registered to (202): its
    // application only in `aud`; and vended ones naming it there.
    let session = gw.login_to(OTHER_APP, "aud@example.com", &[]);
    let issued = gw.get_as(
        &format!("/api/jwt/issue?applicationId={APP}"),
        &session.token,
    );
    let body = check_status(issued, 202);
    let issued = body["token"].as_str().expect("token").to_string();
    let vended = |claims: Value| {
        let response = client()
            .post(gw.url("/api/jwt/vend"))
            .header("Authorization", API_KEY)
            .json(&json!({ "claims": claims }))
            .send()
            .expect("send");
        check_status(response, 200)["token"]
            .as_str()
            .expect("token")
            .to_string()
    };
    let by_aud = vended(json!({"sub": session.user_id, "aud": APP}));
    let in_list = vended(json!({"sub": session.user_id, "aud": [OTHER_APP, APP]}));
    let elsewhere = vended(json!({"sub": session.user_id, "aud": OTHER_APP}));
    for token in [&issued, &by_aud, &in_list, &elsewhere] {
        assert_eq!(validate_status(&gw, token), 200);
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // By user and application, then by application: each covers the tokens naming it.
    let query = format!("userId={}&applicationId={APP}", session.user_id);
    check_status(revoke_query(&gw, &query), 200);
    for token in [&issued, &by_aud, &in_list] {
        assert_eq!(validate_status(&gw, token), 401);
    }
    assert_eq!(validate_status(&gw, &elsewhere), 200);
    let fresh = vended(json!({"sub": Uuid::new_v4(), "aud": APP}));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    check_status(revoke_query(&gw, &format!("applicationId={APP}")), 200);
    assert_eq!(validate_status(&gw, &fresh), 401);
    assert_eq!(validate_status(&gw, &elsewhere), 200);
}

// ---------------------------------------------------------------------------------------------
// GET /api/jwt/validate
// ---------------------------------------------------------------------------------------------

#[test]
fn validate_by_header_or_cookie_and_401_for_bad_tokens() {
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 2".into(),
        ..Options::default()
    });
    let session = gw.login("validate@example.com", &["admin"]);
    let http = client();
    let body = check_status(gw.get_as("/api/jwt/validate", &session.token), 200);
    let jwt = &body["jwt"];
    assert_eq!(jwt["sub"], session.user_id);
    assert_eq!(jwt["applicationId"], APP);
    assert_eq!(jwt["roles"], json!(["admin"]));
    assert_eq!(jwt["iss"], ISSUER);
    assert!(jwt["exp"].is_i64() && jwt["iat"].is_i64(), "{jwt}");
    let body = check_status(
        http.get(gw.url("/api/jwt/validate"))
            .header("Cookie", format!("a=b; access_token={}", session.token))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["jwt"]["sub"], session.user_id);

    // 401 with an empty body: missing, garbage, tampered, another signature scheme.
    let response = http.get(gw.url("/api/jwt/validate")).send().expect("send");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.text().expect("text").is_empty());
    let mut parts: Vec<&str> = session.token.split('.').collect();
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"sub": Uuid::new_v4(), "exp": now() + 600, "iss": ISSUER}).to_string());
    parts[1] = &forged;
    let tampered = parts.join(".");
    for token in ["garbage", "a.b.c", tampered.as_str()] {
        assert_eq!(validate_status(&gw, token), 401, "{token}");
    }
    let status = http
        .get(gw.url("/api/jwt/validate"))
        .header("Authorization", API_KEY)
        .send()
        .expect("send")
        .status()
        .as_u16();
    assert_eq!(status, 401, "an API key is not a JWT");

    // Expired: the application's tokens live two seconds (no leeway).
    std::thread::sleep(Duration::from_millis(3_200));
    assert_eq!(validate_status(&gw, &session.token), 401);
    let status = http
        .get(gw.url("/api/jwt/validate"))
        .header("Cookie", format!("access_token={}", session.token))
        .send()
        .expect("send")
        .status()
        .as_u16();
    assert_eq!(status, 401);
}

// ---------------------------------------------------------------------------------------------
// POST /api/jwt/vend
// ---------------------------------------------------------------------------------------------

fn vend(gw: &TestGateway, key: &str, body: Value) -> Response {
    client()
        .post(gw.url("/api/jwt/vend"))
        .header("Authorization", key)
        .json(&body)
        .send()
        .expect("send")
}

#[test]
fn vend_keeps_claims_and_sets_exp_iat_itself() {
    let gw = TestGateway::start();
    let started = now();
    let body = check_status(
        vend(
            &gw,
            API_KEY,
            json!({
                "claims": {
                    "foo": "bar",
                    "nested": {"a": [1, 2]},
                    "roles": ["x"],
                    "exp": 1,
                    "iat": 2,
                },
                "timeToLiveInSeconds": 120,
            }),
        ),
        200,
    );
    let token = body["token"].as_str().expect("token");
    let claims = claims_of(token);
    assert_eq!(claims["foo"], "bar");
    assert_eq!(claims["nested"], json!({"a": [1, 2]}));
    assert_eq!(claims["roles"], json!(["x"]));
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(iat >= started && iat <= now(), "iat {iat} is not now");
    assert_eq!(claims["exp"].as_i64().expect("exp") - iat, 120);
    assert!(claims["jti"].is_string(), "{claims}");
    assert_eq!(claims["iss"], ISSUER, "the default tenant's issuer");
    let header = header_of(token);
    assert_eq!(header["kid"], gw.keys.get(Algorithm::RS256).0.to_string());
    assert_eq!(header["alg"], "RS256");
    let validated = check_status(gw.get_as("/api/jwt/validate", token), 200);
    assert_eq!(validated["jwt"]["foo"], "bar");

    // Without a lifetime: the tenant's (3600 s here).
    let body = check_status(vend(&gw, API_KEY, json!({"claims": {"a": 1}})), 200);
    let claims = claims_of(body["token"].as_str().expect("token"));
    assert_eq!(
        claims["exp"].as_i64().expect("exp") - claims["iat"].as_i64().expect("iat"),
        3600
    );
    // No body at all: an empty set of claims.
    let response = client()
        .post(gw.url("/api/jwt/vend"))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    check_status(response, 200);
}

#[test]
fn vend_signs_with_the_requested_key() {
    let gw = TestGateway::start();
    for algorithm in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::HS256] {
        let kid = gw.keys.get(algorithm).0.to_string();
        let body = check_status(
            vend(
                &gw,
                API_KEY,
                json!({"claims": {"k": kid}, "keyId": kid, "timeToLiveInSeconds": 60}),
            ),
            200,
        );
        let token = body["token"].as_str().expect("token");
        assert_eq!(header_of(token)["kid"], kid, "{algorithm:?}");
        assert_eq!(validate_status(&gw, token), 200, "{algorithm:?}");
    }
    for key_id in [json!(Uuid::new_v4()), json!("not-a-uuid")] {
        let body = assert_errors_json(
            vend(&gw, API_KEY, json!({"keyId": key_id})),
            &format!("keyId {key_id}"),
        );
        assert_eq!(body["fieldErrors"]["keyId"][0]["code"], "[invalid]keyId");
    }
}

#[test]
fn vend_refuses_non_positive_lifetimes_with_field_errors() {
    let gw = TestGateway::start();
    for ttl in [0, -1, -3600] {
        let body = assert_errors_json(
            vend(&gw, API_KEY, json!({"timeToLiveInSeconds": ttl})),
            &format!("ttl {ttl}"),
        );
        assert_eq!(
            body["fieldErrors"]["timeToLiveInSeconds"][0]["code"], "[invalid]timeToLiveInSeconds",
            "{body}"
        );
    }
    let body = assert_errors_json(
        vend(
            &gw,
            API_KEY,
            json!({"timeToLiveInSeconds": 3_000_000_000i64}),
        ),
        "ttl over an Integer",
    );
    assert!(body["fieldErrors"]["timeToLiveInSeconds"].is_array());
}

#[test]
fn vend_needs_an_api_key_and_uses_its_tenant() {
    let gw = TestGateway::start();
    let session = gw.login("vend@example.com", &[]);
    for (name, key) in [
        ("wrong key", "wrong-key".to_string()),
        ("user JWT", format!("Bearer {}", session.token)),
    ] {
        let response = vend(&gw, &key, json!({}));
        assert_eq!(response.status().as_u16(), 401, "{name}");
    }
    let response = client()
        .post(gw.url("/api/jwt/vend"))
        .json(&json!({}))
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 401);

    // A tenant-locked key vends in its tenant.
    let body = check_status(vend(&gw, TENANT_API_KEY, json!({"claims": {"a": 1}})), 200);
    let claims = claims_of(body["token"].as_str().expect("token"));
    assert_eq!(claims["iss"], "other.test");
    assert_eq!(claims["tid"], OTHER_TENANT);
    // So does the global key scoped with the header.
    let body = check_status(
        client()
            .post(gw.url("/api/jwt/vend"))
            .header("Authorization", API_KEY)
            .header("X-FusionAuth-TenantId", OTHER_TENANT)
            .json(&json!({}))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(
        claims_of(body["token"].as_str().expect("token"))["iss"],
        "other.test"
    );
    // A locked key cannot be pointed at another tenant.
    let response = client()
        .post(gw.url("/api/jwt/vend"))
        .header("Authorization", TENANT_API_KEY)
        .header("X-FusionAuth-TenantId", TENANT)
        .json(&json!({}))
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 401);
}

// ---------------------------------------------------------------------------------------------
// Malformed requests
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_json_wrong_types_and_bad_ids_are_400_with_errors_json() {
    let gw = TestGateway::start();
    let session = gw.login("malformed@example.com", &[]);
    let http = client();
    let raw = |method: reqwest::Method, path: &str, body: &'static [u8]| {
        http.request(method, gw.url(path))
            .header("Content-Type", "application/json")
            .body(body)
    };

    let cases: Vec<(&str, RequestBuilder)> = vec![
        (
            "refresh: malformed JSON",
            raw(reqwest::Method::POST, "/api/jwt/refresh", b"{not json"),
        ),
        (
            "refresh: truncated JSON",
            raw(
                reqwest::Method::POST,
                "/api/jwt/refresh",
                b"{\"refreshToken\": \"",
            ),
        ),
        (
            "refresh: refreshToken a number",
            raw(
                reqwest::Method::POST,
                "/api/jwt/refresh",
                b"{\"refreshToken\": 42}",
            ),
        ),
        (
            "refresh: body an array of numbers",
            raw(reqwest::Method::POST, "/api/jwt/refresh", b"[1, 2]"),
        ),
        (
            "refresh: not UTF-8",
            raw(reqwest::Method::POST, "/api/jwt/refresh", b"\xff\xfe"),
        ),
        (
            "refresh: bad tenant header",
            http.post(gw.url("/api/jwt/refresh"))
                .header("X-FusionAuth-TenantId", "nope")
                .json(&json!({"refreshToken": session.refresh_token})),
        ),
        (
            "vend: malformed JSON",
            with_api_key(raw(reqwest::Method::POST, "/api/jwt/vend", b"{\"claims\":")),
        ),
        (
            "vend: claims a string",
            with_api_key(raw(
                reqwest::Method::POST,
                "/api/jwt/vend",
                b"{\"claims\": \"x\"}",
            )),
        ),
        (
            "vend: ttl a string",
            with_api_key(raw(
                reqwest::Method::POST,
                "/api/jwt/vend",
                b"{\"timeToLiveInSeconds\": \"abc\"}",
            )),
        ),
        (
            "vend: ttl a fraction",
            with_api_key(raw(
                reqwest::Method::POST,
                "/api/jwt/vend",
                b"{\"timeToLiveInSeconds\": 1.5}",
            )),
        ),
        (
            "vend: ttl beyond 64 bits",
            with_api_key(raw(
                reqwest::Method::POST,
                "/api/jwt/vend",
                b"{\"timeToLiveInSeconds\": 123456789012345678901234567890}",
            )),
        ),
        (
            "vend: keyId a number",
            with_api_key(raw(
                reqwest::Method::POST,
                "/api/jwt/vend",
                b"{\"keyId\": 5}",
            )),
        ),
        (
            "vend: bad tenant header",
            with_api_key(raw(reqwest::Method::POST, "/api/jwt/vend", b"{}"))
                .header("X-FusionAuth-TenantId", "nope"),
        ),
        (
            "revoke: malformed JSON",
            with_api_key(raw(reqwest::Method::DELETE, "/api/jwt/refresh", b"{oops")),
        ),
        (
            "revoke: userId not a UUID (JSON)",
            with_api_key(raw(
                reqwest::Method::DELETE,
                "/api/jwt/refresh",
                b"{\"userId\": \"nope\"}",
            )),
        ),
        (
            "revoke: token a number (JSON)",
            with_api_key(raw(
                reqwest::Method::DELETE,
                "/api/jwt/refresh",
                b"{\"token\": 7}",
            )),
        ),
        (
            "revoke: userId not a UUID (query)",
            with_api_key(http.delete(gw.url("/api/jwt/refresh?userId=nope"))),
        ),
        (
            "revoke: applicationId not a UUID (query)",
            with_api_key(http.delete(gw.url("/api/jwt/refresh?applicationId=nope"))),
        ),
        (
            "revoke: tokenId not a UUID",
            with_api_key(http.delete(gw.url("/api/jwt/refresh/not-a-uuid"))),
        ),
        (
            "retrieve: tokenId not a UUID",
            with_api_key(http.get(gw.url("/api/jwt/refresh/not-a-uuid"))),
        ),
        (
            "retrieve: userId not a UUID",
            with_api_key(http.get(gw.url("/api/jwt/refresh?userId=nope"))),
        ),
        (
            "retrieve: bad tenant header",
            with_api_key(
                http.get(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id))),
            )
            .header("X-FusionAuth-TenantId", "nope"),
        ),
        (
            "issue: applicationId not a UUID",
            http.get(gw.url("/api/jwt/issue?applicationId=12345"))
                .bearer_auth(&session.token),
        ),
        (
            "public key: applicationId not a UUID",
            http.get(gw.url("/api/jwt/public-key?applicationId=%00")),
        ),
    ];
    for (name, request) in cases {
        assert_errors_json(request.send().expect("send"), name);
    }
    // Nothing was revoked or broken on the way.
    refresh_ok(&gw, &session.refresh_token);
    check_status(client().get(gw.url("/health")).send().expect("send"), 200);
}

#[test]
fn a_tenant_locked_key_cannot_vend_tokens_for_another_tenants_applications() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    // Everything a token of the main tenant's application carries, asked for by a key locked
    // to the other tenant.
    let forged = json!({
        "sub": user, "applicationId": APP, "aud": APP, "tid": TENANT, "iss": ISSUER,
        "roles": ["admin"],
    });
    let body = assert_errors_json(
        vend(&gw, TENANT_API_KEY, json!({ "claims": forged })),
        "cross-tenant vend",
    );
    for field in ["claims.applicationId", "claims.aud", "claims.tid"] {
        assert_eq!(
            body["fieldErrors"][field][0]["code"],
            format!("[invalid]{field}"),
            "{body}"
        );
    }
    // Nor the main tenant's issuer: a token of the key's tenant carrying it would pass, with
    // whoever checks tokens by the published keys and the issuer, as the main tenant's.
    let body = check_status(
        vend(
            &gw,
            TENANT_API_KEY,
            json!({"claims": {"sub": user, "iss": ISSUER, "roles": ["admin"]}}),
        ),
        400,
    );
    assert_eq!(
        body["fieldErrors"]["claims.iss"][0]["code"], "[invalid]claims.iss",
        "{body}"
    );
    // The global key is not scoped: it vends what it is given.
    let body = check_status(vend(&gw, API_KEY, json!({ "claims": forged })), 200);
    let token = body["token"].as_str().expect("token");
    assert_eq!(proxied_status(&gw, token), 200);
}

#[test]
fn a_clients_own_forwarded_address_is_never_believed() {
    let upstream = RecordingUpstream::start();
    for (trusted, expected) in [
        ("", "127.0.0.1"),
        ("trustedProxies: [10.0.0.0/8]", "127.0.0.1"),
        ("trustedProxies: [127.0.0.0/8]", "203.0.113.9"),
    ] {
        let gw = TestGateway::start_with(Options {
            extra: trusted.into(),
            upstream: Some(upstream.url()),
            ..Options::default()
        });
        let session = gw.login("xff-trust@example.com", &[]);
        check_status(
            client()
                .post(gw.url("/api/jwt/refresh"))
                .header("X-Forwarded-For", "198.51.100.1, 203.0.113.9")
                .json(&json!({"refreshToken": session.refresh_token}))
                .send()
                .expect("send"),
            200,
        );
        let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
        assert_eq!(
            stored["refreshToken"]["metaData"]["device"]["lastAccessedAddress"], expected,
            "{trusted:?}"
        );
        // The upstream gets the same one address.
        let echoed = check_status(
            client()
                .get(gw.url("/public/x"))
                .header("X-Forwarded-For", "198.51.100.1, 203.0.113.9")
                .send()
                .expect("send"),
            200,
        );
        assert_eq!(
            echoed["headers"]["x-forwarded-for"],
            json!([expected]),
            "{trusted:?}"
        );
    }
}

#[test]
fn a_forwarded_address_that_is_not_an_ip_is_not_recorded() {
    // Behind trusted proxies, so the header is read at all.
    let gw = TestGateway::start_with(Options {
        extra: "trustedProxies: [127.0.0.1, 10.0.0.0/8]".into(),
        ..Options::default()
    });
    let session = gw.login("xff@example.com", &[]);
    for forwarded in ["<script>alert(1)</script>", "unknown", ""] {
        check_status(
            client()
                .post(gw.url("/api/jwt/refresh"))
                .header("X-Forwarded-For", forwarded)
                .json(&json!({"refreshToken": session.refresh_token}))
                .send()
                .expect("send"),
            200,
        );
        let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
        assert_eq!(
            stored["refreshToken"]["metaData"]["device"]["lastAccessedAddress"], "127.0.0.1",
            "{forwarded:?}: the peer address is recorded instead"
        );
    }
    check_status(
        client()
            .post(gw.url("/api/jwt/refresh"))
            .header("X-Forwarded-For", "2001:DB8::7, 10.0.0.1")
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .expect("send"),
        200,
    );
    let stored = check_status(retrieve(&gw, &session.refresh_token_id), 200);
    assert_eq!(
        stored["refreshToken"]["metaData"]["device"]["lastAccessedAddress"],
        "2001:db8::7"
    );
}

#[test]
fn a_tenant_locked_key_scopes_the_endpoints_that_need_no_credentials() {
    let gw = TestGateway::start();
    let session = gw.login("scope@example.com", &[]);
    let http = client();
    let locked = |request: RequestBuilder| request.header("Authorization", TENANT_API_KEY);

    // Refresh: the token is not in the key's tenant.
    assert_refresh_refused(
        locked(http.post(gw.url("/api/jwt/refresh")))
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .expect("send"),
        "[invalid]refreshToken",
    );
    // A header naming another tenant than the lock: 401, as on API-key endpoints.
    check_status(
        locked(http.post(gw.url("/api/jwt/refresh")))
            .header("X-FusionAuth-TenantId", TENANT)
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .expect("send"),
        401,
    );
    // Public key of an application outside the key's tenant: 404.
    check_status(
        locked(http.get(gw.url(&format!("/api/jwt/public-key?applicationId={APP}"))))
            .send()
            .expect("send"),
        404,
    );
    // Discovery: the key's tenant's issuer.
    let body = check_status(
        locked(http.get(gw.url("/.well-known/openid-configuration")))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["issuer"], "other.test");
    // Issue (JWT in the cookie, key in the header): the user is outside the key's tenant.
    check_status(
        locked(http.get(gw.url(&format!("/api/jwt/issue?applicationId={APP}"))))
            .header("Cookie", format!("access_token={}", session.token))
            .send()
            .expect("send"),
        401,
    );
    // The global key and values that are no key do not scope anything.
    for authorization in [API_KEY, "not-a-key"] {
        let response = http
            .post(gw.url("/api/jwt/refresh"))
            .header("Authorization", authorization)
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .expect("send");
        check_status(response, 200);
    }
}

#[test]
fn a_rotated_value_reused_inside_the_grace_period_gets_the_same_pair() {
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
                  refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 30}"
            .into(),
        ..Options::default()
    });
    let session = gw.login("grace@example.com", &[]);
    let (first, _) = refresh_ok(&gw, &session.refresh_token);
    // A late request with the old value (a second tab, a retry) inside the grace period.
    let (late, cookies) = refresh_ok(&gw, &session.refresh_token);
    assert_eq!(
        late["refreshToken"], first["refreshToken"],
        "same new value"
    );
    assert_eq!(late["refreshTokenId"], session.refresh_token_id);
    assert_eq!(
        cookie_value(cookie(&cookies, "refresh_token")),
        first["refreshToken"].as_str().expect("value")
    );
    assert_eq!(
        validate_status(&gw, late["token"].as_str().expect("token")),
        200
    );
    // The new value works and rotates again.
    let (second, _) = refresh_ok(&gw, first["refreshToken"].as_str().expect("value"));
    assert_ne!(second["refreshToken"], first["refreshToken"]);
}

/// Inside the grace period, a value whose successor has itself been rotated is a reuse: it never
/// gets the newest pair (that would hand a later rotation's value to whoever kept the old one),
/// and `onOneTimeTokenReuse` revokes the token.
#[test]
fn a_value_retired_two_rotations_ago_is_refused_inside_the_grace_period() {
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
                  refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 30}, \
                  refreshTokenRevocationPolicy: {onOneTimeTokenReuse: true}"
            .into(),
        ..Options::default()
    });
    let session = gw.login("chain@example.com", &[]);
    let (first, _) = refresh_ok(&gw, &session.refresh_token);
    let (second, _) = refresh_ok(&gw, first["refreshToken"].as_str().expect("value"));
    assert_ne!(second["refreshToken"], first["refreshToken"]);
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": session.refresh_token})),
        "[invalid]refreshToken",
    );
    // The reuse revoked the token: the newest value is refused too.
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": second["refreshToken"]})),
        "[invalid]refreshToken",
    );
    check_status(retrieve(&gw, &session.refresh_token_id), 404);
}

/// Under the shipped configuration (no race window) and FusionAuth's default grace period of 0,
/// the retired value presented right after the rotation is a reuse.
#[test]
fn reusing_a_rotated_value_revokes_the_token_when_the_policy_says_so() {
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
                  refreshTokenRevocationPolicy: {onOneTimeTokenReuse: true}"
            .into(),
        ..Options::default()
    });
    let session = gw.login("reuse@example.com", &[]);
    let (first, _) = refresh_ok(&gw, &session.refresh_token);
    let current = first["refreshToken"].as_str().expect("value").to_string();
    let minted = first["token"].as_str().expect("token").to_string();
    assert_eq!(validate_status(&gw, &minted), 200);
    // The old value again: refused, and the whole token is revoked (a stolen-token signal).
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": session.refresh_token})),
        "[invalid]refreshToken",
    );
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": current})),
        "[invalid]refreshToken",
    );
    check_status(retrieve(&gw, &session.refresh_token_id), 404);
    assert_eq!(validate_status(&gw, &minted), 401);
    assert_eq!(validate_status(&gw, &session.token), 401);
}

/// A grace period of 2 s: the retired value yields the rotation's pair at about 1 s, and is a
/// reuse past 2 s (refused, and `onOneTimeTokenReuse` revokes the token).
#[test]
fn a_short_grace_period_serves_the_retired_value_then_counts_a_reuse_past_it() {
    let gw = TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
                  refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 2}, \
                  refreshTokenRevocationPolicy: {onOneTimeTokenReuse: true}"
            .into(),
        ..Options::default()
    });
    let session = gw.login("short-grace@example.com", &[]);
    let rotated_at = std::time::Instant::now();
    let (first, _) = refresh_ok(&gw, &session.refresh_token);
    std::thread::sleep(Duration::from_millis(1_000));
    let (late, _) = refresh_ok(&gw, &session.refresh_token);
    assert_eq!(late["refreshToken"], first["refreshToken"]);
    assert_eq!(late["token"], first["token"]);
    check_status(retrieve(&gw, &session.refresh_token_id), 200);
    // Past the grace period (rounded up to the next whole second): a reuse.
    std::thread::sleep(Duration::from_millis(3_100).saturating_sub(rotated_at.elapsed()));
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": session.refresh_token})),
        "[invalid]refreshToken",
    );
    check_status(retrieve(&gw, &session.refresh_token_id), 404);
    assert_refresh_refused(
        refresh(&gw, json!({"refreshToken": first["refreshToken"]})),
        "[invalid]refreshToken",
    );
    assert_eq!(
        validate_status(&gw, first["token"].as_str().expect("token")),
        401
    );
}

#[test]
fn revocations_still_cut_off_access_tokens_after_a_restart() {
    let mut gw = TestGateway::start();
    let by_id = gw.login("restart-a@example.com", &[]);
    let by_user = gw.login("restart-b@example.com", &[]);
    let kept = gw.login("restart-c@example.com", &[]);
    check_status(
        with_api_key(
            client().delete(gw.url(&format!("/api/jwt/refresh/{}", by_id.refresh_token_id))),
        )
        .send()
        .expect("send"),
        200,
    );
    check_status(
        revoke_query(&gw, &format!("userId={}", by_user.user_id)),
        200,
    );
    gw.restart();
    for revoked in [&by_id, &by_user] {
        assert_eq!(validate_status(&gw, &revoked.token), 401);
        assert_eq!(proxied_status(&gw, &revoked.token), 401);
        assert_refresh_refused(
            refresh(&gw, json!({"refreshToken": revoked.refresh_token})),
            "[invalid]refreshToken",
        );
    }
    assert_eq!(validate_status(&gw, &kept.token), 200);
    refresh_ok(&gw, &kept.refresh_token);
}

#[test]
fn a_parameter_given_twice_or_two_that_may_disagree_are_refused_never_one_picked() {
    let gw = TestGateway::start();
    let session = gw.login("ambiguous@example.com", &[]);
    let rs = gw.keys.get(jsonwebtoken::Algorithm::RS256).0;
    let es = gw.keys.get(jsonwebtoken::Algorithm::ES256).0;
    let ambiguous = |response: Response, what: &str| {
        let body = check_status(response, 400);
        assert_eq!(
            body["generalErrors"][0]["code"], "[AmbiguousRequest]",
            "{what}: {body}"
        );
    };
    let get = |query: String| {
        client()
            .get(gw.url(&format!("/api/jwt/public-key?{query}")))
            .send()
            .expect("send")
    };
    for query in [
        format!("kid={rs}&kid={es}"),
        format!("kid={rs}&kid={rs}"),
        format!("kid={rs}&keyId={es}"),
        format!("kid={rs}&applicationId={APP}"),
        format!("keyId={es}&applicationId={APP}"),
        format!("applicationId={APP}&applicationId={OTHER_APP}"),
    ] {
        ambiguous(get(query.clone()), &query);
    }
    // The same key named twice the two ways is one request.
    check_status(get(format!("kid={rs}&keyId={rs}")), 200);
    // Revoking: a parameter twice, a token with a user or application, or a query and a body
    // that disagree.
    for query in [
        format!("userId={}&userId={}", session.user_id, Uuid::new_v4()),
        format!("applicationId={APP}&token={}", session.refresh_token),
        format!("userId={}&token={}", session.user_id, session.refresh_token),
    ] {
        ambiguous(revoke_query(&gw, &query), &query);
    }
    let disagreeing = with_api_key(
        client().delete(gw.url(&format!("/api/jwt/refresh?userId={}", session.user_id))),
    )
    .json(&json!({ "userId": Uuid::new_v4() }))
    .send()
    .expect("send");
    ambiguous(disagreeing, "query and body");
    for (query, form) in [
        (String::new(), "token=a&token=b".to_string()),
        (
            format!("token={}", session.refresh_token),
            "token=other".to_string(),
        ),
    ] {
        let response = with_api_key(client().delete(gw.url(&format!("/api/jwt/refresh?{query}"))))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .expect("send");
        ambiguous(response, &form);
    }
    // Nothing was revoked by any of them.
    refresh_ok(&gw, &session.refresh_token);
}

#[test]
fn a_revocation_body_it_cannot_read_is_refused_and_a_named_key_is_read_as_written() {
    let gw = TestGateway::start();
    let http = client();
    let ann_app = gw.login("unread-body@example.com", &[]);
    let ann_other = gw.login_to(OTHER_APP, "unread-body@example.com", &[]);
    let alive = |s: &Session| retrieve(&gw, &s.refresh_token_id).status().as_u16() == 200;
    let narrowing = json!({"applicationId": APP}).to_string();
    // A criterion in a body the gateway would not read (JSON sent as a form, as `curl -d`
    // does; text; multipart; no type): refused, nothing revoked — never the wider revocation
    // the query alone names.
    for (content_type, body, status) in [
        (Some("application/x-www-form-urlencoded"), narrowing.clone(), 400),
        (Some("text/plain"), narrowing.clone(), 415),
        (None, narrowing.clone(), 415),
        (
            Some("multipart/form-data; boundary=b"),
            format!("--b\r\nContent-Disposition: form-data; name=\"applicationId\"\r\n\r\n{APP}\r\n--b--\r\n"),
            415,
        ),
        (Some("application/x-www-form-urlencoded"), format!("applicationid={APP}"), 400),
    ] {
        let mut request = with_api_key(
            http.delete(gw.url(&format!("/api/jwt/refresh?userId={}", ann_app.user_id))),
        )
        .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().expect("send");
        assert_eq!(response.status().as_u16(), status, "{content_type:?} {body}");
        assert!(alive(&ann_app) && alive(&ann_other), "{content_type:?}: revoked");
    }
    // The words FusionAuth's TypeScript client writes for an omitted argument mean "not given"
    // only in its three-parameter call; anywhere else a word where an id was meant is refused,
    // never read as a wider revocation.
    let by_query = |query: String| {
        with_api_key(http.delete(gw.url(&format!("/api/jwt/refresh?{query}"))))
            .send()
            .expect("send")
            .status()
            .as_u16()
    };
    for query in [
        format!("userId=undefined&applicationId={APP}"),
        format!("userId={}&applicationId=undefined", ann_app.user_id),
        "userId=null".to_string(),
        format!("token=undefined&userId={}", ann_app.user_id),
    ] {
        assert_eq!(by_query(query.clone()), 400, "{query}");
        assert!(alive(&ann_app) && alive(&ann_other), "{query}: revoked");
    }
    let form_word =
        with_api_key(http.delete(gw.url(&format!("/api/jwt/refresh?userId={}", ann_app.user_id))))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("token=undefined")
            .send()
            .expect("send");
    assert_eq!(form_word.status().as_u16(), 400);
    assert!(alive(&ann_app) && alive(&ann_other));

    // A form with the documented names is read: it narrows the query's revocation.
    check_status(
        with_api_key(http.delete(gw.url(&format!("/api/jwt/refresh?userId={}", ann_app.user_id))))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("applicationId={APP}"))
            .send()
            .expect("send"),
        200,
    );
    assert!(!alive(&ann_app) && alive(&ann_other));

    // Each public-key call names one key, so its parameter is read as written: the word the
    // TypeScript client writes for an omitted argument names no key, it never lists them all.
    let status = |query: &str| {
        http.get(gw.url(&format!("/api/jwt/public-key?{query}")))
            .send()
            .expect("send")
            .status()
            .as_u16()
    };
    for query in ["kid=null", "kid=undefined", "keyId=null"] {
        assert_eq!(status(query), 404, "{query}");
    }
    assert_eq!(status("applicationId=undefined"), 400);
    // One key named both ways, in two spellings of its id, is one key.
    let rs = gw.keys.get(Algorithm::RS256).0.to_string();
    let upper = rs.to_uppercase();
    assert_eq!(status(&format!("kid={rs}&keyId={upper}")), 200);
    assert_eq!(status(&format!("kid={rs}&applicationId={APP}")), 400);
}

/// Issues for the other application in a loop (bearer token and refresh cookie: each answer
/// earns an SSO refresh token) while the user's tokens are revoked: after the revocation's
/// answer the user has no live refresh token, and no access token issued during it passes.
fn issue_racing_a_revocation(gw: &TestGateway) {
    let main = gw.login("issue-race@example.com", &[]);
    gw.login_to(OTHER_APP, "issue-race@example.com", &[]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let issued = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let http = client();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = http
                        .get(gw.url(&format!("/api/jwt/issue?applicationId={OTHER_APP}")))
                        .bearer_auth(&main.token)
                        .header("Cookie", format!("refresh_token={}", main.refresh_token))
                        .send()
                        .expect("send");
                    if response.status().as_u16() == 200 {
                        let body: Value = response.json().expect("json");
                        let token = body["token"].as_str().expect("token").to_string();
                        issued.lock().expect("issued").push(token);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        check_status(revoke_query(gw, &format!("userId={}", main.user_id)), 200);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(tokens_of(gw, &main.user_id), Vec::<Value>::new());
    let issued = issued.into_inner().expect("issued");
    assert!(
        !issued.is_empty(),
        "no issue answered before the revocation"
    );
    let validate = |token: &str| {
        client()
            .get(gw.url("/api/jwt/validate"))
            .bearer_auth(token)
            .send()
            .expect("send")
            .status()
            .as_u16()
    };
    let passing = issued.iter().filter(|t| validate(t) == 200).count();
    assert_eq!(
        passing,
        0,
        "{passing} of {} issued tokens outlived the revocation",
        issued.len()
    );
}

#[test]
fn tokens_issued_while_a_user_is_revoked_do_not_outlive_it_on_sqlite() {
    issue_racing_a_revocation(&TestGateway::start());
}

#[test]
fn tokens_issued_while_a_user_is_revoked_do_not_outlive_it_on_postgres() {
    let db = super::postgres::Database::create();
    let gw = TestGateway::start_with(Options {
        store_url: Some(db.url.clone()),
        ..Default::default()
    });
    issue_racing_a_revocation(&gw);
}

/// Two gateways on one SQLite file: node B revokes a user's tokens for one application, and
/// node A, which has not heard of it yet, revokes all the user's tokens in the same second.
/// The store dates A's revocation one second after B's (it covers the tokens B's dated), and A
/// records that date, not its own clock's: a login on A right after it, and that login's
/// token once both nodes have read the table, are accepted on both nodes.
#[test]
fn a_login_after_two_nodes_revoked_in_one_second_is_accepted_by_both() {
    let options = Options::default();
    let node_a = TestGateway::start_with(options.clone());
    let node_b = node_a.start_peer(&options);
    for round in 0..3 {
        let email = format!("twice-{round}@example.com");
        let before = node_a.login(&email, &[]);
        // Start early in a second, so that both revocations and the login share it.
        while std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .subsec_millis()
            > 100
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        let pair = format!("userId={}&applicationId={APP}", before.user_id);
        check_status(revoke_query(&node_b, &pair), 200);
        check_status(
            revoke_query(&node_a, &format!("userId={}", before.user_id)),
            200,
        );
        let after = node_a.login(&email, &[]);
        assert_eq!(validate_status(&node_a, &after.token), 200, "round {round}");
        // Both nodes poll the shared file within a second.
        std::thread::sleep(Duration::from_millis(2500));
        for (name, node) in [("A", &node_a), ("B", &node_b)] {
            assert_eq!(
                validate_status(node, &after.token),
                200,
                "round {round}: the new login refused by node {name}"
            );
            assert_eq!(validate_status(node, &before.token), 401, "round {round}");
        }
    }
}

#[test]
fn an_issue_on_a_node_that_has_not_heard_of_a_revocation_yet_is_refused() {
    // Two gateways on one SQLite file: the second hears of the first's revocations within a
    // second, by polling; an issue there right after the revocation reads the store itself.
    let options = Options::default();
    let node_a = TestGateway::start_with(options.clone());
    let node_b = node_a.start_peer(&options);
    for round in 0..3 {
        let email = format!("lagging-{round}@example.com");
        let session = node_a.login(&email, &[]);
        node_a.login_to(OTHER_APP, &email, &[]);
        check_status(
            revoke_query(&node_b, &format!("userId={}", session.user_id)),
            200,
        );
        let issued = client()
            .get(node_a.url(&format!("/api/jwt/issue?applicationId={OTHER_APP}")))
            .bearer_auth(&session.token)
            .send()
            .expect("send");
        assert_eq!(issued.status().as_u16(), 401, "round {round}");
    }
}
