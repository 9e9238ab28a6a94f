//! Validation of a provider document's content, one section at a time ([`validate_document`]).
//!
//! The document's `type` chooses the rules ([`Rules`]; a missing or unsupported type is
//! reported and the ExternalJWT rules apply). The validators run in a fixed order (unknown
//! fields; the required strings; `type`; the other top-level scalars; the type's own sections —
//! ExternalJWT: `keys`, `verificationKeyIds`, `claimMap`, `oauth2`; OpenIDConnect: `oauth2` with
//! FusionAuth's requirements and each application's overrides —; `domains`;
//! `lambdaConfiguration`; `applicationConfiguration`; `tenantConfiguration`) and each adds field
//! errors named with FusionAuth's codes (`[blank]identityProvider.name`,
//! `[invalid]identityProvider.keys.kid-1`, `[missing]identityProvider.oauth2.client_secret`…),
//! never with a value the client sent.
//! References (known applications, tenants, lambdas, whether `defaultKeyId` names a key of the
//! map or of the gateway's ring, whether `verificationKeyIds` name public keys of the ring) are
//! checked by the caller ([`crate::manage`]).

use gatehouse_plugin_api::Errors;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    ClientAuthenticationMethod, LinkingStrategy, ProviderType, CLAIM_MAP_TARGETS, REDACTED,
};
use crate::keys::parse_key;

/// The fields an ExternalJWT provider document may carry (FusionAuth's
/// `ExternalJWTIdentityProvider`).
const EXTERNAL_JWT_FIELDS: &[&str] = &[
    "applicationConfiguration",
    "attributeMappings",
    "claimMap",
    "data",
    "debug",
    "defaultKeyId",
    "domains",
    "enabled",
    "headerKeyParameter",
    "id",
    "insertInstant",
    "keys",
    "lambdaConfiguration",
    "lastUpdateInstant",
    "linkingStrategy",
    "name",
    "oauth2",
    "source",
    "tenantConfiguration",
    "tenantId",
    "type",
    "uniqueIdentityClaim",
    "verificationKeyIds",
];

/// The fields an OpenIDConnect provider document may carry (FusionAuth's
/// `OpenIdConnectIdentityProvider`).
const OPENID_CONNECT_FIELDS: &[&str] = &[
    "applicationConfiguration",
    "attributeMappings",
    "buttonImageURL",
    "buttonText",
    "data",
    "debug",
    "domains",
    "enabled",
    "id",
    "insertInstant",
    "lambdaConfiguration",
    "lastUpdateInstant",
    "linkingStrategy",
    "name",
    "oauth2",
    "postRequest",
    "source",
    "tenantConfiguration",
    "tenantId",
    "type",
];

/// The `[blank]` message of `name`.
const NAME_BLANK: (&str, &str) = (
    "name",
    "You must specify the name of the identity provider.",
);

/// The `[blank]` message of `type`.
const TYPE_BLANK: (&str, &str) = (
    "type",
    "You must specify the type: ExternalJWT or OpenIDConnect.",
);

/// The fields of an ExternalJWT provider that must be non-blank strings, each with the message
/// of its `[blank]` error.
const EXTERNAL_JWT_REQUIRED: &[(&str, &str)] = &[
    NAME_BLANK,
    TYPE_BLANK,
    (
        "headerKeyParameter",
        "You must specify the headerKeyParameter, e.g. kid or x5t.",
    ),
];

/// The fields of an OpenIDConnect provider that must be non-blank strings. FusionAuth also
/// requires `buttonText`; here a missing one defaults to the provider's `name` (see
/// [`super::normalize`]), so a declaration in `config.yaml` need not repeat it.
const OPENID_CONNECT_REQUIRED: &[(&str, &str)] = &[NAME_BLANK, TYPE_BLANK];

/// What a provider type's document may and must carry.
struct Rules {
    /// The type's name, for messages.
    name: &'static str,
    /// Every member it may have.
    fields: &'static [&'static str],
    /// The members that must be non-blank strings, with their `[blank]` messages.
    required: &'static [(&'static str, &'static str)],
    /// Its optional top-level strings.
    strings: &'static [&'static str],
    /// Its optional top-level booleans.
    booleans: &'static [&'static str],
}

