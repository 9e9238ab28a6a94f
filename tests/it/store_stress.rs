//! The SQLite store and its writer thread under stress, through the real binary: another
//! process holding the write lock (the `sqlite3` command, `BEGIN EXCLUSIVE`) for longer than
//! the store's busy timeout, a full file system (a small tmpfs filled up), and `SIGTERM` while
//! calls wait for the lock. Every API write and edge refresh answers 200 or a clean 503 with
//! FusionAuth's Errors JSON within the API's time limit, nothing is consumed by a refusal,
//! everything works again once the condition clears, and every acknowledged write survives a
//! restart.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use uuid::Uuid;

use super::kit::*;

/// One-time-use refresh tokens and a `/app` route that refreshes at the edge.
fn options(store: Option<&Path>) -> Options {
    Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse"
            .into(),
        extra_routes: format!(
            "  - path: /app\n    upstream: $UPSTREAM\n    auth: {{applicationId: {APP}, refresh: true}}\n"
        ),
        store_url: store.map(|p| format!("sqlite://{}", p.display())),
        max_body_bytes: 1 << 20,
        ..Options::default()
    }
}

/// The `sqlite3` command holding the write lock of a database file until dropped.
pub struct Locker {
    child: Child,
}

impl Locker {
    /// Takes the lock (`BEGIN EXCLUSIVE`) and returns once it is held.
    pub fn hold(path: &Path) -> Locker {
        let mut child = Command::new("sqlite3")
            .arg(path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the sqlite3 command (apt-get install sqlite3)");
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b".timeout 10000\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "locked");
        Locker { child }
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"ROLLBACK;\n.quit\n");
        }
        self.child.stdin.take();
        let _ = self.child.wait();
    }
}

/// An answer: status, `Retry-After`, the body, how long it took.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: String,
    took: Duration,
    set_cookies: Vec<String>,
}

