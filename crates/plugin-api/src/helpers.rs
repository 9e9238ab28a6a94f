//! Helpers every REST plugin needs: UUID parameters with FusionAuth's field errors, the tenant
//! header, the default tenant, and the cookies a login or refresh sets.
//!
//! Shared so that plugins do not each carry their own copy; pure functions except
//! [`scoped_tenant`], which reads the store.

use crate::error::ApiError;
use crate::model::Tenant;
use crate::plugin::PluginContext;
use crate::request::PluginRequest;
use crate::response::Cookie;
use crate::tokens::TokenError;
use uuid::Uuid;

/// `Ok` when no query (or form body) parameter but one of `repeatable` (those a route reads as
/// a list) is given more than once; else a 400 `[AmbiguousRequest]` naming it: `?kid=A&kid=B` cannot be
/// read as one value without guessing which the caller meant (a proxy in front may have read
/// the other).
pub fn unambiguous_query(request: &PluginRequest, repeatable: &[&str]) -> Result<(), ApiError> {
    // A form body's parameters count with the query's: `token` in both, or twice in the body,
    // is as ambiguous as twice in the query.
    let names: Vec<String> = crate::request::parse_form(&request.query)
        .into_iter()
        .chain(request.form_params())
        .map(|(name, _)| name)
        .collect();
    for (i, name) in names.iter().enumerate() {
        if !repeatable.contains(&name.as_str()) && names[..i].contains(name) {
            return Err(ApiError::general(
                "[AmbiguousRequest]",
                format!(
                    "The parameter {} is given more than once.",
                    crate::error::safe_field_name(name)
                ),
            ));
        }
    }
    Ok(())
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

/// The `{name}` path segment as a UUID; a 400 `[invalid]name` when it is not one.
pub fn path_uuid(request: &PluginRequest, name: &str) -> Result<Uuid, ApiError> {
    parse_uuid(name, request.path_param(name).unwrap_or_default())
}

/// The `X-FusionAuth-TenantId` header, for endpoints without API-key authentication (which
/// reads it itself); 400 when it is not a UUID.
pub fn tenant_header(request: &PluginRequest) -> Result<Option<Uuid>, ApiError> {
    if request
        .headers
        .get_all("x-fusionauth-tenantid")
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(ApiError::general(
            "[AmbiguousRequest]",
            "The request has more than one x-fusionauth-tenantid header.",
        ));
    }
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

/// An HttpOnly session cookie (no `Max-Age`): gone when the browser closes.
pub fn session_cookie(name: &str, value: &str, secure: bool) -> Cookie {
    let mut cookie = Cookie::new(name, value);
    cookie.secure = secure;
    cookie
}

/// A server-side signing failure as an API error.
pub fn signing_error(e: TokenError) -> ApiError {
    ApiError::internal(format!("signing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_parameter_given_twice_is_ambiguous_but_a_repeatable_one() {
        let with_query =
            |query: &str| PluginRequest::new(http::Method::GET, &format!("/x?{query}"));
        for query in ["", "type=A", "type=A&domain=b", "list=a&list=b"] {
            assert!(
                unambiguous_query(&with_query(query), &["list"]).is_ok(),
                "{query}"
            );
        }
        for (query, name) in [
            ("type=A&type=B", "type"),
            ("type=A&type=A", "type"),
            ("domain=a&tenantId=t&domain=", "domain"),
            ("t%79pe=A&type=B", "type"),
        ] {
            let err = unambiguous_query(&with_query(query), &["list"]).expect_err(query);
            let text = format!("{err:?}");
            assert!(text.contains("[AmbiguousRequest]"), "{text}");
            assert!(text.contains(&format!("parameter {name} ")), "{text}");
        }
    }
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
        let mut req = PluginRequest::new(Method::GET, &format!("/x?userId={id}"));
        assert_eq!(uuid_param(&req, "userId").expect("ok"), Some(id));
        req.path_params.insert("lambdaId".into(), id.to_string());
        assert_eq!(path_uuid(&req, "lambdaId").expect("ok"), id);
        assert_eq!(path_uuid(&req, "other").unwrap_err().status(), 400);
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
    fn session_and_expiring_cookies() {
        let c = session_cookie("access_token", "v", true);
        assert_eq!(c.max_age, None);
        assert!(c.secure && c.http_only);
        let c = Cookie::expiring("refresh_token", "v", 61_000, 1_000, false);
        assert_eq!(c.max_age, Some(60));
    }
}
