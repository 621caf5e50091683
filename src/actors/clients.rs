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
//! Durability and memory: every registered client is in the store
//! ([`crate::store::ClientStore`]), which is the truth; the registry keeps only the clients used
//! most recently (`--cached-clients`), so its memory does not grow with the table and it starts
//! without reading it. It answers a registration only after the store committed it, reads a
//! client from the store when its cache misses (evicted, or registered by another replica), and
//! reaps in the store: a client it registered, by id, when its time is up; any other never-used
//! client, in batches by age, starting with the oldest the store holds. Both deletes are
//! conditional, so a client marked used meanwhile (at another replica) is kept.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::actors::reply::send_reply;
use crate::actors::transaction::run_transaction;
use crate::oauth::client::{Client, ClientKind, NewClient, SecretHash, new_client_id};
use crate::oauth::time::{instant_of, unix_now, unix_now_ms};
use crate::store::{ClientMap, ClientRecord, SharedStore, StoreError};
use crate::trace::Secret;
use cache::ClientCache;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use kameo::reply::{DelegatedReply, ReplySender};
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
    /// Too many registrations are waiting for their commit.
    #[error("too many registrations are waiting")]
    Busy,
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

/// The number of clients: those stored (as counted at start and kept since) and those of the
/// configuration.
#[derive(Debug)]
pub struct CountClients;

/// The number of clients held in memory (tests, the benchmark).
#[derive(Debug)]
pub struct CountCachedClients;

/// Forgets a client that was deleted from the store (`mcp-oauth admin clients delete`); true if
/// the registry held it.
#[derive(Debug)]
pub struct ForgetClient {
    pub client_id: String,
}

/// A registered client and, right after registration, its secret.
pub struct Registered {
    pub client: Arc<Client>,
    pub secret: Option<Secret>,
}

/// What a reaping deadline is for.
enum Reap {
    /// A client this registry registered: deleted by id if still unused.
    Client(Arc<str>),
    /// The store's never-used clients old enough, in batches.
    Stored,
}

pub struct ClientRegistry {
    /// Registered clients, those not looked up lately evicted first (`clients/cache.rs`).
    cache: ClientCache,
    /// The clients of the configuration: always held, never stored, never reaped.
    configured: ClientMap,
    /// Clients in the store: counted at start and at each batch reaping, kept in between.
    stored: u64,
    /// Registrations waiting for the next transaction.
    pending: Vec<Pending>,
    /// Registrations in the transaction being committed (0: none is).
    committing: usize,
    /// This instance (a random number): a transaction an instance before a restart began is
    /// not this one's.
    run: u64,
    /// How many times the stored clients were counted again.
    recounts: u64,
    expiry: ExpiryQueue<Reap>,
    args: ClientRegistryArgs,
}

/// Arguments of the registry: its bound, how many clients it keeps in memory, how long an unused
/// client is kept, the store, and the clients from the configuration.
#[derive(Debug, Clone)]
pub struct ClientRegistryArgs {
    pub max_clients: usize,
    pub cached: usize,
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
        let mut configured = ClientMap::default();
        for client in &args.preregistered {
            configured.insert(ClientRecord {
                client: Arc::clone(client),
                used: true,
            });
        }
        let mut registry = ClientRegistry {
            cache: ClientCache::new(args.cached),
            configured,
            stored: 0,
            pending: Vec::new(),
            committing: 0,
            run: rand::random(),
            recounts: 0,
            expiry: ExpiryQueue::default(),
            args,
        };
        // The count and the first batch reaping; a store that cannot answer yet is asked again
        // at the retry (registrations and lookups reach it anyway).
        registry.recount().await;
        registry.schedule_batch(&actor).await;
        Ok(registry)
    }
}

impl ClientRegistry {
    /// Keeps a client in the cache, evicting one not looked up lately beyond its size.
    fn remember(&mut self, record: ClientRecord) -> Arc<Client> {
        let client = Arc::clone(&record.client);
        self.cache.insert(record);
        client
    }

    /// Schedules the next batch reaping at the deadline of the oldest never-used stored client.
    async fn schedule_batch(&mut self, actor: &ActorRef<Self>) {
        let now = Instant::now();
        let at = match self.args.store.oldest_unused_client().await {
            // None yet: any client registered from now on is due a TTL from now at the earliest
            // (those this registry registers are reaped by id, those of another server here).
            Ok(None) => now + self.args.unused_ttl,
            // Never sooner than a second: a client another replica registered with a clock
            // behind this one's is not chased in a loop.
            Ok(Some(issued_at)) => {
                instant_of(issued_at.saturating_add(self.args.unused_ttl.as_secs()))
                    .max(now + Duration::from_secs(1))
            }
            Err(err) => {
                tracing::warn!(actor = "ClientRegistry", error = %err, "reaping deferred");
                now + REAP_RETRY
            }
        };
        self.expiry.schedule(at, Reap::Stored, actor);
    }

