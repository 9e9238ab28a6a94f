//! The identity-provider plugin's records on SQLite ([`IdentityProviderStore`]): providers,
//! the login's user, registration and link written together, links, lambdas, the event log;
//! and the browser login's shared state ([`LoginStateStore`]). Providers and lambdas are
//! created insert-only; a provider is written only while no other manages one of its domains.

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use gatehouse_plugin_api::model::{EventLog, IdentityProviderLink, Registration, User};
use gatehouse_plugin_api::store::{StoreError, StoreResult};
use gatehouse_plugin_identity_provider::store::{
    lambda_users, provider_domains, provider_lambda, LinkInsert, LinkWrite, ProviderWrite,
    LOGIN_STATE_PRUNE_BATCH,
};
use gatehouse_plugin_identity_provider::{IdentityProviderStore, LoginStateStore};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use uuid::Uuid;

use super::users::{write_registration, write_user};
use super::{backend, conflict_is_not_found, list_bodies, SqliteStore};
use crate::store::rows::{encode, link_taken, LinkRow, LoginRows};

/// Writes a link as `how` says: inserted only while the provider user has no link in the
/// tenant (and the user fewer than its limit of links to the provider), or rewritten only while
/// it still links the same user. `Err(Conflict)` when that
/// condition fails (nothing written), `NotFound` when the provider is gone.
pub(super) fn write_link(tx: &Connection, row: &LinkRow, how: LinkWrite) -> StoreResult<()> {
    if let LinkWrite::Insert { limit: Some(max) } = how {
        if count_links(tx, row.provider, row.user)? >= max {
            return Err(link_taken());
        }
    }
    let sql = match how {
        LinkWrite::Insert { .. } => {
            "INSERT INTO identity_provider_links \
             (identity_provider_id, identity_provider_user_id, user_id, body, tenant_id) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (identity_provider_id, identity_provider_user_id, tenant_id) DO NOTHING"
        }
        LinkWrite::ReplaceOwn => {
            "UPDATE identity_provider_links SET body = ?4 WHERE identity_provider_id = ?1 \
             AND identity_provider_user_id = ?2 AND user_id = ?3 AND tenant_id = ?5"
        }
    };
    let written = tx
        .execute(
            sql,
            params![
                row.provider.to_string(),
                row.provider_user,
                row.user.to_string(),
                row.body,
                row.tenant.to_string()
            ],
        )
        .map_err(conflict_is_not_found)?;
    match written {
        1 => Ok(()),
        _ => Err(link_taken()),
    }
}

/// How many links `user` has to `provider`.
fn count_links(tx: &Connection, provider: Uuid, user: Uuid) -> StoreResult<u64> {
    let count: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM identity_provider_links \
             WHERE identity_provider_id = ?1 AND user_id = ?2",
            params![provider.to_string(), user.to_string()],
            |r| r.get(0),
        )
        .map_err(backend)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// The id of a provider other than `id` managing one of `domains` (as stored: lower case), if
/// any; read inside the caller's transaction, which holds the write lock.
pub(super) fn domain_owner(
    tx: &Connection,
    id: Uuid,
    domains: &[String],
) -> StoreResult<Option<String>> {
    if domains.is_empty() {
        return Ok(None);
    }
    let wanted = serde_json::to_string(domains)
        .map_err(|e| StoreError::Backend(format!("cannot encode domains: {e}")))?;
    tx.query_row(
        "SELECT p.id FROM identity_providers AS p, json_each(p.body, '$.domains') AS d \
         WHERE p.id <> ?1 AND d.type = 'text' AND d.value IN (SELECT value FROM json_each(?2)) \
         ORDER BY p.id LIMIT 1",
        params![id.to_string(), wanted],
        |r| r.get(0),
    )
    .optional()
    .map_err(backend)
}

/// True when `lambda` is `None` or a stored lambda.
fn lambda_exists(tx: &Connection, lambda: Option<Uuid>) -> StoreResult<bool> {
    let Some(lambda) = lambda else {
        return Ok(true);
    };
    let found: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM lambdas WHERE id = ?1",
            [lambda.to_string()],
            |r| r.get(0),
        )
        .optional()
        .map_err(backend)?;
    Ok(found.is_some())
}

