//! How a DynamicSupervisor watches its children: one task for all of them
//! (not one each), sharing each child's exit with every other waiter of
//! it, and giving the children back to their waiters when the supervisor
//! is gone.

use std::time::Duration;

use kameo::prelude::*;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, ProcessHandle, Telemetry,
    events, testkit::TelemetryProbe,
};

const WAIT: Duration = Duration::from_secs(10);

#[derive(Actor)]
struct Worker;

fn spec() -> ChildSpec {
    ChildSpec::new("w", || ProcessHandle::spawn::<Worker>(Worker))
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn one_watcher_task_watches_every_child() {
    let before = alive_tasks();
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let mut children = Vec::new();
    for _ in 0..10 {
        children.push(sup.start_child(spec()).await.unwrap());
    }
    // A round trip: every hand-over has been handled.
    assert_eq!(sup.count_children().await.unwrap().active, 10);
    // The supervisor, its ten children, and one watcher task.
    assert_eq!(alive_tasks(), before + 1 + 10 + 1);
    sup.stop().await;
    for child in &children {
        assert_eq!(child.exited().await, ExitReason::Shutdown(None));
    }
}

#[tokio::test]
async fn a_watched_child_exit_reaches_its_other_waiters_and_its_restart() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags {
        telemetry: telemetry.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let child = sup.start_child(spec()).await.unwrap();
    sup.count_children().await.unwrap();
    let waiter = tokio::spawn({
        let child = child.clone();
        async move { child.exited().await }
    });

    child.kill();
    assert_eq!(
        tokio::time::timeout(WAIT, waiter).await.unwrap().unwrap(),
        ExitReason::Killed
    );
    let restarted = probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    assert_eq!(restarted.meta_str("child"), Some("w"));
    let running = sup.which_children().await.unwrap();
    assert_eq!(running.len(), 1);
    assert_ne!(running[0].state.handle().unwrap().id(), child.id());
    // Asked again, through a handle made separately, the same exit.
    let typed: ActorRef<Worker> = child.downcast().unwrap();
    assert_eq!(ProcessHandle::new(typed).exited().await, ExitReason::Killed);
    sup.stop().await;
}

#[tokio::test]
async fn a_killed_supervisor_gives_its_children_exits_to_their_waiters() {
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default())
        .await
        .unwrap();
    let child = sup.start_child(spec()).await.unwrap();
    sup.count_children().await.unwrap();

    sup.handle().kill();
    assert_eq!(sup.exited().await, ExitReason::Killed);
    assert_eq!(
        tokio::time::timeout(WAIT, child.exited()).await.unwrap(),
        ExitReason::Killed
    );
}

/// Under a multi-thread runtime: half the children killed behind the
/// supervisor's back (restarted), half terminated by it (not), all at
/// once; every exit is seen once and the supervisor ends with exactly the
/// restarted half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_and_terminations_at_once_each_count_once() {
    const N: usize = 200;
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let flags = DynamicSupervisorFlags::default()
        .with_telemetry(telemetry.clone())
        .with_intensity(1_000, Duration::from_secs(5));
    let sup = DynamicSupervisor::start(flags).await.unwrap();
    let mut children = Vec::new();
    for _ in 0..N {
        children.push(sup.start_child(spec()).await.unwrap());
    }
    let (killed, terminated) = children.split_at(N / 2);
    let kills = {
        let killed = killed.to_vec();
        tokio::spawn(async move {
            for child in &killed {
                child.kill();
            }
        })
    };
    for child in terminated {
        sup.terminate_child(child).await.unwrap();
    }
    kills.await.unwrap();
    for _ in 0..N / 2 {
        probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    }
    for child in killed {
        assert_eq!(child.exited().await, ExitReason::Killed);
    }
    for child in terminated {
        assert_eq!(child.exited().await, ExitReason::Shutdown(None));
    }
    let running = sup.which_children().await.unwrap();
    assert_eq!(running.len(), N / 2);
    assert!(running.iter().all(|info| {
        let handle = info.state.handle().unwrap();
        handle.is_alive() && !children.contains(handle)
    }));
    sup.stop().await;
}
