//! An open-loop HTTP/1.1 load generator, for the benchmarks only: latency at a fixed offered
//! rate, timed from each request's *scheduled* send time (what wrk2 does), so that a slow
//! answer cannot hide the requests it held back (coordinated omission). Not part of the
//! product; `bench/compare.sh` runs it (`PARTS=latency`).
//!
//! `CONNECTIONS` keep-alive connections share a total rate `RATE`: request `k` of connection
//! `i` is due at `(i + k × CONNECTIONS) / RATE` seconds after the start, so the requests of all
//! connections together are evenly spaced, `1 / RATE` apart. A connection sends its next request
//! at its due time, or at once when the previous answer came later than that (then the wait is
//! part of the latency). Each connection has its own thread with a 1 ns timer slack, so a send
//! is late by the scheduler's wake-up, not by a timer wheel's millisecond.
//!
//! Latencies go into a histogram of µs resolution up to 2,048 µs and three significant digits
//! above (the buckets of an HDR histogram); p50, p90, p99, p99.9 and max are read from it. Any
//! answer that is not 2xx is counted (and timed); a connection that fails is counted as an error,
//! reconnected, and its request not timed. Requests due in the run but never sent by its end (the
//! target fell behind) are counted as `missed`.
//!
//! Mixed runs (`--mix 'LABEL PATH [Name: value]'`, repeatable) interleave requests for other
//! paths of the same host and port with the URL's: the schedule's slot `j` sends variant
//! `j mod m` (the URL's own request is variant 0, labelled by `--label`), so every variant sees
//! the same machine at the same moments, and the difference between two variants' percentiles
//! is what the paths themselves cost, not the noise of when each was measured.
//!
//! Usage: `open_loop URL --rate R --duration S [--connections C] [--warmup S] [-H 'Name: value']…
//! [--label L --mix 'LABEL PATH [Name: value]'…]`. Prints a summary on stderr and one
//! tab-separated line on stdout: `RATE ACHIEVED REQUESTS NON2XX ERRORS MISSED P50 P90 P99 P99.9
//! MAX` (rates per second, latencies in µs); in a mixed run, one such line per variant with its
//! label in front (its share of the rate). Exits non-zero when a variant had no answer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use clap::Parser;

/// Command-line options (see the module comment).
#[derive(Parser, Debug, Clone)]
#[command(about = "Open-loop HTTP/1.1 load at a fixed rate, latency from the scheduled send time")]
struct Options {
    /// `http://host:port/path` (plain HTTP/1.1, keep-alive).
    url: String,
    /// Total requests per second over all connections.
    #[arg(long)]
    rate: f64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Keep-alive connections, each with its own thread.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of load at the same rate before the measured part (not recorded).
    #[arg(long, default_value_t = 0.0)]
    warmup: f64,
    /// A request header, `Name: value` (repeatable), e.g. `Authorization: Bearer …`.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// The URL's label in a mixed run.
    #[arg(long, default_value = "url")]
    label: String,
    /// Another request in the mix, `LABEL PATH [Name: value]`, to the URL's host and port.
    #[arg(long = "mix")]
    mixes: Vec<String>,
}

/// Sub-buckets per power of two above the exact range: three significant digits.
const SUB_BUCKETS: u64 = 1024;
/// Values below this (µs) have a bucket each.
const EXACT: u64 = 2 * SUB_BUCKETS;
/// Values are clamped to below `2^MAX_EXPONENT` µs (about 12 days).
const MAX_EXPONENT: u32 = 40;

