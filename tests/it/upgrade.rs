//! Binary upgrades through the real binary: `gatehouse serve --upgrade` receives the proxy,
//! admin and demo listeners of the running gateway when it gets `SIGQUIT`, under keep-alive
//! load, without one failed request; the old one drains and exits. Without a new process
//! waiting, `SIGQUIT` changes nothing; without an old one, `--upgrade` fails within seconds;
//! an unsafe `upgradeSocket` is a configuration error with its line.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use uuid::Uuid;

use super::kit::{claims, client, run_cli, Options, TestGateway, APP};
use super::reload::{log_with, named_upstream};

/// The grace period the tests give the old gateway to drain.
const SHUTDOWN_SECONDS: u64 = 3;
/// Pingora's close timeout: the old gateway keeps accepting this long after the hand-over.
const CLOSE_SECONDS: u64 = 5;

/// A route only the new gateway's configuration has.
const ONLY_NEW: &str = "  - path: /only-new\n    upstream: $UPSTREAM\n    auth: {enabled: false}\n";

fn options() -> Options {
    Options {
        extra: format!("shutdownTimeoutSeconds: {SHUTDOWN_SECONDS}\n"),
        ..Options::default()
    }
}

/// Sends `signal` (e.g. `-QUIT`) to `pid`.
pub(crate) fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// The default upgrade socket of `gateway`: beside its SQLite store.
pub(crate) fn socket_of(gateway: &TestGateway) -> PathBuf {
    gateway
        .store_path()
        .parent()
        .expect("store dir")
        .join("gatehouse-upgrade.sock")
}

/// Starts `gatehouse serve --upgrade` on `config`, its log in `log`.
pub(crate) fn start_upgrade(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--upgrade", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log"))
        .spawn()
        .expect("spawn")
}

