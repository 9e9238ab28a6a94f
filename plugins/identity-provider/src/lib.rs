//! FusionAuth's External JWT identity provider API as a Gatehouse plugin: providers, login and
//! reconcile, links, the users they produce, reconcile lambdas and the debug event log.
//!
//! | route | module |
//! | --- | --- |
//! | `POST /api/identity-provider[/{identityProviderId}]`, `GET /api/identity-provider[/{identityProviderId}]`, `PUT`/`PATCH`/`DELETE /api/identity-provider/{identityProviderId}`, `GET /api/identity-provider/lookup` | [`manage`] |
//! | `POST /api/identity-provider/login`, `POST /api/jwt/reconcile` | [`login`] |
//! | `GET`/`POST`/`DELETE /api/identity-provider/link`, `GET /api/identity-provider/link/pending/{pendingLinkId}` | [`links`] |
//! | `GET /api/user/{userId}`, `GET /api/user?email=` | [`users`] |
//! | `POST /api/lambda[/{lambdaId}]`, `GET /api/lambda[/{lambdaId}]`, `PUT`/`PATCH`/`DELETE /api/lambda/{lambdaId}` | [`lambdas`] |
//! | `POST`/`GET /api/system/event-log/search`, `GET /api/system/event-log/{eventLogId}` | [`events`] |
//!
//! Pure logic lives apart from the endpoints: [`provider`] (document validation), [`keys`]
//! (key parsing, selection, verification), [`reconcile`] (identity, linking decisions, claim
//! mapping), [`patch`] (the three PATCH formats) and [`engine`] (the sandboxed lambda runtime).
//!
//! Build it with [`factory`]; settings: see [`common::Settings::parse`]. For configuration
//! files the host can call [`validate_config_provider`] and [`validate_config_lambda`].
#![warn(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_plugin_api::helpers::path_uuid;
use gatehouse_plugin_api::{
    ApiError, Plugin, PluginContext, PluginRequest, PluginResponse, RouteSpec,
};
use http::Method;
use serde_json::Value;

pub mod common;
pub mod engine;
pub mod events;
pub mod keys;
pub mod lambdas;
pub mod links;
pub mod login;
pub mod manage;
pub mod patch;
pub mod provider;
pub mod reconcile;
pub mod users;

pub use lambdas::validate_config_lambda;
pub use provider::validate_config_provider;

use common::Settings;
use links::PendingLinks;
use login::{Endpoint, LoginEnv};

/// The plugin's name under `plugins:`.
pub const NAME: &str = "identity-provider";

