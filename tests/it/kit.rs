//! The test kit: [`TestGateway`] writes a config with free ports and a temp store, starts the
//! real binary, waits for `/health`, and stops it on drop. [`Keys`] holds key material the
//! tests sign tokens with.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gatehouse::auth::keys::generate_material;
use gatehouse::config::{KeySource, KeySpec};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

pub const TENANT: &str = "0a6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f";
pub const OTHER_TENANT: &str = "0b6a8d1e-3f2b-4c5d-8e9f-1a2b3c4d5e6f";
pub const APP: &str = "3c219e58-ed0e-4b18-ad48-f4f92793ae32";
pub const OTHER_APP: &str = "4c219e58-ed0e-4b18-ad48-f4f92793ae32";
pub const API_KEY: &str = "test-api-key-0123456789abcdef";
pub const TENANT_API_KEY: &str = "tenant-locked-api-key-0123456789";
pub const ISSUER: &str = "acme.test";

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct free TCP ports on loopback: all are held open together while they are chosen,
/// so no two are the same, and none was handed out before in this test process. A port is
/// released before its gateway binds it, so the system may offer it again meanwhile; two
/// gateways given the same port would both bind it (the engine sets `SO_REUSEPORT`) and share
/// its connections, each test then talking to the other's gateway.
pub fn free_ports<const N: usize>() -> [u16; N] {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut fresh: Vec<(u16, TcpListener)> = Vec::with_capacity(N);
    // A port handed out before stays bound here until the end, so the system offers others.
    let mut skipped = Vec::new();
    while fresh.len() < N {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("address").port();
        if handed_out.contains(&port) {
            skipped.push(listener);
            continue;
        }
        handed_out.push(port);
        fresh.push((port, listener));
    }
    std::array::from_fn(|i| fresh[i].0)
}

/// A loopback server that runs `serve` on each connection it accepts, each in a thread of its
/// own (a scripted upstream); returns its port.
pub fn serve_connections(serve: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serve = std::sync::Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = serve.clone();
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

/// The shipped `config.yaml` with every listener moved to a free port: `[listen, demo,
/// admin]`. Panics when the file names a fixed address this does not replace, so no test ever
/// binds the shipped config's ports (which the README's first command uses).
pub fn shipped_config_on_free_ports() -> (String, [u16; 3]) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let ports = free_ports::<3>();
    let mut config = std::fs::read_to_string(repo.join("config.yaml")).expect("config.yaml");
    for (variable, port) in [
        ("GATEHOUSE_LISTEN", ports[0]),
        ("GATEHOUSE_DEMO_LISTEN", ports[1]),
        ("GATEHOUSE_ADMIN_LISTEN", ports[2]),
    ] {
        let opening = format!("${{{variable}:-");
        assert!(config.contains(&opening), "config.yaml has no {opening}…}}");
        while let Some(start) = config.find(&opening) {
            let end = start + config[start..].find('}').expect("closing brace") + 1;
            config.replace_range(start..end, &format!("127.0.0.1:{port}"));
        }
    }
    assert!(
        !config.contains("LISTEN:-"),
        "config.yaml has a listener this helper does not move"
    );
    (config, ports)
}

/// The gateway's algorithm for one of the JWT library's (same JOSE name).
pub fn key_algorithm(algorithm: Algorithm) -> gatehouse::auth::keys::KeyAlgorithm {
    gatehouse::auth::keys::KeyAlgorithm::from_name(&format!("{algorithm:?}")).expect("a JOSE name")
}

/// Key material per algorithm, as PEM text or secrets the tests also sign with.
pub struct Keys {
    pub entries: Vec<(Uuid, Algorithm, String)>,
    /// More keys, by JOSE algorithm name, with a private-key PEM made outside the gateway
    /// (e.g. ES512, which the JWT library above cannot sign with).
    pub pem_keys: Vec<(Uuid, &'static str, String)>,
}

impl Keys {
    /// One key per algorithm family (and then some): RS256, PS384, ES256, ES384, EdDSA, HS256.
    pub fn generate() -> Keys {
        let algorithms = [
            Algorithm::RS256,
            Algorithm::PS384,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
            Algorithm::HS256,
        ];
        let entries = algorithms
            .iter()
            .map(|&algorithm| {
                let spec = KeySpec {
                    id: Uuid::new_v4(),
                    name: "t".into(),
                    algorithm: key_algorithm(algorithm),
                    source: KeySource::Generate,
                };
                let material = generate_material(&spec, 0).expect("generate");
                let text = material.private_key.or(material.secret).expect("material");
                (spec.id, algorithm, text)
            })
            .collect();
        Keys {
            entries,
            pem_keys: Vec::new(),
        }
    }

