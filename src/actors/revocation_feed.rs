//! `RevocationFeed`: the resource server's copy of the authorization server's revoked access
//! tokens, kept current by following its feed (`GET /oauth/revocations`, a long poll: see
//! `http/auth_server/revocation_feed.rs`), so a token revoked there is refused here within
//! moments, with no call to the authorization server per request.
//!
//! A task owned by the actor polls the feed and hands each page to the actor: a snapshot
//! replaces the set, anything else adds to it. The task keeps the feed's position, so after a
//! disconnect it catches up from where it was (or from a snapshot when the authorization server
//! restarted). Every page, even an empty one at the end of a long poll, proves the copy current
//! as of its arrival. When no page has arrived for longer than `max_lag`, the copy cannot vouch
//! for any token and [`CheckRevoked`] answers [`Verdict::Behind`]: the resource server refuses
//! tokens (503) until the feed is back. Entries leave through the actor's one timer once the
//! token would have expired anyway.
//!
//! The actor also remembers the tokens that passed validation here ([`CheckToken`]), by the
//! SHA-256 digest of the whole token: a token presented again skips the key lookup and the
//! signature check, which cost more than the rest of a `tools/call`. A remembered token is
//! answered only while it is not revoked (checked at every answer, against the same copy of the
//! revoked tokens), not expired, and for at most `remember_for` (the key set's refresh interval,
//! at most [`VERIFIED_TTL`]); and `JwksCache` makes it forget them all ([`ForgetRemembered`])
//! when a key leaves the key set, so a key removed from the authorization server's set stops
//! being trusted as soon as it would without the memory. At most [`MAX_VERIFIED`] are
//! remembered.

use crate::actors::expiry::{ExpiryQueue, OwnedTask, Sweep};
use crate::actors::revocations::RevokedToken;
use crate::oauth::time::instant_of;
use crate::oauth::token::AccessTokenClaims;
use crate::trace::{Secret, SecretDigest};
use kameo::actor::{Actor, ActorRef, WeakActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Largest feed page accepted: a snapshot of the longest list the authorization server keeps
/// (2,000,000 entries of about 70 bytes), with room to spare.
const MAX_PAGE_BYTES: usize = 256 * 1024 * 1024;
/// Longest pause between two attempts while the feed cannot be read.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The longest a validated token is answered from memory before it is validated again.
pub const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// How many validated tokens are remembered.
pub const MAX_VERIFIED: usize = 16_384;

/// Is the token with this id revoked, as far as this copy can tell? With `remember`, a token
/// that just passed validation is remembered by its digest when it is not revoked.
pub struct CheckRevoked {
    pub jti: String,
    pub remember: Option<(SecretDigest, Arc<AccessTokenClaims>)>,
}

impl std::fmt::Debug for CheckRevoked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckRevoked")
            .field("jti", &self.jti)
            .field("remember", &self.remember.is_some())
            .finish()
    }
}

/// Was this token (by the digest of the whole token) validated here, and is it still good? With
/// `session`, the MCP session the request names: was the token found to own it before?
pub struct CheckToken {
    pub token: SecretDigest,
    pub session: Option<Secret>,
}

/// The token as its fingerprint, as every other line shows it (the digest's first four bytes).
impl std::fmt::Debug for CheckToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = crate::trace::Fingerprint::of(&self.token);
        match &self.session {
            Some(session) => write!(f, "CheckToken {{ token: {token}, session: {session:?} }}"),
            None => write!(f, "CheckToken {{ token: {token} }}"),
        }
    }
}

/// The answer to [`CheckToken`].
#[derive(Debug, kameo::Reply)]
pub enum Remembered {
    /// Validated before, not revoked, not expired: its claims. `owns_session`: the session the
    /// request names was found to belong to the token's subject before ([`OwnsSession`]), and
    /// that binding has not ended.
    Valid {
        claims: Arc<AccessTokenClaims>,
        owns_session: bool,
    },
    /// Not remembered (never seen, or too long ago): validate it.
    Unknown,
    /// The copy says revoked, or cannot vouch for any token.
    Refused(Verdict),
}

