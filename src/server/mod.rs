//! Start-up and shutdown: open what lasts as long as the process ([`Process`]: the store, with
//! the declared entities applied, the metrics, the API's runtime), [`build`] the gateway of the
//! configuration (keys, token service, issuers, plugins, routes), then run the Pingora server
//! (proxy listener, optional TLS, optional demo upstream) until SIGTERM (graceful) or SIGINT
//! (fast); SIGHUP builds the gateway again from the file and swaps it in ([`reload`]); SIGQUIT
//! hands the listeners to a new binary started with `--upgrade` ([`upgrade`]), and both ways
//! out end as soon as the proxy has nothing under way ([`drain`]). The
//! proxy listener speaks HTTP/1.1, and HTTP/2 as `listenOptions` says: by ALPN on TLS, with
//! prior knowledge (h2c) on a plain listener ([`proxy_service`]). [`admin`] is the admin
//! listener (`/metrics`, `/health`, `POST /reload`), [`echo`] the demo upstream.

pub mod admin;
pub mod drain;
pub mod echo;
pub mod reload;
pub mod tls;
pub mod upgrade;

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use gatehouse_plugin_api::{
    ApiKeyRing, Clock, CpuPool, HttpClient, PluginContext, RemoteKeys, RotationLedger, Store,
    StoreError, SystemClock, TokenService,
};
use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
use pingora::proxy::HttpProxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::api::executor::ApiExecutor;
use crate::api::plugins::PluginRouter;
use crate::auth::cached::ClaimPlan;
use crate::auth::issuers::config::DEFAULT_TIMEOUT_SECONDS;
use crate::auth::issuers::fetch::Fetcher;
use crate::auth::issuers::remote::RemoteKeySets;
use crate::auth::issuers::Issuers;
use crate::auth::keys::{generate_material, KeyRing, SigningKey};
use crate::auth::revocation_sync::RevocationSync;
use crate::auth::tokens::{CacheLimits, RevocationSet, Tokens};
use crate::config::{Config, KeySource, KeySpec, ListenProtocols};
use crate::observe::metrics::Metrics;
use crate::proxy::routes::{RouteTable, UpstreamResolver, DNS_REFRESH_INTERVAL};
use crate::proxy::{Gateway, LiveGateway, ProxySettings};
use crate::server::admin::Admin;
use crate::server::drain::{Drain, Draining};
use crate::server::echo::Echo;
use crate::server::tls::Certificates;
use crate::store::configured::ConfiguredStore;
use crate::store::{Declared, GatewayStore};
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

/// What every gateway of the process is built on, opened once at start and kept by reloads:
/// the store, the metrics, the clock, the API's runtime, the rotations under way and the
/// plugins' ports to other servers.
#[derive(Clone)]
pub struct Process {
    /// The store.
    pub store: Arc<dyn GatewayStore>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The REST API's runtime.
    pub api: Arc<ApiExecutor>,
    /// The one-time-use rotations under way or unconfirmed on this node.
    pub rotations: Arc<RotationLedger>,
    /// The bound on the API handlers' CPU-heavy steps.
    pub cpu: CpuPool,
    /// Where the proxy and the API make expensive (RSA) signatures: one slot per core, its own
    /// pool so that a refresh never waits behind an API handler's step (see
    /// [`Tokens::signing_on`]).
    pub signer: CpuPool,
    /// The plugins' outbound HTTP client (the key fetches' client and limits).
    pub http: Arc<dyn HttpClient>,
    /// The key sets of issuers plugins name at run time (OpenID Connect providers).
    pub remote_keys: Arc<dyn RemoteKeys>,
}

/// A gateway built from one configuration, with the parts that run beside it.
pub struct Built {
    /// The proxy.
    pub gateway: Gateway,
    /// Its token service.
    pub tokens: Arc<Tokens>,
    /// Its trusted issuers, whose keys are fetched once started.
    pub issuers: Arc<Issuers>,
    /// What resolves its upstream host names again; `None` when every upstream is an IP
    /// address.
    pub upstream_resolver: Option<UpstreamResolver>,
}

