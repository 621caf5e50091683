//! `RefreshTokens`: refresh-token families (OAuth 2.1 section 4.3, RFC 9700 section 4.14, TK-3).
//!
//! A family is what one authorization (one redeemed code) grants over time: client, subject,
//! scope, resource and flow, an absolute deadline, and an idle deadline pushed back by every use.
//! Its tokens are opaque (256 bits, base64url) and kept only as SHA-256 digests. Exactly one token
//! of a family is current; [`RotateRefreshToken`] rotates it, so every use answers a new token and
//! retires the one presented.
//!
//! Reuse detection: presenting a retired token revokes the whole family, the current token
//! included, and the access tokens minted from it. One exception absorbs the race of two
//! concurrent refreshes of one token (a client with two tabs, or a retry after a lost answer):
//! within the grace window after a rotation, presenting the token that rotation retired (only that
//! one, only by its client) answers the *same* successor token again, with a fresh access token,
//! and changes nothing. Both callers then hold the one current token, so whichever answer the
//! client keeps stays valid, and a thief who raced the client still shares a single chain that
//! reuse detection watches. The successor is derived, not stored: `HMAC-SHA256(key = presented
//! token, message = salt)` with a fresh random salt per rotation, kept with the family. Only a
//! caller holding the retired token can recompute it, and a store that holds digests and salts
//! only can still answer the retry (for example on another replica). After the window, the retired
//! token is reuse.
//!
//! Refused requests never consume a token: another client, another resource or a wider scope
//! leaves the family as it was. A family ends at its absolute or idle deadline (the actor's one
//! timer), on reuse, on revocation (RFC 7009, or the user revoking the client's consent), or when
//! the code it came from is replayed; in the last four cases the actor also revokes the access
//! tokens minted from it, through the `Revocations` actor, before it answers
//! (`refresh_tokens/revocation.rs`).
//!
//! Persistence and memory: the store ([`RefreshTokenStore`], `store/refresh_tokens.rs`) is the
//! truth; every change goes through it and is answered only once it has committed (the writes
//! waiting together share one transaction: `refresh_tokens/commit.rs`). The actor
//! keeps the families used most recently (`--cached-refresh-families`) and reads a family from
//! the store when a token it does not hold is presented, so its memory does not grow with the
//! table and it reads nothing at start. The access tokens minted here from each family are kept
//! apart from that cache, until they expire, so that a family evicted and then ended still has
//! them revoked. The store's dead families, cached or not, are deleted by a sweep every minute.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::actors::reply::send_reply;
use crate::actors::revocations::Revocations;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now_ms;
use crate::store::{ChangeStore, FamilyRecord, RefreshTokenStore, Rotation, StoreError, TokenHash};
use crate::trace::{FlowId, Secret};
use hashlink::LruCache;
use kameo::actor::{Actor, ActorRef};
use kameo::message::{Context, Message};
use kameo::reply::{DelegatedReply, ReplySender};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

mod cache;
mod commit;
mod queries;
mod revocation;
mod revocation_messages;
mod shared;

pub use revocation_messages::{
    EndError, EndedFamilies, FamilyEndedElsewhere, RevokeClientFamilies, RevokeCodeFamily,
    RevokeRefreshToken, TokenRevocation,
};

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// What a family grants, as the token endpoint reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyGrant {
    pub family_id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub flow: FlowId,
}

/// Starts a family at code redemption; replies with its first token.
#[derive(Debug)]
pub struct IssueRefreshToken {
    pub client_id: String,
    pub subject: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub flow: FlowId,
    /// The access token issued with it: its `jti` and lifetime.
    pub access_jti: String,
    pub access_ttl: Duration,
}

/// Exchanges a refresh token (`grant_type=refresh_token`). The checks are made before anything
/// changes: another client, another resource or a wider scope consumes nothing.
#[derive(Debug)]
pub struct RotateRefreshToken {
    pub token: Secret,
    pub client_id: String,
    /// The `resource` parameter, already resolved to a known resource when it names one.
    pub resource: Option<String>,
    /// The `scope` parameter, if sent: it may only narrow the family's scope.
    pub scope: Option<ScopeSet>,
    /// The access token about to be minted: its `jti` and lifetime.
    pub access_jti: String,
    pub access_ttl: Duration,
    /// Told what the access token will grant as soon as the refresh is judged to rotate, before
    /// the rotation commits, so that the token can be signed meanwhile ([`Judgement`]).
    pub judged: Option<oneshot::Sender<Judgement>>,
}

