//! At the edge: transparent refresh, coalescing of parallel refreshes, the one-time-use grace
//! period (on one node and across nodes sharing the store), and revocation honoured before the
//! access token expires.

use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::json;
use uuid::Uuid;

use super::kit::*;

/// A route with transparent refresh, plus the given application JWT settings.
fn options(app_jwt: &str) -> Options {
    Options {
        app_jwt: app_jwt.into(),
        extra_routes: format!(
            "  - path: /app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true, loginUrl: /login}}\n    identityHeaders: {{X-User-Id: sub}}\n  - path: /soon\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true, refreshBeforeExpirySeconds: 600}}\n"
        ),
        ..Default::default()
    }
}

/// Starts a gateway whose /app route refreshes, with `app_jwt` settings; returns the options
/// too, for starting peers.
fn gateway(app_jwt: &str) -> (TestGateway, Options) {
    let gw = TestGateway::start_with(options(app_jwt));
    (gw, options(app_jwt))
}

fn set_cookies(response: &reqwest::blocking::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        let first = c.split(';').next()?;
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn expired_token(gw: &TestGateway, user: &str) -> String {
    let mut claims = claims(Uuid::parse_str(user).expect("uuid"), APP, &["user"]);
    claims["exp"] = json!(now() - 30);
    claims["iat"] = json!(now() - 330);
    gw.token(Algorithm::RS256, &claims)
}

#[test]
fn an_expired_token_with_a_refresh_cookie_reaches_the_upstream_with_a_fresh_one() {
    let (gw, _) =
        gateway("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse");
    let session = gw.login("edge-refresh@example.com", &["user"]);
    let expired = expired_token(&gw, &session.user_id);
    let response = client()
        .get(gw.url("/app/page"))
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
    assert_eq!(body["headers"]["x-user-id"], session.user_id);
    let new_access = cookie_value(&cookies, "access_token").expect("access_token cookie set");
    let new_refresh =
        cookie_value(&cookies, "refresh_token").expect("rotated refresh_token cookie set");
    assert_ne!(new_access, expired);
    assert_ne!(new_refresh, session.refresh_token, "OneTimeUse rotates");
    assert!(
        (cookies.iter())
            .filter(|c| !c.starts_with("app.at_exp="))
            .all(|c| c.contains("HttpOnly")),
        "{cookies:?}"
    );
    // The upstream saw the new token, in the header and the cookie, and never the refresh token.
    assert_eq!(
        body["headers"]["authorization"],
        format!("Bearer {new_access}")
    );
    let upstream_cookie = body["headers"]["cookie"].as_str().expect("cookie");
    assert!(upstream_cookie.contains(&format!("access_token={new_access}")));
    assert!(!upstream_cookie.contains("refresh_token"));
    // The new access token is a real one: valid at the API, minted from the refresh token.
    let validated = check_status(gw.get_as("/api/jwt/validate", &new_access), 200);
    assert_eq!(validated["jwt"]["authenticationType"], "REFRESH_TOKEN");
    assert_eq!(validated["jwt"]["sid"], session.refresh_token_id);
    // A missing access token refreshes too.
    let response = client()
        .get(gw.url("/app/page"))
        .header("Cookie", format!("refresh_token={new_refresh}"))
        .send()
        .expect("send");
    check_status(response, 200);
}

/// The `exp` claim of a JWT (not verified: the test only reads it).
fn exp_of(token: &str) -> i64 {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice::<serde_json::Value>(&json).expect("json")["exp"]
        .as_i64()
        .expect("exp")
}

#[test]
fn every_edge_refresh_sets_app_at_exp_to_the_new_tokens_expiry() {
    // Reusable: the refresh cookie is not set again, app.at_exp still is.
    let (gw, _) =
        gateway("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable");
    let session = gw.login("edge-at-exp@example.com", &["user"]);
    let expired = expired_token(&gw, &session.user_id);
    for (path, cookie) in [
        // An expired access token, as a page of an SDK-driven app sends it with a stale
        // app.at_exp; then a missing one; then one within refreshBeforeExpirySeconds.
        (
            "/app/page",
            format!(
                "access_token={expired}; refresh_token={}; app.at_exp=1",
                session.refresh_token
            ),
        ),
        (
            "/app/page",
            format!("refresh_token={}", session.refresh_token),
        ),
        (
            "/soon/page",
            format!(
                "access_token={}; refresh_token={}",
                session.token, session.refresh_token
            ),
        ),
    ] {
        let response = client()
            .get(gw.url(path))
            .header("Cookie", cookie)
            .send()
            .expect("send");
        let cookies = set_cookies(&response);
        check_status(response, 200);
        let access = cookie_value(&cookies, "access_token").expect("access_token cookie");
        assert_eq!(cookie_value(&cookies, "refresh_token"), None, "Reusable");
        let at_exp = (cookies.iter())
            .find(|c| c.starts_with("app.at_exp="))
            .unwrap_or_else(|| panic!("no app.at_exp on {path}: {cookies:?}"));
        assert_eq!(
            cookie_value(&cookies, "app.at_exp"),
            Some(exp_of(&access).to_string()),
            "{at_exp}"
        );
        assert!(exp_of(&access) > now(), "a fresh token");
        // The attributes the login sets: readable by scripts, Path=/, Lax, a session cookie.
        assert!(!at_exp.contains("HttpOnly"), "{at_exp}");
        assert!(
            at_exp.contains("Path=/;") || at_exp.ends_with("Path=/"),
            "{at_exp}"
        );
        assert!(
            at_exp.contains("SameSite=Lax") && !at_exp.contains("Max-Age"),
            "{at_exp}"
        );
    }
    // No refresh, no app.at_exp: a valid token passes with no cookie set.
    let response = client()
        .get(gw.url("/app/page"))
        .header("Cookie", format!("access_token={}", session.token))
        .send()
        .expect("send");
    assert!(set_cookies(&response).is_empty());
    check_status(response, 200);
}

/// Parallel requests with one one-time-use cookie (grace period 0): one exchange, whose outcome
/// every request that overlapped it shares; a request after it has answered is refused.
#[test]
fn parallel_requests_with_one_one_time_token_cause_exactly_one_rotation() {
    let (gw, _) =
        gateway("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse");
    let session = gw.login("edge-parallel@example.com", &["user"]);
    let expired = expired_token(&gw, &session.user_id);
    let url = gw.url("/app/parallel");
    let cookie = format!(
        "access_token={expired}; refresh_token={}",
        session.refresh_token
    );
    let start = std::sync::Arc::new(std::sync::Barrier::new(50));
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (url, cookie, start) = (url.clone(), cookie.clone(), start.clone());
            std::thread::spawn(move || {
                let client = client();
                start.wait();
                let response = client
                    .get(url)
                    .header("Cookie", cookie)
                    .send()
                    .expect("send");
                let status = response.status().as_u16();
                (status, set_cookies(&response))
            })
        })
        .collect();
    let results: Vec<(u16, Vec<String>)> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let statuses: Vec<u16> = results.iter().map(|r| r.0).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 401) && statuses.contains(&200),
        "{statuses:?}"
    );
    let pairs: std::collections::HashSet<(Option<String>, Option<String>)> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, c)| {
            (
                cookie_value(c, "access_token"),
                cookie_value(c, "refresh_token"),
            )
        })
        .collect();
    assert_eq!(
        pairs.len(),
        1,
        "every request got the same new pair: {pairs:?}"
    );
    // The store shows exactly one rotation of the token.
    let db = rusqlite::Connection::open(gw.store_path()).expect("open store");
    let rotations: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM rotated_refresh_tokens WHERE token_id = ?1",
            [&session.refresh_token_id],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(rotations, 1);
    let metrics = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .expect("send")
        .text()
        .expect("text");
    assert!(
        metrics.contains("gatehouse_refreshes_total{outcome=\"done\"} 1"),
        "{metrics}"
    );
    // After the exchange has answered, the same cookie is a retired value: refused.
    let late = client()
        .get(gw.url("/app/late"))
        .header("Cookie", &cookie)
        .send()
        .expect("send");
    assert_eq!(late.status().as_u16(), 401);
}

