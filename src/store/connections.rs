//! [`Connections`]: database connections of the store's own, lent one statement or transaction at
//! a time for the writes and reads that every flow makes on a shared store (a session's read, a
//! code's insert and redemption, the group commits of registrations and refresh tokens), and
//! taken back without a test.
//!
//! sqlx's pool tests every connection it takes back with a ping: a round trip after each
//! statement that went through it (on PostgreSQL a `Sync` and its answer), which costs a flow
//! about a tenth of its CPU. The test is there for a connection whose use was cut short (its
//! future dropped in the middle of a statement) or failed. Here the borrower says how its use
//! ended instead ([`Settle::settle`]): a connection comes back only from a use that succeeded;
//! any other is closed, and the next borrower gets a sound one or a new one. A connection idle for
//! [`PING_WHEN_IDLE_FOR`] or longer is pinged before it is lent again, as the pool does, since the
//! database or the network may have closed it meanwhile; one idle for [`IDLE_TIMEOUT`] is closed
//! instead, and one open for [`MAX_LIFETIME`] is closed when it comes back, as the pool does.
//! A connection being closed still counts against the maximum until it is closed.

use super::error::StoreError;
use crossbeam_queue::ArrayQueue;
use sqlx::Connection;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A connection idle at least this long is pinged before it is lent again.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);
/// A connection idle this long is closed rather than lent again.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A connection open this long is closed when it comes back.
pub const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// When a connection is pinged before it is lent again, or closed for its age.
#[derive(Debug, Clone, Copy)]
struct Ages {
    ping_when_idle_for: Duration,
    idle_timeout: Duration,
    max_lifetime: Duration,
}

const AGES: Ages = Ages {
    ping_when_idle_for: PING_WHEN_IDLE_FOR,
    idle_timeout: IDLE_TIMEOUT,
    max_lifetime: MAX_LIFETIME,
};

/// How a borrowed connection's use ended: the connection goes back to be lent again only after
/// `result` is `Ok`.
pub trait Settle {
    fn settle<T, E>(self, result: Result<T, E>) -> Result<T, E>;
}

/// Up to `max` connections, opened when first needed and kept open.
pub struct Connections<C: Connection + 'static> {
    options: C::Options,
    /// Each idle connection, with when it was opened and when it came back.
    idle: ArrayQueue<Idle<C>>,
    /// One per connection open or being opened; held until a connection lent is closed.
    permits: Arc<Semaphore>,
    max: u32,
    acquire_timeout: Duration,
    ages: Ages,
}

struct Idle<C> {
    connection: C,
    opened: Instant,
    since: Instant,
}

impl<C: Connection + 'static> Connections<C> {
    /// Connections opened with `options`, at most `max` at once; a borrower waits at most
    /// `acquire_timeout` for one (to be free, or to be opened).
    pub fn new(options: C::Options, max: u32, acquire_timeout: Duration) -> Self {
        let max = max.max(1);
        Connections {
            options,
            idle: ArrayQueue::new(max as usize),
            permits: Arc::new(Semaphore::new(max as usize)),
            max,
            acquire_timeout,
            ages: AGES,
        }
    }

    /// The same, with other ages for the ping and the retirements (shorter, for tests).
    #[cfg(test)]
    fn with_ages(self, ages: Ages) -> Self {
        Connections { ages, ..self }
    }

    /// A connection, once one is free: an idle one, or a new one while fewer than `max` are open.
    pub async fn lend(&self) -> Result<Lent<'_, C>, StoreError> {
        let deadline = Instant::now() + self.acquire_timeout;
        let timed_out = || StoreError("timed out waiting for a database connection".into());
        let acquired = Arc::clone(&self.permits).acquire_owned();
        let permit = match tokio::time::timeout_at(deadline, acquired).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(StoreError("the store is closed".into())),
            Err(_) => return Err(timed_out()),
        };
        while let Some(idle) = self.idle.pop() {
            let Idle {
                mut connection,
                opened,
                since,
            } = idle;
            if since.elapsed() >= self.ages.idle_timeout {
                let _ = tokio::time::timeout_at(deadline, connection.close()).await;
                continue;
            }
            if since.elapsed() < self.ages.ping_when_idle_for {
                return Ok(Lent::new(connection, opened, self, permit));
            }
            let pinged = tokio::time::timeout_at(deadline, connection.ping()).await;
            if let Ok(Ok(())) = pinged {
                return Ok(Lent::new(connection, opened, self, permit));
            }
            // Closed by the database or the network while it was idle: let it go.
        }
        match tokio::time::timeout_at(deadline, C::connect_with(&self.options)).await {
            Ok(Ok(connection)) => Ok(Lent::new(connection, Instant::now(), self, permit)),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => Err(timed_out()),
        }
    }

    /// Waits (up to the acquire timeout) for the connections lent to come back, closes them all,
    /// and lends none from now on.
    pub async fn close(&self) {
        let all = self.permits.acquire_many(self.max);
        let _returned = tokio::time::timeout(self.acquire_timeout, all).await;
        self.permits.close();
        while let Some(idle) = self.idle.pop() {
            let _ = tokio::time::timeout(self.acquire_timeout, idle.connection.close()).await;
        }
    }

    /// How many connections are open and idle.
    #[cfg(test)]
    pub fn idle(&self) -> usize {
        self.idle.len()
    }

    /// How many more connections could be lent now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