impl Rules {
    /// The rules of `kind`.
    fn of(kind: ProviderType) -> Rules {
        match kind {
            ProviderType::ExternalJwt => Rules {
                name: "ExternalJWT",
                fields: EXTERNAL_JWT_FIELDS,
                required: EXTERNAL_JWT_REQUIRED,
                strings: &["defaultKeyId", "uniqueIdentityClaim", "source"],
                booleans: &["enabled", "debug"],
            },
            ProviderType::OpenIdConnect => Rules {
                name: "OpenIDConnect",
                fields: OPENID_CONNECT_FIELDS,
                required: OPENID_CONNECT_REQUIRED,
                strings: &["buttonText", "buttonImageURL", "source"],
                booleans: &["enabled", "debug", "postRequest"],
            },
        }
    }
}

/// The `oauth2` members that, when present, are strings.
const OAUTH2_STRING_FIELDS: &[&str] = &[
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
    "issuer",
    "client_id",
    "client_secret",
    "scope",
    "clientAuthenticationMethod",
    "emailClaim",
    "emailVerifiedClaim",
    "uniqueIdClaim",
    "usernameClaim",
];

/// The members of an `applicationConfiguration` entry of any provider (FusionAuth's
/// `BaseIdentityProviderApplicationConfiguration`).
const APPLICATION_FIELDS: &[&str] = &["createRegistration", "data", "enabled"];

/// The members of an OpenIDConnect `applicationConfiguration` entry (FusionAuth's
/// `OpenIdConnectApplicationConfiguration`).
const OPENID_CONNECT_APPLICATION_FIELDS: &[&str] = &[
    "buttonImageURL",
    "buttonText",
    "createRegistration",
    "data",
    "enabled",
    "oauth2",
];

/// The members of a `tenantConfiguration` entry (FusionAuth's
/// `IdentityProviderTenantConfiguration`).
const TENANT_FIELDS: &[&str] = &["data", "limitUserLinkCount"];

/// The members of a tenant's `limitUserLinkCount`.
const LINK_LIMIT_FIELDS: &[&str] = &["enabled", "maximumLinks"];

/// The `oauth2` members that, when non-empty strings, are http(s) URLs.
const OAUTH2_URL_FIELDS: [&str; 3] = [
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
];

/// The JSON type of `value`, with its article (`an object`), for messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where the validators put their field errors: the errors, and the prefix of every path.
struct Report<'a> {
    prefix: &'a str,
    errors: &'a mut Errors,
}

impl Report<'_> {
    /// Adds the field error `[kind]{prefix}{path}`.
    fn add(&mut self, path: &str, kind: &str, message: impl Into<String>) {
        self.errors
            .field(&format!("{}{path}", self.prefix), kind, message);
    }

    /// Adds "Expected {expected}, found …" at `path` when `value` is present, not `null` and
    /// not accepted by `is_ok`.
    fn expect_type(
        &mut self,
        value: Option<&Value>,
        path: &str,
        expected: &str,
        is_ok: fn(&Value) -> bool,
    ) {
        if let Some(v) = value.filter(|v| !v.is_null() && !is_ok(v)) {
            self.add(
                path,
                "invalid",
                format!("Expected {expected}, found {}.", kind(v)),
            );
        }
    }

    /// Adds "The {name} must be a UUID." at `path` when `value` is present, not `null` and not
    /// a UUID string.
    fn expect_uuid(&mut self, value: Option<&Value>, path: &str, name: &str) {
        if let Some(v) = value {
            if !v.is_null() && v.as_str().and_then(|s| Uuid::parse_str(s).ok()).is_none() {
                self.add(path, "invalid", format!("The {name} must be a UUID."));
            }
        }
    }

    /// Returns the object `value` is; `None` when it is absent or `null`, and also when it is
    /// anything else, after adding "Expected {expected}, found …" at `path`.
    fn object_at<'v>(
        &mut self,
        value: Option<&'v Value>,
        path: &str,
        expected: &str,
    ) -> Option<&'v Map<String, Value>> {
        match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(members)) => Some(members),
            Some(other) => {
                self.add(
                    path,
                    "invalid",
                    format!("Expected {expected}, found {}.", kind(other)),
                );
                None
            }
        }
    }
}