/// Grace period 0 (FusionAuth's default) and no race window (the gateway's): the rotated cookie
/// presented again right after the transparent refresh is refused at once — not served from the
/// edge's memory — and `onOneTimeTokenReuse` revokes the token and its access tokens.
#[test]
fn a_sequential_reuse_of_a_rotated_cookie_is_refused_at_once_and_revokes_the_family() {
    let (gw, _) = gateway(
        "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
         refreshTokenRevocationPolicy: {onOneTimeTokenReuse: true}",
    );
    let session = gw.login("edge-sequential@example.com", &["user"]);
    let expired = expired_token(&gw, &session.user_id);
    let old = format!(
        "access_token={expired}; refresh_token={}",
        session.refresh_token
    );
    let first = client()
        .get(gw.url("/app/1"))
        .header("Cookie", &old)
        .send()
        .expect("send");
    let cookies = set_cookies(&first);
    check_status(first, 200);
    let new_access = cookie_value(&cookies, "access_token").expect("access cookie");
    let new_refresh = cookie_value(&cookies, "refresh_token").expect("refresh cookie");
    check_status(gw.get_as("/api/jwt/validate", &new_access), 200);

    let again = client()
        .get(gw.url("/app/2"))
        .header("Cookie", &old)
        .send()
        .expect("send");
    let cleared = set_cookies(&again);
    check_status(again, 401);
    // No cookie is cleared for a retired value: a browser may hold its successor from another
    // answer, which a clearing Set-Cookie arriving later would overwrite.
    assert!(cleared.is_empty(), "{cleared:?}");
    // The reuse revoked the token: its successor and the access token minted with it too.
    check_status(
        client()
            .get(gw.url("/app/3"))
            .header("Cookie", format!("refresh_token={new_refresh}"))
            .send()
            .expect("send"),
        401,
    );
    check_status(gw.get_as("/api/jwt/validate", &new_access), 401);
}