/// A connection lent by [`Connections::lend`]. Given back by [`Settle::settle`] with a success;
/// closed when dropped otherwise.
pub struct Lent<'a, C: Connection + 'static> {
    connection: Option<C>,
    opened: Instant,
    home: &'a Connections<C>,
    /// Given up once the connection is back, or closed.
    permit: Option<OwnedSemaphorePermit>,
}

impl<'a, C: Connection + 'static> Lent<'a, C> {
    fn new(
        connection: C,
        opened: Instant,
        home: &'a Connections<C>,
        permit: OwnedSemaphorePermit,
    ) -> Self {
        Lent {
            connection: Some(connection),
            opened,
            home,
            permit: Some(permit),
        }
    }
}

impl<C: Connection + 'static> Settle for Lent<'_, C> {
    fn settle<T, E>(mut self, result: Result<T, E>) -> Result<T, E> {
        // After `close`, or past its lifetime, the connection is closed rather than kept (by
        // `drop`).
        if result.is_ok()
            && !self.home.permits.is_closed()
            && self.opened.elapsed() < self.home.ages.max_lifetime
            && let Some(connection) = self.connection.take()
        {
            // The permit, released after this, bounds the idle connections to the queue's size.
            let idle = Idle {
                connection,
                opened: self.opened,
                since: Instant::now(),
            };
            if let Err(idle) = self.home.idle.push(idle) {
                close_soon(
                    idle.connection,
                    self.permit.take(),
                    self.home.acquire_timeout,
                );
            }
        }
        result
    }
}

impl<C: Connection + 'static> Drop for Lent<'_, C> {
    fn drop(&mut self) {
        // Not settled, or settled with an error: the connection's state is unknown. It is closed,
        // and counts against the maximum until it is.
        if let Some(connection) = self.connection.take() {
            close_soon(connection, self.permit.take(), self.home.acquire_timeout);
        }
    }
}

/// Closes `connection` (politely when a runtime is at hand: the database is told, not left to
/// notice), then gives up `permit`. A connection whose database does not answer is dropped after
/// `patience`, closing its socket, so that its permit is never held for longer.
fn close_soon<C: Connection + 'static>(
    connection: C,
    permit: Option<OwnedSemaphorePermit>,
    patience: Duration,
) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(patience, connection.close()).await;
            drop(permit);
        });
    }
}

impl<C: Connection + 'static> Deref for Lent<'_, C> {
    type Target = C;

    fn deref(&self) -> &C {
        match &self.connection {
            Some(connection) => connection,
            None => unreachable!("a lent connection is taken only as it is given back"),
        }
    }
}

