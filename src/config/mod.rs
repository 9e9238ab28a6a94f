//! Configuration: the file as written ([`raw`]), `${VAR}` substitution ([`env`]), and the
//! validated [`Config`] the rest of the gateway uses.
//!
//! [`load`] reads a file and returns either a `Config` or *every* problem found, each naming its
//! path (`routes[2].auth.applicationId: no application with this id`). Messages never contain
//! secrets: values substituted from the environment are scrubbed, and parse errors are stripped
//! of the literal values they would otherwise echo.

pub mod env;
mod issuers;
mod listen;
mod locate;
pub mod login;
pub mod raw;
mod read;
mod routes;
mod sections;
pub mod upgrade;
mod wording;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Declared keys: defined beside the key ring that reads them (`config` uses `keys`, never
/// the other way).
pub use crate::auth::issuers::config::{IssuerSpec, JwksSource};
pub use crate::auth::issuers::policy::TokenPolicy;
pub use crate::auth::keys::{KeySource, KeySpec};
pub use crate::observe::logging::LogFormat;
use crate::request::canonical::PathOptions;
use gatehouse_plugin_api::model::{ApiKey, Application, Tenant};
use http::HeaderName;
use uuid::Uuid;

pub use listen::ListenProtocols;
use raw::RawConfig;
pub use routes::DECISION_ANSWER_HEADERS;
use sections::Problems;

/// The API key the shipped `config.yaml` falls back to; the gateway warns loudly when it is used.
pub const DEMO_API_KEY: &str = "gatehouse-demo-api-key-change-me";

/// One problem in the configuration: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field path, e.g. `routes[2].auth.applicationId`, or `line 4` for text-level errors.
    pub path: String,
    /// What is wrong; never contains a secret.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// All problems found in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// Where state is kept is the store's own type (config depends on store, never the reverse).
pub use crate::store::StoreLocation;

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`.
    pub address: String,
    /// Connect with TLS.
    pub tls: bool,
    /// Speak HTTP/2 to it: with prior knowledge (`h2c://`), or by ALPN over TLS (`h2://`).
    pub http2: bool,
    /// Host name for SNI and certificate checks.
    pub sni: String,
}

/// A route's authentication policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    /// Read and validate tokens at all (`false`: a public passthrough).
    pub enabled: bool,
    /// Refuse requests without a valid token.
    pub required: bool,
    /// Required `applicationId`.
    pub application_id: Option<Uuid>,
    /// The tenant of that application.
    pub application_tenant_id: Option<Uuid>,
    /// Any of these roles is required (empty: no role check).
    pub roles: Vec<String>,
    /// Browsers get a 302 here instead of a 401.
    pub login_url: Option<String>,
    /// `login: true`: browser navigations without credentials get a 302 to this path
    /// (`{login.basePath}/login/{applicationId}`) with `?redirect_uri=` the request's path.
    pub login_path: Option<String>,
    /// Transparent refresh from the `refresh_token` cookie.
    pub refresh: bool,
    /// Refresh a valid token this many seconds before its expiry (0: only once expired).
    pub refresh_before_expiry_seconds: i64,
    /// The issuers, audiences and exact claims the token must have (any issuer's token).
    pub policy: TokenPolicy,
    /// CORS preflights pass without a token, verifying and forwarding no credential (opt-in:
    /// browsers send a preflight without credentials, so a protected route refuses it).
    pub allow_preflight: bool,
}

/// A header the gateway sets upstream from a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeader {
    /// The header name.
    pub name: HeaderName,
    /// The name as written in the configuration (its case is kept on the wire).
    pub written: bytes::Bytes,
    /// The claim whose value it carries.
    pub claim: String,
}

/// A proxied route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Index in the file, for messages.
    pub index: usize,
    /// Path prefix (matches on segment boundaries).
    pub path: String,
    /// Host to match, lower case, without port.
    pub host: Option<String>,
    /// Upstream servers (round-robin).
    pub upstreams: Vec<Upstream>,
    /// Policy.
    pub auth: RouteAuth,
    /// Header (lower-case name, and the name as written, for the wire) → claim.
    pub identity_headers: Vec<IdentityHeader>,
    /// `path` matches case-sensitively (the default).
    pub case_sensitive: bool,
}

