//! The edge as an authentication boundary, through the real binary and an upstream that reads
//! paths the way lenient frameworks do ([`framework_path`]): no request target, header or
//! cookie gets a request around a route's policy, and the upstream receives exactly the
//! request that was judged — the canonical target, the verified credential, the gateway's
//! identity headers.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// A gateway whose routes all lead to `upstream`.
fn gateway_to(upstream: &RecordingUpstream, options: Options) -> TestGateway {
    TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        ..options
    })
}

fn user_token(gw: &TestGateway, roles: &[&str]) -> String {
    gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, roles))
}

/// `GET target` with extra header lines, as raw bytes.
fn get(gw: &TestGateway, target: &str, headers: &[String]) -> (u16, String) {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    raw_http(gw.port, request.as_bytes())
}

/// Request targets that an upstream reading paths leniently would serve as `/admin` (or that
/// are malformed), in every encoding class the canonical form handles.
const ADMIN_TRICKS: &[&str] = &[
    "/admin",
    "/admin/",
    "/admin/x",
    "/public/../admin",
    "/public/../admin/",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/%2e./admin",
    "/public/%2E./admin",
    "/public/./../admin",
    "/public/x/../../admin",
    "/public/..//admin",
    "/public//../admin",
    "/%61dmin",
    "/%61%64%6d%69%6e",
    "/adm%69n",
    "/ad%6Din/x",
    "//admin",
    "///admin/x",
    "/./admin",
    "/admin/.",
    "/admin/./x",
    "/.%2fadmin",
    "/public%2F..%2Fadmin",
    "/public%2f..%2fadmin",
    "/public/..%2fadmin",
    "/%2fadmin",
    "/public\\..\\admin",
    "/public%5C..%5Cadmin",
    "/public%5c..%5cadmin",
    "/%2561dmin",
    "/public/%252e%252e/admin",
    "/public/.%252e/admin",
    "/public/%25%32%65%25%32%65/admin",
    "/admin;x",
    "/admin;",
    "/admin;jsessionid=1/x",
    "/public/..;/admin",
    "/public/.;/../admin",
    "/admin%3bx",
    "/admin%00",
    "/admin%0a",
    "/admin%0d%0a",
    "/public/..%00/admin",
    "/public/../../admin",
    "/..",
    "/../admin",
    "/%2e%2e/admin",
    "http://127.0.0.1/public/../admin",
    "http://127.0.0.1/%61dmin",
    "http://127.0.0.1//admin",
    // Case variants (case-insensitive upstreams), Windows trailing dots and spaces, and
    // delimiters that a second decoding would split on.
    "/Admin",
    "/ADMIN/x",
    "//Admin",
    "/x/../ADMIN",
    "/%41dmin",
    "/admin.",
    "/admin./x",
    "/admin%2e/x",
    "/admin%20",
    "/admin%20/x",
    "/admin%3Fx",
    "/admin%3f",
    "/admin%23x",
    // Non-ASCII that folds, normalizes or decodes (leniently) to ASCII.
    "/adm%C4%B1n",
    "/ADM%C4%B1N",
    "/%EF%BD%81dmin",
    "/public/%c0%ae%c0%ae/admin",
    "/public/..%c0%afadmin",
    "/public/%e0%80%ae%e0%80%ae/admin",
    "/public/%EF%BC%8E%EF%BC%8E/admin",
    "/public/%ff/admin",
    // Tokens in the query (RFC 6750 §2.3): the gateway reads headers only.
    "/admin?access_token=x",
];

#[test]
fn path_tricks_never_reach_a_route_that_refuses_them() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let user = format!("Authorization: Bearer {}", user_token(&gw, &["user"]));
    for target in ADMIN_TRICKS {
        for headers in [vec![user.clone()], vec![]] {
            let before = upstream.received().len();
            let (status, response) = get(&gw, target, &headers);
            let received = upstream.received();
            assert!(
                [400, 401, 403].contains(&status),
                "{target} {headers:?}: {status}\n{response}"
            );
            assert_eq!(
                received.len(),
                before,
                "{target}: a refused request reached the upstream"
            );
            let code = raw_body(&response)["generalErrors"][0]["code"].clone();
            assert!(code.is_string(), "{target}: no Errors JSON: {response}");
        }
    }
    // The same user reaches everything else, canonical, and never /admin.
    let (status, response) = get(&gw, "/public/../app/./x", std::slice::from_ref(&user));
    assert_eq!(status, 200, "{response}");
    assert_eq!(raw_body(&response)["target"], "/app/x");
}

#[test]
fn anonymous_requests_through_optional_routes_stay_there() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    for target in [
        "/public/%c0%ae%c0%ae/app",
        "/public/%EF%BC%8E%EF%BC%8E/app",
        "/public/%E2%80%A5/app",
        "/public?access_token=forged",
        "/public/..%3F",
        "/public/..%23",
        "/public/%2e%2e%3F",
        "/public/../app",
        "/public/%2e%2e/app",
        "/public/..%2fapp",
        "/public%2f..%2fapp",
        "/public\\..\\app",
        "/public;/../app",
        "/public/..;/app",
        "/public/%252e%252e/app",
        "http://127.0.0.1/public/../app",
    ] {
        let (status, response) = get(&gw, target, &[]);
        if status == 200 {
            let served = raw_body(&response)["served"].clone();
            assert!(
                served.as_str().is_some_and(|s| s.starts_with("/public")),
                "{target} was served as {served}"
            );
        } else {
            assert!(
                [400, 401].contains(&status),
                "{target}: {status}\n{response}"
            );
        }
    }
    for received in upstream.received() {
        assert!(
            framework_path(&received).starts_with("/public"),
            "{received} reached the upstream anonymously"
        );
    }
}

#[test]
fn allowed_requests_arrive_in_their_canonical_form() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let admin = format!("Authorization: Bearer {}", user_token(&gw, &["admin"]));
    let cases: &[(&str, &str)] = &[
        ("/x/./y", "/x/y"),
        ("/%61pp", "/app"),
        ("//a//b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/caf\u{e9}", "/caf%C3%A9"),
        ("/a|b{c}", "/a%7Cb%7Bc%7D"),
        ("/%7Euser", "/~user"),
        ("/a%20b", "/a%20b"),
        ("/100%25", "/100%25"),
        ("/q?x=%2F..%2F&y=/../admin", "/q?x=%2F..%2F&y=/../admin"),
        ("/a/./b?", "/a/b?"),
        ("/admin/../admin/x?z=1", "/admin/x?z=1"),
        ("http://127.0.0.1/abs/./x?q=1", "/abs/x?q=1"),
        ("/frag#/../../etc", "/frag"),
    ];
    for (sent, expected) in cases {
        let (status, response) = get(&gw, sent, std::slice::from_ref(&admin));
        assert_eq!(status, 200, "{sent}: {response}");
        assert_eq!(raw_body(&response)["target"], *expected, "{sent}");
    }
}

