//! The reverse proxy: a Pingora [`ProxyHttp`] that, for each request, answers built-in
//! endpoints (`/health`, `/metrics`), hands plugin paths to the plugin host, and otherwise
//! matches a route, validates the access token inline, applies the route's policy, and
//! forwards the request with identity headers the gateway controls.
//!
//! The hot path (a proxied request with a token seen before) does no store read, no key
//! parsing and no signature check: one cache lookup, a few comparisons, and the header writes.

pub mod refresh;
pub mod routes;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use gatehouse_plugin_api::request::{bearer_of_bytes, cookie_value};
use gatehouse_plugin_api::{
    ApiError, PluginContext, PluginRequest, PluginResponse, Store, VerifiedClaims,
};
use http::header::{HeaderName, AUTHORIZATION, CONTENT_LENGTH, COOKIE};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use uuid::Uuid;

use crate::config::Route;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::plugins::{PluginRouter, RouteMatch};
use crate::tokens::Tokens;
use refresh::{Refreshed, Refresher};
use routes::RouteTable;

/// Per-request state carried between the proxy phases.
#[derive(Default)]
pub struct RequestContext {
    /// The matched route's position in the table.
    route: Option<usize>,
    /// The verified token, when one was presented and accepted.
    identity: Option<Arc<VerifiedClaims>>,
    /// Request body bytes seen so far (for the size limit on streamed bodies).
    body_bytes: usize,
    /// The outcome of a transparent refresh done for this request.
    refreshed: Option<Arc<Refreshed>>,
    /// A refresh failed: clear both cookies on the response.
    clear_cookies: bool,
}

/// What the request's access token amounts to, before policy.
enum TokenState {
    /// No token was presented.
    Absent,
    /// A token was presented and refused.
    Invalid(gatehouse_plugin_api::TokenError),
    /// A valid token.
    Valid(Arc<VerifiedClaims>),
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
}

/// The gateway's [`ProxyHttp`] implementation.
pub struct Gateway {
    routes: RouteTable,
    plugins: PluginRouter,
    context: PluginContext,
    tokens: Arc<Tokens>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    refresher: Refresher,
    /// Counters of the hot path, resolved once (a label lookup hashes on every call).
    allowed_requests: prometheus::IntCounter,
    valid_tokens: prometheus::IntCounter,
    /// Every identity header any route sets: stripped from every client request.
    controlled_headers: Vec<HeaderName>,
    settings: ProxySettings,
}

impl Gateway {
    /// A gateway over these parts.
    pub fn new(
        routes: RouteTable,
        plugins: PluginRouter,
        context: PluginContext,
        tokens: Arc<Tokens>,
        metrics: Arc<Metrics>,
        settings: ProxySettings,
    ) -> Self {
        let mut controlled_headers: Vec<HeaderName> = routes
            .iter()
            .flat_map(|r| r.identity_headers.iter().map(|h| h.name.clone()))
            .collect();
        controlled_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        controlled_headers.dedup();
        Gateway {
            routes,
            plugins,
            refresher: Refresher::new(
                context.store.clone(),
                tokens.clone(),
                context.clock.clone(),
                metrics.clone(),
            ),
            store: context.store.clone(),
            allowed_requests: metrics.requests.with_label_values(&["allowed"]),
            valid_tokens: metrics.validations.with_label_values(&["valid"]),
            context,
            tokens,
            metrics,
            controlled_headers,
            settings,
        }
    }

    fn route(&self, ctx: &RequestContext) -> Option<&Route> {
        ctx.route.and_then(|i| self.routes.get(i))
    }

