//! Unique names: namespaces, registration rules, liveness, metadata.

use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    ErrorCode, ExitReason, Namespace, ProcessHandle, Registry, RegistryError, RegistryEvent,
    Telemetry,
};
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

async fn spawn() -> ProcessHandle {
    ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap()
}

fn registry() -> ProcessRegistry {
    ProcessRegistry::new(Telemetry::disabled())
}

// The same name in two namespaces never collides.
#[tokio::test]
async fn same_name_in_two_namespaces() {
    let registry = registry();
    let (a, b) = (Namespace::unique_test(), Namespace::unique_test());
    let (p, q) = (spawn().await, spawn().await);
    registry.register(&a, "db", p.clone(), json!(null)).unwrap();
    registry.register(&b, "db", q.clone(), json!(null)).unwrap();
    assert_eq!(registry.lookup(&a, "db"), Some(p.clone()));
    assert_eq!(registry.lookup(&b, "db"), Some(q.clone()));
    assert_eq!(registry.lookup(&Namespace::Production, "db"), None);
    assert_eq!(registry.count(&a), 1);
    p.stop().await;
    q.stop().await;
}

// A second process gets AlreadyRegistered with the holder; the same one
// re-registers and replaces its metadata.
#[tokio::test]
async fn unique_names_and_reregistration() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let (p, q) = (spawn().await, spawn().await);
    registry
        .register(&ns, "x", p.clone(), json!({"v": 1}))
        .unwrap();
    match registry.register(&ns, "x", q.clone(), json!(null)) {
        Err(RegistryError::AlreadyRegistered { name, holder }) => {
            assert_eq!(&*name, "x");
            assert_eq!(holder, p);
        }
        other => panic!("expected AlreadyRegistered, got {other:?}"),
    }
    registry
        .register(&ns, "x", p.clone(), json!({"v": 2}))
        .unwrap();
    assert_eq!(registry.metadata(&ns, "x"), Some(json!({"v": 2})));
    assert_eq!(registry.count(&ns), 1);
    p.stop().await;
    q.stop().await;
}

// Metadata must be an object or null; a dead handle cannot register.
#[tokio::test]
async fn invalid_metadata_and_dead_handle_are_typed_errors() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let p = spawn().await;
    for bad in [json!(1), json!("s"), json!([1]), json!(true)] {
        let err = registry.register(&ns, "x", p.clone(), bad).unwrap_err();
        assert!(matches!(err, RegistryError::InvalidMetadata(_)), "{err}");
        assert_eq!(err.code(), 1302);
    }
    assert_eq!(registry.lookup(&ns, "x"), None);
    p.stop().await;
    let err = registry
        .register(&ns, "x", p.clone(), json!(null))
        .unwrap_err();
    assert!(matches!(err, RegistryError::NotAlive));
}

// A holder that stops is gone from lookups at once, and its name can be
// registered right after it died, whether its cleanup task has run or not
// (`stopping_holder_is_not_live` covers the case where it cannot have).
#[tokio::test]
async fn name_of_dead_holder_is_free_at_once() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let mut events = registry.subscribe(&ns);
    let (p, q) = (spawn().await, spawn().await);
    registry.register(&ns, "x", p.clone(), json!(null)).unwrap();
    p.stop().await;
    assert_eq!(registry.lookup(&ns, "x"), None);
    assert_eq!(registry.count(&ns), 0);
    registry.register(&ns, "x", q.clone(), json!(null)).unwrap();
    assert_eq!(registry.lookup(&ns, "x"), Some(q.clone()));

    assert!(
        matches!(events.recv().await, Ok(RegistryEvent::Registered { handle, .. }) if handle == p)
    );
    match events.recv().await {
        Ok(RegistryEvent::Unregistered { handle, exit, .. }) => {
            assert_eq!(handle, p);
            assert_eq!(exit, Some(ExitReason::Shutdown(None)));
        }
        other => panic!("expected Unregistered, got {other:?}"),
    }
    assert!(
        matches!(events.recv().await, Ok(RegistryEvent::Registered { handle, .. }) if handle == q)
    );
    q.stop().await;
}

// A holder whose stop was requested but who has not stopped yet is not
// live: lookups skip it and its name is free.
#[tokio::test]
async fn stopping_holder_is_not_live() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let (p, q) = (spawn().await, spawn().await);
    registry.register(&ns, "x", p.clone(), json!(null)).unwrap();
    p.request_stop().await;
    assert!(!p.is_alive());
    assert_eq!(registry.lookup(&ns, "x"), None);
    registry.register(&ns, "x", q.clone(), json!(null)).unwrap();
    p.exited().await;
    assert_eq!(registry.lookup(&ns, "x"), Some(q.clone()));
    q.stop().await;
}

