//! Both servers in one process (the `mcp-oauth` binary): the URLs they must agree on, derived
//! from as few settings as possible and checked against each other before either starts.
//!
//! Four URLs must agree: the issuer (`AUTH_SERVER_ISSUER`), the resource a token is for
//! (`AUTH_SERVER_RESOURCE` and the known resources), and the resource server's view of both
//! (`AUTHORIZATION_SERVER_URL`, `RESOURCE_SERVER_URL`). Here they are derived:
//! - from one public URL (`--public-url`): the authorization server at its root, the MCP
//!   endpoint at its `/mcp`, both on one listener (`--listen`), behind one TLS-terminating proxy;
//! - or from the issuer and the resource server URL: the resource server trusts the issuer and
//!   the authorization server issues tokens for the resource server.
//!
//! What is set explicitly is kept, and then checked: a resource server that trusts another
//! issuer, or an authorization server that cannot issue tokens for the resource server, fails
//! the start with one line naming the settings that disagree.

use super::auth::AuthSettings;
use super::auth_args::{AuthServerConfig, DEFAULT_ISSUER, DEFAULT_RESOURCE_SERVER};
use super::checks::{ConfigError, loopback_listen, parse_base_url};
use super::mcp::McpSettings;
use super::mcp_args::McpServerConfig;
use clap::Args;
use std::net::SocketAddr;

/// The settings only the combined binary has.
#[derive(Debug, Clone, Args)]
pub struct PublicConfig {
    /// The one public URL of both servers (an origin, e.g. `https://mcp.example.com`): the
    /// authorization server at its root, the MCP endpoint at its `/mcp`, both on one listener.
    /// It sets the issuer, the resource and the resource server URLs.
    #[arg(long = "public-url", env = "PUBLIC_URL", value_parser = parse_base_url)]
    pub public_url: Option<String>,

    /// With `--public-url`: the address both servers listen on (default: loopback, the public
    /// URL's port).
    #[arg(long = "listen", env = "LISTEN_ADDRESS")]
    pub shared_listen: Option<SocketAddr>,
}

/// Both servers' settings, agreeing with each other.
#[derive(Debug, Clone)]
pub struct CombinedSettings {
    pub auth: AuthSettings,
    pub mcp: McpSettings,
    /// Set with a public URL: both servers answer on this one listener.
    pub shared_listen: Option<SocketAddr>,
}

/// Keeps an explicit setting that equals its derived value; refuses one that differs.
fn derived(
    setting: &'static str,
    explicit: Option<String>,
    value: String,
    from: &str,
) -> Result<String, ConfigError> {
    match explicit {
        Some(explicit) if explicit != value => Err(ConfigError {
            setting,
            reason: format!("{explicit:?} disagrees with {from}, which makes it {value:?}"),
        }),
        _ => Ok(value),
    }
}

impl PublicConfig {
    /// Derives the URLs both servers share, validates each server's settings and checks that
    /// they agree.
    pub fn combine(
        self,
        mut auth: AuthServerConfig,
        mut mcp: McpServerConfig,
    ) -> Result<CombinedSettings, ConfigError> {
        let shared_listen = match &self.public_url {
            Some(public) => Some(Self::one_origin(
                public,
                self.shared_listen,
                &mut auth,
                &mut mcp,
            )?),
            None => {
                if self.shared_listen.is_some() {
                    return Err(ConfigError {
                        setting: "LISTEN_ADDRESS",
                        reason: "needs PUBLIC_URL; without it each server listens on its own \
                                 address (AUTH_SERVER_LISTEN, MCP_SERVER_LISTEN)"
                            .into(),
                    });
                }
                let issuer = auth.issuer.clone().unwrap_or_else(|| DEFAULT_ISSUER.into());
                mcp.authorization_server.get_or_insert(issuer);
                let resource_server = mcp
                    .resource_server
                    .clone()
                    .unwrap_or_else(|| DEFAULT_RESOURCE_SERVER.into());
                auth.resource.get_or_insert(resource_server);
                None
            }
        };
        let mut auth = auth.validate()?;
        let mut mcp = mcp.validate()?;
        check_agreement(&auth, &mcp)?;
        if let Some(addr) = shared_listen {
            auth.listen = addr;
            mcp.listen = addr;
        }
        Ok(CombinedSettings {
            auth,
            mcp,
            shared_listen,
        })
    }

