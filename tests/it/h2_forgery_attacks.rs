//! The headers the gateway controls, forged over HTTP/2 (h2c with prior knowledge and h2 over
//! TLS), through the real binary to an upstream that records the header block it received
//! byte for byte ([`RecordingUpstream`]): lower-case forgeries (HTTP/2 allows no other case),
//! duplicated, in a header block cut into HEADERS + CONTINUATION frames, as request trailers,
//! `:path` in absolute form, `:authority` and `host`, and the `cookie` crumbs HTTP/2 splits a
//! cookie header into. The upstream must get each controlled header exactly once, with the
//! gateway's value, and exactly the credential the policy judged. The raw client is
//! `tests/python/h2_raw.py` (`send`), with the Python `h2` library's own checks off.

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::{
    claims, python_json, self_signed_tls, Options, RecordingUpstream, TestGateway, APP,
};

/// A gateway whose routes lead to `upstream`, with h2c on its plain listener, or TLS (and
/// HTTP/2 by ALPN) when `tls` is given (its `tls:` line).
fn gateway(upstream: &RecordingUpstream, tls: Option<String>) -> TestGateway {
    let extra = tls.unwrap_or_else(|| "listenOptions: {h2c: true}\n".into());
    TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra,
        ..Options::default()
    })
}

/// One HTTP/2 request as `spec` says (see `h2_raw.py send`), over TLS when `gw` has it.
fn send(gw: &TestGateway, mut spec: Value) -> Value {
    spec["tls"] = json!(gw.tls);
    python_json(
        "h2_raw.py",
        &["send", &gw.port.to_string(), &spec.to_string()],
    )
}

/// The pseudo-headers of a `method` request of `path` on `a.example`, then `extra`.
fn fields(method: &str, path: &str, extra: &[(&str, &str)]) -> Value {
    let scheme = "http";
    let mut all = vec![
        json!([":method", method]),
        json!([":scheme", scheme]),
        json!([":authority", "a.example"]),
        json!([":path", path]),
    ];
    all.extend(extra.iter().map(|(n, v)| json!([n, v])));
    Value::Array(all)
}

/// What the upstream received, from its answer: the header fields by lower-case name.
fn received(answer: &Value) -> Value {
    assert_eq!(answer["status"], 200, "{answer}");
    serde_json::from_str(answer["body"].as_str().expect("body")).expect("the upstream's JSON")
}

