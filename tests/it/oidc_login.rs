//! OpenID Connect logins completed through the API (`POST /api/identity-provider/login` and
//! `/api/jwt/reconcile` with `data.code`), against a provider the test plays: discovery, a
//! JWKS, a token endpoint that checks the client's authentication, the redirect URI, the PKCE
//! verifier and that each code is used once, and a userinfo endpoint; with faults switched on
//! one at a time (down, slow, garbage, ID tokens that fail each check, userinfo naming another
//! user, keys that cannot be fetched).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use gatehouse::auth::keys::{generate_material, KeyAlgorithm, SigningKey};
use gatehouse::config::{KeySource, KeySpec};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::blocking::Response;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// The client the gateway is registered as; the secret has characters RFC 6749 §2.3.1's
/// form-urlencoding changes, so a client that skips it is refused.
const CLIENT_ID: &str = "gatehouse";
const CLIENT_SECRET: &str = "oidc-secret:with/special+chars&=%";
const REDIRECT_URI: &str = "https://app.example/callback";
const VERIFIER: &str = "pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

/// One fault of the provider at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// The token endpoint closes connections unanswered.
    Down,
    /// The token endpoint answers after this long.
    Slow(Duration),
    /// The token endpoint answers 200 with HTML.
    BadJson,
    /// The JWKS endpoint closes connections unanswered.
    KeysDown,
    WrongIssuer,
    WrongAudience,
    /// Two audiences and an `azp` naming the other one.
    WrongAzp,
    Expired,
    /// Signed by another key under the provider's `kid`.
    BadSignature,
    /// `alg: none`, no signature.
    AlgNone,
    /// The userinfo answer names another `sub`.
    UserinfoSubject,
}

/// What the authorization endpoint would have recorded for a code.
struct Issued {
    sub: String,
    nonce: Option<String>,
    userinfo: Value,
}

#[derive(Default)]
struct State {
    fault: Option<Fault>,
    codes: HashMap<String, Issued>,
    /// Userinfo answers by access token.
    access: HashMap<String, Value>,
    /// Refresh tokens issued, newest last.
    refresh_tokens: Vec<String>,
}

/// The provider: a plain HTTP server on a thread per connection.
struct Provider {
    port: u16,
    state: Arc<Mutex<State>>,
    key: Arc<(String, Value)>,
    other_key: Arc<String>,
}

/// An ES256 key: its private PEM and public JWK under `kid`.
fn es256(kid: &str) -> (String, Value) {
    let spec = KeySpec {
        id: Uuid::new_v4(),
        name: "provider".into(),
        algorithm: KeyAlgorithm::ES256,
        source: KeySource::Generate,
    };
    let material = generate_material(&spec, 0).expect("generate");
    let key = SigningKey::from_spec(&spec, Some(&material)).expect("key");
    let mut jwk = key.public().expect("public").jwk.clone();
    jwk["kid"] = json!(kid);
    (material.private_key.expect("private key"), jwk)
}

impl Provider {
    fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let provider = Provider {
            port: listener.local_addr().expect("addr").port(),
            state: Arc::new(Mutex::new(State::default())),
            key: Arc::new(es256("provider-key")),
            other_key: Arc::new(es256("provider-key").0),
        };
        let (state, key, other, port) = (
            provider.state.clone(),
            provider.key.clone(),
            provider.other_key.clone(),
            provider.port,
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, key, other) = (state.clone(), key.clone(), other.clone());
                std::thread::spawn(move || serve(stream, port, &state, &key, &other));
            }
        });
        provider
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_fault(&self, fault: Fault) {
        self.state.lock().expect("lock").fault = Some(fault);
    }

    /// A code for the user `sub` (what the authorization endpoint gives the browser).
    fn code_for(&self, sub: &str, nonce: Option<&str>, userinfo: Value) -> String {
        let code = format!("code-{}", Uuid::new_v4());
        self.state.lock().expect("lock").codes.insert(
            code.clone(),
            Issued {
                sub: sub.into(),
                nonce: nonce.map(str::to_string),
                userinfo,
            },
        );
        code
    }

    fn last_refresh_token(&self) -> String {
        let state = self.state.lock().expect("lock");
        state
            .refresh_tokens
            .last()
            .cloned()
            .expect("a refresh token")
    }
}

