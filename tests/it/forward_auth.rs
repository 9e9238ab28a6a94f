//! Forward-auth mode through the real binary: decisions asked in each front proxy's convention
//! (Traefik and Caddy `X-Forwarded-*`, nginx `X-Original-*`, Envoy's path prefix), refused to
//! untrusted peers, with the policy, identity headers, refresh cookies and login redirects of
//! the proxy path; the forward-auth headers never read on the proxy path; and real nginx and
//! Caddy, configured as the README's recipes, in front of a recording upstream.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use reqwest::blocking::{RequestBuilder, Response};
use serde_json::json;
use uuid::Uuid;

use super::kit::*;

/// The decision endpoint every test configures.
pub(super) const ENDPOINT: &str = "/_gatehouse/auth";
/// The login page of the routes that send browsers there.
pub(super) const LOGIN: &str = "https://login.example/login";

/// A gateway in forward-auth mode whose routes (the kit's, and these) proxy to `upstream`:
/// `/app` refreshes one-time-use tokens and names the login page, `/staff` (admins) and
/// `/hosted` (public, on `app.example` only) have no upstream: they are judged in decisions
/// only.
pub(super) fn gateway(upstream: &RecordingUpstream) -> TestGateway {
    gateway_with(upstream, None)
}

/// [`gateway`], with the one-time-use race window of `race_window_seconds`.
pub(super) fn gateway_with(
    upstream: &RecordingUpstream,
    race_window_seconds: Option<u64>,
) -> TestGateway {
    TestGateway::start_with(Options {
        race_window_seconds,
        upstream: Some(upstream.url()),
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse"
            .into(),
        extra: format!(
            "forwardAuth: {{path: {ENDPOINT}, trustedProxies: [127.0.0.1/32, '::1/128']}}\n"
        ),
        extra_routes: format!(
            "  - path: /app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true, loginUrl: \"{LOGIN}\"}}\n    identityHeaders: {{X-User-Id: sub, X-User-Roles: roles}}\n  - path: /app/staff\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true, roles: [admin]}}\n    identityHeaders: {{X-User-Id: sub}}\n  - path: /staff\n    auth: {{applicationId: {APP}, roles: [admin]}}\n    identityHeaders: {{X-User-Id: sub}}\n  - path: /hosted\n    host: app.example\n    auth: {{enabled: false}}\n"
        ),
        ..Default::default()
    })
}

/// A token of the main application with `roles`, for a new user.
pub(super) fn token(gw: &TestGateway, roles: &[&str]) -> (Uuid, String) {
    let user = Uuid::new_v4();
    (user, gw.token(Algorithm::RS256, &claims(user, APP, roles)))
}

/// An access token of `user` that expired 30 s ago.
pub(super) fn expired_token(gw: &TestGateway, user: &str) -> String {
    let mut claims = claims(Uuid::parse_str(user).expect("uuid"), APP, &["user"]);
    claims["exp"] = json!(now() - 30);
    claims["iat"] = json!(now() - 330);
    gw.token(Algorithm::RS256, &claims)
}

/// A decision asked in the Traefik/Caddy convention for `method` `uri` on `host`, which the
/// browser reached over http.
pub(super) fn traefik(gw: &TestGateway, method: &str, uri: &str, host: &str) -> RequestBuilder {
    traefik_over(gw, "http", method, uri, host)
}

/// A decision asked in the Traefik/Caddy convention, the browser on `proto`.
pub(super) fn traefik_over(
    gw: &TestGateway,
    proto: &str,
    method: &str,
    uri: &str,
    host: &str,
) -> RequestBuilder {
    client()
        .get(gw.url(ENDPOINT))
        .header("X-Forwarded-Method", method)
        .header("X-Forwarded-Proto", proto)
        .header("X-Forwarded-Host", host)
        .header("X-Forwarded-Uri", uri)
}

/// A decision asked in the nginx convention for `method` `uri`.
pub(super) fn nginx(gw: &TestGateway, method: &str, uri: &str) -> RequestBuilder {
    client()
        .get(gw.url(ENDPOINT))
        .header("X-Original-Method", method)
        .header("X-Original-URI", uri)
        .header("X-Forwarded-Host", "app.example")
}

