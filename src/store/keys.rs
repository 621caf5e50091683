//! The signing-keys table: [`KeyRecord`] (a key's encrypted private half and its lifecycle), the
//! [`KeyStore`] trait `SigningKeys` writes through, and its SQLite and in-memory implementations.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, int, unsigned};
use async_trait::async_trait;
use sqlx::Row;
use std::collections::BTreeMap;

/// A signing key: its private half encrypted (see `actors::signing_keys`), and its lifecycle.
/// Published from `created_at`; signs from `activates_at` until `retired_at`; removed from the
/// JWKS (and the store) at `removes_at`, when every token it signed has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub kid: String,
    pub encrypted_key: Vec<u8>,
    pub created_at: u64,
    pub activates_at: u64,
    pub retired_at: Option<u64>,
    pub removes_at: Option<u64>,
}

/// Signing keys (`SigningKeys`).
#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Adds a key; fails if one with its id exists.
    async fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Records a key's lifecycle times (activation, retirement, removal).
    async fn update_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError>;
    /// Adds a key only while no stored key makes it redundant, in one step that several servers
    /// on one database race safely (on PostgreSQL under an advisory lock): true if it was added;
    /// false if another server got there first (read the keys again).
    async fn insert_signing_key_unless_made(
        &self,
        key: &KeyRecord,
        made: KeyMade,
    ) -> Result<bool, StoreError>;
}

/// What makes a new key redundant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMade {
    /// The first key: any key that is not retired.
    First,
    /// The next key: any key waiting to sign, one that activates after this Unix time.
    NextAfter(u64),
}

impl KeyMade {
    /// Whether `stored` makes the new key redundant.
    fn by(self, stored: &KeyRecord) -> bool {
        match self {
            KeyMade::First => stored.retired_at.is_none(),
            KeyMade::NextAfter(now) => stored.activates_at > now,
        }
    }
}

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::keys::*;

            fn key_from_row(row: &$row) -> Result<KeyRecord, StoreError> {
                Ok(KeyRecord {
                    kid: row.try_get("kid")?,
                    encrypted_key: row.try_get("encrypted_key")?,
                    created_at: unsigned(row.try_get("created_at")?),
                    activates_at: unsigned(row.try_get("activates_at")?),
                    retired_at: row.try_get::<Option<i64>, _>("retired_at")?.map(unsigned),
                    removes_at: row.try_get::<Option<i64>, _>("removes_at")?.map(unsigned),
                })
            }

            #[async_trait]
            impl KeyStore for $store {
                async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
                    let rows = sqlx::query(&<$store>::sql(
                        "SELECT kid, encrypted_key, created_at, activates_at, retired_at, removes_at \
                         FROM signing_keys ORDER BY activates_at, created_at",
                    ))
                    .fetch_all(&self.pool)
                    .await?;
                    rows.iter().map(key_from_row).collect()
                }

                async fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql(
                        "INSERT INTO signing_keys (kid, encrypted_key, created_at, activates_at, retired_at, removes_at) \
                         VALUES (?, ?, ?, ?, ?, ?)",
                    ))
                    .bind(&key.kid)
                    .bind(&key.encrypted_key)
                    .bind(int(key.created_at))
                    .bind(int(key.activates_at))
                    .bind(key.retired_at.map(int))
                    .bind(key.removes_at.map(int))
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn update_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql(
                        "UPDATE signing_keys SET activates_at = ?, retired_at = ?, removes_at = ? WHERE kid = ?",
                    ))
                    .bind(int(key.activates_at))
                    .bind(key.retired_at.map(int))
                    .bind(key.removes_at.map(int))
                    .bind(&key.kid)
                    .execute(&self.pool)
                    .await?;
                    Ok(())
                }

                async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql("DELETE FROM signing_keys WHERE kid = ?"))
                        .bind(kid)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn insert_signing_key_unless_made(
                    &self,
                    key: &KeyRecord,
                    made: KeyMade,
                ) -> Result<bool, StoreError> {
                    let (redundant, after) = match made {
                        KeyMade::First => ("retired_at IS NULL", None),
                        KeyMade::NextAfter(now) => ("activates_at > ?", Some(int(now))),
                    };
                    let mut tx = self.pool.begin().await?;
                    // Two servers' checks would both pass before either inserts: one at a time.
                    if let Some(lock) = <$store>::ROW_LOCK {
                        sqlx::query(lock).bind("signing_keys").execute(&mut *tx).await?;
                    }
                    let text = format!(
                        "INSERT INTO signing_keys (kid, encrypted_key, created_at, activates_at, retired_at, removes_at) \
                         SELECT ?, ?, ?, ?, ?, ? \
                         WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE {redundant})"
                    );
                    let statement = <$store>::sql(&text);
                    let mut insert = sqlx::query(&statement)
                    .bind(&key.kid)
                    .bind(&key.encrypted_key)
                    .bind(int(key.created_at))
                    .bind(int(key.activates_at))
                    .bind(key.retired_at.map(int))
                    .bind(key.removes_at.map(int));
                    if let Some(after) = after {
                        insert = insert.bind(after);
                    }
                    let added = insert.execute(&mut *tx).await?.rows_affected() == 1;
                    tx.commit().await?;
                    Ok(added)
                }
            }
        }
    };
}

sql_backend!(on_sqlite, SqliteStore, sqlx::sqlite::SqliteRow);
sql_backend!(on_postgres, PostgresStore, sqlx::postgres::PgRow);

/// The signing-keys table of the in-memory store, by key id.
#[derive(Default)]
struct KeysTable {
    keys: BTreeMap<String, KeyRecord>,
}

#[async_trait]
impl KeyStore for MemoryStore {
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.with(|t: &mut KeysTable| {
            let mut keys: Vec<KeyRecord> = t.keys.values().cloned().collect();
            keys.sort_by_key(|k| (k.activates_at, k.created_at));
            keys
        })
    }

    async fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with(|t: &mut KeysTable| {
            if t.keys.contains_key(&key.kid) {
                return Err(StoreError("the key id exists".into()));
            }
            t.keys.insert(key.kid.clone(), key.clone());
            Ok(())
        })?
    }

    async fn update_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.with(|t: &mut KeysTable| {
            if let Some(stored) = t.keys.get_mut(&key.kid) {
                stored.activates_at = key.activates_at;
                stored.retired_at = key.retired_at;
                stored.removes_at = key.removes_at;
            }
        })
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        self.with(|t: &mut KeysTable| {
            t.keys.remove(kid);
        })
    }

    async fn insert_signing_key_unless_made(
        &self,
        key: &KeyRecord,
        made: KeyMade,
    ) -> Result<bool, StoreError> {
        self.with(|t: &mut KeysTable| {
            if t.keys.values().any(|stored| made.by(stored)) || t.keys.contains_key(&key.kid) {
                return false;
            }
            t.keys.insert(key.kid.clone(), key.clone());
            true
        })
    }
}
