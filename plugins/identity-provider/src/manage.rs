//! Provider management: `POST /api/identity-provider[/{identityProviderId}]`,
//! `GET /api/identity-provider[/{identityProviderId}]` (all, or `?type=`), `PUT` and `PATCH`
//! (`application/json`, `application/merge-patch+json`, `application/json-patch+json`)
//! `/api/identity-provider/{identityProviderId}`, `DELETE` (links go with the provider), and
//! `GET /api/identity-provider/lookup?domain=`.
//!
//! All need an API key. A request scoped to a tenant (tenant-locked key or
//! `X-FusionAuth-TenantId`) sees global providers and its tenant's, and changes only its tenant's;
//! a provider it creates is scoped to its tenant. It reads a provider without what it says of
//! other tenants (their applications' and tenants' configuration), and a domain taken by a
//! provider it cannot see is refused without naming that provider.

use std::sync::Arc;

use gatehouse_plugin_api::helpers::{parse_uuid, path_uuid};
use gatehouse_plugin_api::{ApiError, ApiKeyGrant, Errors, PluginRequest, PluginResponse};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{
    api_key, document_tenant, json_body, patch_body, visible, visible_providers, wrapped, writable,
    Change, Env,
};
use crate::lambdas::lambda_type;
use crate::login::ring_key;
use crate::patch::{apply_offloaded, PatchFormat};
use crate::provider::{
    normalize, redact, restore_redacted, validate_document, MissingSecret, Provider, ProviderType,
};
use crate::store::ProviderWrite;

const PREFIX: &str = "identityProvider.";

/// `{"identityProvider": doc}`.
fn one(doc: &Value) -> PluginResponse {
    PluginResponse::json(200, &json!({ "identityProvider": redact(doc) }))
}

/// Validates `doc` fully (content and references) for provider `id`, the replacement of
/// `existing` when it is an update (whose `type` cannot change); every problem is a field error
/// of one 400.
async fn validate_all(
    doc: &Value,
    id: Uuid,
    existing: Option<&Value>,
    grant: &ApiKeyGrant,
    context: &Env<'_>,
) -> Result<(), ApiError> {
    let mut errors = Errors::new();
    validate_document(doc, PREFIX, &mut errors);
    let new_type = doc.get("type").and_then(Value::as_str);
    if let Some(old_type) = existing.and_then(|e| e.get("type")).and_then(Value::as_str) {
        if new_type.is_some_and(|t| t != old_type) {
            errors.field(
                "identityProvider.type",
                "invalid",
                "The type of an identity provider cannot be changed.",
            );
        }
    }
    check_references(doc, grant, context, &mut errors).await?;
    check_reconcile_lambda(doc, context, &mut errors).await?;
    match ProviderType::of(doc) {
        // An unknown type was reported by the document's validation; its keys are read as
        // ExternalJWT's so every problem is named at once.
        Some(ProviderType::ExternalJwt) | None => {
            check_default_key(doc, context, &mut errors);
            check_verification_keys(doc, context, &mut errors);
        }
        Some(ProviderType::OpenIdConnect) => {}
    }
    check_domains_free(doc, id, grant, context, &mut errors).await?;
    errors.into_result()
}

/// Adds a field error for the tenant, each application and each tenant `doc` names that does
/// not exist, or that the request (or the provider's own tenant) cannot reach.
async fn check_references(
    doc: &Value,
    grant: &ApiKeyGrant,
    context: &Env<'_>,
    errors: &mut Errors,
) -> Result<(), ApiError> {
    if let Some(t) = document_tenant(doc) {
        if context.store.get_tenant(t).await?.is_none() {
            errors.field(
                "identityProvider.tenantId",
                "invalid",
                "No tenant exists with this tenantId.",
            );
        }
        if !grant.allows_tenant(t) {
            errors.field(
                "identityProvider.tenantId",
                "invalid",
                "The request is scoped to another tenant.",
            );
        }
    }
    if let Some(apps) = doc
        .get("applicationConfiguration")
        .and_then(Value::as_object)
    {
        for key in apps.keys() {
            let Ok(app_id) = Uuid::parse_str(key) else {
                continue;
            };
            let found = context.store.get_application(app_id).await?;
            let ok = found.is_some_and(|a| {
                grant.allows_tenant(a.tenant_id)
                    && document_tenant(doc).is_none_or(|t| t == a.tenant_id)
            });
            if !ok {
                errors.field(
                    &format!("identityProvider.applicationConfiguration[{key}]"),
                    "invalid",
                    "No application exists with this id (in the tenants this provider and request can reach).",
                );
            }
        }
    }
    if let Some(tenants) = doc.get("tenantConfiguration").and_then(Value::as_object) {
        for key in tenants.keys() {
            let Ok(tenant_id) = Uuid::parse_str(key) else {
                continue;
            };
            if context.store.get_tenant(tenant_id).await?.is_none() {
                errors.field(
                    &format!("identityProvider.tenantConfiguration[{key}]"),
                    "invalid",
                    "No tenant exists with this id.",
                );
            }
        }
    }
    Ok(())
}

