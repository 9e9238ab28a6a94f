//! The client's address through the real binary on a dual-stack listener (`listen: "[::]:…"`):
//! an IPv4 client arrives as an IPv4-mapped IPv6 peer (`::ffff:127.0.0.1`), an IPv6 client as
//! itself (`::1`). The upstream's `X-Forwarded-For` names one address one way — the IPv4 form
//! of a mapped address, as the hops of a trusted proxy's `X-Forwarded-For` are read — and
//! the trusted-proxy rules (README, *How a proxied request is handled*) apply to mapped peers
//! as to their IPv4 form.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::kit::{Options, RecordingUpstream, TestGateway};

/// A gateway listening on `[::]` (IPv4 and IPv6), its routes leading to `upstream`, with
/// `extra` top-level YAML.
fn dual_stack_gateway(upstream: &RecordingUpstream, extra: &str) -> TestGateway {
    let options = Options {
        upstream: Some(upstream.url()),
        extra: extra.into(),
        ..Options::default()
    };
    let mut gw = TestGateway::start_with(options.clone());
    let text = gw.config_text(&options).replace(
        &format!("listen: 127.0.0.1:{}\n", gw.port),
        &format!("listen: \"[::]:{}\"\n", gw.port),
    );
    assert!(text.contains("[::]"), "{text}");
    std::fs::write(&gw.config_path, text).expect("config");
    gw.restart();
    gw
}

/// The `X-Forwarded-For` values the upstream got for a request to the public route from
/// `client` (an address to connect to the gateway's port on), sending `forwarded` as its own.
fn forwarded_for(gw: &TestGateway, client: &str, forwarded: Option<&str>) -> Value {
    let mut stream =
        TcpStream::connect((client, gw.port)).unwrap_or_else(|e| panic!("{client}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let extra = forwarded.map_or(String::new(), |f| format!("X-Forwarded-For: {f}\r\n"));
    let request =
        format!("GET /public/x HTTP/1.1\r\nHost: a.example\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = answer.split_once("\r\n\r\n").expect("body").1;
    let seen: Value = serde_json::from_str(body).expect("json");
    seen["headers"]["x-forwarded-for"].clone()
}

#[test]
fn a_dual_stack_listener_forwards_each_client_in_one_form() {
    let upstream = RecordingUpstream::start();
    let mut gw = dual_stack_gateway(&upstream, "");
    // An IPv4 client (a mapped peer on this listener): its IPv4 form, whatever it claims.
    assert_eq!(
        forwarded_for(&gw, "127.0.0.1", None),
        serde_json::json!(["127.0.0.1"])
    );
    assert_eq!(
        forwarded_for(&gw, "127.0.0.1", Some("203.0.113.9")),
        serde_json::json!(["127.0.0.1"])
    );
    // An IPv6 client: as itself.
    assert_eq!(
        forwarded_for(&gw, "::1", Some("203.0.113.9")),
        serde_json::json!(["::1"])
    );
    gw.stop();
}

#[test]
fn a_mapped_peer_is_trusted_as_its_ipv4_form() {
    let upstream = RecordingUpstream::start();
    let mut gw = dual_stack_gateway(&upstream, "trustedProxies: [127.0.0.1/32]\n");
    // The trusted proxy at 127.0.0.1 (mapped here) vouches for its client: replaced by it.
    assert_eq!(
        forwarded_for(&gw, "127.0.0.1", Some("198.51.100.1, 203.0.113.9")),
        serde_json::json!(["203.0.113.9"])
    );
    // A mapped hop is read as its IPv4 form; a trusted proxy with nothing to say is the client.
    assert_eq!(
        forwarded_for(&gw, "127.0.0.1", Some("::ffff:203.0.113.9")),
        serde_json::json!(["203.0.113.9"])
    );
    assert_eq!(
        forwarded_for(&gw, "127.0.0.1", None),
        serde_json::json!(["127.0.0.1"])
    );
    assert_eq!(
        forwarded_for(&gw, "127.0.0.1", Some("127.0.0.1")),
        serde_json::json!(["127.0.0.1"])
    );
    // ::1 is not a trusted proxy: its own claim is ignored.
    assert_eq!(
        forwarded_for(&gw, "::1", Some("203.0.113.9")),
        serde_json::json!(["::1"])
    );
    gw.stop();
}