// The cleanup task removes the names of a stopped process and tells
// subscribers with the exit reason.
#[tokio::test]
async fn stopped_holder_is_removed_with_its_exit_reason() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let mut events = registry.subscribe(&ns);
    let p = spawn().await;
    registry.register(&ns, "a", p.clone(), json!(null)).unwrap();
    registry.register(&ns, "b", p.clone(), json!(null)).unwrap();
    assert_eq!(registry.tracked_processes(), 1);
    p.kill();
    let mut gone = Vec::new();
    while gone.len() < 2 {
        match events.recv().await.unwrap() {
            RegistryEvent::Unregistered { name, exit, .. } => {
                assert_eq!(exit, Some(ExitReason::Killed));
                gone.push(name.to_string());
            }
            RegistryEvent::Registered { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    gone.sort();
    assert_eq!(gone, ["a", "b"]);
    assert_eq!(registry.tracked_processes(), 0);
    // Physically gone: unregister finds nothing.
    assert!(matches!(
        registry.unregister(&ns, "a"),
        Err(RegistryError::NotRegistered(_))
    ));
}

// Unregister returns the former holder; a second one is a typed error.
#[tokio::test]
async fn unregister_returns_the_holder() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let p = spawn().await;
    registry.register(&ns, "x", p.clone(), json!(null)).unwrap();
    assert_eq!(registry.unregister(&ns, "x").unwrap(), p);
    let err = registry.unregister(&ns, "x").unwrap_err();
    assert!(matches!(&err, RegistryError::NotRegistered(name) if &**name == "x"));
    assert_eq!(err.code(), 1303);
    assert_eq!(registry.tracked_processes(), 0, "index entry released");
    p.stop().await;
}

// get, update, lookup_with_metadata, find, list, count.
#[tokio::test]
async fn metadata_queries() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let (p, q) = (spawn().await, spawn().await);
    registry
        .register(&ns, "a", p.clone(), json!({"role": "db"}))
        .unwrap();
    registry
        .register(&ns, "b", q.clone(), json!({"role": "cache"}))
        .unwrap();
    registry.register(&ns, "c", q.clone(), json!(null)).unwrap();

    assert_eq!(
        registry.lookup_with_metadata(&ns, "a"),
        Some((p.clone(), json!({"role": "db"})))
    );
    registry
        .update_metadata(&ns, "a", json!({"role": "primary"}))
        .unwrap();
    assert_eq!(
        registry.metadata(&ns, "a"),
        Some(json!({"role": "primary"}))
    );
    assert!(matches!(
        registry.update_metadata(&ns, "a", json!(3)),
        Err(RegistryError::InvalidMetadata(_))
    ));
    assert!(matches!(
        registry.update_metadata(&ns, "zz", json!(null)),
        Err(RegistryError::NotRegistered(_))
    ));

    let cache = registry.find(&ns, |_, m| m["role"] == "cache");
    assert_eq!(cache.len(), 1);
    assert_eq!(&*cache[0].0, "b");
    assert_eq!(cache[0].1, q);

    let names: Vec<_> = registry
        .list(&ns)
        .into_iter()
        .map(|(n, ..)| n.to_string())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(registry.count(&ns), 3);

    q.stop().await;
    let names: Vec<_> = registry
        .list(&ns)
        .into_iter()
        .map(|(n, ..)| n.to_string())
        .collect();
    assert_eq!(
        names,
        ["a"],
        "a stopped holder leaves list and count at once"
    );
    assert_eq!(registry.count(&ns), 1);
    assert_eq!(registry.metadata(&ns, "b"), None);
    p.stop().await;
}

// The registry is usable as the contract, behind an Arc<dyn Registry>.
#[tokio::test]
async fn usable_as_dyn_registry() {
    let registry: std::sync::Arc<dyn Registry> = std::sync::Arc::new(registry());
    let ns = Namespace::unique_test();
    let p = spawn().await;
    registry.register(&ns, "x", p.clone(), json!(null)).unwrap();
    assert_eq!(registry.lookup(&ns, "x"), Some(p.clone()));
    registry.join(&ns, "g", p.clone()).unwrap();
    assert_eq!(registry.members(&ns, "g"), vec![p.clone()]);
    p.stop().await;
}

