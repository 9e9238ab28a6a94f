//! The External JWT identity provider: its document, validation and typed view.
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
//! A new provider type (FusionAuth's `OpenIDConnect`, say) starts here: its document struct in
//! `document.rs` and its arm in [`Provider::from_document`], its validation rules in
//! `validate.rs` (its fields, and the section checks it shares with ExternalJWT), then its login
//! steps in [`crate::login`].

use std::collections::BTreeMap;

use gatehouse_plugin_api::Errors;
use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::keys::parse_key;
use document::ExternalJwtDocument;

mod document;
mod validate;

pub use validate::validate_document;

/// The only provider type this plugin manages.
pub const EXTERNAL_JWT: &str = "ExternalJWT";

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

/// The typed view of a stored provider document, defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Globally enabled.
    pub enabled: bool,
    /// Write an event-log entry for each login.
    pub debug: bool,
    /// The tenant the provider is scoped to (absent: global).
    pub tenant_id: Option<Uuid>,
    /// The header parameter naming the key (`kid`, `x5t`…).
    pub header_key_parameter: String,
    /// The key used when the header has no key parameter.
    pub default_key_id: Option<String>,
    /// Verification keys by identifier (`""`: the empty-key entry).
    pub keys: BTreeMap<String, String>,
    /// `verificationKeyIds`: keys of the gateway's ring that verify the provider's tokens.
    pub verification_key_ids: Vec<Uuid>,
    /// Incoming claim → target.
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
}

impl Provider {
    /// The typed view of a (validated) document; `None` when it is not an ExternalJWT provider
    /// with an id. Each type's document is read by its serde struct ([`document`]).
    pub fn from_document(doc: &Value) -> Option<Provider> {
        match doc.get("type").and_then(Value::as_str) {
            Some(EXTERNAL_JWT) => ExternalJwtDocument::deserialize(doc).ok()?.into_provider(),
            _ => None,
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
/// application's `enabled`/`createRegistration`, each tenant's link limit), lower-cases domains,
/// writes `verificationKeyIds` as canonical UUIDs without repeats, and drops `null` members, so
/// the stored document says what is in force.
pub fn normalize(doc: &mut Value) {
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
    if let Some(Value::Object(apps)) = obj.get_mut("applicationConfiguration") {
        for config in apps.values_mut() {
            if let Some(c) = config.as_object_mut() {
                c.retain(|_, v| !v.is_null());
                c.entry("enabled").or_insert(Value::Bool(false));
                c.entry("createRegistration").or_insert(Value::Bool(true));
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
    for name in ["oauth2", "lambdaConfiguration", "keys", "claimMap"] {
        if let Some(Value::Object(o)) = obj.get_mut(name) {
            o.retain(|_, v| !v.is_null());
        }
    }
}

/// What responses show instead of a secret (HMAC keys, `oauth2.client_secret`).
pub const REDACTED: &str = "********";

/// The document as responses show it: HMAC secrets in `keys` and `oauth2.client_secret`
/// replaced by [`REDACTED`]. Public keys and certificates are shown as stored.
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
    if let Some(Value::Object(oauth2)) = out.get_mut("oauth2") {
        if let Some(secret) = oauth2.get_mut("client_secret") {
            if secret.is_string() {
                *secret = Value::String(REDACTED.into());
            }
        }
    }
    out
}

/// Puts back into `doc` the stored secrets that a client sent back as [`REDACTED`] (a retrieve,
/// edit, update round trip), so a redacted value never replaces a secret.
pub fn restore_redacted(doc: &mut Value, existing: &Value) {
    if let Some(Value::Object(keys)) = doc.get_mut("keys") {
        for (id, value) in keys.iter_mut() {
            if value.as_str() == Some(REDACTED) {
                if let Some(stored) = existing.get("keys").and_then(|k| k.get(id)) {
                    *value = stored.clone();
                }
            }
        }
    }
    if let Some(Value::Object(oauth2)) = doc.get_mut("oauth2") {
        if let Some(secret) = oauth2.get_mut("client_secret") {
            if secret.as_str() == Some(REDACTED) {
                if let Some(stored) = existing.get("oauth2").and_then(|o| o.get("client_secret")) {
                    *secret = stored.clone();
                }
            }
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
        let doc = json!({
            "type": "OpenIDConnect",
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
        restore_redacted(&mut back, &doc);
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
}
