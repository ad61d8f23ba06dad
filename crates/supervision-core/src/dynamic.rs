//! [`DynamicSupervisor`]: a supervisor that starts children on demand, as
//! OTP's `DynamicSupervisor`, implemented as its own kameo actor.
//!
//! [`start_child`] runs the child's start in the caller's task and hands
//! the started child to the supervisor actor, which keeps it and watches it
//! (see the `watch` module): the supervisor's mailbox is not held up by a
//! slow start, and starting many children costs one message each, not a
//! round trip. The child is supervised before `start_child` returns (the
//! hand-over is queued ahead of anything a later caller sends).
//!
//! Each exit is classified ([`ExitReason`]) and the child's [`RestartType`]
//! decides; restarts run inside the supervisor. All children share one
//! restart [`Intensity`]: past it the supervisor stops every child and exits
//! with `Shutdown(Some("reached max restart intensity: ..."))`, as OTP's
//! exits with `shutdown`: its parent restarts it only if its entry there is
//! permanent (see [`Supervisor`](crate::Supervisor)'s escalation table).
//!
//! The supervisor blocks while it stops a child (bounded by the child's
//! [`Shutdown`]) or restarts one (bounded by its start timeout), as OTP's does.
//! When it stops, it stops all its children at once, as OTP's
//! `DynamicSupervisor` does: the shutdown takes as long as the slowest child,
//! not the sum. A child killed (its timeout ran out, or `BrutalKill`) is
//! aborted whole, a supervisor child with its subtree.
//!
//! [`start_child`]: DynamicSupervisor::start_child
//! [`RestartType`]: crate::RestartType
//! [`Shutdown`]: crate::Shutdown

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use kameo::{
    actor::{Actor, ActorId, ActorRef, Spawn, WeakActorRef},
    error::ActorStopReason,
    mailbox,
    message::{BoxMessage, Context, Message},
};
use tokio::{task::AbortHandle, time::Instant};

use crate::{
    ChildCounts, ChildInfo, ChildSpec, ChildState, ChildTemplate, ExitReason, FlagsError,
    Intensity, ProcessHandle, SupervisorError, Telemetry,
    backoff::BackoffState,
    error::from_send_error,
    intensity::RestartLog,
    report::Reporter,
    watch::{ChildDown, watch},
};

/// The settings of a [`DynamicSupervisor`].
///
/// Defaults: name `dynamic_supervisor`, intensity 3 restarts in 5 seconds,
/// no limit on children, telemetry disabled.
#[derive(Debug, Clone)]
pub struct DynamicSupervisorFlags {
    /// The name in its telemetry events.
    pub name: Arc<str>,
    /// Restarts allowed within the window, for all children together.
    pub intensity: Intensity,
    /// At most this many children (a child being restarted counts); `None`
    /// for no limit.
    pub max_children: Option<usize>,
    /// Where its events go (see [`events`](crate::events)).
    pub telemetry: Telemetry,
}

impl Default for DynamicSupervisorFlags {
    fn default() -> Self {
        DynamicSupervisorFlags {
            name: "dynamic_supervisor".into(),
            intensity: Intensity::default(),
            max_children: None,
            telemetry: Telemetry::disabled(),
        }
    }
}

impl DynamicSupervisorFlags {
    /// Checks the flags.
    pub fn validate(&self) -> Result<(), FlagsError> {
        self.intensity.validate()?;
        if self.max_children == Some(0) {
            return Err(FlagsError::InvalidMaxChildren(0));
        }
        Ok(())
    }
}

/// A handle to a running dynamic supervisor: cheap to clone; the supervisor
/// runs while any handle to it exists (dropping the last one stops it and
/// its children).
///
/// Every call fails with [`SupervisorError::SupervisorGone`] once the
/// supervisor has stopped.
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use supervision_core::{ChildSpec, DynamicSupervisor, DynamicSupervisorFlags};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default()).unwrap();
/// let child = sup.start_child(ChildSpec::actor::<Worker>("worker", || Worker)).await.unwrap();
/// assert_eq!(sup.count_children().await.unwrap().active, 1);
///
/// sup.terminate_child(&child).await.unwrap();
/// assert!(!child.is_alive());
/// sup.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct DynamicSupervisor {
    actor: ActorRef<DynamicSupervisorActor>,
    handle: ProcessHandle,
    shared: Arc<Shared>,
}

