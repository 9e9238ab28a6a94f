//! Command-line interface: `serve` (the default), `check`, `reload` (asks the running gateway's
//! admin listener to reload the configuration file), `token` (a development helper
//! that signs an access token with the configured keys), and the hidden `lambda-worker` (the
//! process the gateway runs reconcile lambdas in; see [`crate::api::plugins::lambda_worker`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use gatehouse_plugin_api::model::{Registration, User};
use gatehouse_plugin_api::{AccessTokenRequest, Clock, SystemClock, TokenService};
use uuid::Uuid;

use crate::config::{self, Config, LogFormat};

/// Gatehouse, an authentication gateway.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The configuration file (of every command; `serve` when no command is given).
    #[arg(long, short, global = true, default_value = "config.yaml")]
    config: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve {
        /// Binary upgrade: receive the listeners of the gateway running with this configuration
        /// over its `upgradeSocket` (send it SIGQUIT once this one waits) instead of binding
        /// them; fails when none are handed over within 5 seconds.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a configuration file without starting; prints every problem with its path.
    Check,
    /// Reload the running gateway's configuration from its file (as SIGHUP does), through its
    /// admin listener; prints what happened: the new generation, or every problem (the running
    /// configuration then stays in force).
    Reload {
        /// The admin listener to ask (default: `admin.listen` of the configuration file).
        #[arg(long)]
        admin: Option<std::net::SocketAddr>,
    },
    /// Development helper: print an access token for a user of an application, signed with the
    /// configured keys (uses the same store, so generated keys match the running gateway).
    Token {
        /// The application (its tenant's issuer and key are used).
        #[arg(long)]
        application_id: Uuid,
        /// The user id (`sub`); random when absent.
        #[arg(long)]
        user_id: Option<Uuid>,
        /// The email claim.
        #[arg(long, default_value = "dev@example.com")]
        email: String,
        /// Roles, comma-separated; the application's default roles when absent.
        #[arg(long)]
        roles: Option<String>,
        /// Also store the user and registration and issue a refresh token; prints JSON
        /// `{"token", "refreshToken", "refreshTokenId", "userId"}`.
        #[arg(long)]
        refresh: bool,
        /// With `--refresh`: this many users (`0.EMAIL`, `1.EMAIL`, …), one JSON line each
        /// (1 to 100000).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
    },
    /// Internal: a lambda worker, started by the gateway; reads jobs on stdin, answers on stdout.
    #[command(hide = true)]
    LambdaWorker,
}

fn init_logging(config: Option<&Config>) {
    let level = config.map_or("info", |c| c.log_level.as_str());
    let format = config.map_or(LogFormat::Text, |c| c.log_format);
    let access = config.is_some_and(|c| c.access_log);
    crate::observe::logging::init(level, format, access);
}

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if matches!(cli.command, Some(Command::LambdaWorker)) {
        // No configuration, no logging: the worker only speaks its protocol.
        let stdin = std::io::stdin();
        let stdout = std::io::stdout();
        return gatehouse_plugin_identity_provider::worker::serve(stdin.lock(), stdout.lock());
    }
    let loaded = config::load(&cli.config);
    match cli.command.unwrap_or(Command::Serve { upgrade: false }) {
        Command::Check => check(&cli.config, loaded),
        Command::Serve { upgrade } => {
            let config = match loaded {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{}: invalid configuration", cli.config.display());
                    for e in &errors.0 {
                        eprintln!("  {e}");
                    }
                    return 1;
                }
            };
            init_logging(Some(&config));
            match crate::server::run(config, &cli.config, upgrade) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("cannot start: {e}");
                    eprintln!("cannot start: {e}");
                    1
                }
            }
        }
        Command::Reload { admin } => reload(&cli.config, admin, loaded),
        Command::Token {
            application_id,
            user_id,
            email,
            roles,
            refresh,
            count,
        } => {
            let config = match loaded {
                Ok(c) => c,
                Err(errors) => {
                    eprintln!("{errors}");
                    return 1;
                }
            };
            let request = TokenRequest {
                application_id,
                user_id,
                email,
                roles,
                refresh,
                count,
            };
            match dev_token(&config, request) {
                Ok(token) => {
                    println!("{token}");
                    0
                }
                Err(message) => {
                    eprintln!("{message}");
                    1
                }
            }
        }
        Command::LambdaWorker => unreachable!("handled before the configuration is read"),
    }
}

