//! The sessions tables: browser sessions ([`SessionRecord`]), the authorization requests parked in
//! them, and replaced session ids ([`Renewal`]), with the [`SessionStore`] trait. The `Sessions`
//! actor uses them only when several servers share the store, so that a browser's sign-in can go
//! on at any server. Session ids are kept only as SHA-256 digests ([`SessionKey`]); a parked
//! request is the actor's JSON, taken out once by one conditional delete. Times are Unix seconds.

use super::connections::Settle;
use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, int, unsigned};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashMap;

/// A session id's digest.
pub type SessionKey = [u8; 32];

/// A browser session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub csrf: String,
    /// The signed-in user (`None`: anonymous).
    pub subject: Option<String>,
    pub display_name: Option<String>,
    pub expires_at: u64,
}

/// A replaced session id: its successor is derived from it with `salt`, for `subject`, until
/// `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    pub salt: [u8; 32],
    pub subject: String,
    pub until: u64,
}

/// Browser sessions shared by the servers on one store.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn insert_session(
        &self,
        key: &SessionKey,
        session: &SessionRecord,
    ) -> Result<(), StoreError>;
    /// The session, if it is live at `now`.
    async fn session(
        &self,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// Ends a session and the requests parked in it; true if it was live.
    async fn delete_session(&self, key: &SessionKey) -> Result<bool, StoreError>;
    /// Ends every session of a user, with their requests and renewals; answers how many.
    async fn delete_user_sessions(&self, subject: &str) -> Result<u64, StoreError>;
    /// Parks a request in a session, dropping the session's oldest beyond `max_per_session`.
    async fn park_request(
        &self,
        request_id: &str,
        key: &SessionKey,
        request: &str,
        expires_at: u64,
        max_per_session: u32,
    ) -> Result<(), StoreError>;
    /// A request parked in this session, live at `now`.
    async fn parked_request(
        &self,
        request_id: &str,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<String>, StoreError>;
    /// Takes a request parked in this session out, once (one conditional delete).
    async fn take_request(
        &self,
        request_id: &str,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<String>, StoreError>;
    /// Replaces a session by a signed-in one in one transaction: the new session, its parked
    /// requests moved over, the old session gone, and the renewal remembered.
    async fn renew_session(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &SessionRecord,
        renewal: &Renewal,
    ) -> Result<(), StoreError>;
    /// The renewal of a replaced session id, if live at `now`.
    async fn renewal(&self, old: &SessionKey, now: u64) -> Result<Option<Renewal>, StoreError>;
    /// Deletes what expired before `now` (sessions, requests, renewals).
    async fn delete_expired_sessions(&self, now: u64) -> Result<u64, StoreError>;
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::sessions::*;

            fn session_from_row(row: &$row) -> Result<SessionRecord, StoreError> {
                Ok(SessionRecord {
                    csrf: row.try_get("csrf")?,
                    subject: row.try_get("subject")?,
                    display_name: row.try_get("display_name")?,
                    expires_at: unsigned(row.try_get("expires_at")?),
                })
            }

            const INSERT_SESSION: &str = "INSERT INTO sessions \
                 (session_key, csrf, subject, display_name, expires_at) VALUES (?, ?, ?, ?, ?)";

            #[async_trait]
            impl SessionStore for $store {
                async fn insert_session(
                    &self,
                    key: &SessionKey,
                    session: &SessionRecord,
                ) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql(INSERT_SESSION))
                        .bind(key.to_vec())
                        .bind(&session.csrf)
                        .bind(&session.subject)
                        .bind(&session.display_name)
                        .bind(int(session.expires_at))
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn session(
                    &self,
                    key: &SessionKey,
                    now: u64,
                ) -> Result<Option<SessionRecord>, StoreError> {
                    let mut conn = self.connection().await?;
                    let row = sqlx::query(&<$store>::sql(
                        "SELECT csrf, subject, display_name, expires_at FROM sessions \
                         WHERE session_key = ? AND expires_at > ?",
                    ))
                    .bind(key.to_vec())
                    .bind(int(now))
                    .fetch_optional(&mut *conn)
                    .await;
                    conn.settle(row)?.as_ref().map(session_from_row).transpose()
                }

                async fn delete_session(&self, key: &SessionKey) -> Result<bool, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(&<$store>::sql("DELETE FROM parked_requests WHERE session_key = ?"))
                        .bind(key.to_vec())
                        .execute(&mut *tx)
                        .await?;
                    let done = sqlx::query(&<$store>::sql("DELETE FROM sessions WHERE session_key = ?"))
                        .bind(key.to_vec())
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn delete_user_sessions(&self, subject: &str) -> Result<u64, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(&<$store>::sql(
                        "DELETE FROM parked_requests WHERE session_key IN \
                         (SELECT session_key FROM sessions WHERE subject = ?)",
                    ))
                    .bind(subject)
                    .execute(&mut *tx)
                    .await?;
                    let done = sqlx::query(&<$store>::sql("DELETE FROM sessions WHERE subject = ?"))
                        .bind(subject)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(&<$store>::sql("DELETE FROM renewed_sessions WHERE subject = ?"))
                        .bind(subject)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected())
                }

                async fn park_request(
                    &self,
                    request_id: &str,
                    key: &SessionKey,
                    request: &str,
                    expires_at: u64,
                    max_per_session: u32,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    // A browser with many abandoned requests drops its oldest ones.
                    sqlx::query(&<$store>::sql(
                        "DELETE FROM parked_requests WHERE request_id IN \
                         (SELECT request_id FROM parked_requests WHERE session_key = ? \
                          ORDER BY expires_at DESC LIMIT 1000000 OFFSET ?)",
                    ))
                    .bind(key.to_vec())
                    .bind(i64::from(max_per_session.saturating_sub(1)))
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(&<$store>::sql(
                        "INSERT INTO parked_requests (request_id, session_key, request, expires_at) \
                         VALUES (?, ?, ?, ?)",
                    ))
                    .bind(request_id)
                    .bind(key.to_vec())
                    .bind(request)
                    .bind(int(expires_at))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn parked_request(
                    &self,
                    request_id: &str,
                    key: &SessionKey,
                    now: u64,
                ) -> Result<Option<String>, StoreError> {
                    let row = sqlx::query(&<$store>::sql(
                        "SELECT request FROM parked_requests \
                         WHERE request_id = ? AND session_key = ? AND expires_at > ?",
                    ))
                    .bind(request_id)
                    .bind(key.to_vec())
                    .bind(int(now))
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(|r| r.try_get::<String, _>("request")).transpose()?)
                }

                async fn take_request(
                    &self,
                    request_id: &str,
                    key: &SessionKey,
                    now: u64,
                ) -> Result<Option<String>, StoreError> {
                    let row = sqlx::query(&<$store>::sql(
                        "DELETE FROM parked_requests \
                         WHERE request_id = ? AND session_key = ? AND expires_at > ? \
                         RETURNING request",
                    ))
                    .bind(request_id)
                    .bind(key.to_vec())
                    .bind(int(now))
                    .fetch_optional(&self.pool)
                    .await?;
                    Ok(row.map(|r| r.try_get::<String, _>("request")).transpose()?)
                }

                async fn renew_session(
                    &self,
                    old: &SessionKey,
                    new: &SessionKey,
                    session: &SessionRecord,
                    renewal: &Renewal,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    sqlx::query(&<$store>::sql(INSERT_SESSION))
                        .bind(new.to_vec())
                        .bind(&session.csrf)
                        .bind(&session.subject)
                        .bind(&session.display_name)
                        .bind(int(session.expires_at))
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(&<$store>::sql(
                        "UPDATE parked_requests SET session_key = ? WHERE session_key = ?",
                    ))
                    .bind(new.to_vec())
                    .bind(old.to_vec())
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(&<$store>::sql("DELETE FROM sessions WHERE session_key = ?"))
                        .bind(old.to_vec())
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(&<$store>::sql(
                        "INSERT INTO renewed_sessions (old_key, salt, subject, until) VALUES (?, ?, ?, ?) \
                         ON CONFLICT (old_key) DO UPDATE SET salt = excluded.salt, \
                         subject = excluded.subject, until = excluded.until",
                    ))
                    .bind(old.to_vec())
                    .bind(renewal.salt.to_vec())
                    .bind(&renewal.subject)
                    .bind(int(renewal.until))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn renewal(
                    &self,
                    old: &SessionKey,
                    now: u64,
                ) -> Result<Option<Renewal>, StoreError> {
                    let row = sqlx::query(&<$store>::sql(
                        "SELECT salt, subject, until FROM renewed_sessions WHERE old_key = ? AND until > ?",
                    ))
                    .bind(old.to_vec())
                    .bind(int(now))
                    .fetch_optional(&self.pool)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    let salt: Vec<u8> = row.try_get("salt")?;
                    Ok(Some(Renewal {
                        salt: salt
                            .try_into()
                            .map_err(|_| StoreError("a stored renewal is corrupt".into()))?,
                        subject: row.try_get("subject")?,
                        until: unsigned(row.try_get("until")?),
                    }))
                }

                async fn delete_expired_sessions(&self, now: u64) -> Result<u64, StoreError> {
                    let mut tx = self.pool.begin().await?;
                    let mut removed = 0;
                    for statement in [
                        "DELETE FROM parked_requests WHERE expires_at <= ?",
                        "DELETE FROM sessions WHERE expires_at <= ?",
                        "DELETE FROM renewed_sessions WHERE until <= ?",
                    ] {
                        removed += sqlx::query(&<$store>::sql(statement))
                            .bind(int(now))
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                    }
                    tx.commit().await?;
                    Ok(removed)
                }
            }
        }
    };
}

