//! The protocol rules and the domain records, pure and free of I/O: the client record and its
//! metadata, PKCE, redirect URIs, scopes, resource indicators, request parameters and error codes,
//! and the one reading of the clock (`time`). Actors hold state and `http/` translates; every rule
//! used by more than one endpoint lives here exactly once and is tested with tables of cases. This
//! layer imports nothing but itself and `trace`.

pub mod authorization_request;
pub mod client;
pub mod client_assertion;
pub mod client_credentials;
pub mod client_id_url;
pub mod client_metadata;
pub mod error;
pub mod jws;
pub mod params;
pub mod pkce;
pub mod redirect_uri;
pub mod refresh_token;
pub mod resource;
pub mod scope;
pub mod strict_json;
pub mod time;
pub mod token;
pub mod upstream;

pub use error::ErrorCode;
