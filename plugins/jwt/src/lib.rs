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
//! Build it with [`build`] (its [`Settings`] take no keys). Refresh-token rules live in
//! [`gatehouse_refresh`], shared with the proxy's transparent refresh.
#![warn(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_plugin_api::plugin::PluginRoute;
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

/// The plugin's endpoints. [`PluginRoute::spec`] gives each its method, path template and name (the
/// name is what [`JwtPlugin::handle`] receives back in [`RouteSpec::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /api/jwt/issue`
    Issue,
    /// `GET /api/jwt/public-key`
    PublicKey,
    /// `GET /.well-known/jwks.json`
    Jwks,
    /// `GET /.well-known/openid-configuration`
    OpenidConfiguration,
    /// `POST /api/jwt/refresh`
    Refresh,
    /// `GET /api/jwt/refresh?userId=`
    RetrieveRefreshTokens,
    /// `GET /api/jwt/refresh/{tokenId}`
    RetrieveRefreshToken,
    /// `DELETE /api/jwt/refresh`
    RevokeRefreshTokens,
    /// `DELETE /api/jwt/refresh/{tokenId}`
    RevokeRefreshToken,
    /// `GET /api/jwt/validate`
    Validate,
    /// `POST /api/jwt/vend`
    Vend,
}

impl PluginRoute for Route {
    /// Every route, in the order [`JwtPlugin::routes`] declares them.
    const ALL: &'static [Route] = &[
        Route::Issue,
        Route::PublicKey,
        Route::Jwks,
        Route::OpenidConfiguration,
        Route::Refresh,
        Route::RetrieveRefreshTokens,
        Route::RetrieveRefreshToken,
        Route::RevokeRefreshTokens,
        Route::RevokeRefreshToken,
        Route::Validate,
        Route::Vend,
    ];

    /// Returns the route's name, as given to [`RouteSpec::name`].
    fn name(self) -> &'static str {
        match self {
            Route::Issue => "issue",
            Route::PublicKey => "public_key",
            Route::Jwks => "jwks",
            Route::OpenidConfiguration => "openid_configuration",
            Route::Refresh => "refresh",
            Route::RetrieveRefreshTokens => "retrieve_refresh_tokens",
            Route::RetrieveRefreshToken => "retrieve_refresh_token",
            Route::RevokeRefreshTokens => "revoke_refresh_tokens",
            Route::RevokeRefreshToken => "revoke_refresh_token",
            Route::Validate => "validate",
            Route::Vend => "vend",
        }
    }

    /// Returns the route's method, path template and name.
    fn spec(self) -> RouteSpec {
        let (method, path) = match self {
            Route::Issue => (Method::GET, "/api/jwt/issue"),
            Route::PublicKey => (Method::GET, "/api/jwt/public-key"),
            Route::Jwks => (Method::GET, "/.well-known/jwks.json"),
            Route::OpenidConfiguration => (Method::GET, "/.well-known/openid-configuration"),
            Route::Refresh => (Method::POST, "/api/jwt/refresh"),
            Route::RetrieveRefreshTokens => (Method::GET, "/api/jwt/refresh"),
            Route::RetrieveRefreshToken => (Method::GET, "/api/jwt/refresh/{tokenId}"),
            Route::RevokeRefreshTokens => (Method::DELETE, "/api/jwt/refresh"),
            Route::RevokeRefreshToken => (Method::DELETE, "/api/jwt/refresh/{tokenId}"),
            Route::Validate => (Method::GET, "/api/jwt/validate"),
            Route::Vend => (Method::POST, "/api/jwt/vend"),
        };
        let spec = RouteSpec::new(method, path, self.name());
        match self {
            Route::PublicKey
            | Route::Jwks
            | Route::OpenidConfiguration
            | Route::RetrieveRefreshTokens
            | Route::RetrieveRefreshToken
            | Route::Validate => spec.reading(),
            // `issue` signs a token (and may make a refresh token): a GET that acts.
            Route::Issue
            | Route::Refresh
            | Route::RevokeRefreshTokens
            | Route::RevokeRefreshToken
            | Route::Vend => spec,
        }
    }
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