    /// These keys and one more: `private_pem` for `algorithm`, as the key `id`.
    pub fn with_pem_key(mut self, id: Uuid, algorithm: &'static str, private_pem: &str) -> Keys {
        self.pem_keys.push((id, algorithm, private_pem.to_string()));
        self
    }

    pub fn get(&self, algorithm: Algorithm) -> &(Uuid, Algorithm, String) {
        self.entries
            .iter()
            .find(|(_, a, _)| *a == algorithm)
            .expect("key for algorithm")
    }

    /// YAML for the `keys:` section (private keys inline as block scalars).
    fn yaml(&self) -> String {
        let mut out = String::from("keys:\n");
        for (id, algorithm, text) in &self.entries {
            let name = key_algorithm(*algorithm).name();
            if *algorithm == Algorithm::HS256 {
                out.push_str(&format!(
                    "  - {{id: {id}, algorithm: {name}, secret: \"{text}\"}}\n"
                ));
            } else {
                out.push_str(&format!(
                    "  - id: {id}\n    algorithm: {name}\n    privateKey: |\n"
                ));
                for line in text.lines() {
                    out.push_str(&format!("      {line}\n"));
                }
            }
        }
        for (id, name, pem) in &self.pem_keys {
            out.push_str(&format!(
                "  - id: {id}\n    algorithm: {name}\n    privateKey: |\n"
            ));
            for line in pem.lines() {
                out.push_str(&format!("      {line}\n"));
            }
        }
        out
    }

    /// Signs `claims` with the key of `algorithm`, setting `kid`.
    pub fn sign(&self, algorithm: Algorithm, claims: &Value) -> String {
        let (id, _, text) = self.get(algorithm);
        let key = match algorithm {
            Algorithm::HS256 => EncodingKey::from_secret(text.as_bytes()),
            Algorithm::ES256 | Algorithm::ES384 => {
                EncodingKey::from_ec_pem(text.as_bytes()).expect("ec")
            }
            Algorithm::EdDSA => EncodingKey::from_ed_pem(text.as_bytes()).expect("ed"),
            _ => EncodingKey::from_rsa_pem(text.as_bytes()).expect("rsa"),
        };
        let mut header = Header::new(algorithm);
        header.kid = Some(id.to_string());
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// FusionAuth-like access-token claims for the test user.
pub fn claims(user: Uuid, application: &str, roles: &[&str]) -> Value {
    json!({
        "sub": user,
        "aud": application,
        "applicationId": application,
        "roles": roles,
        "email": "ann@example.com",
        "iss": ISSUER,
        "tid": TENANT,
        "iat": now(),
        "exp": now() + 600,
    })
}

/// A TCP connection to loopback `port` whose reads wait at most `read_timeout`.
pub fn connect_with_timeout(port: u16, read_timeout: Duration) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(read_timeout))
        .expect("read timeout");
    stream
}

/// An `extra_routes` entry: `path` open (no authentication) to the HTTP/1.1 upstream on
/// loopback `port`.
pub fn open_route(path: &str, port: u16) -> String {
    format!(
        "  - path: {path}\n    upstream: http://127.0.0.1:{port}\n    auth: {{enabled: false}}\n"
    )
}

/// Options for the generated configuration.
#[derive(Clone)]
pub struct Options {
    /// Extra YAML appended to the `routes:` list; in it `$UPSTREAM` is the main upstream and
    /// `DEMO_PORT` the demo upstream's port.
    pub extra_routes: String,
    /// Extra top-level YAML; `$PORT` in it is this gateway's port.
    pub extra: String,
    /// Upstream for the main routes; the demo upstream when `None`.
    pub upstream: Option<String>,
    /// JWT settings of the main application (YAML flow mapping body).
    pub app_jwt: String,
    /// JWT settings of the tenant (YAML flow mapping body, without accessTokenKeyId).
    pub tenant_jwt: String,
    /// The `store:` URL (e.g. `postgres://...`); the gateway's SQLite file when `None`.
    pub store_url: Option<String>,
    /// `validation.leewaySeconds`.
    pub leeway_seconds: u64,
    /// `limits.idleTimeoutSeconds`.
    pub idle_timeout_seconds: u64,
    /// `limits.maxConnections`.
    pub max_connections: u64,
    /// `rotation.raceWindowSeconds`, an opt-in: absent by default (the gateway's default, no
    /// window), so the tests check FusionAuth's grace-period rule as shipped; the window has
    /// tests of its own.
    pub race_window_seconds: Option<u64>,
    /// `RUST_LOG` for the gateway process (`info` by default).
    pub rust_log: String,
    /// The settings of the identity-provider plugin (YAML flow mapping body).
    pub identity_provider: String,
    /// `limits.maxBodyBytes`.
    pub max_body_bytes: u64,
    /// The main tenant's issuer ([`ISSUER`] when `None`); `$PORT` in it stands for this
    /// gateway's port (e.g. `http://127.0.0.1:$PORT`, for OpenID Connect discovery).
    pub issuer: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            extra_routes: String::new(),
            extra: String::new(),
            upstream: None,
            app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: Reusable"
                .into(),
            tenant_jwt: "timeToLiveInSeconds: 3600".into(),
            store_url: None,
            leeway_seconds: 0,
            idle_timeout_seconds: 60,
            max_connections: 10_000,
            race_window_seconds: None,
            rust_log: "info".into(),
            identity_provider: String::new(),
            max_body_bytes: 65_536,
            issuer: None,
        }
    }
}

