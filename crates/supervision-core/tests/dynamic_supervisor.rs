//! DynamicSupervisor, point by point: start, templates, terminate, the
//! restart table, intensity, max_children, reports, ordered stop.
//!
//! Tests wait on events (lifecycle reports of the children, telemetry of the
//! supervisor, returned futures); time-based cases run on the paused clock.

use std::time::Duration;

use futures::FutureExt;
use kameo::prelude::*;
use mabeam_supervision_core::{
    ChildKind, ChildSpec, ChildState, ChildTemplate, DynamicSupervisor, DynamicSupervisorFlags,
    ExitReason, Intensity, ProcessHandle, RestartType, Shutdown, StartError, SupervisorError,
    Telemetry, events,
    testkit::{self, Lifecycle, TelemetryProbe, TestKit},
};
use tokio::{
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    time::Instant,
};

const WAIT: Duration = Duration::from_secs(10);

fn flags(telemetry: &Telemetry) -> DynamicSupervisorFlags {
    DynamicSupervisorFlags {
        telemetry: telemetry.clone(),
        ..Default::default()
    }
}

async fn next(lifecycle: &mut UnboundedReceiver<Lifecycle>) -> Lifecycle {
    tokio::time::timeout(WAIT, lifecycle.recv())
        .await
        .expect("a lifecycle report in time")
        .expect("the kit is alive")
}

/// Waits for the supervisor's report of a child's exit; returns whether it
/// decided to restart the child.
async fn exit_decision(probe: &mut TelemetryProbe) -> (String, bool) {
    let event = probe.wait_for(events::CHILD_EXITED, WAIT).await.unwrap();
    (
        event.meta_str("reason").unwrap().to_owned(),
        event.meta_bool("restart").unwrap(),
    )
}

// --- 3. start_child --------------------------------------------------------

#[tokio::test]
async fn start_child_returns_once_the_child_has_started() {
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let child = sup.start_child(kit.spec("a")).await.unwrap();
    // The start report is already there: on_start completed before the reply.
    assert!(matches!(lifecycle.try_recv(), Ok(Lifecycle::Started { id, .. }) if id == child.id()));
    assert!(child.is_alive());
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    sup.stop().await;
}

#[tokio::test]
async fn start_error_is_returned_and_nothing_is_kept() {
    let (kit, _lifecycle) = TestKit::new();
    kit.fail_starts(true);
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let err = sup.start_child(kit.spec("a")).await.unwrap_err();
    assert!(
        matches!(&err, SupervisorError::Start(StartError::Failed(m)) if m.contains("start failure on command")),
        "{err:?}"
    );
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    assert!(sup.which_children().await.unwrap().is_empty());
    sup.stop().await;
}

struct PanicsOnStart;

impl Actor for PanicsOnStart {
    type Args = ();
    type Error = kameo::error::Infallible;

    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, Self::Error> {
        panic!("bad config")
    }
}

#[tokio::test]
async fn start_panics_are_start_errors() {
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    // A panic in the actor's on_start...
    let err = sup
        .start_child(ChildSpec::actor::<PanicsOnStart>("p", || ()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SupervisorError::Start(StartError::Panicked(m)) if &**m == "bad config"),
        "{err:?}"
    );
    // ...and a panic in the start factory itself.
    let err = sup
        .start_child(ChildSpec::new("q", || async { panic!("factory broke") }))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SupervisorError::Start(StartError::Panicked(m)) if &**m == "factory broke"),
        "{err:?}"
    );
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    sup.stop().await;
}

#[tokio::test(start_paused = true)]
async fn start_timeout_bounds_a_hung_start() {
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let began = Instant::now();
    let spec =
        ChildSpec::new("hung", std::future::pending).with_start_timeout(Duration::from_secs(2));
    let err = sup.start_child(spec).await.unwrap_err();
    assert!(
        matches!(err, SupervisorError::Start(StartError::Timeout(d)) if d == Duration::from_secs(2))
    );
    assert_eq!(began.elapsed(), Duration::from_secs(2));
    // The supervisor is not stuck.
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    sup.stop().await;
}