/// The gateway a new one replaces on a reload, and its issuers.
pub struct Previous<'a> {
    /// The gateway in force.
    pub gateway: &'a Gateway,
    /// Its trusted issuers.
    pub issuers: &'a Issuers,
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
    /// What the gateway is built on (kept for reloads).
    pub process: Process,
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
    warn_login_routes_without_provider(config, store.as_ref()).await;
    let api = ApiExecutor::start(config.api).map_err(|e| StartError::Setup {
        path: "api.threads".into(),
        message: format!("cannot start the API runtime: {e}"),
    })?;
    let metrics = Arc::new(Metrics::new());
    let (http, remote_keys) = outbound_ports(&metrics)?;
    let process = Process {
        store: store.clone(),
        metrics,
        clock,
        api: Arc::new(api),
        rotations: Arc::default(),
        cpu: CpuPool::new(config.api.threads),
        signer: CpuPool::default(),
        http,
        remote_keys,
    };
    let built = build(config, &process, None).await?;
    // Revocations recorded earlier (by this node or another sharing the store) still apply.
    for (scope, at) in store
        .list_revocations(built.tokens.revocation_horizon())
        .await?
    {
        built.tokens.record_revocation(scope, at);
    }
    let admin = Admin {
        metrics: process.metrics.clone(),
        store: store.clone(),
        reload: None,
        idle_timeout_seconds: config.idle_timeout_seconds,
    };
    Ok(Prepared {
        gateway: built.gateway,
        tokens: built.tokens,
        store,
        upstream_resolver: built.upstream_resolver,
        admin,
        issuers: built.issuers,
        process,
    })
}

/// Builds a gateway for `config` on `process`: the key ring (generated keys read from the
/// store, or generated and stored), the trusted issuers, the token service, the plugins and
/// the route table (host names resolved). For a reload, `previous` is the gateway it replaces:
/// the revocations, the transparent refreshes under way and the keys of unchanged issuers
/// carry over. Writes nothing but generated key material; `Err` names the configuration path
/// at fault.
pub async fn build(
    config: &Config,
    process: &Process,
    previous: Option<Previous<'_>>,
) -> Result<Built, StartError> {
    let ring = load_keys(config, process.store.as_ref(), process.clock.as_ref()).await?;
    let metrics = &process.metrics;
    let issuers = Arc::new(
        Issuers::after(
            &config.issuers,
            metrics,
            previous.as_ref().map(|p| p.issuers),
        )
        .map_err(|(index, message)| StartError::Setup {
            path: format!("issuers[{index}].caFile"),
            message,
        })?,
    );
    let mut tokens = Tokens::new(
        ring,
        &config.tenants,
        &config.applications,
        config.leeway_seconds,
        CacheLimits {
            entries: config.token_cache_capacity,
            bytes: config.token_cache_max_bytes,
        },
        process.clock.clone(),
        metrics.clone(),
    )
    .with_claim_plan(claim_plan(&config.routes))
    .with_issuers(issuers.clone())
    .signing_on(process.signer.clone());
    if let Some(previous) = &previous {
        tokens = tokens.sharing_revocations(previous.gateway.tokens().revocation_set());
    }
    let tokens = Arc::new(tokens);
    let plugins: Vec<_> = config
        .plugins
        .iter()
        .map(|settings| settings.build(&process.store))
        .collect();
    for plugin in &plugins {
        plugin.start().await.map_err(|message| StartError::Setup {
            path: format!("plugins.{}", plugin.name()),
            message,
        })?;
    }
    let router = PluginRouter::new(&plugins).map_err(|message| StartError::Setup {
        path: "plugins".into(),
        message,
    })?;
    let routes = RouteTable::new(config.routes.clone()).map_err(|message| StartError::Setup {
        path: "routes".into(),
        message,
    })?;
    let context = PluginContext {
        // Tenants and applications as this node's file declares them (see `ConfiguredStore`).
        store: Arc::new(ConfiguredStore::new(
            process.store.clone(),
            &config.tenants,
            &config.applications,
        )) as Arc<dyn Store>,
        tokens: tokens.clone() as Arc<dyn TokenService>,
        api_keys: Arc::new(ApiKeyRing::new(config.api_keys.clone())),
        clock: process.clock.clone(),
        secure_cookies: config.secure_cookies,
        race_window_ms: config.race_window_ms,
        rotations: process.rotations.clone(),
        cpu: process.cpu.clone(),
        http: process.http.clone(),
        remote_keys: process.remote_keys.clone(),
    };
    let upstream_resolver = routes.resolver();
    let mut gateway = Gateway::new(
        routes,
        router,
        process.store.clone(),
        context,
        tokens.clone(),
        metrics.clone(),
        proxy_settings(config),
        process.api.clone(),
    );
    if let Some(previous) = &previous {
        gateway = gateway.succeeding(previous.gateway);
    }
    Ok(Built {
        gateway,
        tokens,
        issuers,
        upstream_resolver,
    })
}

