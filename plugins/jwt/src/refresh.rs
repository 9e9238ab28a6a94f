//! The Refresh Token API: exchange (`POST /api/jwt/refresh`), retrieve
//! (`GET /api/jwt/refresh/{tokenId}`, `GET /api/jwt/refresh?userId=`) and revoke
//! (`DELETE /api/jwt/refresh?…`, `DELETE /api/jwt/refresh/{tokenId}`).
//!
//! The exchange itself is [`exchange_refresh_token_scoped`]; this module handles the HTTP side:
//! where the token comes from (the `refresh_token` cookie wins over the body), the response body
//! and cookies, authentication and tenant scoping.
//!
//! A tenant-scoped request (tenant-locked API key or `X-FusionAuth-TenantId`) never sees or
//! revokes another tenant's tokens: they answer as if they did not exist (404 or an empty list).
//! Every revocation is also recorded with the token service, so access tokens minted from the
//! revoked tokens (or, for user/application revocations, all of them) stop working at the edge.

use gatehouse_plugin_api::helpers::session_cookie;
use gatehouse_plugin_api::request::is_given;
use gatehouse_plugin_api::store::{RevokeScope, Revoked};
use gatehouse_plugin_api::tokens::RevocationScope;
use gatehouse_plugin_api::{
    ApiError, ApiKeyGrant, Cookie, PluginContext, PluginRequest, PluginResponse,
};
use gatehouse_refresh::exchange_refresh_token_scoped;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::common::{
    authenticate, parse_uuid, request_tenant_scope, secure_cookies, token_id_path, uuid_param,
    Accept, Caller,
};

/// The name of the access-token cookie.
pub const ACCESS_TOKEN_COOKIE: &str = "access_token";
/// The name of the refresh-token cookie.
pub const REFRESH_TOKEN_COOKIE: &str = "refresh_token";

// ---------------------------------------------------------------------------------------------
// POST /api/jwt/refresh
// ---------------------------------------------------------------------------------------------

/// The RefreshRequest body. Unknown fields (`eventInfo`, `timeToLiveInSeconds`) are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// The previous access token (relayed to webhooks by FusionAuth; unused here).
    #[serde(default)]
    pub token: Option<String>,
}

/// The JWTRefreshResponse body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtRefreshResponse {
    /// The refresh token: the same value (`Reusable`) or the new one (`OneTimeUse`).
    pub refresh_token: String,
    /// The refresh token's persistent id.
    pub refresh_token_id: Uuid,
    /// The new access token.
    pub token: String,
}

/// The parameters a revocation's form body may hold (FusionAuth documents `token` in one).
const REVOKE_FORM_PARAMETERS: [&str; 3] = ["token", "userId", "applicationId"];

/// `Ok` when a revocation's body can be read whole: none, JSON, or a form body holding only
/// [`REVOKE_FORM_PARAMETERS`]. A form with other names (a JSON object sent as a form, as
/// `curl -d` does) is a 400 naming the first, and any other type a 415: a criterion the
/// gateway cannot read must not leave a wider revocation than the caller asked for.
fn readable_revoke_body(request: &PluginRequest) -> Result<(), ApiError> {
    if request.body.iter().all(u8::is_ascii_whitespace) || request.declares_json() {
        return Ok(());
    }
    let form = request.form_params();
    if form.is_empty() {
        return Err(ApiError::UnsupportedMediaType);
    }
    match form
        .iter()
        .find(|(name, _)| !REVOKE_FORM_PARAMETERS.contains(&name.as_str()))
    {
        Some((name, _)) => Err(ApiError::field(
            name,
            "invalid",
            format!(
                "A revocation's form body may hold only token, userId and applicationId, not {}.",
                gatehouse_plugin_api::error::safe_field_name(name)
            ),
        )),
        None => Ok(()),
    }
}

/// The refresh token to exchange: the `refresh_token` cookie, else `refreshToken` from the JSON
/// body. A body of another type is a 415 and a malformed one a 400, with the cookie too.
pub fn presented_refresh_token(request: &PluginRequest) -> Result<Option<String>, ApiError> {
    // A body is JSON or refused (415), cookie or not: a form or `text/plain` is what another
    // site can post, and this answer rotates and sets the browser's token cookies.
    let body: RefreshRequest = request.json_or_default()?;
    // "If both are provided, the cookie will take precedence" (FusionAuth's documentation).
    if let Some(cookie) = request.refresh_cookie()?.filter(|c| !c.is_empty()) {
        return Ok(Some(cookie.to_string()));
    }
    Ok(body.refresh_token.filter(|v| !v.trim().is_empty()))
}