#[test]
fn path_options_semicolons_slashes_and_case() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            extra: "paths: {allowSemicolons: true, mergeSlashes: false}\n".into(),
            extra_routes: format!(
                "  - path: /Secret\n    upstream: $UPSTREAM\n    caseSensitive: false\n    auth: {{applicationId: {APP}, roles: [admin]}}\n"
            ),
            ..Default::default()
        },
    );
    let user = format!("Authorization: Bearer {}", user_token(&gw, &["user"]));
    let admin = format!("Authorization: Bearer {}", user_token(&gw, &["admin"]));
    // `;` parameters allowed: `/admin;x` is still /admin's.
    assert_eq!(
        get(&gw, "/admin;jsessionid=1", std::slice::from_ref(&user)).0,
        403
    );
    let (status, response) = get(&gw, "/admin;jsessionid=1", std::slice::from_ref(&admin));
    assert_eq!(status, 200, "{response}");
    assert_eq!(raw_body(&response)["target"], "/admin;jsessionid=1");
    // …but a dot-segment or empty segment with parameters stays ambiguous.
    for target in ["/public/..;/admin", "/public/;/../admin", "/.;/admin"] {
        assert_eq!(
            get(&gw, target, std::slice::from_ref(&admin)).0,
            400,
            "{target}"
        );
    }
    // Slashes kept as sent.
    let (status, response) = get(&gw, "/x//y", std::slice::from_ref(&user));
    assert_eq!(status, 200, "{response}");
    assert_eq!(raw_body(&response)["target"], "/x//y");
    // A case-insensitive route meets its policy in any case.
    for target in ["/secret", "/SECRET/x", "/sEcReT;a=b", "/%53ecret"] {
        assert_eq!(
            get(&gw, target, std::slice::from_ref(&user)).0,
            403,
            "{target}"
        );
    }
    assert_eq!(get(&gw, "/SECRET/x", &[admin]).0, 200);
    let secret: Vec<String> = upstream
        .received()
        .into_iter()
        .filter(|t| t.to_ascii_lowercase().contains("secret"))
        .collect();
    assert_eq!(secret, vec!["/SECRET/x".to_string()]);
}

#[test]
fn one_credential_reaches_the_upstream_and_it_is_the_verified_one() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let token = user_token(&gw, &["user"]);
    let other = user_token(&gw, &["admin"]);
    let refused: Vec<Vec<String>> = vec![
        vec![
            format!("Authorization: Bearer {token}"),
            format!("Authorization: Bearer {token}"),
        ],
        vec![
            format!("Authorization: Bearer {token}"),
            format!("Authorization: Bearer {other}"),
        ],
        vec![
            format!("Authorization: Bearer {token}"),
            format!("Cookie: access_token={other}"),
        ],
        vec![format!(
            "Cookie: access_token={token}; access_token={other}"
        )],
        vec![
            format!("Cookie: access_token={token}"),
            format!("Cookie: access_token={other}"),
        ],
        vec![
            "Authorization: Basic dXNlcjpwYXNz".into(),
            format!("Cookie: access_token={token}"),
        ],
        vec![format!(
            "Cookie: Access_Token={other}; access_token={token}"
        )],
        vec![format!(
            "Cookie: access%5Ftoken={other}; access_token={token}"
        )],
        vec![format!(
            "Cookie: access.token={other}; access_token={token}"
        )],
        vec![format!(
            "Cookie: access_token={token}; refresh_token=a; refresh_token=b"
        )],
        vec![format!("Cookie: a=1, access_token={other}")],
        vec![format!(
            "Cookie: access_token={token}; a=1, access_token={other}"
        )],
        vec![
            format!("Authorization: Bearer {token}"),
            format!("Cookie: a=1, access_token={other}"),
        ],
        vec!["Cookie: a=1, refresh_token=SECRET".into()],
        vec!["Cookie: a=1 refresh_token=SECRET".into()],
        vec!["Cookie: a=1\trefresh_token=SECRET".into()],
        vec!["Cookie: $Version=1; a=1, refresh_token=SECRET".into()],
        vec![
            format!("Authorization: Bearer {token}"),
            "Cookie: access[token=EVIL".into(),
        ],
        vec![
            format!("Authorization: Bearer {token}"),
            "Cookie: refresh[token=EVIL".into(),
        ],
        vec![
            format!("Authorization: Bearer {token}"),
            "Cookie: access_token[]=EVIL".into(),
        ],
        vec![
            format!("Authorization: Bearer {token}"),
            "Cookie: refresh_token[x]=EVIL".into(),
        ],
    ];
    for headers in &refused {
        for target in ["/app", "/public", "/admin"] {
            let before = upstream.received().len();
            let (status, response) = get(&gw, target, headers);
            assert_eq!(status, 400, "{target} {headers:?}: {response}");
            assert_eq!(upstream.received().len(), before, "{headers:?}");
            assert_eq!(
                raw_body(&response)["generalErrors"][0]["code"],
                "[AmbiguousRequest]"
            );
        }
    }
    // The same token twice (header and cookie, or two cookies) is one credential.
    for headers in [
        vec![
            format!("Authorization: Bearer {token}"),
            format!("Cookie: access_token={token}"),
        ],
        vec![format!(
            "Cookie: access_token={token}; access_token={token}"
        )],
    ] {
        assert_eq!(get(&gw, "/app", &headers).0, 200, "{headers:?}");
    }
}

#[test]
fn cookies_are_read_whatever_the_other_cookies_hold() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    // A byte outside ASCII in another cookie does not hide the credentials.
    let mut request =
        format!("GET /app HTTP/1.1\r\nHost: x\r\nCookie: access_token={token}; theme=")
            .into_bytes();
    request.extend_from_slice("é; lang=\u{fc}\r\nConnection: close\r\n\r\n".as_bytes());
    let (status, response) = raw_http(gw.port, &request);
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        raw_body(&response)["headers"]["x-user-id"][0],
        user.to_string()
    );
    // The API reads cookies the same way: /api/jwt/validate finds the token too.
    let mut request = "GET /api/jwt/validate HTTP/1.1\r\nHost: x\r\nCookie: theme=é"
        .as_bytes()
        .to_vec();
    request.extend_from_slice(b"\xff; access_token=");
    request.extend_from_slice(token.as_bytes());
    request.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    let (status, response) = raw_http(gw.port, &request);
    assert_eq!(status, 200, "{response}");
    // The refresh token is removed from every Cookie line; the rest arrives, in order.
    let (status, response) = get(
        &gw,
        "/app",
        &[
            format!("Authorization: Bearer {token}"),
            "Cookie: a=1; refresh_token=secret-one".into(),
            "Cookie: refresh_token=secret-one; b=2; c".into(),
        ],
    );
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        raw_body(&response)["headers"]["cookie"],
        json!(["a=1; b=2; c"])
    );
    assert!(!response.contains("secret-one"));
}

