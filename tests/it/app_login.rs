//! Browser login at the edge through the real binary: the hosted-backend routes (`/app/login`,
//! `/app/callback`, `/app/refresh`, `/app/me`, `/app/logout`) and `auth.login: true` routes,
//! driven by a plain HTTP client that keeps cookies like a browser, against the provider the
//! tests play ([`super::fake_oidc`]).

use std::collections::HashMap;

use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};

use super::fake_oidc::{self, Fault, Provider, CLIENT_ID, CLIENT_SECRET};
use super::kit::*;

const IDP: &str = "1b9c2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f";

/// A gateway whose `/web` route has `login: true`, with `provider` declared in the file.
fn gateway(provider: &Provider) -> TestGateway {
    gateway_for(&provider.issuer())
}

/// A gateway whose `/web` route has `login: true`, with the provider of `issuer` declared in
/// the file.
fn gateway_for(issuer: &str) -> TestGateway {
    TestGateway::start_with(login_options(issuer, "http://127.0.0.1:$PORT"))
}

/// The options of a gateway whose `/web` route has `login: true`, with the provider of `issuer`
/// declared in the file and browsers reaching it at `public_origin` (`$PORT`: its own port).
pub fn login_options(issuer: &str, public_origin: &str) -> Options {
    let extra = format!(
        r#"login:
  publicOrigin: {public_origin}
  redirects: [https://other.example]
identityProviders:
  - id: {IDP}
    type: OpenIDConnect
    name: Test SSO
    buttonText: Log in with Test SSO
    enabled: true
    oauth2: {{issuer: "{issuer}", client_id: {CLIENT_ID}, client_secret: "{CLIENT_SECRET}",
             clientAuthenticationMethod: client_secret_basic, scope: openid email offline_access}}
    linkingStrategy: LinkByEmail
    applicationConfiguration: {{{APP}: {{enabled: true, createRegistration: true}}}}
"#
    );
    Options {
        extra,
        identity_provider: "providerTimeoutMillis: 1000".into(),
        extra_routes: format!(
            "  - path: /web\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true, login: true}}\n    identityHeaders: {{X-User-Id: sub, X-User-Email: email, X-User-Roles: roles}}\n"
        ),
        ..Options::default()
    }
}

/// An answer: status, `Location`, every `Set-Cookie`, body.
pub struct Answer {
    pub status: u16,
    pub location: String,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn cookie(&self, name: &str) -> Option<&String> {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
    }
}

/// A client that keeps cookies by name, as a browser on one site does.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn send(&mut self, request: RequestBuilder) -> Answer {
        let cookie_line: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let request = if cookie_line.is_empty() {
            request
        } else {
            request.header("Cookie", cookie_line.join("; "))
        };
        let response = request.send().expect("send");
        let status = response.status().as_u16();
        let header = |n: &str| {
            response
                .headers()
                .get(n)
                .map(|v| v.to_str().expect("ascii").to_string())
        };
        let location = header("location").unwrap_or_default();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect();
        for line in &set_cookies {
            let pair = line.split(';').next().unwrap_or_default();
            let (name, value) = pair.split_once('=').expect("a cookie");
            if line.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let body = response.text().unwrap_or_default();
        Answer {
            status,
            location,
            set_cookies,
            body,
        }
    }

    /// A navigation to `url` (Accept: text/html).
    pub fn open(&mut self, url: &str) -> Answer {
        self.send(
            client()
                .get(url)
                .header("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
        )
    }
}

/// The query parameters of a URL.
pub fn params(url: &str) -> HashMap<String, String> {
    let parsed =
        reqwest::Url::parse(url).or_else(|_| reqwest::Url::parse(&format!("http://x{url}")));
    parsed.expect("url").query_pairs().into_owned().collect()
}

pub fn ann() -> Value {
    json!({"sub": "sso-ann", "email": "ann@example.com", "email_verified": true})
}

/// From `/app/login/…` to the provider's redirect back: returns the callback URL (on the
/// gateway) and the browser holding the login-state cookie.
pub fn to_callback(gw: &TestGateway, browser: &mut Browser, target: &str) -> String {
    let login = browser.open(&gw.url(&format!("/app/login/{APP}?redirect_uri={target}")));
    assert_eq!(login.status, 302, "{}", login.body);
    let at_provider = client().get(&login.location).send().expect("authorize");
    assert_eq!(at_provider.status().as_u16(), 302);
    at_provider.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string()
}

#[test]
fn a_browser_logs_in_uses_the_app_refreshes_and_logs_out() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();

    // A navigation without cookies goes to the login, with its path and query.
    let first = browser.open(&gw.url("/web/page?x=1"));
    assert_eq!(first.status, 302, "{}", first.body);
    assert_eq!(
        first.location,
        format!("/app/login/{APP}?redirect_uri=%2Fweb%2Fpage%3Fx%3D1")
    );

    // The login sends the browser to the provider with PKCE, state, nonce and consent.
    let login = browser.open(&gw.url(&first.location));
    assert_eq!(login.status, 302, "{}", login.body);
    assert!(login
        .location
        .starts_with(&format!("{}/authorize?", provider.issuer())));
    let sent = params(&login.location);
    assert_eq!(sent["response_type"], "code");
    assert_eq!(sent["client_id"], CLIENT_ID);
    assert_eq!(sent["redirect_uri"], gw.url("/app/callback"));
    assert_eq!(sent["code_challenge_method"], "S256");
    assert_eq!(sent["prompt"], "consent", "offline_access asks for consent");
    assert_eq!(sent["scope"], "openid email offline_access");
    assert!(sent["state"].len() >= 43 && sent["nonce"].len() >= 43);
    let state_cookie = login.cookie("gatehouse_login").expect("state cookie");
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/app/callback",
        "Max-Age=600",
    ] {
        assert!(state_cookie.contains(attribute), "{state_cookie}");
    }
    let with_state = browser.clone();

    // The provider logs the user in and sends the browser back.
    let back = client().get(&login.location).send().expect("authorize");
    let callback = back.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let done = browser.open(&callback);
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/web/page?x=1");
    let access = done.cookie("access_token").expect("access cookie");
    assert!(
        access.contains("HttpOnly") && access.contains("SameSite=Lax") && access.contains("Path=/")
    );
    assert!(done
        .cookie("refresh_token")
        .expect("refresh")
        .contains("HttpOnly"));
    let at_exp = done.cookie("app.at_exp").expect("at_exp");
    assert!(
        !at_exp.contains("HttpOnly"),
        "scripts read app.at_exp: {at_exp}"
    );
    let exp: i64 = browser.cookies["app.at_exp"].parse().expect("seconds");
    assert!(exp > now() && exp < now() + 400, "{exp}");
    assert!(done
        .cookie("gatehouse_login")
        .expect("cleared")
        .contains("Max-Age=0"));

    // The protected page, with the identity upstream.
    let page = browser.open(&gw.url("/web/page?x=1"));
    assert_eq!(page.status, 200, "{}", page.body);
    let echoed = page.json();
    assert_eq!(echoed["headers"]["x-user-email"], "ann@example.com");
    let user = echoed["headers"]["x-user-id"]
        .as_str()
        .expect("user")
        .to_string();

    // The same callback again, even with its cookie: refused (one use).
    let mut replay = with_state.clone();
    let again = replay.open(&callback);
    assert_eq!(again.status, 400, "{}", again.body);
    assert_eq!(again.json()["generalErrors"][0]["code"], "[InvalidState]");

    // Who am I.
    let me = browser.send(client().get(gw.url("/app/me")));
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json()["sub"], user.as_str());
    assert_eq!(me.json()["email"], "ann@example.com");
    assert_eq!(me.json()["applicationId"], APP);
    assert_eq!(
        client()
            .get(gw.url("/app/me"))
            .send()
            .expect("me")
            .status()
            .as_u16(),
        401
    );

    // Refresh with a text/plain body: new cookies.
    let before = browser.cookies["access_token"].clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let refreshed = browser.send(
        client()
            .post(gw.url(&format!("/app/refresh/{APP}")))
            .header("Content-Type", "text/plain")
            .body("x"),
    );
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert!(refreshed.cookie("app.at_exp").is_some());
    assert_ne!(browser.cookies["access_token"], before);
    let old_token = browser.cookies["access_token"].clone();

    // Logout: the session revoked, every cookie cleared, the provider's logout with the hint.
    let out = browser.open(&gw.url(&format!("/app/logout/{APP}?post_logout_redirect_uri=/bye")));
    assert_eq!(out.status, 302, "{}", out.body);
    let end = params(&out.location);
    assert!(
        out.location
            .starts_with(&format!("{}/logout?", provider.issuer())),
        "{}",
        out.location
    );
    assert_eq!(end["client_id"], CLIENT_ID);
    assert_eq!(end["post_logout_redirect_uri"], gw.url("/bye"));
    let id_token = provider
        .state
        .lock()
        .expect("lock")
        .id_tokens
        .last()
        .cloned()
        .expect("issued");
    assert_eq!(end["id_token_hint"], id_token);
    for name in ["access_token", "refresh_token", "app.at_exp", "app.idt"] {
        assert!(
            out.cookie(name).is_some_and(|c| c.contains("Max-Age=0")),
            "{name}: {:?}",
            out.set_cookies
        );
    }
    assert!(browser.cookies.is_empty(), "{:?}", browser.cookies);
    // The revoked session's access token is refused at once.
    let refused = client()
        .get(gw.url("/web/page"))
        .header("Authorization", format!("Bearer {old_token}"))
        .send()
        .expect("send");
    assert_eq!(refused.status().as_u16(), 401);

    // A second login of the same provider user is the same user; its link holds the
    // provider's newest refresh token.
    let mut second = Browser::default();
    let callback = to_callback(&gw, &mut second, "/web");
    assert_eq!(second.open(&callback).status, 302);
    let page = second.open(&gw.url("/web"));
    assert_eq!(page.json()["headers"]["x-user-id"], user.as_str());
    let links = client()
        .get(gw.url(&format!(
            "/api/identity-provider/link?identityProviderId={IDP}&userId={user}"
        )))
        .header("Authorization", API_KEY)
        .send()
        .expect("links");
    let links: Value = links.json().expect("json");
    assert_eq!(
        links["identityProviderLinks"][0]["token"],
        provider.last_refresh_token().as_str()
    );
    // No secret in the log.
    let log = gw.log();
    for secret in [CLIENT_SECRET, &provider.last_refresh_token(), &id_token] {
        assert!(!log.contains(secret), "a secret in the log");
    }
}