/// A latency histogram in µs: exact below 2,048 µs, then 1,024 buckets per power of two (a
/// bucket's width is under 1/1,024 of its values). Counts only; merged across threads.
#[derive(Clone, Debug, PartialEq)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    fn new() -> Self {
        let buckets = EXACT + u64::from(MAX_EXPONENT - 11) * SUB_BUCKETS;
        Histogram {
            counts: vec![0; buckets as usize],
            total: 0,
            max: 0,
        }
    }

    /// The bucket index of `value` µs (clamped to the largest representable value).
    fn index(value: u64) -> usize {
        let value = value.min((1 << MAX_EXPONENT) - 1);
        if value < EXACT {
            return value as usize;
        }
        let exponent = 63 - value.leading_zeros(); // ≥ 11
        let shift = exponent - 10;
        let sub = (value >> shift) - SUB_BUCKETS; // in 0..1024
        (EXACT + u64::from(exponent - 11) * SUB_BUCKETS + sub) as usize
    }

    /// The highest value that falls in bucket `index` (what a percentile reports).
    fn highest(index: usize) -> u64 {
        let index = index as u64;
        if index < EXACT {
            return index;
        }
        let exponent = (index - EXACT) / SUB_BUCKETS + 11;
        let sub = (index - EXACT) % SUB_BUCKETS + SUB_BUCKETS;
        let shift = exponent - 10;
        ((sub + 1) << shift) - 1
    }

    fn record(&mut self, micros: u64) {
        self.counts[Self::index(micros)] += 1;
        self.total += 1;
        self.max = self.max.max(micros);
    }

    fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// The `percentile` (0–100) in µs: the smallest bucket's highest value at or under which at
    /// least that share of the values lie, never above the largest value recorded; 0 when empty.
    fn percentile(&self, percentile: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        // The rank, forgiving the float error of a share such as 99.9 (999.000…1 of 1,000).
        let rank = percentile / 100.0 * self.total as f64;
        let wanted = (rank * (1.0 - 1e-12)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Self::highest(index).min(self.max);
            }
        }
        self.max
    }
}

/// When request `k` of connection `connection` is due, after the start: evenly spread, the
/// whole schedule `1 / rate` apart.
fn due(connection: usize, k: u64, connections: usize, rate: f64) -> Duration {
    let slot = connection as u64 + k * connections as u64;
    Duration::from_secs_f64(slot as f64 / rate)
}

/// What is known of an answer once its head is read.
#[derive(Debug, PartialEq)]
enum Body {
    /// `Content-Length` bytes (0 for 204 and 304).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Parses an answer's head in `buffer`: `None` while incomplete; else the status, the head's
/// length, the body's framing and whether the server closes the connection after it. An
/// answer without a length or chunking (read to close) is an error: keep-alive needs framing.
fn parse_head(buffer: &[u8]) -> Option<Result<(u16, usize, Body, bool), String>> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = match std::str::from_utf8(&buffer[..end]) {
        Ok(head) => head,
        Err(_) => return Some(Err("answer head is not UTF-8".into())),
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = match status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
    {
        Some(status) => status,
        None => return Some(Err(format!("bad status line {status_line:?}"))),
    };
    let (mut length, mut chunked, mut close) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body = if status == 204 || status == 304 {
        Body::Length(0)
    } else if chunked {
        Body::Chunked
    } else if let Some(length) = length {
        Body::Length(length)
    } else {
        return Some(Err(format!("answer {status} has no length")));
    };
    Some(Ok((status, end, body, close)))
}

/// The length of a complete chunked body at the start of `body` (trailers included), or `None`
/// while more bytes are needed; an error for a malformed chunk size.
fn chunked_length(body: &[u8]) -> Result<Option<usize>, String> {
    let mut at = 0;
    loop {
        let Some(line) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&body[at..at + line]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        at += line + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(line) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Ok(None);
                };
                at += line + 2;
                if line == 0 {
                    return Ok(Some(at));
                }
            }
        }
        if body.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

