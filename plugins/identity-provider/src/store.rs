//! The plugin's storage ports: identity providers, links, lambdas, the debug event log, and a
//! login's write of user, registration and link in one transaction ([`IdentityProviderStore`]);
//! the hosted-backend login's shared state, its signing key and the one-use `state`s
//! ([`LoginStateStore`]). The host's backends (`src/store/`) implement both; the plugin gets
//! them when it is built ([`crate::build`]). Providers and lambdas are created insert-only, and
//! no two providers manage one domain ([`ProviderWrite`]), however many gateways write at once.

use async_trait::async_trait;
use gatehouse_plugin_api::model::{EventLog, IdentityProviderLink, Registration, User};
use gatehouse_plugin_api::store::StoreResult;
use serde_json::Value;
use uuid::Uuid;

/// What the browser login (`{basePath}/login` → provider → `{basePath}/callback`) shares between
/// the gateways of a cluster, so that a callback may reach any of them: the key that signs the
/// login-state cookie, and the `state`s already completed.
#[async_trait]
pub trait LoginStateStore: Send + Sync {
    /// Stores `candidate` as the login-state key unless one is stored already; returns the key
    /// stored afterwards (the first gateway's wins a race between two starting gateways, and
    /// every later start and reload reads the same key).
    async fn login_state_key(&self, candidate: &[u8]) -> StoreResult<Vec<u8>>;

    /// Records that the login `state` (a digest of it: the caller passes what it wants kept)
    /// was completed, accepted until `expires` (seconds since the epoch), in one insert-if-absent.
    /// `Ok(true)` when this call recorded it, `Ok(false)` when it was already recorded (a
    /// replayed callback, on this gateway or another). Records expired at `now` (seconds) are
    /// pruned on the way, a bounded batch per call.
    async fn use_login_state(&self, state: &str, expires: i64, now: i64) -> StoreResult<bool>;
}

/// What a conditional write of a provider did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderWrite {
    /// The document was written.
    Written,
    /// Nothing was written: an insert found a provider with this id.
    IdTaken,
    /// Nothing was written: a replace found the stored document changed meanwhile.
    Changed,
    /// Nothing was written: another provider manages one of the document's `domains`.
    DomainTaken,
    /// Nothing was written: the lambda the document names ([`provider_lambda`]) is gone.
    LambdaMissing,
}

/// The ids of the providers among `providers` that name the lambda `lambda`.
pub fn lambda_users(providers: &[Value], lambda: Uuid) -> Vec<Uuid> {
    providers
        .iter()
        .filter(|p| provider_lambda(p) == Some(lambda))
        .filter_map(|p| p.get("id").and_then(Value::as_str))
        .filter_map(|id| Uuid::parse_str(id).ok())
        .collect()
}

/// The reconcile lambda a provider document names (`lambdaConfiguration.reconcileId`), if any.
/// The stores check it exists with the provider's write, and a lambda's delete checks no
/// provider names it with its own: of a provider naming a lambda and the lambda's delete
/// running at once, one fails.
pub fn provider_lambda(provider: &Value) -> Option<Uuid> {
    provider
        .get("lambdaConfiguration")
        .and_then(|l| l.get("reconcileId"))
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
}

/// The domains a provider document manages, as the stores compare them: the strings of its
/// `domains` (stored lower-cased and trimmed, [`crate::provider::normalize`]).
pub fn provider_domains(provider: &Value) -> Vec<String> {
    provider
        .get("domains")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// How a login's write of its link meets the link stored for its provider, tenant and
/// provider user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkWrite {
    /// The login found no link: written only while there is still none and, with a `limit`,
    /// while the user has fewer than `limit` links to the provider (counted in the write's
    /// transaction, so a Link API create racing the login cannot pass it either).
    Insert {
        /// The provider's link limit for the user's tenant.
        limit: Option<u64>,
    },
    /// The login found the link to its user: rewritten only while it still links that user.
    ReplaceOwn,
}

/// What [`IdentityProviderStore::insert_link`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkInsert {
    /// The link is written.
    Written,
    /// The provider user is linked in the tenant already; nothing written.
    Taken,
    /// The user has the provider's link limit already; nothing written.
    LimitReached,
}

/// The most expired login states one [`LoginStateStore::use_login_state`] call prunes.
pub const LOGIN_STATE_PRUNE_BATCH: i64 = 100;

