//! Helpers shared by the endpoint modules: authentication (API key or JWT), parameter parsing
//! with FusionAuth's field errors, tenant resolution and cookie settings.

use std::sync::Arc;

pub use gatehouse_plugin_api::helpers::{
    default_tenant, parse_uuid, path_uuid, scoped_tenant, secure_cookies, signing_error,
    tenant_header, uuid_param,
};
use gatehouse_plugin_api::model::User;
use gatehouse_plugin_api::{ApiError, ApiKeyGrant, PluginContext, PluginRequest, VerifiedClaims};
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
/// without the header, the `access_token` cookie is a JWT. Credentials that read two ways
/// (see [`PluginRequest::credentials`]) are a 400. JWTs are accepted only with
/// [`Accept::ApiKeyOrJwt`], and only as [`verified_user`] binds them to their tenant. Anything
/// missing or invalid is a 401.
pub async fn authenticate(
    request: &PluginRequest,
    context: &PluginContext,
    accept: Accept,
) -> Result<Caller, ApiError> {
    // The edge's reading: an ambiguous pair of credentials is a 400, never a guess.
    let jwt = request.jwt()?;
    let api_key = request.headers.contains_key(http::header::AUTHORIZATION)
        && request.bearer_token().is_none();
    if api_key {
        return context.api_keys.authenticate(request).map(Caller::ApiKey);
    }
    match (jwt, accept) {
        (Some(jwt), Accept::ApiKeyOrJwt) => verified_user(jwt, context).await,
        _ => Err(ApiError::Unauthorized),
    }
}

/// Verifies a JWT that must name a user of its own tenant.
///
/// Returns the caller when the signature, expiry and revocation hold, `sub` names an existing
/// user who may log in (active, account not expired), the token's `tid` is that user's
/// tenant, and its `applicationId` (when present) names no application of another tenant.
/// Anything else is a 401: a token minted in one tenant never acts on another tenant's user
/// (see [`tenant_bound_user`]).
pub async fn verified_user(jwt: &str, context: &PluginContext) -> Result<Caller, ApiError> {
    let claims = context
        .tokens
        .verify(jwt)
        .map_err(|_| ApiError::Unauthorized)?;
    let user = tenant_bound_user(&claims, context).await?;
    // A deactivated user, or one whose account expired, acts through no token it still holds.
    if !user.may_log_in(context.clock.now_millis()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(Caller::User {
        user_id: user.id,
        claims,
    })
}

/// The user a verified token speaks for, when the token is bound to the user's tenant: `sub`
/// names an existing user, `tid` names the user's tenant, and `applicationId`, when it names an
/// existing application, names one of that tenant. `Unauthorized` otherwise.
pub async fn tenant_bound_user(
    claims: &VerifiedClaims,
    context: &PluginContext,
) -> Result<User, ApiError> {
    let user_id = claims.subject.ok_or(ApiError::Unauthorized)?;
    let user = context
        .store
        .get_user(user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    if claims.tenant_id != Some(user.tenant_id) {
        return Err(ApiError::Unauthorized);
    }
    if let Some(application_id) = claims.application_id {
        let foreign = context
            .store
            .get_application(application_id)
            .await?
            .is_some_and(|a| a.tenant_id != user.tenant_id);
        if foreign {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(user)
}

/// The `{tokenId}` path segment.
pub fn token_id_path(request: &PluginRequest) -> Result<Uuid, ApiError> {
    path_uuid(request, "tokenId")
}

/// The tenant an endpoint without API-key authentication is scoped to: the lock of a
/// tenant-locked API key presented in `Authorization` (FusionAuth: "the tenant Id may be
/// provided through this header or by using a tenant locked API key"), else the
/// `X-FusionAuth-TenantId` header.
///
/// A key locked to another tenant than the header names is a 401, as on API-key endpoints. A
/// `Bearer` value is a JWT, not a key; a value that is no key at all is ignored (the endpoint
/// needs no credentials).
pub fn request_tenant_scope(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<Option<Uuid>, ApiError> {
    let header = tenant_header(request)?;
    let lock = match request.header("authorization") {
        Some(value) if request.bearer_token().is_none() => {
            let mut probe = PluginRequest::new(request.method.clone(), "/");
            if let Ok(value) = http::HeaderValue::from_str(value) {
                probe.headers.insert(http::header::AUTHORIZATION, value);
            }
            context
                .api_keys
                .authenticate(&probe)
                .ok()
                .and_then(|grant| grant.tenant_id)
        }
        _ => None,
    };
    match (lock, header) {
        (Some(lock), Some(asked)) if lock != asked => Err(ApiError::Unauthorized),
        (Some(lock), _) => Ok(Some(lock)),
        (None, asked) => Ok(asked),
    }
}

pub use gatehouse_refresh::refresh_env;

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn a_tenant_locked_key_scopes_endpoints_without_authentication() {
        use crate::testkit::Kit;
        let kit = Kit::new();
        let scope = |authorization: Option<&str>, header: Option<String>| {
            let mut req = PluginRequest::new(Method::POST, "/api/jwt/refresh");
            if let Some(a) = authorization {
                req.headers
                    .insert("authorization", a.parse().expect("header"));
            }
            if let Some(h) = header {
                req.headers
                    .insert("x-fusionauth-tenantid", h.parse().expect("header"));
            }
            request_tenant_scope(&req, &kit.context)
        };
        let other = kit.other_tenant.id;
        let mine = kit.tenant.id;
        assert_eq!(scope(None, None).expect("ok"), None);
        assert_eq!(scope(None, Some(mine.to_string())).expect("ok"), Some(mine));
        assert_eq!(
            scope(Some(Kit::OTHER_TENANT_KEY), None).expect("ok"),
            Some(other)
        );
        assert_eq!(
            scope(Some(Kit::OTHER_TENANT_KEY), Some(other.to_string())).expect("ok"),
            Some(other)
        );
        assert_eq!(
            scope(Some(Kit::OTHER_TENANT_KEY), Some(mine.to_string()))
                .unwrap_err()
                .status(),
            401
        );
        // An unlocked key, a JWT or a value that is no key leave the header in charge.
        for authorization in [Kit::GLOBAL_KEY, "Bearer x.y.z", "not-a-key"] {
            assert_eq!(
                scope(Some(authorization), Some(mine.to_string())).expect("ok"),
                Some(mine),
                "{authorization}"
            );
            assert_eq!(scope(Some(authorization), None).expect("ok"), None);
        }
        assert_eq!(
            scope(Some(Kit::OTHER_TENANT_KEY), Some("bad".into()))
                .unwrap_err()
                .status(),
            400
        );
    }
}
