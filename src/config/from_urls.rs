//! Settings from two URLs, for an app that embeds a server as a library: [`AuthSettings::new`]
//! and [`McpSettings::new`]. Every other setting takes the command line's default, parsed by the
//! same clap definitions with their environment variables unbound, so an app's environment
//! changes nothing it did not ask for.

use super::auth::AuthSettings;
use super::auth_args::AuthServerConfig;
use super::checks::ConfigError;
use super::mcp::McpSettings;
use super::mcp_args::McpServerConfig;
use clap::{Args, FromArgMatches};

/// Parses `args` (the program name first) with the flags of `T`, their environment variables
/// unbound; a refusal names `setting` and gives the first line of the parser's message.
fn without_environment<T: Args + FromArgMatches>(
    args: &[&str],
    setting: &'static str,
) -> Result<T, ConfigError> {
    let command = T::augment_args(clap::Command::new("mcp-oauth")).mut_args(|arg| arg.env(None));
    command
        .try_get_matches_from(args)
        .and_then(|matches| T::from_arg_matches(&matches))
        .map_err(|e| {
            let message = e.to_string();
            let line = message.lines().next().unwrap_or_default();
            ConfigError {
                setting,
                reason: line.strip_prefix("error: ").unwrap_or(line).to_string(),
            }
        })
}

impl AuthSettings {
    /// The settings of an authorization server with the issuer `issuer`, issuing tokens for
    /// `resource` (and its `/mcp`) by default, every other setting at its default (the defaults
    /// of the command line, without reading the environment): the store in `./data`; set
    /// `store` to [`super::StoreSettings::InMemory`] to keep nothing. An https issuer gets a
    /// random session secret, so sign-ins last until a restart unless `sessions.cookie_secret`
    /// is set.
    pub fn new(issuer: &str, resource: &str) -> Result<Self, ConfigError> {
        Self::from_urls(issuer, resource, &crate::trace::random_token(32))
    }

    /// [`AuthSettings::new`] with `session_secret` for an https issuer. Each value goes with
    /// its flag (`--flag=value`), so that one starting with `-` (a random secret may) is not
    /// read as a flag of its own.
    fn from_urls(issuer: &str, resource: &str, session_secret: &str) -> Result<Self, ConfigError> {
        let mut args = vec![
            "auth-server".to_string(),
            format!("--issuer={issuer}"),
            format!("--resource={resource}"),
        ];
        if issuer.starts_with("https://") {
            args.push(format!("--session-secret={session_secret}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let setting = "AUTH_SERVER_ISSUER or AUTH_SERVER_RESOURCE";
        without_environment::<AuthServerConfig>(&args, setting)?.validate()
    }
}

impl McpSettings {
    /// The settings of a resource server at `resource_server` trusting the issuer
    /// `authorization_server`, every other setting at its default (the defaults of the
    /// command line, without reading the environment). The JWKS is the authorization server's
    /// `/oauth/jwks` and its revocation feed is followed: for another authorization server set
    /// `jwks.url` to its JWKS and `revocation_feed` to `None`.
    pub fn new(authorization_server: &str, resource_server: &str) -> Result<Self, ConfigError> {
        let (authorization_server, resource_server) = (
            format!("--authorization-server={authorization_server}"),
            format!("--resource-server={resource_server}"),
        );
        let args = ["mcp-server", &authorization_server, &resource_server];
        let setting = "AUTHORIZATION_SERVER_URL or RESOURCE_SERVER_URL";
        without_environment::<McpServerConfig>(&args, setting)?.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment changes nothing: the defaults are the command line's own.
    #[test]
    fn two_urls_make_settings_and_a_bad_one_is_named() {
        let auth =
            AuthSettings::new("https://auth.example.com", "https://mcp.example.com").unwrap();
        assert!(auth.is_https());
        assert_eq!(auth.tokens.access_ttl, std::time::Duration::from_secs(900));
        let mcp = McpSettings::new("https://auth.example.com", "https://mcp.example.com").unwrap();
        assert_eq!(mcp.jwks.url, "https://auth.example.com/oauth/jwks");
        let err = McpSettings::new("not a url", "https://mcp.example.com").unwrap_err();
        assert_eq!(
            err.setting,
            "AUTHORIZATION_SERVER_URL or RESOURCE_SERVER_URL"
        );
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
    }

    /// A value that starts with `-` is the value of its flag, not a flag: a random session
    /// secret does one time in 64 (base64url), and `AuthSettings::new` failed then.
    #[test]
    fn values_that_start_with_a_dash_stay_values() {
        let secret = "-_".repeat(22);
        let auth = AuthSettings::from_urls(
            "https://auth.example.com",
            "https://mcp.example.com",
            &secret,
        )
        .unwrap();
        assert!(auth.is_https());
        let err = McpSettings::new("-not-a-url", "https://mcp.example.com").unwrap_err();
        assert!(!err.reason.contains("unexpected argument"), "{err}");
    }
}
