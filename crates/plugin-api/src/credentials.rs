//! Reading credentials and the client address, shared by the proxy and the plugins: the
//! credentials of a proxied request, read once and refused when ambiguous ([`read`]), and the
//! small readers the plugin requests use ([`cookie_value`], [`bearer_of`], [`ip_address`]).
//!
//! A request carries at most one access token (the `Authorization: Bearer` header, or the
//! `access_token` cookie, or both with the same value) and at most one refresh token (the
//! `refresh_token` cookie). Anything that could make the gateway verify one credential while
//! the upstream reads another is refused with 400, before any policy runs:
//!
//! - more than one `Authorization` header;
//! - an `access_token` (or `refresh_token`) cookie given more than once with different values;
//! - a Bearer token and an `access_token` cookie that differ;
//! - an `Authorization` header of another scheme next to an `access_token` cookie (two
//!   credentials, and the upstream could take either);
//! - a cookie whose name a framework could read as one of those two (`Access_Token`,
//!   `access%5Ftoken`, `access.token` — PHP turns `.` and spaces into `_`);
//! - a cookie that holds another one after a `,` or whitespace (`a=1, access_token=…`, RFC
//!   2965 parsers such as Python's `SimpleCookie` split there; RFC 6265 values never hold
//!   either).
//!
//! Cookies are read as bytes: another cookie holding bytes outside ASCII never hides the
//! credentials. The rewritten `Cookie` header for the upstream keeps every other cookie, in
//! order, and never the refresh token.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;

/// The name of the access-token cookie.
pub const ACCESS_COOKIE: &[u8] = b"access_token";
/// The name of the refresh-token cookie.
pub const REFRESH_COOKIE: &[u8] = b"refresh_token";

/// Why a request's credentials are ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// More than one `Authorization` header.
    SeveralAuthorizationHeaders,
    /// One token cookie given twice with different values.
    ConflictingCookies,
    /// A Bearer token and an `access_token` cookie that differ.
    HeaderAndCookieDiffer,
    /// An `Authorization` header of another scheme next to an `access_token` cookie.
    TwoCredentials,
    /// A cookie name that a framework could read as a token cookie's.
    LookalikeCookie,
    /// A cookie that holds another cookie after a `,` or whitespace.
    HiddenCookie,
    /// A query parameter that a framework could take as a token.
    TokenInQuery,
}

impl Ambiguity {
    /// A sentence for the client (it names no value).
    pub fn message(self) -> &'static str {
        match self {
            Ambiguity::SeveralAuthorizationHeaders => {
                "The request has more than one Authorization header."
            }
            Ambiguity::ConflictingCookies => "A token cookie appears twice with different values.",
            Ambiguity::HeaderAndCookieDiffer => {
                "The Bearer token and the access_token cookie differ."
            }
            Ambiguity::TwoCredentials => {
                "The request carries an Authorization header and an access_token cookie."
            }
            Ambiguity::LookalikeCookie => {
                "A cookie name could be read as access_token or refresh_token."
            }
            Ambiguity::HiddenCookie => "A cookie holds another cookie after a comma or a space.",
            Ambiguity::TokenInQuery => {
                "The query string carries a token; send it in the Authorization header."
            }
        }
    }
}

/// The credentials of a request, as bytes of its headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// The access token: the Bearer token, else the `access_token` cookie (non-empty).
    pub access_token: Option<&'a [u8]>,
    /// The `refresh_token` cookie (non-empty).
    pub refresh_token: Option<&'a [u8]>,
}

/// Reads the request's credentials; `Err` when they are ambiguous (see the module header).
pub fn read(headers: &HeaderMap) -> Result<Credentials<'_>, Ambiguity> {
    read_with(headers, false)
}

/// Reads the credentials of an API request with the edge's rules but one: an `Authorization`
/// header of another scheme is an API key there, which FusionAuth's API takes next to the
/// `access_token` cookie (a tenant-locked key scoping `GET /api/jwt/issue`), so that pair is
/// not ambiguous. No upstream reads the request after the API.
pub fn read_api(headers: &HeaderMap) -> Result<Credentials<'_>, Ambiguity> {
    read_with(headers, true)
}

