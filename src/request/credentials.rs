//! The credentials of a proxied request: read once with the edge's rules, through the one
//! reader the plugins use too ([`gatehouse_plugin_api::credentials`]), and what the upstream
//! gets of them (the rewritten `Cookie` line).
//!
//! At the edge an `Authorization` header of another scheme next to an `access_token` cookie is
//! two credentials (the upstream could take either), and a query parameter named like a token
//! is refused too (RFC 6750 §2.3: the gateway reads tokens from headers only, and an upstream
//! could read one from the query).

use gatehouse_plugin_api::credentials::{
    self, Ambiguity, CookiePair, Credentials, OtherScheme, ACCESS_COOKIE, REFRESH_COOKIE,
};
use http::header::COOKIE;
use http::HeaderMap;

/// Reads a proxied request's credentials from its headers and query string: `Ok` with the
/// access and refresh tokens (each `None` when absent), `Err` with the reason when the request
/// could be read more than one way (see the module header and
/// [`gatehouse_plugin_api::credentials`]).
pub fn read<'a>(headers: &'a HeaderMap, query: Option<&str>) -> Result<Credentials<'a>, Ambiguity> {
    if query.is_some_and(query_has_token) {
        return Err(Ambiguity::TokenInQuery);
    }
    credentials::read(headers, OtherScheme::Credential)
}

/// True when the query string has a parameter a framework could take as a token
/// (`access_token`, `refresh_token`, or a name that folds to one, as leniently as any framework
/// reads one, see [`credentials::names_a_token`]), pairs split at `;` as well as `&` (Rack,
/// older Python).
fn query_has_token(query: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let name = pair.split('=').next().unwrap_or(pair);
        credentials::names_a_token(name.as_bytes())
    })
}

/// What becomes of the `access_token` cookie on the way upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessCookie<'a> {
    /// Forwarded as the client sent it.
    Keep,
    /// Replaced by (or, when absent, added with) this token.
    Replace(&'a str),
    /// Removed: the token did not pass the route's policy.
    Remove,
}

/// The `Cookie` header for the upstream: every cookie of every `Cookie` line in order (split
/// as [`credentials::cookies`] splits them, each pair passed on as sent), joined into one
/// line, never the `refresh_token` cookie, and `access_token` as `access` says. `None` when no
/// cookie is left.
pub fn upstream_cookie(headers: &HeaderMap, access: AccessCookie<'_>) -> Option<Vec<u8>> {
    let mut line: Vec<u8> = Vec::new();
    let mut push = |pair: &[&[u8]]| {
        if !line.is_empty() {
            line.extend_from_slice(b"; ");
        }
        pair.iter().for_each(|part| line.extend_from_slice(part));
    };
    let mut replaced = false;
    for CookiePair { name, pair, .. } in credentials::cookies(headers) {
        match (name, access) {
            (REFRESH_COOKIE, _) | (ACCESS_COOKIE, AccessCookie::Remove) => {}
            (ACCESS_COOKIE, AccessCookie::Replace(token)) => {
                if !replaced {
                    push(&[ACCESS_COOKIE, b"=", token.as_bytes()]);
                    replaced = true;
                }
            }
            _ => push(&[pair]),
        }
    }
    if let (AccessCookie::Replace(token), false) = (access, replaced) {
        push(&[ACCESS_COOKIE, b"=", token.as_bytes()]);
    }
    (!line.is_empty()).then_some(line)
}

