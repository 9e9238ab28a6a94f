//! Three gateways on one PostgreSQL database behave like one: a burst of requests spread over
//! the nodes with one expired access token and one one-time-use refresh cookie (grace period 0,
//! the opt-in race window of a cluster behind a non-sticky balancer) gets one rotation and the
//! same cookies everywhere; a revocation on one node is refused at
//! the others within milliseconds (pushed by `NOTIFY`, not polled); a node whose database
//! connection drops and comes back misses no revocation.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::json;
use uuid::Uuid;

use super::kit::*;
use super::postgres::{cookie_value, options, status_with_token, Database};

/// One-time-use refresh tokens with FusionAuth's default grace period (0).
const ONE_TIME_USE: &str =
    "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse";

/// How soon every other node must refuse a revoked token.
const PUSH_DEADLINE: Duration = Duration::from_millis(250);

/// Options for a node of the cluster on `db` (or on `store_url` when given), with a race
/// window of 10 s (opted in: the burst is spread over the nodes as a non-sticky balancer would).
fn node_options(db: &Database, store_url: Option<String>) -> Options {
    let mut options = options(db, ONE_TIME_USE);
    options.race_window_seconds = Some(10);
    if let Some(url) = store_url {
        options.store_url = Some(url);
    }
    options
}

/// An access token of `session`'s user that expired 30 s ago.
fn expired_token(node: &TestGateway, session: &Session) -> String {
    let user = Uuid::parse_str(&session.user_id).expect("uuid");
    let mut expired = claims(user, APP, &["user"]);
    expired["exp"] = json!(now() - 30);
    node.token(Algorithm::RS256, &expired)
}

#[test]
fn a_burst_over_three_nodes_rotates_once_and_every_answer_sets_the_same_cookies() {
    let db = Database::create();
    let a = TestGateway::start_with(node_options(&db, None));
    let nodes = Arc::new([
        a.start_peer(&node_options(&db, None)),
        a.start_peer(&node_options(&db, None)),
    ]);
    let session = a.login("burst@example.com", &["user"]);
    let cookie = Arc::new(format!(
        "access_token={}; refresh_token={}",
        expired_token(&a, &session),
        session.refresh_token
    ));
    let ports = [a.port, nodes[0].port, nodes[1].port];
    let start = Arc::new(Barrier::new(30));
    let threads: Vec<_> = (0..30)
        .map(|i| {
            let (cookie, start) = (cookie.clone(), start.clone());
            let url = format!("http://127.0.0.1:{}/app/page/{i}", ports[i % 3]);
            std::thread::spawn(move || {
                start.wait();
                let response = client()
                    .get(url)
                    .header("Cookie", cookie.as_str())
                    .send()
                    .expect("send");
                (
                    response.status().as_u16(),
                    cookie_value(&response, "access_token"),
                    cookie_value(&response, "refresh_token"),
                )
            })
        })
        .collect();
    let answers: Vec<_> = threads
        .into_iter()
        .map(|thread| thread.join().expect("request thread"))
        .collect();
    let (_, access, refresh) = answers[0].clone();
    assert!(refresh.is_some() && refresh.as_deref() != Some(session.refresh_token.as_str()));
    for answer in &answers {
        assert_eq!(
            answer,
            &(200, access.clone(), refresh.clone()),
            "{answers:?}"
        );
    }
    let token_id = Uuid::parse_str(&session.refresh_token_id).expect("refresh token id");
    let rotations = db.count(
        "SELECT COUNT(*) FROM rotated_refresh_tokens WHERE token_id = $1",
        token_id,
    );
    assert_eq!(rotations, 1, "one rotation for the whole burst");
}

/// Revokes the user's refresh tokens through `node`'s API.
fn revoke_user(node: &TestGateway, user_id: &str) {
    let revoked = client()
        .delete(node.url(&format!("/api/jwt/refresh?userId={user_id}")))
        .header("Authorization", API_KEY)
        .send()
        .expect("send");
    assert_eq!(revoked.status().as_u16(), 200);
}

/// Revokes a fresh session on `origin` and returns how long after the revocation was
/// acknowledged each of `others` first refused the session's access token (at most `give_up`).
fn time_to_refusal(
    origin: &TestGateway,
    others: &[&TestGateway],
    email: &str,
    give_up: Duration,
) -> Vec<Duration> {
    let session = origin.login(email, &["user"]);
    for node in others {
        assert_eq!(status_with_token(node, &session.token), 200, "before");
    }
    revoke_user(origin, &session.user_id);
    // From the moment the revocation is acknowledged (committed): the time the origin's API
    // takes to answer is not the propagation's.
    let started = Instant::now();
    let mut refused: Vec<Option<Duration>> = vec![None; others.len()];
    while refused.iter().any(Option::is_none) && started.elapsed() < give_up {
        for (node, seen) in others.iter().zip(refused.iter_mut()) {
            if seen.is_none() && status_with_token(node, &session.token) == 401 {
                *seen = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    refused
        .into_iter()
        .map(|seen| seen.unwrap_or(give_up))
        .collect()
}

#[test]
fn a_revocation_is_refused_by_every_other_node_within_250_ms_in_every_trial() {
    let db = Database::create();
    let a = TestGateway::start_with(node_options(&db, None));
    let b = a.start_peer(&node_options(&db, None));
    let c = a.start_peer(&node_options(&db, None));
    let mut times = Vec::new();
    for trial in 0..20 {
        let email = format!("push-{trial}@example.com");
        let trial_times = time_to_refusal(&a, &[&b, &c], &email, Duration::from_secs(3));
        for time in &trial_times {
            assert!(*time < PUSH_DEADLINE, "trial {trial}: {trial_times:?}");
        }
        times.extend(trial_times);
    }
    times.sort();
    eprintln!(
        "revocation seen by the other nodes: median {:?}, max {:?} ({} observations)",
        times[times.len() / 2],
        times[times.len() - 1],
        times.len()
    );
}

#[test]
fn a_node_whose_database_connection_drops_misses_no_revocation() {
    let db = Database::create();
    let link = CuttableLink::start("127.0.0.1:5432".parse().expect("addr"));
    let linked = db
        .url
        .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", link.port));
    assert_ne!(linked, db.url, "the test database is on 127.0.0.1:5432");
    let a = TestGateway::start_with(node_options(&db, None));
    let b = a.start_peer(&node_options(&db, Some(linked)));
    let session = a.login("dropped@example.com", &["user"]);
    assert_eq!(status_with_token(&b, &session.token), 200);

    // B loses its database; the revocation is committed (and announced) meanwhile.
    link.cut();
    std::thread::sleep(Duration::from_millis(300));
    revoke_user(&a, &session.user_id);
    std::thread::sleep(Duration::from_millis(1500));
    link.restore();

    // Back on line, B catches up from the table: the revocation it never heard applies.
    let restored = Instant::now();
    while status_with_token(&b, &session.token) != 401 {
        assert!(
            restored.elapsed() < Duration::from_secs(5),
            "node B still accepts a token revoked while it was cut off"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And it listens again: the next revocation is pushed, not polled.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let times = time_to_refusal(&a, &[&b], "again@example.com", Duration::from_secs(3));
        if times[0] < PUSH_DEADLINE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B does not listen again after the drop: {times:?}"
        );
    }
}
