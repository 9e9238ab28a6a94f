//! The PostgreSQL backend, for a cluster of gateways sharing one database: users, providers,
//! refresh tokens, one-time-use rotations and revocations written through one node are seen by
//! every other. Revocations are pushed: their transaction notifies, and every node listens
//! ([`super::feed`]; polling takes over while a node's listener is reconnecting).
//!
//! Connections come from a deadpool-postgres pool of tokio-postgres clients **without TLS**
//! (`NoTls`): put the database on loopback or a trusted private network. TLS to the database is
//! not supported yet.
//!
//! The pool lives on a small tokio runtime of its own, on a thread owned by the store: a
//! tokio-postgres connection is driven by the runtime it was opened on, and the gateway calls
//! the store from several runtimes (start-up's, which is shut down after it; Pingora's; the
//! revocation poller's current-thread one, idle between polls). Each call is spawned onto the
//! store's runtime and awaited from the caller's.
//!
//! Every trait method is one transaction (READ COMMITTED): an explicit one when the method runs
//! more than one statement, the statement's own otherwise. One-time-use rotation is a
//! conditional `UPDATE ... WHERE id = $1 AND token_hash = $2`: of two nodes rotating the same
//! value, the second waits for the first's row lock, then matches nothing and reports what
//! replaced the value. The schema and its rules are SQLite's (see `migrations/postgres/`):
//! refresh-token values are found by their SHA-256 ([`super::token_hash`]) and compared in
//! constant time; emails and usernames are unique per tenant, case-insensitively.
//!
//! Migrations are SQL files under `migrations/postgres/`, applied in order inside one
//! transaction each and recorded in `schema_migrations`, each under a transaction-level advisory
//! lock (`pg_advisory_xact_lock`), so gateways starting together apply each migration once.
//!
//! Errors: a connection that cannot be made or was lost, a pool timeout, an overloaded or
//! shutting-down server map to [`StoreError::Unavailable`]; integrity violations (unique,
//! foreign key) to [`StoreError::Conflict`]; the rest to [`StoreError::Backend`].

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
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
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_postgres::config::Host;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::rows::{
    encode, live_match, revocation_row, revocation_scope, token_hash, LinkRow, RegistrationRow,
    RotationRow, UserRow, UserWrite, PRUNE_BATCH, TOKEN_COLUMNS,
};

/// Migrations in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/postgres/0001_init.sql"),
    include_str!("migrations/postgres/0002_rotation_retention.sql"),
    include_str!("migrations/postgres/0003_revocation_order.sql"),
];

/// The advisory lock key migrations run under ("gatehous" in ASCII).
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

/// The advisory lock key replacing the API keys runs under, so two nodes starting together
/// replace the set one after the other instead of clashing on its unique keys.
const API_KEYS_LOCK: i64 = MIGRATION_LOCK + 1;

/// Connections per gateway.
const POOL_SIZE: usize = 16;

/// How long opening a connection may take, unless the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a call waits for a free connection (or for a new one) before it is `Unavailable`.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one call (its queries and its commit) may take before it is `Unavailable`.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL database shared by every gateway of a cluster.
pub struct PostgresStore {
    pool: Pool,
    /// What the revocation listener connects with.
    config: tokio_postgres::Config,
    /// The store's runtime, where every call runs (see the module documentation).
    runtime: tokio::runtime::Handle,
    /// Dropping it stops the store's runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Maps a tokio-postgres error: see the module documentation.
fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let detail = format!("{} {code}: {}", db.severity(), db.message());
        return if code.starts_with("23") {
            StoreError::Conflict("a record with the same unique value already exists".into())
        } else if unavailable_code(code) {
            StoreError::Unavailable(detail)
        } else {
            StoreError::Backend(detail)
        };
    }
    let mut detail = e.to_string();
    let mut io = false;
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        io |= cause.is::<std::io::Error>();
        detail.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    let text = e.to_string();
    if io
        || e.is_closed()
        || text == "timeout waiting for server"
        || text == "authentication error"
        || text == "error performing TLS handshake"
    {
        StoreError::Unavailable(detail)
    } else {
        StoreError::Backend(detail)
    }
}

