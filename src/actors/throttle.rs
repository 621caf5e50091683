//! `Throttle`: per-source rate limits and failed-login throttling of the authorization server
//! (issue-level defence against floods; PG-3).
//!
//! - Rate limits: a token bucket per (endpoint, source address) for `/register`, `/token` and
//!   `/login`, refilled continuously at the configured rate per minute, holding at most one
//!   minute's worth. An empty bucket answers [`Limited`] with the time until the next token.
//! - Failed logins: counted per account and per source address in a fixed window; once either
//!   count reaches its limit, further attempts are refused until the window ends, before any
//!   password is checked (so a throttled guess costs no argon2 work). [`LoginAllowed`] counts the
//!   attempt as a failure in the same step that checks the limit, so parallel guesses cannot all
//!   pass the check before any failure is recorded; [`LoginSucceeded`] takes it back (clears the
//!   account's count, and returns the source's one).
//!
//! When several servers share the store ([`SharedFailures`]), an account's failures are counted
//! there instead, in one conditional upsert per attempt, so a lockout holds at every server; the
//! per-source counts and the rate limits stay per server.
//!
//! Entries are forgotten once they no longer matter (a bucket that has refilled, a window that has
//! ended) through the actor's one timer, and the table is bounded: when full, new sources are
//! limited rather than remembered, so a flood of addresses cannot grow memory.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::time::unix_now;
use crate::store::{AccountDigest, LoginAttempt, SharedStore};
use crate::trace::TypedUserName;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// The endpoints with their own per-source rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/authorize`, GET and POST: every request opens or reads a browser session, and one with
    /// a URL `client_id` may start a metadata document fetch.
    Authorize,
    Register,
    Token,
    Login,
    /// `GET /oauth/revocations` without a credential: a bucket of its own, so a resource server
    /// following the public feed never takes from its clients' token requests.
    RevocationFeed,
}

/// Public revocation-feed requests per minute from one source: a resource server long-polls
/// every few seconds, and once more per burst of revocations.
pub const REVOCATION_FEED_PER_MINUTE: u32 = 600;

/// Refused for now; try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests; retry after {retry_after:?}")]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for a `Retry-After` header (at least 1).
    pub fn seconds(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// Takes one token from the (endpoint, source) bucket.
#[derive(Debug)]
pub struct Admit {
    pub endpoint: Endpoint,
    pub source: IpAddr,
}

/// May this account be tried from this source now? If so, the attempt counts as a failure until
/// [`LoginSucceeded`] says otherwise.
#[derive(Debug)]
pub struct LoginAllowed {
    /// Printed as a keyed fingerprint: people type passwords into the username field.
    pub username: TypedUserName,
    pub source: IpAddr,
}

/// Records a successful login: the account's failures are forgotten, and the source gets its
/// attempt back.
#[derive(Debug)]
pub struct LoginSucceeded {
    pub username: TypedUserName,
    pub source: IpAddr,
}

/// Limits; a rate of 0 turns that limit off.
#[derive(Debug, Clone)]
pub struct ThrottleArgs {
    pub authorize_per_minute: u32,
    pub register_per_minute: u32,
    pub token_per_minute: u32,
    pub login_per_minute: u32,
    pub failures_per_account: u32,
    pub failures_per_source: u32,
    pub lockout: Duration,
    pub max_entries: usize,
    /// Count accounts' failures in a store other servers share.
    pub shared: Option<SharedFailures>,
}

/// Where accounts' failures are counted when several servers share the store, and the key that
/// turns a typed name into the account's digest (the same at every server: derived from their
/// shared session secret).
#[derive(Clone)]
pub struct SharedFailures {
    pub store: SharedStore,
    pub key: [u8; 32],
}

impl std::fmt::Debug for SharedFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedFailures")
    }
}

impl SharedFailures {
    fn account(&self, username: &TypedUserName) -> AccountDigest {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(username.expose().as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Bucket(Endpoint, IpAddr),
    AccountFailures(TypedUserName),
    SourceFailures(IpAddr),
}

enum Entry {
    Bucket { tokens: f64, at: Instant },
    Failures { count: u32, window_ends: Instant },
}

pub struct Throttle {
    entries: HashMap<Key, Entry>,
    expiry: ExpiryQueue<Key>,
    args: ThrottleArgs,
}

impl Actor for Throttle {
    type Args = ThrottleArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Throttle"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Throttle {
            entries: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
        })
    }
}