/// Adds a `[duplicate]` field error for each domain of `doc` that another provider (of any
/// type) manages. The owner is named only when the request may see it ([`visible`]): a
/// tenant-scoped request learns that the domain is taken, never another tenant's provider.
async fn check_domains_free(
    doc: &Value,
    id: Uuid,
    grant: &ApiKeyGrant,
    context: &Env<'_>,
    errors: &mut Errors,
) -> Result<(), ApiError> {
    if let Some(domains) = doc.get("domains").and_then(Value::as_array) {
        let docs = context.records.list_identity_providers().await?;
        let others: Vec<(&Value, Provider)> = docs
            .iter()
            .filter_map(|d| Provider::from_document(d).map(|p| (d, p)))
            .filter(|(_, p)| p.id != id)
            .collect();
        for (i, d) in domains.iter().enumerate() {
            let Some(d) = d.as_str() else { continue };
            if let Some((owner_doc, owner)) = others.iter().find(|(_, p)| p.manages_domain(d)) {
                let message = if visible(grant, owner_doc) {
                    format!(
                        "This domain is already managed by the identity provider [{}].",
                        owner.id
                    )
                } else {
                    "This domain is already managed by another identity provider.".to_string()
                };
                errors.field(
                    &format!("identityProvider.domains[{i}]"),
                    "duplicate",
                    message,
                );
            }
        }
    }
    Ok(())
}

