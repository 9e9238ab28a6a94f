//! Tests of the Refresh Token API handlers against the in-memory test kit.

use super::*;
use crate::testkit::{block_on, Kit};
use gatehouse_plugin_api::model::{
    RefreshTokenExpirationPolicy, RefreshTokenOneTimeUseConfiguration, RefreshTokenUsagePolicy,
};
use gatehouse_plugin_api::{Clock, TokenService};
use http::Method;
use serde_json::Value;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn body(res: &PluginResponse) -> Value {
    serde_json::from_slice(&res.body).expect("json")
}

fn error_code(err: &ApiError, field: &str) -> Value {
    let body: Value = serde_json::from_slice(&err.to_response().body).expect("json");
    body["fieldErrors"][field][0]["code"].clone()
}

fn cookies(res: &PluginResponse) -> Vec<String> {
    res.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.clone())
        .collect()
}

fn refresh_request(json_body: Option<Value>, cookie: Option<&str>) -> PluginRequest {
    let mut req = PluginRequest::new(Method::POST, "/api/jwt/refresh");
    if let Some(b) = json_body {
        req.headers
            .insert("content-type", "application/json".parse().expect("header"));
        req.body = serde_json::to_vec(&b).expect("body");
    }
    if let Some(c) = cookie {
        req.headers.insert("cookie", c.parse().expect("header"));
    }
    req.client_address = Some([10, 0, 0, 7].into());
    req
}

fn with_auth(mut req: PluginRequest, authorization: &str) -> PluginRequest {
    req.headers
        .insert("authorization", authorization.parse().expect("header"));
    req
}

fn use_one_time_tokens(kit: &Kit, grace_seconds: i64, revoke_on_reuse: bool) {
    kit.store.update_tenant(kit.tenant.id, |t| {
        t.jwt_configuration.refresh_token_usage_policy = Some(RefreshTokenUsagePolicy::OneTimeUse);
        t.jwt_configuration.refresh_token_one_time_use_configuration =
            Some(RefreshTokenOneTimeUseConfiguration {
                grace_period_in_seconds: grace_seconds,
            });
        if revoke_on_reuse {
            t.jwt_configuration.refresh_token_revocation_policy =
                Some(serde_json::json!({"onOneTimeTokenReuse": true}));
        }
    });
}

// --- exchange --------------------------------------------------------------------------------

#[test]
fn response_shape() {
    let id = Uuid::nil();
    let body = JwtRefreshResponse {
        refresh_token: "r".into(),
        refresh_token_id: id,
        token: "t".into(),
    };
    assert_eq!(
        serde_json::to_value(&body).expect("json"),
        serde_json::json!({"refreshToken": "r", "refreshTokenId": id, "token": "t"})
    );
}

#[test]
fn reusable_exchange_returns_the_same_token_and_cookies() {
    let kit = Kit::new();
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let res = block_on(exchange(&req, &kit.context)).expect("ok");
    assert_eq!(res.status, 200);
    let b = body(&res);
    assert_eq!(b["refreshToken"], rt.token.as_str());
    assert_eq!(b["refreshTokenId"], rt.id.to_string());
    let claims = kit
        .tokens
        .claims_of(b["token"].as_str().expect("token"))
        .expect("issued");
    assert_eq!(claims.claims["authenticationType"], "REFRESH_TOKEN");
    assert_eq!(claims.session_id, Some(rt.id));
    assert_eq!(claims.application_id, Some(kit.app.id));

    let cookies = cookies(&res);
    assert_eq!(cookies.len(), 2);
    assert!(cookies[0].starts_with(&format!(
        "access_token={};",
        b["token"].as_str().unwrap_or("")
    )));
    assert!(
        !cookies[0].contains("Max-Age"),
        "a session cookie: {}",
        cookies[0]
    );
    assert!(cookies[0].contains("HttpOnly"));
    assert!(!cookies[0].contains("Secure"));
    assert!(cookies[1].starts_with(&format!("refresh_token={};", rt.token)));
    assert!(cookies[1].contains("Max-Age=2592000"), "{}", cookies[1]);

    let stored = kit.store.token_by_value(&rt.token).expect("still live");
    assert_eq!(
        stored.meta_data.device.last_accessed_address.as_deref(),
        Some("10.0.0.7")
    );
    assert_eq!(
        stored.meta_data.device.last_accessed_instant,
        Some(kit.clock.now_millis())
    );
}

