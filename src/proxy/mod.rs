//! The reverse proxy: a Pingora [`ProxyHttp`] whose phases, below, each call a few named
//! steps. A request goes through them in this order, each owned by one file:
//!
//! 1. **open** (`early_request_filter`, here): connection settings, the header-size limit;
//! 2. **read** (`request_filter`, here, over [`crate::request`]): the framing, the target and
//!    host in canonical form — whatever has no single reading is refused before anything
//!    else sees the request;
//! 3. **decisions** ([`forward_auth`]): in forward-auth mode, a request to the decision
//!    endpoint from a trusted proxy is turned into the request to judge, which goes through
//!    the same admission (4) and is answered with the decision instead of being proxied;
//! 4. **built-ins** ([`builtins`]): the public `/health`, and plugin paths, whose request is
//!    read here (the body, within the limit), handled on the API's own runtime
//!    ([`ApiExecutor`]) and answered here;
//! 5. **admit** ([`authenticate`]): the route ([`routes`]), the declared body size, the
//!    credentials (read once with the edge's rules, [`crate::request::credentials`]), the
//!    token, a transparent refresh ([`refresh`]) and the route's policy; a chunked body is
//!    then judged before the upstream hears of it ([`body`]);
//! 6. **upstream** ([`upstream`]): the peer, and the request it gets — exactly the target and
//!    host the policy judged, client headers the gateway controls stripped, the verified
//!    credential only, `X-Forwarded-*`, the identity headers;
//! 7. **answer** ([`answer`]): the refresh's cookies on the upstream's answer; the gateway's own
//!    answers — every refusal is a [`GatewayError`] ([`error`]: its one status mapping);
//! 8. **log** ([`access`]): the latency histograms and the access line.
//!
//! The [`Gateway`] is everything one configuration makes; Pingora runs the [`LiveGateway`], which a
//! reload points at a new one. Each request loads the gateway in force once, when it arrives, and
//! keeps it in its context to its end.
//!
//! The hot path (a proxied request with a token seen before) does no store read, no key
//! parsing and no signature check: one path scan, one cache lookup, a few comparisons, and the
//! header writes.

mod access;
mod answer;
mod authenticate;
mod body;
mod builtins;
pub mod error;
mod forward_auth;
mod grpc;
mod login;
pub mod refresh;
pub mod routes;
mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use gatehouse_plugin_api::PluginContext;
use http::header::HOST;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::api::executor::ApiExecutor;
use crate::api::plugins::PluginRouter;
use crate::auth::tokens::Tokens;
use crate::config::Route;
use crate::observe::metrics::Metrics;
use crate::proxy::error::GatewayError;
use crate::request::canonical::PathOptions;
use crate::request::client::client_address;
use crate::request::target::{read_target, Listener};
use crate::store::GatewayStore;
use access::RequestId;
use body::HeldBody;
use refresh::{Refreshed, Refresher};
use routes::RouteTable;

#[async_trait]
impl ProxyHttp for LiveGateway {
    type CTX = RequestContext;

    /// The request is served by the gateway in force now, to its end (one atomic load).
    fn new_ctx(&self) -> Self::CTX {
        RequestContext {
            id: RequestId::next(),
            started: Some(Instant::now()),
            gateway: Some(self.current()),
            ..RequestContext::default()
        }
    }

