//! The exchange against a provider played by closures: the requests it sends (client
//! authentication, PKCE) and the answer to each way a provider can fail.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::json;

use super::*;
use crate::provider::Secret;

const ISSUER: &str = "https://idp.example";
const APP: Uuid = Uuid::from_u128(7);

type Answer = Box<dyn Fn(&HttpCall) -> Result<HttpAnswer, HttpFailure> + Send + Sync>;

/// How a case's token endpoint answers.
type TokenAnswerFn = Box<dyn Fn() -> Result<HttpAnswer, HttpFailure> + Send + Sync>;

/// A provider: `answer` answers each request, which is recorded.
struct FakeHttp {
    answer: Answer,
    calls: Mutex<Vec<HttpCall>>,
}

#[async_trait]
impl HttpClient for FakeHttp {
    async fn send(&self, call: HttpCall) -> Result<HttpAnswer, HttpFailure> {
        let answer = (self.answer)(&call);
        self.calls.lock().expect("lock").push(call);
        answer
    }
}

/// Keys that "verify" any token into these claims, or fail.
struct FakeKeys(Result<Map<String, Value>, RemoteKeyError>);

#[async_trait]
impl RemoteKeys for FakeKeys {
    async fn verify(
        &self,
        issuer: &str,
        jwks_uri: &str,
        algorithms: &[&str],
        _token: &str,
    ) -> Result<Map<String, Value>, RemoteKeyError> {
        assert_eq!((issuer, jwks_uri), (ISSUER, "https://idp.example/jwks"));
        assert!(!algorithms
            .iter()
            .any(|a| a.starts_with("HS") || *a == "none"));
        self.0.clone()
    }
}

fn ok(status: u16, body: Value) -> Result<HttpAnswer, HttpFailure> {
    Ok(HttpAnswer {
        status,
        content_type: Some("application/json".into()),
        body: body.to_string().into_bytes(),
    })
}

/// A provider whose token endpoint answers `token` and userinfo answers `userinfo`.
fn provider(
    token: impl Fn() -> Result<HttpAnswer, HttpFailure> + Send + Sync + 'static,
    userinfo: Value,
) -> FakeHttp {
    FakeHttp {
        answer: Box::new(move |call| match call.url.rsplit('/').next() {
            Some("openid-configuration") => ok(
                200,
                json!({"issuer": ISSUER, "token_endpoint": "https://idp.example/token",
                       "userinfo_endpoint": "https://idp.example/userinfo",
                       "jwks_uri": "https://idp.example/jwks"}),
            ),
            Some("token") => token(),
            Some("userinfo") => ok(200, userinfo.clone()),
            _ => Err(HttpFailure::Unreachable("no such path".into())),
        }),
        calls: Mutex::new(Vec::new()),
    }
}

fn good_tokens() -> Result<HttpAnswer, HttpFailure> {
    ok(
        200,
        json!({"access_token": "at", "token_type": "Bearer", "id_token": "h.p.s",
               "refresh_token": "provider-refresh"}),
    )
}

fn id_claims() -> Map<String, Value> {
    json!({"iss": ISSUER, "aud": "gatehouse", "sub": "u1", "exp": 2_000_000_000i64,
           "iat": 1_700_000_000i64, "nonce": "n1", "email": "old@example.com"})
    .as_object()
    .cloned()
    .expect("object")
}

fn settings(method: ClientAuthenticationMethod) -> OpenIdConnect {
    OpenIdConnect {
        client_id: "gatehouse".into(),
        client_secret: Some(Secret::new("s3cret")),
        client_authentication_method: method,
        issuer: Some(ISSUER.into()),
        authorization_endpoint: None,
        token_endpoint: None,
        userinfo_endpoint: None,
        scope: None,
        button_text: "b".into(),
        button_image_url: None,
        post_request: false,
        application_overrides: Default::default(),
    }
}

fn grant(nonce: Option<&str>) -> CodeGrant {
    CodeGrant {
        code: "the-code".into(),
        redirect_uri: "https://app.example/cb".into(),
        code_verifier: Some("verifier".into()),
        nonce: nonce.map(str::to_string),
    }
}