#[test]
fn a_token_that_did_not_pass_is_not_forwarded_on_optional_routes() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let other_app = gw.token(
        Algorithm::RS256,
        &claims(Uuid::new_v4(), OTHER_APP, &["viewer"]),
    );
    let mut expired = claims(Uuid::new_v4(), APP, &["user"]);
    expired["exp"] = json!(now() - 60);
    let expired = gw.token(Algorithm::RS256, &expired);
    for token in ["garbage.token.here", expired.as_str()] {
        for header in [
            format!("Authorization: Bearer {token}"),
            format!("Cookie: a=1; access_token={token}; b=2"),
        ] {
            let (status, response) = get(&gw, "/public", std::slice::from_ref(&header));
            assert_eq!(status, 200, "{header}: {response}");
            let headers = &raw_body(&response)["headers"];
            assert!(headers.get("authorization").is_none(), "{headers}");
            assert!(headers.get("x-user-id").is_none(), "{headers}");
            if header.starts_with("Cookie") {
                assert_eq!(headers["cookie"], json!(["a=1; b=2"]));
            }
        }
    }
    // A valid token of another application on /public: verified, but not this route's: no
    // identity and no token upstream either (the /public route asks no application, so it
    // passes — check the /app route instead, which refuses it).
    let (status, _) = get(&gw, "/app", &[format!("Authorization: Bearer {other_app}")]);
    assert_eq!(status, 403);
}

#[test]
fn claims_that_cannot_be_header_values_refuse_the_token_where_forwarded() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let user = Uuid::new_v4();
    for (claim, value) in [
        ("email", json!("ann@example.com\r\nX-User-Roles: admin")),
        ("email", json!("ann\nexample.com")),
        ("email", json!("ann\u{0}@example.com")),
        ("roles", json!(["user", "ad\r\nmin"])),
        // HTTP drops surrounding whitespace: the upstream would read another identity.
        ("email", json!(" ann@example.com ")),
        ("email", json!("ann@example.com\t")),
        ("email", json!("\u{a0}ann@example.com")),
        ("email", json!("\u{feff}ann@example.com")),
        ("roles", json!(["user\u{200b}"])),
        // Default-ignorable code points besides the zero-width ones: a soft hyphen, a
        // bidirectional mark.
        ("email", json!("\u{ad}ann@example.com")),
        ("roles", json!(["user\u{200e}"])),
        // Roles the policy cannot read are none: the upstream must not get any either.
        ("roles", json!({"admin": true})),
    ] {
        let mut token_claims = claims(user, APP, &["user"]);
        token_claims[claim] = value.clone();
        let token = gw.token(Algorithm::RS256, &token_claims);
        let before = upstream.received().len();
        // `/` forwards email and roles: refused, never forwarded without identity.
        let (status, response) = get(&gw, "/app", &[format!("Authorization: Bearer {token}")]);
        assert_eq!(status, 401, "{claim}={value}: {response}");
        assert!(response.contains("error=\"invalid_token\""), "{response}");
        assert_eq!(upstream.received().len(), before);
        // `/public` forwards only `sub`: the token is fine there, unless it holds a NUL,
        // which no token the gateway accepts may (it is then forwarded without identity).
        let (status, response) = get(&gw, "/public", &[format!("Authorization: Bearer {token}")]);
        assert_eq!(status, 200, "{response}");
        let forwarded = &raw_body(&response)["headers"]["x-user-id"];
        if value.to_string().contains("\\u0000") {
            assert!(forwarded.is_null(), "{response}");
        } else {
            assert_eq!(forwarded[0], user.to_string());
        }
    }
    // A `sub` with surrounding spaces is refused where `sub` is forwarded (on the optional
    // route, the request goes on without an identity).
    let mut token_claims = claims(user, APP, &["user"]);
    token_claims["sub"] = json!(" admin ");
    let token = gw.token(Algorithm::RS256, &token_claims);
    let (status, response) = get(&gw, "/app", &[format!("Authorization: Bearer {token}")]);
    assert_eq!(status, 401, "{response}");
    let (status, response) = get(&gw, "/public", &[format!("Authorization: Bearer {token}")]);
    assert_eq!(status, 200, "{response}");
    assert!(
        raw_body(&response)["headers"]["x-user-id"].is_null(),
        "{response}"
    );
}

#[test]
fn client_headers_that_could_pass_for_identity_headers_are_dropped() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let (status, response) = get(
        &gw,
        "/public",
        &[
            "X_User_Id: spoofed-1".into(),
            "x-user-id: spoofed-2".into(),
            "X-USER-ID: spoofed-3".into(),
            "X-User_Id: spoofed-4".into(),
            "x_user_roles: admin".into(),
            "X-Request-Id: kept".into(),
            "X.User.Id: spoofed-5".into(),
            "X.User.Roles: spoofed-6".into(),
            "X~User~Id: spoofed-7".into(),
        ],
    );
    assert_eq!(status, 200, "{response}");
    assert!(!response.contains("spoofed"), "{response}");
    assert!(!response.contains("x_user_roles"), "{response}");
    assert_eq!(
        raw_body(&response)["headers"]["x-request-id"],
        json!(["kept"])
    );
}

/// `GET target` with these header lines, which must be answered 200 by the recording upstream:
/// the request head the upstream received (without its last line end), and the answer.
fn upstream_head(gw: &TestGateway, target: &str, headers: &[String]) -> (String, String) {
    let (status, response) = get(gw, target, headers);
    assert_eq!(status, 200, "{response}");
    let body = raw_body(&response);
    let head = body["head"].as_str().unwrap_or_default().to_string();
    (head, response)
}

/// The upstream's header block, byte for byte: header names in the client's case and order
/// (a removal may move the last field into the removed one's place: RFC 9110 §5.3),
/// controlled and unconventional names dropped, the unverified credential and a non-WebSocket
/// upgrade removed, the client's `X-Forwarded-For` and `X-Forwarded-Proto` replaced by the
/// gateway's, last.
#[test]
fn the_upstream_receives_exactly_this_header_block() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let headers = [
        "User-Agent: Case-Kept/1.0",
        "x-forwarded-for: 203.0.113.9",
        "X-Real-IP: 203.0.113.9",
        "Authorization: Basic dXNlcjpwYXNz",
        "X_User_Id: spoofed",
        "X-User-Id: spoofed",
        "Upgrade: h2c",
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
        "ACCEPT: */*",
        "X-Forwarded-Proto: ftp",
        "x-request-id: Kept",
    ];
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for _ in 0..2 {
        let (head, response) = upstream_head(&gw, "/public/a?b=c", &headers);
        assert_eq!(
            head,
            "GET /public/a?b=c HTTP/1.1\r\n\
             Host: 127.0.0.1\r\n\
             User-Agent: Case-Kept/1.0\r\n\
             ACCEPT: */*\r\n\
             x-request-id: Kept\r\n\
             X-Forwarded-For: 127.0.0.1\r\n\
             X-Forwarded-Proto: http",
            "{response}"
        );
    }
}

/// A verified request's upstream header block, byte for byte: the verified Bearer token kept,
/// the gateway's forwarding lines, then the route's identity headers in the configuration's
/// spelling and order, a header whose claim the token lacks left out (so the ones after it
/// keep their own names).
#[test]
fn the_identity_lines_follow_the_forwarding_lines_as_configured() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            extra_routes: format!(
                "  - path: /who\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}}}\n    \
                 identityHeaders: {{x-USER-roles: roles, X-Absent: nosuchclaim, X-User-Id: sub}}\n"
            ),
            ..Default::default()
        },
    );
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::RS256, &claims(user, APP, &["user", "admin"]));
    let headers = [
        format!("Authorization: Bearer {token}"),
        "X-User-Id: spoofed".into(),
    ];
    for _ in 0..2 {
        let (head, response) = upstream_head(&gw, "/who", &headers);
        assert_eq!(
            head,
            format!(
                "GET /who HTTP/1.1\r\n\
                 Host: 127.0.0.1\r\n\
                 Authorization: Bearer {token}\r\n\
                 X-Forwarded-For: 127.0.0.1\r\n\
                 X-Forwarded-Proto: http\r\n\
                 X-User-Id: {user}\r\n\
                 x-USER-roles: user,admin"
            ),
            "{response}"
        );
    }
}

