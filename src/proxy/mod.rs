//! The reverse proxy: a Pingora [`ProxyHttp`] that, for each request, reads the request once
//! into its canonical form ([`crate::request`]: target path, credentials), refusing what is
//! ambiguous; answers the public `/health`; hands plugin paths to the plugin host; and
//! otherwise matches a route on the canonical path, validates the access token inline, applies
//! the route's policy, and forwards exactly the request it judged — the canonical target, the
//! verified credential, and identity headers the gateway controls.
//!
//! Plugin requests are read here (the body, within the limit) and answered here, but handled on
//! the API's own runtime ([`ApiExecutor`]), so API work never runs on the proxy's threads.
//!
//! The hot path (a proxied request with a token seen before) does no store read, no key
//! parsing and no signature check: one path scan, one cache lookup, a few comparisons, and the
//! header writes.

mod access;
mod answer;
mod body;
pub mod error;
pub mod refresh;
pub mod routes;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use gatehouse_plugin_api::{
    ApiError, ClaimHeader, PluginContext, PluginRequest, PluginResponse, TokenError, VerifiedClaims,
};
use gatehouse_refresh::RefreshError;
use http::header::{HeaderName, AUTHORIZATION, CONTENT_LENGTH, COOKIE, HOST, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use uuid::Uuid;

use crate::api::executor::ApiExecutor;
use crate::api::plugins::{PluginRouter, RouteMatch};
use crate::auth::tokens::Tokens;
use crate::config::Route;
use crate::observe::metrics::Metrics;
use crate::proxy::error::GatewayError;
use crate::request::canonical::{canonical_path, PathOptions, PathRefusal};
use crate::request::client::client_address;
use crate::request::host::{authority_of, request_host};
use crate::store::GatewayStore;
use access::RequestId;
use body::HeldBody;
use gatehouse_plugin_api::credentials::{self, Credentials};
use refresh::{Refreshed, Refresher};
use routes::{RouteLookup, RouteTable};

/// What a transparent refresh gave: the new pair, or why there is none.
type RefreshOutcome = std::result::Result<Arc<Refreshed>, RefreshError>;

/// Per-request state carried between the proxy phases.
#[derive(Default)]
pub struct RequestContext {
    /// The request's id in the access log.
    id: RequestId,
    /// When the request was read (its latency starts here).
    started: Option<Instant>,
    /// How the request ended (see [`access::Line::outcome`]); set where it is decided.
    outcome: Option<&'static str>,
    /// The route label of a request served by the gateway itself (`/health`, a plugin).
    builtin: Option<&'static str>,
    /// The upstream chosen, and when.
    upstream: Option<(std::net::SocketAddr, Instant)>,
    /// The matched route's position in the table.
    route: Option<usize>,
    /// The request target to send upstream (canonical path and the query as sent), when it
    /// differs from the target the client wrote.
    target: Option<String>,
    /// The canonical `Host` to route by and send upstream, when the client wrote another
    /// spelling of it (`Admin.example.:80`) or named it only in an absolute-form target.
    host: Option<String>,
    /// The verified token, when one was presented and passed the route's policy.
    identity: Option<Arc<VerifiedClaims>>,
    /// Request body bytes seen so far (for the size limit on streamed bodies).
    body_bytes: usize,
    /// How the request body goes upstream: streamed, or (chunked) judged first.
    held_body: HeldBody,
    /// The refresh-token value a transparent refresh for this request retired (a one-time-use
    /// rotation), until the answer carrying its successor is written.
    retired: Option<String>,
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
    Invalid(TokenError),
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
    /// How request paths are put into their canonical form.
    pub path_options: PathOptions,
    /// Seconds an idle keep-alive client connection stays open.
    pub idle_timeout_seconds: u64,
    /// Proxies whose `X-Forwarded-For` hops are believed (see [`crate::request::client`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Write one access log line per request.
    pub access_log: bool,
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
    /// Every identity header any route sets, and the [`RESERVED_HEADERS`]: stripped from every
    /// client request.
    controlled_headers: Vec<HeaderName>,
    settings: ProxySettings,
    /// Where plugin requests are handled.
    api: ApiExecutor,
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
        api: ApiExecutor,
    ) -> Self {
        let mut controlled_headers: Vec<HeaderName> = routes
            .iter()
            .flat_map(|r| r.identity_headers.iter().map(|h| h.name.clone()))
            .chain(RESERVED_HEADERS.iter().map(|h| HeaderName::from_static(h)))
            .collect();
        controlled_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        controlled_headers.dedup();
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
            context,
            tokens,
            metrics,
            controlled_headers,
            settings,
            api,
        }
    }

    fn route(&self, ctx: &RequestContext) -> Option<&Route> {
        ctx.route.and_then(|i| self.routes.get(i))
    }

    /// Answers with a gateway error: Errors JSON, the `WWW-Authenticate` challenge where one
    /// applies, `Retry-After` for 503, cleared cookies after a failed refresh, or a redirect to
    /// the route's login page for browsers.
    async fn deny(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
        error: GatewayError,
    ) -> Result<()> {
        ctx.outcome = Some(error.outcome());
        self.metrics
            .requests
            .with_label_values(&[error.outcome()])
            .inc();
        let status = error.status();
        if status == 400 || status == 413 {
            // The rest of this connection cannot be trusted to be read the same way.
            session.set_keepalive(None);
        }
        // A refresh done for this request hands its pair to the browser whatever the answer
        // (a refused role, an upstream down): a one-time-use value is never used up unseen.
        let cookies = match &ctx.refreshed {
            Some(refreshed) => self.refreshed_cookies(refreshed),
            None if status == 401 && ctx.clear_cookies => answer::cleared_cookies().to_vec(),
            None => Vec::new(),
        };
        let challenge = error.challenge();
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(5);
        for cookie in &cookies {
            headers.push(("Set-Cookie", cookie));
        }
        let login_url = self.route(ctx).and_then(|r| r.auth.login_url.as_deref());
        if let (401, Some(url), true) = (status, login_url, answer::wants_html(session)) {
            headers.push(("Location", url));
            return answer::respond(session, 302, &headers, Vec::new()).await;
        }
        headers.push(("Content-Type", "application/json"));
        if let Some(challenge) = &challenge {
            headers.push(("WWW-Authenticate", challenge));
        }
        if status == 503 {
            headers.push(("Retry-After", "2"));
        }
        answer::respond(session, status, &headers, error.body()).await
    }

    /// The `Set-Cookie` values that hand a transparent refresh's outcome to the browser: the
    /// new access token, and the refresh token when it rotated or its window moved.
    fn refreshed_cookies(&self, refreshed: &Refreshed) -> Vec<String> {
        let now = self.context.clock.now_millis();
        let secure = self.settings.tls || self.settings.secure_cookies;
        let mut cookies = vec![gatehouse_plugin_api::Cookie::expiring(
            "access_token",
            &refreshed.access_token,
            refreshed.access_expiration_ms,
            now,
            secure,
        )
        .to_header_value()];
        if refreshed.set_refresh_cookie {
            let refresh = gatehouse_plugin_api::Cookie::expiring(
                "refresh_token",
                &refreshed.refresh_token,
                refreshed.refresh_expiration_ms,
                now,
                secure,
            );
            cookies.push(refresh.to_header_value());
        }
        cookies
    }

    /// Refuses a request whose declared body is over the limit, at once, without reading it,
    /// and closes the connection after a short, bounded discard.
    async fn refuse_declared_body(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<()> {
        self.deny(session, ctx, GatewayError::BodyTooLarge).await?;
        answer::discard_refused_body(session, self.settings.max_body_bytes).await;
        Ok(())
    }

    /// True when the request declares a body over the limit.
    fn declares_oversized_body(&self, session: &Session) -> bool {
        answer::declared_length(session)
            .is_some_and(|len| len > self.settings.max_body_bytes as u64)
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

    /// Serves a plugin route: reads the body, has the plugin handle the request on the API's
    /// runtime (within its time and in-flight bounds), writes the response. `path` is the
    /// canonical path.
    async fn serve_plugin(
        &self,
        session: &mut Session,
        plugin: Arc<dyn gatehouse_plugin_api::Plugin>,
        spec: gatehouse_plugin_api::RouteSpec,
        path: String,
        params: std::collections::HashMap<String, String>,
    ) -> Result<()> {
        let body = if self.declares_oversized_body(session) {
            Err(ApiError::PayloadTooLarge)
        } else {
            self.read_body(session).await
        };
        let response = match body {
            Ok(body) => {
                let request = self.plugin_request(session, path, body, params);
                let context = self.context.clone();
                match self.api.run(plugin, spec, request, context).await {
                    Ok(response) => response,
                    Err(error) => render_api_error(&error),
                }
            }
            Err(error) => {
                // A refused body: answer now, and do not read the rest of this connection.
                session.set_keepalive(None);
                let response = render_api_error(&error);
                write_plugin_response(session, response).await?;
                answer::discard_refused_body(session, self.settings.max_body_bytes).await;
                return Ok(());
            }
        };
        write_plugin_response(session, response).await
    }

    /// The plugin's view of the request: the canonical path, the query as sent.
    fn plugin_request(
        &self,
        session: &Session,
        path: String,
        body: Vec<u8>,
        path_params: std::collections::HashMap<String, String>,
    ) -> PluginRequest {
        let header = session.req_header();
        PluginRequest {
            method: header.method.clone(),
            path,
            query: header.uri.query().unwrap_or("").to_string(),
            headers: header.headers.clone(),
            body,
            client_address: client_ip(session, &self.settings.trusted_proxies),
            tls: self.settings.tls,
            path_params,
        }
    }

    /// The public health check: the status and nothing about internals (details are on the
    /// admin listener).
    async fn serve_health(&self, session: &mut Session) -> Result<()> {
        let (status, body) = match self.store.ping().await {
            Ok(()) => (200, &br#"{"status":"ok"}"#[..]),
            Err(e) => {
                tracing::warn!(error = %e, "health check: store unreachable");
                (503, &br#"{"status":"unavailable"}"#[..])
            }
        };
        answer::respond(
            session,
            status,
            &[("Content-Type", "application/json")],
            body.to_vec(),
        )
        .await
    }

    /// Verifies the request's token, counting the outcome. A trusted issuer's token whose `kid`
    /// is new waits briefly for its issuer's keys (see [`Tokens::verify_at_edge`]).
    async fn token_state(&self, token: Option<&[u8]>) -> TokenState {
        let Some(token) = token else {
            self.metrics
                .validations
                .with_label_values(&["absent"])
                .inc();
            return TokenState::Absent;
        };
        match self.tokens.verify_at_edge(token).await {
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
        }
    }

    /// On a refresh route with a `refresh_token` cookie: exchanges it when the access token is
    /// missing, past its `exp` (whatever the leeway: the upstream never gets an expired
    /// token when a refresh is possible), or (if configured) about to expire.
    ///
    /// Returns the token state to judge. A refresh token that is unknown, expired or revoked
    /// marks both cookies for clearing, and an access token past its `exp` then counts as
    /// expired; a store that cannot be reached is `Err(StoreUnavailable)` (503, cookies kept,
    /// nothing consumed) unless the access token is still valid. Another application's refresh
    /// token is left alone (see [`Self::refresh_for_route`]); an outcome is handed to the
    /// browser whatever the answer (see [`Self::deny`]).
    async fn refresh_if_needed(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
        route: &Route,
        state: TokenState,
        refresh_token: Option<&[u8]>,
    ) -> std::result::Result<TokenState, GatewayError> {
        let now = self.context.clock.now_seconds();
        let wanted = match &state {
            TokenState::Absent | TokenState::Invalid(TokenError::Expired) => true,
            TokenState::Valid(claims) => {
                now >= claims.exp
                    || (route.auth.refresh_before_expiry_seconds > 0
                        && claims.exp - now <= route.auth.refresh_before_expiry_seconds)
            }
            TokenState::Invalid(_) => false,
        };
        let Some(value) = refresh_token.filter(|_| route.auth.refresh && wanted) else {
            return Ok(state);
        };
        let still_valid = matches!(&state, TokenState::Valid(claims) if now < claims.exp);
        let outcome = match std::str::from_utf8(value) {
            Ok(value) => {
                // When the header had been read: it tells a request that overlapped a refresh
                // from one that came after it.
                let arrived = ctx.started.unwrap_or_else(Instant::now);
                self.refresh_for_route(session, route, value, still_valid, arrived)
                    .await?
            }
            Err(_) => Some(Err(RefreshError::NotFound)),
        };
        let Some(outcome) = outcome else {
            return Ok(state);
        };
        match outcome {
            Ok(refreshed) => {
                let claims = refreshed.claims.clone();
                // The value a rotation retired, in case the answer never reaches the client.
                ctx.retired = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| *v != refreshed.refresh_token)
                    .map(str::to_string);
                ctx.refreshed = Some(refreshed);
                Ok(TokenState::Valid(claims))
            }
            Err(_) if still_valid => Ok(state),
            Err(error) if !error.is_invalid_token() => {
                tracing::warn!(error = %error.reason(), "transparent refresh failed on the store");
                Err(GatewayError::StoreUnavailable)
            }
            Err(error) => {
                // A value a rotation retired: the browser may already hold its successor from
                // another answer, which clearing the cookies now could overwrite.
                ctx.clear_cookies = !matches!(error, RefreshError::AlreadyRotated);
                Ok(match state {
                    TokenState::Valid(_) => TokenState::Invalid(TokenError::Expired),
                    other => other,
                })
            }
        }
    }

    /// Exchanges `value` for a request on `route`, unless it is another application's refresh
    /// token: exchanging that here would use it up (one-time use) for a token this route
    /// refuses, logging its owner out. `Ok(None)` leaves the token alone; a store that cannot
    /// say is a 503 unless the access token is `still_valid` (then `Ok(None)`).
    async fn refresh_for_route(
        &self,
        session: &Session,
        route: &Route,
        value: &str,
        still_valid: bool,
        arrived: std::time::Instant,
    ) -> std::result::Result<Option<RefreshOutcome>, GatewayError> {
        if let Some(application) = route.auth.application_id {
            match self
                .refresher
                .is_for_other_application(value, application)
                .await
            {
                Ok(false) => {}
                Ok(true) => return Ok(None),
                Err(_) if still_valid => return Ok(None),
                Err(error) => {
                    tracing::warn!(error = %error, "transparent refresh failed on the store");
                    return Err(GatewayError::StoreUnavailable);
                }
            }
        }
        Ok(Some(
            self.refresher
                .refresh(
                    value,
                    client_ip(session, &self.settings.trusted_proxies)
                        .map(|ip| ip.to_string())
                        .as_deref(),
                    arrived,
                )
                .await,
        ))
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
            TokenState::Invalid(TokenError::KeysUnavailable) if required => {
                Err(GatewayError::KeysUnavailable)
            }
            TokenState::Invalid(reason) if required => Err(GatewayError::InvalidToken(reason)),
            TokenState::Absent | TokenState::Invalid(_) => Ok(()),
            TokenState::Valid(claims) => match self.check_route_policy(route, &claims) {
                Ok(()) => {
                    ctx.identity = Some(claims);
                    Ok(())
                }
                Err(e) if required => Err(e),
                // Optional routes never refuse: forward without an identity (or credential).
                Err(_) => Ok(()),
            },
        }
    }

    /// The route's policy for a valid token of any issuer: the issuers, audiences and claims it
    /// requires, then [`check_policy`] (application, roles through the issuer's roles claim,
    /// forwardable claims).
    fn check_route_policy(
        &self,
        route: &Route,
        claims: &VerifiedClaims,
    ) -> std::result::Result<(), GatewayError> {
        use crate::auth::issuers::policy::PolicyFailure;
        let remote = self.tokens.remote_issuer_of(claims).is_some();
        route
            .auth
            .policy
            .check(claims, remote)
            .map_err(|failure| match failure {
                PolicyFailure::Issuer => GatewayError::InvalidToken(TokenError::InvalidIssuer),
                PolicyFailure::Audience | PolicyFailure::Claim => GatewayError::UnmetClaim,
            })?;
        check_policy(route, claims, remote)
    }

    /// Reads the request target into its canonical form (see [`crate::request`]): sets
    /// `ctx.target` when the upstream must get another target than the one the client wrote,
    /// and `ctx.host` when the upstream must get another spelling of the host than the client
    /// wrote (see [`crate::request::host`]). Refuses a request
    /// with several, invalid, or (HTTP/1.1) no `Host`, a target that is neither origin-form
    /// nor an absolute `http(s)` URI, and several or malformed `Content-Length` headers.
    fn read_target(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
    ) -> std::result::Result<(), GatewayError> {
        let header = session.req_header();
        check_framing(&header.headers)?;
        let raw = header.raw_path();
        let absolute_form = !raw.starts_with(b"/");
        let authority = if absolute_form {
            Some(authority_of(raw).ok_or(GatewayError::InvalidPath(PathRefusal::NotAbsolute))?)
        } else {
            header.uri.authority().map(|a| a.as_str())
        };
        let default_port = if self.settings.tls { 443 } else { 80 };
        if absolute_form && !scheme_matches(raw, self.settings.tls) {
            // `https://…` on the plain listener (or the reverse): the client and the upstream
            // would disagree on what was asked for.
            return Err(GatewayError::AmbiguousHost);
        }
        let host = request_host(&header.headers, authority, default_port)
            .map_err(|()| GatewayError::AmbiguousHost)?;
        // Routes judge the canonical host, and the upstream receives it.
        if header.headers.get(HOST).map(|h| h.as_bytes()) != Some(host.as_bytes()) {
            ctx.host = Some(host.into_owned());
        }
        let path = canonical_path(header.uri.path().as_bytes(), self.settings.path_options)
            .map_err(GatewayError::InvalidPath)?;
        let as_sent = header
            .uri
            .path_and_query()
            .is_some_and(|pq| pq.as_str().as_bytes() == raw);
        if matches!(path, Cow::Borrowed(_)) && as_sent {
            return Ok(());
        }
        let mut target = path.into_owned();
        if let Some(query) = header.uri.query() {
            target.push('?');
            target.push_str(query);
        }
        ctx.target = Some(target);
        Ok(())
    }

    /// Serves the request when a plugin route or the health check matches its canonical path.
    /// True when it was answered.
    async fn serve_builtin(&self, session: &mut Session, ctx: &mut RequestContext) -> Result<bool> {
        let path = canonical_path_of(session, ctx).to_string();
        if path == "/health" {
            (ctx.outcome, ctx.builtin) = (Some(access::HEALTH), Some(access::HEALTH_ROUTE));
            self.serve_health(session).await?;
            return Ok(true);
        }
        let method = session.req_header().method.clone();
        match self.plugins.find(&method, &path) {
            RouteMatch::Found {
                plugin,
                spec,
                params,
            } => {
                let (plugin, spec) = (plugin.clone(), spec.clone());
                (ctx.outcome, ctx.builtin) = (Some(access::API), Some(plugin.name()));
                self.serve_plugin(session, plugin, spec, path, params)
                    .await?;
                Ok(true)
            }
            RouteMatch::MethodNotAllowed => {
                self.deny(session, ctx, GatewayError::MethodNotAllowed(method))
                    .await?;
                Ok(true)
            }
            RouteMatch::UnknownApiPath => {
                ctx.outcome = Some(access::API);
                write_plugin_response(session, ApiError::NotFound.to_response()).await?;
                Ok(true)
            }
            RouteMatch::None => Ok(false),
        }
    }

    /// Authenticates a request on an auth-enabled route: credentials, transparent refresh,
    /// policy. `Ok` lets it through.
    async fn authenticate(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
        route: &Route,
    ) -> std::result::Result<(), GatewayError> {
        let Credentials {
            access_token,
            refresh_token,
        } = credentials::read(&session.req_header().headers).map_err(GatewayError::Ambiguous)?;
        let state = self.token_state(access_token).await;
        let state = self
            .refresh_if_needed(session, ctx, route, state, refresh_token)
            .await?;
        self.apply_policy(ctx, route, state)
    }

    /// The request's credentials for the upstream: `Authorization` and `Cookie` as the route's
    /// verdict allows. A token reaches the upstream only when it passed the policy, and then
    /// only the one that was verified (or its refreshed successor); never on a public
    /// passthrough, which verifies nothing.
    fn forward_credentials(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        let verified = ctx.identity.is_some();
        let access = match (&ctx.refreshed, verified) {
            (_, false) => credentials::AccessCookie::Remove,
            (Some(refreshed), true) => credentials::AccessCookie::Replace(&refreshed.access_token),
            (None, true) => credentials::AccessCookie::Keep,
        };
        // `Authorization` reaches the upstream only as the verified Bearer token: any other
        // scheme (Basic, Digest…) is a credential the gateway did not verify.
        match access {
            credentials::AccessCookie::Replace(token) => {
                upstream_request.insert_header(AUTHORIZATION, format!("Bearer {token}"))?;
            }
            credentials::AccessCookie::Keep if is_bearer(upstream_request) => {}
            _ => {
                upstream_request.remove_header(&AUTHORIZATION);
            }
        }
        if credentials::cookie_needs_rewrite(&upstream_request.headers, access) {
            match credentials::upstream_cookie(&upstream_request.headers, access) {
                Some(cookie) => {
                    let value = http::HeaderValue::from_bytes(&cookie)
                        .map_err(|_| Error::explain(InternalError, "cookie header"))?;
                    upstream_request.insert_header(COOKIE, value)?;
                }
                None => {
                    upstream_request.remove_header(&COOKIE);
                }
            }
        }
        Ok(())
    }
}

impl Gateway {
    /// Records a finished request: its latency in the request histogram (by route and
    /// outcome) and, when the access log is on, its line (see [`access::Line`]).
    fn record(&self, session: &Session, ctx: &RequestContext) {
        let latency = ctx.started.map_or(Duration::ZERO, |s| s.elapsed());
        let outcome = ctx.outcome.unwrap_or(access::CLIENT_CLOSED);
        let route = match (ctx.route, ctx.builtin) {
            (Some(index), _) => self.route_labels.get(index).map(String::as_str),
            (None, builtin) => builtin,
        }
        .unwrap_or(access::NO_ROUTE);
        match ctx.route.and_then(|i| self.allowed_durations.get(i)) {
            Some(histogram) if outcome == access::ALLOWED => {
                histogram.observe(latency.as_secs_f64());
            }
            _ => self
                .metrics
                .request_duration
                .with_label_values(&[route, outcome])
                .observe(latency.as_secs_f64()),
        }
        if !self.settings.access_log {
            return;
        }
        access::Line {
            id: ctx.id,
            method: session.req_header().method.as_str(),
            path: canonical_path_of(session, ctx),
            route,
            status: session.response_written().map_or(0, |h| h.status.as_u16()),
            outcome,
            user: ctx.identity.as_deref().map(access::User),
            upstream: ctx.upstream.map(|(address, _)| address),
            latency,
        }
        .write();
    }

    /// `X-Forwarded-For` (the client's address, see [`crate::request::client`]: the peer, or
    /// what trusted proxies vouch for) and `X-Forwarded-Proto`. The client's `X-Real-IP`, `X-Forwarded-Host` and `Forwarded` were
    /// removed with the [`RESERVED_HEADERS`]; `Host` is the host the route judged.
    fn set_forwarding_headers(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
    ) -> Result<()> {
        if let Some(address) = client_ip(session, &self.settings.trusted_proxies) {
            upstream_request.insert_header("X-Forwarded-For", address.to_string())?;
        }
        upstream_request.insert_header(
            "X-Forwarded-Proto",
            if self.settings.tls { "https" } else { "http" },
        )?;
        Ok(())
    }
}

/// Client headers never forwarded on any route, besides the routes' identity headers: headers
/// some upstreams take as the request's path (`X-Original-URL`, `X-Rewrite-URL`: IIS, Symfony),
/// as the authenticated user (what other auth proxies set), or as the client's address or
/// the original request (the gateway sets its own).
const RESERVED_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-forwarded-access-token",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-auth-request-groups",
    "x-auth-request-preferred-username",
    "x-auth-request-access-token",
    "x-remote-user",
    "remote-user",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "forwarded",
];

