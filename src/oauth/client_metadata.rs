//! Client metadata (RFC 7591 section 2, OpenID Connect Dynamic Client Registration 1.0 section 2,
//! draft-ietf-oauth-client-id-metadata-document): the one set of rules for metadata a client
//! sends to `/register` and for a Client ID Metadata Document the server fetches (CL-1, CL-3).
//!
//! `application_type` (2026-07-28 clients send it): `web` clients may register only https
//! redirect URIs on hosts other than loopback ones; `native` clients loopback http URIs,
//! private-use schemes or https. When a client omits it (most MCP clients register loopback
//! http URIs without it), the type is inferred from the redirect URIs: `native` when any is a
//! loopback or private-use URI, else `web`. OpenID's default (`web`) would refuse those clients,
//! and an inferred type never accepts a URI the explicit one would refuse.

use crate::oauth::ErrorCode;
use crate::oauth::client::{
    ApplicationType, GrantTypes, NewClient, RESPONSE_TYPES, TokenEndpointAuthMethod,
};
use crate::oauth::redirect_uri;
use crate::oauth::scope::ScopeSet;
use serde_json::{Map, Value};
use std::borrow::Cow;

const MAX_REDIRECT_URIS: usize = 20;
const MAX_NAME_CHARS: usize = 200;

/// Why metadata is refused: the OAuth error code and a fixed description that never echoes input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError {
    pub code: ErrorCode,
    pub description: Cow<'static, str>,
}

fn invalid(description: impl Into<Cow<'static, str>>) -> MetadataError {
    MetadataError {
        code: ErrorCode::InvalidClientMetadata,
        description: description.into(),
    }
}

fn invalid_redirect(description: impl Into<Cow<'static, str>>) -> MetadataError {
    MetadataError {
        code: ErrorCode::InvalidRedirectUri,
        description: description.into(),
    }
}

fn string_list(
    body: &Map<String, Value>,
    field: &str,
    default: &[&str],
) -> Result<Vec<String>, MetadataError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid("list fields must contain strings"))
            })
            .collect(),
        Some(_) => Err(invalid("list fields must be JSON arrays")),
    }
}

fn optional_string(
    body: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, MetadataError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid("string fields must be JSON strings")),
    }
}

/// Where metadata comes from: the body of a registration request, or a Client ID Metadata
/// Document fetched from its `client_id` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Registration,
    Document { url: &'a str },
}

