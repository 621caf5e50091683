//! `ClientRegistry`: the registered OAuth clients (RFC 7591). It owns every client record (the
//! record itself, [`Client`], is in `oauth::client`); the `/register` handler sends it [`Register`]
//! with metadata already validated by `oauth/`, and the other endpoints send [`LookupClient`].
//! A registered confidential client's secret is 256 random bits, kept only as its SHA-256 digest.
//! The registry is bounded: when full, registration answers "try later" instead of
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
use crate::oauth::client::{Client, ClientKind, NewClient, SecretHash};
use crate::oauth::time::instant_of;
use crate::store::{ClientMap, ClientRecord, SharedStore, StoreError};
use crate::trace::Secret;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

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
pub struct LookupClient {
    pub client_id: String,
}

/// Records that a client completed a flow (redeemed a code), so it is never reaped.
#[derive(Debug)]
pub struct MarkUsed {
    pub client_id: String,
}

/// The number of registered clients.
#[derive(Debug)]
pub struct CountClients;

/// Forgets a client that was deleted from the store (`mcp-oauth admin clients delete`); true if
/// the registry knew it.
#[derive(Debug)]
pub struct ForgetClient {
    pub client_id: String,
}

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
        let secret = meta
            .token_endpoint_auth_method
            .uses_secret()
            .then(|| Secret::random(32));
        // 128 random bits, base64url: unguessable and URL-safe (CL-1).
        let mut client =
            Client::from_metadata(crate::trace::random_token(16), meta, ClientKind::Registered);
        if let Some(secret) = &secret {
            client.secret = Some(Box::new(SecretHash::Sha256(secret.sha256())));
        }
        let client = Arc::new(client);
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

impl Message<LookupClient> for ClientRegistry {
    type Reply = Result<Option<Arc<Client>>, StoreError>;

    async fn handle(
        &mut self,
        msg: LookupClient,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
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

/// Can the store be read? (readiness)
#[derive(Debug)]
pub struct CheckStore;

impl Message<ForgetClient> for ClientRegistry {
    type Reply = bool;

    async fn handle(&mut self, msg: ForgetClient, _: &mut Context<Self, bool>) -> bool {
        // A reaping timer still armed for it finds nothing to reap.
        self.clients.remove(&msg.client_id).is_some()
    }
}

impl Message<CheckStore> for ClientRegistry {
    type Reply = Result<(), StoreError>;

    async fn handle(&mut self, _: CheckStore, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.args.store.ping().await
    }
}

impl Message<CountClients> for ClientRegistry {
    type Reply = usize;

    async fn handle(&mut self, _: CountClients, _: &mut Context<Self, usize>) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::client::{ApplicationType, GrantTypes, TokenEndpointAuthMethod};
    use kameo::actor::Spawn;

    fn new_client() -> NewClient {
        NewClient::public_loopback()
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
        assert_eq!(registry.ask(CountClients).await.unwrap(), 1);
        // Reaped clients are gone from the store too; the used one is kept there.
        let stored = store.clients().await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].client.client_id, used.client.client_id);
        assert!(stored[0].used);
        let kept = registry
            .ask(LookupClient {
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
        assert_eq!(registry.ask(CountClients).await.unwrap(), 1);
        let kept = registry
            .ask(LookupClient {
                client_id: "configured".into(),
            })
            .await
            .unwrap();
        assert!(kept.is_some_and(|c| c.kind == ClientKind::Configured));
    }
}
