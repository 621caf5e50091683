//! The state every handler of the authorization server holds: immutable configuration and the
//! actor references. Its own file so that handlers and the router depend on it, and `mod.rs`,
//! which builds it, depends on them, without a cycle.

use super::pages::SessionCookie;
use crate::actors::IdentityProviders;
use crate::actors::client_assertions::ClientAssertions;
use crate::actors::{
    AuthorizationCodes, ClientMetadataDocuments, ClientRegistry, Consents, RefreshTokens,
    Revocations, Sessions, SignerPool, SigningKeys, StoreChanges, Supervisor, Throttle, Users,
};
use crate::config::{AuthSettings, SignInMethods};
use crate::users::PasswordChecks;
use kameo::actor::ActorRef;
use std::sync::Arc;

/// What every handler of the authorization server may use, shared: axum clones a handler's state
/// for every request, and one reference count is cheaper than one per actor (a score of them,
/// each an atomic add and subtract that the two cores pass back and forth).
pub type AuthState = Arc<AuthHandles>;

/// Immutable configuration and actor references: the authorization server's [`AuthState`].
pub struct AuthHandles {
    /// Parent of this server's actors; they live as long as the state does.
    pub supervisor: ActorRef<Supervisor>,
    pub config: Arc<AuthSettings>,
    pub users: ActorRef<Users>,
    pub passwords: PasswordChecks,
    pub cookie: SessionCookie,
    pub clients: ActorRef<ClientRegistry>,
    /// Fetched Client ID Metadata Documents (URL client ids).
    pub client_documents: ActorRef<ClientMetadataDocuments>,
    pub codes: ActorRef<AuthorizationCodes>,
    pub consents: ActorRef<Consents>,
    pub sessions: ActorRef<Sessions>,
    pub keys: ActorRef<SigningKeys>,
    pub signers: SignerPool,
    pub throttle: ActorRef<Throttle>,
    /// The client assertions already used (`private_key_jwt`).
    pub assertions: ActorRef<ClientAssertions>,
    pub revocations: ActorRef<Revocations>,
    pub refresh_tokens: ActorRef<RefreshTokens>,
    pub metadata: Arc<serde_json::Value>,
    /// Applies `mcp-oauth admin`'s changes to the store (a durable store only).
    pub store_changes: Option<ActorRef<StoreChanges>>,
    /// How users sign in: the upstream providers, and whether the password form stays.
    pub sign_in: Arc<SignInMethods>,
    /// Sign-ins in progress at upstream providers.
    pub identity_providers: ActorRef<IdentityProviders>,
}
