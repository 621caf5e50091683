//! `McpSessions`: which user opened each MCP session on the resource server (RS-5).
//!
//! rmcp keeps the sessions themselves but does not tie them to a user: a valid token of bob on
//! alice's `Mcp-Session-Id` would be accepted. This actor records the token subject that opened
//! each session, so the bearer middleware can refuse any other subject. Entries expire after a
//! configurable lifetime through the actor's one timer, and the map is bounded.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::trace::Secret;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Records that `subject` opened `session_id`.
#[derive(Debug)]
pub struct Bind {
    pub session_id: Secret,
    pub subject: String,
}

/// The subject that opened a session, if the session is known.
#[derive(Debug)]
pub struct Owner {
    pub session_id: Secret,
}

/// The answer to [`Owner`]: who opened the session, and when its binding ends.
#[derive(Debug)]
pub struct Owned {
    pub subject: String,
    pub until: Instant,
}

/// Forgets a closed session.
#[derive(Debug)]
pub struct Forget {
    pub session_id: Secret,
}

#[derive(Debug, Clone)]
pub struct McpSessionsArgs {
    pub ttl: Duration,
    pub max_sessions: usize,
}

struct Binding {
    subject: String,
    expires_at: Instant,
}

pub struct McpSessions {
    owners: HashMap<Secret, Binding>,
    expiry: ExpiryQueue<Secret>,
    args: McpSessionsArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many MCP sessions")]
pub struct TooManySessions;

impl Actor for McpSessions {
    type Args = McpSessionsArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "McpSessions"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(McpSessions {
            owners: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
        })
    }
}

/// Binds the session, and answers when the binding ends.
impl Message<Bind> for McpSessions {
    type Reply = Result<Instant, TooManySessions>;

    async fn handle(&mut self, msg: Bind, ctx: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.owners.len() >= self.args.max_sessions {
            return Err(TooManySessions);
        }
        let expires_at = Instant::now() + self.args.ttl;
        self.owners.insert(
            msg.session_id.clone(),
            Binding {
                subject: msg.subject,
                expires_at,
            },
        );
        self.expiry
            .schedule(expires_at, msg.session_id, ctx.actor_ref());
        Ok(expires_at)
    }
}

impl Message<Owner> for McpSessions {
    type Reply = Option<Owned>;

    async fn handle(&mut self, msg: Owner, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        self.owners
            .get(&msg.session_id)
            .filter(|b| b.expires_at > Instant::now())
            .map(|b| Owned {
                subject: b.subject.clone(),
                until: b.expires_at,
            })
    }
}

impl Message<Forget> for McpSessions {
    type Reply = ();

    async fn handle(&mut self, msg: Forget, _: &mut Context<Self, Self::Reply>) {
        self.owners.remove(&msg.session_id);
    }
}

impl Message<Sweep> for McpSessions {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, Self::Reply>) {
        let now = Instant::now();
        let mut expired = 0usize;
        for id in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.owners.get(&id).is_some_and(|b| b.expires_at <= now) {
                self.owners.remove(&id);
                expired += 1;
            }
        }
        if expired > 0 {
            tracing::info!(actor = "McpSessions", expired, "timer");
        }
    }
}
