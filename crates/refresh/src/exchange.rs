//! A refresh: a refresh token value exchanged for a new access token, under the rules of the
//! crate documentation: the checks on the token and its subject, `Reusable` use, one-time-use
//! rotation, the grace period and race window, requests overlapping a rotation, the one retry
//! after an unconfirmed commit, and reuse detection.

use uuid::Uuid;

use gatehouse_plugin_api::model::{
    Application, RefreshToken, RefreshTokenUsagePolicy, Registration, Tenant, User,
};
use gatehouse_plugin_api::rotations::RotationLedger;
use gatehouse_plugin_api::store::{
    read_refresh_subject, RefreshSubject, RevokeScope, Rotation, StoreError,
};
use gatehouse_plugin_api::tokens::{IssuedToken, TokenError};

use crate::env::RefreshEnv;
use crate::error::RefreshError;
use crate::issue::{after_use, rotated_successor, session_access_token};
use crate::policy::{
    resolve_refresh_policy, token_expiration_instant, RefreshPolicy, OUTCOME_MARGIN_MS,
};

/// How long (ms) a client whose refresh failed because the store's answer to the rotation was
/// an error (so the rotation may have committed) may retry once with the value it presented
/// and get the rotation's outcome, on the node that saw the error.
pub const UNCONFIRMED_RETRY_MS: i64 = 30_000;

/// A successful exchange.
#[derive(Debug, Clone)]
pub struct RefreshOutcome {
    /// The new access token (`authenticationType` `REFRESH_TOKEN`, `sid` = the refresh token id).
    pub access_token: IssuedToken,
    /// The refresh token to hand back: the same value (`Reusable`) or its successor
    /// (`OneTimeUse`); same id either way. `expiration_instant` is set.
    pub refresh_token: RefreshToken,
    /// The token's user.
    pub user: User,
    /// The user's tenant.
    pub tenant: Tenant,
    /// The token's application, when it has one.
    pub application: Option<Application>,
    /// The user's registration to that application.
    pub registration: Option<Registration>,
    /// The policy that governed the exchange.
    pub policy: RefreshPolicy,
    /// True when the value changed (one-time use), so clients must store the new one.
    pub rotated: bool,
    /// One-time use: the last instant (ms, the clock's time) at which the value presented may
    /// be answered with this outcome again under the grace period or the race window (see
    /// [`RefreshPolicy::replay_until`]); `None` when it may not (neither is configured, or the
    /// value was not retired: `Reusable`).
    pub replay_until: Option<i64>,
}

/// Exchanges a refresh token value for a new access token; see
/// [`exchange_refresh_token_scoped`]. Not scoped to a tenant.
pub async fn exchange_refresh_token(
    env: RefreshEnv<'_>,
    value: &str,
    client_ip: Option<&str>,
) -> Result<RefreshOutcome, RefreshError> {
    exchange_refresh_token_scoped(env, value, client_ip, None).await
}

/// Exchanges a refresh token value for a new access token.
///
/// Checks the token is live and unexpired (and of `tenant_id` when given), its user exists and
/// is active, and its application (if any) exists, is active, allows refresh and still has the
/// user registered. Then signs the access token first (so a signing failure never burns a
/// one-time-use value) and:
/// - `Reusable`: records the use (last access, sliding window) and returns the same token;
/// - `OneTimeUse`: rotates to a new value with the same id. A request that lost the rotation race
///   gets the winning rotation's outcome (the token that replaced it and the access token the
///   rotation issued); a retired value presented again gets it only under the rules of the
///   crate docs (grace period, race window, overlap with this node's rotation, one retry after
///   an unconfirmed commit), and is otherwise refused with [`RefreshError::AlreadyRotated`] —
///   the token revoked first when the revocation policy says `onOneTimeTokenReuse`.
///
/// Returns the outcome, or why the value cannot be exchanged (store failures as
/// [`RefreshError::Store`]: a 503, the value left usable).
pub async fn exchange_refresh_token_scoped(
    env: RefreshEnv<'_>,
    value: &str,
    client_ip: Option<&str>,
    tenant_id: Option<Uuid>,
) -> Result<RefreshOutcome, RefreshError> {
    exchange(env, value, client_ip, (tenant_id, None)).await
}