impl DynamicSupervisor {
    /// Starts a dynamic supervisor with no children.
    pub fn start(flags: DynamicSupervisorFlags) -> Result<Self, FlagsError> {
        flags.validate()?;
        let shared = Arc::new(Shared {
            reporter: Reporter::new(flags.name, flags.telemetry),
            max_children: flags.max_children,
            slots: AtomicUsize::new(0),
        });
        let actor = DynamicSupervisorActor {
            shared: shared.clone(),
            restarts: RestartLog::new(flags.intensity),
            next_seq: 0,
            children: HashMap::new(),
            restarting: HashMap::new(),
        };
        // Unbounded: the supervisor tells itself retries from its handlers,
        // which must never wait on its own mailbox.
        let prepared = DynamicSupervisorActor::prepare_with_mailbox(mailbox::unbounded());
        let actor_ref = prepared.actor_ref().clone();
        Ok(DynamicSupervisor {
            handle: ProcessHandle::spawn_prepared(prepared, actor),
            actor: actor_ref,
            shared,
        })
    }

    /// Starts a dynamic supervisor that starts children from `template`, see
    /// [`TemplateSupervisor`].
    pub fn with_template<A>(
        flags: DynamicSupervisorFlags,
        template: ChildTemplate<A>,
    ) -> Result<TemplateSupervisor<A>, FlagsError>
    where
        A: Clone + Send + Sync + 'static,
    {
        Ok(TemplateSupervisor {
            supervisor: DynamicSupervisor::start(flags)?,
            template,
        })
    }

    /// A child spec that starts a dynamic supervisor with `flags`, to nest
    /// one under another supervisor. Get its API back from the child's
    /// handle with [`from_handle`](Self::from_handle).
    pub fn child_spec(id: impl Into<Arc<str>>, flags: DynamicSupervisorFlags) -> ChildSpec {
        ChildSpec::new(id, move || {
            let flags = flags.clone();
            async move {
                DynamicSupervisor::start(flags)
                    .map(|sup| sup.handle)
                    .map_err(crate::StartError::failed)
            }
        })
        .supervisor()
    }

    /// The supervisor behind a process handle, if it is a running dynamic
    /// supervisor.
    pub async fn from_handle(handle: &ProcessHandle) -> Option<Self> {
        let actor = handle.downcast::<DynamicSupervisorActor>()?;
        // The shared half lives in the actor's state: ask for it.
        let shared = actor.ask(GetShared).await.ok()?;
        Some(DynamicSupervisor {
            actor,
            handle: handle.clone(),
            shared,
        })
    }

    /// Starts a child from `spec` and returns its handle once its start has
    /// completed. A start error is returned and nothing is kept.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ProcessHandle, SupervisorError> {
        spec.validate()?;
        if !self.handle.is_alive() {
            return Err(SupervisorError::SupervisorGone);
        }
        // Given back if the start fails, or if this future is dropped midway
        // (a started child whose handle is dropped stops by itself).
        let slot = self.shared.reserve()?;
        let handle = self.shared.reporter.start(&spec).await?;
        let shutdown = spec.shutdown;
        let adopt = Adopt {
            handle: handle.clone(),
            spec,
        };
        if self.actor.tell(adopt).await.is_err() {
            // The supervisor stopped meanwhile: leave nothing running.
            drop(slot);
            shutdown.stop(&handle).await;
            return Err(SupervisorError::SupervisorGone);
        }
        slot.keep();
        Ok(handle)
    }

    /// Stops `child` by its spec's [`Shutdown`](crate::Shutdown) and returns
    /// once it has stopped. A child that is not (or no longer) this
    /// supervisor's is left alone: [`SupervisorError::NotFound`].
    pub async fn terminate_child(&self, child: &ProcessHandle) -> Result<(), SupervisorError> {
        self.actor
            .ask(TerminateChild(child.id()))
            .await
            .map_err(from_send_error)
    }

    /// Every child in start order, with its state.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.actor.ask(WhichChildren).await.map_err(from_send_error)
    }

    /// The child counts.
    pub async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.actor.ask(CountChildren).await.map_err(from_send_error)
    }

    /// Stops every child at once, each by its shutdown, then the
    /// supervisor; returns once all have stopped (as long as the slowest
    /// child takes), with the supervisor's exit reason.
    pub async fn stop(&self) -> ExitReason {
        self.handle.stop().await
    }

    /// Waits until the supervisor has stopped (after its children) and
    /// returns why; `Shutdown(Some("reached max restart intensity: ..."))`
    /// when it gave up on its restart intensity.
    pub async fn exited(&self) -> ExitReason {
        self.handle.exited().await
    }

    /// The supervisor's own process handle.
    pub fn handle(&self) -> &ProcessHandle {
        &self.handle
    }
}