/// A token signed with the RS256 test key, with this header.
fn token_with_header(gw: &TestGateway, header: Value, claims: &Value) -> String {
    use base64::Engine;
    let (id, _, pem) = gw.keys.get(Algorithm::RS256);
    let mut header = header;
    header["alg"] = json!("RS256");
    header["kid"] = json!(id.to_string());
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(&header), b64(claims));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa");
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).expect("sign");
    format!("{input}.{signature}")
}

#[test]
fn token_headers_audience_and_numeric_dates_are_checked() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let base = claims(user, APP, &["user"]);
    let status_of = |token: &str| gw.get_as("/app", token).status().as_u16();
    for (header, expected) in [
        (json!({}), 200),
        (json!({"typ": "JWT"}), 200),
        (json!({"typ": "at+jwt"}), 200),
        (json!({"typ": "application/at+JWT"}), 200),
        (json!({"crit": ["exp"]}), 401),
        (
            json!({"crit": ["https://example.com/ext"], "https://example.com/ext": 1}),
            401,
        ),
        (json!({"typ": "id_token+jwt"}), 401),
        (json!({"typ": "logout+jwt"}), 401),
        (json!({"typ": 7}), 401),
    ] {
        let token = token_with_header(&gw, header.clone(), &base);
        assert_eq!(status_of(&token), expected, "{header}");
    }
    let with = |name: &str, value: Value| {
        let mut c = base.clone();
        c[name] = value;
        gw.token(Algorithm::RS256, &c)
    };
    // `aud` must name the route's application when present.
    assert_eq!(status_of(&with("aud", json!(OTHER_APP))), 403);
    assert_eq!(status_of(&with("aud", json!([OTHER_APP, "x"]))), 403);
    assert_eq!(status_of(&with("aud", json!([OTHER_APP, APP]))), 200);
    assert_eq!(status_of(&with("aud", json!([]))), 403);
    let mut no_aud = base.clone();
    no_aud.as_object_mut().expect("object").remove("aud");
    assert_eq!(status_of(&gw.token(Algorithm::RS256, &no_aud)), 200);
    // NumericDate: any number, compared as a number; other types refused.
    assert_eq!(status_of(&with("exp", json!(now() as f64 + 600.5))), 200);
    assert_eq!(status_of(&with("nbf", json!(now() as f64 - 10.5))), 200);
    assert_eq!(status_of(&with("iat", json!(now() as f64 - 0.5))), 200);
    assert_eq!(status_of(&with("exp", json!(now() as f64 - 1.5))), 401);
    assert_eq!(status_of(&with("nbf", json!(now() as f64 + 100.5))), 401);
    for bad in [
        json!("9999999999"),
        json!(true),
        json!([1]),
        json!({"a": 1}),
    ] {
        for claim in ["exp", "nbf", "iat"] {
            assert_eq!(status_of(&with(claim, bad.clone())), 401, "{claim}={bad}");
        }
    }
}

/// Sends a request declaring a 10 GiB body and no body; the status, the time to the answer,
/// and whether the gateway closed the connection.
fn declare_huge_body(gw: &TestGateway, target: &str) -> (u16, Duration, bool) {
    let mut stream = connect_with_timeout(gw.port, Duration::from_secs(5));
    let started = Instant::now();
    let request = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n{{\"claims\":"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = Vec::new();
    let closed = stream.read_to_end(&mut response).is_ok();
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, elapsed, closed)
}

#[test]
fn a_body_declared_far_over_the_limit_is_refused_at_once() {
    let gw = TestGateway::start();
    for target in ["/app/upload", "/public/upload", "/api/jwt/vend"] {
        let (status, elapsed, closed) = declare_huge_body(&gw, target);
        assert_eq!(status, 413, "{target}");
        assert!(closed, "{target}: the connection stays open");
        assert!(
            elapsed < Duration::from_millis(1000),
            "{target}: {elapsed:?}"
        );
    }
}

/// Sends `request` on a new connection to `port`; returns what was read until the gateway
/// closed the connection, and how long after the request that was.
fn read_until_closed(port: u16, request: &str) -> (String, Duration) {
    let mut stream = connect_with_timeout(port, Duration::from_secs(10));
    stream.write_all(request.as_bytes()).expect("write");
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => {
                break (
                    String::from_utf8_lossy(&seen).into_owned(),
                    started.elapsed(),
                )
            }
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn idle_keep_alive_connections_are_closed_and_half_closed_clients_answered() {
    let gw = TestGateway::start_with(Options {
        idle_timeout_seconds: 1,
        ..Default::default()
    });
    let token = user_token(&gw, &["user"]);
    // A keep-alive connection that goes quiet is closed after the idle timeout, on the proxy
    // listener and on the admin listener alike.
    let request = format!("GET /app HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    let admin_request = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    for (port, request) in [(gw.port, request.as_str()), (gw.admin_port, admin_request)] {
        let (seen, closed_after) = read_until_closed(port, request);
        assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
        assert!(
            closed_after < Duration::from_secs(5),
            "{port}: {closed_after:?}"
        );
    }
    // A client that half-closes after sending its request still gets the answer.
    for target in ["/app", "/health", "/api/jwt/validate"] {
        let mut stream = connect_with_timeout(gw.port, Duration::from_secs(10));
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("write");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200"), "{target}: {text}");
    }
}

/// The idle timeout runs from each request's answer, not from the connection's first: a client
/// that sends a request every 0.6 s keeps a connection with a 1 s idle timeout open past the
/// first request's deadline (the engine keeps one timer per connection, set for an earlier
/// request's deadline and moved on when it fires early), and it is closed about 1 s after the
/// last answer, not later — over plain TCP and over TLS, whose layer passes the timer through.
#[test]
fn the_idle_timeout_runs_from_the_last_request_on_a_connection() {
    let timings = on_plain_and_tls(1, Duration::from_secs(10), requests_until_idle_close);
    for (tls, closed_after) in timings {
        assert!(
            closed_after > Duration::from_millis(800) && closed_after < Duration::from_secs(3),
            "tls {tls}: {closed_after:?}"
        );
    }
}

/// A connection over plain TCP or TLS.
trait Connection: Read + Write {}
impl<T: Read + Write> Connection for T {}

/// For plain TCP and then TLS: starts a gateway with `limits.idleTimeoutSeconds: idle`, opens
/// a connection to it whose reads wait at most `read_timeout`, and hands it to `measure` with a
/// user's token. Returns, for each (`true` for TLS), what `measure` returned.
fn on_plain_and_tls(
    idle: u64,
    read_timeout: Duration,
    measure: fn(Box<dyn Connection>, &str) -> Duration,
) -> Vec<(bool, Duration)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut timings = Vec::new();
    for tls in [false, true] {
        let gw = TestGateway::start_with(Options {
            idle_timeout_seconds: idle,
            extra: match tls {
                true => self_signed_tls(dir.path()),
                false => String::new(),
            },
            ..Default::default()
        });
        let token = user_token(&gw, &["user"]);
        let tcp = connect_with_timeout(gw.port, read_timeout);
        let connection: Box<dyn Connection> = match tls {
            true => {
                let client = tls_client(&dir.path().join("cert.pem"));
                Box::new(rustls::StreamOwned::new(client, tcp))
            }
            false => Box::new(tcp),
        };
        timings.push((tls, measure(connection, &token)));
    }
    timings
}

/// A client that sends its next request header a byte at a time on a kept-alive connection,
/// each byte well within the idle timeout of the last (slowloris), is closed one idle timeout
/// after that header began: the timeout bounds the whole header, not each read of it; over
/// plain TCP and TLS alike. (A new connection's first header is bounded the same way by the
/// engine's 60 s, too long to wait for here.)
#[test]
fn a_request_header_sent_a_byte_at_a_time_is_cut_off_at_the_idle_timeout() {
    let timings = on_plain_and_tls(2, Duration::from_millis(50), trickled_header_cut_after);
    for (tls, cut_after) in timings {
        assert!(
            cut_after > Duration::from_millis(1500) && cut_after < Duration::from_secs(4),
            "tls {tls}: cut after {cut_after:?}"
        );
    }
}

/// Sends one whole request, reads its answer, then sends the start of a second request header
/// and one more byte every 0.4 s without ever ending it; returns how long after that header
/// began the gateway closed the connection (panics after 10 s).
fn trickled_header_cut_after(mut stream: Box<dyn Connection>, token: &str) -> Duration {
    let request = format!("GET /app HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let started = Instant::now();
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        assert!(started.elapsed() < Duration::from_secs(10), "no answer");
        match stream.read(&mut buf) {
            Ok(0) => panic!("closed before the answer"),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    let began = Instant::now();
    let _ = stream.write_all(b"GET /app HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    while began.elapsed() < Duration::from_secs(10) {
        // Closed: end of stream, an error other than the read timeout, or a write refused.
        match stream.read(&mut buf) {
            Ok(0) => return began.elapsed(),
            Ok(_) => {}
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                return began.elapsed()
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(350));
        if stream
            .write_all(b"a")
            .and_then(|()| stream.flush())
            .is_err()
        {
            return began.elapsed();
        }
    }
    panic!("a header sent a byte at a time held its connection for 10 s");
}

/// Sends four requests on `stream`, 0.6 s apart, each after the last answer; returns how long
/// after the last answer the gateway closed the connection.
fn requests_until_idle_close(mut stream: Box<dyn Connection>, token: &str) -> Duration {
    let request = format!("GET /app HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    for round in 0..4 {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(600));
        }
        stream.write_all(request.as_bytes()).expect("write");
        let head = read_head(&mut stream).unwrap_or_else(|| panic!("round {round}: closed"));
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "round {round}: {head}");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("round {round}: no content-length in {head}"));
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).expect("body");
    }
    let last_answer = Instant::now();
    let mut rest = Vec::new();
    // A TLS stream may end with its close-notify or without: both mean closed.
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    last_answer.elapsed()
}

