//! The SQLite backend: one database file in WAL mode with `synchronous=FULL`, so an
//! acknowledged write survives a crash or power loss. Schema migrations are SQL files under
//! `migrations/`, applied in order inside one transaction each and recorded in
//! `schema_migrations`.
//!
//! rusqlite is synchronous: each call runs on tokio's blocking pool against a connection
//! behind a mutex (SQLite has one writer at a time anyway). Every trait method is one
//! transaction.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gatehouse_plugin_api::model::{
    ApiKey, Application, EventLog, IdentityProviderLink, KeyMaterial, RefreshToken,
    RefreshTokenMetaData, Registration, Tenant, User,
};
use gatehouse_plugin_api::store::{
    Directory, RefreshTokenStore, RevokeScope, Rotation, StoreError, StoreResult, UserStore,
    RETIRED_VALUE_MEMORY_MS,
};

use super::feed::RevocationCursor;
use super::DirectoryStore;
use gatehouse_plugin_api::tokens::RevocationScope;
use gatehouse_plugin_identity_provider::IdentityProviderStore;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::rows::{
    encode, live_match, revocation_row, revocation_scope, token_hash, LinkRow, RegistrationRow,
    RotationRow, UserRow, UserWrite, PRUNE_BATCH, TOKEN_COLUMNS,
};

/// Migrations in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_lambdas_revocations.sql"),
    include_str!("migrations/0003_rotation_outcome.sql"),
    include_str!("migrations/0004_rotation_retention.sql"),
    include_str!("migrations/0005_revocation_order.sql"),
];

/// A SQLite database file.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