/// A running gateway.
pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub demo_port: u16,
    /// The admin listener's port (`/metrics`, `/health` with details).
    pub admin_port: u16,
    pub keys: std::sync::Arc<Keys>,
    pub config_path: PathBuf,
    /// The SQLite file; shared when the gateway is a peer of another (see `start_peer`).
    store: PathBuf,
    /// The listener speaks TLS (the options' `extra` configures `tls:`).
    pub tls: bool,
    /// `RUST_LOG` for the process (the options' `rust_log`).
    rust_log: String,
    child: Option<Child>,
}

impl TestGateway {
    /// Starts a gateway with default options and fresh keys.
    pub fn start() -> TestGateway {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> TestGateway {
        Self::start_with_keys(options, Keys::generate())
    }

    /// Starts a gateway with these keys, so `options` can name their ids (e.g. an
    /// application's `accessTokenKeyId`).
    pub fn start_with_keys(options: Options, keys: Keys) -> TestGateway {
        let keys = std::sync::Arc::new(keys);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut gateway = TestGateway {
            port: 0,
            demo_port: 0,
            admin_port: 0,
            config_path: dir.path().join("config.yaml"),
            store: dir.path().join("data").join("gatehouse.db"),
            tls: options.extra.contains("tls:"),
            dir,
            keys,
            rust_log: options.rust_log.clone(),
            child: None,
        };
        gateway.spawn_on_free_ports(&options);
        gateway
    }

    /// Starts a second gateway (another node) with the same keys and the same SQLite store.
    pub fn start_peer(&self, options: &Options) -> TestGateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut gateway = TestGateway {
            port: 0,
            demo_port: 0,
            admin_port: 0,
            config_path: dir.path().join("config.yaml"),
            store: self.store.clone(),
            tls: options.extra.contains("tls:"),
            dir,
            keys: self.keys.clone(),
            rust_log: options.rust_log.clone(),
            child: None,
        };
        gateway.spawn_on_free_ports(options);
        gateway
    }

