//! [`StoreError`]: the one error of the store, whichever table or backend failed. It has a file of
//! its own so that every table module can name it without importing `store/mod.rs`, which gathers
//! the tables (that would be an import circle).

/// The store could not do what was asked: the change is not committed, and the request that
/// needed it is answered "temporarily unavailable" (503), never acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the store failed: {0}")]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        StoreError(err.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        StoreError(err.to_string())
    }
}
