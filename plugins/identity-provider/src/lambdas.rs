//! The Lambda API for reconcile lambdas: `POST /api/lambda[/{lambdaId}]`,
//! `GET /api/lambda[/{lambdaId}]` (all, or `?type=`), `PUT` and `PATCH /api/lambda/{lambdaId}`,
//! `DELETE /api/lambda/{lambdaId}`.
//!
//! Gatehouse keeps the reconcile lambdas of the provider types it manages,
//! `ExternalJWTReconcile` and `OpenIDReconcile` (run once OpenID Connect logins complete; until
//! then such a login is refused, so none is silently skipped); a lambda of another type is
//! refused rather than stored and never run. A lambda's type cannot change, so a provider's
//! lambda stays of the type it was checked for. The body is compiled when saved, in a lambda worker
//! process ([`crate::sandbox`]), so a syntax error, a missing `reconcile` function, or top-level
//! code that overruns the time or memory limit or kills its worker is a 400 naming
//! `lambda.body` (as is a check that found every worker busy). Lambdas are global: a
//! request scoped to a tenant may read them but not change them (401). A lambda that a provider
//! uses cannot be deleted.

use std::sync::Arc;

use gatehouse_plugin_api::helpers::{parse_uuid, path_uuid};
use gatehouse_plugin_api::{ApiError, Errors, PluginRequest, PluginResponse};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{api_key, json_body, patch_body, system_api_key, wrapped, Change, Env};
use crate::engine::LambdaError;
use crate::patch::{apply_offloaded, PatchFormat};
use crate::provider::ProviderType;
use crate::sandbox::Sandbox;

/// The lambda types this plugin keeps: each provider type's reconcile lambda.
fn lambda_types() -> impl Iterator<Item = &'static str> {
    ProviderType::ALL
        .into_iter()
        .map(ProviderType::reconcile_lambda_type)
}

const KNOWN_FIELDS: &[&str] = &[
    "body",
    "debug",
    "enabled",
    "engineType",
    "id",
    "insertInstant",
    "lastUpdateInstant",
    "name",
    "type",
];

/// The `type` of a lambda document.
pub fn lambda_type(doc: &Value) -> Option<&str> {
    doc.get("type").and_then(Value::as_str)
}

/// Validates the shape of a lambda document; `prefix` is prepended to field names (`lambda.`
/// for the API). Returns the body to compile when there is one (the caller checks it, see
/// [`body_checked`]); a missing or blank body is already an error.
pub fn validate_lambda<'a>(doc: &'a Value, prefix: &str, errors: &mut Errors) -> Option<&'a str> {
    let f = |n: &str| format!("{prefix}{n}");
    let Some(obj) = doc.as_object() else {
        errors.field(
            prefix.trim_end_matches('.'),
            "invalid",
            "Expected an object.",
        );
        return None;
    };
    for key in obj.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            errors.field(&f(key), "unknown", "This is not a field of a lambda.");
        }
    }
    match obj.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => {}
        _ => {
            errors.field(
                &f("name"),
                "blank",
                "You must specify the name of the lambda.",
            );
        }
    }
    match obj.get("type").and_then(Value::as_str) {
        Some(t) if lambda_types().any(|known| known == t) => {}
        Some(t) if !t.trim().is_empty() => {
            errors.field(
                &f("type"),
                "invalid",
                "This lambda type is not supported; Gatehouse keeps ExternalJWTReconcile and OpenIDReconcile lambdas.",
            );
        }
        _ => {
            errors.field(
                &f("type"),
                "blank",
                "You must specify the type: ExternalJWTReconcile or OpenIDReconcile.",
            );
        }
    }
    for name in ["debug", "enabled"] {
        if let Some(v) = obj.get(name) {
            if !v.is_boolean() && !v.is_null() {
                errors.field(&f(name), "invalid", "Expected a boolean.");
            }
        }
    }
    if let Some(v) = obj.get("engineType") {
        if !v.is_null() && !matches!(v.as_str(), Some("GraalJS") | Some("Nashorn")) {
            errors.field(
                &f("engineType"),
                "invalid",
                "The engineType must be GraalJS or Nashorn.",
            );
        }
    }
    match obj.get("body").and_then(Value::as_str) {
        Some(b) if !b.trim().is_empty() => Some(b),
        _ => {
            errors.field(
                &f("body"),
                "blank",
                "You must specify the body of the lambda.",
            );
            None
        }
    }
}

/// Records the outcome of compiling the body as an `invalid` error on `{prefix}body`.
pub fn body_checked(checked: Result<(), LambdaError>, prefix: &str, errors: &mut Errors) {
    if let Err(e) = checked {
        errors.field(&format!("{prefix}body"), "invalid", e.to_string());
    }
}

/// Fills defaults (`debug` false, `engineType` GraalJS) and drops `null` members.
pub fn normalize_lambda(doc: &mut Value) {
    if let Some(obj) = doc.as_object_mut() {
        obj.retain(|_, v| !v.is_null());
        obj.entry("debug").or_insert(Value::Bool(false));
        obj.entry("engineType").or_insert(json!("GraalJS"));
    }
}

