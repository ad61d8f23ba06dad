//! Child specifications: what a supervisor starts, and how it restarts and
//! stops it ([`ChildSpec`], [`RestartType`], [`Shutdown`], [`ChildKind`]).

use std::{fmt, future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{FutureExt, future::BoxFuture};
use kameo::actor::{Actor, Spawn};

use crate::{
    Backoff, Deadlines, ExitReason, FlagsError, Metadata, Namespace, ProcessHandle, Registry,
    RegistryError, StartError, Stopper,
    handle::{KillOnDrop, start_scope},
};

/// The future a child's start factory returns: the started child, or why it
/// could not start.
pub type StartFuture = BoxFuture<'static, Result<ProcessHandle, StartError>>;

pub(crate) type StartFn = dyn Fn() -> StartFuture + Send + Sync;

/// An extra check run by [`ChildSpec::validate`], for specs that start a
/// supervisor (its flags and children are checked before anything starts).
type CheckFn = dyn Fn() -> Result<(), FlagsError> + Send + Sync;

/// When a supervisor restarts a child that exited, as in OTP.
///
/// | exit reason \ restart type  | `Permanent` | `Transient` | `Temporary` |
/// |-----------------------------|-------------|-------------|-------------|
/// | `Normal`, `Shutdown`        | restarted   | not         | not         |
/// | `Killed`, `Panic`, `Error`  | restarted   | restarted   | not         |
///
/// A temporary child is removed from its supervisor when it exits, whatever
/// the reason; its spec is not kept.
///
/// A supervisor child that gave up on its restart intensity exits with
/// `Shutdown(Some("reached max restart intensity: ..."))`, a clean exit: as
/// in OTP, only a permanent entry restarts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RestartType {
    /// Always restarted.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted.
    Temporary,
}

impl RestartType {
    /// Whether a child of this type that exited with `reason` is restarted.
    pub fn restarts_after(self, reason: &ExitReason) -> bool {
        match self {
            RestartType::Permanent => true,
            RestartType::Transient => !reason.is_clean(),
            RestartType::Temporary => false,
        }
    }
}

/// How a supervisor stops a child, as in OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shutdown {
    /// Ask the child to stop and wait this long; then kill it.
    Timeout(Duration),
    /// Kill the child at once.
    BrutalKill,
    /// Ask the child to stop and wait as long as it takes (the default for
    /// supervisors, whose own children bound their shutdown).
    Infinity,
}

impl Shutdown {
    /// The default for workers: 5 seconds, then kill.
    pub const WORKER_DEFAULT: Shutdown = Shutdown::Timeout(Duration::from_secs(5));

    /// The default for a child of `kind`: 5 s for workers, infinity for
    /// supervisors.
    pub fn default_for(kind: ChildKind) -> Shutdown {
        match kind {
            ChildKind::Worker => Shutdown::WORKER_DEFAULT,
            ChildKind::Supervisor => Shutdown::Infinity,
        }
    }

    /// Stops `child` by this policy and returns its exit reason; returns
    /// only once the child has stopped.
    ///
    /// A kill aborts the child's whole task (its `on_stop` included, see
    /// [`ProcessHandle::kill`]); a supervisor child killed takes its whole
    /// subtree with it, so `Timeout` bounds a subtree's shutdown too. If this
    /// future is dropped midway (its own supervisor being killed), the child
    /// is killed.
    pub async fn stop(self, child: &ProcessHandle) -> ExitReason {
        self.stop_by(child, None).await
    }

    /// [`stop`](Self::stop), with the timeout of [`Shutdown::Timeout`] on
    /// `deadlines` (and so on their clock) instead of a timer of its own:
    /// for callers that stop processes by the thousand.
    pub async fn stop_on(self, child: &ProcessHandle, deadlines: &Deadlines) -> ExitReason {
        self.stop_by(child, Some(deadlines)).await
    }

