//! One issuer's key set and the policy of when to fetch it.
//!
//! - The keys are swapped in atomically ([`ArcSwapOption`]): a lookup takes no lock.
//! - A background task fetches them at start, then every refresh interval (a
//!   `Cache-Control: max-age` within bounds decides), and after a failure again with a growing
//!   delay; a request never waits for it.
//! - A `kid` that is not in the set asks for one refetch that starts after the request saw
//!   the `kid` (a fetch already under way may have begun before the key was published, so it
//!   is followed by one more): requests coalesce on the fetch asked for, and at most one such
//!   fetch is asked for per `minRefetch` window; requests wait for it up to `unknownKeyWait`.
//!   A `kid` still unknown after a successful fetch that began after it was seen is remembered
//!   as unknown for a while (the negative cache), so made-up `kid`s cost no fetch.
//! - A `kid` whose key is removed or replaced by a fetch is reported to the listener set with
//!   [`KeySet::on_keys_dropped`] (the verified-token cache drops the tokens it verified).
//! - When fetches fail, the last good set keeps serving up to `maxStale` (stale-if-error);
//!   after that, or when no set was ever fetched, the keys are unavailable (a 503, never a
//!   401: the token may be fine).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use tokio::sync::{watch, Notify};

use super::config::{IssuerSpec, JwksSource};
use super::fetch::{next_refresh, Document, FetchError, Fetcher};
use super::jwks::{parse_jwks, KeyMap, RemoteKey};

/// The most `kid`s the negative cache holds; beyond, expired ones are dropped, then all.
const MAX_UNKNOWN_KIDS: usize = 10_000;

/// What a lookup of a `kid` found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The key.
    Found(Arc<RemoteKey>),
    /// The `kid` is not the issuer's: it was not in the set a fetch just brought (a 401).
    Unknown,
    /// No usable key set: never fetched, or older than `maxStale` (a 503).
    Unavailable,
    /// Not in the set, and not known to be unknown: a refetch may find it.
    Fetch,
}

/// The outcome of the fetches so far, published after each one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Generation {
    /// Fetches completed (fetches run one at a time, so the last completed is fetch `count`).
    count: u64,
    /// Whether the last one succeeded.
    ok: bool,
}

/// The fetch schedule's state, behind a mutex never held across an await.
struct State {
    /// Fetches started so far; the one under way, if any, is fetch `started`.
    started: u64,
    /// A fetch is under way.
    in_flight: bool,
    /// A fetch is asked for and has not started yet (it starts after every request that
    /// asked for or joined it arrived).
    requested: bool,
    /// When the last fetch asked for by an unknown `kid` was asked for.
    last_demand: Option<Instant>,
    /// `kid`s a successful fetch did not have, until when they are refused without a fetch.
    unknown: HashMap<String, Instant>,
}

/// Called with the `kid`s whose keys a fetch removed or replaced.
pub type DroppedKeys = Box<dyn Fn(&[String]) + Send + Sync>;

/// Counters and gauges of one issuer (label: its configured issuer string).
pub struct IssuerMetrics {
    /// Fetches by issuer and outcome (`ok`, `network`, `http_status`, `too_large`,
    /// `discovery`, `invalid`, `no_usable_keys`, `too_many_keys`).
    pub fetches: prometheus::IntCounterVec,
    /// Keys held.
    pub keys: prometheus::IntGauge,
    /// Seconds since the key set was last fetched successfully (-1: never).
    pub age: prometheus::IntGauge,
    /// Tokens answered 503 because the keys were unavailable.
    pub unavailable: prometheus::IntCounter,
}

/// One issuer's keys.
pub struct KeySet {
    /// The issuer's settings.
    pub spec: IssuerSpec,
    keys: ArcSwapOption<KeyMap>,
    /// When the set was last fetched successfully: milliseconds after `born`, plus one (0:
    /// never).
    last_success: AtomicU64,
    born: Instant,
    state: Mutex<State>,
    generation: watch::Sender<Generation>,
    wake: Notify,
    dropped: std::sync::OnceLock<DroppedKeys>,
    /// Its metrics.
    pub metrics: IssuerMetrics,
}

