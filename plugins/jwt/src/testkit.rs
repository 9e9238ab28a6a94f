//! Test doubles for handler tests: an in-memory [`Store`], a [`TokenService`] that "signs" by
//! remembering claims (no crypto), a settable [`Clock`], and a [`Kit`] with two tenants, a few
//! applications, users and API keys. Also a minimal `block_on`, the fakes never being pending.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use gatehouse_plugin_api::model::{
    ApiKey, Application, JwtConfiguration, LoginConfiguration, RefreshToken, RefreshTokenMetaData,
    Registration, Tenant, User,
};
use gatehouse_plugin_api::store::{
    read_refresh_subject, Directory, RefreshSubject, RefreshTokenStore, RevokeScope, Revoked,
    Rotation, StoreResult, UserStore, RETIRED_VALUE_MEMORY_MS,
};
use gatehouse_plugin_api::tokens::{PublicKeyInfo, RevocationScope};
use gatehouse_plugin_api::{
    AccessTokenRequest, ApiKeyRing, Clock, IssuedToken, PluginContext, StoreError, TokenError,
    TokenService, VerifiedClaims,
};
use gatehouse_refresh::issue_refresh_token;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Runs a future that never waits (the fakes answer at once).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// --- clock -----------------------------------------------------------------------------------

/// A clock tests move by hand.
#[derive(Debug)]
pub struct FakeClock(AtomicI64);

impl FakeClock {
    /// Moves time forward.
    pub fn advance_millis(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

// --- store -----------------------------------------------------------------------------------

#[derive(Default)]
struct State {
    tenants: Vec<Tenant>,
    applications: Vec<Application>,
    users: Vec<User>,
    registrations: Vec<Registration>,
    tokens: Vec<RefreshToken>,
    /// Values one-time-use rotation retired.
    rotated: Vec<Retired>,
    /// Edge revocations: scope and instant (seconds), the latest per scope.
    revocations: Vec<(RevocationScope, i64)>,
}

/// A retired value: what replaced it, when, and the rotation's outcome while it is kept.
struct Retired {
    old_value: String,
    id: Uuid,
    rotated_at: i64,
    /// The access token issued with the rotation, and until when (ms) it is handed out.
    outcome: Option<(String, i64)>,
}

/// An in-memory store with the semantics the trait documents.
#[derive(Default)]
pub struct FakeStore {
    state: Mutex<State>,
    /// When set, `find_refresh_token` also returns tokens for values rotated away (as they were),
    /// as a store keeping old values for the grace period would.
    pub find_rotated: std::sync::atomic::AtomicBool,
    /// When set, `rotate_refresh_token` commits the rotation and then answers `Unavailable`, as
    /// a store whose acknowledgement of the commit was lost does.
    pub lose_rotation_ack: std::sync::atomic::AtomicBool,
    /// When set, `rotate_refresh_token` answers `Unavailable` without rotating.
    pub fail_rotation: std::sync::atomic::AtomicBool,
    /// When set, `rotate_refresh_token` commits the rotation and then never answers, as a
    /// store whose reply is still on its way when the request is abandoned.
    pub stall_after_rotation: std::sync::atomic::AtomicBool,
    clock: Option<Arc<FakeClock>>,
}

impl FakeStore {
    /// `rotate_refresh_token` without its stall: the store's answer.
    fn rotate_now(
        &self,
        old_value: &str,
        next: &RefreshToken,
        outcome: Option<(&str, i64)>,
    ) -> StoreResult<Rotation> {
        let mut s = lock(&self.state);
        if let Some(t) = s.tokens.iter_mut().find(|t| t.token == old_value) {
            if t.id != next.id {
                return Err(StoreError::Conflict(
                    "rotation must keep the token id".into(),
                ));
            }
            *t = next.clone();
            s.rotated.push(Retired {
                old_value: old_value.to_string(),
                id: next.id,
                rotated_at: next.insert_instant,
                outcome: outcome.map(|(token, until)| (token.to_string(), until)),
            });
            if self.lose_rotation_ack.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("acknowledgement lost".into()));
            }
            return Ok(Rotation::Rotated(next.clone()));
        }
        retired(&s, old_value).ok_or(StoreError::NotFound)
    }