/// Runs one exchange; returns its outcome and the requests sent.
async fn run(
    http: &FakeHttp,
    keys: FakeKeys,
    settings: &OpenIdConnect,
    grant: &CodeGrant,
) -> (Result<Completed, OidcFailure>, Vec<HttpCall>) {
    let cache = DiscoveryCache::default();
    let ex = Exchange {
        http,
        keys: &keys,
        discovery: &cache,
        timeout: Duration::from_secs(1),
        leeway: 30,
        now: 1_700_000_000,
    };
    let mut debug = DebugLog::new(true);
    let outcome = complete(&ex, settings, APP, grant, &mut debug).await;
    let message = debug.message("h").unwrap_or_default();
    for secret in [
        "s3cret",
        "the-code",
        "provider-refresh",
        "verifier",
        "h.p.s",
    ] {
        assert!(!message.contains(secret), "{message}");
    }
    (outcome, http.calls.lock().expect("lock").clone())
}

fn header<'a>(call: &'a HttpCall, name: &str) -> Option<&'a str> {
    call.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn form(call: &HttpCall) -> Vec<(String, String)> {
    url::form_urlencoded::parse(call.body.as_deref().unwrap_or_default())
        .into_owned()
        .collect()
}

#[tokio::test]
async fn a_login_completes_with_the_id_token_and_userinfo() {
    let http = provider(
        good_tokens,
        json!({"sub": "u1", "email": "ann@example.com", "roles": ["editor"]}),
    );
    let s = settings(ClientAuthenticationMethod::ClientSecretBasic);
    let (outcome, calls) = run(&http, FakeKeys(Ok(id_claims())), &s, &grant(Some("n1"))).await;
    let done = outcome.expect("completed");
    assert_eq!(done.claims["email"], "ann@example.com", "userinfo wins");
    assert_eq!(done.claims["nonce"], "n1");
    assert_eq!(done.jwt["roles"], json!(["editor"]));
    assert_eq!(done.id_token["sub"], "u1");
    assert_eq!(
        done.tokens,
        json!({"access_token": "at", "id_token": "h.p.s"})
    );
    assert_eq!(done.refresh_token.as_deref(), Some("provider-refresh"));
    assert_eq!(calls.len(), 3);
    let token = &calls[1];
    assert_eq!(token.method, HttpMethod::Post);
    let body = form(token);
    let pairs: Vec<(&str, &str)> = body.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        pairs,
        vec![
            ("grant_type", "authorization_code"),
            ("code", "the-code"),
            ("redirect_uri", "https://app.example/cb"),
            ("code_verifier", "verifier"),
        ]
    );
    assert_eq!(
        header(token, "authorization"),
        Some(format!("Basic {}", STANDARD.encode("gatehouse:s3cret")).as_str())
    );
    assert_eq!(header(&calls[2], "authorization"), Some("Bearer at"));
}

#[test]
fn client_authentication_follows_the_method() {
    // RFC 6749 §2.3.1: the id and secret are form-urlencoded before Base64.
    let mut s = settings(ClientAuthenticationMethod::ClientSecretBasic);
    s.client_id = "a b:c".into();
    s.client_secret = Some(Secret::new("p%s&s"));
    let (headers, _) = token_request(&s, APP, &grant(None));
    let basic = headers
        .iter()
        .find(|(n, _)| n == "Authorization")
        .expect("basic");
    assert_eq!(
        basic.1,
        format!("Basic {}", STANDARD.encode("a+b%3Ac:p%25s%26s"))
    );

    let s = settings(ClientAuthenticationMethod::ClientSecretPost);
    let (headers, body) = token_request(&s, APP, &grant(None));
    assert!(!headers.iter().any(|(n, _)| n == "Authorization"));
    let body: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    assert!(body.contains(&("client_id".into(), "gatehouse".into())));
    assert!(body.contains(&("client_secret".into(), "s3cret".into())));

    let s = settings(ClientAuthenticationMethod::None);
    let mut no_pkce = grant(None);
    no_pkce.code_verifier = None;
    let (headers, body) = token_request(&s, APP, &no_pkce);
    assert!(!headers.iter().any(|(n, _)| n == "Authorization"));
    let body: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    assert!(body.contains(&("client_id".into(), "gatehouse".into())));
    assert!(!body
        .iter()
        .any(|(n, _)| n == "client_secret" || n == "code_verifier"));
}

