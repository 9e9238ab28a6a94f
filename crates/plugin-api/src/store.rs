//! The storage ports plugins build against, one small trait per domain: [`Directory`] (tenants
//! and applications, read), [`UserStore`], [`RefreshTokenStore`]; [`Store`] is all of them. One
//! implementation per backend lives in the host (`src/store/`), so a backend can be added
//! without changing callers.
//!
//! Every method is one transaction: a multi-row change is applied whole or not at all.

use std::fmt;

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::{Application, RefreshToken, Registration, Tenant, User};
use crate::tokens::RevocationScope;

/// What a store operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The addressed record does not exist.
    NotFound,
    /// A uniqueness rule or a conditional update failed; the message is safe to show.
    Conflict(String),
    /// The backend cannot be reached (locked, down); the detail is for the log.
    Unavailable(String),
    /// Anything else the backend reported; the detail is for the log.
    Backend(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => write!(f, "not found"),
            StoreError::Conflict(m) => write!(f, "conflict: {m}"),
            StoreError::Unavailable(m) => write!(f, "store unavailable: {m}"),
            StoreError::Backend(m) => write!(f, "store error: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which refresh tokens a revocation addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeScope {
    /// One token by id.
    Id(Uuid),
    /// One token by value.
    Token(String),
    /// All tokens of a user.
    User(Uuid),
    /// All tokens of an application.
    Application(Uuid),
    /// All tokens of a user for one application.
    UserApplication(Uuid, Uuid),
}

impl RevokeScope {
    /// What the edge must refuse once this revocation has revoked `revoked`: the scope itself
    /// for a user, an application or both, and the session (`sid`) of each revoked token. Every
    /// backend records exactly these, in the revocation's transaction.
    pub fn edge_scopes(&self, revoked: &[RefreshToken]) -> Vec<RevocationScope> {
        let mut edge = match self {
            RevokeScope::User(u) => vec![RevocationScope::User(*u)],
            RevokeScope::Application(a) => vec![RevocationScope::Application(*a)],
            RevokeScope::UserApplication(u, a) => vec![RevocationScope::UserApplication(*u, *a)],
            RevokeScope::Id(_) | RevokeScope::Token(_) => Vec::new(),
        };
        edge.extend(revoked.iter().map(|t| RevocationScope::Session(t.id)));
        edge
    }
}

/// What a revocation did, as the store committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The revoked tokens (empty when none matched).
    pub tokens: Vec<RefreshToken>,
    /// What the store recorded for the edge to refuse ([`RevokeScope::edge_scopes`] of
    /// `tokens`), each dated [`Revoked::at`].
    pub edge: Vec<RevocationScope>,
    /// The instant (s) the store dated the revocation, by the rule every node applies
    /// ([`crate::tokens::revocation_instant`]) over what the store holds. A node records this
    /// instant, never one of its own: a clock read before the store's transaction can be a
    /// second earlier under load, and a node then refuses no token another node refuses (or
    /// the other way round).
    pub at: i64,
}

impl Revoked {
    /// A revocation that matched no token and recorded nothing (a value no live token has),
    /// at `now_seconds`.
    pub fn nothing(now_seconds: i64) -> Revoked {
        Revoked {
            tokens: Vec::new(),
            edge: Vec::new(),
            at: now_seconds,
        }
    }
}

/// How long a store remembers a value that one-time-use rotation retired (ms): a day, so a
/// replay is recognised as one (and `onOneTimeTokenReuse` can act) long after the race window.
pub const RETIRED_VALUE_MEMORY_MS: i64 = 86_400_000;

/// The outcome of a one-time-use rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// This call replaced the token; the new value is live and the old one is dead.
    Rotated(RefreshToken),
    /// The old value was already rotated (by a concurrent request or earlier); carries the
    /// token that replaced it, when, and the access token issued with the rotation, so callers
    /// can answer a late request inside the grace period with the same pair.
    AlreadyRotated {
        /// The token now live for this id.
        current: RefreshToken,
        /// When the old value was replaced (ms).
        rotated_at: i64,
        /// The access token issued by the rotation, when it was recorded.
        access_token: Option<String>,
    },
}