/// One keep-alive connection: the request's bytes and a read buffer.
struct Connection {
    address: String,
    /// The request's bytes, per variant.
    requests: Vec<Vec<u8>>,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    /// Sends the request and reads one whole answer; returns its status. On an error the
    /// connection is dropped (the next call reconnects).
    fn exchange(&mut self, variant: usize) -> Result<u16, String> {
        let result = self.try_exchange(variant);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn try_exchange(&mut self, variant: usize) -> Result<u16, String> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.address).map_err(|e| e.to_string())?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            // A target that stops answering is an error, not a hang of the whole run.
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
            self.stream = Some(stream);
            self.buffer.clear();
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream
            .write_all(&self.requests[variant])
            .map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 16384];
        let (status, head, body, close) = loop {
            if let Some(head) = parse_head(&self.buffer) {
                break head?;
            }
            self.read_more(&mut chunk)?;
        };
        let total = loop {
            let complete = match body {
                Body::Length(length) => {
                    (self.buffer.len() >= head + length).then_some(head + length)
                }
                Body::Chunked => chunked_length(&self.buffer[head..])?.map(|n| head + n),
            };
            if let Some(total) = complete {
                break total;
            }
            self.read_more(&mut chunk)?;
        };
        self.buffer.drain(..total);
        if close {
            self.stream = None;
        }
        Ok(status)
    }

    fn read_more(&mut self, chunk: &mut [u8]) -> Result<(), String> {
        let stream = self.stream.as_mut().ok_or("not connected")?;
        match stream.read(chunk) {
            Ok(0) => Err("connection closed mid-answer".into()),
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// What one connection's thread measured of one variant.
#[derive(Clone)]
struct Tally {
    histogram: Histogram,
    non_2xx: u64,
    errors: u64,
    missed: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            histogram: Histogram::new(),
            non_2xx: 0,
            errors: 0,
            missed: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.histogram.merge(&other.histogram);
        self.non_2xx += other.non_2xx;
        self.errors += other.errors;
        self.missed += other.missed;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }
}

/// The variant slot `connection + k × connections` of the schedule sends, of `variants`.
fn variant_of(connection: usize, k: u64, connections: usize, variants: usize) -> usize {
    ((connection as u64 + k * connections as u64) % variants as u64) as usize
}

/// Asks for a 1 ns timer slack for the process's main thread, which the threads it starts
/// afterwards inherit (Linux's default of 50 µs would make every send up to 50 µs late); false
/// where the kernel does not allow it.
fn fine_timer_slack() -> bool {
    std::fs::write("/proc/self/timerslack_ns", "1").is_ok()
}

/// Runs connection `index`'s schedule from `start`: requests due before `start + warmup` are
/// sent but not recorded; none is sent once `end` has passed (those still due are `missed`).
/// Returns what it measured, per variant.
fn run_connection(
    mut connection: Connection,
    index: usize,
    options: &Options,
    start: Instant,
    record_from: Instant,
    end: Instant,
) -> Vec<Tally> {
    let variants = connection.requests.len();
    let mut tallies = vec![Tally::new(); variants];
    for k in 0u64.. {
        let intended = start + due(index, k, options.connections, options.rate);
        if intended >= end {
            break;
        }
        let variant = variant_of(index, k, options.connections, variants);
        if Instant::now() >= end {
            // Due in the run, never sent: this and every later one of this connection.
            for later in k.. {
                if start + due(index, later, options.connections, options.rate) >= end {
                    break;
                }
                tallies[variant_of(index, later, options.connections, variants)].missed += 1;
            }
            break;
        }
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let result = connection.exchange(variant);
        let took = intended.elapsed();
        if intended < record_from {
            continue;
        }
        let tally = &mut tallies[variant];
        match result {
            Ok(status) => {
                tally.histogram.record(took.as_micros() as u64);
                if !(200..300).contains(&status) {
                    tally.non_2xx += 1;
                }
            }
            Err(error) => {
                tally.errors += 1;
                tally.first_error.get_or_insert(error);
            }
        }
    }
    tallies
}

/// A variant of a mixed run: its label and its request's bytes.
type Variant = (String, Vec<u8>);

/// The address to connect to and each variant's label and request bytes: the URL's with its
/// headers first, then each `--mix` (a path of the same host and port, with one header or none).
fn requests_for(options: &Options) -> Result<(String, Vec<Variant>), String> {
    let (address, request) = request_for(options)?;
    let mut variants = vec![(options.label.clone(), request)];
    for mix in &options.mixes {
        let mut parts = mix.trim().splitn(3, ' ');
        let (Some(label), Some(path)) = (parts.next(), parts.next()) else {
            return Err(format!("--mix {mix:?} is not 'LABEL PATH [Name: value]'"));
        };
        if !path.starts_with('/') || variants.iter().any(|(l, _)| l == label) {
            return Err(format!(
                "--mix {mix:?}: a new label and a path starting with /"
            ));
        }
        let mut one = Options::parse_from(["open_loop", "http://x/", "--rate", "1"]);
        one.url = format!("http://{address}{path}");
        one.headers = parts
            .next()
            .map(|h| vec![h.to_string()])
            .unwrap_or_default();
        variants.push((label.to_string(), request_for(&one)?.1));
    }
    Ok((address, variants))
}

/// The request's bytes and the address to connect to, from the URL and headers.
fn request_for(options: &Options) -> Result<(String, Vec<u8>), String> {
    let url = url::Url::parse(&options.url).map_err(|e| format!("URL: {e}"))?;
    if url.scheme() != "http" {
        return Err("only http:// URLs (plain HTTP/1.1)".into());
    }
    let host = url.host_str().ok_or("URL without a host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut target = url.path().to_string();
    if let Some(query) = url.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut request = format!("GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n");
    for header in &options.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| format!("header {header:?} is not Name: value"))?;
        request.push_str(&format!("{}: {}\r\n", name.trim(), value.trim()));
    }
    request.push_str("\r\n");
    Ok((format!("{host}:{port}"), request.into_bytes()))
}

