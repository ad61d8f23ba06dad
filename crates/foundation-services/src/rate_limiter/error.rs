//! [`RateLimitError`]: a refused check, and the limiter's other errors.

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::ErrorCode;
use thiserror::Error;

/// The errors of the [`RateLimiter`](crate::RateLimiter) (codes 3201-3299).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RateLimitError {
    /// The bucket has no token: retry after `retry_after`, or never
    /// (`None`) when the rule's limit is 0. Code 3201.
    #[error("rate limited{}", match retry_after {
        Some(after) => format!(", retry after {after:?}"),
        None => ", the limit is 0".to_owned(),
    })]
    Limited {
        /// How long until the bucket holds a token again; `None` if it
        /// never will (a limit of 0).
        retry_after: Option<Duration>,
    },
    /// No rule for this operation, and no default rule. Code 3202.
    #[error("no rate limit rule for operation {0:?}")]
    UnknownOperation(Arc<str>),
    /// A rule that cannot be used, named with its operation and why.
    /// Code 3203.
    #[error("invalid rate limit rule for operation {operation:?}: {reason}")]
    InvalidRule {
        /// The operation the rule is for.
        operation: Arc<str>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two rules for one operation. Code 3204.
    #[error("duplicate rate limit rule for operation {0:?}")]
    DuplicateRule(Arc<str>),
    /// The sweep interval must be longer than zero. Code 3205.
    #[error("invalid sweep interval {0:?}: must be longer than zero")]
    InvalidSweepInterval(Duration),
}

impl RateLimitError {
    /// Whether this is [`Limited`](Self::Limited): the input was fine, the
    /// budget is spent.
    pub fn is_limited(&self) -> bool {
        matches!(self, RateLimitError::Limited { .. })
    }
}

impl ErrorCode for RateLimitError {
    fn code(&self) -> u32 {
        match self {
            RateLimitError::Limited { .. } => 3201,
            RateLimitError::UnknownOperation(_) => 3202,
            RateLimitError::InvalidRule { .. } => 3203,
            RateLimitError::DuplicateRule(_) => 3204,
            RateLimitError::InvalidSweepInterval(_) => 3205,
        }
    }
}
