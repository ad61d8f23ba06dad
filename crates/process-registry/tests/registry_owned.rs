//! Owned registrations (`register_owned`): released by their owner with
//! `unregister_if`, not in the per-process index (no cleanup task, no
//! record), metadata shared by many names, and the liveness rules of every
//! registration meanwhile.

use std::{sync::Arc, time::Duration};

use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    ExitReason, Namespace, ProcessHandle, Registry, RegistryEvent, Telemetry,
};
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

async fn spawn() -> ProcessHandle {
    ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap()
}

/// Bounds a wait that must end: a failure, not a sleep.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen"))
}

#[tokio::test]
async fn an_owned_name_is_found_with_its_shared_metadata() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let kind = Arc::new(json!({"kind": "counter"}));
    let (a, b) = (spawn().await, spawn().await);
    registry
        .register_owned(&ns, "a", a.clone(), kind.clone())
        .unwrap();
    registry
        .register_owned(&ns, "b", b.clone(), kind.clone())
        .unwrap();

    // One object for both names, not a copy each.
    assert_eq!(Arc::strong_count(&kind), 3);
    assert_eq!(
        registry.lookup_with_metadata(&ns, "a"),
        Some((a.clone(), json!({"kind": "counter"})))
    );
    // Not in the per-process index (no record, no task), yet listed
    // among the names the process holds.
    assert_eq!(registry.keys(&ns, &b), [Arc::<str>::from("b")]);
    assert_eq!(registry.tracked_processes(), 0);
    assert_eq!(registry.count(&ns), 2);
    let found = registry.find(&ns, |_, meta| meta["kind"] == "counter");
    assert_eq!(found.len(), 2);

    // Through the contract, as the agent layer registers.
    let contract: Arc<dyn Registry> = Arc::new(registry.clone());
    let c = spawn().await;
    contract
        .register_owned(&ns, "c", c.clone(), kind.clone())
        .unwrap();
    assert_eq!(contract.lookup(&ns, "c"), Some(c.clone()));
    // Shared through the contract too: one more reference, not a copy.
    assert_eq!(Arc::strong_count(&kind), 4);
    assert!(contract.unregister_if(&ns, "c", &c));
    assert_eq!(contract.lookup(&ns, "c"), None);
    // (The entry removed is dropped once no lookup can still read it:
    // the map reclaims by epochs, so the count drops back later.)
}

#[tokio::test]
async fn bad_metadata_is_refused_and_nothing_is_registered() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let a = spawn().await;
    let err = registry
        .register_owned(&ns, "a", a.clone(), Arc::new(json!(42)))
        .unwrap_err();
    assert!(err.to_string().contains("invalid metadata"), "{err}");
    assert_eq!(registry.lookup(&ns, "a"), None);
    assert_eq!(registry.tracked_processes(), 0);
}

#[tokio::test]
async fn a_stopped_owner_is_never_found_and_its_name_goes_when_released() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let meta = Arc::new(json!(null));
    let a = spawn().await;
    registry
        .register_owned(&ns, "a", a.clone(), meta.clone())
        .unwrap();
    let mut events = registry.subscribe(&ns);

    assert_eq!(a.stop().await, ExitReason::Shutdown(None));
    // Not watched: the name stays until its owner releases it, but a
    // stopped holder is never returned and its name is free.
    assert_eq!(registry.lookup(&ns, "a"), None);
    assert_eq!(registry.count(&ns), 0);
    assert!(registry.unregister_if(&ns, "a", &a));
    assert!(!registry.unregister_if(&ns, "a", &a));
    let event = within("the release", events.recv()).await.unwrap();
    assert!(
        matches!(&event, RegistryEvent::Unregistered { name, exit: Some(ExitReason::Shutdown(None)), .. } if &**name == "a"),
        "{event:?}"
    );

    // Taken over before its release: the release frees nothing.
    let (b, c) = (spawn().await, spawn().await);
    registry
        .register_owned(&ns, "b", b.clone(), meta.clone())
        .unwrap();
    b.stop().await;
    registry
        .register_owned(&ns, "b", c.clone(), meta.clone())
        .unwrap();
    assert!(!registry.unregister_if(&ns, "b", &b));
    assert_eq!(registry.lookup(&ns, "b"), Some(c.clone()));
    assert!(registry.unregister_if(&ns, "b", &c));
    assert_eq!(registry.lookup(&ns, "b"), None);
}

#[tokio::test]
async fn a_watched_key_of_the_same_process_is_cleaned_up_and_the_owned_name_left_to_its_owner() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let a = spawn().await;
    registry
        .register_owned(&ns, "owned", a.clone(), Arc::new(json!(null)))
        .unwrap();
    registry.join(&ns, "group", a.clone()).unwrap();
    let mut events = registry.subscribe(&ns);

    a.stop().await;
    // The group's watcher removes the membership; the name is its owner's.
    let left = within("the cleanup", events.recv()).await.unwrap();
    assert!(
        matches!(&left, RegistryEvent::Left { group, .. } if &**group == "group"),
        "{left:?}"
    );
    assert_eq!(registry.tracked_processes(), 0);
    assert_eq!(registry.lookup(&ns, "owned"), None);
    assert!(registry.unregister_if(&ns, "owned", &a));
    let released = within("the release", events.recv()).await.unwrap();
    assert!(
        matches!(&released, RegistryEvent::Unregistered { name, .. } if &**name == "owned"),
        "{released:?}"
    );
}

#[tokio::test]
async fn an_owned_name_registered_again_as_a_watched_one_is_cleaned_up_after() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let a = spawn().await;
    registry
        .register_owned(&ns, "a", a.clone(), Arc::new(json!(null)))
        .unwrap();
    registry
        .register(&ns, "a", a.clone(), json!({"again": true}))
        .unwrap();
    assert_eq!(registry.keys(&ns, &a), vec![Arc::<str>::from("a")]);
    let mut events = registry.subscribe(&ns);
    a.stop().await;
    let event = within("the cleanup", events.recv()).await.unwrap();
    assert!(
        matches!(&event, RegistryEvent::Unregistered { name, exit: Some(_), .. } if &**name == "a"),
        "{event:?}"
    );
    assert_eq!(registry.tracked_processes(), 0);
}

#[tokio::test]
async fn keys_lists_owned_and_watched_names_together_and_sorted() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let meta = Arc::new(json!(null));
    let (a, b) = (spawn().await, spawn().await);
    registry
        .register_owned(&ns, "z", a.clone(), meta.clone())
        .unwrap();
    registry.register(&ns, "m", a.clone(), json!(null)).unwrap();
    registry
        .register_owned(&ns, "c", a.clone(), meta.clone())
        .unwrap();
    registry
        .register_owned(&ns, "b", b.clone(), meta.clone())
        .unwrap();
    let names = |keys: Vec<Arc<str>>| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(names(registry.keys(&ns, &a)), ["c", "m", "z"]);

    // New metadata leaves the name listed.
    registry.update_metadata(&ns, "z", json!({"v": 2})).unwrap();
    assert_eq!(names(registry.keys(&ns, &a)), ["c", "m", "z"]);
    assert_eq!(registry.metadata(&ns, "z"), Some(json!({"v": 2})));

    // Released names go; another namespace knows none of them.
    assert!(registry.unregister_if(&ns, "c", &a));
    assert_eq!(names(registry.keys(&ns, &a)), ["m", "z"]);
    assert!(registry.keys(&Namespace::unique_test(), &a).is_empty());
    a.stop().await;
    assert!(registry.keys(&ns, &a).is_empty(), "not live: no keys");
    assert_eq!(names(registry.keys(&ns, &b)), ["b"]);
}