#[test]
fn cookies_are_secure_over_tls_or_when_configured() {
    let kit = Kit::new();
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let mut req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    req.tls = true;
    let res = block_on(exchange(&req, &kit.context)).expect("ok");
    assert!(cookies(&res).iter().all(|c| c.contains("; Secure")));

    let mut context = kit.context.clone();
    context.secure_cookies = true;
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let res = block_on(exchange(&req, &context)).expect("ok");
    assert!(cookies(&res).iter().all(|c| c.contains("; Secure")));
}

#[test]
fn cookie_wins_over_body_and_forms_are_refused() {
    let kit = Kit::new();
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(
        Some(serde_json::json!({"refreshToken": "wrong"})),
        Some(&format!("refresh_token={}", rt.token)),
    );
    assert_eq!(
        block_on(exchange(&req, &kit.context)).expect("ok").status,
        200
    );

    let mut req = PluginRequest::new(Method::POST, "/api/jwt/refresh");
    req.headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("header"),
    );
    req.body = format!("refreshToken={}", rt.token).into_bytes();
    // A form is what another site can post; this answer sets token cookies (login CSRF).
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        415
    );
    for content_type in ["text/plain", "multipart/form-data; boundary=x"] {
        req.headers
            .insert("content-type", content_type.parse().expect("header"));
        req.body = serde_json::json!({"refreshToken": rt.token})
            .to_string()
            .into_bytes();
        assert_eq!(
            block_on(exchange(&req, &kit.context)).unwrap_err().status(),
            415,
            "{content_type}"
        );
    }
}

#[test]
fn missing_unknown_and_expired_tokens_are_400() {
    let kit = Kit::new();
    let err = block_on(exchange(&refresh_request(None, None), &kit.context)).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(error_code(&err, "refreshToken"), "[blank]refreshToken");

    let req = refresh_request(Some(serde_json::json!({"refreshToken": "nope"})), None);
    let err = block_on(exchange(&req, &kit.context)).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(error_code(&err, "refreshToken"), "[invalid]refreshToken");

    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    kit.clock.advance_millis(30 * DAY_MS);
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let err = block_on(exchange(&req, &kit.context)).unwrap_err();
    assert_eq!(error_code(&err, "refreshToken"), "[invalid]refreshToken");

    let req = refresh_request(Some(serde_json::json!({"refreshToken": 5})), None);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
}

#[test]
fn inactive_user_unregistered_user_or_other_tenant_cannot_refresh() {
    let kit = Kit::new();
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);

    let mut scoped = req.clone();
    scoped.headers.insert(
        "x-fusionauth-tenantid",
        kit.other_tenant.id.to_string().parse().expect("header"),
    );
    assert_eq!(
        block_on(exchange(&scoped, &kit.context))
            .unwrap_err()
            .status(),
        400
    );

    kit.store.update_user(kit.user.id, |u| u.active = false);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    kit.store.update_user(kit.user.id, |u| u.active = true);

    let orphan = kit.refresh_token_for(&kit.user, Some(&kit.app3));
    let req = refresh_request(
        Some(serde_json::json!({"refreshToken": orphan.token})),
        None,
    );
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
}

#[test]
fn sliding_window_moves_the_start() {
    let kit = Kit::new();
    kit.store.update_tenant(kit.tenant.id, |t| {
        t.jwt_configuration.refresh_token_expiration_policy =
            Some(RefreshTokenExpirationPolicy::SlidingWindow);
        t.jwt_configuration.refresh_token_time_to_live_in_minutes = Some(60);
    });
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    for _ in 0..3 {
        kit.clock.advance_millis(45 * 60 * 1000);
        assert_eq!(
            block_on(exchange(&req, &kit.context)).expect("ok").status,
            200
        );
    }
    let stored = kit.store.token_by_value(&rt.token).expect("live");
    assert_eq!(stored.start_instant, kit.clock.now_millis());
    kit.clock.advance_millis(61 * 60 * 1000);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
}

#[test]
fn one_time_use_rotates_and_the_old_value_dies() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, false);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let b = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    let next = b["refreshToken"].as_str().expect("value").to_string();
    assert_ne!(next, rt.token);
    assert_eq!(b["refreshTokenId"], rt.id.to_string());
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    let req = refresh_request(Some(serde_json::json!({"refreshToken": next})), None);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).expect("ok").status,
        200
    );
}