#[test]
fn apis_and_scripts_keep_their_401() {
    let provider = Provider::start();
    let gw = gateway(&provider);
    let html = "text/html";
    let cases: Vec<RequestBuilder> = vec![
        client()
            .get(gw.url("/web"))
            .header("Accept", "application/json"),
        client().get(gw.url("/web")),
        client()
            .get(gw.url("/web"))
            .header("Accept", html)
            .header("X-Requested-With", "XMLHttpRequest"),
        client()
            .get(gw.url("/web"))
            .header("Accept", html)
            .header("Sec-Fetch-Mode", "cors"),
        client().post(gw.url("/web")).header("Accept", html),
        // A route without login: true is unchanged.
        client().get(gw.url("/hello")).header("Accept", html),
    ];
    for request in cases {
        let response = request.send().expect("send");
        assert_eq!(response.status().as_u16(), 401);
        assert!(response.headers().get("location").is_none());
    }
}

#[test]
fn forged_replayed_or_missing_state_and_mixed_up_providers_are_refused() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let refused = |answer: &Answer, code: &str| {
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(
            answer.json()["generalErrors"][0]["code"],
            code,
            "{}",
            answer.body
        );
    };
    // No state cookie (an attacker's callback URL opened in the victim's browser).
    let mut attacker = Browser::default();
    let callback = to_callback(&gw, &mut attacker, "/web");
    refused(&Browser::default().open(&callback), "[InvalidState]");
    // Another browser's state cookie with this callback.
    let mut victim = Browser::default();
    let _ = to_callback(&gw, &mut victim, "/web");
    refused(&victim.clone().open(&callback), "[InvalidState]");
    // A tampered cookie.
    let mut tampered = attacker.clone();
    let value = tampered.cookies["gatehouse_login"].clone();
    let (payload, tag) = value.split_once('.').expect("signed");
    tampered
        .cookies
        .insert("gatehouse_login".into(), format!("{payload}x.{tag}"));
    refused(&tampered.open(&callback), "[InvalidState]");
    // A tampered state parameter.
    let state = params(&callback)["state"].clone();
    let altered = callback.replace(&state, &format!("{state}x"));
    refused(&attacker.clone().open(&altered), "[InvalidState]");
    // Mix-up: the answer names another issuer.
    provider.set_fault(Fault::MixUp);
    let mut mixed = Browser::default();
    let callback = to_callback(&gw, &mut mixed, "/web");
    refused(&mixed.open(&callback), "[InvalidIssuer]");
    provider.set_fault(Fault::None);
    // The provider's error answer.
    let mut denied = Browser::default();
    let callback = to_callback(&gw, &mut denied, "/web");
    let state = params(&callback)["state"].clone();
    let error = gw.url(&format!("/app/callback?error=access_denied&state={state}"));
    refused(&denied.open(&error), "[IdentityProviderError]");
    // The right flow still works, and a code already used is refused with another state.
    let mut first = Browser::default();
    let callback = to_callback(&gw, &mut first, "/web");
    assert_eq!(first.open(&callback).status, 302);
    let mut second = Browser::default();
    let fresh = to_callback(&gw, &mut second, "/web");
    let reused = fresh.replace(&params(&fresh)["code"], &params(&callback)["code"]);
    let answer = second.open(&reused);
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(
        answer.json()["generalErrors"][0]["code"],
        "[InvalidAuthorizationCode]"
    );
}

