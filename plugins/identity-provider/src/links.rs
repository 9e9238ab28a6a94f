//! The Link API: `GET /api/identity-provider/link` (one link by provider, provider user id and
//! user; or a user's links, optionally for one provider), `POST /api/identity-provider/link`
//! (link a user, or complete a pending link), `DELETE /api/identity-provider/link`, and
//! `GET /api/identity-provider/link/pending/{pendingLinkId}`; plus the pending-link store.
//!
//! Pending links (from the `CreatePendingLink` strategy) are kept in memory, bounded, by
//! [`crate::pending`].

use gatehouse_plugin_api::helpers::{parse_uuid, uuid_param};
use gatehouse_plugin_api::indexed::{self, Indexed};
use gatehouse_plugin_api::model::{IdentityProviderLink, User};
use gatehouse_plugin_api::{ApiError, ApiKeyGrant, PluginRequest, PluginResponse};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{api_key, json_body, Env};
use crate::pending::{PendingLink, PendingLinks};
use crate::provider::Provider;
use crate::store::LinkInsert;

fn visible_link(grant: &ApiKeyGrant, link: &IdentityProviderLink) -> bool {
    grant.allows_tenant(link.tenant_id)
}

/// `GET /api/identity-provider/link`.
pub async fn retrieve(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let provider_id = uuid_param(request, "identityProviderId")?;
    let user_id = uuid_param(request, "userId")?;
    let provider_user_id = request.query_text("identityProviderUserId");
    if provider_user_id.is_none() && user_id.is_none() {
        return Err(ApiError::field(
            "userId",
            "blank",
            "You must specify the userId (or identityProviderId and identityProviderUserId).",
        ));
    }
    // One link is named by its provider and the provider's user id (or the user's id): an
    // external id alone may be linked on several providers, to different users, and is never
    // matched by guessing.
    if provider_user_id.is_some() && provider_id.is_none() && user_id.is_none() {
        return Err(ApiError::field(
            "identityProviderId",
            "blank",
            "You must specify the identityProviderId with the identityProviderUserId.",
        ));
    }
    let links: Vec<IdentityProviderLink> = context
        .records
        .find_links(provider_id, user_id, provider_user_id.as_deref())
        .await?
        .into_iter()
        .filter(|l| visible_link(&grant, l))
        .collect();
    if provider_user_id.is_some() {
        if links.len() > 1 {
            // A global provider's user id linked in more than one tenant, or one user's id on
            // two providers.
            return Err(ApiError::general(
                "[AmbiguousRequest]",
                "More than one link has this identityProviderUserId: give the \
                 identityProviderId and the userId, or scope the request to a tenant.",
            ));
        }
        let link = links.into_iter().next().ok_or(ApiError::NotFound)?;
        return Ok(PluginResponse::json(
            200,
            &json!({ "identityProviderLink": link }),
        ));
    }
    Ok(PluginResponse::json(
        200,
        &json!({ "identityProviderLinks": links }),
    ))
}

/// The link limit error of the Link API.
fn limit_error(max: i64) -> ApiError {
    ApiError::general(
        "[LinkLimitReached]",
        format!("The user already has the maximum of {max} links to this identity provider."),
    )
}

/// `POST /api/identity-provider/link`: `{"identityProviderLink": {identityProviderId,
/// identityProviderUserId, userId, displayName, token}}` or, to complete a pending link,
/// `{"pendingIdPLinkId": …, "identityProviderLink": {"userId": …}}` (the older top-level
/// `identityProviderId`/`identityProviderUserId`/`userId`/`displayName` are accepted too).
/// An `identityProviderUserId` longer than the store keeps is a 400
/// `[tooLong]identityProviderLink.identityProviderUserId`, nothing written.
pub async fn create(
    request: &PluginRequest,
    context: &Env<'_>,
    pending: &PendingLinks,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let body = json_body(request)?;
    let wanted = parse_create(&body, pending)?;
    indexed::check_field(
        Indexed::ProviderUserId,
        &wanted.provider_user_id,
        "identityProviderLink.identityProviderUserId",
    )?;
    let provider = link_provider(context, wanted.provider_id).await?;
    let user = link_user(context, &grant, wanted.user_id).await?;
    check_same_tenant(&provider, &user, wanted.pending.as_ref())?;
    check_not_linked(context, &wanted, &user).await?;
    let limit = provider.link_limit(user.tenant_id);
    let pending_id = wanted.pending.as_ref().map(|(id, _)| id.clone());
    let link = new_link(context.clock.now_millis(), &provider, &user, wanted);
    // Checked again where it is written: of racing creates, one links the provider user and
    // the others are refused, and together they cannot pass the limit.
    let limit_u64 = limit.map(|max| u64::try_from(max).unwrap_or(0));
    match context.records.insert_link(&link, limit_u64).await? {
        LinkInsert::Written => {}
        LinkInsert::Taken => {
            return Err(duplicate_link(
                "This identity provider user was linked in the tenant meanwhile.",
            ))
        }
        LinkInsert::LimitReached => return Err(limit_error(limit.unwrap_or(0))),
    }
    if let Some(id) = pending_id {
        pending.take(&id);
    }
    Ok(PluginResponse::json(
        200,
        &json!({ "identityProviderLink": link }),
    ))
}

