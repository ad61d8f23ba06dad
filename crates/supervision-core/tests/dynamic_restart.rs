//! DynamicSupervisor restarts, hardened (issue 8): a child whose restart
//! keeps failing can be terminated by its last handle, a backoff timer does
//! not outlive its child or its supervisor, a child not restarted gives its
//! `max_children` place back, a temporary child's start factory is dropped
//! once it runs, and a start may answer `ignore`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mabeam_supervision_core::{
    Backoff, ChildSpec, ChildState, DynamicSupervisor, DynamicSupervisorFlags, RestartType,
    StartError, SupervisorError, Telemetry, events,
    testkit::{self, Lifecycle, TelemetryProbe, TestKit},
};

const WAIT: Duration = Duration::from_secs(10);

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// 10(b): the restart of `child` keeps failing; `terminate_child` with the
/// handle of its last incarnation ends it: the retries stop, it leaves
/// which_children, and its place is free again.
#[tokio::test(start_paused = true)]
async fn a_child_whose_restart_keeps_failing_is_terminated_by_its_last_handle() {
    let telemetry = Telemetry::new();
    let mut failures = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "start_failed"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(
        DynamicSupervisorFlags::new()
            .with_telemetry(telemetry.clone())
            .with_intensity(1000, Duration::from_secs(1))
            .with_max_children(1),
    )
    .await
    .unwrap();
    let child = sup.start_child(kit.spec("w")).await.unwrap();
    kit.fail_starts(true);
    testkit::crash(&child).await;
    failures
        .wait_for(events::CHILD_START_FAILED, WAIT)
        .await
        .unwrap();
    failures
        .wait_for(events::CHILD_START_FAILED, WAIT)
        .await
        .unwrap();

    // Its last handle still names it.
    sup.terminate_child(&child).await.unwrap();
    assert!(sup.which_children().await.unwrap().is_empty());
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    failures.drain();
    // No retry comes any more (the retries went through the mailbox, and
    // this call is answered after any that was queued).
    sup.count_children().await.unwrap();
    assert!(failures.drain().is_empty(), "no start after the terminate");
    assert!(matches!(
        sup.terminate_child(&child).await,
        Err(SupervisorError::NotFound)
    ));
    // Its place is free.
    kit.fail_starts(false);
    sup.start_child(kit.spec("x")).await.unwrap();
    sup.stop().await;
    assert_eq!(kit.live(), 0);
}

/// Item 9: a child waiting out a backoff has a timer; terminating the child
/// cancels it (no sleeping task left behind), and so does stopping the
/// supervisor.
#[tokio::test(start_paused = true)]
async fn a_backoff_timer_goes_with_its_child_and_its_supervisor() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "backoff"]);
    let (kit, _lifecycle) = TestKit::new();
    let hour = Duration::from_secs(3600);
    let spec = |label| kit.spec(label).with_backoff(Backoff::new(hour, hour));
    let baseline = alive_tasks();
    let sup =
        DynamicSupervisor::start(DynamicSupervisorFlags::new().with_telemetry(telemetry.clone()))
            .await
            .unwrap();
    let a = sup.start_child(spec("a")).await.unwrap();
    let b = sup.start_child(spec("b")).await.unwrap();

    testkit::crash(&a).await;
    probe
        .wait_for(events::BACKOFF_SCHEDULED, WAIT)
        .await
        .unwrap();
    let with_timer = alive_tasks();
    sup.terminate_child(&a).await.unwrap();
    assert_eq!(alive_tasks(), with_timer - 1, "a's timer is cancelled");

    testkit::crash(&b).await;
    probe
        .wait_for(events::BACKOFF_SCHEDULED, WAIT)
        .await
        .unwrap();
    sup.stop().await;
    drop(sup);
    assert_eq!(alive_tasks(), baseline, "nothing outlives the supervisor");
}

