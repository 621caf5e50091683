//! Test harness: both servers started in-process on port 0, and a client that plays the browser,
//! the OAuth client and the MCP client over real HTTP. No handler is called directly and no actor
//! is mocked. Everything a test module uses comes from here (`use crate::helpers::*`).

mod app;
mod binaries;
mod browser;
mod fault;
mod mcp;
mod oauth;
mod upstream;

pub use app::*;
pub use binaries::*;
pub use browser::*;
pub use fault::*;
pub use mcp::*;
pub use oauth::*;
pub use upstream::*;

/// Name and value pairs: query parameters, form fields or headers, as table rows give them.
pub type Pairs<'a> = &'a [(&'a str, &'a str)];