    async fn stop_by(self, child: &ProcessHandle, deadlines: Option<&Deadlines>) -> ExitReason {
        let guard = KillOnDrop::new(child);
        let exit = match self {
            Shutdown::BrutalKill => {
                child.kill();
                child.exited().await
            }
            Shutdown::Infinity => child.stop().await,
            Shutdown::Timeout(timeout) => {
                // The stop request itself may wait on a full mailbox, so the
                // timeout covers it too.
                let stopped = match deadlines {
                    Some(deadlines) => {
                        let deadline = deadlines.now() + timeout;
                        tokio::select! {
                            biased;
                            reason = child.stop() => Some(reason),
                            () = deadlines.at(deadline) => None,
                        }
                    }
                    None => tokio::time::timeout(timeout, child.stop()).await.ok(),
                };
                match stopped {
                    Some(reason) => reason,
                    None => {
                        child.kill();
                        child.exited().await
                    }
                }
            }
        };
        guard.disarm();
        exit
    }
}

/// Whether a child is a worker or a supervisor (which changes its default
/// [`Shutdown`] and how it is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChildKind {
    /// A worker.
    #[default]
    Worker,
    /// A supervisor, with children of its own.
    Supervisor,
}

/// What a supervisor needs to start, restart and stop one child.
///
/// Defaults: [`RestartType::Permanent`], [`ChildKind::Worker`], shutdown
/// 5 s then kill ([`Shutdown::WORKER_DEFAULT`]), no start timeout.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ChildSpec, RestartType, Shutdown};
///
/// #[derive(Actor)]
/// struct Cache;
///
/// let spec = ChildSpec::actor::<Cache>("cache", || Cache)
///     .with_restart(RestartType::Transient)
///     .with_shutdown(Shutdown::Timeout(Duration::from_secs(1)))
///     .with_start_timeout(Duration::from_secs(2));
/// assert_eq!(&*spec.id, "cache");
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    /// The child's id, unique among a static supervisor's children.
    pub id: Arc<str>,
    /// When the child is restarted.
    pub restart: RestartType,
    /// How the child is stopped.
    pub shutdown: Shutdown,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// How long a start may take before it counts as failed; `None` waits as
    /// long as it takes.
    pub start_timeout: Option<Duration>,
    /// Opt-in wait before each restart; `None` restarts at once.
    pub backoff: Option<Backoff>,
    /// Whether its own termination may stop a static supervisor with an
    /// [`AutoShutdown`](crate::AutoShutdown), as OTP 24's `significant`.
    pub significant: bool,
    start: Arc<StartFn>,
    check: Option<Arc<CheckFn>>,
    registration: Option<Arc<Registration>>,
}

/// A name each incarnation of a child registers under (see
/// [`ChildSpec::registered_as`]).
struct Registration {
    registry: Arc<dyn Registry>,
    namespace: Namespace,
    name: Arc<str>,
    metadata: Metadata,
}

impl Registration {
    /// Registers `handle`, with `stopper` if its supervisor gave one.
    fn register(
        &self,
        handle: &ProcessHandle,
        stopper: Option<Stopper>,
    ) -> Result<(), RegistryError> {
        let (ns, name, metadata) = (&self.namespace, &*self.name, self.metadata.clone());
        match stopper {
            Some(stopper) => {
                self.registry
                    .register_with_stopper(ns, name, handle.clone(), metadata, stopper)
            }
            None => self.registry.register(ns, name, handle.clone(), metadata),
        }
    }
}

