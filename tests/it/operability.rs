//! Operability through the real binary: the access log (one line per request, no
//! credential), the latency histograms and process metrics on `/metrics`, a dead upstream
//! logged once, and HTTP/1.1 answers whatever version the upstream spoke.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use uuid::Uuid;

use super::kit::*;

/// The access lines of a JSON log.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "gatehouse::access")
        .collect()
}

/// The access lines of `path`, waiting a little for the last one to be written.
fn lines_for(gw: &TestGateway, path: &str, count: usize) -> Vec<Value> {
    let of_path = |log: &str| -> Vec<Value> {
        access_lines(log)
            .into_iter()
            .filter(|l| l["fields"]["path"] == path)
            .collect()
    };
    let log = gw.log_when(|log| of_path(log).len() >= count);
    let lines = of_path(&log);
    assert!(
        lines.len() >= count,
        "fewer than {count} access lines for {path}:\n{log}"
    );
    lines
}

const REFRESH_ROUTE: &str = "  - path: /fresh\n    upstream: $UPSTREAM\n    auth: {applicationId: 3c219e58-ed0e-4b18-ad48-f4f92793ae32, refresh: true}\n";

#[test]
fn every_request_gets_one_access_line_without_credentials() {
    let gw = TestGateway::start_with(Options {
        extra: "log: {format: json}\n".into(),
        extra_routes: REFRESH_ROUTE.into(),
        ..Options::default()
    });
    let user = Uuid::new_v4();
    let token = gw.token(
        jsonwebtoken::Algorithm::RS256,
        &claims(user, APP, &["user"]),
    );
    let http = client();
    let ok = http
        .get(gw.url("/hello/./there?secret=query-s3cret"))
        .bearer_auth(&token)
        .header("Cookie", "session=cookie-s3cret")
        .send()
        .expect("send");
    assert_eq!(ok.status(), 200);
    let refused = http.get(gw.url("/nope")).send().expect("send");
    assert_eq!(refused.status(), 401);
    let forbidden = gw.get_as("/admin/x", &token);
    assert_eq!(forbidden.status(), 403);
    let api = http
        .get(gw.url("/api/jwt/validate"))
        .bearer_auth(&token)
        .send()
        .expect("send");
    assert_eq!(api.status(), 200);
    let bad = raw_http(
        gw.port,
        b"GET /a/../../b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(bad.0, 400);
    let session = gw.login("ann@example.com", &[]);
    let refreshed = http
        .get(gw.url("/fresh/page"))
        .header("Cookie", format!("refresh_token={}", session.refresh_token))
        .send()
        .expect("send");
    assert_eq!(refreshed.status(), 200);

    let line = &lines_for(&gw, "/hello/there", 1)[0];
    let fields = &line["fields"];
    assert_eq!(line["level"], "INFO");
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/");
    assert_eq!(fields["status"], 200);
    assert_eq!(fields["outcome"], "allowed");
    assert_eq!(fields["user"], user.to_string());
    assert_eq!(fields["upstream"], format!("127.0.0.1:{}", gw.demo_port));
    assert!(
        fields["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    assert!(
        fields["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{line}"
    );

    let expect = |path: &str, status: u64, outcome: &str, route: &str| {
        let lines = lines_for(&gw, path, 1);
        assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
        let fields = &lines[0]["fields"];
        assert_eq!(fields["status"], status, "{path}: {fields}");
        assert_eq!(fields["outcome"], outcome, "{path}: {fields}");
        assert_eq!(fields["route"], route, "{path}: {fields}");
        fields.clone()
    };
    let fields = expect("/nope", 401, "unauthenticated", "/");
    assert!(
        fields.get("user").is_none() && fields.get("upstream").is_none(),
        "{fields}"
    );
    expect("/admin/x", 403, "forbidden", "/admin");
    expect("/api/jwt/validate", 200, "api", "jwt");
    expect("/a/../../b", 400, "bad_request", "none");
    let fields = expect("/fresh/page", 200, "allowed", "/fresh");
    assert_eq!(fields["user"], session.user_id);
    assert!(lines_for(&gw, "/health", 1)
        .iter()
        .all(|l| l["fields"]["outcome"] == "health" && l["fields"]["route"] == "/health"));

    let log = gw.log();
    for secret in [
        token.as_str(),
        "query-s3cret",
        "cookie-s3cret",
        session.refresh_token.as_str(),
        "secret=",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    assert!(
        !log.contains(repo) && !log.contains(".cargo/registry"),
        "{log}"
    );
}

#[test]
fn the_access_log_is_text_by_default_and_can_be_turned_off() {
    let gw = TestGateway::start();
    let response = client().get(gw.url("/public/t")).send().expect("send");
    assert_eq!(response.status(), 200);
    let log = gw.log_when(|log| log.contains("path=\"/public/t\""));
    let line = log
        .lines()
        .find(|l| l.contains("path=\"/public/t\""))
        .unwrap_or_else(|| panic!("no access line:\n{log}"));
    assert!(line.contains("gatehouse::access"), "{line}");
    assert!(
        line.contains("status=200") && line.contains("outcome=\"allowed\""),
        "{line}"
    );
    assert!(line.contains("route=\"/public\""), "{line}");
    assert!(!log.contains(".cargo/registry"), "no build paths:\n{log}");

    let off = TestGateway::start_with(Options {
        extra: "log: {access: false}\n".into(),
        ..Options::default()
    });
    let response = client().get(off.url("/public/t")).send().expect("send");
    assert_eq!(response.status(), 200);
    std::thread::sleep(Duration::from_millis(200));
    let log = off.log();
    assert!(!log.contains("gatehouse::access"), "{log}");
}

/// Access lines are buffered per worker thread: they reach the log within the flush interval
/// (100 ms) when the gateway is idle, and none is lost when it stops right after answering.
#[test]
fn buffered_access_lines_are_written_soon_and_none_is_lost_at_shutdown() {
    let mut gw = TestGateway::start();
    let http = client();
    let path = |i: usize| format!("/public/buffered-{i}");
    let count = |log: &str, n: usize| {
        (0..n)
            .filter(|i| text_line(log, &path(*i)).is_some())
            .count()
    };
    assert_eq!(
        http.get(gw.url(&path(0))).send().expect("send").status(),
        200
    );
    let started = Instant::now();
    while count(&gw.log(), 1) == 0 && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(count(&gw.log(), 1), 1, "{}", gw.log());
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    for i in 1..200 {
        assert_eq!(
            http.get(gw.url(&path(i))).send().expect("send").status(),
            200
        );
    }
    gw.stop();
    let log = gw.log();
    assert_eq!(count(&log, 200), 200, "{log}");
    // Whole lines only: every access line starts with its timestamp.
    for line in log.lines().filter(|l| l.contains("gatehouse::access")) {
        let last_field = line.rsplit(' ').next().unwrap_or_default();
        assert!(
            line.starts_with("20")
                && line.contains(" INFO gatehouse::access: request request_id=")
                && last_field.starts_with("latency_ms="),
            "{line}"
        );
    }
}

/// The text access line of `path` in `log`, when there is one.
fn text_line<'a>(log: &'a str, path: &str) -> Option<&'a str> {
    let field = format!("path=\"{path}\"");
    log.lines()
        .find(|l| l.contains("gatehouse::access") && l.contains(&field))
}

#[test]
fn the_text_access_line_has_the_subscribers_format_field_for_field() {
    let gw = TestGateway::start();
    let user = Uuid::new_v4();
    let token = gw.token(
        jsonwebtoken::Algorithm::RS256,
        &claims(user, APP, &["user"]),
    );
    assert_eq!(gw.get_as("/hello/fmt", &token).status(), 200);
    let log = gw.log_when(|log| text_line(log, "/hello/fmt").is_some());
    let line = text_line(&log, "/hello/fmt").unwrap_or_else(|| panic!("no line:\n{log}"));
    // `2026-12-06T04:41:15.123456Z  INFO gatehouse::access: request request_id=… …`
    let (timestamp, rest) = line.split_at(27);
    let shape = timestamp.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T',
        13 | 16 => b == b':',
        19 => b == b'.',
        26 => b == b'Z',
        _ => b.is_ascii_digit(),
    });
    assert!(shape, "{line}");
    let rest = rest
        .strip_prefix("  INFO gatehouse::access: request request_id=")
        .unwrap_or_else(|| panic!("{line}"));
    let (id, rest) = rest.split_once(' ').unwrap_or_else(|| panic!("{line}"));
    let (prefix, counter) = id.split_once('-').unwrap_or_else(|| panic!("{line}"));
    assert!(
        prefix.len() == 8 && u32::from_str_radix(prefix, 16).is_ok(),
        "{line}"
    );
    assert!(u64::from_str_radix(counter, 16).is_ok(), "{line}");
    let expected = format!(
        "method=\"GET\" path=\"/hello/fmt\" route=\"/\" status=200 outcome=\"allowed\" \
         user={user} upstream=127.0.0.1:{} latency_ms=",
        gw.demo_port
    );
    let latency = rest
        .strip_prefix(&expected)
        .unwrap_or_else(|| panic!("{line}\nexpected {expected}"));
    let (whole, fraction) = latency.split_once('.').unwrap_or_else(|| panic!("{line}"));
    assert!(whole.parse::<u64>().is_ok(), "{line}");
    assert!(
        (1..=3).contains(&fraction.len()) && fraction.bytes().all(|b| b.is_ascii_digit()),
        "{line}"
    );
    assert!(fraction == "0" || !fraction.ends_with('0'), "{line}");
}

