//! Issue 20 item 2: a dropped `start_agent` leaves nothing unsupervised.
//! Dropping the start while the incarnation is in its `on_start` (a client
//! gone, a caller's timeout) must not leave a running agent that its
//! supervisor never adopted: the registry and the supervisor agree.

mod common;

use std::{sync::Arc, time::Duration};

use common::{setup, setup_with};
use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentRegistryOptions};
use mabeam_supervision_core::{AgentStatus, StartError};
use tokio::sync::{Semaphore, mpsc};

/// An agent whose `on_start` waits for a permit, and that says when it
/// starts, started, and is dropped.
struct Gated {
    events: mpsc::UnboundedSender<&'static str>,
}

#[derive(Clone)]
struct Gate {
    permits: Arc<Semaphore>,
    events: mpsc::UnboundedSender<&'static str>,
}

impl Agent for Gated {
    type Args = Gate;
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(gate: Gate, _: Option<()>) -> Result<Self, StartError> {
        let _ = gate.events.send("starting");
        let _leaving = Leaving(gate.events.clone());
        gate.permits.acquire().await.unwrap().forget();
        let _ = gate.events.send("started");
        Ok(Gated {
            events: gate.events,
        })
    }

    async fn handle(&mut self, _: (), _: &mut AgentContext<'_>) {}
}

/// Says when `on_start` is left, however (returned, or its task aborted).
struct Leaving(mpsc::UnboundedSender<&'static str>);

impl Drop for Leaving {
    fn drop(&mut self) {
        let _ = self.0.send("left on_start");
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.events.send("dropped");
    }
}

fn gated() -> (
    AgentConfig,
    Arc<Semaphore>,
    mpsc::UnboundedReceiver<&'static str>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(0));
    let config = AgentConfig::new::<Gated>(
        "gated",
        Gate {
            permits: permits.clone(),
            events: tx,
        },
    );
    (config, permits, rx)
}

async fn next(events: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no event from the agent")
        .expect("events closed")
}

async fn drops_a_start_in_on_start(
    options: impl FnOnce(AgentRegistryOptions) -> AgentRegistryOptions,
) {
    let s = setup_with(options).await;
    let (config, permits, mut events) = gated();
    s.agents.register_agent("a", config).unwrap();

    // The start is dropped while the incarnation waits in its on_start.
    {
        let start = s.agents.start_agent("a");
        tokio::pin!(start);
        tokio::select! {
            result = &mut start => panic!("started without a permit: {result:?}"),
            event = next(&mut events) => assert_eq!(event, "starting"),
        }
    }
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Registered));

    // The incarnation is killed in its on_start: it never runs.
    assert_eq!(next(&mut events).await, "left on_start");
    permits.add_permits(1);
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Registered));
    assert!(s.agents.lookup("a").is_none());
    assert!(!s.registered("a"));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );

    // A start now works, and the supervisor holds what the registry runs.
    let process = s.agents.start_agent("a").await.unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Running));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        1
    );
    s.agents.stop().await;
    assert!(!process.is_alive());
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
}

#[tokio::test]
async fn a_start_dropped_in_on_start_leaves_no_agent_running() {
    drops_a_start_in_on_start(|o| o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_dropped_in_on_start_leaves_no_agent_running_on_an_agent_runtime() {
    let agent_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = agent_runtime.handle().clone();
    drops_a_start_in_on_start(move |o| o.with_runtime(handle)).await;
    agent_runtime.shutdown_background();
}

#[tokio::test]
async fn the_registry_and_the_supervisor_agree_after_many_dropped_starts() {
    let s = setup().await;
    let (config, permits, mut events) = gated();
    let config = Arc::new(config);
    let mut left = 0;
    for i in 0..20 {
        let id = format!("a{i}");
        s.agents
            .register_agent(id.as_str(), config.clone())
            .unwrap();
        let start = s.agents.start_agent(&id);
        tokio::pin!(start);
        loop {
            tokio::select! {
                result = &mut start => panic!("started without a permit: {result:?}"),
                event = next(&mut events) => match event {
                    "starting" => break,
                    "left on_start" => left += 1,
                    other => panic!("{other}"),
                },
            }
        }
    }
    while left < 20 {
        assert_eq!(next(&mut events).await, "left on_start");
        left += 1;
    }
    permits.add_permits(20);
    let running = s.agents.list_by_status(AgentStatus::Running).len();
    assert_eq!(running, 0);
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        running
    );
}