/// Forgets every remembered token: a key left the authorization server's key set (sent by
/// `JwksCache`), so each must be validated again.
#[derive(Debug)]
pub struct ForgetRemembered;

/// A remembered token was presented on an MCP session that its subject owns until `until` (the
/// session owner check found so, or the token opened the session): the token's next requests on
/// it need not ask `McpSessions` again. A session's owner never changes; a session closed before
/// `until` is forgotten by every token at once ([`SessionClosed`]), so that an MCP service whose
/// session manager reused the id could not hand it to the old owner.
pub struct OwnsSession {
    pub token: SecretDigest,
    pub session: Secret,
    pub until: Instant,
}

impl std::fmt::Debug for OwnsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = crate::trace::Fingerprint::of(&self.token);
        let session = &self.session;
        write!(f, "OwnsSession {{ token: {token}, session: {session:?} }}")
    }
}

/// An MCP session was closed (a DELETE its owner sent): no token owns it any more.
pub struct SessionClosed {
    pub session: Secret,
}

impl std::fmt::Debug for SessionClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionClosed {{ session: {:?} }}", self.session)
    }
}

/// The most sessions remembered for one token (a client rarely holds more than one).
const MAX_SESSIONS_PER_TOKEN: usize = 4;

/// A validated token, remembered.
struct Verified {
    claims: Arc<AccessTokenClaims>,
    until: Instant,
    /// The MCP sessions the token's subject was found to own ([`OwnsSession`]), with when each
    /// binding ends.
    sessions: Vec<(Secret, Instant)>,
}

#[derive(Debug, kameo::Reply)]
pub enum Verdict {
    Clear,
    Revoked,
    /// The copy is not current. `first_sync` is set while it has never been: it ticks when the
    /// first page arrives, which a request may wait for briefly.
    Behind {
        first_sync: Option<watch::Receiver<u64>>,
    },
}

/// A page of the feed, as the authorization server serves it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FeedPage {
    pub epoch: String,
    pub cursor: u64,
    pub snapshot: bool,
    pub revoked: Vec<RevokedToken>,
}

/// A page the polling task read (sent by it), with the id of the run of the actor that started
/// that task.
#[derive(Debug)]
struct ApplyFeedPage {
    run: u64,
    page: FeedPage,
}

#[derive(Debug, Clone)]
pub struct RevocationFeedArgs {
    pub url: String,
    /// The resource-server credential, sent as a bearer token when set.
    pub credential: Option<Secret>,
    /// How long the feed may be silent before the copy cannot vouch for tokens.
    pub max_lag: Duration,
    /// How long each long poll asks the authorization server to hold the request.
    pub wait: Duration,
    /// How long one request may take beyond `wait`.
    pub timeout: Duration,
    pub http: reqwest::Client,
    /// How long a validated token is answered from memory (capped at [`VERIFIED_TTL`]).
    pub remember_for: Duration,
}

pub struct RevocationFeed {
    /// This run's id: pages from an earlier run's task (queued before a restart) are ignored.
    run: u64,
    revoked: HashMap<String, Instant>,
    expiry: ExpiryQueue<String>,
    synced_at: Option<Instant>,
    max_lag: Duration,
    /// Ticks with every page applied.
    synced: watch::Sender<u64>,
    pages: u64,
    verified: HashMap<SecretDigest, Verified>,
    remember_for: Duration,
    _poller: OwnedTask,
}

impl Actor for RevocationFeed {
    type Args = RevocationFeedArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "RevocationFeed"
    }

    async fn on_start(args: Self::Args, actor: ActorRef<Self>) -> Result<Self, Self::Error> {
        let max_lag = args.max_lag;
        let remember_for = args.remember_for.min(VERIFIED_TTL);
        let run = rand::random();
        let poller = tokio::spawn(follow(actor.downgrade(), args, run));
        Ok(RevocationFeed {
            run,
            revoked: HashMap::new(),
            expiry: ExpiryQueue::default(),
            synced_at: None,
            max_lag,
            synced: watch::channel(0).0,
            pages: 0,
            verified: HashMap::new(),
            remember_for,
            _poller: OwnedTask(poller),
        })
    }
}