impl KeySet {
    /// An empty key set for `spec`; [`KeySet::run`] fills it.
    pub fn new(spec: IssuerSpec, metrics: IssuerMetrics) -> KeySet {
        Self::after(spec, metrics, None)
    }

    /// A key set for `spec` that starts with the keys `previous` holds, and their age (the set
    /// a reload replaces, for the same settings: tokens keep verifying while [`KeySet::run`]
    /// fetches again); empty without one.
    pub fn after(spec: IssuerSpec, metrics: IssuerMetrics, previous: Option<&KeySet>) -> KeySet {
        let (keys, last_success, born) = match previous {
            Some(previous) => (
                ArcSwapOption::new(previous.keys.load_full()),
                previous.last_success.load(Ordering::Acquire),
                previous.born,
            ),
            None => (ArcSwapOption::empty(), 0, Instant::now()),
        };
        KeySet {
            spec,
            keys,
            last_success: AtomicU64::new(last_success),
            born,
            state: Mutex::new(State {
                started: 0,
                in_flight: false,
                // The background task fetches at once.
                requested: true,
                last_demand: None,
                unknown: HashMap::new(),
            }),
            generation: watch::channel(Generation::default()).0,
            wake: Notify::new(),
            dropped: std::sync::OnceLock::new(),
            metrics,
        }
    }

    /// The schedule's state. A panic while it was held leaves nothing half-changed (each use
    /// sets fields outright), so a poisoned lock is taken as it is.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long ago the set was last fetched successfully; `None` when never.
    pub fn age(&self) -> Option<Duration> {
        match self.last_success.load(Ordering::Acquire) {
            0 => None,
            at => Some(
                self.born
                    .elapsed()
                    .saturating_sub(Duration::from_millis(at - 1)),
            ),
        }
    }

    /// The key for `kid`, without waiting: see [`Lookup`].
    pub fn lookup(&self, kid: &str) -> Lookup {
        let keys = self.keys.load();
        let Some(keys) = keys.as_ref() else {
            return Lookup::Fetch;
        };
        if self.age().is_none_or(|age| age > self.spec.max_stale) {
            self.demand_fetch();
            return Lookup::Unavailable;
        }
        if let Some(key) = keys.get(kid) {
            return Lookup::Found(key.clone());
        }
        let state = self.state();
        match state.unknown.get(kid) {
            Some(until) if Instant::now() < *until => Lookup::Unknown,
            _ => Lookup::Fetch,
        }
    }

    /// Sets what is called with the `kid`s a fetch removes or replaces (once; later calls are
    /// ignored). `false` when a listener was already set.
    pub fn on_keys_dropped(&self, listener: DroppedKeys) -> bool {
        self.dropped.set(listener).is_ok()
    }

    /// Asks for a fetch now, without waiting for it, unless one is asked for already or was
    /// less than `minRefetch` ago: a set too old to use (the issuer was down past `maxStale`)
    /// is fetched again as soon as requests need it, not at the next scheduled fetch (which
    /// after failures backs off up to the refresh interval), so the issuer's tokens pass again
    /// within about `minRefetch` of its return.
    fn demand_fetch(&self) {
        let mut state = self.state();
        let limited = state
            .last_demand
            .is_some_and(|at| at.elapsed() < self.spec.min_refetch);
        if !state.requested && !limited {
            state.requested = true;
            state.last_demand = Some(Instant::now());
            self.wake.notify_one();
        }
    }

