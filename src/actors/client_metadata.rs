//! `ClientMetadataDocuments`: the Client ID Metadata Documents the authorization server has
//! fetched (CL-3). A `client_id` that is a URL names its own metadata; `/authorize` and `/token`
//! send [`ResolveClientDocument`] and get the client it describes.
//!
//! The actor owns the cache and the fetches in flight. A fetch runs in its own task (the actor
//! never waits on the network) and reports back with `CacheClientDocument`; every
//! [`ResolveClientDocument`] of a URL that is being fetched shares that one fetch (single flight).
//! A document is kept as long as its `Cache-Control` allows
//! (`oauth::client_id_url::cache_lifetime`: `no-store` not at all, `max-age` clamped to a
//! minute..a day), a failure for [`FAILURE_TTL`] so that a bad URL cannot make the server fetch in
//! a loop. Entries expire on read; the cache holds at most `max_entries`, and the entry closest to
//! expiry makes room for a new one.
//!
//! The fetch (SSRF rules): https only; the host is resolved here and every address it resolves
//! to must be public (`oauth::client_id_url::is_public`), then the HTTP client connects only to
//! the checked address (so a second DNS answer cannot swap in a private one); no redirects; a
//! time limit on the whole fetch; at most [`MAX_DOCUMENT_BYTES`] read. `allow_private` (a
//! development setting) lifts the address rule and allows plain http.

use crate::oauth::client::{Client, ClientKind};
use crate::oauth::client_id_url::{self, UrlError};
use crate::oauth::client_metadata::{self, Source};
use crate::oauth::strict_json::{self, StrictJsonError};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kameo::Reply;
use kameo::actor::{Actor, ActorRef};
use kameo::error::Infallible;
use kameo::message::{Context, Message};
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The largest document read (the draft suggests 5 kB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;
/// How long a failed fetch is remembered.
pub const FAILURE_TTL: Duration = Duration::from_secs(10);
/// Most documents fetched at once, whoever asks: beyond it a new URL is refused as busy (503),
/// so a crowd of sources cannot make the server open unbounded outgoing connections.
pub const MAX_CONCURRENT_FETCHES: usize = 32;
/// Most documents fetched at once for one source address, so that one source cannot hold every
/// fetch slot with slow URLs.
pub const MAX_CONCURRENT_FETCHES_PER_SOURCE: usize = 4;

/// Why a URL client id does not give a client. Shown to the user on an error page (the redirect
/// URI of such a client is not trusted, so nothing is redirected), as [`Self::shown`] says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("{0}")]
    Url(#[from] UrlError),
    #[error("the client_id host name could not be resolved")]
    Resolve,
    #[error(
        "the client_id host is a private, loopback or link-local address, which this server does not fetch"
    )]
    PrivateAddress,
    #[error(
        "the client_id host name resolves to a private, loopback or link-local address, which this server does not fetch"
    )]
    PrivateResolved,
    #[error("the client metadata document could not be fetched (connection failed or timed out)")]
    Fetch,
    #[error("the client metadata document URL answered with a redirect, which is not followed")]
    Redirect,
    #[error("the client metadata document URL answered HTTP {0}")]
    Status(u16),
    #[error("the client metadata document is larger than 5 kB")]
    TooLarge,
    #[error("the client metadata document is not a JSON object")]
    NotJson,
    #[error("the client metadata document is invalid: {0}")]
    Invalid(Cow<'static, str>),
    #[error("too many client metadata documents are being fetched; try again")]
    Busy,
}

impl DocumentError {
    /// What an error page may say. Anyone can make the server fetch a URL, so the page must not
    /// tell a name that does not resolve from one that resolves to a private address, from a host
    /// that refused the connection or answered with a redirect or an HTTP status: that would map
    /// names and ports the server can reach. Those all read "could not be fetched" (the trace
    /// has the detail). Rules about the URL as written and about the document's content, which
    /// the person who chose the URL knows anyway, are said as they are.
    pub fn shown(&self) -> String {
        match self {
            DocumentError::Resolve
            | DocumentError::PrivateResolved
            | DocumentError::Fetch
            | DocumentError::Redirect
            | DocumentError::Status(_) => DocumentError::Fetch.to_string(),
            other => other.to_string(),
        }
    }
}

type Outcome = Result<Arc<Client>, DocumentError>;

/// A fetch whose outcome every asker of the same URL awaits.
pub type SharedFetch = Shared<BoxFuture<'static, Outcome>>;

