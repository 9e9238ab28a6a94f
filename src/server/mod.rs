//! Start-up and shutdown: open the store and apply the declared entities, load or generate the
//! keys, build the token service, the plugins and the API's runtime, then run the Pingora server
//! (proxy listener, optional TLS, optional demo upstream) until SIGTERM (graceful) or SIGINT
//! (fast). The proxy listener speaks HTTP/1.1, and HTTP/2 as `listenOptions` says: by ALPN on
//! TLS, with prior knowledge (h2c) on a plain listener ([`add_proxy_listener`]). [`admin`] is the
//! admin listener (`/metrics`, `/health`), [`echo`] the demo upstream.

pub mod admin;
pub mod echo;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_plugin_api::{
    ApiKeyRing, Clock, CpuPool, HttpClient, PluginContext, RemoteKeys, Store, StoreError,
    SystemClock, TokenService,
};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::proxy::HttpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::api::executor::ApiExecutor;
use crate::api::plugins::PluginRouter;
use crate::auth::issuers::config::DEFAULT_TIMEOUT_SECONDS;
use crate::auth::issuers::fetch::Fetcher;
use crate::auth::issuers::remote::RemoteKeySets;
use crate::auth::issuers::Issuers;
use crate::auth::keys::{generate_material, KeyRing, SigningKey};
use crate::auth::revocation_sync::RevocationSync;
use crate::auth::tokens::{CacheLimits, Tokens};
use crate::config::{Config, KeySource, KeySpec, ListenProtocols};
use crate::observe::metrics::Metrics;
use crate::proxy::routes::{RouteTable, UpstreamResolver, DNS_REFRESH_INTERVAL};
use crate::proxy::{Gateway, ProxySettings};
use crate::server::admin::Admin;
use crate::server::echo::Echo;
use crate::store::GatewayStore;
use gatehouse_plugin_api::model::KeyMaterial;

