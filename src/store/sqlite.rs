//! [`SqliteStore`]: the embedded store, one SQLite database (`mcp-oauth.db`, with its `-wal` and
//! `-shm` companions) in the data directory. Write-ahead logging with `synchronous = FULL`: a
//! committed write survives a crash of the process and of the machine. The directory is created
//! with mode 0700 and the database file with 0600 (SQLite gives its companions the same mode).
//! Migrations (`migrations/`) are embedded in the binary and run at open.

use super::{
    ClientRecord, ClientStore, ConsentRecord, ConsentStore, KeyRecord, KeyStore, RevocationStore,
    Store, StoreError, UserRecord, UserStore, from_json_list, merge_consent, to_json_list,
};
use crate::actors::clients::{
    ApplicationType, Client, ClientKind, GrantTypes, RESPONSE_TYPES, SecretHash,
    TokenEndpointAuthMethod, boxed_strs,
};
use crate::actors::refresh_tokens::{self, FamilyRecord, RefreshTokenStore, Rotation, TokenHash};
use crate::oauth::scope::ScopeSet;
use async_trait::async_trait;
use futures::future::BoxFuture;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The database file's name in the data directory.
pub const DATABASE_FILE: &str = "mcp-oauth.db";

pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// Creates `path` empty with mode 0600 if it does not exist.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(|_| ())
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `dir` and brings its schema up to date.
    pub async fn open(dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(DATABASE_FILE);
        create_private_file(&path)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", path.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(SqliteStore { pool, path })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn client_from_row(row: &SqliteRow) -> Result<ClientRecord, StoreError> {
    let secret: Option<Vec<u8>> = row.try_get("secret_sha256")?;
    let secret = match secret {
        Some(bytes) => Some(Box::new(SecretHash::Sha256(
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| StoreError("a stored client secret digest is corrupt".into()))?,
        ))),
        None => None,
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

fn key_from_row(row: &SqliteRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        kid: row.try_get("kid")?,
        encrypted_key: row.try_get("encrypted_key")?,
        created_at: unsigned(row.try_get("created_at")?),
        activates_at: unsigned(row.try_get("activates_at")?),
        retired_at: row.try_get::<Option<i64>, _>("retired_at")?.map(unsigned),
        removes_at: row.try_get::<Option<i64>, _>("removes_at")?.map(unsigned),
    })
}

const CLIENT_COLUMNS: &str = "client_id, secret_sha256, client_name, redirect_uris, grant_types, \
     response_types, token_endpoint_auth_method, scope, client_uri, issued_at, used, \
     application_type";