/// A decision asked in Envoy's convention (`path_prefix`) for `uri`, with the request's method.
pub(super) fn envoy(gw: &TestGateway, method: reqwest::Method, uri: &str) -> RequestBuilder {
    client().request(method, gw.url(&format!("{ENDPOINT}{uri}")))
}

/// A header's one value as text, if present.
pub(super) fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Every `Set-Cookie` value of the response.
pub(super) fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

/// The value of cookie `name` among `Set-Cookie` values.
pub(super) fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        let (k, v) = c.split(';').next()?.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// Asserts an allowed decision (200, no body) and returns its response for its headers.
pub(super) fn allowed(request: RequestBuilder) -> Response {
    let response = request.send().expect("send");
    let status = response.status().as_u16();
    assert_eq!(
        status,
        200,
        "body: {:?}",
        header(&response, "content-length")
    );
    assert_eq!(header(&response, "content-length").as_deref(), Some("0"));
    response
}

/// Asserts a refusal with `status` and FusionAuth's Errors JSON; returns its first error code.
fn refused(request: RequestBuilder, status: u16) -> String {
    let body = check_status(request.send().expect("send"), status);
    body["generalErrors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no Errors JSON: {body}"))
        .to_string()
}

#[test]
fn each_convention_is_judged_like_a_proxied_request() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let (user, user_token) = token(&gw, &["user"]);
    let (_, admin_token) = token(&gw, &["admin"]);
    // Allowed, with the route's identity headers, in each convention.
    for request in [
        traefik(&gw, "POST", "/app/page?x=1", "app.example"),
        nginx(&gw, "DELETE", "/app/page"),
        envoy(&gw, reqwest::Method::PUT, "/app/page?x=1"),
    ] {
        let response = allowed(request.bearer_auth(&user_token));
        assert_eq!(header(&response, "x-user-id"), Some(user.to_string()));
        assert_eq!(header(&response, "x-user-roles").as_deref(), Some("user"));
        assert!(set_cookies(&response).is_empty());
    }
    // No token: 401 with the challenge; a token without the route's role: 403.
    for request in [
        traefik(&gw, "GET", "/app/page", "app.example"),
        nginx(&gw, "GET", "/app/page"),
        envoy(&gw, reqwest::Method::GET, "/app/page"),
    ] {
        let response = request.send().expect("send");
        assert_eq!(
            header(&response, "www-authenticate").as_deref(),
            Some("Bearer realm=\"gatehouse\"")
        );
        check_status(response, 401);
    }
    for request in [
        traefik(&gw, "GET", "/admin", "app.example"),
        nginx(&gw, "GET", "/admin"),
        envoy(&gw, reqwest::Method::GET, "/admin"),
    ] {
        assert_eq!(
            refused(request.bearer_auth(&user_token), 403),
            "[Forbidden]"
        );
    }
    // The canonical-path rules: `/public/../admin` is `/admin`, `/%61dmin` too.
    for uri in ["/public/../admin", "/%61dmin", "//admin/"] {
        let request = traefik(&gw, "GET", uri, "app.example").bearer_auth(&user_token);
        assert_eq!(refused(request, 403), "[Forbidden]", "{uri}");
        allowed(traefik(&gw, "GET", uri, "app.example").bearer_auth(&admin_token));
    }
    // A route used only for decisions, and a host's route chosen by the forwarded host.
    refused(nginx(&gw, "GET", "/staff/x").bearer_auth(&user_token), 403);
    allowed(nginx(&gw, "GET", "/staff/x").bearer_auth(&admin_token));
    allowed(traefik(&gw, "GET", "/hosted", "App.Example:80"));
    refused(traefik(&gw, "GET", "/hosted", "other.example"), 401);
    // Nothing of a decision went upstream.
    assert!(upstream.received().is_empty(), "{:?}", upstream.received());
}

