//! `ChildSpec::registered_as`: each incarnation of a supervised child holds
//! its name in a registry (OTP's `{via, Module, Name}`), under both
//! supervisors, across restarts, and is stopped through its supervisor by
//! a registry cleanup.

use std::{sync::Arc, time::Duration};

use kameo::prelude::*;
use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    ChildSpec, ChildState, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Namespace,
    ProcessHandle, Registry, RegistryEvent, StartError, Supervisor, SupervisorError,
    SupervisorFlags, Telemetry, Topic,
};
use serde_json::json;

/// A worker that fails on command.
#[derive(Actor)]
struct Worker;

/// Makes the worker fail.
struct Crash;

impl Message<Crash> for Worker {
    type Reply = Result<(), ExitReason>;

    async fn handle(&mut self, _: Crash, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Err(ExitReason::error("crash"))
    }
}

async fn crash(handle: &ProcessHandle) {
    handle
        .downcast::<Worker>()
        .unwrap()
        .tell(Crash)
        .await
        .unwrap();
}

fn registry() -> (Arc<ProcessRegistry>, Arc<dyn Registry>, Namespace) {
    let registry = Arc::new(ProcessRegistry::new(Telemetry::disabled()));
    (registry.clone(), registry, Namespace::unique_test())
}

fn spec(registry: &Arc<dyn Registry>, ns: Namespace, name: &str) -> ChildSpec {
    ChildSpec::actor::<Worker>(name.to_owned(), || Worker).registered_as(
        registry.clone(),
        ns,
        name.to_owned(),
        json!({"role": "worker"}),
    )
}

/// Waits for the next holder of the name the subscription is about.
async fn next_holder(events: &mut mabeam_supervision_core::RegistryEvents) -> ProcessHandle {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event in time")
            .expect("the subscription lasts");
        if let RegistryEvent::Registered { handle, .. } = event {
            return handle.upgrade().expect("the new holder runs");
        }
    }
}

// Under a static supervisor the name follows the child across a restart,
// with its metadata.
#[tokio::test]
async fn a_static_child_keeps_its_name_across_restarts() {
    let (_, registry, ns) = registry();
    let sup = Supervisor::start(SupervisorFlags::default(), [spec(&registry, ns, "cache")])
        .await
        .unwrap();
    let (first, metadata) = registry.lookup_with_metadata(&ns, "cache").unwrap();
    assert_eq!(metadata, json!({"role": "worker"}));
    let mut events = registry
        .subscribe_to(&ns, Topic::Name("cache".into()))
        .events;

    crash(&first).await;
    let second = next_holder(&mut events).await;
    assert_ne!(second, first);
    assert_eq!(registry.lookup(&ns, "cache"), Some(second.clone()));
    let running = sup.which_children().await.unwrap()[0].state.clone();
    assert_eq!(running, ChildState::Running(second));

    sup.stop().await;
    assert_eq!(registry.lookup(&ns, "cache"), None);
}

// Under a dynamic supervisor too; terminating the child frees the name.
#[tokio::test]
async fn a_dynamic_child_keeps_its_name_across_restarts() {
    let (_, registry, ns) = registry();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let first = sup.start_child(spec(&registry, ns, "agent")).await.unwrap();
    assert_eq!(registry.lookup(&ns, "agent"), Some(first.clone()));
    let mut events = registry
        .subscribe_to(&ns, Topic::Name("agent".into()))
        .events;

    crash(&first).await;
    let second = next_holder(&mut events).await;
    assert_ne!(second, first);
    sup.terminate_child(&second).await.unwrap();
    assert_eq!(registry.lookup(&ns, "agent"), None);
    sup.stop().await;
}

// A name another live process holds fails the start, as OTP's
// `{already_started, Pid}`, and the new incarnation is stopped again.
#[tokio::test]
async fn a_taken_name_fails_the_start() {
    let (_, registry, ns) = registry();
    let squatter = ProcessHandle::spawn::<Worker>(Worker).await.unwrap();
    registry
        .register(&ns, "agent", squatter.clone(), json!(null))
        .unwrap();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let err = sup
        .start_child(spec(&registry, ns, "agent"))
        .await
        .unwrap_err();
    match err {
        SupervisorError::Start(StartError::AlreadyRegistered { name, holder }) => {
            assert_eq!(&*name, "agent");
            assert_eq!(holder, squatter);
        }
        other => panic!("expected AlreadyRegistered, got {other:?}"),
    }
    assert_eq!(sup.count_children().await.unwrap().active, 0);
    assert_eq!(registry.lookup(&ns, "agent"), Some(squatter.clone()));
    sup.stop().await;
    squatter.stop().await;
}

// A start that times out never holds the name.
#[tokio::test(start_paused = true)]
async fn a_timed_out_start_holds_no_name() {
    let (_, registry, ns) = registry();
    let hung = ChildSpec::new("hung", || async {
        let _started = ProcessHandle::spawn::<Worker>(Worker).await?;
        futures::future::pending::<Result<ProcessHandle, StartError>>().await
    })
    .with_start_timeout(Duration::from_secs(1))
    .registered_as(registry.clone(), ns, "hung", json!(null));
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let err = sup.start_child(hung).await.unwrap_err();
    assert!(
        matches!(err, SupervisorError::Start(StartError::Timeout(_))),
        "{err:?}"
    );
    assert_eq!(registry.lookup(&ns, "hung"), None);
    assert!(registry.list(&ns).is_empty());
    sup.stop().await;
}

// A registry cleanup stops a registered static child through its
// supervisor: terminated and kept, not restarted behind its back.
#[tokio::test]
async fn a_cleanup_stops_a_static_child_through_its_supervisor() {
    let (process_registry, registry, ns) = registry();
    let sup = Supervisor::start(SupervisorFlags::default(), [spec(&registry, ns, "cache")])
        .await
        .unwrap();
    let child = registry.lookup(&ns, "cache").unwrap();

    let report = process_registry.cleanup(&ns).await;
    assert_eq!(report.stopped, 1);
    assert!(!child.is_alive());
    let state = sup.which_children().await.unwrap()[0].state.clone();
    assert_eq!(state, ChildState::Terminated, "not restarted");
    assert_eq!(registry.lookup(&ns, "cache"), None);

    // restart_child brings it back under its name.
    let again = sup.restart_child("cache").await.unwrap();
    assert_eq!(registry.lookup(&ns, "cache"), Some(again));
    sup.stop().await;
}

// A registration does not keep the tree alive: with every user handle
// dropped, the supervisor stops and so does its registered child.
#[tokio::test]
async fn a_registered_child_does_not_keep_its_supervisor_alive() {
    let (_, registry, ns) = registry();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let child = sup.start_child(spec(&registry, ns, "agent")).await.unwrap();
    let (sup_weak, child_weak) = (sup.handle().downgrade(), child.downgrade());
    drop((sup, child));
    tokio::time::timeout(Duration::from_secs(10), sup_weak.exited())
        .await
        .expect("the supervisor stopped");
    tokio::time::timeout(Duration::from_secs(10), child_weak.exited())
        .await
        .expect("the child stopped");
    assert_eq!(registry.lookup(&ns, "agent"), None);
}
