//! Helpers of this plugin's endpoint modules: API-key authentication, JSON bodies, tenant
//! visibility of documents, and the plugin's settings (with the hosted-backend routes'
//! [`AppSettings`], which [`crate::app`] serves). Helpers shared with other plugins live in
//! [`gatehouse_plugin_api::helpers`].

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use gatehouse_plugin_api::{ApiError, ApiKeyGrant, PluginContext, PluginRequest};
use serde::Deserialize;

use crate::store::IdentityProviderStore;
use serde_json::Value;
use uuid::Uuid;

use crate::engine::Limits;
use crate::pending::{PendingLinkLimits, MAX_PENDING_LINK_BYTES};

/// The members of a search request (FusionAuth's search APIs take both forms): the `search`
/// object of a `POST` body, or the query parameters of a `GET`.
pub enum SearchMembers<'a> {
    /// The body's `search` object (`Null` when there is none).
    Body(Value),
    /// The request whose query parameters are the members.
    Query(&'a PluginRequest),
}

impl<'a> SearchMembers<'a> {
    /// The members of `request`; `Err` for a body that is not JSON or a `search` member that is
    /// not an object.
    pub fn of(request: &'a PluginRequest) -> Result<SearchMembers<'a>, ApiError> {
        if request.method != http::Method::POST {
            return Ok(SearchMembers::Query(request));
        }
        let body: Value = request.json_or_default()?;
        match body.get("search") {
            None | Some(Value::Null) => Ok(SearchMembers::Body(Value::Null)),
            Some(search @ Value::Object(_)) => Ok(SearchMembers::Body(search.clone())),
            Some(_) => Err(ApiError::field("search", "invalid", "Expected an object.")),
        }
    }

    /// The member `name`: as written in the body, or a query parameter's text; `None` when
    /// absent.
    pub fn get(&self, name: &str) -> Option<Value> {
        match self {
            SearchMembers::Body(search) => search.get(name).cloned(),
            SearchMembers::Query(request) => request.query_param(name).map(Value::String),
        }
    }
}

/// Authenticates the request's API key (401 without a valid one).
pub fn api_key(request: &PluginRequest, context: &PluginContext) -> Result<ApiKeyGrant, ApiError> {
    context.api_keys.authenticate(request)
}

/// The grant of an API key for a system-wide API (lambdas, the event log): these hold records
/// of every tenant, so a request scoped to one tenant (a tenant-locked key, or
/// `X-FusionAuth-TenantId`) is a 401.
pub fn system_api_key(
    request: &PluginRequest,
    context: &PluginContext,
) -> Result<ApiKeyGrant, ApiError> {
    let grant = api_key(request, context)?;
    match grant.tenant_id {
        None => Ok(grant),
        Some(_) => Err(ApiError::Unauthorized),
    }
}

/// The request body as a JSON object (400 when missing, malformed, not an object, or over
/// the document limits).
pub fn json_body(request: &PluginRequest) -> Result<Value, ApiError> {
    request.json::<Value>()
}

/// The body of a PATCH: an object (merge patches) or an array (JSON Patch), within the limits.
pub fn patch_body(request: &PluginRequest) -> Result<Value, ApiError> {
    request.json_value()
}

/// The replacement an update computes from the stored document (PUT: the body; PATCH: the
/// patched document, computed on the CPU pool): a future, so the update can await it.
pub type Change<'a> = Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send + 'a>>;

/// The member `name` of a request body that must be an object (`identityProvider`, `lambda`…);
/// a 400 `[blank]name` when absent.
pub fn wrapped(body: &Value, name: &str) -> Result<Value, ApiError> {
    match body.get(name) {
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(ApiError::field(
            name,
            "invalid",
            format!("The {name} must be an object."),
        )),
        None => Err(ApiError::field(
            name,
            "blank",
            format!("You must specify the {name} object in the request body."),
        )),
    }
}

/// Query parameters a route reads as a list, which may so be given more than once.
const REPEATABLE_PARAMETERS: &[&str] = &["loginIdTypes"];

/// `Ok` when no query parameter (but a list one, [`REPEATABLE_PARAMETERS`]) is given more than
/// once; else a 400 `[AmbiguousRequest]` naming it (see
/// [`gatehouse_plugin_api::helpers::unambiguous_query`]).
pub fn unambiguous_query(request: &PluginRequest) -> Result<(), ApiError> {
    gatehouse_plugin_api::helpers::unambiguous_query(request, REPEATABLE_PARAMETERS)
}

/// The `tenantId` member of a document, when it is a UUID.
pub fn document_tenant(doc: &Value) -> Option<Uuid> {
    doc.get("tenantId")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// True when a request scoped as `grant` may see `doc`: unscoped requests see everything, scoped
/// ones see global documents (no `tenantId`) and their tenant's.
pub fn visible(grant: &ApiKeyGrant, doc: &Value) -> bool {
    match (grant.tenant_id, document_tenant(doc)) {
        (None, _) | (_, None) => true,
        (Some(t), Some(d)) => t == d,
    }
}

/// The providers of `docs` a request scoped as `grant` may see ([`visible`]), each as it may
/// see it ([`scoped_to`]): a tenant-scoped request reads a global provider without what it
/// says of other tenants.
pub async fn visible_providers(
    grant: &ApiKeyGrant,
    docs: Vec<Value>,
    context: &PluginContext,
) -> Result<Vec<Value>, ApiError> {
    let mut docs: Vec<Value> = docs.into_iter().filter(|d| visible(grant, d)).collect();
    if let Some(tenant) = grant.tenant_id {
        let applications = context.store.list_applications().await?;
        let tenant_of = |app: Uuid| {
            (applications.iter())
                .find(|a| a.id == app)
                .map(|a| a.tenant_id)
        };
        for doc in &mut docs {
            scoped_to(doc, tenant, &tenant_of);
        }
    }
    Ok(docs)
}

/// Drops from provider `doc` what a request scoped to `tenant` may not read: the
/// `applicationConfiguration` entries of applications of other tenants (or of none known,
/// `tenant_of` telling an application's tenant) and the `tenantConfiguration` entries of other
/// tenants. Such a request never writes a global provider ([`writable`]), so nothing it reads
/// this way is ever written back short.
pub fn scoped_to(doc: &mut Value, tenant: Uuid, tenant_of: &dyn Fn(Uuid) -> Option<Uuid>) {
    let id = |key: &str| Uuid::parse_str(key).ok();
    if let Some(Value::Object(apps)) = doc.get_mut("applicationConfiguration") {
        apps.retain(|key, _| id(key).and_then(tenant_of) == Some(tenant));
    }
    if let Some(Value::Object(tenants)) = doc.get_mut("tenantConfiguration") {
        tenants.retain(|key, _| id(key) == Some(tenant));
    }
}

/// True when a request scoped as `grant` may change `doc`: unscoped requests change anything,
/// scoped ones only their tenant's documents.
pub fn writable(grant: &ApiKeyGrant, doc: &Value) -> bool {
    match grant.tenant_id {
        None => true,
        Some(t) => document_tenant(doc) == Some(t),
    }
}

/// What a handler works with: the host's context (users, refresh tokens, tokens, API keys,
/// clock; reached through `Deref`) and the plugin's own records.
pub struct Env<'a> {
    /// The host's context.
    pub host: &'a PluginContext,
    /// The plugin's storage port.
    pub records: &'a dyn IdentityProviderStore,
}

impl std::ops::Deref for Env<'_> {
    type Target = PluginContext;