/// [`read`], taking an `Authorization` header of another scheme next to the `access_token`
/// cookie when `api_key_with_cookie`.
fn read_with(headers: &HeaderMap, api_key_with_cookie: bool) -> Result<Credentials<'_>, Ambiguity> {
    let mut authorizations = headers.get_all(AUTHORIZATION).iter();
    let authorization = authorizations.next().map(|v| v.as_bytes());
    if authorizations.next().is_some() {
        return Err(Ambiguity::SeveralAuthorizationHeaders);
    }
    let bearer = authorization.and_then(bearer_bytes);
    let cookies = token_cookies(headers)?;
    let access_token = match (bearer, cookies.access_token) {
        (Some(header), Some(cookie)) if header != cookie => {
            return Err(Ambiguity::HeaderAndCookieDiffer)
        }
        (None, Some(_)) if authorization.is_some() && !api_key_with_cookie => {
            return Err(Ambiguity::TwoCredentials)
        }
        (header, cookie) => header.or(cookie),
    };
    Ok(Credentials {
        access_token,
        refresh_token: cookies.refresh_token,
    })
}

/// The token of an `Authorization` value with the `Bearer` scheme (case-insensitive); `None`
/// for another scheme. A `Bearer` value with no token is an empty (and so invalid) token.
fn bearer_bytes(value: &[u8]) -> Option<&[u8]> {
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(value[scheme_end..].trim_ascii())
}

/// The name and value of each cookie of every `Cookie` header, in order, as bytes: pairs are
/// split on `;`, trimmed, and split at the first `=` (a pair without one has an empty value);
/// a value's surrounding double quotes are removed.
pub fn cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| line_pairs(line.as_bytes()))
}

/// The cookies of one `Cookie` header value, as [`cookie_pairs`] reads them.
fn line_pairs(line: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    line.split(|&b| b == b';')
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
            let value = pair.get(eq + 1..).unwrap_or_default().trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            (pair[..eq].trim_ascii(), value)
        })
}

/// The token cookies of a request, each given once (or several times with one value).
fn token_cookies(headers: &HeaderMap) -> Result<Credentials<'_>, Ambiguity> {
    let mut found = Credentials::default();
    for (name, value) in cookie_pairs(headers) {
        if hides_a_cookie(name, value) {
            return Err(Ambiguity::HiddenCookie);
        }
        let slot = if name == ACCESS_COOKIE {
            &mut found.access_token
        } else if name == REFRESH_COOKIE {
            &mut found.refresh_token
        } else if is_lookalike(name) {
            return Err(Ambiguity::LookalikeCookie);
        } else {
            continue;
        };
        if value.is_empty() {
            // A cleared cookie: no credential.
            continue;
        }
        match slot {
            Some(seen) if *seen != value => return Err(Ambiguity::ConflictingCookies),
            _ => *slot = Some(value),
        }
    }
    Ok(found)
}

/// True when a cookie pair could be read as more than one cookie: its name holds a `,` or
/// whitespace, or its value holds one with an `=` after it.
fn hides_a_cookie(name: &[u8], value: &[u8]) -> bool {
    let separator = |b: &u8| matches!(b, b',' | b' ' | b'\t');
    name.iter().any(separator)
        || value
            .iter()
            .position(separator)
            .is_some_and(|at| value[at..].contains(&b'='))
}

/// True when `name` is not a token cookie's name but a framework could read it as one: equal
/// to one after percent-decoding, lower-casing and turning every byte other than a letter or a
/// digit into `_` (PHP turns `.`, spaces and a lone `[` into `_`), or whose part before a `[`
/// is one (PHP reads `access_token[]` and `access_token[x]` as an array named `access_token`).
fn is_lookalike(name: &[u8]) -> bool {
    if name.len() < ACCESS_COOKIE.len() {
        return false;
    }
    let folded = fold(name);
    let base = name
        .iter()
        .position(|&b| b == b'[')
        .map(|bracket| fold(&name[..bracket]));
    let is_token_name = |n: &[u8]| n == ACCESS_COOKIE || n == REFRESH_COOKIE;
    is_token_name(&folded) || base.as_deref().is_some_and(is_token_name)
}

/// `name` percent-decoded, lower-cased, every byte but a letter or a digit made `_`.
fn fold(name: &[u8]) -> Vec<u8> {
    let mut folded = Vec::with_capacity(name.len());
    let mut i = 0;
    while i < name.len() {
        let mut byte = name[i];
        if byte == b'%' {
            if let Some(decoded) = name.get(i + 1..i + 3).and_then(hex_byte) {
                byte = decoded;
                i += 2;
            }
        }
        folded.push(match byte.to_ascii_lowercase() {
            b @ (b'a'..=b'z' | b'0'..=b'9') => b,
            _ => b'_',
        });
        i += 1;
    }
    folded
}

