//! AgentSupervisor: a pure dynamic supervisor of temporary agent processes.

use std::time::Duration;

use kameo::Actor;
use mabeam_agent_supervisor::AgentSupervisor;
use mabeam_supervision_core::{
    ChildSpec, ProcessHandle, RestartType, Telemetry,
    testkit::{TelemetryProbe, TestKit, crash},
};

#[derive(Actor)]
struct Idle;

#[tokio::test]
async fn terminate_child_returns_once_the_agent_has_stopped() {
    let sup = AgentSupervisor::start("agents", Telemetry::disabled())
        .await
        .unwrap();
    let agent = sup
        .start_child(ChildSpec::new("a", || ProcessHandle::spawn::<Idle>(Idle)))
        .await
        .unwrap();
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    let children = sup.which_children().await.unwrap();
    assert_eq!(children[0].restart, RestartType::Temporary);
    sup.terminate_child(&agent).await.unwrap();
    assert!(!agent.is_alive());
    assert_eq!(sup.count_children().await.unwrap().active, 0);
    assert!(sup.terminate_child(&agent).await.is_err());
    sup.stop().await;
}

#[tokio::test]
async fn crashed_agents_are_not_restarted_and_never_trip_its_intensity() {
    let telemetry = Telemetry::new();
    let mut probe =
        TelemetryProbe::attach(&telemetry, mabeam_supervision_core::events::CHILD_EXITED);
    let sup = AgentSupervisor::start("agents", telemetry).await.unwrap();
    let (kit, _lifecycle) = TestKit::new();
    // Far more crashes than the default intensity (3 in 5 s) allows.
    for i in 0..20 {
        let agent = sup.start_child(kit.spec(&format!("a{i}"))).await.unwrap();
        crash(&agent).await;
        // The supervisor saw the exit, and does not restart it.
        let exited = probe.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(exited.meta_bool("restart"), Some(false));
    }
    assert!(sup.supervisor().handle().is_alive());
    let counts = sup.count_children().await.unwrap();
    assert_eq!(counts.active, 0);
    assert_eq!(kit.live(), 0);
    sup.stop().await;
}
