//! A user-written agent kind: a counter that carries its count across a
//! crash in a checkpoint, and gives up its task while idle (passivation)
//! without losing its state. A thousand of them run side by side.
//!
//! Run it with `cargo run -p mabeam-agent-supervisor --example counter_agents`.

use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentRegistry, EnvelopeError};
use mabeam_supervision_core::{AgentStatus, Envelope, ExitReason, RestartType, StartError};

/// The agent's state: a count.
struct Counter {
    count: u64,
}

/// What a counter is asked.
enum CounterMsg {
    /// Adds to the count; answers the new count.
    Add(u64),
    /// Answers the count.
    Get,
    /// Fails, as a bug would: the registry restarts the agent.
    Crash,
}

impl Agent for Counter {
    type Args = u64;
    type Message = CounterMsg;
    type Reply = u64;
    type Checkpoint = u64;

    async fn on_start(start: u64, checkpoint: Option<u64>) -> Result<Self, StartError> {
        // After a crash the registry hands back the last checkpoint.
        Ok(Counter {
            count: checkpoint.unwrap_or(start),
        })
    }

    async fn handle(&mut self, msg: CounterMsg, ctx: &mut AgentContext<'_>) -> u64 {
        match msg {
            CounterMsg::Add(n) => self.count += n,
            CounterMsg::Get => {}
            CounterMsg::Crash => ctx.stop_with(ExitReason::error("lost its socket")),
        }
        self.count
    }

    /// Taken when an incarnation stops, for any reason.
    fn checkpoint(&self) -> Option<u64> {
        Some(self.count)
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<serde_json::Value, EnvelopeError> {
        match &*envelope.protocol {
            "counter.get" => Ok(serde_json::json!(self.count)),
            _ => Err(EnvelopeError::Unsupported),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agents = AgentRegistry::start(Default::default()).await?;

    // A thousand counters, each its own supervised process.
    for i in 0..1_000 {
        let id = format!("counter-{i}");
        let config = AgentConfig::new::<Counter>("counter", 0).with_restart(RestartType::Permanent);
        agents.register_agent(&id, config)?;
        agents.start_agent(&id).await?;
    }
    println!("running: {}", agents.counts().get(AgentStatus::Running));

    // A typed address outlives each incarnation.
    let c7 = agents.agent_ref::<Counter>("counter-7")?;
    c7.ask(CounterMsg::Add(41)).await?;
    println!("counter-7 = {}", c7.ask(CounterMsg::Add(1)).await?);

    // It crashes; the registry restarts it from its checkpoint. An ask
    // waits for the new incarnation rather than failing.
    c7.tell(CounterMsg::Crash).await?;
    let after = c7.ask(CounterMsg::Get).await?;
    let details = agents.details("counter-7").ok_or("counter-7 is gone")?;
    println!(
        "after a crash: counter-7 = {after}, restarts = {}",
        details.restarts
    );

    // Idle agents give up their task and mailbox; the state stays.
    for i in 0..1_000 {
        agents.passivate(&format!("counter-{i}")).await?;
    }
    let passivated = agents.list().iter().filter(|a| a.passivated).count();
    println!("passivated: {passivated}");
    // The next message wakes one transparently.
    println!("counter-7 woken: {}", c7.ask(CounterMsg::Get).await?);

    agents.stop().await; // every agent stopped, then the supervisor
    Ok(())
}
