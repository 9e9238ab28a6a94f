//! Configuration: the file as written ([`raw`]), `${VAR}` substitution ([`env`]), and the
//! validated [`Config`] the rest of the gateway uses.
//!
//! [`load`] reads a file and returns either a `Config` or *every* problem found, each naming its
//! path (`routes[2].auth.applicationId: no application with this id`). Messages never contain
//! secrets: values substituted from the environment are scrubbed, and parse errors are stripped
//! of the literal values they would otherwise echo.

pub mod env;
pub mod raw;
mod read;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::keys::KeyAlgorithm;
/// Declared keys: defined beside the key ring that reads them (`config` uses `keys`, never
/// the other way).
pub use crate::keys::{KeySource, KeySpec};
use crate::request::canonical::{canonical_path, PathOptions};
use gatehouse_plugin_api::model::{
    ApiKey, Application, JwtConfiguration, RefreshTokenExpirationPolicy, RefreshTokenUsagePolicy,
    Tenant,
};
use http::HeaderName;
use uuid::Uuid;

use crate::keys;
use raw::RawConfig;

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

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `host:port`.
    pub address: String,
    /// Connect with TLS.
    pub tls: bool,
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
    /// Transparent refresh from the `refresh_token` cookie.
    pub refresh: bool,
    /// Refresh a valid token this many seconds before its expiry (0: only once expired).
    pub refresh_before_expiry_seconds: i64,
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

/// Logging output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxy and API listener.
    pub listen: SocketAddr,
    /// TLS certificate and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Worker threads.
    pub threads: usize,
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
    /// Enabled plugins with their settings, in name order.
    pub plugins: Vec<(String, serde_json::Value)>,
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
    /// How request paths are put into their canonical form.
    pub path_options: PathOptions,
    /// The admin listener (`/metrics`, `/health`), when configured.
    pub admin_listen: Option<SocketAddr>,
    /// The race window (ms) of one-time-use rotations.
    pub race_window_ms: i64,
    /// Always mark cookies `Secure`.
    pub secure_cookies: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_level: String,
    /// Echo service listener.
    pub demo_upstream: Option<SocketAddr>,
    /// Graceful shutdown timeout.
    pub shutdown_timeout_seconds: u64,
    /// True when an API key is the shipped demo key.
    pub uses_demo_api_key: bool,
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

/// Parses configuration text; relative file paths are resolved against `base_dir`.
pub fn parse(
    text: &str,
    base_dir: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
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
    let (raw, mut problems) = read::read_all::<RawConfig>(&substituted.text);
    let config = match raw.map(|raw| validate(raw, base_dir)) {
        Some(Ok(config)) if problems.is_empty() => return Ok(config),
        Some(Ok(_)) | None => None,
        Some(Err(errors)) => Some(errors),
    };
    problems.extend(config.into_iter().flatten());
    Err(ConfigErrors(
        problems
            .into_iter()
            .map(|e| ConfigError {
                path: e.path,
                message: scrub(e.message),
            })
            .collect(),
    ))
}

