//! The consents table: [`ConsentRecord`] (a user's remembered approval for a client), the
//! [`ConsentStore`] trait `Consents` writes through, the merge rule both implementations share,
//! and the SQLite and in-memory implementations.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, from_json_list, int, to_json_list, unsigned, write_timer};
use crate::oauth::scope::ScopeSet;
use async_trait::async_trait;
use sqlx::Row;
use std::collections::HashMap;

/// A user's remembered approval for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resources: Vec<String>,
    /// What was approved for each exact redirect URI, least recent first (at most
    /// [`MAX_APPROVED_REDIRECT_URIS`]); `scope` and `resources` above are their union.
    pub approvals: Vec<RedirectApproval>,
    pub expires_at: u64,
}

/// What the user approved for one exact redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedirectApproval {
    pub redirect_uri: String,
    /// Space-separated, as in a `scope` parameter.
    pub scope: String,
    pub resources: Vec<String>,
}

impl RedirectApproval {
    /// Does this approval cover `scope` for `resource`?
    pub fn covers(&self, scope: &ScopeSet, resource: &str) -> bool {
        self.resources.iter().any(|r| r == resource)
            && ScopeSet::parse(&self.scope).is_ok_and(|approved| scope.is_subset(&approved))
    }
}

/// Most redirect URIs one consent remembers; approving another forgets the least recent.
pub const MAX_APPROVED_REDIRECT_URIS: usize = 16;

/// What the user approved on one consent page.
#[derive(Debug, Clone, Copy)]
pub struct Approval<'a> {
    pub subject: &'a str,
    pub client_id: &'a str,
    pub scope: &'a ScopeSet,
    pub resource: &'a str,
    pub redirect_uri: &'a str,
}

/// Remembered consents (`Consents`).
#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Every consent still valid at `now`, for the actor's start.
    async fn consents(&self, now: u64) -> Result<Vec<ConsentRecord>, StoreError>;
    /// A user's consents still valid at `now` (the account page, on a store other servers write
    /// too).
    async fn consents_of(&self, subject: &str, now: u64) -> Result<Vec<ConsentRecord>, StoreError>;
    /// One consent still valid at `now`, for a check that missed the actor's map.
    async fn consent(
        &self,
        subject: &str,
        client_id: &str,
        now: u64,
    ) -> Result<Option<ConsentRecord>, StoreError>;
    /// Merges an approval into the stored consent (an expired one starts afresh) atomically, and
    /// returns the merged record.
    async fn grant_consent(
        &self,
        approval: Approval<'_>,
        now: u64,
        expires_at: u64,
    ) -> Result<ConsentRecord, StoreError>;
    /// Forgets a consent; true if there was one.
    async fn delete_consent(&self, subject: &str, client_id: &str) -> Result<bool, StoreError>;
    async fn delete_expired_consents(&self, now: u64) -> Result<u64, StoreError>;
}

