//! Per-application settings of an OpenID Connect provider (`applicationConfiguration[…]`:
//! `buttonText`, `buttonImageURL`, `oauth2.client_id`, `oauth2.client_secret`, `oauth2.scope`)
//! through the real binary: two applications on one provider, each with its own scope, button
//! and client, in the browser login, the provider-choice page and the API login; their
//! validation and the redaction of their secrets.

use serde_json::{json, Value};

use super::app_login::{ann, login_options, params, Browser};
use super::fake_oidc::{Provider, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, VERIFIER};
use super::kit::*;

/// The provider of [`login_options`].
const IDP: &str = "1b9c2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f";
/// A second provider (same issuer), so the login without a hint shows the choice page.
const SECOND_IDP: &str = "2b9c2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f";
/// The client `OTHER_APP` logs in with, and its secret (with characters form-urlencoding
/// changes).
const OTHER_CLIENT: &str = "gatehouse-other";
const OTHER_SECRET: &str = "other secret/+&=";

/// A gateway whose file declares the two providers: `APP` asks for the provider's scope with its
/// own button text; `OTHER_APP` asks for `openid profile` with its own client, text and image.
fn gateway(provider: &Provider) -> TestGateway {
    let mut options = login_options(&provider.issuer(), "http://127.0.0.1:$PORT");
    let apps = format!(
        "    applicationConfiguration:\n      {APP}: {{enabled: true, createRegistration: true, buttonText: Staff login}}\n      \
         {OTHER_APP}: {{enabled: true, createRegistration: true, buttonText: Customer login,\n        \
         buttonImageURL: \"https://cdn.example/customer.png\",\n        \
         oauth2: {{client_id: {OTHER_CLIENT}, client_secret: \"{OTHER_SECRET}\", scope: openid profile}}}}\n"
    );
    let original = format!(
        "    applicationConfiguration: {{{APP}: {{enabled: true, createRegistration: true}}}}\n"
    );
    assert!(options.extra.contains(&original), "{}", options.extra);
    options.extra = options.extra.replace(&original, &apps);
    options.extra.push_str(&format!(
        r#"  - id: {SECOND_IDP}
    type: OpenIDConnect
    name: Second SSO
    buttonText: Log in with Second SSO
    enabled: true
    oauth2: {{issuer: "{}", client_id: {CLIENT_ID}, client_secret: "{CLIENT_SECRET}"}}
    applicationConfiguration:
      {APP}: {{enabled: true}}
      {OTHER_APP}: {{enabled: true, buttonText: Second for customers}}
"#,
        provider.issuer()
    ));
    TestGateway::start_with(options)
}

/// The query of the authorization request `GET /app/login/{app}` sends the browser to.
fn authorization_request(gw: &TestGateway, browser: &mut Browser, app: &str) -> String {
    let login = browser.open(&gw.url(&format!("/app/login/{app}?idp_hint={IDP}")));
    assert_eq!(login.status, 302, "{}", login.body);
    login.location
}

#[test]
fn each_application_asks_for_its_own_scope_with_its_own_client() {
    let provider = Provider::start();
    provider.register_client(OTHER_CLIENT, OTHER_SECRET);
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);

    let staff = params(&authorization_request(&gw, &mut Browser::default(), APP));
    assert_eq!(staff["scope"], "openid email offline_access", "{staff:?}");
    assert_eq!(staff["client_id"], CLIENT_ID);
    assert_eq!(staff.get("prompt").map(String::as_str), Some("consent"));

    let mut browser = Browser::default();
    let location = authorization_request(&gw, &mut browser, OTHER_APP);
    let customer = params(&location);
    assert_eq!(customer["scope"], "openid profile", "{customer:?}");
    assert_eq!(customer["client_id"], OTHER_CLIENT);
    assert_eq!(
        customer.get("prompt"),
        None,
        "no offline_access, no consent prompt"
    );

    // The login completes with the application's client at the token endpoint (the provider
    // binds the code to the client that asked, and the ID token's audience is that client).
    let at_provider = client().get(&location).send().expect("authorize");
    assert_eq!(at_provider.status().as_u16(), 302);
    let callback = at_provider.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let done = browser.open(&callback);
    assert_eq!(done.status, 302, "{}", done.body);
    assert!(
        done.cookie("access_token").is_some(),
        "{:?}",
        done.set_cookies
    );
    let state = provider.state.lock().expect("lock");
    assert_eq!(state.token_clients, [OTHER_CLIENT]);
}

