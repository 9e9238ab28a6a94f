//! Refresh tokens and their one-time-use rotations on PostgreSQL ([`RefreshTokenStore`]).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use gatehouse_plugin_api::model::{
    Application, RefreshToken, RefreshTokenMetaData, Registration, Tenant, User,
};
use gatehouse_plugin_api::store::{
    RefreshSubject, RefreshTokenStore, RevokeScope, Revoked, Rotation, StoreError, StoreResult,
    RETIRED_VALUE_MEMORY_MS,
};
use gatehouse_plugin_api::tokens::RevocationScope;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use uuid::Uuid;

use super::revocations::{dated_revocation, insert_revocation, revocations_of};
use super::{col, execute, from_json, get_body, pg, query, query_opt, PostgresStore};
use crate::store::rows::{
    column_filter, encode, live_match, token_hash, RevokeTarget, RotationRow, PRUNE_BATCH,
    TOKEN_COLUMNS,
};

pub(super) fn token_from_row(row: &Row) -> StoreResult<RefreshToken> {
    Ok(RefreshToken {
        id: col(row, 0)?,
        token: col(row, 1)?,
        user_id: col(row, 2)?,
        application_id: col(row, 3)?,
        tenant_id: col(row, 4)?,
        insert_instant: col(row, 5)?,
        start_instant: col(row, 6)?,
        first_issued_instant: col(row, 7)?,
        expiration_instant: col(row, 8)?,
        meta_data: from_json::<RefreshTokenMetaData>(&col::<String>(row, 9)?)?,
    })
}

pub(super) async fn select_tokens<C: GenericClient>(
    c: &C,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<RefreshToken>> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM refresh_tokens WHERE {filter} ORDER BY insert_instant"
    );
    query(c, &sql, params)
        .await?
        .iter()
        .map(token_from_row)
        .collect()
}

pub(super) async fn find_live_token<C: GenericClient>(
    c: &C,
    value: &str,
) -> StoreResult<Option<RefreshToken>> {
    let found = select_tokens(c, "token_hash = $1", &[&token_hash(value)])
        .await?
        .into_iter()
        .next();
    Ok(live_match(found, value))
}

/// Replaces the retired value with `next` and records the rotation, conditional on the old
/// value still being live: a concurrent rotation (on this node or another) that got the row
/// first makes this wait for its commit, then match nothing. True when this call rotated.
pub(super) async fn rotate_live<C: GenericClient>(
    c: &C,
    row: &RotationRow,
    next: &RefreshToken,
) -> StoreResult<bool> {
    let changed = execute(
        c,
        "UPDATE refresh_tokens SET token_hash = $3, token = $4, insert_instant = $5, \
         start_instant = $6, expiration_instant = $7, meta_data = $8 \
         WHERE id = $1 AND token_hash = $2",
        &[
            &next.id,
            &row.old_hash,
            &row.next_hash,
            &next.token,
            &next.insert_instant,
            &next.start_instant,
            &next.expiration_instant,
            &row.next_meta,
        ],
    )
    .await?;
    if changed != 1 {
        return Ok(false);
    }
    execute(
        c,
        "INSERT INTO rotated_refresh_tokens (token_hash, token_id, rotated_at) \
         VALUES ($1, $2, $3) ON CONFLICT (token_hash) DO UPDATE SET \
         token_id = excluded.token_id, rotated_at = excluded.rotated_at",
        &[&row.old_hash, &row.token_id, &row.rotated_at],
    )
    .await?;
    if let Some((token, until)) = &row.outcome {
        execute(
            c,
            "INSERT INTO rotation_outcomes (token_hash, access_token, until) \
             VALUES ($1, $2, $3) ON CONFLICT (token_hash) DO UPDATE SET \
             access_token = excluded.access_token, until = excluded.until",
            &[&row.old_hash, token, until],
        )
        .await?;
    }
    Ok(true)
}

