//! Transparent refresh at the edge: an expired (or missing) access token plus a
//! `refresh_token` cookie is exchanged through the same refresh logic as
//! `POST /api/jwt/refresh`, and the request goes on with the new token.
//!
//! Parallel requests presenting the same refresh token cause exactly one exchange: the first
//! runs it, the others wait for its result (one in flight per token), and a request that
//! arrived before the exchange completed gets its result too, however late it is looked at (it
//! was sent with the old value before any answer could carry the new one). A request that
//! arrived after it, presenting a value a one-time-use rotation retired, gets the same result
//! only as long as the refresh rules allow it (the grace period or the opt-in race window, see
//! `RefreshOutcome::replay_until`); otherwise it goes to the store, which refuses it as a reuse.
//! A `Reusable` token's result is kept [`MIN_RETAIN`]. Across nodes, and after a restart, the
//! store's record of the rotation answers within the grace period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse_plugin_api::store::StoreError;
use gatehouse_plugin_api::{Clock, RotationLedger, Store, TokenService, VerifiedClaims};
use gatehouse_refresh::{
    exchange_refresh_token, exchange_refresh_token_for_application, RefreshEnv, RefreshError,
};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::auth::cached::CachedToken;
use crate::auth::tokens::Tokens;
use crate::observe::metrics::Metrics;

/// How long the outcome of a refresh that retired nothing (`Reusable`) is kept for requests that
/// arrive after it completed.
pub const MIN_RETAIN: Duration = Duration::from_secs(2);

/// The outcome of a refresh, shared by every request that presented the same token.
#[derive(Debug)]
pub struct Refreshed {
    /// The new access token.
    pub access_token: String,
    /// Its expiry (ms).
    pub access_expiration_ms: i64,
    /// The refresh token to keep (the same value unless it rotated).
    pub refresh_token: String,
    /// Its expiry (ms).
    pub refresh_expiration_ms: i64,
    /// Whether the refresh cookie must be set again (rotated, or a sliding window moved).
    pub set_refresh_cookie: bool,
    /// The new token as the edge reads a verified token: the compact form the token cache
    /// holds (cached when it was signed, so this is a lookup, not a verification).
    pub claims: Arc<CachedToken>,
    /// The refresh token's application (`None`: none).
    pub application_id: Option<Uuid>,
}

type Shared = Arc<OnceCell<Result<Arc<Refreshed>, RefreshError>>>;

/// Held by each request waiting on an in-flight entry: when the last one lets go (done or
/// dropped) and the entry is still `cell`, the entry leaves the map.
struct LastOut<'a> {
    map: &'a Mutex<HashMap<String, Shared>>,
    value: &'a str,
    cell: &'a Shared,
}

impl Drop for LastOut<'_> {
    fn drop(&mut self) {
        let mut map = crate::observe::poison::lock_or_take_over(self.map, "refresh in-flight map");
        // Two holders: the map's and this request's own clone.
        if map
            .get(self.value)
            .is_some_and(|held| Arc::ptr_eq(held, self.cell) && Arc::strong_count(held) == 2)
        {
            map.remove(self.value);
        }
    }
}

/// What a request presents for a refresh, and when.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRequest<'a> {
    /// The refresh token value presented.
    pub value: &'a str,
    /// The client's address, recorded on the token's device metadata.
    pub client_ip: Option<&'a str>,
    /// When the request arrived (its header was read).
    pub arrived: Instant,
    /// The route's application (`None`: the route has none).
    pub application: Option<Uuid>,
}

/// A completed refresh, kept for the requests that overlapped it.
#[derive(Clone)]
struct Recent {
    /// Its outcome.
    outcome: Arc<Refreshed>,
    /// When it completed: a request that arrived before then overlapped it.
    completed: Instant,
    /// Until when the refresh rules let any later request have it too (the grace period or
    /// the race window; a `Reusable` token's [`MIN_RETAIN`]); `None`: no later request.
    replay_until: Option<Instant>,
}

impl Recent {
    /// True when a request that `arrived` then may have this outcome `now`: it arrived before
    /// the refresh completed (it really overlapped it: sent with the old value before any answer
    /// could carry the new one), or the rules still allow a replay.
    fn serves(&self, arrived: Instant, now: Instant) -> bool {
        arrived <= self.completed || self.replay_until.is_some_and(|until| now < until)
    }
}

