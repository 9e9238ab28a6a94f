//! The access log: one line per request the proxy listener reads (proxied, refused, served by
//! a plugin, the public `/health`), written in the logging phase with the target
//! [`crate::observe::logging::ACCESS_TARGET`].
//!
//! A line names the request by its method and canonical path (never the query string, which
//! can hold secrets, and never a header: no credential, no cookie), the route that judged it,
//! the status, the outcome, the user (`sub`) when a token was verified, the upstream address
//! when one was used, the latency and a request id. A line is formatted into a buffer the thread
//! reuses and written in one call ([`crate::observe::line`]): nothing is allocated per line.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::auth::cached::CachedToken;
use pingora::proxy::Session;
use tracing::callsite::{DefaultCallsite, Identifier};
use tracing::field::FieldSet;
use tracing::metadata::Kind;
use tracing::{Level, Metadata};

use super::{canonical_path_of, Gateway, RequestContext};
use crate::config::Route;
use crate::observe::line::{self, Key, Value};
use crate::observe::logging::ACCESS_TARGET;

/// The outcome of a request the proxy let through to its upstream.
pub const ALLOWED: &str = "allowed";
/// The outcome of a request a plugin answered (its status tells how).
pub const API: &str = "api";
/// The outcome of the public health check.
pub const HEALTH: &str = "health";
/// The outcome of a request whose client went away before an answer could be written.
pub const CLIENT_CLOSED: &str = "client_closed";
/// The route label of a request no route judged (refused first, or no route matches).
pub const NO_ROUTE: &str = "none";
/// The route label of the public health check.
pub const HEALTH_ROUTE: &str = "/health";

/// A request id: unique within the process (a counter) and, in practice, across processes and
/// restarts (a random prefix drawn once). Printed as `prefix-counter`, in hex.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestId(u64);

/// The process' random prefix of request ids.
static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
/// The last request id handed out.
static COUNTER: AtomicU64 = AtomicU64::new(0);

impl RequestId {
    /// The next request id.
    pub fn next() -> RequestId {
        RequestId(COUNTER.fetch_add(1, Ordering::Relaxed) + 1)
    }
}

impl RequestId {
    /// The most bytes of an id's text: 8 hex digits, `-`, 16 hex digits.
    pub const TEXT_BYTES: usize = 25;

    /// The id's text (as [`fmt::Display`] shows it) written into `buffer`: its ASCII bytes.
    pub fn text<'a>(&self, buffer: &'a mut [u8; Self::TEXT_BYTES]) -> &'a [u8] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let prefix = *PREFIX.get_or_init(rand::random::<u32>);
        for (i, byte) in buffer[..8].iter_mut().enumerate() {
            *byte = HEX[(prefix >> (28 - 4 * i) & 0xf) as usize];
        }
        buffer[8] = b'-';
        let digits = (64 - self.0.leading_zeros()).div_ceil(4).max(1) as usize;
        for (i, byte) in buffer[9..9 + digits].iter_mut().enumerate() {
            *byte = HEX[(self.0 >> (4 * (digits - 1 - i)) & 0xf) as usize];
        }
        &buffer[..9 + digits]
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = PREFIX.get_or_init(rand::random::<u32>);
        write!(f, "{prefix:08x}-{:x}", self.0)
    }
}

/// The label of a configured route in metrics and the access log: its path, after its host
/// when it has one (`admin.example/`). Bounded by the configuration, never by requests.
pub fn route_label(route: &Route) -> String {
    match &route.host {
        Some(host) => format!("{host}{}", route.path),
        None => route.path.clone(),
    }
}

/// The user of a verified token as the access log shows it: `sub`, a UUID in its canonical form
/// (lowercase, hyphenated) as is, any other string (a UUID in braces or upper case too) with
/// its control characters and backslashes escaped as `escape_debug` does, and `"` and every
/// other whitespace character (a space, a no-break space…) as `\u{…}`, so it can
/// neither break the line nor end its field (a `sub` of `a status=200` would otherwise read as
/// a second `status` field in a text line); nothing without one.
pub struct User<'a>(pub &'a CachedToken);

impl fmt::Display for User<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text as written first: a UUID in another form than the canonical one keeps it.
        if let Some(sub) = self.0.subject_text() {
            return write_escaped_subject(f, sub);
        }
        match self.0.subject {
            Some(subject) => subject.fmt(f),
            None => Ok(()),
        }
    }
}

/// The most bytes of a `sub` an access line shows; a longer one (a token can carry kilobytes)
/// is cut there and its length told: the line of each request stays short.
const SUBJECT_BYTES: usize = 256;

