//! What an OAuth client does: make a PKCE pair, register, build the authorization URL, read the
//! code from the redirect back, and redeem it at the token endpoint.

use crate::{Error, Result, expect};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A PKCE pair (RFC 7636, S256), computed independently of the server's code.
#[derive(Clone, Debug)]
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    /// A fresh verifier of 32 random bytes, base64url, and its S256 challenge.
    pub fn new() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes[..]);
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
        }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a client (RFC 7591) with `metadata`; the registration answer, which must be 201.
pub async fn register(http: &reqwest::Client, issuer: &str, metadata: &Value) -> Result<Value> {
    let response = http
        .post(format!("{issuer}/register"))
        .json(metadata)
        .send()
        .await?;
    Ok(expect(response, "registration", |s| s == 201)?
        .json()
        .await?)
}

/// The `client_id` of a registration answer.
pub fn client_id(registration: &Value) -> Result<String> {
    registration["client_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::Missing("client_id".into()))
}

/// `{issuer}/authorize` with `response_type=code`, the client, the S256 challenge, then `params`
/// in order (`redirect_uri`, `scope`, `resource`, `state`, …).
pub fn authorize_url(
    issuer: &str,
    client_id: &str,
    code_challenge: &str,
    params: &[(&str, &str)],
) -> Result<String> {
    let mut url = url::Url::parse(&format!("{issuer}/authorize"))?;
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    Ok(url.to_string())
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Result<String> {
    url::Url::parse(url)?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Error::Missing(format!("the {name} parameter")))
}

/// The authorization code in the redirect back to the client.
pub fn code_of(url: &str) -> Result<String> {
    query_param(url, "code")
}

/// Redeems `code` as a public client (`grant_type=authorization_code`), with `extra` form fields
/// (a `resource`, say); the token endpoint's answer, whatever its status.
pub async fn redeem(
    http: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    redirect_uri: &str,
    code: &str,
    verifier: &str,
    extra: &[(&str, &str)],
) -> Result<reqwest::Response> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ];
    form.extend_from_slice(extra);
    Ok(http
        .post(format!("{issuer}/token"))
        .form(&form)
        .send()
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_the_s256_of_the_verifier() {
        let pkce = Pkce::new();
        assert_eq!(pkce.verifier.len(), 43);
        assert_eq!(
            pkce.challenge,
            URL_SAFE_NO_PAD.encode(Sha256::digest(pkce.verifier.as_bytes()))
        );
        assert_ne!(Pkce::new().verifier, pkce.verifier);
    }

    #[test]
    fn the_authorization_url_carries_every_parameter() {
        let url = authorize_url(
            "http://127.0.0.1:1",
            "abc",
            "xyz",
            &[
                ("scope", "mcp.read mcp.write"),
                ("resource", "http://h/mcp"),
            ],
        )
        .unwrap();
        assert_eq!(query_param(&url, "response_type").unwrap(), "code");
        assert_eq!(query_param(&url, "client_id").unwrap(), "abc");
        assert_eq!(query_param(&url, "code_challenge").unwrap(), "xyz");
        assert_eq!(query_param(&url, "code_challenge_method").unwrap(), "S256");
        assert_eq!(query_param(&url, "scope").unwrap(), "mcp.read mcp.write");
        assert_eq!(query_param(&url, "resource").unwrap(), "http://h/mcp");
        assert!(url.starts_with("http://127.0.0.1:1/authorize?"));
    }

    #[test]
    fn the_code_is_read_from_the_redirect() {
        assert_eq!(code_of("http://c/cb?code=a%2Bb&state=s").unwrap(), "a+b");
        assert!(matches!(
            code_of("http://c/cb?error=access_denied"),
            Err(Error::Missing(_))
        ));
    }
}