/// What a refresh judged to rotate will grant, sent before its commit. Only the reply, sent once
/// the rotation has committed, says it happened: a token signed from a judgement is released only
/// with a successful reply whose grant and scope are the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    pub grant: FamilyGrant,
    pub scope: ScopeSet,
}

/// A successful refresh: the family, the refresh token to answer, and the access token's scope.
#[derive(Debug)]
pub struct Refreshed {
    pub grant: FamilyGrant,
    pub refresh_token: Secret,
    pub scope: ScopeSet,
    /// True when this answered a concurrent retry within the grace window.
    pub grace: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RefreshError {
    #[error("the refresh token is unknown, expired or revoked")]
    Unknown,
    #[error("the refresh token was issued to another client")]
    WrongClient,
    #[error("the resource does not match the refresh token's")]
    WrongResource,
    #[error("the requested scope exceeds the refresh token's")]
    WiderScope,
    /// A retired token was presented: the family is revoked.
    #[error("the refresh token was already used; its family is revoked")]
    Reused(EndedFamilies),
    /// The family of a reused token ended, but the access tokens minted from it could not all be
    /// revoked: answered "try again later", not as a detected reuse.
    #[error("the reused family's access tokens could not all be revoked")]
    AccessTokensNotRevoked,
    #[error("too many refresh-token families")]
    Full,
    /// Too many writes are waiting for the store: try again shortly.
    #[error("too many refresh-token writes are waiting")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads a refresh token for introspection, changing nothing. Only a current token of a live
/// family is active.
#[derive(Debug)]
pub struct InspectRefreshToken {
    pub token: Secret,
}

/// What introspection reports of an active refresh token.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub grant: FamilyGrant,
    /// Unix seconds.
    pub issued_at: u64,
    pub expires_at: u64,
}

/// The flow of the family a refresh token (current or retired) belongs to, changing nothing:
/// a refresh or a revocation is traced as part of that flow from its first line.
#[derive(Debug)]
pub struct FlowOfRefreshToken {
    pub token: Secret,
}

/// The clients for which a user holds live families, with how many (the account page).
#[derive(Debug)]
pub struct CountFamiliesByClient {
    pub subject: String,
}

/// The number of live families (tests, the benchmark).
#[derive(Debug)]
pub struct CountFamilies;

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

/// The number of families held in memory (tests, the benchmark).
#[derive(Debug)]
pub struct CountCachedFamilies;

// ---------------------------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
pub struct RefreshTokensArgs {
    pub idle_ttl: Duration,
    pub absolute_ttl: Duration,
    pub grace: Duration,
    pub max_families: usize,
    /// Families kept in memory.
    pub cached: usize,
    pub store: Arc<dyn RefreshTokenStore>,
    /// Other servers write the same store: a family is read again before a token is judged.
    pub shared: bool,
    /// Where a family ended before its time is announced to the other servers (a shared store).
    pub announce: Option<Arc<dyn ChangeStore>>,
    /// Where the access tokens of an ended family are revoked.
    pub revocations: ActorRef<Revocations>,
}

impl std::fmt::Debug for RefreshTokensArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokensArgs")
            .field("idle_ttl", &self.idle_ttl)
            .field("absolute_ttl", &self.absolute_ttl)
            .field("grace", &self.grace)
            .field("max_families", &self.max_families)
            .field("cached", &self.cached)
            .finish_non_exhaustive()
    }
}

/// How often the store's dead families are deleted.
const STORE_SWEEP: Duration = Duration::from_secs(60);

struct Family {
    record: FamilyRecord,
    scope: ScopeSet,
    /// `min(idle, absolute)` deadline, on the actor's clock.
    expires_at: Instant,
    absolute_at: Instant,
    rotated_at: Option<Instant>,
}

impl Family {
    fn grant(&self) -> FamilyGrant {
        FamilyGrant {
            family_id: self.record.family_id.clone(),
            client_id: self.record.client_id.clone(),
            subject: self.record.subject.clone(),
            scope: self.scope.clone(),
            resource: self.record.resource.clone(),
            flow: FlowId::from_claim(&self.record.flow),
        }
    }
}

/// What a deadline in the actor's queue is for. Cached families have no deadline of their own
/// there: every read checks a family's deadline, and the store sweep ends the expired ones.
enum Due {
    /// An access token minted from this family expires.
    Minted(String),
    /// The store's dead families are deleted, and the cache's.
    Store,
}