/// `gatehouse reload`: asks the admin listener at `admin` (else the file's `admin.listen`) to
/// reload; returns the exit code (0: applied).
fn reload(
    path: &std::path::Path,
    admin: Option<std::net::SocketAddr>,
    loaded: Result<Config, config::ConfigErrors>,
) -> i32 {
    let address = match (admin, &loaded) {
        (Some(address), _) => address,
        (None, Ok(config)) => match config.admin_listen {
            Some(address) => address,
            None => {
                eprintln!("{}: no admin.listen to ask; give --admin, or send SIGHUP to the gateway's process", path.display());
                return 1;
            }
        },
        (None, Err(errors)) => {
            eprintln!("{}: invalid configuration; nothing was sent, the running configuration stays in force", path.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return 1;
        }
    };
    let (status, body) = match post_reload(address) {
        Ok(answer) => answer,
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            eprintln!("the admin listener at {address} did not answer within 60 s: is this Gatehouse's admin listener (admin.listen)?");
            return 1;
        }
        Err(e) => {
            eprintln!("cannot reach the admin listener at {address}: {e}");
            return 1;
        }
    };
    // What the gateway will read: its own file, whatever `path` is; the hash it reports back
    // tells whether that was this file's content.
    let expected = std::fs::read(path)
        .ok()
        .map(|bytes| crate::server::reload::hash_of(&bytes));
    print_reload_answer(path, address, expected.as_deref(), status, &body)
}

/// Sends `POST /reload` to the admin listener at `address`; its status and JSON body.
fn post_reload(address: std::net::SocketAddr) -> std::io::Result<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(5))?;
    // A reload waits for a file being written (at most 5 s) and builds the gateway (the store,
    // upstream names); an address that accepts and never answers is not the gateway.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    stream.write_all(
        format!("POST /reload HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(invalid)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    ))
}

/// Prints the admin listener's answer (at `address`) to a reload of `path`, whose content
/// hashes to `expected` (`None`: unreadable); returns the exit code (0: `path`'s content is in
/// force). The gateway reloads the file it was started with: when the hash it reports is not
/// `path`'s, `path` was not what it reloaded, and that is said (exit 1).
fn print_reload_answer(
    path: &std::path::Path,
    address: std::net::SocketAddr,
    expected: Option<&str>,
    status: u16,
    body: &serde_json::Value,
) -> i32 {
    let hash = body["hash"].as_str().unwrap_or("");
    if status == 200 && expected != Some(hash) {
        eprintln!(
            "{}: not reloaded: the gateway at {address} reloaded the file it runs with (generation {}, hash {hash}), and that content is not this file's (hash {}); to put this file in force, start the gateway with it",
            path.display(),
            body["generation"],
            expected.unwrap_or("unreadable"),
        );
        return 1;
    }
    if status == 200 {
        println!(
            "{}: reloaded (generation {}, hash {hash})",
            path.display(),
            body["generation"],
        );
        for warning in body["warnings"].as_array().into_iter().flatten() {
            eprintln!("warning: {}", warning.as_str().unwrap_or(""));
        }
        return 0;
    }
    if status == 400 {
        // The problems are those of the file the gateway runs with, which may not be `path`.
        eprintln!(
            "{}: the gateway at {address} refused the file it runs with (this file, unless it was started with another); the running configuration stays in force",
            path.display()
        );
        let fields = body["fieldErrors"]
            .as_object()
            .into_iter()
            .flat_map(|f| f.values());
        let general = std::iter::once(&body["generalErrors"]);
        for error in fields.chain(general).filter_map(|v| v.as_array()).flatten() {
            eprintln!("  {}", error["message"].as_str().unwrap_or(""));
        }
        return 1;
    }
    // The admin listener's own refusals: not from loopback (403), no reload thread (503).
    if matches!(status, 403 | 503) && body.get("generalErrors").is_some() {
        eprintln!("the gateway refused the reload ({status}): {body}");
    } else {
        eprintln!(
            "the admin listener answered {status}, not a reload's answer: is this Gatehouse's admin listener (admin.listen)?"
        );
    }
    1
}

/// What `gatehouse token` was asked for.
struct TokenRequest {
    application_id: Uuid,
    user_id: Option<Uuid>,
    email: String,
    roles: Option<String>,
    refresh: bool,
    count: u32,
}

fn dev_token(config: &Config, request: TokenRequest) -> Result<String, String> {
    let application = config
        .applications
        .iter()
        .find(|a| a.id == request.application_id)
        .ok_or("--application-id: no application with this id in the configuration")?;
    let tenant = config
        .tenants
        .iter()
        .find(|t| t.id == application.tenant_id)
        .ok_or("the application's tenant is not declared")?;
    if request.count > 1 && (!request.refresh || request.user_id.is_some()) {
        return Err("--count needs --refresh and no --user-id".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let prepared = crate::server::prepare(config)
            .await
            .map_err(|e| e.to_string())?;
        let mut lines = Vec::with_capacity(request.count as usize);
        for index in 0..request.count.max(1) {
            let email = if request.count > 1 {
                format!("{index}.{}", request.email)
            } else {
                request.email.clone()
            };
            lines.push(mint(&prepared, tenant, application, &request, email).await?);
        }
        Ok(lines.join("\n"))
    })
}

