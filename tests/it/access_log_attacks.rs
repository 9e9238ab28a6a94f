//! The access log (lines buffered per worker thread) across live reloads and the `SIGQUIT`
//! hand-over, under continuous traffic, through the real binary: every answered request has
//! exactly one whole access line (none lost at a reload or at the old process's exit, none
//! torn, interleaved or written twice), and no secret the clients sent (Bearer tokens, cookie
//! values, refresh tokens, the API key, query values) appears in any log line.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;
use uuid::Uuid;

use super::kit::*;
use super::reload::hangup;
use super::upgrade::{signal, socket_of, start_upgrade, stop, wait_for_socket};

/// A cookie value and a query value no log line may hold.
const COOKIE_SECRET: &str = "cookie-secret-5f1d2e3c4b5a69788796a5b4";
const QUERY_SECRET: &str = "query-secret-0a1b2c3d4e5f60718293a4b5";

/// Requests on one keep-alive client until `stop`, each to a path of its own
/// (`/n/{client}-{i}`) with a Bearer token, a secret cookie and a secret query value; the
/// paths answered (any status) and the failures (errors: sent and not answered).
fn traffic(
    gw_url: String,
    client_id: usize,
    token: String,
    stop: Arc<AtomicBool>,
) -> (Vec<String>, Vec<String>) {
    let http = client();
    let (mut answered, mut failures) = (Vec::new(), Vec::new());
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let path = format!("/n/{client_id}-{i}");
        let sent = http
            .get(format!("{gw_url}{path}?q={QUERY_SECRET}"))
            .bearer_auth(&token)
            .header("Cookie", format!("theme=dark; sid={COOKIE_SECRET}"))
            .send();
        match sent {
            Ok(r) if r.status().as_u16() == 200 => answered.push(path),
            Ok(r) => failures.push(format!("{path}: status {}", r.status())),
            Err(e) => failures.push(format!("{path}: {e:?}")),
        }
    }
    (answered, failures)
}

/// A traffic thread: the paths answered and the failures.
type Traffic = std::thread::JoinHandle<(Vec<String>, Vec<String>)>;

/// Starts `clients` traffic threads on `url`; the stop flag and the threads.
fn start_traffic(url: &str, token: &str, clients: usize) -> (Arc<AtomicBool>, Vec<Traffic>) {
    let stop = Arc::new(AtomicBool::new(false));
    let threads = (0..clients)
        .map(|c| {
            let (url, token, stop) = (url.to_string(), token.to_string(), stop.clone());
            std::thread::spawn(move || traffic(url, c, token, stop))
        })
        .collect();
    (stop, threads)
}

/// Stops the traffic; every path answered, after asserting none failed.
fn end_traffic(stop: Arc<AtomicBool>, threads: Vec<Traffic>) -> Vec<String> {
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for thread in threads {
        let (paths, failures) = thread.join().expect("traffic");
        assert!(failures.is_empty(), "{failures:?}");
        answered.extend(paths);
    }
    answered
}

/// Checks `logs` against the `answered` paths: every line is whole (starts with a
/// timestamp, one access line holds one request), every answered path has exactly one access
/// line, no access line is for a path not answered, and no secret (of `secrets`, the
/// traffic's cookie or query string) appears anywhere.
fn assert_one_whole_line_each(logs: &[String], answered: &[String], secrets: &[String]) {
    let secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .chain([COOKIE_SECRET, QUERY_SECRET])
        .collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for log in logs {
        for line in log.lines() {
            assert!(
                line.len() > 20 && line.starts_with("20") && line.as_bytes()[10] == b'T',
                "a line that is not whole: {line:?}"
            );
            for secret in &secrets {
                assert!(!line.contains(secret), "a secret in the log: {line}");
            }
            if !line.contains("gatehouse::access") || !line.contains("path=\"/n/") {
                continue;
            }
            assert_eq!(
                line.matches("gatehouse::access").count(),
                1,
                "two lines in one: {line}"
            );
            assert!(line.contains("latency_ms="), "torn: {line}");
            let path = line
                .split("path=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("a path");
            *seen.entry(path.to_string()).or_default() += 1;
        }
    }
    let mut missing = Vec::new();
    for path in answered {
        match seen.remove(path) {
            Some(1) => {}
            Some(n) => panic!("{path}: {n} access lines"),
            None => missing.push(path),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered requests have no access line: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        seen.is_empty(),
        "lines of requests never answered: {seen:?}"
    );
}

/// A session, and the secrets of the API calls a test makes besides the traffic.
fn api_calls(gw: &TestGateway) -> Vec<String> {
    let session = gw.login(&format!("log-{}@example.com", Uuid::new_v4()), &["user"]);
    let refreshed = client()
        .post(gw.url("/api/jwt/refresh"))
        .json(&json!({ "refreshToken": session.refresh_token }))
        .send()
        .expect("refresh");
    assert_eq!(refreshed.status().as_u16(), 200);
    let revoked = client()
        .delete(gw.url(&format!("/api/jwt/refresh?userId={}", session.user_id)))
        .header("Authorization", API_KEY)
        .send()
        .expect("revoke");
    assert_eq!(revoked.status().as_u16(), 200);
    vec![session.refresh_token, session.token, API_KEY.to_string()]
}

#[test]
fn every_request_answered_across_a_storm_of_reloads_has_exactly_one_whole_access_line() {
    let gw = TestGateway::start();
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let mut secrets = api_calls(&gw);
    let (stop, threads) = start_traffic(&gw.url(""), &token, 4);
    let started = Instant::now();
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(120));
        hangup(&gw);
    }
    while started.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let answered = end_traffic(stop, threads);
    assert!(answered.len() > 200, "only {} requests", answered.len());
    // Lines are written at least every 100 ms: waited for until each answer has one.
    let log = gw.log_when(|log| {
        let paths = log.lines().filter(|l| l.contains("gatehouse::access"));
        paths.filter(|l| l.contains("path=\"/n/")).count() >= answered.len()
    });
    secrets.push(token);
    assert_one_whole_line_each(&[log], &answered, &secrets);
    eprintln!(
        "{} requests across 15 reloads, one access line each",
        answered.len()
    );
}

