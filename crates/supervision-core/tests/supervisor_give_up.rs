//! A supervisor that gives up exits with `shutdown` and the cause, as OTP's
//! does, so escalation follows its parent's restart type: a transient
//! parent entry leaves it stopped, a permanent one restarts it.

use std::time::Duration;

use kameo::actor::ActorRef;
use mabeam_supervision_core::{
    ChildState, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Intensity, RestartType,
    Supervisor, SupervisorFlags, Telemetry, events,
    testkit::{self, TelemetryProbe, TestKit},
};

mod common;

use common::{Crash, Lab, Worker, handle_of};

const WAIT: Duration = Duration::from_secs(600);

fn gave_up(reason: &ExitReason) -> bool {
    matches!(reason, ExitReason::Shutdown(Some(cause)) if cause.contains("max restart intensity"))
}

#[tokio::test(start_paused = true)]
async fn a_transient_supervisor_child_that_gave_up_is_not_restarted() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "exited"]);
    let (lab, mut events) = Lab::new();
    let inner = Supervisor::child_spec(
        "inner",
        SupervisorFlags::default()
            .with_name("inner")
            .with_intensity(0, Duration::from_secs(5)),
        [lab.worker("w")],
    )
    .with_restart(RestartType::Transient);
    let root = Supervisor::start(
        SupervisorFlags::default()
            .with_name("root")
            .with_telemetry(telemetry.clone()),
        [inner],
    )
    .await
    .unwrap();
    events.take(1).await;
    let inner = Supervisor::from_handle(&handle_of(&root, "inner").await).unwrap();
    let w: ActorRef<Worker> = handle_of(&inner, "w").await.downcast().unwrap();
    w.tell(Crash).await.unwrap();

    assert!(gave_up(&inner.exited().await));
    let exited = probe
        .wait_for_where(
            events::CHILD_EXITED,
            |e| e.meta_str("supervisor") == Some("root"),
            WAIT,
        )
        .await
        .unwrap();
    // Before: an Error exit, and the transient entry was restarted.
    assert_eq!(exited.meta_bool("restart"), Some(false));
    assert_eq!(
        root.which_children().await.unwrap()[0].state,
        ChildState::NotRunning
    );
    assert!(root.handle().is_alive());
    assert_eq!(lab.live(), 0);
    root.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_transient_dynamic_supervisor_child_that_gave_up_is_not_restarted() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "exited"]);
    let (kit, _lifecycle) = TestKit::new();
    let root = DynamicSupervisor::start(DynamicSupervisorFlags {
        name: "root".into(),
        telemetry: telemetry.clone(),
        ..DynamicSupervisorFlags::default()
    })
    .await
    .unwrap();
    let inner_flags = DynamicSupervisorFlags {
        name: "inner".into(),
        intensity: Intensity {
            max_restarts: 0,
            max_seconds: Duration::from_secs(5),
        },
        ..DynamicSupervisorFlags::default()
    };
    let inner = root
        .start_child(
            DynamicSupervisor::child_spec("inner", inner_flags)
                .with_restart(RestartType::Transient),
        )
        .await
        .unwrap();
    let inner = DynamicSupervisor::from_handle(&inner).unwrap();
    let w = inner.start_child(kit.spec("w")).await.unwrap();
    testkit::crash(&w).await;

    assert!(gave_up(&inner.exited().await));
    let exited = probe
        .wait_for_where(
            events::CHILD_EXITED,
            |e| e.meta_str("supervisor") == Some("root"),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(exited.meta_bool("restart"), Some(false));
    assert_eq!(root.count_children().await.unwrap().specs, 0);
    assert_eq!(kit.live(), 0);
    root.stop().await;
}
