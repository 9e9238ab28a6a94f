//! The executor's bounds with plain futures standing for handlers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde_json::Value;

use super::*;

fn executor(time_limit_ms: u64, max_in_flight: usize) -> ApiExecutor {
    ApiExecutor::start(ApiSettings {
        threads: 1,
        time_limit: Duration::from_millis(time_limit_ms),
        max_in_flight,
    })
    .expect("runtime")
}

fn general_code(response: &PluginResponse) -> String {
    let body: Value = serde_json::from_slice(&response.body).expect("json");
    body["generalErrors"][0]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn retry_after(response: &PluginResponse) -> Option<&str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("retry-after"))
        .map(|(_, v)| v.as_str())
}

/// Sets its flag when dropped: tells whether a handler's future was dropped (aborted).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn handlers_run_on_the_api_threads_and_their_answers_come_back() {
    let api = executor(1_000, 4);
    let answer = api
        .run_task("t", async {
            let thread = std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string();
            Ok(PluginResponse::json(
                200,
                &serde_json::json!({ "thread": thread }),
            ))
        })
        .await
        .expect("answered");
    assert_eq!(answer.status, 200);
    let body: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(body["thread"], "gatehouse-api");
    let refused = api.run_task("t", async { Err(ApiError::NotFound) }).await;
    assert_eq!(refused.expect_err("the handler's error").status(), 404);
    assert_eq!(api.settings().threads, 1);
}

#[tokio::test]
async fn a_handler_over_the_time_limit_is_a_503_and_is_aborted() {
    let api = executor(200, 4);
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let answer = {
        let (dropped, finished) = (dropped.clone(), finished.clone());
        api.run_task("slow", async move {
            let _flag = DropFlag(dropped);
            tokio::time::sleep(Duration::from_secs(5)).await;
            finished.store(true, Ordering::SeqCst);
            Ok(PluginResponse::empty(200))
        })
        .await
        .expect("answered")
    };
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(answer.status, 503);
    assert_eq!(general_code(&answer), "[Timeout]");
    assert_eq!(retry_after(&answer), Some("2"));
    let deadline = Instant::now() + Duration::from_secs(2);
    while !dropped.load(Ordering::SeqCst) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(dropped.load(Ordering::SeqCst), "the handler was aborted");
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_handler_hogging_the_api_thread_is_still_answered_at_the_limit() {
    // A step that never yields holds the API's only thread: the limit is timed elsewhere.
    let api = executor(200, 4);
    let started = Instant::now();
    let answer = api
        .run_task("hog", async {
            std::thread::sleep(Duration::from_millis(1_500));
            Ok(PluginResponse::empty(200))
        })
        .await
        .expect("answered");
    assert_eq!(answer.status, 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn requests_over_the_in_flight_bound_are_refused_at_once() {
    let api = Arc::new(executor(5_000, 2));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (api, gate) = (api.clone(), gate.clone());
        waiting.push(tokio::spawn(async move {
            api.run_task("held", async move {
                let _open = gate.acquire().await;
                Ok(PluginResponse::empty(204))
            })
            .await
        }));
    }
    // Both admitted: the third is refused without waiting.
    while api.in_flight.available_permits() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let refused = api
        .run_task("more", async { Ok(PluginResponse::empty(200)) })
        .await
        .expect("answered");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(refused.status, 503);
    assert_eq!(general_code(&refused), "[TooManyRequests]");
    assert_eq!(retry_after(&refused), Some("2"));
    gate.add_permits(2);
    for held in waiting {
        assert_eq!(held.await.expect("join").expect("answered").status, 204);
    }
    let admitted = api
        .run_task("again", async { Ok(PluginResponse::empty(200)) })
        .await
        .expect("answered");
    assert_eq!(admitted.status, 200);
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_frees_its_place() {
    // A time limit the panic cannot meet even where writing its backtrace is slow (a loaded
    // machine, RUST_BACKTRACE set): the answer must be the panic's 500, not a time-out.
    let api = executor(30_000, 1);
    let failed = api
        .run_task("boom", async { panic!("handler bug") })
        .await
        .expect_err("an error");
    assert_eq!(failed.status(), 500);
    let next = api
        .run_task("next", async { Ok(PluginResponse::empty(200)) })
        .await
        .expect("answered");
    assert_eq!(next.status, 200);
}

#[test]
fn defaults_follow_the_proxy_threads_and_dropping_never_blocks() {
    assert_eq!(ApiSettings::defaults(1).threads, 1);
    assert_eq!(ApiSettings::defaults(2).threads, 1);
    assert_eq!(ApiSettings::defaults(8).threads, 4);
    assert_eq!(ApiSettings::defaults(2).time_limit, Duration::from_secs(10));
    assert_eq!(ApiSettings::defaults(2).max_in_flight, 128);
    // Dropped inside another runtime (as the `token` command does): no panic.
    let outer = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    outer.block_on(async { drop(executor(1_000, 1)) });
}
