//! `AuthorizationCodes`: issued authorization codes until they are redeemed or expire (AZ-6, TK-2).
//!
//! A code is 256 random bits and is kept only as its SHA-256 digest, bound to the client, the
//! redirect URI, the PKCE challenge, the scopes, the resource and the flow. [`RedeemCode`] checks
//! and consumes it in one handler, so two concurrent redemptions cannot both win. A code presented
//! by another client is refused without being consumed (a thief cannot burn it); any other failed
//! check consumes it. Entries expire after the configured TTL through the actor's one timer.
//!
//! `max_codes` bounds the live codes; a redeemed code no longer counts. It is remembered until
//! its original deadline, or until `max_codes` later redemptions are (memory stays bounded however
//! fast codes are redeemed; a replay of a code forgotten early is refused as unknown, with nothing
//! revoked). A replay by its own client means the code leaked (RFC 9700 section 4.5): before
//! answering [`RedeemError::Replayed`], the actor revokes the access token the first redemption
//! produced (`Revocations`) and ends the refresh-token family it started, with the access tokens
//! refreshed from it (`RefreshTokens`, [`RevokeCodeFamily`]). If either cannot be done, the
//! answer is [`RedeemError::ReplayNotRevoked`] and nothing is acknowledged. Neither actor asks this
//! one anything, so waiting for them inside the handler cannot deadlock.

use crate::actors::ask::ask;
use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::actors::refresh_tokens::{RefreshTokens, RevokeCodeFamily};
use crate::actors::reply::{MAX_STORE_TASKS, StoreTasks, send_reply};
use crate::actors::revocations::{Revocations, RevokeAccessToken};
use crate::oauth::pkce;
use crate::oauth::scope::ScopeSet;
use crate::oauth::time::unix_now;
use crate::oauth::token::CLOCK_LEEWAY;
use crate::store::{SharedStore, StoreError};
use crate::trace::{FlowId, Secret};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use kameo::reply::DelegatedReply;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

mod shared;

/// What an approved authorization request grants, carried by its code.
#[derive(Debug, Clone)]
pub struct Grant {
    pub subject: String,
    pub client_id: String,
    pub redirect_uri: String,
    /// The authorization request named `redirect_uri`: redeeming the code requires it too.
    pub redirect_uri_named: bool,
    pub code_challenge: String,
    pub scope: ScopeSet,
    pub resource: String,
    pub flow: FlowId,
}

/// Issues a code for a grant; replies with the code.
#[derive(Debug)]
pub struct IssueCode(pub Grant);

/// Redeems a code at the token endpoint.
#[derive(Debug)]
pub struct RedeemCode {
    pub code: Secret,
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub verifier: Secret,
    pub resource: Option<String>,
    /// The id of the token about to be minted, remembered for replay detection.
    pub jti: String,
}

/// Why a redemption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    #[error("the code is unknown or expired")]
    Unknown,
    #[error("the code was issued to another client")]
    WrongClient,
    #[error("the redirect URI does not match the authorization request")]
    WrongRedirectUri,
    #[error("the authorization request named a redirect URI and the token request does not")]
    MissingRedirectUri,
    #[error("the code verifier does not match the challenge")]
    WrongVerifier,
    #[error("the resource does not match the authorization request")]
    WrongResource,
    /// The code was already redeemed by this client; the token it produced (`jti`) and the
    /// refresh-token family it started are revoked.
    #[error("the code was already used")]
    Replayed { jti: String, flow: FlowId },
    /// The code was replayed, but what it produced could not all be revoked: try again later.
    #[error("the replayed code's tokens could not all be revoked")]
    ReplayNotRevoked,
    #[error("too many outstanding codes")]
    Full,
    /// The shared store could not be read or written: try again later.
    #[error("the codes could not be read or stored")]
    Unavailable,
}

/// The flow a code belongs to, changing nothing: the token endpoint records it on its request
/// before it authenticates the client, so every line of that request carries it.
#[derive(Debug)]
pub struct FlowOfCode {
    pub code: Secret,
}

/// The number of codes held, live or redeemed (for tests and the benchmark).
#[derive(Debug)]
pub struct CountCodes;