/// Handles `POST /api/jwt/refresh`: 200 with `token`, `refreshToken` and `refreshTokenId`, and
/// the `access_token` (a session cookie, as FusionAuth documents it) and `refresh_token`
/// (Max-Age: the refresh token's remaining lifetime) HttpOnly cookies; 400 `[blank]refreshToken`
/// when none was given and `[invalid]refreshToken` when it is unknown, expired or revoked (the
/// cookie takes precedence over the body, as FusionAuth documents).
pub async fn exchange(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let tenant_scope = request_tenant_scope(request, context)?;
    let value = presented_refresh_token(request)?.ok_or_else(|| {
        ApiError::field(
            "refreshToken",
            "blank",
            "You must specify the refreshToken in the request body or the refresh_token cookie.",
        )
    })?;
    let client_ip = request.client_ip();
    let outcome = exchange_refresh_token_scoped(
        crate::common::refresh_env(context),
        &value,
        client_ip.as_deref(),
        tenant_scope,
    )
    .await?;

    let now = context.clock.now_millis();
    let secure = secure_cookies(request, context);
    let access_cookie = session_cookie(ACCESS_TOKEN_COOKIE, &outcome.access_token.token, secure);
    let refresh_cookie = Cookie::expiring(
        REFRESH_TOKEN_COOKIE,
        &outcome.refresh_token.token,
        outcome.refresh_token.expiration_instant,
        now,
        secure,
    );
    let body = JwtRefreshResponse {
        refresh_token: outcome.refresh_token.token,
        refresh_token_id: outcome.refresh_token.id,
        token: outcome.access_token.token,
    };
    Ok(PluginResponse::json(200, &body)
        .with_cookie(&access_cookie)
        .with_cookie(&refresh_cookie))
}

// ---------------------------------------------------------------------------------------------
// GET /api/jwt/refresh/{tokenId}, GET /api/jwt/refresh?userId=
// ---------------------------------------------------------------------------------------------

/// The API-key grant of the request; a JWT is refused.
async fn api_key(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<ApiKeyGrant, ApiError> {
    match authenticate(request, context, Accept::ApiKey).await? {
        Caller::ApiKey(grant) => Ok(grant),
        Caller::User { .. } => Err(ApiError::Unauthorized),
    }
}

/// Handles `GET /api/jwt/refresh/{tokenId}` (API key): `{"refreshToken": {…}}`; 404 when the
/// token does not exist, was revoked, or is outside the request's tenant.
pub async fn retrieve_by_id(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context).await?;
    let id = token_id_path(request)?;
    let token = context
        .store
        .get_refresh_token(id)
        .await?
        .filter(|t| grant.allows_tenant(t.tenant_id))
        .ok_or(ApiError::NotFound)?;
    Ok(PluginResponse::json(200, &json!({ "refreshToken": token })))
}

/// Handles `GET /api/jwt/refresh?userId=`: `{"refreshTokens": […]}`.
///
/// With an API key, `userId` is required and a tenant-scoped key sees only its tenant's tokens
/// (an empty list otherwise). A user's own JWT (as some client libraries send) lists that user's
/// tokens; a `userId` naming someone else is a 401.
pub async fn retrieve_for_user(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let caller = authenticate(request, context, Accept::ApiKeyOrJwt).await?;
    let asked = uuid_param(request, "userId")?;
    let (user_id, tenant_scope) = match caller {
        Caller::ApiKey(grant) => {
            let user_id = asked.ok_or_else(|| {
                ApiError::field("userId", "blank", "You must specify the userId.")
            })?;
            (user_id, grant.tenant_id)
        }
        Caller::User { user_id, .. } => {
            if asked.is_some_and(|asked| asked != user_id) {
                return Err(ApiError::Unauthorized);
            }
            (user_id, None)
        }
    };
    let tokens: Vec<_> = context
        .store
        .list_refresh_tokens(user_id)
        .await?
        .into_iter()
        .filter(|t| tenant_scope.is_none_or(|scope| scope == t.tenant_id))
        .collect();
    Ok(PluginResponse::json(
        200,
        &json!({ "refreshTokens": tokens }),
    ))
}

// ---------------------------------------------------------------------------------------------
// DELETE /api/jwt/refresh, DELETE /api/jwt/refresh/{tokenId}
// ---------------------------------------------------------------------------------------------

/// What a `DELETE /api/jwt/refresh` addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One token, by value (`token`; wins over the others).
    Token(String),
    /// All tokens of a user (`userId`).
    User(Uuid),
    /// All tokens of an application (`applicationId`).
    Application(Uuid),
    /// All tokens of a user for an application (`userId` and `applicationId`).
    UserApplication {
        /// The user.
        user_id: Uuid,
        /// The application.
        application_id: Uuid,
    },
}

