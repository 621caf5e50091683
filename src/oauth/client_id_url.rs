//! URL client ids (draft-ietf-oauth-client-id-metadata-document, CL-3): which `client_id` values
//! name a Client ID Metadata Document, which of them the server may fetch, which addresses it may
//! connect to (SSRF: never private, loopback, link-local or otherwise non-public ones unless the
//! operator allows them for development), and how long a fetched document is kept per its
//! `Cache-Control`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;
use url::Url;

/// The longest URL client id accepted.
pub const MAX_URL_LEN: usize = 512;
/// A document is cached at least this long (a client cannot make the server refetch on every
/// request) ...
pub const MIN_CACHE: Duration = Duration::from_secs(60);
/// ... and at most this long.
pub const MAX_CACHE: Duration = Duration::from_secs(24 * 3600);
/// Without caching headers.
pub const DEFAULT_CACHE: Duration = Duration::from_secs(300);

/// True when a `client_id` is meant as a metadata document URL (and not a registered id).
pub fn is_url_client_id(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Why a URL client id cannot be fetched. Fixed text, shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the client_id URL is not a valid absolute URL")]
    Invalid,
    #[error("the client_id URL must use https")]
    NotHttps,
    #[error(
        "the client_id URL must have a path, and no fragment, user information or dot segments"
    )]
    Shape,
    #[error("the client_id URL is too long")]
    TooLong,
}

/// Checks a URL client id (draft section 3): https (http only when `allow_http`), a host, a path
/// other than `/`, no fragment, no user information, no `.`/`..` segments.
pub fn check_url(client_id: &str, allow_http: bool) -> Result<Url, UrlError> {
    if client_id.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong);
    }
    if client_id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(UrlError::Invalid);
    }
    let url = Url::parse(client_id).map_err(|_| UrlError::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err(UrlError::NotHttps),
    }
    if url.host().is_none() {
        return Err(UrlError::Invalid);
    }
    let after_scheme = client_id.split_once("://").map_or("", |(_, rest)| rest);
    let raw_path = after_scheme
        .find('/')
        .map_or("", |start| &after_scheme[start..]);
    let raw_path = raw_path.split(['?', '#']).next().unwrap_or("");
    if url.path() == "/"
        || client_id.contains('#')
        || !url.username().is_empty()
        || url.password().is_some()
        || raw_path
            .split('/')
            .any(|segment| segment == "." || segment == ".." || segment.eq_ignore_ascii_case("%2e"))
    {
        return Err(UrlError::Shape);
    }
    Ok(url)
}

/// True for addresses on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast, documentation, benchmarking or reserved ranges, and for
/// IPv6 not unique-local, site-local, or an IPv4-mapped/translated form of a non-public address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 0 && c == 2)
        || (a == 192 && b == 88 && c == 99)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || (a == 198 && b == 51 && c == 100)
        || (a == 203 && b == 0 && c == 113)
        || a >= 224)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    let first = segments[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // IPv4-compatible (deprecated) and NAT64 forms carry an IPv4 address: refuse them.
        || segments[..6].iter().all(|s| *s == 0)
        || (segments[0] == 0x64 && segments[1] == 0xff9b)
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local fec0::/10
        || (first == 0x2001 && segments[1] == 0x0db8) // documentation
        || (first == 0x2001 && segments[1] < 0x0200) // 2001::/23 special purpose
        || first == 0x2002) // 6to4 embeds IPv4
}

/// How long a fetched document may be reused, from its `Cache-Control` header: `None` for
/// `no-store`, `no-cache` and `max-age=0`; otherwise `max-age` clamped to
/// [`MIN_CACHE`]..[`MAX_CACHE`], or [`DEFAULT_CACHE`] without one.
pub fn cache_lifetime(cache_control: Option<&str>) -> Option<Duration> {
    let Some(value) = cache_control else {
        return Some(DEFAULT_CACHE);
    };
    let mut max_age = None;
    for directive in value.split(',') {
        let directive = directive.trim();
        let (name, arg) = directive
            .split_once('=')
            .map_or((directive, None), |(n, a)| {
                (n.trim(), Some(a.trim().trim_matches('"')))
            });
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return None;
        }
        if name.eq_ignore_ascii_case("max-age") {
            max_age = arg.and_then(|a| a.parse::<u64>().ok());
        }
    }
    match max_age {
        Some(0) => None,
        Some(seconds) => Some(Duration::from_secs(seconds).clamp(MIN_CACHE, MAX_CACHE)),
        None => Some(DEFAULT_CACHE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cl3_url_rules() {
        let cases: &[(&str, bool, Result<(), UrlError>)] = &[
            ("https://app.example.com/client.json", false, Ok(())),
            ("https://app.example.com/oauth/client?v=1", false, Ok(())),
            (
                "http://app.example.com/client.json",
                false,
                Err(UrlError::NotHttps),
            ),
            ("http://127.0.0.1:8080/client.json", true, Ok(())),
            ("https://app.example.com", false, Err(UrlError::Shape)),
            ("https://app.example.com/", false, Err(UrlError::Shape)),
            ("https://app.example.com/a#b", false, Err(UrlError::Shape)),
            ("https://u:p@app.example.com/a", false, Err(UrlError::Shape)),
            (
                "https://app.example.com/a/../b",
                false,
                Err(UrlError::Shape),
            ),
            ("https://app.example.com/./b", false, Err(UrlError::Shape)),
            ("https://app.example.com/%2e/b", false, Err(UrlError::Shape)),
            ("ftp://app.example.com/a", true, Err(UrlError::NotHttps)),
            ("https://app.example.com/a b", false, Err(UrlError::Invalid)),
        ];
        for (url, allow_http, expected) in cases {
            assert_eq!(check_url(url, *allow_http).map(|_| ()), *expected, "{url}");
        }
        let long = format!("https://a.example/{}", "x".repeat(600));
        assert_eq!(check_url(&long, false).map(|_| ()), Err(UrlError::TooLong));
    }

    #[test]
    fn cl3_ssrf_address_classes() {
        let refused = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2001:db8::1",
            "fec0::1",
            "ff02::1",
            "2002:a00:1::1",
        ];
        for ip in refused {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        let allowed = [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ];
        for ip in allowed {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn cl3_cache_lifetimes() {
        let cases: &[(Option<&str>, Option<u64>)] = &[
            (None, Some(300)),
            (Some("public, max-age=3600"), Some(3600)),
            (Some("max-age=5"), Some(60)),
            (Some("max-age=9999999"), Some(86_400)),
            (Some("max-age=0"), None),
            (Some("no-store"), None),
            (Some("private, no-cache"), None),
            (Some("max-age=\"120\""), Some(120)),
            (Some("max-age=abc"), Some(300)),
            (Some("public"), Some(300)),
        ];
        for (header, expected) in cases {
            assert_eq!(
                cache_lifetime(*header),
                expected.map(Duration::from_secs),
                "{header:?}"
            );
        }
    }
}
