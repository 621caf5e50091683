//! The authorization server: OAuth 2.1 authorization code + PKCE, dynamic client registration,
//! RFC 8414 / OpenID discovery metadata, the JWKS, and the login and consent pages. One file per
//! endpoint; `flow.rs` holds the steps shared by `/authorize`, `/login` and `/consent`.

mod account;
mod assets;
mod authorize;
mod client_lookup;
mod consent;
mod flow;
mod introspect;
mod jwks;
mod login;
mod metadata;
pub mod pages;
mod register;
mod revoke;
mod token;

use crate::actors::client_metadata::ClientMetadataArgs;
use crate::actors::clients::ClientRegistryArgs;
use crate::actors::codes::AuthorizationCodesArgs;
use crate::actors::consents::ConsentsArgs;
use crate::actors::refresh_tokens::{RefreshTokenStore, RefreshTokensArgs};
use crate::actors::revocations::RevocationsArgs;
use crate::actors::sessions::SessionsArgs;
use crate::actors::signing_keys::{ActiveKey, KeyError, SigningKeysArgs};
use crate::actors::throttle::{Endpoint, Limited, ThrottleArgs};
use crate::actors::{
    AuthorizationCodes, ClientMetadataDocuments, ClientRegistry, Consents, RefreshTokens,
    Revocations, Sessions, SignerPool, SigningKeys, Supervisor, Throttle, TokenSigner,
    spawn_supervised,
};
use crate::config::AuthServerConfig;
use crate::store::cipher::{CipherError, KeyCipher};
use crate::store::{MemoryStore, SharedStore, SqliteStore, Store, StoreError};
use crate::users::{UserDirectory, UserError};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use kameo::actor::ActorRef;
use pages::SessionCookie;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

/// What every handler of the authorization server may use: immutable configuration and actor
/// references.
#[derive(Clone)]
pub struct AuthState {
    /// Parent of this server's actors; they live as long as the state does.
    pub supervisor: ActorRef<Supervisor>,
    pub config: Arc<AuthServerConfig>,
    pub users: UserDirectory,
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
    pub revocations: ActorRef<Revocations>,
    pub refresh_tokens: ActorRef<RefreshTokens>,
    pub metadata: Arc<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Users(#[from] UserError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cipher(#[from] CipherError),
}

/// The authorization server, bound to its port and ready to run.
pub struct AuthServer {
    listener: TcpListener,
    router: Router,
    state: AuthState,
    key: Arc<ActiveKey>,
    store: SharedStore,
}

impl AuthServer {
    /// Binds the configured address and builds the server.
    pub async fn build(config: AuthServerConfig) -> Result<Self, BuildError> {
        let addr = config.listen_addr();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BuildError::Bind { addr, source })?;
        Self::build_on(listener, config).await
    }

