//! What a client request is, read once before any route or plugin sees it, in request order:
//! the framing, target form and canonical host and path ([`target`], over [`host`] and
//! [`canonical`]), the credentials ([`credentials`], through the reader the plugins share) and
//! the client's address ([`client`]); in forward-auth mode, the request a front proxy asks
//! about ([`forwarded`]). Whatever cannot be read one way only is refused here,
//! with a reason the proxy turns into its answer. Plain functions over `http` types: no proxy
//! engine.

pub mod canonical;
pub mod client;
pub mod credentials;
pub mod forwarded;
pub mod host;
pub mod target;

/// Headers that tell an upstream the request's path, method, scheme, host or client address
/// by another name than the request's own (front proxies' and frameworks' conventions: IIS and
/// Symfony take `X-Original-URL` as the path, many frameworks `X-HTTP-Method-Override` as the
/// method, `True-Client-IP` as the client). A client's are never forwarded (the gateway sets
/// its own `X-Forwarded-For` and `X-Forwarded-Proto`; the forward-auth conventions'
/// `X-Forwarded-Uri`/`-Method` and `X-Original-URI`/`-Method` are read only in a decision),
/// and no route may set one from a claim: the upstream would act on another request than the
/// one the policy judged.
pub const REQUEST_VIEW_HEADERS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-original-method",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-real-ip",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-forwarded-protocol",
    "x-url-scheme",
    "front-end-https",
    "x-client-ip",
    "client-ip",
    "proxy-client-ip",
    "wl-proxy-client-ip",
    "x-original-forwarded-for",
    "x-forwarded",
    "forwarded-for",
    "x-remote-ip",
    "x-remote-addr",
    "x-originating-ip",
    "x-envoy-external-address",
    "x-envoy-internal",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-original-host",
    "x-host",
    "x-forwarded-path",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    // The scheme, path and mount point as other stacks pass them on (Tornado and nginx
    // ingress read `X-Scheme`, WSGI servers `X-Script-Name`).
    "x-scheme",
    "x-original-proto",
    "x-request-uri",
    "x-original-path",
    "x-forwarded-url",
    "x-request-url",
    "x-request-path",
    "x-script-name",
    "x-script-uri",
    "x-path-info",
    "script-name",
    "path-info",
];

/// A table of the bytes that are ASCII letters or digits or one of `extra`: one look a byte for
/// the hot path's scans (a canonical path, a conventional header name).
pub(crate) const fn alphanumeric_or(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = (byte as u8).is_ascii_alphanumeric();
        byte += 1;
    }
    let mut at = 0;
    while at < extra.len() {
        table[extra[at] as usize] = true;
        at += 1;
    }
    table
}

/// The one value of header `name`: `Ok(None)` when absent, `Err(())` when it is given more than
/// once (two readings of one field).
#[allow(clippy::result_unit_err)]
pub fn only_value(
    headers: &http::HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Result<Option<&http::HeaderValue>, ()> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    match values.next() {
        Some(_) => Err(()),
        None => Ok(first),
    }
}
