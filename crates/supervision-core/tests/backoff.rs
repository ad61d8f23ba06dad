//! Restart backoff in both supervisors, and the telemetry of a crash and
//! restart. All on tokio's paused clock: a delay is measured exactly.

use std::time::Duration;

use mabeam_supervision_core::{
    Backoff, ChildState, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Intensity,
    ProcessHandle, Strategy, Supervisor, SupervisorFlags, Telemetry, events,
    testkit::{self, Lifecycle, TelemetryProbe, TestKit},
};
use tokio::{sync::mpsc::UnboundedReceiver, time::Instant};

const WAIT: Duration = Duration::from_secs(3600);

fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_millis(400))
        .with_reset_after(Duration::from_secs(10))
}

fn roomy() -> Intensity {
    Intensity {
        max_restarts: 100,
        max_seconds: Duration::from_secs(60),
    }
}

/// Waits for the next start report; returns the new child's id.
async fn next_start(lifecycle: &mut UnboundedReceiver<Lifecycle>) -> kameo::actor::ActorId {
    loop {
        match tokio::time::timeout(WAIT, lifecycle.recv())
            .await
            .unwrap()
            .unwrap()
        {
            Lifecycle::Started { id, .. } => return id,
            Lifecycle::Stopped { .. } => {}
        }
    }
}

/// Crashes `child` and returns how long its restart took and the new child.
async fn crash_and_time_restart(
    child: &ProcessHandle,
    lifecycle: &mut UnboundedReceiver<Lifecycle>,
    find: impl AsyncFn(kameo::actor::ActorId) -> ProcessHandle,
) -> (Duration, ProcessHandle) {
    let crashed_at = Instant::now();
    testkit::crash(child).await;
    let id = next_start(lifecycle).await;
    (crashed_at.elapsed(), find(id).await)
}

#[tokio::test(start_paused = true)]
async fn dynamic_backoff_doubles_caps_and_resets() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "backoff"]);
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        intensity: roomy(),
        telemetry: telemetry.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut child = sup
        .start_child(kit.spec("w").with_backoff(backoff()))
        .await
        .unwrap();
    next_start(&mut lifecycle).await;
    let find = async |id| {
        sup.which_children()
            .await
            .unwrap()
            .into_iter()
            .find_map(|c| c.state.handle().filter(|h| h.id() == id).cloned())
            .unwrap()
    };

    let mut delays = Vec::new();
    for _ in 0..4 {
        let (delay, next) = crash_and_time_restart(&child, &mut lifecycle, find).await;
        delays.push(delay.as_millis());
        child = next;
    }
    assert_eq!(delays, [100, 200, 400, 400]);
    let attempts: Vec<f64> = probe
        .drain()
        .iter()
        .map(|e| e.measurement("attempt").unwrap())
        .collect();
    assert_eq!(attempts, [0.0, 1.0, 2.0, 3.0]);

    // After 10 s of quiet running the count starts over.
    testkit::advance(Duration::from_secs(10)).await;
    let (delay, _) = crash_and_time_restart(&child, &mut lifecycle, find).await;
    assert_eq!(delay, Duration::from_millis(100));
    sup.stop().await;
    assert_eq!(kit.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_child_waiting_out_its_backoff_shows_as_restarting() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "backoff"]);
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        telemetry: telemetry.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let child = sup
        .start_child(
            kit.spec("w")
                .with_backoff(Backoff::new(Duration::from_secs(5), Duration::from_secs(5))),
        )
        .await
        .unwrap();
    testkit::crash(&child).await;
    let scheduled = probe
        .wait_for(events::BACKOFF_SCHEDULED, WAIT)
        .await
        .unwrap();
    assert_eq!(scheduled.measurement("delay_ms"), Some(5000.0));
    let children = sup.which_children().await.unwrap();
    assert_eq!(children[0].state, ChildState::Restarting);
    let counts = sup.count_children().await.unwrap();
    assert_eq!((counts.specs, counts.active), (1, 0));
    // The first start, then the restart after the wait.
    next_start(&mut lifecycle).await;
    next_start(&mut lifecycle).await;
    assert!(matches!(
        sup.which_children().await.unwrap()[0].state,
        ChildState::Running(_)
    ));
    sup.stop().await;
}