/// True when the request's `Cookie` headers must be rewritten for the upstream: `access` is not
/// [`AccessCookie::Keep`], or they hold a refresh token, or there is more than one line to join.
/// False means they pass as sent, and nothing is allocated.
pub fn cookie_needs_rewrite(headers: &HeaderMap, access: AccessCookie<'_>) -> bool {
    let mut lines = headers.get_all(COOKIE).iter();
    let Some(first) = lines.next() else {
        return matches!(access, AccessCookie::Replace(_));
    };
    access != AccessCookie::Keep
        || lines.next().is_some()
        || first
            .as_bytes()
            .windows(REFRESH_COOKIE.len())
            .any(|w| w == REFRESH_COOKIE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(value).expect("value"),
            );
        }
        map
    }

    fn rewritten(pairs: &[(&str, &[u8])], token: Option<&str>) -> Option<String> {
        let access = token.map_or(AccessCookie::Keep, AccessCookie::Replace);
        upstream_cookie(&headers(pairs), access).map(|l| String::from_utf8_lossy(&l).into_owned())
    }

    #[test]
    fn tokens_in_the_query_are_refused() {
        let none = HeaderMap::new();
        for query in [
            "access_token=x",
            "a=1&access_token=x",
            "refresh_token",
            "Access_Token=x",
            "access%5Ftoken=x",
            "access_token[]=x",
            "a=1;access_token=x",
            ";access_token=x",
            "+access_token=x",
            "%20access_token=x",
            "%20+%09refresh_token=x",
            "+access_token[]=x",
            "access_token%00=x",
            "access_token%5B0%5D=x",
            "a=1&access_token[0]=x",
            "access_token+=x",
        ] {
            assert!(query_has_token(query), "{query}");
            assert_eq!(read(&none, Some(query)), Err(Ambiguity::TokenInQuery));
        }
        for query in ["", "a=access_token", "token=x", "my_access_token=x"] {
            assert!(!query_has_token(query), "{query}");
            assert_eq!(read(&none, Some(query)), Ok(Credentials::default()));
        }
    }

    #[test]
    fn the_edge_reads_with_the_contracts_rules_and_refuses_two_credentials() {
        let map = headers(&[
            ("authorization", b"Basic eA=="),
            ("cookie", b"access_token=t"),
        ]);
        assert_eq!(read(&map, None), Err(Ambiguity::TwoCredentials));
        let map = headers(&[("cookie", b"a=1, access_token=t")]);
        assert_eq!(read(&map, None), Err(Ambiguity::HiddenCookie));
        let map = headers(&[
            ("authorization", b"Bearer t"),
            ("cookie", b"access_token=\"t\"; refresh_token=r"),
        ]);
        assert_eq!(
            read(&map, Some("x=1")),
            Ok(Credentials {
                access_token: Some(b"t"),
                refresh_token: Some(b"r"),
            })
        );
    }

    #[test]
    fn the_upstream_cookie_keeps_every_other_cookie_in_order() {
        assert_eq!(
            rewritten(&[("cookie", b"a=1; refresh_token=s; b=2")], None).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            rewritten(
                &[
                    ("cookie", b"a=1; refresh_token=s"),
                    ("cookie", b"refresh_token=s; b=\xc3\xa9; flag")
                ],
                None
            )
            .as_deref(),
            Some("a=1; b=é; flag")
        );
        // Pairs pass as sent, quotes and spaces around `=` included.
        assert_eq!(
            rewritten(&[("cookie", b" q=\"x\" ;; s = 1 ; refresh_token")], None).as_deref(),
            Some("q=\"x\"; s = 1")
        );
        assert_eq!(rewritten(&[("cookie", b"refresh_token=s")], None), None);
        assert_eq!(
            rewritten(&[("cookie", b"access_token=old; a=1")], Some("new")).as_deref(),
            Some("access_token=new; a=1")
        );
        assert_eq!(
            rewritten(&[("cookie", b"a=1; refresh_token=s")], Some("new")).as_deref(),
            Some("a=1; access_token=new")
        );
        assert_eq!(
            rewritten(&[], Some("new")).as_deref(),
            Some("access_token=new")
        );
        assert_eq!(
            upstream_cookie(
                &headers(&[("cookie", b"a=1; access_token=t; b=2")]),
                AccessCookie::Remove
            )
            .as_deref(),
            Some(&b"a=1; b=2"[..])
        );
    }

    #[test]
    fn http2_cookie_crumbs_are_one_list() {
        // HTTP/2 sends each cookie in its own `cookie` field (RFC 9113 §8.2.3); they are read
        // as if joined with "; ", with the same rules as one HTTP/1.1 line.
        let crumbs = headers(&[
            ("cookie", b"a=1"),
            ("cookie", b"access_token=t"),
            ("cookie", b"refresh_token=r"),
            ("cookie", b"b=2"),
        ]);
        assert_eq!(
            read(&crumbs, None),
            Ok(Credentials {
                access_token: Some(b"t"),
                refresh_token: Some(b"r"),
            })
        );
        assert!(cookie_needs_rewrite(&crumbs, AccessCookie::Keep));
        assert_eq!(
            upstream_cookie(&crumbs, AccessCookie::Keep).as_deref(),
            Some(&b"a=1; access_token=t; b=2"[..])
        );
        let conflicting = headers(&[("cookie", b"access_token=t"), ("cookie", b"access_token=u")]);
        assert_eq!(read(&conflicting, None), Err(Ambiguity::ConflictingCookies));
        let lookalike = headers(&[("cookie", b"access_token=t"), ("cookie", b"Access_Token=u")]);
        assert_eq!(read(&lookalike, None), Err(Ambiguity::LookalikeCookie));
    }

    #[test]
    fn cookies_are_rewritten_only_when_needed() {
        let keep = AccessCookie::Keep;
        assert!(cookie_needs_rewrite(
            &headers(&[("cookie", b"x=1; refresh_token=s")]),
            keep
        ));
        assert!(cookie_needs_rewrite(
            &headers(&[("cookie", b"x=1"), ("cookie", b"y=2")]),
            keep
        ));
        assert!(!cookie_needs_rewrite(
            &headers(&[("cookie", b"x=1; access_token=a")]),
            keep
        ));
        assert!(!cookie_needs_rewrite(&headers(&[]), keep));
        assert!(!cookie_needs_rewrite(&headers(&[]), AccessCookie::Remove));
        assert!(cookie_needs_rewrite(
            &headers(&[]),
            AccessCookie::Replace("t")
        ));
    }
}