/// Exchanges a refresh token value for a route of `application` (the edge's transparent
/// refresh): as [`exchange_refresh_token`], except that a live value of another application
/// (or of none) is not exchanged — that would use it up (one-time use) for a token the route
/// refuses — and is answered [`RefreshError::OtherApplication`] with its application, nothing
/// written. The check is made on the exchange's one read. A value that is not live (unknown,
/// or retired by a rotation) is decided as by [`exchange_refresh_token`].
pub async fn exchange_refresh_token_for_application(
    env: RefreshEnv<'_>,
    value: &str,
    client_ip: Option<&str>,
    application: Uuid,
) -> Result<RefreshOutcome, RefreshError> {
    exchange(env, value, client_ip, (None, Some(application))).await
}

/// The exchange of [`exchange_refresh_token_scoped`], limited to a live token of `tenant_id`
/// (`NotFound` otherwise) and of `application` (`OtherApplication` otherwise) when given.
async fn exchange(
    env: RefreshEnv<'_>,
    value: &str,
    client_ip: Option<&str>,
    (tenant_id, application): (Option<Uuid>, Option<Uuid>),
) -> Result<RefreshOutcome, RefreshError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(RefreshError::NotFound);
    }
    // The token and what it belongs to, in one read.
    let subject = match env.store.find_refresh_subject(value).await? {
        Some(subject) => subject,
        // Not live: maybe a one-time-use value a rotation retired.
        None => return exchange_retired_value(env, value, tenant_id, Presented::Retired).await,
    };
    if application.is_some_and(|app| subject.token.application_id != Some(app)) {
        return Err(RefreshError::OtherApplication(subject.token.application_id));
    }
    if tenant_id.is_some_and(|t| t != subject.token.tenant_id) {
        return Err(RefreshError::NotFound);
    }
    let token = subject.token.clone();
    let (user, tenant, application, registration) = check_subject(subject, env.clock.now_millis())?;

    let policy = resolve_refresh_policy(&tenant, application.as_ref());
    let now = env.clock.now_millis();
    if token_expiration_instant(&policy, &token) <= now {
        return Err(RefreshError::Expired);
    }

    // From here until the answer, a request presenting this value on this node overlaps the
    // rotation (its value may already be retired in the store).
    let _rotating = (policy.usage_policy == RefreshTokenUsagePolicy::OneTimeUse)
        .then(|| env.rotations.begin_rotation(value));
    let access_token = session_access_token(
        env,
        (&user, &tenant, application.as_ref(), registration.as_ref()),
        token.id,
    )
    .await?;

    let (refresh_token, rotated) = match policy.usage_policy {
        RefreshTokenUsagePolicy::Reusable => {
            let used = after_use(&policy, &token, now, client_ip);
            env.store
                .touch_refresh_token(&used)
                .await
                .map_err(not_found_is_invalid)?;
            (used, false)
        }
        RefreshTokenUsagePolicy::OneTimeUse => {
            let next = rotated_successor(
                &policy,
                &token,
                env.tokens.new_refresh_token_value(),
                now,
                client_ip,
            );
            match rotate(env, value, &next, &policy, &access_token, now).await? {
                Rotation::Rotated(rotated) => (rotated, true),
                // A concurrent request rotated this value after this one found it live: it
                // overlapped that rotation and gets its outcome (the same pair).
                Rotation::AlreadyRotated { .. } => {
                    let presented = Presented::LostRace { found_at: now };
                    return exchange_retired_value(env, value, tenant_id, presented).await;
                }
            }
        }
    };
    let replay_until = rotated
        .then(|| policy.replay_until(now, env.race_window_ms))
        .flatten();
    Ok(outcome(
        (user, tenant, application, registration),
        policy,
        access_token,
        (refresh_token, rotated),
        replay_until,
    ))
}

