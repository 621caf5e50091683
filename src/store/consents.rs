//! The consents table: [`ConsentRecord`] (a user's remembered approval for a client), the
//! [`ConsentStore`] trait `Consents` writes through, the merge rule both implementations share,
//! and the SQLite and in-memory implementations.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::sqlite::{SqliteStore, from_json_list, int, to_json_list, unsigned};
use crate::oauth::scope::ScopeSet;
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use std::collections::HashMap;

/// A user's remembered approval for a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resources: Vec<String>,
    /// The exact redirect URIs the user approved, least recent first (at most
    /// [`MAX_APPROVED_REDIRECT_URIS`]).
    pub redirect_uris: Vec<String>,
    pub expires_at: u64,
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
    let (old_scope, mut resources, mut redirect_uris) = match existing {
        Some(c) if c.expires_at > now => (c.scope, c.resources, c.redirect_uris),
        _ => (ScopeSet::default(), Vec::new(), Vec::new()),
    };
    if !resources.iter().any(|r| r == approval.resource) {
        resources.push(approval.resource.to_string());
    }
    resources.sort();
    redirect_uris.retain(|uri| uri != approval.redirect_uri);
    redirect_uris.push(approval.redirect_uri.to_string());
    let excess = redirect_uris
        .len()
        .saturating_sub(MAX_APPROVED_REDIRECT_URIS);
    redirect_uris.drain(..excess);
    ConsentRecord {
        subject: approval.subject.to_string(),
        client_id: approval.client_id.to_string(),
        scope: old_scope.union(approval.scope),
        resources,
        redirect_uris,
        expires_at,
    }
}

fn consent_from_row(row: &SqliteRow) -> Result<ConsentRecord, StoreError> {
    let scope: String = row.try_get("scope")?;
    Ok(ConsentRecord {
        subject: row.try_get("subject")?,
        client_id: row.try_get("client_id")?,
        scope: ScopeSet::parse(&scope)
            .map_err(|_| StoreError("a stored consent's scope is corrupt".into()))?,
        resources: from_json_list(&row.try_get::<String, _>("resources")?)?,
        redirect_uris: from_json_list(&row.try_get::<String, _>("redirect_uris")?)?,
        expires_at: unsigned(row.try_get("expires_at")?),
    })
}

const CONSENT_COLUMNS: &str = "subject, client_id, scope, resources, redirect_uris, expires_at";

#[async_trait]
impl ConsentStore for SqliteStore {
    async fn consents(&self, now: u64) -> Result<Vec<ConsentRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE expires_at > ?"
        ))
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
        let row = sqlx::query(&format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = ? AND client_id = ? AND expires_at > ?"
        ))
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
        // Read, merge and write in one transaction: a concurrent grant (another replica) is
        // never lost, it either commits first and is merged or makes this one retry.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = ? AND client_id = ?"
        ))
        .bind(approval.subject)
        .bind(approval.client_id)
        .fetch_optional(&mut *tx)
        .await?;
        let existing = row.as_ref().map(consent_from_row).transpose()?;
        let merged = merge_consent(existing, approval, now, expires_at);
        sqlx::query(
            "INSERT INTO consents (subject, client_id, scope, resources, redirect_uris, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (subject, client_id) DO UPDATE SET scope = excluded.scope, \
             resources = excluded.resources, redirect_uris = excluded.redirect_uris, \
             expires_at = excluded.expires_at",
        )
        .bind(approval.subject)
        .bind(approval.client_id)
        .bind(merged.scope.to_string())
        .bind(to_json_list(&merged.resources))
        .bind(to_json_list(&merged.redirect_uris))
        .bind(int(merged.expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(merged)
    }

    async fn delete_consent(&self, subject: &str, client_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM consents WHERE subject = ? AND client_id = ?")
            .bind(subject)
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired_consents(&self, now: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM consents WHERE expires_at <= ?")
            .bind(int(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

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
        let uris = record.unwrap().redirect_uris;
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
        assert_eq!(
            merged.redirect_uris,
            vec!["http://127.0.0.1:1/cb", "http://127.0.0.1:2/cb"]
        );
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
        assert_eq!(fresh.redirect_uris, vec!["http://127.0.0.1:3/cb"]);

        store.pool.close().await;
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(store.consents(350).await.unwrap(), vec![fresh]);
        store.pool.close().await;
    }
}
