//! The plugin host: the registry of plugins by name (the one place plugins are wired in: their
//! typed settings, how each is built, the documents they validate for the configuration) and
//! the router that maps a method and path to a plugin route.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_plugin_api::{Plugin, RouteSpec};
use gatehouse_plugin_identity_provider::WorkerCommand;
use http::Method;
use serde_json::Value;

use crate::store::GatewayStore;

/// The name of the plugin that owns the file's `identityProviders:` and `lambdas:`.
pub const IDENTITY_PROVIDER: &str = gatehouse_plugin_identity_provider::NAME;

/// Validates and normalises an identity provider written in the file (`identityProviders:`);
/// the errors are (field path, message) pairs.
pub fn validate_provider_document(document: &Value) -> Result<Value, Vec<(String, String)>> {
    gatehouse_plugin_identity_provider::validate_config_provider(document)
}

/// Validates and normalises a lambda written in the file (`lambdas:`), compiling its body in a
/// one-off lambda worker with the default limits.
pub fn validate_lambda_document(document: &Value) -> Result<Value, Vec<(String, String)>> {
    let worker = lambda_worker();
    let limits = gatehouse_plugin_identity_provider::engine::Limits::default();
    gatehouse_plugin_identity_provider::validate_config_lambda(document, &|body| {
        gatehouse_plugin_identity_provider::sandbox::check_blocking(&worker, body, limits)
    })
}

/// How the identity-provider plugin starts a lambda worker: this executable with the hidden
/// `lambda-worker` subcommand (see [`crate::cli`]).
pub fn lambda_worker() -> WorkerCommand {
    let program = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(Into::into))
        .unwrap_or_else(|| "gatehouse".into());
    WorkerCommand::new(program, &["lambda-worker"])
}

/// A plugin's settings, read once from its `plugins.<name>` section into the plugin's own
/// typed form (which refuses unknown keys); the plugin is built from them once, at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSettings {
    /// `plugins.jwt`.
    Jwt(gatehouse_plugin_jwt::Settings),
    /// `plugins.identity-provider`.
    IdentityProvider(gatehouse_plugin_identity_provider::Settings),
}

impl PluginSettings {
    /// The settings of the plugin called `name`; the error names the problem.
    pub fn parse(name: &str, settings: &Value) -> Result<PluginSettings, String> {
        match name {
            gatehouse_plugin_jwt::NAME => {
                gatehouse_plugin_jwt::Settings::parse(settings).map(PluginSettings::Jwt)
            }
            gatehouse_plugin_identity_provider::NAME => {
                gatehouse_plugin_identity_provider::Settings::parse(settings)
                    .map(PluginSettings::IdentityProvider)
            }
            other => Err(format!(
                "no plugin called `{other}` (available: jwt, identity-provider)"
            )),
        }
    }

    /// The plugin's name under `plugins:`.
    pub fn name(&self) -> &'static str {
        match self {
            PluginSettings::Jwt(_) => gatehouse_plugin_jwt::NAME,
            PluginSettings::IdentityProvider(_) => gatehouse_plugin_identity_provider::NAME,
        }
    }

    /// The plugin, with the storage port it declares (when it has one) on `store`.
    pub fn build(&self, store: &Arc<dyn GatewayStore>) -> Arc<dyn Plugin> {
        match self {
            PluginSettings::Jwt(settings) => gatehouse_plugin_jwt::build(*settings),
            PluginSettings::IdentityProvider(settings) => {
                gatehouse_plugin_identity_provider::build(
                    settings.clone(),
                    store.clone(),
                    lambda_worker(),
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

fn parse_template(template: &str) -> Vec<Segment> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_string()),
                None => Segment::Literal(s.to_string()),
            },
        )
        .collect()
}

struct Entry {
    segments: Vec<Segment>,
    literals: usize,
    spec: RouteSpec,
    plugin: Arc<dyn Plugin>,
}

impl Entry {
    /// True when the route's template matches the segments of a path.
    fn matches(&self, parts: &[&str]) -> bool {
        self.segments.len() == parts.len()
            && self.segments.iter().zip(parts).all(|(s, p)| match s {
                Segment::Literal(l) => l == p,
                Segment::Param(_) => !p.is_empty(),
            })
    }
}

/// What the router found for a request.
pub enum RouteMatch<'a> {
    /// A plugin route, with the values of its `{name}` segments.
    Found {
        /// The plugin.
        plugin: &'a Arc<dyn Plugin>,
        /// The route.
        spec: &'a RouteSpec,
        /// Path parameter values.
        params: HashMap<String, String>,
    },
    /// A plugin serves this path, but not with this method.
    MethodNotAllowed,
    /// The path is under a plugin's API prefix (`/api/jwt/…`) but no route serves it: FusionAuth
    /// answers 404, and such a path is never proxied.
    UnknownApiPath,
    /// No plugin serves this path.
    None,
}

