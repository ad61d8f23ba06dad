//! [`HealthMonitorError`]: the health monitor's refusals.

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::ErrorCode;
use thiserror::Error;

/// The errors of the [`HealthMonitor`](crate::HealthMonitor) (codes
/// 3401-3499). A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HealthMonitorError {
    /// A source (an application, or a named check) of this name is already
    /// monitored. Code 3401.
    #[error("health source {0:?} is already monitored")]
    DuplicateSource(Arc<str>),
    /// No source of this name is monitored. Code 3402.
    #[error("no health source {0:?}")]
    UnknownSource(Arc<str>),
    /// The check interval must be longer than zero. Code 3403.
    #[error("invalid check interval {0:?}: must be longer than zero")]
    InvalidInterval(Duration),
    /// A named check's timeout must be longer than zero. Code 3404.
    #[error("invalid timeout {timeout:?} for check {name:?}: must be longer than zero")]
    ZeroTimeout {
        /// The check's name.
        name: Arc<str>,
        /// The timeout given.
        timeout: Duration,
    },
}

impl ErrorCode for HealthMonitorError {
    fn code(&self) -> u32 {
        match self {
            HealthMonitorError::DuplicateSource(_) => 3401,
            HealthMonitorError::UnknownSource(_) => 3402,
            HealthMonitorError::InvalidInterval(_) => 3403,
            HealthMonitorError::ZeroTimeout { .. } => 3404,
        }
    }
}