/// How many header lines of the upstream's header block (`head`) have `name`, in any case.
fn lines_named(seen: &Value, name: &str) -> usize {
    seen["head"]
        .as_str()
        .expect("head")
        .split("\r\n")
        .skip(1)
        .filter(|line| {
            line.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
        .count()
}

/// Every forgery of a controlled header a client can put in an HTTP/2 request: identity
/// headers, the forwarding headers, what other auth proxies set, a name with `_` or `.`, each
/// twice.
const FORGED: &[(&str, &str)] = &[
    ("x-user-id", "00000000-0000-0000-0000-000000000001"),
    ("x-user-id", "forged-2"),
    ("x-user-email", "boss@example.com"),
    ("x-user-roles", "admin"),
    ("x-user-roles", "root"),
    ("x-forwarded-for", "6.6.6.6"),
    ("x-forwarded-for", "7.7.7.7"),
    ("x-forwarded-proto", "gopher"),
    ("forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
    ("x-forwarded-host", "evil.example"),
    ("x-real-ip", "6.6.6.6"),
    ("x-forwarded-user", "boss"),
    ("remote-user", "boss"),
    ("x_user_id", "forged-underscore"),
    ("x.user.id", "forged-dot"),
];

/// The controlled headers the upstream gets from the gateway, each exactly once with its
/// value; none of the forgeries.
fn assert_only_the_gateways(seen: &Value, user: Uuid, proto: &str) {
    let headers = &seen["headers"];
    for (name, value) in [
        ("x-user-id", user.to_string()),
        ("x-user-email", "ann@example.com".into()),
        ("x-user-roles", "user".into()),
        ("x-forwarded-for", "127.0.0.1".into()),
        ("x-forwarded-proto", proto.into()),
    ] {
        assert_eq!(headers[name], json!([value]), "{name}: {seen}");
        assert_eq!(lines_named(seen, name), 1, "{name}: {seen}");
    }
    for name in [
        "forwarded",
        "x-forwarded-host",
        "x-real-ip",
        "x-forwarded-user",
        "remote-user",
        "x_user_id",
        "x.user.id",
    ] {
        assert_eq!(lines_named(seen, name), 0, "{name}: {seen}");
    }
    let head = seen["head"].as_str().expect("head");
    for forged in [
        "forged", "6.6.6.6", "7.7.7.7", "gopher", "boss", "admin", "evil",
    ] {
        assert!(!head.contains(forged), "{forged}: {head}");
    }
}

/// The forgeries in one header block, in one cut into many CONTINUATION frames, and as
/// trailers after a body: the upstream gets the gateway's headers only.
fn forgeries_never_pass(gw: &TestGateway, proto: &str) {
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    let bearer = format!("Bearer {token}");
    let mut extra = vec![("authorization", bearer.as_str())];
    extra.extend_from_slice(FORGED);
    let one_block = send(gw, json!({"headers": fields("GET", "/f", &extra)}));
    assert_only_the_gateways(&received(&one_block), user, proto);
    // The block cut into 400-byte frames: HEADERS, then CONTINUATION frames, with field
    // boundaries falling anywhere.
    let cut = send(
        gw,
        json!({"headers": fields("GET", "/f", &extra), "frame_size": 400}),
    );
    let seen = received(&cut);
    assert_only_the_gateways(&seen, user, proto);
    assert_eq!(seen["target"], "/f");
    // Cut into 10-byte frames (a CONTINUATION flood, CVE-2024-27316's kind): the engine ends
    // the connection (GOAWAY ENHANCE_YOUR_CALM) before the request exists.
    let flood = send(
        gw,
        json!({"headers": fields("GET", "/flood", &extra), "frame_size": 10}),
    );
    assert_eq!(flood["goaway"], 11, "{flood}");
    assert!(flood["status"].is_null(), "{flood}");
    // As trailers after a body: never forwarded (an HTTP/1.1 upstream cannot get trailers
    // with a Content-Length body, and an HTTP/2 one gets the request's body only).
    let headers = fields(
        "POST",
        "/f",
        &[("authorization", &bearer), ("content-length", "5")],
    );
    let trailers: Vec<Value> = FORGED.iter().map(|(n, v)| json!([n, v])).collect();
    let trailed = send(
        gw,
        json!({"headers": headers, "body": "hello", "trailers": trailers}),
    );
    assert_only_the_gateways(&received(&trailed), user, proto);
    // A public passthrough's upstream gets no identity at all, forged or not.
    let public = send(gw, json!({"headers": fields("GET", "/public/p", FORGED)}));
    let seen = received(&public);
    assert_eq!(lines_named(&seen, "x-user-id"), 0, "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-for"], json!(["127.0.0.1"]));
    assert_eq!(lines_named(&seen, "x-forwarded-for"), 1, "{seen}");
}

#[test]
fn forged_controlled_headers_never_reach_the_upstream_over_h2c() {
    let upstream = RecordingUpstream::start();
    let mut gw = gateway(&upstream, None);
    forgeries_never_pass(&gw, "http");
    gw.stop();
}

#[test]
fn forged_controlled_headers_never_reach_the_upstream_over_h2_with_tls() {
    let upstream = RecordingUpstream::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut gw = gateway(&upstream, Some(self_signed_tls(dir.path())));
    forgeries_never_pass(&gw, "https");
    gw.stop();
}

/// `:path` in absolute form, and `:authority` with `host`: the upstream gets the target in
/// origin form and the host the route judged, or the request is refused; never a route judged
/// on one host or path and the upstream told another.
#[test]
fn pseudo_header_tricks_are_judged_as_forwarded() {
    let upstream = RecordingUpstream::start();
    let mut gw = gateway(&upstream, None);
    let token = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let bearer = format!("Bearer {token}");
    // `:path` in absolute form (RFC 9113 §8.3.1 allows only origin form, or `*` for OPTIONS),
    // naming the same host, another one, the other scheme, or `/admin` through dot-segments:
    // the stream is reset (or a 400), before any route; the upstream is never asked.
    let before = upstream.received().len();
    for path in [
        "http://a.example/x?q=1",
        "http://evil.example/x",
        "https://a.example/x",
        "http://a.example/public/../admin",
    ] {
        let answer = send(
            &gw,
            json!({"headers": fields("GET", path, &[("authorization", &bearer)])}),
        );
        let refused = answer["reset"] == 1
            || (answer["status"] == 400
                && answer["body"].as_str().unwrap().contains("generalErrors"));
        assert!(refused, "{path}: {answer}");
    }
    assert_eq!(
        upstream.received().len(),
        before,
        "{:?}",
        upstream.received()
    );
    // A `:path` that looks like a network path is a path: judged and forwarded as its
    // canonical form, to the host `:authority` named.
    let network = send(
        &gw,
        json!({"headers": fields("GET", "//evil.example/x", &[("authorization", &bearer)])}),
    );
    let seen = received(&network);
    assert_eq!(seen["target"], "/evil.example/x", "{seen}");
    assert_eq!(seen["headers"]["host"], json!(["a.example"]), "{seen}");
    // `host` agreeing with `:authority` (any case, default port): one `Host`, canonical.
    for host in ["a.example", "A.Example:80"] {
        let answer = send(
            &gw,
            json!({"headers": [[":method", "GET"], [":scheme", "http"], [":authority", host],
                                [":path", "/h"], ["host", host], ["authorization", &bearer]]}),
        );
        let seen = received(&answer);
        assert_eq!(seen["headers"]["host"], json!(["a.example"]), "{seen}");
        assert_eq!(lines_named(&seen, "host"), 1, "{seen}");
    }
    // `host` disagreeing: 400 before any route; two `host` fields: the stream is reset.
    let answer = send(
        &gw,
        json!({"headers": fields("GET", "/h", &[("host", "b.example")])}),
    );
    assert_eq!(answer["status"], 400, "{answer}");
    for hosts in [["a.example", "b.example"], ["a.example", "a.example"]] {
        let extra = [("host", hosts[0]), ("host", hosts[1])];
        let answer = send(&gw, json!({"headers": fields("GET", "/h", &extra)}));
        assert!(
            answer["status"] == 400 || answer["reset"] == 1,
            "{hosts:?}: {answer}"
        );
    }
    assert_eq!(upstream.received().len(), before + 3);
    gw.stop();
}

/// `cookie` crumbs (RFC 9113 §8.2.3): the policy judges the one `access_token` among them and
/// the upstream gets that same token, on one `Cookie` line, without the refresh token.
#[test]
fn the_cookie_the_policy_judged_is_the_cookie_the_upstream_gets() {
    let upstream = RecordingUpstream::start();
    let mut gw = gateway(&upstream, None);
    let user = Uuid::new_v4();
    let token = gw.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    let cookie = format!("access_token={token}");
    let crumbs = [
        ("cookie", "a=1"),
        ("cookie", cookie.as_str()),
        ("cookie", "refresh_token=secret-refresh"),
        ("cookie", "b=2; c=3"),
    ];
    let answer = send(&gw, json!({"headers": fields("GET", "/c", &crumbs)}));
    let seen = received(&answer);
    assert_eq!(
        seen["headers"]["cookie"],
        json!([format!("a=1; {cookie}; b=2; c=3")]),
        "{seen}"
    );
    assert_eq!(lines_named(&seen, "cookie"), 1, "{seen}");
    assert_eq!(seen["headers"]["x-user-id"], json!([user.to_string()]));
    assert!(!seen["head"].as_str().unwrap().contains("secret-refresh"));
    // The same token as Bearer and as a crumb: one credential, both forwarded as they were.
    let bearer = format!("Bearer {token}");
    let both = [
        ("authorization", bearer.as_str()),
        ("cookie", cookie.as_str()),
    ];
    let seen = received(&send(&gw, json!({"headers": fields("GET", "/c", &both)})));
    assert_eq!(seen["headers"]["authorization"], json!([bearer]));
    assert_eq!(seen["headers"]["cookie"], json!([cookie]));
    // Another user's token in a second crumb, or a Bearer token of another user beside the
    // crumb: ambiguous, refused, and the upstream never hears of it.
    let other = gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let other_cookie = format!("access_token={other}");
    let other_bearer = format!("Bearer {other}");
    let before = upstream.received().len();
    for extra in [
        vec![
            ("cookie", cookie.as_str()),
            ("cookie", other_cookie.as_str()),
        ],
        vec![
            ("cookie", other_cookie.as_str()),
            ("cookie", cookie.as_str()),
        ],
        vec![
            ("authorization", other_bearer.as_str()),
            ("cookie", cookie.as_str()),
        ],
        vec![("cookie", cookie.as_str()), ("cookie", "Access_Token=x")],
    ] {
        let answer = send(&gw, json!({"headers": fields("GET", "/c", &extra)}));
        assert_eq!(answer["status"], 400, "{answer}");
        assert!(answer["body"]
            .as_str()
            .unwrap()
            .contains("AmbiguousRequest"));
    }
    assert_eq!(upstream.received().len(), before);
    gw.stop();
}
