//! Attacks on the browser login through the real binary: the hosted-backend routes
//! (`/app/login`, `/app/callback`, `/app/refresh`, `/app/me`, `/app/logout`) and the
//! `auth.login: true` redirect, each class as a black-box suite built from public bug reports
//! and RFC 6749/6819/9207/9700 would try it, against the provider the tests play
//! ([`super::fake_oidc`]).

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{json, Value};

use super::app_login::{ann, params, Answer, Browser};
use super::fake_oidc::{Provider, CLIENT_ID, CLIENT_SECRET};
use super::kit::*;

const IDP: &str = "7d1e2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f";

/// A gateway whose `/web` route has `login: true`, with `provider` declared in the file.
fn gateway(provider: &Provider) -> TestGateway {
    let issuer = provider.issuer();
    let extra = format!(
        r#"login:
  publicOrigin: http://127.0.0.1:$PORT
  redirects: [https://other.example]
identityProviders:
  - id: {IDP}
    type: OpenIDConnect
    name: Test SSO
    enabled: true
    oauth2: {{issuer: "{issuer}", client_id: {CLIENT_ID}, client_secret: "{CLIENT_SECRET}",
             scope: openid email}}
    linkingStrategy: LinkByEmail
    applicationConfiguration: {{{APP}: {{enabled: true, createRegistration: true}}}}
"#
    );
    TestGateway::start_with(Options {
        extra,
        identity_provider: "providerTimeoutMillis: 1000".into(),
        extra_routes: format!(
            "  - path: /web\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true, login: true}}\n"
        ),
        ..Options::default()
    })
}

/// The code of an answer's first general error.
fn error_code(answer: &Answer) -> Value {
    answer.json()["generalErrors"][0]["code"].clone()
}

/// Starts a login in `browser` and returns the provider's redirect back (the callback URL).
fn to_callback(gw: &TestGateway, browser: &mut Browser) -> String {
    let login = browser.open(&gw.url(&format!("/app/login/{APP}?redirect_uri=/web")));
    assert_eq!(login.status, 302, "{}", login.body);
    let at_provider = client().get(&login.location).send().expect("authorize");
    assert_eq!(at_provider.status().as_u16(), 302);
    at_provider.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string()
}

/// Sends `head` (a request line and headers, without the final blank line) as is and returns
/// the status and the whole answer (head and body).
fn raw(gw: &TestGateway, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    let request = format!("{head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn repeated_parameters_are_refused_not_guessed() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    // The callback: two states, two codes, two issuers: which one was meant cannot be told.
    let mut browser = Browser::default();
    let callback = to_callback(&gw, &mut browser);
    let sent = params(&callback);
    let (state, code) = (&sent["state"], &sent["code"]);
    for twice in [
        format!("state={state}&state=other&code={code}"),
        format!("state=other&state={state}&code={code}"),
        format!("state={state}&code={code}&code=other"),
        format!("state={state}&code={code}&iss={}&iss=x", provider.issuer()),
        format!("state={state}&code={code}&error=access_denied&error=x"),
    ] {
        let answer = browser
            .clone()
            .open(&gw.url(&format!("/app/callback?{twice}")));
        assert_eq!(answer.status, 400, "{twice}: {}", answer.body);
        assert_eq!(error_code(&answer), "[AmbiguousRequest]", "{twice}");
        assert!(answer.cookie("access_token").is_none());
    }
    // The login, the logout and the refresh: two targets, two hints, two applications.
    for twice in [
        format!("/app/login/{APP}?redirect_uri=/web&redirect_uri=//evil.example"),
        format!("/app/login/{APP}?idp_hint={IDP}&idp_hint={IDP}"),
        format!("/app/login?client_id={APP}&client_id={OTHER_APP}"),
        format!("/app/logout/{APP}?post_logout_redirect_uri=/&post_logout_redirect_uri=/x"),
    ] {
        let answer = Browser::default().open(&gw.url(&twice));
        assert_eq!(answer.status, 400, "{twice}: {}", answer.body);
        assert_eq!(error_code(&answer), "[AmbiguousRequest]", "{twice}");
    }
    let refresh = client()
        .post(gw.url(&format!("/app/refresh?client_id={APP}&client_id={APP}")))
        .send()
        .expect("send");
    assert_eq!(refresh.status().as_u16(), 400);
    // The same login, asked once, works.
    let answer = browser.open(&callback);
    assert_eq!(answer.status, 302, "{}", answer.body);
    assert!(answer.cookie("access_token").is_some());
}

#[test]
fn a_stale_tab_or_a_stray_callback_leaves_the_newest_login_intact() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();
    // Two tabs start a login: the second one's state cookie replaces the first's.
    let first = to_callback(&gw, &mut browser);
    let second = to_callback(&gw, &mut browser);
    // The first tab comes back: refused cleanly, and the second tab's login is kept.
    let stale = browser.open(&first);
    assert_eq!(stale.status, 400, "{}", stale.body);
    assert_eq!(error_code(&stale), "[InvalidState]");
    assert!(stale.cookie("gatehouse_login").is_none(), "kept");
    // A callback an attacker makes the browser open does not cancel the login either.
    let stray = browser.open(&gw.url("/app/callback?state=forged&code=attackers-code"));
    assert_eq!(stray.status, 400, "{}", stray.body);
    assert!(stray.cookie("gatehouse_login").is_none(), "kept");
    let done = browser.open(&second);
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/web");
    assert!(done.cookie("access_token").is_some());
    assert!(done
        .cookie("gatehouse_login")
        .is_some_and(|c| c.contains("Max-Age=0")));
    // Used: the same callback again is a replay.
    assert_eq!(browser.open(&second).status, 400);
}

#[test]
fn an_iss_the_provider_promises_must_be_sent() {
    // The provider's discovery says `authorization_response_iss_parameter_supported`
    // (RFC 9207 §3): an answer without `iss` may come from another provider (mix-up).
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();
    let callback = to_callback(&gw, &mut browser);
    let sent = params(&callback);
    let without = gw.url(&format!(
        "/app/callback?state={}&code={}",
        sent["state"], sent["code"]
    ));
    let answer = browser.clone().open(&without);
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(error_code(&answer), "[InvalidIssuer]");
    assert!(answer.cookie("access_token").is_none());
}

#[test]
fn overlong_parameters_are_refused_before_the_provider() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    // A state cookie over what browsers keep (4 KiB) would be dropped silently, and the login
    // would fail at the callback for no visible reason: refused at once, naming the field.
    let long = "a".repeat(3000);
    for (query, field) in [
        (format!("state={long}"), "state"),
        (format!("redirect_uri=/{long}"), "redirect_uri"),
    ] {
        let answer = Browser::default().open(&gw.url(&format!("/app/login/{APP}?{query}")));
        assert_eq!(answer.status, 400, "{field}: {}", answer.body);
        let body: Value = serde_json::from_str(&answer.body).expect("json");
        assert!(body["fieldErrors"][field].is_array(), "{}", answer.body);
        assert!(answer.cookie("gatehouse_login").is_none());
    }
    // Within the bounds, the app's state comes back as it was given.
    let state = "s".repeat(1000);
    let mut browser = Browser::default();
    let login = browser.open(&gw.url(&format!("/app/login/{APP}?redirect_uri=/web&state={state}")));
    assert_eq!(login.status, 302, "{}", login.body);
    assert!(login.cookie("gatehouse_login").expect("cookie").len() < 4000);
    let back = client().get(&login.location).send().expect("authorize");
    let callback = back.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let done = browser.open(&callback);
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, format!("/web?state={state}"));
}

