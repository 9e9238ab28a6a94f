//! FusionAuth's identity-provider API (ExternalJWT and OpenIDConnect providers) as a
//! Gatehouse plugin: providers, login and reconcile, links, the users they produce, reconcile
//! lambdas and the debug event log.
//!
//! | route | module |
//! | --- | --- |
//! | `POST /api/identity-provider[/{identityProviderId}]`, `GET /api/identity-provider[/{identityProviderId}]`, `PUT`/`PATCH`/`DELETE /api/identity-provider/{identityProviderId}`, `GET /api/identity-provider/lookup` | [`manage`] |
//! | `POST`/`GET /api/identity-provider/search` | [`search`] |
//! | `POST /api/identity-provider/login`, `POST /api/jwt/reconcile` | [`login`] (OpenID Connect's code exchange: [`oidc`]) |
//! | `GET`/`POST`/`DELETE /api/identity-provider/link`, `GET /api/identity-provider/link/pending/{pendingLinkId}` | [`links`] |
//! | `GET /api/user/{userId}`, `GET /api/user?email=` | [`users`] |
//! | `POST /api/lambda[/{lambdaId}]`, `GET /api/lambda[/{lambdaId}]`, `PUT`/`PATCH`/`DELETE /api/lambda/{lambdaId}` | [`lambdas`] |
//! | `POST`/`GET /api/system/event-log/search`, `GET /api/system/event-log/{eventLogId}` | [`events`] |
//! | the hosted-backend routes under `login.basePath` (`/app/login`, `/app/callback`, `/app/refresh`, `/app/me`, `/app/logout`), when the host gives [`Settings::app`] | [`app`] |
//!
//! Pure logic lives apart from the endpoints: [`provider`] (document validation), [`keys`]
//! (key parsing, selection, verification), [`reconcile`] (identity, linking decisions, claim
//! mapping), [`patch`] (the three PATCH formats) and [`engine`] (the lambda runtime). Lambda
//! code never runs in the gateway's threads: [`sandbox`] runs it in worker processes that speak
//! [`worker`]'s protocol.
//!
//! Build it with [`build`] from its [`Settings`] (read once with [`Settings::parse`]), its
//! storage port, [`IdentityProviderStore`], and the [`WorkerCommand`] that starts a lambda
//! worker (the host's executable; its entry point calls [`worker::serve`]). For configuration
//! files the host can call [`validate_config_provider`] and [`validate_config_lambda`].
#![warn(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_plugin_api::helpers::path_uuid;
use gatehouse_plugin_api::plugin::PluginRoute;
use gatehouse_plugin_api::{
    ApiError, Plugin, PluginContext, PluginRequest, PluginResponse, RouteSpec,
};
use http::Method;

pub mod app;
pub mod clash;
pub mod common;
pub mod engine;
pub mod events;
pub mod keys;
pub mod lambdas;
pub mod links;
pub mod login;
pub mod manage;
pub mod oidc;
pub mod patch;
pub mod pending;
pub mod provider;
pub mod reconcile;
pub mod sandbox;
pub mod search;
pub mod store;
pub mod users;
pub mod worker;

pub use lambdas::validate_config_lambda;
pub use provider::validate_config_provider;

pub use common::Settings;
pub use sandbox::WorkerCommand;
pub use store::{IdentityProviderStore, LoginStateStore};

use common::Env;
use login::{Endpoint, LoginEnv};
use pending::PendingLinks;
use sandbox::Sandbox;

/// The plugin's name under `plugins:`.
pub const NAME: &str = "identity-provider";

/// FusionAuth's identity-provider endpoints this gateway does not host — a login that needs
/// the user's interaction (`/start`, HYPR's) and connection tests (`/test`) — answered with
/// the API's empty 404, as any path it does not host, rather than read as a provider id
/// (a misleading 400 `[invalid]identityProviderId`).
const UNHOSTED_ENDPOINTS: [&str; 2] = ["start", "test"];

