//! The feed's pages, its verdicts and the tokens it remembers, against the actor itself.

use super::*;
use kameo::actor::Spawn;

/// This run's id (tests only).
#[derive(Debug)]
struct RunId;

impl Message<RunId> for RevocationFeed {
    type Reply = u64;

    async fn handle(&mut self, _: RunId, _: &mut Context<Self, u64>) -> u64 {
        self.run
    }
}

fn page(snapshot: bool, jti: &str) -> FeedPage {
    FeedPage {
        epoch: "e".into(),
        cursor: 1,
        snapshot,
        revoked: vec![RevokedToken {
            jti: jti.into(),
            exp: crate::oauth::time::unix_now() + 60,
        }],
    }
}

async fn verdict(feed: &ActorRef<RevocationFeed>, jti: &str) -> &'static str {
    let check = CheckRevoked {
        jti: jti.into(),
        remember: None,
    };
    match feed.ask(check).await.unwrap() {
        Verdict::Clear => "clear",
        Verdict::Revoked => "revoked",
        Verdict::Behind { .. } => "behind",
    }
}

/// A page from an earlier run's task, or a partial page before the first snapshot, does not
/// make the copy current; a snapshot of this run does, and a huge `exp` is no overflow.
#[tokio::test]
async fn only_this_runs_pages_count_and_a_snapshot_comes_first() {
    let feed = RevocationFeed::spawn(RevocationFeedArgs {
        url: "http://127.0.0.1:9/feed".into(),
        credential: None,
        max_lag: Duration::from_secs(60),
        wait: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        http: reqwest::Client::new(),
        remember_for: VERIFIED_TTL,
    });
    let run = feed.ask(RunId).await.unwrap();
    let apply = |run: u64, page: FeedPage| ApplyFeedPage { run, page };
    feed.tell(apply(run.wrapping_add(1), page(true, "a")))
        .await
        .unwrap();
    assert_eq!(verdict(&feed, "a").await, "behind", "another run's page");
    feed.tell(apply(run, page(false, "a"))).await.unwrap();
    assert_eq!(verdict(&feed, "a").await, "behind", "a partial page first");
    feed.tell(apply(run, page(true, "a"))).await.unwrap();
    assert_eq!(verdict(&feed, "a").await, "revoked");
    assert_eq!(verdict(&feed, "b").await, "clear");
    let mut far = page(false, "b");
    far.revoked[0].exp = u64::MAX;
    feed.tell(apply(run, far)).await.unwrap();
    assert_eq!(verdict(&feed, "b").await, "revoked");
}

fn claims(jti: &str, exp: u64) -> Arc<AccessTokenClaims> {
    Arc::new(AccessTokenClaims {
        iss: "i".into(),
        sub: "alice".into(),
        aud: "a".into(),
        exp,
        iat: 0,
        nbf: None,
        jti: jti.into(),
        client_id: "c".into(),
        scope: "mcp.read".into(),
        flow: None,
    })
}

async fn recall(feed: &ActorRef<RevocationFeed>, token: &str) -> &'static str {
    recall_on(feed, token, None).await
}

/// [`recall`] on an MCP session: `owned` when the token is known to own it.
async fn recall_on(
    feed: &ActorRef<RevocationFeed>,
    token: &str,
    session: Option<&str>,
) -> &'static str {
    let check = CheckToken {
        token: crate::trace::sha256(token),
        session: session.map(Secret::new),
    };
    match feed.ask(check).await.unwrap() {
        Remembered::Valid {
            owns_session: true, ..
        } => "owned",
        Remembered::Valid { .. } => "valid",
        Remembered::Unknown => "unknown",
        Remembered::Refused(Verdict::Revoked) => "revoked",
        Remembered::Refused(_) => "behind",
    }
}