/// Exchanges refresh tokens for the proxy, coalescing concurrent requests.
pub struct Refresher {
    store: Arc<dyn Store>,
    tokens: Arc<Tokens>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    /// The race window (ms) of one-time-use rotations.
    race_window_ms: i64,
    /// The process's rotations under way or unconfirmed.
    rotations: Arc<RotationLedger>,
    /// Exchanges under way, shared with the refresher a reload replaces this one by.
    in_flight: Arc<Mutex<HashMap<String, Shared>>>,
    /// The application of live refresh-token values an exchange recently refused for another
    /// route's application (`None`: no application).
    applications: moka::sync::Cache<String, Option<Uuid>>,
    /// Recent outcomes by the refresh token value presented, with the instant they lapse.
    recent: moka::sync::Cache<String, Recent>,
}

impl Refresher {
    /// A refresher over the store and token service.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Arc<Tokens>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        race_window_ms: i64,
        rotations: Arc<RotationLedger>,
    ) -> Self {
        Refresher {
            store,
            tokens,
            clock,
            metrics,
            race_window_ms,
            rotations,
            in_flight: Arc::default(),
            applications: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
            recent: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(86_400))
                .build(),
        }
    }

    /// True when `refresh_token` is still a live value in the store (a read failure counts as
    /// not: the store's own path then answers).
    async fn still_current(&self, refresh_token: &str) -> bool {
        matches!(
            self.store.find_refresh_token(refresh_token).await,
            Ok(Some(_))
        )
    }

    /// The refresher a reload puts in this one's place: over the new store view (its
    /// tenants and applications), token service and race window, sharing the exchanges under
    /// way and the recent outcomes, so parallel requests on either side of the reload still
    /// make one exchange.
    pub fn succeeded_by(
        &self,
        store: Arc<dyn Store>,
        tokens: Arc<Tokens>,
        race_window_ms: i64,
    ) -> Refresher {
        Refresher {
            store,
            tokens,
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
            race_window_ms,
            rotations: self.rotations.clone(),
            in_flight: self.in_flight.clone(),
            applications: self.applications.clone(),
            recent: self.recent.clone(),
        }
    }

    /// The map of exchanges in flight. A panic while it was held cannot leave it half-changed
    /// (each use is one insert or one remove), so a poisoned lock is taken over (logged once as
    /// an internal error) rather than turning every later refresh into an error.
    fn in_flight_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Shared>> {
        crate::observe::poison::lock_or_take_over(&self.in_flight, "refresh in-flight map")
    }

    /// The application of `value` (`Some(None)`: none) when an exchange for a route refused it
    /// as another application's within the last 5 minutes: no store read. The application of
    /// a value never changes.
    fn known_holder(&self, value: &str) -> Option<Option<Uuid>> {
        self.applications.get(value)
    }

    /// Remembers that the answer to a rotation that retired `value` never reached its client:
    /// the client still holds `value`, and one retry with it within
    /// [`gatehouse_refresh::UNCONFIRMED_RETRY_MS`] gets the rotation's outcome, on this node
    /// (as for a rotation whose commit the store did not confirm). Never a second one.
    pub fn mark_undelivered(&self, value: &str) {
        let now = self.clock.now_millis();
        self.rotations.mark_unconfirmed(
            value,
            now.saturating_add(gatehouse_refresh::UNCONFIRMED_RETRY_MS),
            now,
        );
    }

    /// [`Self::refresh`], bounded in time: a refresh not done by `deadline` (the request's
    /// arrival plus `api.timeLimitSeconds`, the API's own bound) is abandoned there and is a
    /// [`RefreshError::Store`] (a 503 with `Retry-After`, cookies kept). Abandoned before its
    /// rotation was sent to the store, it wrote nothing (the value stays live); abandoned while
    /// the store had not answered the rotation, the value is marked unconfirmed, so the
    /// client's one retry with it within [`gatehouse_refresh::UNCONFIRMED_RETRY_MS`] gets the
    /// rotation's outcome, exactly as for an API refresh over its time limit. A signature that
    /// is already running on the signing pool finishes there first (its result is dropped).
    pub async fn refresh_within(
        &self,
        deadline: Instant,
        request: RefreshRequest<'_>,
    ) -> Result<Arc<Refreshed>, RefreshError> {
        let started = Instant::now();
        let refresh = self.refresh(request);
        match tokio::time::timeout_at(deadline.into(), refresh).await {
            Ok(result) => result,
            Err(_) => {
                self.count("failed", started);
                tracing::warn!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "transparent refresh over the time limit: answered 503, abandoned"
                );
                Err(RefreshError::Store(StoreError::Unavailable(
                    "the refresh did not complete within the time limit".into(),
                )))
            }
        }
    }

    /// Exchanges the request's `value` for a request that `arrived` at that instant, or joins
    /// the exchange already running for it, or returns the outcome of one that completed after
    /// the request arrived (the two overlapped) or that the refresh rules still let it replay.
    /// `client_ip` is recorded on the token's device metadata.
    ///
    /// With an `application` (the route's), a live value of another application (or of none)
    /// is not exchanged: exchanging it here would use it up (one-time use) for a token the
    /// route refuses, logging its owner out. That is [`RefreshError::OtherApplication`],
    /// decided on the exchange's one store read (or on an outcome or a read of the last 5
    /// minutes), never counted as a refresh.
    pub async fn refresh(
        &self,
        request: RefreshRequest<'_>,
    ) -> Result<Arc<Refreshed>, RefreshError> {
        let RefreshRequest {
            value,
            client_ip,
            arrived,
            application,
        } = request;
        let started = Instant::now();
        let other = |holder: Option<Uuid>| {
            application
                .filter(|app| holder != Some(*app))
                .map(|_| RefreshError::OtherApplication(holder))
        };
        if let Some(other) = self.known_holder(value).and_then(&other) {
            return Err(other);
        }
        if let Some(recent) = self.recent.get(value) {
            if let Some(other) = other(recent.outcome.application_id) {
                return Err(other);
            }
            // Served only while its access token still verifies: a revocation since (of the
            // session, user or application) ends it at once, and a key a reload removed is
            // never handed out again.
            // A replay after the exchange (not a request that overlapped it) is served only while
            // the refresh token it hands out is still the live one: once that value has been
            // rotated in turn, on this node or another, the presented value is a reuse, which
            // the store's path refuses (and revokes, as the policy says).
            let replay = arrived > recent.completed;
            if recent.serves(arrived, started)
                && (!replay || self.still_current(&recent.outcome.refresh_token).await)
            {
                if let Ok(verified) = self.tokens.verify(&recent.outcome.access_token) {
                    self.count("grace", started);
                    return Ok(self.read_now(&recent.outcome, &verified));
                }
                if arrived <= recent.completed {
                    return self.rederive(value, client_ip, application, started).await;
                }
            }
        }
        // Ends: a round that ran no exchange for this request's application was run by a request
        // that read the applications cache before the value's holder was recorded there, and
        // there are only finitely many of those.
        loop {
            let (result, ran_here) = self.exchange_once(value, client_ip, application).await;
            let result = match result {
                Ok(refreshed) => match other(refreshed.application_id) {
                    // Another route's exchange of a value of another application than this
                    // route's: not for this request.
                    Some(other) => return Err(other),
                    // Joined an exchange run under another configuration (a reload since
                    // removed or replaced its key) or revoked since: not handed out as it is.
                    None if !ran_here => match self.tokens.verify(&refreshed.access_token) {
                        Ok(verified) => Ok(self.read_now(&refreshed, &verified)),
                        Err(_) => {
                            return self.rederive(value, client_ip, application, started).await
                        }
                    },
                    None => Ok(refreshed),
                },
                // Not an exchange: refused for another route's application, and this route's
                // is the value's (or this route has none): run this request's own.
                Err(RefreshError::OtherApplication(holder)) if other(holder).is_none() => continue,
                Err(RefreshError::OtherApplication(holder)) => {
                    return Err(RefreshError::OtherApplication(holder))
                }
                Err(e) => Err(e),
            };
            let label = match (&result, ran_here) {
                (Ok(_), true) => "done",
                (Ok(_), false) => "coalesced",
                (Err(_), _) => "failed",
            };
            self.count(label, started);
            return result;
        }
    }

    /// `outcome` with its new token's claims read as this refresher's token service reads
    /// them (`verified`, the new token's full claims): an outcome made before a reload holds
    /// them as the previous configuration's routes read them (which claims are rendered for
    /// headers and checks), and the current routes would take a claim they forward or check
    /// for the first time as missing.
    fn read_now(&self, outcome: &Refreshed, verified: &VerifiedClaims) -> Arc<Refreshed> {
        Arc::new(Refreshed {
            access_token: outcome.access_token.clone(),
            access_expiration_ms: outcome.access_expiration_ms,
            refresh_token: outcome.refresh_token.clone(),
            refresh_expiration_ms: outcome.refresh_expiration_ms,
            set_refresh_cookie: outcome.set_refresh_cookie,
            claims: self.tokens.compact(verified),
            application_id: outcome.application_id,
        })
    }

    /// Runs the exchange of `value` for `application`, or joins the one in flight (which may be
    /// another route's). Returns its result and whether it ran here.
    async fn exchange_once(
        &self,
        value: &str,
        client_ip: Option<&str>,
        application: Option<Uuid>,
    ) -> (Result<Arc<Refreshed>, RefreshError>, bool) {
        let cell = self
            .in_flight_map()
            .entry(value.to_string())
            .or_default()
            .clone();
        // A request dropped while it waits (its client went away, its time ran out) takes the
        // entry with it when nobody else waits on it, so abandoned values do not pile up.
        let _last_out = LastOut {
            map: &self.in_flight,
            value,
            cell: &cell,
        };
        let mut ran_here = false;
        let result = cell
            .get_or_init(|| {
                ran_here = true;
                self.exchange(value, client_ip, application)
            })
            .await
            .clone();
        if ran_here {
            self.in_flight_map().remove(value);
        }
        (result, ran_here)
    }

    /// The outcome of an exchange this request overlapped (it joined it, or arrived before it
    /// completed) whose access token this request's configuration does not accept: a reload
    /// removed or replaced its key since, or a revocation ended its session. Derived again from
    /// the store under this configuration, as a request overlapping this node's rotation of
    /// `value` (which it did): a value the exchange retired gets that rotation's refresh token
    /// with an access token the token service verifies now (a fresh one for the same session
    /// when the recorded one no longer verifies); a revoked session is refused. Not coalesced:
    /// the exchange in flight for `value` may be the one whose outcome is not accepted here.
    async fn rederive(
        &self,
        value: &str,
        client_ip: Option<&str>,
        application: Option<Uuid>,
        started: Instant,
    ) -> Result<Arc<Refreshed>, RefreshError> {
        let _overlapping = self.rotations.begin_rotation(value);
        let result = self
            .exchange(value, client_ip, application)
            .await
            .and_then(|refreshed| match application {
                Some(app) if refreshed.application_id != Some(app) => {
                    Err(RefreshError::OtherApplication(refreshed.application_id))
                }
                _ => Ok(refreshed),
            });
        let label = if result.is_ok() {
            "coalesced"
        } else {
            "failed"
        };
        self.count(label, started);
        result
    }

    /// Counts a refresh with its `outcome` and the time since `started`.
    fn count(&self, outcome: &str, started: Instant) {
        self.metrics.refreshes.with_label_values(&[outcome]).inc();
        self.metrics
            .refresh_duration
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
    }

    /// One exchange of `value` (for a route of `application`, when given), its outcome kept
    /// for the requests that overlap it.
    async fn exchange(
        &self,
        value: &str,
        client_ip: Option<&str>,
        application: Option<Uuid>,
    ) -> Result<Arc<Refreshed>, RefreshError> {
        let env = RefreshEnv {
            store: self.store.as_ref(),
            tokens: self.tokens.as_ref(),
            clock: self.clock.as_ref(),
            race_window_ms: self.race_window_ms,
            rotations: &self.rotations,
        };
        let outcome = match application {
            Some(application) => {
                exchange_refresh_token_for_application(env, value, client_ip, application).await
            }
            None => exchange_refresh_token(env, value, client_ip).await,
        };
        let outcome = outcome.inspect_err(|e| {
            if let RefreshError::OtherApplication(holder) = e {
                self.applications.insert(value.to_string(), *holder);
            }
        })?;
        let retain = retention(
            outcome.rotated,
            outcome.replay_until,
            self.clock.now_millis(),
        );
        let claims = self
            .tokens
            .verify_at_edge(outcome.access_token.token.as_bytes())
            .await
            .map_err(RefreshError::Token)?;
        let refreshed = Arc::new(Refreshed {
            access_token: outcome.access_token.token,
            access_expiration_ms: outcome.access_token.expiration_instant,
            refresh_token: outcome.refresh_token.token,
            refresh_expiration_ms: outcome.refresh_token.expiration_instant,
            set_refresh_cookie: outcome.rotated || outcome.policy.slides(),
            application_id: outcome.refresh_token.application_id,
            claims,
        });
        let completed = Instant::now();
        self.recent.insert(
            value.to_string(),
            Recent {
                outcome: refreshed.clone(),
                completed,
                replay_until: retain.map(|retain| completed + retain),
            },
        );
        Ok(refreshed)
    }
}

