//! The configuration file as written: serde structs that mirror `config.yaml` one to one,
//! rejecting unknown keys. They are turned into the validated [`super::Config`] by
//! [`super::validate`]; nothing else reads them.

use std::collections::BTreeMap;

use gatehouse_plugin_api::model::{Application, Tenant};
use serde::Deserialize;
use uuid::Uuid;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    /// `host:port` of the proxy and API listener.
    pub listen: String,
    /// TLS on the listener.
    #[serde(default)]
    pub tls: Option<RawTls>,
    /// The HTTP versions the listener speaks besides HTTP/1.1.
    #[serde(default)]
    pub listen_options: RawListenOptions,
    /// Worker threads.
    #[serde(default)]
    pub threads: Option<usize>,
    /// `sqlite://path` (default `sqlite://data/gatehouse.db`) or `postgres://…`.
    #[serde(default)]
    pub store: Option<String>,
    /// API keys for the REST API.
    #[serde(default)]
    pub api_keys: Vec<RawApiKey>,
    /// Signing and verifying keys.
    #[serde(default)]
    pub keys: Vec<RawKey>,
    /// Tenants (FusionAuth JSON shape).
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// Applications (FusionAuth JSON shape).
    #[serde(default)]
    pub applications: Vec<Application>,
    /// Identity providers (FusionAuth JSON shape), kept as documents.
    #[serde(default)]
    pub identity_providers: Vec<serde_json::Value>,
    /// Reconcile lambdas (FusionAuth JSON shape, with an `id`).
    #[serde(default)]
    pub lambdas: Vec<serde_json::Value>,
    /// Plugins to enable, by name, with their settings.
    #[serde(default)]
    pub plugins: BTreeMap<String, serde_json::Value>,
    /// Trusted issuers: tokens they sign are accepted at the edge, checked with their JWKS.
    #[serde(default)]
    pub issuers: Vec<RawIssuer>,
    /// Proxied routes.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    /// Browser login at the edge (the hosted-backend routes).
    #[serde(default)]
    pub login: Option<super::login::RawLogin>,
    /// Proxies in front of the gateway (IP addresses or CIDR ranges) whose `X-Forwarded-For`
    /// hops are believed; none by default (the client is the connection's peer).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Forward-auth mode: an endpoint that judges requests other proxies forward; off when
    /// absent.
    #[serde(default)]
    pub forward_auth: Option<RawForwardAuth>,
    /// Request size limits and timeouts.
    #[serde(default)]
    pub limits: RawLimits,
    /// How request paths are put into their canonical form on the listener.
    #[serde(default)]
    pub paths: RawPaths,
    /// The admin listener (`/metrics`, `/health`); none when absent.
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// One-time-use refresh token rotation across requests and nodes.
    #[serde(default)]
    pub rotation: RawRotation,
    /// The REST API's threads and bounds.
    #[serde(default)]
    pub api: RawApi,
    /// Token validation settings.
    #[serde(default)]
    pub validation: RawValidation,
    /// Cookie settings.
    #[serde(default)]
    pub cookies: RawCookies,
    /// Logging.
    #[serde(default)]
    pub log: RawLog,
    /// The built-in echo upstream for demos and tests.
    #[serde(default)]
    pub demo_upstream: Option<RawDemoUpstream>,
    /// Seconds to let in-flight requests finish on SIGTERM.
    #[serde(default)]
    pub shutdown_timeout_seconds: Option<u64>,
    /// The Unix socket a binary upgrade hands the listeners over on.
    #[serde(default)]
    pub upgrade_socket: Option<String>,
}

/// `tls:`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub certificate_file: String,
    /// PEM private key.
    pub private_key_file: String,
}

/// `listenOptions:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawListenOptions {
    /// Offer HTTP/2 by ALPN on a TLS listener (default true).
    #[serde(default)]
    pub http2: Option<bool>,
    /// Accept HTTP/2 with prior knowledge on a plain listener (default false).
    #[serde(default)]
    pub h2c: Option<bool>,
}

/// One `apiKeys:` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawApiKey {
    /// Key id; derived from the key when absent.
    #[serde(default)]
    pub id: Option<Uuid>,
    /// The key value.
    pub key: String,
    /// Lock to this tenant.
    #[serde(default)]
    pub tenant_id: Option<Uuid>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
}

/// One `keys:` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawKey {
    /// `kid`.
    pub id: Uuid,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// `RS256`, `ES256`, `EdDSA`, `HS256`, …
    pub algorithm: String,
    /// HMAC secret.
    #[serde(default)]
    pub secret: Option<String>,
    /// Inline PEM private key (PKCS#8, or PKCS#1 for RSA).
    #[serde(default)]
    pub private_key: Option<String>,
    /// PEM private key file.
    #[serde(default)]
    pub private_key_file: Option<String>,
    /// Inline PEM public key (verify-only when no private key).
    #[serde(default)]
    pub public_key: Option<String>,
    /// PEM public key file.
    #[serde(default)]
    pub public_key_file: Option<String>,
}

/// One `routes:` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRoute {
    /// Path prefix.
    pub path: String,
    /// Host to match (without port); any host when absent.
    #[serde(default)]
    pub host: Option<String>,
    /// One upstream URL.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Several upstream URLs, used round-robin.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Authentication policy; a route without one requires a valid token.
    #[serde(default)]
    pub auth: Option<RawAuth>,
    /// Headers to set upstream from claims: header name → claim name.
    #[serde(default)]
    pub identity_headers: BTreeMap<String, String>,
    /// Match `path` case-sensitively (default true); `false` for upstreams that treat paths
    /// case-insensitively.
    #[serde(default)]
    pub case_sensitive: Option<bool>,
}