#[test]
fn grace_period_returns_the_current_token() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 10, false);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let first = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    kit.clock.advance_millis(5_000);
    let again = body(&block_on(exchange(&req, &kit.context)).expect("within grace"));
    assert_eq!(again["refreshToken"], first["refreshToken"]);
    assert_eq!(
        again["token"], first["token"],
        "the rotation's own access token"
    );
    // the bound is inclusive, as FusionAuth documents it
    kit.clock.advance_millis(5_000);
    block_on(exchange(&req, &kit.context)).expect("at the end of the grace period");
    kit.clock.advance_millis(1);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    // without the revocation policy the current token survives the reuse
    assert_eq!(kit.store.token_count(), 1);
}

#[test]
fn a_value_retired_two_rotations_ago_never_gets_the_newest_pair_even_within_grace() {
    for revoke_on_reuse in [false, true] {
        let kit = Kit::new();
        use_one_time_tokens(&kit, 30, revoke_on_reuse);
        let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
        let first_value = Some(serde_json::json!({"refreshToken": rt.token}));
        let first = body(
            &block_on(exchange(
                &refresh_request(first_value.clone(), None),
                &kit.context,
            ))
            .expect("ok"),
        );
        kit.clock.advance_millis(1_000);
        let second_value = Some(serde_json::json!({"refreshToken": first["refreshToken"]}));
        let second = body(
            &block_on(exchange(&refresh_request(second_value, None), &kit.context))
                .expect("the new value is used"),
        );
        assert_ne!(second["refreshToken"], first["refreshToken"]);
        kit.clock.advance_millis(1_000);
        // The first value's rotation produced a value that has itself been rotated since.
        let stale = block_on(exchange(&refresh_request(first_value, None), &kit.context));
        assert_eq!(
            stale.unwrap_err().status(),
            400,
            "revoke: {revoke_on_reuse}"
        );
        let expected = usize::from(!revoke_on_reuse);
        assert_eq!(
            kit.store.token_count(),
            expected,
            "revoke: {revoke_on_reuse}"
        );
    }
}

#[test]
fn reuse_one_second_past_the_grace_period_revokes_when_the_policy_says_so() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 2, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let first = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    kit.clock.advance_millis(2_000);
    block_on(exchange(&req, &kit.context)).expect("within grace");
    assert_eq!(
        kit.store.token_count(),
        1,
        "a reuse inside the grace period is no reuse"
    );
    kit.clock.advance_millis(1_000);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    assert_eq!(kit.store.token_count(), 0, "revoked");
    let current = Some(serde_json::json!({"refreshToken": first["refreshToken"]}));
    assert_eq!(
        block_on(exchange(&refresh_request(current, None), &kit.context))
            .unwrap_err()
            .status(),
        400
    );
}

#[test]
fn reuse_after_grace_revokes_when_the_policy_says_so() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let first = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    assert_eq!(kit.store.token_count(), 0);
    assert!(kit
        .tokens
        .revocations()
        .contains(&(RevocationScope::Session(rt.id), kit.clock.now_seconds())));
    let req = refresh_request(
        Some(serde_json::json!({"refreshToken": first["refreshToken"]})),
        None,
    );
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
}

#[test]
fn a_signing_failure_does_not_burn_a_one_time_token() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, false);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    kit.tokens
        .fail_signing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        500
    );
    kit.tokens
        .fail_signing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).expect("ok").status,
        200
    );
}

/// A current-thread Tokio runtime, as the API's handlers run on one (the signing pool has
/// threads of its own).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

#[test]
fn a_signature_on_the_pool_gives_the_same_exchange() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, false);
    *kit.tokens.pool_signing.lock().expect("lock") = Some(crate::testkit::PoolSigning::Signs);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let res = runtime()
        .block_on(exchange(&req, &kit.context))
        .expect("ok");
    assert_eq!(res.status, 200);
    let rotated = body(&res);
    assert_ne!(rotated["refreshToken"], rt.token.as_str());
    let claims = kit
        .tokens
        .claims_of(rotated["token"].as_str().expect("token"))
        .expect("issued");
    assert_eq!(claims.session_id, Some(rt.id));
}

#[test]
fn a_pool_failure_while_signing_is_a_500_and_does_not_burn_a_one_time_token() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, false);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    *kit.tokens.pool_signing.lock().expect("lock") = Some(crate::testkit::PoolSigning::Panics);
    let failed = runtime()
        .block_on(exchange(&req, &kit.context))
        .unwrap_err();
    assert_eq!(failed.status(), 500);
    assert!(kit.store.token_by_value(&rt.token).is_some(), "not rotated");
    *kit.tokens.pool_signing.lock().expect("lock") = None;
    assert_eq!(
        block_on(exchange(&req, &kit.context)).expect("ok").status,
        200
    );
}