/// The directory as plugins read it: tenants and applications (the host writes them from the
/// configuration file at start, see the host's `DirectoryStore`).
#[async_trait]
pub trait Directory: Send + Sync {
    /// The tenant with this id, or `None`.
    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>>;

    /// All tenants.
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;

    /// The application with this id, or `None`.
    async fn get_application(&self, id: Uuid) -> StoreResult<Option<Application>>;

    /// All applications.
    async fn list_applications(&self) -> StoreResult<Vec<Application>>;
}

/// Users and their registrations.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates a user; `Conflict` when the email or username is taken in the tenant.
    async fn create_user(&self, user: &User) -> StoreResult<()>;

    /// Replaces a user; `NotFound` when absent, `Conflict` on a taken email/username.
    async fn update_user(&self, user: &User) -> StoreResult<()>;

    /// The user (without registrations), or `None`.
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>>;

    /// Users with this email in any tenant (case-insensitive).
    async fn find_users_by_email_any_tenant(&self, email: &str) -> StoreResult<Vec<User>>;

    /// The user with this email in the tenant (case-insensitive), or `None`.
    async fn find_user_by_email(&self, tenant_id: Uuid, email: &str) -> StoreResult<Option<User>>;

    /// The user with this username in the tenant (case-insensitive), or `None`.
    async fn find_user_by_username(
        &self,
        tenant_id: Uuid,
        username: &str,
    ) -> StoreResult<Option<User>>;

    /// Inserts or replaces the registration of `registration.user_id` to its application.
    async fn upsert_registration(&self, registration: &Registration) -> StoreResult<()>;

    /// The user's registration to the application, or `None`.
    async fn get_registration(
        &self,
        user_id: Uuid,
        application_id: Uuid,
    ) -> StoreResult<Option<Registration>>;

    /// All of a user's registrations.
    async fn list_registrations(&self, user_id: Uuid) -> StoreResult<Vec<Registration>>;
}

