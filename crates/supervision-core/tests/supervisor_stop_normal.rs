//! A child that exits `normal` by itself while its supervisor stops it
//! keeps `normal`; `shutdown` is only for a child the stop ended. OTP's
//! `shutdown/2` reports the reason the child's `'DOWN'` carries: `normal`
//! when it ended before it handled the `shutdown` exit signal. Here the
//! stop request waits in the child's mailbox while the child is in a
//! handler that ends by stopping the child.

use std::{future::Future, sync::Arc, time::Duration};

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, ProcessHandle, Shutdown,
    Supervisor, SupervisorFlags, Telemetry, events, testkit::TelemetryProbe,
};
use tokio::sync::{Notify, oneshot};

const WAIT: Duration = Duration::from_secs(60);

/// A worker that, on [`FinishWhen`], waits for a gate in its handler, then
/// stops by itself.
struct Finisher;

impl Actor for Finisher {
    type Args = ();
    type Error = ExitReason;

    async fn on_start(_: (), _: ActorRef<Self>) -> Result<Self, ExitReason> {
        Ok(Finisher)
    }
}

/// Enter the handler (say so), wait for the gate, then stop by itself.
struct FinishWhen {
    entered: oneshot::Sender<()>,
    gate: Arc<Notify>,
}

impl Message<FinishWhen> for Finisher {
    type Reply = ();

    async fn handle(&mut self, msg: FinishWhen, ctx: &mut Context<Self, ()>) {
        let _ = msg.entered.send(());
        msg.gate.notified().await;
        ctx.stop();
    }
}

/// A no-op, to show a stop that reaches the worker ends it with `Shutdown`.
struct Nothing;

impl Message<Nothing> for Finisher {
    type Reply = ();

    async fn handle(&mut self, _: Nothing, _: &mut Context<Self, ()>) {}
}

fn finisher(id: &str) -> ChildSpec {
    ChildSpec::actor::<Finisher>(id, || ()).with_shutdown(Shutdown::Timeout(WAIT))
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Puts the worker in its handler; returns the gate that lets it finish.
async fn busy_finishing(child: &ProcessHandle) -> Arc<Notify> {
    let (entered, rx) = oneshot::channel();
    let gate = Arc::new(Notify::new());
    let actor: ActorRef<Finisher> = child.downcast().unwrap();
    actor
        .tell(FinishWhen {
            entered,
            gate: gate.clone(),
        })
        .await
        .unwrap();
    within("the handler", rx).await.unwrap();
    gate
}

/// Waits until a stop has been requested of `child` (the request is made
/// by a supervisor's task; there is no event for it but the flag).
async fn stop_requested(child: &ProcessHandle) {
    within("the stop request", async {
        while !child.stop_requested() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test]
async fn a_handle_stop_that_the_actor_does_not_reach_leaves_its_normal_exit() {
    let child = ProcessHandle::spawn::<Finisher>(()).await.unwrap();
    let gate = busy_finishing(&child).await;
    let stopping = tokio::spawn({
        let child = child.clone();
        async move { child.stop().await }
    });
    stop_requested(&child).await;
    gate.notify_one();
    // Before: Shutdown(None), since a stop had been requested.
    assert_eq!(within("stop", stopping).await.unwrap(), ExitReason::Normal);
    assert_eq!(child.exited().await, ExitReason::Normal);
    assert!(child.stop_requested() && !child.stop_handled());

    // A stop the actor gets to still ends it with Shutdown.
    let child = ProcessHandle::spawn::<Finisher>(()).await.unwrap();
    let actor: ActorRef<Finisher> = child.downcast().unwrap();
    actor.tell(Nothing).await.unwrap();
    assert_eq!(child.stop().await, ExitReason::Shutdown(None));
    assert!(child.stop_handled());
}

#[tokio::test]
async fn a_static_child_that_exits_normal_during_terminate_child_keeps_normal() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, events::CHILD_TERMINATED);
    let sup = Supervisor::start(
        SupervisorFlags::default().with_telemetry(telemetry.clone()),
        [finisher("f"), finisher("g")],
    )
    .await
    .unwrap();
    let children = sup.which_children().await.unwrap();
    let f = children[0].state.handle().unwrap().clone();
    let g = children[1].state.handle().unwrap().clone();

    let gate = busy_finishing(&f).await;
    let terminating = tokio::spawn({
        let sup = sup.clone();
        async move { sup.terminate_child("f").await }
    });
    stop_requested(&f).await;
    gate.notify_one();
    within("terminate_child", terminating)
        .await
        .unwrap()
        .unwrap();
    // Before: Shutdown(None).
    assert_eq!(f.exited().await, ExitReason::Normal);
    let event = probe
        .wait_for_where(
            events::CHILD_TERMINATED,
            |e| e.meta_str("child") == Some("f"),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(event.meta_str("reason"), Some("normal"));

    // The same during the supervisor's own stop; g, which the stop
    // reaches, exits shutdown.
    let supervisor = Supervisor::start(
        SupervisorFlags::default().with_telemetry(telemetry.clone()),
        [finisher("h")],
    )
    .await
    .unwrap();
    let h = supervisor.which_children().await.unwrap()[0]
        .state
        .handle()
        .unwrap()
        .clone();
    let gate = busy_finishing(&h).await;
    let stopping = tokio::spawn({
        let supervisor = supervisor.clone();
        async move { supervisor.stop().await }
    });
    stop_requested(&h).await;
    gate.notify_one();
    within("the supervisor's stop", stopping).await.unwrap();
    assert_eq!(h.exited().await, ExitReason::Normal);

    sup.stop().await;
    assert_eq!(g.exited().await, ExitReason::Shutdown(None));
}

#[tokio::test]
async fn a_dynamic_child_that_exits_normal_during_terminate_child_keeps_normal() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, events::CHILD_TERMINATED);
    let sup =
        DynamicSupervisor::start(DynamicSupervisorFlags::new().with_telemetry(telemetry.clone()))
            .await
            .unwrap();
    let f = sup.start_child(finisher("f")).await.unwrap();
    let g = sup.start_child(finisher("g")).await.unwrap();
    let gate = busy_finishing(&f).await;
    let terminating = tokio::spawn({
        let (sup, f) = (sup.clone(), f.clone());
        async move { sup.terminate_child(&f).await }
    });
    stop_requested(&f).await;
    gate.notify_one();
    within("terminate_child", terminating)
        .await
        .unwrap()
        .unwrap();
    // Before: Shutdown(None).
    assert_eq!(f.exited().await, ExitReason::Normal);
    let event = probe
        .wait_for_where(
            events::CHILD_TERMINATED,
            |e| e.meta_str("child") == Some("f"),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(event.meta_str("reason"), Some("normal"));

    sup.terminate_child(&g).await.unwrap();
    assert_eq!(g.exited().await, ExitReason::Shutdown(None));
    sup.stop().await;
}
