//! Live reload: `SIGHUP`, `gatehouse reload` and the admin listener's `POST /reload` read the
//! configuration file again. A file with any problem changes nothing (every problem is logged
//! with its path and line); a good one is built into a whole new [`Gateway`] — routes, keys,
//! issuers, tenants and applications, API keys, plugins, limits, identity headers, forward-auth —
//! its declared entities are written to the store as at start, and it is put in force in one
//! atomic swap ([`LiveGateway::replace`]). Requests under way finish on the gateway they
//! started with, and no connection is touched. What only a restart can change (the listeners,
//! threads, the store, logging) keeps its running value, with a warning naming the field.
//!
//! Reloads run one at a time on their own thread ([`spawn`]), so a reload never holds a proxy
//! or API thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use tokio::sync::{mpsc, oneshot};

use crate::auth::issuers::Issuers;
use crate::config::{self, Config, ConfigError};
use crate::proxy::routes::UpstreamResolver;
use crate::proxy::LiveGateway;
use crate::server::tls::Certificates;
use crate::server::{
    apply_declared, build, warn_login_routes_without_provider, Previous, Process, StartError,
};

/// How long the file must have gone unmodified for a reload to read it.
const QUIET: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a reload waits for a file that keeps being modified before it gives up.
const QUIET_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The new configuration is in force.
    Applied {
        /// Its generation (the configuration read at start is 1).
        generation: u64,
        /// The first 16 hex digits of the file's SHA-256.
        hash: String,
        /// Fields only a restart can change, which kept their running value.
        warnings: Vec<String>,
    },
    /// Nothing changed: the file has these problems (each with its path, and line when the
    /// file has one for it).
    Refused {
        /// The problems.
        problems: Vec<ConfigError>,
    },
}

/// The configuration in force, and what was built from it that a reload replaces.
struct InForce {
    /// The configuration, with the running values of the fields only a restart changes.
    config: Config,
    /// The trusted issuers of the gateway in force (a reload keeps their keys).
    issuers: Arc<Issuers>,
    /// The configuration's generation.
    generation: u64,
}

/// Reloads the configuration file into the live gateway.
pub struct Reloader {
    path: PathBuf,
    process: Process,
    live: LiveGateway,
    /// What the upstream DNS thread re-resolves: the route table in force's names.
    dns: Arc<ArcSwapOption<UpstreamResolver>>,
    in_force: tokio::sync::Mutex<InForce>,
    /// The TLS listener's certificate, read again at every reload; `None` without TLS.
    certificates: Option<Arc<Certificates>>,
}

impl Reloader {
    /// A reloader of the file at `path`, whose configuration `config` (generation 1) is in
    /// force in `live`, built with `issuers`. Sets the generation and hash gauges.
    pub fn new(
        path: &Path,
        config: Config,
        process: Process,
        live: LiveGateway,
        issuers: Arc<Issuers>,
        dns: Arc<ArcSwapOption<UpstreamResolver>>,
    ) -> Reloader {
        let hash = std::fs::read(path)
            .map(|bytes| hash_of(&bytes))
            .unwrap_or_default();
        process.metrics.config_generation.set(1);
        process.metrics.config_hash.set(hash_gauge(&hash));
        Reloader {
            path: path.to_path_buf(),
            process,
            live,
            dns,
            in_force: tokio::sync::Mutex::new(InForce {
                config,
                issuers,
                generation: 1,
            }),
            certificates: None,
        }
    }

    /// The same reloader, also reading the TLS listener's certificate and key files again at
    /// every reload into `certificates` (when `Some`).
    pub fn serving(mut self, certificates: Option<Arc<Certificates>>) -> Reloader {
        self.certificates = certificates;
        self
    }

    /// Reads the file again and puts it in force, or changes nothing when it has a problem.
    /// Logs one line and counts the outcome; returns what it did.
    pub async fn reload(&self) -> Report {
        let mut in_force = self.in_force.lock().await;
        let report = match self.apply(&mut in_force).await {
            Ok(report) => report,
            Err(problems) => Report::Refused { problems },
        };
        self.observe(&report);
        report
    }