#[test]
fn odd_paths_and_queries_survive_the_login_redirect() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    for path in [
        "/web/page?q=C%3A%5Cdir",
        "/web/page?text=one%0Atwo",
        "/web/page?next=%2F%2Fevil.example",
        "/web/page?a=%25&b=%",
        "/web/page?q=caf\u{e9}",
        "/web/page?x=\\y",
    ] {
        let mut browser = Browser::default();
        let (status, head) = raw(&gw, &format!("GET {path} HTTP/1.1\r\nAccept: text/html"));
        assert_eq!(status, 302, "{path}: {head}");
        let location = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("location: ")
                    .or(l.strip_prefix("Location: "))
            })
            .expect("location")
            .to_string();
        let login = browser.open(&gw.url(&location));
        assert_eq!(login.status, 302, "{path} → {location}: {}", login.body);
        let back = client().get(&login.location).send().expect("authorize");
        let callback = back.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_string();
        let done = browser.open(&callback);
        assert_eq!(done.status, 302, "{path}: {}", done.body);
        assert!(
            done.location.starts_with("/web/page?"),
            "{path}: {}",
            done.location
        );
        assert!(
            !done.location.contains(['\r', '\n', '\\']),
            "{}",
            done.location
        );
    }
}

#[test]
fn same_site_pages_cannot_log_out_or_refresh() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();
    let callback = to_callback(&gw, &mut browser);
    assert_eq!(browser.open(&callback).status, 302);
    // A sibling subdomain (same site, another origin) gets the Lax cookies on a link and on a
    // form POST; it is refused like another site.
    let logout = browser.send(
        client()
            .get(gw.url(&format!("/app/logout/{APP}")))
            .header("Sec-Fetch-Site", "same-site")
            .header("Referer", "https://blog.127.0.0.1.example/"),
    );
    assert_eq!(logout.status, 403, "{}", logout.body);
    assert_eq!(error_code(&logout), "[CrossSiteRequest]");
    let refresh = browser.send(
        client()
            .post(gw.url(&format!("/app/refresh/{APP}")))
            .header("Sec-Fetch-Site", "same-site"),
    );
    assert_eq!(refresh.status, 403, "{}", refresh.body);
    // The session is untouched, and the gateway's own pages can still log out.
    let me = browser.send(client().get(gw.url("/app/me")));
    assert_eq!(me.status, 200, "{}", me.body);
    let logout = browser.send(
        client()
            .get(gw.url(&format!("/app/logout/{APP}")))
            .header("Sec-Fetch-Site", "same-origin"),
    );
    assert_eq!(logout.status, 302, "{}", logout.body);
}

