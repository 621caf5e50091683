//! Unit tests of the group commit (`commit.rs`): writes waiting together share a transaction, a
//! retry during its rotation's commit gets the same successor, and a code replayed while its
//! family is being written ends that family.

use super::*;
use crate::actors::revocations::RevocationsArgs;
use crate::store::MemoryStore;
use futures::future::BoxFuture;
use kameo::actor::Spawn;
use kameo::error::SendError;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::oneshot;

/// The in-memory store whose transactions take `delay`, counting them and the reads of a family.
struct Slow {
    inner: MemoryStore,
    batches: AtomicUsize,
    reads: AtomicUsize,
    delay: Duration,
}

impl RefreshTokenStore for Slow {
    fn write_batch<'a>(
        &'a self,
        families: &'a [FamilyRecord],
        rotations: &'a [Rotation],
    ) -> BoxFuture<'a, Result<Vec<bool>, StoreError>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.write_batch(families, rotations).await
        })
    }
    fn remove_families(&self, ids: &[String]) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.remove_families(ids)
    }
    fn load_live(&self, now_ms: u64) -> BoxFuture<'_, Result<Vec<FamilyRecord>, StoreError>> {
        self.inner.load_live(now_ms)
    }
    fn count_families(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.count_families()
    }
    fn family_by_token(
        &self,
        hash: &TokenHash,
    ) -> BoxFuture<'_, Result<Option<FamilyRecord>, StoreError>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.family_by_token(hash)
    }
    fn remove_dead_families(&self, now_ms: u64) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.remove_dead_families(now_ms)
    }
    fn family_id_by_origin(&self, jti: &str) -> BoxFuture<'_, Result<Option<String>, StoreError>> {
        self.inner.family_id_by_origin(jti)
    }
    fn family_ids_of(
        &self,
        subject: Option<&str>,
        client_id: Option<&str>,
    ) -> BoxFuture<'_, Result<Vec<String>, StoreError>> {
        self.inner.family_ids_of(subject, client_id)
    }
    fn family_clients_of(
        &self,
        subject: &str,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<Vec<(String, u64)>, StoreError>> {
        self.inner.family_clients_of(subject, now_ms)
    }
}

/// The actor on a store whose transactions take 50 ms.
fn spawn_slow() -> (ActorRef<RefreshTokens>, Arc<Slow>) {
    spawn_slower(Duration::from_millis(50), Duration::from_secs(100))
}

/// The actor on a store whose transactions take `delay`, its families idle for `idle_ttl`.
fn spawn_slower(delay: Duration, idle_ttl: Duration) -> (ActorRef<RefreshTokens>, Arc<Slow>) {
    let store = Arc::new(Slow {
        inner: MemoryStore::new(),
        batches: AtomicUsize::new(0),
        reads: AtomicUsize::new(0),
        delay,
    });
    (spawn_on(store.clone(), false, idle_ttl), store)
}

/// The actor on `store`, which other servers write too when `shared`.
fn spawn_on(store: Arc<Slow>, shared: bool, idle_ttl: Duration) -> ActorRef<RefreshTokens> {
    RefreshTokens::spawn(RefreshTokensArgs {
        shared,
        announce: None,
        idle_ttl,
        absolute_ttl: Duration::from_secs(1000),
        grace: Duration::from_secs(5),
        max_families: 100,
        cached: 100,
        store,
        revocations: Revocations::spawn(RevocationsArgs {
            max_entries: 100,
            store: Arc::new(MemoryStore::new()),
        }),
    })
}

fn issue(jti: &str) -> IssueRefreshToken {
    IssueRefreshToken {
        client_id: "c1".into(),
        subject: "alice".into(),
        scope: ScopeSet::parse("mcp.read").unwrap(),
        resource: "r".into(),
        flow: FlowId::mint(),
        access_jti: jti.into(),
        access_ttl: Duration::from_secs(60),
    }
}

fn refresh(token: &Secret, jti: &str) -> RotateRefreshToken {
    RotateRefreshToken {
        token: token.clone(),
        client_id: "c1".into(),
        resource: None,
        scope: None,
        access_jti: jti.into(),
        access_ttl: Duration::from_secs(60),
        judged: None,
    }
}