    /// Deletes one client this registry registered, if it is still unused.
    async fn reap_client(&mut self, client_id: Arc<str>, actor: &ActorRef<Self>) -> bool {
        if self.cache.peek(&client_id).is_some_and(|r| r.used) {
            return false;
        }
        match self.args.store.delete_unused_client(&client_id).await {
            Ok(deleted) => {
                // Used meanwhile (through another replica) or already gone: the next lookup
                // reads what the store says, and the count is taken again.
                self.cache.remove(&client_id);
                if deleted {
                    self.stored = self.stored.saturating_sub(1);
                } else {
                    self.recount().await;
                }
                deleted
            }
            Err(err) => {
                tracing::warn!(actor = "ClientRegistry", error = %err, "reaping deferred");
                self.expiry
                    .schedule(Instant::now() + REAP_RETRY, Reap::Client(client_id), actor);
                false
            }
        }
    }

    /// Deletes a batch of the store's never-used clients whose time is up, then counts again
    /// and schedules the next batch.
    async fn reap_stored(&mut self, actor: &ActorRef<Self>) -> usize {
        let issued_by = unix_now().saturating_sub(self.args.unused_ttl.as_secs());
        let reaped = match self.args.store.reap_unused_clients(issued_by).await {
            Ok(ids) => ids,
            Err(err) => {
                tracing::warn!(actor = "ClientRegistry", error = %err, "reaping deferred");
                self.expiry
                    .schedule(Instant::now() + REAP_RETRY, Reap::Stored, actor);
                return 0;
            }
        };
        for id in &reaped {
            self.cache.remove(id.as_str());
        }
        self.recount().await;
        self.schedule_batch(actor).await;
        reaped.len()
    }

    /// Counts the stored clients again (another server may have registered or reaped some).
    async fn recount(&mut self) {
        self.recounts += 1;
        match self.args.store.count_clients().await {
            Ok(stored) => self.stored = stored,
            Err(err) => {
                tracing::warn!(actor = "ClientRegistry", error = %err, "clients not counted")
            }
        }
    }
}

impl Message<Register> for ClientRegistry {
    type Reply = DelegatedReply<Result<Registered, RegisterError>>;

    async fn handle(&mut self, msg: Register, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        let waiting = self.pending.len() + self.committing;
        let refusal = if self.stored + waiting as u64 >= self.args.max_clients as u64 {
            Some(RegisterError::Full)
        } else if self.pending.len() >= MAX_PENDING {
            // Shed rather than queue: a caller that gave up must not leave a client behind.
            Some(RegisterError::Busy)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            send_reply(reply, Err(refusal));
            return delegated;
        }
        let meta = msg.0;
        let secret = meta
            .token_endpoint_auth_method
            .uses_secret()
            .then(|| Secret::random(32));
        // Time-ordered, with 128 random bits: unguessable and URL-safe (CL-1).
        let mut client =
            Client::from_metadata(new_client_id(unix_now_ms()), meta, ClientKind::Registered);
        if let Some(secret) = &secret {
            client.secret = Some(Box::new(SecretHash::Sha256(secret.sha256())));
        }
        let record = ClientRecord {
            client: Arc::new(client),
            used: false,
        };
        self.pending.push(Pending {
            record,
            secret,
            reply,
        });
        if self.committing == 0 {
            self.commit_pending(ctx.actor_ref());
        }
        delegated
    }
}

/// A registration waiting for its commit.
struct Pending {
    record: ClientRecord,
    secret: Option<Secret>,
    reply: Option<ReplySender<Result<Registered, RegisterError>>>,
}

/// Most registrations committed in one transaction.
const MAX_BATCH: usize = 256;

/// Most registrations waiting for a transaction; beyond it, "try later".
const MAX_PENDING: usize = 4 * MAX_BATCH;

/// The registrations of one transaction, committed or not: sent to the registry by the task
/// that wrote them and answered their callers.
struct Committed {
    records: Result<Vec<ClientRecord>, StoreError>,
    count: usize,
    /// The registry instance that started the transaction (a restarted one ignores the old
    /// instance's), and how many recounts it had made then.
    run: u64,
    recounts: u64,
}

impl ClientRegistry {
    /// Group commit: the registrations waiting are written in one transaction by a task of
    /// their own, which answers each caller once it has committed (none before: a crash after an
    /// answer loses nothing), while the next registrations wait for the following transaction.
    /// One transaction at a time, so a commit's cost is shared by everyone who came meanwhile.
    fn commit_pending(&mut self, actor: &ActorRef<Self>) {
        let count = self.pending.len().min(MAX_BATCH);
        let batch: Vec<Pending> = self.pending.drain(..count).collect();
        if batch.is_empty() {
            return;
        }
        self.committing = batch.len();
        let store = Arc::clone(&self.args.store);
        let actor = actor.downgrade();
        let (run, recounts) = (self.run, self.recounts);
        tokio::spawn(async move {
            let records: Vec<ClientRecord> = batch.iter().map(|p| p.record.clone()).collect();
            let insert = {
                let (store, records) = (Arc::clone(&store), records.clone());
                async move { store.insert_clients(&records).await }
            };
            let committed = run_transaction("registration", insert).await;
            for pending in batch {
                let answer = match &committed {
                    Ok(()) => Ok(Registered {
                        client: Arc::clone(&pending.record.client),
                        secret: pending.secret,
                    }),
                    Err(err) => Err(RegisterError::Store(err.clone())),
                };
                if let Some(reply) = pending.reply {
                    reply.send(answer);
                }
            }
            if let Some(actor) = actor.upgrade() {
                let committed = Committed {
                    records: committed.map(|()| records),
                    count,
                    run,
                    recounts,
                };
                let _ = actor.tell(committed).await;
            }
        });
    }
}

