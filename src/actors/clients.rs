//! `ClientRegistry`: the registered OAuth clients (RFC 7591). It owns every client record; the
//! `/register` handler sends it [`Register`] with metadata already validated by `oauth/`, and the
//! other endpoints [`Lookup`] a client by id. A confidential client's secret is kept only as a
//! SHA-256 digest (the secret is 256 random bits, so a fast hash is the right one) and compared in
//! constant time. The registry is bounded: when full, registration answers "try later" instead of
//! growing without limit. MCP clients often register on every connect, so a client that never
//! obtains a token is reaped after a configurable time through the actor's one timer; a client
//! that has redeemed a code ([`MarkUsed`]) stays. Clients from the configuration file
//! (`--clients-file`) are in the registry from the start, their secrets kept as the argon2 hashes
//! the file gives, and are never reaped nor stored.
//!
//! Durability: every client is in the store ([`crate::store::ClientStore`]). The registry loads
//! them at start, answers a registration only after the store committed it, looks a client up in
//! the store when its map misses (another replica may have registered it), and deletes a reaped
//! client from the store with a conditional delete, so a client marked used meanwhile is kept.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::store::{ClientMap, ClientRecord, SharedStore, StoreError, instant_of};
use crate::trace::Secret;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

pub use crate::oauth::client_metadata::ApplicationType;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpointAuthMethod {
    None,
    ClientSecretBasic,
    ClientSecretPost,
}

impl TokenEndpointAuthMethod {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "none" => Some(Self::None),
            "client_secret_basic" => Some(Self::ClientSecretBasic),
            "client_secret_post" => Some(Self::ClientSecretPost),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
        }
    }
}

/// Where a client's record comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Dynamic client registration (`POST /register`).
    Registered,
    /// The configuration file (`--clients-file`).
    Configured,
    /// A Client ID Metadata Document fetched from its `client_id` URL.
    MetadataDocument,
}

/// The grant types a client may use. `authorization_code` is always one of them (registration
/// requires it); the only other grant this server supports is `refresh_token`, so the set is a
/// flag rather than a list of strings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct GrantTypes {
    refresh_token: bool,
}

/// As the list of names, the way the trace showed it when it was one.
impl std::fmt::Debug for GrantTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl GrantTypes {
    /// `authorization_code` alone.
    pub const AUTHORIZATION_CODE: GrantTypes = GrantTypes {
        refresh_token: false,
    };
    /// `authorization_code` and `refresh_token`: the registration default.
    pub const WITH_REFRESH_TOKEN: GrantTypes = GrantTypes {
        refresh_token: true,
    };

    /// The set a list of grant type names describes, if this server supports it: it must name
    /// `authorization_code`, and nothing beyond it and `refresh_token`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Option<GrantTypes> {
        let mut code = false;
        let mut refresh_token = false;
        for name in names {
            match name.as_ref() {
                "authorization_code" => code = true,
                "refresh_token" => refresh_token = true,
                _ => return None,
            }
        }
        code.then_some(GrantTypes { refresh_token })
    }

    /// Whether the client may use refresh tokens.
    pub fn refresh_token(self) -> bool {
        self.refresh_token
    }

    /// The names, as registration metadata lists them.
    pub fn names(self) -> &'static [&'static str] {
        if self.refresh_token {
            &["authorization_code", "refresh_token"]
        } else {
            &["authorization_code"]
        }
    }
}

/// How a confidential client's secret is kept: never in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHash {
    /// A registered client's secret (256 random bits) as its SHA-256 digest.
    Sha256([u8; 32]),
    /// A configured client's secret, as the argon2 PHC string the clients file gives.
    Argon2(String),
}

/// The response types every client has: the authorization code flow is the only one.
pub const RESPONSE_TYPES: [&str; 1] = ["code"];

