//! The user's side: a browser that keeps cookies and follows no redirect (so that every hop can
//! be checked), the authorization URL, the login and consent forms, and the checks on what the
//! authorization endpoint answers (an error page, or an error redirect to the client).

use super::app::TestApp;
use super::oauth::{Pkce, REDIRECT};

/// A browser: keeps cookies, follows no redirects (so every hop can be checked).
pub struct Browser {
    pub http: reqwest::Client,
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// A browser signed in as alice that has approved `client_id` (one complete flow).
    pub async fn signed_in(app: &TestApp, client_id: &str) -> Self {
        let browser = Browser::new();
        authorize_as(
            app,
            &browser,
            client_id,
            &Pkce::new(),
            "alice",
            "password123",
        )
        .await;
        browser
    }

    pub async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    /// The text of the page at `url`.
    pub async fn text(&self, url: &str) -> String {
        self.get(url).await.text().await.unwrap()
    }

    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(url).form(form).send().await.unwrap()
    }

    /// Where a GET of `url` redirects the browser.
    pub async fn redirect_from(&self, url: &str) -> String {
        location(&self.get(url).await).unwrap()
    }

    /// Starts an authorization of `client_id` (a fresh PKCE pair); returns where the browser is
    /// sent (the login page, unless signed in).
    pub async fn start_authorization(&self, app: &TestApp, client_id: &str) -> String {
        let url = authorize_url(app, client_id, &Pkce::new(), &[]);
        self.redirect_from(&url).await
    }

    /// The sign-in form on the login page at `login_url`.
    pub async fn login_form(&self, login_url: &str) -> LoginForm {
        let html = self.text(login_url).await;
        LoginForm {
            csrf: hidden_field(&html, "csrf_token"),
            request: hidden_field(&html, "request"),
        }
    }

    /// Runs the authorization request `url`: the login page, sign-in as `user`, the consent page
    /// (skipped when this user approved this client before) approved. Returns the final redirect
    /// to the client (with `code`, `state`, `iss`).
    pub async fn authorize(&self, url: &str, user: &str, password: &str) -> String {
        let start = self.get(url).await;
        assert_eq!(start.status(), 302);
        let login_url = location(&start).unwrap();
        assert!(login_url.contains("/login?request="), "{login_url}");
        let after_login = login(self, &login_url, user, password).await;
        assert_eq!(after_login.status(), 302, "login should redirect");
        let consent_url = location(&after_login).unwrap();
        if consent_url.starts_with(REDIRECT) {
            // The user approved this client before: the consent page is skipped.
            return consent_url;
        }
        assert!(consent_url.contains("/consent?request="), "{consent_url}");
        let approved = decide(self, &consent_url, "approve").await;
        assert_eq!(approved.status(), 302);
        location(&approved).unwrap()
    }
}

/// The hidden fields of a login page's form.
pub struct LoginForm {
    pub csrf: String,
    pub request: String,
}

impl LoginForm {
    /// The form's fields filled in for `user`.
    pub fn filled<'a>(&'a self, user: &'a str, password: &'a str) -> [(&'a str, &'a str); 4] {
        [
            ("csrf_token", &self.csrf),
            ("request", &self.request),
            ("username", user),
            ("password", password),
        ]
    }

    /// Posts the form to the issuer's `/login` as `user`, as a page from `origin` would.
    pub async fn post_from(
        &self,
        origin: &str,
        browser: &Browser,
        app: &TestApp,
        user: &str,
        password: &str,
    ) -> reqwest::Response {
        let request = browser
            .http
            .post(app.url("/login"))
            .header("origin", origin);
        request
            .form(&self.filled(user, password))
            .send()
            .await
            .unwrap()
    }

    /// Posts the form to the issuer's `/login` as `user`.
    pub async fn post(
        &self,
        browser: &Browser,
        app: &TestApp,
        user: &str,
        password: &str,
    ) -> reqwest::Response {
        post_login(
            browser,
            &app.issuer,
            &self.csrf,
            &self.request,
            user,
            password,
        )
        .await
    }
}

/// The `Location` of a redirect, resolved against the URL that answered it.
pub fn location(response: &reqwest::Response) -> Option<String> {
    mcp_oauth_testkit::location(response).ok()
}

/// The value of a hidden form field in a page.
pub fn hidden_field(html: &str, name: &str) -> String {
    mcp_oauth_testkit::hidden_field(html, name).unwrap_or_else(|e| panic!("{e} in page"))
}

/// The `action` of the (one) form in a page.
pub fn form_action(html: &str) -> String {
    mcp_oauth_testkit::form_action(html).unwrap_or_else(|e| panic!("{e} in page"))
}

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    mcp_oauth_testkit::query_param(url, name).ok()
}

