//! HTTP/2 and gRPC through the real binary: h2 negotiated by ALPN on a TLS listener and h2c
//! with prior knowledge on a plain one (`listenOptions`), requests over HTTP/2 judged by the
//! same canonical rules (`:authority` and `host`, `cookie` crumbs, paths), and a real gRPC
//! server and client (Python `grpcio`, `tests/python/grpc_echo.py`) through protected routes
//! to an `h2c://` upstream: allowed with a token (identity headers arrive as metadata, the
//! server's trailers and statuses reach the client), refused without (`UNAUTHENTICATED`) or
//! without the role (`PERMISSION_DENIED`), the gRPC clients' reading of the 401 and 403.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Request};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use uuid::Uuid;

use super::kit::*;

/// An HTTP/2 answer: status, headers, body.
struct H2Answer {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl H2Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `requests` one after the other on one HTTP/2 connection over `stream`; `Err` when the
/// connection or a stream fails.
async fn h2_exchange<S>(stream: S, requests: Vec<Request<()>>) -> Result<Vec<H2Answer>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut client, connection) = h2::client::handshake(stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(connection);
    let mut answers = Vec::new();
    for request in requests {
        let (response, _) = client
            .send_request(request, true)
            .map_err(|e| format!("send: {e}"))?;
        let response = response.await.map_err(|e| format!("response: {e}"))?;
        let (parts, mut body) = response.into_parts();
        let data = read_h2_body(&mut body).await?;
        answers.push(H2Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: data,
        });
    }
    Ok(answers)
}

/// An HTTP/2 client connection to loopback `port` with prior knowledge (h2c), driven on a
/// task of its own: the client, and the task (it ends when the connection does).
async fn h2c_connect(
    port: u16,
) -> Result<
    (
        h2::client::SendRequest<bytes::Bytes>,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ),
    String,
> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (client, connection) = h2::client::handshake(stream)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok((client, tokio::spawn(connection)))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// HTTP/2 with prior knowledge (h2c) to `port`.
fn h2c(port: u16, requests: Vec<Request<()>>) -> Result<Vec<H2Answer>, String> {
    runtime().block_on(async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(Duration::from_secs(10), h2_exchange(stream, requests))
            .await
            .map_err(|_| "timed out".to_string())?
    })
}

/// Connects over TLS to `port` trusting `cert` and offering `alpn`; returns the protocol the
/// server chose and, when it is `h2`, the answers to `requests`.
fn over_tls(
    port: u16,
    cert: &std::path::Path,
    alpn: &[&[u8]],
    requests: Vec<Request<()>>,
) -> (Option<Vec<u8>>, Result<Vec<H2Answer>, String>) {
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pem = pem::parse(std::fs::read(cert).expect("cert")).expect("pem");
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots
        .add(pem.contents().to_vec().into())
        .expect("root certificate");
    let mut config = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    runtime().block_on(async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.expect("tcp");
        let name = "localhost".try_into().expect("name");
        let tls = connector.connect(name, tcp).await.expect("tls handshake");
        let chosen = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if chosen.as_deref() != Some(b"h2") {
            return (chosen, Err("no h2".into()));
        }
        let answers = tokio::time::timeout(Duration::from_secs(10), h2_exchange(tls, requests))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        (chosen, answers)
    })
}

/// A GET of `uri` with these headers (repeated names are separate fields, as HTTP/2 sends
/// `cookie` crumbs).
fn get(uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(()).expect("request")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn http2_is_negotiated_by_alpn_over_tls_and_requests_are_judged_as_over_http1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start_with(Options {
        extra: self_signed_tls(dir.path()),
        ..Default::default()
    });
    let cert = dir.path().join("cert.pem");
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));
    let base = format!("https://localhost:{}", gw.port);
    let auth = bearer(&token);
    let (alpn, answers) = over_tls(
        gw.port,
        &cert,
        &[b"h2", b"http/1.1"],
        vec![
            get(
                &format!("{base}/hello"),
                &[("authorization", &auth), ("x-user-id", "spoofed")],
            ),
            get(&format!("{base}/hello"), &[]),
            get(&format!("{base}/admin"), &[("authorization", &auth)]),
        ],
    );
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let answers = answers.expect("h2 answers");
    assert_eq!(answers[0].status, 200);
    let echoed = answers[0].json();
    assert_eq!(echoed["headers"]["x-user-id"], user.to_string());
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    assert_eq!(echoed["headers"]["host"], format!("localhost:{}", gw.port));
    assert_eq!(echoed["path"], "/hello");
    // Refusals are the same answers as over HTTP/1.1.
    assert_eq!(answers[1].status, 401);
    assert_eq!(
        answers[1].headers["www-authenticate"],
        "Bearer realm=\"gatehouse\""
    );
    assert_eq!(
        answers[1].json()["generalErrors"][0]["code"],
        "[MissingToken]"
    );
    assert_eq!(answers[2].status, 403);
    // A client that offers only HTTP/1.1 gets it, on the same listener.
    let (alpn, _) = over_tls(gw.port, &cert, &[b"http/1.1"], vec![]);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let response = gw.get_as("/hello", &token);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    check_status(response, 200);
}

