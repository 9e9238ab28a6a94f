//! The request's host, read one way only: the one `Host` header or the authority of an
//! absolute-form target, in canonical form. Routes match on it and the upstream receives it.
//!
//! One host has many spellings (`ADMIN.example`, `admin.example.`, `admin.example:80`,
//! `admin.example.:080`); a name-based upstream reads them all as one site, so a route that
//! matched only one of them would be bypassed by the others. The canonical form is lower case,
//! without the trailing dot of a fully qualified name, without the listener's default port, and
//! with IP literals in their standard text. Spellings with no single reading are refused: empty
//! labels (`a..b`, `.a`), two trailing dots, numeric hosts that are no dotted-decimal IPv4
//! address (`0x7f.1`, `2130706433`, `127.000.0.1`), port 0 or ports out of range.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest host name accepted (RFC 1035: 253 characters without the trailing dot).
const MAX_NAME_LENGTH: usize = 253;
/// The longest label accepted (RFC 1035).
const MAX_LABEL_LENGTH: usize = 63;

/// The canonical form of `authority` (`name[:port]` or `[v6]:port`) on a listener whose default
/// port is `default_port` (80, or 443 with TLS).
///
/// Returns the authority itself, borrowed, when it is already canonical (the common case costs
/// no allocation), the canonical form when it is another spelling of a host, and `None` when it
/// is not a host at all or has no single reading.
pub fn canonical_authority(authority: &str, default_port: u16) -> Option<Cow<'_, str>> {
    if is_known_canonical(authority.as_bytes(), default_port) {
        return Some(Cow::Borrowed(authority));
    }
    let (name_as_sent, port_text) = split_authority(authority)?;
    let port = match port_text {
        None => None,
        Some(text) => Some(parse_port(text)?),
    };
    let name = canonical_name(name_as_sent)?;
    let keep_port = port.filter(|p| *p != default_port);
    let port_as_sent = match (port_text, keep_port) {
        (None, None) => true,
        (Some(text), Some(port)) => text.len() == decimal_len(port),
        _ => false,
    };
    if port_as_sent && matches!(name, Cow::Borrowed(_)) && name.len() == name_as_sent.len() {
        return Some(Cow::Borrowed(authority));
    }
    Some(Cow::Owned(match keep_port {
        Some(port) => format!("{name}:{port}"),
        None => name.into_owned(),
    }))
}

/// [`is_plainly_canonical`], remembered for the last authority this thread found canonical: a
/// keep-alive connection's requests name one host, so most requests compare bytes instead of
/// reading the name again. The answer is the same as [`is_plainly_canonical`]'s.
fn is_known_canonical(authority: &[u8], default_port: u16) -> bool {
    /// The longest authority remembered (a name of 253 characters and a port).
    const REMEMBERED_BYTES: usize = 260;
    thread_local! {
        /// The default port and the authority last found canonical under it.
        static LAST: std::cell::RefCell<(u16, Vec<u8>)> =
            const { std::cell::RefCell::new((0, Vec::new())) };
    }
    let remembered = LAST.try_with(|last| {
        let last = last.try_borrow().ok()?;
        Some(!authority.is_empty() && last.0 == default_port && last.1 == authority)
    });
    if let Ok(Some(true)) = remembered {
        return true;
    }
    if !is_plainly_canonical(authority, default_port) {
        return false;
    }
    if authority.len() <= REMEMBERED_BYTES {
        let _ = LAST.try_with(|last| {
            if let Ok(mut last) = last.try_borrow_mut() {
                last.0 = default_port;
                last.1.clear();
                last.1.extend_from_slice(authority);
            }
        });
    }
    true
}