/// A TLS client session for `localhost` trusting the certificate `cert` alone.
fn tls_client(cert: &std::path::Path) -> rustls::ClientConnection {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pem = pem::parse(std::fs::read(cert).expect("cert")).expect("pem");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pem.contents().to_vec().into())
        .expect("root certificate");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().expect("name");
    rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("tls client")
}

#[test]
fn malformed_traffic_does_not_flood_the_log() {
    let gw = TestGateway::start();
    let garbage: [&[u8]; 5] = [
        b"GARBAGE\r\n\r\n",
        b"GET /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\n\r\n",
        b"GET /app HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    ];
    for round in 0..60 {
        let request = garbage[round % garbage.len()];
        let mut stream = connect_with_timeout(gw.port, Duration::from_millis(500));
        let _ = stream.write_all(request);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    let log = gw.log();
    let loud = log
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .count();
    assert!(loud <= 25, "{loud} loud lines:\n{log}");
}

#[test]
fn an_access_token_past_exp_is_refreshed_whatever_the_leeway() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            leeway_seconds: 60,
            extra_routes: format!(
                "  - path: /fresh\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true}}\n    identityHeaders: {{X-User-Id: sub}}\n"
            ),
            ..Default::default()
        },
    );
    let session = gw.login("leeway@example.com", &["user"]);
    let mut past = claims(
        Uuid::parse_str(&session.user_id).expect("uuid"),
        APP,
        &["user"],
    );
    past["exp"] = json!(now() - 3);
    let past = gw.token(Algorithm::RS256, &past);
    // Within the leeway, with a refresh cookie: refreshed; the upstream gets the new token.
    let (status, response) = get(
        &gw,
        "/fresh",
        &[format!(
            "Cookie: access_token={past}; refresh_token={}",
            session.refresh_token
        )],
    );
    assert_eq!(status, 200, "{response}");
    assert!(
        response.contains("Set-Cookie: access_token=")
            || response.contains("set-cookie: access_token="),
        "{response}"
    );
    let headers = &raw_body(&response)["headers"];
    let forwarded = headers["authorization"][0].as_str().expect("authorization");
    assert!(
        !forwarded.contains(&past),
        "the expired token was forwarded"
    );
    // A refresh cookie that no longer works: refused, cookies cleared, not forwarded.
    let before = upstream.received().len();
    let (status, response) = get(
        &gw,
        "/fresh",
        &[format!(
            "Cookie: access_token={past}; refresh_token=unknown-value"
        )],
    );
    assert_eq!(status, 401, "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("set-cookie: refresh_token=;"),
        "{response}"
    );
    assert_eq!(upstream.received().len(), before);
    // No refresh cookie at all: the leeway tolerates clock skew.
    let (status, response) = get(&gw, "/fresh", &[format!("Authorization: Bearer {past}")]);
    assert_eq!(status, 200, "{response}");
}

