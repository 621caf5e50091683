//! DNS-rebinding protection for the MCP endpoint (RS-5): the `Host` header must name this server,
//! and an `Origin`, when present, must be an allowed origin. Both lists come from configuration;
//! the defaults are the resource server URL's host and origin, plus any loopback name and origin
//! while the server listens on loopback (so the browser-based MCP Inspector works).

use crate::config::McpSettings;
use url::Url;

pub struct RequestOrigins {
    /// `host` (any port) or `host:port` entries, lowercase.
    hosts: Vec<String>,
    /// Serialized origins (`scheme://host[:port]`), lowercase.
    origins: Vec<String>,
    loopback: bool,
}

fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits `host[:port]` (with `[v6]` literals) into host and optional port.
fn split_authority(authority: &str) -> (&str, Option<&str>) {
    if let Some(rest) = authority.strip_prefix('[') {
        match rest.find(']') {
            Some(end) => {
                let host = &authority[..end + 2];
                let port = authority[end + 2..].strip_prefix(':');
                (host, port)
            }
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    }
}

impl RequestOrigins {
    pub fn new(config: &McpSettings, listening_on_loopback: bool) -> Self {
        let resource = Url::parse(&config.resource_server).ok();
        let hosts = if config.allowed_hosts.is_empty() {
            resource
                .as_ref()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .into_iter()
                .collect()
        } else {
            config
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect()
        };
        let origins = if config.allowed_origins.is_empty() {
            resource
                .as_ref()
                .map(|u| u.origin().ascii_serialization())
                .into_iter()
                .collect()
        } else {
            config
                .allowed_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect()
        };
        let resource_is_loopback = resource
            .as_ref()
            .is_some_and(crate::oauth::redirect_uri::is_loopback_host);
        RequestOrigins {
            hosts,
            origins,
            loopback: listening_on_loopback || resource_is_loopback,
        }
    }

    /// Is this `Host` header value one of ours?
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, _) = split_authority(&host);
        if self.loopback && is_loopback_name(name) {
            return true;
        }
        self.hosts
            .iter()
            .any(|allowed| match split_authority(allowed) {
                (_, Some(_)) => *allowed == host,
                (allowed_name, None) => allowed_name == name,
            })
    }

    /// Is this `Origin` header value allowed?
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        if self.loopback
            && let Ok(url) = Url::parse(&origin)
            && matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(is_loopback_name)
        {
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        mcp: crate::config::McpServerConfig,
    }

    fn config(args: &[&str]) -> McpSettings {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Cli::parse_from(all).mcp.validate().unwrap()
    }

    #[test]
    fn loopback_defaults() {
        let o = RequestOrigins::new(&config(&[]), true);
        for host in [
            "localhost:8990",
            "127.0.0.1:8990",
            "[::1]:8990",
            "localhost",
        ] {
            assert!(o.host_allowed(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8990",
            "localhost.evil.example",
        ] {
            assert!(!o.host_allowed(host), "{host}");
        }
        for origin in [
            "http://localhost:6274",
            "http://127.0.0.1:3000",
            "http://localhost:8990",
        ] {
            assert!(o.origin_allowed(origin), "{origin}");
        }
        for origin in [
            "http://evil.example",
            "null",
            "https://localhost.evil.example",
        ] {
            assert!(!o.origin_allowed(origin), "{origin}");
        }
    }

    #[test]
    fn real_hostnames() {
        let o = RequestOrigins::new(
            &config(&[
                "--resource-server",
                "https://mcp.example.com",
                "--allowed-origins",
                "https://app.example.com",
            ]),
            false,
        );
        assert!(o.host_allowed("mcp.example.com"));
        assert!(o.host_allowed("mcp.example.com:443"));
        assert!(!o.host_allowed("localhost:8990"));
        assert!(o.origin_allowed("https://app.example.com"));
        assert!(!o.origin_allowed("http://localhost:6274"));
    }
}
