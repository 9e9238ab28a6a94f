//! `X-Forwarded-For` as the upstream gets it, attacked through the real binary: the gateway
//! renders a client's address once per run of its requests on a worker thread and shares it,
//! so many distinct clients (trusted-proxy chains) on keep-alive connections, from several
//! connections at once, must each get their own address, never a previous client's.

use super::kit::*;

/// `GET /public` on `client`'s kept-alive connection with `forwarded` (if any): the single
/// `X-Forwarded-For` value the upstream received.
fn forwarded_for(client: &reqwest::blocking::Client, url: &str, forwarded: Option<&str>) -> String {
    let mut request = client.get(url);
    if let Some(chain) = forwarded {
        request = request.header("X-Forwarded-For", chain);
    }
    let body = check_status(request.send().expect("send"), 200);
    let values = body["headers"]["x-forwarded-for"]
        .as_array()
        .expect("an X-Forwarded-For")
        .clone();
    assert_eq!(values.len(), 1, "one value: {body}");
    values[0].as_str().expect("text").to_string()
}

#[test]
fn every_request_on_a_kept_alive_connection_forwards_its_own_client() {
    let upstream = RecordingUpstream::start();
    let gw = TestGateway::start_with(Options {
        upstream: Some(upstream.url()),
        extra: "trustedProxies: [127.0.0.1/32]\n".into(),
        ..Options::default()
    });
    let url = gw.url("/public");
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                // One client: its requests share a kept-alive connection.
                let client = reqwest::blocking::Client::new();
                for i in 0..150u32 {
                    let v4 = format!("198.{t}.{}.{}", i / 256, i % 256);
                    let v6 = format!("2001:db8:{t:x}::{i:x}");
                    let cases = [
                        (Some(v4.clone()), v4.clone()),
                        // The same client twice in a row, then another: no stale reuse.
                        (Some(v4.clone()), v4.clone()),
                        (Some(v6.clone()), v6.clone()),
                        // A chain: the last hop not a trusted proxy is the client.
                        (Some(format!("203.0.113.7, {v4}, 127.0.0.1")), v4.clone()),
                        (Some(format!("{v6}, 127.0.0.1")), v6.clone()),
                        // No header: the peer itself.
                        (None, "127.0.0.1".to_string()),
                        // An IPv4-mapped address is read as the IPv4 address it maps.
                        (Some(format!("::ffff:{v4}")), v4.clone()),
                    ];
                    for (sent, expected) in cases {
                        // Its one (display) spelling: `2001:db8:1::0` is `2001:db8:1::`.
                        let expected = expected
                            .parse::<std::net::IpAddr>()
                            .expect("address")
                            .to_string();
                        let got = forwarded_for(&client, &url, sent.as_deref());
                        assert_eq!(got, expected, "sent {sent:?}");
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .expect("no request got another client's address");
    }
}
