//! [`ServiceMonitorError`]: the service monitor's refusals.

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::{ErrorCode, FlagsError};
use thiserror::Error;

/// The errors of the [`ServiceMonitor`](crate::ServiceMonitor) (codes
/// 3501-3599). A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ServiceMonitorError {
    /// The application has no service of this name. Code 3501.
    #[error("application {application:?} has no service {service:?}")]
    UnknownService {
        /// The application's name.
        application: Arc<str>,
        /// The service asked for.
        service: Arc<str>,
    },
    /// This service is already watched. Code 3502.
    #[error("service {0:?} is already watched")]
    AlreadyWatched(Arc<str>),
    /// This service is not watched. Code 3503.
    #[error("service {0:?} is not watched")]
    NotWatched(Arc<str>),
    /// The ping interval and timeout must be longer than zero. Code 3504.
    #[error("invalid {what} {value:?}: must be longer than zero")]
    InvalidDuration {
        /// `interval` or `ping timeout`.
        what: &'static str,
        /// The value given.
        value: Duration,
    },
    /// At least one missed ping must be allowed before a restart. Code 3505.
    #[error("invalid max_misses 0: must be at least 1")]
    InvalidMaxMisses,
    /// The restart backoff is invalid. Code 3506.
    #[error("invalid restart backoff: {0}")]
    InvalidBackoff(FlagsError),
}

impl ErrorCode for ServiceMonitorError {
    fn code(&self) -> u32 {
        match self {
            ServiceMonitorError::UnknownService { .. } => 3501,
            ServiceMonitorError::AlreadyWatched(_) => 3502,
            ServiceMonitorError::NotWatched(_) => 3503,
            ServiceMonitorError::InvalidDuration { .. } => 3504,
            ServiceMonitorError::InvalidMaxMisses => 3505,
            ServiceMonitorError::InvalidBackoff(_) => 3506,
        }
    }
}
