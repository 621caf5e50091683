//! The integration tests, in one binary: both servers started in-process over real HTTP (and the
//! compiled binaries, for the command line and process behaviour), one module per concern, with
//! the shared harness in `helpers`. One binary links the crate once instead of once per file.
//!
//! Everything here shares one process, so no test may change process-wide state: no global
//! tracing subscriber (the trace test captures with a subscriber scoped to its own thread), no
//! environment variables, no working directory; every server listens on a port of its own and
//! every data directory is a fresh temporary one.

mod helpers;

mod admin;
mod authorize;
mod balancer;
mod caches;
mod cli;
mod client_credentials;
mod clients;
mod consent_binding;
mod copy_store;
mod durability;
mod flow;
mod fuzz;
mod hardening;
mod health;
mod introspect;
mod jwks;
mod library;
mod mcp_client;
mod metrics;
mod otel;
mod postgres;
mod public_url;
mod refresh;
mod register;
mod replica_faults;
mod resource_server;
mod revisions;
mod revocation_capacity;
mod revocation_feed;
mod revoke;
mod token;
mod trace;
mod upstream;