const IDP: &str = "/api/identity-provider";
const IDP_ID: &str = "/api/identity-provider/{identityProviderId}";
const LINK: &str = "/api/identity-provider/link";
const IDP_SEARCH: &str = "/api/identity-provider/search";
const LAMBDA: &str = "/api/lambda";
const LAMBDA_ID: &str = "/api/lambda/{lambdaId}";
const EVENT_SEARCH: &str = "/api/system/event-log/search";

/// The plugin's endpoints. [`PluginRoute::spec`] gives each its method, path template and name (the
/// name is what [`IdentityProviderPlugin::handle`] receives back in [`RouteSpec::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/identity-provider`
    Create,
    /// `POST /api/identity-provider/{identityProviderId}`
    CreateWithId,
    /// `GET /api/identity-provider`
    RetrieveAll,
    /// `GET /api/identity-provider/{identityProviderId}`
    Retrieve,
    /// `PUT /api/identity-provider/{identityProviderId}`
    Update,
    /// `PATCH /api/identity-provider/{identityProviderId}`
    Patch,
    /// `DELETE /api/identity-provider/{identityProviderId}`
    Delete,
    /// `GET /api/identity-provider/lookup`
    Lookup,
    /// `POST /api/identity-provider/search`
    Search,
    /// `GET /api/identity-provider/search`
    SearchGet,
    /// `POST /api/identity-provider/login`
    Login,
    /// `POST /api/jwt/reconcile`
    Reconcile,
    /// `GET /api/identity-provider/link`
    LinkRetrieve,
    /// `POST /api/identity-provider/link`
    LinkCreate,
    /// `DELETE /api/identity-provider/link`
    LinkDelete,
    /// `GET /api/identity-provider/link/pending/{pendingLinkId}`
    LinkPending,
    /// `GET /api/user/{userId}`
    User,
    /// `GET /api/user`
    UserQuery,
    /// `POST /api/lambda`
    LambdaCreate,
    /// `POST /api/lambda/{lambdaId}`
    LambdaCreateWithId,
    /// `GET /api/lambda`
    LambdaRetrieveAll,
    /// `GET /api/lambda/{lambdaId}`
    LambdaRetrieve,
    /// `PUT /api/lambda/{lambdaId}`
    LambdaUpdate,
    /// `PATCH /api/lambda/{lambdaId}`
    LambdaPatch,
    /// `DELETE /api/lambda/{lambdaId}`
    LambdaDelete,
    /// `POST /api/system/event-log/search`
    EventSearch,
    /// `GET /api/system/event-log/search`
    EventSearchGet,
    /// `GET /api/system/event-log/{eventLogId}`
    EventRetrieve,
}

