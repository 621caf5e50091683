//! [`SqliteStore`]: the embedded store, one SQLite database (`mcp-oauth.db`, with its `-wal` and
//! `-shm` companions) in the data directory. Write-ahead logging with `synchronous = FULL`: a
//! committed write survives a crash of the process and of the machine. The directory is created
//! with mode 0700 and the database file with 0600 (SQLite gives its companions the same mode).
//! Migrations (`migrations/sqlite/`) are embedded in the binary and run at open.
//!
//! This file opens the pool (and the connection of the group-committed writes beside it) and holds
//! the column helpers; each table's SQL is in its own module
//! (`clients.rs`, `consents.rs`, ...), beside the table's in-memory implementation.

use super::connections::Settle;
use super::error::StoreError;
use sqlx::ConnectOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database file's name in the data directory.
pub const DATABASE_FILE: &str = "mcp-oauth.db";

pub struct SqliteStore {
    /// The connection pool, through which each table module runs its statements.
    pub(super) pool: SqlitePool,
    /// The connection of the group-committed writes (registrations, refresh-token batches), kept
    /// out of the pool: a pooled connection is pinged each time it is returned, one more round
    /// trip to its thread for every commit. SQLite has one writer at a time anyway; these writes
    /// take turns here rather than in SQLite's busy handler, which sleeps. `None` once closed.
    writer: tokio::sync::Mutex<Option<SqliteConnection>>,
    path: PathBuf,
}

/// The writes' connection stays, whatever its last use came to (it is this store's only writer).
impl Settle for tokio::sync::MappedMutexGuard<'_, SqliteConnection> {
    fn settle<T, E>(self, result: Result<T, E>) -> Result<T, E> {
        result
    }
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates `path` empty with mode 0600 if it does not exist.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(|_| ())
}

/// A Unix time or count as SQLite stores it.
pub(super) fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored Unix time or count, read back.
pub(super) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Most rows one insert statement writes. Rows written together go in a few statements rather
/// than one each: each statement is a round trip to the database (through SQLite's connection
/// thread or PostgreSQL's socket). 64 rows stay far within both databases' limits on bound values
/// for the widest table (15 columns).
pub(super) const MAX_ROWS_PER_INSERT: usize = 64;

/// Batches of up to this many rows are written in one statement of their exact size: one round
/// trip, and no transaction around it.
pub(super) const EXACT_ROWS_PER_INSERT: usize = 16;

/// How many of `left` rows the next insert writes: all of them up to
/// [`EXACT_ROWS_PER_INSERT`], above that the largest power of two up to [`MAX_ROWS_PER_INSERT`].
/// A connection so prepares and caches at most 18 statements per table, whatever the sizes of
/// the batches, and the batches of a server under load from up to 16 concurrent callers (the most
/// usual) are written in one statement.
pub(super) fn rows_per_insert(left: usize) -> usize {
    match left {
        n if n <= EXACT_ROWS_PER_INSERT => n,
        n => 1 << n.min(MAX_ROWS_PER_INSERT).ilog2(),
    }
}

/// `rows` split into the inserts that write them, in order (sizes by [`rows_per_insert`]).
pub(super) fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        let (now, later) = rest.split_at(rows_per_insert(rest.len()));
        rest = later;
        (!now.is_empty()).then_some(now)
    })
}

/// The insert of `rows` rows of `columns` values each into `into` (a table and its columns:
/// `refresh_tokens (token_hash, family_id)`), with `?` placeholders.
pub(super) fn insert_rows(into: &str, columns: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("INSERT INTO {into} VALUES {}", vec![row; rows].join(", "))
}

/// Times one write to a table until it is dropped (committed or failed), as
/// `mcp_oauth_store_write_duration_seconds{table}`: what a durable acknowledgement costs.
pub(super) struct WriteTimer {
    table: &'static str,
    started: std::time::Instant,
}

pub(super) fn write_timer(table: &'static str) -> WriteTimer {
    WriteTimer {
        table,
        started: std::time::Instant::now(),
    }
}

