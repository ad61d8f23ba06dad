//! Issue 20 item 3: the mailbox belongs to the address, not the
//! incarnation. Tells queued behind a crash or a normal exit reach the
//! next incarnation in order (the message that crashed it is not handled
//! again); an agent that is not restarted answers its queued asks with a
//! typed error and counts the tells it drops.

mod common;

use std::{sync::Arc, time::Duration};

use common::setup;
use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentError, AgentRef};
use mabeam_supervision_core::{AgentStatus, RestartType, StartError, testkit::TelemetryProbe};
use tokio::sync::{Semaphore, mpsc};

/// Records what it is told, in order; carries the record across restarts.
struct Recorder {
    seen: Vec<u32>,
    gate: Gate,
}

#[derive(Clone)]
struct Gate {
    permits: Arc<Semaphore>,
    events: mpsc::UnboundedSender<&'static str>,
}

enum Msg {
    /// Waits for a permit (the agent is busy meanwhile).
    Block,
    Push(u32),
    Crash,
    /// Ends the incarnation normally.
    Finish,
    Get,
}

impl Agent for Recorder {
    type Args = Gate;
    type Message = Msg;
    type Reply = Vec<u32>;
    type Checkpoint = Vec<u32>;

    async fn on_start(gate: Gate, checkpoint: Option<Vec<u32>>) -> Result<Self, StartError> {
        Ok(Recorder {
            seen: checkpoint.unwrap_or_default(),
            gate,
        })
    }

    async fn handle(&mut self, msg: Msg, ctx: &mut AgentContext<'_>) -> Vec<u32> {
        match msg {
            Msg::Block => {
                let _ = self.gate.events.send("blocked");
                self.gate.permits.acquire().await.unwrap().forget();
            }
            Msg::Push(n) => self.seen.push(n),
            Msg::Crash => panic!("crash on command"),
            Msg::Finish => ctx.stop(),
            Msg::Get => {}
        }
        self.seen.clone()
    }

    fn checkpoint(&self) -> Option<Vec<u32>> {
        Some(self.seen.clone())
    }
}

struct Fixture {
    s: common::Setup,
    a: AgentRef<Recorder>,
    permits: Arc<Semaphore>,
    events: mpsc::UnboundedReceiver<&'static str>,
}

async fn fixture(restart: RestartType) -> Fixture {
    let s = setup().await;
    let (tx, events) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let config = AgentConfig::new::<Recorder>(
        "recorder",
        Gate {
            permits: permits.clone(),
            events: tx,
        },
    )
    .with_restart(restart);
    s.agents.register_agent("a", config).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Recorder>("a").unwrap();
    Fixture {
        s,
        a,
        permits,
        events,
    }
}

impl Fixture {
    /// Makes the agent busy, so what is told next queues up.
    async fn block(&mut self) {
        self.a.tell(Msg::Block).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("the agent never blocked");
        assert_eq!(event, Some("blocked"));
    }
}

#[tokio::test]
async fn tells_queued_behind_a_crash_reach_the_next_incarnation_in_order() {
    let mut f = fixture(RestartType::Permanent).await;
    f.a.ask(Msg::Push(0)).await.unwrap();
    f.block().await;
    f.a.tell(Msg::Crash).await.unwrap();
    for n in 1..=3 {
        f.a.tell(Msg::Push(n)).await.unwrap();
    }
    // Queued behind the tells: answered by the next incarnation, after them.
    let get = tokio::spawn({
        let a = f.a.clone();
        async move { a.ask(Msg::Get).await }
    });
    f.permits.add_permits(1);
    assert_eq!(get.await.unwrap().unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(f.s.agents.details("a").unwrap().restarts, 1);
}

#[tokio::test]
async fn tells_queued_behind_a_normal_exit_reach_the_next_incarnation_in_order() {
    let mut f = fixture(RestartType::Permanent).await;
    f.block().await;
    f.a.tell(Msg::Finish).await.unwrap();
    f.a.tell(Msg::Push(1)).await.unwrap();
    f.a.tell(Msg::Push(2)).await.unwrap();
    f.permits.add_permits(1);
    let seen = tokio::time::timeout(Duration::from_secs(10), f.a.ask(Msg::Get))
        .await
        .expect("no answer")
        .unwrap();
    assert_eq!(seen, vec![1, 2]);
}

#[tokio::test]
async fn an_agent_not_restarted_fails_its_queued_asks_and_counts_its_dropped_tells() {
    let mut f = fixture(RestartType::Temporary).await;
    let mut probe = TelemetryProbe::attach(&f.s.telemetry, &["agent", "messages", "dropped"]);
    f.block().await;
    f.a.tell(Msg::Crash).await.unwrap();
    f.a.tell(Msg::Push(1)).await.unwrap();
    f.a.tell(Msg::Push(2)).await.unwrap();
    let get = tokio::spawn({
        let a = f.a.clone();
        async move { a.ask(Msg::Get).await }
    });
    f.permits.add_permits(1);
    let answer = tokio::time::timeout(Duration::from_secs(10), get)
        .await
        .expect("the queued ask hangs")
        .unwrap();
    assert!(
        matches!(
            answer,
            Err(AgentError::NotRunning {
                status: AgentStatus::Crashed,
                ..
            })
        ),
        "{answer:?}"
    );
    let dropped = probe
        .wait_for(&["agent", "messages", "dropped"], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(dropped.measurement("count"), Some(2.0));
    assert_eq!(f.s.agents.status("a"), Some(AgentStatus::Crashed));
}

#[tokio::test(start_paused = true)]
async fn asks_queued_behind_a_crash_fail_with_restarting_only_if_asked_to() {
    let s = common::setup_with(|o| o.with_clock(mabeam_supervision_core::Clock::tokio())).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let config = AgentConfig::new::<Recorder>(
        "recorder",
        Gate {
            permits: permits.clone(),
            events: tx,
        },
    )
    .with_restart(RestartType::Permanent)
    // The restart waits 10 s: the asks bounce while it is `Restarting`.
    .with_backoff(mabeam_supervision_core::Backoff::new(
        Duration::from_secs(10),
        Duration::from_secs(10),
    ));
    s.agents.register_agent("a", config).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Recorder>("a").unwrap();
    a.tell(Msg::Block).await.unwrap();
    assert_eq!(events.recv().await, Some("blocked"));
    a.tell(Msg::Crash).await.unwrap();
    a.tell(Msg::Push(1)).await.unwrap();
    let failing = tokio::spawn({
        let a = a.clone();
        async move {
            a.ask_with(
                Msg::Get,
                mabeam_agent_supervisor::CallOptions::timeout(Duration::from_secs(60))
                    .fail_while_restarting(),
            )
            .await
        }
    });
    let waiting = tokio::spawn({
        let a = a.clone();
        async move {
            a.ask_with(
                Msg::Get,
                mabeam_agent_supervisor::CallOptions::timeout(Duration::from_secs(60)),
            )
            .await
        }
    });
    // Both asks are queued behind the crash.
    while a_mailbox_len(&s) < 4 {
        tokio::task::yield_now().await;
    }
    permits.add_permits(1);
    let failed = failing.await.unwrap();
    assert!(
        matches!(failed, Err(AgentError::Restarting(_))),
        "{failed:?}"
    );
    assert_eq!(waiting.await.unwrap().unwrap(), vec![1]);
}

/// How many messages wait in agent `a`'s mailbox.
fn a_mailbox_len(s: &common::Setup) -> usize {
    s.agents
        .lookup("a")
        .and_then(|p| p.mailbox_len())
        .unwrap_or(0)
}
