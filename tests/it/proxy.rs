//! The proxy through the real binary: refusals, identity headers, policy, limits, upstreams.

use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::json;
use uuid::Uuid;

use super::kit::*;

#[test]
fn refusals_carry_the_rfc_6750_challenge() {
    let gw = TestGateway::start();
    let challenge = |response: &reqwest::blocking::Response| {
        response.headers()["www-authenticate"]
            .to_str()
            .expect("header")
            .to_string()
    };
    // No credentials: a challenge without an error code (RFC 6750 §3.1).
    let response = client().get(gw.url("/anything")).send().expect("send");
    assert_eq!(challenge(&response), "Bearer realm=\"gatehouse\"");
    let body = check_status(response, 401);
    assert_eq!(body["generalErrors"][0]["code"], "[MissingToken]");
    // A token that does not verify.
    let response = gw.get_as("/anything", "not.a.token");
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"gatehouse\", error=\"invalid_token\""
    );
    check_status(response, 401);
    // A valid token without the route's role.
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let response = gw.get_as("/admin", &token);
    assert_eq!(
        challenge(&response),
        "Bearer realm=\"gatehouse\", error=\"insufficient_scope\""
    );
    check_status(response, 403);
}

#[test]
fn every_algorithm_family_reaches_the_upstream_with_identity_headers() {
    let gw = TestGateway::start();
    for algorithm in [
        Algorithm::RS256,
        Algorithm::PS384,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ] {
        let user = Uuid::new_v4();
        let token = gw.token(algorithm, &claims(user, APP, &["user", "admin"]));
        let body = check_status(gw.get_as("/hello?x=1", &token), 200);
        assert_eq!(body["path"], "/hello", "{algorithm:?}");
        assert_eq!(body["query"], "x=1");
        assert_eq!(
            body["headers"]["x-user-id"],
            user.to_string(),
            "{algorithm:?}"
        );
        assert_eq!(body["headers"]["x-user-email"], "ann@example.com");
        assert_eq!(body["headers"]["x-user-roles"], "user,admin");
    }
}

#[test]
fn the_access_token_cookie_and_any_scheme_case_are_accepted() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));
    let body = check_status(
        client()
            .get(gw.url("/c"))
            .header(
                "Cookie",
                format!("theme=dark; access_token={token}; refresh_token=secret-value"),
            )
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["headers"]["x-user-id"], user.to_string());
    // The refresh token never reaches the upstream.
    let cookie = body["headers"]["cookie"].as_str().expect("cookie");
    assert!(!cookie.contains("refresh_token"), "{cookie}");
    assert!(cookie.contains("theme=dark"));
    let body = check_status(
        client()
            .get(gw.url("/c"))
            .header("Authorization", format!("bEaReR {token}"))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["headers"]["x-user-id"], user.to_string());
}

