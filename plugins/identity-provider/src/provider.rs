//! Identity providers (`ExternalJWT`, `OpenIDConnect`): their documents, validation and typed
//! view.
//!
//! Providers are stored as JSON documents (FusionAuth's shape, see the module's tests). Input is
//! validated field by field ([`validate_document`]), naming each bad field with FusionAuth's
//! codes (`[blank]identityProvider.name`, `[invalid]identityProvider.keys.kid-1`…), then
//! normalised ([`normalize`]) so defaults are explicit in what is stored and returned.
//! Checks that need the store (known applications, tenants, lambdas, ring keys, domains taken by
//! another provider) are in [`crate::manage`].
//!
//! [`Provider`] is the typed view the login code works with, with defaults applied, read from
//! the document by serde (`document.rs`).
//!
//! A new provider type starts here: its [`ProviderType`] variant, its document struct in
//! `document.rs` and its arm in [`Provider::from_document`], its validation rules in
//! `validate.rs` (its fields, and the section checks it shares with the other types), then its
//! login steps in [`crate::login`] (`OpenIDConnect`: the authorization code exchange in
//! [`crate::oidc`]).

use std::collections::BTreeMap;

use gatehouse_plugin_api::Errors;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::keys::parse_key;
use document::{CommonDocument, ExternalJwtDocument, OpenIdConnectDocument};

mod document;
mod validate;

pub use validate::validate_document;

/// The `type` of External JWT providers.
pub const EXTERNAL_JWT: &str = "ExternalJWT";

/// The `type` of OpenID Connect providers.
pub const OPENID_CONNECT: &str = "OpenIDConnect";

/// The provider types this plugin manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderType {
    /// `ExternalJWT`: logins with a JWT the provider signed.
    ExternalJwt,
    /// `OpenIDConnect`: logins through an OpenID Connect provider's authorization code.
    OpenIdConnect,
}

impl ProviderType {
    /// Every type, in FusionAuth's order.
    pub const ALL: [ProviderType; 2] = [ProviderType::ExternalJwt, ProviderType::OpenIdConnect];

    /// The JSON name (the document's `type`).
    pub fn name(self) -> &'static str {
        match self {
            ProviderType::ExternalJwt => EXTERNAL_JWT,
            ProviderType::OpenIdConnect => OPENID_CONNECT,
        }
    }

    /// Parses a JSON name; `None` for a type this plugin does not manage.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The type of a document (`None` when its `type` is missing or not managed here).
    pub fn of(doc: &Value) -> Option<Self> {
        doc.get("type")
            .and_then(Value::as_str)
            .and_then(Self::parse)
    }

    /// The lambda type `lambdaConfiguration.reconcileId` must name (FusionAuth's pairing).
    pub fn reconcile_lambda_type(self) -> &'static str {
        match self {
            ProviderType::ExternalJwt => "ExternalJWTReconcile",
            ProviderType::OpenIdConnect => "OpenIDReconcile",
        }
    }

    /// What a login request must carry for this type: `encodedJWT` (or `data.token`) for
    /// ExternalJWT, `data.code` and `data.redirect_uri` for OpenID Connect.
    pub fn logs_in_with_code(self) -> bool {
        matches!(self, ProviderType::OpenIdConnect)
    }
}

/// `oauth2.clientAuthenticationMethod`: how the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthenticationMethod {
    /// No client secret (a public client).
    None,
    /// HTTP Basic authentication with the client id and secret (FusionAuth's default).
    ClientSecretBasic,
    /// The client id and secret in the form body.
    ClientSecretPost,
}

impl ClientAuthenticationMethod {
    /// Every method, in FusionAuth's order.
    pub const ALL: [ClientAuthenticationMethod; 3] = [
        ClientAuthenticationMethod::None,
        ClientAuthenticationMethod::ClientSecretBasic,
        ClientAuthenticationMethod::ClientSecretPost,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuthenticationMethod::None => "none",
            ClientAuthenticationMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthenticationMethod::ClientSecretPost => "client_secret_post",
        }
    }

    /// Parses a JSON name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// True when the method sends a client secret (so one is required).
    pub fn needs_secret(self) -> bool {
        !matches!(self, ClientAuthenticationMethod::None)
    }
}

/// A secret read from a document: usable as a string, shown as [`REDACTED`] by `Debug`, so a
/// typed view printed in a log or a test failure never carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret.
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the one place that sends it (the token endpoint).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// The settings of an `OpenIDConnect` provider (`oauth2`, `buttonText`, `buttonImageURL`,
/// `postRequest`), as the login reads them. Endpoints that are `None` are found by discovery
/// from `issuer`. What a login to one application uses is read through the `*_for` methods,
/// which apply that application's overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenIdConnect {
    /// `oauth2.client_id`.
    pub client_id: String,
    /// `oauth2.client_secret` (`None` for the `none` method).
    pub client_secret: Option<Secret>,
    /// `oauth2.clientAuthenticationMethod` (default `client_secret_basic`).
    pub client_authentication_method: ClientAuthenticationMethod,
    /// `oauth2.issuer`: discovery at `{issuer}/.well-known/openid-configuration`.
    pub issuer: Option<String>,
    /// `oauth2.authorization_endpoint`.
    pub authorization_endpoint: Option<String>,
    /// `oauth2.token_endpoint`.
    pub token_endpoint: Option<String>,
    /// `oauth2.userinfo_endpoint`.
    pub userinfo_endpoint: Option<String>,
    /// `oauth2.scope`, as written (space-separated).
    pub scope: Option<String>,
    /// `buttonText`.
    pub button_text: String,
    /// `buttonImageURL`.
    pub button_image_url: Option<String>,
    /// `postRequest`: POST binding instead of a redirect to the authorization endpoint.
    pub post_request: bool,
    /// `applicationConfiguration[applicationId]`: what an application overrides of the
    /// provider's settings for its own logins (only applications with an override).
    pub application_overrides: BTreeMap<Uuid, ApplicationOverride>,
}