#[test]
fn a_refresh_abandoned_while_its_token_is_signed_leaves_the_value_as_it_was() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let (started, wait) = std::sync::mpsc::sync_channel(1);
    let (release, gate) = std::sync::mpsc::channel();
    *kit.tokens.pool_signing.lock().expect("lock") = Some(crate::testkit::PoolSigning::Gated {
        started,
        release: std::sync::Arc::new(std::sync::Mutex::new(gate)),
    });
    let runtime = runtime();
    runtime.block_on(async {
        let context = kit.context.clone();
        let request = req.clone();
        let abandoned = tokio::spawn(async move { exchange(&request, &context).await.is_ok() });
        tokio::task::spawn_blocking(move || wait.recv().expect("signing started"))
            .await
            .expect("join");
        abandoned.abort();
        assert!(abandoned.await.expect_err("aborted").is_cancelled());
    });
    release.send(()).expect("release");
    *kit.tokens.pool_signing.lock().expect("lock") = None;
    // Nothing was written and nothing is pending: the value is live and rotates once, and a
    // replay of it afterwards is a reuse (no allowance was left behind).
    assert!(kit.store.token_by_value(&rt.token).is_some(), "not rotated");
    let rotated = body(&block_on(exchange(&req, &kit.context)).expect("rotates"));
    assert_ne!(rotated["refreshToken"], rt.token.as_str());
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
}

// --- retrieve --------------------------------------------------------------------------------

fn get_by_id(id: &str, authorization: Option<&str>) -> PluginRequest {
    let mut req = PluginRequest::new(Method::GET, &format!("/api/jwt/refresh/{id}"));
    req.path_params.insert("tokenId".into(), id.into());
    match authorization {
        Some(a) => with_auth(req, a),
        None => req,
    }
}

#[test]
fn retrieve_one_by_id() {
    let kit = Kit::new();
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let id = rt.id.to_string();
    let res = block_on(retrieve_by_id(
        &get_by_id(&id, Some(Kit::GLOBAL_KEY)),
        &kit.context,
    ))
    .expect("ok");
    let b = body(&res);
    assert_eq!(b["refreshToken"]["id"], id);
    assert_eq!(b["refreshToken"]["token"], rt.token.as_str());
    assert_eq!(b["refreshToken"]["userId"], kit.user.id.to_string());
    assert_eq!(b["refreshToken"]["applicationId"], kit.app.id.to_string());
    assert!(b["refreshToken"]["startInstant"].is_i64());

    let status = |req: PluginRequest| {
        block_on(retrieve_by_id(&req, &kit.context))
            .map(|r| r.status)
            .unwrap_or_else(|e| e.status())
    };
    assert_eq!(status(get_by_id(&id, Some(Kit::TENANT_KEY))), 200);
    assert_eq!(status(get_by_id(&id, Some(Kit::OTHER_TENANT_KEY))), 404);
    assert_eq!(status(get_by_id(&id, None)), 401);
    assert_eq!(status(get_by_id(&id, Some("wrong-key"))), 401);
    let jwt = format!("Bearer {}", kit.access_token_for(&kit.user));
    assert_eq!(status(get_by_id(&id, Some(&jwt))), 401);
    assert_eq!(status(get_by_id("nope", Some(Kit::GLOBAL_KEY))), 400);
    let unknown = Uuid::new_v4().to_string();
    assert_eq!(status(get_by_id(&unknown, Some(Kit::GLOBAL_KEY))), 404);
}