    fn deref(&self) -> &PluginContext {
        self.host
    }
}

/// The plugin's settings (`plugins.identity-provider`); the default is what an empty mapping
/// gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Lambda limits.
    pub lambda: Limits,
    /// How long pending links live, and how many and how many bytes of them are kept.
    pub pending_links: PendingLinkLimits,
    /// How many lambda worker processes may run at once.
    pub lambda_workers: usize,
    /// The time limit of each request to an OpenID Connect provider (discovery, token,
    /// userinfo).
    pub provider_timeout: Duration,
    /// Clock-skew allowance for an ID token's `exp` and `iat` (seconds).
    pub provider_leeway_seconds: i64,
    /// The hosted-backend routes' settings: the host's `login:` section (not a key of
    /// `plugins.identity-provider`); `None` serves no `/app/*` route.
    pub app: Option<AppSettings>,
}

/// The default of `providerTimeoutMillis`.
pub const DEFAULT_PROVIDER_TIMEOUT: Duration = Duration::from_secs(5);

/// The default of `providerLeewaySeconds`.
pub const DEFAULT_PROVIDER_LEEWAY_SECONDS: i64 = 60;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lambda: Limits::default(),
            pending_links: PendingLinkLimits::default(),
            lambda_workers: crate::sandbox::DEFAULT_WORKERS,
            provider_timeout: DEFAULT_PROVIDER_TIMEOUT,
            provider_leeway_seconds: DEFAULT_PROVIDER_LEEWAY_SECONDS,
            app: None,
        }
    }
}

/// `plugins.identity-provider` as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSettings {
    lambda_time_limit_millis: Option<u64>,
    lambda_memory_limit_bytes: Option<u64>,
    pending_link_time_to_live_in_seconds: Option<u64>,
    max_pending_links: Option<u64>,
    max_pending_links_per_provider: Option<u64>,
    max_pending_link_bytes: Option<u64>,
    max_pending_link_bytes_per_provider: Option<u64>,
    lambda_workers: Option<u64>,
    provider_timeout_millis: Option<u64>,
    provider_leeway_seconds: Option<u64>,
}