/// How long an outcome may answer later requests presenting the same value, from `now_ms`:
/// [`MIN_RETAIN`] when nothing was retired (`rotated` false); for a retired value, what is left
/// until `replay_until` (inclusive), the last instant the refresh rules allow its reuse (`None`:
/// not at all, and then neither does the cache).
fn retention(rotated: bool, replay_until: Option<i64>, now_ms: i64) -> Option<Duration> {
    if !rotated {
        return Some(MIN_RETAIN);
    }
    let left = replay_until?.saturating_sub(now_ms);
    (left >= 0).then(|| Duration::from_millis(left as u64 + 1))
}

impl super::Gateway {
    /// In the logging phase: a rotation whose answer never reached the client (it went away,
    /// the write failed) leaves the client holding the retired value, so one retry with it may
    /// have the outcome (see [`Refresher::mark_undelivered`]).
    pub(super) fn note_undelivered_rotation(
        &self,
        session: &pingora::proxy::Session,
        e: Option<&pingora::Error>,
        ctx: &super::RequestContext,
    ) {
        if let Some(retired) = ctx.retired() {
            let undelivered = session.response_written().is_none()
                || e.is_some_and(|e| matches!(e.esource(), pingora::ErrorSource::Downstream));
            if undelivered {
                self.refresher.mark_undelivered(retired);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_value_is_answered_from_memory_only_while_the_rules_allow_it() {
        // grace period 0 and no race window: never (true overlap is the in-flight cell)
        assert_eq!(retention(true, None, 1_000), None);
        // what is left of the grace period, to its inclusive end
        assert_eq!(
            retention(true, Some(5_000), 1_000),
            Some(Duration::from_millis(4_001))
        );
        assert_eq!(
            retention(true, Some(1_000), 1_000),
            Some(Duration::from_millis(1))
        );
        assert_eq!(retention(true, Some(999), 1_000), None, "already over");
        // nothing retired (Reusable): a short cache of the same answer
        assert_eq!(retention(false, None, 1_000), Some(MIN_RETAIN));
    }

    #[test]
    fn an_in_flight_entry_leaves_the_map_with_its_last_waiter_done_or_dropped() {
        let map: Mutex<HashMap<String, Shared>> = Mutex::default();
        {
            // As in `exchange_once`: each waiter's clone outlives its guard.
            let first = map.lock().unwrap().entry("v".into()).or_default().clone();
            let _first = LastOut {
                map: &map,
                value: "v",
                cell: &first,
            };
            {
                let joiner = map.lock().unwrap().entry("v".into()).or_default().clone();
                let _joiner = LastOut {
                    map: &map,
                    value: "v",
                    cell: &joiner,
                };
            }
            assert!(map.lock().unwrap().contains_key("v"), "another still waits");
        }
        assert!(
            map.lock().unwrap().is_empty(),
            "the last waiter took it along"
        );
        // An entry that is no longer this request's cell stays.
        let old = map.lock().unwrap().entry("v".into()).or_default().clone();
        map.lock().unwrap().insert("v".into(), Shared::default());
        drop(LastOut {
            map: &map,
            value: "v",
            cell: &old,
        });
        assert!(map.lock().unwrap().contains_key("v"));
    }
}
