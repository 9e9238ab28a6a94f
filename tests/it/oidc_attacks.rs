//! Attacks on OpenID Connect logins completed through the API (`POST
//! /api/identity-provider/login` with `data.code`), through the real binary: the OpenID RP
//! conformance cases for ID tokens (headers and claims), userinfo and token endpoint answers
//! that are wrong, huge, slow or redirected, discovery documents that lie, and secrets in the
//! log. The provider here is scripted: each endpoint's answer is set by the test.

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

use super::fake_oidc::{es256, read_request, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI};
use super::kit::*;

/// An answer of the scripted provider.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
}

fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into(),
        delay: Duration::ZERO,
    }
}

/// A provider whose every endpoint answers what the test set, counting the requests.
struct Scripted {
    port: u16,
    answers: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let scripted = Scripted {
            port: listener.local_addr().expect("addr").port(),
            answers: Arc::default(),
            hits: Arc::default(),
        };
        let (answers, hits) = (scripted.answers.clone(), scripted.hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (answers, hits) = (answers.clone(), hits.clone());
                std::thread::spawn(move || serve(stream, &answers, &hits));
            }
        });
        scripted
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set(&self, path: &str, answer: Reply) {
        (self.answers.lock().expect("lock")).insert(path.to_string(), answer);
    }

    fn hits(&self, path: &str) -> usize {
        (self.hits.lock().expect("lock"))
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// The discovery document, with `changes` over the usual one.
    fn discovery(&self, changes: Value) {
        let issuer = self.issuer();
        let mut document = json!({"issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"), "userinfo_endpoint": format!("{issuer}/userinfo"),
            "jwks_uri": format!("{issuer}/jwks")});
        for (k, v) in changes.as_object().expect("object") {
            document[k] = v.clone();
        }
        self.set(
            "/.well-known/openid-configuration",
            reply(200, document.to_string()),
        );
    }

    /// The token endpoint answers `id_token` (and the usual access and refresh tokens).
    fn tokens(&self, id_token: Option<&str>) {
        let mut answer = json!({"access_token": "provider-access-7f3a", "token_type": "Bearer",
                                "refresh_token": "provider-refresh-9c1d", "expires_in": 300});
        if let Some(token) = id_token {
            answer["id_token"] = json!(token);
        }
        self.set("/token", reply(200, answer.to_string()));
    }
}

fn serve(
    mut stream: TcpStream,
    answers: &Mutex<HashMap<String, Reply>>,
    hits: &Mutex<HashMap<String, usize>>,
) {
    let Some((line, _, _)) = read_request(&mut stream) else {
        return;
    };
    let target = line.split(' ').nth(1).unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_string();
    *hits.lock().expect("lock").entry(path.clone()).or_default() += 1;
    let answer = answers.lock().expect("lock").get(&path).cloned();
    let answer = answer.unwrap_or_else(|| reply(404, "{}"));
    std::thread::sleep(answer.delay);
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&answer.body);
}

/// A JWT with exactly `header` and `claims`, signed with `key` under `algorithm`.
fn jwt(header: &Value, claims: &Value, key: &EncodingKey, algorithm: Algorithm) -> String {
    let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b(header), b(claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, algorithm).expect("sign");
    format!("{input}.{signature}")
}