#[test]
fn http2_over_tls_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = TestGateway::start_with(Options {
        extra: format!(
            "{}listenOptions: {{http2: false}}\n",
            self_signed_tls(dir.path())
        ),
        ..Default::default()
    });
    let (alpn, _) = over_tls(
        gw.port,
        &dir.path().join("cert.pem"),
        &[b"h2", b"http/1.1"],
        vec![],
    );
    assert_ne!(alpn.as_deref(), Some(&b"h2"[..]));
}

#[test]
fn h2c_is_accepted_with_prior_knowledge_only_when_enabled() {
    let gw = TestGateway::start_with(Options {
        extra: "listenOptions: {h2c: true}\n".into(),
        ..Default::default()
    });
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));
    let uri = format!("http://127.0.0.1:{}/hello", gw.port);
    let answers = h2c(
        gw.port,
        vec![get(&uri, &[("authorization", &bearer(&token))])],
    )
    .expect("h2c answers");
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].json()["headers"]["x-user-id"], user.to_string());
    assert_eq!(answers[0].json()["headers"]["x-forwarded-proto"], "http");
    // More header fields than an HTTP/1 request may have (256): 431 over HTTP/2 too.
    let names: Vec<String> = (0..300).map(|i| format!("x-field-{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let answers = h2c(gw.port, vec![get(&uri, &many)]).expect("h2c answers");
    assert_eq!(answers[0].status, 431);
    // HTTP/1.1 on the same listener is unchanged.
    let response = gw.get_as("/hello", &token);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    check_status(response, 200);

    // Off by default: the preface is not HTTP/1.1, and no HTTP/2 answer comes.
    let plain = TestGateway::start();
    let uri = format!("http://127.0.0.1:{}/hello", plain.port);
    assert!(h2c(plain.port, vec![get(&uri, &[])]).is_err());
}

/// Seconds until the gateway closes `stream` (read until end of stream or an error), at most
/// `limit`; what it sent meanwhile.
fn closed_within(mut stream: std::net::TcpStream, limit: Duration) -> (Duration, Vec<u8>) {
    use std::io::Read;
    let started = std::time::Instant::now();
    stream.set_read_timeout(Some(limit)).expect("timeout");
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return (started.elapsed(), seen),
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn an_h2c_listener_closes_connections_that_send_less_than_a_preface_within_a_minute() {
    use std::io::Write;
    let gw = TestGateway::start_with(Options {
        extra: "listenOptions: {h2c: true}\n".into(),
        ..Default::default()
    });
    // Silent, a few bytes of an HTTP/1 request, and all but the last byte of the preface.
    let sends: [&[u8]; 3] = [b"", b"GET /", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r"];
    let clients: Vec<_> = sends
        .iter()
        .map(|bytes| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
            stream.write_all(bytes).expect("write");
            std::thread::spawn(move || closed_within(stream, Duration::from_secs(75)))
        })
        .collect();
    for (client, sent) in clients.into_iter().zip(sends) {
        let (after, seen) = client.join().expect("client");
        let sent = String::from_utf8_lossy(sent);
        assert!(
            after < Duration::from_secs(70),
            "{sent:?} held for {after:?}"
        );
        assert!(
            after > Duration::from_secs(50),
            "{sent:?} closed early: {after:?}"
        );
        assert!(
            seen.is_empty(),
            "{sent:?}: {}",
            String::from_utf8_lossy(&seen)
        );
    }
    // The listener still serves both protocols.
    let health = client().get(gw.url("/health")).send().expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let uri = format!("http://127.0.0.1:{}/health", gw.port);
    assert_eq!(
        h2c(gw.port, vec![get(&uri, &[])]).expect("h2c")[0].status,
        200
    );
}

/// How long an HTTP/2 connection to `port` (h2c), left open with no stream after `request`
/// (or after the handshake alone), lasts before the gateway ends it; an error after 30 s.
fn idle_h2c_closed_after(port: u16, request: Option<Request<()>>) -> Result<Duration, String> {
    runtime().block_on(async {
        let (mut client, connection) = h2c_connect(port).await?;
        if let Some(request) = request {
            let (response, _) = client
                .send_request(request, true)
                .map_err(|e| e.to_string())?;
            let mut body = response.await.map_err(|e| e.to_string())?.into_body();
            while let Some(chunk) = body.data().await {
                chunk.map_err(|e| e.to_string())?;
            }
        }
        let idle_from = std::time::Instant::now();
        let ended = tokio::time::timeout(Duration::from_secs(30), connection).await;
        // The client's handle is held until here: the client itself never ends the connection.
        drop(client);
        let _connection_outcome = ended.map_err(|_| "still open after 30 s".to_string())?;
        Ok(idle_from.elapsed())
    })
}

#[test]
fn idle_http2_connections_are_closed_after_the_idle_timeout() {
    let gw = TestGateway::start_with(Options {
        extra: "listenOptions: {h2c: true}\n".into(),
        idle_timeout_seconds: 2,
        ..Default::default()
    });
    let uri = format!("http://127.0.0.1:{}/health", gw.port);
    for request in [None, Some(get(&uri, &[]))] {
        let after = idle_h2c_closed_after(gw.port, request).expect("closed");
        assert!(after >= Duration::from_millis(1500), "{after:?}");
        assert!(after < Duration::from_secs(6), "{after:?}");
    }
}

#[test]
fn http2_requests_follow_the_canonical_request_rules() {
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        extra: "listenOptions: {h2c: true}\n".into(),
        upstream: Some(upstream.url()),
        ..Default::default()
    });
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));
    let other = gw.token(Algorithm::ES256, &claims(Uuid::new_v4(), APP, &["user"]));
    let base = format!("http://127.0.0.1:{}", gw.port);
    let cookie = format!("access_token={token}");
    let requests = vec![
        // 0: `:authority` and `host` that differ (RFC 9113 §8.3.1: malformed; the engine
        // refuses any difference, spelling included).
        get(
            &format!("{base}/app"),
            &[("host", "other.example"), ("cookie", &cookie)],
        ),
        // 1: `host` alone (no `:authority`), in another spelling of the host: sent upstream
        // in canonical form.
        get("/app", &[("host", "Example.Test.:80"), ("cookie", &cookie)]),
        // 2: `cookie` crumbs are one list: the token is read from them, the refresh token never
        // passes, the rest arrives on one line, in order.
        get(
            &format!("{base}/app"),
            &[
                ("cookie", "a=1"),
                ("cookie", &cookie),
                ("cookie", "refresh_token=secret-one"),
                ("cookie", "b=2"),
            ],
        ),
        // 3: two crumbs with two different tokens: ambiguous.
        get(
            &format!("{base}/app"),
            &[
                ("cookie", &cookie),
                ("cookie", &format!("access_token={other}")),
            ],
        ),
        // 4: a crumb whose name a framework reads as the token's.
        get(
            &format!("{base}/app"),
            &[("cookie", &cookie), ("cookie", "Access_Token=x")],
        ),
        // 5: the path in canonical form: `/public/../admin` is `/admin`, judged by its policy.
        get(&format!("{base}/public/../%61dmin"), &[("cookie", &cookie)]),
        // 6: climbing above the root.
        get(&format!("{base}/a/../../b"), &[("cookie", &cookie)]),
        // 7: a token in the query.
        get(&format!("{base}/app?access_token={token}"), &[]),
    ];
    let answers = h2c(gw.port, requests).expect("h2c answers");
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [400, 200, 200, 400, 400, 403, 400, 400]);
    for refused in [0, 3, 4, 6, 7] {
        let body = answers[refused].json();
        assert!(
            body["generalErrors"].is_array() || body["fieldErrors"].is_object(),
            "{refused}: {body}"
        );
    }
    for ambiguous in [0, 3, 4, 7] {
        assert_eq!(
            answers[ambiguous].json()["generalErrors"][0]["code"],
            "[AmbiguousRequest]",
            "{ambiguous}"
        );
    }
    assert_eq!(answers[0].headers["content-type"], "application/json");
    let host = &answers[1].json()["headers"]["host"];
    assert_eq!(host, &json!(["example.test"]));
    let crumbs = answers[2].json();
    assert_eq!(
        crumbs["headers"]["cookie"],
        json!([format!("a=1; access_token={token}; b=2")])
    );
    assert_eq!(crumbs["headers"]["x-user-id"], json!([user.to_string()]));
    // The refused requests never reached the upstream.
    assert_eq!(upstream.received(), ["/app", "/app"]);
}