/// Forward-auth mode (`forwardAuth:`): where decisions are asked for, and by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardAuth {
    /// The decision endpoint's canonical path (`/_gatehouse/auth`): the request to judge comes
    /// in its headers; under `{path}/` it is the rest of the path (Envoy's `path_prefix`).
    pub path: String,
    /// The peers allowed to ask (never read from `X-Forwarded-For`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxy and API listener.
    pub listen: SocketAddr,
    /// TLS certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The HTTP versions the listener speaks besides HTTP/1.1 (`listenOptions`).
    pub protocols: ListenProtocols,
    /// Worker threads.
    pub threads: usize,
    /// The REST API's own threads and bounds (`api:`).
    pub api: crate::api::executor::ApiSettings,
    /// The store.
    pub store: StoreLocation,
    /// API keys.
    pub api_keys: Vec<ApiKey>,
    /// Keys.
    pub keys: Vec<KeySpec>,
    /// Tenants, with JWT defaults filled in.
    pub tenants: Vec<Tenant>,
    /// Applications.
    pub applications: Vec<Application>,
    /// Identity provider documents, validated and normalised.
    pub identity_providers: Vec<serde_json::Value>,
    /// Lambda documents, validated and normalised.
    pub lambdas: Vec<serde_json::Value>,
    /// Enabled plugins' settings, each read once into its plugin's type, in name order.
    pub plugins: Vec<crate::api::plugins::PluginSettings>,
    /// Trusted issuers whose tokens the edge accepts, checked with their JWKS.
    pub issuers: Vec<IssuerSpec>,
    /// Routes, longest prefix first.
    pub routes: Vec<Route>,
    /// Largest body.
    pub max_body_bytes: usize,
    /// Largest header block.
    pub max_header_bytes: usize,
    /// `exp`/`nbf` leeway.
    pub leeway_seconds: u64,
    /// Verified-token cache size.
    pub token_cache_capacity: u64,
    /// The most memory (bytes, estimated) the verified-token cache holds.
    pub token_cache_max_bytes: u64,
    /// Seconds an idle keep-alive client connection stays open.
    pub idle_timeout_seconds: u64,
    /// Most client connections open at once on the proxy listener (the next waits in the
    /// kernel's backlog until one closes).
    pub max_connections: usize,
    /// How request paths are put into their canonical form.
    pub path_options: PathOptions,
    /// The admin listener (`/metrics`, `/health`), when configured.
    pub admin_listen: Option<SocketAddr>,
    /// The race window (ms) of one-time-use rotations: 0 (none) unless configured.
    pub race_window_ms: i64,
    /// Always mark cookies `Secure`.
    pub secure_cookies: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// One access log line per request (target `gatehouse::access`).
    pub access_log: bool,
    /// Echo service listener.
    pub demo_upstream: Option<SocketAddr>,
    /// Graceful shutdown timeout.
    pub shutdown_timeout_seconds: u64,
    /// The Unix socket a binary upgrade hands the listeners over on (see
    /// [`crate::server::upgrade`]).
    pub upgrade_socket: PathBuf,
    /// True when an API key is the shipped demo key.
    pub uses_demo_api_key: bool,
    /// Proxies whose `X-Forwarded-For` hops are believed (see [`crate::request::client`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Forward-auth mode, when configured.
    pub forward_auth: Option<ForwardAuth>,
}

/// Warnings about tenants' issuers that are not absolute `http(s)` URLs: the gateway accepts
/// any issuer (FusionAuth does), but OpenID Connect clients refuse a discovery document whose
/// `issuer` is not a URL. Each names the tenant by its position in the file.
pub fn issuer_warnings(tenants: &[Tenant]) -> Vec<String> {
    tenants
        .iter()
        .enumerate()
        .filter(|(_, tenant)| !is_url_issuer(&tenant.issuer))
        .map(|(index, _)| {
            format!(
                "tenants[{index}].issuer: is not an http(s) URL; OpenID Connect clients reject a discovery document whose issuer is not one (use e.g. https://auth.example.com)"
            )
        })
        .collect()
}

/// Warnings about `login: true` routes whose application has no enabled `OpenIDConnect`
/// provider declared in the file. Not errors: the provider may be created through the API,
/// which `gatehouse check` cannot see (it never reads the store); the gateway checks the store
/// at start and on reload and warns then.
pub fn login_warnings(config: &Config) -> Vec<String> {
    login::routes_without_provider(&config.routes, &config.identity_providers)
        .into_iter()
        .map(|(path, app)| {
            format!(
                "{path}: no enabled OpenIDConnect identity provider in identityProviders is enabled for application {app}; providers created through the API are not seen by check (the gateway warns at start if the store has none either, and browsers then get a 400 at the login)"
            )
        })
        .collect()
}

