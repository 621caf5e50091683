//! Group commit of refresh-token writes: new families and rotations in one transaction, each
//! rotation still a compare-and-swap of its own.

use super::refresh_tokens::{family, rotation};
use super::{client, on_every_backend};
use crate::store::*;

#[tokio::test]
async fn a_batch_inserts_families_and_applies_each_rotation_that_swaps() {
    on_every_backend(async |store: &dyn Store| {
        store.insert_family(&family("f1", 1)).await.unwrap();
        store.insert_family(&family("f2", 2)).await.unwrap();
        // Two new families, a rotation that swaps, one whose token is stale and one of a family
        // that does not exist: the stale ones change nothing and undo nothing. The answers are
        // in the rotations' order, whatever order the store applies them in.
        let swapped = store
            .write_batch(
                &[family("f3", 3), family("f4", 4)],
                &[
                    rotation("ghost", 1, 7),
                    rotation("f2", 9, 6),
                    rotation("f1", 1, 5),
                ],
            )
            .await
            .unwrap();
        assert_eq!(swapped, [false, false, true]);
        assert_eq!(store.count_families().await.unwrap(), 4);
        let f1 = store.family_by_token(&[5; 32]).await.unwrap().expect("f1");
        assert_eq!((f1.family_id.as_str(), f1.previous), ("f1", Some([1; 32])));
        let f2 = store.family_by_token(&[2; 32]).await.unwrap().expect("f2");
        assert_eq!((f2.current, f2.generation), ([2; 32], 0), "f2 unchanged");
        assert!(store.family_by_token(&[6; 32]).await.unwrap().is_none());
        for (id, token) in [("f3", 3), ("f4", 4)] {
            let found = store.family_by_token(&[token; 32]).await.unwrap();
            assert_eq!(found.map(|f| f.family_id), Some(id.to_string()));
        }
        // A batch with nothing in it commits nothing, and a failing one changes nothing: f1
        // inserted again violates its key, so the rotation of f3 beside it is not applied.
        assert!(store.write_batch(&[], &[]).await.unwrap().is_empty());
        assert!(
            store
                .write_batch(&[family("f1", 8)], &[rotation("f3", 3, 10)])
                .await
                .is_err()
        );
        let f3 = store.family_by_token(&[3; 32]).await.unwrap().expect("f3");
        assert_eq!(f3.current, [3; 32], "the failed batch applied nothing");
        assert!(store.family_by_token(&[8; 32]).await.unwrap().is_none());
    })
    .await;
}

/// A batch of one statement (the store records a family's first token itself) is as atomic as
/// one of several: a new family whose token another family holds is refused, and so is every
/// other family beside it.
#[tokio::test]
async fn a_batch_of_new_families_is_stored_whole_or_not_at_all() {
    on_every_backend(async |store: &dyn Store| {
        store.insert_family(&family("f1", 1)).await.unwrap();
        let refused = store
            .write_batch(&[family("f2", 2), family("f3", 1)], &[])
            .await;
        assert!(refused.is_err(), "f3's token is f1's");
        assert_eq!(store.count_families().await.unwrap(), 1);
        assert!(store.family_by_token(&[2; 32]).await.unwrap().is_none());
        let f1 = store.family_by_token(&[1; 32]).await.unwrap().expect("f1");
        assert_eq!(f1.family_id, "f1");
        // The family's first token is found, whether or not it is among its listed tokens.
        let mut bare = family("f4", 4);
        bare.tokens.clear();
        let mut listed = family("f5", 5);
        listed.tokens.push([55; 32]);
        assert!(
            store
                .write_batch(&[bare, listed], &[])
                .await
                .unwrap()
                .is_empty()
        );
        for (token, id) in [(4, "f4"), (5, "f5"), (55, "f5")] {
            let found = store.family_by_token(&[token; 32]).await.unwrap();
            assert_eq!(
                found.map(|f| f.family_id),
                Some(id.to_string()),
                "token {token}"
            );
        }
    })
    .await;
}

/// Two rotations of one family in one batch are applied in their order, as one after the other
/// would be: the second swaps only if it presents what the first made current.
#[tokio::test]
async fn rotations_of_one_family_in_one_batch_apply_in_their_order() {
    on_every_backend(async |store: &dyn Store| {
        store.insert_family(&family("f1", 1)).await.unwrap();
        store.insert_family(&family("f2", 2)).await.unwrap();
        let swapped = store
            .write_batch(
                &[],
                &[
                    rotation("f1", 1, 5),
                    rotation("f2", 2, 7),
                    rotation("f1", 5, 6),
                    rotation("f2", 2, 8),
                ],
            )
            .await
            .unwrap();
        assert_eq!(swapped, [true, true, true, false]);
        let f1 = store.family_by_token(&[6; 32]).await.unwrap().expect("f1");
        assert_eq!((f1.current, f1.previous), ([6; 32], Some([5; 32])));
        let f2 = store.family_by_token(&[7; 32]).await.unwrap().expect("f2");
        assert_eq!((f2.current, f2.previous), ([7; 32], Some([2; 32])));
        assert!(store.family_by_token(&[8; 32]).await.unwrap().is_none());
    })
    .await;
}

/// A batch larger than one insert statement: 70 families (statements of 64 and 6 rows), each
/// with a retired token beside its current one (140 tokens), then 70 rotations whose new tokens
/// go in together. Each family is found by every one of its tokens.
#[tokio::test]
async fn a_batch_larger_than_one_statement_is_stored_whole() {
    on_every_backend(async |store: &dyn Store| {
        let id = |i: u8| format!("big-{i}");
        let families: Vec<FamilyRecord> = (0..70u8)
            .map(|i| {
                let mut f = family(&id(i), i);
                f.tokens = vec![[i; 32], [i + 100; 32]];
                f
            })
            .collect();
        assert!(store.write_batch(&families, &[]).await.unwrap().is_empty());
        assert_eq!(store.count_families().await.unwrap(), 70);
        let rotations: Vec<Rotation> = (0..70u8).map(|i| rotation(&id(i), i, i + 180)).collect();
        let swapped = store.write_batch(&[], &rotations).await.unwrap();
        assert!(swapped.iter().all(|s| *s));
        for i in (0..70u8).step_by(7).chain([63, 64, 69]) {
            for token in [i, i + 100, i + 180] {
                let found = store.family_by_token(&[token; 32]).await.unwrap();
                assert_eq!(found.map(|f| f.family_id), Some(id(i)), "token {token}");
            }
        }
    })
    .await;
}

/// The group-committed writes of a closed SQLite store (on the connection of their own) are
/// refused at once, not left waiting; the database keeps what was committed before.
#[tokio::test]
async fn a_closed_sqlite_store_refuses_batches_at_once() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = SqliteStore::open(dir.path()).await.expect("SQLite opens");
    sqlite.insert_clients(&[client("kept")]).await.unwrap();
    sqlite.insert_family(&family("f1", 1)).await.unwrap();
    sqlite.close().await;
    let refused = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        (
            sqlite.insert_clients(&[client("late")]).await,
            sqlite.write_batch(&[family("f2", 2)], &[]).await,
        )
    })
    .await
    .expect("answered at once");
    assert!(refused.0.is_err() && refused.1.is_err());
    let reopened = SqliteStore::open(dir.path())
        .await
        .expect("SQLite opens again");
    assert!(reopened.client("kept").await.unwrap().is_some());
    assert!(reopened.client("late").await.unwrap().is_none());
    assert!(reopened.family_by_token(&[1; 32]).await.unwrap().is_some());
    assert!(reopened.family_by_token(&[2; 32]).await.unwrap().is_none());
    reopened.close().await;
}