#[test]
fn retrieve_all_of_a_user() {
    let kit = Kit::new();
    kit.refresh_token_for(&kit.user, Some(&kit.app));
    kit.refresh_token_for(&kit.user, Some(&kit.app2));
    kit.refresh_token_for(&kit.user2, Some(&kit.app));
    let list = |query: &str, authorization: &str| {
        let req = with_auth(
            PluginRequest::new(Method::GET, &format!("/api/jwt/refresh?{query}")),
            authorization,
        );
        block_on(retrieve_for_user(&req, &kit.context))
    };
    let user = format!("userId={}", kit.user.id);
    let b = body(&list(&user, Kit::GLOBAL_KEY).expect("ok"));
    assert_eq!(b["refreshTokens"].as_array().map(Vec::len), Some(2));
    let b = body(&list(&user, Kit::OTHER_TENANT_KEY).expect("ok"));
    assert_eq!(b["refreshTokens"], serde_json::json!([]));
    assert_eq!(list("", Kit::GLOBAL_KEY).unwrap_err().status(), 400);
    let err = list("userId=bad", Kit::GLOBAL_KEY).unwrap_err();
    assert_eq!(error_code(&err, "userId"), "[invalid]userId");

    // a user's own JWT lists that user's tokens
    let jwt = format!("Bearer {}", kit.access_token_for(&kit.user));
    let b = body(&list("", &jwt).expect("ok"));
    assert_eq!(b["refreshTokens"].as_array().map(Vec::len), Some(2));
    let other = format!("userId={}", kit.user2.id);
    assert_eq!(list(&other, &jwt).unwrap_err().status(), 401);
}

// --- revoke ----------------------------------------------------------------------------------

fn delete(query: &str, authorization: &str) -> PluginRequest {
    with_auth(
        PluginRequest::new(Method::DELETE, &format!("/api/jwt/refresh?{query}")),
        authorization,
    )
}

#[test]
fn revoke_target_selection() {
    let (u, a) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(
        revoke_target(Some("t".into()), None, None).expect("ok"),
        RevokeTarget::Token("t".into())
    );
    // A token with a user or an application: which was meant? Refused, never one of them.
    for (user, app) in [(Some(u), Some(a)), (Some(u), None), (None, Some(a))] {
        let err = revoke_target(Some("t".into()), user, app).unwrap_err();
        assert!(format!("{err:?}").contains("[AmbiguousRequest]"), "{err:?}");
    }
    assert_eq!(
        revoke_target(None, Some(u), Some(a)).expect("ok"),
        RevokeTarget::UserApplication {
            user_id: u,
            application_id: a
        }
    );
    assert_eq!(
        revoke_target(None, Some(u), None).expect("ok"),
        RevokeTarget::User(u)
    );
    assert_eq!(
        revoke_target(None, None, Some(a)).expect("ok"),
        RevokeTarget::Application(a)
    );
    assert_eq!(revoke_target(None, None, None).unwrap_err().status(), 400);
}

