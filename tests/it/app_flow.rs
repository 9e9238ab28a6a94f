//! The browser login's reconcile and linking steps through the real binary: the provider's
//! `OpenIDReconcile` lambda maps a userinfo claim (`roles`) to the registration's roles, which a
//! route's role policy then lets through, with the identity headers showing them.

use serde_json::{json, Value};

use super::app_login::{login_options, Browser};
use super::fake_oidc::Provider;
use super::kit::*;

const LAMBDA: &str = "5a7c3e10-2b4d-4f6a-8c9e-0d1f2a3b4c5d";

/// A gateway whose file declares the provider of `provider` with a reconcile lambda mapping
/// the userinfo `roles` to the registration, and a `/staff` route (`login: true`) for admins.
fn gateway_with_lambda(provider: &Provider) -> TestGateway {
    let mut options = login_options(&provider.issuer(), "http://127.0.0.1:$PORT");
    options.extra = options.extra.replace(
        "    linkingStrategy: LinkByEmail\n",
        &format!("    linkingStrategy: LinkByEmail\n    lambdaConfiguration: {{reconcileId: {LAMBDA}}}\n"),
    );
    options.extra.push_str(&format!(
        r#"lambdas:
  - id: {LAMBDA}
    name: Provider roles
    type: OpenIDReconcile
    enabled: true
    body: "function reconcile(user, registration, jwt, id_token, tokens) {{ registration.roles = jwt.roles || []; user.data = {{sso: id_token.sub}}; }}"
"#
    ));
    options.extra_routes.push_str(&format!(
        "  - path: /staff\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, roles: [admin], login: true}}\n    identityHeaders: {{X-User-Id: sub, X-User-Email: email, X-User-Roles: roles}}\n"
    ));
    TestGateway::start_with(options)
}

/// From a navigation to `path` without cookies, through the provider, back to `path`: the
/// answer of the page.
fn log_in_through_the_browser(gw: &TestGateway, browser: &mut Browser, path: &str) -> Value {
    let first = browser.open(&gw.url(path));
    assert_eq!(first.status, 302, "{}", first.body);
    let login = browser.open(&gw.url(&first.location));
    assert_eq!(login.status, 302, "{}", login.body);
    let at_provider = client().get(&login.location).send().expect("authorize");
    let callback = at_provider.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    let done = browser.open(&callback);
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, path);
    let page = browser.open(&gw.url(path));
    json!({"status": page.status, "body": page.json()})
}

#[test]
fn the_reconcile_lambda_maps_provider_roles_that_the_route_policy_lets_through() {
    let provider = Provider::start();
    let gw = gateway_with_lambda(&provider);
    provider.log_in_as(
        "sso-ann",
        json!({"sub": "sso-ann", "email": "ann@example.com", "email_verified": true,
               "roles": ["admin", "editor"]}),
    );
    let mut ann = Browser::default();
    let page = log_in_through_the_browser(&gw, &mut ann, "/staff/board");
    assert_eq!(page["status"], 200, "{page}");
    let headers = &page["body"]["headers"];
    assert_eq!(headers["x-user-email"], "ann@example.com", "{page}");
    assert_eq!(headers["x-user-roles"], "admin,editor", "{page}");
    // The user as the lambda left it.
    let user = check_status(
        client()
            .get(gw.url("/api/user?email=ann@example.com"))
            .header("Authorization", API_KEY)
            .send()
            .expect("send"),
        200,
    );
    assert_eq!(user["user"]["data"]["sso"], "sso-ann", "{user}");
    assert_eq!(
        user["user"]["registrations"][0]["roles"],
        json!(["admin", "editor"])
    );

    // A provider user without the role: logged in, refused by the policy.
    provider.log_in_as(
        "sso-bob",
        json!({"sub": "sso-bob", "email": "bob@example.com", "email_verified": true,
               "roles": ["editor"]}),
    );
    let mut bob = Browser::default();
    let page = log_in_through_the_browser(&gw, &mut bob, "/staff/board");
    assert_eq!(page["status"], 403, "{page}");
    // The same session opens the routes the role allows.
    let web = bob.open(&gw.url("/web/page"));
    assert_eq!(web.status, 200, "{}", web.body);
    assert_eq!(web.json()["headers"]["x-user-roles"], "editor");
}