#[test]
fn passthrough_routes_forward_no_credential_and_reserved_headers_never_pass() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            extra_routes:
                "  - path: /static\n    upstream: $UPSTREAM\n    auth: {enabled: false}\n".into(),
            ..Default::default()
        },
    );
    let token = user_token(&gw, &["user"]);
    let (status, response) = get(
        &gw,
        "/static/a",
        &[
            format!("Authorization: Bearer {token}"),
            format!("Cookie: a=1; access_token={token}; refresh_token=r; b=2"),
            "X-Original-URL: /admin".into(),
            "X-Rewrite-URL: /admin".into(),
            "X-Forwarded-User: admin".into(),
            "X-Remote-User: admin".into(),
            "Remote-User: admin".into(),
            "X-Auth-Request-User: admin".into(),
            "X-Forwarded-Host: evil.example".into(),
            "Forwarded: for=1.2.3.4;host=evil.example".into(),
            "X-Forwarded-For: 1.2.3.4".into(),
            "X-Real-IP: 1.2.3.4".into(),
            "Remote-Groups: admins".into(),
            "X-WEBAUTH-USER: admin".into(),
            "X-Forwarded-Client-Cert: By=spiffe://x;URI=spiffe://admin".into(),
            "X-SSL-Client-S-DN: CN=admin".into(),
            "X-Forwarded-Ssl: on".into(),
            "True-Client-IP: 10.0.0.1".into(),
            "X-Envoy-Original-Path: /admin".into(),
            "X-HTTP-Method-Override: DELETE".into(),
            "Cf-Access-Authenticated-User-Email: boss@corp".into(),
            "X-Pomerium-Claim-Email: boss@corp".into(),
            "Client-IP: 10.0.0.2".into(),
            "WL-Proxy-Client-IP: 10.0.0.3".into(),
            "X-Originating-IP: 10.0.0.4".into(),
            "X-Envoy-External-Address: 10.0.0.5".into(),
            "X-Original-Forwarded-For: 10.0.0.6".into(),
            "X-User: admin".into(),
            "X-Scheme: https".into(),
            "X-Script-Name: /admin".into(),
            "X-Request-Uri: /admin".into(),
            "X-Authenticated-User: boss".into(),
            "X-Auth-Email: boss@corp".into(),
            "X-Consumer-Username: boss".into(),
            "X-Consumer-Groups: admins".into(),
            "X-Anonymous-Consumer: false".into(),
            "X-Access-Token: unchecked".into(),
            "Path-Info: /admin".into(),
            "OIDC-Claim-Email: boss@corp".into(),
            "SSL-Client-Verify: SUCCESS".into(),
            "X-Client-DN: CN=boss".into(),
            "X-Real-User: boss".into(),
            "X-Gatehouse-Redirect: https://evil.example/".into(),
            "X-Forwarded-Proto: https".into(),
            "X-Request-Id: kept".into(),
        ],
    );
    assert_eq!(status, 200, "{response}");
    let headers = &raw_body(&response)["headers"];
    assert!(headers.get("authorization").is_none(), "{headers}");
    assert_eq!(headers["cookie"], json!(["a=1; b=2"]));
    assert_eq!(headers["x-request-id"], json!(["kept"]));
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-user",
        "x-remote-user",
        "remote-user",
        "x-auth-request-user",
        "forwarded",
        "remote-groups",
        "x-webauth-user",
        "x-forwarded-client-cert",
        "x-ssl-client-s-dn",
        "x-forwarded-ssl",
        "true-client-ip",
        "x-envoy-original-path",
        "x-http-method-override",
        "cf-access-authenticated-user-email",
        "x-pomerium-claim-email",
        "client-ip",
        "wl-proxy-client-ip",
        "x-originating-ip",
        "x-envoy-external-address",
        "x-original-forwarded-for",
        "x-user",
        "x-scheme",
        "x-script-name",
        "x-request-uri",
        "x-authenticated-user",
        "x-auth-email",
        "x-consumer-username",
        "x-consumer-groups",
        "x-anonymous-consumer",
        "x-access-token",
        "path-info",
        "oidc-claim-email",
        "ssl-client-verify",
        "x-client-dn",
        "x-real-user",
        "x-gatehouse-redirect",
    ] {
        assert!(headers.get(name).is_none(), "{name}: {headers}");
    }
    assert_eq!(headers["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(headers["x-forwarded-proto"], json!(["http"]));
    assert!(headers.get("x-real-ip").is_none(), "{headers}");
    assert!(headers.get("x-forwarded-host").is_none(), "{headers}");
    // Ambiguous credentials are refused on a passthrough too.
    let (status, _) = get(
        &gw,
        "/static/a",
        &["Cookie: a=1, refresh_token=SECRET".into()],
    );
    assert_eq!(status, 400);
}

#[test]
fn role_claims_that_would_read_as_other_roles_refuse_the_token_where_forwarded() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    for roles in [
        json!(["user,admin"]),
        json!(["user", " admin"]),
        json!(["user", ""]),
        json!("admin"),
        json!(["user", ["admin"]]),
        json!(["user", 1]),
    ] {
        let mut token_claims = claims(Uuid::new_v4(), APP, &["user"]);
        token_claims["roles"] = roles.clone();
        let token = gw.token(Algorithm::RS256, &token_claims);
        // `/` forwards X-User-Roles: refused, never forwarded with roles the policy did not see.
        let (status, response) = get(&gw, "/app", &[format!("Authorization: Bearer {token}")]);
        assert!([401, 403].contains(&status), "{roles}: {response}");
        // `/admin` never lets it in.
        let (status, _) = get(&gw, "/admin", &[format!("Authorization: Bearer {token}")]);
        assert!([401, 403].contains(&status), "{roles}");
    }
    assert!(!upstream.received().iter().any(|t| t.starts_with("/admin")));
}

#[test]
fn hosts_targets_and_lengths_that_read_two_ways_are_refused() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    let token = user_token(&gw, &["user"]);
    let auth = format!("Authorization: Bearer {token}");
    let requests: Vec<String> = vec![
        format!("GET /app HTTP/1.1\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("GET /app HTTP/1.1\r\nHost: a b\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("GET /app HTTP/1.1\r\nHost: 127.0.0.1/admin\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("GET /app HTTP/1.1\r\nHost: x:99999\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("GET app/x?q=1 HTTP/1.1\r\nHost: x\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("GET ftp://x/app HTTP/1.1\r\nHost: x\r\n{auth}\r\nConnection: close\r\n\r\n"),
        format!("POST /app HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Length: 4,4\r\nConnection: close\r\n\r\nabcd"),
        format!("POST /app HTTP/1.1\r\nHost: x\r\n{auth}\r\nContent-Length: 4\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd"),
    ];
    for request in &requests {
        let (status, response) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 400, "{request}\n{response}");
    }
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
    // HTTP/1.0 without Host is refused too (an upstream would serve its default site under a
    // policy judged for no host), and so is an absolute-form target of the other scheme.
    for request in [
        format!("GET /app HTTP/1.0\r\n{auth}\r\n\r\n"),
        format!("GET https://x/app HTTP/1.1\r\nHost: x\r\n{auth}\r\nConnection: close\r\n\r\n"),
        "GET HTTPS://x/public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string(),
    ] {
        let (status, response) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 400, "{request}\n{response}");
    }
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
    // HTTP/1.0 with a Host, and absolute-form of the listener's scheme, are fine.
    for request in [
        format!("GET /app HTTP/1.0\r\nHost: x\r\n{auth}\r\n\r\n"),
        format!("GET HTTP://x/app HTTP/1.1\r\nHost: x\r\n{auth}\r\nConnection: close\r\n\r\n"),
    ] {
        let (status, response) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 200, "{request}\n{response}");
    }
}

#[test]
fn a_hosts_own_routes_come_before_any_host_routes() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            extra_routes: "  - host: admin.example
    path: /
    upstream: $UPSTREAM
    auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32, roles: [admin]}
"
            .into(),
            ..Options::default()
        },
    );
    // `/public` is a public any-host route with a longer path than admin.example's `/`: on
    // admin.example it is admin.example's site, so admin.example's route judges it.
    for host in ["admin.example", "ADMIN.example.", "admin.example:80"] {
        let (status, response) = get_on_host(&gw, "/public/x", host, &[]);
        assert_eq!(status, 401, "{host}\n{response}");
    }
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
    let (status, _) = get_on_host(&gw, "/public/x", "www.example", &[]);
    assert_eq!(status, 200);
}