#[tokio::test]
async fn invalid_specs_and_flags_are_refused() {
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let (kit, _lifecycle) = TestKit::new();
    let err = sup
        .start_child(
            kit.spec("a")
                .with_shutdown(Shutdown::Timeout(Duration::ZERO)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SupervisorError::InvalidFlags(_)), "{err:?}");
    assert_eq!(kit.live(), 0);
    sup.stop().await;

    let bad_window = DynamicSupervisorFlags {
        intensity: Intensity {
            max_restarts: 1,
            max_seconds: Duration::ZERO,
        },
        ..Default::default()
    };
    assert!(DynamicSupervisor::start(bad_window).await.is_err());
    let bad_max = DynamicSupervisorFlags {
        max_children: Some(0),
        ..Default::default()
    };
    assert!(DynamicSupervisor::start(bad_max).await.is_err());
}

// --- 3. templates with extra arguments ---------------------------------------

struct Session;

impl Actor for Session {
    type Args = (UnboundedSender<(String, u32)>, String, u32);
    type Error = kameo::error::Infallible;

    async fn on_start(
        (report, extra, arg): Self::Args,
        _: ActorRef<Self>,
    ) -> Result<Self, Self::Error> {
        let _ = report.send((extra, arg));
        Ok(Session)
    }
}

#[tokio::test]
async fn template_prepends_extra_arguments_and_restarts_with_the_same() {
    let (report, mut seen) = unbounded_channel();
    let template = ChildTemplate::new(
        "session",
        (report, "pool-a".to_owned()),
        |(report, extra): (UnboundedSender<(String, u32)>, String), arg: u32| {
            ProcessHandle::spawn::<Session>((report, extra, arg))
        },
    );
    let sup = DynamicSupervisor::with_template(Default::default(), template)
        .await
        .unwrap();
    let child = sup.start_child(7).await.unwrap();
    assert_eq!(seen.recv().await, Some(("pool-a".to_owned(), 7)));
    sup.start_child(8).await.unwrap();
    assert_eq!(seen.recv().await, Some(("pool-a".to_owned(), 8)));

    child.kill(); // permanent: restarted with its own arguments
    assert_eq!(seen.recv().await, Some(("pool-a".to_owned(), 7)));
    sup.stop().await;
}

// --- 4. terminate_child -------------------------------------------------------

#[tokio::test]
async fn terminate_child_returns_after_the_child_has_stopped() {
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let child = sup.start_child(kit.spec("a")).await.unwrap();
    next(&mut lifecycle).await;

    sup.terminate_child(&child).await.unwrap();
    // Stopped already, with nothing left to wait for.
    assert!(matches!(
        lifecycle.try_recv(),
        Ok(Lifecycle::Stopped { .. })
    ));
    assert_eq!(kit.live(), 0);
    assert_eq!(child.exited().await, ExitReason::Shutdown(None));
    assert_eq!(sup.count_children().await.unwrap().specs, 0);

    // A second call: not found.
    assert!(matches!(
        sup.terminate_child(&child).await,
        Err(SupervisorError::NotFound)
    ));
    sup.stop().await;
}

#[tokio::test]
async fn terminate_child_leaves_a_stranger_alone() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let other_sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let stranger = other_sup.start_child(kit.spec("stranger")).await.unwrap();

    assert!(matches!(
        sup.terminate_child(&stranger).await,
        Err(SupervisorError::NotFound)
    ));
    assert!(stranger.is_alive());
    assert_eq!(kit.live(), 1);
    sup.stop().await;
    other_sup.stop().await;
    assert_eq!(kit.live(), 0);
}

/// How many events named `name` the probe has recorded so far.
fn count_events(probe: &mut TelemetryProbe, name: &[&str]) -> usize {
    probe.drain().iter().filter(|event| event.is(name)).count()
}

/// Two calls terminate one child at once (it ignores its stop until it is
/// killed, so both are in flight together): one stops it and answers `Ok`,
/// the other waits for that exit and answers `NotFound`, as if they had
/// come one after the other. The child exits once, is reported once, and
/// gives its one place back once.
#[tokio::test(start_paused = true)]
async fn concurrent_terminates_of_one_child_stop_it_once() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(flags(&telemetry).with_max_children(1))
        .await
        .unwrap();
    let child = sup
        .start_child(
            kit.spec("a")
                .with_shutdown(Shutdown::Timeout(Duration::from_secs(1))),
        )
        .await
        .unwrap();
    // Taken by the supervisor (its hand-over is queued ahead of this
    // answer): the terminate finds it in the table.
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    testkit::hang(&child).await;

    let began = Instant::now();
    let (first, second) = tokio::time::timeout(
        WAIT,
        futures::future::join(sup.terminate_child(&child), sup.terminate_child(&child)),
    )
    .await
    .expect("both terminates answer");
    assert!(matches!(first, Ok(())), "{first:?}");
    assert!(
        matches!(second, Err(SupervisorError::NotFound)),
        "{second:?}"
    );
    // Killed once its one shutdown timeout ran out, not stopped twice.
    assert_eq!(began.elapsed(), Duration::from_secs(1));
    assert_eq!(child.exited().await, ExitReason::Killed);
    assert_eq!(count_events(&mut probe, events::CHILD_TERMINATED), 1);
    // Its one place is free, and only one.
    sup.start_child(kit.spec("b")).await.unwrap();
    assert!(matches!(
        sup.start_child(kit.spec("c")).await,
        Err(SupervisorError::MaxChildren(1))
    ));
    sup.stop().await;
    assert_eq!(kit.live(), 0);
}