    fn now(&self) -> i64 {
        self.clock.as_ref().map(|c| c.now_millis()).unwrap_or(0)
    }

    /// The live token with this value.
    pub fn token_by_value(&self, value: &str) -> Option<RefreshToken> {
        lock(&self.state)
            .tokens
            .iter()
            .find(|t| t.token == value)
            .cloned()
    }

    /// Number of live tokens.
    pub fn token_count(&self) -> usize {
        lock(&self.state).tokens.len()
    }

    /// Changes an application in place.
    pub fn update_application(&self, id: Uuid, f: impl FnOnce(&mut Application)) {
        if let Some(a) = lock(&self.state)
            .applications
            .iter_mut()
            .find(|a| a.id == id)
        {
            f(a);
        }
    }

    /// Changes a tenant in place.
    pub fn update_tenant(&self, id: Uuid, f: impl FnOnce(&mut Tenant)) {
        if let Some(t) = lock(&self.state).tenants.iter_mut().find(|t| t.id == id) {
            f(t);
        }
    }

    /// Changes a user in place.
    pub fn update_user(&self, id: Uuid, f: impl FnOnce(&mut User)) {
        if let Some(u) = lock(&self.state).users.iter_mut().find(|u| u.id == id) {
            f(u);
        }
    }
}

/// What replaced a retired value, as the real stores answer it (with the rotation's outcome
/// while it is kept).
fn retired(s: &State, old_value: &str) -> Option<Rotation> {
    let retired = s.rotated.iter().find(|r| r.old_value == old_value)?;
    let current = s.tokens.iter().find(|t| t.id == retired.id)?;
    Some(Rotation::AlreadyRotated {
        current: current.clone(),
        rotated_at: retired.rotated_at,
        access_token: retired.outcome.as_ref().map(|(token, _)| token.clone()),
    })
}

/// Records an edge revocation, keeping the latest instant per scope.
fn record_revocation(s: &mut State, scope: &RevocationScope, instant: i64) {
    match s.revocations.iter_mut().find(|(known, _)| known == scope) {
        Some((_, at)) => *at = (*at).max(instant),
        None => s.revocations.push((*scope, instant)),
    }
}

/// True when `user` has this email (`Some`) or this username, ignoring case.
fn same_login(user: &User, email: Option<&str>, username: Option<&str>) -> bool {
    let equal = |a: &Option<String>, b: Option<&str>| match (a, b) {
        (Some(a), Some(b)) => a.to_lowercase() == b.to_lowercase(),
        _ => false,
    };
    equal(&user.email, email) || equal(&user.username, username)
}

#[async_trait]
impl Directory for FakeStore {
    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        Ok(lock(&self.state)
            .tenants
            .iter()
            .find(|t| t.id == id)
            .cloned())
    }
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        Ok(lock(&self.state).tenants.clone())
    }
    async fn get_application(&self, id: Uuid) -> StoreResult<Option<Application>> {
        Ok(lock(&self.state)
            .applications
            .iter()
            .find(|a| a.id == id)
            .cloned())
    }
    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        Ok(lock(&self.state).applications.clone())
    }
}

/// Refuses a user whose email or username no real store could index, as they do.
fn indexable(user: &User) -> StoreResult<()> {
    use gatehouse_plugin_api::indexed::{check, Indexed};
    let keys = [
        (Indexed::Email, user.email.as_deref()),
        (Indexed::Username, user.username.as_deref()),
    ];
    for (kind, value) in keys {
        if let Some(flaw) = value.and_then(|v| check(kind, v).err()) {
            return Err(StoreError::Backend(format!("{kind:?} {flaw}")));
        }
    }
    Ok(())
}

