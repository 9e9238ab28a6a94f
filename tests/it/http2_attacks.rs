//! HTTP/2, upgrades and WebSockets attacked through the real binary, with a raw HTTP/2 client
//! that sends what others refuse to (Python `h2` with its checks off, `tests/python/h2_raw.py`):
//! the connection-specific fields RFC 9113 §8.2.2 makes malformed, upper-case names, missing or
//! repeated pseudo-headers, `:authority` and `host` disagreeing, `cookie` crumbs, a
//! `content-length` the body does not match, huge and many header fields, CONNECT and extended
//! CONNECT (RFC 8441), a burst of streams reset at once (CVE-2023-44487); over HTTP/1.1, an
//! upstream switching protocols for a request that did not ask for it, and an `h2c` upgrade
//! (the tunnel would carry requests the gateway never judged).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::{claims, python_json, Options, TestGateway, APP};

/// A gateway with h2c on its plain listener; `/switch` leads to an upstream that answers every
/// request with `101 Switching Protocols` and raw bytes, `/echo` to one that echoes the request
/// header it got.
fn gateway() -> TestGateway {
    let switching = raw_upstream(|_| {
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nRAW-TUNNEL".to_vec()
    });
    let echo = raw_upstream(|request| {
        let head = String::from_utf8_lossy(request).to_string();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
            head.len()
        )
        .into_bytes()
    });
    let routes = format!(
        "  - {{path: /switch, upstream: \"http://127.0.0.1:{switching}\", auth: {{enabled: false}}}}\n  - {{path: /echo, upstream: \"http://127.0.0.1:{echo}\", auth: {{enabled: false}}}}\n"
    );
    TestGateway::start_with(Options {
        extra: "listenOptions: {h2c: true}\n".into(),
        extra_routes: routes,
        ..Options::default()
    })
}

/// An HTTP/1.1 upstream answering each connection's first request header with `answer(it)`.
fn raw_upstream(answer: fn(&[u8]) -> Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(&answer(&request));
                std::thread::sleep(Duration::from_millis(500));
            });
        }
    });
    port
}

/// One HTTP/2 request of `fields` (in order, as given) to the gateway over h2c, with `body`.
fn h2_request(gw: &TestGateway, fields: &[(&str, &str)], body: Option<&str>) -> Value {
    let fields: Vec<[&str; 2]> = fields.iter().map(|(n, v)| [*n, *v]).collect();
    let port = gw.port.to_string();
    let fields = json!(fields).to_string();
    let mut args = vec!["request", &port, &fields];
    if let Some(body) = body {
        args.push(body);
    }
    python_json("h2_raw.py", &args)
}

/// The pseudo-headers of a GET of `path` on `a.example`, then `extra`.
fn get<'a>(path: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "a.example"),
        (":path", path),
    ];
    fields.extend_from_slice(extra);
    fields
}

/// The RST_STREAM error code of PROTOCOL_ERROR (RFC 9113 §7).
const PROTOCOL_ERROR: u64 = 1;

#[test]
fn malformed_http2_requests_are_refused_before_any_route() {
    let mut gw = gateway();
    // Connection-specific fields (RFC 9113 §8.2.2): the stream is reset as malformed.
    for field in [
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("upgrade", "websocket"),
        ("proxy-connection", "keep-alive"),
        ("te", "gzip"),
    ] {
        let answer = h2_request(&gw, &get("/public", &[field]), None);
        assert_eq!(answer["reset"], PROTOCOL_ERROR, "{field:?}: {answer}");
        assert!(answer["status"].is_null(), "{field:?}: {answer}");
    }
    // `te: trailers` is the one TE allowed.
    let answer = h2_request(&gw, &get("/public", &[("te", "trailers")]), None);
    assert_eq!(answer["status"], 200, "{answer}");
    // An upper-case name is a connection error.
    let answer = h2_request(&gw, &get("/public", &[("X-Upper", "1")]), None);
    assert_eq!(answer["goaway"], PROTOCOL_ERROR, "{answer}");
    // Pseudo-headers missing, repeated, or after a regular field.
    let missing_path = [(":method", "GET"), (":scheme", "http"), (":authority", "a")];
    let answer = h2_request(&gw, &missing_path, None);
    assert_eq!(answer["reset"], PROTOCOL_ERROR, "{answer}");
    let answer = h2_request(&gw, &get("/public", &[(":path", "/admin")]), None);
    assert_eq!(answer["reset"], PROTOCOL_ERROR, "{answer}");
    let answer = h2_request(&gw, &get("", &[]), None);
    assert_eq!(answer["reset"], PROTOCOL_ERROR, "{answer}");
    // No host at all, a host with user information, `host` disagreeing with `:authority`:
    // 400 with Errors JSON.
    let no_host = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/public"),
    ];
    for fields in [
        no_host.to_vec(),
        get("/public", &[("host", "b.example")]),
        vec![
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "user@a.example"),
            (":path", "/public"),
        ],
    ] {
        let answer = h2_request(&gw, &fields, None);
        assert_eq!(answer["status"], 400, "{fields:?}: {answer}");
        assert!(answer["body"].as_str().unwrap().contains("generalErrors"));
    }
    // A body longer or shorter than its content-length: the stream is reset.
    for (length, body) in [("1", "abc"), ("10", "abc")] {
        let fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "a.example"),
            (":path", "/public"),
            ("content-length", length),
        ];
        let answer = h2_request(&gw, &fields, Some(body));
        assert_eq!(answer["reset"], PROTOCOL_ERROR, "{length}: {answer}");
    }
    // CONNECT is not proxied; extended CONNECT (RFC 8441, WebSockets over HTTP/2) is not
    // offered: the stream is reset.
    let connect = [(":method", "CONNECT"), (":authority", "a.example:443")];
    assert_eq!(h2_request(&gw, &connect, None)["status"], 405);
    let extended = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        (":authority", "a.example"),
        (":path", "/"),
        ("sec-websocket-version", "13"),
    ];
    let answer = h2_request(&gw, &extended, None);
    assert_eq!(answer["reset"], PROTOCOL_ERROR, "{answer}");
    // Still serving.
    assert_eq!(h2_request(&gw, &get("/public", &[]), None)["status"], 200);
    gw.stop();
}

