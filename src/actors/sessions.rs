//! `Sessions`: browser sessions of the authorization server's pages, and the authorization
//! requests waiting in them for login and consent.
//!
//! A browser gets a session (anonymous until login) the first time `/authorize` sees it. An
//! anonymous session is cheap and short-lived: it lives as long as a pending request
//! (`pending_ttl`), and when the sessions or pending requests are at their bound the oldest
//! anonymous session gives way (with its requests) to the new one, so a flood of cookieless
//! requests from one source cannot refuse a session to a new browser from another, nor end a
//! signed-in one. Login opens a session of the full lifetime. A
//! validated authorization request is parked in that session under a random id and can be read
//! only from the same session, and taken once (PG-1: one request's consent cannot be swapped onto
//! another, nor replayed). Login replaces the session id (fixation defence) and carries the parked
//! requests over; a second login with the replaced id (a double-clicked "Sign in") within a few
//! seconds gets the same new session instead of an error. Session ids are kept only as SHA-256 digests. Sessions and parked requests expire
//! through the actor's one timer; both are bounded.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::actors::reply::{MAX_STORE_TASKS, StoreTasks, send_reply};
use crate::oauth::scope::ScopeSet;
use crate::store::SharedStore;
use crate::trace::{FlowId, Secret};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use kameo::reply::DelegatedReply;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

mod shared;

type SessionKey = [u8; 32];

fn key_of(sid: &Secret) -> SessionKey {
    sid.sha256()
}

/// A validated authorization request, waiting for login and consent.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client_id: String,
    /// The client's name as shown to the user, already length-capped.
    pub client_name: String,
    pub redirect_uri: String,
    /// The request named its redirect URI (rather than relying on the client's only one), so
    /// the token request must name it again (RFC 6749 section 4.1.3).
    pub redirect_uri_named: bool,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: ScopeSet,
    pub resource: String,
    /// The request asked for the consent page even if a remembered consent covers it
    /// (`prompt=consent`, OpenID Connect Core section 3.1.2.1).
    pub prompt_consent: bool,
    pub flow: FlowId,
}

/// A signed-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub subject: String,
    pub display_name: String,
}

/// What a handler learns about a browser session.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub user: Option<SignedIn>,
    pub csrf: Secret,
}

/// A session just opened: the id to put in the cookie, and its CSRF token.
#[derive(Debug, Clone)]
pub struct Opened {
    pub sid: Secret,
    pub csrf: Secret,
}

struct BrowserSession {
    user: Option<SignedIn>,
    csrf: Secret,
    expires_at: Instant,
    /// Ids of this session's parked requests, oldest first.
    pending: VecDeque<u128>,
}

struct Pending {
    session: SessionKey,
    request: AuthorizationRequest,
    expires_at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session is unknown or expired")]
    UnknownSession,
    #[error("too many sessions or pending requests")]
    Full,
    /// The shared store could not be read or written.
    #[error("the sessions could not be read or stored")]
    Unavailable,
}

/// Opens an anonymous session.
#[derive(Debug)]
pub struct Open;

/// Reads a session by the id from its cookie.
#[derive(Debug)]
pub struct ResolveSession {
    pub sid: Secret,
}

/// Parks a validated authorization request in a session; replies with its id.
#[derive(Debug)]
pub struct Park {
    pub sid: Secret,
    pub request: AuthorizationRequest,
}

/// Reads a parked request (from its own session only).
#[derive(Debug)]
pub struct Peek {
    pub sid: Secret,
    pub request_id: String,
}

/// Takes a parked request out, once (from its own session only).
#[derive(Debug)]
pub struct Take {
    pub sid: Secret,
    pub request_id: String,
}

/// Signs a user in: replaces the session id and keeps the parked requests.
#[derive(Debug)]
pub struct Login {
    pub sid: Option<Secret>,
    pub user: SignedIn,
}

