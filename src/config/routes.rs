//! Validation of `routes:` and `paths:`: each route's canonical path, upstreams, policy and
//! identity headers, every problem reported with its path (`routes[2].auth.roles[0]`).

use std::collections::HashSet;

use gatehouse_plugin_api::model::Application;
use http::HeaderName;

use super::raw::{RawAuth, RawForwardAuth, RawPaths, RawRoute};
use super::sections::{self, Problems};
use super::{ForwardAuth, IdentityHeader, Route, RouteAuth, TokenPolicy, Upstream};
use crate::request::canonical::{canonical_path, PathOptions};
use crate::request::host::{canonical_authority, parse_port, split_authority};
use crate::request::REQUEST_VIEW_HEADERS;

/// Headers a route may not set from claims: they carry credentials, control the connection
/// or the message's framing, or are set by the gateway itself (the forwarding headers) or by
/// proxies on the way (a second line of one of these would reach an HTTP/1 upstream beside
/// the gateway's).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "host",
    "connection",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "te",
    "trailer",
    "expect",
    "max-forwards",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    // (The forwarding headers the gateway sets are among the `REQUEST_VIEW_HEADERS`.)
    "via",
];

/// Headers of a forward-auth decision's own answer (besides every `X-Gatehouse-…` header),
/// which a route may not set from claims while forward-auth is on: front proxies hand some of
/// them to the browser (`Set-Cookie`) or act on them.
pub const DECISION_ANSWER_HEADERS: &[&str] = &[
    "set-cookie",
    "location",
    "www-authenticate",
    "retry-after",
    "cache-control",
    "content-type",
];

/// How request paths are put into their canonical form (`paths:`), FusionAuth-neutral defaults:
/// slashes merged, `;` parameters refused.
pub(super) fn path_options(raw: &RawPaths) -> PathOptions {
    PathOptions {
        merge_slashes: raw.merge_slashes.unwrap_or(true),
        allow_semicolons: raw.allow_semicolons.unwrap_or(false),
    }
}

/// The issuers a route may name: trusted issuers (`issuers:`) and the tenants' own.
pub(super) struct KnownIssuers {
    /// The trusted issuers' `iss`.
    pub remote: Vec<String>,
    /// The tenants' issuers (the gateway's own key ring).
    pub own: Vec<String>,
}

/// The validated routes: the routes naming a host first, then the others, each longest prefix
/// first. With `decisions` (forward-auth mode is on, at this endpoint path) a route may leave
/// out its upstream: it is then only judged in forward-auth decisions, never proxied; and a
/// route may not set from claims a header of the decisions' own answers
/// ([`DECISION_ANSWER_HEADERS`]), nor proxy a path at or under the endpoint, which never
/// reaches it.
pub(super) fn routes(
    p: &mut Problems,
    raw: &[RawRoute],
    applications: &[Application],
    options: PathOptions,
    known: &KnownIssuers,
    decisions: Option<&str>,
) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut seen = HashSet::new();
    for (index, r) in raw.iter().enumerate() {
        let route = route(p, index, r, applications, options, known, decisions);
        if !seen.insert((route.host.clone(), route.path.clone())) {
            p.add(
                format!("routes[{index}].path"),
                "another route has the same host and path",
            );
        }
        routes.push(route);
    }
    // A request to a host some route names is served by that host's routes first, as a
    // name-based upstream serves that host's site: an any-host route with a longer path must
    // not take `/pub/x` on `admin.example` away from `admin.example`'s `/` route.
    routes.sort_by(|a, b| {
        b.host
            .is_some()
            .cmp(&a.host.is_some())
            .then(b.path.len().cmp(&a.path.len()))
    });
    routes
}

/// One route, problems reported under `routes[index]`; `decisions`: see [`routes`].
fn route(
    p: &mut Problems,
    index: usize,
    r: &RawRoute,
    applications: &[Application],
    options: PathOptions,
    known: &KnownIssuers,
    decisions: Option<&str>,
) -> Route {
    let path = format!("routes[{index}]");
    let route_path = canonical_route_path(p, &path, &r.path, options);
    let upstreams = upstreams(p, &path, r, decisions.is_some());
    if let Some(endpoint) = decisions.filter(|e| !upstreams.is_empty() && is_under(&route_path, e))
    {
        p.add(
            format!("{path}.path"),
            format!("is at or under forwardAuth.path ({endpoint}): requests to it are forward-auth decisions and never reach its upstream"),
        );
    }
    Route {
        index,
        path: route_path,
        host: r.host.as_ref().map(|h| route_host(p, &path, h)),
        upstreams,
        auth: match &r.auth {
            None => RouteAuth::default_required(),
            Some(auth) => route_auth(p, &path, auth, applications, known),
        },
        identity_headers: identity_headers(p, &path, r, decisions.is_some()),
        case_sensitive: r.case_sensitive.unwrap_or(true),
    }
}

