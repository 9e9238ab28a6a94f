//! The SQLite backend: one database file in WAL mode with `synchronous=FULL`, so an
//! acknowledged write survives a crash or power loss. Schema migrations are SQL files under
//! `sqlite/migrations/`, applied in order inside one transaction each and recorded in
//! `schema_migrations`.
//!
//! rusqlite is synchronous: the one connection belongs to a thread of its own (`writer.rs`;
//! SQLite has one writer at a time anyway), which runs each trait method's call in a
//! transaction — the calls queued while it was busy together, each in a savepoint, under one
//! commit and one fsync (group commit), each answered only once its writes are durable.
//!
//! This module opens the file, holds the connection, runs transactions and migrations and
//! reads columns; each storage port has a file of its own with its SQL: `directory.rs`
//! (tenants, applications, key material, API keys, the health check), `users.rs` (users and
//! registrations), `refresh_tokens.rs` (tokens and one-time-use rotations), `revocations.rs`
//! (the edge's revocations and their feed), `identity_providers.rs` (providers, links, lambdas,
//! the event log). `postgres/` has the same files.

mod directory;
mod identity_providers;
mod readers;
mod refresh_tokens;
mod revocations;
mod users;
mod writer;

use std::path::Path;
use std::sync::Arc;

use gatehouse_plugin_api::clock::Clock;
use gatehouse_plugin_api::store::{StoreError, StoreResult};

use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::rows::encode;

/// Migrations in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_lambdas_revocations.sql"),
    include_str!("migrations/0003_rotation_outcome.sql"),
    include_str!("migrations/0004_rotation_retention.sql"),
    include_str!("migrations/0005_revocation_order.sql"),
    include_str!("migrations/0006_login_states.sql"),
    include_str!("migrations/0007_link_tenants.sql"),
];

/// How many prepared statements the connection keeps for reuse.
const STATEMENT_CACHE: usize = 128;

/// A SQLite database file.
pub struct SqliteStore {
    /// The thread that owns the connection and runs the calls.
    writer: writer::Writer,
    /// Read-only connections for the refresh path's read.
    readers: Arc<readers::Readers>,
    /// The threads the refresh path's read runs on (as many as idle readers are kept).
    read_threads: gatehouse_plugin_api::CpuPool,
    /// Where every instant the store writes itself comes from.
    clock: Arc<dyn Clock>,
}

/// The store error of a SQLite failure: a file that cannot be used (busy, locked, unreadable,
/// unwritable, full, damaged) is `Unavailable` (503, nothing lost: try again), a broken
/// uniqueness rule `Conflict`, anything else `Backend`.
pub(super) fn backend(e: rusqlite::Error) -> StoreError {
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
            super::rows::unique_violation()
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

pub(super) fn from_json<T: DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    super::rows::decode_document(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn uuid_col(row: &Row<'_>, index: usize) -> rusqlite::Result<Uuid> {
    let text: String = row.get(index)?;
    Uuid::parse_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(e))
    })
}

pub(super) fn opt_uuid_col(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Uuid>> {
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

impl SqliteStore {
    /// Opens or creates the database file (and its directory), sets WAL and durability
    /// pragmas, and applies pending migrations. The instants the store writes itself (when a
    /// migration was applied, an event logged, a revocation dated) are `clock`'s.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> StoreResult<Self> {
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
        set_wal_mode(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend)?;
        // Statements are prepared once and kept (`prepare_cached`): the refresh path alone
        // runs about ten distinct ones.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        migrate(&mut conn, clock.now_millis())?;
        Ok(SqliteStore {
            writer: writer::Writer::start(conn)?,
            readers: Arc::new(readers::Readers::new(path)),
            read_threads: gatehouse_plugin_api::CpuPool::new(readers::MAX_IDLE),
            clock,
        })
    }

    /// Runs `f` in an immediate (write-locking) transaction on the store's thread, perhaps with
    /// other calls (each in its own savepoint, see `writer.rs`). Returns its value once its
    /// writes are committed, its own error (its writes rolled back; a panic is a `Backend`
    /// error), or the error that kept the transaction from committing.
    pub(super) async fn tx<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.writer.call(f).await
    }
}

