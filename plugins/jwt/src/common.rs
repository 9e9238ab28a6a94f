//! Helpers shared by the endpoint modules: authentication (API key or JWT), parameter parsing
//! with FusionAuth's field errors, tenant resolution and cookie settings.

use std::sync::Arc;

use gatehouse_plugin_api::model::Tenant;
use gatehouse_plugin_api::{
    ApiError, ApiKeyGrant, Cookie, PluginContext, PluginRequest, TokenError, VerifiedClaims,
};
use uuid::Uuid;

/// Who made an authenticated request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// An API key, with the tenant it scopes the request to.
    ApiKey(ApiKeyGrant),
    /// A user, by a verified access token with a UUID `sub`.
    User {
        /// The token's `sub`.
        user_id: Uuid,
        /// The verified claims.
        claims: Arc<VerifiedClaims>,
    },
}

/// Which credentials an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// API keys only.
    ApiKey,
    /// An API key or a user's JWT.
    ApiKeyOrJwt,
}

/// Authenticates the request.
///
/// An `Authorization: Bearer …` header is a JWT; any other `Authorization` value is an API key;
/// without the header, the `access_token` cookie is a JWT. JWTs are accepted only with
/// [`Accept::ApiKeyOrJwt`]. Anything missing or invalid is a 401.
pub fn authenticate(
    request: &PluginRequest,
    context: &PluginContext,
    accept: Accept,
) -> Result<Caller, ApiError> {
    let jwt = if let Some(bearer) = request.bearer_token() {
        Some(bearer)
    } else if request.header("authorization").is_some() {
        return context.api_keys.authenticate(request).map(Caller::ApiKey);
    } else {
        request.cookie("access_token").filter(|c| !c.is_empty())
    };
    match (jwt, accept) {
        (Some(jwt), Accept::ApiKeyOrJwt) => verified_user(jwt, context),
        _ => Err(ApiError::Unauthorized),
    }
}

/// Verifies a JWT that must name a user (`sub` a UUID).
pub fn verified_user(jwt: &str, context: &PluginContext) -> Result<Caller, ApiError> {
    let claims = context
        .tokens
        .verify(jwt)
        .map_err(|_| ApiError::Unauthorized)?;
    let user_id = claims.subject.ok_or(ApiError::Unauthorized)?;
    Ok(Caller::User { user_id, claims })
}

/// Parses `value` as the UUID parameter `name`; a 400 `[invalid]name` otherwise.
pub fn parse_uuid(name: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value.trim())
        .map_err(|_| ApiError::field(name, "invalid", format!("Invalid {name}: not a UUID.")))
}

/// The optional UUID parameter `name` (query string, else form body).
pub fn uuid_param(request: &PluginRequest, name: &str) -> Result<Option<Uuid>, ApiError> {
    request
        .param(name)
        .map(|value| parse_uuid(name, &value))
        .transpose()
}

/// The `{tokenId}` path segment.
pub fn token_id_path(request: &PluginRequest) -> Result<Uuid, ApiError> {
    let raw = request.path_param("tokenId").unwrap_or_default();
    parse_uuid("tokenId", raw)
}

/// The `X-FusionAuth-TenantId` header, for endpoints without API-key authentication (which
/// reads it itself); 400 when it is not a UUID.
pub fn tenant_header(request: &PluginRequest) -> Result<Option<Uuid>, ApiError> {
    match request.header("x-fusionauth-tenantid").map(str::trim) {
        Some(raw) if !raw.is_empty() => Uuid::parse_str(raw).map(Some).map_err(|_| {
            ApiError::general(
                "[invalid]X-FusionAuth-TenantId",
                "The X-FusionAuth-TenantId header is not a valid UUID.",
            )
        }),
        _ => Ok(None),
    }
}