#[test]
fn authorization_reaches_the_upstream_only_as_the_verified_bearer_token() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            extra_routes:
                "  - path: /static\n    upstream: $UPSTREAM\n    auth: {enabled: false}\n".into(),
            ..Default::default()
        },
    );
    for target in ["/public/x", "/static/x"] {
        for scheme in [
            "Basic YWRtaW46c2VjcmV0",
            "Digest username=\"admin\"",
            "Negotiate abc",
        ] {
            let (status, response) = get(&gw, target, &[format!("Authorization: {scheme}")]);
            assert_eq!(status, 200, "{target} {scheme}: {response}");
            let headers = &raw_body(&response)["headers"];
            assert!(
                headers.get("authorization").is_none(),
                "{target} {scheme}: {headers}"
            );
        }
    }
    let token = user_token(&gw, &["user"]);
    let (status, response) = get(
        &gw,
        "/public/x",
        &[format!("Authorization: Bearer {token}")],
    );
    assert_eq!(status, 200);
    assert_eq!(
        raw_body(&response)["headers"]["authorization"],
        json!([format!("Bearer {token}")])
    );
}

#[test]
fn a_token_naming_a_claim_twice_is_refused() {
    use base64::Engine;
    let gw = TestGateway::start();
    let (id, _, pem) = gw.keys.get(Algorithm::RS256);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": id.to_string()}).to_string();
    let user = Uuid::new_v4();
    let exp = now() + 600;
    let payload = format!(
        r#"{{"sub":"{user}","aud":"{APP}","applicationId":"{APP}","iss":"{ISSUER}","tid":"{TENANT}","exp":{exp},"roles":["user"],"roles":["admin"]}}"#
    );
    let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
    let input = format!("{}.{}", b64(&header), b64(&payload));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa");
    let signature =
        jsonwebtoken::crypto::sign(input.as_bytes(), &key, Algorithm::RS256).expect("sign");
    let token = format!("{input}.{signature}");
    assert_eq!(gw.get_as("/admin", &token).status().as_u16(), 401);
    assert_eq!(gw.get_as("/app", &token).status().as_u16(), 401);
}

/// A site behind a host route (admin role required) and the same path public on any other
/// host: every spelling of the admin host must reach the host route.
const HOST_ROUTES: &str = "  - host: admin.example
    path: /site
    upstream: $UPSTREAM
    auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32, roles: [admin]}
  - path: /site
    upstream: $UPSTREAM
    auth: {required: false}
";

/// `GET target` with `host` as the `Host` header, as raw bytes.
fn get_on_host(gw: &TestGateway, target: &str, host: &str, headers: &[String]) -> (u16, String) {
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    raw_http(gw.port, request.as_bytes())
}

#[test]
fn every_spelling_of_a_host_reaches_its_host_route() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            extra_routes: HOST_ROUTES.into(),
            ..Options::default()
        },
    );
    let spellings = [
        ("/site", "admin.example"),
        ("/site", "ADMIN.EXAMPLE"),
        ("/site", "admin.example."),
        ("/site", "Admin.Example."),
        ("/site", "admin.example:80"),
        ("/site", "admin.example.:80"),
        ("/site", "admin.example:080"),
        ("/site", "admin.example.:00080"),
        ("http://admin.example./site", "admin.example."),
        ("http://admin.example.:80/site", "admin.example.:80"),
        ("http://ADMIN.example/site", "ADMIN.example"),
    ];
    for (target, host) in spellings {
        let before = upstream.received().len();
        let (status, response) = get_on_host(&gw, target, host, &[]);
        assert_eq!(status, 401, "{target} Host: {host}\n{response}");
        assert_eq!(upstream.received().len(), before, "{target} Host: {host}");
    }
    // With the admin role, the upstream receives the canonical host.
    let admin = format!("Authorization: Bearer {}", user_token(&gw, &["admin"]));
    for (target, host) in spellings {
        let (status, response) = get_on_host(&gw, target, host, std::slice::from_ref(&admin));
        assert_eq!(status, 200, "{target} Host: {host}\n{response}");
        let body = raw_body(&response);
        assert_eq!(
            body["headers"]["host"],
            json!(["admin.example"]),
            "{target} {host}"
        );
        assert_eq!(body["target"], "/site");
    }
    // Another host is public, and its canonical host goes upstream too.
    let (status, response) = get_on_host(&gw, "/site", "WWW.example.:80", &[]);
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        raw_body(&response)["headers"]["host"],
        json!(["www.example"])
    );
}

#[test]
fn hosts_without_one_reading_are_refused() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(
        &upstream,
        Options {
            extra_routes: HOST_ROUTES.into(),
            ..Options::default()
        },
    );
    for (target, host) in [
        ("/site", "admin.example.."),
        ("/site", "admin..example"),
        ("/site", ".admin.example"),
        ("/site", "admin.example:0"),
        ("/site", "admin.example:65536"),
        ("/site", "0x7f.0.0.1"),
        ("/site", "2130706433"),
        ("/site", "127.000.0.1"),
        ("/site", "admin.example%2e"),
    ] {
        let before = upstream.received().len();
        let (status, response) = get_on_host(&gw, target, host, &[]);
        assert_eq!(status, 400, "{target} Host: {host}\n{response}");
        assert_eq!(
            raw_body(&response)["generalErrors"][0]["code"],
            "[AmbiguousRequest]",
            "{target} {host}: {response}"
        );
        assert_eq!(upstream.received().len(), before, "{target} Host: {host}");
    }
    // An absolute-form target naming another host, or another spelling of it, than `Host`:
    // refused (by the engine, before any route is read).
    for (target, host) in [
        ("http://admin.example/site", "www.example"),
        ("http://www.example/site", "admin.example"),
        ("http://admin.example./site", "admin.example"),
        ("http://admin.example/site", "admin.example:80"),
    ] {
        let before = upstream.received().len();
        let (status, response) = get_on_host(&gw, target, host, &[]);
        assert_eq!(status, 400, "{target} Host: {host}\n{response}");
        assert_eq!(upstream.received().len(), before, "{target} Host: {host}");
    }
}