impl Drop for WriteTimer {
    fn drop(&mut self) {
        metrics::histogram!("mcp_oauth_store_write_duration_seconds", "table" => self.table)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `dir` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DATABASE_FILE);
        create_private_file(&path)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", path.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // A connection to a file of this process does not go stale: no ping before each use
        // (a round trip to the connection's thread for every statement).
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        // Each table's inserts of every batch size (at most 18 statements each) stay prepared.
        let writer = options.statement_cache_capacity(256).connect().await?;
        Ok(SqliteStore {
            pool,
            writer: tokio::sync::Mutex::new(Some(writer)),
            path,
        })
    }

    /// The connection of the group-committed writes, once the one before has finished with it;
    /// also of the statements for which PostgreSQL lends a connection (`connections.rs`), which
    /// only a shared store runs outside the store's contract suite.
    pub(super) async fn connection(
        &self,
    ) -> Result<tokio::sync::MappedMutexGuard<'_, SqliteConnection>, StoreError> {
        tokio::sync::MutexGuard::try_map(self.writer.lock().await, Option::as_mut)
            .map_err(|_| StoreError("the store is closed".into()))
    }

    /// Closes the writes' connection, then the pool's.
    pub(super) async fn close_connections(&self) {
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = sqlx::Connection::close(writer).await;
        }
        self.pool.close().await;
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A statement as this backend spells it: the tables write theirs once, with `?`
    /// placeholders, which SQLite takes as they are.
    pub(super) fn sql(text: &str) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(text)
    }

    /// The statement that takes a lock on one key (bound as text) for the rest of a read-then-write
    /// transaction: none, SQLite has one writer at a time.
    pub(super) const ROW_LOCK: Option<&'static str> = None;

    /// The statement that announces a recorded change to the other servers: none, no other
    /// server reads this database.
    pub(super) const ANNOUNCE_CHANGE: Option<&'static str> = None;

    /// Nothing to add to an insert that a crash may lose: SQLite stores codes only in the
    /// store's contract suite (a single server keeps them in memory).
    pub(super) const WITHOUT_FLUSH_WAIT: &'static str = "";

    /// One writer at a time: no other transaction holds a row while one writes, so a batch of
    /// compare-and-swaps may go in one statement, in whatever order the database applies them.
    pub(super) const ONE_WRITER: bool = true;
}

/// Serialises a list of strings for a text column.
pub(super) fn to_json_list<S: AsRef<str> + serde::Serialize>(items: &[S]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Reads a list of strings from a text column.
pub(super) fn from_json_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError(format!("a stored list is corrupt: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_take_small_batches_whole_then_powers_of_two_up_to_the_most_rows() {
        for (left, rows) in [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 3),
            (7, 7),
            (16, 16),
            (17, 16),
            (31, 16),
            (33, 32),
            (63, 32),
            (64, 64),
            (65, 64),
            (256, 64),
        ] {
            assert_eq!(rows_per_insert(left), rows, "{left} left");
        }
        // Any batch is written whole and in order, in statements of at most 18 sizes.
        let rows: Vec<usize> = (0..300).collect();
        for batch in 0..=rows.len() {
            let split: Vec<&[usize]> = chunks(&rows[..batch]).collect();
            assert_eq!(split.concat(), &rows[..batch]);
            assert!(split.iter().all(|c| c.len() <= EXACT_ROWS_PER_INSERT
                || (c.len().is_power_of_two() && c.len() <= MAX_ROWS_PER_INSERT)));
            if batch <= EXACT_ROWS_PER_INSERT {
                assert!(split.len() <= 1, "{batch} rows in one statement");
            }
        }
    }

    #[test]
    fn an_insert_has_a_placeholder_for_each_value() {
        assert_eq!(
            insert_rows("t (a, b)", 2, 3),
            "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)"
        );
        assert_eq!(insert_rows("t (a)", 1, 1), "INSERT INTO t (a) VALUES (?)");
    }
}