/// A permanent child of `sup` with a shutdown timeout of `timeout`, in the
/// supervisor's table, hung: it ignores its stop.
async fn hung_permanent_child(
    sup: &DynamicSupervisor,
    kit: &TestKit,
    timeout: Duration,
) -> ProcessHandle {
    let child = sup
        .start_child(
            kit.spec("p")
                .with_restart(RestartType::Permanent)
                .with_shutdown(Shutdown::Timeout(timeout)),
        )
        .await
        .unwrap();
    // Taken by the supervisor (its hand-over is queued ahead of this
    // answer): a terminate finds it in the table.
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    testkit::hang(&child).await;
    child
}

/// A permanent child killed by its terminate (its shutdown timed out) is
/// not restarted: its exit is the terminate's, not one of its own.
#[tokio::test(start_paused = true)]
async fn a_child_killed_by_its_terminate_is_not_restarted() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(flags(&telemetry)).await.unwrap();
    let child = hung_permanent_child(&sup, &kit, Duration::from_secs(1)).await;
    tokio::time::timeout(WAIT, sup.terminate_child(&child))
        .await
        .expect("the terminate answers")
        .unwrap();
    assert_eq!(child.exited().await, ExitReason::Killed);
    // Answered after any exit notice queued before it.
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    assert_eq!(kit.live(), 0);
    let events = probe.drain();
    assert!(
        !events
            .iter()
            .any(|e| e.is(events::CHILD_EXITED) || e.is(events::CHILD_RESTARTED)),
        "{events:?}"
    );
    sup.stop().await;
}

/// A `terminate_child` dropped before its child exited (its caller gave
/// up) still ends the child: it is killed, its place given back, and it
/// is not restarted.
#[tokio::test(start_paused = true)]
async fn a_terminate_child_dropped_midway_still_ends_the_child() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(flags(&telemetry)).await.unwrap();
    let child = hung_permanent_child(&sup, &kit, Duration::from_secs(60)).await;
    // The caller gives up long before the child's shutdown timeout.
    let gave_up = tokio::time::timeout(Duration::from_secs(1), sup.terminate_child(&child)).await;
    assert!(gave_up.is_err(), "the child ignores its stop: {gave_up:?}");
    assert_eq!(
        tokio::time::timeout(WAIT, child.exited())
            .await
            .expect("the dropped terminate killed the child"),
        ExitReason::Killed
    );
    assert_eq!(sup.count_children().await.unwrap().specs, 0);
    assert_eq!(kit.live(), 0);
    let events = probe.drain();
    assert!(
        !events.iter().any(|e| e.is(events::CHILD_RESTARTED)),
        "{events:?}"
    );
    sup.stop().await;
}

/// The supervisor's stop waits for a child a `terminate_child` is
/// stopping (it is stopped once, by that call), and reports it once.
#[tokio::test(start_paused = true)]
async fn stop_waits_for_a_child_being_terminated() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(flags(&telemetry)).await.unwrap();
    let child = sup
        .start_child(
            kit.spec("t")
                .with_shutdown(Shutdown::Timeout(Duration::from_secs(3))),
        )
        .await
        .unwrap();
    // Taken by the supervisor (its hand-over is queued ahead of this
    // answer): the terminate finds it in the table.
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    testkit::hang(&child).await;

    let began = Instant::now();
    // The terminate is polled first: it has asked the child to stop
    // before the supervisor is asked to.
    let stop = async {
        sup.stop().await;
        assert!(
            child.exited().now_or_never().is_some(),
            "the supervisor stopped before its child"
        );
    };
    let (terminated, ()) = tokio::time::timeout(
        WAIT,
        futures::future::join(sup.terminate_child(&child), stop),
    )
    .await
    .expect("the terminate and the stop answer");
    assert!(terminated.is_ok(), "{terminated:?}");
    assert_eq!(began.elapsed(), Duration::from_secs(3));
    assert_eq!(child.exited().await, ExitReason::Killed);
    assert_eq!(kit.live(), 0);
    assert_eq!(count_events(&mut probe, events::CHILD_TERMINATED), 1);
}

