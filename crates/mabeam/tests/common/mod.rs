//! What the umbrella's agent tests share.

#![allow(dead_code)]

use mabeam_agent_supervisor::{Agent, AgentContext};
use mabeam_supervision_core::StartError;

/// Counts; its count is its checkpoint, so it carries it across restarts
/// (and, durable, across a restart of the system).
pub(crate) struct Counter(u64);

impl Agent for Counter {
    type Args = ();
    type Message = u64;
    type Reply = u64;
    type Checkpoint = u64;

    async fn on_start(_: (), checkpoint: Option<u64>) -> Result<Self, StartError> {
        Ok(Counter(checkpoint.unwrap_or(0)))
    }

    async fn handle(&mut self, n: u64, _: &mut AgentContext<'_>) -> u64 {
        self.0 += n;
        self.0
    }

    fn checkpoint(&self) -> Option<u64> {
        Some(self.0)
    }
}
