//! The plugin trait and the context a plugin is handed.

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::apikeys::ApiKeyRing;
use crate::clock::Clock;
use crate::cpu::CpuPool;
use crate::error::ApiError;
use crate::remote::{HttpClient, RemoteKeys};
use crate::request::PluginRequest;
use crate::response::PluginResponse;
use crate::rotations::RotationLedger;
use crate::store::Store;
use crate::tokens::TokenService;

/// One route a plugin serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The method.
    pub method: Method,
    /// The path template: literal segments and `{name}` segments, e.g. `/api/jwt/refresh/{tokenId}`.
    pub path: &'static str,
    /// A name the plugin uses to tell its routes apart in [`Plugin::handle`].
    pub name: &'static str,
    /// A `GET` that only reads: the host answers a `HEAD` of its path with this route's
    /// header, without the body (RFC 9110 §9.3.2). A `GET` that acts (issues a token, logs
    /// out, completes a login) leaves it `false`: a `HEAD` of it is refused, never run.
    pub read_only: bool,
}

impl RouteSpec {
    /// A route (not [`RouteSpec::read_only`]).
    pub fn new(method: Method, path: &'static str, name: &'static str) -> Self {
        RouteSpec {
            method,
            path,
            name,
            read_only: false,
        }
    }

    /// The route, marked as a `GET` that only reads (see [`RouteSpec::read_only`]).
    pub fn reading(mut self) -> Self {
        self.read_only = self.method == Method::GET;
        self
    }
}

/// What the host gives a plugin for each request.
#[derive(Clone)]
pub struct PluginContext {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// Signing and verifying.
    pub tokens: Arc<dyn TokenService>,
    /// API-key authentication.
    pub api_keys: Arc<ApiKeyRing>,
    /// The current time.
    pub clock: Arc<dyn Clock>,
    /// Set `Secure` on cookies even when the request came over plain HTTP (e.g. behind a TLS
    /// terminator).
    pub secure_cookies: bool,
    /// The race window (ms) of one-time-use rotations: see
    /// `gatehouse_refresh::DEFAULT_RACE_WINDOW_MS`.
    pub race_window_ms: i64,
    /// This node's one-time-use rotations under way or unconfirmed, shared by every caller of
    /// the refresh rules in the process (the plugins and the proxy).
    pub rotations: Arc<RotationLedger>,
    /// Where CPU-heavy synchronous steps (applying a JSON Patch, …) run, a bounded number at
    /// once, off the threads that serve requests.
    pub cpu: CpuPool,
    /// Outbound HTTP (an identity provider's endpoints), with the host's limits.
    pub http: Arc<dyn HttpClient>,
    /// JWTs verified with the keys an issuer publishes (an OpenID Connect ID token).
    pub remote_keys: Arc<dyn RemoteKeys>,
}

/// An in-process extension serving part of the REST API.
#[async_trait]
pub trait Plugin: Send + Sync {
    /// The plugin's name, as written under `plugins:` in the configuration.
    fn name(&self) -> &'static str;

    /// Prepares what the plugin reads once (from the store, say) before it serves a request.
    /// The host calls it after building the plugin, at start and on each reload; an `Err`
    /// (what went wrong, no secret) fails the start or refuses the reload. Nothing by default.
    async fn start(&self) -> Result<(), String> {
        Ok(())
    }

    /// The routes it serves. Called once at start; the host refuses two plugins claiming the
    /// same method and path.
    fn routes(&self) -> Vec<RouteSpec>;

    /// Handles a request that matched `route`. The body was read within the configured limit
    /// and `request.path_params` holds the template's `{name}` values.
    ///
    /// Returns the response to send; an `Err` is rendered as FusionAuth's Errors JSON with the
    /// status of [`ApiError::status`].
    async fn handle(
        &self,
        route: &RouteSpec,
        request: PluginRequest,
        context: &PluginContext,
    ) -> Result<PluginResponse, ApiError>;
}

/// Reads a plugin's `plugins.<name>` section into its typed settings `T` (which should refuse
/// unknown keys): nothing (`null`) gives `T::default()`. An `Err` names the problem without
/// echoing the value (the host adds the path `plugins.<name>`).
pub fn parse_settings<T: DeserializeOwned + Default>(settings: &Value) -> Result<T, String> {
    if settings.is_null() {
        return Ok(T::default());
    }
    let Some(map) = settings.as_object() else {
        return Err("expected a mapping (or nothing)".into());
    };
    // A key written without a value (`key:`, or `${VAR:-}` left empty) is a mistake, not a
    // request for the default.
    if let Some((key, _)) = map.iter().find(|(_, value)| value.is_null()) {
        return Err(format!("`{key}` has no value"));
    }
    serde_path_to_error::deserialize(settings).map_err(|e| {
        let message = e.inner().to_string();
        if message.starts_with("unknown field") {
            // Names only keys, which the operator wrote: keep them.
            return message;
        }
        let message = crate::json::sanitized(&message);
        match e.path().to_string() {
            path if path == "." => message,
            path => format!("{path}: {message}"),
        }
    })
}

/// A plugin's routes as an enum, one variant per endpoint: the routes a plugin declares are
/// [`PluginRoute::specs`], and its `handle` matches [`PluginRoute::from_name`] exhaustively, so
/// the compiler keeps declared and handled routes the same.
pub trait PluginRoute: Copy + PartialEq + std::fmt::Debug + 'static {
    /// Every route, in the order the plugin declares them.
    const ALL: &'static [Self];

    /// The route's name, as given to [`RouteSpec::name`].
    fn name(self) -> &'static str;

    /// The route's method, path template and name.
    fn spec(self) -> RouteSpec;

    /// The route whose [`RouteSpec::name`] is `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.name() == name)
    }

    /// The declared routes.
    fn specs() -> Vec<RouteSpec> {
        Self::ALL.iter().map(|r| r.spec()).collect()
    }
}

/// For a plugin's tests: panics unless every route comes back from its name and no two routes
/// share a name, or a method and path.
pub fn check_route_table<R: PluginRoute>() {
    for (i, route) in R::ALL.iter().enumerate() {
        let spec = route.spec();
        assert_eq!(spec.name, route.name());
        assert_eq!(R::from_name(spec.name), Some(*route), "{}", spec.name);
        for other in R::ALL[i + 1..].iter().map(|r| r.spec()) {
            assert_ne!(spec.name, other.name);
            assert!(
                !(spec.method == other.method && spec.path == other.path),
                "{} {}",
                spec.method,
                spec.path
            );
        }
    }
    assert_eq!(R::from_name("no_such_route"), None);
}
