//! The changes table: what another process (`mcp-oauth admin`) changed in the store, in order, so
//! that a running authorization server can bring its actors' maps in line within a second. The
//! record type [`Change`], the [`ChangeStore`] trait, and its SQLite and in-memory
//! implementations.
//!
//! The store is the truth: the admin command makes its change in the tables first and records a
//! `Change` after, so a server that is not running sees the change at its next start, and one
//! that is running applies it from here (`actors::store_changes`).

use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, int, write_timer};
use async_trait::async_trait;
use sqlx::Row;

/// One change made to the store by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client was deleted: forget it, with its consents and refresh-token families.
    ClientDeleted { client_id: String },
    /// Grants were revoked: the consents and refresh-token families of a user, of a client, or
    /// of a user for a client (at least one of the two is set).
    GrantsRevoked {
        subject: Option<String>,
        client_id: Option<String>,
    },
    /// The users changed (added, a password set, enabled): reload them.
    UsersChanged,
    /// A user was disabled: reload the users, end the user's sessions and grants.
    UserDisabled { subject: String },
    /// A user's browser sessions were revoked.
    SessionsRevoked { subject: String },
    /// A signing key was added: reload the keys.
    KeysChanged,
    /// An access token was revoked at another server on the same database: list it in this
    /// server's revocation feed too (the `jti` is kept in the `subject` column).
    AccessTokenRevoked { jti: String },
    /// A refresh-token family ended before its time at another server (revoked, reused, its
    /// code replayed): revoke the access tokens this server minted from it (the family id is
    /// kept in the `subject` column).
    FamilyEnded { family_id: String },
}

impl Change {
    fn kind(&self) -> &'static str {
        match self {
            Change::ClientDeleted { .. } => "client_deleted",
            Change::GrantsRevoked { .. } => "grants_revoked",
            Change::UsersChanged => "users_changed",
            Change::UserDisabled { .. } => "user_disabled",
            Change::SessionsRevoked { .. } => "sessions_revoked",
            Change::KeysChanged => "keys_changed",
            Change::AccessTokenRevoked { .. } => "access_token_revoked",
            Change::FamilyEnded { .. } => "family_ended",
        }
    }

    /// The (subject, client_id) columns.
    fn columns(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Change::ClientDeleted { client_id } => (None, Some(client_id)),
            Change::GrantsRevoked { subject, client_id } => {
                (subject.as_deref(), client_id.as_deref())
            }
            Change::UserDisabled { subject } | Change::SessionsRevoked { subject } => {
                (Some(subject), None)
            }
            Change::AccessTokenRevoked { jti } => (Some(jti), None),
            Change::FamilyEnded { family_id } => (Some(family_id), None),
            Change::UsersChanged | Change::KeysChanged => (None, None),
        }
    }

    /// The change a row describes; `None` for a kind this version does not know (a newer
    /// version's), which is skipped.
    fn from_columns(
        kind: &str,
        subject: Option<String>,
        client_id: Option<String>,
    ) -> Option<Self> {
        Some(match kind {
            "client_deleted" => Change::ClientDeleted {
                client_id: client_id?,
            },
            "grants_revoked" if subject.is_some() || client_id.is_some() => {
                Change::GrantsRevoked { subject, client_id }
            }
            "users_changed" => Change::UsersChanged,
            "user_disabled" => Change::UserDisabled { subject: subject? },
            "sessions_revoked" => Change::SessionsRevoked { subject: subject? },
            "keys_changed" => Change::KeysChanged,
            "access_token_revoked" => Change::AccessTokenRevoked { jti: subject? },
            "family_ended" => Change::FamilyEnded {
                family_id: subject?,
            },
            _ => return None,
        })
    }
}

/// How long a recorded change is kept.
pub const CHANGE_RETENTION_SECONDS: u64 = 86_400;

