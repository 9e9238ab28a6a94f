//! Live reload through the real binary: `SIGHUP`, the admin listener's `POST /reload` and
//! `gatehouse reload` read `config.yaml` again; a bad file changes nothing and is logged with
//! each problem's path and line; a good one is in force at once, under load, without one failed
//! request, while a request under way finishes on the configuration it started with.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use uuid::Uuid;

use super::kit::{check_status, claims, client, run_cli, Options, TestGateway, APP, ISSUER};

/// The secret of the HS256 key a reload adds.
const NEW_SECRET: &str = "a-key-added-by-a-reload-0123456789abcdef";

/// Sends `SIGHUP` to the gateway.
pub(crate) fn hangup(gateway: &TestGateway) {
    let pid = gateway.pid().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits (up to 10 s) until the gateway's log contains `text`; the log.
pub(crate) fn log_with(gateway: &TestGateway, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gateway.log();
        if log.contains(text) {
            return log;
        }
        assert!(Instant::now() < deadline, "no {text:?} in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of an unlabelled (or fully labelled) metric line on the admin listener.
pub(crate) fn metric(gateway: &TestGateway, series: &str) -> Option<f64> {
    let text = client()
        .get(gateway.admin_url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The configuration of `options`, with one more HS256 key (`NEW_SECRET`) as `id`.
fn with_new_key(gateway: &TestGateway, options: &Options, id: Uuid) -> String {
    gateway.config_text(options).replacen(
        "keys:\n",
        &format!("keys:\n  - {{id: {id}, algorithm: HS256, secret: \"{NEW_SECRET}\"}}\n"),
        1,
    )
}

/// A token of the test user for the main application, signed with the added key `id`.
fn token_of_new_key(id: Uuid) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(id.to_string());
    let claims = claims(Uuid::new_v4(), APP, &["user"]);
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(NEW_SECRET.as_bytes()),
    )
    .expect("sign")
}

/// `POST /reload` on the admin listener: status and JSON body.
pub(crate) fn reload_by_admin(gateway: &TestGateway) -> (u16, Value) {
    let response = client()
        .post(gateway.admin_url("/reload"))
        .send()
        .expect("reload");
    let status = response.status().as_u16();
    (status, response.json().expect("json"))
}

/// A route that needs no token, added by the reloads below.
pub(crate) const FRESH_ROUTE: &str =
    "  - path: /fresh\n    upstream: $UPSTREAM\n    auth: {enabled: false}\n";

#[test]
fn a_bad_file_keeps_the_running_configuration_and_names_each_problem_with_its_line() {
    let mut gateway = TestGateway::start();
    let token = gateway.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let good = std::fs::read_to_string(&gateway.config_path).expect("config");
    let bad = format!("{good}  - {{path: /broken, upstream: \"not a url\"}}\nbogus: 1\n");
    std::fs::write(&gateway.config_path, &bad).expect("write");
    hangup(&gateway);
    let log = log_with(&gateway, "configuration reload refused");
    let line = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .expect("line");
    assert!(line.contains("bogus"), "{line}");
    assert!(line.contains("routes[4].upstream"), "{line}");
    assert!(line.contains("(line "), "{line}");
    // Still serving, on the configuration it had.
    assert_eq!(gateway.get_as("/", &token).status().as_u16(), 200);
    assert_eq!(
        client()
            .get(gateway.url("/broken"))
            .send()
            .expect("send")
            .status()
            .as_u16(),
        401
    );
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(1.0));
    assert_eq!(
        metric(
            &gateway,
            "gatehouse_config_reloads_total{outcome=\"refused\"}"
        ),
        Some(1.0)
    );
    // The admin listener answers the same problems as Errors JSON.
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 400, "{body}");
    let problem = &body["fieldErrors"]["routes[4].upstream"][0];
    assert_eq!(problem["code"], "[invalid]routes[4].upstream");
    assert!(
        problem["message"].as_str().unwrap().contains("(line "),
        "{body}"
    );
    assert!(body["fieldErrors"]["bogus"].is_array(), "{body}");
    // The file fixed: in force.
    std::fs::write(&gateway.config_path, &good).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 2);
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(2.0));
    gateway.stop();
}

