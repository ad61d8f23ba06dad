//! What the health monitor reports: [`HealthState`] per service and
//! overall, [`ServiceDetail`], and the [`SystemHealth`] summary.

use std::{fmt, sync::Arc, time::Duration};

use mabeam_supervision_core::{Health, ServiceStatus};

/// Where a service, or the whole system, stands.
///
/// | a service's [`Health`] (and status)             | state       |
/// |-------------------------------------------------|-------------|
/// | `Healthy`                                       | `Healthy`   |
/// | `NotRunning`, status starting, restarting or stopped | `Degraded`: its supervisor is on it, or it was stopped on request |
/// | `Unhealthy(_)`, `TimedOut(_)`, `NotRunning` otherwise (failed, or a named check) | `Unhealthy` |
///
/// Overall: `Healthy` when every service is; `Unhealthy` when a critical
/// service is unhealthy, or every service is; `Degraded` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HealthState {
    /// Answers its checks.
    Healthy,
    /// Not serving for now, but expected back (or stopped on purpose).
    Degraded,
    /// Failed its check, did not answer in time, or failed for good.
    Unhealthy,
}

impl HealthState {
    /// The state of a service whose check answered `health`, with its
    /// status in its application (`None` for a named check).
    pub fn of(health: &Health, status: Option<ServiceStatus>) -> Self {
        match (health, status) {
            (Health::Healthy, _) => HealthState::Healthy,
            (
                Health::NotRunning,
                Some(ServiceStatus::Starting | ServiceStatus::Restarting | ServiceStatus::Stopped),
            ) => HealthState::Degraded,
            _ => HealthState::Unhealthy,
        }
    }

    /// Its name, as in telemetry.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One monitored service as of the last check round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceDetail {
    /// `application/service`, or a named check's name.
    pub name: Arc<str>,
    /// Its state.
    pub state: HealthState,
    /// The answer of its last check.
    pub health: Health,
    /// Its status in its application at the last check (`None` for a
    /// named check).
    pub status: Option<ServiceStatus>,
    /// Whether it is critical (an unhealthy critical service makes the
    /// system unhealthy).
    pub critical: bool,
    /// The last answer that was not healthy (kept after it recovers).
    pub last_error: Option<String>,
    /// Wall-clock milliseconds since the Unix epoch when it entered its
    /// state.
    pub since_unix_ms: u64,
    /// How long it has been in its state.
    pub for_duration: Duration,
}

/// The health of everything monitored, as of the last check round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemHealth {
    /// The overall state (see [`HealthState`]).
    pub overall: HealthState,
    /// Every service, by name.
    pub services: Vec<ServiceDetail>,
    /// The unhealthy services' names.
    pub failed: Vec<Arc<str>>,
    /// The degraded services' names.
    pub degraded: Vec<Arc<str>>,
    /// What an operator could do, one line per service that is not healthy.
    pub recommendations: Vec<String>,
    /// Wall-clock milliseconds since the Unix epoch of the round.
    pub checked_at_unix_ms: u64,
}

impl SystemHealth {
    /// The detail of the service `name`.
    pub fn service(&self, name: &str) -> Option<&ServiceDetail> {
        self.services.iter().find(|s| &*s.name == name)
    }
}

/// What an operator could do about a service that answered `health`.
pub(super) fn recommendation(
    name: &str,
    health: &Health,
    status: Option<ServiceStatus>,
) -> Option<String> {
    Some(match health {
        Health::Healthy => return None,
        Health::Unhealthy(reason) => {
            format!("{name}: unhealthy ({reason}); inspect it, or restart it")
        }
        Health::TimedOut(timeout) => format!(
            "{name}: no answer within {timeout:?}; it may be blocked (a long handler, a full mailbox)"
        ),
        Health::NotRunning => match status {
            Some(ServiceStatus::Stopped) => {
                format!("{name}: stopped; restart it if it was not stopped on purpose")
            }
            Some(status @ (ServiceStatus::Starting | ServiceStatus::Restarting)) => {
                format!("{name}: {status}; its supervisor is on it, check again shortly")
            }
            _ => format!(
                "{name}: failed and not restarted; restart it (Application::restart_service)"
            ),
        },
    })
}