    /// Builds the server on a listener already bound (port 0 in tests).
    pub async fn build_on(
        listener: TcpListener,
        config: AuthServerConfig,
    ) -> Result<Self, BuildError> {
        let (store, cipher): (SharedStore, KeyCipher) = if config.in_memory {
            tracing::info!(
                "in-memory mode: clients, consents, revocations and signing keys are lost at exit"
            );
            (Arc::new(MemoryStore::new()), KeyCipher::ephemeral()?)
        } else {
            let store = SqliteStore::open(&config.data_dir).await?;
            let secret = match &config.key_encryption_secret {
                Some(secret) => secret.as_bytes().to_vec(),
                None => crate::store::cipher::secret_from_file(&config.data_dir)?,
            };
            tracing::info!(store = %store.describe(), "store opened");
            (Arc::new(store), KeyCipher::from_secret(&secret)?)
        };
        let cipher = Arc::new(cipher);
        let users = crate::users::load(config.users_file.as_deref(), &store).await?;
        let key = crate::actors::signing_keys::load_or_create(&store, &cipher).await?;
        let (current_key, signer_key) = tokio::sync::watch::channel(Arc::clone(&key));
        let supervisor = Supervisor::start();
        let clients = spawn_supervised::<ClientRegistry>(
            &supervisor,
            ClientRegistryArgs {
                max_clients: config.max_clients,
                unused_ttl: Duration::from_secs(config.unused_client_ttl_seconds),
                store: Arc::clone(&store),
                preregistered: config.preregistered.clone(),
            },
        )
        .await;
        let client_documents = spawn_supervised::<ClientMetadataDocuments>(
            &supervisor,
            ClientMetadataArgs {
                allow_private: config.cimd_allow_private,
                timeout: Duration::from_secs(config.cimd_timeout_seconds),
                max_entries: 10_000,
                extra_schemes: config.extra_redirect_schemes.clone(),
            },
        )
        .await;
        let codes = spawn_supervised::<AuthorizationCodes>(
            &supervisor,
            AuthorizationCodesArgs {
                ttl: Duration::from_secs(config.auth_code_ttl_seconds),
                max_codes: config.max_codes,
            },
        )
        .await;
        let consents = spawn_supervised::<Consents>(
            &supervisor,
            ConsentsArgs {
                ttl: Duration::from_secs(config.consent_ttl_seconds),
                store: Arc::clone(&store),
            },
        )
        .await;
        let sessions = spawn_supervised::<Sessions>(
            &supervisor,
            SessionsArgs {
                session_ttl: Duration::from_secs(config.session_ttl_seconds),
                pending_ttl: Duration::from_secs(config.pending_request_ttl_seconds),
                max_sessions: config.max_sessions,
                max_pending: config.max_pending_requests,
                max_pending_per_session: 32,
            },
        )
        .await;
        let keys = spawn_supervised::<SigningKeys>(
            &supervisor,
            SigningKeysArgs {
                store: Arc::clone(&store),
                cipher,
                current: Arc::new(current_key),
                rotation: (config.key_rotation_seconds > 0)
                    .then(|| Duration::from_secs(config.key_rotation_seconds)),
                publication_delay: Duration::from_secs(config.key_publication_delay_seconds),
                retention: Duration::from_secs(config.access_token_ttl_seconds),
            },
        )
        .await;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut signers = Vec::with_capacity(cores);
        for _ in 0..cores {
            signers.push(spawn_supervised::<TokenSigner>(&supervisor, signer_key.clone()).await);
        }
        let throttle = spawn_supervised::<Throttle>(
            &supervisor,
            ThrottleArgs {
                register_per_minute: config.rate_register_per_minute,
                token_per_minute: config.rate_token_per_minute,
                login_per_minute: config.rate_login_per_minute,
                failures_per_account: config.login_failures_per_account,
                failures_per_source: config.login_failures_per_source,
                lockout: Duration::from_secs(config.login_lockout_seconds),
                max_entries: 200_000,
            },
        )
        .await;
        let revocations = spawn_supervised::<Revocations>(
            &supervisor,
            RevocationsArgs {
                max_entries: 1_000_000,
                store: Arc::clone(&store),
            },
        )
        .await;
        let refresh_tokens = spawn_supervised::<RefreshTokens>(
            &supervisor,
            RefreshTokensArgs {
                idle_ttl: Duration::from_secs(config.refresh_idle_ttl_seconds),
                absolute_ttl: Duration::from_secs(config.refresh_absolute_ttl_seconds),
                grace: Duration::from_secs(config.refresh_grace_seconds),
                max_families: config.max_refresh_families,
                store: Arc::clone(&store) as Arc<dyn RefreshTokenStore>,
            },
        )
        .await;
        let cookie = SessionCookie::new(config.is_https(), &config.session_secret);
        let metadata = Arc::new(metadata::document(&config));
        let state = AuthState {
            supervisor,
            config: Arc::new(config),
            users,
            cookie,
            clients,
            client_documents,
            codes,
            consents,
            sessions,
            keys,
            signers: SignerPool::new(signers),
            throttle,
            revocations,
            refresh_tokens,
            metadata,
        };
        let router = router(state.clone());
        Ok(AuthServer {
            listener,
            router,
            state,
            key,
            store,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AuthState {
        &self.state
    }

    /// The signing key the server started with (for tools and tests that mint tokens).
    pub fn signing_key(&self) -> Arc<ActiveKey> {
        Arc::clone(&self.key)
    }

    /// The store behind the actors.
    pub fn store(&self) -> SharedStore {
        Arc::clone(&self.store)
    }

    /// Serves until `shutdown` resolves; then stops accepting, lets in-flight requests finish
    /// (bounded by [`crate::http::DRAIN_TIMEOUT`]), waits for the actors that write to the store
    /// to finish what they were doing, and closes the store.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(
            server = "auth",
            issuer = %self.state.config.issuer,
            listen = %self.listener.local_addr()?,
            "authorization server listening"
        );
        let read_timeout = Duration::from_secs(self.state.config.read_timeout_seconds);
        let served = crate::http::serve(self.listener, self.router, read_timeout, shutdown).await;
        flush(&self.state).await;
        self.store.close().await;
        tracing::info!(
            server = "auth",
            "authorization server stopped; store closed"
        );
        served
    }
}

/// Waits until every actor that writes to the store has handled what is in its mailbox: a
/// message sent now is handled after them. Bounded by the actors' reply timeout.
async fn flush(state: &AuthState) {
    use crate::actors::Flush;
    let _ = tokio::join!(
        crate::actors::ask(&state.clients, Flush),
        crate::actors::ask(&state.consents, Flush),
        crate::actors::ask(&state.revocations, Flush),
        crate::actors::ask(&state.refresh_tokens, Flush),
        crate::actors::ask(&state.keys, Flush),
    );
}

/// Takes a token from the source's bucket for `endpoint`. A throttle that cannot answer admits
/// the request: rate limiting must never take the server down with it.
pub async fn admit(state: &AuthState, endpoint: Endpoint, peer: SocketAddr) -> Result<(), Limited> {
    let msg = crate::actors::throttle::Admit {
        endpoint,
        source: peer.ip(),
    };
    match crate::actors::ask(&state.throttle, msg).await {
        Err(crate::actors::AskError::Rejected(limited)) => {
            tracing::info!(?endpoint, source = %peer.ip(), retry_after = limited.seconds(), "rate limited");
            Err(limited)
        }
        _ => Ok(()),
    }
}

/// CORS for browser-based clients (MCP Inspector) on the machine-facing endpoints only (MD-2):
/// any origin, no credentials.
fn cors() -> CorsLayer {
    // Mirror the requested headers: a literal `*` does not cover `Authorization` (Fetch).
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(Duration::from_secs(600))
}

fn router(state: AuthState) -> Router {
    let body_timeout = Duration::from_secs(state.config.read_timeout_seconds);
    let metadata_routes = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::handler),
        )
        .route("/.well-known/openid-configuration", get(metadata::handler));
    let api = Router::new()
        .route("/register", post(register::handler))
        .route("/token", post(token::handler))
        .route("/introspect", post(introspect::handler))
        .route("/revoke", post(revoke::handler))
        .route("/oauth/jwks", get(jwks::handler))
        .layer(DefaultBodyLimit::max(64 * 1024));
    let pages = Router::new()
        .route(
            "/authorize",
            get(authorize::handle_get).post(authorize::handle_post),
        )
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/consent", get(consent::show).post(consent::submit))
        .route("/account", get(account::show))
        .route("/account/revoke", post(account::revoke))
        .route("/assets/style.css", get(assets::stylesheet))
        .layer(DefaultBodyLimit::max(16 * 1024));
    // An issuer with a path serves its endpoints under that path, and its metadata at the
    // path-inserted well-known URLs too (RFC 8414 section 3.1). CORS covers the machine-facing
    // endpoints only, never the pages (MD-2).
    let issuer_path = url::Url::parse(&state.config.issuer)
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let app = if issuer_path.is_empty() {
        metadata_routes.merge(api).layer(cors()).merge(pages)
    } else {
        let inserted = Router::new()
            .route(
                &format!("/.well-known/oauth-authorization-server{issuer_path}"),
                get(metadata::handler),
            )
            .route(
                &format!("/.well-known/openid-configuration{issuer_path}"),
                get(metadata::handler),
            );
        let machine = inserted
            .nest(&issuer_path, metadata_routes.merge(api))
            .layer(cors());
        machine.merge(Router::new().nest(&issuer_path, pages))
    };
    app.with_state(state)
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(crate::http::trace_layer("auth"))
}