#[test]
fn identity_headers_come_from_the_token_only() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    // A spoofed identity on a route that lets requests without a token through: nothing of it
    // comes back.
    let response = allowed(
        traefik(&gw, "GET", "/public/x", "app.example")
            .header("X-User-Id", "admin")
            .header("X-User-Roles", "admin"),
    );
    // Every identity header is there, empty: a front proxy copying it replaces the client's
    // own and never sends a template of its own in its place.
    assert_eq!(header(&response, "x-user-id").as_deref(), Some(""));
    assert_eq!(header(&response, "x-user-roles").as_deref(), Some(""));
    assert_eq!(header(&response, "x-user-email").as_deref(), Some(""));
    // With a token, its claims, whatever the request claimed.
    let (user, user_token) = token(&gw, &["user"]);
    let response = allowed(
        traefik(&gw, "GET", "/public/x", "app.example")
            .bearer_auth(&user_token)
            .header("X-User-Id", "admin"),
    );
    let ids: Vec<_> = response.headers().get_all("x-user-id").iter().collect();
    assert_eq!(ids, [user.to_string().as_str()]);
    // A credential the edge refuses as ambiguous is refused in a decision too.
    let request = traefik(&gw, "GET", "/app", "app.example")
        .bearer_auth(&user_token)
        .header(
            "Cookie",
            format!("access_token={}", token(&gw, &["user"]).1),
        );
    assert_eq!(refused(request, 400), "[AmbiguousRequest]");
}

#[test]
fn only_trusted_proxies_may_ask() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let (_, user_token) = token(&gw, &["user"]);
    // 127.0.0.2 is on this machine, but not in forwardAuth.trustedProxies.
    let untrusted = reqwest::blocking::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    for path in [ENDPOINT.to_string(), format!("{ENDPOINT}/app/page")] {
        let request = untrusted
            .get(gw.url(&path))
            .bearer_auth(&user_token)
            .header("X-Forwarded-Uri", "/app/page")
            .header("X-Forwarded-For", "127.0.0.1");
        assert_eq!(refused(request, 403), "[Forbidden]", "{path}");
    }
    // The same peer's proxied requests are served as ever.
    let response = untrusted
        .get(gw.url("/app/page"))
        .bearer_auth(&user_token)
        .send()
        .expect("send");
    check_status(response, 200);
}

#[test]
fn forward_auth_headers_are_never_read_on_the_proxy_path() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let (_, user_token) = token(&gw, &["user"]);
    let spoofed = |request: RequestBuilder| {
        request
            .bearer_auth(&user_token)
            .header("X-Forwarded-Uri", "/admin")
            .header("X-Original-URI", "/admin")
            .header("X-Forwarded-Method", "DELETE")
            .header("X-Original-Method", "DELETE")
            .header("X-Forwarded-Host", "app.example")
    };
    // Judged as the request it is, and the upstream gets none of them.
    let body = check_status(
        spoofed(client().get(gw.url("/public/x")))
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["target"], "/public/x");
    for name in [
        "x-forwarded-uri",
        "x-original-uri",
        "x-forwarded-method",
        "x-original-method",
        "x-forwarded-host",
    ] {
        assert!(body["headers"].get(name).is_none(), "{name}: {body}");
    }
    refused(
        client()
            .get(gw.url("/admin"))
            .bearer_auth(&user_token)
            .header("X-Forwarded-Uri", "/public"),
        403,
    );
    // `/hosted` is app.example's: an X-Forwarded-Host does not make this request one.
    refused(
        client()
            .get(gw.url("/hosted"))
            .header("X-Forwarded-Host", "app.example"),
        401,
    );
    // A route without an upstream is never proxied, whatever the token.
    let (_, admin_token) = token(&gw, &["admin"]);
    let request = client().get(gw.url("/staff/x")).bearer_auth(&admin_token);
    assert_eq!(refused(request, 404), "[NotFound]");
    assert_eq!(upstream.received(), ["/public/x"]);
}

