//! The SQLite store: examples with their provenance, filter verdicts, review decisions, source
//! checkpoints, near-duplicate data, dataset snapshots, runs and model versions.
//!
//! WAL mode, foreign keys on, a busy timeout so a second `brain` waits instead of failing, and
//! migrations by `PRAGMA user_version` ([`schema`]). Writes of one collected batch — its examples
//! and the source's new checkpoint — are all or nothing ([`Store::store_batch`]: a savepoint,
//! its own transaction or part of a write group of several batches, [`Store::begin_group`]), so
//! a killed collect leaves whole batches with their checkpoints, never part of one.

pub mod dedup;
mod examples;
mod id;
pub mod interactions;
pub mod models;
pub mod review_state;
mod reviews;
pub mod runs;
mod schema;
pub mod snapshots;
mod status;
pub mod verdicts;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use examples::{BatchOutcome, MinHash, Record, StoredExample};
pub use id::{example_id, normalize_ws};
pub use reviews::{Decision, DecidedBy, ReviewStatus};
pub use status::Status;

/// SQL for the current time as stored in every `*_at` column (UTC, ISO 8601, milliseconds).
pub const NOW_SQL: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store's directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("cannot open the store {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "the store {path} has schema version {found}, newer than this brain knows ({known}): \
         upgrade brain, or point [store] path at another file"
    )]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store: cannot encode {what} as JSON: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    #[error("store: no example with id {0}")]
    NoExample(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An open store. One connection; share a `Store` per thread, not across threads.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// A read-only connection that leaves every file as it is. A WAL-mode reader writes SQLite's
/// shared-memory index (`-shm`) and cannot remove `-wal`/`-shm` when it closes, so when no
/// `-wal` exists (no writer is active and the last one checkpointed) the file is opened
/// `immutable` (no locks, no side files); otherwise as a plain read-only reader, which sees what
/// the active writer committed.
fn open_untouched(path: &Path) -> rusqlite::Result<Connection> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if Path::new(&wal).exists() {
        return Connection::open_with_flags(path, flags);
    }
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let escaped = abs.to_string_lossy().replace('%', "%25").replace('?', "%3f").replace('#', "%23");
    Connection::open_with_flags(format!("file:{escaped}?immutable=1"), flags | OpenFlags::SQLITE_OPEN_URI)
}

