//! Forward-auth mode: a front proxy (nginx `auth_request`, Traefik `forwardAuth`, Caddy
//! `forward_auth`, Envoy `ext_authz`) asks whether a request may pass, and the gateway judges
//! it as if it had come to the proxy itself.
//!
//! A request whose canonical path is `forwardAuth.path`, or under it, is a decision, never
//! proxied: only peers in `forwardAuth.trustedProxies` may ask (anyone else: 403). The request
//! to judge is read by [`crate::request::forwarded`] (its method, scheme, canonical host and
//! target), set as the request's target and host, and goes through the very admission a
//! proxied request does ([`Gateway::admit`]: route choice, credentials, token state,
//! transparent refresh, policy), a route without an upstream included. The answers:
//! - allowed: `200`, no body, with the route's identity headers as the upstream would get them
//!   and, after a transparent refresh (or a refused refresh token), the `Set-Cookie` headers
//!   and each cookie again in a header of its own ([`cookie_copies`]: nginx's
//!   `auth_request_set` keeps only the first value of a header);
//! - refused: the answer a proxied request gets ([`Gateway::deny`]): 401 with
//!   `WWW-Authenticate`, 403 for the policy, 503 for a store or key outage, 400 for a request
//!   with no single reading; for a browser on a route with `loginUrl`, a 302 there, or a 401
//!   for the nginx convention (nginx turns any other status into a 500); either way the
//!   target is in [`REDIRECT_HEADER`].

use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{access, canonical_path_of, peer_address, Gateway, RequestContext};
use crate::proxy::error::GatewayError;
use crate::request::client::is_trusted;
use crate::request::forwarded::{read_forwarded, Asking, Convention};
use crate::request::target::Listener;

/// The header naming the login page a refused browser should be sent to.
pub const REDIRECT_HEADER: &str = "X-Gatehouse-Redirect";
/// The header repeating the `Set-Cookie` value of the `access_token` cookie.
pub const ACCESS_COOKIE_HEADER: &str = "X-Gatehouse-Set-Cookie-Access";
/// The header repeating the `Set-Cookie` value of the `refresh_token` cookie.
pub const REFRESH_COOKIE_HEADER: &str = "X-Gatehouse-Set-Cookie-Refresh";

/// What a decision needs to know about the request it judges, beyond its target and host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// How the front proxy named the request.
    pub convention: Convention,
    /// The browser reached the front proxy over TLS: cookies are `Secure`.
    pub https: bool,
}

impl Decision {
    /// True when a browser sent to the login page gets a 302: every convention but nginx's,
    /// whose `auth_request` accepts only 2xx, 401 and 403 (the recipe turns the 401 into the
    /// redirect with [`REDIRECT_HEADER`]).
    pub fn redirects(&self) -> bool {
        self.convention != Convention::Original
    }
}

/// Where the request's canonical path stands to the endpoint's `path`: `Some(false)` for the
/// endpoint itself, `Some(true)` under it (`{path}/…`), `None` elsewhere.
fn endpoint_form(endpoint: &str, path: &str) -> Option<bool> {
    let rest = path.strip_prefix(endpoint)?;
    match rest.as_bytes().first() {
        None => Some(false),
        Some(b'/') => Some(true),
        Some(_) => None,
    }
}

/// The headers that repeat each token cookie of `cookies` (`Set-Cookie` values) in a header of
/// its own, [`ACCESS_COOKIE_HEADER`] and [`REFRESH_COOKIE_HEADER`]; any other cookie has none.
pub fn cookie_copies(cookies: &[String]) -> Vec<(&'static str, &str)> {
    cookies
        .iter()
        .filter_map(|cookie| {
            let name = cookie.split('=').next()?;
            let header = match name {
                "access_token" => ACCESS_COOKIE_HEADER,
                "refresh_token" => REFRESH_COOKIE_HEADER,
                _ => return None,
            };
            Some((header, cookie.as_str()))
        })
        .collect()
}

