//! HTTP/1.1 framing at the engine: chunked request bodies with malformed chunk-size lines,
//! extensions or trailers are refused with 400 and `Connection: close` before the upstream
//! hears of the request (proxied routes) or the plugin runs (API routes); well-formed ones,
//! extensions included, pass; pipelined requests are answered in order.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use super::kit::*;

const CHUNKED_POST: &str =
    "Host: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json";

/// Malformed chunked bodies (after the request header), each with what is wrong with it.
fn malformed_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut trailers = b"0\r\n".to_vec();
    for i in 0..2000 {
        trailers.extend_from_slice(format!("X-Trailer-{i}: {}\r\n", "v".repeat(40)).as_bytes());
    }
    trailers.extend_from_slice(b"\r\n");
    vec![
        (
            "bare LF in an extension",
            b"2;a\nb\r\n{}\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "bare CR in an extension",
            b"2;a\rb\r\n{}\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "NUL in an extension",
            b"2;a\x00b\r\n{}\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "a control byte in an extension",
            b"2;a=\x01\r\n{}\r\n0\r\n\r\n".to_vec(),
        ),
        ("an empty chunk size", b"\r\n{}\r\n0\r\n\r\n".to_vec()),
        ("leading junk", b" 2\r\n{}\r\n0\r\n\r\n".to_vec()),
        ("trailing junk", b"2x\r\n{}\r\n0\r\n\r\n".to_vec()),
        (
            "17 hex digits",
            b"00000000000000002\r\n{}\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "5 KiB of extensions",
            format!("2;{}\r\n{{}}\r\n0\r\n\r\n", "a".repeat(5000)).into_bytes(),
        ),
        (
            "NUL in a trailer",
            b"2\r\n{}\r\n0\r\nX-T: \x00\r\n\r\n".to_vec(),
        ),
        ("an oversized trailer section", trailers),
    ]
}

/// Sends `request` on a new connection and reads the answer until the gateway closes the
/// connection. The status, the raw answer, and whether it was closed within 10 s.
fn send_and_read(port: u16, request: &[u8]) -> (u16, String, bool) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The gateway may stop reading (and close) before all of it was sent.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, closed)
}

fn says_close(response: &str) -> bool {
    let head = response.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .any(|l| l.eq_ignore_ascii_case("connection: close"))
}

#[test]
fn malformed_chunked_bodies_are_refused_before_the_upstream_hears_of_them() {
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        ..Default::default()
    });
    for (what, body) in malformed_bodies() {
        for head in [
            format!("POST /public/upload HTTP/1.1\r\n{CHUNKED_POST}\r\n\r\n"),
            format!(
                "POST /api/jwt/vend HTTP/1.1\r\n{CHUNKED_POST}\r\nAuthorization: {API_KEY}\r\n\r\n"
            ),
        ] {
            let mut request = head.clone().into_bytes();
            request.extend_from_slice(&body);
            let (status, response, closed) = send_and_read(gw.port, &request);
            let target = head.split(' ').nth(1).unwrap_or("");
            assert_eq!(status, 400, "{target}, {what}: {response}");
            assert!(says_close(&response), "{target}, {what}: {response}");
            assert!(closed, "{target}, {what}: the connection stays open");
            let errors = raw_body(&response);
            assert!(
                errors.get("generalErrors").is_some() || errors.get("fieldErrors").is_some(),
                "{target}, {what}: {response}"
            );
        }
    }
    assert_eq!(upstream.received(), Vec::<String>::new());
    // Nothing was signed for a refused body.
    let log = gw.log();
    assert!(!log.contains("panicked"), "{log}");
}

/// The gateway's resident set size in KiB.
fn rss_kib(gw: &TestGateway) -> u64 {
    let pid = gw.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Sends a chunked POST whose extensions (`shape`: one huge line, or many lines) total 16 MB
/// around a 2 KB body, from a writer thread, and reads the answer. The status, how long the
/// answer took, and the raw answer.
fn sixteen_megabytes_of_extensions(port: u16, many_lines: bool) -> (u16, Duration, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        let head = format!("POST /public/upload HTTP/1.1\r\n{CHUNKED_POST}\r\n\r\n");
        writer.write_all(head.as_bytes())?;
        let total = 16 * 1024 * 1024;
        if many_lines {
            // 1-byte chunks, each with an extension of 1000 bytes.
            let line = format!("1;{}\r\nx\r\n", "e".repeat(1000));
            for _ in 0..total / line.len() {
                writer.write_all(line.as_bytes())?;
            }
        } else {
            writer.write_all(b"800;")?;
            let block = vec![b'a'; 64 * 1024];
            for _ in 0..total / block.len() {
                writer.write_all(&block)?;
            }
            writer.write_all(b"\r\n")?;
            writer.write_all(&[b'b'; 2048])?;
            writer.write_all(b"\r\n")?;
        }
        writer.write_all(b"0\r\n\r\n")
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    let elapsed = started.elapsed();
    drop(stream);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, elapsed, text)
}

