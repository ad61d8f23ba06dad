//! TaskSupervisor: fire-and-forget and awaited tasks, crashes reported and
//! counted, no link between caller and task, counts and max_children, and
//! the bounded shutdown, on tokio's paused clock.

use std::time::Duration;

use mabeam_foundation_services::{TaskError, TaskSupervisor};
use mabeam_supervision_core::{
    ApplicationSpec, Clock, ErrorCode, Health, Telemetry, testkit::TelemetryProbe,
};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(1);

fn supervisor(telemetry: &Telemetry) -> TaskSupervisor {
    TaskSupervisor::builder()
        .clock(Clock::tokio())
        .telemetry(telemetry.clone())
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

// An awaited task gives its value; a panic comes back as an error value,
// and is counted and emitted as a crash.
#[tokio::test]
async fn awaited_tasks_give_values_and_panics_as_errors() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["task_supervisor"]);
    let tasks = supervisor(&telemetry);
    assert_eq!(
        tasks.spawn_result(async { "done" }).unwrap().await,
        Ok("done")
    );
    let crashed = tasks.spawn_result(async { panic!("bad input") }).unwrap();
    let id = crashed.id();
    let error = crashed.await.unwrap_err();
    assert_eq!(error, TaskError::Panicked("bad input".into()));
    assert_eq!(error.code(), 3303);
    let event = probe
        .wait_for(&["task_supervisor", "task", "crashed"], WAIT)
        .await
        .unwrap();
    assert_eq!(event.meta_str("reason"), Some("bad input"));
    assert_eq!(
        event.meta("task_id"),
        Some(&mabeam_supervision_core::testkit::OwnedMeta::U64(id.0))
    );
    let counts = tasks.counts();
    assert_eq!(
        (counts.spawned, counts.completed, counts.crashed),
        (2, 1, 1)
    );
    assert_eq!(counts.running, 0);
}

// A fire-and-forget task's panic is never lost: emitted and counted.
#[tokio::test]
async fn fire_and_forget_crashes_are_reported() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["task_supervisor"]);
    let tasks = supervisor(&telemetry);
    let id = tasks.spawn(async { panic!("lost?") }).unwrap();
    let event = probe
        .wait_for(&["task_supervisor", "task", "crashed"], WAIT)
        .await
        .unwrap();
    assert_eq!(event.meta_str("reason"), Some("lost?"));
    assert_eq!(event.meta_str("supervisor"), Some("task_supervisor"));
    assert_eq!(
        event.meta("task_id"),
        Some(&mabeam_supervision_core::testkit::OwnedMeta::U64(id.0))
    );
    assert_eq!(tasks.counts().crashed, 1);

    // An error returned by a fallible task is reported too.
    tasks
        .spawn_fallible(async { Err::<(), _>("disk full") })
        .unwrap();
    let event = probe
        .wait_for(&["task_supervisor", "task", "failed"], WAIT)
        .await
        .unwrap();
    assert_eq!(event.meta_str("reason"), Some("disk full"));
    assert_eq!(tasks.counts().failed, 1);
}

// async_nolink: a caller that panics does not stop its task, and a handle
// dropped does not cancel it.
#[tokio::test]
async fn the_caller_and_the_task_are_not_linked() {
    let tasks = supervisor(&Telemetry::new());
    let (done_tx, done_rx) = oneshot::channel();
    let (gate_tx, gate_rx) = oneshot::channel::<()>();
    let caller = {
        let tasks = tasks.clone();
        tokio::spawn(async move {
            let _handle = tasks
                .spawn_result(async move {
                    let _ = gate_rx.await;
                    let _ = done_tx.send("finished");
                })
                .unwrap();
            panic!("the caller crashes");
        })
    };
    assert!(caller.await.unwrap_err().is_panic());
    assert_eq!(tasks.running(), 1, "the task outlived its caller");
    gate_tx.send(()).unwrap();
    assert_eq!(done_rx.await, Ok("finished"));

    // And the task's crash leaves the caller running: it gets a value.
    let crashed = tasks.spawn_result(async { panic!("task crash") }).unwrap();
    assert!(matches!(crashed.await, Err(TaskError::Panicked(_))));
}