impl Gateway {
    /// In forward-auth mode, answers a request to the decision endpoint (or under it) with the
    /// decision; `Ok(true)` when it was such a request and is answered, `Ok(false)` for any
    /// other request (nothing allocated).
    pub(super) async fn serve_forward_auth(
        &self,
        session: &mut Session,
        ctx: &mut RequestContext,
    ) -> Result<bool> {
        let Some(endpoint) = &self.settings.forward_auth else {
            return Ok(false);
        };
        let Some(under) = endpoint_form(&endpoint.path, canonical_path_of(session, ctx)) else {
            return Ok(false);
        };
        match self.judge(session, ctx, under).await {
            Ok(()) => {
                self.allowed_requests.inc();
                ctx.outcome = Some(access::ALLOWED);
                self.allow(session, ctx).await?;
                Ok(true)
            }
            Err(error) => self.refuse(session, ctx, error).await,
        }
    }

    /// Judges the request a trusted front proxy names: `Ok` lets it through (with
    /// `ctx.identity` and the refresh's outcome set as for a proxied request), `Err` refuses
    /// it. `under` tells the path-prefix convention from the header conventions.
    async fn judge(
        &self,
        session: &Session,
        ctx: &mut RequestContext,
        under: bool,
    ) -> Result<(), GatewayError> {
        let endpoint = self
            .settings
            .forward_auth
            .as_ref()
            .ok_or_else(|| GatewayError::Internal("forward-auth is not configured".into()))?;
        let trusted =
            peer_address(session).is_some_and(|peer| is_trusted(peer, &endpoint.trusted_proxies));
        if !trusted {
            return Err(GatewayError::UntrustedProxy);
        }
        let header = session.req_header();
        let asking = Asking {
            method: &header.method,
            raw_target: header.raw_path(),
            headers: &header.headers,
        };
        let listener = Listener {
            tls: self.settings.tls,
            path_options: self.settings.path_options,
        };
        let judged = read_forwarded(&asking, &endpoint.path, under, listener)?;
        ctx.decision = Some(Decision {
            convention: judged.convention,
            https: judged.https,
        });
        (ctx.target, ctx.host) = (Some(judged.target), Some(judged.host));
        self.admit(session, ctx).await
    }

    /// Writes an allowed decision: `200` with the route's identity headers and the session's
    /// cookies, each also in its own header (see the module header).
    async fn allow(&self, session: &mut Session, ctx: &RequestContext) -> Result<()> {
        let cookies = self.session_cookies(ctx);
        let mut header = ResponseHeader::build(200, Some(8))?;
        for (name, value) in self.identity_values(ctx) {
            header.append_header(name.clone(), value.clone())?;
        }
        for cookie in &cookies {
            header.append_header("Set-Cookie", cookie.as_str())?;
        }
        for (name, cookie) in cookie_copies(&cookies) {
            header.append_header(name, cookie)?;
        }
        header.insert_header(http::header::CONTENT_LENGTH, "0")?;
        header.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        session.write_response_header(Box::new(header), true).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_and_paths_under_it_are_decisions() {
        let endpoint = "/_gatehouse/auth";
        assert_eq!(endpoint_form(endpoint, "/_gatehouse/auth"), Some(false));
        assert_eq!(endpoint_form(endpoint, "/_gatehouse/auth/"), Some(true));
        assert_eq!(
            endpoint_form(endpoint, "/_gatehouse/auth/admin"),
            Some(true)
        );
        assert_eq!(endpoint_form(endpoint, "/_gatehouse/authx"), None);
        assert_eq!(endpoint_form(endpoint, "/_gatehouse/Auth"), None);
        assert_eq!(endpoint_form(endpoint, "/_gatehouse"), None);
        assert_eq!(endpoint_form(endpoint, "/"), None);
    }

    #[test]
    fn each_token_cookie_is_offered_in_a_header_of_its_own() {
        let cookies = vec![
            "access_token=a.b.c; Path=/; HttpOnly".to_string(),
            "refresh_token=r; Path=/; HttpOnly".to_string(),
            "other=x".to_string(),
        ];
        assert_eq!(
            cookie_copies(&cookies),
            vec![
                (ACCESS_COOKIE_HEADER, "access_token=a.b.c; Path=/; HttpOnly"),
                (REFRESH_COOKIE_HEADER, "refresh_token=r; Path=/; HttpOnly"),
            ]
        );
        assert!(cookie_copies(&[]).is_empty());
    }

    #[test]
    fn only_the_nginx_convention_is_never_redirected() {
        for (convention, redirects) in [
            (Convention::Forwarded, true),
            (Convention::PathPrefix, true),
            (Convention::Original, false),
        ] {
            let decision = Decision {
                convention,
                https: false,
            };
            assert_eq!(decision.redirects(), redirects);
        }
    }
}