    /// For a `kid` the set lacks: waits, up to `unknownKeyWait`, for a fetch that starts after
    /// this call — the one already asked for, or one it asks for unless one was asked for less
    /// than `minRefetch` ago (a fetch under way began before the call, so it is followed by
    /// this one). Rate-limited, it waits for the fetch under way, if any, and remembers `kid`
    /// as unknown only when the last fetch succeeded and none is under way. Afterwards
    /// [`KeySet::lookup`] answers for good: the key, `Unknown` (remembered in the negative
    /// cache), or `Fetch` when no fresh fetch could say (the issuer is down or slow: the
    /// caller answers 503, or 401 when only a fetch that began before the call lacked it).
    pub async fn refetch(&self, kid: &str) {
        let mut receiver = self.generation.subscribe();
        let (wanted, authoritative) = {
            let mut state = self.state();
            let last = *receiver.borrow_and_update();
            let limited = state
                .last_demand
                .is_some_and(|at| at.elapsed() < self.spec.min_refetch);
            if state.requested {
                (state.started + 1, true)
            } else if !limited {
                state.requested = true;
                state.last_demand = Some(Instant::now());
                self.wake.notify_one();
                (state.started + 1, true)
            } else if state.in_flight {
                // Its answer may miss a key published after it began: never negative-cached.
                (state.started, false)
            } else {
                if last.ok && self.keys.load().is_some() {
                    self.remember_unknown(&mut state, kid);
                }
                return;
            }
        };
        let done = tokio::time::timeout(
            self.spec.unknown_key_wait,
            receiver.wait_for(|g| g.count >= wanted),
        )
        .await;
        let ok = match done {
            Ok(Ok(generation)) => generation.ok,
            _ => false,
        };
        let known = self
            .keys
            .load()
            .as_ref()
            .is_some_and(|k| k.contains_key(kid));
        if ok && !known && authoritative {
            self.remember_unknown(&mut self.state(), kid);
        }
    }

    /// Marks a fetch as started: the next fetch number.
    fn begin_fetch(&self) -> u64 {
        let mut state = self.state();
        state.requested = false;
        state.in_flight = true;
        state.started += 1;
        state.started
    }

    /// Marks fetch `number` as done, with its outcome, and wakes the requests waiting for it.
    fn finish_fetch(&self, number: u64, ok: bool) {
        let mut state = self.state();
        state.in_flight = false;
        self.generation.send_modify(|g| {
            g.count = number;
            g.ok = ok;
        });
        drop(state);
    }

    /// Records `kid` as unknown for `unknownKeyCache`, keeping the cache bounded.
    fn remember_unknown(&self, state: &mut State, kid: &str) {
        let now = Instant::now();
        if state.unknown.len() >= MAX_UNKNOWN_KIDS {
            state.unknown.retain(|_, until| *until > now);
            if state.unknown.len() >= MAX_UNKNOWN_KIDS {
                state.unknown.clear();
            }
        }
        let until = now + self.spec.unknown_key_cache;
        state.unknown.insert(kid.to_string(), until);
    }

    /// The background task: fetches now, then on schedule and on demand, forever.
    pub async fn run(self: Arc<Self>, fetcher: Fetcher) {
        let mut jwks_uri = match &self.spec.jwks {
            JwksSource::Uri(uri) => Some(uri.clone()),
            JwksSource::Discovery => None,
        };
        let mut failures: u32 = 0;
        loop {
            let number = self.begin_fetch();
            let outcome = self.fetch_once(&fetcher, &mut jwks_uri).await;
            let delay = match &outcome {
                Ok(max_age) => {
                    failures = 0;
                    next_refresh(*max_age, self.spec.min_refetch, self.spec.refresh_interval)
                }
                Err(_) => {
                    failures = failures.saturating_add(1);
                    retry_delay(failures, self.spec.min_refetch, self.spec.refresh_interval)
                }
            };
            self.finish_fetch(number, outcome.is_ok());
            self.sleep_unless_asked(delay).await;
        }
    }

    /// Sleeps for `delay`, or until a fetch is asked for (at once when one was asked for while
    /// the last fetch was under way). A wake-up without a fetch asked for is ignored.
    async fn sleep_unless_asked(&self, delay: Duration) {
        let deadline = tokio::time::Instant::now() + delay;
        loop {
            if self.state().requested {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = self.wake.notified() => {}
            }
        }
    }

