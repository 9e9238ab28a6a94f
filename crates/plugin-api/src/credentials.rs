//! The one reader of a request's credentials, for the edge and the plugins alike: the access
//! and refresh tokens, read once and refused when ambiguous ([`read`]), the cookies they come
//! from ([`cookies`]), and the small readers built on the same rules ([`bearer_token`],
//! [`names_a_token`], [`ip_address`]). The host rewrites cookies for the upstream with
//! [`cookies`] too, so every reader splits a `Cookie` header the same way.
//!
//! A request carries at most one access token (the `Authorization: Bearer` header, or the
//! `access_token` cookie, or both with the same value) and at most one refresh token (the
//! `refresh_token` cookie). Anything that could make the gateway verify one credential while
//! the upstream (or a plugin) reads another is refused with 400, before any policy runs:
//!
//! - more than one `Authorization` header;
//! - an `access_token` (or `refresh_token`) cookie given more than once with different values;
//! - a Bearer token and an `access_token` cookie that differ;
//! - at the edge, an `Authorization` header of another scheme next to an `access_token` cookie
//!   (two credentials, and the upstream could take either; the API reads it as an API key, see
//!   [`OtherScheme`]);
//! - a cookie whose name a framework could read as one of those two (`Access_Token`,
//!   `access%5Ftoken`, `access.token` — PHP turns `.` and spaces into `_`);
//! - a cookie that holds another one after a `,` or whitespace (`a=1, access_token=…`, RFC
//!   2965 parsers such as Python's `SimpleCookie` split there; RFC 6265 values never hold
//!   either).
//!
//! Cookies are read as bytes: another cookie holding bytes outside ASCII never hides the
//! credentials.

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

/// What an `Authorization` header of another scheme than `Bearer` is next to an
/// `access_token` cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtherScheme {
    /// A second credential: the pair is ambiguous. The edge reads it so, because an upstream
    /// could take either credential.
    Credential,
    /// An API key: FusionAuth's API takes one next to the `access_token` cookie (a
    /// tenant-locked key scoping `GET /api/jwt/issue`), and no upstream reads the request after
    /// the API, so the pair is not ambiguous.
    ApiKey,
}

/// Reads the request's credentials: `Ok` with the access token (the Bearer token, else the
/// `access_token` cookie) and the `refresh_token` cookie, each `None` when absent; `Err` with
/// the reason when they could be read more than one way (see the module header). `other`
/// says what an `Authorization` header of another scheme is next to an `access_token` cookie.
pub fn read(headers: &HeaderMap, other: OtherScheme) -> Result<Credentials<'_>, Ambiguity> {
    let mut authorizations = headers.get_all(AUTHORIZATION).iter();
    let authorization = authorizations.next().map(|v| v.as_bytes());
    if authorizations.next().is_some() {
        return Err(Ambiguity::SeveralAuthorizationHeaders);
    }
    let bearer = authorization.and_then(bearer_token);
    let cookies = token_cookies(headers)?;
    let access_token = match (bearer, cookies.access_token) {
        (Some(header), Some(cookie)) if header != cookie => {
            return Err(Ambiguity::HeaderAndCookieDiffer)
        }
        (None, Some(_)) if authorization.is_some() && other == OtherScheme::Credential => {
            return Err(Ambiguity::TwoCredentials)
        }
        (header, cookie) => header.or(cookie),
    };
    Ok(Credentials {
        access_token,
        refresh_token: cookies.refresh_token,
    })
}

/// The token of an `Authorization` value with the `Bearer` scheme (case-insensitive, then one
/// or more spaces); `None` for another scheme. A `Bearer` value with no token is `Some` of an
/// empty (and so invalid) token.
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    if !value[..scheme_end].eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    Some(value[scheme_end..].trim_ascii())
}

/// One cookie of a `Cookie` header, as bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePair<'a> {
    /// The name: the bytes before the first `=`, trimmed.
    pub name: &'a [u8],
    /// The value: the bytes after the first `=`, trimmed, without surrounding double quotes;
    /// empty for a pair without `=`.
    pub value: &'a [u8],
    /// The whole pair as sent (trimmed), for passing it on unchanged.
    pub pair: &'a [u8],
}

