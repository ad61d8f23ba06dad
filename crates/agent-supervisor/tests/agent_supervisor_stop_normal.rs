//! An agent stopped through its supervisor ends `Stopped` when the stop
//! ended it; one that stopped by itself first (in the handler it was in,
//! while the stop request waited in its mailbox) exits `Normal` and
//! follows its own policy, as supervision-core's children do (OTP's
//! `normal` vs `shutdown`).

use std::{sync::Arc, time::Duration};

use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext};
use mabeam_supervision_core::{AgentStatus, ExitReason, ProcessHandle, RestartType, StartError};
use tokio::sync::{Notify, oneshot};

mod common;

use common::setup;

const WAIT: Duration = Duration::from_secs(60);

/// On its message, says it is in the handler, waits for the gate, then
/// stops by itself.
struct Finisher;

struct FinishWhen {
    entered: oneshot::Sender<()>,
    gate: Arc<Notify>,
}

impl Agent for Finisher {
    type Args = ();
    type Message = FinishWhen;
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(_: (), _: Option<()>) -> Result<Self, StartError> {
        Ok(Finisher)
    }

    async fn handle(&mut self, msg: FinishWhen, ctx: &mut AgentContext<'_>) {
        let _ = msg.entered.send(());
        msg.gate.notified().await;
        ctx.stop();
    }
}

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn stop_requested(process: &ProcessHandle) {
    within("the stop request", async {
        while !process.stop_requested() {
            tokio::task::yield_now().await;
        }
    })
    .await
}

#[tokio::test]
async fn an_agent_that_stops_by_itself_during_its_supervisors_stop_keeps_normal() {
    let s = setup().await;
    s.agents
        .register_agent(
            "f",
            AgentConfig::new::<Finisher>("k", ()).with_restart(RestartType::Transient),
        )
        .unwrap();
    let process = s.agents.start_agent("f").await.unwrap();
    let agent = s.agents.agent_ref::<Finisher>("f").unwrap();
    let (entered, in_handler) = oneshot::channel();
    let gate = Arc::new(Notify::new());
    let asking = tokio::spawn({
        let gate = gate.clone();
        async move { agent.ask(FinishWhen { entered, gate }).await }
    });
    within("the handler", in_handler).await.unwrap();

    let stopping = tokio::spawn({
        let (supervisor, process) = (s.agents.supervisor().clone(), process.clone());
        async move { supervisor.terminate_child(&process).await }
    });
    stop_requested(&process).await;
    gate.notify_one();
    within("terminate_child", stopping).await.unwrap().unwrap();
    let _ = within("the ask", asking).await;

    // Before: Shutdown and Stopped, as if the stop had ended it.
    assert_eq!(process.exited().await, ExitReason::Normal);
    assert_eq!(s.agents.status("f"), Some(AgentStatus::Completed));
}

/// On its message, says it is in the handler and waits for the gate.
struct Holder;

impl Agent for Holder {
    type Args = ();
    type Message = FinishWhen;
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(_: (), _: Option<()>) -> Result<Self, StartError> {
        Ok(Holder)
    }

    async fn handle(&mut self, msg: FinishWhen, _: &mut AgentContext<'_>) {
        let _ = msg.entered.send(());
        msg.gate.notified().await;
    }
}

/// A stop request queues kameo's stop signal alone: the agent host sees
/// the signal itself as it comes out of its mailbox, so no mark is queued
/// ahead of it (one mailbox message per stop, not two: the lifecycle
/// benchmark's stop). The stop it gets to still ends it `Shutdown`, and
/// the agent `Stopped`.
#[tokio::test]
async fn a_stop_request_queues_one_message_and_the_stop_still_ends_the_agent_with_shutdown() {
    let s = setup().await;
    s.agents
        .register_agent("h", AgentConfig::new::<Holder>("k", ()))
        .unwrap();
    let process = s.agents.start_agent("h").await.unwrap();
    let agent = s.agents.agent_ref::<Holder>("h").unwrap();
    let (entered, in_handler) = oneshot::channel();
    let gate = Arc::new(Notify::new());
    let asking = tokio::spawn({
        let gate = gate.clone();
        async move { agent.ask(FinishWhen { entered, gate }).await }
    });
    within("the handler", in_handler).await.unwrap();

    // Returns once the request is queued; the agent is still in its
    // handler, so what the request queued waits in the mailbox.
    within("the stop request", process.request_stop()).await;
    // Before: Some(2), a mark ahead of the stop signal.
    assert_eq!(process.mailbox_len(), Some(1));
    assert!(process.stop_requested() && !process.stop_handled());

    gate.notify_one();
    within("the ask", asking).await.unwrap().unwrap();
    assert_eq!(
        within("the exit", process.exited()).await,
        ExitReason::Shutdown(None)
    );
    assert!(process.stop_handled());
    assert_eq!(s.agents.status("h"), Some(AgentStatus::Stopped));
}