    /// One fetch (discovery first when the JWKS URL is not known yet): the new set swapped in,
    /// or the old one kept. The document's `max-age`, or the outcome's label.
    async fn fetch_once(
        &self,
        fetcher: &Fetcher,
        jwks_uri: &mut Option<String>,
    ) -> Result<Option<Duration>, &'static str> {
        let result = self.fetch_document(fetcher, jwks_uri).await;
        let outcome = match result {
            Ok(document) => self.install(&document),
            Err(error) => {
                if matches!(self.spec.jwks, JwksSource::Discovery) {
                    // Discovered again next time: the issuer may have moved its keys.
                    *jwks_uri = None;
                }
                tracing::warn!(issuer = %self.spec.issuer, error = %error,
                    "cannot fetch the issuer's keys; the last good set keeps serving");
                Err(error.reason())
            }
        };
        let label = match &outcome {
            Ok(_) => "ok",
            Err(reason) => reason,
        };
        self.metrics
            .fetches
            .with_label_values(&[self.spec.issuer.as_str(), label])
            .inc();
        outcome
    }

    /// The JWKS document, discovering its URL first when needed.
    async fn fetch_document(
        &self,
        fetcher: &Fetcher,
        jwks_uri: &mut Option<String>,
    ) -> Result<Document, FetchError> {
        let uri = match jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = fetcher.discover(&self.spec.issuer).await?;
                *jwks_uri = Some(uri.clone());
                uri
            }
        };
        fetcher.get(&uri).await
    }

    /// Parses a fetched JWKS and swaps it in; a document that is not a JWKS or has no usable
    /// key is refused and the last good set kept.
    fn install(&self, document: &Document) -> Result<Option<Duration>, &'static str> {
        match parse_jwks(&document.body, &self.spec.algorithms) {
            Ok((keys, skipped)) => {
                for (kid, why) in skipped {
                    tracing::debug!(issuer = %self.spec.issuer, kid = %kid, why, "JWK skipped");
                }
                self.metrics.keys.set(keys.len() as i64);
                self.set_keys(keys);
                Ok(document.max_age)
            }
            Err(error) => {
                tracing::warn!(issuer = %self.spec.issuer, error = error.reason(),
                    "the issuer's JWKS is refused; the last good set keeps serving");
                Err(error.reason())
            }
        }
    }

    /// Swaps in `keys` as fetched now, then reports the `kid`s whose key is gone or was
    /// replaced (see [`KeySet::on_keys_dropped`]).
    pub fn set_keys(&self, keys: KeyMap) {
        let old = self.keys.swap(Some(Arc::new(keys)));
        let at = self.born.elapsed().as_millis() as u64 + 1;
        self.last_success.store(at, Ordering::Release);
        let Some(old) = old else { return };
        let new = self.keys.load();
        let dropped: Vec<String> = old
            .iter()
            .filter(|(kid, key)| {
                new.as_ref()
                    .and_then(|n| n.get(*kid))
                    .is_none_or(|now| now.fingerprint != key.fingerprint)
            })
            .map(|(kid, _)| kid.clone())
            .collect();
        if !dropped.is_empty() {
            tracing::info!(issuer = %self.spec.issuer, kids = ?dropped,
                "keys removed or replaced by the issuer; tokens they verified are checked again");
            if let Some(listener) = self.dropped.get() {
                listener(&dropped);
            }
        }
    }

    /// Whether `kid` is still in a usable key set: `Found` with its key, `Unavailable` when
    /// the set is too old (or was never fetched), otherwise `Unknown` (no such key now).
    pub fn holds(&self, kid: &str) -> Lookup {
        let keys = self.keys.load();
        let Some(keys) = keys.as_ref() else {
            self.demand_fetch();
            return Lookup::Unavailable;
        };
        if self.age().is_none_or(|age| age > self.spec.max_stale) {
            self.demand_fetch();
            return Lookup::Unavailable;
        }
        keys.get(kid)
            .map_or(Lookup::Unknown, |key| Lookup::Found(key.clone()))
    }
}