/// Route names, as given to [`RouteSpec::name`] and matched in [`IdentityProviderPlugin::handle`].
pub mod route {
    /// `POST /api/identity-provider`
    pub const CREATE: &str = "idp_create";
    /// `POST /api/identity-provider/{identityProviderId}`
    pub const CREATE_WITH_ID: &str = "idp_create_with_id";
    /// `GET /api/identity-provider`
    pub const RETRIEVE_ALL: &str = "idp_retrieve_all";
    /// `GET /api/identity-provider/{identityProviderId}`
    pub const RETRIEVE: &str = "idp_retrieve";
    /// `PUT /api/identity-provider/{identityProviderId}`
    pub const UPDATE: &str = "idp_update";
    /// `PATCH /api/identity-provider/{identityProviderId}`
    pub const PATCH: &str = "idp_patch";
    /// `DELETE /api/identity-provider/{identityProviderId}`
    pub const DELETE: &str = "idp_delete";
    /// `GET /api/identity-provider/lookup`
    pub const LOOKUP: &str = "idp_lookup";
    /// `POST /api/identity-provider/login`
    pub const LOGIN: &str = "idp_login";
    /// `POST /api/jwt/reconcile`
    pub const RECONCILE: &str = "jwt_reconcile";
    /// `GET /api/identity-provider/link`
    pub const LINK_RETRIEVE: &str = "link_retrieve";
    /// `POST /api/identity-provider/link`
    pub const LINK_CREATE: &str = "link_create";
    /// `DELETE /api/identity-provider/link`
    pub const LINK_DELETE: &str = "link_delete";
    /// `GET /api/identity-provider/link/pending/{pendingLinkId}`
    pub const LINK_PENDING: &str = "link_pending";
    /// `GET /api/user/{userId}`
    pub const USER: &str = "user_retrieve";
    /// `GET /api/user`
    pub const USER_QUERY: &str = "user_query";
    /// `POST /api/lambda`
    pub const LAMBDA_CREATE: &str = "lambda_create";
    /// `POST /api/lambda/{lambdaId}`
    pub const LAMBDA_CREATE_WITH_ID: &str = "lambda_create_with_id";
    /// `GET /api/lambda`
    pub const LAMBDA_RETRIEVE_ALL: &str = "lambda_retrieve_all";
    /// `GET /api/lambda/{lambdaId}`
    pub const LAMBDA_RETRIEVE: &str = "lambda_retrieve";
    /// `PUT /api/lambda/{lambdaId}`
    pub const LAMBDA_UPDATE: &str = "lambda_update";
    /// `PATCH /api/lambda/{lambdaId}`
    pub const LAMBDA_PATCH: &str = "lambda_patch";
    /// `DELETE /api/lambda/{lambdaId}`
    pub const LAMBDA_DELETE: &str = "lambda_delete";
    /// `POST /api/system/event-log/search`
    pub const EVENT_SEARCH: &str = "event_search";
    /// `GET /api/system/event-log/search`
    pub const EVENT_SEARCH_GET: &str = "event_search_get";
    /// `GET /api/system/event-log/{eventLogId}`
    pub const EVENT_RETRIEVE: &str = "event_retrieve";
}

/// The identity-provider plugin. Its only state is the in-memory pending links.
#[derive(Debug)]
pub struct IdentityProviderPlugin {
    settings: Settings,
    pending: PendingLinks,
}

impl IdentityProviderPlugin {
    /// The plugin with these settings.
    pub fn new(settings: Settings) -> Self {
        IdentityProviderPlugin {
            settings,
            pending: PendingLinks::new(settings.pending_link_ttl),
        }
    }
}

/// Builds the plugin from its `plugins.identity-provider` settings (see
/// [`Settings::parse`]); an unknown or out-of-range setting is refused by name.
pub fn factory(settings: &Value) -> Result<Arc<dyn Plugin>, String> {
    let settings = Settings::parse(settings)?;
    Ok(Arc::new(IdentityProviderPlugin::new(settings)))
}

