//! One validator per section of the file (listener, store, keys, tenants, applications, API
//! keys, identity documents, plugins, limits, the API's threads and bounds): each turns its raw section into validated values
//! and adds every problem it finds, with its path, to [`Problems`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse_plugin_api::indexed::MAX_API_KEY_BYTES;
use gatehouse_plugin_api::model::{ApiKey, Application, JwtConfiguration, Tenant};
use gatehouse_refresh::JwtSettings;
use serde_json::Value;
use uuid::Uuid;

use super::raw::{RawApi, RawApiKey, RawConfig, RawKey};
use super::{ConfigError, KeySource, KeySpec, LogFormat, StoreLocation, DEMO_API_KEY};
use crate::api::executor::{ApiSettings, DEFAULT_TIME_LIMIT_SECONDS};
use crate::api::plugins::{self, PluginSettings};
use crate::auth::keys::{self, KeyAlgorithm};

/// Collects problems with their paths.
#[derive(Default)]
pub(super) struct Problems(pub(super) Vec<ConfigError>);

impl Problems {
    /// Records that the value at `path` is wrong, and why.
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
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

// ---------------------------------------------------------------------------------------------
// Listener and store
// ---------------------------------------------------------------------------------------------

/// The main listener's address (`listen`).
pub(super) fn listen_address(p: &mut Problems, listen: &str) -> SocketAddr {
    listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        p.add("listen", "must be an address such as 127.0.0.1:9011");
        SocketAddr::from(([127, 0, 0, 1], 9011))
    })
}

/// The certificate and key files (`tls`), resolved against `base_dir`; both must exist.
pub(super) fn tls_files(
    p: &mut Problems,
    raw: &RawConfig,
    base_dir: &Path,
) -> Option<(PathBuf, PathBuf)> {
    let t = raw.tls.as_ref()?;
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
    Some((cert, key))
}

/// The worker thread count (`threads`, default 2).
pub(super) fn thread_count(p: &mut Problems, threads: Option<usize>) -> usize {
    let threads = threads.unwrap_or(2);
    if threads == 0 || threads > 1024 {
        p.add("threads", "must be between 1 and 1024");
    }
    threads
}

/// The REST API's threads and bounds (`api`): `threads` 1–1024 (default half of the proxy's
/// `threads`, at least 1), `timeLimitSeconds` 1–300 (default 10), `maxInFlight` 1–100000
/// (default 128).
pub(super) fn api_settings(p: &mut Problems, raw: &RawApi, proxy_threads: usize) -> ApiSettings {
    let defaults = ApiSettings::defaults(proxy_threads);
    let threads = bounded(
        p,
        "api.threads",
        raw.threads,
        defaults.threads,
        (1, 1024),
        "must be between 1 and 1024",
    );
    let time_limit_seconds = bounded(
        p,
        "api.timeLimitSeconds",
        raw.time_limit_seconds,
        DEFAULT_TIME_LIMIT_SECONDS,
        (1, 300),
        "must be between 1 and 300",
    );
    let max_in_flight = bounded(
        p,
        "api.maxInFlight",
        raw.max_in_flight,
        defaults.max_in_flight,
        (1, 100_000),
        "must be between 1 and 100000",
    );
    ApiSettings {
        threads,
        time_limit: Duration::from_secs(time_limit_seconds),
        max_in_flight,
    }
}