/// A feed whose poller finds no authorization server, given a first snapshot (one revoked
/// token, `other`) by hand, and the id of its run.
async fn synced_feed(max_lag: Duration) -> (ActorRef<RevocationFeed>, u64) {
    let feed = RevocationFeed::spawn(RevocationFeedArgs {
        url: "http://127.0.0.1:9/feed".into(),
        credential: None,
        max_lag,
        wait: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        http: reqwest::Client::new(),
        remember_for: VERIFIED_TTL,
    });
    let run = feed.ask(RunId).await.unwrap();
    let snapshot = ApplyFeedPage {
        run,
        page: page(true, "other"),
    };
    feed.tell(snapshot).await.unwrap();
    (feed, run)
}

/// A validated token is answered from memory until it is revoked, expires, or has been
/// remembered for `VERIFIED_TTL`; never while the copy is behind.
#[tokio::test(start_paused = true)]
async fn validated_tokens_are_remembered_but_never_past_a_revocation() {
    let (feed, run) = synced_feed(Duration::from_secs(30)).await;
    let apply = |page: FeedPage| ApplyFeedPage { run, page };
    let now = crate::oauth::time::unix_now();
    let remember = |token: &str, jti: &str, exp: u64| CheckRevoked {
        jti: jti.into(),
        remember: Some((crate::trace::sha256(token), claims(jti, exp))),
    };
    assert_eq!(recall(&feed, "t1").await, "unknown");
    assert!(matches!(
        feed.ask(remember("t1", "j1", now + 600)).await.unwrap(),
        Verdict::Clear
    ));
    assert_eq!(recall(&feed, "t1").await, "valid");
    assert_eq!(recall(&feed, "t2").await, "unknown", "another token");
    // Revoked: refused from memory at once.
    feed.tell(apply(page(false, "j1"))).await.unwrap();
    assert_eq!(recall(&feed, "t1").await, "revoked");
    // A revoked token is not remembered.
    feed.ask(remember("t3", "j1", now + 600)).await.unwrap();
    assert_eq!(recall(&feed, "t3").await, "unknown");
    // Expired, or remembered too long: validated again.
    feed.ask(remember("t4", "j4", now + 5)).await.unwrap();
    feed.ask(remember("t5", "j5", now + 600)).await.unwrap();
    assert_eq!(recall(&feed, "t4").await, "valid");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(recall(&feed, "t4").await, "unknown", "expired");
    assert_eq!(recall(&feed, "t5").await, "valid");
    // A key left the key set: everything remembered is validated again.
    feed.ask(remember("t7", "j7", now + 600)).await.unwrap();
    feed.ask(ForgetRemembered).await.unwrap();
    assert_eq!(recall(&feed, "t7").await, "unknown", "forgotten");
    feed.ask(remember("t5", "j5", now + 600)).await.unwrap();
    tokio::time::sleep(VERIFIED_TTL).await;
    assert_eq!(recall(&feed, "t5").await, "unknown", "past VERIFIED_TTL");
    // While the copy is behind, nothing is vouched for from memory either.
    feed.tell(apply(page(false, "other"))).await.unwrap();
    feed.ask(remember("t6", "j6", now + 600)).await.unwrap();
    assert_eq!(recall(&feed, "t6").await, "valid");
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(recall(&feed, "t6").await, "behind");
}