/// Why the gateway could not start.
#[derive(Debug)]
pub enum StartError {
    /// The store could not be opened or written.
    Store(StoreError),
    /// A problem with a named configuration path.
    Setup {
        /// The configuration path, e.g. `keys[1]`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The listener cannot be bound.
    Listen(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Store(e) => write!(f, "store: {e}"),
            StartError::Setup { path, message } => write!(f, "{path}: {message}"),
            StartError::Listen(m) => write!(f, "listen: {m}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError::Store(e)
    }
}

/// Everything the proxy needs, ready to serve.
pub struct Prepared {
    /// The proxy.
    pub gateway: Gateway,
    /// The token service (for background pruning).
    pub tokens: Arc<Tokens>,
    /// The store.
    pub store: Arc<dyn GatewayStore>,
    /// What resolves upstream host names again; `None` when every upstream is an IP address.
    pub upstream_resolver: Option<UpstreamResolver>,
    /// The admin service (`/metrics`, `/health`).
    pub admin: Admin,
    /// The trusted issuers, whose keys are fetched once the server runs.
    pub issuers: Arc<Issuers>,
}

/// Loads the key ring: declared material as is, generated keys from the store (generating and
/// persisting them on first start).
pub async fn load_keys(
    config: &Config,
    store: &dyn GatewayStore,
    clock: &dyn Clock,
) -> Result<KeyRing, StartError> {
    let mut keys = Vec::with_capacity(config.keys.len());
    for (index, spec) in config.keys.iter().enumerate() {
        let path = format!("keys[{index}]");
        let material = if spec.source == KeySource::Generate {
            Some(generated_material(spec, &path, store, clock).await?)
        } else {
            None
        };
        let key = SigningKey::from_spec(spec, material.as_ref())
            .map_err(|message| StartError::Setup { path, message })?;
        keys.push(key);
    }
    Ok(KeyRing::new(keys))
}

/// The material of a generated key: as stored, or generated and stored on first start. An
/// error when the stored key has another algorithm than the declared one.
async fn generated_material(
    spec: &KeySpec,
    path: &str,
    store: &dyn GatewayStore,
    clock: &dyn Clock,
) -> Result<KeyMaterial, StartError> {
    let stored = match store.get_key_material(spec.id).await? {
        Some(m) => m,
        None => {
            let generated = generate_material(spec, clock.now_millis()).map_err(|message| {
                StartError::Setup {
                    path: path.to_string(),
                    message,
                }
            })?;
            store.insert_key_material(&generated).await?
        }
    };
    let wanted = spec.algorithm.name();
    if stored.algorithm != wanted {
        return Err(StartError::Setup {
            path: format!("{path}.algorithm"),
            message: format!(
                "the key generated earlier under this id is {}, not {wanted}; give the key a new id",
                stored.algorithm
            ),
        });
    }
    Ok(stored)
}

/// Outbound HTTP and remote keys, as the plugin context holds them.
type OutboundPorts = (Arc<dyn HttpClient>, Arc<dyn RemoteKeys>);

/// The plugins' ports to other servers: outbound HTTP with the key fetches' client and limits
/// (system roots), and key sets of issuers named at run time, counted in `metrics`.
fn outbound_ports(metrics: &Arc<Metrics>) -> Result<OutboundPorts, StartError> {
    let outbound =
        Fetcher::new(Duration::from_secs(DEFAULT_TIMEOUT_SECONDS), None).map_err(|message| {
            StartError::Setup {
                path: "plugins".into(),
                message,
            }
        })?;
    let keys = RemoteKeySets::new(outbound.clone(), metrics.clone());
    Ok((Arc::new(outbound), Arc::new(keys)))
}

/// Opens the store, applies the declared entities, and builds the gateway.
pub async fn prepare(config: &Config) -> Result<Prepared, StartError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = crate::store::open(&config.store, clock.clone()).await?;
    apply_declared(config, store.as_ref()).await?;
    let ring = load_keys(config, store.as_ref(), clock.as_ref()).await?;
    let metrics = Arc::new(Metrics::new());
    let issuers = Arc::new(Issuers::new(&config.issuers, &metrics).map_err(
        |(index, message)| StartError::Setup {
            path: format!("issuers[{index}].caFile"),
            message,
        },
    )?);
    let tokens = Arc::new(
        Tokens::new(
            ring,
            &config.tenants,
            &config.applications,
            config.leeway_seconds,
            CacheLimits {
                entries: config.token_cache_capacity,
                bytes: config.token_cache_max_bytes,
            },
            clock.clone(),
            metrics.clone(),
        )
        .with_issuers(issuers.clone()),
    );

    // Revocations recorded earlier (by this node or another sharing the store) still apply.
    for (scope, at) in store.list_revocations(tokens.revocation_horizon()).await? {
        tokens.record_revocation(scope, at);
    }

    let plugins: Vec<_> = config
        .plugins
        .iter()
        .map(|settings| settings.build(&store))
        .collect();
    let router = PluginRouter::new(&plugins).map_err(|message| StartError::Setup {
        path: "plugins".into(),
        message,
    })?;
    let routes = RouteTable::new(config.routes.clone()).map_err(|message| StartError::Setup {
        path: "routes".into(),
        message,
    })?;
    let (http, remote_keys) = outbound_ports(&metrics)?;
    let context = PluginContext {
        store: store.clone() as Arc<dyn Store>,
        tokens: tokens.clone() as Arc<dyn TokenService>,
        api_keys: Arc::new(ApiKeyRing::new(config.api_keys.clone())),
        clock,
        secure_cookies: config.secure_cookies,
        race_window_ms: config.race_window_ms,
        rotations: Arc::default(),
        cpu: CpuPool::new(config.api.threads),
        http,
        remote_keys,
    };
    let api = ApiExecutor::start(config.api).map_err(|e| StartError::Setup {
        path: "api.threads".into(),
        message: format!("cannot start the API runtime: {e}"),
    })?;
    let upstream_resolver = routes.resolver();
    let admin = Admin {
        metrics: metrics.clone(),
        store: store.clone(),
    };
    let gateway = Gateway::new(
        routes,
        router,
        store.clone(),
        context,
        tokens.clone(),
        metrics,
        ProxySettings {
            max_body_bytes: config.max_body_bytes,
            max_header_bytes: config.max_header_bytes,
            tls: config.tls.is_some(),
            secure_cookies: config.secure_cookies,
            path_options: config.path_options,
            idle_timeout_seconds: config.idle_timeout_seconds,
            trusted_proxies: config.trusted_proxies.clone(),
            access_log: config.access_log,
            forward_auth: config.forward_auth.clone(),
        },
        api,
    );
    Ok(Prepared {
        gateway,
        tokens,
        store,
        upstream_resolver,
        admin,
        issuers,
    })
}

/// Writes what the file declares into the store (the file is the source of truth for what it
/// declares): tenants, applications, API keys, lambdas and identity providers with an id.
async fn apply_declared(config: &Config, store: &dyn GatewayStore) -> Result<(), StartError> {
    for tenant in &config.tenants {
        store.upsert_tenant(tenant).await?;
    }
    for application in &config.applications {
        store.upsert_application(application).await?;
    }
    store.replace_api_keys(&config.api_keys).await?;
    let id_of = |document: &serde_json::Value| {
        document
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|s| uuid::Uuid::parse_str(s).ok())
    };
    for lambda in &config.lambdas {
        if let Some(id) = id_of(lambda) {
            store.put_lambda(id, lambda).await?;
        }
    }
    for provider in &config.identity_providers {
        if let Some(id) = id_of(provider) {
            store.put_identity_provider(id, provider).await?;
        }
    }
    Ok(())
}

/// Fails early, with a clear message, when an address cannot be bound.
fn check_bindable(addr: SocketAddr, what: &str) -> Result<(), StartError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| StartError::Listen(format!("cannot listen on {addr} ({what}): {e}")))
}

