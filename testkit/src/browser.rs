//! What a browser does in an authorization flow: keep cookies, stop at every redirect (so that
//! each hop can be checked), read the hidden fields and the action of the sign-in and consent
//! forms, and post them.

use crate::{Error, Result, expect};

/// A browser: keeps cookies, follows no redirects.
pub fn browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

/// The `Location` of a redirect, resolved against the URL that answered it.
pub fn location(response: &reqwest::Response) -> Result<String> {
    let value = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Missing("the redirect's location".into()))?;
    Ok(response.url().join(value)?.to_string())
}

/// The value of the hidden form field `name` in a page.
pub fn hidden_field(html: &str, name: &str) -> Result<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let missing = || Error::Missing(format!("the form field {name}"));
    let start = html.find(&marker).ok_or_else(missing)? + marker.len();
    let end = html[start..].find('"').ok_or_else(missing)? + start;
    Ok(html[start..end].to_string())
}

/// The `action` of the (one) form in a page.
pub fn form_action(html: &str) -> Result<String> {
    let marker = "action=\"";
    let missing = || Error::Missing("the form's action".into());
    let start = html.find(marker).ok_or_else(missing)? + marker.len();
    let end = html[start..].find('"').ok_or_else(missing)? + start;
    Ok(html[start..end]
        .replace("&#x2f;", "/")
        .replace("&#47;", "/"))
}

/// Opens the page at `url` (it must answer 2xx), and posts its form with its CSRF token and
/// request id plus `fields`; the answer to the post, whatever its status.
async fn post_form(
    browser: &reqwest::Client,
    url: &str,
    step: &'static str,
    fields: &[(&str, &str)],
) -> Result<reqwest::Response> {
    let page = browser.get(url).send().await?;
    let html = expect(page, step, |s| s.is_success())?.text().await?;
    let (csrf, request) = (
        hidden_field(&html, "csrf_token")?,
        hidden_field(&html, "request")?,
    );
    let mut form = vec![("csrf_token", csrf.as_str()), ("request", request.as_str())];
    form.extend_from_slice(fields);
    Ok(browser.post(form_action(&html)?).form(&form).send().await?)
}

/// Signs in on the sign-in page at `login_url`; the answer to the sign-in post (a redirect when
/// the password was right).
pub async fn sign_in(
    browser: &reqwest::Client,
    login_url: &str,
    user: &str,
    password: &str,
) -> Result<reqwest::Response> {
    post_form(
        browser,
        login_url,
        "sign-in page",
        &[("username", user), ("password", password)],
    )
    .await
}

/// Answers the consent page at `consent_url` with `decision` (`approve` or `deny`); the answer to
/// the consent post.
pub async fn decide(
    browser: &reqwest::Client,
    consent_url: &str,
    decision: &str,
) -> Result<reqwest::Response> {
    post_form(
        browser,
        consent_url,
        "consent page",
        &[("decision", decision)],
    )
    .await
}

/// Follows an authorization request in `browser`: signs in as `user` if asked, approves if asked;
/// the redirect back to the client (with `code`, `state`, `iss`, or an `error`).
pub async fn authorize(
    browser: &reqwest::Client,
    authorize_url: &str,
    user: &str,
    password: &str,
) -> Result<String> {
    let start = browser.get(authorize_url).send().await?;
    let mut next = location(&expect(start, "authorization", |s| s.is_redirection())?)?;
    if next.contains("/login?") {
        let signed_in = sign_in(browser, &next, user, password).await?;
        next = location(&expect(signed_in, "sign-in", |s| s.is_redirection())?)?;
    }
    if next.contains("/consent?") {
        let approved = decide(browser, &next, "approve").await?;
        next = location(&expect(approved, "consent", |s| s.is_redirection())?)?;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<form method="post" action="http:&#x2f;&#x2f;127.0.0.1:1&#x2f;login">
<input type="hidden" name="csrf_token" value="c5rf">
<input type="hidden" name="request" value="r-1">"#;

    #[test]
    fn a_form_is_read_from_its_page() {
        assert_eq!(hidden_field(PAGE, "csrf_token").unwrap(), "c5rf");
        assert_eq!(hidden_field(PAGE, "request").unwrap(), "r-1");
        assert_eq!(form_action(PAGE).unwrap(), "http://127.0.0.1:1/login");
        assert!(matches!(
            hidden_field(PAGE, "username"),
            Err(Error::Missing(_))
        ));
        assert!(form_action("<p>no form</p>").is_err());
    }
}
