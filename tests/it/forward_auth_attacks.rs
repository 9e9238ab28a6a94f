//! Forward-auth mode attacked through the real binary, class by class: the endpoint reached
//! through a path-prefix target that climbs out of it, a judged host the front proxy did not
//! name, the policy of every kind of route decided alike on the proxy path and in each
//! convention, login redirects for browser navigations only, a trusted issuer's key outage,
//! refresh under concurrency and after revocation, and bodies, `HEAD` and preflights.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};
use uuid::Uuid;

use super::forward_auth::{
    allowed, cookie_value, envoy, expired_token, gateway, gateway_with, header, nginx, set_cookies,
    token, traefik, ENDPOINT, LOGIN,
};
use super::issuers::{idp_claims, IssuerKey, JwksServer, Mode, IDP};
use super::kit::*;

/// The status lines of every answer in a raw response stream, in order.
fn statuses(stream: &str) -> Vec<u16> {
    stream
        .split("\r\n")
        .filter(|line| line.starts_with("HTTP/1.1 "))
        .filter_map(|line| line.split(' ').nth(1)?.parse().ok())
        .collect()
}

#[test]
fn a_path_prefix_target_never_climbs_out_of_the_endpoint() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let (_, user_token) = token(&gw, &["user"]);
    // Envoy appends the original path to the prefix as sent. `/../public/../admin` is served
    // as `/admin` by the app; canonically the asking path is `/_gatehouse/admin`, which route
    // `/` lets a user through: it must be judged (and refused), never proxied.
    for path in [
        "/_gatehouse/auth/../public/../admin",
        "/_gatehouse/auth/%2e%2e/admin",
        "/_gatehouse/auth/%2E%2E/public/x",
        "/_gatehouse/auth/./../../admin",
        "/_gatehouse/auth/..",
        "http://app.example/_gatehouse/auth/../admin",
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: app.example\r\nAuthorization: Bearer {user_token}\r\nConnection: close\r\n\r\n"
        );
        let (status, response) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 400, "{path}: {response}");
        assert!(raw_body(&response)["generalErrors"][0]["code"].is_string());
    }
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
}

#[test]
fn the_judged_host_must_be_named_by_the_front_proxy() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    // `/hosted` is public on app.example only. Without X-Forwarded-Host the asking request's
    // Host (nginx's `proxy_pass` sets the gateway's) would pick the routes of another host.
    for request in [
        client()
            .get(gw.url(ENDPOINT))
            .header("X-Original-URI", "/hosted"),
        client()
            .get(gw.url(ENDPOINT))
            .header("Host", "app.example")
            .header("X-Forwarded-Uri", "/hosted"),
    ] {
        let response = request.send().expect("send");
        let body = check_status(response, 400);
        assert_eq!(body["generalErrors"][0]["code"], "[BadRequest]");
        assert!(body.to_string().contains("X-Forwarded-Host"), "{body}");
    }
    allowed(nginx(&gw, "GET", "/hosted"));
}

#[test]
fn only_browser_navigations_are_sent_to_the_login_page() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let page = "text/html,application/xhtml+xml,*/*;q=0.8";
    // Each request both ways: a decision for /app/page (its route names the login page) and the
    // proxy path's /admin (the kit's route with a login page).
    let both = |extra: &[(&str, &str)]| -> [reqwest::blocking::Response; 2] {
        let mut decision = traefik(&gw, "GET", "/app/page", "app.example");
        let mut proxied = client().get(gw.url("/admin"));
        for (name, value) in extra {
            decision = decision.header(*name, *value);
            proxied = proxied.header(*name, *value);
        }
        [
            decision.send().expect("send"),
            proxied.send().expect("send"),
        ]
    };
    for response in both(&[("Accept", page), ("Sec-Fetch-Mode", "navigate")]) {
        assert_eq!(response.status().as_u16(), 302);
        assert_eq!(header(&response, "location").as_deref(), Some(LOGIN));
    }
    for extra in [
        vec![("Accept", page), ("X-Requested-With", "XMLHttpRequest")],
        vec![("Accept", page), ("Sec-Fetch-Mode", "cors")],
        vec![("Accept", "application/json, text/html;q=0")],
        vec![("Accept", "application/json, text/plain, */*")],
    ] {
        for response in both(&extra) {
            assert_eq!(header(&response, "location"), None, "{extra:?}");
            assert_eq!(header(&response, "x-gatehouse-redirect"), None, "{extra:?}");
            check_status(response, 401);
        }
    }
}

