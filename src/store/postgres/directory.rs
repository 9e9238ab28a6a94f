//! The directory on PostgreSQL: tenants and applications, read by plugins ([`Directory`]), and
//! the host's side ([`DirectoryStore`]): their writes, key material, API keys, the health check.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gatehouse_plugin_api::model::{ApiKey, Application, KeyMaterial, Tenant};
use gatehouse_plugin_api::store::{Directory, StoreError, StoreResult};
use gatehouse_plugin_identity_provider::store::provider_domains;
use uuid::Uuid;

use super::identity_providers::{domain_owner, lock_providers};
use super::{col, execute, pg, query, query_opt, PostgresStore, API_KEYS_LOCK};
use crate::store::rows::encode;
use crate::store::{declared_domain_taken, Declared, DirectoryStore};

const UPSERT_TENANT: &str = "INSERT INTO tenants (id, body) VALUES ($1, $2) \
     ON CONFLICT (id) DO UPDATE SET body = excluded.body";
const UPSERT_APPLICATION: &str =
    "INSERT INTO applications (id, tenant_id, body) VALUES ($1, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body";

/// Replaces the stored API keys with `keys` inside `tx` (under the API keys' lock, so two nodes
/// replacing them at once do not interleave).
async fn write_api_keys<C: GenericClient>(tx: &C, keys: &[ApiKey]) -> StoreResult<()> {
    execute(tx, "SELECT pg_advisory_xact_lock($1)", &[&API_KEYS_LOCK]).await?;
    execute(tx, "DELETE FROM api_keys", &[]).await?;
    for k in keys {
        execute(
            tx,
            "INSERT INTO api_keys (id, key, tenant_id, description) VALUES ($1, $2, $3, $4)",
            &[&k.id, &k.key, &k.tenant_id, &k.description],
        )
        .await?;
    }
    Ok(())
}

/// The error of a declared row without its encoded body (a bug: the bodies are encoded from
/// the same lists).
fn missing_body() -> StoreError {
    StoreError::Backend("a declared row without its encoded body".into())
}

/// Writes every row of `declared` (encoded in `bodies`: tenants, applications, then lambdas
/// and identity providers, in that order) inside `tx`; the first failure ends it.
async fn write_declared<C: GenericClient>(
    tx: &C,
    declared: &Declared,
    bodies: &[String],
) -> StoreResult<()> {
    let mut bodies = bodies.iter();
    for tenant in &declared.tenants {
        let body = bodies.next().ok_or_else(missing_body)?;
        execute(tx, UPSERT_TENANT, &[&tenant.id, body]).await?;
    }
    for application in &declared.applications {
        let body = bodies.next().ok_or_else(missing_body)?;
        execute(
            tx,
            UPSERT_APPLICATION,
            &[&application.id, &application.tenant_id, body],
        )
        .await?;
    }
    write_api_keys(tx, &declared.api_keys).await?;
    // Before any provider is written: the domains checked below stay as read until the commit.
    lock_providers(tx).await?;
    let lambdas = declared.lambdas.iter().map(|(id, _)| ("lambdas", id));
    let providers = declared
        .identity_providers
        .iter()
        .map(|(id, _)| ("identity_providers", id));
    for (table, id) in lambdas.chain(providers) {
        let body = bodies.next().ok_or_else(missing_body)?;
        execute(
            tx,
            &format!(
                "INSERT INTO {table} (id, body) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body"
            ),
            &[id, body],
        )
        .await?;
    }
    check_declared_domains(tx, declared).await
}