#[test]
fn the_grace_period_serves_late_requests_on_any_node_then_refuses() {
    let jwt = "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
               refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 4}";
    let (node_a, options) = gateway(jwt);
    let node_b = node_a.start_peer(&options);
    // Node B's refresh route must point at an upstream: node A's demo upstream works for both.
    let session = node_a.login("edge-grace@example.com", &["user"]);
    let old = format!("refresh_token={}", session.refresh_token);

    let first = client()
        .get(node_a.url("/app/1"))
        .header("Cookie", &old)
        .send()
        .expect("send");
    let first_cookies = set_cookies(&first);
    check_status(first, 200);
    let pair = (
        cookie_value(&first_cookies, "access_token"),
        cookie_value(&first_cookies, "refresh_token"),
    );
    assert!(pair.1.is_some());

    // On the other node, through the store: the same new pair.
    let late = client()
        .get(node_b.url("/app/2"))
        .header("Cookie", &old)
        .send()
        .expect("send");
    let late_cookies = set_cookies(&late);
    check_status(late, 200);
    assert_eq!(cookie_value(&late_cookies, "refresh_token"), pair.1);
    assert_eq!(cookie_value(&late_cookies, "access_token"), pair.0);
    // And through the API on node B.
    let api = client()
        .post(node_b.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": session.refresh_token}))
        .send()
        .expect("send");
    let api_body = check_status(api, 200);
    assert_eq!(api_body["refreshToken"].as_str(), pair.1.as_deref());

    std::thread::sleep(Duration::from_millis(4500));
    for node in [&node_a, &node_b] {
        let response = client()
            .get(node.url("/app/3"))
            .header("Cookie", &old)
            .send()
            .expect("send");
        let cookies = set_cookies(&response);
        check_status(response, 401);
        // A retired value clears nothing (see above).
        assert!(cookies.is_empty(), "{cookies:?}");
    }
    // The rotated token itself still works.
    let current = format!("refresh_token={}", pair.1.expect("refresh"));
    check_status(
        client()
            .get(node_b.url("/app/4"))
            .header("Cookie", current)
            .send()
            .expect("send"),
        200,
    );
}

#[test]
fn reuse_after_the_grace_period_can_revoke_the_family() {
    let jwt = "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
               refreshTokenRevocationPolicy: {onOneTimeTokenReuse: true}";
    let (gw, _) = gateway(jwt);
    let session = gw.login("edge-family@example.com", &["user"]);
    let first = client()
        .post(gw.url("/api/jwt/refresh"))
        .json(&json!({"refreshToken": session.refresh_token}))
        .send()
        .expect("send");
    let rotated = check_status(first, 200);
    let successor = rotated["refreshToken"].as_str().expect("token").to_string();
    let successor_access = rotated["token"].as_str().expect("token").to_string();
    // Presenting the retired value again, right away, is a stolen-token signal: the whole
    // token dies.
    check_status(
        client()
            .post(gw.url("/api/jwt/refresh"))
            .json(&json!({"refreshToken": session.refresh_token}))
            .send()
            .expect("send"),
        400,
    );
    check_status(
        client()
            .post(gw.url("/api/jwt/refresh"))
            .json(&json!({"refreshToken": successor}))
            .send()
            .expect("send"),
        400,
    );
    // And the access token minted from it is refused at once.
    check_status(gw.get_as("/api/jwt/validate", &successor_access), 401);
}