/// A registered client. Immutable once registered; shared as `Arc<Client>` by the registry, the
/// in-memory store and the handlers. Kept compact, since a server may hold `--max-clients` of
/// them: the id is an `Arc<str>` the registry's reaping queue shares (its maps key the record by
/// this id, without a copy: [`crate::store::ClientMap`]), strings are boxed slices, a secret's
/// hash is boxed (public clients, the most common, have none), and the grant types are a flag.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: Arc<str>,
    pub secret: Option<Box<SecretHash>>,
    pub application_type: ApplicationType,
    pub kind: ClientKind,
    pub client_name: Option<Box<str>>,
    pub redirect_uris: Box<[Box<str>]>,
    pub grant_types: GrantTypes,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub scope: Option<Box<str>>,
    pub client_uri: Option<Box<str>>,
    pub issued_at: u64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == TokenEndpointAuthMethod::None
    }

    /// Compares a presented secret with the stored digest in constant time (argon2 for a
    /// configured client's hash: slow on purpose, so call it off the async threads).
    pub fn secret_matches(&self, presented: &str) -> bool {
        match self.secret.as_deref() {
            Some(SecretHash::Argon2(phc)) => {
                use argon2::password_hash::{PasswordHash, PasswordVerifier};
                PasswordHash::new(phc).is_ok_and(|hash| {
                    argon2::Argon2::default()
                        .verify_password(presented.as_bytes(), &hash)
                        .is_ok()
                })
            }
            Some(SecretHash::Sha256(stored)) => {
                let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                digest.ct_eq(stored).into()
            }
            None => false,
        }
    }

    /// Whether checking the secret is an argon2 verification (slow on purpose).
    pub fn secret_is_argon2(&self) -> bool {
        matches!(self.secret.as_deref(), Some(SecretHash::Argon2(_)))
    }

    /// A public client described by validated metadata (a metadata document, or a configured
    /// client before its secret is set).
    pub fn from_metadata(
        client_id: impl Into<Arc<str>>,
        meta: NewClient,
        kind: ClientKind,
    ) -> Client {
        Client {
            client_id: client_id.into(),
            secret: None,
            application_type: meta.application_type,
            kind,
            client_name: meta.client_name.map(String::into_boxed_str),
            redirect_uris: boxed_strs(meta.redirect_uris),
            grant_types: meta.grant_types,
            token_endpoint_auth_method: meta.token_endpoint_auth_method,
            scope: meta.scope.map(String::into_boxed_str),
            client_uri: meta.client_uri.map(String::into_boxed_str),
            issued_at: unix_now(),
        }
    }

    /// The name shown to users: the registered name, or the id when there is none.
    pub fn display_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }
}

/// A list of strings as one boxed slice of boxed strings, without spare capacity.
pub fn boxed_strs(list: Vec<String>) -> Box<[Box<str>]> {
    list.into_iter().map(String::into_boxed_str).collect()
}

#[cfg(test)]
impl NewClient {
    /// A public native client with one loopback redirect URI: the fixture of unit tests.
    pub(crate) fn public_loopback() -> NewClient {
        NewClient {
            client_name: None,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: GrantTypes::AUTHORIZATION_CODE,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            client_uri: None,
            application_type: ApplicationType::Native,
        }
    }
}

/// Validated metadata of a client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: GrantTypes,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub application_type: ApplicationType,
}

/// Registers a client; replies with the record and, for a confidential client, its secret (the
/// only time the secret exists in clear).
#[derive(Debug)]
pub struct Register(pub NewClient);

/// Why a registration was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegisterError {
    /// The registry holds its maximum number of clients.
    #[error("the client registry is full")]
    Full,
    /// The store did not commit the client.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Looks up a client by id.
#[derive(Debug)]
pub struct Lookup {
    pub client_id: String,
}

/// Records that a client completed a flow (redeemed a code), so it is never reaped.
#[derive(Debug)]
pub struct MarkUsed {
    pub client_id: String,
}

/// The number of registered clients.
#[derive(Debug)]
pub struct Count;

/// A registered client and, right after registration, its secret.
pub struct Registered {
    pub client: Arc<Client>,
    pub secret: Option<Secret>,
}

pub struct ClientRegistry {
    clients: ClientMap,
    expiry: ExpiryQueue<Arc<str>>,
    args: ClientRegistryArgs,
}

/// Arguments of the registry: its bound, how long an unused client is kept, the store, and the
/// clients from the configuration.
#[derive(Debug, Clone)]
pub struct ClientRegistryArgs {
    pub max_clients: usize,
    pub unused_ttl: Duration,
    pub store: SharedStore,
    pub preregistered: Vec<Arc<Client>>,
}

/// How long a reaping that the store could not commit waits before it is tried again.
const REAP_RETRY: Duration = Duration::from_secs(60);

