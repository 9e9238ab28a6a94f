//! The API as a boundary, through the binary: bodies are read as JSON only when declared JSON
//! (a cross-site form or a no-CORS `fetch` cannot log a browser in or act for it), and the API
//! reads credentials with the edge's rules (two readings of one credential are refused, never
//! resolved by taking the first).

use reqwest::blocking::{RequestBuilder, Response};
use serde_json::{json, Value};

use super::kit::*;

/// Content types a cross-site page can send without a CORS preflight, and other non-JSON
/// types; `None` is a body without `Content-Type`.
const NOT_JSON: &[Option<&str>] = &[
    Some("text/plain"),
    Some("text/plain; charset=utf-8"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=----x"),
    Some("text/json"),
    Some("application/jsonp"),
    None,
];

fn with_type(request: RequestBuilder, content_type: Option<&str>) -> RequestBuilder {
    match content_type {
        Some(value) => request.header("Content-Type", value),
        None => request,
    }
}

/// Asserts a 415 with Errors JSON and no cookie set.
fn assert_refused_media_type(response: Response, what: &str) {
    assert!(
        response.headers().get("set-cookie").is_none(),
        "{what}: a refused request set a cookie"
    );
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(status, 415, "{what}: {body}");
    assert_eq!(
        body["generalErrors"][0]["code"], "[UnsupportedMediaType]",
        "{what}"
    );
}

#[test]
fn bodies_that_are_not_declared_json_are_refused_everywhere() {
    let gw = TestGateway::start();
    let session = gw.login("csrf@example.com", &[]);
    let http = client();
    let endpoints: Vec<(&str, RequestBuilder, String)> = vec![
        (
            "login",
            http.post(gw.url("/api/identity-provider/login")),
            json!({"applicationId": APP, "identityProviderId": "00000000-0000-4000-8000-000000000000",
                   "data": {"token": "x.y.z"}})
            .to_string(),
        ),
        (
            "refresh",
            http.post(gw.url("/api/jwt/refresh")),
            json!({"refreshToken": session.refresh_token}).to_string(),
        ),
        (
            "refresh (form)",
            http.post(gw.url("/api/jwt/refresh")),
            format!("refreshToken={}", session.refresh_token),
        ),
        (
            "vend",
            http.post(gw.url("/api/jwt/vend")).header("Authorization", API_KEY),
            json!({"claims": {"sub": session.user_id}}).to_string(),
        ),
        (
            "reconcile",
            http.post(gw.url("/api/jwt/reconcile")),
            json!({"applicationId": APP, "identityProviderId": "00000000-0000-4000-8000-000000000000",
                   "data": {"token": "x.y.z"}})
            .to_string(),
        ),
        (
            "create provider",
            http.post(gw.url("/api/identity-provider")).header("Authorization", API_KEY),
            json!({"identityProvider": {"type": "ExternalJWT", "name": "x"}}).to_string(),
        ),
        (
            "create lambda",
            http.post(gw.url("/api/lambda")).header("Authorization", API_KEY),
            json!({"lambda": {"type": "ExternalJWTReconcile", "name": "x",
                              "body": "function reconcile(user, registration, jwt) {}"}})
            .to_string(),
        ),
    ];
    for (name, request, body) in endpoints {
        for content_type in NOT_JSON {
            let request = request.try_clone().expect("clonable");
            let response = with_type(request, *content_type)
                .body(body.clone())
                .send()
                .expect("send");
            assert_refused_media_type(response, &format!("{name} {content_type:?}"));
        }
    }
    // With the refresh cookie too: a body that is not JSON is refused, nothing rotates.
    for content_type in NOT_JSON {
        let response = with_type(
            http.post(gw.url("/api/jwt/refresh"))
                .header("Cookie", format!("refresh_token={}", session.refresh_token)),
            *content_type,
        )
        .body("refreshToken=x")
        .send()
        .expect("send");
        assert_refused_media_type(response, &format!("refresh with cookie {content_type:?}"));
    }
    // Nothing happened: the refresh token still exchanges, once, with a JSON body.
    let response = http
        .post(gw.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": session.refresh_token}))
        .send()
        .expect("send");
    assert_eq!(response.status(), 200);
    // And no provider or lambda was created.
    for path in ["/api/identity-provider", "/api/lambda"] {
        let body = check_status(
            http.get(gw.url(path))
                .header("Authorization", API_KEY)
                .send()
                .expect("send"),
            200,
        );
        let list = body
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(list, 0, "{path}: {body}");
    }
}

/// Asserts a 400 `[AmbiguousRequest]` with no cookie set.
fn assert_ambiguous(response: Response, what: &str) {
    assert!(response.headers().get("set-cookie").is_none(), "{what}");
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(
        body["generalErrors"][0]["code"], "[AmbiguousRequest]",
        "{what}"
    );
}

/// One `Cookie` line, at the edge (a protected route) and at the API (`/api/jwt/validate`):
/// the one credential reader splits it the same way for both, so each line gets the same
/// verdict — quotes, bare pairs, spaces around pairs and a cookie hidden after a `,` included.
#[test]
fn the_edge_and_the_api_read_one_cookie_line_the_same_way() {
    let gw = TestGateway::start();
    let ann = gw.login("ann@example.com", &[]);
    let bob = gw.login("bob@example.com", &[]);
    let (a, b) = (&ann.token, &bob.token);
    for (cookies, expected) in [
        (format!("access_token=\"{a}\""), 200),
        (format!("access_token; access_token={a}"), 200),
        (format!("  theme=dark ;; access_token={a} ;"), 200),
        (format!("access_token=\"{a}\"; access_token={a}"), 200),
        (format!("note=\"x, y\"; access_token={a}"), 200),
        (format!("access_token=\"{a}\"; access_token={b}"), 400),
        (
            format!("access_token=; access_token={a}; access_token={b}"),
            400,
        ),
        (
            format!("note=\"1, access_token={b}\"; access_token={a}"),
            400,
        ),
        (format!("theme=dark access_token={a}"), 400),
        (format!("Access_Token={b}; access_token={a}"), 400),
    ] {
        let edge = client()
            .get(gw.url("/x"))
            .header("Cookie", &cookies)
            .send()
            .expect("send");
        let api = client()
            .get(gw.url("/api/jwt/validate"))
            .header("Cookie", &cookies)
            .send()
            .expect("send");
        for (who, response) in [("edge", edge), ("api", api)] {
            if expected == 400 {
                assert_ambiguous(response, &format!("{who} with {cookies}"));
            } else {
                assert_eq!(response.status().as_u16(), expected, "{who} with {cookies}");
            }
        }
    }
}

#[test]
fn the_api_reads_credentials_with_the_edges_rules() {
    let gw = TestGateway::start();
    let ann = gw.login("ann@example.com", &[]);
    let bob = gw.login("bob@example.com", &[]);
    let http = client();
    let cookie_pairs = [
        format!(
            "refresh_token={}; refresh_token={}",
            bob.refresh_token, ann.refresh_token
        ),
        format!(
            "refresh_token={}; Refresh_Token={}",
            ann.refresh_token, bob.refresh_token
        ),
        format!(
            "refresh_token={}; refresh.token={}",
            ann.refresh_token, bob.refresh_token
        ),
        format!(
            "a=1, refresh_token={}; refresh_token={}",
            bob.refresh_token, ann.refresh_token
        ),
    ];
    for cookies in &cookie_pairs {
        let response = http
            .post(gw.url("/api/jwt/refresh"))
            .header("Cookie", cookies)
            .send()
            .expect("send");
        assert_ambiguous(response, &format!("refresh with {cookies}"));
    }
    // Two Cookie headers count as one list.
    let response = http
        .post(gw.url("/api/jwt/refresh"))
        .header("Cookie", format!("refresh_token={}", bob.refresh_token))
        .header("Cookie", format!("refresh_token={}", ann.refresh_token))
        .send()
        .expect("send");
    assert_ambiguous(response, "refresh with two Cookie headers");

    let token_cookies = [
        format!("access_token={}; access_token={}", bob.token, ann.token),
        format!("access_token={}; Access_Token={}", ann.token, bob.token),
        format!("access_token={}; access%5Ftoken={}", ann.token, bob.token),
    ];
    for path in [
        "/api/jwt/validate".to_string(),
        format!("/api/jwt/issue?applicationId={APP}"),
        format!("/api/jwt/refresh?userId={}", ann.user_id),
    ] {
        for cookies in &token_cookies {
            let response = http
                .get(gw.url(&path))
                .header("Cookie", cookies)
                .send()
                .expect("send");
            assert_ambiguous(response, &format!("{path} with {cookies}"));
        }
        // A Bearer token and a cookie that differ.
        let response = http
            .get(gw.url(&path))
            .header("Authorization", format!("Bearer {}", ann.token))
            .header("Cookie", format!("access_token={}", bob.token))
            .send()
            .expect("send");
        assert_ambiguous(response, &format!("{path} with Bearer and cookie"));
        // The same credential twice is one reading.
        let response = http
            .get(gw.url(&path))
            .header("Authorization", format!("Bearer {}", ann.token))
            .header(
                "Cookie",
                format!("access_token={0}; access_token={0}", ann.token),
            )
            .send()
            .expect("send");
        assert_eq!(response.status(), 200, "{path} with one credential twice");
    }
    // FusionAuth's documented pair still works: a tenant-scoping API key next to the cookie.
    let response = http
        .get(gw.url(&format!("/api/jwt/issue?applicationId={APP}")))
        .header("Authorization", API_KEY)
        .header("Cookie", format!("access_token={}", ann.token))
        .send()
        .expect("send");
    assert_eq!(response.status(), 200);
}

#[test]
fn error_bodies_never_echo_the_keys_a_client_sent() {
    let gw = TestGateway::start();
    let http = client();
    let long = "k".repeat(5000);
    for (path, body) in [
        (
            "/api/lambda",
            json!({"lambda": {"type": "ExternalJWTReconcile", "name": "x",
                              "body": "function reconcile(u, r, j) {}",
                              "<img src=x onerror=alert(1)>": 1, long.clone(): 2}}),
        ),
        (
            "/api/identity-provider",
            json!({"identityProvider": {"type": "ExternalJWT", "name": "x",
                                        "headerKeyParameter": "kid",
                                        "<script>": 1, long.clone(): 2}}),
        ),
    ] {
        let response = http
            .post(gw.url(path))
            .header("Authorization", API_KEY)
            .json(&body)
            .send()
            .expect("send");
        assert_eq!(response.status(), 400, "{path}");
        let text = response.text().expect("text");
        assert!(
            !text.contains('<') && !text.contains("kkkkkkkk") && text.len() < 2000,
            "{path}: {text}"
        );
        assert!(text.contains("[unknown]"), "{path}: {text}");
    }
}

/// A `HEAD` on an API path whose `GET` only reads is answered as its `GET` would be — status
/// and header, the body's `Content-Length` — without the body (RFC 9110 §9.3.2); a path with no
/// `GET`, or whose `GET` acts, refuses it as it refuses any method it does not serve. The admin listener's `/health` answers it too.
#[test]
fn a_head_is_answered_as_the_get_without_its_body() {
    let gw = TestGateway::start();
    let http = client();
    for path in ["/api/jwt/public-key", "/api/identity-provider"] {
        let get = http
            .get(gw.url(path))
            .header("Authorization", API_KEY)
            .send()
            .expect("send");
        assert_eq!(get.status(), 200, "GET {path}");
        let body = get.bytes().expect("body");
        let head = http
            .head(gw.url(path))
            .header("Authorization", API_KEY)
            .send()
            .expect("send");
        assert_eq!(head.status(), 200, "HEAD {path}");
        let length = head.headers().get("content-length").cloned();
        assert_eq!(
            length.as_ref().and_then(|v| v.to_str().ok()),
            Some(body.len().to_string().as_str()),
            "HEAD {path}: the GET answer's length"
        );
        assert!(
            head.bytes().expect("body").is_empty(),
            "HEAD {path}: no body"
        );
    }
    let unknown = http
        .head(gw.url("/api/identity-provider/00000000-0000-4000-8000-00000000dead"))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(unknown.status(), 404, "an unknown id is the GET's 404");
    let post_only = http
        .head(gw.url("/api/jwt/vend"))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(
        post_only.status(),
        405,
        "no GET: refused like any other method"
    );
    let admin = http.head(gw.admin_url("/health")).send().expect("send");
    assert_eq!(admin.status(), 200, "admin HEAD /health");
    assert!(admin.bytes().expect("body").is_empty());
    // The admin listener's other methods: 405 with what the path answers, 404 elsewhere.
    for (request, allow) in [
        (http.post(gw.admin_url("/health")), "GET, HEAD"),
        (http.delete(gw.admin_url("/metrics")), "GET, HEAD"),
        (http.get(gw.admin_url("/reload")), "POST"),
    ] {
        let answer = request.send().expect("send");
        assert_eq!(answer.status(), 405);
        assert_eq!(
            answer.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow)
        );
    }
    let unknown = http.get(gw.admin_url("/nope")).send().expect("send");
    assert_eq!(unknown.status(), 404);
}