/// Validates a provider document's content (not references). `prefix` is prepended to field
/// names (`identityProvider.` for the API, empty for the host's configuration check).
pub fn validate_document(doc: &Value, prefix: &str, errors: &mut Errors) {
    let Some(obj) = doc.as_object() else {
        errors.field(
            prefix.trim_end_matches('.'),
            "invalid",
            format!("Expected an object, found {}.", kind(doc)),
        );
        return;
    };
    let report = &mut Report { prefix, errors };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .and_then(ProviderType::parse);
    let rules = Rules::of(kind.unwrap_or(ProviderType::ExternalJwt));
    check_known_fields(obj, &rules, report);
    check_required_strings(obj, &rules, report);
    check_type(obj, report);
    check_optional_scalars(obj, &rules, report);
    match kind {
        Some(ProviderType::OpenIdConnect) => {
            check_openid_connect_oauth2(obj, report);
            check_button_image(obj.get("buttonImageURL"), "buttonImageURL", report);
        }
        // An unknown type is reported by `check_type`; its members are read as ExternalJWT's.
        Some(ProviderType::ExternalJwt) | None => {
            check_keys(obj, report);
            check_verification_key_ids(obj, report);
            check_claim_map(obj, report);
            check_oauth2(obj, report);
        }
    }
    check_domains(obj, report);
    check_lambda_configuration(obj, report);
    check_application_configuration(obj, kind, report);
    check_tenant_configuration(obj, report);
}

/// Reports each member of the object at `base` that is not one of `fields` as
/// `[unknown]{base}.{member}`, saying it is not a field of `what`: a misspelt key (`emailclaim`)
/// would otherwise be stored and silently ignored.
fn check_known_members(
    section: &Map<String, Value>,
    base: &str,
    (fields, what): (&[&str], &str),
    report: &mut Report,
) {
    for key in section.keys() {
        if !fields.contains(&key.as_str()) {
            let message = format!("This is not a field of {what}.");
            report.add(&format!("{base}.{key}"), "unknown", message);
        }
    }
}

/// Reports each member that is not a field of the type's providers as `[unknown]`.
fn check_known_fields(obj: &Map<String, Value>, rules: &Rules, report: &mut Report) {
    for key in obj.keys() {
        if !rules.fields.contains(&key.as_str()) {
            let message = format!(
                "This is not a field of an {} identity provider.",
                rules.name
            );
            report.add(key, "unknown", message);
        }
    }
}

/// Reports the type's required strings (`name`, `type`, and `headerKeyParameter` or
/// `buttonText`) when missing or blank (`[blank]`) or not strings (`[invalid]`).
fn check_required_strings(obj: &Map<String, Value>, rules: &Rules, report: &mut Report) {
    for &(name, message) in rules.required {
        match obj.get(name) {
            None | Some(Value::Null) => report.add(name, "blank", message),
            Some(Value::String(s)) if s.trim().is_empty() => report.add(name, "blank", message),
            Some(Value::String(_)) => {}
            Some(other) => report.add(
                name,
                "invalid",
                format!("Expected a string, found {}.", kind(other)),
            ),
        }
    }
}

/// Reports a `type` this plugin does not manage (a blank one is reported as `[blank]`
/// already).
fn check_type(obj: &Map<String, Value>, report: &mut Report) {
    if let Some(Value::String(t)) = obj.get("type") {
        if !t.trim().is_empty() && ProviderType::parse(t).is_none() {
            report.add(
                "type",
                "invalid",
                "This type is not supported; Gatehouse manages ExternalJWT and OpenIDConnect providers.",
            );
        }
    }
}

/// Checks the optional top-level scalars: the type's booleans (`enabled`, `debug`,
/// `postRequest`) and strings (`defaultKeyId`, `uniqueIdentityClaim`, `buttonImageURL`,
/// `source`), `id`/`tenantId` (UUIDs), `linkingStrategy`, and `data`/`attributeMappings`
/// (objects).
fn check_optional_scalars(obj: &Map<String, Value>, rules: &Rules, report: &mut Report) {
    for &name in rules.booleans {
        report.expect_type(obj.get(name), name, "a boolean", Value::is_boolean);
    }
    for &name in rules.strings {
        report.expect_type(obj.get(name), name, "a string", Value::is_string);
    }
    report.expect_uuid(obj.get("id"), "id", "id");
    report.expect_uuid(obj.get("tenantId"), "tenantId", "tenantId");
    check_linking_strategy(obj.get("linkingStrategy"), report);
    for name in ["data", "attributeMappings"] {
        report.expect_type(obj.get(name), name, "an object", Value::is_object);
    }
}