/// The proxy's request-time settings in `config`.
fn proxy_settings(config: &Config) -> ProxySettings {
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
    }
}

/// Writes what the file declares into the store (the file is the source of truth for what it
/// declares): tenants, applications, API keys, lambdas and identity providers with an id, in
/// one transaction: `Err` when any write failed, and then none was made. A declared provider
/// managing a domain another provider manages is named by its path
/// (`identityProviders[1].domains[0]`).
pub async fn apply_declared(config: &Config, store: &dyn GatewayStore) -> Result<(), StartError> {
    store
        .apply_declared(&declared(config))
        .await
        .map_err(|e| match crate::store::declared_problem(&e) {
            Some((path, message)) => StartError::Setup { path, message },
            None => StartError::Store(e),
        })
}

/// Logs a warning per `login: true` route whose application has no enabled `OpenIDConnect`
/// provider in the store (declared in the file or created through the API): browsers sent to
/// log in there get a 400 until one is created. A store that cannot be read is logged too (the
/// start goes on: the check is advice, not a condition).
pub async fn warn_login_routes_without_provider(config: &Config, store: &dyn GatewayStore) {
    if !config.routes.iter().any(|r| r.auth.login_path.is_some()) {
        return;
    }
    let providers = match store.list_identity_providers().await {
        Ok(providers) => providers,
        Err(e) => {
            tracing::warn!("cannot list the identity providers to check the login routes: {e}");
            return;
        }
    };
    for (path, app) in crate::config::login::routes_without_provider(&config.routes, &providers) {
        tracing::warn!(
            "{path}: no enabled OpenIDConnect identity provider in the store is enabled for application {app}; browsers sent to log in get a 400 until one is created"
        );
    }
}

/// What `config` declares for the store: lambdas and identity providers only when their
/// document has an `id` (a UUID).
fn declared(config: &Config) -> Declared {
    let with_id = |documents: &[serde_json::Value]| {
        documents
            .iter()
            .filter_map(|document| {
                let id = document.get("id")?.as_str()?;
                Some((uuid::Uuid::parse_str(id).ok()?, document.clone()))
            })
            .collect()
    };
    Declared {
        tenants: config.tenants.clone(),
        applications: config.applications.clone(),
        api_keys: config.api_keys.clone(),
        lambdas: with_id(&config.lambdas),
        identity_providers: with_id(&config.identity_providers),
    }
}

/// Fails early, with a clear message naming the configuration `field` that gives `addr`, when
/// the address cannot be bound.
fn check_bindable(addr: SocketAddr, field: &str) -> Result<(), StartError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| StartError::Setup {
            path: field.to_string(),
            message: format!("cannot listen on {addr}: {e}"),
        })
}

/// Fails early, with a clear message, when an address of a listener is taken.
fn check_listeners_free(config: &Config) -> Result<(), StartError> {
    check_bindable(config.listen, "listen")?;
    if let Some(demo) = config.demo_upstream {
        check_bindable(demo, "demoUpstream.listen")?;
    }
    if let Some(admin) = config.admin_listen {
        check_bindable(admin, "admin.listen")?;
    }
    Ok(())
}