impl Settings {
    /// Parses the settings mapping once into its typed form: `lambdaTimeLimitMillis`
    /// (1–60000), `lambdaMemoryLimitBytes` (1 MiB–1 GiB), `lambdaWorkers` (1–64),
    /// `pendingLinkTimeToLiveInSeconds` (1–86400), the pending-link bounds
    /// ([`parse_pending_limits`]), `providerTimeoutMillis` (100–60000) and
    /// `providerLeewaySeconds` (0–600); unknown keys are refused by name. The error names the
    /// key at fault.
    pub fn parse(settings: &Value) -> Result<Settings, String> {
        let raw: RawSettings = gatehouse_plugin_api::plugin::parse_settings(settings)?;
        let mut out = Settings::default();
        if let Some(millis) = raw.lambda_time_limit_millis {
            let millis = in_range("lambdaTimeLimitMillis", millis, (1, 60_000))?;
            out.lambda.time = Duration::from_millis(millis);
        }
        if let Some(bytes) = raw.lambda_memory_limit_bytes {
            let bytes = in_range("lambdaMemoryLimitBytes", bytes, (1 << 20, 1 << 30))?;
            out.lambda.memory_bytes = usize::try_from(bytes).map_err(|e| e.to_string())?;
        }
        if let Some(workers) = raw.lambda_workers {
            let workers = in_range("lambdaWorkers", workers, (1, 64))?;
            out.lambda_workers = usize::try_from(workers).map_err(|e| e.to_string())?;
        }
        parse_pending_limits(&raw, &mut out.pending_links)?;
        if let Some(millis) = raw.provider_timeout_millis {
            let millis = in_range("providerTimeoutMillis", millis, (100, 60_000))?;
            out.provider_timeout = Duration::from_millis(millis);
        }
        if let Some(seconds) = raw.provider_leeway_seconds {
            let seconds = in_range("providerLeewaySeconds", seconds, (0, 600))?;
            out.provider_leeway_seconds = i64::try_from(seconds).map_err(|e| e.to_string())?;
        }
        Ok(out)
    }
}

