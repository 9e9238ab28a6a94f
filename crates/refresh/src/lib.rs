//! Refresh-token rules: issuing refresh tokens, exchanging them for access tokens (rotation,
//! grace period, the opt-in cluster-wide race window, reuse detection), and the policy that
//! governs both.
//!
//! One-time use means one-time use: once a rotation commits, the value it retired is refused
//! (and `onOneTimeTokenReuse` acts) except
//! - within the configured grace period (`gracePeriodInSeconds`, inclusive) or the opt-in race
//!   window (`rotation.raceWindowSeconds`, 0 by default);
//! - for a request that really overlaps the rotation: one that found the value live and lost the
//!   rotation race (on any node), or one arriving while this node is still rotating the value;
//! - once, for a retry after the store's answer to the rotation was an error (the client got a
//!   503 although the rotation may have committed), within [`UNCONFIRMED_RETRY_MS`], on the node
//!   that saw the error.
//!
//! Those get the rotation's outcome: the new refresh token and the access token minted with it.
//!
//! A crate of its own, shared by the JWT plugin (`POST /api/jwt/refresh`, `GET /api/jwt/issue`),
//! the identity-provider plugin (login) and the proxy's transparent refresh. It is written only
//! against the plugin API's [`Store`], [`TokenService`] and [`Clock`] (bundled as a
//! [`RefreshEnv`]) and names no plugin context.
//!
//! The policy (lifetime, expiration and usage policies, one-time-use grace period) comes from the
//! application's `jwtConfiguration` when it is enabled, each unset field falling back to the
//! tenant's, else from the tenant's alone: see [`effective_jwt_configuration`] and
//! [`resolve_refresh_policy`]. Those and the instant arithmetic are pure functions.
//!
//! Expiry is computed FusionAuth's way, from the token's `startInstant` and the *current* policy
//! (sliding windows move `startInstant` on every use); the `expirationInstant` the store keeps is
//! honoured too, whichever is earlier.

use std::fmt;

use uuid::Uuid;

use gatehouse_plugin_api::clock::Clock;
use gatehouse_plugin_api::error::ApiError;
use gatehouse_plugin_api::model::{
    Application, JwtConfiguration, RefreshToken, RefreshTokenExpirationPolicy,
    RefreshTokenMetaData, RefreshTokenUsagePolicy, Registration, Tenant, User,
};
use gatehouse_plugin_api::rotations::RotationLedger;
use gatehouse_plugin_api::store::{RevokeScope, Rotation, Store, StoreError};
use gatehouse_plugin_api::tokens::{
    AccessTokenRequest, IssuedToken, RevocationScope, TokenError, TokenService,
};

/// FusionAuth's default `timeToLiveInSeconds` of access tokens (1 hour).
pub const DEFAULT_TIME_TO_LIVE_IN_SECONDS: i64 = 3600;

/// FusionAuth's default `refreshTokenTimeToLiveInMinutes` (30 days).
pub const DEFAULT_REFRESH_TOKEN_TIME_TO_LIVE_IN_MINUTES: i64 = 43_200;

/// FusionAuth's default `refreshTokenSlidingWindowConfiguration.maximumTimeToLiveInMinutes`
/// (30 days).
pub const DEFAULT_MAXIMUM_TIME_TO_LIVE_IN_MINUTES: i64 = 43_200;

/// The `authenticationType` of access tokens minted from a refresh token.
pub const REFRESH_TOKEN_AUTHENTICATION_TYPE: &str = "REFRESH_TOKEN";

/// How long past the grace period a rotation's access token is kept (ms): clock skew between
/// nodes sharing the store.
pub const OUTCOME_MARGIN_MS: i64 = 5_000;

/// The default race window (ms): none. When configured (`rotation.raceWindowSeconds`, an opt-in
/// for clusters behind load balancers that spread one browser's parallel requests over several
/// gateways), for that long after a one-time-use rotation a request presenting the value it
/// retired gets the rotation's outcome — the same refresh token and the same access token —
/// instead of a refusal, whatever the grace period. It gives a thief nothing they would not get
/// by racing the owner: the same pair the owner gets, and only in the seconds right after the
/// owner's own rotation. After it (and the grace period), the value is refused.
pub const DEFAULT_RACE_WINDOW_MS: i64 = 0;

/// How long (ms) a client whose refresh failed because the store's answer to the rotation was
/// an error (so the rotation may have committed) may retry once with the value it presented
/// and get the rotation's outcome, on the node that saw the error.
pub const UNCONFIRMED_RETRY_MS: i64 = 30_000;