/// Warnings (`gatehouse check`) about the store: a PostgreSQL URL without a password is
/// refused at start by a server that asks for one (it may let the user in without: `check`
/// never connects).
pub fn store_warnings(config: &Config) -> Vec<String> {
    let StoreLocation::Postgres(url) = &config.store else {
        return Vec::new();
    };
    match crate::store::postgres::parse_url(url) {
        Ok(settings) if settings.get_password().is_none() => vec![
            "store: the URL has no password: the gateway starts only if the server lets this user in without one".to_string(),
        ],
        Ok(_) | Err(_) => Vec::new(),
    }
}

/// Warnings (`gatehouse check`) for pairs of routes on one host whose paths differ only by a
/// trailing `/` (`/admin` and `/admin/`) under different policies: the `/`-ended one takes every
/// path under the other but its bare path, so the other's policy guards that one path alone —
/// most often not what was meant.
pub fn route_warnings(routes: &[Route]) -> Vec<String> {
    let mut warnings = Vec::new();
    for bare in routes {
        let Some(under) = routes
            .iter()
            .find(|r| r.host == bare.host && r.path.strip_suffix('/') == Some(bare.path.as_str()))
        else {
            continue;
        };
        if under.auth != bare.auth {
            warnings.push(format!(
                "routes[{}].path: `{}` takes every path under routes[{}]'s `{}`, whose policy then guards `{}` alone; give them the same auth, or one route",
                under.index, under.path, bare.index, bare.path, bare.path
            ));
        }
    }
    warnings
}

/// True for an absolute `https://host…` or `http://host…` URL.
fn is_url_issuer(issuer: &str) -> bool {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        !host.is_empty() && !issuer.contains(char::is_whitespace)
    })
}

/// The line and column where `path` (e.g. `routes[1].upstream`, or a prefix of it that is
/// written) is found in the configuration `text`; `None` when nothing of it is.
pub fn position(text: &str, path: &str) -> Option<(usize, usize)> {
    read::position_of(&locate::locations(text), path)
}

/// Reads, substitutes, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        }])
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    parse(&text, &base_dir, |name| std::env::var(name).ok())
}

/// The byte order mark some editors write at the start of a UTF-8 file; YAML allows it there.
const BOM: char = '\u{FEFF}';

/// Parses configuration text; relative file paths are resolved against `base_dir`.
pub fn parse(
    text: &str,
    base_dir: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let substituted = env::substitute(text, lookup).map_err(|messages| {
        ConfigErrors(
            messages
                .into_iter()
                .map(|message| ConfigError {
                    path: String::new(),
                    message,
                })
                .collect(),
        )
    })?;
    let scrub = |message: String| -> String {
        let mut message = message;
        for value in &substituted.values {
            message = message.replace(value.as_str(), "***");
        }
        message
    };
    // Every problem in one run: the file's shape first (unknown keys, wrong types), then
    // what the rest of it means.
    // Positions are those of the file as written (a substituted value may span lines), or,
    // when `${…}` makes the text as written unreadable (inside a flow mapping), those of the
    // substituted text.
    let mut positions = locate::locations(text);
    if positions.is_empty() {
        positions = locate::locations(&substituted.text);
    }
    let (raw, mut problems) = read::read_all::<RawConfig>(&substituted.text, &positions);
    let config = match raw.map(|raw| validate(raw, base_dir)) {
        Some(Ok(config)) if problems.is_empty() => return Ok(config),
        Some(Ok(_)) | None => None,
        Some(Err(errors)) => Some(errors),
    };
    // A value reported for its shape stood in for by a placeholder (see [`read`]) is not
    // reported again for what the placeholder means.
    let shape_paths: Vec<String> = problems.iter().map(|p| p.path.clone()).collect();
    let reported = |path: &str| {
        shape_paths.iter().any(|at| {
            !at.is_empty()
                && path.strip_prefix(at.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
                })
        })
    };
    let config = config.map(|errors| {
        errors
            .into_iter()
            .filter(|e| !reported(&e.path))
            .collect::<Vec<_>>()
    });
    problems.extend(config.into_iter().flatten().map(|mut problem| {
        if let Some((line, column)) = read::position_of(&positions, &problem.path) {
            problem.message = format!("{} (line {line}, column {column})", problem.message);
        }
        problem
    }));
    Err(ConfigErrors(
        problems
            .into_iter()
            // Scrubbed before keys are cut: a cut substituted value would no longer match.
            .map(|e| ConfigError {
                path: wording::shown_path(&scrub(e.path)),
                message: wording::shown_unknown_key(&scrub(e.message)),
            })
            .collect(),
    ))
}

