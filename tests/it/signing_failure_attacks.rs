//! Failures while RSA signatures are pending, through the real binary: the refreshes (at the
//! edge and through `POST /api/jwt/refresh`), vends and issues queued on the signing pool behind
//! 8192-bit signatures while the store refuses their writes (SQLite's write lock held by another
//! process past the busy timeout; PostgreSQL connections terminated by the server), while the
//! process is told to stop (`SIGTERM`), and while the queue runs past the time limit.
//!
//! Every request is answered with a pair or a clean refusal (503 with FusionAuth's Errors JSON,
//! `Retry-After` at the edge, no cookie cleared), or its connection is closed before anything
//! was written for it; no answer comes later than the time limit allows; afterwards the store
//! holds, for every client, exactly the value the client was given (or the one it still has),
//! and each client's retry with what it holds gets a pair.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_plugin_api::store::RefreshTokenStore;
use serde_json::{json, Value};
use tokio_postgres::NoTls;
use uuid::Uuid;

use super::kit::*;
use super::postgres::Database;
use super::signing_attacks::{jwks, options, slow_keys, verified};
use super::store_stress::Locker;

/// Where the gateway's store is, for a second connection to it (as another process would have).
enum StoreAt {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreAt {
    /// Runs `f` on a current-thread runtime over a connection of its own to the store.
    fn with<T>(&self, f: impl AsyncFnOnce(&dyn RefreshTokenStore) -> T) -> T {
        let clock = Arc::new(gatehouse_plugin_api::SystemClock);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async move {
                match self {
                    StoreAt::Sqlite(path) => {
                        let store = gatehouse::store::sqlite::SqliteStore::open(path, clock)
                            .expect("open the SQLite store");
                        f(&store).await
                    }
                    StoreAt::Postgres(url) => {
                        let store = gatehouse::store::postgres::PostgresStore::open(url, clock)
                            .await
                            .expect("open the PostgreSQL store");
                        f(&store).await
                    }
                }
            })
    }

    /// The value stored under each of `ids` (`None`: no such token).
    fn values(&self, ids: &[Uuid]) -> Vec<Option<String>> {
        self.with(async |store| {
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                out.push(
                    store
                        .get_refresh_token(*id)
                        .await
                        .expect("read")
                        .map(|t| t.token),
                );
            }
            out
        })
    }
}

/// A client holding one refresh token: its id and the value the client has now.
#[derive(Debug, Clone)]
struct Holder {
    id: Uuid,
    value: String,
}

/// `n` refresh tokens of `session`'s user and application, each a copy of its refresh token
/// under a new id and value (a login each, without `n` runs of the command line).
fn holders(store: &StoreAt, session: &Session, n: usize) -> Vec<Holder> {
    let id = Uuid::parse_str(&session.refresh_token_id).expect("uuid");
    store.with(async |store| {
        let original = store
            .get_refresh_token(id)
            .await
            .expect("read")
            .expect("the session's refresh token");
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let mut copy = original.clone();
            copy.id = Uuid::new_v4();
            copy.token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
            store.insert_refresh_token(&copy).await.expect("insert");
            out.push(Holder {
                id: copy.id,
                value: copy.token,
            });
        }
        out
    })
}

/// Which way a refresh is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A transparent refresh at the edge (`/app`, the `refresh_token` cookie only).
    Edge,
    /// `POST /api/jwt/refresh`.
    Api,
}

/// What a request got.
#[derive(Debug, Clone)]
enum Outcome {
    /// A new pair (the refresh token stays the one presented when none is set).
    Pair { access: String, refresh: String },
    /// An answer without a pair.
    Refused {
        status: u16,
        retry_after: Option<String>,
        set_cookies: Vec<String>,
        body: String,
    },
    /// No answer: the connection failed or was closed (the error's text, printed on failure).
    #[allow(dead_code)]
    NoAnswer(String),
}

