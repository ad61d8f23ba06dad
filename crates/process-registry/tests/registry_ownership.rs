//! A registration owns nothing: a registered process stops when its other
//! references drop, a stopper never keeps its supervisor alive, and a
//! static supervisor's child is stopped through its supervisor.

use std::time::Duration;

use mabeam_process_registry::{ProcessRegistry, Stopper};
use mabeam_supervision_core::{
    ChildSpec, ChildState, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Namespace,
    ProcessHandle, Registry, Supervisor, SupervisorFlags, Telemetry,
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

// A registered actor whose last strong reference drops stops (normally),
// and its names and memberships go: neither the table nor the watcher
// holds it.
#[tokio::test]
async fn a_registered_actor_stops_when_its_references_drop() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let p = spawn().await;
    registry.register(&ns, "p", p.clone(), json!(null)).unwrap();
    registry.join(&ns, "g", p.clone()).unwrap();
    let mut events = registry.subscribe(&ns);
    let weak = p.downgrade();
    drop(p);

    assert_eq!(within("the exit", weak.exited()).await, ExitReason::Normal);
    assert_eq!(registry.lookup(&ns, "p"), None);
    // The watcher still cleans up after it, with its exit reason.
    for _ in 0..2 {
        let event = within("the cleanup", events.recv()).await.unwrap();
        assert!(format!("{event:?}").contains("Normal"), "{event:?}");
    }
    assert!(registry.members(&ns, "g").is_empty());
}

// A stopper holds its dynamic supervisor weakly: with every user handle
// dropped, the supervisor and its registered child stop.
#[tokio::test]
async fn a_stopper_does_not_keep_a_dynamic_supervisor_alive() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let child = sup
        .start_child(ChildSpec::actor::<Dummy>("w", || Dummy))
        .await
        .unwrap();
    registry
        .register_with_stopper(
            &ns,
            "w",
            child.clone(),
            json!(null),
            Stopper::supervised_by(&sup),
        )
        .unwrap();
    let (sup_weak, child_weak) = (sup.handle().downgrade(), child.downgrade());
    drop((sup, child));

    within("the supervisor's exit", sup_weak.exited()).await;
    within("the child's exit", child_weak.exited()).await;
    assert_eq!(registry.lookup(&ns, "w"), None);
}

// A static supervisor's child registered with `Stopper::child_of` is
// stopped by cleanup through its supervisor: terminated (kept, not
// running), not restarted behind the supervisor's back.
#[tokio::test]
async fn cleanup_stops_a_static_child_through_its_supervisor() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        vec![ChildSpec::actor::<Dummy>("w", || Dummy)],
    )
    .await
    .unwrap();
    let child = sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    registry
        .register_with_stopper(
            &ns,
            "w",
            child.clone(),
            json!(null),
            Stopper::child_of(&sup, "w"),
        )
        .unwrap();

    let report = registry.cleanup(&ns).await;
    assert_eq!(report.stopped, 1);
    assert!(!child.is_alive());
    let children = sup.which_children().await.unwrap();
    assert_eq!(children[0].state, ChildState::Terminated, "not restarted");
    sup.stop().await;
}

// `keys` lists the names a process holds; `leave_all` leaves every group
// at once.
#[tokio::test]
async fn keys_and_leave_all() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let registry: &dyn Registry = &registry;
    let ns = Namespace::unique_test();
    let (p, q) = (spawn().await, spawn().await);
    for name in ["b", "a"] {
        registry
            .register(&ns, name, p.clone(), json!(null))
            .unwrap();
    }
    registry.register(&ns, "c", q.clone(), json!(null)).unwrap();
    assert_eq!(registry.keys(&ns, &p), ["a".into(), "b".into()]);
    assert_eq!(
        registry.keys(&Namespace::unique_test(), &p),
        Vec::<std::sync::Arc<str>>::new()
    );

    for group in ["g1", "g2", "g1"] {
        registry.join(&ns, group, p.clone()).unwrap();
    }
    registry.join(&ns, "g1", q.clone()).unwrap();
    assert_eq!(registry.leave_all(&ns, &p), 3);
    assert_eq!(registry.members(&ns, "g1"), vec![q.clone()]);
    assert!(registry.members(&ns, "g2").is_empty());
    assert_eq!(registry.leave_all(&ns, &p), 0);
    assert_eq!(registry.keys(&ns, &p).len(), 2, "names are kept");
    p.stop().await;
    assert!(registry.keys(&ns, &p).is_empty());
    q.stop().await;
}
