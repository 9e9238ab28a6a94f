//! Route matching: longest path prefix on segment boundaries, host-specific routes before
//! any-host routes of the same length; round-robin over a route's upstreams.
//!
//! Upstream host names are resolved at start (an unresolvable name is a start error), and again
//! every [`DNS_REFRESH_INTERVAL`] by [`UpstreamResolver`] on a background thread, so a service
//! whose address changes is followed; requests never wait on DNS. A failed lookup keeps the last
//! good address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{Route, Upstream};

/// How often upstream host names are resolved again.
pub const DNS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// An upstream with its address resolved, so no request waits on DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUpstream {
    /// The socket address.
    pub addr: SocketAddr,
    /// Connect with TLS.
    pub tls: bool,
    /// Speak HTTP/2 (see [`Upstream::http2`]).
    pub http2: bool,
    /// SNI and certificate name.
    pub sni: String,
}

/// One route's upstream addresses, replaced whole when a lookup changes them.
type Addresses = Arc<ArcSwap<Vec<ResolvedUpstream>>>;

/// A route's upstream addresses as requests read them.
enum RouteAddresses {
    /// Every upstream is an IP address: nothing ever changes them.
    Fixed(Vec<ResolvedUpstream>),
    /// Some upstream is a host name: resolved again in the background (see
    /// [`UpstreamResolver`]), which swaps them in whole.
    Resolved(Addresses),
}

/// A route with its resolved upstreams and its round-robin counter.
struct RouteEntry {
    route: Route,
    upstreams: RouteAddresses,
    next: AtomicUsize,
}

/// What a request's host and path select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLookup {
    /// The route at this position.
    Route(usize),
    /// No route matches.
    NoRoute,
    /// The path matches a more specific route in all but case: refused as ambiguous.
    AmbiguousCase,
}

/// The routes, in match order.
pub struct RouteTable {
    routes: Vec<RouteEntry>,
    /// True when some route names a host (see [`RouteTable::has_hosts`]).
    hosts: bool,
}

/// `host` without a `:port` suffix and without IPv6 brackets.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Resolves `host:port` to its addresses (never none), in the resolver's order of preference.
type Lookup<'a> = dyn Fn(&str) -> Result<Vec<SocketAddr>, String> + 'a;

/// [`Lookup`] by the system resolver.
fn system_lookup(address: &str) -> Result<Vec<SocketAddr>, String> {
    use std::net::ToSocketAddrs;
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("{address} resolves to no address"));
    }
    Ok(addresses)
}

/// The address to use among `answers`: `last` while it is still among them (so a name whose
/// answers rotate does not move the upstream, and its pooled connections, at every lookup),
/// else the first.
fn pick(answers: &[SocketAddr], last: Option<SocketAddr>) -> Option<SocketAddr> {
    match last {
        Some(last) if answers.contains(&last) => Some(last),
        _ => answers.first().copied(),
    }
}

/// True when some upstream of `route` is a host name (not an IP address and port).
fn has_host_name(route: &Route) -> bool {
    route
        .upstreams
        .iter()
        .any(|u| u.address.parse::<SocketAddr>().is_err())
}

/// Resolves every upstream of a route with `lookup`.
fn resolve_all(
    upstreams: &[Upstream],
    lookup: &Lookup<'_>,
) -> Result<Vec<ResolvedUpstream>, String> {
    upstreams
        .iter()
        .map(|upstream| {
            let answers = lookup(&upstream.address)?;
            Ok(ResolvedUpstream {
                addr: pick(&answers, None)
                    .ok_or_else(|| format!("{} resolves to no address", upstream.address))?,
                tls: upstream.tls,
                http2: upstream.http2,
                sni: upstream.sni.clone(),
            })
        })
        .collect()
}

/// Every upstream of `routes` whose host name the system resolver cannot resolve now, each
/// as `routes[N].upstream: cannot resolve …` (`gatehouse check` warns with them; `serve`
/// would not start). Empty when all resolve.
pub fn unresolvable(routes: &[Route]) -> Vec<String> {
    unresolvable_with(routes, &system_lookup)
}

fn unresolvable_with(routes: &[Route], lookup: &Lookup<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    for route in routes {
        for upstream in &route.upstreams {
            if let Err(e) = lookup(&upstream.address) {
                problems.push(format!("routes[{}].upstream: {e}", route.index));
            }
        }
    }
    problems.sort();
    problems
}