/// True when the query string has a parameter a framework could take as a token
/// (`access_token`, RFC 6750 §2.3, or `refresh_token`, or a lookalike of either): the gateway
/// reads tokens from headers only, so such a request is ambiguous.
pub fn query_has_token(query: &str) -> bool {
    query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or(pair).as_bytes();
        name == ACCESS_COOKIE || name == REFRESH_COOKIE || is_lookalike(name)
    })
}

/// The byte of two hex digits.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(digits).ok()?;
    u8::from_str_radix(text, 16).ok()
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

/// The `Cookie` header for the upstream: every cookie of every `Cookie` line in order, joined
/// into one line, never the `refresh_token` cookie, and `access_token` as `access` says.
/// `None` when no cookie is left.
pub fn upstream_cookie(headers: &HeaderMap, access: AccessCookie<'_>) -> Option<Vec<u8>> {
    let mut line: Vec<u8> = Vec::new();
    let mut push = |pair: &[&[u8]]| {
        if !line.is_empty() {
            line.extend_from_slice(b"; ");
        }
        pair.iter().for_each(|part| line.extend_from_slice(part));
    };
    let mut replaced = false;
    for pair in headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
    {
        let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
        match (pair[..eq].trim_ascii(), access) {
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
pub fn cookie_needs_rewrite(headers: &HeaderMap, access: AccessCookie<'_>) -> bool {
    let mut lines = headers.get_all(COOKIE).iter();
    let Some(first) = lines.next() else {
        return matches!(access, AccessCookie::Replace(_));
    };
    access != AccessCookie::Keep
        || lines.next().is_some()
        || contains(first.as_bytes(), REFRESH_COOKIE)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `text` as an IP address in canonical form (a `host:port` or `[v6]:port` form gives its
/// address), or `None`: only addresses are recorded as `lastAccessedAddress`, never arbitrary
/// text a client put in `X-Forwarded-For`.
pub fn ip_address(text: &str) -> Option<String> {
    let text = text.trim();
    text.parse::<std::net::IpAddr>()
        .or_else(|_| text.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_string())
}

/// The token of an `Authorization` value with the `Bearer` scheme (case-insensitive).
/// `None` also for a `Bearer` value without a token.
pub fn bearer_of(value: &str) -> Option<&str> {
    let token = bearer_bytes(value.as_bytes())?;
    let token = std::str::from_utf8(token).ok()?;
    (!token.is_empty()).then_some(token)
}

/// The value of cookie `name` in one `Cookie` header value, when it is text; the other
/// cookies may hold any bytes.
/// A pair without `=`, or whose value is not text, is passed over for a later one.
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a str> {
    header.split(|&b| b == b';').find_map(|pair| {
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (key, value) = (pair[..eq].trim_ascii(), pair[eq + 1..].trim_ascii());
        if key != name.as_bytes() {
            return None;
        }
        std::str::from_utf8(value).ok().map(|v| v.trim_matches('"'))
    })
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

    type Read = Result<(Option<String>, Option<String>), Ambiguity>;
    type Case<'a> = (Vec<(&'a str, &'a [u8])>, Read);

    fn read_of(pairs: &[(&str, &[u8])]) -> Read {
        let map = headers(pairs);
        let text = |v: Option<&[u8]>| v.map(|b| String::from_utf8_lossy(b).into_owned());
        read(&map).map(|c| (text(c.access_token), text(c.refresh_token)))
    }

    fn ok(
        access: Option<&str>,
        refresh: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), Ambiguity> {
        Ok((access.map(str::to_string), refresh.map(str::to_string)))
    }

    #[test]
    fn the_plugins_cookie_reader_passes_over_bare_and_non_text_pairs() {
        assert_eq!(
            cookie_value(b"access_token; access_token=t", "access_token"),
            Some("t")
        );
        assert_eq!(
            cookie_value(b"access_token=\xff; access_token=t", "access_token"),
            Some("t")
        );
        assert_eq!(
            cookie_value(b"a=1; access_token=\"t\"", "access_token"),
            Some("t")
        );
        assert_eq!(cookie_value(b"access_tokens=x", "access_token"), None);
        assert_eq!(
            cookie_value(b"a=1; access_token=xyz; b=2", "access_token"),
            Some("xyz")
        );
        assert_eq!(cookie_value(b"a=1", "access_token"), None);
    }

    #[test]
    fn credentials_are_read_or_refused_as_ambiguous() {
        let cases: Vec<Case<'_>> = vec![
            (vec![], ok(None, None)),
            (
                vec![("authorization", b"Bearer abc")],
                ok(Some("abc"), None),
            ),
            (
                vec![("authorization", b"bEaReR  abc ")],
                ok(Some("abc"), None),
            ),
            (vec![("authorization", b"Bearer")], ok(Some(""), None)),
            (vec![("authorization", b"Basic xyz")], ok(None, None)),
            (
                vec![
                    ("authorization", b"Bearer a"),
                    ("authorization", b"Bearer a"),
                ],
                Err(Ambiguity::SeveralAuthorizationHeaders),
            ),
            (
                vec![
                    ("authorization", b"Basic x"),
                    ("authorization", b"Bearer a"),
                ],
                Err(Ambiguity::SeveralAuthorizationHeaders),
            ),
            (vec![("cookie", b"access_token=abc")], ok(Some("abc"), None)),
            (
                vec![("cookie", b"access_token=\"abc\"")],
                ok(Some("abc"), None),
            ),
            (
                vec![(
                    "cookie",
                    b"a=1; access_token=abc; theme=\xc3\xa9; refresh_token=r",
                )],
                ok(Some("abc"), Some("r")),
            ),
            (
                vec![("cookie", b"theme=\xff"), ("cookie", b"access_token=abc")],
                ok(Some("abc"), None),
            ),
            (
                vec![("cookie", b"access_token=a; access_token=a")],
                ok(Some("a"), None),
            ),
            (
                vec![("cookie", b"access_token=a; access_token=b")],
                Err(Ambiguity::ConflictingCookies),
            ),
            (
                vec![("cookie", b"access_token=a"), ("cookie", b"access_token=b")],
                Err(Ambiguity::ConflictingCookies),
            ),
            (
                vec![("cookie", b"refresh_token=a; refresh_token=b")],
                Err(Ambiguity::ConflictingCookies),
            ),
            (
                vec![("cookie", b"access_token=; access_token=b")],
                ok(Some("b"), None),
            ),
            (
                vec![
                    ("authorization", b"Bearer a"),
                    ("cookie", b"access_token=a"),
                ],
                ok(Some("a"), None),
            ),
            (
                vec![
                    ("authorization", b"Bearer a"),
                    ("cookie", b"access_token=b"),
                ],
                Err(Ambiguity::HeaderAndCookieDiffer),
            ),
            (
                vec![("authorization", b"Basic x"), ("cookie", b"access_token=b")],
                Err(Ambiguity::TwoCredentials),
            ),
            (
                vec![("cookie", b"Access_Token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access%5Ftoken=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access.token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"refresh token=b")],
                Err(Ambiguity::HiddenCookie),
            ),
            (
                vec![("cookie", b"REFRESH_TOKEN=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access[token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"refresh[token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"refresh_token[=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access_token[]=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access_token[x]=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access-token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access+token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access_tokens=b; my_access_token=c")],
                ok(None, None),
            ),
            (
                vec![("cookie", b"a=1, access_token=x, refresh_token=y")],
                Err(Ambiguity::HiddenCookie),
            ),
            (
                vec![("cookie", b"a=1 refresh_token=y")],
                Err(Ambiguity::HiddenCookie),
            ),
            (
                vec![("cookie", b"a=1\trefresh_token=y")],
                Err(Ambiguity::HiddenCookie),
            ),
            (
                vec![("cookie", b"$Version=1; a=1, b=2")],
                Err(Ambiguity::HiddenCookie),
            ),
            (vec![("cookie", b"a, b=1")], Err(Ambiguity::HiddenCookie)),
            (
                vec![("cookie", b"json={\"a\":1,\"b\":2}; c=x==")],
                ok(None, None),
            ),
        ];
        for (pairs, expected) in cases {
            assert_eq!(read_of(&pairs), expected, "{pairs:?}");
        }
    }

    fn rewritten(pairs: &[(&str, &[u8])], token: Option<&str>) -> Option<String> {
        let access = token.map_or(AccessCookie::Keep, AccessCookie::Replace);
        upstream_cookie(&headers(pairs), access).map(|l| String::from_utf8_lossy(&l).into_owned())
    }

    #[test]
    fn tokens_in_the_query_are_found() {
        for query in [
            "access_token=x",
            "a=1&access_token=x",
            "refresh_token",
            "Access_Token=x",
            "access%5Ftoken=x",
            "access_token[]=x",
        ] {
            assert!(query_has_token(query), "{query}");
        }
        for query in ["", "a=access_token", "token=x", "my_access_token=x"] {
            assert!(!query_has_token(query), "{query}");
        }
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
