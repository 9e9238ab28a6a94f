//! Route matching: longest path prefix on segment boundaries, host-specific routes before
//! any-host routes of the same length; round-robin over a route's upstreams.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::{Route, Upstream};

/// An upstream with its address resolved at start, so no request waits on DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUpstream {
    /// The socket address.
    pub addr: std::net::SocketAddr,
    /// Connect with TLS.
    pub tls: bool,
    /// SNI and certificate name.
    pub sni: String,
}

/// The routes, in match order, each with its resolved upstreams and a round-robin counter.
pub struct RouteTable {
    routes: Vec<(Route, Vec<ResolvedUpstream>, AtomicUsize)>,
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

fn resolve(upstream: &Upstream) -> Result<ResolvedUpstream, String> {
    use std::net::ToSocketAddrs;
    let addr = upstream
        .address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", upstream.address))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", upstream.address))?;
    Ok(ResolvedUpstream {
        addr,
        tls: upstream.tls,
        sni: upstream.sni.clone(),
    })
}

/// True when `path` is `prefix` or continues it at a `/` boundary.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl RouteTable {
    /// A table of `routes` (already sorted longest prefix first by the config), resolving
    /// upstream host names once. The error names the route and the upstream.
    pub fn new(routes: Vec<Route>) -> Result<Self, String> {
        let mut table = Vec::with_capacity(routes.len());
        for route in routes {
            let resolved = route
                .upstreams
                .iter()
                .map(resolve)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("routes[{}].upstream: {e}", route.index))?;
            table.push((route, resolved, AtomicUsize::new(0)));
        }
        Ok(RouteTable { routes: table })
    }

    /// All routes.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().map(|(r, _, _)| r)
    }

    /// The position of the first route matching `host` (port and case ignored) and `path`.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(strip_port);
        self.routes.iter().position(|(route, _, _)| {
            let host_ok = match (&route.host, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && prefix_matches(&route.path, path)
        })
    }

    /// The route at `index`.
    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index).map(|(r, _, _)| r)
    }

    /// The next upstream of the route at `index`, round-robin.
    pub fn next_upstream(&self, index: usize) -> Option<&ResolvedUpstream> {
        let (_, upstreams, counter) = self.routes.get(index)?;
        if upstreams.is_empty() {
            return None;
        }
        let n = counter.fetch_add(1, Ordering::Relaxed);
        upstreams.get(n % upstreams.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteAuth;

    fn route(path: &str, host: Option<&str>) -> Route {
        Route {
            index: 0,
            path: path.into(),
            host: host.map(str::to_string),
            upstreams: vec![
                Upstream {
                    address: "127.0.0.1:1".into(),
                    tls: false,
                    sni: "a".into(),
                },
                Upstream {
                    address: "127.0.0.2:1".into(),
                    tls: false,
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
                refresh: false,
                refresh_before_expiry_seconds: 0,
            },
            identity_headers: vec![],
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
            Some(0)
        );
        assert_eq!(table.find(Some("ADMIN.example"), "/api/admin"), Some(0));
        assert_eq!(table.find(Some("other"), "/api/admin/x"), Some(1));
        assert_eq!(table.find(None, "/api/administrator"), Some(2));
        assert_eq!(table.find(None, "/apix"), Some(3));
        assert_eq!(table.find(None, "/"), Some(3));
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("host"), "host");
    }

    #[test]
    fn upstreams_rotate() {
        let table = RouteTable::new(vec![route("/", None)]).expect("table");
        let a = table.next_upstream(0).expect("a").addr;
        let b = table.next_upstream(0).expect("b").addr;
        assert_ne!(a, b);
        assert_eq!(table.next_upstream(0).expect("a").addr, a);
    }
}
