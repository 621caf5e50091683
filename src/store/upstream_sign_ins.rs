//! The upstream sign-ins table: sign-ins in progress at upstream identity providers
//! ([`SignInRecord`]), kept in the store when several servers share it, so that the provider's
//! redirect back may reach another server than the one that sent the browser there. The
//! `IdentityProviders` actor keeps them in memory otherwise. Times are Unix seconds.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, int, unsigned};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashMap;

/// A sign-in in progress, as stored (by the digest of its `state`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInRecord {
    pub provider: String,
    /// The digest of the browser session's id that started it.
    pub session_key: [u8; 32],
    pub request_id: String,
    pub nonce: String,
    pub verifier: String,
    pub expires_at: u64,
}

/// Sign-ins in progress shared by the servers on one store.
#[async_trait]
pub trait UpstreamSignInStore: Send + Sync {
    async fn insert_sign_in(
        &self,
        state: &[u8; 32],
        sign_in: &SignInRecord,
    ) -> Result<(), StoreError>;
    /// Takes the sign-in `state` names, once, if it was started at `provider` by this session and
    /// is live at `now` (one conditional delete: someone who merely saw the state cannot take it).
    async fn take_sign_in(
        &self,
        state: &[u8; 32],
        provider: &str,
        session_key: &[u8; 32],
        now: u64,
    ) -> Result<Option<SignInRecord>, StoreError>;
    async fn delete_expired_sign_ins(&self, now: u64) -> Result<u64, StoreError>;
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::upstream_sign_ins::*;

            #[async_trait]
            impl UpstreamSignInStore for $store {
                async fn insert_sign_in(
                    &self,
                    state: &[u8; 32],
                    sign_in: &SignInRecord,
                ) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql(
                        "INSERT INTO upstream_sign_ins (state_hash, provider, session_key, \
                         request_id, nonce, verifier, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    ))
                    .bind(state.to_vec())
                    .bind(&sign_in.provider)
                    .bind(sign_in.session_key.to_vec())
                    .bind(&sign_in.request_id)
                    .bind(&sign_in.nonce)
                    .bind(&sign_in.verifier)
                    .bind(int(sign_in.expires_at))
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn take_sign_in(
                    &self,
                    state: &[u8; 32],
                    provider: &str,
                    session_key: &[u8; 32],
                    now: u64,
                ) -> Result<Option<SignInRecord>, StoreError> {
                    let row = sqlx::query(&<$store>::sql(
                        "DELETE FROM upstream_sign_ins WHERE state_hash = ? AND provider = ? \
                         AND session_key = ? AND expires_at > ? \
                         RETURNING provider, request_id, nonce, verifier, expires_at",
                    ))
                    .bind(state.to_vec())
                    .bind(provider)
                    .bind(session_key.to_vec())
                    .bind(int(now))
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    Ok(Some(SignInRecord {
                        provider: row.try_get("provider")?,
                        session_key: *session_key,
                        request_id: row.try_get("request_id")?,
                        nonce: row.try_get("nonce")?,
                        verifier: row.try_get("verifier")?,
                        expires_at: unsigned(row.try_get("expires_at")?),
                    }))
                }

                async fn delete_expired_sign_ins(&self, now: u64) -> Result<u64, StoreError> {
                    let done = sqlx::query(&<$store>::sql(
                        "DELETE FROM upstream_sign_ins WHERE expires_at <= ?",
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

/// The sign-ins of the in-memory store, by the digest of their state.
#[derive(Default)]
struct SignInsTable {
    sign_ins: HashMap<[u8; 32], SignInRecord>,
}

#[async_trait]
impl UpstreamSignInStore for MemoryStore {
    async fn insert_sign_in(
        &self,
        state: &[u8; 32],
        sign_in: &SignInRecord,
    ) -> Result<(), StoreError> {
        self.with(|t: &mut SignInsTable| {
            t.sign_ins.insert(*state, sign_in.clone());
        })
    }

    async fn take_sign_in(
        &self,
        state: &[u8; 32],
        provider: &str,
        session_key: &[u8; 32],
        now: u64,
    ) -> Result<Option<SignInRecord>, StoreError> {
        self.with(|t: &mut SignInsTable| {
            let ours = t.sign_ins.get(state).is_some_and(|s| {
                s.provider == provider && s.session_key == *session_key && s.expires_at > now
            });
            if ours { t.sign_ins.remove(state) } else { None }
        })
    }

    async fn delete_expired_sign_ins(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t: &mut SignInsTable| {
            let before = t.sign_ins.len();
            t.sign_ins.retain(|_, s| s.expires_at > now);
            (before - t.sign_ins.len()) as u64
        })
    }
}
