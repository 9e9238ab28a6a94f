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

use std::time::{Duration, Instant};

use gatehouse_plugin_api::credentials::bearer_token;
use gatehouse_plugin_api::ClaimHeader;
use http::header::{HeaderName, AUTHORIZATION, COOKIE, HOST, TE};
use pingora::prelude::*;
use pingora::protocols::ALPN;
use pingora::proxy::Session;
use pingora::upstreams::peer::HttpPeer;

use super::routes::RouteTable;
use super::{Gateway, RequestContext};
use crate::request::credentials::{cookie_needs_rewrite, upstream_cookie, AccessCookie};

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
        if let Some(target) = &ctx.target {
            let uri = target
                .parse::<http::Uri>()
                .map_err(|_| Error::explain(InternalError, "canonical target"))?;
            upstream_request.set_uri(uri);
        }
        if let Some(host) = &ctx.host {
            upstream_request.insert_header(HOST, host.as_str())?;
        }
        Ok(())
    }

    /// The request's credentials for the upstream: `Authorization` and `Cookie` as the route's
    /// verdict allows. A token reaches the upstream only when it passed the policy, and then
    /// only the one that was verified (or its refreshed successor); never on a public
    /// passthrough, which verifies nothing.
    pub(super) fn forward_credentials(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        let verified = ctx.identity.is_some();
        let access = match (&ctx.refreshed, verified) {
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
            _ => {
                upstream_request.remove_header(&AUTHORIZATION);
            }
        }
        if cookie_needs_rewrite(&upstream_request.headers, access) {
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
        if let Some(address) = self.client_address(session) {
            upstream_request.insert_header("X-Forwarded-For", address.to_string())?;
        }
        upstream_request.insert_header(
            "X-Forwarded-Proto",
            if self.settings.tls { "https" } else { "http" },
        )?;
        Ok(())
    }

    /// The route's identity headers, from the claims of the token that passed its policy.
    pub(super) fn set_identity_headers(
        &self,
        upstream_request: &mut RequestHeader,
        ctx: &RequestContext,
    ) -> Result<()> {
        if self.route(ctx).is_none() {
            return Error::e_explain(InternalError, "no route");
        }
        for (name, value) in self.identity_values(ctx) {
            upstream_request.insert_header(name.clone(), value.clone())?;
        }
        Ok(())
    }

    /// The identity headers of the request's route, as written in the configuration, with
    /// their values from the claims of the token that passed its policy; none without such a
    /// token (or a route), and none for a claim the token does not carry.
    pub(super) fn identity_values<'a>(
        &'a self,
        ctx: &'a RequestContext,
    ) -> impl Iterator<Item = (&'a bytes::Bytes, &'a http::HeaderValue)> + 'a {
        let headers = match (self.route(ctx), &ctx.identity) {
            (Some(route), Some(_)) => route.identity_headers.as_slice(),
            _ => &[],
        };
        headers.iter().filter_map(move |header| {
            let claims = ctx.identity.as_ref()?;
            match claims.header_value(&header.claim) {
                ClaimHeader::Value(value) => Some((&header.written, value)),
                _ => None,
            }
        })
    }
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

/// Every client header no upstream gets from the client, sorted by name for
/// [`strip_client_headers`]: each identity header any route sets, and the [`RESERVED_HEADERS`].
pub(super) fn controlled_headers(routes: &RouteTable) -> Vec<HeaderName> {
    let mut controlled: Vec<HeaderName> = routes
        .iter()
        .flat_map(|r| r.identity_headers.iter().map(|h| h.name.clone()))
        .chain(RESERVED_HEADERS.iter().map(|h| HeaderName::from_static(h)))
        .collect();
    controlled.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    controlled.dedup();
    controlled
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

/// Keeps the upstream request's upgrade to WebSocket only: a WebSocket upgrade is forwarded as
/// `Upgrade: websocket` alone, any other (`h2c`, with its `HTTP2-Settings`; `TLS/1.0`…) is
/// removed, so the upstream answers the request itself. A tunnel is judged once, at its
/// request: an h2c tunnel would carry further requests to any path, none judged (h2c
/// smuggling).
pub(super) fn keep_websocket_upgrade_only(request: &mut RequestHeader) -> Result<()> {
    if asks_for_websocket(&request.headers) {
        request.insert_header(http::header::UPGRADE, "websocket")?;
    } else {
        request.remove_header(&http::header::UPGRADE);
    }
    request.remove_header("HTTP2-Settings");
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

/// True when the request's `Authorization` header uses the Bearer scheme (read as the
/// credentials were, [`bearer_token`]).
fn is_bearer(request: &RequestHeader) -> bool {
    request
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| bearer_token(v.as_bytes()))
        .is_some()
}

/// Client headers never forwarded on any route, besides the routes' identity headers: headers
/// some upstreams take as the request's path (`X-Original-URL`, `X-Rewrite-URL`: IIS, Symfony),
/// as the authenticated user (what other auth proxies set), or as the client's address or
/// the original request (the gateway sets its own; the forward-auth conventions'
/// `X-Forwarded-Uri`/`-Method` and `X-Original-URI`/`-Method` are read only in a decision).
const RESERVED_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-method",
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
pub(super) fn strip_client_headers(request: &mut RequestHeader, controlled: &[HeaderName]) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        keep_websocket_upgrade_only(&mut websocket).expect("kept");
        assert_eq!(websocket.headers["upgrade"], "websocket");
        let mut h2c = request(&[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA"),
        ]);
        assert!(!asks_for_websocket(&h2c.headers));
        keep_websocket_upgrade_only(&mut h2c).expect("removed");
        assert!(h2c.headers.get("upgrade").is_none());
        assert!(h2c.headers.get("http2-settings").is_none());
        // `Upgrade` without `Connection: upgrade` asks for nothing.
        assert!(!asks_for_websocket(
            &request(&[("Upgrade", "websocket")]).headers
        ));
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
