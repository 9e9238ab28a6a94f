//! Storage: the ports (small traits beside their domains: the plugin API's [`Directory`],
//! `UserStore` and `RefreshTokenStore`, the host's [`DirectoryStore`] here), one module per
//! backend ([`sqlite`] for one gateway, [`postgres`] for a cluster of gateways sharing one
//! database) implementing all of them, and the row logic both backends share. [`open`] picks the
//! backend from the configured location and hands it out as a [`GatewayStore`].
//!
//! The shared test suite in `suite.rs` runs against every backend.

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod suite;

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_plugin_api::model::{ApiKey, Application, KeyMaterial, Tenant};
use gatehouse_plugin_api::store::{Directory, Store, StoreError, StoreResult};
use gatehouse_plugin_api::tokens::RevocationScope;
use gatehouse_plugin_identity_provider::IdentityProviderStore;
use uuid::Uuid;

use crate::config::StoreLocation;

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
}

/// Every port a backend implements: what the plugins and the refresh rules use through the
/// host's context ([`Store`]), the identity-provider plugin's own port, and the host's
/// [`DirectoryStore`].
pub trait GatewayStore: Store + IdentityProviderStore + DirectoryStore {}

impl<T: Store + IdentityProviderStore + DirectoryStore + ?Sized> GatewayStore for T {}

/// Opens (creating and migrating when needed) the store at `location`. For PostgreSQL this
/// connects the pool, checks the server answers and applies pending migrations.
pub async fn open(location: &StoreLocation) -> Result<Arc<dyn GatewayStore>, StoreError> {
    match location {
        StoreLocation::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path)?)),
        StoreLocation::Postgres(url) => Ok(Arc::new(postgres::PostgresStore::open(url).await?)),
    }
}

/// The row form of a revocation scope: kind and up to two ids.
pub(crate) fn revocation_row(scope: &RevocationScope) -> (&'static str, String, String) {
    match scope {
        RevocationScope::User(u) => ("user", u.to_string(), String::new()),
        RevocationScope::Application(a) => ("application", a.to_string(), String::new()),
        RevocationScope::UserApplication(u, a) => {
            ("user_application", u.to_string(), a.to_string())
        }
        RevocationScope::Session(s) => ("session", s.to_string(), String::new()),
    }
}

/// The scope of a revocation row; `None` for a row this version does not know.
pub(crate) fn revocation_scope(kind: &str, first: &str, second: &str) -> Option<RevocationScope> {
    let first = Uuid::parse_str(first).ok()?;
    Some(match kind {
        "user" => RevocationScope::User(first),
        "application" => RevocationScope::Application(first),
        "user_application" => {
            RevocationScope::UserApplication(first, Uuid::parse_str(second).ok()?)
        }
        "session" => RevocationScope::Session(first),
        _ => return None,
    })
}

/// Decodes a stored JSON document whatever its depth: the reader's recursion limit is off and
/// the stack grows as needed, so a record written before the document limits existed (or by
/// another tool) stays readable, and can be repaired or deleted through the API. New writes are
/// held to the limits of `gatehouse_plugin_api::json` before they reach the store.
pub(crate) fn decode_document<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(serde_stacker::Deserializer::new(&mut deserializer))?;
    deserializer.end()?;
    Ok(value)
}

/// A user as its row, for every backend: the lower-cased login ids (the unique keys within a
/// tenant) and the body, without registrations (they have rows of their own).
pub(crate) struct UserRow {
    pub id: Uuid,
    pub tenant: Uuid,
    pub email: Option<String>,
    pub username: Option<String>,
    pub body: String,
}

impl UserRow {
    /// The row of `user`.
    pub fn of(user: &gatehouse_plugin_api::model::User) -> Result<UserRow, StoreError> {
        let mut stored = user.clone();
        stored.registrations.clear();
        Ok(UserRow {
            id: user.id,
            tenant: user.tenant_id,
            email: user.email.as_ref().map(|e| e.to_lowercase()),
            username: user.username.as_ref().map(|u| u.to_lowercase()),
            body: serde_json::to_string(&stored)
                .map_err(|e| StoreError::Backend(format!("encode: {e}")))?,
        })
    }
}

/// How a user row is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserWrite {
    /// A new user (`Conflict` when its email or username is taken in the tenant).
    Insert,
    /// Replaces the stored user, whatever it is now.
    Replace,
    /// Replaces the stored user only while its `lastUpdateInstant` is still this.
    ReplaceIf(i64),
}

impl UserWrite {
    /// The version an update must find, when it must find one.
    pub fn expected(self) -> Option<i64> {
        match self {
            UserWrite::ReplaceIf(version) => Some(version),
            UserWrite::Insert | UserWrite::Replace => None,
        }
    }
}

/// SHA-256 of a refresh token value, hex: the lookup key, so the index never holds values
/// that could be compared byte by byte.
pub fn token_hash(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