/// Arguments of the actor.
#[derive(Debug, Clone)]
pub struct ClientMetadataArgs {
    pub allow_private: bool,
    pub timeout: Duration,
    pub max_entries: usize,
    pub extra_schemes: Vec<String>,
}

enum Entry {
    Ready {
        outcome: Outcome,
        expires_at: Instant,
    },
    Pending(SharedFetch),
}

pub struct ClientMetadataDocuments {
    entries: HashMap<String, Entry>,
    /// Fetches started and not yet reported back, in all and by source.
    in_flight: usize,
    in_flight_by_source: HashMap<IpAddr, usize>,
    args: ClientMetadataArgs,
}

impl Actor for ClientMetadataDocuments {
    type Args = ClientMetadataArgs;
    type Error = Infallible;

    fn name() -> &'static str {
        "ClientMetadataDocuments"
    }

    async fn on_start(args: Self::Args, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(ClientMetadataDocuments {
            entries: HashMap::new(),
            in_flight: 0,
            in_flight_by_source: HashMap::new(),
            args,
        })
    }
}

/// The client a URL client id describes: from the cache, or the (shared) fetch of its document.
#[derive(Debug)]
pub struct ResolveClientDocument {
    pub client_id: String,
    /// Where the request comes from: a new fetch counts against it.
    pub source: std::net::IpAddr,
}

/// The answer to [`ResolveClientDocument`]: await it outside the actor.
#[derive(Reply)]
pub struct Resolved(pub SharedFetch);

impl Resolved {
    pub async fn client(self) -> Outcome {
        self.0.await
    }
}

/// A fetch finished (sent by the fetch task).
#[derive(Debug)]
struct CacheClientDocument {
    url: String,
    source: IpAddr,
    outcome: Outcome,
    lifetime: Option<Duration>,
}

impl ClientMetadataDocuments {
    /// Makes room for one entry: drops expired ones, then the one closest to expiry.
    fn make_room(&mut self, now: Instant) -> bool {
        if self.entries.len() < self.args.max_entries {
            return true;
        }
        self.entries
            .retain(|_, e| !matches!(e, Entry::Ready { expires_at, .. } if *expires_at <= now));
        if self.entries.len() < self.args.max_entries {
            return true;
        }
        let soonest = self
            .entries
            .iter()
            .filter_map(|(url, e)| match e {
                Entry::Ready { expires_at, .. } => Some((*expires_at, url.clone())),
                Entry::Pending(_) => None,
            })
            .min();
        match soonest {
            Some((_, url)) => {
                self.entries.remove(&url);
                true
            }
            None => false,
        }
    }
}

fn ready(outcome: Outcome) -> SharedFetch {
    futures::future::ready(outcome).boxed().shared()
}

impl Message<ResolveClientDocument> for ClientMetadataDocuments {
    type Reply = Resolved;

    async fn handle(
        &mut self,
        msg: ResolveClientDocument,
        ctx: &mut Context<Self, Resolved>,
    ) -> Resolved {
        let now = Instant::now();
        match self.entries.get(&msg.client_id) {
            Some(Entry::Ready {
                outcome,
                expires_at,
            }) if *expires_at > now => return Resolved(ready(outcome.clone())),
            Some(Entry::Pending(fetch)) => return Resolved(fetch.clone()),
            _ => {}
        }
        self.entries.remove(&msg.client_id);
        let by_source = self
            .in_flight_by_source
            .get(&msg.source)
            .copied()
            .unwrap_or(0);
        if self.in_flight >= MAX_CONCURRENT_FETCHES
            || by_source >= MAX_CONCURRENT_FETCHES_PER_SOURCE
            || !self.make_room(now)
        {
            return Resolved(ready(Err(DocumentError::Busy)));
        }
        self.in_flight += 1;
        self.in_flight_by_source.insert(msg.source, by_source + 1);
        let source = msg.source;
        let url = msg.client_id;
        let args = self.args.clone();
        let actor = ctx.actor_ref().clone();
        let task_url = url.clone();
        let task = tokio::spawn(async move {
            let (outcome, lifetime) = fetch(&task_url, &args).await;
            let store = CacheClientDocument {
                url: task_url,
                source,
                outcome: outcome.clone(),
                lifetime,
            };
            let _ = actor.tell(store).await;
            outcome
        });
        let fetch = async move { task.await.unwrap_or(Err(DocumentError::Fetch)) }
            .boxed()
            .shared();
        self.entries.insert(url, Entry::Pending(fetch.clone()));
        Resolved(fetch)
    }
}

