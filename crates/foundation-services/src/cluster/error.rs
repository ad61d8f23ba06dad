//! The cluster's typed errors, codes 3701-3799.

use mabeam_supervision_core::ErrorCode;

/// What a [`ClusterMembership`](super::ClusterMembership) call can answer
/// instead of its result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// A setting is out of its range (named, with the rule).
    #[error("invalid setting {setting}: {rule}")]
    InvalidSetting {
        /// The setting's name.
        setting: &'static str,
        /// What it must be.
        rule: &'static str,
    },
    /// The gossip socket could not be opened.
    #[error("gossip on {addr}: {detail}")]
    Gossip {
        /// The address.
        addr: String,
        /// What failed.
        detail: String,
    },
    /// The membership is already running.
    #[error("the cluster membership is already running")]
    AlreadyRunning,
    /// The membership is not running.
    #[error("the cluster membership is not running")]
    NotRunning,
}

impl ErrorCode for ClusterError {
    fn code(&self) -> u32 {
        match self {
            ClusterError::InvalidSetting { .. } => 3701,
            ClusterError::Gossip { .. } => 3702,
            ClusterError::AlreadyRunning => 3703,
            ClusterError::NotRunning => 3704,
        }
    }
}
