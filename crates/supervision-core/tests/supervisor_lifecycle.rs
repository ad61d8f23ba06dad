//! Starting and stopping a static supervisor: children start in list order,
//! a failed start undoes itself, children stop in reverse order each by its
//! shutdown, and `stop` returns once everything below has stopped.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use mabeam_supervision_core::{
    ChildKind, ExitReason, ProcessHandle, Shutdown, StartError, Supervisor, SupervisorError,
    SupervisorFlags,
};
use tokio::{sync::Notify, time::Instant};

// Children start in list order, all before `start` returns.
#[tokio::test]
async fn children_start_in_list_order() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(roomy(strategy), ["a", "b", "c"].map(|id| lab.worker(id)))
            .await
            .unwrap();
        assert_eq!(
            events.drain(),
            [started("a"), started("b"), started("c")],
            "{strategy:?}"
        );
        assert_eq!(lab.live(), 3);
        sup.stop().await;
    }
}

// `stop` stops the children in reverse order, seen from the children, and
// returns once they have all stopped.
#[tokio::test]
async fn stop_stops_children_in_reverse_order() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(roomy(strategy), ["a", "b", "c"].map(|id| lab.worker(id)))
            .await
            .unwrap();
        events.take(3).await;
        let children: Vec<ProcessHandle> = sup
            .which_children()
            .await
            .unwrap()
            .iter()
            .map(|c| c.state.handle().unwrap().clone())
            .collect();

        assert_eq!(sup.stop().await, ExitReason::Shutdown(None));
        assert_eq!(
            events.drain(),
            [stopped("c"), stopped("b"), stopped("a")],
            "{strategy:?}"
        );
        assert_eq!(lab.live(), 0);
        for child in children {
            assert!(!child.is_alive());
            assert_eq!(child.exited().await, ExitReason::Shutdown(None));
        }
        assert!(matches!(
            sup.count_children().await,
            Err(SupervisorError::SupervisorGone)
        ));
    }
}

/// Starts `[a, b, bad, d]` where `bad` fails its start as `mode` makes it;
/// checks that a and b were stopped again in reverse order, d never started,
/// and the supervisor is gone; returns the start error.
async fn failing_start(mode: StartMode) -> StartError {
    let (lab, mut events) = Lab::new();
    let bad = lab
        .worker_with(
            "bad",
            Options {
                start: StartSwitch::new(mode),
                ..Options::default()
            },
        )
        .with_start_timeout(Duration::from_secs(2));
    let result = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker("a"), lab.worker("b"), bad, lab.worker("d")],
    )
    .await;
    let Err(SupervisorError::ChildStart { id, error }) = result else {
        panic!("expected a child start error, got {result:?}");
    };
    assert_eq!(&*id, "bad");
    assert_eq!(
        events.drain(),
        [started("a"), started("b"), stopped("b"), stopped("a")]
    );
    assert_eq!(lab.live(), 0);
    error
}

#[tokio::test]
async fn failing_start_error_stops_started_children_in_reverse() {
    let error = failing_start(StartMode::Fail).await;
    assert!(matches!(error, StartError::Failed(ref m) if m.contains("refused to start")));
}