#[tokio::test]
async fn each_provider_failure_has_its_status() {
    let s = settings(ClientAuthenticationMethod::ClientSecretPost);
    let info = json!({"sub": "u1"});
    let cases: Vec<(TokenAnswerFn, u16, &str)> = vec![
        (
            Box::new(|| ok(200, json!({"access_token": "a\r\nX-Evil: 1"}))),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            Box::new(|| ok(200, json!({"access_token": "a", "refresh_token": "r\u{1}"}))),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            Box::new(|| {
                ok(
                    200,
                    json!({"access_token": "a", "id_token": "h.p.s; Domain=evil"}),
                )
            }),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            Box::new(|| Err(HttpFailure::Timeout)),
            504,
            "[IdentityProviderTimeout]",
        ),
        (
            Box::new(|| Err(HttpFailure::Unreachable("cannot connect".into()))),
            502,
            "[IdentityProviderUnreachable]",
        ),
        (
            Box::new(|| ok(400, json!({"error": "invalid_grant"}))),
            401,
            "[InvalidAuthorizationCode]",
        ),
        (
            Box::new(|| ok(401, json!({"error": "invalid_client"}))),
            502,
            "[IdentityProviderRejectedClient]",
        ),
        (
            Box::new(|| ok(500, json!({}))),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            Box::new(|| {
                Ok(HttpAnswer {
                    status: 200,
                    content_type: None,
                    body: b"<html>".to_vec(),
                })
            }),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            Box::new(|| ok(200, json!({"token_type": "Bearer"}))),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            Box::new(|| ok(200, json!({"access_token": "a", "token_type": "DPoP"}))),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
    ];
    for (token, status, code) in cases {
        let http = provider(token, info.clone());
        let (outcome, _) = run(&http, FakeKeys(Ok(id_claims())), &s, &grant(None)).await;
        let error = outcome.expect_err("fails");
        assert_eq!((error.status, error.code), (status, code), "{error:?}");
    }
}

#[tokio::test]
async fn the_id_token_and_userinfo_are_checked() {
    let s = settings(ClientAuthenticationMethod::ClientSecretBasic);
    let check = |keys: FakeKeys, info: Value, nonce: Option<&'static str>| {
        let s = s.clone();
        async move {
            let http = provider(good_tokens, info);
            let (outcome, _) = run(&http, keys, &s, &grant(nonce)).await;
            outcome.expect_err("refused")
        }
    };
    let e = check(
        FakeKeys(Err(RemoteKeyError::Unavailable)),
        json!({"sub": "u1"}),
        None,
    )
    .await;
    assert_eq!(
        (e.status, e.code),
        (503, "[IdentityProviderKeysUnavailable]")
    );
    let e = check(
        FakeKeys(Err(RemoteKeyError::Invalid("bad_signature"))),
        json!({"sub": "u1"}),
        None,
    )
    .await;
    assert_eq!((e.status, e.code), (401, "[InvalidIdToken]"));
    assert!(e.message.contains("bad_signature"), "{}", e.message);
    let e = check(
        FakeKeys(Ok(id_claims())),
        json!({"sub": "u1"}),
        Some("other"),
    )
    .await;
    assert_eq!((e.status, e.code), (401, "[InvalidIdToken]"));
    let e = check(FakeKeys(Ok(id_claims())), json!({"sub": "u2"}), None).await;
    assert_eq!((e.status, e.code), (401, "[InvalidUserInfo]"));
    let e = check(
        FakeKeys(Ok(id_claims())),
        json!(["not", "an", "object"]),
        None,
    )
    .await;
    assert_eq!(
        (e.status, e.code),
        (502, "[InvalidIdentityProviderResponse]")
    );
}