impl ChildSpec {
    /// A worker spec whose start factory returns a future of the started
    /// child. The factory is called again for each restart.
    pub fn new<F, Fut>(id: impl Into<Arc<str>>, start: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ProcessHandle, StartError>> + Send + 'static,
    {
        ChildSpec {
            id: id.into(),
            restart: RestartType::default(),
            shutdown: Shutdown::WORKER_DEFAULT,
            kind: ChildKind::Worker,
            start_timeout: None,
            backoff: None,
            significant: false,
            start: Arc::new(move || Box::pin(start())),
            check: None,
            registration: None,
        }
    }

    /// A worker spec that spawns a kameo actor of type `A`, with arguments
    /// made by `args` for each (re)start.
    pub fn actor<A>(
        id: impl Into<Arc<str>>,
        args: impl Fn() -> A::Args + Send + Sync + 'static,
    ) -> Self
    where
        A: Actor + Spawn,
    {
        ChildSpec::new(id, move || ProcessHandle::spawn::<A>(args()))
    }

    /// Sets the restart type.
    pub fn with_restart(mut self, restart: RestartType) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the shutdown policy.
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Marks the child as a supervisor; its shutdown becomes
    /// [`Shutdown::Infinity`] unless set afterwards.
    pub fn supervisor(mut self) -> Self {
        self.kind = ChildKind::Supervisor;
        self.shutdown = Shutdown::default_for(ChildKind::Supervisor);
        self
    }

    /// Sets a start timeout, so a start that hangs fails instead of hanging
    /// its supervisor.
    pub fn with_start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = Some(timeout);
        self
    }