/// An outcome and how long it took.
#[derive(Debug, Clone)]
struct Timed {
    via: Via,
    outcome: Outcome,
    took: Duration,
}

/// A client that waits up to 28 s for an answer (longer than any bound the gateway has).
fn patient() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(28))
        .build()
        .expect("client")
}

/// One refresh of `value`, `via` the edge or the API, on a connection of its own. An edge pair
/// must have reached the upstream with the new access token.
fn refresh(gw: &TestGateway, via: Via, value: &str) -> Timed {
    let client = patient();
    let started = Instant::now();
    let request = match via {
        Via::Edge => client
            .get(gw.url("/app/page"))
            .header("Cookie", format!("refresh_token={value}")),
        Via::Api => client
            .post(gw.url("/api/jwt/refresh"))
            .json(&json!({ "refreshToken": value })),
    };
    let outcome = match request.send() {
        Err(e) => Outcome::NoAnswer(e.to_string()),
        Ok(response) => read_outcome(via, value, response),
    };
    Timed {
        via,
        outcome,
        took: started.elapsed(),
    }
}

/// The outcome an answer to a refresh of `value` carries.
fn read_outcome(via: Via, value: &str, response: reqwest::blocking::Response) -> Outcome {
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let retry_after = header("retry-after").into_iter().next();
    let set_cookies = header("set-cookie");
    let cookie = |name: &str| {
        set_cookies.iter().find_map(|c| {
            let (k, v) = c.split(';').next()?.split_once('=')?;
            (k == name && !v.is_empty()).then(|| v.to_string())
        })
    };
    let (access, refreshed) = (cookie("access_token"), cookie("refresh_token"));
    let body = match response.text() {
        Ok(body) => body,
        Err(e) => return Outcome::NoAnswer(format!("{status}, body cut: {e}")),
    };
    match (via, status, access) {
        (Via::Edge, 200, Some(access)) => {
            let echoed: Value = serde_json::from_str(&body).expect("the echo's JSON");
            assert_eq!(
                echoed["headers"]["authorization"],
                json!(format!("Bearer {access}")),
                "the upstream got the new access token"
            );
            let refresh = refreshed.unwrap_or_else(|| value.to_string());
            Outcome::Pair { access, refresh }
        }
        // The refresh was done and its cookies set, but the upstream could not answer (the
        // demo upstream, in the process, stops with it): a browser keeps the cookies whatever
        // the status, so the client holds the new pair.
        (Via::Edge, 502..=504, Some(access)) => {
            let refresh = refreshed.unwrap_or_else(|| value.to_string());
            Outcome::Pair { access, refresh }
        }
        (Via::Api, 200, _) => {
            let json: Value = serde_json::from_str(&body).expect("JSON");
            Outcome::Pair {
                access: json["token"].as_str().expect("token").into(),
                refresh: json["refreshToken"].as_str().expect("refreshToken").into(),
            }
        }
        _ => Outcome::Refused {
            status,
            retry_after,
            set_cookies,
            body,
        },
    }
}

impl Timed {
    /// True when this is a clean refusal for a store or a signing queue that could not serve
    /// the refresh: 503 with FusionAuth's Errors JSON and nothing internal in it; at the edge
    /// with `Retry-After: 2` and no cookie set or cleared.
    fn is_clean_refusal(&self) -> bool {
        let Outcome::Refused {
            status,
            retry_after,
            set_cookies,
            body,
        } = &self.outcome
        else {
            return false;
        };
        let errors: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let lower = body.to_lowercase();
        let leaks = [
            "sqlite",
            "postgres",
            "database",
            "locked",
            "panick",
            "connection",
        ]
        .iter()
        .any(|internal| lower.contains(internal));
        let edge_ok =
            self.via == Via::Api || (retry_after.as_deref() == Some("2") && set_cookies.is_empty());
        *status == 503 && errors["generalErrors"][0]["code"].is_string() && !leaks && edge_ok
    }

    fn is_pair(&self) -> bool {
        matches!(self.outcome, Outcome::Pair { .. })
    }
}

