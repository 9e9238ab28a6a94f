//! Public-key discovery: `GET /api/jwt/public-key` (PEMs, all or one), `GET /.well-known/jwks.json`
//! (the JWKS) and `GET /.well-known/openid-configuration` (issuer and `jwks_uri`).
//!
//! Only asymmetric keys are ever published: the list comes from
//! [`TokenService::public_keys`](gatehouse_plugin_api::TokenService::public_keys), which never
//! includes HMAC secrets. No authentication is required.

use std::collections::BTreeMap;

use gatehouse_plugin_api::tokens::PublicKeyInfo;
use gatehouse_plugin_api::{ApiError, PluginContext, PluginRequest, PluginResponse};
use gatehouse_refresh::effective_jwt_configuration;
use serde_json::{json, Value};

use crate::common::{parse_uuid, request_tenant_scope, scoped_tenant};

/// Handles `GET /api/jwt/public-key`.
///
/// - `?kid=` (the prose docs) or `?keyId=` (client libraries): `{"publicKey": pem}`, 404 when
///   no public key has that id;
/// - `?applicationId=`: the public key that signs the application's access tokens (the
///   application's key when its JWT settings are enabled, else its tenant's), as
///   `{"publicKey": pem}`; 404 for an unknown application, one outside the
///   `X-FusionAuth-TenantId` tenant, or a key with no public part (HMAC);
/// - neither: `{"publicKeys": {kid: pem, …}}`.
pub async fn public_key(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let keys = context.tokens.public_keys();
    // Each call names one key, so its parameter is read as written: `kid=null` names no key
    // (404), it does not ask for every key.
    let (kid, key_id) = (request.query_text("kid"), request.query_text("keyId"));
    let application_id = request.param_text("applicationId");
    let named = [kid.is_some(), key_id.is_some(), application_id.is_some()];
    let same_key = match (&kid, &key_id) {
        (Some(kid), Some(key_id)) => kid.trim().eq_ignore_ascii_case(key_id.trim()),
        _ => false,
    };
    if named.iter().filter(|n| **n).count() > 1 && !(same_key && application_id.is_none()) {
        // Two ways of naming the key that may name two keys: which one is meant?
        return Err(ApiError::general(
            "[AmbiguousRequest]",
            "Name the key by one of kid, keyId and applicationId.",
        ));
    }
    if let Some(kid) = kid.or(key_id) {
        let key = find_key(&keys, &kid).ok_or(ApiError::NotFound)?;
        return Ok(PluginResponse::json(200, &json!({ "publicKey": key.pem })));
    }
    if let Some(application_id) = application_id {
        let application_id = parse_uuid("applicationId", &application_id)?;
        let tenant_id = request_tenant_scope(request, context)?;
        let application = context
            .store
            .get_application(application_id)
            .await?
            .filter(|a| tenant_id.is_none_or(|t| t == a.tenant_id))
            .ok_or(ApiError::NotFound)?;
        let tenant = context.store.get_tenant(application.tenant_id).await?;
        let key_id = match &tenant {
            Some(tenant) => {
                effective_jwt_configuration(tenant, Some(&application)).access_token_key_id
            }
            None => application.jwt_configuration.access_token_key_id,
        }
        .ok_or(ApiError::NotFound)?;
        let key = find_key(&keys, &key_id.to_string()).ok_or(ApiError::NotFound)?;
        return Ok(PluginResponse::json(200, &json!({ "publicKey": key.pem })));
    }
    Ok(PluginResponse::json(200, &all_public_keys_body(&keys)))
}

/// The key with `kid`, compared case-insensitively (ids are UUIDs, whose case does not matter).
fn find_key<'a>(keys: &'a [PublicKeyInfo], kid: &str) -> Option<&'a PublicKeyInfo> {
    let kid = kid.trim();
    keys.iter().find(|k| k.key_id.eq_ignore_ascii_case(kid))
}

/// `{"publicKeys": {kid: pem}}`.
pub fn all_public_keys_body(keys: &[PublicKeyInfo]) -> Value {
    let map: BTreeMap<&str, &str> = keys
        .iter()
        .map(|k| (k.key_id.as_str(), k.pem.as_str()))
        .collect();
    json!({ "publicKeys": map })
}

/// Handles `GET /.well-known/jwks.json`: `{"keys": [jwk, …]}`.
pub fn jwks(context: &PluginContext) -> PluginResponse {
    PluginResponse::json(200, &jwks_body(&context.tokens.public_keys()))
}

/// The JWK Set of `keys`.
pub fn jwks_body(keys: &[PublicKeyInfo]) -> Value {
    let jwks: Vec<&Value> = keys.iter().map(|k| &k.jwk).collect();
    json!({ "keys": jwks })
}

/// Handles `GET /.well-known/openid-configuration`.
///
/// The issuer is the `X-FusionAuth-TenantId` tenant's (404 when unknown), else the default
/// tenant's; `jwks_uri` is built from the `Host` header and the request's scheme. Only what the
/// gateway serves is advertised (no OAuth endpoints).
pub async fn openid_configuration(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let tenant = scoped_tenant(context, request_tenant_scope(request, context)?)
        .await?
        .ok_or(ApiError::NotFound)?;
    let host = request_host(request)?;
    let scheme = if request.tls { "https" } else { "http" };
    let body = openid_configuration_body(
        &tenant.issuer,
        &format!("{scheme}://{host}"),
        &context.tokens.public_keys(),
    );
    Ok(PluginResponse::json(200, &body))
}