/// The RefreshTokenRevokeRequest JSON body (`DELETE` with a body, as
/// `revoke_refresh_tokens_with_request` sends).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeBody {
    #[serde(default)]
    application_id: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
}

/// Chooses the revocation from the parameters; 400 when none is given.
pub fn revoke_target(
    token: Option<String>,
    user_id: Option<Uuid>,
    application_id: Option<Uuid>,
) -> Result<RevokeTarget, ApiError> {
    match (token, user_id, application_id) {
        (Some(token), None, None) => Ok(RevokeTarget::Token(token)),
        (Some(_), _, _) => Err(ApiError::general(
            "[AmbiguousRequest]",
            "A token names one refresh token: give it alone, without a userId or an applicationId.",
        )),
        (None, Some(user_id), Some(application_id)) => Ok(RevokeTarget::UserApplication {
            user_id,
            application_id,
        }),
        (None, Some(user_id), None) => Ok(RevokeTarget::User(user_id)),
        (None, None, Some(application_id)) => Ok(RevokeTarget::Application(application_id)),
        (None, None, None) => Err(ApiError::general(
            "[missing]",
            "You must specify a token, a userId, an applicationId, or a userId and an applicationId.",
        )),
    }
}

/// `name` as the query (or form) and the JSON body give it: either one, or both when they
/// agree; a 400 `[AmbiguousRequest]` when they differ (which one is meant?).
fn merged<T: PartialEq>(
    name: &str,
    query: Option<T>,
    body: Option<T>,
) -> Result<Option<T>, ApiError> {
    match (query, body) {
        (Some(q), Some(b)) if q != b => Err(ApiError::general(
            "[AmbiguousRequest]",
            format!("The query string and the body give {name} different values."),
        )),
        (q, b) => Ok(q.or(b)),
    }
}

/// The query's (or form body's) `token`, `userId` and `applicationId`. FusionAuth's TypeScript
/// client's `revokeRefreshToken(token, userId, applicationId)` sends all three, an omitted one
/// as `null` or `undefined`: only then do those words mean "not given". A request naming fewer
/// keeps them as written, so a word where an id was meant is refused (`userId=undefined&
/// applicationId=A` is a 400, never the revocation of every token of the application).
fn revoke_parameters(request: &PluginRequest) -> (Option<String>, Option<String>, Option<String>) {
    let named = |name: &str| request.param_text(name);
    let (token, user_id, application_id) =
        (named("token"), named("userId"), named("applicationId"));
    let all_named = token.is_some() && user_id.is_some() && application_id.is_some();
    let given = |value: Option<String>| value.filter(|v| !all_named || is_given(v));
    (given(token), given(user_id), given(application_id))
}

/// Reads `token`, `userId` and `applicationId` from the query string or a form body, and from
/// a JSON body when the request declares one (a value given in both must agree).
pub fn revoke_request_target(request: &PluginRequest) -> Result<RevokeTarget, ApiError> {
    readable_revoke_body(request)?;
    let (mut token, user_id, application_id) = revoke_parameters(request);
    let uuid = |name: &str, v: Option<String>| v.map(|v| parse_uuid(name, &v)).transpose();
    let mut user_id = uuid("userId", user_id)?;
    let mut application_id = uuid("applicationId", application_id)?;
    if request.declares_json() && !request.body.iter().all(u8::is_ascii_whitespace) {
        let body: RevokeBody = request.json()?;
        let non_empty = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let uuid =
            |name: &str, v: Option<String>| non_empty(v).map(|v| parse_uuid(name, &v)).transpose();
        token = merged("token", token, non_empty(body.token))?;
        user_id = merged("userId", user_id, uuid("userId", body.user_id)?)?;
        application_id = merged(
            "applicationId",
            application_id,
            uuid("applicationId", body.application_id)?,
        )?;
    }
    revoke_target(token, user_id, application_id)
}