/// Sends a refresh of each holder's value at once, each on its own thread and connection,
/// `via(i)` for the `i`-th; the threads, to be joined.
fn send_all<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    gw: &'s TestGateway,
    holders: &'s [Holder],
    via: impl Fn(usize) -> Via,
) -> Vec<std::thread::ScopedJoinHandle<'s, Timed>> {
    holders
        .iter()
        .enumerate()
        .map(|(i, holder)| {
            let via = via(i);
            scope.spawn(move || refresh(gw, via, &holder.value))
        })
        .collect()
}

fn join_all(handles: Vec<std::thread::ScopedJoinHandle<'_, Timed>>) -> Vec<Timed> {
    handles
        .into_iter()
        .map(|h| h.join().expect("a refresh thread"))
        .collect()
}

/// Edge and API alternately.
fn alternate(i: usize) -> Via {
    if i.is_multiple_of(2) {
        Via::Edge
    } else {
        Via::Api
    }
}

/// What each holder has after `answers` (a pair's refresh token, else the value it sent).
fn apply(holders: &mut [Holder], answers: &[Timed]) {
    for (holder, answer) in holders.iter_mut().zip(answers) {
        if let Outcome::Pair { refresh, .. } = &answer.outcome {
            holder.value = refresh.clone();
        }
    }
}

/// Nothing burnt, nothing half-applied: each holder's retry (edge and API alternately, a few at
/// a time) with what it holds
/// gets a pair whose access token verifies with the published key `kid`, and the store then
/// holds exactly the value each holder was given.
fn assert_every_holder_recovers(
    gw: &TestGateway,
    store: &StoreAt,
    holders: &mut [Holder],
    kid: Uuid,
) {
    // A few at a time: a queue of every retry at once could itself run past the time limit.
    let answers: Vec<Timed> = holders
        .chunks(8)
        .flat_map(|chunk| {
            std::thread::scope(|scope| join_all(send_all(scope, gw, chunk, alternate)))
        })
        .collect();
    // A clean 503 consumed nothing and says when to come back (a loaded machine can still run
    // a retry past a short time limit): the client tries again, as told, a few times.
    let answers: Vec<Timed> = holders
        .iter()
        .zip(answers)
        .enumerate()
        .map(|(i, (holder, mut answer))| {
            for _ in 0..5 {
                if !answer.is_clean_refusal() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(2));
                answer = refresh(gw, alternate(i % 8), &holder.value);
            }
            answer
        })
        .collect();
    let keys = jwks(gw);
    for (holder, answer) in holders.iter().zip(&answers) {
        let Outcome::Pair { access, .. } = &answer.outcome else {
            panic!(
                "the retry of {:?} with what it holds: {answer:?}",
                holder.id
            );
        };
        let (header, claims) = verified(access, &keys, None);
        assert_eq!(header["kid"], json!(kid.to_string()));
        assert_eq!(claims["sid"], json!(holder.id.to_string()));
    }
    apply(holders, &answers);
    let ids: Vec<Uuid> = holders.iter().map(|h| h.id).collect();
    let stored = store.values(&ids);
    for (holder, stored) in holders.iter().zip(stored) {
        assert_eq!(
            stored.as_deref(),
            Some(holder.value.as_str()),
            "the store holds what the client was given"
        );
    }
}

/// A gateway on `store_url` (its SQLite file when `None`) whose application signs with the
/// 8192-bit PS512 key under one-time use, with `extra` top-level YAML. Returns it with the key's
/// id.
fn slow_gateway(store_url: Option<String>, extra: &str) -> (TestGateway, Uuid) {
    let kid = Uuid::new_v4();
    let mut options = options(kid, "refreshTokenUsagePolicy: OneTimeUse");
    options.store_url = store_url;
    options.extra = extra.to_string();
    (TestGateway::start_with_keys(options, slow_keys(kid)), kid)
}