#[test]
fn sixteen_megabytes_of_chunk_extensions_are_refused_at_once_without_buffering() {
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        max_body_bytes: 32 * 1024 * 1024,
        ..Default::default()
    });
    let before = rss_kib(&gw);
    for many_lines in [false, true] {
        let (status, elapsed, response) = sixteen_megabytes_of_extensions(gw.port, many_lines);
        assert_eq!(status, 400, "many lines: {many_lines}: {response}");
        assert!(says_close(&response), "{response}");
        assert!(
            elapsed < Duration::from_secs(2),
            "many lines: {many_lines}: {elapsed:?}"
        );
    }
    let grown = rss_kib(&gw).saturating_sub(before);
    assert!(grown < 8 * 1024, "the gateway grew by {grown} KiB");
    assert_eq!(upstream.received(), Vec::<String>::new());
}

/// A chunked POST of `body` in chunks of `chunk` bytes, each with the extension `;a=b`.
fn chunked_with_extensions(target: &str, extra_header: &str, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut request = format!(
        "POST {target} HTTP/1.1\r\n{CHUNKED_POST}\r\n{extra_header}Connection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in body.chunks(chunk) {
        request.extend_from_slice(format!("{:x};a=b\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0;last\r\nX-Checksum: none\r\n\r\n");
    request
}

#[test]
fn well_formed_chunked_bodies_with_extensions_pass_whole() {
    let gw = TestGateway::start_with(Options {
        max_body_bytes: 1024 * 1024,
        ..Default::default()
    });
    // Proxied to the echo upstream: a short body (read before the upstream is contacted) and
    // one longer than the engine's 64 KiB retry buffer (held back until its end).
    for size in [5usize, 200 * 1024] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let request = chunked_with_extensions("/public/echo", "", &body, 4096);
        let (status, response) = raw_http(gw.port, &request);
        assert_eq!(
            status,
            200,
            "{size}: {}",
            &response[..response.len().min(300)]
        );
        let echoed = raw_body(&response);
        assert_eq!(
            echoed["body"].as_str().map(str::len),
            Some(size),
            "{size} bytes"
        );
        assert_eq!(echoed["body"].as_str().map(str::as_bytes), Some(&body[..]));
    }
    // And through the API.
    let claims =
        json!({"claims": {"sub": "00000000-0000-4000-8000-000000000001", "applicationId": APP}});
    let request = chunked_with_extensions(
        "/api/jwt/vend",
        &format!("Authorization: {API_KEY}\r\n"),
        claims.to_string().as_bytes(),
        16,
    );
    let (status, response) = raw_http(gw.port, &request);
    assert_eq!(status, 200, "{response}");
    assert!(raw_body(&response)["token"].is_string(), "{response}");
}

/// An upstream that keeps every byte it receives and never answers: what reached it.
fn raw_upstream() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let kept = kept.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    kept.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
            });
        }
    });
    (port, seen)
}