/// The choice page `GET /app/login/{app}` shows (no hint): its body and its
/// Content-Security-Policy.
fn choice_page(gw: &TestGateway, app: &str) -> (String, String) {
    let answer = client()
        .get(gw.url(&format!("/app/login/{app}")))
        .header("Accept", "text/html")
        .send()
        .expect("send");
    assert_eq!(answer.status().as_u16(), 200);
    let policy = answer.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    (answer.text().expect("body"), policy)
}

#[test]
fn the_choice_page_shows_each_application_its_own_buttons() {
    let provider = Provider::start();
    let gw = gateway(&provider);

    let (staff, policy) = choice_page(&gw, APP);
    assert!(staff.contains(">Staff login</a>"), "{staff}");
    assert!(staff.contains(">Log in with Second SSO</a>"), "{staff}");
    assert!(
        !staff.contains("Customer") && !staff.contains("<img"),
        "{staff}"
    );
    assert_eq!(policy, "default-src 'none'; frame-ancestors 'none'");

    let (customer, policy) = choice_page(&gw, OTHER_APP);
    assert!(
        customer.contains(
            "<img src=\"https://cdn.example/customer.png\" alt=\"\" height=\"24\"> Customer login</a>"
        ),
        "{customer}"
    );
    assert!(customer.contains(">Second for customers</a>"), "{customer}");
    assert!(!customer.contains("Staff login"), "{customer}");
    assert_eq!(
        policy,
        "default-src 'none'; img-src https://cdn.example; frame-ancestors 'none'"
    );
}