#[test]
fn methods_and_path_spellings_do_not_reach_the_routes() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();
    let callback = to_callback(&gw, &mut browser);
    assert_eq!(browser.open(&callback).status, 302);
    let token = browser.cookies["access_token"].clone();
    // A HEAD (a link preview, a prefetch) or a POST never logs out.
    for method in ["HEAD", "POST", "PUT", "DELETE"] {
        let (status, head) = raw(
            &gw,
            &format!("{method} /app/logout/{APP} HTTP/1.1\r\nCookie: access_token={token}\r\nContent-Length: 0"),
        );
        assert!(matches!(status, 404 | 405), "{method}: {head}");
    }
    for (method, path) in [
        ("POST", format!("/app/login/{APP}")),
        ("GET", format!("/app/refresh/{APP}")),
        ("POST", "/app/callback".to_string()),
        ("DELETE", "/app/me".to_string()),
    ] {
        let (status, head) = raw(
            &gw,
            &format!("{method} {path} HTTP/1.1\r\nContent-Length: 0"),
        );
        assert!(matches!(status, 404 | 405), "{method} {path}: {head}");
    }
    // Other spellings are not the routes, and are never proxied either.
    for path in [
        format!("/app/login/{APP}/"),
        format!("/app//login/{APP}"),
        format!("/app/login;x/{APP}"),
        format!("/app/login/{APP};x"),
        "/app/me/".to_string(),
        "/app/./me".to_string(),
    ] {
        let (status, head) = raw(&gw, &format!("GET {path} HTTP/1.1\r\nAccept: text/html"));
        assert!(
            matches!(status, 302 | 400 | 401 | 404),
            "{path}: {status} {head}"
        );
    }
    // The session is still there.
    let me = browser.send(client().get(gw.url("/app/me")));
    assert_eq!(me.status, 200, "{}", me.body);
}

#[test]
fn me_refuses_a_token_of_a_session_logged_out() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();
    let callback = to_callback(&gw, &mut browser);
    assert_eq!(browser.open(&callback).status, 302);
    let token = browser.cookies["access_token"].clone();
    assert_eq!(gw.get_as("/app/me", &token).status().as_u16(), 200);
    let logout = browser.send(client().get(gw.url(&format!("/app/logout/{APP}"))));
    assert_eq!(logout.status, 302);
    assert_eq!(gw.get_as("/app/me", &token).status().as_u16(), 401);
    let me = client()
        .get(gw.url("/app/me"))
        .header("Cookie", format!("access_token={token}"))
        .send()
        .expect("send");
    assert_eq!(me.status().as_u16(), 401);
}