/// The common case in one scan, without allocating: true when `authority` is a lower-case host
/// name whose last label is not numeric, or a dotted-decimal IPv4 address in its one spelling,
/// with no port or a port other than `default_port` written without leading zeros — what
/// [`canonical_authority`] would return unchanged. False means only that the full reading must
/// decide.
fn is_plainly_canonical(authority: &[u8], default_port: u16) -> bool {
    let (name, port) = match authority.iter().position(|&b| b == b':') {
        Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
        None => (authority, None),
    };
    if let Some(port) = port {
        let digits_only = port.iter().all(u8::is_ascii_digit);
        if !(1..=5).contains(&port.len()) || !digits_only || port[0] == b'0' {
            return false;
        }
        let value = port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        if value > u32::from(u16::MAX) || value == u32::from(default_port) {
            return false;
        }
    }
    // A trailing dot is another spelling of the name: the full reading drops it.
    if name.is_empty() || name.len() > MAX_NAME_LENGTH || name.ends_with(b".") {
        return false;
    }
    // Per label: its length, whether it is all digits, and its value as a number.
    let (mut labels, mut length, mut digits, mut value) = (0, 0, true, 0u32);
    let mut octets_valid = true;
    for (i, &byte) in name.iter().enumerate() {
        match byte {
            b'a'..=b'z' | b'-' | b'_' => digits = false,
            b'0'..=b'9' => {
                value = value
                    .saturating_mul(10)
                    .saturating_add(u32::from(byte - b'0'))
            }
            b'.' => {}
            _ => return false,
        }
        if byte != b'.' {
            length += 1;
        }
        if byte == b'.' || i + 1 == name.len() {
            if !(1..=MAX_LABEL_LENGTH).contains(&length) {
                return false;
            }
            let leading_zero =
                length > 1 && name[i + 1 - length - usize::from(byte == b'.')] == b'0';
            octets_valid &= digits && value <= 255 && !leading_zero;
            labels += 1;
            if byte == b'.' {
                (length, digits, value) = (0, true, 0);
            }
        }
    }
    // A numeric last label makes the name an IPv4 address to URL parsers: then it must be one,
    // in its one spelling. A last label such as `0x7f` is left to the full reading.
    let last_numeric = digits;
    let last = name.rsplit(|&b| b == b'.').next().unwrap_or(name);
    if last.len() > 1 && last[0] == b'0' && matches!(last[1], b'x' | b'X') {
        return false;
    }
    !last_numeric || (labels == 4 && octets_valid)
}

/// The authority of an absolute-form `http` or `https` request target
/// (`http://host:port/path`), when it is a host (see [`canonical_authority`]); `None` for any
/// other target.
pub fn authority_of(target: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(target).ok()?;
    let (scheme, rest) = text.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    canonical_authority(authority, 80).map(|_| authority)
}

/// The one canonical host of a request: from its one `Host` header and the authority of its
/// absolute-form target, which must name the same host when both are present.
///
/// Returns the canonical host, and `true` when it is the `Host` header as sent, byte for
/// byte; or `Err(())` for several `Host` headers, one that is no host, two that disagree, or a
/// request (of any HTTP version) without one.
#[allow(clippy::result_unit_err)]
pub fn request_host<'a>(
    headers: &'a http::HeaderMap,
    target_authority: Option<&'a str>,
    default_port: u16,
) -> Result<(Cow<'a, str>, bool), ()> {
    let mut values = headers.get_all(http::header::HOST).iter();
    let header = values.next();
    if values.next().is_some() {
        return Err(());
    }
    let from_header = match header {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| ())?;
            Some(canonical_authority(text, default_port).ok_or(())?)
        }
    };
    let from_target = match target_authority {
        None => None,
        Some(authority) => Some(canonical_authority(authority, default_port).ok_or(())?),
    };
    match (from_header, from_target) {
        (Some(header), Some(target)) if header != target => Err(()),
        (Some(host), _) => {
            // Borrowed: the header's own text, already canonical (see `canonical_authority`).
            let sent = matches!(host, Cow::Borrowed(_));
            Ok((host, sent))
        }
        (None, Some(host)) => Ok((host, false)),
        // HTTP/1.0 may leave the host out, but an upstream would then serve its default site
        // under a policy judged for no host: refused as well.
        (None, None) => Err(()),
    }
}

