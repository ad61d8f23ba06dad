//! Where an application and its services stand: [`ServiceStatus`] and
//! [`ApplicationStatus`] in a [`StatusReport`], and how the supervisor's
//! answer (`which_children`) and the application's phase become one.

use std::{collections::HashSet, fmt, sync::Arc};

use super::phase::{Phase, State};
use crate::{ChildInfo, ChildState, ProcessHandle};

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
    /// [`restart_service`](crate::Application::restart_service)) and has
    /// not run since. (Under one_for_all and rest_for_one, a group restart
    /// starts such a service again: it is then running, and failed if it
    /// later exits for good.)
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

/// What the state was when the supervisor was asked.
pub(super) struct Snapshot {
    /// While starting: how many services had been started.
    started: Option<usize>,
    stopped_on_request: HashSet<usize>,
    admin_calls: u64,
}

impl Snapshot {
    pub(super) fn of(state: &State) -> Self {
        Snapshot {
            started: match state.phase {
                Phase::Starting { started, .. } => Some(started),
                _ => None,
            },
            stopped_on_request: state.stopped_on_request.clone(),
            admin_calls: state.admin_calls,
        }
    }
}

/// Every service with one status.
pub(super) fn all(names: &[Arc<str>], status: ServiceStatus) -> StatusReport {
    StatusReport {
        application: match status {
            ServiceStatus::Failed => ApplicationStatus::Failed,
            _ => ApplicationStatus::Stopped,
        },
        services: names
            .iter()
            .map(|name| ServiceReport {
                name: name.clone(),
                status,
                handle: None,
            })
            .collect(),
    }
}

/// The report of an application with no supervisor to ask.
pub(super) fn without_supervisor(names: &[Arc<str>], state: &State) -> StatusReport {
    let services = names
        .iter()
        .enumerate()
        .map(|(position, name)| ServiceReport {
            name: name.clone(),
            status: match state.phase {
                Phase::Failed => ServiceStatus::Failed,
                Phase::StartFailed(failed) if failed == position => ServiceStatus::Failed,
                _ => ServiceStatus::Stopped,
            },
            handle: None,
        })
        .collect();
    StatusReport {
        application: state.phase.status(),
        services,
    }
}

/// The report from the supervisor's answer `children`.
///
/// The supervisor's facts come first: a service it reports
/// [`Terminated`](ChildState::Terminated) (stopped by `terminate_child`,
/// not started since) is stopped, one it reports
/// [`NotRunning`](ChildState::NotRunning) (exited by itself, not restarted)
/// is failed, whatever the application's own marks say. The marks count
/// only for a service missing from the answer (a temporary service is
/// removed when it is terminated, and when it exits).
///
/// `before` is the state when the supervisor was asked, `after` when it
/// answered: a service missing from the answer is starting if it had not
/// been started when the supervisor was asked, and stopped on request if it
/// was marked so at either time (an admin call may have begun or ended in
/// between).
///
/// A service marked stopped on request that the supervisor reports
/// running was started again by the supervisor itself (a group restart)
/// if no admin call began or ended between the two: its mark is dropped.
pub(super) fn from_children(
    names: &[Arc<str>],
    before: &Snapshot,
    after: &mut State,
    children: &[ChildInfo],
) -> StatusReport {
    let started = before.started;
    let quiet = before.admin_calls == after.admin_calls && after.admin_calls.is_multiple_of(2);
    let services: Vec<ServiceReport> = names
        .iter()
        .enumerate()
        .map(|(position, name)| {
            let on_request = before.stopped_on_request.contains(&position)
                || after.stopped_on_request.contains(&position);
            let child = children.iter().find(|c| c.id == *name);
            let (status, handle) = match child.map(|c| &c.state) {
                Some(ChildState::Running(handle)) => {
                    if quiet {
                        after.stopped_on_request.remove(&position);
                    }
                    (ServiceStatus::Running, Some(handle.clone()))
                }
                Some(ChildState::Restarting) => (ServiceStatus::Restarting, None),
                None if started.is_some_and(|started| position >= started) => {
                    (ServiceStatus::Starting, None)
                }
                Some(ChildState::Terminated) => (ServiceStatus::Stopped, None),
                Some(ChildState::NotRunning) => (ServiceStatus::Failed, None),
                None if on_request => (ServiceStatus::Stopped, None),
                None => (ServiceStatus::Failed, None),
            };
            ServiceReport {
                name: name.clone(),
                status,
                handle,
            }
        })
        .collect();
    let application = if started.is_some() {
        ApplicationStatus::Starting
    } else if services.iter().all(|s| s.status.is_running()) {
        ApplicationStatus::Running
    } else {
        ApplicationStatus::Degraded
    };
    StatusReport {
        application,
        services,
    }
}
