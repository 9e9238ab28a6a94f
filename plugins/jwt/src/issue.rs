//! `GET /api/jwt/issue`: single sign-on between applications. A valid access token (Bearer
//! header or `access_token` cookie) is exchanged for one to `applicationId`, expiring at the same
//! `exp`, with `authenticationType` `JWT_SSO`.
//!
//! - 200 when the user is registered to the application; 202 (token without application claims)
//!   when not.
//! - A refresh token for the target application is added when one is presented (the
//!   `refresh_token` cookie wins over `?refreshToken=`), it is live and the user's, the user is
//!   registered, the target generates refresh tokens, and both applications share the refresh
//!   token expiration policy; otherwise it is silently left out (see
//!   [`issue_sso_refresh_token`]).

use gatehouse_plugin_api::{
    AccessTokenRequest, ApiError, PluginContext, PluginRequest, PluginResponse,
};
use gatehouse_refresh::issue_sso_refresh_token;
use serde::Serialize;

use crate::common::{request_tenant_scope, signing_error, tenant_bound_user, uuid_param};

/// The `authenticationType` of tokens issued here.
pub const JWT_SSO: &str = "JWT_SSO";

/// The IssueResponse body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueResponse {
    /// The new access token.
    pub token: String,
    /// A refresh token for the target application, when one was earned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// The presented refresh token: the `refresh_token` cookie, else the `refreshToken` parameter.
pub fn presented_refresh_token(request: &PluginRequest) -> Result<Option<String>, ApiError> {
    Ok(request
        .refresh_cookie()?
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .or_else(|| request.query_param("refreshToken")))
}