/// One user's token (and, with `--refresh`, stored user, registration and refresh token).
async fn mint(
    prepared: &crate::server::Prepared,
    tenant: &gatehouse_plugin_api::model::Tenant,
    application: &gatehouse_plugin_api::model::Application,
    request: &TokenRequest,
    email: String,
) -> Result<String, String> {
    let store = prepared.store.clone();
    let now = SystemClock.now_millis();
    let existing = if request.refresh {
        store
            .find_user_by_email(tenant.id, &email)
            .await
            .map_err(|e| e.to_string())?
    } else {
        None
    };
    let user = match existing {
        Some(user) => user,
        None => {
            let user = User {
                id: request.user_id.unwrap_or_else(Uuid::new_v4),
                tenant_id: tenant.id,
                email: Some(email),
                verified: true,
                insert_instant: now,
                last_update_instant: now,
                ..Default::default()
            };
            if request.refresh {
                store.create_user(&user).await.map_err(|e| e.to_string())?;
            }
            user
        }
    };
    let registration = Registration {
        id: Uuid::new_v4(),
        application_id: application.id,
        user_id: Some(user.id),
        roles: request
            .roles
            .as_ref()
            .map(|r| {
                r.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_else(|| application.default_roles()),
        insert_instant: now,
        last_update_instant: now,
        ..Default::default()
    };
    let refresh_token = if request.refresh {
        store
            .upsert_registration(&registration)
            .await
            .map_err(|e| e.to_string())?;
        // Issuing only: no rotation happens here.
        let rotations = gatehouse_plugin_api::RotationLedger::new();
        let env = gatehouse_refresh::RefreshEnv::new(
            store.as_ref(),
            prepared.tokens.as_ref(),
            &SystemClock,
            gatehouse_refresh::DEFAULT_RACE_WINDOW_MS,
            &rotations,
        );
        Some(
            gatehouse_refresh::issue_refresh_token(
                env,
                &user,
                tenant,
                Some(application),
                Default::default(),
            )
            .await
            .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let issued = prepared
        .tokens
        .issue_access_token(&AccessTokenRequest {
            user: &user,
            tenant,
            application: Some(application),
            registration: Some(&registration),
            authentication_type: "PASSWORD",
            expires_at: None,
            session_id: refresh_token.as_ref().map(|t| t.id),
        })
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(match refresh_token {
        Some(rt) => serde_json::json!({
            "token": issued.token,
            "refreshToken": rt.token,
            "refreshTokenId": rt.id,
            "userId": user.id,
        })
        .to_string(),
        None => issued.token,
    })
}

/// `gatehouse check`: the exit status for the configuration `loaded` from `file`, with every
/// problem (1) or warning (0) written out.
fn check(file: &std::path::Path, loaded: Result<Config, config::ConfigErrors>) -> i32 {
    let config = match loaded {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}: invalid configuration", file.display());
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return 1;
        }
    };
    if let Some(problem) = tls_problem(&config, file) {
        eprintln!("{}: invalid configuration", file.display());
        eprintln!("  {problem}");
        return 1;
    }
    // A warning, not an error: the gateway may run where the name resolves.
    for warning in crate::proxy::routes::unresolvable(&config.routes) {
        eprintln!("warning: {warning} (the gateway does not start while it does not resolve)");
    }
    let warnings = config::issuer_warnings(&config.tenants)
        .into_iter()
        .chain(config::login_warnings(&config))
        .chain(config::route_warnings(&config.routes))
        .chain(config::store_warnings(&config));
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    println!("{}: ok", file.display());
    0
}

/// What `serve` (and a reload) would refuse in the TLS files `config` names — a file with no
/// certificate or no key, a key that does not belong to the certificate — as `field: message
/// (line, column)` of `file`; `None` without TLS or when the files load.
fn tls_problem(config: &Config, file: &std::path::Path) -> Option<config::ConfigError> {
    let (certificate, key) = config.tls.as_ref()?;
    let error = crate::server::tls::Certificates::read(certificate, key).err()?;
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let setup = crate::server::StartError::Setup {
        path: error.field.to_string(),
        message: error.message,
    };
    Some(crate::server::reload::located(&text, setup))
}
