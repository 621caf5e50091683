//! PostgreSQL raced as several servers would race it: two connections (two stores on one
//! database) doing the same single-use thing at the same moment, and the announcement of a
//! recorded change to every listening server.

use super::refresh_tokens::{family, rotation};
use super::{code, open};
use crate::store::*;
use mcp_oauth_testkit::postgres::ScratchDatabase;

/// Two replicas rotating one token at the same moment: exactly one wins, in the database itself.
#[tokio::test]
async fn postgres_decides_a_raced_rotation_once() {
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database).await, open(&database).await);
    for round in 0..20u8 {
        // Token digests are unique across families: three of their own per round.
        let id = format!("f{round}");
        let current = 3 * round + 1;
        a.insert_family(&family(&id, current)).await.unwrap();
        let (one, two) = tokio::join!(
            a.rotate(&rotation(&id, current, current + 1)),
            b.rotate(&rotation(&id, current, current + 2))
        );
        assert!(
            one.unwrap() ^ two.unwrap(),
            "round {round}: exactly one rotation"
        );
    }
    a.close().await;
    b.close().await;
}

/// Two servers making the first key at the same moment on one empty database: one key.
#[tokio::test]
async fn postgres_makes_one_first_key_when_raced() {
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database).await, open(&database).await);
    for round in 0..20 {
        let key = |kid: String| KeyRecord {
            kid,
            encrypted_key: vec![1],
            created_at: 1,
            activates_at: 1,
            retired_at: None,
            removes_at: None,
        };
        let (ka, kb) = (key(format!("a{round}")), key(format!("b{round}")));
        let (one, two) = tokio::join!(
            a.insert_signing_key_unless_made(&ka, KeyMade::First),
            b.insert_signing_key_unless_made(&kb, KeyMade::First)
        );
        assert!(
            one.unwrap() ^ two.unwrap(),
            "round {round}: exactly one first key"
        );
        for stored in a.signing_keys().await.unwrap() {
            a.delete_signing_key(&stored.kid).await.unwrap();
        }
    }
    a.close().await;
    b.close().await;
}

/// Two servers redeeming one code at the same moment: exactly one takes it.
#[tokio::test]
async fn postgres_decides_a_raced_redemption_once() {
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database).await, open(&database).await);
    for round in 0..20u8 {
        let hash = [round; 32];
        a.insert_code(&hash, &code("c", "alice")).await.unwrap();
        let (one, two) = tokio::join!(
            a.take_code(&hash, "c", "ja", 0),
            b.take_code(&hash, "c", "jb", 0)
        );
        let taken = [one.unwrap(), two.unwrap()]
            .iter()
            .filter(|t| matches!(t, CodeTake::Taken(_)))
            .count();
        assert_eq!(taken, 1, "round {round}: exactly one redemption");
    }
    a.close().await;
    b.close().await;
}

/// A change recorded through one connection is announced to every server listening (PostgreSQL
/// `LISTEN/NOTIFY`): the other store's signal changes.
#[tokio::test]
async fn postgres_announces_recorded_changes() {
    let database = ScratchDatabase::create().await;
    let (a, b) = (open(&database).await, open(&database).await);
    let mut signal = b.change_signal();
    // The listener's first bump (it is listening) may come before or after: wait for it.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), signal.changed()).await;
    signal.borrow_and_update();
    a.record_change(&Change::KeysChanged, 1).await.unwrap();
    let announced = tokio::time::timeout(std::time::Duration::from_secs(5), signal.changed()).await;
    assert!(matches!(announced, Ok(Ok(()))), "the change was announced");
    a.close().await;
    b.close().await;
}

/// Pool options of the fewest connections a server may have, plus `more` (-1: one too few).
fn fewest_connections(more: i32) -> crate::store::postgres::PoolOptions {
    let fewest = crate::store::postgres::MIN_CONNECTIONS;
    crate::store::postgres::PoolOptions {
        max_connections: fewest.saturating_add_signed(more),
        acquire_timeout: std::time::Duration::from_secs(2),
    }
}

/// The fewest connections a server may have: one lent, two pooled (one of them the change
/// listener's for good). Everything still gets a connection: the pool's statements, the lent
/// ones, the readiness ping.
#[tokio::test]
async fn postgres_serves_on_the_fewest_connections() {
    let database = ScratchDatabase::create().await;
    let too_few = fewest_connections(-1);
    let refused = PostgresStore::open(&database.url, too_few).await.err();
    assert!(refused.is_some_and(|e| e.to_string().contains("at least")));
    let store = PostgresStore::open(&database.url, fewest_connections(0))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.count_clients().await.unwrap(), 0);
    store
        .insert_code(&[7; 32], &code("c", "alice"))
        .await
        .unwrap();
    assert!(matches!(
        store.take_code(&[7; 32], "c", "jti", 0).await.unwrap(),
        CodeTake::Taken(_)
    ));
    store.ping().await.unwrap();
    store.close().await;
}

/// A code's insert commits without waiting for the log's flush, and only that transaction: the
/// lent connection it ran on (the only one here) commits the next one as the server is set to.
#[tokio::test]
async fn postgres_waits_for_the_flush_again_after_a_codes_insert() {
    let database = ScratchDatabase::create().await;
    let store = PostgresStore::open(&database.url, fewest_connections(0))
        .await
        .unwrap();
    store
        .insert_code(&[8; 32], &code("c", "alice"))
        .await
        .unwrap();
    let mut conn = store.connection().await.unwrap();
    let setting: Result<String, _> = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *conn)
        .await;
    let setting = crate::store::connections::Settle::settle(conn, setting).unwrap();
    assert_eq!(setting, "on");
    store.close().await;
}