impl Answer {
    fn of(request: reqwest::blocking::RequestBuilder) -> Answer {
        let started = Instant::now();
        let response = request.send().expect("send");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        Answer {
            status,
            retry_after,
            body: response.text().unwrap_or_default(),
            took: started.elapsed(),
            set_cookies,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// A clean refusal for a store that cannot be used: 503, `Retry-After`, FusionAuth's
    /// Errors JSON, no internals.
    fn assert_clean_unavailable(&self, what: &str) {
        assert_eq!(self.status, 503, "{what}: {self:?}");
        if what.starts_with("edge") {
            assert_eq!(self.retry_after.as_deref(), Some("2"), "{what}: {self:?}");
        }
        let errors = self.json();
        assert!(
            errors["generalErrors"][0]["code"].is_string(),
            "{what}: {self:?}"
        );
        let lower = self.body.to_lowercase();
        for internal in [
            "sqlite", "database", "disk", "locked", "/tmp", ".db", "panick",
        ] {
            assert!(!lower.contains(internal), "{what}: {internal}: {self:?}");
        }
    }
}

/// The kinds of writes tried while the store is unusable: `(name, request)`.
fn writes(
    gw: &TestGateway,
    sessions: &[Session],
) -> Vec<(String, reqwest::blocking::RequestBuilder)> {
    let http = client();
    let mut out: Vec<(String, reqwest::blocking::RequestBuilder)> = Vec::new();
    let [api, edge, revoked, ..] = sessions else {
        panic!("three sessions");
    };
    out.push((
        "API refresh".into(),
        http.post(gw.url("/api/jwt/refresh"))
            .json(&json!({ "refreshToken": api.refresh_token })),
    ));
    let user = Uuid::parse_str(&edge.user_id).expect("uuid");
    let mut expired = claims(user, APP, &["user"]);
    expired["exp"] = json!(now() - 30);
    let cookie = format!(
        "access_token={}; refresh_token={}",
        gw.token(Algorithm::RS256, &expired),
        edge.refresh_token
    );
    out.push((
        "edge refresh".into(),
        http.get(gw.url("/app/page")).header("Cookie", cookie),
    ));
    out.push((
        "revocation".into(),
        http.delete(gw.url(&format!("/api/jwt/refresh/{}", revoked.refresh_token_id)))
            .header("Authorization", API_KEY),
    ));
    out.push((
        "provider".into(),
        http.post(gw.url("/api/identity-provider"))
            .header("Authorization", API_KEY)
            .json(&json!({"identityProvider": {"type": "ExternalJWT", "name": "stress", "headerKeyParameter": "kid",
                "domains": [format!("{}.example.com", Uuid::new_v4().simple())]}})),
    ));
    out.push((
        "lambda".into(),
        http.post(gw.url("/api/lambda"))
            .header("Authorization", API_KEY)
            .json(
                &json!({"lambda": {"type": "ExternalJWTReconcile", "name": "big",
                "body": format!("function reconcile(user, registration, jwt) {{}}\n// {}",
                                "x".repeat(400_000))}}),
            ),
    ));
    out
}

/// Sends every write of `writes` at once; the answers, by name.
fn send_all(writes: Vec<(String, reqwest::blocking::RequestBuilder)>) -> Vec<(String, Answer)> {
    let threads: Vec<_> = writes
        .into_iter()
        .map(|(name, request)| std::thread::spawn(move || (name, Answer::of(request))))
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect()
}

/// After the condition cleared: the same writes succeed (nothing was consumed by a refusal),
/// and their effects survive a SIGKILL and restart.
fn assert_recovered(gw: &mut TestGateway, sessions: &[Session]) {
    let answers = send_all(writes(gw, sessions));
    for (name, answer) in &answers {
        assert!(
            matches!(answer.status, 200 | 201),
            "{name} after recovery: {answer:?}"
        );
    }
    let new_refresh = answers[0].1.json()["refreshToken"]
        .as_str()
        .expect("rotated")
        .to_string();
    gw.kill_and_restart();
    let refresh = |value: &str| {
        Answer::of(
            client()
                .post(gw.url("/api/jwt/refresh"))
                .json(&json!({ "refreshToken": value })),
        )
    };
    assert_eq!(
        refresh(&new_refresh).status,
        200,
        "the rotation's successor"
    );
    assert_eq!(
        refresh(&sessions[0].refresh_token).status,
        400,
        "the retired value"
    );
    assert_eq!(
        refresh(&sessions[2].refresh_token).status,
        400,
        "the revoked token"
    );
    assert_eq!(gw.get_as("/x", &sessions[2].token).status().as_u16(), 401);
}

fn sessions(gw: &TestGateway) -> Vec<Session> {
    (0..3)
        .map(|i| {
            gw.login(
                &format!("stress-{i}-{}@example.com", Uuid::new_v4()),
                &["user"],
            )
        })
        .collect()
}

#[test]
fn a_write_lock_held_by_another_process_gets_clean_503s_in_time_and_nothing_consumed() {
    let mut gw = TestGateway::start_with(options(None));
    let sessions = sessions(&gw);
    let token = gw.login("reader@example.com", &["user"]).token;
    let locker = Locker::hold(&gw.store_path());
    // Longer than the store's 5 s busy timeout, shorter than the API's 10 s time limit.
    let answers = send_all(writes(&gw, &sessions));
    // The proxy reads nothing from the store: tokens keep flowing.
    assert_eq!(gw.get_as("/x", &token).status().as_u16(), 200);
    for (name, answer) in &answers {
        answer.assert_clean_unavailable(name);
        assert!(answer.took < Duration::from_secs(11), "{name}: {answer:?}");
        if name == "edge refresh" {
            assert!(
                answer.set_cookies.is_empty(),
                "both cookies kept: {answer:?}"
            );
        }
    }
    drop(locker);
    assert_recovered(&mut gw, &sessions);
}

#[test]
fn calls_arriving_all_along_a_long_lock_are_each_answered_within_the_time_limit() {
    let gw = Arc::new(TestGateway::start_with(options(None)));
    let sessions: Vec<Session> = (0..12)
        .map(|i| gw.login(&format!("long-{i}@example.com"), &["user"]))
        .collect();
    let locker = Locker::hold(&gw.store_path());
    let started = Instant::now();
    // One API refresh and one edge refresh every 1.5 s for 18 s, while the lock is held
    // for 20 s.
    let threads: Vec<_> = sessions
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let (gw, pair) = (gw.clone(), pair.to_vec());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(1500 * i as u64));
                let mut w = writes(&gw, &[pair[0].clone(), pair[1].clone(), pair[1].clone()]);
                w.truncate(2);
                send_all(w)
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("t"))
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "the lock was still held"
    );
    for (name, answer) in &answers {
        answer.assert_clean_unavailable(name);
        // The API's time limit (10 s), and the edge's refresh no later than that either.
        assert!(
            answer.took < Duration::from_millis(10_500),
            "{name}: {answer:?}"
        );
    }
    drop(locker);
    let recovered = send_all(writes(&gw, &sessions[..3]));
    for (name, answer) in &recovered[..2] {
        assert_eq!(answer.status, 200, "{name} after the lock: {answer:?}");
    }
}