/// Every cookie of every `Cookie` header, in order: each line is split on `;`, each pair
/// trimmed (empty ones skipped) and split at its first `=` (see [`CookiePair`]). The one way
/// the gateway splits cookies, for reading credentials and for rewriting the header.
pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = CookiePair<'_>> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|line| line.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let eq = pair.iter().position(|&b| b == b'=').unwrap_or(pair.len());
            let value = pair.get(eq + 1..).unwrap_or_default().trim_ascii();
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            CookiePair {
                name: pair[..eq].trim_ascii(),
                value,
                pair,
            }
        })
}

/// The token cookies of a request, each given once (or several times with one value).
fn token_cookies(headers: &HeaderMap) -> Result<Credentials<'_>, Ambiguity> {
    let mut found = Credentials::default();
    for CookiePair { name, value, .. } in cookies(headers) {
        if hides_a_cookie(name, value) {
            return Err(Ambiguity::HiddenCookie);
        }
        let slot = if name == ACCESS_COOKIE {
            &mut found.access_token
        } else if name == REFRESH_COOKIE {
            &mut found.refresh_token
        } else if names_a_token(name) {
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

/// True when a framework could read `name` (of a cookie or a query parameter) as
/// `access_token` or `refresh_token`: equal to one after percent-decoding, lower-casing and
/// turning every byte other than a letter or a digit into `_` (PHP turns `.`, spaces and a
/// lone `[` into `_`), or whose part before a `[` (written or percent-encoded) is one (PHP
/// reads `access_token[]`, `access_token[0]` and `access_token%5B0%5D` as an array named
/// `access_token`), once the blanks a framework drops from a name's start and end are dropped
/// and the name is cut at a NUL ([`as_read_leniently`]). True for the exact names too.
pub fn names_a_token(name: &[u8]) -> bool {
    if name.len() < ACCESS_COOKIE.len() {
        return false;
    }
    let name = as_read_leniently(name);
    if name == ACCESS_COOKIE || name == REFRESH_COOKIE {
        return true;
    }
    folds_to_token(decoded(name)) || folds_to_token(decoded(name).take_while(|&b| b != b'['))
}

/// True when the decoded name `bytes`, without the blanks at its end, folds to
/// `access_token` or `refresh_token` (nothing allocated: a longer name cannot).
fn folds_to_token(bytes: impl Iterator<Item = u8>) -> bool {
    let mut name = [0u8; 16];
    let mut len = 0;
    for byte in bytes {
        if len < name.len() {
            name[len] = byte;
            len += 1;
        } else if !is_blank(byte) {
            return false;
        }
    }
    let mut name = &name[..len];
    while let [rest @ .., last] = name {
        if !is_blank(*last) {
            break;
        }
        name = rest;
    }
    let folded = name.iter().map(|&b| match b.to_ascii_lowercase() {
        b @ (b'a'..=b'z' | b'0'..=b'9') => b,
        _ => b'_',
    });
    folded.clone().eq(ACCESS_COOKIE.iter().copied()) || folded.eq(REFRESH_COOKIE.iter().copied())
}

/// A blank a framework drops from a name's ends (`+` is a space in a query).
fn is_blank(byte: u8) -> bool {
    matches!(byte, b' ' | b'+' | b'\t')
}

/// `name` as the most lenient framework reads it: without the blanks dropped from its start
/// (PHP: spaces, tabs and `+`, written or percent-encoded as `%20`, `%09`), and cut at a NUL
/// (`%00`, where C strings end).
fn as_read_leniently(mut name: &[u8]) -> &[u8] {
    loop {
        let rest = match name {
            [b' ' | b'+' | b'\t', rest @ ..] => rest,
            [b'%', b'2', b'0', rest @ ..] | [b'%', b'0', b'9', rest @ ..] => rest,
            _ => break,
        };
        name = rest;
    }
    let nul = name.windows(3).position(|w| w == b"%00");
    nul.map_or(name, |at| &name[..at])
}

/// `name` percent-decoded, byte by byte (nothing allocated); a `%` not followed by two hex
/// digits stays as it is.
fn decoded(name: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let mut byte = *name.get(i)?;
        if byte == b'%' {
            if let Some(decoded) = name.get(i + 1..i + 3).and_then(hex_byte) {
                byte = decoded;
                i += 2;
            }
        }
        i += 1;
        Some(byte)
    })
}