/// The delay before the next fetch after `failures` failures in a row: the rate-limit window,
/// doubling, never past the refresh interval, and at least a second.
pub fn retry_delay(failures: u32, window: Duration, interval: Duration) -> Duration {
    let doubled = window.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(interval).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn spec(min_refetch: Duration, max_stale: Duration) -> IssuerSpec {
        IssuerSpec {
            issuer: "https://login.example.com".into(),
            jwks: JwksSource::Uri("https://login.example.com/keys".into()),
            algorithms: vec![crate::auth::keys::KeyAlgorithm::ES256],
            audiences: vec![],
            roles_claim: "roles".into(),
            leeway_seconds: 0,
            refresh_interval: Duration::from_secs(300),
            min_refetch,
            unknown_key_cache: Duration::from_secs(60),
            max_stale,
            timeout: Duration::from_secs(1),
            unknown_key_wait: Duration::from_millis(500),
            ca_file: None,
        }
    }

    fn metrics() -> IssuerMetrics {
        let m = crate::observe::metrics::Metrics::new();
        IssuerMetrics {
            fetches: m.issuer_fetches.clone(),
            keys: m.issuer_keys.with_label_values(&["t"]),
            age: m.issuer_key_age.with_label_values(&["t"]),
            unavailable: m.issuer_unavailable.with_label_values(&["t"]),
        }
    }

    /// A key set holding an empty key map, as fetched once, and a stand-in for the
    /// background task that runs a successful fetch whenever one is asked for, counting them;
    /// each fetch brings the keys in `served` (none when empty).
    fn fetched_set(
        min_refetch: Duration,
    ) -> (Arc<KeySet>, Arc<AtomicUsize>, Arc<Mutex<Option<KeyMap>>>) {
        let set = Arc::new(KeySet::new(
            spec(min_refetch, Duration::from_secs(60)),
            metrics(),
        ));
        let first = set.begin_fetch();
        set.set_keys(KeyMap::new());
        set.finish_fetch(first, true);
        let fetches = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(Mutex::new(None));
        let (task_set, count, keys) = (set.clone(), fetches.clone(), served.clone());
        tokio::spawn(async move {
            loop {
                task_set.sleep_unless_asked(Duration::from_secs(3600)).await;
                // One fetch at a time, as the background task runs them.
                while task_set.state().in_flight {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let number = task_set.begin_fetch();
                count.fetch_add(1, Ordering::SeqCst);
                let map = keys.lock().expect("lock").clone().unwrap_or_default();
                task_set.set_keys(map);
                task_set.finish_fetch(number, true);
            }
        });
        (set, fetches, served)
    }

    /// A key map with one ES256 key under `kid`.
    fn one_key(kid: &str) -> KeyMap {
        let spec = crate::config::KeySpec {
            id: uuid::Uuid::new_v4(),
            name: "k".into(),
            algorithm: crate::auth::keys::KeyAlgorithm::ES256,
            source: crate::config::KeySource::Generate,
        };
        let material = crate::auth::keys::generate_material(&spec, 0).expect("generate");
        let key = crate::auth::keys::SigningKey::from_spec(&spec, Some(&material)).expect("key");
        let mut jwk = key.public().expect("public").jwk.clone();
        jwk["kid"] = serde_json::json!(kid);
        let body = serde_json::to_vec(&serde_json::json!({ "keys": [jwk] })).expect("json");
        parse_jwks(&body, &[crate::auth::keys::KeyAlgorithm::ES256])
            .expect("usable")
            .0
    }

    #[tokio::test]
    async fn a_fetch_under_way_when_the_kid_is_seen_is_followed_by_one_more() {
        let (set, fetches, served) = fetched_set(Duration::from_secs(10));
        // A fetch begins (the background schedule's), then the issuer publishes kid "new",
        // then a request sees "new": the fetch under way cannot answer for it.
        let early = set.begin_fetch();
        *served.lock().expect("lock") = Some(one_key("new"));
        let waiting = {
            let set = set.clone();
            tokio::spawn(async move { set.refetch("new").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        set.set_keys(KeyMap::new());
        set.finish_fetch(early, true);
        waiting.await.expect("refetch");
        assert!(matches!(set.lookup("new"), Lookup::Found(_)), "follow-up");
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "one follow-up fetch");
        // Within the window, a request joining a fetch under way (begun before it) gets that
        // fetch's answer but never a negative-cache entry from it.
        let again = set.begin_fetch();
        let joining = {
            let set = set.clone();
            tokio::spawn(async move { set.refetch("later").await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        set.finish_fetch(again, true);
        joining.await.expect("refetch");
        assert!(
            matches!(set.lookup("later"), Lookup::Fetch),
            "not remembered"
        );
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "rate limited");
    }

    #[tokio::test]
    async fn a_set_after_another_starts_with_its_keys_and_their_age() {
        let before = KeySet::new(
            spec(Duration::from_secs(1), Duration::from_secs(60)),
            metrics(),
        );
        before.set_keys(one_key("a"));
        let after = KeySet::after(
            spec(Duration::from_secs(1), Duration::from_secs(60)),
            metrics(),
            Some(&before),
        );
        assert!(matches!(after.lookup("a"), Lookup::Found(_)));
        let (old, new) = (
            before.age().expect("fetched"),
            after.age().expect("inherited"),
        );
        assert!(new >= old && new - old < Duration::from_secs(1));
        // Without one: empty, never fetched.
        let fresh = KeySet::after(
            spec(Duration::from_secs(1), Duration::from_secs(60)),
            metrics(),
            None,
        );
        assert!(matches!(fresh.lookup("a"), Lookup::Fetch));
        assert!(fresh.age().is_none());
    }

    #[tokio::test]
    async fn removed_and_replaced_keys_are_reported() {
        let set = KeySet::new(
            spec(Duration::from_secs(1), Duration::from_secs(60)),
            metrics(),
        );
        let reported = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = reported.clone();
        assert!(set.on_keys_dropped(Box::new(move |kids: &[String]| {
            sink.lock().expect("lock").extend(kids.iter().cloned())
        })));
        let mut keys = one_key("a");
        keys.extend(one_key("b"));
        set.set_keys(keys.clone());
        assert!(reported.lock().expect("lock").is_empty(), "first set");
        // The same keys again: nothing dropped.
        set.set_keys(keys.clone());
        assert!(reported.lock().expect("lock").is_empty(), "unchanged");
        // "a" removed, "b" replaced by other material under the same kid.
        set.set_keys(one_key("b"));
        let mut got = reported.lock().expect("lock").clone();
        got.sort();
        assert_eq!(got, ["a", "b"]);
        assert!(matches!(set.holds("a"), Lookup::Unknown));
        assert!(matches!(set.holds("b"), Lookup::Found(_)));
    }

    #[tokio::test]
    async fn unknown_kids_cost_one_fetch_per_window_and_are_then_remembered() {
        let (set, fetches, _) = fetched_set(Duration::from_millis(300));
        assert!(matches!(set.lookup("a"), Lookup::Fetch));
        set.refetch("a").await;
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert!(matches!(set.lookup("a"), Lookup::Unknown), "negative cache");
        // A flood of other kids inside the window: no fetch, each remembered as unknown.
        for i in 0..50 {
            let kid = format!("garbage-{i}");
            assert!(matches!(set.lookup(&kid), Lookup::Fetch));
            set.refetch(&kid).await;
            assert!(matches!(set.lookup(&kid), Lookup::Unknown));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "rate limited");
        tokio::time::sleep(Duration::from_millis(350)).await;
        set.refetch("b").await;
        assert_eq!(fetches.load(Ordering::SeqCst), 2, "a new window");
    }

    #[tokio::test]
    async fn a_stale_set_is_unavailable_and_a_failed_refetch_is_not_an_unknown_kid() {
        let set = Arc::new(KeySet::new(
            spec(Duration::from_secs(10), Duration::from_millis(100)),
            metrics(),
        ));
        // Never fetched: a refetch is due; the background task never answers here, so the
        // wait ends at its deadline and nothing is remembered as unknown.
        assert!(matches!(set.lookup("a"), Lookup::Fetch));
        set.state().requested = false;
        let started = Instant::now();
        set.refetch("a").await;
        assert!(started.elapsed() >= Duration::from_millis(450));
        assert!(matches!(set.lookup("a"), Lookup::Fetch));
        set.set_keys(KeyMap::new());
        assert!(matches!(set.lookup("a"), Lookup::Fetch));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            matches!(set.lookup("a"), Lookup::Unavailable),
            "older than maxStale"
        );
    }

    #[test]
    fn retries_back_off_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(retry_delay(1, s(10), s(300)), s(10));
        assert_eq!(retry_delay(2, s(10), s(300)), s(20));
        assert_eq!(retry_delay(5, s(10), s(300)), s(160));
        assert_eq!(retry_delay(6, s(10), s(300)), s(300));
        assert_eq!(retry_delay(60, s(10), s(300)), s(300));
        assert_eq!(retry_delay(1, Duration::ZERO, s(300)), s(1));
    }
}
