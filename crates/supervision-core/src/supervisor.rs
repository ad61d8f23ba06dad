//! [`Supervisor`]: a static supervisor with OTP's strategies, restart
//! intensity and ordered shutdown, implemented as its own kameo actor. The
//! behaviour (restart table, strategies, intensity, order) is documented on
//! [`Supervisor`]; the actor is in `actor.rs`, its admin calls in
//! `admin.rs`.

mod actor;
mod admin;

use std::{collections::HashSet, fmt, sync::Arc, time::Duration};

use crate::{
    ChildCounts, ChildInfo, ChildSpec, Clock, ExitReason, FlagsError, Intensity, ProcessHandle,
    StartError, SupervisorError, Telemetry, error::from_send_error, handle::KillOnDrop,
    supervisor_ref::SupervisorRef,
};

pub(crate) use actor::SupervisorActor;

/// Which children a static supervisor restarts along with a failed one.
///
/// The default is [`OneForOne`](Strategy::OneForOne), as in OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Only the failed child is restarted.
    #[default]
    OneForOne,
    /// All children are stopped in reverse order and started again in order.
    OneForAll,
    /// The failed child and the children after it in the list are stopped in
    /// reverse order and started again in order.
    RestForOne,
}

/// Whether a static supervisor stops by itself when its *significant*
/// children terminate, as OTP 24's `auto_shutdown` flag.
///
/// A child is significant when its spec says so
/// ([`ChildSpec::with_significant`]); it must be transient or temporary.
/// Only an exit by the child itself that is not restarted counts (a
/// transient child's clean exit, any exit of a temporary child), never a
/// `terminate_child`. The supervisor then stops every child in reverse
/// order and exits with [`ExitReason::Shutdown`], so its parent restarts it
/// only if it is permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AutoShutdown {
    /// Never stop by itself (the default); significant children are
    /// refused.
    #[default]
    Never,
    /// Stop when any significant child terminates.
    AnySignificant,
    /// Stop when every significant child has terminated.
    AllSignificant,
}

/// The settings of a static [`Supervisor`].
///
/// Defaults, as OTP's: [`Strategy::OneForOne`], intensity 3 restarts within
/// 5 seconds; name `supervisor`, telemetry disabled, the system
/// [`Clock`].
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::{Strategy, SupervisorFlags};
///
/// let flags = SupervisorFlags::new(Strategy::RestForOne).with_intensity(10, Duration::from_secs(1));
/// assert!(flags.validate().is_ok());
/// assert_eq!(SupervisorFlags::default().intensity.max_restarts, 3);
/// assert!(SupervisorFlags::default().with_intensity(1, Duration::ZERO).validate().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct SupervisorFlags {
    /// Which children restart with a failed one.
    pub strategy: Strategy,
    /// Restarts allowed within the window, for all children together.
    pub intensity: Intensity,
    /// The name in its telemetry events.
    pub name: Arc<str>,
    /// Where its events go (see [`events`](crate::events)).
    pub telemetry: Telemetry,
    /// Whether it stops by itself when its significant children terminate.
    pub auto_shutdown: AutoShutdown,
    /// The clock its restart window and its backoff waits read.
    pub clock: Clock,
}

impl Default for SupervisorFlags {
    fn default() -> Self {
        SupervisorFlags::new(Strategy::default())
    }
}

impl SupervisorFlags {
    /// Flags with `strategy` and the default intensity.
    pub fn new(strategy: Strategy) -> Self {
        SupervisorFlags {
            strategy,
            intensity: Intensity::default(),
            name: "supervisor".into(),
            telemetry: Telemetry::disabled(),
            auto_shutdown: AutoShutdown::Never,
            clock: Clock::system(),
        }
    }

    /// Sets the clock its restart window and backoff waits read (see
    /// [`Clock`]); tests give [`Clock::tokio`] or their own source.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the auto shutdown (see [`AutoShutdown`]).
    pub fn with_auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> Self {
        self.auto_shutdown = auto_shutdown;
        self
    }