#[test]
fn sighup_reloads_and_never_ends_the_gateway() {
    let mut options = Options::default();
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let plain = client();
    assert_eq!(
        plain
            .get(gateway.url("/fresh"))
            .send()
            .expect("send")
            .status()
            .as_u16(),
        401
    );
    options.extra_routes = FRESH_ROUTE.into();
    gateway.write_config(&options);
    for round in 0..3 {
        hangup(&gateway);
        let generation = Some(f64::from(round + 2));
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric(&gateway, "gatehouse_config_generation") != generation {
            assert!(Instant::now() < deadline, "round {round}: not reloaded");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            plain
                .get(gateway.url("/fresh"))
                .send()
                .expect("send")
                .status()
                .as_u16(),
            200
        );
    }
    log_with(&gateway, "configuration reloaded");
    assert_eq!(
        metric(
            &gateway,
            "gatehouse_config_reloads_total{outcome=\"applied\"}"
        ),
        Some(3.0)
    );
    assert!(metric(&gateway, "gatehouse_config_hash").is_some_and(|h| h > 0.0));
    assert!(!gateway.log().contains("SIGTERM"), "{}", gateway.log());
    gateway.stop();
}

#[test]
fn gatehouse_reload_asks_the_admin_listener_and_prints_the_outcome() {
    let mut options = Options::default();
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let config = gateway.config_path.display().to_string();
    let dir = gateway.dir.path().to_path_buf();
    options.extra_routes = FRESH_ROUTE.into();
    // A field only a restart changes: named in a warning, its running value kept.
    let text = gateway
        .config_text(&options)
        .replace("threads: 2", "threads: 3");
    std::fs::write(&gateway.config_path, text).expect("write");
    let (code, out, err) = run_cli(&["reload", "--config", &config], &dir);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("reloaded (generation 2"), "{out}");
    assert!(
        err.contains("threads: changes only with a restart"),
        "{err}"
    );
    assert_eq!(
        client()
            .get(gateway.url("/fresh"))
            .send()
            .expect("send")
            .status()
            .as_u16(),
        200
    );
    // A file with a problem: the command prints it; nothing changes.
    let good = std::fs::read_to_string(&gateway.config_path).expect("config");
    std::fs::write(&gateway.config_path, format!("{good}bogus: 1\n")).expect("write");
    let admin = format!("127.0.0.1:{}", gateway.admin_port);
    let (code, out, err) = run_cli(&["reload", "--config", &config, "--admin", &admin], &dir);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("bogus") && err.contains("(line "), "{err}");
    assert!(
        err.contains("the running configuration stays in force"),
        "{err}"
    );
    // Without --admin, an invalid file is reported and nothing is sent.
    let (code, _, err) = run_cli(&["reload", "--config", &config], &dir);
    assert_eq!(code, 1);
    assert!(err.contains("nothing was sent"), "{err}");
    assert_eq!(metric(&gateway, "gatehouse_config_generation"), Some(2.0));
    gateway.stop();
}

/// `gatehouse reload --config OTHER` asks the gateway, which reloads the file it runs with:
/// the command says OTHER was not what it reloaded (exit 1), never that OTHER is in force.
#[test]
fn gatehouse_reload_of_another_file_says_it_was_not_reloaded() {
    let mut options = Options::default();
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let dir = gateway.dir.path().to_path_buf();
    options.extra_routes = FRESH_ROUTE.into();
    let other = dir.join("other.yaml");
    std::fs::write(&other, gateway.config_text(&options)).expect("write");
    let (code, out, err) = run_cli(&["reload", "--config", other.to_str().expect("path")], &dir);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("reloaded"), "{out}");
    assert!(
        err.contains("other.yaml: not reloaded: the gateway at")
            && err.contains("reloaded the file it runs with (generation 2"),
        "{err}"
    );
    let fresh = client().get(gateway.url("/fresh")).send().expect("send");
    assert_ne!(fresh.status().as_u16(), 200);
    gateway.stop();
}

