//! Minting: a new refresh token (at login, or for another application by `GET /api/jwt/issue`),
//! a token after a use or its one-time-use successor, and the access token of a refresh
//! token's session.

use uuid::Uuid;

use gatehouse_plugin_api::credentials::ip_address;
use gatehouse_plugin_api::model::{
    Application, RefreshToken, RefreshTokenMetaData, Registration, Tenant, User,
};
use gatehouse_plugin_api::store::StoreError;
use gatehouse_plugin_api::tokens::{AccessTokenRequest, IssuedToken};

use crate::env::RefreshEnv;
use crate::error::RefreshError;
use crate::policy::{
    first_issued_instant, resolve_refresh_policy, sso_refresh_token_allowed,
    token_expiration_instant, RefreshPolicy,
};

/// The `authenticationType` of access tokens minted from a refresh token.
pub const REFRESH_TOKEN_AUTHENTICATION_TYPE: &str = "REFRESH_TOKEN";

/// A new token (new id) for `user`, starting now, with its expiration under `policy`.
pub fn new_refresh_token(
    policy: &RefreshPolicy,
    value: String,
    user: &User,
    application_id: Option<Uuid>,
    now: i64,
    meta_data: RefreshTokenMetaData,
) -> RefreshToken {
    RefreshToken {
        id: Uuid::new_v4(),
        token: value,
        user_id: user.id,
        application_id,
        tenant_id: user.tenant_id,
        insert_instant: now,
        start_instant: now,
        first_issued_instant: now,
        expiration_instant: policy.expiration_instant(now, now),
        meta_data,
    }
}

/// `token` after a use at `now` from `client_ip`: last access recorded, window moved for sliding
/// policies, expiration recomputed.
pub fn after_use(
    policy: &RefreshPolicy,
    token: &RefreshToken,
    now: i64,
    client_ip: Option<&str>,
) -> RefreshToken {
    let mut next = token.clone();
    next.first_issued_instant = first_issued_instant(token);
    next.start_instant = policy.start_after_use(token.start_instant, now);
    next.expiration_instant = if policy.slides() {
        // the window moved: the stored expiration of the previous window no longer applies
        policy.expiration_instant(next.start_instant, next.first_issued_instant)
    } else {
        token_expiration_instant(policy, token)
    };
    next.meta_data.device.last_accessed_instant = Some(now);
    if let Some(ip) = client_ip.and_then(ip_address) {
        next.meta_data.device.last_accessed_address = Some(ip);
    }
    next
}

/// The one-time-use successor of `token`: same id, new `value`, issued now, window per
/// [`after_use`].
pub fn rotated_successor(
    policy: &RefreshPolicy,
    token: &RefreshToken,
    value: String,
    now: i64,
    client_ip: Option<&str>,
) -> RefreshToken {
    let mut next = after_use(policy, token, now, client_ip);
    next.token = value;
    next.insert_instant = now;
    next
}

/// Issues and stores (durably, before returning) a refresh token for `user` and `application`
/// (or none), under the tenant/application policy, with a value from
/// [`TokenService::new_refresh_token_value`](gatehouse_plugin_api::tokens::TokenService::new_refresh_token_value).
pub async fn issue_refresh_token(
    env: RefreshEnv<'_>,
    user: &User,
    tenant: &Tenant,
    application: Option<&Application>,
    meta_data: RefreshTokenMetaData,
) -> Result<RefreshToken, StoreError> {
    let policy = resolve_refresh_policy(tenant, application);
    let token = new_refresh_token(
        &policy,
        env.tokens.new_refresh_token_value(),
        user,
        application.map(|a| a.id),
        env.clock.now_millis(),
        meta_data,
    );
    env.store.insert_refresh_token(&token).await?;
    Ok(token)
}

/// A new access token for the session of refresh token `session_id` (`sid`), authentication
/// type `REFRESH_TOKEN`. Its claims are decided when called; an expensive signature (RSA) is
/// made on the token service's signing pool while the caller's thread serves other requests,
/// a cheap one at once. Abandoned while the signature is made, nothing is written: the caller
/// has not reached the store yet.
pub(crate) async fn session_access_token(
    env: RefreshEnv<'_>,
    (user, tenant, application, registration): (
        &User,
        &Tenant,
        Option<&Application>,
        Option<&Registration>,
    ),
    session_id: Uuid,
) -> Result<IssuedToken, RefreshError> {
    let pending = env
        .tokens
        .prepare_access_token(&AccessTokenRequest {
            user,
            tenant,
            application,
            registration,
            authentication_type: REFRESH_TOKEN_AUTHENTICATION_TYPE,
            expires_at: None,
            session_id: Some(session_id),
        })
        .map_err(RefreshError::Token)?;
    pending.sign().await.map_err(RefreshError::Token)
}

