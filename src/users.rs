//! The users: who can sign in to the authorization server's pages, and the checks of their
//! passwords. Where the users come from ([`load`]):
//! - `--users-file` given: the file (TOML, `[[users]]` with `username`, `password_hash` (an
//!   argon2 PHC string, from `mcp-oauth hash-password`) and `display_name`) is the truth: it
//!   replaces the users in the store, in one transaction, at every start.
//! - no file: the users in the store (imported from a file at an earlier start, or added with
//!   `mcp-oauth admin users add`);
//! - no file and none stored: the demo users alice/password123 and bob/hunter2, hashed with
//!   argon2id at start and never stored. Their passwords are public, so they are refused when
//!   the issuer is https (a deployment) unless `--allow-demo-users` says otherwise, and the login
//!   page names them only while they are the users.
//!
//! The running server's users belong to the `Users` actor (`actors::users`), which reloads them
//! from the store when `mcp-oauth admin` changes them. This module holds what does not change:
//! [`PasswordChecks`], which run on a blocking thread and cost the same for an unknown or
//! disabled user as for a wrong password (PG-3): such a name is checked against a dummy hash.
//! Each check takes 19 MiB for a few tens of milliseconds, so at most one check per core runs at
//! a time: a burst of logins queues briefly instead of multiplying memory. Checks of configured
//! clients' argon2 secrets have permits of their own (one per two cores), so client
//! authentication at `/token` or `/introspect` never takes a sign-in's permit.

use crate::store::{SharedStore, StoreError, UserRecord};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::path::Path;
use std::sync::Arc;

/// A user who can sign in (unless disabled).
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub display_name: String,
    password_hash: String,
    pub disabled: bool,
}

impl From<UserRecord> for User {
    fn from(r: UserRecord) -> Self {
        User {
            username: r.username,
            display_name: r.display_name,
            password_hash: r.password_hash,
            disabled: r.disabled,
        }
    }
}

/// The users a server starts with.
#[derive(Debug, Clone)]
pub struct LoadedUsers {
    pub users: Vec<User>,
    /// The users are the demo users, whose passwords everyone knows.
    pub demo: bool,
}

/// Runs password checks on blocking threads, bounded.
#[derive(Debug, Clone)]
pub struct PasswordChecks {
    dummy_hash: Arc<String>,
    /// Bounds concurrent password checks (a concurrency limit, not shared data).
    checks: Arc<tokio::sync::Semaphore>,
    /// Bounds concurrent checks of configured clients' secrets, apart from the users' checks, so
    /// that a flood of client authentications cannot starve sign-ins.
    client_checks: Arc<tokio::sync::Semaphore>,
}

/// How long a login waits for a free password check before the server answers "busy".
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// No password check could start in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("too many sign-ins at once")]
pub struct Busy;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the users file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "no users to sign in: the demo users are refused on an https issuer; give AUTH_SERVER_USERS_FILE or AUTH_SERVER_IDENTITY_PROVIDERS, or set AUTH_SERVER_ALLOW_DEMO_USERS=true to allow them"
    )]
    DemoRefused,
}

/// The users file.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<FileUser>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    username: String,
    password_hash: String,
    display_name: Option<String>,
}