#[test]
fn a_refresh_hands_its_cookies_to_the_front_proxy() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let session = gw.login("fwd-refresh@example.com", &["user"]);
    let expired = expired_token(&gw, &session.user_id);
    let response = allowed(
        traefik_over(&gw, "https", "GET", "/app/page", "app.example").header(
            "Cookie",
            format!(
                "access_token={expired}; refresh_token={}",
                session.refresh_token
            ),
        ),
    );
    assert_eq!(
        header(&response, "x-user-id"),
        Some(session.user_id.clone())
    );
    let cookies = set_cookies(&response);
    let access = cookie_value(&cookies, "access_token").expect("access_token cookie");
    let refresh = cookie_value(&cookies, "refresh_token").expect("refresh_token cookie");
    assert_ne!(access, expired);
    assert_ne!(refresh, session.refresh_token, "one-time use rotates");
    // Each cookie again in a header of its own, Secure: the browser came over https.
    let own = |name: &str| header(&response, name).expect("cookie header");
    let (access_header, refresh_header) = (
        own("x-gatehouse-set-cookie-access"),
        own("x-gatehouse-set-cookie-refresh"),
    );
    assert!(cookies.contains(&access_header) && cookies.contains(&refresh_header));
    assert!(access_header.contains("Secure") && refresh_header.contains("Secure"));
    // The access token's expiry for FusionAuth's SDKs, readable by scripts, in its header too.
    let at_exp = own("x-gatehouse-set-cookie-at-exp");
    assert!(cookies.contains(&at_exp), "{cookies:?}");
    assert!(
        at_exp.contains("Secure") && !at_exp.contains("HttpOnly"),
        "{at_exp}"
    );
    let seconds: i64 = cookie_value(&cookies, "app.at_exp")
        .expect("app.at_exp cookie")
        .parse()
        .expect("seconds");
    assert!(seconds > super::kit::now(), "{seconds}");
    // The new access token is a valid one; the retired refresh token is spent.
    allowed(traefik(&gw, "GET", "/app/page", "app.example").bearer_auth(&access));
    let reuse = traefik(&gw, "GET", "/app/page", "app.example")
        .header("Cookie", format!("refresh_token={}", session.refresh_token))
        .send()
        .expect("send");
    check_status(reuse, 401);
    // A refresh token the store does not know: both cookies cleared, each in its header too.
    let unknown = traefik(&gw, "GET", "/app/page", "app.example")
        .header("Cookie", "refresh_token=no-such-refresh-token")
        .send()
        .expect("send");
    let cleared = set_cookies(&unknown);
    assert!(
        cleared.iter().any(|c| c.starts_with("refresh_token=;")),
        "{cleared:?}"
    );
    assert!(
        cleared.iter().any(|c| c.starts_with("access_token=;")),
        "{cleared:?}"
    );
    let own = header(&unknown, "x-gatehouse-set-cookie-refresh").expect("cookie header");
    assert!(cleared.contains(&own));
    check_status(unknown, 401);
}

#[test]
fn browsers_are_sent_to_the_login_page() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let html = "text/html,application/xhtml+xml";
    // Traefik, Caddy and Envoy pass a 302 on to the browser.
    for request in [
        traefik(&gw, "GET", "/app/page", "app.example"),
        envoy(&gw, reqwest::Method::GET, "/app/page"),
    ] {
        let response = request.header("Accept", html).send().expect("send");
        assert_eq!(response.status().as_u16(), 302);
        assert_eq!(header(&response, "location").as_deref(), Some(LOGIN));
        assert_eq!(
            header(&response, "x-gatehouse-redirect").as_deref(),
            Some(LOGIN)
        );
    }
    // nginx turns anything but 2xx, 401 and 403 into a 500: a 401 naming the login page.
    let response = nginx(&gw, "GET", "/app/page")
        .header("Accept", html)
        .send()
        .expect("send");
    assert_eq!(
        header(&response, "x-gatehouse-redirect").as_deref(),
        Some(LOGIN)
    );
    assert!(header(&response, "www-authenticate").is_some());
    assert_eq!(header(&response, "location"), None);
    check_status(response, 401);
    // An API client gets the 401 and no login page.
    let response = traefik(&gw, "GET", "/app/page", "app.example")
        .send()
        .expect("send");
    assert_eq!(header(&response, "x-gatehouse-redirect"), None);
    check_status(response, 401);
}

