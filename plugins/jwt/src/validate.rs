//! `GET /api/jwt/validate`: verifies the request's access token (the `Authorization: Bearer`
//! header, else the `access_token` cookie) and returns its claims as `{"jwt": {…}}`; 401 with an
//! empty body when it is missing or not valid (bad signature, expired — from `exp` on, with no
//! leeway —, revoked, …).

use gatehouse_plugin_api::{ApiError, PluginContext, PluginRequest, PluginResponse};
use serde_json::{json, Map, Value};

/// Handles `GET /api/jwt/validate`.
pub fn validate(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<PluginResponse, ApiError> {
    let jwt = request.jwt()?.ok_or(ApiError::Unauthorized)?;
    // FusionAuth validates any token it signed, whatever its issuer (vended tokens may carry
    // their own `iss`); the proxy, which also checks the issuer, uses `verify`.
    let claims = context
        .tokens
        .verify_any_issuer(jwt)
        .map_err(|_| ApiError::Unauthorized)?;
    // FusionAuth answers 401 from `exp` on: the proxy's clock-skew leeway does not apply here.
    let now = context.clock.now_seconds();
    if now >= claims.exp || claims.not_before.is_some_and(|nbf| nbf > now) {
        return Err(ApiError::Unauthorized);
    }
    Ok(PluginResponse::json(200, &validate_body(&claims.claims)))
}

/// The ValidateResponse body: the decoded payload under `jwt`.
pub fn validate_body(claims: &Map<String, Value>) -> Value {
    json!({ "jwt": claims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Kit;
    use http::Method;

    #[test]
    fn body_shape() {
        let mut claims = Map::new();
        claims.insert("sub".into(), json!("u"));
        assert_eq!(validate_body(&claims), json!({"jwt": {"sub": "u"}}));
    }

    #[test]
    fn valid_token_by_header_or_cookie() {
        let kit = Kit::new();
        let token = kit.access_token_for(&kit.user);
        let mut req = PluginRequest::new(Method::GET, "/api/jwt/validate");
        req.headers.insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let res = validate(&req, &kit.context).expect("ok");
        assert_eq!(res.status, 200);
        let body: Value = serde_json::from_slice(&res.body).expect("json");
        assert_eq!(body["jwt"]["sub"], kit.user.id.to_string());

        let mut req = PluginRequest::new(Method::GET, "/api/jwt/validate");
        req.headers.insert(
            "cookie",
            format!("a=b; access_token={token}")
                .parse()
                .expect("header"),
        );
        assert_eq!(validate(&req, &kit.context).expect("ok").status, 200);
    }

    #[test]
    fn missing_or_bad_token_is_401() {
        let kit = Kit::new();
        let req = PluginRequest::new(Method::GET, "/api/jwt/validate");
        assert_eq!(validate(&req, &kit.context).unwrap_err().status(), 401);
        let mut req = PluginRequest::new(Method::GET, "/api/jwt/validate");
        req.headers
            .insert("authorization", "Bearer forged".parse().expect("header"));
        let err = validate(&req, &kit.context).unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(err.to_response().body.is_empty());
    }
}
