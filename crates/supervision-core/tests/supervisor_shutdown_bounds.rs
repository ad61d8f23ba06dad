//! A shutdown is bounded: a supervisor child's `Shutdown::Timeout` bounds
//! its whole subtree (a stuck worker under it is killed with it), a brutal
//! kill of a supervisor child kills its subtree without its graceful
//! shutdown, a child's `on_stop` is bounded by its timeout too, and a
//! dynamic supervisor stops its children together.

use std::{sync::Arc, time::Duration};

use kameo::actor::ActorRef;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Shutdown, Supervisor,
    SupervisorFlags,
    testkit::{self, TestKit},
};
use tokio::{sync::Notify, time::Instant};

mod common;

use common::{Event, Hang, Lab, Options, Worker, handle_of};

/// Bounds a wait that must end, so a regression fails instead of hanging
/// (on the paused clock this costs no real time).
const BOUND: Duration = Duration::from_secs(3600);

async fn bounded<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .unwrap_or_else(|_| panic!("{what} never returned"))
}

/// A root over a static supervisor child `inner` (shutdown `inner_shutdown`)
/// whose worker `w` has shutdown `Infinity` and hangs in a handler.
async fn tree_with_a_stuck_worker(
    inner_shutdown: Shutdown,
) -> (Supervisor, Supervisor, common::Events, Lab) {
    let (lab, mut events) = Lab::new();
    let inner = Supervisor::child_spec(
        "inner",
        SupervisorFlags::default(),
        [lab.worker("w").with_shutdown(Shutdown::Infinity)],
    )
    .with_shutdown(inner_shutdown);
    let root = Supervisor::start(SupervisorFlags::default(), [inner])
        .await
        .unwrap();
    events.take(1).await;
    let inner = Supervisor::from_handle(&handle_of(&root, "inner").await).unwrap();
    let w: ActorRef<Worker> = handle_of(&inner, "w").await.downcast().unwrap();
    w.tell(Hang).await.unwrap();
    (root, inner, events, lab)
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_childs_timeout_bounds_its_stuck_subtree() {
    let (root, inner, mut events, lab) =
        tree_with_a_stuck_worker(Shutdown::Timeout(Duration::from_millis(100))).await;
    let w = handle_of(&inner, "w").await;

    let began = Instant::now();
    // Before: pending for ever, the inner supervisor waiting on w.
    assert_eq!(
        bounded("root.stop()", root.stop()).await,
        ExitReason::Shutdown(None)
    );
    assert_eq!(began.elapsed(), Duration::from_millis(100));
    assert_eq!(inner.exited().await, ExitReason::Killed);
    assert_eq!(w.exited().await, ExitReason::Killed);
    // Killed, w ran no on_stop.
    assert_eq!(events.drain(), []);
    assert_eq!(lab.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_brutal_kill_of_a_supervisor_child_kills_its_subtree_at_once() {
    let (root, inner, mut events, lab) = tree_with_a_stuck_worker(Shutdown::BrutalKill).await;
    let w = handle_of(&inner, "w").await;

    let began = Instant::now();
    bounded("root.stop()", root.stop()).await;
    assert_eq!(began.elapsed(), Duration::ZERO);
    assert_eq!(inner.exited().await, ExitReason::Killed);
    assert_eq!(w.exited().await, ExitReason::Killed);
    assert_eq!(events.drain(), []);
    assert_eq!(lab.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_brutal_kill_of_a_supervisor_child_skips_its_graceful_shutdown() {
    // The worker stops cleanly when asked, but its supervisor is killed:
    // it is killed too, its on_stop not run.
    let (lab, mut events) = Lab::new();
    let inner = Supervisor::child_spec("inner", SupervisorFlags::default(), [lab.worker("w")])
        .with_shutdown(Shutdown::BrutalKill);
    let root = Supervisor::start(SupervisorFlags::default(), [inner])
        .await
        .unwrap();
    events.take(1).await;
    let inner = Supervisor::from_handle(&handle_of(&root, "inner").await).unwrap();
    let w = handle_of(&inner, "w").await;

    bounded("root.stop()", root.stop()).await;
    assert_eq!(w.exited().await, ExitReason::Killed);
    // Before: the subtree's graceful shutdown ran (w reported its stop).
    assert_eq!(events.drain(), []);
    assert_eq!(lab.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_childs_on_stop_is_bounded_by_its_timeout() {
    let (lab, mut events) = Lab::new();
    let gate = Arc::new(Notify::new()); // never opened: on_stop never returns
    let options = Options {
        stop_gate: Some(gate),
        ..Options::default()
    };
    let sup = Supervisor::start(
        SupervisorFlags::default(),
        [lab.worker_with("slow", options)
            .with_shutdown(Shutdown::Timeout(Duration::from_secs(1)))],
    )
    .await
    .unwrap();
    events.take(1).await;
    let slow = handle_of(&sup, "slow").await;

    let began = Instant::now();
    // Before: kameo's kill aborted the message loop, not the stop hook.
    bounded("sup.stop()", sup.stop()).await;
    assert_eq!(began.elapsed(), Duration::from_secs(1));
    assert_eq!(slow.exited().await, ExitReason::Killed);
    assert_eq!(events.next_raw().await, Event::Stopping("slow".into()));
    assert_eq!(events.drain(), []);
    assert_eq!(lab.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dynamic_supervisor_childs_timeout_bounds_its_stuck_subtree() {
    let (kit, _lifecycle) = TestKit::new();
    let root = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let inner = root
        .start_child(
            DynamicSupervisor::child_spec("inner", DynamicSupervisorFlags::default())
                .with_shutdown(Shutdown::Timeout(Duration::from_millis(100))),
        )
        .await
        .unwrap();
    let inner = DynamicSupervisor::from_handle(&inner).unwrap();
    let w = inner
        .start_child(kit.spec("w").with_shutdown(Shutdown::Infinity))
        .await
        .unwrap();
    testkit::hang(&w).await;

    let began = Instant::now();
    bounded("root.stop()", root.stop()).await;
    assert_eq!(began.elapsed(), Duration::from_millis(100));
    assert_eq!(inner.exited().await, ExitReason::Killed);
    assert_eq!(w.exited().await, ExitReason::Killed);
    assert_eq!(kit.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dynamic_supervisor_stops_its_children_together() {
    let (kit, _lifecycle) = TestKit::new();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let mut stuck = Vec::new();
    for label in ["a", "b", "c", "d"] {
        let spec: ChildSpec = kit
            .spec(label)
            .with_shutdown(Shutdown::Timeout(Duration::from_secs(1)));
        let child = sup.start_child(spec).await.unwrap();
        testkit::hang(&child).await;
        stuck.push(child);
    }

    let began = Instant::now();
    bounded("sup.stop()", sup.stop()).await;
    // Bounded by the slowest child; before: one timeout after another (4 s).
    assert_eq!(began.elapsed(), Duration::from_secs(1));
    for child in &stuck {
        assert_eq!(child.exited().await, ExitReason::Killed);
    }
    assert_eq!(kit.live(), 0);
}