/// A gateway whose routes cover every kind of route policy, in forward-auth mode.
fn policy_gateway(upstream: &RecordingUpstream) -> TestGateway {
    let id = "identityHeaders: {X-User-Id: sub, X-User-Email: email}";
    TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra: format!(
            "forwardAuth: {{path: {ENDPOINT}, trustedProxies: [127.0.0.1/32, '::1/128']}}\n"
        ),
        extra_routes: [
            format!("  - path: /aud\n    upstream: $UPSTREAM\n    auth: {{audiences: [my-api]}}\n    {id}\n"),
            format!("  - path: /verified\n    upstream: $UPSTREAM\n    auth: {{claims: {{email_verified: true}}}}\n    {id}\n"),
            format!("  - path: /other-issuer\n    upstream: $UPSTREAM\n    auth: {{issuers: [other.test]}}\n    {id}\n"),
            format!("  - path: /optional\n    upstream: $UPSTREAM\n    auth: {{required: false, applicationId: {APP}}}\n    {id}\n"),
            "  - path: /open\n    upstream: $UPSTREAM\n    auth: {enabled: false}\n".to_string(),
            format!("  - path: /\n    host: staff.example\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, roles: [admin]}}\n    {id}\n"),
            format!("  - path: /Reports\n    upstream: $UPSTREAM\n    caseSensitive: false\n    auth: {{roles: [admin]}}\n    {id}\n"),
        ]
        .concat(),
        ..Default::default()
    })
}

/// One request both ways: its status and identity (`X-User-Id`, `X-User-Email`) on the proxy
/// path (what the upstream got) and in a decision asked with `ask`.
fn proxied(gw: &TestGateway, host: &str, path: &str, token: Option<&str>) -> (u16, Vec<String>) {
    let mut request = client().get(gw.url(path)).header("Host", host);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().expect("send");
    let status = response.status().as_u16();
    let body: Value = response.json().unwrap_or(Value::Null);
    let identity = ["x-user-id", "x-user-email"]
        .iter()
        .map(|name| body["headers"][name][0].as_str().unwrap_or("").to_string())
        .collect();
    (status, if status == 200 { identity } else { Vec::new() })
}

/// The status and identity of a decision.
fn decided(request: RequestBuilder, token: Option<&str>) -> (u16, Vec<String>) {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().expect("send");
    let status = response.status().as_u16();
    let identity = ["x-user-id", "x-user-email"]
        .iter()
        .map(|name| header(&response, name).unwrap_or_default())
        .collect();
    (status, if status == 200 { identity } else { Vec::new() })
}

#[test]
fn every_route_policy_decides_alike_on_both_paths() {
    let upstream = RecordingUpstream::start();
    let gw = policy_gateway(&upstream);
    let user = Uuid::new_v4();
    let sign = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims(user, APP, &["user"]);
        edit(&mut claims);
        gw.token(Algorithm::RS256, &claims)
    };
    let plain = sign(&|_| {});
    let admin = sign(&|c| c["roles"] = json!(["admin"]));
    let api = sign(&|c| c["aud"] = json!([APP, "my-api"]));
    let verified = sign(&|c| c["email_verified"] = json!(true));
    let other_app = sign(&|c| {
        c["applicationId"] = json!(OTHER_APP);
        c["aud"] = json!(OTHER_APP);
    });
    let other_issuer = sign(&|c| {
        c["iss"] = json!("other.test");
        c["tid"] = json!(OTHER_TENANT);
        c["applicationId"] = Value::Null;
        c["aud"] = Value::Null;
    });
    let expired = sign(&|c| c["exp"] = json!(now() - 60));
    let crlf = sign(&|c| c["email"] = json!("ann@example.com\r\nX-User-Roles: admin"));
    let (t, ok, deny, forbid, bad) = (Some, 200, 401, 403, 400);
    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("app.example", "/x", None, deny),
        ("app.example", "/x", t(&plain), ok),
        ("app.example", "/x", t(&other_app), forbid),
        ("app.example", "/x", t(&expired), deny),
        ("app.example", "/x", t(&crlf), deny),
        ("app.example", "/admin/x", t(&plain), forbid),
        ("app.example", "/admin/x", t(&admin), ok),
        ("app.example", "/aud", t(&plain), forbid),
        ("app.example", "/aud", t(&api), ok),
        ("app.example", "/verified", t(&plain), forbid),
        ("app.example", "/verified", t(&verified), ok),
        ("app.example", "/other-issuer", t(&plain), deny),
        ("app.example", "/other-issuer", t(&other_issuer), ok),
        ("app.example", "/optional", None, ok),
        ("app.example", "/optional", t(&expired), ok),
        ("app.example", "/optional", t(&other_app), ok),
        ("app.example", "/optional", t(&plain), ok),
        ("app.example", "/open", None, ok),
        ("app.example", "/open", t(&expired), ok),
        ("Staff.Example.", "/x", t(&plain), forbid),
        ("staff.example:80", "/x", t(&admin), ok),
        ("app.example", "/reports/q", t(&plain), forbid),
        ("app.example", "/REPORTS", t(&admin), ok),
        ("app.example", "/Admin", t(&admin), bad),
        ("app.example", "/public/../admin", t(&plain), forbid),
    ];
    for (host, path, token, status) in cases {
        let on_proxy = proxied(&gw, host, path, token);
        assert_eq!(on_proxy.0, status, "proxy path: {host} {path}");
        for (convention, request) in [
            ("traefik", traefik(&gw, "GET", path, host)),
            (
                "nginx",
                client()
                    .get(gw.url(ENDPOINT))
                    .header("X-Original-URI", path)
                    .header("X-Forwarded-Host", host),
            ),
            (
                "envoy",
                envoy(&gw, reqwest::Method::GET, path).header("Host", host),
            ),
        ] {
            let in_decision = decided(request, token);
            assert_eq!(in_decision, on_proxy, "{convention}: {host} {path}");
        }
    }
}