#[test]
fn revoke_by_token_value_in_query_form_or_json() {
    let kit = Kit::new();
    let a = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let res = block_on(revoke(
        &delete(&format!("token={}", a.token), Kit::GLOBAL_KEY),
        &kit.context,
    ))
    .expect("ok");
    assert_eq!(res.status, 200);
    assert!(res.body.is_empty());
    assert!(kit.store.token_by_value(&a.token).is_none());
    assert!(kit
        .tokens
        .revocations()
        .contains(&(RevocationScope::Session(a.id), kit.clock.now_seconds())));

    let b = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let mut req = delete("", Kit::GLOBAL_KEY);
    req.headers.insert(
        "content-type",
        "application/x-www-form-urlencoded".parse().expect("header"),
    );
    req.body = format!("token={}", b.token).into_bytes();
    assert_eq!(
        block_on(revoke(&req, &kit.context)).expect("ok").status,
        200
    );
    assert!(kit.store.token_by_value(&b.token).is_none());

    let c = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let mut req = delete("", Kit::GLOBAL_KEY);
    req.headers
        .insert("content-type", "application/json".parse().expect("header"));
    req.body = serde_json::to_vec(&serde_json::json!({"token": c.token})).expect("body");
    assert_eq!(
        block_on(revoke(&req, &kit.context)).expect("ok").status,
        200
    );
    assert!(kit.store.token_by_value(&c.token).is_none());

    let err = block_on(revoke(
        &delete("token=unknown", Kit::GLOBAL_KEY),
        &kit.context,
    ))
    .unwrap_err();
    assert_eq!(err.status(), 404);
    let err = block_on(revoke(&delete("", Kit::GLOBAL_KEY), &kit.context)).unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn revoke_single_tokens_with_the_owners_jwt() {
    let kit = Kit::new();
    let mine = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let theirs = kit.refresh_token_for(&kit.user2, Some(&kit.app));
    let jwt = format!("Bearer {}", kit.access_token_for(&kit.user));

    let err = block_on(revoke(
        &delete(&format!("token={}", theirs.token), &jwt),
        &kit.context,
    ))
    .unwrap_err();
    assert_eq!(err.status(), 401);
    assert!(kit.store.token_by_value(&theirs.token).is_some());

    let mut by_id = PluginRequest::new(Method::DELETE, &format!("/api/jwt/refresh/{}", theirs.id));
    by_id
        .path_params
        .insert("tokenId".into(), theirs.id.to_string());
    let by_id = with_auth(by_id, &jwt);
    assert_eq!(
        block_on(revoke_by_id(&by_id, &kit.context))
            .unwrap_err()
            .status(),
        401
    );

    let mut mine_by_id =
        PluginRequest::new(Method::DELETE, &format!("/api/jwt/refresh/{}", mine.id));
    mine_by_id
        .path_params
        .insert("tokenId".into(), mine.id.to_string());
    // the access_token cookie works too
    mine_by_id.headers.insert(
        "cookie",
        format!("access_token={}", kit.access_token_for(&kit.user))
            .parse()
            .expect("header"),
    );
    assert_eq!(
        block_on(revoke_by_id(&mine_by_id, &kit.context))
            .expect("ok")
            .status,
        200
    );
    assert!(kit.store.token_by_value(&mine.token).is_none());
    assert_eq!(
        block_on(revoke_by_id(&mine_by_id, &kit.context))
            .unwrap_err()
            .status(),
        404
    );

    // a JWT may not revoke in bulk
    let bulk = delete(&format!("userId={}", kit.user.id), &jwt);
    assert_eq!(
        block_on(revoke(&bulk, &kit.context)).unwrap_err().status(),
        401
    );
}

#[test]
fn revoke_by_id_with_api_keys_respects_tenants() {
    let kit = Kit::new();
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let request = |authorization: &str, id: &str| {
        let mut req = PluginRequest::new(Method::DELETE, &format!("/api/jwt/refresh/{id}"));
        req.path_params.insert("tokenId".into(), id.into());
        with_auth(req, authorization)
    };
    let id = rt.id.to_string();
    let err = block_on(revoke_by_id(
        &request(Kit::OTHER_TENANT_KEY, &id),
        &kit.context,
    ))
    .unwrap_err();
    assert_eq!(err.status(), 404);
    assert!(kit.store.token_by_value(&rt.token).is_some());
    let err = block_on(revoke_by_id(&request(Kit::GLOBAL_KEY, "x"), &kit.context)).unwrap_err();
    assert_eq!(error_code(&err, "tokenId"), "[invalid]tokenId");
    let res = block_on(revoke_by_id(&request(Kit::TENANT_KEY, &id), &kit.context)).expect("ok");
    assert_eq!(res.status, 200);
    assert!(kit.store.token_by_value(&rt.token).is_none());
}

#[test]
fn revoke_in_bulk() {
    let kit = Kit::new();
    let now = kit.clock.now_seconds();
    let u_a = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let u_a2 = kit.refresh_token_for(&kit.user, Some(&kit.app2));
    let u2_a = kit.refresh_token_for(&kit.user2, Some(&kit.app));
    let other = kit.refresh_token_for(&kit.other_user, Some(&kit.other_app));

    // user + application
    let q = format!("userId={}&applicationId={}", kit.user.id, kit.app.id);
    assert_eq!(
        block_on(revoke(&delete(&q, Kit::GLOBAL_KEY), &kit.context))
            .expect("ok")
            .status,
        200
    );
    assert!(kit.store.token_by_value(&u_a.token).is_none());
    assert!(kit.store.token_by_value(&u_a2.token).is_some());
    assert!(kit.tokens.revocations().contains(&(
        RevocationScope::UserApplication(kit.user.id, kit.app.id),
        now
    )));

    // application
    let q = format!("applicationId={}", kit.app.id);
    block_on(revoke(&delete(&q, Kit::GLOBAL_KEY), &kit.context)).expect("ok");
    assert!(kit.store.token_by_value(&u2_a.token).is_none());
    // Dated as the store dated it: in the same second as the user's revocation for this
    // application, whose tokens it also covers, so one second after it.
    assert!(kit
        .tokens
        .revocations()
        .contains(&(RevocationScope::Application(kit.app.id), now + 1)));

    // user
    let q = format!("userId={}", kit.user.id);
    block_on(revoke(&delete(&q, Kit::TENANT_KEY), &kit.context)).expect("ok");
    assert!(kit.store.token_by_value(&u_a2.token).is_none());
    assert!(kit
        .tokens
        .revocations()
        .contains(&(RevocationScope::User(kit.user.id), now + 2)));

    // another tenant's user or application is out of reach of a tenant-locked key
    for q in [
        format!("userId={}", kit.other_user.id),
        format!("applicationId={}", kit.other_app.id),
        format!(
            "userId={}&applicationId={}",
            kit.other_user.id, kit.other_app.id
        ),
    ] {
        let err = block_on(revoke(&delete(&q, Kit::TENANT_KEY), &kit.context)).unwrap_err();
        assert_eq!(err.status(), 404, "{q}");
    }
    assert!(kit.store.token_by_value(&other.token).is_some());

    let q = format!("userId={}", Uuid::new_v4());
    let err = block_on(revoke(&delete(&q, Kit::GLOBAL_KEY), &kit.context)).unwrap_err();
    assert_eq!(err.status(), 404);
    let err = block_on(revoke(
        &delete("applicationId=zzz", Kit::GLOBAL_KEY),
        &kit.context,
    ))
    .unwrap_err();
    assert_eq!(error_code(&err, "applicationId"), "[invalid]applicationId");
    let err = block_on(revoke(
        &delete(&format!("userId={}", kit.user.id), "bad-key"),
        &kit.context,
    ))
    .unwrap_err();
    assert_eq!(err.status(), 401);
}

#[test]
fn revoked_sessions_stop_their_access_tokens() {
    let kit = Kit::new();
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let b = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    let access = b["token"].as_str().expect("token").to_string();
    assert!(kit.tokens.verify(&access).is_ok());
    let q = format!("token={}", rt.token);
    block_on(revoke(&delete(&q, Kit::GLOBAL_KEY), &kit.context)).expect("ok");
    assert!(kit.tokens.verify(&access).is_err());
}

#[test]
fn the_race_window_serves_the_same_pair_without_a_grace_period_then_refuses() {
    let mut kit = Kit::new();
    kit.context.race_window_ms = 5_000;
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let first = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    kit.clock.advance_millis(4_000);
    let again = body(&block_on(exchange(&req, &kit.context)).expect("within the window"));
    assert_eq!(again["refreshToken"], first["refreshToken"]);
    kit.clock.advance_millis(2_000);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    // Past the window a replay is a reuse: the policy revokes the token.
    assert_eq!(kit.store.token_count(), 0);
}

#[test]
fn a_request_that_found_the_value_live_and_lost_the_rotation_race_gets_its_outcome() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    // The store answers the lookup with the value as it was: as if the request read it just
    // before the concurrent rotation committed.
    kit.store
        .find_rotated
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    let first = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    let loser = body(&block_on(exchange(&req, &kit.context)).expect("overlapped"));
    assert_eq!(loser["refreshToken"], first["refreshToken"]);
    assert_eq!(loser["token"], first["token"]);
    assert_eq!(kit.store.token_count(), 1, "no reuse");
    // A rotation dated long before the lookup is no race: a reuse, and the policy acts.
    kit.clock.advance_millis(6_000);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    assert_eq!(kit.store.token_count(), 0);
}

