//! The request a front proxy asks the gateway to judge (forward-auth mode), read one way only
//! from the request that asks: its method, scheme, host and target come from the headers of
//! one convention, or from the path after the endpoint's own (Envoy's `path_prefix`), and are
//! then put into the same canonical form as a request that came to the proxy itself
//! ([`crate::request::target`]).
//!
//! The conventions, chosen by the path asked for:
//! - the endpoint's path itself: the target is the one `X-Forwarded-Uri` (Traefik, Caddy) or
//!   the one `X-Original-URI` (nginx `auth_request`), never both; the method the one
//!   `X-Forwarded-Method` or `X-Original-Method`, or the asking request's own; the host the one
//!   `X-Forwarded-Host`, which must be present: the asking request's own `Host` names the
//!   gateway when nginx asks (`proxy_pass` sets it), so falling back to it would judge every
//!   request on the gateway's host and skip the host-specific routes (Traefik and Caddy always
//!   send it, and the nginx recipe sets it);
//! - a path under it (`{path}/…`): the target is the rest of the target as sent, from its `/`
//!   (query included); the method and `Host` are the asking request's own, and none of the
//!   headers above may be present;
//! - in both, the scheme is the one `X-Forwarded-Proto` (`http`, `https`, or `ws`/`wss` as
//!   Traefik writes them for upgrades), or the listener's.
//!
//! Whatever could be read two ways is refused: a header given twice, both conventions at once,
//! a target not in origin form, a method that is no token, a host or path with no single
//! canonical form. Plain functions over `http` types: no proxy engine.

use http::header::HOST;
use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::request::target::{read_target, Listener, TargetRefusal};

/// `X-Forwarded-Uri`: the target, in the Traefik and Caddy convention.
const FORWARDED_URI: &str = "x-forwarded-uri";
/// `X-Forwarded-Method`: the method, in the Traefik and Caddy convention.
const FORWARDED_METHOD: &str = "x-forwarded-method";
/// `X-Forwarded-Host`: the host, in the Traefik and Caddy convention (and nginx's recipe).
const FORWARDED_HOST: &str = "x-forwarded-host";
/// `X-Forwarded-Proto`: the scheme, in every convention.
const FORWARDED_PROTO: &str = "x-forwarded-proto";
/// `X-Original-URI`: the target, in the nginx convention.
const ORIGINAL_URI: &str = "x-original-uri";
/// `X-Original-Method`: the method, in the nginx convention.
const ORIGINAL_METHOD: &str = "x-original-method";

/// How the front proxy named the request to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `X-Forwarded-Method`/`-Host`/`-Uri`/`-Proto` (Traefik `forwardAuth`, Caddy
    /// `forward_auth`).
    Forwarded,
    /// `X-Original-URI`/`X-Original-Method` (nginx `auth_request`). nginx turns any answer of
    /// the auth request other than 2xx, 401 and 403 into a 500, so this convention never gets
    /// a redirect.
    Original,
    /// The path after the endpoint's (Envoy `ext_authz` with `path_prefix`).
    PathPrefix,
}

/// Why a forwarded request has no single reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedRefusal {
    /// The endpoint's path was asked without `X-Forwarded-Uri` or `X-Original-URI`.
    NoTarget,
    /// The endpoint's path was asked without `X-Forwarded-Host`.
    NoHost,
    /// A header of the request to judge was given twice, or by both conventions (or by a
    /// header beside a path that names it already).
    TwoReadings,
    /// The target is not in origin form (`/path?query`): absolute, `*`, a fragment, bytes that
    /// are no URI, or the endpoint's prefix spelled another way than configured.
    NotOriginForm,
    /// The method is not an HTTP token.
    Method,
    /// `X-Forwarded-Proto` is not `http`, `https`, `ws` or `wss`.
    Scheme,
    /// The host, path or framing has no single canonical reading.
    Target(TargetRefusal),
}

impl ForwardedRefusal {
    /// What the refusal says to the client: never a value it sent.
    pub fn message(&self) -> &'static str {
        match self {
            ForwardedRefusal::NoTarget => {
                "The forward-auth request must name the request to judge in X-Forwarded-Uri or X-Original-URI."
            }
            ForwardedRefusal::NoHost => {
                "The forward-auth request must name the host of the request to judge in X-Forwarded-Host."
            }
            ForwardedRefusal::TwoReadings => {
                "The forward-auth request names the request to judge more than once."
            }
            ForwardedRefusal::NotOriginForm => {
                "The forwarded request target must be a path with an optional query."
            }
            ForwardedRefusal::Method => "The forwarded method is not a valid HTTP method.",
            ForwardedRefusal::Scheme => "X-Forwarded-Proto must be http or https.",
            ForwardedRefusal::Target(_) => "The forwarded request has no single reading.",
        }
    }
}