/// Adds a field error `identityProvider.lambdaConfiguration.reconcileId` when it names no
/// lambda, or one that is not of the provider type's reconcile type (`ExternalJWTReconcile`,
/// `OpenIDReconcile`).
async fn check_reconcile_lambda(
    doc: &Value,
    context: &Env<'_>,
    errors: &mut Errors,
) -> Result<(), ApiError> {
    if let Some(reconcile) = doc
        .get("lambdaConfiguration")
        .and_then(|l| l.get("reconcileId"))
        .and_then(Value::as_str)
    {
        let kind = ProviderType::of(doc).unwrap_or(ProviderType::ExternalJwt);
        let wanted = kind.reconcile_lambda_type();
        if let Ok(lambda_id) = Uuid::parse_str(reconcile) {
            match context.records.get_lambda(lambda_id).await? {
                None => {
                    errors.field(
                        "identityProvider.lambdaConfiguration.reconcileId",
                        "invalid",
                        "No lambda exists with this id.",
                    );
                }
                Some(l) if lambda_type(&l) != Some(wanted) => {
                    errors.field(
                        "identityProvider.lambdaConfiguration.reconcileId",
                        "invalid",
                        format!("The lambda must be of type {wanted}."),
                    );
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Adds a field error `identityProvider.defaultKeyId` when it names neither a key of the
/// document's `keys` nor a public key of the gateway's ring (by any spelling of its UUID, as
/// `verificationKeyIds` and path ids are read).
fn check_default_key(doc: &Value, context: &Env<'_>, errors: &mut Errors) {
    if let Some(default_key) = doc.get("defaultKeyId").and_then(Value::as_str) {
        let in_map = doc.get("keys").and_then(|k| k.get(default_key)).is_some();
        // A ring key may be named by any spelling of its UUID (stored canonical: [`normalize`]).
        let as_uuid = Uuid::parse_str(default_key.trim()).ok();
        let in_ring = context.tokens.public_keys().iter().any(|k| {
            k.key_id == default_key
                || as_uuid.is_some_and(|u| Uuid::parse_str(&k.key_id).ok() == Some(u))
        });
        if !default_key.is_empty() && !in_map && !in_ring {
            errors.field(
                "identityProvider.defaultKeyId",
                "invalid",
                "The defaultKeyId names neither a key of this provider nor a public key of the gateway.",
            );
        }
    }
}

/// Adds a field error `identityProvider.verificationKeyIds` for each id of `verificationKeyIds`
/// that names no public key of the gateway's ring: `[missing]` when the ring has no such key,
/// `[cannotVerify]` when it is an HMAC key (its secret signs the gateway's own tokens and is
/// never handed to a plugin). Ids that are not UUIDs were reported by the content check.
fn check_verification_keys(doc: &Value, context: &Env<'_>, errors: &mut Errors) {
    let field = "identityProvider.verificationKeyIds";
    let Some(ids) = doc.get("verificationKeyIds").and_then(Value::as_array) else {
        return;
    };
    for (i, id) in ids.iter().enumerate() {
        let Some(id) = id.as_str().and_then(|s| Uuid::parse_str(s.trim()).ok()) else {
            continue;
        };
        if ring_key(context, &id.to_string()).is_some() {
            continue;
        }
        if context.tokens.has_key(&id.to_string()) {
            let message = format!(
                "The verificationKeyIds[{i}] names an HMAC key of the gateway, which cannot verify external JWTs; name a public key or certificate."
            );
            errors.field(field, "cannotVerify", message);
        } else {
            let message = format!("The verificationKeyIds[{i}] names no key of the gateway.");
            errors.field(field, "missing", message);
        }
    }
}

/// Settles the tenant of the provider document `obj`: `tenant` when it names none (no
/// `tenantId`, or `"tenantId": null` — a null is no tenant, never "global": a tenant-scoped
/// request cannot make a global provider that way, nor an update turn a tenant's provider into
/// one), and a UUID in any spelling stored in its canonical one.
fn settle_tenant(obj: &mut serde_json::Map<String, Value>, tenant: Option<Uuid>) {
    let named = obj.get("tenantId").filter(|t| !t.is_null());
    let settled = match named {
        None => tenant,
        Some(t) => t.as_str().and_then(|s| Uuid::parse_str(s.trim()).ok()),
    };
    if let Some(t) = settled {
        obj.insert("tenantId".into(), json!(t));
    }
}

/// Finishes a document for storage: id, tenant of a scoped request, defaults, instants.
fn finish(mut doc: Value, id: Uuid, grant: &ApiKeyGrant, insert: i64, now: i64) -> Value {
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("id".into(), json!(id));
        settle_tenant(obj, grant.tenant_id);
    }
    normalize(&mut doc);
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("insertInstant".into(), json!(insert));
        obj.insert("lastUpdateInstant".into(), json!(now));
    }
    doc
}

/// `POST /api/identity-provider[/{identityProviderId}]`: insert-only, a taken id is a 400
/// `[duplicate]identityProviderId`.
pub async fn create(
    request: &PluginRequest,
    context: &Env<'_>,
    path_id: Option<Uuid>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let mut doc = wrapped(&json_body(request)?, "identityProvider")?;
    let id = match path_id {
        Some(id) => id,
        None => match doc.get("id").and_then(Value::as_str) {
            Some(s) => parse_uuid("identityProvider.id", s)?,
            None => Uuid::new_v4(),
        },
    };
    if let Some(obj) = doc.as_object_mut() {
        settle_tenant(obj, grant.tenant_id);
    }
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("id".into(), json!(id));
    }
    let duplicate = || {
        ApiError::field(
            "identityProviderId",
            "duplicate",
            "An identity provider with this id already exists.",
        )
    };
    for _ in 0..MAX_ATTEMPTS {
        if context.records.get_identity_provider(id).await?.is_some() {
            return Err(duplicate());
        }
        validate_all(&doc, id, None, &grant, context).await?;
        let now = context.clock.now_millis();
        let stored = finish(doc.clone(), id, &grant, now, now);
        // Insert-only, the domains checked with the write: of concurrent creates with one id
        // or one domain, one is written and the others are told why.
        match context
            .records
            .insert_identity_provider(id, &stored)
            .await?
        {
            ProviderWrite::Written => return Ok(one(&stored)),
            ProviderWrite::IdTaken => return Err(duplicate()),
            // A domain taken or the lambda deleted since the check: validating again names it.
            ProviderWrite::DomainTaken | ProviderWrite::LambdaMissing | ProviderWrite::Changed => {}
        }
    }
    Err(kept_changing())
}

/// The 409 of a write that lost every one of its [`MAX_ATTEMPTS`] to concurrent changes.
fn kept_changing() -> ApiError {
    let mut errors = Errors::new();
    errors.general(
        "[Conflict]",
        "The identity providers kept changing while this request wrote; try again.",
    );
    ApiError::Conflict(errors)
}

/// The stored provider `id`, when the request may see it.
async fn load(id: Uuid, grant: &ApiKeyGrant, context: &Env<'_>) -> Result<Value, ApiError> {
    context
        .records
        .get_identity_provider(id)
        .await?
        .filter(|doc| visible(grant, doc))
        .ok_or(ApiError::NotFound)
}

/// `GET /api/identity-provider/{identityProviderId}`.
pub async fn retrieve(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let id = path_uuid(request, "identityProviderId")?;
    let doc = load(id, &grant, context).await?;
    let mut seen = visible_providers(&grant, vec![doc], context).await?;
    Ok(one(&seen.pop().ok_or(ApiError::NotFound)?))
}

/// `GET /api/identity-provider` (optionally `?type=`).
pub async fn retrieve_all(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let wanted = request.query_param("type");
    let all = context.records.list_identity_providers().await?;
    let mut docs: Vec<Value> = visible_providers(&grant, all, context)
        .await?
        .into_iter()
        .filter(|d| {
            wanted
                .as_deref()
                .is_none_or(|t| d.get("type").and_then(Value::as_str) == Some(t))
        })
        .map(|d| redact(&d))
        .collect();
    docs.sort_by_key(|d| {
        d.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase()
    });
    Ok(PluginResponse::json(
        200,
        &json!({ "identityProviders": docs }),
    ))
}

/// How often a read-modify-write is tried again after a concurrent change won the race.
const MAX_ATTEMPTS: usize = 32;

/// Reads provider `id`, turns it into the replacement `change` makes of it, and writes that
/// back only if nobody changed the provider meanwhile; on a concurrent change it starts over
/// from the new version. Concurrent updates are so serialized, never merged into one (nor
/// lost), on one gateway or many sharing the store.
/// `missing` says what a `client_secret` the replacement lacks means (see [`MissingSecret`]).
async fn update_with(
    id: Uuid,
    grant: &ApiKeyGrant,
    context: &Env<'_>,
    missing: MissingSecret,
    change: impl for<'v> Fn(&'v Value) -> Change<'v>,
) -> Result<PluginResponse, ApiError> {
    for _ in 0..MAX_ATTEMPTS {
        let existing = load(id, grant, context).await?;
        if !writable(grant, &existing) {
            return Err(ApiError::NotFound);
        }
        let changed = change(&existing).await?;
        let doc = replacement(id, &existing, changed, missing, grant, context).await?;
        // A concurrent change, or a domain taken or the lambda deleted since the check (named
        // by the next validation), starts over.
        let written = context
            .records
            .replace_identity_provider(id, &existing, &doc)
            .await?;
        if written == ProviderWrite::Written {
            return Ok(one(&doc));
        }
    }
    Err(kept_changing())
}

/// The validated replacement of `existing` by `doc`: the id, tenant, secrets it does not give
/// anew ([`restore_redacted`], a secret it lacks read as `missing` says) and instants carried
/// over; the type must stay the same.
async fn replacement(
    id: Uuid,
    existing: &Value,
    mut doc: Value,
    missing: MissingSecret,
    grant: &ApiKeyGrant,
    context: &Env<'_>,
) -> Result<Value, ApiError> {
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("id".into(), json!(id));
        obj.remove("insertInstant");
        obj.remove("lastUpdateInstant");
        settle_tenant(obj, document_tenant(existing));
    }
    restore_redacted(&mut doc, existing, missing);
    validate_all(&doc, id, Some(existing), grant, context).await?;
    let insert = existing
        .get("insertInstant")
        .and_then(Value::as_i64)
        .unwrap_or_else(|| context.clock.now_millis());
    Ok(finish(doc, id, grant, insert, context.clock.now_millis()))
}

