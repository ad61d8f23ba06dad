//! Restart intensity of the static supervisor: the sliding window, giving up
//! (children stopped in reverse order, an error exit), escalation up a
//! tree, and group restarts whose start fails midway (retried through the
//! mailbox, never hanging). Time-based cases run on tokio's paused clock.

mod common;

use std::time::Duration;

use common::*;
use mabeam_supervision_core::{
    ChildState, ExitReason, Strategy, Supervisor, SupervisorError, SupervisorFlags,
};

fn flags(strategy: Strategy, max_restarts: u32, secs: u64) -> SupervisorFlags {
    SupervisorFlags::new(strategy).with_intensity(max_restarts, Duration::from_secs(secs))
}

/// A supervisor that gives up exits with `shutdown` and the cause, as OTP's.
fn is_gave_up(reason: &ExitReason) -> bool {
    matches!(reason, ExitReason::Shutdown(Some(m)) if m.contains("max restart intensity"))
}

/// Crashes `id` and waits for its restart, seen from the child.
async fn crash_and_wait_restart(sup: &Supervisor, events: &mut Events, id: &str) {
    make_exit(sup, id, Exit::Error).await;
    events.until(started(id)).await;
}

// Past max_restarts within the window, the supervisor stops the remaining
// children in reverse order and exits with an error.
#[tokio::test(start_paused = true)]
async fn gives_up_past_intensity_stopping_children_in_reverse() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(
            flags(strategy, 2, 5),
            ["a", "b", "c"].map(|id| lab.worker(id)),
        )
        .await
        .unwrap();
        events.take(3).await;
        crash_and_wait_restart(&sup, &mut events, "b").await;
        // The group restart (if any) is complete once c has started again.
        if strategy != Strategy::OneForOne {
            events.until(started("c")).await;
        }
        crash_and_wait_restart(&sup, &mut events, "b").await;
        if strategy != Strategy::OneForOne {
            events.until(started("c")).await;
        }
        assert!(sup.handle().is_alive());

        make_exit(&sup, "b", Exit::Error).await;
        assert!(is_gave_up(&sup.exited().await), "{strategy:?}");
        assert_eq!(
            events.drain(),
            [stopped("b"), stopped("c"), stopped("a")],
            "{strategy:?}"
        );
        assert_eq!(lab.live(), 0);
    }
}

// max_restarts 0: the first exit to restart makes it give up.
#[tokio::test]
async fn zero_restarts_gives_up_at_the_first_exit() {
    let (lab, mut events) = Lab::new();
    let sup = Supervisor::start(flags(Strategy::OneForOne, 0, 5), [lab.worker("a")])
        .await
        .unwrap();
    events.take(1).await;
    make_exit(&sup, "a", Exit::Panic).await;
    assert!(is_gave_up(&sup.exited().await));
    assert_eq!(events.drain(), [stopped("a")]);
    assert!(matches!(
        sup.which_children().await,
        Err(SupervisorError::SupervisorGone)
    ));
}

// Restarts leave the window max_seconds after they happened.
#[tokio::test(start_paused = true)]
async fn intensity_window_slides() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(flags(strategy, 2, 5), [lab.worker("a")])
            .await
            .unwrap();
        events.take(1).await;

        crash_and_wait_restart(&sup, &mut events, "a").await; // t = 0
        tokio::time::advance(Duration::from_secs(3)).await;
        crash_and_wait_restart(&sup, &mut events, "a").await; // t = 3
        tokio::time::advance(Duration::from_secs(2)).await;
        // t = 5: the first restart has left the window.
        crash_and_wait_restart(&sup, &mut events, "a").await;
        assert!(sup.handle().is_alive(), "{strategy:?}");
        tokio::time::advance(Duration::from_secs(1)).await;
        // t = 6: restarts at 3 and 5 are in the window: a third is too many.
        make_exit(&sup, "a", Exit::Error).await;
        assert!(is_gave_up(&sup.exited().await), "{strategy:?}");
        assert_eq!(lab.live(), 0);
    }
}