#[test]
fn every_request_answered_across_the_hand_over_has_exactly_one_whole_access_line() {
    let mut old = TestGateway::start_with(Options {
        extra: "shutdownTimeoutSeconds: 3\n".into(),
        ..Options::default()
    });
    let token = old.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let mut secrets = api_calls(&old);
    let new_config = old.dir.path().join("config-new.yaml");
    std::fs::copy(&old.config_path, &new_config).expect("copy");
    let (stop_traffic, threads) = start_traffic(&old.url(""), &token, 4);
    std::thread::sleep(Duration::from_millis(500));
    let new_log = old.dir.path().join("gatehouse-new.log");
    let new = start_upgrade(&new_config, &new_log);
    wait_for_socket(&socket_of(&old), Duration::from_secs(30), &new_log);
    signal(old.pid().expect("running"), "-QUIT");
    let status = old.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    std::thread::sleep(Duration::from_millis(500));
    let answered = end_traffic(stop_traffic, threads);
    // The new gateway writes its last lines at its exit.
    stop(new);
    secrets.push(token);
    let logs = [
        old.log(),
        std::fs::read_to_string(&new_log).expect("new log"),
    ];
    assert_one_whole_line_each(&logs, &answered, &secrets);
    eprintln!(
        "{} requests across the hand-over, one access line each",
        answered.len()
    );
}

/// An upstream that answers the first request of each connection (keeping it alive) and
/// closes the connection on the second without an answer: a pooled connection that fails
/// when reused, which the engine retries.
fn closing_on_reuse_upstream() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                if stream.read(&mut buf).unwrap_or(0) == 0 {
                    return;
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
                );
                let _ = stream.read(&mut buf);
                let _ = stream.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_failed_upstream_logs_no_query_string_and_no_credential() {
    let reset = closing_on_reuse_upstream();
    let gw = TestGateway::start_with(Options {
        extra_routes: format!(
            "  - path: /reset\n    upstream: http://127.0.0.1:{reset}\n    auth: {{required: false}}\n"
        ),
        ..Options::default()
    });
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    for path in ["/down/p", "/reset/p", "/reset/q", "/reset/r", "/reset/s"] {
        let response = client()
            .get(gw.url(&format!("{path}?q={QUERY_SECRET}")))
            .bearer_auth(&token)
            .header("Cookie", format!("sid={COOKIE_SECRET}"))
            .send()
            .expect("send");
        let status = response.status().as_u16();
        assert!(matches!(status, 200 | 502), "{path}: {status}");
    }
    let log = gw.log_when(|log| log.contains("/reset/s") && log.contains("Fail to proxy"));
    assert!(log.contains("/reset/s"), "{log}");
    assert!(log.contains("Fail to proxy"), "no retried failure:\n{log}");
    for secret in [QUERY_SECRET, COOKIE_SECRET, token.as_str()] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[test]
fn requests_refused_before_any_route_each_have_one_access_line() {
    let gw = TestGateway::start();
    let query = format!("q={QUERY_SECRET}");
    let requests: [(Vec<u8>, u16); 7] = [
        (
            b"CONNECT 127.0.0.1:80 HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n".to_vec(),
            405,
        ),
        (
            format!("GET http://elsewhere/app/abs?{query} HTTP/1.1\r\nHost: x\r\n\r\n")
                .into_bytes(),
            400,
        ),
        (
            b"GET /app/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        (b"GET /app/x HTTP/2.0\r\nHost: a\r\n\r\n".to_vec(), 400),
        (b"GET /app/\xff HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), 400),
        (
            b"GET /app/x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n".to_vec(),
            400,
        ),
        // Refused by the gateway itself, before a route: its target as sent.
        (
            format!("GET app-without-slash?{query} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            400,
        ),
    ];
    for (request, status) in &requests {
        // Refusals close the connection: the answer is read to its end.
        let (answered, answer) = raw_http(gw.port, request);
        assert_eq!(answered, *status, "{answer}");
    }
    let refused = |l: &&str| l.contains("gatehouse::access") && l.contains("route=\"none\"");
    let log = gw.log_when(|log| log.lines().filter(refused).count() >= requests.len());
    let lines: Vec<&str> = log.lines().filter(refused).collect();
    assert_eq!(lines.len(), requests.len(), "{log}");
    // Lines of requests served on different worker threads may be written out of order (each
    // thread's buffer is written whole): each is found by what it says.
    for line in &lines {
        let (status, outcome) = match line.contains("method=\"CONNECT\"") {
            true => (405, "method_not_allowed"),
            false => (400, "bad_request"),
        };
        assert!(line.contains(&format!(" status={status} ")), "{line}");
        assert!(line.contains(&format!("outcome=\"{outcome}\"")), "{line}");
    }
    for shown in [
        "method=\"CONNECT\"",
        "path=\"http://elsewhere/app/abs\"",
        "path=\"app-without-slash\"",
    ] {
        let with = lines.iter().filter(|l| l.contains(shown)).count();
        assert_eq!(with, 1, "{shown}:\n{log}");
    }
    assert!(!log.contains(QUERY_SECRET), "{log}");
}