/// `routes[].auth`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAuth {
    /// `false`: a public passthrough; no token is read or validated (identity headers are
    /// still stripped from the request). Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Refuse requests without a valid token (default true).
    #[serde(default)]
    pub required: Option<bool>,
    /// The token's `applicationId` must be this.
    #[serde(default)]
    pub application_id: Option<Uuid>,
    /// The token must carry one of these roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Browsers are redirected here instead of getting a 401.
    #[serde(default)]
    pub login_url: Option<String>,
    /// Refresh expired access tokens from the `refresh_token` cookie.
    #[serde(default)]
    pub refresh: bool,
    /// Browser navigations without credentials go to `{login.basePath}/login/{applicationId}`.
    #[serde(default)]
    pub login: bool,
    /// Also refresh a still-valid token this many seconds before it expires.
    #[serde(default)]
    pub refresh_before_expiry_seconds: Option<i64>,
    /// The issuers accepted (their `iss`); default: the gateway's own key ring only.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// `aud` must name one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Claims (dotted paths) that must have exactly these values.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// Pass CORS preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
    /// without a token, as a public passthrough would. Default false.
    #[serde(default)]
    pub allow_preflight: bool,
}

/// One `issuers:` entry.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawIssuer {
    /// The `iss` accepted, compared exactly.
    pub issuer: String,
    /// Find `jwks_uri` in `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: Option<bool>,
    /// The JWKS URL (instead of discovery).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Accepted algorithms (default `[RS256]`).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// When given, `aud` must name one of these.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Dotted path of the roles claim (default `roles`).
    #[serde(default)]
    pub roles_claim: Option<String>,
    /// `exp`/`nbf` leeway (default `validation.leewaySeconds`).
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    /// How often the keys are fetched again (default 300).
    #[serde(default)]
    pub refresh_interval_seconds: Option<u64>,
    /// At most one fetch for unknown `kid`s per this many seconds (default 10).
    #[serde(default)]
    pub min_refetch_seconds: Option<u64>,
    /// How long an unknown `kid` is refused without a fetch (default 60).
    #[serde(default)]
    pub unknown_key_cache_seconds: Option<u64>,
    /// How long the last good key set serves while the issuer is unreachable (default 86400).
    #[serde(default)]
    pub max_stale_seconds: Option<u64>,
    /// Time limit of one fetch (default 5).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// How long a request with an unknown `kid` waits for the refetch (default 2000).
    #[serde(default)]
    pub unknown_key_wait_millis: Option<u64>,
    /// PEM file of CA certificates trusted besides the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// `forwardAuth:`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawForwardAuth {
    /// The path of the decision endpoint (e.g. `/_gatehouse/auth`); paths under it are the
    /// path-prefix convention (Envoy `ext_authz`).
    pub path: String,
    /// The proxies (IP addresses or CIDR ranges) allowed to ask for decisions.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

/// `limits:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLimits {
    /// Largest request body (bytes) for API and proxied requests; default 1 MiB.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Largest total size of request headers (bytes); default 32 KiB.
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    /// Seconds an idle keep-alive connection is kept open; default 60.
    #[serde(default)]
    pub idle_timeout_seconds: Option<u64>,
    /// Most client connections open at once on the proxy listener; default 10000.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

/// `paths:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawPaths {
    /// Merge runs of `/` into one (default true).
    #[serde(default)]
    pub merge_slashes: Option<bool>,
    /// Accept `;` path parameters (default false: refused).
    #[serde(default)]
    pub allow_semicolons: Option<bool>,
}

/// `rotation:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRotation {
    /// Seconds after a rotation during which the retired value still yields its outcome on any
    /// node, whatever the grace period: an opt-in for clusters behind non-sticky load
    /// balancers; default 0 (FusionAuth's grace period alone), at most 60.
    #[serde(default)]
    pub race_window_seconds: Option<u64>,
}

/// `api:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawApi {
    /// Threads of the API's own runtime; default half of `threads` (at least 1).
    #[serde(default)]
    pub threads: Option<usize>,
    /// Seconds an API request may take before it is answered 503; default 10.
    #[serde(default)]
    pub time_limit_seconds: Option<u64>,
    /// The most API requests in progress at once (more are answered 503); default 128.
    #[serde(default)]
    pub max_in_flight: Option<usize>,
}

/// `admin:`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawAdmin {
    /// `host:port` of the admin listener; keep it on loopback or a private network.
    pub listen: String,
}

/// `validation:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawValidation {
    /// Clock-skew allowance for `exp`/`nbf` (seconds); default 5.
    #[serde(default)]
    pub leeway_seconds: Option<u64>,
    /// How many verified tokens to cache; default 100 000; 0 disables the cache.
    #[serde(default)]
    pub cache_capacity: Option<u64>,
    /// The most memory (bytes, estimated) the verified-token cache may hold; default 64 MiB.
    #[serde(default)]
    pub cache_max_bytes: Option<u64>,
}

/// `cookies:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawCookies {
    /// Mark cookies `Secure` even on plain HTTP (set this behind a TLS terminator).
    #[serde(default)]
    pub secure: bool,
}

/// `log:`
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawLog {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: Option<String>,
    /// A `tracing` filter such as `info` or `gatehouse=debug`; `RUST_LOG` wins when set.
    #[serde(default)]
    pub level: Option<String>,
    /// One access log line per request (default `true`).
    #[serde(default)]
    pub access: Option<bool>,
}

/// `demoUpstream:`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawDemoUpstream {
    /// `host:port` of the echo service.
    pub listen: String,
}
