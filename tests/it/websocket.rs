//! WebSockets through a protected route, with a real server and client (the Python
//! `websockets` library, `tests/python/websocket_echo.py`): the upgrade passes with a token (in
//! `Authorization` or, as browsers send it, in the `access_token` cookie) and reaches the
//! upstream with the identity headers; without one, or with a refused one, the client gets the
//! gateway's 401 (or 403) before any upgrade. An open socket is judged once, at the upgrade: it
//! stays open when its token expires (see README, *Protocols*).

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// A gateway whose `/ws` route (users of the app) and `/ws-admin` route (admins) lead to the
/// WebSocket echo server at `ws_port`.
fn websocket_gateway(ws_port: u16) -> TestGateway {
    TestGateway::start_with(Options {
        extra_routes: format!(
            "  - path: /ws\n    upstream: http://127.0.0.1:{ws_port}\n    \
             auth: {{applicationId: {APP}}}\n    \
             identityHeaders: {{X-User-Id: sub, X-User-Roles: roles}}\n  \
             - path: /ws-admin\n    upstream: http://127.0.0.1:{ws_port}\n    \
             auth: {{applicationId: {APP}, roles: [admin]}}\n"
        ),
        ..Default::default()
    })
}

/// Opens a WebSocket at `path` through `gw`; `extra` are the client's options.
fn open(gw: &TestGateway, path: &str, extra: &[&str]) -> Value {
    let url = format!("ws://127.0.0.1:{}{path}", gw.port);
    let mut args = vec!["client", url.as_str()];
    args.extend_from_slice(extra);
    python_json("websocket_echo.py", &args)
}

#[test]
fn a_websocket_upgrade_passes_a_protected_route_only_with_a_token() {
    let server = PythonServer::start("websocket_echo.py", &["server"]);
    let port = server.port;
    let gw = websocket_gateway(port);
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));

    let opened = open(&gw, "/ws/chat?room=1", &["--token", &token]);
    assert_eq!(opened["status"], 101, "{opened}");
    assert_eq!(opened["echo"], "ping");
    let upgrade = &opened["upgrade"];
    assert_eq!(upgrade["path"], "/ws/chat?room=1");
    let headers = &upgrade["headers"];
    assert_eq!(headers["x-user-id"], json!([user.to_string()]), "{upgrade}");
    assert_eq!(headers["x-user-roles"], json!(["user"]));
    assert_eq!(headers["upgrade"], json!(["websocket"]));
    assert_eq!(headers["authorization"], json!([format!("Bearer {token}")]));

    // Browsers cannot set Authorization on a WebSocket: the access_token cookie opens it too.
    let opened = open(
        &gw,
        "/ws",
        &["--cookie", &format!("access_token={token}; a=1")],
    );
    assert_eq!(opened["status"], 101, "{opened}");
    assert_eq!(
        opened["upgrade"]["headers"]["x-user-id"],
        json!([user.to_string()])
    );

    // Refused before any upgrade: no token, a bad token, a token without the route's role.
    let refused = open(&gw, "/ws", &[]);
    assert_eq!(refused["status"], 401, "{refused}");
    assert_eq!(
        refused["headers"]["www-authenticate"],
        "Bearer realm=\"gatehouse\""
    );
    let body: Value = serde_json::from_str(refused["body"].as_str().expect("body")).expect("json");
    assert_eq!(body["generalErrors"][0]["code"], "[MissingToken]");
    let refused = open(&gw, "/ws", &["--token", "not-a-token"]);
    assert_eq!(refused["status"], 401, "{refused}");
    let refused = open(&gw, "/ws-admin", &["--token", &token]);
    assert_eq!(refused["status"], 403, "{refused}");
    let other_app = gw.token(Algorithm::ES256, &claims(user, OTHER_APP, &["user"]));
    let refused = open(&gw, "/ws", &["--token", &other_app]);
    assert_eq!(refused["status"], 403, "{refused}");
}

#[test]
fn an_open_websocket_is_judged_at_its_upgrade_only() {
    let server = PythonServer::start("websocket_echo.py", &["server"]);
    let port = server.port;
    let gw = websocket_gateway(port);
    let mut short = claims(Uuid::new_v4(), APP, &["user"]);
    short["exp"] = json!(now() + 2);
    let token = gw.token(Algorithm::ES256, &short);
    // The token expires while the socket is open: the socket stays open (documented).
    let opened = open(&gw, "/ws", &["--token", &token, "--wait", "3"]);
    assert_eq!(opened["status"], 101, "{opened}");
    assert_eq!(opened["after_wait"], "again", "{opened}");
    // A new upgrade with the expired token is refused.
    let refused = open(&gw, "/ws", &["--token", &token]);
    assert_eq!(refused["status"], 401, "{refused}");
}

#[test]
fn an_open_websocket_carries_more_than_the_body_limit_in_either_direction() {
    let server = PythonServer::start("websocket_echo.py", &["server"]);
    let port = server.port;
    let gw = TestGateway::start_with(Options {
        extra_routes: format!(
            "  - path: /ws\n    upstream: http://127.0.0.1:{port}\n    \
             auth: {{applicationId: {APP}}}\n  \
             - path: /ws-open\n    upstream: http://127.0.0.1:{port}\n    \
             auth: {{enabled: false}}\n"
        ),
        ..Default::default()
    });
    let token = gw.token(Algorithm::ES256, &claims(Uuid::new_v4(), APP, &["user"]));
    // 48 times the test gateway's `limits.maxBodyBytes` (64 KiB), each message echoed intact,
    // on a protected route and on an open one.
    for (path, extra) in [("/ws", vec!["--token", &token]), ("/ws-open", vec![])] {
        let mut options = extra;
        options.extend(["--bulk", "3145728"]);
        let opened = open(&gw, path, &options);
        assert_eq!(opened["status"], 101, "{path}: {opened}");
        assert_eq!(opened["bulk"], 3_145_728, "{path}: {opened}");
    }
    // A request body over the limit is still refused on the same route.
    let big = client()
        .post(gw.url("/ws"))
        .header("Authorization", format!("Bearer {token}"))
        .body(vec![b'x'; 70_000])
        .send()
        .expect("post");
    assert_eq!(big.status().as_u16(), 413);
}

#[test]
fn an_open_websocket_is_a_byte_pipe_past_the_body_limit() {
    use std::io::{Read, Write};
    use std::time::Duration;
    let server = PythonServer::start("websocket_echo.py", &["raw-server"]);
    let port = server.port;
    let gw = TestGateway::start_with(Options {
        extra_routes: open_route("/pipe", port),
        ..Default::default()
    });
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream
        .write_all(
            b"GET /pipe HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .expect("upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("101 header");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // 20 pieces of 100,000 bytes: 30 times the test gateway's `limits.maxBodyBytes` (64 KiB).
    for piece in 0..20u8 {
        let sent = vec![piece; 100_000];
        stream.write_all(&sent).expect("write");
        let mut echoed = vec![0u8; sent.len()];
        let read = stream.read_exact(&mut echoed);
        assert!(read.is_ok() && echoed == sent, "piece {piece}: {read:?}");
    }
}