/// `Err` ([`declared_domain_taken`]) when a declared provider manages a domain another
/// provider (declared or not) manages, read after the writes in the same transaction.
async fn check_declared_domains<C: GenericClient>(tx: &C, declared: &Declared) -> StoreResult<()> {
    for (index, (id, body)) in declared.identity_providers.iter().enumerate() {
        for (position, domain) in provider_domains(body).into_iter().enumerate() {
            if let Some(owner) = domain_owner(tx, *id, &[domain]).await? {
                return Err(declared_domain_taken(index, position, owner));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Directory for PostgresStore {
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
impl DirectoryStore for PostgresStore {
    async fn ping(&self) -> StoreResult<()> {
        self.run(|c| async move {
            query(&c, "SELECT 1", &[]).await?;
            Ok(())
        })
        .await
    }
    async fn upsert_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        let (id, body) = (tenant.id, encode(tenant)?);
        self.run(move |c| async move {
            execute(&c, UPSERT_TENANT, &[&id, &body]).await?;
            Ok(())
        })
        .await
    }
    async fn upsert_application(&self, application: &Application) -> StoreResult<()> {
        let (id, tenant, body) = (application.id, application.tenant_id, encode(application)?);
        self.run(move |c| async move {
            execute(&c, UPSERT_APPLICATION, &[&id, &tenant, &body]).await?;
            Ok(())
        })
        .await
    }
    async fn get_key_material(&self, id: Uuid) -> StoreResult<Option<KeyMaterial>> {
        self.run(move |c| async move {
            let Some(row) = query_opt(
                &c,
                "SELECT id, algorithm, private_key, secret, insert_instant FROM key_material WHERE id = $1",
                &[&id],
            )
            .await?
            else {
                return Ok(None);
            };
            Ok(Some(KeyMaterial {
                id: col(&row, 0)?,
                algorithm: col(&row, 1)?,
                private_key: col(&row, 2)?,
                secret: col(&row, 3)?,
                insert_instant: col(&row, 4)?,
            }))
        })
        .await
    }
    async fn insert_key_material(&self, material: &KeyMaterial) -> StoreResult<KeyMaterial> {
        let m = material.clone();
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // A concurrent insert of the same id makes this wait for it, then do nothing; the
            // select below (a new snapshot) then reads the winner's material.
            execute(
                &tx,
                "INSERT INTO key_material (id, algorithm, private_key, secret, insert_instant) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                &[
                    &m.id,
                    &m.algorithm,
                    &m.private_key,
                    &m.secret,
                    &m.insert_instant,
                ],
            )
            .await?;
            let row = query_opt(
                &tx,
                "SELECT id, algorithm, private_key, secret, insert_instant FROM key_material WHERE id = $1",
                &[&m.id],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
            let stored = KeyMaterial {
                id: col(&row, 0)?,
                algorithm: col(&row, 1)?,
                private_key: col(&row, 2)?,
                secret: col(&row, 3)?,
                insert_instant: col(&row, 4)?,
            };
            tx.commit().await.map_err(pg)?;
            Ok(stored)
        })
        .await
    }
    async fn replace_api_keys(&self, keys: &[ApiKey]) -> StoreResult<()> {
        let keys = keys.to_vec();
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            write_api_keys(&tx, &keys).await?;
            tx.commit().await.map_err(pg)?;
            Ok(())
        })
        .await
    }
    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.run(|c| async move {
            query(
                &c,
                "SELECT id, key, tenant_id, description FROM api_keys ORDER BY id",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(ApiKey {
                    id: col(r, 0)?,
                    key: col(r, 1)?,
                    tenant_id: col(r, 2)?,
                    description: col(r, 3)?,
                })
            })
            .collect()
        })
        .await
    }
    async fn apply_declared(&self, declared: &Declared) -> StoreResult<()> {
        let tenants = declared.tenants.iter().map(encode);
        let applications = declared.applications.iter().map(encode);
        let documents = declared
            .lambdas
            .iter()
            .chain(&declared.identity_providers)
            .map(|(_, body)| encode(body));
        let bodies = tenants
            .chain(applications)
            .chain(documents)
            .collect::<StoreResult<Vec<_>>>()?;
        let declared = declared.clone();
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            write_declared(&tx, &declared, &bodies).await?;
            tx.commit().await.map_err(pg)?;
            Ok(())
        })
        .await
    }
}