/// Waits up to `timeout` for `path` to be a socket.
pub(crate) fn wait_for_socket(path: &Path, timeout: Duration, log: &Path) {
    let deadline = Instant::now() + timeout;
    while !std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        assert!(
            Instant::now() < deadline,
            "no upgrade socket at {}; log:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Requests on one keep-alive client until `stop`; the number sent and every failure. A
/// failure is any answer but 200 and any error: the client only sends a request again by
/// itself when the connection it picked was closed before the request was written, so an
/// error here is a request that was sent and not answered.
fn load(url: String, token: String, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let client = client();
    let (mut sent, mut failures) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        sent += 1;
        match client.get(&url).bearer_auth(&token).send() {
            Ok(r) if r.status().as_u16() == 200 => {}
            Ok(r) => failures.push(format!("status {}", r.status())),
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    (sent, failures)
}

/// Ends the new gateway: `SIGTERM`, then waits.
pub(crate) fn stop(mut child: Child) {
    signal(child.id(), "-TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigquit_hands_every_listener_to_the_new_binary_under_load_without_a_failed_request() {
    let options = options();
    let mut old = TestGateway::start_with(options.clone());
    let token = old.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    // The old configuration has no such route: the protected catch-all refuses it.
    assert_eq!(
        client().get(old.url("/only-new")).send().unwrap().status(),
        401
    );
    let new_config = old.dir.path().join("config-new.yaml");
    let new_options = Options {
        extra_routes: ONLY_NEW.into(),
        ..options
    };
    std::fs::write(&new_config, old.config_text(&new_options)).expect("write");

    let stop_load = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, token, stop) = (old.url("/"), token.clone(), stop_load.clone());
            std::thread::spawn(move || load(url, token, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));

    let log = old.dir.path().join("gatehouse-new.log");
    let new = start_upgrade(&new_config, &log);
    wait_for_socket(&socket_of(&old), Duration::from_secs(30), &log);
    let quit_at = Instant::now();
    signal(old.pid().expect("running"), "-QUIT");
    let status = old.wait_exit(Duration::from_secs(CLOSE_SECONDS + SHUTDOWN_SECONDS + 5));
    let drained_in = quit_at.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "the old gateway did not exit within its grace period: {status:?}\n{}",
        old.log()
    );
    // Load goes on against the new gateway alone.
    std::thread::sleep(Duration::from_millis(1000));
    stop_load.store(true, Ordering::Relaxed);
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("join"))
        .collect();
    let sent: u64 = results.iter().map(|r| r.0).sum();
    let failures: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    assert!(
        failures.is_empty(),
        "{} of {sent} failed: {failures:?}",
        failures.len()
    );
    assert!(sent > 100, "only {sent} requests");

    // The same ports now answer with the new configuration: proxy, demo upstream, admin.
    let fresh = client();
    assert_eq!(
        fresh.get(old.url("/only-new")).send().unwrap().status(),
        200
    );
    assert_eq!(
        fresh
            .get(old.url("/"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        fresh.get(old.admin_url("/health")).send().unwrap().status(),
        200
    );
    let new_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        new_log.contains("listeners received from the running gateway"),
        "{new_log}"
    );
    assert!(
        old.log().contains("handing the listeners over"),
        "{}",
        old.log()
    );
    eprintln!("{sent} requests under load across the hand-over, none failed; the old gateway exited {drained_in:?} after SIGQUIT");
    stop(new);
}

#[test]
fn sigquit_without_a_new_process_waiting_keeps_the_gateway_serving() {
    let gateway = TestGateway::start_with(options());
    signal(gateway.pid().expect("running"), "-QUIT");
    log_with(&gateway, "no new process is waiting on");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        client()
            .get(gateway.admin_url("/health"))
            .send()
            .unwrap()
            .status(),
        200
    );
    let token = gateway.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    assert_eq!(gateway.get_as("/", token).status(), 200);
}

#[test]
fn upgrade_without_a_running_gateway_fails_within_seconds() {
    let mut gateway = TestGateway::start_with(options());
    gateway.stop();
    let log = gateway.dir.path().join("gatehouse-new.log");
    let started = Instant::now();
    let mut child = start_upgrade(&gateway.config_path, &log);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("--upgrade with nothing to hand over did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        text.contains("waiting for the running gateway's listeners"),
        "{text}"
    );
    assert!(text.contains("Bootstrap failed"), "{text}");
    // Nothing listens on the gateway's port, and the socket is gone.
    assert!(std::net::TcpStream::connect(("127.0.0.1", gateway.port)).is_err());
    assert!(!socket_of(&gateway).exists());
}

#[test]
fn an_unsafe_upgrade_socket_is_a_configuration_error_with_its_line() {
    let gateway = TestGateway::start_with(options());
    let base = gateway.config_text(&options());
    let dir = gateway.dir.path();
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(
        &shared,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("chmod");
    let long = format!("{}/{}", dir.display(), "s".repeat(110));
    for (value, says) in [
        (
            format!("{}/up.sock", shared.display()),
            "can be written by other users",
        ),
        (
            format!("{}/nowhere/up.sock", dir.display()),
            "cannot use the directory",
        ),
        (long, "at most 107"),
        (
            format!("{}", gateway.config_path.display()),
            "exists and is not a socket",
        ),
    ] {
        let text = format!("{base}\nupgradeSocket: \"{value}\"\n");
        let line = text.lines().count();
        let file = dir.join("bad.yaml");
        std::fs::write(&file, &text).expect("write");
        let (code, _, err) = run_cli(&["check", "--config", file.to_str().unwrap()], dir);
        assert_eq!(code, 1, "{value}: {err}");
        assert!(err.contains("upgradeSocket"), "{err}");
        assert!(err.contains(says), "{value}: {err}");
        assert!(err.contains(&format!("line {line}")), "{err}");
    }
    let good = format!("{base}\nupgradeSocket: data/other-upgrade.sock\n");
    let file = dir.join("good.yaml");
    std::fs::write(&file, good).expect("write");
    let (code, out, err) = run_cli(&["check", "--config", file.to_str().unwrap()], dir);
    assert_eq!(code, 0, "{out}{err}");
}

/// Options with a `/slow` route to an upstream that answers after `delay`.
fn with_slow_route(delay: Duration) -> Options {
    let port = named_upstream("slow", delay);
    Options {
        extra_routes: format!(
            "  - path: /slow\n    upstream: http://127.0.0.1:{port}\n    auth: {{enabled: false}}\n"
        ),
        ..options()
    }
}

#[test]
fn a_request_under_way_at_the_hand_over_is_answered_before_the_old_gateway_exits() {
    // Longer than the close timeout, shorter than it and the grace period together.
    let delay = Duration::from_millis((CLOSE_SECONDS * 1000) + 1500);
    let options = with_slow_route(delay);
    let mut old = TestGateway::start_with(options.clone());
    let under_way = slow_request(&old);
    std::thread::sleep(Duration::from_millis(200));
    let log = old.dir.path().join("gatehouse-new.log");
    let new = start_upgrade(&old.config_path, &log);
    wait_for_socket(&socket_of(&old), Duration::from_secs(30), &log);
    signal(old.pid().expect("running"), "-QUIT");
    assert_eq!(
        under_way.join().expect("join"),
        Ok((200, "slow".to_string()))
    );
    let status = old.wait_exit(Duration::from_secs(SHUTDOWN_SECONDS + 2));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        old.log()
    );
    assert!(
        old.log().contains("drained: nothing under way"),
        "{}",
        old.log()
    );
    stop(new);
}

#[test]
fn sigterm_ends_the_process_within_the_shutdown_timeout_even_with_a_request_under_way() {
    let mut gateway = TestGateway::start_with(with_slow_route(Duration::from_secs(15)));
    let under_way = slow_request(&gateway);
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    signal(gateway.pid().expect("running"), "-TERM");
    let status = gateway.wait_exit(Duration::from_secs(SHUTDOWN_SECONDS + 10));
    let took = asked.elapsed();
    assert!(status.is_some(), "still running\n{}", gateway.log());
    assert!(
        took < Duration::from_millis(SHUTDOWN_SECONDS * 1000 + 1500),
        "{took:?}\n{}",
        gateway.log()
    );
    // The request still under way was cut, not reported as answered.
    let outcome = under_way.join().expect("join");
    assert!(outcome != Ok((200, "slow".to_string())), "{outcome:?}");
}

/// Starts `GET /slow` on `gateway`; its status and body, or the client's error.
fn slow_request(gateway: &TestGateway) -> std::thread::JoinHandle<Result<(u16, String), String>> {
    let url = gateway.url("/slow");
    std::thread::spawn(move || {
        let response = client().get(url).send().map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().map_err(|e| e.to_string())?))
    })
}

#[test]
fn sigterm_answers_the_requests_under_way_then_exits_at_once() {
    let mut gateway = TestGateway::start_with(with_slow_route(Duration::from_millis(1500)));
    let under_way = slow_request(&gateway);
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    signal(gateway.pid().expect("running"), "-TERM");
    assert_eq!(
        under_way.join().expect("join"),
        Ok((200, "slow".to_string()))
    );
    let status = gateway.wait_exit(Duration::from_secs(SHUTDOWN_SECONDS + 2));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        gateway.log()
    );
    // It did not sit out its whole grace period once the request was answered.
    assert!(
        asked.elapsed() < Duration::from_millis(2900),
        "{:?}",
        asked.elapsed()
    );
}