/// Merges an approval into an existing consent (the rule both implementations share).
fn merge_consent(
    existing: Option<ConsentRecord>,
    approval: Approval<'_>,
    now: u64,
    expires_at: u64,
) -> ConsentRecord {
    let mut approvals = match existing {
        Some(c) if c.expires_at > now => c.approvals,
        _ => Vec::new(),
    };
    // The redirect URI's own approval grows; it becomes the most recent.
    let mut this = match approvals
        .iter()
        .position(|a| a.redirect_uri == approval.redirect_uri)
    {
        Some(at) => approvals.remove(at),
        None => RedirectApproval {
            redirect_uri: approval.redirect_uri.to_string(),
            scope: String::new(),
            resources: Vec::new(),
        },
    };
    let scope = ScopeSet::parse(&this.scope).unwrap_or_default();
    this.scope = scope.union(approval.scope).to_string();
    if !this.resources.iter().any(|r| r == approval.resource) {
        this.resources.push(approval.resource.to_string());
        this.resources.sort();
    }
    approvals.push(this);
    let excess = approvals.len().saturating_sub(MAX_APPROVED_REDIRECT_URIS);
    approvals.drain(..excess);
    let mut scope = ScopeSet::default();
    let mut resources: Vec<String> = Vec::new();
    for a in &approvals {
        scope = scope.union(&ScopeSet::parse(&a.scope).unwrap_or_default());
        resources.extend(a.resources.iter().cloned());
    }
    resources.sort();
    resources.dedup();
    ConsentRecord {
        subject: approval.subject.to_string(),
        client_id: approval.client_id.to_string(),
        scope,
        resources,
        approvals,
        expires_at,
    }
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::consents::*;

            fn consent_from_row(row: &$row) -> Result<ConsentRecord, StoreError> {
                let scope: String = row.try_get("scope")?;
                Ok(ConsentRecord {
                    subject: row.try_get("subject")?,
                    client_id: row.try_get("client_id")?,
                    scope: ScopeSet::parse(&scope)
                        .map_err(|_| StoreError("a stored consent's scope is corrupt".into()))?,
                    resources: from_json_list(&row.try_get::<String, _>("resources")?)?,
                    approvals: serde_json::from_str(&row.try_get::<String, _>("approvals")?)
                        .map_err(|e| StoreError(format!("a stored consent's approvals are corrupt: {e}")))?,
                    expires_at: unsigned(row.try_get("expires_at")?),
                })
            }

            const CONSENT_COLUMNS: &str = "subject, client_id, scope, resources, approvals, expires_at";

            #[async_trait]
            impl ConsentStore for $store {
                async fn consents(&self, now: u64) -> Result<Vec<ConsentRecord>, StoreError> {
                    let rows = sqlx::query(&<$store>::sql(&format!(
                        "SELECT {CONSENT_COLUMNS} FROM consents WHERE expires_at > ?"
                    )))
                    .bind(int(now))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(consent_from_row).collect()
                }

                async fn consents_of(
                    &self,
                    subject: &str,
                    now: u64,
                ) -> Result<Vec<ConsentRecord>, StoreError> {
                    let rows = sqlx::query(&<$store>::sql(&format!(
                        "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = ? AND expires_at > ?"
                    )))
                    .bind(subject)
                    .bind(int(now))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(consent_from_row).collect()
                }

                async fn consent(
                    &self,
                    subject: &str,
                    client_id: &str,
                    now: u64,
                ) -> Result<Option<ConsentRecord>, StoreError> {
                    let row = sqlx::query(&<$store>::sql(&format!(
                        "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = ? AND client_id = ? AND expires_at > ?"
                    )))
                    .bind(subject)
                    .bind(client_id)
                    .bind(int(now))
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(consent_from_row).transpose()
                }

                async fn grant_consent(
                    &self,
                    approval: Approval<'_>,
                    now: u64,
                    expires_at: u64,
                ) -> Result<ConsentRecord, StoreError> {
                    // Read, merge and write in one transaction, one grant of a (user, client) at a
                    // time: a concurrent grant at another server commits first and is merged, even
                    // when there was no row yet to lock (PostgreSQL: an advisory lock on the pair).
                    let _write = write_timer("consents");
                    let mut tx = self.pool.begin().await?;
                    if let Some(lock) = <$store>::ROW_LOCK {
                        let pair = format!("consents\n{}\n{}", approval.subject, approval.client_id);
                        sqlx::query(lock).bind(pair).execute(&mut *tx).await?;
                    }
                    let row = sqlx::query(&<$store>::sql(&format!(
                        "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = ? AND client_id = ?"
                    )))
                    .bind(approval.subject)
                    .bind(approval.client_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let existing = row.as_ref().map(consent_from_row).transpose()?;
                    let merged = merge_consent(existing, approval, now, expires_at);
                    sqlx::query(&<$store>::sql(
                        "INSERT INTO consents (subject, client_id, scope, resources, approvals, expires_at) \
                         VALUES (?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (subject, client_id) DO UPDATE SET scope = excluded.scope, \
                         resources = excluded.resources, approvals = excluded.approvals, \
                         expires_at = excluded.expires_at",
                    ))
                    .bind(approval.subject)
                    .bind(approval.client_id)
                    .bind(merged.scope.to_string())
                    .bind(to_json_list(&merged.resources))
                    .bind(serde_json::to_string(&merged.approvals).unwrap_or_else(|_| "[]".into()))
                    .bind(int(merged.expires_at))
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    Ok(merged)
                }

                async fn delete_consent(&self, subject: &str, client_id: &str) -> Result<bool, StoreError> {
                    let done = sqlx::query(&<$store>::sql("DELETE FROM consents WHERE subject = ? AND client_id = ?"))
                        .bind(subject)
                        .bind(client_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn delete_expired_consents(&self, now: u64) -> Result<u64, StoreError> {
                    let done = sqlx::query(&<$store>::sql("DELETE FROM consents WHERE expires_at <= ?"))
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

/// The consents table of the in-memory store, by (subject, client id).
#[derive(Default)]
struct ConsentsTable {
    consents: HashMap<(String, String), ConsentRecord>,
}

#[async_trait]
impl ConsentStore for MemoryStore {
    async fn consents(&self, now: u64) -> Result<Vec<ConsentRecord>, StoreError> {
        self.with(|t: &mut ConsentsTable| {
            t.consents
                .values()
                .filter(|c| c.expires_at > now)
                .cloned()
                .collect()
        })
    }

    async fn consents_of(&self, subject: &str, now: u64) -> Result<Vec<ConsentRecord>, StoreError> {
        self.with(|t: &mut ConsentsTable| {
            t.consents
                .values()
                .filter(|c| c.subject == subject && c.expires_at > now)
                .cloned()
                .collect()
        })
    }

    async fn consent(
        &self,
        subject: &str,
        client_id: &str,
        now: u64,
    ) -> Result<Option<ConsentRecord>, StoreError> {
        self.with(|t: &mut ConsentsTable| {
            t.consents
                .get(&(subject.to_string(), client_id.to_string()))
                .filter(|c| c.expires_at > now)
                .cloned()
        })
    }

    async fn grant_consent(
        &self,
        approval: Approval<'_>,
        now: u64,
        expires_at: u64,
    ) -> Result<ConsentRecord, StoreError> {
        self.with(|t: &mut ConsentsTable| {
            let key = (approval.subject.to_string(), approval.client_id.to_string());
            let existing = t.consents.remove(&key);
            let merged = merge_consent(existing, approval, now, expires_at);
            t.consents.insert(key, merged.clone());
            merged
        })
    }

    async fn delete_consent(&self, subject: &str, client_id: &str) -> Result<bool, StoreError> {
        self.with(|t: &mut ConsentsTable| {
            t.consents
                .remove(&(subject.to_string(), client_id.to_string()))
                .is_some()
        })
    }

    async fn delete_expired_consents(&self, now: u64) -> Result<u64, StoreError> {
        self.with(|t: &mut ConsentsTable| {
            let before = t.consents.len();
            t.consents.retain(|_, c| c.expires_at > now);
            (before - t.consents.len()) as u64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A consent remembers the most recent redirect URIs, each once.
    #[test]
    fn merging_keeps_the_most_recent_redirect_uris_once_each() {
        let scope = ScopeSet::parse("mcp.read").unwrap();
        let mut record = None;
        for port in (0..20).chain([3]) {
            let uri = format!("http://127.0.0.1:{port}/cb");
            let approval = Approval {
                subject: "alice",
                client_id: "a",
                scope: &scope,
                resource: "r",
                redirect_uri: &uri,
            };
            record = Some(merge_consent(record, approval, 0, 10));
        }
        let uris: Vec<String> = record
            .unwrap()
            .approvals
            .into_iter()
            .map(|a| a.redirect_uri)
            .collect();
        assert_eq!(uris.len(), MAX_APPROVED_REDIRECT_URIS);
        assert_eq!(uris.last().unwrap(), "http://127.0.0.1:3/cb");
        assert_eq!(
            uris[0], "http://127.0.0.1:5/cb",
            "the least recent are forgotten"
        );
        assert_eq!(uris.iter().filter(|u| u.ends_with(":3/cb")).count(), 1);
    }

    /// Approvals merge in one transaction, an expired consent starts afresh, and consents read
    /// back the same after the store is opened again.
    #[tokio::test]
    async fn sqlite_grants_merge_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let read = ScopeSet::parse("mcp.read").unwrap();
        let write = ScopeSet::parse("mcp.write").unwrap();
        let approval = |scope, resource, redirect_uri| Approval {
            subject: "alice",
            client_id: "a",
            scope,
            resource,
            redirect_uri,
        };
        store
            .grant_consent(approval(&read, "r1", "http://127.0.0.1:1/cb"), 100, 200)
            .await
            .unwrap();
        let merged = store
            .grant_consent(approval(&write, "r2", "http://127.0.0.1:2/cb"), 150, 250)
            .await
            .unwrap();
        assert_eq!(merged.scope.to_string(), "mcp.read mcp.write");
        assert_eq!(merged.resources, vec!["r1", "r2"]);
        // Each redirect URI keeps what was approved for it; the record has their union.
        let approved = |uri: &str| {
            merged
                .approvals
                .iter()
                .find(|a| a.redirect_uri == uri)
                .unwrap()
                .clone()
        };
        assert!(approved("http://127.0.0.1:1/cb").covers(&read, "r1"));
        assert!(!approved("http://127.0.0.1:1/cb").covers(&write, "r1"));
        assert!(!approved("http://127.0.0.1:1/cb").covers(&read, "r2"));
        assert!(approved("http://127.0.0.1:2/cb").covers(&write, "r2"));
        assert!(!approved("http://127.0.0.1:2/cb").covers(&read, "r2"));
        let fresh = store
            .grant_consent(approval(&write, "r3", "http://127.0.0.1:3/cb"), 300, 400)
            .await
            .unwrap();
        assert_eq!(
            fresh.scope.to_string(),
            "mcp.write",
            "an expired consent starts afresh"
        );
        assert_eq!(fresh.resources, vec!["r3"]);
        assert_eq!(fresh.approvals.len(), 1);
        assert_eq!(fresh.approvals[0].redirect_uri, "http://127.0.0.1:3/cb");

        store.pool.close().await;
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(store.consents(350).await.unwrap(), vec![fresh]);
        store.pool.close().await;
    }
}