/// The store error of a SQLite failure: a file that cannot be used (busy, locked, unreadable,
/// unwritable, full, damaged) is `Unavailable` (503, nothing lost: try again), a broken
/// uniqueness rule `Conflict`, anything else `Backend`.
fn backend(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::PermissionDenied
                    | rusqlite::ErrorCode::NotADatabase
                    | rusqlite::ErrorCode::DatabaseCorrupt
                    | rusqlite::ErrorCode::FileLockingProtocolFailed
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict("a record with the same unique value already exists".into())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn from_json<T: DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    super::rows::decode_document(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn uuid_col(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn opt_uuid_col(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Uuid>> {
    let text: Option<String> = row.get(index)?;
    text.map(|t| {
        Uuid::parse_str(&t).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                Box::new(e),
            )
        })
    })
    .transpose()
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<RefreshToken> {
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

fn select_tokens(
    tx: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<RefreshToken>> {
    let sql = format!(
        "SELECT {TOKEN_COLUMNS} FROM refresh_tokens WHERE {filter} ORDER BY insert_instant"
    );
    let mut stmt = tx.prepare(&sql)?;
    let rows = stmt.query_map(args, token_from_row)?;
    rows.collect()
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl SqliteStore {
    /// Opens or creates the database file (and its directory), sets WAL and durability
    /// pragmas, and applies pending migrations.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let mut conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` in one immediate (write-locking) transaction on the blocking pool, committing
    /// when it returns `Ok`.
    async fn tx<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection mutex poisoned".into()))?;
            let tx = guard
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend)?;
            let value = f(&tx)?;
            tx.commit().map_err(backend)?;
            Ok(value)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }
}

impl SqliteStore {
    /// Inserts or replaces the JSON document `id` of a `(id, body)` table.
    async fn put_document(
        &self,
        table: &'static str,
        id: Uuid,
        document: &Value,
    ) -> StoreResult<()> {
        let body = encode(document)?;
        self.tx(move |tx| {
            tx.execute(
                &format!(
                    "INSERT INTO {table} (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = excluded.body"
                ),
                params![id.to_string(), body],
            )
            .map_err(backend)?;
            Ok(())
        })
        .await
    }

    /// Replaces document `id` of `table` with `document` only while its stored body is still
    /// `expected`: true when it was replaced, false when it changed meanwhile (nothing
    /// written); `NotFound` when it is gone.
    async fn replace_document(
        &self,
        table: &'static str,
        id: Uuid,
        expected: &Value,
        document: &Value,
    ) -> StoreResult<bool> {
        let (expected, body) = (encode(expected)?, encode(document)?);
        self.tx(move |tx| {
            let changed = tx
                .execute(
                    &format!("UPDATE {table} SET body = ?2 WHERE id = ?1 AND body = ?3"),
                    params![id.to_string(), body, expected],
                )
                .map_err(backend)?;
            if changed == 1 {
                return Ok(true);
            }
            let exists = tx
                .query_row(
                    &format!("SELECT 1 FROM {table} WHERE id = ?1"),
                    [id.to_string()],
                    |_| Ok(()),
                )
                .optional()
                .map_err(backend)?;
            exists.map(|()| false).ok_or(StoreError::NotFound)
        })
        .await
    }

    /// The JSON document with this id in `table` (a table of `id`, `body` rows), if any.
    async fn get_document<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        id: Uuid,
    ) -> StoreResult<Option<T>> {
        self.tx(move |tx| {
            get_body(
                tx,
                &format!("SELECT body FROM {table} WHERE id = ?1"),
                id.to_string(),
            )
        })
        .await
    }

    /// Every JSON document in `table`, by id.
    async fn list_documents<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
    ) -> StoreResult<Vec<T>> {
        self.tx(move |tx| list_bodies(tx, &format!("SELECT body FROM {table} ORDER BY id"), &[]))
            .await
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(backend)?;
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if current as usize > MIGRATIONS.len() {
        return Err(StoreError::Unavailable(format!(
            "the database is at schema version {current}, newer than this gatehouse ({}); upgrade gatehouse",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![index as i64 + 1, now_millis()],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
    Ok(())
}

fn get_body<T: DeserializeOwned>(tx: &Connection, sql: &str, id: String) -> StoreResult<Option<T>> {
    let body: Option<String> = tx
        .query_row(sql, [id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    body.map(|b| from_json(&b).map_err(backend)).transpose()
}

fn list_bodies<T: DeserializeOwned>(
    tx: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<T>> {
    let mut stmt = tx.prepare(sql).map_err(backend)?;
    let rows = stmt
        .query_map(args, |r| r.get::<_, String>(0))
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(from_json(&row.map_err(backend)?).map_err(backend)?);
    }
    Ok(out)
}

/// Writes the user row as `how` says: true when it was written, false when no row matched an
/// update (gone, or changed since the expected version).
fn write_user(tx: &Connection, row: &UserRow, how: UserWrite) -> StoreResult<bool> {
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
fn write_registration(tx: &Connection, row: &RegistrationRow) -> StoreResult<()> {
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

/// Inserts or replaces a link.
fn write_link(tx: &Connection, row: &LinkRow) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO identity_provider_links (identity_provider_id, identity_provider_user_id, user_id, body) \
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (identity_provider_id, identity_provider_user_id) \
         DO UPDATE SET user_id = excluded.user_id, body = excluded.body",
        params![
            row.provider.to_string(),
            row.provider_user,
            row.user.to_string(),
            row.body
        ],
    )
    .map_err(conflict_is_not_found)?;
    Ok(())
}

/// A foreign-key failure (the user or provider is gone) is `NotFound`.
fn conflict_is_not_found(e: rusqlite::Error) -> StoreError {
    match backend(e) {
        StoreError::Conflict(_) => StoreError::NotFound,
        other => other,
    }
}

fn user_conflict(e: rusqlite::Error) -> StoreError {
    match backend(e) {
        StoreError::Conflict(_) => StoreError::Conflict(
            "a user with this email or username already exists in the tenant".into(),
        ),
        other => other,
    }
}

fn find_live_token(tx: &Connection, value: &str) -> StoreResult<Option<RefreshToken>> {
    let found = select_tokens(tx, "token_hash = ?1", &[&token_hash(value)])
        .map_err(backend)?
        .into_iter()
        .next();
    Ok(live_match(found, value))
}

fn insert_revocation(
    tx: &Connection,
    scope: &RevocationScope,
    instant_seconds: i64,
) -> StoreResult<()> {
    let (kind, first, second) = revocation_row(scope);
    // Writes are serialized (one writer at a time), so this order is the commit order.
    let seq: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM revocations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    tx.execute(
        "INSERT INTO revocations (scope, first_id, second_id, instant, seq) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (scope, first_id, second_id) \
         DO UPDATE SET instant = MAX(instant, excluded.instant), seq = excluded.seq",
        params![kind, first, second, instant_seconds, seq],
    )
    .map_err(backend)?;
    Ok(())
}

/// The instant (s) a revocation of `scopes` at `now_seconds` is dated, by the rule every node
/// applies ([`gatehouse_plugin_api::tokens::revocation_instant`]) over the revocations dated
/// now or later.
fn dated_revocation(
    tx: &Connection,
    scopes: &[RevocationScope],
    now_seconds: i64,
) -> StoreResult<i64> {
    let recent = read_revocations(
        tx,
        "SELECT scope, first_id, second_id, instant FROM revocations WHERE instant >= ?1",
        params![now_seconds],
    )?;
    Ok(gatehouse_plugin_api::tokens::revocation_instant(
        scopes,
        now_seconds,
        recent.iter().map(|(scope, at)| (scope, *at)),
    ))
}

/// The revocations a `SELECT scope, first_id, second_id, instant …` finds (rows of a kind
/// this version does not know are passed over).
fn read_revocations(
    tx: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<(RevocationScope, i64)>> {
    let mut stmt = tx.prepare(sql).map_err(backend)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, first, second, instant) = row.map_err(backend)?;
        if let Some(scope) = revocation_scope(&kind, &first, &second) {
            out.push((scope, instant));
        }
    }
    Ok(out)
}

/// Replaces the retired value with `next` and records the rotation, conditional on the old
/// value still being live: a concurrent rotation that committed first makes this match
/// nothing. True when this call rotated.
fn rotate_live(tx: &Connection, row: &RotationRow, next: &RefreshToken) -> StoreResult<bool> {
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
fn find_rotated(tx: &Connection, old_hash: &str) -> StoreResult<Option<Rotation>> {
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
        let email = email.to_lowercase();
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
        let email = email.to_lowercase();
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
        let username = username.to_lowercase();
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

#[async_trait]
impl RefreshTokenStore for SqliteStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        self.tx(move |tx| {
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
        })
        .await
    }
    async fn find_refresh_token(&self, value: &str) -> StoreResult<Option<RefreshToken>> {
        let value = value.to_string();
        self.tx(move |tx| find_live_token(tx, &value)).await
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
                .execute(
                    "UPDATE refresh_tokens SET start_instant = ?2, expiration_instant = ?3, meta_data = ?4 \
                     WHERE id = ?1 AND token_hash = ?5",
                    params![
                        t.id.to_string(),
                        t.start_instant,
                        t.expiration_instant,
                        meta,
                        token_hash(&t.token)
                    ],
                )
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
    async fn revoke_refresh_tokens(&self, scope: &RevokeScope) -> StoreResult<Vec<RefreshToken>> {
        let scope = scope.clone();
        self.tx(move |tx| {
            let (filter, args): (&str, Vec<String>) = match &scope {
                RevokeScope::Id(id) => ("id = ?1", vec![id.to_string()]),
                RevokeScope::Token(value) => {
                    let live = find_live_token(tx, value)?;
                    match live {
                        Some(t) => ("id = ?1", vec![t.id.to_string()]),
                        None => return Ok(Vec::new()),
                    }
                }
                RevokeScope::User(user) => ("user_id = ?1", vec![user.to_string()]),
                RevokeScope::Application(app) => ("application_id = ?1", vec![app.to_string()]),
                RevokeScope::UserApplication(user, app) => (
                    "user_id = ?1 AND application_id = ?2",
                    vec![user.to_string(), app.to_string()],
                ),
            };
            let params: Vec<&dyn rusqlite::ToSql> =
                args.iter().map(|a| a as &dyn rusqlite::ToSql).collect();
            let revoked = select_tokens(tx, filter, &params).map_err(backend)?;
            let edge = scope.edge_scopes(&revoked);
            let at = dated_revocation(tx, &edge, now_millis() / 1000)?;
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
            Ok(revoked)
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

/// SQLite cannot push: gateways on one file poll the revocations table every second, by the
/// order rows were written (`seq`).
#[async_trait]
impl super::feed::RevocationFeed for SqliteStore {
    fn revocation_feed(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<super::feed::FeedEvent>> {
        None
    }

    async fn revocations_since(
        &self,
        cursor: &RevocationCursor,
        horizon_seconds: i64,
    ) -> StoreResult<(Vec<(RevocationScope, i64)>, RevocationCursor)> {
        let after: i64 = cursor.0.parse().unwrap_or(0);
        self.tx(move |tx| {
            let rows = read_revocations(
                tx,
                "SELECT scope, first_id, second_id, instant FROM revocations \
                 WHERE seq > ?1 AND instant >= ?2",
                params![after, horizon_seconds],
            )?;
            let last: i64 = tx
                .query_row("SELECT COALESCE(MAX(seq), 0) FROM revocations", [], |r| {
                    r.get(0)
                })
                .map_err(backend)?;
            Ok((rows, RevocationCursor(last.max(after).to_string())))
        })
        .await
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
            tx.execute(
                "INSERT INTO tenants (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                params![id, body],
            )
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
            tx.execute(
                "INSERT INTO applications (id, tenant_id, body) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body",
                params![id, tenant, body],
            )
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
        self.tx(move |tx| {
            tx.execute("DELETE FROM api_keys", []).map_err(backend)?;
            for k in &keys {
                tx.execute(
                    "INSERT INTO api_keys (id, key, tenant_id, description) VALUES (?1, ?2, ?3, ?4)",
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
        })
        .await
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
}

#[async_trait]
impl IdentityProviderStore for SqliteStore {
    async fn save_login(
        &self,
        user: &User,
        expected_user: Option<&User>,
        registration: Option<&Registration>,
        link: &IdentityProviderLink,
    ) -> StoreResult<bool> {
        let row = UserRow::of(user)?;
        let how = expected_user.map_or(UserWrite::Insert, |u| {
            UserWrite::ReplaceIf(u.last_update_instant)
        });
        let registration = registration.map(RegistrationRow::of).transpose()?;
        let link = LinkRow::of(link)?;
        self.tx(move |tx| {
            if !write_user(tx, &row, how)? {
                return Ok(false);
            }
            if let Some(registration) = &registration {
                write_registration(tx, registration)?;
            }
            write_link(tx, &link)?;
            Ok(true)
        })
        .await
    }
    async fn put_identity_provider(&self, id: Uuid, provider: &Value) -> StoreResult<()> {
        self.put_document("identity_providers", id, provider).await
    }
    async fn get_identity_provider(&self, id: Uuid) -> StoreResult<Option<Value>> {
        self.get_document("identity_providers", id).await
    }
    async fn replace_identity_provider(
        &self,
        id: Uuid,
        expected: &Value,
        provider: &Value,
    ) -> StoreResult<bool> {
        self.replace_document("identity_providers", id, expected, provider)
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
    async fn put_link(&self, link: &IdentityProviderLink) -> StoreResult<()> {
        let row = LinkRow::of(link)?;
        self.tx(move |tx| write_link(tx, &row)).await
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
                 ORDER BY identity_provider_id, identity_provider_user_id",
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
                "DELETE FROM identity_provider_links WHERE identity_provider_id = ?1 AND identity_provider_user_id = ?2",
                params![idp, idp_user],
            )
            .map_err(backend)?;
            Ok(link)
        })
        .await
    }
    async fn put_lambda(&self, id: Uuid, lambda: &Value) -> StoreResult<()> {
        self.put_document("lambdas", id, lambda).await
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
    async fn delete_lambda(&self, id: Uuid) -> StoreResult<()> {
        self.tx(move |tx| {
            let deleted = tx
                .execute("DELETE FROM lambdas WHERE id = ?1", [id.to_string()])
                .map_err(backend)?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }
    async fn add_event(&self, log_type: &str, message: &str) -> StoreResult<i64> {
        let (log_type, message) = (log_type.to_string(), message.to_string());
        self.tx(move |tx| {
            tx.execute(
                "INSERT INTO event_logs (insert_instant, type, message) VALUES (?1, ?2, ?3)",
                params![now_millis(), log_type, message],
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::suite::{host_store_suite, suite_store_via_directory, HostFixture};
    use gatehouse_plugin_api::store_suite::{SuiteFixture, SuiteStore};

    /// A store on a file of its own, in a nested directory the store creates.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: SqliteStore,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("nested").join("g.db")).expect("open");
        Fixture { _dir: dir, store }
    }

    impl SuiteFixture for Fixture {
        fn store(&self) -> &dyn SuiteStore {
            &self.store
        }
    }

    impl HostFixture for Fixture {
        fn gateway_store(&self) -> &dyn crate::store::GatewayStore {
            &self.store
        }
    }

    suite_store_via_directory!(SqliteStore);
    gatehouse_plugin_api::store_port_suite!(fixture);
    host_store_suite!(fixture);

    #[tokio::test]
    async fn what_was_written_is_there_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("g.db");
        let store = SqliteStore::open(&path).expect("open");
        crate::store::suite::write_for_reopen(&store).await;
        drop(store);
        // Reopening applies no migration twice and keeps the data.
        let reopened = SqliteStore::open(&path).expect("reopen");
        crate::store::suite::check_persisted(&reopened).await;
    }
}