/// Validates client metadata into what the registry stores.
pub fn validate(
    body: &Value,
    extra_schemes: &[String],
    source: Source<'_>,
) -> Result<NewClient, MetadataError> {
    let Some(body) = body.as_object() else {
        return Err(invalid("the metadata must be a JSON object"));
    };
    if let Source::Document { url } = source {
        // The document names itself: its client_id is the URL it was fetched from, exactly.
        match body.get("client_id") {
            Some(Value::String(id)) if id == url => {}
            Some(Value::String(_)) => {
                return Err(invalid(
                    "the document's client_id is not the URL it was fetched from",
                ));
            }
            _ => return Err(invalid("the document has no client_id")),
        }
        // A document is public: it can hold no secret (the draft forbids shared secrets).
        for field in ["client_secret", "client_secret_expires_at"] {
            if body.contains_key(field) {
                return Err(invalid(
                    "a client metadata document must not contain a client secret",
                ));
            }
        }
    }
    // Refresh tokens by default: MCP clients stay connected for days (OAuth 2.1 section 4.3).
    let grant_types = string_list(
        body,
        "grant_types",
        &["authorization_code", "refresh_token"],
    )?;
    let grant_types = GrantTypes::parse(&grant_types).ok_or_else(|| {
        invalid(
            "grant_types may contain only authorization_code, refresh_token and \
             client_credentials, and must include authorization_code or client_credentials \
             (refresh_token only with authorization_code)",
        )
    })?;
    let redirect_uris = string_list(body, "redirect_uris", &[])?;
    if redirect_uris.is_empty() && grant_types.authorization_code() {
        return Err(invalid_redirect("at least one redirect URI is required"));
    }
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(invalid_redirect("too many redirect URIs"));
    }
    for uri in &redirect_uris {
        if let Err(err) = redirect_uri::validate_for_registration(uri, extra_schemes) {
            return Err(invalid_redirect(err.to_string()));
        }
    }
    let application_type = match optional_string(body, "application_type")? {
        None => ApplicationType::infer(&redirect_uris),
        Some(value) => ApplicationType::parse(&value)
            .ok_or_else(|| invalid("application_type must be native or web"))?,
    };
    for uri in &redirect_uris {
        application_type.allows(uri).map_err(invalid_redirect)?;
    }
    let method = match optional_string(body, "token_endpoint_auth_method")? {
        None => TokenEndpointAuthMethod::None,
        Some(m) => match (source, TokenEndpointAuthMethod::parse(&m)) {
            (Source::Registration, Some(method)) => method,
            (Source::Document { .. }, Some(TokenEndpointAuthMethod::None)) => {
                TokenEndpointAuthMethod::None
            }
            (Source::Document { .. }, _) => {
                return Err(invalid(
                    "a client metadata document must use token_endpoint_auth_method none",
                ));
            }
            (Source::Registration, None) => {
                return Err(invalid("unsupported token_endpoint_auth_method"));
            }
        },
    };
    if grant_types.client_credentials() && method == TokenEndpointAuthMethod::None {
        return Err(invalid(
            "client_credentials requires a confidential client (client_secret_basic, \
             client_secret_post or private_key_jwt)",
        ));
    }
    let jwks = public_keys(body, method)?;
    // The code flow's one response type; a machine client has none.
    let response_types: &[&str] = if grant_types.authorization_code() {
        &RESPONSE_TYPES
    } else {
        &[]
    };
    if string_list(body, "response_types", response_types)? != response_types {
        return Err(invalid(if grant_types.authorization_code() {
            "response_types must be [\"code\"]"
        } else {
            "response_types must be empty without the authorization_code grant"
        }));
    }
    let scope = match optional_string(body, "scope")? {
        None => None,
        Some(s) => {
            let set = ScopeSet::parse_supported(&s)
                .map_err(|_| invalid("scope contains an unsupported scope"))?;
            (!set.is_empty()).then(|| set.to_string())
        }
    };
    let client_name = match optional_string(body, "client_name")? {
        Some(name) if name.chars().count() > MAX_NAME_CHARS => {
            return Err(invalid("client_name is too long"));
        }
        Some(name) if name.chars().any(char::is_control) => {
            return Err(invalid("client_name contains control characters"));
        }
        Some(name) if name.trim().is_empty() => None,
        other => other,
    };
    let client_uri = match optional_string(body, "client_uri")? {
        Some(uri) => {
            let ok = url::Url::parse(&uri)
                .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && uri.len() <= 2000);
            if !ok {
                return Err(invalid("client_uri must be an http(s) URL"));
            }
            Some(uri)
        }
        None => None,
    };
    Ok(NewClient {
        client_name,
        redirect_uris,
        grant_types,
        token_endpoint_auth_method: method,
        scope,
        client_uri,
        application_type,
        jwks,
    })
}

/// Most keys a registered JWKS may hold, and its largest size as JSON.
const MAX_CLIENT_KEYS: usize = 10;
const MAX_JWKS_BYTES: usize = 8 * 1024;

