//! The directory on SQLite: tenants and applications, read by plugins ([`Directory`]), and the
//! host's side ([`DirectoryStore`]): their writes, key material, API keys, the health check.

use async_trait::async_trait;
use gatehouse_plugin_api::model::{ApiKey, Application, KeyMaterial, Tenant};
use gatehouse_plugin_api::store::{Directory, StoreError, StoreResult};
use rusqlite::{params, OptionalExtension};
use uuid::Uuid;

use gatehouse_plugin_identity_provider::store::provider_domains;

use super::identity_providers::domain_owner;
use super::{backend, opt_uuid_col, uuid_col, SqliteStore};
use crate::store::rows::encode;
use crate::store::{declared_domain_taken, Declared, DirectoryStore};

const UPSERT_TENANT: &str = "INSERT INTO tenants (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = excluded.body";
const UPSERT_APPLICATION: &str =
    "INSERT INTO applications (id, tenant_id, body) VALUES (?1, ?2, ?3) \
     ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body";
const INSERT_API_KEY: &str =
    "INSERT INTO api_keys (id, key, tenant_id, description) VALUES (?1, ?2, ?3, ?4)";

/// Replaces the stored API keys with `keys` inside `tx`.
fn write_api_keys(tx: &rusqlite::Connection, keys: &[ApiKey]) -> StoreResult<()> {
    tx.execute("DELETE FROM api_keys", []).map_err(backend)?;
    for k in keys {
        tx.execute(
            INSERT_API_KEY,
            params![
                k.id.to_string(),
                k.key,
                k.tenant_id.map(|t| t.to_string()),
                k.description
            ],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// The rows of a [`Declared`], encoded before its transaction: `(id, body)` documents per table
/// and the applications' `(id, tenant id, body)`.
struct DeclaredRows {
    tenants: Vec<(String, String)>,
    applications: Vec<(String, String, String)>,
    api_keys: Vec<ApiKey>,
    documents: Vec<(&'static str, String, String)>,
    /// Each declared provider's id and domains, in the declaration's order.
    provider_domains: Vec<(Uuid, Vec<String>)>,
}

impl DeclaredRows {
    /// Encodes `declared`; `Err` when a document cannot be encoded (nothing is written then).
    fn of(declared: &Declared) -> StoreResult<DeclaredRows> {
        let tenants = declared
            .tenants
            .iter()
            .map(|t| Ok((t.id.to_string(), encode(t)?)))
            .collect::<StoreResult<_>>()?;
        let applications = declared
            .applications
            .iter()
            .map(|a| Ok((a.id.to_string(), a.tenant_id.to_string(), encode(a)?)))
            .collect::<StoreResult<_>>()?;
        let lambdas = declared.lambdas.iter().map(|l| ("lambdas", l));
        let providers = declared
            .identity_providers
            .iter()
            .map(|p| ("identity_providers", p));
        let documents = lambdas
            .chain(providers)
            .map(|(table, (id, body))| Ok((table, id.to_string(), encode(body)?)))
            .collect::<StoreResult<_>>()?;
        let provider_domains = (declared.identity_providers.iter())
            .map(|(id, body)| (*id, provider_domains(body)))
            .collect();
        Ok(DeclaredRows {
            tenants,
            applications,
            api_keys: declared.api_keys.clone(),
            documents,
            provider_domains,
        })
    }

    /// Writes every row inside `tx`; the first failure ends it (and the caller rolls back).
    fn write(&self, tx: &rusqlite::Connection) -> StoreResult<()> {
        for (id, body) in &self.tenants {
            tx.execute(UPSERT_TENANT, params![id, body])
                .map_err(backend)?;
        }
        for (id, tenant, body) in &self.applications {
            tx.execute(UPSERT_APPLICATION, params![id, tenant, body])
                .map_err(backend)?;
        }
        write_api_keys(tx, &self.api_keys)?;
        for (table, id, body) in &self.documents {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = excluded.body"
                ),
                params![id, body],
            )
            .map_err(backend)?;
        }
        self.check_domains(tx)
    }

    /// `Err` ([`declared_domain_taken`]) when a declared provider manages a domain another
    /// provider (declared or not) manages, read after the writes in the same transaction.
    fn check_domains(&self, tx: &rusqlite::Connection) -> StoreResult<()> {
        for (index, (id, domains)) in self.provider_domains.iter().enumerate() {
            for (position, domain) in domains.iter().enumerate() {
                if let Some(owner) = domain_owner(tx, *id, std::slice::from_ref(domain))? {
                    let owner = Uuid::parse_str(&owner).unwrap_or_default();
                    return Err(declared_domain_taken(index, position, owner));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Directory for SqliteStore {
    async fn get_tenant(&self, id: Uuid) -> StoreResult<Option<Tenant>> {
        self.get_document("tenants", id).await
    }
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.list_documents("tenants").await
    }
    async fn get_application(&self, id: Uuid) -> StoreResult<Option<Application>> {
        self.get_document("applications", id).await
    }
    async fn list_applications(&self) -> StoreResult<Vec<Application>> {
        self.list_documents("applications").await
    }
}

#[async_trait]
impl DirectoryStore for SqliteStore {
    /// Healthy means writable: like every call, the check runs in an immediate transaction,
    /// which takes the write lock (a file locked by another process is `Unavailable`).
    async fn ping(&self) -> StoreResult<()> {
        self.tx(|tx| tx.query_row("SELECT 1", [], |_| Ok(())).map_err(backend))
            .await
    }
    async fn upsert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let (id, body) = (tenant.id.to_string(), encode(tenant)?);
        self.tx(move |tx| {
            tx.execute(UPSERT_TENANT, params![id, body])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
    async fn upsert_application(&self, application: &Application) -> StoreResult<()> {
        let (id, tenant, body) = (
            application.id.to_string(),
            application.tenant_id.to_string(),
            encode(application)?,
        );
        self.tx(move |tx| {
            tx.execute(UPSERT_APPLICATION, params![id, tenant, body])
                .map_err(backend)?;
            Ok(())
        })
        .await
    }
    async fn get_key_material(&self, id: Uuid) -> StoreResult<Option<KeyMaterial>> {
        self.tx(move |tx| {
            tx.query_row(
                "SELECT id, algorithm, private_key, secret, insert_instant FROM key_material WHERE id = ?1",
                [id.to_string()],
                |r| {
                    Ok(KeyMaterial {
                        id: uuid_col(r, 0)?,
                        algorithm: r.get(1)?,
                        private_key: r.get(2)?,
                        secret: r.get(3)?,
                        insert_instant: r.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(backend)
        })
        .await
    }
    async fn insert_key_material(&self, material: &KeyMaterial) -> StoreResult<KeyMaterial> {
        let m = material.clone();
        let id = m.id;
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO key_material (id, algorithm, private_key, secret, insert_instant) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                params![
                    m.id.to_string(),
                    m.algorithm,
                    m.private_key,
                    m.secret,
                    m.insert_instant
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await?;
        self.get_key_material(id).await?.ok_or(StoreError::NotFound)
    }
    async fn replace_api_keys(&self, keys: &[ApiKey]) -> StoreResult<()> {
        let keys = keys.to_vec();
        self.tx(move |tx| write_api_keys(tx, &keys)).await
    }
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.tx(|tx| {
            let mut stmt = tx
                .prepare("SELECT id, key, tenant_id, description FROM api_keys ORDER BY id")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ApiKey {
                        id: uuid_col(r, 0)?,
                        key: r.get(1)?,
                        tenant_id: opt_uuid_col(r, 2)?,
                        description: r.get(3)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }
    async fn apply_declared(&self, declared: &Declared) -> StoreResult<()> {
        let rows = DeclaredRows::of(declared)?;
        self.tx(move |tx| rows.write(tx)).await
    }
}
