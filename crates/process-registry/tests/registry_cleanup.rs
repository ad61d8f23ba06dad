//! cleanup(namespace): stops every process registered there (through its
//! stopper) and leaves the namespace empty.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use kameo::{
    Actor,
    message::{Context, Message},
};
use mabeam_process_registry::{CleanupReport, ProcessRegistry, Stopper};
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Namespace, ProcessHandle,
    RegistryEvent, Telemetry,
};
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

async fn spawn() -> ProcessHandle {
    ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap()
}

// Every process of the namespace is stopped, names and groups are empty,
// other namespaces are untouched.
#[tokio::test]
async fn cleanup_stops_everything_and_empties_the_namespace() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let other = Namespace::unique_test();
    let (p, q, r, s) = (spawn().await, spawn().await, spawn().await, spawn().await);
    registry.register(&ns, "p", p.clone(), json!(null)).unwrap();
    registry
        .register(&ns, "p2", p.clone(), json!(null))
        .unwrap();
    registry.register(&ns, "q", q.clone(), json!(null)).unwrap();
    registry.join(&ns, "g", r.clone()).unwrap();
    registry
        .register(&other, "s", s.clone(), json!(null))
        .unwrap();

    let report = registry.cleanup(&ns).await;
    assert_eq!(report.stopped, 3);
    assert_eq!(report.killed, 0);
    for handle in [&p, &q, &r] {
        assert_eq!(handle.exited().await, ExitReason::Shutdown(None));
    }
    assert_eq!(registry.count(&ns), 0);
    assert!(registry.list(&ns).is_empty());
    assert!(registry.groups(&ns).is_empty());
    assert_eq!(registry.lookup(&other, "s"), Some(s.clone()));
    assert!(s.is_alive());
    // The namespace is usable afterwards.
    let t = spawn().await;
    registry.register(&ns, "p", t.clone(), json!(null)).unwrap();
    t.stop().await;
    s.stop().await;
}

// A supervised process is stopped through its supervisor (the stopper) and
// not restarted; an unsupervised neighbour is stopped by its handle.
#[tokio::test]
async fn supervised_process_is_stopped_through_its_supervisor() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let child = sup
        .start_child(ChildSpec::actor::<Dummy>("worker", || Dummy))
        .await
        .unwrap();
    registry
        .register_with_stopper(
            &ns,
            "worker",
            child.clone(),
            json!(null),
            Stopper::supervised_by(&sup),
        )
        .unwrap();
    let plain = spawn().await;
    registry
        .register(&ns, "plain", plain.clone(), json!(null))
        .unwrap();

    let report = registry.cleanup(&ns).await;
    assert_eq!(
        report,
        CleanupReport {
            stopped: 2,
            killed: 0,
            unregistered: report.unregistered
        }
    );
    assert!(!child.is_alive());
    let counts = sup.count_children().await.unwrap();
    assert_eq!(counts.active, 0, "the child was not restarted");
    assert_eq!(counts.specs, 0, "the supervisor let it go");
    assert_eq!(registry.count(&ns), 0);
    sup.stop().await;
}

// The stopper given at registration is the one used.
#[tokio::test]
async fn custom_stopper_is_used() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let stopper = Stopper::new(move |handle: ProcessHandle| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            handle.kill();
        }
    });
    let p = spawn().await;
    registry
        .register_with_stopper(&ns, "p", p.clone(), json!(null), stopper)
        .unwrap();
    registry.join(&ns, "g", p.clone()).unwrap();
    registry.cleanup(&ns).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "once per process, not per name"
    );
    assert_eq!(p.exited().await, ExitReason::Killed);
}

/// An actor stuck in a handler until killed.
#[derive(Actor)]
struct Stuck;

struct Hang;

impl Message<Hang> for Stuck {
    type Reply = ();

    async fn handle(&mut self, _: Hang, _: &mut Context<Self, Self::Reply>) {
        std::future::pending::<()>().await;
    }
}

// A process that does not stop within the shutdown timeout is killed.
#[tokio::test(start_paused = true)]
async fn process_outlasting_the_timeout_is_killed() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let stuck = ProcessHandle::spawn::<Stuck>(Stuck).await.unwrap();
    stuck.downcast::<Stuck>().unwrap().tell(Hang).await.unwrap();
    registry
        .register(&ns, "stuck", stuck.clone(), json!(null))
        .unwrap();
    let mut events = registry.subscribe(&ns);

    let report = registry
        .cleanup_with_timeout(&ns, Duration::from_secs(2))
        .await;
    assert_eq!(report.killed, 1);
    assert_eq!(report.stopped, 0);
    assert_eq!(stuck.exited().await, ExitReason::Killed);
    assert_eq!(registry.count(&ns), 0);
    match events.recv().await.unwrap() {
        RegistryEvent::Unregistered { handle, .. } => assert_eq!(handle, stuck),
        other => panic!("unexpected {other:?}"),
    }
}

// Cleaning an unknown or empty namespace does nothing.
#[tokio::test]
async fn cleanup_of_an_empty_namespace() {
    let registry = ProcessRegistry::new(Telemetry::disabled());
    assert_eq!(
        registry.cleanup(&Namespace::unique_test()).await,
        CleanupReport::default()
    );
}