#[test]
fn bad_id_tokens_and_failing_providers_are_clear_errors() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let cases = [
        (Fault::WrongNonce, 401, "[InvalidIdToken]"),
        (Fault::WrongAudience, 401, "[InvalidIdToken]"),
        (Fault::WrongIssuer, 401, "[InvalidIdToken]"),
        (Fault::BadSignature, 401, "[InvalidIdToken]"),
        (Fault::AlgNone, 401, "[InvalidIdToken]"),
        (Fault::Down, 502, "[IdentityProviderUnreachable]"),
        (Fault::BadJson, 502, "[InvalidIdentityProviderResponse]"),
    ];
    for (fault, status, code) in cases {
        let mut browser = Browser::default();
        let callback = to_callback(&gw, &mut browser, "/web");
        provider.set_fault(fault);
        let answer = browser.open(&callback);
        provider.set_fault(Fault::None);
        assert_eq!(answer.status, status, "{fault:?}: {}", answer.body);
        assert_eq!(answer.json()["generalErrors"][0]["code"], code, "{fault:?}");
        assert!(answer.cookie("access_token").is_none(), "{fault:?}");
        assert!(answer
            .cookie("gatehouse_login")
            .is_some_and(|c| c.contains("Max-Age=0")));
    }
    let users = client()
        .get(gw.url("/api/user?email=ann@example.com"))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(
        users.status().as_u16(),
        404,
        "no refused login created a user"
    );
}