#[test]
fn a_long_chunked_body_malformed_past_the_retry_buffer_is_refused_and_never_forwarded() {
    let (port, seen) = raw_upstream();
    let gw = TestGateway::start_with(Options {
        max_body_bytes: 1024 * 1024,
        extra_routes: format!(
            "  - path: /raw\n    upstream: http://127.0.0.1:{port}\n    auth: {{required: false}}\n"
        ),
        ..Default::default()
    });
    // 128 KiB of good chunks, then a NUL in an extension: longer than what is read before
    // the upstream is contacted, so the upstream has the request header, but it must get no
    // byte of the body.
    let mut request = format!("POST /raw/up HTTP/1.1\r\n{CHUNKED_POST}\r\n\r\n").into_bytes();
    for _ in 0..32 {
        request.extend_from_slice(b"1000\r\n");
        request.extend_from_slice(&[b'z'; 4096]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"2;\x00\r\n{}\r\n0\r\n\r\n");
    let (status, response, closed) = send_and_read(gw.port, &request);
    assert_eq!(status, 400, "{response}");
    assert!(says_close(&response), "{response}");
    assert!(closed);
    std::thread::sleep(Duration::from_millis(200));
    let seen = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
    assert!(seen.starts_with("POST /raw/up HTTP/1.1\r\n"), "{seen}");
    let body = seen.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    assert_eq!(body, "", "body bytes reached the upstream");
    // The same body without the NUL passes whole (held back, then sent at its end).
    let good = String::from_utf8_lossy(&request)
        .replace("2;\u{0}\r\n", "2;a=b\r\n")
        .replace("/raw/up", "/public/echo");
    let (status, response) = raw_http(
        gw.port,
        good.replace("\r\n\r\n1000", "\r\nConnection: close\r\n\r\n1000")
            .as_bytes(),
    );
    assert_eq!(status, 200, "{}", &response[..response.len().min(300)]);
    assert_eq!(
        raw_body(&response)["body"].as_str().map(str::len),
        Some(32 * 4096 + 2)
    );
}

/// Reads `count` HTTP responses (with `Content-Length` bodies) from `stream`: the status,
/// whether it said `Connection: close`, and the body of each.
fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<(u16, bool, String)> {
    let mut buffer = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 8192];
    while responses.len() < count {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                responses.push((status, says_close(&head), body));
                buffer.drain(..end + 4 + length);
                continue;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
    responses
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let upstream = RecordingUpstream::start();
    // The recording upstream reads no chunked body: the chunked POST goes to the echo service.
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra_routes: "  - path: /echo\n    upstream: http://127.0.0.1:DEMO_PORT\n    auth: {required: false}\n".into(),
        ..Default::default()
    });
    let claims =
        json!({"claims": {"sub": "00000000-0000-4000-8000-000000000001", "applicationId": APP}})
            .to_string();
    // Sent in one write: a built-in answer, a proxied request, a refusal (no token), an API
    // call with a body, a chunked proxied POST, and a last proxied GET.
    let requests = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /public/one HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /app HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /api/jwt/vend HTTP/1.1\r\nHost: x\r\nAuthorization: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{claims}\
         POST /echo/two HTTP/1.1\r\n{CHUNKED_POST}\r\n\r\n2;a=b\r\n{{}}\r\n0\r\n\r\n\
         GET /public/three HTTP/1.1\r\nHost: x\r\n\r\n",
        claims.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(requests.as_bytes()).expect("write");
    let responses = read_responses(&mut stream, 6);
    let statuses: Vec<u16> = responses.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [200, 200, 401, 200, 200, 200], "{responses:?}");
    assert!(responses.iter().all(|r| !r.1), "kept open: {responses:?}");
    assert!(responses[0].2.contains("ok"), "{responses:?}");
    assert!(responses[1].2.contains("/public/one"), "{responses:?}");
    assert!(responses[3].2.contains("token"), "{responses:?}");
    assert!(responses[4].2.contains("/echo/two"), "{responses:?}");
    let echoed: serde_json::Value = serde_json::from_str(&responses[4].2).expect("echo JSON");
    assert_eq!(echoed["body"], "{}", "{responses:?}");
    assert!(responses[5].2.contains("/public/three"), "{responses:?}");
    assert_eq!(upstream.received(), ["/public/one", "/public/three"]);
    // The connection is still usable afterwards.
    stream
        .write_all(b"GET /public/four HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let more = read_responses(&mut stream, 1);
    assert_eq!(more.first().map(|r| r.0), Some(200), "{more:?}");
}

#[test]
fn requests_pipelined_after_a_refused_body_are_not_lost_silently() {
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        ..Default::default()
    });
    // After a malformed body the rest of the connection cannot be read the same way: the
    // refusal says `Connection: close`, so the client knows to send the next one again.
    let requests = format!(
        "POST /public/bad HTTP/1.1\r\n{CHUNKED_POST}\r\n\r\n2;\x00\r\n{{}}\r\n0\r\n\r\n\
         GET /public/next HTTP/1.1\r\nHost: x\r\n\r\n"
    );
    let (status, response, closed) = send_and_read(gw.port, requests.as_bytes());
    assert_eq!(status, 400, "{response}");
    assert!(says_close(&response), "{response}");
    assert!(closed);
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
    assert_eq!(upstream.received(), Vec::<String>::new());
}