/// Vends a token signed with `kid`, and issues one for the application from `token`: both are
/// signed on the pool and read the store (the tenant, the registration). Returns, for each, the
/// token (`None`: a clean 503 with FusionAuth's Errors JSON, the store unavailable) and how long
/// the answer took.
fn vend_and_issue(gw: &TestGateway, kid: Uuid, token: &str) -> Vec<(Option<String>, Duration)> {
    let requests = [
        patient()
            .post(gw.url("/api/jwt/vend"))
            .header("Authorization", API_KEY)
            // The application's own key signs only tokens naming the application.
            .json(&json!({"keyId": kid, "claims": {"sub": "vended", "applicationId": APP}})),
        patient()
            .get(gw.url(&format!("/api/jwt/issue?applicationId={APP}")))
            .bearer_auth(token),
    ];
    requests
        .into_iter()
        .map(|request| {
            let started = Instant::now();
            let response = request.send().expect("send");
            let status = response.status().as_u16();
            let body: Value = response.json().unwrap_or(Value::Null);
            let took = started.elapsed();
            match status {
                200 => (
                    Some(body["token"].as_str().expect("token").to_string()),
                    took,
                ),
                503 if body["generalErrors"][0]["code"].is_string() => (None, took),
                _ => panic!("{status} {body}"),
            }
        })
        .collect()
}

#[test]
fn a_write_lock_held_past_the_busy_timeout_while_rsa_signatures_are_pending_burns_nothing() {
    const FILLERS: usize = 16;
    const TARGETS: usize = 6;
    let (gw, kid) = slow_gateway(None, "");
    let session = gw.login("locked@example.com", &["user"]);
    let store = StoreAt::Sqlite(gw.store_path());
    let mut all = holders(&store, &session, FILLERS + TARGETS);
    let (fillers, targets) = all.split_at(FILLERS);
    let (filler_answers, target_answers, signed) = std::thread::scope(|scope| {
        // The pool's queue: 8192-bit signatures, each to be written once signed.
        let queue = send_all(scope, &gw, fillers, alternate);
        std::thread::sleep(Duration::from_millis(300));
        let locker = Locker::hold(&gw.store_path());
        // Queued behind the flood; their writes meet the lock, held until they are answered.
        let pending = send_all(scope, &gw, targets, alternate);
        let signed = vend_and_issue(&gw, kid, &session.token);
        let target_answers = join_all(pending);
        drop(locker);
        (join_all(queue), target_answers, signed)
    });
    let keys = jwks(&gw);
    for (token, took) in &signed {
        if let Some(token) = token {
            verified(token, &keys, None);
        }
        assert!(*took < Duration::from_secs(11), "{took:?}");
    }
    for answer in &target_answers {
        assert!(
            answer.is_clean_refusal(),
            "a write refused by the lock: {answer:?}"
        );
        // The API's time limit (10 s), and the edge's refresh no later than that either.
        assert!(answer.took < Duration::from_millis(10_500), "{answer:?}");
    }
    for answer in &filler_answers {
        assert!(answer.is_pair() || answer.is_clean_refusal(), "{answer:?}");
    }
    // A refusal consumed nothing: the store still holds the value the client sent.
    let answers: Vec<Timed> = filler_answers.into_iter().chain(target_answers).collect();
    let ids: Vec<Uuid> = all.iter().map(|h| h.id).collect();
    for ((holder, answer), stored) in all.iter().zip(&answers).zip(store.values(&ids)) {
        if !answer.is_pair() {
            assert_eq!(stored.as_deref(), Some(holder.value.as_str()), "{answer:?}");
        }
    }
    apply(&mut all, &answers);
    assert_every_holder_recovers(&gw, &store, &mut all, kid);
}

