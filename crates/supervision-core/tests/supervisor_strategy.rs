//! The static supervisor's strategies: which children restart with a failed
//! one, in which order they stop and start again (seen from the children).

mod common;

use common::*;
use mabeam_supervision_core::{ChildState, RestartType, Strategy, Supervisor};

async fn four(lab: &Lab, strategy: Strategy, events: &mut Events) -> Supervisor {
    let sup = Supervisor::start(
        roomy(strategy),
        ["a", "b", "c", "d"].map(|id| lab.worker(id)),
    )
    .await
    .unwrap();
    assert_eq!(events.take(4).await.len(), 4);
    sup
}

// one_for_one: only the failed child restarts; the others keep running.
#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let (lab, mut events) = Lab::new();
    let sup = four(&lab, Strategy::OneForOne, &mut events).await;
    let before = states(&sup).await;

    make_exit(&sup, "b", Exit::Error).await;
    assert_eq!(events.take(2).await, [stopped("b"), started("b")]);

    let after = states(&sup).await;
    for (i, id) in ["a", "c", "d"].iter().enumerate() {
        let i = if i == 0 { 0 } else { i + 1 };
        assert_eq!(after[i].0, *id);
        assert_eq!(after[i].1, before[i].1, "{id} was restarted");
    }
    assert_ne!(after[1].1, before[1].1);
    sup.stop().await;
    assert_eq!(events.drain().len(), 4);
    assert_eq!(lab.live(), 0);
}

// one_for_all: the others stop in reverse order, then all start in order.
#[tokio::test]
async fn one_for_all_stops_the_others_in_reverse_then_starts_all_in_order() {
    let (lab, mut events) = Lab::new();
    let sup = four(&lab, Strategy::OneForAll, &mut events).await;
    let before = states(&sup).await;

    make_exit(&sup, "b", Exit::Error).await;
    assert_eq!(
        events.take(8).await,
        [
            stopped("b"),
            stopped("d"),
            stopped("c"),
            stopped("a"),
            started("a"),
            started("b"),
            started("c"),
            started("d"),
        ]
    );
    let after = states(&sup).await;
    assert!(
        before
            .iter()
            .zip(&after)
            .all(|((_, old), (_, new))| old != new && new.handle().is_some())
    );
    sup.stop().await;
    assert_eq!(lab.live(), 0);
}

// rest_for_one: the failed child and those after it restart; those before
// it keep running.
#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let (lab, mut events) = Lab::new();
    let sup = four(&lab, Strategy::RestForOne, &mut events).await;
    let before = states(&sup).await;

    make_exit(&sup, "b", Exit::Panic).await;
    assert_eq!(
        events.take(6).await,
        [
            stopped("b"),
            stopped("d"),
            stopped("c"),
            started("b"),
            started("c"),
            started("d"),
        ]
    );
    let after = states(&sup).await;
    assert_eq!(after[0], before[0], "a was restarted");
    assert!((1..4).all(|i| after[i].1 != before[i].1));
    sup.stop().await;
    assert_eq!(lab.live(), 0);
}

// rest_for_one: the last child has nobody after it.
#[tokio::test]
async fn rest_for_one_last_child_restarts_alone() {
    let (lab, mut events) = Lab::new();
    let sup = four(&lab, Strategy::RestForOne, &mut events).await;

    make_exit(&sup, "d", Exit::Error).await;
    assert_eq!(events.take(2).await, [stopped("d"), started("d")]);
    // Nothing else happened: the next event is the shutdown's.
    sup.stop().await;
    assert_eq!(events.next().await, stopped("d"));
    assert_eq!(lab.live(), 0);
}

// A group restart stops its temporary members for good.
#[tokio::test]
async fn group_restart_removes_temporary_members() {
    for strategy in [Strategy::OneForAll, Strategy::RestForOne] {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(
            roomy(strategy),
            [
                lab.worker("a"),
                lab.worker_of("t", RestartType::Temporary),
                lab.worker("c"),
            ],
        )
        .await
        .unwrap();
        events.take(3).await;

        make_exit(&sup, "a", Exit::Error).await;
        assert_eq!(
            events.take(5).await,
            [
                stopped("a"),
                stopped("c"),
                stopped("t"),
                started("a"),
                started("c"),
            ],
            "{strategy:?}"
        );
        let ids: Vec<_> = states(&sup).await.into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, ["a", "c"], "{strategy:?}");
        sup.stop().await;
        assert_eq!(lab.live(), 0);
    }
}

// A group restart starts every member, one that was not running included
// (as OTP's does).
#[tokio::test]
async fn group_restart_starts_members_that_were_not_running() {
    for strategy in [Strategy::OneForAll, Strategy::RestForOne] {
        let (lab, mut events) = Lab::new();
        let sup = Supervisor::start(roomy(strategy), [lab.worker("a"), lab.worker("b")])
            .await
            .unwrap();
        events.take(2).await;
        sup.terminate_child("b").await.unwrap();
        assert_eq!(events.next().await, stopped("b"));

        make_exit(&sup, "a", Exit::Error).await;
        assert_eq!(
            events.take(3).await,
            [stopped("a"), started("a"), started("b")],
            "{strategy:?}"
        );
        assert!(matches!(
            child_info(&sup, "b").await.unwrap().state,
            ChildState::Running(_)
        ));
        sup.stop().await;
        assert_eq!(lab.live(), 0);
    }
}

// A transient child that finished normally does not take its group along.
#[tokio::test]
async fn transient_normal_exit_leaves_the_group_alone() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let mut watch = Watch::new();
        let sup = Supervisor::start(
            watch.roomy(strategy),
            [lab.worker_of("t", RestartType::Transient), lab.worker("b")],
        )
        .await
        .unwrap();
        events.take(2).await;
        let old = make_exit(&sup, "t", Exit::Normal).await;
        watch.handled(&sup, "t", &old).await;
        assert_eq!(events.next().await, stopped("t"));
        sup.stop().await;
        // Only b's shutdown: nothing restarted in between.
        assert_eq!(events.drain(), [stopped("b")], "{strategy:?}");
    }
}