#[test]
fn open_redirects_are_refused() {
    let provider = Provider::start();
    let gw = gateway(&provider);
    for target in [
        "//evil.example",
        "/%5Cevil.example",
        "https:evil.example",
        "https://evil.example/",
        "/%2F%2Fevil.example",
        "%2F%5Cevil.example",
        "/x%0D%0ASet-Cookie:a=b",
        "javascript:alert(1)",
        "https://app.example@evil.example/",
    ] {
        // The parameter as sent: its encoded form (`%2F%2F…`) decodes to `//…` for the check.
        let login = client()
            .get(gw.url(&format!("/app/login/{APP}?redirect_uri={target}")))
            .send()
            .expect("send");
        assert_eq!(login.status().as_u16(), 400, "{target}");
        let body: Value = login.json().expect("json");
        assert_eq!(
            body["fieldErrors"]["redirect_uri"][0]["code"], "[invalid]redirect_uri",
            "{target}"
        );
        let logout = client()
            .get(gw.url(&format!(
                "/app/logout/{APP}?post_logout_redirect_uri={target}"
            )))
            .send()
            .expect("send");
        assert_eq!(logout.status().as_u16(), 400, "{target}");
    }
    // An allowed origin and a path are fine.
    for target in ["https://other.example/after", "/after?x=1"] {
        let encoded: String = url_encode(target);
        let login = client()
            .get(gw.url(&format!("/app/login/{APP}?redirect_uri={encoded}")))
            .send()
            .expect("send");
        assert_eq!(login.status().as_u16(), 302, "{target}");
    }
}

