//! Subscriptions: bounded (a slow subscriber is told it lagged), filtered
//! at the source by topic, and atomic with their snapshot.

use std::collections::BTreeMap;

use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    Namespace, ProcessHandle, RecvError, RegistryEvent, Telemetry, Topic, TryRecvError,
};
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

async fn spawn() -> ProcessHandle {
    ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap()
}

// A subscriber that falls a full buffer behind gets every event buffered
// before, then `Lagged`: never a silent gap. The registry is not held up.
#[tokio::test]
async fn a_slow_subscriber_is_told_it_lagged() {
    let registry = ProcessRegistry::with_event_buffer(Telemetry::disabled(), 2);
    let ns = Namespace::unique_test();
    let mut slow = registry.subscribe(&ns);
    let p = spawn().await;
    for name in ["a", "b", "c", "d"] {
        registry
            .register(&ns, name, p.clone(), json!(null))
            .unwrap();
    }
    for name in ["a", "b"] {
        match slow.recv().await {
            Ok(RegistryEvent::Registered { name: n, .. }) => assert_eq!(&*n, name),
            other => panic!("expected {name}, got {other:?}"),
        }
    }
    assert_eq!(slow.recv().await, Err(RecvError::Lagged));
    assert_eq!(slow.try_recv(), Err(TryRecvError::Lagged));
    // A fresh subscription starts from a snapshot.
    let again = registry.subscribe_to(&ns, Topic::All);
    assert_eq!(again.snapshot.names.len(), 4);
    p.stop().await;
}

// A subscriber to one name receives that name's events only, so other
// names neither wake it nor fill its buffer.
#[tokio::test]
async fn a_name_subscriber_receives_only_its_name() {
    let registry = ProcessRegistry::with_event_buffer(Telemetry::disabled(), 2);
    let ns = Namespace::unique_test();
    let mut sub = registry.subscribe_to(&ns, Topic::Name("x".into()));
    assert!(sub.snapshot.names.is_empty());
    let p = spawn().await;
    for i in 0..10 {
        registry
            .register(&ns, &format!("other-{i}"), p.clone(), json!(null))
            .unwrap();
        registry.join(&ns, "x", p.clone()).unwrap(); // a group, not the name
    }
    assert_eq!(sub.events.try_recv(), Err(TryRecvError::Empty));
    registry.register(&ns, "x", p.clone(), json!(null)).unwrap();
    match sub.events.recv().await {
        Ok(RegistryEvent::Registered { name, handle, .. }) => {
            assert_eq!(&*name, "x");
            assert_eq!(handle, p);
        }
        other => panic!("expected x registered, got {other:?}"),
    }
    let group = registry.subscribe_to(&ns, Topic::Group("x".into()));
    assert_eq!(group.snapshot.groups, [("x".into(), vec![p.clone(); 10])]);
    p.stop().await;
}

/// Names as a subscriber sees them: snapshot, then events applied.
fn apply(names: &mut BTreeMap<String, u64>, event: RegistryEvent) {
    match event {
        RegistryEvent::Registered { name, handle, .. } => {
            let previous = names.insert(name.to_string(), handle.id().sequence_id());
            assert!(
                previous.is_none() || previous == Some(handle.id().sequence_id()),
                "{name} registered twice"
            );
        }
        RegistryEvent::Unregistered { name, .. } => {
            assert!(names.remove(&*name).is_some(), "{name} freed but not held");
        }
        _ => {}
    }
}

// Subscribing while writers run: the snapshot plus the events after it
// give exactly the registry's state, with no event lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_atomic_with_its_subscription() {
    let registry = ProcessRegistry::with_event_buffer(Telemetry::disabled(), 100_000);
    let ns = Namespace::unique_test();
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(spawn().await);
    }
    let writers: Vec<_> = handles
        .iter()
        .cloned()
        .enumerate()
        .map(|(w, handle)| {
            let registry = registry.clone();
            tokio::spawn(async move {
                for i in 0..2_000 {
                    let name = format!("n{}", (i * 7 + w) % 50);
                    if registry
                        .register(&ns, &name, handle.clone(), json!(null))
                        .is_err()
                    {
                        let _ = registry.unregister(&ns, &name);
                    }
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    let mut subscriptions = Vec::new();
    for _ in 0..20 {
        subscriptions.push(registry.subscribe_to(&ns, Topic::All));
        tokio::task::yield_now().await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let expected: BTreeMap<String, u64> = registry
        .list(&ns)
        .into_iter()
        .map(|(name, handle, _)| (name.to_string(), handle.id().sequence_id()))
        .collect();
    for mut subscription in subscriptions {
        let mut names: BTreeMap<String, u64> = subscription
            .snapshot
            .names
            .iter()
            .map(|(name, handle, _)| (name.to_string(), handle.id().sequence_id()))
            .collect();
        loop {
            match subscription.events.try_recv() {
                Ok(event) => apply(&mut names, event),
                Err(TryRecvError::Empty) => break,
                Err(err) => panic!("subscription ended: {err}"),
            }
        }
        assert_eq!(names, expected);
    }
    for handle in handles {
        handle.stop().await;
    }
}