/// What a create-link request asks for.
struct LinkRequest {
    /// The user to link.
    user_id: Uuid,
    /// The provider.
    provider_id: Uuid,
    /// The provider's user id.
    provider_user_id: String,
    /// The link's display name, when given.
    display_name: Option<String>,
    /// The provider's refresh token, when given.
    token: Option<String>,
    /// The pending link being completed, with its id.
    pending: Option<(String, PendingLink)>,
}

/// Returns the trimmed, non-empty string `name` of `identityProviderLink`, else of the body
/// (the older top-level form).
fn link_field(body: &Value, name: &str) -> Option<String> {
    body.get("identityProviderLink")
        .and_then(|inner| inner.get(name))
        .or_else(|| body.get(name))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Returns the UUID `name` of the request (400 naming `identityProviderLink.{name}` when it is
/// missing or not a UUID).
fn link_uuid(body: &Value, name: &str) -> Result<Uuid, ApiError> {
    let path = format!("identityProviderLink.{name}");
    link_field(body, name)
        .map(|s| parse_uuid(&path, &s))
        .transpose()?
        .ok_or_else(|| ApiError::field(&path, "blank", format!("You must specify the {name}.")))
}

/// Returns what the body asks to link: `userId`, and either the pending link `pendingIdPLinkId`
/// names (400 when it does not exist or has expired) or `identityProviderId` and
/// `identityProviderUserId` (400 when missing).
fn parse_create(body: &Value, pending: &PendingLinks) -> Result<LinkRequest, ApiError> {
    let user_id = link_uuid(body, "userId")?;
    let pending_id = body
        .get("pendingIdPLinkId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(id) = pending_id {
        let p = pending.get(id).ok_or_else(|| {
            ApiError::field(
                "pendingIdPLinkId",
                "invalid",
                "The pending link does not exist or has expired.",
            )
        })?;
        return Ok(LinkRequest {
            user_id,
            provider_id: p.identity_provider_id,
            provider_user_id: p.identity_provider_user_id.clone(),
            display_name: Some(p.display_name.clone()),
            token: p.token.clone(),
            pending: Some((id.to_string(), p)),
        });
    }
    let provider_id = link_uuid(body, "identityProviderId")?;
    let provider_user_id = link_field(body, "identityProviderUserId").ok_or_else(|| {
        ApiError::field(
            "identityProviderLink.identityProviderUserId",
            "blank",
            "You must specify the identityProviderUserId.",
        )
    })?;
    Ok(LinkRequest {
        user_id,
        provider_id,
        provider_user_id,
        display_name: link_field(body, "displayName"),
        token: link_field(body, "token"),
        pending: None,
    })
}

/// Returns the provider `provider_id`, of any managed type (400 when there is none).
async fn link_provider(context: &Env<'_>, provider_id: Uuid) -> Result<Provider, ApiError> {
    context
        .records
        .get_identity_provider(provider_id)
        .await?
        .as_ref()
        .and_then(Provider::from_document)
        .ok_or_else(|| {
            ApiError::field(
                "identityProviderLink.identityProviderId",
                "invalid",
                "No identity provider exists with this id.",
            )
        })
}

/// Returns the user `user_id` when the API key may see it (400 when not, or when there is none).
async fn link_user(
    context: &Env<'_>,
    grant: &ApiKeyGrant,
    user_id: Uuid,
) -> Result<User, ApiError> {
    context
        .store
        .get_user(user_id)
        .await?
        .filter(|u| grant.allows_tenant(u.tenant_id))
        .ok_or_else(|| {
            ApiError::field(
                "identityProviderLink.userId",
                "invalid",
                "No user exists with this id.",
            )
        })
}

/// Returns a 400 when the user is outside the provider's tenant or the pending link's tenant.
fn check_same_tenant(
    provider: &Provider,
    user: &User,
    pending: Option<&(String, PendingLink)>,
) -> Result<(), ApiError> {
    if provider.tenant_id.is_some_and(|t| t != user.tenant_id)
        || pending.is_some_and(|(_, p)| p.tenant_id != user.tenant_id)
    {
        return Err(ApiError::field(
            "identityProviderLink.userId",
            "invalid",
            "The user is not in the identity provider's tenant.",
        ));
    }
    Ok(())
}

/// Returns a `[duplicate]identityProviderLink` error when the provider user is already linked
/// in the user's tenant (to this user or another).
async fn check_not_linked(
    context: &Env<'_>,
    wanted: &LinkRequest,
    user: &User,
) -> Result<(), ApiError> {
    let provider_user_id = Some(wanted.provider_user_id.as_str());
    let existing = context
        .records
        .find_links(Some(wanted.provider_id), None, provider_user_id)
        .await?
        .into_iter()
        .find(|l| l.tenant_id == user.tenant_id);
    let Some(existing) = existing else {
        return Ok(());
    };
    let message = if existing.user_id == user.id {
        "This link already exists."
    } else {
        "This identity provider user is already linked to another user."
    };
    Err(duplicate_link(message))
}

/// The `[duplicate]identityProviderLink` error, with `message`.
fn duplicate_link(message: &str) -> ApiError {
    ApiError::general("[duplicate]identityProviderLink", message)
}

/// Returns the link the request makes, created at `now` (its display name defaults to the
/// provider's user id).
fn new_link(
    now: i64,
    provider: &Provider,
    user: &User,
    wanted: LinkRequest,
) -> IdentityProviderLink {
    IdentityProviderLink {
        data: Default::default(),
        display_name: wanted
            .display_name
            .or_else(|| Some(wanted.provider_user_id.clone())),
        identity_provider_id: wanted.provider_id,
        identity_provider_name: Some(provider.name.clone()),
        identity_provider_type: Some(provider.kind.name().into()),
        identity_provider_user_id: wanted.provider_user_id,
        insert_instant: now,
        last_login_instant: now,
        tenant_id: user.tenant_id,
        token: wanted.token,
        user_id: user.id,
    }
}

/// `DELETE /api/identity-provider/link?identityProviderId=&identityProviderUserId=&userId=`.
pub async fn delete(
    request: &PluginRequest,
    context: &Env<'_>,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let provider_id = uuid_param(request, "identityProviderId")?.ok_or_else(|| {
        ApiError::field(
            "identityProviderId",
            "blank",
            "You must specify the identityProviderId.",
        )
    })?;
    let user_id = uuid_param(request, "userId")?
        .ok_or_else(|| ApiError::field("userId", "blank", "You must specify the userId."))?;
    let provider_user_id = request
        .query_text("identityProviderUserId")
        .ok_or_else(|| {
            ApiError::field(
                "identityProviderUserId",
                "blank",
                "You must specify the identityProviderUserId.",
            )
        })?;
    let found = context
        .records
        .find_links(Some(provider_id), Some(user_id), Some(&provider_user_id))
        .await?
        .into_iter()
        .any(|l| visible_link(&grant, &l));
    if !found {
        return Err(ApiError::NotFound);
    }
    let link = context
        .records
        .delete_link(provider_id, &provider_user_id, user_id)
        .await?;
    Ok(PluginResponse::json(
        200,
        &json!({ "identityProviderLink": link }),
    ))
}

