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
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("body: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        answers.push(H2Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: data,
        });
    }
    Ok(answers)
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
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut client, connection) = h2::client::handshake(stream)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let connection = tokio::spawn(connection);
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