#[test]
fn revoking_a_users_tokens_cuts_their_access_tokens_at_once_on_every_node() {
    let (node_a, options) =
        gateway("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable");
    let node_b = node_a.start_peer(&options);
    let session = node_a.login("edge-revoke@example.com", &["user"]);
    for node in [&node_a, &node_b] {
        check_status(node.get_as("/x", &session.token), 200);
    }
    check_status(node_a.get_as("/api/jwt/validate", &session.token), 200);
    let revoked = client()
        .delete(node_a.url(&format!("/api/jwt/refresh?userId={}", session.user_id)))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(revoked.status().as_u16(), 200);
    // This node: at once, at the proxy and the API.
    check_status(node_a.get_as("/x", &session.token), 401);
    check_status(node_a.get_as("/api/jwt/validate", &session.token), 401);
    // The other node picks the revocation up from the store within its poll interval.
    let mut refused = false;
    for _ in 0..40 {
        let status = node_b.get_as("/x", &session.token).status().as_u16();
        if status == 401 {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused, "node B still accepts the revoked token");
    // A new login right after is not caught by the revocation.
    let again = node_a.login("edge-revoke@example.com", &["user"]);
    check_status(node_a.get_as("/x", &again.token), 200);
    // After a restart the revocation still holds.
    let mut node_a = node_a;
    node_a.restart();
    check_status(node_a.get_as("/x", &session.token), 401);
    check_status(node_a.get_as("/x", &again.token), 200);
}

#[test]
fn a_revoked_refresh_cookie_is_a_401_with_cleared_cookies_or_a_redirect() {
    let (gw, _) =
        gateway("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable");
    let session = gw.login("edge-revoked@example.com", &["user"]);
    let response = client()
        .delete(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id)))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    let expired = expired_token(&gw, &session.user_id);
    let cookie = format!(
        "access_token={expired}; refresh_token={}",
        session.refresh_token
    );
    let response = client()
        .get(gw.url("/app"))
        .header("Cookie", &cookie)
        .send()
        .expect("send");
    let cookies = set_cookies(&response);
    let body = check_status(response, 401);
    assert_eq!(body["generalErrors"][0]["code"], "[InvalidToken]");
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("access_token=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("refresh_token=;") && c.contains("Max-Age=0")),
        "{cookies:?}"
    );
    let response = client()
        .get(gw.url("/app"))
        .header("Cookie", &cookie)
        .header("Accept", "text/html")
        .send()
        .expect("send");
    let cookies = set_cookies(&response);
    assert_eq!(response.status().as_u16(), 302);
    assert_eq!(response.headers()["location"], "/login");
    assert!(
        cookies.iter().any(|c| c.starts_with("refresh_token=;")),
        "{cookies:?}"
    );
}

#[test]
fn a_refresh_revoked_right_after_it_ran_is_not_served_again() {
    let (gw, _) =
        gateway("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable");
    let session = gw.login("edge-recent@example.com", &["user"]);
    let cookie = format!("refresh_token={}", session.refresh_token);
    check_status(
        client()
            .get(gw.url("/app/1"))
            .header("Cookie", &cookie)
            .send()
            .expect("send"),
        200,
    );
    let response = client()
        .delete(gw.url(&format!("/api/jwt/refresh/{}", session.refresh_token_id)))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(response.status().as_u16(), 200);
    // Within the in-memory retention window, the revoked token's earlier outcome is not reused.
    check_status(
        client()
            .get(gw.url("/app/2"))
            .header("Cookie", &cookie)
            .send()
            .expect("send"),
        401,
    );
}

#[test]
fn a_token_close_to_expiry_is_refreshed_ahead_when_configured() {
    let (gw, _) =
        gateway("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable");
    let session = gw.login("edge-soon@example.com", &["user"]);
    let cookie = format!(
        "access_token={}; refresh_token={}",
        session.token, session.refresh_token
    );
    // /soon refreshes tokens with less than 600 s left: this 300 s token is refreshed.
    let response = client()
        .get(gw.url("/soon"))
        .header("Cookie", &cookie)
        .send()
        .expect("send");
    let cookies = set_cookies(&response);
    check_status(response, 200);
    let fresh = cookie_value(&cookies, "access_token").expect("a new access token");
    assert_ne!(fresh, session.token);
    // /app only refreshes expired tokens: the same valid token passes untouched.
    let response = client()
        .get(gw.url("/app"))
        .header("Cookie", &cookie)
        .send()
        .expect("send");
    let cookies = set_cookies(&response);
    check_status(response, 200);
    assert!(
        cookie_value(&cookies, "access_token").is_none(),
        "{cookies:?}"
    );
}