/// Writes `sub` as [`User`] shows a subject that is not a UUID: one field value without
/// whitespace or control characters, cut after [`SUBJECT_BYTES`] (then `…[N-bytes]` tells how
/// long it was).
fn write_escaped_subject(f: &mut fmt::Formatter<'_>, sub: &str) -> fmt::Result {
    let mut shown = sub.len().min(SUBJECT_BYTES);
    while !sub.is_char_boundary(shown) {
        shown -= 1;
    }
    write_escaped(f, &sub[..shown])?;
    if shown < sub.len() {
        write!(f, "…[{}-bytes]", sub.len())?;
    }
    Ok(())
}

/// Writes `sub` escaped (see [`write_escaped_subject`]).
fn write_escaped(f: &mut fmt::Formatter<'_>, sub: &str) -> fmt::Result {
    // `\t`, `\n` and `\r` are escaped by `escape_debug` itself; `"` is escaped as `\u{22}`
    // rather than `\"`, so a reader that takes quotes as grouping never sees one.
    let splits = |c: char| c == '"' || (c.is_whitespace() && !matches!(c, '\t' | '\n' | '\r'));
    let mut rest = sub;
    while let Some(at) = rest.find(splits) {
        let space = rest[at..].chars().next().unwrap_or(' ');
        write!(
            f,
            "{}\\u{{{:x}}}",
            rest[..at].escape_debug(),
            u32::from(space)
        )?;
        rest = &rest[at + space.len_utf8()..];
    }
    write!(f, "{}", rest.escape_debug())
}

impl<'a> User<'a> {
    /// The user as a line's value: a UUID `sub` rendered into `buffer` (its `Display` form,
    /// lowercase and hyphenated), any other through [`fmt::Display`].
    fn value<'b>(&'b self, buffer: &'b mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> Value<'b> {
        match (self.0.subject, self.0.subject_text()) {
            (Some(subject), None) => Value::Shown(subject.hyphenated().encode_lower(buffer)),
            _ => Value::Display(self),
        }
    }
}

/// The most bytes of a socket address' text: `[`, an IPv6 address with an embedded IPv4 one
/// (45), `%` and a 32-bit scope id (11), `]:` and a port (7).
const ADDRESS_BYTES: usize = 64;

/// `address` as [`fmt::Display`] writes it, into `buffer`: an IPv4 one byte by byte (the
/// upstreams of most configurations), an IPv6 one through `Display`. Its ASCII bytes.
fn address_text(address: SocketAddr, buffer: &mut [u8; ADDRESS_BYTES]) -> &[u8] {
    let written = match address {
        SocketAddr::V4(v4) => {
            let mut at = 0;
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    buffer[at] = b'.';
                    at += 1;
                }
                at += decimal(u32::from(octet), &mut buffer[at..]);
            }
            buffer[at] = b':';
            at + 1 + decimal(u32::from(v4.port()), &mut buffer[at + 1..])
        }
        SocketAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buffer[..]);
            let _ = write!(cursor, "{address}");
            usize::try_from(cursor.position()).unwrap_or(0)
        }
    };
    // ASCII digits, `.`, `:`, `[`, `]`, `%` and hex letters only.
    &buffer[..written]
}

/// Writes `value` in decimal at the start of `into` (room for 10 digits); the digits written.
fn decimal(value: u32, into: &mut [u8]) -> usize {
    let digits = value.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut rest = value;
    for slot in into[..digits].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    digits
}

/// One request, as the access log records it.
pub struct Line<'a> {
    /// The request id.
    pub id: RequestId,
    /// The method.
    pub method: &'a str,
    /// The canonical path (the path as sent when it has none: the request was refused).
    pub path: &'a str,
    /// The route label (see [`route_label`]), a plugin's name, or [`NO_ROUTE`].
    pub route: &'a str,
    /// The status sent; 0 when none was.
    pub status: u16,
    /// The outcome: [`ALLOWED`], [`API`], [`HEALTH`], [`CLIENT_CLOSED`] or a refusal's
    /// [`crate::proxy::error::GatewayError::outcome`].
    pub outcome: &'a str,
    /// The verified token's user, when there is one.
    pub user: Option<User<'a>>,
    /// The upstream's address, when one was chosen.
    pub upstream: Option<SocketAddr>,
    /// Time from the request's arrival to the end of its answer.
    pub latency: Duration,
}

