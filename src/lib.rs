//! mcp-oauth: an OAuth 2.1 authorization server and an MCP resource server, built as actors.
//!
//! - [`oauth`]: the protocol rules, pure and I/O-free.
//! - [`actors`]: every piece of mutable state, each owned by one actor with its own expiry timer.
//! - [`http`]: the two servers, translating HTTP to actor messages ([`AuthServer`], [`McpServer`]).
//! - [`cli`]: what each binary's `main` does (the binaries are one line each).
//! - [`trace`]: the flow trace, and the secret type that keeps secrets out of it.
//! - [`otel`]: the OpenTelemetry export of the same spans, when an OTLP endpoint is set.
//!
//! **Protect your own rmcp server.** [`ProtectedResource`] puts any rmcp streamable HTTP
//! service behind this crate's resource-server layers: bearer tokens validated against an
//! authorization server's JWKS (and its revocation feed, or introspection), 401 with the RFC
//! 9728 challenge, 403 `insufficient_scope` per tool ([`ToolScopes`]), the caller handed to the
//! tools ([`Caller`]), and the protected resource metadata. [`McpSettings::new`] gives its
//! settings from two URLs. The authorization server embeds too: as a router with its actors
//! ([`AuthServer::build_embedded`], [`EmbeddedAuthServer`]), or on a listener of the app's
//! ([`AuthServer::build_on`]). `examples/protect_rmcp.rs` shows the resource server with an
//! authorization server on a listener of the app's, and `examples/protect_with_any_as.rs` with
//! another issuer.

pub mod actors;
pub mod admin;
pub mod cli;
pub mod clients_file;
pub mod config;
pub mod flow_view;
pub mod http;
pub mod memory;
pub mod oauth;
pub mod otel;
pub mod store;
pub mod trace;
pub mod users;

#[cfg(test)]
mod layering;

pub use config::{AuthSettings, McpSettings};
pub use http::auth_server::{AuthServer, EmbeddedAuthServer};
pub use http::mcp_server::{Caller, McpServer, ProtectedResource, ToolScopes};
