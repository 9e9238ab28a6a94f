//! WebSocket upgrades (HTTP/1.1) attacked through the real binary, against a raw upstream that
//! switches protocols, reports the upgrade request's header block byte for byte and then
//! echoes the tunnel's bytes: forged controlled headers on the upgrade of a protected and of an
//! open route, the token in a cookie against the one in `Authorization`, and an upgrade refused
//! for want of a token with more bytes pipelined behind it (no tunnel, nothing reaches the
//! upstream). A token that expires while its socket is open is `websocket.rs`'s (the socket
//! stays open: README, *Protocols*).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use uuid::Uuid;

use super::kit::{claims, Options, TestGateway, APP};

/// The end of the upstream's report of the upgrade request.
const END: &str = "\r\n--END--\r\n";

/// An upstream switching every request to WebSocket: `101`, the request's header block and
/// [`END`], then an echo of the tunnel. Returns its port and its count of connections.
fn switching_upstream() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let Some(head) = super::kit::read_head(&mut stream) else {
                    return;
                };
                let answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
                let mut all = answer.as_bytes().to_vec();
                all.extend_from_slice(&head);
                all.extend_from_slice(END.as_bytes());
                let _ = stream.write_all(&all);
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, connections)
}

/// A gateway with `/ws` (users of the app, identity headers) and `/open-ws` (no auth) leading
/// to the switching upstream at `port`.
fn gateway(port: u16) -> TestGateway {
    TestGateway::start_with(Options {
        extra_routes: format!(
            "  - path: /ws\n    upstream: http://127.0.0.1:{port}\n    \
             auth: {{applicationId: {APP}}}\n    \
             identityHeaders: {{X-User-Id: sub, X-User-Roles: roles}}\n  \
             - path: /open-ws\n    upstream: http://127.0.0.1:{port}\n    \
             auth: {{enabled: false}}\n"
        ),
        ..Options::default()
    })
}

/// Forged controlled headers, each twice or in another spelling.
const FORGED: &str = "X-User-Id: forged-1\r\nx-user-id: forged-2\r\nX-User-Roles: admin\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nX-Forwarded-Proto: gopher\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX_User_Id: forged-3\r\nX-Forwarded-User: boss\r\n";

/// An upgrade request of `path` with `extra` header lines.
fn upgrade(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: a.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// Opens a connection, writes `request`, and reads until `until` was read, the connection
/// closed, or 10 s of silence (a loaded machine); the stream (for more) and what was read.
fn exchange(port: u16, request: &str, until: &str) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let text = read_until(&mut stream, until);
    (stream, text)
}

fn read_until(stream: &mut TcpStream, until: &str) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains(until) {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// The header lines of the upgrade request the upstream reported, lower-cased names.
fn upstream_lines(answer: &str, name: &str) -> Vec<String> {
    let report = answer.split("\r\n\r\n").nth(1).expect("the report");
    report
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

#[test]
fn forged_controlled_headers_on_an_upgrade_never_reach_the_upstream() {
    let (port, _) = switching_upstream();
    let mut gw = gateway(port);
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    for (path, auth) in [
        ("/ws", format!("Authorization: Bearer {token}\r\n")),
        ("/ws", format!("Cookie: a=1; access_token={token}\r\n")),
        ("/open-ws", String::new()),
    ] {
        let request = upgrade(path, &format!("{auth}{FORGED}"));
        let (mut stream, answer) = exchange(gw.port, &request, END);
        assert!(answer.starts_with("HTTP/1.1 101"), "{path}: {answer}");
        let identity: &[&str] = if path == "/ws" { &["x-user-id"] } else { &[] };
        for name in identity {
            assert_eq!(
                upstream_lines(&answer, name),
                [user.to_string()],
                "{answer}"
            );
        }
        if path == "/ws" {
            assert_eq!(
                upstream_lines(&answer, "x-user-roles"),
                ["user"],
                "{answer}"
            );
        } else {
            assert!(upstream_lines(&answer, "x-user-id").is_empty(), "{answer}");
            assert!(
                upstream_lines(&answer, "x-user-roles").is_empty(),
                "{answer}"
            );
        }
        assert_eq!(
            upstream_lines(&answer, "x-forwarded-for"),
            ["127.0.0.1"],
            "{path}: {answer}"
        );
        assert_eq!(
            upstream_lines(&answer, "x-forwarded-proto"),
            ["http"],
            "{path}: {answer}"
        );
        for name in ["forwarded", "x-real-ip", "x_user_id", "x-forwarded-user"] {
            assert!(upstream_lines(&answer, name).is_empty(), "{name}: {answer}");
        }
        for forged in ["forged", "6.6.6.6", "7.7.7.7", "gopher", "boss", "admin"] {
            assert!(!answer.contains(forged), "{forged}: {answer}");
        }
        // The tunnel carries bytes both ways.
        stream.write_all(b"tunnel-bytes").expect("write");
        let echo = read_until(&mut stream, "tunnel-bytes");
        assert!(
            echo.contains("tunnel-bytes"),
            "{path}: {echo:?} {}",
            gw.log()
        );
    }
    gw.stop();
}

/// Many upgrades at once, each answered by the upstream at once with its `101` and the first
/// tunnel bytes: however the engine's two halves happen to be scheduled (the end of the
/// request's empty body read before or after the `101`), every tunnel carries the upstream's
/// bytes and then the client's both ways, and none is closed early (vendor/README.md).
#[test]
fn every_upgrade_keeps_its_tunnel_whichever_half_runs_first() {
    let (port, connections) = switching_upstream();
    let mut gw = gateway(port);
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let gateway_port = gw.port;
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for round in 0..25 {
                    let (mut stream, answer) =
                        exchange(gateway_port, &upgrade("/open-ws", ""), END);
                    if !answer.starts_with("HTTP/1.1 101") || !answer.contains(END) {
                        failures.push(format!("{client}/{round}: {answer:?}"));
                        continue;
                    }
                    let bytes = format!("tunnel-{client}-{round}");
                    let echo = stream
                        .write_all(bytes.as_bytes())
                        .map(|()| read_until(&mut stream, &bytes));
                    if !echo.as_deref().is_ok_and(|e| e.contains(&bytes)) {
                        failures.push(format!("{client}/{round}: no echo {echo:?}"));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 200: {failures:?}",
        failures.len()
    );
    assert_eq!(connections.load(Ordering::SeqCst), 200);
    gw.stop();
}

#[test]
fn a_refused_upgrade_opens_no_tunnel() {
    let (port, connections) = switching_upstream();
    let mut gw = gateway(port);
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let other = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    // No token, with a second request and WebSocket-looking bytes pipelined behind: a 401, and
    // whatever follows is read as requests (judged: 401 again) or dropped, never tunnelled.
    let pipelined = format!(
        "{}{}\u{81}\u{05}hello",
        upgrade("/ws", ""),
        upgrade("/ws", "")
    );
    let (_stream, answer) = exchange(gw.port, &pipelined, "never");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(!answer.contains(" 101 "), "{answer}");
    assert!(!answer.contains("hello"), "{answer}");
    // A cookie token and a Bearer token that differ: ambiguous, 400, no tunnel.
    let both = format!("Authorization: Bearer {token}\r\nCookie: access_token={other}\r\n");
    let (_stream, answer) = exchange(gw.port, &upgrade("/ws", &both), "never");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("AmbiguousRequest"), "{answer}");
    assert!(!answer.contains(" 101 "), "{answer}");
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the upstream was asked"
    );
    gw.stop();
}