    /// Writes a complete response and ends the request.
    async fn respond(
        session: &mut Session,
        status: u16,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<()> {
        let mut header = ResponseHeader::build(status, Some(headers.len() + 2))?;
        for (name, value) in headers {
            header.append_header(name.to_string(), *value)?;
        }
        header.insert_header(CONTENT_LENGTH, body.len().to_string())?;
        session
            .write_response_header(Box::new(header), body.is_empty())
            .await?;
        if !body.is_empty() {
            session
                .write_response_body(Some(Bytes::from(body)), true)
                .await?;
        }
        Ok(())
    }

    /// Answers with a gateway error: JSON body, and for 401 the `WWW-Authenticate` header, or a
    /// redirect to the route's login page for browsers.
    async fn deny(
        &self,
        session: &mut Session,
        ctx: &RequestContext,
        error: GatewayError,
    ) -> Result<()> {
        self.metrics
            .requests
            .with_label_values(&[error.outcome()])
            .inc();
        let status = error.status();
        if status == 401 {
            let cleared = ctx.clear_cookies.then(cleared_cookies);
            let mut headers: Vec<(&str, &str)> = Vec::with_capacity(4);
            if let Some([access, refresh]) = &cleared {
                headers.push(("Set-Cookie", access));
                headers.push(("Set-Cookie", refresh));
            }
            let login_url = self.route(ctx).and_then(|r| r.auth.login_url.as_deref());
            if let (Some(url), true) = (login_url, wants_html(session)) {
                headers.push(("Location", url));
                return Self::respond(session, 302, &headers, Vec::new()).await;
            }
            headers.push(("Content-Type", "application/json"));
            headers.push(("WWW-Authenticate", "Bearer error=\"invalid_token\""));
            return Self::respond(session, 401, &headers, error.body()).await;
        }
        Self::respond(
            session,
            status,
            &[("Content-Type", "application/json")],
            error.body(),
        )
        .await
    }

    /// Reads the whole request body, refusing more than the limit.
    async fn read_body(&self, session: &mut Session) -> std::result::Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > self.settings.max_body_bytes {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(_) => {
                    return Err(ApiError::general(
                        "[invalid]",
                        "The request body could not be read.",
                    ))
                }
            }
        }
    }

    /// Serves a plugin route: reads the body, calls the plugin, writes its response.
    async fn serve_plugin(
        &self,
        session: &mut Session,
        plugin: &Arc<dyn gatehouse_plugin_api::Plugin>,
        spec: &gatehouse_plugin_api::RouteSpec,
        params: std::collections::HashMap<String, String>,
    ) -> Result<()> {
        let mut refused_body = false;
        let response = match self.read_body(session).await {
            Ok(body) => {
                let header = session.req_header();
                let request = PluginRequest {
                    method: header.method.clone(),
                    path: header.uri.path().to_string(),
                    query: header.uri.query().unwrap_or("").to_string(),
                    headers: header.headers.clone(),
                    body,
                    peer_ip: session
                        .client_addr()
                        .and_then(SocketAddr::as_inet)
                        .map(|a| a.ip()),
                    tls: self.settings.tls,
                    path_params: params,
                };
                match plugin.handle(spec, request, &self.context).await {
                    Ok(response) => response,
                    Err(error) => render_api_error(&error),
                }
            }
            Err(error) => {
                refused_body = matches!(error, ApiError::PayloadTooLarge);
                render_api_error(&error)
            }
        };
        if refused_body {
            let declared = session
                .req_header()
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            drain_refused_body(session, declared).await;
        }
        let PluginResponse {
            status,
            headers,
            body,
        } = response;
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        Self::respond(session, status, &headers, body).await
    }

    async fn serve_health(&self, session: &mut Session) -> Result<()> {
        match self.store.ping().await {
            Ok(()) => {
                Self::respond(
                    session,
                    200,
                    &[("Content-Type", "application/json")],
                    br#"{"status":"ok"}"#.to_vec(),
                )
                .await
            }
            Err(e) => {
                let id = Uuid::new_v4();
                tracing::error!(correlation_id = %id, error = %e, "health check: store unreachable");
                Self::respond(
                    session,
                    503,
                    &[("Content-Type", "application/json")],
                    format!(r#"{{"status":"unavailable","correlationId":"{id}"}}"#).into_bytes(),
                )
                .await
            }
        }
    }

    /// Verifies the request's token, counting the outcome.
    fn token_state(&self, session: &Session) -> TokenState {
        match request_token(session) {
            None => {
                self.metrics
                    .validations
                    .with_label_values(&["absent"])
                    .inc();
                TokenState::Absent
            }
            Some(token) => match self.tokens.verify_bytes(token) {
                Ok(claims) => {
                    self.valid_tokens.inc();
                    TokenState::Valid(claims)
                }
                Err(reason) => {
                    self.metrics
                        .validations
                        .with_label_values(&[reason.reason()])
                        .inc();
                    TokenState::Invalid(reason)
                }
            },
        }
    }

    /// On a refresh route with a `refresh_token` cookie: exchanges it when the access token is
    /// missing, expired, or (if configured) about to expire. A failed refresh leaves a valid
    /// token in place, and otherwise marks both cookies for clearing.
    async fn refresh_if_needed(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
        route: &Route,
        state: TokenState,
    ) -> TokenState {
        if !route.auth.refresh {
            return state;
        }
        let wanted = match &state {
            TokenState::Absent | TokenState::Invalid(gatehouse_plugin_api::TokenError::Expired) => {
                true
            }
            TokenState::Valid(claims) => {
                route.auth.refresh_before_expiry_seconds > 0
                    && claims.exp - self.context.clock.now_seconds()
                        <= route.auth.refresh_before_expiry_seconds
            }
            TokenState::Invalid(_) => false,
        };
        if !wanted {
            return state;
        }
        let Some(value) = request_cookie(session, "refresh_token") else {
            return state;
        };
        let client_ip = client_ip(session);
        match self.refresher.refresh(value, client_ip.as_deref()).await {
            Ok(refreshed) => {
                let claims = refreshed.claims.clone();
                ctx.refreshed = Some(refreshed);
                TokenState::Valid(claims)
            }
            Err(error) => {
                if let gatehouse_plugin_api::refresh::RefreshError::Store(e) = &error {
                    tracing::warn!(error = %e, "transparent refresh failed on the store");
                }
                if matches!(state, TokenState::Valid(_)) {
                    state
                } else {
                    ctx.clear_cookies = true;
                    state
                }
            }
        }
    }

    /// Applies the route's policy. `Ok(())` lets the request through, with `ctx.identity` set
    /// when a valid token passed the policy.
    fn apply_policy(
        &self,
        ctx: &mut RequestContext,
        route: &Route,
        state: TokenState,
    ) -> std::result::Result<(), GatewayError> {
        let required = route.auth.required;
        match state {
            TokenState::Absent if required => Err(GatewayError::MissingToken),
            TokenState::Invalid(reason) if required => Err(GatewayError::InvalidToken(reason)),
            TokenState::Absent | TokenState::Invalid(_) => Ok(()),
            TokenState::Valid(claims) => match check_policy(route, &claims) {
                Ok(()) => {
                    ctx.identity = Some(claims);
                    Ok(())
                }
                Err(e) if required => Err(e),
                // Optional routes never refuse: forward without an identity.
                Err(_) => Ok(()),
            },
        }
    }
}