/// `PUT /api/identity-provider/{identityProviderId}`: full replacement.
pub async fn update(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let id = path_uuid(request, "identityProviderId")?;
    let doc = wrapped(&json_body(request)?, "identityProvider")?;
    update_with(id, &grant, context, MissingSecret::Kept, |_| {
        Box::pin(std::future::ready(Ok(doc.clone())))
    })
    .await
}

/// `PATCH /api/identity-provider/{identityProviderId}` in any of the three formats.
pub async fn patch(request: &PluginRequest, context: &Env<'_>) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let format = PatchFormat::from_content_type(request.header("content-type"))
        .ok_or(ApiError::UnsupportedMediaType)?;
    let id = path_uuid(request, "identityProviderId")?;
    let body = Arc::new(patch_body(request)?);
    // The patch applies to the provider as responses show it, every secret [`REDACTED`]: a
    // `test` cannot probe a secret, nor a `copy` or `move` put one where a response shows it.
    update_with(id, &grant, context, MissingSecret::Removed, |existing| {
        let target = json!({ "identityProvider": redact(existing) });
        let (body, cpu) = (body.clone(), context.cpu.clone());
        Box::pin(async move {
            let patched = apply_offloaded(&cpu, format, target, body).await?;
            // A changed type is refused with the other problems ([`replacement`]).
            wrapped(&patched, "identityProvider")
        })
    })
    .await
}

