//! The PostgreSQL backend, for a cluster of gateways sharing one database: users, providers,
//! refresh tokens, one-time-use rotations and revocations written through one node are seen by
//! every other. Revocations are pushed: their transaction notifies, and every node listens
//! ([`crate::store::feed`]; polling takes over while a node's listener is reconnecting).
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
//! replaced the value. The schema and its rules are SQLite's (see `migrations/`):
//! refresh-token values are found by their SHA-256 ([`super::rows::token_hash`]) and compared in
//! constant time; emails and usernames are unique per tenant, case-insensitively.
//!
//! Migrations are SQL files under `postgres/migrations/`, applied in order inside one
//! transaction each and recorded in `schema_migrations`, each under a transaction-level advisory
//! lock (`pg_advisory_xact_lock`), so gateways starting together apply each migration once.
//!
//! Errors: a connection that cannot be made or was lost, a pool timeout, an overloaded or
//! shutting-down server map to [`StoreError::Unavailable`]; integrity violations (unique,
//! foreign key) to [`StoreError::Conflict`]; the rest to [`StoreError::Backend`].
//!
//! This module connects the pool, runs calls on the store's runtime, applies migrations and
//! maps errors; each storage port has a file of its own with its SQL, as in `sqlite/`:
//! `directory.rs`, `users.rs`, `refresh_tokens.rs`, `revocations.rs`, `identity_providers.rs`.

mod directory;
mod identity_providers;
mod refresh_tokens;
mod revocations;
mod users;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use gatehouse_plugin_api::clock::Clock;
use gatehouse_plugin_api::store::{StoreError, StoreResult};

use super::DirectoryStore;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_postgres::config::Host;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::rows::encode;

/// Migrations in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_rotation_retention.sql"),
    include_str!("migrations/0003_revocation_order.sql"),
    include_str!("migrations/0004_login_states.sql"),
    include_str!("migrations/0005_link_tenants.sql"),
];

/// The advisory lock key migrations run under ("gatehous" in ASCII).
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573;

/// The advisory lock key replacing the API keys runs under, so two nodes starting together
/// replace the set one after the other instead of clashing on its unique keys.
pub(super) const API_KEYS_LOCK: i64 = MIGRATION_LOCK + 1;

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
    /// Where every instant the store writes itself comes from.
    clock: Arc<dyn Clock>,
    /// Dropping it stops the store's runtime thread.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Maps a tokio-postgres error: see the module documentation.
pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let detail = format!("{} {code}: {}", db.severity(), db.message());
        return if code.starts_with("23") {
            super::rows::unique_violation()
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

pub(super) fn from_json<T: DeserializeOwned>(text: &str) -> StoreResult<T> {
    super::rows::decode_document(text).map_err(|e| StoreError::Backend(format!("decode: {e}")))
}

/// Column `index` of `row`.
pub(super) fn col<'a, T: FromSql<'a>>(row: &'a Row, index: usize) -> StoreResult<T> {
    row.try_get(index).map_err(pg)
}

/// Runs a statement (prepared once per connection); returns the rows.
pub(super) async fn query<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&statement, params).await.map_err(pg)
}

/// Runs a statement (prepared once per connection); returns the first row, if any.
pub(super) async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Option<Row>> {
    Ok(query(c, sql, params).await?.into_iter().next())
}

/// Runs a statement (prepared once per connection); returns the number of rows changed.
pub(super) async fn execute<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<u64> {
    let statement = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&statement, params).await.map_err(pg)
}

