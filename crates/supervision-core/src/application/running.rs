//! [`Application`]: the running handle of an [`ApplicationSpec`]: start,
//! stop, status, health, and admin calls on one service.

use std::{collections::HashSet, fmt, mem, sync::Arc};

use futures::future::join_all;
use parking_lot::Mutex;
use tokio::{task::AbortHandle, time::Instant};

use super::{
    ApplicationError, ApplicationSpec, ApplicationStatus, Health, HealthCheck, HealthReport,
    Service, ServiceHealth, ServiceReport, ServiceStatus, StatusReport, plan::Plan, prepare,
};
use crate::{
    ChildInfo, ChildState, ExitReason, Intensity, MetaValue, ProcessHandle, Strategy, Supervisor,
    SupervisorError, SupervisorFlags, Telemetry, events,
};

/// A running (or startable) application: its services under one static
/// [`Supervisor`], in dependency order. Cheap to clone; every clone is the
/// same application.
///
/// Made by [`ApplicationSpec::build`] (not started) or
/// [`ApplicationSpec::start`]. The application runs until
/// [`stop`](Self::stop), or until its supervisor gives up; dropping the last
/// handle stops its supervisor too (without a telemetry event). A stopped or
/// failed application can be started again: each start starts a new
/// supervisor from the services' specs.
///
/// # Failure contract
///
/// Admin calls on a service fail with
/// [`UnknownService`](ApplicationError::UnknownService) for a name the
/// application does not have, and with
/// [`NotRunning`](ApplicationError::NotRunning) unless the application is
/// started and its supervisor alive. Nothing panics on bad input.
///
/// # Status
///
/// [`Application::status`] asks the supervisor (`which_children`) and
/// reports each service as [`ServiceStatus`]:
///
/// | the supervisor says                     | status       |
/// |-----------------------------------------|--------------|
/// | not yet started, application starting   | `Starting`   |
/// | running                                 | `Running`    |
/// | restarting (a restart failed, retried)  | `Restarting` |
/// | not running, stopped on request         | `Stopped`    |
/// | not running otherwise, or removed       | `Failed`     |
/// | the supervisor gave up                  | `Failed` (every service) |
///
/// The whole application ([`ApplicationStatus`]) is `Running` when every
/// service runs and `Degraded` otherwise; `Failed` once its supervisor gave
/// up or its start failed. The supervisor answers between its own steps, so
/// a status asked while a service starts or stops waits for that step (each
/// bounded by the child's start timeout or shutdown).
///
/// # Telemetry
///
/// The application emits `application.started` (`duration_us`;
/// `application`, `services`) once every service has started, and
/// `application.stopped` (`application`, `reason`) when it is stopped, or
/// when its supervisor gives up (reason: the supervisor's exit reason). See
/// [`events`](crate::events).
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use supervision_core::{
///     ApplicationError, ApplicationSpec, ApplicationStatus, ChildSpec, ServiceDef, ServiceStatus,
/// };
///
/// #[derive(Actor)]
/// struct Worker;
///
/// fn worker(name: &str) -> ChildSpec {
///     ChildSpec::actor::<Worker>(name.to_owned(), || Worker)
/// }
///
/// # #[tokio::main] async fn main() {
/// let spec = ApplicationSpec::new("shop")
///     .service(ServiceDef::child(worker("web")).depends_on(["db", "cache"]))
///     .service(ServiceDef::child(worker("cache")))
///     .service(ServiceDef::child(worker("db")));
/// assert_eq!(spec.start_order().unwrap(), ["cache".into(), "db".into(), "web".into()]);
///
/// let app = spec.start().await.unwrap();
/// assert_eq!(app.status().await.application, ApplicationStatus::Running);
///
/// app.stop_service("db").await.unwrap();
/// let status = app.status().await;
/// assert_eq!(status.application, ApplicationStatus::Degraded);
/// assert_eq!(status.status_of("db"), Some(ServiceStatus::Stopped));
/// // web depends on db, which is down: no restart.
/// assert!(matches!(
///     app.restart_service("web").await,
///     Err(ApplicationError::DependencyDown { dependency, .. }) if &*dependency == "db"
/// ));
/// app.restart_service("db").await.unwrap();
/// app.restart_service("web").await.unwrap();
///
/// app.stop().await.unwrap(); // web, then db, then cache
/// # }
/// ```
#[derive(Clone)]
pub struct Application {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    /// In start order.
    services: Vec<Arc<dyn Service>>,
    /// The services' names, in start order.
    names: Vec<Arc<str>>,
    /// For each service (by position in start order): the positions of
    /// everything it depends on, directly or not.
    needs: Vec<Vec<usize>>,
    strategy: Strategy,
    intensity: Intensity,
    telemetry: Telemetry,
    /// Serialises start and stop: a stop waits for a start in progress.
    ops: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    phase: Phase,
    /// Bumped at each start, so a watcher of an older run changes nothing.
    generation: u64,
    /// Waits for the supervisor of the current run to exit.
    watcher: Option<AbortHandle>,
    /// Services (by position) stopped on request in the current run.
    held: HashSet<usize>,
    /// The health checks of the current run, by position.
    checks: Vec<Option<HealthCheck>>,
}

#[derive(Default)]
enum Phase {
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

/// What the state was when the supervisor was asked.
struct Snapshot {
    /// While starting: how many services had been started.
    started: Option<usize>,
    held: HashSet<usize>,
}

impl Snapshot {
    fn of(state: &State) -> Self {
        Snapshot {
            started: match state.phase {
                Phase::Starting { started, .. } => Some(started),
                _ => None,
            },
            held: state.held.clone(),
        }
    }
}

impl Phase {
    fn status(&self) -> ApplicationStatus {
        match self {
            Phase::Idle | Phase::Stopped => ApplicationStatus::Stopped,
            Phase::Starting { .. } => ApplicationStatus::Starting,
            // Whether all run is the supervisor's answer; see `status`.
            Phase::Running { .. } => ApplicationStatus::Running,
            Phase::Stopping => ApplicationStatus::Stopping,
            Phase::StartFailed(_) | Phase::Failed => ApplicationStatus::Failed,
        }
    }

    fn supervisor(&self) -> Option<&Supervisor> {
        match self {
            Phase::Starting { supervisor, .. } | Phase::Running { supervisor } => Some(supervisor),
            _ => None,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The watcher holds a handle to the supervisor: without it, the
        // supervisor stops with the last handle.
        if let Some(watcher) = self.state.get_mut().watcher.take() {
            watcher.abort();
        }
    }
}

impl Application {
    pub(super) fn new(spec: ApplicationSpec, plan: Plan) -> Self {
        let services: Vec<Arc<dyn Service>> = plan
            .order
            .iter()
            .map(|&i| spec.services[i].clone())
            .collect();
        Application {
            inner: Arc::new(Inner {
                name: spec.name,
                names: services.iter().map(|s| s.name().into()).collect(),
                services,
                needs: plan.needs,
                strategy: spec.strategy,
                intensity: spec.intensity,
                telemetry: spec.telemetry,
                ops: tokio::sync::Mutex::new(()),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The services' names, in start order.
    pub fn services(&self) -> &[Arc<str>] {
        &self.inner.names
    }

    /// The application's supervisor, while it is starting or running.
    pub fn supervisor(&self) -> Option<Supervisor> {
        self.inner.state.lock().phase.supervisor().cloned()
    }

    /// Starts the application's supervisor, then each service in start
    /// order; returns once all have started, and emits
    /// `application.started`.
    ///
    /// Each service's spec is taken and checked before anything starts
    /// ([`InvalidService`](ApplicationError::InvalidService),
    /// [`ZeroHealthTimeout`](ApplicationError::ZeroHealthTimeout)). If a
    /// service fails to start, the services already started are stopped in
    /// reverse order and the error names it
    /// ([`StartFailed`](ApplicationError::StartFailed)); the application is
    /// then [`Failed`](ApplicationStatus::Failed) and may be started again.
    /// [`AlreadyStarted`](ApplicationError::AlreadyStarted) if it is
    /// starting or running.
    pub async fn start(&self) -> Result<(), ApplicationError> {
        let inner = &self.inner;
        let _ops = inner.ops.lock().await;
        if matches!(
            inner.state.lock().phase,
            Phase::Starting { .. } | Phase::Running { .. }
        ) {
            return Err(ApplicationError::AlreadyStarted);
        }
        let began = Instant::now();
        let mut specs = Vec::with_capacity(inner.services.len());
        let mut checks = Vec::with_capacity(inner.services.len());
        for service in &inner.services {
            let (spec, check) = prepare(&**service)?;
            specs.push(spec);
            checks.push(check);
        }
        let flags = SupervisorFlags::new(inner.strategy)
            .with_intensity(inner.intensity.max_restarts, inner.intensity.max_seconds)
            .with_name(inner.name.clone())
            .with_telemetry(inner.telemetry.clone());
        let supervisor = Supervisor::start(flags, [])
            .await
            .map_err(ApplicationError::Supervisor)?;
        let generation = {
            let mut state = inner.state.lock();
            state.generation += 1;
            state.phase = Phase::Starting {
                supervisor: supervisor.clone(),
                started: 0,
            };
            state.held.clear();
            state.checks = checks;
            state.generation
        };
        for (position, spec) in specs.into_iter().enumerate() {
            if let Err(error) = supervisor.start_child(spec).await {
                supervisor.stop().await;
                inner.state.lock().phase = Phase::StartFailed(position);
                return Err(ApplicationError::StartFailed {
                    service: inner.names[position].clone(),
                    error,
                });
            }
            if let Phase::Starting { started, .. } = &mut inner.state.lock().phase {
                *started = position + 1;
            }
        }
        let watcher = watch(inner, &supervisor, generation);
        {
            let mut state = inner.state.lock();
            state.phase = Phase::Running { supervisor };
            if let Some(old) = state.watcher.replace(watcher) {
                old.abort();
            }
        }
        inner.telemetry.emit(
            events::APPLICATION_STARTED,
            &[("duration_us", began.elapsed().as_secs_f64() * 1e6)],
            &[
                ("application", MetaValue::Str(&inner.name)),
                ("services", MetaValue::U64(inner.services.len() as u64)),
            ],
        );
        Ok(())
    }

    /// Stops every service in reverse start order (the supervisor's stop,
    /// each service by its shutdown), then the supervisor; returns once all
    /// have stopped, with the supervisor's exit reason, and emits
    /// `application.stopped`. Waits for a start in progress to finish
    /// first.
    ///
    /// [`NotRunning`](ApplicationError::NotRunning) if the application is
    /// not running (never started, stopped, or failed).
    pub async fn stop(&self) -> Result<ExitReason, ApplicationError> {
        let inner = &self.inner;
        let _ops = inner.ops.lock().await;
        let supervisor = {
            let mut state = inner.state.lock();
            match mem::replace(&mut state.phase, Phase::Stopping) {
                Phase::Running { supervisor } => {
                    if let Some(watcher) = state.watcher.take() {
                        watcher.abort();
                    }
                    supervisor
                }
                other => {
                    let status = other.status();
                    state.phase = other;
                    return Err(ApplicationError::NotRunning(status));
                }
            }
        };
        let reason = supervisor.stop().await;
        // A supervisor that had already given up answers with its error.
        inner.state.lock().phase = if reason.is_clean() {
            Phase::Stopped
        } else {
            Phase::Failed
        };
        inner.stopped(&reason);
        Ok(reason)
    }

    /// The status of the application and of each service, in start order,
    /// as its supervisor reports them (see the table on [`Application`]).
    pub async fn status(&self) -> StatusReport {
        let inner = &self.inner;
        let (supervisor, before) = {
            let state = inner.state.lock();
            match state.phase.supervisor() {
                Some(supervisor) => (supervisor.clone(), Snapshot::of(&state)),
                None => return inner.report_without_supervisor(&state),
            }
        };
        let children = supervisor.which_children().await;
        let state = inner.state.lock();
        match children {
            Ok(children) => inner.report(&before, &state, &children),
            Err(_gone) => match state.phase {
                // Gone without a stop request: it gave up (the watcher has
                // not recorded it yet).
                Phase::Starting { .. } | Phase::Running { .. } => inner.all(ServiceStatus::Failed),
                _ => inner.report_without_supervisor(&state),
            },
        }
    }

    /// Stops the service `name` by its shutdown and keeps it stopped (its
    /// status becomes [`Stopped`](ServiceStatus::Stopped)) until
    /// [`restart_service`](Self::restart_service). The services that depend
    /// on it keep running. Stopping a service that is not running succeeds.
    pub async fn stop_service(&self, name: &str) -> Result<(), ApplicationError> {
        let position = self.position(name)?;
        let supervisor = self.running_supervisor()?;
        self.inner.state.lock().held.insert(position);
        match supervisor.terminate_child(name).await {
            // A temporary service that exited is no longer a child.
            Ok(()) | Err(SupervisorError::NotFound) => Ok(()),
            Err(error) => Err(self.admin_error(name, error)),
        }
    }

    /// Restarts the service `name`: stops it if it runs (by its shutdown),
    /// starts it again from its spec, and returns its new process. Does not
    /// count toward the supervisor's restart intensity.
    ///
    /// Refused with [`DependencyDown`](ApplicationError::DependencyDown),
    /// before anything is stopped, if a service it depends on (directly or
    /// not) is not running; the error names the first such dependency in
    /// start order. A start error is
    /// [`Service`](ApplicationError::Service); the service is then not
    /// running.
    pub async fn restart_service(&self, name: &str) -> Result<ProcessHandle, ApplicationError> {
        let inner = &self.inner;
        let position = self.position(name)?;
        let supervisor = self.running_supervisor()?;
        let before = Snapshot::of(&inner.state.lock());
        let children = supervisor
            .which_children()
            .await
            .map_err(|error| self.admin_error(name, error))?;
        let report = inner.report(&before, &inner.state.lock(), &children);
        for &dependency in &inner.needs[position] {
            let status = report.services[dependency].status;
            if status != ServiceStatus::Running {
                return Err(ApplicationError::DependencyDown {
                    service: inner.names[position].clone(),
                    dependency: inner.names[dependency].clone(),
                    status,
                });
            }
        }
        inner.state.lock().held.insert(position);
        let restarted = match supervisor.terminate_child(name).await {
            Ok(()) => supervisor.restart_child(name).await,
            // A temporary service that exited was removed: add it again.
            Err(SupervisorError::NotFound) => match prepare(&*inner.services[position]) {
                Ok((spec, _check)) => supervisor.start_child(spec).await,
                Err(error) => {
                    inner.state.lock().held.remove(&position);
                    return Err(error);
                }
            },
            Err(error) => Err(error),
        };
        inner.state.lock().held.remove(&position);
        restarted.map_err(|error| self.admin_error(name, error))
    }

    /// Runs the health check of every running service, all at once, each
    /// within its timeout, and returns each service's [`Health`] in start
    /// order. A running service without a check is healthy; a service that
    /// is not running is not checked.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use kameo::prelude::*;
    /// use supervision_core::{
    ///     ApplicationSpec, ChildSpec, Health, HealthCheck, ServiceDef, ServiceStatus,
    /// };
    ///
    /// #[derive(Actor)]
    /// struct Worker;
    ///
    /// # #[tokio::main] async fn main() {
    /// let app = ApplicationSpec::new("app")
    ///     .service(
    ///         ServiceDef::child(ChildSpec::actor::<Worker>("db", || Worker)).with_health_check(
    ///             HealthCheck::new(Duration::from_secs(1), |db| async move {
    ///                 db.is_alive().then_some(()).ok_or_else(|| "db is down".to_owned())
    ///             }),
    ///         ),
    ///     )
    ///     .build()
    ///     .unwrap();
    /// // Not started yet: nothing is checked.
    /// let health = app.health().await;
    /// assert_eq!(health.of("db"), Some(&Health::NotRunning(ServiceStatus::Stopped)));
    ///
    /// app.start().await.unwrap();
    /// assert!(app.health().await.is_healthy());
    /// app.stop().await.unwrap();
    /// # }
    /// ```
    pub async fn health(&self) -> HealthReport {
        let status = self.status().await;
        let checks = self.inner.state.lock().checks.clone();
        let answers = status.services.iter().enumerate().map(|(position, s)| {
            let check = checks.get(position).cloned().flatten();
            async move {
                match (&s.handle, s.status, check) {
                    (Some(handle), ServiceStatus::Running, Some(check)) => {
                        check.run(handle.clone()).await
                    }
                    (Some(_), ServiceStatus::Running, None) => Health::Healthy,
                    (_, status, _) => Health::NotRunning(status),
                }
            }
        });
        let answers = join_all(answers).await;
        HealthReport {
            services: status
                .services
                .iter()
                .zip(answers)
                .map(|(s, health)| ServiceHealth {
                    name: s.name.clone(),
                    health,
                })
                .collect(),
        }
    }

    fn position(&self, name: &str) -> Result<usize, ApplicationError> {
        self.inner
            .names
            .iter()
            .position(|n| &**n == name)
            .ok_or_else(|| ApplicationError::UnknownService(name.into()))
    }

    /// The supervisor of a running application.
    fn running_supervisor(&self) -> Result<Supervisor, ApplicationError> {
        let state = self.inner.state.lock();
        match &state.phase {
            Phase::Running { supervisor } => Ok(supervisor.clone()),
            other => Err(ApplicationError::NotRunning(other.status())),
        }
    }

    /// A supervisor's refusal of an admin call: `NotRunning` if it is gone.
    fn admin_error(&self, name: &str, error: SupervisorError) -> ApplicationError {
        match error {
            SupervisorError::SupervisorGone => {
                let state = self.inner.state.lock();
                ApplicationError::NotRunning(match state.phase {
                    Phase::Running { .. } => ApplicationStatus::Failed,
                    ref other => other.status(),
                })
            }
            error => ApplicationError::Service {
                service: name.into(),
                error,
            },
        }
    }
}

impl Inner {
    /// Every service with one status.
    fn all(&self, status: ServiceStatus) -> StatusReport {
        StatusReport {
            application: match status {
                ServiceStatus::Failed => ApplicationStatus::Failed,
                _ => ApplicationStatus::Stopped,
            },
            services: self
                .names
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
    fn report_without_supervisor(&self, state: &State) -> StatusReport {
        let application = state.phase.status();
        let services = self
            .names
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
            application,
            services,
        }
    }

    /// The report from the supervisor's answer.
    ///
    /// `before` is the state when the supervisor was asked, `after` when it
    /// answered: a service missing from the answer is starting if it had
    /// not been started when the supervisor was asked, and a service not
    /// running was stopped on request if it was held at either time (a
    /// restart_service may have begun or ended in between).
    fn report(&self, before: &Snapshot, after: &State, children: &[ChildInfo]) -> StatusReport {
        let started = before.started;
        let services: Vec<ServiceReport> = self
            .names
            .iter()
            .enumerate()
            .map(|(position, name)| {
                let held = before.held.contains(&position) || after.held.contains(&position);
                let child = children.iter().find(|c| c.id == *name);
                let (status, handle) = match child.map(|c| &c.state) {
                    Some(ChildState::Running(handle)) => {
                        (ServiceStatus::Running, Some(handle.clone()))
                    }
                    Some(ChildState::Restarting) => (ServiceStatus::Restarting, None),
                    None if started.is_some_and(|started| position >= started) => {
                        (ServiceStatus::Starting, None)
                    }
                    Some(ChildState::NotRunning) | None if held => (ServiceStatus::Stopped, None),
                    Some(ChildState::NotRunning) | None => (ServiceStatus::Failed, None),
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

    fn stopped(&self, reason: &ExitReason) {
        if self.telemetry.is_enabled() {
            let reason = reason.to_string();
            self.telemetry.emit(
                events::APPLICATION_STOPPED,
                &[],
                &[
                    ("application", MetaValue::Str(&self.name)),
                    ("reason", MetaValue::Str(&reason)),
                ],
            );
        }
    }
}

/// Waits for the supervisor of run `generation` to exit; if nobody asked it
/// to (the application is still running that run), the application has
/// failed.
fn watch(inner: &Arc<Inner>, supervisor: &Supervisor, generation: u64) -> AbortHandle {
    let weak = Arc::downgrade(inner);
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        let reason = supervisor.exited().await;
        drop(supervisor);
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let failed = {
            let mut state = inner.state.lock();
            let current =
                state.generation == generation && matches!(state.phase, Phase::Running { .. });
            if current {
                state.phase = Phase::Failed;
                state.watcher = None;
            }
            current
        };
        if failed {
            inner.stopped(&reason);
        }
    })
    .abort_handle()
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.inner.name)
            .field("services", &self.inner.names)
            .field("phase", &self.inner.state.lock().phase.status())
            .finish()
    }
}