#[test]
fn what_has_two_readings_is_refused() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let (_, admin_token) = token(&gw, &["admin"]);
    let ask = || client().get(gw.url(ENDPOINT)).bearer_auth(&admin_token);
    let on_app = || ask().header("X-Forwarded-Host", "app.example");
    for (request, code) in [
        (ask(), "[BadRequest]"),
        (ask().header("X-Forwarded-Uri", "/app"), "[BadRequest]"),
        (
            on_app()
                .header("X-Forwarded-Uri", "/app")
                .header("X-Forwarded-Uri", "/admin"),
            "[AmbiguousRequest]",
        ),
        (
            on_app()
                .header("X-Forwarded-Uri", "/app")
                .header("X-Original-URI", "/admin"),
            "[AmbiguousRequest]",
        ),
        (
            on_app()
                .header("X-Forwarded-Uri", "/app")
                .header("X-Forwarded-Method", "GET")
                .header("X-Original-Method", "POST"),
            "[AmbiguousRequest]",
        ),
        (
            on_app().header("X-Forwarded-Uri", "http://app.example/app"),
            "[BadRequest]",
        ),
        (on_app().header("X-Forwarded-Uri", "*"), "[BadRequest]"),
        (
            on_app()
                .header("X-Forwarded-Uri", "/app")
                .header("X-Forwarded-Method", "GE T"),
            "[BadRequest]",
        ),
        (
            on_app()
                .header("X-Forwarded-Uri", "/app")
                .header("X-Forwarded-Proto", "gopher"),
            "[BadRequest]",
        ),
        (
            ask()
                .header("X-Forwarded-Uri", "/app")
                .header("X-Forwarded-Host", "a..example"),
            "[AmbiguousRequest]",
        ),
        (
            ask()
                .header("X-Forwarded-Uri", "/app")
                .header("X-Forwarded-Host", "a.example")
                .header("X-Forwarded-Host", "b.example"),
            "[AmbiguousRequest]",
        ),
        (
            on_app().header("X-Forwarded-Uri", "/a/../../admin"),
            "[InvalidPath]",
        ),
        (
            envoy(&gw, reqwest::Method::GET, "/admin")
                .bearer_auth(&admin_token)
                .header("X-Forwarded-Uri", "/public"),
            "[AmbiguousRequest]",
        ),
    ] {
        assert_eq!(refused(request, 400), code);
    }
    // A request the app would echo back (cross-site tracing) is refused, whatever its case.
    for method in ["TRACE", "trace", "TRACK"] {
        let request = traefik(&gw, method, "/app", "app.example").bearer_auth(&admin_token);
        assert_eq!(refused(request, 405), "[MethodNotAllowed]", "{method}");
    }
    // Nothing went upstream.
    assert!(upstream.received().is_empty());
}

#[test]
fn a_store_outage_is_a_503_never_a_401_or_a_200() {
    let upstream = RecordingUpstream::start();
    let gw = gateway(&upstream);
    let session = gw.login("fwd-outage@example.com", &["user"]);
    let expired = expired_token(&gw, &session.user_id);
    let cookie = format!(
        "access_token={expired}; refresh_token={}",
        session.refresh_token
    );
    let conn = rusqlite::Connection::open(gw.store_path()).expect("open");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let response = traefik(&gw, "GET", "/app/page", "app.example")
        .header("Cookie", &cookie)
        .send()
        .expect("send");
    assert!(header(&response, "retry-after").is_some());
    assert!(
        set_cookies(&response).is_empty(),
        "cookies touched in an outage"
    );
    check_status(response, 503);
    conn.execute_batch("ROLLBACK").expect("unlock");
    // Nothing was consumed: the same cookies work once the store is back.
    allowed(traefik(&gw, "GET", "/app/page", "app.example").header("Cookie", &cookie));
}

// ------------------------------------------------------------------------------------------
// Real front proxies
// ------------------------------------------------------------------------------------------

/// A front proxy process started by a test, stopped (and its log shown on failure) on drop.
struct FrontProxy {
    name: &'static str,
    port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl FrontProxy {
    /// Starts `program` with `args` in a new temp dir, after `write_config` wrote its config
    /// there on `port`; waits until the port accepts connections.
    fn start(
        name: &'static str,
        program: &Path,
        args: impl Fn(&Path) -> Vec<String>,
        write_config: impl Fn(&Path, u16),
    ) -> FrontProxy {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        write_config(dir.path(), port);
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let child = Command::new(program)
            .args(args(dir.path()))
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut proxy = FrontProxy {
            name,
            port,
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{name} exited with {status}:\n{}", proxy.log());
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen:\n{}",
                proxy.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What the process wrote to its error log and stderr.
    fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{} log:\n{}", self.name, self.log());
        }
    }
}

/// The path of an installed program: the first of `candidates` that exists, or the one named
/// `name` on `PATH`. Panics with what to run when none is installed: these tests never skip.
fn installed(name: &str, candidates: &[&str]) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed (looked in {candidates:?} and PATH): run `bash scripts/bootstrap --tests`")
        })
}