/// Reads one request: its head (lower-case header names) and its body.
fn read_request(stream: &mut TcpStream) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length = headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((request_line, headers, body))
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// Answers one request as the provider would, with the fault switched on.
fn serve(
    mut stream: TcpStream,
    port: u16,
    state: &Mutex<State>,
    key: &(String, Value),
    other: &str,
) {
    let Some((request_line, headers, body)) = read_request(&mut stream) else {
        return;
    };
    let fault = state.lock().expect("lock").fault.unwrap_or(Fault::None);
    let issuer = format!("http://127.0.0.1:{port}");
    let path = request_line.split(' ').nth(1).unwrap_or_default();
    match path {
        "/.well-known/openid-configuration" => {
            let document = json!({"issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"), "userinfo_endpoint": format!("{issuer}/userinfo"),
                "jwks_uri": format!("{issuer}/jwks")});
            respond(&mut stream, 200, &document.to_string());
        }
        "/jwks" if fault == Fault::KeysDown => {}
        "/jwks" => respond(&mut stream, 200, &json!({"keys": [key.1]}).to_string()),
        "/token" => match fault {
            Fault::Down => {}
            Fault::BadJson => respond(&mut stream, 200, "<html>maintenance</html>"),
            _ => {
                if let Fault::Slow(delay) = fault {
                    std::thread::sleep(delay);
                }
                let (status, answer) = token(state, &issuer, &headers, &body, fault, key, other);
                respond(&mut stream, status, &answer.to_string());
            }
        },
        "/userinfo" => {
            let bearer = headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or_default()
                .to_string();
            let found = state.lock().expect("lock").access.get(&bearer).cloned();
            match found {
                Some(mut info) => {
                    if fault == Fault::UserinfoSubject {
                        info["sub"] = json!("someone-else");
                    }
                    respond(&mut stream, 200, &info.to_string())
                }
                None => respond(&mut stream, 401, r#"{"error":"invalid_token"}"#),
            }
        }
        _ => respond(&mut stream, 404, "{}"),
    }
}

/// The token endpoint: checks the client (Basic, form-urlencoded before Base64), the code
/// (once), the redirect URI and the PKCE verifier; answers the tokens, the ID token shaped by
/// the fault.
fn token(
    state: &Mutex<State>,
    issuer: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    fault: Fault,
    key: &(String, Value),
    other: &str,
) -> (u16, Value) {
    let expected_basic = {
        let enc = |s: &str| {
            reqwest::Url::parse_with_params("http://x/", &[("v", s)])
                .expect("url")
                .query()
                .expect("query")[2..]
                .to_string()
        };
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", enc(CLIENT_ID), enc(CLIENT_SECRET)))
        )
    };
    if headers.get("authorization") != Some(&expected_basic) {
        return (401, json!({"error": "invalid_client"}));
    }
    let url =
        reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body))).expect("form");
    let form: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let field = |n: &str| form.get(n).map(String::as_str);
    if field("grant_type") != Some("authorization_code")
        || field("redirect_uri") != Some(REDIRECT_URI)
        || field("code_verifier") != Some(VERIFIER)
    {
        return (400, json!({"error": "invalid_request"}));
    }
    let mut state = state.lock().expect("lock");
    let Some(issued) = field("code").and_then(|c| state.codes.remove(c)) else {
        return (400, json!({"error": "invalid_grant"}));
    };
    let mut claims = json!({"iss": issuer, "aud": CLIENT_ID, "sub": issued.sub,
                            "iat": now(), "exp": now() + 300});
    if let Some(nonce) = &issued.nonce {
        claims["nonce"] = json!(nonce);
    }
    match fault {
        Fault::WrongIssuer => claims["iss"] = json!("https://evil.example"),
        Fault::WrongAudience => claims["aud"] = json!("someone-else"),
        Fault::WrongAzp => {
            claims["aud"] = json!([CLIENT_ID, "other"]);
            claims["azp"] = json!("other");
        }
        Fault::Expired => {
            claims["iat"] = json!(now() - 900);
            claims["exp"] = json!(now() - 600);
        }
        _ => {}
    }
    let id_token = sign(&claims, fault, key, other);
    let access_token = format!("at-{}", Uuid::new_v4());
    let refresh_token = format!("provider-refresh-{}", Uuid::new_v4());
    state.access.insert(access_token.clone(), issued.userinfo);
    state.refresh_tokens.push(refresh_token.clone());
    (
        200,
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
               "id_token": id_token, "refresh_token": refresh_token}),
    )
}

/// The ID token: ES256 by the provider's key, or as the fault says.
fn sign(claims: &Value, fault: Fault, key: &(String, Value), other: &str) -> String {
    if fault == Fault::AlgNone {
        let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        return format!(
            "{}.{}.",
            b(&json!({"alg": "none", "typ": "JWT", "kid": "provider-key"})),
            b(claims)
        );
    }
    let pem = if fault == Fault::BadSignature {
        other
    } else {
        &key.0
    };
    let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("provider-key".into());
    header.typ = Some("JWT".into());
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

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