/// A gateway whose `/gatehouse.test.Echo` routes go to the gRPC server at `grpc_port` over
/// h2c: any user of the app, and `Fail` for admins only; `extra` adds top-level settings.
fn grpc_gateway(grpc_port: u16, extra: String) -> TestGateway {
    TestGateway::start_with(Options {
        extra,
        extra_routes: format!(
            "  - path: /gatehouse.test.Echo\n    upstream: h2c://127.0.0.1:{grpc_port}\n    \
             auth: {{applicationId: {APP}}}\n    \
             identityHeaders: {{X-User-Id: sub, X-User-Roles: roles}}\n  \
             - path: /gatehouse.test.Echo/Fail\n    upstream: h2c://127.0.0.1:{grpc_port}\n    \
             auth: {{applicationId: {APP}, roles: [admin]}}\n"
        ),
        ..Default::default()
    })
}

/// One gRPC call through `target` (`127.0.0.1:port`), over TLS trusting `cert` when given.
fn grpc_call(
    target: &str,
    cert: Option<&std::path::Path>,
    token: Option<&str>,
    method: &str,
) -> Value {
    let mut args = vec![
        "client".to_string(),
        target.to_string(),
        "--method".into(),
        method.into(),
    ];
    if let Some(cert) = cert {
        args.extend(["--tls".into(), cert.display().to_string()]);
    }
    if let Some(token) = token {
        args.extend(["--token".into(), token.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python_json("grpc_echo.py", &args)
}

/// The gRPC checks shared by the TLS and h2c listeners.
fn grpc_through(gw: &TestGateway, cert: Option<&std::path::Path>) {
    let target = format!("127.0.0.1:{}", gw.port);
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::ES256, &claims(user, APP, &["user"]));
    let admin = gw.token(Algorithm::ES256, &claims(Uuid::new_v4(), APP, &["admin"]));

    let who = grpc_call(&target, cert, Some(&token), "Who");
    assert_eq!(who["code"], "OK", "{who}");
    let metadata = &who["reply"]["metadata"];
    assert_eq!(metadata["x-user-id"], json!([user.to_string()]), "{who}");
    assert_eq!(metadata["x-user-roles"], json!(["user"]));
    // An HTTP/2 upstream gets the forwarding headers in its header block too.
    assert_eq!(metadata["x-forwarded-for"], json!(["127.0.0.1"]), "{who}");
    let scheme = if cert.is_some() { "https" } else { "http" };
    assert_eq!(metadata["x-forwarded-proto"], json!([scheme]), "{who}");
    assert_eq!(
        metadata["te"],
        Value::Null,
        "te is the transport's, not metadata"
    );
    // The server's trailing metadata reaches the client.
    assert_eq!(who["trailers"]["x-served-by"], "echo");

    let count = grpc_call(&target, cert, Some(&token), "Count");
    assert_eq!(
        count["reply"],
        json!(["reply 0", "reply 1", "reply 2"]),
        "{count}"
    );
    // A status the server sets in its trailers passes as it is.
    let fail = grpc_call(&target, cert, Some(&admin), "Fail");
    assert_eq!(
        (&fail["code"], &fail["details"]),
        (&json!("NOT_FOUND"), &json!("no such thing"))
    );

    // Refusals, answered trailers-only in gRPC's terms: the status and the gateway's message
    // (not a client's reading of an HTTP 401, "Received http2 header with status: 401").
    let refused = grpc_call(&target, cert, None, "Who");
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
    assert_eq!(
        refused["details"], "This resource requires an access token.",
        "{refused}"
    );
    let refused = grpc_call(&target, cert, Some("not-a-token"), "Who");
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
    let refused = grpc_call(&target, cert, Some(&token), "Fail");
    assert_eq!(refused["code"], "PERMISSION_DENIED", "{refused}");
    let details = refused["details"].as_str().unwrap_or_default();
    assert!(!details.contains("http2 header"), "{refused}");
}

#[test]
fn grpc_passes_a_protected_route_over_tls() {
    let grpc = PythonServer::start("grpc_echo.py", &["server"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = grpc_gateway(grpc.port, self_signed_tls(dir.path()));
    grpc_through(&gw, Some(&dir.path().join("cert.pem")));
}

#[test]
fn grpc_passes_a_protected_route_over_h2c() {
    let grpc = PythonServer::start("grpc_echo.py", &["server"]);
    let gw = grpc_gateway(grpc.port, "listenOptions: {h2c: true}\n".into());
    grpc_through(&gw, None);
}

/// A gateway with an h2c listener and an open route `path` to the HTTP/1.1 upstream at
/// `upstream`.
fn h2c_gateway_to(path: &str, upstream: u16) -> TestGateway {
    TestGateway::start_with(Options {
        extra: "listenOptions: {h2c: true}\n".into(),
        extra_routes: open_route(path, upstream),
        ..Default::default()
    })
}

/// An HTTP/1.1 upstream as strict as h11 about framing, on keep-alive connections: each
/// request is read whole (a `Content-Length` or chunked body, no trailers) and answered `200`
/// with its body echoed; anything else where a request should start (a second chunked
/// terminator, say) is answered `400` and the connection closed, and is reported. Returns its
/// port and the reports: one per request, `"<method> <body>"`, or `"stray <bytes>"`.
fn strict_upstream() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = reports.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let reports = kept.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                while let Some(head) = read_head(&mut reader) {
                    let head = String::from_utf8_lossy(&head).to_string();
                    let method = head.split(' ').next().unwrap_or_default().to_string();
                    if !["GET", "POST"].contains(&method.as_str()) {
                        reports
                            .lock()
                            .expect("reports")
                            .push(format!("stray {head:?}"));
                        let _ = writer.write_all(
                            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        return;
                    }
                    let lower = head.to_ascii_lowercase();
                    let mut body = Vec::new();
                    if lower.contains("transfer-encoding: chunked") {
                        loop {
                            let mut size = String::new();
                            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                                return;
                            }
                            let size = usize::from_str_radix(size.trim_end(), 16).unwrap_or(0);
                            let mut chunk = vec![0u8; size + 2];
                            if reader.read_exact(&mut chunk).is_err() {
                                return;
                            }
                            body.extend_from_slice(&chunk[..size]);
                            if size == 0 {
                                break;
                            }
                        }
                    } else if let Some(at) = lower.find("content-length: ") {
                        let length: usize = lower[at + 16..]
                            .split("\r\n")
                            .next()
                            .and_then(|l| l.trim().parse().ok())
                            .unwrap_or(0);
                        body.resize(length, 0);
                        if reader.read_exact(&mut body).is_err() {
                            return;
                        }
                    }
                    let body = String::from_utf8_lossy(&body).to_string();
                    reports
                        .lock()
                        .expect("reports")
                        .push(format!("{method} {body}"));
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, reports)
}

/// Sends a POST of `uri` whose body is `parts`, one DATA frame each, then an empty DATA frame
/// that ends the stream (as `curl -T -` and CDNs streaming to an origin do), then a GET of
/// `uri`, on one HTTP/2 connection to `port`; returns each answer's status and body.
fn streamed_post_then_get(
    port: u16,
    uri: &str,
    parts: &[&str],
) -> Result<Vec<(u16, String)>, String> {
    runtime().block_on(async {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let (mut client, connection) = h2::client::handshake(stream)
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(connection);
            let post = Request::post(uri).body(()).expect("request");
            let (response, mut body) = client
                .send_request(post, false)
                .map_err(|e| format!("send: {e}"))?;
            for part in parts {
                body.send_data(bytes::Bytes::from(part.to_string()), false)
                    .map_err(|e| format!("data: {e}"))?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            body.send_data(bytes::Bytes::new(), true)
                .map_err(|e| format!("end: {e}"))?;
            let mut answers = Vec::new();
            let response = response.await.map_err(|e| format!("response: {e}"))?;
            answers.push(read_answer(response).await?);
            // The next request reuses the gateway's pooled connection to the upstream.
            let mut client = client.ready().await.map_err(|e| format!("ready: {e}"))?;
            let (response, _) = client
                .send_request(get(uri, &[]), true)
                .map_err(|e| format!("send: {e}"))?;
            let response = response.await.map_err(|e| format!("response: {e}"))?;
            answers.push(read_answer(response).await?);
            Ok(answers)
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .map_err(|_| "timed out".to_string())?
    })
}

/// An HTTP/2 body read to its end (its flow-control capacity given back as it is read);
/// `Err` when the stream fails.
async fn read_h2_body(body: &mut h2::RecvStream) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| format!("body: {e}"))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    Ok(data)
}

/// An HTTP/2 response's status and body.
async fn read_answer(response: http::Response<h2::RecvStream>) -> Result<(u16, String), String> {
    let (parts, mut body) = response.into_parts();
    let data = read_h2_body(&mut body).await?;
    Ok((
        parts.status.as_u16(),
        String::from_utf8_lossy(&data).to_string(),
    ))
}

/// An HTTP/2 request body without a length reaches an HTTP/1.1 upstream chunked; when the
/// client ends it with an empty DATA frame (END_STREAM), the upstream gets one last chunk, not
/// two: a second `0\r\n\r\n` would be read as the start of the next request on that
/// keep-alive connection, and the answer to it (a 400) given to whichever request came next.
#[test]
fn a_body_ended_by_an_empty_http2_frame_ends_its_upstream_body_once() {
    let (upstream, reports) = strict_upstream();
    let gw = h2c_gateway_to("/strict", upstream);
    let uri = format!("http://127.0.0.1:{}/strict/echo", gw.port);
    for round in 0..3 {
        let answers = streamed_post_then_get(gw.port, &uri, &["hello ", "world"])
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(
            answers,
            [(200, "hello world".to_string()), (200, String::new())],
            "round {round}: {:?}",
            reports.lock().expect("reports")
        );
    }
    let reports = reports.lock().expect("reports").clone();
    assert_eq!(
        reports,
        ["POST hello world", "GET "].repeat(3),
        "every request read whole, nothing stray between them"
    );
}

/// An `h2c://` upstream that answers every request `200` with the body `first `, an empty
/// DATA frame that does not end the stream, then `second` ending it.
fn h2c_upstream_sending_an_empty_frame() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut connection) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((_, mut respond))) = connection.accept().await {
                        tokio::spawn(async move {
                            let head = http::Response::builder().status(200).body(());
                            let Ok(mut body) = respond.send_response(head.expect("head"), false)
                            else {
                                return;
                            };
                            for (data, end) in [("first ", false), ("", false), ("second", true)] {
                                let _ = body.send_data(bytes::Bytes::from(data), end);
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        });
                    }
                });
            }
        })
    });
    port
}