/// Starts the thread that keeps the in-memory revocation set in step with the store (see
/// [`RevocationSync`]).
fn spawn_revocation_sync(
    tokens: Arc<Tokens>,
    store: Arc<dyn GatewayStore>,
) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Setup {
            path: String::new(),
            message: format!("cannot start the revocation runtime: {e}"),
        })?;
    std::thread::Builder::new()
        .name("revocation-sync".into())
        .spawn(move || {
            let sync = runtime.block_on(async { RevocationSync::new(tokens, store) });
            runtime.block_on(sync.run());
        })
        .map(drop)
        .map_err(|e| StartError::Setup {
            path: String::new(),
            message: format!("cannot start the revocation thread: {e}"),
        })
}

/// Starts the thread that resolves upstream host names again every [`DNS_REFRESH_INTERVAL`].
fn spawn_upstream_dns(resolver: UpstreamResolver) -> Result<(), StartError> {
    std::thread::Builder::new()
        .name("upstream-dns".into())
        .spawn(move || loop {
            std::thread::sleep(DNS_REFRESH_INTERVAL);
            for failure in resolver.refresh() {
                tracing::warn!(error = %failure, "upstream lookup failed; keeping the last address");
            }
        })
        .map(drop)
        .map_err(|e| StartError::Setup {
            path: String::new(),
            message: format!("cannot start the upstream DNS thread: {e}"),
        })
}

/// Adds the proxy's listener at `listen`: TLS with these certificate and key files when `tls`
/// is given, offering `h2` and `http/1.1` by ALPN when `protocols.http2`; plain otherwise,
/// reading a connection that opens with the HTTP/2 preface as h2c when `protocols.h2c` (any
/// other as HTTP/1.1). `Err` when the TLS settings cannot be made.
fn add_proxy_listener(
    proxy: &mut Service<HttpProxy<crate::proxy::Gateway>>,
    listen: &str,
    tls: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    protocols: ListenProtocols,
) -> Result<(), StartError> {
    match tls {
        Some((cert, key)) => {
            let mut settings =
                TlsSettings::intermediate(&cert.to_string_lossy(), &key.to_string_lossy())
                    .map_err(|e| StartError::Listen(format!("TLS on {listen}: {e}")))?;
            if protocols.http2 {
                settings.enable_h2();
            }
            proxy.add_tls_with_settings(listen, None, settings);
        }
        None => {
            proxy.add_tcp(listen);
            if protocols.h2c {
                let mut options = HttpServerOptions::default();
                options.h2c = true;
                if let Some(app) = proxy.app_logic_mut() {
                    app.server_options = Some(options);
                }
            }
        }
    }
    Ok(())
}

/// Runs the gateway until it is told to stop.
pub fn run(config: Config) -> Result<(), StartError> {
    check_bindable(config.listen, "gateway")?;
    if let Some(demo) = config.demo_upstream {
        check_bindable(demo, "demo upstream")?;
    }
    if let Some(admin) = config.admin_listen {
        check_bindable(admin, "admin")?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| StartError::Setup {
            path: "threads".into(),
            message: format!("cannot start a runtime: {e}"),
        })?;
    let prepared = runtime.block_on(prepare(&config))?;
    runtime.shutdown_timeout(Duration::from_secs(1));

    if config.uses_demo_api_key {
        tracing::warn!(
            "!!! An API key is the demo key shipped in config.yaml. Anyone who has read the README can call the API. \
             Set GATEHOUSE_API_KEY (or edit apiKeys) before exposing this gateway. !!!"
        );
    }

    let conf = ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(config.shutdown_timeout_seconds),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let listen = config.listen.to_string();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, prepared.gateway);
    add_proxy_listener(&mut proxy, &listen, config.tls.as_ref(), config.protocols)?;
    server.add_service(proxy);
    if let Some(demo) = config.demo_upstream {
        let mut echo = Service::new("demo upstream".to_string(), Echo);
        echo.add_tcp(&demo.to_string());
        server.add_service(echo);
        tracing::info!(address = %demo, "demo upstream (echo) listening");
    }

    if let Some(address) = config.admin_listen {
        if !address.ip().is_loopback() {
            tracing::warn!(address = %address, "the admin listener (/metrics, /health) is not on loopback: keep it on a private network");
        }
        let mut admin = Service::new("admin".to_string(), prepared.admin);
        admin.add_tcp(&address.to_string());
        server.add_service(admin);
        tracing::info!(address = %address, "admin listener (/metrics, /health)");
    }
    spawn_revocation_sync(prepared.tokens, prepared.store)?;
    prepared.issuers.start().map_err(|e| StartError::Setup {
        path: "issuers".into(),
        message: format!("cannot start the key fetching thread: {e}"),
    })?;
    if let Some(resolver) = prepared.upstream_resolver {
        spawn_upstream_dns(resolver)?;
    }

    tracing::info!(
        address = %config.listen,
        tls = config.tls.is_some(),
        http2 = config.protocols.http2 && config.tls.is_some(),
        h2c = config.protocols.h2c,
        routes = config.routes.len(),
        issuers = config.issuers.len(),
        plugins = config.plugins.len(),
        "gatehouse listening"
    );
    server.run(RunArgs::default());
    tracing::info!("gatehouse stopped");
    Ok(())
}