/// Refresh routes of another application, behind a role the user lacks, and to an upstream
/// that is down, beside the /app route.
fn cross_route_options() -> Options {
    let mut options =
        options("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse");
    options.extra_routes.push_str(&format!(
        "  - path: /other-app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {OTHER_APP}, refresh: true}}\n  - path: /staff\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, roles: [admin], refresh: true}}\n  - path: /gone\n    upstream: http://127.0.0.1:{}\n    auth: {{applicationId: {APP}, refresh: true}}\n",
        free_port()
    ));
    options
}

/// `GET path` carrying only `refresh_token`.
fn with_refresh_cookie(gw: &TestGateway, path: &str, value: &str) -> reqwest::blocking::Response {
    client()
        .get(gw.url(path))
        .header("Cookie", format!("refresh_token={value}"))
        .send()
        .expect("send")
}

#[test]
fn another_applications_route_never_uses_up_a_refresh_token() {
    let gw = TestGateway::start_with(cross_route_options());
    let session = gw.login("cross-app@example.com", &["user"]);
    for _ in 0..3 {
        let response = with_refresh_cookie(&gw, "/other-app/page", &session.refresh_token);
        assert!(
            set_cookies(&response).is_empty(),
            "another application's route touched the cookies: {:?}",
            set_cookies(&response)
        );
        assert_eq!(response.status(), 401);
    }
    // The token is intact: its own application's route refreshes with it.
    let response = with_refresh_cookie(&gw, "/app/page", &session.refresh_token);
    let cookies = set_cookies(&response);
    check_status(response, 200);
    assert!(cookie_value(&cookies, "refresh_token").is_some_and(|v| v != session.refresh_token));
}

/// One page's parallel requests with one refresh cookie to its own application's route and to
/// another application's route, released together: the other route never uses the value up
/// nor touches the cookies (decided on the exchange's one store read, whichever request reads
/// first), and the owner's route makes exactly one rotation.
#[test]
fn parallel_requests_to_two_applications_rotate_once_for_the_owner_only() {
    let gw = TestGateway::start_with(cross_route_options());
    for round in 0..4 {
        let session = gw.login(&format!("two-apps{round}@example.com"), &["user"]);
        let paths: Vec<&'static str> = (0..8)
            .map(|i| if i % 2 == 0 { "/other-app/x" } else { "/app/x" })
            .collect();
        let answers = parallel_refreshes_on(&gw, &session.refresh_token, &paths);
        let mut pairs = std::collections::HashSet::new();
        for (path, status, cookies) in &answers {
            match (*path, status) {
                ("/other-app/x", 401) | ("/app/x", 401) => {
                    assert!(cookies.is_empty(), "round {round}: {answers:?}")
                }
                ("/app/x", 200) => {
                    pairs.insert(cookie_value(cookies, "refresh_token").expect("pair"));
                }
                _ => panic!("round {round}: {answers:?}"),
            }
        }
        assert_eq!(pairs.len(), 1, "round {round}: one rotation: {answers:?}");
        // The other route leaves the new value alone too, and it works where it belongs.
        let pair = pairs.into_iter().next().expect("a pair");
        let response = with_refresh_cookie(&gw, "/other-app/next", &pair);
        assert!(set_cookies(&response).is_empty());
        assert_eq!(response.status(), 401);
        check_status(with_refresh_cookie(&gw, "/app/next", &pair), 200);
    }
}

#[test]
fn a_refresh_whose_request_is_refused_still_hands_over_the_new_pair() {
    let gw = TestGateway::start_with(cross_route_options());
    for path in ["/staff/page", "/gone/page"] {
        let session = gw.login(&format!("handover{}@example.com", path.len()), &["user"]);
        let response = with_refresh_cookie(&gw, path, &session.refresh_token);
        let status = response.status().as_u16();
        let cookies = set_cookies(&response);
        assert!([403, 502].contains(&status), "{path}: {status}");
        let access = cookie_value(&cookies, "access_token")
            .unwrap_or_else(|| panic!("{path}: no access_token handed over: {cookies:?}"));
        let refresh = cookie_value(&cookies, "refresh_token")
            .unwrap_or_else(|| panic!("{path}: no refresh_token handed over: {cookies:?}"));
        assert_ne!(refresh, session.refresh_token);
        assert!(!access.is_empty());
        // The browser's new pair works where the user belongs.
        let response = with_refresh_cookie(&gw, "/app/page", &refresh);
        check_status(response, 200);
    }
}