impl Throttle {
    fn rate(&self, endpoint: Endpoint) -> u32 {
        match endpoint {
            Endpoint::Authorize => self.args.authorize_per_minute,
            Endpoint::Register => self.args.register_per_minute,
            Endpoint::Token => self.args.token_per_minute,
            Endpoint::Login => self.args.login_per_minute,
            Endpoint::RevocationFeed => REVOCATION_FEED_PER_MINUTE,
        }
    }

    fn full(&self) -> bool {
        self.entries.len() >= self.args.max_entries
    }

    /// A failure window that still counts, or `None`.
    fn failures(&self, key: &Key, now: Instant) -> Option<(u32, Instant)> {
        match self.entries.get(key) {
            Some(Entry::Failures { count, window_ends }) if *window_ends > now => {
                Some((*count, *window_ends))
            }
            _ => None,
        }
    }

    fn record_failure(&mut self, key: Key, now: Instant, me: &ActorRef<Self>) {
        let lockout = self.args.lockout;
        if let Some(Entry::Failures { count, window_ends }) = self.entries.get_mut(&key)
            && *window_ends > now
        {
            *count += 1;
            return;
        }
        if self.full() && !self.entries.contains_key(&key) {
            return;
        }
        let window_ends = now + lockout;
        self.entries.insert(
            key.clone(),
            Entry::Failures {
                count: 1,
                window_ends,
            },
        );
        self.expiry.schedule(window_ends, key, me);
    }
}