#[test]
fn a_retired_value_presented_while_this_node_still_rotates_it_gets_the_outcome() {
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    // The first exchange has committed its rotation but not answered yet.
    let rotating = kit.context.rotations.begin_rotation(&rt.token);
    let first = body(&block_on(exchange(&req, &kit.context)).expect("ok"));
    let overlapping = body(&block_on(exchange(&req, &kit.context)).expect("overlapped"));
    assert_eq!(overlapping["refreshToken"], first["refreshToken"]);
    assert_eq!(kit.store.token_count(), 1);
    // Once it has answered, the same value is a reuse.
    drop(rotating);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    assert_eq!(kit.store.token_count(), 0);
}

#[test]
fn a_retry_after_an_unconfirmed_rotation_gets_its_outcome_once() {
    use std::sync::atomic::Ordering::SeqCst;
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    // The rotation commits but its acknowledgement is lost: the client sees a 503.
    kit.store.lose_rotation_ack.store(true, SeqCst);
    let lost = block_on(exchange(&req, &kit.context)).unwrap_err();
    assert_eq!(lost.status(), 503);
    let successor = kit.store.token_by_value(&rt.token);
    assert!(successor.is_none(), "the rotation committed");
    kit.store.lose_rotation_ack.store(false, SeqCst);
    // The retry with the old value gets the rotation's outcome…
    kit.clock.advance_millis(2_000);
    let retry = body(&block_on(exchange(&req, &kit.context)).expect("retry"));
    let current = retry["refreshToken"].as_str().expect("value").to_string();
    assert!(
        kit.store.token_by_value(&current).is_some(),
        "the live successor"
    );
    assert_eq!(retry["refreshTokenId"], rt.id.to_string());
    // …once: presenting it again is a reuse, and the policy acts.
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    assert_eq!(kit.store.token_count(), 0);
}