/// A page's parallel requests after its access token expired, each with only the refresh
/// cookie, over separate connections: one rotation and one pair. Requests that arrived before
/// the rotation completed get that pair; at grace period 0 a request that arrived after it is
/// refused without touching the cookies (the browser keeps the pair the others set: nobody is
/// logged out); with a grace period every request gets the pair.
#[test]
fn parallel_requests_of_one_page_never_log_the_user_out() {
    for (grace, all_served) in [
        ("", false),
        (
            ", refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 5}",
            true,
        ),
    ] {
        let (gw, _) = gateway(&format!(
            "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse{grace}"
        ));
        for round in 0..4 {
            let session = gw.login(&format!("page{round}@example.com"), &["user"]);
            let answers = parallel_refreshes(&gw, &session.refresh_token, 8);
            let pairs: std::collections::HashSet<_> = answers
                .iter()
                .filter_map(|(_, cookies)| cookie_value(cookies, "refresh_token"))
                .collect();
            assert_eq!(pairs.len(), 1, "{grace} round {round}: {answers:?}");
            for (status, cookies) in &answers {
                match status {
                    // access_token, refresh_token, app.at_exp
                    200 => assert_eq!(cookies.len(), 3, "{answers:?}"),
                    401 if !all_served => assert!(cookies.is_empty(), "{answers:?}"),
                    _ => panic!("{grace} round {round}: {answers:?}"),
                }
            }
            // The browser's pair works.
            let pair = pairs.into_iter().next().expect("a pair");
            let response = client()
                .get(gw.url("/app/next"))
                .header("Cookie", format!("refresh_token={pair}"))
                .send()
                .expect("send");
            check_status(response, 200);
        }
    }
}

/// `count` requests to /app presenting only `value`, released together on separate
/// connections: each answer's status and `Set-Cookie` values.
fn parallel_refreshes(gw: &TestGateway, value: &str, count: usize) -> Vec<(u16, Vec<String>)> {
    let paths = vec!["/app/asset"; count];
    let answers = parallel_refreshes_on(gw, value, &paths);
    (answers.into_iter())
        .map(|(_, status, cookies)| (status, cookies))
        .collect()
}

/// One request to each of `paths` presenting only `value`, released together on separate
/// connections: each answer's path, status and `Set-Cookie` values, in the order of `paths`.
fn parallel_refreshes_on(
    gw: &TestGateway,
    value: &str,
    paths: &[&'static str],
) -> Vec<(&'static str, u16, Vec<String>)> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(paths.len()));
    let threads: Vec<_> = (paths.iter())
        .map(|&path| {
            let (barrier, url, value) = (barrier.clone(), gw.url(path), value.to_string());
            std::thread::spawn(move || {
                let http = client();
                barrier.wait();
                let response = http
                    .get(url)
                    .header("Cookie", format!("refresh_token={value}"))
                    .send()
                    .expect("send");
                (path, response.status().as_u16(), set_cookies(&response))
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect()
}

/// An upstream that reads a request and answers it only after `delay`.
fn slow_upstream(delay: Duration) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(8) {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                std::thread::sleep(delay);
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            });
        }
    });
    port
}

