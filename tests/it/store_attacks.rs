//! The SQLite store's writer thread (group commit) attacked through the real binary: a
//! refresh the API answered is on disk when the process is killed right after the answer,
//! and many concurrent exchanges of one one-time-use refresh token across connections have
//! exactly one rotation (every request answered shares its successor), whose successor survives the kill while the value it retired does not.

use std::sync::{Arc, Barrier};

use serde_json::{json, Value};

use super::kit::*;

fn one_time_use() -> TestGateway {
    TestGateway::start_with(Options {
        app_jwt: "enabled: true, timeToLiveInSeconds: 300, refreshTokenUsagePolicy: OneTimeUse"
            .into(),
        ..Options::default()
    })
}

/// `POST /api/jwt/refresh` of `value` on a connection of its own: the status and the body.
fn refresh(port: u16, value: &str) -> (u16, Value) {
    let response = client()
        .post(format!("http://127.0.0.1:{port}/api/jwt/refresh"))
        .json(&json!({ "refreshToken": value }))
        .send()
        .expect("send");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn concurrent_exchanges_of_one_value_rotate_it_once_and_what_was_answered_survives_a_kill() {
    let mut gw = one_time_use();
    let mut sessions: Vec<Session> = (0..8)
        .map(|i| gw.login(&format!("u{i}@example.com"), &["user"]))
        .collect();
    for round in 0..3 {
        // Every session's value exchanged by 6 requests at once on their own connections.
        let barrier = Arc::new(Barrier::new(sessions.len() * 6));
        let handles: Vec<_> = sessions
            .iter()
            .flat_map(|s| std::iter::repeat_n(s.refresh_token.clone(), 6))
            .map(|value| {
                let (barrier, port) = (barrier.clone(), gw.port);
                std::thread::spawn(move || {
                    barrier.wait();
                    (value.clone(), refresh(port, &value))
                })
            })
            .collect();
        let outcomes: Vec<(String, (u16, Value))> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        for session in &mut sessions {
            let mine: Vec<&(u16, Value)> = outcomes
                .iter()
                .filter(|(v, _)| *v == session.refresh_token)
                .map(|(_, o)| o)
                .collect();
            // One rotation: every request answered 200 overlapped it and was handed its outcome
            // (the same successor), never a second one.
            let winners: Vec<&&(u16, Value)> = mine.iter().filter(|(s, _)| *s == 200).collect();
            assert!(!winners.is_empty(), "round {round}: a winner: {mine:?}");
            let successors: std::collections::HashSet<&str> = winners
                .iter()
                .map(|(_, body)| body["refreshToken"].as_str().expect("successor"))
                .collect();
            assert_eq!(
                successors.len(),
                1,
                "round {round}: exactly one rotation: {mine:?}"
            );
            for (status, body) in &mine {
                assert!(
                    *status == 200 || (400..500).contains(status),
                    "round {round}: a loser is refused, never a 5xx: {status} {body}"
                );
            }
            let next = winners[0].1["refreshToken"].as_str().expect("successor");
            assert_ne!(next, session.refresh_token, "one-time use rotates");
            session.refresh_token = next.to_string();
        }
        // Killed right after the answers: every answered rotation is on disk.
        let retired: Vec<String> = outcomes.iter().map(|(v, _)| v.clone()).collect();
        gw.kill_and_restart();
        for session in &sessions {
            assert!(
                !retired.contains(&session.refresh_token),
                "the successor is a new value"
            );
        }
        if round == 2 {
            for session in &sessions {
                let (status, body) = refresh(gw.port, &session.refresh_token);
                assert_eq!(
                    status, 200,
                    "the answered successor survived the kill: {body}"
                );
            }
            for value in retired.iter().take(1) {
                let (status, _) = refresh(gw.port, value);
                assert_eq!(status, 400, "a retired value stays retired after the kill");
            }
        }
    }
}