/// For the host: validates and normalises a lambda declared in `config.yaml` (same JSON shape
/// as the API's `lambda`, with an `id`), compiling the body with `check` (the host runs it in a
/// worker, [`crate::sandbox::check_blocking`]). Returns the document the host stores, or `(field path relative to the entry, message)` pairs.
pub fn validate_config_lambda(
    doc: &Value,
    check: &dyn Fn(&str) -> Result<(), LambdaError>,
) -> Result<Value, Vec<(String, String)>> {
    let mut errors = Errors::new();
    if let Some(body) = validate_lambda(doc, "", &mut errors) {
        body_checked(check(body), "", &mut errors);
    }
    if doc
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .is_none()
    {
        errors.field(
            "id",
            "invalid",
            "A lambda declared in the configuration needs a UUID id.",
        );
    }
    if errors.is_empty() {
        let mut doc = doc.clone();
        normalize_lambda(&mut doc);
        Ok(doc)
    } else {
        Err(errors.into_messages())
    }
}

fn one(doc: &Value) -> PluginResponse {
    PluginResponse::json(200, &json!({ "lambda": doc }))
}

/// `doc` validated (the body compiled in a worker) and ready to store as lambda `id`, the
/// replacement of `existing` when it is an update (whose type cannot change): the id and
/// instants set. A 400 with every problem otherwise.
async fn prepared(
    id: Uuid,
    mut doc: Value,
    existing: Option<&Value>,
    sandbox: &Sandbox,
    context: &Env<'_>,
) -> Result<Value, ApiError> {
    let insert = existing.and_then(|e| e.get("insertInstant").and_then(Value::as_i64));
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("id".into(), json!(id));
        obj.remove("insertInstant");
        obj.remove("lastUpdateInstant");
    }
    let mut errors = Errors::new();
    if let Some(old_type) = existing.and_then(lambda_type) {
        if lambda_type(&doc).is_some_and(|t| t != old_type) {
            let message = "The type of a lambda cannot be changed.";
            errors.field("lambda.type", "invalid", message);
        }
    }
    if let Some(body) = validate_lambda(&doc, "lambda.", &mut errors) {
        body_checked(sandbox.check(body).await, "lambda.", &mut errors);
    }
    errors.into_result()?;
    normalize_lambda(&mut doc);
    let now = context.clock.now_millis();
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("insertInstant".into(), json!(insert.unwrap_or(now)));
        obj.insert("lastUpdateInstant".into(), json!(now));
    }
    Ok(doc)
}

/// How often a read-modify-write is tried again after a concurrent change won the race.
const MAX_ATTEMPTS: usize = 32;

/// Reads the lambda of the request's path, turns it into the replacement `change` makes of
/// it, and writes that back only if nobody changed it meanwhile (else starts over): concurrent
/// updates are serialized, never merged or lost.
async fn update_with(
    request: &PluginRequest,
    context: &Env<'_>,
    sandbox: &Sandbox,
    change: impl for<'v> Fn(&'v Value) -> Change<'v>,
) -> Result<PluginResponse, ApiError> {
    for _ in 0..MAX_ATTEMPTS {
        let (id, existing) = load(request, context).await?;
        let changed = change(&existing).await?;
        let doc = prepared(id, changed, Some(&existing), sandbox, context).await?;
        if context.records.replace_lambda(id, &existing, &doc).await? {
            return Ok(one(&doc));
        }
    }
    let mut errors = Errors::new();
    errors.general(
        "[Conflict]",
        "The lambda kept changing while this request updated it; try again.",
    );
    Err(ApiError::Conflict(errors))
}

/// `POST /api/lambda[/{lambdaId}]`.
pub async fn create(
    request: &PluginRequest,
    context: &Env<'_>,
    path_id: Option<Uuid>,
    sandbox: &Sandbox,
) -> Result<PluginResponse, ApiError> {
    system_api_key(request, context)?;
    let doc = wrapped(&json_body(request)?, "lambda")?;
    let id = match path_id {
        Some(id) => id,
        None => match doc.get("id").and_then(Value::as_str) {
            Some(s) => parse_uuid("lambda.id", s)?,
            None => Uuid::new_v4(),
        },
    };
    let duplicate = || {
        ApiError::field(
            "lambdaId",
            "duplicate",
            "A lambda with this id already exists.",
        )
    };
    if context.records.get_lambda(id).await?.is_some() {
        return Err(duplicate());
    }
    let doc = prepared(id, doc, None, sandbox, context).await?;
    // Insert-only: of concurrent creates with one id, one is written, the others are told.
    if !context.records.insert_lambda(id, &doc).await? {
        return Err(duplicate());
    }
    Ok(one(&doc))
}