/// The access tokens minted here from one family, each until it expires, with whose and for
/// which client they are (a revocation by user or client finds them when the family is no longer
/// cached or stored).
struct Minted {
    subject: String,
    client_id: String,
    tokens: Vec<(String, Instant)>,
}

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;

/// Most writes and held refreshes waiting; beyond it, "try again shortly".
const MAX_WAITING: usize = 4 * MAX_BATCH;

/// A write waiting for its transaction, with the caller to answer once it has committed.
enum Write {
    /// A new family (code redemption).
    Issue {
        family: Family,
        token: Secret,
        access_jti: String,
        access_ttl: Duration,
        reply: Option<ReplySender<Result<Secret, RefreshError>>>,
    },
    /// A rotation: `next` is the token to answer, `scope` the access token's.
    Rotate {
        rotation: Rotation,
        next: Secret,
        scope: ScopeSet,
        request: RotateRefreshToken,
        /// This presentation already lost a compare-and-swap once (a shared store).
        lost: bool,
        reply: Option<ReplySender<Result<Refreshed, RefreshError>>>,
    },
}

/// A refresh of a family whose rotation is on its way to the store.
struct HeldRotation {
    request: RotateRefreshToken,
    /// It already lost a compare-and-swap once (a shared store).
    lost: bool,
    reply: Option<ReplySender<Result<Refreshed, RefreshError>>>,
}

/// Origin access tokens of families ended before they were made, each remembered for
/// [`ENDED_ORIGIN_MEMORY`], at most [`MAX_ENDED_ORIGINS`] of them (the oldest forgotten first).
#[derive(Default)]
struct EndedOrigins {
    jtis: HashSet<String>,
    order: VecDeque<(Instant, String)>,
}

/// How long an ended origin is remembered: far longer than a redemption takes from the code's
/// check to its family's commit.
const ENDED_ORIGIN_MEMORY: Duration = Duration::from_secs(120);

const MAX_ENDED_ORIGINS: usize = 10_000;

pub struct RefreshTokens {
    /// The families used lately, the least recently used evicted first.
    families: LruCache<String, Family>,
    /// Every token digest of every cached family -> its family.
    tokens: HashMap<TokenHash, String>,
    /// Subject -> its cached families, for consent revocation.
    by_subject: HashMap<String, HashSet<String>>,
    /// Origin access-token `jti` -> cached family.
    by_origin: HashMap<String, String>,
    /// Family -> the access tokens minted here from it (in memory only; they are short-lived).
    minted: HashMap<String, Minted>,
    /// Families in the store: counted at start and at each store sweep, kept in between; and how
    /// many times they were counted.
    stored: u64,
    recounts: u64,
    /// Group commit (`commit.rs`): the writes waiting for the next transaction, whether one is
    /// under way, the new families among them and it (origin access token -> user and client),
    /// the families with a rotation among them or it, and the refreshes of those families,
    /// judged again once it has committed.
    pending: Vec<Write>,
    committing: bool,
    /// This instance (a restarted actor ignores the transactions its predecessor began).
    run: u64,
    issuing: HashMap<String, (String, String)>,
    rotating: HashSet<String>,
    held: Vec<HeldRotation>,
    /// The origin access tokens of families ended before they were made (a replayed code, a
    /// revoked grant, while the family was on its way to the store): such a family is not made,
    /// or ended as soon as it has committed.
    ended_origins: EndedOrigins,
    expiry: ExpiryQueue<Due>,
    args: RefreshTokensArgs,
}

impl Actor for RefreshTokens {
    type Args = RefreshTokensArgs;
    type Error = StoreError;

    fn name() -> &'static str {
        "RefreshTokens"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let mut this = RefreshTokens {
            families: LruCache::new(args.cached.max(1)),
            tokens: HashMap::new(),
            by_subject: HashMap::new(),
            by_origin: HashMap::new(),
            minted: HashMap::new(),
            stored: 0,
            recounts: 0,
            pending: Vec::new(),
            committing: false,
            run: rand::random(),
            issuing: HashMap::new(),
            rotating: HashSet::new(),
            held: Vec::new(),
            ended_origins: EndedOrigins::default(),
            expiry: ExpiryQueue::default(),
            args,
        };
        this.sweep_store().await;
        this.expiry
            .schedule(Instant::now() + STORE_SWEEP, Due::Store, &actor);
        Ok(this)
    }
}