/// Rotates `value` to `next`, the access token kept with the retired value while the grace
/// period or the race window can hand it out again (and a margin for clock skew). When the
/// store's answer is an error other than `NotFound`, the rotation may have committed without
/// this node learning it: the value is marked unconfirmed in the ledger so that one retry gets
/// the rotation's outcome (see [`UNCONFIRMED_RETRY_MS`]); so it is when the request is abandoned
/// before the store answered. Returns the store's [`Rotation`].
async fn rotate(
    env: RefreshEnv<'_>,
    value: &str,
    next: &RefreshToken,
    policy: &RefreshPolicy,
    access_token: &IssuedToken,
    now: i64,
) -> Result<Rotation, RefreshError> {
    // A value found live again means an earlier unconfirmed rotation did not commit.
    env.rotations.clear_unconfirmed(value);
    let until = policy.outcome_until(now, env.race_window_ms);
    let outcome = Some((access_token.token.as_str(), until));
    // Marks the value unconfirmed unless the store answers: also when this request is
    // abandoned while waiting (its handler aborted at the API's time limit).
    let unanswered =
        env.rotations
            .await_rotation(value, now.saturating_add(UNCONFIRMED_RETRY_MS), now);
    match env.store.rotate_refresh_token(value, next, outcome).await {
        Ok(rotation) => {
            unanswered.answered();
            Ok(rotation)
        }
        Err(StoreError::NotFound) => {
            unanswered.answered();
            Err(RefreshError::NotFound)
        }
        Err(e) => {
            drop(unanswered);
            Err(RefreshError::Store(e))
        }
    }
}

/// How a request came to present a retired value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    /// The value was already retired when the request looked it up.
    Retired,
    /// The request found the value live at `found_at` (ms) and lost the rotation race.
    LostRace {
        /// When the request found the value live.
        found_at: i64,
    },
}

/// The outcome of an exchange for this subject, the refresh token's expiry computed under
/// `policy`.
fn outcome(
    (user, tenant, application, registration): (
        User,
        Tenant,
        Option<Application>,
        Option<Registration>,
    ),
    policy: RefreshPolicy,
    access_token: IssuedToken,
    (mut refresh_token, rotated): (RefreshToken, bool),
    replay_until: Option<i64>,
) -> RefreshOutcome {
    refresh_token.expiration_instant = token_expiration_instant(&policy, &refresh_token);
    RefreshOutcome {
        access_token,
        refresh_token,
        user,
        tenant,
        application,
        registration,
        policy,
        rotated,
        replay_until,
    }
}

/// The user, tenant, application and registration a refresh token belongs to, each checked in
/// this order: the user exists, is active and its account not expired at `now_ms`, the tenant exists, the application (when the
/// token has one) exists, is active and allows refresh, the user is registered to it. Returns
/// them, or the first check that failed.
pub(crate) fn check_subject(
    subject: RefreshSubject,
    now_ms: i64,
) -> Result<(User, Tenant, Option<Application>, Option<Registration>), RefreshError> {
    let user = subject.user.ok_or(RefreshError::UserNotFound)?;
    if !user.may_log_in(now_ms) {
        return Err(RefreshError::UserInactive);
    }
    let tenant = subject.tenant.ok_or(RefreshError::UserNotFound)?;
    if subject.token.application_id.is_none() {
        return Ok((user, tenant, None, None));
    }
    let application = subject
        .application
        .filter(|a| a.active)
        .ok_or(RefreshError::ApplicationUnavailable)?;
    if application.login_configuration.allow_token_refresh == Some(false) {
        return Err(RefreshError::RefreshNotAllowed);
    }
    let registration = subject.registration.ok_or(RefreshError::NotRegistered)?;
    Ok((user, tenant, Some(application), Some(registration)))
}

