//! The store's contract, one suite run against every backend: in memory, SQLite in a temporary
//! directory, and PostgreSQL in a scratch database of its own. Each table's rules (uniqueness,
//! merges, conditional deletes, compare-and-swap, expiry filters) hold the same way in all three;
//! `contract/races.rs` races PostgreSQL as several servers would race it; `contract/sessions.rs`
//! holds the rules of browser sessions and upstream sign-ins, `contract/refresh_tokens.rs` those
//! of refresh-token families.

use super::*;
use crate::oauth::client::{Client, ClientKind, NewClient};
use crate::oauth::scope::ScopeSet;
use mcp_oauth_testkit::postgres::ScratchDatabase;

/// Runs `contract` against each backend.
async fn on_every_backend<F>(contract: F)
where
    F: AsyncFn(&dyn Store),
{
    contract(&MemoryStore::new()).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sqlite = SqliteStore::open(dir.path()).await.expect("SQLite opens");
    contract(&sqlite).await;
    sqlite.close().await;
    let database = ScratchDatabase::create().await;
    let postgres = open(&database).await;
    contract(&postgres).await;
    postgres.close().await;
}

async fn open(database: &ScratchDatabase) -> PostgresStore {
    PostgresStore::open(
        &database.url,
        crate::store::postgres::PoolOptions::default(),
    )
    .await
    .expect("the scratch database opens")
}

fn client(id: &str) -> ClientRecord {
    let client = Client::from_metadata(id, NewClient::public_loopback(), ClientKind::Registered);
    ClientRecord {
        client: std::sync::Arc::new(client),
        used: false,
    }
}

#[tokio::test]
async fn clients() {
    on_every_backend(async |store: &dyn Store| {
        store.insert_client(&client("a")).await.unwrap();
        store.insert_client(&client("b")).await.unwrap();
        assert!(
            store.insert_client(&client("a")).await.is_err(),
            "ids are unique"
        );
        let a = store.client("a").await.unwrap().expect("stored");
        assert_eq!(&*a.client.client_id, "a");
        assert_eq!(a.client.redirect_uris, client("a").client.redirect_uris);
        assert!(!a.used);
        assert!(store.client("zz").await.unwrap().is_none());
        store.mark_client_used("a").await.unwrap();
        assert!(store.client("a").await.unwrap().unwrap().used);
        assert!(
            !store.delete_unused_client("a").await.unwrap(),
            "used: kept"
        );
        assert!(store.delete_unused_client("b").await.unwrap());
        assert!(store.delete_client("a").await.unwrap());
        assert!(!store.delete_client("a").await.unwrap());
        assert!(store.clients().await.unwrap().is_empty());
    })
    .await;
}

/// A group commit's registrations: all of them stored, each as it was (over several insert
/// statements of different sizes), or, when one id is taken, none.
#[tokio::test]
async fn clients_inserted_together_are_all_stored_or_none() {
    on_every_backend(async |store: &dyn Store| {
        store.insert_clients(&[]).await.unwrap();
        let named = |i: usize| {
            let mut record = client(&format!("batch-{i}"));
            let c = std::sync::Arc::make_mut(&mut record.client);
            c.client_name = Some(format!("client {i}").into_boxed_str());
            c.redirect_uris = Box::new([format!("http://127.0.0.1:{}/cb", 1000 + i).into()]);
            c.issued_at = 10 + i as u64;
            record.used = i.is_multiple_of(3);
            record
        };
        // 200 = 64 + 64 + 64 + 8: statements of two sizes, the last of a size its own.
        let batch: Vec<ClientRecord> = (0..200).map(named).collect();
        store.insert_clients(&batch).await.unwrap();
        assert_eq!(store.count_clients().await.unwrap(), 200);
        for i in [0, 63, 64, 127, 128, 191, 192, 199] {
            let stored = store
                .client(&format!("batch-{i}"))
                .await
                .unwrap()
                .expect("stored");
            let expected = named(i);
            assert_eq!(stored.client.client_name, expected.client.client_name);
            assert_eq!(stored.client.redirect_uris, expected.client.redirect_uris);
            assert_eq!(stored.client.issued_at, expected.client.issued_at);
            assert_eq!(stored.used, expected.used);
        }
        // 100 = 64 + 32 + 4, and an id of the second statement is taken: the whole batch is
        // refused, the first statement's rows with it.
        let mut clash: Vec<ClientRecord> = (1000..1100).map(named).collect();
        clash[90] = named(5);
        assert!(store.insert_clients(&clash).await.is_err());
        assert_eq!(store.count_clients().await.unwrap(), 200);
        assert!(store.client("batch-1000").await.unwrap().is_none());
        // The same id twice: in one statement (written without a transaction around it), and
        // in two (16 + 1). Refused, and nothing stored.
        let in_one = [named(2000), named(2001), named(2000)];
        let in_two: Vec<ClientRecord> = (2000..2016).chain([2000]).map(named).collect();
        for twice in [&in_one[..], &in_two[..]] {
            assert!(store.insert_clients(twice).await.is_err());
            assert_eq!(store.count_clients().await.unwrap(), 200);
        }
    })
    .await;
}