/// The JWT settings in force for one tenant/application pair: every field present, each
/// FusionAuth default written once, here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// `timeToLiveInSeconds` of access tokens.
    pub time_to_live_in_seconds: i64,
    /// `accessTokenKeyId` (the config gives every tenant one; `None` only for stored tenants
    /// written without one).
    pub access_token_key_id: Option<Uuid>,
    /// `idTokenKeyId`.
    pub id_token_key_id: Option<Uuid>,
    /// The refresh-token rules.
    pub refresh: RefreshPolicy,
}

impl JwtSettings {
    /// The settings for tokens of `application` (or of no application) in `tenant`: the
    /// application's `jwtConfiguration` when enabled, gaps filled from the tenant's, then from
    /// FusionAuth's defaults.
    pub fn resolve(tenant: &Tenant, application: Option<&Application>) -> JwtSettings {
        JwtSettings::of(&effective_jwt_configuration(tenant, application))
    }

    /// The settings of one JWT configuration, FusionAuth's defaults filling the gaps.
    pub fn of(configuration: &JwtConfiguration) -> JwtSettings {
        JwtSettings {
            time_to_live_in_seconds: configuration
                .time_to_live_in_seconds
                .unwrap_or(DEFAULT_TIME_TO_LIVE_IN_SECONDS),
            access_token_key_id: configuration.access_token_key_id,
            id_token_key_id: configuration.id_token_key_id,
            refresh: refresh_policy_of(configuration),
        }
    }

    /// Writes FusionAuth's defaults into the unset fields of a tenant's configuration, so what
    /// the tenant API returns shows the values in force.
    pub fn fill_defaults(configuration: &mut JwtConfiguration) {
        let settings = JwtSettings::of(configuration);
        configuration
            .time_to_live_in_seconds
            .get_or_insert(settings.time_to_live_in_seconds);
        configuration
            .refresh_token_time_to_live_in_minutes
            .get_or_insert(settings.refresh.time_to_live_in_minutes);
        configuration
            .refresh_token_expiration_policy
            .get_or_insert(settings.refresh.expiration_policy);
        configuration
            .refresh_token_usage_policy
            .get_or_insert(settings.refresh.usage_policy);
    }
}

/// The services refresh-token logic needs: borrowed, so the plugin and the proxy can both build
/// one from what they hold.
#[derive(Clone, Copy)]
pub struct RefreshEnv<'a> {
    /// Where refresh tokens, users, tenants and applications live.
    pub store: &'a dyn Store,
    /// Mints access tokens and refresh token values; records revocations.
    pub tokens: &'a dyn TokenService,
    /// The current time.
    pub clock: &'a dyn Clock,
    /// The race window (ms) of one-time-use rotations (see [`DEFAULT_RACE_WINDOW_MS`]).
    pub race_window_ms: i64,
    /// This node's rotations under way or unconfirmed (one ledger per process).
    pub rotations: &'a RotationLedger,
}

impl<'a> RefreshEnv<'a> {
    /// Bundles the services a refresh needs (the race window in ms, see
    /// [`DEFAULT_RACE_WINDOW_MS`]; the process's rotation ledger).
    pub fn new(
        store: &'a dyn Store,
        tokens: &'a dyn TokenService,
        clock: &'a dyn Clock,
        race_window_ms: i64,
        rotations: &'a RotationLedger,
    ) -> Self {
        RefreshEnv {
            store,
            tokens,
            clock,
            race_window_ms,
            rotations,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------------------------

/// The refresh-token rules in force for one tenant/application pair, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// `refreshTokenTimeToLiveInMinutes`.
    pub time_to_live_in_minutes: i64,
    /// `refreshTokenExpirationPolicy`.
    pub expiration_policy: RefreshTokenExpirationPolicy,
    /// `refreshTokenUsagePolicy`.
    pub usage_policy: RefreshTokenUsagePolicy,
    /// `refreshTokenSlidingWindowConfiguration.maximumTimeToLiveInMinutes`; used only by
    /// `SlidingWindowWithMaximumLifetime`.
    pub maximum_time_to_live_in_minutes: i64,
    /// `refreshTokenOneTimeUseConfiguration.gracePeriodInSeconds`; 0 disables it.
    pub grace_period_in_seconds: i64,
    /// `refreshTokenRevocationPolicy.onOneTimeTokenReuse`: revoke the token when a rotated
    /// one-time-use value is presented again after its grace period.
    pub revoke_on_one_time_token_reuse: bool,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            time_to_live_in_minutes: DEFAULT_REFRESH_TOKEN_TIME_TO_LIVE_IN_MINUTES,
            expiration_policy: RefreshTokenExpirationPolicy::Fixed,
            usage_policy: RefreshTokenUsagePolicy::Reusable,
            maximum_time_to_live_in_minutes: DEFAULT_MAXIMUM_TIME_TO_LIVE_IN_MINUTES,
            grace_period_in_seconds: 0,
            revoke_on_one_time_token_reuse: false,
        }
    }
}

