//! The key sets of issuers the plugins name at run time (an OpenID Connect provider's ID
//! tokens): the host's [`RemoteKeys`] port.
//!
//! Each `jwks_uri` gets a [`KeySet`] on first use, with the trusted issuers' fetch policy and
//! defaults (background refresh, one coalesced and rate-limited refetch on an unknown `kid`,
//! negative cache, stale-if-error) and their metrics, labelled by issuer. At most
//! [`MAX_SETS`] are kept: one more evicts the least recently used (its background task
//! stops). A set whose issuer or algorithms change is replaced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_plugin_api::remote::{RemoteKeyError, RemoteKeys};
use gatehouse_plugin_api::tokens::TokenError;
use serde_json::{Map, Value};

use super::config::{self, IssuerSpec, JwksSource};
use super::fetch::Fetcher;
use super::keyset::{IssuerMetrics, KeySet, Lookup};
use crate::auth::keys::{KeyAlgorithm, TokenHeader};
use crate::observe::metrics::Metrics;

/// The most key sets kept at once.
pub const MAX_SETS: usize = 64;

/// One key set and its background task.
struct Entry {
    set: Arc<KeySet>,
    task: tokio::task::AbortHandle,
    last_used: Instant,
}

/// The on-demand key sets, by `jwks_uri`.
pub struct RemoteKeySets {
    sets: Mutex<HashMap<String, Entry>>,
    fetcher: Fetcher,
    metrics: Arc<Metrics>,
}

impl RemoteKeySets {
    /// An empty registry whose sets fetch with `fetcher` and count in `metrics`.
    pub fn new(fetcher: Fetcher, metrics: Arc<Metrics>) -> RemoteKeySets {
        RemoteKeySets {
            sets: Mutex::new(HashMap::new()),
            fetcher,
            metrics,
        }
    }

    /// How many key sets are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no key set is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Each use replaces entries whole: a panic while held leaves nothing half-changed.
        self.sets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key set of `jwks_uri` for `issuer` and `algorithms`: the one held, else a new one
    /// whose background task starts now (on the calling runtime). Evicts the least recently
    /// used set when [`MAX_SETS`] are held.
    fn set_for(&self, issuer: &str, jwks_uri: &str, algorithms: &[KeyAlgorithm]) -> Arc<KeySet> {
        let mut sets = self.lock();
        if let Some(entry) = sets.get_mut(jwks_uri) {
            if entry.set.spec.issuer == issuer && entry.set.spec.algorithms == algorithms {
                entry.last_used = Instant::now();
                return entry.set.clone();
            }
        }
        if let Some(old) = sets.remove(jwks_uri) {
            self.retire(old);
        }
        if sets.len() >= MAX_SETS {
            let oldest = sets
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(uri, _)| uri.clone());
            if let Some(entry) = oldest.and_then(|uri| sets.remove(&uri)) {
                self.retire(entry);
            }
        }
        let set = Arc::new(KeySet::new(
            spec(issuer, jwks_uri, algorithms),
            IssuerMetrics {
                fetches: self.metrics.issuer_fetches.clone(),
                keys: self.metrics.issuer_keys.with_label_values(&[issuer]),
                age: self.metrics.issuer_key_age.with_label_values(&[issuer]),
                unavailable: self.metrics.issuer_unavailable.with_label_values(&[issuer]),
            },
        ));
        if jwks_uri.starts_with("http://") {
            tracing::warn!(issuer = %issuer, url = %jwks_uri,
                "keys of an identity provider are fetched over plain http: anyone on the path can swap them (use https outside tests and private networks)");
        }
        let task = tokio::spawn(set.clone().run(self.fetcher.clone())).abort_handle();
        sets.insert(
            jwks_uri.to_string(),
            Entry {
                set: set.clone(),
                task,
                last_used: Instant::now(),
            },
        );
        set
    }

    /// Stops an evicted set's background task.
    fn retire(&self, entry: Entry) {
        entry.task.abort();
        tracing::debug!(issuer = %entry.set.spec.issuer, "an identity provider's key set is dropped");
    }
}

/// The settings of an on-demand key set: the trusted issuers' defaults.
fn spec(issuer: &str, jwks_uri: &str, algorithms: &[KeyAlgorithm]) -> IssuerSpec {
    let seconds = Duration::from_secs;
    IssuerSpec {
        issuer: issuer.to_string(),
        jwks: JwksSource::Uri(jwks_uri.to_string()),
        algorithms: algorithms.to_vec(),
        audiences: Vec::new(),
        roles_claim: "roles".into(),
        leeway_seconds: 0,
        refresh_interval: seconds(config::DEFAULT_REFRESH_SECONDS),
        min_refetch: seconds(config::DEFAULT_MIN_REFETCH_SECONDS),
        unknown_key_cache: seconds(config::DEFAULT_UNKNOWN_KEY_CACHE_SECONDS),
        max_stale: seconds(config::DEFAULT_MAX_STALE_SECONDS),
        timeout: seconds(config::DEFAULT_TIMEOUT_SECONDS),
        unknown_key_wait: Duration::from_millis(config::DEFAULT_UNKNOWN_KEY_WAIT_MILLIS),
        ca_file: None::<PathBuf>,
    }
}