    /// Sets the four URLs from one public origin, and returns the one listen address.
    fn one_origin(
        public: &str,
        listen: Option<SocketAddr>,
        auth: &mut AuthServerConfig,
        mcp: &mut McpServerConfig,
    ) -> Result<SocketAddr, ConfigError> {
        let url = url::Url::parse(public).map_err(|e| ConfigError {
            setting: "PUBLIC_URL",
            reason: e.to_string(),
        })?;
        if url.path() != "/" {
            return Err(ConfigError {
                setting: "PUBLIC_URL",
                reason: "must be an origin without a path (the MCP endpoint is its /mcp)".into(),
            });
        }
        // As clients spell it once a URL parser has read it: the host in lower case, no default
        // port, no trailing slash; the resource is compared with theirs letter by letter.
        let origin = url.origin().ascii_serialization();
        let origin = origin.as_str();
        let separate = [
            ("AUTH_SERVER_LISTEN", auth.listen.is_some()),
            ("MCP_SERVER_LISTEN", mcp.mcp_listen.is_some()),
        ];
        if let Some((setting, _)) = separate.iter().find(|(_, set)| *set) {
            return Err(ConfigError {
                setting,
                reason: "both servers listen on LISTEN_ADDRESS with PUBLIC_URL".into(),
            });
        }
        let endpoint = format!("{origin}/mcp");
        let from = "PUBLIC_URL";
        auth.issuer = Some(derived(
            "AUTH_SERVER_ISSUER",
            auth.issuer.take(),
            origin.into(),
            from,
        )?);
        auth.resource = Some(derived(
            "AUTH_SERVER_RESOURCE",
            auth.resource.take(),
            endpoint.clone(),
            from,
        )?);
        if auth.known_resources.is_empty() {
            auth.known_resources = vec![endpoint];
        }
        mcp.authorization_server = Some(derived(
            "AUTHORIZATION_SERVER_URL",
            mcp.authorization_server.take(),
            origin.into(),
            from,
        )?);
        mcp.resource_server = Some(derived(
            "RESOURCE_SERVER_URL",
            mcp.resource_server.take(),
            origin.into(),
            from,
        )?);
        Ok(listen.unwrap_or_else(|| loopback_listen(public)))
    }
}