/// Milliseconds in `minutes`, never negative, saturating instead of overflowing.
fn minutes_to_millis(minutes: i64) -> i64 {
    minutes.max(0).saturating_mul(60_000)
}

impl RefreshPolicy {
    /// True when a use moves the token's start (both sliding-window policies).
    pub fn slides(&self) -> bool {
        !matches!(self.expiration_policy, RefreshTokenExpirationPolicy::Fixed)
    }

    /// When a token expires whose window starts at `start_instant` and whose family was first
    /// issued at `first_issued_instant` (all ms).
    pub fn expiration_instant(&self, start_instant: i64, first_issued_instant: i64) -> i64 {
        let window_end =
            start_instant.saturating_add(minutes_to_millis(self.time_to_live_in_minutes));
        match self.expiration_policy {
            RefreshTokenExpirationPolicy::Fixed | RefreshTokenExpirationPolicy::SlidingWindow => {
                window_end
            }
            RefreshTokenExpirationPolicy::SlidingWindowWithMaximumLifetime => {
                let cap = first_issued_instant
                    .saturating_add(minutes_to_millis(self.maximum_time_to_live_in_minutes));
                window_end.min(cap)
            }
        }
    }

    /// The start of the token's window after a use at `now`: moved for sliding windows.
    pub fn start_after_use(&self, current_start: i64, now: i64) -> i64 {
        if self.slides() {
            now
        } else {
            current_start
        }
    }

    /// True when a one-time-use value rotated at `rotated_at` may still be exchanged at `now`
    /// for the rotation's outcome by the configured rules: within the grace period (inclusive)
    /// or the race window (`race_window_ms`, see [`DEFAULT_RACE_WINDOW_MS`]).
    pub fn reuse_allowed(&self, rotated_at: i64, now: i64, race_window_ms: i64) -> bool {
        self.replay_until(rotated_at, race_window_ms)
            .is_some_and(|until| now <= until)
    }

    /// The last instant (ms, inclusive) at which a value retired at `rotated_at` may be
    /// exchanged for its rotation's outcome by the configured rules: the end of the grace period
    /// or of the race window, whichever is later; `None` when neither is configured.
    pub fn replay_until(&self, rotated_at: i64, race_window_ms: i64) -> Option<i64> {
        let grace = (self.grace_period_in_seconds > 0)
            .then(|| rotated_at.saturating_add(self.grace_period_in_seconds.saturating_mul(1000)));
        let window = (race_window_ms > 0).then(|| rotated_at.saturating_add(race_window_ms - 1));
        grace.max(window)
    }

    /// How long after a rotation at `now` its outcome must be kept (ms): the race window or
    /// the grace period, whichever is longer, and a margin for clock skew.
    pub fn outcome_until(&self, now: i64, race_window_ms: i64) -> i64 {
        let grace = self.grace_period_in_seconds.max(0).saturating_mul(1000);
        now + grace.max(race_window_ms) + OUTCOME_MARGIN_MS
    }

    /// True when a one-time-use value rotated at `rotated_at` may still be exchanged at `now`
    /// (it then yields the token that replaced it).
    pub fn grace_covers(&self, rotated_at: i64, now: i64) -> bool {
        self.grace_period_in_seconds > 0
            && now.saturating_sub(rotated_at) <= self.grace_period_in_seconds.saturating_mul(1000)
    }
}

