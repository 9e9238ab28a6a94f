//! Live reload attacked through the real binary: a file that is valid YAML but wrong in every
//! section, a file caught half-written, removed or unreadable, a store write that fails while the
//! declared entities are applied (nothing of them written), fifty reloads and a SIGHUP storm
//! under load (no failed request, no thread or file descriptor left behind), `POST /reload`
//! from another address than loopback, `gatehouse reload` at a wrong address, and the TLS
//! certificate and key read again at every reload.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use uuid::Uuid;

use super::kit::{claims, client, free_port, run_cli, Options, TestGateway, APP, TENANT};
use super::reload::{hangup, log_with, metric, reload_by_admin, FRESH_ROUTE};

/// The status of `GET path` on `gateway` without credentials.
fn status_of(gateway: &TestGateway, path: &str) -> u16 {
    client()
        .get(gateway.url(path))
        .send()
        .expect("send")
        .status()
        .as_u16()
}

/// The one log line of the last refused reload.
fn refused_line(gateway: &TestGateway) -> String {
    let log = log_with(gateway, "configuration reload refused");
    log.lines()
        .rev()
        .find(|l| l.contains("configuration reload refused"))
        .expect("line")
        .to_string()
}

#[test]
fn a_file_wrong_in_every_section_is_refused_with_each_path_and_line() {
    let mut gateway = TestGateway::start();
    let token = gateway.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let good = std::fs::read_to_string(&gateway.config_path).expect("config");
    let unknown = Uuid::new_v4();
    // Valid YAML, each section wrong in what it means.
    let bad = good
        .replacen(
            "keys:\n",
            &format!("keys:\n  - {{id: {unknown}, algorithm: HS256, secret: short}}\n"),
            1,
        )
        .replacen(
            "  - key: test-api-key-0123456789abcdef\n",
            "  - key: test-api-key-0123456789abcdef\n  - key: tiny\n",
            1,
        )
        .replace(
            "validation: {leewaySeconds: 0}",
            "validation: {leewaySeconds: 0}\nforwardAuth: {path: /_auth, trustedProxies: [10.0.0.0/33]}\nissuers:\n  - {issuer: \"https://login.example\"}\n",
        )
        .replacen(
            "applications:\n",
            &format!("applications:\n  - {{id: {}, tenantId: {unknown}, name: Stray}}\n", Uuid::new_v4()),
            1,
        )
        + &format!(
            "  - path: /wrong-app\n    upstream: http://127.0.0.1:1\n    auth: {{applicationId: {unknown}}}\n  - path: nope\n    upstream: ftp://127.0.0.1:1\n"
        );
    std::fs::write(&gateway.config_path, &bad).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    let fields = body["fieldErrors"].as_object().expect("fieldErrors");
    let line = refused_line(&gateway);
    for path in [
        "keys[0].secret",
        "apiKeys[1].key",
        "applications[0].tenantId",
        "forwardAuth.trustedProxies[0]",
        "issuers[0]",
        "routes[4].auth.applicationId",
        "routes[5].path",
        "routes[5].upstream",
    ] {
        assert!(fields.contains_key(path), "{path} missing in {body}");
        let message = fields[path][0]["message"].as_str().expect("message");
        assert!(message.contains("(line "), "{path}: {message}");
        assert!(line.contains(path), "{path} missing in the log line {line}");
    }
    // No secret in the answer or the log.
    assert!(!body.to_string().contains("short\""), "{body}");
    assert!(!line.contains("secret: short"), "{line}");
    // The running configuration serves on, and the outcome is counted.
    assert_eq!(gateway.get_as("/", &token).status().as_u16(), 200);
    assert_eq!(status_of(&gateway, "/wrong-app"), 401);
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(1.0));
    assert_eq!(
        metric(
            &gateway,
            "gatehouse_config_reloads_total{outcome=\"refused\"}"
        ),
        Some(1.0)
    );
    gateway.stop();
}

