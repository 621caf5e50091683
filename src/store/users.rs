//! The users table: [`UserRecord`] (someone who can sign in, the password only as an argon2 PHC
//! string), the [`UserStore`] trait, and its SQLite and in-memory implementations.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::sqlite::{SqliteStore, write_timer};
use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteArguments;
use std::collections::BTreeMap;

/// Someone who can sign in; the password only as an argon2 PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    /// A disabled user cannot sign in.
    pub disabled: bool,
}

/// The users who can sign in.
#[async_trait]
pub trait UserStore: Send + Sync {
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces every user with `users` in one transaction.
    async fn replace_users(&self, users: &[UserRecord]) -> Result<(), StoreError>;
    /// Adds a user, or replaces the one with the same username.
    async fn upsert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query("SELECT username, display_name, password_hash, disabled FROM users")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(UserRecord {
                    username: row.try_get("username")?,
                    display_name: row.try_get("display_name")?,
                    password_hash: row.try_get("password_hash")?,
                    disabled: row.try_get::<i64, _>("disabled")? != 0,
                })
            })
            .collect()
    }

    async fn replace_users(&self, users: &[UserRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM users").execute(&mut *tx).await?;
        for user in users {
            insert_user(user).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn upsert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let _write = write_timer("users");
        insert_user(user).execute(&self.pool).await?;
        Ok(())
    }
}

/// The statement that adds a user or replaces the one with the same name.
fn insert_user(user: &UserRecord) -> sqlx::query::Query<'_, sqlx::Sqlite, SqliteArguments<'_>> {
    sqlx::query(
        "INSERT OR REPLACE INTO users (username, display_name, password_hash, disabled) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(&user.username)
    .bind(&user.display_name)
    .bind(&user.password_hash)
    .bind(i64::from(user.disabled))
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

    async fn upsert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.with(|t: &mut UsersTable| {
            t.users.insert(user.username.clone(), user.clone());
        })
    }
}
