//! A full revocation list fails closed over HTTP: once `--max-revocations` access tokens are
//! revoked, `/revoke` answers 503 `temporarily_unavailable` with `Retry-After` instead of 200, and
//! nothing is recorded (the token stays active, the refresh-token family stays live).

use crate::helpers::*;

async fn assert_unavailable(response: reqwest::Response, context: &str) {
    assert!(response.headers().contains_key("retry-after"), "{context}");
    assert_oauth_error(response, 503, "temporarily_unavailable", context).await;
}

#[tokio::test]
async fn a_full_revocation_list_answers_503_and_acknowledges_nothing() {
    let (captured, _capturing) = capture_trace();
    let mut flags = INTROSPECT_FLAGS.to_vec();
    flags.extend(["--max-revocations", "1"]);
    let app = spawn_app_with(&flags).await;
    let client = register(&app).await;

    // The first revocation fills the list.
    let first = field(&tokens_for_client(&app, &client).await, "access_token");
    let revoked = revoke_token(&app, &client, &first, Some("access_token")).await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect_as_rs(&app, &first).await["active"], false);

    // The next one cannot be recorded: 503, and the token is still active.
    let tokens = tokens_for_client(&app, &client).await;
    let access = &field(&tokens, "access_token");
    assert_unavailable(
        revoke_token(&app, &client, access, Some("access_token")).await,
        "access token",
    )
    .await;
    assert_eq!(introspect_as_rs(&app, access).await["active"], true);
    // A server error's answer is an error line (which also fails an exported span).
    let log = captured.text();
    assert!(
        log.lines()
            .any(|l| l.contains(" ERROR auth: response out status=503 ")
                && l.contains("path=/revoke")),
        "{log}"
    );

    // A refresh token's family cannot end without revoking its access token: 503 too, and the
    // family is as it was, so the client can ask again later.
    let refresh_token = &field(&tokens, "refresh_token");
    assert_unavailable(
        revoke_token(&app, &client, refresh_token, None).await,
        "refresh token",
    )
    .await;
    assert_eq!(introspect_as_rs(&app, refresh_token).await["active"], true);
    assert_eq!(introspect_as_rs(&app, access).await["active"], true);
}