fn url_encode(text: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", text)])
        .expect("url")
        .query()
        .expect("query")[2..]
        .to_string()
}

#[test]
fn cross_site_refresh_and_logout_change_nothing() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();
    let callback = to_callback(&gw, &mut browser, "/web");
    assert_eq!(browser.open(&callback).status, 302);
    let refresh = gw.url(&format!("/app/refresh/{APP}"));
    let post = browser.send(
        client()
            .post(&refresh)
            .header("Origin", "https://evil.example")
            .body("x"),
    );
    assert_eq!(post.status, 403, "{}", post.body);
    assert_eq!(
        post.json()["generalErrors"][0]["code"],
        "[CrossSiteRequest]"
    );
    assert!(post.set_cookies.is_empty());
    let logout = gw.url(&format!("/app/logout/{APP}"));
    let out = browser.send(
        client()
            .get(&logout)
            .header("Sec-Fetch-Site", "cross-site")
            .header("Accept", "text/html"),
    );
    assert_eq!(out.status, 403, "{}", out.body);
    assert!(out.set_cookies.is_empty());
    // Still logged in; a same-origin refresh works.
    assert_eq!(browser.open(&gw.url("/web")).status, 200);
    // Without an access token, the refresh cookie is used before any redirect.
    let mut refresh_only = browser.clone();
    refresh_only.cookies.remove("access_token");
    let page = refresh_only.open(&gw.url("/web"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.cookie("access_token").is_some());
    // A refresh cookie that no longer works: cookies cleared and, for a page, the login.
    let mut stale = refresh_only.clone();
    stale.cookies.remove("access_token");
    stale
        .cookies
        .insert("refresh_token".into(), "unknown-value".into());
    let page = stale.open(&gw.url("/web"));
    assert_eq!(page.status, 302, "{}", page.body);
    assert!(page
        .location
        .starts_with(&format!("/app/login/{APP}?redirect_uri=")));
    assert!(page
        .cookie("refresh_token")
        .is_some_and(|c| c.contains("Max-Age=0")));
    let same = browser.send(
        client()
            .post(&refresh)
            .header("Origin", gw.url(""))
            .header("Sec-Fetch-Site", "same-origin"),
    );
    assert_eq!(same.status, 200, "{}", same.body);
    // Without the refresh cookie: 400, log in again.
    let none = Browser::default().send(client().post(&refresh));
    assert_eq!(none.status, 400);
}

