//! Upstream identity providers: the records of the providers users may sign in through (an
//! OpenID Connect provider found by discovery, or a plain OAuth 2.0 provider with a user-info
//! endpoint, GitHub style), the identity one of them vouches for, the allow-lists that decide who
//! of those may sign in here, and the one rule that turns an upstream subject into ours.
//!
//! An upstream subject is namespaced by the provider's id (`<id>:<sub>`), so that two providers'
//! users never share a subject, and no local password user can claim one: a username that starts
//! with a provider's prefix never signs in with a password. The upstream's tokens end here: the
//! authorization server issues its own, for its own subject (no token passthrough).

use crate::trace::Secret;

/// Longest provider id.
const MAX_ID_LEN: usize = 32;

/// The scopes asked of an OpenID Connect provider when the configuration names none.
pub const DEFAULT_OIDC_SCOPES: [&str; 3] = ["openid", "email", "profile"];

/// One provider users may sign in through.
#[derive(Debug, Clone)]
pub struct UpstreamProvider {
    /// Lowercase letters, digits, `-` and `_`: the subject prefix and the path of its routes.
    pub id: String,
    /// Shown as "Sign in with {name}".
    pub name: String,
    pub kind: ProviderKind,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret at the provider (`None`: a public client, PKCE only).
    pub client_secret: Option<Secret>,
    /// The secret goes in the token request's body (`client_secret_post`) rather than in HTTP
    /// Basic authentication (`client_secret_basic`, the default).
    pub secret_in_body: bool,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    pub allow: AllowList,
}

/// How a provider is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    /// OpenID Connect: endpoints and keys from `{issuer}/.well-known/openid-configuration`, the
    /// user from the ID token.
    Oidc { issuer: String },
    /// OAuth 2.0 with a user-info endpoint: the user from a JSON object at `userinfo_url`.
    OAuth2 {
        authorization_url: String,
        token_url: String,
        userinfo_url: String,
        /// The member of the user-info object that is the stable subject (GitHub: `id`).
        subject_field: String,
        /// The member holding the user's email, if any.
        email_field: Option<String>,
        /// The member holding the name shown on our pages, if any (GitHub: `login`).
        name_field: Option<String>,
    },
}

/// Who of a provider's users may sign in here. Empty lists admit everyone the provider vouches
/// for; otherwise a user needs a listed subject, or a verified email in a listed domain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    /// Domains, lowercase, compared with the whole part after the email's last `@`.
    pub email_domains: Vec<String>,
    /// Upstream subjects, exactly as the provider spells them.
    pub subjects: Vec<String>,
}

/// What a provider said about the user who signed in there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamIdentity {
    /// The provider's subject, not yet namespaced.
    pub subject: String,
    pub email: Option<String>,
    /// Whether the provider vouches for the email (`email_verified`); OAuth 2.0 providers'
    /// user-info emails are taken as verified (GitHub shows only verified addresses).
    pub email_verified: bool,
    pub name: Option<String>,
}

impl UpstreamProvider {
    /// Our subject for a user of this provider: `<id>:<sub>`.
    pub fn subject_of(&self, identity: &UpstreamIdentity) -> String {
        format!("{}:{}", self.id, identity.subject)
    }

    /// Whether a local username would fall in this provider's namespace.
    pub fn owns_subject(&self, subject: &str) -> bool {
        subject
            .strip_prefix(self.id.as_str())
            .is_some_and(|rest| rest.starts_with(':'))
    }
}

impl UpstreamIdentity {
    /// The name our pages show: the provider's name for the user, else the email, else the
    /// subject.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.email.clone())
            .unwrap_or_else(|| self.subject.clone())
    }
}

impl AllowList {
    pub fn is_empty(&self) -> bool {
        self.email_domains.is_empty() && self.subjects.is_empty()
    }

    /// Whether this user may sign in here.
    pub fn admits(&self, identity: &UpstreamIdentity) -> bool {
        if self.is_empty() || self.subjects.contains(&identity.subject) {
            return true;
        }
        let Some(email) = identity
            .email
            .as_deref()
            .filter(|_| identity.email_verified)
        else {
            return false;
        };
        let Some((local, domain)) = email.rsplit_once('@') else {
            return false;
        };
        !local.is_empty()
            && self
                .email_domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// An upstream endpoint: https, or http to a loopback host only (a code, a client secret or a
/// token sent in the clear elsewhere could be read on the way); no fragment or user information.
/// Applies to configured URLs and to the ones an OpenID provider's discovery names.
pub fn check_endpoint(name: &str, value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{name} is not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "{name} must be https (or http to localhost): {value}"
            ));
        }
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{name} must not have a fragment or user information"
        ));
    }
    Ok(())
}

