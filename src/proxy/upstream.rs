//! What the upstream gets: the peer ([`Gateway::peer`]), and the request header policy, applied
//! in this order — exactly the target and host the policy judged; every client header the
//! gateway controls stripped (identity headers of any route, [`RESERVED_HEADERS`], names with
//! characters other than letters, digits and `-`); the verified credential only
//! (`Authorization` as the verified Bearer token, the `Cookie` line without the refresh token);
//! `X-Forwarded-For` and `X-Forwarded-Proto`; the route's identity headers from the verified
//! claims. An HTTP/2 upstream (`h2c://`, `h2://`) also gets `te: trailers` when the client sent
//! it ([`Gateway::set_te_for_http2`]): gRPC servers require it, and trailers pass both ways.
//! Upgrades are WebSocket only, both ways: another `Upgrade` is removed from the request
//! ([`keep_websocket_upgrade_only`]), and a `101` the client did not ask for is an upstream
//! failure ([`check_switch`]).

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use gatehouse_plugin_api::credentials::bearer_token;
use gatehouse_plugin_api::ClaimHeader;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION, COOKIE, HOST, TE, UPGRADE};
use pingora::http::{HeaderLines, HeaderLinesBuilder, SpelledName};
use pingora::prelude::*;
use pingora::protocols::ALPN;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::routes::RouteTable;
use super::{Gateway, RequestContext};
use crate::config::IdentityHeader;
use crate::request::credentials::{cookie_needs_rewrite, upstream_cookie, AccessCookie};
use crate::request::REQUEST_VIEW_HEADERS;

impl Gateway {
    /// The next upstream of the request's route (round-robin), with the gateway's connection
    /// timeouts; the choice and its time are recorded in `ctx.upstream`.
    pub(super) fn peer(&self, ctx: &mut RequestContext) -> Result<Box<HttpPeer>> {
        let upstream = ctx
            .route
            .and_then(|i| self.routes.next_upstream(i))
            .ok_or_else(|| Error::explain(InternalError, "no upstream for the route"))?;
        ctx.upstream = Some((upstream.addr, Instant::now()));
        let mut peer = HttpPeer::new(upstream.addr, upstream.tls, upstream.sni);
        peer.options.connection_timeout = Some(Duration::from_secs(5));
        peer.options.total_connection_timeout = Some(Duration::from_secs(10));
        peer.options.read_timeout = Some(Duration::from_secs(60));
        // An upstream that stops reading the request (it answered early, say, and waits) fails
        // the write after as long, and its answer, if it sent one, is still passed on; without
        // it the request would wait for ever.
        peer.options.write_timeout = Some(Duration::from_secs(60));
        if upstream.http2 {
            // HTTP/2 only: by ALPN over TLS (`h2://`), with prior knowledge without (`h2c://`,
            // the engine trusts that the server speaks h2c). Streams share a connection.
            peer.options.alpn = ALPN::H2;
            peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        }
        Ok(Box::new(peer))
    }

    /// `te: trailers` on a request to an HTTP/2 upstream when the client's `TE` names
    /// `trailers` (gRPC clients send it, and gRPC servers refuse a request without it); any
    /// other `TE` is removed, since HTTP/2 allows no other value (RFC 9113 §8.2.2). The engine
    /// strips `TE` as hop-by-hop from an HTTP/1.1 client's request, so it is set here from the
    /// client's request. Nothing changes for an HTTP/1.1 upstream.
    pub(super) fn set_te_for_http2(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
    ) -> Result<()> {
        if upstream_request.version != http::Version::HTTP_2 {
            return Ok(());
        }
        if asks_for_trailers(&session.req_header().headers) {
            upstream_request.insert_header(TE, "trailers")?;
        } else {
            upstream_request.remove_header(&TE);
        }
        Ok(())
    }

    /// The upstream's wait (upstream chosen to its first response header, an informational
    /// one included), in the route's histogram.
    pub(super) fn observe_upstream_wait(&self, ctx: &RequestContext) {
        if let (Some(index), Some((_, sent))) = (ctx.route, ctx.upstream) {
            if let Some(histogram) = self.upstream_durations.get(index) {
                histogram.observe(sent.elapsed().as_secs_f64());
            }
        }
    }

    /// Exactly the target the policy judged, in origin form, and the canonical host.
    pub(super) fn set_judged_target(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        if let Some(target) = ctx.target() {
            let uri = target
                .parse::<http::Uri>()
                .map_err(|_| Error::explain(InternalError, "canonical target"))?;
            upstream_request.set_uri(uri);
        }
        if let Some(host) = ctx.host() {
            upstream_request.insert_header(HOST, host)?;
        }
        Ok(())
    }

