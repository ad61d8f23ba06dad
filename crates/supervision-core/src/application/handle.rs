//! [`Application`]: the handle of an [`ApplicationSpec`] built: start,
//! stop, status, and the admin calls on one service (health is in
//! `health.rs`).

use std::{
    fmt, mem,
    sync::{Arc, Weak},
};

use parking_lot::Mutex;

use super::{
    ApplicationError, ApplicationSpec, ApplicationStatus, Service, ServiceStatus, StatusReport,
    phase::{AdminCall, Phase, StartRun, State},
    plan::Plan,
    prepare,
    status::{self, Snapshot},
    watcher::watch,
};
use crate::{
    ChildSpec, ExitReason, MetaValue, ProcessHandle, Supervisor, SupervisorError, SupervisorFlags,
    events,
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
/// # Order and cancellation
///
/// The admin calls ([`start`](Self::start), [`stop`](Self::stop),
/// [`stop_service`](Self::stop_service),
/// [`restart_service`](Self::restart_service)) run one at a time, in the
/// order they were made: a `stop_service("x")` made while a
/// `restart_service("x")` runs takes effect after it, and leaves `x`
/// stopped. [`status`](Self::status) and [`health`](Self::health) wait for
/// no admin call.
///
/// Every call is safe to cancel (its future dropped at any `.await`): a
/// dropped `start` is undone (the application ends stopped), a dropped
/// `stop` goes on to the end, a dropped service call leaves the service
/// running or stopped. No phase is left for ever `Starting` or `Stopping`;
/// the next admin call waits until what the dropped one left is done.
///
/// # Services stopped on request and group restarts
///
/// A service stopped with `stop_service` stays stopped until
/// `restart_service`, with one exception, OTP's rule: under
/// [`Strategy::OneForAll`](crate::Strategy::OneForAll) and
/// [`Strategy::RestForOne`](crate::Strategy::RestForOne), when a service
/// exits and its group is restarted, every member of the group starts
/// again, those stopped on request included. Such a service is then
/// running like the others (and failed if it later exits for good).
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
/// | terminated on request (`Terminated`)    | `Stopped`    |
/// | not running by itself (`NotRunning`)    | `Failed`     |
/// | removed, after `stop_service`           | `Stopped`    |
/// | removed otherwise                       | `Failed`     |
/// | the supervisor gave up                  | `Failed` (every service) |
///
/// The supervisor's answer is the fact: a service it reports terminated
/// was stopped on request and not started since; one it reports not
/// running exited by itself (or a `restart_service` could not start it),
/// even if a `stop_service` of it ran before a group restart started it
/// again. (A temporary service is removed when it stops: only then does
/// the application's own record of `stop_service` decide.)
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
/// use mabeam_supervision_core::{
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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    /// In start order.
    services: Vec<Arc<dyn Service>>,
    /// The services' names, in start order.
    pub(super) names: Vec<Arc<str>>,
    /// For each service (by position in start order): the positions of
    /// everything it depends on, directly or not, ascending.
    needs: Vec<Vec<usize>>,
    /// The supervisor's flags; their name, telemetry and clock are the
    /// application's.
    pub(super) flags: SupervisorFlags,
    /// Orders admin calls: each holds it for its whole run (a dropped
    /// start hands it to the task that undoes it, a stop to the task that
    /// stops).
    ops: Arc<tokio::sync::Mutex<()>>,
    pub(super) state: Mutex<State>,
}

/// A handle to an [`Application`] that does not keep it alive: for a
/// service that watches the application it runs in (a health monitor),
/// where a strong handle would make a cycle and the application would
/// never stop when its user drops the last [`Application`].
#[derive(Clone)]
pub struct WeakApplication {
    inner: Weak<Inner>,
    name: Arc<str>,
}

impl WeakApplication {
    /// The application, while some [`Application`] handle still holds it.
    pub fn upgrade(&self) -> Option<Application> {
        self.inner.upgrade().map(|inner| Application { inner })
    }

