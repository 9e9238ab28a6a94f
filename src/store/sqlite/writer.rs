//! The SQLite store's one connection, owned by a thread of its own that runs the store's calls
//! in transactions, several at a time (group commit).
//!
//! A call is queued with the channel its answer goes back on; the thread takes every call
//! queued while it was busy (up to [`MAX_BATCH`]) into one `BEGIN IMMEDIATE` transaction, each
//! call in a savepoint of its own, and commits them with one fsync (`synchronous=FULL`). So:
//! - a call is answered only after the commit that holds its writes (never before they are
//!   durable), or with the error that kept them from being committed;
//! - a call that fails (or panics) is rolled back to its savepoint and answered its own error;
//!   the others of its batch keep theirs, exactly as if each had run alone: a conditional write
//!   (a rotation) sees the batch's earlier writes as it would have seen them committed;
//! - an error of the batch itself (the file locked, unwritable or full when the transaction
//!   begins or commits) fails exactly the calls of that batch, with the error each would have
//!   had alone;
//! - a call alone in its batch runs as before, in a transaction of its own and no savepoint;
//! - a call whose caller has gone when its turn comes (its request answered past the API's time
//!   limit) is not run, so a write its client was told failed is not committed later.
//!
//! Under load, calls queue while a commit's fsync runs, so one fsync serves many of them, and
//! the thread takes the next batch without sleeping; calls no longer hop to tokio's blocking
//! pool nor wait on a mutex.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use gatehouse_plugin_api::store::{StoreError, StoreResult};
use rusqlite::Connection;

use super::backend;

/// The most calls one transaction holds: bounds how long the first of them waits.
pub(super) const MAX_BATCH: usize = 64;

/// One queued call.
trait Call: Send {
    /// Runs the call in the transaction open on `tx`; true when it succeeded (its writes are
    /// to be committed).
    fn run(&mut self, tx: &Connection) -> bool;
    /// The call's own error, when it ran and failed.
    fn error(&self) -> Option<StoreError>;
    /// Answers the caller: its own error when it failed; else its value when `commit` is `Ok`,
    /// or the error that kept its writes from being committed.
    fn answer(self: Box<Self>, commit: &StoreResult<()>);
}

/// A call of `f`, answered on `reply`.
struct Pending<T, F> {
    f: Option<F>,
    result: Option<StoreResult<T>>,
    reply: tokio::sync::oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Call for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(&mut self, tx: &Connection) -> bool {
        if self.reply.is_closed() {
            // The caller has gone (its request answered 503 past the API's time limit, or
            // abandoned): a write it was told failed must not be committed later.
            self.f = None;
            self.result = Some(Err(StoreError::Backend(
                "store task failed: the caller went away".into(),
            )));
            return false;
        }
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = catch_unwind(AssertUnwindSafe(|| f(tx))).unwrap_or_else(|_| {
            tracing::error!("internal error: a store call panicked; its writes are rolled back");
            Err(StoreError::Backend(
                "store task failed: the call panicked".into(),
            ))
        });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn error(&self) -> Option<StoreError> {
        self.result.as_ref()?.as_ref().err().cloned()
    }

    fn answer(self: Box<Self>, commit: &StoreResult<()>) {
        let result = match (self.result, commit) {
            (Some(Err(own)), _) => Err(own),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(e.clone()),
            (None, Ok(())) => Err(StoreError::Backend(
                "store task failed: the call was not run".into(),
            )),
        };
        // The caller may have gone away (its request abandoned): nothing to answer then.
        let _ = self.reply.send(result);
    }
}

/// The handle to the writer thread: queues calls, and on drop lets the thread finish the
/// queued ones and close the connection.
pub(super) struct Writer {
    calls: Option<mpsc::Sender<Box<dyn Call>>>,
    thread: Option<JoinHandle<()>>,
    /// How many transactions the thread has run (batches).
    transactions: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the thread that owns `conn`. Returns the handle, or why the thread could not be
    /// started.
    pub(super) fn start(conn: Connection) -> StoreResult<Writer> {
        let (calls, queue) = mpsc::channel::<Box<dyn Call>>();
        let transactions = Arc::new(AtomicU64::new(0));
        let counted = transactions.clone();
        let thread = std::thread::Builder::new()
            .name("gatehouse-sqlite".into())
            .spawn(move || serve(conn, queue, &counted))
            .map_err(|e| StoreError::Backend(format!("cannot start the store's thread: {e}")))?;
        Ok(Writer {
            calls: Some(calls),
            thread: Some(thread),
            transactions,
        })
    }

