//! OpenID Connect logins completed through the API (`POST /api/identity-provider/login` and
//! `/api/jwt/reconcile` with `data.code`), against the provider the tests play
//! ([`super::fake_oidc`]), with its faults switched on one at a time.

use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::{json, Value};

use super::fake_oidc::*;
use super::kit::*;

/// A gateway with an OpenIDConnect provider for `provider`, created through the API; returns
/// it and the provider's id.
fn gateway_for(provider: &Provider, settings: &str) -> (TestGateway, String) {
    let gw = TestGateway::start_with(Options {
        identity_provider: settings.into(),
        ..Options::default()
    });
    let body = json!({"identityProvider": {
        "type": "OpenIDConnect", "name": "Test SSO", "enabled": true,
        "oauth2": {"issuer": provider.issuer(), "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "clientAuthenticationMethod": "client_secret_basic", "scope": "openid email offline_access"},
        "linkingStrategy": "LinkByEmail",
        "applicationConfiguration": {APP: {"enabled": true, "createRegistration": true}}}});
    let created = check_status(api(&gw, "POST", "/api/identity-provider", Some(&body)), 200);
    let id = created["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    (gw, id)
}

fn api(gw: &TestGateway, method: &str, path: &str, body: Option<&Value>) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client()
        .request(method, gw.url(path))
        .header("Authorization", API_KEY);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().expect("send")
}

/// `POST path` (no API key) completing a login with `code`.
fn login_with(
    gw: &TestGateway,
    path: &str,
    idp: &str,
    code: &str,
    nonce: Option<&str>,
) -> Response {
    let mut data = json!({"code": code, "redirect_uri": REDIRECT_URI, "code_verifier": VERIFIER});
    if let Some(nonce) = nonce {
        data["nonce"] = json!(nonce);
    }
    client()
        .post(gw.url(path))
        .json(&json!({"applicationId": APP, "identityProviderId": idp, "data": data}))
        .send()
        .expect("send")
}

fn ann() -> Value {
    json!({"sub": "sso-ann", "email": "ann@example.com", "email_verified": true, "roles": ["admin"]})
}

/// The one link of user `user` to provider `idp`.
fn link_of(gw: &TestGateway, idp: &str, user: &str) -> Value {
    let path = format!("/api/identity-provider/link?identityProviderId={idp}&userId={user}");
    let links = check_status(api(gw, "GET", &path, None), 200);
    let all = links["identityProviderLinks"].as_array().expect("links");
    assert_eq!(all.len(), 1, "{links}");
    all[0].clone()
}

#[test]
fn an_oidc_login_creates_the_user_and_logs_in_again_as_the_same_user() {
    let provider = Provider::start();
    let (gw, idp) = gateway_for(&provider, "");
    let code = provider.code_for("sso-ann", Some("n-1"), ann());
    let response = login_with(
        &gw,
        "/api/identity-provider/login",
        &idp,
        &code,
        Some("n-1"),
    );
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_string())
        .collect();
    let body = check_status(response, 200);
    let user = body["user"]["id"].as_str().expect("user id").to_string();
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["registrations"][0]["applicationId"], APP);
    assert_eq!(body["user"]["registrations"][0]["roles"], json!(["user"]));
    let token = body["token"].as_str().expect("token");
    assert!(body["refreshToken"].is_string(), "{body}");
    assert!(cookies
        .iter()
        .any(|c| c.starts_with(&format!("access_token={token}"))));
    assert!(cookies.iter().any(|c| c.starts_with("refresh_token=")));
    // Gatehouse's own token opens the protected route.
    let echoed = check_status(gw.get_as("/hello", token), 200);
    assert_eq!(echoed["headers"]["x-user-id"], user.as_str());
    // The link holds the provider's refresh token (the Link API returns it, as FusionAuth's).
    let link = link_of(&gw, &idp, &user);
    assert_eq!(link["identityProviderType"], "OpenIDConnect");
    assert_eq!(link["identityProviderUserId"], "sso-ann");
    let first_refresh = provider.last_refresh_token();
    assert_eq!(link["token"], first_refresh.as_str());
    // The provider's tokens are not in Gatehouse's answer.
    assert!(!body.to_string().contains(&first_refresh));

    // The same code again: the provider refuses it, nothing changes.
    let again = check_status(
        login_with(
            &gw,
            "/api/identity-provider/login",
            &idp,
            &code,
            Some("n-1"),
        ),
        401,
    );
    assert_eq!(
        again["generalErrors"][0]["code"],
        "[InvalidAuthorizationCode]"
    );

    // A second login of the same provider user, through /api/jwt/reconcile: the same user,
    // the link with the newest refresh token.
    let code = provider.code_for("sso-ann", None, ann());
    let body = check_status(
        login_with(&gw, "/api/jwt/reconcile", &idp, &code, None),
        200,
    );
    assert_eq!(body["user"]["id"], user.as_str());
    let link = link_of(&gw, &idp, &user);
    assert_eq!(link["token"], provider.last_refresh_token().as_str());
    assert_ne!(link["token"], first_refresh.as_str());

    // Nothing secret in the log: the client secret, codes, the provider's tokens.
    let log = gw.log();
    for secret in [
        CLIENT_SECRET,
        code.as_str(),
        first_refresh.as_str(),
        VERIFIER,
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

#[test]
fn the_oidc_reconcile_lambda_maps_userinfo_roles_to_the_registration() {
    let provider = Provider::start();
    let (gw, idp) = gateway_for(&provider, "");
    let lambda = json!({"lambda": {"name": "roles", "type": "OpenIDReconcile", "enabled": true,
        "body": "function reconcile(user, registration, jwt, id_token, tokens) {\n  registration.roles = jwt.roles;\n  user.data = {idTokenSub: id_token.sub, gotAccessToken: typeof tokens.access_token === 'string'};\n}"}});
    let created = check_status(api(&gw, "POST", "/api/lambda", Some(&lambda)), 200);
    let lambda_id = created["lambda"]["id"].as_str().expect("id");
    let patch = json!({"identityProvider": {"lambdaConfiguration": {"reconcileId": lambda_id}}});
    check_status(
        api(
            &gw,
            "PATCH",
            &format!("/api/identity-provider/{idp}"),
            Some(&patch),
        ),
        200,
    );
    let code = provider.code_for("sso-ann", None, ann());
    let body = check_status(
        login_with(&gw, "/api/identity-provider/login", &idp, &code, None),
        200,
    );
    assert_eq!(
        body["user"]["registrations"][0]["roles"],
        json!(["admin"]),
        "{body}"
    );
    assert_eq!(
        body["user"]["data"],
        json!({"idTokenSub": "sso-ann", "gotAccessToken": true})
    );
    // The roles are in Gatehouse's token, and reach the upstream.
    let token = body["token"].as_str().expect("token");
    let echoed = check_status(gw.get_as("/admin", token), 200);
    assert_eq!(echoed["headers"]["x-user-roles"], "admin");
}

/// Logs in with a fresh code while `fault` is on; returns the status, the body and how long
/// the answer took.
fn attempt(
    gw: &TestGateway,
    provider: &Provider,
    idp: &str,
    fault: Fault,
    nonce: Option<&str>,
) -> (u16, Value, Duration) {
    provider.set_fault(fault);
    let code = provider.code_for("sso-ann", Some("the-nonce"), ann());
    let started = Instant::now();
    let response = login_with(gw, "/api/identity-provider/login", idp, &code, nonce);
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").is_some();
    let body: Value = response.json().unwrap_or(Value::Null);
    if status == 503 {
        assert!(retry_after, "a 503 says when to retry");
    }
    (status, body, started.elapsed())
}

#[test]
fn every_provider_fault_is_a_clear_error() {
    let provider = Provider::start();
    let (gw, idp) = gateway_for(&provider, "providerTimeoutMillis: 1000");
    // Keys that were never fetched and cannot be: 503 (the token may be fine).
    let (status, body, _) = attempt(&gw, &provider, &idp, Fault::KeysDown, None);
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["generalErrors"][0]["code"],
        "[IdentityProviderKeysUnavailable]"
    );
    let cases = [
        (Fault::Down, None, 502, "[IdentityProviderUnreachable]"),
        (
            Fault::BadJson,
            None,
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (Fault::WrongIssuer, None, 401, "[InvalidIdToken]"),
        (Fault::WrongAudience, None, 401, "[InvalidIdToken]"),
        (Fault::WrongAzp, None, 401, "[InvalidIdToken]"),
        (Fault::Expired, None, 401, "[InvalidIdToken]"),
        (Fault::BadSignature, None, 401, "[InvalidIdToken]"),
        (Fault::AlgNone, None, 401, "[InvalidIdToken]"),
        (Fault::UserinfoSubject, None, 401, "[InvalidUserInfo]"),
        (Fault::None, Some("another-nonce"), 401, "[InvalidIdToken]"),
    ];
    for (fault, nonce, expected, code) in cases {
        let (status, body, _) = attempt(&gw, &provider, &idp, fault, nonce);
        assert_eq!(status, expected, "{fault:?}: {body}");
        assert_eq!(body["generalErrors"][0]["code"], code, "{fault:?}: {body}");
        assert!(body["generalErrors"][0]["message"].is_string());
    }
    // A provider that hangs: 504 within the time limit (1 s), not the API's 10 s.
    let (status, body, took) = attempt(
        &gw,
        &provider,
        &idp,
        Fault::Slow(Duration::from_secs(4)),
        None,
    );
    assert_eq!(status, 504, "{body}");
    assert_eq!(
        body["generalErrors"][0]["code"],
        "[IdentityProviderTimeout]"
    );
    assert!(took < Duration::from_millis(3000), "{took:?}");
    // None of the refused logins created a user; the right nonce and a working provider do.
    let users = api(&gw, "GET", "/api/user?email=ann@example.com", None);
    assert_eq!(users.status().as_u16(), 404);
    let (status, body, _) = attempt(&gw, &provider, &idp, Fault::None, Some("the-nonce"));
    assert_eq!(status, 200, "{body}");
    let log = gw.log();
    assert!(!log.contains(CLIENT_SECRET), "the client secret in the log");
    assert!(
        !log.contains("provider-refresh-"),
        "a provider refresh token in the log"
    );
}

#[test]
fn hmac_id_tokens_and_signed_userinfo_answers_are_verified() {
    let provider = Provider::start();
    let (gw, idp) = gateway_for(&provider, "providerTimeoutMillis: 1000");
    // Refused first: no refused login may create the user.
    let refused = [
        (Fault::HmacWrongSecret, "[InvalidIdToken]"),
        (Fault::HmacWithPublicKey, "[InvalidIdToken]"),
        (Fault::SignedUserinfoForged, "[InvalidUserInfo]"),
        (Fault::SignedUserinfoWrongAudience, "[InvalidUserInfo]"),
    ];
    for (fault, code) in refused {
        let (status, body, _) = attempt(&gw, &provider, &idp, fault, Some("the-nonce"));
        assert_eq!(status, 401, "{fault:?}: {body}");
        assert_eq!(body["generalErrors"][0]["code"], code, "{fault:?}: {body}");
    }
    let users = api(&gw, "GET", "/api/user?email=ann@example.com", None);
    assert_eq!(users.status().as_u16(), 404);
    // An HS256 ID token under the client secret, then a userinfo answer the provider signed.
    for fault in [Fault::HmacSigned, Fault::SignedUserinfo] {
        let (status, body, _) = attempt(&gw, &provider, &idp, fault, Some("the-nonce"));
        assert_eq!(status, 200, "{fault:?}: {body}");
        assert_eq!(
            body["user"]["email"], "ann@example.com",
            "{fault:?}: {body}"
        );
    }
    assert!(
        !gw.log().contains(CLIENT_SECRET),
        "the client secret in the log"
    );
}