#[tokio::test(start_paused = true)]
async fn intensity_still_applies_with_backoff() {
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        intensity: Intensity {
            max_restarts: 2,
            max_seconds: Duration::from_secs(60),
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let mut child = sup
        .start_child(kit.spec("w").with_backoff(backoff()))
        .await
        .unwrap();
    next_start(&mut lifecycle).await;
    for _ in 0..2 {
        testkit::crash(&child).await;
        let id = next_start(&mut lifecycle).await;
        child = sup.which_children().await.unwrap()[0]
            .state
            .handle()
            .filter(|h| h.id() == id)
            .cloned()
            .unwrap();
    }
    testkit::crash(&child).await;
    assert!(
        matches!(sup.exited().await, ExitReason::Shutdown(Some(m)) if m.contains("max restart intensity"))
    );
    assert_eq!(kit.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn static_backoff_doubles_and_caps() {
    let (kit, mut lifecycle) = TestKit::new();
    let flags =
        SupervisorFlags::new(Strategy::OneForOne).with_intensity(100, Duration::from_secs(60));
    let sup = Supervisor::start(flags, [kit.spec("w").with_backoff(backoff())])
        .await
        .unwrap();
    next_start(&mut lifecycle).await;
    let find = async |_id| {
        sup.which_children().await.unwrap()[0]
            .state
            .handle()
            .cloned()
            .unwrap()
    };
    let mut child = find(child_id(&sup).await).await;
    let mut delays = Vec::new();
    for _ in 0..4 {
        let (delay, next) = crash_and_time_restart(&child, &mut lifecycle, find).await;
        delays.push(delay.as_millis());
        child = next;
    }
    assert_eq!(delays, [100, 200, 400, 400]);
    sup.stop().await;
    assert_eq!(kit.live(), 0);
}

async fn child_id(sup: &Supervisor) -> kameo::actor::ActorId {
    sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .unwrap()
        .id()
}

#[tokio::test(start_paused = true)]
async fn a_group_restart_waits_for_the_longest_backoff() {
    let (kit, mut lifecycle) = TestKit::new();
    let flags =
        SupervisorFlags::new(Strategy::OneForAll).with_intensity(100, Duration::from_secs(60));
    let slow = Backoff::new(Duration::from_secs(3), Duration::from_secs(3));
    let sup = Supervisor::start(flags, [kit.spec("a"), kit.spec("b").with_backoff(slow)])
        .await
        .unwrap();
    next_start(&mut lifecycle).await;
    next_start(&mut lifecycle).await;
    let a = sup.which_children().await.unwrap()[0]
        .state
        .handle()
        .cloned()
        .unwrap();
    let crashed_at = Instant::now();
    testkit::crash(&a).await;
    next_start(&mut lifecycle).await;
    next_start(&mut lifecycle).await;
    assert_eq!(crashed_at.elapsed(), Duration::from_secs(3));
    sup.stop().await;
}

#[tokio::test]
async fn static_supervisor_reports_a_crash_and_restart_in_order() {
    let telemetry = Telemetry::new();
    let (kit, mut lifecycle) = TestKit::new();
    let flags = SupervisorFlags::default()
        .with_name("root")
        .with_telemetry(telemetry.clone());
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let sup = Supervisor::start(flags, [kit.spec("a"), kit.spec("b")])
        .await
        .unwrap();
    next_start(&mut lifecycle).await;
    next_start(&mut lifecycle).await;
    let started: Vec<String> = probe
        .drain()
        .iter()
        .map(|e| format!("{} {}", e.name.join("."), e.meta_str("child").unwrap()))
        .collect();
    assert_eq!(
        started,
        ["supervisor.child.started a", "supervisor.child.started b"]
    );

    let b = sup.which_children().await.unwrap()[1]
        .state
        .handle()
        .cloned()
        .unwrap();
    testkit::crash(&b).await;
    let mut seen = Vec::new();
    loop {
        let event = probe.next(WAIT).await.unwrap();
        seen.push(format!(
            "{} {}",
            event.name.join("."),
            event.meta_str("child").unwrap()
        ));
        if event.is(events::CHILD_EXITED) {
            assert_eq!(event.meta_bool("restart"), Some(true));
            assert_eq!(event.meta_str("reason"), Some("error: crash on command"));
        }
        if event.is(events::CHILD_RESTARTED) {
            assert_eq!(event.meta_str("supervisor"), Some("root"));
            break;
        }
    }
    assert_eq!(
        seen,
        [
            "supervisor.child.exited b",
            "supervisor.child.started b",
            "supervisor.child.restarted b"
        ]
    );

    sup.stop().await;
    let stops: Vec<String> = probe
        .drain()
        .iter()
        .map(|e| format!("{} {}", e.name.join("."), e.meta_str("child").unwrap()))
        .collect();
    assert_eq!(
        stops,
        [
            "supervisor.child.terminated b",
            "supervisor.child.terminated a"
        ]
    );
}
