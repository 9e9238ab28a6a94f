//! A stored provider document read into [`Provider`] by serde, one struct per provider type.
//!
//! The document was validated when it was written ([`super::validate_document`]), but it is
//! read the way it always was, leniently: a member of the wrong type reads as absent (so its
//! default applies), blank strings read as absent, and entries of a map or list that are not
//! what they should be are skipped ([`Lenient`]; a section that is not an object reads as
//! empty, [`Section`]). Only the `type` and a UUID `id` are required.
//!
//! The members every type has are read by [`CommonDocument`]. A new provider type is one struct
//! here for its own members (`#[serde(rename_all = "camelCase")]`, each wrapped in [`Lenient`]
//! or [`Section`]), a `match` arm in [`Provider::from_document`] on its `type`, and its
//! validation rules in `validate.rs`.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    ApplicationConfiguration, ApplicationOverride, ClientAuthenticationMethod, LinkLimit,
    LinkingStrategy, OpenIdConnect, Provider, ProviderType, Secret, DEFAULT_MAXIMUM_LINKS,
};

/// A member read leniently: `Some` when it has the type `T`, `None` when it is absent, `null`
/// or anything else.
#[derive(Debug)]
pub(super) struct Lenient<T>(Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(Lenient(T::deserialize(&value).ok()))
    }
}

/// A section (an object member) read leniently: `Some` when it is an object, with its members
/// read as `T` reads them; `None` when it is anything else (serde alone would also read a
/// struct from an array, positionally).
#[derive(Debug)]
pub(super) struct Section<T>(Option<T>);

impl<T> Default for Section<T> {
    fn default() -> Self {
        Section(None)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Section<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        let section = value.is_object().then(|| T::deserialize(&value).ok());
        Ok(Section(section.flatten()))
    }
}

impl Lenient<String> {
    /// The string when it is not blank.
    fn text(self) -> Option<String> {
        self.0.filter(|s| !s.trim().is_empty())
    }

    /// The string as a UUID, when it is one.
    fn uuid(self) -> Option<Uuid> {
        self.text().and_then(|s| Uuid::parse_str(&s).ok())
    }
}

impl<T> Lenient<Vec<Lenient<T>>> {
    /// The entries that have the type `T`.
    fn entries(self) -> impl Iterator<Item = T> {
        self.0.unwrap_or_default().into_iter().filter_map(|e| e.0)
    }
}

impl Lenient<BTreeMap<String, Lenient<String>>> {
    /// The members whose value is a string.
    fn members(self) -> BTreeMap<String, String> {
        let members = self.0.unwrap_or_default().into_iter();
        members.filter_map(|(k, v)| Some((k, v.0?))).collect()
    }
}

impl<T> Lenient<BTreeMap<String, Section<T>>> {
    /// The members keyed by a UUID, each value read as `T` or else `T::default()`.
    fn by_uuid(self) -> BTreeMap<Uuid, T>
    where
        T: Default,
    {
        let members = self.0.unwrap_or_default().into_iter();
        members
            .filter_map(|(k, v)| Some((Uuid::parse_str(&k).ok()?, v.0.unwrap_or_default())))
            .collect()
    }
}

/// The members every provider document has (FusionAuth's `BaseIdentityProvider`, and the
/// `oauth2` claim names both managed types share).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct CommonDocument {
    id: Lenient<String>,
    name: Lenient<String>,
    enabled: Lenient<bool>,
    debug: Lenient<bool>,
    tenant_id: Lenient<String>,
    domains: Lenient<Vec<Lenient<String>>>,
    linking_strategy: Lenient<String>,
    oauth2: Section<ClaimNames>,
    application_configuration: Lenient<BTreeMap<String, Section<ApplicationDocument>>>,
    tenant_configuration: Lenient<BTreeMap<String, Section<TenantDocument>>>,
    lambda_configuration: Section<LambdaDocument>,
}