/// What the engine refuses by itself, before any route is chosen (a request line, a header or a
/// framing that cannot be read one way only; `CONNECT`), is answered with Errors JSON too, and
/// the connection closed; the body never quotes the request.
#[test]
fn requests_the_engine_cannot_read_get_errors_json() {
    let gw = TestGateway::start();
    let cases: [(&[u8], u16); 8] = [
        (
            b"GET /app HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
        ),
        // A transfer coding other than chunked alone: never decoded, so never passed on.
        (
            b"POST /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"POST /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            b"GET /app HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
            400,
        ),
        (
            b"GET /app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            400,
        ),
        (b"GET /app HTTP/1.2\r\nHost: x\r\n\r\n", 400),
        (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", 405),
    ];
    for (request, expected) in cases {
        let (status, response, closed) = send_and_read(gw.port, request);
        let shown = String::from_utf8_lossy(request);
        assert_eq!(status, expected, "{shown}: {response}");
        assert!(closed, "{shown}");
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let errors: serde_json::Value = serde_json::from_str(body).expect("Errors JSON");
        assert!(
            errors["generalErrors"][0]["code"].is_string(),
            "{shown}: {response}"
        );
        assert!(
            !body.contains("Folded") && !body.contains("x:443"),
            "{body}"
        );
    }
}

/// Sends `head` on a new connection and reads the first answer's head: what the gateway says
/// to a client that waits before sending its body. Returns the stream and the head.
fn send_head_and_wait(port: u16, head: &str) -> (TcpStream, String) {
    let mut stream = connect_with_timeout(port, Duration::from_secs(5));
    stream.write_all(head.as_bytes()).expect("write");
    let answer = read_head(&mut stream).expect("an answer before the body");
    (stream, String::from_utf8_lossy(&answer).into_owned())
}

/// A client that sends `Expect: 100-continue` holds its body back until told to go on: the
/// gateway says `100 Continue` once it has admitted the request (an API request, a proxied
/// one whether chunked or framed by its length), then answers as usual; a request it
/// refuses gets its final answer and no invitation. The upstream is not asked to continue
/// again.
#[test]
fn a_client_that_expects_100_continue_is_told_to_go_on() {
    let gw = TestGateway::start();
    let claims = json!({"claims": {"sub": "00000000-0000-4000-8000-000000000001",
                                   "applicationId": APP}})
    .to_string();
    let head = format!(
        "POST /api/jwt/vend HTTP/1.1\r\nHost: x\r\nAuthorization: {API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        claims.len()
    );
    let (mut stream, first) = send_head_and_wait(gw.port, &head);
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
    stream.write_all(claims.as_bytes()).expect("body");
    let last = read_head(&mut stream).map(|h| String::from_utf8_lossy(&h).into_owned());
    assert!(
        last.as_deref()
            .is_some_and(|h| h.starts_with("HTTP/1.1 200 ")),
        "{last:?}"
    );

    let head = "POST /public/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                Expect: 100-continue\r\nConnection: close\r\n\r\n";
    let (mut stream, first) = send_head_and_wait(gw.port, head);
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
    stream.write_all(b"5\r\nhello\r\n0\r\n\r\n").expect("body");
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest);
    assert!(rest.starts_with("HTTP/1.1 200 "), "{rest}");
    let echoed = raw_body(&rest);
    assert_eq!(echoed["body"], "hello", "{rest}");
    assert!(echoed["headers"].get("expect").is_none(), "{rest}");

    // A body framed by its length streams upstream; the gateway, not the upstream (which
    // may not know the expectation), tells the client to send it.
    let head = "POST /public/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\
                Expect: 100-continue\r\nConnection: close\r\n\r\n";
    let (mut stream, first) = send_head_and_wait(gw.port, head);
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
    stream.write_all(b"hello").expect("body");
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest);
    let echoed = raw_body(&rest);
    assert_eq!(echoed["body"], "hello", "{rest}");
    assert!(echoed["headers"].get("expect").is_none(), "{rest}");

    // Refused before the body is wanted: the final answer, no `100 Continue`.
    for (head, status) in [
        (
            "POST /private HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
             Expect: 100-continue\r\n\r\n"
                .to_string(),
            401,
        ),
        (
            format!(
                "POST /api/jwt/vend HTTP/1.1\r\nHost: x\r\nAuthorization: {API_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 99999999\r\n\
                 Expect: 100-continue\r\n\r\n"
            ),
            413,
        ),
    ] {
        let (_, first) = send_head_and_wait(gw.port, &head);
        assert!(first.starts_with(&format!("HTTP/1.1 {status} ")), "{first}");
    }
}