/// What replaced a rotated value, by the value's hash.
pub(super) async fn find_rotated<C: GenericClient>(
    c: &C,
    old_hash: &str,
) -> StoreResult<Option<Rotation>> {
    let Some(row) = query_opt(
        c,
        "SELECT r.token_id, r.rotated_at, o.access_token FROM rotated_refresh_tokens r \
         LEFT JOIN rotation_outcomes o ON o.token_hash = r.token_hash WHERE r.token_hash = $1",
        &[&old_hash],
    )
    .await?
    else {
        return Ok(None);
    };
    let (token_id, rotated_at, access_token): (Uuid, i64, Option<String>) =
        (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
    let current = select_tokens(c, "id = $1", &[&token_id])
        .await?
        .into_iter()
        .next();
    Ok(current.map(|current| Rotation::AlreadyRotated {
        current,
        rotated_at,
        access_token,
    }))
}

/// The records a refresh of `token` checks (see [`RefreshSubject`]), read on one connection
/// with the statements of the single-record reads.
async fn subject_of<C: GenericClient>(c: &C, token: RefreshToken) -> StoreResult<RefreshSubject> {
    let user: Option<User> =
        get_body(c, "SELECT body FROM users WHERE id = $1", &[&token.user_id]).await?;
    let tenant: Option<Tenant> = match &user {
        Some(user) => {
            get_body(
                c,
                "SELECT body FROM tenants WHERE id = $1",
                &[&user.tenant_id],
            )
            .await?
        }
        None => None,
    };
    let (application, registration) = match token.application_id {
        Some(application_id) => {
            let application: Option<Application> = get_body(
                c,
                "SELECT body FROM applications WHERE id = $1",
                &[&application_id],
            )
            .await?;
            let registration: Option<Registration> =
                match &user {
                    Some(user) => get_body(
                        c,
                        "SELECT body FROM registrations WHERE user_id = $1 AND application_id = $2",
                        &[&user.id, &application_id],
                    )
                    .await?,
                    None => None,
                };
            (application, registration)
        }
        None => (None, None),
    };
    Ok(RefreshSubject {
        token,
        user,
        tenant,
        application,
        registration,
    })
}

/// Inserts refresh token `t` with its encoded `meta` data.
async fn insert_token<C: GenericClient>(c: &C, t: &RefreshToken, meta: &str) -> StoreResult<()> {
    execute(
        c,
                "INSERT INTO refresh_tokens (id, token_hash, token, user_id, application_id, tenant_id, \
                 insert_instant, start_instant, first_issued_instant, expiration_instant, meta_data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                &[
                    &t.id,
                    &token_hash(&t.token),
                    &t.token,
                    &t.user_id,
                    &t.application_id,
                    &t.tenant_id,
                    &t.insert_instant,
                    &t.start_instant,
                    &t.first_issued_instant,
                    &t.expiration_instant,
                    &meta,
                ],
    )
    .await?;
    Ok(())
}

/// Locks the rows of the user and the application a revocation of `columns` addresses, before
/// it deletes: a token made beside another at the same time ([`RefreshTokenStore::insert_refresh_token_beside`])
/// waits for the revocation, or the revocation for it, never both at once.
async fn lock_revoked<C: GenericClient>(c: &C, columns: &[(&str, Uuid)]) -> StoreResult<()> {
    for (column, id) in columns {
        let sql = match *column {
            "user_id" => "SELECT 1 FROM users WHERE id = $1 FOR UPDATE",
            "application_id" => "SELECT 1 FROM applications WHERE id = $1 FOR UPDATE",
            _ => continue,
        };
        execute(c, sql, &[id]).await?;
    }
    Ok(())
}