#[async_trait]
impl Plugin for IdentityProviderPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    fn routes(&self) -> Vec<RouteSpec> {
        use route::*;
        let idp = "/api/identity-provider";
        let idp_id = "/api/identity-provider/{identityProviderId}";
        let link = "/api/identity-provider/link";
        let lambda_id = "/api/lambda/{lambdaId}";
        vec![
            RouteSpec::new(Method::POST, idp, CREATE),
            RouteSpec::new(Method::POST, idp_id, CREATE_WITH_ID),
            RouteSpec::new(Method::GET, idp, RETRIEVE_ALL),
            RouteSpec::new(Method::GET, idp_id, RETRIEVE),
            RouteSpec::new(Method::PUT, idp_id, UPDATE),
            RouteSpec::new(Method::PATCH, idp_id, PATCH),
            RouteSpec::new(Method::DELETE, idp_id, DELETE),
            RouteSpec::new(Method::GET, "/api/identity-provider/lookup", LOOKUP),
            RouteSpec::new(Method::POST, "/api/identity-provider/login", LOGIN),
            RouteSpec::new(Method::POST, "/api/jwt/reconcile", RECONCILE),
            RouteSpec::new(Method::GET, link, LINK_RETRIEVE),
            RouteSpec::new(Method::POST, link, LINK_CREATE),
            RouteSpec::new(Method::DELETE, link, LINK_DELETE),
            RouteSpec::new(
                Method::GET,
                "/api/identity-provider/link/pending/{pendingLinkId}",
                LINK_PENDING,
            ),
            RouteSpec::new(Method::GET, "/api/user/{userId}", USER),
            RouteSpec::new(Method::GET, "/api/user", USER_QUERY),
            RouteSpec::new(Method::POST, "/api/lambda", LAMBDA_CREATE),
            RouteSpec::new(Method::POST, lambda_id, LAMBDA_CREATE_WITH_ID),
            RouteSpec::new(Method::GET, "/api/lambda", LAMBDA_RETRIEVE_ALL),
            RouteSpec::new(Method::GET, lambda_id, LAMBDA_RETRIEVE),
            RouteSpec::new(Method::PUT, lambda_id, LAMBDA_UPDATE),
            RouteSpec::new(Method::PATCH, lambda_id, LAMBDA_PATCH),
            RouteSpec::new(Method::DELETE, lambda_id, LAMBDA_DELETE),
            RouteSpec::new(Method::POST, "/api/system/event-log/search", EVENT_SEARCH),
            RouteSpec::new(
                Method::GET,
                "/api/system/event-log/search",
                EVENT_SEARCH_GET,
            ),
            RouteSpec::new(
                Method::GET,
                "/api/system/event-log/{eventLogId}",
                EVENT_RETRIEVE,
            ),
        ]
    }

    async fn handle(
        &self,
        route: &RouteSpec,
        request: PluginRequest,
        context: &PluginContext,
    ) -> Result<PluginResponse, ApiError> {
        let limits = self.settings.lambda;
        let login_env = || LoginEnv {
            context,
            pending: &self.pending,
            limits,
        };
        match route.name {
            route::CREATE => manage::create(&request, context, None).await,
            route::CREATE_WITH_ID => {
                let id = path_uuid(&request, "identityProviderId")?;
                manage::create(&request, context, Some(id)).await
            }
            route::RETRIEVE_ALL => manage::retrieve_all(&request, context).await,
            route::RETRIEVE => manage::retrieve(&request, context).await,
            route::UPDATE => manage::update(&request, context).await,
            route::PATCH => manage::patch(&request, context).await,
            route::DELETE => manage::delete(&request, context).await,
            route::LOOKUP => manage::lookup(&request, context).await,
            route::LOGIN => login::login(&request, &login_env(), Endpoint::Login).await,
            route::RECONCILE => login::login(&request, &login_env(), Endpoint::Reconcile).await,
            route::LINK_RETRIEVE => links::retrieve(&request, context).await,
            route::LINK_CREATE => links::create(&request, context, &self.pending).await,
            route::LINK_DELETE => links::delete(&request, context).await,
            route::LINK_PENDING => links::retrieve_pending(&request, context, &self.pending).await,
            route::USER => users::retrieve(&request, context).await,
            route::USER_QUERY => users::retrieve_by_query(&request, context).await,
            route::LAMBDA_CREATE => lambdas::create(&request, context, None, limits).await,
            route::LAMBDA_CREATE_WITH_ID => {
                let id = path_uuid(&request, "lambdaId")?;
                lambdas::create(&request, context, Some(id), limits).await
            }
            route::LAMBDA_RETRIEVE_ALL => lambdas::retrieve_all(&request, context).await,
            route::LAMBDA_RETRIEVE => lambdas::retrieve(&request, context).await,
            route::LAMBDA_UPDATE => lambdas::update(&request, context, limits).await,
            route::LAMBDA_PATCH => lambdas::patch(&request, context, limits).await,
            route::LAMBDA_DELETE => lambdas::delete(&request, context).await,
            route::EVENT_SEARCH | route::EVENT_SEARCH_GET => {
                events::search(&request, context).await
            }
            route::EVENT_RETRIEVE => events::retrieve(&request, context).await,
            _ => Err(ApiError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn factory_checks_settings() {
        assert!(factory(&Value::Null).is_ok());
        assert!(factory(&json!({"lambdaTimeLimitMillis": 500})).is_ok());
        let err = factory(&json!({"bogus": 1})).err().expect("refused");
        assert!(err.contains("`bogus`"), "{err}");
    }

    #[test]
    fn routes_are_unique_and_named() {
        let plugin = IdentityProviderPlugin::new(Settings::default());
        assert_eq!(plugin.name(), NAME);
        let routes = plugin.routes();
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
