//! The request line and the headers that frame it, read once: the framing (`Content-Length`),
//! the form of the target (origin form, or an absolute `http(s)` URI of the listener's
//! scheme), the one canonical host ([`crate::request::host`]) and the canonical path
//! ([`crate::request::canonical`]). What routes judge and what the upstream receives come from
//! here; a request that cannot be read one way only is refused.
//!
//! An HTTP/2 request is read by the same rules: the engine gives it a URI made of its
//! pseudo-headers (`:scheme://:authority:path`) and its `:path` as the raw target, so
//! `:authority` is the target's authority and must name the same host as a `host` header when
//! both are sent (RFC 9113 §8.3.1), either alone is the host, and `:scheme` must be `http` or
//! `https` (it never reaches the upstream, which learns the listener's scheme from
//! `X-Forwarded-Proto`). Its `cookie` fields, which HTTP/2 splits (RFC 9113 §8.2.3), are read as
//! one list by [`crate::request::credentials`].

use std::borrow::Cow;

use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, Uri};

use crate::request::canonical::{canonical_path, PathOptions, PathRefusal};
use crate::request::host::{authority_of, request_host};

/// How the listener reads targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The listener is TLS: `https://` targets, default port 443 (else `http://`, 80).
    pub tls: bool,
    /// How paths are put into their canonical form.
    pub path_options: PathOptions,
}

/// Why a request's target or framing has no single reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRefusal {
    /// Several `Content-Length` headers, or one that is not a plain decimal number.
    Framing,
    /// Several `Host` headers, one that is no host, none, one that disagrees with an
    /// absolute-form target, or an absolute-form target of the other scheme.
    Host,
    /// The path has no canonical form (an absolute-form target without a host included).
    Path(PathRefusal),
}

/// What the upstream must get instead of what the client wrote; both `None` (nothing
/// allocated) when the request was already canonical.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Target {
    /// The target to send: the canonical path and the query as sent, in origin form.
    pub target: Option<String>,
    /// The canonical host, when the `Host` header spells it otherwise or is missing (an
    /// absolute-form target named it).
    pub host: Option<String>,
}