impl SqliteStore {
    /// Replaces document `id` of `table` with `document` only while its stored body is still
    /// `expected`: true when it was replaced, false when it changed meanwhile (nothing
    /// written); `NotFound` when it is gone.
    pub(super) async fn replace_document(
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
    pub(super) async fn get_document<T: DeserializeOwned + Send + 'static>(
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
    pub(super) async fn list_documents<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
    ) -> StoreResult<Vec<T>> {
        self.tx(move |tx| list_bodies(tx, &format!("SELECT body FROM {table} ORDER BY id"), &[]))
            .await
    }
}

/// Puts the file in WAL mode. A new file's first switch needs it to itself, and SQLite may
/// answer busy at once rather than wait out the busy timeout: while another process opening
/// the same new file holds it, the switch is tried again for up to 5 s. `Err` past that, or on
/// any other error.
fn set_wal_mode(conn: &Connection) -> StoreResult<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            outcome => return outcome.map_err(backend),
        }
    }
}

/// Applies pending migrations, each recorded as applied at `now_ms`. A file already up to date
/// is only read. Otherwise each migration reads the schema's version inside its own
/// write-locking transaction, so gateways opening a new file at the same moment apply each
/// migration once: the second finds it applied and goes on.
fn migrate(conn: &mut Connection, now_ms: i64) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(backend)?;
    if schema_version(conn)? == MIGRATIONS.len() {
        return Ok(());
    }
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let current = schema_version(&tx)?;
        let Some(sql) = MIGRATIONS.get(current) else {
            return Ok(());
        };
        tx.execute_batch(sql).map_err(backend)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
            params![current as i64 + 1, now_ms],
        )
        .map_err(backend)?;
        tx.commit().map_err(backend)?;
    }
}

/// The number of migrations applied to the file `conn` is open on; `Err` when the file is
/// newer than this build (see `check_schema_version`) or cannot be read.
fn schema_version(conn: &Connection) -> StoreResult<usize> {
    let current: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let current = usize::try_from(current).unwrap_or(0);
    super::rows::check_schema_version(current, MIGRATIONS.len())?;
    Ok(current)
}

pub(super) fn get_body<T: DeserializeOwned>(
    tx: &Connection,
    sql: &str,
    id: String,
) -> StoreResult<Option<T>> {
    let body: Option<String> = tx
        .prepare_cached(sql)
        .and_then(|mut stmt| stmt.query_row([id], |r| r.get(0)).optional())
        .map_err(backend)?;
    body.map(|b| from_json(&b).map_err(backend)).transpose()
}

pub(super) fn list_bodies<T: DeserializeOwned>(
    tx: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<T>> {
    let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
    let rows = stmt
        .query_map(args, |r| r.get::<_, String>(0))
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(from_json(&row.map_err(backend)?).map_err(backend)?);
    }
    Ok(out)
}