    /// Makes restarts wait by `backoff` (see [`Backoff`]).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = Some(backoff);
        self
    }

    /// Marks the child significant (see [`AutoShutdown`](crate::AutoShutdown)):
    /// it must be transient or temporary, under a static supervisor with an
    /// auto shutdown.
    pub fn with_significant(mut self, significant: bool) -> Self {
        self.significant = significant;
        self
    }

    /// Registers each incarnation of the child under `name` in `namespace`
    /// of `registry`, with `metadata`, as soon as its start completes: OTP's
    /// `{via, Module, Name}`. The name follows the child across restarts
    /// without any code in the child.
    ///
    /// `registry` is anything that converts into the contract: an
    /// `Arc<dyn Registry>`, or process-registry's `ProcessRegistry` itself
    /// (a cheap clone; it implements `Into<Arc<dyn Registry>>`).
    ///
    /// - An incarnation that stops frees the name (the registry removes a
    ///   stopped holder's names; a restart takes the name over at once,
    ///   even before that cleanup ran), and a start that fails or times out
    ///   never holds it.
    /// - If another live process holds the name when an incarnation starts,
    ///   that incarnation is stopped again (by the spec's
    ///   [`Shutdown`]) and the start fails with
    ///   [`StartError::AlreadyRegistered`], naming the holder.
    /// - The registration carries the [`Stopper`] of the supervisor that
    ///   started the child (static or dynamic), so a registry that stops the
    ///   process itself (a namespace cleanup) asks that supervisor, and the
    ///   child is not restarted behind its back.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use kameo::prelude::*;
    /// # use mabeam_supervision_core::*;
    /// # fn registry() -> Arc<dyn Registry> { unimplemented!() }
    /// #[derive(Actor)]
    /// struct Cache;
    ///
    /// # fn spec(registry: Arc<dyn Registry>) -> ChildSpec {
    /// ChildSpec::actor::<Cache>("cache", || Cache)
    ///     .registered_as(registry, Namespace::Production, "cache", serde_json::json!({"tier": 1}))
    /// # }
    /// ```
    pub fn registered_as(
        mut self,
        registry: impl Into<Arc<dyn Registry>>,
        namespace: Namespace,
        name: impl Into<Arc<str>>,
        metadata: Metadata,
    ) -> Self {
        self.registration = Some(Arc::new(Registration {
            registry: registry.into(),
            namespace,
            name: name.into(),
            metadata,
        }));
        self
    }

    /// The name each incarnation registers under, if any:
    /// `(namespace, name)`.
    pub fn registered_name(&self) -> Option<(Namespace, &Arc<str>)> {
        self.registration
            .as_ref()
            .map(|registration| (registration.namespace, &registration.name))
    }

    /// Adds a check that [`validate`](Self::validate) runs after its own,
    /// for a spec that starts a supervisor: its flags and children.
    pub(crate) fn with_check(
        mut self,
        check: impl Fn() -> Result<(), FlagsError> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Arc::new(check));
        self
    }

    /// The same spec, calling `before` each time it is started (first
    /// start and every restart), before the start itself.
    pub(crate) fn before_each_start(mut self, before: impl Fn() + Send + Sync + 'static) -> Self {
        let start = self.start.clone();
        self.start = Arc::new(move || {
            before();
            start()
        });
        self
    }

    /// The same spec without its start factory (and whatever the factory
    /// captured): for a child that is never restarted, whose supervisor
    /// keeps only what it needs to stop and report it. A start of the
    /// result fails.
    ///
    /// `no_start` is the start left in its place, from
    /// [`no_start`](Self::no_start): one shared by every such child.
    pub(crate) fn without_start(&self, no_start: &Arc<StartFn>) -> ChildSpec {
        ChildSpec {
            start: no_start.clone(),
            check: None,
            ..self.clone()
        }
    }

    /// A start that fails: what [`without_start`](Self::without_start)
    /// leaves.
    pub(crate) fn no_start() -> Arc<StartFn> {
        Arc::new(|| Box::pin(async { Err(StartError::failed("start parameters were dropped")) }))
    }

    /// Checks the spec: no zero shutdown or start timeout; for a spec that
    /// starts a static [`Supervisor`](crate::Supervisor), its flags and
    /// children too, so a whole tree is checked before anything starts.
    pub fn validate(&self) -> Result<(), FlagsError> {
        if self.shutdown == Shutdown::Timeout(Duration::ZERO) {
            return Err(FlagsError::ZeroShutdownTimeout(self.id.clone()));
        }
        if let Some(backoff) = &self.backoff {
            backoff.validate()?;
        }
        if self.start_timeout == Some(Duration::ZERO) {
            return Err(FlagsError::ZeroStartTimeout(self.id.clone()));
        }
        if self.significant && self.restart == RestartType::Permanent {
            return Err(FlagsError::SignificantPermanent(self.id.clone()));
        }
        match &self.check {
            Some(check) => check(),
            None => Ok(()),
        }
    }

    /// Runs the start factory once: a panic in it, or a start that outlasts
    /// the start timeout, is a [`StartError`]. A child
    /// [`registered_as`](Self::registered_as) a name is registered (without
    /// a [`Stopper`]: no supervisor started it).
    ///
    /// On a timeout the start is dropped and the actors it was starting
    /// through [`ProcessHandle::spawn`] (or a supervisor's start) are killed,
    /// their `on_start` included; this returns once they are gone, so what
    /// they registered is released before a retry.
    pub async fn start(&self) -> Result<ProcessHandle, StartError> {
        self.start_with(None).await
    }

    /// [`start`](Self::start) by a supervisor, whose `stopper` goes with
    /// the child's registration if it has one.
    pub(crate) async fn start_supervised(
        &self,
        stopper: impl FnOnce() -> Stopper,
    ) -> Result<ProcessHandle, StartError> {
        let stopper = self.registration.is_some().then(stopper);
        self.start_with(stopper).await
    }

    async fn start_with(&self, stopper: Option<Stopper>) -> Result<ProcessHandle, StartError> {
        let started = AssertUnwindSafe((self.start)()).catch_unwind();
        let result = match self.start_timeout {
            Some(timeout) => {
                let (outcome, abandoned) =
                    start_scope(async move { tokio::time::timeout(timeout, started).await }).await;
                match outcome {
                    Ok(result) => result,
                    Err(_elapsed) => {
                        for child in abandoned {
                            child.exited().await;
                        }
                        return Err(StartError::Timeout(timeout));
                    }
                }
            }
            None => started.await,
        };
        let handle = result
            .unwrap_or_else(|panic| Err(StartError::Panicked(panic_message(&*panic).into())))?;
        let Some(registration) = &self.registration else {
            return Ok(handle);
        };
        // Registered in the same poll as the start completed: no timeout
        // or cancellation can fall between the two.
        match registration.register(&handle, stopper) {
            Ok(()) => Ok(handle),
            Err(err) => {
                self.shutdown.stop(&handle).await;
                Err(match err {
                    RegistryError::AlreadyRegistered { name, holder } => {
                        StartError::AlreadyRegistered { name, holder }
                    }
                    other => StartError::failed(format_args!(
                        "registering as {:?}: {other}",
                        registration.name
                    )),
                })
            }
        }
    }
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .field("start_timeout", &self.start_timeout)
            .field("backoff", &self.backoff)
            .field("significant", &self.significant)
            .field("registered_as", &self.registered_name())
            .finish_non_exhaustive()
    }
}

