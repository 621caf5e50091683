//! Pre-registered clients from a TOML file (`--clients-file`), for deployments that turn dynamic
//! registration off. Each `[[client]]` table names its `client_id`, `client_name`,
//! `redirect_uris`, and either `token_endpoint_auth_method = "none"` (a public client) or a
//! `client_secret_hash` (an argon2 PHC string; the client authenticates with
//! `client_secret_basic` by default, or the `client_secret_post` it names), or
//! `token_endpoint_auth_method = "private_key_jwt"` with its public keys as `jwks` (a JWKS as
//! JSON text). `grant_types` (`client_credentials` for a machine client, which then needs no
//! `redirect_uris`), `scope` and `application_type` are optional. The metadata rules are those of registration
//! (`oauth::client_metadata`); a bad file stops the server at start with the client it concerns.
//!
//! ```toml
//! [[client]]
//! client_id = "ops-console"
//! client_name = "Ops console"
//! redirect_uris = ["https://ops.example.com/oauth/callback"]
//! client_secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! ```

use crate::oauth::client::{Client, ClientKind, SecretHash, TokenEndpointAuthMethod};
use crate::oauth::client_metadata::{self, Source};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    client: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    client_id: String,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    token_endpoint_auth_method: Option<String>,
    client_secret_hash: Option<String>,
    /// A `private_key_jwt` client's public keys: a JWKS as JSON text.
    jwks: Option<String>,
    grant_types: Option<Vec<String>>,
    scope: Option<String>,
    application_type: Option<String>,
    client_uri: Option<String>,
}

/// Why the clients file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientsFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {reason}")]
    Parse { path: String, reason: String },
    #[error("client {client_id:?}: {reason}")]
    Client { client_id: String, reason: String },
}

/// Reads and validates the clients file.
pub fn load(path: &Path, extra_schemes: &[String]) -> Result<Vec<Arc<Client>>, ClientsFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientsFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, extra_schemes).map_err(|err| match err {
        ClientsFileError::Parse { reason, .. } => ClientsFileError::Parse {
            path: path.display().to_string(),
            reason,
        },
        other => other,
    })
}