/// Why a provider id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderIdError {
    #[error("a provider id is 1 to {MAX_ID_LEN} of a-z, 0-9, '-' and '_', starting with a letter")]
    Malformed,
    #[error("the provider id {0} is the prefix of machine clients' subjects")]
    Reserved(String),
}

/// Checks a provider id: it names routes and prefixes subjects.
pub fn check_provider_id(id: &str) -> Result<(), ProviderIdError> {
    let well_formed = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !well_formed {
        return Err(ProviderIdError::Malformed);
    }
    if crate::oauth::client::MACHINE_SUBJECT_PREFIX.strip_suffix(':') == Some(id) {
        return Err(ProviderIdError::Reserved(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(subject: &str, email: Option<&str>, verified: bool) -> UpstreamIdentity {
        UpstreamIdentity {
            subject: subject.into(),
            email: email.map(str::to_string),
            email_verified: verified,
            name: None,
        }
    }

    #[test]
    fn allow_lists_admit_listed_subjects_and_verified_emails_of_listed_domains() {
        let open = AllowList::default();
        let domains = AllowList {
            email_domains: vec!["example.com".into()],
            subjects: vec![],
        };
        let subjects = AllowList {
            email_domains: vec![],
            subjects: vec!["248289761001".into()],
        };
        let cases = [
            (&open, identity("x", None, false), true),
            (&domains, identity("x", Some("a@example.com"), true), true),
            (&domains, identity("x", Some("a@EXAMPLE.com"), true), true),
            // An unverified email proves nothing.
            (&domains, identity("x", Some("a@example.com"), false), false),
            (
                &domains,
                identity("x", Some("a@evil.example.com"), true),
                false,
            ),
            (
                &domains,
                identity("x", Some("a@example.com.evil"), true),
                false,
            ),
            // The domain is after the last `@`.
            (
                &domains,
                identity("x", Some("a@example.com@evil"), true),
                false,
            ),
            (&domains, identity("x", Some("@example.com"), true), false),
            (&domains, identity("x", Some("example.com"), true), false),
            (&domains, identity("x", None, false), false),
            (&subjects, identity("248289761001", None, false), true),
            (&subjects, identity("2482897610011", None, false), false),
            (&subjects, identity("x", Some("a@example.com"), true), false),
        ];
        for (list, who, admitted) in cases {
            assert_eq!(list.admits(&who), admitted, "{list:?} {who:?}");
        }
    }

    #[test]
    fn endpoints_are_https_or_loopback_http() {
        for good in [
            "https://op.example/authorize",
            "http://localhost:8080/x",
            "http://127.0.0.1/x",
            "http://[::1]:9/x",
        ] {
            assert_eq!(check_endpoint("e", good), Ok(()), "{good}");
        }
        for bad in [
            "http://op.example/x",
            "http://10.0.0.1/x",
            "ftp://op.example/x",
            "https://u:p@op.example/x",
            "https://op.example/x#f",
            "not a url",
        ] {
            assert!(check_endpoint("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn provider_ids_are_route_and_prefix_safe() {
        for good in ["github", "google", "op", "entra-id", "kc_2"] {
            assert_eq!(check_provider_id(good), Ok(()), "{good}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in [
            "",
            "GitHub",
            "1op",
            "-op",
            "op/x",
            "op:x",
            "op x",
            "é",
            long.as_str(),
        ] {
            assert_eq!(
                check_provider_id(bad),
                Err(ProviderIdError::Malformed),
                "{bad}"
            );
        }
        assert!(matches!(
            check_provider_id("client"),
            Err(ProviderIdError::Reserved(_))
        ));
    }

    #[test]
    fn subjects_are_namespaced_by_provider() {
        let provider = UpstreamProvider {
            id: "op".into(),
            name: "OP".into(),
            kind: ProviderKind::Oidc {
                issuer: "https://op.example".into(),
            },
            client_id: "c".into(),
            client_secret: None,
            secret_in_body: false,
            scopes: vec![],
            allow: AllowList::default(),
        };
        assert_eq!(
            provider.subject_of(&identity("carol", None, false)),
            "op:carol"
        );
        assert!(provider.owns_subject("op:carol"));
        assert!(provider.owns_subject("op:"));
        assert!(!provider.owns_subject("op"));
        assert!(!provider.owns_subject("opx:carol"));
        assert!(!provider.owns_subject("alice"));
    }
}
