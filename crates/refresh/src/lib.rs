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
//! against the plugin API's [`Store`](gatehouse_plugin_api::store::Store),
//! [`TokenService`](gatehouse_plugin_api::tokens::TokenService) and
//! [`Clock`](gatehouse_plugin_api::clock::Clock) (bundled as a
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
//!
//! | module | what |
//! | --- | --- |
//! | `policy` | FusionAuth's defaults, the settings and policy in force, the instant arithmetic |
//! | `env` | [`RefreshEnv`]: the services the rules run against |
//! | `issue` | minting refresh tokens (login, SSO) and a session's access token |
//! | `exchange` | a refresh: rotation, grace, race window, overlaps, the unconfirmed retry, reuse |
//! | `error` | [`RefreshError`] and its answers |

mod env;
mod error;
mod exchange;
mod issue;
mod policy;
#[cfg(test)]
mod testkit;

pub use env::{refresh_env, RefreshEnv};
pub use error::RefreshError;
pub use exchange::{
    exchange_refresh_token, exchange_refresh_token_for_application, exchange_refresh_token_scoped,
    RefreshOutcome, UNCONFIRMED_RETRY_MS,
};
pub use issue::{
    after_use, issue_refresh_token, issue_sso_refresh_token, new_refresh_token, rotated_successor,
    REFRESH_TOKEN_AUTHENTICATION_TYPE,
};
pub use policy::{
    effective_jwt_configuration, first_issued_instant, refresh_policy_of, resolve_refresh_policy,
    sso_refresh_token_allowed, token_expiration_instant, JwtSettings, RefreshPolicy,
    DEFAULT_MAXIMUM_TIME_TO_LIVE_IN_MINUTES, DEFAULT_RACE_WINDOW_MS,
    DEFAULT_REFRESH_TOKEN_TIME_TO_LIVE_IN_MINUTES, DEFAULT_TIME_TO_LIVE_IN_SECONDS,
    OUTCOME_MARGIN_MS,
};
