//! Browser login in a cluster and across a reload, through the real binary: the login-state
//! key and the completed states live in the store, so a login started on one gateway completes
//! on another sharing the PostgreSQL store (no sticky sessions), a replayed callback is refused
//! on every node, and a reload in the middle of a login does not break it.

use super::app_login::{ann, login_options, params, to_callback, Browser};
use super::fake_oidc::Provider;
use super::kit::*;
use super::postgres::Database;

/// `url` with the gateway `from`'s port replaced by `to`'s (the balancer sent it elsewhere).
fn on_node(url: &str, from: &TestGateway, to: &TestGateway) -> String {
    url.replace(
        &format!("127.0.0.1:{}/", from.port),
        &format!("127.0.0.1:{}/", to.port),
    )
}

#[test]
fn a_login_started_on_one_node_completes_on_another_and_is_refused_when_replayed() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let db = Database::create();
    let mut options = login_options(&provider.issuer(), "http://127.0.0.1:$PORT");
    options.store_url = Some(db.url.clone());
    let a = TestGateway::start_with(options.clone());
    // Both nodes are reached at one public origin (here: node A's address).
    options.extra = options.extra.replace("$PORT", &a.port.to_string());
    let b = a.start_peer(&options);

    let mut browser = Browser::default();
    let callback = to_callback(&a, &mut browser, "/web/page");
    assert!(callback.starts_with(&a.url("/app/callback?")), "{callback}");
    let replay = browser.clone();
    let done = browser.open(&on_node(&callback, &a, &b));
    assert_eq!(
        done.status, 302,
        "node B completes A's login: {}",
        done.body
    );
    assert_eq!(done.location, "/web/page");
    assert!(done.cookie("access_token").is_some());
    // The session works on either node.
    for node in [&a, &b] {
        let page = browser.clone().open(&node.url("/web/page"));
        assert_eq!(page.status, 200, "{}", page.body);
    }

    // The same callback, with the same state cookie, on the other node and on B again.
    for node in [&a, &b] {
        let again = replay.clone().open(&on_node(&callback, &a, node));
        assert_eq!(again.status, 400, "{}", again.body);
        assert_eq!(again.json()["generalErrors"][0]["code"], "[InvalidState]");
        assert!(again.body.contains("already completed"), "{}", again.body);
    }
    // A state cookie node A signed opens on B with a tampered state refused there.
    let mut other = Browser::default();
    let fresh = to_callback(&a, &mut other, "/web");
    let state = params(&fresh)["state"].clone();
    let tampered = on_node(&fresh, &a, &b).replace(&state, &format!("{state}x"));
    assert_eq!(other.clone().open(&tampered).status, 400);
    assert_eq!(other.open(&on_node(&fresh, &a, &b)).status, 302);
}

#[test]
fn a_reload_in_the_middle_of_a_login_does_not_break_it() {
    let provider = Provider::start();
    provider.log_in_as("sso-ann", ann());
    let gw = TestGateway::start_with(login_options(&provider.issuer(), "http://127.0.0.1:$PORT"));
    let mut browser = Browser::default();
    let callback = to_callback(&gw, &mut browser, "/web");
    let reload = client()
        .post(gw.admin_url("/reload"))
        .send()
        .expect("reload");
    assert_eq!(reload.status().as_u16(), 200, "{:?}", reload.text());
    let done = browser.clone().open(&callback);
    assert_eq!(done.status, 302, "{}", done.body);
    assert_eq!(done.location, "/web");
    // The state completed before the reload stays completed after another one.
    let again = client()
        .post(gw.admin_url("/reload"))
        .send()
        .expect("reload");
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(browser.open(&callback).status, 400);
}