#[tokio::test]
async fn without_an_issuer_the_userinfo_answer_is_used() {
    let mut s = settings(ClientAuthenticationMethod::ClientSecretBasic);
    s.issuer = None;
    s.token_endpoint = Some("https://idp.example/token".into());
    s.userinfo_endpoint = Some("https://idp.example/userinfo".into());
    s.application_overrides.insert(
        APP,
        crate::provider::ApplicationOverride {
            client_id: Some("app-client".into()),
            ..Default::default()
        },
    );
    let http = provider(good_tokens, json!({"sub": "u9", "email": "x@example.com"}));
    let (outcome, calls) = run(
        &http,
        FakeKeys(Err(RemoteKeyError::Unavailable)),
        &s,
        &grant(None),
    )
    .await;
    let done = outcome.expect("completed");
    assert_eq!(done.claims["sub"], "u9");
    assert_eq!(done.id_token, Value::Null);
    assert_eq!(calls.len(), 2, "no discovery without an issuer");
    assert_eq!(
        header(&calls[0], "authorization"),
        Some(format!("Basic {}", STANDARD.encode("app-client:s3cret")).as_str()),
        "the application's client id, the provider's secret"
    );
    // A nonce cannot be checked without an ID token: refused.
    let http = provider(good_tokens, json!({"sub": "u9"}));
    let (outcome, _) = run(
        &http,
        FakeKeys(Err(RemoteKeyError::Unavailable)),
        &s,
        &grant(Some("n")),
    )
    .await;
    assert_eq!(outcome.expect_err("refused").status, 401);
}

#[tokio::test]
async fn with_an_issuer_an_id_token_that_cannot_be_checked_is_no_login() {
    let s = settings(ClientAuthenticationMethod::ClientSecretBasic);
    // The token endpoint gives no ID token although `openid` was asked for.
    let no_id_token = || ok(200, json!({"access_token": "at", "token_type": "Bearer"}));
    let http = provider(no_id_token, json!({"sub": "u1"}));
    let (outcome, _) = run(&http, FakeKeys(Ok(id_claims())), &s, &grant(None)).await;
    let e = outcome.expect_err("refused");
    assert_eq!(
        (e.status, e.code),
        (502, "[InvalidIdentityProviderResponse]")
    );
    assert!(e.message.contains("id_token"), "{}", e.message);
    // Without `openid` in the scope no ID token is expected: the userinfo answer is used.
    let mut plain = s.clone();
    plain.scope = Some("email profile".into());
    let http = provider(no_id_token, json!({"sub": "u1"}));
    let (outcome, _) = run(&http, FakeKeys(Ok(id_claims())), &plain, &grant(None)).await;
    assert_eq!(outcome.expect("completed").claims["sub"], "u1");
    // A discovery document without `jwks_uri`: the ID token cannot be checked.
    let no_keys = FakeHttp {
        answer: Box::new(|call| match call.url.rsplit('/').next() {
            Some("openid-configuration") => ok(
                200,
                json!({"issuer": ISSUER, "token_endpoint": "https://idp.example/token",
                       "userinfo_endpoint": "https://idp.example/userinfo"}),
            ),
            Some("token") => good_tokens(),
            _ => ok(200, json!({"sub": "u1"})),
        }),
        calls: Mutex::new(Vec::new()),
    };
    let (outcome, _) = run(&no_keys, FakeKeys(Ok(id_claims())), &s, &grant(None)).await;
    let e = outcome.expect_err("refused");
    assert_eq!(e.status, 502);
    assert!(e.message.contains("jwks_uri"), "{}", e.message);
    assert!(s.asks_for(APP, "openid") && !plain.asks_for(APP, "openid"));
}