/// The canonical form of a route's host (lower case, no trailing dot; see
/// [`crate::request::host`]), so it matches every spelling of the host requests can use; a
/// problem at `path.host` when it is not a host name.
fn route_host(p: &mut Problems, path: &str, raw: &str) -> String {
    match canonical_authority(raw, 80) {
        Some(host) => host.into_owned(),
        None => {
            p.add(format!("{path}.host"), "is not a host name");
            raw.to_ascii_lowercase()
        }
    }
}

/// The canonical form of a route's path, or a problem at `path`: a route must name a path
/// requests can have, or it would never match (or match more than it says).
fn canonical_route_path(p: &mut Problems, path: &str, raw: &str, options: PathOptions) -> String {
    if !raw.starts_with('/') {
        p.add(format!("{path}.path"), "must start with /");
        return raw.to_string();
    }
    match canonical_path(raw.as_bytes(), options) {
        Ok(canonical) => canonical.into_owned(),
        Err(refusal) => {
            p.add(
                format!("{path}.path"),
                format!("has no canonical form: {}", refusal.message()),
            );
            raw.to_string()
        }
    }
}

/// The route's upstreams (`upstream` or `upstreams`, exactly one of them); none only when
/// `decisions` allows a route judged in forward-auth decisions alone.
fn upstreams(p: &mut Problems, path: &str, r: &RawRoute, decisions: bool) -> Vec<Upstream> {
    let urls: Vec<(String, &String)> = match (&r.upstream, r.upstreams.is_empty()) {
        (Some(u), true) => vec![(format!("{path}.upstream"), u)],
        (None, false) => r
            .upstreams
            .iter()
            .enumerate()
            .map(|(j, u)| (format!("{path}.upstreams[{j}]"), u))
            .collect(),
        (Some(_), false) => {
            p.add(path, "give upstream or upstreams, not both");
            Vec::new()
        }
        (None, true) if decisions => Vec::new(),
        (None, true) => {
            p.add(
                format!("{path}.upstream"),
                "a route needs an upstream (only with forwardAuth: configured may a route leave it out, to be judged in decisions only)",
            );
            Vec::new()
        }
    };
    let mut upstreams = Vec::new();
    for (upstream_path, url) in urls {
        match parse_upstream(url) {
            Ok(u) => upstreams.push(u),
            Err(e) => p.add(upstream_path, e),
        }
    }
    upstreams
}

/// Prefixes of paths the gateway serves itself (the health check, the plugins' APIs): the
/// forward-auth endpoint may not be one of them.
const BUILTIN_PATHS: &[&str] = &["/health", "/api", "/.well-known"];

/// The validated `forwardAuth:` section: a canonical path of its own (not `/`, not ending in
/// `/`, not the health check or under a plugin's prefix) and at least one trusted proxy.
pub(super) fn forward_auth(
    p: &mut Problems,
    raw: &RawForwardAuth,
    options: PathOptions,
) -> ForwardAuth {
    let path = canonical_route_path(p, "forwardAuth", &raw.path, options);
    if path.starts_with('/') && (path == "/" || path.ends_with('/')) {
        p.add(
            "forwardAuth.path",
            "must name a path of its own, such as /_gatehouse/auth (not / nor ending in /)",
        );
    }
    if BUILTIN_PATHS.iter().any(|builtin| {
        path.eq_ignore_ascii_case(builtin)
            || path
                .get(..builtin.len() + 1)
                .is_some_and(|head| head.eq_ignore_ascii_case(&format!("{builtin}/")))
    }) {
        p.add(
            "forwardAuth.path",
            "is a path the gateway serves itself (/health, /api/…, /.well-known/…)",
        );
    }
    let trusted_proxies =
        sections::trusted_proxies(p, "forwardAuth.trustedProxies", &raw.trusted_proxies);
    if raw.trusted_proxies.is_empty() {
        p.add(
            "forwardAuth.trustedProxies",
            "list the proxies that ask for decisions (e.g. [127.0.0.1/32, ::1/128]): no one else may",
        );
    }
    ForwardAuth {
        path,
        trusted_proxies,
    }
}