/// An `ExternalJWT` provider document (FusionAuth's `ExternalJWTIdentityProvider`): its own
/// members, the ones the login code uses.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ExternalJwtDocument {
    header_key_parameter: Lenient<String>,
    default_key_id: Lenient<String>,
    keys: Lenient<BTreeMap<String, Lenient<String>>>,
    verification_key_ids: Lenient<Vec<Lenient<String>>>,
    claim_map: Lenient<BTreeMap<String, Lenient<String>>>,
    /// Deprecated: `oauth2.uniqueIdClaim` wins.
    unique_identity_claim: Lenient<String>,
}

/// An `OpenIDConnect` provider document (FusionAuth's `OpenIdConnectIdentityProvider`): its own
/// members.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct OpenIdConnectDocument {
    oauth2: Section<OpenIdConnectOauth2>,
    button_text: Lenient<String>,
    #[serde(rename = "buttonImageURL")]
    button_image_url: Lenient<String>,
    post_request: Lenient<bool>,
    application_configuration: Lenient<BTreeMap<String, Section<ApplicationOverrideDocument>>>,
}

/// The overrides of `applicationConfiguration[applicationId]` (OpenIDConnect, FusionAuth's
/// `OpenIdConnectApplicationConfiguration`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ApplicationOverrideDocument {
    oauth2: Section<ClientDocument>,
    #[serde(rename = "buttonText")]
    button_text: Lenient<String>,
    #[serde(rename = "buttonImageURL")]
    button_image_url: Lenient<String>,
}

/// `applicationConfiguration[applicationId].oauth2`: the client an application logs in with,
/// and the scope it asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClientDocument {
    client_id: Lenient<String>,
    client_secret: Lenient<String>,
    scope: Lenient<String>,
}

impl From<ApplicationOverrideDocument> for ApplicationOverride {
    /// The overrides given (blank strings and members of the wrong type read as absent).
    fn from(app: ApplicationOverrideDocument) -> Self {
        let client = app.oauth2.0.unwrap_or_default();
        ApplicationOverride {
            client_id: client.client_id.text(),
            client_secret: client.client_secret.text().map(Secret),
            scope: client.scope.text(),
            button_text: app.button_text.text(),
            button_image_url: app.button_image_url.text(),
        }
    }
}

/// The `oauth2` members of an `OpenIDConnect` provider (FusionAuth's
/// `IdentityProviderOauth2Configuration`; the endpoint names are OpenID Connect's own).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OpenIdConnectOauth2 {
    client_id: Lenient<String>,
    client_secret: Lenient<String>,
    #[serde(rename = "clientAuthenticationMethod")]
    client_authentication_method: Lenient<String>,
    issuer: Lenient<String>,
    authorization_endpoint: Lenient<String>,
    token_endpoint: Lenient<String>,
    userinfo_endpoint: Lenient<String>,
    scope: Lenient<String>,
}

/// The `oauth2` members naming the claims an ExternalJWT login reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ClaimNames {
    email_claim: Lenient<String>,
    email_verified_claim: Lenient<String>,
    unique_id_claim: Lenient<String>,
    username_claim: Lenient<String>,
}

/// `applicationConfiguration[applicationId]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ApplicationDocument {
    enabled: Lenient<bool>,
    create_registration: Lenient<bool>,
}

/// `tenantConfiguration[tenantId]`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TenantDocument {
    limit_user_link_count: Section<LinkLimitDocument>,
}

/// `tenantConfiguration[tenantId].limitUserLinkCount`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LinkLimitDocument {
    enabled: Lenient<bool>,
    maximum_links: Lenient<i64>,
}

/// `lambdaConfiguration`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LambdaDocument {
    reconcile_id: Lenient<String>,
}