impl Throttle {
    /// [`LoginAllowed`] with the account counted in the shared store: the source is checked here
    /// first (nothing counted yet), then the store counts the account or says it is locked, then
    /// the source's failure is counted here. A store that cannot answer refuses the attempt for
    /// a second: an attacker gains no guesses from an outage.
    async fn allow_shared(
        &mut self,
        shared: &SharedFailures,
        msg: LoginAllowed,
        me: &ActorRef<Self>,
    ) -> Result<(), Limited> {
        let now = Instant::now();
        let source_key = Key::SourceFailures(msg.source);
        if let Some((count, window_ends)) = self.failures(&source_key, now)
            && self.args.failures_per_source > 0
            && count >= self.args.failures_per_source
        {
            return Err(Limited {
                retry_after: window_ends.duration_since(now),
            });
        }
        if self.args.failures_per_account > 0 {
            let account = shared.account(&msg.username);
            let counted = shared
                .store
                .count_login_attempt(
                    &account,
                    self.args.failures_per_account,
                    self.args.lockout.as_secs().max(1),
                    unix_now(),
                )
                .await;
            match counted {
                Ok(LoginAttempt::Counted) => {}
                Ok(LoginAttempt::Locked { until }) => {
                    return Err(Limited {
                        retry_after: Duration::from_secs(until.saturating_sub(unix_now()).max(1)),
                    });
                }
                Err(err) => {
                    tracing::warn!(actor = "Throttle", error = %err, "failed logins not counted in the store; attempt refused");
                    return Err(Limited {
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        }
        self.record_failure(source_key, now, me);
        Ok(())
    }
}

impl Message<Admit> for Throttle {
    type Reply = Result<(), Limited>;

    async fn handle(&mut self, msg: Admit, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let per_minute = self.rate(msg.endpoint);
        if per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let key = Key::Bucket(msg.endpoint, msg.source);
        let full = self.full();
        let (tokens, fresh) = match self.entries.get(&key) {
            Some(Entry::Bucket { tokens, at }) => (
                (tokens + now.duration_since(*at).as_secs_f64() * per_second).min(capacity),
                false,
            ),
            _ if full => {
                return Err(Limited {
                    retry_after: Duration::from_secs(1),
                });
            }
            _ => (capacity, true),
        };
        if tokens < 1.0 {
            self.entries.insert(key, Entry::Bucket { tokens, at: now });
            return Err(Limited {
                retry_after: Duration::from_secs_f64((1.0 - tokens) / per_second),
            });
        }
        let tokens = tokens - 1.0;
        self.entries
            .insert(key.clone(), Entry::Bucket { tokens, at: now });
        // Forget the bucket once it would be full again.
        let refilled = now + Duration::from_secs_f64((capacity - tokens) / per_second);
        if fresh {
            self.expiry.schedule(refilled, key, ctx.actor_ref());
        }
        Ok(())
    }
}

impl Message<LoginAllowed> for Throttle {
    type Reply = Result<(), Limited>;

    async fn handle(
        &mut self,
        msg: LoginAllowed,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let now = Instant::now();
        if let Some(shared) = self.args.shared.clone() {
            return self.allow_shared(&shared, msg, ctx.actor_ref()).await;
        }
        let account_key = Key::AccountFailures(msg.username);
        let source_key = Key::SourceFailures(msg.source);
        let account = (
            self.args.failures_per_account,
            self.failures(&account_key, now),
        );
        let source = (
            self.args.failures_per_source,
            self.failures(&source_key, now),
        );
        for (limit, seen) in [account, source] {
            if let Some((count, window_ends)) = seen
                && limit > 0
                && count >= limit
            {
                return Err(Limited {
                    retry_after: window_ends.duration_since(now),
                });
            }
        }
        let me = ctx.actor_ref().clone();
        self.record_failure(account_key, now, &me);
        self.record_failure(source_key, now, &me);
        Ok(())
    }
}

impl Message<LoginSucceeded> for Throttle {
    type Reply = ();

    async fn handle(&mut self, msg: LoginSucceeded, _: &mut Context<Self, ()>) {
        if let Some(shared) = &self.args.shared
            && let Err(err) = shared
                .store
                .clear_login_failures(&shared.account(&msg.username))
                .await
        {
            tracing::warn!(actor = "Throttle", error = %err, "failed logins not cleared in the store; they expire with their window");
        }
        self.entries.remove(&Key::AccountFailures(msg.username));
        if let Some(Entry::Failures { count, .. }) =
            self.entries.get_mut(&Key::SourceFailures(msg.source))
        {
            *count = count.saturating_sub(1);
        }
    }
}

impl Message<Sweep> for Throttle {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        let due = self.expiry.pop_due(now, ctx.actor_ref());
        for key in due {
            let rate = match &key {
                Key::Bucket(endpoint, _) => f64::from(self.rate(*endpoint)),
                _ => 0.0,
            };
            let expired = match self.entries.get(&key) {
                Some(Entry::Failures { window_ends, .. }) => *window_ends <= now,
                Some(Entry::Bucket { tokens, at }) => {
                    rate == 0.0
                        || tokens + now.duration_since(*at).as_secs_f64() * rate / 60.0 >= rate
                }
                None => false,
            };
            if expired {
                self.entries.remove(&key);
            } else if let Some(Entry::Bucket { tokens, .. }) = self.entries.get(&key) {
                // Still refilling (it was used again): look again when it will be full.
                let wait = (rate - tokens).max(0.0) * 60.0 / rate.max(1.0);
                self.expiry.schedule(
                    now + Duration::from_secs_f64(wait.max(1.0)),
                    key,
                    ctx.actor_ref(),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    fn args() -> ThrottleArgs {
        ThrottleArgs {
            authorize_per_minute: 0,
            register_per_minute: 3,
            token_per_minute: 0,
            login_per_minute: 60,
            failures_per_account: 2,
            failures_per_source: 3,
            lockout: Duration::from_secs(60),
            max_entries: 100,
            shared: None,
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test(start_paused = true)]
    async fn buckets_refill_and_disabled_limits_admit_all() {
        let t = Throttle::spawn(args());
        let admit = |endpoint| Admit {
            endpoint,
            source: IP,
        };
        for _ in 0..3 {
            assert!(t.ask(admit(Endpoint::Register)).await.is_ok());
        }
        let limited = t.ask(admit(Endpoint::Register)).await;
        assert!(limited.is_err());
        for _ in 0..100 {
            assert!(t.ask(admit(Endpoint::Token)).await.is_ok());
        }
        tokio::time::sleep(Duration::from_secs(21)).await;
        assert!(t.ask(admit(Endpoint::Register)).await.is_ok());
        assert!(t.ask(admit(Endpoint::Register)).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_lock_the_account_until_the_window_ends() {
        let t = Throttle::spawn(args());
        let allowed = |user: &str| LoginAllowed {
            username: TypedUserName::new(user),
            source: IP,
        };
        // Two attempts on alice (each counted until it succeeds): the third is refused.
        assert!(t.ask(allowed("alice")).await.is_ok());
        assert!(t.ask(allowed("alice")).await.is_ok());
        assert!(t.ask(allowed("alice")).await.is_err());
        // A third attempt from this source (another account) fills the source's limit too.
        assert!(t.ask(allowed("carol")).await.is_ok());
        assert!(t.ask(allowed("bob")).await.is_err());
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(t.ask(allowed("alice")).await.is_ok());
        // A success clears the account and returns the source's attempt.
        t.ask(LoginSucceeded {
            username: TypedUserName::new("alice"),
            source: IP,
        })
        .await
        .unwrap();
        for _ in 0..2 {
            assert!(t.ask(allowed("alice")).await.is_ok());
        }
        assert!(t.ask(allowed("alice")).await.is_err());
    }
}
