//! The agents of `bench coordination` and `bench economics`: real agents
//! (the [`Agent`] trait) started through agent-supervisor's
//! [`AgentRegistry`], reached by coordination and economics through the
//! registry's `AgentDirectory`, as a user's agents are.
//!
//! Each answers the protocols those crates send: a vote (`coordination.vote`:
//! yes), both phases of a Byzantine round (`coordination.byzantine.*`:
//! `"A"`), a variable change (`coordination.variable.changed`: counted),
//! and a sealed bid (`economics.bid`: an amount drawn from its id).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use anyhow::Result;
use mabeam_agent_supervisor::{
    Agent, AgentConfig, AgentContext, AgentRegistry, AgentRegistryOptions, EnvelopeError,
};
use mabeam_supervision_core::{Envelope, StartError};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Counts the variable changes delivered, and wakes the driver when the
/// count reaches its target.
#[derive(Debug)]
pub(crate) struct Seen {
    count: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
}

impl Seen {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Seen {
            count: AtomicUsize::new(0),
            target: AtomicUsize::new(usize::MAX),
            done: Notify::new(),
        })
    }

    /// Counts one delivery.
    pub(crate) fn one(&self) {
        let seen = self.count.fetch_add(1, Ordering::AcqRel) + 1;
        if seen == self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }

    /// Starts a round that ends after `n` deliveries.
    pub(crate) fn expect(&self, n: usize) {
        self.count.store(0, Ordering::Release);
        self.target.store(n, Ordering::Release);
    }

    /// Waits until the round's deliveries have all arrived.
    pub(crate) async fn all(&self) {
        let n = self.target.load(Ordering::Acquire);
        while self.count.load(Ordering::Acquire) < n {
            let notified = self.done.notified();
            if self.count.load(Ordering::Acquire) >= n {
                break;
            }
            notified.await;
        }
    }
}

/// An agent's id: `agent-NNNNNN`.
pub(crate) fn id(i: usize) -> String {
    format!("agent-{i:06}")
}

/// The sealed bid of agent number `i`.
pub(crate) fn bid_of(i: u64) -> f64 {
    ((i * 7919) % 100_000) as f64
}

/// The bench agent.
pub(crate) struct BenchAgent {
    seen: Arc<Seen>,
}

impl Agent for BenchAgent {
    type Args = Arc<Seen>;
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(seen: Arc<Seen>, _: Option<()>) -> Result<Self, StartError> {
        Ok(BenchAgent { seen })
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) {}

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        ctx: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        match &*envelope.protocol {
            mabeam_coordination::VOTE_PROTOCOL => Ok(json!({"vote": "yes"})),
            mabeam_coordination::PROPOSE_PROTOCOL | mabeam_coordination::CONFIRM_PROTOCOL => {
                Ok(json!({"value": "A"}))
            }
            mabeam_coordination::CHANGED_PROTOCOL => {
                self.seen.one();
                Ok(Value::Null)
            }
            mabeam_economics::BID_PROTOCOL => {
                let n: u64 = ctx
                    .id()
                    .as_str()
                    .trim_start_matches("agent-")
                    .parse()
                    .map_err(|_| EnvelopeError::Rejected("not a bench agent id".into()))?;
                Ok(json!({"bid": bid_of(n)}))
            }
            _ => Err(EnvelopeError::Unsupported),
        }
    }
}

/// A registry with `n` bench agents of kind `kind` started, one
/// configuration shared among them.
pub(crate) async fn start(n: usize, kind: &str, seen: &Arc<Seen>) -> Result<AgentRegistry> {
    let agents = AgentRegistry::start(AgentRegistryOptions::default()).await?;
    let config = Arc::new(AgentConfig::new::<BenchAgent>(kind, seen.clone()));
    for i in 0..n {
        let id = id(i);
        agents.register_agent(id.as_str(), config.clone())?;
        agents.start_agent(&id).await?;
    }
    Ok(agents)
}