/// Handles `DELETE /api/jwt/refresh` with `token`, `userId`, `applicationId`, or `userId` and
/// `applicationId` (query string, form body or JSON body): 200 with no body.
///
/// API keys may use every form; a user's JWT only `token`, for a token the user owns (else 401).
/// 404 when the token, user or application does not exist or is outside the request's tenant.
pub async fn revoke(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let caller = authenticate(request, context, Accept::ApiKeyOrJwt).await?;
    let (scope, revocation) = match revoke_request_target(request)? {
        RevokeTarget::Token(value) => {
            let token = context
                .store
                .find_refresh_token(&value)
                .await?
                .ok_or(ApiError::NotFound)?;
            authorize_single(&caller, token.user_id, token.tenant_id)?;
            revoke_one(context, token.id).await?;
            return Ok(PluginResponse::empty(200));
        }
        RevokeTarget::User(user_id) => {
            ensure_user(context, api_key_of(&caller)?, user_id).await?;
            (RevokeScope::User(user_id), RevocationScope::User(user_id))
        }
        RevokeTarget::Application(application_id) => {
            ensure_application(context, api_key_of(&caller)?, application_id).await?;
            (
                RevokeScope::Application(application_id),
                RevocationScope::Application(application_id),
            )
        }
        RevokeTarget::UserApplication {
            user_id,
            application_id,
        } => {
            let grant = api_key_of(&caller)?;
            ensure_user(context, grant, user_id).await?;
            ensure_application(context, grant, application_id).await?;
            (
                RevokeScope::UserApplication(user_id, application_id),
                RevocationScope::UserApplication(user_id, application_id),
            )
        }
    };
    let revoked = context.store.revoke_refresh_tokens(&scope).await?;
    debug_assert!(revoked.edge.contains(&revocation));
    record_revoked(context, &revoked);
    Ok(PluginResponse::empty(200))
}

/// Handles `DELETE /api/jwt/refresh/{tokenId}`: an API key, or the owner's JWT; 200 with no
/// body, 404 when the token does not exist or is outside the request's tenant, 401 when a JWT's
/// user does not own it.
pub async fn revoke_by_id(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let caller = authenticate(request, context, Accept::ApiKeyOrJwt).await?;
    let id = token_id_path(request)?;
    let token = context
        .store
        .get_refresh_token(id)
        .await?
        .ok_or(ApiError::NotFound)?;
    authorize_single(&caller, token.user_id, token.tenant_id)?;
    revoke_one(context, token.id).await?;
    Ok(PluginResponse::empty(200))
}

/// The API-key grant of `caller`; a JWT may not revoke more than one token (401).
fn api_key_of(caller: &Caller) -> Result<&ApiKeyGrant, ApiError> {
    match caller {
        Caller::ApiKey(grant) => Ok(grant),
        Caller::User { .. } => Err(ApiError::Unauthorized),
    }
}

/// May `caller` revoke a token of `owner` in `tenant_id`? A scoped API key outside the tenant
/// gets 404 (the token "does not exist" for it); a JWT of another user gets 401.
fn authorize_single(caller: &Caller, owner: Uuid, tenant_id: Uuid) -> Result<(), ApiError> {
    match caller {
        Caller::ApiKey(grant) if grant.allows_tenant(tenant_id) => Ok(()),
        Caller::ApiKey(_) => Err(ApiError::NotFound),
        Caller::User { user_id, .. } if *user_id == owner => Ok(()),
        Caller::User { .. } => Err(ApiError::Unauthorized),
    }
}

/// Revokes one token (by id, so a concurrent one-time-use rotation cannot dodge it) and cuts off
/// the access tokens minted from it.
async fn revoke_one(context: &PluginContext, id: Uuid) -> Result<(), ApiError> {
    let revoked = context
        .store
        .revoke_refresh_tokens(&RevokeScope::Id(id))
        .await?;
    record_revoked(context, &revoked);
    Ok(())
}

/// Records on this node what a revocation recorded in the store, dated as the store dated it
/// (the other nodes read the same from the store).
fn record_revoked(context: &PluginContext, revoked: &Revoked) {
    for scope in &revoked.edge {
        context.tokens.record_revocation(*scope, revoked.at);
    }
}

/// 404 unless the user exists in the grant's tenant.
async fn ensure_user(
    context: &PluginContext,
    grant: &ApiKeyGrant,
    user_id: Uuid,
) -> Result<(), ApiError> {
    context
        .store
        .get_user(user_id)
        .await?
        .filter(|u| grant.allows_tenant(u.tenant_id))
        .map(|_| ())
        .ok_or(ApiError::NotFound)
}

/// 404 unless the application exists in the grant's tenant.
async fn ensure_application(
    context: &PluginContext,
    grant: &ApiKeyGrant,
    application_id: Uuid,
) -> Result<(), ApiError> {
    context
        .store
        .get_application(application_id)
        .await?
        .filter(|a| grant.allows_tenant(a.tenant_id))
        .map(|_| ())
        .ok_or(ApiError::NotFound)
}

#[cfg(test)]
mod tests;
