//! The contract of the tables of sign-ins: browser sessions with their parked requests and
//! renewals, and sign-ins in progress at upstream identity providers.

use super::on_every_backend;
use crate::store::*;

#[tokio::test]
async fn sessions() {
    on_every_backend(async |store: &dyn Store| {
        let session = |subject: Option<&str>| SessionRecord {
            csrf: "csrf".into(),
            subject: subject.map(str::to_string),
            display_name: subject.map(str::to_uppercase),
            expires_at: 1_000,
        };
        let (anon, alice) = ([1; 32], [2; 32]);
        store.insert_session(&anon, &session(None)).await.unwrap();
        assert_eq!(
            store.session(&anon, 500).await.unwrap(),
            Some(session(None))
        );
        assert_eq!(store.session(&anon, 1_000).await.unwrap(), None, "expired");
        // Parked requests: read only from their own session, taken once, oldest dropped.
        for (id, at) in [("r1", 600), ("r2", 700), ("r3", 800)] {
            store.park_request(id, &anon, id, at, 2).await.unwrap();
        }
        assert_eq!(
            store.parked_request("r1", &anon, 500).await.unwrap(),
            None,
            "dropped"
        );
        assert_eq!(
            store
                .parked_request("r2", &anon, 500)
                .await
                .unwrap()
                .as_deref(),
            Some("r2")
        );
        assert_eq!(
            store.parked_request("r2", &alice, 500).await.unwrap(),
            None,
            "another session"
        );
        assert_eq!(
            store
                .take_request("r2", &anon, 500)
                .await
                .unwrap()
                .as_deref(),
            Some("r2")
        );
        assert_eq!(
            store.take_request("r2", &anon, 500).await.unwrap(),
            None,
            "taken once"
        );
        // A login replaces the session and carries its requests over.
        let renewal = Renewal {
            salt: [7; 32],
            subject: "alice".into(),
            until: 510,
        };
        store
            .renew_session(&anon, &alice, &session(Some("alice")), &renewal)
            .await
            .unwrap();
        assert_eq!(store.session(&anon, 500).await.unwrap(), None);
        assert_eq!(
            store
                .parked_request("r3", &alice, 500)
                .await
                .unwrap()
                .as_deref(),
            Some("r3")
        );
        assert_eq!(store.renewal(&anon, 500).await.unwrap(), Some(renewal));
        assert_eq!(store.renewal(&anon, 510).await.unwrap(), None);
        // A user's sessions end together, with their requests.
        assert_eq!(store.delete_user_sessions("alice").await.unwrap(), 1);
        assert_eq!(store.parked_request("r3", &alice, 500).await.unwrap(), None);
        store.insert_session(&anon, &session(None)).await.unwrap();
        assert!(store.delete_session(&anon).await.unwrap());
        assert!(!store.delete_session(&anon).await.unwrap());
        store.insert_session(&anon, &session(None)).await.unwrap();
        assert!(store.delete_expired_sessions(1_000).await.unwrap() >= 1);
    })
    .await;
}

#[tokio::test]
async fn upstream_sign_ins() {
    on_every_backend(async |store: &dyn Store| {
        let sign_in = SignInRecord {
            provider: "op".into(),
            session_key: [1; 32],
            request_id: "r".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            expires_at: 1_000,
        };
        store.insert_sign_in(&[9; 32], &sign_in).await.unwrap();
        // Another provider, another session, or too late: not taken, and still there.
        assert_eq!(
            store
                .take_sign_in(&[9; 32], "gh", &[1; 32], 500)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .take_sign_in(&[9; 32], "op", &[2; 32], 500)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .take_sign_in(&[9; 32], "op", &[1; 32], 1_000)
                .await
                .unwrap(),
            None
        );
        let taken = store
            .take_sign_in(&[9; 32], "op", &[1; 32], 500)
            .await
            .unwrap();
        assert_eq!(taken, Some(sign_in.clone()));
        assert_eq!(
            store
                .take_sign_in(&[9; 32], "op", &[1; 32], 500)
                .await
                .unwrap(),
            None,
            "once"
        );
        store.insert_sign_in(&[8; 32], &sign_in).await.unwrap();
        assert_eq!(store.delete_expired_sign_ins(1_000).await.unwrap(), 1);
    })
    .await;
}
