//! Forward-auth mode: a front proxy (nginx `auth_request`, Traefik `forwardAuth`, Caddy
//! `forward_auth`, Envoy `ext_authz`) asks whether a request may pass, and the gateway judges
//! it as if it had come to the proxy itself.
//!
//! A request whose path is `forwardAuth.path`, or under it, is a decision, never proxied:
//! read from the target as sent as well as from its canonical form ([`decision_form`]), so a
//! path-prefix target whose dot-segments climb out of the endpoint (`{path}/../x`) is still a
//! decision (refused) and never a request to proxy, whose answer a front proxy would read as
//! its allowing. Only peers in `forwardAuth.trustedProxies` may ask (anyone else: 403). The request
//! to judge is read by [`crate::request::forwarded`] (its method, scheme, canonical host and
//! target), set as the request's target and host, and goes through the very admission a
//! proxied request does ([`Gateway::admit`]: route choice, credentials, token state,
//! transparent refresh, policy), a route without an upstream included. The answers:
//! - allowed: `200`, no body, with the route's identity headers as the upstream would get them
//!   — and every other identity header any route sets, empty ([`Gateway::allow`]) — and, after a transparent refresh (or a refused refresh token), the `Set-Cookie` headers
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
/// The header repeating the `Set-Cookie` value of the `app.at_exp` cookie.
pub const AT_EXP_COOKIE_HEADER: &str = "X-Gatehouse-Set-Cookie-At-Exp";

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

/// Where the asking request stands to the endpoint's `path`, read from its target as sent
/// (`raw_target`, the request line's) first, then from its `canonical` path: `Some(false)`
/// for the endpoint itself (with an optional query), `Some(true)` under it (`{path}/…`, or
/// `{path};…`, which the path-prefix reading then refuses), `None` for a request to proxy.
///
/// The target as sent comes first because Envoy's `path_prefix` convention appends the
/// original path to the prefix unnormalized: `{path}/../public/../admin` is canonically
/// `/_gatehouse/admin`, which a route would let through, while the app behind Envoy serves
/// `/admin`. Read as sent it is a decision, whose target `/../public/../admin` has no
/// canonical form: refused.
fn decision_form(endpoint: &str, raw_target: &[u8], canonical: &str) -> Option<bool> {
    let rest = raw_path(raw_target).strip_prefix(endpoint.as_bytes());
    let as_sent = rest.and_then(|rest| match rest.first() {
        None | Some(b'?') => Some(false),
        Some(b'/' | b';') => Some(true),
        Some(_) => None,
    });
    as_sent.or_else(|| endpoint_form(endpoint, canonical))
}