    async fn early_request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<()> {
        let gateway = self.take(ctx);
        gateway.configure_connection(session);
        let result = gateway.check_header_size(session);
        ctx.gateway = Some(gateway);
        result
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let gateway = self.take(ctx);
        let result = gateway.request_filter(session, ctx).await;
        ctx.gateway = Some(gateway);
        result
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if session.was_upgraded() {
            // After the upstream's 101 the connection is a WebSocket's byte pipe, judged at its
            // upgrade: its frames are passed on as they come, not a request body to bound.
            return Ok(());
        }
        let max_body_bytes = match &ctx.gateway {
            Some(gateway) => gateway.settings.max_body_bytes,
            None => self.current().settings.max_body_bytes,
        };
        // A body held back lives in the uncommon state; any other streams.
        let mut streaming = HeldBody::Streaming;
        let held = match ctx.uncommon.as_deref_mut() {
            Some(uncommon) => &mut uncommon.held_body,
            None => &mut streaming,
        };
        held.filter(
            body,
            end_of_stream,
            &mut ctx.body_bytes,
            max_body_bytes,
            ctx.started,
        )?;
        if body.as_ref().is_some_and(|piece| !piece.is_empty()) {
            body::keep_pace(session, ctx.started, ctx.body_bytes);
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let gateway = self.take(ctx);
        let result = gateway.peer(ctx);
        ctx.gateway = Some(gateway);
        result
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let gateway = self.take(ctx);
        let result = gateway.upstream_request_filter(session, upstream_request, ctx);
        ctx.gateway = Some(gateway);
        result
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        let gateway = self.take(ctx);
        gateway.observe_upstream_wait(ctx);
        ctx.gateway = Some(gateway);
        upstream::frame_no_content(upstream_response);
        upstream::check_switch(&session.req_header().headers, upstream_response)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        // The client is answered in the gateway's HTTP version, whatever the upstream spoke:
        // an HTTP/1.0 upstream must not turn the answer into HTTP/1.0 (no keep-alive, no
        // chunked framing) for a client that asked in HTTP/1.1.
        upstream_response.set_version(http::Version::HTTP_11);
        let gateway = self.take(ctx);
        let result = gateway.set_session_cookies(upstream_response, ctx);
        ctx.gateway = Some(gateway);
        result
    }

    /// The engine's own error line is replaced by ours: a client's failure at debug level, an
    /// upstream's once by [`Self::fail_to_proxy`]; neither carries the error's context, which
    /// can hold raw header bytes (cookies, `Authorization`).
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        if error::is_client_failure(error) {
            tracing::debug!(kind = error.etype().as_str(), "client request failed");
            return true;
        }
        matches!(error.esource(), ErrorSource::Upstream)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX)
    where
        Self::CTX: Send + Sync,
    {
        let gateway = self.take(ctx);
        gateway.note_undelivered_rotation(session, e, ctx);
        gateway.record(session, ctx);
        ctx.gateway = Some(gateway);
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let gateway = self.take(ctx);
        let result = gateway.fail_to_proxy(session, e, ctx).await;
        ctx.gateway = Some(gateway);
        result
    }

    /// The request as the engine's own log lines name it: no query string, no header.
    fn request_summary(&self, session: &Session, ctx: &Self::CTX) -> String {
        let request = session.req_header();
        access::request_summary(&request.method, &request.uri, ctx.id)
    }
}

/// The gateway in force: the proxy Pingora runs. A reload ([`crate::server::reload`]) puts a
/// whole new [`Gateway`] in its place; each request keeps the one that was in force when it
/// arrived, to its end.
#[derive(Clone)]
pub struct LiveGateway(Arc<ArcSwap<Gateway>>);

impl LiveGateway {
    /// The live gateway, starting with `gateway`.
    pub fn new(gateway: Gateway) -> Self {
        LiveGateway(Arc::new(ArcSwap::from_pointee(gateway)))
    }

    /// The gateway in force now.
    pub fn current(&self) -> Arc<Gateway> {
        self.0.load_full()
    }

    /// Puts `gateway` in force for the requests that arrive from now on; returns the one it
    /// replaces (requests under way keep it until they end).
    pub fn replace(&self, gateway: Gateway) -> Arc<Gateway> {
        self.0.swap(Arc::new(gateway))
    }

    /// The request's gateway, taken out of `ctx` for a phase (which puts it back); the one in
    /// force when a phase before panicked and left none.
    fn take(&self, ctx: &mut RequestContext) -> Arc<Gateway> {
        ctx.gateway.take().unwrap_or_else(|| self.current())
    }
}

