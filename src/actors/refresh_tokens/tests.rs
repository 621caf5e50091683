//! Unit tests of the `RefreshTokens` actor: rotation, the grace window, reuse detection, expiry,
//! a store that loses or fails, and the revocation of an ended family's access tokens.

use super::*;
use crate::actors::revocations::{IsRevoked, RevocationsArgs};
use crate::store::MemoryStore;
use futures::future::BoxFuture;
use kameo::actor::Spawn;
use kameo::error::SendError;

fn revocations(max_entries: usize) -> ActorRef<Revocations> {
    Revocations::spawn(RevocationsArgs {
        max_entries,
        store: Arc::new(MemoryStore::new()),
    })
}

fn spawn_with(grace: u64, revocations: ActorRef<Revocations>) -> ActorRef<RefreshTokens> {
    RefreshTokens::spawn(RefreshTokensArgs {
        shared: false,
        announce: None,
        idle_ttl: Duration::from_secs(100),
        absolute_ttl: Duration::from_secs(1000),
        grace: Duration::from_secs(grace),
        max_families: 10,
        cached: 10,
        store: Arc::new(MemoryStore::new()),
        revocations,
    })
}

fn spawn(grace: u64) -> ActorRef<RefreshTokens> {
    spawn_with(grace, revocations(100))
}

async fn is_revoked(revocations: &ActorRef<Revocations>, jti: &str) -> bool {
    revocations
        .ask(IsRevoked { jti: jti.into() })
        .await
        .unwrap()
}

fn issue() -> IssueRefreshToken {
    IssueRefreshToken {
        client_id: "c1".into(),
        subject: "alice".into(),
        scope: ScopeSet::parse("mcp.read mcp.write").unwrap(),
        resource: "r".into(),
        flow: FlowId::mint(),
        access_jti: "a0".into(),
        access_ttl: Duration::from_secs(60),
    }
}

fn refresh(token: &Secret) -> RotateRefreshToken {
    RotateRefreshToken {
        token: token.clone(),
        client_id: "c1".into(),
        resource: None,
        scope: None,
        access_jti: "a1".into(),
        access_ttl: Duration::from_secs(60),
        judged: None,
    }
}

