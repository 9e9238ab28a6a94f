//! The token service: the one place that signs and verifies tokens, used by the REST plugins
//! and the proxy alike.
//!
//! Verification is inline and cached: a token seen before costs one cache lookup and a few
//! comparisons, no signature check. The cache never serves a token past its `exp` (entries
//! expire at `exp`, and `exp`/`nbf` are re-checked on every hit) and revocations recorded
//! after a token was cached still apply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine;
use dashmap::DashMap;
use gatehouse_plugin_api::clock::Clock;
use gatehouse_plugin_api::model::{Application, Tenant};
use gatehouse_plugin_api::tokens::{
    AccessTokenRequest, IssuedToken, PublicKeyInfo, RevocationScope, TokenError, TokenService,
    VerifiedClaims,
};
use gatehouse_plugin_api::{CpuPool, PendingToken};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::auth::cached::{CachedToken, ClaimPlan, Facts, Interner};
use crate::auth::issuers::{self, Issuers};
use crate::auth::key_scope::KeyScopes;
use crate::auth::keys::{KeyRing, SigningKey};
use crate::auth::token_cache::{Digest, TokenCache};
use crate::observe::metrics::Metrics;

/// The bounds of the verified-token cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// The most tokens it holds; 0 disables the cache.
    pub entries: u64,
    /// The most memory (bytes, as [`CachedToken::estimated_bytes`] counts it) it holds.
    pub bytes: u64,
}

/// The token service over the gateway's key ring and configured tenants.
pub struct Tokens {
    ring: KeyRing,
    /// Tenant id → issuer, for checking `iss` against the token's `tid`.
    issuers: HashMap<Uuid, String>,
    /// The tenants and applications each key speaks for.
    scopes: KeyScopes,
    /// Verified tokens in compact form by a keyed digest of their bytes (see [`TokenCache`]),
    /// bounded in entries and in estimated bytes; `None` when the cache is off.
    cache: Option<Arc<TokenCache<Arc<CachedToken>>>>,
    /// The claims a compact token renders and checks (from the routes).
    plan: Arc<ClaimPlan>,
    /// The strings compact tokens share.
    interner: Interner,
    /// The revocations in force, shared by every token service of the process (a reload
    /// builds a new service over the same set).
    revocations: Arc<RevocationSet>,
    leeway: i64,
    clock: Arc<dyn Clock>,
    /// Trusted issuers whose tokens the edge accepts (see [`Tokens::verify_at_edge`]); `None`
    /// when none is configured.
    remote: Option<Arc<Issuers>>,
    /// Where expensive signatures (RSA keys) of tokens prepared for async callers are made
    /// (see [`TokenService::prepare_access_token`]); `None`: every signature is made at once.
    signer: Option<CpuPool>,
}

impl Tokens {
    /// A token service over `ring`, checking issuers of `tenants`.
    pub fn new(
        ring: KeyRing,
        tenants: &[Tenant],
        applications: &[Application],
        leeway_seconds: u64,
        cache: CacheLimits,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = TokenCache::new(cache.entries, cache.bytes).map(Arc::new);
        let max_access_ttl = tenants
            .iter()
            .map(|t| &t.jwt_configuration)
            .chain(applications.iter().map(|a| &a.jwt_configuration))
            .filter_map(|j| j.time_to_live_in_seconds)
            .max()
            .unwrap_or(gatehouse_refresh::DEFAULT_TIME_TO_LIVE_IN_SECONDS);
        Tokens {
            ring,
            issuers: tenants.iter().map(|t| (t.id, t.issuer.clone())).collect(),
            scopes: KeyScopes::new(tenants, applications),
            cache,
            plan: Arc::default(),
            interner: Interner::default(),
            revocations: Arc::new(RevocationSet::new(
                max_access_ttl + leeway_seconds as i64,
                clock.clone(),
                metrics.clone(),
            )),
            leeway: leeway_seconds as i64,
            clock,
            remote: None,
            signer: None,
        }
    }

    /// This service, making the expensive signatures of tokens prepared for async callers
    /// (RSA keys; see [`SigningKey::signs_slowly`]) on `pool`, so that they never hold the
    /// thread that serves requests. One pool per process: it bounds the signatures at once.
    pub fn signing_on(mut self, pool: CpuPool) -> Self {
        self.signer = Some(pool);
        self
    }

    /// This service, rendering and checking the claims of `plan` when it caches a token (the
    /// routes' identity headers and claim checks). Entries cached under another plan are
    /// dropped: none may serve values rendered for another configuration.
    pub fn with_claim_plan(mut self, plan: ClaimPlan) -> Self {
        if *self.plan != plan {
            if let Some(cache) = &self.cache {
                cache.clear();
            }
            self.plan = Arc::new(plan);
        }
        self
    }

    /// This service over `revocations` (those of the service it replaces, on a reload)
    /// instead of its own empty set. The set then keeps revocations at least as long as this
    /// service's tokens can live, and as long as it did before (tokens issued under the old
    /// settings are still out there).
    pub fn sharing_revocations(mut self, revocations: Arc<RevocationSet>) -> Self {
        revocations.keep_at_least(self.revocations.span.load(Ordering::Relaxed));
        self.revocations = revocations;
        self
    }

    /// The revocation set this service checks (see [`Tokens::sharing_revocations`]).
    pub fn revocation_set(&self) -> Arc<RevocationSet> {
        self.revocations.clone()
    }

    /// This service, also accepting at the edge the tokens of `issuers` (when any is
    /// configured). Tokens of an issuer's key that a fetch removes or replaces leave the
    /// verified-token cache.
    pub fn with_issuers(mut self, issuers: Arc<Issuers>) -> Self {
        if let Some(cache) = self.cache.clone() {
            issuers.on_keys_dropped(Arc::new(move |issuer: &str, kids: &[String]| {
                cache.remove_if(|token| {
                    kids.iter().any(|kid| kid == token.key_id()) && token.issuer() == Some(issuer)
                });
            }));
        }
        self.remote = (!issuers.is_empty()).then_some(issuers);
        self
    }

    /// The position of the trusted issuer whose `iss` is `issuer`; `None` for the gateway's
    /// own tokens (or without trusted issuers).
    fn remote_index(&self, issuer: Option<&str>) -> Option<usize> {
        self.remote.as_ref()?.index_of(issuer?)
    }

    /// The position of the trusted issuer that verified `token`; `None` for tokens of the
    /// gateway's own key ring.
    pub fn remote_issuer_of(&self, token: &CachedToken) -> Option<usize> {
        self.remote_index(token.issuer())
    }

    /// `verified` in the compact form the proxy reads (the plan's claims rendered).
    pub fn compact(&self, verified: &VerifiedClaims) -> Arc<CachedToken> {
        Arc::new(self.interner.compact(verified, &self.plan))
    }

    /// [`TokenService::verify`] for a token given as the bytes of a header: a cached token is
    /// found by its digest without validating its text first. A cache hit is checked (times,
    /// revocations) and its full claims decoded again from these bytes (the cache keeps only
    /// what the proxy reads; the bytes are the ones verified). The verified claims, or why the
    /// token is refused.
    pub fn verify_bytes(&self, token: &[u8]) -> Result<Arc<VerifiedClaims>, TokenError> {
        let now = self.clock.now_seconds();
        let digest = self.cache.as_ref().map(|cache| cache.digest(token));
        if let Some((cache, digest)) = self.cache.as_ref().zip(digest.as_ref()) {
            if let Some(hit) = cache.get(digest) {
                if self.remote_issuer_of(&hit).is_some() {
                    // Cached at the edge for a trusted issuer: no key of the ring signed it.
                    return Err(TokenError::UnknownKey);
                }
                self.check_hit_times(cache, digest, &hit, now, self.leeway)?;
                self.check_revoked(&hit.facts())?;
                let text = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
                return decoded_claims(text, hit.key_id()).map(Arc::new);
            }
        }
        let text = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        let verified = self.verify_uncached(text, now, true)?;
        self.check_revoked(&Facts::of(&verified))?;
        self.remember(digest, &verified);
        Ok(Arc::new(verified))
    }