impl fmt::Debug for DynamicSupervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicSupervisor")
            .field("handle", &self.handle)
            .finish()
    }
}

/// A [`DynamicSupervisor`] bound to a [`ChildTemplate`]: `start_child(args)`
/// starts a child from the template with the template's extra arguments
/// prepended, as OTP's `extra_arguments`. Every other call is the dynamic
/// supervisor's (it derefs to it).
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use supervision_core::{ChildTemplate, DynamicSupervisor, ProcessHandle};
///
/// #[derive(Actor)]
/// struct Session { server: &'static str, user: String }
///
/// # #[tokio::main] async fn main() {
/// let template = ChildTemplate::new("session", "eu-1", |server, user: String| {
///     ProcessHandle::spawn::<Session>(Session { server, user })
/// });
/// let sup = DynamicSupervisor::with_template(Default::default(), template).unwrap();
/// let child = sup.start_child("ada".to_owned()).await.unwrap();
/// assert!(child.is_alive());
/// sup.stop().await;
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct TemplateSupervisor<A> {
    supervisor: DynamicSupervisor,
    template: ChildTemplate<A>,
}

impl<A> TemplateSupervisor<A>
where
    A: Clone + Send + Sync + 'static,
{
    /// Starts a child from the template with `args`.
    pub async fn start_child(&self, args: A) -> Result<ProcessHandle, SupervisorError> {
        self.supervisor.start_child(self.template.spec(args)).await
    }

    /// The underlying dynamic supervisor.
    pub fn supervisor(&self) -> &DynamicSupervisor {
        &self.supervisor
    }
}

impl<A> std::ops::Deref for TemplateSupervisor<A> {
    type Target = DynamicSupervisor;

    fn deref(&self) -> &DynamicSupervisor {
        &self.supervisor
    }
}

/// What the handles and the actor share: reporting, and the slots that
/// `max_children` bounds (children running, restarting, or being started by
/// a caller).
#[derive(Debug)]
struct Shared {
    reporter: Reporter,
    max_children: Option<usize>,
    slots: AtomicUsize,
}

impl Shared {
    fn reserve(&self) -> Result<Reservation<'_>, SupervisorError> {
        match self.max_children {
            None => {
                self.slots.fetch_add(1, Ordering::Relaxed);
            }
            Some(max) => {
                self.slots
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .map_err(|_| SupervisorError::MaxChildren(max))?;
            }
        }
        Ok(Reservation {
            shared: self,
            kept: false,
        })
    }

    fn release(&self) {
        self.slots.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A slot reserved by a caller's `start_child`: given back when dropped,
/// unless the child was handed over to the supervisor, which then owns it.
struct Reservation<'a> {
    shared: &'a Shared,
    kept: bool,
}

impl Reservation<'_> {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.kept {
            self.shared.release();
        }
    }
}

/// A running child and what the supervisor keeps of it.
struct Child {
    /// Start order: its reverse is stop order.
    seq: u64,
    handle: ProcessHandle,
    spec: ChildSpec,
    watcher: AbortHandle,
    backoff: BackoffState,
}

/// A child waiting to be restarted: after a backoff delay, or to retry a
/// start that failed.
struct Pending {
    spec: ChildSpec,
    backoff: BackoffState,
    /// The actor id of the incarnation that exited.
    old: ActorId,
}

/// The supervisor actor. Its exit reason, when it gives up, is the
/// `ExitReason` returned as its error.
pub(crate) struct DynamicSupervisorActor {
    shared: Arc<Shared>,
    restarts: RestartLog,
    next_seq: u64,
    children: HashMap<ActorId, Child>,
    /// Children waiting for their restart, by ticket.
    restarting: HashMap<u64, Pending>,
}

impl Actor for DynamicSupervisorActor {
    type Args = Self;
    type Error = ExitReason;

    fn name() -> &'static str {
        "DynamicSupervisor"
    }

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, ExitReason> {
        Ok(state)
    }

    async fn on_undelivered(
        &mut self,
        _: ActorStopReason,
        undelivered: Vec<BoxMessage<Self>>,
    ) -> Result<(), ExitReason> {
        // Children handed over as the supervisor stopped: stop them too.
        for message in undelivered {
            if let Ok(adopt) = message.as_any().downcast::<Adopt>() {
                adopt.spec.shutdown.stop(&adopt.handle).await;
            }
        }
        Ok(())
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), ExitReason> {
        self.shutdown_all().await;
        Ok(())
    }
}