/// SQLSTATEs meaning the server cannot serve now (down, starting, overloaded, read-only, lock
/// contention) or cannot be used as configured (authentication, missing database).
fn unavailable_code(code: &str) -> bool {
    ["08", "28", "53", "57P"]
        .iter()
        .any(|class| code.starts_with(class))
        || matches!(
            code,
            "3D000" | "40001" | "40P01" | "55P03" | "57014" | "25006"
        )
}

fn pool_error(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => pg(e),
        PoolError::Timeout(_) => {
            StoreError::Unavailable("timed out waiting for a PostgreSQL connection".into())
        }
        PoolError::Closed => StoreError::Unavailable("the connection pool is closed".into()),
        other => StoreError::Backend(other.to_string()),
    }
}

fn from_json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    super::rows::decode_document(text).map_err(|e| StoreError::Backend(format!("decode: {e}")))
}

/// Column `index` of `row`.
fn col<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> StoreResult<T> {
    row.try_get(index).map_err(pg)
}

/// Runs a statement (prepared once per connection); returns the rows.
async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&statement, params).await.map_err(pg)
}

/// Runs a statement (prepared once per connection); returns the first row, if any.
async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Option<Row>> {
    Ok(query(c, sql, params).await?.into_iter().next())
}

/// Runs a statement (prepared once per connection); returns the number of rows changed.
async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<u64> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&statement, params).await.map_err(pg)
}

/// The JSON document in column 0 of the first row, if any.
async fn get_body<C: GenericClient, T: DeserializeOwned>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Option<T>> {
    match query_opt(c, sql, params).await? {
        Some(row) => Ok(Some(from_json(&col::<String>(&row, 0)?)?)),
        None => Ok(None),
    }
}

/// The JSON documents in column 0 of every row.
async fn list_bodies<C: GenericClient, T: DeserializeOwned>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<T>> {
    query(c, sql, params)
        .await?
        .iter()
        .map(|row| from_json(&col::<String>(row, 0)?))
        .collect()
}

