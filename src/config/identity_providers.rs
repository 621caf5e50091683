//! The identity-providers file (`--identity-providers`): the upstream providers users may sign
//! in through, and whether the local username and password form stays. Read when the server is
//! built, like the users file; a bad file stops the start with one line naming the setting, the
//! file and the provider.
//!
//! ```toml
//! password_sign_in = true          # the local form beside the providers (default: true)
//!
//! [[provider]]
//! id = "google"                    # subjects become "google:<sub>"
//! name = "Google"                  # "Sign in with Google"
//! kind = "oidc"                    # discovery at {issuer}/.well-known/openid-configuration
//! issuer = "https://accounts.google.com"
//! client_id = "…"
//! client_secret_env = "GOOGLE_CLIENT_SECRET"   # or client_secret = "…"
//! allowed_email_domains = ["example.com"]
//!
//! [[provider]]
//! id = "github"
//! name = "GitHub"
//! kind = "oauth2"
//! authorization_url = "https://github.com/login/oauth/authorize"
//! token_url = "https://github.com/login/oauth/access_token"
//! userinfo_url = "https://api.github.com/user"
//! subject_field = "id"             # default "id"
//! name_field = "login"
//! client_id = "…"
//! client_secret_env = "GITHUB_CLIENT_SECRET"
//! token_endpoint_auth_method = "client_secret_post"   # default client_secret_basic
//! scopes = ["read:user"]
//! allowed_subjects = ["1234567"]
//! ```

use super::checks::ConfigError;
use crate::oauth::upstream::{
    AllowList, DEFAULT_OIDC_SCOPES, ProviderKind, UpstreamProvider, check_endpoint,
    check_provider_id,
};
use crate::trace::Secret;
use std::path::Path;

const SETTING: &str = "AUTH_SERVER_IDENTITY_PROVIDERS";

/// How users sign in: the upstream providers, and whether the local form stays.
#[derive(Debug, Clone)]
pub struct SignInMethods {
    /// Whether the username and password form is offered (and `POST /login` accepted).
    pub password_sign_in: bool,
    pub providers: Vec<UpstreamProvider>,
}

impl Default for SignInMethods {
    fn default() -> Self {
        SignInMethods {
            password_sign_in: true,
            providers: Vec::new(),
        }
    }
}

