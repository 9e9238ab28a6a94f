//! Logging set-up: `tracing` to stderr, as text or JSON, with the proxy engine's own log lines
//! (it logs through the `log` crate) rate-limited, so a flood of malformed client traffic
//! cannot fill a disk. Client mistakes the gateway sees itself are logged at debug level.
//! The access log (one line per request, target [`ACCESS_TARGET`]) goes through the same
//! output, and a panic is one log line whose source location names no build directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Logging output format (`log.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// At most this many warning or error lines of the proxy engine are written per window.
const ENGINE_LINES_PER_WINDOW: u64 = 20;
/// The window.
const WINDOW: Duration = Duration::from_secs(60);

/// The current window's number and how many engine lines it let through.
static WINDOW_NUMBER: AtomicU64 = AtomicU64::new(0);
static WINDOW_LINES: AtomicU64 = AtomicU64::new(0);
/// Engine lines dropped since the last report.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// True when an event of `target` at `level` may be written: everything of the gateway's own;
/// of the proxy engine's, info lines, and warnings and errors at most
/// [`ENGINE_LINES_PER_WINDOW`] per [`WINDOW`]. The engine's debug and trace lines are never
/// written, at any configured level: they dump raw request and response headers, credentials
/// included.
fn admit(target: &str, level: &tracing::Level) -> bool {
    if !target.starts_with("pingora") {
        return true;
    }
    if *level > tracing::Level::INFO {
        return false;
    }
    if *level > tracing::Level::WARN {
        return true;
    }
    let window = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / WINDOW.as_secs());
    if WINDOW_NUMBER.swap(window, Ordering::Relaxed) != window {
        WINDOW_LINES.store(0, Ordering::Relaxed);
    }
    if WINDOW_LINES.fetch_add(1, Ordering::Relaxed) < ENGINE_LINES_PER_WINDOW {
        return true;
    }
    SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    false
}

/// The `tracing` target of access log lines: filter them with `gatehouse::access=off`.
pub const ACCESS_TARGET: &str = "gatehouse::access";

/// The filter for the configured `level`: with the access log on, its lines are written
/// whatever the level (unless the level names the access target itself).
fn configured_filter(level: &str, access: bool) -> String {
    if access && !level.contains(ACCESS_TARGET) {
        format!("{level},{ACCESS_TARGET}=info")
    } else {
        level.to_string()
    }
}

/// The output [`init`] installed: its format, and whether text lines carry ANSI colours.
static OUTPUT: OnceLock<(LogFormat, bool)> = OnceLock::new();

/// The output [`init`] installed (see [`crate::observe::line`]): the format and whether text
/// lines carry ANSI colours; `None` before `init`, or when a subscriber installed elsewhere
/// writes the lines.
pub(super) fn output() -> Option<(LogFormat, bool)> {
    OUTPUT.get().copied()
}

/// Installs the subscriber: `level` (a `tracing` filter; `RUST_LOG` wins when set) in `format`,
/// with access lines whatever the level when `access` is on; and the panic hook.
pub fn init(level: &str, format: LogFormat, access: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(configured_filter(level, access)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let output = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let output = output.with_filter(filter_fn(|meta| admit(meta.target(), meta.level())));
    if tracing_subscriber::registry()
        .with(filter)
        .with(output)
        .try_init()
        .is_err()
    {
        eprintln!("logging was already initialised");
        return;
    }
    let _ = OUTPUT.set((format, ansi && format == LogFormat::Text));
    std::panic::set_hook(Box::new(log_panic));
    let reporter = std::thread::Builder::new()
        .name("log-report".into())
        .spawn(report_suppressed);
    if let Err(e) = reporter {
        tracing::warn!(error = %e, "cannot start the log reporter");
    }
}

/// The panic hook: one error line with the thread, the message and where it happened, the
/// location relative to its crate (never the absolute path of a build or registry directory).
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", relative_source(l.file()), l.line(), l.column()));
    let thread = std::thread::current();
    tracing::error!(
        thread = thread.name().unwrap_or("unnamed"),
        location = location.as_deref().unwrap_or("unknown"),
        "panic: {message}"
    );
}

/// A source file's path without the machine's directories: an absolute path (a dependency in
/// the registry, the standard library) is cut to its crate's directory
/// (`pingora-core-0.9.1/src/server.rs`); a relative one is kept (`src/proxy/mod.rs`).
pub fn relative_source(file: &str) -> &str {
    if !file.starts_with('/') && !file.contains(":\\") {
        return file;
    }
    let file_name = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let Some(src) = file.rfind("/src/") else {
        return file_name;
    };
    match file[..src].rfind('/') {
        Some(start) => &file[start + 1..],
        None => file_name,
    }
}