    /// How many transactions (batches of calls) the thread has run so far.
    pub(super) fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Runs `f` in a transaction of the writer thread (alone or with other calls, see the
    /// module docs). Returns its value once its writes are committed, or its error, or the
    /// error that kept its writes from being committed.
    pub(super) async fn call<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let pending = Box::new(Pending {
            f: Some(f),
            result: None,
            reply,
        });
        let stopped =
            || StoreError::Backend("store task failed: the store's thread stopped".into());
        self.calls
            .as_ref()
            .ok_or_else(stopped)?
            .send(pending)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered what was queued.
        self.calls.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tracing::debug!(
            transactions = self.transactions(),
            "the SQLite store's thread has stopped"
        );
    }
}

/// The writer thread: takes the calls queued since its last transaction (at least one, at most
/// [`MAX_BATCH`]), runs and answers them, until the queue is closed.
fn serve(conn: Connection, queue: mpsc::Receiver<Box<dyn Call>>, transactions: &AtomicU64) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        let commit = run_batch(&conn, &mut batch);
        transactions.fetch_add(1, Ordering::Relaxed);
        for call in batch {
            call.answer(&commit);
        }
    }
}

/// Runs `batch` in one immediate transaction and commits it. Returns the commit's outcome: `Ok`
/// when the writes of the calls that succeeded are durable, else the error that kept them
/// from being committed (the transaction rolled back).
///
/// The transaction's own statements (`BEGIN IMMEDIATE`, `COMMIT`, `ROLLBACK`) are prepared
/// once and kept with the others, instead of being parsed again for every batch.
fn run_batch(conn: &Connection, batch: &mut [Box<dyn Call>]) -> StoreResult<()> {
    statement(conn, "BEGIN IMMEDIATE")?;
    let outcome = match run_calls(conn, batch) {
        Ok(true) => statement(conn, "COMMIT"),
        // A lone call that failed: its writes are rolled back, and it has its own answer.
        Ok(false) => {
            roll_back(conn);
            return Ok(());
        }
        Err(e) => Err(e),
    };
    if outcome.is_err() {
        roll_back(conn);
    }
    outcome
}

/// Rolls back what is still open on `conn` (SQLite may already have done so: an I/O error, a
/// full disk), as dropping a rusqlite transaction does.
fn roll_back(conn: &Connection) {
    if !conn.is_autocommit() {
        let _ = statement(conn, "ROLLBACK");
    }
}

/// Runs the calls of `batch` in the transaction open on `conn`. Returns whether there is
/// anything to commit (false: a call alone in its batch failed, and the transaction is to be
/// rolled back), or the error of the batch (SQLite rolled the whole transaction back on a
/// call's error, or a savepoint statement failed).
fn run_calls(conn: &Connection, batch: &mut [Box<dyn Call>]) -> StoreResult<bool> {
    if let [only] = batch {
        // Alone: the transaction is the call's, without a savepoint.
        return Ok(only.run(conn));
    }
    for call in batch.iter_mut() {
        statement(conn, "SAVEPOINT call")?;
        if call.run(conn) {
            statement(conn, "RELEASE call")?;
            continue;
        }
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back on this call's error (a full disk, an
            // I/O error): nothing of the batch is kept, and the others fail with that error.
            return Err(call.error().unwrap_or_else(|| {
                StoreError::Backend("store task failed: the transaction was rolled back".into())
            }));
        }
        statement(conn, "ROLLBACK TO call")?;
        statement(conn, "RELEASE call")?;
    }
    Ok(true)
}