/// The byte of two hex digits.
fn hex_byte(digits: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(digits).ok()?;
    u8::from_str_radix(text, 16).ok()
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
        read(&map, OtherScheme::Credential).map(|c| (text(c.access_token), text(c.refresh_token)))
    }

    fn ok(
        access: Option<&str>,
        refresh: Option<&str>,
    ) -> Result<(Option<String>, Option<String>), Ambiguity> {
        Ok((access.map(str::to_string), refresh.map(str::to_string)))
    }

    #[test]
    fn cookies_are_split_one_way() {
        let map = headers(&[
            ("cookie", b" a=1;; access_token ; b = \"x y\" ;c=\"q;d=e=f"),
            ("cookie", b"theme=\xff"),
        ]);
        let read: Vec<(&[u8], &[u8], &[u8])> =
            cookies(&map).map(|c| (c.name, c.value, c.pair)).collect();
        let expected: [(&[u8], &[u8], &[u8]); 6] = [
            (b"a", b"1", b"a=1"),
            (b"access_token", b"", b"access_token"),
            (b"b", b"x y", b"b = \"x y\""),
            (b"c", b"\"q", b"c=\"q"),
            (b"d", b"e=f", b"d=e=f"),
            (b"theme", b"\xff", b"theme=\xff"),
        ];
        assert_eq!(read, expected);
    }

    #[test]
    fn a_bare_or_quoted_token_cookie_reads_as_at_the_edge() {
        // A bare `access_token` is an empty (cleared) cookie, never a reason to look further
        // for another reading; quotes are removed before values are compared.
        let map = headers(&[("cookie", b"access_token; access_token=t")]);
        assert_eq!(
            read(&map, OtherScheme::ApiKey).map(|c| c.access_token),
            Ok(Some(&b"t"[..]))
        );
        let map = headers(&[("cookie", b"access_token=\"t\"; access_token=t")]);
        assert_eq!(
            read(&map, OtherScheme::ApiKey).map(|c| c.access_token),
            Ok(Some(&b"t"[..]))
        );
        let map = headers(&[("cookie", b"access_token=\xff; access_token=t")]);
        assert_eq!(
            read(&map, OtherScheme::ApiKey),
            Err(Ambiguity::ConflictingCookies)
        );
    }

    #[test]
    fn an_api_key_next_to_the_cookie_is_ambiguous_only_at_the_edge() {
        let map = headers(&[
            ("authorization", b"some-api-key"),
            ("cookie", b"access_token=t"),
        ]);
        assert_eq!(
            read(&map, OtherScheme::Credential),
            Err(Ambiguity::TwoCredentials)
        );
        assert_eq!(
            read(&map, OtherScheme::ApiKey).map(|c| c.access_token),
            Ok(Some(&b"t"[..]))
        );
        // Every other rule holds for the API too.
        let map = headers(&[
            ("authorization", b"Bearer a"),
            ("cookie", b"access_token=b"),
        ]);
        assert_eq!(
            read(&map, OtherScheme::ApiKey),
            Err(Ambiguity::HeaderAndCookieDiffer)
        );
    }

    #[test]
    fn token_names_are_found_however_a_framework_folds_them() {
        for name in [
            "access_token",
            "refresh_token",
            "Access_Token",
            "access%5Ftoken",
            "access.token",
            "access_token[]",
            "REFRESH-TOKEN[x]",
            // Leading blanks a framework drops, and a NUL where a C string ends, as written in
            // a cookie's name or a query's.
            " access_token",
            "+access_token",
            "%20%09+access_token",
            "access_token%00x",
            "+refresh_token%00",
            // An array however its brackets are written, and blanks a framework drops at the
            // end.
            "access_token[0]",
            "access_token%5B0%5D",
            "access_token%5b%5d",
            "refresh_token%5Bx]",
            "access_token%20",
            "access_token+",
            "access_token%09%20",
            "access%5Ftoken",
        ] {
            assert!(names_a_token(name.as_bytes()), "{name}");
        }
        for name in [
            "",
            "token",
            "access_tokens",
            "my_access_token",
            "access%5",
            "x access_token",
            "%00access_token",
            "access_token_x",
            "access_token%20x",
            "access_tokens[0]",
            "x[access_token]",
        ] {
            assert!(!names_a_token(name.as_bytes()), "{name}");
        }
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
                vec![("cookie", b"a=1; %20access_token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"+refresh_token=b")],
                Err(Ambiguity::LookalikeCookie),
            ),
            (
                vec![("cookie", b"access_token%00x=b")],
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
}
