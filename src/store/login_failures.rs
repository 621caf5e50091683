//! The login-failures table: failed logins per account, counted in the store when several
//! servers share it, so that an account's lockout holds at every server. The `Throttle` actor
//! counts in memory otherwise. An account is a keyed digest of the typed name, never the name.
//! Times are Unix seconds.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, int, unsigned};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashMap;

/// An account's digest.
pub type AccountDigest = [u8; 32];

/// What a login attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted as a failure until a success clears it.
    Counted,
    /// The account is locked until this Unix time; nothing counted.
    Locked { until: u64 },
}

/// Failed logins per account, shared by the servers on one store.
#[async_trait]
pub trait LoginFailureStore: Send + Sync {
    /// Counts an attempt as a failure in one conditional upsert, unless `limit` failures were
    /// counted in the window (which starts at the first failure and lasts `window` seconds).
    async fn count_login_attempt(
        &self,
        account: &AccountDigest,
        limit: u32,
        window: u64,
        now: u64,
    ) -> Result<LoginAttempt, StoreError>;
    /// A successful login: the account's failures are forgotten.
    async fn clear_login_failures(&self, account: &AccountDigest) -> Result<(), StoreError>;
    async fn delete_expired_login_failures(&self, now: u64) -> Result<u64, StoreError>;
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::login_failures::*;

            #[async_trait]
            impl LoginFailureStore for $store {
                async fn count_login_attempt(
                    &self,
                    account: &AccountDigest,
                    limit: u32,
                    window: u64,
                    now: u64,
                ) -> Result<LoginAttempt, StoreError> {
                    // A window that ended starts afresh; a locked account is left as it is.
                    let counted = sqlx::query(&<$store>::sql(
                        "INSERT INTO login_failures (account, failures, window_ends) VALUES (?, 1, ?) \
                         ON CONFLICT (account) DO UPDATE SET \
                         failures = CASE WHEN login_failures.window_ends <= ? THEN 1 \
                                    ELSE login_failures.failures + 1 END, \
                         window_ends = CASE WHEN login_failures.window_ends <= ? \
                                       THEN excluded.window_ends ELSE login_failures.window_ends END \
                         WHERE login_failures.window_ends <= ? OR login_failures.failures < ? \
                         RETURNING failures",
                    ))
                    .bind(account.to_vec())
                    .bind(int(now.saturating_add(window)))
                    .bind(int(now))
                    .bind(int(now))
                    .bind(int(now))
                    .bind(i64::from(limit))
                    .fetch_optional(&self.pool)
                    .await?;
                    if counted.is_some() {
                        return Ok(LoginAttempt::Counted);
                    }
                    let row = sqlx::query(&<$store>::sql(
                        "SELECT window_ends FROM login_failures WHERE account = ?",
                    ))
                    .bind(account.to_vec())
                    .fetch_optional(&self.pool)
                    .await?;
                    let until = match row {
                        Some(row) => unsigned(row.try_get("window_ends")?),
                        None => now,
                    };
                    Ok(LoginAttempt::Locked { until })
                }

                async fn clear_login_failures(
                    &self,
                    account: &AccountDigest,
                ) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql("DELETE FROM login_failures WHERE account = ?"))
                        .bind(account.to_vec())
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn delete_expired_login_failures(&self, now: u64) -> Result<u64, StoreError> {
                    let done = sqlx::query(&<$store>::sql(
                        "DELETE FROM login_failures WHERE window_ends <= ?",
                    ))
                    .bind(int(now))
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected())
                }
            }
        }
    };
}

sql_backend!(on_sqlite, SqliteStore, sqlx::sqlite::SqliteRow);
sql_backend!(on_postgres, PostgresStore, sqlx::postgres::PgRow);

/// The failures of the in-memory store: (failures, window end) by account.
#[derive(Default)]
struct FailuresTable {
    accounts: HashMap<AccountDigest, (u32, u64)>,
}

#[async_trait]
impl LoginFailureStore for MemoryStore {
    async fn count_login_attempt(
        &self,
        account: &AccountDigest,
        limit: u32,
        window: u64,
        now: u64,
    ) -> Result<LoginAttempt, StoreError> {
        self.with(|t: &mut FailuresTable| {
            let entry = t
                .accounts
                .entry(*account)
                .or_insert((0, now.saturating_add(window)));
            if entry.1 <= now {
                *entry = (0, now.saturating_add(window));
            }
            if entry.0 >= limit {
                return LoginAttempt::Locked { until: entry.1 };
            }
            entry.0 += 1;
            LoginAttempt::Counted
        })
    }

    async fn clear_login_failures(&self, account: &AccountDigest) -> Result<(), StoreError> {
        self.with(|t: &mut FailuresTable| {
            t.accounts.remove(account);
        })
    }

    async fn delete_expired_login_failures(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t: &mut FailuresTable| {
            let before = t.accounts.len();
            t.accounts.retain(|_, (_, ends)| *ends > now);
            (before - t.accounts.len()) as u64
        })
    }
}