#[tokio::test(start_paused = true)]
async fn rotation_grace_and_reuse() {
    let tokens = spawn(5);
    let t0 = tokens.ask(issue()).await.unwrap();
    let first = tokens.ask(refresh(&t0)).await.unwrap();
    assert!(!first.grace);
    assert_ne!(first.refresh_token, t0);
    // Within the grace window: the same successor again.
    let again = tokens.ask(refresh(&t0)).await.unwrap();
    assert!(again.grace);
    assert_eq!(again.refresh_token, first.refresh_token);
    let t2 = tokens.ask(refresh(&first.refresh_token)).await.unwrap();
    // t0 is now two rotations old: reuse, the family ends, t2 included.
    let reused = tokens.ask(refresh(&t0)).await;
    match reused {
        Err(SendError::HandlerError(RefreshError::Reused(ended))) => {
            assert_eq!(ended.families, 1);
            // Issued with the code, two rotations and the grace retry.
            assert_eq!(ended.access_tokens.len(), 4, "{ended:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(tokens.ask(refresh(&t2.refresh_token)).await.is_err());
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn reuse_after_the_grace_window_ends_the_family() {
    let tokens = spawn(5);
    let t0 = tokens.ask(issue()).await.unwrap();
    let t1 = tokens.ask(refresh(&t0)).await.unwrap().refresh_token;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(matches!(
        tokens.ask(refresh(&t0)).await,
        Err(SendError::HandlerError(RefreshError::Reused(_)))
    ));
    assert!(matches!(
        tokens.ask(refresh(&t1)).await,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
}

#[tokio::test(start_paused = true)]
async fn refused_requests_consume_nothing_and_families_expire() {
    let tokens = spawn(0);
    let t0 = tokens.ask(issue()).await.unwrap();
    let mut other = refresh(&t0);
    other.client_id = "c2".into();
    assert!(matches!(
        tokens.ask(other).await,
        Err(SendError::HandlerError(RefreshError::WrongClient))
    ));
    let mut wider = refresh(&t0);
    wider.scope = Some(ScopeSet::parse("mcp.read admin").unwrap());
    assert!(matches!(
        tokens.ask(wider).await,
        Err(SendError::HandlerError(RefreshError::WiderScope))
    ));
    let mut narrower = refresh(&t0);
    narrower.scope = Some(ScopeSet::parse("mcp.read").unwrap());
    let t1 = tokens.ask(narrower).await.unwrap();
    assert_eq!(t1.scope.to_string(), "mcp.read");
    // The family keeps its scope: the next refresh may ask for all of it again.
    let t2 = tokens.ask(refresh(&t1.refresh_token)).await.unwrap();
    assert_eq!(t2.scope.to_string(), "mcp.read mcp.write");
    // Idle expiry (ended at the next minute's sweep; refused at once).
    tokio::time::sleep(Duration::from_secs(101)).await;
    assert!(matches!(
        tokens.ask(refresh(&t2.refresh_token)).await,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    tokio::time::sleep(Duration::from_secs(20)).await;
    tokio::task::yield_now().await;
    assert!(matches!(
        tokens.ask(refresh(&t2.refresh_token)).await,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_family_in_use_still_ends_at_its_absolute_deadline() {
    let tokens = spawn(0);
    let mut token = tokens.ask(issue()).await.unwrap();
    // Used every 90 s (idle TTL 100 s): alive, and re-queued by each sweep, until 1000 s.
    for _ in 0..11 {
        tokio::time::sleep(Duration::from_secs(90)).await;
        token = tokens.ask(refresh(&token)).await.unwrap().refresh_token;
    }
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_secs(40)).await;
    tokio::task::yield_now().await;
    assert!(matches!(
        tokens.ask(refresh(&token)).await,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 0);
}

/// A store that holds one family and loses every compare-and-swap, as a shared store would
/// when another server rotated first, and cannot remove anything.
struct LosingStore(FamilyRecord);

impl RefreshTokenStore for LosingStore {
    fn write_batch<'a>(
        &'a self,
        _: &'a [FamilyRecord],
        rotations: &'a [Rotation],
    ) -> BoxFuture<'a, Result<Vec<bool>, StoreError>> {
        Box::pin(async { Ok(vec![false; rotations.len()]) })
    }
    fn remove_families(&self, _: &[String]) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Err(StoreError("unavailable".into())) })
    }
    fn load_live(&self, _: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>> {
        let record = self.0.clone();
        Box::pin(async move { Ok(vec![record]) })
    }
    fn count_families(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(1) })
    }
    fn family_by_token(
        &self,
        hash: &TokenHash,
    ) -> BoxFuture<'_, Result<Option<FamilyRecord>, StoreError>> {
        let found = self.0.tokens.contains(hash).then(|| self.0.clone());
        Box::pin(async move { Ok(found) })
    }
    fn remove_dead_families(&self, _: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async { Ok(0) })
    }
    fn family_id_by_origin(&self, _: &str) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        Box::pin(async { Ok(None) })
    }
    fn family_ids_of(
        &self,
        _: Option<&str>,
        _: Option<&str>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn family_clients_of(
        &self,
        _: &str,
        _: u64,
    ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[tokio::test]
async fn stored_families_are_served_and_a_lost_swap_or_failed_store_changes_nothing() {
    let token = Secret::random(32);
    let now_ms = unix_now_ms();
    let record = FamilyRecord {
        family_id: "f1".into(),
        client_id: "c1".into(),
        subject: "alice".into(),
        scope: "mcp.read".into(),
        resource: "r".into(),
        flow: "0123456789ab".into(),
        origin_jti: "a0".into(),
        created_at_ms: now_ms,
        absolute_expires_at_ms: now_ms + 1_000_000,
        idle_expires_at_ms: now_ms + 100_000,
        generation: 0,
        current: token.sha256(),
        previous: None,
        rotated_at_ms: None,
        salt: None,
        tokens: vec![token.sha256()],
    };
    let tokens = RefreshTokens::spawn(RefreshTokensArgs {
        shared: false,
        announce: None,
        idle_ttl: Duration::from_secs(100),
        absolute_ttl: Duration::from_secs(1000),
        grace: Duration::from_secs(5),
        max_families: 10,
        cached: 10,
        store: Arc::new(LosingStore(record)),
        revocations: revocations(100),
    });
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 1);
    assert_eq!(tokens.ask(CountCachedFamilies).await.unwrap(), 0);
    let found = tokens
        .ask(InspectRefreshToken {
            token: token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.grant.subject), Some("alice".to_string()));
    // Another server rotated it first: refused, and the family is as it was.
    assert!(matches!(
        tokens.ask(refresh(&token)).await,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    // The store cannot remove: the revocation fails and memory keeps the family.
    let revoke = RevokeRefreshToken {
        token: token.clone(),
        client_id: "c1".into(),
    };
    assert!(tokens.ask(revoke).await.is_err());
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_ended_family_has_its_access_tokens_revoked_but_an_expired_one_not() {
    let revocations = revocations(100);
    let tokens = spawn_with(0, revocations.clone());
    // Reuse: every access token minted from the family is revoked before the answer.
    let t0 = tokens.ask(issue()).await.unwrap();
    tokens.ask(refresh(&t0)).await.unwrap();
    // Past the (empty) grace window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(matches!(
        tokens.ask(refresh(&t0)).await,
        Err(SendError::HandlerError(RefreshError::Reused(_)))
    ));
    assert!(is_revoked(&revocations, "a0").await);
    assert!(is_revoked(&revocations, "a1").await);
    // The revocation endpoint, the user revoking the client, a replayed code: the same.
    let mut ends = Vec::new();
    for (i, jti) in ["b0", "c0", "d0"].into_iter().enumerate() {
        let mut first = issue();
        first.access_jti = jti.into();
        first.subject = format!("user{i}");
        ends.push(tokens.ask(first).await.unwrap());
    }
    let by_token = RevokeRefreshToken {
        token: ends[0].clone(),
        client_id: "c1".into(),
    };
    assert!(matches!(
        tokens.ask(by_token).await.unwrap(),
        TokenRevocation::Revoked(EndedFamilies { families: 1, .. })
    ));
    let by_user = RevokeClientFamilies {
        subject: Some("user1".into()),
        client_id: Some("c1".into()),
    };
    assert_eq!(tokens.ask(by_user).await.unwrap().families, 1);
    let by_code = RevokeCodeFamily { jti: "d0".into() };
    assert_eq!(tokens.ask(by_code).await.unwrap().families, 1);
    for jti in ["b0", "c0", "d0"] {
        assert!(is_revoked(&revocations, jti).await, "{jti}");
    }
    // A family that expires leaves its (longer-lived) access tokens alone.
    let mut long = issue();
    long.access_jti = "e0".into();
    long.access_ttl = Duration::from_secs(500);
    tokens.ask(long).await.unwrap();
    tokio::time::sleep(Duration::from_secs(121)).await;
    tokio::task::yield_now().await;
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 0);
    assert!(!is_revoked(&revocations, "e0").await);
}

#[tokio::test(start_paused = true)]
async fn a_full_revocation_list_is_an_error_not_an_acknowledgement() {
    let tokens = spawn_with(0, revocations(0));
    let t0 = tokens.ask(issue()).await.unwrap();
    tokens.ask(refresh(&t0)).await.unwrap();
    // Past the (empty) grace window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Reuse detected, but the access tokens cannot be revoked: no `invalid_grant` answer that
    // would claim the family and its tokens are dead, a "try again" instead.
    assert!(matches!(
        tokens.ask(refresh(&t0)).await,
        Err(SendError::HandlerError(
            RefreshError::AccessTokensNotRevoked
        ))
    ));
    let t0 = tokens.ask(issue()).await.unwrap();
    let revoke = RevokeRefreshToken {
        token: t0,
        client_id: "c1".into(),
    };
    assert!(matches!(
        tokens.ask(revoke).await,
        Err(SendError::HandlerError(EndError::AccessTokensNotRevoked))
    ));
    // The reused family ended all the same; the one whose revocation was refused is as it was,
    // so the revocation can be asked again.
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_operator_ends_every_family_of_a_client_or_of_a_user() {
    let revocations = revocations(100);
    let tokens = spawn_with(0, revocations.clone());
    // alice and bob with c1, alice with c2.
    for (jti, subject, client_id) in [
        ("a", "alice", "c1"),
        ("b", "bob", "c1"),
        ("c", "alice", "c2"),
    ] {
        let mut first = issue();
        first.access_jti = jti.into();
        first.subject = subject.into();
        first.client_id = client_id.into();
        tokens.ask(first).await.unwrap();
    }
    let of_client = RevokeClientFamilies {
        subject: None,
        client_id: Some("c1".into()),
    };
    assert_eq!(tokens.ask(of_client).await.unwrap().families, 2);
    assert!(is_revoked(&revocations, "a").await && is_revoked(&revocations, "b").await);
    assert!(
        !is_revoked(&revocations, "c").await,
        "c2's family is not c1's"
    );
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 1);
    let of_user = RevokeClientFamilies {
        subject: Some("alice".into()),
        client_id: None,
    };
    assert_eq!(tokens.ask(of_user).await.unwrap().families, 1);
    assert!(is_revoked(&revocations, "c").await);
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 0);
}

/// An actor that caches one family, over `store`, without a grace window.
fn spawn_caching_one(
    store: Arc<MemoryStore>,
    revocations: ActorRef<Revocations>,
) -> ActorRef<RefreshTokens> {
    RefreshTokens::spawn(RefreshTokensArgs {
        shared: false,
        announce: None,
        idle_ttl: Duration::from_secs(100),
        absolute_ttl: Duration::from_secs(1000),
        grace: Duration::from_secs(0),
        max_families: 10,
        cached: 1,
        store,
        revocations,
    })
}

/// Only the families used lately are held; the others are read from the store when one of their
/// tokens is presented, and judged the same: rotation, reuse of a retired token, revocation of
/// the access tokens minted from them.
#[tokio::test]
async fn families_evicted_from_the_cache_are_judged_from_the_store() {
    let revocations = revocations(100);
    let store = Arc::new(MemoryStore::new());
    let tokens = spawn_caching_one(store.clone(), revocations.clone());
    let first = tokens.ask(issue()).await.unwrap();
    let second = tokens
        .ask(IssueRefreshToken {
            access_jti: "b0".into(),
            ..issue()
        })
        .await
        .unwrap();
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 2);
    assert_eq!(tokens.ask(CountCachedFamilies).await.unwrap(), 1);
    // The first family was evicted by the second: read back, rotated, and cached again.
    let rotated = tokens.ask(refresh(&first)).await.unwrap();
    assert_eq!(tokens.ask(CountCachedFamilies).await.unwrap(), 1);
    // The second, evicted now, still answers introspection from the store.
    let inspected = tokens
        .ask(InspectRefreshToken {
            token: second.clone(),
        })
        .await
        .unwrap();
    assert!(inspected.is_some());
    // Evict the first again, then present its retired token: reuse, the family ends, and the
    // access tokens minted from it while it was cached are revoked.
    let _ = tokens
        .ask(InspectRefreshToken {
            token: second.clone(),
        })
        .await;
    assert!(matches!(
        tokens.ask(refresh(&first)).await,
        Err(SendError::HandlerError(RefreshError::Reused(_)))
    ));
    assert!(is_revoked(&revocations, "a0").await);
    assert!(is_revoked(&revocations, "a1").await);
    assert!(!is_revoked(&revocations, "b0").await);
    assert!(matches!(
        tokens.ask(refresh(&rotated.refresh_token)).await,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    assert_eq!(tokens.ask(CountFamilies).await.unwrap(), 1);
    assert_eq!(store.count_families().await.unwrap(), 1);
}

/// An operator's revocation deletes the families from the store before the actor hears of it:
/// the access tokens minted from a family no longer cached are still revoked.
#[tokio::test]
async fn a_revocation_by_user_reaches_the_access_tokens_of_families_gone_from_cache_and_store() {
    let revocations = revocations(100);
    let store = Arc::new(MemoryStore::new());
    let tokens = spawn_caching_one(store.clone(), revocations.clone());
    tokens.ask(issue()).await.unwrap();
    let bob = IssueRefreshToken {
        subject: "bob".into(),
        access_jti: "b0".into(),
        ..issue()
    };
    tokens.ask(bob).await.unwrap();
    assert_eq!(
        tokens.ask(CountCachedFamilies).await.unwrap(),
        1,
        "alice's evicted"
    );
    let alice = store.family_ids_of(Some("alice"), None).await.unwrap();
    store.remove_families(&alice).await.unwrap();
    let revoke = RevokeClientFamilies {
        subject: Some("alice".into()),
        client_id: None,
    };
    tokens.ask(revoke).await.unwrap();
    assert!(is_revoked(&revocations, "a0").await);
    assert!(!is_revoked(&revocations, "b0").await);
}