/// Removes the literal value from serde's "invalid type/value" messages, which would echo
/// whatever was written (possibly a secret), keeping the path, the kind and the position.
pub(crate) fn redact_serde_message(message: &str) -> String {
    // `unknown variant `VALUE`, expected one of …`: the value written is left out.
    if let Some(start) = message.find("unknown variant `") {
        let after = &message[start + "unknown variant `".len()..];
        if let Some(end) = after.find("`, expected") {
            let rest = &after[end + 1..];
            return format!("{}unknown variant{rest}", &message[..start]);
        }
    }
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(start) = message.find(marker) {
            let after = &message[start + marker.len()..];
            if let Some(end) = after.find(", expected") {
                let kind = after[..end].split_whitespace().next().unwrap_or("value");
                return format!("{}{}{}{}", &message[..start], marker, kind, &after[end..]);
            }
        }
    }
    message.to_string()
}

/// The largest `limits.maxBodyBytes`: a body is held in memory up to this size.
const MAX_BODY_BYTES: usize = 1 << 30;

/// The largest `limits.maxHeaderBytes`: the proxy engine reads no header block larger.
const MAX_HEADER_BYTES: usize = 1_048_575;

/// The largest `shutdownTimeoutSeconds` (an hour).
const MAX_SHUTDOWN_SECONDS: u64 = 3600;

/// The `limits` section: the largest body and header block (bytes) and the idle keep-alive
/// timeout (seconds), each within its range or a problem at its path.
fn request_limits(p: &mut Problems, limits: &raw::RawLimits) -> (usize, usize, u64) {
    let max_body_bytes = sections::bounded(
        p,
        "limits.maxBodyBytes",
        limits.max_body_bytes,
        1024 * 1024,
        (1, MAX_BODY_BYTES),
        "must be between 1 and 1073741824 (1 GiB)",
    );
    let max_header_bytes = sections::bounded(
        p,
        "limits.maxHeaderBytes",
        limits.max_header_bytes,
        32 * 1024,
        (1024, MAX_HEADER_BYTES),
        "must be between 1024 and 1048575 (the proxy engine reads no larger header block)",
    );
    let idle_timeout_seconds = sections::bounded(
        p,
        "limits.idleTimeoutSeconds",
        limits.idle_timeout_seconds,
        60,
        (1, 3600),
        "must be between 1 and 3600",
    );
    (max_body_bytes, max_header_bytes, idle_timeout_seconds)
}

/// The verified-token cache's bounds (`validation`): `cacheCapacity` entries (default 100,000,
/// 0 turns the cache off, at most 100,000,000) and `cacheMaxBytes` (default 64 MiB, from 1 MiB
/// to 1 TiB), each within its range or a problem at its path.
fn token_cache(p: &mut Problems, validation: &raw::RawValidation) -> (u64, u64) {
    let capacity = sections::bounded(
        p,
        "validation.cacheCapacity",
        validation.cache_capacity,
        100_000,
        (0, 100_000_000),
        "must be at most 100000000",
    );
    let max_bytes = sections::bounded(
        p,
        "validation.cacheMaxBytes",
        validation.cache_max_bytes,
        64 * 1024 * 1024,
        (1024 * 1024, 1 << 40),
        "must be between 1048576 (1 MiB) and 1099511627776 (1 TiB)",
    );
    (capacity, max_bytes)
}

/// `limits.maxConnections`: the most client connections the proxy listener keeps open at once
/// (default 10,000, about 0.6 GB of idle connections at most), within its range or a problem at
/// its path.
fn connection_limit(p: &mut Problems, limits: &raw::RawLimits) -> usize {
    sections::bounded(
        p,
        "limits.maxConnections",
        limits.max_connections,
        10_000,
        (1, 1_000_000),
        "must be between 1 and 1000000",
    )
}

/// The `forwardAuth:` section and the routes, which may name the trusted `issuers` and the
/// `tenants`' own issuers, and may leave out `upstream` only when forward-auth is on.
fn routing(
    p: &mut Problems,
    raw: &RawConfig,
    path_options: PathOptions,
    issuers: &[IssuerSpec],
    tenants: &[Tenant],
) -> (Option<ForwardAuth>, Vec<Route>) {
    let known = routes::KnownIssuers {
        remote: issuers.iter().map(|i| i.issuer.clone()).collect(),
        own: tenants.iter().map(|t| t.issuer.clone()).collect(),
    };
    let forward_auth = raw
        .forward_auth
        .as_ref()
        .map(|fa| routes::forward_auth(p, fa, path_options));
    let routes = routes::routes(
        p,
        &raw.routes,
        &raw.applications,
        path_options,
        &known,
        forward_auth.as_ref().map(|fa| fa.path.as_str()),
    );
    (forward_auth, routes)
}