    /// Sets the name its telemetry events carry.
    pub fn with_name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets where its telemetry events go.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Sets the intensity: at most `max_restarts` within `max_seconds`.
    pub fn with_intensity(mut self, max_restarts: u32, max_seconds: Duration) -> Self {
        self.intensity = Intensity {
            max_restarts,
            max_seconds,
        };
        self
    }

    /// Checks the flags: the restart window must be longer than zero.
    pub fn validate(&self) -> Result<(), FlagsError> {
        self.intensity.validate()
    }
}

/// Checks flags and children before anything starts: each spec (nested
/// supervisors' trees included), and that no two children share an id.
fn validate(flags: &SupervisorFlags, children: &[ChildSpec]) -> Result<(), FlagsError> {
    flags.validate()?;
    let mut ids = HashSet::with_capacity(children.len());
    for spec in children {
        spec.validate()?;
        check_significant(flags.auto_shutdown, spec)?;
        if !ids.insert(&spec.id) {
            return Err(FlagsError::DuplicateChildId(spec.id.clone()));
        }
    }
    Ok(())
}

/// A significant child needs a supervisor with an auto shutdown, as OTP.
fn check_significant(auto_shutdown: AutoShutdown, spec: &ChildSpec) -> Result<(), FlagsError> {
    if spec.significant && auto_shutdown == AutoShutdown::Never {
        return Err(FlagsError::SignificantWithoutAutoShutdown(spec.id.clone()));
    }
    Ok(())
}

