//! The authorization server's HTML pages (login, consent, account, errors), the headers every page carries
//! (PG-2), and the session cookie (PG-1). Templates are askama's, which escapes all output; strings
//! a client chose (its name) are also length-capped before they reach a page.

use crate::actors::throttle::Limited;
use crate::trace::Secret;
use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub action: &'a str,
    pub client_name: &'a str,
    pub csrf_token: &'a str,
    pub request_id: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub show_demo_hint: bool,
    /// The username and password form is offered.
    pub password_sign_in: bool,
    /// "Sign in with …" buttons: each one's form action and the provider's name.
    pub providers: Vec<(String, &'a str)>,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub action: &'a str,
    pub client_name: &'a str,
    pub user_name: &'a str,
    pub scopes: Vec<(&'a str, &'static str)>,
    pub resource: &'a str,
    pub redirect_host: &'a str,
    /// The whole redirect URI, as [`cap`] shows client-chosen strings.
    pub redirect_uri: String,
    pub loopback_only: bool,
    /// The first letter of the client's name, for its badge.
    pub client_initial: String,
    /// The host of a URL client id (a client metadata document).
    pub document_host: Option<String>,
    pub csrf_token: &'a str,
    pub request_id: &'a str,
}

/// One application on the account page.
pub struct AccountClient {
    pub client_id: String,
    /// Display name, already capped.
    pub name: String,
    pub scope: String,
    pub resources: String,
    /// The redirect URIs the consent covers, already capped.
    pub redirect_uris: String,
    pub refresh_families: usize,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage<'a> {
    pub action: &'a str,
    pub user_name: &'a str,
    pub clients: Vec<AccountClient>,
    pub csrf_token: &'a str,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
    /// A link that takes the error back to the application, for the user to follow or not.
    pub back: Option<BackLink>,
}

/// Where an error page's "Return to the application" link goes, and the address shown.
pub struct BackLink {
    pub href: String,
    /// The redirect URI as the user is shown it ([`cap`]ped).
    pub shown: String,
}

/// Renders a page with the security headers every page carries.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => with_page_headers((status, Html(body)).into_response()),
        Err(err) => {
            tracing::error!(error = %err, "template failed");
            with_page_headers(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be rendered",
                )
                    .into_response(),
            )
        }
    }
}

/// An error page (never a redirect).
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        &ErrorPage {
            title,
            message,
            back: None,
        },
    )
}

/// An error page with a link that returns the error to the application: nothing is sent there
/// unless the user chooses to (RFC 9700 section 4.11.2).
pub fn error_page_with_return(
    status: StatusCode,
    title: &str,
    message: &str,
    back: BackLink,
) -> Response {
    render(
        status,
        &ErrorPage {
            title,
            message,
            back: Some(back),
        },
    )
}

/// The headers of every page and of every answer of `/authorize` (PG-2).
pub fn with_page_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            // No `form-action`: browsers apply it to the redirects that follow a form post, and
            // the consent form's redirect goes to the client.
            "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The 429 page of a source that is rate limited: `what` says what there was too much of, the page
/// says when to try again, and `Retry-After` says it to machines.
pub fn too_many_requests_page(limited: Limited, what: &str) -> Response {
    let minutes = limited.seconds().div_ceil(60);
    let message = format!(
        "{what} Try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    );
    let mut response = error_page(StatusCode::TOO_MANY_REQUESTS, "Too many attempts", &message);
    if let Ok(value) = HeaderValue::from_str(&limited.seconds().to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// Characters that are not seen but change what is: bidirectional embeddings, overrides, isolates
/// and marks (`U+202A`..`U+202E`, `U+2066`..`U+2069`, `U+200E`, `U+200F`, `U+061C`), zero-width
/// spaces and joiners, the byte-order mark, invisible operators, fillers, variation selectors and
/// tag characters. A client name or URI carrying them could read on a page as something else.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0000}'..='\u{E0FFF}')
}

/// Caps a client-chosen string for display, without control characters and without the
/// invisible ones that change how the text around them reads ([`is_invisible_format`]).
pub fn cap(value: &str, max_chars: usize) -> String {
    let mut out: String = value
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .take(max_chars)
        .collect();
    if value.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// The session cookie: its name depends on the issuer's scheme (PG-1), and its value is the
/// session id with an HMAC tag, so a forged cookie is refused before any actor is asked.
#[derive(Clone)]
pub struct SessionCookie {
    name: &'static str,
    secure: bool,
    key: Vec<u8>,
}

impl SessionCookie {
    pub fn new(https: bool, secret: &str) -> Self {
        SessionCookie {
            name: if https {
                "__Host-mcp_oauth_session"
            } else {
                "mcp_oauth_session"
            },
            secure: https,
            key: secret.as_bytes().to_vec(),
        }
    }

    fn tag(&self, sid: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(sid.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// The `Set-Cookie` value for a session id.
    pub fn set(&self, sid: &Secret, max_age_seconds: u64) -> HeaderValue {
        let value = format!(
            "{}={}.{}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.name,
            sid.expose(),
            self.tag(sid.expose()),
            max_age_seconds,
            if self.secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear(&self) -> HeaderValue {
        let value = format!(
            "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
            self.name,
            if self.secure { "; Secure" } else { "" }
        );
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// The session id from the request's cookies, if present and correctly tagged.
    pub fn read(&self, headers: &HeaderMap) -> Option<Secret> {
        for value in headers.get_all(header::COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';') {
                let Some((name, val)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name != self.name {
                    continue;
                }
                let (sid, tag) = val.rsplit_once('.')?;
                let expected = self.tag(sid);
                if !expected.is_empty()
                    && subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), tag.as_bytes()).into()
                {
                    return Some(Secret::new(sid));
                }
                return None;
            }
        }
        None
    }
}