/// True when `prefix` matches `path` on a segment boundary (ignoring ASCII case unless
/// `case_sensitive`). A `;` ends a segment too: with path parameters allowed, `/admin;x` is
/// `/admin` to Tomcat and others, so it must meet `/admin`'s policy.
fn prefix_matches(prefix: &str, path: &str, case_sensitive: bool) -> bool {
    let Some(head) = path.as_bytes().get(..prefix.len()) else {
        return false;
    };
    let starts = if case_sensitive {
        head == prefix.as_bytes()
    } else {
        head.eq_ignore_ascii_case(prefix.as_bytes())
    };
    starts
        && (prefix.ends_with('/')
            || matches!(path.as_bytes().get(prefix.len()), None | Some(b'/' | b';')))
}

impl RouteTable {
    /// Resolves every upstream; the routes must already be in match order. The error names the
    /// route whose upstream does not resolve.
    pub fn new(routes: Vec<Route>) -> Result<Self, String> {
        Self::with_lookup(routes, &system_lookup)
    }

    fn with_lookup(routes: Vec<Route>, lookup: &Lookup<'_>) -> Result<Self, String> {
        let mut table = Vec::with_capacity(routes.len());
        for route in routes {
            let resolved = resolve_all(&route.upstreams, lookup)
                .map_err(|e| format!("routes[{}].upstream: {e}", route.index))?;
            let upstreams = match has_host_name(&route) {
                false => RouteAddresses::Fixed(resolved),
                true => RouteAddresses::Resolved(Arc::new(ArcSwap::from_pointee(resolved))),
            };
            table.push(RouteEntry {
                route,
                upstreams,
                next: AtomicUsize::new(0),
            });
        }
        let hosts = table.iter().any(|e| e.route.host.is_some());
        Ok(RouteTable {
            routes: table,
            hosts,
        })
    }

    /// The routes in match order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|e| &e.route)
    }

    /// The first route matching `host` (case-insensitive, port ignored) and `path`, which must
    /// be the request's canonical path.
    ///
    /// A path that a more specific case-sensitive route matches in all but case (`/Admin` with
    /// a route `/admin`) is [`RouteLookup::AmbiguousCase`]: an upstream that treats paths
    /// case-insensitively would serve that route's resource under another route's policy.
    pub fn find(&self, host: Option<&str>, path: &str) -> RouteLookup {
        let host = host.map(strip_port);
        let host_ok = |route: &Route| match (&route.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        };
        let Some(index) = self.routes.iter().position(|RouteEntry { route, .. }| {
            host_ok(route) && prefix_matches(&route.path, path, route.case_sensitive)
        }) else {
            return RouteLookup::NoRoute;
        };
        let shadowed = self.routes[..index].iter().any(|RouteEntry { route, .. }| {
            host_ok(route) && prefix_matches(&route.path, path, false)
        });
        if shadowed {
            RouteLookup::AmbiguousCase
        } else {
            RouteLookup::Route(index)
        }
    }

    /// True when some route names a host; when none does, [`RouteTable::find`] matches any
    /// host (`None` included) alike, and the caller need not read the request's.
    pub fn has_hosts(&self) -> bool {
        self.hosts
    }

    /// The route at `index`.
    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index).map(|e| &e.route)
    }

    /// The next upstream of the route at `index`, round-robin, with its current address.
    pub fn next_upstream(&self, index: usize) -> Option<ResolvedUpstream> {
        let entry = self.routes.get(index)?;
        let next = |upstreams: &[ResolvedUpstream]| match upstreams.len() {
            0 | 1 => upstreams.first().cloned(),
            len => {
                let n = entry.next.fetch_add(1, Ordering::Relaxed);
                upstreams.get(n % len).cloned()
            }
        };
        match &entry.upstreams {
            RouteAddresses::Fixed(upstreams) => next(upstreams),
            RouteAddresses::Resolved(addresses) => next(&addresses.load()),
        }
    }

    /// What re-resolves this table's host names; `None` when every upstream is an IP address.
    pub fn resolver(&self) -> Option<UpstreamResolver> {
        let routes: Vec<(usize, Vec<Upstream>, Addresses)> = self
            .routes
            .iter()
            .filter_map(|e| match &e.upstreams {
                RouteAddresses::Fixed(_) => None,
                RouteAddresses::Resolved(addresses) => {
                    Some((e.route.index, e.route.upstreams.clone(), addresses.clone()))
                }
            })
            .collect();
        (!routes.is_empty()).then_some(UpstreamResolver { routes })
    }
}