#[async_trait]
impl UserStore for FakeStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        indexable(user)?;
        let mut s = lock(&self.state);
        let taken = s.users.iter().any(|u| {
            u.id == user.id
                || (u.tenant_id == user.tenant_id
                    && same_login(u, user.email.as_deref(), user.username.as_deref()))
        });
        if taken {
            return Err(StoreError::Conflict(
                "a user has this email or username".into(),
            ));
        }
        s.users.push(user.clone());
        Ok(())
    }
    async fn update_user(&self, user: &User) -> StoreResult<()> {
        indexable(user)?;
        let mut s = lock(&self.state);
        if !s.users.iter().any(|u| u.id == user.id) {
            return Err(StoreError::NotFound);
        }
        let taken = s.users.iter().any(|u| {
            u.id != user.id
                && u.tenant_id == user.tenant_id
                && same_login(u, user.email.as_deref(), user.username.as_deref())
        });
        if taken {
            return Err(StoreError::Conflict(
                "a user has this email or username".into(),
            ));
        }
        match s.users.iter_mut().find(|u| u.id == user.id) {
            Some(u) => {
                *u = user.clone();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
        Ok(lock(&self.state).users.iter().find(|u| u.id == id).cloned())
    }
    async fn find_users_by_email_any_tenant(&self, email: &str) -> StoreResult<Vec<User>> {
        let s = lock(&self.state);
        let found = s.users.iter().filter(|u| same_login(u, Some(email), None));
        Ok(found.cloned().collect())
    }
    async fn find_user_by_email(&self, tenant_id: Uuid, email: &str) -> StoreResult<Option<User>> {
        let s = lock(&self.state);
        let found = s
            .users
            .iter()
            .find(|u| u.tenant_id == tenant_id && same_login(u, Some(email), None));
        Ok(found.cloned())
    }
    async fn find_user_by_username(
        &self,
        tenant_id: Uuid,
        username: &str,
    ) -> StoreResult<Option<User>> {
        let s = lock(&self.state);
        let found = s
            .users
            .iter()
            .find(|u| u.tenant_id == tenant_id && same_login(u, None, Some(username)));
        Ok(found.cloned())
    }
    async fn upsert_registration(&self, registration: &Registration) -> StoreResult<()> {
        let mut s = lock(&self.state);
        s.registrations.retain(|r| {
            !(r.user_id == registration.user_id && r.application_id == registration.application_id)
        });
        s.registrations.push(registration.clone());
        Ok(())
    }
    async fn get_registration(
        &self,
        user_id: Uuid,
        application_id: Uuid,
    ) -> StoreResult<Option<Registration>> {
        Ok(lock(&self.state)
            .registrations
            .iter()
            .find(|r| r.user_id == Some(user_id) && r.application_id == application_id)
            .cloned())
    }
    async fn list_registrations(&self, user_id: Uuid) -> StoreResult<Vec<Registration>> {
        Ok(lock(&self.state)
            .registrations
            .iter()
            .filter(|r| r.user_id == Some(user_id))
            .cloned()
            .collect())
    }
}

#[async_trait]
impl RefreshTokenStore for FakeStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        lock(&self.state).tokens.push(token.clone());
        Ok(())
    }
    async fn insert_refresh_token_beside(
        &self,
        token: &RefreshToken,
        source_id: Uuid,
    ) -> StoreResult<bool> {
        let mut state = lock(&self.state);
        if !state.tokens.iter().any(|t| t.id == source_id) {
            return Ok(false);
        }
        state.tokens.push(token.clone());
        Ok(true)
    }
    async fn find_refresh_token(&self, value: &str) -> StoreResult<Option<RefreshToken>> {
        let s = lock(&self.state);
        if let Some(t) = s.tokens.iter().find(|t| t.token == value) {
            return Ok(Some(t.clone()));
        }
        if self.find_rotated.load(Ordering::SeqCst) {
            if let Some(retired) = s.rotated.iter().find(|r| r.old_value == value) {
                if let Some(t) = s.tokens.iter().find(|t| t.id == retired.id) {
                    let mut as_was = t.clone();
                    as_was.token = retired.old_value.clone();
                    return Ok(Some(as_was));
                }
            }
        }
        Ok(None)
    }
    async fn find_refresh_subject(&self, value: &str) -> StoreResult<Option<RefreshSubject>> {
        match self.find_refresh_token(value).await? {
            Some(token) => read_refresh_subject(self, token).await.map(Some),
            None => Ok(None),
        }
    }
    async fn get_refresh_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        Ok(lock(&self.state)
            .tokens
            .iter()
            .find(|t| t.id == id)
            .cloned())
    }
    async fn list_refresh_tokens(&self, user_id: Uuid) -> StoreResult<Vec<RefreshToken>> {
        Ok(lock(&self.state)
            .tokens
            .iter()
            .filter(|t| t.user_id == user_id)
            .cloned()
            .collect())
    }
    async fn touch_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let mut s = lock(&self.state);
        match s.tokens.iter_mut().find(|t| t.id == token.id) {
            Some(t) => {
                t.start_instant = token.start_instant;
                t.expiration_instant = token.expiration_instant;
                t.meta_data = token.meta_data.clone();
                Ok(())
            }
            None => Err(StoreError::NotFound),
        }
    }
    async fn rotate_refresh_token(
        &self,
        old_value: &str,
        next: &RefreshToken,
        outcome: Option<(&str, i64)>,
    ) -> StoreResult<Rotation> {
        if self.fail_rotation.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("rotation failed".into()));
        }
        let answer = self.rotate_now(old_value, next, outcome);
        if matches!(answer, Ok(Rotation::Rotated(_)))
            && self.stall_after_rotation.load(Ordering::SeqCst)
        {
            std::future::pending::<()>().await;
        }
        answer
    }
    async fn prune_rotations(&self, now_ms: i64) -> StoreResult<u64> {
        let mut s = lock(&self.state);
        let mut changed = 0;
        for retired in &mut s.rotated {
            if retired
                .outcome
                .as_ref()
                .is_some_and(|(_, until)| *until < now_ms)
            {
                retired.outcome = None;
                changed += 1;
            }
        }
        let before = s.rotated.len();
        s.rotated
            .retain(|r| r.rotated_at >= now_ms - RETIRED_VALUE_MEMORY_MS);
        Ok(changed + (before - s.rotated.len()) as u64)
    }
    async fn find_rotated_refresh_token(&self, old_value: &str) -> StoreResult<Option<Rotation>> {
        Ok(retired(&lock(&self.state), old_value))
    }
    async fn revoke_refresh_tokens(&self, scope: &RevokeScope) -> StoreResult<Revoked> {
        let mut s = lock(&self.state);
        let matches = |t: &RefreshToken| match scope {
            RevokeScope::Id(id) => t.id == *id,
            RevokeScope::Token(v) => t.token == *v,
            RevokeScope::User(u) => t.user_id == *u,
            RevokeScope::Application(a) => t.application_id == Some(*a),
            RevokeScope::UserApplication(u, a) => t.user_id == *u && t.application_id == Some(*a),
        };
        let (revoked, kept): (Vec<_>, Vec<_>) = s.tokens.drain(..).partition(|t| matches(t));
        s.tokens = kept;
        let edges = scope.edge_scopes(&revoked);
        let known: Vec<_> = s.revocations.clone();
        let at = gatehouse_plugin_api::tokens::revocation_instant(
            &edges,
            self.now() / 1000,
            known.iter().map(|(scope, at)| (scope, *at)),
        );
        for edge in &edges {
            record_revocation(&mut s, edge, at);
        }
        Ok(Revoked {
            tokens: revoked,
            edge: edges,
            at,
        })
    }
    async fn add_revocation(&self, scope: &RevocationScope, instant: i64) -> StoreResult<()> {
        record_revocation(&mut lock(&self.state), scope, instant);
        Ok(())
    }
    async fn list_revocations(&self, since: i64) -> StoreResult<Vec<(RevocationScope, i64)>> {
        let s = lock(&self.state);
        let recent = s.revocations.iter().filter(|(_, at)| *at >= since);
        Ok(recent.cloned().collect())
    }
}