    /// The request's credentials for the upstream: `Authorization` and `Cookie` as the route's
    /// verdict allows. A token reaches the upstream only when it passed the policy, and then
    /// only the one that was verified (or its refreshed successor); never on a public
    /// passthrough, which verifies nothing.
    /// `present` is what [`Present::scan`] found in `upstream_request` (or more): a header it
    /// did not find is not looked for.
    pub(super) fn forward_credentials(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestContext,
        present: Present,
    ) -> Result<()> {
        let verified = ctx.identity.is_some();
        let access = match (ctx.refreshed(), verified) {
            (_, false) => AccessCookie::Remove,
            (Some(refreshed), true) => AccessCookie::Replace(&refreshed.access_token),
            (None, true) => AccessCookie::Keep,
        };
        // `Authorization` reaches the upstream only as the verified Bearer token: any other
        // scheme (Basic, Digest…) is a credential the gateway did not verify.
        match access {
            AccessCookie::Replace(token) => {
                upstream_request.insert_header(AUTHORIZATION, format!("Bearer {token}"))?;
            }
            AccessCookie::Keep if is_bearer(upstream_request) => {}
            _ if present.any(Present::AUTHORIZATION) => {
                upstream_request.remove_header(&AUTHORIZATION);
            }
            _ => {}
        }
        let may_rewrite =
            present.any(Present::COOKIE) || matches!(access, AccessCookie::Replace(_));
        if may_rewrite && cookie_needs_rewrite(&upstream_request.headers, access) {
            match upstream_cookie(&upstream_request.headers, access) {
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

    /// `X-Forwarded-For` (the client's address, see [`crate::request::client`]: the peer, or
    /// what trusted proxies vouch for) and `X-Forwarded-Proto`. The client's `X-Real-IP`,
    /// `X-Forwarded-Host` and `Forwarded` were removed with the [`RESERVED_HEADERS`]; `Host` is
    /// the host the route judged.
    pub(super) fn set_forwarding_headers(
        &self,
        session: &Session,
        upstream_request: &mut RequestHeader,
    ) -> Result<()> {
        let address = self.client_address(session);
        if upstream_request.version != http::Version::HTTP_2 {
            // HTTP/1: written after the header map's fields as lines rendered once for a run of
            // requests from one client (see `forwarding`); the client's own were stripped
            // with the reserved headers.
            let lines = forwarding(address, self.settings.tls, |f| f.lines.clone());
            upstream_request.set_wire_suffix(lines);
            return Ok(());
        }
        if let Some(client) = forwarding(address, self.settings.tls, |f| f.client.clone()) {
            upstream_request.insert_parsed_header(&FORWARDED_FOR, "X-Forwarded-For", client)?;
        }
        let scheme = scheme_value(self.settings.tls);
        upstream_request.insert_parsed_header(&FORWARDED_PROTO, "X-Forwarded-Proto", scheme)?;
        Ok(())
    }

    /// The route's identity headers, from the claims of the token that passed its policy. For
    /// an HTTP/1 upstream they are written after the forwarding lines (one block, see
    /// [`Gateway::set_forwarding_headers`]), for HTTP/2 into the header map.
    pub(super) fn set_identity_headers(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        let Some(route_lines) = ctx.route.and_then(|i| self.identity_lines.get(i)) else {
            return Error::e_explain(InternalError, "no route");
        };
        let mut values = self.identity_values(ctx).peekable();
        if values.peek().is_none() {
            return Ok(());
        }
        if upstream_request.version == http::Version::HTTP_2 {
            for (_, header, value) in values {
                upstream_request.insert_parsed_header(
                    &header.name,
                    header.written.clone(),
                    value.clone(),
                )?;
            }
            return Ok(());
        }
        let forwarding = upstream_request.wire_suffix().cloned().unwrap_or_default();
        let mut lines = HeaderLinesBuilder::with_capacity(forwarding.as_bytes().len() + 128);
        lines.extend(&forwarding);
        for (at, _, value) in values {
            let Some(Some(spelled)) = route_lines.get(at) else {
                return Error::e_explain(InvalidHTTPHeader, "header line spelling of another name");
            };
            lines.push_spelled(spelled, value);
        }
        upstream_request.set_wire_suffix(lines.build());
        Ok(())
    }

    /// The identity headers of the request's route (position in the route's list, counted
    /// before the headers without a value are left out, so it indexes the route's
    /// [`identity_lines`]; name; name as written in the configuration), with their values from
    /// the claims of the token that passed its policy; none without such a token (or a route),
    /// and none for a claim the token does not carry.
    pub(super) fn identity_values<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> impl Iterator<Item = (usize, &'a IdentityHeader, &'a http::HeaderValue)> + 'a {
        let headers = match (self.route(ctx), &ctx.identity) {
            (Some(route), Some(_)) => route.identity_headers.as_slice(),
            _ => &[],
        };
        headers.iter().enumerate().filter_map(move |(at, header)| {
            let claims = ctx.identity.as_ref()?;
            match claims.header_value(&header.claim) {
                ClaimHeader::Value(value) => Some((at, header, value)),
                _ => None,
            }
        })
    }
}

/// The most header fields the upstream steps add to a request of `routes` beyond the client's
/// (after the strip): `X-Forwarded-For`, `X-Forwarded-Proto`, the `Authorization` of a
/// transparent refresh, and the identity headers of the route that sets the most. The engine
/// sizes a request's header maps with this much room (see `vendor/README.md`), so the upstream's
/// copy takes them without growing and rehashing both maps. (An HTTP/1 upstream request takes
/// the forwarding and identity headers as wire lines instead, see
/// [`Gateway::set_forwarding_headers`]; the room serves the refresh's `Authorization` there and
/// all of them on an HTTP/2 upstream.)
pub(super) fn header_room(routes: &RouteTable) -> usize {
    let identity = routes
        .iter()
        .map(|r| r.identity_headers.len())
        .max()
        .unwrap_or(0);
    3 + identity
}

/// The starts of the HTTP/1 lines of `route`'s identity headers (`Name: ` as the configuration
/// spells it), in its order. The configuration parses each name from its spelling, so each
/// is `Some`; `None` (a spelling of another name) fails the requests that would send it.
pub(super) fn identity_lines(route: &crate::config::Route) -> Vec<Option<SpelledName>> {
    route
        .identity_headers
        .iter()
        .map(|h| SpelledName::new(h.name.clone(), &h.written).ok())
        .collect()
}

/// Every identity header any route sets, sorted by name, each once.
pub(super) fn identity_names(routes: &RouteTable) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = routes
        .iter()
        .flat_map(|r| r.identity_headers.iter().map(|h| h.name.clone()))
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

/// Every client header no upstream gets from the client (see [`strip_client_headers`]): each
/// identity header any route sets, and the [`RESERVED_HEADERS`].
pub(super) struct ControlledHeaders {
    /// The names, sorted.
    names: Vec<HeaderName>,
    /// A filter over the names: the bit of [`ControlledHeaders::bit`] is set for each, so a
    /// name whose bit is clear (most of a request's headers) is not looked up at all. 2048 bits
    /// for about a hundred names: none of the common request headers falls on a set bit.
    filter: [u64; 32],
}

impl ControlledHeaders {
    /// The controlled headers of `routes`.
    pub(super) fn of(routes: &RouteTable) -> ControlledHeaders {
        Self::with_identity_headers(
            routes
                .iter()
                .flat_map(|r| r.identity_headers.iter().map(|h| h.name.clone())),
        )
    }

    /// The [`RESERVED_HEADERS`], the [`REQUEST_VIEW_HEADERS`] and these identity headers.
    fn with_identity_headers(identity: impl Iterator<Item = HeaderName>) -> ControlledHeaders {
        let reserved = RESERVED_HEADERS.iter().chain(REQUEST_VIEW_HEADERS);
        let mut names: Vec<HeaderName> = identity
            .chain(reserved.map(|h| HeaderName::from_static(h)))
            .collect();
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        let mut filter = [0u64; 32];
        for name in &names {
            let bit = Self::bit(name);
            filter[bit / 64] |= 1 << (bit % 64);
        }
        ControlledHeaders { names, filter }
    }

    /// The filter bit of `name` (0–2047): a multiplicative hash of its length and its second,
    /// middle and last bytes.
    fn bit(name: &HeaderName) -> usize {
        let name = name.as_str().as_bytes();
        let byte = |at: usize| u32::from(name.get(at).copied().unwrap_or(0));
        let key = (name.len() as u32 & 0xff)
            | byte(name.len().saturating_sub(1)) << 8
            | byte(name.len() / 2) << 16
            | byte(1) << 24;
        (key.wrapping_mul(0x9E37_79B1) >> 21) as usize
    }

    /// True when `name` is controlled: one of the names, or of a family [`has_reserved_prefix`]
    /// knows.
    pub(super) fn contains(&self, name: &HeaderName) -> bool {
        let bit = Self::bit(name);
        let named = self.filter[bit / 64] & (1 << (bit % 64)) != 0
            && self
                .names
                .binary_search_by(|c| c.as_str().cmp(name.as_str()))
                .is_ok();
        named || has_reserved_prefix(name.as_str().as_bytes())
    }
}

/// Which headers of interest a request has, found in one pass over its names
/// ([`Present::scan`]), so that the upstream steps look up, strip or rewrite only what is there.
/// A bit set means "may be present"; a bit clear means the scanned request had no such header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Present(u8);

impl Present {
    /// A header to strip: controlled, or with an unconventional name
    /// (see [`strip_client_headers`]).
    pub(super) const CONTROLLED: u8 = 1;
    /// `Upgrade` or `HTTP2-Settings` (see [`keep_websocket_upgrade_only`]).
    pub(super) const UPGRADES: u8 = 2;
    /// `Authorization`.
    pub(super) const AUTHORIZATION: u8 = 4;
    /// `Cookie`.
    pub(super) const COOKIE: u8 = 8;

    /// What `request`'s header names hold, `controlled` saying which names are the gateway's.
    pub(super) fn scan(request: &RequestHeader, controlled: &ControlledHeaders) -> Present {
        let mut found = 0;
        for name in request.headers.keys() {
            if is_unconventional_name(name) || controlled.contains(name) {
                found |= Self::CONTROLLED;
            }
            found |= if *name == AUTHORIZATION {
                Self::AUTHORIZATION
            } else if *name == COOKIE {
                Self::COOKIE
            } else if *name == UPGRADE || name.as_str() == HTTP2_SETTINGS {
                Self::UPGRADES
            } else {
                0
            };
        }
        Present(found)
    }

    /// True when any of `bits` (the constants above, or'ed) may be present.
    pub(super) fn any(self, bits: u8) -> bool {
        self.0 & bits != 0
    }
}

/// The name of the h2c upgrade's settings header.
const HTTP2_SETTINGS: &str = "http2-settings";

/// The forwarding headers' names, parsed once: nothing is parsed per request.
static FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What the forwarding headers of a request from `address` (when there is one) on a listener
/// with or without TLS carry, rendered once for a run of requests from the same client on this
/// thread (a keep-alive connection's requests) and then shared.
struct Forwarding {
    /// `X-Forwarded-For` and `X-Forwarded-Proto` as the lines of an HTTP/1 upstream request.
    lines: HeaderLines,
    /// The `X-Forwarded-For` value, for an HTTP/2 upstream request's header map.
    client: Option<HeaderValue>,
}

/// `pick` of the [`Forwarding`] of `address` and `tls` (rendered when the thread's last client
/// was another).
fn forwarding<T>(address: Option<IpAddr>, tls: bool, pick: impl FnOnce(&Forwarding) -> T) -> T {
    thread_local! {
        static LAST: RefCell<Option<(Option<IpAddr>, bool, Forwarding)>> =
            const { RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((seen, seen_tls, forwarding)) = &*last {
            if *seen == address && *seen_tls == tls {
                return pick(forwarding);
            }
        }
        let client = address.map(render_address);
        let mut lines = HeaderLinesBuilder::with_capacity(80);
        // Both spellings are of their names: neither push can be refused.
        if let Some(client) = &client {
            let _ = lines.push(&FORWARDED_FOR, b"X-Forwarded-For", client);
        }
        let _ = lines.push(&FORWARDED_PROTO, b"X-Forwarded-Proto", &scheme_value(tls));
        let forwarding = Forwarding {
            lines: lines.build(),
            client,
        };
        let picked = pick(&forwarding);
        *last = Some((address, tls, forwarding));
        picked
    })
}

/// The `X-Forwarded-Proto` value of a listener with or without TLS.
fn scheme_value(tls: bool) -> HeaderValue {
    match tls {
        true => HeaderValue::from_static("https"),
        false => HeaderValue::from_static("http"),
    }
}

/// `address` as text (`Display`), as a header value, formatted without a `String`.
fn render_address(address: IpAddr) -> HeaderValue {
    use std::io::Write;
    // The longest text of an address: an IPv6 address with an embedded IPv4 one.
    let mut buffer = [0u8; 45];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = write!(cursor, "{address}");
    let written = usize::try_from(cursor.position()).unwrap_or(0);
    // Digits, `.`, `:` and hex letters only: always a valid header value.
    HeaderValue::from_bytes(&buffer[..written]).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// How many requests share one connection to an HTTP/2 upstream before another is opened.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// True when a `TE` header of `headers` lists `trailers` (any case, among other codings).
fn asks_for_trailers(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|coding| {
            let name = coding.split(|&b| b == b';').next().unwrap_or_default();
            name.trim_ascii().eq_ignore_ascii_case(b"trailers")
        })
}

/// True when a header `name` of `headers` lists `token` (any case) among its comma-separated
/// values.
fn lists_token(headers: &http::HeaderMap, name: http::header::HeaderName, token: &[u8]) -> bool {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|value| value.trim_ascii().eq_ignore_ascii_case(token))
}

/// True when `headers` ask for a WebSocket upgrade: `Upgrade` lists `websocket` and
/// `Connection` lists `upgrade` (any case).
pub(super) fn asks_for_websocket(headers: &http::HeaderMap) -> bool {
    lists_token(headers, http::header::UPGRADE, b"websocket")
        && lists_token(headers, http::header::CONNECTION, b"upgrade")
}

/// Keeps the upstream request's upgrade to WebSocket only, and only when the client asked for
/// it (`client`: its `Upgrade` lists `websocket` and its own `Connection` lists `upgrade`; the
/// engine adds `Connection: upgrade` upstream whenever an `Upgrade` header is present): a
/// WebSocket upgrade is forwarded as `Upgrade: websocket` alone, any other (`h2c`, with its
/// `HTTP2-Settings`; `TLS/1.0`; an `Upgrade` without `Connection: upgrade`…) is removed, with
/// the `Connection` that names it, so the upstream answers the request itself. A tunnel is
/// judged once, at its request: an h2c tunnel would carry further requests to any path, none
/// judged (h2c smuggling).
pub(super) fn keep_websocket_upgrade_only(
    request: &mut RequestHeader,
    client: &http::HeaderMap,
) -> Result<()> {
    if request.headers.contains_key(UPGRADE) {
        if asks_for_websocket(client) {
            request.insert_header(UPGRADE, HeaderValue::from_static("websocket"))?;
        } else {
            request.remove_header(&UPGRADE);
            if lists_token(&request.headers, http::header::CONNECTION, b"upgrade") {
                request.remove_header(&http::header::CONNECTION);
            }
        }
    }
    let http2_settings = HeaderName::from_static(HTTP2_SETTINGS);
    if request.headers.contains_key(&http2_settings) {
        request.remove_header(&http2_settings);
    }
    Ok(())
}

/// `Err` (an upstream failure: 502) when the upstream switches protocols (101) for a request
/// that did not ask for a WebSocket upgrade (`request`), or to another protocol than WebSocket:
/// the connection would become a tunnel the gateway never judged.
pub(super) fn check_switch(request: &http::HeaderMap, response: &ResponseHeader) -> Result<()> {
    if response.status != http::StatusCode::SWITCHING_PROTOCOLS {
        return Ok(());
    }
    if asks_for_websocket(request)
        && lists_token(&response.headers, http::header::UPGRADE, b"websocket")
    {
        return Ok(());
    }
    let mut error = Error::explain(
        ErrorType::InvalidHTTPHeader,
        "the upstream switched protocols for a request that did not ask for a WebSocket",
    );
    error.esource = ErrorSource::Upstream;
    Err(error)
}

/// A `204 No Content` answer goes to the client without the framing headers an upstream may
/// have set on it (RFC 9110 §8.6 and RFC 9112 §6.1: a 204 has neither `Content-Length` nor
/// `Transfer-Encoding`; the engine sends none of its body either way).
pub(super) fn frame_no_content(response: &mut ResponseHeader) {
    if response.status == http::StatusCode::NO_CONTENT {
        response.remove_header(&http::header::CONTENT_LENGTH);
        response.remove_header(&http::header::TRANSFER_ENCODING);
    }
}

/// True when the request's `Authorization` header uses the Bearer scheme (read as the
/// credentials were, [`bearer_token`]).
fn is_bearer(request: &RequestHeader) -> bool {
    request
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()))
        .is_some()
}

