//! `mcp-oauth admin`: an operator's commands on the authorization server's store, without SQL:
//! clients (list, show, delete), grants (consents and refresh-token families: list, revoke),
//! users (list, add, set a password, disable, enable), signing keys (list, rotate now), browser
//! sessions (revoke a user's), and a copy of the whole store into another (`admin/copy.rs`).
//!
//! It works on the store whether or not a server is running on it. Each command changes the
//! tables first, then records a [`Change`]; a running authorization server applies the change to
//! its actors within a second (`actors::store_changes`): a revoked grant's access tokens are
//! revoked there, and the revocation feed carries that to every resource server. Sessions live
//! only in a running server's memory, so revoking them is only a recorded change.
//!
//! Output is a table for people or, with `--json`, one JSON document for programs.

use crate::actors::signing_keys::KeyError;
use crate::oauth::time::{unix_now, unix_now_ms};
use crate::store::cipher::{CipherError, KeyCipher};
use crate::store::{
    Change, ClientRecord, ConsentRecord, FamilyRecord, SharedStore, SqliteStore, StoreError,
    UserRecord,
};
use crate::users::UserError;
use output::Output;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

mod copy;
mod keys;
mod output;
use std::sync::Arc;
use std::time::Duration;

/// Manage the authorization server's store: clients, grants, users, signing keys, sessions.
#[derive(clap::Args)]
pub struct AdminArgs {
    /// The data directory of the authorization server.
    #[arg(
        long = "data-dir",
        env = "AUTH_SERVER_DATA_DIR",
        default_value = "./data"
    )]
    data_dir: PathBuf,
    /// The authorization server's PostgreSQL database (`postgres://…`), instead of the data
    /// directory's SQLite store.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// Registered clients (and those of client metadata documents); the clients file's are
    /// configuration: edit the file.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// What users approved for clients: consents and refresh-token families.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// The users who can sign in.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Browser sessions on a running server.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Copy the store into another, empty one (SQLite into PostgreSQL, or back): users, clients,
    /// signing keys, consents, refresh tokens and revocations. Stop the servers first.
    CopyStore {
        /// The target: `postgres://…` or `sqlite://DIR`.
        #[arg(long, env = "TARGET_DATABASE_URL", hide_env_values = true)]
        to: String,
        /// The source's stored keys.
        #[command(flatten)]
        key_encryption_secret: StoredKeysSecret,
        /// The key-encryption secret the target's servers will be given (16+ characters); the
        /// signing keys are sealed again with it.
        #[arg(
            long = "to-key-encryption-secret",
            env = "TARGET_KEY_ENCRYPTION_SECRET",
            hide_env_values = true
        )]
        to_key_encryption_secret: String,
    },
}