impl SignInMethods {
    pub fn find(&self, id: &str) -> Option<&UpstreamProvider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Whether a username falls in a provider's namespace (`<id>:…`): such a name never signs
    /// in with a password, whatever the users file holds.
    pub fn owns_subject(&self, subject: &str) -> bool {
        self.providers.iter().any(|p| p.owns_subject(subject))
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersFile {
    password_sign_in: Option<bool>,
    #[serde(default)]
    provider: Vec<ProviderEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderEntry {
    id: String,
    name: Option<String>,
    kind: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    token_endpoint_auth_method: Option<String>,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    allowed_email_domains: Vec<String>,
    #[serde(default)]
    allowed_subjects: Vec<String>,
    // OpenID Connect.
    issuer: Option<String>,
    // OAuth 2.0 with a user-info endpoint.
    authorization_url: Option<String>,
    token_url: Option<String>,
    userinfo_url: Option<String>,
    subject_field: Option<String>,
    email_field: Option<String>,
    name_field: Option<String>,
}

/// Reads and checks the identity-providers file; `env` looks up `client_secret_env` (the process
/// environment in the binaries).
pub fn read_identity_providers(
    path: &Path,
    env: impl Fn(&str) -> Option<String>,
) -> Result<SignInMethods, ConfigError> {
    let fail = |reason: String| ConfigError {
        setting: SETTING,
        reason: format!("{}: {reason}", path.display()),
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    parse(&text, env).map_err(fail)
}

fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<SignInMethods, String> {
    let file: ProvidersFile = basic_toml::from_str(text).map_err(|e| e.to_string())?;
    let mut providers: Vec<UpstreamProvider> = Vec::with_capacity(file.provider.len());
    for entry in file.provider {
        let id = entry.id.clone();
        let provider = provider(entry, &env).map_err(|e| format!("provider {id}: {e}"))?;
        if providers.iter().any(|p| p.id == provider.id) {
            return Err(format!("provider {id} appears twice"));
        }
        providers.push(provider);
    }
    let password_sign_in = file.password_sign_in.unwrap_or(true);
    if !password_sign_in && providers.is_empty() {
        return Err("password_sign_in = false needs at least one provider".into());
    }
    Ok(SignInMethods {
        password_sign_in,
        providers,
    })
}

fn provider(
    entry: ProviderEntry,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<UpstreamProvider, String> {
    check_provider_id(&entry.id).map_err(|e| e.to_string())?;
    if entry.client_id.is_empty() {
        return Err("client_id is empty".into());
    }
    let client_secret = match (entry.client_secret, entry.client_secret_env) {
        (Some(_), Some(_)) => {
            return Err("set client_secret or client_secret_env, not both".into());
        }
        (Some(secret), None) => Some(secret),
        (None, Some(var)) => Some(env(&var).filter(|s| !s.is_empty()).ok_or_else(|| {
            format!("client_secret_env names {var}, which is not set in the environment")
        })?),
        (None, None) => None,
    };
    let secret_in_body = match entry.token_endpoint_auth_method.as_deref() {
        None | Some("client_secret_basic") => false,
        Some("client_secret_post") => true,
        Some(other) => {
            return Err(format!(
                "token_endpoint_auth_method is client_secret_basic or client_secret_post, not {other:?}"
            ));
        }
    };
    let oidc = entry.kind == "oidc";
    let kind = match entry.kind.as_str() {
        "oidc" => {
            let issuer = entry.issuer.ok_or("an oidc provider needs issuer")?;
            if entry.authorization_url.is_some()
                || entry.token_url.is_some()
                || entry.userinfo_url.is_some()
            {
                return Err(
                    "an oidc provider's endpoints come from discovery: set issuer only".into(),
                );
            }
            ProviderKind::Oidc {
                issuer: upstream_url("issuer", &issuer)?,
            }
        }
        "oauth2" => {
            if entry.issuer.is_some() {
                return Err("an oauth2 provider has no issuer; use kind = \"oidc\"".into());
            }
            let need = |name: &str, value: Option<String>| {
                value
                    .ok_or_else(|| format!("an oauth2 provider needs {name}"))
                    .and_then(|v| upstream_url(name, &v))
            };
            ProviderKind::OAuth2 {
                authorization_url: need("authorization_url", entry.authorization_url)?,
                token_url: need("token_url", entry.token_url)?,
                userinfo_url: need("userinfo_url", entry.userinfo_url)?,
                subject_field: entry.subject_field.unwrap_or_else(|| "id".into()),
                email_field: entry.email_field,
                name_field: entry.name_field,
            }
        }
        other => return Err(format!("kind is \"oidc\" or \"oauth2\", not {other:?}")),
    };
    let mut scopes = entry.scopes.unwrap_or_else(|| match oidc {
        true => DEFAULT_OIDC_SCOPES.map(String::from).to_vec(),
        false => Vec::new(),
    });
    if oidc && !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    if let Some(bad) = scopes.iter().find(|s| s.is_empty() || s.contains(' ')) {
        return Err(format!("the scope {bad:?} is empty or has a space"));
    }
    let email_domains: Vec<String> = entry
        .allowed_email_domains
        .iter()
        .map(|d| d.trim().to_ascii_lowercase())
        .collect();
    if email_domains
        .iter()
        .any(|d| d.is_empty() || d.contains('@'))
    {
        return Err("allowed_email_domains holds domains, like \"example.com\"".into());
    }
    if !oidc
        && !email_domains.is_empty()
        && !matches!(
            &kind,
            ProviderKind::OAuth2 {
                email_field: Some(_),
                ..
            }
        )
    {
        return Err("allowed_email_domains needs email_field on an oauth2 provider".into());
    }
    Ok(UpstreamProvider {
        name: entry.name.unwrap_or_else(|| entry.id.clone()),
        id: entry.id,
        kind,
        client_id: entry.client_id,
        client_secret: client_secret.map(Secret::new),
        secret_in_body,
        scopes,
        allow: AllowList {
            email_domains,
            subjects: entry.allowed_subjects,
        },
    })
}

/// A configured upstream endpoint, checked by [`check_endpoint`].
fn upstream_url(name: &str, value: &str) -> Result<String, String> {
    check_endpoint(name, value)?;
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const GOOGLE: &str = r#"
[[provider]]
id = "google"
name = "Google"
kind = "oidc"
issuer = "https://accounts.google.com"
client_id = "abc"
client_secret_env = "GOOGLE_SECRET"
allowed_email_domains = ["Example.com"]
"#;

    const GITHUB: &str = r#"
password_sign_in = false
[[provider]]
id = "github"
kind = "oauth2"
authorization_url = "https://github.com/login/oauth/authorize"
token_url = "https://github.com/login/oauth/access_token"
userinfo_url = "https://api.github.com/user"
name_field = "login"
client_id = "abc"
client_secret = "s3cret"
token_endpoint_auth_method = "client_secret_post"
scopes = ["read:user"]
allowed_subjects = ["583231"]
"#;

    #[test]
    fn a_file_of_providers_is_read_with_its_defaults() {
        let env = |name: &str| (name == "GOOGLE_SECRET").then(|| "from-env".to_string());
        let google = parse(GOOGLE, env).expect("google");
        assert!(google.password_sign_in);
        let p = google.find("google").expect("the provider");
        assert_eq!(p.scopes, ["openid", "email", "profile"]);
        assert_eq!(
            p.client_secret.as_ref().map(Secret::expose),
            Some("from-env")
        );
        assert_eq!(p.allow.email_domains, ["example.com"]);
        assert!(google.owns_subject("google:1") && !google.owns_subject("alice"));

        let github = parse(GITHUB, no_env).expect("github");
        assert!(!github.password_sign_in);
        let p = github.find("github").expect("the provider");
        assert_eq!(p.name, "github");
        let ProviderKind::OAuth2 { subject_field, .. } = &p.kind else {
            panic!("{:?}", p.kind);
        };
        assert_eq!(subject_field, "id");
        assert_eq!(p.scopes, ["read:user"]);
        assert!(p.secret_in_body);
    }

    #[test]
    fn bad_files_are_refused_with_the_provider_named() {
        let oidc = |extra: &str| {
            format!(
                "[[provider]]\nid = \"op\"\nkind = \"oidc\"\nissuer = \"https://op.example\"\nclient_id = \"c\"\n{extra}"
            )
        };
        let cases = [
            (
                oidc("client_secret = \"a\"\nclient_secret_env = \"B\""),
                "not both",
            ),
            (oidc("client_secret_env = \"MISSING\""), "MISSING"),
            (oidc("scopes = [\"a b\"]"), "space"),
            (
                oidc("token_endpoint_auth_method = \"none\""),
                "client_secret_post",
            ),
            (oidc("allowed_email_domains = [\"a@b.c\"]"), "domains"),
            (oidc("token_url = \"https://op.example/t\""), "discovery"),
            (oidc("colour = \"blue\""), "unknown field"),
            (format!("{}{}", oidc(""), oidc("")), "twice"),
            (
                oidc("").replace("https://op.example", "http://op.example"),
                "https",
            ),
            (oidc("").replace("\"op\"", "\"Op\""), "provider Op"),
            (oidc("").replace("\"op\"", "\"client\""), "machine clients"),
            (oidc("").replace("oidc", "saml"), "kind"),
            (
                oidc("").replace("issuer = \"https://op.example\"\n", ""),
                "needs issuer",
            ),
            (
                oidc("").replace("kind = \"oidc\"", "kind = \"oauth2\""),
                "no issuer",
            ),
            (
                "password_sign_in = false".to_string(),
                "at least one provider",
            ),
            (
                GITHUB.replace(
                    "name_field = \"login\"",
                    "allowed_email_domains = [\"x.org\"]",
                ),
                "email_field",
            ),
            (
                GITHUB.replace(
                    "token_url = \"https://github.com/login/oauth/access_token\"\n",
                    "",
                ),
                "needs token_url",
            ),
        ];
        for (text, reason) in cases {
            let Err(err) = parse(&text, no_env) else {
                panic!("accepted: {text}");
            };
            assert!(err.contains(reason), "{err} (wanted {reason}) for {text}");
        }
        // Loopback http is fine: a provider on this machine.
        let local = oidc("").replace("https://op.example", "http://127.0.0.1:9999");
        assert!(parse(&local, no_env).is_ok());
    }

    #[test]
    fn a_missing_file_names_the_setting_and_the_path() {
        let err = read_identity_providers(Path::new("/nowhere/idps.toml"), no_env)
            .expect_err("no such file");
        let line = err.to_string();
        assert!(
            line.starts_with("AUTH_SERVER_IDENTITY_PROVIDERS: /nowhere/idps.toml: "),
            "{line}"
        );
    }
}