/// An upstream that answers every request on a connection with `answer`, reading each
/// request's head only (none of these requests has a body).
fn scripted_upstream(answer: String) -> u16 {
    serve_connections(move |mut stream| {
        while read_head(&mut stream).is_some() {
            if stream.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
    })
}

/// An upstream answering an early hint, then `body` in chunked framing.
fn chunked_upstream(body: &'static str) -> u16 {
    scripted_upstream(format!(
        "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
         HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    ))
}

/// A `204` reaches the client without the `Content-Length` its upstream put on it (RFC 9110
/// §8.6), and the connection serves the next request.
#[test]
fn a_204_carries_no_framing_headers() {
    let upstream =
        scripted_upstream("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n".to_string());
    let gw = TestGateway::start_with(Options {
        extra_routes: open_route("/empty", upstream),
        ..Default::default()
    });
    let mut stream = connect_with_timeout(gw.port, Duration::from_secs(10));
    let request = "GET /empty/a HTTP/1.1\r\nHost: x\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("write");
    let head = String::from_utf8(read_head(&mut stream).expect("head")).expect("text");
    assert!(head.starts_with("HTTP/1.1 204 "), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("content-length"),
        "{head}"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let head = String::from_utf8(read_head(&mut stream).expect("head")).expect("text");
    assert!(
        head.starts_with("HTTP/1.1 204 "),
        "the connection serves on: {head}"
    );
}

/// An HTTP/1.0 client gets no informational answer (RFC 9110 §15.2) and no chunked framing
/// (RFC 9112 §6.1): the body as it is, ended by the connection's end. An HTTP/1.1 client gets
/// both, and keeps its connection.
#[test]
fn an_http_1_0_client_gets_neither_1xx_nor_chunked_framing() {
    let upstream = chunked_upstream("hello, old client");
    let gw = TestGateway::start_with(Options {
        extra_routes: open_route("/chunky", upstream),
        ..Default::default()
    });
    for keep_alive in ["", "Connection: keep-alive\r\n"] {
        let request = format!("GET /chunky/x HTTP/1.0\r\nHost: x\r\n{keep_alive}\r\n");
        let mut stream = connect_with_timeout(gw.port, Duration::from_secs(10));
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200 "),
            "{keep_alive:?}: {answer}"
        );
        let (head, body) = answer.split_once("\r\n\r\n").expect("head");
        let head = head.to_ascii_lowercase();
        assert!(!head.contains("transfer-encoding"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        assert_eq!(body, "hello, old client", "{keep_alive:?}");
    }
    let (status, answer) = raw_http(
        gw.port,
        b"GET /chunky/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 103, "an HTTP/1.1 client gets the hint: {answer}");
    assert!(answer.contains("Transfer-Encoding: chunked"), "{answer}");
}

/// `100 Continue` says nothing of the connection: the answer that follows keeps it, and a
/// request pipelined behind is answered. Expectations other than `100-continue` are refused
/// with 417 and the connection closed (its body would otherwise be read as a request); an
/// HTTP/1.0 request's are ignored; no upstream ever gets an `Expect` header.
#[test]
fn expectations_are_met_or_refused_at_the_edge() {
    let gw = TestGateway::start();
    let head = "POST /public/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\
                Expect: 100-continue\r\n\r\n";
    let (mut stream, first) = send_head_and_wait(gw.port, head);
    assert!(first.starts_with("HTTP/1.1 100 Continue\r\n"), "{first}");
    stream
        .write_all(b"hiGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("body and next");
    let mut rest = String::new();
    let _ = stream.read_to_string(&mut rest);
    assert_eq!(rest.matches("HTTP/1.1 200 ").count(), 2, "{rest}");
    assert!(!rest.contains("\r\nConnection: close\r\n\r\n{\n"), "{rest}");

    for expect in ["foo", "100-continue, foo", "100-continue;x=1"] {
        let head = format!(
            "POST /public/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: {expect}\r\n\r\n"
        );
        let (status, answer) = raw_http(gw.port, head.as_bytes());
        assert_eq!(status, 417, "{expect}: {answer}");
        assert!(says_close(&answer), "{expect}: {answer}");
        assert_eq!(
            raw_body(&answer)["generalErrors"][0]["code"],
            "[ExpectationFailed]"
        );
    }
    for (version, expect) in [
        ("1.0", "100-continue"),
        ("1.0", "foo"),
        ("1.1", "100-continue"),
    ] {
        let request = format!(
            "GET /public/echo HTTP/{version}\r\nHost: x\r\nExpect: {expect}\r\nConnection: close\r\n\r\n"
        );
        let (status, answer) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 200, "{version} {expect}: {answer}");
        let echoed = raw_body(&answer);
        assert!(echoed["headers"].get("expect").is_none(), "{answer}");
    }
}

/// A 405 lists what the path is served with (RFC 9110 §15.5.6); a `TRACE` is refused on
/// every route, never forwarded (its echo would hand back the verified credentials); an
/// absolute-form request without `Host` is a 400 (RFC 9112 §3.2).
#[test]
fn refused_methods_name_the_allowed_ones_and_trace_never_reaches_an_upstream() {
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        ..Default::default()
    });
    let http = client();
    let vend = http.get(gw.url("/api/jwt/vend")).send().expect("send");
    assert_eq!(vend.status(), 405);
    assert_eq!(
        vend.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let refresh = http.put(gw.url("/api/jwt/refresh")).send().expect("send");
    assert_eq!(refresh.status(), 405);
    assert_eq!(
        refresh.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, POST, DELETE")
    );
    let session = gw.login("trace@example.com", &[]);
    for (method, path) in [
        ("TRACE", "/public/x"),
        ("TRACE", "/hello"),
        ("trace", "/public/x"),
        ("TRACK", "/hello"),
    ] {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            session.token
        );
        let (status, answer) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 405, "{path}: {answer}");
        assert!(answer.contains("\r\nAllow: GET, HEAD, POST"), "{answer}");
        assert!(!answer.contains(&session.token), "{answer}");
    }
    for method in ["GET", "TRACE"] {
        let request = format!("{method} http://x/public/x HTTP/1.1\r\nConnection: close\r\n\r\n");
        let (status, answer) = raw_http(gw.port, request.as_bytes());
        assert_eq!(status, 400, "{method}: {answer}");
    }
    // The public health check answers GET and HEAD only.
    let put = http.put(gw.url("/health")).send().expect("send");
    assert_eq!(put.status(), 405);
    assert_eq!(
        put.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET, HEAD")
    );
    assert_eq!(upstream.received(), Vec::<String>::new());
}

/// A header too large gets the status that says which part: 414 for a target over
/// `limits.maxHeaderBytes` by itself (RFC 9110 §15.5.15), 431 for more header fields than the
/// engine holds (RFC 6585 §5), each with Errors JSON. The engine's own 405 (`CONNECT`) lists
/// the methods a route forwards; no answer names the software.
#[test]
fn oversized_headers_say_which_part_is_too_large() {
    let gw = TestGateway::start();
    let long = format!(
        "GET /public/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let (status, too_long) = raw_http(gw.port, long.as_bytes());
    assert_eq!(status, 414, "{too_long}");
    assert_eq!(
        raw_body(&too_long)["generalErrors"][0]["code"],
        "[URITooLong]",
        "{too_long}"
    );
    let mut many = "GET /public/x HTTP/1.1\r\nHost: x\r\n".to_string();
    for i in 0..300 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (status, answer, closed) = send_and_read(gw.port, many.as_bytes());
    assert_eq!(status, 431, "{answer}");
    assert!(closed);
    assert_eq!(
        raw_body(&answer)["generalErrors"][0]["code"],
        "[RequestHeaderFieldsTooLarge]"
    );
    let (status, answer, _) =
        send_and_read(gw.port, b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n");
    assert_eq!(status, 405, "{answer}");
    assert!(answer.contains("\r\nAllow: GET, HEAD, POST"), "{answer}");
    for answer in [&answer, &too_long] {
        assert!(!answer.to_ascii_lowercase().contains("pingora"), "{answer}");
    }
}
