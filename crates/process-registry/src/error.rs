//! The errors of this crate. [`ProcessRegistry`](crate::ProcessRegistry)
//! answers with supervision-core's
//! [`RegistryError`](mabeam_supervision_core::RegistryError) (the contract's
//! errors); the [`ServiceRegistry`](crate::ServiceRegistry) with
//! [`ServiceError`], codes 2000..=2999.

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::{ErrorCode, RegistryError};
use thiserror::Error;

/// Why a [`ServiceRegistry`](crate::ServiceRegistry) call failed.
///
/// | code | variant |
/// |------|---------|
/// | 2001 | [`NotFound`](ServiceError::NotFound) |
/// | 2002 | [`Timeout`](ServiceError::Timeout) |
/// | 2003 | [`CallFailed`](ServiceError::CallFailed) |
/// | 2004 | [`Registry`](ServiceError::Registry) (the registry's own error, with its own code, is the source) |
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// No live process is registered under this service name.
    #[error("service {0:?} not found")]
    NotFound(Arc<str>),
    /// The service did not answer (or did not appear) in time.
    #[error("service {name:?} timed out after {after:?}")]
    Timeout {
        /// The service name.
        name: Arc<str>,
        /// How long the caller waited.
        after: Duration,
    },
    /// The service answered a call with an error.
    #[error("service {name:?} failed: {reason}")]
    CallFailed {
        /// The service name.
        name: Arc<str>,
        /// The error it answered with.
        reason: Arc<str>,
    },
    /// The underlying registry refused the operation.
    #[error("registry refused: {0}")]
    Registry(#[source] RegistryError),
}

impl From<RegistryError> for ServiceError {
    fn from(err: RegistryError) -> Self {
        ServiceError::Registry(err)
    }
}

impl ErrorCode for ServiceError {
    fn code(&self) -> u32 {
        match self {
            ServiceError::NotFound(_) => 2001,
            ServiceError::Timeout { .. } => 2002,
            ServiceError::CallFailed { .. } => 2003,
            ServiceError::Registry(_) => 2004,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_in_this_crates_range() {
        // process-registry's range, as docs/ARCHITECTURE.md reserves it.
        let range = 2000..=2999;
        let errors = [
            ServiceError::NotFound("a".into()),
            ServiceError::Timeout {
                name: "a".into(),
                after: Duration::from_secs(1),
            },
            ServiceError::CallFailed {
                name: "a".into(),
                reason: "boom".into(),
            },
            ServiceError::Registry(RegistryError::NotAlive),
        ];
        for err in &errors {
            assert!(range.contains(&err.code()), "{err}: {}", err.code());
            let text = err.to_string();
            assert_eq!(text, text.to_lowercase(), "display text is lowercase");
        }
    }
}