impl Gateway {
    /// Phases 2–5 (see the module's documentation): `Ok(true)` when the gateway answered the
    /// request itself, `Ok(false)` when it goes upstream.
    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        // The rare paths' futures (a refusal's answer, below and in the steps) are boxed where
        // they are awaited: this future, which the engine boxes for every request, stays small.
        if let Err(error) = self.read_request(session, ctx) {
            return Box::pin(self.refuse(session, ctx, error)).await;
        }
        if self.serve_forward_auth(session, ctx).await? {
            return Ok(true);
        }
        if self.serve_builtin(session, ctx).await? {
            return Ok(true);
        }
        if let Err(error) = self.admit(session, ctx).await {
            return Box::pin(self.refuse(session, ctx, error)).await;
        }
        self.hold_chunked_body(session, ctx).await?;
        self.allowed_requests.inc();
        ctx.outcome = Some(access::ALLOWED);
        Ok(false)
    }

    /// Phase 6: the request the upstream gets.
    fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        self.set_judged_target(upstream_request, ctx)?;
        // One pass over the names the upstream would get tells which steps below have work.
        let present = upstream::Present::scan(upstream_request, &self.controlled_headers);
        if present.any(upstream::Present::CONTROLLED) {
            upstream::strip_client_headers(upstream_request, &self.controlled_headers);
        }
        self.forward_credentials(upstream_request, ctx, present)?;
        self.set_forwarding_headers(session, upstream_request)?;
        self.set_te_for_http2(session, upstream_request)?;
        if present.any(upstream::Present::UPGRADES) {
            upstream::keep_websocket_upgrade_only(upstream_request, &session.req_header().headers)?;
        }
        self.set_identity_headers(upstream_request, ctx)
    }

    /// A failure before or while proxying: answered when nothing was written yet.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestContext,
    ) -> FailToProxy {
        // The connection is not reused after a failure: say so in the answer (`Connection:
        // close`), so clients do not send their next request on a socket about to close.
        session.set_keepalive(None);
        ctx.outcome = Some(access::CLIENT_CLOSED);
        let Some(error) = GatewayError::of_failure(e) else {
            // The client went away: nobody to answer.
            return failed(0);
        };
        let code = error.status();
        ctx.outcome = Some(error.outcome());
        // Headers may already be on the wire (a failure mid-response): then nothing more can
        // be said to the client.
        if session.response_written().is_none() {
            let _ = self.deny(session, ctx, error).await;
        }
        failed(code)
    }
}

/// What [`ProxyHttp::fail_to_proxy`] reports: the status answered (0 for none), and that the
/// client connection is not reused.
fn failed(error_code: u16) -> FailToProxy {
    FailToProxy {
        error_code,
        can_reuse_downstream: false,
    }
}

/// Per-request state carried between the proxy phases. What most requests need is here;
/// what only some do (a rewritten target, a refresh, a held body, a decision, a built-in's
/// label) is in [`Uncommon`], allocated the first time one of them is set: the context lives in
/// the engine's future of every request, which is copied whole when it is boxed.
#[derive(Default)]
pub struct RequestContext {
    /// The request's id in the access log.
    id: RequestId,
    /// When the request was read (its latency starts here).
    started: Option<Instant>,
    /// How the request ended (see [`access::Line::outcome`]); set where it is decided.
    outcome: Option<&'static str>,
    /// The upstream chosen, and when.
    upstream: Option<(std::net::SocketAddr, Instant)>,
    /// The matched route's position in the table.
    route: Option<usize>,
    /// The verified token, when one was presented and passed the route's policy.
    identity: Option<Arc<crate::auth::cached::CachedToken>>,
    /// Request body bytes seen so far (for the size limit on streamed bodies).
    body_bytes: usize,
    /// The state only some requests have; `None` (nothing allocated) until one is set.
    uncommon: Option<Box<Uncommon>>,
    /// The gateway that serves this request, from its arrival to its end (see
    /// [`LiveGateway`]); `None` only while a phase has it out.
    gateway: Option<Arc<Gateway>>,
}

/// The part of a [`RequestContext`] only some requests have (see [`RequestContext::uncommon`]).
#[derive(Default)]
struct Uncommon {
    /// The route label of a request served by the gateway itself (`/health`, a plugin).
    builtin: Option<&'static str>,
    /// The request target to send upstream (canonical path and the query as sent), when it
    /// differs from the target the client wrote.
    target: Option<String>,
    /// The canonical `Host` to route by and send upstream, when the client wrote another
    /// spelling of it (`Admin.example.:80`) or named it only in an absolute-form target.
    host: Option<String>,
    /// How the request body goes upstream: streamed, or (chunked) judged first.
    held_body: HeldBody,
    /// The refresh-token value a transparent refresh for this request retired (a one-time-use
    /// rotation), until the answer carrying its successor is written.
    retired: Option<String>,
    /// The outcome of a transparent refresh done for this request.
    refreshed: Option<Arc<Refreshed>>,
    /// A refresh failed: clear both cookies on the response.
    clear_cookies: bool,
    /// In a forward-auth decision: how the request to judge was named (set once the asking
    /// peer is trusted). `None` for a request to proxy.
    decision: Option<forward_auth::Decision>,
}

impl RequestContext {
    /// The uncommon state, allocated empty the first time it is asked for this way.
    fn uncommon_mut(&mut self) -> &mut Uncommon {
        self.uncommon.get_or_insert_with(Box::default)
    }