#[test]
fn rust_log_decides_whether_access_lines_are_written() {
    for (rust_log, written) in [
        ("info,gatehouse::access=off", false),
        ("warn", false),
        ("warn,gatehouse::access=info", true),
    ] {
        let gw = TestGateway::start_with(Options {
            rust_log: rust_log.into(),
            ..Options::default()
        });
        assert_eq!(
            client()
                .get(gw.url("/public/l"))
                .send()
                .expect("send")
                .status(),
            200
        );
        // A line that is written is waited for; one that is not, for as long as one would take.
        let log = match written {
            true => gw.log_when(|log| text_line(log, "/public/l").is_some()),
            false => {
                std::thread::sleep(Duration::from_millis(300));
                gw.log()
            }
        };
        assert_eq!(
            text_line(&log, "/public/l").is_some(),
            written,
            "RUST_LOG={rust_log}:\n{log}"
        );
    }
}

#[test]
fn metrics_have_latency_histograms_by_route_and_process_metrics() {
    let gw = TestGateway::start_with(Options {
        extra_routes: REFRESH_ROUTE.into(),
        ..Options::default()
    });
    let token = gw.token(
        jsonwebtoken::Algorithm::RS256,
        &claims(Uuid::new_v4(), APP, &["user"]),
    );
    let http = client();
    for i in 0..3 {
        let path = format!("/unique-path-{i}");
        assert_eq!(gw.get_as(&path, &token).status(), 200);
    }
    assert_eq!(http.get(gw.url("/x")).send().expect("send").status(), 401);
    let session = gw.login("bob@example.com", &[]);
    let refreshed = http
        .get(gw.url("/fresh/page"))
        .header("Cookie", format!("refresh_token={}", session.refresh_token))
        .send()
        .expect("send");
    assert_eq!(refreshed.status(), 200);
    // A request's latency is recorded after its answer: waited for, up to 10 s.
    let metrics = || {
        let response = http.get(gw.admin_url("/metrics")).send().expect("send");
        response.text().expect("text")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut text = metrics();
    while !text.contains("gatehouse_upstream_duration_seconds_count{route=\"/fresh\"} 1")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
        text = metrics();
    }
    for expected in [
        "gatehouse_request_duration_seconds_count{outcome=\"allowed\",route=\"/\"} 3",
        "gatehouse_request_duration_seconds_count{outcome=\"unauthenticated\",route=\"/\"} 1",
        "gatehouse_request_duration_seconds_bucket{outcome=\"health\",route=\"/health\",le=\"10\"}",
        "gatehouse_upstream_duration_seconds_count{route=\"/\"} 3",
        "gatehouse_upstream_duration_seconds_count{route=\"/fresh\"} 1",
        "gatehouse_refresh_duration_seconds_count{outcome=\"done\"} 1",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(expected), "{expected} missing:\n{text}");
    }
    assert!(!text.contains("unique-path"), "labels are bounded:\n{text}");
}