/// The JSON line format: `{"timestamp", "level", "fields": {…}, "target"}`, one object per
/// line. Unlike the stock JSON format, the bridge's `log.file`, `log.line` and
/// `log.module_path` fields of the engine's lines (an absolute path into the build machine's
/// registry) are left out, and such a line's target is the engine module that wrote it.
pub(super) struct JsonLines;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use tracing_subscriber::fmt::time::FormatTime;
        let mut timestamp = String::new();
        tracing_subscriber::fmt::time::SystemTime.format_time(
            &mut tracing_subscriber::fmt::format::Writer::new(&mut timestamp),
        )?;
        let mut fields = JsonFields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let target = fields.log_target.as_deref().unwrap_or(metadata.target());
        let line = json_line(timestamp, metadata.level(), fields.map, target);
        writeln!(writer, "{line}")
    }
}

/// One JSON line (without its newline): `timestamp`, `level`, the event's `fields`, `target`.
pub(super) fn json_line(
    timestamp: String,
    level: &tracing::Level,
    fields: serde_json::Map<String, serde_json::Value>,
    target: &str,
) -> serde_json::Value {
    serde_json::json!({
        "timestamp": timestamp,
        "level": level.as_str(),
        "fields": fields,
        "target": target,
    })
}

/// An event's fields as JSON, less the `log` bridge's own (see [`JsonLines`]).
#[derive(Default)]
struct JsonFields {
    map: serde_json::Map<String, serde_json::Value>,
    log_target: Option<String>,
}

impl JsonFields {
    fn insert(&mut self, field: &tracing::field::Field, value: serde_json::Value) {
        match field.name() {
            "log.target" => self.log_target = value.as_str().map(str::to_string),
            name if name.starts_with("log.") => {}
            name => {
                self.map.insert(name.to_string(), value);
            }
        }
    }
}

impl tracing::field::Visit for JsonFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.insert(field, format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.insert(field, value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.insert(field, value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.insert(field, value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.insert(field, value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.insert(field, value.into());
    }
}

/// Says, once per window, how many engine lines were dropped.
fn report_suppressed() {
    loop {
        std::thread::sleep(WINDOW);
        let dropped = SUPPRESSED.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "proxy engine log lines suppressed (rate limit)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_warnings_are_rate_limited_and_the_rest_is_not() {
        let admitted = (0..1000)
            .filter(|_| admit("pingora_proxy", &tracing::Level::ERROR))
            .count() as u64;
        // Near a window boundary the count can restart once.
        assert!(admitted <= 2 * ENGINE_LINES_PER_WINDOW, "{admitted}");
        assert!(admitted >= 1);
        assert!(SUPPRESSED.load(Ordering::Relaxed) > 0);
        assert!((0..1000).all(|_| admit("gatehouse::proxy", &tracing::Level::ERROR)));
        assert!((0..1000).all(|_| admit("pingora_core", &tracing::Level::INFO)));
    }

    #[test]
    fn source_locations_name_no_build_directory() {
        let cases = [
            ("src/proxy/mod.rs", "src/proxy/mod.rs"),
            (
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pingora-core-0.9.1/src/server/mod.rs",
                "pingora-core-0.9.1/src/server/mod.rs",
            ),
            (
                "/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/option.rs",
                "core/src/option.rs",
            ),
            ("/home/build/gatehouse/src/main.rs", "gatehouse/src/main.rs"),
            ("/tmp/generated.rs", "generated.rs"),
        ];
        for (file, shown) in cases {
            assert_eq!(relative_source(file), shown, "{file}");
        }
    }

    #[test]
    fn the_access_log_is_written_whatever_the_level_unless_it_is_off() {
        assert_eq!(
            configured_filter("warn", true),
            "warn,gatehouse::access=info"
        );
        assert_eq!(configured_filter("warn", false), "warn");
        assert_eq!(
            configured_filter("info,gatehouse::access=off", true),
            "info,gatehouse::access=off"
        );
    }

    #[test]
    fn the_engines_header_dumps_are_never_written() {
        for target in [
            "pingora_core::protocols::http::v1::client",
            "pingora_proxy::proxy_h1",
        ] {
            assert!(!admit(target, &tracing::Level::DEBUG), "{target}");
            assert!(!admit(target, &tracing::Level::TRACE), "{target}");
        }
        assert!(admit("gatehouse::proxy", &tracing::Level::DEBUG));
    }
}