impl Line<'_> {
    /// Writes the line: info level, target `gatehouse::access`, when the log's filter wants it.
    /// Formatted directly (see [`crate::observe::line`]), the same bytes as the event below.
    pub fn write(&self) {
        let wanted = access_lines_wanted();
        if !wanted {
            return;
        }
        let mut id = [0u8; RequestId::TEXT_BYTES];
        let mut subject = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let user = self.user.as_ref().map(|u| u.value(&mut subject));
        let mut address = [0u8; ADDRESS_BYTES];
        let upstream = self
            .upstream
            .map(|a| Value::Ascii(address_text(a, &mut address)));
        const KEYS: [Key; 9] = [
            Key::new(" request_id="),
            Key::new(" method="),
            Key::new(" path="),
            Key::new(" route="),
            Key::new(" status="),
            Key::new(" outcome="),
            Key::new(" user="),
            Key::new(" upstream="),
            Key::new(" latency_ms="),
        ];
        let values = [
            Some(Value::Ascii(self.id.text(&mut id))),
            Some(Value::Str(self.method)),
            Some(Value::Str(self.path)),
            Some(Value::Str(self.route)),
            Some(Value::U64(self.status.into())),
            Some(Value::Str(self.outcome)),
            user,
            upstream,
            Some(Value::Micros(micros(self.latency))),
        ];
        let fields = KEYS.into_iter().zip(values);
        let mut present = [(KEYS[0], Value::U64(0)); 9];
        let mut count = 0;
        for (name, value) in fields {
            if let Some(value) = value {
                present[count] = (name, value);
                count += 1;
            }
        }
        if line::write_info(ACCESS_TARGET, "request", &present[..count]) {
            return;
        }
        tracing::info!(
            target: "gatehouse::access",
            request_id = %self.id,
            method = self.method,
            path = self.path,
            route = self.route,
            status = self.status,
            outcome = self.outcome,
            user = self.user.as_ref().map(tracing::field::display),
            upstream = self.upstream.map(tracing::field::display),
            latency_ms = milliseconds(self.latency),
            "request"
        );
    }
}

/// The access line's callsite, registered with the subscriber as any event's is: its target,
/// level and field names are the event's in [`Line::write`], so the filter judges the line as
/// that event, and the subscriber's interest in it is cached here.
static ACCESS_CALLSITE: DefaultCallsite = DefaultCallsite::new(&ACCESS_METADATA);
static ACCESS_METADATA: Metadata<'static> = Metadata::new(
    "access line",
    ACCESS_TARGET,
    Level::INFO,
    Some(file!()),
    Some(line!()),
    Some(module_path!()),
    FieldSet::new(
        &[
            "message",
            "request_id",
            "method",
            "path",
            "route",
            "status",
            "outcome",
            "user",
            "upstream",
            "latency_ms",
        ],
        Identifier(&ACCESS_CALLSITE),
    ),
    Kind::EVENT,
);

/// True when the log's filter wants access lines. The subscriber is asked only when its
/// interest in the line's callsite depends on more than the callsite (a filter on spans, say):
/// `tracing::enabled!` asks it on every call, even when it has said "always".
fn access_lines_wanted() -> bool {
    if !tracing::level_enabled!(Level::INFO) {
        return false;
    }
    let interest = ACCESS_CALLSITE.interest();
    if interest.is_always() {
        return true;
    }
    !interest.is_never() && tracing::dispatcher::get_default(|d| d.enabled(&ACCESS_METADATA))
}

/// `latency` in whole microseconds (saturating).
fn micros(latency: Duration) -> u64 {
    u64::try_from(latency.as_micros()).unwrap_or(u64::MAX)
}

/// `latency` in milliseconds, to the microsecond.
fn milliseconds(latency: Duration) -> f64 {
    latency.as_micros() as f64 / 1000.0
}

