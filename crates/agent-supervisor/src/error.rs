//! [`AgentError`]: why a call of the agent layer failed, with stable codes
//! in agent-supervisor's range (5000-5999).

use std::sync::Arc;

use mabeam_supervision_core::{
    AgentId, AgentStatus, DirectoryError, ErrorCode, ExitReason, StartError, SupervisorError,
};
use thiserror::Error;

/// Why a call of the agent layer failed. A call that fails changes nothing
/// (no half-registered agent, no half-applied configuration).
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum AgentError {
    /// No agent is registered under this id.
    #[error("agent {0} not found")]
    NotFound(AgentId),
    /// An agent is already registered under this id.
    #[error("agent {0} already registered")]
    AlreadyRegistered(AgentId),
    /// The agent is already running (or starting).
    #[error("agent {0} is already running")]
    AlreadyRunning(AgentId),
    /// The agent is not running, here is its status.
    #[error("agent {agent} is not running ({status:?})")]
    NotRunning {
        /// The agent.
        agent: AgentId,
        /// Its status.
        status: AgentStatus,
    },
    /// The configuration is invalid: the field named, and why.
    #[error("invalid agent config: {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The agent is being restarted and the caller chose not to wait.
    #[error("agent {0} is restarting")]
    Restarting(AgentId),
    /// The agent's mailbox is full and the caller chose not to wait.
    #[error("agent {0} mailbox is full")]
    MailboxFull(AgentId),
    /// No answer within the call's timeout.
    #[error("agent {0} did not answer in time")]
    Timeout(AgentId),
    /// The agent stopped before it answered.
    #[error("agent {agent} stopped before answering: {reason}")]
    Crashed {
        /// The agent.
        agent: AgentId,
        /// Why it stopped (as far as known when the call failed).
        reason: ExitReason,
    },
    /// The agent could not be started.
    #[error("agent {agent} failed to start: {error}")]
    StartFailed {
        /// The agent.
        agent: AgentId,
        /// Why.
        error: StartError,
    },
    /// The agent is of another type than the one asked for.
    #[error("agent {agent} is not a {expected}")]
    WrongType {
        /// The agent.
        agent: AgentId,
        /// The type asked for.
        expected: &'static str,
    },
    /// The agent supervisor has stopped.
    #[error("agent supervisor gone")]
    SupervisorGone,
    /// The agent is being stopped (gracefully): nothing sent now would be
    /// handled.
    #[error("agent {0} is stopping")]
    Stopping(AgentId),
    /// The agent store refused or failed the change (a full disk, a stale
    /// generation, an I/O error): it is not acknowledged, and the registry
    /// is as it was before the call.
    #[error("agent store: {0}")]
    Store(#[from] mabeam_supervision_core::AgentStoreError),
    /// The agent's stored checkpoint cannot be read by this build (a newer
    /// format, undecodable bytes): the agent is `Failed` with this reason.
    #[error("agent {agent}: unreadable checkpoint: {reason}")]
    Checkpoint {
        /// The agent.
        agent: AgentId,
        /// Why it cannot be read.
        reason: String,
    },
    /// The agent's stored registration cannot be brought back (a kind
    /// this node has no recipe for, args its recipe refuses, a corrupt
    /// row): the agent is `Failed` with this reason.
    #[error("agent {agent} cannot be recovered: {reason}")]
    Unrecoverable {
        /// The agent.
        agent: AgentId,
        /// Why.
        reason: String,
    },
}

impl AgentError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        AgentError::InvalidConfig {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn from_supervisor(agent: &AgentId, err: SupervisorError) -> Self {
        match err {
            SupervisorError::Start(error) => AgentError::StartFailed {
                agent: agent.clone(),
                error,
            },
            _ => AgentError::SupervisorGone,
        }
    }

    /// The same failure as the [`AgentDirectory`](mabeam_supervision_core::AgentDirectory)
    /// contract reports it.
    pub fn to_directory_error(&self, agent: &AgentId) -> DirectoryError {
        match self {
            AgentError::NotFound(id) => DirectoryError::NotFound(id.clone()),
            AgentError::NotRunning { agent, status } => DirectoryError::NotRunning {
                agent: agent.clone(),
                status: *status,
            },
            AgentError::Timeout(id) => DirectoryError::Timeout(id.clone()),
            AgentError::Restarting(id) => DirectoryError::Restarting(id.clone()),
            AgentError::MailboxFull(id) => DirectoryError::MailboxFull(id.clone()),
            AgentError::Stopping(id) => DirectoryError::NotRunning {
                agent: id.clone(),
                status: AgentStatus::Stopping,
            },
            AgentError::Crashed { agent, reason } => DirectoryError::Crashed {
                agent: agent.clone(),
                reason: reason.clone(),
            },
            AgentError::StartFailed { agent, error } => DirectoryError::Crashed {
                agent: agent.clone(),
                reason: ExitReason::error(error),
            },
            other => DirectoryError::Rejected {
                agent: agent.clone(),
                reason: other.to_string(),
            },
        }
    }
}

impl ErrorCode for AgentError {
    fn code(&self) -> u32 {
        match self {
            AgentError::NotFound(_) => 5001,
            AgentError::AlreadyRegistered(_) => 5002,
            AgentError::AlreadyRunning(_) => 5003,
            AgentError::NotRunning { .. } => 5004,
            AgentError::InvalidConfig { .. } => 5005,
            AgentError::Restarting(_) => 5006,
            AgentError::MailboxFull(_) => 5007,
            AgentError::Timeout(_) => 5008,
            AgentError::Crashed { .. } => 5009,
            AgentError::StartFailed { .. } => 5010,
            AgentError::WrongType { .. } => 5011,
            AgentError::SupervisorGone => 5012,
            AgentError::Stopping(_) => 5013,
            AgentError::Store(_) => 5014,
            AgentError::Checkpoint { .. } => 5015,
            AgentError::Unrecoverable { .. } => 5016,
        }
    }
}

/// What an agent answers to an [`Envelope`](mabeam_supervision_core::Envelope) it
/// will not answer with a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The agent does not speak this protocol (the default answer).
    #[error("protocol not supported")]
    Unsupported,
    /// The agent speaks the protocol but refuses this message (a bad body,
    /// a refusal); the reason.
    #[error("rejected: {0}")]
    Rejected(Arc<str>),
}

impl ErrorCode for EnvelopeError {
    fn code(&self) -> u32 {
        match self {
            EnvelopeError::Unsupported => 5101,
            EnvelopeError::Rejected(_) => 5102,
        }
    }
}
