//! The users table: [`UserRecord`] (someone who can sign in, the password only as an argon2 PHC
//! string), the [`UserStore`] trait, and its SQLite and in-memory implementations.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::sqlite::SqliteStore;
use async_trait::async_trait;
use sqlx::Row;
use std::collections::BTreeMap;

/// Someone who can sign in; the password only as an argon2 PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
}

/// The users who can sign in.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces every user with `users` in one transaction.
    async fn replace_users(&self, users: &[UserRecord]) -> Result<(), StoreError>;
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

/// The users table of the in-memory store, by username.
#[derive(Default)]
struct UsersTable {
    users: BTreeMap<String, UserRecord>,
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with(|t: &mut UsersTable| t.users.values().cloned().collect())
    }

    async fn replace_users(&self, users: &[UserRecord]) -> Result<(), StoreError> {
        self.with(|t: &mut UsersTable| {
            t.users = users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect();
        })
    }
}