/// The registry's bound and its reaping by age, which never take a used client.
#[tokio::test]
async fn clients_are_counted_and_reaped_by_age() {
    on_every_backend(async |store: &dyn Store| {
        let issued = |id: &str, at: u64, used: bool| {
            let mut record = client(id);
            std::sync::Arc::make_mut(&mut record.client).issued_at = at;
            record.used = used;
            record
        };
        assert_eq!(store.count_clients().await.unwrap(), 0);
        assert_eq!(store.oldest_unused_client().await.unwrap(), None);
        store
            .insert_client(&issued("old", 100, false))
            .await
            .unwrap();
        store
            .insert_client(&issued("old-used", 50, true))
            .await
            .unwrap();
        store
            .insert_client(&issued("new", 300, false))
            .await
            .unwrap();
        assert_eq!(store.count_clients().await.unwrap(), 3);
        assert_eq!(store.oldest_unused_client().await.unwrap(), Some(100));
        assert_eq!(store.reap_unused_clients(200).await.unwrap(), ["old"]);
        assert!(store.reap_unused_clients(200).await.unwrap().is_empty());
        assert_eq!(store.oldest_unused_client().await.unwrap(), Some(300));
        store.mark_client_used("new").await.unwrap();
        assert!(store.reap_unused_clients(1000).await.unwrap().is_empty());
        assert_eq!(store.oldest_unused_client().await.unwrap(), None);
        assert_eq!(store.count_clients().await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn consents() {
    on_every_backend(async |store: &dyn Store| {
        let read = ScopeSet::parse("mcp.read").unwrap();
        let write = ScopeSet::parse("mcp.write").unwrap();
        let approval = |scope, resource| Approval {
            subject: "alice",
            client_id: "c",
            scope,
            resource,
            redirect_uri: "http://127.0.0.1/cb",
        };
        store
            .grant_consent(approval(&read, "https://rs/mcp"), 100, 1_000)
            .await
            .unwrap();
        let merged = store
            .grant_consent(approval(&write, "https://rs2/mcp"), 200, 2_000)
            .await
            .unwrap();
        assert_eq!(merged.scope.to_string(), "mcp.read mcp.write");
        assert_eq!(merged.resources, ["https://rs/mcp", "https://rs2/mcp"]);
        let stored = store.consent("alice", "c", 300).await.unwrap().unwrap();
        assert_eq!(stored, merged);
        assert!(store.consent("alice", "c", 2_000).await.unwrap().is_none());
        assert_eq!(store.consents(300).await.unwrap().len(), 1);
        assert_eq!(
            store.consents_of("alice", 300).await.unwrap(),
            std::slice::from_ref(&merged)
        );
        assert!(store.consents_of("bob", 300).await.unwrap().is_empty());
        assert!(store.consents_of("alice", 2_000).await.unwrap().is_empty());
        assert_eq!(store.delete_expired_consents(2_000).await.unwrap(), 1);
        store
            .grant_consent(approval(&read, "https://rs/mcp"), 100, 1_000)
            .await
            .unwrap();
        assert!(store.delete_consent("alice", "c").await.unwrap());
        assert!(!store.delete_consent("alice", "c").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn revocations() {
    on_every_backend(async |store: &dyn Store| {
        store.revoke("j", 500).await.unwrap();
        store.revoke("j", 400).await.unwrap();
        let kept = store.revoked_until("j", 450).await.unwrap();
        assert_eq!(kept, Some(500), "the later expiry is kept");
        store.revoke("j", 600).await.unwrap();
        assert_eq!(store.revoked_until("j", 550).await.unwrap(), Some(600));
        assert_eq!(store.revoked_until("j", 600).await.unwrap(), None);
        assert_eq!(store.revoked_until("k", 0).await.unwrap(), None);
        store.revoke("k", 100).await.unwrap();
        assert_eq!(store.revocations(50).await.unwrap().len(), 2);
        assert_eq!(store.delete_expired_revocations(100).await.unwrap(), 1);
        assert_eq!(
            store.revocations(0).await.unwrap(),
            [("j".to_string(), 600)]
        );
    })
    .await;
}

fn user(name: &str, disabled: bool) -> UserRecord {
    UserRecord {
        username: name.into(),
        display_name: name.to_uppercase(),
        password_hash: format!("hash-of-{name}"),
        disabled,
    }
}

#[tokio::test]
async fn users() {
    on_every_backend(async |store: &dyn Store| {
        store
            .replace_users(&[user("a", false), user("b", false)])
            .await
            .unwrap();
        store.upsert_user(&user("b", true)).await.unwrap();
        store.upsert_user(&user("c", false)).await.unwrap();
        let mut users = store.users().await.unwrap();
        users.sort_by(|x, y| x.username.cmp(&y.username));
        assert_eq!(users, [user("a", false), user("b", true), user("c", false)]);
        store.replace_users(&[user("d", false)]).await.unwrap();
        assert_eq!(store.users().await.unwrap(), [user("d", false)]);
    })
    .await;
}

#[tokio::test]
async fn signing_keys() {
    on_every_backend(async |store: &dyn Store| {
        let key = KeyRecord {
            kid: "k1".into(),
            encrypted_key: vec![1, 2, 3, 0, 255],
            created_at: 10,
            activates_at: 20,
            retired_at: None,
            removes_at: None,
        };
        store.insert_signing_key(&key).await.unwrap();
        assert!(
            store.insert_signing_key(&key).await.is_err(),
            "kids are unique"
        );
        let retired = KeyRecord {
            retired_at: Some(30),
            removes_at: Some(40),
            ..key.clone()
        };
        store.update_signing_key(&retired).await.unwrap();
        assert_eq!(store.signing_keys().await.unwrap(), [retired]);
        store.delete_signing_key("k1").await.unwrap();
        assert!(store.signing_keys().await.unwrap().is_empty());
        // A first key only while none is live; a next key only while none waits to sign.
        let first = |kid: &str| KeyRecord {
            kid: kid.into(),
            ..key.clone()
        };
        assert!(
            store
                .insert_signing_key_unless_made(&first("f1"), KeyMade::First)
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_signing_key_unless_made(&first("f2"), KeyMade::First)
                .await
                .unwrap()
        );
        let next = |kid: &str| KeyRecord {
            kid: kid.into(),
            activates_at: 1_000,
            ..key.clone()
        };
        let made = KeyMade::NextAfter(500);
        assert!(
            store
                .insert_signing_key_unless_made(&next("n1"), made)
                .await
                .unwrap()
        );
        assert!(
            !store
                .insert_signing_key_unless_made(&next("n2"), made)
                .await
                .unwrap()
        );
        // Once it signs (the time is past its activation), the one after it can be made.
        let after = KeyMade::NextAfter(1_000);
        assert!(
            store
                .insert_signing_key_unless_made(&next("n3"), after)
                .await
                .unwrap()
        );
        let kids: Vec<String> = store
            .signing_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert_eq!(kids, ["f1", "n1", "n3"]);
    })
    .await;
}

#[tokio::test]
async fn changes() {
    on_every_backend(async |store: &dyn Store| {
        assert_eq!(store.last_change().await.unwrap(), 0);
        let first = store.record_change(&Change::KeysChanged, 10).await.unwrap();
        let second = store
            .record_change(&Change::UsersChanged, 20)
            .await
            .unwrap();
        assert!(second > first && first > 0);
        assert_eq!(store.last_change().await.unwrap(), second);
        let after = store.changes_after(first, 10).await.unwrap();
        assert_eq!(after, [(second, Some(Change::UsersChanged))]);
        assert_eq!(store.delete_changes_before(15).await.unwrap(), 1);
    })
    .await;
}

fn code(client_id: &str, subject: &str) -> CodeRecord {
    CodeRecord {
        client_id: client_id.into(),
        subject: subject.into(),
        redirect_uri: "http://127.0.0.1/cb".into(),
        redirect_uri_named: true,
        code_challenge: "challenge".into(),
        scope: "mcp.read".into(),
        resource: "https://rs/mcp".into(),
        flow: "f".into(),
        expires_at: 1_000,
    }
}

#[tokio::test]
async fn codes() {
    on_every_backend(async |store: &dyn Store| {
        store
            .insert_code(&[1; 32], &code("c", "alice"))
            .await
            .unwrap();
        assert!(
            store
                .insert_code(&[1; 32], &code("c", "alice"))
                .await
                .is_err()
        );
        // Another client: nothing consumed.
        let other = store.take_code(&[1; 32], "d", "j0", 500).await.unwrap();
        assert_eq!(other, CodeTake::OtherClient);
        // Its client: taken once; then it is a redeemed code that names what it produced.
        let taken = store.take_code(&[1; 32], "c", "j1", 500).await.unwrap();
        assert_eq!(taken, CodeTake::Taken(code("c", "alice")));
        let again = store.take_code(&[1; 32], "c", "j2", 500).await.unwrap();
        assert_eq!(
            again,
            CodeTake::Redeemed {
                record: code("c", "alice"),
                jti: "j1".into()
            }
        );
        // Expired, unknown, deleted.
        assert_eq!(
            store.take_code(&[1; 32], "c", "j3", 1_000).await.unwrap(),
            CodeTake::Unknown
        );
        assert_eq!(
            store.take_code(&[9; 32], "c", "j3", 0).await.unwrap(),
            CodeTake::Unknown
        );
        store.delete_code(&[1; 32]).await.unwrap();
        assert_eq!(
            store.take_code(&[1; 32], "c", "j3", 0).await.unwrap(),
            CodeTake::Unknown
        );
        // Withdrawn: the unredeemed ones of the user for the client.
        store
            .insert_code(&[2; 32], &code("c", "alice"))
            .await
            .unwrap();
        store
            .insert_code(&[3; 32], &code("c", "bob"))
            .await
            .unwrap();
        store
            .insert_code(&[4; 32], &code("c", "alice"))
            .await
            .unwrap();
        store.take_code(&[4; 32], "c", "j4", 0).await.unwrap();
        assert_eq!(
            store
                .withdraw_codes(Some("alice"), Some("c"))
                .await
                .unwrap(),
            1
        );
        assert_eq!(store.withdraw_codes(None, Some("c")).await.unwrap(), 1);
        assert_eq!(store.delete_expired_codes(1_000).await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn login_failures() {
    on_every_backend(async |store: &dyn Store| {
        let (alice, bob) = ([1; 32], [2; 32]);
        for _ in 0..3 {
            let counted = store.count_login_attempt(&alice, 3, 100, 1_000).await;
            assert_eq!(counted.unwrap(), LoginAttempt::Counted);
        }
        let locked = store
            .count_login_attempt(&alice, 3, 100, 1_050)
            .await
            .unwrap();
        assert_eq!(locked, LoginAttempt::Locked { until: 1_100 });
        assert_eq!(
            store
                .count_login_attempt(&bob, 3, 100, 1_050)
                .await
                .unwrap(),
            LoginAttempt::Counted
        );
        // The window ends: counting starts afresh.
        let fresh = store
            .count_login_attempt(&alice, 3, 100, 1_100)
            .await
            .unwrap();
        assert_eq!(fresh, LoginAttempt::Counted);
        store.clear_login_failures(&alice).await.unwrap();
        assert_eq!(store.delete_expired_login_failures(1_200).await.unwrap(), 1);
    })
    .await;
}

mod batches;
mod races;
mod refresh_tokens;
mod sessions;
