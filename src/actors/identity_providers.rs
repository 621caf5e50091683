//! `IdentityProviders`: sign-in through upstream providers. It owns the sign-ins in progress
//! (each one's `state`, `nonce` and PKCE verifier, bound to the browser session that started it,
//! until its callback or its expiry) and each OpenID provider's discovered metadata and keys.
//!
//! [`BeginSignIn`] records a sign-in and answers the provider's authorization URL;
//! [`FinishSignIn`] takes the sign-in its callback's `state` names (once: a second callback with
//! the same `state` finds nothing), checks that the same browser session came back, and answers
//! the user the provider vouches for, namespaced (`<id>:<sub>`) and checked against the
//! provider's allow-list. Network work (discovery, the code redemption) never runs in the
//! handlers: they answer with the future to wait for ([`Upstream`]), like the JWKS cache, so one
//! slow provider holds up no other sign-in. Discovery is shared by everyone waiting for it and
//! kept for [`DISCOVERY_TTL`]; a failed one is tried again at the next sign-in.
//!
//! Sign-ins in progress are bounded and leave through the actor's one expiry timer.

use crate::actors::expiry::{ExpiryQueue, Sweep};
use crate::actors::upstream_exchange::{self, Challenge, UpstreamError};
use crate::oauth::time::unix_now;
use crate::oauth::upstream::UpstreamProvider;
use crate::store::{SharedStore, SignInRecord};
use crate::trace::{Secret, SecretDigest, sha256};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use openidconnect::core::CoreProviderMetadata;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long discovered metadata and keys are used before they are fetched again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Longest wait for an upstream exchange as a whole.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most sign-ins in progress for one browser session.
const MAX_PER_SESSION: usize = 4;
/// Longest error text kept from a provider's callback.
const MAX_ERROR_TEXT: usize = 200;

type Metadata = Option<Arc<CoreProviderMetadata>>;
type SharedDiscovery = Shared<BoxFuture<'static, Result<Metadata, UpstreamError>>>;

/// Upstream work to wait for: the answer of a [`BeginSignIn`] or [`FinishSignIn`].
#[derive(kameo::Reply)]
pub struct Upstream<T: Send + 'static>(BoxFuture<'static, Result<T, UpstreamError>>);

impl<T: Send + 'static> Upstream<T> {
    /// The outcome, once the provider has answered (bounded by a timeout).
    pub async fn outcome(self) -> Result<T, UpstreamError> {
        tokio::time::timeout(EXCHANGE_TIMEOUT, self.0)
            .await
            .unwrap_or_else(|_| Err(UpstreamError::Unreachable("no answer in time".into())))
    }
}

impl<T: Send + 'static> std::fmt::Debug for Upstream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upstream")
    }
}

/// Starts a sign-in at `provider` for the browser session `sid`, going on with the parked
/// request `request_id` (empty: a sign-in for the account page). Answers the authorization URL.
#[derive(Debug)]
pub struct BeginSignIn {
    pub provider: String,
    pub sid: Secret,
    pub request_id: String,
}

/// What the provider's redirect to our callback carried.
#[derive(Debug, Default)]
pub struct Callback {
    pub state: Option<Secret>,
    pub code: Option<Secret>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// RFC 9207's `iss`, when the provider sends it.
    pub iss: Option<String>,
}

/// Finishes the sign-in a callback's `state` names, for the browser session `sid`.
#[derive(Debug)]
pub struct FinishSignIn {
    pub provider: String,
    pub sid: Secret,
    pub callback: Callback,
}

/// The user a finished sign-in vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInUpstream {
    /// The parked request the sign-in goes on with (empty: none).
    pub request_id: String,
    /// Our subject: `<provider id>:<upstream sub>`.
    pub subject: String,
    pub display_name: String,
}

/// A new copy of a provider's metadata (its keys fetched again during a redemption).
#[derive(Debug)]
struct Rediscovered {
    provider: String,
    metadata: Arc<CoreProviderMetadata>,
}

#[derive(Debug, Clone)]
pub struct IdentityProvidersArgs {
    pub providers: Vec<UpstreamProvider>,
    /// The issuer: callbacks are `{issuer}/login/{id}/callback`.
    pub issuer: String,
    /// How long a sign-in may take at the provider.
    pub ttl: Duration,
    /// Most sign-ins in progress at once.
    pub max_pending: usize,
    pub http: reqwest::Client,
    /// A store other servers share: sign-ins in progress are kept there, so the provider's
    /// redirect back may reach any server. `None`: the map here is every sign-in.
    pub shared_store: Option<SharedStore>,
}

struct Pending {
    provider: String,
    sid: SecretDigest,
    request_id: String,
    challenge: Challenge,
    expires_at: Instant,
}