/// Removes the literal value from serde's "invalid type/value" messages, which would echo
/// whatever was written (possibly a secret), keeping the path, the kind and the position.
pub(crate) fn redact_serde_message(message: &str) -> String {
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

/// Collects problems with their paths.
#[derive(Default)]
struct Problems(Vec<ConfigError>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// Minimum HMAC secret length in bytes: the hash output size (RFC 7518 §3.2).
fn hmac_min_len(algorithm: KeyAlgorithm) -> usize {
    match algorithm {
        KeyAlgorithm::HS384 => 48,
        KeyAlgorithm::HS512 => 64,
        _ => 32,
    }
}

fn read_file(base_dir: &Path, file: &str) -> Result<String, String> {
    let path = base_dir.join(file);
    std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Parses `http://host[:port]` or `https://host[:port]`.
fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must be an http:// or https:// URL")?;
    let tls = match scheme {
        "http" => false,
        "https" => true,
        _ => return Err(format!("scheme `{scheme}` is not http or https")),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('/') || authority.contains('?') {
        return Err("must not have a path (routes forward the request path as is)".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("port `{p}` is not a number"))?;
            (h.to_string(), port)
        }
        _ => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    if host.is_empty() {
        return Err("has no host".into());
    }
    let sni = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(Upstream {
        address: format!("{host}:{port}"),
        tls,
        sni,
    })
}

/// Headers a route may not set from claims: they carry credentials or control the connection.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
];

/// Turns the file as written into a validated [`Config`], or every problem found.
pub fn validate(raw: RawConfig, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut p = Problems::default();

    let listen = raw.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.add("listen", "must be an address such as 127.0.0.1:9011");
        SocketAddr::from(([127, 0, 0, 1], 9011))
    });

    let tls = raw.tls.as_ref().map(|t| {
        let cert = base_dir.join(&t.certificate_file);
        let key = base_dir.join(&t.private_key_file);
        if !cert.is_file() {
            p.add(
                "tls.certificateFile",
                format!("no file at {}", cert.display()),
            );
        }
        if !key.is_file() {
            p.add(
                "tls.privateKeyFile",
                format!("no file at {}", key.display()),
            );
        }
        (cert, key)
    });

    let threads = raw.threads.unwrap_or(2);
    if threads == 0 || threads > 1024 {
        p.add("threads", "must be between 1 and 1024");
    }

    let store_url = raw
        .store
        .clone()
        .unwrap_or_else(|| "sqlite://data/gatehouse.db".into());
    let store = if let Some(path) = store_url.strip_prefix("sqlite://") {
        if path.is_empty() {
            p.add(
                "store",
                "sqlite:// needs a file path, e.g. sqlite://data/gatehouse.db",
            );
        }
        let path = PathBuf::from(path);
        StoreLocation::Sqlite(if path.is_absolute() {
            path
        } else {
            base_dir.join(path)
        })
    } else if store_url.starts_with("postgres://") || store_url.starts_with("postgresql://") {
        StoreLocation::Postgres(store_url.clone())
    } else {
        p.add("store", "must start with sqlite:// or postgres://");
        StoreLocation::Sqlite(PathBuf::from("data/gatehouse.db"))
    };

    // --- keys ---
    let mut keys = Vec::new();
    let mut key_ids = HashSet::new();
    for (i, k) in raw.keys.iter().enumerate() {
        let path = format!("keys[{i}]");
        if !key_ids.insert(k.id) {
            p.add(format!("{path}.id"), "another key has this id");
        }
        let Some(algorithm) = KeyAlgorithm::from_name(&k.algorithm) else {
            let names: Vec<&str> = KeyAlgorithm::ALL.iter().map(|a| a.name()).collect();
            p.add(
                format!("{path}.algorithm"),
                format!("must be one of {}", names.join(" ")),
            );
            continue;
        };
        let hmac = algorithm.is_hmac();
        let mut private = k.private_key.clone();
        let mut public = k.public_key.clone();
        if k.private_key.is_some() && k.private_key_file.is_some() {
            p.add(
                format!("{path}.privateKey"),
                "give privateKey or privateKeyFile, not both",
            );
        }
        if k.public_key.is_some() && k.public_key_file.is_some() {
            p.add(
                format!("{path}.publicKey"),
                "give publicKey or publicKeyFile, not both",
            );
        }
        if let Some(file) = &k.private_key_file {
            match read_file(base_dir, file) {
                Ok(text) => private = Some(text),
                Err(e) => p.add(format!("{path}.privateKeyFile"), e),
            }
        }
        if let Some(file) = &k.public_key_file {
            match read_file(base_dir, file) {
                Ok(text) => public = Some(text),
                Err(e) => p.add(format!("{path}.publicKeyFile"), e),
            }
        }
        let source = if hmac {
            if private.is_some() || public.is_some() {
                p.add(&path, "HMAC keys take a secret, not PEM keys");
            }
            match &k.secret {
                Some(s) if s.len() >= hmac_min_len(algorithm) => KeySource::Secret(s.clone()),
                Some(_) => {
                    p.add(
                        format!("{path}.secret"),
                        format!(
                            "must be at least {} bytes for {}",
                            hmac_min_len(algorithm),
                            k.algorithm
                        ),
                    );
                    continue;
                }
                None => KeySource::Generate,
            }
        } else {
            if k.secret.is_some() {
                p.add(
                    format!("{path}.secret"),
                    format!("{} keys take PEM keys, not a secret", k.algorithm),
                );
            }
            if private.is_none() && public.is_none() {
                KeySource::Generate
            } else {
                KeySource::Pem { private, public }
            }
        };
        let spec = KeySpec {
            id: k.id,
            name: k.name.clone().unwrap_or_else(|| k.id.to_string()),
            algorithm,
            source,
        };
        if spec.source != KeySource::Generate {
            if let Err(e) = keys::SigningKey::from_spec(&spec, None) {
                p.add(&path, e);
                continue;
            }
        }
        keys.push(spec);
    }
    let signing_key_ids: HashSet<Uuid> = keys
        .iter()
        .filter(|k| match &k.source {
            KeySource::Pem { private, .. } => private.is_some(),
            _ => true,
        })
        .map(|k| k.id)
        .collect();
    let first_signing_key = keys
        .iter()
        .find(|k| signing_key_ids.contains(&k.id))
        .map(|k| k.id);

    // --- tenants ---
    let mut tenants = Vec::new();
    let mut tenant_ids = HashSet::new();
    for (i, t) in raw.tenants.iter().enumerate() {
        let path = format!("tenants[{i}]");
        if !tenant_ids.insert(t.id) {
            p.add(format!("{path}.id"), "another tenant has this id");
        }
        if t.name.trim().is_empty() {
            p.add(format!("{path}.name"), "must not be blank");
        }
        if t.issuer.trim().is_empty() {
            p.add(format!("{path}.issuer"), "must not be blank");
        }
        let mut tenant = t.clone();
        let jwt = &mut tenant.jwt_configuration;
        check_jwt_configuration(
            &mut p,
            &format!("{path}.jwtConfiguration"),
            jwt,
            &signing_key_ids,
        );
        if jwt.access_token_key_id.is_none() {
            match first_signing_key {
                Some(id) => jwt.access_token_key_id = Some(id),
                None => p.add(
                    format!("{path}.jwtConfiguration.accessTokenKeyId"),
                    "no key can sign tokens: declare one under keys:",
                ),
            }
        }
        fill_tenant_defaults(jwt);
        tenants.push(tenant);
    }

    // --- applications ---
    let mut applications = Vec::new();
    let mut application_ids = HashSet::new();
    for (i, a) in raw.applications.iter().enumerate() {
        let path = format!("applications[{i}]");
        if !application_ids.insert(a.id) {
            p.add(format!("{path}.id"), "another application has this id");
        }
        if !tenant_ids.contains(&a.tenant_id) {
            p.add(format!("{path}.tenantId"), "no tenant with this id");
        }
        if a.name.trim().is_empty() {
            p.add(format!("{path}.name"), "must not be blank");
        }
        let mut role_names = HashSet::new();
        for (r, role) in a.roles.iter().enumerate() {
            if role.name.trim().is_empty() {
                p.add(format!("{path}.roles[{r}].name"), "must not be blank");
            } else if !role_names.insert(role.name.as_str()) {
                p.add(
                    format!("{path}.roles[{r}].name"),
                    "another role has this name",
                );
            }
        }
        let mut application = a.clone();
        for role in &mut application.roles {
            if role.id.is_none() {
                role.id = Some(Uuid::new_v5(&a.id, role.name.as_bytes()));
            }
        }
        check_jwt_configuration(
            &mut p,
            &format!("{path}.jwtConfiguration"),
            &mut application.jwt_configuration,
            &signing_key_ids,
        );
        applications.push(application);
    }

    // --- API keys ---
    let mut api_keys = Vec::new();
    let mut uses_demo_api_key = false;
    let mut seen_keys = HashSet::new();
    for (i, k) in raw.api_keys.iter().enumerate() {
        let path = format!("apiKeys[{i}]");
        if k.key.trim().len() < 16 {
            p.add(format!("{path}.key"), "must be at least 16 characters");
        }
        if !seen_keys.insert(k.key.clone()) {
            p.add(format!("{path}.key"), "another API key has the same value");
        }
        if let Some(t) = k.tenant_id {
            if !tenant_ids.contains(&t) {
                p.add(format!("{path}.tenantId"), "no tenant with this id");
            }
        }
        uses_demo_api_key |= k.key == DEMO_API_KEY;
        api_keys.push(ApiKey {
            id: k
                .id
                .unwrap_or_else(|| Uuid::new_v5(&Uuid::NAMESPACE_OID, k.key.as_bytes())),
            key: k.key.clone(),
            tenant_id: k.tenant_id,
            description: k.description.clone(),
        });
    }

    // --- lambdas and identity providers (the identity-provider plugin validates them) ---
    let mut lambdas = Vec::new();
    for (i, lambda) in raw.lambdas.iter().enumerate() {
        match gatehouse_plugin_identity_provider::validate_config_lambda(lambda) {
            Ok(normalised) => lambdas.push(normalised),
            Err(errors) => {
                for (field, message) in errors {
                    p.add(join_path(&format!("lambdas[{i}]"), &field), message);
                }
            }
        }
    }
    let mut identity_providers = Vec::new();
    for (i, idp) in raw.identity_providers.iter().enumerate() {
        match gatehouse_plugin_identity_provider::validate_config_provider(idp) {
            Ok(normalised) => identity_providers.push(normalised),
            Err(errors) => {
                for (field, message) in errors {
                    p.add(
                        join_path(&format!("identityProviders[{i}]"), &field),
                        message,
                    );
                }
            }
        }
    }
    if (!identity_providers.is_empty() || !lambdas.is_empty())
        && !raw.plugins.contains_key("identity-provider")
    {
        p.add(
            "plugins",
            "identityProviders and lambdas need the identity-provider plugin: add `identity-provider: {}`",
        );
    }

    // --- plugins ---
    let mut plugins = Vec::new();
    for (name, settings) in &raw.plugins {
        match crate::plugins::build(name, settings) {
            Ok(_) => plugins.push((name.clone(), settings.clone())),
            Err(e) => p.add(format!("plugins.{name}"), e),
        }
    }

    // --- routes ---
    let path_options = PathOptions {
        merge_slashes: raw.paths.merge_slashes.unwrap_or(true),
        allow_semicolons: raw.paths.allow_semicolons.unwrap_or(false),
    };
    let mut routes = Vec::new();
    let mut seen_routes = HashSet::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        let route_path = canonical_route_path(&mut p, &path, &r.path, path_options);
        let host = r.host.as_ref().map(|h| h.to_ascii_lowercase());
        if !seen_routes.insert((host.clone(), route_path.clone())) {
            p.add(
                format!("{path}.path"),
                "another route has the same host and path",
            );
        }
        let mut upstreams = Vec::new();
        let urls: Vec<(String, &String)> = match (&r.upstream, r.upstreams.is_empty()) {
            (Some(u), true) => vec![(format!("{path}.upstream"), u)],
            (None, false) => r
                .upstreams
                .iter()
                .enumerate()
                .map(|(j, u)| (format!("{path}.upstreams[{j}]"), u))
                .collect(),
            (Some(_), false) => {
                p.add(&path, "give upstream or upstreams, not both");
                Vec::new()
            }
            (None, true) => {
                p.add(format!("{path}.upstream"), "a route needs an upstream");
                Vec::new()
            }
        };
        for (upath, url) in urls {
            match parse_upstream(url) {
                Ok(u) => upstreams.push(u),
                Err(e) => p.add(upath, e),
            }
        }
        let auth = match &r.auth {
            None => RouteAuth {
                enabled: true,
                required: true,
                application_id: None,
                application_tenant_id: None,
                roles: Vec::new(),
                login_url: None,
                refresh: false,
                refresh_before_expiry_seconds: 0,
            },
            Some(a) => {
                if a.enabled == Some(false)
                    && (a.required == Some(true)
                        || a.application_id.is_some()
                        || !a.roles.is_empty()
                        || a.login_url.is_some()
                        || a.refresh)
                {
                    p.add(
                        format!("{path}.auth.enabled"),
                        "a route with enabled: false validates nothing: remove required, applicationId, roles, loginUrl and refresh",
                    );
                }
                if a.refresh_before_expiry_seconds
                    .is_some_and(|s| !(0..=86_400).contains(&s))
                {
                    p.add(
                        format!("{path}.auth.refreshBeforeExpirySeconds"),
                        "must be between 0 and 86400",
                    );
                }
                if a.refresh_before_expiry_seconds.is_some() && !a.refresh {
                    p.add(
                        format!("{path}.auth.refreshBeforeExpirySeconds"),
                        "only applies with refresh: true",
                    );
                }
                if let Some(app_id) = a.application_id {
                    match raw.applications.iter().find(|app| app.id == app_id) {
                        None => p.add(
                            format!("{path}.auth.applicationId"),
                            "no application with this id",
                        ),
                        Some(app) => {
                            for (j, role) in a.roles.iter().enumerate() {
                                if !app.roles.iter().any(|ar| &ar.name == role) {
                                    p.add(
                                        format!("{path}.auth.roles[{j}]"),
                                        format!(
                                            "application {} has no role with this name",
                                            app.name
                                        ),
                                    );
                                }
                            }
                        }
                    }
                }
                if let Some(url) = &a.login_url {
                    if !(url.starts_with("http://")
                        || url.starts_with("https://")
                        || url.starts_with('/'))
                    {
                        p.add(
                            format!("{path}.auth.loginUrl"),
                            "must be an absolute URL or a path starting with /",
                        );
                    }
                }
                let enabled = a.enabled.unwrap_or(true);
                RouteAuth {
                    enabled,
                    required: enabled && a.required.unwrap_or(true),
                    application_id: a.application_id,
                    application_tenant_id: a.application_id.and_then(|id| {
                        raw.applications
                            .iter()
                            .find(|app| app.id == id)
                            .map(|app| app.tenant_id)
                    }),
                    roles: a.roles.clone(),
                    login_url: a.login_url.clone(),
                    refresh: a.refresh,
                    refresh_before_expiry_seconds: a.refresh_before_expiry_seconds.unwrap_or(0),
                }
            }
        };
        let mut identity_headers = Vec::new();
        for (header, claim) in &r.identity_headers {
            let hpath = format!("{path}.identityHeaders.{header}");
            match HeaderName::from_bytes(header.as_bytes()) {
                Ok(name) if RESERVED_HEADERS.contains(&name.as_str()) => {
                    p.add(hpath, "this header cannot be set from a claim")
                }
                Ok(name) if name.as_str().contains('_') => p.add(
                    hpath,
                    "header names with _ are dropped on the way upstream: use -",
                ),
                Ok(name) => identity_headers.push(IdentityHeader {
                    name,
                    written: bytes::Bytes::copy_from_slice(header.as_bytes()),
                    claim: claim.clone(),
                }),
                Err(_) => p.add(hpath, "not a valid header name"),
            }
            if claim.trim().is_empty() {
                p.add(
                    format!("{path}.identityHeaders.{header}"),
                    "claim name must not be blank",
                );
            }
        }
        routes.push(Route {
            index: i,
            path: route_path,
            host,
            upstreams,
            auth,
            identity_headers,
            case_sensitive: r.case_sensitive.unwrap_or(true),
        });
    }
    // Longest prefix first; host-specific before any-host at equal length.
    routes.sort_by(|a, b| {
        b.path
            .len()
            .cmp(&a.path.len())
            .then(b.host.is_some().cmp(&a.host.is_some()))
    });

    let max_body_bytes = raw.limits.max_body_bytes.unwrap_or(1024 * 1024);
    if max_body_bytes == 0 {
        p.add("limits.maxBodyBytes", "must be greater than 0");
    }
    let max_header_bytes = raw.limits.max_header_bytes.unwrap_or(32 * 1024);
    if max_header_bytes < 1024 {
        p.add("limits.maxHeaderBytes", "must be at least 1024");
    }
    let idle_timeout_seconds = raw.limits.idle_timeout_seconds.unwrap_or(60);
    if !(1..=3600).contains(&idle_timeout_seconds) {
        p.add("limits.idleTimeoutSeconds", "must be between 1 and 3600");
    }
    let token_cache_max_bytes = raw.validation.cache_max_bytes.unwrap_or(64 * 1024 * 1024);
    if token_cache_max_bytes < 1024 * 1024 {
        p.add(
            "validation.cacheMaxBytes",
            "must be at least 1048576 (1 MiB)",
        );
    }
    let admin_listen = admin_listener(&mut p, raw.admin.as_ref(), listen);
    let race_window_seconds = raw.rotation.race_window_seconds.unwrap_or(10);
    if race_window_seconds > 60 {
        p.add("rotation.raceWindowSeconds", "must be at most 60");
    }
    let leeway_seconds = raw.validation.leeway_seconds.unwrap_or(5);
    if leeway_seconds > 300 {
        p.add("validation.leewaySeconds", "must be at most 300");
    }

    let log_format = match raw.log.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(_) => {
            p.add("log.format", "must be text or json");
            LogFormat::Text
        }
    };

    let demo_upstream = raw.demo_upstream.as_ref().and_then(|d| {
        d.listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                p.add(
                    "demoUpstream.listen",
                    "must be an address such as 127.0.0.1:9012",
                )
            })
            .ok()
    });
    if demo_upstream == Some(listen) {
        p.add("demoUpstream.listen", "must differ from listen");
    }

    if !p.0.is_empty() {
        return Err(p.0);
    }
    Ok(Config {
        listen,
        tls,
        threads,
        store,
        api_keys,
        keys,
        tenants,
        applications,
        identity_providers,
        lambdas,
        plugins,
        routes,
        max_body_bytes,
        max_header_bytes,
        leeway_seconds,
        token_cache_capacity: raw.validation.cache_capacity.unwrap_or(100_000),
        token_cache_max_bytes,
        idle_timeout_seconds,
        path_options,
        admin_listen,
        race_window_ms: race_window_seconds.min(60) as i64 * 1000,
        secure_cookies: raw.cookies.secure,
        log_format,
        log_level: raw.log.level.unwrap_or_else(|| "info".into()),
        demo_upstream,
        shutdown_timeout_seconds: raw.shutdown_timeout_seconds.unwrap_or(10),
        uses_demo_api_key,
    })
}