/// The identity-provider plugin's records: providers, links, lambdas, the event log, and a
/// login's write of user, registration and link in one transaction; with the login states
/// ([`LoginStateStore`]).
#[async_trait]
pub trait IdentityProviderStore: LoginStateStore + Send + Sync {
    /// Writes what a login changed, in one transaction, whole or not at all: the user (created
    /// when `expected_user` is `None`, else replaced only while the stored user still has
    /// `expected_user`'s `lastUpdateInstant`, its version: a writer must move it forward), the
    /// registration when given, and the link as `link_write` says. `Ok(false)` when the user
    /// changed meanwhile, `Conflict` when a unique value is taken or the link is not as the
    /// login read it (linked meanwhile, or unlinked or relinked by the Link API): nothing was
    /// written, and the login should start over or answer the conflict.
    async fn save_login(
        &self,
        user: &User,
        expected_user: Option<&User>,
        registration: Option<&Registration>,
        link: &IdentityProviderLink,
        link_write: LinkWrite,
    ) -> StoreResult<bool>;

    /// Inserts provider `id`, never replacing one: [`ProviderWrite::IdTaken`] when a provider
    /// has this id, [`ProviderWrite::DomainTaken`] when another provider manages one of its
    /// `domains` ([`provider_domains`]); nothing is written then. Checked and written in one
    /// transaction that excludes every other provider write, so concurrent creates with one id
    /// or one domain leave exactly one written.
    async fn insert_identity_provider(
        &self,
        id: Uuid,
        provider: &Value,
    ) -> StoreResult<ProviderWrite>;

    /// The identity provider document, or `None`.
    async fn get_identity_provider(&self, id: Uuid) -> StoreResult<Option<Value>>;

    /// Replaces provider `id` with `provider` only while the stored document is still
    /// `expected` and no other provider manages one of its `domains` (checked and written as
    /// [`IdentityProviderStore::insert_identity_provider`] is): [`ProviderWrite::Changed`] when
    /// a concurrent change came first, [`ProviderWrite::DomainTaken`], and nothing was written
    /// then; `NotFound` when it is gone.
    async fn replace_identity_provider(
        &self,
        id: Uuid,
        expected: &Value,
        provider: &Value,
    ) -> StoreResult<ProviderWrite>;

    /// All identity provider documents.
    async fn list_identity_providers(&self) -> StoreResult<Vec<Value>>;

    /// Deletes a provider and its links; `NotFound` when absent.
    async fn delete_identity_provider(&self, id: Uuid) -> StoreResult<()>;

    /// Inserts a link, never replacing one (links are keyed by provider, tenant and provider
    /// user id): [`LinkInsert::Taken`] when the provider user is linked in the tenant,
    /// [`LinkInsert::LimitReached`] when the user already has `limit` links to the provider;
    /// nothing is written then. Checked and written in one transaction that excludes every
    /// other link write for the user, so concurrent creates cannot pass a limit together.
    async fn insert_link(
        &self,
        link: &IdentityProviderLink,
        limit: Option<u64>,
    ) -> StoreResult<LinkInsert>;

    /// Links matching every given filter.
    async fn find_links(
        &self,
        identity_provider_id: Option<Uuid>,
        user_id: Option<Uuid>,
        identity_provider_user_id: Option<&str>,
    ) -> StoreResult<Vec<IdentityProviderLink>>;

    /// Deletes one link; returns it, or `NotFound`.
    async fn delete_link(
        &self,
        identity_provider_id: Uuid,
        identity_provider_user_id: &str,
        user_id: Uuid,
    ) -> StoreResult<IdentityProviderLink>;

    /// Inserts lambda `id`, never replacing one: `false` when a lambda has this id (nothing
    /// written), so of concurrent creates with one id exactly one is written.
    async fn insert_lambda(&self, id: Uuid, lambda: &Value) -> StoreResult<bool>;

    /// The lambda document, or `None`.
    async fn get_lambda(&self, id: Uuid) -> StoreResult<Option<Value>>;

    /// Replaces lambda `id` with `lambda` only while the stored document is still `expected`
    /// (one conditional update): `false` when a concurrent change came first and nothing was
    /// written; `NotFound` when it is gone.
    async fn replace_lambda(&self, id: Uuid, expected: &Value, lambda: &Value)
        -> StoreResult<bool>;

    /// All lambda documents.
    async fn list_lambdas(&self) -> StoreResult<Vec<Value>>;

    /// Deletes a lambda no provider names ([`provider_lambda`]), checked with the delete and
    /// excluding provider writes meanwhile: the ids of the providers that name it (nothing
    /// deleted then), empty when it was deleted; `NotFound` when absent.
    async fn delete_lambda(&self, id: Uuid) -> StoreResult<Vec<Uuid>>;

    /// Appends an event; returns its id.
    async fn add_event(&self, log_type: &str, message: &str) -> StoreResult<i64>;

    /// The newest `limit` events, newest first.
    async fn list_events(&self, limit: u32) -> StoreResult<Vec<EventLog>>;
}
