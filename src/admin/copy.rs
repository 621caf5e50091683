//! `mcp-oauth admin copy-store --to URL`: copies what the authorization server keeps for longer
//! than a sign-in into another, empty store: from the data directory's SQLite store into
//! PostgreSQL, when one server becomes several (`docs/SCALING.md`), or back.
//!
//! Copied: users, registered clients, signing keys (opened with the source's key-encryption
//! secret and sealed again with the target's), consents, live refresh-token families with every
//! token digest (so reuse of a retired token is still detected), and revoked access tokens.
//! Not copied, being short-lived: authorization codes, browser sessions and parked requests,
//! sign-ins in progress at an identity provider, login failures, and recorded changes. Users
//! sign in again; their tokens, consents and refresh tokens carry on.
//!
//! Stop the servers on the source first (a write after the copy would be lost). The target must
//! be empty: a copy that stops half-way is not resumed; drop the target database and run it again.
//! Reading the live families deletes the source's dead ones, as a server would.

use crate::oauth::scope::ScopeSet;
use crate::oauth::time::{unix_now, unix_now_ms};
use crate::store::cipher::{CipherError, KeyCipher};
use crate::store::{Approval, KeyRecord, PostgresStore, SharedStore, SqliteStore, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error("{0}")]
    Refused(String),
}

/// What was copied, and where to.
#[derive(Debug, serde::Serialize)]
pub struct Copied {
    pub users: usize,
    pub clients: usize,
    pub signing_keys: usize,
    pub consents: usize,
    pub refresh_families: usize,
    pub revocations: usize,
    /// The target, for people (no password).
    #[serde(skip)]
    pub target: String,
}

/// Opens the store a `--to` URL names: `postgres://…`, or `sqlite://DIR`.
async fn open_target(url: &str) -> Result<SharedStore, CopyError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = crate::store::postgres::PoolOptions::default();
        return Ok(Arc::new(PostgresStore::open(url, options).await?));
    }
    if let Some(dir) = url.strip_prefix("sqlite://") {
        return Ok(Arc::new(SqliteStore::open(&PathBuf::from(dir)).await?));
    }
    Err(CopyError::Refused(
        "--to must be a postgres:// URL or sqlite://DIR".into(),
    ))
}

/// Copies `source` into the empty store at `to`; keys are sealed again for `target_cipher`.
pub async fn copy_store(
    source: &SharedStore,
    source_cipher: &KeyCipher,
    to: &str,
    target_cipher: &KeyCipher,
) -> Result<Copied, CopyError> {
    let target = open_target(to).await?;
    let copied = copy_into(source, source_cipher, &target, target_cipher).await;
    target.close().await;
    copied
}

async fn copy_into(
    source: &SharedStore,
    source_cipher: &KeyCipher,
    target: &SharedStore,
    target_cipher: &KeyCipher,
) -> Result<Copied, CopyError> {
    if target.describe() == source.describe() {
        return Err(CopyError::Refused(
            "the target is the source: give the source with --data-dir (or --database-url) and the new store with --to".into(),
        ));
    }
    // Every store a server has run on holds a signing key.
    if source.signing_keys().await?.is_empty() {
        return Err(CopyError::Refused(format!(
            "the source ({}) holds no signing key: is it the server's store?",
            source.describe()
        )));
    }
    let empty = target.count_clients().await? == 0
        && target.users().await?.is_empty()
        && target.signing_keys().await?.is_empty()
        && target.count_families().await? == 0;
    if !empty {
        return Err(CopyError::Refused(
            "the target store is not empty: copy into a new database".into(),
        ));
    }
    // Keys first: one the target's secret cannot seal, or the source's cannot open, stops the
    // copy before anything else is written.
    let mut keys = Vec::new();
    for key in source.signing_keys().await? {
        let opened = source_cipher.open(&key.kid, &key.encrypted_key).map_err(|_| {
            CopyError::Refused(
                "the source's key-encryption secret does not open its keys: give --key-encryption-secret of the source's server".into(),
            )
        })?;
        keys.push(KeyRecord {
            encrypted_key: target_cipher.seal(&key.kid, &opened)?,
            ..key
        });
    }
    for key in &keys {
        target.insert_signing_key(key).await?;
    }
    let users = source.users().await?;
    for user in &users {
        target.upsert_user(user).await?;
    }
    let clients = source.clients().await?;
    for client in &clients {
        target.insert_client(client).await?;
    }
    let now = unix_now();
    let consents = source.consents(now).await?;
    let mut consents_copied = 0;
    for consent in &consents {
        let mut written = false;
        for approval in &consent.approvals {
            let scope = ScopeSet::parse(&approval.scope).map_err(|_| {
                CopyError::Refused(format!(
                    "a stored consent of {} for {} has a scope that does not parse",
                    consent.subject, consent.client_id
                ))
            })?;
            for resource in &approval.resources {
                let grant = Approval {
                    subject: &consent.subject,
                    client_id: &consent.client_id,
                    scope: &scope,
                    resource,
                    redirect_uri: &approval.redirect_uri,
                };
                target.grant_consent(grant, now, consent.expires_at).await?;
                written = true;
            }
        }
        // A consent from before redirect URIs were remembered has no approval to replay: the
        // user is asked again, as the server itself would.
        consents_copied += usize::from(written);
    }
    let families = source.load_live(unix_now_ms()).await?;
    for family in &families {
        target.insert_family(family).await?;
    }
    let revocations = source.revocations(now).await?;
    for (jti, until) in &revocations {
        target.revoke(jti, *until).await?;
    }
    Ok(Copied {
        users: users.len(),
        clients: clients.len(),
        signing_keys: keys.len(),
        consents: consents_copied,
        refresh_families: families.len(),
        revocations: revocations.len(),
        target: target.describe(),
    })
}
