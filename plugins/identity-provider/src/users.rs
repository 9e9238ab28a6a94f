//! The User API's retrieve calls, so operators can see what reconcile did:
//! `GET /api/user/{userId}` and `GET /api/user?email=` (or `?username=`, or `?loginId=` with
//! optional `loginIdTypes`), API key only, answering
//! `{"user": …}` with the user's registrations.
//!
//! A request scoped to a tenant sees only that tenant's users. An unscoped lookup by email that
//! matches users in several tenants is a 400 asking for a tenant (FusionAuth's rule).

use gatehouse_plugin_api::helpers::path_uuid;
use gatehouse_plugin_api::model::User;
use gatehouse_plugin_api::{ApiError, PluginRequest, PluginResponse};
use serde_json::json;
use uuid::Uuid;

use crate::common::{api_key, Env};

/// The user with its registrations.
pub async fn full_user(context: &Env<'_>, mut user: User) -> Result<User, ApiError> {
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
    context: &Env<'_>,
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

/// The user with this email, in the request's tenant or (unscoped) in the one tenant that has
/// it; a 400 when several tenants do.
async fn by_email(
    context: &Env<'_>,
    tenant: Option<Uuid>,
    email: &str,
) -> Result<Option<User>, ApiError> {
    if let Some(t) = tenant {
        return Ok(context.store.find_user_by_email(t, email).await?);
    }
    let mut found = context.store.find_users_by_email_any_tenant(email).await?;
    if found.len() > 1 {
        return Err(ambiguous());
    }
    Ok(found.pop())
}

/// The user with this username, as [`by_email`] finds one by email.
async fn by_username(
    context: &Env<'_>,
    tenant: Option<Uuid>,
    username: &str,
) -> Result<Option<User>, ApiError> {
    let tenants = match tenant {
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
        if let Some(u) = context.store.find_user_by_username(t, username).await? {
            found.push(u);
        }
    }
    if found.len() > 1 {
        return Err(ambiguous());
    }
    Ok(found.pop())
}

/// The login id types a `loginId` is compared to: `loginIdTypes` (repeated, or comma
/// separated), else email then username. `phoneNumber` is accepted and matches no one (users
/// have no phone number here); any other type is a 400.
fn login_id_types(request: &PluginRequest) -> Result<Vec<String>, ApiError> {
    let named: Vec<String> = gatehouse_plugin_api::request::parse_form(&request.query)
        .into_iter()
        // An omitted argument of the TypeScript client arrives as the word (see `is_given`).
        .filter(|(k, v)| k == "loginIdTypes" && gatehouse_plugin_api::request::is_given(v))
        .flat_map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    if named.is_empty() {
        return Ok(vec!["email".into(), "username".into()]);
    }
    if named
        .iter()
        .any(|t| !matches!(t.as_str(), "email" | "username" | "phoneNumber"))
    {
        return Err(ApiError::field(
            "loginIdTypes",
            "invalid",
            "The loginIdTypes may be email, username and phoneNumber.",
        ));
    }
    Ok(named)
}

/// `GET /api/user?email=`, `?username=`, or `?loginId=` (with optional `loginIdTypes`).
pub async fn retrieve_by_query(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let tenant = grant.tenant_id;
    let user = if let Some(email) = request.query_text("email") {
        by_email(context, tenant, &email).await?
    } else if let Some(username) = request.query_text("username") {
        by_username(context, tenant, &username).await?
    } else if let Some(login_id) = request.query_text("loginId") {
        let mut user = None;
        for kind in login_id_types(request)? {
            user = match kind.as_str() {
                "email" => by_email(context, tenant, &login_id).await?,
                "username" => by_username(context, tenant, &login_id).await?,
                _ => None,
            };
            if user.is_some() {
                break;
            }
        }
        user
    } else {
        return Err(ApiError::field(
            "loginId",
            "blank",
            "You must specify the loginId, email or username of the user.",
        ));
    };
    let user = user.ok_or(ApiError::NotFound)?;
    Ok(one(&full_user(context, user).await?))
}