#[async_trait]
impl RefreshTokenStore for PostgresStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        self.run(move |c| async move { insert_token(&c, &t, &meta).await })
            .await
    }
    async fn insert_refresh_token_beside(
        &self,
        token: &RefreshToken,
        source_id: Uuid,
    ) -> StoreResult<bool> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            // The user's and the application's rows, shared: a revocation of either locks its
            // row first (see `lock_revoked`), so it runs wholly before this insert (which then
            // finds the source gone) or after its commit (and its delete finds the new token).
            execute(
                &tx,
                "SELECT 1 FROM users WHERE id = $1 FOR SHARE",
                &[&t.user_id],
            )
            .await?;
            execute(
                &tx,
                "SELECT 1 FROM applications WHERE id = $1 FOR SHARE",
                &[&t.application_id],
            )
            .await?;
            let source = query_opt(
                &tx,
                "SELECT 1 FROM refresh_tokens WHERE id = $1",
                &[&source_id],
            )
            .await?;
            if source.is_none() {
                return Ok(false);
            }
            insert_token(&tx, &t, &meta).await?;
            tx.commit().await.map_err(pg)?;
            Ok(true)
        })
        .await
    }
    async fn find_refresh_token(&self, value: &str) -> StoreResult<Option<RefreshToken>> {
        let value = value.to_string();
        self.run(move |c| async move { find_live_token(&c, &value).await })
            .await
    }
    async fn find_refresh_subject(&self, value: &str) -> StoreResult<Option<RefreshSubject>> {
        let value = value.to_string();
        self.run(move |c| async move {
            match find_live_token(&c, &value).await? {
                Some(token) => subject_of(&c, token).await.map(Some),
                None => Ok(None),
            }
        })
        .await
    }
    async fn get_refresh_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        self.run(move |c| async move {
            Ok(select_tokens(&c, "id = $1", &[&id])
                .await?
                .into_iter()
                .next())
        })
        .await
    }
    async fn list_refresh_tokens(&self, user_id: Uuid) -> StoreResult<Vec<RefreshToken>> {
        self.run(move |c| async move { select_tokens(&c, "user_id = $1", &[&user_id]).await })
            .await
    }
    async fn touch_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        self.run(move |c| async move {
            let changed = execute(
                &c,
                "UPDATE refresh_tokens SET start_instant = $2, expiration_instant = $3, meta_data = $4 \
                 WHERE id = $1 AND token_hash = $5",
                &[
                    &t.id,
                    &t.start_instant,
                    &t.expiration_instant,
                    &meta,
                    &token_hash(&t.token),
                ],
            )
            .await?;
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }
    async fn rotate_refresh_token(
        &self,
        old_value: &str,
        next: &RefreshToken,
        outcome: Option<(&str, i64)>,
    ) -> StoreResult<Rotation> {
        let old = old_value.to_string();
        let next = next.clone();
        let outcome = outcome.map(|(t, u)| (t.to_string(), u));
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            if let Some(live) = find_live_token(&tx, &old).await? {
                let row = RotationRow::of(&old, &live, &next, outcome)?;
                if rotate_live(&tx, &row, &next).await? {
                    tx.commit().await.map_err(pg)?;
                    return Ok(Rotation::Rotated(next));
                }
            }
            // READ COMMITTED: this statement sees what a concurrent rotation committed.
            let rotated = find_rotated(&tx, &token_hash(&old)).await?;
            tx.commit().await.map_err(pg)?;
            rotated.ok_or(StoreError::NotFound)
        })
        .await
    }
    async fn prune_rotations(&self, now_ms: i64) -> StoreResult<u64> {
        self.run(move |c| async move {
            let cleared = execute(
                &c,
                "DELETE FROM rotation_outcomes WHERE token_hash IN \
                 (SELECT token_hash FROM rotation_outcomes WHERE until < $1 LIMIT $2)",
                &[&now_ms, &PRUNE_BATCH],
            )
            .await?;
            let deleted = execute(
                &c,
                "DELETE FROM rotated_refresh_tokens WHERE token_hash IN \
                 (SELECT token_hash FROM rotated_refresh_tokens WHERE rotated_at < $1 LIMIT $2)",
                &[&(now_ms - RETIRED_VALUE_MEMORY_MS), &PRUNE_BATCH],
            )
            .await?;
            Ok(cleared + deleted)
        })
        .await
    }
    async fn find_rotated_refresh_token(&self, old_value: &str) -> StoreResult<Option<Rotation>> {
        let old_hash = token_hash(old_value);
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let rotated = find_rotated(&tx, &old_hash).await?;
            tx.commit().await.map_err(pg)?;
            Ok(rotated)
        })
        .await
    }
    async fn revoke_refresh_tokens(&self, scope: &RevokeScope) -> StoreResult<Revoked> {
        let scope = scope.clone();
        let clock = self.clock.clone();
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let delete = |filter: &str| {
                format!("DELETE FROM refresh_tokens WHERE {filter} RETURNING {TOKEN_COLUMNS}")
            };
            let columns = match RevokeTarget::of(&scope) {
                RevokeTarget::Columns(columns) => columns,
                RevokeTarget::Value(value) => match find_live_token(&tx, value).await? {
                    Some(t) => vec![("id", t.id)],
                    None => return Ok(Revoked::nothing(clock.now_seconds())),
                },
            };
            lock_revoked(&tx, &columns).await?;
            let filter = column_filter(&columns, |n| format!("${n}"));
            let params: Vec<&(dyn ToSql + Sync)> = columns
                .iter()
                .map(|(_, id)| id as &(dyn ToSql + Sync))
                .collect();
            let rows = query(&tx, &delete(&filter), &params).await?;
            let mut revoked = rows
                .iter()
                .map(token_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            revoked.sort_by_key(|t| t.insert_instant);
            let edge = scope.edge_scopes(&revoked);
            let at = dated_revocation(&tx, &edge, clock.now_seconds()).await?;
            for s in &edge {
                insert_revocation(&tx, s, at).await?;
            }
            if !revoked.is_empty() {
                let ids: Vec<Uuid> = revoked.iter().map(|t| t.id).collect();
                execute(
                    &tx,
                    "DELETE FROM rotated_refresh_tokens WHERE token_id = ANY($1)",
                    &[&ids],
                )
                .await?;
            }
            tx.commit().await.map_err(pg)?;
            Ok(Revoked {
                tokens: revoked,
                edge,
                at,
            })
        })
        .await
    }
    async fn add_revocation(
        &self,
        scope: &RevocationScope,
        instant_seconds: i64,
    ) -> StoreResult<()> {
        let scope = *scope;
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            insert_revocation(&tx, &scope, instant_seconds).await?;
            tx.commit().await.map_err(pg)
        })
        .await
    }
    async fn list_revocations(
        &self,
        since_seconds: i64,
    ) -> StoreResult<Vec<(RevocationScope, i64)>> {
        self.run(move |c| async move {
            let rows = query(
                &c,
                "SELECT scope, first_id, second_id, instant FROM revocations WHERE instant >= $1",
                &[&since_seconds],
            )
            .await?;
            revocations_of(&rows)
        })
        .await
    }
}
