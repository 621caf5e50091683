//! The authorization server: OAuth 2.1 authorization code + PKCE, dynamic client registration,
//! RFC 8414 / OpenID discovery metadata, the JWKS, and the login and consent pages. One file per
//! endpoint (the handlers, which never import one another); beside them the files they share:
//! `state.rs` (what every handler holds), `router.rs` (which handler serves which route),
//! `form.rs` and `client_auth.rs` (the opening of the form-encoded machine endpoints and their
//! client authentication, as extractors), `flow.rs` (the steps shared by `/authorize`, `/login`
//! and `/consent`), `pages.rs`, `client_lookup.rs`, `rate_limit.rs`, `access_token.rs` and
//! `revocation.rs`. This file builds the state and runs the server.

mod access_token;
mod account;
mod assets;
mod authorize;
mod client_auth;
mod client_lookup;
mod consent;
mod flow;
mod form;
mod health;
mod introspect;
mod jwks;
mod login;
mod logout;
mod metadata;
pub mod pages;
mod rate_limit;
mod register;
mod revocation_feed;
mod revoke;
mod router;
mod sign_in_form;
mod state;
mod token;
mod upstream_login;

pub use state::{AuthHandles, AuthState};

use crate::actors::IdentityProviders;
use crate::actors::client_assertions::{ClientAssertions, ClientAssertionsArgs};
use crate::actors::client_metadata::ClientMetadataArgs;
use crate::actors::clients::ClientRegistryArgs;
use crate::actors::codes::AuthorizationCodesArgs;
use crate::actors::consents::ConsentsArgs;
use crate::actors::identity_providers::IdentityProvidersArgs;
use crate::actors::refresh_tokens::RefreshTokensArgs;
use crate::actors::revocations::RevocationsArgs;
use crate::actors::sessions::SessionsArgs;
use crate::actors::signing_keys::{KeyError, SigningKeysArgs};
use crate::actors::store_changes::StoreChangesArgs;
use crate::actors::throttle::{SharedFailures, ThrottleArgs};
use crate::actors::users::UsersArgs;
use crate::actors::{
    AuthorizationCodes, ClientMetadataDocuments, ClientRegistry, Consents, RefreshTokens,
    Revocations, Sessions, SignerPool, SigningKeys, StoreChanges, Supervisor, Throttle,
    TokenSigner, Users, spawn_supervised,
};
use crate::config::{
    AuthSettings, ConfigError, SignInMethods, StoreSettings, read_identity_providers,
};
use crate::oauth::client::Client;
use crate::oauth::jws::ActiveKey;
use crate::store::cipher::{CipherError, KeyCipher};
use crate::store::{
    ChangeStore, MemoryStore, PostgresStore, RefreshTokenStore, SharedStore, SqliteStore, Store,
    StoreError,
};
use crate::users::{PasswordChecks, UserError};
use axum::Router;
use pages::SessionCookie;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why the authorization server could not be built.
#[derive(Debug, thiserror::Error)]
#[warn(missing_docs)]
pub enum BuildError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The signing key could not be made or loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The users file could not be used.
    #[error(transparent)]
    Users(#[from] UserError),
    /// Another I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored signing keys could not be unsealed.
    #[error(transparent)]
    Cipher(#[from] CipherError),
    /// A setting names a file that cannot be used (the pre-registered clients): a bad setting,
    /// reported as one line naming it.
    #[error(transparent)]
    Setting(#[from] ConfigError),
}

/// The authorization server, bound to its port and ready to run.
#[warn(missing_docs)]
pub struct AuthServer {
    listener: TcpListener,
    router: Router,
    state: AuthState,
    key: Arc<ActiveKey>,
    store: SharedStore,
}

#[warn(missing_docs)]
impl AuthServer {
    /// Binds the configured address and builds the server.
    pub async fn build(settings: AuthSettings) -> Result<Self, BuildError> {
        let preregistered = preregistered_clients(&settings)?;
        let addr = settings.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BuildError::Bind { addr, source })?;
        Self::build_with(listener, settings, preregistered).await
    }

    /// Builds the server on a listener already bound (port 0 in tests).
    pub async fn build_on(
        listener: TcpListener,
        settings: AuthSettings,
    ) -> Result<Self, BuildError> {
        let preregistered = preregistered_clients(&settings)?;
        Self::build_with(listener, settings, preregistered).await
    }

    /// The server without a listener of its own: its routes and its actors, for an app that
    /// serves the routes on its own listener, beside its own (see [`EmbeddedAuthServer`]).
    pub async fn build_embedded(settings: AuthSettings) -> Result<EmbeddedAuthServer, BuildError> {
        let preregistered = preregistered_clients(&settings)?;
        let (router, state, _, store) = Self::build_parts(settings, preregistered).await?;
        Ok(EmbeddedAuthServer {
            router,
            state,
            store,
        })
    }

    /// Builds the server from its settings and the clients of its clients file (read first, so
    /// that a bad file stops the start before the store is opened).
    async fn build_with(
        listener: TcpListener,
        settings: AuthSettings,
        preregistered: Vec<Arc<Client>>,
    ) -> Result<Self, BuildError> {
        let (router, state, key, store) = Self::build_parts(settings, preregistered).await?;
        Ok(AuthServer {
            listener,
            router,
            state,
            key,
            store,
        })
    }

    /// The routes, the state, the first signing key and the store, without a listener.
    async fn build_parts(
        settings: AuthSettings,
        preregistered: Vec<Arc<Client>>,
    ) -> Result<(Router, AuthState, Arc<ActiveKey>, SharedStore), BuildError> {
        // However the server is built (the binary alone, on a listener, embedded), its metrics
        // recorder is in place before its actors record anything.
        if settings.metrics {
            crate::http::metrics::install();
        }
        let (store, cipher): (SharedStore, KeyCipher) = match &settings.store {
            StoreSettings::InMemory => {
                tracing::info!(
                    "in-memory mode: clients, consents, revocations and signing keys are lost at exit"
                );
                (Arc::new(MemoryStore::new()), KeyCipher::ephemeral()?)
            }
            StoreSettings::Postgres { url, pool } => {
                let store = PostgresStore::open(url, *pool).await?;
                // Validation insists on the secret: every replica opens the keys with it.
                let secret = settings
                    .keys
                    .encryption_secret
                    .as_ref()
                    .map(|s| s.expose().as_bytes().to_vec())
                    .unwrap_or_default();
                tracing::info!(store = %store.describe(), "store opened");
                (Arc::new(store), KeyCipher::from_secret(&secret)?)
            }
            StoreSettings::Directory(data_dir) => {
                let store = SqliteStore::open(data_dir).await?;
                let secret = match &settings.keys.encryption_secret {
                    Some(secret) => secret.expose().as_bytes().to_vec(),
                    None => crate::store::cipher::secret_from_file(data_dir)?,
                };
                tracing::info!(store = %store.describe(), "store opened");
                (Arc::new(store), KeyCipher::from_secret(&secret)?)
            }
        };
        let cipher = Arc::new(cipher);
        let sign_in = match &settings.login.identity_providers {
            Some(path) => read_identity_providers(path, |name| std::env::var(name).ok())?,
            None => SignInMethods::default(),
        };
        // The demo users' passwords are public: on an https issuer only when explicitly allowed.
        let demo_allowed = !settings.is_https() || settings.login.allow_demo_users;
        // The changes another process made to the store before this point are in what the
        // actors load next; the ones after it are applied as they come.
        let changes_cursor = Arc::new(std::sync::atomic::AtomicI64::new(if store.is_durable() {
            store.last_change().await?
        } else {
            0
        }));
        let upstream = !sign_in.providers.is_empty();
        let loaded = crate::users::load(
            settings.login.users_file.as_deref(),
            demo_allowed,
            upstream,
            &store,
        )
        .await?;
        // A local user named like a provider's user (`<id>:…`) would share that user's subject:
        // consents, grants, tokens.
        if let Some(user) = loaded
            .users
            .iter()
            .find(|u| sign_in.owns_subject(&u.username))
        {
            return Err(BuildError::Setting(ConfigError {
                setting: "AUTH_SERVER_IDENTITY_PROVIDERS",
                reason: format!(
                    "the local user {} is named in an identity provider's namespace (<id>:...); rename the user or the provider",
                    user.username
                ),
            }));
        }
        let passwords = PasswordChecks::new().await?;
        let key = crate::actors::signing_keys::load_or_create(&store, &cipher).await?;
        let (current_key, signer_key) = tokio::sync::watch::channel(Arc::clone(&key));
        let supervisor = Supervisor::start();
        let users = spawn_supervised::<Users>(
            &supervisor,
            UsersArgs {
                loaded,
                store: Arc::clone(&store),
            },
        )
        .await;
        let clients = spawn_supervised::<ClientRegistry>(
            &supervisor,
            ClientRegistryArgs {
                max_clients: settings.limits.max_clients,
                cached: settings.limits.cached_clients,
                unused_ttl: settings.registration.unused_client_ttl,
                store: Arc::clone(&store),
                preregistered,
            },
        )
        .await;
        let client_documents = spawn_supervised::<ClientMetadataDocuments>(
            &supervisor,
            ClientMetadataArgs {
                allow_private: settings.cimd.allow_private,
                timeout: settings.cimd.timeout,
                max_entries: settings.limits.max_client_documents,
                extra_schemes: settings.registration.extra_redirect_schemes.clone(),
            },
        )
        .await;
        let consents = spawn_supervised::<Consents>(
            &supervisor,
            ConsentsArgs {
                ttl: settings.sessions.consent_ttl,
                store: Arc::clone(&store),
            },
        )
        .await;
        let sessions = spawn_supervised::<Sessions>(
            &supervisor,
            SessionsArgs {
                session_ttl: settings.sessions.ttl,
                pending_ttl: settings.sessions.pending_request_ttl,
                max_sessions: settings.limits.max_sessions,
                max_pending: settings.limits.max_pending_requests,
                max_pending_per_session: settings.limits.max_pending_per_session,
                shared_store: store.is_shared().then(|| Arc::clone(&store)),
            },
        )
        .await;
        let keys = spawn_supervised::<SigningKeys>(
            &supervisor,
            SigningKeysArgs {
                store: Arc::clone(&store),
                cipher,
                current: Arc::new(current_key),
                rotation: settings.keys.rotation,
                publication_delay: settings.keys.publication_delay,
                retention: settings.tokens.access_ttl,
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
                authorize_per_minute: settings.rates.authorize_per_minute,
                register_per_minute: settings.rates.register_per_minute,
                token_per_minute: settings.rates.token_per_minute,
                login_per_minute: settings.rates.login_per_minute,
                failures_per_account: settings.login.failures_per_account,
                failures_per_source: settings.login.failures_per_source,
                lockout: settings.login.lockout,
                max_entries: settings.limits.max_throttle_entries,
                shared: store.is_shared().then(|| SharedFailures {
                    store: Arc::clone(&store),
                    key: crate::trace::sha256(&format!(
                        "login-failures:{}",
                        settings.sessions.cookie_secret.expose()
                    )),
                }),
            },
        )
        .await;
        let assertions = spawn_supervised::<ClientAssertions>(
            &supervisor,
            ClientAssertionsArgs {
                max_entries: settings.limits.max_throttle_entries,
            },
        )
        .await;
        let revocations = spawn_supervised::<Revocations>(
            &supervisor,
            RevocationsArgs {
                max_entries: settings.limits.max_revocations,
                store: Arc::clone(&store),
            },
        )
        .await;
        let refresh_tokens = spawn_supervised::<RefreshTokens>(
            &supervisor,
            RefreshTokensArgs {
                idle_ttl: settings.tokens.refresh.idle_ttl,
                absolute_ttl: settings.tokens.refresh.absolute_ttl,
                grace: settings.tokens.refresh.grace,
                max_families: settings.limits.max_refresh_families,
                cached: settings.limits.cached_refresh_families,
                shared: store.is_shared(),
                announce: store
                    .is_shared()
                    .then(|| Arc::clone(&store) as Arc<dyn ChangeStore>),
                store: Arc::clone(&store) as Arc<dyn RefreshTokenStore>,
                revocations: revocations.clone(),
            },
        )
        .await;
        let codes = spawn_supervised::<AuthorizationCodes>(
            &supervisor,
            AuthorizationCodesArgs {
                ttl: settings.tokens.code_ttl,
                max_codes: settings.limits.max_codes,
                access_ttl: settings.tokens.access_ttl,
                revocations: revocations.clone(),
                refresh_tokens: refresh_tokens.clone(),
                shared_store: store.is_shared().then(|| Arc::clone(&store)),
            },
        )
        .await;
        let identity_providers = spawn_supervised::<IdentityProviders>(
            &supervisor,
            IdentityProvidersArgs {
                providers: sign_in.providers.clone(),
                issuer: settings.issuer.clone(),
                ttl: settings.sessions.pending_request_ttl,
                max_pending: settings.limits.max_pending_requests,
                http: crate::actors::upstream_exchange::http_client()
                    .map_err(|e| BuildError::Io(std::io::Error::other(e)))?,
                shared_store: store.is_shared().then(|| Arc::clone(&store)),
            },
        )
        .await;
        // Another process can change a durable store: `mcp-oauth admin`.
        let store_changes = if store.is_durable() {
            let args = StoreChangesArgs {
                store: Arc::clone(&store),
                clients: clients.clone(),
                consents: consents.clone(),
                codes: codes.clone(),
                refresh_tokens: refresh_tokens.clone(),
                sessions: sessions.clone(),
                users: users.clone(),
                keys: keys.clone(),
                revocations: revocations.clone(),
                cursor: changes_cursor,
            };
            Some(spawn_supervised::<StoreChanges>(&supervisor, args).await)
        } else {
            None
        };
        let cookie = SessionCookie::new(
            settings.is_https(),
            settings.sessions.cookie_secret.expose(),
        );
        let metadata = Arc::new(metadata::document(&settings));
        let state = Arc::new(AuthHandles {
            supervisor,
            config: Arc::new(settings),
            users,
            passwords,
            cookie,
            clients,
            client_documents,
            codes,
            consents,
            sessions,
            keys,
            signers: SignerPool::new(signers),
            throttle,
            assertions,
            revocations,
            refresh_tokens,
            metadata,
            store_changes,
            sign_in: Arc::new(sign_in),
            identity_providers,
        });
        let router = router::router(state.clone());
        Ok((router, state, key, store))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves the resource server's MCP routes (from `McpServer::build_router`) on this
    /// server's listener too: both servers on one origin (`--public-url`).
    pub fn with_resource_server(mut self, mcp: Router) -> Self {
        self.router = crate::http::single_origin::router(self.router, mcp);
        self
    }

    /// The state the handlers share: settings and actor references.
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
    pub fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.run(Box::pin(shutdown))
    }

    /// [`Self::run_until`] without its type parameter: the serving code is compiled here once.
    async fn run(self, shutdown: crate::http::Shutdown) -> std::io::Result<()> {
        tracing::info!(
            server = "auth",
            issuer = %self.state.config.issuer,
            listen = %self.listener.local_addr()?,
            "authorization server listening"
        );
        let read_timeout = self.state.config.read_timeout;
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

/// The authorization server embedded in an app: its routes, served by the app (on their own
/// listener, or merged with the app's routes when the paths do not overlap), and its actors,
/// which live as long as this value or a router from it. Call [`Self::shutdown`] once the app has
/// stopped serving those routers: the actors that write to the store finish, and the store
/// closes (a request still served after it gets 503s from the store).
#[warn(missing_docs)]
pub struct EmbeddedAuthServer {
    router: Router,
    state: AuthState,
    store: SharedStore,
}

#[warn(missing_docs)]
impl EmbeddedAuthServer {
    /// The authorization server's routes (endpoints, pages, metadata, health and metrics). The
    /// app's serve loop must give each request its peer address as `ConnectInfo<SocketAddr>`
    /// (the per-source limits read it): `crate::http::serve` does, and so does `axum::serve`
    /// with `into_make_service_with_connect_info::<SocketAddr>()`.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The state the handlers share: settings and actor references.
    pub fn state(&self) -> &AuthState {
        &self.state
    }

    /// Lets the actors that write to the store finish what they were doing, then closes it.
    pub async fn shutdown(self) {
        flush(&self.state).await;
        self.store.close().await;
    }
}

/// The clients of the clients file, if one is configured (none otherwise).
fn preregistered_clients(settings: &AuthSettings) -> Result<Vec<Arc<Client>>, ConfigError> {
    let registration = &settings.registration;
    let Some(path) = &registration.clients_file else {
        return Ok(Vec::new());
    };
    let schemes = &registration.extra_redirect_schemes;
    crate::clients_file::load(path, schemes).map_err(|e| ConfigError {
        setting: "AUTH_SERVER_CLIENTS_FILE",
        reason: e.to_string(),
    })
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
