//! The client's address, read one way for the whole gateway: the proxy's `X-Forwarded-For` to
//! the upstream, the refresh token's `lastAccessedAddress`, the plugins' requests.
//!
//! A client can write any `X-Forwarded-For` it likes, so the header is believed only as far as
//! the gateway's own trusted proxies vouch for it (`trustedProxies` in the configuration): with
//! none configured, the client is the connection's peer. Behind trusted proxies (a load
//! balancer, an ingress), the hops are read from the right: each hop a trusted proxy appended is
//! skipped, and the first address no trusted proxy owns is the client. A hop that is not an IP
//! address ends the walk at the last trusted hop before it.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address: `peer` itself unless `peer` is one of `trusted`, in which case the
/// rightmost `X-Forwarded-For` hop that is not a trusted proxy (see the module header).
/// An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 peer, or such a hop) is returned
/// as its IPv4 address, so one client has one form whichever way it came. `None` only when
/// there is no peer address (a Unix socket).
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = canonical(peer?);
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut client = peer;
    // Every X-Forwarded-For header is one list, in order; read it from the right (nothing
    // allocated).
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','));
    for hop in hops.rev() {
        let Some(address) = hop_address(hop) else {
            break;
        };
        client = address;
        if !is_trusted(address, trusted) {
            break;
        }
    }
    Some(client)
}

/// True when `address` is in one of the `trusted` ranges (an IPv4-mapped IPv6 address counts
/// as its IPv4 address).
pub fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    let address = canonical(address);
    trusted.iter().any(|net| net.contains(&address))
}

/// The address of one `X-Forwarded-For` hop: an IP address, or an IP with a port
/// (`203.0.113.9:4711`, `[2001:db8::1]:4711`); `None` for anything else (`unknown`, names,
/// obfuscated identifiers).
fn hop_address(hop: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(hop).ok()?.trim();
    let address = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<std::net::SocketAddr>().map(|a| a.ip()))
        .ok()?;
    Some(canonical(address))
}

/// `address`, with an IPv4-mapped IPv6 address as its IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().expect("value"));
        }
        map
    }

    fn nets(ranges: &[&str]) -> Vec<IpNet> {
        ranges.iter().map(|r| r.parse().expect("range")).collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        let forged = headers(&["203.0.113.9"]);
        assert_eq!(
            client_address(Some(ip("198.51.100.7")), &forged, &[]),
            Some(ip("198.51.100.7"))
        );
        // A peer outside the trusted ranges is the client too, whatever it claims.
        assert_eq!(
            client_address(Some(ip("198.51.100.7")), &forged, &nets(&["10.0.0.0/8"])),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(client_address(None, &forged, &[]), None);
    }

    #[test]
    fn a_mapped_peer_is_its_ipv4_address_trusted_or_not() {
        let mapped = Some(ip("::ffff:127.0.0.1"));
        let forged = headers(&["203.0.113.9"]);
        // Not trusted: the peer, in its IPv4 form.
        assert_eq!(client_address(mapped, &forged, &[]), Some(ip("127.0.0.1")));
        // Trusted by its IPv4 range: its hops are read; with none, the proxy itself, as IPv4.
        let trusted = nets(&["127.0.0.0/8"]);
        assert_eq!(
            client_address(mapped, &forged, &trusted),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            client_address(mapped, &headers(&[]), &trusted),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            client_address(mapped, &headers(&["::ffff:127.0.0.2"]), &trusted),
            Some(ip("127.0.0.2"))
        );
        // Other IPv6 addresses are kept as they are.
        for other in ["::1", "2001:db8::1", "::127.0.0.1", "64:ff9b::7f00:1"] {
            assert_eq!(
                client_address(Some(ip(other)), &forged, &[]),
                Some(ip(other))
            );
        }
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.1/32"]);
        let peer = Some(ip("10.0.0.2"));
        for (values, expected) in [
            (vec!["203.0.113.9"], "203.0.113.9"),
            (vec!["203.0.113.9, 10.1.1.1"], "203.0.113.9"),
            // The client's own forged hops, left of the real one, are ignored.
            (vec!["1.1.1.1, 203.0.113.9, 10.1.1.1"], "203.0.113.9"),
            (vec!["1.1.1.1", "203.0.113.9", "192.0.2.1"], "203.0.113.9"),
            (vec!["203.0.113.9:4711"], "203.0.113.9"),
            (vec!["[2001:db8::1]:4711"], "2001:db8::1"),
            (vec!["::ffff:203.0.113.9"], "203.0.113.9"),
            // A hop that is no address ends the walk at the last trusted hop.
            (vec!["203.0.113.9, unknown, 10.1.1.1"], "10.1.1.1"),
            (vec!["unknown"], "10.0.0.2"),
            (vec!["<script>"], "10.0.0.2"),
            // Every hop trusted: the leftmost one.
            (vec!["10.9.9.9, 10.1.1.1"], "10.9.9.9"),
            (vec![], "10.0.0.2"),
        ] {
            assert_eq!(
                client_address(peer, &headers(&values), &trusted),
                Some(ip(expected)),
                "{values:?}"
            );
        }
    }
}