impl Message<IssueRefreshToken> for RefreshTokens {
    type Reply = DelegatedReply<Result<Secret, RefreshError>>;

    async fn handle(
        &mut self,
        msg: IssueRefreshToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        let refusal = if self.stored + self.issuing.len() as u64 >= self.args.max_families as u64 {
            Some(RefreshError::Full)
        } else if self.waiting() >= MAX_WAITING {
            Some(RefreshError::Busy)
        } else if self.origin_ended(&msg.access_jti) {
            // Its code was replayed (or its grant revoked) before the family was made.
            Some(RefreshError::Unknown)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            send_reply(reply, Err(refusal));
            return delegated;
        }
        let token = Secret::random(32);
        let hash = token.sha256();
        let now = Instant::now();
        let now_ms = unix_now_ms();
        let absolute_ms = now_ms + self.args.absolute_ttl.as_millis() as u64;
        let idle_ms = (now_ms + self.args.idle_ttl.as_millis() as u64).min(absolute_ms);
        let record = FamilyRecord {
            family_id: crate::trace::random_token(16),
            client_id: msg.client_id,
            subject: msg.subject,
            scope: msg.scope.to_string(),
            resource: msg.resource,
            flow: msg.flow.to_string(),
            origin_jti: msg.access_jti.clone(),
            created_at_ms: now_ms,
            absolute_expires_at_ms: absolute_ms,
            idle_expires_at_ms: idle_ms,
            generation: 0,
            current: hash,
            previous: None,
            rotated_at_ms: None,
            salt: None,
            tokens: vec![hash],
        };
        let family = Family {
            record,
            scope: msg.scope,
            expires_at: now + self.args.idle_ttl.min(self.args.absolute_ttl),
            absolute_at: now + self.args.absolute_ttl,
            rotated_at: None,
        };
        // Cached, and answered, once its transaction has committed (`commit.rs`).
        let grant = (
            family.record.subject.clone(),
            family.record.client_id.clone(),
        );
        self.issuing.insert(msg.access_jti.clone(), grant);
        self.pending.push(Write::Issue {
            family,
            token,
            access_jti: msg.access_jti,
            access_ttl: msg.access_ttl,
            reply,
        });
        self.commit_if_idle(ctx.actor_ref());
        delegated
    }
}

impl Message<RotateRefreshToken> for RefreshTokens {
    type Reply = DelegatedReply<Result<Refreshed, RefreshError>>;

    async fn handle(
        &mut self,
        msg: RotateRefreshToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        self.rotate(msg, reply, false, ctx.actor_ref()).await;
        self.commit_if_idle(ctx.actor_ref());
        delegated
    }
}

impl Message<Sweep> for RefreshTokens {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        let mut sweep_store = false;
        for entry in self.expiry.pop_due(now, ctx.actor_ref()) {
            match entry {
                Due::Minted(id) => {
                    if let Some(minted) = self.minted.get_mut(&id) {
                        minted.tokens.retain(|(_, until)| *until > now);
                        if minted.tokens.is_empty() {
                            self.minted.remove(&id);
                        }
                    }
                }
                Due::Store if !sweep_store => {
                    sweep_store = true;
                    self.expiry
                        .schedule(now + STORE_SWEEP, Due::Store, ctx.actor_ref());
                }
                Due::Store => {}
            }
        }
        if !sweep_store {
            return;
        }
        let expired: Vec<String> = self
            .families
            .iter()
            // A family whose rotation is on its way has its deadline pushed back when it commits.
            .filter(|(id, family)| family.expires_at <= now && !self.rotating.contains(*id))
            .map(|(id, family)| {
                tracing::info!(actor = "RefreshTokens", flow = %family.record.flow, "timer: refresh-token family expired");
                id.clone()
            })
            .collect();
        // On a store other servers write too, this copy's deadline may be stale (a refresh at
        // another server pushed it back): drop the copies, and let the store delete only the
        // families its own deadlines say are dead.
        if self.args.shared {
            for id in &expired {
                self.uncache(id);
            }
        } else if let Err(err) = self.end(expired).await {
            // Expired families are refused on every read anyway; the next sweep retries.
            tracing::warn!(actor = "RefreshTokens", error = %err, "expiry not stored");
        }
        self.sweep_store().await;
    }
}

#[cfg(test)]
mod commit_tests;
#[cfg(test)]
mod tests;