/// Reports a `linkingStrategy` that is present, not `null` and not one of [`LinkingStrategy`].
fn check_linking_strategy(value: Option<&Value>, report: &mut Report) {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if LinkingStrategy::parse(s).is_some() => {}
        Some(_) => {
            let names: Vec<&str> = LinkingStrategy::ALL.iter().map(|s| s.name()).collect();
            report.add(
                "linkingStrategy",
                "invalid",
                format!("The linkingStrategy must be one of {}.", names.join(", ")),
            );
        }
    }
}

/// Checks `keys`: an object whose every entry is a usable key (`keys.{id}`).
fn check_keys(obj: &Map<String, Value>, report: &mut Report) {
    let Some(keys) = report.object_at(obj.get("keys"), "keys", "an object of key id to key") else {
        return;
    };
    for (id, value) in keys {
        if let Some(message) = key_problem(value) {
            report.add(&format!("keys.{id}"), "invalid", message);
        }
    }
}

/// Returns what is wrong with one `keys` entry, or `None` when it is a usable key.
fn key_problem(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if text == REDACTED => {
            Some("No stored secret can be kept for this key id; give the secret.".into())
        }
        Value::String(text) => parse_key(text)
            .err()
            .map(|message| format!("The key cannot be used: {message}.")),
        other => Some(format!(
            "Expected a PEM key, certificate or HMAC secret string, found {}.",
            kind(other)
        )),
    }
}

/// Checks `verificationKeyIds`: an array of key ids (UUIDs). Every problem is reported at
/// `verificationKeyIds`, the message naming the entry's index.
fn check_verification_key_ids(obj: &Map<String, Value>, report: &mut Report) {
    let path = "verificationKeyIds";
    let ids = match obj.get(path) {
        None | Some(Value::Null) => return,
        Some(Value::Array(ids)) => ids,
        Some(other) => {
            let found = kind(other);
            let message = format!("Expected an array of key ids, found {found}.");
            report.add(path, "invalid", message);
            return;
        }
    };
    for (i, id) in ids.iter().enumerate() {
        if id
            .as_str()
            .and_then(|s| Uuid::parse_str(s.trim()).ok())
            .is_none()
        {
            let message = format!("The verificationKeyIds[{i}] must be the id (a UUID) of a key.");
            report.add(path, "invalid", message);
        }
    }
}

/// Checks `claimMap`: an object whose every target is one of [`CLAIM_MAP_TARGETS`].
fn check_claim_map(obj: &Map<String, Value>, report: &mut Report) {
    let Some(map) = report.object_at(
        obj.get("claimMap"),
        "claimMap",
        "an object of claim to target",
    ) else {
        return;
    };
    for (claim, target) in map {
        let known = target
            .as_str()
            .is_some_and(|t| CLAIM_MAP_TARGETS.contains(&t));
        if !known {
            report.add(
                &format!("claimMap.{claim}"),
                "invalid",
                format!(
                    "A claim must map to one of {}.",
                    CLAIM_MAP_TARGETS.join(", ")
                ),
            );
        }
    }
}

/// Checks `domains`: an array of domain names (`domains[i]`).
fn check_domains(obj: &Map<String, Value>, report: &mut Report) {
    let items = match obj.get("domains") {
        None | Some(Value::Null) => return,
        Some(Value::Array(items)) => items,
        Some(other) => {
            report.add(
                "domains",
                "invalid",
                format!("Expected an array of domains, found {}.", kind(other)),
            );
            return;
        }
    };
    for (i, d) in items.iter().enumerate() {
        if !d.as_str().is_some_and(is_domain_name) {
            report.add(
                &format!("domains[{i}]"),
                "invalid",
                format!("The domains[{i}] is not a valid domain name."),
            );
        }
    }
}

/// Returns true when `s` is non-blank, without `@` and without whitespace.
fn is_domain_name(s: &str) -> bool {
    !s.trim().is_empty() && !s.contains('@') && !s.contains(char::is_whitespace)
}

