//! The phase machine of an application, and what finishes or undoes an
//! admin call whose future was dropped.
//!
//! | phase         | entered by                                   | left by |
//! |---------------|----------------------------------------------|---------|
//! | `Idle`        | `build`                                      | `start` |
//! | `Starting`    | `start`, once its supervisor runs            | every service started (`Running`); a service failed (`StartFailed`); the start dropped (`Stopping`) |
//! | `Running`     | `start`                                      | `stop` (`Stopping`); the supervisor gave up (`Failed`, by the watcher) |
//! | `Stopping`    | `stop`; a dropped `start`                    | the supervisor stopped (`Stopped`, or `Failed` if it had given up; `StartFailed` after a failed start) |
//! | `Stopped`     | a stop                                       | `start` |
//! | `StartFailed` | a service failed to start                    | `start` |
//! | `Failed`      | the supervisor gave up                       | `start` |
//!
//! Admin calls take the application's ordering lock (a tokio mutex) for
//! their whole run, so they happen one at a time, in the order they were
//! made. A call whose future is dropped still leaves a phase that every
//! call answers from: a dropped start hands the lock to a task that stops
//! what it started ([`StartRun`]); a stop runs in a task of its own, so
//! dropping the caller's future does not interrupt it.

use std::{collections::HashSet, mem, sync::Arc};

use parking_lot::Mutex;
use tokio::{sync::OwnedMutexGuard, task::AbortHandle};

use super::{ApplicationStatus, handle::Inner};
use crate::{HealthCheck, Supervisor};

/// What an application knows of its current run.
#[derive(Default)]
pub(super) struct State {
    pub(super) phase: Phase,
    /// Bumped at each start, so a watcher of an older run changes nothing.
    pub(super) generation: u64,
    /// Waits for the supervisor of the current run to exit.
    pub(super) watcher: Option<AbortHandle>,
    /// Services (by position in start order) stopped on request in the
    /// current run and not started since: a mark is dropped when the
    /// supervisor starts the service (its spec is wrapped for that, see
    /// `handle.rs`), or when a status finds it running with no admin call
    /// in between.
    pub(super) stopped_on_request: HashSet<usize>,
    /// The health checks of the current run, by position.
    pub(super) checks: Vec<Option<HealthCheck>>,
    /// Service admin calls begun plus ended: odd while one runs. A status
    /// compares it before and after asking the supervisor.
    pub(super) admin_calls: u64,
}

/// Where the application stands (see the table in the module docs).
#[derive(Default)]
pub(super) enum Phase {
    /// Never started.
    #[default]
    Idle,
    /// `started` services have been started, in order.
    Starting {
        supervisor: Supervisor,
        started: usize,
    },
    Running {
        supervisor: Supervisor,
    },
    Stopping,
    Stopped,
    /// The service at this position failed to start.
    StartFailed(usize),
    /// The supervisor exited without a stop request (it gave up).
    Failed,
}

impl Phase {
    /// The application's status in this phase, before the supervisor is
    /// asked (a running application may be degraded: see `status`).
    pub(super) fn status(&self) -> ApplicationStatus {
        match self {
            Phase::Idle | Phase::Stopped => ApplicationStatus::Stopped,
            Phase::Starting { .. } => ApplicationStatus::Starting,
            Phase::Running { .. } => ApplicationStatus::Running,
            Phase::Stopping => ApplicationStatus::Stopping,
            Phase::StartFailed(_) | Phase::Failed => ApplicationStatus::Failed,
        }
    }

    /// The supervisor of a starting or running application.
    pub(super) fn supervisor(&self) -> Option<&Supervisor> {
        match self {
            Phase::Starting { supervisor, .. } | Phase::Running { supervisor } => Some(supervisor),
            _ => None,
        }
    }
}