pub struct IdentityProviders {
    providers: HashMap<String, Arc<UpstreamProvider>>,
    discovered: HashMap<String, (Instant, SharedDiscovery)>,
    /// By `state`.
    pending: HashMap<String, Pending>,
    expiry: ExpiryQueue<String>,
    args: IdentityProvidersArgs,
    /// When expired sign-ins were last deleted from the shared store.
    cleaned_at: Instant,
}

impl Actor for IdentityProviders {
    type Args = IdentityProvidersArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "IdentityProviders"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        let providers = args
            .providers
            .iter()
            .map(|p| (p.id.clone(), Arc::new(p.clone())))
            .collect();
        Ok(IdentityProviders {
            providers,
            discovered: HashMap::new(),
            pending: HashMap::new(),
            expiry: ExpiryQueue::default(),
            args,
            cleaned_at: Instant::now(),
        })
    }
}

/// Our callback at a provider.
pub fn callback_url(issuer: &str, provider_id: &str) -> String {
    format!(
        "{}/login/{provider_id}/callback",
        issuer.trim_end_matches('/')
    )
}

impl IdentityProviders {
    /// The provider's metadata: the discovery in flight or done, or a new one when there is none,
    /// it failed, or it is older than [`DISCOVERY_TTL`].
    fn discovery(&mut self, provider: &UpstreamProvider) -> SharedDiscovery {
        let crate::oauth::upstream::ProviderKind::Oidc { issuer } = &provider.kind else {
            return futures::future::ready(Ok(None)).boxed().shared();
        };
        if let Some((at, shared)) = self.discovered.get(&provider.id) {
            let usable = match shared.peek() {
                None => true,
                Some(Ok(_)) => at.elapsed() < DISCOVERY_TTL,
                Some(Err(_)) => false,
            };
            if usable {
                return shared.clone();
            }
        }
        let http = self.args.http.clone();
        let issuer = issuer.clone();
        let shared = async move { upstream_exchange::discover(&http, &issuer).await.map(Some) }
            .boxed()
            .shared();
        self.discovered
            .insert(provider.id.clone(), (Instant::now(), shared.clone()));
        shared
    }
}

impl IdentityProviders {
    /// Deletes the shared store's expired sign-ins, at most once a minute.
    async fn clean_shared(&mut self, store: &SharedStore) {
        if self.cleaned_at.elapsed() < Duration::from_secs(60) {
            return;
        }
        self.cleaned_at = Instant::now();
        if let Err(err) = store.delete_expired_sign_ins(unix_now()).await {
            tracing::warn!(actor = "IdentityProviders", error = %err, "expired sign-ins stay stored until the next sweep");
        }
    }
}

impl Message<BeginSignIn> for IdentityProviders {
    type Reply = Result<Upstream<String>, UpstreamError>;

    async fn handle(
        &mut self,
        msg: BeginSignIn,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let provider = self
            .providers
            .get(&msg.provider)
            .cloned()
            .ok_or(UpstreamError::UnknownProvider)?;
        // One browser session has a few sign-ins in progress at most: a new one ends its oldest.
        let sid = msg.sid.sha256();
        let mine: Vec<(&String, Instant)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.sid == sid)
            .map(|(state, p)| (state, p.expires_at))
            .collect();
        if mine.len() >= MAX_PER_SESSION
            && let Some(oldest) = mine
                .iter()
                .min_by_key(|(_, at)| *at)
                .map(|(s, _)| (*s).clone())
        {
            self.pending.remove(&oldest);
        }
        if self.pending.len() >= self.args.max_pending {
            return Err(UpstreamError::Full);
        }
        let challenge = Challenge {
            state: Secret::random(32).expose().to_string(),
            nonce: Secret::random(32).expose().to_string(),
            verifier: Secret::random(48).expose().to_string(),
        };
        if let Some(store) = self.args.shared_store.clone() {
            // Any server may receive the provider's redirect back.
            let record = SignInRecord {
                provider: provider.id.clone(),
                session_key: sid,
                request_id: msg.request_id,
                nonce: challenge.nonce.clone(),
                verifier: challenge.verifier.clone(),
                expires_at: unix_now() + self.args.ttl.as_secs(),
            };
            store
                .insert_sign_in(&sha256(&challenge.state), &record)
                .await
                .map_err(|_| UpstreamError::Unavailable)?;
            self.clean_shared(&store).await;
        } else {
            let expires_at = Instant::now() + self.args.ttl;
            self.pending.insert(
                challenge.state.clone(),
                Pending {
                    provider: provider.id.clone(),
                    sid,
                    request_id: msg.request_id,
                    challenge: challenge.clone(),
                    expires_at,
                },
            );
            self.expiry
                .schedule(expires_at, challenge.state.clone(), ctx.actor_ref());
        }
        let discovery = self.discovery(&provider);
        let callback = callback_url(&self.args.issuer, &provider.id);
        Ok(Upstream(
            async move {
                let metadata = discovery.await?;
                upstream_exchange::authorization_url(
                    &provider,
                    metadata.as_deref(),
                    &callback,
                    &challenge,
                )
            }
            .boxed(),
        ))
    }
}