#[test]
fn several_providers_get_a_page_to_choose_from() {
    let provider = Provider::start();
    let gw = gateway(&provider);
    let second = json!({"identityProvider": {"type": "OpenIDConnect", "name": "Second <SSO>", "enabled": true,
        "oauth2": {"issuer": provider.issuer(), "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
        "applicationConfiguration": {APP: {"enabled": true}}}});
    let created = client()
        .post(gw.url("/api/identity-provider"))
        .header("Authorization", API_KEY)
        .json(&second)
        .send()
        .expect("send");
    assert_eq!(created.status().as_u16(), 200);
    let id = created.json::<Value>().expect("json")["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let page = Browser::default().open(&gw.url(&format!("/app/login/{APP}?redirect_uri=%2Fweb")));
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Log in with Test SSO"), "{}", page.body);
    assert!(page.body.contains("Second &lt;SSO&gt;"), "{}", page.body);
    assert!(page.body.contains(&format!("idp_hint={id}")));
    assert!(page.body.contains("<html lang=\"en\">"));
    let hinted = Browser::default().open(&gw.url(&format!(
        "/app/login/{APP}?redirect_uri=%2Fweb&idp_hint={IDP}"
    )));
    assert_eq!(hinted.status, 302);
    let unknown =
        Browser::default().open(&gw.url(&format!("/app/login/{APP}?idp_hint={OTHER_APP}")));
    assert_eq!(unknown.status, 400);
}

#[test]
fn check_reports_login_routes_without_what_they_need() {
    let provider = Provider::start();
    let gw = gateway(&provider);
    let text = gw.config_text(&Options {
        extra: "login:\n  basePath: /api/x\n  redirects: [https://ok.example, https:evil]\n".into(),
        extra_routes: format!("  - path: /web\n    upstream: http://127.0.0.1:1\n    auth: {{applicationId: {OTHER_APP}, login: true}}\n"),
        ..Options::default()
    });
    let path = gw.dir.path().join("login.yaml");
    std::fs::write(&path, text).expect("write");
    let (code, _, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("path")],
        gw.dir.path(),
    );
    assert_eq!(code, 1, "{stderr}");
    for expected in [
        "login.publicOrigin: is required",
        "login.basePath: must not be under /api",
        "login.redirects[1]: must be an",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    assert!(stderr.contains("(line "), "{stderr}");
    let _ = fake_oidc::s256("x");
    // With the origin right, the route without a provider for its application is named.
    let text = gw.config_text(&Options {
        extra: "login: {publicOrigin: https://app.example}\n".into(),
        extra_routes: format!("  - path: /web\n    upstream: http://127.0.0.1:1\n    auth: {{applicationId: {OTHER_APP}, login: true}}\n"),
        ..Options::default()
    });
    std::fs::write(&path, text).expect("write");
    let (code, _, stderr) = run_cli(
        &["check", "--config", path.to_str().expect("path")],
        gw.dir.path(),
    );
    // A warning, not an error: the provider may be created through the API, which check
    // cannot see (the gateway warns at start when the store has none either).
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr
            .contains("warning: routes[4].auth.login: no enabled OpenIDConnect identity provider"),
        "{stderr}"
    );
    assert!(
        stderr.contains("providers created through the API are not seen by check"),
        "{stderr}"
    );
}

/// The npm `oidc-provider` (a certified OpenID Provider) on `port`, for the client the
/// gateway is, stopped on drop. Its output stays open while it runs (a closed pipe would end
/// it at its next line).
struct RealProvider(
    std::process::Child,
    #[allow(dead_code)] std::io::BufReader<std::process::ChildStdout>,
);

impl RealProvider {
    fn start(port: u16, redirect_uri: &str, post_logout: &str) -> RealProvider {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = repo.join("target/oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "run `scripts/bootstrap --tests` (it installs oidc-provider in target/oidc-provider)"
        );
        let mut child = std::process::Command::new("node")
            .arg(repo.join("tests/oidc/provider.mjs"))
            .args([&port.to_string(), CLIENT_SECRET, redirect_uri, post_logout])
            .env("OIDC_PROVIDER_DIR", &dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("node");
        let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).expect("ready");
        assert_eq!(line.trim(), "ready");
        RealProvider(child, out)
    }
}

impl Drop for RealProvider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The form of an HTML page: its action and its inputs' names and values.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let attribute = |tag: &str, name: &str| {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[start..].split('"').next()?.replace("&amp;", "&"))
    };
    let form_at = html.find("<form").expect("a form");
    let form = &html[form_at..];
    let action = attribute(&form[..form.find('>').expect("tag")], "action").expect("action");
    let inputs = form
        .split("<input")
        .skip(1)
        .filter_map(|tag| {
            let tag = &tag[..tag.find('>')?];
            Some((
                attribute(tag, "name")?,
                attribute(tag, "value").unwrap_or_default(),
            ))
        })
        .collect();
    (action, inputs)
}