// Escalation through three levels: the leaf supervisor gives up, the middle
// one restarts its subtree by its strategy, the root sees nothing.
#[tokio::test]
async fn escalation_through_three_levels_middle_restarts_subtree() {
    for middle_strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let leaf =
            Supervisor::child_spec("leaf", flags(Strategy::OneForOne, 0, 5), [lab.worker("w")]);
        let middle = Supervisor::child_spec(
            "middle",
            flags(middle_strategy, 3, 5),
            [lab.worker("before"), leaf, lab.worker("after")],
        );
        let root = Supervisor::start(SupervisorFlags::default(), [lab.worker("r"), middle])
            .await
            .unwrap();
        assert_eq!(
            events.take(4).await,
            [
                started("r"),
                started("before"),
                started("w"),
                started("after")
            ]
        );
        let mid = Supervisor::from_handle(&handle_of(&root, "middle").await).unwrap();
        let old_leaf = handle_of(&mid, "leaf").await;
        let old = states(&mid).await;
        let r = handle_of(&root, "r").await;

        let w = make_exit(
            &Supervisor::from_handle(&old_leaf).unwrap(),
            "w",
            Exit::Error,
        )
        .await;
        assert!(matches!(w.exited().await, ExitReason::Error(_)));
        assert!(is_gave_up(&old_leaf.exited().await), "{middle_strategy:?}");

        let expected = match middle_strategy {
            Strategy::OneForOne => vec![stopped("w"), started("w")],
            Strategy::OneForAll => vec![
                stopped("w"),
                stopped("after"),
                stopped("before"),
                started("before"),
                started("w"),
                started("after"),
            ],
            Strategy::RestForOne => vec![
                stopped("w"),
                stopped("after"),
                started("w"),
                started("after"),
            ],
        };
        assert_eq!(
            events.take(expected.len()).await,
            expected,
            "{middle_strategy:?}"
        );
        let new = states(&mid).await;
        assert_ne!(new[1].1, old[1].1);
        assert_eq!(
            new[0].1 == old[0].1,
            middle_strategy != Strategy::OneForAll,
            "before"
        );
        assert_eq!(
            new[2].1 == old[2].1,
            middle_strategy == Strategy::OneForOne,
            "after"
        );
        // The root and its other child saw nothing.
        assert_eq!(handle_of(&root, "middle").await, *mid.handle());
        assert_eq!(handle_of(&root, "r").await, r);
        assert!(r.is_alive());

        root.stop().await;
        assert_eq!(lab.live(), 0);
    }
}

// Escalation to the root: with no room at any level, every supervisor gives
// up in turn and the root exits with the error.
#[tokio::test]
async fn escalation_to_the_root_stops_the_whole_tree() {
    let (lab, mut events) = Lab::new();
    let none = |strategy| flags(strategy, 0, 5);
    let leaf = Supervisor::child_spec("leaf", none(Strategy::OneForOne), [lab.worker("w")]);
    let middle = Supervisor::child_spec(
        "middle",
        none(Strategy::RestForOne),
        [lab.worker("m"), leaf],
    );
    let root = Supervisor::start(none(Strategy::OneForAll), [lab.worker("r"), middle])
        .await
        .unwrap();
    events.take(3).await;
    let mid = Supervisor::from_handle(&handle_of(&root, "middle").await).unwrap();
    let leaf = Supervisor::from_handle(&handle_of(&mid, "leaf").await).unwrap();

    make_exit(&leaf, "w", Exit::Error).await;
    assert!(is_gave_up(&root.exited().await));
    assert!(is_gave_up(&mid.exited().await));
    assert!(is_gave_up(&leaf.exited().await));
    assert_eq!(events.drain(), [stopped("w"), stopped("m"), stopped("r")]);
    assert_eq!(lab.live(), 0);
}

// A group restart whose start fails midway: the members it started are
// stopped again in reverse, the group shows as restarting, and the retry
// (through the mailbox) succeeds once the start does.
#[tokio::test]
async fn group_restart_failing_midway_is_retried() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let mut watch = Watch::new();
        let switch = StartSwitch::default();
        let sup = Supervisor::start(
            watch.roomy(strategy),
            [
                lab.worker("a"),
                lab.worker("b"),
                lab.worker_with(
                    "c",
                    Options {
                        start: switch.clone(),
                        ..Options::default()
                    },
                ),
            ],
        )
        .await
        .unwrap();
        events.take(3).await;
        let old_a = handle_of(&sup, "a").await;

        switch.set(StartMode::Fail);
        make_exit(&sup, "c", Exit::Error).await;
        let expected_restarting: &[&str] = match strategy {
            Strategy::OneForAll => &["a", "b", "c"],
            _ => &["c"],
        };
        watch
            .until(&sup, |children| {
                children.iter().all(|c| {
                    let restarting = expected_restarting.contains(&&*c.id);
                    restarting == (c.state == ChildState::Restarting)
                })
            })
            .await;
        switch.set(StartMode::Ok);
        watch
            .until(&sup, |children| {
                children.iter().all(|c| c.state.handle().is_some())
            })
            .await;

        let all = events.drain();
        if strategy == Strategy::OneForAll {
            // Stopped in reverse, then a and b started, stopped again in
            // reverse when c failed (perhaps several times), then all three.
            assert_eq!(
                all[..6],
                [
                    stopped("c"),
                    stopped("b"),
                    stopped("a"),
                    started("a"),
                    started("b"),
                    stopped("b"),
                ]
            );
            assert_eq!(all[6], stopped("a"));
            assert_eq!(
                all[all.len() - 3..],
                [started("a"), started("b"), started("c")]
            );
        } else {
            assert_eq!(all, [stopped("c"), started("c")], "{strategy:?}");
            assert_eq!(handle_of(&sup, "a").await, old_a);
        }
        assert!(sup.handle().is_alive());
        sup.stop().await;
        assert_eq!(lab.live(), 0);
    }
}