#[test]
fn expired_tampered_unsigned_and_unknown_key_tokens_are_refused() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let http = client();
    let mut expired = claims(user, APP, &["user"]);
    expired["exp"] = json!(now() - 10);
    let expired = gw.token(Algorithm::RS256, &expired);

    let good = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut forged_claims = claims(Uuid::new_v4(), APP, &["admin"]);
    forged_claims["sub"] = json!("someone-else");
    let forged_payload = b64.encode(forged_claims.to_string());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);

    let kid = gw.keys.get(Algorithm::RS256).0;
    let none_header = b64.encode(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string());
    let unsigned = format!("{none_header}.{}.", parts[1]);
    let none_upper = b64.encode(json!({"alg": "NONE", "kid": kid}).to_string());
    let unsigned_upper = format!("{none_upper}.{}.", parts[1]);

    // HS256 token whose "secret" is the RSA public key: the algorithm-confusion attack.
    let public_pem: serde_json::Value = http
        .get(gw.url(&format!("/api/jwt/public-key?kid={kid}")))
        .send()
        .expect("send")
        .json()
        .expect("json");
    let pem = public_pem["publicKey"].as_str().expect("pem").to_string();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    let confused = jsonwebtoken::encode(
        &header,
        &claims(user, APP, &["user"]),
        &jsonwebtoken::EncodingKey::from_secret(pem.as_bytes()),
    )
    .expect("encode");

    let mut unknown_kid_header = jsonwebtoken::Header::new(Algorithm::HS256);
    unknown_kid_header.kid = Some(Uuid::new_v4().to_string());
    let unknown_kid = jsonwebtoken::encode(
        &unknown_kid_header,
        &claims(user, APP, &["user"]),
        &jsonwebtoken::EncodingKey::from_secret(b"whatever-secret-of-enough-length-000"),
    )
    .expect("encode");

    let mut foreign_issuer = claims(user, APP, &["user"]);
    foreign_issuer["iss"] = json!("evil.example");
    let foreign_issuer = gw.token(Algorithm::RS256, &foreign_issuer);

    for (name, token) in [
        ("expired", expired.as_str()),
        ("tampered", &tampered),
        ("alg none", &unsigned),
        ("alg NONE", &unsigned_upper),
        ("alg confusion", &confused),
        ("unknown kid", &unknown_kid),
        ("foreign issuer", &foreign_issuer),
        ("garbage", "not.a.jwt"),
        ("empty parts", ".."),
    ] {
        let response = gw.get_as("/x", token);
        assert_eq!(response.status().as_u16(), 401, "{name} was not refused");
        let body: serde_json::Value = response.json().expect("json body");
        assert_eq!(body["generalErrors"][0]["code"], "[InvalidToken]", "{name}");
    }
    // A header that is not text (obs-text bytes) is a clean 401 too.
    let mut raw = b"Bearer ".to_vec();
    raw.extend_from_slice(&good.as_bytes()[..20]);
    raw.extend_from_slice(&[0xff, 0xfe]);
    let response = http
        .get(gw.url("/x"))
        .header(
            "Authorization",
            reqwest::header::HeaderValue::from_bytes(&raw).expect("obs-text is a valid value"),
        )
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 401, "non-UTF-8 token");
    // The good token still works.
    check_status(gw.get_as("/x", &good), 200);
}

#[test]
fn wrong_application_or_missing_role_is_forbidden() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let other_app = gw.token(Algorithm::RS256, &claims(user, OTHER_APP, &["viewer"]));
    check_status(gw.get_as("/", &other_app), 403);
    let plain_user = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    check_status(gw.get_as("/", &plain_user), 200);
    let body = check_status(gw.get_as("/admin/panel", &plain_user), 403);
    assert_eq!(body["generalErrors"][0]["code"], "[Forbidden]");
    let admin = gw.token(Algorithm::RS256, &claims(user, APP, &["admin"]));
    let body = check_status(gw.get_as("/admin/panel", &admin), 200);
    assert_eq!(body["headers"]["x-user-roles"], "admin");
    // Prefix matching is on segment boundaries: /administrator is the `/` route.
    check_status(gw.get_as("/administrator", &plain_user), 200);
}

#[test]
fn spoofed_identity_headers_are_replaced_or_removed() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::HS256, &claims(user, APP, &["user"]));
    let body = check_status(
        client()
            .get(gw.url("/x"))
            .bearer_auth(&token)
            .header("X-User-Id", "admin-user")
            .header("X-User-Roles", "admin")
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["headers"]["x-user-id"], user.to_string());
    assert_eq!(body["headers"]["x-user-roles"], "user");
    // On the public route without a token, the spoofed headers are dropped, not forwarded.
    let body = check_status(
        client()
            .get(gw.url("/public/page"))
            .header("X-User-Id", "admin-user")
            .header("X-User-Email", "boss@example.com")
            .send()
            .expect("send"),
        200,
    );
    assert!(body["headers"].get("x-user-id").is_none(), "{body}");
    assert!(body["headers"].get("x-user-email").is_none(), "{body}");
}