/// The overrides of `applicationConfiguration[applicationId]` (FusionAuth's
/// `OpenIdConnectApplicationConfiguration`): each one, when given and not blank, replaces the
/// provider's for logins to that application.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplicationOverride {
    /// `oauth2.client_id`.
    pub client_id: Option<String>,
    /// `oauth2.client_secret`.
    pub client_secret: Option<Secret>,
    /// `oauth2.scope`.
    pub scope: Option<String>,
    /// `buttonText`.
    pub button_text: Option<String>,
    /// `buttonImageURL`.
    pub button_image_url: Option<String>,
}

impl ApplicationOverride {
    /// True when the entry overrides nothing.
    pub fn is_empty(&self) -> bool {
        self == &ApplicationOverride::default()
    }
}

/// The scope a login asks for when neither the provider nor the application names one.
pub const DEFAULT_SCOPE: &str = "openid";

impl OpenIdConnect {
    /// The application's overrides, when it has any.
    fn overrides(&self, application_id: Uuid) -> Option<&ApplicationOverride> {
        self.application_overrides.get(&application_id)
    }

    /// The client id and secret logins to `application_id` use: the application's override
    /// of each, else the provider's.
    pub fn client_for(&self, application_id: Uuid) -> (&str, Option<&Secret>) {
        let own = self.overrides(application_id);
        let id = own.and_then(|o| o.client_id.as_deref());
        let secret = own.and_then(|o| o.client_secret.as_ref());
        (
            id.unwrap_or(&self.client_id),
            secret.or(self.client_secret.as_ref()),
        )
    }

    /// The scope (space-separated) logins to `application_id` ask for: the application's
    /// `oauth2.scope`, else the provider's, else [`DEFAULT_SCOPE`].
    pub fn scope_for(&self, application_id: Uuid) -> &str {
        let own = self
            .overrides(application_id)
            .and_then(|o| o.scope.as_deref());
        own.or(self.scope.as_deref()).unwrap_or(DEFAULT_SCOPE)
    }

    /// True when the scope of logins to `application_id` ([`Self::scope_for`]) includes
    /// `value` (compared whole, case-sensitively, as OAuth 2.0 scope tokens are).
    pub fn asks_for(&self, application_id: Uuid, value: &str) -> bool {
        (self.scope_for(application_id).split_whitespace()).any(|s| s == value)
    }

    /// The button text of the provider for `application_id`: the application's `buttonText`,
    /// else the provider's (empty when neither has one).
    pub fn button_text_for(&self, application_id: Uuid) -> &str {
        let own = self.overrides(application_id);
        (own.and_then(|o| o.button_text.as_deref())).unwrap_or(&self.button_text)
    }

    /// The button image URL of the provider for `application_id`: the application's
    /// `buttonImageURL`, else the provider's; `None` when neither has one.
    pub fn button_image_for(&self, application_id: Uuid) -> Option<&str> {
        let own = self.overrides(application_id);
        (own.and_then(|o| o.button_image_url.as_deref())).or(self.button_image_url.as_deref())
    }
}

/// True when `url`'s host is this machine: a loopback address (`127.0.0.0/8`, `::1`) or
/// `localhost`, the only hosts a provider may be reached on over plain http.
pub fn loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

/// The `claimMap` targets FusionAuth documents.
pub const CLAIM_MAP_TARGETS: &[&str] = &[
    "birthDate",
    "firstName",
    "lastName",
    "fullName",
    "middleName",
    "mobilePhone",
    "imageUrl",
    "timezone",
    "UserData",
    "RegistrationData",
];

/// FusionAuth's default `limitUserLinkCount.maximumLinks`.
pub const DEFAULT_MAXIMUM_LINKS: i64 = 42;

/// What happens when a login finds no link for the provider's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkingStrategy {
    /// Answer with a pending link id; the Link API completes it.
    CreatePendingLink,
    /// Never link automatically (links are made with the Link API).
    Disabled,
    /// Create a user without email or username and link it.
    LinkAnonymously,
    /// Link the user with the token's email; create one when none exists.
    LinkByEmail,
    /// Link the user with the token's email; never create one.
    LinkByEmailForExistingUser,
    /// Link the user with the token's username; create one when none exists.
    LinkByUsername,
    /// Link the user with the token's username; never create one.
    LinkByUsernameForExistingUser,
}

impl LinkingStrategy {
    /// Every strategy, in FusionAuth's order.
    pub const ALL: [LinkingStrategy; 7] = [
        LinkingStrategy::CreatePendingLink,
        LinkingStrategy::Disabled,
        LinkingStrategy::LinkAnonymously,
        LinkingStrategy::LinkByEmail,
        LinkingStrategy::LinkByEmailForExistingUser,
        LinkingStrategy::LinkByUsername,
        LinkingStrategy::LinkByUsernameForExistingUser,
    ];

    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            LinkingStrategy::CreatePendingLink => "CreatePendingLink",
            LinkingStrategy::Disabled => "Disabled",
            LinkingStrategy::LinkAnonymously => "LinkAnonymously",
            LinkingStrategy::LinkByEmail => "LinkByEmail",
            LinkingStrategy::LinkByEmailForExistingUser => "LinkByEmailForExistingUser",
            LinkingStrategy::LinkByUsername => "LinkByUsername",
            LinkingStrategy::LinkByUsernameForExistingUser => "LinkByUsernameForExistingUser",
        }
    }

    /// Parses a JSON name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// True for the two strategies that link by email.
    pub fn by_email(self) -> bool {
        matches!(
            self,
            LinkingStrategy::LinkByEmail | LinkingStrategy::LinkByEmailForExistingUser
        )
    }

    /// True for the two strategies that link by username.
    pub fn by_username(self) -> bool {
        matches!(
            self,
            LinkingStrategy::LinkByUsername | LinkingStrategy::LinkByUsernameForExistingUser
        )
    }

    /// True when the strategy may create a user.
    pub fn creates_users(self) -> bool {
        matches!(
            self,
            LinkingStrategy::LinkAnonymously
                | LinkingStrategy::LinkByEmail
                | LinkingStrategy::LinkByUsername
        )
    }
}