#[test]
fn a_trusted_issuers_key_outage_is_a_503_in_every_convention() {
    let key = IssuerKey::generate("a", gatehouse::auth::keys::KeyAlgorithm::ES256);
    let server = JwksServer::start(vec![key.jwk.clone()]);
    server.set_mode(Mode::Down);
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra: format!(
            "issuers:\n  - {{issuer: {IDP}, jwksUri: {}, algorithms: [ES256], unknownKeyWaitMillis: 300}}\nforwardAuth: {{path: {ENDPOINT}, trustedProxies: [127.0.0.1/32]}}\n",
            server.url()
        ),
        extra_routes: format!(
            "  - path: /remote\n    upstream: $UPSTREAM\n    auth: {{issuers: [{IDP}]}}\n    identityHeaders: {{X-User-Id: sub}}\n"
        ),
        ..Options::default()
    });
    let remote = key.sign(&idp_claims());
    for request in [
        traefik(&gw, "GET", "/remote", "app.example"),
        nginx(&gw, "GET", "/remote"),
        envoy(&gw, reqwest::Method::GET, "/remote"),
        client().get(gw.url("/remote")),
    ] {
        let response = request
            .bearer_auth(&remote)
            .header("Accept", "text/html")
            .send()
            .expect("send");
        assert_eq!(header(&response, "retry-after").as_deref(), Some("2"));
        assert_eq!(header(&response, "x-user-id"), None);
        let body = check_status(response, 503);
        assert_eq!(body["generalErrors"][0]["code"], "[ServiceUnavailable]");
    }
    // Back up: the same token is allowed.
    server.set_mode(Mode::Up);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let response = traefik(&gw, "GET", "/remote", "app.example")
            .bearer_auth(&remote)
            .send()
            .expect("send");
        if response.status().as_u16() == 200 {
            assert_eq!(header(&response, "x-user-id").as_deref(), Some("user-1"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(upstream.received().is_empty());
}

#[test]
fn concurrent_decisions_with_one_refresh_cookie_refresh_once() {
    let upstream = RecordingUpstream::start();
    // A burst of a page's assets: requests sent before the rotation completed get its pair; those
    // a slow client sends just after, the pair of the race window (as on the proxy path, and
    // across a cluster's nodes).
    let gw = gateway_with(&upstream, Some(10));
    let session = gw.login("fwd-burst@example.com", &["user"]);
    let expired = expired_token(&gw, &session.user_id);
    let cookie = format!(
        "access_token={expired}; refresh_token={}",
        session.refresh_token
    );
    // Eight decisions at once for the same browser (a page and its assets), one-time use.
    let answers: Vec<(u16, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let request = traefik(&gw, "GET", &format!("/app/asset{i}"), "app.example")
                    .header("Cookie", &cookie);
                scope.spawn(move || {
                    let response = request.send().expect("send");
                    (response.status().as_u16(), set_cookies(&response))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    let refreshed: Vec<String> = answers
        .iter()
        .map(|(status, cookies)| {
            assert_eq!(*status, 200, "{cookies:?}");
            cookie_value(cookies, "refresh_token").expect("refresh_token cookie")
        })
        .collect();
    assert!(
        refreshed.iter().all(|r| *r == refreshed[0]),
        "one rotation, one successor: {refreshed:?}"
    );
    assert_ne!(refreshed[0], session.refresh_token);
    // The successor works.
    allowed(
        traefik(&gw, "GET", "/app/next", "app.example")
            .header("Cookie", format!("refresh_token={}", refreshed[0])),
    );
}

#[test]
fn a_revoked_refresh_token_clears_both_cookies_and_is_refused() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let session = gw.login("fwd-revoked@example.com", &["user"]);
    let revoked = client()
        .delete(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id)))
        .header("Authorization", API_KEY)
        .send()
        .expect("revoke");
    assert_eq!(revoked.status().as_u16(), 200);
    let expired = expired_token(&gw, &session.user_id);
    let response = traefik(&gw, "GET", "/app/page", "app.example")
        .header(
            "Cookie",
            format!(
                "access_token={expired}; refresh_token={}",
                session.refresh_token
            ),
        )
        .send()
        .expect("send");
    let cookies = set_cookies(&response);
    for name in ["access_token", "refresh_token"] {
        assert_eq!(
            cookie_value(&cookies, name).as_deref(),
            Some(""),
            "{cookies:?}"
        );
    }
    assert!(cookies.contains(&header(&response, "x-gatehouse-set-cookie-refresh").expect("copy")));
    assert_eq!(header(&response, "x-user-id"), None);
    check_status(response, 401);
}

#[test]
fn bodies_head_and_preflights_are_judged_as_on_the_proxy_path() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    // A body (Envoy may send one) is never read as the next request on the connection: the
    // inner decision would be a 401; only the two outer ones (200, public) are answered.
    let inner = "GET /_gatehouse/auth/admin HTTP/1.1\r\nHost: app.example\r\n\r\n";
    let last =
        "GET /_gatehouse/auth/public HTTP/1.1\r\nHost: app.example\r\nConnection: close\r\n\r\n";
    let sized = format!(
        "POST /_gatehouse/auth/public HTTP/1.1\r\nHost: app.example\r\nContent-Length: {}\r\n\r\n{inner}{last}",
        inner.len()
    );
    let chunked = format!(
        "POST /_gatehouse/auth/public HTTP/1.1\r\nHost: app.example\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{inner}\r\n0\r\n\r\n{last}",
        inner.len()
    );
    for request in [sized, chunked] {
        let (_, stream) = raw_http(gw.port, request.as_bytes());
        let answered = statuses(&stream);
        assert!(
            !answered.is_empty() && answered.iter().all(|s| *s == 200),
            "{stream}"
        );
    }
    // HEAD: the refusal's headers without its body, and the connection still in step.
    let (_, stream) = raw_http(
        gw.port,
        format!("HEAD /_gatehouse/auth/admin HTTP/1.1\r\nHost: app.example\r\n\r\n{last}")
            .as_bytes(),
    );
    assert_eq!(statuses(&stream), [401, 200], "{stream}");
    assert!(!stream.contains("generalErrors"), "{stream}");
    // A CORS preflight carries no credentials: on a protected route it is refused in a
    // decision exactly as on the proxy path (routes that must answer preflights are public).
    let preflight = |request: RequestBuilder| {
        request
            .header("Origin", "https://other.example")
            .header("Access-Control-Request-Method", "DELETE")
            .send()
            .expect("send")
            .status()
            .as_u16()
    };
    let on_proxy = preflight(client().request(reqwest::Method::OPTIONS, gw.url("/app/page")));
    assert_eq!(on_proxy, 401);
    for status in [
        preflight(traefik(&gw, "OPTIONS", "/app/page", "app.example")),
        preflight(nginx(&gw, "OPTIONS", "/app/page")),
        preflight(envoy(&gw, reqwest::Method::OPTIONS, "/app/page")),
    ] {
        assert_eq!(status, on_proxy);
    }
    assert_eq!(
        preflight(traefik(&gw, "OPTIONS", "/public/page", "app.example")),
        200
    );
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
}