/// The discovery document for `issuer`, with the JWKS under `base_url`.
pub fn openid_configuration_body(issuer: &str, base_url: &str, keys: &[PublicKeyInfo]) -> Value {
    let mut algorithms: Vec<&str> = keys.iter().map(|k| k.algorithm.as_str()).collect();
    algorithms.sort_unstable();
    algorithms.dedup();
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{base_url}/.well-known/jwks.json"),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
    })
}

/// The `Host` header (`localhost` when absent); 400 when it holds anything but host and port
/// characters, so it cannot smuggle a path or a scheme into the advertised URL.
pub fn request_host(request: &PluginRequest) -> Result<String, ApiError> {
    let host = request.header("host").map(str::trim).unwrap_or_default();
    if host.is_empty() {
        return Ok("localhost".into());
    }
    let valid = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if valid && host.len() <= 255 {
        Ok(host.to_string())
    } else {
        Err(ApiError::general(
            "[invalid]Host",
            "The Host header is not a valid host name.",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{block_on, Kit};
    use http::Method;
    use uuid::Uuid;

    fn body(res: &PluginResponse) -> Value {
        serde_json::from_slice(&res.body).expect("json")
    }

    #[test]
    fn all_keys_by_kid() {
        let kit = Kit::new();
        let req = PluginRequest::new(Method::GET, "/api/jwt/public-key");
        let res = block_on(public_key(&req, &kit.context)).expect("ok");
        let b = body(&res);
        assert_eq!(b["publicKeys"][&kit.key_id], "PEM-1");
        assert_eq!(b["publicKeys"].as_object().map(|m| m.len()), Some(1));
    }

    #[test]
    fn one_key_by_kid_or_key_id() {
        let kit = Kit::new();
        for param in ["kid", "keyId"] {
            let req = PluginRequest::new(
                Method::GET,
                &format!("/api/jwt/public-key?{param}={}", kit.key_id),
            );
            let res = block_on(public_key(&req, &kit.context)).expect("ok");
            assert_eq!(body(&res), json!({"publicKey": "PEM-1"}));
        }
        let req = PluginRequest::new(Method::GET, "/api/jwt/public-key?kid=hmac-key");
        let err = block_on(public_key(&req, &kit.context)).unwrap_err();
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn key_of_an_application() {
        let kit = Kit::new();
        let req = PluginRequest::new(
            Method::GET,
            &format!("/api/jwt/public-key?applicationId={}", kit.app.id),
        );
        let res = block_on(public_key(&req, &kit.context)).expect("ok");
        assert_eq!(body(&res), json!({"publicKey": "PEM-1"}));

        let req = PluginRequest::new(
            Method::GET,
            &format!("/api/jwt/public-key?applicationId={}", Uuid::new_v4()),
        );
        assert_eq!(
            block_on(public_key(&req, &kit.context))
                .unwrap_err()
                .status(),
            404
        );
        let req = PluginRequest::new(Method::GET, "/api/jwt/public-key?applicationId=x");
        assert_eq!(
            block_on(public_key(&req, &kit.context))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn jwks_lists_jwks() {
        let kit = Kit::new();
        let b = body(&jwks(&kit.context));
        assert_eq!(b["keys"][0]["kid"], kit.key_id);
        assert_eq!(b["keys"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn openid_configuration_uses_tenant_and_host() {
        let kit = Kit::new();
        let mut req = PluginRequest::new(Method::GET, "/.well-known/openid-configuration");
        req.headers
            .insert("host", "auth.example.com:8443".parse().expect("header"));
        req.tls = true;
        let b = body(&block_on(openid_configuration(&req, &kit.context)).expect("ok"));
        assert_eq!(b["issuer"], kit.tenant.issuer);
        assert_eq!(
            b["jwks_uri"],
            "https://auth.example.com:8443/.well-known/jwks.json"
        );
        assert_eq!(b["id_token_signing_alg_values_supported"], json!(["RS256"]));

        req.headers.insert(
            "x-fusionauth-tenantid",
            kit.other_tenant.id.to_string().parse().expect("header"),
        );
        let b = body(&block_on(openid_configuration(&req, &kit.context)).expect("ok"));
        assert_eq!(b["issuer"], kit.other_tenant.issuer);

        req.headers.insert(
            "x-fusionauth-tenantid",
            Uuid::new_v4().to_string().parse().expect("header"),
        );
        let err = block_on(openid_configuration(&req, &kit.context)).unwrap_err();
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn hosts_are_checked() {
        let mut req = PluginRequest::new(Method::GET, "/");
        assert_eq!(request_host(&req).expect("ok"), "localhost");
        req.headers
            .insert("host", "[::1]:9000".parse().expect("header"));
        assert_eq!(request_host(&req).expect("ok"), "[::1]:9000");
        req.headers
            .insert("host", "evil.com/x?".parse().expect("header"));
        assert_eq!(request_host(&req).unwrap_err().status(), 400);
    }
}
