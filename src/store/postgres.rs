//! [`PostgresStore`]: the store on a PostgreSQL server (`--database-url postgres://…`), which
//! several replicas of the authorization server can share. Every statement is committed by the
//! server before the actor that sent it answers; migrations (`migrations/postgres/`) are embedded
//! in the binary and run at open, under sqlx's advisory lock, so replicas starting together
//! migrate once.
//!
//! This file opens the pool, and the connections lent for a flow's statements beside it
//! (`connections.rs`); each table's SQL is in its own module (`clients.rs`, `consents.rs`,
//! ...), beside the table's SQLite and in-memory implementations.

use super::connections::{Connections, Lent, PING_WHEN_IDLE_FOR};
use super::error::StoreError;
use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// The pool's size and patience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections open at once: the pool's and the lent ones' ([`lent_share`]) together;
    /// at least [`MIN_CONNECTIONS`].
    pub max_connections: u32,
    /// Longest wait for a connection (then the request fails with 503 rather than hangs).
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// How many of `max_connections` are lent for the statements of flows and group commits: half.
/// The rest are the pool's, which needs two at least: the change listener holds one for good.
pub fn lent_share(max_connections: u32) -> u32 {
    (max_connections / 2).clamp(1, max_connections.saturating_sub(2).max(1))
}

/// The fewest connections [`lent_share`] can split.
pub const MIN_CONNECTIONS: u32 = 3;

pub struct PostgresStore {
    /// The connection pool, through which each table module runs its statements.
    pub(super) pool: PgPool,
    /// The connections lent for the statements that every flow makes and for group commits,
    /// taken back without the pool's ping ([`Self::connection`]).
    lent: Connections<PgConnection>,
    /// The URL without its password, for the log.
    described: String,
    /// Bumped on each notification that a change was recorded (by any server).
    changes: tokio::sync::watch::Receiver<u64>,
    _listener: ListenerTask,
}

/// The channel on which every recorded change is announced (`NOTIFY`), so that the other servers
/// read it at once rather than at their next poll.
pub const CHANGES_CHANNEL: &str = "mcp_oauth_changes";

/// The task that listens for the announcements; stopped with the store.
struct ListenerTask(tokio::task::JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens on [`CHANGES_CHANNEL`] on a connection of its own, and bumps `signal` for each
/// announcement, and after each reconnection too (announcements made meanwhile are lost; the
/// reader's poll finds their changes anyway).
async fn listen_for_changes(pool: PgPool, signal: tokio::sync::watch::Sender<u64>) {
    let bump = || signal.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(sqlx::Error::PoolClosed) => return,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if listener.listen(CHANGES_CHANNEL).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        bump();
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => bump(),
                // The connection was lost; `try_recv` reconnects and listens again.
                Ok(None) => bump(),
                Err(sqlx::Error::PoolClosed) => return,
                Err(_) => break,
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The database URL without its password.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            // sqlx also takes the password as a query parameter.
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "password" {
                        "***".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => "postgres:(unparsable URL)".into(),
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and brings its schema up to date.
    pub async fn open(url: &str, options: PoolOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError(format!("the database URL cannot be used: {e}")))?;
        // A connection idle for a while may have been closed by the database or the network, and
        // is pinged before use; one in steady use is not (a round trip for every statement).
        if options.max_connections < MIN_CONNECTIONS {
            return Err(StoreError(format!(
                "PostgreSQL needs at least {MIN_CONNECTIONS} connections, not {}",
                options.max_connections
            )));
        }
        let lent = lent_share(options.max_connections);
        let pooled = options.max_connections.saturating_sub(lent).max(1);
        let pool = PgPoolOptions::new()
            .max_connections(pooled)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        sqlx::Connection::ping(connection).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect.clone())
            .await
            .map_err(|e| StoreError(format!("cannot connect to {}: {e}", redacted(url))))?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (signal, changes) = tokio::sync::watch::channel(0);
        let listener = ListenerTask(tokio::spawn(listen_for_changes(pool.clone(), signal)));
        Ok(PostgresStore {
            pool,
            lent: Connections::new(connect, lent, options.acquire_timeout),
            described: redacted(url),
            changes,
            _listener: listener,
        })
    }

    /// The URL without its password.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Changes on each announcement that a change was recorded.
    pub fn change_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.clone()
    }

    /// The statement that announces a recorded change; SQLite has no other reader to tell.
    pub(super) const ANNOUNCE_CHANGE: Option<&'static str> =
        Some("SELECT pg_notify('mcp_oauth_changes', '')");

    /// A connection for a statement of every flow (a session's read, a code's insert or
    /// redemption) or a group commit: one of those lent, since several can write at once. Its
    /// use is ended by [`Settle::settle`](super::connections::Settle::settle).
    pub(super) async fn connection(&self) -> Result<Lent<'_, PgConnection>, StoreError> {
        self.lent.lend().await
    }

    /// Closes the lent connections, then the pool's.
    pub(super) async fn close_connections(&self) {
        self.lent.close().await;
        self.pool.close().await;
    }

    /// The end of an `INSERT ... SELECT` whose commit need not wait for the log to reach the
    /// disk (PostgreSQL's `synchronous_commit`, for this transaction only): used for codes, which
    /// a crash may lose (docs/SCALING.md says why that is safe).
    pub(super) const WITHOUT_FLUSH_WAIT: &'static str =
        "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS unhurried";

    /// Several writers at once (other servers): a batch of compare-and-swaps locks its rows one
    /// by one in a fixed order, so that two transactions never wait for each other in a circle.
    pub(super) const ONE_WRITER: bool = false;

    /// A statement as this backend spells it: the tables write theirs once, with `?`
    /// placeholders, which PostgreSQL numbers (`$1`, `$2`, ...). No statement has a `?` of its
    /// own.
    pub(super) fn sql(text: &str) -> std::borrow::Cow<'_, str> {
        let mut numbered = String::with_capacity(text.len() + 16);
        let mut n = 0;
        for c in text.chars() {
            if c == '?' {
                n += 1;
                numbered.push('$');
                numbered.push_str(itoa::Buffer::new().format(n));
            } else {
                numbered.push(c);
            }
        }
        std::borrow::Cow::Owned(numbered)
    }

    /// The statement that takes a lock on one key (bound as text) for the rest of a read-then-write
    /// transaction, so that another server's read-then-write of the same key waits for this one's
    /// commit, even when there is no row yet to lock: a transaction-scoped advisory lock on the
    /// key's hash.
    pub(super) const ROW_LOCK: Option<&'static str> =
        Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))");
}

#[cfg(test)]
mod tests {
    use super::{PostgresStore, lent_share, redacted};

    #[test]
    fn the_lent_connections_and_the_pool_share_the_maximum() {
        assert_eq!(lent_share(10), 5);
        for max in super::MIN_CONNECTIONS..=1000 {
            let lent = lent_share(max);
            // The pool keeps the change listener's connection and one more.
            assert!(lent >= 1 && max - lent >= 2, "{max}: {lent} lent");
        }
    }

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(
            PostgresStore::sql("UPDATE t SET a = ? WHERE b = ? AND c = ?"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c = $3"
        );
        assert_eq!(PostgresStore::sql("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn passwords_are_not_shown() {
        let url = "postgres://u:hunter2@db:5432/mcp?password=hunter3&sslmode=require";
        let shown = redacted(url);
        assert!(!shown.contains("hunter"), "{shown}");
        assert!(
            shown.contains("db:5432/mcp") && shown.contains("sslmode=require"),
            "{shown}"
        );
    }
}