/// Ends a session.
#[derive(Debug)]
pub struct Logout {
    pub sid: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Due {
    Session(SessionKey),
    Pending(u128),
    Renewed(SessionKey),
}

/// Most anonymous sessions ended to make room for one parked request.
const MAX_EVICTIONS_PER_REQUEST: usize = 8;

/// How long a replaced session id still leads to its successor.
const RENEWAL_GRACE: Duration = Duration::from_secs(10);

/// Ends every session of a user (`mcp-oauth admin sessions revoke`, a disabled user), with the
/// requests parked in them; answers how many ended.
#[derive(Debug)]
pub struct EndUserSessions {
    pub subject: String,
}

#[derive(Debug, Clone)]
pub struct SessionsArgs {
    pub session_ttl: Duration,
    pub pending_ttl: Duration,
    pub max_sessions: usize,
    pub max_pending: usize,
    pub max_pending_per_session: usize,
    /// A store other servers share: sessions and parked requests are kept there, so any server
    /// goes on with a sign-in (`sessions/shared.rs`). `None`: the maps here are every session.
    pub shared_store: Option<SharedStore>,
}

pub struct Sessions {
    sessions: HashMap<SessionKey, BrowserSession>,
    /// Anonymous sessions, oldest first (some may be gone or signed in since: skipped).
    anonymous: VecDeque<SessionKey>,
    pending: HashMap<u128, Pending>,
    /// Replaced session id -> (the user, the session that replaced it, until when).
    renewed: HashMap<SessionKey, (SignedIn, Opened, Instant)>,
    expiry: ExpiryQueue<Due>,
    args: SessionsArgs,
    /// When expired rows of the shared store were last deleted.
    cleaned_at: Instant,
    /// The tasks that answer from the shared store.
    store_tasks: StoreTasks,
}

impl Actor for Sessions {
    type Args = SessionsArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Sessions"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Sessions {
            sessions: HashMap::new(),
            anonymous: VecDeque::new(),
            pending: HashMap::new(),
            renewed: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
            cleaned_at: Instant::now(),
            store_tasks: StoreTasks::new(MAX_STORE_TASKS),
        })
    }
}

impl Sessions {
    fn live_session(&self, sid: &Secret) -> Option<(SessionKey, &BrowserSession)> {
        let key = key_of(sid);
        self.sessions
            .get(&key)
            .filter(|s| s.expires_at > Instant::now())
            .map(|s| (key, s))
    }

    fn open(
        &mut self,
        user: Option<SignedIn>,
        me: &ActorRef<Self>,
    ) -> Result<Opened, SessionError> {
        if self.sessions.len() >= self.args.max_sessions && !self.evict_anonymous(None) {
            return Err(SessionError::Full);
        }
        self.trim_anonymous();
        let sid = Secret::random(32);
        let csrf = Secret::random(24);
        let key = key_of(&sid);
        let ttl = if user.is_some() {
            self.args.session_ttl
        } else {
            self.anonymous.push_back(key);
            self.args.pending_ttl.min(self.args.session_ttl)
        };
        let expires_at = Instant::now() + ttl;
        self.sessions.insert(
            key,
            BrowserSession {
                user,
                csrf: csrf.clone(),
                expires_at,
                pending: VecDeque::new(),
            },
        );
        self.expiry.schedule(expires_at, Due::Session(key), me);
        Ok(Opened { sid, csrf })
    }

    fn pending_of(&self, sid: &Secret, request_id: &str) -> Option<u128> {
        let (key, _) = self.live_session(sid)?;
        let id = u128::from_str_radix(request_id, 16).ok()?;
        let pending = self.pending.get(&id)?;
        (pending.session == key && pending.expires_at > Instant::now()).then_some(id)
    }

    /// Ends the oldest anonymous session other than `keep`, with its pending requests; false if
    /// there is none.
    fn evict_anonymous(&mut self, keep: Option<SessionKey>) -> bool {
        let mut kept = None;
        let mut evicted = false;
        while let Some(key) = self.anonymous.pop_front() {
            if Some(key) == keep {
                kept = Some(key);
                continue;
            }
            if self.sessions.get(&key).is_some_and(|s| s.user.is_none()) {
                self.remove_session(key);
                evicted = true;
                break;
            }
        }
        if let Some(key) = kept {
            self.anonymous.push_front(key);
        }
        evicted
    }

    /// Removes a session and the requests parked in it.
    fn remove_session(&mut self, key: SessionKey) -> bool {
        let Some(session) = self.sessions.remove(&key) else {
            return false;
        };
        for id in session.pending {
            self.pending.remove(&id);
        }
        true
    }

    /// Forgets anonymous sessions at the front of the queue that are gone or signed in, and all
    /// of them when the queue has grown past the session bound (sign-ins leave keys behind).
    fn trim_anonymous(&mut self) {
        while let Some(key) = self.anonymous.front() {
            if self.sessions.get(key).is_some_and(|s| s.user.is_none()) {
                break;
            }
            self.anonymous.pop_front();
        }
        if self.anonymous.len() > self.args.max_sessions {
            let sessions = &self.sessions;
            self.anonymous
                .retain(|key| sessions.get(key).is_some_and(|s| s.user.is_none()));
        }
    }

