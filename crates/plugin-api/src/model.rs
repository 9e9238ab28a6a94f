//! The entities Gatehouse stores, with FusionAuth's JSON field names (camelCase), so API JSON and
//! `config.yaml` sections share one shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// How a refresh token may be used: kept (`Reusable`) or replaced on each use (`OneTimeUse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RefreshTokenUsagePolicy {
    /// The same token is returned by every refresh.
    #[default]
    Reusable,
    /// Each refresh returns a new token and the old one stops working.
    OneTimeUse,
}

/// How a refresh token's lifetime is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RefreshTokenExpirationPolicy {
    /// Expires a fixed time after it was first issued.
    #[default]
    Fixed,
    /// Expires a fixed time after it was last used.
    SlidingWindow,
    /// Sliding, but never past a maximum lifetime from the first issue.
    SlidingWindowWithMaximumLifetime,
}

/// The grace period during which a rotated one-time-use token still yields the same new pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshTokenOneTimeUseConfiguration {
    /// Seconds; 0 disables the grace period.
    #[serde(default)]
    pub grace_period_in_seconds: i64,
}

/// Sliding-window settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshTokenSlidingWindowConfiguration {
    /// The maximum lifetime from the first issue, for `SlidingWindowWithMaximumLifetime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_time_to_live_in_minutes: Option<i64>,
}

/// JWT settings of a tenant or an application. Unset fields of an application fall back to the
/// tenant's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfiguration {
    /// For applications: use these settings instead of the tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The key (`kid`) that signs access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_key_id: Option<Uuid>,
    /// The key that signs id tokens (kept for compatibility; Gatehouse signs access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_key_id: Option<Uuid>,
    /// Access token lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_to_live_in_seconds: Option<i64>,
    /// Refresh token lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_time_to_live_in_minutes: Option<i64>,
    /// `Fixed` or sliding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expiration_policy: Option<RefreshTokenExpirationPolicy>,
    /// `Reusable` or `OneTimeUse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_usage_policy: Option<RefreshTokenUsagePolicy>,
    /// Grace period for one-time-use rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_one_time_use_configuration: Option<RefreshTokenOneTimeUseConfiguration>,
    /// Sliding window maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_sliding_window_configuration: Option<RefreshTokenSlidingWindowConfiguration>,
    /// Revoke all refresh tokens of a user when one rotated token is reused after its grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_revocation_policy: Option<Value>,
}

/// A tenant: an issuer and the default JWT settings of its applications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tenant {
    /// Tenant id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// The `iss` claim of tokens issued in this tenant.
    pub issuer: String,
    /// JWT defaults.
    #[serde(default)]
    pub jwt_configuration: JwtConfiguration,
    /// Free-form data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// A role an application defines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplicationRole {
    /// Role id (generated when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
    /// Role name, e.g. `admin`.
    pub name: String,
    /// Given to new registrations that name no roles.
    #[serde(default)]
    pub is_default: bool,
    /// A super-user role.
    #[serde(default)]
    pub is_super_role: bool,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Login settings of an application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoginConfiguration {
    /// Issue refresh tokens at login.
    #[serde(default)]
    pub generate_refresh_tokens: bool,
    /// Require an API key on the login API.
    #[serde(default)]
    pub require_authentication: bool,
    /// Allow token refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_token_refresh: Option<bool>,
}

/// An application users register to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// Application id (`aud` and `applicationId` of its tokens).
    pub id: Uuid,
    /// The tenant it belongs to.
    pub tenant_id: Uuid,
    /// Display name.
    pub name: String,
    /// Roles it defines.
    #[serde(default)]
    pub roles: Vec<ApplicationRole>,
    /// Login settings.
    #[serde(default)]
    pub login_configuration: LoginConfiguration,
    /// JWT settings (used when `enabled`).
    #[serde(default)]
    pub jwt_configuration: JwtConfiguration,
    /// Whether the application is active.
    #[serde(default = "default_true")]
    pub active: bool,
    /// Free-form data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

fn default_true() -> bool {
    true
}

impl Application {
    /// The names of the roles marked `isDefault`.
    pub fn default_roles(&self) -> Vec<String> {
        self.roles
            .iter()
            .filter(|r| r.is_default)
            .map(|r| r.name.clone())
            .collect()
    }
}

/// A user. Fields follow FusionAuth's User object; unknown input fields are rejected by callers
/// that parse user input, and `data` holds free-form values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// User id (`sub`).
    pub id: Uuid,
    /// The tenant the user belongs to.
    pub tenant_id: Uuid,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Whether the email address was verified.
    #[serde(default)]
    pub verified: bool,
    /// Whether the user may log in.
    #[serde(default = "default_true")]
    pub active: bool,
    /// When the account expires (ms): from then on the user may not log in or refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry: Option<i64>,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Middle name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// Birth date, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Image URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Mobile phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    /// Time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// Preferred languages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_languages: Vec<String>,
    /// Free-form data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, Value>,
    /// Registrations, filled in when a full User object is returned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<Registration>,
    /// When the user was created (ms).
    #[serde(default)]
    pub insert_instant: i64,
    /// When the user was last changed (ms).
    #[serde(default)]
    pub last_update_instant: i64,
    /// When the user last logged in (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_instant: Option<i64>,
    /// FusionAuth's password-change flag, always false here (no passwords).
    #[serde(default)]
    pub password_change_required: bool,
}