/// True when an absolute-form `target` names the listener's scheme: `http://` on a plain
/// listener, `https://` on a TLS one (any case).
fn scheme_matches(target: &[u8], tls: bool) -> bool {
    let scheme: &[u8] = if tls { b"https://" } else { b"http://" };
    target
        .get(..scheme.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
}

/// Refuses framing two readers could take differently: more than one `Content-Length`
/// header, or one that is not a plain decimal number (`4,4`, `+4`, ` 4 `).
fn check_framing(headers: &http::HeaderMap) -> std::result::Result<(), GatewayError> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let Some(length) = lengths.next() else {
        return Ok(());
    };
    let digits = !length.is_empty() && length.as_bytes().iter().all(u8::is_ascii_digit);
    if lengths.next().is_some() || !digits {
        return Err(GatewayError::AmbiguousFraming);
    }
    Ok(())
}

/// The canonical path of the request: from `ctx.target` when the target was rewritten, else
/// the path as sent (already canonical).
fn canonical_path_of<'a>(session: &'a Session, ctx: &'a RequestContext) -> &'a str {
    match &ctx.target {
        Some(target) => target
            .split_once('?')
            .map_or(target.as_str(), |(path, _)| path),
        None => session.req_header().uri.path(),
    }
}

/// True when the request's `Authorization` header uses the Bearer scheme.
fn is_bearer(request: &RequestHeader) -> bool {
    request
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.as_bytes().get(..7))
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
}