impl Store {
    /// Opens (creating it and its directory if needed) and migrates the store at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir { path: dir.to_path_buf(), source })?;
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Open { path: path.to_path_buf(), source })?;
        Store::setup(conn, path).map_err(|e| match e {
            StoreError::Sqlite(source) => StoreError::Open { path: path.to_path_buf(), source },
            e => e,
        })
    }

    /// A private in-memory store (tests, dry runs).
    pub fn open_in_memory() -> Result<Store> {
        Store::setup(Connection::open_in_memory()?, Path::new(":memory:"))
    }

    /// A private in-memory copy of the store at `path`, migrated in memory: what a dry run
    /// reads. The file is opened read-only and never changed (not even migrated); a store that
    /// does not exist yet reads as empty and is not created.
    pub fn open_copy(path: &Path) -> Result<Store> {
        let mut mem = Connection::open_in_memory()?;
        if path.exists() {
            let open_err = |source| StoreError::Open { path: path.to_path_buf(), source };
            let src = open_untouched(path).map_err(open_err)?;
            src.busy_timeout(Duration::from_secs(10)).map_err(open_err)?;
            rusqlite::backup::Backup::new(&src, &mut mem)
                .and_then(|b| b.run_to_completion(256, Duration::ZERO, None))
                .map_err(open_err)?;
        }
        let mut store = Store { conn: mem, path: path.to_path_buf() };
        store.conn.pragma_update(None, "foreign_keys", "ON")?;
        store.migrate()?;
        Ok(store)
    }

    fn setup(conn: Connection, path: &Path) -> Result<Store> {
        conn.busy_timeout(Duration::from_secs(10))?;
        // WAL + NORMAL: durable against process death (the case that matters: a killed
        // collect); a power cut may lose the last transactions but never corrupts.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Content ids are random keys: every batch rewrites index pages all over the id indexes
        // (examples, minhash, reviews). A 128 MiB WAL (32,000 pages; SQLite's default is 1,000)
        // lets a page rewritten by many batches go back to the file once per checkpoint, with
        // far fewer checkpoint fsyncs; a 32 MiB cache keeps those indexes in memory. Measured
        // (bench/collect.sh, host/examples/store_bench.rs): store_batch ~2× as fast on a 20,000-
        // example store and collect → store ~2× on a 200,000-example one. The WAL is removed
        // when the last connection closes.
        conn.pragma_update(None, "wal_autocheckpoint", 32000)?;
        conn.pragma_update(None, "cache_size", -32768)?;
        let mut store = Store { conn, path: path.to_path_buf() };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let known = schema::MIGRATIONS.len() as i64;
        let found: i64 = self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > known {
            return Err(StoreError::TooNew { path: self.path.clone(), found, known });
        }
        for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(found as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for modules that query tables this module does not wrap yet.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    pub fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub fn schema_version(&self) -> Result<i64> {
        Ok(self.conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// `PRAGMA integrity_check`: `"ok"` when the file is sound.
    pub fn integrity_check(&self) -> Result<String> {
        let rows: Vec<String> = self
            .conn
            .prepare("PRAGMA integrity_check")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows.join("\n"))
    }

    /// Opens a write group: until [`Store::commit_group`], writes share one SQLite transaction,
    /// each batch of [`Store::store_batch`] still all or nothing within it (a savepoint). A
    /// collect groups many batches so that an index page touched by every batch (content ids
    /// are random keys) is written to the WAL once per group instead of once per batch; a
    /// killed process loses the open group, checkpoints included, so the next collect fetches
    /// it again. Holds the write lock while open: keep groups short. No-op if one is open.
    ///
    /// While a group is open, temporary files are kept in memory: a savepoint inside a
    /// transaction copies each page it changes first to a sub-journal (so that it can roll
    /// back alone), and as a temporary file those copies were ~10% of the store thread's time
    /// in bench/collect.sh. The sub-journal holds one batch's pages (a few MiB at most).
    pub fn begin_group(&mut self) -> Result<()> {
        if self.conn.is_autocommit() {
            self.conn.execute_batch("PRAGMA temp_store = MEMORY; BEGIN IMMEDIATE")?;
        }
        Ok(())
    }

    /// Commits the open write group (no-op when none is open).
    pub fn commit_group(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT; PRAGMA temp_store = DEFAULT")?;
        }
        Ok(())
    }

    /// The last checkpoint stored for `source`.
    pub fn checkpoint(&self, source: &str) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        Ok(self
            .conn
            .query_row("SELECT checkpoint FROM checkpoints WHERE source = ?1", [source], |r| r.get(0))
            .optional()?)
    }
}

/// An all-or-nothing write on a shared `&Connection` that also works inside an open write
/// group: a savepoint, released by [`Nested::commit`], rolled back when dropped without it.
/// (rusqlite's transactions cannot nest, and its savepoints need `&mut Connection`.)
pub(crate) struct Nested<'a> {
    conn: &'a Connection,
    done: bool,
}

impl<'a> Nested<'a> {
    pub(crate) fn begin(conn: &'a Connection) -> Result<Nested<'a>> {
        conn.execute_batch("SAVEPOINT brain_nested")?;
        Ok(Nested { conn, done: false })
    }

    pub(crate) fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.execute_batch("RELEASE brain_nested")?;
        Ok(())
    }
}

impl std::ops::Deref for Nested<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Nested<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Nothing better to do with an error here: the caller is already returning one.
            let _ = self.conn.execute_batch("ROLLBACK TO brain_nested; RELEASE brain_nested");
        }
    }
}

#[cfg(test)]
mod tests;