impl User {
    /// True when the account has expired at `now_ms` (its `expiry` is past).
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expiry.is_some_and(|expiry| expiry <= now_ms)
    }

    /// True when the user may log in or refresh at `now_ms`: active and not expired.
    pub fn may_log_in(&self, now_ms: i64) -> bool {
        self.active && !self.expired_at(now_ms)
    }
}

impl Default for User {
    /// An active, unverified user with nil ids and no data; callers set what they know.
    fn default() -> Self {
        User {
            id: Uuid::nil(),
            tenant_id: Uuid::nil(),
            email: None,
            username: None,
            verified: false,
            active: true,
            expiry: None,
            first_name: None,
            middle_name: None,
            last_name: None,
            full_name: None,
            birth_date: None,
            image_url: None,
            mobile_phone: None,
            timezone: None,
            preferred_languages: Vec::new(),
            data: BTreeMap::new(),
            registrations: Vec::new(),
            insert_instant: 0,
            last_update_instant: 0,
            last_login_instant: None,
            password_change_required: false,
        }
    }
}

/// A user's registration to an application.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// Registration id.
    pub id: Uuid,
    /// The application.
    pub application_id: Uuid,
    /// The user (not serialized inside a User object by FusionAuth, kept for storage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Roles in that application.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Username in that application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Free-form data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, Value>,
    /// Whether the registration is verified.
    #[serde(default)]
    pub verified: bool,
    /// When it was created (ms).
    #[serde(default)]
    pub insert_instant: i64,
    /// When it was last changed (ms).
    #[serde(default)]
    pub last_update_instant: i64,
    /// Last login to this application (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_instant: Option<i64>,
}

/// Device metadata of a refresh token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Address of the last use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed_address: Option<String>,
    /// Instant of the last use (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed_instant: Option<i64>,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Type, any string.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
}

/// Metadata of a refresh token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshTokenMetaData {
    /// Device.
    #[serde(default)]
    pub device: DeviceInfo,
    /// Scopes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A refresh token as stored and as returned by the retrieve API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshToken {
    /// Token id; stable across one-time-use rotations.
    pub id: Uuid,
    /// The opaque token value.
    pub token: String,
    /// Owner.
    pub user_id: Uuid,
    /// Application it can be exchanged for (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<Uuid>,
    /// Tenant of the owner.
    pub tenant_id: Uuid,
    /// When this value was issued (ms).
    pub insert_instant: i64,
    /// The start of the token's life, used for expiry (ms); sliding windows move it.
    pub start_instant: i64,
    /// When the token family was first issued (ms), for the maximum lifetime.
    #[serde(skip)]
    pub first_issued_instant: i64,
    /// When it expires (ms); derived from the policy at issue or last use.
    #[serde(skip)]
    pub expiration_instant: i64,
    /// Metadata.
    #[serde(default)]
    pub meta_data: RefreshTokenMetaData,
}

/// An API key with its optional tenant lock. The key value itself is never serialized out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Key id.
    pub id: Uuid,
    /// The key value.
    pub key: String,
    /// Locked to this tenant when set.
    pub tenant_id: Option<Uuid>,
    /// Description.
    pub description: Option<String>,
}

/// Key material persisted for a key the store generated (or was given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    /// Key id (`kid`).
    pub id: Uuid,
    /// Algorithm name, e.g. `RS256`.
    pub algorithm: String,
    /// PKCS#8 PEM private key, or `None` for HMAC.
    pub private_key: Option<String>,
    /// HMAC secret, for HS* keys.
    pub secret: Option<String>,
    /// When it was created (ms).
    pub insert_instant: i64,
}

/// A link between a user and an identity provider's user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProviderLink {
    /// Free-form data.
    #[serde(default)]
    pub data: BTreeMap<String, Value>,
    /// Provider display name of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The provider.
    pub identity_provider_id: Uuid,
    /// The provider's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider_name: Option<String>,
    /// The provider's type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider_type: Option<String>,
    /// The user's id at the provider.
    pub identity_provider_user_id: String,
    /// When the link was made (ms).
    pub insert_instant: i64,
    /// Last login through it (ms).
    pub last_login_instant: i64,
    /// The tenant.
    pub tenant_id: Uuid,
    /// The provider's refresh token, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The Gatehouse user.
    pub user_id: Uuid,
}

/// An event-log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventLog {
    /// Sequence id.
    pub id: i64,
    /// When it was written (ms).
    pub insert_instant: i64,
    /// The message.
    pub message: String,
    /// `Debug`, `Information` or `Error`.
    #[serde(rename = "type")]
    pub log_type: String,
}