    /// Verifies a token presented at the edge (the proxy): its compact form, from the cache
    /// (found by digest; times and revocations checked on every hit) or verified now and
    /// cached. A token whose `iss` is a trusted issuer's is checked with that issuer's keys.
    /// The one wait: a `kid` the issuer's set lacks asks for a refetch and waits briefly for
    /// it. `KeysUnavailable` when the keys cannot be had (the answer is a 503, not a 401).
    pub async fn verify_at_edge(&self, token: &[u8]) -> Result<Arc<CachedToken>, TokenError> {
        let now = self.clock.now_seconds();
        let digest = self.cache.as_ref().map(|cache| cache.digest(token));
        if let Some(hit) = self.cached_at_edge(digest.as_ref(), now)? {
            return Ok(hit);
        }
        let text = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        let remote = self.remote.as_ref().and_then(|remote| {
            let index = issuers::unverified_issuer(text).and_then(|iss| remote.index_of(&iss));
            Some((remote, index?))
        });
        let verified = match remote {
            None => self.verify_uncached(text, now, true)?,
            Some((remote, index)) => self.verify_remote(remote, index, text, now).await?,
        };
        self.check_revoked(&Facts::of(&verified))?;
        Ok(self
            .remember(digest, &verified)
            .unwrap_or_else(|| self.compact(&verified)))
    }

    /// Caches `verified` in compact form under `digest`; the entry, or `None` without a cache.
    fn remember(
        &self,
        digest: Option<Digest>,
        verified: &VerifiedClaims,
    ) -> Option<Arc<CachedToken>> {
        let (cache, digest) = self.cache.as_ref().zip(digest)?;
        let token = self.compact(verified);
        cache.insert(digest, token.clone(), token.estimated_bytes());
        Some(token)
    }

    /// `exp`/`nbf` of a cache hit against `now` with `leeway`; an expired entry leaves the
    /// cache at once (it can never be valid again).
    fn check_hit_times(
        &self,
        cache: &TokenCache<Arc<CachedToken>>,
        digest: &Digest,
        hit: &CachedToken,
        now: i64,
        leeway: i64,
    ) -> Result<(), TokenError> {
        let checked = check_times_with(&hit.facts(), now, leeway);
        if checked == Err(TokenError::Expired) {
            cache.remove(digest);
        }
        checked
    }

    /// The cached verification of the token of `digest` at the edge, when it still holds:
    /// `Ok(None)` when it is not cached, or was verified by a trusted issuer's key the issuer
    /// no longer publishes (then it leaves the cache and is checked again); `KeysUnavailable`
    /// when that issuer's key set is too old to trust.
    fn cached_at_edge(
        &self,
        digest: Option<&Digest>,
        now: i64,
    ) -> Result<Option<Arc<CachedToken>>, TokenError> {
        let Some((cache, digest)) = self.cache.as_ref().zip(digest) else {
            return Ok(None);
        };
        let Some(hit) = cache.get(digest) else {
            return Ok(None);
        };
        let remote = self.remote.as_ref().zip(self.remote_issuer_of(&hit));
        let leeway = match remote {
            None => self.leeway,
            Some((remote, index)) => match remote.holds(index, hit.key_id()) {
                issuers::keyset::Lookup::Found(_) => remote.leeway(index),
                issuers::keyset::Lookup::Unavailable => {
                    remote.count_unavailable(index);
                    return Err(TokenError::KeysUnavailable);
                }
                _ => {
                    cache.remove(digest);
                    return Ok(None);
                }
            },
        };
        self.check_hit_times(cache, digest, &hit, now, leeway)?;
        self.check_revoked(&hit.facts())?;
        Ok(Some(hit))
    }

    /// Checks `token` with trusted issuer `index`'s keys, refetching them once when its `kid`
    /// is not among them.
    async fn verify_remote(
        &self,
        remote: &Issuers,
        index: usize,
        token: &str,
        now: i64,
    ) -> Result<VerifiedClaims, TokenError> {
        let mut outcome = remote.verify(index, token, now);
        if let issuers::Remote::NeedsKey(kid) = &outcome {
            remote.refetch(index, kid).await;
            outcome = remote.verify(index, token, self.clock.now_seconds());
        }
        match outcome {
            issuers::Remote::Valid(claims) => Ok(*claims),
            issuers::Remote::Refused(TokenError::KeysUnavailable)
            | issuers::Remote::NeedsKey(_) => {
                remote.count_unavailable(index);
                Err(TokenError::KeysUnavailable)
            }
            issuers::Remote::Refused(error) => Err(error),
        }
    }

    /// `exp` and `nbf` against `now`, with the clock-skew leeway: a token is expired from its
    /// `exp` second on (RFC 7519 §4.1.4: "on or after"), valid from its `nbf` second.
    fn check_times(&self, claims: &VerifiedClaims, now: i64) -> Result<(), TokenError> {
        check_times_with(&Facts::of(claims), now, self.leeway)
    }

    /// `Err(Revoked)` when a revocation in force covers a token of these facts.
    fn check_revoked(&self, claims: &Facts) -> Result<(), TokenError> {
        if self.revocations.is_empty() {
            return Ok(());
        }
        let revoked = |scope: RevocationScope| {
            self.revocations
                .at(&scope)
                .is_some_and(|at| claims.iat <= at)
        };
        let user = claims.subject;
        if user.is_some_and(|user| revoked(RevocationScope::User(user)))
            || claims
                .session_id
                .is_some_and(|session| revoked(RevocationScope::Session(session)))
        {
            return Err(TokenError::Revoked);
        }
        // Its application by `applicationId`, or by `aud`.
        let applications = claims.application_id.iter().chain(claims.audience);
        for &app in applications {
            if revoked(RevocationScope::Application(app))
                || user.is_some_and(|user| revoked(RevocationScope::UserApplication(user, app)))
            {
                return Err(TokenError::Revoked);
            }
        }
        Ok(())
    }

    /// Verifies without the cache. With `strict_issuer`, `iss` must be the issuer of the
    /// token's tenant (any tenant's without `tid`); otherwise a custom `iss` (no tenant's) is
    /// accepted too, but a tenant's issuer still must go with that tenant's `tid`, so a token
    /// cannot pass for another tenant's.
    fn verify_uncached(
        &self,
        token: &str,
        now: i64,
        strict_issuer: bool,
    ) -> Result<VerifiedClaims, TokenError> {
        let header = crate::auth::keys::TokenHeader::parse(token)?;
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = self.ring.get(&kid).ok_or(TokenError::UnknownKey)?;
        if header.alg != key.algorithm.name() {
            return Err(TokenError::AlgorithmMismatch);
        }
        let claims = key.verify(token)?;
        refuse_duplicate_claims(token)?;
        let parsed = parse_claims(claims, kid)?;
        self.check_times(&parsed, now)?;
        let iss = parsed.claims.get("iss").and_then(Value::as_str);
        let issuer_ok = self.is_tenant_issuer(&parsed);
        let custom_issuer = iss.is_some_and(|iss| !self.issuers.values().any(|i| i == iss));
        if !issuer_ok && (strict_issuer || !custom_issuer) {
            return Err(TokenError::InvalidIssuer);
        }
        if !self.scopes.permits(&parsed.key_id, &parsed) {
            return Err(TokenError::KeyOutOfScope);
        }
        Ok(parsed)
    }

    /// True when the token's `iss` is the issuer of its tenant (`tid`); without `tid`, any
    /// tenant's. False without `iss`.
    fn is_tenant_issuer(&self, claims: &VerifiedClaims) -> bool {
        match (
            claims.tenant_id,
            claims.claims.get("iss").and_then(Value::as_str),
        ) {
            (Some(tid), Some(iss)) => self.issuers.get(&tid).is_some_and(|i| i == iss),
            (None, Some(iss)) => self.issuers.values().any(|i| i == iss),
            (_, None) => false,
        }
    }

