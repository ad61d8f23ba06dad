//! `wait_for`: a caller waits for a name's next holder without a polling
//! loop; `Subscription::recv` reads changes without reaching into the
//! subscription; a `ProcessRegistry` converts into `Arc<dyn Registry>`.

use std::{sync::Arc, time::Duration};

use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    Namespace, ProcessHandle, Registry, RegistryEvent, Telemetry, Topic,
};
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

async fn spawn() -> ProcessHandle {
    ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap()
}

// A name held now is returned at once.
#[tokio::test]
async fn wait_for_a_held_name_returns_its_holder() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let p = spawn().await;
    registry
        .register(&ns, "db", p.clone(), json!(null))
        .unwrap();
    let found = tokio::time::timeout(
        Duration::from_secs(10),
        registry.wait_for(&ns, "db", Duration::from_secs(5)),
    )
    .await
    .expect("wait_for returned in time");
    assert_eq!(found.map(|h| h.id()), Some(p.id()));
    p.stop().await;
}

// A name registered later wakes the waiter with the new holder.
#[tokio::test]
async fn wait_for_wakes_on_the_next_registration() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let waiter = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.wait_for(&ns, "db", Duration::from_secs(30)).await })
    };
    // The waiter is subscribed once the topic has a subscriber; registering
    // before that is fine too (the snapshot has it).
    let p = spawn().await;
    registry
        .register(&ns, "other", p.clone(), json!(null))
        .unwrap();
    registry
        .register(&ns, "db", p.clone(), json!(null))
        .unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter woke in time")
        .unwrap();
    assert_eq!(found.map(|h| h.id()), Some(p.id()));
    p.stop().await;
}

// No holder within the timeout: `None`, on the paused clock.
#[tokio::test(start_paused = true)]
async fn wait_for_times_out_with_none() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    assert!(
        registry
            .wait_for(&ns, "nobody", Duration::from_secs(3))
            .await
            .is_none()
    );
}

// `Subscription::recv` delivers the changes after the snapshot.
#[tokio::test]
async fn a_subscription_receives_on_its_own() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let mut subscription = registry.subscribe_to(&ns, Topic::Name(Arc::from("db")));
    let p = spawn().await;
    registry
        .register(&ns, "db", p.clone(), json!(null))
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), subscription.recv())
        .await
        .expect("an event in time")
        .unwrap();
    assert!(matches!(event, RegistryEvent::Registered { ref name, .. } if &**name == "db"));
    p.stop().await;
}

// A registry handle converts into the contract `registered_as` takes.
#[tokio::test]
async fn a_registry_converts_into_the_contract() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let contract: Arc<dyn Registry> = (&registry).into();
    let p = spawn().await;
    contract
        .register(&ns, "db", p.clone(), json!(null))
        .unwrap();
    assert_eq!(registry.lookup(&ns, "db").map(|h| h.id()), Some(p.id()));
    p.stop().await;
}