async fn load(request: &PluginRequest, context: &Env<'_>) -> Result<(Uuid, Value), ApiError> {
    let id = path_uuid(request, "lambdaId")?;
    let doc = context
        .records
        .get_lambda(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok((id, doc))
}

/// `GET /api/lambda/{lambdaId}`.
pub async fn retrieve(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    api_key(request, context)?;
    Ok(one(&load(request, context).await?.1))
}

/// `GET /api/lambda` (optionally `?type=`).
pub async fn retrieve_all(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    api_key(request, context)?;
    let wanted = request.query_param("type");
    let mut docs: Vec<Value> = context
        .records
        .list_lambdas()
        .await?
        .into_iter()
        .filter(|d| wanted.as_deref().is_none_or(|t| lambda_type(d) == Some(t)))
        .collect();
    docs.sort_by_key(|d| {
        d.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_lowercase()
    });
    Ok(PluginResponse::json(200, &json!({ "lambdas": docs })))
}

/// `PUT /api/lambda/{lambdaId}`.
pub async fn update(
    request: &PluginRequest,
    context: &Env<'_>,
    sandbox: &Sandbox,
) -> Result<PluginResponse, ApiError> {
    system_api_key(request, context)?;
    let doc = wrapped(&json_body(request)?, "lambda")?;
    update_with(request, context, sandbox, |_| {
        Box::pin(std::future::ready(Ok(doc.clone())))
    })
    .await
}

/// `PATCH /api/lambda/{lambdaId}` in any of the three formats.
pub async fn patch(
    request: &PluginRequest,
    context: &Env<'_>,
    sandbox: &Sandbox,
) -> Result<PluginResponse, ApiError> {
    system_api_key(request, context)?;
    let format = PatchFormat::from_content_type(request.header("content-type"))
        .ok_or(ApiError::UnsupportedMediaType)?;
    let body = Arc::new(patch_body(request)?);
    update_with(request, context, sandbox, |existing| {
        let target = json!({ "lambda": existing });
        let (body, cpu) = (body.clone(), context.cpu.clone());
        Box::pin(async move {
            let patched = apply_offloaded(&cpu, format, target, body).await?;
            wrapped(&patched, "lambda")
        })
    })
    .await
}

/// `DELETE /api/lambda/{lambdaId}`; 400 while a provider uses it.
pub async fn delete(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    system_api_key(request, context)?;
    let (id, _) = load(request, context).await?;
    // Checked where it is deleted: a provider naming it at the same time waits, or is told the
    // lambda is gone.
    let users = context.records.delete_lambda(id).await?;
    if !users.is_empty() {
        let users: Vec<String> = users.iter().map(Uuid::to_string).collect();
        return Err(ApiError::general(
            "[InUse]",
            format!(
                "The lambda is used by the identity provider(s) [{}]; remove it from them first.",
                users.join(", ")
            ),
        ));
    }
    Ok(PluginResponse::empty(200))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{check, Limits};

    fn in_process(body: &str) -> Result<(), LambdaError> {
        check(body, Limits::default())
    }

    #[test]
    fn lambdas_are_validated() {
        let mut errors = Errors::new();
        let doc =
            json!({"type": "JWTPopulate", "body": "function reconcile( {", "debug": 1, "x": 1});
        let body = validate_lambda(&doc, "lambda.", &mut errors);
        assert_eq!(body, Some("function reconcile( {"));
        body_checked(in_process(body.expect("body")), "lambda.", &mut errors);
        let codes: Vec<&str> = errors
            .field_errors
            .values()
            .flatten()
            .map(|e| e.code.as_str())
            .collect();
        for c in [
            "[blank]lambda.name",
            "[invalid]lambda.type",
            "[invalid]lambda.body",
            "[invalid]lambda.debug",
            "[unknown]lambda.x",
        ] {
            assert!(codes.contains(&c), "{c} not in {codes:?}");
        }
        let ok = validate_config_lambda(
            &json!({
                "id": Uuid::new_v4(), "name": "r", "type": "ExternalJWTReconcile",
                "body": "function reconcile(user, registration, jwt) { user.firstName = jwt.name; }"
            }),
            &in_process,
        )
        .expect("valid");
        assert_eq!(ok["engineType"], "GraalJS");
        for t in lambda_types() {
            let mut errors = Errors::new();
            let doc = json!({"name": "r", "type": t, "body": "function reconcile() {}"});
            validate_lambda(&doc, "lambda.", &mut errors);
            assert!(errors.is_empty(), "{t}: {errors:?}");
        }
        assert!(validate_config_lambda(&json!({"name": "r"}), &in_process).is_err());
        let looping = validate_config_lambda(
            &json!({"id": Uuid::new_v4(), "name": "r", "type": "ExternalJWTReconcile", "body": "while (true) {}"}),
            &|_| Err(LambdaError::Timeout),
        )
        .expect_err("refused");
        assert_eq!(
            looping,
            vec![("body".to_string(), LambdaError::Timeout.to_string())]
        );
        let mut errors = Errors::new();
        assert_eq!(
            validate_lambda(&json!({"name": "r", "body": " "}), "lambda.", &mut errors),
            None
        );
        assert!(errors.field_errors.contains_key("lambda.body"));
    }
}
