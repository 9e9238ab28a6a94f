//! Admitting a proxied request: the route ([`super::routes`]), the declared body size, the
//! credentials (read once with the edge's rules, [`crate::request::credentials`]), the token's
//! state, a transparent refresh (through [`super::refresh::Refresher`]) and the route's policy
//! (application, audience, tenant, roles, forwardable claims). `Ok` lets the request through,
//! with `ctx.identity` set when a token passed the policy; every refusal is a [`GatewayError`].

use std::sync::Arc;
use std::time::Instant;

use gatehouse_plugin_api::credentials::Credentials;
use gatehouse_plugin_api::{ClaimHeader, TokenError};
use gatehouse_refresh::RefreshError;
use pingora::proxy::Session;

use super::refresh::{RefreshRequest, Refreshed};
use super::routes::RouteLookup;
use super::{canonical_host_of, canonical_path_of, query_of, Gateway, RequestContext};
use crate::auth::cached::CachedToken;
use crate::config::Route;
use crate::proxy::error::GatewayError;
use crate::request::credentials;

/// What a transparent refresh gave: the new pair, or why there is none.
type RefreshOutcome = Result<Arc<Refreshed>, RefreshError>;

/// What the request's access token amounts to, before policy.
enum TokenState {
    /// No token was presented.
    Absent,
    /// A token was presented and refused.
    Invalid(TokenError),
    /// A valid token.
    Valid(Arc<CachedToken>),
}

impl Gateway {
    /// Admits a request no built-in served, or the request a forward-auth decision judges:
    /// chooses its route (a route without an upstream only in a decision), refuses a declared
    /// body over the limit, reads its credentials (ambiguous ones are refused on every route,
    /// public passthroughs included) and, on an auth-enabled route, authenticates it. `Ok`
    /// lets it through.
    pub(super) async fn admit(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
    ) -> Result<(), GatewayError> {
        let route = self.choose_route(session, ctx)?;
        // (A decision's judged method was checked as it was read.)
        if ctx.decision().is_none() {
            refuse_traced(&session.req_header().method)?;
        }
        if route.upstreams.is_empty() && ctx.decision().is_none() {
            return Err(GatewayError::DecisionOnlyRoute);
        }
        if self.declares_oversized_body(session) {
            return Err(GatewayError::BodyTooLarge);
        }
        let credentials = credentials::read(&session.req_header().headers, query_of(session, ctx))
            .map_err(GatewayError::Ambiguous)?;
        if !route.auth.enabled {
            // A public passthrough verifies nothing, and forwards no credential (see
            // `Gateway::forward_credentials`).
            return Ok(());
        }
        if route.auth.allow_preflight && ctx.decision().is_none() && is_cors_preflight(session) {
            // Passed as on a public passthrough: no identity, no credential forwarded.
            return Ok(());
        }
        self.authenticate(session, ctx, route, credentials).await
    }

    /// The route for the request's canonical host and path, its position recorded in
    /// `ctx.route`: `Err` when none matches, or when the path matches a more specific route in
    /// all but case.
    fn choose_route(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
    ) -> Result<&Route, GatewayError> {
        // The host matters only to a route that names one.
        let host = match self.routes.has_hosts() {
            true => canonical_host_of(session, ctx),
            false => None,
        };
        let index = match self.routes.find(host, canonical_path_of(session, ctx)) {
            RouteLookup::Route(index) => index,
            RouteLookup::NoRoute => return Err(GatewayError::NoRoute),
            RouteLookup::AmbiguousCase => return Err(GatewayError::AmbiguousPathCase),
        };
        ctx.route = Some(index);
        self.routes.get(index).ok_or(GatewayError::NoRoute)
    }

    /// Authenticates a request on an auth-enabled route from its `credentials`: the token's
    /// state, a transparent refresh, the policy. `Ok` lets it through.
    async fn authenticate(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
        route: &Route,
        credentials: Credentials<'_>,
    ) -> Result<(), GatewayError> {
        let state = self.token_state(credentials.access_token).await;
        let state = self
            .refresh_if_needed(session, ctx, route, state, credentials.refresh_token)
            .await?;
        self.apply_policy(ctx, route, state)
    }