/// Where state is kept (`store`, default `sqlite://data/gatehouse.db`); a relative SQLite path
/// is resolved against `base_dir`.
pub(super) fn store_location(
    p: &mut Problems,
    store: Option<&str>,
    base_dir: &Path,
) -> StoreLocation {
    let url = store.unwrap_or("sqlite://data/gatehouse.db");
    if let Some(path) = url.strip_prefix("sqlite://") {
        // A file, named as written: no in-memory database (everything lost at a restart), no
        // URL query (it would be part of the file's name), no directory.
        let memory = path.contains(":memory:") || path.contains("mode=memory");
        if path.is_empty() || path.ends_with('/') || path == "/" {
            p.add(
                "store",
                "sqlite:// needs a file path, e.g. sqlite://data/gatehouse.db",
            );
        } else if memory {
            p.add(
                "store",
                "an in-memory SQLite database loses everything at a restart: name a file, e.g. sqlite://data/gatehouse.db",
            );
        } else if path.contains('?') {
            p.add(
                "store",
                "sqlite:// takes a file path, not URL options (the ? would be part of the file's name)",
            );
        }
        let path = PathBuf::from(path);
        StoreLocation::Sqlite(if path.is_absolute() {
            path
        } else {
            base_dir.join(path)
        })
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Read as the store reads it at start, so what it would refuse is refused here.
        if let Err(message) = crate::store::postgres::parse_url(url) {
            p.add("store", message);
        }
        StoreLocation::Postgres(url.to_string())
    } else {
        p.add("store", "must start with sqlite:// or postgres://");
        StoreLocation::Sqlite(PathBuf::from("data/gatehouse.db"))
    }
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// The declared keys (`keys`); a key with a problem is left out.
pub(super) fn keys(p: &mut Problems, raw: &[RawKey], base_dir: &Path) -> Vec<KeySpec> {
    let mut keys = Vec::new();
    let mut ids = HashSet::new();
    for (i, k) in raw.iter().enumerate() {
        let path = format!("keys[{i}]");
        if !ids.insert(k.id) {
            p.add(format!("{path}.id"), "another key has this id");
        }
        if let Some(spec) = key_spec(p, &path, k, base_dir) {
            keys.push(spec);
        }
    }
    keys
}

/// One key, or `None` when it has a problem (reported under `path`).
fn key_spec(p: &mut Problems, path: &str, k: &RawKey, base_dir: &Path) -> Option<KeySpec> {
    let Some(algorithm) = KeyAlgorithm::from_name(&k.algorithm) else {
        let names: Vec<&str> = KeyAlgorithm::ALL.iter().map(|a| a.name()).collect();
        p.add(
            format!("{path}.algorithm"),
            format!("must be one of {}", names.join(" ")),
        );
        return None;
    };
    let source = if algorithm.is_hmac() {
        hmac_source(p, path, k, algorithm, base_dir)?
    } else {
        pem_source(p, path, k, base_dir)
    };
    let spec = KeySpec {
        id: k.id,
        name: k.name.clone().unwrap_or_else(|| k.id.to_string()),
        algorithm,
        source,
    };
    if spec.source != KeySource::Generate {
        if let Err(e) = keys::SigningKey::from_spec(&spec, None) {
            p.add(path, e);
            return None;
        }
    }
    Some(spec)
}

/// Minimum HMAC secret length in bytes: the hash output size (RFC 7518 §3.2).
pub(super) fn hmac_min_len(algorithm: KeyAlgorithm) -> usize {
    match algorithm {
        KeyAlgorithm::HS384 => 48,
        KeyAlgorithm::HS512 => 64,
        _ => 32,
    }
}

/// The secret of an HMAC key (generated when none is given), or `None` when it is too short.
fn hmac_source(
    p: &mut Problems,
    path: &str,
    k: &RawKey,
    algorithm: KeyAlgorithm,
    base_dir: &Path,
) -> Option<KeySource> {
    let (private, public) = pem_texts(p, path, k, base_dir);
    if private.is_some() || public.is_some() {
        p.add(path, "HMAC keys take a secret, not PEM keys");
    }
    match &k.secret {
        Some(s) if s.len() >= hmac_min_len(algorithm) => Some(KeySource::Secret(s.clone())),
        Some(_) => {
            p.add(
                format!("{path}.secret"),
                format!(
                    "must be at least {} bytes for {}",
                    hmac_min_len(algorithm),
                    k.algorithm
                ),
            );
            None
        }
        None => Some(KeySource::Generate),
    }
}

/// The PEM material of an asymmetric key (generated when none is given).
fn pem_source(p: &mut Problems, path: &str, k: &RawKey, base_dir: &Path) -> KeySource {
    let (private, public) = pem_texts(p, path, k, base_dir);
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
}

/// The private and public PEM texts, inline or read from their files (each given one way).
fn pem_texts(
    p: &mut Problems,
    path: &str,
    k: &RawKey,
    base_dir: &Path,
) -> (Option<String>, Option<String>) {
    let private = inline_or_file(
        p,
        (
            format!("{path}.privateKey"),
            format!("{path}.privateKeyFile"),
        ),
        (&k.private_key, &k.private_key_file),
        base_dir,
    );
    let public = inline_or_file(
        p,
        (format!("{path}.publicKey"), format!("{path}.publicKeyFile")),
        (&k.public_key, &k.public_key_file),
        base_dir,
    );
    (private, public)
}

/// A text given inline or as a file (not both); the file's text wins when both are given.
fn inline_or_file(
    p: &mut Problems,
    (inline_path, file_path): (String, String),
    (inline, file): (&Option<String>, &Option<String>),
    base_dir: &Path,
) -> Option<String> {
    if inline.is_some() && file.is_some() {
        let field = inline_path
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_string();
        p.add(
            &inline_path,
            format!("give {field} or {field}File, not both"),
        );
    }
    let Some(file) = file else {
        return inline.clone();
    };
    let full = base_dir.join(file);
    match std::fs::read_to_string(&full) {
        Ok(text) => Some(text),
        Err(e) => {
            p.add(file_path, format!("cannot read {}: {e}", full.display()));
            inline.clone()
        }
    }
}

/// The ids of keys that can sign (secrets, generated keys, PEM keys with private material), and
/// the first of them, the tenants' default access-token key.
pub(super) fn signing_keys(keys: &[KeySpec]) -> (HashSet<Uuid>, Option<Uuid>) {
    let can_sign = |k: &&KeySpec| match &k.source {
        KeySource::Pem { private, .. } => private.is_some(),
        _ => true,
    };
    let ids = keys.iter().filter(can_sign).map(|k| k.id).collect();
    let first = keys.iter().find(can_sign).map(|k| k.id);
    (ids, first)
}

// ---------------------------------------------------------------------------------------------
// Tenants, applications, API keys
// ---------------------------------------------------------------------------------------------

/// The tenants, each with its JWT settings complete (FusionAuth's defaults filled in, the first
/// signing key as access-token key when none is named).
pub(super) fn tenants(
    p: &mut Problems,
    raw: &[Tenant],
    (signing_key_ids, first_signing_key): &(HashSet<Uuid>, Option<Uuid>),
) -> Vec<Tenant> {
    let mut tenants = Vec::new();
    let mut ids = HashSet::new();
    for (i, t) in raw.iter().enumerate() {
        let path = format!("tenants[{i}]");
        if !ids.insert(t.id) {
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
        let jwt_path = format!("{path}.jwtConfiguration");
        check_jwt_configuration(p, &jwt_path, jwt, signing_key_ids);
        if jwt.access_token_key_id.is_none() {
            jwt.access_token_key_id = *first_signing_key;
            if first_signing_key.is_none() {
                p.add(
                    format!("{jwt_path}.accessTokenKeyId"),
                    "no key can sign tokens: declare one under keys:",
                );
            }
        }
        JwtSettings::fill_defaults(jwt);
        tenants.push(tenant);
    }
    tenants
}

/// The applications: unique ids and role names, a known tenant, role ids derived from names.
pub(super) fn applications(
    p: &mut Problems,
    raw: &[Application],
    tenants: &[Tenant],
    signing_key_ids: &HashSet<Uuid>,
) -> Vec<Application> {
    let mut applications = Vec::new();
    let mut ids = HashSet::new();
    for (i, a) in raw.iter().enumerate() {
        let path = format!("applications[{i}]");
        if !ids.insert(a.id) {
            p.add(format!("{path}.id"), "another application has this id");
        }
        if !tenants.iter().any(|t| t.id == a.tenant_id) {
            p.add(format!("{path}.tenantId"), "no tenant with this id");
        }
        if a.name.trim().is_empty() {
            p.add(format!("{path}.name"), "must not be blank");
        }
        let mut application = a.clone();
        application_roles(p, &path, &mut application);
        let jwt_path = format!("{path}.jwtConfiguration");
        check_jwt_configuration(
            p,
            &jwt_path,
            &mut application.jwt_configuration,
            signing_key_ids,
        );
        applications.push(application);
    }
    applications
}

/// Role names are present and unique; a role without an id gets one derived from its name.
fn application_roles(p: &mut Problems, path: &str, application: &mut Application) {
    let mut names = HashSet::new();
    for (r, role) in application.roles.iter().enumerate() {
        if role.name.trim().is_empty() {
            p.add(format!("{path}.roles[{r}].name"), "must not be blank");
        } else if !names.insert(role.name.clone()) {
            p.add(
                format!("{path}.roles[{r}].name"),
                "another role has this name",
            );
        }
    }
    let application_id = application.id;
    for role in &mut application.roles {
        role.id
            .get_or_insert_with(|| Uuid::new_v5(&application_id, role.name.as_bytes()));
    }
}

/// The largest token lifetime (`timeToLiveInSeconds`, the refresh token's minutes): the JWT
/// API's vend cap (FusionAuth reads them as Java `Integer`s).
pub(super) const MAX_LIFETIME: i64 = gatehouse_plugin_jwt::vend::MAX_TIME_TO_LIVE_IN_SECONDS;

/// The checks shared by tenants' and applications' `jwtConfiguration`.
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
    // The lifetimes are FusionAuth's Java `Integer`s, capped as the API caps them, so an
    // expiry instant (milliseconds since 1970) never overflows.
    let lifetimes = [
        ("timeToLiveInSeconds", jwt.time_to_live_in_seconds),
        (
            "refreshTokenTimeToLiveInMinutes",
            jwt.refresh_token_time_to_live_in_minutes,
        ),
        (
            "refreshTokenSlidingWindowConfiguration.maximumTimeToLiveInMinutes",
            jwt.refresh_token_sliding_window_configuration
                .as_ref()
                .and_then(|w| w.maximum_time_to_live_in_minutes),
        ),
    ];
    for (field, value) in lifetimes {
        if value.is_some_and(|t| !(1..=MAX_LIFETIME).contains(&t)) {
            p.add(
                format!("{path}.{field}"),
                format!("must be between 1 and {MAX_LIFETIME}"),
            );
        }
    }
    if let Some(grace) = &jwt.refresh_token_one_time_use_configuration {
        if !(0..=86_400).contains(&grace.grace_period_in_seconds) {
            p.add(
                format!("{path}.refreshTokenOneTimeUseConfiguration.gracePeriodInSeconds"),
                "must be between 0 and 86400",
            );
        }
    }
}

/// The API keys, and whether one of them is the shipped demo key.
pub(super) fn api_keys(
    p: &mut Problems,
    raw: &[RawApiKey],
    tenants: &[Tenant],
) -> (Vec<ApiKey>, bool) {
    let mut api_keys = Vec::new();
    let mut uses_demo_api_key = false;
    let mut seen = HashSet::new();
    for (i, k) in raw.iter().enumerate() {
        let path = format!("apiKeys[{i}]");
        if k.key.trim().len() < 16 {
            p.add(format!("{path}.key"), "must be at least 16 characters");
        }
        if k.key.len() > MAX_API_KEY_BYTES {
            p.add(
                format!("{path}.key"),
                format!("must be at most {MAX_API_KEY_BYTES} bytes (the store indexes it)"),
            );
        }
        if k.key.chars().any(char::is_control) {
            p.add(format!("{path}.key"), "must not hold control characters");
        }
        if !seen.insert(k.key.clone()) {
            p.add(format!("{path}.key"), "another API key has the same value");
        }
        if k.tenant_id
            .is_some_and(|t| !tenants.iter().any(|x| x.id == t))
        {
            p.add(format!("{path}.tenantId"), "no tenant with this id");
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
    (api_keys, uses_demo_api_key)
}

// ---------------------------------------------------------------------------------------------
// Identity documents and plugins
// ---------------------------------------------------------------------------------------------

/// Identity providers and lambdas, validated and normalised by the identity-provider plugin.
pub(super) fn identity_documents(p: &mut Problems, raw: &RawConfig) -> (Vec<Value>, Vec<Value>) {
    let lambdas = documents(
        p,
        "lambdas",
        &raw.lambdas,
        plugins::validate_lambda_document,
    );
    let providers = documents(
        p,
        "identityProviders",
        &raw.identity_providers,
        plugins::validate_provider_document,
    );
    if (!providers.is_empty() || !lambdas.is_empty())
        && !raw.plugins.contains_key(plugins::IDENTITY_PROVIDER)
    {
        p.add(
            "plugins",
            "identityProviders and lambdas need the identity-provider plugin: add `identity-provider: {}`",
        );
    }
    (providers, lambdas)
}

/// A document validator: the normalised document, or each problem's field path and message.
type DocumentValidator = fn(&Value) -> Result<Value, Vec<(String, String)>>;

/// The documents of one section that pass `validate`, the others' problems under `section[i]`.
fn documents(
    p: &mut Problems,
    section: &str,
    raw: &[Value],
    validate: DocumentValidator,
) -> Vec<Value> {
    let mut valid = Vec::new();
    for (i, document) in raw.iter().enumerate() {
        match validate(document) {
            Ok(normalised) => valid.push(normalised),
            Err(errors) => {
                for (field, message) in errors {
                    p.add(join_path(&format!("{section}[{i}]"), &field), message);
                }
            }
        }
    }
    valid
}

// ---------------------------------------------------------------------------------------------
// Limits and the rest
// ---------------------------------------------------------------------------------------------

/// A number with its default, checked against a range (`field` names it in the message).
pub(super) fn bounded<T: PartialOrd + Copy>(
    p: &mut Problems,
    field: &str,
    value: Option<T>,
    default: T,
    (min, max): (T, T),
    message: &str,
) -> T {
    let value = value.unwrap_or(default);
    if value < min || value > max {
        p.add(field, message);
    }
    value
}

/// The admin listener's address: a socket address other than the main listener's.
pub(super) fn admin_listener(
    p: &mut Problems,
    admin: Option<&super::raw::RawAdmin>,
    listen: SocketAddr,
) -> Option<SocketAddr> {
    let address = admin?.listen.parse::<SocketAddr>();
    match address {
        Ok(address) if overlap(address, listen) => {
            p.add(
                "admin.listen",
                "must differ from listen (another port, or another address than one listen covers)",
            );
            None
        }
        Ok(address) => Some(address),
        Err(_) => {
            p.add("admin.listen", "must be an address such as 127.0.0.1:9013");
            None
        }
    }
}

/// The log format (`log.format`: text or json).
pub(super) fn log_format(p: &mut Problems, format: Option<&str>) -> LogFormat {
    match format {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(_) => {
            p.add("log.format", "must be text or json");
            LogFormat::Text
        }
    }
}

/// The log filter (`log.level`, default `info`): a level (`trace`, `debug`, `info`, `warn`,
/// `error`, `off`), or comma-separated `tracing` directives each naming its level
/// (`info,gatehouse=debug`). A bare word that is no level (`loud`) would read as a target to log
/// everything of, and silence the gateway's own lines: refused.
pub(super) fn log_level(p: &mut Problems, level: Option<&str>) -> String {
    use std::str::FromStr;
    use tracing_subscriber::filter::{Directive, LevelFilter};
    let Some(level) = level else {
        return "info".to_string();
    };
    let valid = |directive: &str| {
        let directive = directive.trim();
        LevelFilter::from_str(directive).is_ok()
            || (directive.contains('=') && Directive::from_str(directive).is_ok())
    };
    if level.trim().is_empty() || !level.split(',').all(valid) {
        p.add(
            "log.level",
            "must be a level (trace, debug, info, warn, error or off) or directives that each name one, such as info,gatehouse=debug",
        );
    }
    level.to_string()
}

/// The trusted proxies listed at `at` (`trustedProxies`, `forwardAuth.trustedProxies`): each an
/// IP address (a single host) or a CIDR range; a problem at `at[index]` for anything else.
pub(super) fn trusted_proxies(p: &mut Problems, at: &str, raw: &[String]) -> Vec<ipnet::IpNet> {
    let mut ranges = Vec::with_capacity(raw.len());
    for (index, text) in raw.iter().enumerate() {
        let text = text.trim();
        let range = text.parse::<ipnet::IpNet>().ok().or_else(|| {
            text.parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        });
        match range {
            Some(range) => ranges.push(range.trunc()),
            None => p.add(
                format!("{at}[{index}]"),
                "must be an IP address or a CIDR range such as 10.0.0.0/8",
            ),
        }
    }
    ranges
}

/// The demo upstream's address, when one is configured; it must differ from `listen`.
pub(super) fn demo_upstream(
    p: &mut Problems,
    raw: &RawConfig,
    listen: SocketAddr,
) -> Option<SocketAddr> {
    let address = raw.demo_upstream.as_ref().and_then(|d| {
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
    if address.is_some_and(|a| overlap(a, listen)) {
        p.add(
            "demoUpstream.listen",
            "must differ from listen (another port, or another address than one listen covers)",
        );
    }
    address
}

/// The admin listener and the demo upstream's (see [`admin_listener`], [`demo_upstream`]),
/// neither taking the other's connections.
pub(super) fn side_listeners(
    p: &mut Problems,
    raw: &RawConfig,
    listen: SocketAddr,
) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let admin = admin_listener(p, raw.admin.as_ref(), listen);
    let demo = demo_upstream(p, raw, listen);
    if let (Some(admin), Some(demo)) = (admin, demo) {
        if overlap(admin, demo) {
            p.add(
                "demoUpstream.listen",
                "must differ from admin.listen (another port, or another address than one admin.listen covers)",
            );
        }
    }
    (admin, demo)
}

/// True when listeners on `a` and `b` would take the same connections: the same port, and the
/// same address, or an unspecified one (`0.0.0.0` covers every IPv4 address, `[::]` every
/// address) beside any of its family.
pub(super) fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |x: SocketAddr, y: SocketAddr| {
        x.ip().is_unspecified() && (x.is_ipv6() || x.is_ipv4() == y.is_ipv4())
    };
    a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// The enabled plugins' settings, each section read once by its plugin.
pub(super) fn plugins(
    p: &mut Problems,
    raw: &std::collections::BTreeMap<String, Value>,
) -> Vec<PluginSettings> {
    let mut plugins = Vec::new();
    for (name, settings) in raw {
        match PluginSettings::parse(name, settings) {
            Ok(settings) => plugins.push(settings),
            Err(e) => p.add(format!("plugins.{name}"), e),
        }
    }
    plugins
}
