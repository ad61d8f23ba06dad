//! The restart table of the static supervisor (the docs of `Supervisor`),
//! one test per cell, each run under every strategy:
//!
//! | exit reason \ restart type  | `Permanent` | `Transient`           | `Temporary` |
//! |-----------------------------|-------------|-----------------------|-------------|
//! | `Normal`, `Shutdown`        | restarted   | not running, kept     | removed     |
//! | `Killed`, `Panic`, `Error`  | restarted   | restarted             | removed     |
//!
//! A child that exits while the supervisor is stopping is never restarted.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use mabeam_supervision_core::{ChildState, ExitReason, RestartType, Strategy, Supervisor};

/// What became of the child after its exit.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Restarted,
    NotRunning,
    Removed,
}

/// Starts `[before, subject, after]` under `strategy`, makes `subject` (of
/// `restart` type) exit by `exit`, and returns what the supervisor did.
/// Checks on the way that a child that is not restarted takes no sibling
/// with it, and that the supervisor stops cleanly.
async fn exit_case(strategy: Strategy, restart: RestartType, exit: Exit) -> Outcome {
    let (lab, mut events) = Lab::new();
    let mut watch = Watch::new();
    let sup = Supervisor::start(
        watch.roomy(strategy),
        [
            lab.worker("before"),
            lab.worker_of("subject", restart),
            lab.worker("after"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        events.take(3).await,
        [started("before"), started("subject"), started("after")]
    );
    let siblings = [
        handle_of(&sup, "before").await,
        handle_of(&sup, "after").await,
    ];

    let old = make_exit(&sup, "subject", exit).await;
    watch.handled(&sup, "subject", &old).await;

    let outcome = match child_info(&sup, "subject").await {
        None => Outcome::Removed,
        Some(info) => match info.state {
            ChildState::Running(new) => {
                assert_ne!(new, old);
                // The new incarnation reports its own start.
                events.until(started("subject")).await;
                Outcome::Restarted
            }
            ChildState::NotRunning => Outcome::NotRunning,
            ChildState::Restarting => panic!("a restart failed"),
            ChildState::Terminated => panic!("nobody terminated it"),
        },
    };
    if outcome != Outcome::Restarted {
        assert_eq!(handle_of(&sup, "before").await, siblings[0]);
        assert_eq!(handle_of(&sup, "after").await, siblings[1]);
        assert!(siblings.iter().all(|s| s.is_alive()));
    }
    assert_eq!(sup.stop().await, ExitReason::Shutdown(None));
    assert_eq!(lab.live(), 0);
    outcome
}

async fn check(restart: RestartType, exit: Exit, expected: Outcome) {
    for strategy in STRATEGIES {
        assert_eq!(
            exit_case(strategy, restart, exit).await,
            expected,
            "{restart:?} child, {exit:?} exit, {strategy:?}"
        );
    }
}

// Permanent: always restarted.

#[tokio::test]
async fn permanent_restart_on_normal_exit() {
    check(RestartType::Permanent, Exit::Normal, Outcome::Restarted).await;
}

#[tokio::test]
async fn permanent_restart_on_shutdown() {
    check(RestartType::Permanent, Exit::Shutdown, Outcome::Restarted).await;
}

#[tokio::test]
async fn permanent_restart_on_error() {
    check(RestartType::Permanent, Exit::Error, Outcome::Restarted).await;
}

#[tokio::test]
async fn permanent_restart_on_panic() {
    check(RestartType::Permanent, Exit::Panic, Outcome::Restarted).await;
}

#[tokio::test]
async fn permanent_restart_on_kill() {
    check(RestartType::Permanent, Exit::Killed, Outcome::Restarted).await;
}

// Transient: restarted only after an abnormal exit; kept as not running.

#[tokio::test]
async fn transient_no_restart_on_normal_exit() {
    check(RestartType::Transient, Exit::Normal, Outcome::NotRunning).await;
}

#[tokio::test]
async fn transient_no_restart_on_shutdown() {
    check(RestartType::Transient, Exit::Shutdown, Outcome::NotRunning).await;
}

#[tokio::test]
async fn transient_restart_on_error() {
    check(RestartType::Transient, Exit::Error, Outcome::Restarted).await;
}

#[tokio::test]
async fn transient_restart_on_panic() {
    check(RestartType::Transient, Exit::Panic, Outcome::Restarted).await;
}

#[tokio::test]
async fn transient_restart_on_kill() {
    check(RestartType::Transient, Exit::Killed, Outcome::Restarted).await;
}

// Temporary: never restarted, removed whatever the reason.

#[tokio::test]
async fn temporary_no_restart_on_normal_exit() {
    check(RestartType::Temporary, Exit::Normal, Outcome::Removed).await;
}

#[tokio::test]
async fn temporary_no_restart_on_shutdown() {
    check(RestartType::Temporary, Exit::Shutdown, Outcome::Removed).await;
}

#[tokio::test]
async fn temporary_no_restart_on_error() {
    check(RestartType::Temporary, Exit::Error, Outcome::Removed).await;
}

#[tokio::test]
async fn temporary_no_restart_on_panic() {
    check(RestartType::Temporary, Exit::Panic, Outcome::Removed).await;
}

#[tokio::test]
async fn temporary_no_restart_on_kill() {
    check(RestartType::Temporary, Exit::Killed, Outcome::Removed).await;
}

// A child that exits during the supervisor's own shutdown: `last`'s on_stop
// crashes `first`, which the supervisor has not stopped yet. It must not be
// started again.
#[tokio::test]
async fn no_restart_during_shutdown() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let target = Arc::new(Mutex::new(None));
        let sup = Supervisor::start(
            roomy(strategy),
            [
                lab.worker("first"),
                lab.worker_with(
                    "last",
                    Options {
                        crash_on_stop: Some(target.clone()),
                        ..Options::default()
                    },
                ),
            ],
        )
        .await
        .unwrap();
        *target.lock().unwrap() = Some(worker(&sup, "first").await);

        sup.stop().await;
        assert_eq!(
            events.drain(),
            [
                started("first"),
                started("last"),
                stopped("last"),
                stopped("first")
            ],
            "{strategy:?}"
        );
        assert_eq!(lab.live(), 0);
    }
}