/// For `GET /api/jwt/issue`: a refresh token for `target` derived from the presented `value`,
/// or `None` when the rules give none (unknown/expired value, another user's token, the target
/// does not generate refresh tokens, or its expiration policy differs from the source's).
///
/// The new token (new id and value) shares the source's start and first-issue instants, so its
/// expiration is computed from the original's creation. The caller checks the user is registered
/// to `target` (only registered users get refresh tokens).
pub async fn issue_sso_refresh_token(
    env: RefreshEnv<'_>,
    value: &str,
    user: &User,
    tenant: &Tenant,
    target: &Application,
) -> Result<Option<RefreshToken>, StoreError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let Some(source) = env.store.find_refresh_token(value).await? else {
        return Ok(None);
    };
    if source.user_id != user.id || source.tenant_id != user.tenant_id {
        return Ok(None);
    }
    let source_application = match source.application_id {
        Some(id) => match env.store.get_application(id).await? {
            Some(app) => Some(app),
            None => return Ok(None),
        },
        None => None,
    };
    let source_policy = resolve_refresh_policy(tenant, source_application.as_ref());
    let target_policy = resolve_refresh_policy(tenant, Some(target));
    let now = env.clock.now_millis();
    if token_expiration_instant(&source_policy, &source) <= now
        || !sso_refresh_token_allowed(&source_policy, &target_policy, target)
    {
        return Ok(None);
    }
    if source.application_id == Some(target.id) {
        let mut same = source;
        same.expiration_instant = token_expiration_instant(&target_policy, &same);
        return Ok(Some(same));
    }
    let first_issued = first_issued_instant(&source);
    let token = RefreshToken {
        id: Uuid::new_v4(),
        token: env.tokens.new_refresh_token_value(),
        user_id: user.id,
        application_id: Some(target.id),
        tenant_id: user.tenant_id,
        insert_instant: now,
        start_instant: source.start_instant,
        first_issued_instant: first_issued,
        expiration_instant: target_policy.expiration_instant(source.start_instant, first_issued),
        meta_data: source.meta_data.clone(),
    };
    if token.expiration_instant <= now {
        return Ok(None);
    }
    // Only while the source is still stored: a revocation racing this call never leaves the
    // token it earned behind.
    if !env
        .store
        .insert_refresh_token_beside(&token, source.id)
        .await?
    {
        return Ok(None);
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{token, MINUTE};
    use gatehouse_plugin_api::model::RefreshTokenExpirationPolicy;

    #[test]
    fn use_records_access_and_slides() {
        let policy = RefreshPolicy {
            time_to_live_in_minutes: 10,
            expiration_policy: RefreshTokenExpirationPolicy::SlidingWindow,
            ..Default::default()
        };
        let original = token(0, 0, 10 * MINUTE);
        let used = after_use(&policy, &original, 5 * MINUTE, Some("10.0.0.1"));
        assert_eq!(used.start_instant, 5 * MINUTE);
        assert_eq!(used.expiration_instant, 15 * MINUTE);
        assert_eq!(
            used.meta_data.device.last_accessed_instant,
            Some(5 * MINUTE)
        );
        assert_eq!(
            used.meta_data.device.last_accessed_address.as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(used.token, original.token);

        let fixed = RefreshPolicy {
            expiration_policy: RefreshTokenExpirationPolicy::Fixed,
            ..policy.clone()
        };
        let used = after_use(&fixed, &original, 5 * MINUTE, None);
        assert_eq!(used.start_instant, 0);
        assert_eq!(used.expiration_instant, 10 * MINUTE);
        assert_eq!(used.meta_data.device.last_accessed_address, None);

        let next = rotated_successor(&policy, &original, "new".into(), 5 * MINUTE, None);
        assert_eq!(next.id, original.id);
        assert_eq!(next.token, "new");
        assert_eq!(next.insert_instant, 5 * MINUTE);
        assert_eq!(next.first_issued_instant, 0);
    }

    #[test]
    fn only_ip_addresses_are_recorded_as_the_last_address() {
        assert_eq!(ip_address(" 10.0.0.1 ").as_deref(), Some("10.0.0.1"));
        assert_eq!(
            ip_address("203.0.113.9:4711").as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(ip_address("2001:DB8::1").as_deref(), Some("2001:db8::1"));
        assert_eq!(
            ip_address("[2001:db8::1]:443").as_deref(),
            Some("2001:db8::1")
        );
        for bad in [
            "",
            "unknown",
            "<script>alert(1)</script>",
            "10.0.0.1, 10.0.0.2",
        ] {
            assert_eq!(ip_address(bad), None, "{bad}");
        }
        let policy = RefreshPolicy::default();
        let mut original = token(0, 0, 0);
        original.meta_data.device.last_accessed_address = Some("10.0.0.1".into());
        let used = after_use(&policy, &original, MINUTE, Some("<b>not an address</b>"));
        assert_eq!(
            used.meta_data.device.last_accessed_address.as_deref(),
            Some("10.0.0.1"),
            "garbage is not recorded"
        );
        assert_eq!(used.meta_data.device.last_accessed_instant, Some(MINUTE));
    }
}