/// An upstream answering every request with `name`, after `delay`.
pub(crate) fn named_upstream(name: &'static str, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buffer.clear();
                    std::thread::sleep(delay);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_request_under_way_finishes_on_the_route_it_started_with() {
    let slow = named_upstream("old", Duration::from_millis(1500));
    let fast = named_upstream("new", Duration::ZERO);
    let route = |port: u16| {
        format!("  - path: /slow\n    upstream: http://127.0.0.1:{port}\n    auth: {{enabled: false}}\n")
    };
    let mut options = Options {
        extra_routes: route(slow),
        ..Options::default()
    };
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let url = gateway.url("/slow");
    let under_way = std::thread::spawn(move || {
        let response = client().get(url).send().expect("send");
        (response.status().as_u16(), response.text().expect("text"))
    });
    std::thread::sleep(Duration::from_millis(300));
    options.extra_routes = route(fast);
    gateway.write_config(&options);
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    let started = Instant::now();
    let response = client().get(gateway.url("/slow")).send().expect("send");
    assert_eq!(response.text().expect("text"), "new");
    assert!(started.elapsed() < Duration::from_millis(1000));
    assert_eq!(
        under_way.join().expect("join"),
        (200, "old".to_string()),
        "the request under way was served by the route it started with"
    );
    gateway.stop();
}

/// What one load thread saw: failures (anything but the statuses allowed), and when it first
/// saw each new behaviour.
#[derive(Default)]
struct Seen {
    requests: u64,
    failures: Vec<String>,
    route_changed: Option<Instant>,
    key_changed: Option<Instant>,
}

/// Requests on one keep-alive client until `stop`: a protected path with a token of a key that
/// stays (always 200), the route a reload adds (401, then 200 for good) and a token of the key
/// it adds (401, then 200 for good).
fn load(
    gateway_url: impl Fn(&str) -> String,
    stay: String,
    added: String,
    stop: Arc<AtomicBool>,
) -> Seen {
    let client = client();
    let mut seen = Seen::default();
    let check = |path: &str, token: Option<&str>, changed: &mut Option<Instant>| {
        let mut request = client.get(gateway_url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let status = match request.send() {
            Ok(response) => response.status().as_u16(),
            Err(e) => {
                return Some(format!("{path}: {e}"));
            }
        };
        match (status, changed.is_some()) {
            (200, false) => *changed = Some(Instant::now()),
            (200, true) | (401, false) => {}
            (status, _) => return Some(format!("{path}: {status} (changed: {changed:?})")),
        }
        None
    };
    while !stop.load(Ordering::Relaxed) {
        let mut stays = None;
        let failures = [
            check("/", Some(&stay), &mut stays),
            check("/fresh", None, &mut seen.route_changed),
            check("/", Some(&added), &mut seen.key_changed),
        ];
        seen.requests += 3;
        seen.failures.extend(failures.into_iter().flatten());
        if stays.is_none() {
            seen.failures.push("/ with the kept key: not 200".into());
        }
    }
    seen
}

#[test]
fn a_route_and_a_key_change_under_load_fail_no_request_and_take_effect_within_a_second() {
    let mut options = Options::default();
    let gateway = TestGateway::start_with(options.clone_for_reload());
    let stay = gateway.token(Algorithm::RS256, &claims(Uuid::new_v4(), APP, &["user"]));
    let new_key = Uuid::new_v4();
    let added = token_of_new_key(new_key);
    let stop = Arc::new(AtomicBool::new(false));
    let (port, tls) = (gateway.port, gateway.tls);
    let url = move |path: &str| {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{port}{path}")
    };
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (stay, added, stop) = (stay.clone(), added.clone(), stop.clone());
            std::thread::spawn(move || load(url, stay, added, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1000));
    options.extra_routes = FRESH_ROUTE.into();
    std::fs::write(
        &gateway.config_path,
        with_new_key(&gateway, &options, new_key),
    )
    .expect("write");
    let asked = Instant::now();
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    let applied = asked.elapsed();
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = threads
        .into_iter()
        .map(|t| t.join().expect("join"))
        .collect();
    let requests: u64 = seen.iter().map(|s| s.requests).sum();
    let failures: Vec<&String> = seen.iter().flat_map(|s| &s.failures).collect();
    assert!(
        failures.is_empty(),
        "{} failures of {requests}: {failures:?}",
        failures.len()
    );
    assert!(requests > 100, "only {requests} requests");
    for s in &seen {
        for changed in [s.route_changed, s.key_changed] {
            let changed = changed.expect("every thread saw the new behaviour");
            let after = changed.saturating_duration_since(asked);
            assert!(
                after < Duration::from_secs(1),
                "seen {after:?} after the reload was asked for"
            );
        }
    }
    eprintln!("{requests} requests under load, none failed; reload applied in {applied:?}");
}

impl Options {
    /// A copy of the fields the reload tests set, for starting with the same options they
    /// change afterwards.
    pub(crate) fn clone_for_reload(&self) -> Options {
        Options {
            extra_routes: self.extra_routes.clone(),
            extra: self.extra.clone(),
            ..Options::default()
        }
    }
}

/// A route whose one identity header carries claim `claim`.
fn who_route(claim: &str) -> String {
    format!(
        "  - path: /who\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}}}\n    identityHeaders: {{X-Who: {claim}}}\n"
    )
}

#[test]
fn a_reload_that_changes_identity_headers_never_serves_values_rendered_before_it() {
    let mut options = Options {
        extra_routes: who_route("sub"),
        ..Options::default()
    };
    let mut gateway = TestGateway::start_with(options.clone_for_reload());
    let user = Uuid::new_v4();
    let token = gateway.token(Algorithm::RS256, &claims(user, APP, &["user"]));
    // Twice: verified, then a hit of the cached token with its rendered value.
    for _ in 0..2 {
        let echoed: Value = gateway.get_as("/who", &token).json().expect("json");
        assert_eq!(echoed["headers"]["x-who"], user.to_string(), "{echoed}");
    }
    options.extra_routes = who_route("email");
    gateway.write_config(&options);
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    for _ in 0..2 {
        let echoed: Value = gateway.get_as("/who", &token).json().expect("json");
        assert_eq!(echoed["headers"]["x-who"], "ann@example.com", "{echoed}");
    }
    gateway.stop();
}

/// A transparent refresh's outcome made before a reload and served again after it (the same
/// refresh cookie, within its reuse window) is read as the new routes read tokens: a claim the
/// new configuration forwards for the first time is forwarded, not taken for one that cannot
/// be passed on.
#[test]
fn a_refresh_made_before_a_reload_is_read_by_the_new_routes() {
    let route = |headers: &str| {
        format!(
            "  - path: /r\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true}}\n    identityHeaders: {{{headers}}}\n"
        )
    };
    let mut options = Options {
        extra_routes: route("X-Sub: sub"),
        ..Options::default()
    };
    let gateway = TestGateway::start_with(options.clone_for_reload());
    let session = gateway.login("reload-refresh@example.com", &["user"]);
    let get = || {
        client()
            .get(gateway.url("/r"))
            .header("Cookie", format!("refresh_token={}", session.refresh_token))
            .send()
            .expect("send")
    };
    assert_eq!(get().status(), 200);
    // A claim no route of the first configuration forwards.
    options.extra_routes = route("X-Sub: sub, X-Auth-Type: authenticationType");
    std::fs::write(&gateway.config_path, gateway.config_text(&options)).expect("write");
    let (status, body) = reload_by_admin(&gateway);
    assert_eq!(status, 200, "{body}");
    let again = get();
    let status = again.status().as_u16();
    let body = again.text().expect("body");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("REFRESH_TOKEN"), "no X-Auth-Type: {body}");
}

/// `POST /api/jwt/refresh` of `value` on `node`: the new access token's claims.
fn refreshed_claims(node: &TestGateway, value: &str) -> (String, serde_json::Value) {
    let response = client()
        .post(node.url("/api/jwt/refresh"))
        .json(&serde_json::json!({ "refreshToken": value }))
        .send()
        .expect("send");
    let body = check_status(response, 200);
    let token = body["token"].as_str().expect("token").to_string();
    let claims = check_status(node.get_as("/api/jwt/validate", &token), 200)["jwt"].clone();
    (token, claims)
}

#[test]
fn each_node_signs_with_its_own_tenants_while_a_change_rolls_through_the_cluster() {
    let a = TestGateway::start();
    let session = a.login("rolling@example.com", &["user"]);
    // A node on the same store whose file already gives the tenant its next issuer: starting,
    // it writes that tenant into the store.
    let b = a.start_peer(&Options {
        issuer: Some("https://next.example".into()),
        ..Options::default()
    });
    // Each node still signs (and checks) with its own file's tenant: tokens it mints pass its
    // own proxy; neither mints tokens the other's proxy would take for its own.
    let (on_a, claims) = refreshed_claims(&a, &session.refresh_token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(a.get_as("/x", &on_a).status(), 200);
    let (on_b, claims) = refreshed_claims(&b, &session.refresh_token);
    assert_eq!(claims["iss"], "https://next.example");
    assert_eq!(b.get_as("/x", &on_b).status(), 200);
    assert_eq!(a.get_as("/x", &on_b).status(), 401);
    // Once the first node reloads the new file, it signs as the second does.
    a.write_config(&Options {
        issuer: Some("https://next.example".into()),
        ..Options::default()
    });
    assert_eq!(reload_by_admin(&a).0, 200);
    let (on_a, claims) = refreshed_claims(&a, &session.refresh_token);
    assert_eq!(claims["iss"], "https://next.example");
    assert_eq!(b.get_as("/x", &on_a).status(), 200);
}