/// Turns the file as written into a validated [`Config`], or every problem found: a driver
/// over the section validators of [`sections`] and [`routes`].
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut p = Problems::default();
    let listen = sections::listen_address(&mut p, &raw.listen);
    let tls = sections::tls_files(&mut p, &raw, base_dir);
    let protocols = listen::listen_protocols(&mut p, &raw.listen_options, tls.is_some());
    let threads = sections::thread_count(&mut p, raw.threads);
    let api = sections::api_settings(&mut p, &raw.api, threads);
    let store = sections::store_location(&mut p, raw.store.as_deref(), base_dir);
    let keys = sections::keys(&mut p, &raw.keys, base_dir);
    let signing = sections::signing_keys(&keys);
    let tenants = sections::tenants(&mut p, &raw.tenants, &signing);
    let applications = sections::applications(&mut p, &raw.applications, &tenants, &signing.0);
    let (api_keys, uses_demo_api_key) = sections::api_keys(&mut p, &raw.api_keys, &tenants);
    let (identity_providers, lambdas) = sections::identity_documents(&mut p, &raw);
    let mut plugins = sections::plugins(&mut p, &raw.plugins);
    let leeway_seconds = sections::bounded(
        &mut p,
        "validation.leewaySeconds",
        raw.validation.leeway_seconds,
        5,
        (0, 300),
        "must be at most 300",
    );
    let issuers = issuers::issuers(&mut p, &raw.issuers, &tenants, leeway_seconds, base_dir);
    let path_options = routes::path_options(&raw.paths);
    let (forward_auth, mut routes) = routing(&mut p, &raw, path_options, &issuers, &tenants);
    login::login(
        &mut p,
        raw.login.as_ref(),
        &raw.routes,
        &mut routes,
        &mut plugins,
    );
    let (max_body_bytes, max_header_bytes, idle_timeout_seconds) =
        request_limits(&mut p, &raw.limits);
    let max_connections = connection_limit(&mut p, &raw.limits);
    let (token_cache_capacity, token_cache_max_bytes) = token_cache(&mut p, &raw.validation);
    let (admin_listen, demo_upstream) = sections::side_listeners(&mut p, &raw, listen);
    let race_window_seconds = sections::bounded(
        &mut p,
        "rotation.raceWindowSeconds",
        raw.rotation.race_window_seconds,
        0,
        (0, 60),
        "must be at most 60",
    );
    let log_format = sections::log_format(&mut p, raw.log.format.as_deref());
    let log_level = sections::log_level(&mut p, raw.log.level.as_deref());
    let shutdown_timeout_seconds = sections::bounded(
        &mut p,
        "shutdownTimeoutSeconds",
        raw.shutdown_timeout_seconds,
        10,
        (0, MAX_SHUTDOWN_SECONDS),
        "must be at most 3600",
    );
    let trusted_proxies = sections::trusted_proxies(&mut p, "trustedProxies", &raw.trusted_proxies);
    let upgrade_socket =
        upgrade::upgrade_socket(&mut p, raw.upgrade_socket.as_deref(), &store, base_dir);
    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(Config {
        listen,
        tls,
        protocols,
        threads,
        api,
        store,
        api_keys,
        keys,
        tenants,
        applications,
        identity_providers,
        lambdas,
        plugins,
        issuers,
        routes,
        max_body_bytes,
        max_header_bytes,
        leeway_seconds,
        token_cache_capacity,
        token_cache_max_bytes,
        idle_timeout_seconds,
        max_connections,
        path_options,
        admin_listen,
        race_window_ms: race_window_seconds.min(60) as i64 * 1000,
        secure_cookies: raw.cookies.secure || reached_over_https(raw.login.as_ref()),
        log_format,
        log_level,
        access_log: raw.log.access.unwrap_or(true),
        demo_upstream,
        shutdown_timeout_seconds,
        upgrade_socket,
        uses_demo_api_key,
        trusted_proxies,
        forward_auth,
    })
}

/// True when `login.publicOrigin` is an `https://` origin: browsers reach the gateway over TLS
/// (terminated in front of it), so its cookies are `Secure` as with `cookies.secure` — else a
/// browser would send the refresh token over any plain-HTTP request to the host an attacker
/// can provoke.
fn reached_over_https(login: Option<&login::RawLogin>) -> bool {
    login
        .and_then(|l| l.public_origin.as_deref())
        .and_then(|origin| origin.trim().get(..8))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

#[cfg(test)]
mod tests;
