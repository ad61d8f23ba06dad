//! Issue 20 item 1: `Shutdown::Timeout` bounds every stop. An agent whose
//! `on_stop` never returns is killed after its shutdown timeout, `on_stop`
//! included: `stop_agent`, `deregister_agent` and the AgentSupervisor's
//! own stop return, the exit is `Killed`, the status `Stopped`.

mod common;

use std::time::Duration;

use common::setup;
use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext};
use mabeam_supervision_core::{AgentStatus, ExitReason, Shutdown, StartError};

/// An agent whose `on_stop` never returns.
struct Stuck;

impl Agent for Stuck {
    type Args = ();
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(_: (), _: Option<()>) -> Result<Self, StartError> {
        Ok(Stuck)
    }

    async fn handle(&mut self, _: (), _: &mut AgentContext<'_>) {}

    async fn on_stop(&mut self, _: &ExitReason) {
        std::future::pending::<()>().await
    }
}

fn stuck() -> AgentConfig {
    AgentConfig::new::<Stuck>("stuck", ()).with_shutdown(Shutdown::Timeout(Duration::from_secs(2)))
}

/// Fails the test if `f` outlasts a minute of (paused) time.
async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hangs"))
}

#[tokio::test(start_paused = true)]
async fn stop_agent_kills_an_agent_whose_on_stop_hangs() {
    let s = setup().await;
    s.agents.register_agent("a", stuck()).unwrap();
    let process = s.agents.start_agent("a").await.unwrap();

    bounded("stop_agent", s.agents.stop_agent("a"))
        .await
        .unwrap();
    assert_eq!(process.exited().await, ExitReason::Killed);
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
    assert_eq!(
        s.agents.details("a").unwrap().last_exit,
        Some(ExitReason::Killed)
    );
    assert!(!s.registered("a"));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );
    // It starts again on request.
    s.agents.start_agent("a").await.unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Running));
}

#[tokio::test(start_paused = true)]
async fn deregister_agent_returns_for_an_agent_whose_on_stop_hangs() {
    let s = setup().await;
    s.agents.register_agent("a", stuck()).unwrap();
    let process = s.agents.start_agent("a").await.unwrap();

    bounded("deregister_agent", s.agents.deregister_agent("a"))
        .await
        .unwrap();
    assert_eq!(process.exited().await, ExitReason::Killed);
    assert_eq!(s.agents.status("a"), None);
    assert!(!s.registered("a"));
}

#[tokio::test(start_paused = true)]
async fn the_agent_supervisor_stops_agents_whose_on_stop_hangs() {
    let s = setup().await;
    s.agents.register_agent("a", stuck()).unwrap();
    s.agents.register_agent("b", stuck()).unwrap();
    let a = s.agents.start_agent("a").await.unwrap();
    let b = s.agents.start_agent("b").await.unwrap();

    bounded("the supervisor's stop", s.agents.supervisor().stop()).await;
    assert_eq!(a.exited().await, ExitReason::Killed);
    assert_eq!(b.exited().await, ExitReason::Killed);
    assert!(!s.registered("a") && !s.registered("b"));

    // The registry's shutdown too.
    let s = setup().await;
    s.agents.register_agent("c", stuck()).unwrap();
    let c = s.agents.start_agent("c").await.unwrap();
    bounded("shutdown", s.agents.stop()).await;
    assert_eq!(c.exited().await, ExitReason::Killed);
    assert_eq!(s.agents.status("c"), Some(AgentStatus::Stopped));
}