/// The body of a chunked HTTP/1.1 response in `bytes` (after its head), and what follows its
/// last chunk; `None` when the chunks do not parse.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut rest = bytes;
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some((body, rest.strip_prefix(b"\r\n")?.to_vec()));
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// The other direction: an empty DATA frame in the middle of an HTTP/2 upstream's answer is
/// no chunk at all to an HTTP/1.1 client, never the last chunk (which would end the body
/// early and leave the rest of it to be read as the next answer on the connection).
#[test]
fn an_empty_http2_frame_from_the_upstream_does_not_end_the_clients_body() {
    use std::io::{Read, Write};
    let upstream = h2c_upstream_sending_an_empty_frame();
    let gw = TestGateway::start_with(Options {
        extra_routes: format!(
            "  - path: /h2-upstream\n    upstream: h2c://127.0.0.1:{upstream}\n    \
             auth: {{enabled: false}}\n"
        ),
        ..Default::default()
    });
    let mut client = std::net::TcpStream::connect(("127.0.0.1", gw.port)).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    for round in 0..2 {
        client
            .write_all(b"GET /h2-upstream/a HTTP/1.1\r\nHost: a.example\r\n\r\n")
            .expect("write");
        // Everything the gateway sends until it has been quiet for half a second.
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = client.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer).to_string();
        assert!(text.starts_with("HTTP/1.1 200"), "round {round}: {text}");
        let head_end = text.find("\r\n\r\n").expect("head") + 4;
        assert!(
            text[..head_end]
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{text}"
        );
        let (body, after) = dechunk(&answer[head_end..]).unwrap_or_else(|| panic!("{text}"));
        assert_eq!(String::from_utf8_lossy(&body), "first second", "{text:?}");
        assert!(after.is_empty(), "bytes after the last chunk: {text:?}");
    }
}