#[test]
fn optional_routes_forward_identity_when_present_and_never_refuse() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let http = client();
    let token = gw.token(Algorithm::EdDSA, &claims(user, APP, &["user"]));
    let body = check_status(gw.get_as("/public", &token), 200);
    assert_eq!(body["headers"]["x-user-id"], user.to_string());
    check_status(gw.get_as("/public", "garbage"), 200);
    check_status(http.get(gw.url("/public")).send().expect("send"), 200);
}

#[test]
fn browsers_are_redirected_to_the_login_page() {
    let gw = TestGateway::start();
    let response = client()
        .get(gw.url("/admin"))
        .header("Accept", "text/html,application/xhtml+xml")
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://login.example/login"
    );
    // API clients on the same route get the 401.
    check_status(client().get(gw.url("/admin")).send().expect("send"), 401);
}

#[test]
fn an_upstream_named_by_host_name_is_resolved_and_proxied() {
    let gw = TestGateway::start_with(Options {
        extra_routes: "  - path: /named\n    upstream: http://localhost:DEMO_PORT\n    auth: {enabled: false}\n"
            .into(),
        ..Options::default()
    });
    let body = check_status(client().get(gw.url("/named/x")).send().expect("send"), 200);
    assert_eq!(body["path"], "/named/x");
}

#[test]
fn an_unreachable_upstream_is_a_502_with_json() {
    let gw = TestGateway::start();
    let body = check_status(client().get(gw.url("/down/x")).send().expect("send"), 502);
    assert_eq!(body["generalErrors"][0]["code"], "[BadGateway]");
    // The gateway is still healthy afterwards.
    check_status(client().get(gw.url("/health")).send().expect("send"), 200);
}

#[test]
fn oversized_bodies_and_headers_are_refused() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    let http = client();
    let big = vec![b'a'; 70_000];
    let body = check_status(
        http.post(gw.url("/upload"))
            .bearer_auth(&token)
            .body(big.clone())
            .send()
            .expect("send"),
        413,
    );
    assert_eq!(body["generalErrors"][0]["code"], "[TooLarge]");
    // The same limit applies to API bodies.
    let response = http
        .post(gw.url("/api/jwt/refresh"))
        .header("Content-Type", "application/json")
        .body(big)
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 413);
    let response = http
        .get(gw.url("/x"))
        .bearer_auth(&token)
        .header("X-Padding", "p".repeat(9000))
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 431);
    // The connection closes after the refusal, and the answer says so.
    assert_eq!(response.headers()["connection"], "close");
    // A small body passes and reaches the upstream.
    let body = check_status(
        http.post(gw.url("/upload"))
            .bearer_auth(&token)
            .body("hello")
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["body"], "hello");
    assert_eq!(body["method"], "POST");
}

#[test]
fn metrics_are_on_the_admin_listener_and_public_health_tells_only_the_status() {
    let gw = TestGateway::start();
    let body = check_status(client().get(gw.url("/health")).send().expect("send"), 200);
    assert_eq!(body, json!({"status": "ok"}));
    client().get(gw.url("/x")).send().expect("send");
    let text = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .expect("send")
        .text()
        .expect("text");
    assert!(
        text.contains("gatehouse_proxy_requests_total{outcome=\"unauthenticated\"}"),
        "{text}"
    );
    let admin_health = check_status(
        client().get(gw.admin_url("/health")).send().expect("send"),
        200,
    );
    assert_eq!(admin_health["store"], "ok");
    assert_eq!(
        client()
            .get(gw.admin_url("/nope"))
            .send()
            .expect("send")
            .status(),
        404
    );
    // On the public listener /metrics is an upstream path like any other: here the catch-all
    // route wants a token, and with one the upstream answers.
    assert_eq!(
        client()
            .get(gw.url("/metrics"))
            .send()
            .expect("send")
            .status(),
        401
    );
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let echoed = check_status(gw.get_as("/metrics", &token), 200);
    assert_eq!(echoed["path"], "/metrics");
}

