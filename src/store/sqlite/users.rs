//! Users and their registrations on SQLite ([`UserStore`]); the user and registration writes
//! are shared with the identity-provider login.

use async_trait::async_trait;
use gatehouse_plugin_api::indexed::Indexed;
use gatehouse_plugin_api::model::{Registration, User};
use gatehouse_plugin_api::store::{StoreError, StoreResult, UserStore};
use rusqlite::{params, Connection};
use uuid::Uuid;

use super::{backend, conflict_is_not_found, list_bodies, SqliteStore};
use crate::store::rows::{self, lookup_key, RegistrationRow, UserRow, UserWrite};

/// Writes the user row as `how` says: true when it was written, false when no row matched an
/// update (gone, or changed since the expected version).
pub(super) fn write_user(tx: &Connection, row: &UserRow, how: UserWrite) -> StoreResult<bool> {
    let sql = match how {
        UserWrite::Insert => {
            "INSERT INTO users (id, tenant_id, email_lower, username_lower, body) \
             VALUES (?1, ?2, ?3, ?4, ?5)"
        }
        UserWrite::Replace | UserWrite::ReplaceIf(_) => {
            "UPDATE users SET tenant_id = ?2, email_lower = ?3, username_lower = ?4, body = ?5 \
             WHERE id = ?1 AND (?6 IS NULL OR json_extract(body, '$.lastUpdateInstant') = ?6)"
        }
    };
    let (id, tenant) = (row.id.to_string(), row.tenant.to_string());
    let changed = match how {
        UserWrite::Insert => {
            tx.execute(sql, params![id, tenant, row.email, row.username, row.body])
        }
        _ => tx.execute(
            sql,
            params![
                id,
                tenant,
                row.email,
                row.username,
                row.body,
                how.expected()
            ],
        ),
    }
    .map_err(user_conflict)?;
    Ok(changed == 1)
}

/// Inserts or replaces the user's registration to its application.
pub(super) fn write_registration(tx: &Connection, row: &RegistrationRow) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO registrations (id, user_id, application_id, body) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (user_id, application_id) DO UPDATE SET body = excluded.body",
        params![
            row.id.to_string(),
            row.user_id.to_string(),
            row.application_id.to_string(),
            row.body
        ],
    )
    .map_err(conflict_is_not_found)?;
    Ok(())
}

/// A user write's failure: a broken uniqueness rule is a taken email or username.
fn user_conflict(e: rusqlite::Error) -> StoreError {
    rows::user_conflict(backend(e))
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let row = UserRow::of(user)?;
        self.tx(move |tx| write_user(tx, &row, UserWrite::Insert).map(drop))
            .await
    }
    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let row = UserRow::of(user)?;
        self.tx(move |tx| match write_user(tx, &row, UserWrite::Replace)? {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        })
        .await
    }
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<User>> {
        self.get_document("users", id).await
    }
    async fn find_users_by_email_any_tenant(&self, email: &str) -> StoreResult<Vec<User>> {
        let Some(email) = lookup_key(Indexed::Email, email) else {
            return Ok(Vec::new());
        };
        self.tx(move |tx| {
            list_bodies(
                tx,
                "SELECT body FROM users WHERE email_lower = ?1 ORDER BY tenant_id",
                &[&email],
            )
        })
        .await
    }
    async fn find_user_by_email(&self, tenant_id: Uuid, email: &str) -> StoreResult<Option<User>> {
        let Some(email) = lookup_key(Indexed::Email, email) else {
            return Ok(None);
        };
        self.tx(move |tx| {
            let users: Vec<User> = list_bodies(
                tx,
                "SELECT body FROM users WHERE tenant_id = ?1 AND email_lower = ?2",
                &[&tenant_id.to_string(), &email],
            )?;
            Ok(users.into_iter().next())
        })
        .await
    }
    async fn find_user_by_username(
        &self,
        tenant_id: Uuid,
        username: &str,
    ) -> StoreResult<Option<User>> {
        let Some(username) = lookup_key(Indexed::Username, username) else {
            return Ok(None);
        };
        self.tx(move |tx| {
            let users: Vec<User> = list_bodies(
                tx,
                "SELECT body FROM users WHERE tenant_id = ?1 AND username_lower = ?2",
                &[&tenant_id.to_string(), &username],
            )?;
            Ok(users.into_iter().next())
        })
        .await
    }
    async fn upsert_registration(&self, registration: &Registration) -> StoreResult<()> {
        let row = RegistrationRow::of(registration)?;
        self.tx(move |tx| write_registration(tx, &row)).await
    }
    async fn get_registration(
        &self,
        user_id: Uuid,
        application_id: Uuid,
    ) -> StoreResult<Option<Registration>> {
        self.tx(move |tx| {
            let found: Vec<Registration> = list_bodies(
                tx,
                "SELECT body FROM registrations WHERE user_id = ?1 AND application_id = ?2",
                &[&user_id.to_string(), &application_id.to_string()],
            )?;
            Ok(found.into_iter().next())
        })
        .await
    }
    async fn list_registrations(&self, user_id: Uuid) -> StoreResult<Vec<Registration>> {
        self.tx(move |tx| {
            list_bodies(
                tx,
                "SELECT body FROM registrations WHERE user_id = ?1 ORDER BY application_id",
                &[&user_id.to_string()],
            )
        })
        .await
    }
}
