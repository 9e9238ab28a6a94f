//! The identity-provider plugin's records on PostgreSQL ([`IdentityProviderStore`]): providers,
//! the login's user, registration and link written together, links, lambdas, the event log;
//! and the browser login's shared state ([`LoginStateStore`]). Providers and lambdas are
//! created insert-only; a provider is written only while no other manages one of its domains
//! (its writes take a table lock: see [`lock_providers`]).

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use deadpool_postgres::GenericClient;
use gatehouse_plugin_api::model::{EventLog, IdentityProviderLink, Registration, User};
use gatehouse_plugin_api::store::{StoreError, StoreResult};
use gatehouse_plugin_identity_provider::store::{
    lambda_users, provider_domains, provider_lambda, LinkInsert, LinkWrite, ProviderWrite,
    LOGIN_STATE_PRUNE_BATCH,
};
use gatehouse_plugin_identity_provider::{IdentityProviderStore, LoginStateStore};
use serde_json::Value;
use uuid::Uuid;

use super::users::{write_registration, write_user};
use super::{col, execute, get_body, list_bodies, pg, query, query_opt, PostgresStore};
use crate::store::rows::{conflict_is_not_found, encode, link_taken, LinkRow, LoginRows};

/// Writes a link as `how` says: inserted only while the provider user has no link in the
/// tenant (a concurrent insert of the same link waits for the first's commit, then inserts
/// nothing), or rewritten only while it still links the same user. `Err(Conflict)` when that
/// condition fails (nothing written: the caller drops its transaction), `NotFound` when the
/// provider is gone.
pub(super) async fn write_link<C: GenericClient>(
    c: &C,
    row: &LinkRow,
    how: LinkWrite,
) -> StoreResult<()> {
    if let LinkWrite::Insert { limit: Some(max) } = how {
        // The user's row is locked first (a login's user write holds it already): link writes
        // for one user take turns, so their counts cannot pass the limit together.
        lock_user(c, row.user).await?;
        if count_links(c, row.provider, row.user).await? >= max {
            return Err(link_taken());
        }
    }
    let sql = match how {
        LinkWrite::Insert { .. } => {
            "INSERT INTO identity_provider_links \
             (identity_provider_id, identity_provider_user_id, user_id, body, tenant_id) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (identity_provider_id, identity_provider_user_id, tenant_id) DO NOTHING"
        }
        LinkWrite::ReplaceOwn => {
            "UPDATE identity_provider_links SET body = $4 WHERE identity_provider_id = $1 \
             AND identity_provider_user_id = $2 AND user_id = $3 AND tenant_id = $5"
        }
    };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
        &row.provider,
        &row.provider_user,
        &row.user,
        &row.body,
        &row.tenant,
    ];
    let written = execute(c, sql, &params)
        .await
        .map_err(conflict_is_not_found)?;
    match written {
        1 => Ok(()),
        _ => Err(link_taken()),
    }
}

/// Locks `user`'s row against other writers of it until the transaction ends (none when the
/// user does not exist).
async fn lock_user<C: GenericClient>(c: &C, user: Uuid) -> StoreResult<()> {
    execute(
        c,
        "SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE",
        &[&user],
    )
    .await?;
    Ok(())
}