    fn drop_pending(&mut self, id: u128) -> Option<Pending> {
        let pending = self.pending.remove(&id)?;
        if let Some(session) = self.sessions.get_mut(&pending.session) {
            session.pending.retain(|p| *p != id);
        }
        Some(pending)
    }
}

impl Message<Open> for Sessions {
    type Reply = Result<Opened, SessionError>;

    async fn handle(&mut self, _: Open, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(store) = self.args.shared_store.clone() {
            return self.open_shared(&store, None).await;
        }
        self.open(None, ctx.actor_ref())
    }
}

impl Message<ResolveSession> for Sessions {
    type Reply = DelegatedReply<Result<Option<SessionView>, SessionError>>;

    async fn handle(
        &mut self,
        msg: ResolveSession,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        if let Some(store) = self.args.shared_store.clone() {
            let resolve = Sessions::resolve_shared(store, msg.sid);
            self.store_tasks
                .answer(reply, resolve, Err(SessionError::Unavailable));
            return delegated;
        }
        let answer = Ok(self.live_session(&msg.sid).map(|(_, s)| SessionView {
            user: s.user.clone(),
            csrf: s.csrf.clone(),
        }));
        send_reply(reply, answer);
        delegated
    }
}

impl Message<Park> for Sessions {
    type Reply = DelegatedReply<Result<String, SessionError>>;

    async fn handle(&mut self, msg: Park, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        if let Some(store) = self.args.shared_store.clone() {
            let (per_session, ttl) = (self.args.max_pending_per_session, self.args.pending_ttl);
            let park = Sessions::park_shared(store, msg.sid, msg.request, per_session, ttl);
            self.store_tasks
                .answer(reply, park, Err(SessionError::Unavailable));
            return delegated;
        }
        let answer = self.park(msg, ctx.actor_ref());
        send_reply(reply, answer);
        delegated
    }
}

impl Sessions {
    /// Parks a request in a session of this server's own maps.
    fn park(&mut self, msg: Park, actor: &ActorRef<Self>) -> Result<String, SessionError> {
        let Some((key, session)) = self.live_session(&msg.sid) else {
            return Err(SessionError::UnknownSession);
        };
        // One browser with many abandoned requests (a client retrying) drops its oldest one
        // rather than being refused; only the global bound means the server is full.
        if session.pending.len() >= self.args.max_pending_per_session
            && let Some(&oldest) = session.pending.front()
        {
            self.drop_pending(oldest);
        }
        // A few anonymous sessions at most make room for one request; beyond that the server
        // is full (the pending requests are the signed-in users').
        let mut evictions = 0;
        while self.pending.len() >= self.args.max_pending {
            if evictions == MAX_EVICTIONS_PER_REQUEST || !self.evict_anonymous(Some(key)) {
                return Err(SessionError::Full);
            }
            evictions += 1;
        }
        let id: u128 = rand::random();
        let expires_at = Instant::now() + self.args.pending_ttl;
        self.pending.insert(
            id,
            Pending {
                session: key,
                request: msg.request,
                expires_at,
            },
        );
        if let Some(session) = self.sessions.get_mut(&key) {
            session.pending.push_back(id);
        }
        self.expiry.schedule(expires_at, Due::Pending(id), actor);
        Ok(format!("{id:032x}"))
    }
}

impl Message<Peek> for Sessions {
    type Reply = DelegatedReply<Result<Option<AuthorizationRequest>, SessionError>>;

    async fn handle(&mut self, msg: Peek, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        if let Some(store) = self.args.shared_store.clone() {
            let peek = Sessions::peek_shared(store, msg.sid, msg.request_id);
            self.store_tasks
                .answer(reply, peek, Err(SessionError::Unavailable));
            return delegated;
        }
        let answer = Ok(self
            .pending_of(&msg.sid, &msg.request_id)
            .and_then(|id| self.pending.get(&id))
            .map(|p| p.request.clone()));
        send_reply(reply, answer);
        delegated
    }
}

impl Message<Take> for Sessions {
    type Reply = DelegatedReply<Result<Option<AuthorizationRequest>, SessionError>>;