#[test]
fn a_removed_or_unreadable_file_keeps_the_running_configuration() {
    let mut gateway = TestGateway::start();
    let good = std::fs::read_to_string(&gateway.config_path).expect("config");
    std::fs::remove_file(&gateway.config_path).expect("remove");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    let message = body["generalErrors"][0]["message"]
        .as_str()
        .expect("message");
    assert!(message.contains("cannot read"), "{body}");
    // A directory where the file was (what a wrong mount gives): unreadable as a file.
    std::fs::create_dir(&gateway.config_path).expect("dir");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    // Not UTF-8.
    std::fs::remove_dir(&gateway.config_path).expect("rmdir");
    std::fs::write(&gateway.config_path, b"listen: \xff\xfe\n").expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    // An empty file (a truncation caught at its start).
    std::fs::write(&gateway.config_path, b"").expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    assert_eq!(status_of(&gateway, "/public"), 200);
    assert_eq!(
        metric(
            &gateway,
            "gatehouse_config_reloads_total{outcome=\"refused\"}"
        ),
        Some(4.0)
    );
    std::fs::write(&gateway.config_path, good).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    gateway.stop();
}

#[test]
fn a_file_being_written_while_the_reload_reads_it_is_never_half_applied() {
    let mut options = Options::default();
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    options.extra_routes = FRESH_ROUTE.into();
    let whole = gateway.config_text(&options);
    // Cut where the first part is a valid file on its own, without the `/public`, `/down` and
    // `/fresh` routes: applied, it would drop routes.
    let cut = whole.find("  - path: /public").expect("cut");
    let path = gateway.config_path.clone();
    let mut file = std::fs::File::create(&path).expect("truncate");
    file.write_all(&whole.as_bytes()[..cut])
        .expect("first part");
    file.flush().expect("flush");
    hangup(&gateway);
    std::thread::sleep(Duration::from_millis(150));
    file.write_all(&whole.as_bytes()[cut..]).expect("rest");
    drop(file);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&gateway, "gatehouse_config_generation") != Some(2.0) {
        assert!(
            Instant::now() < deadline,
            "not reloaded:\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status_of(&gateway, "/fresh"), 200);
    assert_eq!(status_of(&gateway, "/public"), 200);
    assert_eq!(
        metric(
            &gateway,
            "gatehouse_config_reloads_total{outcome=\"refused\"}"
        ),
        None
    );
    gateway.stop();
}

#[test]
fn a_failed_store_write_during_a_reload_writes_none_of_the_declared_entities() {
    let mut gateway = TestGateway::start();
    let good = std::fs::read_to_string(&gateway.config_path).expect("config");
    // A store that fails one write: lambdas refused by a trigger.
    let db = rusqlite::Connection::open(gateway.store_path()).expect("open store");
    db.execute_batch(
        "CREATE TRIGGER refuse_lambdas BEFORE INSERT ON lambdas \
         BEGIN SELECT RAISE(ABORT, 'lambda writes refused'); END;",
    )
    .expect("trigger");
    let lambda = Uuid::new_v4();
    let changed = good.replace("    name: Default\n", "    name: Renamed\n")
        + &format!(
            "lambdas:\n  - {{id: {lambda}, name: L, type: ExternalJWTReconcile, body: \"function reconcile(user, registration, jwt) {{}}\"}}\n"
        );
    assert_ne!(changed, good);
    std::fs::write(&gateway.config_path, &changed).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("store"), "{body}");
    let name: String = db
        .query_row(
            "SELECT json_extract(body, '$.name') FROM tenants WHERE id = ?1",
            [TENANT],
            |r| r.get(0),
        )
        .expect("tenant");
    assert_eq!(name, "Default", "the tenant was written without the lambda");
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(1.0));
    // The store healed: the same file is applied, all of it.
    db.execute_batch("DROP TRIGGER refuse_lambdas;")
        .expect("drop");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    let name: String = db
        .query_row(
            "SELECT json_extract(body, '$.name') FROM tenants WHERE id = ?1",
            [TENANT],
            |r| r.get(0),
        )
        .expect("tenant");
    assert_eq!(name, "Renamed");
    gateway.stop();
}

/// The number of open file descriptors and of threads of process `pid`.
fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).expect("proc").count();
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

/// The names of process `pid`'s threads.
fn thread_names(pid: u32) -> String {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    let mut names: Vec<String> = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names.join(",")
}

/// What [`steady_load`] returns: the requests sent, the failures, the client threads.
type Load = (
    Arc<AtomicU64>,
    Arc<Mutex<Vec<String>>>,
    Vec<std::thread::JoinHandle<()>>,
);

