//! The clients table: [`ClientRecord`] (a registered client and whether it has completed a flow),
//! the [`ClientMap`] that holds records by id, the [`ClientStore`] trait `ClientRegistry` writes
//! through, and its SQLite and in-memory implementations. Configured clients are never stored.

use super::connections::Settle;
use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{
    SqliteStore, chunks, from_json_list, insert_rows, int, rows_per_insert, to_json_list, unsigned,
    write_timer,
};
use crate::oauth::client::{
    ApplicationType, Client, ClientKind, GrantTypes, RESPONSE_TYPES, SecretHash,
    TokenEndpointAuthMethod, boxed_strs,
};
use async_trait::async_trait;
use sqlx::Row;
use std::sync::Arc;

/// A registered client and whether it has completed a flow (used clients are never reaped). The
/// client is shared with the registry: the in-memory store keeps no copy of its own.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub client: Arc<Client>,
    pub used: bool,
}

/// Clients by id, each held once. The id is read from the client itself, so unlike a `HashMap`
/// no key is kept beside the record: a slot is the `Arc` and the `used` flag, 16 bytes. The
/// registry and the in-memory store each keep one; both may hold `--max-clients` records.
#[derive(Default)]
pub struct ClientMap {
    table: hashbrown::HashTable<ClientRecord>,
    hasher: std::hash::RandomState,
}

impl ClientMap {
    fn hash(&self, client_id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(client_id)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn get(&self, client_id: &str) -> Option<&ClientRecord> {
        self.table
            .find(self.hash(client_id), |r| &*r.client.client_id == client_id)
    }

    pub fn get_mut(&mut self, client_id: &str) -> Option<&mut ClientRecord> {
        let hash = self.hash(client_id);
        self.table
            .find_mut(hash, |r| &*r.client.client_id == client_id)
    }

    /// Inserts the record, replacing one with the same client id.
    pub fn insert(&mut self, record: ClientRecord) {
        use std::hash::BuildHasher;
        let hash = self.hash(&record.client.client_id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |r| r.client.client_id == record.client.client_id,
            |r| hasher.hash_one(&*r.client.client_id),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut slot) => *slot.get_mut() = record,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(record);
            }
        }
    }

    pub fn remove(&mut self, client_id: &str) -> Option<ClientRecord> {
        let hash = self.hash(client_id);
        self.table
            .find_entry(hash, |r| &*r.client.client_id == client_id)
            .ok()
            .map(|slot| slot.remove().0)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ClientRecord> {
        self.table.iter()
    }
}

/// Registered clients (`ClientRegistry`).
#[async_trait]
pub trait ClientStore: Send + Sync {
    /// Every client, for the registry's start.
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// One client, for a lookup that missed the registry's map.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    async fn insert_client(&self, record: &ClientRecord) -> Result<(), StoreError>;
    /// Inserts these clients in one transaction: all of them, or none (group commit).
    async fn insert_clients(&self, records: &[ClientRecord]) -> Result<(), StoreError>;
    async fn mark_client_used(&self, client_id: &str) -> Result<(), StoreError>;
    /// Deletes the client only if it was never used, in one statement; true if it was deleted.
    async fn delete_unused_client(&self, client_id: &str) -> Result<bool, StoreError>;
    /// Deletes a client, used or not (an operator's decision); true if it existed.
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;
    /// How many clients are stored (the registry's bound).
    async fn count_clients(&self) -> Result<u64, StoreError>;
    /// Deletes up to `REAP_BATCH` (1,000) never-used clients issued at or before `issued_by`
    /// (Unix seconds), each in the same conditional way as [`Self::delete_unused_client`];
    /// answers their ids.
    async fn reap_unused_clients(&self, issued_by: u64) -> Result<Vec<String>, StoreError>;
    /// When the oldest never-used client was issued, if there is one: the registry's next
    /// reaping of the store.
    async fn oldest_unused_client(&self) -> Result<Option<u64>, StoreError>;
}