/// Parses an upstream URL, `SCHEME://host[:port]`: `http` (HTTP/1.1), `https` (TLS, HTTP/1.1),
/// `h2c` (HTTP/2 with prior knowledge, no TLS: gRPC servers) or `h2` (TLS, HTTP/2 by ALPN).
/// Returns the upstream, or why the URL is not one.
pub(super) fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("must be an http://, https://, h2c:// or h2:// URL")?;
    let (tls, http2) = match scheme {
        "http" => (false, false),
        "https" => (true, false),
        "h2c" => (false, true),
        "h2" => (true, true),
        _ => return Err(format!("scheme `{scheme}` is not http, https, h2c or h2")),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains('/') || authority.contains('?') {
        return Err("must not have a path (routes forward the request path as is)".into());
    }
    // Never echoed: what comes before an `@` is a user name and password.
    if authority.contains('@') {
        return Err(
            "must not hold credentials (user:password@): give the host and port only".into(),
        );
    }
    const NO_HOST: &str = "has no valid host (a name, an IPv4 address or a bracketed IPv6 address)";
    let (host, port) = split_authority(authority).ok_or(NO_HOST)?;
    let port = match port {
        Some(port) => parse_port(port).ok_or("has a port that is not a number from 1 to 65535")?,
        None if tls => 443,
        None => 80,
    };
    if !is_host(host) {
        return Err(NO_HOST.into());
    }
    let sni = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok(Upstream {
        address: format!("{host}:{port}"),
        tls,
        http2,
        sni,
    })
}

/// True for an upstream host: a bracketed IPv6 address, or a name or IPv4 address of letters,
/// digits, `-`, `_` and `.`.
fn is_host(host: &str) -> bool {
    match host.strip_prefix('[') {
        Some(inner) => inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok()),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
    }
}

impl RouteAuth {
    /// The policy of a route without `auth:`: a valid token is required, any application.
    fn default_required() -> RouteAuth {
        RouteAuth {
            enabled: true,
            required: true,
            application_id: None,
            application_tenant_id: None,
            roles: Vec::new(),
            login_url: None,
            login_path: None,
            refresh: false,
            refresh_before_expiry_seconds: 0,
            policy: TokenPolicy::default(),
            allow_preflight: false,
        }
    }
}

/// A route's validated `auth:` policy.
fn route_auth(
    p: &mut Problems,
    path: &str,
    a: &RawAuth,
    applications: &[Application],
    known: &KnownIssuers,
) -> RouteAuth {
    check_auth_switches(p, path, a);
    let policy = token_policy(p, path, a, known);
    // A route for trusted issuers alone may name an application only they know.
    let remote_only = !a.issuers.is_empty() && !a.issuers.iter().any(|i| known.own.contains(i));
    let application = a.application_id.and_then(|id| {
        let found = applications.iter().find(|app| app.id == id);
        if found.is_none() && !remote_only {
            p.add(
                format!("{path}.auth.applicationId"),
                "no application with this id",
            );
        }
        found
    });
    if let Some(app) = application {
        check_roles(p, path, &a.roles, app);
    }
    if let Some(url) = &a.login_url {
        if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/')) {
            p.add(
                format!("{path}.auth.loginUrl"),
                "must be an absolute URL or a path starting with /",
            );
        }
    }
    let enabled = a.enabled.unwrap_or(true);
    RouteAuth {
        enabled,
        required: enabled && a.required.unwrap_or(true),
        application_id: a.application_id,
        application_tenant_id: application.map(|app| app.tenant_id),
        roles: a.roles.clone(),
        login_url: a.login_url.clone(),
        login_path: None,
        refresh: a.refresh,
        refresh_before_expiry_seconds: a.refresh_before_expiry_seconds.unwrap_or(0),
        policy,
        allow_preflight: enabled && a.allow_preflight,
    }
}

