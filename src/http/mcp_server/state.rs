//! The state of the resource server's layers and handlers: immutable configuration and actor
//! references. Its own file so that the layers and handlers depend on it, and `protection.rs`,
//! which builds it, depends on them, without a cycle.

use super::introspection::Introspector;
use super::origin::RequestOrigins;
use super::tool_scopes::ToolScopes;
use crate::actors::{JwksCache, McpSessions, RevocationFeed, Supervisor};
use crate::config::McpSettings;
use crate::oauth::scope::ScopeSet;
use jsonwebtoken::Validation;
use kameo::actor::ActorRef;
use std::sync::Arc;

/// What the resource server's handlers use: immutable configuration and actor references.
#[derive(Clone)]
pub struct McpState {
    /// Parent of this server's actors; they live as long as the state does.
    pub supervisor: ActorRef<Supervisor>,
    pub config: Arc<McpSettings>,
    pub jwks: ActorRef<JwksCache>,
    pub sessions: ActorRef<McpSessions>,
    pub validation: Arc<Validation>,
    /// Scopes every MCP request needs (the baseline; tools may need more).
    pub required: Arc<ScopeSet>,
    /// Scopes named in the 401 challenge: the baseline and every tool's scope, so a client
    /// that authorizes once can call every tool.
    pub challenge_scope: Arc<ScopeSet>,
    pub origins: Arc<RequestOrigins>,
    /// Set with `--introspect`: every locally valid token is also checked at the AS.
    pub introspection: Option<Introspector>,
    /// The AS's revoked tokens, followed through its feed (unless `--no-revocation-feed`).
    pub revocation_feed: Option<ActorRef<RevocationFeed>>,
    /// The scope each tool needs.
    pub tool_scopes: Arc<ToolScopes>,
}
