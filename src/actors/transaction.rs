//! [`run_transaction`]: how an actor that group-commits its writes runs one store transaction.
//! In a task of its own, so that a panic in the store is an error for the batch's callers and
//! not a lost actor; bounded by [`COMMIT_TIMEOUT`], below the time a caller waits for an answer
//! ([`REPLY_TIMEOUT`]), and abandoned past it: dropping the store's future rolls back a
//! transaction that has not reached its commit, so a hung statement neither stops the actor's
//! writes for good nor, short of one abandoned during its very commit, lands after its callers
//! were told it failed. Each actor treats an abandoned batch as of unknown outcome: the refresh
//! tokens read its families again, and a registration that did land is an unused client, reaped
//! in time.

use crate::actors::ask::REPLY_TIMEOUT;
use crate::store::StoreError;
use std::future::Future;
use std::time::Duration;

/// Longest a transaction may take before it is abandoned (rolled back) and its callers are
/// answered with an error.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(8);
const _: () = assert!(COMMIT_TIMEOUT.as_secs() < REPLY_TIMEOUT.as_secs());

/// Runs `transaction` (the writes of one batch; `what` names them in the error) to its end,
/// within [`COMMIT_TIMEOUT`].
pub async fn run_transaction<T, F>(what: &str, transaction: F) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
{
    let mut task = tokio::spawn(transaction);
    match tokio::time::timeout(COMMIT_TIMEOUT, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(_)) => Err(StoreError(format!("the {what} transaction failed"))),
        Err(_) => {
            task.abort();
            Err(StoreError(format!("the {what} transaction timed out")))
        }
    }
}
