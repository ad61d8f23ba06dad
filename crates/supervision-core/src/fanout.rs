//! Asking many agents at once: [`AgentSelection`] names a set of agents (by
//! ids, kind or registry group) and [`ask_all`] sends each the same
//! envelope and collects every answer by the deadline, in a deterministic
//! order. Coordination (votes) and economics (bids) both work this way.

use std::collections::HashSet;

use futures::{StreamExt, stream::FuturesUnordered};
use thiserror::Error;
use tokio::time::Instant;

use crate::{
    AgentDirectory, AgentId, Clock, DirectoryError, Envelope, ErrorCode, Namespace, Registry,
};

/// A set of agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentSelection {
    /// These agents, in this order (repeats dropped).
    Ids(Vec<AgentId>),
    /// Every agent of this kind the directory knows, by id.
    Kind(String),
    /// The agents whose processes are members of this registry group, by
    /// the name each holds in the namespace (agents register under their
    /// id), by id.
    Group(String),
}

/// Why a selection resolved to no agents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SelectionError {
    /// Nobody is selected.
    #[error("no agent selected")]
    Empty,
    /// A group needs a registry to be resolved, and none was given.
    #[error("selecting group {0:?} needs a registry")]
    NoRegistry(String),
}

impl ErrorCode for SelectionError {
    fn code(&self) -> u32 {
        match self {
            SelectionError::Empty => 1911,
            SelectionError::NoRegistry(_) => 1912,
        }
    }
}

impl AgentSelection {
    /// The agents selected, each once, in a deterministic order.
    pub fn resolve(
        &self,
        directory: &dyn AgentDirectory,
        registry: Option<(&dyn Registry, &Namespace)>,
    ) -> Result<Vec<AgentId>, SelectionError> {
        let ids = match self {
            AgentSelection::Ids(ids) => {
                let mut seen = HashSet::new();
                ids.iter().filter(|id| seen.insert(*id)).cloned().collect()
            }
            AgentSelection::Kind(kind) => directory.agents_of_kind(kind),
            AgentSelection::Group(group) => {
                let (registry, namespace) =
                    registry.ok_or_else(|| SelectionError::NoRegistry(group.clone()))?;
                let members: HashSet<_> = registry.members(namespace, group).into_iter().collect();
                let mut ids: Vec<AgentId> = registry
                    .list(namespace)
                    .into_iter()
                    .filter(|(_, handle, _)| members.contains(handle))
                    .map(|(name, _, _)| AgentId::new(name))
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            }
        };
        if ids.is_empty() {
            return Err(SelectionError::Empty);
        }
        Ok(ids)
    }
}

/// One agent's answer to [`ask_all`].
#[derive(Debug, Clone, PartialEq)]
pub struct AgentReply {
    /// The agent.
    pub agent: AgentId,
    /// Its place in the list asked.
    pub index: usize,
    /// When the answer (or the failure) arrived, on the clock given.
    pub at: Instant,
    /// The answer.
    pub answer: Result<serde_json::Value, DirectoryError>,
}

/// Sends `envelope` to each of `agents` at once and waits for every
/// answer or failure (each bounded by the envelope's deadline). The
/// replies come sorted by arrival time, then by position in `agents`, so
/// simultaneous answers resolve the same way every time.
pub async fn ask_all(
    directory: &dyn AgentDirectory,
    agents: &[AgentId],
    envelope: &Envelope,
    clock: &Clock,
) -> Vec<AgentReply> {
    let mut asks: FuturesUnordered<_> = agents
        .iter()
        .enumerate()
        .map(|(index, agent)| {
            let ask = directory.ask(agent, envelope.clone());
            async move {
                let answer = ask.await;
                AgentReply {
                    agent: agent.clone(),
                    index,
                    at: clock.now(),
                    answer,
                }
            }
        })
        .collect();
    let mut replies = Vec::with_capacity(agents.len());
    while let Some(reply) = asks.next().await {
        replies.push(reply);
    }
    replies.sort_by_key(|reply| (reply.at, reply.index));
    replies
}