/// Checks `oauth2`: an object of strings, whose endpoints are http(s) URLs when not empty.
fn check_oauth2(obj: &Map<String, Value>, report: &mut Report) {
    let Some(oauth2) = report.object_at(obj.get("oauth2"), "oauth2", "an object") else {
        return;
    };
    check_known_members(oauth2, "oauth2", (OAUTH2_STRING_FIELDS, "oauth2"), report);
    for name in OAUTH2_STRING_FIELDS {
        let path = format!("oauth2.{name}");
        report.expect_type(oauth2.get(*name), &path, "a string", Value::is_string);
    }
    for name in OAUTH2_URL_FIELDS {
        if let Some(Value::String(s)) = oauth2.get(name) {
            if !(s.is_empty() || s.starts_with("https://") || s.starts_with("http://")) {
                report.add(
                    &format!("oauth2.{name}"),
                    "invalid",
                    "Expected an http(s) URL.",
                );
            }
        }
    }
}

/// The `oauth2` endpoints of an OpenIDConnect provider, found by discovery from `issuer` when
/// not given.
const DISCOVERED_ENDPOINTS: [&str; 3] = [
    "authorization_endpoint",
    "token_endpoint",
    "userinfo_endpoint",
];

/// The non-blank string `name` of `section`, when it is one.
fn text<'v>(section: &'v Map<String, Value>, name: &str) -> Option<&'v str> {
    section
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
}

/// True when `name` of `section` is missing, `null` or a blank string (a value of another type
/// is reported as `[invalid]` instead).
fn absent(section: &Map<String, Value>, name: &str) -> bool {
    match section.get(name) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(_) => false,
    }
}

/// Returns what is wrong with `s` as an http(s) URL (absolute, with a host, without a
/// fragment, without surrounding blanks; for an issuer also without a query, as OpenID Connect
/// Discovery requires), or `None` when it is one.
fn url_problem(s: &str, issuer: bool) -> Option<&'static str> {
    let parsed = (s.trim() == s).then(|| url::Url::parse(s).ok()).flatten();
    let Some(url) = parsed.filter(|u| matches!(u.scheme(), "http" | "https")) else {
        return Some("Expected an absolute http(s) URL.");
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Some("Expected an http(s) URL with a host.");
    }
    if url.fragment().is_some() || (issuer && url.query().is_some()) {
        return Some(if issuer {
            "The issuer must be an http(s) URL without a query or fragment."
        } else {
            "The URL must not have a fragment."
        });
    }
    None
}

/// `None` when the provider URL `s` is `https`, or plain `http` on this machine (a loopback
/// address or `localhost`); else why not: the client secret, the codes and the tokens would
/// cross the network in clear.
fn plain_http_problem(s: &str) -> Option<&'static str> {
    let url = url::Url::parse(s).ok()?;
    (url.scheme() == "http" && !super::loopback(&url)).then_some(
        "A provider reached over the network must use https; plain http is allowed only on this machine (a loopback address or localhost).",
    )
}

/// Checks the members of an OpenIDConnect `oauth2` object (the provider's, or an
/// application's override at `base`): strings, `issuer` and the endpoints http(s) URLs when
/// given, `clientAuthenticationMethod` one of FusionAuth's, a `client_secret` that is not
/// [`REDACTED`] (the stored secret could not be kept: none is stored, or `client_id` changed).
fn check_oauth2_members(oauth2: &Map<String, Value>, base: &str, report: &mut Report) {
    check_known_members(oauth2, base, (OAUTH2_STRING_FIELDS, "oauth2"), report);
    for name in OAUTH2_STRING_FIELDS {
        let path = format!("{base}.{name}");
        report.expect_type(oauth2.get(*name), &path, "a string", Value::is_string);
    }
    for name in DISCOVERED_ENDPOINTS.iter().chain(&["issuer"]) {
        let problem = text(oauth2, name)
            .and_then(|s| url_problem(s, *name == "issuer").or_else(|| plain_http_problem(s)));
        if let Some(problem) = problem {
            report.add(&format!("{base}.{name}"), "invalid", problem);
        }
    }
    if text(oauth2, "client_id").is_some_and(|id| id.chars().any(char::is_control)) {
        report.add(
            &format!("{base}.client_id"),
            "invalid",
            "The client_id must not contain control characters.",
        );
    }
    if let Some(method) = text(oauth2, "clientAuthenticationMethod") {
        if ClientAuthenticationMethod::parse(method).is_none() {
            let names: Vec<&str> = ClientAuthenticationMethod::ALL.map(|m| m.name()).to_vec();
            let message = format!(
                "The clientAuthenticationMethod must be one of {}.",
                names.join(", ")
            );
            report.add(
                &format!("{base}.clientAuthenticationMethod"),
                "invalid",
                message,
            );
        }
    }
    if oauth2.get("client_secret").and_then(Value::as_str) == Some(REDACTED) {
        report.add(
            &format!("{base}.client_secret"),
            "invalid",
            "No stored secret can be kept here (none is stored, or the client_id changed); give the secret.",
        );
    }
}