/// At `limits.maxConnections`, the next connection waits in the kernel's backlog, unanswered, and
/// is served as soon as one of the open ones closes: the gateway never holds more client
/// connections than the limit, and nothing is refused.
#[test]
fn a_connection_over_the_limit_waits_until_one_closes() {
    let gw = TestGateway::start_with(Options {
        max_connections: 2,
        ..Default::default()
    });
    let address = ("127.0.0.1", gw.port);
    let mut open: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(address).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut waiting = std::net::TcpStream::connect(address).expect("connect (the backlog)");
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        .expect("write");
    waiting
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let mut first = [0u8; 1];
    let early = waiting.read(&mut first);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "answered over the limit: {early:?}"
    );
    drop(open.remove(0));
    let closed_at = Instant::now();
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut answer = Vec::new();
    waiting.read_to_end(&mut answer).expect("answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed_at.elapsed() < Duration::from_secs(5));
    // The one still open is served too.
    let mut still_open = open.remove(0);
    still_open
        .write_all(b"GET /health HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    still_open.read_to_end(&mut answer).expect("answer");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

/// An `Upgrade` without `Connection: upgrade` asks for nothing: the upstream gets neither the
/// `Upgrade` nor the `Connection: upgrade` the engine would add for it, and answers the request.
#[test]
fn an_upgrade_the_client_did_not_ask_for_does_not_reach_the_upstream() {
    let upstream = RecordingUpstream::start();
    let gw = gateway_to(&upstream, Options::default());
    for headers in [
        vec![
            "Connection: keep-alive".to_string(),
            "Upgrade: websocket".into(),
        ],
        vec!["Upgrade: websocket".into()],
    ] {
        let (status, response) = get(&gw, "/public/x", &headers);
        assert_eq!(status, 200, "{response}");
        let seen = &raw_body(&response)["headers"];
        assert!(seen.get("upgrade").is_none(), "{headers:?}: {seen}");
        let connection = seen["connection"].to_string().to_ascii_lowercase();
        assert!(!connection.contains("upgrade"), "{headers:?}: {seen}");
    }
}

/// An upstream that answers every request `200` with a body of `length` zero bytes, written
/// as fast as the connection takes it; returns its port.
fn large_answer_upstream(length: usize) -> u16 {
    serve_connections(move |mut stream| {
        if read_head(&mut stream).is_none() {
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let block = vec![0u8; 65_536];
        let mut left = length;
        while left > 0 {
            let n = left.min(block.len());
            if stream.write_all(&block[..n]).is_err() {
                return;
            }
            left -= n;
        }
    })
}

/// A client that reads an answer's head and then stops reading (a slow-read attack) is
/// disconnected once the gateway could write nothing to it for `limits.idleTimeoutSeconds`:
/// when it reads again it gets what was already on its way, then the end of the connection,
/// never the whole body (the gateway let go of it, and of the upstream's connection).
#[test]
fn a_client_that_stops_reading_the_answer_is_disconnected_at_the_idle_timeout() {
    const LENGTH: usize = 256 << 20;
    let upstream = large_answer_upstream(LENGTH);
    let gw = TestGateway::start_with(Options {
        idle_timeout_seconds: 2,
        extra_routes: open_route("/large", upstream),
        ..Default::default()
    });
    let mut stream = connect_with_timeout(gw.port, Duration::from_secs(10));
    stream
        .write_all(b"GET /large/file HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let head = read_head(&mut stream).expect("head");
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    // Stop reading for well over the idle timeout.
    std::thread::sleep(Duration::from_secs(6));
    let mut received = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n,
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still reading after a minute: {received} bytes"
        );
    }
    assert!(
        received < LENGTH,
        "the whole body arrived: the connection was kept for a client that stopped reading"
    );
}

/// An upstream that reads a request's header and a little of its body, answers `413` at
/// once and then neither reads nor closes (as some servers do with a body they will not
/// take): the gateway's write of the rest fails after the upstream write timeout (60 s) and
/// the client gets the upstream's answer, instead of waiting for ever.
#[test]
fn an_upstream_that_answers_early_and_stops_reading_does_not_hang_the_request() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            if read_head(&mut stream).is_none() {
                continue;
            }
            let mut some = [0u8; 65_536];
            let _ = stream.read(&mut some);
            let _ = stream
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo big!");
            // Neither read nor closed: held until the test ends.
            held.push(stream);
        }
    });
    let gw = TestGateway::start_with(Options {
        max_body_bytes: 512 << 20,
        extra_routes: open_route("/upload", upstream),
        ..Default::default()
    });
    const LENGTH: usize = 256 << 20;
    let mut stream = connect_with_timeout(gw.port, Duration::from_secs(90));
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let head = format!("POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: {LENGTH}\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("write");
    // Send the body until nothing more is taken (every buffer on the way is full).
    let block = vec![0u8; 65_536];
    let mut sent = 0usize;
    while sent < LENGTH {
        match stream.write(&block) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    assert!(sent < LENGTH, "the upstream took the whole body");
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(
        started.elapsed() < Duration::from_secs(85),
        "no answer for {:?}",
        started.elapsed()
    );
    assert!(
        text.starts_with("HTTP/1.1 413") || text.starts_with("HTTP/1.1 502"),
        "{text}"
    );
}

/// An upstream that reads a request's head and then its body for as long as it comes, and
/// never answers; returns its port.
fn body_reading_upstream() -> u16 {
    serve_connections(|mut stream| {
        if read_head(&mut stream).is_none() {
            return;
        }
        let mut buf = [0u8; 4096];
        while let Ok(1..) = stream.read(&mut buf) {}
    })
}

/// Sends `head` (declaring a body) to `port`, then a byte (`x`) every 3 s;
/// returns how long after the head the gateway answered or closed, and what it answered.
fn trickle_body(port: u16, head: &str) -> (Duration, String) {
    let mut stream = connect_with_timeout(port, Duration::from_millis(100));
    stream.write_all(head.as_bytes()).expect("head");
    let began = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while began.elapsed() < Duration::from_secs(60) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                continue;
            }
            Err(e)
                if e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(_) if !answer.is_empty() => break,
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(2900));
        if stream.write_all(b"x").is_err() {
            break;
        }
    }
    (
        began.elapsed(),
        String::from_utf8_lossy(&answer).to_string(),
    )
}

/// A request body trickled a byte every 3 s (each read well within the read timeout: a slow
/// POST) is cut off once the request has had more time than its body earns (20 s, and a
/// second more each 500 bytes): 408 on a proxied route, 400 with Errors JSON on an API
/// route, and the connection closed, instead of a connection held for as long as the client
/// likes.
#[test]
fn a_request_body_trickled_a_byte_at_a_time_is_cut_off() {
    let upstream = body_reading_upstream();
    let gw = TestGateway::start_with(Options {
        extra_routes: open_route("/upload", upstream),
        ..Default::default()
    });
    let port = gw.port;
    let proxied = std::thread::spawn(move || {
        trickle_body(
            port,
            "POST /upload/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        )
    });
    // Bytes that carry no data earn no time: a chunk extension trickled after one byte of
    // data (each byte renewing the read timeout) is cut off all the same.
    let framing = std::thread::spawn(move || {
        trickle_body(
            port,
            "POST /upload/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nd\r\n1;e=",
        )
    });
    let api = trickle_body(
        gw.port,
        &format!(
            "POST /api/jwt/vend HTTP/1.1\r\nHost: x\r\nAuthorization: {API_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
        ),
    );
    let proxied = proxied.join().expect("proxied");
    let framing = framing.join().expect("framing");
    for (what, (after, answer), status) in [
        ("proxied", proxied, "408"),
        ("chunk extension", framing, "408"),
        ("api", api, "400"),
    ] {
        assert!(
            after > Duration::from_secs(19) && after < Duration::from_secs(30),
            "{what}: after {after:?}: {answer}"
        );
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {answer}"
        );
    }
}

/// Two requests pipelined on one connection to the admin listener are both answered, in
/// order, as on the proxy listener: the second is not dropped behind a keep-alive answer.
#[test]
fn pipelined_requests_to_the_admin_listener_are_all_answered() {
    let gw = TestGateway::start();
    let mut stream = connect_with_timeout(gw.admin_port, Duration::from_secs(5));
    stream
        .write_all(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert!(
        text.contains("gatehouse_"),
        "the metrics answered second: {text}"
    );
}
