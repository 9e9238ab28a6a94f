//! Heavy API work never holds up proxied traffic, through the real binary: sixteen clients
//! sending JSON Patches of 500 `copy`/`remove` operations on a large provider document (the
//! review's load) while a proxied request's latency is measured; the per-request time bound
//! (a handler running past `api.timeLimitSeconds` is a 503 with `Retry-After`) and the bound
//! on API requests in flight (the excess is a 503 at once, never queued).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::identity_provider::{ext_claims, ExternalKey, Idp};
use super::kit::*;

/// The review's patch: `data` grown by nine doubling copies to about 51k values, then 490
/// operations copying its largest part (about 26k values) next to it and removing the copy.
fn heavy_patch() -> Value {
    let numbers: Vec<u32> = (0..100).collect();
    let mut ops =
        vec![json!({"op": "add", "path": "/identityProvider/data", "value": {"a": numbers}})];
    for i in 0..9 {
        ops.push(json!({"op": "copy", "from": "/identityProvider/data",
                        "path": format!("/identityProvider/data/c{i}")}));
    }
    while ops.len() < 500 {
        ops.push(json!({"op": "copy", "from": "/identityProvider/data/c8",
                        "path": "/identityProvider/x"}));
        ops.push(json!({"op": "remove", "path": "/identityProvider/x"}));
    }
    Value::Array(ops)
}

/// Latencies of a proxied request, in milliseconds, sorted.
struct Latencies(Vec<f64>);

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        let index = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[index]
    }

    fn max(&self) -> f64 {
        *self.0.last().expect("samples")
    }
}

/// Measures `GET /hello` (proxied to the demo upstream) every 25 ms for `duration` on one
/// keep-alive client; every answer must be a 200.
fn proxied_latencies(gw: &TestGateway, token: &str, duration: Duration) -> Latencies {
    let http = client();
    let url = gw.url("/hello");
    let mut samples = Vec::new();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let start = Instant::now();
        let status = http
            .get(&url)
            .bearer_auth(token)
            .send()
            .map(|r| r.status().as_u16());
        assert!(matches!(status, Ok(200)), "{status:?}");
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(25));
    }
    samples.sort_by(f64::total_cmp);
    Latencies(samples)
}