/// `applicationConfiguration[applicationId]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplicationConfiguration {
    /// The provider may be used to log into the application.
    pub enabled: bool,
    /// Register users to the application at login.
    pub create_registration: bool,
}

/// `tenantConfiguration[tenantId].limitUserLinkCount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimit {
    /// The limit is enforced.
    pub enabled: bool,
    /// Links a user may have to this provider.
    pub maximum_links: i64,
}

/// The typed view of a stored provider document, defaults applied. The members named
/// "ExternalJWT only" are empty for other types.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Id.
    pub id: Uuid,
    /// The provider's type.
    pub kind: ProviderType,
    /// Name.
    pub name: String,
    /// Globally enabled.
    pub enabled: bool,
    /// Write an event-log entry for each login.
    pub debug: bool,
    /// The tenant the provider is scoped to (absent: global).
    pub tenant_id: Option<Uuid>,
    /// The header parameter naming the key (`kid`, `x5t`…). ExternalJWT only.
    pub header_key_parameter: String,
    /// The key used when the header has no key parameter. ExternalJWT only.
    pub default_key_id: Option<String>,
    /// Verification keys by identifier (`""`: the empty-key entry). ExternalJWT only.
    pub keys: BTreeMap<String, String>,
    /// `verificationKeyIds`: keys of the gateway's ring that verify the provider's tokens.
    /// ExternalJWT only.
    pub verification_key_ids: Vec<Uuid>,
    /// Incoming claim → target. ExternalJWT only.
    pub claim_map: BTreeMap<String, String>,
    /// Managed email domains (lower case).
    pub domains: Vec<String>,
    /// Linking strategy.
    pub linking_strategy: LinkingStrategy,
    /// `oauth2.emailClaim` (default `email`).
    pub email_claim: String,
    /// `oauth2.emailVerifiedClaim` (default `email_verified`).
    pub email_verified_claim: String,
    /// `oauth2.uniqueIdClaim`, else the deprecated `uniqueIdentityClaim`, else `sub`.
    pub unique_id_claim: String,
    /// `oauth2.usernameClaim` (default `preferred_username`).
    pub username_claim: String,
    /// Per application.
    pub applications: BTreeMap<Uuid, ApplicationConfiguration>,
    /// Per tenant link limits.
    pub link_limits: BTreeMap<Uuid, LinkLimit>,
    /// `lambdaConfiguration.reconcileId`.
    pub reconcile_lambda_id: Option<Uuid>,
    /// The OpenID Connect settings (`Some` exactly for `OpenIDConnect` providers).
    pub openid_connect: Option<OpenIdConnect>,
}

impl Provider {
    /// The typed view of a (validated) document; `None` when it is not a provider of a type
    /// managed here ([`ProviderType`]) with an id. The members every type has are read by
    /// [`CommonDocument`], each type's own by its serde struct ([`document`]).
    pub fn from_document(doc: &Value) -> Option<Provider> {
        let kind = ProviderType::of(doc)?;
        let common = CommonDocument::deserialize(doc).ok()?;
        match kind {
            ProviderType::ExternalJwt => ExternalJwtDocument::deserialize(doc)
                .ok()?
                .into_provider(common),
            ProviderType::OpenIdConnect => OpenIdConnectDocument::deserialize(doc)
                .ok()?
                .into_provider(common),
        }
    }

    /// True when the provider may log users into `application_id`.
    pub fn enabled_for(&self, application_id: Uuid) -> bool {
        self.applications
            .get(&application_id)
            .is_some_and(|c| c.enabled)
    }

    /// The link limit in force for `tenant_id`, when one is enabled.
    pub fn link_limit(&self, tenant_id: Uuid) -> Option<i64> {
        self.link_limits
            .get(&tenant_id)
            .filter(|l| l.enabled)
            .map(|l| l.maximum_links)
    }

    /// True when `domains` is empty or manages the domain of `email`.
    pub fn manages_email(&self, email: &str) -> bool {
        if self.domains.is_empty() {
            return true;
        }
        match email.rsplit_once('@') {
            Some((_, domain)) => self.manages_domain(domain),
            None => false,
        }
    }

    /// True when `domain` is one of `domains` (case-insensitive).
    pub fn manages_domain(&self, domain: &str) -> bool {
        let domain = domain.trim().to_ascii_lowercase();
        self.domains.contains(&domain)
    }
}