/// A foreign-key failure (the user or provider is gone) is `NotFound`.
pub(super) fn conflict_is_not_found(e: rusqlite::Error) -> StoreError {
    super::rows::conflict_is_not_found(backend(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_plugin_api::clock::SystemClock;

    use crate::store::suite::{host_store_suite, suite_store_via_directory, HostFixture};
    use gatehouse_plugin_api::store_suite::{SuiteFixture, SuiteStore};

    /// A store on a file of its own, in a nested directory the store creates.
    struct Fixture {
        _dir: tempfile::TempDir,
        store: SqliteStore,
    }

    async fn fixture() -> Fixture {
        fixture_on(Arc::new(SystemClock)).await
    }

    async fn fixture_on(clock: Arc<dyn Clock>) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            SqliteStore::open(&dir.path().join("nested").join("g.db"), clock).expect("open");
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
    host_store_suite!(fixture, fixture_on);

    /// A call that panics inside its transaction poisons the connection's lock: the
    /// transaction is rolled back, and later calls are served, not failed as a broken store.
    #[tokio::test]
    async fn a_call_that_panicked_is_rolled_back_and_the_store_serves_on() {
        use crate::store::DirectoryStore;
        use gatehouse_plugin_api::store::Directory;
        let fixture = fixture().await;
        let store = &fixture.store;
        let tenant = gatehouse_plugin_api::store_suite::tenant();
        let body = crate::store::rows::encode(&tenant).expect("encode");
        let id = tenant.id.to_string();
        let panicked = store
            .tx(move |tx| {
                tx.execute(
                    "INSERT INTO tenants (id, body) VALUES (?1, ?2)",
                    rusqlite::params![id, body],
                )
                .map_err(backend)?;
                panic!("a bug inside a transaction");
            })
            .await;
        assert!(matches!(panicked, Err::<(), _>(StoreError::Backend(_))));
        store.ping().await.expect("the store serves on");
        assert_eq!(store.get_tenant(tenant.id).await.expect("get"), None);
        crate::store::suite::seed(store, std::slice::from_ref(&tenant), &[]).await;
        assert_eq!(
            store.get_tenant(tenant.id).await.expect("get"),
            Some(tenant)
        );
    }

    #[test]
    fn gateways_opening_one_new_file_at_once_all_start_and_migrate_it_once() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("g.db");
            let start = Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        SqliteStore::open(&path, Arc::new(SystemClock)).map(drop)
                    })
                })
                .collect();
            for opener in openers {
                opener.join().expect("thread").expect("open");
            }
            let conn = Connection::open(&path).expect("connection");
            let (applied, latest): (i64, i64) = conn
                .query_row(
                    "SELECT COUNT(*), MAX(version) FROM schema_migrations",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("versions");
            assert_eq!(
                (applied, latest),
                (MIGRATIONS.len() as i64, MIGRATIONS.len() as i64)
            );
        }
    }

    #[tokio::test]
    async fn a_link_written_before_links_had_tenants_keeps_its_tenant() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.db");
        let link = serde_json::json!({"identityProviderId": Uuid::from_u128(1),
            "identityProviderUserId": "ext", "userId": Uuid::from_u128(2),
            "tenantId": Uuid::from_u128(3), "insertInstant": 1, "lastLoginInstant": 1});
        {
            // A file at schema version 6, with one provider and its link.
            let mut conn = Connection::open(&path).expect("connection");
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
            )
            .expect("versions");
            for (version, sql) in MIGRATIONS[..6].iter().enumerate() {
                let tx = conn.transaction().expect("tx");
                tx.execute_batch(sql).expect("migration");
                tx.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)",
                    params![version as i64 + 1],
                )
                .expect("version");
                tx.commit().expect("commit");
            }
            conn.execute(
                "INSERT INTO identity_providers (id, body) VALUES (?1, '{}')",
                params![Uuid::from_u128(1).to_string()],
            )
            .expect("provider");
            conn.execute(
                "INSERT INTO identity_provider_links VALUES (?1, 'ext', ?2, ?3)",
                params![
                    Uuid::from_u128(1).to_string(),
                    Uuid::from_u128(2).to_string(),
                    link.to_string()
                ],
            )
            .expect("link");
        }
        let store = SqliteStore::open(&path, Arc::new(SystemClock)).expect("open");
        let found = gatehouse_plugin_identity_provider::IdentityProviderStore::find_links(
            &store,
            None,
            None,
            Some("ext"),
        )
        .await
        .expect("find");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].tenant_id, Uuid::from_u128(3));
        let conn = Connection::open(&path).expect("connection");
        let tenant: String = conn
            .query_row("SELECT tenant_id FROM identity_provider_links", [], |r| {
                r.get(0)
            })
            .expect("tenant column");
        assert_eq!(tenant, Uuid::from_u128(3).to_string());
    }

    #[tokio::test]
    async fn what_was_written_is_there_after_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested").join("g.db");
        let store = SqliteStore::open(&path, Arc::new(SystemClock)).expect("open");
        crate::store::suite::write_for_reopen(&store).await;
        drop(store);
        // Reopening applies no migration twice and keeps the data.
        let reopened = SqliteStore::open(&path, Arc::new(SystemClock)).expect("reopen");
        crate::store::suite::check_persisted(&reopened).await;
    }

    /// A live token with its user, tenant and application, in `store`.
    async fn seeded_token(store: &SqliteStore, value: &str) {
        use gatehouse_plugin_api::store::RefreshTokenStore;
        use gatehouse_plugin_api::store_suite as suite;
        let application = suite::application();
        crate::store::suite::seed(
            store,
            &[suite::tenant()],
            std::slice::from_ref(&application),
        )
        .await;
        let token = suite::token(Uuid::from_u128(0x6666), value);
        let user = gatehouse_plugin_api::model::User {
            id: token.user_id,
            tenant_id: token.tenant_id,
            email: Some("ann@example.com".into()),
            active: true,
            ..Default::default()
        };
        gatehouse_plugin_api::store::UserStore::create_user(store, &user)
            .await
            .expect("user");
        store.insert_refresh_token(&token).await.expect("insert");
    }

    /// The refresh path's read is made beside the writer: it is answered while the writer
    /// thread is busy inside a transaction (as during a commit's fsync), and sees what the
    /// writer committed before it.
    #[tokio::test]
    async fn a_refresh_subject_is_read_beside_a_busy_writer() {
        use gatehouse_plugin_api::store::RefreshTokenStore;
        let fixture = fixture().await;
        let store = &fixture.store;
        seeded_token(store, "value-one").await;
        let (entered, inside) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let busy = store.tx(move |tx| {
            tx.execute("DELETE FROM refresh_tokens", [])
                .map_err(backend)?;
            entered.send(()).expect("entered");
            gate.recv().expect("released");
            Err::<(), _>(StoreError::NotFound)
        });
        let read = async {
            tokio::task::spawn_blocking(move || inside.recv().expect("the writer is busy"))
                .await
                .expect("join");
            let found = store.find_refresh_subject("value-one").await;
            release.send(()).expect("release");
            found
        };
        let (busy, found) = tokio::join!(busy, read);
        assert_eq!(busy, Err(StoreError::NotFound), "rolled back");
        let subject = found
            .expect("read")
            .expect("live: the delete is not committed");
        assert_eq!(subject.token.token, "value-one");
        assert!(subject.user.is_some() && subject.application.is_some());
        assert_eq!(fixture.store.readers.idle(), 1);
    }

    /// When the file cannot be read by a reader, the same read goes through the
    /// writer thread and answers the same.
    #[tokio::test]
    async fn a_refresh_subject_the_readers_cannot_read_is_read_by_the_writer() {
        use gatehouse_plugin_api::store::RefreshTokenStore;
        let mut fixture = fixture().await;
        seeded_token(&fixture.store, "value-one").await;
        let missing = fixture._dir.path().join("missing.db");
        fixture.store.readers = Arc::new(readers::Readers::new(&missing));
        let store = &fixture.store;
        let subject = store.find_refresh_subject("value-one").await.expect("read");
        assert_eq!(subject.expect("live").token.token, "value-one");
        let other = store.find_refresh_subject("other").await;
        assert!(matches!(other, Ok(None)), "{other:?}");
        assert!(!missing.exists());
    }

    /// Refreshes' writes answered (committed together or not) are durable: a second
    /// connection sees them while the first is still open, and so does the store reopened.
    #[tokio::test]
    async fn concurrent_refresh_writes_are_committed_when_answered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.db");
        let store = SqliteStore::open(&path, Arc::new(SystemClock)).expect("open");
        crate::store::suite::write_concurrent_refreshes(&store).await;
        let other = SqliteStore::open(&path, Arc::new(SystemClock)).expect("second connection");
        crate::store::suite::check_concurrent_refreshes_persisted(&other).await;
        drop((store, other));
        let reopened = SqliteStore::open(&path, Arc::new(SystemClock)).expect("reopen");
        crate::store::suite::check_concurrent_refreshes_persisted(&reopened).await;
    }
}
