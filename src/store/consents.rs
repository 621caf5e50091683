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
    pub expires_at: u64,
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
        subject: &str,
        client_id: &str,
        scope: &ScopeSet,
        resource: &str,
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
    subject: &str,
    client_id: &str,
    scope: &ScopeSet,
    resource: &str,
    now: u64,
    expires_at: u64,
) -> ConsentRecord {
    let (old_scope, mut resources) = match existing {
        Some(c) if c.expires_at > now => (c.scope, c.resources),
        _ => (ScopeSet::default(), Vec::new()),
    };
    if !resources.iter().any(|r| r == resource) {
        resources.push(resource.to_string());
    }
    resources.sort();
    ConsentRecord {
        subject: subject.to_string(),
        client_id: client_id.to_string(),
        scope: old_scope.union(scope),
        resources,
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
        expires_at: unsigned(row.try_get("expires_at")?),
    })
}

const CONSENT_COLUMNS: &str = "subject, client_id, scope, resources, expires_at";

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
        subject: &str,
        client_id: &str,
        scope: &ScopeSet,
        resource: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<ConsentRecord, StoreError> {
        // Read, merge and write in one transaction: a concurrent grant (another replica) is
        // never lost, it either commits first and is merged or makes this one retry.
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE subject = ? AND client_id = ?"
        ))
        .bind(subject)
        .bind(client_id)
        .fetch_optional(&mut *tx)
        .await?;
        let existing = row.as_ref().map(consent_from_row).transpose()?;
        let merged = merge_consent(
            existing, subject, client_id, scope, resource, now, expires_at,
        );
        sqlx::query(
            "INSERT INTO consents (subject, client_id, scope, resources, expires_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (subject, client_id) DO UPDATE SET scope = excluded.scope, \
             resources = excluded.resources, expires_at = excluded.expires_at",
        )
        .bind(subject)
        .bind(client_id)
        .bind(merged.scope.to_string())
        .bind(to_json_list(&merged.resources))
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
        subject: &str,
        client_id: &str,
        scope: &ScopeSet,
        resource: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<ConsentRecord, StoreError> {
        self.with(|t: &mut ConsentsTable| {
            let key = (subject.to_string(), client_id.to_string());
            let existing = t.consents.remove(&key);
            let merged = merge_consent(
                existing, subject, client_id, scope, resource, now, expires_at,
            );
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

    /// Approvals merge in one transaction, an expired consent starts afresh, and consents read
    /// back the same after the store is opened again.
    #[tokio::test]
    async fn sqlite_grants_merge_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let read = ScopeSet::parse("mcp.read").unwrap();
        let write = ScopeSet::parse("mcp.write").unwrap();
        store
            .grant_consent("alice", "a", &read, "r1", 100, 200)
            .await
            .unwrap();
        let merged = store
            .grant_consent("alice", "a", &write, "r2", 150, 250)
            .await
            .unwrap();
        assert_eq!(merged.scope.to_string(), "mcp.read mcp.write");
        assert_eq!(merged.resources, vec!["r1", "r2"]);
        let fresh = store
            .grant_consent("alice", "a", &write, "r3", 300, 400)
            .await
            .unwrap();
        assert_eq!(
            fresh.scope.to_string(),
            "mcp.write",
            "an expired consent starts afresh"
        );
        assert_eq!(fresh.resources, vec!["r3"]);

        store.pool.close().await;
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(store.consents(350).await.unwrap(), vec![fresh]);
        store.pool.close().await;
    }
}
