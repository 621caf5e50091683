//! Per-source rate limits of the authorization server's endpoints, kept by the `Throttle` actor:
//! `/authorize`, `/register`, `/token` with `/revoke` and `/introspect` (one bucket), and the
//! login form; and [`SourceAddress`], the address a request counts against.
//!
//! The source is the peer address, unless the peer is one of `AUTH_SERVER_TRUSTED_PROXIES`:
//! then it is the rightmost `X-Forwarded-For` address that is not itself a trusted proxy (each
//! proxy appends the address it received from, so everything left of the last untrusted hop may
//! have been written by the client and is ignored). A malformed entry, or none, leaves the
//! nearest hop that could be read.

use super::state::AuthState;
use crate::actors::throttle::{Endpoint, Limited};
use crate::actors::{AskError, Deferred, ask_deferred};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The address a request counts against for the per-source limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceAddress(pub IpAddr);

impl FromRequestParts<AuthState> for SourceAddress {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AuthState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |ConnectInfo(peer)| peer.ip());
        Ok(SourceAddress(source_of(
            peer,
            &parts.headers,
            &state.config.trusted_proxies,
        )))
    }
}

/// The source of a request from `peer` with `headers`, given the trusted proxies.
pub fn source_of(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut source = peer.to_canonical();
    if !is_trusted(&source) {
        return source;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        source = ip.to_canonical();
        if !is_trusted(&source) {
            break;
        }
    }
    source
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:80`), as some proxies write them.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// Takes a token from the source's bucket for `endpoint`. A throttle that cannot answer admits
/// the request: rate limiting must never take the server down with it.
pub async fn admit(
    state: &AuthState,
    endpoint: Endpoint,
    source: SourceAddress,
) -> Result<(), Limited> {
    admit_deferred(state, endpoint, source)
        .await
        .map(Deferred::write)
}

/// [`admit`], with the trace line of an admitted request held back (see `actors/ask.rs`).
pub async fn admit_deferred(
    state: &AuthState,
    endpoint: Endpoint,
    source: SourceAddress,
) -> Result<Deferred, Limited> {
    let msg = crate::actors::throttle::Admit {
        endpoint,
        source: source.0,
    };
    match ask_deferred(&state.throttle, msg).await {
        (Err(AskError::Rejected(limited)), line) => {
            drop(line);
            tracing::info!(?endpoint, source = %source.0, retry_after = limited.seconds(), "rate limited");
            Err(limited)
        }
        (_, line) => Ok(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (case, peer, X-Forwarded-For values, trusted proxies, source)
    #[test]
    fn the_source_behind_trusted_proxies() {
        #[rustfmt::skip]
        let cases: &[(&str, &str, &[&str], &str, &str)] = &[
            ("no proxies trusted: the header is ignored", "10.0.0.5", &["203.0.113.9"], "", "10.0.0.5"),
            ("an untrusted peer: the header is ignored", "198.51.100.1", &["203.0.113.9"], "10.0.0.0/8", "198.51.100.1"),
            ("one trusted proxy", "10.0.0.5", &["203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
            ("a client-written prefix is ignored", "10.0.0.5", &["1.1.1.1, 203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
            ("two trusted hops", "10.0.0.5", &["203.0.113.9, 10.0.0.7"], "10.0.0.0/8", "203.0.113.9"),
            ("several headers in order", "10.0.0.5", &["1.1.1.1", "203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
            ("no header", "10.0.0.5", &[], "10.0.0.0/8", "10.0.0.5"),
            ("a malformed hop stops the walk", "10.0.0.5", &["203.0.113.9, garbage"], "10.0.0.0/8", "10.0.0.5"),
            ("all hops trusted: the leftmost", "10.0.0.5", &["10.0.0.9, 10.0.0.7"], "10.0.0.0/8", "10.0.0.9"),
            ("IPv4-mapped peer", "::ffff:10.0.0.5", &["203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
            ("IPv6 hop", "::1", &["2001:db8::7"], "::1/128", "2001:db8::7"),
            ("a hop with a port", "10.0.0.5", &["203.0.113.9:4711"], "10.0.0.0/8", "203.0.113.9"),
            ("an IPv6 hop with a port", "10.0.0.5", &["[2001:db8::7]:4711"], "10.0.0.0/8", "2001:db8::7"),
        ];
        for (case, peer, values, trusted, expected) in cases {
            let mut headers = HeaderMap::new();
            for value in *values {
                headers.append("x-forwarded-for", value.parse().unwrap());
            }
            let trusted: Vec<ipnet::IpNet> = trusted
                .split(',')
                .filter(|t| !t.is_empty())
                .map(|t| t.parse().unwrap())
                .collect();
            let source = source_of(peer.parse().unwrap(), &headers, &trusted);
            assert_eq!(source, expected.parse::<IpAddr>().unwrap(), "{case}");
        }
    }
}