/// Tests section: a child that is not restarted (transient after a normal
/// exit, temporary after a crash) gives its `max_children` place back.
#[tokio::test]
async fn a_child_not_restarted_gives_its_place_back() {
    let telemetry = Telemetry::new();
    let mut exits = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "exited"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(
        DynamicSupervisorFlags::new()
            .with_telemetry(telemetry.clone())
            .with_max_children(1),
    )
    .await
    .unwrap();
    let cases = [
        (RestartType::Transient, true),
        (RestartType::Temporary, false),
    ];
    for (restart, normal) in cases {
        let child = sup
            .start_child(kit.spec("w").with_restart(restart))
            .await
            .unwrap();
        assert!(matches!(
            sup.start_child(kit.spec("full")).await,
            Err(SupervisorError::MaxChildren(1))
        ));
        if normal {
            testkit::exit_normally(&child).await;
        } else {
            testkit::crash(&child).await;
        }
        let exited = exits.wait_for(events::CHILD_EXITED, WAIT).await.unwrap();
        assert_eq!(exited.meta_bool("restart"), Some(false));
    }
    // Both places came back: one child fits again.
    sup.start_child(kit.spec("again")).await.unwrap();
    sup.stop().await;
}

/// 10(c): a temporary child is never restarted, so the supervisor drops its
/// start factory, and what the factory captured, once the child runs.
#[tokio::test]
async fn a_temporary_childs_start_arguments_are_dropped_once_it_runs() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::new())
        .await
        .unwrap();
    let captured = |restart: RestartType| {
        let big = Arc::new(vec![0u8; 1 << 20]);
        let inner = kit.spec("w");
        let held = big.clone();
        let spec = ChildSpec::new("w", move || {
            let (_held, inner) = (held.clone(), inner.clone());
            async move { inner.start().await }
        })
        .with_restart(restart);
        (big, spec)
    };
    let (temporary, spec) = captured(RestartType::Temporary);
    sup.start_child(spec).await.unwrap();
    let (permanent, spec) = captured(RestartType::Permanent);
    sup.start_child(spec).await.unwrap();
    // Answered after both hand-overs.
    assert_eq!(sup.count_children().await.unwrap().active, 2);
    assert_eq!(
        Arc::strong_count(&temporary),
        1,
        "the temporary's args are dropped"
    );
    assert_eq!(
        Arc::strong_count(&permanent),
        2,
        "a permanent child keeps its spec"
    );
    sup.stop().await;
}

/// 10(f): a start that answers `ignore` starts nothing; the caller is told,
/// nothing is kept, and no place is taken. A restart that answers `ignore`
/// ends the child and gives its place back.
#[tokio::test]
async fn a_start_may_answer_ignore() {
    let telemetry = Telemetry::new();
    let mut restarts = TelemetryProbe::attach(&telemetry, &["supervisor", "child"]);
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(
        DynamicSupervisorFlags::new()
            .with_telemetry(telemetry.clone())
            .with_max_children(1),
    )
    .await
    .unwrap();
    let ignore = Arc::new(AtomicBool::new(true));
    let spec = {
        let (ignore, inner) = (ignore.clone(), kit.spec("w"));
        ChildSpec::new("w", move || {
            let (ignored, inner) = (ignore.load(Ordering::SeqCst), inner.clone());
            async move {
                if ignored {
                    Err(StartError::Ignored)
                } else {
                    inner.start().await
                }
            }
        })
    };
    assert!(matches!(
        sup.start_child(spec.clone()).await,
        Err(SupervisorError::Start(StartError::Ignored))
    ));
    assert!(sup.which_children().await.unwrap().is_empty());

    ignore.store(false, Ordering::SeqCst);
    let child = sup.start_child(spec).await.unwrap();
    assert!(matches!(
        lifecycle.recv().await,
        Some(Lifecycle::Started { .. })
    ));
    ignore.store(true, Ordering::SeqCst);
    restarts.drain();
    testkit::crash(&child).await;
    restarts
        .wait_for(events::CHILD_START_FAILED, WAIT)
        .await
        .unwrap();
    // The ignored restart ended the child: nothing kept, its place free.
    assert!(sup.which_children().await.unwrap().is_empty());
    sup.start_child(kit.spec("x")).await.unwrap();
    assert!(matches!(
        sup.which_children().await.unwrap()[0].state,
        ChildState::Running(_)
    ));
    sup.stop().await;
}