/// An HTTP/1.1 upstream that answers every request at once, `200` with a short body, without
/// reading the request's body; returns its port.
fn hasty_upstream() -> u16 {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut stream in listener.incoming().flatten() {
            if read_head(&mut stream).is_none() {
                continue;
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone");
            held.push(stream);
        }
    });
    port
}

/// An HTTP/2 client that opens a request stream, sends the start of a body and then nothing
/// more holds the stream no longer than its body earned (20 s for a few bytes: the pace a
/// body must keep, over HTTP/1.1 and HTTP/2 alike; the engine's read timeout, 60 s, bounds it
/// too), even when the upstream has already answered: the gateway resets the stream then, so
/// a client cannot keep streams (and with them its connection, which the idle timeout closes
/// only when no stream is open) for ever.
#[test]
fn a_stalled_http2_request_body_is_cut_off_at_the_read_timeout() {
    let upstream = hasty_upstream();
    let gw = h2c_gateway_to("/stalled", upstream);
    let uri = format!("http://127.0.0.1:{}/stalled/x", gw.port);
    let started = std::time::Instant::now();
    let outcome: Result<String, String> = runtime().block_on(async {
        let (mut client, connection) = h2c_connect(gw.port).await?;
        let post = Request::post(&uri).body(()).expect("request");
        let (response, mut body) = client
            .send_request(post, false)
            .map_err(|e| format!("send: {e}"))?;
        body.send_data(bytes::Bytes::from_static(b"the start"), false)
            .map_err(|e| format!("data: {e}"))?;
        // Nothing more is sent; the body stays open on the client's side.
        let ended = async {
            let reset = std::future::poll_fn(|cx| body.poll_reset(cx)).await;
            format!("reset {reset:?}")
        };
        let closed = async {
            let _ = connection.await;
            "connection closed".to_string()
        };
        // Kept, not awaited: the answer does not matter here, the stream's end does.
        let _answer = response;
        tokio::time::timeout(Duration::from_secs(100), async {
            tokio::select! { how = ended => how, how = closed => how }
        })
        .await
        .map_err(|_| "the stream still open after 100 s".to_string())
    });
    let waited = started.elapsed();
    assert!(
        waited > Duration::from_secs(18) && waited < Duration::from_secs(40),
        "ended after {waited:?}: {outcome:?}"
    );
}

/// A HEAD answered by the gateway itself over HTTP/2 (`/health`: the GET answer's status and
/// `content-length`; the REST API, whose routes answer GET only: its 405) has no DATA: a body after a HEAD's answer is a
/// protocol error to HTTP/2 clients (HTTP/1.1's is dropped by the engine).
#[test]
fn head_answers_of_the_gateway_carry_no_body_over_http2() {
    let gw = TestGateway::start_with(Options {
        extra: "listenOptions: {h2c: true}\n".into(),
        ..Default::default()
    });
    for path in ["/health", "/api/jwt/public-key"] {
        let uri = format!("http://127.0.0.1:{}{path}", gw.port);
        let head = Request::head(&uri).body(()).expect("request");
        let answers =
            h2c(gw.port, vec![head, get(&uri, &[])]).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (head, get) = (&answers[0], &answers[1]);
        assert!(head.body.is_empty(), "{path}: {} bytes", head.body.len());
        assert!(head.headers.contains_key("content-length"), "{path}");
        if path == "/health" {
            assert_eq!((head.status, get.status), (200, 200));
            assert_eq!(
                head.headers.get("content-length"),
                Some(&http::HeaderValue::from(get.body.len()))
            );
        }
    }
}