/// The algorithms of `names` a JWKS key may verify: never `none` nor HMAC (a JWKS holds no
/// secret of ours); unknown names are left out.
pub fn asymmetric(names: &[&str]) -> Vec<KeyAlgorithm> {
    let mut algorithms: Vec<KeyAlgorithm> = names
        .iter()
        .filter_map(|n| KeyAlgorithm::from_name(n))
        .filter(|a| !a.is_hmac())
        .collect();
    algorithms.dedup();
    algorithms
}

/// A stable reason for a refused token.
fn invalid(error: TokenError) -> RemoteKeyError {
    match error {
        TokenError::KeysUnavailable => RemoteKeyError::Unavailable,
        other => RemoteKeyError::Invalid(other.reason()),
    }
}

#[async_trait]
impl RemoteKeys for RemoteKeySets {
    async fn verify(
        &self,
        issuer: &str,
        jwks_uri: &str,
        algorithms: &[&str],
        token: &str,
    ) -> Result<Map<String, Value>, RemoteKeyError> {
        let algorithms = asymmetric(algorithms);
        if algorithms.is_empty() {
            return Err(RemoteKeyError::Invalid("algorithm_mismatch"));
        }
        let header = TokenHeader::parse(token).map_err(invalid)?;
        super::refuse_header_keys(token).map_err(invalid)?;
        let kid = header.kid.ok_or(RemoteKeyError::Invalid("unknown_key"))?;
        let set = self.set_for(issuer, jwks_uri, &algorithms);
        let mut found = set.lookup(&kid);
        if matches!(found, Lookup::Fetch) {
            set.refetch(&kid).await;
            found = set.lookup(&kid);
        }
        set.metrics
            .age
            .set(set.age().map_or(-1, |a| a.as_secs() as i64));
        let key = match found {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Err(RemoteKeyError::Invalid("unknown_key")),
            Lookup::Unavailable | Lookup::Fetch => {
                set.metrics.unavailable.inc();
                return Err(RemoteKeyError::Unavailable);
            }
        };
        let claims = key.verify(&header.alg, token).map_err(invalid)?;
        crate::auth::tokens::refuse_duplicate_claims(token).map_err(invalid)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_asymmetric_algorithms_are_kept() {
        assert_eq!(
            asymmetric(&["RS256", "HS256", "none", "ES256", "bogus", "EdDSA"]),
            vec![
                KeyAlgorithm::RS256,
                KeyAlgorithm::ES256,
                KeyAlgorithm::EdDSA
            ]
        );
        assert!(asymmetric(&["HS512", "none"]).is_empty());
    }

    #[tokio::test]
    async fn sets_are_created_on_first_use_bounded_and_replaced() {
        let metrics = Arc::new(Metrics::new());
        let fetcher = Fetcher::new(Duration::from_millis(200), None).expect("fetcher");
        let sets = RemoteKeySets::new(fetcher, metrics);
        let rs = [KeyAlgorithm::RS256];
        let a = sets.set_for("http://a", "http://127.0.0.1:9/a", &rs);
        let again = sets.set_for("http://a", "http://127.0.0.1:9/a", &rs);
        assert!(Arc::ptr_eq(&a, &again), "one set per jwks_uri");
        let other_issuer = sets.set_for("http://b", "http://127.0.0.1:9/a", &rs);
        assert!(
            !Arc::ptr_eq(&a, &other_issuer),
            "a new issuer replaces the set"
        );
        assert_eq!(sets.len(), 1);
        for i in 0..MAX_SETS + 5 {
            sets.set_for("http://c", &format!("http://127.0.0.1:9/{i}"), &rs);
        }
        assert_eq!(sets.len(), MAX_SETS, "bounded");
        assert!(
            !sets.lock().contains_key("http://127.0.0.1:9/0"),
            "the least recently used went first"
        );
    }

    #[tokio::test]
    async fn tokens_that_cannot_be_checked_are_refused_before_any_fetch() {
        let metrics = Arc::new(Metrics::new());
        let fetcher = Fetcher::new(Duration::from_millis(200), None).expect("fetcher");
        let sets = RemoteKeySets::new(fetcher, metrics);
        let b64 = |v: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
        };
        let token = |header: &str| format!("{}.{}.sig", b64(header), b64("{\"sub\":\"x\"}"));
        let uri = "http://127.0.0.1:9/keys";
        let verify = |t: String| {
            let sets = &sets;
            async move { sets.verify("http://i", uri, &["RS256"], &t).await }
        };
        assert_eq!(
            verify(token(r#"{"alg":"RS256"}"#)).await,
            Err(RemoteKeyError::Invalid("unknown_key")),
            "no kid"
        );
        assert_eq!(
            verify(token(r#"{"alg":"RS256","kid":"k","jku":"http://evil/k"}"#)).await,
            Err(RemoteKeyError::Invalid("unsupported_header"))
        );
        assert_eq!(
            verify("not-a-token".into()).await,
            Err(RemoteKeyError::Invalid("malformed"))
        );
        assert_eq!(
            sets.verify(
                "http://i",
                uri,
                &["HS256", "none"],
                &token(r#"{"alg":"HS256","kid":"k"}"#)
            )
            .await,
            Err(RemoteKeyError::Invalid("algorithm_mismatch"))
        );
        assert!(
            sets.is_empty(),
            "nothing fetched for tokens refused up front"
        );
        // A well-formed token whose keys cannot be fetched: unavailable, not invalid.
        assert_eq!(
            verify(token(r#"{"alg":"RS256","kid":"k"}"#)).await,
            Err(RemoteKeyError::Unavailable)
        );
    }
}
