//! Per-request log lines written directly, byte for byte as the installed `tracing` subscriber
//! would write the same event (text: `tracing-subscriber`'s full format without colours; JSON:
//! [`super::logging`]'s lines), without the subscriber's field visitors: a line is formatted
//! into a buffer the thread reuses and written to stderr in one call, as the subscriber
//! writes its own. The access log writes one line per request this way; formatting it through
//! the subscriber's machinery cost more than a seventh of a proxied request's instructions.
//!
//! Whether a line is written at all stays the subscriber's decision: the caller asks it first
//! (`tracing::enabled!` on the line's target and level), so `log.level`, `log.access` and
//! `RUST_LOG` filter these lines as before.

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

use super::logging::{json_line, output, LogFormat};

/// A field's value, written as the subscriber writes the same value recorded through
/// `tracing`.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    /// A string (`field = "…"`): quoted and escaped as `Debug` does in text, a JSON string.
    Str(&'a str),
    /// An unsigned integer.
    U64(u64),
    /// A float, in `Debug` form in text (`1.5`, `2.0`), a JSON number.
    F64(f64),
    /// A duration in microseconds, written as the float of its milliseconds would be
    /// (`0.512`, `2.0`: [`Value::F64`] of `micros as f64 / 1000.0`).
    Micros(u64),
    /// A value recorded by its `Display` form (`field = %value`): as is in text, a JSON string.
    Display(&'a dyn fmt::Display),
    /// A value recorded by its `Display` form, already rendered.
    Shown(&'a str),
    /// A value recorded by its `Display` form, already rendered as ASCII bytes (a request id,
    /// an address); bytes that are not all ASCII are written as `from_utf8_lossy` reads them.
    Ascii(&'a [u8]),
}

/// A field's name as a line writes it: in text with the space before it and the `=` after it
/// (` name=`, appended in one piece), in JSON as the name alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key(&'static str);

impl Key {
    /// The key of a field, given in its text form ` name=`. Panics on any other form; a
    /// constant key of another form does not compile.
    pub const fn new(text: &'static str) -> Key {
        let bytes = text.as_bytes();
        assert!(bytes.len() > 2 && bytes[0] == b' ' && bytes[bytes.len() - 1] == b'=');
        Key(text)
    }

    /// The field's name: the text form without its space and `=`.
    pub fn name(self) -> &'static str {
        self.0.get(1..self.0.len() - 1).unwrap_or_default()
    }
}

thread_local! {
    /// The line being written, reused from one line to the next.
    static BUFFER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
}

/// Writes an info line of `target` with `message` (a constant: it is written as is) and
/// `fields`, in the installed output's format. Returns `false` when it cannot write it the
/// subscriber's way — [`super::logging::init`] did not install the output, or text lines carry
/// ANSI colours —: the caller then emits the event through `tracing`. The caller has already
/// asked the subscriber whether the line is wanted.
pub fn write_info(target: &str, message: &'static str, fields: &[(Key, Value<'_>)]) -> bool {
    let Some((format, false)) = output() else {
        return false;
    };
    let written = BUFFER.try_with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut line) => write_line(&mut line, format, target, message, fields),
        // Only a line written from inside the formatting of another: a buffer of its own.
        Err(_) => write_line(&mut Vec::new(), format, target, message, fields),
    });
    written.is_ok()
}

