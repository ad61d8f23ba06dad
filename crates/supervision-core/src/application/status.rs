//! What a running application reports: [`ServiceStatus`] and
//! [`ApplicationStatus`] ([`StatusReport`]), and the answers of its health
//! checks ([`Health`], [`HealthReport`]).

use std::{fmt, sync::Arc, time::Duration};

use crate::ProcessHandle;

/// Where one service stands, as its application's supervisor reports it.
///
/// A service is meant to run: one that is not running and was not stopped
/// on request is [`Failed`](Self::Failed), whatever its exit reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceStatus {
    /// The application is starting and the supervisor has not yet reported
    /// this service started.
    Starting,
    /// Running.
    Running,
    /// Its supervisor is restarting it (a restart failed and is retried).
    Restarting,
    /// Not running, on request: the application is not started or was
    /// stopped, or the service was stopped with
    /// [`stop_service`](crate::Application::stop_service) (or is between
    /// the stop and the start of a
    /// [`restart_service`](crate::Application::restart_service)).
    Stopped,
    /// Not running, and nothing will start it again: the service exited and
    /// its restart type does not restart it, it failed to start, or the
    /// application's supervisor gave up.
    Failed,
}

impl ServiceStatus {
    /// Whether the service is running.
    pub fn is_running(self) -> bool {
        self == ServiceStatus::Running
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceStatus::Starting => "starting",
            ServiceStatus::Running => "running",
            ServiceStatus::Restarting => "restarting",
            ServiceStatus::Stopped => "stopped",
            ServiceStatus::Failed => "failed",
        })
    }
}

/// Where a whole application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApplicationStatus {
    /// Its services are being started.
    Starting,
    /// Every service runs.
    Running,
    /// Started, but some services do not run (restarting, stopped on
    /// request, or failed).
    Degraded,
    /// Being stopped.
    Stopping,
    /// Not started yet, or stopped on request.
    Stopped,
    /// Its supervisor gave up (restart intensity exceeded), or its start
    /// failed.
    Failed,
}

impl fmt::Display for ApplicationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplicationStatus::Starting => "starting",
            ApplicationStatus::Running => "running",
            ApplicationStatus::Degraded => "degraded",
            ApplicationStatus::Stopping => "stopping",
            ApplicationStatus::Stopped => "stopped",
            ApplicationStatus::Failed => "failed",
        })
    }
}

/// One service in a [`StatusReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceReport {
    /// The service's name.
    pub name: Arc<str>,
    /// Its status.
    pub status: ServiceStatus,
    /// Its process while it runs (for a subtree, the subtree's supervisor:
    /// see [`Supervisor::from_handle`](crate::Supervisor::from_handle)).
    pub handle: Option<ProcessHandle>,
}

/// The status of an application and of each of its services, in start
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The whole application.
    pub application: ApplicationStatus,
    /// Each service, in start order.
    pub services: Vec<ServiceReport>,
}

impl StatusReport {
    /// The report of the service `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceReport> {
        self.services.iter().find(|s| &*s.name == name)
    }

    /// The status of the service `name`.
    pub fn status_of(&self, name: &str) -> Option<ServiceStatus> {
        self.service(name).map(|s| s.status)
    }
}

/// The answer of one service's health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The check passed (a running service without a check is healthy).
    Healthy,
    /// The check failed, or panicked, with this reason.
    Unhealthy(String),
    /// The check did not answer within its timeout.
    TimedOut(Duration),
    /// The service is not running, so it was not checked; its status.
    NotRunning(ServiceStatus),
}

impl Health {
    /// Whether this is [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        *self == Health::Healthy
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Healthy => f.write_str("healthy"),
            Health::Unhealthy(reason) => write!(f, "unhealthy: {reason}"),
            Health::TimedOut(timeout) => write!(f, "timed out after {timeout:?}"),
            Health::NotRunning(status) => write!(f, "not running ({status})"),
        }
    }
}

/// One service in a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealth {
    /// The service's name.
    pub name: Arc<str>,
    /// Its health.
    pub health: Health,
}

/// The health of every service of an application, in start order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    /// Each service, in start order.
    pub services: Vec<ServiceHealth>,
}

impl HealthReport {
    /// Whether every service is healthy.
    pub fn is_healthy(&self) -> bool {
        self.services.iter().all(|s| s.health.is_healthy())
    }

    /// The health of the service `name`.
    pub fn of(&self, name: &str) -> Option<&Health> {
        self.services
            .iter()
            .find(|s| &*s.name == name)
            .map(|s| &s.health)
    }
}
