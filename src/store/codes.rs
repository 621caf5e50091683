//! The codes table: [`CodeRecord`] (what an authorization code grants, as stored), the
//! [`CodeStore`] trait, and its implementations. The `AuthorizationCodes` actor uses it only when
//! several servers share the store: a code issued by one server is then redeemed at any of them,
//! and the conditional update of [`CodeStore::take_code`] makes the redemption happen once
//! however many servers try at the same moment.

use super::connections::Settle;
use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, int, unsigned, write_timer};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashMap;

/// What an authorization code grants, as stored. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    pub client_id: String,
    pub subject: String,
    pub redirect_uri: String,
    pub redirect_uri_named: bool,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    pub flow: String,
    pub expires_at: u64,
}

/// What an attempt to redeem a code found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeTake {
    /// The code was live and issued to this client: this attempt consumed it.
    Taken(CodeRecord),
    /// The code was redeemed before, producing the access token `jti`.
    Redeemed { record: CodeRecord, jti: String },
    /// The code is live but was issued to another client: nothing consumed.
    OtherClient,
    /// No such code, or expired.
    Unknown,
}

/// Authorization codes shared by the servers on one store.
#[async_trait]
pub trait CodeStore: Send + Sync {
    async fn insert_code(&self, hash: &[u8; 32], code: &CodeRecord) -> Result<(), StoreError>;
    /// Consumes the code for `client_id` in one conditional update, recording `jti` as what it
    /// produced; or says why not.
    async fn take_code(
        &self,
        hash: &[u8; 32],
        client_id: &str,
        jti: &str,
        now: u64,
    ) -> Result<CodeTake, StoreError>;
    /// Forgets a code (one consumed by a redemption that then failed its checks: no second try,
    /// and nothing to revoke on a replay).
    async fn delete_code(&self, hash: &[u8; 32]) -> Result<(), StoreError>;
    /// Deletes the unredeemed codes of a user, of a client, or of a user for a client.
    async fn withdraw_codes(
        &self,
        subject: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<u64, StoreError>;
    async fn delete_expired_codes(&self, now: u64) -> Result<u64, StoreError>;
}

const CODE_COLUMNS: &str = "client_id, subject, redirect_uri, redirect_uri_named, code_challenge, \
     scope, resource, flow, expires_at, redeemed_jti";

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::codes::*;

            fn code_from_row(row: &$row) -> Result<(CodeRecord, Option<String>), StoreError> {
                let record = CodeRecord {
                    client_id: row.try_get("client_id")?,
                    subject: row.try_get("subject")?,
                    redirect_uri: row.try_get("redirect_uri")?,
                    redirect_uri_named: row.try_get::<i64, _>("redirect_uri_named")? != 0,
                    code_challenge: row.try_get("code_challenge")?,
                    scope: row.try_get("scope")?,
                    resource: row.try_get("resource")?,
                    flow: row.try_get("flow")?,
                    expires_at: unsigned(row.try_get("expires_at")?),
                };
                Ok((record, row.try_get("redeemed_jti")?))
            }

            #[async_trait]
            impl CodeStore for $store {
                async fn insert_code(
                    &self,
                    hash: &[u8; 32],
                    code: &CodeRecord,
                ) -> Result<(), StoreError> {
                    let _write = write_timer("codes");
                    let mut conn = self.connection().await?;
                    let inserted = sqlx::query(&<$store>::sql(&format!(
                        "INSERT INTO codes (code_hash, {CODE_COLUMNS}) \
                         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL {}",
                        <$store>::WITHOUT_FLUSH_WAIT
                    )))
                    .bind(hash.to_vec())
                    .bind(&code.client_id)
                    .bind(&code.subject)
                    .bind(&code.redirect_uri)
                    .bind(i64::from(code.redirect_uri_named))
                    .bind(&code.code_challenge)
                    .bind(&code.scope)
                    .bind(&code.resource)
                    .bind(&code.flow)
                    .bind(int(code.expires_at))
                    .execute(&mut *conn)
                    .await;
                    conn.settle(inserted)?;
                    Ok(())
                }