sql_backend!(on_sqlite, SqliteStore, sqlx::sqlite::SqliteRow);
sql_backend!(on_postgres, PostgresStore, sqlx::postgres::PgRow);

/// The sessions of the in-memory store.
#[derive(Default)]
struct SessionsTable {
    sessions: HashMap<SessionKey, SessionRecord>,
    /// By request id: (session, request, expiry).
    parked: HashMap<String, (SessionKey, String, u64)>,
    renewed: HashMap<SessionKey, Renewal>,
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn insert_session(
        &self,
        key: &SessionKey,
        session: &SessionRecord,
    ) -> Result<(), StoreError> {
        self.with(|t: &mut SessionsTable| {
            t.sessions.insert(*key, session.clone());
        })
    }

    async fn session(
        &self,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.with(|t: &mut SessionsTable| {
            t.sessions.get(key).filter(|s| s.expires_at > now).cloned()
        })
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.with(|t: &mut SessionsTable| {
            t.parked.retain(|_, (session, _, _)| session != key);
            t.sessions.remove(key).is_some()
        })
    }

    async fn delete_user_sessions(&self, subject: &str) -> Result<u64, StoreError> {
        self.with(|t: &mut SessionsTable| {
            let keys: Vec<SessionKey> = t
                .sessions
                .iter()
                .filter(|(_, s)| s.subject.as_deref() == Some(subject))
                .map(|(k, _)| *k)
                .collect();
            for key in &keys {
                t.sessions.remove(key);
            }
            t.parked
                .retain(|_, (session, _, _)| !keys.contains(session));
            t.renewed.retain(|_, r| r.subject != subject);
            keys.len() as u64
        })
    }