#[async_trait]
impl ClientStore for SqliteStore {
    async fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM clients"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = ?"
        ))
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn insert_client(&self, record: &ClientRecord) -> Result<(), StoreError> {
        let c = &record.client;
        sqlx::query(&format!(
            "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&*c.client_id)
        .bind(match c.secret.as_deref() {
            Some(SecretHash::Sha256(digest)) => Some(digest.to_vec()),
            // Configured clients are never stored; the clients file keeps their hashes.
            Some(SecretHash::Argon2(_)) | None => None,
        })
        .bind(c.client_name.as_deref())
        .bind(to_json_list(&c.redirect_uris))
        .bind(to_json_list(c.grant_types.names()))
        .bind(to_json_list(&RESPONSE_TYPES))
        .bind(c.token_endpoint_auth_method.as_str())
        .bind(c.scope.as_deref())
        .bind(c.client_uri.as_deref())
        .bind(int(c.issued_at))
        .bind(i64::from(record.used))
        .bind(c.application_type.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn mark_client_used(&self, client_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE clients SET used = 1 WHERE client_id = ? AND used = 0")
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_unused_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM clients WHERE client_id = ? AND used = 0")
            .bind(client_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
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

#[async_trait]
impl RevocationStore for SqliteStore {
    async fn revocations(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query("SELECT jti, expires_at FROM revocations WHERE expires_at > ?")
            .bind(int(now))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("jti")?, unsigned(row.try_get("expires_at")?))))
            .collect()
    }

    async fn is_revoked(&self, jti: &str, now: u64) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 FROM revocations WHERE jti = ? AND expires_at > ?")
            .bind(jti)
            .bind(int(now))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO revocations (jti, expires_at) VALUES (?, ?) \
             ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
        )
        .bind(jti)
        .bind(int(until))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_expired_revocations(&self, now: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
            .bind(int(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT username, display_name, password_hash FROM users")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(UserRecord {
                    username: row.try_get("username")?,
                    display_name: row.try_get("display_name")?,
                    password_hash: row.try_get("password_hash")?,
                })
            })
            .collect()
    }

    async fn replace_users(&self, users: &[UserRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM users").execute(&mut *tx).await?;
        for user in users {
            sqlx::query(
                "INSERT INTO users (username, display_name, password_hash) VALUES (?, ?, ?)",
            )
            .bind(&user.username)
            .bind(&user.display_name)
            .bind(&user.password_hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, encrypted_key, created_at, activates_at, retired_at, removes_at \
             FROM signing_keys ORDER BY activates_at, created_at",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, encrypted_key, created_at, activates_at, retired_at, removes_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
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
        sqlx::query(
            "UPDATE signing_keys SET activates_at = ?, retired_at = ?, removes_at = ? WHERE kid = ?",
        )
        .bind(int(key.activates_at))
        .bind(key.retired_at.map(int))
        .bind(key.removes_at.map(int))
        .bind(&key.kid)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = ?")
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn is_durable(&self) -> bool {
        true
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// A refresh-token store error, from the store's own.
fn refresh_error(err: impl std::fmt::Display) -> refresh_tokens::StoreError {
    refresh_tokens::StoreError(err.to_string())
}

fn digest(bytes: Option<Vec<u8>>) -> Result<Option<TokenHash>, refresh_tokens::StoreError> {
    bytes
        .map(|b| {
            TokenHash::try_from(b.as_slice())
                .map_err(|_| refresh_error("a stored refresh-token digest is corrupt"))
        })
        .transpose()
}

fn family_from_row(row: &SqliteRow) -> Result<FamilyRecord, refresh_tokens::StoreError> {
    let get_i = |name: &str| -> Result<i64, refresh_tokens::StoreError> {
        row.try_get::<i64, _>(name).map_err(refresh_error)
    };
    let get_s = |name: &str| -> Result<String, refresh_tokens::StoreError> {
        row.try_get::<String, _>(name).map_err(refresh_error)
    };
    Ok(FamilyRecord {
        family_id: get_s("family_id")?,
        client_id: get_s("client_id")?,
        subject: get_s("subject")?,
        scope: get_s("scope")?,
        resource: get_s("resource")?,
        flow: get_s("flow")?,
        origin_jti: get_s("origin_jti")?,
        created_at_ms: unsigned(get_i("created_at_ms")?),
        absolute_expires_at_ms: unsigned(get_i("absolute_expires_at_ms")?),
        idle_expires_at_ms: unsigned(get_i("idle_expires_at_ms")?),
        generation: unsigned(get_i("generation")?),
        current: digest(Some(row.try_get("current").map_err(refresh_error)?))?
            .ok_or_else(|| refresh_error("a stored family has no current token"))?,
        previous: digest(row.try_get("previous").map_err(refresh_error)?)?,
        rotated_at_ms: row
            .try_get::<Option<i64>, _>("rotated_at_ms")
            .map_err(refresh_error)?
            .map(unsigned),
        salt: digest(row.try_get("salt").map_err(refresh_error)?)?,
        tokens: Vec::new(),
    })
}

/// Refresh-token families: each method is one transaction; a rotation is a compare-and-swap on
/// the family's current token, so single use holds in the database itself.
impl RefreshTokenStore for SqliteStore {
    fn insert_family(
        &self,
        family: &FamilyRecord,
    ) -> BoxFuture<'_, Result<(), refresh_tokens::StoreError>> {
        let family = family.clone();
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(refresh_error)?;
            sqlx::query(
                "INSERT INTO refresh_families (family_id, client_id, subject, scope, resource, \
                 flow, origin_jti, created_at_ms, absolute_expires_at_ms, idle_expires_at_ms, \
                 generation, current, previous, rotated_at_ms, salt) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&family.family_id)
            .bind(&family.client_id)
            .bind(&family.subject)
            .bind(&family.scope)
            .bind(&family.resource)
            .bind(&family.flow)
            .bind(&family.origin_jti)
            .bind(int(family.created_at_ms))
            .bind(int(family.absolute_expires_at_ms))
            .bind(int(family.idle_expires_at_ms))
            .bind(int(family.generation))
            .bind(family.current.to_vec())
            .bind(family.previous.map(|d| d.to_vec()))
            .bind(family.rotated_at_ms.map(int))
            .bind(family.salt.map(|d| d.to_vec()))
            .execute(&mut *tx)
            .await
            .map_err(refresh_error)?;
            let mut tokens = family.tokens.clone();
            if !tokens.contains(&family.current) {
                tokens.push(family.current);
            }
            for token in tokens {
                sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id) VALUES (?, ?)")
                    .bind(token.to_vec())
                    .bind(&family.family_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(refresh_error)?;
            }
            tx.commit().await.map_err(refresh_error)
        })
    }

    fn rotate(
        &self,
        rotation: &Rotation,
    ) -> BoxFuture<'_, Result<bool, refresh_tokens::StoreError>> {
        let rotation = rotation.clone();
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(refresh_error)?;
            let swapped = sqlx::query(
                "UPDATE refresh_families SET previous = current, current = ?, salt = ?, \
                 generation = ?, rotated_at_ms = ?, idle_expires_at_ms = ? \
                 WHERE family_id = ? AND current = ?",
            )
            .bind(rotation.next.to_vec())
            .bind(rotation.salt.to_vec())
            .bind(int(rotation.generation))
            .bind(int(rotation.rotated_at_ms))
            .bind(int(rotation.idle_expires_at_ms))
            .bind(&rotation.family_id)
            .bind(rotation.presented.to_vec())
            .execute(&mut *tx)
            .await
            .map_err(refresh_error)?
            .rows_affected()
                == 1;
            if !swapped {
                tx.rollback().await.map_err(refresh_error)?;
                return Ok(false);
            }
            sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id) VALUES (?, ?)")
                .bind(rotation.next.to_vec())
                .bind(&rotation.family_id)
                .execute(&mut *tx)
                .await
                .map_err(refresh_error)?;
            tx.commit().await.map_err(refresh_error)?;
            Ok(true)
        })
    }

    fn remove_families(
        &self,
        family_ids: &[String],
    ) -> BoxFuture<'_, Result<(), refresh_tokens::StoreError>> {
        let family_ids = family_ids.to_vec();
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(refresh_error)?;
            for id in &family_ids {
                sqlx::query("DELETE FROM refresh_tokens WHERE family_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(refresh_error)?;
                sqlx::query("DELETE FROM refresh_families WHERE family_id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(refresh_error)?;
            }
            tx.commit().await.map_err(refresh_error)
        })
    }

    fn load_live(
        &self,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<FamilyRecord>, refresh_tokens::StoreError>> {
        Box::pin(async move {
            let now = int(now_ms);
            let mut tx = self.pool.begin().await.map_err(refresh_error)?;
            // Families past a deadline are dead whatever happens: drop them and their tokens.
            let dead = "SELECT family_id FROM refresh_families \
                        WHERE absolute_expires_at_ms <= ? OR idle_expires_at_ms <= ?";
            sqlx::query(&format!(
                "DELETE FROM refresh_tokens WHERE family_id IN ({dead})"
            ))
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(refresh_error)?;
            sqlx::query(
                "DELETE FROM refresh_families \
                 WHERE absolute_expires_at_ms <= ? OR idle_expires_at_ms <= ?",
            )
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(refresh_error)?;
            tx.commit().await.map_err(refresh_error)?;
            let rows = sqlx::query("SELECT * FROM refresh_families")
                .fetch_all(&self.pool)
                .await
                .map_err(refresh_error)?;
            let mut families = std::collections::HashMap::new();
            for row in &rows {
                let family = family_from_row(row)?;
                families.insert(family.family_id.clone(), family);
            }
            let tokens = sqlx::query("SELECT token_hash, family_id FROM refresh_tokens")
                .fetch_all(&self.pool)
                .await
                .map_err(refresh_error)?;
            for row in &tokens {
                let id: String = row.try_get("family_id").map_err(refresh_error)?;
                let hash = digest(Some(row.try_get("token_hash").map_err(refresh_error)?))?;
                if let (Some(family), Some(hash)) = (families.get_mut(&id), hash) {
                    family.tokens.push(hash);
                }
            }
            Ok(families.into_values().collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> ClientRecord {
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

    /// The single-use rules hold in the store itself, and what is written reads back the same
    /// after the store is closed and opened again.
    #[tokio::test]
    async fn atomic_operations_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.insert_client(&client("a")).await.unwrap();
        store.insert_client(&client("b")).await.unwrap();
        assert!(
            store.insert_client(&client("a")).await.is_err(),
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

        store.revoke("j", 500).await.unwrap();
        store.revoke("j", 400).await.unwrap();
        assert!(
            store.is_revoked("j", 450).await.unwrap(),
            "the later expiry is kept"
        );
        assert_eq!(store.delete_expired_revocations(600).await.unwrap(), 1);

        store.close().await;
        assert!(store.clients().await.is_err(), "closed");
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let clients = store.clients().await.unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(
            clients[0].client.secret.as_deref(),
            Some(&SecretHash::Sha256([7; 32]))
        );
        assert!(clients[0].used);
        assert_eq!(store.consents(350).await.unwrap(), vec![fresh]);
        store.close().await;
    }
}
