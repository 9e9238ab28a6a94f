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
use std::fmt::{self, Write as _};
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
    /// A value recorded by its `Display` form (`field = %value`): as is in text, a JSON string.
    Display(&'a dyn fmt::Display),
}

thread_local! {
    /// The line being written, reused from one line to the next.
    static BUFFER: RefCell<String> = RefCell::new(String::with_capacity(256));
}

/// Writes an info line of `target` with `message` (a constant: it is written as is) and
/// `fields`, in the installed output's format. Returns `false` when it cannot write it the
/// subscriber's way — [`super::logging::init`] did not install the output, or text lines carry
/// ANSI colours —: the caller then emits the event through `tracing`. The caller has already
/// asked the subscriber whether the line is wanted.
pub fn write_info(target: &str, message: &'static str, fields: &[(&str, Value<'_>)]) -> bool {
    let Some((format, false)) = output() else {
        return false;
    };
    let written = BUFFER.try_with(|buffer| match buffer.try_borrow_mut() {
        Ok(mut line) => write_line(&mut line, format, target, message, fields),
        // Only a line written from inside the formatting of another: a buffer of its own.
        Err(_) => write_line(&mut String::new(), format, target, message, fields),
    });
    written.is_ok()
}

/// Formats the line into `line` (cleared first) and writes it to stderr in one call.
fn write_line(
    line: &mut String,
    format: LogFormat,
    target: &str,
    message: &str,
    fields: &[(&str, Value<'_>)],
) {
    line.clear();
    match format {
        LogFormat::Text => {
            push_timestamp(line);
            let _ = format_text(line, target, message, fields);
        }
        LogFormat::Json => {
            let mut timestamp = String::new();
            push_timestamp(&mut timestamp);
            let json = format_json(timestamp, target, message, fields);
            let _ = writeln!(line, "{json}");
        }
    }
    // As the subscriber's writer: one write of the whole line, an error ignored.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The current time as the subscriber writes it (RFC 3339, UTC, microseconds).
fn push_timestamp(into: &mut String) {
    if SystemTime.format_time(&mut Writer::new(into)).is_err() {
        into.push_str("<unknown time>");
    }
}

/// The text line after its timestamp: ` INFO target: message name=value…` and a newline.
fn format_text(
    line: &mut String,
    target: &str,
    message: &str,
    fields: &[(&str, Value<'_>)],
) -> fmt::Result {
    line.push_str("  INFO ");
    line.push_str(target);
    line.push_str(": ");
    line.push_str(message);
    for (name, value) in fields {
        line.push(' ');
        line.push_str(name);
        line.push('=');
        match value {
            Value::Str(text) => push_debug_str(line, text)?,
            Value::U64(number) => write!(line, "{number}")?,
            Value::F64(number) => write!(line, "{number:?}")?,
            Value::Display(shown) => write!(line, "{shown}")?,
        }
    }
    line.push('\n');
    Ok(())
}

/// `text` as `Debug` writes a string: quoted, and escaped. Printable ASCII without `"` or `\`
/// (a path, a method, a route) is copied as is; anything else goes through `Debug`.
fn push_debug_str(line: &mut String, text: &str) -> fmt::Result {
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        line.push('"');
        line.push_str(text);
        line.push('"');
        Ok(())
    } else {
        write!(line, "{text:?}")
    }
}

/// The JSON line, as [`super::logging`]'s JSON format writes the same event.
fn format_json(
    timestamp: String,
    target: &str,
    message: &str,
    fields: &[(&str, Value<'_>)],
) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("message".to_string(), message.into());
    for (name, value) in fields {
        let value = match value {
            Value::Str(text) => (*text).into(),
            Value::U64(number) => (*number).into(),
            Value::F64(number) => (*number).into(),
            Value::Display(shown) => shown.to_string().into(),
        };
        map.insert((*name).to_string(), value);
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
        let builder = tracing_subscriber::fmt().with_ansi(false).with_writer(writer);
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
            ("request_id", Value::Display(&fields.id)),
            ("method", Value::Str(fields.method)),
            ("path", Value::Str(fields.path)),
            ("status", Value::U64(fields.status)),
        ];
        if let Some(user) = fields.user {
            values.push(("user", Value::Display(user)));
        }
        values.push(("latency_ms", Value::F64(fields.latency)));
        let mut line = String::new();
        let mut timestamp = String::new();
        push_timestamp(&mut timestamp);
        match format {
            LogFormat::Text => {
                line.push_str(&timestamp);
                format_text(&mut line, "gatehouse::access", "request", &values).expect("text");
            }
            LogFormat::Json => {
                let json = format_json(timestamp, "gatehouse::access", "request", &values);
                line = format!("{json}\n");
            }
        }
        line
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
    fn only_printable_ascii_is_copied_unescaped() {
        for text in ["/plain/path;x=1", "", "a\"b", "a\\b", "\u{1b}[31m", "é", "\u{7f}"] {
            let mut line = String::new();
            push_debug_str(&mut line, text).expect("write");
            assert_eq!(line, format!("{text:?}"));
        }
    }
}
