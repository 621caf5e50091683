//! `ClientRegistry`: the registered OAuth clients (RFC 7591). It owns every client record; the
//! `/register` handler sends it [`Register`] with metadata already validated by `oauth/`, and the
//! other endpoints [`Lookup`] a client by id. A confidential client's secret is kept only as a
//! SHA-256 digest (the secret is 256 random bits, so a fast hash is the right one) and compared in
//! constant time. The registry is bounded: when full, registration answers "try later" instead of
//! growing without limit. MCP clients often register on every connect, so a client that never
//! obtains a token is reaped after a configurable time through the actor's one timer; a client
//! that has redeemed a code ([`MarkUsed`]) stays. Clients from the configuration file
//! (`--clients-file`) are in the registry from the start, their secrets kept as the argon2 hashes
//! the file gives, and are never reaped.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::trace::Secret;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
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

/// A registered client. Immutable once registered; shared as `Arc<Client>`.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub secret_sha256: Option<[u8; 32]>,
    /// A configured client's secret, as an argon2 PHC string.
    pub secret_argon2: Option<String>,
    pub application_type: ApplicationType,
    pub kind: ClientKind,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub issued_at: u64,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.token_endpoint_auth_method == TokenEndpointAuthMethod::None
    }

    /// Compares a presented secret with the stored digest in constant time (argon2 for a
    /// configured client's hash: slow on purpose, so call it off the async threads).
    pub fn secret_matches(&self, presented: &str) -> bool {
        if let Some(phc) = &self.secret_argon2 {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            return PasswordHash::new(phc).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(presented.as_bytes(), &hash)
                    .is_ok()
            });
        }
        match &self.secret_sha256 {
            Some(stored) => {
                let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                digest.ct_eq(stored).into()
            }
            None => false,
        }
    }

    /// A public client described by validated metadata (a metadata document, or a configured
    /// client before its secret is set).
    pub fn from_metadata(client_id: String, meta: NewClient, kind: ClientKind) -> Client {
        Client {
            client_id,
            secret_sha256: None,
            secret_argon2: None,
            application_type: meta.application_type,
            kind,
            client_name: meta.client_name,
            redirect_uris: meta.redirect_uris,
            grant_types: meta.grant_types,
            response_types: meta.response_types,
            token_endpoint_auth_method: meta.token_endpoint_auth_method,
            scope: meta.scope,
            client_uri: meta.client_uri,
            issued_at: unix_now(),
        }
    }

    /// The name shown to users: the registered name, or the id when there is none.
    pub fn display_name(&self) -> &str {
        self.client_name.as_deref().unwrap_or(&self.client_id)
    }
}

/// Validated metadata of a client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    pub scope: Option<String>,
    pub client_uri: Option<String>,
    pub application_type: ApplicationType,
}

/// Registers a client; replies with the record and, for a confidential client, its secret (the
/// only time the secret exists in clear).
#[derive(Debug)]
pub struct Register(pub NewClient);

/// The registry holds its maximum number of clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the client registry is full")]
pub struct RegistryFull;

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

struct Registration {
    client: Arc<Client>,
    used: bool,
}

pub struct ClientRegistry {
    clients: HashMap<String, Registration>,
    expiry: ExpiryQueue<String>,
    args: ClientRegistryArgs,
}

/// Arguments of the registry: its bound, how long an unused client is kept, and the clients
/// from the configuration.
#[derive(Debug, Clone)]
pub struct ClientRegistryArgs {
    pub max_clients: usize,
    pub unused_ttl: Duration,
    pub preregistered: Vec<Arc<Client>>,
}

impl Actor for ClientRegistry {
    type Args = ClientRegistryArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "ClientRegistry"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        // Configured clients count as used: never reaped.
        let clients = args
            .preregistered
            .iter()
            .map(|client| {
                let registration = Registration {
                    client: Arc::clone(client),
                    used: true,
                };
                (client.client_id.clone(), registration)
            })
            .collect();
        Ok(ClientRegistry {
            clients,
            expiry: ExpiryQueue::default(),
            args,
        })
    }
}

impl Message<Register> for ClientRegistry {
    type Reply = Result<Registered, RegistryFull>;

    async fn handle(&mut self, msg: Register, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.clients.len() >= self.args.max_clients {
            return Err(RegistryFull);
        }
        let meta = msg.0;
        let secret = (meta.token_endpoint_auth_method != TokenEndpointAuthMethod::None)
            .then(|| Secret::random(32));
        let client = Arc::new(Client {
            // 128 random bits, base64url: unguessable and URL-safe (CL-1).
            client_id: crate::trace::random_token(16),
            secret_sha256: secret
                .as_ref()
                .map(|s| Sha256::digest(s.expose().as_bytes()).into()),
            client_name: meta.client_name,
            redirect_uris: meta.redirect_uris,
            grant_types: meta.grant_types,
            response_types: meta.response_types,
            token_endpoint_auth_method: meta.token_endpoint_auth_method,
            scope: meta.scope,
            client_uri: meta.client_uri,
            secret_argon2: None,
            application_type: meta.application_type,
            kind: ClientKind::Registered,
            issued_at: unix_now(),
        });
        self.clients.insert(
            client.client_id.clone(),
            Registration {
                client: Arc::clone(&client),
                used: false,
            },
        );
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
    type Reply = Option<Arc<Client>>;

    async fn handle(&mut self, msg: Lookup, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.clients
            .get(&msg.client_id)
            .map(|r| Arc::clone(&r.client))
    }
}

impl Message<MarkUsed> for ClientRegistry {
    type Reply = ();

    async fn handle(&mut self, msg: MarkUsed, _: &mut Context<Self, ()>) {
        if let Some(registration) = self.clients.get_mut(&msg.client_id) {
            registration.used = true;
        }
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
            if self.clients.get(&client_id).is_some_and(|r| !r.used) {
                self.clients.remove(&client_id);
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
        NewClient {
            client_name: None,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            client_uri: None,
            application_type: ApplicationType::Native,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_and_unused_clients_are_reaped() {
        let registry = ClientRegistry::spawn(ClientRegistryArgs {
            max_clients: 3,
            unused_ttl: Duration::from_secs(3600),
            preregistered: Vec::new(),
        });
        let used = registry.ask(Register(new_client())).await.unwrap();
        let _unused = registry.ask(Register(new_client())).await.unwrap();
        let _third = registry.ask(Register(new_client())).await.unwrap();
        assert!(registry.ask(Register(new_client())).await.is_err(), "full");
        registry
            .ask(MarkUsed {
                client_id: used.client.client_id.clone(),
            })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3601)).await;
        tokio::task::yield_now().await;
        assert_eq!(registry.ask(Count).await.unwrap(), 1);
        let kept = registry
            .ask(Lookup {
                client_id: used.client.client_id.clone(),
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
            secret_sha256: None,
            secret_argon2: None,
            application_type: ApplicationType::Native,
            kind: ClientKind::Configured,
            client_name: Some("Configured".into()),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            grant_types: vec!["authorization_code".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: TokenEndpointAuthMethod::None,
            scope: None,
            client_uri: None,
            issued_at: 0,
        });
        let registry = ClientRegistry::spawn(ClientRegistryArgs {
            max_clients: 10,
            unused_ttl: Duration::from_secs(60),
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