/// `terminate_child` of a running child does not wait for the supervisor:
/// it answers while the supervisor is busy restarting another child
/// (whose start hangs), as the supervisor is not asked.
#[tokio::test(start_paused = true)]
async fn terminate_child_does_not_wait_for_a_busy_supervisor() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let (restarting_tx, mut restarting) = unbounded_channel::<()>();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let starts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let slow_kit = kit.clone();
    let slow_gate = gate.clone();
    let slow = ChildSpec::new("slow", move || {
        let (kit, gate, tx) = (slow_kit.clone(), slow_gate.clone(), restarting_tx.clone());
        let first = starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            if !first {
                let _ = tx.send(());
                gate.notified().await;
            }
            ProcessHandle::spawn::<testkit::TestChild>((kit, "slow".into())).await
        }
    });
    let slow = sup.start_child(slow).await.unwrap();
    let other = sup.start_child(kit.spec("other")).await.unwrap();
    testkit::crash(&slow).await;
    tokio::time::timeout(WAIT, restarting.recv())
        .await
        .expect("the supervisor restarts the crashed child")
        .unwrap();

    tokio::time::timeout(WAIT, sup.terminate_child(&other))
        .await
        .expect("terminate_child answers while the supervisor restarts")
        .unwrap();
    assert_eq!(other.exited().await, ExitReason::Shutdown(None));
    gate.notify_one();
    sup.stop().await;
    assert_eq!(kit.live(), 0);
}

// --- 5. the restart table -------------------------------------------------------

/// Starts one child of `restart` type, makes it exit with `exit`, and
/// returns the supervisor's decision and the child counts after it.
async fn restart_case(restart: RestartType, exit: ExitReason) -> (bool, usize, Option<Lifecycle>) {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(flags(&telemetry)).await.unwrap();
    let child = sup
        .start_child(kit.spec("c").with_restart(restart))
        .await
        .unwrap();
    next(&mut lifecycle).await;

    testkit::exit_with(&child, exit.clone()).await;
    let (reason, restarted) = exit_decision(&mut probe).await;
    assert_eq!(reason, exit.to_string());
    assert!(matches!(
        next(&mut lifecycle).await,
        Lifecycle::Stopped { .. }
    ));
    let specs = sup.count_children().await.unwrap().specs;
    // A restarted child reports its new start.
    let after = if restarted {
        Some(next(&mut lifecycle).await)
    } else {
        None
    };
    sup.stop().await;
    (restarted, specs, after)
}

#[tokio::test]
async fn permanent_restarted_after_normal_exit() {
    let (restarted, specs, after) = restart_case(RestartType::Permanent, ExitReason::Normal).await;
    assert!(restarted);
    assert_eq!(specs, 1);
    assert!(matches!(after, Some(Lifecycle::Started { .. })));
}

#[tokio::test]
async fn permanent_restarted_after_crash() {
    let (restarted, specs, _) =
        restart_case(RestartType::Permanent, ExitReason::error("boom")).await;
    assert!(restarted);
    assert_eq!(specs, 1);
}

#[tokio::test]
async fn transient_restarted_after_crash() {
    let (restarted, specs, after) =
        restart_case(RestartType::Transient, ExitReason::error("boom")).await;
    assert!(restarted);
    assert_eq!(specs, 1);
    assert!(matches!(after, Some(Lifecycle::Started { .. })));
}

#[tokio::test]
async fn transient_no_restart_on_normal_exit() {
    let (restarted, specs, _) = restart_case(RestartType::Transient, ExitReason::Normal).await;
    assert!(!restarted);
    assert_eq!(specs, 0);
}

#[tokio::test]
async fn transient_no_restart_on_shutdown() {
    let (restarted, specs, _) = restart_case(
        RestartType::Transient,
        ExitReason::Shutdown(Some("bye".into())),
    )
    .await;
    assert!(!restarted);
    assert_eq!(specs, 0);
}

