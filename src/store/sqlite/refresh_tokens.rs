//! Refresh tokens and their one-time-use rotations on SQLite ([`RefreshTokenStore`]).

use async_trait::async_trait;
use gatehouse_plugin_api::model::{
    Application, RefreshToken, RefreshTokenMetaData, Registration, Tenant, User,
};
use gatehouse_plugin_api::store::{
    RefreshSubject, RefreshTokenStore, RevokeScope, Revoked, Rotation, StoreError, StoreResult,
    RETIRED_VALUE_MEMORY_MS,
};
use gatehouse_plugin_api::tokens::RevocationScope;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::revocations::{dated_revocation, insert_revocation, read_revocations};
use super::{backend, from_json, get_body, list_bodies, opt_uuid_col, uuid_col, SqliteStore};
use crate::store::rows::{
    column_filter, encode, live_match, token_hash, RevokeTarget, RotationRow, PRUNE_BATCH,
    TOKEN_COLUMNS,
};

pub(super) fn token_from_row(row: &Row<'_>) -> rusqlite::Result<RefreshToken> {
    let meta: String = row.get(9)?;
    Ok(RefreshToken {
        id: uuid_col(row, 0)?,
        token: row.get(1)?,
        user_id: uuid_col(row, 2)?,
        application_id: opt_uuid_col(row, 3)?,
        tenant_id: uuid_col(row, 4)?,
        insert_instant: row.get(5)?,
        start_instant: row.get(6)?,
        first_issued_instant: row.get(7)?,
        expiration_instant: row.get(8)?,
        meta_data: from_json::<RefreshTokenMetaData>(&meta)?,
    })
}

pub(super) fn select_tokens(
    tx: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<RefreshToken>> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM refresh_tokens WHERE {filter} ORDER BY insert_instant"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, token_from_row)?;
    rows.collect()
}

pub(super) fn find_live_token(tx: &Connection, value: &str) -> StoreResult<Option<RefreshToken>> {
    let found = select_tokens(tx, "token_hash = ?1", &[&token_hash(value)])
        .map_err(backend)?
        .into_iter()
        .next();
    Ok(live_match(found, value))
}

/// Replaces the retired value with `next` and records the rotation, conditional on the old
/// value still being live: a concurrent rotation that committed first makes this match
/// nothing. True when this call rotated.
pub(super) fn rotate_live(
    tx: &Connection,
    row: &RotationRow,
    next: &RefreshToken,
) -> StoreResult<bool> {
    let changed = tx
        .execute(
            "UPDATE refresh_tokens SET token_hash = ?2, token = ?3, insert_instant = ?4, \
             start_instant = ?5, expiration_instant = ?6, meta_data = ?7 \
             WHERE id = ?1 AND token_hash = ?8",
            params![
                next.id.to_string(),
                row.next_hash,
                next.token,
                next.insert_instant,
                next.start_instant,
                next.expiration_instant,
                row.next_meta,
                row.old_hash
            ],
        )
        .map_err(backend)?;
    if changed != 1 {
        return Ok(false);
    }
    tx.execute(
        "INSERT OR REPLACE INTO rotated_refresh_tokens (token_hash, token_id, rotated_at) \
         VALUES (?1, ?2, ?3)",
        params![row.old_hash, row.token_id.to_string(), row.rotated_at],
    )
    .map_err(backend)?;
    if let Some((token, until)) = &row.outcome {
        tx.execute(
            "INSERT OR REPLACE INTO rotation_outcomes (token_hash, access_token, until) \
             VALUES (?1, ?2, ?3)",
            params![row.old_hash, token, until],
        )
        .map_err(backend)?;
    }
    Ok(true)
}