    /// The application's name (known after it is gone).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for WeakApplication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakApplication")
            .field("name", &self.name)
            .field("alive", &(self.inner.strong_count() > 0))
            .finish()
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
                names: services.iter().map(|s| s.name().into()).collect(),
                services,
                needs: plan.needs,
                flags: spec.flags,
                ops: Arc::new(tokio::sync::Mutex::new(())),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.inner.flags.name
    }

    /// A handle that does not keep the application alive.
    pub fn downgrade(&self) -> WeakApplication {
        WeakApplication {
            inner: Arc::downgrade(&self.inner),
            name: self.inner.flags.name.clone(),
        }
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
    /// running.
    ///
    /// Dropping the returned future before it finishes undoes the start:
    /// the supervisor is killed (a service start it waits on may never
    /// end), which stops the services already started, each by its
    /// shutdown; the application is then stopped. Meanwhile it is
    /// [`Stopping`](ApplicationStatus::Stopping), and the next admin call
    /// waits for the undoing to end.
    pub async fn start(&self) -> Result<(), ApplicationError> {
        let inner = &self.inner;
        let ops = inner.ops.clone().lock_owned().await;
        if matches!(
            inner.state.lock().phase,
            Phase::Starting { .. } | Phase::Running { .. }
        ) {
            return Err(ApplicationError::AlreadyStarted);
        }
        let began = inner.flags.clock.now();
        let mut specs = Vec::with_capacity(inner.services.len());
        let mut checks = Vec::with_capacity(inner.services.len());
        for service in &inner.services {
            let (spec, check) = prepare(&**service)?;
            specs.push(spec);
            checks.push(check);
        }
        let mut run = StartRun::new(inner.clone(), ops);
        let supervisor = Supervisor::start(inner.flags.clone(), [])
            .await
            .map_err(ApplicationError::Supervisor)?;
        let generation = run.starting(&supervisor, checks);
        for (position, spec) in specs.into_iter().enumerate() {
            let spec = started_by_supervisor(inner, spec, position, generation);
            if let Err(error) = supervisor.start_child(spec).await {
                run.fail(position).await;
                return Err(ApplicationError::StartFailed {
                    service: inner.names[position].clone(),
                    error,
                });
            }
            run.started(position + 1);
        }
        run.finish(watch(inner, &supervisor, generation));
        inner.flags.telemetry.emit(
            events::APPLICATION_STARTED,
            &[(
                "duration_us",
                (inner.flags.clock.now() - began).as_secs_f64() * 1e6,
            )],
            &[
                ("application", MetaValue::Str(&inner.flags.name)),
                ("services", MetaValue::U64(inner.services.len() as u64)),
            ],
        );
        Ok(())
    }

    /// Stops every service in reverse start order (the supervisor's stop,
    /// each service by its shutdown), then the supervisor; returns once all
    /// have stopped, with the supervisor's exit reason, and emits
    /// `application.stopped`. Waits for an admin call in progress (a start,
    /// a restart_service) to finish first.
    ///
    /// [`NotRunning`](ApplicationError::NotRunning) if the application is
    /// not running (never started, stopped, or failed).
    ///
    /// The stop runs in a task of its own: dropping the returned future
    /// does not interrupt it, and the next admin call waits for it.
    pub async fn stop(&self) -> Result<ExitReason, ApplicationError> {
        let ops = self.inner.ops.clone().lock_owned().await;
        let supervisor = {
            let mut state = self.inner.state.lock();
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
        let inner = self.inner.clone();
        let stopping = tokio::spawn(async move {
            let reason = supervisor.stop().await;
            // A supervisor that had already given up answers with its error.
            inner.state.lock().phase = if reason.is_clean() {
                Phase::Stopped
            } else {
                Phase::Failed
            };
            inner.stopped(&reason);
            drop(ops);
            reason
        });
        match stopping.await {
            Ok(reason) => Ok(reason),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // The runtime is shutting down.
            Err(_cancelled) => Err(ApplicationError::NotRunning(ApplicationStatus::Stopping)),
        }
    }

    /// The status of the application and of each service, in start order,
    /// as its supervisor reports them (see the table on [`Application`]).
    /// Takes no lock an admin call holds: it answers while one runs.
    pub async fn status(&self) -> StatusReport {
        let inner = &self.inner;
        let (supervisor, before) = {
            let state = inner.state.lock();
            match state.phase.supervisor() {
                Some(supervisor) => (supervisor.clone(), Snapshot::of(&state)),
                None => return status::without_supervisor(&inner.names, &state),
            }
        };
        let children = supervisor.which_children().await;
        let mut state = inner.state.lock();
        match children {
            Ok(children) => status::from_children(&inner.names, &before, &mut state, &children),
            Err(_gone) => match state.phase {
                // Gone without a stop request: it gave up (the watcher has
                // not recorded it yet).
                Phase::Starting { .. } | Phase::Running { .. } => {
                    status::all(&inner.names, ServiceStatus::Failed)
                }
                _ => status::without_supervisor(&inner.names, &state),
            },
        }
    }

    /// Stops the service `name` by its shutdown; it stays stopped (its
    /// status is [`Stopped`](ServiceStatus::Stopped)) until
    /// [`restart_service`](Self::restart_service), or until a group
    /// restart of the application's supervisor (one_for_all, rest_for_one)
    /// starts it again with its group, as OTP does. The services that
    /// depend on it keep running. Stopping a service that is not running
    /// succeeds.
    ///
    /// Runs after the admin calls made before it, and before those made
    /// after it. Dropping the returned future leaves the service running or
    /// stopped, as far as the stop got.
    pub async fn stop_service(&self, name: &str) -> Result<(), ApplicationError> {
        let position = self.position(name)?;
        let _ops = self.inner.ops.lock().await;
        let supervisor = self.running_supervisor()?;
        let _call = AdminCall::begin(&self.inner.state);
        // The mark counts only if the supervisor forgets the service (a
        // temporary one is removed); otherwise its `Terminated` is the fact.
        self.inner.state.lock().stopped_on_request.insert(position);
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
    /// running ([`Failed`](ServiceStatus::Failed)).
    ///
    /// Runs after the admin calls made before it, and before those made
    /// after it. Dropping the returned future leaves the service running
    /// (old or new process) or stopped, as far as the restart got.
    pub async fn restart_service(&self, name: &str) -> Result<ProcessHandle, ApplicationError> {
        let inner = &self.inner;
        let position = self.position(name)?;
        let _ops = inner.ops.lock().await;
        let supervisor = self.running_supervisor()?;
        let _call = AdminCall::begin(&inner.state);
        let before = Snapshot::of(&inner.state.lock());
        let children = supervisor
            .which_children()
            .await
            .map_err(|error| self.admin_error(name, error))?;
        let report =
            status::from_children(&inner.names, &before, &mut inner.state.lock(), &children);
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
        inner.state.lock().stopped_on_request.insert(position);
        let restarted = match supervisor.terminate_child(name).await {
            Ok(()) => match supervisor.restart_child(name).await {
                // A group restart of the supervisor started it in between.
                Err(SupervisorError::Running) => running_handle(&supervisor, name).await,
                other => other,
            },
            // A temporary service that exited was removed: add it again.
            Err(SupervisorError::NotFound) => match prepare(&*inner.services[position]) {
                Ok((spec, _check)) => {
                    let generation = inner.state.lock().generation;
                    let spec = started_by_supervisor(inner, spec, position, generation);
                    supervisor.start_child(spec).await
                }
                Err(error) => return Err(error),
            },
            Err(error) => Err(error),
        };
        inner.state.lock().stopped_on_request.remove(&position);
        restarted.map_err(|error| self.admin_error(name, error))
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

/// The service at `position` of run `generation` as its spec for the
/// supervisor: each time the supervisor starts it (a group restart
/// included), it is no longer stopped on request.
fn started_by_supervisor(
    inner: &Arc<Inner>,
    spec: ChildSpec,
    position: usize,
    generation: u64,
) -> ChildSpec {
    let weak = Arc::downgrade(inner);
    spec.before_each_start(move || {
        if let Some(inner) = weak.upgrade() {
            let mut state = inner.state.lock();
            if state.generation == generation {
                state.stopped_on_request.remove(&position);
            }
        }
    })
}

/// The process of the running child `id`.
async fn running_handle(
    supervisor: &Supervisor,
    id: &str,
) -> Result<ProcessHandle, SupervisorError> {
    supervisor
        .which_children()
        .await?
        .into_iter()
        .find(|child| &*child.id == id)
        .and_then(|child| child.state.handle().cloned())
        .ok_or(SupervisorError::NotFound)
}

impl Inner {
    /// Emits `application.stopped`.
    pub(super) fn stopped(&self, reason: &ExitReason) {
        let telemetry = &self.flags.telemetry;
        if telemetry.is_enabled() {
            let reason = reason.to_string();
            telemetry.emit(
                events::APPLICATION_STOPPED,
                &[],
                &[
                    ("application", MetaValue::Str(&self.flags.name)),
                    ("reason", MetaValue::Str(&reason)),
                ],
            );
        }
    }
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.inner.flags.name)
            .field("services", &self.inner.names)
            .field("phase", &self.inner.state.lock().phase.status())
            .finish()
    }
}