/// A remembered token owns a session only once told so, only that session, only until the
/// binding ends, and never once the token itself is forgotten or revoked.
#[tokio::test(start_paused = true)]
async fn a_remembered_token_owns_the_sessions_it_was_found_to_own() {
    let (feed, run) = synced_feed(Duration::from_secs(600)).await;
    let apply = |page: FeedPage| ApplyFeedPage { run, page };
    let now = crate::oauth::time::unix_now();
    let remember = |token: &str, jti: &str| CheckRevoked {
        jti: jti.into(),
        remember: Some((crate::trace::sha256(token), claims(jti, now + 600))),
    };
    let owns = |token: &str, session: &str, for_secs: u64| OwnsSession {
        token: crate::trace::sha256(token),
        session: Secret::new(session),
        until: Instant::now() + Duration::from_secs(for_secs),
    };
    // Told of a token not remembered: nothing to attach it to.
    feed.tell(owns("t1", "s1", 600)).await.unwrap();
    feed.ask(remember("t1", "j1")).await.unwrap();
    assert_eq!(recall_on(&feed, "t1", Some("s1")).await, "valid");
    feed.tell(owns("t1", "s1", 600)).await.unwrap();
    feed.tell(owns("t1", "s2", 5)).await.unwrap();
    assert_eq!(recall_on(&feed, "t1", Some("s1")).await, "owned");
    assert_eq!(recall_on(&feed, "t1", Some("s2")).await, "owned");
    assert_eq!(
        recall_on(&feed, "t1", Some("s3")).await,
        "valid",
        "another session"
    );
    assert_eq!(recall_on(&feed, "t1", None).await, "valid", "no session");
    feed.ask(remember("t2", "j2")).await.unwrap();
    assert_eq!(
        recall_on(&feed, "t2", Some("s1")).await,
        "valid",
        "another token"
    );
    // The binding of s2 ends: asked again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        recall_on(&feed, "t1", Some("s2")).await,
        "valid",
        "binding ended"
    );
    assert_eq!(recall_on(&feed, "t1", Some("s1")).await, "owned");
    // At most a few sessions per token: the oldest told stay, later ones are asked about.
    for session in ["s3", "s4", "s5", "s6"] {
        feed.tell(owns("t1", session, 600)).await.unwrap();
    }
    let owned = ["s1", "s3", "s4", "s5", "s6"];
    let mut found = 0;
    for session in owned {
        found += usize::from(recall_on(&feed, "t1", Some(session)).await == "owned");
    }
    assert_eq!(found, MAX_SESSIONS_PER_TOKEN);
    // A closed session: owned by no token any more.
    feed.tell(owns("t2", "s1", 600)).await.unwrap();
    assert_eq!(recall_on(&feed, "t2", Some("s1")).await, "owned");
    let closed = SessionClosed {
        session: Secret::new("s1"),
    };
    feed.tell(closed).await.unwrap();
    assert_eq!(recall_on(&feed, "t1", Some("s1")).await, "valid", "closed");
    assert_eq!(recall_on(&feed, "t2", Some("s1")).await, "valid", "closed");
    assert_eq!(
        recall_on(&feed, "t1", Some("s3")).await,
        "owned",
        "another session"
    );
    // Revoked: refused, session or not.
    feed.tell(apply(page(false, "j1"))).await.unwrap();
    assert_eq!(recall_on(&feed, "t1", Some("s1")).await, "revoked");
    // Forgotten with every remembered token.
    feed.tell(owns("t2", "s1", 600)).await.unwrap();
    assert_eq!(recall_on(&feed, "t2", Some("s1")).await, "owned");
    feed.ask(ForgetRemembered).await.unwrap();
    feed.ask(remember("t2", "j2")).await.unwrap();
    assert_eq!(
        recall_on(&feed, "t2", Some("s1")).await,
        "valid",
        "forgotten"
    );
}

#[test]
fn a_token_check_traces_the_tokens_fingerprint() {
    let check = CheckToken {
        token: crate::trace::sha256("a-token"),
        session: None,
    };
    assert_eq!(
        format!("{check:?}"),
        format!(
            "CheckToken {{ token: {} }}",
            crate::trace::fingerprint("a-token")
        )
    );
    let check = CheckToken {
        token: crate::trace::sha256("a-token"),
        session: Some(Secret::new("a-session")),
    };
    assert_eq!(
        format!("{check:?}"),
        format!(
            "CheckToken {{ token: {}, session: {} }}",
            crate::trace::fingerprint("a-token"),
            crate::trace::fingerprint("a-session")
        )
    );
}