impl PluginRoute for Route {
    /// Every route, in the order [`IdentityProviderPlugin::routes`] declares them.
    const ALL: &'static [Route] = &[
        Route::Create,
        Route::CreateWithId,
        Route::RetrieveAll,
        Route::Retrieve,
        Route::Update,
        Route::Patch,
        Route::Delete,
        Route::Lookup,
        Route::Search,
        Route::SearchGet,
        Route::Login,
        Route::Reconcile,
        Route::LinkRetrieve,
        Route::LinkCreate,
        Route::LinkDelete,
        Route::LinkPending,
        Route::User,
        Route::UserQuery,
        Route::LambdaCreate,
        Route::LambdaCreateWithId,
        Route::LambdaRetrieveAll,
        Route::LambdaRetrieve,
        Route::LambdaUpdate,
        Route::LambdaPatch,
        Route::LambdaDelete,
        Route::EventSearch,
        Route::EventSearchGet,
        Route::EventRetrieve,
    ];

    /// Returns the route's name, as given to [`RouteSpec::name`].
    fn name(self) -> &'static str {
        match self {
            Route::Create => "idp_create",
            Route::CreateWithId => "idp_create_with_id",
            Route::RetrieveAll => "idp_retrieve_all",
            Route::Retrieve => "idp_retrieve",
            Route::Update => "idp_update",
            Route::Patch => "idp_patch",
            Route::Delete => "idp_delete",
            Route::Lookup => "idp_lookup",
            Route::Search => "idp_search",
            Route::SearchGet => "idp_search_get",
            Route::Login => "idp_login",
            Route::Reconcile => "jwt_reconcile",
            Route::LinkRetrieve => "link_retrieve",
            Route::LinkCreate => "link_create",
            Route::LinkDelete => "link_delete",
            Route::LinkPending => "link_pending",
            Route::User => "user_retrieve",
            Route::UserQuery => "user_query",
            Route::LambdaCreate => "lambda_create",
            Route::LambdaCreateWithId => "lambda_create_with_id",
            Route::LambdaRetrieveAll => "lambda_retrieve_all",
            Route::LambdaRetrieve => "lambda_retrieve",
            Route::LambdaUpdate => "lambda_update",
            Route::LambdaPatch => "lambda_patch",
            Route::LambdaDelete => "lambda_delete",
            Route::EventSearch => "event_search",
            Route::EventSearchGet => "event_search_get",
            Route::EventRetrieve => "event_retrieve",
        }
    }

    /// Returns the route's method, path template and name.
    fn spec(self) -> RouteSpec {
        let (method, path) = match self {
            Route::Create => (Method::POST, IDP),
            Route::CreateWithId => (Method::POST, IDP_ID),
            Route::RetrieveAll => (Method::GET, IDP),
            Route::Retrieve => (Method::GET, IDP_ID),
            Route::Update => (Method::PUT, IDP_ID),
            Route::Patch => (Method::PATCH, IDP_ID),
            Route::Delete => (Method::DELETE, IDP_ID),
            Route::Lookup => (Method::GET, "/api/identity-provider/lookup"),
            Route::Search => (Method::POST, IDP_SEARCH),
            Route::SearchGet => (Method::GET, IDP_SEARCH),
            Route::Login => (Method::POST, "/api/identity-provider/login"),
            Route::Reconcile => (Method::POST, "/api/jwt/reconcile"),
            Route::LinkRetrieve => (Method::GET, LINK),
            Route::LinkCreate => (Method::POST, LINK),
            Route::LinkDelete => (Method::DELETE, LINK),
            Route::LinkPending => (
                Method::GET,
                "/api/identity-provider/link/pending/{pendingLinkId}",
            ),
            Route::User => (Method::GET, "/api/user/{userId}"),
            Route::UserQuery => (Method::GET, "/api/user"),
            Route::LambdaCreate => (Method::POST, LAMBDA),
            Route::LambdaCreateWithId => (Method::POST, LAMBDA_ID),
            Route::LambdaRetrieveAll => (Method::GET, LAMBDA),
            Route::LambdaRetrieve => (Method::GET, LAMBDA_ID),
            Route::LambdaUpdate => (Method::PUT, LAMBDA_ID),
            Route::LambdaPatch => (Method::PATCH, LAMBDA_ID),
            Route::LambdaDelete => (Method::DELETE, LAMBDA_ID),
            Route::EventSearch => (Method::POST, EVENT_SEARCH),
            Route::EventSearchGet => (Method::GET, EVENT_SEARCH),
            Route::EventRetrieve => (Method::GET, "/api/system/event-log/{eventLogId}"),
        };
        let spec = RouteSpec::new(method, path, self.name());
        match self {
            Route::RetrieveAll
            | Route::Retrieve
            | Route::Lookup
            | Route::SearchGet
            | Route::LinkRetrieve
            | Route::LinkPending
            | Route::User
            | Route::UserQuery
            | Route::LambdaRetrieveAll
            | Route::LambdaRetrieve
            | Route::EventSearchGet
            | Route::EventRetrieve => spec.reading(),
            _ => spec,
        }
    }
}

/// The identity-provider plugin. Its state is the in-memory pending links, the pool of
/// lambda workers and the OpenID Connect discovery documents fetched.
pub struct IdentityProviderPlugin {
    pending: PendingLinks,
    records: Arc<dyn IdentityProviderStore>,
    sandbox: Sandbox,
    settings: Settings,
    discovery: oidc::discovery::DiscoveryCache,
    /// The hosted-backend routes (none without [`Settings::app`]).
    app_routes: Vec<RouteSpec>,
    /// The key of the hosted-backend login states, read from the store at start.
    state_key: app::state::SharedStateKey,
}