/// Reads one page: what came after `position`, held up to `wait` while there is nothing new.
async fn read_page(
    args: &RevocationFeedArgs,
    position: Option<&(String, u64)>,
) -> Result<FeedPage, String> {
    let mut url = url::Url::parse(&args.url).map_err(|e| e.to_string())?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("wait", &args.wait.as_secs().to_string());
        if let Some((epoch, cursor)) = position {
            query.append_pair("epoch", epoch);
            query.append_pair("after", &cursor.to_string());
        }
    }
    let mut request = args.http.get(url).timeout(args.wait + args.timeout);
    if let Some(credential) = &args.credential {
        request = request.bearer_auth(credential.expose());
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_PAGE_BYTES {
            return Err("page too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| "not a revocation feed page".into())
}

/// The polling task: reads pages one after another and hands them to the actor; after a failure
/// it waits (250 ms, doubling up to [`MAX_BACKOFF`]) and tries again from the same position.
async fn follow(actor: WeakActorRef<RevocationFeed>, args: RevocationFeedArgs, run: u64) {
    let mut position: Option<(String, u64)> = None;
    let mut failures: u32 = 0;
    loop {
        let result = read_page(&args, position.as_ref()).await;
        let Some(actor) = actor.upgrade() else {
            return;
        };
        match result {
            Ok(page) => {
                if failures > 0 {
                    tracing::info!(actor = "RevocationFeed", url = %args.url, failures, "revocation feed reached again");
                }
                failures = 0;
                position = Some((page.epoch.clone(), page.cursor));
                if actor
                    .tell(ApplyFeedPage { run, page })
                    .send()
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(actor = "RevocationFeed", url = %args.url, %error, failures, "revocation feed unreachable");
                }
                drop(actor);
                let backoff = Duration::from_millis(250)
                    .saturating_mul(1 << failures.min(5))
                    .min(MAX_BACKOFF);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

impl RevocationFeed {
    fn add(&mut self, token: RevokedToken, actor: &ActorRef<Self>) {
        let until = instant_of(token.exp);
        if until <= Instant::now() {
            return;
        }
        self.revoked.insert(token.jti.clone(), until);
        self.expiry.schedule(until, token.jti, actor);
    }
}

impl Message<ApplyFeedPage> for RevocationFeed {
    type Reply = ();

    async fn handle(&mut self, msg: ApplyFeedPage, ctx: &mut Context<Self, ()>) {
        let page = msg.page;
        // Only this run's pages, and nothing but a snapshot before the first: a partial page
        // cannot make an empty copy look current.
        if msg.run != self.run || (self.synced_at.is_none() && !page.snapshot) {
            return;
        }
        let count = page.revoked.len();
        if page.snapshot {
            self.revoked.clear();
            self.expiry = ExpiryQueue::default();
        }
        for token in page.revoked {
            self.add(token, ctx.actor_ref());
        }
        if page.snapshot || count > 0 {
            tracing::info!(
                actor = "RevocationFeed",
                snapshot = page.snapshot,
                received = count,
                revoked = self.revoked.len(),
                cursor = page.cursor,
                "revocations received"
            );
        }
        self.synced_at = Some(Instant::now());
        metrics::gauge!("mcp_oauth_revocation_feed_page_timestamp_seconds")
            .set(crate::oauth::time::unix_now() as f64);
        metrics::gauge!("mcp_oauth_revocation_feed_revoked").set(self.revoked.len() as f64);
        self.pages += 1;
        self.synced.send_replace(self.pages);
    }
}

impl RevocationFeed {
    fn verdict(&self, jti: &str, now: Instant) -> Verdict {
        match self.synced_at {
            None => Verdict::Behind {
                first_sync: Some(self.synced.subscribe()),
            },
            Some(at) if now.duration_since(at) > self.max_lag => {
                Verdict::Behind { first_sync: None }
            }
            Some(_) if self.revoked.get(jti).is_some_and(|until| *until > now) => Verdict::Revoked,
            Some(_) => Verdict::Clear,
        }
    }

    /// Remembers a validated token until it expires, for at most [`VERIFIED_TTL`].
    fn remember(&mut self, token: SecretDigest, claims: Arc<AccessTokenClaims>, now: Instant) {
        let until = instant_of(claims.exp).min(now + self.remember_for);
        if until <= now {
            return;
        }
        if self.verified.len() >= MAX_VERIFIED {
            self.verified.retain(|_, v| v.until > now);
            if self.verified.len() >= MAX_VERIFIED {
                // Full of live entries: start over rather than scan at every insertion.
                self.verified.clear();
            }
        }
        let sessions = Vec::new();
        self.verified.insert(
            token,
            Verified {
                claims,
                until,
                sessions,
            },
        );
    }
}

impl Message<CheckRevoked> for RevocationFeed {
    type Reply = Verdict;

    async fn handle(&mut self, msg: CheckRevoked, _: &mut Context<Self, Verdict>) -> Verdict {
        let now = Instant::now();
        let verdict = self.verdict(&msg.jti, now);
        if let (Verdict::Clear, Some((token, claims))) = (&verdict, msg.remember) {
            self.remember(token, claims, now);
        }
        verdict
    }
}

impl Message<ForgetRemembered> for RevocationFeed {
    type Reply = ();

    async fn handle(&mut self, _: ForgetRemembered, _: &mut Context<Self, ()>) {
        self.verified.clear();
    }
}

impl Message<CheckToken> for RevocationFeed {
    type Reply = Remembered;

    async fn handle(&mut self, msg: CheckToken, _: &mut Context<Self, Remembered>) -> Remembered {
        let now = Instant::now();
        let Some(verified) = self.verified.get(&msg.token) else {
            return Remembered::Unknown;
        };
        if verified.until <= now {
            self.verified.remove(&msg.token);
            return Remembered::Unknown;
        }
        let claims = Arc::clone(&verified.claims);
        let owns_session = msg.session.is_some_and(|session| {
            (verified.sessions.iter()).any(|(id, until)| *id == session && *until > now)
        });
        match self.verdict(&claims.jti, now) {
            Verdict::Clear => Remembered::Valid {
                claims,
                owns_session,
            },
            refused => Remembered::Refused(refused),
        }
    }
}

impl Message<SessionClosed> for RevocationFeed {
    type Reply = ();

    async fn handle(&mut self, msg: SessionClosed, _: &mut Context<Self, ()>) {
        for verified in self.verified.values_mut() {
            verified.sessions.retain(|(id, _)| *id != msg.session);
        }
    }
}

impl Message<OwnsSession> for RevocationFeed {
    type Reply = ();

    async fn handle(&mut self, msg: OwnsSession, _: &mut Context<Self, ()>) {
        let now = Instant::now();
        let Some(verified) = self.verified.get_mut(&msg.token) else {
            return;
        };
        let sessions = &mut verified.sessions;
        sessions.retain(|(id, until)| *until > now && *id != msg.session);
        if sessions.len() < MAX_SESSIONS_PER_TOKEN {
            sessions.push((msg.session, msg.until));
        }
    }
}

/// How current the copy is (readiness).
#[derive(Debug)]
pub struct FeedStatus;

/// The answer to [`FeedStatus`].
#[derive(Debug, Clone, kameo::Reply)]
pub struct FeedReport {
    /// Time since the last page (`None`: none yet).
    pub lag: Option<Duration>,
    /// Tokens can be vouched for (a page arrived within the allowed lag).
    pub current: bool,
    pub revoked: usize,
}

impl Message<FeedStatus> for RevocationFeed {
    type Reply = FeedReport;

    async fn handle(&mut self, _: FeedStatus, _: &mut Context<Self, FeedReport>) -> FeedReport {
        let lag = self.synced_at.map(|at| at.elapsed());
        FeedReport {
            lag,
            current: lag.is_some_and(|lag| lag <= self.max_lag),
            revoked: self.revoked.len(),
        }
    }
}

impl Message<Sweep> for RevocationFeed {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        for jti in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.revoked.get(&jti).is_some_and(|until| *until <= now) {
                self.revoked.remove(&jti);
            }
        }
    }
}

#[cfg(test)]
mod tests;
