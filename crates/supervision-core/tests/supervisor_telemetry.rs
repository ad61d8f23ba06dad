//! A restart event names both incarnations: the actor that exited
//! (`old_actor_id`) and the one started in its place (`actor_id`).

use std::time::Duration;

use mabeam_supervision_core::{
    DynamicSupervisor, DynamicSupervisorFlags, Supervisor, SupervisorFlags, Telemetry, events,
    testkit::{self, OwnedMeta, TelemetryProbe, TestKit},
};

const WAIT: Duration = Duration::from_secs(600);

fn id(handle: &mabeam_supervision_core::ProcessHandle) -> Option<OwnedMeta> {
    Some(OwnedMeta::U64(handle.id().sequence_id()))
}

#[tokio::test(start_paused = true)]
async fn a_static_restart_event_names_the_old_and_the_new_actor() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "restarted"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = Supervisor::start(
        SupervisorFlags::default().with_telemetry(telemetry.clone()),
        [kit.spec("a")],
    )
    .await
    .unwrap();
    let old = sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    testkit::crash(&old).await;
    let event = probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    let new = sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(event.meta("old_actor_id").cloned(), id(&old));
    assert_eq!(event.meta("actor_id").cloned(), id(&new));
    sup.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_dynamic_restart_event_names_the_old_and_the_new_actor() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "restarted"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        telemetry: telemetry.clone(),
        ..DynamicSupervisorFlags::default()
    })
    .await
    .unwrap();
    let old = sup.start_child(kit.spec("a")).await.unwrap();
    testkit::crash(&old).await;
    let event = probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    let new = sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    assert_ne!(new, old);
    assert_eq!(event.meta("old_actor_id").cloned(), id(&old));
    assert_eq!(event.meta("actor_id").cloned(), id(&new));
    sup.stop().await;
}
