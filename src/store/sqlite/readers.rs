//! Read-only connections to the SQLite file, used for the refresh path's read (the token and
//! its subject), so that read does not wait behind the commit (and fsync) the writer thread is
//! running. A read runs on the thread that calls [`Readers::read`]: the store calls it from its
//! read threads ([`MAX_IDLE`] of them, a `CpuPool`: a busy one takes the next read from the
//! queue without waking the event loop between reads), never from the event loop.
//!
//! WAL mode lets readers run beside the one writer: a read transaction sees everything
//! committed before it began, so a write the writer thread has answered (answers come only
//! after the commit) is seen by every read that starts after it. A connection is taken from a
//! small set of idle ones (opened on first use) and given back after the read.
//!
//! A reader never waits: its connection has no busy timeout, so when the file cannot be read
//! at once (locked, being recovered, unreadable, damaged) the read returns `None` and the
//! caller goes through the writer thread instead, exactly as before this module — with its
//! busy timeout, its error mapping and its answers. So the fast path can only answer what the
//! writer thread would have answered, never an error of its own.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gatehouse_plugin_api::store::StoreResult;
use rusqlite::{Connection, OpenFlags};

/// The most idle reader connections kept open (more readers at once each open their own), and
/// the store's read threads.
pub(super) const MAX_IDLE: usize = 4;

/// Idle read-only connections to one database file (see the module documentation).
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Readers of the database at `path` (no connection is opened before the first read).
    pub(super) fn new(path: &Path) -> Self {
        Readers {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` in one read transaction on a reader connection, on this thread. Returns its
    /// value; `None` when the read could not be made here (no connection could be opened, the
    /// file was busy or unreadable, `f` failed or panicked): the caller then makes the same
    /// read through the writer thread, which decides the answer.
    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> Option<T> {
        let conn = self.take()?;
        let value = catch_unwind(AssertUnwindSafe(|| in_read_transaction(&conn, f)));
        match value {
            Ok(Some(value)) => {
                self.give_back(conn);
                Some(value)
            }
            // An error or a panic: the connection is closed (dropped), not reused.
            _ => None,
        }
    }

    /// How many idle connections are kept now.
    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// An idle connection, or a new one; `None` when none can be opened.
    fn take(&self) -> Option<Connection> {
        if let Some(conn) = self.idle.lock().ok()?.pop() {
            return Some(conn);
        }
        open_reader(&self.path)
    }

    /// Keeps `conn` for the next read, unless enough are kept already.
    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }
}

/// A connection that only reads `path`: it opens no file that is not there, writes nothing
/// (`query_only`) and waits for no lock (no busy timeout). `None` when it cannot be opened.
fn open_reader(path: &Path) -> Option<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ok()?;
    conn.pragma_update(None, "query_only", "ON").ok()?;
    conn.set_prepared_statement_cache_capacity(super::STATEMENT_CACHE);
    Some(conn)
}

/// Runs `f` between `BEGIN` and `COMMIT` on `conn` (one snapshot for all its statements).
/// Returns its value, or `None` when a statement or `f` failed (the transaction rolled back).
fn in_read_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> Option<T> {
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    run("BEGIN").ok()?;
    let value = f(conn).ok();
    let end = if value.is_some() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    if run(end).is_err() && !conn.is_autocommit() {
        let _ = run("ROLLBACK");
        return None;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_plugin_api::store::StoreError;

    /// A WAL database at `path` with a table `t (k TEXT)`, its writing connection returned.
    fn database(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch("CREATE TABLE t (k TEXT)")
            .expect("table");
        conn
    }

    fn keys(conn: &Connection) -> StoreResult<Vec<String>> {
        let mut stmt = conn
            .prepare_cached("SELECT k FROM t ORDER BY k")
            .map_err(super::super::backend)?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(super::super::backend)?;
        rows.collect::<Result<_, _>>()
            .map_err(super::super::backend)
    }

    #[test]
    fn a_read_sees_what_was_committed_before_it_and_reuses_its_connection() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let writer = database(&path);
        let readers = Readers::new(&path);
        assert_eq!(readers.read(keys), Some(vec![]));
        assert_eq!(readers.idle(), 1);
        writer
            .execute("INSERT INTO t (k) VALUES ('a')", [])
            .expect("insert");
        assert_eq!(readers.read(keys), Some(vec!["a".to_string()]));
        assert_eq!(readers.idle(), 1, "the same connection, given back");
    }

    #[test]
    fn a_read_beside_an_open_write_transaction_does_not_wait_and_sees_the_last_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let writer = database(&path);
        writer
            .execute("INSERT INTO t (k) VALUES ('a')", [])
            .expect("insert");
        // The writer holds the write lock with an uncommitted write (as the writer thread
        // does while it runs a batch and its fsync).
        writer
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t (k) VALUES ('b')")
            .expect("open write");
        let started = std::time::Instant::now();
        assert_eq!(Readers::new(&path).read(keys), Some(vec!["a".to_string()]));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        writer.execute_batch("COMMIT").expect("commit");
        assert_eq!(
            Readers::new(&path).read(keys),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }

    #[test]
    fn a_read_that_fails_or_panics_is_none_and_leaves_nothing_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let writer = database(&path);
        let readers = Readers::new(&path);
        let failed: Option<()> = readers.read(|_| Err(StoreError::NotFound));
        assert_eq!(failed, None);
        let panicked: Option<()> = readers.read(|_| panic!("a bug inside a read"));
        assert_eq!(panicked, None);
        assert_eq!(readers.idle(), 0, "a connection that failed is not kept");
        // Writes are refused on a reader connection.
        let wrote = readers.read(|conn| {
            conn.execute("INSERT INTO t (k) VALUES ('x')", [])
                .map_err(super::super::backend)
        });
        assert_eq!(wrote, None);
        // Nothing was left open: the writer can take the write lock and sees no 'x'.
        writer
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK")
            .expect("unlocked");
        assert_eq!(keys(&writer), Ok(vec![]));
    }

    #[test]
    fn a_file_that_cannot_be_read_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = Readers::new(&dir.path().join("missing.db"));
        assert_eq!(missing.read(keys), None, "no file is created by a reader");
        assert!(!dir.path().join("missing.db").exists());
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x5a; 8192]).expect("write");
        assert_eq!(Readers::new(&garbage).read(keys), None);
    }

    #[test]
    fn no_more_idle_connections_are_kept_than_the_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.db");
        let _writer = database(&path);
        let readers = Readers::new(&path);
        let held: Vec<_> = (0..MAX_IDLE + 2)
            .map(|_| readers.take().expect("open"))
            .collect();
        for conn in held {
            readers.give_back(conn);
        }
        assert_eq!(readers.idle(), MAX_IDLE);
    }
}
