//! [`TelemetryServiceError`]: the errors of this crate, codes 4000-4999.

use mabeam_supervision_core::{ErrorCode, TelemetryError};
use thiserror::Error;

/// Why a telemetry call failed. Nothing changes when one is returned.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum TelemetryServiceError {
    /// The [`Telemetry`](mabeam_supervision_core::Telemetry) handle refused the
    /// handler (disabled, or the id is taken).
    #[error(transparent)]
    Attach(#[from] TelemetryError),
    /// A metric name is empty or not of `[a-zA-Z_:][a-zA-Z0-9_:.]*`.
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    /// A threshold's bound is not a finite number, or is negative.
    #[error("invalid threshold for {metric}: {value}")]
    InvalidThreshold {
        /// The metric it was for.
        metric: &'static str,
        /// The bound given.
        value: f64,
    },
    /// A setting is out of range (a zero window or capacity).
    #[error("invalid setting {name}: {reason}")]
    InvalidSetting {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An export could not be written.
    #[error("export failed: {0}")]
    Export(String),
}

impl ErrorCode for TelemetryServiceError {
    fn code(&self) -> u32 {
        match self {
            TelemetryServiceError::Attach(_) => 4001,
            TelemetryServiceError::InvalidMetricName(_) => 4002,
            TelemetryServiceError::InvalidThreshold { .. } => 4003,
            TelemetryServiceError::InvalidSetting { .. } => 4004,
            TelemetryServiceError::Export(_) => 4005,
        }
    }
}