#[async_trait]
impl IdentityProviderStore for SqliteStore {
    async fn save_login(
        &self,
        user: &User,
        expected_user: Option<&User>,
        registration: Option<&Registration>,
        link: &IdentityProviderLink,
        link_write: LinkWrite,
    ) -> StoreResult<bool> {
        let rows = LoginRows::of(user, expected_user, registration, link, link_write)?;
        self.tx(move |tx| {
            if !write_user(tx, &rows.user, rows.how)? {
                return Ok(false);
            }
            if let Some(registration) = &rows.registration {
                write_registration(tx, registration)?;
            }
            // A failed condition is an error: the call's writes are rolled back.
            write_link(tx, &rows.link, rows.link_write)?;
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
        // Every call is an immediate transaction, which holds the write lock: the check and the
        // insert see and exclude every other writer, of this gateway or another.
        self.tx(move |tx| {
            if domain_owner(tx, id, &domains)?.is_some() {
                return Ok(ProviderWrite::DomainTaken);
            }
            if !lambda_exists(tx, lambda)? {
                return Ok(ProviderWrite::LambdaMissing);
            }
            let inserted = tx
                .execute(
                    "INSERT INTO identity_providers (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                    params![id.to_string(), body],
                )
                .map_err(backend)?;
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
        self.tx(move |tx| {
            let stored: Option<String> = tx
                .query_row(
                    "SELECT body FROM identity_providers WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            match stored {
                None => return Err(StoreError::NotFound),
                Some(stored) if stored != expected => return Ok(ProviderWrite::Changed),
                Some(_) => {}
            }
            if domain_owner(tx, id, &domains)?.is_some() {
                return Ok(ProviderWrite::DomainTaken);
            }
            if !lambda_exists(tx, lambda)? {
                return Ok(ProviderWrite::LambdaMissing);
            }
            tx.execute(
                "UPDATE identity_providers SET body = ?2 WHERE id = ?1",
                params![id.to_string(), body],
            )
            .map_err(backend)?;
            Ok(ProviderWrite::Written)
        })
        .await
    }
    async fn list_identity_providers(&self) -> StoreResult<Vec<Value>> {
        self.list_documents("identity_providers").await
    }
    async fn delete_identity_provider(&self, id: Uuid) -> StoreResult<()> {
        self.tx(move |tx| {
            tx.execute(
                "DELETE FROM identity_provider_links WHERE identity_provider_id = ?1",
                [id.to_string()],
            )
            .map_err(backend)?;
            let deleted = tx
                .execute(
                    "DELETE FROM identity_providers WHERE id = ?1",
                    [id.to_string()],
                )
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
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
        // Every call is an immediate transaction, which holds the write lock: the count and
        // the insert exclude every other writer.
        self.tx(move |tx| {
            if let Some(max) = limit {
                if count_links(tx, row.provider, row.user)? >= max {
                    return Ok(LinkInsert::LimitReached);
                }
            }
            match write_link(tx, &row, LinkWrite::Insert { limit: None }) {
                Ok(()) => Ok(LinkInsert::Written),
                Err(StoreError::Conflict(_)) => Ok(LinkInsert::Taken),
                Err(e) => Err(e),
            }
        })
        .await
    }
    async fn find_links(
        &self,
        identity_provider_id: Option<Uuid>,
        user_id: Option<Uuid>,
        identity_provider_user_id: Option<&str>,
    ) -> StoreResult<Vec<IdentityProviderLink>> {
        let idp = identity_provider_id.map(|i| i.to_string());
        let user = user_id.map(|u| u.to_string());
        let idp_user = identity_provider_user_id.map(str::to_string);
        self.tx(move |tx| {
            list_bodies(
                tx,
                "SELECT body FROM identity_provider_links WHERE (?1 IS NULL OR identity_provider_id = ?1) \
                 AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR identity_provider_user_id = ?3) \
                 ORDER BY identity_provider_id, identity_provider_user_id, tenant_id",
                &[&idp, &user, &idp_user],
            )
        })
        .await
    }
    async fn delete_link(
        &self,
        identity_provider_id: Uuid,
        identity_provider_user_id: &str,
        user_id: Uuid,
    ) -> StoreResult<IdentityProviderLink> {
        let (idp, idp_user, user) = (
            identity_provider_id.to_string(),
            identity_provider_user_id.to_string(),
            user_id.to_string(),
        );
        self.tx(move |tx| {
            let found: Vec<IdentityProviderLink> = list_bodies(
                tx,
                "SELECT body FROM identity_provider_links WHERE identity_provider_id = ?1 \
                 AND identity_provider_user_id = ?2 AND user_id = ?3",
                &[&idp, &idp_user, &user],
            )?;
            let link = found.into_iter().next().ok_or(StoreError::NotFound)?;
            tx.execute(
                "DELETE FROM identity_provider_links WHERE identity_provider_id = ?1 \
                 AND identity_provider_user_id = ?2 AND user_id = ?3",
                params![idp, idp_user, user],
            )
            .map_err(backend)?;
            Ok(link)
        })
        .await
    }
    async fn insert_lambda(&self, id: Uuid, lambda: &Value) -> StoreResult<bool> {
        let body = encode(lambda)?;
        self.tx(move |tx| {
            let inserted = tx
                .execute(
                    "INSERT INTO lambdas (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                    params![id.to_string(), body],
                )
                .map_err(backend)?;
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
        // One call holds the write lock: no provider write runs between the check and the
        // delete.
        self.tx(move |tx| {
            let providers: Vec<Value> =
                list_bodies(tx, "SELECT body FROM identity_providers", &[])?;
            let users = lambda_users(&providers, id);
            if !users.is_empty() {
                return Ok(users);
            }
            let deleted = tx
                .execute("DELETE FROM lambdas WHERE id = ?1", [id.to_string()])
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(Vec::new())
        })
        .await
    }
    async fn add_event(&self, log_type: &str, message: &str) -> StoreResult<i64> {
        let (log_type, message) = (log_type.to_string(), message.to_string());
        let clock = self.clock.clone();
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO event_logs (insert_instant, type, message) VALUES (?1, ?2, ?3)",
                params![clock.now_millis(), log_type, message],
            )
            .map_err(backend)?;
            Ok(tx.last_insert_rowid())
        })
        .await
    }
    async fn list_events(&self, limit: u32) -> StoreResult<Vec<EventLog>> {
        self.tx(move |tx| {
            let mut stmt = tx
                .prepare("SELECT id, insert_instant, type, message FROM event_logs ORDER BY id DESC LIMIT ?1")
                .map_err(backend)?;
            let rows = stmt
                .query_map([limit], |r| {
                    Ok(EventLog {
                        id: r.get(0)?,
                        insert_instant: r.get(1)?,
                        log_type: r.get(2)?,
                        message: r.get(3)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl LoginStateStore for SqliteStore {
    async fn login_state_key(&self, candidate: &[u8]) -> StoreResult<Vec<u8>> {
        let candidate = STANDARD.encode(candidate);
        let now = self.clock.now_millis();
        let stored: String = self
            .tx(move |tx| {
                tx.execute(
                    "INSERT INTO login_state_keys (id, secret, insert_instant) VALUES (1, ?1, ?2) \
                     ON CONFLICT (id) DO NOTHING",
                    params![candidate, now],
                )
                .map_err(backend)?;
                tx.query_row(
                    "SELECT secret FROM login_state_keys WHERE id = 1",
                    [],
                    |r| r.get(0),
                )
                .map_err(backend)
            })
            .await?;
        STANDARD
            .decode(stored)
            .map_err(|e| StoreError::Backend(format!("a login-state key that is not Base64: {e}")))
    }
    async fn use_login_state(&self, state: &str, expires: i64, now: i64) -> StoreResult<bool> {
        let state = state.to_string();
        self.tx(move |tx| {
            tx.execute(
                "DELETE FROM login_states_used WHERE state IN \
                 (SELECT state FROM login_states_used WHERE expires <= ?1 LIMIT ?2)",
                params![now, LOGIN_STATE_PRUNE_BATCH],
            )
            .map_err(backend)?;
            let inserted = tx
                .execute(
                    "INSERT INTO login_states_used (state, expires) VALUES (?1, ?2) \
                     ON CONFLICT (state) DO NOTHING",
                    params![state, expires],
                )
                .map_err(backend)?;
            Ok(inserted == 1)
        })
        .await
    }
}