/// Fills the defaults FusionAuth reports (`enabled`, `debug`, `linkingStrategy`, each
/// application's `enabled`/`createRegistration`, each tenant's link limit; for `OpenIDConnect`
/// also `postRequest` and `oauth2.clientAuthenticationMethod`), lower-cases domains, writes
/// `verificationKeyIds` as canonical UUIDs without repeats, and drops `null` members, so the
/// stored document says what is in force.
pub fn normalize(doc: &mut Value) {
    let kind = ProviderType::of(doc);
    let Some(obj) = doc.as_object_mut() else {
        return;
    };
    obj.retain(|_, v| !v.is_null());
    obj.entry("enabled").or_insert(Value::Bool(false));
    obj.entry("debug").or_insert(Value::Bool(false));
    obj.entry("linkingStrategy")
        .or_insert_with(|| Value::String(LinkingStrategy::LinkByEmail.name().into()));
    if let Some(Value::Array(domains)) = obj.get_mut("domains") {
        let mut seen: Vec<Value> = Vec::new();
        for d in domains.iter() {
            if let Some(s) = d.as_str() {
                let v = Value::String(s.trim().to_ascii_lowercase());
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
        }
        *domains = seen;
    }
    if let Some(Value::Array(ids)) = obj.get_mut("verificationKeyIds") {
        // Canonical UUIDs, each once, in order (validation has refused anything else).
        let mut seen: Vec<Value> = Vec::new();
        for id in ids.iter() {
            if let Some(u) = id.as_str().and_then(|s| Uuid::parse_str(s.trim()).ok()) {
                let v = Value::String(u.to_string());
                if !seen.contains(&v) {
                    seen.push(v);
                }
            }
        }
        *ids = seen;
    }
    normalize_default_key(obj);
    normalize_sections(obj);
    for name in ["oauth2", "lambdaConfiguration", "keys", "claimMap"] {
        if let Some(Value::Object(o)) = obj.get_mut(name) {
            o.retain(|_, v| !v.is_null());
        }
    }
    match kind {
        Some(ProviderType::OpenIdConnect) => normalize_openid_connect(obj),
        Some(ProviderType::ExternalJwt) | None => {}
    }
}

/// Writes a `defaultKeyId` that is no key of `keys` but a UUID (a ring key, in any spelling:
/// upper case, without hyphens, braced) as the canonical UUID, as `verificationKeyIds` are.
fn normalize_default_key(obj: &mut Map<String, Value>) {
    let Some(Value::String(id)) = obj.get("defaultKeyId") else {
        return;
    };
    if obj.get("keys").and_then(|k| k.get(id.as_str())).is_some() {
        return;
    }
    if let Ok(u) = Uuid::parse_str(id.trim()) {
        obj.insert("defaultKeyId".into(), Value::String(u.to_string()));
    }
}

/// Fills the defaults of each `applicationConfiguration` and `tenantConfiguration` entry.
fn normalize_sections(obj: &mut Map<String, Value>) {
    if let Some(Value::Object(apps)) = obj.get_mut("applicationConfiguration") {
        for config in apps.values_mut() {
            if let Some(c) = config.as_object_mut() {
                c.retain(|_, v| !v.is_null());
                c.entry("enabled").or_insert(Value::Bool(false));
                c.entry("createRegistration").or_insert(Value::Bool(true));
                if let Some(Value::Object(oauth2)) = c.get_mut("oauth2") {
                    oauth2.retain(|_, v| !v.is_null());
                }
            }
        }
    }
    if let Some(Value::Object(tenants)) = obj.get_mut("tenantConfiguration") {
        for config in tenants.values_mut() {
            if let Some(c) = config.as_object_mut() {
                let limit = c
                    .entry("limitUserLinkCount")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Some(l) = limit.as_object_mut() {
                    l.retain(|_, v| !v.is_null());
                    l.entry("enabled").or_insert(Value::Bool(false));
                    l.entry("maximumLinks")
                        .or_insert(Value::from(DEFAULT_MAXIMUM_LINKS));
                }
            }
        }
    }
}

/// The `OpenIDConnect` defaults: `postRequest` false, `oauth2.clientAuthenticationMethod`
/// `client_secret_basic`, and `buttonText` the provider's `name` when missing or blank.
fn normalize_openid_connect(obj: &mut Map<String, Value>) {
    obj.entry("postRequest").or_insert(Value::Bool(false));
    let blank = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_none_or(|t| t.trim().is_empty())
    };
    if blank(obj.get("buttonText")) && !blank(obj.get("name")) {
        let name = obj.get("name").cloned().unwrap_or_default();
        obj.insert("buttonText".into(), name);
    }
    if let Some(Value::Object(oauth2)) = obj.get_mut("oauth2") {
        let method = ClientAuthenticationMethod::ClientSecretBasic.name();
        oauth2
            .entry("clientAuthenticationMethod")
            .or_insert_with(|| Value::String(method.into()));
    }
}

/// What responses show instead of a secret (HMAC keys, `oauth2.client_secret`).
pub const REDACTED: &str = "********";

/// The JSON pointers of the `oauth2` objects of `doc` that may hold a `client_secret`: the
/// provider's own (`/oauth2`) and each application's override
/// (`/applicationConfiguration/{id}/oauth2`), whether or not they hold one.
fn oauth2_sections(doc: &Value) -> Vec<String> {
    let mut pointers = Vec::new();
    if doc.get("oauth2").is_some_and(Value::is_object) {
        pointers.push("/oauth2".to_string());
    }
    if let Some(apps) = doc
        .get("applicationConfiguration")
        .and_then(Value::as_object)
    {
        for (id, config) in apps {
            if config.get("oauth2").is_some_and(Value::is_object) {
                let id = id.replace('~', "~0").replace('/', "~1");
                pointers.push(format!("/applicationConfiguration/{id}/oauth2"));
            }
        }
    }
    pointers
}

/// The client id in force for the `oauth2` object at `pointer`: its own `client_id`, else (for
/// an application's override) the provider's; `None` when there is none. As stored, byte for
/// byte (logins send it so): `" pid"` is another client id than `"pid"`.
fn client_id_at<'d>(doc: &'d Value, pointer: &str) -> Option<&'d str> {
    let own = |p: &str| {
        doc.pointer(p)
            .and_then(|o| o.get("client_id"))
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    };
    own(pointer).or_else(|| own("/oauth2"))
}

/// The document as responses show it: HMAC secrets in `keys` and every `client_secret`
/// (`oauth2`, and each application's `oauth2` override) replaced by [`REDACTED`]. Public keys
/// and certificates are shown as stored.
pub fn redact(doc: &Value) -> Value {
    let mut out = doc.clone();
    if let Some(Value::Object(keys)) = out.get_mut("keys") {
        for value in keys.values_mut() {
            if value
                .as_str()
                .is_some_and(|s| matches!(parse_key(s), Ok(crate::keys::VerifyingKey::Hmac(_))))
            {
                *value = Value::String(REDACTED.into());
            }
        }
    }
    for pointer in oauth2_sections(doc) {
        if let Some(secret) = out
            .pointer_mut(&pointer)
            .and_then(|o| o.get_mut("client_secret"))
        {
            if secret.is_string() {
                *secret = Value::String(REDACTED.into());
            }
        }
    }
    out
}