/// Reads the target of a request whose parsed URI is `uri`, sent as `raw` (the bytes of the
/// request line's target), with these `headers`: `Ok` with what must be rewritten (see
/// [`Target`]), or why the request has no single reading.
pub fn read_target(
    uri: &Uri,
    raw: &[u8],
    headers: &HeaderMap,
    listener: Listener,
) -> Result<Target, TargetRefusal> {
    check_framing(headers)?;
    let absolute_form = !raw.starts_with(b"/");
    if !absolute_form
        && uri
            .scheme_str()
            .is_some_and(|s| s != "http" && s != "https")
    {
        // An HTTP/2 `:scheme` that is no web scheme: nothing to route it by.
        return Err(TargetRefusal::Host);
    }
    let authority = if absolute_form {
        Some(authority_of(raw).ok_or(TargetRefusal::Path(PathRefusal::NotAbsolute))?)
    } else {
        uri.authority().map(|a| a.as_str())
    };
    if absolute_form && !scheme_matches(raw, listener.tls) {
        // `https://…` on the plain listener (or the reverse): the client and the upstream
        // would disagree on what was asked for.
        return Err(TargetRefusal::Host);
    }
    if absolute_form && !headers.contains_key(HOST) {
        // RFC 9112 §3.2: an HTTP/1.1 request without `Host` is a 400, whatever its target
        // says (an absolute-form target's authority is no substitute).
        return Err(TargetRefusal::Host);
    }
    let default_port = if listener.tls { 443 } else { 80 };
    let (host, as_sent) =
        request_host(headers, authority, default_port).map_err(|()| TargetRefusal::Host)?;
    let mut read = Target::default();
    // Routes judge the canonical host, and the upstream receives it.
    if !as_sent {
        read.host = Some(host.into_owned());
    }
    let path = canonical_path(uri.path().as_bytes(), listener.path_options)
        .map_err(TargetRefusal::Path)?;
    let as_sent = uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str().as_bytes() == raw);
    if matches!(path, Cow::Borrowed(_)) && as_sent {
        return Ok(read);
    }
    let mut target = path.into_owned();
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    read.target = Some(target);
    Ok(read)
}

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
fn check_framing(headers: &HeaderMap) -> Result<(), TargetRefusal> {
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    let Some(length) = lengths.next() else {
        return Ok(());
    };
    let digits = !length.is_empty() && length.as_bytes().iter().all(u8::is_ascii_digit);
    if lengths.next().is_some() || !digits {
        return Err(TargetRefusal::Framing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Listener = Listener {
        tls: false,
        path_options: PathOptions {
            merge_slashes: true,
            allow_semicolons: false,
        },
    };
    const TLS: Listener = Listener { tls: true, ..PLAIN };

    fn read(
        raw: &str,
        headers: &[(&str, &str)],
        listener: Listener,
    ) -> Result<Target, TargetRefusal> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        read_target(&raw.parse().expect("uri"), raw.as_bytes(), &map, listener)
    }

    fn rewritten(target: Option<&str>, host: Option<&str>) -> Result<Target, TargetRefusal> {
        Ok(Target {
            target: target.map(str::to_string),
            host: host.map(str::to_string),
        })
    }

    #[test]
    fn a_canonical_request_is_read_without_a_rewrite() {
        assert_eq!(
            read("/a/b?x=1", &[("host", "a.example")], PLAIN),
            rewritten(None, None)
        );
        assert_eq!(
            read(
                "/a",
                &[("host", "a.example"), ("content-length", "12")],
                PLAIN
            ),
            rewritten(None, None)
        );
    }

    #[test]
    fn paths_and_hosts_are_put_in_canonical_form() {
        assert_eq!(
            read("/a/../%61dmin?q=/../x", &[("host", "a.example")], PLAIN),
            rewritten(Some("/admin?q=/../x"), None)
        );
        assert_eq!(
            read("/a", &[("host", "Admin.Example.:80")], PLAIN),
            rewritten(None, Some("admin.example"))
        );
        assert_eq!(
            read("/a", &[("host", "a.example:443")], TLS),
            rewritten(None, Some("a.example"))
        );
        // Absolute form: forwarded in origin form; without `Host` it is refused (RFC 9112
        // §3.2), its authority no substitute.
        assert_eq!(
            read("http://a.example/x/./y", &[("host", "a.example")], PLAIN),
            rewritten(Some("/x/y"), None)
        );
        assert_eq!(
            read("HTTPS://a.example/x", &[("host", "A.example")], TLS),
            rewritten(Some("/x"), Some("a.example"))
        );
        assert_eq!(
            read("HTTPS://a.example/x", &[], TLS),
            Err(TargetRefusal::Host)
        );
    }

    /// An HTTP/2 request as the engine presents it: the URI built from `:scheme`,
    /// `:authority` and `:path`, and `:path` as the raw target.
    fn read_h2(
        scheme: &str,
        authority: &str,
        path: &str,
        headers: &[(&str, &str)],
        listener: Listener,
    ) -> Result<Target, TargetRefusal> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        let uri: Uri = format!("{scheme}://{authority}{path}")
            .parse()
            .expect("uri");
        read_target(&uri, path.as_bytes(), &map, listener)
    }

    #[test]
    fn http2_authority_and_host_name_one_host() {
        // `:authority` alone is the host, and the upstream gets it in `Host`.
        assert_eq!(
            read_h2("https", "a.example", "/x", &[], TLS),
            rewritten(None, Some("a.example"))
        );
        assert_eq!(
            read_h2("http", "A.Example.:80", "/x", &[], PLAIN),
            rewritten(None, Some("a.example"))
        );
        // Both, naming the same host in any spelling: accepted.
        assert_eq!(
            read_h2("https", "a.example", "/x", &[("host", "a.example")], TLS),
            rewritten(None, None)
        );
        assert_eq!(
            read_h2(
                "https",
                "a.example:443",
                "/x",
                &[("host", "A.example")],
                TLS
            ),
            rewritten(None, Some("a.example"))
        );
        // The path is put in canonical form as on HTTP/1.1.
        assert_eq!(
            read_h2("https", "a.example", "/p/../%61dmin?q=1", &[], TLS),
            rewritten(Some("/admin?q=1"), Some("a.example"))
        );
        // `:scheme` is not the listener's: still one reading (it is never forwarded).
        assert_eq!(
            read_h2("https", "a.example", "/x", &[("host", "a.example")], PLAIN),
            rewritten(None, None)
        );
    }

    #[test]
    fn http2_requests_without_a_single_reading_are_refused() {
        for (scheme, authority, headers) in [
            ("https", "a.example", vec![("host", "b.example")]),
            ("https", "a.example", vec![("host", "a.example:8443")]),
            (
                "https",
                "a.example",
                vec![("host", "a.example"), ("host", "a.example")],
            ),
            ("https", "a..example", vec![]),
            ("ftp", "a.example", vec![("host", "a.example")]),
        ] {
            assert_eq!(
                read_h2(scheme, authority, "/x", &headers, TLS),
                Err(TargetRefusal::Host),
                "{scheme}://{authority} {headers:?}"
            );
        }
        assert_eq!(
            read_h2("https", "a.example", "/a/../../b", &[], TLS),
            Err(TargetRefusal::Path(PathRefusal::AboveRoot))
        );
    }

    #[test]
    fn what_has_no_single_reading_is_refused() {
        let host = ("host", "a.example");
        for (raw, headers, listener, refusal) in [
            (
                "/a",
                vec![host, ("content-length", "4,4")],
                PLAIN,
                TargetRefusal::Framing,
            ),
            (
                "/a",
                vec![host, ("content-length", "+4")],
                PLAIN,
                TargetRefusal::Framing,
            ),
            (
                "/a",
                vec![host, ("content-length", "")],
                PLAIN,
                TargetRefusal::Framing,
            ),
            (
                "/a",
                vec![host, ("content-length", "4"), ("content-length", "4")],
                PLAIN,
                TargetRefusal::Framing,
            ),
            ("/a", vec![], PLAIN, TargetRefusal::Host),
            (
                "/a",
                vec![host, ("host", "b.example")],
                PLAIN,
                TargetRefusal::Host,
            ),
            (
                "/a",
                vec![("host", "a..example")],
                PLAIN,
                TargetRefusal::Host,
            ),
            ("/a", vec![("host", "0x7f.1")], PLAIN, TargetRefusal::Host),
            (
                "https://a.example/x",
                vec![host],
                PLAIN,
                TargetRefusal::Host,
            ),
            ("http://a.example/x", vec![host], TLS, TargetRefusal::Host),
            ("http://b.example/x", vec![host], PLAIN, TargetRefusal::Host),
            (
                "/a/../../b",
                vec![host],
                PLAIN,
                TargetRefusal::Path(PathRefusal::AboveRoot),
            ),
            (
                "/a%2Fb",
                vec![host],
                PLAIN,
                TargetRefusal::Path(PathRefusal::EncodedSlash),
            ),
        ] {
            assert_eq!(
                read(raw, &headers, listener),
                Err(refusal),
                "{raw} {headers:?}"
            );
        }
    }
}