impl Gateway {
    /// Records a finished request: its latency in the request histogram (by route and
    /// outcome) and, when the access log is on, its line (see [`Line`]).
    pub(super) fn record(&self, session: &Session, ctx: &RequestContext) {
        let latency = ctx.started.map_or(Duration::ZERO, |s| s.elapsed());
        let outcome = ctx.outcome.unwrap_or(CLIENT_CLOSED);
        let route = match (ctx.route, ctx.builtin()) {
            (Some(index), _) => self.route_labels.get(index).map(String::as_str),
            (None, builtin) => builtin,
        }
        .unwrap_or(NO_ROUTE);
        match ctx.route.and_then(|i| self.allowed_durations.get(i)) {
            Some(histogram) if outcome == ALLOWED => {
                histogram.observe(latency.as_secs_f64());
            }
            _ => self
                .metrics
                .request_duration
                .with_label_values(&[route, outcome])
                .observe(latency.as_secs_f64()),
        }
        if !self.settings.access_log {
            return;
        }
        let as_sent;
        Line {
            id: ctx.id,
            method: session.req_header().method.as_str(),
            path: match ctx.route {
                // Refused before a route, on a target that is no path (`GET name`): as sent.
                None if !session.req_header().raw_path().starts_with(b"/") => {
                    as_sent = path_as_sent(session.req_header().raw_path());
                    &as_sent
                }
                _ => canonical_path_of(session, ctx),
            },
            route,
            status: session.response_written().map_or(0, |h| h.status.as_u16()),
            outcome,
            user: ctx.identity.as_deref().map(User),
            upstream: ctx.upstream.map(|(address, _)| address),
            latency,
        }
        .write();
    }

    /// Records a request the engine refused and answered itself before any phase ran (a request
    /// it cannot read one way only, a method it does not serve; see
    /// `pingora::protocols::http::refusals`): in the request histogram and, when the access log
    /// is on, as a line without a route, user or upstream. `method` and `target` are empty when
    /// the request could not be read; the target's query string is never shown. Its latency is
    /// not known: 0.
    pub fn record_engine_refusal(&self, status: u16, method: &str, target: &[u8]) {
        // The outcomes of the same refusals made by the gateway (`GatewayError::outcome`).
        let outcome = if status == 405 {
            "method_not_allowed"
        } else {
            "bad_request"
        };
        self.metrics
            .request_duration
            .with_label_values(&[NO_ROUTE, outcome])
            .observe(0.0);
        if !self.settings.access_log {
            return;
        }
        Line {
            id: RequestId::next(),
            method,
            path: &path_as_sent(target),
            route: NO_ROUTE,
            status,
            outcome,
            user: None,
            upstream: None,
            latency: Duration::ZERO,
        }
        .write();
    }
}

/// A request target as sent, without its query string: lossy where it is not UTF-8.
fn path_as_sent(target: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(target.split(|&b| b == b'?').next().unwrap_or_default())
}