/// The claims of a good ID token of `issuer` for the user `u1`, with `changes` (`null`
/// removes a claim).
fn claims(issuer: &str, changes: Value) -> Value {
    let mut base = json!({"iss": issuer, "aud": CLIENT_ID, "sub": "u1", "nonce": "n-1",
                          "iat": now(), "exp": now() + 300, "email": "u1@example.com"});
    for (k, v) in changes.as_object().expect("object") {
        if v.is_null() {
            base.as_object_mut().expect("object").remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

/// A gateway with an OpenIDConnect provider for `issuer`; returns it and the provider's id.
fn gateway_for(issuer: &str) -> (TestGateway, String) {
    let gw = TestGateway::start_with(Options {
        identity_provider: "providerTimeoutMillis: 1000".into(),
        ..Options::default()
    });
    let body = json!({"identityProvider": {
        "type": "OpenIDConnect", "name": "Scripted", "enabled": true,
        "oauth2": {"issuer": issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                   "scope": "openid email"},
        "applicationConfiguration": {APP: {"enabled": true, "createRegistration": true}}}});
    let created = client()
        .post(gw.url("/api/identity-provider"))
        .header("Authorization", API_KEY)
        .json(&body)
        .send()
        .expect("send");
    let created = check_status(created, 200);
    let id = created["identityProvider"]["id"].as_str().expect("id");
    (gw, id.to_string())
}

/// Completes a login with a code; returns the status, the body and how long it took.
fn log_in(gw: &TestGateway, idp: &str, nonce: Option<&str>) -> (u16, Value, Duration) {
    let mut data = json!({"code": "code-4e1f", "redirect_uri": REDIRECT_URI});
    if let Some(nonce) = nonce {
        data["nonce"] = json!(nonce);
    }
    let started = Instant::now();
    let response = client()
        .post(gw.url("/api/identity-provider/login"))
        .json(&json!({"applicationId": APP, "identityProviderId": idp, "data": data}))
        .send()
        .expect("send");
    let status = response.status().as_u16();
    let body = response.json().unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

/// A provider answering well: discovery, keys `kid`, tokens, userinfo for `u1`.
fn well_behaved(kid: &str) -> (Scripted, EncodingKey, Value) {
    let provider = Scripted::start();
    let (pem, jwk) = es256(kid);
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).expect("key");
    provider.discovery(json!({}));
    provider.set("/jwks", reply(200, json!({"keys": [jwk]}).to_string()));
    let header = json!({"alg": "ES256", "kid": kid, "typ": "JWT"});
    let token = jwt(
        &header,
        &claims(&provider.issuer(), json!({})),
        &key,
        Algorithm::ES256,
    );
    provider.tokens(Some(&token));
    let info = json!({"sub": "u1", "email": "u1@example.com", "email_verified": true});
    provider.set("/userinfo", reply(200, info.to_string()));
    (provider, key, jwk)
}

fn expect(outcome: (u16, Value, Duration), status: u16, code: &str, case: &str) {
    let (got, body, _) = outcome;
    assert_eq!(got, status, "{case}: {body}");
    assert_eq!(body["generalErrors"][0]["code"], code, "{case}: {body}");
}

#[test]
fn id_token_headers_and_claims_of_the_conformance_suite_are_refused() {
    let (provider, key, jwk) = well_behaved("k1");
    let (gw, idp) = gateway_for(&provider.issuer());
    let issuer = provider.issuer();
    assert_eq!(log_in(&gw, &idp, Some("n-1")).0, 200, "the good case");
    let es = |header: Value, changes: Value| {
        jwt(&header, &claims(&issuer, changes), &key, Algorithm::ES256)
    };
    let good_header = json!({"alg": "ES256", "kid": "k1"});
    let hs_key = EncodingKey::from_secret(jwk.to_string().as_bytes());
    let (other_pem, _) = es256("k1");
    let other_key = EncodingKey::from_ec_pem(other_pem.as_bytes()).expect("key");
    let hs = |k: &EncodingKey| {
        jwt(
            &json!({"alg": "HS256", "kid": "k1"}),
            &claims(&issuer, json!({})),
            k,
            Algorithm::HS256,
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong iss",
            es(good_header.clone(), json!({"iss": "https://evil.example"})),
        ),
        (
            "iss with a trailing slash",
            es(good_header.clone(), json!({"iss": format!("{issuer}/")})),
        ),
        ("aud missing", es(good_header.clone(), json!({"aud": null}))),
        (
            "aud without the client",
            es(good_header.clone(), json!({"aud": ["other"]})),
        ),
        (
            "extra audiences, no azp",
            es(good_header.clone(), json!({"aud": [CLIENT_ID, "other"]})),
        ),
        (
            "azp another client",
            es(good_header.clone(), json!({"azp": "other"})),
        ),
        (
            "expired",
            es(
                good_header.clone(),
                json!({"exp": now() - 600, "iat": now() - 900}),
            ),
        ),
        (
            "iat far in the future",
            es(good_header.clone(), json!({"iat": now() + 86400})),
        ),
        ("no exp", es(good_header.clone(), json!({"exp": null}))),
        ("no sub", es(good_header.clone(), json!({"sub": null}))),
        (
            "nonce missing",
            es(good_header.clone(), json!({"nonce": null})),
        ),
        (
            "nonce wrong",
            es(good_header.clone(), json!({"nonce": "n-2"})),
        ),
        (
            "crit header",
            es(
                json!({"alg": "ES256", "kid": "k1", "crit": ["exp"]}),
                json!({}),
            ),
        ),
        (
            "jwk in the header",
            es(json!({"alg": "ES256", "kid": "k1", "jwk": jwk}), json!({})),
        ),
        (
            "jku in the header",
            es(
                json!({"alg": "ES256", "kid": "k1", "jku": format!("{issuer}/jwks")}),
                json!({}),
            ),
        ),
        ("no kid", es(json!({"alg": "ES256"}), json!({}))),
        (
            "unknown kid",
            es(json!({"alg": "ES256", "kid": "k-unknown"}), json!({})),
        ),
        ("HS256 with the public key as secret", hs(&hs_key)),
        (
            "another key under the same kid",
            jwt(
                &good_header,
                &claims(&issuer, json!({})),
                &other_key,
                Algorithm::ES256,
            ),
        ),
        ("alg none", {
            let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
            format!(
                "{}.{}.",
                b(&json!({"alg": "none", "kid": "k1"})),
                b(&claims(&issuer, json!({})))
            )
        }),
        (
            "alg mismatched with the key",
            es(json!({"alg": "RS256", "kid": "k1"}), json!({})),
        ),
    ];
    for (case, token) in cases {
        provider.tokens(Some(&token));
        expect(
            log_in(&gw, &idp, Some("n-1")),
            401,
            "[InvalidIdToken]",
            case,
        );
    }
    // The good token still logs in: the refusals were each for its own fault.
    let header = json!({"alg": "ES256", "kid": "k1"});
    provider.tokens(Some(&jwt(
        &header,
        &claims(&issuer, json!({})),
        &key,
        Algorithm::ES256,
    )));
    assert_eq!(log_in(&gw, &idp, Some("n-1")).0, 200);
}

#[test]
fn a_key_rotated_at_the_provider_is_fetched_once_not_per_request() {
    let (provider, key, jwk) = well_behaved("k1");
    let (gw, idp) = gateway_for(&provider.issuer());
    assert_eq!(log_in(&gw, &idp, None).0, 200);
    let fetched = provider.hits("/jwks");
    assert_eq!(fetched, 1);
    // The provider rotates to k2: one refetch, then the new key is used from the cache.
    let (pem2, jwk2) = es256("k2");
    let key2 = EncodingKey::from_ec_pem(pem2.as_bytes()).expect("key");
    provider.set(
        "/jwks",
        reply(200, json!({"keys": [jwk, jwk2]}).to_string()),
    );
    let token = jwt(
        &json!({"alg": "ES256", "kid": "k2"}),
        &claims(&provider.issuer(), json!({})),
        &key2,
        Algorithm::ES256,
    );
    provider.tokens(Some(&token));
    for _ in 0..5 {
        assert_eq!(log_in(&gw, &idp, None).0, 200);
    }
    assert_eq!(provider.hits("/jwks"), 2, "one refetch for the new kid");
    // Tokens naming kids nobody publishes do not make the gateway fetch per request.
    for i in 0..6 {
        let token = jwt(
            &json!({"alg": "ES256", "kid": format!("made-up-{i}")}),
            &claims(&provider.issuer(), json!({})),
            &key,
            Algorithm::ES256,
        );
        provider.tokens(Some(&token));
        expect(
            log_in(&gw, &idp, None),
            401,
            "[InvalidIdToken]",
            "unknown kid",
        );
    }
    assert!(
        provider.hits("/jwks") <= 3,
        "{} fetches",
        provider.hits("/jwks")
    );
}

#[test]
fn an_issuer_whose_id_token_cannot_be_checked_logs_no_one_in() {
    // With an issuer, the ID token is the proof of who logged in (OpenID Connect Core
    // §3.1.3.3): a token answer without one, or a discovery document without the keys to
    // check it, is the provider's fault, not a login on the userinfo answer alone.
    let (provider, _, _) = well_behaved("k1");
    let (gw, idp) = gateway_for(&provider.issuer());
    provider.tokens(None);
    expect(
        log_in(&gw, &idp, None),
        502,
        "[InvalidIdentityProviderResponse]",
        "no id_token",
    );
    let (provider, _, _) = well_behaved("k1");
    provider.discovery(json!({"jwks_uri": null}));
    let (gw, idp) = gateway_for(&provider.issuer());
    expect(
        log_in(&gw, &idp, None),
        502,
        "[InvalidIdentityProviderResponse]",
        "no jwks_uri",
    );
    let users = client()
        .get(gw.url("/api/user?email=u1@example.com"))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(users.status().as_u16(), 404);
}

#[test]
fn wrong_huge_slow_or_redirected_answers_are_clear_errors() {
    let (provider, _, _) = well_behaved("k1");
    let elsewhere = Scripted::start();
    elsewhere.set("/token", reply(200, "{}"));
    elsewhere.set("/userinfo", reply(200, r#"{"sub":"u1"}"#));
    let (gw, idp) = gateway_for(&provider.issuer());
    let good_tokens = provider.answers.lock().expect("lock")["/token"].clone();
    let html = |status: u16| Reply {
        headers: vec![("Content-Type".into(), "text/html".into())],
        ..reply(status, "<html>sign in</html>")
    };
    let slow = |body: &str| Reply {
        delay: Duration::from_secs(3),
        ..reply(200, body.to_string())
    };
    let to_elsewhere = |path: &str| Reply {
        headers: vec![("Location".into(), format!("{}{path}", elsewhere.issuer()))],
        ..reply(302, "")
    };
    let huge = format!(r#"{{"sub":"u1","pad":"{}"}}"#, "x".repeat(2 << 20));
    let cases: Vec<(&str, &str, Reply, u16, &str)> = vec![
        (
            "/token",
            "error=",
            reply(400, r#"{"error":"access_denied"}"#),
            401,
            "[InvalidAuthorizationCode]",
        ),
        (
            "/token",
            "invalid_client",
            reply(401, r#"{"error":"invalid_client"}"#),
            502,
            "[IdentityProviderRejectedClient]",
        ),
        (
            "/token",
            "HTML",
            html(200),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/token",
            "500",
            html(500),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/token",
            "token_type mac",
            reply(200, r#"{"access_token":"a","token_type":"mac"}"#),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/token",
            "no access_token",
            reply(200, r#"{"token_type":"Bearer"}"#),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/token",
            "redirect to another host",
            to_elsewhere("/token"),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/token",
            "slow",
            slow("{}"),
            504,
            "[IdentityProviderTimeout]",
        ),
        (
            "/userinfo",
            "HTML",
            html(200),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/userinfo",
            "401",
            reply(401, r#"{"error":"invalid_token"}"#),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/userinfo",
            "an array",
            reply(200, r#"[{"sub":"u1"}]"#),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/userinfo",
            "huge",
            reply(200, huge),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/userinfo",
            "slow",
            slow(r#"{"sub":"u1"}"#),
            504,
            "[IdentityProviderTimeout]",
        ),
        (
            "/userinfo",
            "redirect to another host",
            to_elsewhere("/userinfo"),
            502,
            "[InvalidIdentityProviderResponse]",
        ),
        (
            "/userinfo",
            "another sub",
            reply(200, r#"{"sub":"u2"}"#),
            401,
            "[InvalidUserInfo]",
        ),
        (
            "/userinfo",
            "no sub",
            reply(200, r#"{"email":"u1@example.com"}"#),
            401,
            "[InvalidUserInfo]",
        ),
    ];
    let good_info = provider.answers.lock().expect("lock")["/userinfo"].clone();
    for (path, case, answer, status, code) in cases {
        provider.set(path, answer);
        let outcome = log_in(&gw, &idp, None);
        assert!(
            outcome.2 < Duration::from_millis(2500),
            "{path} {case}: {:?}",
            outcome.2
        );
        expect(outcome, status, code, &format!("{path} {case}"));
        provider.set("/token", good_tokens.clone());
        provider.set("/userinfo", good_info.clone());
    }
    assert_eq!(
        elsewhere.hits("/token") + elsewhere.hits("/userinfo"),
        0,
        "a redirect was followed"
    );
    assert_eq!(
        log_in(&gw, &idp, None).0,
        200,
        "the provider answers well again"
    );
}

#[test]
fn a_discovery_document_for_another_issuer_is_refused() {
    let (provider, _, _) = well_behaved("k1");
    let (gw, idp) = gateway_for(&provider.issuer());
    for (case, issuer) in [
        ("another issuer", json!("https://evil.example")),
        ("a trailing slash", json!(format!("{}/", provider.issuer()))),
        ("not a string", json!(7)),
    ] {
        provider.discovery(json!({"issuer": issuer}));
        expect(
            log_in(&gw, &idp, None),
            502,
            "[InvalidIdentityProviderResponse]",
            case,
        );
    }
}

#[test]
fn no_secret_or_token_of_the_provider_reaches_the_log_or_an_answer() {
    let (provider, _, _) = well_behaved("k1");
    let (gw, idp) = gateway_for(&provider.issuer());
    let (status, body, _) = log_in(&gw, &idp, Some("n-1"));
    assert_eq!(status, 200, "{body}");
    provider.set("/userinfo", reply(200, r#"{"sub":"u2"}"#));
    let (_, refused, _) = log_in(&gw, &idp, Some("n-1"));
    let id_token = {
        let answers = provider.answers.lock().expect("lock");
        let tokens: Value = serde_json::from_slice(&answers["/token"].body).expect("json");
        tokens["id_token"].as_str().expect("id token").to_string()
    };
    let log = gw.log();
    let listed = client()
        .get(gw.url(&format!("/api/identity-provider/{idp}")))
        .header("Authorization", API_KEY)
        .send()
        .expect("send")
        .text()
        .expect("text");
    for secret in [
        CLIENT_SECRET,
        "provider-access-7f3a",
        "provider-refresh-9c1d",
        "code-4e1f",
        &id_token,
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
        assert!(!body.to_string().contains(secret), "{secret} in the answer");
        assert!(
            !refused.to_string().contains(secret),
            "{secret} in the refusal"
        );
        assert!(!listed.contains(secret), "{secret} in the provider");
    }
}

#[test]
fn a_provider_off_this_machine_must_use_https() {
    // Plain http would carry the client secret, the code and the tokens in clear.
    let gw = TestGateway::start();
    let create = |oauth2: Value| {
        let body = json!({"identityProvider": {"type": "OpenIDConnect", "name": "Plain",
            "enabled": true, "oauth2": oauth2}});
        let response = client()
            .post(gw.url("/api/identity-provider"))
            .header("Authorization", API_KEY)
            .json(&body)
            .send()
            .expect("send");
        let status = response.status().as_u16();
        (status, response.json::<Value>().unwrap_or(Value::Null))
    };
    let secret = json!({"client_id": "c", "client_secret": CLIENT_SECRET});
    let with = |extra: Value| {
        let mut oauth2 = secret.clone();
        for (k, v) in extra.as_object().expect("object") {
            oauth2[k] = v.clone();
        }
        oauth2
    };
    for (field, value) in [
        ("issuer", "http://sso.example.com"),
        ("issuer", "http://10.0.0.7:8080/realms/a"),
        ("token_endpoint", "http://sso.example.com/token"),
        ("userinfo_endpoint", "http://192.168.1.2/userinfo"),
        (
            "authorization_endpoint",
            "http://localhost.evil.example/authorize",
        ),
    ] {
        let (status, body) = create(with(
            json!({"issuer": "https://sso.example.com", field: value}),
        ));
        assert_eq!(status, 400, "{field}={value}: {body}");
        let path = format!("identityProvider.oauth2.{field}");
        assert_eq!(
            body["fieldErrors"][&path][0]["code"],
            format!("[invalid]{path}"),
            "{body}"
        );
        assert!(!body.to_string().contains(CLIENT_SECRET));
    }
    for issuer in [
        "https://sso.example.com",
        "http://127.0.0.1:9000",
        "http://localhost:9000",
        "http://[::1]:9000",
    ] {
        let (status, body) = create(with(json!({"issuer": issuer})));
        assert_eq!(status, 200, "{issuer}: {body}");
    }
}

/// A gateway whose `/web` route has `login: true` with a provider declared without an issuer
/// (its three endpoints on `provider`).
fn browser_gateway_without_issuer(provider: &Scripted) -> TestGateway {
    let at = provider.issuer();
    let extra = format!(
        r#"login:
  publicOrigin: http://127.0.0.1:$PORT
identityProviders:
  - id: 5a1e2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f
    type: OpenIDConnect
    name: Plain OAuth
    enabled: true
    oauth2: {{client_id: {CLIENT_ID}, client_secret: "{CLIENT_SECRET}", scope: email,
             authorization_endpoint: "{at}/authorize", token_endpoint: "{at}/token",
             userinfo_endpoint: "{at}/userinfo"}}
    applicationConfiguration: {{{APP}: {{enabled: true, createRegistration: true}}}}
"#
    );
    TestGateway::start_with(Options {
        extra,
        identity_provider: "providerTimeoutMillis: 1000".into(),
        extra_routes: format!(
            "  - path: /web\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, login: true}}\n"
        ),
        ..Options::default()
    })
}

/// A browser login up to the callback: the `/app/login` redirect's state and the state
/// cookie, then the callback with `code`; returns the callback's answer.
fn browser_login(gw: &TestGateway) -> reqwest::blocking::Response {
    let login = client()
        .get(gw.url(&format!("/app/login/{APP}?redirect_uri=/web")))
        .send()
        .expect("send");
    assert_eq!(login.status().as_u16(), 302);
    let location = login.headers()["location"].to_str().expect("ascii");
    let sent: HashMap<String, String> = reqwest::Url::parse(location)
        .expect("url")
        .query_pairs()
        .into_owned()
        .collect();
    let cookie = login.headers()["set-cookie"].to_str().expect("ascii");
    let pair = cookie.split(';').next().expect("pair").to_string();
    client()
        .get(gw.url(&format!("/app/callback?state={}&code=c-1", sent["state"])))
        .header("Cookie", pair)
        .send()
        .expect("send")
}

#[test]
fn a_provider_without_an_issuer_logs_browsers_in_and_cannot_inject_cookies() {
    let provider = Scripted::start();
    provider.tokens(None);
    let info = json!({"sub": "p1", "email": "p1@example.com", "email_verified": true});
    provider.set("/userinfo", reply(200, info.to_string()));
    let gw = browser_gateway_without_issuer(&provider);
    // No ID token to carry a nonce: the userinfo answer says who logged in.
    let done = browser_login(&gw);
    assert_eq!(done.status().as_u16(), 302, "{:?}", done.text());
    assert_eq!(done.headers()["location"], "/web");
    let cookies: Vec<&str> = (done.headers().get_all("set-cookie").iter())
        .map(|v| v.to_str().expect("ascii"))
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("access_token=")),
        "{cookies:?}"
    );
    // Token answers whose values would reach a header or a cookie with more in them.
    for (case, answer) in [
        (
            "an id_token with cookie attributes",
            json!({"access_token": "a", "token_type": "Bearer",
            "id_token": "h.p.s; Domain=127.0.0.1; Path=/; Max-Age=99999"}),
        ),
        (
            "an access token with a line break",
            json!({"access_token": "a\r\nX-Injected: 1",
            "token_type": "Bearer"}),
        ),
        (
            "a refresh token with a control byte",
            json!({"access_token": "a", "token_type": "Bearer",
            "refresh_token": "r\u{7}"}),
        ),
    ] {
        provider.set("/token", reply(200, answer.to_string()));
        let refused = browser_login(&gw);
        assert_eq!(refused.status().as_u16(), 502, "{case}");
        let cookies: Vec<String> = (refused.headers().get_all("set-cookie").iter())
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect();
        assert!(
            cookies
                .iter()
                .all(|c| c.starts_with("gatehouse_login=") && !c.contains("Domain")),
            "{case}: {cookies:?}"
        );
    }
}