#[tokio::test]
async fn failing_start_panic_stops_started_children_in_reverse() {
    let error = failing_start(StartMode::Panic).await;
    assert!(
        matches!(error, StartError::Panicked(ref m) if m.contains("start panicked")),
        "{error:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn failing_start_timeout_stops_started_children_in_reverse() {
    let t0 = Instant::now();
    let error = failing_start(StartMode::Hang).await;
    assert_eq!(error, StartError::Timeout(Duration::from_secs(2)));
    assert_eq!(t0.elapsed(), Duration::from_secs(2));
}

// A nested supervisor whose own child fails to start fails its parent's
// start in turn, and the whole tree is undone.
#[tokio::test]
async fn failing_start_deep_in_a_tree_undoes_the_tree() {
    let (lab, mut events) = Lab::new();
    let inner = Supervisor::child_spec(
        "inner",
        SupervisorFlags::default(),
        [lab.worker("x"), lab.failing("bad")],
    );
    let result = Supervisor::start(SupervisorFlags::default(), [lab.worker("a"), inner]).await;
    let Err(SupervisorError::ChildStart { id, .. }) = result else {
        panic!("expected a child start error, got {result:?}");
    };
    assert_eq!(&*id, "inner");
    assert_eq!(
        events.drain(),
        [started("a"), started("x"), stopped("x"), stopped("a")]
    );
    assert_eq!(lab.live(), 0);
}

// A child that ignores its shutdown is killed after its timeout (its
// on_stop does not run); its siblings stop cleanly, in reverse order.
#[tokio::test(start_paused = true)]
async fn child_ignoring_shutdown_is_killed_after_its_timeout() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(
            roomy(strategy),
            [
                lab.worker("a"),
                lab.worker("stuck")
                    .with_shutdown(Shutdown::Timeout(Duration::from_secs(3))),
                lab.worker("c"),
            ],
        )
        .await
        .unwrap();
        events.take(3).await;
        let [a, stuck, c] = ["a", "stuck", "c"].map(|id| {
            let sup = sup.clone();
            async move { handle_of(&sup, id).await }
        });
        let (a, stuck, c) = (a.await, stuck.await, c.await);
        worker(&sup, "stuck").await.tell(Hang).await.unwrap();

        let t0 = Instant::now();
        sup.stop().await;
        assert_eq!(t0.elapsed(), Duration::from_secs(3), "{strategy:?}");
        // A killed child runs no on_stop, as OTP's kill runs no terminate.
        assert_eq!(events.drain(), [stopped("c"), stopped("a")], "{strategy:?}");
        assert_eq!(stuck.exited().await, ExitReason::Killed);
        assert_eq!(a.exited().await, ExitReason::Shutdown(None));
        assert_eq!(c.exited().await, ExitReason::Shutdown(None));
        assert_eq!(lab.live(), 0);
    }
}

// Brutal kill kills at once, without asking.
#[tokio::test(start_paused = true)]
async fn brutal_kill_kills_at_once() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker("a").with_shutdown(Shutdown::BrutalKill)],
    )
    .await
    .unwrap();
    events.take(1).await;
    let a = handle_of(&sup, "a").await;
    worker(&sup, "a").await.tell(Hang).await.unwrap();

    let t0 = Instant::now();
    sup.stop().await;
    assert_eq!(t0.elapsed(), Duration::ZERO);
    assert_eq!(a.exited().await, ExitReason::Killed);
    assert_eq!(lab.live(), 0);
}

// Infinity waits as long as the child takes: here until the test lets its
// on_stop finish, an hour later.
#[tokio::test(start_paused = true)]
async fn infinity_shutdown_waits_for_the_child() {
    let (lab, mut events) = Lab::new();
    let gate = Arc::new(Notify::new());
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker_with(
            "slow",
            Options {
                stop_gate: Some(gate.clone()),
                ..Options::default()
            },
        )
        .with_shutdown(Shutdown::Infinity)],
    )
    .await
    .unwrap();
    events.take(1).await;

    let stopping = tokio::spawn({
        let sup = sup.clone();
        async move { sup.stop().await }
    });
    assert_eq!(events.next_raw().await, Event::Stopping("slow".into()));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(!stopping.is_finished());
    assert_eq!(lab.live(), 1);

    gate.notify_one();
    assert_eq!(stopping.await.unwrap(), ExitReason::Shutdown(None));
    assert_eq!(events.drain(), [stopped("slow")]);
    assert_eq!(lab.live(), 0);
}