/// Handles `GET /api/jwt/issue`.
pub async fn issue(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let jwt = request.jwt()?.ok_or(ApiError::Unauthorized)?;
    let claims = context
        .tokens
        .verify(jwt)
        .map_err(|_| ApiError::Unauthorized)?;
    let application_id = uuid_param(request, "applicationId")?.ok_or_else(|| {
        ApiError::field(
            "applicationId",
            "blank",
            "You must specify the applicationId.",
        )
    })?;
    let tenant_scope = request_tenant_scope(request, context)?;

    // The token speaks for its user only within its own tenant.
    let user = Some(tenant_bound_user(&claims, context).await?)
        .filter(|u| {
            u.may_log_in(context.clock.now_millis())
                && tenant_scope.is_none_or(|t| t == u.tenant_id)
        })
        .ok_or(ApiError::Unauthorized)?;
    let tenant = context
        .store
        .get_tenant(user.tenant_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let application = context
        .store
        .get_application(application_id)
        .await?
        .filter(|a| a.active && a.tenant_id == user.tenant_id)
        .ok_or_else(|| {
            ApiError::field(
                "applicationId",
                "invalid",
                "No active application exists with this applicationId in the user's tenant.",
            )
        })?;
    let registration = context
        .store
        .get_registration(user.id, application.id)
        .await?;

    let refresh_token = match (&registration, presented_refresh_token(request)?) {
        (Some(_), Some(value)) => {
            issue_sso_refresh_token(
                crate::common::refresh_env(context),
                &value,
                &user,
                &tenant,
                &application,
            )
            .await?
        }
        _ => None,
    };

    // An RSA signature is made on the signing pool, off the thread serving requests.
    let issued = context
        .tokens
        .prepare_access_token(&AccessTokenRequest {
            user: &user,
            tenant: &tenant,
            application: Some(&application),
            registration: registration.as_ref(),
            authentication_type: JWT_SSO,
            expires_at: Some(claims.exp),
            session_id: refresh_token.as_ref().map(|t| t.id).or(claims.session_id),
        })
        .map_err(signing_error)?
        .sign()
        .await
        .map_err(signing_error)?;
    // Revoked while this call ran (between the check above and the signature, which a
    // revocation in the same second dates after it), on this node or on another that this one
    // has not heard from yet: the store holds every revocation once committed, and this node
    // learns those that could cover the presented token now. Then the token it signed is not
    // handed out, nor can a token signed here escape a revocation it came after.
    for (scope, instant) in context.store.list_revocations(claims.iat).await? {
        context.tokens.record_revocation(scope, instant);
    }
    context
        .tokens
        .verify(jwt)
        .map_err(|_| ApiError::Unauthorized)?;

    let status = if registration.is_some() { 200 } else { 202 };
    let body = IssueResponse {
        token: issued.token,
        refresh_token: refresh_token.map(|t| t.token),
    };
    Ok(PluginResponse::json(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{block_on, Kit};
    use gatehouse_plugin_api::model::RefreshTokenExpirationPolicy;
    use http::Method;
    use serde_json::{json, Value};
    use uuid::Uuid;

    fn request(kit: &Kit, query: &str, jwt: Option<&str>) -> PluginRequest {
        let _ = kit;
        let mut req = PluginRequest::new(Method::GET, &format!("/api/jwt/issue?{query}"));
        if let Some(jwt) = jwt {
            req.headers.insert(
                "authorization",
                format!("Bearer {jwt}").parse().expect("header"),
            );
        }
        req
    }

    fn body(res: &PluginResponse) -> Value {
        serde_json::from_slice(&res.body).expect("json")
    }

    #[test]
    fn response_shape() {
        let without = IssueResponse {
            token: "t".into(),
            refresh_token: None,
        };
        assert_eq!(
            serde_json::to_value(&without).expect("json"),
            json!({"token": "t"})
        );
        let with = IssueResponse {
            token: "t".into(),
            refresh_token: Some("r".into()),
        };
        assert_eq!(
            serde_json::to_value(&with).expect("json"),
            json!({"token": "t", "refreshToken": "r"})
        );
    }

    #[test]
    fn cookie_wins_over_parameter() {
        let mut req = PluginRequest::new(Method::GET, "/api/jwt/issue?refreshToken=param");
        assert_eq!(
            presented_refresh_token(&req)
                .expect("one reading")
                .as_deref(),
            Some("param")
        );
        req.headers
            .insert("cookie", "refresh_token=cookie".parse().expect("header"));
        assert_eq!(
            presented_refresh_token(&req)
                .expect("one reading")
                .as_deref(),
            Some("cookie")
        );
    }

    #[test]
    fn issues_for_a_registered_application_with_the_same_exp() {
        let kit = Kit::new();
        let jwt = kit.access_token_for(&kit.user);
        let exp = kit.tokens.claims_of(&jwt).expect("claims").exp;
        let req = request(&kit, &format!("applicationId={}", kit.app2.id), Some(&jwt));
        let res = block_on(issue(&req, &kit.context)).expect("ok");
        assert_eq!(res.status, 200);
        let b = body(&res);
        assert!(b.get("refreshToken").is_none());
        let issued = kit
            .tokens
            .claims_of(b["token"].as_str().expect("token"))
            .expect("claims");
        assert_eq!(issued.exp, exp);
        assert_eq!(issued.application_id, Some(kit.app2.id));
        assert_eq!(issued.claims["authenticationType"], "JWT_SSO");
    }

    #[test]
    fn unregistered_user_gets_202_without_application_claims() {
        let kit = Kit::new();
        let jwt = kit.access_token_for(&kit.user);
        let req = request(&kit, &format!("applicationId={}", kit.app3.id), Some(&jwt));
        let res = block_on(issue(&req, &kit.context)).expect("ok");
        assert_eq!(res.status, 202);
        let issued = kit
            .tokens
            .claims_of(body(&res)["token"].as_str().expect("token"))
            .expect("claims");
        assert_eq!(issued.application_id, None);
    }

    #[test]
    fn refresh_token_follows_the_same_policy_rule() {
        let kit = Kit::new();
        let jwt = kit.access_token_for(&kit.user);
        let source = kit.refresh_token_for(&kit.user, Some(&kit.app));

        let req = request(
            &kit,
            &format!(
                "applicationId={}&refreshToken={}",
                kit.app2.id, source.token
            ),
            Some(&jwt),
        );
        let b = body(&block_on(issue(&req, &kit.context)).expect("ok"));
        let value = b["refreshToken"].as_str().expect("refresh token");
        assert_ne!(value, source.token);
        let derived = kit.store.token_by_value(value).expect("stored");
        assert_eq!(derived.application_id, Some(kit.app2.id));
        assert_eq!(derived.start_instant, source.start_instant);
        assert_ne!(derived.id, source.id);

        // a different expiration policy on the target: no refresh token
        kit.store.update_application(kit.app2.id, |a| {
            a.jwt_configuration.enabled = Some(true);
            a.jwt_configuration.refresh_token_expiration_policy =
                Some(RefreshTokenExpirationPolicy::SlidingWindow);
        });
        let b = body(&block_on(issue(&req, &kit.context)).expect("ok"));
        assert!(b.get("refreshToken").is_none());

        // an unknown refresh token: no refresh token, still a token
        let req = request(
            &kit,
            &format!("applicationId={}&refreshToken=unknown", kit.app.id),
            Some(&jwt),
        );
        let b = body(&block_on(issue(&req, &kit.context)).expect("ok"));
        assert!(b.get("refreshToken").is_none());
        assert!(b["token"].is_string());
    }

    #[test]
    fn errors() {
        let kit = Kit::new();
        let jwt = kit.access_token_for(&kit.user);
        let app = format!("applicationId={}", kit.app.id);
        let status = |req: PluginRequest| block_on(issue(&req, &kit.context)).unwrap_err().status();
        assert_eq!(status(request(&kit, &app, None)), 401);
        assert_eq!(status(request(&kit, &app, Some("forged"))), 401);
        assert_eq!(status(request(&kit, "", Some(&jwt))), 400);
        assert_eq!(status(request(&kit, "applicationId=x", Some(&jwt))), 400);
        let unknown = format!("applicationId={}", Uuid::new_v4());
        assert_eq!(status(request(&kit, &unknown, Some(&jwt))), 400);
        let other_tenant = format!("applicationId={}", kit.other_app.id);
        assert_eq!(status(request(&kit, &other_tenant, Some(&jwt))), 400);
        kit.store.update_user(kit.user.id, |u| u.active = false);
        assert_eq!(status(request(&kit, &app, Some(&jwt))), 401);
    }
}