    /// The route label of a request served by the gateway itself; `None` for any other.
    fn builtin(&self) -> Option<&'static str> {
        self.uncommon.as_ref().and_then(|u| u.builtin)
    }

    /// The target the upstream gets instead of the client's; `None` when it is the client's.
    fn target(&self) -> Option<&str> {
        self.uncommon.as_ref().and_then(|u| u.target.as_deref())
    }

    /// The canonical `Host` when the client wrote another (or none); `None` when the `Host`
    /// header as sent is canonical.
    fn host(&self) -> Option<&str> {
        self.uncommon.as_ref().and_then(|u| u.host.as_deref())
    }

    /// The refresh-token value a transparent refresh for this request retired; `None` when
    /// none did.
    fn retired(&self) -> Option<&str> {
        self.uncommon.as_ref().and_then(|u| u.retired.as_deref())
    }

    /// The outcome of a transparent refresh done for this request; `None` when none was.
    fn refreshed(&self) -> Option<&Arc<Refreshed>> {
        self.uncommon.as_ref().and_then(|u| u.refreshed.as_ref())
    }

    /// True when a refresh failed and both cookies are cleared on the response.
    fn clear_cookies(&self) -> bool {
        self.uncommon.as_ref().is_some_and(|u| u.clear_cookies)
    }

    /// How a forward-auth decision's request was named; `None` for a request to proxy.
    fn decision(&self) -> Option<forward_auth::Decision> {
        self.uncommon.as_ref().and_then(|u| u.decision)
    }
}

/// Settings the proxy needs at request time.
pub struct ProxySettings {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Largest header block.
    pub max_header_bytes: usize,
    /// The listener is TLS.
    pub tls: bool,
    /// Mark cookies `Secure` even without TLS.
    pub secure_cookies: bool,
    /// How request paths are put into their canonical form.
    pub path_options: PathOptions,
    /// Seconds an idle keep-alive client connection stays open.
    pub idle_timeout_seconds: u64,
    /// Proxies whose `X-Forwarded-For` hops are believed (see [`crate::request::client`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Write one access log line per request.
    pub access_log: bool,
    /// Forward-auth mode, when configured.
    pub forward_auth: Option<crate::config::ForwardAuth>,
}

/// The gateway's [`ProxyHttp`] implementation.
pub struct Gateway {
    routes: RouteTable,
    plugins: PluginRouter,
    context: PluginContext,
    tokens: Arc<Tokens>,
    store: Arc<dyn GatewayStore>,
    metrics: Arc<Metrics>,
    refresher: Refresher,
    /// Counters of the hot path, resolved once (a label lookup hashes on every call).
    allowed_requests: prometheus::IntCounter,
    valid_tokens: prometheus::IntCounter,
    /// Each route's label (see [`access::route_label`]), by position in the table.
    route_labels: Vec<String>,
    /// Each route's latency histograms of allowed requests and of its upstream, resolved once.
    allowed_durations: Vec<prometheus::Histogram>,
    upstream_durations: Vec<prometheus::Histogram>,
    /// Each route's identity headers as the starts of their HTTP/1 lines, spelling checked once
    /// (see [`upstream::identity_lines`]), by position in the table.
    identity_lines: Vec<Vec<Option<pingora::http::SpelledName>>>,
    /// Every identity header any route sets, and the client headers no upstream gets (see
    /// [`upstream::ControlledHeaders`]): stripped from every client request.
    controlled_headers: upstream::ControlledHeaders,
    /// Every identity header any route sets, sorted by name: an allowed forward-auth decision
    /// carries each of them (see [`forward_auth`]).
    identity_names: Vec<http::HeaderName>,
    settings: ProxySettings,
    /// The proxies whose `X-Forwarded-For` is believed in a forward-auth decision: the
    /// gateway's `trustedProxies` and `forwardAuth.trustedProxies`.
    decision_proxies: Vec<ipnet::IpNet>,
    /// Where plugin requests are handled (one runtime for the process, shared by every
    /// gateway a reload builds).
    api: Arc<ApiExecutor>,
}