// A child whose exit reaches the supervisor after a stop was requested is
// not restarted, even though the exit came first in its mailbox: the
// supervisor is held in terminate_child (a child whose on_stop waits for
// the test), `a` crashes, a stop is requested, then the test lets go.
#[tokio::test]
async fn no_restart_once_a_stop_is_requested() {
    for strategy in STRATEGIES {
        let (lab, mut events) = Lab::new();
        let gate = Arc::new(tokio::sync::Notify::new());
        let sup = Supervisor::start(
            roomy(strategy),
            [
                lab.worker("a"),
                lab.worker_with(
                    "gated",
                    Options {
                        stop_gate: Some(gate.clone()),
                        ..Options::default()
                    },
                )
                .with_shutdown(mabeam_supervision_core::Shutdown::Infinity),
            ],
        )
        .await
        .unwrap();
        events.take(2).await;
        let a = handle_of(&sup, "a").await;
        let a_worker = worker(&sup, "a").await;
        let terminating = tokio::spawn({
            let sup = sup.clone();
            async move { sup.terminate_child("gated").await }
        });
        assert_eq!(events.next_raw().await, Event::Stopping("gated".into()));

        a_worker.tell(Crash).await.unwrap();
        a.exited().await;
        tokio::task::yield_now().await;
        sup.handle().request_stop().await;
        gate.notify_one();

        assert_eq!(sup.exited().await, ExitReason::Shutdown(None));
        assert!(terminating.await.unwrap().is_ok());
        let mut rest = events.drain();
        rest.sort_by_key(|e| format!("{e:?}"));
        assert_eq!(rest, [stopped("a"), stopped("gated")], "{strategy:?}");
        assert_eq!(lab.live(), 0);
    }
}