#[test]
fn a_pending_link_goes_back_to_the_app_which_completes_it_through_the_api() {
    let provider = Provider::start();
    let mut options = login_options(&provider.issuer(), "http://127.0.0.1:$PORT");
    options.extra = options.extra.replace(
        "linkingStrategy: LinkByEmail",
        "linkingStrategy: CreatePendingLink",
    );
    let gw = TestGateway::start_with(options);
    // The person already has an account here, under another email.
    let local = gw.login("ann.local@example.com", &["user"]);
    provider.log_in_as("sso-ann", super::app_login::ann());

    let mut browser = Browser::default();
    let back = to_the_app(&gw, &mut browser, "/web/done", "app-state");
    assert_eq!(back.status, 302, "{}", back.body);
    let sent = super::app_login::params(&back.location);
    assert!(back.location.starts_with("/web/done?"), "{}", back.location);
    assert_eq!(sent["state"], "app-state");
    let pending = sent["pendingIdPLinkId"].clone();
    assert!(!pending.is_empty());
    assert!(
        back.cookie("access_token").is_none(),
        "no session before the link"
    );
    assert!(back.cookie("refresh_token").is_none());
    // Without a session, the protected page still sends the browser to log in.
    assert_eq!(browser.open(&gw.url("/web/done")).status, 302);

    // The app completes the link for the user it knows, through the Link API.
    let api = |method: reqwest::Method, path: &str| {
        client()
            .request(method, gw.url(path))
            .header("Authorization", API_KEY)
    };
    let found = check_status(
        api(
            reqwest::Method::GET,
            &format!("/api/identity-provider/link/pending/{pending}"),
        )
        .send()
        .expect("send"),
        200,
    );
    assert_eq!(
        found["pendingIdPLink"]["identityProviderUserId"], "sso-ann",
        "{found}"
    );
    check_status(
        api(reqwest::Method::POST, "/api/identity-provider/link")
            .json(&json!({"pendingIdPLinkId": pending,
                          "identityProviderLink": {"userId": local.user_id}}))
            .send()
            .expect("send"),
        200,
    );
    // The next login is the linked user's, with a session.
    let mut again = Browser::default();
    let done = to_the_app(&gw, &mut again, "/web/done", "s2");
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/web/done?state=s2");
    assert!(done.cookie("access_token").is_some());
    let page = again.open(&gw.url("/web/done"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-user-id"], local.user_id);
}

/// `/app/login` with `redirect_uri` and the app's `state`, through the provider, to the
/// callback's answer.
fn to_the_app(
    gw: &TestGateway,
    browser: &mut Browser,
    target: &str,
    state: &str,
) -> super::app_login::Answer {
    let login = browser.open(&gw.url(&format!(
        "/app/login/{APP}?redirect_uri={target}&state={state}"
    )));
    assert_eq!(login.status, 302, "{}", login.body);
    let at_provider = client().get(&login.location).send().expect("authorize");
    let callback = at_provider.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_string();
    browser.open(&callback)
}

#[test]
fn a_login_route_may_use_a_provider_created_through_the_api() {
    let provider = Provider::start();
    let mut options = login_options(&provider.issuer(), "http://127.0.0.1:$PORT");
    let file_only = options
        .extra
        .split("identityProviders:")
        .next()
        .expect("login");
    options.extra = file_only.to_string();
    let gw = TestGateway::start_with(options);
    let warning = "routes[4].auth.login: no enabled OpenIDConnect identity provider in the store";
    assert!(gw.log().contains(warning), "{}", gw.log());
    // Until a provider exists, a browser sent to log in gets a clear 400.
    let mut browser = Browser::default();
    let first = browser.open(&gw.url("/web/page"));
    assert_eq!(first.status, 302, "{}", first.body);
    let none = browser.open(&gw.url(&first.location));
    assert_eq!(none.status, 400, "{}", none.body);
    assert_eq!(
        none.json()["generalErrors"][0]["code"],
        "[InvalidIdentityProvider]"
    );

    let body = json!({"identityProvider": {
        "type": "OpenIDConnect", "name": "Made through the API", "enabled": true,
        "oauth2": {"issuer": provider.issuer(), "client_id": super::fake_oidc::CLIENT_ID,
                   "client_secret": super::fake_oidc::CLIENT_SECRET,
                   "clientAuthenticationMethod": "client_secret_basic", "scope": "openid email"},
        "linkingStrategy": "LinkByEmail",
        "applicationConfiguration": {APP: {"enabled": true, "createRegistration": true}}}});
    check_status(
        client()
            .post(gw.url("/api/identity-provider"))
            .header("Authorization", API_KEY)
            .json(&body)
            .send()
            .expect("send"),
        200,
    );
    provider.log_in_as("sso-ann", super::app_login::ann());
    let page = log_in_through_the_browser(&gw, &mut Browser::default(), "/web/page");
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["body"]["headers"]["x-user-email"], "ann@example.com");
    // A reload finds the provider in the store: no new warning.
    let reload = client()
        .post(gw.admin_url("/reload"))
        .send()
        .expect("reload");
    assert_eq!(reload.status().as_u16(), 200);
    assert_eq!(gw.log().matches(warning).count(), 1, "{}", gw.log());
}