#[test]
fn a_refresh_abandoned_while_the_store_rotates_leaves_one_retry() {
    use std::future::Future;
    use std::sync::atomic::Ordering::SeqCst;
    use std::task::{Context, Poll, Waker};
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    // The rotation commits, and the request is dropped before the store's reply arrives (its
    // handler aborted at the API's time limit): the client got a 503.
    kit.store.stall_after_rotation.store(true, SeqCst);
    {
        let mut abandoned = std::pin::pin!(exchange(&req, &kit.context));
        let polled = abandoned
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(matches!(polled, Poll::Pending), "waiting for the store");
    }
    kit.store.stall_after_rotation.store(false, SeqCst);
    assert!(
        kit.store.token_by_value(&rt.token).is_none(),
        "the rotation committed"
    );
    // The retry with the old value gets the rotation's outcome, once.
    kit.clock.advance_millis(2_000);
    let retry = body(&block_on(exchange(&req, &kit.context)).expect("retry"));
    assert_eq!(retry["refreshTokenId"], rt.id.to_string());
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
}

#[test]
fn a_retry_after_an_unconfirmed_rotation_is_bounded_in_time() {
    use std::sync::atomic::Ordering::SeqCst;
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    kit.store.lose_rotation_ack.store(true, SeqCst);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        503
    );
    kit.store.lose_rotation_ack.store(false, SeqCst);
    kit.clock
        .advance_millis(gatehouse_refresh::UNCONFIRMED_RETRY_MS + 1);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    assert_eq!(kit.store.token_count(), 0, "a late replay is a reuse");
}

#[test]
fn a_rotation_that_failed_before_committing_leaves_no_extra_allowance() {
    use std::sync::atomic::Ordering::SeqCst;
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let rt = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let req = refresh_request(Some(serde_json::json!({"refreshToken": rt.token})), None);
    kit.store.fail_rotation.store(true, SeqCst);
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        503
    );
    kit.store.fail_rotation.store(false, SeqCst);
    // Nothing committed: the value is still live and rotates normally…
    let rotated = body(&block_on(exchange(&req, &kit.context)).expect("the retry rotates"));
    assert_ne!(rotated["refreshToken"], rt.token.as_str());
    // …and a replay of it afterwards is a reuse: the 503 left no allowance behind.
    assert_eq!(
        block_on(exchange(&req, &kit.context)).unwrap_err().status(),
        400
    );
    assert_eq!(kit.store.token_count(), 0);
}

/// The edge's exchange for a route's application: a live value of another application (or of
/// none) is refused as `OtherApplication` naming its holder, with nothing written (a
/// one-time-use value is not rotated); a value of the route's application is exchanged; a
/// value that is not live is decided as by the unscoped exchange.
#[test]
fn an_exchange_for_an_application_leaves_another_applications_token_untouched() {
    use gatehouse_refresh::{exchange_refresh_token_for_application, RefreshError};
    let kit = Kit::new();
    use_one_time_tokens(&kit, 0, true);
    let token = kit.refresh_token_for(&kit.user, Some(&kit.app));
    let unscoped = kit.refresh_token_for(&kit.user, None);
    let env = || crate::common::refresh_env(&kit.context);
    for (value, holder) in [(&token.token, Some(kit.app.id)), (&unscoped.token, None)] {
        let refused = block_on(exchange_refresh_token_for_application(
            env(),
            value,
            None,
            kit.app2.id,
        ));
        assert_eq!(refused.err(), Some(RefreshError::OtherApplication(holder)));
        assert_eq!(
            kit.store.token_by_value(value).map(|t| t.meta_data),
            Some(Default::default()),
            "nothing written"
        );
    }
    let exchanged = block_on(exchange_refresh_token_for_application(
        env(),
        &token.token,
        None,
        kit.app.id,
    ))
    .expect("the route's own application exchanges");
    assert!(exchanged.rotated);
    assert_eq!(kit.store.token_by_value(&token.token), None);
    // The retired value is now decided as a reuse, whatever the route's application.
    let reused = block_on(exchange_refresh_token_for_application(
        env(),
        &token.token,
        None,
        kit.app2.id,
    ));
    assert_eq!(reused.err(), Some(RefreshError::AlreadyRotated));
}