    /// The steps of a reload: read and validate, build, write the declared entities, swap.
    /// `Err` with every problem found, before anything is in force.
    async fn apply(&self, in_force: &mut InForce) -> Result<Report, Vec<ConfigError>> {
        let text = read_settled(&self.path).await.map_err(|e| vec![e])?;
        let base_dir = self.path.parent().unwrap_or(Path::new("."));
        let mut config = config::parse(&text, base_dir, |name| std::env::var(name).ok())
            .map_err(|errors| errors.0)?;
        let warnings = keep_restart_only(&in_force.config, &mut config);
        let certificate = self.read_certificate(&config, &text)?;
        let previous = self.live.current();
        let built = build(
            &config,
            &self.process,
            Some(Previous {
                gateway: &previous,
                issuers: &in_force.issuers,
            }),
        )
        .await
        .map_err(|e| vec![located(&text, e)])?;
        apply_declared(&config, self.process.store.as_ref())
            .await
            .map_err(|e| vec![located(&text, e)])?;
        warn_login_routes_without_provider(&config, self.process.store.as_ref()).await;
        built.issuers.start().map_err(|e| {
            vec![ConfigError {
                path: "issuers".into(),
                message: format!("cannot start the key fetching thread: {e}"),
            }]
        })?;
        // The swap: requests from now on are served by the new gateway; those under way keep
        // `previous`, which ends (with its issuers' fetching) when the last of them does.
        self.live.replace(built.gateway);
        if let (Some(certificates), Some(pair)) = (&self.certificates, certificate) {
            certificates.install(pair);
        }
        self.dns.store(built.upstream_resolver.map(Arc::new));
        in_force.generation += 1;
        in_force.config = config;
        in_force.issuers = built.issuers;
        Ok(Report::Applied {
            generation: in_force.generation,
            hash: hash_of(text.as_bytes()),
            warnings,
        })
    }

    /// The TLS certificate and key of `config` (whose file is `text`), read and checked but not
    /// yet in force; `None` without TLS. `Err` names the file's field, with its line.
    fn read_certificate(
        &self,
        config: &Config,
        text: &str,
    ) -> Result<Option<pingora::tls::sign::CertifiedKey>, Vec<ConfigError>> {
        let (Some(_), Some((cert, key))) = (&self.certificates, &config.tls) else {
            return Ok(None);
        };
        Certificates::read(cert, key).map(Some).map_err(|e| {
            vec![located(
                text,
                StartError::Setup {
                    path: e.field.to_string(),
                    message: e.message,
                },
            )]
        })
    }

    /// The log line and metrics of a reload.
    fn observe(&self, report: &Report) {
        let metrics = &self.process.metrics;
        match report {
            Report::Applied {
                generation,
                hash,
                warnings,
            } => {
                metrics.reloads.with_label_values(&["applied"]).inc();
                metrics.config_generation.set(*generation as i64);
                metrics.config_hash.set(hash_gauge(hash));
                if warnings.is_empty() {
                    tracing::info!(generation, hash = %hash, "configuration reloaded");
                } else {
                    tracing::warn!(generation, hash = %hash, warnings = %warnings.join("; "),
                        "configuration reloaded; fields only a restart changes keep their running value");
                }
            }
            Report::Refused { problems } => {
                metrics.reloads.with_label_values(&["refused"]).inc();
                let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
                tracing::error!(file = %self.path.display(), problems = %problems.join("; "),
                    "configuration reload refused; the running configuration stays in force");
            }
        }
    }
}

/// The text of the file at `path` once it has not been modified for [`QUIET`], so a file
/// that is being written while a reload asks for it is read when its writer is done, not
/// half-written (a writer that pauses longer than that mid-file is not seen; writing the new
/// file beside the old one and renaming it over is atomic). `Err` when it cannot be read, is
/// not UTF-8, or is still being modified after [`QUIET_LIMIT`].
async fn read_settled(path: &Path) -> Result<String, ConfigError> {
    let problem = |message: String| ConfigError {
        path: String::new(),
        message,
    };
    let cannot = |e: std::io::Error| problem(format!("cannot read {}: {e}", path.display()));
    let deadline = std::time::Instant::now() + QUIET_LIMIT;
    loop {
        let before = std::fs::metadata(path).map_err(cannot)?;
        // `None` for a modification time in the future (a copied file's): only the reads'
        // agreement below is checked then.
        let age = before.modified().ok().and_then(|m| m.elapsed().ok());
        let settled = age.is_none_or(|age| age >= QUIET);
        if settled {
            let bytes = std::fs::read(path).map_err(cannot)?;
            let after = std::fs::metadata(path).map_err(cannot)?;
            if after.modified().ok() == before.modified().ok() && after.len() == bytes.len() as u64
            {
                return String::from_utf8(bytes)
                    .map_err(|_| problem(format!("{} is not UTF-8 text", path.display())));
            }
        }
        if std::time::Instant::now() >= deadline {
            return Err(problem(format!(
                "{} kept changing while it was read; write the new file beside it and rename it over",
                path.display()
            )));
        }
        let wait = age.map_or(QUIET, |age| QUIET.saturating_sub(age));
        tokio::time::sleep(wait.max(std::time::Duration::from_millis(10))).await;
    }
}

