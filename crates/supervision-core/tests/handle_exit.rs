//! An exit reason is a fact about the actor: the same through every handle
//! (clones, and handles made separately, as an actor makes of itself in
//! `on_start`), fixed when it stops, and the one the actor chose when its
//! `on_stop` returns an `ExitReason`.

use std::{sync::Arc, time::Duration};

use kameo::{
    actor::{Actor, ActorRef, WeakActorRef},
    error::ActorStopReason,
};
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, ExitReason, ProcessHandle, Supervisor, SupervisorFlags,
    Telemetry, events,
    testkit::{self, TelemetryProbe, TestChild, TestKit},
};
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

mod common;

use common::{Event, Finish, Lab, Options, Worker, handle_of};

const WAIT: Duration = Duration::from_secs(60);

/// An actor that makes a handle of itself in on_start, as an agent that
/// registers itself does, and hands it out.
struct SelfAware;

impl Actor for SelfAware {
    type Args = Arc<Mutex<Option<oneshot::Sender<ProcessHandle>>>>;
    type Error = ExitReason;

    async fn on_start(out: Self::Args, actor_ref: ActorRef<Self>) -> Result<Self, ExitReason> {
        if let Some(out) = out.lock().take() {
            let _ = out.send(ProcessHandle::new(actor_ref));
        }
        Ok(SelfAware)
    }
}

#[tokio::test]
async fn a_handle_the_actor_made_of_itself_sees_the_stop_its_supervisor_requested() {
    let (tx, rx) = oneshot::channel();
    let out = Arc::new(Mutex::new(Some(tx)));
    let sup = DynamicSupervisor::start(Default::default()).await.unwrap();
    let child = sup
        .start_child(ChildSpec::actor::<SelfAware>("self-aware", move || {
            out.clone()
        }))
        .await
        .unwrap();
    let own = rx.await.unwrap();
    assert_eq!(own, child);
    assert!(!own.stop_requested());

    sup.terminate_child(&child).await.unwrap();
    // The request is a fact every handle reads, as the exit is.
    assert!(own.stop_requested() && child.stop_requested());
    assert_eq!(child.exited().await, ExitReason::Shutdown(None));
    // Before: the handle made in on_start kept its own flag and said Normal.
    assert_eq!(own.exited().await, ExitReason::Shutdown(None));
    sup.stop().await;
}

#[tokio::test]
async fn a_stop_requested_after_the_actor_finished_keeps_its_normal_exit() {
    let (kit, _lifecycle) = TestKit::new();
    let child = ProcessHandle::spawn::<TestChild>((kit, "a".into()))
        .await
        .unwrap();
    let other = ProcessHandle::new(child.downcast::<TestChild>().unwrap());
    testkit::exit_normally(&child).await;
    assert_eq!(child.exited().await, ExitReason::Normal);

    // Before: the late stop flipped the recorded reason to Shutdown.
    assert_eq!(other.stop().await, ExitReason::Normal);
    assert_eq!(child.stop().await, ExitReason::Normal);
    assert_eq!(child.exited().await, ExitReason::Normal);
    assert_eq!(other.exited().await, ExitReason::Normal);
}

#[tokio::test(start_paused = true)]
async fn a_supervisor_stopping_a_child_that_already_finished_reports_it_normal() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor", "child", "terminated"]);
    let (lab, mut events) = Lab::new();
    let gate = Arc::new(Notify::new());
    let b_options = Options {
        stop_gate: Some(gate.clone()),
        ..Options::default()
    };
    let sup = Supervisor::start(
        SupervisorFlags::default().with_telemetry(telemetry.clone()),
        [lab.worker("a"), lab.worker_with("b", b_options)],
    )
    .await
    .unwrap();
    events.take(2).await;
    let a = handle_of(&sup, "a").await;
    let stopping = tokio::spawn({
        let sup = sup.clone();
        async move { sup.stop().await }
    });
    // The supervisor is busy stopping b (reverse order) when a finishes by
    // itself: its shutdown then stops a child that already stopped.
    while events.next_raw().await != Event::Stopping("b".into()) {}
    let a_ref: ActorRef<Worker> = a.downcast().unwrap();
    a_ref.tell(Finish).await.unwrap();
    assert_eq!(a.exited().await, ExitReason::Normal);
    gate.notify_one();
    stopping.await.unwrap();

    // Before: the late stop flipped a's reason to Shutdown.
    assert_eq!(a.exited().await, ExitReason::Normal);
    let terminated = probe
        .wait_for_where(
            events::CHILD_TERMINATED,
            |e| e.meta_str("child") == Some("a"),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(terminated.meta_str("reason"), Some("normal"));
}

/// An actor whose on_stop fails with the reason it was started with.
struct FailsToStop(ExitReason);

impl Actor for FailsToStop {
    type Args = ExitReason;
    type Error = ExitReason;

    async fn on_start(reason: ExitReason, _: ActorRef<Self>) -> Result<Self, ExitReason> {
        Ok(FailsToStop(reason))
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), ExitReason> {
        Err(self.0.clone())
    }
}

