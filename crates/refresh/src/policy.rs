//! The refresh-token policy: FusionAuth's JWT defaults, the settings in force for a
//! tenant/application pair ([`JwtSettings`], [`RefreshPolicy`]), and the instant arithmetic
//! (expiry under each expiration policy, the grace period, the race window, how long a
//! rotation's outcome is kept). Pure functions only.

use uuid::Uuid;

use gatehouse_plugin_api::model::{
    Application, JwtConfiguration, RefreshToken, RefreshTokenExpirationPolicy,
    RefreshTokenUsagePolicy, Tenant,
};

/// FusionAuth's default `timeToLiveInSeconds` of access tokens (1 hour).
pub const DEFAULT_TIME_TO_LIVE_IN_SECONDS: i64 = 3600;

/// FusionAuth's default `refreshTokenTimeToLiveInMinutes` (30 days).
pub const DEFAULT_REFRESH_TOKEN_TIME_TO_LIVE_IN_MINUTES: i64 = 43_200;

/// FusionAuth's default `refreshTokenSlidingWindowConfiguration.maximumTimeToLiveInMinutes`
/// (30 days).
pub const DEFAULT_MAXIMUM_TIME_TO_LIVE_IN_MINUTES: i64 = 43_200;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{application, tenant, token, MINUTE};
    use gatehouse_plugin_api::model::{
        RefreshTokenOneTimeUseConfiguration, RefreshTokenSlidingWindowConfiguration,
    };

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
        // rotated by a node whose clock is slightly ahead of this one's
        assert!(policy.reuse_allowed(2_000, 1_000, 0));
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
}
