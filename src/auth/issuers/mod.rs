//! Trusted issuers: tokens of a FusionAuth server, another Gatehouse or any OpenID Connect
//! issuer, checked with the keys it publishes as a JWKS.
//!
//! - [`config`]: one issuer's validated settings;
//! - [`jwks`]: a JWK Set parsed once into ready verifying keys (type and algorithm agreeing);
//! - [`fetch`]: the HTTP client (discovery, JWKS, limits, `Cache-Control`);
//! - [`keyset`]: one issuer's key set and when to fetch it (background refresh, coalesced
//!   refetch on an unknown `kid`, rate limit, negative cache, stale-if-error);
//! - [`policy`]: claims by path and the route checks that hold for every issuer;
//! - [`remote`]: key sets created on demand for issuers the plugins name (an OpenID Connect
//!   provider's ID tokens), the host's `RemoteKeys` port.
//!
//! A token goes to an issuer's keys only when its (unverified) `iss` is that issuer exactly; a
//! token claiming the gateway's own issuer, or another issuer, is never checked with them.
//! Keys named by the token itself (`jku`, `x5u`, `jwk`, `x5c`) are refused, never followed.

pub mod config;
pub mod fetch;
pub mod jwks;
pub mod keyset;
pub mod policy;
pub mod remote;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use gatehouse_plugin_api::tokens::{TokenError, VerifiedClaims};
use serde_json::{Map, Value};

use crate::auth::keys::TokenHeader;
use crate::observe::metrics::Metrics;
use config::IssuerSpec;
use fetch::Fetcher;
use keyset::{IssuerMetrics, KeySet, Lookup};

/// Called with an issuer's name and the `kid`s a fetch of its keys removed or replaced.
pub type IssuerKeysDropped = Arc<dyn Fn(&str, &[String]) + Send + Sync>;

/// What checking a token against an issuer's keys gave.
#[derive(Debug)]
pub enum Remote {
    /// Valid: its claims, with `roles` read from the issuer's roles claim.
    Valid(Box<VerifiedClaims>),
    /// Refused, or (`KeysUnavailable`) not checkable now.
    Refused(TokenError),
    /// Its `kid` is not in the set: a refetch may find it (see [`Issuers::refetch`]).
    NeedsKey(String),
}

/// Every trusted issuer's key set.
pub struct Issuers {
    sets: Vec<Arc<KeySet>>,
    fetchers: Vec<Fetcher>,
    /// Set when these issuers are dropped (replaced by a reload): their fetching thread ends
    /// within a second, and its tasks with it.
    retired: Arc<AtomicBool>,
}

impl Drop for Issuers {
    fn drop(&mut self) {
        self.retired.store(true, Ordering::Release);
    }
}

impl Issuers {
    /// The key sets of `specs` (empty until [`Issuers::start`] fetches them), with their
    /// metrics. `Err((index, message))` when an issuer's HTTP client cannot be set up (its
    /// CA file).
    pub fn new(specs: &[IssuerSpec], metrics: &Metrics) -> Result<Issuers, (usize, String)> {
        Self::after(specs, metrics, None)
    }

