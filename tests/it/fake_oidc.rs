//! An OpenID Connect provider the tests play: discovery (with an `end_session_endpoint`), a
//! JWKS, an authorization endpoint that logs a set user in at once and redirects back with a
//! code bound to the request's redirect URI, PKCE challenge and nonce, a token endpoint that
//! checks the client's authentication (the gateway's client, or others registered, each code
//! bound to the client it was issued to), the redirect URI, the PKCE verifier and that each code
//! is used once, a userinfo endpoint and an end-session endpoint that records its calls; with
//! faults switched on one at a time (down, slow, garbage, ID tokens that fail each check,
//! userinfo naming another user, keys that cannot be fetched, another `iss` on the redirect).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use gatehouse::auth::keys::{generate_material, KeyAlgorithm, SigningKey};
use gatehouse::config::{KeySource, KeySpec};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::now;

/// The client the gateway is registered as; the secret has characters RFC 6749 §2.3.1's
/// form-urlencoding changes, so a client that skips it is refused.
pub const CLIENT_ID: &str = "gatehouse";
pub const CLIENT_SECRET: &str = "oidc-secret:with/special+chars&=%";
pub const REDIRECT_URI: &str = "https://app.example/callback";
pub const VERIFIER: &str = "pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

/// One fault of the provider at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// The token endpoint closes connections unanswered.
    Down,
    /// The token endpoint answers after this long.
    Slow(Duration),
    /// The token endpoint answers 200 with HTML.
    BadJson,
    /// The ID token carries another nonce than the authorization request's.
    WrongNonce,
    /// The authorization endpoint names another issuer in its `iss` parameter (RFC 9207).
    MixUp,
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
    /// The ID token is HS256 under the client secret (OpenID Connect Core §10.1).
    HmacSigned,
    /// The ID token is HS256 under another secret.
    HmacWrongSecret,
    /// The ID token is HS256 with the provider's public key (its JWK) as the secret: the
    /// algorithm confusion of someone who knows only the published key.
    HmacWithPublicKey,
    /// The userinfo answer is a JWT (`application/jwt`) the provider's key signs, with `iss`
    /// and `aud`.
    SignedUserinfo,
    /// The userinfo answer is a JWT signed by another key under the provider's `kid`.
    SignedUserinfoForged,
    /// The userinfo answer is a JWT for another audience.
    SignedUserinfoWrongAudience,
}

/// What the authorization endpoint would have recorded for a code.
pub struct Issued {
    pub sub: String,
    pub nonce: Option<String>,
    pub userinfo: Value,
    /// The authorization request's `redirect_uri` and PKCE S256 challenge (a code issued by
    /// the authorization endpoint); `None`: the fixed [`REDIRECT_URI`] and [`VERIFIER`].
    pub redirect_uri: Option<String>,
    pub challenge: Option<String>,
    /// The client the authorization request named; `None`: [`CLIENT_ID`].
    pub client_id: Option<String>,
}

#[derive(Default)]
pub struct State {
    pub fault: Option<Fault>,
    pub codes: HashMap<String, Issued>,
    /// Userinfo answers by access token.
    pub access: HashMap<String, Value>,
    /// Refresh tokens issued, newest last.
    pub refresh_tokens: Vec<String>,
    /// The user the authorization endpoint logs in (its `sub` and userinfo answer).
    pub user: Option<(String, Value)>,
    /// The authorization requests received (their query strings), newest last.
    pub authorizations: Vec<String>,
    /// The end-session requests received (their query strings), newest last.
    pub logouts: Vec<String>,
    /// The ID tokens issued, newest last.
    pub id_tokens: Vec<String>,
    /// Clients registered besides [`CLIENT_ID`] (id → secret), e.g. an application's own.
    pub clients: HashMap<String, String>,
    /// The client each successful token request authenticated as, newest last.
    pub token_clients: Vec<String>,
}

/// The provider: a plain HTTP server on a thread per connection.
pub struct Provider {
    pub port: u16,
    pub state: Arc<Mutex<State>>,
    key: Arc<(String, Value)>,
    other_key: Arc<String>,
}