impl CommonDocument {
    /// The typed view of these members for a provider of type `kind`, defaults applied, the
    /// members of other types empty; `None` without a UUID `id`. `unique_id_fallback` is the
    /// type's own fallback for `oauth2.uniqueIdClaim` (before `sub`).
    fn into_provider(
        self,
        kind: ProviderType,
        unique_id_fallback: Option<String>,
    ) -> Option<Provider> {
        let oauth2 = self.oauth2.0.unwrap_or_default();
        let applications = self.application_configuration.by_uuid();
        let tenants = self.tenant_configuration.by_uuid();
        Some(Provider {
            id: self.id.uuid()?,
            kind,
            name: self.name.text().unwrap_or_default(),
            enabled: self.enabled.0.unwrap_or(false),
            debug: self.debug.0.unwrap_or(false),
            tenant_id: self.tenant_id.uuid(),
            header_key_parameter: String::new(),
            default_key_id: None,
            keys: BTreeMap::new(),
            verification_key_ids: Vec::new(),
            claim_map: BTreeMap::new(),
            domains: self
                .domains
                .entries()
                .map(|d| d.trim().to_ascii_lowercase())
                .collect(),
            linking_strategy: (self.linking_strategy.text().as_deref())
                .and_then(LinkingStrategy::parse)
                .unwrap_or(LinkingStrategy::LinkByEmail),
            email_claim: oauth2.email_claim.text().unwrap_or("email".into()),
            email_verified_claim: (oauth2.email_verified_claim.text())
                .unwrap_or("email_verified".into()),
            unique_id_claim: (oauth2.unique_id_claim.text())
                .or(unique_id_fallback)
                .unwrap_or("sub".into()),
            username_claim: (oauth2.username_claim.text()).unwrap_or("preferred_username".into()),
            applications: applications
                .into_iter()
                .map(|(id, a)| (id, a.into()))
                .collect(),
            link_limits: tenants.into_iter().map(|(id, t)| (id, t.into())).collect(),
            reconcile_lambda_id: self
                .lambda_configuration
                .0
                .and_then(|l| l.reconcile_id.uuid()),
            openid_connect: None,
        })
    }
}

impl ExternalJwtDocument {
    /// The typed view of an ExternalJWT provider, defaults applied (`headerKeyParameter`
    /// `kid`); `None` without a UUID `id`.
    pub(super) fn into_provider(self, common: CommonDocument) -> Option<Provider> {
        let fallback = self.unique_identity_claim.text();
        let mut provider = common.into_provider(ProviderType::ExternalJwt, fallback)?;
        provider.header_key_parameter = self.header_key_parameter.text().unwrap_or("kid".into());
        provider.default_key_id = self.default_key_id.text();
        provider.keys = self.keys.members();
        provider.verification_key_ids = uuids(self.verification_key_ids);
        provider.claim_map = self.claim_map.members();
        Some(provider)
    }
}

impl OpenIdConnectDocument {
    /// The typed view of an OpenIDConnect provider, defaults applied
    /// (`clientAuthenticationMethod` `client_secret_basic`, `postRequest` false); `None`
    /// without a UUID `id`. Blank endpoints read as absent (found by discovery).
    pub(super) fn into_provider(self, common: CommonDocument) -> Option<Provider> {
        let mut provider = common.into_provider(ProviderType::OpenIdConnect, None)?;
        let oauth2 = self.oauth2.0.unwrap_or_default();
        let method = (oauth2.client_authentication_method.text().as_deref())
            .and_then(ClientAuthenticationMethod::parse)
            .unwrap_or(ClientAuthenticationMethod::ClientSecretBasic);
        provider.openid_connect = Some(OpenIdConnect {
            client_id: oauth2.client_id.text().unwrap_or_default(),
            client_secret: oauth2.client_secret.text().map(Secret),
            client_authentication_method: method,
            issuer: oauth2.issuer.text(),
            authorization_endpoint: oauth2.authorization_endpoint.text(),
            token_endpoint: oauth2.token_endpoint.text(),
            userinfo_endpoint: oauth2.userinfo_endpoint.text(),
            scope: oauth2.scope.text(),
            button_text: self.button_text.text().unwrap_or_default(),
            button_image_url: self.button_image_url.text(),
            post_request: self.post_request.0.unwrap_or(false),
            application_overrides: (self.application_configuration.by_uuid().into_iter())
                .map(|(id, app)| (id, ApplicationOverride::from(app)))
                .filter(|(_, o)| !o.is_empty())
                .collect(),
        });
        Some(provider)
    }
}

/// The UUIDs of a `verificationKeyIds` list, in order (surrounding blanks allowed; entries
/// that are not UUIDs, which validation refuses, are skipped).
fn uuids(ids: Lenient<Vec<Lenient<String>>>) -> Vec<Uuid> {
    ids.entries()
        .filter_map(|s| Uuid::parse_str(s.trim()).ok())
        .collect()
}