/// The request to judge, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    /// Which convention named it.
    pub convention: Convention,
    /// Its method.
    pub method: Method,
    /// The browser reached the front proxy over TLS (`https`/`wss`).
    pub https: bool,
    /// Its target: the canonical path and the query as sent.
    pub target: String,
    /// Its canonical host.
    pub host: String,
}

/// The request that asks for a decision, as sent.
pub struct Asking<'a> {
    /// The asking request's method.
    pub method: &'a Method,
    /// Its target as sent (the bytes of the request line).
    pub raw_target: &'a [u8],
    /// Its headers.
    pub headers: &'a HeaderMap,
}

/// Reads the request to judge from a request asking at `endpoint` (the configured path):
/// `Ok` with it in canonical form, `Err` with why it has no single reading. `under` is true
/// when the asking request's canonical path is under the endpoint (`{endpoint}/…`, the
/// path-prefix convention), false when it is the endpoint itself. `listener` gives the
/// scheme when no `X-Forwarded-Proto` does, and the path options.
pub fn read_forwarded(
    asking: &Asking<'_>,
    endpoint: &str,
    under: bool,
    listener: Listener,
) -> Result<Judged, ForwardedRefusal> {
    let headers = asking.headers;
    let https = match one(headers, FORWARDED_PROTO)? {
        None => listener.tls,
        Some(value) => scheme_is_https(value)?,
    };
    let (convention, target, method, host) = if under {
        let named = [
            FORWARDED_URI,
            ORIGINAL_URI,
            FORWARDED_METHOD,
            ORIGINAL_METHOD,
            FORWARDED_HOST,
        ];
        if named.iter().any(|name| headers.contains_key(*name)) {
            return Err(ForwardedRefusal::TwoReadings);
        }
        let target = asking
            .raw_target
            .strip_prefix(endpoint.as_bytes())
            .filter(|rest| rest.starts_with(b"/"))
            .ok_or(ForwardedRefusal::NotOriginForm)?;
        let host = one(headers, HOST.as_str())?;
        (Convention::PathPrefix, target, asking.method.clone(), host)
    } else {
        let (convention, target) = match (one(headers, FORWARDED_URI)?, one(headers, ORIGINAL_URI)?)
        {
            (Some(_), Some(_)) => return Err(ForwardedRefusal::TwoReadings),
            (None, None) => return Err(ForwardedRefusal::NoTarget),
            (Some(uri), None) => (Convention::Forwarded, uri.as_bytes()),
            (None, Some(uri)) => (Convention::Original, uri.as_bytes()),
        };
        // The method in the target's own convention: the other convention's header beside it
        // is a second reading of the request (as both target headers are).
        let (own, other) = match convention {
            Convention::Original => (ORIGINAL_METHOD, FORWARDED_METHOD),
            _ => (FORWARDED_METHOD, ORIGINAL_METHOD),
        };
        if headers.contains_key(other) {
            return Err(ForwardedRefusal::TwoReadings);
        }
        let method = match one(headers, own)? {
            Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| ForwardedRefusal::Method)?,
            None => asking.method.clone(),
        };
        let host = one(headers, FORWARDED_HOST)?.ok_or(ForwardedRefusal::NoHost)?;
        (convention, target, method, Some(host))
    };
    let (target, host) = canonical_target(target, host, https, listener)?;
    Ok(Judged {
        convention,
        method,
        https,
        target,
        host,
    })
}

/// The one value of header `name`: `None` when absent, `TwoReadings` when given more than once.
fn one<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a HeaderValue>, ForwardedRefusal> {
    super::only_value(headers, name).map_err(|()| ForwardedRefusal::TwoReadings)
}

/// True for `https`/`wss`, false for `http`/`ws` (any case); anything else, a comma list
/// included, is refused.
fn scheme_is_https(value: &HeaderValue) -> Result<bool, ForwardedRefusal> {
    let value = value.as_bytes();
    if value.eq_ignore_ascii_case(b"https") || value.eq_ignore_ascii_case(b"wss") {
        Ok(true)
    } else if value.eq_ignore_ascii_case(b"http") || value.eq_ignore_ascii_case(b"ws") {
        Ok(false)
    } else {
        Err(ForwardedRefusal::Scheme)
    }
}