#[tokio::test]
async fn temporary_no_restart_on_crash_and_removed() {
    let (restarted, specs, _) =
        restart_case(RestartType::Temporary, ExitReason::error("boom")).await;
    assert!(!restarted);
    assert_eq!(specs, 0);
}

#[tokio::test]
async fn a_panic_is_an_abnormal_exit() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(flags(&telemetry)).await.unwrap();
    let child = sup
        .start_child(kit.spec("c").with_restart(RestartType::Transient))
        .await
        .unwrap();
    next(&mut lifecycle).await;
    testkit::panic(&child).await;
    assert_eq!(
        child.exited().await,
        ExitReason::Panic("panic on command".into())
    );
    let (_, restarted) = exit_decision(&mut probe).await;
    assert!(restarted);
    sup.stop().await;
}

// --- 6. intensity -----------------------------------------------------------------

fn intensity(max_restarts: u32, secs: u64, telemetry: &Telemetry) -> DynamicSupervisorFlags {
    DynamicSupervisorFlags {
        intensity: Intensity {
            max_restarts,
            max_seconds: Duration::from_secs(secs),
        },
        ..flags(telemetry)
    }
}

#[tokio::test(start_paused = true)]
async fn exceeding_intensity_stops_children_in_reverse_and_exits_with_error() {
    let telemetry = Telemetry::new();
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(intensity(2, 5, &telemetry))
        .await
        .unwrap();
    for label in ["a", "b"] {
        sup.start_child(kit.spec(label)).await.unwrap();
        next(&mut lifecycle).await;
    }
    let mut crasher = sup.start_child(kit.spec("x")).await.unwrap();
    next(&mut lifecycle).await;

    // Two restarts are allowed...
    for _ in 0..2 {
        testkit::crash(&crasher).await;
        assert_eq!(next(&mut lifecycle).await.label(), "x"); // stopped
        let Lifecycle::Started { id, .. } = next(&mut lifecycle).await else {
            panic!("expected a restart")
        };
        crasher = sup
            .which_children()
            .await
            .unwrap()
            .into_iter()
            .find_map(|c| c.state.handle().filter(|h| h.id() == id).cloned())
            .unwrap();
    }
    // ...the third within the window makes the supervisor give up.
    testkit::crash(&crasher).await;
    let reason = sup.exited().await;
    assert!(
        matches!(&reason, ExitReason::Shutdown(Some(m)) if m.contains("max restart intensity")),
        "{reason:?}"
    );
    // The crasher's stop, then the others, stopped together.
    let mut stops: Vec<String> = std::iter::from_fn(|| lifecycle.try_recv().ok())
        .map(|l| l.label().to_owned())
        .collect();
    stops[1..].sort();
    assert_eq!(stops, ["x", "a", "b"]);
    assert_eq!(kit.live(), 0);
    assert!(matches!(
        sup.count_children().await,
        Err(SupervisorError::SupervisorGone)
    ));
}

#[tokio::test(start_paused = true)]
async fn intensity_window_slides() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(intensity(2, 5, &telemetry))
        .await
        .unwrap();
    sup.start_child(kit.spec("x")).await.unwrap();
    next(&mut lifecycle).await;

    let crash_now = async |probe: &mut TelemetryProbe,
                           lifecycle: &mut UnboundedReceiver<Lifecycle>| {
        let child = sup.which_children().await.unwrap()[0]
            .state
            .handle()
            .cloned()
            .unwrap();
        testkit::crash(&child).await;
        exit_decision(probe).await;
        next(lifecycle).await; // stopped
    };

    // t = 0 and t = 3: two restarts in the window.
    crash_now(&mut probe, &mut lifecycle).await;
    next(&mut lifecycle).await; // restarted
    testkit::advance(Duration::from_secs(3)).await;
    crash_now(&mut probe, &mut lifecycle).await;
    next(&mut lifecycle).await;
    // t = 5.5: the first restart has left the window, so this one is allowed.
    testkit::advance(Duration::from_millis(2500)).await;
    crash_now(&mut probe, &mut lifecycle).await;
    assert!(matches!(
        next(&mut lifecycle).await,
        Lifecycle::Started { .. }
    ));
    // t = 6: three restarts within five seconds (3, 5.5, 6): give up.
    testkit::advance(Duration::from_millis(500)).await;
    crash_now(&mut probe, &mut lifecycle).await;
    probe.wait_for(events::GAVE_UP, WAIT).await.unwrap();
    assert!(matches!(sup.exited().await, ExitReason::Shutdown(Some(_))));
}