/// What an `OpenIDConnect` `client_secret` missing from an update's replacement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingSecret {
    /// Kept (a full replacement, `PUT`: FusionAuth's clients never get the secret back, so
    /// they cannot resend it; `null` removes it).
    Kept,
    /// Removed (a `PATCH`, applied to the document as responses show it, where every stored
    /// secret reads [`REDACTED`]: one that is missing now was removed by the patch).
    Removed,
}

/// Puts back into `doc` (an update's replacement) the stored secrets it does not give anew, so
/// a secret is never replaced by what a client could not know:
/// - a secret sent back as [`REDACTED`] (a retrieve, edit, update round trip) is the stored one;
/// - for `OpenIDConnect`, so is a `client_secret` left out of an `oauth2` object when `missing`
///   says [`MissingSecret::Kept`].
///
/// An `OpenIDConnect` client secret is carried over only while the client id it belongs to
/// stays the same: a new `client_id` needs its own secret.
pub fn restore_redacted(doc: &mut Value, existing: &Value, missing: MissingSecret) {
    if let Some(Value::Object(keys)) = doc.get_mut("keys") {
        for (id, value) in keys.iter_mut() {
            if value.as_str() == Some(REDACTED) {
                if let Some(stored) = existing.get("keys").and_then(|k| k.get(id)) {
                    *value = stored.clone();
                }
            }
        }
    }
    // Whether an omitted secret is kept: OpenIDConnect's `oauth2.client_secret` is.
    let openid = match ProviderType::of(doc) {
        Some(ProviderType::OpenIdConnect) => true,
        Some(ProviderType::ExternalJwt) | None => false,
    };
    for pointer in oauth2_sections(doc) {
        let sent = doc.pointer(&pointer).and_then(|o| o.get("client_secret"));
        let carry = match sent {
            Some(Value::String(s)) => s == REDACTED,
            None => openid && missing == MissingSecret::Kept,
            Some(_) => false,
        };
        let stored = existing
            .pointer(&pointer)
            .and_then(|o| o.get("client_secret"))
            .filter(|v| v.is_string());
        let Some(stored) = stored.filter(|_| carry).cloned() else {
            continue;
        };
        if openid && client_id_at(doc, &pointer) != client_id_at(existing, &pointer) {
            continue;
        }
        if let Some(Value::Object(oauth2)) = doc.pointer_mut(&pointer) {
            oauth2.insert("client_secret".into(), stored);
        }
    }
}