/// Parses and validates the text of a clients file.
pub fn parse(text: &str, extra_schemes: &[String]) -> Result<Vec<Arc<Client>>, ClientsFileError> {
    let file: File = basic_toml::from_str(text).map_err(|e| ClientsFileError::Parse {
        path: String::new(),
        reason: e.to_string(),
    })?;
    let mut seen = HashSet::new();
    let mut clients = Vec::with_capacity(file.client.len());
    for entry in file.client {
        let client_id = entry.client_id.clone();
        let fail = |reason: &str| ClientsFileError::Client {
            client_id: client_id.clone(),
            reason: reason.to_string(),
        };
        if client_id.is_empty()
            || client_id.len() > 255
            || client_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(fail("client_id must be 1-255 characters without spaces"));
        }
        if client_id.starts_with("https://") || client_id.starts_with("http://") {
            return Err(fail(
                "an URL client_id is a client metadata document; choose another id",
            ));
        }
        if !seen.insert(client_id.clone()) {
            return Err(fail("client_id appears twice"));
        }
        let method = match (
            &entry.client_secret_hash,
            entry.token_endpoint_auth_method.as_deref(),
        ) {
            (None, None | Some("none")) => TokenEndpointAuthMethod::None,
            (None, Some("private_key_jwt")) => TokenEndpointAuthMethod::PrivateKeyJwt,
            (None, Some(_)) => {
                return Err(fail(
                    "a confidential client needs client_secret_hash, or private_key_jwt and jwks",
                ));
            }
            (Some(_), None) => TokenEndpointAuthMethod::ClientSecretBasic,
            (Some(_), Some(m)) => match TokenEndpointAuthMethod::parse(m) {
                Some(TokenEndpointAuthMethod::None | TokenEndpointAuthMethod::PrivateKeyJwt)
                | None => {
                    return Err(fail(
                        "with client_secret_hash, token_endpoint_auth_method must be client_secret_basic or client_secret_post",
                    ));
                }
                Some(method) => method,
            },
        };
        if let Some(hash) = &entry.client_secret_hash
            && argon2::password_hash::PasswordHash::new(hash).is_err()
        {
            return Err(fail("client_secret_hash is not an argon2 PHC string"));
        }
        let jwks = match &entry.jwks {
            Some(text) => Some(
                serde_json::from_str::<serde_json::Value>(text)
                    .map_err(|_| fail("jwks is not a JSON object"))?,
            ),
            None => None,
        };
        let metadata = serde_json::json!({
            "client_name": entry.client_name,
            "redirect_uris": entry.redirect_uris,
            "grant_types": entry.grant_types,
            "token_endpoint_auth_method": method.as_str(),
            "jwks": jwks,
            "scope": entry.scope,
            "application_type": entry.application_type,
            "client_uri": entry.client_uri,
        });
        let validated = client_metadata::validate(&metadata, extra_schemes, Source::Registration)
            .map_err(|err| fail(&err.description))?;
        let mut client = Client::from_metadata(client_id, validated, ClientKind::Configured);
        if let Some(phc) = entry.client_secret_hash {
            client.secret = Some(Box::new(SecretHash::Argon2(phc)));
        }
        clients.push(Arc::new(client));
    }
    Ok(clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$bW9ja2hhc2htb2NraGFzaG1vY2toYXNobW9ja2hhc2g";

    #[test]
    fn public_and_confidential_clients() {
        let text = format!(
            r#"
            [[client]]
            client_id = "cli"
            client_name = "CLI"
            redirect_uris = ["http://127.0.0.1/cb"]
            token_endpoint_auth_method = "none"

            [[client]]
            client_id = "web"
            redirect_uris = ["https://app.example.com/cb"]
            client_secret_hash = "{HASH}"
            scope = "mcp.read"
            "#
        );
        let clients = parse(&text, &[]).unwrap();
        assert_eq!(clients.len(), 2);
        assert!(clients[0].is_public());
        assert_eq!(clients[0].kind, ClientKind::Configured);
        assert_eq!(
            clients[1].token_endpoint_auth_method,
            TokenEndpointAuthMethod::ClientSecretBasic
        );
        assert_eq!(clients[1].scope.as_deref(), Some("mcp.read"));
        assert!(!clients[1].secret_matches("wrong"));
    }

    /// Machine clients: no redirect URIs; a secret hash, or private_key_jwt with its keys.
    #[test]
    fn machine_clients() {
        let (_, jwk) = crate::oauth::client_assertion::tests::key_pair("k");
        let jwks = serde_json::json!({"keys": [jwk]}).to_string();
        let text = format!(
            r#"
            [[client]]
            client_id = "nightly"
            grant_types = ["client_credentials"]
            client_secret_hash = "{HASH}"

            [[client]]
            client_id = "agent"
            grant_types = ["client_credentials"]
            token_endpoint_auth_method = "private_key_jwt"
            jwks = '{jwks}'
            "#
        );
        let clients = parse(&text, &[]).unwrap();
        assert!(clients[0].grant_types.client_credentials() && clients[0].redirect_uris.is_empty());
        assert!(clients[0].secret_is_argon2());
        assert_eq!(
            clients[1].token_endpoint_auth_method,
            TokenEndpointAuthMethod::PrivateKeyJwt
        );
        assert_eq!(clients[1].public_keys(), Some(jwks.as_str()));
        // private_key_jwt without keys, or a public machine client, is refused.
        for bad in [
            "[[client]]\nclient_id = \"a\"\ngrant_types = [\"client_credentials\"]\ntoken_endpoint_auth_method = \"private_key_jwt\"",
            "[[client]]\nclient_id = \"a\"\ngrant_types = [\"client_credentials\"]",
        ] {
            assert!(parse(bad, &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_files_name_the_client() {
        let cases = [
            r#"[[client]]
               client_id = "a"
               redirect_uris = ["http://example.com/cb"]"#,
            r#"[[client]]
               client_id = "a"
               redirect_uris = ["http://127.0.0.1/cb"]
               token_endpoint_auth_method = "client_secret_basic""#,
            r#"[[client]]
               client_id = "a"
               redirect_uris = ["http://127.0.0.1/cb"]
               client_secret_hash = "plain-text""#,
            r#"[[client]]
               client_id = "https://a.example/c.json"
               redirect_uris = ["http://127.0.0.1/cb"]"#,
            r#"[[client]]
               client_id = "a"
               redirect_uris = ["http://127.0.0.1/cb"]
               [[client]]
               client_id = "a"
               redirect_uris = ["http://127.0.0.1/cb"]"#,
        ];
        for text in cases {
            assert!(
                matches!(parse(text, &[]), Err(ClientsFileError::Client { .. })),
                "{text}"
            );
        }
        assert!(matches!(
            parse("[[client]]\nclient_id = 1", &[]),
            Err(ClientsFileError::Parse { .. })
        ));
        assert!(matches!(
            parse(
                "[[client]]\nclient_id = \"a\"\nredirect_uris = []\nsecret = \"x\"",
                &[]
            ),
            Err(ClientsFileError::Parse { .. })
        ));
    }
}