/// The path (and query) of a request target as sent: an origin-form target itself, an
/// absolute-form one (`http://host/path`) from the first `/` or `?` after its authority
/// (empty when it has neither).
fn raw_path(raw_target: &[u8]) -> &[u8] {
    if raw_target.starts_with(b"/") {
        return raw_target;
    }
    let Some(at) = raw_target.windows(3).position(|w| w == b"://") else {
        return raw_target;
    };
    let rest = &raw_target[at + 3..];
    let start = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    &rest[start..]
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
                gatehouse_plugin_api::AT_EXP_COOKIE => AT_EXP_COOKIE_HEADER,
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
        let raw_target = session.req_header().raw_path();
        let canonical = canonical_path_of(session, ctx);
        let Some(under) = decision_form(&endpoint.path, raw_target, canonical) else {
            return Ok(false);
        };
        // Boxed: a proxied request awaits this future inline, and never these.
        match Box::pin(self.judge(session, ctx, under)).await {
            Ok(()) => {
                self.allowed_requests.inc();
                ctx.outcome = Some(access::ALLOWED);
                Box::pin(self.allow(session, ctx)).await?;
                Ok(true)
            }
            Err(error) => Box::pin(self.refuse(session, ctx, error)).await,
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
        super::authenticate::refuse_traced(&judged.method)?;
        let uncommon = ctx.uncommon_mut();
        uncommon.decision = Some(Decision {
            convention: judged.convention,
            https: judged.https,
        });
        (uncommon.target, uncommon.host) = (Some(judged.target), Some(judged.host));
        self.admit(session, ctx).await
    }

    /// Writes an allowed decision: `200` with the route's identity headers and the session's
    /// cookies, each also in its own header (see the module header).
    ///
    /// Every identity header any route sets is present, empty when this request has no value
    /// for it (no token on an optional or public route, a claim the token lacks, another
    /// route's header): a front proxy that copies it then always replaces the client's own,
    /// and never sends the app a template of its own for a header that was missing (Caddy's
    /// `{rp.header.…}` placeholders stay unreplaced when the header is absent).
    async fn allow(&self, session: &mut Session, ctx: &RequestContext) -> Result<()> {
        let cookies = self.session_cookies(ctx);
        let mut header = ResponseHeader::build(200, Some(8 + self.identity_names.len()))?;
        for (_, identity, value) in self.identity_values(ctx) {
            header.append_header(identity.written.clone(), value.clone())?;
        }
        for name in &self.identity_names {
            if !header.headers.contains_key(name) {
                header.append_header(name.clone(), "")?;
            }
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
    fn each_session_cookie_is_copied_into_a_header_of_its_own() {
        let cookies = vec![
            "access_token=a; Path=/; HttpOnly".to_string(),
            "app.at_exp=17; Path=/; SameSite=Lax".to_string(),
            "refresh_token=r; Path=/; HttpOnly".to_string(),
            "other=x; Path=/".to_string(),
        ];
        assert_eq!(
            cookie_copies(&cookies),
            vec![
                (ACCESS_COOKIE_HEADER, cookies[0].as_str()),
                (AT_EXP_COOKIE_HEADER, cookies[1].as_str()),
                (REFRESH_COOKIE_HEADER, cookies[2].as_str()),
            ]
        );
    }

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
    fn the_endpoint_is_recognised_as_sent_even_when_its_canonical_form_leaves_it() {
        let endpoint = "/_gatehouse/auth";
        for (raw, canonical, form) in [
            // Dot-segments that climb out of the endpoint: still decisions (then refused).
            (
                "/_gatehouse/auth/../public/../admin",
                "/_gatehouse/admin",
                Some(true),
            ),
            (
                "/_gatehouse/auth/%2e%2e/admin",
                "/_gatehouse/admin",
                Some(true),
            ),
            ("/_gatehouse/auth/..", "/_gatehouse", Some(true)),
            ("/_gatehouse/auth;x", "/_gatehouse/auth;x", Some(true)),
            ("/_gatehouse/auth?x=1", "/_gatehouse/auth", Some(false)),
            (
                "http://gatehouse:9011/_gatehouse/auth/../x",
                "/_gatehouse/x",
                Some(true),
            ),
            (
                "http://gatehouse:9011/_gatehouse/auth",
                "/_gatehouse/auth",
                Some(false),
            ),
            // Other spellings of the endpoint: decisions by their canonical form.
            ("//_gatehouse/auth", "/_gatehouse/auth", Some(false)),
            ("/_gatehouse/%61uth/x", "/_gatehouse/auth/x", Some(true)),
            // Not the endpoint.
            ("/_gatehouse/authx", "/_gatehouse/authx", None),
            ("/_gatehouse/Auth", "/_gatehouse/Auth", None),
            ("/x/../_gatehouse", "/_gatehouse", None),
            ("http://gatehouse:9011", "/", None),
        ] {
            assert_eq!(
                decision_form(endpoint, raw.as_bytes(), canonical),
                form,
                "{raw}"
            );
        }
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
    fn no_route_may_set_a_header_of_the_decisions_own_answers() {
        // The configuration refuses identity headers of these names with forward-auth on, so
        // a claim never speaks for the gateway in a decision's answer.
        for name in [REDIRECT_HEADER, ACCESS_COOKIE_HEADER, REFRESH_COOKIE_HEADER] {
            assert!(
                name.to_ascii_lowercase().starts_with("x-gatehouse-"),
                "{name}"
            );
        }
        for name in [
            "set-cookie",
            "location",
            "www-authenticate",
            "retry-after",
            "cache-control",
            "content-type",
        ] {
            assert!(
                crate::config::DECISION_ANSWER_HEADERS.contains(&name),
                "{name}"
            );
        }
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
