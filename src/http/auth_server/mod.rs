//! The authorization server: OAuth 2.1 authorization code + PKCE, dynamic client registration,
//! RFC 8414 / OpenID discovery metadata, the JWKS, and the login and consent pages. One file per
//! endpoint; `flow.rs` holds the steps shared by `/authorize`, `/login` and `/consent`.

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
mod token;

use crate::actors::client_metadata::ClientMetadataArgs;
use crate::actors::clients::ClientRegistryArgs;
use crate::actors::codes::AuthorizationCodesArgs;
use crate::actors::consents::ConsentsArgs;
use crate::actors::revocations::RevocationsArgs;
use crate::actors::sessions::SessionsArgs;
use crate::actors::signing_keys::{ActiveKey, KeyError};
use crate::actors::throttle::{Endpoint, Limited, ThrottleArgs};
use crate::actors::{
    AuthorizationCodes, ClientMetadataDocuments, ClientRegistry, Consents, Revocations, Sessions,
    SignerPool, SigningKeys, Supervisor, Throttle, TokenSigner, spawn_supervised,
};
use crate::config::AuthServerConfig;
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
use tower_http::trace::TraceLayer;

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
    /// The public half of the signing key, for introspection.
    pub verifying_key: Arc<jsonwebtoken::DecodingKey>,
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
}

/// The authorization server, bound to its port and ready to run.
pub struct AuthServer {
    listener: TcpListener,
    router: Router,
    state: AuthState,
    key: Arc<ActiveKey>,
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
        let users = UserDirectory::demo().await?;
        let key = ActiveKey::generate().await?;
        let supervisor = Supervisor::start();
        let clients = spawn_supervised::<ClientRegistry>(
            &supervisor,
            ClientRegistryArgs {
                max_clients: config.max_clients,
                unused_ttl: Duration::from_secs(config.unused_client_ttl_seconds),
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
        let keys = spawn_supervised::<SigningKeys>(&supervisor, Arc::clone(&key)).await;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut signers = Vec::with_capacity(cores);
        for _ in 0..cores {
            signers.push(spawn_supervised::<TokenSigner>(&supervisor, Arc::clone(&key)).await);
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
            },
        )
        .await;
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(key.jwk.clone()).map_err(|e| KeyError::Encode(e.to_string()))?;
        let verifying_key = Arc::new(
            jsonwebtoken::DecodingKey::from_jwk(&jwk)
                .map_err(|e| KeyError::Encode(e.to_string()))?,
        );
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
            verifying_key,
            metadata,
        };
        let router = router(state.clone());
        Ok(AuthServer {
            listener,
            router,
            state,
            key,
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

    /// Serves until `shutdown` resolves.
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
        crate::http::serve(self.listener, self.router, read_timeout, shutdown).await
    }
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
        .layer(
        TraceLayer::new_for_http()
            .make_span_with(|req: &axum::http::Request<_>| {
                tracing::info_span!("http", server = "auth", method = %req.method(), path = %req.uri().path())
            })
            .on_request(|_: &axum::http::Request<_>, _: &tracing::Span| {
                tracing::info!("request in")
            })
            .on_response(
                |res: &axum::http::Response<_>, latency: Duration, _: &tracing::Span| {
                    tracing::info!(status = res.status().as_u16(), us = latency.as_micros() as u64, "response out")
                },
            ),
    )
}