// A restart that keeps failing exhausts the intensity: the supervisor gives
// up instead of hanging, and stop() and admin calls still answer.
#[tokio::test]
async fn restart_that_keeps_failing_exhausts_intensity() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let switch = StartSwitch::default();
        let sup = Supervisor::start(
            flags(strategy, 5, 5),
            [
                lab.worker("a"),
                lab.worker_with(
                    "b",
                    Options {
                        start: switch.clone(),
                        ..Options::default()
                    },
                ),
            ],
        )
        .await
        .unwrap();
        events.take(2).await;
        switch.set(StartMode::Fail);
        make_exit(&sup, "b", Exit::Error).await;
        // Admin calls answer meanwhile, or say the supervisor is gone.
        match sup.count_children().await {
            Ok(counts) => assert_eq!(counts.specs, 2),
            Err(err) => assert!(matches!(err, SupervisorError::SupervisorGone)),
        }
        assert!(is_gave_up(&sup.exited().await), "{strategy:?}");
        assert_eq!(sup.stop().await, sup.exited().await);
        assert!(matches!(
            sup.which_children().await,
            Err(SupervisorError::SupervisorGone)
        ));
        assert_eq!(lab.live(), 0);
    }
}

// While a restart is retried (room for a million attempts), admin calls
// keep answering; terminating the failing child takes it out of the retry.
#[tokio::test]
async fn admin_calls_answer_while_a_restart_is_retried() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let mut watch = Watch::new();
        let switch = StartSwitch::default();
        let sup = Supervisor::start(
            SupervisorFlags::new(strategy)
                .with_intensity(1_000_000, Duration::from_secs(5))
                .with_telemetry(watch.telemetry()),
            [
                lab.worker("a"),
                lab.worker_with(
                    "b",
                    Options {
                        start: switch.clone(),
                        ..Options::default()
                    },
                ),
            ],
        )
        .await
        .unwrap();
        events.take(2).await;
        switch.set(StartMode::Fail);
        make_exit(&sup, "b", Exit::Error).await;
        watch
            .until(&sup, |children| children[1].state == ChildState::Restarting)
            .await;

        assert!(matches!(
            sup.restart_child("b").await,
            Err(SupervisorError::Restarting)
        ));
        assert!(matches!(
            sup.delete_child("b").await,
            Err(SupervisorError::Restarting)
        ));
        assert!(matches!(
            sup.start_child(lab.worker("b")).await,
            Err(SupervisorError::Restarting)
        ));
        assert_eq!(sup.count_children().await.unwrap().specs, 2);

        // Terminating b takes it out of the pending retry: the rest of its
        // group (a, under one_for_all) is started again without it.
        sup.terminate_child("b").await.unwrap();
        assert_eq!(
            child_info(&sup, "b").await.unwrap().state,
            ChildState::Terminated
        );
        watch
            .until(&sup, |children| children[0].state.handle().is_some())
            .await;
        // The retry is over: b stays down even once it could start.
        switch.set(StartMode::Ok);
        assert_eq!(
            child_info(&sup, "b").await.unwrap().state,
            ChildState::Terminated
        );
        sup.delete_child("b").await.unwrap();
        assert!(sup.handle().is_alive(), "{strategy:?}");
        sup.stop().await;
        assert_eq!(lab.live(), 0);
    }
}

// stop() returns while a restart is being retried, and nothing is left.
#[tokio::test]
async fn stop_returns_while_a_restart_is_retried() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let mut watch = Watch::new();
        let switch = StartSwitch::default();
        let sup = Supervisor::start(
            SupervisorFlags::new(strategy)
                .with_intensity(1_000_000, Duration::from_secs(5))
                .with_telemetry(watch.telemetry()),
            [
                lab.worker_with(
                    "a",
                    Options {
                        start: switch.clone(),
                        ..Options::default()
                    },
                ),
                lab.worker("b"),
            ],
        )
        .await
        .unwrap();
        events.take(2).await;
        switch.set(StartMode::Fail);
        make_exit(&sup, "a", Exit::Error).await;
        watch
            .until(&sup, |children| children[0].state == ChildState::Restarting)
            .await;

        assert_eq!(sup.stop().await, ExitReason::Shutdown(None), "{strategy:?}");
        assert_eq!(lab.live(), 0);
    }
}