/// The directory writes the suite seeds with (the host's `DirectoryStore` is not reachable
/// from a plugin crate).
impl FakeStore {
    pub async fn upsert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let mut s = lock(&self.state);
        s.tenants.retain(|t| t.id != tenant.id);
        s.tenants.push(tenant.clone());
        Ok(())
    }
    pub async fn upsert_application(&self, application: &Application) -> StoreResult<()> {
        let mut s = lock(&self.state);
        s.applications.retain(|a| a.id != application.id);
        s.applications.push(application.clone());
        Ok(())
    }
}

// --- tokens ----------------------------------------------------------------------------------

/// A vended token, as the fake recorded it.
#[derive(Debug, Clone)]
pub struct Vended {
    /// The tenant it was vended in.
    pub tenant_id: Uuid,
    /// Its lifetime.
    pub ttl: i64,
    /// The claims given.
    pub claims: Map<String, Value>,
}

/// A token service that "signs" by remembering the claims of each token it hands out.
pub struct FakeTokens {
    clock: Arc<FakeClock>,
    issued: Mutex<HashMap<String, Arc<VerifiedClaims>>>,
    vended: Mutex<HashMap<String, Vended>>,
    revocations: Mutex<Vec<(RevocationScope, i64)>>,
    key_id: String,
    /// When set, signing fails.
    pub fail_signing: std::sync::atomic::AtomicBool,
    /// When set, access tokens prepared for async callers are signed on a pool, as RSA keys
    /// are by the host's token service, and the signing step behaves as this says.
    pub pool_signing: Mutex<Option<PoolSigning>>,
}