#[tokio::test]
async fn an_exit_reason_returned_by_on_stop_is_kept_as_given() {
    for reason in [
        ExitReason::Normal,
        ExitReason::Shutdown(None),
        ExitReason::Shutdown(Some("maintenance".into())),
        ExitReason::error("disk full"),
    ] {
        let child = ProcessHandle::spawn::<FailsToStop>(reason.clone())
            .await
            .unwrap();
        // Before: a clean reason became Error("normal"), Error("shutdown")...
        let exit = tokio::time::timeout(WAIT, child.stop()).await.unwrap();
        assert_eq!(exit, reason);
        assert_eq!(child.exited().await, reason);
    }
}

#[tokio::test]
async fn every_handle_answers_a_kill_the_same() {
    let (kit, _lifecycle) = TestKit::new();
    let child = ProcessHandle::spawn::<TestChild>((kit.clone(), "k".into()))
        .await
        .unwrap();
    let other = ProcessHandle::new(child.downcast::<TestChild>().unwrap());
    testkit::hang(&child).await;
    other.kill();
    assert!(!child.is_alive());
    assert!(!child.stop_requested()); // a kill is not a stop request
    assert_eq!(child.exited().await, ExitReason::Killed);
    assert_eq!(other.exited().await, ExitReason::Killed);
    // A later stop changes nothing.
    assert_eq!(child.stop().await, ExitReason::Killed);
    assert_eq!(kit.live(), 0);
}

/// A process that is not a kameo actor (`ProcessHandle::spawn_process`):
/// its loop waits for a stop (or a panic order), and says when every
/// handle is gone.
#[derive(Default)]
struct Looper {
    stop: Notify,
    stopping: std::sync::atomic::AtomicBool,
    gone: Notify,
}

impl mabeam_supervision_core::Process for Looper {
    fn is_accepting(&self) -> bool {
        !self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    fn request_stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        self.stop.notify_one();
    }

    fn type_name(&self) -> &'static str {
        "Looper"
    }

    fn handles_gone(&self) {
        self.gone.notify_one();
    }
}

/// Spawns a looper whose loop ends `Shutdown` when it reaches its stop
/// (recording it in its handle), or panics when `panic` fires.
fn spawn_looper(panic: Option<oneshot::Receiver<()>>) -> (ProcessHandle, Arc<Looper>) {
    let looper = Arc::new(Looper::default());
    let handle = ProcessHandle::spawn_process(
        kameo::actor::ActorId::generate(),
        looper.clone(),
        |handle| {
            let handle = handle.downgrade();
            let looper = looper.clone();
            async move {
                match panic {
                    Some(panic) => tokio::select! {
                        () = looper.stop.notified() => {}
                        _ = panic => panic!("looper told to panic"),
                    },
                    None => looper.stop.notified().await,
                }
                if let Some(handle) = handle.upgrade() {
                    handle.stop_reached();
                }
                ExitReason::Shutdown(None)
            }
        },
    );
    (handle, looper)
}

#[tokio::test]
async fn a_task_process_reports_one_stop_and_one_exit_through_every_handle() {
    let (handle, looper) = spawn_looper(None);
    assert!(handle.is_alive());
    assert_eq!(handle.type_name(), "Looper");
    assert!(Arc::ptr_eq(handle.process::<Looper>().unwrap(), &looper));
    assert!(handle.downcast::<Worker>().is_none());
    let weak = handle.downgrade();
    let clone = handle.clone();

    let exit = tokio::time::timeout(WAIT, handle.stop())
        .await
        .expect("the stop");
    assert_eq!(exit, ExitReason::Shutdown(None));
    assert!(clone.stop_requested() && clone.stop_handled());
    assert!(!clone.is_alive() && !weak.is_alive());
    assert_eq!(clone.exited().await, ExitReason::Shutdown(None));
    assert_eq!(weak.exited().await, ExitReason::Shutdown(None));
}

#[tokio::test]
async fn a_killed_task_process_is_aborted_and_reports_killed() {
    let (handle, _looper) = spawn_looper(None);
    let watcher = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.exited().await })
    };
    handle.kill();
    let exit = tokio::time::timeout(WAIT, watcher)
        .await
        .expect("the kill")
        .unwrap();
    assert_eq!(exit, ExitReason::Killed);
    assert!(!handle.is_alive() && !handle.stop_requested());
    // A stop after the kill changes nothing.
    assert_eq!(handle.stop().await, ExitReason::Killed);
}

#[tokio::test]
async fn a_task_process_that_panics_reports_the_panic() {
    let (order, panic) = oneshot::channel();
    let (handle, _looper) = spawn_looper(Some(panic));
    order.send(()).unwrap();
    let exit = tokio::time::timeout(WAIT, handle.exited())
        .await
        .expect("the panic");
    assert_eq!(exit, ExitReason::Panic("looper told to panic".into()));
}

#[tokio::test]
async fn a_task_process_learns_when_its_last_handle_is_gone() {
    let (handle, looper) = spawn_looper(None);
    let weak = handle.downgrade();
    let gone = looper.gone.notified();
    tokio::pin!(gone);
    gone.as_mut().enable();
    let upgraded = weak.upgrade().expect("a strong handle lives");
    drop(handle);
    drop(upgraded);
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("handles_gone");
    // No strong handle comes back once they are all gone.
    assert!(weak.upgrade().is_none());
    weak.kill();
    assert_eq!(
        tokio::time::timeout(WAIT, weak.exited())
            .await
            .expect("the kill"),
        ExitReason::Killed
    );
}