/// Client headers never forwarded on any route, besides the routes' identity headers and the
/// [`REQUEST_VIEW_HEADERS`] (the request's path, method, scheme, host or client address by
/// another name): headers some upstreams take as the authenticated user (what other auth
/// proxies set) or as the client's certificate.
const RESERVED_HEADERS: &[&str] = &[
    // What other auth proxies set as the user (oauth2-proxy, Authelia, Grafana's auth proxy,
    // Apache, nginx setups, Vouch, Pomerium, Traefik's mTLS, Envoy).
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
    "remote-groups",
    "remote-email",
    "remote-name",
    "x-remote-group",
    "x-webauth-user",
    "x-auth-user",
    "x-proxy-user",
    "x-user",
    "x-email",
    "x-authenticated-user",
    "x-authenticated-userid",
    "x-authenticated-email",
    "x-auth-email",
    "x-credential-identifier",
    "x-credential-username",
    "x-anonymous-consumer",
    "x-authenticated-scope",
    "x-authenticated-groups",
    "x-userinfo",
    "x-consumer",
    "x-real-user",
    "oidc-access-token",
    "oidc-id-token",
    // Client certificates as nginx setups pass them on.
    "x-client-verify",
    "x-client-dn",
    "x-client-s-dn",
    "x-client-i-dn",
    // Tokens another gateway passed on beside its user (kong-oidc and others): credentials this
    // gateway never judged.
    "x-access-token",
    "x-id-token",
    // Client certificates as a front proxy saw them.
    "x-forwarded-client-cert",
    "x-arr-clientcert",
    "x-client-cert",
    // Expectations are met at the edge (`100 Continue`, see `body.rs`) or refused (417): an
    // upstream is never asked to meet one again.
    "expect",
];

