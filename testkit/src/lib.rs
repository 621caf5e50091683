//! Protocol-client helpers for driving mcp-oauth over real HTTP, shared by the integration tests
//! and the benchmark: what an OAuth client does (PKCE, registration, the authorization URL, code
//! redemption), what a browser does (follow a redirect, read a form, sign in, consent) and what an
//! MCP client does to open a session. Plain functions over `reqwest`, independent of the servers'
//! crate, so that they exercise only the wire protocol. Every failure is an [`Error`]; tests may
//! unwrap it, the benchmark counts it.

mod browser;
mod mcp;
mod oauth;
pub mod postgres;

pub use browser::{authorize, browser, decide, form_action, hidden_field, location, sign_in};
pub use mcp::{initialize_request, open_session};
pub use oauth::{Pkce, authorize_url, client_id, code_of, query_param, redeem, register};

/// The authorization server's flags that lift every per-source rate limit, for drivers that
/// measure or fuzz the servers rather than their throttles. One list, so that a new limit is
/// lifted everywhere at once.
pub const NO_RATE_LIMITS: [&str; 8] = [
    "--rate-authorize",
    "0",
    "--rate-register",
    "0",
    "--rate-token",
    "0",
    "--rate-login",
    "0",
];

/// Why a protocol step did not give what the next step needs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request failed, or its body could not be read or parsed.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
    /// A URL could not be parsed.
    #[error(transparent)]
    Url(#[from] url::ParseError),
    /// A step was answered with a status it does not continue from.
    #[error("{step}: answered {status}")]
    Status { step: &'static str, status: u16 },
    /// An answer lacks what the next step needs (a redirect, a form field, a parameter).
    #[error("{0} missing")]
    Missing(String),
}

/// The result of a protocol step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fails with [`Error::Status`] unless `response` has the status `check` accepts.
fn expect(
    response: reqwest::Response,
    step: &'static str,
    check: fn(reqwest::StatusCode) -> bool,
) -> Result<reqwest::Response> {
    let status = response.status();
    if check(status) {
        Ok(response)
    } else {
        Err(Error::Status {
            step,
            status: status.as_u16(),
        })
    }
}