    /// The configuration text for these options.
    pub fn config_text(&self, options: &Options) -> String {
        let rs = self.keys.get(Algorithm::RS256).0;
        let upstream = options
            .upstream
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", self.demo_port));
        format!(
            r#"listen: 127.0.0.1:{port}
threads: 2
store: {store}
apiKeys:
  - key: {API_KEY}
  - key: {TENANT_API_KEY}
    tenantId: {OTHER_TENANT}
{keys}
tenants:
  - id: {TENANT}
    name: Default
    issuer: {issuer}
    jwtConfiguration: {{accessTokenKeyId: {rs}, {tenant_jwt}}}
  - id: {OTHER_TENANT}
    name: Other
    issuer: other.test
    jwtConfiguration: {{accessTokenKeyId: {rs}}}
applications:
  - id: {APP}
    tenantId: {TENANT}
    name: App
    roles: [{{name: user, isDefault: true}}, {{name: admin}}]
    loginConfiguration: {{generateRefreshTokens: true}}
    jwtConfiguration: {{{app_jwt}}}
  - id: {OTHER_APP}
    tenantId: {TENANT}
    name: Other app
    roles: [{{name: viewer, isDefault: true}}]
    loginConfiguration: {{generateRefreshTokens: true}}
plugins:
  jwt: {{}}
  identity-provider: {{{idp}}}
demoUpstream:
  listen: 127.0.0.1:{demo}
admin:
  listen: 127.0.0.1:{admin}
limits: {{maxBodyBytes: {max_body}, maxHeaderBytes: 8192, idleTimeoutSeconds: {idle}, maxConnections: {max_connections}}}
validation: {{leewaySeconds: {leeway}}}
{race}{extra}
routes:
  - path: /
    upstream: {upstream}
    auth: {{applicationId: {APP}}}
    identityHeaders: {{X-User-Id: sub, X-User-Email: email, X-User-Roles: roles}}
  - path: /admin
    upstream: {upstream}
    auth: {{applicationId: {APP}, roles: [admin], loginUrl: "https://login.example/login"}}
    identityHeaders: {{X-User-Id: sub, X-User-Roles: roles}}
  - path: /public
    upstream: {upstream}
    auth: {{required: false}}
    identityHeaders: {{X-User-Id: sub}}
  - path: /down
    upstream: http://127.0.0.1:{closed}
    auth: {{required: false}}
{extra_routes}"#,
            port = self.port,
            store = options
                .store_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", self.store_path().display())),
            keys = self.keys.yaml(),
            issuer = options
                .issuer
                .as_deref()
                .unwrap_or(ISSUER)
                .replace("$PORT", &self.port.to_string()),
            tenant_jwt = options.tenant_jwt,
            app_jwt = options.app_jwt,
            demo = self.demo_port,
            admin = self.admin_port,
            leeway = options.leeway_seconds,
            idle = options.idle_timeout_seconds,
            max_connections = options.max_connections,
            race = options
                .race_window_seconds
                .map(|s| format!("rotation: {{raceWindowSeconds: {s}}}\n"))
                .unwrap_or_default(),
            idp = options.identity_provider,
            max_body = options.max_body_bytes,
            // `$PORT` in extra YAML stands for this gateway's port.
            extra = options.extra.replace("$PORT", &self.port.to_string()),
            // `$UPSTREAM` in extra routes stands for this gateway's upstream.
            extra_routes = options
                .extra_routes
                .replace("$UPSTREAM", &upstream)
                .replace("DEMO_PORT", &self.demo_port.to_string()),
            closed = free_port(),
        )
    }

    pub fn store_path(&self) -> PathBuf {
        self.store.clone()
    }

    pub fn write_config(&self, options: &Options) {
        std::fs::write(&self.config_path, self.config_text(options)).expect("write config");
    }

    /// Starts the gateway on fresh free ports, choosing again (up to five times) when one was
    /// taken between its choice and the gateway's bind: another test may bind or connect from a
    /// port [`free_ports`] just released.
    fn spawn_on_free_ports(&mut self, options: &Options) {
        for _ in 0..5 {
            [self.port, self.demo_port, self.admin_port] = free_ports::<3>();
            self.write_config(options);
            match self.try_spawn() {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") => continue,
                Err(log) => panic!("gatehouse exited:\n{log}"),
            }
        }
        panic!("gatehouse found no free ports:\n{}", self.log());
    }

