//! The static supervisor's failed restarts, as OTP: rest_for_one retries
//! from the child whose start failed (issue 8, item 10a), one_for_all
//! restarts its whole group again; a start may answer `ignore` (10f); a
//! group's backoff timer goes when its members leave the wait or the
//! supervisor stops (item 9).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use mabeam_supervision_core::{
    Backoff, ChildSpec, ChildState, StartError, Strategy, Supervisor, SupervisorError, Telemetry,
    events, testkit::TelemetryProbe,
};

const WAIT: Duration = Duration::from_secs(10);

/// A worker spec whose `nth` start (from 0) answers `answer` instead.
fn failing_once(lab: &Lab, id: &str, nth: usize, answer: StartError) -> ChildSpec {
    let inner = lab.worker(id);
    let starts = Arc::new(AtomicUsize::new(0));
    ChildSpec::new(id, move || {
        let n = starts.fetch_add(1, Ordering::SeqCst);
        let (inner, answer) = (inner.clone(), answer.clone());
        async move {
            if n == nth {
                Err(answer)
            } else {
                inner.start().await
            }
        }
    })
}

/// After `a` crashes, the events up to the restart of `c`.
async fn restart_after_a_failed_start_of_b(strategy: Strategy) -> Vec<Event> {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        roomy(strategy),
        [
            lab.worker("a"),
            failing_once(&lab, "b", 1, StartError::failed("not now")),
            lab.worker("c"),
        ],
    )
    .await
    .unwrap();
    events.take(3).await;
    make_exit(&sup, "a", Exit::Error).await;
    let mut seen = Vec::new();
    loop {
        let event = events.next().await;
        seen.push(event.clone());
        if event == started("c") {
            break;
        }
    }
    sup.stop().await;
    assert_eq!(lab.live(), 0);
    seen
}

#[tokio::test]
async fn rest_for_one_retries_from_the_child_whose_start_failed() {
    let seen = restart_after_a_failed_start_of_b(Strategy::RestForOne).await;
    // a is restarted once and kept running; b and c are started again.
    assert_eq!(
        seen,
        [
            stopped("a"),
            stopped("c"),
            stopped("b"),
            started("a"),
            started("b"),
            started("c"),
        ]
    );
}

#[tokio::test]
async fn one_for_all_restarts_the_whole_group_after_a_failed_start() {
    let seen = restart_after_a_failed_start_of_b(Strategy::OneForAll).await;
    // a was started, b failed: a is stopped again and all start over.
    assert_eq!(
        seen,
        [
            stopped("a"),
            stopped("c"),
            stopped("b"),
            started("a"),
            stopped("a"),
            started("a"),
            started("b"),
            started("c"),
        ]
    );
}

#[tokio::test]
async fn a_start_that_answers_ignore_keeps_the_spec_not_running() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        roomy(Strategy::OneForAll),
        [
            lab.worker("a"),
            failing_once(&lab, "quiet", 0, StartError::Ignored),
            lab.worker("c"),
        ],
    )
    .await
    .expect("an ignored start does not fail the supervisor's start");
    assert_eq!(events.take(2).await, [started("a"), started("c")]);
    assert_eq!(
        child_info(&sup, "quiet").await.unwrap().state,
        ChildState::NotRunning
    );
    // It starts on request.
    sup.restart_child("quiet").await.unwrap();
    assert_eq!(events.next().await, started("quiet"));

    // start_child: kept, not running, and the caller is told.
    let answer = sup
        .start_child(failing_once(&lab, "later", 0, StartError::Ignored))
        .await;
    assert!(matches!(
        answer,
        Err(SupervisorError::Start(StartError::Ignored))
    ));
    assert_eq!(
        child_info(&sup, "later").await.unwrap().state,
        ChildState::NotRunning
    );

    // A group restart whose start of one member answers ignore: that member
    // stays not running, the others run.
    let sup2 = Supervisor::start(
        roomy(Strategy::OneForAll),
        [
            lab.worker("x"),
            failing_once(&lab, "y", 1, StartError::Ignored),
        ],
    )
    .await
    .unwrap();
    events.take(2).await;
    make_exit(&sup2, "x", Exit::Error).await;
    events.until(started("x")).await;
    let states = states(&sup2).await;
    assert!(matches!(states[0].1, ChildState::Running(_)));
    assert_eq!(states[1].1, ChildState::NotRunning);
    sup2.stop().await;
    sup.stop().await;
    assert_eq!(lab.live(), 0);
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn a_groups_backoff_timer_goes_with_its_members_and_its_supervisor() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "backoff"]);
    let (lab, mut events) = Lab::new();
    let hour = Duration::from_secs(3600);
    let baseline = alive_tasks();
    let sup = Supervisor::start(
        roomy(Strategy::OneForOne).with_telemetry(telemetry.clone()),
        [
            lab.worker("a").with_backoff(Backoff::new(hour, hour)),
            lab.worker("b").with_backoff(Backoff::new(hour, hour)),
        ],
    )
    .await
    .unwrap();
    events.take(2).await;

    make_exit(&sup, "a", Exit::Error).await;
    probe
        .wait_for(events::BACKOFF_SCHEDULED, WAIT)
        .await
        .unwrap();
    let with_timer = alive_tasks();
    sup.terminate_child("a").await.unwrap();
    assert_eq!(alive_tasks(), with_timer - 1, "a's timer is cancelled");

    make_exit(&sup, "b", Exit::Error).await;
    probe
        .wait_for(events::BACKOFF_SCHEDULED, WAIT)
        .await
        .unwrap();
    sup.stop().await;
    drop(sup);
    assert_eq!(alive_tasks(), baseline, "nothing outlives the supervisor");
}