#[test]
fn cookie_crumbs_are_joined_before_the_credentials_are_read() {
    let mut gw = gateway();
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let cookie = format!("access_token={token}");
    // The token cookie in a crumb of its own, among others: read, and the route allows it.
    let answer = h2_request(
        &gw,
        &get("/", &[("cookie", "a=1"), ("cookie", &cookie)]),
        None,
    );
    assert_eq!(answer["status"], 200, "{answer}");
    // The same value twice is one credential.
    let twice = get("/", &[("cookie", &cookie), ("cookie", &cookie)]);
    assert_eq!(h2_request(&gw, &twice, None)["status"], 200);
    // Two different values: ambiguous, refused.
    let other = get(
        "/",
        &[("cookie", &cookie), ("cookie", "access_token=forged")],
    );
    let answer = h2_request(&gw, &other, None);
    assert_eq!(answer["status"], 400, "{answer}");
    assert!(answer["body"]
        .as_str()
        .unwrap()
        .contains("AmbiguousRequest"));
    // A crumb holding another cookie after a comma: refused too.
    let hidden = get("/", &[("cookie", "a=1, access_token=forged")]);
    assert_eq!(h2_request(&gw, &hidden, None)["status"], 400);
    gw.stop();
}

#[test]
fn huge_or_many_http2_header_fields_get_431_and_never_a_crash() {
    let mut gw = gateway();
    let big = "x".repeat(9000);
    let answer = h2_request(&gw, &get("/public", &[("x-big", &big)]), None);
    assert_eq!(answer["status"], 431, "{answer}");
    assert!(answer["body"].as_str().unwrap().contains("TooLarge"));
    let names: Vec<String> = (0..2000).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let answer = h2_request(&gw, &get("/public", &many), None);
    assert_eq!(answer["status"], 431, "{answer}");
    assert_eq!(h2_request(&gw, &get("/public", &[]), None)["status"], 200);
    gw.stop();
}

/// The CPU time (user and system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn a_rapid_reset_burst_is_cut_short_and_costs_little() {
    let mut gw = gateway();
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let pid = gw.pid().expect("pid");
    let before = cpu_ticks(pid);
    let port = gw.port.to_string();
    let burst = python_json("h2_raw.py", &["rapid-reset", &port, "20000", "/", &token]);
    let used = cpu_ticks(pid) - before;
    // The engine (h2) ends the connection with ENHANCE_YOUR_CALM long before 20000 streams.
    assert_eq!(burst["goaway"], 11, "{burst}");
    assert!(burst["sent"].as_u64().unwrap() < 20000, "{burst}");
    // Under a second of CPU (100 ticks) for the whole burst, and the next request served.
    assert!(used < 100, "{used} ticks for the burst: {burst}");
    assert_eq!(burst["status"], 200, "{burst}");
    eprintln!("rapid reset: {burst}, {used} ticks of CPU");
    gw.stop();
}

/// Sends `request` on a new HTTP/1.1 connection to `port`; what came back until the
/// connection closed (or 3 s of silence).
fn http1(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn an_upgrade_is_a_websocket_the_client_asked_for_or_none() {
    let mut gw = gateway();
    // The upstream switches protocols for a plain GET: refused (502), no tunnel.
    let answer = http1(gw.port, "GET /switch HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    assert!(!answer.contains("RAW-TUNNEL"), "{answer}");
    // An h2c upgrade (h2c smuggling: the tunnel would carry unjudged requests): the upstream
    // gets the request without it, and answers it as HTTP/1.1.
    let h2c = "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    let answer = http1(gw.port, h2c);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(!lower.contains("upgrade: h2c"), "{answer}");
    assert!(!lower.contains("http2-settings"), "{answer}");
    let answer = http1(gw.port, &h2c.replace("/echo", "/switch"));
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
    // A WebSocket upgrade also listing h2c never reaches the upstream with h2c.
    let both = "GET /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let answer = http1(gw.port, both).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(!answer.contains("h2c"), "{answer}");
    // A WebSocket upgrade the upstream accepts: the tunnel opens.
    let websocket = both
        .replace("/echo", "/switch")
        .replace("websocket, h2c", "websocket");
    let answer = http1(gw.port, &websocket);
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    // A token in the query string of an upgrade is refused like any other (RFC 6750 §2.3:
    // never read from the query), before the upstream hears of it.
    let query = "GET /switch?access_token=abc HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let answer = http1(gw.port, query);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    gw.stop();
}