/// The recipe under `heading` in the README (its first code block fenced as `fence`), with
/// Gatehouse's address (`127.0.0.1:9011`) and the app's (`127.0.0.1:8080`) moved to these
/// ports: the tests run exactly what the README shows.
fn readme_recipe(heading: &str, fence: &str, gatehouse: u16, app: u16) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).expect("README.md");
    let section = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README.md has no `{heading}`"))
        .1;
    let block = section
        .split_once(&format!("```{fence}\n"))
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("no ```{fence} block under `{heading}`"))
        .0;
    for address in ["127.0.0.1:9011", "127.0.0.1:8080"] {
        assert!(
            block.contains(address),
            "the {heading} recipe names no {address}"
        );
    }
    block
        .replace("127.0.0.1:9011", &format!("127.0.0.1:{gatehouse}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{app}"))
}

/// nginx with the README's recipe as its server, on `port`, its files in `dir`.
fn nginx_config(dir: &Path, port: u16, gatehouse: u16, app: u16) -> String {
    let recipe = readme_recipe("### nginx", "nginx", gatehouse, app);
    let dir = dir.display();
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
{recipe}
  }}
}}
"#
    )
}

/// Caddy with the README's recipe as its site, served on `port` over plain HTTP.
fn caddy_config(port: u16, gatehouse: u16, app: u16) -> String {
    let recipe = readme_recipe("### Caddy", "caddyfile", gatehouse, app);
    let site = "app.example.com {";
    assert!(recipe.starts_with(site), "the Caddy recipe's site changed");
    let recipe = recipe.replacen(site, &format!("http://:{port} {{\n\tbind 127.0.0.1"), 1);
    format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{recipe}\n")
}