/// Reads and checks a users file: unique non-empty names, argon2 PHC hashes.
pub fn read_users_file(path: &Path) -> Result<Vec<UserRecord>, UserError> {
    let fail = |reason: String| UserError::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let file: UsersFile = basic_toml::from_str(&text).map_err(|e| fail(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    let mut users = Vec::with_capacity(file.users.len());
    for user in file.users {
        if user.username.trim().is_empty() || user.username.len() > 256 {
            return Err(fail("a username is empty or too long".into()));
        }
        if user
            .username
            .starts_with(crate::oauth::client::MACHINE_SUBJECT_PREFIX)
        {
            return Err(fail(format!(
                "the username {} starts with {}, which names machine clients",
                user.username,
                crate::oauth::client::MACHINE_SUBJECT_PREFIX
            )));
        }
        if !seen.insert(user.username.clone()) {
            return Err(fail(format!("the user {} appears twice", user.username)));
        }
        let parsed = PasswordHash::new(&user.password_hash).map_err(|_| {
            fail(format!(
                "the password_hash of {} is not a PHC string",
                user.username
            ))
        })?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(fail(format!(
                "the password_hash of {} is not argon2",
                user.username
            )));
        }
        users.push(UserRecord {
            display_name: user.display_name.unwrap_or_else(|| user.username.clone()),
            username: user.username,
            password_hash: user.password_hash,
            disabled: false,
        });
    }
    if users.is_empty() {
        return Err(fail("no users".into()));
    }
    Ok(users)
}

/// The users this server signs in, by the rules in this module's comment; `demo_allowed` says
/// whether the demo users may be the last resort, `upstream_sign_in` whether users can sign in
/// through an identity provider instead (then no local user is needed at all).
pub async fn load(
    users_file: Option<&Path>,
    demo_allowed: bool,
    upstream_sign_in: bool,
    store: &SharedStore,
) -> Result<LoadedUsers, UserError> {
    let stored = |users: Vec<UserRecord>| LoadedUsers {
        users: users.into_iter().map(User::from).collect(),
        demo: false,
    };
    if let Some(path) = users_file {
        let users = read_users_file(path)?;
        store.replace_users(&users).await?;
        tracing::info!(users = users.len(), file = %path.display(), "users loaded from the users file");
        return Ok(stored(users));
    }
    let users = store.users().await?;
    if !users.is_empty() {
        tracing::info!(users = users.len(), "users loaded from the store");
        return Ok(stored(users));
    }
    if !demo_allowed && upstream_sign_in {
        tracing::info!("no local users: users sign in through the identity providers");
        return Ok(stored(Vec::new()));
    }
    if !demo_allowed {
        return Err(UserError::DemoRefused);
    }
    tracing::info!("no users file: the demo users alice and bob can sign in");
    demo_users().await
}

/// The demo users, hashed now (on a blocking thread).
pub async fn demo_users() -> Result<LoadedUsers, UserError> {
    let demo = [("alice", "Alice", "password123"), ("bob", "Bob", "hunter2")];
    let users = tokio::task::spawn_blocking(move || {
        demo.iter()
            .map(|(username, display_name, password)| {
                Ok(User {
                    username: username.to_string(),
                    display_name: display_name.to_string(),
                    password_hash: hash_password(password)?,
                    disabled: false,
                })
            })
            .collect::<Result<Vec<_>, UserError>>()
    })
    .await
    .map_err(|e| UserError::Hash(e.to_string()))??;
    Ok(LoadedUsers { users, demo: true })
}

/// argon2id with the OWASP-recommended minimum (19 MiB, 2 passes, 1 lane).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password as a PHC string.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

fn verify(password: &str, hash: &str) -> bool {
    let ok = PasswordHash::new(hash)
        .map(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    crate::memory::release_thread_memory();
    ok
}

impl PasswordChecks {
    /// The checks, with their dummy hash made now (on a blocking thread).
    pub async fn new() -> Result<Self, UserError> {
        let dummy_hash = tokio::task::spawn_blocking(|| hash_password("not-a-real-password"))
            .await
            .map_err(|e| UserError::Hash(e.to_string()))??;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(PasswordChecks {
            dummy_hash: Arc::new(dummy_hash),
            checks: Arc::new(tokio::sync::Semaphore::new(cores)),
            client_checks: Arc::new(tokio::sync::Semaphore::new(cores.div_ceil(2))),
        })
    }

    /// Runs another password-hash check (a configured client's secret) on a blocking thread,
    /// at most one per two cores at a time, from permits of its own: sign-ins keep theirs
    /// however many clients authenticate. `Err(Busy)` as for [`Self::authenticate`].
    pub async fn check_limited(
        &self,
        check: impl FnOnce() -> bool + Send + 'static,
    ) -> Result<bool, Busy> {
        let permit =
            tokio::time::timeout(CHECK_WAIT, Arc::clone(&self.client_checks).acquire_owned())
                .await
                .map_err(|_| Busy)?
                .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let answer = check();
            crate::memory::release_thread_memory();
            answer
        })
        .await
        .map_err(|_| Busy)
    }

    /// Checks a password against a user (as the `Users` actor found them) on a blocking thread;
    /// the same work whether the user exists, is disabled, or not. `Err(Busy)` when no check
    /// could start within a few seconds.
    pub async fn authenticate(
        &self,
        user: Option<User>,
        password: &str,
    ) -> Result<Option<User>, Busy> {
        let permit = tokio::time::timeout(CHECK_WAIT, Arc::clone(&self.checks).acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let dummy_hash = Arc::clone(&self.dummy_hash);
        let password = password.to_string();
        let user = user.filter(|u| !u.disabled);
        let user = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let hash = user
                .as_ref()
                .map_or(dummy_hash.as_str(), |u| u.password_hash.as_str());
            let ok = verify(&password, hash);
            if ok { user } else { None }
        })
        .await
        .map_err(|_| Busy)?;
        Ok(user)
    }
}