/// Formats the line into `line` (cleared first) and hands it whole to the thread's buffer of
/// lines ([`super::sink`]), which writes it to stderr.
fn write_line(
    line: &mut Vec<u8>,
    format: LogFormat,
    target: &str,
    message: &str,
    fields: &[(Key, Value<'_>)],
) {
    line.clear();
    match format {
        LogFormat::Text => {
            push_timestamp(line);
            format_text(line, target, message, fields);
        }
        LogFormat::Json => {
            let mut timestamp = Vec::new();
            push_timestamp(&mut timestamp);
            let timestamp = String::from_utf8_lossy(&timestamp).into_owned();
            let json = format_json(timestamp, target, message, fields);
            let _ = writeln!(line, "{json}");
        }
    }
    // Whole, into this thread's buffer (see `sink`): many lines to one write.
    super::sink::push(line);
}

/// The current time as the subscriber writes it (RFC 3339, UTC, microseconds).
fn push_timestamp(into: &mut Vec<u8>) {
    let now = std::time::SystemTime::now();
    if push_rfc3339(into, now) {
        return;
    }
    // Before 1970 or after 9999: the subscriber's own formatter.
    let mut text = String::new();
    if SystemTime.format_time(&mut Writer::new(&mut text)).is_err() {
        text = "<unknown time>".to_string();
    }
    into.extend_from_slice(text.as_bytes());
}

/// `time` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC), as the subscriber writes it; `false` (and
/// nothing written) for an instant before 1970 or after the year 9999. The text up to the
/// second (`YYYY-MM-DDTHH:MM:SS.`) is rendered once per second on each thread and copied: lines
/// come many a second.
fn push_rfc3339(into: &mut Vec<u8>, time: std::time::SystemTime) -> bool {
    thread_local! {
        /// The last second rendered, and its text up to the fraction.
        static SECOND: RefCell<(u64, Vec<u8>)> = const { RefCell::new((u64::MAX, Vec::new())) };
    }
    let Ok(since) = time.duration_since(std::time::UNIX_EPOCH) else {
        return false;
    };
    let seconds = since.as_secs();
    let cached = SECOND.try_with(|second| {
        let Ok(mut second) = second.try_borrow_mut() else {
            return false;
        };
        if second.0 != seconds {
            second.1.clear();
            if !push_second(&mut second.1, seconds) {
                return false;
            }
            second.0 = seconds;
        }
        into.extend_from_slice(&second.1);
        true
    });
    match cached {
        Ok(true) => {}
        // Out of range, or the thread's copy is not at hand: rendered here.
        Ok(false) | Err(_) => {
            if !push_second(into, seconds) {
                return false;
            }
        }
    }
    push_padded(into, u64::from(since.subsec_micros()), 6);
    into.push(b'Z');
    true
}

/// `seconds` after the epoch as `YYYY-MM-DDTHH:MM:SS.` (UTC); `false` (and nothing written)
/// after the year 9999.
fn push_second(into: &mut Vec<u8>, seconds: u64) -> bool {
    let (year, month, day) = civil_date(seconds / 86_400);
    if year > 9999 {
        return false;
    }
    let of_day = seconds % 86_400;
    let parts = [
        (year, 4, b'-'),
        (month, 2, b'-'),
        (day, 2, b'T'),
        (of_day / 3600, 2, b':'),
        (of_day / 60 % 60, 2, b':'),
        (of_day % 60, 2, b'.'),
    ];
    for (value, width, then) in parts {
        push_padded(into, value, width);
        into.push(then);
    }
    true
}

/// The proleptic Gregorian date (year, month, day) of `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `value` in decimal, zero-padded to `width` digits: the digits written in place, last first,
/// over the zeros of the padding.
fn push_padded(into: &mut Vec<u8>, value: u64, width: usize) {
    let digits = (value.checked_ilog10().unwrap_or(0) as usize + 1).max(width);
    let start = into.len();
    into.resize(start + digits, b'0');
    let mut rest = value;
    for slot in into[start..].iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
}

/// `value` in decimal.
fn push_u64(into: &mut Vec<u8>, value: u64) {
    push_padded(into, value, 1);
}

/// `micros` in milliseconds, as `Debug` writes the float `micros as f64 / 1000.0`: the
/// shortest decimal that reads back as that float, which below 2^43 µs (about 100 days; the
/// float's spacing there is under 2e-6) is the exact decimal with its trailing zeros dropped
/// (and `.0` for a whole number); `Debug` itself beyond.
fn push_millis(into: &mut Vec<u8>, micros: u64) {
    if micros >= 1 << 43 {
        let _ = write!(into, "{:?}", micros as f64 / 1000.0);
        return;
    }
    push_u64(into, micros / 1000);
    into.push(b'.');
    let fraction = micros % 1000;
    if fraction == 0 {
        into.push(b'0');
        return;
    }
    let digits = [
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    let mut len = 3;
    while digits[len - 1] == b'0' {
        len -= 1;
    }
    into.extend_from_slice(&digits[..len]);
}

/// The text line after its timestamp: ` INFO target: message name=value…` and a newline.
fn format_text(line: &mut Vec<u8>, target: &str, message: &str, fields: &[(Key, Value<'_>)]) {
    line.extend_from_slice(b"  INFO ");
    line.extend_from_slice(target.as_bytes());
    line.extend_from_slice(b": ");
    line.extend_from_slice(message.as_bytes());
    for (key, value) in fields {
        line.extend_from_slice(key.0.as_bytes());
        match value {
            Value::Str(text) => push_debug_str(line, text),
            Value::U64(number) => push_u64(line, *number),
            Value::F64(number) => {
                let _ = write!(line, "{number:?}");
            }
            Value::Micros(micros) => push_millis(line, *micros),
            Value::Display(shown) => {
                let _ = write!(line, "{shown}");
            }
            Value::Shown(shown) => line.extend_from_slice(shown.as_bytes()),
            Value::Ascii(bytes) if bytes.is_ascii() => line.extend_from_slice(bytes),
            Value::Ascii(bytes) => {
                line.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes());
            }
        }
    }
    line.push(b'\n');
}

/// `text` as `Debug` writes a string: quoted, and escaped. Printable ASCII without `"` or `\`
/// (a path, a method, a route) is copied as is; anything else goes through `Debug`.
fn push_debug_str(line: &mut Vec<u8>, text: &str) {
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        line.push(b'"');
        line.extend_from_slice(text.as_bytes());
        line.push(b'"');
    } else {
        let _ = write!(line, "{text:?}");
    }
}

/// The JSON line, as [`super::logging`]'s JSON format writes the same event.
fn format_json(
    timestamp: String,
    target: &str,
    message: &str,
    fields: &[(Key, Value<'_>)],
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("message".to_string(), message.into());
    for (key, value) in fields {
        let value = match value {
            Value::Str(text) => (*text).into(),
            Value::U64(number) => (*number).into(),
            Value::F64(number) => (*number).into(),
            Value::Micros(micros) => (*micros as f64 / 1000.0).into(),
            Value::Display(shown) => shown.to_string().into(),
            Value::Shown(shown) => (*shown).into(),
            Value::Ascii(bytes) => String::from_utf8_lossy(bytes).into(),
        };
        map.insert(key.name().to_string(), value);
    }
    json_line(timestamp, &tracing::Level::INFO, map, target)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::observe::logging::JsonLines;

    /// What a subscriber wrote, kept for the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("capture").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("capture").clone()).expect("utf-8")
        }
    }

    /// The event `tracing` would log for `fields` (the access line's shape), through the
    /// subscriber `json` picks, and the line as written.
    fn through_tracing(json: bool, fields: &Fields<'_>) -> String {
        let captured = Captured::default();
        let writer = {
            let captured = captured.clone();
            move || captured.clone()
        };
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(writer);
        let emit = || {
            tracing::info!(
                target: "gatehouse::access",
                request_id = %fields.id,
                method = fields.method,
                path = fields.path,
                status = fields.status,
                user = fields.user.map(tracing::field::display),
                latency_ms = fields.latency,
                "request"
            )
        };
        if json {
            tracing::subscriber::with_default(builder.event_format(JsonLines).finish(), emit);
        } else {
            tracing::subscriber::with_default(builder.finish(), emit);
        }
        captured.text()
    }

    /// The same line, written here.
    fn direct(format: LogFormat, fields: &Fields<'_>) -> String {
        let mut values = vec![
            (Key::new(" request_id="), Value::Display(&fields.id)),
            (Key::new(" method="), Value::Str(fields.method)),
            (Key::new(" path="), Value::Str(fields.path)),
            (Key::new(" status="), Value::U64(fields.status)),
        ];
        if let Some(user) = fields.user {
            values.push((Key::new(" user="), Value::Display(user)));
        }
        values.push((Key::new(" latency_ms="), Value::F64(fields.latency)));
        let mut line = Vec::new();
        let mut timestamp = Vec::new();
        push_timestamp(&mut timestamp);
        match format {
            LogFormat::Text => {
                line.extend_from_slice(&timestamp);
                format_text(&mut line, "gatehouse::access", "request", &values);
            }
            LogFormat::Json => {
                let timestamp = text(timestamp);
                let json = format_json(timestamp, "gatehouse::access", "request", &values);
                line = format!("{json}\n").into_bytes();
            }
        }
        text(line)
    }

    /// Bytes a line helper wrote, as text.
    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8")
    }

    struct Fields<'a> {
        id: &'a dyn fmt::Display,
        method: &'a str,
        path: &'a str,
        status: u64,
        user: Option<&'a dyn fmt::Display>,
        latency: f64,
    }

    /// The line without its timestamp (the two lines are written at different instants).
    fn untimed(line: &str, format: LogFormat) -> String {
        match format {
            LogFormat::Text => line.split_once(' ').map(|(_, rest)| rest.to_string()),
            LogFormat::Json => {
                let mut value: serde_json::Value = serde_json::from_str(line).expect("json");
                value["timestamp"] = "".into();
                Some(value.to_string())
            }
        }
        .expect("a line")
    }

    #[test]
    fn a_key_is_its_text_form_and_its_name() {
        let key = Key::new(" latency_ms=");
        assert_eq!((key.0, key.name()), (" latency_ms=", "latency_ms"));
        assert_eq!(Key::new(" a=").name(), "a");
    }

    #[test]
    #[should_panic]
    fn a_key_without_its_text_form_is_refused() {
        let _ = Key::new("latency_ms");
    }

    #[test]
    fn lines_are_written_as_the_subscriber_writes_them() {
        let id = "1a2b3c4d-7f";
        let user = uuid::Uuid::new_v4();
        let cases = [
            ("GET", "/open/", Some(&user as &dyn fmt::Display), 0.512),
            ("POST", "/a b/\"q\"\\x", None, 2.0),
            ("GET", "/caf\u{e9}/\u{7f}\t\n", None, 1234.001),
            ("DELETE", "", None, 0.0),
        ];
        for (method, path, user, latency) in cases {
            let fields = Fields {
                id: &id,
                method,
                path,
                status: 200,
                user,
                latency,
            };
            for (format, json) in [(LogFormat::Text, false), (LogFormat::Json, true)] {
                let expected = through_tracing(json, &fields);
                let written = direct(format, &fields);
                assert!(written.ends_with('\n'), "{written}");
                assert_eq!(
                    untimed(&written, format),
                    untimed(&expected, format),
                    "{format:?}: {expected}"
                );
            }
        }
    }

    #[test]
    fn ascii_values_are_written_as_shown_values_are() {
        let text_of = |value: Value<'_>| {
            let mut line = Vec::new();
            format_text(&mut line, "t", "m", &[(Key::new(" id="), value)]);
            text(line)
        };
        assert_eq!(
            text_of(Value::Ascii(b"1a2b3c4d-7f")),
            text_of(Value::Shown("1a2b3c4d-7f"))
        );
        assert_eq!(
            text_of(Value::Ascii(b"a\xffb")),
            text_of(Value::Shown("a\u{fffd}b"))
        );
        let json = format_json(
            String::new(),
            "t",
            "m",
            &[(Key::new(" id="), Value::Ascii(b"x-1"))],
        );
        assert_eq!(json["fields"]["id"], "x-1", "{json}");
    }

    #[test]
    fn milliseconds_are_written_as_the_float_debug_form() {
        let large = [1 << 40, (1 << 43) - 1, 1 << 43, (1 << 53) - 1, u64::MAX / 3];
        for micros in (0..200_000)
            .chain((0..2_000).map(|i| i * 999_983))
            .chain(large)
        {
            let mut line = Vec::new();
            push_millis(&mut line, micros);
            assert_eq!(
                text(line),
                format!("{:?}", micros as f64 / 1000.0),
                "{micros}"
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for number in [0, 7, 10, 200, 404, 65_535, u64::MAX] {
            let mut line = Vec::new();
            push_u64(&mut line, number);
            assert_eq!(text(line), number.to_string());
        }
        let mut line = Vec::new();
        push_padded(&mut line, 42, 6);
        assert_eq!(text(line), "000042");
        let values = (0..1_100).chain([9_999, 10_000, 999_999, 1_000_000, u64::MAX / 7, u64::MAX]);
        for value in values {
            for width in [0, 1, 2, 4, 6, 20, 22] {
                let mut line = b"before ".to_vec();
                push_padded(&mut line, value, width);
                assert_eq!(
                    text(line),
                    format!("before {value:0width$}"),
                    "{value} {width}"
                );
            }
        }
    }

    #[test]
    fn timestamps_are_rfc3339_in_utc_to_the_microsecond() {
        use std::time::{Duration, UNIX_EPOCH};
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.000005Z"),
            (951_868_799, 999_999, "2000-02-29T23:59:59.999999Z"),
            (1_709_164_800, 120_000, "2024-02-29T00:00:00.120000Z"),
            (1_796_514_062, 123_456, "2026-12-05T23:41:02.123456Z"),
            (4_102_444_800, 0, "2100-01-01T00:00:00.000000Z"),
            (253_402_300_799, 1, "9999-12-31T23:59:59.000001Z"),
        ];
        for (seconds, micros, expected) in cases {
            let time = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros);
            let mut line = Vec::new();
            assert!(push_rfc3339(&mut line, time), "{expected}");
            assert_eq!(text(line), expected);
        }
        let mut line = Vec::new();
        let later = UNIX_EPOCH + Duration::from_secs(253_402_300_800);
        assert!(!push_rfc3339(&mut line, later) && line.is_empty());
        assert!(!push_rfc3339(
            &mut line,
            UNIX_EPOCH - Duration::from_secs(1)
        ));
    }

    #[test]
    fn a_seconds_text_is_reused_only_within_that_second() {
        use std::time::{Duration, UNIX_EPOCH};
        // The thread's cached second against a fresh rendering, over runs of instants in the
        // same second, next seconds, and jumps back and forth (days, years, leap days).
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut seconds = 1_796_514_062_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            seconds = match state % 8 {
                0..=3 => seconds,
                4 | 5 => seconds + 1,
                6 => seconds.wrapping_sub(state % 100_000) % 253_402_300_799,
                _ => (state >> 8) % 253_402_300_800,
            };
            let micros = (state >> 20) % 1_000_000;
            let time = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros);
            let mut cached = Vec::new();
            assert!(push_rfc3339(&mut cached, time));
            let mut fresh = Vec::new();
            assert!(push_second(&mut fresh, seconds));
            push_padded(&mut fresh, micros, 6);
            fresh.push(b'Z');
            assert_eq!(text(cached), text(fresh), "{seconds}.{micros}");
        }
    }

    #[test]
    fn the_timestamp_is_the_subscribers() {
        // Both read the clock: compare to the minute, again when a minute turned in between.
        for _ in 0..3 {
            let mut ours = Vec::new();
            push_timestamp(&mut ours);
            let ours = text(ours);
            let mut theirs = String::new();
            SystemTime
                .format_time(&mut Writer::new(&mut theirs))
                .expect("time");
            assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
            if ours[..16] == theirs[..16] {
                return;
            }
        }
        panic!("the timestamps never agreed to the minute");
    }

    #[test]
    fn only_printable_ascii_is_copied_unescaped() {
        for text in [
            "/plain/path;x=1",
            "",
            "a\"b",
            "a\\b",
            "\u{1b}[31m",
            "é",
            "\u{7f}",
        ] {
            let mut line = Vec::new();
            push_debug_str(&mut line, text);
            assert_eq!(super::tests::text(line), format!("{text:?}"));
        }
    }
}