/// How the signing step of a token prepared on a pool behaves (see [`FakeTokens`]).
#[derive(Clone)]
pub enum PoolSigning {
    /// It signs.
    Signs,
    /// Its thread panics.
    Panics,
    /// It sends on `started` when it starts, then waits for `release` before it signs.
    Gated {
        /// Told when the step has started.
        started: std::sync::mpsc::SyncSender<()>,
        /// Waited for before signing.
        release: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    },
}

impl FakeTokens {
    /// The claims of an issued token.
    pub fn claims_of(&self, token: &str) -> Option<Arc<VerifiedClaims>> {
        lock(&self.issued).get(token).cloned()
    }

    /// A vended token's record.
    pub fn vended(&self, token: &str) -> Option<Vended> {
        lock(&self.vended).get(token).cloned()
    }

    /// Every recorded revocation.
    pub fn revocations(&self) -> Vec<(RevocationScope, i64)> {
        lock(&self.revocations).clone()
    }
}

impl TokenService for FakeTokens {
    fn prepare_access_token(
        &self,
        request: &AccessTokenRequest<'_>,
    ) -> Result<gatehouse_plugin_api::PendingToken, TokenError> {
        let signing = lock(&self.pool_signing).clone();
        let issued = self.issue_access_token(request)?;
        let Some(signing) = signing else {
            return Ok(gatehouse_plugin_api::PendingToken::signed(issued));
        };
        let pool = gatehouse_plugin_api::CpuPool::new(1);
        Ok(gatehouse_plugin_api::PendingToken::on_pool(
            pool,
            move || match signing {
                PoolSigning::Signs => Ok(issued),
                PoolSigning::Panics => panic!("the signing step failed"),
                PoolSigning::Gated { started, release } => {
                    started.send(()).expect("the test waits");
                    lock(&release).recv().expect("the test releases");
                    Ok(issued)
                }
            },
        ))
    }

