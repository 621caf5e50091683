//! The user directory: who can sign in to the authorization server's pages. Immutable after
//! start (so it is configuration, not actor state): the demo users alice/password123 and
//! bob/hunter2, hashed with argon2id at start. Password checks run on a blocking thread and cost
//! the same for an unknown user as for a wrong password (PG-3): an unknown name is checked
//! against a dummy hash. Each check takes 19 MiB for a few tens of milliseconds, so at most one
//! check per core runs at a time: a burst of logins queues briefly instead of multiplying memory.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::collections::HashMap;
use std::sync::Arc;

/// A user who can sign in.
#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub display_name: String,
    password_hash: String,
}

/// The users, by name.
#[derive(Debug, Clone)]
pub struct UserDirectory {
    users: Arc<HashMap<String, User>>,
    dummy_hash: Arc<String>,
    /// Bounds concurrent password checks (a concurrency limit, not shared data).
    checks: Arc<tokio::sync::Semaphore>,
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
    PasswordHash::new(hash)
        .map(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

impl UserDirectory {
    /// The demo users, hashed now (on blocking threads).
    pub async fn demo() -> Result<Self, UserError> {
        Self::from_plain(&[("alice", "Alice", "password123"), ("bob", "Bob", "hunter2")]).await
    }

    /// Users from (username, display name, password), hashed at start.
    pub async fn from_plain(entries: &[(&str, &str, &str)]) -> Result<Self, UserError> {
        let owned: Vec<(String, String, String)> = entries
            .iter()
            .map(|(u, d, p)| (u.to_string(), d.to_string(), p.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut users = HashMap::new();
            for (username, display_name, password) in owned {
                let password_hash = hash_password(&password)?;
                users.insert(
                    username.clone(),
                    User {
                        username,
                        display_name,
                        password_hash,
                    },
                );
            }
            let dummy_hash = hash_password("not-a-real-password")?;
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            Ok(UserDirectory {
                users: Arc::new(users),
                dummy_hash: Arc::new(dummy_hash),
                checks: Arc::new(tokio::sync::Semaphore::new(cores)),
            })
        })
        .await
        .map_err(|e| UserError::Hash(e.to_string()))?
    }

    /// Runs another password-hash check (a configured client's secret) on a blocking thread,
    /// under the same limit of one check per core. `Err(Busy)` as for [`Self::authenticate`].
    pub async fn check_limited(
        &self,
        check: impl FnOnce() -> bool + Send + 'static,
    ) -> Result<bool, Busy> {
        let permit = tokio::time::timeout(CHECK_WAIT, Arc::clone(&self.checks).acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            check()
        })
        .await
        .map_err(|_| Busy)
    }

    /// Checks a username and password on a blocking thread; the same work whether or not the
    /// user exists. `Err(Busy)` when no check could start within a few seconds.
    pub async fn authenticate(&self, username: &str, password: &str) -> Result<Option<User>, Busy> {
        let permit = tokio::time::timeout(CHECK_WAIT, Arc::clone(&self.checks).acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let this = self.clone();
        let username = username.to_string();
        let password = password.to_string();
        let user = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let user = this.users.get(&username);
            let hash = user.map_or(this.dummy_hash.as_str(), |u| u.password_hash.as_str());
            let ok = verify(&password, hash);
            if ok { user.cloned() } else { None }
        })
        .await
        .map_err(|_| Busy)?;
        Ok(user)
    }
}
