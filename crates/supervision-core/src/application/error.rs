//! [`ApplicationError`]: what can go wrong when an application is defined,
//! started or operated. Codes 1601-1611.

use std::sync::Arc;

use thiserror::Error;

use super::{ApplicationStatus, ServiceStatus};
use crate::{ErrorCode, FlagsError, SupervisorError};

/// The errors of [`ApplicationSpec`](crate::ApplicationSpec) and
/// [`Application`](crate::Application). Each names the service (or
/// dependency) at fault.
///
/// Definition errors ([`DuplicateService`](Self::DuplicateService),
/// [`MissingDependency`](Self::MissingDependency),
/// [`DependencyCycle`](Self::DependencyCycle),
/// [`UnknownService`](Self::UnknownService),
/// [`InvalidService`](Self::InvalidService)) are found before anything
/// starts.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{ApplicationError, ErrorCode};
///
/// let err = ApplicationError::MissingDependency { service: "web".into(), dependency: "db".into() };
/// assert_eq!(err.code(), 1602);
/// assert_eq!(err.to_string(), "service \"web\" depends on \"db\", which is not defined");
/// ```
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum ApplicationError {
    /// Two services share a name.
    #[error("duplicate service {0:?}")]
    DuplicateService(Arc<str>),
    /// A service depends on a service that is not defined.
    #[error("service {service:?} depends on {dependency:?}, which is not defined")]
    MissingDependency {
        /// The service that needs it.
        service: Arc<str>,
        /// The name it depends on.
        dependency: Arc<str>,
    },
    /// The dependencies form a cycle: each service depends on the next, and
    /// the last on the first.
    #[error("dependency cycle: {}", cycle_text(.0))]
    DependencyCycle(Vec<Arc<str>>),
    /// No service has this name.
    #[error("unknown service {0:?}")]
    UnknownService(Arc<str>),
    /// A service's child spec (or subtree) does not validate.
    #[error("service {service:?} is invalid: {error}")]
    InvalidService {
        /// The service.
        service: Arc<str>,
        /// What is wrong with its spec.
        error: FlagsError,
    },
    /// A service's health check has a timeout of zero, which no check can
    /// meet.
    #[error("service {0:?} has a health check timeout of zero")]
    ZeroHealthTimeout(Arc<str>),
    /// The application could not start: this service failed to start. The
    /// services started before it were stopped again, in reverse order.
    #[error("service {service:?} failed to start: {error}")]
    StartFailed {
        /// The service that failed.
        service: Arc<str>,
        /// Why.
        error: SupervisorError,
    },
    /// The application is not running (not started yet, starting, stopping,
    /// stopped or failed): the call needs it running.
    #[error("application is not running ({0})")]
    NotRunning(ApplicationStatus),
    /// The application is already started (or starting).
    #[error("application already started")]
    AlreadyStarted,
    /// A service cannot be restarted while a service it depends on is down.
    #[error("service {service:?} depends on {dependency:?}, which is {status}")]
    DependencyDown {
        /// The service to restart.
        service: Arc<str>,
        /// The first of its dependencies (in start order) that is down.
        dependency: Arc<str>,
        /// That dependency's status.
        status: ServiceStatus,
    },
    /// The application's supervisor refused an admin call on a service, or
    /// the service failed to start again.
    #[error("service {service:?}: {error}")]
    Service {
        /// The service.
        service: Arc<str>,
        /// The supervisor's answer.
        error: SupervisorError,
    },
    /// The application's own supervisor: its flags are invalid, or it
    /// could not start. Its code is the supervisor error's.
    #[error("application supervisor: {0}")]
    Supervisor(SupervisorError),
}

fn cycle_text(cycle: &[Arc<str>]) -> String {
    let mut text: Vec<&str> = cycle.iter().map(|s| &**s).collect();
    if let Some(first) = cycle.first() {
        text.push(first);
    }
    text.join(" -> ")
}

impl ErrorCode for ApplicationError {
    fn code(&self) -> u32 {
        match self {
            ApplicationError::DuplicateService(_) => 1601,
            ApplicationError::MissingDependency { .. } => 1602,
            ApplicationError::DependencyCycle(_) => 1603,
            ApplicationError::UnknownService(_) => 1604,
            ApplicationError::InvalidService { .. } => 1605,
            ApplicationError::ZeroHealthTimeout(_) => 1606,
            ApplicationError::StartFailed { .. } => 1607,
            ApplicationError::NotRunning(_) => 1608,
            ApplicationError::AlreadyStarted => 1609,
            ApplicationError::DependencyDown { .. } => 1610,
            ApplicationError::Service { .. } => 1611,
            ApplicationError::Supervisor(err) => err.code(),
        }
    }
}