impl Gateway {
    /// A gateway over these parts; plugin requests are handled on `api`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        routes: RouteTable,
        plugins: PluginRouter,
        store: Arc<dyn GatewayStore>,
        context: PluginContext,
        tokens: Arc<Tokens>,
        metrics: Arc<Metrics>,
        settings: ProxySettings,
        api: Arc<ApiExecutor>,
    ) -> Self {
        let controlled_headers = upstream::ControlledHeaders::of(&routes);
        let identity_names = upstream::identity_names(&routes);
        let identity_lines: Vec<Vec<_>> = routes.iter().map(upstream::identity_lines).collect();
        if identity_lines.iter().flatten().any(Option::is_none) {
            // Not reachable from a validated configuration (each name is parsed from its
            // spelling); said at start rather than only in each refused request.
            tracing::error!("an identity header's spelling is not of its name: its requests fail");
        }
        pingora::protocols::http::v1::server::set_upstream_header_room(upstream::header_room(
            &routes,
        ));
        let decision_proxies = settings
            .forward_auth
            .iter()
            .flat_map(|fa| fa.trusted_proxies.iter())
            .chain(settings.trusted_proxies.iter())
            .copied()
            .collect();
        let route_labels: Vec<String> = routes.iter().map(access::route_label).collect();
        let allowed_durations = route_labels
            .iter()
            .map(|label| {
                metrics
                    .request_duration
                    .with_label_values(&[label.as_str(), access::ALLOWED])
            })
            .collect();
        let upstream_durations = route_labels
            .iter()
            .map(|label| {
                metrics
                    .upstream_duration
                    .with_label_values(&[label.as_str()])
            })
            .collect();
        Gateway {
            routes,
            plugins,
            refresher: Refresher::new(
                context.store.clone(),
                tokens.clone(),
                context.clock.clone(),
                metrics.clone(),
                context.race_window_ms,
                context.rotations.clone(),
            ),
            store,
            allowed_requests: metrics.requests.with_label_values(&["allowed"]),
            valid_tokens: metrics.validations.with_label_values(&["valid"]),
            route_labels,
            allowed_durations,
            upstream_durations,
            identity_lines,
            context,
            tokens,
            metrics,
            controlled_headers,
            identity_names,
            settings,
            decision_proxies,
            api,
        }
    }

    /// This gateway, built by a reload to replace `previous`: the transparent refreshes under
    /// way or recent on `previous` are shared (see [`Refresher::succeeded_by`]), so parallel
    /// requests on either side of the reload still make one exchange.
    pub fn succeeding(mut self, previous: &Gateway) -> Self {
        self.refresher = previous.refresher.succeeded_by(
            self.context.store.clone(),
            self.tokens.clone(),
            self.context.race_window_ms,
        );
        self
    }

    /// The token service this gateway verifies with.
    pub fn tokens(&self) -> &Arc<Tokens> {
        &self.tokens
    }

    /// The route that judged the request, once one was chosen.
    fn route(&self, ctx: &RequestContext) -> Option<&Route> {
        ctx.route.and_then(|i| self.routes.get(i))
    }

    /// Open: a client that half-closes after its request still gets the answer; pipelined
    /// requests are answered one after the other, in order; an idle keep-alive connection is
    /// closed after the timeout (never re-enabling keep-alive the engine turned off), and so is
    /// one whose client takes no byte of the answer for as long (a client that stops reading
    /// would otherwise hold its connection, and the upstream's, for ever).
    fn configure_connection(&self, session: &mut Session) {
        session.set_abort_on_close(false);
        session.set_pipelining_enabled(true);
        let idle = self.settings.idle_timeout_seconds;
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(idle));
        }
        session.set_write_timeout(Some(Duration::from_secs(idle)));
    }

    /// Open: `Err` (answered by [`ProxyHttp::fail_to_proxy`]) when the request's header block
    /// is over `limits.maxHeaderBytes`: a 414 when its target alone is (RFC 9110 §15.5.15), else
    /// a 431.
    fn check_header_size(&self, session: &Session) -> Result<()> {
        let header = session.req_header();
        // Each field as `name: value` and its line end, and the target.
        let header_bytes = header.h1_wire_len() + header.raw_path().len();
        // The fields an HTTP/1 request may have (the engine's parser holds 256): an HTTP/2
        // request, read by another parser, is held to the same.
        if header.headers.len() > MAX_HEADER_FIELDS {
            return Error::e_explain(HTTPStatus(431), "more request header fields than allowed");
        }
        if header_bytes > self.settings.max_header_bytes {
            if header.raw_path().len() > self.settings.max_header_bytes {
                return Error::e_explain(HTTPStatus(414), "request target over the limit");
            }
            return Error::e_explain(HTTPStatus(431), "request headers over the limit");
        }
        Ok(())
    }

    /// Read: the request's framing, target and host, in canonical form (see
    /// [`crate::request::target`]). Sets `ctx.target` and `ctx.host` when the upstream must get
    /// another target or host spelling than the client wrote; `Err` when the request has no
    /// single reading.
    fn read_request(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
    ) -> std::result::Result<(), GatewayError> {
        let header = session.req_header();
        let listener = Listener {
            tls: self.settings.tls,
            path_options: self.settings.path_options,
        };
        let read = read_target(&header.uri, header.raw_path(), &header.headers, listener)?;
        if read.target.is_some() || read.host.is_some() {
            let uncommon = ctx.uncommon_mut();
            (uncommon.target, uncommon.host) = (read.target, read.host);
        } else if let Some(uncommon) = ctx.uncommon.as_deref_mut() {
            (uncommon.target, uncommon.host) = (None, None);
        }
        Ok(())
    }

    /// The client's address, read one way for the whole gateway (see
    /// [`crate::request::client`]): the connection's peer, or behind the configured trusted
    /// proxies the first hop they do not own. `None` without a peer address.
    fn client_address(&self, session: &Session) -> Option<std::net::IpAddr> {
        client_address(
            peer_address(session),
            &session.req_header().headers,
            &self.settings.trusted_proxies,
        )
    }

    /// The client of the request `ctx` judges: [`Self::client_address`], or in a forward-auth
    /// decision the first `X-Forwarded-For` hop that neither the gateway's trusted proxies nor
    /// the front proxies (`forwardAuth.trustedProxies`) own.
    fn judged_client_address(
        &self,
        session: &Session,
        ctx: &RequestContext,
    ) -> Option<std::net::IpAddr> {
        if ctx.decision().is_none() {
            return self.client_address(session);
        }
        client_address(
            peer_address(session),
            &session.req_header().headers,
            &self.decision_proxies,
        )
    }
}