/// The admin listener's address: a socket address other than the main listener's.
fn admin_listener(
    p: &mut Problems,
    admin: Option<&raw::RawAdmin>,
    listen: SocketAddr,
) -> Option<SocketAddr> {
    let address = admin?.listen.parse::<SocketAddr>();
    match address {
        Ok(address) if address == listen => {
            p.add("admin.listen", "must differ from listen");
            None
        }
        Ok(address) => Some(address),
        Err(_) => {
            p.add("admin.listen", "must be an address such as 127.0.0.1:9013");
            None
        }
    }
}

/// The canonical form of a route's path, or a problem at `path`: a route must name a path
/// requests can have, or it would never match (or match more than it says).
fn canonical_route_path(p: &mut Problems, path: &str, raw: &str, options: PathOptions) -> String {
    if !raw.starts_with('/') {
        p.add(format!("{path}.path"), "must start with /");
        return raw.to_string();
    }
    match canonical_path(raw.as_bytes(), options) {
        Ok(canonical) => canonical.into_owned(),
        Err(refusal) => {
            p.add(
                format!("{path}.path"),
                format!("has no canonical form: {}", refusal.message()),
            );
            raw.to_string()
        }
    }
}

/// `base.field`, or `base` when the field path is empty.
fn join_path(base: &str, field: &str) -> String {
    if field.is_empty() {
        base.to_string()
    } else {
        format!("{base}.{field}")
    }
}