                async fn take_code(
                    &self,
                    hash: &[u8; 32],
                    client_id: &str,
                    jti: &str,
                    now: u64,
                ) -> Result<CodeTake, StoreError> {
                    let _write = write_timer("codes");
                    let mut conn = self.connection().await?;
                    let took = async {
                        let taken = sqlx::query(&<$store>::sql(&format!(
                            "UPDATE codes SET redeemed_jti = ? WHERE code_hash = ? AND client_id = ? \
                             AND redeemed_jti IS NULL AND expires_at > ? RETURNING {CODE_COLUMNS}"
                        )))
                        .bind(jti)
                        .bind(hash.to_vec())
                        .bind(client_id)
                        .bind(int(now))
                        .fetch_optional(&mut *conn)
                        .await?;
                        if let Some(row) = taken {
                            return Ok(CodeTake::Taken(code_from_row(&row)?.0));
                        }
                        let found = sqlx::query(&<$store>::sql(&format!(
                            "SELECT {CODE_COLUMNS} FROM codes WHERE code_hash = ? AND expires_at > ?"
                        )))
                        .bind(hash.to_vec())
                        .bind(int(now))
                        .fetch_optional(&mut *conn)
                        .await?;
                        let Some(row) = found else {
                            return Ok(CodeTake::Unknown);
                        };
                        Ok(match code_from_row(&row)? {
                            (record, Some(jti)) => CodeTake::Redeemed { record, jti },
                            (_, None) => CodeTake::OtherClient,
                        })
                    }
                    .await;
                    conn.settle(took)
                }

                async fn delete_code(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql("DELETE FROM codes WHERE code_hash = ?"))
                        .bind(hash.to_vec())
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn withdraw_codes(
                    &self,
                    subject: Option<&str>,
                    client_id: Option<&str>,
                ) -> Result<u64, StoreError> {
                    // A missing filter matches every row: `? IS NULL OR column = ?`.
                    let done = sqlx::query(&<$store>::sql(
                        "DELETE FROM codes WHERE redeemed_jti IS NULL \
                         AND (CAST(? AS TEXT) IS NULL OR subject = ?) \
                         AND (CAST(? AS TEXT) IS NULL OR client_id = ?)",
                    ))
                    .bind(subject)
                    .bind(subject)
                    .bind(client_id)
                    .bind(client_id)
                    .execute(&self.pool)
                    .await?;
                    Ok(done.rows_affected())
                }

                async fn delete_expired_codes(&self, now: u64) -> Result<u64, StoreError> {
                    let done = sqlx::query(&<$store>::sql("DELETE FROM codes WHERE expires_at <= ?"))
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

/// The codes of the in-memory store, by digest, each with the `jti` of its redemption.
#[derive(Default)]
struct CodesTable {
    codes: HashMap<[u8; 32], (CodeRecord, Option<String>)>,
}

#[async_trait]
impl CodeStore for MemoryStore {
    async fn insert_code(&self, hash: &[u8; 32], code: &CodeRecord) -> Result<(), StoreError> {
        self.with(|t: &mut CodesTable| {
            if t.codes.contains_key(hash) {
                return Err(StoreError("the code exists".into()));
            }
            t.codes.insert(*hash, (code.clone(), None));
            Ok(())
        })?
    }

    async fn take_code(
        &self,
        hash: &[u8; 32],
        client_id: &str,
        jti: &str,
        now: u64,
    ) -> Result<CodeTake, StoreError> {
        self.with(|t: &mut CodesTable| match t.codes.get_mut(hash) {
            Some((record, _)) if record.expires_at <= now => CodeTake::Unknown,
            Some((record, Some(jti))) => CodeTake::Redeemed {
                record: record.clone(),
                jti: jti.clone(),
            },
            Some((record, redeemed)) if record.client_id == client_id => {
                *redeemed = Some(jti.to_string());
                CodeTake::Taken(record.clone())
            }
            Some(_) => CodeTake::OtherClient,
            None => CodeTake::Unknown,
        })
    }

    async fn delete_code(&self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.with(|t: &mut CodesTable| {
            t.codes.remove(hash);
        })
    }

    async fn withdraw_codes(
        &self,
        subject: Option<&str>,
        client_id: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.with(|t: &mut CodesTable| {
            let before = t.codes.len();
            t.codes.retain(|_, (record, redeemed)| {
                redeemed.is_some()
                    || !(subject.is_none_or(|s| record.subject == s)
                        && client_id.is_none_or(|c| record.client_id == c))
            });
            (before - t.codes.len()) as u64
        })
    }

    async fn delete_expired_codes(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t: &mut CodesTable| {
            let before = t.codes.len();
            t.codes.retain(|_, (record, _)| record.expires_at > now);
            (before - t.codes.len()) as u64
        })
    }
}