/// Resolves the upstream host names of a [`RouteTable`] again; it shares the table's addresses.
pub struct UpstreamResolver {
    /// Per route with a host name: its index in the configuration, its upstreams, its addresses.
    routes: Vec<(usize, Vec<Upstream>, Addresses)>,
}

impl UpstreamResolver {
    /// Resolves again with the system resolver: see [`UpstreamResolver::refresh_with`].
    pub fn refresh(&self) -> Vec<String> {
        self.refresh_with(&system_lookup)
    }

    /// Resolves every upstream with `lookup` and swaps in a route's addresses when one changed;
    /// an upstream keeps its address while the name still resolves to it, and keeps its last
    /// good address when the lookup fails. Returns one message per failed lookup.
    fn refresh_with(&self, lookup: &Lookup<'_>) -> Vec<String> {
        let mut failures = Vec::new();
        for (index, upstreams, addresses) in &self.routes {
            let current = addresses.load();
            let resolved: Vec<ResolvedUpstream> = upstreams
                .iter()
                .zip(current.iter())
                .map(|(upstream, last)| match lookup(&upstream.address) {
                    Ok(answers) => ResolvedUpstream {
                        addr: pick(&answers, Some(last.addr)).unwrap_or(last.addr),
                        ..last.clone()
                    },
                    Err(e) => {
                        failures.push(format!("routes[{index}].upstream: {e}"));
                        last.clone()
                    }
                })
                .collect();
            if **current != resolved {
                tracing::info!(route = index, "upstream addresses changed");
                addresses.store(Arc::new(resolved));
            }
        }
        failures
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::config::RouteAuth;

    /// A route of `path` (and `host`) with two upstreams, auth on, no identity header.
    pub(in crate::proxy) fn route(path: &str, host: Option<&str>) -> Route {
        Route {
            index: 0,
            path: path.into(),
            host: host.map(str::to_string),
            upstreams: vec![
                Upstream {
                    address: "127.0.0.1:1".into(),
                    tls: false,
                    http2: false,
                    sni: "a".into(),
                },
                Upstream {
                    address: "127.0.0.2:1".into(),
                    tls: false,
                    http2: false,
                    sni: "b".into(),
                },
            ],
            auth: RouteAuth {
                enabled: true,
                required: true,
                application_id: None,
                application_tenant_id: None,
                roles: vec![],
                login_url: None,
                login_path: None,
                refresh: false,
                refresh_before_expiry_seconds: 0,
                policy: Default::default(),
                allow_preflight: false,
            },
            identity_headers: vec![],
            case_sensitive: true,
        }
    }

    #[test]
    fn longest_prefix_on_segment_boundaries() {
        let table = RouteTable::new(vec![
            route("/api/admin", Some("admin.example")),
            route("/api/admin", None),
            route("/api", None),
            route("/", None),
        ])
        .expect("table");
        assert_eq!(
            table.find(Some("admin.example:8080"), "/api/admin/x"),
            RouteLookup::Route(0)
        );
        assert_eq!(
            table.find(Some("ADMIN.example"), "/api/admin"),
            RouteLookup::Route(0)
        );
        assert_eq!(
            table.find(Some("other"), "/api/admin/x"),
            RouteLookup::Route(1)
        );
        assert_eq!(
            table.find(None, "/api/administrator"),
            RouteLookup::Route(2)
        );
        assert_eq!(table.find(None, "/apix"), RouteLookup::Route(3));
        assert_eq!(table.find(None, "/"), RouteLookup::Route(3));
        assert_eq!(
            table.find(None, "/API/admin"),
            RouteLookup::AmbiguousCase,
            "case-sensitive by default"
        );
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("host"), "host");
    }

    #[test]
    fn case_insensitive_routes_match_any_case() {
        let mut admin = route("/admin", None);
        admin.case_sensitive = false;
        let table = RouteTable::new(vec![admin, route("/", None)]).expect("table");
        for path in ["/admin", "/ADMIN", "/Admin/x", "/aDmIn/"] {
            assert_eq!(table.find(None, path), RouteLookup::Route(0), "{path}");
        }
        assert_eq!(table.find(None, "/adminx"), RouteLookup::Route(1));
        assert_eq!(table.find(None, "/adm"), RouteLookup::Route(1));
        assert_eq!(
            table.find(None, "/ADMIN;jsessionid=1"),
            RouteLookup::Route(0)
        );
        // A case-sensitive route shadows the case variants of its path.
        let table = RouteTable::new(vec![route("/admin", None), route("/", None)]).expect("t");
        for path in ["/Admin", "/ADMIN/x", "/aDMIN;x"] {
            assert_eq!(table.find(None, path), RouteLookup::AmbiguousCase, "{path}");
        }
        assert_eq!(table.find(None, "/Administrator"), RouteLookup::Route(1));
        assert_eq!(table.find(None, "/other"), RouteLookup::Route(1));
    }