#[tokio::test(start_paused = true)]
async fn writes_waiting_together_share_a_transaction() {
    let (tokens, store) = spawn_slow();
    let issued = futures::future::join_all(
        (0..8).map(|i| tokens.ask(issue(&format!("a{i}"))).into_future()),
    )
    .await;
    let firsts: Vec<Secret> = issued.into_iter().map(Result::unwrap).collect();
    // The first alone, the seven that came while it committed in the next transaction.
    assert_eq!(store.batches.load(Ordering::SeqCst), 2);
    let refreshed = futures::future::join_all(
        firsts
            .iter()
            .enumerate()
            .map(|(i, t)| tokens.ask(refresh(t, &format!("b{i}"))).into_future()),
    )
    .await;
    assert_eq!(store.batches.load(Ordering::SeqCst), 4);
    for (first, answer) in firsts.iter().zip(refreshed) {
        let answer = answer.unwrap();
        assert!(!answer.grace);
        // Committed: the store has the successor as the family's current token.
        let stored = store
            .inner
            .family_by_token(&first.sha256())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.current, answer.refresh_token.sha256());
        assert_eq!(stored.generation, 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_during_its_rotations_commit_gets_the_same_successor() {
    let (tokens, _) = spawn_slow();
    let t0 = tokens.ask(issue("a0")).await.unwrap();
    let (one, two) = tokio::join!(
        tokens.ask(refresh(&t0, "a1")).into_future(),
        tokens.ask(refresh(&t0, "a2")).into_future()
    );
    let (one, two) = (one.unwrap(), two.unwrap());
    assert_eq!(one.refresh_token, two.refresh_token);
    assert_eq!(
        [one.grace, two.grace],
        [false, true],
        "the second was held, then met the rotation within the grace window"
    );
    // The chain goes on from the one successor.
    tokens.ask(refresh(&one.refresh_token, "a3")).await.unwrap();
}

/// A refresh that asks to be told what it will grant, and the channel it is told on.
fn refresh_told(
    token: &Secret,
    client_id: &str,
    jti: &str,
) -> (RotateRefreshToken, oneshot::Receiver<Judgement>) {
    let (judged, judgement) = oneshot::channel();
    let request = RotateRefreshToken {
        client_id: client_id.into(),
        judged: Some(judged),
        ..refresh(token, jti)
    };
    (request, judgement)
}

#[tokio::test(start_paused = true)]
async fn a_rotation_says_what_it_grants_before_it_commits_and_nothing_else_does() {
    let (tokens, store) = spawn_slow();
    let t0 = tokens.ask(issue("a0")).await.unwrap();
    let (request, judgement) = refresh_told(&t0, "c1", "a1");
    let rotation = tokio::spawn({
        let tokens = tokens.clone();
        async move { tokens.ask(request).await }
    });
    let judgement = judgement.await.expect("told before the commit");
    assert!(!rotation.is_finished(), "the rotation is still committing");
    assert_eq!(store.batches.load(Ordering::SeqCst), 2);
    let refreshed = rotation.await.unwrap().unwrap();
    assert!(!refreshed.grace);
    assert_eq!(judgement.grant, refreshed.grant);
    assert_eq!(judgement.scope, refreshed.scope);
    assert_eq!(refreshed.grant.subject, "alice");

    // Refused, answered again within the grace window, or reused: told nothing.
    let (request, judgement) = refresh_told(&refreshed.refresh_token, "c2", "a2");
    assert!(matches!(
        tokens.ask(request).await,
        Err(SendError::HandlerError(RefreshError::WrongClient))
    ));
    assert!(judgement.await.is_err());
    let (request, judgement) = refresh_told(&t0, "c1", "a3");
    assert!(tokens.ask(request).await.unwrap().grace);
    assert!(judgement.await.is_err());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (request, judgement) = refresh_told(&t0, "c1", "a4");
    assert!(matches!(
        tokens.ask(request).await,
        Err(SendError::HandlerError(RefreshError::Reused(_)))
    ));
    assert!(judgement.await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_code_replayed_while_its_family_is_written_ends_the_family() {
    let (tokens, store) = spawn_slow();
    // The family is on its way to the store when the code's replay looks for it.
    let issuing = tokens.ask(issue("a0")).into_future();
    let replay = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        tokens.ask(RevokeCodeFamily { jti: "a0".into() }).await
    };
    let (issued, replayed) = tokio::join!(issuing, replay);
    assert!(replayed.is_ok());
    assert!(matches!(
        issued,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    assert_eq!(store.inner.count_families().await.unwrap(), 0);
    // A replay seen before the family was asked for: it is not made at all.
    tokens
        .ask(RevokeCodeFamily { jti: "b0".into() })
        .await
        .unwrap();
    assert!(matches!(
        tokens.ask(issue("b0")).await,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    assert_eq!(store.inner.count_families().await.unwrap(), 0);
    // Others are made as usual.
    tokens.ask(issue("c0")).await.unwrap();
    assert_eq!(store.inner.count_families().await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_grant_revoked_while_its_family_is_written_ends_the_family() {
    let (tokens, store) = spawn_slow();
    let issuing = tokens.ask(issue("a0")).into_future();
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let grant = RevokeClientFamilies {
            subject: Some("alice".into()),
            client_id: Some("c1".into()),
        };
        tokens.ask(grant).await
    };
    let (issued, revoked) = tokio::join!(issuing, revoke);
    assert!(revoked.is_ok());
    assert!(matches!(
        issued,
        Err(SendError::HandlerError(RefreshError::Unknown))
    ));
    assert_eq!(store.inner.count_families().await.unwrap(), 0);
    // Another user's family, on its way at the same time, is made.
    let issuing = tokens.ask(IssueRefreshToken {
        subject: "bob".into(),
        ..issue("b0")
    });
    let revoke = async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let grant = RevokeClientFamilies {
            subject: Some("alice".into()),
            client_id: None,
        };
        tokens.ask(grant).await
    };
    let (issued, revoked) = tokio::join!(issuing.into_future(), revoke);
    assert!(revoked.is_ok() && issued.is_ok());
    assert_eq!(store.inner.count_families().await.unwrap(), 1);
}

/// The minute's sweep comes while a rotation is on its way, after the family's old idle
/// deadline: the family is left to the commit, which pushes the deadline back.
#[tokio::test(start_paused = true)]
async fn the_sweep_leaves_a_family_whose_rotation_is_on_its_way() {
    // Transactions take 5 s; a family idles out 118 s after its last use; sweeps at 60 s, 120 s.
    let (tokens, _) = spawn_slower(Duration::from_secs(5), Duration::from_secs(118));
    let t0 = tokens.ask(issue("a0")).await.unwrap();
    // At 116 s, alive; its rotation commits at 121 s, past the sweep at 120 s.
    tokio::time::sleep(Duration::from_secs(111)).await;
    let refreshed = tokens.ask(refresh(&t0, "a1")).await.unwrap();
    assert!(!refreshed.grace);
    tokens
        .ask(refresh(&refreshed.refresh_token, "a2"))
        .await
        .unwrap();
}

/// A transaction past its time limit is abandoned: its caller gets an error, and it does not
/// commit later behind the caller's back.
#[tokio::test(start_paused = true)]
async fn a_transaction_past_its_limit_is_abandoned_not_committed_later() {
    let (tokens, store) = spawn_slower(Duration::from_secs(20), Duration::from_secs(100));
    assert!(matches!(
        tokens.ask(issue("a0")).await,
        Err(SendError::HandlerError(RefreshError::Store(_)))
    ));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(store.inner.count_families().await.unwrap(), 0);
}

/// Two servers on one store. A token that is the current one of the family a server holds is
/// rotated there without a read of the family; when the other server rotated it first, the swap
/// is lost and the token judged again as the store has it: a retry within the grace window, so
/// the same successor. A retired token is always judged as the store has it.
#[tokio::test(start_paused = true)]
async fn on_a_shared_store_a_current_token_is_swapped_unread_and_a_lost_swap_judged_again() {
    let store = Arc::new(Slow {
        inner: MemoryStore::new(),
        batches: AtomicUsize::new(0),
        reads: AtomicUsize::new(0),
        delay: Duration::ZERO,
    });
    let idle = Duration::from_secs(100);
    let (here, there) = (
        spawn_on(store.clone(), true, idle),
        spawn_on(store.clone(), true, idle),
    );
    let reads = || store.reads.load(Ordering::SeqCst);
    let t0 = here.ask(issue("a0")).await.unwrap();
    let before = reads();
    let t1 = here.ask(refresh(&t0, "a1")).await.unwrap().refresh_token;
    assert_eq!(
        reads(),
        before,
        "the current token of a held family: no read"
    );
    // The other server rotates t1 first (it holds no copy: it reads the family).
    let theirs = there.ask(refresh(&t1, "b1")).await.unwrap();
    assert!(!theirs.grace);
    assert_eq!(reads(), before + 1);
    // Here t1 still looks current: the swap is lost, and t1 is judged again, read.
    let ours = here.ask(refresh(&t1, "a2")).await.unwrap();
    assert!(ours.grace, "judged as a retry within the grace window");
    assert_eq!(ours.refresh_token.expose(), theirs.refresh_token.expose());
    assert_eq!(reads(), before + 2);
    // The retired t1 at the server that retired it: read all the same.
    let again = there.ask(refresh(&t1, "b2")).await.unwrap();
    assert!(again.grace);
    assert_eq!(again.refresh_token.expose(), theirs.refresh_token.expose());
    assert_eq!(reads(), before + 3);
    // The successor here: the lost swap read the family, so it is the current one of the copy
    // held here now, and rotated without a read.
    here.ask(refresh(&theirs.refresh_token, "a3"))
        .await
        .unwrap();
    assert_eq!(reads(), before + 3);
}
