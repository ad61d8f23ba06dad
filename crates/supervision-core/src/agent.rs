//! Agents as the other crates see them: [`AgentId`], [`AgentStatus`] and the
//! [`AgentDirectory`] contract (reach an agent by id).

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::ProcessHandle;

/// An agent's id, chosen by whoever registers the agent; cheap to clone.
///
/// # Example
///
/// ```
/// use supervision_core::AgentId;
///
/// let id = AgentId::new("optimizer-1");
/// assert_eq!(id.as_str(), "optimizer-1");
/// assert_eq!(id, AgentId::from("optimizer-1"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AgentId(Arc<str>);

impl AgentId {
    /// An id from any string.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        AgentId(id.into())
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for AgentId {
    fn from(id: &str) -> Self {
        AgentId::new(id)
    }
}

impl From<String> for AgentId {
    fn from(id: String) -> Self {
        AgentId::new(id)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an agent is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentStatus {
    /// Known (its configuration is registered) but not started.
    Registered,
    /// Being started.
    Starting,
    /// Running.
    Running,
    /// Being stopped.
    Stopping,
    /// Stopped on purpose.
    Stopped,
    /// Exited abnormally and not (yet) restarted.
    Crashed,
    /// Being restarted by its supervisor.
    Restarting,
    /// Gave up on: its supervisor will not restart it.
    Failed,
}

impl AgentStatus {
    /// Whether the agent is running.
    pub fn is_running(self) -> bool {
        self == AgentStatus::Running
    }
}

/// Reach an agent by id: the contract agent-supervisor implements and
/// coordination and economics use, so those never depend on each other.
///
/// Lookups are synchronous and non-blocking.
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use supervision_core::{AgentDirectory, AgentId, AgentStatus, ProcessHandle};
///
/// struct Fixed(HashMap<AgentId, AgentStatus>);
///
/// impl AgentDirectory for Fixed {
///     fn agent(&self, _: &AgentId) -> Option<ProcessHandle> { None }
///     fn status(&self, id: &AgentId) -> Option<AgentStatus> { self.0.get(id).copied() }
///     fn agents(&self) -> Vec<(AgentId, AgentStatus)> {
///         self.0.iter().map(|(id, s)| (id.clone(), *s)).collect()
///     }
/// }
///
/// let dir = Fixed(HashMap::from([(AgentId::new("a"), AgentStatus::Stopped)]));
/// assert_eq!(dir.status(&"a".into()), Some(AgentStatus::Stopped));
/// ```
pub trait AgentDirectory: Send + Sync + 'static {
    /// The handle of the running agent `id`, if it is running.
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle>;

    /// The status of agent `id`, if it is known.
    fn status(&self, id: &AgentId) -> Option<AgentStatus>;

    /// Every known agent with its status.
    fn agents(&self) -> Vec<(AgentId, AgentStatus)>;
}