    #[test]
    fn unresolvable_upstreams_are_named_by_their_route() {
        let mut named = route("/a", None);
        named.index = 3;
        named.upstreams = vec![
            Upstream {
                address: "ok.example:80".into(),
                tls: false,
                http2: false,
                sni: "ok.example".into(),
            },
            Upstream {
                address: "gone.example:80".into(),
                tls: false,
                http2: false,
                sni: "gone.example".into(),
            },
        ];
        let lookup = |address: &str| match address {
            "gone.example:80" => Err(format!("cannot resolve {address}: not found")),
            _ => Ok(vec!["127.0.0.1:80".parse().expect("addr")]),
        };
        assert_eq!(
            unresolvable_with(&[named.clone()], &lookup),
            vec!["routes[3].upstream: cannot resolve gone.example:80: not found".to_string()]
        );
        named.upstreams.truncate(1);
        assert!(unresolvable_with(&[named], &lookup).is_empty());
    }

    #[test]
    fn upstreams_rotate() {
        let table = RouteTable::new(vec![route("/", None)]).expect("table");
        let a = table.next_upstream(0).expect("a").addr;
        let b = table.next_upstream(0).expect("b").addr;
        assert_ne!(a, b);
        assert_eq!(table.next_upstream(0).expect("a").addr, a);
    }

    #[test]
    fn host_names_are_resolved_again_and_a_failed_lookup_keeps_the_last_address() {
        let mut named = route("/", None);
        named.upstreams[0].address = "app.internal:8080".into();
        named.upstreams[1].address = "api.internal:9090".into();
        let addr = |text: &str| text.parse::<SocketAddr>().unwrap();
        let answer = std::sync::Mutex::new(Ok(vec![addr("10.0.0.1:8080")]));
        let api_answer = std::sync::Mutex::new(vec![addr("10.0.1.1:9090")]);
        let lookup = |address: &str| -> Result<Vec<SocketAddr>, String> {
            match address {
                "app.internal:8080" => answer.lock().unwrap().clone(),
                "api.internal:9090" => Ok(api_answer.lock().unwrap().clone()),
                other => other
                    .parse()
                    .map(|a| vec![a])
                    .map_err(|_| format!("no {other}")),
            }
        };
        let table =
            RouteTable::with_lookup(vec![named, route("/ip", None)], &lookup).expect("table");
        // One of the route's two upstreams (round-robin) is at `address`.
        let assert_serves = |table: &RouteTable, address: &str| {
            let seen: Vec<String> = (0..2)
                .map(|_| table.next_upstream(0).expect("up").addr.to_string())
                .collect();
            assert!(seen.iter().any(|a| a == address), "{seen:?}");
        };
        let resolver = table.resolver().expect("a route has a host name");
        assert_eq!(
            resolver.routes.len(),
            1,
            "IP-only routes are not looked up again"
        );
        assert_eq!(
            table.next_upstream(0).expect("up").addr.to_string(),
            "10.0.0.1:8080"
        );

        // Rotating answers that still hold the address in use do not move it.
        *answer.lock().unwrap() = Ok(vec![addr("10.0.0.9:8080"), addr("10.0.0.1:8080")]);
        assert!(resolver.refresh_with(&lookup).is_empty());
        assert_serves(&table, "10.0.0.1:8080");
        *answer.lock().unwrap() = Ok(vec![addr("10.0.0.2:8080")]);
        assert!(resolver.refresh_with(&lookup).is_empty());
        assert_serves(&table, "10.0.0.2:8080");

        *answer.lock().unwrap() = Err("NXDOMAIN".into());
        let failures = resolver.refresh_with(&lookup);
        assert_eq!(failures.len(), 1);
        assert!(
            failures[0].starts_with("routes[0].upstream"),
            "{failures:?}"
        );
        assert_serves(&table, "10.0.0.2:8080");
        // One upstream failing does not hold back another's new address.
        *api_answer.lock().unwrap() = vec![addr("10.0.1.2:9090")];
        assert_eq!(resolver.refresh_with(&lookup).len(), 1);
        assert_serves(&table, "10.0.0.2:8080");
        assert_serves(&table, "10.0.1.2:9090");

        let ip_only = RouteTable::new(vec![route("/", None)]).expect("table");
        assert!(ip_only.resolver().is_none());
    }
}
