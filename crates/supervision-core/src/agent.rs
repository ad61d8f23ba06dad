//! Agents as the other crates see them: [`AgentId`], [`AgentStatus`] and the
//! [`AgentDirectory`] contract (reach an agent by id, ask or tell it a
//! protocol [`Envelope`]).
//!
//! Coordination and economics talk to agents without knowing their types:
//! they send an [`Envelope`] (a protocol name, a JSON body, a deadline)
//! through the directory, and the agent answers with JSON or says the
//! protocol is [`Unsupported`](DirectoryError::Unsupported).
//! agent-supervisor implements the directory; the umbrella injects it.

use std::{fmt, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{sync::broadcast, time::Instant};

use crate::{ErrorCode, ExitReason, ProcessHandle};

/// An agent's id, chosen by whoever registers the agent; cheap to clone.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::AgentId;
///
/// let id = AgentId::new("optimizer-1");
/// assert_eq!(id.as_str(), "optimizer-1");
/// assert_eq!(id, AgentId::from("optimizer-1"));
/// let name = String::from("optimizer-1");
/// assert_eq!(id, AgentId::from(&name)); // a borrowed String too
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

/// Maps keyed by `AgentId` can be read with a `&str`.
impl std::borrow::Borrow<str> for AgentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The id's string, shared (no copy): e.g. as a child spec's id.
impl From<&AgentId> for Arc<str> {
    fn from(id: &AgentId) -> Self {
        id.0.clone()
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

impl From<&String> for AgentId {
    fn from(id: &String) -> Self {
        AgentId::new(id.as_str())
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
    /// Finished its work and exited normally; not restarted.
    Completed,
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

/// A protocol message to an agent: which protocol, its JSON body, and the
/// deadline by which an answer is useful.
///
/// Protocol names are dotted, owner first (`coordination.vote`,
/// `economics.bid`), so an agent can tell protocols apart.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::Envelope;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let vote = Envelope::new("coordination.vote", serde_json::json!({"proposal": 7}), Duration::from_secs(1));
/// assert_eq!(&*vote.protocol, "coordination.vote");
/// assert!(vote.remaining() <= Duration::from_secs(1));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The protocol, e.g. `coordination.vote`.
    pub protocol: Arc<str>,
    /// The message, in the protocol's JSON shape.
    pub body: serde_json::Value,
    /// When the sender stops waiting: on tokio's clock, so it pauses with it.
    pub deadline: Instant,
    /// Whether an agent between incarnations answers
    /// [`Restarting`](DirectoryError::Restarting) at once instead of the
    /// call waiting (within the deadline) for its next incarnation. It
    /// travels with the call to the node that owns the agent.
    pub fail_if_restarting: bool,
}

impl Envelope {
    /// An envelope whose deadline is `timeout` from now (tokio's clock).
    pub fn new(protocol: impl Into<Arc<str>>, body: serde_json::Value, timeout: Duration) -> Self {
        Envelope::with_deadline(protocol, body, Instant::now() + timeout)
    }

    /// An envelope with an explicit deadline.
    pub fn with_deadline(
        protocol: impl Into<Arc<str>>,
        body: serde_json::Value,
        deadline: Instant,
    ) -> Self {
        Envelope {
            protocol: protocol.into(),
            body,
            deadline,
            fail_if_restarting: false,
        }
    }

    /// The same envelope, answered [`Restarting`](DirectoryError::Restarting)
    /// at once by an agent between incarnations (see
    /// [`fail_if_restarting`](Self::fail_if_restarting)).
    pub fn failing_if_restarting(mut self) -> Self {
        self.fail_if_restarting = true;
        self
    }

    /// The time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// Why an agent gave no answer to an [`Envelope`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// No agent has this id.
    #[error("agent {0} not found")]
    NotFound(AgentId),
    /// The agent is known but not running and cannot be woken (stopped,
    /// failed, completed).
    #[error("agent {agent} is not running ({status:?})")]
    NotRunning {
        /// The agent.
        agent: AgentId,
        /// Its status.
        status: AgentStatus,
    },
    /// The agent does not speak this protocol.
    #[error("agent {agent} does not support protocol {protocol:?}")]
    Unsupported {
        /// The agent.
        agent: AgentId,
        /// The protocol it refused.
        protocol: Arc<str>,
    },
    /// No answer by the envelope's deadline.
    #[error("agent {0} did not answer in time")]
    Timeout(AgentId),
    /// The agent stopped (crashed or was killed) before it answered.
    #[error("agent {agent} crashed before answering: {reason}")]
    Crashed {
        /// The agent.
        agent: AgentId,
        /// Why it stopped.
        reason: ExitReason,
    },
    /// The agent answered with an error of its protocol (a bad body, a
    /// refusal).
    #[error("agent {agent} rejected the message: {reason}")]
    Rejected {
        /// The agent.
        agent: AgentId,
        /// The agent's reason.
        reason: String,
    },
    /// The agent's mailbox is full and the message was not queued (`cast`).
    #[error("agent {0} mailbox is full")]
    MailboxFull(AgentId),
    /// The node that owns the agent is down or unreachable (the call may
    /// or may not have reached it before).
    #[error("agent {agent} is on node {node}, which is down: {reason}")]
    NodeDown {
        /// The agent.
        agent: AgentId,
        /// Its owner node.
        node: Arc<str>,
        /// Why the node is unreachable.
        reason: String,
    },
    /// The agent is between incarnations (moving to another node, or
    /// restarting) and cannot take the message now: retry.
    #[error("agent {0} is restarting")]
    Restarting(AgentId),
}

impl ErrorCode for DirectoryError {
    fn code(&self) -> u32 {
        match self {
            DirectoryError::NotFound(_) => 1901,
            DirectoryError::NotRunning { .. } => 1902,
            DirectoryError::Unsupported { .. } => 1903,
            DirectoryError::Timeout(_) => 1904,
            DirectoryError::Crashed { .. } => 1905,
            DirectoryError::Rejected { .. } => 1906,
            DirectoryError::MailboxFull(_) => 1907,
            DirectoryError::NodeDown { .. } => 1908,
            DirectoryError::Restarting(_) => 1909,
        }
    }
}

/// What the directory knows of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// The agent's id.
    pub id: AgentId,
    /// Its kind (the role or type its configuration names).
    pub kind: Arc<str>,
    /// Where it is in its lifecycle.
    pub status: AgentStatus,
    /// Whether it is passivated: running as far as callers see, its state
    /// kept, but with no task or mailbox until the next message wakes it.
    pub passivated: bool,
    /// How many times it has been restarted.
    pub restarts: u32,
}

/// A change of an agent's status, as [`AgentDirectory::subscribe`] delivers
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatusChange {
    /// The agent.
    pub id: AgentId,
    /// Its kind.
    pub kind: Arc<str>,
    /// The status it left (`None` when it was just registered).
    pub from: Option<AgentStatus>,
    /// The status it entered.
    pub to: AgentStatus,
}

/// The receiving end of a status subscription. A receiver that falls more
/// than the directory's buffer behind gets
/// [`RecvError::Lagged`](broadcast::error::RecvError::Lagged) with the count
/// it missed, never a silent gap.
pub type AgentStatusChanges = broadcast::Receiver<AgentStatusChange>;

/// Reach an agent by id: the contract agent-supervisor implements and
/// coordination and economics use, so those never depend on each other.
///
/// Lookups are synchronous and non-blocking. [`ask`](Self::ask) answers
/// within the envelope's deadline, always: an agent that is silent,
/// crashed or unknown is an error, never a hang. An agent's id outlives its
/// incarnations: an ask sent while it restarts reaches the next one (or
/// fails by the deadline).
///
/// # Example
///
/// A directory of agents that each answer one protocol by a function (a
/// real implementation hosts each agent in an actor):
///
/// ```
/// use std::{collections::HashMap, time::Duration};
/// use futures::future::BoxFuture;
/// use mabeam_supervision_core::{
///     AgentDirectory, AgentId, AgentInfo, AgentStatus, AgentStatusChanges, DirectoryError,
///     Envelope, ProcessHandle,
/// };
///
/// struct Doubler(HashMap<AgentId, i64>);
///
/// impl AgentDirectory for Doubler {
///     fn agent(&self, _: &AgentId) -> Option<ProcessHandle> { None }
///     fn info(&self, id: &AgentId) -> Option<AgentInfo> {
///         self.0.contains_key(id).then(|| AgentInfo {
///             id: id.clone(), kind: "doubler".into(), status: AgentStatus::Running,
///             passivated: false, restarts: 0,
///         })
///     }
///     fn agents(&self) -> Vec<AgentInfo> {
///         self.0.keys().filter_map(|id| self.info(id)).collect()
///     }
///     fn ask(&self, id: &AgentId, envelope: Envelope)
///         -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
///         let answer = match (self.0.get(id), &*envelope.protocol) {
///             (None, _) => Err(DirectoryError::NotFound(id.clone())),
///             (Some(factor), "math.double") => Ok(serde_json::json!(envelope.body.as_i64().unwrap_or(0) * factor)),
///             (Some(_), protocol) => Err(DirectoryError::Unsupported { agent: id.clone(), protocol: protocol.into() }),
///         };
///         Box::pin(async move { answer })
///     }
///     fn cast(&self, id: &AgentId, _: Envelope) -> Result<(), DirectoryError> {
///         self.0.get(id).map(|_| ()).ok_or_else(|| DirectoryError::NotFound(id.clone()))
///     }
///     fn subscribe(&self) -> AgentStatusChanges { tokio::sync::broadcast::channel(1).1 }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let dir = Doubler(HashMap::from([(AgentId::new("a"), 2)]));
/// let ask = Envelope::new("math.double", serde_json::json!(21), Duration::from_secs(1));
/// assert_eq!(dir.ask(&"a".into(), ask).await, Ok(serde_json::json!(42)));
/// assert_eq!(dir.status(&"a".into()), Some(AgentStatus::Running));
/// assert_eq!(dir.agents_of_kind("doubler"), vec![AgentId::new("a")]);
/// # }
/// ```
pub trait AgentDirectory: Send + Sync + 'static {
    /// The handle of the agent's current incarnation, if it is running and
    /// not passivated. Prefer [`ask`](Self::ask): a handle dies with its
    /// incarnation.
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle>;

    /// What the directory knows of agent `id`.
    fn info(&self, id: &AgentId) -> Option<AgentInfo>;

    /// Every known agent.
    fn agents(&self) -> Vec<AgentInfo>;

    /// The status of agent `id`, if it is known.
    fn status(&self, id: &AgentId) -> Option<AgentStatus> {
        self.info(id).map(|info| info.status)
    }

    /// The ids of the known agents of `kind`, in id order.
    fn agents_of_kind(&self, kind: &str) -> Vec<AgentId> {
        let mut ids: Vec<AgentId> = self
            .agents()
            .into_iter()
            .filter(|info| &*info.kind == kind)
            .map(|info| info.id)
            .collect();
        ids.sort();
        ids
    }

    /// Sends `envelope` to agent `id` and waits for its answer, at most
    /// until the envelope's deadline. A passivated agent is woken.
    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>>;

    /// Sends `envelope` to agent `id` without waiting for an answer. `Ok`
    /// means the message was queued for the agent, not that it was handled.
    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError>;

    /// Sends `envelope` to agent `id` without waiting for its answer, and
    /// resolves once the agent's owner took it for the agent's mailbox:
    /// an `Ok` tell is never silently lost. For an agent on this node it
    /// is [`cast`](Self::cast); a directory that reaches agents on other
    /// nodes overrides it to wait for the owner's acknowledgement.
    fn tell(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<(), DirectoryError>> {
        let taken = self.cast(id, envelope);
        Box::pin(async move { taken })
    }

    /// Subscribes to every agent's status changes from now on, in the order
    /// they happen per agent.
    fn subscribe(&self) -> AgentStatusChanges;
}