    /// Starts the gateway on its ports (a restart keeps them); panics when it exits.
    fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("gatehouse exited:\n{log}");
        }
    }

    /// Starts the gateway and waits (up to 30 s) for its `/health`; `Err` with its log when it
    /// exits first.
    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("gatehouse.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config"])
            .arg(&self.config_path)
            .env("RUST_LOG", &self.rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn gatehouse");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = client();
        loop {
            if let Ok(r) = client.get(self.url("/health")).send() {
                if r.status().as_u16() == 200 {
                    return Ok(());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!("{status}:\n{}", self.log()));
                }
            }
            if Instant::now() > deadline {
                panic!("gatehouse did not become healthy:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process (SIGTERM, then kill) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY-free: `kill` by pid via the command line keeps the kit dependency-free.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the process to end by itself; its exit status, or `None`
    /// while it still runs (it is then left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id of the running gateway.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The gateway's child processes (its lambda workers), with the CPU time (clock ticks) each
    /// has used so far.
    pub fn child_processes(&self) -> Vec<(u32, u64)> {
        let Some(child) = self.child.as_ref() else {
            return Vec::new();
        };
        let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id())).expect("tasks");
        let mut pids: Vec<u32> = tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|l| {
                l.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.into_iter()
            .filter_map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // After the `(comm)` field: state, then fields 4–13; utime and stime are 14, 15.
                let rest = &stat[stat.rfind(')')? + 2..];
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks =
                    fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
                Some((pid, ticks))
            })
            .collect()
    }

    /// Kills the process at once (SIGKILL: no shutdown, nothing flushed by the process), then
    /// starts it again on the same config and store.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// Stops and starts again on the same config and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("gatehouse.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// The log once `done` says it holds what a test waits for (access lines are written at
    /// least every 100 ms, later on a loaded machine), or as it is after 10 s.
    pub fn log_when(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if done(&log) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` with `Authorization: Bearer token`, on a fresh [`client`].
    pub fn get_as(&self, path: &str, token: impl std::fmt::Display) -> reqwest::blocking::Response {
        client()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .expect("send")
    }

    /// A URL on the admin listener (plain HTTP).
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}{}", self.port, path)
    }

    /// Signs a token for `user` with the key of `algorithm`.
    pub fn token(&self, algorithm: Algorithm, claims: &Value) -> String {
        self.keys.sign(algorithm, claims)
    }
}

/// A user session made by the dev command `gatehouse token --refresh`: an access token (with
/// `sid` = the refresh token id) and a refresh token, both stored like a login would.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub refresh_token: String,
    pub refresh_token_id: String,
    pub user_id: String,
}

impl TestGateway {
    /// Logs `email` in to the main application [`APP`]; see [`TestGateway::login_to`].
    pub fn login(&self, email: &str, roles: &[&str]) -> Session {
        self.login_to(APP, email, roles)
    }

    /// Stores the user `email` (the same user again when the email was used before), registers
    /// it to `application_id` with `roles` (the application's default roles when empty) and
    /// issues a refresh token, with `gatehouse token --refresh` on the gateway's config and store.
    pub fn login_to(&self, application_id: &str, email: &str, roles: &[&str]) -> Session {
        let config = self.config_path.to_str().expect("utf-8 config path");
        let joined = roles.join(",");
        let mut args = vec![
            "token",
            "--config",
            config,
            "--application-id",
            application_id,
            "--email",
            email,
            "--refresh",
        ];
        if !roles.is_empty() {
            args.extend(["--roles", joined.as_str()]);
        }
        let (code, stdout, stderr) = run_cli(&args, self.dir.path());
        assert_eq!(code, 0, "gatehouse token failed:\n{stdout}\n{stderr}");
        let json: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("gatehouse token printed no JSON ({e}): {stdout}"));
        let field = |name: &str| {
            json[name]
                .as_str()
                .unwrap_or_else(|| panic!("no `{name}` in {json}"))
                .to_string()
        };
        Session {
            token: field("token"),
            refresh_token: field("refreshToken"),
            refresh_token_id: field("refreshTokenId"),
            user_id: field("userId"),
        }
    }

    /// Moves the window of stored refresh token `id` (its start and expiration instants)
    /// `millis` into the past, as if that much time had passed since it was issued or last
    /// used. Refresh lifetimes are configured in minutes, so expiry tests age tokens instead of
    /// waiting.
    pub fn age_refresh_token(&self, id: &str, millis: i64) {
        use gatehouse_plugin_api::store::RefreshTokenStore;
        let id = Uuid::parse_str(id).expect("refresh token id is a UUID");
        let store = gatehouse::store::sqlite::SqliteStore::open(
            &self.store_path(),
            std::sync::Arc::new(gatehouse_plugin_api::SystemClock),
        )
        .expect("open the store");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut token = store
                .get_refresh_token(id)
                .await
                .expect("read the refresh token")
                .expect("the refresh token exists");
            token.start_instant -= millis;
            token.expiration_instant -= millis;
            store
                .touch_refresh_token(&token)
                .await
                .expect("write the refresh token");
        });
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An HTTP client that does not follow redirects (and accepts the test's self-signed TLS
/// certificate).
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Asserts the status, printing the body when it is wrong; returns the body as JSON (or Null).
pub fn check_status(response: reqwest::blocking::Response, expected: u16) -> Value {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(status, expected, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Runs `gatehouse` with arguments; returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run gatehouse");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The Python of `target/pyenv` with FusionAuth's official client, running `scripts/bootstrap`
/// first when it is not usable yet (once per test run, even with tests in parallel).
pub fn fusionauth_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
            let python = repo.join("target/pyenv/bin/python");
            let usable = python.exists()
                && Command::new(&python)
                    .args([
                        "-c",
                        "import fusionauth.fusionauth_client, jwt, cryptography",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
            if !usable {
                bootstrap(&["--tests"], &python);
            }
            python
        })
        .clone()
}

/// The directory holding FusionAuth's npm client (`@fusionauth/typescript-client` 1.69.0 in
/// `target/node-clients/node_modules`), running `scripts/bootstrap --tests` first when it is
/// missing (once per test run, even with tests in parallel).
pub fn node_clients() -> PathBuf {
    static NODE_CLIENTS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    NODE_CLIENTS
        .get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
            let dir = repo.join("target/node-clients");
            let package = dir.join("node_modules/@fusionauth/typescript-client/package.json");
            if !package.exists() {
                bootstrap(&["--tests"], &package);
            }
            dir
        })
        .clone()
}

/// Runs `scripts/bootstrap` with `args`; panics with its output when it fails or `made` is
/// still missing after it.
fn bootstrap(args: &[&str], made: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg("scripts/bootstrap")
        .args(args)
        .current_dir(repo)
        .output()
        .expect("run scripts/bootstrap");
    assert!(
        output.status.success(),
        "scripts/bootstrap {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        made.exists(),
        "scripts/bootstrap {args:?} did not make {}",
        made.display()
    );
}

/// A login's session as the client scripts read it (`GATEHOUSE_SESSIONS`).
pub fn session_json(session: &Session) -> Value {
    json!({
        "token": session.token,
        "refreshToken": session.refresh_token,
        "refreshTokenId": session.refresh_token_id,
        "userId": session.user_id,
    })
}

/// The environment the JWT client scripts (`tests/python/jwt_client.py`,
/// `tests/node/jwt_client.mjs`) read: the gateway, its keys, tenants and applications, and the
/// `sessions` logged in for them.
pub fn jwt_client_env(gw: &TestGateway, sessions: &Value) -> Vec<(&'static str, String)> {
    vec![
        ("GATEHOUSE_URL", gw.url("")),
        ("GATEHOUSE_API_KEY", API_KEY.into()),
        ("GATEHOUSE_TENANT_API_KEY", TENANT_API_KEY.into()),
        ("GATEHOUSE_TENANT_ID", TENANT.into()),
        ("GATEHOUSE_OTHER_TENANT_ID", OTHER_TENANT.into()),
        ("GATEHOUSE_APP_ID", APP.into()),
        ("GATEHOUSE_OTHER_APP_ID", OTHER_APP.into()),
        ("GATEHOUSE_ISSUER", ISSUER.into()),
        (
            "GATEHOUSE_RSA_KID",
            gw.keys.get(Algorithm::RS256).0.to_string(),
        ),
        (
            "GATEHOUSE_HMAC_KID",
            gw.keys.get(Algorithm::HS256).0.to_string(),
        ),
        ("GATEHOUSE_SESSIONS", sessions.to_string()),
    ]
}

/// The sessions both JWT client scripts use, of users whose emails start with `prefix`: two
/// sessions of `main` (an admin), `sso` in both applications, and four more users.
pub fn jwt_client_sessions(gw: &TestGateway, prefix: &str) -> serde_json::Map<String, Value> {
    let email = |name: &str| format!("{prefix}-{name}@example.com");
    let mut sessions = serde_json::Map::new();
    let mut add = |name: &str, session: Session| {
        sessions.insert(name.to_string(), session_json(&session));
    };
    add("main", gw.login(&email("main"), &["user", "admin"]));
    add("second", gw.login(&email("main"), &[]));
    add("sso", gw.login(&email("sso"), &[]));
    add("sso_other", gw.login_to(OTHER_APP, &email("sso"), &[]));
    for name in ["carol", "dave", "erin", "frank"] {
        add(name, gw.login(&email(name), &[]));
    }
    sessions
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// An upstream that records the request target of every request it receives and answers 200
/// with it and with the path a typical web framework would serve for it
/// ([`framework_path`]), as JSON: `{"target": …, "served": …, "headers": {…}, "head": …}`
/// (`head`: the header block as received, request line and header lines, byte for byte). A
/// target with `cacheable` in it is answered with headers that let any cache keep the answer.
pub struct RecordingUpstream {
    pub port: u16,
    targets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RecordingUpstream {
    pub fn start() -> RecordingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let targets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = targets.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve_recorded(stream, &seen));
            }
        });
        RecordingUpstream { port, targets }
    }

    /// The request targets received so far, in order.
    pub fn received(&self) -> Vec<String> {
        self.targets.lock().expect("lock").clone()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Serves requests on one connection until the peer closes it.
fn serve_recorded(mut stream: std::net::TcpStream, seen: &std::sync::Mutex<Vec<String>>) {
    use std::io::Write;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let target = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("")
            .to_string();
        let mut headers = serde_json::Map::new();
        let mut length = 0usize;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                let entry = headers.entry(name).or_insert_with(|| json!([]));
                if let Some(values) = entry.as_array_mut() {
                    values.push(json!(value));
                }
            }
        }
        let mut body_read = buffer.len() - end - 4;
        while body_read < length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => body_read += n,
            }
        }
        buffer.drain(..(end + 4 + length).min(buffer.len()));
        seen.lock().expect("lock").push(target.clone());
        let body = json!({
            "target": target,
            "served": framework_path(&target),
            "headers": headers,
            "head": head,
        })
        .to_string();
        // A target naming `cacheable` is answered as a page any cache may keep.
        let caching = if target.contains("cacheable") {
            "Cache-Control: public, max-age=3600\r\nExpires: Thu, 01 Jan 2099 00:00:00 GMT\r\nSurrogate-Control: max-age=3600\r\n"
        } else {
            ""
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{caching}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// The path a lenient web framework or file server would serve for `target`: the query
/// dropped, `\` read as `/`, every percent-encoding decoded (twice, as some stacks do),
/// `;` parameters stripped from each segment, runs of `/` merged, dot-segments resolved, and
/// lower-cased (case-insensitive file systems).
pub fn framework_path(target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let path = match path.find("://") {
        Some(i) => path[i + 3..]
            .find('/')
            .map_or("/", |j| &path[i + 3 + j..])
            .to_string(),
        None => path.to_string(),
    };
    let decoded = percent_decode_lossy(&percent_decode_lossy(&path.replace('\\', "/")));
    let decoded = decoded.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    format!("/{}", out.join("/")).to_ascii_lowercase()
}

fn percent_decode_lossy(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `request` as raw bytes and reads the whole answer (the request should say
/// `Connection: close`). The status (0 when there is none) and the raw response.
pub fn raw_http(port: u16, request: &[u8]) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// The JSON body of a raw response.
pub fn raw_body(response: &str) -> Value {
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// A TCP forwarder in front of a server (the test PostgreSQL) that a test can cut and
/// restore, as a network or database outage would: while cut, it drops every connection it
/// carried and refuses new ones.
pub struct CuttableLink {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    streams: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CuttableLink {
    /// Forwards 127.0.0.1:`port` to `target`.
    pub fn start(target: std::net::SocketAddr) -> CuttableLink {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let streams = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (flag, tracked) = (up.clone(), streams.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                for stream in [&client, &server] {
                    if let Ok(clone) = stream.try_clone() {
                        tracked.lock().expect("lock").push(clone);
                    }
                }
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        CuttableLink { port, up, streams }
    }

    /// Drops every carried connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for stream in self.streams.lock().expect("lock").drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The Python of `target/pyenv` with what the protocol tests drive the gateway with (`grpcio`,
/// `websockets`, `cryptography`), running `scripts/bootstrap --tests` first when one is missing
/// (once per test run, even with tests in parallel).
pub fn protocol_python() -> PathBuf {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
            let python = repo.join("target/pyenv/bin/python");
            let usable = |python: &Path| {
                Command::new(python)
                    .args(["-c", "import grpc, websockets, cryptography, h2"])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !usable(&python) {
                let output = Command::new("bash")
                    .args(["scripts/bootstrap", "--tests"])
                    .current_dir(repo)
                    .output()
                    .expect("run scripts/bootstrap --tests");
                assert!(
                    output.status.success() && usable(&python),
                    "scripts/bootstrap --tests did not give {} grpcio, websockets and h2 ({}):\n{}\n{}",
                    python.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            python
        })
        .clone()
}

/// A Python script of `tests/python/` run as a server: started by [`PythonServer::start`],
/// which waits for it to print `ready PORT`, and killed on drop.
pub struct PythonServer {
    child: Child,
    /// The loopback port the server chose and listens on: its own choice (it binds port 0),
    /// so no other test can take it between a choice and a bind.
    pub port: u16,
}

impl PythonServer {
    /// Runs `tests/python/{script}` with `args` and waits (up to 20 s) for its `ready PORT`
    /// line.
    pub fn start(script: &str, args: &[&str]) -> PythonServer {
        use std::io::BufRead;
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(protocol_python())
            .arg(repo.join("tests/python").join(script))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(20));
        let port = line.as_deref().ok().and_then(|line| {
            let port = line.strip_prefix("ready ")?;
            port.parse::<u16>().ok().filter(|&port| port != 0)
        });
        match port {
            Some(port) => PythonServer { child, port },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{script} did not start: {line:?}");
            }
        }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tests/python/{script}` with `args` to completion; returns its last stdout line as
/// JSON, panicking with its output when it fails or prints none.
pub fn python_json(script: &str, args: &[&str]) -> Value {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(protocol_python())
        .arg(repo.join("tests/python").join(script))
        .args(args)
        .output()
        .expect("run the Python script");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let parsed = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    match parsed {
        Some(value) if output.status.success() => value,
        _ => panic!(
            "{script} {args:?} failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, made for the test in `dir`
/// (`cert.pem`, `key.pem`); returns the `tls:` line of a configuration using it.
pub fn self_signed_tls(dir: &Path) -> String {
    let output = Command::new(protocol_python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/grpc_echo.py"))
        .arg("cert")
        .arg(dir)
        .output()
        .expect("make a certificate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!(
        "tls: {{certificateFile: {}, privateKeyFile: {}}}\n",
        dir.join("cert.pem").display(),
        dir.join("key.pem").display()
    )
}

/// Reads a request's or answer's head from `stream` byte by byte, up to and including the
/// blank line (nothing of a body or of a next message is consumed). `None` when the stream
/// ends or fails first.
pub fn read_head(stream: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}