/// Keep-alive clients sending `GET /` with `token` (always 200) and `GET /public` (always 200)
/// until `stop`; the requests sent and every failure.
fn steady_load(gateway: &TestGateway, token: &str, stop: &Arc<AtomicBool>) -> Load {
    let sent = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let threads = (0..3)
        .map(|_| {
            let (sent, failures, stop) = (sent.clone(), failures.clone(), stop.clone());
            let (root, public, token) =
                (gateway.url("/"), gateway.url("/public"), token.to_string());
            std::thread::spawn(move || {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    for (url, bearer) in [(&root, true), (&public, false)] {
                        let mut request = client.get(url);
                        if bearer {
                            request = request.bearer_auth(&token);
                        }
                        match request.send().map(|r| r.status().as_u16()) {
                            Ok(200) => {}
                            other => failures.lock().unwrap().push(format!("{url}: {other:?}")),
                        }
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    (sent, failures, threads)
}

#[test]
fn fifty_reloads_and_a_sighup_storm_under_load_fail_no_request_and_leak_nothing() {
    // A trusted issuer (its keys unreachable) so every reload also sets up issuers.
    let mut options = Options {
        extra: format!(
            "issuers:\n  - {{issuer: \"http://127.0.0.1:{}\", jwksUri: \"http://127.0.0.1:{}/jwks\", algorithms: [RS256]}}\n",
            free_port(),
            free_port()
        ),
        ..Options::default()
    };
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let token = gateway.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let pid = gateway.pid().expect("pid");
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failures, threads) = steady_load(&gateway, &token, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let before = fds_and_threads(pid);
    let names_before = thread_names(pid);
    let plain = gateway.config_text(&options);
    options.extra_routes = FRESH_ROUTE.into();
    let fresh = gateway.config_text(&options);
    let started = Instant::now();
    for round in 0..50 {
        let text = if round % 2 == 0 { &fresh } else { &plain };
        std::fs::write(&gateway.config_path, text).expect("write");
        let (status, body) = reload_by_admin(&gateway);
        assert_eq!(status, 200, "round {round}: {body}");
        let expected = if round % 2 == 0 { 200 } else { 401 };
        assert_eq!(status_of(&gateway, "/fresh"), expected, "round {round}");
    }
    let fifty = started.elapsed();
    // A storm of SIGHUPs: coalesced or not, each reload is whole, and the gateway lives on.
    for _ in 0..30 {
        hangup(&gateway);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut generation = metric(&gateway, "gatehouse_config_generation");
    loop {
        std::thread::sleep(Duration::from_millis(700));
        let now = metric(&gateway, "gatehouse_config_generation");
        if now == generation {
            break;
        }
        generation = now;
        assert!(Instant::now() < deadline, "reloads never settled");
    }
    assert!(generation.is_some_and(|g| g >= 52.0), "{generation:?}");
    // Retired gateways end their threads within a second or so (an old issuer's key
    // fetching), idle blocking threads within ten: wait for the counts to come back.
    let settled = Instant::now() + Duration::from_secs(15);
    let mut after = fds_and_threads(pid);
    while (after.1 > before.1 || after.0 > before.0 + 4) && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(250));
        after = fds_and_threads(pid);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("join");
    }
    let failures = failures.lock().unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert!(sent > 100, "only {sent} requests");
    assert_eq!(
        status_of(&gateway, "/fresh"),
        401,
        "the last file is in force"
    );
    // Nothing left behind: the same threads, and file descriptors within a few (the
    // clients' connections come and go).
    assert!(
        after.1 <= before.1,
        "threads before {before:?}: {names_before}; after {after:?}: {}",
        thread_names(pid)
    );
    assert!(
        after.0 <= before.0 + 4,
        "file descriptors before {before:?}, after {after:?}"
    );
    assert!(!gateway.log().contains("panicked"), "{}", gateway.log());
    eprintln!(
        "50 reloads in {fifty:?} and a storm of 30 SIGHUPs under load: {sent} requests, none failed; (fds, threads) before {before:?}, after {after:?}"
    );
    gateway.stop();
}

/// This machine's address on its first non-loopback interface (the one a route to the
/// outside leaves from; no packet is sent).
fn outside_address(v6: bool) -> IpAddr {
    let (bind, target) = if v6 {
        ("[::]:0", "[2001:db8::1]:9")
    } else {
        ("0.0.0.0:0", "192.0.2.1:9")
    };
    let socket = std::net::UdpSocket::bind(bind).expect("udp");
    socket.connect(target).expect("a route off loopback");
    let ip = socket.local_addr().expect("local").ip();
    assert!(!ip.is_loopback(), "no address off loopback: {ip}");
    ip
}

/// `POST /reload` to `address`: the status.
fn post_reload_to(address: std::net::SocketAddr) -> u16 {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).expect("connect");
    stream
        .write_all(
            b"POST /reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

#[test]
fn post_reload_is_refused_from_any_address_but_loopback() {
    let mut gateway = TestGateway::start();
    // The admin listener on every address, IPv6 and IPv4 (dual stack).
    let admin = gateway.admin_port;
    let text = std::fs::read_to_string(&gateway.config_path)
        .expect("config")
        .replace(
            &format!("listen: 127.0.0.1:{admin}"),
            &format!("listen: \"[::]:{admin}\""),
        );
    std::fs::write(&gateway.config_path, text).expect("write");
    gateway.restart();
    let outside = |ip: IpAddr| std::net::SocketAddr::new(ip, admin);
    assert_eq!(post_reload_to(outside(outside_address(false))), 403);
    assert_eq!(post_reload_to(outside(outside_address(true))), 403);
    // Loopback, also IPv4 loopback seen as `::ffff:127.0.0.1` by the IPv6 listener.
    assert_eq!(post_reload_to(outside("::1".parse().unwrap())), 200);
    assert_eq!(post_reload_to(outside("127.0.0.1".parse().unwrap())), 200);
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(3.0));
    gateway.stop();
}

#[test]
fn gatehouse_reload_at_a_wrong_address_says_so() {
    let mut gateway = TestGateway::start();
    let config = gateway.config_path.display().to_string();
    let dir = gateway.dir.path().to_path_buf();
    // Nothing listening there.
    let closed = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = run_cli(&["reload", "--config", &config, "--admin", &closed], &dir);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the admin listener"), "{err}");
    // The proxy's listener, not the admin one: an HTTP answer, but not a reload's.
    let proxy = format!("127.0.0.1:{}", gateway.port);
    let (code, _, err) = run_cli(&["reload", "--config", &config, "--admin", &proxy], &dir);
    assert_eq!(code, 1);
    assert!(err.contains("is this Gatehouse's admin listener"), "{err}");
    // Something that is not HTTP at all.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let not_http = silent.local_addr().expect("addr");
    std::thread::spawn(move || {
        for mut stream in silent.incoming().flatten() {
            let mut request = [0u8; 512];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        }
    });
    let (code, _, err) = run_cli(
        &[
            "reload",
            "--config",
            &config,
            "--admin",
            &not_http.to_string(),
        ],
        &dir,
    );
    assert_eq!(code, 1);
    assert!(err.contains("not an HTTP answer"), "{err}");
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(1.0));
    gateway.stop();
}

/// A self-signed certificate for `localhost` made by `openssl` in `dir` as `name.crt` and
/// `name.key`.
fn openssl_pair(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (cert, key)
}

/// The DER of the first certificate in the PEM file `cert`.
fn der_of(cert: &std::path::Path) -> Vec<u8> {
    pem::parse(std::fs::read(cert).expect("cert"))
        .expect("pem")
        .contents()
        .to_vec()
}

/// A TLS connection to `port` trusting the certificates `trusted`; the DER of the certificate
/// the server presented, and the connection.
fn handshake(
    port: u16,
    trusted: &[&std::path::Path],
) -> (
    Vec<u8>,
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add(der_of(cert).into()).expect("root");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = "localhost".try_into().expect("name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("tcp");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake");
    }
    let presented = tls.conn.peer_certificates().expect("certificate")[0].to_vec();
    (presented, tls)
}

/// `GET /public` on an open TLS connection; the status line.
fn get_on(tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> String {
    tls.write_all(b"GET /public HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 4096];
    let n = tls.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn tls_certificates_are_read_again_at_every_reload() {
    let certs = tempfile::tempdir().expect("dir");
    let dir = certs.path();
    let (a_cert, a_key) = openssl_pair(dir, "a");
    let (b_cert, b_key) = openssl_pair(dir, "b");
    let (c_cert, c_key) = openssl_pair(dir, "c");
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::copy(&a_cert, &cert).expect("copy");
    std::fs::copy(&a_key, &key).expect("copy");
    let mut options = Options::default();
    let tls_line = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "tls: {{certificateFile: {}, privateKeyFile: {}}}\n",
            cert.display(),
            key.display()
        )
    };
    options.extra = tls_line(&cert, &key);
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let all = [a_cert.as_path(), b_cert.as_path(), c_cert.as_path()];
    let (presented, mut open) = handshake(gateway.port, &all);
    assert_eq!(presented, der_of(&a_cert));
    // Renewed at the same paths: new connections get it, without a restart.
    std::fs::copy(&b_cert, &cert).expect("copy");
    std::fs::copy(&b_key, &key).expect("copy");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["warnings"].as_array().expect("warnings").is_empty(),
        "{body}"
    );
    assert_eq!(handshake(gateway.port, &all).0, der_of(&b_cert));
    // The connection opened before keeps its session and is served.
    assert!(get_on(&mut open).contains(" 200"), "open connection");
    // A key that does not belong to the certificate: refused with its field, B kept.
    std::fs::copy(&a_key, &key).expect("copy");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    let problem = body["fieldErrors"]["tls.privateKeyFile"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(problem.contains("does not belong"), "{problem}");
    assert!(problem.contains("(line "), "{problem}");
    assert_eq!(handshake(gateway.port, &all).0, der_of(&b_cert));
    // A certificate file cut short (caught mid-copy): refused, B kept.
    std::fs::copy(&b_key, &key).expect("copy");
    let text = std::fs::read_to_string(&b_cert).expect("cert");
    std::fs::write(&cert, &text[..text.len() / 2]).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["fieldErrors"]["tls.certificateFile"].is_array(),
        "{body}"
    );
    assert_eq!(handshake(gateway.port, &all).0, der_of(&b_cert));
    // New paths: in force too.
    let config = std::fs::read_to_string(&gateway.config_path).expect("config");
    let moved = config.replace(&tls_line(&cert, &key), &tls_line(&c_cert, &c_key));
    assert_ne!(moved, config);
    std::fs::write(&gateway.config_path, moved).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    assert_eq!(handshake(gateway.port, &all).0, der_of(&c_cert));
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(3.0));
    // Turning TLS off needs a restart: named in a warning, TLS kept.
    let plain = std::fs::read_to_string(&gateway.config_path)
        .expect("config")
        .replace(&tls_line(&c_cert, &c_key), "");
    std::fs::write(&gateway.config_path, plain).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("tls:"),
        "{body}"
    );
    assert_eq!(handshake(gateway.port, &all).0, der_of(&c_cert));
    gateway.stop();
}