/// The most of a refused body the gateway reads (and discards) after answering 413.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;
/// How long it keeps reading it.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Before answering 413, reads and discards the rest of a body the client is still sending, so
/// closing the connection does not reset it before the client has read the answer. Bodies
/// declared larger than [`DRAIN_LIMIT_BYTES`] are not read: the connection is just closed.
async fn drain_refused_body(session: &mut Session, declared_length: Option<usize>) {
    if declared_length.is_some_and(|len| len > DRAIN_LIMIT_BYTES) {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, session.drain_request_body()).await;
}

/// The `Set-Cookie` values that delete both token cookies.
fn cleared_cookies() -> [String; 2] {
    [
        gatehouse_plugin_api::Cookie::cleared("access_token").to_header_value(),
        gatehouse_plugin_api::Cookie::cleared("refresh_token").to_header_value(),
    ]
}

/// A cookie of the request by name (non-empty).
fn request_cookie<'a>(session: &'a Session, name: &str) -> Option<&'a str> {
    session
        .req_header()
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie_value(h, name))
        .filter(|v| !v.is_empty())
}

/// The client address: the first `X-Forwarded-For` hop, else the peer.
fn client_ip(session: &Session) -> Option<String> {
    session
        .req_header()
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(gatehouse_plugin_api::refresh::ip_address)
        .or_else(|| {
            session
                .client_addr()
                .and_then(SocketAddr::as_inet)
                .map(|a| a.ip().to_string())
        })
}