impl<C: Connection + 'static> DerefMut for Lent<'_, C> {
    fn deref_mut(&mut self) -> &mut C {
        match &mut self.connection {
            Some(connection) => connection,
            None => unreachable!("a lent connection is taken only as it is given back"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{AGES, Ages, Connections, Settle};
    use mcp_oauth_testkit::postgres::ScratchDatabase;
    use sqlx::PgConnection;
    use std::str::FromStr;
    use std::time::Duration;

    async fn connections(database: &ScratchDatabase, max: u32) -> Connections<PgConnection> {
        let options = sqlx::postgres::PgConnectOptions::from_str(&database.url).unwrap();
        Connections::new(options, max, Duration::from_millis(300))
    }

    /// Whether the server process `pid` still runs, within a couple of seconds of its close.
    async fn ends(database: &ScratchDatabase, pid: i32) -> bool {
        let mut admin = <PgConnection as sqlx::Connection>::connect(&database.url)
            .await
            .unwrap();
        for _ in 0..40 {
            let running: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if running == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// The server process behind the connection: the same one means the same connection.
    async fn backend(connections: &Connections<PgConnection>) -> i32 {
        let mut conn = connections.lend().await.unwrap();
        let pid = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut *conn)
            .await;
        conn.settle(pid).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_lent_again_after_a_success_and_closed_after_anything_else() {
        let database = ScratchDatabase::create().await;
        let connections = connections(&database, 2).await;
        let first = backend(&connections).await;
        assert_eq!(
            backend(&connections).await,
            first,
            "given back and lent again"
        );
        assert_eq!(connections.idle(), 1);

        // A statement that failed: the connection is not given back.
        let mut conn = connections.lend().await.unwrap();
        let failed = sqlx::query("SELECT * FROM no_such_table")
            .execute(&mut *conn)
            .await;
        assert!(conn.settle(failed).is_err());
        assert_eq!(connections.idle(), 0);
        let second = backend(&connections).await;
        assert_ne!(second, first, "a new connection after the failure");

        // A use cut short (its future dropped mid-statement): not given back either.
        let mut conn = connections.lend().await.unwrap();
        let sleep = sqlx::query("SELECT pg_sleep(5)").execute(&mut *conn);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), sleep)
                .await
                .is_err()
        );
        drop(conn);
        assert_eq!(connections.idle(), 0);
        assert_ne!(backend(&connections).await, second);
        connections.close().await;
    }

    #[tokio::test]
    async fn at_most_max_are_lent_and_a_borrower_waits_no_longer_than_its_timeout() {
        let database = ScratchDatabase::create().await;
        let connections = connections(&database, 2).await;
        let (one, two) = (connections.lend().await, connections.lend().await);
        assert!(one.is_ok() && two.is_ok());
        let third = connections.lend().await;
        let error = third.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("timed out"), "{error}");
        drop(one);
        let freed = connections.lend().await;
        assert!(freed.is_ok(), "a permit freed is lent");
        drop(two);
        connections.close().await;
        let closed = connections.lend().await;
        assert!(
            closed
                .err()
                .is_some_and(|e| e.to_string().contains("closed"))
        );
        // One lent before the close and given back after it is closed, not kept.
        if let Ok(lent) = freed {
            assert_eq!(lent.settle(Ok::<(), ()>(())), Ok(()));
        }
        assert_eq!(connections.idle(), 0);
    }

    #[tokio::test]
    async fn closing_waits_for_the_connections_lent_and_a_dropped_one_counts_until_closed() {
        let database = ScratchDatabase::create().await;
        let connections = connections(&database, 2).await;
        // Dropped mid-use: its permit comes back only once it is closed.
        let lent = connections.lend().await.unwrap();
        drop(lent);
        assert_eq!(connections.available(), 1, "still counted while it closes");
        let lent = connections.lend().await.unwrap();
        let given_back = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = lent.settle(Ok::<(), ()>(()));
            tokio::time::Instant::now()
        };
        let closing = async {
            connections.close().await;
            tokio::time::Instant::now()
        };
        let (given_back, closed) = tokio::join!(given_back, closing);
        assert!(
            closed >= given_back,
            "the close waited for the connection lent"
        );
        assert_eq!(connections.idle(), 0);
    }

    #[tokio::test]
    async fn a_connection_idle_too_long_is_closed_and_an_old_one_is_closed_when_it_comes_back() {
        let database = ScratchDatabase::create().await;
        // Idle for 500 ms: closed at the next lend, never pinged.
        let idle_ages = Ages {
            ping_when_idle_for: Duration::from_secs(60),
            idle_timeout: Duration::from_millis(500),
            ..AGES
        };
        let lent_set = connections(&database, 2).await.with_ages(idle_ages);
        let first = backend(&lent_set).await;
        assert_eq!(backend(&lent_set).await, first, "not idle for long yet");
        tokio::time::sleep(Duration::from_millis(700)).await;
        let next = backend(&lent_set).await;
        assert_ne!(next, first, "a new connection after the idle timeout");
        assert!(ends(&database, first).await, "the idle one was closed");
        assert_eq!(lent_set.idle(), 1);
        lent_set.close().await;

        // Open for 500 ms: kept while younger, closed when given back older.
        let old_ages = Ages {
            ping_when_idle_for: Duration::from_secs(60),
            max_lifetime: Duration::from_millis(500),
            ..AGES
        };
        let lent_set = connections(&database, 2).await.with_ages(old_ages);
        let first = backend(&lent_set).await;
        assert_eq!(lent_set.idle(), 1, "young: given back and kept");
        let lent = lent_set.lend().await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(lent.settle(Ok::<(), ()>(())), Ok(()));
        assert_eq!(lent_set.idle(), 0, "old: not kept");
        assert!(ends(&database, first).await, "the old one was closed");
        assert_ne!(backend(&lent_set).await, first);
        lent_set.close().await;
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_database_while_idle_is_replaced_not_lent() {
        let database = ScratchDatabase::create().await;
        let pinged_soon = Ages {
            ping_when_idle_for: Duration::from_millis(100),
            ..AGES
        };
        let connections = connections(&database, 2).await.with_ages(pinged_soon);
        let first = backend(&connections).await;
        let mut admin = <PgConnection as sqlx::Connection>::connect(&database.url)
            .await
            .unwrap();
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(ended);
        // Idle long enough to be pinged before it is lent: the ping fails, a new one is opened.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = backend(&connections).await;
        assert_ne!(next, first);
        connections.close().await;
    }
}