impl Actor for ClientRegistry {
    type Args = ClientRegistryArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "ClientRegistry"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut registry = ClientRegistry {
            clients: ClientMap::default(),
            expiry: ExpiryQueue::default(),
            args,
        };
        match registry.args.store.clients().await {
            Ok(records) => {
                for record in records {
                    registry.remember(record, &actor);
                }
                tracing::info!(
                    actor = "ClientRegistry",
                    loaded = registry.clients.len(),
                    "clients loaded"
                );
            }
            // Lookups still reach the store on a miss; registrations still need it to commit.
            Err(err) => {
                tracing::error!(actor = "ClientRegistry", error = %err, "clients not loaded")
            }
        }
        // Configured clients count as used (never reaped) and win over a stored client that has
        // the same id.
        for client in &registry.args.preregistered {
            registry.clients.insert(ClientRecord {
                client: Arc::clone(client),
                used: true,
            });
        }
        Ok(registry)
    }
}

impl ClientRegistry {
    /// Keeps a stored client in the map, with its reaping deadline if it was never used.
    fn remember(&mut self, record: ClientRecord, actor: &ActorRef<Self>) -> Arc<Client> {
        let client = record.client;
        if !record.used {
            let reap_at = client
                .issued_at
                .saturating_add(self.args.unused_ttl.as_secs());
            self.expiry
                .schedule(instant_of(reap_at), client.client_id.clone(), actor);
        }
        self.clients.insert(ClientRecord {
            client: Arc::clone(&client),
            used: record.used,
        });
        client
    }
}

impl Message<Register> for ClientRegistry {
    type Reply = Result<Registered, RegisterError>;

    async fn handle(&mut self, msg: Register, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.clients.len() >= self.args.max_clients {
            return Err(RegisterError::Full);
        }
        let meta = msg.0;
        let secret = (meta.token_endpoint_auth_method != TokenEndpointAuthMethod::None)
            .then(|| Secret::random(32));
        let client = Arc::new(Client {
            secret: secret.as_ref().map(|s| {
                Box::new(SecretHash::Sha256(
                    Sha256::digest(s.expose().as_bytes()).into(),
                ))
            }),
            // 128 random bits, base64url: unguessable and URL-safe (CL-1).
            ..Client::from_metadata(crate::trace::random_token(16), meta, ClientKind::Registered)
        });
        // Acknowledged only once committed: a crash after this answer loses nothing.
        let record = ClientRecord {
            client: Arc::clone(&client),
            used: false,
        };
        self.args.store.insert_client(&record).await?;
        self.clients.insert(record);
        self.expiry.schedule(
            Instant::now() + self.args.unused_ttl,
            client.client_id.clone(),
            ctx.actor_ref(),
        );
        tracing::info!(
            client_id = %client.client_id,
            name = client.display_name(),
            public = client.is_public(),
            registered = self.clients.len(),
            "client registered"
        );
        Ok(Registered { client, secret })
    }
}

impl Message<Lookup> for ClientRegistry {
    type Reply = Result<Option<Arc<Client>>, StoreError>;

    async fn handle(&mut self, msg: Lookup, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(registration) = self.clients.get(msg.client_id.as_str()) {
            return Ok(Some(Arc::clone(&registration.client)));
        }
        match self.args.store.client(&msg.client_id).await? {
            Some(record) => Ok(Some(self.remember(record, ctx.actor_ref()))),
            None => Ok(None),
        }
    }
}

impl Message<MarkUsed> for ClientRegistry {
    type Reply = Result<(), StoreError>;

    async fn handle(&mut self, msg: MarkUsed, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(registration) = self.clients.get_mut(msg.client_id.as_str())
            && !registration.used
        {
            self.args.store.mark_client_used(&msg.client_id).await?;
            registration.used = true;
        }
        Ok(())
    }
}

impl Message<Count> for ClientRegistry {
    type Reply = usize;

    async fn handle(&mut self, _: Count, _: &mut Context<Self, usize>) -> usize {
        self.clients.len()
    }
}