/// The route's issuer, audience and claim checks: each issuer named must be a trusted issuer
/// or a tenant's, no audience blank, every claim path made of names.
fn token_policy(p: &mut Problems, path: &str, a: &RawAuth, known: &KnownIssuers) -> TokenPolicy {
    for (j, issuer) in a.issuers.iter().enumerate() {
        if !known.remote.contains(issuer) && !known.own.contains(issuer) {
            p.add(
                format!("{path}.auth.issuers[{j}]"),
                "no issuer with this name: declare it under issuers: or name a tenant's issuer",
            );
        }
    }
    for (j, audience) in a.audiences.iter().enumerate() {
        if audience.trim().is_empty() {
            p.add(format!("{path}.auth.audiences[{j}]"), "must not be blank");
        }
    }
    for claim in a.claims.keys() {
        if claim.split('.').any(|segment| segment.trim().is_empty()) {
            p.add(
                format!("{path}.auth.claims.{claim}"),
                "must be a claim name or a dotted path such as realm_access.roles",
            );
        }
    }
    TokenPolicy {
        issuers: a.issuers.clone(),
        audiences: a.audiences.clone(),
        claims: a
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Settings that contradict each other: a disabled policy with checks, a refresh lead time
/// out of range or without refresh.
fn check_auth_switches(p: &mut Problems, path: &str, a: &RawAuth) {
    let checks_something = a.required == Some(true)
        || a.application_id.is_some()
        || !a.roles.is_empty()
        || a.login_url.is_some()
        || a.refresh
        || !a.issuers.is_empty()
        || !a.audiences.is_empty()
        || !a.claims.is_empty();
    if a.enabled == Some(false) && checks_something {
        p.add(
            format!("{path}.auth.enabled"),
            "a route with enabled: false validates nothing: remove required, applicationId, roles, loginUrl, refresh, issuers, audiences and claims",
        );
    }
    if a.refresh_before_expiry_seconds
        .is_some_and(|s| !(0..=86_400).contains(&s))
    {
        p.add(
            format!("{path}.auth.refreshBeforeExpirySeconds"),
            "must be between 0 and 86400",
        );
    }
    if a.refresh_before_expiry_seconds.is_some() && !a.refresh {
        p.add(
            format!("{path}.auth.refreshBeforeExpirySeconds"),
            "only applies with refresh: true",
        );
    }
}

/// Each required role must be one of the application's.
fn check_roles(p: &mut Problems, path: &str, roles: &[String], app: &Application) {
    for (j, role) in roles.iter().enumerate() {
        if !app.roles.iter().any(|ar| &ar.name == role) {
            p.add(
                format!("{path}.auth.roles[{j}]"),
                format!("application {} has no role with this name", app.name),
            );
        }
    }
}

/// True when route path `path` is `endpoint` or under it (`{endpoint}/…`, `{endpoint};…`).
fn is_under(path: &str, endpoint: &str) -> bool {
    path.strip_prefix(endpoint)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with(';'))
}

/// True for a header a forward-auth decision's answer carries itself: setting it from a claim
/// would let the claim speak for the gateway (a `Set-Cookie`, or the headers the nginx recipe
/// turns into cookies and redirects).
fn is_decision_answer_header(name: &str) -> bool {
    DECISION_ANSWER_HEADERS.contains(&name) || name.starts_with("x-gatehouse-")
}

/// The route's identity headers: valid names of letters, digits and `-` only, not reserved
/// (nor one of the [`REQUEST_VIEW_HEADERS`]), a claim named; with
/// `decisions`, none a decision's answer carries itself ([`is_decision_answer_header`]).
fn identity_headers(
    p: &mut Problems,
    path: &str,
    r: &RawRoute,
    decisions: bool,
) -> Vec<IdentityHeader> {
    let mut headers: Vec<IdentityHeader> = Vec::new();
    for (header, claim) in &r.identity_headers {
        let header_path = format!("{path}.identityHeaders.{header}");
        match HeaderName::from_bytes(header.as_bytes()) {
            Ok(name) if RESERVED_HEADERS.contains(&name.as_str()) => {
                p.add(&header_path, "this header cannot be set from a claim")
            }
            Ok(name) if REQUEST_VIEW_HEADERS.contains(&name.as_str()) => p.add(
                &header_path,
                "this header tells the upstream the request's path, method, scheme, host or \
                 client address: it cannot be set from a claim",
            ),
            // Header names are case-insensitive: two spellings would be two header lines.
            Ok(name) if headers.iter().any(|h| h.name == name) => p.add(
                &header_path,
                "this header is already set by another spelling of its name on this route",
            ),
            Ok(name) if decisions && is_decision_answer_header(name.as_str()) => p.add(
                &header_path,
                "this header is part of the forward-auth answer and cannot be set from a claim",
            ),
            // The gateway strips a client's header of such a name (frameworks read `_` or `.`
            // as `-`), but not the client's conventional spelling it would stand for.
            Ok(name)
                if !name
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
            {
                p.add(
                    &header_path,
                    "header names with characters other than letters, digits and - are dropped \
                     on the way upstream: use -",
                )
            }
            Ok(name) => headers.push(IdentityHeader {
                name,
                written: bytes::Bytes::copy_from_slice(header.as_bytes()),
                claim: claim.clone(),
            }),
            Err(_) => p.add(&header_path, "not a valid header name"),
        }
        if claim.trim().is_empty() {
            p.add(header_path, "claim name must not be blank");
        }
    }
    headers
}