/// A request with a value a one-time-use rotation retired. When [`retired_value_allowed`] says
/// so it gets the pair the rotation produced (the access token recorded with it, when still
/// valid, else a fresh one for the same session) as long as the value that rotation produced
/// is still the token's current one; otherwise it is refused with
/// [`RefreshError::AlreadyRotated`] and, when the policy says `onOneTimeTokenReuse`, the whole
/// token is revoked first, as a stolen-token signal. `NotFound` when the value was never
/// rotated (or its token is gone, or belongs to another tenant than `tenant_id`).
async fn exchange_retired_value(
    env: RefreshEnv<'_>,
    value: &str,
    tenant_id: Option<Uuid>,
    presented: Presented,
) -> Result<RefreshOutcome, RefreshError> {
    let Some(Rotation::AlreadyRotated {
        current,
        rotated_at,
        access_token,
    }) = env.store.find_rotated_refresh_token(value).await?
    else {
        return Err(RefreshError::NotFound);
    };
    if tenant_id.is_some_and(|t| t != current.tenant_id) {
        return Err(RefreshError::NotFound);
    }
    let subject = read_refresh_subject(env.store, current.clone()).await?;
    let (user, tenant, application, registration) = check_subject(subject, env.clock.now_millis())?;
    let policy = resolve_refresh_policy(&tenant, application.as_ref());
    let now = env.clock.now_millis();
    let rules = (env.rotations, env.race_window_ms);
    // Only this value's own rotation's outcome: once the value that replaced it was rotated in
    // turn (the token's current value came from a later rotation), that outcome is gone, and
    // handing out the current value would give a later rotation's pair to whoever still holds
    // this one. Refused as any other reuse.
    let rotated_since = current.insert_instant > rotated_at;
    if rotated_since || !retired_value_allowed(rules, &policy, value, presented, (rotated_at, now))
    {
        if policy.revoke_on_one_time_token_reuse {
            revoke_reused(env, current.id).await?;
        }
        return Err(RefreshError::AlreadyRotated);
    }
    if token_expiration_instant(&policy, &current) <= now {
        return Err(RefreshError::Expired);
    }
    let recorded = match access_token.map(|token| (env.tokens.verify(&token), token)) {
        // The session (or its user or application) was revoked: no replay.
        Some((Err(TokenError::Revoked), _)) => return Err(RefreshError::NotFound),
        Some((Ok(claims), token)) => Some((claims, token)),
        _ => None,
    };
    let recorded = recorded.map(|(claims, token)| IssuedToken {
        expiration_instant: claims.exp * 1000,
        jti: claims
            .claims
            .get("jti")
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
            .unwrap_or_default(),
        token,
    });
    let access_token = match recorded {
        Some(token) => token,
        None => {
            session_access_token(
                env,
                (&user, &tenant, application.as_ref(), registration.as_ref()),
                current.id,
            )
            .await?
        }
    };
    // Revoked while this replay ran (after its reads, before its answer): the token is not
    // handed out. A revocation committed after this read dates the token within it.
    if env.store.get_refresh_token(current.id).await?.is_none() {
        return Err(RefreshError::NotFound);
    }
    let replay_until = policy.replay_until(rotated_at, env.race_window_ms);
    Ok(outcome(
        (user, tenant, application, registration),
        policy,
        access_token,
        (current, true),
        replay_until,
    ))
}

/// True when a retired `value` (rotated at `rotated_at`, presented at `now`, both ms) may get its
/// rotation's outcome: within the grace period or the race window; or the request overlapped the
/// rotation — it found the value live and lost the race (a rotation dated no more than
/// [`OUTCOME_MARGIN_MS`] before it found the value, for clocks of other nodes), or this node is
/// still rotating the value; or it is the one retry allowed after this node saw the rotation's
/// commit unconfirmed (that allowance is used up).
fn retired_value_allowed(
    (rotations, race_window_ms): (&RotationLedger, i64),
    policy: &RefreshPolicy,
    value: &str,
    presented: Presented,
    (rotated_at, now): (i64, i64),
) -> bool {
    let overlapped = match presented {
        Presented::LostRace { found_at } => {
            rotated_at.saturating_add(OUTCOME_MARGIN_MS) >= found_at
        }
        Presented::Retired => rotations.is_rotating(value),
    };
    policy.reuse_allowed(rotated_at, now, race_window_ms)
        || overlapped
        || rotations.take_unconfirmed(value, now)
}