/// An ES256 key: its private PEM and public JWK under `kid`.
pub fn es256(kid: &str) -> (String, Value) {
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
    pub fn start() -> Provider {
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

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn set_fault(&self, fault: Fault) {
        self.state.lock().expect("lock").fault = Some(fault);
    }

    /// A code for the user `sub` (what the authorization endpoint gives the browser).
    pub fn code_for(&self, sub: &str, nonce: Option<&str>, userinfo: Value) -> String {
        let code = format!("code-{}", Uuid::new_v4());
        self.state.lock().expect("lock").codes.insert(
            code.clone(),
            Issued {
                sub: sub.into(),
                nonce: nonce.map(str::to_string),
                userinfo,
                redirect_uri: None,
                challenge: None,
                client_id: None,
            },
        );
        code
    }

    /// A code for the user `sub` issued to the registered client `client_id`.
    pub fn code_for_client(&self, sub: &str, userinfo: Value, client_id: &str) -> String {
        let code = self.code_for(sub, None, userinfo);
        let mut state = self.state.lock().expect("lock");
        if let Some(issued) = state.codes.get_mut(&code) {
            issued.client_id = Some(client_id.into());
        }
        code
    }

    /// Registers another client (an application's own) with its secret.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        let mut state = self.state.lock().expect("lock");
        state.clients.insert(client_id.into(), secret.into());
    }

    /// The authorization endpoint will log in `sub` with this userinfo answer.
    pub fn log_in_as(&self, sub: &str, userinfo: Value) {
        self.state.lock().expect("lock").user = Some((sub.into(), userinfo));
    }

    pub fn last_refresh_token(&self) -> String {
        let state = self.state.lock().expect("lock");
        state
            .refresh_tokens
            .last()
            .cloned()
            .expect("a refresh token")
    }
}

/// Reads one request: its head (lower-case header names) and its body.
pub fn read_request(stream: &mut TcpStream) -> Option<(String, HashMap<String, String>, Vec<u8>)> {
    let head = super::kit::read_head(stream)?;
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

/// The PKCE S256 challenge of `verifier`.
pub fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// The authorization endpoint: logs in the configured user at once (no form) and redirects
/// back with a code bound to the request's `redirect_uri`, PKCE challenge and nonce, the
/// `state`, and `iss` (another issuer with [`Fault::MixUp`]). A request without `state`,
/// without an S256 challenge, or for another client is answered 400.
fn authorize(
    stream: &mut TcpStream,
    state: &Mutex<State>,
    issuer: &str,
    query: &str,
    fault: Fault,
) {
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).expect("query");
    let params: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let param = |n: &str| params.get(n).cloned();
    let mut state = state.lock().expect("lock");
    state.authorizations.push(query.to_string());
    let client = param("client_id").unwrap_or_default();
    let well_formed = param("response_type").as_deref() == Some("code")
        && (client == CLIENT_ID || state.clients.contains_key(&client))
        && param("code_challenge_method").as_deref() == Some("S256")
        && param("state").is_some();
    let (Some((sub, userinfo)), true, Some(redirect_uri)) =
        (state.user.clone(), well_formed, param("redirect_uri"))
    else {
        return respond(stream, 400, r#"{"error":"invalid_request"}"#);
    };
    let code = format!("code-{}", Uuid::new_v4());
    state.codes.insert(
        code.clone(),
        Issued {
            sub,
            nonce: param("nonce"),
            userinfo,
            redirect_uri: Some(redirect_uri.clone()),
            challenge: param("code_challenge"),
            client_id: Some(client),
        },
    );
    let iss = if fault == Fault::MixUp {
        "https://evil.example"
    } else {
        issuer
    };
    let mut back = reqwest::Url::parse(&redirect_uri).expect("redirect_uri");
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &param("state").unwrap_or_default())
        .append_pair("iss", iss);
    let response = format!(
        "HTTP/1.1 302 Found\r\nLocation: {back}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(response.as_bytes());
}

pub fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// The userinfo answer as a JWT, when the fault asks for one: `info` with `iss` and `aud`,
/// ES256 by the provider's key (or another key, or for another audience).
fn signed_userinfo(
    info: &Value,
    issuer: &str,
    fault: Fault,
    key: &(String, Value),
    other: &str,
) -> Option<String> {
    let (pem, audience) = match fault {
        Fault::SignedUserinfo => (key.0.as_str(), CLIENT_ID),
        Fault::SignedUserinfoForged => (other, CLIENT_ID),
        Fault::SignedUserinfoWrongAudience => (key.0.as_str(), "someone-else"),
        _ => return None,
    };
    let mut claims = info.clone();
    claims["iss"] = json!(issuer);
    claims["aud"] = json!(audience);
    Some(sign(
        &claims,
        Fault::None,
        &(pem.to_string(), key.1.clone()),
        other,
    ))
}

/// A 200 with `body` as `content_type`.
fn respond_typed(stream: &mut TcpStream, content_type: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// Answers one request as the provider would, with the fault switched on.
pub fn serve(
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
    let target = request_line.split(' ').nth(1).unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/authorize" => authorize(&mut stream, state, &issuer, query, fault),
        "/logout" => {
            state.lock().expect("lock").logouts.push(query.to_string());
            respond(&mut stream, 200, "{}")
        }
        "/.well-known/openid-configuration" => {
            let document = json!({"issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"), "userinfo_endpoint": format!("{issuer}/userinfo"),
                "jwks_uri": format!("{issuer}/jwks"), "end_session_endpoint": format!("{issuer}/logout"),
                "authorization_response_iss_parameter_supported": true});
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
                    match signed_userinfo(&info, &issuer, fault, key, other) {
                        Some(jwt) => respond_typed(&mut stream, "application/jwt", &jwt),
                        None => respond(&mut stream, 200, &info.to_string()),
                    }
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
pub fn token(
    state: &Mutex<State>,
    issuer: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
    fault: Fault,
    key: &(String, Value),
    other: &str,
) -> (u16, Value) {
    let Some(client) = basic_client(state, headers) else {
        return (401, json!({"error": "invalid_client"}));
    };
    let url =
        reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body))).expect("form");
    let form: HashMap<String, String> = url.query_pairs().into_owned().collect();
    let field = |n: &str| form.get(n).map(String::as_str);
    let mut state = state.lock().expect("lock");
    let Some(issued) = field("code").and_then(|c| state.codes.remove(c)) else {
        return (400, json!({"error": "invalid_grant"}));
    };
    let verifier_ok = match &issued.challenge {
        Some(challenge) => field("code_verifier").map(s256).as_ref() == Some(challenge),
        None => field("code_verifier") == Some(VERIFIER),
    };
    let redirect = issued.redirect_uri.as_deref().unwrap_or(REDIRECT_URI);
    // A code is for the client that asked for it (RFC 6749 §4.1.3).
    if issued.client_id.as_deref().unwrap_or(CLIENT_ID) != client {
        return (400, json!({"error": "invalid_grant"}));
    }
    if field("grant_type") != Some("authorization_code")
        || field("redirect_uri") != Some(redirect)
        || !verifier_ok
    {
        return (400, json!({"error": "invalid_grant"}));
    }
    state.token_clients.push(client.clone());
    let mut claims = json!({"iss": issuer, "aud": client, "sub": issued.sub,
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
        Fault::WrongNonce => claims["nonce"] = json!("another-nonce"),
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
    state.id_tokens.push(id_token.clone());
    (
        200,
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": 300,
               "id_token": id_token, "refresh_token": refresh_token}),
    )
}