/// The resource server must trust the issuer, and the authorization server must issue tokens
/// for one of the resource server's endpoints; otherwise every token would be refused.
fn check_agreement(auth: &AuthSettings, mcp: &McpSettings) -> Result<(), ConfigError> {
    if mcp.authorization_server != auth.issuer {
        return Err(ConfigError {
            setting: "AUTHORIZATION_SERVER_URL",
            reason: format!(
                "{:?} disagrees with AUTH_SERVER_ISSUER {:?}: the resource server would refuse \
                 every token",
                mcp.authorization_server, auth.issuer
            ),
        });
    }
    let endpoints = [mcp.root_resource(), mcp.mcp_resource()];
    if !auth
        .known_resources
        .iter()
        .any(|r| endpoints.contains(&r.trim_end_matches('/').to_string()))
    {
        return Err(ConfigError {
            setting: "AUTH_SERVER_KNOWN_RESOURCES",
            reason: format!(
                "names neither {} nor {} of RESOURCE_SERVER_URL: no token could be issued for it \
                 (AUTH_SERVER_RESOURCE and AUTH_SERVER_KNOWN_RESOURCES: {:?})",
                endpoints[0], endpoints[1], auth.known_resources
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        public: PublicConfig,
        #[command(flatten)]
        auth: AuthServerConfig,
        #[command(flatten)]
        mcp: McpServerConfig,
    }

    fn settings(args: &[&str]) -> Result<CombinedSettings, ConfigError> {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        let cli = Cli::try_parse_from(all).unwrap();
        cli.public.combine(cli.auth, cli.mcp)
    }

    const SECRET: [&str; 2] = ["--session-secret", "0123456789abcdef"];

    #[test]
    fn one_public_url_sets_every_url_and_one_listener() {
        let s = settings(&[&["--public-url", "https://mcp.example.com/"][..], &SECRET].concat())
            .unwrap();
        assert_eq!(s.auth.issuer, "https://mcp.example.com");
        assert_eq!(s.auth.resource, "https://mcp.example.com/mcp");
        assert_eq!(s.auth.known_resources, ["https://mcp.example.com/mcp"]);
        assert_eq!(s.mcp.authorization_server, "https://mcp.example.com");
        assert_eq!(s.mcp.mcp_resource(), "https://mcp.example.com/mcp");
        assert_eq!(s.mcp.jwks.url, "https://mcp.example.com/oauth/jwks");
        // Loopback stays the default; the public URL's port.
        let loopback = SocketAddr::from(([127, 0, 0, 1], 443));
        assert_eq!(s.shared_listen, Some(loopback));
        assert_eq!((s.auth.listen, s.mcp.listen), (loopback, loopback));

        // Spelled as a URL parser spells it.
        let s = settings(
            &[
                &["--public-url", "https://MCP.Example.com:443"][..],
                &SECRET,
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(s.auth.issuer, "https://mcp.example.com");
        assert_eq!(s.auth.known_resources, ["https://mcp.example.com/mcp"]);

        let s = settings(
            &[
                &["--public-url", "https://mcp.example.com"][..],
                &["--listen", "0.0.0.0:8080"],
                // Equal to what the public URL makes it: kept.
                &["--issuer", "https://mcp.example.com"],
                &SECRET,
            ]
            .concat(),
        )
        .unwrap();
        let everywhere = SocketAddr::from(([0, 0, 0, 0], 8080));
        assert_eq!(s.shared_listen, Some(everywhere));
        assert_eq!(s.auth.listen, everywhere);
    }

    #[test]
    fn the_issuer_and_the_resource_server_url_set_the_other_two() {
        let s = settings(&[
            "--issuer",
            "http://auth.test:9000",
            "--resource-server",
            "http://mcp.test:9001",
        ])
        .unwrap();
        assert_eq!(s.mcp.authorization_server, "http://auth.test:9000");
        assert_eq!(s.mcp.jwks.url, "http://auth.test:9000/oauth/jwks");
        assert_eq!(s.auth.resource, "http://mcp.test:9001");
        assert_eq!(
            s.auth.known_resources,
            ["http://mcp.test:9001", "http://mcp.test:9001/mcp"]
        );
        assert_eq!(s.shared_listen, None);
        assert_eq!(s.auth.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(s.mcp.listen, SocketAddr::from(([127, 0, 0, 1], 9001)));
        // The defaults agree with each other.
        let s = settings(&[]).unwrap();
        assert_eq!(s.mcp.authorization_server, s.auth.issuer);
        assert_eq!(s.auth.resource, "http://localhost:8990");
    }

    /// Settings that disagree fail with one line naming them.
    #[test]
    fn disagreeing_settings_are_named() {
        let public = ["--public-url", "https://mcp.example.com"];
        let cases: &[(&[&str], &str)] = &[
            (
                &[
                    "--issuer",
                    "http://a.test",
                    "--authorization-server",
                    "http://b.test",
                ],
                "AUTHORIZATION_SERVER_URL",
            ),
            (
                &[
                    "--resource",
                    "http://elsewhere.test",
                    "--resource-server",
                    "http://mcp.test",
                ],
                "AUTH_SERVER_KNOWN_RESOURCES",
            ),
            (&["--listen", "0.0.0.0:8080"], "LISTEN_ADDRESS"),
            (
                &[
                    &public[..],
                    &SECRET,
                    &["--issuer", "https://auth.example.com"],
                ]
                .concat(),
                "AUTH_SERVER_ISSUER",
            ),
            (
                &[
                    &public[..],
                    &SECRET,
                    &["--resource", "https://mcp.example.com"],
                ]
                .concat(),
                "AUTH_SERVER_RESOURCE",
            ),
            (
                &[
                    &public[..],
                    &SECRET,
                    &["--authorization-server", "https://x.test"],
                ]
                .concat(),
                "AUTHORIZATION_SERVER_URL",
            ),
            (
                &[
                    &public[..],
                    &SECRET,
                    &["--resource-server", "https://x.test"],
                ]
                .concat(),
                "RESOURCE_SERVER_URL",
            ),
            (
                &[&public[..], &SECRET, &["--auth-listen", "0.0.0.0:1"]].concat(),
                "AUTH_SERVER_LISTEN",
            ),
            (
                &[&public[..], &SECRET, &["--mcp-listen", "0.0.0.0:1"]].concat(),
                "MCP_SERVER_LISTEN",
            ),
            (
                &[
                    "--public-url",
                    "https://mcp.example.com/base",
                    "--session-secret",
                    "0123456789abcdef",
                ],
                "PUBLIC_URL",
            ),
            // An https public URL is an https issuer: the development session secret is refused.
            (&public, "AUTH_SERVER_SESSION_SECRET"),
        ];
        crate::config::checks::assert_refused(cases, settings);
    }
}