/// Checks the `oauth2` of an OpenIDConnect provider with FusionAuth's requirements (an absent
/// `oauth2` reads as empty, so each requirement is reported): its members
/// ([`check_oauth2_members`]); `client_id` (`[blank]`); `client_secret` unless
/// `clientAuthenticationMethod` is `none` (`[missing]`; the default method is
/// `client_secret_basic`); without an `issuer`, each endpoint (`[blank]`).
fn check_openid_connect_oauth2(obj: &Map<String, Value>, report: &mut Report) {
    let empty = Map::new();
    let oauth2 = match obj.get("oauth2") {
        None | Some(Value::Null) => &empty,
        value => match report.object_at(value, "oauth2", "an object") {
            Some(oauth2) => oauth2,
            None => return,
        },
    };
    check_oauth2_members(oauth2, "oauth2", report);
    if absent(oauth2, "client_id") {
        report.add(
            "oauth2.client_id",
            "blank",
            "You must specify the client_id the provider knows the gateway by.",
        );
    }
    let method = text(oauth2, "clientAuthenticationMethod").map_or(
        Some(ClientAuthenticationMethod::ClientSecretBasic),
        ClientAuthenticationMethod::parse,
    );
    if method.is_some_and(|m| m.needs_secret()) && absent(oauth2, "client_secret") {
        report.add(
            "oauth2.client_secret",
            "missing",
            "You must specify the client_secret unless the clientAuthenticationMethod is none (it defaults to client_secret_basic).",
        );
    }
    if absent(oauth2, "issuer") {
        for name in DISCOVERED_ENDPOINTS {
            if absent(oauth2, name) {
                report.add(
                    &format!("oauth2.{name}"),
                    "blank",
                    format!("You must specify the {name}, or the issuer whose discovery document names it."),
                );
            }
        }
    }
}

/// Checks an optional button image URL at `path`: an http(s) URL when it is a non-blank string
/// (its type is checked with the other strings).
fn check_button_image(value: Option<&Value>, path: &str, report: &mut Report) {
    if let Some(problem) = value
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| url_problem(s, false))
    {
        report.add(path, "invalid", problem);
    }
}

/// Checks the overrides an OpenIDConnect application entry (at `base`) may carry:
/// `buttonText` and `buttonImageURL` (strings, the image an http(s) URL) and `oauth2` (an
/// object, [`check_oauth2_members`]).
fn check_openid_connect_application(config: &Map<String, Value>, base: &str, report: &mut Report) {
    for name in ["buttonText", "buttonImageURL"] {
        let path = format!("{base}.{name}");
        report.expect_type(config.get(name), &path, "a string", Value::is_string);
    }
    check_button_image(
        config.get("buttonImageURL"),
        &format!("{base}.buttonImageURL"),
        report,
    );
    let path = format!("{base}.oauth2");
    if let Some(oauth2) = report.object_at(config.get("oauth2"), &path, "an object") {
        check_oauth2_members(oauth2, &path, report);
    }
}

/// Checks `lambdaConfiguration`: an object whose `reconcileId` is a UUID.
fn check_lambda_configuration(obj: &Map<String, Value>, report: &mut Report) {
    let path = "lambdaConfiguration";
    if let Some(lambdas) = report.object_at(obj.get(path), path, "an object") {
        report.expect_uuid(
            lambdas.get("reconcileId"),
            "lambdaConfiguration.reconcileId",
            "reconcileId",
        );
    }
}

/// Returns the path of `section`'s entry `id`: `section[id]` when `id` is a UUID, else just
/// `section` (a key that is not an id is not echoed back in the field path).
fn entry_path(section: &str, id: &str) -> String {
    match Uuid::parse_str(id) {
        Ok(_) => format!("{section}[{id}]"),
        Err(_) => section.to_string(),
    }
}