impl Message<Committed> for ClientRegistry {
    type Reply = ();

    async fn handle(&mut self, msg: Committed, ctx: &mut Context<Self, ()>) {
        // An instance before a restart started it: its count at start had what was committed.
        if msg.run != self.run {
            return;
        }
        self.committing = self.committing.saturating_sub(msg.count);
        // A recount since the transaction began may have counted its rows already.
        let counted = msg.recounts != self.recounts;
        if counted {
            self.recount().await;
        }
        if let Ok(records) = msg.records {
            for record in records {
                if !counted {
                    self.stored += 1;
                }
                // A lookup or a mark since the answer may have cached it already, as it is now.
                let client = match self.cache.peek(&record.client.client_id) {
                    Some(cached) => Arc::clone(&cached.client),
                    None => self.remember(record),
                };
                self.expiry.schedule(
                    Instant::now() + self.args.unused_ttl,
                    Reap::Client(client.client_id.clone()),
                    ctx.actor_ref(),
                );
                tracing::info!(
                    client_id = %client.client_id,
                    name = client.display_name(),
                    public = client.is_public(),
                    registered = self.stored,
                    "client registered"
                );
            }
        }
        self.commit_pending(ctx.actor_ref());
    }
}

impl Message<LookupClient> for ClientRegistry {
    type Reply = Result<Option<Arc<Client>>, StoreError>;

    async fn handle(
        &mut self,
        msg: LookupClient,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        // Configured clients win over a stored client that has the same id.
        if let Some(configured) = self.configured.get(&msg.client_id) {
            return Ok(Some(Arc::clone(&configured.client)));
        }
        // A never-used client past its reaping time may have been reaped by another server:
        // read it again.
        let reap_by = unix_now().saturating_sub(self.args.unused_ttl.as_secs());
        if let Some(registration) = self.cache.get(msg.client_id.as_str())
            && (registration.used || registration.client.issued_at > reap_by)
        {
            return Ok(Some(Arc::clone(&registration.client)));
        }
        self.cache.remove(msg.client_id.as_str());
        match self.args.store.client(&msg.client_id).await? {
            Some(record) => Ok(Some(self.remember(record))),
            None => Ok(None),
        }
    }
}

impl Message<MarkUsed> for ClientRegistry {
    type Reply = Result<(), StoreError>;

    async fn handle(&mut self, msg: MarkUsed, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.configured.get(&msg.client_id).is_some() {
            return Ok(());
        }
        match self.cache.get_mut(msg.client_id.as_str()) {
            Some(registration) if registration.used => Ok(()),
            Some(registration) => {
                self.args.store.mark_client_used(&msg.client_id).await?;
                registration.used = true;
                Ok(())
            }
            // Evicted since its lookup: the store's update is conditional anyway.
            None => self.args.store.mark_client_used(&msg.client_id).await,
        }
    }
}

/// Can the store be read? (readiness)
#[derive(Debug)]
pub struct CheckStore;

impl Message<ForgetClient> for ClientRegistry {
    type Reply = bool;

    async fn handle(&mut self, msg: ForgetClient, _: &mut Context<Self, bool>) -> bool {
        self.recount().await;
        // A reaping deadline still queued for it finds nothing to reap.
        self.cache.remove(msg.client_id.as_str()).is_some()
    }
}

impl Message<CheckStore> for ClientRegistry {
    type Reply = Result<(), StoreError>;

    async fn handle(&mut self, _: CheckStore, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.args.store.ping().await
    }
}

impl Message<CountClients> for ClientRegistry {
    type Reply = u64;

    async fn handle(&mut self, _: CountClients, _: &mut Context<Self, u64>) -> u64 {
        self.stored + self.configured.len() as u64
    }
}

impl Message<CountCachedClients> for ClientRegistry {
    type Reply = usize;

    async fn handle(&mut self, _: CountCachedClients, _: &mut Context<Self, usize>) -> usize {
        self.cache.len()
    }
}

impl Message<Sweep> for ClientRegistry {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let mut reaped = 0;
        for due in self.expiry.pop_due(Instant::now(), ctx.actor_ref()) {
            reaped += match due {
                Reap::Client(client_id) => {
                    usize::from(self.reap_client(client_id, ctx.actor_ref()).await)
                }
                Reap::Stored => self.reap_stored(ctx.actor_ref()).await,
            };
        }
        if reaped > 0 {
            tracing::info!(
                actor = "ClientRegistry",
                reaped,
                registered = self.stored,
                "timer: unused clients reaped"
            );
        }
    }
}

mod cache;

#[cfg(test)]
mod tests;
