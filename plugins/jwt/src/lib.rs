//! FusionAuth's JWT API (`/api/jwt/*`) and the key-discovery documents (`/.well-known/*`) as a
//! Gatehouse plugin.
//!
//! | route | module |
//! | --- | --- |
//! | `GET /api/jwt/issue` | [`issue`] |
//! | `GET /api/jwt/public-key`, `GET /.well-known/jwks.json`, `GET /.well-known/openid-configuration` | [`keys`] |
//! | `POST /api/jwt/refresh`, `GET`/`DELETE /api/jwt/refresh[/{tokenId}]` | [`refresh`] |
//! | `GET /api/jwt/validate` | [`validate`] |
//! | `POST /api/jwt/vend` | [`vend`] |
//!
//! Build it with [`factory`] (settings: none). Refresh-token rules live in
//! [`gatehouse_plugin_api::refresh`], shared with the proxy's transparent refresh.
#![warn(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_plugin_api::{
    ApiError, Plugin, PluginContext, PluginRequest, PluginResponse, RouteSpec,
};
use http::Method;
use serde_json::Value;

pub mod common;
pub mod issue;
pub mod keys;
pub mod refresh;
pub mod validate;
pub mod vend;

#[cfg(test)]
mod testkit;

/// The plugin's name under `plugins:`.
pub const NAME: &str = "jwt";

/// Route names, as given to [`RouteSpec::name`] and matched in [`JwtPlugin::handle`].
pub mod route {
    /// `GET /api/jwt/issue`
    pub const ISSUE: &str = "issue";
    /// `GET /api/jwt/public-key`
    pub const PUBLIC_KEY: &str = "public_key";
    /// `GET /.well-known/jwks.json`
    pub const JWKS: &str = "jwks";
    /// `GET /.well-known/openid-configuration`
    pub const OPENID_CONFIGURATION: &str = "openid_configuration";
    /// `POST /api/jwt/refresh`
    pub const REFRESH: &str = "refresh";
    /// `GET /api/jwt/refresh?userId=`
    pub const RETRIEVE_REFRESH_TOKENS: &str = "retrieve_refresh_tokens";
    /// `GET /api/jwt/refresh/{tokenId}`
    pub const RETRIEVE_REFRESH_TOKEN: &str = "retrieve_refresh_token";
    /// `DELETE /api/jwt/refresh`
    pub const REVOKE_REFRESH_TOKENS: &str = "revoke_refresh_tokens";
    /// `DELETE /api/jwt/refresh/{tokenId}`
    pub const REVOKE_REFRESH_TOKEN: &str = "revoke_refresh_token";
    /// `GET /api/jwt/validate`
    pub const VALIDATE: &str = "validate";
    /// `POST /api/jwt/vend`
    pub const VEND: &str = "vend";
}

/// The JWT API plugin. Stateless: everything lives in the [`PluginContext`].
#[derive(Debug, Default, Clone, Copy)]
pub struct JwtPlugin;

impl JwtPlugin {
    /// The plugin.
    pub fn new() -> Self {
        JwtPlugin
    }
}

/// Builds the plugin from its `plugins.jwt` settings. It takes none: `null` or an empty mapping;
/// any key is refused by name.
pub fn factory(settings: &Value) -> Result<Arc<dyn Plugin>, String> {
    match settings {
        Value::Null => {}
        Value::Object(map) => {
            if let Some(key) = map.keys().next() {
                return Err(format!(
                    "unknown setting `{key}`: the jwt plugin takes no settings"
                ));
            }
        }
        other => {
            return Err(format!(
                "expected a mapping (or nothing), found {}",
                json_kind(other)
            ))
        }
    }
    Ok(Arc::new(JwtPlugin::new()))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

#[async_trait]
impl Plugin for JwtPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn routes(&self) -> Vec<RouteSpec> {
        vec![
            RouteSpec::new(Method::GET, "/api/jwt/issue", route::ISSUE),
            RouteSpec::new(Method::GET, "/api/jwt/public-key", route::PUBLIC_KEY),
            RouteSpec::new(Method::GET, "/.well-known/jwks.json", route::JWKS),
            RouteSpec::new(
                Method::GET,
                "/.well-known/openid-configuration",
                route::OPENID_CONFIGURATION,
            ),
            RouteSpec::new(Method::POST, "/api/jwt/refresh", route::REFRESH),
            RouteSpec::new(
                Method::GET,
                "/api/jwt/refresh",
                route::RETRIEVE_REFRESH_TOKENS,
            ),
            RouteSpec::new(
                Method::GET,
                "/api/jwt/refresh/{tokenId}",
                route::RETRIEVE_REFRESH_TOKEN,
            ),
            RouteSpec::new(
                Method::DELETE,
                "/api/jwt/refresh",
                route::REVOKE_REFRESH_TOKENS,
            ),
            RouteSpec::new(
                Method::DELETE,
                "/api/jwt/refresh/{tokenId}",
                route::REVOKE_REFRESH_TOKEN,
            ),
            RouteSpec::new(Method::GET, "/api/jwt/validate", route::VALIDATE),
            RouteSpec::new(Method::POST, "/api/jwt/vend", route::VEND),
        ]
    }

    async fn handle(
        &self,
        route: &RouteSpec,
        request: PluginRequest,
        context: &PluginContext,
    ) -> Result<PluginResponse, ApiError> {
        match route.name {
            route::ISSUE => issue::issue(&request, context).await,
            route::PUBLIC_KEY => keys::public_key(&request, context).await,
            route::JWKS => Ok(keys::jwks(context)),
            route::OPENID_CONFIGURATION => keys::openid_configuration(&request, context).await,
            route::REFRESH => refresh::exchange(&request, context).await,
            route::RETRIEVE_REFRESH_TOKENS => refresh::retrieve_for_user(&request, context).await,
            route::RETRIEVE_REFRESH_TOKEN => refresh::retrieve_by_id(&request, context).await,
            route::REVOKE_REFRESH_TOKENS => refresh::revoke(&request, context).await,
            route::REVOKE_REFRESH_TOKEN => refresh::revoke_by_id(&request, context).await,
            route::VALIDATE => validate::validate(&request, context),
            route::VEND => vend::vend(&request, context).await,
            _ => Err(ApiError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn factory_takes_no_settings() {
        assert!(factory(&Value::Null).is_ok());
        assert!(factory(&json!({})).is_ok());
        let err = factory(&json!({"issuer": "x"})).err().expect("refused");
        assert!(err.contains("`issuer`"), "{err}");
        let err = factory(&json!(["x"])).err().expect("refused");
        assert!(err.contains("sequence"), "{err}");
    }

    #[test]
    fn routes_are_unique_and_named() {
        let plugin = JwtPlugin::new();
        assert_eq!(plugin.name(), "jwt");
        let routes = plugin.routes();
        assert_eq!(routes.len(), 11);
        for (i, a) in routes.iter().enumerate() {
            for b in &routes[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method,
                    a.path
                );
                assert_ne!(a.name, b.name);
            }
        }
    }
}