    /// Puts `token`, which this service has just signed with key `kid` over `claims`, in the
    /// verified-token cache with exactly those claims, so that its first verification (the
    /// proxy's, right after a transparent refresh) costs a lookup, not a signature check. Only
    /// a token that [`Tokens::verify_uncached`] would accept (strict issuer, times as of `now`)
    /// goes in: the signature is the key's by construction and the claims are what the token
    /// carries, so a cache hit is the same verdict. Revocations are checked at each lookup, as
    /// for every cached token. Does nothing without a cache.
    fn remember_signed(&self, token: &str, claims: Map<String, Value>, kid: &str, now: i64) {
        if let Some(entry) = self.signed_entry(claims, kid, now) {
            entry.remember(token);
        }
    }

    /// The cache entry [`Tokens::remember_signed`] would make for a token of `claims` signed
    /// with key `kid`, made before the token is signed (it depends on the claims alone); `None`
    /// without a cache or for a token that does not go in.
    fn signed_entry(&self, claims: Map<String, Value>, kid: &str, now: i64) -> Option<Entry> {
        let cache = self.cache.as_ref()?;
        let parsed = parse_claims(claims, kid.to_string()).ok()?;
        if self.check_times(&parsed, now).is_err() || !self.is_tenant_issuer(&parsed) {
            return None;
        }
        Some(Entry {
            cache: cache.clone(),
            token: self.compact(&parsed),
        })
    }

    /// `unsigned` as a token for an async caller: signed on the signing pool when its key signs
    /// slowly and the service has a pool, else signed now. With `remember_at` (the time the
    /// claims were decided at), the token goes in the verified-token cache once signed, as by
    /// [`Tokens::remember_signed`]. `CannotSign` when signing now failed.
    fn pending(
        &self,
        unsigned: Unsigned,
        remember_at: Option<i64>,
    ) -> Result<PendingToken, TokenError> {
        let Some(pool) = self.signer.as_ref().filter(|_| unsigned.key.signs_slowly()) else {
            let token = unsigned.key.sign(&unsigned.claims)?;
            let issued = unsigned.issued(token.clone());
            if let Some(now) = remember_at {
                self.remember_signed(&token, unsigned.claims, &unsigned.key.kid, now);
            }
            return Ok(PendingToken::signed(issued));
        };
        let entry = remember_at
            .and_then(|now| self.signed_entry(unsigned.claims.clone(), &unsigned.key.kid, now));
        Ok(PendingToken::on_pool(pool.clone(), move || {
            let token = unsigned.key.sign(&unsigned.claims)?;
            if let Some(entry) = entry {
                entry.remember(&token);
            }
            Ok(unsigned.issued(token))
        }))
    }

    fn signing_key_for(
        &self,
        key_id: Option<Uuid>,
    ) -> Result<&Arc<crate::auth::keys::SigningKey>, TokenError> {
        let kid = key_id.ok_or(TokenError::CannotSign)?.to_string();
        let key = self.ring.get(&kid).ok_or(TokenError::CannotSign)?;
        if !key.can_sign() {
            return Err(TokenError::CannotSign);
        }
        Ok(key)
    }

    /// The newest revocation (seconds) that would refuse a token of `user` for `application`
    /// issued now, if any.
    fn latest_revocation(&self, user: uuid::Uuid, application: Option<uuid::Uuid>) -> Option<i64> {
        if self.revocations.is_empty() {
            return None;
        }
        let mut scopes = vec![RevocationScope::User(user)];
        if let Some(app) = application {
            scopes.push(RevocationScope::Application(app));
            scopes.push(RevocationScope::UserApplication(user, app));
        }
        scopes
            .into_iter()
            .filter_map(|s| self.revocations.at(&s))
            .max()
    }

    /// The horizon before which revocations cannot matter (seconds): every token they could
    /// refuse has expired.
    pub fn revocation_horizon(&self) -> i64 {
        self.revocations.horizon()
    }

    /// Drops revocations older than the longest access-token lifetime: every token they
    /// could refuse has expired.
    pub fn prune_revocations(&self) {
        self.revocations.prune();
    }
}

/// The revocations in force: tokens of a scope issued at or before its instant (seconds) are
/// refused. One set per process, kept in step with the store by the revocation sync and
/// shared by each token service a reload builds.
pub struct RevocationSet {
    map: DashMap<RevocationScope, i64>,
    /// The number of entries in `map`: checked on every verification, and cheaper than asking
    /// the map (which locks every shard).
    count: AtomicUsize,
    /// How long (seconds) a revocation can matter: the longest access-token lifetime plus the
    /// leeway, the largest any configuration of the process had.
    span: AtomicI64,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl RevocationSet {
    /// An empty set whose revocations matter for `span` seconds.
    fn new(span: i64, clock: Arc<dyn Clock>, metrics: Arc<Metrics>) -> Self {
        RevocationSet {
            map: DashMap::new(),
            count: AtomicUsize::new(0),
            span: AtomicI64::new(span),
            clock,
            metrics,
        }
    }

    /// Keeps revocations for at least `span` seconds from now on.
    fn keep_at_least(&self, span: i64) {
        self.span.fetch_max(span, Ordering::Relaxed);
    }

    /// True when no revocation is recorded (the common case, checked without locking).
    fn is_empty(&self) -> bool {
        self.count.load(Ordering::Relaxed) == 0
    }

    /// The instant (seconds) of `scope`'s revocation, if it has one.
    fn at(&self, scope: &RevocationScope) -> Option<i64> {
        self.map.get(scope).map(|v| *v)
    }

    /// The horizon before which revocations cannot matter (seconds): every token they could
    /// refuse has expired.
    pub fn horizon(&self) -> i64 {
        self.clock.now_seconds() - self.span.load(Ordering::Relaxed)
    }

    /// Records that tokens of `scope` issued at or before `instant_seconds` are refused (a
    /// later instant than the one recorded wins).
    pub fn record(&self, scope: RevocationScope, instant_seconds: i64) {
        self.map
            .entry(scope)
            .and_modify(|at| *at = (*at).max(instant_seconds))
            .or_insert(instant_seconds);
        self.counted();
    }

    /// Drops revocations older than [`RevocationSet::horizon`].
    pub fn prune(&self) {
        let horizon = self.horizon();
        self.map.retain(|_, at| *at >= horizon);
        self.counted();
    }

    /// Updates the count and its gauge after a change.
    fn counted(&self) {
        let count = self.map.len();
        self.count.store(count, Ordering::Relaxed);
        self.metrics.revocations.set(count as i64);
    }
}

/// `exp` and `nbf` against `now` with `leeway`, as [`Tokens::check_times`] does with the
/// gateway's own.
fn check_times_with(claims: &Facts, now: i64, leeway: i64) -> Result<(), TokenError> {
    // Saturating: `exp`/`nbf` may be any integer a token carries, up to the ends of `i64`.
    if now >= claims.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if claims
        .not_before
        .is_some_and(|nbf| nbf.saturating_sub(leeway) > now)
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// Refuses a payload that names a claim twice: the gateway would read one value and an
/// upstream that parses the token itself perhaps the other (RFC 7515 §5.2 allows refusing).
pub(crate) fn refuse_duplicate_claims(token: &str) -> Result<(), TokenError> {
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    gatehouse_plugin_api::json::parse(&bytes)
        .map(drop)
        .map_err(|_| TokenError::Malformed)
}

/// The claims of `token`, which was verified with key `kid` before (a cache hit for exactly
/// these bytes), decoded again from its payload.
fn decoded_claims(token: &str, kid: &str) -> Result<VerifiedClaims, TokenError> {
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(claims)) => parse_claims(claims, kid.to_string()),
        _ => Err(TokenError::Malformed),
    }
}

/// Extracts the claims policy needs; `exp` is required and must be a number.
fn parse_claims(claims: Map<String, Value>, key_id: String) -> Result<VerifiedClaims, TokenError> {
    VerifiedClaims::from_claims(claims, key_id).ok_or(TokenError::Malformed)
}