    /// [`Issuers::new`] for a reload: an issuer whose settings are the same as one of
    /// `previous` starts with the keys it holds (see [`KeySet::after`]).
    pub fn after(
        specs: &[IssuerSpec],
        metrics: &Metrics,
        previous: Option<&Issuers>,
    ) -> Result<Issuers, (usize, String)> {
        let mut sets = Vec::with_capacity(specs.len());
        let mut fetchers = Vec::with_capacity(specs.len());
        for (index, spec) in specs.iter().enumerate() {
            let ca =
                match &spec.ca_file {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        (index, format!("cannot read caFile {}: {e}", path.display()))
                    })?),
                    None => None,
                };
            fetchers.push(Fetcher::new(spec.timeout, ca.as_deref()).map_err(|e| (index, e))?);
            let issuer = spec.issuer.as_str();
            let before = previous
                .and_then(|p| p.sets.iter().find(|set| set.spec == *spec))
                .map(Arc::as_ref);
            let set = Arc::new(KeySet::after(
                spec.clone(),
                IssuerMetrics {
                    fetches: metrics.issuer_fetches.clone(),
                    keys: metrics.issuer_keys.with_label_values(&[issuer]),
                    age: metrics.issuer_key_age.with_label_values(&[issuer]),
                    unavailable: metrics.issuer_unavailable.with_label_values(&[issuer]),
                },
                before,
            ));
            sets.push(set);
        }
        Ok(Issuers {
            sets,
            fetchers,
            retired: Arc::default(),
        })
    }

    /// True when no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The key sets, in configuration order.
    pub fn sets(&self) -> &[Arc<KeySet>] {
        &self.sets
    }

    /// The position of the issuer whose `iss` is exactly `issuer`.
    pub fn index_of(&self, issuer: &str) -> Option<usize> {
        self.sets.iter().position(|s| s.spec.issuer == issuer)
    }

    /// The position of the issuer a verified token's `iss` names, if a trusted issuer's.
    pub fn index_of_claims(&self, claims: &VerifiedClaims) -> Option<usize> {
        if self.sets.is_empty() {
            return None;
        }
        claims
            .claims
            .get("iss")
            .and_then(Value::as_str)
            .and_then(|iss| self.index_of(iss))
    }

    /// The clock-skew leeway (seconds) of issuer `index`.
    pub fn leeway(&self, index: usize) -> i64 {
        self.sets.get(index).map_or(0, |s| s.spec.leeway_seconds)
    }

    /// Starts the thread that fetches every issuer's keys in the background (its own
    /// runtime: no proxy thread ever waits on a fetch it did not ask for), and updates the
    /// key-set age gauges, until these issuers are dropped.
    pub fn start(&self) -> std::io::Result<()> {
        if self.sets.is_empty() {
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let work: Vec<(Arc<KeySet>, Fetcher)> = self
            .sets
            .iter()
            .cloned()
            .zip(self.fetchers.iter().cloned())
            .collect();
        for set in &self.sets {
            for url in set.spec.plain_http_urls() {
                tracing::warn!(issuer = %set.spec.issuer, url = %url,
                    "keys of a trusted issuer are fetched over plain http: anyone on the path can swap them (use https outside tests and private networks)");
            }
        }
        let retired = self.retired.clone();
        std::thread::Builder::new()
            .name("issuer-keys".into())
            .spawn(move || {
                // When the loop ends, the runtime is dropped with the fetching tasks.
                runtime.block_on(async move {
                    let ages: Vec<Arc<KeySet>> = work.iter().map(|(s, _)| s.clone()).collect();
                    for (set, fetcher) in work {
                        tokio::spawn(set.run(fetcher));
                    }
                    while !retired.load(Ordering::Acquire) {
                        for set in &ages {
                            set.metrics
                                .age
                                .set(set.age().map_or(-1, |a| a.as_secs() as i64));
                        }
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                })
            })
            .map(drop)
    }

    /// Checks `token`, whose unverified `iss` is issuer `index`'s, with that issuer's keys, at
    /// `now` (seconds): the header (no header-borne keys, no `crit`, a JWT `typ`), the
    /// signature with the key of its `kid` and an algorithm the key and issuer agree on, the
    /// claims named once, `iss` again, `exp`/`nbf` with the issuer's leeway, and `aud` when the
    /// issuer lists audiences.
    pub fn verify(&self, index: usize, token: &str, now: i64) -> Remote {
        let Some(set) = self.sets.get(index) else {
            return Remote::Refused(TokenError::InvalidIssuer);
        };
        let header =
            match TokenHeader::parse(token).and_then(|h| refuse_header_keys(token).map(|()| h)) {
                Ok(header) => header,
                Err(e) => return Remote::Refused(e),
            };
        let Some(kid) = header.kid else {
            return Remote::Refused(TokenError::UnknownKey);
        };
        let key = match set.lookup(&kid) {
            Lookup::Found(key) => key,
            Lookup::Unknown => return Remote::Refused(TokenError::UnknownKey),
            Lookup::Unavailable => return Remote::Refused(TokenError::KeysUnavailable),
            Lookup::Fetch => return Remote::NeedsKey(kid),
        };
        match check(set, &key, &header.alg, token, kid, now) {
            Ok(claims) => Remote::Valid(Box::new(claims)),
            Err(e) => Remote::Refused(e),
        }
    }

    /// Whether the key that verified a cached token of issuer `index` (its `kid`) still
    /// serves: `Found` when it does, `Unavailable` when the issuer's set is too old to trust
    /// (a 503), `Unknown` when the issuer no longer publishes it (the token must be checked
    /// again).
    pub fn holds(&self, index: usize, kid: &str) -> Lookup {
        self.sets
            .get(index)
            .map_or(Lookup::Unknown, |set| set.holds(kid))
    }

    /// Calls `listener` with an issuer's name and the `kid`s a fetch of its keys removed or
    /// replaced, for every issuer (see [`KeySet::on_keys_dropped`]).
    pub fn on_keys_dropped(&self, listener: IssuerKeysDropped) {
        for set in &self.sets {
            let (listener, issuer) = (listener.clone(), set.spec.issuer.clone());
            set.on_keys_dropped(Box::new(move |kids: &[String]| listener(&issuer, kids)));
        }
    }

    /// Waits (briefly) for issuer `index` to fetch its keys again because `kid` was not in
    /// them; see [`KeySet::refetch`].
    pub async fn refetch(&self, index: usize, kid: &str) {
        if let Some(set) = self.sets.get(index) {
            set.refetch(kid).await;
        }
    }

    /// Counts a token answered 503 because issuer `index`'s keys were unavailable.
    pub fn count_unavailable(&self, index: usize) {
        if let Some(set) = self.sets.get(index) {
            set.metrics.unavailable.inc();
        }
    }
}

/// The signature and claims of `token` checked with `key` of `set`'s issuer. The roles are
/// read through the issuer's roles claim, and the `roles` claim becomes what it holds, so the
/// upstream's roles header says what the route's policy judged (see
/// [`policy::publish_roles`]).
fn check(
    set: &KeySet,
    key: &jwks::RemoteKey,
    alg: &str,
    token: &str,
    kid: String,
    now: i64,
) -> Result<VerifiedClaims, TokenError> {
    let claims = key.verify(alg, token)?;
    crate::auth::tokens::refuse_duplicate_claims(token)?;
    let spec = &set.spec;
    if claims.get("iss").and_then(Value::as_str) != Some(spec.issuer.as_str()) {
        return Err(TokenError::InvalidIssuer);
    }
    if !spec.audiences.is_empty()
        && !policy::audiences_of(&claims).any(|aud| spec.audiences.iter().any(|a| a == aud))
    {
        return Err(TokenError::InvalidAudience);
    }
    let mut verified = VerifiedClaims::from_claims(claims, kid).ok_or(TokenError::Malformed)?;
    if now >= verified.exp + spec.leeway_seconds {
        return Err(TokenError::Expired);
    }
    if verified
        .not_before
        .is_some_and(|nbf| nbf - spec.leeway_seconds > now)
    {
        return Err(TokenError::NotYetValid);
    }
    verified.roles = policy::roles_at(&verified.claims, &spec.roles_claim);
    policy::publish_roles(&mut verified.claims, &spec.roles_claim);
    Ok(verified)
}

/// Refuses a header that carries or points at keys (`jku`, `x5u`, `jwk`, `x5c`): keys come
/// from the issuer's JWKS only, never from the token (RFC 8725 §3.10).
pub(crate) fn refuse_header_keys(token: &str) -> Result<(), TokenError> {
    let segment = token.split('.').next().ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if ["jku", "x5u", "jwk", "x5c"]
        .iter()
        .any(|name| header.contains_key(*name))
    {
        return Err(TokenError::UnsupportedHeader);
    }
    Ok(())
}

/// The `iss` a token claims, read without verifying anything (to choose whose keys check it);
/// `None` when the payload cannot be read or has no string `iss`.
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Issuer>(&bytes).ok()?.iss
}