/// A store `NotFound` during touch/rotate means the token died meanwhile (revoked): an invalid
/// token, not a missing resource.
fn not_found_is_invalid(e: StoreError) -> RefreshError {
    match e {
        StoreError::NotFound => RefreshError::NotFound,
        other => RefreshError::Store(other),
    }
}

/// Revokes a token whose rotated value was reused, and cuts off its access tokens.
async fn revoke_reused(env: RefreshEnv<'_>, id: Uuid) -> Result<(), RefreshError> {
    let revoked = env
        .store
        .revoke_refresh_tokens(&RevokeScope::Id(id))
        .await?;
    // Dated as the store dated it, as every other node reads it.
    for scope in &revoked.edge {
        env.tokens.record_revocation(*scope, revoked.at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_overlapped_the_rotation_gets_its_outcome_without_grace() {
        let policy = RefreshPolicy::default();
        let ledger = RotationLedger::new();
        let rules = (&ledger, 0);
        let at = (10_000, 10_000);
        // sequential: refused
        assert!(!retired_value_allowed(
            rules,
            &policy,
            "v",
            Presented::Retired,
            at
        ));
        // this node is still rotating the value: overlapped
        let rotating = ledger.begin_rotation("v");
        assert!(retired_value_allowed(
            rules,
            &policy,
            "v",
            Presented::Retired,
            at
        ));
        assert!(!retired_value_allowed(
            rules,
            &policy,
            "w",
            Presented::Retired,
            at
        ));
        drop(rotating);
        assert!(!retired_value_allowed(
            rules,
            &policy,
            "v",
            Presented::Retired,
            at
        ));
        // found live, then lost the race: overlapped, unless the rotation is dated well before
        // the lookup (a stale read, not a race)
        let lost = |found_at| Presented::LostRace { found_at };
        assert!(retired_value_allowed(rules, &policy, "v", lost(9_000), at));
        assert!(retired_value_allowed(rules, &policy, "v", lost(15_000), at));
        assert!(!retired_value_allowed(
            rules,
            &policy,
            "v",
            lost(15_001),
            at
        ));
    }

    #[test]
    fn one_retry_after_an_unconfirmed_commit_gets_the_outcome() {
        let policy = RefreshPolicy::default();
        let ledger = RotationLedger::new();
        let rules = (&ledger, 0);
        ledger.mark_unconfirmed("v", 10_000 + UNCONFIRMED_RETRY_MS, 10_000);
        let retry = (10_000, 12_000);
        assert!(retired_value_allowed(
            rules,
            &policy,
            "v",
            Presented::Retired,
            retry
        ));
        assert!(
            !retired_value_allowed(rules, &policy, "v", Presented::Retired, retry),
            "only once"
        );
        ledger.mark_unconfirmed("v", 10_000 + UNCONFIRMED_RETRY_MS, 10_000);
        let late = (10_000, 10_001 + UNCONFIRMED_RETRY_MS);
        assert!(!retired_value_allowed(
            rules,
            &policy,
            "v",
            Presented::Retired,
            late
        ));
        // within the grace period the mark is not used up
        let grace = RefreshPolicy {
            grace_period_in_seconds: 5,
            ..Default::default()
        };
        ledger.mark_unconfirmed("w", 10_000 + UNCONFIRMED_RETRY_MS, 10_000);
        assert!(retired_value_allowed(
            rules,
            &grace,
            "w",
            Presented::Retired,
            retry
        ));
        assert!(retired_value_allowed(
            rules,
            &policy,
            "w",
            Presented::Retired,
            retry
        ));
    }
}