/// Terminates the connections other than its own to the database `db` (the gateway's, all of
/// them) every 150 ms until `stop` is set; how many it terminated.
fn terminate_backends(db: &Database, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&db.url, NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        let mut terminated = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let row = client
                .query_one(
                    // The gateway's connections only: an autovacuum worker on this database
                    // runs as a superuser, whom this role may not terminate.
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid() \
                     AND backend_type = 'client backend' AND usename = current_user",
                    &[],
                )
                .await
                .expect("terminate");
            terminated += row.get::<_, i64>(0) as u64;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        terminated
    })
}

/// Waits up to `timeout` for `/health` to answer 200 (the store reachable again).
fn wait_healthy(gw: &TestGateway, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = client()
            .get(gw.url("/health"))
            .send()
            .is_ok_and(|r| r.status().as_u16() == 200);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not healthy again after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgresql_connections_terminated_while_rsa_signatures_are_pending_burn_nothing() {
    const CLIENTS: usize = 30;
    let db = Database::create();
    let (gw, kid) = slow_gateway(Some(db.url.clone()), "");
    let session = gw.login("cut@example.com", &["user"]);
    let store = StoreAt::Postgres(db.url.clone());
    let mut all = holders(&store, &session, CLIENTS);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (answers, terminated) = std::thread::scope(|scope| {
        let queue = send_all(scope, &gw, &all, alternate);
        std::thread::sleep(Duration::from_millis(300));
        let killer = scope.spawn(|| terminate_backends(&db, &stop));
        let answers = join_all(queue);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        (answers, killer.join().expect("killer"))
    });
    eprintln!(
        "{terminated} connections terminated; {} pairs, {} refusals",
        answers.iter().filter(|a| a.is_pair()).count(),
        answers.iter().filter(|a| !a.is_pair()).count()
    );
    assert!(
        terminated > 0,
        "no connection of the gateway was terminated"
    );
    for answer in &answers {
        assert!(answer.is_pair() || answer.is_clean_refusal(), "{answer:?}");
        assert!(answer.took < Duration::from_millis(10_500), "{answer:?}");
    }
    // The gateway reconnects; a refusal's retry gets a pair (the rotation's own when its commit
    // went unconfirmed), and the store holds what every client was given.
    wait_healthy(&gw, Duration::from_secs(15));
    apply(&mut all, &answers);
    assert_every_holder_recovers(&gw, &store, &mut all, kid);
}

/// Sends `SIGTERM` to the gateway.
fn sigterm(gw: &TestGateway) {
    let pid = gw.pid().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
}

#[test]
fn sigterm_while_rsa_signatures_are_pending_answers_or_writes_nothing() {
    const CLIENTS: usize = 30;
    let (mut gw, kid) = slow_gateway(None, "");
    let session = gw.login("stopping@example.com", &["user"]);
    let store = StoreAt::Sqlite(gw.store_path());
    let mut all = holders(&store, &session, CLIENTS);
    let (answers, stopping) = std::thread::scope(|scope| {
        let queue = send_all(scope, &gw, &all, alternate);
        std::thread::sleep(Duration::from_millis(500));
        sigterm(&gw);
        let stopping = Instant::now();
        (join_all(queue), stopping)
    });
    let exited = gw.wait_exit(Duration::from_secs(25).saturating_sub(stopping.elapsed()));
    assert!(exited.is_some(), "still running 25 s after SIGTERM");
    eprintln!("after SIGTERM: {answers:?}");
    // A request without a pair was not written: the store still holds the value it sent.
    let ids: Vec<Uuid> = all.iter().map(|h| h.id).collect();
    for ((holder, answer), stored) in all.iter().zip(&answers).zip(store.values(&ids)) {
        match &answer.outcome {
            Outcome::Pair { .. } => {}
            Outcome::NoAnswer(_) => {
                assert_eq!(stored.as_deref(), Some(holder.value.as_str()), "{answer:?}")
            }
            Outcome::Refused { .. } => {
                assert!(answer.is_clean_refusal(), "{answer:?}");
                assert_eq!(stored.as_deref(), Some(holder.value.as_str()), "{answer:?}");
            }
        }
    }
    // A gateway restarted on the same store serves each client with what it holds.
    gw.restart();
    apply(&mut all, &answers);
    assert_every_holder_recovers(&gw, &store, &mut all, kid);
}

/// The edge's bound: `api.timeLimitSeconds` 2.
const TWO_SECONDS: &str = "api: {timeLimitSeconds: 2}\n";

#[test]
fn edge_refreshes_queued_behind_rsa_signatures_are_answered_within_the_time_limit() {
    // Enough that the queue outlasts the limit even when the signatures run fast and the
    // clients' requests arrive spread out.
    const FILLERS: usize = 160;
    let (gw, kid) = slow_gateway(None, TWO_SECONDS);
    let session = gw.login("late@example.com", &["user"]);
    let store = StoreAt::Sqlite(gw.store_path());
    let mut all = holders(&store, &session, FILLERS);
    // Several seconds of 8192-bit signatures at once: without a bound, the last ones are
    // answered seconds past the limit.
    let answers = std::thread::scope(|scope| join_all(send_all(scope, &gw, &all, |_| Via::Edge)));
    let refused = answers.iter().filter(|a| !a.is_pair()).count();
    eprintln!("{refused} of {FILLERS} refused");
    assert!(refused > 0, "a queue too short to attack");
    for answer in &answers {
        assert!(answer.is_pair() || answer.is_clean_refusal(), "{answer:?}");
        // The limit, and a hundred connections at once on two busy cores.
        assert!(answer.took < Duration::from_millis(4_500), "{answer:?}");
    }
    // Refused before anything was written: each retry gets a pair.
    apply(&mut all, &answers);
    // The abandoned signatures already running drain from the pool first.
    std::thread::sleep(Duration::from_secs(1));
    assert_every_holder_recovers(&gw, &store, &mut all, kid);
}

#[test]
fn an_edge_refresh_whose_rotation_waits_past_the_time_limit_is_refused_in_time_and_retried() {
    let kid = Uuid::new_v4();
    let keys = slow_keys(kid);
    let es256 = keys.get(jsonwebtoken::Algorithm::ES256).0;
    let mut options = options(es256, "refreshTokenUsagePolicy: OneTimeUse");
    options.extra = TWO_SECONDS.into();
    let gw = TestGateway::start_with_keys(options, keys);
    let session = gw.login("unconfirmed@example.com", &["user"]);
    let store = StoreAt::Sqlite(gw.store_path());
    let mut all = holders(&store, &session, 2);
    let locker = Locker::hold(&gw.store_path());
    // The rotation waits for the lock (the store's busy timeout is 5 s); the lock is released
    // after the edge's 2 s limit and before the busy timeout, so the rotation commits unseen.
    let (answers, took) = std::thread::scope(|scope| {
        let pending = send_all(
            scope,
            &gw,
            &all,
            |i| if i == 0 { Via::Edge } else { Via::Api },
        );
        std::thread::sleep(Duration::from_millis(3_500));
        drop(locker);
        let answers = join_all(pending);
        let took: Vec<Duration> = answers.iter().map(|a| a.took).collect();
        (answers, took)
    });
    for answer in &answers {
        assert!(answer.is_clean_refusal(), "{answer:?}");
        assert!(answer.took < Duration::from_millis(3_400), "{took:?}");
    }
    // Each rotation was abandoned (nothing written) or committed unseen (the value marked
    // unconfirmed): either way the client's retry with the value it holds gets a pair, the
    // store then holds what it was given, and the value it presented is retired.
    std::thread::sleep(Duration::from_millis(500));
    let retired: Vec<String> = all.iter().map(|h| h.value.clone()).collect();
    assert_every_holder_recovers(&gw, &store, &mut all, es256);
    // Once only: the retired value is refused afterwards.
    for value in &retired {
        let again = refresh(&gw, Via::Api, value);
        assert!(
            matches!(&again.outcome, Outcome::Refused { status: 400, .. }),
            "{again:?}"
        );
    }
}