#[tokio::test]
async fn the_application_scope_decides_whether_an_id_token_is_due() {
    use crate::provider::ApplicationOverride;
    let no_id_token = || ok(200, json!({"access_token": "at", "token_type": "Bearer"}));
    let with_scope = |provider: Option<&str>, app: Option<&str>| {
        let mut s = settings(ClientAuthenticationMethod::ClientSecretBasic);
        s.scope = provider.map(str::to_string);
        let own = ApplicationOverride {
            scope: app.map(str::to_string),
            ..Default::default()
        };
        s.application_overrides.insert(APP, own);
        s
    };
    // The provider asks for openid, the application does not: the userinfo answer is used.
    let s = with_scope(Some("openid email"), Some("email profile"));
    let http = provider(no_id_token, json!({"sub": "u1"}));
    let (outcome, _) = run(&http, FakeKeys(Ok(id_claims())), &s, &grant(None)).await;
    assert_eq!(outcome.expect("completed").claims["sub"], "u1");
    // The application asks for openid, the provider does not: the ID token is due.
    let s = with_scope(Some("email"), Some("email openid"));
    let http = provider(no_id_token, json!({"sub": "u1"}));
    let (outcome, _) = run(&http, FakeKeys(Ok(id_claims())), &s, &grant(None)).await;
    let e = outcome.expect_err("refused");
    assert_eq!(e.status, 502);
    assert!(e.message.contains("id_token"), "{}", e.message);
    // Another application's override changes nothing for this one.
    let mut other = with_scope(Some("email"), None);
    let own = ApplicationOverride {
        scope: Some("openid".into()),
        ..Default::default()
    };
    other.application_overrides.insert(Uuid::from_u128(8), own);
    let http = provider(no_id_token, json!({"sub": "u1"}));
    let (outcome, _) = run(&http, FakeKeys(Ok(id_claims())), &other, &grant(None)).await;
    assert_eq!(outcome.expect("completed").claims["sub"], "u1");
}

#[test]
fn an_id_token_is_a_compact_jws() {
    assert!(compact_jws("eyJh.eyJz.c2ln") && compact_jws("a-_.b.") && compact_jws(".."));
    for bad in ["a.b", "a.b.c.d", "a.b.c;x", "a.b.c\r\n", "a.b+.c", "a.b.c="] {
        assert!(!compact_jws(bad), "{bad}");
    }
}

/// A compact JWS of `claims` signed with `alg` (an HMAC) under `secret`.
fn hmac_signed(alg: &str, claims: &Value, secret: &[u8]) -> String {
    super::signed::tests::sign(alg, claims, secret)
}

/// A provider whose token endpoint returns `id_token` and whose userinfo endpoint answers
/// `userinfo` with `content_type`.
fn provider_answering(id_token: String, content_type: &'static str, userinfo: String) -> FakeHttp {
    FakeHttp {
        answer: Box::new(move |call| match call.url.rsplit('/').next() {
            Some("openid-configuration") => ok(
                200,
                json!({"issuer": ISSUER, "token_endpoint": "https://idp.example/token",
                       "userinfo_endpoint": "https://idp.example/userinfo",
                       "jwks_uri": "https://idp.example/jwks"}),
            ),
            Some("token") => ok(
                200,
                json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}),
            ),
            Some("userinfo") => Ok(HttpAnswer {
                status: 200,
                content_type: Some(content_type.into()),
                body: userinfo.clone().into_bytes(),
            }),
            _ => Err(HttpFailure::Unreachable("no such path".into())),
        }),
        calls: Mutex::new(Vec::new()),
    }
}

