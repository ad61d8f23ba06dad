//! TaskSupervisor on a runtime that has shut down (issue 21, item 8):
//! `spawn` answers a typed error, changes no count, and never deadlocks its
//! own thread.

use std::{sync::mpsc, time::Duration};

use mabeam_foundation_services::{TaskCounts, TaskError, TaskSupervisor};
use mabeam_supervision_core::ErrorCode;

const WAIT: Duration = Duration::from_secs(10);

// The spawn runs on a thread of its own: a deadlock there fails the test
// after 10 s instead of hanging it.
#[test]
fn spawning_on_a_runtime_that_has_shut_down_is_a_typed_error() {
    let tasks = TaskSupervisor::builder().build().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let handle = runtime.handle().clone();
    drop(runtime);
    let (tx, rx) = mpsc::channel();
    let spawner = tasks.clone();
    std::thread::spawn(move || {
        let _entered = handle.enter();
        let answers = (
            spawner.spawn(async {}).map(|_| ()),
            spawner
                .spawn_fallible(async { Ok::<(), String>(()) })
                .map(|_| ()),
            spawner.spawn_result(async { 1 }).map(|_| ()),
        );
        let _ = tx.send(answers);
    });
    let answers = rx
        .recv_timeout(WAIT)
        .expect("spawn on a shut-down runtime did not return within 10 s (deadlock)");
    assert_eq!(
        answers,
        (
            Err(TaskError::RuntimeShutDown),
            Err(TaskError::RuntimeShutDown),
            Err(TaskError::RuntimeShutDown)
        )
    );
    assert_eq!(TaskError::RuntimeShutDown.code(), 3307);
    assert_eq!(tasks.counts(), TaskCounts::default());
    assert_eq!(tasks.running(), 0);
}

// A task spawned, then dropped before its first poll (its runtime shut
// down with it queued) is recorded as aborted and frees its slot.
#[test]
fn a_task_dropped_before_its_first_poll_is_recorded_as_aborted() {
    let tasks = TaskSupervisor::builder().build().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(async { tasks.spawn(std::future::pending()) })
        .unwrap();
    assert_eq!(tasks.running(), 1);
    drop(runtime);
    assert_eq!(tasks.running(), 0, "the dropped task kept its slot");
    let counts = tasks.counts();
    assert_eq!((counts.spawned, counts.aborted), (1, 1));
}