#[test]
fn the_listener_speaks_tls_and_cookies_are_secure_over_it() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures");
    let gw = TestGateway::start_with(Options {
        extra: format!(
            "tls: {{certificateFile: {}, privateKeyFile: {}}}\n",
            fixtures.join("idp_cert.pem").display(),
            fixtures.join("idp_cert_key.pem").display()
        ),
        ..Default::default()
    });
    assert!(gw.url("/").starts_with("https://"));
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));
    let body = check_status(gw.get_as("/tls", &token), 200);
    assert_eq!(body["headers"]["x-user-id"], user.to_string());
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = client()
        .get(format!("http://127.0.0.1:{}/health", gw.port))
        .send();
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status().as_u16() != 200));
    // Cookies set over TLS are Secure.
    let session = gw.login("tls@example.com", &["user"]);
    let response = client()
        .post(gw.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": session.refresh_token}))
        .send()
        .expect("send");
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
}

/// `auth.allowPreflight` (opt-in) lets a CORS preflight through a protected route without a
/// token, as a public passthrough would: nothing it carries is verified, so no credential and
/// no identity reach the upstream. Anything short of a preflight is judged as ever, and a
/// route without the option refuses preflights too.
#[test]
fn cors_preflights_pass_only_where_allowed_and_carry_no_identity() {
    let gw = TestGateway::start_with(Options {
        extra_routes: format!(
            "  - path: /cors\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, allowPreflight: true}}\n    identityHeaders: {{X-User-Id: sub}}\n"
        ),
        ..Default::default()
    });
    let http = client();
    let session = gw.login("cors@example.com", &[]);
    let preflight = |path: &str, method: reqwest::Method| {
        http.request(method, gw.url(path))
            .header("Origin", "https://app.example")
            .header("Access-Control-Request-Method", "PUT")
            .header("X-User-Id", "forged")
            .send()
            .expect("send")
    };
    // Credentials on a preflight (browsers send none) are neither verified nor forwarded.
    let passed = http
        .request(reqwest::Method::OPTIONS, gw.url("/cors/items"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "PUT")
        .header("Authorization", format!("Bearer {}", session.token))
        .header(
            "Cookie",
            format!("access_token={}; theme=dark", session.token),
        )
        .header("X-User-Id", "forged")
        .send()
        .expect("send");
    assert_eq!(passed.status(), 200);
    let body: serde_json::Value = passed.json().expect("echo");
    assert_eq!(body["method"], "OPTIONS");
    let headers = &body["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert!(headers.get("x-user-id").is_none(), "{headers}");
    assert_eq!(headers["cookie"], "theme=dark", "{headers}");
    assert_eq!(
        preflight("/cors/items", reqwest::Method::OPTIONS).status(),
        200
    );
    // Not a preflight, or not a route that allows them: judged as any request.
    assert_eq!(preflight("/cors/items", reqwest::Method::GET).status(), 401);
    assert_eq!(preflight("/other", reqwest::Method::OPTIONS).status(), 401);
    let no_method = http
        .request(reqwest::Method::OPTIONS, gw.url("/cors/items"))
        .header("Origin", "https://app.example")
        .send()
        .expect("send");
    assert_eq!(no_method.status(), 401);
    // Short of an exact preflight — an empty or doubled header, a method that is no token,
    // an upgrade, a body — the request is judged as any other.
    let almost: [&[(&str, &str)]; 7] = [
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", ""),
        ],
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "DE LETE"),
        ],
        &[("Origin", ""), ("Access-Control-Request-Method", "PUT")],
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Method", "GET"),
        ],
        &[
            ("Origin", "https://a.example"),
            ("Origin", "https://b.example"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
        ],
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "PUT"),
            ("Content-Type", "application/json"),
        ],
    ];
    for (i, headers) in almost.iter().enumerate() {
        let mut request = http.request(reqwest::Method::OPTIONS, gw.url("/cors/items"));
        for (name, value) in headers.iter() {
            request = request.header(*name, *value);
        }
        if i == almost.len() - 1 {
            request = request.body("{}");
        }
        let status = request.send().expect("send").status();
        assert_eq!(status, 401, "{headers:?}");
    }
}