/// How many links `user` has to `provider`.
async fn count_links<C: GenericClient>(c: &C, provider: Uuid, user: Uuid) -> StoreResult<u64> {
    let counted = query_opt(
        c,
        "SELECT COUNT(*) FROM identity_provider_links \
         WHERE identity_provider_id = $1 AND user_id = $2",
        &[&provider, &user],
    )
    .await?;
    let count: i64 = counted.map(|r| col(&r, 0)).transpose()?.unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

/// True when `lambda` is `None` or a stored lambda.
async fn lambda_exists<C: GenericClient>(c: &C, lambda: Option<Uuid>) -> StoreResult<bool> {
    let Some(lambda) = lambda else {
        return Ok(true);
    };
    let found = query_opt(c, "SELECT 1 FROM lambdas WHERE id = $1", &[&lambda]).await?;
    Ok(found.is_some())
}

/// Locks the providers against every other write until the transaction ends (reads go on):
/// a domain checked free stays free until this transaction has written, on every gateway.
pub(super) async fn lock_providers<C: GenericClient>(tx: &C) -> StoreResult<()> {
    execute(
        tx,
        "LOCK TABLE identity_providers IN SHARE ROW EXCLUSIVE MODE",
        &[],
    )
    .await?;
    Ok(())
}

/// The id of a provider other than `id` managing one of `domains` (as stored: lower case), if
/// any. Read after [`lock_providers`] (each statement of a transaction at READ COMMITTED sees
/// what was committed before it began), it is the truth until the transaction ends.
pub(super) async fn domain_owner<C: GenericClient>(
    tx: &C,
    id: Uuid,
    domains: &[String],
) -> StoreResult<Option<Uuid>> {
    if domains.is_empty() {
        return Ok(None);
    }
    let domains = domains.to_vec();
    let row = query_opt(
        tx,
        "SELECT id FROM identity_providers WHERE id <> $1 \
         AND jsonb_typeof(body::jsonb -> 'domains') = 'array' \
         AND (body::jsonb -> 'domains') ?| $2::text[] ORDER BY id LIMIT 1",
        &[&id, &domains],
    )
    .await?;
    row.map(|r| col(&r, 0)).transpose()
}

#[async_trait]
impl IdentityProviderStore for PostgresStore {
    async fn save_login(
        &self,
        user: &User,
        expected_user: Option<&User>,
        registration: Option<&Registration>,
        link: &IdentityProviderLink,
        link_write: LinkWrite,
    ) -> StoreResult<bool> {
        let rows = LoginRows::of(user, expected_user, registration, link, link_write)?;
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            if !write_user(&tx, &rows.user, rows.how).await? {
                return Ok(false);
            }
            if let Some(registration) = &rows.registration {
                write_registration(&tx, registration).await?;
            }
            // A failed condition returns before the commit: the transaction is rolled back.
            write_link(&tx, &rows.link, rows.link_write).await?;
            tx.commit().await.map_err(pg)?;
            Ok(true)
        })
        .await
    }
    async fn insert_identity_provider(
        &self,
        id: Uuid,
        provider: &Value,
    ) -> StoreResult<ProviderWrite> {
        let (body, domains) = (encode(provider)?, provider_domains(provider));
        let lambda = provider_lambda(provider);
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            lock_providers(&tx).await?;
            if domain_owner(&tx, id, &domains).await?.is_some() {
                return Ok(ProviderWrite::DomainTaken);
            }
            if !lambda_exists(&tx, lambda).await? {
                return Ok(ProviderWrite::LambdaMissing);
            }
            let inserted = execute(
                &tx,
                "INSERT INTO identity_providers (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                &[&id, &body],
            )
            .await?;
            tx.commit().await.map_err(pg)?;
            Ok(if inserted == 1 {
                ProviderWrite::Written
            } else {
                ProviderWrite::IdTaken
            })
        })
        .await
    }
    async fn get_identity_provider(&self, id: Uuid) -> StoreResult<Option<Value>> {
        self.get_document("identity_providers", id).await
    }
    async fn replace_identity_provider(
        &self,
        id: Uuid,
        expected: &Value,
        provider: &Value,
    ) -> StoreResult<ProviderWrite> {
        let (expected, body) = (encode(expected)?, encode(provider)?);
        let (domains, lambda) = (provider_domains(provider), provider_lambda(provider));
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            lock_providers(&tx).await?;
            let stored = query_opt(
                &tx,
                "SELECT body FROM identity_providers WHERE id = $1",
                &[&id],
            )
            .await?;
            let stored: String = match stored {
                None => return Err(StoreError::NotFound),
                Some(row) => col(&row, 0)?,
            };
            if stored != expected {
                return Ok(ProviderWrite::Changed);
            }
            if domain_owner(&tx, id, &domains).await?.is_some() {
                return Ok(ProviderWrite::DomainTaken);
            }
            if !lambda_exists(&tx, lambda).await? {
                return Ok(ProviderWrite::LambdaMissing);
            }
            execute(
                &tx,
                "UPDATE identity_providers SET body = $2 WHERE id = $1",
                &[&id, &body],
            )
            .await?;
            tx.commit().await.map_err(pg)?;
            Ok(ProviderWrite::Written)
        })
        .await
    }
    async fn list_identity_providers(&self) -> StoreResult<Vec<Value>> {
        self.list_documents("identity_providers").await
    }
    async fn delete_identity_provider(&self, id: Uuid) -> StoreResult<()> {
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            execute(
                &tx,
                "DELETE FROM identity_provider_links WHERE identity_provider_id = $1",
                &[&id],
            )
            .await?;
            let deleted =
                execute(&tx, "DELETE FROM identity_providers WHERE id = $1", &[&id]).await?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await.map_err(pg)?;
            Ok(())
        })
        .await
    }
    async fn insert_link(
        &self,
        link: &IdentityProviderLink,
        limit: Option<u64>,
    ) -> StoreResult<LinkInsert> {
        let row = LinkRow::of(link)?;
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // The user's row is locked first: link creates for one user take turns, so their
            // counts cannot pass the limit together.
            lock_user(&tx, row.user).await?;
            if let Some(max) = limit {
                if count_links(&tx, row.provider, row.user).await? >= max {
                    return Ok(LinkInsert::LimitReached);
                }
            }
            match write_link(&tx, &row, LinkWrite::Insert { limit: None }).await {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => return Ok(LinkInsert::Taken),
                Err(e) => return Err(e),
            }
            tx.commit().await.map_err(pg)?;
            Ok(LinkInsert::Written)
        })
        .await
    }
    async fn find_links(
        &self,
        identity_provider_id: Option<Uuid>,
        user_id: Option<Uuid>,
        identity_provider_user_id: Option<&str>,
    ) -> StoreResult<Vec<IdentityProviderLink>> {
        let idp_user = identity_provider_user_id.map(str::to_string);
        self.run(move |c| async move {
            list_bodies(
                &c,
                "SELECT body FROM identity_provider_links \
                 WHERE ($1::uuid IS NULL OR identity_provider_id = $1) \
                 AND ($2::uuid IS NULL OR user_id = $2) \
                 AND ($3::text IS NULL OR identity_provider_user_id = $3) \
                 ORDER BY identity_provider_id, identity_provider_user_id, tenant_id",
                &[&identity_provider_id, &user_id, &idp_user],
            )
            .await
        })
        .await
    }
    async fn delete_link(
        &self,
        identity_provider_id: Uuid,
        identity_provider_user_id: &str,
        user_id: Uuid,
    ) -> StoreResult<IdentityProviderLink> {
        let idp_user = identity_provider_user_id.to_string();
        self.run(move |c| async move {
            // One statement: the row is deleted only when it links this user.
            let link: Option<IdentityProviderLink> = get_body(
                &c,
                "DELETE FROM identity_provider_links WHERE identity_provider_id = $1 \
                 AND identity_provider_user_id = $2 AND user_id = $3 RETURNING body",
                &[&identity_provider_id, &idp_user, &user_id],
            )
            .await?;
            link.ok_or(StoreError::NotFound)
        })
        .await
    }
    async fn insert_lambda(&self, id: Uuid, lambda: &Value) -> StoreResult<bool> {
        let body = encode(lambda)?;
        self.run(move |c| async move {
            // A concurrent insert of the same id makes this one wait for its commit, then
            // insert nothing.
            let inserted = execute(
                &c,
                "INSERT INTO lambdas (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
                &[&id, &body],
            )
            .await?;
            Ok(inserted == 1)
        })
        .await
    }
    async fn get_lambda(&self, id: Uuid) -> StoreResult<Option<Value>> {
        self.get_document("lambdas", id).await
    }
    async fn replace_lambda(
        &self,
        id: Uuid,
        expected: &Value,
        lambda: &Value,
    ) -> StoreResult<bool> {
        self.replace_document("lambdas", id, expected, lambda).await
    }
    async fn list_lambdas(&self) -> StoreResult<Vec<Value>> {
        self.list_documents("lambdas").await
    }
    async fn delete_lambda(&self, id: Uuid) -> StoreResult<Vec<Uuid>> {
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // The providers' lock: no provider write runs between the check and the delete.
            lock_providers(&tx).await?;
            let providers: Vec<Value> =
                list_bodies(&tx, "SELECT body FROM identity_providers", &[]).await?;
            let users = lambda_users(&providers, id);
            if !users.is_empty() {
                return Ok(users);
            }
            let deleted = execute(&tx, "DELETE FROM lambdas WHERE id = $1", &[&id]).await?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await.map_err(pg)?;
            Ok(Vec::new())
        })
        .await
    }
    async fn add_event(&self, log_type: &str, message: &str) -> StoreResult<i64> {
        let (log_type, message) = (log_type.to_string(), message.to_string());
        let clock = self.clock.clone();
        self.run(move |c| async move {
            let row = query_opt(
                &c,
                "INSERT INTO event_logs (insert_instant, type, message) VALUES ($1, $2, $3) RETURNING id",
                &[&clock.now_millis(), &log_type, &message],
            )
            .await?
            .ok_or_else(|| StoreError::Backend("INSERT ... RETURNING returned no row".into()))?;
            col(&row, 0)
        })
        .await
    }
    async fn list_events(&self, limit: u32) -> StoreResult<Vec<EventLog>> {
        let limit = i64::from(limit);
        self.run(move |c| async move {
            query(
                &c,
                "SELECT id, insert_instant, type, message FROM event_logs ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(EventLog {
                    id: col(r, 0)?,
                    insert_instant: col(r, 1)?,
                    log_type: col(r, 2)?,
                    message: col(r, 3)?,
                })
            })
            .collect()
        })
        .await
    }
}