// A nested supervisor is a supervisor child whose shutdown is infinity.
#[tokio::test]
async fn nested_supervisor_is_a_supervisor_child_with_infinity_shutdown() {
    let (lab, _events) = Lab::new();
    let spec = Supervisor::child_spec("inner", SupervisorFlags::default(), [lab.worker("x")]);
    assert_eq!(spec.kind, ChildKind::Supervisor);
    assert_eq!(spec.shutdown, Shutdown::Infinity);
    let sup = Supervisor::start(SupervisorFlags::default(), [spec])
        .await
        .unwrap();
    let info = child_info(&sup, "inner").await.unwrap();
    assert_eq!(info.kind, ChildKind::Supervisor);
    let inner = Supervisor::from_handle(info.state.handle().unwrap()).unwrap();
    assert_eq!(inner.count_children().await.unwrap().active, 1);
    assert!(Supervisor::from_handle(&handle_of(&inner, "x").await).is_none());
    sup.stop().await;
    assert_eq!(lab.live(), 0);
}

// Dropping the last handle stops the supervisor and its children in order.
#[tokio::test]
async fn dropping_the_last_handle_stops_the_children() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker("a"), lab.worker("b")],
    )
    .await
    .unwrap();
    events.take(2).await;
    drop(sup);
    assert_eq!(events.take(2).await, [stopped("b"), stopped("a")]);
    assert_eq!(lab.live(), 0);
}

/// A tree of `width` supervisors under a root, each with `width`
/// supervisors, each with `width` workers.
fn tree(lab: &Lab, width: usize) -> Vec<mabeam_supervision_core::ChildSpec> {
    (0..width)
        .map(|i| {
            Supervisor::child_spec(
                format!("mid-{i}"),
                SupervisorFlags::default(),
                (0..width).map(|j| {
                    Supervisor::child_spec(
                        format!("leaf-{i}-{j}"),
                        SupervisorFlags::default(),
                        (0..width).map(|k| lab.worker(&format!("w-{i}-{j}-{k}"))),
                    )
                }),
            )
        })
        .collect()
}

// `stop` returns only once every process below has stopped: a tree of three
// levels and a thousand workers stops with no live worker left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_of_three_levels_and_a_thousand_workers_stops_with_none_left() {
    let (lab, mut events) = Lab::new();
    let root = Supervisor::start(SupervisorFlags::default(), tree(&lab, 10))
        .await
        .unwrap();
    assert_eq!(lab.live(), 1000);
    let counts = root.count_children().await.unwrap();
    assert_eq!(
        (counts.specs, counts.supervisors, counts.active),
        (10, 10, 10)
    );
    let mids: Vec<Supervisor> = root
        .which_children()
        .await
        .unwrap()
        .iter()
        .map(|c| Supervisor::from_handle(c.state.handle().unwrap()).unwrap())
        .collect();

    assert_eq!(root.stop().await, ExitReason::Shutdown(None));
    assert_eq!(lab.live(), 0);
    assert!(mids.iter().all(|mid| !mid.handle().is_alive()));
    // The last worker to stop is the first one started.
    let all = events.drain();
    assert_eq!(all.len(), 2000);
    assert_eq!(all.last(), Some(&stopped("w-0-0-0")));
    assert_eq!(all[1000], stopped("w-9-9-9"));
}

// Each level stops its children in reverse order: in a tree, the stop
// order is the exact reverse of the start order.
#[tokio::test]
async fn tree_stops_in_reverse_start_order() {
    let (lab, mut events) = Lab::new();
    let root = Supervisor::start(SupervisorFlags::default(), tree(&lab, 3))
        .await
        .unwrap();
    let starts: Vec<String> = events
        .take(27)
        .await
        .into_iter()
        .map(|e| match e {
            Event::Started(id) => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    root.stop().await;
    let stops: Vec<String> = events
        .drain()
        .into_iter()
        .map(|e| match e {
            Event::Stopped(id) => id,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(stops, starts.into_iter().rev().collect::<Vec<_>>());
}
