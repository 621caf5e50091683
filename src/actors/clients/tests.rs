//! Unit tests of the `ClientRegistry` actor: its bound, reaping (by id and by age), the cache over
//! the store, and group commit.

use super::*;
use crate::oauth::client::{ApplicationType, GrantTypes, TokenEndpointAuthMethod};
use kameo::actor::Spawn;
use kameo::error::SendError;

/// A registry over `store` holding at most `max_clients`, `cached` of them in memory, reaping
/// unused ones after an hour.
fn registry_over(
    store: &SharedStore,
    max_clients: usize,
    cached: usize,
) -> ActorRef<ClientRegistry> {
    ClientRegistry::spawn(ClientRegistryArgs {
        max_clients,
        cached,
        unused_ttl: Duration::from_secs(3600),
        store: Arc::clone(store),
        preregistered: Vec::new(),
    })
}

fn new_client() -> NewClient {
    NewClient::public_loopback()
}

#[tokio::test(start_paused = true)]
async fn bounded_and_unused_clients_are_reaped() {
    let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
    let registry = registry_over(&store, 3, 10);
    let used = registry.ask(Register(new_client())).await.unwrap();
    let _unused = registry.ask(Register(new_client())).await.unwrap();
    let _third = registry.ask(Register(new_client())).await.unwrap();
    assert!(registry.ask(Register(new_client())).await.is_err(), "full");
    registry
        .ask(MarkUsed {
            client_id: used.client.client_id.to_string(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3601)).await;
    tokio::task::yield_now().await;
    assert_eq!(registry.ask(CountClients).await.unwrap(), 1);
    // Reaped clients are gone from the store too; the used one is kept there.
    let stored = store.clients().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].client.client_id, used.client.client_id);
    assert!(stored[0].used);
    let kept = registry
        .ask(LookupClient {
            client_id: used.client.client_id.to_string(),
        })
        .await
        .unwrap();
    assert!(kept.is_some());
    assert!(
        registry.ask(Register(new_client())).await.is_ok(),
        "room again"
    );
}

fn stored(id: &str, issued_at: u64, used: bool) -> ClientRecord {
    ClientRecord {
        client: Arc::new(Client {
            issued_at,
            ..Client::from_metadata(id, new_client(), ClientKind::Registered)
        }),
        used,
    }
}

/// The registry holds the most recently used clients only, reads the others from the store,
/// and reaps the store's old never-used clients, which it never held, by age.
#[tokio::test(start_paused = true)]
async fn a_bounded_cache_over_the_store_that_reaps_by_age() {
    let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
    let two_hours_ago = unix_now() - 7200;
    for i in 0..5 {
        store
            .insert_client(&stored(&format!("old-{i}"), two_hours_ago, false))
            .await
            .unwrap();
    }
    for i in 0..3 {
        store
            .insert_client(&stored(&format!("used-{i}"), two_hours_ago, true))
            .await
            .unwrap();
    }
    store
        .insert_client(&stored("young", unix_now(), false))
        .await
        .unwrap();
    let registry = registry_over(&store, 100, 2);
    assert_eq!(registry.ask(CountClients).await.unwrap(), 9);
    assert_eq!(
        registry.ask(CountCachedClients).await.unwrap(),
        0,
        "nothing loaded"
    );
    for i in 0..3 {
        let found = registry
            .ask(LookupClient {
                client_id: format!("used-{i}"),
            })
            .await
            .unwrap();
        assert!(found.is_some(), "read from the store");
    }
    assert_eq!(
        registry.ask(CountCachedClients).await.unwrap(),
        2,
        "bounded"
    );
    // The old never-used clients are reaped from the store in the first second; the young
    // one and the used ones stay.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::yield_now().await;
    assert_eq!(registry.ask(CountClients).await.unwrap(), 4);
    let mut left: Vec<String> = store
        .clients()
        .await
        .unwrap()
        .iter()
        .map(|r| r.client.client_id.to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["used-0", "used-1", "used-2", "young"]);
    let gone = registry
        .ask(LookupClient {
            client_id: "old-0".into(),
        })
        .await
        .unwrap();
    assert!(gone.is_none());
    // A client evicted from the cache is still marked used in the store.
    registry
        .ask(MarkUsed {
            client_id: "young".into(),
        })
        .await
        .unwrap();
    assert!(store.client("young").await.unwrap().unwrap().used);
}

/// Registrations that arrive together are committed together; each is answered only once
/// committed, the bound holds exactly, and a failed commit acknowledges none.
#[tokio::test]
async fn concurrent_registrations_are_committed_in_groups_within_the_bound() {
    let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
    let registry = registry_over(&store, 50, 10);
    let asks = (0..80).map(|_| async { registry.ask(Register(new_client())).await });
    let answers = futures::future::join_all(asks).await;
    let registered: Vec<String> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|r| r.client.client_id.to_string())
        .collect();
    assert_eq!(registered.len(), 50, "exactly up to the bound");
    let full = answers
        .iter()
        .filter(|a| matches!(a, Err(SendError::HandlerError(RegisterError::Full))))
        .count();
    assert_eq!(full, 30);
    let stored: Vec<String> = store
        .clients()
        .await
        .unwrap()
        .iter()
        .map(|r| r.client.client_id.to_string())
        .collect();
    assert_eq!(stored.len(), 50);
    assert!(registered.iter().all(|id| stored.contains(id)));
    assert_eq!(registry.ask(CountClients).await.unwrap(), 50);

    // A store that cannot commit: every registration of the group is refused.
    let store: SharedStore = Arc::new(crate::store::MemoryStore::new());
    let registry = registry_over(&store, 50, 10);
    store.close().await;
    let failed = futures::future::join_all(
        (0..5).map(|_| async { registry.ask(Register(new_client())).await }),
    )
    .await;
    assert!(
        failed
            .iter()
            .all(|a| matches!(a, Err(SendError::HandlerError(RegisterError::Store(_))))),
        "refused, not acknowledged"
    );
    assert_eq!(registry.ask(CountClients).await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn configured_clients_are_never_reaped() {
    let configured = Arc::new(Client {
        client_id: "configured".into(),
        secret: None,
        application_type: ApplicationType::Native,
        kind: ClientKind::Configured,
        client_name: Some("Configured".into()),
        redirect_uris: Box::new(["http://127.0.0.1/cb".into()]),
        grant_types: GrantTypes::AUTHORIZATION_CODE,
        token_endpoint_auth_method: TokenEndpointAuthMethod::None,
        scope: None,
        client_uri: None,
        issued_at: 0,
    });
    let registry = ClientRegistry::spawn(ClientRegistryArgs {
        max_clients: 10,
        cached: 10,
        unused_ttl: Duration::from_secs(60),
        store: Arc::new(crate::store::MemoryStore::new()),
        preregistered: vec![configured],
    });
    let _unused = registry.ask(Register(new_client())).await.unwrap();
    tokio::time::sleep(Duration::from_secs(61)).await;
    tokio::task::yield_now().await;
    assert_eq!(registry.ask(CountClients).await.unwrap(), 1);
    let kept = registry
        .ask(LookupClient {
            client_id: "configured".into(),
        })
        .await
        .unwrap();
    assert!(kept.is_some_and(|c| c.kind == ClientKind::Configured));
}