/// A handle to a running static supervisor: cheap to clone; the supervisor
/// runs while any handle to it exists (dropping the last one stops it and
/// its children, in reverse order).
///
/// # Terms
///
/// A static supervisor is started with a list of [`ChildSpec`]s: its
/// *children*, each known by its id. It starts them in list order, watches
/// them so that their exits reach it, and decides for each exit by the
/// child's [`RestartType`], its own [`Strategy`] and its restart
/// [`Intensity`]. A supervisor is a child like any other
/// ([`Supervisor::child_spec`]), so whole trees are built and stopped.
///
/// # Restarts
///
/// When a child exits, its restart type decides whether it is restarted:
///
/// | exit reason \ restart type  | `Permanent` | `Transient`           | `Temporary` |
/// |-----------------------------|-------------|-----------------------|-------------|
/// | `Normal`, `Shutdown`        | restarted   | not running, kept     | removed     |
/// | `Killed`, `Panic`, `Error`  | restarted   | restarted             | removed     |
///
/// "Not running, kept": the spec stays and [`which_children`] shows it as
/// [`ChildState::NotRunning`]; [`restart_child`] starts it again. A temporary
/// child is never restarted: it is removed when it exits, whatever the
/// reason, and when it is terminated. A child that exits while the
/// supervisor itself is stopping is never restarted. A child the
/// supervisor stops exits `Shutdown` when the stop ended it; one that
/// ended by itself first (it stopped in the handler it was in while the
/// stop request waited in its mailbox) keeps `Normal`, as OTP reports
/// `normal` for a child that exits before it handles its `shutdown`.
///
/// The strategy decides which children a restart takes along:
///
/// | strategy                   | restarted with the failed child                         |
/// |----------------------------|---------------------------------------------------------|
/// | [`Strategy::OneForOne`]    | none: only the failed child is started again            |
/// | [`Strategy::OneForAll`]    | all: the others are stopped in reverse order, then all are started in list order |
/// | [`Strategy::RestForOne`]   | those after it in the list: stopped in reverse order, then started in list order |
///
/// As in OTP, a group restart (one_for_all, rest_for_one) stops its
/// temporary members for good (they are removed) and starts every other
/// member, including one that was not running (terminated, or a transient
/// child that had finished).
///
/// A restart whose start fails (an error, a panic or its start timeout) does
/// not block the supervisor: the members waiting show as
/// [`ChildState::Restarting`], and the supervisor retries through its
/// mailbox, so admin calls keep answering in between. Each attempt counts
/// toward the intensity. As in OTP, which members wait depends on the
/// strategy: under one_for_all the members the attempt already started are
/// stopped again in reverse order and the whole group is retried; under
/// rest_for_one the members started before the failed one keep running and
/// the retry starts from the child whose start failed.
///
/// A start may answer [`StartError::Ignored`] (OTP's `ignore`): the child's
/// spec is kept, not running, whether at the supervisor's start, in
/// [`start_child`] (which returns that error) or in a restart; a temporary
/// child's spec is not kept (it is absent from [`which_children`] and
/// [`count_children`], as in OTP). [`terminate_child`] takes a waiting child out of
/// the retry (it stays not running); the rest of its group is retried
/// without it.
///
/// A child counts as exited once its `on_stop` has returned (for a
/// supervisor child: once its whole subtree has stopped); only then does the
/// supervisor learn of the exit and start anything again.
///
/// # Backoff
///
/// A child with a [`Backoff`](crate::Backoff) in its spec waits before each
/// restart; a group restart waits for the longest backoff among its members.
/// Meanwhile the group shows as [`ChildState::Restarting`]. The restart
/// counts toward the intensity when it is decided, before the wait.
///
/// # Telemetry
///
/// Every start, exit, restart, backoff, termination and giving up is an event
/// on the flags' telemetry handle (see [`events`](crate::events)).
///
/// # Significant children and auto shutdown
///
/// As OTP 24: with [`SupervisorFlags::auto_shutdown`] set, a child marked
/// [significant](ChildSpec::with_significant) (transient or temporary) that
/// terminates by itself and is not restarted stops the supervisor
/// ([`AutoShutdown::AnySignificant`]), or does once every significant child
/// has ([`AutoShutdown::AllSignificant`]). The supervisor stops its children
/// in reverse order and exits with [`ExitReason::Shutdown`]. A
/// [`DynamicSupervisor`](crate::DynamicSupervisor) has no auto shutdown, as
/// OTP's, and refuses significant children.
///
/// # Intensity and escalation
///
/// Every restart (and every retry) is counted in a sliding window of
/// [`Intensity::max_seconds`]; more than [`Intensity::max_restarts`] in the
/// window and the supervisor gives up: it stops all its children in reverse
/// list order and exits with `ExitReason::Shutdown(Some("reached max
/// restart intensity: ..."))`, as OTP's supervisor exits with `shutdown`.
/// Its own supervisor sees that exit as any child's, so escalation follows
/// the restart type the parent gave it:
///
/// | parent's entry for the supervisor | after it gave up                                  |
/// |-----------------------------------|---------------------------------------------------|
/// | `Permanent` (the default)         | restarted with its whole subtree, counted in the parent's intensity (which may give up in turn, up to the root) |
/// | `Transient`                       | not restarted: a clean exit; shown not running     |
/// | `Temporary`                       | removed                                            |
///
/// # Order
///
/// Children start in list order ([`start_child`] appends to the list), and a
/// supervisor's start returns only once all have started; if one fails to
/// start, those already started are stopped in reverse order, the error is
/// returned and nothing is kept. Children stop in reverse list order, each by
/// its [`Shutdown`](crate::Shutdown): [`Supervisor::stop`] returns only once
/// every process below has stopped.
///
/// A supervisor blocks while it starts or stops a child, as OTP's does: a
/// start is bounded by the spec's start timeout (a start that runs out is
/// killed, its `on_start` included, before the supervisor goes on), a stop
/// by its shutdown (supervisor children default to `Infinity`: their own
/// children bound their shutdown). When a `Timeout` runs out, or for
/// `BrutalKill`, the child is killed: its whole task is aborted, its
/// `on_stop` included (see [`ProcessHandle::kill`]); a supervisor child is
/// killed with its whole subtree, without the subtree's graceful shutdown.
/// So `stop()` returns within the bounds its children's shutdowns set, even
/// when a worker deep in a subtree is stuck. Keep children cooperative
/// (see the crate docs).
///
/// # Failure contract
///
/// Every admin call fails with [`SupervisorError::SupervisorGone`] if the
/// supervisor has stopped, [`SupervisorError::NotFound`] for an unknown
/// child id, and [`SupervisorError::InvalidFlags`] for a spec that does not
/// validate. Nothing panics on bad input.
///
/// # Example
///
/// A tree: a one_for_all supervisor of two workers under a one_for_one
/// root.
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ChildSpec, ChildState, Strategy, Supervisor, SupervisorFlags};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let pair = Supervisor::child_spec(
///     "pair",
///     SupervisorFlags::new(Strategy::OneForAll),
///     [
///         ChildSpec::actor::<Worker>("left", || Worker),
///         ChildSpec::actor::<Worker>("right", || Worker),
///     ],
/// );
/// let root = Supervisor::start(
///     SupervisorFlags::default(),
///     [ChildSpec::actor::<Worker>("cache", || Worker), pair],
/// )
/// .await
/// .unwrap();
///
/// let children = root.which_children().await.unwrap();
/// assert_eq!(children.len(), 2);
/// let pair = Supervisor::from_handle(children[1].state.handle().unwrap()).unwrap();
/// assert_eq!(pair.count_children().await.unwrap().active, 2);
///
/// root.terminate_child("cache").await.unwrap();
/// assert_eq!(root.which_children().await.unwrap()[0].state, ChildState::Terminated);
/// root.restart_child("cache").await.unwrap();
///
/// root.stop().await; // stops pair's workers, then pair, then cache
/// assert!(!pair.handle().is_alive());
/// # }
/// ```
///
/// [`which_children`]: Self::which_children
/// [`restart_child`]: Self::restart_child
/// [`count_children`]: Self::count_children
/// [`start_child`]: Self::start_child
/// [`terminate_child`]: Self::terminate_child
/// [`RestartType`]: crate::RestartType
/// [`ChildState::NotRunning`]: crate::ChildState::NotRunning
/// [`ChildState::Restarting`]: crate::ChildState::Restarting
/// [`StartError::Ignored`]: crate::StartError::Ignored
#[derive(Clone)]
pub struct Supervisor {
    inner: SupervisorRef<SupervisorActor>,
}

impl Supervisor {
    /// Starts a supervisor and its children, in order; returns once all have
    /// started.
    ///
    /// Flags and specs are checked first ([`SupervisorError::InvalidFlags`]).
    /// If a child fails to start, those already started are stopped in
    /// reverse order, the supervisor stops, and the error names the child
    /// ([`SupervisorError::ChildStart`]).
    pub async fn start(
        flags: SupervisorFlags,
        children: impl IntoIterator<Item = ChildSpec>,
    ) -> Result<Supervisor, SupervisorError> {
        let children: Vec<ChildSpec> = children.into_iter().collect();
        validate(&flags, &children)?;
        let supervisor = Supervisor {
            inner: SupervisorRef::spawn(SupervisorActor::new(flags)),
        };
        // Dropped midway (a start timeout): the supervisor is killed, and
        // the children it started with it.
        let guard = KillOnDrop::new(supervisor.handle());
        let started = supervisor
            .inner
            .actor
            .ask(admin::StartChildren(children))
            .await
            .map_err(from_send_error);
        guard.disarm();
        match started {
            Ok(()) => Ok(supervisor),
            Err(err) => {
                supervisor.stop().await;
                Err(err)
            }
        }
    }

    /// A child spec that starts a supervisor with `flags` and `children`, to
    /// nest it under another supervisor; a restart starts the whole subtree
    /// again from these specs. The spec is a [supervisor
    /// child](ChildSpec::supervisor) (shutdown `Infinity`), and its
    /// [`validate`](ChildSpec::validate) checks the flags and children too.
    /// Get the API back from the child's handle with
    /// [`from_handle`](Self::from_handle).
    pub fn child_spec(
        id: impl Into<Arc<str>>,
        flags: SupervisorFlags,
        children: impl IntoIterator<Item = ChildSpec>,
    ) -> ChildSpec {
        let children: Arc<[ChildSpec]> = children.into_iter().collect();
        let checked = children.clone();
        let checked_flags = flags.clone();
        ChildSpec::new(id, move || {
            let (flags, children) = (flags.clone(), children.clone());
            async move {
                Supervisor::start(flags, children.iter().cloned())
                    .await
                    .map(|sup| sup.inner.handle)
                    .map_err(StartError::failed)
            }
        })
        .supervisor()
        .with_check(move || validate(&checked_flags, &checked))
    }

    /// The supervisor behind a process handle, if it is a static supervisor.
    pub fn from_handle(handle: &ProcessHandle) -> Option<Self> {
        SupervisorRef::from_handle(handle).map(|inner| Supervisor { inner })
    }

    /// Adds a child at the end of the list and starts it; returns its handle
    /// once its start has completed. A start error is returned and nothing
    /// is kept; a start that answers [`StartError::Ignored`] returns that
    /// error and keeps the spec, not running (a temporary child's is not
    /// kept).
    ///
    /// Errors: [`AlreadyStarted`](SupervisorError::AlreadyStarted) (with the
    /// running child's handle) or
    /// [`AlreadyPresent`](SupervisorError::AlreadyPresent) if a child has
    /// this id, [`Restarting`](SupervisorError::Restarting) if that child is
    /// being restarted.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ProcessHandle, SupervisorError> {
        spec.validate()?;
        self.inner
            .actor
            .ask(admin::StartChild(spec))
            .await
            .map_err(from_send_error)
    }

    /// Stops the child `id` by its shutdown and returns once it has stopped.
    /// Its spec is kept and it shows as
    /// [`Terminated`](crate::ChildState::Terminated) until it starts again
    /// (a temporary child's spec is removed, as in OTP); a pending restart
    /// of it is cancelled. Terminating a child that is not running succeeds
    /// (it then shows as terminated too).
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        self.inner
            .actor
            .ask(admin::TerminateChild(id.into()))
            .await
            .map_err(from_send_error)
    }

    /// Starts the not-running child `id` again from its spec and returns its
    /// handle. Errors: [`Running`](SupervisorError::Running),
    /// [`Restarting`](SupervisorError::Restarting), or the start error (the
    /// child stays not running, as
    /// [`NotRunning`](crate::ChildState::NotRunning) even if it was
    /// terminated). Does not count toward the intensity.
    pub async fn restart_child(&self, id: &str) -> Result<ProcessHandle, SupervisorError> {
        self.inner
            .actor
            .ask(admin::RestartChild(id.into()))
            .await
            .map_err(from_send_error)
    }

    /// Removes the spec of the not-running child `id`. Errors:
    /// [`Running`](SupervisorError::Running),
    /// [`Restarting`](SupervisorError::Restarting).
    pub async fn delete_child(&self, id: &str) -> Result<(), SupervisorError> {
        self.inner
            .actor
            .ask(admin::DeleteChild(id.into()))
            .await
            .map_err(from_send_error)
    }

    /// Every child in list order: its id, its handle or whether it is not
    /// running or restarting, its kind and restart type.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.inner.which_children().await
    }

    /// The child counts.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.inner.count_children().await
    }

    /// Stops every child in reverse list order, each by its shutdown, then
    /// the supervisor; returns once all have stopped, with the supervisor's
    /// exit reason.
    pub async fn stop(&self) -> ExitReason {
        self.inner.stop().await
    }

    /// Waits until the supervisor has stopped (after its children) and
    /// returns why; `Shutdown(Some("reached max restart intensity: ..."))`
    /// when it gave up on its restart intensity.
    pub async fn exited(&self) -> ExitReason {
        self.inner.exited().await
    }

    /// The supervisor's own process handle.
    pub fn handle(&self) -> &ProcessHandle {
        &self.inner.handle
    }
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug("Supervisor", f)
    }
}