/// How the engine's own error and warning lines (a failed or retried upstream attempt) name a
/// request: its method, its path as sent without the query string, and its request id (the
/// access line's), never a header. The engine's default would print the whole target and the
/// `Host`, so a secret in a query string would reach the log.
pub(super) fn request_summary(method: &http::Method, uri: &http::Uri, id: RequestId) -> String {
    format!("{method} {} (request_id={id})", uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether access lines are written is the filter's decision, through the callsite's
    /// cached interest: on by its directive, off by `gatehouse::access=off`, whatever the level.
    #[test]
    fn access_lines_are_wanted_as_the_filter_says() {
        use tracing_subscriber::filter::EnvFilter;
        use tracing_subscriber::layer::SubscriberExt;
        for (directives, wanted) in [
            ("warn,gatehouse::access=info", true),
            ("info", true),
            ("info,gatehouse::access=off", false),
            ("warn", false),
        ] {
            let subscriber = tracing_subscriber::registry().with(EnvFilter::new(directives));
            let answer = tracing::subscriber::with_default(subscriber, access_lines_wanted);
            assert_eq!(answer, wanted, "{directives}");
        }
    }

    #[test]
    fn a_request_summary_holds_no_query_string() {
        let uri: http::Uri = "/a/b?token=secret&q=1".parse().expect("uri");
        let id = RequestId(7);
        let summary = request_summary(&http::Method::GET, &uri, id);
        assert_eq!(summary, format!("GET /a/b (request_id={id})"));
        let absolute: http::Uri = "http://h.example/p?access_token=x".parse().expect("uri");
        let summary = request_summary(&http::Method::POST, &absolute, id);
        assert_eq!(summary, format!("POST /p (request_id={id})"));
    }

    #[test]
    fn request_ids_are_unique_and_share_the_process_prefix() {
        let (a, b) = (RequestId::next(), RequestId::next());
        assert_ne!(a, b);
        let (a, b) = (a.to_string(), b.to_string());
        assert_ne!(a, b);
        assert_eq!(a.split('-').next(), b.split('-').next());
        assert_eq!(a.split('-').next().map(str::len), Some(8));
    }

    #[test]
    fn an_ids_text_is_its_display_form() {
        for counter in [0, 1, 9, 10, 15, 16, 255, 4096, 0xdead_beef, u64::MAX] {
            let id = RequestId(counter);
            let mut buffer = [0u8; RequestId::TEXT_BYTES];
            assert_eq!(id.text(&mut buffer), id.to_string().as_bytes());
        }
    }

    #[test]
    fn an_address_is_written_as_its_display_form() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut addresses: Vec<SocketAddr> = [
            "0.0.0.0:0",
            "127.0.0.1:8080",
            "255.255.255.255:65535",
            "10.0.0.9:80",
            "[::1]:443",
            "[2001:db8::8a2e:370:7334]:1",
            "[::ffff:192.0.2.128]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535",
        ]
        .iter()
        .map(|a| a.parse().expect("address"))
        .collect();
        addresses.push(SocketAddr::V6(std::net::SocketAddrV6::new(
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
                .parse()
                .expect("v6"),
            65535,
            0,
            u32::MAX,
        )));
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let octets = (state as u32).to_be_bytes();
            let port = (state >> 32) as u16;
            addresses.push(SocketAddr::from((octets, port)));
            let v6 = std::net::Ipv6Addr::from(u128::from(state) << (state % 64));
            addresses.push(SocketAddr::from((v6, port)));
        }
        for address in addresses {
            let mut buffer = [0u8; ADDRESS_BYTES];
            assert_eq!(
                address_text(address, &mut buffer),
                address.to_string().as_bytes()
            );
        }
    }

    #[test]
    fn latency_is_in_milliseconds_to_the_microsecond() {
        assert_eq!(micros(Duration::from_nanos(1_234_999)), 1_234);
        assert_eq!(micros(Duration::MAX), u64::MAX);
        assert_eq!(milliseconds(Duration::from_micros(1_234)), 1.234);
        assert_eq!(milliseconds(Duration::from_nanos(999)), 0.0);
    }

    #[test]
    fn a_user_that_is_not_a_uuid_cannot_break_the_line() {
        let plan = std::sync::Arc::new(crate::auth::cached::ClaimPlan::default());
        let interner = crate::auth::cached::Interner::default();
        let compact = |claims: serde_json::Value| {
            let serde_json::Value::Object(map) = claims else {
                panic!("an object")
            };
            let verified = gatehouse_plugin_api::VerifiedClaims::from_claims(map, String::new())
                .expect("claims");
            interner.compact(&verified, &plan)
        };
        let verified = compact(serde_json::json!({"exp": 0, "sub": "svc\nfake=1"}));
        assert_eq!(User(&verified).to_string(), "svc\\nfake=1");
        // Whitespace cannot end the field: a text line would read a second `status`.
        let cases = [
            ("a status=200", "a\\u{20}status=200"),
            (" lead  two ", "\\u{20}lead\\u{20}\\u{20}two\\u{20}"),
            (
                "nb\u{a0}sp\u{2028}ls\u{3000}",
                "nb\\u{a0}sp\\u{2028}ls\\u{3000}",
            ),
            (
                "q\"uote\\ tab\t cr\r",
                "q\\u{22}uote\\\\\\u{20}tab\\t\\u{20}cr\\r",
            ),
            ("ünï", "ünï"),
        ];
        // A long one is cut (on a character boundary) and its length told.
        let long = format!("{}é{}", "a".repeat(255), "b".repeat(20_000));
        let verified = compact(serde_json::json!({"exp": 0, "sub": long}));
        assert_eq!(
            User(&verified).to_string(),
            format!("{}…[20257-bytes]", "a".repeat(255))
        );
        for (sub, shown) in cases {
            let verified = compact(serde_json::json!({"exp": 0, "sub": sub}));
            let text = User(&verified).to_string();
            assert_eq!(text, shown, "{sub:?}");
            assert!(!text
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"'));
        }
        let id = uuid::Uuid::new_v4();
        let verified = compact(serde_json::json!({"exp": 0, "sub": id}));
        assert_eq!(User(&verified).to_string(), id.to_string());
        for _ in 0..1_000 {
            let id = uuid::Uuid::new_v4();
            let verified = compact(serde_json::json!({"exp": 0, "sub": id}));
            let user = User(&verified);
            let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
            match user.value(&mut buffer) {
                Value::Shown(text) => assert_eq!(text, id.to_string()),
                _ => panic!("a UUID is rendered"),
            }
        }
        let verified = compact(serde_json::json!({"exp": 0, "sub": "svc"}));
        let user = User(&verified);
        let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
        assert!(matches!(user.value(&mut buffer), Value::Display(_)));
    }
}