#[test]
fn a_dead_upstream_is_logged_once() {
    let gw = TestGateway::start();
    let response = client().get(gw.url("/down/x")).send().expect("send");
    assert_eq!(response.status(), 502);
    gw.log_when(|log| log.contains("path=\"/down/x\"") && log.contains("upstream unavailable"));
    // A second line for the failure would come with the first: a little longer to see one.
    std::thread::sleep(Duration::from_millis(200));
    let log = gw.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .filter(|l| !l.contains("demo"))
        .collect();
    assert_eq!(failures.len(), 1, "one line for the failure:\n{log}");
    assert!(failures[0].contains("upstream unavailable"), "{log}");
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gatehouse::access") && l.contains("path=\"/down/x\""))
        .collect();
    assert_eq!(access.len(), 1, "{log}");
    assert!(access[0].contains("status=502"), "{log}");
    assert!(
        access[0].contains("outcome=\"upstream_unavailable\""),
        "{log}"
    );
}

/// An upstream that answers every request with `answer` in HTTP/1.0 and closes.
fn http10_upstream(answer: &'static [u8]) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = stream.write_all(answer);
        }
    });
    port
}

#[test]
fn clients_are_answered_in_http11_whatever_the_upstream_spoke() {
    let sized = http10_upstream(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nsized");
    let unsized_ =
        http10_upstream(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close");
    let gw = TestGateway::start_with(Options {
        extra_routes: format!(
            "  - path: /old\n    upstream: http://127.0.0.1:{sized}\n    auth: {{enabled: false}}\n\
             \x20 - path: /older\n    upstream: http://127.0.0.1:{unsized_}\n    auth: {{enabled: false}}\n"
        ),
        ..Options::default()
    });
    for (path, body) in [("/old/x", "sized"), ("/older/x", "until-close")] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        let (status, response) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 200, "{response}");
        assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
        assert!(response.contains(body), "{path}: {response}");
    }
    // Through an HTTP/1.1 client too, with keep-alive.
    let http = client();
    for _ in 0..2 {
        let response = http.get(gw.url("/old/y")).send().expect("send");
        assert_eq!(response.version(), reqwest::Version::HTTP_11);
        assert_eq!(response.text().expect("body"), "sized");
    }
}
