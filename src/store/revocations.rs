//! The revocations table: access tokens revoked before their expiry, by `jti`, until that expiry.
//! The [`RevocationStore`] trait `Revocations` writes through, and its SQLite and in-memory
//! implementations.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, int, unsigned, write_timer};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashMap;

/// Access tokens revoked before their expiry, by `jti` (`Revocations`).
#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Every revocation still in force at `now` (jti, until).
    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;
    /// Until when `jti` is revoked, if it is at `now`.
    async fn revoked_until(&self, jti: &str, now: u64) -> Result<Option<u64>, StoreError>;
    /// Records a revocation (an upsert keeping the later expiry).
    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError>;
    async fn delete_expired_revocations(&self, now: u64) -> Result<u64, StoreError>;
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::revocations::*;

            #[async_trait]
            impl RevocationStore for $store {
                async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
                    let rows = sqlx::query(&<$store>::sql("SELECT jti, expires_at FROM revocations WHERE expires_at > ?"))
                        .bind(int(now))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter()
                        .map(|row| Ok((row.try_get("jti")?, unsigned(row.try_get("expires_at")?))))
                        .collect()
                }

                async fn revoked_until(
                    &self,
                    jti: &str,
                    now: u64,
                ) -> Result<Option<u64>, StoreError> {
                    let row = sqlx::query(&<$store>::sql(
                        "SELECT expires_at FROM revocations WHERE jti = ? AND expires_at > ?",
                    ))
                    .bind(jti)
                    .bind(int(now))
                    .fetch_optional(&self.pool)
                    .await?;
                    row.map(|row| Ok(unsigned(row.try_get("expires_at")?)))
                        .transpose()
                }

                async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
                    let _write = write_timer("revocations");
                    sqlx::query(&<$store>::sql(
                        "INSERT INTO revocations (jti, expires_at) VALUES (?, ?) \
                         ON CONFLICT (jti) DO UPDATE SET expires_at = CASE \
                         WHEN excluded.expires_at > revocations.expires_at THEN excluded.expires_at \
                         ELSE revocations.expires_at END",
                    ))
                    .bind(jti)
                    .bind(int(until))
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn delete_expired_revocations(&self, now: u64) -> Result<u64, StoreError> {
                    let done = sqlx::query(&<$store>::sql("DELETE FROM revocations WHERE expires_at <= ?"))
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

/// The revocations table of the in-memory store: `jti` -> until.
#[derive(Default)]
struct RevocationsTable {
    revocations: HashMap<String, u64>,
}

#[async_trait]
impl RevocationStore for MemoryStore {
    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.with(|t: &mut RevocationsTable| {
            t.revocations
                .iter()
                .filter(|(_, until)| **until > now)
                .map(|(jti, until)| (jti.clone(), *until))
                .collect()
        })
    }

    async fn revoked_until(&self, jti: &str, now: u64) -> Result<Option<u64>, StoreError> {
        self.with(|t: &mut RevocationsTable| {
            t.revocations.get(jti).copied().filter(|until| *until > now)
        })
    }

    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
        self.with(|t: &mut RevocationsTable| {
            let entry = t.revocations.entry(jti.to_string()).or_insert(until);
            *entry = (*entry).max(until);
        })
    }

    async fn delete_expired_revocations(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t: &mut RevocationsTable| {
            let before = t.revocations.len();
            t.revocations.retain(|_, until| *until > now);
            (before - t.revocations.len()) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A revocation is an upsert that keeps the later expiry, and expired ones are deleted.
    #[tokio::test]
    async fn sqlite_revocations_keep_the_later_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.revoke("j", 500).await.unwrap();
        store.revoke("j", 400).await.unwrap();
        assert!(
            store.revoked_until("j", 450).await.unwrap().is_some(),
            "the later expiry is kept"
        );
        assert_eq!(store.delete_expired_revocations(600).await.unwrap(), 1);
        store.pool.close().await;
    }
}