    fn issue_access_token(
        &self,
        request: &AccessTokenRequest<'_>,
    ) -> Result<IssuedToken, TokenError> {
        if self.fail_signing.load(Ordering::SeqCst) {
            return Err(TokenError::CannotSign);
        }
        let now = self.clock.now_seconds();
        let exp = request.expires_at.unwrap_or(
            now + request
                .tenant
                .jwt_configuration
                .time_to_live_in_seconds
                .unwrap_or(3600),
        );
        let jti = Uuid::new_v4();
        let registered = request.registration.is_some();
        let application_id = request.application.filter(|_| registered).map(|a| a.id);
        let mut claims = Map::new();
        claims.insert("sub".into(), json!(request.user.id));
        claims.insert("exp".into(), json!(exp));
        claims.insert("iat".into(), json!(now));
        claims.insert("iss".into(), json!(request.tenant.issuer));
        claims.insert("tid".into(), json!(request.tenant.id));
        claims.insert("jti".into(), json!(jti));
        claims.insert(
            "authenticationType".into(),
            json!(request.authentication_type),
        );
        if let Some(app) = application_id {
            claims.insert("applicationId".into(), json!(app));
            claims.insert("aud".into(), json!(app));
        }
        if let Some(sid) = request.session_id {
            claims.insert("sid".into(), json!(sid));
        }
        let token = format!("at-{jti}");
        let verified = VerifiedClaims {
            claims,
            key_id: self.key_id.clone(),
            exp,
            iat: now,
            not_before: None,
            subject: Some(request.user.id),
            application_id,
            tenant_id: Some(request.tenant.id),
            session_id: request.session_id,
            roles: Vec::new(),
            audience: application_id.map(|app| vec![app]),
            header_values: Default::default(),
        };
        lock(&self.issued).insert(token.clone(), Arc::new(verified));
        Ok(IssuedToken {
            token,
            expiration_instant: exp * 1000,
            jti,
        })
    }

    fn vend(
        &self,
        tenant: &Tenant,
        _key_id: Option<Uuid>,
        claims: Map<String, Value>,
        ttl_seconds: i64,
    ) -> Result<IssuedToken, TokenError> {
        let jti = Uuid::new_v4();
        let token = format!("vt-{jti}");
        lock(&self.vended).insert(
            token.clone(),
            Vended {
                tenant_id: tenant.id,
                ttl: ttl_seconds,
                claims,
            },
        );
        Ok(IssuedToken {
            token,
            expiration_instant: (self.clock.now_seconds() + ttl_seconds) * 1000,
            jti,
        })
    }