/// The canonical target (path and query) and host of an origin-form `target` on `host`, read
/// by the rules of a request that came to the proxy ([`read_target`]) on a listener of the
/// forwarded scheme.
fn canonical_target(
    target: &[u8],
    host: Option<&HeaderValue>,
    https: bool,
    listener: Listener,
) -> Result<(String, String), ForwardedRefusal> {
    if !target.starts_with(b"/") || target.contains(&b'#') {
        return Err(ForwardedRefusal::NotOriginForm);
    }
    let uri = Uri::try_from(target).map_err(|_| ForwardedRefusal::NotOriginForm)?;
    let mut headers = HeaderMap::new();
    if let Some(host) = host {
        headers.insert(HOST, host.clone());
    }
    let listener = Listener {
        tls: https,
        ..listener
    };
    let read = read_target(&uri, target, &headers, listener).map_err(ForwardedRefusal::Target)?;
    let target = match read.target {
        Some(rewritten) => rewritten,
        None => String::from_utf8(target.to_vec()).map_err(|_| ForwardedRefusal::NotOriginForm)?,
    };
    let host = match (read.host, host) {
        (Some(canonical), _) => canonical,
        (None, Some(host)) => host
            .to_str()
            .map_err(|_| ForwardedRefusal::Target(TargetRefusal::Host))?
            .to_string(),
        (None, None) => return Err(ForwardedRefusal::Target(TargetRefusal::Host)),
    };
    Ok((target, host))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::canonical::{PathOptions, PathRefusal};

    const PLAIN: Listener = Listener {
        tls: false,
        path_options: PathOptions {
            merge_slashes: true,
            allow_semicolons: false,
        },
    };
    const ENDPOINT: &str = "/_gatehouse/auth";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(value.as_bytes()).expect("value"),
            );
        }
        map
    }

    fn read(
        method: &str,
        raw: &str,
        pairs: &[(&str, &str)],
        listener: Listener,
    ) -> Result<Judged, ForwardedRefusal> {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let map = headers(pairs);
        let under = raw != ENDPOINT && !raw.starts_with("/_gatehouse/auth?");
        let asking = Asking {
            method: &method,
            raw_target: raw.as_bytes(),
            headers: &map,
        };
        read_forwarded(&asking, ENDPOINT, under, listener)
    }

    fn judged(
        convention: Convention,
        method: &str,
        https: bool,
        target: &str,
        host: &str,
    ) -> Judged {
        Judged {
            convention,
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            https,
            target: target.into(),
            host: host.into(),
        }
    }

    #[test]
    fn traefik_and_caddy_name_the_request_in_x_forwarded_headers() {
        let asked = read(
            "GET",
            ENDPOINT,
            &[
                ("host", "gatehouse:9011"),
                ("x-forwarded-method", "POST"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "App.Example:443"),
                ("x-forwarded-uri", "/a/../admin/%7Euser?x=/../y"),
            ],
            PLAIN,
        );
        assert_eq!(
            asked,
            Ok(judged(
                Convention::Forwarded,
                "POST",
                true,
                "/admin/~user?x=/../y",
                "app.example"
            ))
        );
        // `wss` is Traefik's word for an upgrade over TLS.
        let asked = read(
            "GET",
            ENDPOINT,
            &[
                ("host", "gatehouse:9011"),
                ("x-forwarded-host", "app.example"),
                ("x-forwarded-uri", "/ws"),
                ("x-forwarded-proto", "wss"),
            ],
            PLAIN,
        );
        assert_eq!(
            asked,
            Ok(judged(
                Convention::Forwarded,
                "GET",
                true,
                "/ws",
                "app.example"
            ))
        );
    }

    #[test]
    fn nginx_names_it_in_x_original_headers() {
        let asked = read(
            "GET",
            ENDPOINT,
            &[
                ("host", "127.0.0.1:9011"),
                ("x-original-uri", "/admin?q=1"),
                ("x-original-method", "DELETE"),
                ("x-forwarded-host", "app.example:8080"),
            ],
            PLAIN,
        );
        assert_eq!(
            asked,
            Ok(judged(
                Convention::Original,
                "DELETE",
                false,
                "/admin?q=1",
                "app.example:8080"
            ))
        );
    }

    #[test]
    fn envoy_names_it_in_the_path_after_the_prefix() {
        let asked = read(
            "PUT",
            "/_gatehouse/auth/admin//x?y=1",
            &[("host", "App.example.")],
            PLAIN,
        );
        assert_eq!(
            asked,
            Ok(judged(
                Convention::PathPrefix,
                "PUT",
                false,
                "/admin/x?y=1",
                "app.example"
            ))
        );
        let tls = Listener { tls: true, ..PLAIN };
        let asked = read(
            "GET",
            "/_gatehouse/auth/",
            &[("host", "app.example:443")],
            tls,
        );
        assert_eq!(
            asked,
            Ok(judged(
                Convention::PathPrefix,
                "GET",
                true,
                "/",
                "app.example"
            ))
        );
    }

    #[test]
    fn what_has_two_readings_is_refused() {
        use ForwardedRefusal::*;
        let host = ("host", "app.example");
        let xfh = ("x-forwarded-host", "app.example");
        for (raw, pairs, refusal) in [
            (ENDPOINT, vec![host], NoTarget),
            // The asking request's Host is the gateway's (nginx's `proxy_pass`): never the
            // judged request's.
            (ENDPOINT, vec![host, ("x-forwarded-uri", "/a")], NoHost),
            (ENDPOINT, vec![host, ("x-original-uri", "/a")], NoHost),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-uri", "/b"),
                ],
                TwoReadings,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-original-uri", "/a"),
                ],
                TwoReadings,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-method", "GET"),
                    ("x-original-method", "GET"),
                ],
                TwoReadings,
            ),
            // The method of the other convention than the target's.
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-original-method", "POST"),
                ],
                TwoReadings,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-original-uri", "/a"),
                    ("x-forwarded-method", "POST"),
                ],
                TwoReadings,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "a.example"),
                    ("x-forwarded-host", "b.example"),
                ],
                TwoReadings,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-proto", "http"),
                    ("x-forwarded-proto", "https"),
                ],
                TwoReadings,
            ),
            (
                "/_gatehouse/auth/a",
                vec![host, ("x-forwarded-uri", "/b")],
                TwoReadings,
            ),
            (
                "/_gatehouse/auth/a",
                vec![host, ("x-original-method", "POST")],
                TwoReadings,
            ),
            (
                "/_gatehouse/auth/a",
                vec![host, ("x-forwarded-host", "b.example")],
                TwoReadings,
            ),
            (
                ENDPOINT,
                vec![host, xfh, ("x-forwarded-uri", "http://app.example/a")],
                NotOriginForm,
            ),
            (
                ENDPOINT,
                vec![host, xfh, ("x-forwarded-uri", "*")],
                NotOriginForm,
            ),
            (
                ENDPOINT,
                vec![host, xfh, ("x-forwarded-uri", "")],
                NotOriginForm,
            ),
            (
                ENDPOINT,
                vec![host, xfh, ("x-forwarded-uri", "/a#b")],
                NotOriginForm,
            ),
            (
                ENDPOINT,
                vec![host, xfh, ("x-forwarded-uri", "/a b")],
                NotOriginForm,
            ),
            ("/_gatehouse//auth/a", vec![host], NotOriginForm),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-method", "GE T"),
                ],
                Method,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-method", ""),
                ],
                Method,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-proto", "ftp"),
                ],
                Scheme,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    xfh,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-proto", "https, http"),
                ],
                Scheme,
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "a.example, b.example"),
                ],
                Target(TargetRefusal::Host),
            ),
            (
                ENDPOINT,
                vec![
                    host,
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "0x7f.1"),
                ],
                Target(TargetRefusal::Host),
            ),
            (ENDPOINT, vec![("x-forwarded-uri", "/a")], NoHost),
            ("/_gatehouse/auth/a", vec![], Target(TargetRefusal::Host)),
            (
                ENDPOINT,
                vec![host, xfh, ("x-forwarded-uri", "/a/../../admin")],
                Target(TargetRefusal::Path(PathRefusal::AboveRoot)),
            ),
            (
                "/_gatehouse/auth/a%2Fb",
                vec![host],
                Target(TargetRefusal::Path(PathRefusal::EncodedSlash)),
            ),
        ] {
            assert_eq!(
                read("GET", raw, &pairs, PLAIN),
                Err(refusal),
                "{raw} {pairs:?}"
            );
        }
    }
}
