//! The checks the settings of both servers share, and [`ConfigError`], the one error a bad
//! setting gives. A file of its own, so that the command-line and settings modules can use them
//! without importing `config/mod.rs`, which gathers them.

use std::net::SocketAddr;
use url::Url;

/// A bad setting, with the name of the setting.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub reason: String,
}

/// A base URL setting: an absolute http(s) URL with a host, and no query, fragment or user
/// information.
pub(super) fn parse_base_url(value: &str) -> Result<String, String> {
    let url = Url::parse(value).map_err(|e| format!("not an absolute URL ({e})"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("must be an http or https URL".into());
    }
    if url.host().is_none() {
        return Err("must name a host".into());
    }
    if url.fragment().is_some() || url.query().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user information".into());
    }
    Ok(value.to_string())
}

/// A trusted proxy: a CIDR range, or one address (a range of one).
pub(super) fn parse_proxy(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{value:?} is not an IP address or CIDR range"))
}

/// The default listen address for a URL: loopback, on the URL's port.
pub(super) fn loopback_listen(url: &str) -> SocketAddr {
    let port = Url::parse(url)
        .ok()
        .and_then(|u| u.port_or_known_default())
        .unwrap_or(0);
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A secret setting of at least 16 characters.
pub(super) fn long_secret(setting: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.len() < 16 {
        return Err(ConfigError {
            setting,
            reason: "must be at least 16 characters".into(),
        });
    }
    Ok(())
}

/// Asserts that each set of arguments is refused with an error naming the setting (the table
/// tests of `auth.rs` and `mcp.rs`).
#[cfg(test)]
pub(super) fn assert_refused<T>(
    cases: &[(&[&str], &str)],
    validate: impl Fn(&[&str]) -> Result<T, ConfigError>,
) {
    for (args, setting) in cases {
        let Err(err) = validate(args) else {
            panic!("{args:?} was accepted");
        };
        assert_eq!(err.setting, *setting, "{args:?}");
        let line = err.to_string();
        assert!(line.starts_with(&format!("{setting}: ")), "{line}");
        assert_eq!(line.lines().count(), 1, "{line}");
    }
}