/// `DELETE /api/identity-provider/{identityProviderId}`: the provider and its links.
pub async fn delete(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let id = path_uuid(request, "identityProviderId")?;
    let existing = load(id, &grant, context).await?;
    if !writable(&grant, &existing) {
        return Err(ApiError::NotFound);
    }
    context.records.delete_identity_provider(id).await?;
    Ok(PluginResponse::empty(200))
}

/// `GET /api/identity-provider/lookup?domain=` (a domain or an email address; optional
/// `tenantId` prefers that tenant's providers over global ones): 200 with the provider's
/// details, 404 when no enabled provider manages the domain.
pub async fn lookup(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    // Free text, as written: a provider may manage the domain `null`.
    let raw = request.query_text("domain").ok_or_else(|| {
        ApiError::field(
            "domain",
            "blank",
            "You must specify the domain or an email address.",
        )
    })?;
    let domain = raw
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(&raw)
        .to_string();
    let tenant = match request.query_param("tenantId") {
        Some(t) => Some(parse_uuid("tenantId", &t)?),
        None => grant.tenant_id,
    };
    let all = context.records.list_identity_providers().await?;
    let docs = visible_providers(&grant, all, context).await?;
    let candidates: Vec<(&Value, Provider)> = docs
        .iter()
        .filter_map(|d| Provider::from_document(d).map(|p| (d, p)))
        .filter(|(_, p)| p.enabled && p.manages_domain(&domain))
        .filter(|(_, p)| p.tenant_id.is_none() || p.tenant_id == tenant)
        .collect();
    let chosen = candidates
        .iter()
        .find(|(_, p)| tenant.is_some() && p.tenant_id == tenant)
        .or_else(|| candidates.first())
        .ok_or(ApiError::NotFound)?;
    let (doc, provider) = chosen;
    let application_ids: Vec<Uuid> = provider
        .applications
        .iter()
        .filter(|(_, c)| c.enabled)
        .map(|(id, _)| *id)
        .collect();
    let mut details = json!({
        "applicationIds": application_ids,
        "id": provider.id,
        "name": provider.name,
        "type": provider.kind.name(),
    });
    if let Some(oauth2) = redact(doc).get("oauth2") {
        details["oauth2"] = oauth2.clone();
    }
    if let Some(t) = provider.tenant_id {
        details["tenantId"] = json!(t);
    }
    Ok(PluginResponse::json(
        200,
        &json!({ "identityProvider": details }),
    ))
}