/// `cookie` with `name`'s value replaced (or added).
fn with_cookie(cookie: Option<&str>, name: &str, value: &str) -> String {
    let mut pairs: Vec<String> = cookie
        .unwrap_or("")
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            pair.split_once('=')
                .map(|(k, _)| k.trim() != name)
                .unwrap_or(true)
        })
        .map(str::to_string)
        .collect();
    pairs.push(format!("{name}={value}"));
    pairs.join("; ")
}

/// The application and role checks of a route against verified claims.
fn check_policy(route: &Route, claims: &VerifiedClaims) -> std::result::Result<(), GatewayError> {
    if let Some(app) = route.auth.application_id {
        if claims.application_id != Some(app) {
            return Err(GatewayError::WrongApplication);
        }
        // The application belongs to one tenant: a token of another tenant naming it is not
        // for this application.
        if claims
            .tenant_id
            .is_some_and(|tid| Some(tid) != route.auth.application_tenant_id)
        {
            return Err(GatewayError::WrongApplication);
        }
    }
    if !route.auth.roles.is_empty()
        && !claims
            .roles
            .iter()
            .any(|r| route.auth.roles.iter().any(|w| w == r))
    {
        return Err(GatewayError::MissingRole);
    }
    Ok(())
}

/// Renders an API error, logging internal ones with their correlation id.
fn render_api_error(error: &ApiError) -> PluginResponse {
    if let ApiError::Internal {
        correlation_id,
        detail,
    }
    | ApiError::Unavailable {
        correlation_id,
        detail,
    } = error
    {
        tracing::error!(correlation_id = %correlation_id, error = %detail, "API request failed");
    }
    error.to_response()
}

/// The access token of a request, as bytes: `Authorization: Bearer` (scheme
/// case-insensitive), else the `access_token` cookie. Bytes, not text: a cached token is found
/// without validating it as text first (see [`Tokens::verify_bytes`]).
fn request_token(session: &Session) -> Option<&[u8]> {
    let headers = &session.req_header().headers;
    if let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| bearer_of_bytes(v.as_bytes()))
    {
        return Some(token);
    }
    request_cookie(session, "access_token").map(str::as_bytes)
}