#[tokio::test]
async fn the_parent_sees_a_supervisor_that_gave_up() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "exited"]);
    let parent = DynamicSupervisor::start(DynamicSupervisorFlags {
        name: "parent".into(),
        ..flags(&telemetry)
    })
    .await
    .unwrap();
    let inner_flags = DynamicSupervisorFlags {
        name: "inner".into(),
        ..intensity(0, 5, &telemetry)
    };
    let inner_handle = parent
        .start_child(DynamicSupervisor::child_spec("inner", inner_flags))
        .await
        .unwrap();
    let inner = DynamicSupervisor::from_handle(&inner_handle).unwrap();
    let (kit, mut lifecycle) = TestKit::new();
    let child = inner.start_child(kit.spec("w")).await.unwrap();
    next(&mut lifecycle).await;

    testkit::crash(&child).await; // intensity 0: the inner supervisor gives up
    let event = probe
        .wait_for_where(
            events::CHILD_EXITED,
            |e| e.meta_str("supervisor") == Some("parent"),
            WAIT,
        )
        .await
        .unwrap();
    assert!(
        event
            .meta_str("reason")
            .unwrap()
            .contains("max restart intensity")
    );
    assert_eq!(event.meta_bool("restart"), Some(true));
    assert_eq!(kit.live(), 0);
    parent.stop().await;
}

// --- 7. max_children, which_children, count_children -----------------------------

#[tokio::test]
async fn max_children_counts_a_child_being_restarted() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        max_children: Some(2),
        intensity: Intensity {
            max_restarts: u32::MAX,
            max_seconds: Duration::from_secs(3600),
        },
        ..flags(&telemetry)
    })
    .await
    .unwrap();
    sup.start_child(kit.spec("a")).await.unwrap();
    let b = sup.start_child(kit.spec("b")).await.unwrap();
    assert!(matches!(
        sup.start_child(kit.spec("c")).await,
        Err(SupervisorError::MaxChildren(2))
    ));

    // b crashes and cannot restart: it is retried, and still counts.
    kit.fail_starts(true);
    testkit::crash(&b).await;
    probe
        .wait_for(events::CHILD_START_FAILED, WAIT)
        .await
        .unwrap();
    assert!(matches!(
        sup.start_child(kit.spec("c")).await,
        Err(SupervisorError::MaxChildren(2))
    ));
    let children = sup.which_children().await.unwrap();
    assert_eq!(children.len(), 2);
    assert_eq!(&*children[0].id, "a");
    assert!(matches!(children[0].state, ChildState::Running(_)));
    assert_eq!(&*children[1].id, "b");
    assert_eq!(children[1].state, ChildState::Restarting);
    let counts = sup.count_children().await.unwrap();
    assert_eq!(
        (
            counts.specs,
            counts.active,
            counts.workers,
            counts.supervisors
        ),
        (2, 1, 2, 0)
    );

    // Once starts work again, the retry brings b back.
    kit.fail_starts(false);
    probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    assert_eq!(sup.count_children().await.unwrap().active, 2);
    sup.stop().await;
    assert_eq!(kit.live(), 0);
}

#[tokio::test]
async fn count_children_tells_supervisors_from_workers() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    sup.start_child(kit.spec("w")).await.unwrap();
    sup.start_child(DynamicSupervisor::child_spec("s", Default::default()))
        .await
        .unwrap();
    let counts = sup.count_children().await.unwrap();
    assert_eq!(
        (
            counts.specs,
            counts.active,
            counts.workers,
            counts.supervisors
        ),
        (2, 2, 1, 1)
    );
    let kinds: Vec<ChildKind> = sup
        .which_children()
        .await
        .unwrap()
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, [ChildKind::Worker, ChildKind::Supervisor]);
    sup.stop().await;
}