/// The JWT settings that apply: the application's when enabled, else the tenant's, field by
/// field falling back to the tenant's.
pub fn access_token_settings(
    tenant: &Tenant,
    application: Option<&Application>,
) -> (Option<Uuid>, i64) {
    let settings = gatehouse_refresh::JwtSettings::resolve(tenant, application);
    (
        settings.access_token_key_id,
        settings.time_to_live_in_seconds,
    )
}

impl Tokens {
    /// The claims of the access token `request` asks for, decided at `now` (seconds), and the
    /// key that signs it (the application's JWT settings when enabled, else the tenant's).
    /// `CannotSign` when that key is missing or public-only.
    fn access_token_claims(
        &self,
        request: &AccessTokenRequest<'_>,
        now: i64,
    ) -> Result<Unsigned, TokenError> {
        let (key_id, ttl) = access_token_settings(request.tenant, request.application);
        let key = self.signing_key_for(key_id)?;
        let exp = request.expires_at.unwrap_or(now + ttl);
        let jti = Uuid::new_v4();
        let user = request.user;
        // Revocations refuse tokens issued at or before their second; a token issued in the
        // same second as a revocation of its user (a new login right after "log out
        // everywhere") is dated just after it, so it is not refused for its whole life.
        let iat = match self.latest_revocation(user.id, request.application.map(|a| a.id)) {
            Some(at) if at >= now => at + 1,
            _ => now,
        };
        let mut claims = Map::new();
        if let Some(app) = request.application {
            claims.insert("aud".into(), json!(app.id));
        }
        claims.insert("exp".into(), json!(exp));
        claims.insert("iat".into(), json!(iat));
        claims.insert("iss".into(), json!(request.tenant.issuer));
        claims.insert("sub".into(), json!(user.id));
        claims.insert("jti".into(), json!(jti));
        claims.insert(
            "authenticationType".into(),
            json!(request.authentication_type),
        );
        if let Some(email) = &user.email {
            claims.insert("email".into(), json!(email));
            claims.insert("email_verified".into(), json!(user.verified));
        }
        if let Some(username) = &user.username {
            claims.insert("preferred_username".into(), json!(username));
        }
        if let (Some(app), Some(registration)) = (request.application, request.registration) {
            claims.insert("applicationId".into(), json!(app.id));
            claims.insert("roles".into(), json!(registration.roles));
        }
        claims.insert("auth_time".into(), json!(now));
        claims.insert("tid".into(), json!(request.tenant.id));
        if let Some(sid) = request.session_id {
            claims.insert("sid".into(), json!(sid));
        }
        Ok(Unsigned {
            key: key.clone(),
            claims,
            exp,
            jti,
        })
    }
}

/// A token decided and not yet signed: the key that signs it, its claims, `exp` (seconds) and
/// `jti`. Owned, so that it can be signed on another thread.
struct Unsigned {
    key: Arc<SigningKey>,
    claims: Map<String, Value>,
    exp: i64,
    jti: Uuid,
}

impl Unsigned {
    /// The answer for `token`, this token signed.
    fn issued(&self, token: String) -> IssuedToken {
        IssuedToken {
            token,
            expiration_instant: self.exp * 1000,
            jti: self.jti,
        }
    }
}

/// A signed token's entry in the verified-token cache, made before it was signed (see
/// [`Tokens::signed_entry`]).
struct Entry {
    cache: Arc<TokenCache<Arc<CachedToken>>>,
    token: Arc<CachedToken>,
}

impl Entry {
    /// Puts the entry in its cache under the digest of `token`, the signed token's text.
    fn remember(self, token: &str) {
        let weight = self.token.estimated_bytes();
        self.cache
            .insert(self.cache.digest(token.as_bytes()), self.token, weight);
    }
}

impl TokenService for Tokens {
    fn issue_access_token(
        &self,
        request: &AccessTokenRequest<'_>,
    ) -> Result<IssuedToken, TokenError> {
        self.prepare_access_token(request)?.sign_here()
    }

    fn vend(
        &self,
        tenant: &Tenant,
        key_id: Option<Uuid>,
        claims: Map<String, Value>,
        ttl_seconds: i64,
    ) -> Result<IssuedToken, TokenError> {
        self.prepare_vend(tenant, key_id, claims, ttl_seconds)?
            .sign_here()
    }

    fn prepare_access_token(
        &self,
        request: &AccessTokenRequest<'_>,
    ) -> Result<PendingToken, TokenError> {
        let now = self.clock.now_seconds();
        let unsigned = self.access_token_claims(request, now)?;
        self.pending(unsigned, Some(now))
    }

    fn prepare_vend(
        &self,
        tenant: &Tenant,
        key_id: Option<Uuid>,
        mut claims: Map<String, Value>,
        ttl_seconds: i64,
    ) -> Result<PendingToken, TokenError> {
        let now = self.clock.now_seconds();
        let key = self.signing_key_for(key_id.or(tenant.jwt_configuration.access_token_key_id))?;
        let exp = now + ttl_seconds;
        // A vended token may outlive every configured lifetime: revocations that could refuse
        // it are kept as long as it lives (on this node; see the README on revocation).
        self.revocations
            .keep_at_least(ttl_seconds.saturating_add(self.leeway));
        claims.insert("exp".into(), json!(exp));
        claims.insert("iat".into(), json!(now));
        claims.entry("iss").or_insert_with(|| json!(tenant.issuer));
        let jti = match claims
            .get("jti")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
        {
            Some(j) => j,
            None => {
                let j = Uuid::new_v4();
                claims.insert("jti".into(), json!(j));
                j
            }
        };
        // A token its key does not speak for (see `KeyScopes`) would be refused everywhere.
        let parsed = VerifiedClaims::from_claims(claims.clone(), key.kid.clone());
        if parsed.is_none_or(|parsed| !self.scopes.permits(&key.kid, &parsed)) {
            return Err(TokenError::KeyOutOfScope);
        }
        let unsigned = Unsigned {
            key: key.clone(),
            claims,
            exp,
            jti,
        };
        self.pending(unsigned, None)
    }

    fn verify(&self, token: &str) -> Result<Arc<VerifiedClaims>, TokenError> {
        self.verify_bytes(token.as_bytes())
    }

    fn verify_any_issuer(&self, token: &str) -> Result<Arc<VerifiedClaims>, TokenError> {
        match self.verify(token) {
            Err(TokenError::InvalidIssuer) => {
                let verified = self.verify_uncached(token, self.clock.now_seconds(), false)?;
                self.check_revoked(&Facts::of(&verified))?;
                Ok(Arc::new(verified))
            }
            other => other,
        }
    }

    fn public_keys(&self) -> Vec<PublicKeyInfo> {
        self.ring
            .iter()
            .filter_map(|k| k.public().cloned())
            .collect()
    }

    fn has_key(&self, key_id: &str) -> bool {
        self.ring.get(key_id).is_some()
    }

    fn key_speaks_for(&self, key_id: &str, tenant: Uuid) -> bool {
        self.scopes.may_sign_for(key_id, tenant)
    }

