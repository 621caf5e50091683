//! `Consents`: what each user has approved for each client (user x client -> scopes and
//! resources). The consent page is skipped when a remembered consent already covers a request.
//! Consents are remembered for a configurable time and then expire through the actor's timer.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::oauth::scope::ScopeSet;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;

type ConsentKey = (String, String);

struct Consent {
    scope: ScopeSet,
    resources: BTreeSet<String>,
    expires_at: Instant,
}

/// Does a remembered consent cover this request?
#[derive(Debug)]
pub struct Check {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resource: String,
}

/// Records the user's approval (merged with what was approved before).
#[derive(Debug)]
pub struct Grant {
    pub subject: String,
    pub client_id: String,
    pub scope: ScopeSet,
    pub resource: String,
}

/// Forgets a user's consent for a client.
#[derive(Debug)]
pub struct Revoke {
    pub subject: String,
    pub client_id: String,
}

/// The clients a user has a live consent for, with what was approved (the account page).
#[derive(Debug)]
pub struct ListFor {
    pub subject: String,
}

/// One remembered consent, as the account page shows it.
#[derive(Debug, Clone)]
pub struct ConsentSummary {
    pub client_id: String,
    pub scope: ScopeSet,
    pub resources: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ConsentsArgs {
    pub ttl: Duration,
}

pub struct Consents {
    consents: HashMap<ConsentKey, Consent>,
    expiry: ExpiryQueue<ConsentKey>,
    ttl: Duration,
}

impl Actor for Consents {
    type Args = ConsentsArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "Consents"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Consents {
            consents: HashMap::new(),
            expiry: ExpiryQueue::default(),
            ttl: args.ttl,
        })
    }
}

impl Message<Check> for Consents {
    type Reply = bool;

    async fn handle(&mut self, msg: Check, _: &mut Context<Self, Self::Reply>) -> bool {
        let key = (msg.subject, msg.client_id);
        match self.consents.get(&key) {
            Some(c) if c.expires_at > Instant::now() => {
                msg.scope.is_subset(&c.scope) && c.resources.contains(&msg.resource)
            }
            _ => false,
        }
    }
}

impl Message<Grant> for Consents {
    type Reply = ();

    async fn handle(&mut self, msg: Grant, ctx: &mut Context<Self, Self::Reply>) {
        let key = (msg.subject, msg.client_id);
        let expires_at = Instant::now() + self.ttl;
        let entry = self.consents.entry(key.clone()).or_insert_with(|| Consent {
            scope: ScopeSet::default(),
            resources: BTreeSet::new(),
            expires_at,
        });
        if entry.expires_at <= Instant::now() {
            entry.scope = ScopeSet::default();
            entry.resources.clear();
        }
        entry.scope = entry.scope.union(&msg.scope);
        entry.resources.insert(msg.resource);
        entry.expires_at = expires_at;
        self.expiry.schedule(expires_at, key, ctx.actor_ref());
    }
}

impl Message<Revoke> for Consents {
    type Reply = bool;

    async fn handle(&mut self, msg: Revoke, _: &mut Context<Self, Self::Reply>) -> bool {
        self.consents
            .remove(&(msg.subject, msg.client_id))
            .is_some()
    }
}

impl Message<ListFor> for Consents {
    type Reply = Vec<ConsentSummary>;

    async fn handle(&mut self, msg: ListFor, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        let now = Instant::now();
        let mut list: Vec<ConsentSummary> = self
            .consents
            .iter()
            .filter(|((subject, _), c)| *subject == msg.subject && c.expires_at > now)
            .map(|((_, client_id), c)| ConsentSummary {
                client_id: client_id.clone(),
                scope: c.scope.clone(),
                resources: c.resources.iter().cloned().collect(),
            })
            .collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        list
    }
}

impl Message<Sweep> for Consents {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, Self::Reply>) {
        let now = Instant::now();
        let mut expired = 0usize;
        for key in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self.consents.get(&key).is_some_and(|c| c.expires_at <= now) {
                self.consents.remove(&key);
                expired += 1;
            }
        }
        if expired > 0 {
            tracing::info!(actor = "Consents", expired, "timer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::actor::Spawn;

    fn check(scope: &str, resource: &str) -> Check {
        Check {
            subject: "alice".into(),
            client_id: "c1".into(),
            scope: ScopeSet::parse(scope).unwrap(),
            resource: resource.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn remembered_until_expiry() {
        let consents = Consents::spawn(ConsentsArgs {
            ttl: Duration::from_secs(100),
        });
        assert!(!consents.ask(check("mcp.read", "r")).await.unwrap());
        consents
            .ask(Grant {
                subject: "alice".into(),
                client_id: "c1".into(),
                scope: ScopeSet::parse("mcp.read").unwrap(),
                resource: "r".into(),
            })
            .await
            .unwrap();
        assert!(consents.ask(check("mcp.read", "r")).await.unwrap());
        assert!(
            !consents
                .ask(check("mcp.read mcp.write", "r"))
                .await
                .unwrap()
        );
        assert!(!consents.ask(check("mcp.read", "other")).await.unwrap());
        tokio::time::sleep(Duration::from_secs(101)).await;
        assert!(!consents.ask(check("mcp.read", "r")).await.unwrap());
    }
}
