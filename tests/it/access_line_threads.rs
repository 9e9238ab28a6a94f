//! Access lines under two worker threads across second boundaries, through the real binary:
//! eight keep-alive clients for several seconds (with a `SIGHUP` in the middle, then `SIGTERM`
//! while lines are still buffered), in the text and the JSON format. Every line is whole and
//! parses; each answered request has exactly one line (none lost, none doubled, none for a
//! request never sent); each line's timestamp lies between the client's sending of the request
//! and its reading of the answer (by the same clock, plus a small margin for the line written
//! after the answer), so it is in the second the request was served; and the lines of one
//! connection's requests, served one after the other, have increasing timestamps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::kit::{client, Options, TestGateway};
use super::reload::hangup;

/// How late after the client read its answer a line may be stamped: it is written in the
/// logging phase, after the answer went out.
const LATE_MICROS: i64 = 250_000;

/// One request as its client saw it: its path, and when it was sent and answered (µs since
/// the epoch).
struct Sent {
    path: String,
    sent: i64,
    answered: i64,
}

fn micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
}

/// Requests on one keep-alive client until `stop`, each to a path of its own.
fn traffic(url: String, id: usize, stop: Arc<AtomicBool>) -> Vec<Sent> {
    let http = client();
    let mut done = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let path = format!("/public/t{id}-{i}");
        let sent = micros_now();
        let response = http.get(format!("{url}{path}")).send().expect("answered");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let _ = response.bytes();
        done.push(Sent {
            path,
            sent,
            answered: micros_now(),
        });
    }
    done
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` as µs since the epoch; panics on anything else.
fn parse_timestamp(text: &str) -> i64 {
    let b = text.as_bytes();
    assert!(
        b.len() == 27 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[26] == b'Z',
        "{text:?}"
    );
    let num = |range: std::ops::Range<usize>| -> i64 { text[range].parse().expect(text) };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    // Days from the civil date (H. Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + num(11..13) * 3600 + num(14..16) * 60 + num(17..19);
    seconds * 1_000_000 + num(20..26)
}

/// The access lines of traffic paths in `log` (format `json` or text): path → timestamps.
fn access_lines(log: &str, json: bool) -> HashMap<String, Vec<i64>> {
    let mut lines: HashMap<String, Vec<i64>> = HashMap::new();
    for line in log.lines() {
        let (timestamp, path) = if json {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a line that is not JSON ({e}): {line:?}"));
            if value["target"] != "gatehouse::access" {
                continue;
            }
            let fields = if value["fields"].is_object() {
                &value["fields"]
            } else {
                &value
            };
            let path = fields["path"].as_str().expect(line).to_string();
            (value["timestamp"].as_str().expect(line).to_string(), path)
        } else {
            assert!(line.len() > 27, "a line that is not whole: {line:?}");
            if !line.contains(" gatehouse::access: ") {
                let _ = parse_timestamp(&line[..27]);
                continue;
            }
            assert_eq!(line.matches("gatehouse::access").count(), 1, "{line}");
            assert!(line.contains(" latency_ms="), "torn: {line}");
            let path = line
                .split(" path=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect(line);
            (line[..27].to_string(), path.to_string())
        };
        if path.starts_with("/public/t") {
            lines
                .entry(path)
                .or_default()
                .push(parse_timestamp(&timestamp));
        }
    }
    lines
}

/// Eight clients for about four seconds, a `SIGHUP` after two, then `SIGTERM` right after the
/// last answers; the log checked as the module says.
fn lines_hold_across_seconds(format: &str) {
    let mut gw = TestGateway::start_with(Options {
        extra: format!("log: {{format: {format}, level: info}}\n"),
        ..Options::default()
    });
    assert!(gw.config_text(&Options::default()).contains("threads: 2"));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|id| {
            let (url, stop) = (gw.url(""), stop.clone());
            std::thread::spawn(move || traffic(url, id, stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    hangup(&gw);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let per_client: Vec<Vec<Sent>> = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .collect();
    // SIGTERM with the last lines still in the threads' buffers (written every 100 ms).
    gw.stop();
    let mut lines = access_lines(&gw.log(), format == "json");
    let total: usize = per_client.iter().map(Vec::len).sum();
    let mut latest = 0;
    for client in &per_client {
        let mut previous = 0;
        for sent in client {
            let stamps = lines
                .remove(&sent.path)
                .unwrap_or_else(|| panic!("{}: no access line ({total} requests)", sent.path));
            assert_eq!(stamps.len(), 1, "{}: {} lines", sent.path, stamps.len());
            let stamp = stamps[0];
            assert!(
                stamp >= sent.sent && stamp <= sent.answered + LATE_MICROS,
                "{}: stamped {stamp}, sent {} and answered {}",
                sent.path,
                sent.sent,
                sent.answered
            );
            assert!(stamp > previous, "{}: before its predecessor", sent.path);
            previous = stamp;
            latest = latest.max(stamp - sent.answered);
        }
    }
    assert!(lines.is_empty(), "lines of requests never sent: {lines:?}");
    let seconds: std::collections::HashSet<i64> = per_client
        .iter()
        .flatten()
        .map(|s| s.sent / 1_000_000)
        .collect();
    assert!(seconds.len() >= 4, "{} seconds crossed", seconds.len());
    eprintln!(
        "{format}: {total} requests over {} seconds, one line each; latest line {latest} µs after its answer",
        seconds.len()
    );
}

#[test]
fn text_access_lines_under_two_threads_are_whole_timely_and_counted() {
    lines_hold_across_seconds("text");
}

#[test]
fn json_access_lines_under_two_threads_are_whole_timely_and_counted() {
    lines_hold_across_seconds("json");
}