/// The JWT configuration in force for `application` in `tenant`: the application's when it is
/// enabled (`enabled == Some(true)`), each field it leaves unset taken from the tenant's; else the
/// tenant's.
pub fn effective_jwt_configuration(
    tenant: &Tenant,
    application: Option<&Application>,
) -> JwtConfiguration {
    let base = &tenant.jwt_configuration;
    let app = match application.map(|a| &a.jwt_configuration) {
        Some(app) if app.enabled == Some(true) => app,
        _ => return base.clone(),
    };
    JwtConfiguration {
        enabled: Some(true),
        access_token_key_id: app.access_token_key_id.or(base.access_token_key_id),
        id_token_key_id: app.id_token_key_id.or(base.id_token_key_id),
        time_to_live_in_seconds: app.time_to_live_in_seconds.or(base.time_to_live_in_seconds),
        refresh_token_time_to_live_in_minutes: app
            .refresh_token_time_to_live_in_minutes
            .or(base.refresh_token_time_to_live_in_minutes),
        refresh_token_expiration_policy: app
            .refresh_token_expiration_policy
            .or(base.refresh_token_expiration_policy),
        refresh_token_usage_policy: app
            .refresh_token_usage_policy
            .or(base.refresh_token_usage_policy),
        refresh_token_one_time_use_configuration: app
            .refresh_token_one_time_use_configuration
            .clone()
            .or_else(|| base.refresh_token_one_time_use_configuration.clone()),
        refresh_token_sliding_window_configuration: app
            .refresh_token_sliding_window_configuration
            .clone()
            .or_else(|| base.refresh_token_sliding_window_configuration.clone()),
        refresh_token_revocation_policy: app
            .refresh_token_revocation_policy
            .clone()
            .or_else(|| base.refresh_token_revocation_policy.clone()),
    }
}

/// The refresh policy of one JWT configuration, FusionAuth's defaults filling the gaps.
pub fn refresh_policy_of(configuration: &JwtConfiguration) -> RefreshPolicy {
    let defaults = RefreshPolicy::default();
    RefreshPolicy {
        time_to_live_in_minutes: configuration
            .refresh_token_time_to_live_in_minutes
            .unwrap_or(defaults.time_to_live_in_minutes),
        expiration_policy: configuration
            .refresh_token_expiration_policy
            .unwrap_or(defaults.expiration_policy),
        usage_policy: configuration
            .refresh_token_usage_policy
            .unwrap_or(defaults.usage_policy),
        maximum_time_to_live_in_minutes: configuration
            .refresh_token_sliding_window_configuration
            .as_ref()
            .and_then(|c| c.maximum_time_to_live_in_minutes)
            .unwrap_or(defaults.maximum_time_to_live_in_minutes),
        grace_period_in_seconds: configuration
            .refresh_token_one_time_use_configuration
            .as_ref()
            .map(|c| c.grace_period_in_seconds)
            .unwrap_or(defaults.grace_period_in_seconds),
        revoke_on_one_time_token_reuse: configuration
            .refresh_token_revocation_policy
            .as_ref()
            .and_then(|p| p.get("onOneTimeTokenReuse"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    }
}

/// The refresh policy for tokens of `application` (or of no application) in `tenant`.
pub fn resolve_refresh_policy(tenant: &Tenant, application: Option<&Application>) -> RefreshPolicy {
    refresh_policy_of(&effective_jwt_configuration(tenant, application))
}

/// When the token family was first issued: the stored instant, else (older rows) the earliest
/// of its insert and start instants.
pub fn first_issued_instant(token: &RefreshToken) -> i64 {
    if token.first_issued_instant > 0 {
        token.first_issued_instant
    } else if token.insert_instant > 0 && token.start_instant > 0 {
        token.insert_instant.min(token.start_instant)
    } else {
        token.insert_instant.max(token.start_instant)
    }
}

/// When `token` expires under `policy`: computed from its start, and never later than the
/// expiration instant stored with it (when one is stored).
pub fn token_expiration_instant(policy: &RefreshPolicy, token: &RefreshToken) -> i64 {
    let computed = policy.expiration_instant(token.start_instant, first_issued_instant(token));
    if token.expiration_instant > 0 {
        computed.min(token.expiration_instant)
    } else {
        computed
    }
}

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

use gatehouse_plugin_api::credentials::ip_address;

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

/// The `GET /api/jwt/issue` rule: a refresh token for the target application is returned only
/// when that application generates refresh tokens and its expiration policy is the source's.
pub fn sso_refresh_token_allowed(
    source: &RefreshPolicy,
    target: &RefreshPolicy,
    target_application: &Application,
) -> bool {
    target_application
        .login_configuration
        .generate_refresh_tokens
        && source.expiration_policy == target.expiration_policy
}

// ---------------------------------------------------------------------------------------------
// Errors and outcome
// ---------------------------------------------------------------------------------------------

/// Why a refresh token could not be exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshError {
    /// No live token has this value: unknown, revoked, replaced by a rotation, or outside the
    /// tenant the request is scoped to.
    NotFound,
    /// The token is past its expiration.
    Expired,
    /// The token's user no longer exists.
    UserNotFound,
    /// The token's user is deactivated.
    UserInactive,
    /// The token's application no longer exists or is deactivated.
    ApplicationUnavailable,
    /// The application does not allow token refresh (`loginConfiguration.allowTokenRefresh`).
    RefreshNotAllowed,
    /// The user is no longer registered to the token's application.
    NotRegistered,
    /// A one-time-use value presented again after it was rotated, outside any grace period.
    AlreadyRotated,
    /// The store failed.
    Store(StoreError),
    /// Signing the access token failed.
    Token(TokenError),
}

impl RefreshError {
    /// True when the presented token is at fault (a 400), false for server-side failures.
    pub fn is_invalid_token(&self) -> bool {
        !matches!(self, RefreshError::Store(_) | RefreshError::Token(_))
    }

    /// A short, stable name for logs and metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            RefreshError::NotFound => "not_found",
            RefreshError::Expired => "expired",
            RefreshError::UserNotFound => "user_not_found",
            RefreshError::UserInactive => "user_inactive",
            RefreshError::ApplicationUnavailable => "application_unavailable",
            RefreshError::RefreshNotAllowed => "refresh_not_allowed",
            RefreshError::NotRegistered => "not_registered",
            RefreshError::AlreadyRotated => "already_rotated",
            RefreshError::Store(_) => "store_error",
            RefreshError::Token(_) => "signing_error",
        }
    }

    fn message(&self) -> &'static str {
        match self {
            RefreshError::NotFound | RefreshError::AlreadyRotated => {
                "The refresh token is not valid: it was not found or has been revoked."
            }
            RefreshError::Expired => "The refresh token has expired.",
            RefreshError::UserNotFound | RefreshError::UserInactive => {
                "The user of the refresh token does not exist or is not active."
            }
            RefreshError::ApplicationUnavailable => {
                "The application of the refresh token does not exist or is not active."
            }
            RefreshError::RefreshNotAllowed => {
                "The application of the refresh token does not allow token refresh."
            }
            RefreshError::NotRegistered => {
                "The user is not registered to the application of the refresh token."
            }
            RefreshError::Store(_) | RefreshError::Token(_) => "The refresh failed.",
        }
    }
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::Store(e) => write!(f, "refresh failed: {e}"),
            RefreshError::Token(e) => write!(f, "refresh failed: signing: {e}"),
            other => f.write_str(other.reason()),
        }
    }
}