/// Checks `applicationConfiguration`: an object keyed by application id whose entries are
/// objects with boolean `enabled` and `createRegistration` (and, for OpenIDConnect, the
/// overrides of [`check_openid_connect_application`]).
fn check_application_configuration(
    obj: &Map<String, Value>,
    provider_type: Option<ProviderType>,
    report: &mut Report,
) {
    let section = "applicationConfiguration";
    let expected = "an object keyed by application id";
    let Some(apps) = report.object_at(obj.get(section), section, expected) else {
        return;
    };
    let fields = match provider_type {
        Some(ProviderType::OpenIdConnect) => OPENID_CONNECT_APPLICATION_FIELDS,
        Some(ProviderType::ExternalJwt) | None => APPLICATION_FIELDS,
    };
    let mut seen = Vec::new();
    for (id, config) in apps {
        let base = entry_path(section, id);
        check_entry_key(id, &base, ("application", &mut seen), report);
        match config {
            Value::Object(c) => {
                let what = "an application's configuration";
                check_known_members(c, &base, (fields, what), report);
                let data_path = format!("{base}.data");
                report.expect_type(c.get("data"), &data_path, "an object", Value::is_object);
                for name in ["enabled", "createRegistration"] {
                    let path = format!("{base}.{name}");
                    report.expect_type(c.get(name), &path, "a boolean", Value::is_boolean);
                }
                if provider_type == Some(ProviderType::OpenIdConnect) {
                    check_openid_connect_application(c, &base, report);
                }
            }
            other => report.add(
                &base,
                "invalid",
                format!("Expected an object, found {}.", kind(other)),
            ),
        }
    }
}

/// Checks `tenantConfiguration`: an object keyed by tenant id whose entries are objects with
/// an optional `limitUserLinkCount`.
fn check_tenant_configuration(obj: &Map<String, Value>, report: &mut Report) {
    let section = "tenantConfiguration";
    let expected = "an object keyed by tenant id";
    let Some(tenants) = report.object_at(obj.get(section), section, expected) else {
        return;
    };
    let mut seen = Vec::new();
    for (id, config) in tenants {
        let base = entry_path(section, id);
        check_entry_key(id, &base, ("tenant", &mut seen), report);
        check_link_limit(config.get("limitUserLinkCount"), &base, report);
        match config {
            Value::Object(c) => {
                let what = "a tenant's configuration";
                check_known_members(c, &base, (TENANT_FIELDS, what), report);
                let data_path = format!("{base}.data");
                report.expect_type(c.get("data"), &data_path, "an object", Value::is_object);
            }
            other => report.add(
                &base,
                "invalid",
                format!("Expected an object, found {}.", kind(other)),
            ),
        }
    }
}

/// Checks the key `id` of an entry (at `base`) of a section keyed by `entity` id: a UUID
/// (`[invalid]`), not one an earlier key of the section names in another spelling (upper case,
/// without hyphens; `[duplicate]`), as two entries for one id would contradict each other.
/// `seen` holds the ids of the earlier keys.
fn check_entry_key(
    id: &str,
    base: &str,
    (entity, seen): (&str, &mut Vec<Uuid>),
    report: &mut Report,
) {
    match Uuid::parse_str(id) {
        Ok(uuid) if seen.contains(&uuid) => report.add(
            base,
            "duplicate",
            format!("Another key of this object names the same {entity} id."),
        ),
        Ok(uuid) => seen.push(uuid),
        Err(_) => report.add(
            base,
            "invalid",
            format!("The key must be {} {entity} id (UUID).", article(entity)),
        ),
    }
}

/// `a` or `an` before `word`.
fn article(word: &str) -> &'static str {
    match word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        true => "an",
        false => "a",
    }
}