    async fn park_request(
        &self,
        request_id: &str,
        key: &SessionKey,
        request: &str,
        expires_at: u64,
        max_per_session: u32,
    ) -> Result<(), StoreError> {
        self.with(|t: &mut SessionsTable| {
            let mut mine: Vec<(String, u64)> = t
                .parked
                .iter()
                .filter(|(_, (session, _, _))| session == key)
                .map(|(id, (_, _, at))| (id.clone(), *at))
                .collect();
            mine.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
            for (id, _) in mine.iter().skip(max_per_session.saturating_sub(1) as usize) {
                t.parked.remove(id);
            }
            t.parked.insert(
                request_id.to_string(),
                (*key, request.to_string(), expires_at),
            );
        })
    }

    async fn parked_request(
        &self,
        request_id: &str,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        self.with(|t: &mut SessionsTable| {
            t.parked
                .get(request_id)
                .filter(|(session, _, at)| session == key && *at > now)
                .map(|(_, request, _)| request.clone())
        })
    }

    async fn take_request(
        &self,
        request_id: &str,
        key: &SessionKey,
        now: u64,
    ) -> Result<Option<String>, StoreError> {
        self.with(|t: &mut SessionsTable| {
            match t.parked.get(request_id) {
                Some((session, _, at)) if session == key && *at > now => {}
                _ => return None,
            }
            t.parked.remove(request_id).map(|(_, request, _)| request)
        })
    }

    async fn renew_session(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        session: &SessionRecord,
        renewal: &Renewal,
    ) -> Result<(), StoreError> {
        self.with(|t: &mut SessionsTable| {
            t.sessions.insert(*new, session.clone());
            for (owner, _, _) in t.parked.values_mut() {
                if owner == old {
                    *owner = *new;
                }
            }
            t.sessions.remove(old);
            t.renewed.insert(*old, renewal.clone());
        })
    }

    async fn renewal(&self, old: &SessionKey, now: u64) -> Result<Option<Renewal>, StoreError> {
        self.with(|t: &mut SessionsTable| t.renewed.get(old).filter(|r| r.until > now).cloned())
    }

    async fn delete_expired_sessions(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t: &mut SessionsTable| {
            let before = t.sessions.len() + t.parked.len() + t.renewed.len();
            t.sessions.retain(|_, s| s.expires_at > now);
            t.parked.retain(|_, (_, _, at)| *at > now);
            t.renewed.retain(|_, r| r.until > now);
            (before - t.sessions.len() - t.parked.len() - t.renewed.len()) as u64
        })
    }
}