/// The most header fields a request may have: as many as the engine's HTTP/1 parser holds.
const MAX_HEADER_FIELDS: usize = 256;

/// The IP address of the connection's peer; `None` for a Unix socket.
fn peer_address(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(SocketAddr::as_inet)
        .map(|a| a.ip())
}

/// The canonical `Host` of the request: from `ctx.host` when it was rewritten, else the
/// `Host` header as sent (already canonical).
fn canonical_host_of<'a>(session: &'a Session, ctx: &'a RequestContext) -> Option<&'a str> {
    ctx.host().or_else(|| {
        session
            .req_header()
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// The query of the request as sent: from `ctx.target` when the target was rewritten (in a
/// forward-auth decision, the judged target's), else the request line's.
fn query_of<'a>(session: &'a Session, ctx: &'a RequestContext) -> Option<&'a str> {
    match ctx.target() {
        Some(target) => target.split_once('?').map(|(_, query)| query),
        None => session.req_header().uri.query(),
    }
}

/// The canonical path of the request: from `ctx.target` when the target was rewritten, else
/// the path as sent (already canonical).
fn canonical_path_of<'a>(session: &'a Session, ctx: &'a RequestContext) -> &'a str {
    match ctx.target() {
        Some(target) => target.split_once('?').map_or(target, |(path, _)| path),
        None => session.req_header().uri.path(),
    }
}

#[cfg(test)]
mod tests {
    /// The context lives in the engine's future of every request, which is copied whole when
    /// it is boxed (14 KB a request by the profile; the context is in it three times): a byte
    /// added here is copied on every request. Rare state belongs in [`super::Uncommon`].
    #[test]
    fn the_request_context_stays_small() {
        assert!(std::mem::size_of::<super::RequestContext>() <= 136);
    }

    /// A request that sets none of the uncommon state allocates none, and each reader of it
    /// says "none" until it is set.
    #[test]
    fn uncommon_state_is_allocated_when_first_set() {
        let mut ctx = super::RequestContext::default();
        assert!(ctx.uncommon.is_none());
        assert_eq!(
            (ctx.target(), ctx.host(), ctx.builtin(), ctx.retired()),
            (None, None, None, None)
        );
        assert!(ctx.refreshed().is_none() && ctx.decision().is_none() && !ctx.clear_cookies());
        ctx.uncommon_mut().host = Some("example.com".into());
        assert_eq!((ctx.host(), ctx.target()), (Some("example.com"), None));
        ctx.uncommon_mut().clear_cookies = true;
        assert!(ctx.clear_cookies());
        assert_eq!(ctx.host(), Some("example.com"));
    }
}
