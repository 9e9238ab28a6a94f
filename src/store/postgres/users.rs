//! Users and their registrations on PostgreSQL ([`UserStore`]); the user and registration
//! writes are shared with the identity-provider login.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gatehouse_plugin_api::indexed::Indexed;
use gatehouse_plugin_api::model::{Registration, User};
use gatehouse_plugin_api::store::{StoreError, StoreResult, UserStore};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::{execute, get_body, list_bodies, PostgresStore};
use crate::store::rows::{
    conflict_is_not_found, lookup_key, user_conflict, RegistrationRow, UserRow, UserWrite,
};

/// Writes the user row as `how` says: true when it was written, false when no row matched an
/// update (gone, or changed since the expected version).
pub(super) async fn write_user<C: GenericClient>(
    c: &C,
    row: &UserRow,
    how: UserWrite,
) -> StoreResult<bool> {
    let fields: [&(dyn ToSql + Sync); 5] =
        [&row.id, &row.tenant, &row.email, &row.username, &row.body];
    let expected = how.expected();
    let changed = match how {
        UserWrite::Insert => {
            execute(
                c,
                "INSERT INTO users (id, tenant_id, email_lower, username_lower, body) \
                 VALUES ($1, $2, $3, $4, $5)",
                &fields,
            )
            .await
        }
        UserWrite::Replace | UserWrite::ReplaceIf(_) => {
            let mut params = fields.to_vec();
            params.push(&expected);
            execute(
                c,
                "UPDATE users SET tenant_id = $2, email_lower = $3, username_lower = $4, body = $5 \
                 WHERE id = $1 AND ($6::bigint IS NULL \
                 OR (body::json ->> 'lastUpdateInstant')::bigint = $6)",
                &params,
            )
            .await
        }
    }
    .map_err(user_conflict)?;
    Ok(changed == 1)
}

/// Inserts or replaces the user's registration to its application.
pub(super) async fn write_registration<C: GenericClient>(
    c: &C,
    row: &RegistrationRow,
) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO registrations (id, user_id, application_id, body) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, application_id) DO UPDATE SET body = excluded.body",
        &[&row.id, &row.user_id, &row.application_id, &row.body],
    )
    .await
    .map_err(conflict_is_not_found)?;
    Ok(())
}

#[async_trait]
impl UserStore for PostgresStore {
    async fn create_user(&self, user: &User) -> StoreResult<()> {
        let row = UserRow::of(user)?;
        self.run(move |c| async move { write_user(&c, &row, UserWrite::Insert).await.map(drop) })
            .await
    }
    async fn update_user(&self, user: &User) -> StoreResult<()> {
        let row = UserRow::of(user)?;
        self.run(move |c| async move {
            match write_user(&c, &row, UserWrite::Replace).await? {
                true => Ok(()),
                false => Err(StoreError::NotFound),
            }
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
        self.run(move |c| async move {
            list_bodies(
                &c,
                "SELECT body FROM users WHERE email_lower = $1 ORDER BY tenant_id",
                &[&email],
            )
            .await
        })
        .await
    }
    async fn find_user_by_email(&self, tenant_id: Uuid, email: &str) -> StoreResult<Option<User>> {
        let Some(email) = lookup_key(Indexed::Email, email) else {
            return Ok(None);
        };
        self.run(move |c| async move {
            get_body(
                &c,
                "SELECT body FROM users WHERE tenant_id = $1 AND email_lower = $2",
                &[&tenant_id, &email],
            )
            .await
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
        self.run(move |c| async move {
            get_body(
                &c,
                "SELECT body FROM users WHERE tenant_id = $1 AND username_lower = $2",
                &[&tenant_id, &username],
            )
            .await
        })
        .await
    }
    async fn upsert_registration(&self, registration: &Registration) -> StoreResult<()> {
        let row = RegistrationRow::of(registration)?;
        self.run(move |c| async move { write_registration(&c, &row).await })
            .await
    }
    async fn get_registration(
        &self,
        user_id: Uuid,
        application_id: Uuid,
    ) -> StoreResult<Option<Registration>> {
        self.run(move |c| async move {
            get_body(
                &c,
                "SELECT body FROM registrations WHERE user_id = $1 AND application_id = $2",
                &[&user_id, &application_id],
            )
            .await
        })
        .await
    }
    async fn list_registrations(&self, user_id: Uuid) -> StoreResult<Vec<Registration>> {
        self.run(move |c| async move {
            list_bodies(
                &c,
                "SELECT body FROM registrations WHERE user_id = $1 ORDER BY application_id",
                &[&user_id],
            )
            .await
        })
        .await
    }
}