    fn new_refresh_token_value(&self) -> String {
        let mut bytes = [0u8; 32];
        // aws-lc's CSPRNG only fails if the OS entropy source is broken; fall back to two v4
        // UUIDs (also CSPRNG-backed, 244 random bits) rather than panic.
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            bytes[..16].copy_from_slice(Uuid::new_v4().as_bytes());
            bytes[16..].copy_from_slice(Uuid::new_v4().as_bytes());
        }
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn record_revocation(&self, scope: RevocationScope, instant_seconds: i64) {
        self.revocations.record(scope, instant_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeyAlgorithm as Algorithm;
    use crate::auth::keys::{generated_for_tests, SigningKey};
    use crate::config::{KeySource, KeySpec};
    use gatehouse_plugin_api::model::{JwtConfiguration, Registration, User};
    use gatehouse_plugin_api::SystemClock;

    fn fixture(algorithm: Algorithm) -> (Tokens, Tenant, Application, User, Registration) {
        let (spec, material) = generated_for_tests(algorithm);
        let key = SigningKey::from_spec(&spec, Some(&material)).expect("key");
        let tenant = Tenant {
            id: Uuid::new_v4(),
            name: "t".into(),
            issuer: "acme.com".into(),
            jwt_configuration: JwtConfiguration {
                access_token_key_id: Some(spec.id),
                time_to_live_in_seconds: Some(60),
                ..Default::default()
            },
            data: None,
        };
        let app = Application {
            id: Uuid::new_v4(),
            tenant_id: tenant.id,
            name: "a".into(),
            roles: vec![],
            login_configuration: Default::default(),
            jwt_configuration: JwtConfiguration {
                enabled: Some(true),
                time_to_live_in_seconds: Some(300),
                ..Default::default()
            },
            active: true,
            data: None,
        };
        let user = User {
            id: Uuid::new_v4(),
            tenant_id: tenant.id,
            email: Some("a@b.c".into()),
            username: Some("ann".into()),
            verified: true,
            ..Default::default()
        };
        let registration = Registration {
            id: Uuid::new_v4(),
            application_id: app.id,
            roles: vec!["admin".into()],
            ..Default::default()
        };
        let tokens = Tokens::new(
            KeyRing::new(vec![key]),
            std::slice::from_ref(&tenant),
            std::slice::from_ref(&app),
            0,
            CacheLimits {
                entries: 100,
                bytes: 1 << 20,
            },
            Arc::new(SystemClock),
            Arc::new(Metrics::new()),
        );
        (tokens, tenant, app, user, registration)
    }

    /// A `PASSWORD` access-token request of `user` for `app` in `tenant`, with `registration`
    /// and the session (`sid`) `session_id`.
    fn token_request<'a>(
        tenant: &'a Tenant,
        app: &'a Application,
        user: &'a User,
        registration: &'a Registration,
        session_id: Option<Uuid>,
    ) -> AccessTokenRequest<'a> {
        AccessTokenRequest {
            user,
            tenant,
            application: Some(app),
            registration: Some(registration),
            authentication_type: "PASSWORD",
            expires_at: None,
            session_id,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn rsa_signatures_of_async_callers_run_on_the_pool_and_give_the_same_tokens() {
        for algorithm in [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ] {
            let (tokens, tenant, app, user, registration) = fixture(algorithm);
            let tokens = tokens.signing_on(CpuPool::new(1));
            let request = token_request(&tenant, &app, &user, &registration, None);
            let pending = tokens.prepare_access_token(&request).expect("prepare");
            assert!(pending.is_on_pool(), "{algorithm:?} signs on the pool");
            let issued = pending.sign().await.expect("signed");
            // In the verified-token cache at once, as a token signed inline is.
            assert!(cached(&tokens, &issued.token).is_some(), "{algorithm:?}");
            let claims = tokens.verify(&issued.token).expect("verify");
            let inline = tokens.issue_access_token(&request).expect("issue");
            let inline_claims = tokens.verify(&inline.token).expect("verify");
            assert_eq!(claims.exp * 1000, issued.expiration_instant);
            assert_eq!(claims.claims["jti"], json!(issued.jti));
            let without_ids = |c: &VerifiedClaims| {
                let mut c = c.claims.clone();
                for volatile in ["jti", "iat", "exp", "auth_time"] {
                    c.remove(volatile);
                }
                c
            };
            assert_eq!(without_ids(&claims), without_ids(&inline_claims));
            // Vended tokens are not cached, on the pool or not.
            let vended = tokens
                .prepare_vend(&tenant, None, Map::new(), 60)
                .expect("prepare");
            assert!(vended.is_on_pool());
            let vended = vended.sign().await.expect("vend");
            assert!(cached(&tokens, &vended.token).is_none());
            assert!(tokens.verify_any_issuer(&vended.token).is_ok());
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cheap_signatures_and_services_without_a_pool_sign_at_once() {
        for algorithm in [
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::ES512,
            Algorithm::EdDSA,
            Algorithm::HS256,
        ] {
            let (tokens, tenant, app, user, registration) = fixture(algorithm);
            let tokens = tokens.signing_on(CpuPool::new(1));
            let request = token_request(&tenant, &app, &user, &registration, None);
            let pending = tokens.prepare_access_token(&request).expect("prepare");
            assert!(!pending.is_on_pool(), "{algorithm:?} signs at once");
            let issued = pending.sign().await.expect("signed");
            assert!(cached(&tokens, &issued.token).is_some(), "{algorithm:?}");
            assert!(tokens.verify(&issued.token).is_ok());
        }
        let (tokens, tenant, app, user, registration) = fixture(Algorithm::RS256);
        let request = token_request(&tenant, &app, &user, &registration, None);
        let pending = tokens.prepare_access_token(&request).expect("prepare");
        assert!(!pending.is_on_pool(), "no pool: signed at once");
        assert!(tokens
            .verify(&pending.sign().await.expect("signed").token)
            .is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_key_that_cannot_sign_is_refused_when_prepared_not_on_the_pool() {
        let (tokens, mut tenant, app, user, registration) = fixture(Algorithm::RS256);
        let tokens = tokens.signing_on(CpuPool::new(1));
        tenant.jwt_configuration.access_token_key_id = Some(Uuid::new_v4());
        let request = token_request(&tenant, &app, &user, &registration, None);
        assert_eq!(
            tokens.prepare_access_token(&request).map(drop),
            Err(TokenError::CannotSign)
        );
    }

    #[test]
    fn issued_tokens_carry_fusionauth_claims_and_verify() {
        let (tokens, tenant, app, user, registration) = fixture(Algorithm::RS256);
        let issued = tokens
            .issue_access_token(&token_request(&tenant, &app, &user, &registration, None))
            .expect("issue");
        let claims = tokens.verify(&issued.token).expect("verify");
        for name in [
            "aud",
            "applicationId",
            "authenticationType",
            "email",
            "email_verified",
            "exp",
            "iat",
            "iss",
            "jti",
            "preferred_username",
            "roles",
            "sub",
            "tid",
        ] {
            assert!(claims.claims.contains_key(name), "missing {name}");
        }
        assert_eq!(claims.roles, vec!["admin".to_string()]);
        assert_eq!(
            claims.exp - claims.iat,
            300,
            "the application's TTL applies"
        );
        // Second verification is a cache hit: the same claims, decoded again from the token.
        assert!(cached(&tokens, &issued.token).is_some());
        let again = tokens.verify(&issued.token).expect("verify");
        assert_eq!(claims, again);
        let by_bytes = tokens
            .verify_bytes(issued.token.as_bytes())
            .expect("verify");
        assert_eq!(claims, by_bytes);
        // Bytes that are not text are refused, not decoded.
        let mut garbled = issued.token.clone().into_bytes();
        garbled[10] = 0xff;
        assert_eq!(
            tokens.verify_bytes(&garbled).err(),
            Some(TokenError::Malformed)
        );
    }

    #[test]
    fn tampered_expired_and_unsigned_tokens_are_refused() {
        let (tokens, tenant, _, _, _) = fixture(Algorithm::ES256);
        let vended = tokens
            .vend(&tenant, None, Map::new(), 60)
            .expect("vend")
            .token;
        assert!(tokens.verify(&vended).is_ok());
        let mut parts: Vec<String> = vended.split('.').map(str::to_string).collect();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"exp":4000000000,"iss":"acme.com","sub":"x"}"#);
        parts[1] = payload;
        assert_eq!(
            tokens.verify(&parts.join(".")),
            Err(TokenError::BadSignature)
        );
        let none_header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(tokens.verify(&unsigned).is_err());
        let expired = tokens
            .vend(&tenant, None, Map::new(), -100)
            .expect("vend")
            .token;
        assert_eq!(tokens.verify(&expired), Err(TokenError::Expired));
        assert_eq!(tokens.verify("garbage"), Err(TokenError::Malformed));
    }

    const SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";

    /// A token service with one HS256 key of secret [`SECRET`], its kid, and a signer of raw
    /// headers and claims.
    fn raw_fixture() -> (Tokens, String) {
        raw_fixture_at(Arc::new(SystemClock))
    }

    /// [`raw_fixture`] on `clock`.
    fn raw_fixture_at(clock: Arc<dyn Clock>) -> (Tokens, String) {
        let limits = CacheLimits {
            entries: 100,
            bytes: 1 << 20,
        };
        raw_fixture_with(clock, limits)
    }

    /// A tenant of issuer `acme.com` with the default JWT settings.
    fn acme_tenant() -> Tenant {
        Tenant {
            id: Uuid::new_v4(),
            name: "t".into(),
            issuer: "acme.com".into(),
            jwt_configuration: JwtConfiguration::default(),
            data: None,
        }
    }

    /// [`raw_fixture`] on `clock`, its cache bounded by `limits`.
    fn raw_fixture_with(clock: Arc<dyn Clock>, limits: CacheLimits) -> (Tokens, String) {
        let spec = KeySpec {
            id: Uuid::new_v4(),
            name: "k".into(),
            algorithm: Algorithm::HS256,
            source: KeySource::Secret(SECRET.into()),
        };
        let key = SigningKey::from_spec(&spec, None).expect("key");
        let tenant = acme_tenant();
        let tokens = Tokens::new(
            KeyRing::new(vec![key]),
            std::slice::from_ref(&tenant),
            &[],
            0,
            limits,
            clock,
            Arc::new(Metrics::new()),
        );
        (tokens, spec.id.to_string())
    }

    /// `header.claims` signed with HS256 and [`SECRET`], as written.
    fn signed(header: &Value, claims: &Value) -> String {
        signed_text(header, &claims.to_string())
    }

    /// `header.payload` signed with HS256 and [`SECRET`], the payload as this text.
    fn signed_text(header: &Value, payload: &str) -> String {
        let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
        let input = format!("{}.{}", b64(&header.to_string()), b64(payload));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref());
        format!("{input}.{signature}")
    }

    fn now() -> i64 {
        SystemClock.now_seconds()
    }

    #[test]
    fn crit_and_foreign_typ_headers_are_refused() {
        let (tokens, kid) = raw_fixture();
        let claims = json!({"iss": "acme.com", "exp": now() + 60});
        let accepted = [
            json!({"alg": "HS256", "kid": kid}),
            json!({"alg": "HS256", "kid": kid, "typ": "JWT"}),
            json!({"alg": "HS256", "kid": kid, "typ": "jwt"}),
            json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"}),
            json!({"alg": "HS256", "kid": kid, "typ": "AT+JWT"}),
            json!({"alg": "HS256", "kid": kid, "typ": "application/at+jwt"}),
            json!({"alg": "HS256", "kid": kid, "typ": "Application/JWT"}),
        ];
        for header in accepted {
            assert!(tokens.verify(&signed(&header, &claims)).is_ok(), "{header}");
        }
        let refused = [
            json!({"alg": "HS256", "kid": kid, "crit": ["exp"]}),
            json!({"alg": "HS256", "kid": kid, "crit": []}),
            json!({"alg": "HS256", "kid": kid, "crit": ["b64"], "b64": false}),
            json!({"alg": "HS256", "kid": kid, "typ": "id_token+jwt"}),
            json!({"alg": "HS256", "kid": kid, "typ": "secevent+jwt"}),
            json!({"alg": "HS256", "kid": kid, "typ": "JOSE"}),
            json!({"alg": "HS256", "kid": kid, "typ": "application/jwtx"}),
            json!({"alg": "HS256", "kid": kid, "typ": ""}),
            json!({"alg": "HS256", "kid": kid, "typ": 1}),
            json!({"alg": "HS256", "kid": kid, "typ": ["JWT"]}),
        ];
        for header in refused {
            assert_eq!(
                tokens.verify(&signed(&header, &claims)),
                Err(TokenError::UnsupportedHeader),
                "{header}"
            );
        }
    }

    #[test]
    fn the_ends_of_time_are_times_like_any_other_on_a_miss_and_on_a_hit() {
        let (tokens, kid) = raw_fixture();
        let header = json!({"alg": "HS256", "kid": kid});
        let t = now();
        // The compact form reads an `nbf` of `i64::MIN` as none: the same verdict at any time.
        let cases = [
            (
                json!({"exp": i64::MAX, "nbf": i64::MIN}),
                Ok((i64::MAX, i64::MIN)),
            ),
            (json!({"exp": i64::MAX}), Ok((i64::MAX, i64::MIN))),
            (
                json!({"exp": i64::MAX, "nbf": i64::MAX}),
                Err(TokenError::NotYetValid),
            ),
            (json!({"exp": i64::MIN}), Err(TokenError::Expired)),
            (json!({"exp": t + 60, "nbf": t - 60}), Ok((t + 60, t - 60))),
        ];
        for (claims, expected) in cases {
            let mut claims = claims;
            claims["iss"] = json!("acme.com");
            let token = signed(&header, &claims);
            for round in ["miss", "hit"] {
                let full = tokens.verify(&token);
                let full = full.map(|c| (c.exp, c.not_before.unwrap_or(i64::MIN)));
                assert_eq!(full, expected, "{claims} {round}");
                let edge = at_edge(&tokens, &token);
                let edge = edge.map(|c| (c.exp, c.not_before().unwrap_or(i64::MIN)));
                assert_eq!(edge, expected, "{claims} {round} at the edge");
            }
        }
    }

    #[test]
    fn times_are_numeric_dates_integer_or_not() {
        let (tokens, kid) = raw_fixture();
        let header = json!({"alg": "HS256", "kid": kid});
        let verify = |claims: Value| {
            let mut claims = claims;
            claims["iss"] = json!("acme.com");
            tokens
                .verify(&signed(&header, &claims))
                .map(|c| (c.exp, c.not_before, c.iat))
        };
        let t = now();
        let later = (t + 60) as f64 + 0.5;
        assert_eq!(verify(json!({"exp": later})), Ok((t + 60, None, 0)));
        assert_eq!(
            verify(
                json!({"exp": t + 60, "nbf": (t - 10) as f64 + 0.25, "iat": (t - 10) as f64 + 0.75})
            ),
            Ok((t + 60, Some(t - 9), t - 10))
        );
        assert_eq!(
            verify(json!({"exp": (t - 1) as f64 + 0.5})),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify(json!({"exp": t})),
            Err(TokenError::Expired),
            "expired from exp on"
        );
        assert_eq!(
            verify(json!({"exp": t + 60, "nbf": (t + 30) as f64 + 0.5})),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            verify(json!({"exp": t + 60, "nbf": 1e300})),
            Err(TokenError::Malformed)
        );
        for bad in [
            json!("4000000000"),
            json!(true),
            json!([t + 60]),
            json!({"t": 1}),
            json!(null),
        ] {
            assert_eq!(
                verify(json!({"exp": bad})),
                Err(TokenError::Malformed),
                "exp {bad}"
            );
            assert_eq!(
                verify(json!({"exp": t + 60, "nbf": bad})),
                Err(TokenError::Malformed),
                "nbf {bad}"
            );
            assert_eq!(
                verify(json!({"exp": t + 60, "iat": bad})),
                Err(TokenError::Malformed),
                "iat {bad}"
            );
        }
        assert_eq!(
            verify(json!({"sub": "x"})),
            Err(TokenError::Malformed),
            "exp is required"
        );
    }

    #[test]
    fn a_claim_named_twice_is_refused() {
        let (tokens, kid) = raw_fixture();
        let header = json!({"alg": "HS256", "kid": kid});
        let exp = now() + 60;
        let once = format!(r#"{{"iss":"acme.com","exp":{exp},"roles":["user"]}}"#);
        assert!(tokens.verify(&signed_text(&header, &once)).is_ok());
        for payload in [
            format!(r#"{{"iss":"acme.com","exp":{exp},"roles":["user"],"roles":["admin"]}}"#),
            format!(r#"{{"iss":"acme.com","exp":{exp},"roles":["user"],"r\u006fles":["admin"]}}"#),
            format!(r#"{{"iss":"acme.com","exp":{exp},"exp":{exp}}}"#),
            format!(r#"{{"iss":"acme.com","exp":{exp},"data":{{"a":1,"a":2}}}}"#),
        ] {
            assert_eq!(
                tokens.verify(&signed_text(&header, &payload)),
                Err(TokenError::Malformed),
                "{payload}"
            );
        }
    }

    #[test]
    fn the_cache_weighs_large_tokens_by_their_size() {
        let (tokens, kid) = raw_fixture();
        let header = json!({"alg": "HS256", "kid": kid});
        let roles: Vec<String> = (0..1000).map(|i| format!("role-{i:05}")).collect();
        let big = signed(
            &header,
            &json!({"iss": "acme.com", "exp": now() + 60, "roles": roles}),
        );
        let small = signed(&header, &json!({"iss": "acme.com", "exp": now() + 60}));
        let weigh = |token: &str| {
            tokens.verify(token).expect("verify");
            cached(&tokens, token).expect("cached").estimated_bytes()
        };
        assert!(weigh(&big) > 30_000, "{}", weigh(&big));
        assert!(weigh(&small) < 600, "{}", weigh(&small));
    }

    #[test]
    fn a_cache_hit_needs_the_exact_bytes() {
        let (tokens, tenant, _, _, _) = fixture(Algorithm::HS256);
        let token = tokens
            .vend(&tenant, None, Map::new(), 60)
            .expect("vend")
            .token;
        let first = tokens.verify(&token).expect("verify");
        // Any other bytes are another key: verified on their own, not served from the cache.
        let mut changed = token.clone().into_bytes();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        assert!(tokens.verify_bytes(&changed).is_err());
        assert!(tokens.verify_bytes(format!("{token}x").as_bytes()).is_err());
        assert!(tokens.verify_bytes(&token.as_bytes()[1..]).is_err());
        // The same bytes are a hit.
        let again = tokens.verify(&token).expect("verify");
        assert_eq!(first, again);
        let cache = tokens.cache.as_ref().expect("cache");
        assert_eq!(cache.len(), 1, "refused tokens are not cached");
    }

    /// A clock tests move by hand.
    struct ManualClock(AtomicI64);

    impl Clock for ManualClock {
        fn now_millis(&self) -> i64 {
            self.0.load(Ordering::Relaxed) * 1000
        }
    }

    #[test]
    fn a_cache_hit_is_refused_once_expired_and_leaves_the_cache() {
        let clock = Arc::new(ManualClock(AtomicI64::new(now())));
        let (tokens, kid) = raw_fixture_at(clock.clone());
        let header = json!({"alg": "HS256", "kid": kid});
        let t = now();
        let token = signed(
            &header,
            &json!({"iss": "acme.com", "exp": t + 10, "nbf": t + 2}),
        );
        // Not yet valid: refused, and not cached.
        assert_eq!(tokens.verify(&token), Err(TokenError::NotYetValid));
        clock.0.store(t + 2, Ordering::Relaxed);
        let first = tokens.verify(&token).expect("valid");
        assert!(cached(&tokens, &token).is_some());
        clock.0.store(t + 9, Ordering::Relaxed);
        assert_eq!(first, tokens.verify(&token).expect("a hit"));
        // From its exp second on, the hit is refused and the entry dropped.
        clock.0.store(t + 10, Ordering::Relaxed);
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
        assert!(cached(&tokens, &token).is_none());
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_differing_in_one_byte_of_payload_or_signature_misses() {
        let (tokens, kid) = raw_fixture();
        let header = json!({"alg": "HS256", "kid": kid});
        let token = signed(
            &header,
            &json!({"iss": "acme.com", "exp": now() + 60, "sub": "a"}),
        );
        tokens.verify(&token).expect("valid");
        let dots: Vec<usize> = token.match_indices('.').map(|(i, _)| i).collect();
        // One byte of the payload, one of the signature, one of the header.
        for at in [dots[0] + 3, dots[1] + 3, token.len() - 2, 2] {
            let mut other = token.clone().into_bytes();
            other[at] = if other[at] == b'A' { b'B' } else { b'A' };
            let other = String::from_utf8(other).expect("text");
            assert!(cached(&tokens, &other).is_none(), "byte {at}");
            assert!(tokens.verify(&other).is_err(), "byte {at}");
        }
        // A forged payload with a valid signature of its own key under another secret.
        let forged = {
            let b64 = |t: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(t);
            let payload = json!({"iss": "acme.com", "exp": now() + 60, "sub": "admin"});
            let input = format!("{}.{}", b64(&header.to_string()), b64(&payload.to_string()));
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"another-secret");
            let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
            format!(
                "{input}.{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
            )
        };
        assert!(cached(&tokens, &forged).is_none());
        assert_eq!(tokens.verify(&forged), Err(TokenError::BadSignature));
        assert_eq!(tokens.cache.as_ref().expect("cache").len(), 1);
    }

    #[test]
    fn the_cache_keeps_to_its_byte_bound() {
        let limits = CacheLimits {
            entries: 10_000,
            bytes: 256 << 10,
        };
        let (tokens, kid) = raw_fixture_with(Arc::new(SystemClock), limits);
        let header = json!({"alg": "HS256", "kid": kid});
        for i in 0..2000 {
            let claims = json!({"iss": "acme.com", "exp": now() + 60, "sub": format!("user-{i}")});
            tokens.verify(&signed(&header, &claims)).expect("valid");
        }
        let cache = tokens.cache.as_ref().expect("cache");
        assert!(cache.weight() <= 256 << 10, "{}", cache.weight());
        assert!(cache.len() < 2000 && cache.len() > 100, "{}", cache.len());
    }

    /// [`Tokens::verify_at_edge`], run to completion.
    fn at_edge(tokens: &Tokens, token: &str) -> Result<Arc<CachedToken>, TokenError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(tokens.verify_at_edge(token.as_bytes()))
    }

    #[test]
    fn a_cached_token_keeps_the_planned_header_values_and_no_claim_map() {
        use gatehouse_plugin_api::tokens::ClaimHeader;
        let (tokens, tenant, app, user, registration) = fixture(Algorithm::HS256);
        let tokens = tokens.with_claim_plan(ClaimPlan::of(&["sub", "missing"], &[]));
        let request = token_request(&tenant, &app, &user, &registration, None);
        let token = tokens.issue_access_token(&request).expect("issue").token;
        let first = at_edge(&tokens, &token).expect("valid");
        let expected = http::HeaderValue::from_str(&user.id.to_string()).expect("value");
        assert_eq!(first.header_value("sub"), ClaimHeader::Value(&expected));
        assert_eq!(first.header_value("missing"), ClaimHeader::Absent);
        assert_eq!(first.header_value("email"), ClaimHeader::Unrepresentable);
        // The next request gets the same entry.
        let again = at_edge(&tokens, &token).expect("valid");
        assert!(Arc::ptr_eq(&first, &again));
        // The API still gets every claim, decoded from the token.
        assert_eq!(
            tokens.verify(&token).expect("valid").claims["email"],
            json!("a@b.c")
        );
    }

    #[test]
    fn another_claim_plan_never_serves_values_rendered_for_the_old_one() {
        use gatehouse_plugin_api::tokens::ClaimHeader;
        let (tokens, tenant, _, _, _) = fixture(Algorithm::HS256);
        let mut claims = Map::new();
        claims.insert("email".into(), json!("x@y.z"));
        let token = tokens.vend(&tenant, None, claims, 60).expect("vend").token;
        let tokens = tokens.with_claim_plan(ClaimPlan::of(&["sub"], &[]));
        let old = at_edge(&tokens, &token).expect("valid");
        assert_eq!(old.header_value("email"), ClaimHeader::Unrepresentable);
        assert!(cached(&tokens, &token).is_some());
        // A reload's configuration forwards `email`: the cache is emptied, the token rendered
        // again with the new plan.
        let tokens = tokens.with_claim_plan(ClaimPlan::of(&["sub", "email"], &[]));
        assert!(cached(&tokens, &token).is_none());
        let new = at_edge(&tokens, &token).expect("valid");
        let email = http::HeaderValue::from_static("x@y.z");
        assert_eq!(new.header_value("email"), ClaimHeader::Value(&email));
        // The same plan again keeps what is cached.
        let tokens = tokens.with_claim_plan(ClaimPlan::of(&["sub", "email"], &[]));
        assert!(cached(&tokens, &token).is_some());
    }

    #[test]
    fn revocation_applies_to_cache_hits_at_the_edge() {
        let (tokens, tenant, app, user, registration) = fixture(Algorithm::ES256);
        let request = token_request(&tenant, &app, &user, &registration, Some(Uuid::new_v4()));
        let token = tokens.issue_access_token(&request).expect("issue").token;
        assert!(at_edge(&tokens, &token).is_ok());
        assert!(cached(&tokens, &token).is_some());
        tokens.record_revocation(
            RevocationScope::Session(request.session_id.expect("sid")),
            now(),
        );
        assert_eq!(at_edge(&tokens, &token).err(), Some(TokenError::Revoked));
        assert_eq!(tokens.verify(&token).err(), Some(TokenError::Revoked));
    }

    #[test]
    fn foreign_issuers_are_refused() {
        let (tokens, tenant, _, _, _) = fixture(Algorithm::HS256);
        let mut claims = Map::new();
        claims.insert("iss".into(), json!("evil.example"));
        let token = tokens.vend(&tenant, None, claims, 60).expect("vend").token;
        assert_eq!(tokens.verify(&token), Err(TokenError::InvalidIssuer));
        // The validate API accepts it: the gateway signed it.
        assert!(tokens.verify_any_issuer(&token).is_ok());
    }

    #[test]
    fn a_service_built_by_a_reload_shares_the_revocations_and_keeps_them_as_long() {
        let (tokens, _, _, user, _) = fixture(Algorithm::HS256);
        let (other, _, _, _, _) = fixture(Algorithm::HS256);
        let reloaded = other.sharing_revocations(tokens.revocation_set());
        assert!(Arc::ptr_eq(
            &tokens.revocation_set(),
            &reloaded.revocation_set()
        ));
        // Recorded through the old service (as the revocation sync did before the reload):
        // in force for the new one.
        let now = SystemClock.now_seconds();
        tokens.record_revocation(RevocationScope::User(user.id), now);
        assert_eq!(reloaded.latest_revocation(user.id, None), Some(now));
        // The span only grows: tokens issued under a longer lifetime are still out there.
        let set = reloaded.revocation_set();
        set.keep_at_least(10_000);
        set.keep_at_least(5);
        assert!(set.horizon() <= SystemClock.now_seconds() - 10_000);
    }

    #[test]
    fn a_token_vended_for_longer_than_any_lifetime_keeps_its_revocations_in_force() {
        let clock = Arc::new(ManualClock(AtomicI64::new(now())));
        let (tokens, kid) = raw_fixture_at(clock.clone());
        let tenant = acme_tenant();
        let user = Uuid::new_v4();
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(user));
        let key = Some(Uuid::parse_str(&kid).expect("kid"));
        // Thirty days, against the configuration's one hour.
        let vended = tokens
            .vend(&tenant, key, claims, 30 * 86_400)
            .expect("vend");
        let t = now();
        clock.0.store(t + 1, Ordering::Relaxed);
        tokens.record_revocation(RevocationScope::User(user), t + 1);
        // A week later, far past the configured lifetime: the revocation is still in force.
        clock.0.store(t + 7 * 86_400, Ordering::Relaxed);
        tokens.prune_revocations();
        assert_eq!(tokens.latest_revocation(user, None), Some(t + 1));
        assert_eq!(tokens.verify(&vended.token), Err(TokenError::Revoked));
    }

    #[test]
    fn revocation_applies_to_cached_tokens_issued_before_it() {
        let (tokens, tenant, app, user, registration) = fixture(Algorithm::HS256);
        let request = token_request(&tenant, &app, &user, &registration, None);
        let token = tokens.issue_access_token(&request).expect("issue").token;
        assert!(tokens.verify(&token).is_ok());
        tokens.record_revocation(RevocationScope::User(user.id), SystemClock.now_seconds());
        assert_eq!(tokens.verify(&token), Err(TokenError::Revoked));
    }

    #[test]
    fn a_token_just_signed_is_cached_with_the_claims_a_verification_finds() {
        for algorithm in [Algorithm::RS256, Algorithm::ES256, Algorithm::HS256] {
            let (tokens, tenant, app, user, registration) = fixture(algorithm);
            let request = AccessTokenRequest {
                authentication_type: "REFRESH_TOKEN",
                ..token_request(&tenant, &app, &user, &registration, Some(Uuid::new_v4()))
            };
            let token = tokens.issue_access_token(&request).expect("issue").token;
            let cache = tokens.cache.as_ref().expect("cache");
            let cached = cache
                .get(&cache.digest(token.as_bytes()))
                .expect("cached when signed");
            let now = SystemClock.now_seconds();
            let verified = tokens.verify_uncached(&token, now, true).expect("verifies");
            assert_eq!(cached.facts(), Facts::of(&verified), "{algorithm:?}");
            assert_eq!(cached.key_id(), verified.key_id);
            let roles: Vec<&str> = cached.roles().collect();
            assert_eq!(roles, verified.roles);
            assert_eq!(cached.tenant_id(), verified.tenant_id, "{algorithm:?}");
            assert_eq!(
                cached.issuer(),
                verified.claims["iss"].as_str(),
                "{algorithm:?}"
            );
            assert_eq!(tokens.verify(&token), Ok(Arc::new(verified)));
            // and revocations still apply to it at each lookup
            tokens.record_revocation(RevocationScope::User(user.id), now);
            assert_eq!(tokens.verify(&token), Err(TokenError::Revoked));
        }
    }

    #[test]
    fn a_token_signed_for_an_issuer_the_service_does_not_know_is_not_cached() {
        let (tokens, mut tenant, app, user, registration) = fixture(Algorithm::ES256);
        tenant.issuer = "changed.example".into();
        let request = AccessTokenRequest {
            authentication_type: "REFRESH_TOKEN",
            ..token_request(&tenant, &app, &user, &registration, None)
        };
        let token = tokens.issue_access_token(&request).expect("issue").token;
        assert!(cached(&tokens, &token).is_none());
        assert_eq!(tokens.verify(&token), Err(TokenError::InvalidIssuer));
        // nor one already expired when signed
        let request = AccessTokenRequest {
            tenant: &tokens_tenant(&tokens, &tenant),
            expires_at: Some(SystemClock.now_seconds() - 120),
            ..request
        };
        let token = tokens.issue_access_token(&request).expect("issue").token;
        assert!(cached(&tokens, &token).is_none());
        assert_eq!(tokens.verify(&token), Err(TokenError::Expired));
    }

    /// The cache entry of `token`, if any.
    fn cached(tokens: &Tokens, token: &str) -> Option<Arc<CachedToken>> {
        let cache = tokens.cache.as_ref().expect("cache");
        cache.get(&cache.digest(token.as_bytes()))
    }

    /// `tenant` with the issuer the service knows for it.
    fn tokens_tenant(tokens: &Tokens, tenant: &Tenant) -> Tenant {
        Tenant {
            issuer: tokens.issuers[&tenant.id].clone(),
            ..tenant.clone()
        }
    }

    #[test]
    fn refresh_token_values_are_long_and_url_safe() {
        let (tokens, ..) = fixture(Algorithm::HS256);
        let a = tokens.new_refresh_token_value();
        let b = tokens.new_refresh_token_value();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }
}