/// The JSON document in column 0 of the first row, if any.
pub(super) async fn get_body<C: GenericClient, T: DeserializeOwned>(
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
pub(super) async fn list_bodies<C: GenericClient, T: DeserializeOwned>(
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

/// The connection settings of the `store:` URL, or why a connection could not be made with
/// them whatever the server says (never naming the password): a URL the driver cannot read,
/// one without a host, or one that asks for TLS (the store connects without it). `gatehouse
/// check` runs the same reading, without connecting.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    use std::error::Error;
    use tokio_postgres::config::{ChannelBinding, SslMode};
    let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        // The driver's reason names an option (`unknown option `x``, `invalid value for option
        // `port``); other reasons are left out, as they could quote the URL.
        let reason = e.source().map(ToString::to_string).filter(|r| {
            r.starts_with("unknown option `") || r.starts_with("invalid value for option `")
        });
        match reason {
            Some(reason) => format!("not a valid PostgreSQL URL: {reason}"),
            None => {
                "not a valid PostgreSQL URL (postgres://user:password@host:5432/db)".to_string()
            }
        }
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err("names no host (postgres://user:password@host:5432/db)".into());
    }
    let hosts = config.get_hosts().len().max(config.get_hostaddrs().len());
    if !config.get_hosts().is_empty()
        && !config.get_hostaddrs().is_empty()
        && config.get_hosts().len() != config.get_hostaddrs().len()
    {
        return Err("names a different number of hosts and hostaddrs".into());
    }
    if config.get_ports().len() > 1 && config.get_ports().len() != hosts {
        return Err("names a different number of ports and hosts".into());
    }
    let empty_host = config.get_hosts().iter().any(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => name.trim().is_empty(),
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(path) => path.as_os_str().is_empty(),
    });
    if empty_host {
        return Err("names an empty host (postgres://user:password@host:5432/db)".into());
    }
    if config.get_ports().contains(&0) {
        return Err("names port 0 (postgres://user:password@host:5432/db)".into());
    }
    if config.get_ssl_mode() == SslMode::Require {
        return Err("sslmode=require, but the store connects without TLS (keep the database on loopback or a trusted private network, and leave sslmode out)".into());
    }
    if config.get_channel_binding() == ChannelBinding::Require {
        return Err(
            "channel_binding=require, but channel binding needs TLS, which the store does not use"
                .into(),
        );
    }
    Ok(config)
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
    /// TLS), checks it answers, and applies pending migrations. The instants the store writes
    /// itself (when a migration was applied, an event logged, a revocation dated) are `clock`'s.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        let config = parse_url(url).map_err(|e| StoreError::Backend(format!("store: {e}")))?;
        Self::open_config(config, clock).await
    }

    /// [`PostgresStore::open`] with a parsed configuration.
    pub async fn open_config(
        mut config: tokio_postgres::Config,
        clock: Arc<dyn Clock>,
    ) -> StoreResult<Self> {
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
            clock,
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
        let now = store.clock.clone();
        store.run(move |c| migrate(c, now)).await.map_err(context)?;
        Ok(store)
    }

    /// Runs `f` with a pooled connection on the store's runtime.
    pub(super) async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
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
    pub(super) async fn get_document<T: DeserializeOwned + Send + 'static>(
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
    pub(super) async fn list_documents<T: DeserializeOwned + Send + 'static>(
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
async fn migrate(mut c: Object, clock: Arc<dyn Clock>) -> StoreResult<()> {
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
        super::rows::check_schema_version(current, MIGRATIONS.len())?;
        let Some(sql) = MIGRATIONS.get(current) else {
            tx.commit().await.map_err(pg)?;
            return Ok(());
        };
        tx.batch_execute(sql).await.map_err(pg)?;
        let version = current as i32 + 1;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &clock.now_millis()],
        )
        .await
        .map_err(pg)?;
        tx.commit().await.map_err(pg)?;
        tracing::info!(version, "PostgreSQL schema migrated");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_plugin_api::clock::SystemClock;
    use gatehouse_plugin_api::model::{RefreshToken, User};
    use gatehouse_plugin_api::store::{RefreshTokenStore, RevokeScope, Rotation, UserStore};
    use gatehouse_plugin_api::tokens::RevocationScope;
    use uuid::Uuid;

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
        fixture_on(Arc::new(SystemClock)).await
    }

    async fn fixture_on(clock: Arc<dyn Clock>) -> Fixture {
        let db = TestDatabase::create().await;
        let store = PostgresStore::open_config(db.config.clone(), clock)
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
    host_store_suite!(fixture, fixture_on);

    /// Refreshes' writes answered are durable: a second store on the same database sees
    /// them while the first is still open, and so does the store reopened.
    #[tokio::test]
    async fn concurrent_refresh_writes_are_committed_when_answered() {
        let db = TestDatabase::create().await;
        let open = || PostgresStore::open_config(db.config.clone(), Arc::new(SystemClock));
        let store = open().await.expect("open");
        crate::store::suite::write_concurrent_refreshes(&store).await;
        let other = open().await.expect("second store");
        crate::store::suite::check_concurrent_refreshes_persisted(&other).await;
        drop((store, other));
        let reopened = open().await.expect("reopen");
        crate::store::suite::check_concurrent_refreshes_persisted(&reopened).await;
    }

    #[tokio::test]
    async fn what_was_written_is_there_after_a_reopen() {
        let db = TestDatabase::create().await;
        let store = PostgresStore::open_config(db.config.clone(), Arc::new(SystemClock))
            .await
            .expect("open");
        crate::store::suite::write_for_reopen(&store).await;
        drop(store);
        // Reopening applies no migration twice and keeps the data.
        let reopened = PostgresStore::open_config(db.config.clone(), Arc::new(SystemClock))
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
            PostgresStore::open_config(db.config.clone(), Arc::new(SystemClock)),
            PostgresStore::open_config(db.config.clone(), Arc::new(SystemClock))
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
        let result = PostgresStore::open(
            "postgres://someone:s3cret-password@127.0.0.1:1/db",
            Arc::new(SystemClock),
        )
        .await;
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
