//! Subscribers: events of a namespace, in order; a subscriber that stops is
//! dropped without harm.

use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    Namespace, ProcessHandle, RegistryEvent, Telemetry, TryRecvError, WeakProcessHandle,
};
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

async fn spawn() -> ProcessHandle {
    ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap()
}

/// An event in short: kind, key, handle.
fn short(event: &RegistryEvent) -> (&'static str, String, WeakProcessHandle) {
    match event {
        RegistryEvent::Registered { name, handle, .. } => {
            ("registered", name.to_string(), handle.clone())
        }
        RegistryEvent::Unregistered { name, handle, .. } => {
            ("unregistered", name.to_string(), handle.clone())
        }
        RegistryEvent::Joined { group, handle } => ("joined", group.to_string(), handle.clone()),
        RegistryEvent::Left { group, handle, .. } => ("left", group.to_string(), handle.clone()),
        other => panic!("unknown event {other:?}"),
    }
}

// Register, join, leave and unregister events arrive in the order applied,
// with the metadata registered; other namespaces' events do not arrive.
#[tokio::test]
async fn events_arrive_in_order() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let other = Namespace::unique_test();
    let mut events = registry.subscribe(&ns);
    let (p, q) = (spawn().await, spawn().await);

    registry
        .register(&other, "elsewhere", p.clone(), json!(null))
        .unwrap();
    registry
        .register(&ns, "a", p.clone(), json!({"k": 1}))
        .unwrap();
    registry.join(&ns, "g", q.clone()).unwrap();
    registry.join(&ns, "g", p.clone()).unwrap();
    registry.unregister(&ns, "a").unwrap();
    registry.leave(&ns, "g", &q).unwrap();
    registry.register(&ns, "a", q.clone(), json!(null)).unwrap();

    let expected = [
        ("registered", "a", &p),
        ("joined", "g", &q),
        ("joined", "g", &p),
        ("unregistered", "a", &p),
        ("left", "g", &q),
        ("registered", "a", &q),
    ];
    for (kind, key, handle) in expected {
        let event = events.recv().await.unwrap();
        assert_eq!(short(&event), (kind, key.to_owned(), handle.downgrade()));
        match event {
            RegistryEvent::Registered {
                metadata, handle, ..
            } if handle == p => {
                assert_eq!(metadata, json!({"k": 1}))
            }
            RegistryEvent::Unregistered { exit, .. } | RegistryEvent::Left { exit, .. } => {
                assert_eq!(exit, None, "by a call")
            }
            _ => {}
        }
    }
    assert!(
        events.try_recv().is_err(),
        "nothing else, nothing from elsewhere"
    );
    p.stop().await;
    q.stop().await;
}

// Events from many concurrent writers of one name stay consistent: each
// Unregistered follows the Registered of the same holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_one_name_keep_order() {
    // Room for every event: up to 1,600 here.
    let registry = ProcessRegistry::with_event_buffer(Telemetry::disabled(), 2048);
    let ns = Namespace::unique_test();
    let mut events = registry.subscribe(&ns);
    let mut handles = Vec::new();
    for _ in 0..4 {
        handles.push(spawn().await);
    }
    let tasks: Vec<_> = handles
        .iter()
        .cloned()
        .map(|handle| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut wins = 0;
                for _ in 0..200 {
                    if registry
                        .register(&ns, "hot", handle.clone(), json!(null))
                        .is_ok()
                    {
                        wins += 1;
                        let _ = registry.unregister(&ns, "hot");
                    }
                    tokio::task::yield_now().await;
                }
                wins
            })
        })
        .collect();
    let mut wins = 0;
    for task in tasks {
        wins += task.await.unwrap();
    }
    assert!(wins > 0);
    let mut holder: Option<WeakProcessHandle> = None;
    let mut registered = 0;
    loop {
        let event = match events.try_recv() {
            Ok(event) => event,
            Err(TryRecvError::Empty) => break,
            Err(err) => panic!("subscription ended: {err}"),
        };
        match event {
            RegistryEvent::Registered { handle, .. } => {
                assert_eq!(holder, None, "registered while held");
                holder = Some(handle);
                registered += 1;
            }
            RegistryEvent::Unregistered { handle, .. } => {
                assert_eq!(
                    holder.take(),
                    Some(handle),
                    "unregistered by another holder"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(registered, wins);
    for handle in handles {
        handle.stop().await;
    }
}

// A subscriber that stops (its receiver dropped, here with the task that
// owned it) is dropped; the registry and other subscribers go on.
#[tokio::test]
async fn stopped_subscriber_is_dropped_without_harm() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let mut kept = registry.subscribe(&ns);
    let gone = registry.subscribe(&ns);
    let subscriber = tokio::spawn(async move {
        let mut gone = gone;
        gone.recv().await.ok().map(|event| short(&event).0)
    });

    let p = spawn().await;
    registry.register(&ns, "a", p.clone(), json!(null)).unwrap();
    assert_eq!(subscriber.await.unwrap(), Some("registered")); // its task ends, dropping it
    registry.register(&ns, "b", p.clone(), json!(null)).unwrap();
    registry.unregister(&ns, "a").unwrap();
    assert_eq!(registry.lookup(&ns, "b"), Some(p.clone()));

    let kinds: Vec<_> = (0..3).map(|_| short(&kept.try_recv().unwrap()).0).collect();
    assert_eq!(kinds, ["registered", "registered", "unregistered"]);
    p.stop().await;
}
