//! A stored provider document read into [`Provider`] by serde, one struct per provider type.
//!
//! The document was validated when it was written ([`super::validate_document`]), but it is
//! read the way it always was, leniently: a member of the wrong type reads as absent (so its
//! default applies), blank strings read as absent, and entries of a map or list that are not
//! what they should be are skipped ([`Lenient`]; a section that is not an object reads as
//! empty, [`Section`]). Only the `type` and a UUID `id` are required.
//!
//! A new provider type is one struct here (its members, `#[serde(rename_all = "camelCase")]`,
//! each wrapped in [`Lenient`] or [`Section`]), a `match` arm in [`Provider::from_document`] on its `type`,
//! and its validation rules in `validate.rs`.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{
    ApplicationConfiguration, LinkLimit, LinkingStrategy, Provider, DEFAULT_MAXIMUM_LINKS,
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

/// An `ExternalJWT` provider document (FusionAuth's `ExternalJWTIdentityProvider`): the
/// members the login code uses.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct ExternalJwtDocument {
    id: Lenient<String>,
    name: Lenient<String>,
    enabled: Lenient<bool>,
    debug: Lenient<bool>,
    tenant_id: Lenient<String>,
    header_key_parameter: Lenient<String>,
    default_key_id: Lenient<String>,
    keys: Lenient<BTreeMap<String, Lenient<String>>>,
    verification_key_ids: Lenient<Vec<Lenient<String>>>,
    claim_map: Lenient<BTreeMap<String, Lenient<String>>>,
    domains: Lenient<Vec<Lenient<String>>>,
    linking_strategy: Lenient<String>,
    oauth2: Section<ClaimNames>,
    /// Deprecated: `oauth2.uniqueIdClaim` wins.
    unique_identity_claim: Lenient<String>,
    application_configuration: Lenient<BTreeMap<String, Section<ApplicationDocument>>>,
    tenant_configuration: Lenient<BTreeMap<String, Section<TenantDocument>>>,
    lambda_configuration: Section<LambdaDocument>,
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

impl ExternalJwtDocument {
    /// The typed view, defaults applied; `None` without a UUID `id`.
    pub(super) fn into_provider(self) -> Option<Provider> {
        let oauth2 = self.oauth2.0.unwrap_or_default();
        let applications = self.application_configuration.by_uuid();
        let tenants = self.tenant_configuration.by_uuid();
        Some(Provider {
            id: self.id.uuid()?,
            name: self.name.text().unwrap_or_default(),
            enabled: self.enabled.0.unwrap_or(false),
            debug: self.debug.0.unwrap_or(false),
            tenant_id: self.tenant_id.uuid(),
            header_key_parameter: self.header_key_parameter.text().unwrap_or("kid".into()),
            default_key_id: self.default_key_id.text(),
            keys: self.keys.members(),
            verification_key_ids: uuids(self.verification_key_ids),
            claim_map: self.claim_map.members(),
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
                .or(self.unique_identity_claim.text())
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
        })
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

    fn read(doc: Value) -> Option<Provider> {
        ExternalJwtDocument::deserialize(&doc).ok()?.into_provider()
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
}