/// True when `name` (lower case) is of a family of client headers never forwarded, by prefix:
/// the identity and certificate headers of other auth proxies and platforms (Authelia's
/// `Remote-*`, Kong's `X-Consumer-*`, mod_auth_openidc's `OIDC-Claim-*`, nginx's
/// `SSL-Client-*`, Cloudflare Access, Tailscale, AWS ALB, Azure App Service, Google IAP, authentik,
/// Pomerium, Vouch, nginx's and Traefik's client certificates), and the gateway's own
/// `X-Gatehouse-*` (its forward-auth answers). At most two comparisons, picked
/// by the name's first bytes: this runs for every client header.
fn has_reserved_prefix(name: &[u8]) -> bool {
    let starts = |prefix: &str| name.starts_with(prefix.as_bytes());
    match name.first() {
        Some(b'c') => starts("cf-access-"),
        Some(b'o') => starts("oidc-claim-"),
        Some(b's') => starts("ssl-client-"),
        Some(b'r') => starts("remote-"),
        Some(b't') => starts("tailscale-user-"),
        Some(b'x') if name.get(1) == Some(&b'-') => match name.get(2) {
            Some(b'a') => starts("x-amzn-oidc-") || starts("x-authentik-"),
            Some(b'c') => starts("x-consumer-"),
            Some(b'f') => starts("x-forwarded-tls-client-cert"),
            Some(b'g') => starts("x-goog-authenticated-user-") || starts("x-gatehouse-"),
            Some(b'm') => starts("x-ms-client-principal"),
            Some(b'p') => starts("x-pomerium-"),
            Some(b's') => starts("x-ssl-client-"),
            Some(b'v') => starts("x-vouch-"),
            _ => false,
        },
        _ => false,
    }
}

/// True for a header name other than letters, digits and `-`: CGI, PHP, Django and Rails map
/// every other character (`_`, `.`, …) to `_`, so `X_User_Id` or `X.User.Id` reads as
/// `X-User-Id` there and could pass for an identity header.
fn is_unconventional_name(name: &HeaderName) -> bool {
    /// The bytes of a conventional name: letters, digits and `-`.
    const CONVENTIONAL: [bool; 256] = crate::request::alphanumeric_or(b"-");
    !name.as_str().bytes().all(|b| CONVENTIONAL[usize::from(b)])
}