/// The client a token request authenticates as with HTTP Basic (id and secret
/// form-urlencoded before Base64, RFC 6749 §2.3.1): [`CLIENT_ID`] or a registered one; `None`
/// when the header names no known client with its secret.
fn basic_client(state: &Mutex<State>, headers: &HashMap<String, String>) -> Option<String> {
    let enc = |s: &str| {
        reqwest::Url::parse_with_params("http://x/", &[("v", s)])
            .expect("url")
            .query()
            .expect("query")[2..]
            .to_string()
    };
    let mut clients = state.lock().expect("lock").clients.clone();
    clients.insert(CLIENT_ID.into(), CLIENT_SECRET.into());
    let given = headers.get("authorization")?;
    clients.into_iter().find_map(|(id, secret)| {
        let expected = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", enc(&id), enc(&secret)))
        );
        (*given == expected).then_some(id)
    })
}

/// A compact JWS of `claims`, HS256 under `secret`.
fn hs256(claims: &Value, secret: &[u8]) -> String {
    let header = Header::new(jsonwebtoken::Algorithm::HS256);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).expect("sign")
}

/// The ID token: ES256 by the provider's key, or as the fault says.
pub fn sign(claims: &Value, fault: Fault, key: &(String, Value), other: &str) -> String {
    match fault {
        Fault::HmacSigned => return hs256(claims, CLIENT_SECRET.as_bytes()),
        Fault::HmacWrongSecret => return hs256(claims, b"not-the-client-secret"),
        Fault::HmacWithPublicKey => return hs256(claims, key.1.to_string().as_bytes()),
        _ => {}
    }
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