/// Maps requests to plugin routes; literal segments win over `{param}` segments.
#[derive(Default)]
pub struct PluginRouter {
    entries: Vec<Entry>,
    /// The first path segment of every template (`api`, `.well-known`): a request whose first
    /// segment is not among them is not a plugin request, decided without allocating.
    first_segments: Vec<String>,
    /// The first two segments of every `/api/…` template (`api/jwt`, `api/user`): the API
    /// prefixes the plugins own, under which an unknown path is a 404.
    api_prefixes: Vec<String>,
}

impl PluginRouter {
    /// A router over these plugins. Two routes with the same method and template are refused.
    pub fn new(plugins: &[Arc<dyn Plugin>]) -> Result<Self, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for plugin in plugins {
            for spec in plugin.routes() {
                if let Some(existing) = entries
                    .iter()
                    .find(|e| e.spec.method == spec.method && e.spec.path == spec.path)
                {
                    return Err(format!(
                        "plugins {} and {} both serve {} {}",
                        existing.plugin.name(),
                        plugin.name(),
                        spec.method,
                        spec.path
                    ));
                }
                let segments = parse_template(spec.path);
                let literals = segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count();
                entries.push(Entry {
                    segments,
                    literals,
                    spec,
                    plugin: plugin.clone(),
                });
            }
        }
        // Most literal segments first, so `/link` beats `/{id}`.
        entries.sort_by_key(|e| std::cmp::Reverse(e.literals));
        let mut first_segments: Vec<String> = entries
            .iter()
            .filter_map(|e| match e.segments.first() {
                Some(Segment::Literal(l)) => Some(l.clone()),
                _ => None,
            })
            .collect();
        first_segments.sort();
        first_segments.dedup();
        let mut api_prefixes: Vec<String> = entries
            .iter()
            .filter_map(|e| match e.segments.get(..2) {
                Some([Segment::Literal(api), Segment::Literal(second)]) if api == "api" => {
                    Some(format!("api/{second}"))
                }
                _ => None,
            })
            .collect();
        api_prefixes.sort();
        api_prefixes.dedup();
        Ok(PluginRouter {
            entries,
            first_segments,
            api_prefixes,
        })
    }

    /// Finds the route for `method` and `path`. A `HEAD` finds the `GET` route of its path
    /// when that route only reads ([`RouteSpec::read_only`]; RFC 9110 §9.3.2: the `GET`
    /// answer's header without its body), and is not allowed on any other.
    pub fn find(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        if *method != Method::HEAD {
            return self.find_route(method, path);
        }
        match self.find_route(&Method::GET, path) {
            RouteMatch::Found { spec, .. } if !spec.read_only => RouteMatch::MethodNotAllowed,
            found => found,
        }
    }

    /// The methods the routes of `path` are served with, as an `Allow` header lists them
    /// (RFC 9110 §10.2.1): `HEAD` beside a `GET` that only reads. Empty when no route has
    /// this path.
    pub fn allowed_methods(&self, path: &str) -> String {
        let Some(parts) = self.path_parts(path) else {
            return String::new();
        };
        let mut allowed: Vec<&str> = Vec::new();
        for entry in self.entries.iter().filter(|e| e.matches(&parts)) {
            allowed.push(entry.spec.method.as_str());
        }
        if matches!(self.find(&Method::HEAD, path), RouteMatch::Found { .. }) {
            allowed.push("HEAD");
        }
        const ORDER: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
        allowed.sort_by_key(|m| ORDER.iter().position(|o| o == m).unwrap_or(ORDER.len()));
        allowed.dedup();
        allowed.join(", ")
    }

    /// The segments of `path` (`/api/jwt/validate/` is `/api/jwt/validate`); `None` when no
    /// plugin's path starts with its first segment.
    fn path_parts<'p>(&self, path: &'p str) -> Option<Vec<&'p str>> {
        let trimmed = path.trim_start_matches('/');
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let first = trimmed.split('/').next().unwrap_or("");
        self.first_segments
            .iter()
            .any(|s| s.eq_ignore_ascii_case(first))
            .then(|| trimmed.split('/').collect())
    }

    /// Finds the route for `method` and `path`: a literal segment wins over a parameter.
    fn find_route(&self, method: &Method, path: &str) -> RouteMatch<'_> {
        let Some(parts) = self.path_parts(path) else {
            return RouteMatch::None;
        };
        let mut path_matched = false;
        for entry in &self.entries {
            if !entry.matches(&parts) {
                continue;
            }
            if entry.spec.method != method {
                path_matched = true;
                continue;
            }
            let params = entry
                .segments
                .iter()
                .zip(&parts)
                .filter_map(|(s, p)| match s {
                    Segment::Param(name) => Some((name.clone(), (*p).to_string())),
                    Segment::Literal(_) => None,
                })
                .collect();
            return RouteMatch::Found {
                plugin: &entry.plugin,
                spec: &entry.spec,
                params,
            };
        }
        if path_matched {
            RouteMatch::MethodNotAllowed
        } else if parts.len() >= 2
            && parts[0].eq_ignore_ascii_case("api")
            && self
                .api_prefixes
                .iter()
                .any(|p| p[4..].eq_ignore_ascii_case(parts[1]))
        {
            RouteMatch::UnknownApiPath
        } else {
            RouteMatch::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use gatehouse_plugin_api::{ApiError, PluginContext, PluginRequest, PluginResponse};

    struct Fake;

    #[async_trait]
    impl Plugin for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn routes(&self) -> Vec<RouteSpec> {
            vec![
                RouteSpec::new(Method::GET, "/api/x/{id}", "by-id").reading(),
                RouteSpec::new(Method::GET, "/api/x/link", "link"),
                RouteSpec::new(Method::DELETE, "/api/x/{id}", "delete"),
            ]
        }
        async fn handle(
            &self,
            _route: &RouteSpec,
            _request: PluginRequest,
            _context: &PluginContext,
        ) -> Result<PluginResponse, ApiError> {
            Ok(PluginResponse::empty(200))
        }
    }

    #[test]
    fn literals_win_and_params_are_extracted() {
        let plugins: Vec<Arc<dyn Plugin>> = vec![Arc::new(Fake)];
        let router = PluginRouter::new(&plugins).expect("router");
        match router.find(&Method::GET, "/api/x/link") {
            RouteMatch::Found { spec, .. } => assert_eq!(spec.name, "link"),
            _ => panic!("expected a match"),
        }
        match router.find(&Method::GET, "/api/x/42") {
            RouteMatch::Found { spec, params, .. } => {
                assert_eq!(spec.name, "by-id");
                assert_eq!(params["id"], "42");
            }
            _ => panic!("expected a match"),
        }
        assert!(matches!(
            router.find(&Method::POST, "/api/x/42"),
            RouteMatch::MethodNotAllowed
        ));
        // Under a plugin's API prefix, an unknown path is the plugin's 404, never proxied.
        for path in [
            "/api/x",
            "/api/x/",
            "/api/x/nope/deeper",
            "/api/x/42/more",
            "/API/x/link",
            "/api/X/42",
        ] {
            assert!(
                matches!(router.find(&Method::GET, path), RouteMatch::UnknownApiPath),
                "{path}"
            );
        }
        assert!(matches!(
            router.find(&Method::GET, "/api/y/1"),
            RouteMatch::None
        ));
        assert!(matches!(
            router.find(&Method::GET, "/api"),
            RouteMatch::None
        ));
        assert!(matches!(
            router.find(&Method::GET, "/api/x/link/"),
            RouteMatch::Found { .. }
        ));
        assert!(matches!(
            router.find(&Method::GET, "/other/x"),
            RouteMatch::None
        ));
    }

    /// A `HEAD` is served by the `GET` route of its path when that route only reads, and
    /// refused where there is none or it acts.
    #[test]
    fn head_finds_the_get_route() {
        let plugins: Vec<Arc<dyn Plugin>> = vec![Arc::new(Fake)];
        let router = PluginRouter::new(&plugins).expect("router");
        match router.find(&Method::HEAD, "/api/x/42") {
            RouteMatch::Found { spec, params, .. } => {
                assert_eq!(spec.name, "by-id");
                assert_eq!(spec.method, Method::GET);
                assert_eq!(params["id"], "42");
            }
            _ => panic!("expected the GET route"),
        }
        assert!(matches!(
            router.find(&Method::HEAD, "/api/x/nope/deeper"),
            RouteMatch::UnknownApiPath
        ));
        // `link` is a GET that acts: a HEAD of it is refused, never run.
        assert!(matches!(
            router.find(&Method::HEAD, "/api/x/link"),
            RouteMatch::MethodNotAllowed
        ));
        assert_eq!(router.allowed_methods("/api/x/42"), "GET, HEAD, DELETE");
        assert_eq!(router.allowed_methods("/api/x/link/"), "GET, DELETE");
        assert_eq!(router.allowed_methods("/api/y/1"), "");
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let plugins: Vec<Arc<dyn Plugin>> = vec![Arc::new(Fake), Arc::new(Fake)];
        assert!(PluginRouter::new(&plugins).is_err());
    }

    #[test]
    fn unknown_plugins_are_named() {
        let err = PluginSettings::parse("nope", &Value::Null).expect_err("error");
        assert!(err.contains("nope"));
    }
}