/// Most clients one [`ClientStore::reap_unused_clients`] deletes.
pub const REAP_BATCH: usize = 1000;

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::clients::*;

            /// The clients' rows, in as few statements as their number allows.
            async fn insert_rows_of(
                conn: &mut <<$row as sqlx::Row>::Database as sqlx::Database>::Connection,
                records: &[ClientRecord],
            ) -> Result<(), StoreError> {
                for now in chunks(records) {
                    let sql = <$store>::sql(&insert_rows(&format!("clients ({CLIENT_COLUMNS})"), 13, now.len()))
                        .into_owned();
                    let mut query = sqlx::query(&sql);
                    for record in now {
                        let c = &record.client;
                        query = query
                            .bind(&*c.client_id)
                            .bind(match c.secret.as_deref() {
                                Some(SecretHash::Sha256(digest)) => Some(digest.to_vec()),
                                // Configured clients are never stored; the clients file keeps their hashes.
                                Some(SecretHash::Argon2(_) | SecretHash::PublicKeys(_)) | None => None,
                            })
                            .bind(c.client_name.as_deref())
                            .bind(to_json_list(&c.redirect_uris))
                            .bind(to_json_list(&c.grant_types.names()))
                            .bind(to_json_list(if c.grant_types.authorization_code() {
                                &RESPONSE_TYPES[..]
                            } else {
                                &[]
                            }))
                            .bind(c.token_endpoint_auth_method.as_str())
                            .bind(c.scope.as_deref())
                            .bind(c.client_uri.as_deref())
                            .bind(int(c.issued_at))
                            .bind(i64::from(record.used))
                            .bind(c.application_type.as_str())
                            .bind(c.public_keys());
                    }
                    query.execute(&mut *conn).await?;
                }
                Ok(())
            }

            fn client_from_row(row: &$row) -> Result<ClientRecord, StoreError> {
                let secret: Option<Vec<u8>> = row.try_get("secret_sha256")?;
                let jwks: Option<String> = row.try_get("jwks")?;
                let secret = match (secret, jwks) {
                    (Some(bytes), _) => Some(Box::new(SecretHash::Sha256(
                        <[u8; 32]>::try_from(bytes.as_slice())
                            .map_err(|_| StoreError("a stored client secret digest is corrupt".into()))?,
                    ))),
                    (None, Some(jwks)) => Some(Box::new(SecretHash::PublicKeys(jwks.into_boxed_str()))),
                    (None, None) => None,
                };
                let method: String = row.try_get("token_endpoint_auth_method")?;
                let application_type: String = row.try_get("application_type")?;
                let grant_types = from_json_list(&row.try_get::<String, _>("grant_types")?)?;
                let client = Client {
                    client_id: row.try_get::<String, _>("client_id")?.into(),
                    secret,
                    application_type: ApplicationType::parse(&application_type)
                        .ok_or_else(|| StoreError("a stored client's application type is unknown".into()))?,
                    kind: ClientKind::Registered,
                    client_name: row
                        .try_get::<Option<String>, _>("client_name")?
                        .map(String::into_boxed_str),
                    redirect_uris: boxed_strs(from_json_list(&row.try_get::<String, _>("redirect_uris")?)?),
                    grant_types: GrantTypes::parse(&grant_types)
                        .ok_or_else(|| StoreError("a stored client's grant types are unknown".into()))?,
                    token_endpoint_auth_method: TokenEndpointAuthMethod::parse(&method)
                        .ok_or_else(|| StoreError("a stored client's auth method is unknown".into()))?,
                    scope: row
                        .try_get::<Option<String>, _>("scope")?
                        .map(String::into_boxed_str),
                    client_uri: row
                        .try_get::<Option<String>, _>("client_uri")?
                        .map(String::into_boxed_str),
                    issued_at: unsigned(row.try_get("issued_at")?),
                };
                Ok(ClientRecord {
                    client: Arc::new(client),
                    used: row.try_get::<i64, _>("used")? != 0,
                })
            }

            const CLIENT_COLUMNS: &str = "client_id, secret_sha256, client_name, redirect_uris, grant_types, \
                 response_types, token_endpoint_auth_method, scope, client_uri, issued_at, used, \
                 application_type, jwks";

            #[async_trait]
            impl ClientStore for $store {
                async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
                    let rows = sqlx::query(&<$store>::sql(&format!("SELECT {CLIENT_COLUMNS} FROM clients")))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.iter().map(client_from_row).collect()
                }

                async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
                    let row = sqlx::query(&<$store>::sql(&format!(
                        "SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?"
                    )))
                    .bind(client_id)
                    .fetch_optional(&self.pool)
                    .await?;
                    row.as_ref().map(client_from_row).transpose()
                }

                async fn insert_client(&self, record: &ClientRecord) -> Result<(), StoreError> {
                    self.insert_clients(std::slice::from_ref(record)).await
                }

                async fn insert_clients(&self, records: &[ClientRecord]) -> Result<(), StoreError> {
                    let _write = write_timer("clients");
                    let mut conn = self.connection().await?;
                    // Rows that one statement writes need no transaction around them: a statement
                    // is atomic, and this saves two round trips (its begin and its commit).
                    if rows_per_insert(records.len()) == records.len() {
                        let written = insert_rows_of(&mut *conn, records).await;
                        return conn.settle(written);
                    }
                    let written = async {
                        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                        insert_rows_of(&mut *tx, records).await?;
                        tx.commit().await?;
                        Ok(())
                    }
                    .await;
                    conn.settle(written)
                }

                async fn mark_client_used(&self, client_id: &str) -> Result<(), StoreError> {
                    sqlx::query(&<$store>::sql("UPDATE clients SET used = 1 WHERE client_id = ? AND used = 0"))
                        .bind(client_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }

                async fn delete_unused_client(&self, client_id: &str) -> Result<bool, StoreError> {
                    let done = sqlx::query(&<$store>::sql("DELETE FROM clients WHERE client_id = ? AND used = 0"))
                        .bind(client_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
                    let _write = write_timer("clients");
                    let done = sqlx::query(&<$store>::sql("DELETE FROM clients WHERE client_id = ?"))
                        .bind(client_id)
                        .execute(&self.pool)
                        .await?;
                    Ok(done.rows_affected() > 0)
                }

                async fn count_clients(&self) -> Result<u64, StoreError> {
                    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM clients")
                        .fetch_one(&self.pool)
                        .await?;
                    Ok(unsigned(count))
                }

                async fn reap_unused_clients(&self, issued_by: u64) -> Result<Vec<String>, StoreError> {
                    let _write = write_timer("clients");
                    Ok(sqlx::query_scalar(&<$store>::sql(&format!(
                        "DELETE FROM clients WHERE used = 0 AND client_id IN \
                         (SELECT client_id FROM clients WHERE used = 0 AND issued_at <= ? LIMIT {REAP_BATCH}) \
                         RETURNING client_id"
                    )))
                    .bind(int(issued_by))
                    .fetch_all(&self.pool)
                    .await?)
                }

                async fn oldest_unused_client(&self) -> Result<Option<u64>, StoreError> {
                    let oldest: Option<i64> =
                        sqlx::query_scalar("SELECT MIN(issued_at) FROM clients WHERE used = 0")
                            .fetch_one(&self.pool)
                            .await?;
                    Ok(oldest.map(unsigned))
                }
            }
        }
    };
}