/// What replaced a rotated value, by the value's hash.
pub(super) fn find_rotated(tx: &Connection, old_hash: &str) -> StoreResult<Option<Rotation>> {
    let rotated: Option<(String, i64, Option<String>)> = tx
        .query_row(
            "SELECT r.token_id, r.rotated_at, o.access_token FROM rotated_refresh_tokens r \
             LEFT JOIN rotation_outcomes o ON o.token_hash = r.token_hash WHERE r.token_hash = ?1",
            [old_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((token_id, rotated_at, access_token)) = rotated else {
        return Ok(None);
    };
    let current = select_tokens(tx, "id = ?1", &[&token_id])
        .map_err(backend)?
        .into_iter()
        .next();
    Ok(current.map(|current| Rotation::AlreadyRotated {
        current,
        rotated_at,
        access_token,
    }))
}

/// The live token `value` names and what it belongs to, read in `tx`; `None` when no live
/// token has that value.
fn live_subject(tx: &Connection, value: &str) -> StoreResult<Option<RefreshSubject>> {
    match find_live_token(tx, value)? {
        Some(token) => subject_of(tx, token).map(Some),
        None => Ok(None),
    }
}

/// The records a refresh of `token` checks (see [`RefreshSubject`]), read in `tx` with the
/// statements of the single-record reads.
fn subject_of(tx: &Connection, token: RefreshToken) -> StoreResult<RefreshSubject> {
    let user: Option<User> = get_body(
        tx,
        "SELECT body FROM users WHERE id = ?1",
        token.user_id.to_string(),
    )?;
    let tenant: Option<Tenant> = match &user {
        Some(user) => get_body(
            tx,
            "SELECT body FROM tenants WHERE id = ?1",
            user.tenant_id.to_string(),
        )?,
        None => None,
    };
    let (application, registration) = match token.application_id {
        Some(application_id) => {
            let application: Option<Application> = get_body(
                tx,
                "SELECT body FROM applications WHERE id = ?1",
                application_id.to_string(),
            )?;
            let registration: Option<Registration> = match &user {
                Some(user) => list_bodies(
                    tx,
                    "SELECT body FROM registrations WHERE user_id = ?1 AND application_id = ?2",
                    &[&user.id.to_string(), &application_id.to_string()],
                )?
                .into_iter()
                .next(),
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
fn insert_token(tx: &Connection, t: &RefreshToken, meta: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO refresh_tokens (id, token_hash, token, user_id, application_id, tenant_id, \
         insert_instant, start_instant, first_issued_instant, expiration_instant, meta_data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            t.id.to_string(),
            token_hash(&t.token),
            t.token,
            t.user_id.to_string(),
            t.application_id.map(|a| a.to_string()),
            t.tenant_id.to_string(),
            t.insert_instant,
            t.start_instant,
            t.first_issued_instant,
            t.expiration_instant,
            meta
        ],
    )
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl RefreshTokenStore for SqliteStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        self.tx(move |tx| insert_token(tx, &t, &meta)).await
    }
    async fn insert_refresh_token_beside(
        &self,
        token: &RefreshToken,
        source_id: Uuid,
    ) -> StoreResult<bool> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        // One call holds the write lock: a revocation runs wholly before (the source is gone)
        // or after (it finds the new token).
        self.tx(move |tx| {
            let source: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM refresh_tokens WHERE id = ?1",
                    params![source_id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            if source.is_none() {
                return Ok(false);
            }
            insert_token(tx, &t, &meta)?;
            Ok(true)
        })
        .await
    }
    async fn find_refresh_token(&self, value: &str) -> StoreResult<Option<RefreshToken>> {
        let value = value.to_string();
        self.tx(move |tx| find_live_token(tx, &value)).await
    }
    async fn find_refresh_subject(&self, value: &str) -> StoreResult<Option<RefreshSubject>> {
        // On one of the store's read threads when the file can be read at once (no wait
        // behind the writer's commit, and no disk read on the caller's event loop); else
        // through the writer thread, which decides the answer.
        let value = value.to_string();
        let readers = self.readers.clone();
        let read = value.clone();
        let found = self
            .read_threads
            .run(move || readers.read(|tx| live_subject(tx, &read)));
        if let Ok(Some(found)) = found.await {
            return Ok(found);
        }
        self.tx(move |tx| live_subject(tx, &value)).await
    }
    async fn get_refresh_token(&self, id: Uuid) -> StoreResult<Option<RefreshToken>> {
        self.tx(move |tx| {
            Ok(select_tokens(tx, "id = ?1", &[&id.to_string()])
                .map_err(backend)?
                .into_iter()
                .next())
        })
        .await
    }
    async fn list_refresh_tokens(&self, user_id: Uuid) -> StoreResult<Vec<RefreshToken>> {
        self.tx(move |tx| {
            select_tokens(tx, "user_id = ?1", &[&user_id.to_string()]).map_err(backend)
        })
        .await
    }
    async fn touch_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        self.tx(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE refresh_tokens SET start_instant = ?2, expiration_instant = ?3, meta_data = ?4 \
                     WHERE id = ?1 AND token_hash = ?5",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        t.id.to_string(),
                        t.start_instant,
                        t.expiration_instant,
                        meta,
                        token_hash(&t.token)
                    ])
                })
                .map_err(backend)?;
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
        self.tx(move |tx| {
            if let Some(live) = find_live_token(tx, &old)? {
                let row = RotationRow::of(&old, &live, &next, outcome)?;
                if rotate_live(tx, &row, &next)? {
                    return Ok(Rotation::Rotated(next));
                }
            }
            find_rotated(tx, &token_hash(&old))?.ok_or(StoreError::NotFound)
        })
        .await
    }
    async fn prune_rotations(&self, now_ms: i64) -> StoreResult<u64> {
        self.tx(move |tx| {
            let cleared = tx
                .execute(
                    "DELETE FROM rotation_outcomes WHERE rowid IN \
                     (SELECT rowid FROM rotation_outcomes WHERE until < ?1 LIMIT ?2)",
                    params![now_ms, PRUNE_BATCH],
                )
                .map_err(backend)?;
            let deleted = tx
                .execute(
                    "DELETE FROM rotated_refresh_tokens WHERE rowid IN \
                     (SELECT rowid FROM rotated_refresh_tokens WHERE rotated_at < ?1 LIMIT ?2)",
                    params![now_ms - RETIRED_VALUE_MEMORY_MS, PRUNE_BATCH],
                )
                .map_err(backend)?;
            Ok((cleared + deleted) as u64)
        })
        .await
    }
    async fn find_rotated_refresh_token(&self, old_value: &str) -> StoreResult<Option<Rotation>> {
        let old_hash = token_hash(old_value);
        self.tx(move |tx| find_rotated(tx, &old_hash)).await
    }
    async fn revoke_refresh_tokens(&self, scope: &RevokeScope) -> StoreResult<Revoked> {
        let scope = scope.clone();
        let clock = self.clock.clone();
        self.tx(move |tx| {
            let columns = match RevokeTarget::of(&scope) {
                RevokeTarget::Columns(columns) => columns,
                RevokeTarget::Value(value) => match find_live_token(tx, value)? {
                    Some(t) => vec![("id", t.id)],
                    None => return Ok(Revoked::nothing(clock.now_seconds())),
                },
            };
            let filter = column_filter(&columns, |n| format!("?{n}"));
            let args: Vec<String> = columns.iter().map(|(_, id)| id.to_string()).collect();
            let params: Vec<&dyn rusqlite::ToSql> =
                args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
            let revoked = select_tokens(tx, &filter, &params).map_err(backend)?;
            let edge = scope.edge_scopes(&revoked);
            let at = dated_revocation(tx, &edge, clock.now_seconds())?;
            for s in &edge {
                insert_revocation(tx, s, at)?;
            }
            for t in &revoked {
                tx.execute(
                    "DELETE FROM refresh_tokens WHERE id = ?1",
                    [t.id.to_string()],
                )
                .map_err(backend)?;
                tx.execute(
                    "DELETE FROM rotated_refresh_tokens WHERE token_id = ?1",
                    [t.id.to_string()],
                )
                .map_err(backend)?;
            }
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
        self.tx(move |tx| insert_revocation(tx, &scope, instant_seconds))
            .await
    }
    async fn list_revocations(
        &self,
        since_seconds: i64,
    ) -> StoreResult<Vec<(RevocationScope, i64)>> {
        self.tx(move |tx| {
            read_revocations(
                tx,
                "SELECT scope, first_id, second_id, instant FROM revocations WHERE instant >= ?1",
                params![since_seconds],
            )
        })
        .await
    }
}
