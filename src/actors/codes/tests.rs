//! The tests of `AuthorizationCodes`: issue, redemption, replay, withdrawal and expiry.

use super::*;
use crate::actors::refresh_tokens::{CountFamilies, IssueRefreshToken, RefreshTokensArgs};
use crate::actors::revocations::{IsRevoked, RevocationsArgs};
use crate::store::MemoryStore;
use kameo::actor::Spawn;
use std::sync::Arc;

fn grant(challenge: &str) -> Grant {
    Grant {
        subject: "alice".into(),
        client_id: "c1".into(),
        redirect_uri: "http://127.0.0.1:9/cb".into(),
        redirect_uri_named: true,
        code_challenge: challenge.into(),
        scope: ScopeSet::parse("mcp.read").unwrap(),
        resource: "http://localhost:8990".into(),
        flow: FlowId::mint(),
    }
}

fn redeem(code: &Secret, client: &str, verifier: &str) -> RedeemCode {
    RedeemCode {
        code: code.clone(),
        client_id: client.into(),
        redirect_uri: Some("http://127.0.0.1:9/cb".into()),
        verifier: Secret::new(verifier),
        resource: None,
        jti: "jti-1".into(),
    }
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// The codes actor with the actors a replay revokes through; `max_revocations` bounds the
/// revocation list.
fn spawn_with(
    ttl: u64,
    max_revocations: usize,
) -> (
    ActorRef<AuthorizationCodes>,
    ActorRef<Revocations>,
    ActorRef<RefreshTokens>,
) {
    spawn_on(ttl, max_revocations, None)
}

/// The same, the codes kept in `shared_store` when one is given.
fn spawn_on(
    ttl: u64,
    max_revocations: usize,
    shared_store: Option<crate::store::SharedStore>,
) -> (
    ActorRef<AuthorizationCodes>,
    ActorRef<Revocations>,
    ActorRef<RefreshTokens>,
) {
    let revocations = Revocations::spawn(RevocationsArgs {
        max_entries: max_revocations,
        store: Arc::new(MemoryStore::new()),
    });
    let refresh_tokens = RefreshTokens::spawn(RefreshTokensArgs {
        shared: false,
        announce: None,
        idle_ttl: Duration::from_secs(1000),
        absolute_ttl: Duration::from_secs(1000),
        grace: Duration::from_secs(0),
        max_families: 10,
        cached: 10,
        store: Arc::new(MemoryStore::new()),
        revocations: revocations.clone(),
    });
    let codes = AuthorizationCodes::spawn(AuthorizationCodesArgs {
        ttl: Duration::from_secs(ttl),
        max_codes: 10,
        access_ttl: Duration::from_secs(3600),
        revocations: revocations.clone(),
        refresh_tokens: refresh_tokens.clone(),
        shared_store,
    });
    (codes, revocations, refresh_tokens)
}

fn spawn(ttl: u64) -> ActorRef<AuthorizationCodes> {
    spawn_with(ttl, 100).0
}

/// The refresh-token family a redemption with access token `jti` starts.
fn family_of(jti: &str) -> IssueRefreshToken {
    IssueRefreshToken {
        client_id: "c1".into(),
        subject: "alice".into(),
        scope: ScopeSet::parse("mcp.read").unwrap(),
        resource: "http://localhost:8990".into(),
        flow: FlowId::mint(),
        access_jti: jti.into(),
        access_ttl: Duration::from_secs(3600),
    }
}

#[tokio::test(start_paused = true)]
async fn single_use_and_replay_detection() {
    let (codes, revocations, refresh_tokens) = spawn_with(600, 100);
    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    let first = codes.ask(redeem(&code, "c1", VERIFIER)).await;
    assert!(first.is_ok());
    refresh_tokens.ask(family_of("jti-1")).await.unwrap();
    let replay = codes.ask(redeem(&code, "c1", VERIFIER)).await;
    assert!(matches!(
        replay,
        Err(kameo::error::SendError::HandlerError(RedeemError::Replayed { ref jti, .. })) if jti == "jti-1"
    ));
    // Before the answer: the token the code produced is revoked, its family ended.
    let revoked = IsRevoked {
        jti: "jti-1".into(),
    };
    assert!(revocations.ask(revoked).await.unwrap());
    assert_eq!(refresh_tokens.ask(CountFamilies).await.unwrap(), 0);
    // Another client replaying it learns nothing.
    let other = codes.ask(redeem(&code, "c2", VERIFIER)).await;
    assert!(matches!(
        other,
        Err(kameo::error::SendError::HandlerError(RedeemError::Unknown))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_replay_that_cannot_be_revoked_is_not_answered_as_revoked() {
    let (codes, _, refresh_tokens) = spawn_with(600, 0);
    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    assert!(codes.ask(redeem(&code, "c1", VERIFIER)).await.is_ok());
    refresh_tokens.ask(family_of("jti-1")).await.unwrap();
    assert!(matches!(
        codes.ask(redeem(&code, "c1", VERIFIER)).await,
        Err(kameo::error::SendError::HandlerError(
            RedeemError::ReplayNotRevoked
        ))
    ));
    // The family is untouched: the replay can be tried again once the list has room.
    assert_eq!(refresh_tokens.ask(CountFamilies).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn wrong_client_does_not_burn_but_wrong_verifier_does() {
    let codes = spawn(600);
    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    let stolen = codes.ask(redeem(&code, "c2", VERIFIER)).await;
    assert!(matches!(
        stolen,
        Err(kameo::error::SendError::HandlerError(
            RedeemError::WrongClient
        ))
    ));
    assert!(codes.ask(redeem(&code, "c1", VERIFIER)).await.is_ok());

    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    let wrong = codes
        .ask(redeem(&code, "c1", "x".repeat(43).as_str()))
        .await;
    assert!(matches!(
        wrong,
        Err(kameo::error::SendError::HandlerError(
            RedeemError::WrongVerifier
        ))
    ));
    assert!(codes.ask(redeem(&code, "c1", VERIFIER)).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn codes_expire_and_the_timer_removes_them() {
    let codes = spawn(600);
    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    let _other = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    assert_eq!(codes.ask(CountCodes).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_secs(599)).await;
    assert_eq!(codes.ask(CountCodes).await.unwrap(), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Let the timer's Sweep reach the actor.
    tokio::task::yield_now().await;
    assert_eq!(codes.ask(CountCodes).await.unwrap(), 0);
    assert!(matches!(
        codes.ask(redeem(&code, "c1", VERIFIER)).await,
        Err(kameo::error::SendError::HandlerError(RedeemError::Unknown))
    ));
}

#[tokio::test(start_paused = true)]
async fn concurrent_redemptions_exactly_one_wins() {
    let codes = spawn(600);
    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let codes = codes.clone();
        let code = code.clone();
        tasks.push(tokio::spawn(async move {
            codes.ask(redeem(&code, "c1", VERIFIER)).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
}

#[tokio::test(start_paused = true)]
async fn bounded() {
    let codes = spawn(600);
    for _ in 0..10 {
        codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    }
    assert!(matches!(
        codes.ask(IssueCode(grant(CHALLENGE))).await,
        Err(kameo::error::SendError::HandlerError(RedeemError::Full))
    ));
}

/// Issues a code and redeems it for the access token `jti`; the code.
async fn issue_and_redeem(codes: &ActorRef<AuthorizationCodes>, jti: &str) -> Secret {
    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    let redemption = RedeemCode {
        jti: jti.into(),
        ..redeem(&code, "c1", VERIFIER)
    };
    codes.ask(redemption).await.unwrap();
    code
}

#[tokio::test(start_paused = true)]
async fn redeemed_codes_leave_the_bound_and_the_oldest_are_forgotten_first() {
    let (codes, _, refresh_tokens) = spawn_with(600, 100);
    let mut redeemed = Vec::new();
    for n in 0..25 {
        redeemed.push(issue_and_redeem(&codes, &format!("jti-{n}")).await);
    }
    // Ten redeemed codes are remembered (the bound), and none counts as outstanding.
    assert_eq!(codes.ask(CountCodes).await.unwrap(), 10);
    for _ in 0..10 {
        codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    }
    assert!(matches!(
        codes.ask(IssueCode(grant(CHALLENGE))).await,
        Err(kameo::error::SendError::HandlerError(RedeemError::Full))
    ));
    // The latest redemption is still caught replayed; the first, forgotten, is only unknown.
    refresh_tokens.ask(family_of("jti-24")).await.unwrap();
    let latest = RedeemCode {
        jti: "jti-replay".into(),
        ..redeem(&redeemed[24], "c1", VERIFIER)
    };
    assert!(matches!(
        codes.ask(latest).await,
        Err(kameo::error::SendError::HandlerError(RedeemError::Replayed { ref jti, .. })) if jti == "jti-24"
    ));
    assert!(matches!(
        codes.ask(redeem(&redeemed[0], "c1", VERIFIER)).await,
        Err(kameo::error::SendError::HandlerError(RedeemError::Unknown))
    ));
}

#[tokio::test]
async fn on_a_shared_store_a_code_redeemed_here_leaves_the_bound() {
    let store: crate::store::SharedStore = Arc::new(MemoryStore::new());
    let (codes, _, _) = spawn_on(600, 100, Some(store));
    for n in 0..25 {
        issue_and_redeem(&codes, &format!("jti-{n}")).await;
    }
    // A consumed code leaves it too: a wrong verifier spends the code.
    let code = codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    let wrong = redeem(
        &code,
        "c1",
        "wrong-verifier-wrong-verifier-wrong-verifier-0",
    );
    assert!(codes.ask(wrong).await.is_err());
    // The redemptions' tasks tell the actor; a message behind theirs sees their effect.
    let outstanding = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if codes.ask(CountCodes).await.unwrap() == 10 {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
    assert!(
        outstanding.await.is_ok(),
        "redeemed codes still held beyond the bound"
    );
    for _ in 0..10 {
        codes.ask(IssueCode(grant(CHALLENGE))).await.unwrap();
    }
    assert!(matches!(
        codes.ask(IssueCode(grant(CHALLENGE))).await,
        Err(kameo::error::SendError::HandlerError(RedeemError::Full))
    ));
}