#[tokio::test]
async fn hmac_id_tokens_verify_with_the_client_secret_only() {
    let claims = Value::Object(id_claims());
    let info = json!({"sub": "u1"}).to_string();
    // The issuer's keys are never asked for an HMAC token (they would fail the login).
    let keys = || FakeKeys(Err(RemoteKeyError::Unavailable));
    let s = settings(ClientAuthenticationMethod::ClientSecretBasic);
    for alg in ["HS256", "HS384", "HS512"] {
        let token = hmac_signed(alg, &claims, b"s3cret");
        let http = provider_answering(token, "application/json", info.clone());
        let (outcome, _) = run(&http, keys(), &s, &grant(Some("n1"))).await;
        let done = outcome.unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(done.id_token["sub"], "u1");
    }
    // Refused: another secret; the issuer's public key as the secret (algorithm confusion);
    // claims that fail their checks; a provider without a client secret.
    let refused = [
        (hmac_signed("HS256", &claims, b"not-the-secret"), s.clone()),
        (
            hmac_signed("HS256", &claims, br#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#),
            s.clone(),
        ),
        (
            hmac_signed("HS256", &json!({"aud": "other", "iss": ISSUER}), b"s3cret"),
            s.clone(),
        ),
        (hmac_signed("HS256", &claims, b""), {
            let mut none = s.clone();
            none.client_secret = None;
            none.client_authentication_method = ClientAuthenticationMethod::None;
            none
        }),
    ];
    for (token, settings) in refused {
        let http = provider_answering(token, "application/json", info.clone());
        let (outcome, _) = run(&http, keys(), &settings, &grant(Some("n1"))).await;
        let e = outcome.expect_err("refused");
        assert_eq!(
            (e.status, e.code),
            (401, "[InvalidIdToken]"),
            "{}",
            e.message
        );
    }
}

#[tokio::test]
async fn a_signed_userinfo_answer_is_verified_and_checked() {
    let s = settings(ClientAuthenticationMethod::ClientSecretBasic);
    let id = hmac_signed("HS256", &Value::Object(id_claims()), b"s3cret");
    let info = |claims: Value, secret: &[u8]| hmac_signed("HS256", &claims, secret);
    let good = json!({"iss": ISSUER, "aud": "gatehouse", "sub": "u1", "roles": ["admin"]});
    // Signed with the client secret, and by the issuer's keys (which the fake keys verify).
    let http = provider_answering(
        id.clone(),
        "application/jwt; charset=utf-8",
        info(good.clone(), b"s3cret"),
    );
    let keys = FakeKeys(Err(RemoteKeyError::Unavailable));
    let (outcome, calls) = run(&http, keys, &s, &grant(None)).await;
    let done = outcome.expect("signed userinfo accepted");
    assert_eq!(done.jwt["roles"], json!(["admin"]));
    let asked = header(calls.last().expect("userinfo"), "accept").unwrap_or_default();
    assert!(asked.contains("application/jwt"), "{asked}");
    let rs = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".to_string();
    let http = provider_answering(id.clone(), "application/jwt", rs.clone());
    let keys = FakeKeys(Ok(good.as_object().cloned().expect("object")));
    let (outcome, _) = run(&http, keys, &s, &grant(None)).await;
    assert_eq!(outcome.expect("by the issuer's keys").jwt["sub"], "u1");
    // Refused, never used unverified.
    let cases = [
        (info(good.clone(), b"wrong"), 401, "[InvalidUserInfo]"),
        (
            info(
                json!({"iss": "https://evil.example", "sub": "u1"}),
                b"s3cret",
            ),
            401,
            "[InvalidUserInfo]",
        ),
        (
            info(
                json!({"iss": ISSUER, "aud": "other", "sub": "u1"}),
                b"s3cret",
            ),
            401,
            "[InvalidUserInfo]",
        ),
        (
            info(json!({"iss": ISSUER, "sub": "u2"}), b"s3cret"),
            401,
            "[InvalidUserInfo]",
        ),
        (
            "not a jwt".to_string(),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
    ];
    for (body, status, code) in cases {
        let http = provider_answering(id.clone(), "application/jwt", body.clone());
        let keys = FakeKeys(Err(RemoteKeyError::Unavailable));
        let (outcome, _) = run(&http, keys, &s, &grant(None)).await;
        let e = outcome.expect_err("refused");
        assert_eq!((e.status, e.code), (status, code), "{body}: {}", e.message);
    }
    // An asymmetric signature the issuer's keys refuse.
    let http = provider_answering(id, "application/jwt", rs);
    let keys = FakeKeys(Err(RemoteKeyError::Invalid("bad_signature")));
    let (outcome, _) = run(&http, keys, &s, &grant(None)).await;
    let e = outcome.expect_err("refused");
    assert_eq!((e.status, e.code), (401, "[InvalidUserInfo]"));
}