/// `plugins.jwt`: the plugin takes no settings, so any key is refused by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {}

impl Settings {
    /// Reads `plugins.jwt` once: `null` or an empty mapping.
    pub fn parse(settings: &Value) -> Result<Settings, String> {
        gatehouse_plugin_api::plugin::parse_settings(settings)
    }
}

/// Builds the plugin from its settings.
pub fn build(_settings: Settings) -> Arc<dyn Plugin> {
    Arc::new(JwtPlugin::new())
}

#[async_trait]
impl Plugin for JwtPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn routes(&self) -> Vec<RouteSpec> {
        Route::specs()
    }

    async fn handle(
        &self,
        route: &RouteSpec,
        request: PluginRequest,
        context: &PluginContext,
    ) -> Result<PluginResponse, ApiError> {
        // No parameter of this API is a list: one given twice is ambiguous.
        gatehouse_plugin_api::helpers::unambiguous_query(&request, &[])?;
        match Route::from_name(route.name) {
            None => Err(ApiError::NotFound),
            Some(r) => match r {
                Route::Issue => issue::issue(&request, context).await,
                Route::PublicKey => keys::public_key(&request, context).await,
                Route::Jwks => Ok(keys::jwks(context)),
                Route::OpenidConfiguration => keys::openid_configuration(&request, context).await,
                Route::Refresh => refresh::exchange(&request, context).await,
                Route::RetrieveRefreshTokens => refresh::retrieve_for_user(&request, context).await,
                Route::RetrieveRefreshToken => refresh::retrieve_by_id(&request, context).await,
                Route::RevokeRefreshTokens => refresh::revoke(&request, context).await,
                Route::RevokeRefreshToken => refresh::revoke_by_id(&request, context).await,
                Route::Validate => validate::validate(&request, context),
                Route::Vend => vend::vend(&request, context).await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_take_no_keys() {
        assert!(Settings::parse(&Value::Null).is_ok());
        assert!(Settings::parse(&json!({})).is_ok());
        let err = Settings::parse(&json!({"issuer": "x"})).expect_err("refused");
        assert!(err.contains("`issuer`"), "{err}");
        let err = Settings::parse(&json!(["x"])).expect_err("refused");
        assert!(err.contains("mapping"), "{err}");
    }

    #[test]
    fn every_route_round_trips_through_its_name() {
        gatehouse_plugin_api::plugin::check_route_table::<Route>();
    }

    #[test]
    fn route_names_and_paths_are_unchanged() {
        let specs: Vec<(String, &str, &str)> = Route::ALL
            .iter()
            .map(|r| r.spec())
            .map(|s| (s.method.to_string(), s.path, s.name))
            .collect();
        let token_id = "/api/jwt/refresh/{tokenId}";
        let expected = [
            ("GET", "/api/jwt/issue", "issue"),
            ("GET", "/api/jwt/public-key", "public_key"),
            ("GET", "/.well-known/jwks.json", "jwks"),
            (
                "GET",
                "/.well-known/openid-configuration",
                "openid_configuration",
            ),
            ("POST", "/api/jwt/refresh", "refresh"),
            ("GET", "/api/jwt/refresh", "retrieve_refresh_tokens"),
            ("GET", token_id, "retrieve_refresh_token"),
            ("DELETE", "/api/jwt/refresh", "revoke_refresh_tokens"),
            ("DELETE", token_id, "revoke_refresh_token"),
            ("GET", "/api/jwt/validate", "validate"),
            ("POST", "/api/jwt/vend", "vend"),
        ];
        assert_eq!(specs.len(), expected.len());
        for (spec, (method, path, name)) in specs.iter().zip(expected) {
            assert_eq!(
                (spec.0.as_str(), spec.1, spec.2),
                (method, path, name),
                "{name}"
            );
        }
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