/// A start in progress, holding the ordering lock. Finished, it leaves the
/// application running; dropped before (the caller's future was dropped),
/// it undoes the start: the phase becomes `Stopping`, and a task kills the
/// supervisor (a child start it was asked for may never end; the
/// supervisor's own stop still stops the children it holds, each by its
/// shutdown), then marks the application stopped and only then releases
/// the lock, so the next admin call finds it stopped.
pub(super) struct StartRun {
    inner: Arc<Inner>,
    ops: Option<OwnedMutexGuard<()>>,
    supervisor: Option<Supervisor>,
    /// Kill the supervisor when undone (while a child start may be
    /// pending), rather than stop it.
    kill: bool,
    /// The phase once the undoing is done.
    outcome: Phase,
}

impl StartRun {
    pub(super) fn new(inner: Arc<Inner>, ops: OwnedMutexGuard<()>) -> Self {
        StartRun {
            inner,
            ops: Some(ops),
            supervisor: None,
            kill: true,
            outcome: Phase::Stopped,
        }
    }

    /// The run's supervisor is up: the application is starting, with the
    /// health checks `checks`. Returns the run's generation.
    pub(super) fn starting(
        &mut self,
        supervisor: &Supervisor,
        checks: Vec<Option<HealthCheck>>,
    ) -> u64 {
        self.supervisor = Some(supervisor.clone());
        let mut state = self.inner.state.lock();
        state.generation += 1;
        state.phase = Phase::Starting {
            supervisor: supervisor.clone(),
            started: 0,
        };
        state.stopped_on_request.clear();
        state.checks = checks;
        state.generation
    }

    /// `started` services have started.
    pub(super) fn started(&self, started: usize) {
        if let Phase::Starting { started: n, .. } = &mut self.inner.state.lock().phase {
            *n = started;
        }
    }

    /// Every service started: the application runs, watched by `watcher`.
    pub(super) fn finish(mut self, watcher: AbortHandle) {
        let supervisor = self.supervisor.take();
        let mut state = self.inner.state.lock();
        if let Some(supervisor) = supervisor {
            state.phase = Phase::Running { supervisor };
        }
        if let Some(old) = state.watcher.replace(watcher) {
            old.abort();
        }
    }

    /// The service at `position` failed to start: stops the supervisor
    /// (and the services started before), and leaves the application
    /// failed. Dropped meanwhile, the stop goes on in a task.
    pub(super) async fn fail(mut self, position: usize) {
        self.kill = false;
        self.outcome = Phase::StartFailed(position);
        if let Some(supervisor) = &self.supervisor {
            supervisor.stop().await;
        }
        self.supervisor = None;
        self.inner.state.lock().phase = mem::take(&mut self.outcome);
    }
}

impl Drop for StartRun {
    fn drop(&mut self) {
        let Some(supervisor) = self.supervisor.take() else {
            return;
        };
        let inner = self.inner.clone();
        let ops = self.ops.take();
        let outcome = mem::take(&mut self.outcome);
        inner.state.lock().phase = Phase::Stopping;
        if self.kill {
            supervisor.handle().kill();
        }
        let finish = move |inner: &Inner| inner.state.lock().phase = outcome;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    supervisor.stop().await;
                    finish(&inner);
                    drop(ops);
                });
            }
            // No runtime left to stop it on: the supervisor stops with its
            // last handle.
            Err(_) => {
                drop(supervisor);
                finish(&inner);
            }
        }
    }
}

/// A service admin call in progress (`stop_service`, `restart_service`):
/// counted in [`State::admin_calls`] from its start to its end, including
/// an end by a dropped future.
pub(super) struct AdminCall<'a> {
    state: &'a Mutex<State>,
}

impl<'a> AdminCall<'a> {
    pub(super) fn begin(state: &'a Mutex<State>) -> Self {
        state.lock().admin_calls += 1;
        AdminCall { state }
    }
}

impl Drop for AdminCall<'_> {
    fn drop(&mut self) {
        self.state.lock().admin_calls += 1;
    }
}