/// Starts the thread that keeps the in-memory revocation set in step with the store (see
/// [`RevocationSync`]).
fn spawn_revocation_sync(
    revocations: Arc<RevocationSet>,
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
            let sync = runtime.block_on(async { RevocationSync::new(revocations, store) });
            runtime.block_on(sync.run());
        })
        .map(drop)
        .map_err(|e| StartError::Setup {
            path: String::new(),
            message: format!("cannot start the revocation thread: {e}"),
        })
}

/// Starts the thread that resolves upstream host names again every [`DNS_REFRESH_INTERVAL`]:
/// those of the route table in force (`resolver`, which a reload replaces).
fn spawn_upstream_dns(resolver: Arc<ArcSwapOption<UpstreamResolver>>) -> Result<(), StartError> {
    std::thread::Builder::new()
        .name("upstream-dns".into())
        .spawn(move || loop {
            std::thread::sleep(DNS_REFRESH_INTERVAL);
            let Some(resolver) = resolver.load_full() else {
                continue;
            };
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

/// The proxy's service, serving `live` and counted in `drain`, listening at `listen`: TLS with
/// the certificate in force in `tls` (which a reload can replace) when given, offering `h2`
/// and `http/1.1` by ALPN when `protocols.http2`; plain otherwise, reading a connection that
/// opens with the HTTP/2 preface as h2c when `protocols.h2c` (any other as HTTP/1.1); an
/// HTTP/2 connection with no stream open for `h2_idle_timeout` is closed; at most
/// `max_connections` client connections are open at once (the next is accepted when one
/// closes). `Err` when the TLS settings cannot be made.
fn proxy_service(
    conf: &Arc<ServerConf>,
    live: LiveGateway,
    drain: Arc<Drain>,
    listen: &str,
    tls: Option<Arc<Certificates>>,
    (protocols, h2_idle_timeout, max_connections): (ListenProtocols, Duration, usize),
) -> Result<Service<Draining<HttpProxy<LiveGateway>>>, StartError> {
    let mut app = HttpProxy::new(live, conf.clone());
    app.handle_init_modules();
    let mut options = HttpServerOptions::default();
    options.h2c = tls.is_none() && protocols.h2c;
    options.h2_idle_timeout = Some(h2_idle_timeout);
    app.server_options = Some(options);
    let mut proxy = Service::new(
        "Pingora HTTP Proxy Service".to_string(),
        Draining::new(app, drain),
    );
    proxy.set_connection_limit(max_connections);
    match tls {
        Some(certificates) => {
            let mut settings = TlsSettings::intermediate("", "")
                .map_err(|e| StartError::Listen(format!("TLS on {listen}: {e}")))?;
            settings.set_cert_resolver(certificates);
            if protocols.http2 {
                settings.enable_h2();
            }
            proxy.add_listener(client_listener(listen).tls(settings));
        }
        None => proxy.add_listener(client_listener(listen)),
    }
    Ok(proxy)
}

/// The most bytes of an answer to a client gathered before they are sent: room for a response
/// header with the cookies of a refresh or a login (two tokens, over 1.4 KB) and a small body,
/// which the engine's default (one segment, 1460 bytes) sends in two writes, each waking the
/// client. A connection's buffer is allocated once, when it is accepted. The engine sends a
/// body with a `Content-Length` when the buffer is full or the body complete (so a trickled
/// one goes out in pieces of up to this size), and a chunked or close-delimited body (a
/// stream) on every write.
const CLIENT_WRITE_BUFFER_BYTES: usize = 4 * DEFAULT_L4_WRITE_BUFFER_SIZE;

/// The client listener on `listen`, its write buffer [`CLIENT_WRITE_BUFFER_BYTES`].
fn client_listener(listen: &str) -> ListenerConfig {
    ListenerConfig::tcp(listen)
        .l4_buffer(L4BufferSettings::default().write(CLIENT_WRITE_BUFFER_BYTES))
}

/// The TLS listener's certificate and key, read from the files `config.tls` names; `None`
/// without TLS. `Err` names the file's field.
fn load_certificates(config: &Config) -> Result<Option<Arc<Certificates>>, StartError> {
    let Some((cert, key)) = &config.tls else {
        return Ok(None);
    };
    Certificates::load(cert, key)
        .map(Some)
        .map_err(|e| StartError::Setup {
            path: e.field.to_string(),
            message: e.message,
        })
}

/// The admin listener's service at `address`, serving `admin` (a warning when `address` is
/// not on loopback).
fn admin_service(address: SocketAddr, admin: Admin) -> Service<Admin> {
    if !address.ip().is_loopback() {
        tracing::warn!(address = %address, "the admin listener (/metrics, /health) is not on loopback: keep it on a private network");
    }
    let mut service = Service::new("admin".to_string(), admin);
    service.add_tcp(&address.to_string());
    tracing::info!(address = %address, "admin listener (/metrics, /health, POST /reload)");
    service
}

/// The Pingora server for `config`, its listeners received from the running gateway when
/// `upgrade` (this waits up to [`upgrade::RECEIVE_SECONDS`]; without them Pingora ends the
/// process with status 1).
fn pingora_server(config: &Config, upgrade: bool) -> Server {
    let conf = ServerConf {
        threads: config.threads,
        // The drain thread ends the grace period as soon as nothing is under way.
        grace_period_seconds: Some(config.shutdown_timeout_seconds),
        graceful_shutdown_timeout_seconds: Some(config.shutdown_timeout_seconds),
        upgrade_sock: config.upgrade_socket.to_string_lossy().into_owned(),
        // Timeouts of a second or more (the upstream's read timeout, the idle keep-alive
        // timeout, connection timeouts) on Tokio's timer wheel rather than the engine's
        // shared timer map: on every request these arm at least two, and Tokio's wheel arms
        // and drops one for less (0.9k instructions a request fewer, about 2% less CPU on the
        // open route and 4% on the RS256 route in alternated runs). Same timeouts, 1 ms
        // resolution instead of 10 ms.
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    if upgrade {
        tracing::info!(socket = %config.upgrade_socket.display(), seconds = upgrade::RECEIVE_SECONDS,
            "waiting for the running gateway's listeners: send it SIGQUIT");
    }
    server.bootstrap();
    if upgrade {
        tracing::info!("listeners received from the running gateway");
    }
    server
}

/// The drain of the proxy, with the thread that ends the process once it is drained in a
/// graceful shutdown (see [`drain`]).
fn start_drain(server: &Server, config: &Config) -> Result<Arc<Drain>, StartError> {
    let drain = Arc::new(Drain::default());
    drain::spawn_exit_when_drained(
        server.watch_execution_phase(),
        drain.clone(),
        Duration::from_secs(config.shutdown_timeout_seconds),
    )
    .map_err(|e| StartError::Setup {
        path: String::new(),
        message: format!("cannot start the drain thread: {e}"),
    })?;
    Ok(drain)
}

/// Adds the services of `config` to `server`: the proxy serving `live` (counted in `drain`),
/// the demo upstream, and the admin listener serving `admin`, each when configured. `Err` when
/// the proxy's TLS settings cannot be made.
fn add_services(
    server: &mut Server,
    config: &Config,
    live: LiveGateway,
    drain: Arc<Drain>,
    certificates: Option<Arc<Certificates>>,
    admin: Admin,
) -> Result<(), StartError> {
    let listen = config.listen.to_string();
    let proxy = proxy_service(
        &server.configuration,
        live,
        drain,
        &listen,
        certificates,
        // HTTP/2 connections idle as long as HTTP/1 keep-alive ones; the engine takes this at
        // start, so a reloaded `idleTimeoutSeconds` reaches HTTP/2 at the next start.
        (
            config.protocols,
            Duration::from_secs(config.idle_timeout_seconds),
            config.max_connections,
        ),
    )?;
    server.add_service(proxy);
    if let Some(demo) = config.demo_upstream {
        let mut echo = Service::new("demo upstream".to_string(), Echo);
        echo.add_tcp(&demo.to_string());
        server.add_service(echo);
        tracing::info!(address = %demo, "demo upstream (echo) listening");
    }
    if let Some(address) = config.admin_listen {
        server.add_service(admin_service(address, admin));
    }
    Ok(())
}

/// Has the requests the engine refuses before any proxy phase (see
/// `pingora::protocols::http::refusals`) recorded as the phases' are: by the gateway in force.
fn record_engine_refusals(live: &LiveGateway) {
    let live = live.clone();
    pingora::protocols::http::refusals::set_refusal_hook(Box::new(move |refusal| {
        live.current()
            .record_engine_refusal(refusal.status, refusal.method, refusal.target);
    }));
}

/// Runs the gateway until it is told to stop; `SIGHUP` reloads `path` (see [`reload`]). With
/// `upgrade`, the listeners are received from the running gateway over `upgradeSocket` instead
/// of bound (see [`upgrade`]); `SIGQUIT` hands this gateway's listeners to the next one.
pub fn run(config: Config, path: &Path, upgrade: bool) -> Result<(), StartError> {
    // First of all: from here on SIGHUP no longer ends the process.
    let hangup = reload::listen_for_hangup().map_err(|e| StartError::Setup {
        path: String::new(),
        message: format!("cannot listen for SIGHUP: {e}"),
    })?;
    if upgrade {
        upgrade::check_receivable(&config.upgrade_socket)?;
    } else {
        check_listeners_free(&config)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| StartError::Setup {
            path: "threads".into(),
            message: format!("cannot start a runtime: {e}"),
        })?;
    let certificates = load_certificates(&config)?;
    let prepared = runtime.block_on(prepare(&config))?;
    // After the store is open: its directory, the default socket's, exists from then on.
    if let Some(problem) = crate::config::upgrade::socket_problem(&config.upgrade_socket) {
        tracing::warn!(
            "upgradeSocket: {problem}; binary upgrades (SIGQUIT) are refused until it is fixed"
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(1));

    if config.uses_demo_api_key {
        tracing::warn!(
            "!!! An API key is the demo key shipped in config.yaml. Anyone who has read the README can call the API. \
             Set GATEHOUSE_API_KEY (or edit apiKeys) before exposing this gateway. !!!"
        );
    }

    let mut server = pingora_server(&config, upgrade);
    let live = LiveGateway::new(prepared.gateway);
    record_engine_refusals(&live);
    let dns = Arc::new(ArcSwapOption::new(prepared.upstream_resolver.map(Arc::new)));
    spawn_revocation_sync(prepared.tokens.revocation_set(), prepared.store.clone())?;
    // The first gateway's token service lives in the gateway from here on: kept here too, it
    // (and its trusted issuers' key fetching) would outlive the reload that retires it.
    drop(prepared.tokens);
    prepared.issuers.start().map_err(|e| StartError::Setup {
        path: "issuers".into(),
        message: format!("cannot start the key fetching thread: {e}"),
    })?;
    spawn_upstream_dns(dns.clone())?;
    let reloader = reload::Reloader::new(
        path,
        config.clone(),
        prepared.process,
        live.clone(),
        prepared.issuers,
        dns,
    )
    .serving(certificates.clone());
    let reloads = reload::spawn(reloader, hangup).map_err(|e| StartError::Setup {
        path: String::new(),
        message: format!("cannot start the reload thread: {e}"),
    })?;

    let drain = start_drain(&server, &config)?;
    let admin = Admin {
        reload: Some(reloads.handle),
        ..prepared.admin
    };
    add_services(
        &mut server,
        &config,
        live,
        drain.clone(),
        certificates,
        admin,
    )?;

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
    server.run(RunArgs {
        shutdown_signal: Box::new(upgrade::Signals {
            socket: config.upgrade_socket.clone(),
            drain,
        }),
    });
    tracing::info!("gatehouse stopped");
    Ok(())
}

/// The claims the hot path reads from a cached token under `routes`: every identity header's
/// claim and every exact-match claim check.
fn claim_plan(routes: &[crate::config::Route]) -> ClaimPlan {
    let headers = routes
        .iter()
        .flat_map(|r| r.identity_headers.iter().map(|h| h.claim.clone()));
    let checks = routes
        .iter()
        .flat_map(|r| r.auth.policy.claims.iter().cloned());
    ClaimPlan::new(headers, checks)
}