/// Creates a provider through the API; returns its id.
fn create_provider(gw: &TestGateway, provider: Value) -> String {
    let created = client()
        .post(gw.url("/api/identity-provider"))
        .header("Authorization", API_KEY)
        .json(&json!({ "identityProvider": provider }))
        .send()
        .expect("send");
    let created = check_status(created, 200);
    created["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

#[test]
fn a_login_goes_only_to_an_enabled_oidc_provider_of_the_application() {
    let provider = Provider::start();
    let gw = gateway(&provider);
    let oauth2 = json!({"issuer": provider.issuer(), "client_id": CLIENT_ID,
                        "client_secret": CLIENT_SECRET});
    let disabled = create_provider(
        &gw,
        json!({"type": "OpenIDConnect", "name": "Off", "enabled": false, "oauth2": oauth2,
               "applicationConfiguration": {APP: {"enabled": true}}}),
    );
    let not_for_app = create_provider(
        &gw,
        json!({"type": "OpenIDConnect", "name": "Elsewhere", "enabled": true, "oauth2": oauth2,
               "applicationConfiguration": {APP: {"enabled": false}, OTHER_APP: {"enabled": true}}}),
    );
    let external = create_provider(
        &gw,
        json!({"type": "ExternalJWT", "name": "Ext", "enabled": true, "headerKeyParameter": "kid",
               "claimMap": {}, "applicationConfiguration": {APP: {"enabled": true}}}),
    );
    for (case, query) in [
        ("disabled", format!("/app/login/{APP}?idp_hint={disabled}")),
        (
            "not for the app",
            format!("/app/login/{APP}?idp_hint={not_for_app}"),
        ),
        (
            "External JWT",
            format!("/app/login/{APP}?idp_hint={external}"),
        ),
        ("not an id", format!("/app/login/{APP}?idp_hint=%3Cx%3E")),
        ("unknown application", format!("/app/login/{OTHER_TENANT}")),
        (
            "an application of no provider's",
            format!("/app/login/{OTHER_APP}?idp_hint={IDP}"),
        ),
        (
            "a client_id that is no id",
            "/app/login?client_id=..%2F..%2Fapi".to_string(),
        ),
    ] {
        let answer = Browser::default().open(&gw.url(&query));
        assert_eq!(answer.status, 400, "{case}: {}", answer.body);
        assert!(answer.location.is_empty(), "{case}");
        assert!(answer.cookie("gatehouse_login").is_none(), "{case}");
        assert!(!answer.body.contains("<x>"), "{case}");
    }
    // The one the application has is chosen without a page (the others do not count).
    let only = Browser::default().open(&gw.url(&format!("/app/login/{APP}")));
    assert_eq!(only.status, 302, "{}", only.body);
    assert!(only.location.starts_with(&provider.issuer()));
    // The application's other provider makes a page; what the request adds to it is escaped.
    let second = create_provider(
        &gw,
        json!({"type": "OpenIDConnect", "name": "<img src=x onerror=alert(1)>", "enabled": true,
               "buttonText": "\"><script>alert(1)</script>", "oauth2": oauth2,
               "applicationConfiguration": {APP: {"enabled": true}}}),
    );
    let (status, head) = raw(
        &gw,
        &format!("GET /app/login/{APP}?redirect_uri=/web&x=\"><script>alert(2)</script> HTTP/1.1\r\nAccept: text/html"),
    );
    // The server refuses such a request line before any route sees it.
    assert_eq!(status, 400, "{head}");
    assert!(
        !head.contains("<script") && !head.contains("<img"),
        "{head}"
    );
    let page = Browser::default().open(&gw.url(&format!(
        "/app/login/{APP}?redirect_uri=/web&x=%22%3E%3Cscript%3Ealert(2)%3C%2Fscript%3E"
    )));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        !page.body.contains("<script") && !page.body.contains("<img"),
        "{}",
        page.body
    );
    assert!(page.body.contains(&format!("idp_hint={second}")));
    assert!(page.set_cookies.is_empty(), "the page starts no login");
}