/// Withdraws the unredeemed codes of a user, of a client, or of a user for a client (`None`
/// matches any): the grant they carry was revoked, so none may become a token. Answers how many.
#[derive(Debug)]
pub struct WithdrawCodes {
    pub subject: Option<String>,
    pub client_id: Option<String>,
}

type CodeKey = [u8; 32];

enum Entry {
    Live {
        grant: Grant,
        expires_at: Instant,
    },
    Redeemed {
        client_id: String,
        code_challenge: String,
        jti: String,
        flow: FlowId,
        expires_at: Instant,
    },
}

impl Entry {
    fn expires_at(&self) -> Instant {
        match self {
            Entry::Live { expires_at, .. } | Entry::Redeemed { expires_at, .. } => *expires_at,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AuthorizationCodesArgs {
    pub ttl: Duration,
    pub max_codes: usize,
    /// The lifetime of the access tokens a redemption produces (how long a replay revokes one).
    pub access_ttl: Duration,
    /// Where a replayed code's access token is revoked.
    pub revocations: ActorRef<Revocations>,
    /// Where a replayed code's refresh-token family is ended.
    pub refresh_tokens: ActorRef<RefreshTokens>,
    /// A store other servers share: codes are kept there, redeemable at any server
    /// (`codes/shared.rs`). `None`: the map here is every code.
    pub shared_store: Option<SharedStore>,
}

impl AuthorizationCodesArgs {
    /// A replayed code leaked: whoever redeemed it first may not be its client. Revokes the
    /// access token it produced and ends the refresh-token family it started (with the access
    /// tokens refreshed from it); the answer to the replay.
    pub(super) async fn revoke_replayed(&self, jti: String, flow: FlowId) -> RedeemError {
        tracing::warn!(actor = "AuthorizationCodes", flow = %flow, jti = %jti, "authorization code replayed; revoking the token it produced");
        let revoke = RevokeAccessToken {
            jti: jti.clone(),
            // Past `exp`, plus the leeway a resource server may grant.
            ttl: self.access_ttl + CLOCK_LEEWAY,
        };
        if ask(&self.revocations, revoke).await.is_err() {
            return RedeemError::ReplayNotRevoked;
        }
        let family = RevokeCodeFamily { jti: jti.clone() };
        if ask(&self.refresh_tokens, family).await.is_err() {
            return RedeemError::ReplayNotRevoked;
        }
        RedeemError::Replayed { jti, flow }
    }
}

pub struct AuthorizationCodes {
    codes: HashMap<CodeKey, Entry>,
    /// How many of `codes` are live (not redeemed): what `max_codes` bounds.
    live: usize,
    /// The redeemed codes in the order of their redemption: beyond `max_codes` of them, the
    /// oldest is forgotten before its deadline (its replay is then an unknown code, refused but
    /// not traced back to what it produced), so that memory stays bounded however fast codes
    /// are redeemed. May name codes already forgotten.
    redeemed: VecDeque<CodeKey>,
    expiry: ExpiryQueue<CodeKey>,
    args: AuthorizationCodesArgs,
    /// The tasks that answer from the shared store.
    store_tasks: StoreTasks,
}

fn key_of(code: &Secret) -> CodeKey {
    code.sha256()
}

impl Actor for AuthorizationCodes {
    type Args = AuthorizationCodesArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "AuthorizationCodes"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(AuthorizationCodes {
            codes: HashMap::new(),
            live: 0,
            redeemed: VecDeque::new(),
            expiry: ExpiryQueue::default(),
            args,
            store_tasks: StoreTasks::new(MAX_STORE_TASKS),
        })
    }
}

impl Message<IssueCode> for AuthorizationCodes {
    type Reply = DelegatedReply<Result<Secret, RedeemError>>;

    async fn handle(
        &mut self,
        msg: IssueCode,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        if self.live >= self.args.max_codes {
            send_reply(reply, Err(RedeemError::Full));
            return delegated;
        }
        let code = Secret::random(32);
        let key = key_of(&code);
        // On a shared store the code is answered once it is stored (another server may be asked
        // to redeem it), from a task of its own; here it counts toward the bound until it is
        // redeemed, refused by the store, or past its deadline.
        let stored =
            (self.args.shared_store.clone()).map(|store| (store, msg.0.stored(self.args.ttl)));
        let expires_at = Instant::now() + self.args.ttl;
        self.codes.insert(
            key,
            Entry::Live {
                grant: msg.0,
                expires_at,
            },
        );
        self.live += 1;
        self.expiry.schedule(expires_at, key, ctx.actor_ref());
        match stored {
            Some((store, record)) => {
                let codes = ctx.actor_ref().downgrade();
                let stored = Self::store_code(store, key, record, code, codes);
                // Never stored, so not outstanding.
                if !self
                    .store_tasks
                    .answer(reply, stored, Err(RedeemError::Unavailable))
                {
                    self.forget(&key);
                }
            }
            None => send_reply(reply, Ok(code)),
        }
        delegated
    }
}

impl Message<RedeemCode> for AuthorizationCodes {
    type Reply = DelegatedReply<Result<Grant, RedeemError>>;

    async fn handle(
        &mut self,
        msg: RedeemCode,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        if let Some(store) = self.args.shared_store.clone() {
            let (args, codes) = (self.args.clone(), ctx.actor_ref().downgrade());
            let redeem = Self::redeem_shared(args, store, msg, codes);
            self.store_tasks
                .answer(reply, redeem, Err(RedeemError::Unavailable));
            return delegated;
        }
        let answer = self.redeem(msg).await;
        send_reply(reply, answer);
        delegated
    }
}

impl AuthorizationCodes {
    /// [`RedeemCode`] against this server's own map.
    async fn redeem(&mut self, msg: RedeemCode) -> Result<Grant, RedeemError> {
        let key = key_of(&msg.code);
        let now = Instant::now();
        match self.codes.get(&key) {
            None => return Err(RedeemError::Unknown),
            Some(entry) if entry.expires_at() <= now => {
                self.forget(&key);
                return Err(RedeemError::Unknown);
            }
            Some(Entry::Redeemed {
                client_id,
                code_challenge,
                jti,
                flow,
                ..
            }) => {
                // Only the client that redeemed it, proving the same verifier, can trigger the
                // revocation: a replay by anyone else revokes nothing.
                if *client_id != msg.client_id
                    || !pkce::verify_s256(msg.verifier.expose(), code_challenge)
                {
                    return Err(RedeemError::Unknown);
                }
                let (jti, flow) = (jti.clone(), flow.clone());
                return Err(self.args.revoke_replayed(jti, flow).await);
            }
            Some(Entry::Live { grant, .. }) if grant.client_id != msg.client_id => {
                return Err(RedeemError::WrongClient);
            }
            Some(Entry::Live { .. }) => {}
        }
        // The code is live and this is its client: from here on it is consumed, whatever the
        // outcome (a wrong verifier must not get a second try).
        let Some(Entry::Live { grant, expires_at }) = self.forget(&key) else {
            return Err(RedeemError::Unknown);
        };
        check_redemption(&grant, &msg)?;
        self.remember_redeemed(key, &grant, msg.jti, expires_at);
        Ok(grant)
    }

    /// Forgets a code, live or redeemed.
    fn forget(&mut self, key: &CodeKey) -> Option<Entry> {
        let entry = self.codes.remove(key);
        if let Some(Entry::Live { .. }) = entry {
            self.live -= 1;
        }
        entry
    }

    /// Remembers a code redeemed for the access token `jti` until its deadline, to catch a
    /// replay; the oldest redeemed code is forgotten first beyond `max_codes` of them.
    fn remember_redeemed(&mut self, key: CodeKey, grant: &Grant, jti: String, expires_at: Instant) {
        let redeemed = Entry::Redeemed {
            client_id: grant.client_id.clone(),
            code_challenge: grant.code_challenge.clone(),
            jti,
            flow: grant.flow.clone(),
            expires_at,
        };
        self.codes.insert(key, redeemed);
        self.redeemed.push_back(key);
        while self.codes.len() - self.live > self.args.max_codes {
            let Some(oldest) = self.redeemed.pop_front() else {
                break;
            };
            if let Some(Entry::Redeemed { .. }) = self.codes.get(&oldest) {
                self.codes.remove(&oldest);
            }
        }
    }

    /// Drops the redeemed codes' order of the codes at its front that are forgotten already.
    fn trim_redeemed(&mut self) {
        while let Some(front) = self.redeemed.front() {
            if let Some(Entry::Redeemed { .. }) = self.codes.get(front) {
                break;
            }
            self.redeemed.pop_front();
        }
    }
}

/// The checks of a redemption by the code's own client: the redirect URI, the PKCE verifier and
/// the resource (OAuth 2.1 section 4.1.3, RFC 7636 section 4.6, RFC 8707).
fn check_redemption(grant: &Grant, msg: &RedeemCode) -> Result<(), RedeemError> {
    match &msg.redirect_uri {
        Some(uri) if *uri != grant.redirect_uri => return Err(RedeemError::WrongRedirectUri),
        None if grant.redirect_uri_named => return Err(RedeemError::MissingRedirectUri),
        _ => {}
    }
    if !pkce::verify_s256(msg.verifier.expose(), &grant.code_challenge) {
        return Err(RedeemError::WrongVerifier);
    }
    if let Some(resource) = &msg.resource
        && *resource != grant.resource
    {
        return Err(RedeemError::WrongResource);
    }
    Ok(())
}

impl Message<Sweep> for AuthorizationCodes {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, Self::Reply>) {
        let now = Instant::now();
        let mut expired = 0usize;
        for key in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.codes.get(&key).is_some_and(|e| e.expires_at() <= now) {
                // Each expiry is a line of its flow: an unredeemed code, or a redeemed one no
                // longer remembered for replay detection.
                match self.forget(&key) {
                    Some(Entry::Live { grant, .. }) => {
                        tracing::info!(actor = "AuthorizationCodes", flow = %grant.flow, "timer: code expired unredeemed");
                    }
                    Some(Entry::Redeemed { flow, .. }) => {
                        tracing::info!(actor = "AuthorizationCodes", flow = %flow, "timer: redeemed code forgotten");
                    }
                    None => {}
                }
                expired += 1;
            }
        }
        self.trim_redeemed();
        if expired > 0
            && let Some(store) = &self.args.shared_store
            && let Err(err) = store.delete_expired_codes(unix_now()).await
        {
            tracing::warn!(actor = "AuthorizationCodes", error = %err, "expired codes not deleted from the store");
        }
        if expired > 0 {
            tracing::info!(
                actor = "AuthorizationCodes",
                expired,
                live = self.live,
                "timer"
            );
        }
    }
}