/// The changes another process made, in order.
#[async_trait]
pub trait ChangeStore: Send + Sync {
    /// Records a change; answers its number.
    async fn record_change(&self, change: &Change, now: u64) -> Result<i64, StoreError>;
    /// The number of the last change recorded (0 when there is none): a server starts reading
    /// after it, having loaded everything before.
    async fn last_change(&self) -> Result<i64, StoreError>;
    /// Up to `limit` changes after `after`, in order, with their numbers; `None` for a change of
    /// a kind this version does not know (a newer version's), to be skipped.
    async fn changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Option<Change>)>, StoreError>;
    /// Forgets the changes recorded before `before`.
    async fn delete_changes_before(&self, before: u64) -> Result<u64, StoreError>;
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::changes::*;

            #[async_trait]
            impl ChangeStore for $store {
                async fn record_change(&self, change: &Change, now: u64) -> Result<i64, StoreError> {
                    let _write = write_timer("changes");
                    let (subject, client_id) = change.columns();
                    let row = sqlx::query(&<$store>::sql(
                        "INSERT INTO changes (kind, subject, client_id, at) VALUES (?, ?, ?, ?) RETURNING id",
                    ))
                    .bind(change.kind())
                    .bind(subject)
                    .bind(client_id)
                    .bind(int(now))
                    .fetch_one(&self.pool)
                    .await?;
                    if let Some(announce) = <$store>::ANNOUNCE_CHANGE
                        && let Err(err) = sqlx::query(announce).execute(&self.pool).await
                    {
                        // Recorded all the same: the other servers' polls find it.
                        tracing::warn!(error = %err, "a recorded change was not announced");
                    }
                    Ok(row.try_get("id")?)
                }

                async fn last_change(&self) -> Result<i64, StoreError> {
                    let row = sqlx::query(&<$store>::sql("SELECT COALESCE(MAX(id), 0) AS last FROM changes"))
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(row.try_get("last")?)
                }

                async fn changes_after(
                    &self,
                    after: i64,
                    limit: u32,
                ) -> Result<Vec<(i64, Option<Change>)>, StoreError> {
                    let rows = sqlx::query(&<$store>::sql(
                        "SELECT id, kind, subject, client_id FROM changes WHERE id > ? ORDER BY id LIMIT ?",
                    ))
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                    let mut changes = Vec::with_capacity(rows.len());
                    for row in rows {
                        let id: i64 = row.try_get("id")?;
                        let kind: String = row.try_get("kind")?;
                        let change =
                            Change::from_columns(&kind, row.try_get("subject")?, row.try_get("client_id")?);
                        changes.push((id, change));
                    }
                    Ok(changes)
                }

                async fn delete_changes_before(&self, before: u64) -> Result<u64, StoreError> {
                    let done = sqlx::query(&<$store>::sql("DELETE FROM changes WHERE at < ?"))
                        .bind(int(before))
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

/// The changes table of the in-memory store: only this process writes it (no admin command
/// reaches an in-memory store), kept for the trait's contract.
#[derive(Default)]
struct ChangesTable {
    rows: Vec<(i64, Change, u64)>,
    last: i64,
}

#[async_trait]
impl ChangeStore for MemoryStore {
    async fn record_change(&self, change: &Change, now: u64) -> Result<i64, StoreError> {
        self.with(|t: &mut ChangesTable| {
            t.last += 1;
            t.rows.push((t.last, change.clone(), now));
            t.last
        })
    }

    async fn last_change(&self) -> Result<i64, StoreError> {
        self.with(|t: &mut ChangesTable| t.last)
    }

    async fn changes_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<(i64, Option<Change>)>, StoreError> {
        self.with(|t: &mut ChangesTable| {
            t.rows
                .iter()
                .filter(|(id, _, _)| *id > after)
                .take(limit as usize)
                .map(|(id, change, _)| (*id, Some(change.clone())))
                .collect()
        })
    }

    async fn delete_changes_before(&self, before: u64) -> Result<u64, StoreError> {
        self.with(|t: &mut ChangesTable| {
            let len = t.rows.len();
            t.rows.retain(|(_, _, at)| *at >= before);
            (len - t.rows.len()) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Change> {
        vec![
            Change::ClientDeleted {
                client_id: "c1".into(),
            },
            Change::GrantsRevoked {
                subject: Some("alice".into()),
                client_id: None,
            },
            Change::GrantsRevoked {
                subject: None,
                client_id: Some("c1".into()),
            },
            Change::UsersChanged,
            Change::UserDisabled {
                subject: "bob".into(),
            },
            Change::SessionsRevoked {
                subject: "alice".into(),
            },
            Change::KeysChanged,
        ]
    }

    async fn contract(store: &dyn ChangeStore) {
        assert_eq!(store.last_change().await.unwrap(), 0);
        let mut ids = Vec::new();
        for (i, change) in every_kind().iter().enumerate() {
            ids.push(store.record_change(change, 100 + i as u64).await.unwrap());
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(store.last_change().await.unwrap(), *ids.last().unwrap());
        let all = store.changes_after(0, 100).await.unwrap();
        let read: Vec<Change> = all.iter().filter_map(|(_, c)| c.clone()).collect();
        assert_eq!(
            read,
            every_kind(),
            "each kind reads back as written, in order"
        );
        let after_two = store.changes_after(ids[1], 2).await.unwrap();
        assert_eq!(after_two.len(), 2);
        assert_eq!(after_two[0].0, ids[2]);
        assert_eq!(store.delete_changes_before(103).await.unwrap(), 3);
        let left = store.changes_after(0, 100).await.unwrap();
        assert_eq!(left.first().map(|(id, _)| *id), Some(ids[3]));
        assert_eq!(store.last_change().await.unwrap(), *ids.last().unwrap());
    }

    #[tokio::test]
    async fn changes_read_back_in_order_in_both_stores() {
        contract(&MemoryStore::new()).await;
        let dir = tempfile::tempdir().unwrap();
        contract(&SqliteStore::open(dir.path()).await.unwrap()).await;
    }

    #[tokio::test]
    async fn a_kind_from_a_newer_version_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        sqlx::query("INSERT INTO changes (kind, at) VALUES ('from_the_future', 1)")
            .execute(&store.pool)
            .await
            .unwrap();
        store.record_change(&Change::KeysChanged, 2).await.unwrap();
        let read = store.changes_after(0, 10).await.unwrap();
        assert_eq!(read.len(), 2, "the unknown change is read, to be skipped");
        assert_eq!(read[0].1, None);
        assert_eq!(read[1].1, Some(Change::KeysChanged));
    }
}