    async fn handle(&mut self, msg: Take, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let (delegated, reply) = ctx.reply_sender();
        if let Some(store) = self.args.shared_store.clone() {
            let take = Sessions::take_shared(store, msg.sid, msg.request_id);
            self.store_tasks
                .answer(reply, take, Err(SessionError::Unavailable));
            return delegated;
        }
        let answer = Ok(self
            .pending_of(&msg.sid, &msg.request_id)
            .and_then(|id| self.drop_pending(id))
            .map(|p| p.request));
        send_reply(reply, answer);
        delegated
    }
}

impl Message<Login> for Sessions {
    type Reply = Result<Opened, SessionError>;

    async fn handle(&mut self, msg: Login, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(store) = self.args.shared_store.clone() {
            return self.login_shared(&store, msg.sid.as_ref(), msg.user).await;
        }
        if let Some(sid) = &msg.sid
            && let Some((user, opened, until)) = self.renewed.get(&key_of(sid))
            && *user == msg.user
            && *until > Instant::now()
            && self.live_session(&opened.sid).is_some()
        {
            return Ok(opened.clone());
        }
        let old = msg
            .sid
            .as_ref()
            .and_then(|sid| self.live_session(sid))
            .map(|(key, s)| (key, s.pending.clone()));
        if let Some((old_key, _)) = old {
            self.sessions.remove(&old_key);
        }
        let opened = self.open(Some(msg.user.clone()), ctx.actor_ref())?;
        if let Some((old_key, parked)) = old {
            let until = Instant::now() + RENEWAL_GRACE;
            self.renewed
                .insert(old_key, (msg.user, opened.clone(), until));
            self.expiry
                .schedule(until, Due::Renewed(old_key), ctx.actor_ref());
            let new_key = key_of(&opened.sid);
            for id in &parked {
                if let Some(pending) = self.pending.get_mut(id) {
                    pending.session = new_key;
                }
            }
            if let Some(session) = self.sessions.get_mut(&new_key) {
                session.pending = parked;
            }
        }
        Ok(opened)
    }
}

impl Message<Logout> for Sessions {
    type Reply = Result<bool, SessionError>;

    async fn handle(&mut self, msg: Logout, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if let Some(store) = &self.args.shared_store {
            return Ok(store.delete_session(&key_of(&msg.sid)).await?);
        }
        Ok(self.remove_session(key_of(&msg.sid)))
    }
}

impl Message<EndUserSessions> for Sessions {
    type Reply = Result<usize, SessionError>;

    async fn handle(
        &mut self,
        msg: EndUserSessions,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if let Some(store) = &self.args.shared_store {
            let ended = store.delete_user_sessions(&msg.subject).await?;
            return Ok(usize::try_from(ended).unwrap_or(usize::MAX));
        }
        let of_user =
            |user: &Option<SignedIn>| user.as_ref().is_some_and(|u| u.subject == msg.subject);
        let keys: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, s)| of_user(&s.user))
            .map(|(key, _)| *key)
            .collect();
        for key in &keys {
            self.remove_session(*key);
        }
        // A replaced session id no longer leads to the user's new session.
        self.renewed
            .retain(|_, (user, _, _)| user.subject != msg.subject);
        Ok(keys.len())
    }
}

impl Message<Sweep> for Sessions {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, Self::Reply>) {
        let now = Instant::now();
        let (mut sessions, mut requests) = (0usize, 0usize);
        for due in self.expiry.pop_due(now, ctx.actor_ref()) {
            match due {
                Due::Session(key) => {
                    if self.sessions.get(&key).is_some_and(|s| s.expires_at <= now) {
                        self.remove_session(key);
                        sessions += 1;
                    }
                }
                Due::Renewed(key) => {
                    if self
                        .renewed
                        .get(&key)
                        .is_some_and(|(_, _, until)| *until <= now)
                    {
                        self.renewed.remove(&key);
                    }
                }
                Due::Pending(id) => {
                    if self.pending.get(&id).is_some_and(|p| p.expires_at <= now)
                        && let Some(pending) = self.drop_pending(id)
                    {
                        tracing::info!(actor = "Sessions", flow = %pending.request.flow, "timer: authorization request expired");
                        requests += 1;
                    }
                }
            }
        }
        self.trim_anonymous();
        if sessions + requests > 0 {
            tracing::info!(
                actor = "Sessions",
                expired_sessions = sessions,
                expired_requests = requests,
                "timer"
            );
        }
    }
}