fn api(gw: &TestGateway, method: reqwest::Method, path: &str, body: Option<&Value>) -> Value {
    let mut request = client()
        .request(method, gw.url(path))
        .header("Authorization", API_KEY);
    if let Some(body) = body {
        request = request.json(body);
    }
    let answer = request.send().expect("send");
    let status = answer.status().as_u16();
    let text = answer.text().expect("body");
    json!({"status": status, "text": text,
           "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)})
}

#[test]
fn the_api_login_uses_each_applications_client_and_hides_its_secret() {
    let provider = Provider::start();
    provider.register_client(OTHER_CLIENT, OTHER_SECRET);
    let gw = TestGateway::start();
    let body = json!({"identityProvider": {
        "type": "OpenIDConnect", "name": "Test SSO", "enabled": true,
        "oauth2": {"issuer": provider.issuer(), "client_id": CLIENT_ID,
                   "client_secret": CLIENT_SECRET, "scope": "openid email"},
        "applicationConfiguration": {
            APP: {"enabled": true},
            OTHER_APP: {"enabled": true, "buttonText": "Customers",
                        "oauth2": {"client_id": OTHER_CLIENT, "client_secret": OTHER_SECRET,
                                   "scope": "openid profile"}}}}});
    let created = api(
        &gw,
        reqwest::Method::POST,
        "/api/identity-provider",
        Some(&body),
    );
    assert_eq!(created["status"], 200, "{created}");
    let idp = created["body"]["identityProvider"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let shown = api(
        &gw,
        reqwest::Method::GET,
        &format!("/api/identity-provider/{idp}"),
        None,
    );
    let other = &shown["body"]["identityProvider"]["applicationConfiguration"][OTHER_APP];
    assert_eq!(other["oauth2"]["client_secret"], "********", "{shown}");
    assert_eq!(other["oauth2"]["scope"], "openid profile");
    assert!(!shown["text"].as_str().expect("text").contains(OTHER_SECRET));

    let log_in = |app: &str, code: &str| {
        let data = json!({"code": code, "redirect_uri": REDIRECT_URI, "code_verifier": VERIFIER});
        let answer = client()
            .post(gw.url("/api/identity-provider/login"))
            .json(&json!({"applicationId": app, "identityProviderId": idp, "data": data}))
            .send()
            .expect("send");
        answer.status().as_u16()
    };
    let code = provider.code_for_client("sso-ann", ann(), OTHER_CLIENT);
    assert_eq!(log_in(OTHER_APP, &code), 200);
    let code = provider.code_for("sso-ann", None, ann());
    assert_eq!(log_in(APP, &code), 200);
    // A code issued to one application's client is not redeemed with another's.
    let code = provider.code_for_client("sso-ann", ann(), OTHER_CLIENT);
    assert_ne!(log_in(APP, &code), 200);
    let state = provider.state.lock().expect("lock");
    assert_eq!(state.token_clients, [OTHER_CLIENT, CLIENT_ID]);
}

#[test]
fn overrides_of_the_wrong_type_are_named_by_their_path() {
    let gw = TestGateway::start();
    let body = json!({"identityProvider": {
        "type": "OpenIDConnect", "name": "Bad SSO", "enabled": true,
        "oauth2": {"issuer": "https://sso.example.com", "client_id": CLIENT_ID,
                   "client_secret": CLIENT_SECRET},
        "applicationConfiguration": {
            OTHER_APP: {"enabled": true, "buttonText": 5,
                        "buttonImageURL": "javascript:alert(1)",
                        "oauth2": {"client_id": ["x"], "client_secret": 7, "scope": {"a": 1}}}}}});
    let refused = api(
        &gw,
        reqwest::Method::POST,
        "/api/identity-provider",
        Some(&body),
    );
    assert_eq!(refused["status"], 400, "{refused}");
    let base = format!("identityProvider.applicationConfiguration[{OTHER_APP}]");
    let fields = refused["body"]["fieldErrors"]
        .as_object()
        .expect("fieldErrors");
    for path in [
        "buttonText",
        "buttonImageURL",
        "oauth2.client_id",
        "oauth2.client_secret",
        "oauth2.scope",
    ] {
        let key = format!("{base}.{path}");
        let errors = fields
            .get(&key)
            .unwrap_or_else(|| panic!("{key} in {refused}"));
        assert_eq!(errors[0]["code"], format!("[invalid]{key}"), "{refused}");
    }
    assert!(!refused["text"]
        .as_str()
        .expect("text")
        .contains("javascript"));
}

#[test]
fn logout_under_another_application_ends_this_browsers_session_with_its_own_client() {
    let provider = Provider::start();
    provider.register_client(OTHER_CLIENT, OTHER_SECRET);
    provider.log_in_as("sso-ann", ann());
    let gw = gateway(&provider);
    let mut browser = Browser::default();
    let location = authorization_request(&gw, &mut browser, OTHER_APP);
    let at_provider = client().get(&location).send().expect("authorize");
    let callback = at_provider.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert_eq!(browser.open(&callback).status, 302);
    let refresh = browser.cookies["refresh_token"].clone();
    let id_token = provider.state.lock().expect("lock").id_tokens[0].clone();

    // The session was made for OTHER_APP; the logout link of APP still ends it.
    let out = browser.open(&gw.url(&format!("/app/logout/{APP}?post_logout_redirect_uri=/bye")));
    assert_eq!(out.status, 302, "{}", out.body);
    assert!(out
        .location
        .starts_with(&format!("{}/logout?", provider.issuer())));
    let end = params(&out.location);
    assert_eq!(
        end["client_id"], OTHER_CLIENT,
        "the client the ID token was issued to"
    );
    assert_eq!(end["id_token_hint"], id_token);
    for name in ["access_token", "refresh_token", "app.at_exp"] {
        let cleared = out.cookie(name).unwrap_or_else(|| panic!("{name} cleared"));
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
    }
    let refreshed = client()
        .post(gw.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": refresh}))
        .send()
        .expect("send");
    assert_ne!(
        refreshed.status().as_u16(),
        200,
        "the session's refresh token is revoked"
    );

    // Without a live session, the provider's logout goes with the path's application's client.
    let mut stale = Browser::default();
    stale.cookies.insert("refresh_token".into(), refresh);
    let kept = format!("{IDP}:{id_token}");
    stale.cookies.insert("app.idt".into(), kept);
    let out = stale.open(&gw.url(&format!("/app/logout/{APP}")));
    assert_eq!(
        params(&out.location)["client_id"],
        CLIENT_ID,
        "{}",
        out.location
    );
}