/// Through a front proxy at `url` (a function of the path) in front of `app`, with Gatehouse
/// `gw` as its auth service: allowed with identity headers reaching the app (a client's own
/// replaced), refused without a token and for the policy, the refresh's cookies reaching the
/// browser, and a browser sent to the login page.
fn check_front_proxy(gw: &TestGateway, app: &RecordingUpstream, url: &dyn Fn(&str) -> String) {
    let http = client();
    let (user, user_token) = token(gw, &["user"]);
    let body = check_status(
        http.get(url("/app/page?x=1"))
            .bearer_auth(&user_token)
            .header("X-User-Id", "admin")
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(body["target"], "/app/page?x=1");
    assert_eq!(
        body["headers"]["x-user-id"],
        json!([user.to_string()]),
        "{body}"
    );
    assert_eq!(body["headers"]["x-user-roles"], json!(["user"]), "{body}");
    // Refused: no token, a role the route requires, a path that is /admin once canonical.
    let response = http.get(url("/app/page")).send().expect("send");
    assert_eq!(response.status().as_u16(), 401);
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .collect();
    assert_eq!(challenges, ["Bearer realm=\"gatehouse\""]);
    for path in ["/admin", "/public/../admin", "/%61dmin"] {
        let response = http
            .get(url(path))
            .bearer_auth(&user_token)
            .send()
            .expect("send");
        assert_eq!(response.status().as_u16(), 403, "{path}");
    }
    // A refresh: the app gets the identity, the browser both new cookies.
    let session = gw.login(&format!("{}@example.com", Uuid::new_v4()), &["user"]);
    let expired = expired_token(gw, &session.user_id);
    let response = http
        .get(url("/app/refreshed"))
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
    let body = check_status(response, 200);
    assert_eq!(
        body["headers"]["x-user-id"],
        json!([session.user_id]),
        "{body}"
    );
    let access = cookie_value(&cookies, "access_token").expect("access_token cookie");
    let refresh = cookie_value(&cookies, "refresh_token").expect("refresh_token cookie");
    assert_ne!(refresh, session.refresh_token);
    assert!(
        cookie_value(&cookies, "app.at_exp").is_some(),
        "app.at_exp reaches the browser: {cookies:?}"
    );
    check_status(
        http.get(url("/app/again"))
            .header(
                "Cookie",
                format!("access_token={access}; refresh_token={refresh}"),
            )
            .send()
            .expect("send"),
        200,
    );
    // A refresh for a request the policy then refuses (403): the browser still gets the new
    // pair, or the rotated one-time-use value would be lost with the session.
    let staff = gw.login(&format!("{}@example.com", Uuid::new_v4()), &["user"]);
    let expired = expired_token(gw, &staff.user_id);
    let response = http
        .get(url("/app/staff"))
        .header(
            "Cookie",
            format!(
                "access_token={expired}; refresh_token={}",
                staff.refresh_token
            ),
        )
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 403);
    let cookies = set_cookies(&response);
    let access = cookie_value(&cookies, "access_token").expect("access_token cookie on a 403");
    let refresh = cookie_value(&cookies, "refresh_token").expect("refresh_token cookie on a 403");
    assert_ne!(refresh, staff.refresh_token);
    check_status(
        http.get(url("/app/after-403"))
            .header(
                "Cookie",
                format!("access_token={access}; refresh_token={refresh}"),
            )
            .send()
            .expect("send"),
        200,
    );
    // A route that lets a request without a token through: the client's own identity headers
    // never reach the app (nothing, or an empty value, in their place).
    let body = check_status(
        http.get(url("/public/anonymous"))
            .header("X-User-Id", "admin")
            .send()
            .expect("send"),
        200,
    );
    let spoofed = body["headers"]["x-user-id"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(spoofed.iter().all(|v| v == ""), "{body}");
    // A browser without a session: to the login page; an API client: a 401.
    let response = http
        .get(url("/app/page"))
        .header("Accept", "text/html")
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 302);
    assert_eq!(header(&response, "location").as_deref(), Some(LOGIN));
    assert_eq!(
        app.received(),
        [
            "/app/page?x=1",
            "/app/refreshed",
            "/app/again",
            "/app/after-403",
            "/public/anonymous"
        ],
        "only allowed requests reach the app"
    );
}

#[test]
fn real_nginx_uses_gatehouse_as_its_auth_service() {
    let nginx = installed("nginx", &["/usr/sbin/nginx"]);
    let app = RecordingUpstream::start();
    let decisions = RecordingUpstream::start();
    let gw = gateway(&decisions);
    let (gatehouse, app_port) = (gw.port, app.port);
    let front = FrontProxy::start(
        "nginx",
        &nginx,
        |dir| {
            vec![
                "-p".into(),
                dir.display().to_string(),
                "-c".into(),
                dir.join("nginx.conf").display().to_string(),
                "-e".into(),
                dir.join("error.log").display().to_string(),
            ]
        },
        |dir, port| {
            let config = nginx_config(dir, port, gatehouse, app_port);
            std::fs::write(dir.join("nginx.conf"), config).expect("write nginx.conf");
        },
    );
    check_front_proxy(&gw, &app, &|path| front.url(path));
}

#[test]
fn real_caddy_uses_gatehouse_as_its_auth_service() {
    let caddy = installed("caddy", &["/usr/bin/caddy"]);
    let app = RecordingUpstream::start();
    let decisions = RecordingUpstream::start();
    let gw = gateway(&decisions);
    let (gatehouse, app_port) = (gw.port, app.port);
    let front = FrontProxy::start(
        "caddy",
        &caddy,
        |dir| {
            vec![
                "run".into(),
                "--adapter".into(),
                "caddyfile".into(),
                "--config".into(),
                dir.join("Caddyfile").display().to_string(),
            ]
        },
        |dir, port| {
            let config = caddy_config(port, gatehouse, app_port);
            std::fs::write(dir.join("Caddyfile"), config).expect("write Caddyfile");
        },
    );
    check_front_proxy(&gw, &app, &|path| front.url(path));
}