impl std::error::Error for RefreshError {}

impl From<StoreError> for RefreshError {
    fn from(e: StoreError) -> Self {
        RefreshError::Store(e)
    }
}

impl From<RefreshError> for ApiError {
    /// Invalid tokens are a 400 with the field error `[invalid]refreshToken` (FusionAuth answers
    /// 400 for an unknown, expired or revoked refresh token); store and signing failures keep
    /// their own status.
    fn from(e: RefreshError) -> Self {
        match e {
            RefreshError::Store(store) => ApiError::from(store),
            RefreshError::Token(token) => ApiError::internal(format!("signing failed: {token}")),
            invalid => ApiError::field("refreshToken", "invalid", invalid.message()),
        }
    }
}

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

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Issues and stores (durably, before returning) a refresh token for `user` and `application`
/// (or none), under the tenant/application policy, with a value from
/// [`TokenService::new_refresh_token_value`].
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
    let value = value.trim();
    if value.is_empty() {
        return Err(RefreshError::NotFound);
    }
    let token = match env.store.find_refresh_token(value).await? {
        Some(token) => token,
        // Not live: maybe a one-time-use value a rotation retired.
        None => return exchange_retired_value(env, value, tenant_id, Presented::Retired).await,
    };
    if tenant_id.is_some_and(|t| t != token.tenant_id) {
        return Err(RefreshError::NotFound);
    }
    let (user, tenant, application, registration) = load_subject(env, &token).await?;

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
    )?;

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

/// A new access token for the session of refresh token `session_id` (`sid`), authentication
/// type `REFRESH_TOKEN`.
fn session_access_token(
    env: RefreshEnv<'_>,
    (user, tenant, application, registration): (
        &User,
        &Tenant,
        Option<&Application>,
        Option<&Registration>,
    ),
    session_id: Uuid,
) -> Result<IssuedToken, RefreshError> {
    env.tokens
        .issue_access_token(&AccessTokenRequest {
            user,
            tenant,
            application,
            registration,
            authentication_type: REFRESH_TOKEN_AUTHENTICATION_TYPE,
            expires_at: None,
            session_id: Some(session_id),
        })
        .map_err(RefreshError::Token)
}