/// A client that goes away (a reset) after its refresh ran but before the answer with the
/// successor came back still holds the old value: one retry with it gets the rotation's pair,
/// at grace period 0; a second one does not.
#[test]
fn a_rotation_whose_answer_never_arrived_can_be_retried_once() {
    use std::io::Write;
    let port = slow_upstream(Duration::from_millis(1500));
    let mut options =
        options("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse");
    options.extra_routes.push_str(&format!(
        "  - path: /slow\n    upstream: http://127.0.0.1:{port}\n    auth: {{applicationId: {APP}, refresh: true}}\n"
    ));
    let gw = TestGateway::start_with(options);
    let session = gw.login("gone@example.com", &["user"]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    stream
        .write_all(
            format!(
                "GET /slow/x HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: refresh_token={}\r\n\r\n",
                session.refresh_token
            )
            .as_bytes(),
        )
        .expect("write");
    std::thread::sleep(Duration::from_millis(500));
    // Reset, not a polite close: the gateway's answer cannot be written.
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(stream);
    std::thread::sleep(Duration::from_millis(2000));
    let retry = |path: &str| {
        client()
            .get(gw.url(path))
            .header("Cookie", format!("refresh_token={}", session.refresh_token))
            .send()
            .expect("send")
    };
    let first = retry("/app/retry");
    let cookies = set_cookies(&first);
    check_status(first, 200);
    let successor = cookie_value(&cookies, "refresh_token").expect("the rotation's pair");
    assert_ne!(successor, session.refresh_token);
    check_status(retry("/app/again"), 401);
    // The successor is the live token.
    let response = client()
        .get(gw.url("/app/next"))
        .header("Cookie", format!("refresh_token={successor}"))
        .send()
        .expect("send");
    check_status(response, 200);
}

/// A token the gateway has just signed at a transparent refresh goes on with exactly the claims
/// it carries, for every kind of key (the edge takes them from what it signed, not from a
/// second verification): its identity headers are its own, it is valid alone at the edge and
/// the API afterwards, and a revocation of its user refuses it at once.
#[test]
fn a_token_signed_at_an_edge_refresh_is_judged_on_its_claims_and_revocable_for_every_key() {
    for algorithm in [
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
        Algorithm::HS256,
    ] {
        let keys = Keys::generate();
        let key = keys.get(algorithm).0;
        let jwt = format!(
            "enabled: true, accessTokenKeyId: {key}, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable"
        );
        let gw = TestGateway::start_with_keys(options(&jwt), keys);
        let email = format!("edge-signed-{algorithm:?}@example.com").to_lowercase();
        let session = gw.login(&email, &["user"]);
        let response = with_refresh_cookie(&gw, "/app/page", &session.refresh_token);
        let cookies = set_cookies(&response);
        let body = check_status(response, 200);
        assert_eq!(
            body["headers"]["x-user-id"], session.user_id,
            "{algorithm:?}"
        );
        let access = cookie_value(&cookies, "access_token").expect("access_token cookie");
        let header = jsonwebtoken::decode_header(&access).expect("header");
        assert_eq!(header.alg, algorithm);
        assert_eq!(header.kid, Some(key.to_string()));
        // Alone, at the edge and at the API.
        let alone = check_status(gw.get_as("/app/alone", &access), 200);
        assert_eq!(alone["headers"]["x-user-id"], session.user_id);
        let validated = check_status(gw.get_as("/api/jwt/validate", &access), 200);
        assert_eq!(validated["jwt"]["sid"], session.refresh_token_id);
        // Revoked with its user: refused at once.
        let revoked = client()
            .delete(gw.url(&format!("/api/jwt/refresh?userId={}", session.user_id)))
            .header("Authorization", API_KEY)
            .send()
            .expect("send");
        assert_eq!(revoked.status().as_u16(), 200);
        check_status(gw.get_as("/app/alone", &access), 401);
        check_status(gw.get_as("/api/jwt/validate", &access), 401);
    }
}

/// With one worker thread, transparent refreshes signed with a large RSA key (each signature
/// milliseconds of CPU) must not hold that thread: the proxy keeps answering other requests
/// while the signatures are made. Measured by ordering, not by a time limit: while a batch of
/// refreshes is in flight, a client sending open-route requests one after another gets many
/// answers (40–90 here). Were the signatures made on the worker thread, each open request would
/// wait behind the signatures queued before it, so that there could be at most about one
/// answer per signature, and in fact the batch ends after a handful (0–4 here with the
/// signatures inline).
#[test]
fn the_worker_thread_keeps_serving_while_rsa_refreshes_are_signed() {
    const REFRESHES: usize = 12;
    let kid = Uuid::new_v4();
    // An 8192-bit key (a test fixture: generating one takes seconds): each signature is tens
    // of milliseconds of CPU, so a held worker thread cannot go unnoticed.
    let keys =
        Keys::generate().with_pem_key(kid, "PS512", include_str!("fixtures/rsa8192_key.pem"));
    let options = options(&format!(
        "enabled: true, accessTokenKeyId: {kid}, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable"
    ));
    let mut gw = TestGateway::start_with_keys(options.clone(), keys);
    let text = gw.config_text(&options);
    assert!(text.contains("\nthreads: 2\n"), "the kit's thread count");
    std::fs::write(
        &gw.config_path,
        text.replace("\nthreads: 2\n", "\nthreads: 1\n"),
    )
    .expect("config");
    gw.restart();
    let sessions: Vec<_> = (0..=REFRESHES)
        .map(|i| gw.login(&format!("rsa-refresh-{i}@example.com"), &["user"]))
        .collect();
    // Warm: a refresh (the signing pool's thread started) and the open route.
    check_status(
        with_refresh_cookie(&gw, "/app/page", &sessions[REFRESHES].refresh_token),
        200,
    );
    check_status(client().get(gw.url("/public/x")).send().expect("send"), 200);

    let started = std::sync::Arc::new(std::sync::Barrier::new(REFRESHES + 1));
    let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(REFRESHES));
    let refreshes: Vec<_> = sessions[..REFRESHES]
        .iter()
        .map(|session| {
            let (url, value) = (gw.url("/app/page"), session.refresh_token.clone());
            let (started, pending) = (started.clone(), pending.clone());
            std::thread::spawn(move || {
                let client = client();
                started.wait();
                let response = client
                    .get(url)
                    .header("Cookie", format!("refresh_token={value}"))
                    .send()
                    .expect("send");
                pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                response.status().as_u16()
            })
        })
        .collect();
    let open = client();
    started.wait();
    let mut answered_meanwhile = 0;
    while pending.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        check_status(open.get(gw.url("/public/x")).send().expect("send"), 200);
        if pending.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            answered_meanwhile += 1;
        }
    }
    let statuses: Vec<u16> = refreshes
        .into_iter()
        .map(|t| t.join().expect("refresh thread"))
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    eprintln!("{answered_meanwhile} open-route answers while {REFRESHES} refreshes ran");
    assert!(
        answered_meanwhile > REFRESHES * 3 / 2,
        "only {answered_meanwhile} open-route requests were answered while {REFRESHES} RSA \
         refreshes were in flight: the worker thread was held by their signatures"
    );
}