    fn verify(&self, token: &str) -> Result<Arc<VerifiedClaims>, TokenError> {
        let claims = self.claims_of(token).ok_or(TokenError::BadSignature)?;
        if claims.exp <= self.clock.now_seconds() {
            return Err(TokenError::Expired);
        }
        let revoked = lock(&self.revocations).iter().any(|(scope, at)| {
            claims.iat <= *at
                && match scope {
                    RevocationScope::User(u) => claims.subject == Some(*u),
                    RevocationScope::Application(a) => claims.application_id == Some(*a),
                    RevocationScope::UserApplication(u, a) => {
                        claims.subject == Some(*u) && claims.application_id == Some(*a)
                    }
                    RevocationScope::Session(s) => claims.session_id == Some(*s),
                }
        });
        if revoked {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    fn public_keys(&self) -> Vec<PublicKeyInfo> {
        vec![PublicKeyInfo {
            key_id: self.key_id.clone(),
            algorithm: "RS256".into(),
            pem: "PEM-1".into(),
            jwk: json!({"kid": self.key_id, "kty": "RSA", "alg": "RS256", "use": "sig"}),
        }]
    }

    fn has_key(&self, key_id: &str) -> bool {
        key_id == self.key_id || key_id == "hmac-key"
    }

    fn new_refresh_token_value(&self) -> String {
        format!("rt-{}", Uuid::new_v4().simple())
    }

    fn record_revocation(&self, scope: RevocationScope, instant_seconds: i64) {
        lock(&self.revocations).push((scope, instant_seconds));
    }
}

// --- kit -------------------------------------------------------------------------------------

/// A populated world: `tenant` (named Default) with `app` and `app2` (both generate refresh
/// tokens; `user` registered to both) and `app3` (nobody registered); `other_tenant` with
/// `other_app` and `other_user`; `user2` in `tenant`, registered to `app`.
pub struct Kit {
    /// The context handed to handlers.
    pub context: PluginContext,
    /// The store behind it.
    pub store: Arc<FakeStore>,
    /// The token service behind it.
    pub tokens: Arc<FakeTokens>,
    /// The clock behind it.
    pub clock: Arc<FakeClock>,
    /// The key id of the (only) public key.
    pub key_id: String,
    /// The default tenant.
    pub tenant: Tenant,
    /// Another tenant.
    pub other_tenant: Tenant,
    /// An application of `tenant`.
    pub app: Application,
    /// Another application of `tenant`.
    pub app2: Application,
    /// An application of `tenant` `user` is not registered to.
    pub app3: Application,
    /// An application of `other_tenant`.
    pub other_app: Application,
    /// A user of `tenant`.
    pub user: User,
    /// Another user of `tenant`.
    pub user2: User,
    /// A user of `other_tenant`.
    pub other_user: User,
}

impl Kit {
    /// An API key for every tenant.
    pub const GLOBAL_KEY: &'static str = "global-api-key";
    /// An API key locked to `tenant`.
    pub const TENANT_KEY: &'static str = "tenant-api-key";
    /// An API key locked to `other_tenant`.
    pub const OTHER_TENANT_KEY: &'static str = "other-tenant-api-key";

    /// The world, at 1,000,000,000,000 ms.
    pub fn new() -> Kit {
        let clock = Arc::new(FakeClock(AtomicI64::new(1_000_000_000_000)));
        let key_id = Uuid::new_v4().to_string();
        let tokens = Arc::new(FakeTokens {
            clock: clock.clone(),
            issued: Mutex::default(),
            vended: Mutex::default(),
            revocations: Mutex::default(),
            key_id: key_id.clone(),
            fail_signing: Default::default(),
            pool_signing: Mutex::default(),
        });
        let store = Arc::new(FakeStore {
            clock: Some(clock.clone()),
            ..FakeStore::default()
        });
        let key_uuid = Uuid::parse_str(&key_id).ok();
        let tenant_of = |name: &str| Tenant {
            id: Uuid::new_v4(),
            name: name.into(),
            issuer: format!("{}.example.com", name.to_lowercase()),
            jwt_configuration: JwtConfiguration {
                access_token_key_id: key_uuid,
                ..Default::default()
            },
            data: None,
        };
        let other_tenant = tenant_of("Other");
        let tenant = tenant_of("Default");
        let app_of = |tenant: &Tenant, name: &str| Application {
            id: Uuid::new_v4(),
            tenant_id: tenant.id,
            name: name.into(),
            roles: vec![],
            login_configuration: LoginConfiguration {
                generate_refresh_tokens: true,
                ..Default::default()
            },
            jwt_configuration: JwtConfiguration::default(),
            active: true,
            data: None,
        };
        let app = app_of(&tenant, "app");
        let app2 = app_of(&tenant, "app2");
        let app3 = app_of(&tenant, "app3");
        let other_app = app_of(&other_tenant, "other");
        let user_of = |tenant: &Tenant, email: &str| User {
            id: Uuid::new_v4(),
            tenant_id: tenant.id,
            email: Some(email.into()),
            active: true,
            ..Default::default()
        };
        let user = user_of(&tenant, "user@example.com");
        let user2 = user_of(&tenant, "user2@example.com");
        let other_user = user_of(&other_tenant, "other@example.com");
        let registration = |user: &User, app: &Application| Registration {
            id: Uuid::new_v4(),
            application_id: app.id,
            user_id: Some(user.id),
            ..Default::default()
        };
        block_on(async {
            // the other tenant first, so "first" and "Default" differ
            for t in [&other_tenant, &tenant] {
                let _ = store.upsert_tenant(t).await;
            }
            for a in [&app, &app2, &app3, &other_app] {
                let _ = store.upsert_application(a).await;
            }
            for u in [&user, &user2, &other_user] {
                let _ = store.create_user(u).await;
            }
            for (u, a) in [
                (&user, &app),
                (&user, &app2),
                (&user2, &app),
                (&other_user, &other_app),
            ] {
                let _ = store.upsert_registration(&registration(u, a)).await;
            }
        });
        let api_keys = ApiKeyRing::new(vec![
            ApiKey {
                id: Uuid::new_v4(),
                key: Self::GLOBAL_KEY.into(),
                tenant_id: None,
                description: None,
            },
            ApiKey {
                id: Uuid::new_v4(),
                key: Self::TENANT_KEY.into(),
                tenant_id: Some(tenant.id),
                description: None,
            },
            ApiKey {
                id: Uuid::new_v4(),
                key: Self::OTHER_TENANT_KEY.into(),
                tenant_id: Some(other_tenant.id),
                description: None,
            },
        ]);
        let context = PluginContext {
            store: store.clone(),
            tokens: tokens.clone(),
            api_keys: Arc::new(api_keys),
            clock: clock.clone(),
            secure_cookies: false,
            // FusionAuth's rule alone: a retired value is refused at once without a grace
            // period (the race window is tested on its own).
            race_window_ms: 0,
            rotations: Arc::default(),
            cpu: gatehouse_plugin_api::CpuPool::default(),
            http: Arc::new(gatehouse_plugin_api::Offline),
            remote_keys: Arc::new(gatehouse_plugin_api::Offline),
        };
        Kit {
            context,
            store,
            tokens,
            clock,
            key_id,
            tenant,
            other_tenant,
            app,
            app2,
            app3,
            other_app,
            user,
            user2,
            other_user,
        }
    }

    /// An access token for `user` (no application), issued now.
    pub fn access_token_for(&self, user: &User) -> String {
        let tenant = if user.tenant_id == self.other_tenant.id {
            &self.other_tenant
        } else {
            &self.tenant
        };
        self.tokens
            .issue_access_token(&AccessTokenRequest {
                user,
                tenant,
                application: None,
                registration: None,
                authentication_type: "PASSWORD",
                expires_at: None,
                session_id: None,
            })
            .map(|t| t.token)
            .unwrap_or_default()
    }

    /// A stored refresh token for `user` and `application`, under the current policy.
    pub fn refresh_token_for(
        &self,
        user: &User,
        application: Option<&Application>,
    ) -> RefreshToken {
        let tenant = block_on(self.store.get_tenant(user.tenant_id))
            .ok()
            .flatten()
            .unwrap_or_else(|| self.tenant.clone());
        let application =
            application.and_then(|a| block_on(self.store.get_application(a.id)).ok().flatten());
        block_on(issue_refresh_token(
            crate::common::refresh_env(&self.context),
            user,
            &tenant,
            application.as_ref(),
            RefreshTokenMetaData::default(),
        ))
        .unwrap_or_else(|e| panic!("issue_refresh_token: {e}"))
    }
}

/// The in-memory store passes the same port suite as the real backends.
#[cfg(test)]
mod store_suite {
    use super::*;
    use gatehouse_plugin_api::store_suite::{SuiteFixture, SuiteStore};

    #[async_trait]
    impl SuiteStore for FakeStore {
        async fn seed(&self, tenants: &[Tenant], applications: &[Application]) {
            for tenant in tenants {
                self.upsert_tenant(tenant).await.expect("tenant");
            }
            for application in applications {
                self.upsert_application(application)
                    .await
                    .expect("application");
            }
        }
    }

    struct Fixture(FakeStore);

    impl SuiteFixture for Fixture {
        fn store(&self) -> &dyn SuiteStore {
            &self.0
        }
    }

    async fn fixture() -> Fixture {
        Fixture(FakeStore::default())
    }

    gatehouse_plugin_api::store_port_suite!(fixture);
}