/// Checks a tenant's `limitUserLinkCount` (at `{base}.limitUserLinkCount`): an object with a
/// boolean `enabled` and an integer `maximumLinks` of at least 1.
fn check_link_limit(limit: Option<&Value>, base: &str, report: &mut Report) {
    let path = format!("{base}.limitUserLinkCount");
    let Some(limit) = report.object_at(limit, &path, "an object") else {
        return;
    };
    check_known_members(
        limit,
        &path,
        (LINK_LIMIT_FIELDS, "limitUserLinkCount"),
        report,
    );
    let enabled = limit.get("enabled");
    let enabled_path = format!("{path}.enabled");
    report.expect_type(enabled, &enabled_path, "a boolean", Value::is_boolean);
    if let Some(v) = limit.get("maximumLinks") {
        if !v.is_null() && v.as_i64().is_none_or(|n| n < 1) {
            report.add(
                &format!("{path}.maximumLinks"),
                "invalid",
                "The maximumLinks must be an integer of at least 1.",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APP: &str = "3c219e58-ed0e-4b18-ad48-f4f92793ae32";
    const TENANT: &str = "e872a880-b14f-6d62-c312-cb40f22af465";

    /// The codes of `doc`'s field errors, as the API answers them.
    fn codes(doc: &Value) -> Vec<String> {
        let mut errors = Errors::new();
        validate_document(doc, "identityProvider.", &mut errors);
        let mut codes: Vec<String> = (errors.field_errors.values().flatten())
            .map(|e| e.code.clone())
            .collect();
        codes.sort();
        codes
    }

    fn external_jwt() -> Value {
        json!({"name": "Acme", "type": "ExternalJWT", "headerKeyParameter": "kid",
            "keys": {"k1": "a-shared-secret-of-enough-length"},
            "oauth2": {"emailClaim": "mail"},
            "applicationConfiguration": {APP: {"enabled": true, "data": {}}},
            "tenantConfiguration": {TENANT: {"limitUserLinkCount": {"enabled": true, "maximumLinks": 2}}}})
    }

    fn openid_connect() -> Value {
        json!({"name": "SSO", "type": "OpenIDConnect",
            "oauth2": {"issuer": "https://sso.example.com", "client_id": "gw", "client_secret": "s"},
            "applicationConfiguration": {APP: {"enabled": true, "buttonText": "Go",
                "oauth2": {"client_id": "app", "client_secret": "t", "scope": "openid"}}}})
    }

    #[test]
    fn known_members_of_every_section_pass() {
        assert_eq!(codes(&external_jwt()), Vec::<String>::new());
        assert_eq!(codes(&openid_connect()), Vec::<String>::new());
    }

    #[test]
    fn an_unknown_key_inside_a_section_is_refused_by_its_path() {
        let app = format!("identityProvider.applicationConfiguration[{APP}]");
        let tenant = format!("identityProvider.tenantConfiguration[{TENANT}]");
        let mut doc = external_jwt();
        doc["oauth2"]["emailclaim"] = json!("mail");
        doc["applicationConfiguration"][APP]["createregistration"] = json!(true);
        doc["applicationConfiguration"][APP]["oauth2"] = json!({});
        doc["tenantConfiguration"][TENANT]["limit"] = json!(1);
        doc["tenantConfiguration"][TENANT]["limitUserLinkCount"]["max"] = json!(1);
        assert_eq!(
            codes(&doc),
            vec![
                format!("[unknown]{app}.createregistration"),
                format!("[unknown]{app}.oauth2"),
                "[unknown]identityProvider.oauth2.emailclaim".to_string(),
                format!("[unknown]{tenant}.limit"),
                format!("[unknown]{tenant}.limitUserLinkCount.max"),
            ]
        );
        let mut doc = openid_connect();
        doc["oauth2"]["emailclaim"] = json!("mail");
        doc["applicationConfiguration"][APP]["oauth2"]["clientid"] = json!("x");
        doc["applicationConfiguration"][APP]["button"] = json!("x");
        assert_eq!(
            codes(&doc),
            vec![
                format!("[unknown]{app}.button"),
                format!("[unknown]{app}.oauth2.clientid"),
                "[unknown]identityProvider.oauth2.emailclaim".to_string(),
            ]
        );
    }

    #[test]
    fn one_id_written_twice_in_another_case_is_a_duplicate() {
        let upper = APP.to_uppercase();
        let mut doc = external_jwt();
        doc["applicationConfiguration"][&upper] = json!({"enabled": false});
        doc["tenantConfiguration"][TENANT.replace('-', "")] = json!({});
        let codes = codes(&doc);
        assert_eq!(codes.len(), 2, "{codes:?}");
        assert!(codes[0].starts_with("[duplicate]identityProvider.applicationConfiguration["));
        assert!(codes[1].starts_with("[duplicate]identityProvider.tenantConfiguration["));
    }
}