impl From<ApplicationDocument> for ApplicationConfiguration {
    fn from(a: ApplicationDocument) -> Self {
        ApplicationConfiguration {
            enabled: a.enabled.0.unwrap_or(false),
            create_registration: a.create_registration.0.unwrap_or(true),
        }
    }
}

impl From<TenantDocument> for LinkLimit {
    fn from(t: TenantDocument) -> Self {
        let limit = t.limit_user_link_count.0.unwrap_or_default();
        LinkLimit {
            enabled: limit.enabled.0.unwrap_or(false),
            maximum_links: limit.maximum_links.0.unwrap_or(DEFAULT_MAXIMUM_LINKS),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const APP: &str = "3c219e58-ed0e-4b18-ad48-f4f92793ae32";

    /// Reads `doc` as an ExternalJWT provider (its `type` set).
    fn read(mut doc: Value) -> Option<Provider> {
        doc["type"] = json!("ExternalJWT");
        Provider::from_document(&doc)
    }

    #[test]
    fn members_of_the_wrong_type_read_as_their_defaults() {
        let p = read(json!({
            "id": APP, "name": 5, "enabled": "yes", "debug": 1, "tenantId": "nope",
            "headerKeyParameter": " ", "defaultKeyId": "", "linkingStrategy": "Unknown",
            "keys": {"a": "secret", "b": 5}, "claimMap": ["x"], "domains": ["A.com ", 3],
            "verificationKeyIds": [format!(" {APP} "), "nope", 1],
            "oauth2": {"emailClaim": "", "usernameClaim": 3, "uniqueIdClaim": " "},
            "uniqueIdentityClaim": "oid",
        }))
        .expect("provider");
        assert_eq!((p.name.as_str(), p.enabled, p.debug), ("", false, false));
        assert_eq!((p.tenant_id, p.default_key_id), (None, None));
        assert_eq!(p.header_key_parameter, "kid");
        assert_eq!(p.linking_strategy, LinkingStrategy::LinkByEmail);
        assert_eq!(p.keys, BTreeMap::from([("a".into(), "secret".into())]));
        assert!(p.claim_map.is_empty());
        assert_eq!(p.domains, ["a.com"]);
        assert_eq!(
            p.verification_key_ids,
            [Uuid::parse_str(APP).expect("uuid")]
        );
        assert_eq!(
            (p.email_claim.as_str(), p.username_claim.as_str()),
            ("email", "preferred_username")
        );
        assert_eq!(p.unique_id_claim, "oid");
    }

    #[test]
    fn sections_must_be_objects_and_entries_need_uuid_keys() {
        // serde alone reads a struct from an array by position: a section never is.
        let p = read(json!({
            "id": APP, "oauth2": ["mail", "verified"], "lambdaConfiguration": [APP],
            "applicationConfiguration": {APP: [true, false], "nope": {"enabled": true}},
            "tenantConfiguration": {APP: {"limitUserLinkCount": [true, 3]}},
        }))
        .expect("provider");
        assert_eq!(p.email_claim, "email");
        assert_eq!(p.reconcile_lambda_id, None);
        let app = Uuid::parse_str(APP).expect("uuid");
        let expected = ApplicationConfiguration {
            enabled: false,
            create_registration: true,
        };
        assert_eq!(p.applications, BTreeMap::from([(app, expected)]));
        let limit = LinkLimit {
            enabled: false,
            maximum_links: DEFAULT_MAXIMUM_LINKS,
        };
        assert_eq!(p.link_limits, BTreeMap::from([(app, limit)]));
    }

    #[test]
    fn a_document_needs_a_uuid_id() {
        for id in [json!(null), json!(""), json!("nope"), json!(5)] {
            assert_eq!(read(json!({ "id": id })), None, "{id}");
        }
        let p = read(
            json!({"id": APP, "tenantConfiguration": {APP: {"limitUserLinkCount":
            {"enabled": true, "maximumLinks": 2.0}}}}),
        )
        .expect("provider");
        assert_eq!(
            p.link_limit(Uuid::parse_str(APP).expect("uuid")),
            Some(DEFAULT_MAXIMUM_LINKS)
        );
    }

    #[test]
    fn openid_connect_members_are_read_leniently() {
        let doc = json!({
            "id": APP, "type": "OpenIDConnect", "buttonText": 3, "postRequest": "yes",
            "oauth2": {"client_id": " ", "client_secret": 5, "clientAuthenticationMethod": "bogus",
                       "issuer": "", "token_endpoint": "https://idp.example/token", "scope": ["openid"]},
        });
        let p = Provider::from_document(&doc).expect("provider");
        let o = p.openid_connect.expect("settings");
        assert_eq!((o.client_id.as_str(), o.client_secret), ("", None));
        assert_eq!(
            o.client_authentication_method,
            ClientAuthenticationMethod::ClientSecretBasic
        );
        assert_eq!((o.issuer, o.scope), (None, None));
        assert_eq!(
            o.token_endpoint.as_deref(),
            Some("https://idp.example/token")
        );
        assert_eq!((o.button_text.as_str(), o.post_request), ("", false));
        // An oauth2 that is not an object reads as empty, as for ExternalJWT.
        let p =
            Provider::from_document(&json!({"id": APP, "type": "OpenIDConnect", "oauth2": [1]}))
                .expect("provider");
        assert_eq!(p.openid_connect.expect("settings").client_id, "");
    }

    #[test]
    fn application_overrides_are_read_per_application() {
        let other = "9a1b2c3d-0000-4000-8000-000000000001";
        let none = "9a1b2c3d-0000-4000-8000-000000000002";
        let doc = json!({
            "id": APP, "type": "OpenIDConnect", "buttonText": "SSO",
            "buttonImageURL": "https://cdn.example/sso.png",
            "oauth2": {"client_id": "gh", "client_secret": "s", "scope": "openid email"},
            "applicationConfiguration": {
                APP: {"enabled": true, "buttonText": "Staff login",
                      "buttonImageURL": "https://cdn.example/staff.png",
                      "oauth2": {"client_id": "staff", "client_secret": "staff-secret",
                                 "scope": "openid offline_access"}},
                other: {"enabled": true, "buttonText": " ", "buttonImageURL": 3,
                        "oauth2": {"scope": ["openid"], "client_id": ""}},
                none: {"enabled": true},
            },
        });
        let o = Provider::from_document(&doc)
            .expect("provider")
            .openid_connect
            .expect("settings");
        let (app, other, none) = (
            Uuid::parse_str(APP),
            Uuid::parse_str(other),
            Uuid::parse_str(none),
        );
        let (app, other, none) = (
            app.expect("uuid"),
            other.expect("uuid"),
            none.expect("uuid"),
        );
        let (id, secret) = o.client_for(app);
        assert_eq!(
            (id, secret.map(Secret::expose)),
            ("staff", Some("staff-secret"))
        );
        assert_eq!(o.scope_for(app), "openid offline_access");
        assert!(o.asks_for(app, "offline_access") && !o.asks_for(app, "email"));
        assert_eq!(o.button_text_for(app), "Staff login");
        assert_eq!(
            o.button_image_for(app),
            Some("https://cdn.example/staff.png")
        );
        // Blank or mistyped overrides read as absent: the provider's values apply.
        for id in [other, none] {
            assert_eq!(o.client_for(id).0, "gh");
            assert_eq!(o.scope_for(id), "openid email");
            assert_eq!(o.button_text_for(id), "SSO");
            assert_eq!(o.button_image_for(id), Some("https://cdn.example/sso.png"));
        }
        assert!(o.application_overrides.keys().eq([app].iter()));
        // Without any scope, a login asks for openid.
        let bare = json!({"id": APP, "type": "OpenIDConnect", "oauth2": {"client_id": "gh"}});
        let o = Provider::from_document(&bare)
            .expect("provider")
            .openid_connect
            .expect("settings");
        assert_eq!(
            (o.scope_for(app), o.button_image_for(app)),
            ("openid", None)
        );
    }
}