#[derive(clap::Subcommand)]
enum ClientsCommand {
    /// List the clients.
    List,
    /// Show one client.
    Show {
        /// Client ids may begin with `-` (base64url).
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Delete a client with its grants; its tokens stop working.
    Delete {
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

/// Which grants: a user's, a client's, or a user's for a client.
#[derive(clap::Args)]
struct GrantFilter {
    /// The user (subject).
    #[arg(long)]
    user: Option<String>,
    /// The client id (it may begin with `-`).
    #[arg(long, allow_hyphen_values = true)]
    client: Option<String>,
}

#[derive(clap::Subcommand)]
enum GrantsCommand {
    /// List grants, of everyone or filtered.
    List(GrantFilter),
    /// Revoke grants (at least one of --user and --client): the consents are forgotten, the
    /// refresh tokens end, and their access tokens are revoked by a running server.
    Revoke(GrantFilter),
}

#[derive(clap::Subcommand)]
enum UsersCommand {
    /// List the users.
    List,
    /// Add a user; the password is read from standard input (one line).
    Add {
        username: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Set a user's password, read from standard input (one line).
    SetPassword { username: String },
    /// Disable a user: no more sign-ins, and the user's sessions and grants end.
    Disable { username: String },
    /// Enable a disabled user.
    Enable { username: String },
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// List the signing keys and their lifecycle.
    List,
    /// Make a new signing key now: published at once, signing after `--activate-in` seconds.
    Rotate {
        /// Seconds before the new key signs (a running server publishes it within one).
        #[arg(long, default_value_t = 2)]
        activate_in: u64,
        #[command(flatten)]
        key_encryption_secret: StoredKeysSecret,
    },
}

/// The secret the stored signing keys are sealed with.
#[derive(clap::Args)]
struct StoredKeysSecret {
    /// The key-encryption secret, if the server is given one (default: the data directory's
    /// `key-encryption.secret`).
    #[arg(
        long = "key-encryption-secret",
        env = "AUTH_SERVER_KEY_ENCRYPTION_SECRET",
        hide_env_values = true
    )]
    secret: Option<String>,
}

#[derive(clap::Subcommand)]
enum SessionsCommand {
    /// End every browser session of a user on a running server.
    Revoke { username: String },
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no store in {0}: give the server's --data-dir")]
    NoStore(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Cipher(#[from] CipherError),
    #[error(transparent)]
    User(#[from] UserError),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
}

/// Runs an admin command and prints its result.
pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let postgres = args
        .database_url
        .as_deref()
        .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
    // `sqlite://DIR` names the data directory, as it does for the server.
    let data_dir = match args.database_url.as_deref() {
        Some(url) if url.starts_with("sqlite://") => PathBuf::from(&url["sqlite://".len()..]),
        _ => args.data_dir.clone(),
    };
    let store: SharedStore = match postgres {
        Some(url) => Arc::new(
            crate::store::PostgresStore::open(url, crate::store::postgres::PoolOptions::default())
                .await?,
        ),
        None => {
            let database = data_dir.join(crate::store::sqlite::DATABASE_FILE);
            if !database.exists() {
                return Err(AdminError::NoStore(data_dir.display().to_string()));
            }
            Arc::new(SqliteStore::open(&data_dir).await?)
        }
    };
    let output = match args.command {
        AdminCommand::Clients(command) => clients(&store, command).await,
        AdminCommand::Grants(command) => grants(&store, command).await,
        AdminCommand::Users(command) => users(&store, command).await,
        AdminCommand::Keys(command) => command.run(&store, &data_dir).await,
        AdminCommand::CopyStore {
            to,
            key_encryption_secret,
            to_key_encryption_secret,
        } => {
            let copied = async {
                if to_key_encryption_secret.len() < 16 {
                    return Err(AdminError::Refused(
                        "--to-key-encryption-secret must be at least 16 characters".into(),
                    ));
                }
                let source = key_encryption_secret.cipher(&data_dir)?;
                let target = KeyCipher::from_secret(to_key_encryption_secret.as_bytes())?;
                let copied = copy::copy_store(&store, &source, &to, &target).await?;
                Ok(Output::Done(
                    format!(
                        "copied {} users, {} clients, {} signing keys, {} consents, {} refresh-token families and {} revocations into {}",
                        copied.users,
                        copied.clients,
                        copied.signing_keys,
                        copied.consents,
                        copied.refresh_families,
                        copied.revocations,
                        copied.target
                    ),
                    json!(copied),
                ))
            };
            copied.await
        }
        AdminCommand::Sessions(SessionsCommand::Revoke { username }) => {
            record(&store, Change::SessionsRevoked { subject: username }).await?;
            Ok(Output::Done(
                "the user's sessions end on a running server within a second".into(),
                json!({"sessions_revoked": true}),
            ))
        }
    };
    store.close().await;
    output?.print(args.json);
    Ok(())
}

async fn record(store: &SharedStore, change: Change) -> Result<(), StoreError> {
    store.record_change(&change, unix_now()).await.map(|_| ())
}

/// A Unix time for people.
fn time(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn client_fields(record: &ClientRecord) -> Vec<(&'static str, String)> {
    let c = &record.client;
    vec![
        ("client_id", c.client_id.to_string()),
        ("name", c.client_name.as_deref().unwrap_or("").to_string()),
        ("kind", format!("{:?}", c.kind)),
        ("application_type", c.application_type.as_str().to_string()),
        (
            "auth_method",
            c.token_endpoint_auth_method.as_str().to_string(),
        ),
        ("grant_types", c.grant_types.names().join(" ")),
        ("redirect_uris", c.redirect_uris.join(" ")),
        ("scope", c.scope.as_deref().unwrap_or("").to_string()),
        ("issued_at", time(c.issued_at)),
        ("used", record.used.to_string()),
    ]
}

async fn clients(store: &SharedStore, command: ClientsCommand) -> Result<Output, AdminError> {
    match command {
        ClientsCommand::List => {
            let mut records = store.clients().await?;
            records.sort_by_key(|r| r.client.issued_at);
            let headers = vec![
                "client_id",
                "name",
                "kind",
                "auth_method",
                "used",
                "issued_at",
            ];
            let rows = records
                .iter()
                .map(|r| {
                    let fields: BTreeMap<_, _> = client_fields(r).into_iter().collect();
                    headers.iter().map(|h| fields[h].clone()).collect()
                })
                .collect();
            Ok(Output::Table(headers, rows))
        }
        ClientsCommand::Show { client_id } => match store.client(&client_id).await? {
            Some(record) => Ok(Output::Record(client_fields(&record))),
            None => Err(AdminError::Refused(format!("no client {client_id}"))),
        },
        ClientsCommand::Delete { client_id } => {
            // Repeatable: a command that failed halfway is run again, and the change is recorded
            // whether or not the row is still there, so a running server forgets the client.
            let existed = store.delete_client(&client_id).await?;
            let (consents, families) = end_grants(store, None, Some(&client_id)).await?;
            let change = Change::ClientDeleted {
                client_id: client_id.clone(),
            };
            record(store, change).await?;
            if !existed {
                return Err(AdminError::Refused(format!(
                    "no client {client_id} in the store (a running server is told to forget it all the same)"
                )));
            }
            Ok(Output::Done(
                format!(
                    "deleted client {client_id}, with {consents} consents and {families} refresh-token families"
                ),
                json!({"deleted": client_id, "consents": consents, "refresh_families": families}),
            ))
        }
    }
}

/// Does a record of `subject` and `client_id` pass the filter?
fn matches(subject: Option<&str>, client_id: Option<&str>, s: &str, c: &str) -> bool {
    subject.is_none_or(|x| x == s) && client_id.is_none_or(|x| x == c)
}

/// The live consents and refresh-token families that match.
async fn grants_of(
    store: &SharedStore,
    subject: Option<&str>,
    client_id: Option<&str>,
) -> Result<(Vec<ConsentRecord>, Vec<FamilyRecord>), StoreError> {
    let consents = store.consents(unix_now()).await?;
    let families = store.load_live(unix_now_ms()).await?;
    Ok((
        consents
            .into_iter()
            .filter(|c| matches(subject, client_id, &c.subject, &c.client_id))
            .collect(),
        families
            .into_iter()
            .filter(|f| matches(subject, client_id, &f.subject, &f.client_id))
            .collect(),
    ))
}

/// Deletes the matching consents and refresh-token families from the store; how many of each.
async fn end_grants(
    store: &SharedStore,
    subject: Option<&str>,
    client_id: Option<&str>,
) -> Result<(usize, usize), StoreError> {
    let (consents, families) = grants_of(store, subject, client_id).await?;
    for consent in &consents {
        store
            .delete_consent(&consent.subject, &consent.client_id)
            .await?;
    }
    let ids: Vec<String> = families.iter().map(|f| f.family_id.clone()).collect();
    store.remove_families(&ids).await?;
    Ok((consents.len(), ids.len()))
}

async fn grants(store: &SharedStore, command: GrantsCommand) -> Result<Output, AdminError> {
    match command {
        GrantsCommand::List(filter) => {
            let (user, client) = (filter.user.as_deref(), filter.client.as_deref());
            let (consents, families) = grants_of(store, user, client).await?;
            // One row per user and client: the consent, if any, and the live families.
            let mut rows: BTreeMap<(String, String), (Option<ConsentRecord>, usize)> =
                BTreeMap::new();
            for consent in consents {
                let key = (consent.subject.clone(), consent.client_id.clone());
                rows.entry(key).or_default().0 = Some(consent);
            }
            for family in families {
                rows.entry((family.subject, family.client_id))
                    .or_default()
                    .1 += 1;
            }
            let headers = vec![
                "user",
                "client_id",
                "scope",
                "redirect_uris",
                "refresh_families",
                "consent_expires",
            ];
            let rows = rows
                .into_iter()
                .map(|((user, client_id), (consent, families))| {
                    let scope = consent
                        .as_ref()
                        .map_or(String::new(), |c| c.scope.to_string());
                    let uris = consent.as_ref().map_or(String::new(), |c| {
                        let uris: Vec<&str> = c
                            .approvals
                            .iter()
                            .map(|a| a.redirect_uri.as_str())
                            .collect();
                        uris.join(" ")
                    });
                    let expires = consent
                        .as_ref()
                        .map_or(String::new(), |c| time(c.expires_at));
                    vec![user, client_id, scope, uris, families.to_string(), expires]
                })
                .collect();
            Ok(Output::Table(headers, rows))
        }
        GrantsCommand::Revoke(filter) => {
            if filter.user.is_none() && filter.client.is_none() {
                return Err(AdminError::Refused(
                    "say whose grants: --user, --client or both".into(),
                ));
            }
            let (consents, families) =
                end_grants(store, filter.user.as_deref(), filter.client.as_deref()).await?;
            let change = Change::GrantsRevoked {
                subject: filter.user,
                client_id: filter.client,
            };
            record(store, change).await?;
            Ok(Output::Done(
                format!(
                    "revoked {consents} consents and {families} refresh-token families; a running server revokes their access tokens within a second"
                ),
                json!({"consents": consents, "refresh_families": families}),
            ))
        }
    }
}

/// A password from the first line of standard input.
fn read_password() -> Result<String, AdminError> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| AdminError::Refused(format!("standard input: {e}")))?;
    let password = input.lines().next().unwrap_or("").to_string();
    if password.is_empty() {
        return Err(AdminError::Refused("no password on standard input".into()));
    }
    Ok(password)
}

async fn hashed(password: String) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || crate::users::hash_password(&password))
        .await
        .map_err(|e| AdminError::Refused(e.to_string()))?
        .map_err(AdminError::from)
}

async fn find_user(store: &SharedStore, username: &str) -> Result<UserRecord, AdminError> {
    store
        .users()
        .await?
        .into_iter()
        .find(|u| u.username == username)
        .ok_or_else(|| AdminError::Refused(format!("no user {username}")))
}

async fn users(store: &SharedStore, command: UsersCommand) -> Result<Output, AdminError> {
    let (user, change, done) = match command {
        UsersCommand::List => {
            let mut users = store.users().await?;
            users.sort_by(|a, b| a.username.cmp(&b.username));
            let rows = users
                .into_iter()
                .map(|u| {
                    vec![
                        u.username,
                        u.display_name,
                        if u.disabled { "disabled" } else { "enabled" }.into(),
                    ]
                })
                .collect();
            return Ok(Output::Table(
                vec!["username", "display_name", "status"],
                rows,
            ));
        }
        UsersCommand::Add {
            username,
            display_name,
        } => {
            // What the sign-in page can send: at most 128 characters, none of them invisible.
            let signable = username.chars().count() <= 128
                && !username.is_empty()
                && username.trim() == username
                && !username.chars().any(|c| {
                    c.is_control() || crate::http::auth_server::pages::is_invisible_format(c)
                });
            if !signable {
                return Err(AdminError::Refused(
                    "a username is 1 to 128 visible characters, without spaces around it".into(),
                ));
            }
            if find_user(store, &username).await.is_ok() {
                return Err(AdminError::Refused(format!("the user {username} exists")));
            }
            let user = UserRecord {
                display_name: display_name.unwrap_or_else(|| username.clone()),
                username,
                password_hash: hashed(read_password()?).await?,
                disabled: false,
            };
            (user, Change::UsersChanged, "added")
        }
        UsersCommand::SetPassword { username } => {
            let mut user = find_user(store, &username).await?;
            user.password_hash = hashed(read_password()?).await?;
            (user, Change::UsersChanged, "password set for")
        }
        UsersCommand::Disable { username } => {
            let mut user = find_user(store, &username).await?;
            user.disabled = true;
            // Ended in the store too, so that a server that is not running never sees them.
            end_grants(store, Some(&username), None).await?;
            let change = Change::UserDisabled { subject: username };
            (user, change, "disabled")
        }
        UsersCommand::Enable { username } => {
            let mut user = find_user(store, &username).await?;
            user.disabled = false;
            (user, Change::UsersChanged, "enabled")
        }
    };
    store.upsert_user(&user).await?;
    record(store, change).await?;
    Ok(Output::Done(
        format!("{done} user {}", user.username),
        json!({"username": user.username, "disabled": user.disabled}),
    ))
}

#[cfg(test)]
mod tests;