#[test]
fn sigterm_while_calls_wait_for_the_lock_ends_in_time_and_loses_no_acknowledged_write() {
    let mut gw = TestGateway::start_with(options(None));
    let sessions = sessions(&gw);
    let done = gw.login("done@example.com", &["user"]);
    // Acknowledged before the lock: must survive.
    let before = Answer::of(
        client()
            .post(gw.url("/api/jwt/refresh"))
            .json(&json!({ "refreshToken": done.refresh_token })),
    );
    assert_eq!(before.status, 200);
    let successor = before.json()["refreshToken"]
        .as_str()
        .expect("rt")
        .to_string();
    let locker = Locker::hold(&gw.store_path());
    let pending = std::thread::spawn({
        let w = writes(&gw, &sessions);
        move || send_all(w)
    });
    std::thread::sleep(Duration::from_millis(700));
    let pid = gw.pid().expect("running").to_string();
    let stopping = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let status = gw.wait_exit(Duration::from_secs(12));
    let stopped_after = stopping.elapsed();
    drop(locker);
    assert!(status.is_some(), "still running 12 s after SIGTERM");
    let answers = pending.join().expect("pending");
    eprintln!("stopped after {stopped_after:?}: {answers:?}");
    for (name, answer) in &answers {
        assert!(
            matches!(answer.status, 503 | 0) || answer.body.is_empty(),
            "{name}: {answer:?}"
        );
    }
    gw.restart();
    let after = Answer::of(
        client()
            .post(gw.url("/api/jwt/refresh"))
            .json(&json!({ "refreshToken": successor })),
    );
    assert_eq!(after.status, 200, "the acknowledged rotation: {after:?}");
}

/// A tmpfs of `megabytes`, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(megabytes: u32) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "this test mounts a small tmpfs to fill it up: run the tests as root (or in a \
             container with CAP_SYS_ADMIN)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Fills the file system with a file of its own; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        // The last bytes a page short of a chunk.
        while file.write_all(&chunk[..512]).is_ok() {}
        let _ = file.sync_all();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_file_system_gets_clean_503s_and_every_write_works_once_there_is_room() {
    let fs = Tmpfs::mount(16);
    let store = fs.path().join("gatehouse.db");
    let mut gw = TestGateway::start_with(options(Some(&store)));
    let sessions = sessions(&gw);
    let token = gw.login("full@example.com", &["user"]).token;
    let filler = fs.fill();
    let answers = send_all(writes(&gw, &sessions));
    assert_eq!(gw.get_as("/x", &token).status().as_u16(), 200);
    let refused: Vec<_> = answers.iter().filter(|(_, a)| a.status != 200).collect();
    eprintln!("on a full file system: {answers:?}");
    assert!(
        !refused.is_empty(),
        "no write needed room on a full file system"
    );
    for (name, answer) in &answers {
        if answer.status == 503 || answer.status >= 500 {
            answer.assert_clean_unavailable(name);
        } else {
            assert!(matches!(answer.status, 200 | 201), "{name}: {answer:?}");
        }
    }
    std::fs::remove_file(filler).expect("make room");
    // The writes the full disk refused succeed now; the ones it let through were durable
    // (their second attempt is refused as a reuse, so only the refused ones are retried).
    let again = send_all(writes(&gw, &sessions));
    for ((name, first), (_, second)) in answers.iter().zip(&again) {
        if first.status == 503 {
            assert!(matches!(second.status, 200 | 201), "{name}: {second:?}");
        }
    }
    gw.kill_and_restart();
    assert_eq!(gw.get_as("/x", &sessions[2].token).status().as_u16(), 401);
    drop(gw);
}