/// A supervisor killed (its task aborted, its `on_stop` not run) takes its
/// children with it: each is killed, a supervisor child with its own
/// subtree. After a graceful stop no child runs and this does nothing.
impl Drop for DynamicSupervisorActor {
    fn drop(&mut self) {
        for child in self.children.values() {
            child.handle.kill();
        }
    }
}

impl DynamicSupervisorActor {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Keeps a started child and watches it.
    fn adopt(
        &mut self,
        handle: ProcessHandle,
        spec: ChildSpec,
        backoff: BackoffState,
        actor_ref: &ActorRef<Self>,
    ) {
        let seq = self.seq();
        let watcher = watch(&handle, actor_ref);
        self.children.insert(
            handle.id(),
            Child {
                seq,
                handle,
                spec,
                watcher,
                backoff,
            },
        );
    }

    /// Parks a child until the message for `ticket` comes back.
    fn park(&mut self, spec: ChildSpec, backoff: BackoffState, old: ActorId) -> u64 {
        let ticket = self.seq();
        self.restarting.insert(ticket, Pending { spec, backoff, old });
        ticket
    }

    /// Handles the exit of a child by itself: restart it if its restart type
    /// says so, else free its slot.
    async fn child_exited(
        &mut self,
        child: Child,
        exit: ExitReason,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        let restart = child.spec.restart.restarts_after(&exit);
        self.shared
            .reporter
            .exited(&child.spec, &child.handle, &exit, restart);
        if restart {
            let old = child.handle.id();
            self.schedule_restart(child.spec, child.backoff, old, actor_ref)
                .await
        } else {
            self.shared.release();
            Ok(())
        }
    }

    /// Decides a restart: counts it (past the intensity: stops everything
    /// and returns the supervisor's exit reason), then starts the child at
    /// once or, with a backoff, after its delay (the child shows as
    /// restarting meanwhile; the timer comes back through the mailbox).
    async fn schedule_restart(
        &mut self,
        spec: ChildSpec,
        mut backoff: BackoffState,
        old: ActorId,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        let now = Instant::now();
        if !self.restarts.record(now) {
            return Err(self.give_up().await);
        }
        let delay = spec.backoff.map(|policy| backoff.next_delay(&policy, now));
        match delay {
            Some((delay, attempt)) if !delay.is_zero() => {
                self.shared.reporter.backoff(&spec, delay, attempt);
                let ticket = self.park(spec, backoff, old);
                let supervisor = actor_ref.downgrade();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Some(supervisor) = supervisor.upgrade() {
                        let _ = supervisor.tell(StartRestart(ticket)).await;
                    }
                });
            }
            _ => self.start_restart(spec, backoff, old, actor_ref).await,
        }
        Ok(())
    }

    /// Starts a child being restarted. A failed start goes back through the
    /// mailbox to be decided again (so admin calls keep answering), counting
    /// toward the intensity each time.
    async fn start_restart(
        &mut self,
        spec: ChildSpec,
        mut backoff: BackoffState,
        old: ActorId,
        actor_ref: &ActorRef<Self>,
    ) {
        match self.shared.reporter.start(&spec).await {
            Ok(handle) => {
                self.shared
                    .reporter
                    .restarted(&spec, old, &handle, self.restarts.count());
                backoff.started(Instant::now());
                self.adopt(handle, spec, backoff, actor_ref);
            }
            Err(_start_error) => {
                let ticket = self.park(spec, backoff, old);
                // Unbounded mailbox: this never waits.
                let _ = actor_ref.tell(Reschedule(ticket)).await;
            }
        }
    }

    /// Stops every child and returns the exit reason of a supervisor that
    /// exceeded its restart intensity.
    async fn give_up(&mut self) -> ExitReason {
        self.shutdown_all().await;
        let reason = self.restarts.exceeded();
        self.shared.reporter.gave_up(&reason, self.restarts.count());
        reason
    }

    /// Stops one child by its shutdown and frees its slot.
    async fn terminate(&self, child: Child) {
        child.watcher.abort();
        let exit = child.spec.shutdown.stop(&child.handle).await;
        self.shared
            .reporter
            .terminated(&child.spec, &child.handle, &exit);
        self.shared.release();
    }

    /// Stops every child at once, each by its shutdown, as OTP's
    /// DynamicSupervisor does: the whole shutdown takes as long as the
    /// slowest child, not the sum. Children stay in the map until they have
    /// stopped, so a supervisor killed meanwhile kills them (see `Drop`).
    async fn shutdown_all(&mut self) {
        for _ in self.restarting.drain() {
            self.shared.release();
        }
        let reporter = &self.shared.reporter;
        let stops = self.children.values().map(|child| {
            child.watcher.abort();
            async move {
                let exit = child.spec.shutdown.stop(&child.handle).await;
                reporter.terminated(&child.spec, &child.handle, &exit);
            }
        });
        futures::future::join_all(stops).await;
        for _ in self.children.drain() {
            self.shared.release();
        }
    }
}

