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
//! truth; every change goes through it and is answered only once it has committed. The actor
//! keeps the families used most recently (`--cached-refresh-families`) and reads a family from
//! the store when a token it does not hold is presented, so its memory does not grow with the
//! table and it reads nothing at start. The access tokens minted here from each family are kept
//! apart from that cache, until they expire, so that a family evicted and then ended still has
//! them revoked. The store's dead families, cached or not, are deleted by a sweep every minute.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::actors::revocations::Revocations;
use crate::oauth::refresh_token::successor;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now_ms;
use crate::store::{ChangeStore, FamilyRecord, RefreshTokenStore, Rotation, StoreError, TokenHash};
use crate::trace::{FlowId, Secret};
use hashlink::LruCache;
use kameo::actor::{Actor, ActorRef};
use kameo::message::{Context, Message};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

mod cache;
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
#[derive(Debug, Clone)]
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
    /// Families in the store: counted at start and at each store sweep, kept in between.
    stored: u64,
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
    type Reply = Result<Secret, RefreshError>;

    async fn handle(
        &mut self,
        msg: IssueRefreshToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if self.stored >= self.args.max_families as u64 {
            return Err(RefreshError::Full);
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
        self.args.store.insert_family(&record).await?;
        self.stored += 1;
        let family = Family {
            record,
            scope: msg.scope,
            expires_at: now + self.args.idle_ttl.min(self.args.absolute_ttl),
            absolute_at: now + self.args.absolute_ttl,
            rotated_at: None,
        };
        let grant = family.grant();
        self.insert(family);
        self.remember_minted(&grant, msg.access_jti, msg.access_ttl, ctx.actor_ref());
        Ok(token)
    }
}

impl Message<RotateRefreshToken> for RefreshTokens {
    type Reply = Result<Refreshed, RefreshError>;

    async fn handle(
        &mut self,
        msg: RotateRefreshToken,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let hash = msg.token.sha256();
        // On a store other servers write too, the family is judged as the store has it; a
        // rotation lost to another server is judged again, once (`shared.rs`).
        let shared = self.args.shared;
        let mut lost = false;
        loop {
            self.load_family(&hash).await?;
            let now = Instant::now();
            let Some(family) = self.family_of(&hash, now) else {
                return Err(RefreshError::Unknown);
            };
            // Checks that consume nothing.
            if family.record.client_id != msg.client_id {
                return Err(RefreshError::WrongClient);
            }
            if let Some(resource) = &msg.resource
                && *resource != family.record.resource
            {
                return Err(RefreshError::WrongResource);
            }
            let scope = match &msg.scope {
                Some(requested) if !requested.is_subset(&family.scope) => {
                    return Err(RefreshError::WiderScope);
                }
                Some(requested) if !requested.is_empty() => requested.clone(),
                _ => family.scope.clone(),
            };
            let id = family.record.family_id.clone();

            if family.record.current != hash {
                let in_grace = family.record.previous == Some(hash)
                    && family
                        .rotated_at
                        .is_some_and(|at| now.duration_since(at) <= self.args.grace);
                if in_grace && let Some(salt) = family.record.salt {
                    // The concurrent retry: the same successor, recomputed from the presented token.
                    let again = successor(&msg.token, &salt);
                    if again.sha256() == family.record.current {
                        let grant = family.grant();
                        self.remember_minted(
                            &grant,
                            msg.access_jti,
                            msg.access_ttl,
                            ctx.actor_ref(),
                        );
                        return Ok(Refreshed {
                            grant,
                            refresh_token: again,
                            scope,
                            grace: true,
                        });
                    }
                }
                // A retired token: whoever presents it, the chain is compromised.
                tracing::warn!(
                    actor = "RefreshTokens",
                    flow = %family.record.flow,
                    client_id = %family.record.client_id,
                    sub = %family.record.subject,
                    generation = family.record.generation,
                    "refresh token reused; revoking its family"
                );
                let ended = self.end_then_revoke(vec![id]).await?;
                return Err(RefreshError::Reused(ended));
            }

            // Rotate: compare-and-swap on the presented token in the store, then in memory.
            let mut salt = [0u8; 32];
            rand::fill(&mut salt[..]);
            let next = successor(&msg.token, &salt);
            let next_hash = next.sha256();
            let now_ms = unix_now_ms();
            let idle_ms = (now_ms + self.args.idle_ttl.as_millis() as u64)
                .min(family.record.absolute_expires_at_ms);
            let rotation = Rotation {
                family_id: id.clone(),
                presented: hash,
                next: next_hash,
                salt,
                generation: family.record.generation + 1,
                rotated_at_ms: now_ms,
                idle_expires_at_ms: idle_ms,
            };
            if !self.args.store.rotate(&rotation).await? {
                // Another server rotated or revoked it first: this presentation lost the race.
                if shared && !lost {
                    lost = true;
                    continue;
                }
                return Err(RefreshError::Unknown);
            }
            let idle_ttl = self.args.idle_ttl;
            let Some(family) = self.families.get_mut(&id) else {
                return Err(RefreshError::Unknown);
            };
            family.record.previous = Some(hash);
            family.record.current = next_hash;
            family.record.tokens.push(next_hash);
            family.record.salt = Some(salt);
            family.record.generation = rotation.generation;
            family.record.rotated_at_ms = Some(now_ms);
            family.record.idle_expires_at_ms = idle_ms;
            family.rotated_at = Some(now);
            family.expires_at = (now + idle_ttl).min(family.absolute_at);
            let grant = family.grant();
            self.tokens.insert(next_hash, id);
            self.remember_minted(&grant, msg.access_jti, msg.access_ttl, ctx.actor_ref());
            return Ok(Refreshed {
                grant,
                refresh_token: next,
                scope,
                grace: false,
            });
        }
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
            .filter(|(_, family)| family.expires_at <= now)
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
mod tests;