/// A key server that counts the requests it gets and answers each, after `delay`, with a 500.
fn counting_key_server(delay: Duration) -> (u16, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicU64::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut request = [0u8; 2048];
                let _ = stream.read(&mut request);
                counted.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(delay);
                let _ = stream.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    (port, hits)
}

#[test]
fn a_trusted_issuer_removed_while_its_keys_are_fetched_is_no_longer_fetched() {
    // Keys fetched every second, each fetch taking half of it: one is under way at any time.
    let (keys_port, hits) = counting_key_server(Duration::from_millis(500));
    let mut options = Options {
        extra: format!(
            "issuers:\n  - {{issuer: \"https://gone.example\", jwksUri: \"http://127.0.0.1:{keys_port}/jwks\", algorithms: [RS256], refreshIntervalSeconds: 1, minRefetchSeconds: 1}}\n"
        ),
        ..Options::default()
    };
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let deadline = Instant::now() + Duration::from_secs(10);
    while hits.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the keys were never fetched");
        std::thread::sleep(Duration::from_millis(50));
    }
    options.extra = String::new();
    gateway.write_config(&options);
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    // The retired issuer's fetching ends within a second or two.
    std::thread::sleep(Duration::from_millis(2500));
    let after_reload = hits.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        hits.load(Ordering::SeqCst),
        after_reload,
        "the removed issuer's keys are still fetched"
    );
    assert_eq!(status_of(&gateway, "/public"), 200);
    gateway.stop();
}