/// `url` with its query parameters `set`: a parameter's value replaced where it stands, a new
/// one added at the end.
pub fn with_params(url: &str, set: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    for (name, value) in set {
        match pairs.iter_mut().find(|(n, _)| n == name) {
            Some(pair) => pair.1 = value.to_string(),
            None => pairs.push((name.to_string(), value.to_string())),
        }
    }
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

/// The authorization URL for a client with the usual MCP parameters (`state=xyz-state`, both
/// scopes, the MCP endpoint as resource), each of `set` replacing or adding one.
pub fn authorize_url(app: &TestApp, client_id: &str, pkce: &Pkce, set: &[(&str, &str)]) -> String {
    let url = url::Url::parse_with_params(
        &app.url("/authorize"),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
            ("state", "xyz-state"),
            ("scope", "mcp.read mcp.write"),
            ("resource", &app.mcp_url()),
        ],
    )
    .unwrap();
    with_params(url.as_str(), set)
}

/// Opens the page at `url` (which must answer 200) and submits its form: its CSRF token and
/// request id, then `fields`. Returns the response to the post.
async fn submit(
    browser: &Browser,
    url: &str,
    page: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let response = browser.get(url).await;
    assert_eq!(response.status(), 200, "{page}");
    let html = response.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf_token");
    let request = hidden_field(&html, "request");
    let mut form = vec![("csrf_token", csrf.as_str()), ("request", request.as_str())];
    form.extend_from_slice(fields);
    browser.post_form(&form_action(&html), &form).await
}

/// Signs in on the login page the browser was sent to; returns the response to the login post.
pub async fn login(
    browser: &Browser,
    login_url: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    let fields = [("username", user), ("password", password)];
    submit(browser, login_url, "login page", &fields).await
}

/// Posts the login form with the given CSRF token and request id.
pub async fn post_login(
    browser: &Browser,
    issuer: &str,
    csrf: &str,
    request: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    browser
        .post_form(
            &format!("{issuer}/login"),
            &[
                ("csrf_token", csrf),
                ("request", request),
                ("username", user),
                ("password", password),
            ],
        )
        .await
}

/// Approves or denies on the consent page; returns the response to the consent post.
pub async fn decide(browser: &Browser, consent_url: &str, decision: &str) -> reqwest::Response {
    submit(
        browser,
        consent_url,
        "consent page",
        &[("decision", decision)],
    )
    .await
}

/// Signs in on the login page `login_url` leads to and decides on the consent page that
/// follows; returns the response to the consent post.
pub async fn login_and_decide(
    browser: &Browser,
    login_url: &str,
    user: &str,
    password: &str,
    decision: &str,
) -> reqwest::Response {
    let after_login = login(browser, login_url, user, password).await;
    decide(browser, &location(&after_login).unwrap(), decision).await
}

/// Runs /authorize -> login -> consent (approve); returns the final redirect to the client (with
/// `code`, `state`, `iss`).
pub async fn authorize_as(
    app: &TestApp,
    browser: &Browser,
    client_id: &str,
    pkce: &Pkce,
    user: &str,
    password: &str,
) -> String {
    let url = authorize_url(app, client_id, pkce, &[]);
    browser.authorize(&url, user, password).await
}

/// The headers every page carries: no framing, no referrer, no caching, no sniffing, no CORS.
pub fn assert_page_headers(response: &reqwest::Response) {
    let h = response.headers();
    assert!(
        h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(
        h.get("access-control-allow-origin").is_none(),
        "no CORS on pages"
    );
}

/// An authorization error that must not go to the client (AZ-1): a 400 HTML page, never a
/// `Location`. Returns the page.
pub async fn assert_error_page(response: reqwest::Response, context: &str) -> String {
    assert_eq!(response.status(), 400, "{context}");
    assert!(
        response.headers().get("location").is_none(),
        "{context}: must not redirect"
    );
    assert_page_headers(&response);
    let body = response.text().await.unwrap();
    assert!(body.contains("<html"), "{context}: an HTML page");
    body
}

/// An authorization error sent back to the client (AZ-4, RFC 9207): a 302 to [`REDIRECT`] with
/// `error`, the request's `state` (`xyz-state`), the issuer as `iss`, and no code. Returns the
/// redirect.
pub fn assert_error_redirect(
    app: &TestApp,
    response: &reqwest::Response,
    error: &str,
    context: &str,
) -> String {
    assert_eq!(response.status(), 302, "{context}");
    let to = location(response).unwrap();
    assert!(to.starts_with(REDIRECT), "{context}: {to}");
    assert_eq!(
        query_param(&to, "error").as_deref(),
        Some(error),
        "{context}"
    );
    assert_eq!(
        query_param(&to, "state").as_deref(),
        Some("xyz-state"),
        "{context}"
    );
    assert_eq!(
        query_param(&to, "iss").as_deref(),
        Some(app.issuer.as_str()),
        "{context}"
    );
    assert!(query_param(&to, "code").is_none(), "{context}");
    to
}