/// Runs one statement of the transaction's own (prepared once, kept in the connection's cache).
fn statement(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(|_| ())
        .map_err(backend)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// A writer over a fresh file with a table `t (k TEXT PRIMARY KEY)`.
    fn writer_on(path: &std::path::Path) -> Writer {
        let conn = Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.pragma_update(None, "synchronous", "FULL")
            .expect("full");
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY)")
            .expect("table");
        Writer::start(conn).expect("start")
    }

    /// Inserts `k`: `Conflict` when it is there already.
    fn insert(k: &'static str) -> impl FnOnce(&Connection) -> StoreResult<()> + Send {
        move |tx| {
            tx.execute("INSERT INTO t (k) VALUES (?1)", [k])
                .map(|_| ())
                .map_err(backend)
        }
    }

    /// Holds the writer thread inside a call until the returned barrier is passed: the calls
    /// queued meanwhile form the next batch. Returns once the thread is inside the call.
    async fn hold(writer: &Arc<Writer>) -> (Arc<Barrier>, tokio::task::JoinHandle<()>) {
        let barrier = Arc::new(Barrier::new(2));
        let (entered, inside) = tokio::sync::oneshot::channel();
        let (held, writer) = (barrier.clone(), writer.clone());
        let call = tokio::spawn(async move {
            let hold = move |_: &Connection| {
                let _ = entered.send(());
                held.wait();
                Ok(())
            };
            writer.call(hold).await.expect("held call");
        });
        inside.await.expect("the writer runs the held call");
        (barrier, call)
    }

    /// Passes `barrier` after a moment, from another thread.
    fn release_later(barrier: Arc<Barrier>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            barrier.wait();
        })
    }

    #[tokio::test]
    async fn a_batch_keeps_each_calls_own_outcome_and_commits_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = Arc::new(writer_on(&path));
        let (barrier, held) = hold(&writer).await;
        let release = release_later(barrier);
        // Queued while the writer is busy with the held call: one batch.
        let (a, dup, panics, b, fails) = tokio::join!(
            writer.call(insert("a")),
            writer.call(insert("a")),
            writer.call(|tx| -> StoreResult<()> {
                tx.execute("INSERT INTO t (k) VALUES ('p')", [])
                    .map_err(backend)?;
                panic!("a bug inside a batched call");
            }),
            writer.call(insert("b")),
            writer.call(|tx| -> StoreResult<()> {
                tx.execute("INSERT INTO t (k) VALUES ('c')", [])
                    .map_err(backend)?;
                Err(StoreError::NotFound)
            }),
        );
        release.join().expect("release");
        held.await.expect("held");
        assert_eq!(
            writer.transactions(),
            2,
            "the held call, then one batch of five"
        );
        assert_eq!(a, Ok(()));
        assert_eq!(dup, Err(crate::store::rows::unique_violation()));
        assert!(matches!(panics, Err(StoreError::Backend(_))));
        assert_eq!(b, Ok(()));
        assert_eq!(fails, Err(StoreError::NotFound));
        drop(Arc::into_inner(writer).expect("the last handle"));
        // What was answered Ok is on disk, and nothing of the failed calls is.
        assert_eq!(keys_on(&path), ["a", "b"]);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_begin_fails_each_of_its_calls_with_that_error_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = Arc::new(writer_on(&path));
        // Another process holds the write lock (no busy timeout on the writer's connection).
        let other = Connection::open(&path).expect("other");
        other.execute_batch("BEGIN IMMEDIATE").expect("lock");
        let (x, y) = tokio::join!(writer.call(insert("x")), writer.call(insert("y")));
        assert!(matches!(x, Err(StoreError::Unavailable(_))), "{x:?}");
        assert_eq!(x, y);
        other.execute_batch("ROLLBACK").expect("unlock");
        // The next batch is unaffected.
        let (x, z) = tokio::join!(writer.call(insert("x")), writer.call(insert("z")));
        assert_eq!((x, z), (Ok(()), Ok(())));
        drop(Arc::into_inner(writer).expect("the last handle"));
        assert_eq!(keys_on(&path), ["x", "z"]);
    }

    #[tokio::test]
    async fn a_call_whose_caller_went_away_before_it_ran_is_not_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = Arc::new(writer_on(&path));
        let (barrier, held) = hold(&writer).await;
        // Queued behind the held call, then given up (a request past its time limit).
        let abandoned = {
            let writer = writer.clone();
            tokio::spawn(async move { writer.call(insert("gone")).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        abandoned.abort();
        let _ = abandoned.await;
        let release = release_later(barrier);
        let kept = writer.call(insert("kept")).await;
        release.join().expect("release");
        held.await.expect("held");
        assert_eq!(kept, Ok(()));
        drop(Arc::into_inner(writer).expect("the last handle"));
        assert_eq!(keys_on(&path), ["kept"]);
    }

    #[tokio::test]
    async fn a_lone_call_that_fails_is_rolled_back_and_leaves_no_transaction_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let writer = Arc::new(writer_on(&path));
        // Alone, many times over: each is its own transaction, begun and ended by the kept
        // statements, whether it failed (rolled back), panicked or succeeded (committed).
        for round in 0..3 {
            let fails = writer
                .call(|tx| -> StoreResult<()> {
                    tx.execute("INSERT INTO t (k) VALUES ('lost')", [])
                        .map_err(backend)?;
                    Err(StoreError::NotFound)
                })
                .await;
            assert_eq!(fails, Err(StoreError::NotFound), "round {round}");
            let panics = writer
                .call(|tx| -> StoreResult<()> {
                    tx.execute("INSERT INTO t (k) VALUES ('lost')", [])
                        .map_err(backend)?;
                    panic!("a bug inside a lone call");
                })
                .await;
            assert!(matches!(panics, Err(StoreError::Backend(_))), "{panics:?}");
            let open = writer.call(|tx| Ok(tx.is_autocommit())).await;
            assert_eq!(open, Ok(false), "each call runs inside a transaction");
            let kept: &'static str = ["k0", "k1", "k2"][round];
            assert_eq!(writer.call(insert(kept)).await, Ok(()));
        }
        assert_eq!(writer.transactions(), 12);
        // Nothing is left open between calls: another connection can take the write lock.
        let other = Connection::open(&path).expect("other");
        other
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK")
            .expect("unlocked");
        drop(Arc::into_inner(writer).expect("the last handle"));
        assert_eq!(keys_on(&path), ["k0", "k1", "k2"]);
    }

    /// The keys in `t`, read through a new connection.
    fn keys_on(path: &std::path::Path) -> Vec<String> {
        let conn = Connection::open(path).expect("reopen");
        let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k").expect("prepare");
        let keys = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        keys
    }
}