/// Removes the client headers that never pass: the gateway's own (`controlled`) and every
/// name that is not made of letters, digits and `-` (see [`is_unconventional_name`]; nginx
/// drops names with `_` by default, `underscores_in_headers off`). One pass over the
/// request's headers; nothing is allocated when none is present. (The proxy calls it only when
/// [`Present::scan`] found one.)
pub(super) fn strip_client_headers(request: &mut RequestHeader, controlled: &ControlledHeaders) {
    let doomed = |name: &HeaderName| is_unconventional_name(name) || controlled.contains(name);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_other_characters_than_letters_digits_and_dashes_are_unconventional() {
        for name in [
            "x_user_id",
            "x.user.id",
            "x~user",
            "x!y",
            "a+b",
            "x-user-id_",
            "_",
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a token");
            assert!(is_unconventional_name(&name), "{name}");
        }
        for name in ["x-user-id", "authorization", "x-9", "content-md5", "a"] {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("a token");
            assert!(!is_unconventional_name(&name), "{name}");
        }
    }

    #[test]
    fn the_upstream_request_is_written_into_a_buffer_of_its_exact_size() {
        use pingora::protocols::http::v1::client::http_req_header_to_wire;
        let token = format!("Bearer {}", "t".repeat(900));
        let mut request = RequestHeader::build("GET", b"/a/b?c=d", None).expect("request");
        request
            .insert_header("Authorization", &token)
            .expect("header");
        request.append_header("X-Multi", "one").expect("header");
        request.append_header("x-multi", "two").expect("header");
        request
            .insert_header("HOST", "example.test")
            .expect("header");
        let mut lines = HeaderLinesBuilder::with_capacity(64);
        lines
            .push(
                &FORWARDED_FOR,
                b"X-Forwarded-For",
                &HeaderValue::from_static("10.0.0.1"),
            )
            .expect("line");
        request.set_wire_suffix(lines.build());
        let wire = http_req_header_to_wire(&request).expect("wire");
        let text = std::str::from_utf8(&wire).expect("utf-8");
        assert!(text.starts_with("GET /a/b?c=d HTTP/1.1\r\n"), "{text}");
        assert!(
            text.contains(&format!("Authorization: {token}\r\n")),
            "{text}"
        );
        assert!(
            text.ends_with("X-Forwarded-For: 10.0.0.1\r\n\r\n"),
            "{text}"
        );
        // Written without growing: the size computed first is the size written.
        assert_eq!(wire.len(), wire.capacity(), "{text}");
    }

    fn te(values: &[&str]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for value in values {
            map.append(TE, value.parse().expect("value"));
        }
        map
    }

    #[test]
    fn trailers_are_found_among_te_codings() {
        for values in [
            &["trailers"][..],
            &["Trailers"],
            &["gzip, trailers"],
            &["deflate;q=0.5 , TRAILERS;q=1"],
            &["gzip", "trailers"],
        ] {
            assert!(asks_for_trailers(&te(values)), "{values:?}");
        }
        for values in [&[][..], &["gzip"], &["trailersx"], &["chunked; trailers"]] {
            assert!(!asks_for_trailers(&te(values)), "{values:?}");
        }
    }

    fn request(fields: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("GET", b"/", None).expect("request");
        for (name, value) in fields {
            request
                .append_header(name.to_string(), *value)
                .expect("field");
        }
        request
    }

    #[test]
    fn only_a_websocket_upgrade_reaches_the_upstream() {
        let mut websocket = request(&[
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "WebSocket"),
        ]);
        assert!(asks_for_websocket(&websocket.headers));
        let client = websocket.headers.clone();
        keep_websocket_upgrade_only(&mut websocket, &client).expect("kept");
        assert_eq!(websocket.headers["upgrade"], "websocket");
        let mut h2c = request(&[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ]);
        assert!(!asks_for_websocket(&h2c.headers));
        let client = h2c.headers.clone();
        keep_websocket_upgrade_only(&mut h2c, &client).expect("removed");
        assert!(h2c.headers.get("upgrade").is_none());
        assert!(h2c.headers.get("http2-settings").is_none());
        // `Upgrade` without `Connection: upgrade` asks for nothing: removed, with the
        // `Connection: upgrade` the engine adds upstream.
        let client = request(&[("Connection", "keep-alive"), ("Upgrade", "websocket")]);
        assert!(!asks_for_websocket(&client.headers));
        let mut upstream = request(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        keep_websocket_upgrade_only(&mut upstream, &client.headers).expect("removed");
        assert!(upstream.headers.get("upgrade").is_none());
        assert!(upstream.headers.get("connection").is_none());
    }

    #[test]
    fn an_h2c_upgrade_s_settings_are_removed_even_without_its_upgrade() {
        let mut settings = request(&[("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")]);
        let client = settings.headers.clone();
        keep_websocket_upgrade_only(&mut settings, &client).expect("removed");
        assert!(settings.headers.get("http2-settings").is_none());
        let mut plain = request(&[("Accept", "*/*")]);
        let client = plain.headers.clone();
        keep_websocket_upgrade_only(&mut plain, &client).expect("kept");
        assert_eq!(plain.headers.len(), 1);
        let mut wire = Vec::new();
        plain.header_to_h1_wire(&mut wire);
        assert_eq!(wire, b"Accept: */*\r\n");
    }

    #[test]
    fn an_address_is_rendered_as_its_display_form_and_reused_only_for_itself() {
        let addresses: Vec<IpAddr> = [
            "127.0.0.1",
            "198.51.100.7",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.128",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "0.0.0.0",
        ]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
        for address in &addresses {
            assert_eq!(render_address(*address), address.to_string().as_str());
        }
        // The same address twice in a row, then others, then back: always its own text.
        for address in addresses.iter().chain(addresses.iter().rev()) {
            let expected = format!("X-Forwarded-For: {address}\r\nX-Forwarded-Proto: http\r\n");
            let lines = forwarding(Some(*address), false, |f| f.lines.clone());
            assert_eq!(lines.as_bytes(), expected.as_bytes());
            assert_eq!(
                lines,
                forwarding(Some(*address), false, |f| f.lines.clone())
            );
        }
    }

    /// The engine's request read from `request` over TCP.
    async fn engine_request(request: Vec<u8>) -> RequestHeader {
        let (session, client) = crate::proxy::body::tests::engine_session(request).await;
        drop(client.await);
        session.req_header().clone()
    }

    /// The engine sizes a request's maps with room for the forwarding headers, so the upstream's
    /// copy takes them without growing; the bytes are as they were, in the client's order.
    #[tokio::test]
    async fn the_upstream_copy_has_room_for_the_forwarding_headers() {
        for count in 0..40 {
            let mut request = b"GET / HTTP/1.1\r\n".to_vec();
            let mut expected = Vec::new();
            for i in 0..count {
                let field = format!("X-Field-{i}: value {i}\r\n");
                request.extend_from_slice(field.as_bytes());
                expected.extend_from_slice(field.as_bytes());
            }
            request.extend_from_slice(b"\r\n");
            // What the proxy sends upstream starts as a clone of the client's request.
            let mut upstream = engine_request(request).await.clone();
            assert_eq!(upstream.headers.len(), count);
            assert!(
                upstream.headers.capacity() >= count + 2,
                "{count} headers: room for {}",
                upstream.headers.capacity()
            );
            upstream
                .insert_header("X-Forwarded-For", "127.0.0.1")
                .expect("inserted");
            upstream
                .insert_header("X-Forwarded-Proto", "http")
                .expect("inserted");
            expected
                .extend_from_slice(b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: http\r\n");
            let mut wire = Vec::new();
            upstream.header_to_h1_wire(&mut wire);
            assert_eq!(wire, expected, "{count} headers");
        }
    }

    /// The forwarding lines of an HTTP/1 upstream request: the client's address when there is
    /// one, the listener's scheme; each run of one client's requests shares one rendering.
    #[test]
    fn forwarding_lines_name_the_client_and_the_scheme() {
        let v4: IpAddr = "203.0.113.9".parse().expect("v4");
        let v6: IpAddr = "2001:db8::1".parse().expect("v6");
        let cases = [
            (
                Some(v4),
                false,
                "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: http\r\n",
            ),
            (
                Some(v4),
                true,
                "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n",
            ),
            (
                Some(v6),
                false,
                "X-Forwarded-For: 2001:db8::1\r\nX-Forwarded-Proto: http\r\n",
            ),
            (None, false, "X-Forwarded-Proto: http\r\n"),
            (None, true, "X-Forwarded-Proto: https\r\n"),
            (
                Some(v4),
                false,
                "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: http\r\n",
            ),
        ];
        for (address, tls, expected) in cases {
            let first = forwarding(address, tls, |f| f.lines.clone());
            assert_eq!(first.as_bytes(), expected.as_bytes(), "{address:?} {tls}");
            let again = forwarding(address, tls, |f| f.lines.clone());
            let client = forwarding(address, tls, |f| f.client.clone());
            assert_eq!(
                client.map(|c| c.to_str().unwrap_or_default().to_string()),
                address.map(|a| a.to_string())
            );
            assert_eq!(
                first.as_bytes().as_ptr(),
                again.as_bytes().as_ptr(),
                "shared, not rendered again"
            );
        }
    }

    /// Header lines set on a request go on the wire after its map's fields, and a copy of the
    /// request keeps them; a line is built only from a name's spelling and a header value, and
    /// a spelling of another name is refused without changing the lines; empty lines clear them.
    #[test]
    fn header_lines_follow_the_fields_and_only_spellings_of_their_names_are_taken() {
        let mut request = RequestHeader::build("GET", b"/", None).expect("request");
        request.insert_header("Accept", "*/*").expect("accept");
        let user_id = HeaderName::from_static("x-user-id");
        let roles = HeaderName::from_static("x-user-roles");
        let mut builder = HeaderLinesBuilder::with_capacity(8);
        builder.extend(&forwarding(None, false, |f| f.lines.clone()));
        builder
            .push(&user_id, b"X-User-ID", &HeaderValue::from_static("u-1"))
            .expect("a spelling of its name");
        for spelling in [
            &b"X-User-Roles "[..],
            b"X_User_Roles",
            b"X-User-Role",
            b"",
            b"x-user-id",
        ] {
            assert!(
                builder
                    .push(&roles, spelling, &HeaderValue::from_static("admin"))
                    .is_err(),
                "{spelling:?}"
            );
        }
        builder
            .push(&roles, b"x-user-roles", &HeaderValue::from_static("a, b"))
            .expect("a spelling of its name");
        request.set_wire_suffix(builder.build());
        let wire = |request: &RequestHeader| {
            let mut wire = Vec::new();
            request.header_to_h1_wire(&mut wire);
            String::from_utf8(wire).expect("text")
        };
        let expected = "Accept: */*\r\nX-Forwarded-Proto: http\r\nX-User-ID: u-1\r\n\
                        x-user-roles: a, b\r\n";
        assert_eq!(wire(&request), expected);
        assert_eq!(wire(&request.clone()), expected);
        assert!(request.headers.get("x-user-id").is_none());
        request.set_wire_suffix(HeaderLines::default());
        assert!(request.wire_suffix().is_none());
        assert_eq!(wire(&request), "Accept: */*\r\n");
    }

    /// A name spelled once is only made from a spelling of that name, and its lines are the
    /// ones `push` writes; every route's identity headers, as the configuration reads them,
    /// are spelled (none is left `None`, which would fail its requests).
    #[test]
    fn a_spelled_name_writes_the_lines_push_writes_and_only_of_its_name() {
        let roles = HeaderName::from_static("x-user-roles");
        for spelling in [&b"X-User-Roles "[..], b"X_User_Roles", b"X-User-Role", b""] {
            assert!(
                SpelledName::new(roles.clone(), spelling).is_err(),
                "{spelling:?}"
            );
        }
        let value = HeaderValue::from_static("a, b");
        for spelling in [&b"X-User-Roles"[..], b"x-user-roles", b"X-USER-roles"] {
            let spelled = SpelledName::new(roles.clone(), spelling).expect("a spelling");
            assert_eq!(spelled.spelling(), spelling);
            assert_eq!(spelled.name(), &roles);
            let (mut once, mut each) = (
                HeaderLinesBuilder::with_capacity(8),
                HeaderLinesBuilder::with_capacity(8),
            );
            once.push_spelled(&spelled, &value);
            each.push(&roles, spelling, &value).expect("a spelling");
            assert_eq!(once.build(), each.build());
        }
        let config = crate::config::parse(
            "listen: 127.0.0.1:0\nstore: sqlite://g.db\nroutes:\n  - path: /\n    upstream: \
             http://127.0.0.1:1\n    identityHeaders: \
             {X-User-Id: sub, x-USER-roles: roles, X-Tenant: tid}\n",
            std::path::Path::new("/etc/gatehouse"),
            |_| None,
        )
        .expect("config");
        let lines = identity_lines(&config.routes[0]);
        let spellings: Vec<&[u8]> = lines
            .iter()
            .map(|l| l.as_ref().expect("spelled").spelling())
            .collect();
        let written: Vec<&[u8]> = config.routes[0]
            .identity_headers
            .iter()
            .map(|h| &h.written[..])
            .collect();
        assert_eq!(spellings, written, "in the route's order");
        assert_eq!(spellings.len(), 3);
    }

    /// A parsed name with its spelling goes on the wire as `insert_header` puts it, replacing
    /// any field of that name; a spelling of another name is refused and nothing changes.
    #[test]
    fn a_parsed_name_is_inserted_as_spelled() {
        let spellings = [
            "X-Forwarded-For",
            "x-forwarded-proto",
            "X-USER-ID",
            "Host",
            "x-Tenant",
        ];
        for spelling in spellings {
            let name = HeaderName::from_bytes(spelling.as_bytes()).expect("name");
            let fields = [("Accept", "*/*"), (spelling, "old"), ("User-Agent", "t")];
            let (mut parsed, mut plain) = (request(&fields), request(&fields));
            parsed
                .insert_parsed_header(&name, spelling, HeaderValue::from_static("new"))
                .expect("inserted");
            plain.insert_header(spelling, "new").expect("inserted");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            parsed.header_to_h1_wire(&mut a);
            plain.header_to_h1_wire(&mut b);
            assert_eq!(a, b, "{spelling}");
            let other = request(&fields[..1]);
            let mut refused = other.clone();
            assert!(refused
                .insert_parsed_header(&name, "X-Other", HeaderValue::from_static("v"))
                .is_err());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            refused.header_to_h1_wire(&mut a);
            other.header_to_h1_wire(&mut b);
            assert_eq!(a, b, "{spelling}: unchanged");
        }
    }

    #[test]
    fn the_common_request_headers_pass_the_filter_without_a_lookup() {
        let controlled = ControlledHeaders::with_identity_headers(
            ["x-user-id", "x-user-email", "x-user-roles"]
                .iter()
                .map(|n| HeaderName::from_static(n)),
        );
        for name in [
            "host",
            "accept",
            "accept-encoding",
            "accept-language",
            "connection",
            "user-agent",
            "authorization",
            "cookie",
            "content-length",
            "content-type",
            "cache-control",
            "origin",
            "referer",
        ] {
            let bit = ControlledHeaders::bit(&HeaderName::from_static(name));
            assert_eq!(controlled.filter[bit / 64] & (1 << (bit % 64)), 0, "{name}");
        }
    }

    #[test]
    fn controlled_headers_are_found_exactly() {
        let identity = [
            "x-user-id",
            "x-user-roles",
            "x-tenant",
            "a",
            "x-verylongidentityheadername-of-more-than-sixty-four-bytes-in-all",
        ];
        let controlled = ControlledHeaders::with_identity_headers(
            identity.iter().map(|n| HeaderName::from_static(n)),
        );
        let mut names: Vec<&str> = identity.to_vec();
        names.extend(RESERVED_HEADERS);
        names.extend(REQUEST_VIEW_HEADERS);
        for name in &names {
            assert!(
                controlled.contains(&HeaderName::from_static(name)),
                "{name}"
            );
        }
        // The families, whatever follows their prefix; their look-alikes are not.
        for name in [
            "remote-anything",
            "cf-access-jwt-assertion",
            "x-amzn-oidc-data",
            "x-ms-client-principal-name",
            "x-pomerium-claim-email",
            "x-ssl-client-s-dn",
            "x-forwarded-tls-client-cert-info",
            "x-vouch-idp-claims-groups",
        ] {
            assert!(
                controlled.contains(&HeaderName::from_static(name)),
                "{name}"
            );
        }
        for name in [
            "remotes",
            "x-forwarded-tls",
            "x-vouc",
            "cf-accessx",
            "x-ssl-client",
        ] {
            assert!(!has_reserved_prefix(name.as_bytes()), "{name}");
        }
        let others = [
            "host",
            "accept",
            "accept-encoding",
            "authorization",
            "content-length",
            "content-type",
            "cookie",
            "user-agent",
            "x-forwarded-fo",
            "x-forwarded-prot",
            "x-user-i",
            "x-user-idd",
            "b",
            "x-real-ipx",
            "forwarde",
            "te",
            "upgrade",
        ];
        for name in others {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("name");
            assert!(!controlled.contains(&name), "{name}");
        }
        // Every name that differs from a controlled one in a byte: never taken for it.
        for name in &names {
            for i in 0..name.len() {
                let mut near = name.as_bytes().to_vec();
                near[i] = if near[i] == b'z' { b'y' } else { b'z' };
                let near = HeaderName::from_bytes(&near).expect("name");
                assert_eq!(
                    controlled.contains(&near),
                    names.contains(&near.as_str()) || has_reserved_prefix(near.as_str().as_bytes()),
                    "{near}"
                );
            }
        }
    }

    /// The scan finds every header the upstream steps act on, whatever its case or place, and
    /// marks nothing that is absent; a request whose scan is empty is left as it was by the
    /// steps the scan lets the proxy skip.
    #[test]
    fn the_scan_finds_exactly_the_headers_the_upstream_steps_act_on() {
        let controlled = ControlledHeaders::with_identity_headers(
            ["x-user-id"].iter().map(|n| HeaderName::from_static(n)),
        );
        let cases: &[(&[(&str, &str)], u8)] = &[
            (&[("Accept", "*/*"), ("User-Agent", "t")], 0),
            (&[], 0),
            (&[("authorization", "Bearer x")], Present::AUTHORIZATION),
            (&[("Cookie", "a=b"), ("Accept", "*/*")], Present::COOKIE),
            (&[("Accept", "*/*"), ("UPGRADE", "h2c")], Present::UPGRADES),
            (&[("HTTP2-Settings", "AAMA")], Present::UPGRADES),
            (
                &[("Accept", "*/*"), ("X-User-Id", "forged")],
                Present::CONTROLLED,
            ),
            (&[("X-Real-IP", "1.2.3.4")], Present::CONTROLLED),
            (&[("X_User_Id", "forged")], Present::CONTROLLED),
            (&[("x.user.id", "forged")], Present::CONTROLLED),
            (
                &[
                    ("Cookie", "a=b"),
                    ("Authorization", "Basic eA=="),
                    ("Forwarded", "for=1.2.3.4"),
                    ("Upgrade", "websocket"),
                ],
                Present::CONTROLLED | Present::AUTHORIZATION | Present::COOKIE | Present::UPGRADES,
            ),
        ];
        for (fields, expected) in cases {
            let scanned = request(fields);
            let present = Present::scan(&scanned, &controlled);
            assert_eq!(present, Present(*expected), "{fields:?}");
            // Where the scan finds nothing, the step it lets the proxy skip changes nothing.
            let mut stripped = scanned.clone();
            strip_client_headers(&mut stripped, &controlled);
            assert_eq!(
                present.any(Present::CONTROLLED),
                stripped.headers.len() != scanned.headers.len(),
                "{fields:?}"
            );
            let mut upgraded = scanned.clone();
            keep_websocket_upgrade_only(&mut upgraded, &scanned.headers).expect("kept");
            let (mut a, mut b) = (Vec::new(), Vec::new());
            upgraded.header_to_h1_wire(&mut a);
            scanned.header_to_h1_wire(&mut b);
            if !present.any(Present::UPGRADES) {
                assert_eq!(a, b, "{fields:?}");
            }
        }
    }

    /// The engine's room covers what the upstream steps can add on the route that adds the
    /// most, and a request whose maps have that room takes it all without growing them.
    #[test]
    fn the_header_room_covers_the_route_that_adds_the_most() {
        use crate::proxy::routes::tests::route;
        let identity = |names: &[&str]| -> Vec<IdentityHeader> {
            names
                .iter()
                .map(|n| IdentityHeader {
                    name: HeaderName::from_bytes(n.as_bytes()).expect("name"),
                    written: bytes::Bytes::copy_from_slice(n.as_bytes()),
                    claim: "sub".into(),
                })
                .collect()
        };
        let mut few = route("/a", None);
        few.identity_headers = identity(&["X-User-Id"]);
        let mut most = route("/b", None);
        most.identity_headers = identity(&["X-User-Id", "X-User-Roles", "X-Tenant"]);
        let none = RouteTable::new(vec![route("/", None)]).expect("table");
        assert_eq!(header_room(&none), 3);
        let table = RouteTable::new(vec![few, most, route("/", None)]).expect("table");
        let room = header_room(&table);
        assert_eq!(room, 6);
        for count in 0..20 {
            let mut request = RequestHeader::build("GET", b"/", Some(count + room)).expect("r");
            for i in 0..count {
                request
                    .append_header(format!("X-Field-{i}"), "v")
                    .expect("field");
            }
            let mut upstream = request.clone();
            let capacity = upstream.headers.capacity();
            for name in [
                "X-Forwarded-For",
                "X-Forwarded-Proto",
                "Authorization",
                "X-User-Id",
                "X-User-Roles",
                "X-Tenant",
            ] {
                upstream.insert_header(name, "v").expect("inserted");
            }
            assert_eq!(upstream.headers.capacity(), capacity, "{count} headers");
        }
    }

    #[test]
    fn a_switch_is_accepted_only_to_the_websocket_the_client_asked_for() {
        let switch = |upgrade: &str| {
            let mut response = ResponseHeader::build(101, None).expect("response");
            response
                .insert_header("Upgrade", upgrade.to_string())
                .expect("field");
            response
        };
        let asked = request(&[("Connection", "Upgrade"), ("Upgrade", "websocket")]);
        let plain = request(&[]);
        let (asked, plain) = (&asked.headers, &plain.headers);
        assert!(check_switch(asked, &switch("websocket")).is_ok());
        assert!(check_switch(asked, &switch("h2c")).is_err());
        let refused = check_switch(plain, &switch("websocket")).unwrap_err();
        assert_eq!(refused.esource, ErrorSource::Upstream);
        let ok = ResponseHeader::build(200, None).expect("response");
        assert!(check_switch(plain, &ok).is_ok());
    }
}

/// The engine's reused read timer (`vendor/pingora-core/src/protocols/reused_timer.rs`): the
/// upstream's read timeout and the idle keep-alive timeout of a connection arm one timer, kept
/// from one read to the next, and each read is still cut at its own deadline, no sooner.
#[cfg(test)]
mod reused_timer_tests {
    use std::future::Future;
    use std::time::Duration;

    use pingora::protocols::reused_timer::{timed, TimerSlot};
    use tokio::time::Instant;

    /// A read through `slot` under a `timeout` of seconds, which takes `takes` seconds (never
    /// ends with `None`): whether it finished in time, and how long it ran.
    async fn read(slot: &mut TimerSlot, timeout: u64, takes: Option<u64>) -> (bool, Duration) {
        let started = Instant::now();
        let operation = async {
            match takes {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => std::future::pending::<()>().await,
            }
        };
        let result = timed(Some(slot), Duration::from_secs(timeout), operation).await;
        (result.is_ok(), started.elapsed())
    }

    /// What `task` returns, run on a task of its own; fails when nothing woke it within 30 s.
    async fn on_its_own_task<T: Send + 'static>(
        task: impl Future<Output = T> + Send + 'static,
    ) -> T {
        tokio::time::timeout(Duration::from_secs(30), tokio::spawn(task))
            .await
            .expect("the task was woken")
            .expect("the task ended")
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_that_never_ends_is_cut_at_its_deadline() {
        let mut slot = None;
        assert_eq!(
            read(&mut slot, 5, None).await,
            (false, Duration::from_secs(5))
        );
        assert!(slot.is_some(), "the timer is kept for the next read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_ready_at_once_arms_no_timer() {
        let mut slot = None;
        let result = timed(Some(&mut slot), Duration::from_secs(5), async { 7 }).await;
        assert_eq!(result.unwrap(), 7);
        assert!(slot.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_timer_left_by_an_earlier_read_does_not_cut_a_later_one_early() {
        let mut slot = None;
        // A first read waits 4 s of its 5: the timer stays set for second 5.
        assert!(read(&mut slot, 5, Some(4)).await.0);
        // A second read, from second 4, has until second 9: the timer firing at 5 is set again.
        let second = read(&mut slot, 5, Some(3)).await;
        assert_eq!(
            second,
            (true, Duration::from_secs(3)),
            "cut at the earlier deadline"
        );
        // A third read that never ends is cut 5 s after it began, not before, not after.
        assert_eq!(
            read(&mut slot, 5, None).await,
            (false, Duration::from_secs(5))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_timeout_than_the_timer_was_set_for_is_kept() {
        let mut slot = None;
        assert!(read(&mut slot, 60, Some(1)).await.0);
        // The timer is set for second 60; this read's deadline is second 3.
        assert_eq!(
            read(&mut slot, 2, None).await,
            (false, Duration::from_secs(2))
        );
    }

    /// A pooled upstream connection's timer goes from one request's task to the next: the
    /// timer registered with the first task's waker must wake the second, which is cut at its
    /// own deadline, not left waiting.
    #[tokio::test(start_paused = true)]
    async fn a_timer_kept_by_one_task_wakes_the_next_task_that_reads() {
        let mut slot = None;
        // The first task arms the timer (for second 5) and finishes its read at second 1.
        let (slot_back, first) = on_its_own_task(async move {
            let outcome = read(&mut slot, 5, Some(1)).await;
            (slot, outcome)
        })
        .await;
        assert_eq!(first, (true, Duration::from_secs(1)));
        assert!(slot_back.is_some());
        let mut slot = slot_back;
        // A second task's read that never ends: the timer is set for the first task's
        // deadline (second 5) and must wake this task, which is cut at second 6.
        let second = on_its_own_task(async move { read(&mut slot, 5, None).await }).await;
        assert_eq!(second, (false, Duration::from_secs(5)));
    }

    /// A read whose operation used up the task's budget (Tokio's cooperative scheduling) before
    /// the timer was first polled: the timer is armed all the same, and cuts the read.
    #[tokio::test(start_paused = true)]
    async fn a_read_that_used_up_the_task_budget_is_still_cut_at_its_deadline() {
        let outcome = on_its_own_task(async {
            let mut slot = None;
            let started = Instant::now();
            let mut first = true;
            let operation = std::future::poll_fn(|cx| {
                if std::mem::take(&mut first) {
                    // Spend the budget: `consume_budget` is refused once it is gone.
                    let spent = (0..10_000).any(|_| {
                        std::pin::pin!(tokio::task::consume_budget())
                            .poll(cx)
                            .is_pending()
                    });
                    assert!(spent, "the budget ran out");
                }
                std::task::Poll::<()>::Pending
            });
            let result = timed(Some(&mut slot), Duration::from_secs(5), operation).await;
            (result.is_err(), started.elapsed())
        })
        .await;
        assert_eq!(outcome, (true, Duration::from_secs(5)));
    }

    /// A read that waits several times on one task (woken by its operation before the
    /// deadline) is still cut at its deadline.
    #[tokio::test(start_paused = true)]
    async fn a_read_woken_many_times_is_still_cut_at_its_deadline() {
        let mut slot = None;
        let started = Instant::now();
        let operation = async {
            // Wakes the task every 100 ms, never ready.
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let result = timed(Some(&mut slot), Duration::from_secs(2), operation).await;
        assert!(result.is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    /// Without a stream's slot (a stream other than plain TCP or rustls keeps none), the
    /// engine's own timeout cuts the read.
    #[tokio::test]
    async fn without_a_slot_the_read_arms_its_own_timer() {
        let started = std::time::Instant::now();
        let result = timed(
            None,
            Duration::from_millis(50),
            std::future::pending::<()>(),
        )
        .await;
        assert!(result.is_err());
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
