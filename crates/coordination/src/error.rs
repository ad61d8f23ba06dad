//! The errors of this crate, with stable codes in coordination's range
//! (6000-6999).

use mabeam_supervision_core::{AgentId, ErrorCode, SelectionError};
use thiserror::Error;

/// Why a coordination call failed. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum CoordinationError {
    /// No variable of this name.
    #[error("no variable {0:?}")]
    UnknownVariable(String),
    /// A variable of this name exists already.
    #[error("variable {0:?} already defined")]
    VariableExists(String),
    /// The value breaks the variable's type or range: names the rule.
    #[error("invalid value for {variable:?}: {rule}")]
    InvalidValue {
        /// The variable.
        variable: String,
        /// The rule broken.
        rule: String,
    },
    /// The variable moved on since the version the caller read.
    #[error("variable {variable:?} is at version {current}, not {expected}")]
    VersionConflict {
        /// The variable.
        variable: String,
        /// The version the caller expected.
        expected: u64,
        /// The version it is at.
        current: u64,
    },
    /// A consensus-gated update was voted down (or not enough answered).
    #[error("update of {variable:?} rejected: {explanation}")]
    UpdateRejected {
        /// The variable.
        variable: String,
        /// Why the vote failed.
        explanation: String,
    },
    /// A definition or request is invalid: names the field and the rule.
    #[error("invalid {0}")]
    Invalid(String),
    /// The participants could not be resolved.
    #[error(transparent)]
    Selection(#[from] SelectionError),
    /// Byzantine agreement needs n >= 3f + 1 participants.
    #[error("byzantine agreement tolerating {f} faults needs {needed} participants, got {got}")]
    TooFewParticipants {
        /// Faults to tolerate.
        f: usize,
        /// 3f + 1.
        needed: usize,
        /// How many there are.
        got: usize,
    },
    /// No such session.
    #[error("no session {0}")]
    UnknownSession(u64),
    /// The session was cancelled.
    #[error("session {0} was cancelled")]
    Cancelled(u64),
    /// A participant died (or left) before the barrier released.
    #[error("barrier broken: {0} stopped before arriving")]
    BarrierBroken(AgentId),
    /// The agent is not a participant of this barrier, election or lock.
    #[error("{0} is not a participant")]
    NotParticipant(AgentId),
    /// The lock is held by another agent (and the wait ran out).
    #[error("lock held by {holder}")]
    LockHeld {
        /// Who holds it.
        holder: AgentId,
    },
    /// A Byzantine round reached no value with a Byzantine quorum
    /// (⌈(n + f + 1) / 2⌉) of matching answers.
    #[error("no agreement: {explanation}")]
    NoAgreement {
        /// What the answers were.
        explanation: String,
        /// The participants caught answering inconsistently.
        faulty: Vec<AgentId>,
    },
    /// The caller does not hold the lock (it expired, or another holds it).
    #[error("{0} does not hold the lock")]
    NotHolder(AgentId),
    /// A wait ran out (a barrier's `arrive`, a campaign): names what.
    #[error("{what} timed out after {after:?}")]
    TimedOut {
        /// What was waited for.
        what: String,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// The agent is not running (or stopped while it waited): it is not
    /// granted anything.
    #[error("agent {0} is not running")]
    AgentStopped(AgentId),
}

impl ErrorCode for CoordinationError {
    fn code(&self) -> u32 {
        match self {
            CoordinationError::UnknownVariable(_) => 6001,
            CoordinationError::VariableExists(_) => 6002,
            CoordinationError::InvalidValue { .. } => 6003,
            CoordinationError::VersionConflict { .. } => 6004,
            CoordinationError::UpdateRejected { .. } => 6005,
            CoordinationError::Invalid(_) => 6006,
            CoordinationError::Selection(_) => 6007,
            CoordinationError::TooFewParticipants { .. } => 6008,
            CoordinationError::UnknownSession(_) => 6009,
            CoordinationError::Cancelled(_) => 6010,
            CoordinationError::BarrierBroken(_) => 6011,
            CoordinationError::NotParticipant(_) => 6012,
            CoordinationError::LockHeld { .. } => 6013,
            CoordinationError::NotHolder(_) => 6014,
            CoordinationError::NoAgreement { .. } => 6015,
            CoordinationError::TimedOut { .. } => 6016,
            CoordinationError::AgentStopped(_) => 6017,
        }
    }
}
