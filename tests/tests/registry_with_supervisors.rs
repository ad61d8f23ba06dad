//! The registry and the supervisors together, as a node wires them: agents
//! register themselves by name when they start, and a crash frees the name
//! until the supervisor's restart takes it again.

use std::{sync::Arc, time::Duration};

use kameo::prelude::*;
use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Namespace, ProcessHandle,
    Registry, RegistryEvent, Telemetry, events, testkit::TelemetryProbe,
};

/// An agent that registers itself under its name when it starts.
struct Named;

impl Actor for Named {
    type Args = (Arc<dyn Registry>, Namespace, String);
    type Error = ExitReason;

    async fn on_start(
        (registry, namespace, name): Self::Args,
        actor_ref: ActorRef<Self>,
    ) -> Result<Self, ExitReason> {
        registry
            .register(
                &namespace,
                &name,
                ProcessHandle::new(actor_ref),
                serde_json::Value::Null,
            )
            .map_err(ExitReason::error)?;
        Ok(Named)
    }
}

/// Makes the agent fail.
struct Crash;

impl Message<Crash> for Named {
    type Reply = Result<(), ExitReason>;

    async fn handle(&mut self, _: Crash, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Err(ExitReason::error("crash"))
    }
}

fn spec(registry: &Arc<dyn Registry>, namespace: Namespace, name: &str) -> ChildSpec {
    let (registry, name) = (registry.clone(), name.to_owned());
    ChildSpec::actor::<Named>(name.clone(), move || {
        (registry.clone(), namespace, name.clone())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_agent_frees_its_name_and_its_restart_takes_it_again() {
    let registry: Arc<dyn Registry> = Arc::new(ProcessRegistry::new(Telemetry::disabled()));
    let namespace = Namespace::unique_test();
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        telemetry: telemetry.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    for i in 0..100 {
        sup.start_child(spec(&registry, namespace, &format!("agent-{i}")))
            .await
            .unwrap();
    }
    assert_eq!(registry.count(&namespace), 100);

    let mut changes = registry.subscribe(&namespace);
    let first = registry.lookup(&namespace, "agent-7").unwrap();
    first
        .downcast::<Named>()
        .unwrap()
        .tell(Crash)
        .await
        .unwrap();
    assert!(matches!(first.exited().await, ExitReason::Error(_)));

    // The name is freed with the exit reason, then taken by the restart.
    let freed = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .unwrap();
    assert!(matches!(
        freed,
        Ok(RegistryEvent::Unregistered { ref name, .. }) if &**name == "agent-7"
    ));
    probe
        .wait_for(events::CHILD_RESTARTED, Duration::from_secs(10))
        .await
        .unwrap();
    let taken = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .unwrap();
    let Ok(RegistryEvent::Registered { name, handle, .. }) = taken else {
        panic!("expected the restarted agent to register, got {taken:?}")
    };
    assert_eq!(&*name, "agent-7");
    assert_ne!(handle, first);
    assert_eq!(registry.lookup(&namespace, "agent-7"), handle.upgrade());
    assert_eq!(registry.count(&namespace), 100);

    // Stopping the supervisor stops every agent; the registry forgets them.
    sup.stop().await;
    assert!(registry.lookup(&namespace, "agent-0").is_none());
}