/// Refresh tokens, their one-time-use rotations, and the revocations the edge applies to access
/// tokens.
#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// Stores a new refresh token; durable when this returns.
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;

    /// Stores `token`, made from the refresh token `source_id` (a token one application's
    /// session earns for another), only while `source_id` is still stored: `false` when it is
    /// gone (revoked, or rotated away), nothing written. A revocation of the token's user or
    /// application running at the same time either finds and revokes the new token or makes
    /// this insert find its source gone: the new token never outlives it.
    async fn insert_refresh_token_beside(
        &self,
        token: &RefreshToken,
        source_id: Uuid,
    ) -> StoreResult<bool>;

    /// The live token with this value (compared in constant time), or `None`.
    async fn find_refresh_token(&self, value: &str) -> StoreResult<Option<RefreshToken>>;

    /// The live token with this value (as [`RefreshTokenStore::find_refresh_token`]) and the
    /// records a refresh checks, read in one call (one round trip to the backend): what a
    /// refresh reads before it signs. `None` when no live token has this value.
    async fn find_refresh_subject(&self, value: &str) -> StoreResult<Option<RefreshSubject>>;

    /// The live token with this id, or `None`.
    async fn get_refresh_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>>;

    /// A user's live tokens.
    async fn list_refresh_tokens(&self, user_id: Uuid) -> StoreResult<Vec<RefreshToken>>;

    /// Records a use: last access instant/address and (for sliding windows) the new start and
    /// expiration. `NotFound` when the token is no longer live.
    async fn touch_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;

    /// Replaces the value of `old_value` with `next` (same id) if `old_value` is still the live
    /// value, remembering `outcome` — the access token issued with the rotation and until when
    /// (ms) late requests may be handed it — when given; otherwise reports what replaced it.
    /// One conditional update: two concurrent callers cannot both rotate. `NotFound` when the
    /// value was never issued or its token was revoked.
    async fn rotate_refresh_token(
        &self,
        old_value: &str,
        next: &RefreshToken,
        outcome: Option<(&str, i64)>,
    ) -> StoreResult<Rotation>;

    /// Background upkeep, in bounded batches: clears rotation outcomes past their
    /// `outcome_until` and deletes retired values older than the backend's memory of them.
    /// Returns how many rows it changed.
    async fn prune_rotations(&self, now_ms: i64) -> StoreResult<u64>;

    /// What replaced a value that one-time-use rotation retired: `Some(Rotation::AlreadyRotated
    /// {..})`, or `None` when the value was never rotated (or its token is gone).
    async fn find_rotated_refresh_token(&self, old_value: &str) -> StoreResult<Option<Rotation>>;

    /// Revokes the addressed tokens and, in the same transaction, records the revocation for the
    /// edge (see [`RefreshTokenStore::list_revocations`]): by user, application or both for those scopes,
    /// by session (`sid`) for each token revoked by id or value. Returns the revoked tokens
    /// (empty when none matched; the scope's revocation is recorded all the same), what was
    /// recorded for the edge, and the instant the store dated it (see [`Revoked`]).
    async fn revoke_refresh_tokens(&self, scope: &RevokeScope) -> StoreResult<Revoked>;

    /// Records that tokens of `scope` issued at or before `instant_seconds` are revoked.
    async fn add_revocation(
        &self,
        scope: &RevocationScope,
        instant_seconds: i64,
    ) -> StoreResult<()>;

    /// Revocations recorded at or after `since_seconds` (older ones cannot matter any more).
    async fn list_revocations(
        &self,
        since_seconds: i64,
    ) -> StoreResult<Vec<(RevocationScope, i64)>>;
}

/// A refresh token and the records a refresh checks before it signs: its user, the user's
/// tenant, its application and the user's registration to it, each `None` when missing.
#[derive(Debug, Clone)]
pub struct RefreshSubject {
    /// The live token.
    pub token: RefreshToken,
    /// Its user.
    pub user: Option<User>,
    /// The user's tenant (`None` also when the user is missing).
    pub tenant: Option<Tenant>,
    /// Its application (`None` also when the token has none).
    pub application: Option<Application>,
    /// The user's registration to that application (`None` also without user or application).
    pub registration: Option<Registration>,
}

/// The records a refresh of `token` checks, read one call at a time from `store`: for a
/// backend without a combined read, and for a token found otherwise (a rotation's current
/// token). Returns them, each `None` when missing.
pub async fn read_refresh_subject<S: Directory + UserStore + ?Sized>(
    store: &S,
    token: RefreshToken,
) -> StoreResult<RefreshSubject> {
    let user = store.get_user(token.user_id).await?;
    let tenant = match &user {
        Some(user) => store.get_tenant(user.tenant_id).await?,
        None => None,
    };
    let (application, registration) = match (token.application_id, &user) {
        (Some(application_id), Some(user)) => (
            store.get_application(application_id).await?,
            store.get_registration(user.id, application_id).await?,
        ),
        (Some(application_id), None) => (store.get_application(application_id).await?, None),
        (None, _) => (None, None),
    };
    Ok(RefreshSubject {
        token,
        user,
        tenant,
        application,
        registration,
    })
}

/// Everything the refresh-token rules and the plugins read and write through the host's
/// context, as one object: a value implementing the three ports is a `Store`. (A plugin with
/// records of its own declares its own port, e.g. the identity-provider plugin's.)
pub trait Store: Directory + UserStore + RefreshTokenStore {}

impl<T: Directory + UserStore + RefreshTokenStore + ?Sized> Store for T {}
