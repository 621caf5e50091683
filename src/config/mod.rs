//! Configuration of both servers, in two layers:
//! - the command line ([`AuthServerConfig`], [`McpServerConfig`]): flags derived with clap, each
//!   backed by an environment variable (the Python example's names) and a default, after `.env`
//!   in the working directory is read. `--help` lists every setting. Parsing does no I/O.
//! - the validated settings ([`AuthSettings`], [`McpSettings`]), what the servers are built
//!   from: grouped by concern, lifetimes as [`std::time::Duration`]s, derived defaults filled in,
//!   and the limits that have no flag as named constants. `validate()` turns the first into the
//!   second and checks what clap cannot; it reads no file (the files a setting names are read
//!   when the server is built).
//!
//! The combined binary derives the URLs both servers must agree on, from one public URL or from
//! the issuer and the resource server URL, and checks them against each other
//! ([`PublicConfig::combine`]).
//!
//! A bad setting is one clear line naming it and exit code 2 ([`ConfigError`]).

mod auth;
mod auth_args;
mod checks;
mod combined;
mod from_urls;
mod identity_providers;
mod mcp;
mod mcp_args;

pub use auth::{
    AuthSettings, CimdSettings, LimitSettings, LoginSettings, RateSettings, RefreshSettings,
    RegistrationSettings, SessionSettings, SigningKeySettings, StoreSettings, TokenSettings,
};
pub use auth_args::{AuthServerConfig, DEV_SESSION_SECRET};
pub use checks::ConfigError;
pub use combined::{CombinedSettings, PublicConfig};
pub use identity_providers::{SignInMethods, read_identity_providers};
pub use mcp::{
    IntrospectionSettings, JwksSettings, McpSessionSettings, McpSettings, RevocationFeedSettings,
};
pub use mcp_args::McpServerConfig;