/// The name (for IPv6 with its brackets) and the port text after `:`, if any.
pub(crate) fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (name, rest) = authority.split_at(close + 1);
        return match rest {
            "" => Some((name, None)),
            _ => Some((name, Some(rest.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        Some((name, port)) => Some((name, Some(port))),
        None => Some((authority, None)),
    }
}

/// A port of 1 to 5 digits, 1–65535.
pub(crate) fn parse_port(text: &str) -> Option<u16> {
    if !(1..=5).contains(&text.len()) || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p != 0)
}

/// The number of decimal digits of `port`.
fn decimal_len(port: u16) -> usize {
    match port {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        1000..=9999 => 4,
        _ => 5,
    }
}

/// The canonical form of a host name or IP literal; `None` when it has no single reading.
fn canonical_name(name: &str) -> Option<Cow<'_, str>> {
    if let Some(v6) = name.strip_prefix('[') {
        let address: Ipv6Addr = v6.strip_suffix(']')?.parse().ok()?;
        let canonical = format!("[{address}]");
        return Some(if canonical == name {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(canonical)
        });
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    let valid = !bare.is_empty()
        && bare.len() <= MAX_NAME_LENGTH
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && bare
            .split('.')
            .all(|label| (1..=MAX_LABEL_LENGTH).contains(&label.len()));
    if !valid {
        return None;
    }
    if is_numeric_host(bare) {
        // Rust reads dotted decimal only, without leading zeros: its one spelling.
        bare.parse::<Ipv4Addr>().ok()?;
    }
    let lower = !bare.bytes().any(|b| b.is_ascii_uppercase());
    Some(match (lower, bare.len() == name.len()) {
        (true, true) => Cow::Borrowed(name),
        (true, false) => Cow::Borrowed(bare),
        (false, _) => Cow::Owned(bare.to_ascii_lowercase()),
    })
}

/// True when URL parsers (WHATWG) read `name` as an IPv4 address: its last label is a number
/// (decimal, or hexadecimal with `0x`).
fn is_numeric_host(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    hex || last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(authority: &str) -> Option<String> {
        canonical_authority(authority, 80).map(Cow::into_owned)
    }

    #[test]
    fn one_host_has_one_spelling() {
        for (sent, expected) in [
            ("admin.example", "admin.example"),
            ("admin.example.", "admin.example"),
            ("ADMIN.Example", "admin.example"),
            ("ADMIN.example.", "admin.example"),
            ("admin.example:80", "admin.example"),
            ("admin.example.:80", "admin.example"),
            ("admin.example:080", "admin.example"),
            ("admin.example:00080", "admin.example"),
            ("admin.example:8080", "admin.example:8080"),
            ("admin.example:08080", "admin.example:8080"),
            ("admin.example.:443", "admin.example:443"),
            ("localhost", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:9011", "127.0.0.1:9011"),
            ("127.0.0.1.:80", "127.0.0.1"),
            ("[::1]", "[::1]"),
            ("[::1]:80", "[::1]"),
            ("[0:0:0:0:0:0:0:1]:8080", "[::1]:8080"),
            ("[::FFFF:7F00:1]", "[::ffff:127.0.0.1]"),
            ("my_host.internal", "my_host.internal"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(canonical(sent).as_deref(), Some(expected), "{sent}");
        }
        assert_eq!(
            canonical_authority("admin.example:443", 443).as_deref(),
            Some("admin.example")
        );
        assert_eq!(
            canonical_authority("admin.example:80", 443).as_deref(),
            Some("admin.example:80")
        );
    }

    #[test]
    fn absolute_form_targets_name_their_authority() {
        assert_eq!(authority_of(b"http://app.example/x"), Some("app.example"));
        assert_eq!(
            authority_of(b"http://app.example:8080?q"),
            Some("app.example:8080")
        );
        assert_eq!(authority_of(b"http://user@evil/x"), None);
        assert_eq!(authority_of(b"http:///x"), None);
        assert_eq!(authority_of(b"garbage"), None);
        assert_eq!(authority_of(b"ftp://host/x"), None);
        assert_eq!(authority_of(b"HTTPS://[::1]:8443/x"), Some("[::1]:8443"));
        assert_eq!(
            authority_of(b"http://admin.example./x"),
            Some("admin.example.")
        );
    }

    #[test]
    fn a_request_has_one_host() {
        let headers = |hosts: &[&str]| {
            let mut map = http::HeaderMap::new();
            for host in hosts {
                map.append(http::header::HOST, host.parse().expect("value"));
            }
            map
        };
        let one = |hosts: &[&str], target: Option<&str>| {
            request_host(&headers(hosts), target, 80).map(|(host, _)| host.into_owned())
        };
        // Whether the canonical host is the `Host` header byte for byte.
        let as_sent = |hosts: &[&str], target: Option<&str>| {
            request_host(&headers(hosts), target, 80).map(|(_, sent)| sent)
        };
        assert_eq!(as_sent(&["a.example"], None), Ok(true));
        assert_eq!(as_sent(&["a.example:8080"], None), Ok(true));
        assert_eq!(as_sent(&["a.example"], Some("A.example:80")), Ok(true));
        for spelled_otherwise in ["A.example", "a.example.", "a.example:80", "a.example:080"] {
            assert_eq!(as_sent(&[spelled_otherwise], None), Ok(false));
        }
        assert_eq!(as_sent(&[], Some("a.example")), Ok(false));
        assert_eq!(one(&["A.example."], None), Ok("a.example".into()));
        assert_eq!(one(&[], Some("a.example:80")), Ok("a.example".into()));
        assert_eq!(
            one(&["a.example"], Some("A.EXAMPLE.")),
            Ok("a.example".into())
        );
        assert_eq!(one(&["a.example"], Some("b.example")), Err(()));
        assert_eq!(one(&["a.example", "a.example"], None), Err(()));
        assert_eq!(one(&["a..example"], None), Err(()));
        assert_eq!(one(&[], None), Err(()));
    }

    /// Whatever the fast path takes as canonical, the full reading returns unchanged: over
    /// the spellings of these tests and every string of up to 4 characters from an alphabet of
    /// the bytes that matter, with and without ports.
    #[test]
    fn the_one_scan_agrees_with_the_full_reading() {
        let alphabet = [
            "a", "Z", "0", "1", "9", "2", "5", ".", "-", "_", "x", ":", "[", " ",
        ];
        let mut samples: Vec<String> = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = samples
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            samples.extend(longer);
        }
        samples.sort();
        samples.dedup();
        let spelled = [
            "admin.example",
            "admin.example.",
            "ADMIN.Example",
            "127.0.0.1",
            "127.0.0.1:9011",
            "127.000.0.1",
            "0x7f.1",
            "0x7f",
            "2130706433",
            "1.2.3.256",
            "1.2.3.4.5",
            "01.2.3.4",
            "256.1.1.1",
            "1.2.3",
            "a.1",
            "a.b.c.1",
            "example.com:0",
            "example.com:65535",
            "example.com:65536",
            "example.com:080",
            "example.com:80",
            "example.com:443",
            "my_host.internal",
            "a..b",
            ".a",
            "a.",
            "10.0.0.1:8080",
            "0.0.0.0",
            "x:1:2",
            "[::1]:8080",
            "0.0.0.00",
            "0.0.0.0:1",
            "1.1.1.1.",
            "a-b.c-d:1",
        ];
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}a", "a.".repeat(127));
        let mut checked = 0;
        for sample in samples
            .iter()
            .map(String::as_str)
            .chain(spelled)
            .chain([long_label.as_str(), long_name.as_str()])
        {
            for authority in [
                sample.to_string(),
                format!("{sample}:8080"),
                format!("{sample}:80"),
            ] {
                for default_port in [80, 443] {
                    let full = canonical_authority_read_in_full(&authority, default_port);
                    if is_plainly_canonical(authority.as_bytes(), default_port) {
                        checked += 1;
                        assert_eq!(full.as_deref(), Some(authority.as_str()), "{authority:?}");
                    }
                }
            }
        }
        assert!(checked > 1000, "{checked}");
        assert!(is_plainly_canonical(b"127.0.0.1:9011", 80));
        assert!(is_plainly_canonical(b"admin.example", 443));
        assert!(!is_plainly_canonical(b"Admin.example", 443));
    }

    /// The same agreement over longer random spellings (up to 40 bytes: several labels, ports,
    /// octets past 255, leading zeros, `xn--` labels, a colon too many).
    #[test]
    fn the_one_scan_agrees_with_the_full_reading_on_random_spellings() {
        let pieces = [
            "a", "b", "z", "0", "00", "1", "25", "255", "256", "9", "99999", ".", ".", "-", "_",
            "xn--", "0x", "A", ":", ":80", ":443", ":8080", ":0", ":65536", "%", "@", "[",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut taken = 0;
        for _ in 0..200_000 {
            let mut authority = String::new();
            while authority.len() < (next() % 40) as usize + 1 {
                authority.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            for default_port in [80, 443] {
                if is_plainly_canonical(authority.as_bytes(), default_port) {
                    taken += 1;
                    let full = canonical_authority_read_in_full(&authority, default_port);
                    assert_eq!(full.as_deref(), Some(authority.as_str()), "{authority:?}");
                }
            }
        }
        assert!(taken > 1000, "{taken}");
    }

    /// [`canonical_authority`] without its fast path.
    fn canonical_authority_read_in_full(authority: &str, default_port: u16) -> Option<String> {
        let (name_as_sent, port_text) = split_authority(authority)?;
        let port = match port_text {
            None => None,
            Some(text) => Some(parse_port(text)?),
        };
        let name = canonical_name(name_as_sent)?;
        Some(match port.filter(|p| *p != default_port) {
            Some(port) => format!("{name}:{port}"),
            None => name.into_owned(),
        })
    }

    /// The authority remembered as canonical is remembered with its listener's default port:
    /// the same bytes read under another port get that port's answer, and an authority read
    /// after others gets its own.
    #[test]
    fn a_remembered_canonical_host_answers_for_its_default_port_only() {
        let cases: [(&str, u16, Option<&str>); 9] = [
            ("a.example:80", 443, Some("a.example:80")),
            ("a.example:80", 443, Some("a.example:80")),
            ("a.example:80", 80, Some("a.example")),
            ("a.example:443", 443, Some("a.example")),
            ("a.example:443", 80, Some("a.example:443")),
            ("A.example", 80, Some("a.example")),
            ("a.example", 80, Some("a.example")),
            ("", 80, None),
            ("a.example.", 80, Some("a.example")),
        ];
        for round in 0..2 {
            for (authority, port, expected) in cases {
                let read = canonical_authority(authority, port);
                assert_eq!(
                    read.as_deref(),
                    expected,
                    "round {round}: {authority} on {port}"
                );
                assert_eq!(
                    read.map(|c| c.into_owned()),
                    canonical_authority_read_in_full(authority, port),
                    "{authority} on {port}"
                );
            }
        }
    }

    #[test]
    fn a_canonical_host_is_borrowed() {
        for host in ["admin.example", "127.0.0.1:9011", "[::1]:8443", "a.b.c"] {
            assert!(
                matches!(canonical_authority(host, 80), Some(Cow::Borrowed(_))),
                "{host}"
            );
        }
    }

    #[test]
    fn hosts_without_a_single_reading_are_refused() {
        let long_label = format!("{}.example", "a".repeat(64));
        let long_name = format!("{}.example", "abcdefghi.".repeat(26));
        for bad in [
            "",
            ".",
            "..",
            "admin.example..",
            ".admin.example",
            "admin..example",
            "admin.example:",
            "admin.example:0",
            "admin.example:65536",
            "admin.example:123456",
            "admin.example:+80",
            "admin.example:80:80",
            "admin example",
            "admin.example/",
            "admin.example\\",
            "admin.example%2e",
            "user@admin.example",
            "admin.éxample",
            "0x7f.0.0.1",
            "0x7f000001",
            "2130706433",
            "127.1",
            "127.000.0.1",
            "0177.0.0.1",
            "127.0.0.256",
            "1.2.3.4.5",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[not-v6]",
            "[v1.fe]",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert_eq!(canonical(bad), None, "{bad:?}");
        }
    }
}