fn main() {
    let options = Options::parse();
    if !(options.rate > 0.0 && options.duration > 0.0 && options.connections > 0) {
        eprintln!("open_loop: --rate, --duration and --connections must be positive");
        std::process::exit(2);
    }
    let (address, variants) = requests_for(&options).unwrap_or_else(|e| {
        eprintln!("open_loop: {e}");
        std::process::exit(2)
    });
    if !fine_timer_slack() {
        eprintln!("open_loop: could not set a 1 ns timer slack: sends may be up to 50 µs late");
    }
    // A little ahead, so that every thread is up before its first request is due.
    let start = Instant::now() + Duration::from_millis(50);
    let record_from = start + Duration::from_secs_f64(options.warmup);
    let end = record_from + Duration::from_secs_f64(options.duration);
    let tallies: Vec<Vec<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..options.connections)
            .map(|index| {
                let connection = Connection {
                    address: address.clone(),
                    requests: variants.iter().map(|(_, r)| r.clone()).collect(),
                    stream: None,
                    buffer: Vec::with_capacity(16384),
                };
                let options = &options;
                scope.spawn(move || {
                    run_connection(connection, index, options, start, record_from, end)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a connection thread panicked"))
            .collect()
    });
    let labels: Vec<&str> = variants.iter().map(|(label, _)| label.as_str()).collect();
    let mut answered_all = true;
    for (variant, label) in labels.iter().enumerate() {
        let mut tally = Tally::new();
        for connection in &tallies {
            tally.merge(&connection[variant]);
        }
        let prefix = (labels.len() > 1).then_some(*label);
        answered_all &= report(&options, prefix, labels.len(), &tally);
    }
    if !answered_all {
        std::process::exit(1);
    }
}

/// Prints one variant's summary (stderr) and tab-separated line (stdout; after `label` and a tab
/// in a mixed run, whose rate is shared by `variants`); returns whether anything was answered.
fn report(options: &Options, label: Option<&str>, variants: usize, tally: &Tally) -> bool {
    let Tally {
        histogram,
        non_2xx,
        errors,
        missed,
        first_error,
    } = tally;
    let rate = options.rate / variants as f64;
    let achieved = histogram.total as f64 / options.duration;
    let url = match label {
        Some(label) => format!("{} [{label}]", options.url),
        None => options.url.clone(),
    };
    let [p50, p90, p99, p999] = [50.0, 90.0, 99.0, 99.9].map(|p| histogram.percentile(p));
    eprintln!(
        "open_loop: {url} at {rate:.0}/s offered, {achieved:.0}/s answered ({} answers, {non_2xx} \
         not 2xx, {errors} errors, {missed} missed); µs p50 {p50} p90 {p90} p99 {p99} p99.9 {p999} \
         max {}",
        histogram.total, histogram.max
    );
    if let Some(error) = first_error {
        eprintln!("open_loop: first error: {error}");
    }
    let prefix = label.map(|label| format!("{label}\t")).unwrap_or_default();
    println!(
        "{prefix}{rate:.0}\t{achieved:.0}\t{}\t{non_2xx}\t{errors}\t{missed}\t{p50}\t{p90}\t{p99}\t\
         {p999}\t{}",
        histogram.total, histogram.max
    );
    histogram.total > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_a_bucket_that_holds_it_within_a_thousandth() {
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((0..40).flat_map(|e| [(1u64 << e) - 1, 1 << e, (1 << e) + 1]));
        values.extend([123_456, 9_999_999, 1 << 39]);
        for value in values {
            let index = Histogram::index(value);
            let highest = Histogram::highest(index);
            assert!(
                highest >= value,
                "{value} above its bucket's highest {highest}"
            );
            assert!(
                index == 0 || Histogram::highest(index - 1) < value,
                "{value} in too high a bucket"
            );
            assert!(
                (highest - value) as f64 <= value as f64 / 1024.0,
                "{value}: bucket too wide ({highest})"
            );
        }
        // Below 2,048 µs every microsecond has its own bucket.
        assert!((0..EXACT).all(|v| Histogram::highest(Histogram::index(v)) == v));
        // Indices are monotonic and the table is large enough for the largest value.
        assert!(Histogram::index((1 << MAX_EXPONENT) - 1) < Histogram::new().counts.len());
        assert_eq!(
            Histogram::index(u64::MAX),
            Histogram::index((1 << MAX_EXPONENT) - 1)
        );
    }

    #[test]
    fn percentiles_of_known_distributions() {
        let mut h = Histogram::new();
        assert_eq!(h.percentile(99.0), 0);
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 500);
        assert_eq!(h.percentile(99.0), 990);
        assert_eq!(h.percentile(99.9), 999);
        assert_eq!(h.percentile(100.0), 1000);
        assert_eq!(h.percentile(0.0), 1);
        // A tail of 1% at 50 ms: p99 stays in the body, p99.9 and max see the tail.
        let mut h = Histogram::new();
        for _ in 0..9900 {
            h.record(100);
        }
        for _ in 0..100 {
            h.record(50_000);
        }
        assert_eq!(h.percentile(99.0), 100);
        let p999 = h.percentile(99.9);
        assert!((50_000..=50_000 + 50_000 / 1024).contains(&p999), "{p999}");
        assert_eq!(h.max, 50_000);
        // A percentile is never reported above the largest value seen.
        let mut h = Histogram::new();
        h.record(10_001);
        assert_eq!(h.percentile(50.0), 10_001);
    }

    #[test]
    fn merged_histograms_are_one_histogram_of_all_values() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in (0..20_000).step_by(7) {
            if v % 2 == 0 {
                a.record(v)
            } else {
                b.record(v)
            }
            all.record(v);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn the_schedule_spreads_all_connections_evenly_at_the_total_rate() {
        let (connections, rate) = (7, 1000.0);
        let mut times: Vec<Duration> = (0..connections)
            .flat_map(|c| (0..100).map(move |k| due(c, k, connections, rate)))
            .collect();
        times.sort();
        for (n, time) in times.iter().enumerate() {
            let expected = n as f64 / rate;
            assert!(
                (time.as_secs_f64() - expected).abs() < 1e-9,
                "slot {n} at {time:?}"
            );
        }
        // One connection's own requests are connections / rate apart.
        let gap = due(3, 11, connections, rate) - due(3, 10, connections, rate);
        assert!((gap.as_secs_f64() - 0.007).abs() < 1e-9);
    }

    #[test]
    fn answer_heads_and_framing() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"), None);
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse_head(answer),
            Some(Ok((200, 38, Body::Length(5), false)))
        );
        let answer =
            b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_head(answer).unwrap().unwrap().2, Body::Chunked);
        assert!(parse_head(answer).unwrap().unwrap().3);
        assert_eq!(
            parse_head(b"HTTP/1.1 304 Not Modified\r\n\r\n")
                .unwrap()
                .unwrap()
                .2,
            Body::Length(0)
        );
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().is_err(),
            "no framing"
        );
        assert!(parse_head(b"garbage\r\n\r\n").unwrap().is_err());
    }

    #[test]
    fn chunked_bodies_complete_only_when_whole() {
        let body = b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nTrailer: v\r\n\r\nNEXT";
        let whole = body.len() - 4;
        assert_eq!(chunked_length(body), Ok(Some(whole)));
        for cut in 0..whole {
            assert_eq!(chunked_length(&body[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(chunked_length(b"0\r\n\r\n"), Ok(Some(5)));
        assert!(chunked_length(b"zz\r\n").is_err());
    }

    #[test]
    fn the_request_carries_the_target_host_and_headers() {
        let options = Options::parse_from([
            "open_loop",
            "http://127.0.0.1:8080/rs/x?a=1",
            "--rate",
            "100",
            "-H",
            "Authorization: Bearer abc",
        ]);
        let (address, request) = request_for(&options).unwrap();
        assert_eq!(address, "127.0.0.1:8080");
        assert_eq!(
            String::from_utf8(request).unwrap(),
            "GET /rs/x?a=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer abc\r\n\r\n"
        );
        let https = Options::parse_from(["open_loop", "https://example.com/", "--rate", "1"]);
        assert!(request_for(&https).is_err());
    }

    #[test]
    fn a_mix_interleaves_its_variants_evenly_across_the_schedule() {
        let (connections, variants) = (32, 3);
        let mut per_variant = vec![0u64; variants];
        let mut previous = None;
        for slot in 0..(connections as u64 * 30) {
            let (connection, k) = (
                (slot % connections as u64) as usize,
                slot / connections as u64,
            );
            let variant = variant_of(connection, k, connections, variants);
            // Consecutive slots of the schedule (1 / rate apart) take the variants in turn.
            if let Some(previous) = previous {
                assert_eq!(variant, (previous + 1) % variants);
            }
            previous = Some(variant);
            per_variant[variant] += 1;
        }
        assert_eq!(per_variant, vec![320; 3]);
    }

    #[test]
    fn mixed_requests_go_to_the_urls_host_with_their_own_path_and_header() {
        let options = Options::parse_from([
            "open_loop",
            "http://127.0.0.1:8080/open/",
            "--rate",
            "100",
            "-H",
            "Authorization: Bearer abc",
            "--label",
            "open",
            "--mix",
            "hs /hs/x Authorization: Bearer d e f",
            "--mix",
            "bare /plain",
        ]);
        let (address, variants) = requests_for(&options).unwrap();
        assert_eq!(address, "127.0.0.1:8080");
        let text: Vec<(String, String)> = variants
            .into_iter()
            .map(|(label, bytes)| (label, String::from_utf8(bytes).unwrap()))
            .collect();
        assert_eq!(text[0].0, "open");
        assert!(text[0].1.starts_with("GET /open/ HTTP/1.1\r\n"));
        assert_eq!(
            text[1],
            (
                "hs".to_string(),
                "GET /hs/x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer d e f\r\n\r\n"
                    .to_string()
            )
        );
        assert_eq!(
            text[2].1,
            "GET /plain HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        );
        for bad in ["lonely", "x nopath", "open /again"] {
            let mut wrong = options.clone();
            wrong.mixes = vec![bad.to_string()];
            assert!(requests_for(&wrong).is_err(), "{bad}");
        }
    }
}