/// Reads the pending-link settings into `limits`: `pendingLinkTimeToLiveInSeconds` (1–86400),
/// `maxPendingLinks` and `maxPendingLinksPerProvider` (1–1000000), `maxPendingLinkBytes` and
/// `maxPendingLinkBytesPerProvider` (from [`MAX_PENDING_LINK_BYTES`], so any link fits, to
/// 1 GiB). The error names the key at fault.
fn parse_pending_limits(raw: &RawSettings, limits: &mut PendingLinkLimits) -> Result<(), String> {
    if let Some(seconds) = raw.pending_link_time_to_live_in_seconds {
        let seconds = in_range("pendingLinkTimeToLiveInSeconds", seconds, (1, 86_400))?;
        limits.ttl = Duration::from_secs(seconds);
    }
    let counts = (1, 1_000_000);
    let bytes = (MAX_PENDING_LINK_BYTES as u64, 1 << 30);
    let fields = [
        (
            "maxPendingLinks",
            raw.max_pending_links,
            counts,
            &mut limits.max_links,
        ),
        (
            "maxPendingLinksPerProvider",
            raw.max_pending_links_per_provider,
            counts,
            &mut limits.max_links_per_provider,
        ),
        (
            "maxPendingLinkBytes",
            raw.max_pending_link_bytes,
            bytes,
            &mut limits.max_bytes,
        ),
        (
            "maxPendingLinkBytesPerProvider",
            raw.max_pending_link_bytes_per_provider,
            bytes,
            &mut limits.max_bytes_per_provider,
        ),
    ];
    for (key, value, range, target) in fields {
        if let Some(value) = value {
            *target = usize::try_from(in_range(key, value, range)?).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// `value` when it is within `min..=max`, else a message naming the setting.
fn in_range(key: &str, value: u64, (min, max): (u64, u64)) -> Result<u64, String> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{key}` must be an integer from {min} to {max}"))
    }
}

/// The `login:` section as the host read and checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// `login.publicOrigin`: where browsers reach the gateway (`scheme://host[:port]`).
    pub public_origin: String,
    /// `login.basePath`: the routes' prefix (`/app`), without a trailing `/`.
    pub base_path: String,
    /// `login.redirects`: the other origins a redirect may name.
    pub redirects: Vec<String>,
}

impl AppSettings {
    /// `{publicOrigin}{basePath}/callback`: the `redirect_uri` of every authorization request.
    pub fn callback_url(&self) -> String {
        format!("{}{}/callback", self.public_origin, self.base_path)
    }
}

pub use gatehouse_refresh::refresh_env;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_checked() {
        assert_eq!(
            Settings::parse(&Value::Null).expect("ok"),
            Settings::default()
        );
        let s = Settings::parse(
            &json!({"lambdaTimeLimitMillis": 250, "pendingLinkTimeToLiveInSeconds": 60,
                    "lambdaWorkers": 2}),
        )
        .expect("ok");
        assert_eq!(s.lambda_workers, 2);
        assert_eq!(s.provider_timeout, DEFAULT_PROVIDER_TIMEOUT);
        let provider =
            Settings::parse(&json!({"providerTimeoutMillis": 750, "providerLeewaySeconds": 0}))
                .expect("ok");
        assert_eq!(provider.provider_timeout, Duration::from_millis(750));
        assert_eq!(provider.provider_leeway_seconds, 0);
        assert!(Settings::parse(&json!({"providerTimeoutMillis": 99})).is_err());
        assert!(Settings::parse(&json!({"providerLeewaySeconds": 601})).is_err());
        assert!(Settings::parse(&json!({"lambdaWorkers": 0})).is_err());
        assert!(Settings::parse(&json!({"lambdaWorkers": 65})).is_err());
        assert_eq!(s.lambda.time, Duration::from_millis(250));
        assert_eq!(s.pending_links.ttl, Duration::from_secs(60));
        let bounded = Settings::parse(&json!({"maxPendingLinks": 5, "maxPendingLinksPerProvider": 2,
            "maxPendingLinkBytes": 1 << 20, "maxPendingLinkBytesPerProvider": MAX_PENDING_LINK_BYTES}))
        .expect("ok");
        assert_eq!(
            (
                bounded.pending_links.max_links,
                bounded.pending_links.max_links_per_provider,
                bounded.pending_links.max_bytes,
                bounded.pending_links.max_bytes_per_provider
            ),
            (5, 2, 1 << 20, MAX_PENDING_LINK_BYTES)
        );
        for (key, value) in [
            ("maxPendingLinks", json!(0)),
            ("maxPendingLinksPerProvider", json!(-1)),
            ("maxPendingLinkBytes", json!(MAX_PENDING_LINK_BYTES - 1)),
            ("maxPendingLinkBytesPerProvider", json!(2u64 << 30)),
        ] {
            let err = Settings::parse(&json!({key: value})).expect_err(key);
            assert!(err.contains(key), "{err}");
        }
        assert!(Settings::parse(&json!({"lambdaTimeLimitMillis": 0})).is_err());
        assert!(Settings::parse(&json!({"nope": 1}))
            .unwrap_err()
            .contains("nope"));
        assert!(Settings::parse(&json!([1])).is_err());
    }

    #[test]
    fn tenant_visibility() {
        let t = Uuid::new_v4();
        let scoped = ApiKeyGrant {
            key_id: Uuid::new_v4(),
            tenant_id: Some(t),
        };
        let global = ApiKeyGrant {
            key_id: Uuid::new_v4(),
            tenant_id: None,
        };
        let mine = json!({"tenantId": t});
        let other = json!({"tenantId": Uuid::new_v4()});
        let shared = json!({});
        assert!(visible(&scoped, &mine) && visible(&scoped, &shared) && !visible(&scoped, &other));
        assert!(
            writable(&scoped, &mine) && !writable(&scoped, &shared) && !writable(&scoped, &other)
        );
        assert!(visible(&global, &other) && writable(&global, &other));
        assert!(wrapped(&json!({"lambda": 1}), "lambda").is_err());
        assert!(wrapped(&json!({}), "lambda").is_err());
    }

    #[test]
    fn a_scoped_view_keeps_only_its_tenants_applications_and_configuration() {
        let (mine, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        let (my_app, their_app, unknown_app) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let tenant_of = |app: Uuid| {
            (app == my_app)
                .then_some(mine)
                .or((app == their_app).then_some(theirs))
        };
        let mut doc = json!({
            "name": "global",
            "applicationConfiguration": {
                my_app.to_string(): {"enabled": true},
                their_app.to_string(): {"enabled": true},
                unknown_app.to_string(): {"enabled": true},
            },
            "tenantConfiguration": {
                mine.to_string(): {"data": {}},
                theirs.to_string(): {"data": {}},
            },
        });
        scoped_to(&mut doc, mine, &tenant_of);
        assert_eq!(
            doc,
            json!({
                "name": "global",
                "applicationConfiguration": {my_app.to_string(): {"enabled": true}},
                "tenantConfiguration": {mine.to_string(): {"data": {}}},
            })
        );
    }

    #[test]
    fn a_list_parameter_may_repeat_and_another_may_not() {
        let with_query = |query: &str| {
            PluginRequest::new(
                http::Method::GET,
                &format!("/api/identity-provider?{query}"),
            )
        };
        assert!(unambiguous_query(&with_query("loginIdTypes=email&loginIdTypes=username")).is_ok());
        assert!(unambiguous_query(&with_query("type=A&type=B")).is_err());
    }
}