/// Follows the provider's redirects and fills its forms (the development login, any user; the
/// consent) until it sends the browser back to `until`; returns that URL.
fn through_provider(browser: &mut Browser, issuer: &str, start: &str, until: &str) -> String {
    let mut next = browser.open(start);
    for _ in 0..12 {
        if (300..400).contains(&next.status) {
            let location = if next.location.starts_with('/') {
                format!("{issuer}{}", next.location)
            } else {
                next.location.clone()
            };
            if location.starts_with(until) {
                return location;
            }
            next = browser.open(&location);
            continue;
        }
        assert_eq!(next.status, 200, "{}", next.body);
        let (action, mut fields) = form_of(&next.body);
        fields.retain(|(name, _)| name != "login" && name != "password");
        fields.push(("login".into(), "ann".into()));
        fields.push(("password".into(), "any".into()));
        let url = if action.starts_with('/') {
            format!("{issuer}{action}")
        } else {
            action
        };
        next = browser.send(client().post(&url).form(&fields));
    }
    panic!("the provider never sent the browser back");
}

#[test]
fn a_real_openid_provider_logs_a_browser_in_and_out() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let gw = gateway_for(&issuer);
    let _provider = RealProvider::start(port, &gw.url("/app/callback"), &gw.url("/bye"));
    let mut browser = Browser::default();
    let first = browser.open(&gw.url("/web/page"));
    assert_eq!(first.status, 302);
    let login = browser.open(&gw.url(&first.location));
    assert_eq!(login.status, 302, "{}", login.body);
    let callback = through_provider(
        &mut browser,
        &issuer,
        &login.location,
        &gw.url("/app/callback"),
    );
    assert_eq!(
        params(&callback)["iss"],
        issuer,
        "the provider names itself (RFC 9207)"
    );
    let done = browser.open(&callback);
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/web/page");
    let page = browser.open(&gw.url("/web/page"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-user-email"], "ann@example.com");
    // The provider issued a refresh token (offline_access with consent): the link holds it.
    let user = page.json()["headers"]["x-user-id"]
        .as_str()
        .expect("user")
        .to_string();
    let links: Value = client()
        .get(gw.url(&format!(
            "/api/identity-provider/link?identityProviderId={IDP}&userId={user}"
        )))
        .header("Authorization", API_KEY)
        .send()
        .expect("links")
        .json()
        .expect("json");
    assert!(
        links["identityProviderLinks"][0]["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{links}"
    );
    // Logout goes to the provider's end_session_endpoint, which accepts the hint and returns
    // the browser to the gateway.
    let out = browser.open(&gw.url(&format!("/app/logout/{APP}?post_logout_redirect_uri=/bye")));
    assert_eq!(out.status, 302, "{}", out.body);
    assert!(
        out.location.starts_with(&format!("{issuer}/session/end?")),
        "{}",
        out.location
    );
    let back = through_provider(&mut browser, &issuer, &out.location, &gw.url("/bye"));
    assert!(back.starts_with(&gw.url("/bye")), "{back}");
    assert_eq!(browser.open(&gw.url("/web/page")).status, 302, "logged out");
}

/// Debian's Chromium, headless, driven through `chromedriver` (W3C WebDriver); the session and
/// the driver end on drop.
struct Chromium {
    driver: std::process::Child,
    base: String,
}

impl Chromium {
    fn start() -> Chromium {
        assert!(
            std::path::Path::new("/usr/bin/chromedriver").exists(),
            "run `scripts/bootstrap --tests` (it installs chromium and chromium-driver)"
        );
        let port = free_port();
        let driver = std::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let mut chromium = Chromium {
            driver,
            base: url.clone(),
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]}}}});
        for _ in 0..100 {
            if let Ok(response) = client()
                .post(format!("{url}/session"))
                .json(&capabilities)
                .send()
            {
                let body: Value = response.json().expect("json");
                let id = body["value"]["sessionId"]
                    .as_str()
                    .expect("a session")
                    .to_string();
                chromium.base = format!("{url}/session/{id}");
                return chromium;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("chromedriver did not start");
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => client().get(url),
            _ => client().post(url).json(&body),
        };
        let answer: Value = request.send().expect("webdriver").json().expect("json");
        answer["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url}));
    }

    fn url(&self) -> String {
        self.call("GET", "/url", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn source(&self) -> String {
        self.call("GET", "/source", Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The first element matching `css`, if any.
    fn find(&self, css: &str) -> Option<String> {
        let found = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found
            .as_object()?
            .values()
            .next()?
            .as_str()
            .map(str::to_string)
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).expect("the field");
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({"text": text}),
        );
    }

    fn click(&self, css: &str) {
        let element = self.find(css).expect("the button");
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// Fills the provider's forms (login, consent, logout confirmation) until the browser is on
    /// a page starting with `until`.
    fn through_provider(&self, until: &str) {
        for _ in 0..10 {
            if self.url().starts_with(until) {
                return;
            }
            if self.find("input[name=login]").is_some() {
                self.type_into("input[name=login]", "ann");
                self.type_into("input[name=password]", "any");
            }
            self.click("button[type=submit], button[autofocus], button");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        panic!("never reached {until}: at {}", self.url());
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = client().delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn chromium_logs_in_at_a_real_provider_and_out() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let gw = gateway_for(&issuer);
    let _provider = RealProvider::start(port, &gw.url("/app/callback"), &gw.url("/bye"));
    let chromium = Chromium::start();
    // A protected page without cookies: to the provider's login form.
    chromium.go(&gw.url("/web/page?from=chromium"));
    assert!(chromium.url().starts_with(&issuer), "{}", chromium.url());
    chromium.through_provider(&gw.url("/web/page"));
    assert_eq!(chromium.url(), gw.url("/web/page?from=chromium"));
    let source = chromium.source();
    assert!(source.contains("ann@example.com"), "{source}");
    assert!(source.contains("x-user-id"), "{source}");
    // Logout: through the provider's confirmation, back on the gateway, logged out.
    chromium.go(&gw.url(&format!("/app/logout/{APP}?post_logout_redirect_uri=/bye")));
    chromium.through_provider(&gw.url("/bye"));
    chromium.go(&gw.url("/web/page"));
    assert!(
        chromium.url().starts_with(&issuer),
        "logged out: {}",
        chromium.url()
    );
}

#[test]
fn chromium_shows_the_provider_page_and_follows_a_choice() {
    let provider = Provider::start();
    let gw = gateway(&provider);
    let second = json!({"identityProvider": {"type": "OpenIDConnect", "name": "Second", "enabled": true,
        "buttonText": "Log in with Second", "oauth2": {"issuer": provider.issuer(), "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET}, "applicationConfiguration": {APP: {"enabled": true}}}});
    let created = client()
        .post(gw.url("/api/identity-provider"))
        .header("Authorization", API_KEY)
        .json(&second)
        .send()
        .expect("send");
    assert_eq!(created.status().as_u16(), 200);
    let chromium = Chromium::start();
    chromium.go(&gw.url("/web"));
    assert!(
        chromium
            .url()
            .starts_with(&gw.url(&format!("/app/login/{APP}"))),
        "{}",
        chromium.url()
    );
    let source = chromium.source();
    assert!(
        source.contains("Log in with Test SSO") && source.contains("Log in with Second"),
        "{source}"
    );
    assert!(chromium
        .find("nav[aria-label='Identity providers'] a.idp")
        .is_some());
    // Choosing the first provider goes to its authorization endpoint (the test provider logs
    // no one in without a user set: it answers 400, which is enough to see where the link led).
    chromium.click(&format!("a[href*='idp_hint={IDP}']"));
    assert!(
        chromium
            .url()
            .starts_with(&format!("{}/authorize?", provider.issuer())),
        "{}",
        chromium.url()
    );
}