/// A child started by a caller, handed over to be kept and watched.
struct Adopt {
    handle: ProcessHandle,
    spec: ChildSpec,
}

impl Message<Adopt> for DynamicSupervisorActor {
    type Reply = ();

    async fn handle(&mut self, Adopt { handle, spec }: Adopt, ctx: &mut Context<Self, ()>) {
        let backoff = BackoffState::new(Instant::now());
        self.adopt(handle, spec, backoff, ctx.actor_ref());
    }
}

struct TerminateChild(ActorId);

impl Message<TerminateChild> for DynamicSupervisorActor {
    type Reply = Result<(), SupervisorError>;

    async fn handle(
        &mut self,
        TerminateChild(id): TerminateChild,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let child = self.children.remove(&id).ok_or(SupervisorError::NotFound)?;
        self.terminate(child).await;
        Ok(())
    }
}

struct WhichChildren;

impl Message<WhichChildren> for DynamicSupervisorActor {
    type Reply = Result<Vec<ChildInfo>, SupervisorError>;

    async fn handle(
        &mut self,
        _: WhichChildren,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let running = self.children.values().map(|child| {
            (
                child.seq,
                &child.spec,
                ChildState::Running(child.handle.clone()),
            )
        });
        let restarting = self
            .restarting
            .iter()
            .map(|(seq, pending)| (*seq, &pending.spec, ChildState::Restarting));
        let mut all: Vec<_> = running.chain(restarting).collect();
        all.sort_unstable_by_key(|(seq, ..)| *seq);
        Ok(all
            .into_iter()
            .map(|(_, spec, state)| ChildInfo {
                id: spec.id.clone(),
                state,
                kind: spec.kind,
                restart: spec.restart,
            })
            .collect())
    }
}

struct CountChildren;

impl Message<CountChildren> for DynamicSupervisorActor {
    type Reply = Result<ChildCounts, SupervisorError>;

    async fn handle(
        &mut self,
        _: CountChildren,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let mut counts = ChildCounts::default();
        for child in self.children.values() {
            counts.add(child.spec.kind, true);
        }
        for pending in self.restarting.values() {
            counts.add(pending.spec.kind, false);
        }
        Ok(counts)
    }
}

/// Hands out the shared half, for [`DynamicSupervisor::from_handle`].
struct GetShared;

impl Message<GetShared> for DynamicSupervisorActor {
    type Reply = Arc<Shared>;

    async fn handle(&mut self, _: GetShared, _: &mut Context<Self, Self::Reply>) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// The backoff delay of the child with this ticket is over: start it.
struct StartRestart(u64);

impl Message<StartRestart> for DynamicSupervisorActor {
    type Reply = ();

    async fn handle(&mut self, StartRestart(ticket): StartRestart, ctx: &mut Context<Self, ()>) {
        if let Some(Pending { spec, backoff, old }) = self.restarting.remove(&ticket) {
            self.start_restart(spec, backoff, old, ctx.actor_ref()).await;
        }
    }
}

/// The restart of the child with this ticket failed: decide it again.
struct Reschedule(u64);

impl Message<Reschedule> for DynamicSupervisorActor {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        Reschedule(ticket): Reschedule,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match self.restarting.remove(&ticket) {
            Some(Pending { spec, backoff, old }) => {
                self.schedule_restart(spec, backoff, old, ctx.actor_ref())
                    .await
            }
            None => Ok(()),
        }
    }
}

impl Message<ChildDown> for DynamicSupervisorActor {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        ChildDown { id, exit }: ChildDown,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match self.children.remove(&id) {
            Some(child) => self.child_exited(child, exit, ctx.actor_ref()).await,
            None => Ok(()),
        }
    }
}