/// The tenant a request is scoped to: `tenant_id` when given (`None` if it does not exist),
/// else the default tenant — the one named `Default` (FusionAuth's), else the first the store
/// lists.
pub async fn scoped_tenant(
    context: &PluginContext,
    tenant_id: Option<Uuid>,
) -> Result<Option<Tenant>, ApiError> {
    if let Some(id) = tenant_id {
        return Ok(context.store.get_tenant(id).await?);
    }
    let tenants = context.store.list_tenants().await?;
    Ok(default_tenant(tenants))
}

/// The default tenant of a list: named `Default` (case-insensitive), else the first.
pub fn default_tenant(tenants: Vec<Tenant>) -> Option<Tenant> {
    let named = tenants
        .iter()
        .position(|t| t.name.eq_ignore_ascii_case("default"));
    let index = named.unwrap_or(0);
    tenants.into_iter().nth(index)
}

/// True when cookies must carry `Secure`: the request came over TLS or the host is configured
/// to always set it.
pub fn secure_cookies(request: &PluginRequest, context: &PluginContext) -> bool {
    request.tls || context.secure_cookies
}

/// An HttpOnly cookie living until `expiration_ms` (a `Max-Age` from `now_ms`, at least 0).
pub fn expiring_cookie(
    name: &str,
    value: &str,
    expiration_ms: i64,
    now_ms: i64,
    secure: bool,
) -> Cookie {
    let mut cookie = Cookie::new(name, value);
    cookie.max_age = Some(max_age_seconds(expiration_ms, now_ms));
    cookie.secure = secure;
    cookie
}

/// Whole seconds from `now_ms` to `expiration_ms`, never negative.
pub fn max_age_seconds(expiration_ms: i64, now_ms: i64) -> i64 {
    expiration_ms.saturating_sub(now_ms).max(0) / 1000
}

/// A server-side signing failure as an API error.
pub fn signing_error(e: TokenError) -> ApiError {
    ApiError::internal(format!("signing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn tenant(name: &str) -> Tenant {
        Tenant {
            id: Uuid::new_v4(),
            name: name.into(),
            issuer: format!("{name}.example"),
            jwt_configuration: Default::default(),
            data: None,
        }
    }

    #[test]
    fn uuid_parameters_are_validated() {
        let req = PluginRequest::new(Method::GET, "/x?userId=nope&applicationId=");
        let err = uuid_param(&req, "userId").unwrap_err();
        let body: serde_json::Value =
            serde_json::from_slice(&err.to_response().body).expect("json");
        assert_eq!(body["fieldErrors"]["userId"][0]["code"], "[invalid]userId");
        assert_eq!(uuid_param(&req, "applicationId").expect("ok"), None);
        let id = Uuid::new_v4();
        let req = PluginRequest::new(Method::GET, &format!("/x?userId={id}"));
        assert_eq!(uuid_param(&req, "userId").expect("ok"), Some(id));
    }

    #[test]
    fn tenant_header_is_validated() {
        let mut req = PluginRequest::new(Method::GET, "/x");
        assert_eq!(tenant_header(&req).expect("ok"), None);
        req.headers
            .insert("x-fusionauth-tenantid", "bad".parse().expect("header"));
        assert_eq!(tenant_header(&req).unwrap_err().status(), 400);
    }

    #[test]
    fn default_tenant_prefers_the_one_named_default() {
        assert!(default_tenant(vec![]).is_none());
        let picked = default_tenant(vec![tenant("a"), tenant("Default")]).expect("some");
        assert_eq!(picked.name, "Default");
        let picked = default_tenant(vec![tenant("a"), tenant("b")]).expect("some");
        assert_eq!(picked.name, "a");
    }

    #[test]
    fn max_age_is_never_negative() {
        assert_eq!(max_age_seconds(10_999, 1_000), 9);
        assert_eq!(max_age_seconds(1_000, 5_000), 0);
        assert_eq!(max_age_seconds(i64::MIN, i64::MAX), 0);
    }
}
