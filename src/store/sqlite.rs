//! [`SqliteStore`]: the embedded store, one SQLite database (`mcp-oauth.db`, with its `-wal` and
//! `-shm` companions) in the data directory. Write-ahead logging with `synchronous = FULL`: a
//! committed write survives a crash of the process and of the machine. The directory is created
//! with mode 0700 and the database file with 0600 (SQLite gives its companions the same mode).
//! Migrations (`migrations/sqlite/`) are embedded in the binary and run at open.
//!
//! This file opens the pool and holds the column helpers; each table's SQL is in its own module
//! (`clients.rs`, `consents.rs`, ...), beside the table's in-memory implementation.

use super::error::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The database file's name in the data directory.
pub const DATABASE_FILE: &str = "mcp-oauth.db";

pub struct SqliteStore {
    /// The connection pool, through which each table module runs its statements.
    pub(super) pool: SqlitePool,
    path: PathBuf,
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
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStore { pool, path })
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
}

/// Serialises a list of strings for a text column.
pub(super) fn to_json_list<S: AsRef<str> + serde::Serialize>(items: &[S]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// Reads a list of strings from a text column.
pub(super) fn from_json_list(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError(format!("a stored list is corrupt: {e}")))
}