/// `GET /api/identity-provider/link/pending/{pendingLinkId}[?userId=]`: the pending link, and
/// with `userId` how many links that user has to the provider.
pub async fn retrieve_pending(
    request: &PluginRequest,
    context: &Env<'_>,
    pending: &PendingLinks,
) -> Result<PluginResponse, ApiError> {
    let grant = api_key(request, context)?;
    let id = request.path_param("pendingLinkId").unwrap_or_default();
    let link = pending
        .get(id)
        .filter(|l| grant.allows_tenant(l.tenant_id))
        .ok_or(ApiError::NotFound)?;
    let provider = context
        .records
        .get_identity_provider(link.identity_provider_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tenant_configuration = provider
        .get("tenantConfiguration")
        .and_then(|t| t.get(link.tenant_id.to_string()))
        .cloned();
    let mut body = json!({ "pendingIdPLink": link });
    if let Some(config) = &tenant_configuration {
        body["identityProviderTenantConfiguration"] = config.clone();
        body["pendingIdPLink"]["identityProviderTenantConfiguration"] = config.clone();
    }
    if let Some(user_id) = uuid_param(request, "userId")? {
        let links = context
            .records
            .find_links(Some(link.identity_provider_id), Some(user_id), None)
            .await?
            .into_iter()
            .filter(|l| visible_link(&grant, l))
            .collect::<Vec<_>>();
        body["linkCount"] = json!(links.len());
        body["pendingIdPLink"]["identityProviderLinks"] = json!(links);
        if let Some(user) = context
            .store
            .get_user(user_id)
            .await?
            .filter(|u| grant.allows_tenant(u.tenant_id))
        {
            body["pendingIdPLink"]["user"] = json!(user);
        }
    }
    Ok(PluginResponse::json(200, &body))
}