#[async_trait]
impl LoginStateStore for PostgresStore {
    async fn login_state_key(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let candidate = STANDARD.encode(candidate);
        let now = self.clock.now_millis();
        let stored: String = self
            .run(move |mut c| async move {
                let tx = c.transaction().await.map_err(pg)?;
                // A concurrent insert makes this one wait for it, then do nothing; the select
                // (a new snapshot) reads the winner's key.
                execute(
                    &tx,
                    "INSERT INTO login_state_keys (id, secret, insert_instant) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO NOTHING",
                    &[&candidate, &now],
                )
                .await?;
                let row = query_opt(&tx, "SELECT secret FROM login_state_keys WHERE id = 1", &[])
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let secret: String = col(&row, 0)?;
                tx.commit().await.map_err(pg)?;
                Ok(secret)
            })
            .await?;
        STANDARD
            .decode(stored)
            .map_err(|e| StoreError::Backend(format!("a login-state key that is not Base64: {e}")))
    }
    async fn use_login_state(&self, state: &str, expires: i64, now: i64) -> StoreResult<bool> {
        let state = state.to_string();
        self.run(move |c| async move {
            execute(
                &c,
                "DELETE FROM login_states_used WHERE state IN \
                 (SELECT state FROM login_states_used WHERE expires <= $1 LIMIT $2 \
                  FOR UPDATE SKIP LOCKED)",
                &[&now, &LOGIN_STATE_PRUNE_BATCH],
            )
            .await?;
            // Two gateways inserting the same state: the second waits for the first's commit,
            // then inserts nothing.
            let inserted = execute(
                &c,
                "INSERT INTO login_states_used (state, expires) VALUES ($1, $2) \
                 ON CONFLICT (state) DO NOTHING",
                &[&state, &expires],
            )
            .await?;
            Ok(inserted == 1)
        })
        .await
    }
}