/// A child spec with a hole for per-child arguments, for a
/// [`DynamicSupervisor`](crate::DynamicSupervisor) that starts many children
/// of one kind (OTP's `simple_one_for_one`, or a `DynamicSupervisor` with
/// `extra_arguments`).
///
/// The template holds the *extra arguments* `E`, given once; each child is
/// started with `(extra, args)`: the extra arguments come first, as OTP
/// prepends them. Every other option (restart type, shutdown, kind, start
/// timeout, backoff) is a [`ChildSpec`]'s, set with the spec's own builders
/// through [`with_options`](Self::with_options).
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ChildTemplate, ProcessHandle, RestartType};
///
/// #[derive(Actor)]
/// struct Worker { pool: &'static str, n: u32 }
///
/// let template = ChildTemplate::new("worker", "pool-a", |pool: &'static str, n: u32| {
///     ProcessHandle::spawn::<Worker>(Worker { pool, n })
/// })
/// .with_options(|spec| spec.with_restart(RestartType::Transient));
/// let spec = template.spec(7);
/// assert_eq!(&*spec.id, "worker");
/// assert_eq!(spec.restart, RestartType::Transient);
/// ```
pub struct ChildTemplate<A> {
    /// Every option of the children; its start factory is never called.
    options: ChildSpec,
    start: Arc<dyn Fn(A) -> StartFuture + Send + Sync>,
}

impl<A> ChildTemplate<A>
where
    A: Clone + Send + Sync + 'static,
{
    /// A template of workers started by `start(extra, args)`, with a
    /// [`ChildSpec`]'s defaults.
    pub fn new<E, F, Fut>(id: impl Into<Arc<str>>, extra: E, start: F) -> Self
    where
        E: Clone + Send + Sync + 'static,
        F: Fn(E, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ProcessHandle, StartError>> + Send + 'static,
    {
        let options = ChildSpec::new(id, || async {
            Err(StartError::failed("a template's own spec is never started"))
        });
        ChildTemplate {
            options,
            start: Arc::new(move |args| Box::pin(start(extra.clone(), args))),
        }
    }

    /// Sets the options of every child with [`ChildSpec`]'s builders
    /// (`with_restart`, `with_shutdown`, `supervisor`, `with_start_timeout`,
    /// `with_backoff`). The start factory stays the template's.
    pub fn with_options(mut self, options: impl FnOnce(ChildSpec) -> ChildSpec) -> Self {
        self.options = options(self.options);
        self
    }

    /// The options every child is started with (the id, restart type,
    /// shutdown, kind, start timeout and backoff of its spec).
    pub fn options(&self) -> &ChildSpec {
        &self.options
    }

    /// The spec of one child started with `args` (cloned for each restart).
    pub fn spec(&self, args: A) -> ChildSpec {
        let start = self.start.clone();
        ChildSpec {
            start: Arc::new(move || start(args.clone())),
            check: None,
            ..self.options.clone()
        }
    }
}

impl<A> Clone for ChildTemplate<A> {
    fn clone(&self) -> Self {
        ChildTemplate {
            options: self.options.clone(),
            start: self.start.clone(),
        }
    }
}

impl<A> fmt::Debug for ChildTemplate<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildTemplate")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
