//! The protocol rules, pure and free of I/O: PKCE, redirect URIs, scopes, resource indicators,
//! request parameters and error codes. Actors hold state and `http/` translates; every rule used by
//! more than one endpoint lives here exactly once and is tested with tables of cases.

pub mod client_id_url;
pub mod client_metadata;
pub mod error;
pub mod params;
pub mod pkce;
pub mod redirect_uri;
pub mod resource;
pub mod scope;
pub mod token;

pub use error::ErrorCode;