sql_backend!(on_sqlite, SqliteStore, sqlx::sqlite::SqliteRow);
sql_backend!(on_postgres, PostgresStore, sqlx::postgres::PgRow);

/// The clients table of the in-memory store.
#[derive(Default)]
struct ClientsTable {
    clients: ClientMap,
}

#[async_trait]
impl ClientStore for MemoryStore {
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.with(|t: &mut ClientsTable| t.clients.iter().cloned().collect())
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.with(|t: &mut ClientsTable| t.clients.get(client_id).cloned())
    }

    async fn insert_client(&self, record: &ClientRecord) -> Result<(), StoreError> {
        self.insert_clients(std::slice::from_ref(record)).await
    }

    async fn insert_clients(&self, records: &[ClientRecord]) -> Result<(), StoreError> {
        self.with(|t: &mut ClientsTable| {
            let mut ids = std::collections::HashSet::new();
            for record in records {
                let id = &record.client.client_id;
                if t.clients.get(id).is_some() || !ids.insert(id) {
                    return Err(StoreError("the client id exists".into()));
                }
            }
            for record in records {
                t.clients.insert(record.clone());
            }
            Ok(())
        })?
    }

    async fn mark_client_used(&self, client_id: &str) -> Result<(), StoreError> {
        self.with(|t: &mut ClientsTable| {
            if let Some(c) = t.clients.get_mut(client_id) {
                c.used = true;
            }
        })
    }

    async fn delete_unused_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.with(|t: &mut ClientsTable| {
            if t.clients.get(client_id).is_some_and(|c| !c.used) {
                t.clients.remove(client_id);
                true
            } else {
                false
            }
        })
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.with(|t: &mut ClientsTable| t.clients.remove(client_id).is_some())
    }

    async fn count_clients(&self) -> Result<u64, StoreError> {
        self.with(|t: &mut ClientsTable| t.clients.len() as u64)
    }

    async fn reap_unused_clients(&self, issued_by: u64) -> Result<Vec<String>, StoreError> {
        self.with(|t: &mut ClientsTable| {
            let due: Vec<String> = t
                .clients
                .iter()
                .filter(|r| !r.used && r.client.issued_at <= issued_by)
                .take(REAP_BATCH)
                .map(|r| r.client.client_id.to_string())
                .collect();
            for id in &due {
                t.clients.remove(id);
            }
            due
        })
    }

    async fn oldest_unused_client(&self) -> Result<Option<u64>, StoreError> {
        self.with(|t: &mut ClientsTable| {
            t.clients
                .iter()
                .filter(|r| !r.used)
                .map(|r| r.client.issued_at)
                .min()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::client::NewClient;

    fn client(id: &str) -> Arc<Client> {
        Arc::new(Client::from_metadata(
            id,
            NewClient::public_loopback(),
            ClientKind::Registered,
        ))
    }

    #[test]
    fn client_map_keys_records_by_their_own_id() {
        let mut map = ClientMap::default();
        for i in 0..1000 {
            map.insert(ClientRecord {
                client: client(&format!("c{i}")),
                used: false,
            });
        }
        assert_eq!(map.len(), 1000);
        // Same id: replaced, not added.
        map.insert(ClientRecord {
            client: client("c7"),
            used: true,
        });
        assert_eq!(map.len(), 1000);
        assert!(map.get("c7").is_some_and(|r| r.used));
        assert!(map.get("c8").is_some_and(|r| !r.used));
        assert!(map.get("c1000").is_none());
        if let Some(r) = map.get_mut("c8") {
            r.used = true;
        }
        assert_eq!(map.iter().filter(|r| r.used).count(), 2);
        assert_eq!(
            map.remove("c8").map(|r| r.client.client_id.clone()),
            Some("c8".into())
        );
        assert!(map.remove("c8").is_none());
        assert!(map.get("c8").is_none());
        assert_eq!(map.len(), 999);
    }

    fn record(id: &str) -> ClientRecord {
        ClientRecord {
            client: Arc::new(Client {
                client_id: id.into(),
                secret: Some(Box::new(SecretHash::Sha256([7; 32]))),
                application_type: ApplicationType::Web,
                kind: ClientKind::Registered,
                client_name: Some("c".into()),
                redirect_uris: Box::new(["http://127.0.0.1/cb".into()]),
                grant_types: GrantTypes::AUTHORIZATION_CODE,
                token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
                scope: None,
                client_uri: None,
                issued_at: 1,
            }),
            used: false,
        }
    }

    /// A client id is registered once, a used client is never deleted, and what is written
    /// reads back the same after the store is closed and opened again.
    #[tokio::test]
    async fn sqlite_rules_hold_and_clients_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.insert_client(&record("a")).await.unwrap();
        store.insert_client(&record("b")).await.unwrap();
        assert!(
            store.insert_client(&record("a")).await.is_err(),
            "ids are unique"
        );
        store.mark_client_used("a").await.unwrap();
        assert!(
            !store.delete_unused_client("a").await.unwrap(),
            "a used client stays"
        );
        assert!(store.delete_unused_client("b").await.unwrap());
        assert!(
            !store.delete_unused_client("b").await.unwrap(),
            "deleted once"
        );

        store.pool.close().await;
        assert!(store.clients().await.is_err(), "closed");
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let clients = store.clients().await.unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(
            clients[0].client.secret.as_deref(),
            Some(&SecretHash::Sha256([7; 32]))
        );
        assert!(clients[0].used);
        store.pool.close().await;
    }
}