/// True for a header name other than letters, digits and `-`: CGI, PHP, Django and Rails map
/// every other character (`_`, `.`, …) to `_`, so `X_User_Id` or `X.User.Id` reads as
/// `X-User-Id` there and could pass for an identity header.
fn is_unconventional_name(name: &HeaderName) -> bool {
    !name
        .as_str()
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Removes the client headers that never pass: the gateway's own (`controlled`, sorted by
/// name) and every name that is not made of letters, digits and `-` (see
/// [`is_unconventional_name`]; nginx drops names with `_` by default, `underscores_in_headers
/// off`). One pass over the request's headers; nothing is allocated when none is present.
fn strip_client_headers(request: &mut RequestHeader, controlled: &[HeaderName]) {
    let doomed = |name: &HeaderName| {
        is_unconventional_name(name)
            || controlled
                .binary_search_by(|c| c.as_str().cmp(name.as_str()))
                .is_ok()
    };
    if !request.headers.keys().any(doomed) {
        return;
    }
    let names: Vec<HeaderName> = request
        .headers
        .keys()
        .filter(|n| doomed(n))
        .cloned()
        .collect();
    for name in names {
        request.remove_header(&name);
    }
}

/// Writes a plugin's response.
async fn write_plugin_response(session: &mut Session, response: PluginResponse) -> Result<()> {
    let PluginResponse {
        status,
        headers,
        body,
    } = response;
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    answer::respond(session, status, &headers, body).await
}

/// The client's address (see [`crate::request::client`]): the peer, or behind `trusted`
/// proxies the first hop they do not own.
fn client_ip(session: &Session, trusted: &[ipnet::IpNet]) -> Option<std::net::IpAddr> {
    let peer = session
        .client_addr()
        .and_then(SocketAddr::as_inet)
        .map(|a| a.ip());
    client_address(peer, &session.req_header().headers, trusted)
}

/// The route's checks against verified claims: application (its `applicationId`, its tenant,
/// and `aud` when present), roles, and that every claim the route forwards can be a header.
/// A `remote` token (a trusted issuer's) names its issuer's tenants, not the gateway's: its
/// `tid` is not compared.
fn check_policy(
    route: &Route,
    claims: &VerifiedClaims,
    remote: bool,
) -> std::result::Result<(), GatewayError> {
    if let Some(app) = route.auth.application_id {
        if claims.application_id != Some(app) || !claims.audience_allows(app) {
            return Err(GatewayError::WrongApplication);
        }
        // The application belongs to one tenant: a token of another tenant naming it is not
        // for this application.
        if !remote
            && claims
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
    if route
        .identity_headers
        .iter()
        .any(|h| claims.header_value(&h.claim) == ClaimHeader::Unrepresentable)
    {
        return Err(GatewayError::UnforwardableClaim);
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

/// True for failures that are the client's doing (a malformed request, a connection it
/// closed): logged at debug level, never as errors, so bad traffic cannot fill a disk.
fn is_client_failure(e: &Error) -> bool {
    match e.etype() {
        HTTPStatus(code) => *code < 500,
        _ => matches!(e.esource(), ErrorSource::Downstream),
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestContext;

    fn new_ctx(&self) -> Self::CTX {
        RequestContext {
            id: RequestId::next(),
            started: Some(Instant::now()),
            ..RequestContext::default()
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        // A client that half-closes after its request still gets the answer.
        session.set_abort_on_close(false);
        // Pipelined requests are answered one after the other, in order, on the connection.
        session.set_pipelining_enabled(true);
        // An idle keep-alive connection is closed after the timeout (never re-enabling
        // keep-alive the engine turned off).
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.settings.idle_timeout_seconds));
        }
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum::<usize>()
            + session.req_header().raw_path().len();
        if header_bytes > self.settings.max_header_bytes {
            return Error::e_explain(HTTPStatus(431), "request headers over the limit");
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        if let Err(error) = self.read_target(session, ctx) {
            self.deny(session, ctx, error).await?;
            return Ok(true);
        }
        if self.serve_builtin(session, ctx).await? {
            return Ok(true);
        }
        let host = ctx.host.as_deref().or_else(|| {
            session
                .req_header()
                .headers
                .get(HOST)
                .and_then(|h| h.to_str().ok())
        });
        let index = match self.routes.find(host, canonical_path_of(session, ctx)) {
            RouteLookup::Route(index) => index,
            RouteLookup::NoRoute => {
                self.deny(session, ctx, GatewayError::NoRoute).await?;
                return Ok(true);
            }
            RouteLookup::AmbiguousCase => {
                self.deny(session, ctx, GatewayError::AmbiguousPathCase)
                    .await?;
                return Ok(true);
            }
        };
        ctx.route = Some(index);
        if self.declares_oversized_body(session) {
            self.refuse_declared_body(session, ctx).await?;
            return Ok(true);
        }
        let Some(route) = self.routes.get(index) else {
            self.deny(session, ctx, GatewayError::NoRoute).await?;
            return Ok(true);
        };
        let token_in_query = session
            .req_header()
            .uri
            .query()
            .is_some_and(credentials::query_has_token);
        let verdict = if token_in_query {
            Err(GatewayError::Ambiguous(
                credentials::Ambiguity::TokenInQuery,
            ))
        } else if route.auth.enabled {
            self.authenticate(session, ctx, route).await
        } else {
            // A public passthrough verifies nothing; ambiguous credentials are refused all the
            // same, and the credentials are not forwarded (see `forward_credentials`).
            credentials::read(&session.req_header().headers)
                .map(drop)
                .map_err(GatewayError::Ambiguous)
        };
        if let Err(error) = verdict {
            self.deny(session, ctx, error).await?;
            return Ok(true);
        }
        if session.req_header().headers.contains_key(TRANSFER_ENCODING) {
            // Judged before the upstream hears of it (see `body`); a refusal is answered by
            // `fail_to_proxy`.
            ctx.held_body =
                HeldBody::prefetch(session, self.settings.max_body_bytes, &mut ctx.body_bytes)
                    .await?;
        }
        self.allowed_requests.inc();
        ctx.outcome = Some(access::ALLOWED);
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.held_body.filter(
            body,
            end_of_stream,
            &mut ctx.body_bytes,
            self.settings.max_body_bytes,
        )
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
        ctx.upstream = Some((upstream.addr, Instant::now()));
        let mut peer = HttpPeer::new(upstream.addr, upstream.tls, upstream.sni);
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        peer.options.total_connection_timeout = Some(Duration::from_secs(10));
        peer.options.read_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // Exactly the target the policy judged, in origin form.
        if let Some(target) = &ctx.target {
            let uri = target
                .parse::<http::Uri>()
                .map_err(|_| Error::explain(InternalError, "canonical target"))?;
            upstream_request.set_uri(uri);
        }
        if let Some(host) = &ctx.host {
            upstream_request.insert_header(HOST, host.as_str())?;
        }
        // Headers the gateway controls never pass through from the client.
        strip_client_headers(upstream_request, &self.controlled_headers);
        let Some(route) = self.route(ctx) else {
            return Error::e_explain(InternalError, "no route");
        };
        self.forward_credentials(upstream_request, ctx)?;
        self.set_forwarding_headers(session, upstream_request)?;
        if let Some(claims) = &ctx.identity {
            for header in &route.identity_headers {
                if let ClaimHeader::Value(value) = claims.header_value(&header.claim) {
                    upstream_request.insert_header(header.written.clone(), value.clone())?;
                }
            }
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()>
    where
        Self::CTX: Send + Sync,
    {
        // The first response header (an informational one included) ends the wait.
        if let (Some(index), Some((_, sent))) = (ctx.route, ctx.upstream) {
            if let Some(histogram) = self.upstream_durations.get(index) {
                histogram.observe(sent.elapsed().as_secs_f64());
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
        // The client is answered in the gateway's HTTP version, whatever the upstream spoke:
        // an HTTP/1.0 upstream must not turn the answer into HTTP/1.0 (no keep-alive, no
        // chunked framing) for a client that asked in HTTP/1.1.
        upstream_response.set_version(http::Version::HTTP_11);
        if let Some(refreshed) = &ctx.refreshed {
            for cookie in self.refreshed_cookies(refreshed) {
                upstream_response.append_header("Set-Cookie", cookie)?;
            }
        } else if ctx.clear_cookies {
            for cookie in answer::cleared_cookies() {
                upstream_response.append_header("Set-Cookie", cookie)?;
            }
        }
        Ok(())
    }

    /// The engine's own error line is replaced by ours: a client's failure at debug level, an
    /// upstream's once by [`Self::fail_to_proxy`]; neither carries the error's context, which
    /// can hold raw header bytes (cookies, `Authorization`).
    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        if is_client_failure(error) {
            tracing::debug!(kind = error.etype().as_str(), "client request failed");
            return true;
        }
        matches!(error.esource(), ErrorSource::Upstream)
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX)
    where
        Self::CTX: Send + Sync,
    {
        // A rotation whose answer never reached the client (it went away, the write failed):
        // the client still holds the retired value, so one retry with it may have the outcome.
        if let Some(retired) = &ctx.retired {
            let undelivered = session.response_written().is_none()
                || e.is_some_and(|e| matches!(e.esource(), ErrorSource::Downstream));
            if undelivered {
                self.refresher.mark_undelivered(retired);
            }
        }
        self.record(session, ctx);
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
        let failed = |error_code| FailToProxy {
            error_code,
            can_reuse_downstream: false,
        };
        ctx.outcome = Some(access::CLIENT_CLOSED);
        let error = match e.etype() {
            HTTPStatus(413) => GatewayError::BodyTooLarge,
            HTTPStatus(431) => GatewayError::HeadersTooLarge,
            HTTPStatus(code) if *code < 500 => GatewayError::Malformed(*code),
            _ => match e.esource() {
                ErrorSource::Upstream => GatewayError::UpstreamUnavailable,
                ErrorSource::Downstream => match e.etype() {
                    WriteError | ReadError | ConnectionClosed => return failed(0),
                    _ => GatewayError::Malformed(400),
                },
                ErrorSource::Internal | ErrorSource::Unset => internal_failure(e),
            },
        };
        if matches!(error, GatewayError::UpstreamUnavailable) {
            // The kind and the root cause (`Connection refused`…), never the context, which
            // can quote the upstream's raw response header.
            tracing::warn!(kind = e.etype().as_str(), cause = %e.root_cause(), "upstream unavailable");
        }
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

/// The gateway error of an internal proxy failure: an upstream that cannot be reached, or an
/// internal error logged with its correlation id.
fn internal_failure(e: &Error) -> GatewayError {
    if matches!(
        e.etype(),
        ConnectTimedout | ConnectRefused | ConnectError | ConnectNoRoute | TLSHandshakeFailure
    ) {
        return GatewayError::UpstreamUnavailable;
    }
    let id = Uuid::new_v4().to_string();
    tracing::error!(correlation_id = %id, error = %e, "proxy failure");
    GatewayError::Internal(id)
}