impl IdentityProviderPlugin {
    /// The plugin with these settings, keeping its records in `records` and running lambdas in
    /// workers started with `worker`.
    pub fn new(
        settings: Settings,
        records: Arc<dyn IdentityProviderStore>,
        worker: WorkerCommand,
    ) -> Self {
        IdentityProviderPlugin {
            pending: PendingLinks::new(settings.pending_links),
            records,
            sandbox: Sandbox::new(worker, settings.lambda, settings.lambda_workers),
            app_routes: (settings.app.as_ref())
                .map(|a| app::AppRoute::specs(&a.base_path))
                .unwrap_or_default(),
            settings,
            discovery: Default::default(),
            state_key: Default::default(),
        }
    }
}

/// Builds the plugin from its settings (read once from `plugins.identity-provider` with
/// [`Settings::parse`]), its storage port and the command that starts a lambda worker.
pub fn build(
    settings: Settings,
    records: Arc<dyn IdentityProviderStore>,
    worker: WorkerCommand,
) -> Arc<dyn Plugin> {
    Arc::new(IdentityProviderPlugin::new(settings, records, worker))
}

#[async_trait]
impl Plugin for IdentityProviderPlugin {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Reads the login-state key from the store when the hosted-backend routes are served, so
    /// that no login waits for it and a store that cannot be read fails the start (or the
    /// reload) instead of the first login.
    async fn start(&self) -> Result<(), String> {
        if self.settings.app.is_some() {
            (self.state_key.load(self.records.as_ref()).await)
                .map_err(|e| format!("cannot read the login-state key from the store: {e}"))?;
        }
        Ok(())
    }

    fn routes(&self) -> Vec<RouteSpec> {
        let mut routes = Route::specs();
        routes.extend(self.app_routes.iter().cloned());
        routes
    }