// running counts the live tasks; max_children refuses more, nothing spawned.
#[tokio::test]
async fn running_count_and_max_children() {
    let tasks = TaskSupervisor::builder().max_children(2).build().unwrap();
    let (gate_a, wait_a) = oneshot::channel::<()>();
    let (gate_b, wait_b) = oneshot::channel::<()>();
    let a = tasks
        .spawn_result(async move { wait_a.await.is_ok() })
        .unwrap();
    let b = tasks
        .spawn_result(async move { wait_b.await.is_ok() })
        .unwrap();
    assert_eq!(tasks.running(), 2);
    let refused = tasks.spawn(async {}).unwrap_err();
    assert_eq!(refused, TaskError::MaxChildren(2));
    assert_eq!(refused.code(), 3301);
    assert_eq!(tasks.counts().spawned, 2);

    gate_a.send(()).unwrap();
    assert_eq!(a.await, Ok(true));
    assert_eq!(tasks.running(), 1);
    let c = tasks.spawn_result(async { 3 }).unwrap();
    assert_eq!(c.await, Ok(3));
    gate_b.send(()).unwrap();
    assert_eq!(b.await, Ok(true));
    assert_eq!(tasks.running(), 0);
    assert_eq!(
        TaskSupervisor::builder()
            .max_children(0)
            .build()
            .unwrap_err(),
        TaskError::MaxChildren(0)
    );
}

// Shutdown waits for tasks up to its timeout, then aborts the rest; the
// aborted are counted and emitted; no new task is taken.
#[tokio::test(start_paused = true)]
async fn shutdown_waits_then_aborts() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["task_supervisor"]);
    let tasks = supervisor(&telemetry);
    let clock = Clock::tokio();
    let quick = {
        let clock = clock.clone();
        tasks
            .spawn_result(async move {
                clock.sleep(Duration::from_secs(2)).await;
                "quick"
            })
            .unwrap()
    };
    let slow = {
        let clock = clock.clone();
        tasks
            .spawn_result(async move {
                clock.sleep(Duration::from_secs(3_600)).await;
                "slow"
            })
            .unwrap()
    };
    let report = tasks.stop().await;
    assert_eq!(report.aborted, 1);
    assert_eq!(report.duration, Duration::from_secs(5));
    assert_eq!(quick.await, Ok("quick"));
    assert_eq!(slow.await, Err(TaskError::Aborted));
    assert_eq!(TaskError::Aborted.code(), 3304);
    let aborted = probe
        .wait_for(&["task_supervisor", "task", "aborted"], WAIT)
        .await
        .unwrap();
    assert!(aborted.meta("task_id").is_some());
    let done = probe
        .wait_for(&["task_supervisor", "shutdown"], WAIT)
        .await
        .unwrap();
    assert_eq!(done.measurement("aborted"), Some(1.0));
    let counts = tasks.counts();
    assert_eq!(
        (counts.completed, counts.aborted, counts.running),
        (1, 1, 0)
    );

    assert_eq!(tasks.spawn(async {}), Err(TaskError::ShutDown));
    assert_eq!(TaskError::ShutDown.code(), 3302);
    tasks.reopen();
    assert_eq!(tasks.spawn_result(async { 1 }).unwrap().await, Ok(1));
}

// A shutdown whose tasks all finish in time aborts nothing and returns
// when the last one ends.
#[tokio::test(start_paused = true)]
async fn shutdown_returns_when_the_last_task_ends() {
    let tasks = supervisor(&Telemetry::new());
    let clock = Clock::tokio();
    for seconds in [1, 3, 2] {
        let clock = clock.clone();
        tasks
            .spawn(async move { clock.sleep(Duration::from_secs(seconds)).await })
            .unwrap();
    }
    let report = tasks.stop().await;
    assert_eq!(report.aborted, 0);
    assert_eq!(report.duration, Duration::from_secs(3));
    assert_eq!(tasks.counts().completed, 3);
}

// As a service: healthy while it runs; stopping the application shuts the
// tasks down (bounded); starting it again takes tasks again.
#[tokio::test(start_paused = true)]
async fn the_service_owns_the_tasks() {
    let telemetry = Telemetry::new();
    let tasks = supervisor(&telemetry);
    let app = ApplicationSpec::new("foundation")
        .service(tasks.service())
        .build()
        .unwrap();
    tasks.stop().await;
    app.start().await.unwrap();
    assert!(tasks.is_accepting(), "the service's start takes tasks");
    assert_eq!(
        app.health().await.of("task_supervisor"),
        Some(&Health::Healthy)
    );
    let forever = tasks.spawn_result(std::future::pending::<()>()).unwrap();
    app.stop().await.unwrap();
    assert_eq!(forever.await, Err(TaskError::Aborted));
    assert_eq!(tasks.spawn(async {}), Err(TaskError::ShutDown));
    app.start().await.unwrap();
    assert_eq!(tasks.spawn_result(async { 2 }).unwrap().await, Ok(2));
    app.stop().await.unwrap();
}

// Outside a tokio runtime, spawning is a typed error and takes no slot.
#[test]
fn spawning_outside_a_runtime_is_an_error() {
    let tasks = TaskSupervisor::builder().max_children(1).build().unwrap();
    let refused = tasks.spawn(async {}).unwrap_err();
    assert_eq!(refused, TaskError::NoRuntime);
    assert_eq!(refused.code(), 3306);
    assert_eq!(tasks.counts(), Default::default());
}