/// A start-up error of a reload as a configuration problem, with the line of its path in
/// `text` when it has one there.
pub(crate) fn located(text: &str, error: StartError) -> ConfigError {
    let (path, message) = match error {
        StartError::Setup { path, message } => (path, message),
        StartError::Store(e) => ("store".to_string(), e.to_string()),
        StartError::Listen(m) => ("listen".to_string(), m),
    };
    let message = match config::position(text, &path).filter(|_| !path.is_empty()) {
        Some((line, column)) => format!("{message} (line {line}, column {column})"),
        None => message,
    };
    ConfigError { path, message }
}

/// Compares the fields only a restart can change: each that differs in `new` is given its
/// running value from `running` again, and named in the returned warnings (without its
/// values, which may hold secrets such as a store password).
fn keep_restart_only(running: &Config, new: &mut Config) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut keep = |changed: bool, field: &str| {
        if changed {
            warnings.push(format!(
                "{field}: changes only with a restart; the running value is kept"
            ));
        }
    };
    keep(running.listen != new.listen, "listen");
    // New certificate files are read at every reload; turning TLS on or off needs a restart.
    keep(running.tls.is_some() != new.tls.is_some(), "tls");
    keep(running.protocols != new.protocols, "listenOptions");
    keep(running.threads != new.threads, "threads");
    keep(running.api != new.api, "api");
    keep(running.store != new.store, "store");
    keep(running.admin_listen != new.admin_listen, "admin.listen");
    keep(running.demo_upstream != new.demo_upstream, "demoUpstream");
    keep(running.log_format != new.log_format, "log.format");
    keep(running.log_level != new.log_level, "log.level");
    keep(
        running.shutdown_timeout_seconds != new.shutdown_timeout_seconds,
        "shutdownTimeoutSeconds",
    );
    keep(
        running.upgrade_socket != new.upgrade_socket,
        "upgradeSocket",
    );
    keep(
        running.max_connections != new.max_connections,
        "limits.maxConnections",
    );
    new.listen = running.listen;
    if running.tls.is_some() != new.tls.is_some() {
        new.tls = running.tls.clone();
    }
    new.protocols = running.protocols;
    new.threads = running.threads;
    new.api = running.api;
    new.store = running.store.clone();
    new.admin_listen = running.admin_listen;
    new.demo_upstream = running.demo_upstream;
    new.log_format = running.log_format;
    new.log_level = running.log_level.clone();
    new.shutdown_timeout_seconds = running.shutdown_timeout_seconds;
    new.upgrade_socket = running.upgrade_socket.clone();
    new.max_connections = running.max_connections;
    warnings
}

/// The first 16 hex digits of the SHA-256 of `bytes` (what a reload reports of the file it
/// read; `gatehouse reload` compares it with the file it was given).
pub(crate) fn hash_of(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The hash's first 32 bits as a number (a gauge holds them exactly).
fn hash_gauge(hash: &str) -> i64 {
    hash.get(..8)
        .and_then(|h| i64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// Asks the reload thread for a reload and waits for its report.
#[derive(Clone)]
pub struct ReloadHandle(mpsc::UnboundedSender<oneshot::Sender<Report>>);

impl ReloadHandle {
    /// Reloads (after any reload under way); `None` when the reload thread is gone.
    pub async fn reload(&self) -> Option<Report> {
        let (reply, answer) = oneshot::channel();
        self.0.send(reply).ok()?;
        answer.await.ok()
    }
}

/// What [`spawn`] returns: the handle for the admin listener.
pub struct Spawned {
    /// Asks for a reload.
    pub handle: ReloadHandle,
}

/// Takes over `SIGHUP` at once (from now on it reloads instead of ending the process) and
/// starts the thread that reloads on it and on the handle's requests, one at a time. `Err`
/// when the signal handler or the thread cannot be set up.
pub fn listen_for_hangup() -> std::io::Result<Hangup> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signal = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    })?;
    Ok(Hangup { runtime, signal })
}