fn check_jwt_configuration(
    p: &mut Problems,
    path: &str,
    jwt: &mut JwtConfiguration,
    signing_key_ids: &HashSet<Uuid>,
) {
    if let Some(id) = jwt.access_token_key_id {
        if !signing_key_ids.contains(&id) {
            p.add(
                format!("{path}.accessTokenKeyId"),
                "no key with this id that can sign (declare it under keys: with private material)",
            );
        }
    }
    if jwt.time_to_live_in_seconds.is_some_and(|t| t <= 0) {
        p.add(
            format!("{path}.timeToLiveInSeconds"),
            "must be greater than 0",
        );
    }
    if jwt
        .refresh_token_time_to_live_in_minutes
        .is_some_and(|t| t <= 0)
    {
        p.add(
            format!("{path}.refreshTokenTimeToLiveInMinutes"),
            "must be greater than 0",
        );
    }
    if let Some(grace) = &jwt.refresh_token_one_time_use_configuration {
        if grace.grace_period_in_seconds < 0 || grace.grace_period_in_seconds > 86_400 {
            p.add(
                format!("{path}.refreshTokenOneTimeUseConfiguration.gracePeriodInSeconds"),
                "must be between 0 and 86400",
            );
        }
    }
}

fn fill_tenant_defaults(jwt: &mut JwtConfiguration) {
    jwt.time_to_live_in_seconds.get_or_insert(3600);
    jwt.refresh_token_time_to_live_in_minutes
        .get_or_insert(43_200);
    jwt.refresh_token_expiration_policy
        .get_or_insert(RefreshTokenExpirationPolicy::Fixed);
    jwt.refresh_token_usage_policy
        .get_or_insert(RefreshTokenUsagePolicy::Reusable);
}

#[cfg(test)]
mod tests;