// Handles and the registry can be shared across tasks.
#[test]
fn public_types_are_send_and_sync() {
    fn is<T: Send + Sync>() {}
    is::<ProcessRegistry>();
    is::<mabeam_process_registry::ServiceRegistry>();
    is::<mabeam_process_registry::Stopper>();
    is::<mabeam_supervision_core::HealthCheck>();
}

// unregister_if frees a name only for the handle that holds it: a stale
// incarnation cannot free its successor's name.
#[tokio::test]
async fn unregister_if_frees_only_for_its_holder() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let mut events = registry.subscribe(&ns);
    let (old, new) = (spawn().await, spawn().await);
    registry
        .register(&ns, "agent", old.clone(), json!(null))
        .unwrap();
    events.recv().await.unwrap();

    old.stop().await;
    // The old incarnation is gone; the new one takes the name over.
    registry
        .register(&ns, "agent", new.clone(), json!(null))
        .unwrap();
    assert!(!registry.unregister_if(&ns, "agent", &old));
    assert_eq!(registry.lookup(&ns, "agent"), Some(new.clone()));

    assert!(Registry::unregister_if(&registry, &ns, "agent", &new));
    assert_eq!(registry.lookup(&ns, "agent"), None);
    assert!(!registry.unregister_if(&ns, "agent", &new));
    assert!(!registry.unregister_if(&Namespace::unique_test(), "agent", &new));
    new.stop().await;
}

// The borrowed lookups (`with_lookup`, `whereis`) answer as `lookup` does:
// the live holder with its metadata, nothing for a free name or a holder
// that is stopping; through the contract too.
#[tokio::test]
async fn borrowed_lookups_answer_as_lookup() {
    let registry = registry();
    let ns = Namespace::unique_test();
    let (p, q) = (spawn().await, spawn().await);
    registry
        .register(&ns, "x", p.clone(), json!({"v": 1}))
        .unwrap();
    let seen = registry.with_lookup(&ns, "x", |holder, metadata| {
        (holder.id(), holder.is_alive(), metadata.clone())
    });
    assert_eq!(seen, Some((p.id(), true, json!({"v": 1}))));
    assert_eq!(registry.whereis(&ns, "x"), Some(p.id()));
    assert_eq!(registry.whereis(&ns, "y"), None);
    assert_eq!(registry.whereis(&Namespace::unique_test(), "x"), None);

    let dynamic: std::sync::Arc<dyn Registry> = registry.clone().into();
    let mut ids = Vec::new();
    assert!(dynamic.with_lookup(&ns, "x", &mut |holder, _| ids.push(holder.id())));
    assert!(!dynamic.with_lookup(&ns, "y", &mut |holder, _| ids.push(holder.id())));
    assert_eq!(ids, [p.id()]);
    assert_eq!(dynamic.whereis(&ns, "x"), Some(p.id()));

    // Metadata replaced: the next borrowed lookup sees the new value.
    registry.update_metadata(&ns, "x", json!({"v": 2})).unwrap();
    assert_eq!(
        registry.with_lookup(&ns, "x", |_, metadata| metadata.clone()),
        Some(json!({"v": 2}))
    );

    // A holder that is stopping is not found, and its name is free.
    p.stop().await;
    assert_eq!(registry.whereis(&ns, "x"), None);
    assert_eq!(registry.with_lookup(&ns, "x", |_, _| ()), None);
    registry.register(&ns, "x", q.clone(), json!(null)).unwrap();
    assert_eq!(registry.whereis(&ns, "x"), Some(q.id()));
    q.stop().await;
}

// A registry made with room for its names (`with_capacity`) keeps the
// same rules in the production namespace, and grows past the room made.
#[tokio::test]
async fn with_capacity_registers_past_its_room_as_new_does() {
    let registry = ProcessRegistry::with_capacity(Telemetry::disabled(), 4);
    let prod = Namespace::Production;
    let holders: Vec<ProcessHandle> = futures::future::join_all((0..10).map(|_| spawn())).await;
    for (i, p) in holders.iter().enumerate() {
        registry
            .register(&prod, &format!("n{i}"), p.clone(), json!({"i": i}))
            .unwrap();
    }
    assert_eq!(registry.count(&prod), 10);
    assert!(matches!(
        registry.register(&prod, "n3", holders[4].clone(), json!(null)),
        Err(RegistryError::AlreadyRegistered { .. })
    ));
    for (i, p) in holders.iter().enumerate() {
        assert_eq!(registry.lookup(&prod, &format!("n{i}")), Some(p.clone()));
        assert!(registry.unregister_if(&prod, &format!("n{i}"), p));
    }
    assert_eq!(registry.count(&prod), 0);
    for p in holders {
        p.stop().await;
    }
}
