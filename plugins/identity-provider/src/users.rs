//! The User API's retrieve calls, so operators can see what reconcile did:
//! `GET /api/user/{userId}` and `GET /api/user?email=` (or `?username=`), API key only, answering
//! `{"user": …}` with the user's registrations.
//!
//! A request scoped to a tenant sees only that tenant's users. An unscoped lookup by email that
//! matches users in several tenants is a 400 asking for a tenant (FusionAuth's rule).

use gatehouse_plugin_api::helpers::path_uuid;
use gatehouse_plugin_api::model::User;
use gatehouse_plugin_api::{ApiError, PluginContext, PluginRequest, PluginResponse};
use serde_json::json;

use crate::common::api_key;

/// The user with its registrations.
pub async fn full_user(context: &PluginContext, mut user: User) -> Result<User, ApiError> {
    user.registrations = context.store.list_registrations(user.id).await?;
    user.registrations.iter_mut().for_each(|r| r.user_id = None);
    Ok(user)
}

fn one(user: &User) -> PluginResponse {
    PluginResponse::json(200, &json!({ "user": user }))
}

/// `GET /api/user/{userId}`.
pub async fn retrieve(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let id = path_uuid(request, "userId")?;
    let user = context
        .store
        .get_user(id)
        .await?
        .filter(|u| grant.allows_tenant(u.tenant_id))
        .ok_or(ApiError::NotFound)?;
    Ok(one(&full_user(context, user).await?))
}

fn ambiguous() -> ApiError {
    ApiError::general(
        "[TenantIdRequired]",
        "Users in more than one tenant match; scope the request with X-FusionAuth-TenantId or a tenant-locked API key.",
    )
}

/// `GET /api/user?email=` or `GET /api/user?username=`.
pub async fn retrieve_by_query(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let user = if let Some(email) = request.query_param("email") {
        match grant.tenant_id {
            Some(t) => context.store.find_user_by_email(t, &email).await?,
            None => {
                let mut found = context.store.find_users_by_email_any_tenant(&email).await?;
                if found.len() > 1 {
                    return Err(ambiguous());
                }
                found.pop()
            }
        }
    } else if let Some(username) = request.query_param("username") {
        let tenants = match grant.tenant_id {
            Some(t) => vec![t],
            None => context
                .store
                .list_tenants()
                .await?
                .into_iter()
                .map(|t| t.id)
                .collect(),
        };
        let mut found = Vec::new();
        for t in tenants {
            if let Some(u) = context.store.find_user_by_username(t, &username).await? {
                found.push(u);
            }
        }
        if found.len() > 1 {
            return Err(ambiguous());
        }
        found.pop()
    } else {
        return Err(ApiError::field(
            "email",
            "blank",
            "You must specify the email (or username) of the user.",
        ));
    };
    let user = user.ok_or(ApiError::NotFound)?;
    Ok(one(&full_user(context, user).await?))
}