impl Message<FlowOfCode> for AuthorizationCodes {
    type Reply = Option<FlowId>;

    async fn handle(&mut self, msg: FlowOfCode, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        match self.codes.get(&key_of(&msg.code))? {
            entry if entry.expires_at() <= Instant::now() => None,
            Entry::Live { grant, .. } => Some(grant.flow.clone()),
            Entry::Redeemed { flow, .. } => Some(flow.clone()),
        }
    }
}

impl Message<WithdrawCodes> for AuthorizationCodes {
    type Reply = Result<usize, StoreError>;

    async fn handle(
        &mut self,
        msg: WithdrawCodes,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let mut withdrawn = 0;
        // On a shared store, a withdrawal not stored is not acknowledged: the codes would stay
        // redeemable at every server.
        if let Some(store) = &self.args.shared_store {
            let n = store
                .withdraw_codes(msg.subject.as_deref(), msg.client_id.as_deref())
                .await?;
            withdrawn = usize::try_from(n).unwrap_or(usize::MAX);
        }
        let before = self.codes.len();
        self.codes.retain(|_, entry| match entry {
            Entry::Live { grant, .. } => {
                !(msg.subject.as_ref().is_none_or(|s| *s == grant.subject)
                    && msg.client_id.as_ref().is_none_or(|c| *c == grant.client_id))
            }
            Entry::Redeemed { .. } => true,
        });
        self.live -= before - self.codes.len();
        // A timer still armed for a withdrawn code finds nothing.
        Ok(withdrawn.max(before - self.codes.len()))
    }
}

impl Message<CountCodes> for AuthorizationCodes {
    type Reply = usize;

    async fn handle(&mut self, _: CountCodes, _: &mut Context<Self, Self::Reply>) -> usize {
        self.codes.len()
    }
}

#[cfg(test)]
mod tests;