fn token_from_row(row: &Row) -> StoreResult<RefreshToken> {
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

async fn select_tokens<C: GenericClient>(
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

async fn find_live_token<C: GenericClient>(
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
async fn rotate_live<C: GenericClient>(
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
async fn find_rotated<C: GenericClient>(c: &C, old_hash: &str) -> StoreResult<Option<Rotation>> {
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

/// Records a revocation and announces it on the revocation channel; call it inside the
/// revocation's transaction, so the announcement goes out exactly when it commits.
async fn insert_revocation<C: GenericClient>(
    c: &C,
    scope: &RevocationScope,
    instant_seconds: i64,
) -> StoreResult<()> {
    let (kind, first, second) = revocation_row(scope);
    execute(
        c,
        "INSERT INTO revocations (scope, first_id, second_id, instant) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope, first_id, second_id) \
         DO UPDATE SET instant = GREATEST(revocations.instant, excluded.instant), \
         xact = pg_current_xact_id()",
        &[&kind, &first, &second, &instant_seconds],
    )
    .await?;
    // A wake-up call only: listeners read the table, never a payload.
    query(c, "SELECT pg_notify($1, '')", &[&super::feed::CHANNEL]).await?;
    Ok(())
}

fn user_conflict(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(
            "a user with this email or username already exists in the tenant".into(),
        ),
        other => other,
    }
}

/// A failed reference (registration of a missing user, link to a missing provider) is
/// `NotFound`, as in SQLite.
fn conflict_is_not_found(e: StoreError) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::NotFound,
        other => other,
    }
}

/// Writes the user row as `how` says: true when it was written, false when no row matched an
/// update (gone, or changed since the expected version).
async fn write_user<C: GenericClient>(c: &C, row: &UserRow, how: UserWrite) -> StoreResult<bool> {
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
async fn write_registration<C: GenericClient>(c: &C, row: &RegistrationRow) -> StoreResult<()> {
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

/// Inserts or replaces a link.
async fn write_link<C: GenericClient>(c: &C, row: &LinkRow) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO identity_provider_links (identity_provider_id, identity_provider_user_id, user_id, body) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (identity_provider_id, identity_provider_user_id) \
         DO UPDATE SET user_id = excluded.user_id, body = excluded.body",
        &[&row.provider, &row.provider_user, &row.user, &row.body],
    )
    .await
    .map_err(conflict_is_not_found)?;
    Ok(())
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `host:port/db` of a configuration, for messages (never the password).
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    format!(
        "{}/{}",
        hosts.join(","),
        config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
    )
}

/// Starts the store's runtime on a thread of its own; the thread drops the runtime (outside
/// any async context) once the returned sender is dropped.
fn start_runtime() -> StoreResult<(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("postgres-store")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Backend(format!("cannot start the store runtime: {e}")))?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("postgres-store-owner".into())
        .spawn(move || {
            // Returns when the sender is dropped (with the store).
            let _ = stopped.blocking_recv();
            runtime.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the store thread: {e}")))?;
    Ok((handle, stop))
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:5432/db`, without
    /// TLS), checks it answers, and applies pending migrations.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("store: not a valid PostgreSQL URL ({e})")))?;
        Self::open_config(config).await
    }

    /// [`PostgresStore::open`] with a parsed configuration.
    pub async fn open_config(mut config: tokio_postgres::Config) -> StoreResult<Self> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("gatehouse");
        }
        let target = describe(&config);
        let (runtime, stop) = start_runtime()?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            // Verified: a connection is tested before reuse (one round trip), so one left
            // behind by a call that timed out on a stalled link is replaced, not reused.
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot build the connection pool: {e}")))?;
        let store = PostgresStore {
            pool,
            config,
            runtime,
            _stop: stop,
        };
        let context = |e: StoreError| match e {
            StoreError::Unavailable(m) => {
                StoreError::Unavailable(format!("PostgreSQL at {target}: {m}"))
            }
            StoreError::Backend(m) => StoreError::Backend(format!("PostgreSQL at {target}: {m}")),
            other => other,
        };
        store.ping().await.map_err(context)?;
        store.run(migrate).await.map_err(context)?;
        Ok(store)
    }

    /// Runs `f` with a pooled connection on the store's runtime.
    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.runtime
            .spawn(async move {
                let client = pool.get().await.map_err(pool_error)?;
                // A call that hangs (a stalled link, a COMMIT that never returns) is an outage,
                // not a request held forever; its connection is checked before any reuse.
                tokio::time::timeout(CALL_TIMEOUT, f(client))
                    .await
                    .unwrap_or_else(|_| {
                        Err(StoreError::Unavailable(
                            "a PostgreSQL call timed out".into(),
                        ))
                    })
            })
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// Inserts or replaces the JSON document `id` of a `(id, body)` table.
    async fn put_document(
        &self,
        table: &'static str,
        id: Uuid,
        document: &Value,
    ) -> StoreResult<()> {
        let body = encode(document)?;
        self.run(move |c| async move {
            execute(
                &c,
                &format!(
                    "INSERT INTO {table} (id, body) VALUES ($1, $2) \
                     ON CONFLICT (id) DO UPDATE SET body = excluded.body"
                ),
                &[&id, &body],
            )
            .await?;
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
        self.run(move |c| async move {
            let changed = execute(
                &c,
                &format!("UPDATE {table} SET body = $2 WHERE id = $1 AND body = $3"),
                &[&id, &body, &expected],
            )
            .await?;
            if changed == 1 {
                return Ok(true);
            }
            let exists =
                execute(&c, &format!("SELECT 1 FROM {table} WHERE id = $1"), &[&id]).await?;
            if exists == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(false)
        })
        .await
    }

    /// The JSON document with this id in `table` (a table of `id`, `body` rows), if any.
    async fn get_document<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        id: Uuid,
    ) -> StoreResult<Option<T>> {
        self.run(move |c| async move {
            get_body(
                &c,
                &format!("SELECT body FROM {table} WHERE id = $1"),
                &[&id],
            )
            .await
        })
        .await
    }

    /// Every JSON document in `table`, by id.
    async fn list_documents<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
    ) -> StoreResult<Vec<T>> {
        self.run(move |c| async move {
            list_bodies(&c, &format!("SELECT body FROM {table} ORDER BY id"), &[]).await
        })
        .await
    }
}

/// Applies pending migrations, one transaction each, under the migration lock.
async fn migrate(mut c: Object) -> StoreResult<()> {
    loop {
        let tx = c.transaction().await.map_err(pg)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version integer PRIMARY KEY, applied_at bigint NOT NULL)",
        )
        .await
        .map_err(pg)?;
        let current: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?;
        let current = usize::try_from(current).unwrap_or(0);
        if current > MIGRATIONS.len() {
            return Err(StoreError::Unavailable(format!(
                "the database is at schema version {current}, newer than this gatehouse ({}); upgrade gatehouse",
                MIGRATIONS.len()
            )));
        }
        let Some(sql) = MIGRATIONS.get(current) else {
            tx.commit().await.map_err(pg)?;
            return Ok(());
        };
        tx.batch_execute(sql).await.map_err(pg)?;
        let version = current as i32 + 1;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now_millis()],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
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
        let email = email.to_lowercase();
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
        let email = email.to_lowercase();
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
        let username = username.to_lowercase();
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

#[async_trait]
impl RefreshTokenStore for PostgresStore {
    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()> {
        let t = token.clone();
        let meta = encode(&t.meta_data)?;
        self.run(move |c| async move {
            execute(
                &c,
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
        })
        .await
    }
    async fn find_refresh_token(&self, value: &str) -> StoreResult<Option<RefreshToken>> {
        let value = value.to_string();
        self.run(move |c| async move { find_live_token(&c, &value).await })
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
    async fn revoke_refresh_tokens(&self, scope: &RevokeScope) -> StoreResult<Vec<RefreshToken>> {
        let scope = scope.clone();
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            let delete = |filter: &str| {
                format!("DELETE FROM refresh_tokens WHERE {filter} RETURNING {TOKEN_COLUMNS}")
            };
            let rows = match &scope {
                RevokeScope::Id(id) => query(&tx, &delete("id = $1"), &[id]).await?,
                RevokeScope::Token(value) => match find_live_token(&tx, value).await? {
                    Some(t) => query(&tx, &delete("id = $1"), &[&t.id]).await?,
                    None => return Ok(Vec::new()),
                },
                RevokeScope::User(user) => query(&tx, &delete("user_id = $1"), &[user]).await?,
                RevokeScope::Application(app) => {
                    query(&tx, &delete("application_id = $1"), &[app]).await?
                }
                RevokeScope::UserApplication(user, app) => {
                    query(
                        &tx,
                        &delete("user_id = $1 AND application_id = $2"),
                        &[user, app],
                    )
                    .await?
                }
            };
            let mut revoked = rows
                .iter()
                .map(token_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            revoked.sort_by_key(|t| t.insert_instant);
            let edge = scope.edge_scopes(&revoked);
            let at = dated_revocation(&tx, &edge, now_millis() / 1000).await?;
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

/// Revocations are pushed: one connection of this node listens on the revocation channel (see
/// [`super::feed`]). The table is read by transaction visibility: rows written by transactions
/// at or after the previous read's snapshot `xmin`, which includes every transaction still in
/// progress then, however late it commits.
#[async_trait]
impl super::feed::RevocationFeed for PostgresStore {
    fn revocation_feed(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<super::feed::FeedEvent>> {
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        self.runtime
            .spawn(super::feed::listen(self.config.clone(), events));
        Some(receiver)
    }

    async fn revocations_since(
        &self,
        cursor: &RevocationCursor,
        horizon_seconds: i64,
    ) -> StoreResult<(Vec<(RevocationScope, i64)>, RevocationCursor)> {
        let after = match cursor.0.as_str() {
            "" => "0".to_string(),
            text => text.to_string(),
        };
        self.run(move |mut c| async move {
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(pg)?;
            let snapshot = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text";
            let xmin: String = match query_opt(&tx, snapshot, &[]).await? {
                Some(row) => col(&row, 0)?,
                None => return Err(StoreError::Backend("no snapshot xmin".into())),
            };
            let rows = query(
                &tx,
                "SELECT scope, first_id, second_id, instant FROM revocations \
                 WHERE xact >= $1::text::xid8 AND instant >= $2",
                &[&after, &horizon_seconds],
            )
            .await?;
            tx.commit().await.map_err(pg)?;
            Ok((revocations_of(&rows)?, RevocationCursor(xmin)))
        })
        .await
    }
}

/// The instant (s) a revocation of `scopes` at `now_seconds` is dated, by the rule every node
/// applies ([`gatehouse_plugin_api::tokens::revocation_instant`]) over the revocations dated
/// now or later.
async fn dated_revocation<C: GenericClient>(
    c: &C,
    scopes: &[RevocationScope],
    now_seconds: i64,
) -> StoreResult<i64> {
    let rows = query(
        c,
        "SELECT scope, first_id, second_id, instant FROM revocations WHERE instant >= $1",
        &[&now_seconds],
    )
    .await?;
    let recent = revocations_of(&rows)?;
    Ok(gatehouse_plugin_api::tokens::revocation_instant(
        scopes,
        now_seconds,
        recent.iter().map(|(scope, at)| (scope, *at)),
    ))
}

/// The revocations of `scope, first_id, second_id, instant` rows (rows of a kind this version
/// does not know are passed over).
fn revocations_of(rows: &[Row]) -> StoreResult<Vec<(RevocationScope, i64)>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (kind, first, second): (String, String, String) =
            (col(row, 0)?, col(row, 1)?, col(row, 2)?);
        if let Some(scope) = revocation_scope(&kind, &first, &second) {
            out.push((scope, col(row, 3)?));
        }
    }
    Ok(out)
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
            execute(
                &c,
                "INSERT INTO tenants (id, body) VALUES ($1, $2) \
                 ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                &[&id, &body],
            )
            .await?;
            Ok(())
        })
        .await
    }
    async fn upsert_application(&self, application: &Application) -> StoreResult<()> {
        let (id, tenant, body) = (application.id, application.tenant_id, encode(application)?);
        self.run(move |c| async move {
            execute(
                &c,
                "INSERT INTO applications (id, tenant_id, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, body = excluded.body",
                &[&id, &tenant, &body],
            )
            .await?;
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
            execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&API_KEYS_LOCK]).await?;
            execute(&tx, "DELETE FROM api_keys", &[]).await?;
            for k in &keys {
                execute(
                    &tx,
                    "INSERT INTO api_keys (id, key, tenant_id, description) VALUES ($1, $2, $3, $4)",
                    &[&k.id, &k.key, &k.tenant_id, &k.description],
                )
                .await?;
            }
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
}

#[async_trait]
impl IdentityProviderStore for PostgresStore {
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
        self.run(move |mut c| async move {
            let tx = c.transaction().await.map_err(pg)?;
            if !write_user(&tx, &row, how).await? {
                return Ok(false);
            }
            if let Some(registration) = &registration {
                write_registration(&tx, registration).await?;
            }
            write_link(&tx, &link).await?;
            tx.commit().await.map_err(pg)?;
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
    async fn put_link(&self, link: &IdentityProviderLink) -> StoreResult<()> {
        let row = LinkRow::of(link)?;
        self.run(move |c| async move { write_link(&c, &row).await })
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
                 ORDER BY identity_provider_id, identity_provider_user_id",
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
        self.run(move |c| async move {
            let deleted = execute(&c, "DELETE FROM lambdas WHERE id = $1", &[&id]).await?;
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        })
        .await
    }
    async fn add_event(&self, log_type: &str, message: &str) -> StoreResult<i64> {
        let (log_type, message) = (log_type.to_string(), message.to_string());
        self.run(move |c| async move {
            let row = query_opt(
                &c,
                "INSERT INTO event_logs (insert_instant, type, message) VALUES ($1, $2, $3) RETURNING id",
                &[&now_millis(), &log_type, &message],
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The server the tests use when `GATEHOUSE_TEST_POSTGRES_URL` is unset.
    const DEFAULT_URL: &str = "postgres://gatehouse:gatehouse@127.0.0.1:5432/postgres";

    /// How to get a server, for failure messages.
    const HOW_TO: &str = "the PostgreSQL store tests need a server: run `bash scripts/bootstrap` \
         (installs PostgreSQL, starts it on 127.0.0.1:5432 and creates the role gatehouse/gatehouse \
         with CREATEDB), or set GATEHOUSE_TEST_POSTGRES_URL=postgres://USER:PASSWORD@HOST:PORT/postgres \
         for a role that may create databases";

    /// The test server's URL: `GATEHOUSE_TEST_POSTGRES_URL`, else the bootstrap default when
    /// something answers on its port. Panics (fails the test) otherwise.
    fn server_url() -> String {
        if let Ok(url) = std::env::var("GATEHOUSE_TEST_POSTGRES_URL") {
            if !url.trim().is_empty() {
                return url;
            }
        }
        let answers = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], 5432)),
            Duration::from_secs(2),
        )
        .is_ok();
        assert!(
            answers,
            "GATEHOUSE_TEST_POSTGRES_URL is unset and nothing answers on 127.0.0.1:5432; {HOW_TO}"
        );
        DEFAULT_URL.to_string()
    }

    /// A database created for one test on the test server, dropped (even after a failure)
    /// when this is dropped.
    struct TestDatabase {
        admin: tokio_postgres::Config,
        name: String,
        /// The configuration that reaches the new database.
        config: tokio_postgres::Config,
    }

    impl TestDatabase {
        async fn create() -> TestDatabase {
            let url = server_url();
            let admin: tokio_postgres::Config = url
                .parse()
                .unwrap_or_else(|e| panic!("GATEHOUSE_TEST_POSTGRES_URL is not a URL ({e})"));
            let name = format!("gh_test_{}", Uuid::new_v4().simple());
            let (client, connection) = admin
                .connect(NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {url} ({}); {HOW_TO}", pg(e)));
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {}; {HOW_TO}", pg(e)));
            let mut config = admin.clone();
            config.dbname(&name);
            TestDatabase {
                admin,
                name,
                config,
            }
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            // A thread of its own: this may run inside the test's runtime.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    let (client, connection) = admin.connect(NoTls).await?;
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!(
                    "could not drop the test database {}: {dropped:?}",
                    self.name
                );
            }
        }
    }

    use crate::store::suite::{host_store_suite, suite_store_via_directory, HostFixture};
    use gatehouse_plugin_api::store_suite::{SuiteFixture, SuiteStore};

    /// A store on a database of its own (dropped with the fixture).
    struct Fixture {
        store: PostgresStore,
        _db: TestDatabase,
    }

    async fn fixture() -> Fixture {
        let db = TestDatabase::create().await;
        let store = PostgresStore::open_config(db.config.clone())
            .await
            .expect("open");
        Fixture { store, _db: db }
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

    suite_store_via_directory!(PostgresStore);
    gatehouse_plugin_api::store_port_suite!(fixture);
    host_store_suite!(fixture);

    #[tokio::test]
    async fn what_was_written_is_there_after_a_reopen() {
        let db = TestDatabase::create().await;
        let store = PostgresStore::open_config(db.config.clone())
            .await
            .expect("open");
        crate::store::suite::write_for_reopen(&store).await;
        drop(store);
        // Reopening applies no migration twice and keeps the data.
        let reopened = PostgresStore::open_config(db.config.clone())
            .await
            .expect("reopen");
        crate::store::suite::check_persisted(&reopened).await;
        let versions: i64 = reopened
            .run(|c| async move {
                col(
                    &query_opt(&c, "SELECT COUNT(*) FROM schema_migrations", &[])
                        .await?
                        .expect("a row"),
                    0,
                )
            })
            .await
            .expect("count");
        assert_eq!(versions, MIGRATIONS.len() as i64);
    }

    /// A revocation whose transaction commits late (after others were read) is still read:
    /// the cursor follows transaction visibility, not the writer's clock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_revocation_committed_late_is_still_read() {
        use crate::store::feed::{RevocationCursor, RevocationFeed};
        let fixture = fixture().await;
        let store = &fixture.store;
        let (late, early) = (Uuid::new_v4(), Uuid::new_v4());
        let (mut client, connection) = fixture._db.config.connect(NoTls).await.expect("connect");
        tokio::spawn(connection);
        let slow = client.transaction().await.expect("begin");
        slow.execute(
            "INSERT INTO revocations (scope, first_id, second_id, instant) \
             VALUES ('user', $1, '', 100)",
            &[&late.to_string()],
        )
        .await
        .expect("insert, not committed");
        let (_, cursor) = store
            .revocations_since(&RevocationCursor::default(), 0)
            .await
            .expect("read");
        store
            .add_revocation(&RevocationScope::User(early), 200)
            .await
            .expect("revoke");
        let (seen, cursor) = store.revocations_since(&cursor, 0).await.expect("read");
        assert!(
            seen.contains(&(RevocationScope::User(early), 200)),
            "{seen:?}"
        );
        assert!(!seen.iter().any(|(s, _)| *s == RevocationScope::User(late)));
        slow.commit().await.expect("commit, late");
        let (seen, _) = store.revocations_since(&cursor, 0).await.expect("read");
        assert!(
            seen.contains(&(RevocationScope::User(late), 100)),
            "{seen:?}"
        );
    }

    /// Two gateways on one database: they migrate together once, and of concurrent rotations
    /// of one value through both, exactly one rotates; the others see what replaced it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_migrate_once_and_rotate_a_value_once() {
        let db = TestDatabase::create().await;
        let (a, b) = tokio::join!(
            PostgresStore::open_config(db.config.clone()),
            PostgresStore::open_config(db.config.clone())
        );
        let (a, b) = (
            std::sync::Arc::new(a.expect("open a")),
            std::sync::Arc::new(b.expect("open b")),
        );
        let user = User {
            id: Uuid::new_v4(),
            tenant_id: Uuid::new_v4(),
            email: Some("Node@Example.com".into()),
            ..Default::default()
        };
        a.create_user(&user).await.expect("user");
        let mut clash = user.clone();
        clash.id = Uuid::new_v4();
        clash.email = Some("node@example.COM".into());
        assert!(matches!(
            b.create_user(&clash).await,
            Err(StoreError::Conflict(_))
        ));
        let token = RefreshToken {
            id: Uuid::new_v4(),
            token: "shared-value".into(),
            user_id: user.id,
            application_id: None,
            tenant_id: user.tenant_id,
            insert_instant: 1,
            start_instant: 1,
            first_issued_instant: 1,
            expiration_instant: i64::MAX,
            meta_data: Default::default(),
        };
        a.insert_refresh_token(&token).await.expect("insert");
        let attempts: Vec<_> = (0..16)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let mut next = token.clone();
                next.token = format!("next-{i}");
                next.insert_instant = 100 + i;
                tokio::spawn(async move {
                    store
                        .rotate_refresh_token(
                            "shared-value",
                            &next,
                            Some((&format!("access-{i}"), i64::MAX)),
                        )
                        .await
                })
            })
            .collect();
        let mut rotated = Vec::new();
        let mut already = Vec::new();
        for attempt in attempts {
            match attempt.await.expect("task").expect("rotate") {
                Rotation::Rotated(t) => rotated.push(t),
                Rotation::AlreadyRotated {
                    current,
                    access_token,
                    ..
                } => already.push((current.token, access_token)),
            }
        }
        assert_eq!(rotated.len(), 1, "exactly one rotation: {rotated:?}");
        let winner = &rotated[0];
        let winner_access = format!("access-{}", winner.insert_instant - 100);
        assert!(
            already
                .iter()
                .all(|(t, access)| *t == winner.token && access.as_deref() == Some(&winner_access)),
            "{already:?}"
        );
        assert_eq!(
            b.find_refresh_token(&winner.token).await.expect("find"),
            Some(winner.clone())
        );
        // A revocation through one node is listed by the other.
        b.revoke_refresh_tokens(&RevokeScope::User(user.id))
            .await
            .expect("revoke");
        assert!(a
            .list_revocations(0)
            .await
            .expect("list")
            .iter()
            .any(|(s, _)| *s == RevocationScope::User(user.id)));
        assert_eq!(
            a.find_refresh_token(&winner.token).await.expect("find"),
            None
        );
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_and_the_password_stays_out_of_the_message() {
        // Nothing listens on port 1.
        let result = PostgresStore::open("postgres://someone:s3cret-password@127.0.0.1:1/db").await;
        match result {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("127.0.0.1:1/db"), "{message}");
                assert!(!message.contains("s3cret"), "{message}");
            }
            Err(other) => panic!("expected Unavailable, got {other:?}"),
            Ok(_) => panic!("expected Unavailable, got a store"),
        }
    }
}