#[test]
fn heavy_json_patches_do_not_hold_up_proxied_requests() {
    let t = Idp::start();
    let id = t.provider(json!({"keys": {"k": "a-secret-of-at-least-thirty-two-bytes-0123"}}));
    let path = format!("/api/identity-provider/{id}");
    let before = check_status(t.get(&path), 200);
    let token =
        t.gw.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let idle = proxied_latencies(&t.gw, &token, Duration::from_millis(500));

    let patch = heavy_patch().to_string();
    let stop = AtomicBool::new(false);
    let answered = AtomicUsize::new(0);
    let statuses = std::sync::Mutex::new(Vec::new());
    let loaded = std::thread::scope(|s| {
        for _ in 0..16 {
            s.spawn(|| {
                let http = client();
                while !stop.load(Ordering::SeqCst) {
                    let start = Instant::now();
                    let r = http
                        .patch(t.gw.url(&path))
                        .header("Authorization", API_KEY)
                        .header("Content-Type", "application/json-patch+json")
                        .body(patch.clone())
                        .send();
                    let (status, body) = match r {
                        Ok(r) => (r.status().as_u16(), r.json().unwrap_or(Value::Null)),
                        Err(e) => (0, json!(e.to_string())),
                    };
                    statuses
                        .lock()
                        .expect("statuses")
                        .push((status, body, start.elapsed()));
                    answered.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        // Let the patches pile up, then measure while they keep coming.
        std::thread::sleep(Duration::from_millis(300));
        let loaded = proxied_latencies(&t.gw, &token, Duration::from_secs(4));
        stop.store(true, Ordering::SeqCst);
        loaded
    });
    let statuses = statuses.into_inner().expect("statuses");
    eprintln!(
        "proxied GET latency (ms): idle p50 {:.1} max {:.1}; under {} heavy patches: p50 {:.1} p95 {:.1} max {:.1} ({} samples); patches answered {}, slowest {:?}",
        idle.percentile(0.5),
        idle.max(),
        16,
        loaded.percentile(0.5),
        loaded.percentile(0.95),
        loaded.max(),
        loaded.0.len(),
        answered.load(Ordering::SeqCst),
        statuses.iter().map(|(_, _, d)| *d).max(),
    );
    assert!(
        statuses.len() >= 16,
        "the patches were served meanwhile: {}",
        statuses.len()
    );
    assert!(
        loaded.max() < 300.0,
        "a proxied request waited {:.1} ms behind API work",
        loaded.max()
    );
    // Each patch is refused once its work passes the bound: a 400 naming the limit, nothing
    // written.
    for (status, body, _) in &statuses {
        assert_eq!(*status, 400, "{body}");
        let message = body["generalErrors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains("work limit"), "{body}");
    }
    assert_eq!(check_status(t.get(&path), 200), before);
}

/// A gateway with `api` settings and a 5 s lambda limit, a provider whose reconcile lambda
/// `body` runs at login, and a function logging user `n` in (with the time it took).
struct SlowLogins {
    t: Idp,
    key: ExternalKey,
    idp: Uuid,
}

impl SlowLogins {
    fn start(api: &str, body: &str) -> SlowLogins {
        let t = Idp {
            gw: TestGateway::start_with(Options {
                extra: format!("api: {{{api}}}\n"),
                identity_provider: "lambdaTimeLimitMillis: 5000".into(),
                ..Default::default()
            }),
            http: client(),
        };
        let key = ExternalKey::generate(Algorithm::RS256);
        let lambda = check_status(
            t.post(
                "/api/lambda",
                &json!({"lambda": {"name": "slow", "type": "ExternalJWTReconcile", "body": body}}),
            ),
            200,
        );
        let idp = t.provider(json!({
            "keys": {"k": key.verifying}, "linkingStrategy": "LinkByEmail",
            "lambdaConfiguration": {"reconcileId": lambda["lambda"]["id"]},
        }));
        SlowLogins { t, key, idp }
    }

    /// Logs user `n` in: the status, the body and how long it took.
    fn login(&self, n: usize) -> (u16, Value, Duration, Option<String>) {
        let email = format!("slow{n}@example.com");
        let token = self.key.sign(
            Some("k"),
            None,
            &ext_claims(&format!("s-{n}"), Some(&email), json!({})),
        );
        let start = Instant::now();
        let r = self.t.login(self.idp, &token, json!({}));
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (
            status,
            r.json().unwrap_or(Value::Null),
            start.elapsed(),
            retry,
        )
    }
}

const SPIN: &str = "function reconcile(user, registration, jwt) { while (true) {} }";

#[test]
fn an_api_request_over_the_time_limit_is_a_503_and_writes_nothing() {
    let s = SlowLogins::start("timeLimitSeconds: 1", SPIN);
    let token =
        s.t.gw
            .token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let (answer, latencies) = std::thread::scope(|scope| {
        let login = scope.spawn(|| s.login(1));
        let latencies = proxied_latencies(&s.t.gw, &token, Duration::from_millis(1500));
        (login.join().expect("login"), latencies)
    });
    let (status, body, took, retry) = answer;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["generalErrors"][0]["code"], "[Timeout]", "{body}");
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    assert!(
        latencies.max() < 300.0,
        "proxied: {:.1} ms",
        latencies.max()
    );
    // The aborted login wrote nothing, and its lambda worker was killed with it.
    assert_eq!(
        s.t.get("/api/user?email=slow1@example.com")
            .status()
            .as_u16(),
        404
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let before = s.t.gw.child_processes();
        std::thread::sleep(Duration::from_millis(300));
        let after = s.t.gw.child_processes();
        let spinning = after
            .iter()
            .any(|(pid, ticks)| before.iter().any(|(p, t0)| p == pid && ticks - t0 > 5));
        if !spinning {
            break;
        }
        assert!(Instant::now() < deadline, "a lambda worker kept spinning");
    }
    // The API still answers.
    check_status(s.t.get("/api/lambda"), 200);
}

#[test]
fn api_requests_over_the_in_flight_bound_are_refused_at_once() {
    let s = SlowLogins::start(
        "maxInFlight: 2",
        "function reconcile(user, registration, jwt) { var end = Date.now() + 2500; while (Date.now() < end) {} }",
    );
    let token =
        s.t.gw
            .token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let busy = std::thread::scope(|scope| {
        let s = &s;
        let logins: Vec<_> = (0..2).map(|n| scope.spawn(move || s.login(n))).collect();
        // Both logins take their slots first (each runs 2.5 s): a probe sent before the
        // second login arrived would take its slot instead and have it refused.
        std::thread::sleep(Duration::from_millis(700));
        // While both are in flight, the next API request is refused without waiting.
        let deadline = Instant::now() + Duration::from_secs(2);
        let busy = loop {
            let start = Instant::now();
            let r = s.t.get("/api/jwt/public-key");
            let took = start.elapsed();
            let status = r.status().as_u16();
            let retry = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = r.json().unwrap_or(Value::Null);
            if status == 503 {
                break (body, retry, took);
            }
            assert_eq!(status, 200, "{body}");
            assert!(Instant::now() < deadline, "never refused");
            std::thread::sleep(Duration::from_millis(50));
        };
        // Proxied traffic is not counted against the API's bound.
        assert_eq!(s.t.gw.get_as("/hello", &token).status().as_u16(), 200);
        for login in logins {
            let (status, body, _, _) = login.join().expect("login");
            assert_eq!(status, 200, "{body}");
        }
        busy
    });
    let (body, retry, took) = busy;
    assert_eq!(
        body["generalErrors"][0]["code"], "[TooManyRequests]",
        "{body}"
    );
    assert_eq!(retry.as_deref(), Some("2"));
    assert!(took < Duration::from_millis(500), "refused after {took:?}");
    // Once they are done, the API admits requests again.
    check_status(s.t.get("/api/jwt/public-key"), 200);
}