/// `SIGHUP` taken over (see [`listen_for_hangup`]), waiting for its [`Reloader`].
pub struct Hangup {
    runtime: tokio::runtime::Runtime,
    signal: tokio::signal::unix::Signal,
}

/// Starts the reload thread over `reloader`: every `SIGHUP` caught by `hangup` (also those
/// caught before this call) and every request of the returned handle reloads.
pub fn spawn(reloader: Reloader, hangup: Hangup) -> std::io::Result<Spawned> {
    let (sender, mut requests) = mpsc::unbounded_channel::<oneshot::Sender<Report>>();
    let Hangup {
        runtime,
        mut signal,
    } = hangup;
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    tokio::select! {
                        Some(()) = signal.recv() => {
                            tracing::info!("SIGHUP received: reloading the configuration");
                            reloader.reload().await;
                        }
                        Some(reply) = requests.recv() => {
                            let _ = reply.send(reloader.reload().await);
                        }
                        else => return,
                    }
                }
            })
        })?;
    Ok(Spawned {
        handle: ReloadHandle(sender),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        config::parse(text, Path::new("/etc/gatehouse"), |_| None).expect("valid configuration")
    }

    const BASE: &str = "listen: 127.0.0.1:9011\nstore: sqlite://data/g.db\nkeys:\n  - {id: 9a3c1e3a-5c5e-4d1e-9f3a-2b1c0d9e8f7a, algorithm: HS256, secret: 0123456789abcdef0123456789abcdef}\nroutes:\n  - {path: /, upstream: http://127.0.0.1:9012, auth: {enabled: false}}\n";

    #[test]
    fn fields_only_a_restart_changes_keep_their_running_value_and_are_named() {
        let running = config(BASE);
        let mut new = config(
            &BASE
                .replace("127.0.0.1:9011", "127.0.0.1:9111")
                .replace("data/g.db", "data/other.db")
                .replace("/, upstream", "/x, upstream"),
        );
        let warnings = keep_restart_only(&running, &mut new);
        assert_eq!(
            warnings,
            vec![
                "listen: changes only with a restart; the running value is kept".to_string(),
                "store: changes only with a restart; the running value is kept".to_string(),
            ]
        );
        assert_eq!(new.listen, running.listen);
        assert_eq!(new.store, running.store);
        // What a reload may change is the new file's.
        assert_eq!(new.routes[0].path, "/x");
    }

    #[test]
    fn the_connection_limit_keeps_its_running_value() {
        let running = config(BASE);
        let mut new = config(&format!("{BASE}limits: {{maxConnections: 5}}\n"));
        assert_eq!(
            keep_restart_only(&running, &mut new),
            vec![
                "limits.maxConnections: changes only with a restart; the running value is kept"
                    .to_string()
            ]
        );
        assert_eq!(new.max_connections, 10_000);
    }

    #[test]
    fn an_unchanged_file_has_no_warning() {
        let running = config(BASE);
        let mut new = config(BASE);
        assert!(keep_restart_only(&running, &mut new).is_empty());
    }

    #[test]
    fn a_start_up_error_is_placed_at_its_line() {
        let problem = located(
            BASE,
            StartError::Setup {
                path: "routes[0].upstream".into(),
                message: "cannot resolve".into(),
            },
        );
        assert_eq!(problem.path, "routes[0].upstream");
        assert!(
            problem
                .message
                .starts_with("cannot resolve (line 6, column"),
            "{}",
            problem.message
        );
        let store = located(BASE, StartError::Listen("x".into()));
        assert_eq!(store.path, "listen");
        assert!(
            store.message.contains("(line 1, column 1)"),
            "{}",
            store.message
        );
    }

    #[test]
    fn the_hash_is_sha256_and_its_gauge_its_first_32_bits() {
        // SHA-256("abc") = ba7816bf 8f01cfea …
        assert_eq!(hash_of(b"abc"), "ba7816bf8f01cfea");
        assert_eq!(hash_gauge("ba7816bf8f01cfea"), 0xba7816bf);
        assert_eq!(hash_gauge(""), 0);
    }
}
