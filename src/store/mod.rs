//! The durable store behind the actors: the record of every registered client, remembered
//! consent, revoked access token, user, signing key and refresh-token family, and the changes
//! another process (`mcp-oauth admin`) made to them. Actors keep their
//! in-memory maps as the fast path and write through: an actor answers only after the store has
//! committed the change, and at start each actor loads what it owns.
//!
//! The store is a set of traits, one per table ([`ClientStore`], [`CodeStore`], [`ConsentStore`],
//! [`RevocationStore`], [`SessionStore`], [`UpstreamSignInStore`], [`UserStore`], [`KeyStore`], [`LoginFailureStore`], [`RefreshTokenStore`], [`ChangeStore`]), gathered in
//! [`Store`]. Three implementations: [`SqliteStore`] (embedded, one file in the data directory;
//! the default), [`PostgresStore`] (`DATABASE_URL=postgres://…`, a server that several
//! authorization servers can share; `docs/SCALING.md` says what they share so far) and
//! [`MemoryStore`] (`--in-memory`: nothing survives the process). Every read an actor makes on a
//! miss of its map goes through the traits, and every operation that must happen at most once is
//! one atomic statement or transaction in the store (a conditional delete, an upsert, a merge in a
//! transaction, the row read `FOR UPDATE` on PostgreSQL), never a read in the actor followed by a
//! write. The store imports only `oauth` (and the base module `trace`). `contract.rs` runs one
//! suite against all three.
//!
//! Adding a table: one migration file per SQL backend (`migrations/sqlite/NNNN_what.sql`, and
//! `migrations/postgres/NNNN_what.sql` with `BIGINT` for integers and `BYTEA` for blobs), and one
//! module here, `<table>.rs`, holding the table's record type, its trait, and its
//! implementations: the SQL once, with `?` placeholders, in a `sql_backend!` macro instantiated
//! for [`SqliteStore`] and [`PostgresStore`] (statements through `<$store>::sql(…)`, on
//! `self.pool`, or, for a statement that every flow makes, on `self.connection()`, given back by
//! `settle` with its result, `connections.rs`; portable SQL: `ON CONFLICT … DO UPDATE`,
//! `RETURNING`, `CASE`), and for [`MemoryStore`] (its rows in a private `#[derive(Default)]`
//! type reached through `MemoryStore::with`, so `memory.rs` does not change). Declare the module
//! below, re-export its record and trait, add the trait to [`Store`], and its rules to
//! `contract.rs`. A table module imports `error`, `connections`, `sqlite`, `postgres` and
//! `memory`, never this file, which gathers the tables. Timestamps are Unix seconds.

pub mod changes;
pub mod cipher;
mod clients;
mod codes;
mod connections;
mod consents;
#[cfg(test)]
mod contract;
mod error;
mod keys;
mod login_failures;
pub mod memory;
pub mod postgres;
mod refresh_tokens;
mod revocations;
mod sessions;
pub mod sqlite;
mod upstream_sign_ins;
mod users;

pub use changes::{Change, ChangeStore};
pub use clients::{ClientMap, ClientRecord, ClientStore};
pub use codes::{CodeRecord, CodeStore, CodeTake};
pub use consents::{
    Approval, ConsentRecord, ConsentStore, MAX_APPROVED_REDIRECT_URIS, RedirectApproval,
};
pub use error::StoreError;
pub use keys::{KeyMade, KeyRecord, KeyStore};
pub use login_failures::{AccountDigest, LoginAttempt, LoginFailureStore};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use refresh_tokens::{FamilyRecord, RefreshTokenStore, Rotation, TokenHash};
pub use revocations::RevocationStore;
pub use sessions::{Renewal, SessionKey, SessionRecord, SessionStore};
pub use sqlite::SqliteStore;
pub use upstream_sign_ins::{SignInRecord, UpstreamSignInStore};
pub use users::{UserRecord, UserStore};

use async_trait::async_trait;
use std::sync::Arc;

/// Everything the authorization server keeps.
#[async_trait]
pub trait Store:
    ClientStore
    + CodeStore
    + ConsentStore
    + RevocationStore
    + SessionStore
    + UpstreamSignInStore
    + UserStore
    + KeyStore
    + LoginFailureStore
    + RefreshTokenStore
    + ChangeStore
{
    /// What backs the store, for the log (`sqlite:<path>`, `memory`).
    fn describe(&self) -> String;
    /// True when the store survives the process (the data directory), false for `--in-memory`.
    fn is_durable(&self) -> bool;
    /// True when other processes write to the same store (replicas sharing PostgreSQL): then a
    /// negative answer from an actor's map (a `jti` not in `Revocations`) is confirmed with the
    /// store. An embedded store has one writer, this process, so the maps loaded at start and
    /// written through are complete and a miss is an answer.
    fn is_shared(&self) -> bool {
        false
    }
    /// Changes when another server may have recorded a change (PostgreSQL `LISTEN`): the changes
    /// are read at once instead of at the next poll. `None`: polling only.
    fn change_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Answers when the store can be read (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Waits for pending writes and closes the store; later calls fail.
    async fn close(&self);
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.describe())
    }
}

/// The store as the actors hold it.
pub type SharedStore = Arc<dyn Store>;

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path().display())
    }

    fn is_durable(&self) -> bool {
        true
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.close_connections().await;
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn describe(&self) -> String {
        PostgresStore::describe(self).to_string()
    }

    fn is_durable(&self) -> bool {
        true
    }

    /// Replicas share the database: a miss in an actor's map is checked with the store.
    fn is_shared(&self) -> bool {
        true
    }

    fn change_signal(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(PostgresStore::change_signal(self))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // After an outage the pool may still hold connections the outage broke; each one tried
        // is closed, so a few attempts reach a sound one (or a new one) when the database is up.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match sqlx::query("SELECT 1").execute(&self.pool).await {
                Ok(_) => return Ok(()),
                Err(err) if attempts >= 3 => return Err(err.into()),
                Err(_) => {}
            }
        }
    }

    async fn close(&self) {
        self.close_connections().await;
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn is_durable(&self) -> bool {
        false
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.with(|_: &mut ()| ())
    }

    async fn close(&self) {
        self.mark_closed();
    }
}