impl Message<FinishSignIn> for IdentityProviders {
    type Reply = Result<Upstream<SignedInUpstream>, UpstreamError>;

    async fn handle(
        &mut self,
        msg: FinishSignIn,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let callback = msg.callback;
        // Taken only by the browser session that started it, at the provider it went to, and
        // then whatever comes next: a `state` is answered once, and someone who merely saw it
        // cannot spoil the sign-in.
        let sid = msg.sid.sha256();
        let pending = match &self.args.shared_store {
            Some(store) => {
                let state = callback
                    .state
                    .as_ref()
                    .ok_or(UpstreamError::SignInUnknown)?;
                let record = store
                    .take_sign_in(&state.sha256(), &msg.provider, &sid, unix_now())
                    .await
                    .map_err(|_| UpstreamError::Unavailable)?
                    .ok_or(UpstreamError::SignInUnknown)?;
                Pending {
                    challenge: Challenge {
                        state: state.expose().to_string(),
                        nonce: record.nonce,
                        verifier: record.verifier,
                    },
                    provider: record.provider,
                    sid,
                    request_id: record.request_id,
                    expires_at: Instant::now(),
                }
            }
            None => {
                let state = callback
                    .state
                    .as_ref()
                    .map(|s| s.expose().to_string())
                    .filter(|state| {
                        self.pending
                            .get(state)
                            .is_some_and(|p| p.provider == msg.provider && p.sid == sid)
                    })
                    .ok_or(UpstreamError::SignInUnknown)?;
                self.pending
                    .remove(&state)
                    .filter(|p| p.expires_at > Instant::now())
                    .ok_or(UpstreamError::SignInUnknown)?
            }
        };
        let provider = self
            .providers
            .get(&pending.provider)
            .cloned()
            .ok_or(UpstreamError::UnknownProvider)?;
        if let Some(error) = callback.error {
            let cap = |s: String| s.chars().take(MAX_ERROR_TEXT).collect::<String>();
            return Err(UpstreamError::Refused {
                error: cap(error),
                description: callback.error_description.map(cap),
            });
        }
        // RFC 9207: a provider that names itself in the callback must name itself.
        if let (Some(iss), crate::oauth::upstream::ProviderKind::Oidc { issuer }) =
            (&callback.iss, &provider.kind)
            && iss != issuer
        {
            return Err(UpstreamError::Unverified(format!(
                "the callback names the issuer {iss}, not {issuer}"
            )));
        }
        let code = callback
            .code
            .ok_or_else(|| UpstreamError::Unverified("the callback carries no code".into()))?;
        let discovery = self.discovery(&provider);
        let http = self.args.http.clone();
        let redirect_uri = callback_url(&self.args.issuer, &provider.id);
        let actor = ctx.actor_ref().downgrade();
        Ok(Upstream(
            async move {
                let metadata = discovery.await?;
                let redeemed = upstream_exchange::redeem(
                    &http,
                    &provider,
                    metadata,
                    &redirect_uri,
                    code.expose().to_string(),
                    &pending.challenge,
                )
                .await?;
                if let (Some(metadata), Some(actor)) = (redeemed.refreshed, actor.upgrade()) {
                    let provider = provider.id.clone();
                    let _ = actor.tell(Rediscovered { provider, metadata }).try_send();
                }
                let identity = redeemed.identity;
                if !provider.allow.admits(&identity) {
                    tracing::info!(provider = %provider.id, "upstream user not on the allow-list");
                    return Err(UpstreamError::NotAllowed);
                }
                Ok(SignedInUpstream {
                    request_id: pending.request_id,
                    subject: provider.subject_of(&identity),
                    display_name: identity.display_name(),
                })
            }
            .boxed(),
        ))
    }
}

impl Message<Rediscovered> for IdentityProviders {
    type Reply = ();

    async fn handle(&mut self, msg: Rediscovered, _: &mut Context<Self, ()>) {
        let ready = futures::future::ready(Ok(Some(msg.metadata)));
        self.discovered
            .insert(msg.provider, (Instant::now(), ready.boxed().shared()));
    }
}

impl Message<Sweep> for IdentityProviders {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, ctx: &mut Context<Self, ()>) {
        let now = Instant::now();
        for state in self.expiry.pop_due(now, ctx.actor_ref()) {
            if self
                .pending
                .get(&state)
                .is_some_and(|p| p.expires_at <= now)
            {
                self.pending.remove(&state);
            }
        }
    }
}
