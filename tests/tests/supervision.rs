//! Supervision at scale: many children, whole trees, nothing left running.

use std::time::Duration;

use mabeam_supervision_core::{
    DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Intensity, Telemetry, events,
    testkit::{self, TelemetryProbe, TestKit},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_children_stop_without_hanging() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    for i in 0..10_000 {
        sup.start_child(kit.spec(&format!("w{i}"))).await.unwrap();
    }
    assert_eq!(kit.live(), 10_000);
    assert_eq!(sup.count_children().await.unwrap().active, 10_000);

    assert_eq!(sup.stop().await, ExitReason::Shutdown(None));
    assert_eq!(kit.live(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_children_terminated_one_by_one() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let mut children = Vec::new();
    for i in 0..10_000 {
        children.push(sup.start_child(kit.spec(&format!("w{i}"))).await.unwrap());
    }
    for child in &children {
        sup.terminate_child(child).await.unwrap();
    }
    assert_eq!(kit.live(), 0);
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    sup.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_supervisor_that_gives_up_takes_its_children_down_and_is_restarted() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let root = DynamicSupervisor::start(DynamicSupervisorFlags {
        name: "root".into(),
        telemetry: telemetry.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let inner_flags = DynamicSupervisorFlags {
        name: "inner".into(),
        telemetry: telemetry.clone(),
        intensity: Intensity {
            max_restarts: 0,
            max_seconds: Duration::from_secs(5),
        },
        ..Default::default()
    };
    let inner = root
        .start_child(DynamicSupervisor::child_spec("inner", inner_flags))
        .await
        .unwrap();
    let inner_sup = DynamicSupervisor::from_handle(&inner).unwrap();
    let mut workers = Vec::new();
    for i in 0..100 {
        workers.push(
            inner_sup
                .start_child(kit.spec(&format!("w{i}")))
                .await
                .unwrap(),
        );
    }
    testkit::crash(&workers[50]).await;

    let restarted = probe
        .wait_for_where(
            events::CHILD_RESTARTED,
            |e| e.meta_str("supervisor") == Some("root"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(restarted.meta_str("child"), Some("inner"));
    // The old inner supervisor took all its workers down; the new one is empty.
    // It gave up with `shutdown` and the cause, as OTP's; its permanent
    // entry in the root restarted it.
    assert!(matches!(
        inner.exited().await,
        ExitReason::Shutdown(Some(cause)) if cause.contains("max restart intensity")
    ));
    assert_eq!(kit.live(), 0);
    let new_inner = root.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    let new_inner = DynamicSupervisor::from_handle(&new_inner).unwrap();
    assert_eq!(new_inner.count_children().await.unwrap().specs, 0);
    root.stop().await;
}