impl Message<Sweep> for ClientRegistry {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let due = self.expiry.pop_due(Instant::now(), ctx.actor_ref());
        let before = self.clients.len();
        for client_id in due {
            if self.clients.get(&client_id).is_none_or(|r| r.used) {
                continue;
            }
            match self.args.store.delete_unused_client(&client_id).await {
                Ok(true) => {
                    self.clients.remove(&client_id);
                }
                // Used meanwhile (through another replica), or already gone: keep what the
                // store says.
                Ok(false) => match self.args.store.client(&client_id).await {
                    Ok(Some(record)) => {
                        if let Some(r) = self.clients.get_mut(&client_id) {
                            r.used = record.used;
                        }
                    }
                    Ok(None) => {
                        self.clients.remove(&client_id);
                    }
                    Err(err) => {
                        tracing::warn!(actor = "ClientRegistry", error = %err, "reaping deferred")
                    }
                },
                Err(err) => {
                    tracing::warn!(actor = "ClientRegistry", error = %err, "reaping deferred");
                    self.expiry
                        .schedule(Instant::now() + REAP_RETRY, client_id, ctx.actor_ref());
                }
            }
        }
        let reaped = before - self.clients.len();
        if reaped > 0 {
            tracing::info!(
                actor = "ClientRegistry",
                reaped,
                registered = self.clients.len(),
                "timer: unused clients reaped"
            );
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    fn new_client() -> NewClient {
        NewClient::public_loopback()
    }

    #[test]
    fn grant_types_are_a_flag() {
        assert_eq!(
            GrantTypes::parse(&["refresh_token", "authorization_code"]),
            Some(GrantTypes::WITH_REFRESH_TOKEN)
        );
        assert_eq!(
            GrantTypes::parse(&["authorization_code"]),
            Some(GrantTypes::AUTHORIZATION_CODE)
        );
        assert_eq!(GrantTypes::parse(&["refresh_token"]), None);
        assert_eq!(GrantTypes::parse(&["authorization_code", "implicit"]), None);
        assert_eq!(GrantTypes::parse::<&str>(&[]), None);
        assert_eq!(
            GrantTypes::WITH_REFRESH_TOKEN.names(),
            ["authorization_code", "refresh_token"]
        );
        assert!(!GrantTypes::AUTHORIZATION_CODE.refresh_token());
    }

    /// The record stays small: the registry holds up to `--max-clients` of them.
    #[test]
    fn a_client_record_is_compact() {
        assert!(
            std::mem::size_of::<Client>() <= 104,
            "{} bytes",
            std::mem::size_of::<Client>()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_and_unused_clients_are_reaped() {
        let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
        let registry = ClientRegistry::spawn(ClientRegistryArgs {
            max_clients: 3,
            unused_ttl: Duration::from_secs(3600),
            store: Arc::clone(&store),
            preregistered: Vec::new(),
        });
        let used = registry.ask(Register(new_client())).await.unwrap();
        let _unused = registry.ask(Register(new_client())).await.unwrap();
        let _third = registry.ask(Register(new_client())).await.unwrap();
        assert!(registry.ask(Register(new_client())).await.is_err(), "full");
        registry
            .ask(MarkUsed {
                client_id: used.client.client_id.to_string(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3601)).await;
        tokio::task::yield_now().await;
        assert_eq!(registry.ask(Count).await.unwrap(), 1);
        // Reaped clients are gone from the store too; the used one is kept there.
        let stored = store.clients().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].client.client_id, used.client.client_id);
        assert!(stored[0].used);
        let kept = registry
            .ask(Lookup {
                client_id: used.client.client_id.to_string(),
            })
            .await
            .unwrap();
        assert!(kept.is_some());
        assert!(
            registry.ask(Register(new_client())).await.is_ok(),
            "room again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn configured_clients_are_never_reaped() {
        let configured = Arc::new(Client {
            client_id: "configured".into(),
            secret: None,
            application_type: ApplicationType::Native,
            kind: ClientKind::Configured,
            client_name: Some("Configured".into()),
            redirect_uris: Box::new(["http://127.0.0.1/cb".into()]),
            grant_types: GrantTypes::AUTHORIZATION_CODE,
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            client_uri: None,
            issued_at: 0,
        });
        let registry = ClientRegistry::spawn(ClientRegistryArgs {
            max_clients: 10,
            unused_ttl: Duration::from_secs(60),
            store: Arc::new(crate::store::MemoryStore::new()),
            preregistered: vec![configured],
        });
        let _unused = registry.ask(Register(new_client())).await.unwrap();
        tokio::time::sleep(Duration::from_secs(61)).await;
        tokio::task::yield_now().await;
        assert_eq!(registry.ask(Count).await.unwrap(), 1);
        let kept = registry
            .ask(Lookup {
                client_id: "configured".into(),
            })
            .await
            .unwrap();
        assert!(kept.is_some_and(|c| c.kind == ClientKind::Configured));
    }
}