    async fn handle(
        &self,
        route: &RouteSpec,
        request: PluginRequest,
        context: &PluginContext,
    ) -> Result<PluginResponse, ApiError> {
        let sandbox = &self.sandbox;
        let env = Env {
            host: context,
            records: self.records.as_ref(),
        };
        let context = &env;
        let login_env = || LoginEnv {
            context,
            pending: &self.pending,
            sandbox,
            discovery: &self.discovery,
            settings: &self.settings,
        };
        if let (Some(r), Some(settings)) =
            (app::AppRoute::from_name(route.name), &self.settings.app)
        {
            app::unambiguous(&request)?;
            let env = login_env();
            let app = app::flow::App {
                settings,
                key: &self.state_key,
                env: &env,
            };
            return match r {
                app::AppRoute::Login | app::AppRoute::LoginByClientId => {
                    app::flow::login(&request, &app).await
                }
                app::AppRoute::Callback => app::flow::callback(&request, &app).await,
                app::AppRoute::Refresh | app::AppRoute::RefreshByClientId => {
                    app::session::refresh(&request, &app).await
                }
                app::AppRoute::Me => app::session::me(&request, context).await,
                app::AppRoute::Logout | app::AppRoute::LogoutByClientId => {
                    app::session::logout(&request, &app).await
                }
            };
        }
        if request
            .path_param("identityProviderId")
            .is_some_and(|id| UNHOSTED_ENDPOINTS.contains(&id))
        {
            return Err(ApiError::NotFound);
        }
        common::unambiguous_query(&request)?;
        match Route::from_name(route.name) {
            None => Err(ApiError::NotFound),
            Some(r) => match r {
                Route::Create => manage::create(&request, context, None).await,
                Route::CreateWithId => {
                    let id = path_uuid(&request, "identityProviderId")?;
                    manage::create(&request, context, Some(id)).await
                }
                Route::RetrieveAll => manage::retrieve_all(&request, context).await,
                Route::Retrieve => manage::retrieve(&request, context).await,
                Route::Update => manage::update(&request, context).await,
                Route::Patch => manage::patch(&request, context).await,
                Route::Delete => manage::delete(&request, context).await,
                Route::Lookup => manage::lookup(&request, context).await,
                Route::Search | Route::SearchGet => search::search(&request, context).await,
                Route::Login => login::login(&request, &login_env(), Endpoint::Login).await,
                Route::Reconcile => login::login(&request, &login_env(), Endpoint::Reconcile).await,
                Route::LinkRetrieve => links::retrieve(&request, context).await,
                Route::LinkCreate => links::create(&request, context, &self.pending).await,
                Route::LinkDelete => links::delete(&request, context).await,
                Route::LinkPending => {
                    links::retrieve_pending(&request, context, &self.pending).await
                }
                Route::User => users::retrieve(&request, context).await,
                Route::UserQuery => users::retrieve_by_query(&request, context).await,
                Route::LambdaCreate => lambdas::create(&request, context, None, sandbox).await,
                Route::LambdaCreateWithId => {
                    let id = path_uuid(&request, "lambdaId")?;
                    lambdas::create(&request, context, Some(id), sandbox).await
                }
                Route::LambdaRetrieveAll => lambdas::retrieve_all(&request, context).await,
                Route::LambdaRetrieve => lambdas::retrieve(&request, context).await,
                Route::LambdaUpdate => lambdas::update(&request, context, sandbox).await,
                Route::LambdaPatch => lambdas::patch(&request, context, sandbox).await,
                Route::LambdaDelete => lambdas::delete(&request, context).await,
                Route::EventSearch | Route::EventSearchGet => {
                    events::search(&request, context).await
                }
                Route::EventRetrieve => events::retrieve(&request, context).await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn settings_are_read_once_into_their_type() {
        assert_eq!(Settings::parse(&Value::Null), Ok(Settings::default()));
        assert!(Settings::parse(&json!({"lambdaTimeLimitMillis": 500})).is_ok());
        let err = Settings::parse(&json!({"bogus": 1})).expect_err("refused");
        assert!(err.contains("`bogus`"), "{err}");
        let err = Settings::parse(&json!({"lambdaTimeLimitMillis": null})).expect_err("refused");
        assert!(
            err.contains("`lambdaTimeLimitMillis` has no value"),
            "{err}"
        );
        let err = Settings::parse(&json!({"lambdaTimeLimitMillis": 0})).expect_err("refused");
        assert!(err.contains("from 1 to 60000"), "{err}");
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
        let idp_id = "/api/identity-provider/{identityProviderId}";
        let link = "/api/identity-provider/link";
        let lambda_id = "/api/lambda/{lambdaId}";
        let search = "/api/system/event-log/search";
        let event_id = "/api/system/event-log/{eventLogId}";
        let expected = [
            ("POST", "/api/identity-provider", "idp_create"),
            ("POST", idp_id, "idp_create_with_id"),
            ("GET", "/api/identity-provider", "idp_retrieve_all"),
            ("GET", idp_id, "idp_retrieve"),
            ("PUT", idp_id, "idp_update"),
            ("PATCH", idp_id, "idp_patch"),
            ("DELETE", idp_id, "idp_delete"),
            ("GET", "/api/identity-provider/lookup", "idp_lookup"),
            ("POST", "/api/identity-provider/search", "idp_search"),
            ("GET", "/api/identity-provider/search", "idp_search_get"),
            ("POST", "/api/identity-provider/login", "idp_login"),
            ("POST", "/api/jwt/reconcile", "jwt_reconcile"),
            ("GET", link, "link_retrieve"),
            ("POST", link, "link_create"),
            ("DELETE", link, "link_delete"),
            (
                "GET",
                "/api/identity-provider/link/pending/{pendingLinkId}",
                "link_pending",
            ),
            ("GET", "/api/user/{userId}", "user_retrieve"),
            ("GET", "/api/user", "user_query"),
            ("POST", "/api/lambda", "lambda_create"),
            ("POST", lambda_id, "lambda_create_with_id"),
            ("GET", "/api/lambda", "lambda_retrieve_all"),
            ("GET", lambda_id, "lambda_retrieve"),
            ("PUT", lambda_id, "lambda_update"),
            ("PATCH", lambda_id, "lambda_patch"),
            ("DELETE", lambda_id, "lambda_delete"),
            ("POST", search, "event_search"),
            ("GET", search, "event_search_get"),
            ("GET", event_id, "event_retrieve"),
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
}