impl Message<CacheClientDocument> for ClientMetadataDocuments {
    type Reply = ();

    async fn handle(&mut self, msg: CacheClientDocument, _: &mut Context<Self, ()>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some(count) = self.in_flight_by_source.get_mut(&msg.source) {
            *count -= 1;
            if *count == 0 {
                self.in_flight_by_source.remove(&msg.source);
            }
        }
        let lifetime = match &msg.outcome {
            Ok(_) => msg.lifetime,
            Err(_) => Some(FAILURE_TTL),
        };
        match &msg.outcome {
            Ok(client) => {
                tracing::info!(actor = "ClientMetadataDocuments", client_id = %msg.url, name = client.display_name(), cached_s = lifetime.map_or(0, |l| l.as_secs()), "client metadata document fetched")
            }
            Err(err) => {
                tracing::info!(actor = "ClientMetadataDocuments", client_id = %msg.url, error = %err, "client metadata document refused")
            }
        }
        match lifetime {
            Some(lifetime) => {
                self.entries.insert(
                    msg.url,
                    Entry::Ready {
                        outcome: msg.outcome,
                        expires_at: Instant::now() + lifetime,
                    },
                );
            }
            None => {
                self.entries.remove(&msg.url);
            }
        }
    }
}

/// Fetches and validates one document; the lifetime is its cache lifetime.
async fn fetch(url: &str, args: &ClientMetadataArgs) -> (Outcome, Option<Duration>) {
    match tokio::time::timeout(args.timeout, fetch_inner(url, args)).await {
        Ok(Ok((client, lifetime))) => (Ok(client), lifetime),
        Ok(Err(err)) => (Err(err), None),
        Err(_) => (Err(DocumentError::Fetch), None),
    }
}

async fn fetch_inner(
    url: &str,
    args: &ClientMetadataArgs,
) -> Result<(Arc<Client>, Option<Duration>), DocumentError> {
    let parsed = client_id_url::check_url(url, args.allow_private)?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(args.timeout)
        .connect_timeout(args.timeout)
        .no_proxy();
    match parsed.host() {
        Some(url::Host::Domain(domain)) => {
            let addresses: Vec<IpAddr> = tokio::net::lookup_host((domain, port))
                .await
                .map_err(|_| DocumentError::Resolve)?
                .map(|a| a.ip())
                .collect();
            let Some(first) = addresses.first().copied() else {
                return Err(DocumentError::Resolve);
            };
            if !args.allow_private && !addresses.iter().all(|ip| client_id_url::is_public(*ip)) {
                return Err(DocumentError::PrivateResolved);
            }
            // Connect to the checked address only: no second resolution.
            builder = builder.resolve(domain, SocketAddr::new(first, port));
        }
        Some(url::Host::Ipv4(ip)) => {
            if !args.allow_private && !client_id_url::is_public(IpAddr::V4(ip)) {
                return Err(DocumentError::PrivateAddress);
            }
        }
        Some(url::Host::Ipv6(ip)) => {
            if !args.allow_private && !client_id_url::is_public(IpAddr::V6(ip)) {
                return Err(DocumentError::PrivateAddress);
            }
        }
        None => return Err(DocumentError::Url(UrlError::Invalid)),
    }
    let http = builder.build().map_err(|_| DocumentError::Fetch)?;
    let mut response = http
        .get(parsed)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|_| DocumentError::Fetch)?;
    let status = response.status();
    if status.is_redirection() {
        return Err(DocumentError::Redirect);
    }
    if status != reqwest::StatusCode::OK {
        return Err(DocumentError::Status(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(DocumentError::TooLarge);
    }
    let lifetime = client_id_url::cache_lifetime(
        response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok()),
    );
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| DocumentError::Fetch)? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(DocumentError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let document = strict_json::parse(&body).map_err(|err| match err {
        StrictJsonError::Malformed => DocumentError::NotJson,
        StrictJsonError::RepeatedKey => DocumentError::Invalid("an object repeats a key".into()),
    })?;
    if !document.is_object() {
        return Err(DocumentError::NotJson);
    }
    let meta = client_metadata::validate(&document, &args.extra_schemes, Source::Document { url })
        .map_err(|err| DocumentError::Invalid(err.description))?;
    let client = Client::from_metadata(url.to_string(), meta, ClientKind::MetadataDocument);
    Ok((Arc::new(client), lifetime))
}
