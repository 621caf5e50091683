//! Finding the client a request names, for `/authorize` and `/token`: a registered or configured
//! client from `ClientRegistry`, or, for a `client_id` that is a URL, the client its metadata
//! document describes (`ClientMetadataDocuments`, CL-3) while documents are enabled.

use super::rate_limit::SourceAddress;
use super::state::AuthState;
use crate::actors::client_metadata::{DocumentError, ResolveClientDocument};
use crate::actors::clients::LookupClient;
use crate::actors::{AskError, ask};
use crate::oauth::client::Client;
use crate::oauth::client_id_url;
use crate::store::StoreError;
use kameo::error::Infallible;
use std::sync::Arc;

/// Why no client was found.
#[derive(Debug)]
pub enum NotFound {
    /// No client has this id.
    Unknown,
    /// The id is a URL whose document cannot be used; the reason is shown to the user.
    Document(DocumentError),
    /// An actor or the store did not answer.
    Busy(AskError<StoreError>),
}

/// The client `client_id` names, for a request from `source` (a document fetch counts against
/// it).
pub async fn find_client(
    state: &AuthState,
    client_id: &str,
    source: SourceAddress,
) -> Result<Arc<Client>, NotFound> {
    if client_id_url::is_url_client_id(client_id) && state.config.cimd.enabled {
        let resolve = ResolveClientDocument {
            client_id: client_id.to_string(),
            source: source.0,
        };
        let resolved = ask(&state.client_documents, resolve)
            .await
            .map_err(|err| NotFound::Busy(never_rejected(err)))?;
        return resolved.client().await.map_err(NotFound::Document);
    }
    let lookup = LookupClient {
        client_id: client_id.to_string(),
    };
    match ask(&state.clients, lookup).await {
        Ok(Some(client)) => Ok(client),
        Ok(None) => Err(NotFound::Unknown),
        Err(err) => Err(NotFound::Busy(err)),
    }
}

/// An actor that never rejects a message failed to answer: the same failure, typed as the
/// registry's.
fn never_rejected(err: AskError<Infallible>) -> AskError<StoreError> {
    match err {
        AskError::Busy(actor) => AskError::Busy(actor),
        AskError::Unavailable(actor) => AskError::Unavailable(actor),
        AskError::Rejected(never) => match never {},
    }
}
