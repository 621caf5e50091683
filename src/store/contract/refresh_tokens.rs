//! Refresh-token families against every backend: the compare-and-swap of a rotation, the lookups
//! (by any token, by origin, by user and client), the sweep of dead families, and the idle
//! deadline kept within the absolute one. `family` and `rotation` make the records the other
//! suites use too.

use super::on_every_backend;
use crate::store::*;

pub(super) fn family(id: &str, current: u8) -> FamilyRecord {
    FamilyRecord {
        family_id: id.into(),
        client_id: "c".into(),
        subject: "alice".into(),
        scope: "mcp.read".into(),
        resource: "https://rs/mcp".into(),
        flow: "f".into(),
        origin_jti: format!("origin-{id}"),
        created_at_ms: 1_000,
        absolute_expires_at_ms: 100_000,
        idle_expires_at_ms: 50_000,
        generation: 0,
        current: [current; 32],
        previous: None,
        rotated_at_ms: None,
        salt: None,
        tokens: vec![[current; 32]],
    }
}

pub(super) fn rotation(id: &str, presented: u8, next: u8) -> Rotation {
    Rotation {
        family_id: id.into(),
        presented: [presented; 32],
        next: [next; 32],
        salt: [9; 32],
        generation: 1,
        rotated_at_ms: 2_000,
        idle_expires_at_ms: 60_000,
    }
}

/// A family's idle deadline is kept no later than its absolute one, whatever it is given at its
/// insert or a rotation: the sweep reads the idle deadline alone, so a family dies at its
/// absolute deadline however far a refresh pushed the idle one.
#[tokio::test]
async fn a_refresh_family_dies_at_its_absolute_deadline() {
    on_every_backend(async |store: &dyn Store| {
        let beyond = FamilyRecord {
            idle_expires_at_ms: 150_000,
            ..family("late", 1)
        };
        store.insert_family(&beyond).await.unwrap();
        store.insert_family(&family("pushed", 2)).await.unwrap();
        let pushed = Rotation {
            idle_expires_at_ms: 400_000,
            ..rotation("pushed", 2, 3)
        };
        assert!(store.rotate(&pushed).await.unwrap());
        // A batch of several families, one of them on time (idle deadline at 50 s).
        let batched = FamilyRecord {
            idle_expires_at_ms: 900_000,
            ..family("batched", 4)
        };
        let batch = [family("on-time", 5), batched];
        store.write_batch(&batch, &[]).await.unwrap();
        let live = store.load_live(10_000).await.unwrap();
        assert_eq!(live.len(), 4);
        for family in &live {
            assert!(
                family.idle_expires_at_ms <= family.absolute_expires_at_ms,
                "{} kept an idle deadline past its absolute one",
                family.family_id
            );
        }
        assert_eq!(
            store.remove_dead_families(99_999).await.unwrap(),
            1,
            "on time"
        );
        // The other three end at 100 s, their absolute deadline, with their tokens.
        assert_eq!(store.remove_dead_families(100_000).await.unwrap(), 3);
        assert_eq!(store.count_families().await.unwrap(), 0);
        assert!(store.family_by_token(&[3; 32]).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn refresh_token_families() {
    on_every_backend(async |store: &dyn Store| {
        store.insert_family(&family("f1", 1)).await.unwrap();
        store.insert_family(&family("f2", 2)).await.unwrap();
        // A compare-and-swap: the current token rotates once; a stale one rotates nothing.
        assert!(store.rotate(&rotation("f1", 1, 3)).await.unwrap());
        assert!(!store.rotate(&rotation("f1", 1, 4)).await.unwrap());
        assert!(!store.rotate(&rotation("nope", 1, 4)).await.unwrap());
        let live = store.load_live(10_000).await.unwrap();
        let f1 = live.iter().find(|f| f.family_id == "f1").expect("f1 lives");
        assert_eq!(f1.current, [3; 32]);
        assert_eq!(f1.previous, Some([1; 32]));
        assert_eq!(f1.salt, Some([9; 32]));
        assert_eq!((f1.generation, f1.idle_expires_at_ms), (1, 60_000));
        let mut tokens = f1.tokens.clone();
        tokens.sort();
        assert_eq!(tokens, [[1; 32], [3; 32]], "retired tokens are remembered");
        // Found by any of its tokens, current or retired, as stored.
        for token in [[1; 32], [3; 32]] {
            let found = store.family_by_token(&token).await.unwrap().expect("found");
            assert_eq!((found.family_id.as_str(), found.current), ("f1", [3; 32]));
            let mut tokens = found.tokens.clone();
            tokens.sort();
            assert_eq!(tokens, [[1; 32], [3; 32]]);
        }
        assert!(store.family_by_token(&[7; 32]).await.unwrap().is_none());
        let origin = store.family_id_by_origin("origin-f2").await.unwrap();
        assert_eq!(origin.as_deref(), Some("f2"));
        assert!(
            store
                .family_id_by_origin("origin-f9")
                .await
                .unwrap()
                .is_none()
        );
        let mut ids = store.family_ids_of(Some("alice"), None).await.unwrap();
        ids.sort();
        assert_eq!(ids, ["f1", "f2"]);
        assert_eq!(store.family_ids_of(None, Some("c")).await.unwrap().len(), 2);
        assert!(
            store
                .family_ids_of(Some("bob"), Some("c"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .family_ids_of(Some("alice"), Some("d"))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.count_families().await.unwrap(), 2);
        // Both of alice's families are with client c; at 55 s only f1 is live.
        assert_eq!(
            store.family_clients_of("alice", 10_000).await.unwrap(),
            [("c".to_string(), 2)]
        );
        assert_eq!(
            store.family_clients_of("alice", 55_000).await.unwrap(),
            [("c".to_string(), 1)]
        );
        assert!(store.family_clients_of("bob", 0).await.unwrap().is_empty());
        // f2 is past its idle deadline at 55 s; f1 (pushed to 60 s by its rotation) is not.
        assert_eq!(store.remove_dead_families(55_000).await.unwrap(), 1);
        let live = store.load_live(55_000).await.unwrap();
        assert_eq!(live.len(), 1);
        assert!(store.family_by_token(&[2; 32]).await.unwrap().is_none());
        assert_eq!(
            store
                .remove_families(&["f1".into(), "ghost".into()])
                .await
                .unwrap(),
            1,
            "only existing families are counted"
        );
        assert_eq!(store.count_families().await.unwrap(), 0);
        assert!(store.family_by_token(&[3; 32]).await.unwrap().is_none());
        assert!(store.load_live(0).await.unwrap().is_empty());
        assert!(!store.rotate(&rotation("f1", 3, 5)).await.unwrap());
    })
    .await;
}