    /// Verifies the request's token, counting the outcome. A trusted issuer's token whose `kid`
    /// is new waits briefly for its issuer's keys (see [`Tokens::verify_at_edge`]).
    ///
    /// [`Tokens::verify_at_edge`]: crate::auth::tokens::Tokens::verify_at_edge
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
    ) -> Result<TokenState, GatewayError> {
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
                let client = self.judged_client_address(session, ctx);
                // Boxed: the request's future, which every request carries, stays small.
                Box::pin(self.refresh_for_route(route, value, arrived, client)).await
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
                let uncommon = ctx.uncommon_mut();
                uncommon.retired = std::str::from_utf8(value)
                    .ok()
                    .filter(|v| *v != refreshed.refresh_token)
                    .map(str::to_string);
                uncommon.refreshed = Some(refreshed);
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
                ctx.uncommon_mut().clear_cookies = !matches!(error, RefreshError::AlreadyRotated);
                Ok(match state {
                    TokenState::Valid(_) => TokenState::Invalid(TokenError::Expired),
                    other => other,
                })
            }
        }
    }

    /// Exchanges `value` for a request on `route`, unless it is another application's refresh
    /// token: exchanging that here would use it up (one-time use) for a token this route
    /// refuses, logging its owner out. `None` leaves the token alone; a store that cannot say
    /// is the outcome's store error (a 503 unless the access token is still valid), and so is a
    /// refresh not done within `api.timeLimitSeconds` of the request's arrival (see
    /// [`super::refresh::Refresher::refresh_within`]). `client` is recorded on the refresh token. One store read decides both (see
    /// [`super::refresh::Refresher::refresh`]).
    async fn refresh_for_route(
        &self,
        route: &Route,
        value: &str,
        arrived: Instant,
        client: Option<std::net::IpAddr>,
    ) -> Option<RefreshOutcome> {
        let client = client.map(|ip| ip.to_string());
        let application = route.auth.application_id;
        // Bounded like an API request, from the moment the request's header was read.
        let deadline = arrived + self.api.settings().time_limit;
        match self
            .refresher
            .refresh_within(
                deadline,
                RefreshRequest {
                    value,
                    client_ip: client.as_deref(),
                    arrived,
                    application,
                },
            )
            .await
        {
            Err(RefreshError::OtherApplication(_)) => None,
            outcome => Some(outcome),
        }
    }

    /// Applies the route's policy. `Ok(())` lets the request through, with `ctx.identity` set
    /// when a valid token passed the policy.
    fn apply_policy(
        &self,
        ctx: &mut RequestContext,
        route: &Route,
        state: TokenState,
    ) -> Result<(), GatewayError> {
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
}

impl Gateway {
    /// The route's policy for a valid token of any issuer: the issuers, audiences and claims it
    /// requires, then [`check_policy`] (application, roles through the issuer's roles claim,
    /// forwardable claims).
    fn check_route_policy(&self, route: &Route, claims: &CachedToken) -> Result<(), GatewayError> {
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
}

/// The route's checks against verified claims: application (its `applicationId`, its tenant,
/// and `aud` when present), roles, and that every claim the route forwards can be a header.
/// A `remote` token (a trusted issuer's) names its issuer's tenants, not the gateway's: its
/// `tid` is not compared.
fn check_policy(route: &Route, claims: &CachedToken, remote: bool) -> Result<(), GatewayError> {
    if let Some(app) = route.auth.application_id {
        if claims.application_id() != Some(app) || !claims.audience_allows(app) {
            return Err(GatewayError::WrongApplication);
        }
        // The application belongs to one tenant: a token of another tenant naming it is not
        // for this application.
        if !remote
            && claims
                .tenant_id()
                .is_some_and(|tid| Some(tid) != route.auth.application_tenant_id)
        {
            return Err(GatewayError::WrongApplication);
        }
    }
    if !route.auth.roles.is_empty()
        && !claims
            .roles()
            .any(|r| route.auth.roles.iter().any(|w| **w == *r))
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
/// The methods a proxied route forwards, as a 405 to a `TRACE` lists them (`CONNECT` is
/// refused by the engine).
const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

/// Refuses (405) a method that asks the upstream to echo the request back: `TRACE`, and IIS's
/// `TRACK`, in any case (some frameworks upper-case the method). The echo would hand back what
/// the gateway forwarded, verified credentials and identity headers (cross-site tracing): such
/// a request is refused on every route, and in every forward-auth decision.
pub(super) fn refuse_traced(method: &http::Method) -> Result<(), GatewayError> {
    let name = method.as_str();
    if name.len() == 5 && (name.eq_ignore_ascii_case("TRACE") || name.eq_ignore_ascii_case("TRACK"))
    {
        return Err(GatewayError::MethodNotAllowed {
            method: method.clone(),
            allow: FORWARDED_METHODS.to_string(),
        });
    }
    Ok(())
}

/// True for a CORS preflight (Fetch standard), exactly as browsers send one: an `OPTIONS`
/// with one non-empty `Origin` and one `Access-Control-Request-Method` naming a method (a
/// token), no body and no `Upgrade`. Browsers send it without credentials. Anything short of
/// that is judged as any request: an upstream's CORS layer may hand an `OPTIONS` with an empty
/// or doubled header to the application as an ordinary request, and an upgrade or a body would
/// carry more than a preflight past the policy.
fn is_cors_preflight(session: &Session) -> bool {
    use crate::request::only_value;
    use http::header::{ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, UPGRADE};
    let header = session.req_header();
    if header.method != http::Method::OPTIONS {
        return false;
    }
    let headers = &header.headers;
    let origin = only_value(headers, ORIGIN);
    let asked = only_value(headers, ACCESS_CONTROL_REQUEST_METHOD);
    matches!(origin, Ok(Some(v)) if !v.as_bytes().trim_ascii().is_empty())
        && matches!(asked, Ok(Some(v)) if http::Method::from_bytes(v.as_bytes()).is_ok())
        && !headers.contains_key(UPGRADE)
        && !super::answer::declares_body(session)
}