/// True when the client is a browser asking for a page.
fn wants_html(session: &Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The `Cookie` header without the `refresh_token` cookie (upstreams never need it).
fn without_refresh_cookie(cookie: &str) -> Option<String> {
    if !cookie.contains("refresh_token") {
        return None;
    }
    let kept: Vec<&str> = cookie
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            pair.split_once('=')
                .map(|(k, _)| k.trim() != "refresh_token")
                .unwrap_or(true)
        })
        .filter(|pair| !pair.is_empty())
        .collect();
    Some(kept.join("; "))
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestContext;

    fn new_ctx(&self) -> Self::CTX {
        RequestContext::default()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + session
                .req_header()
                .uri
                .path_and_query()
                .map_or(0, |p| p.as_str().len());
        if header_bytes > self.settings.max_header_bytes {
            return Error::e_explain(HTTPStatus(431), "request headers over the limit");
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        let path = session.req_header().uri.path();
        if path == "/health" {
            self.serve_health(session).await?;
            return Ok(true);
        }
        if path == "/metrics" {
            let body = self.metrics.render();
            Self::respond(
                session,
                200,
                &[("Content-Type", "text/plain; version=0.0.4")],
                body,
            )
            .await?;
            return Ok(true);
        }
        let method = session.req_header().method.clone();
        match self.plugins.find(&method, path) {
            RouteMatch::Found {
                plugin,
                spec,
                params,
            } => {
                let (plugin, spec) = (plugin.clone(), spec.clone());
                self.serve_plugin(session, &plugin, &spec, params).await?;
                return Ok(true);
            }
            RouteMatch::MethodNotAllowed => {
                let mut errors = gatehouse_plugin_api::Errors::new();
                errors.general(
                    "[MethodNotAllowed]",
                    format!("{method} is not allowed on this path."),
                );
                let body = serde_json::to_vec(&errors).unwrap_or_default();
                Self::respond(session, 405, &[("Content-Type", "application/json")], body).await?;
                return Ok(true);
            }
            RouteMatch::None => {}
        }

        let host = session
            .req_header()
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| session.req_header().uri.host());
        let Some(index) = self.routes.find(host, path) else {
            self.deny(session, ctx, GatewayError::NoRoute).await?;
            return Ok(true);
        };
        ctx.route = Some(index);
        let declared_length = session
            .req_header()
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared_length.is_some_and(|len| len > self.settings.max_body_bytes) {
            drain_refused_body(session, declared_length).await;
            self.deny(session, ctx, GatewayError::BodyTooLarge).await?;
            return Ok(true);
        }
        let Some(route) = self.routes.get(index) else {
            self.deny(session, ctx, GatewayError::NoRoute).await?;
            return Ok(true);
        };
        if !route.auth.enabled {
            // A public passthrough: no token work at all.
            self.allowed_requests.inc();
            return Ok(false);
        }
        let state = self.token_state(session);
        let state = self.refresh_if_needed(session, ctx, route, state).await;
        if let Err(error) = self.apply_policy(ctx, route, state) {
            self.deny(session, ctx, error).await?;
            return Ok(true);
        }
        self.allowed_requests.inc();
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len();
            if ctx.body_bytes > self.settings.max_body_bytes {
                return Error::e_explain(HTTPStatus(413), "request body over the limit");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let upstream = ctx
            .route
            .and_then(|i| self.routes.next_upstream(i))
            .ok_or_else(|| Error::explain(InternalError, "no upstream for the route"))?;
        let mut peer = HttpPeer::new(upstream.addr, upstream.tls, upstream.sni);
        peer.options.connection_timeout = Some(std::time::Duration::from_secs(5));
        peer.options.total_connection_timeout = Some(std::time::Duration::from_secs(10));
        peer.options.read_timeout = Some(std::time::Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // Headers the gateway controls never pass through from the client.
        for name in &self.controlled_headers {
            upstream_request.remove_header(name);
        }
        if let Some(refreshed) = &ctx.refreshed {
            // The upstream sees the new token wherever the client carried one.
            upstream_request
                .insert_header(AUTHORIZATION, format!("Bearer {}", refreshed.access_token))?;
            let cookie = with_cookie(
                upstream_request
                    .headers
                    .get(COOKIE)
                    .and_then(|v| v.to_str().ok()),
                "access_token",
                &refreshed.access_token,
            );
            upstream_request.insert_header(COOKIE, cookie)?;
        }
        if let Some(cookie) = upstream_request
            .headers
            .get(COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(without_refresh_cookie)
        {
            if cookie.is_empty() {
                upstream_request.remove_header(&COOKIE);
            } else {
                upstream_request.insert_header(COOKIE, cookie)?;
            }
        }
        if let Some(addr) = session.client_addr().and_then(SocketAddr::as_inet) {
            let forwarded = match upstream_request
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prior) => format!("{prior}, {}", addr.ip()),
                None => addr.ip().to_string(),
            };
            upstream_request.insert_header("X-Forwarded-For", forwarded)?;
        }
        upstream_request.insert_header(
            "X-Forwarded-Proto",
            if self.settings.tls { "https" } else { "http" },
        )?;
        if let (Some(claims), Some(route)) =
            (&ctx.identity, ctx.route.and_then(|i| self.routes.get(i)))
        {
            for header in &route.identity_headers {
                if let Some(value) = claims.header_value(&header.claim) {
                    upstream_request.insert_header(header.written.clone(), value)?;
                }
            }
        }
        Ok(())
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
        if let Some(refreshed) = &ctx.refreshed {
            let now = self.context.clock.now_millis();
            let secure = self.settings.tls || self.settings.secure_cookies;
            let access = gatehouse_plugin_api::Cookie::expiring(
                "access_token",
                &refreshed.access_token,
                refreshed.access_expiration_ms,
                now,
                secure,
            );
            upstream_response.append_header("Set-Cookie", access.to_header_value())?;
            if refreshed.set_refresh_cookie {
                let refresh = gatehouse_plugin_api::Cookie::expiring(
                    "refresh_token",
                    &refreshed.refresh_token,
                    refreshed.refresh_expiration_ms,
                    now,
                    secure,
                );
                upstream_response.append_header("Set-Cookie", refresh.to_header_value())?;
            }
        } else if ctx.clear_cookies {
            for cookie in cleared_cookies() {
                upstream_response.append_header("Set-Cookie", cookie)?;
            }
        }
        Ok(())
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
        // The connection is not reused after a failure: say so in the answer (`Connection:
        // close`), so clients do not send their next request on a socket about to close.
        session.set_keepalive(None);
        let error = match e.etype() {
            HTTPStatus(413) => GatewayError::BodyTooLarge,
            HTTPStatus(431) => GatewayError::HeadersTooLarge,
            HTTPStatus(code) if *code < 500 => {
                // Other client errors raised by the engine (malformed requests).
                let code = *code;
                let mut errors = gatehouse_plugin_api::Errors::new();
                errors.general("[BadRequest]", "The request could not be processed.");
                let body = serde_json::to_vec(&errors).unwrap_or_default();
                let _ = Self::respond(session, code, &[("Content-Type", "application/json")], body)
                    .await;
                return FailToProxy {
                    error_code: code,
                    can_reuse_downstream: false,
                };
            }
            _ => match e.esource() {
                ErrorSource::Upstream => GatewayError::UpstreamUnavailable,
                ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => {
                        return FailToProxy {
                            error_code: 0,
                            can_reuse_downstream: false,
                        };
                    }
                    _ => {
                        let mut errors = gatehouse_plugin_api::Errors::new();
                        errors.general("[BadRequest]", "The request could not be processed.");
                        let body = serde_json::to_vec(&errors).unwrap_or_default();
                        let _ = Self::respond(
                            session,
                            400,
                            &[("Content-Type", "application/json")],
                            body,
                        )
                        .await;
                        return FailToProxy {
                            error_code: 400,
                            can_reuse_downstream: false,
                        };
                    }
                },
                ErrorSource::Internal | ErrorSource::Unset => {
                    if matches!(
                        e.etype(),
                        ConnectTimedout
                            | ConnectRefused
                            | ConnectError
                            | ConnectNoRoute
                            | TLSHandshakeFailure
                    ) {
                        GatewayError::UpstreamUnavailable
                    } else {
                        let id = Uuid::new_v4().to_string();
                        tracing::error!(correlation_id = %id, error = %e, "proxy failure");
                        GatewayError::Internal(id)
                    }
                }
            },
        };
        if matches!(error, GatewayError::UpstreamUnavailable) {
            tracing::warn!(error = %e, "upstream unavailable");
        }
        let code = error.status();
        // Headers may already be on the wire (a failure mid-response): then nothing more can
        // be said to the client.
        if session.response_written().is_none() {
            let _ = self.deny(session, ctx, error).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_cookie_is_removed_and_others_kept() {
        assert_eq!(without_refresh_cookie("a=1; b=2"), None);
        assert_eq!(
            without_refresh_cookie("a=1; refresh_token=secret; access_token=x").as_deref(),
            Some("a=1; access_token=x")
        );
        assert_eq!(
            without_refresh_cookie("refresh_token=secret").as_deref(),
            Some("")
        );
    }
}