/// The user, tenant, application and registration a refresh token belongs to, each checked:
/// the user active, the application active and allowing refresh, the user registered to it.
async fn load_subject(
    env: RefreshEnv<'_>,
    token: &RefreshToken,
) -> Result<(User, Tenant, Option<Application>, Option<Registration>), RefreshError> {
    let user = env
        .store
        .get_user(token.user_id)
        .await?
        .ok_or(RefreshError::UserNotFound)?;
    if !user.active {
        return Err(RefreshError::UserInactive);
    }
    let tenant = env
        .store
        .get_tenant(user.tenant_id)
        .await?
        .ok_or(RefreshError::UserNotFound)?;
    let Some(application_id) = token.application_id else {
        return Ok((user, tenant, None, None));
    };
    let application = env
        .store
        .get_application(application_id)
        .await?
        .filter(|a| a.active)
        .ok_or(RefreshError::ApplicationUnavailable)?;
    if application.login_configuration.allow_token_refresh == Some(false) {
        return Err(RefreshError::RefreshNotAllowed);
    }
    let registration = env
        .store
        .get_registration(user.id, application_id)
        .await?
        .ok_or(RefreshError::NotRegistered)?;
    Ok((user, tenant, Some(application), Some(registration)))
}

/// A request with a value a one-time-use rotation retired. When [`retired_value_allowed`] says
/// so it gets the pair the rotation produced (the access token recorded with it, when still
/// valid, else a fresh one for the same session); otherwise it is refused with
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
    let (user, tenant, application, registration) = load_subject(env, &current).await?;
    let policy = resolve_refresh_policy(&tenant, application.as_ref());
    let now = env.clock.now_millis();
    let rules = (env.rotations, env.race_window_ms);
    if !retired_value_allowed(rules, &policy, value, presented, (rotated_at, now)) {
        if policy.revoke_on_one_time_token_reuse {
            revoke_reused(env, current.id, now).await?;
        }
        return Err(RefreshError::AlreadyRotated);
    }
    if token_expiration_instant(&policy, &current) <= now {
        return Err(RefreshError::Expired);
    }
    let recorded = access_token.and_then(|token| {
        let claims = env.tokens.verify(&token).ok()?;
        Some(IssuedToken {
            expiration_instant: claims.exp * 1000,
            jti: claims
                .claims
                .get("jti")
                .and_then(|v| v.as_str())
                .and_then(|s| Uuid::parse_str(s).ok())
                .unwrap_or_default(),
            token,
        })
    });
    let access_token = match recorded {
        Some(token) => token,
        None => session_access_token(
            env,
            (&user, &tenant, application.as_ref(), registration.as_ref()),
            current.id,
        )?,
    };
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
async fn revoke_reused(env: RefreshEnv<'_>, id: Uuid, now: i64) -> Result<(), RefreshError> {
    env.store
        .revoke_refresh_tokens(&RevokeScope::Id(id))
        .await?;
    let session = RevocationScope::Session(id);
    let at = env.tokens.revocation_instant(&[session], now / 1000);
    env.tokens.record_revocation(session, at);
    Ok(())
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
    env.store.insert_refresh_token(&token).await?;
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_plugin_api::model::{
        LoginConfiguration, RefreshTokenOneTimeUseConfiguration,
        RefreshTokenSlidingWindowConfiguration,
    };

    const MINUTE: i64 = 60_000;

    fn tenant(configuration: JwtConfiguration) -> Tenant {
        Tenant {
            id: Uuid::new_v4(),
            name: "t".into(),
            issuer: "acme.com".into(),
            jwt_configuration: configuration,
            data: None,
        }
    }

    fn application(tenant_id: Uuid, configuration: JwtConfiguration) -> Application {
        Application {
            id: Uuid::new_v4(),
            tenant_id,
            name: "app".into(),
            roles: vec![],
            login_configuration: LoginConfiguration::default(),
            jwt_configuration: configuration,
            active: true,
            data: None,
        }
    }

    fn token(start: i64, first: i64, stored_expiration: i64) -> RefreshToken {
        RefreshToken {
            id: Uuid::new_v4(),
            token: "v".into(),
            user_id: Uuid::new_v4(),
            application_id: None,
            tenant_id: Uuid::new_v4(),
            insert_instant: start,
            start_instant: start,
            first_issued_instant: first,
            expiration_instant: stored_expiration,
            meta_data: RefreshTokenMetaData::default(),
        }
    }

    #[test]
    fn defaults_are_fusionauths() {
        let policy = resolve_refresh_policy(&tenant(JwtConfiguration::default()), None);
        assert_eq!(policy, RefreshPolicy::default());
        assert_eq!(policy.time_to_live_in_minutes, 43_200);
        assert_eq!(policy.usage_policy, RefreshTokenUsagePolicy::Reusable);
        assert_eq!(
            policy.expiration_policy,
            RefreshTokenExpirationPolicy::Fixed
        );
    }

    #[test]
    fn application_settings_apply_only_when_enabled() {
        let t = tenant(JwtConfiguration {
            refresh_token_time_to_live_in_minutes: Some(100),
            refresh_token_usage_policy: Some(RefreshTokenUsagePolicy::OneTimeUse),
            ..Default::default()
        });
        let app_settings = JwtConfiguration {
            refresh_token_time_to_live_in_minutes: Some(5),
            ..Default::default()
        };
        let disabled = application(t.id, app_settings.clone());
        assert_eq!(
            resolve_refresh_policy(&t, Some(&disabled)).time_to_live_in_minutes,
            100
        );
        let explicitly_disabled = application(
            t.id,
            JwtConfiguration {
                enabled: Some(false),
                ..app_settings.clone()
            },
        );
        assert_eq!(
            resolve_refresh_policy(&t, Some(&explicitly_disabled)).time_to_live_in_minutes,
            100
        );
        let enabled = application(
            t.id,
            JwtConfiguration {
                enabled: Some(true),
                ..app_settings
            },
        );
        let policy = resolve_refresh_policy(&t, Some(&enabled));
        assert_eq!(policy.time_to_live_in_minutes, 5);
        // unset application fields fall back to the tenant's
        assert_eq!(policy.usage_policy, RefreshTokenUsagePolicy::OneTimeUse);
    }

    #[test]
    fn nested_settings_are_read() {
        let t = tenant(JwtConfiguration {
            refresh_token_expiration_policy: Some(
                RefreshTokenExpirationPolicy::SlidingWindowWithMaximumLifetime,
            ),
            refresh_token_one_time_use_configuration: Some(RefreshTokenOneTimeUseConfiguration {
                grace_period_in_seconds: 30,
            }),
            refresh_token_sliding_window_configuration: Some(
                RefreshTokenSlidingWindowConfiguration {
                    maximum_time_to_live_in_minutes: Some(600),
                },
            ),
            refresh_token_revocation_policy: Some(serde_json::json!({"onOneTimeTokenReuse": true})),
            ..Default::default()
        });
        let policy = resolve_refresh_policy(&t, None);
        assert_eq!(policy.maximum_time_to_live_in_minutes, 600);
        assert_eq!(policy.grace_period_in_seconds, 30);
        assert!(policy.revoke_on_one_time_token_reuse);
        assert!(policy.slides());
    }

    #[test]
    fn expiration_per_policy() {
        let mut policy = RefreshPolicy {
            time_to_live_in_minutes: 10,
            maximum_time_to_live_in_minutes: 15,
            ..Default::default()
        };
        // fixed: from the start, which never moves
        assert_eq!(policy.expiration_instant(1_000, 1_000), 1_000 + 10 * MINUTE);
        assert_eq!(policy.start_after_use(1_000, 5_000), 1_000);
        // sliding: the start moves to the use
        policy.expiration_policy = RefreshTokenExpirationPolicy::SlidingWindow;
        assert_eq!(policy.start_after_use(1_000, 5_000), 5_000);
        assert_eq!(policy.expiration_instant(5_000, 1_000), 5_000 + 10 * MINUTE);
        // sliding with a maximum: capped at first issue + maximum
        policy.expiration_policy = RefreshTokenExpirationPolicy::SlidingWindowWithMaximumLifetime;
        assert_eq!(policy.expiration_instant(0, 0), 10 * MINUTE);
        assert_eq!(policy.expiration_instant(8 * MINUTE, 0), 15 * MINUTE);
    }

    #[test]
    fn expiration_never_overflows() {
        let policy = RefreshPolicy {
            time_to_live_in_minutes: i64::MAX,
            ..Default::default()
        };
        assert_eq!(policy.expiration_instant(i64::MAX - 1, 0), i64::MAX);
        let negative = RefreshPolicy {
            time_to_live_in_minutes: -5,
            ..Default::default()
        };
        assert_eq!(negative.expiration_instant(1_000, 1_000), 1_000);
    }

    #[test]
    fn stored_expiration_caps_the_computed_one() {
        let policy = RefreshPolicy {
            time_to_live_in_minutes: 10,
            ..Default::default()
        };
        assert_eq!(
            token_expiration_instant(&policy, &token(0, 0, 0)),
            10 * MINUTE
        );
        assert_eq!(
            token_expiration_instant(&policy, &token(0, 0, MINUTE)),
            MINUTE
        );
        assert_eq!(
            token_expiration_instant(&policy, &token(0, 0, 20 * MINUTE)),
            10 * MINUTE
        );
    }

    #[test]
    fn first_issue_falls_back_to_insert_and_start() {
        assert_eq!(first_issued_instant(&token(500, 100, 0)), 100);
        let mut t = token(500, 0, 0);
        t.insert_instant = 300;
        assert_eq!(first_issued_instant(&t), 300);
    }

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

    #[test]
    fn grace_period() {
        let mut policy = RefreshPolicy::default();
        assert!(!policy.grace_covers(1_000, 1_000));
        policy.grace_period_in_seconds = 10;
        assert!(policy.grace_covers(1_000, 1_000));
        assert!(policy.grace_covers(1_000, 11_000));
        assert!(!policy.grace_covers(1_000, 11_001));
        // another instance's clock slightly ahead
        assert!(policy.grace_covers(2_000, 1_000));
    }

    #[test]
    fn the_configured_policy_bounds_the_reuse_of_a_retired_value() {
        let mut policy = RefreshPolicy::default();
        // grace 0, no window: refused at once, even in the rotation's own millisecond
        assert_eq!(policy.replay_until(1_000, 0), None);
        assert!(!policy.reuse_allowed(1_000, 1_000, 0));
        // grace 5 s: inclusive bound, nothing after it
        policy.grace_period_in_seconds = 5;
        assert_eq!(policy.replay_until(1_000, 0), Some(6_000));
        assert!(policy.reuse_allowed(1_000, 6_000, 0));
        assert!(!policy.reuse_allowed(1_000, 6_001, 0));
        // a shorter race window does not shorten the grace period; a longer one extends it
        assert!(policy.reuse_allowed(1_000, 6_000, 2_000));
        assert_eq!(policy.replay_until(1_000, 10_000), Some(10_999));
        assert!(policy.reuse_allowed(1_000, 10_999, 10_000));
        assert!(!policy.reuse_allowed(1_000, 11_000, 10_000));
        // the opt-in window alone, exclusive as configured in whole seconds
        policy.grace_period_in_seconds = 0;
        assert!(policy.reuse_allowed(1_000, 3_999, 3_000));
        assert!(!policy.reuse_allowed(1_000, 4_000, 3_000));
    }

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

    #[test]
    fn sso_rule_needs_generation_and_the_same_expiration_policy() {
        let t = tenant(JwtConfiguration::default());
        let mut target = application(t.id, JwtConfiguration::default());
        let fixed = RefreshPolicy::default();
        let sliding = RefreshPolicy {
            expiration_policy: RefreshTokenExpirationPolicy::SlidingWindow,
            ..Default::default()
        };
        assert!(!sso_refresh_token_allowed(&fixed, &fixed, &target));
        target.login_configuration.generate_refresh_tokens = true;
        assert!(sso_refresh_token_allowed(&fixed, &fixed, &target));
        assert!(!sso_refresh_token_allowed(&fixed, &sliding, &target));
    }

    #[test]
    fn errors_map_to_400_or_server_statuses() {
        let invalid: ApiError = RefreshError::Expired.into();
        assert_eq!(invalid.status(), 400);
        let body: serde_json::Value =
            serde_json::from_slice(&invalid.to_response().body).expect("json");
        assert_eq!(
            body["fieldErrors"]["refreshToken"][0]["code"],
            "[invalid]refreshToken"
        );
        let down: ApiError = RefreshError::Store(StoreError::Unavailable("x".into())).into();
        assert_eq!(down.status(), 503);
        let signing: ApiError = RefreshError::Token(TokenError::CannotSign).into();
        assert_eq!(signing.status(), 500);
        assert!(RefreshError::AlreadyRotated.is_invalid_token());
        assert!(!RefreshError::Token(TokenError::CannotSign).is_invalid_token());
    }
}
