//! Storage: the ports (small traits beside their domains: the plugin API's [`Directory`],
//! `UserStore` and `RefreshTokenStore`, the identity-provider plugin's `IdentityProviderStore`,
//! the host's [`DirectoryStore`] and the revocation feed's [`feed::RevocationFeed`]), one module per
//! backend ([`sqlite`] for one gateway, [`postgres`] for a cluster of gateways sharing one
//! database) implementing all of them, and the row logic both backends share. [`open`] picks the
//! backend from the configured location and hands it out as a [`GatewayStore`];
//! [`configured::ConfiguredStore`] is the view a node's plugins read it through (tenants and
//! applications from the node's own configuration).
//!
//! The shared test suite in `suite.rs` runs against every backend.

pub mod configured;
pub mod feed;
pub mod postgres;
pub mod rows;
pub mod sqlite;
#[cfg(test)]
mod suite;

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_plugin_api::clock::Clock;
use gatehouse_plugin_api::model::{ApiKey, Application, KeyMaterial, Tenant};
use gatehouse_plugin_api::store::{Directory, Store, StoreError, StoreResult};
use gatehouse_plugin_identity_provider::IdentityProviderStore;

use feed::RevocationFeed;
use uuid::Uuid;

/// The host's side of the directory: writes of tenants and applications (applied from the
/// configuration file at start), key material, API keys, and the health check.
#[async_trait]
pub trait DirectoryStore: Directory {
    /// Checks the backend answers; used by `/health`.
    async fn ping(&self) -> StoreResult<()>;

    /// Inserts or replaces a tenant.
    async fn upsert_tenant(&self, tenant: &Tenant) -> StoreResult<()>;

    /// Inserts or replaces an application.
    async fn upsert_application(&self, application: &Application) -> StoreResult<()>;

    /// Stored material for a key id, or `None` when none was stored yet.
    async fn get_key_material(&self, id: Uuid) -> StoreResult<Option<KeyMaterial>>;

    /// Stores material for a key id unless some is already stored; returns what is stored
    /// afterwards (the existing material wins a race between two starting gateways).
    async fn insert_key_material(&self, material: &KeyMaterial) -> StoreResult<KeyMaterial>;

    /// Replaces the set of API keys declared by configuration with `keys`.
    async fn replace_api_keys(&self, keys: &[ApiKey]) -> StoreResult<()>;

    /// All API keys.
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>>;

    /// Writes everything a configuration file declares in one transaction: the tenants and
    /// applications (inserted or replaced), the API keys (replacing the stored set), the lambdas
    /// and identity providers (inserted or replaced by id). `Ok` when all of it was committed;
    /// `Err` when any write failed, and then nothing was written; among them a declared provider
    /// managing a domain another provider manages ([`declared_domain_taken`]: one provider per
    /// domain holds for the file's providers as for the API's).
    async fn apply_declared(&self, declared: &Declared) -> StoreResult<()>;
}

/// What a configuration file declares for the store (see [`DirectoryStore::apply_declared`]).
#[derive(Debug, Clone, Default)]
pub struct Declared {
    /// Tenants, inserted or replaced.
    pub tenants: Vec<Tenant>,
    /// Applications, inserted or replaced.
    pub applications: Vec<Application>,
    /// The API keys, which replace the stored set.
    pub api_keys: Vec<ApiKey>,
    /// Lambdas with an id: the id and the document, inserted or replaced.
    pub lambdas: Vec<(Uuid, serde_json::Value)>,
    /// Identity providers with an id: the id and the document, inserted or replaced.
    pub identity_providers: Vec<(Uuid, serde_json::Value)>,
}

/// Every port a backend implements: what the plugins and the refresh rules use through the
/// host's context ([`Store`]), the identity-provider plugin's own port, the host's
/// [`DirectoryStore`], and the revocation feed (pushed on PostgreSQL, none on SQLite).
pub trait GatewayStore: Store + IdentityProviderStore + DirectoryStore + RevocationFeed {}

impl<T: Store + IdentityProviderStore + DirectoryStore + RevocationFeed + ?Sized> GatewayStore
    for T
{
}

/// How long a health check waits for the store. A locked SQLite file or a stalled PostgreSQL
/// connection makes calls wait (SQLite's busy timeout, queued behind other calls); a health
/// check answers within this bound instead, as unavailable.
pub const HEALTH_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The store's answer to a health check: `Ok` when it answered a trivial query within
/// [`HEALTH_CHECK_WAIT`], else why not (no answer in time is `Unavailable`).
pub async fn check_health(store: &dyn GatewayStore) -> StoreResult<()> {
    match tokio::time::timeout(HEALTH_CHECK_WAIT, store.ping()).await {
        Ok(answer) => answer,
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer within {} s",
            HEALTH_CHECK_WAIT.as_secs()
        ))),
    }
}

/// How [`DirectoryStore::apply_declared`] names a declared provider's domain that another
/// provider manages: `identityProviders[index].domains[position]` (the index in
/// [`Declared::identity_providers`], the file's order), then why, after `: `.
const DECLARED_DOMAIN_PREFIX: &str = "identityProviders[";

/// The conflict refusing a [`Declared`] whose provider `index` (in
/// [`Declared::identity_providers`]) has, at `position` of its `domains`, a domain provider
/// `owner` manages.
pub fn declared_domain_taken(index: usize, position: usize, owner: Uuid) -> StoreError {
    StoreError::Conflict(format!(
        "{DECLARED_DOMAIN_PREFIX}{index}].domains[{position}]: this domain is already managed by the identity provider [{owner}]"
    ))
}

/// The configuration path and the message of a [`declared_domain_taken`] conflict; `None` for
/// any other error.
pub fn declared_problem(error: &StoreError) -> Option<(String, String)> {
    match error {
        StoreError::Conflict(m) if m.starts_with(DECLARED_DOMAIN_PREFIX) => m
            .split_once(": ")
            .map(|(path, why)| (path.to_string(), why.to_string())),
        _ => None,
    }
}

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite database file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

/// Opens (creating and migrating when needed) the store at `location`. For PostgreSQL this
/// connects the pool, checks the server answers and applies pending migrations. Every instant
/// the store writes itself is `clock`'s.
pub async fn open(
    location: &StoreLocation,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn GatewayStore>, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path, clock)?)),
        StoreLocation::Postgres(url) => {
            Ok(Arc::new(postgres::PostgresStore::open(url, clock).await?))
        }
    }
}
