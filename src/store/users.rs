//! The users table: [`UserRecord`] (someone who can sign in, the password only as an argon2 PHC
//! string), the [`UserStore`] trait, and its SQLite and in-memory implementations.

use super::error::StoreError;
use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::{SqliteStore, write_timer};
use async_trait::async_trait;
use sqlx::Row;
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

/// Adds a user or replaces the one with the same name.
const UPSERT_USER: &str = "INSERT INTO users (username, display_name, password_hash, disabled) \
     VALUES (?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET \
     display_name = excluded.display_name, password_hash = excluded.password_hash, \
     disabled = excluded.disabled";

/// The table's SQL, written once for both SQL backends (`?` placeholders, which
/// [`PostgresStore`] numbers): instantiated below for SQLite and PostgreSQL.
macro_rules! sql_backend {
    ($module:ident, $store:ty, $row:ty) => {
        mod $module {
            // The table module's items, private ones included (not `super`: this module is
            // declared by a macro).
            use crate::store::users::*;

            /// The statement that adds a user or replaces the one with the same name.
            fn insert_user<'q>(
                sql: &'q str,
                user: &'q UserRecord,
            ) -> sqlx::query::Query<
                'q,
                <$row as sqlx::Row>::Database,
                <<$row as sqlx::Row>::Database as sqlx::Database>::Arguments<'q>,
            > {
                sqlx::query(sql)
                    .bind(&user.username)
                    .bind(&user.display_name)
                    .bind(&user.password_hash)
                    .bind(i64::from(user.disabled))
            }

            #[async_trait]
            impl UserStore for $store {
                async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
                    let rows = sqlx::query(&<$store>::sql(
                        "SELECT username, display_name, password_hash, disabled FROM users",
                    ))
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
                    sqlx::query(&<$store>::sql("DELETE FROM users"))
                        .execute(&mut *tx)
                        .await?;
                    let upsert = <$store>::sql(UPSERT_USER);
                    for user in users {
                        insert_user(&upsert, user).execute(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn upsert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
                    let _write = write_timer("users");
                    insert_user(&<$store>::sql(UPSERT_USER), user)
                        .execute(&self.pool)
                        .await?;
                    Ok(())
                }
            }
        }
    };
}

sql_backend!(on_sqlite, SqliteStore, sqlx::sqlite::SqliteRow);
sql_backend!(on_postgres, PostgresStore, sqlx::postgres::PgRow);

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