/// The public keys of a `private_key_jwt` client (`jwks`, RFC 7591 section 2): required with that
/// method and ignored with any other. Each key must be an RSA or P-256 public key; `jwks_uri`
/// is not fetched, so a `private_key_jwt` client that names one is told to register its keys
/// inline.
fn public_keys(
    body: &Map<String, Value>,
    method: TokenEndpointAuthMethod,
) -> Result<Option<String>, MetadataError> {
    let jwks = body.get("jwks").filter(|v| !v.is_null());
    match (method, jwks) {
        (TokenEndpointAuthMethod::PrivateKeyJwt, None) => Err(invalid(
            if body.get("jwks_uri").is_some_and(|v| !v.is_null()) {
                "jwks_uri is not supported; register the public keys inline as jwks"
            } else {
                "private_key_jwt requires jwks"
            },
        )),
        (TokenEndpointAuthMethod::PrivateKeyJwt, Some(jwks)) => {
            crate::oauth::client_assertion::check_public_keys(jwks, MAX_CLIENT_KEYS)
                .map_err(invalid)?;
            let text = jwks.to_string();
            if text.len() > MAX_JWKS_BYTES {
                return Err(invalid("jwks is too large"));
            }
            Ok(Some(text))
        }
        // Keys of a client that does not sign its authentication are not used: ignored, as
        // before this server knew the field.
        (_, _) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registered(body: Value) -> Result<NewClient, MetadataError> {
        validate(&body, &["cursor".to_string()], Source::Registration)
    }

    #[test]
    fn application_type_rules() {
        // (redirect URI, application_type, accepted, type in the answer)
        let cases: &[(&str, Option<&str>, bool, &str)] = &[
            ("http://127.0.0.1:3000/cb", None, true, "native"),
            ("http://localhost/cb", None, true, "native"),
            ("com.example.app:/cb", None, true, "native"),
            ("https://app.example.com/cb", None, true, "web"),
            ("https://localhost/cb", None, true, "native"),
            ("http://127.0.0.1:3000/cb", Some("native"), true, "native"),
            ("com.example.app:/cb", Some("native"), true, "native"),
            (
                "https://claude.ai/api/mcp/auth_callback",
                Some("native"),
                true,
                "native",
            ),
            ("https://vscode.dev/redirect", Some("web"), true, "web"),
            ("http://127.0.0.1:3000/cb", Some("web"), false, ""),
            ("https://localhost/cb", Some("web"), false, ""),
            ("https://127.0.0.1/cb", Some("web"), false, ""),
            ("com.example.app:/cb", Some("web"), false, ""),
            ("http://example.com/cb", Some("native"), false, ""),
        ];
        for (uri, app_type, ok, expected) in cases {
            let mut body = json!({"redirect_uris": [uri]});
            if let Some(t) = app_type {
                body["application_type"] = json!(t);
            }
            match registered(body) {
                Ok(client) => {
                    assert!(ok, "{uri} {app_type:?} accepted");
                    assert_eq!(client.application_type.as_str(), *expected, "{uri}");
                }
                Err(err) => {
                    assert!(!ok, "{uri} {app_type:?} refused: {err:?}");
                    assert_eq!(err.code, ErrorCode::InvalidRedirectUri);
                }
            }
        }
        let err = registered(
            json!({"redirect_uris": ["https://a.example/cb"], "application_type": "desktop"}),
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidClientMetadata);
    }

    #[test]
    fn cl3_document_rules() {
        let url = "https://app.example.com/client.json";
        let doc = |extra: Value| {
            let mut body = json!({"client_id": url, "client_name": "App",
                                  "redirect_uris": ["http://127.0.0.1/cb"]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            validate(&body, &[], Source::Document { url })
        };
        assert!(doc(json!({})).is_ok());
        assert!(doc(json!({"token_endpoint_auth_method": "none"})).is_ok());
        let refused: &[Value] = &[
            json!({"client_id": "https://app.example.com/other.json"}),
            json!({"client_id": "https://app.example.com/client.json/"}),
            json!({"client_id": null}),
            json!({"token_endpoint_auth_method": "client_secret_basic"}),
            json!({"token_endpoint_auth_method": "private_key_jwt"}),
            json!({"client_secret": "s3cret"}),
            json!({"client_secret_expires_at": 0}),
            json!({"redirect_uris": []}),
            json!({"redirect_uris": ["http://evil.example/cb"]}),
            json!({"grant_types": ["client_credentials"]}),
        ];
        for extra in refused {
            assert!(doc(extra.clone()).is_err(), "{extra}");
        }
    }

    /// Machine clients: `client_credentials` needs a confidential client and no redirect URIs;
    /// `private_key_jwt` needs inline public keys and nothing else does.
    #[test]
    fn client_credentials_and_private_key_jwt_rules() {
        let (_, jwk) = crate::oauth::client_assertion::tests::key_pair("k");
        let jwks = json!({"keys": [jwk]});
        let machine = registered(json!({"grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic"}))
        .unwrap();
        assert!(machine.grant_types.client_credentials() && machine.redirect_uris.is_empty());
        let signed = registered(json!({"grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": jwks}))
        .unwrap();
        assert_eq!(
            signed.token_endpoint_auth_method,
            TokenEndpointAuthMethod::PrivateKeyJwt
        );
        assert_eq!(signed.jwks.as_deref(), Some(jwks.to_string().as_str()));
        // Both grants: redirect URIs as for any code client.
        assert!(
            registered(
                json!({"grant_types": ["authorization_code", "client_credentials"],
            "token_endpoint_auth_method": "client_secret_post"})
            )
            .is_err()
        );
        let refused = [
            json!({"grant_types": ["client_credentials"]}),
            json!({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}),
            json!({"grant_types": ["client_credentials", "refresh_token"],
                "token_endpoint_auth_method": "client_secret_basic"}),
            json!({"grant_types": ["client_credentials"], "response_types": ["code"],
                "token_endpoint_auth_method": "client_secret_basic"}),
            json!({"grant_types": ["client_credentials"],
                "token_endpoint_auth_method": "private_key_jwt"}),
            json!({"grant_types": ["client_credentials"], "jwks_uri": "https://c.example/jwks",
                "token_endpoint_auth_method": "private_key_jwt"}),
            json!({"grant_types": ["client_credentials"], "jwks": {"keys": []},
                "token_endpoint_auth_method": "private_key_jwt"}),
        ];
        for body in refused {
            let err = registered(body.clone()).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidClientMetadata, "{body}");
        }
        // Keys beside another method are not used, and not refused either.
        let ignored = registered(json!({"grant_types": ["client_credentials"], "jwks": jwks,
            "jwks_uri": "https://c.example/jwks", "token_endpoint_auth_method": "client_secret_basic"}))
        .unwrap();
        assert_eq!(ignored.jwks, None);
    }
}