#[test]
fn an_answer_that_sets_the_session_cookies_is_never_cacheable() {
    let upstream = RecordingUpstream::start();
    let options = Options {
        upstream: Some(format!("http://127.0.0.1:{}", upstream.port)),
        ..options("enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable")
    };
    let gw = TestGateway::start_with(options);
    let session = gw.login("edge-cache@example.com", &["user"]);
    let fetch = |path: &str, cookie: &str| {
        client()
            .get(gw.url(path))
            .header("Cookie", cookie)
            .send()
            .expect("send")
    };
    let caching = |response: &reqwest::blocking::Response| -> Vec<String> {
        ["cache-control", "expires", "surrogate-control"]
            .iter()
            .flat_map(|name| response.headers().get_all(*name).iter())
            .map(|v| v.to_str().expect("ascii").to_string())
            .collect()
    };
    // The upstream's page is cacheable as it is, with a valid token…
    let valid = fetch("/app/cacheable", &format!("access_token={}", session.token));
    assert_eq!(valid.status(), 200);
    assert!(caching(&valid).contains(&"public, max-age=3600".to_string()));
    // …but not when it carries a transparent refresh's cookies,
    let expired = expired_token(&gw, &session.user_id);
    let refreshed = fetch(
        "/app/cacheable",
        &format!(
            "access_token={expired}; refresh_token={}",
            session.refresh_token
        ),
    );
    assert_eq!(refreshed.status(), 200);
    assert!(set_cookies(&refreshed)
        .iter()
        .any(|c| c.starts_with("access_token=")));
    assert_eq!(caching(&refreshed), ["no-store"]);
    // …nor when it clears them.
    let unknown = fetch(
        "/app/cacheable",
        &format!("access_token={expired}; refresh_token=unknown-value"),
    );
    assert!(set_cookies(&unknown)
        .iter()
        .any(|c| c.starts_with("refresh_token=;")));
    assert!(
        caching(&unknown).iter().all(|v| v == "no-store"),
        "{:?}",
        caching(&unknown)
    );
}

#[test]
fn a_value_rotated_twice_is_a_reuse_at_the_edge_within_the_grace_period() {
    let jwt = "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse, \
               refreshTokenOneTimeUseConfiguration: {gracePeriodInSeconds: 20}";
    let (node_a, options) = gateway(jwt);
    let node_b = node_a.start_peer(&options);
    let session = node_a.login("edge-twice@example.com", &["user"]);
    let through = |node: &TestGateway, value: &str, path: &str| {
        let response = client()
            .get(node.url(path))
            .header("Cookie", format!("refresh_token={value}"))
            .send()
            .expect("send");
        let cookies = set_cookies(&response);
        (
            response.status().as_u16(),
            cookie_value(&cookies, "refresh_token"),
        )
    };
    // rt0 → rt1 on node A; rt1 → rt2 on node A.
    let (status, rt1) = through(&node_a, &session.refresh_token, "/app/1");
    assert_eq!(status, 200);
    let rt1 = rt1.expect("rotated");
    let (status, rt2) = through(&node_a, &rt1, "/app/2");
    assert_eq!(status, 200);
    assert!(rt2.is_some());
    // rt0 again, inside its grace period: its outcome (rt1) is rotated away, so it is a reuse
    // on the node that remembers it and on the other one.
    for node in [&node_a, &node_b] {
        let (status, handed) = through(node, &session.refresh_token, "/app/3");
        assert_eq!((status, handed), (401, None));
    }
    // The current value still works.
    let (status, _) = through(&node_b, &rt2.expect("current"), "/app/4");
    assert_eq!(status, 200);
}