// --- 8. stop ------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn stop_stops_children_together_and_kills_a_child_that_ignores_it() {
    let (kit, mut lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let a = sup
        .start_child(
            kit.spec("a")
                .with_shutdown(Shutdown::Timeout(Duration::from_secs(1))),
        )
        .await
        .unwrap();
    let stuck = sup
        .start_child(
            kit.spec("stuck")
                .with_shutdown(Shutdown::Timeout(Duration::from_secs(3))),
        )
        .await
        .unwrap();
    let c = sup.start_child(kit.spec("c")).await.unwrap();
    for _ in 0..3 {
        next(&mut lifecycle).await;
    }
    testkit::hang(&stuck).await;

    let began = Instant::now();
    sup.stop().await;
    // Only the stuck child's timeout was waited out.
    assert_eq!(began.elapsed(), Duration::from_secs(3));
    // The killed child runs no on_stop; the others stop together.
    let mut stops: Vec<String> = std::iter::from_fn(|| lifecycle.try_recv().ok())
        .map(|l| l.label().to_owned())
        .collect();
    stops.sort();
    assert_eq!(stops, ["a", "c"]);
    assert_eq!(c.exited().await, ExitReason::Shutdown(None));
    assert_eq!(stuck.exited().await, ExitReason::Killed);
    assert_eq!(a.exited().await, ExitReason::Shutdown(None));
    assert_eq!(kit.live(), 0);
}

#[tokio::test]
async fn brutal_kill_does_not_wait() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let child = sup
        .start_child(kit.spec("k").with_shutdown(Shutdown::BrutalKill))
        .await
        .unwrap();
    // Taken by the supervisor (its hand-over is queued ahead of this
    // answer): the terminate finds it in the table.
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    testkit::hang(&child).await;
    sup.terminate_child(&child).await.unwrap();
    assert_eq!(child.exited().await, ExitReason::Killed);
    sup.stop().await;
}

#[tokio::test]
async fn dropping_every_handle_stops_the_children() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let child = sup.start_child(kit.spec("a")).await.unwrap();
    drop(sup);
    // The supervisor stops with its last handle, and stops its child.
    assert_eq!(child.exited().await, ExitReason::Shutdown(None));
    assert_eq!(kit.live(), 0);
}

// --- the hand-over from caller to supervisor ------------------------------------------

struct DiesAtOnce;

struct Die;

impl Actor for DiesAtOnce {
    type Args = ();
    type Error = ExitReason;

    async fn on_start(_: (), actor_ref: ActorRef<Self>) -> Result<Self, ExitReason> {
        // Queued ahead of anything else: the actor dies before the caller
        // has handed it over.
        let _ = actor_ref.tell(Die).try_send();
        Ok(DiesAtOnce)
    }
}

impl Message<Die> for DiesAtOnce {
    type Reply = Result<(), ExitReason>;

    async fn handle(&mut self, _: Die, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Err(ExitReason::error("died at once"))
    }
}

#[tokio::test]
async fn a_child_that_dies_right_after_starting_is_still_supervised() {
    let telemetry = Telemetry::new();
    let sup = DynamicSupervisor::start(intensity(2, 5, &telemetry))
        .await
        .unwrap();
    sup.start_child(ChildSpec::actor::<DiesAtOnce>("d", || ()))
        .await
        .unwrap();
    // Each death is seen and restarted, until the intensity runs out.
    let reason = sup.exited().await;
    assert!(
        matches!(&reason, ExitReason::Shutdown(Some(m)) if m.contains("max restart intensity")),
        "{reason:?}"
    );
}

#[tokio::test]
async fn a_child_started_as_the_supervisor_stops_is_not_left_running() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let stopper = sup.clone();
    let spawn_kit = kit.clone();
    let spec = ChildSpec::new("late", move || {
        let (stopper, kit) = (stopper.clone(), spawn_kit.clone());
        async move {
            stopper.stop().await;
            ProcessHandle::spawn::<testkit::TestChild>((kit, "late".into())).await
        }
    });
    assert!(matches!(
        sup.start_child(spec).await,
        Err(SupervisorError::SupervisorGone)
    ));
    assert_eq!(kit.live(), 0);
    assert!(matches!(
        sup.start_child(kit.spec("after")).await,
        Err(SupervisorError::SupervisorGone)
    ));
    assert_eq!(kit.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_start_child_dropped_midway_gives_its_slot_back() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        max_children: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let hung = ChildSpec::new("hung", std::future::pending);
    let cancelled = tokio::time::timeout(Duration::from_secs(1), sup.start_child(hung)).await;
    assert!(cancelled.is_err(), "the start never completes");
    // The slot the dropped call held is free again.
    sup.start_child(kit.spec("a")).await.unwrap();
    assert!(matches!(
        sup.start_child(kit.spec("b")).await,
        Err(SupervisorError::MaxChildren(1))
    ));
    sup.stop().await;
}