/// For the host: validates and normalises a provider declared in `config.yaml`
/// (`identityProviders[i]`, the same JSON shape as the API's `identityProvider`).
///
/// Returns the document to store, or `(field path relative to the entry, message)` pairs.
/// References (applications, tenants, lambdas) are checked at login, not here.
pub fn validate_config_provider(doc: &Value) -> Result<Value, Vec<(String, String)>> {
    let mut errors = Errors::new();
    validate_document(doc, "", &mut errors);
    if let Some(id) = doc.get("id") {
        if id.is_null() {
            errors.field(
                "id",
                "blank",
                "A provider declared in the configuration needs an id.",
            );
        }
    } else {
        errors.field(
            "id",
            "blank",
            "A provider declared in the configuration needs an id.",
        );
    }
    if errors.is_empty() {
        let mut doc = doc.clone();
        normalize(&mut doc);
        Ok(doc)
    } else {
        Err(errors.into_messages())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "name": "Acme Corp. ADFS",
            "type": "ExternalJWT",
            "headerKeyParameter": "kid",
            "claimMap": {"first_name": "firstName", "dept": "RegistrationData"},
            "domains": ["Acme.com", "acme.org"],
            "keys": {"k1": "secret", "": "other-secret"},
            "oauth2": {"authorization_endpoint": "https://acme.com/authorize", "emailClaim": "mail"},
            "tenantConfiguration": {"e872a880-b14f-6d62-c312-cb40f22af465": {"limitUserLinkCount": {"enabled": true}}},
            "applicationConfiguration": {"3c219e58-ed0e-4b18-ad48-f4f92793ae32": {"enabled": true}},
            "uniqueIdentityClaim": "email"
        })
    }

    fn codes(doc: &Value) -> Vec<String> {
        let mut errors = Errors::new();
        validate_document(doc, "identityProvider.", &mut errors);
        errors
            .field_errors
            .values()
            .flatten()
            .map(|e| e.code.clone())
            .collect()
    }

    #[test]
    fn a_valid_document_passes_and_normalises() {
        let mut doc = valid();
        assert!(codes(&doc).is_empty(), "{:?}", codes(&doc));
        normalize(&mut doc);
        assert_eq!(doc["enabled"], false);
        assert_eq!(doc["linkingStrategy"], "LinkByEmail");
        assert_eq!(doc["domains"], json!(["acme.com", "acme.org"]));
        assert_eq!(
            doc["applicationConfiguration"]["3c219e58-ed0e-4b18-ad48-f4f92793ae32"]
                ["createRegistration"],
            true
        );
        assert_eq!(
            doc["tenantConfiguration"]["e872a880-b14f-6d62-c312-cb40f22af465"]
                ["limitUserLinkCount"]["maximumLinks"],
            42
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        // A type this plugin does not manage is reported, and the ExternalJWT rules apply.
        let doc = json!({
            "type": "Google",
            "name": "",
            "enabled": "yes",
            "keys": {"k1": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", "k2": 5},
            "claimMap": {"x": "email"},
            "linkingStrategy": "Unsupported",
            "domains": ["ok.com", "bad domain"],
            "oauth2": {"emailClaim": 3, "token_endpoint": "ftp://x"},
            "tenantConfiguration": {"nope": {"limitUserLinkCount": {"maximumLinks": 0}}},
            "applicationConfiguration": {"x": {"enabled": 1}},
            "lambdaConfiguration": {"reconcileId": "nope"},
            "surprise": true
        });
        let codes = codes(&doc);
        for expected in [
            "[invalid]identityProvider.type",
            "[blank]identityProvider.name",
            "[blank]identityProvider.headerKeyParameter",
            "[invalid]identityProvider.enabled",
            "[invalid]identityProvider.keys.k1",
            "[invalid]identityProvider.keys.k2",
            "[invalid]identityProvider.claimMap.x",
            "[invalid]identityProvider.linkingStrategy",
            "[invalid]identityProvider.domains[1]",
            "[invalid]identityProvider.oauth2.emailClaim",
            "[invalid]identityProvider.oauth2.token_endpoint",
            // Keys that are not ids are not echoed in the field paths.
            "[invalid]identityProvider.tenantConfiguration",
            "[invalid]identityProvider.tenantConfiguration.limitUserLinkCount.maximumLinks",
            "[invalid]identityProvider.applicationConfiguration",
            "[invalid]identityProvider.applicationConfiguration.enabled",
            "[invalid]identityProvider.lambdaConfiguration.reconcileId",
            "[unknown]identityProvider.surprise",
        ] {
            assert!(
                codes.contains(&expected.to_string()),
                "{expected} missing from {codes:?}"
            );
        }
    }

    #[test]
    fn typed_view_applies_defaults_and_the_deprecated_alias() {
        let mut doc = valid();
        doc["id"] = json!(Uuid::new_v4());
        let p = Provider::from_document(&doc).expect("provider");
        assert_eq!(p.unique_id_claim, "email");
        assert_eq!(p.email_claim, "mail");
        assert_eq!(p.username_claim, "preferred_username");
        assert_eq!(p.email_verified_claim, "email_verified");
        assert_eq!(p.linking_strategy, LinkingStrategy::LinkByEmail);
        assert!(p.manages_email("ann@ACME.com"));
        assert!(!p.manages_email("ann@evil.com"));
        assert!(!p.manages_email("no-at-sign"));
        let app = Uuid::parse_str("3c219e58-ed0e-4b18-ad48-f4f92793ae32").expect("uuid");
        assert!(p.enabled_for(app));
        assert!(!p.enabled_for(Uuid::new_v4()));
        let tenant = Uuid::parse_str("e872a880-b14f-6d62-c312-cb40f22af465").expect("uuid");
        assert_eq!(p.link_limit(tenant), Some(42));
        doc["oauth2"]["uniqueIdClaim"] = json!("oid");
        assert_eq!(
            Provider::from_document(&doc).expect("p").unique_id_claim,
            "oid"
        );
        doc["type"] = json!("Google");
        assert!(Provider::from_document(&doc).is_none());
    }

    #[test]
    fn a_default_key_id_naming_a_uuid_is_stored_canonical_and_a_kid_as_written() {
        let ring = Uuid::new_v4();
        for spelling in [
            ring.to_string().to_uppercase(),
            ring.simple().to_string(),
            format!(" {} ", ring.braced()),
        ] {
            let mut doc = valid();
            doc["defaultKeyId"] = json!(spelling);
            normalize(&mut doc);
            assert_eq!(doc["defaultKeyId"], json!(ring), "{spelling}");
        }
        let kid = ring.to_string().to_uppercase();
        let mut doc = valid();
        doc["keys"] = json!({ kid.clone(): "secret" });
        doc["defaultKeyId"] = json!(kid);
        normalize(&mut doc);
        assert_eq!(
            doc["defaultKeyId"],
            json!(kid),
            "a kid of keys is kept as written"
        );
        doc["defaultKeyId"] = json!("k1");
        normalize(&mut doc);
        assert_eq!(doc["defaultKeyId"], json!("k1"));
    }

    #[test]
    fn verification_key_ids_are_checked_and_normalised() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut doc = valid();
        doc["verificationKeyIds"] = json!([a.to_string().to_uppercase(), b, a]);
        assert!(codes(&doc).is_empty(), "{:?}", codes(&doc));
        normalize(&mut doc);
        assert_eq!(doc["verificationKeyIds"], json!([a, b]));
        assert_eq!(
            Provider::from_document(&{
                let mut d = doc.clone();
                d["id"] = json!(Uuid::new_v4());
                d
            })
            .expect("provider")
            .verification_key_ids,
            vec![a, b]
        );
        for bad in [json!("not-a-list"), json!([a, "nope"]), json!([1])] {
            let mut doc = valid();
            doc["verificationKeyIds"] = bad.clone();
            assert_eq!(
                codes(&doc),
                ["[invalid]identityProvider.verificationKeyIds"],
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_redacted_and_restored() {
        let mut doc = valid();
        doc["oauth2"]["client_secret"] = json!("cs");
        doc["keys"]["pem"] = json!("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----");
        let shown = redact(&doc);
        assert_eq!(shown["keys"]["k1"], REDACTED);
        assert_eq!(shown["keys"][""], REDACTED);
        assert_eq!(shown["oauth2"]["client_secret"], REDACTED);
        assert_eq!(shown["keys"]["pem"], doc["keys"]["pem"]);
        let mut back = shown.clone();
        back["keys"]["k2"] = json!(REDACTED);
        restore_redacted(&mut back, &doc, MissingSecret::Kept);
        assert_eq!(back["keys"]["k1"], "secret");
        assert_eq!(back["oauth2"]["client_secret"], "cs");
        assert_eq!(back["keys"]["k2"], REDACTED);
    }

    #[test]
    fn config_providers_need_an_id() {
        let errs = validate_config_provider(&valid()).unwrap_err();
        assert!(errs.iter().any(|(f, _)| f == "id"), "{errs:?}");
        let mut doc = valid();
        doc["id"] = json!(Uuid::new_v4());
        let stored = validate_config_provider(&doc).expect("valid");
        assert_eq!(stored["debug"], false);
        for s in LinkingStrategy::ALL {
            assert_eq!(LinkingStrategy::parse(s.name()), Some(s));
        }
    }

    fn oidc() -> Value {
        json!({
            "id": "1b9c2b0e-8d4f-4e3a-9c1b-2a3b4c5d6e7f",
            "type": "OpenIDConnect",
            "name": "Corporate SSO",
            "buttonText": "Log in with SSO",
            "enabled": true,
            "oauth2": {"issuer": "https://sso.example.com", "client_id": "gatehouse",
                       "client_secret": "sso-secret", "scope": "openid email profile offline_access",
                       "emailClaim": "mail", "uniqueIdClaim": "oid"},
            "domains": ["Example.com"],
            "linkingStrategy": "LinkByUsername",
            "applicationConfiguration": {"3c219e58-ed0e-4b18-ad48-f4f92793ae32":
                {"enabled": true, "oauth2": {"client_id": "app-client", "client_secret": "app-secret"}}},
        })
    }

    #[test]
    fn an_openid_connect_document_passes_normalises_and_reads() {
        let mut doc = oidc();
        assert!(codes(&doc).is_empty(), "{:?}", codes(&doc));
        normalize(&mut doc);
        assert_eq!(doc["postRequest"], false);
        assert_eq!(
            doc["oauth2"]["clientAuthenticationMethod"],
            "client_secret_basic"
        );
        assert_eq!(doc["domains"], json!(["example.com"]));
        let p = Provider::from_document(&doc).expect("provider");
        assert_eq!(p.kind, ProviderType::OpenIdConnect);
        assert_eq!(
            (p.email_claim.as_str(), p.unique_id_claim.as_str()),
            ("mail", "oid")
        );
        assert_eq!(p.linking_strategy, LinkingStrategy::LinkByUsername);
        assert!(p.keys.is_empty() && p.header_key_parameter.is_empty());
        let o = p.openid_connect.expect("settings");
        assert_eq!(o.client_id, "gatehouse");
        assert_eq!(
            o.client_secret.as_ref().map(Secret::expose),
            Some("sso-secret")
        );
        assert_eq!(
            o.client_authentication_method,
            ClientAuthenticationMethod::ClientSecretBasic
        );
        assert_eq!(o.issuer.as_deref(), Some("https://sso.example.com"));
        assert_eq!(o.token_endpoint, None);
        assert_eq!(o.button_text, "Log in with SSO");
        // The typed view never prints the secret.
        assert!(!format!("{o:?}").contains("sso-secret"));
        assert!(!format!("{o:?}").contains("app-secret"));
        // The application's client overrides the provider's for its logins only.
        let app = Uuid::parse_str("3c219e58-ed0e-4b18-ad48-f4f92793ae32").expect("uuid");
        let (id, secret) = o.client_for(app);
        assert_eq!(
            (id, secret.map(Secret::expose)),
            ("app-client", Some("app-secret"))
        );
        let (id, secret) = o.client_for(Uuid::new_v4());
        assert_eq!(
            (id, secret.map(Secret::expose)),
            ("gatehouse", Some("sso-secret"))
        );
        // An ExternalJWT document is not read as OpenIDConnect, nor the other way round.
        let jwt = Provider::from_document(&{
            let mut d = valid();
            d["id"] = json!(Uuid::new_v4());
            d
        })
        .expect("provider");
        assert_eq!(
            (jwt.kind, jwt.openid_connect),
            (ProviderType::ExternalJwt, None)
        );
    }

    #[test]
    fn openid_connect_requirements_are_reported_at_once() {
        let doc =
            json!({"type": "OpenIDConnect", "name": " ", "keys": {}, "headerKeyParameter": "kid"});
        let mut found = codes(&doc);
        found.sort();
        let mut expected = vec![
            "[blank]identityProvider.name",
            "[blank]identityProvider.oauth2.client_id",
            "[missing]identityProvider.oauth2.client_secret",
            "[blank]identityProvider.oauth2.authorization_endpoint",
            "[blank]identityProvider.oauth2.token_endpoint",
            "[blank]identityProvider.oauth2.userinfo_endpoint",
            "[unknown]identityProvider.keys",
            "[unknown]identityProvider.headerKeyParameter",
        ];
        expected.sort();
        assert_eq!(found, expected);
        // All three endpoints instead of an issuer; the `none` method needs no secret.
        let mut doc = oidc();
        doc["oauth2"] = json!({"client_id": "c", "clientAuthenticationMethod": "none",
            "authorization_endpoint": "https://sso.example.com/authorize",
            "token_endpoint": "https://sso.example.com/token",
            "userinfo_endpoint": "http://127.0.0.1:8080/userinfo"});
        assert!(codes(&doc).is_empty(), "{:?}", codes(&doc));
        for method in ["client_secret_basic", "client_secret_post"] {
            doc["oauth2"]["clientAuthenticationMethod"] = json!(method);
            assert_eq!(
                codes(&doc),
                ["[missing]identityProvider.oauth2.client_secret"]
            );
        }
    }

    #[test]
    fn openid_connect_values_are_checked_without_echoing_them() {
        let mut doc = oidc();
        doc["oauth2"] = json!({"client_id": 7, "client_secret": REDACTED,
            "clientAuthenticationMethod": "private_key_jwt", "issuer": "https://sso.example.com/?tenant=x",
            "token_endpoint": "ftp://sso.example.com/token", "authorization_endpoint": "/authorize",
            "userinfo_endpoint": " https://sso.example.com/userinfo", "scope": ["openid"]});
        doc["postRequest"] = json!("yes");
        doc["buttonImageURL"] = json!("javascript:alert(1)");
        doc["linkingStrategy"] = json!("Unsupported");
        doc["applicationConfiguration"]["3c219e58-ed0e-4b18-ad48-f4f92793ae32"] = json!({
            "enabled": true, "buttonText": 1, "oauth2": {"client_secret": REDACTED, "scope": 2}});
        let app = "identityProvider.applicationConfiguration[3c219e58-ed0e-4b18-ad48-f4f92793ae32]";
        let mut errors = Errors::new();
        validate_document(&doc, "identityProvider.", &mut errors);
        let found: Vec<String> = errors
            .field_errors
            .values()
            .flatten()
            .map(|e| e.code.clone())
            .collect();
        for expected in [
            "[invalid]identityProvider.oauth2.client_id".to_string(),
            "[invalid]identityProvider.oauth2.client_secret".into(),
            "[invalid]identityProvider.oauth2.clientAuthenticationMethod".into(),
            "[invalid]identityProvider.oauth2.issuer".into(),
            "[invalid]identityProvider.oauth2.token_endpoint".into(),
            "[invalid]identityProvider.oauth2.authorization_endpoint".into(),
            "[invalid]identityProvider.oauth2.userinfo_endpoint".into(),
            "[invalid]identityProvider.oauth2.scope".into(),
            "[invalid]identityProvider.postRequest".into(),
            "[invalid]identityProvider.buttonImageURL".into(),
            "[invalid]identityProvider.linkingStrategy".into(),
            format!("[invalid]{app}.buttonText"),
            format!("[invalid]{app}.oauth2.client_secret"),
            format!("[invalid]{app}.oauth2.scope"),
        ] {
            assert!(
                found.contains(&expected),
                "{expected} missing from {found:?}"
            );
        }
        // A wrongly typed client_id is [invalid], not also [blank].
        assert!(!found.contains(&"[blank]identityProvider.oauth2.client_id".to_string()));
        let text = serde_json::to_string(&errors).expect("json");
        for value in ["private_key_jwt", "tenant=x", "ftp://", "javascript"] {
            assert!(!text.contains(value), "{value} echoed in {text}");
        }
    }

    #[test]
    fn openid_connect_secrets_are_redacted_and_carried_over() {
        let app = "3c219e58-ed0e-4b18-ad48-f4f92793ae32";
        let stored = oidc();
        let shown = redact(&stored);
        assert_eq!(shown["oauth2"]["client_secret"], REDACTED);
        assert_eq!(
            shown["applicationConfiguration"][app]["oauth2"]["client_secret"],
            REDACTED
        );
        let text = shown.to_string();
        assert!(
            !text.contains("sso-secret") && !text.contains("app-secret"),
            "{text}"
        );
        // Sent back redacted, or left out: the stored secrets are kept.
        let mut back = shown.clone();
        restore_redacted(&mut back, &stored, MissingSecret::Kept);
        assert_eq!(back, stored);
        let mut omitted = stored.clone();
        omitted["oauth2"]
            .as_object_mut()
            .expect("oauth2")
            .remove("client_secret");
        omitted["applicationConfiguration"][app]["oauth2"]
            .as_object_mut()
            .expect("oauth2")
            .remove("client_secret");
        restore_redacted(&mut omitted, &stored, MissingSecret::Kept);
        assert_eq!(omitted, stored);
        // `null` removes it; a new secret replaces it.
        let mut removed = stored.clone();
        removed["oauth2"]["client_secret"] = Value::Null;
        restore_redacted(&mut removed, &stored, MissingSecret::Kept);
        assert_eq!(removed["oauth2"]["client_secret"], Value::Null);
        let mut replaced = stored.clone();
        replaced["oauth2"]["client_secret"] = json!("new");
        restore_redacted(&mut replaced, &stored, MissingSecret::Kept);
        assert_eq!(replaced["oauth2"]["client_secret"], "new");
        // A new client id does not inherit the old client's secret.
        let mut moved = shown.clone();
        moved["oauth2"]["client_id"] = json!("another-client");
        moved["applicationConfiguration"][app]["oauth2"]
            .as_object_mut()
            .expect("oauth2")
            .remove("client_secret");
        restore_redacted(&mut moved, &stored, MissingSecret::Kept);
        assert_eq!(moved["oauth2"]["client_secret"], REDACTED);
        assert_eq!(
            moved["applicationConfiguration"][app]["oauth2"]["client_secret"], "app-secret",
            "the application's own client id did not change"
        );
        assert!(codes(&moved).contains(&"[invalid]identityProvider.oauth2.client_secret".into()));
        // ExternalJWT keeps its rules: an omitted client_secret stays omitted.
        let mut jwt = valid();
        jwt["oauth2"]["client_secret"] = json!("cs");
        let mut sent = jwt.clone();
        sent["oauth2"]
            .as_object_mut()
            .expect("oauth2")
            .remove("client_secret");
        restore_redacted(&mut sent, &jwt, MissingSecret::Kept);
        assert!(sent["oauth2"].get("client_secret").is_none());
    }

    #[test]
    fn provider_types_and_methods_round_trip() {
        for t in ProviderType::ALL {
            assert_eq!(ProviderType::parse(t.name()), Some(t));
        }
        assert_eq!(ProviderType::of(&json!({"type": "Google"})), None);
        assert!(!ProviderType::ExternalJwt.logs_in_with_code());
        assert!(ProviderType::OpenIdConnect.logs_in_with_code());
        assert_eq!(
            ProviderType::OpenIdConnect.reconcile_lambda_type(),
            "OpenIDReconcile"
        );
        for m in ClientAuthenticationMethod::ALL {
            assert_eq!(ClientAuthenticationMethod::parse(m.name()), Some(m));
        }
        assert!(!ClientAuthenticationMethod::None.needs_secret());
        let errs =
            validate_config_provider(&json!({"type": "OpenIDConnect", "name": "x"})).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        for f in ["id", "oauth2.client_id", "oauth2.client_secret"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        let stored = validate_config_provider(&oidc()).expect("valid");
        assert_eq!(
            stored["oauth2"]["clientAuthenticationMethod"],
            "client_secret_basic"
        );
    }
}
