//! [`DynamicSupervisor`]: a supervisor that starts children on demand, as
//! OTP's `DynamicSupervisor`, implemented as its own kameo actor.
//!
//! Children are started one at a time by [`start_child`], each linked to the
//! supervisor so that their exits reach its `on_link_died`, where each exit is
//! classified ([`ExitReason`]) and the child's [`RestartType`] decides. All
//! children share one restart [`Intensity`]: past it the supervisor stops
//! every child in reverse start order and exits with an error its parent sees.
//!
//! The supervisor blocks while it starts or stops a child, as OTP's does: a
//! start is bounded by the spec's start timeout, a stop by its [`Shutdown`].
//!
//! [`start_child`]: DynamicSupervisor::start_child
//! [`RestartType`]: crate::RestartType
//! [`Shutdown`]: crate::Shutdown

use std::{collections::HashMap, fmt, ops::ControlFlow, sync::Arc};

use kameo::{
    actor::{Actor, ActorId, ActorRef, Spawn, WeakActorRef},
    error::ActorStopReason,
    mailbox,
    message::{Context, Message},
};
use tokio::time::Instant;

use crate::{
    ChildCounts, ChildInfo, ChildSpec, ChildState, ChildTemplate, ExitReason, FlagsError,
    Intensity, ProcessHandle, SupervisorError,
    error::from_send_error,
    handle::{LinkTarget, LinkTargetRef},
    intensity::RestartLog,
    linking::{ChildDown, link_child},
};

/// The settings of a [`DynamicSupervisor`].
///
/// Defaults: intensity 3 restarts in 5 seconds, no limit on children.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DynamicSupervisorFlags {
    /// Restarts allowed within the window, for all children together.
    pub intensity: Intensity,
    /// At most this many children (a child being restarted counts); `None`
    /// for no limit.
    pub max_children: Option<usize>,
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
}

impl DynamicSupervisor {
    /// Starts a dynamic supervisor with no children.
    pub fn start(flags: DynamicSupervisorFlags) -> Result<Self, FlagsError> {
        flags.validate()?;
        let actor = DynamicSupervisorActor {
            restarts: RestartLog::new(flags.intensity),
            max_children: flags.max_children,
            next_seq: 0,
            children: HashMap::new(),
            restarting: HashMap::new(),
        };
        // Unbounded: the supervisor sends itself retries from its handlers,
        // which must never wait on its own mailbox.
        let actor = DynamicSupervisorActor::spawn_with_mailbox(actor, mailbox::unbounded());
        Ok(DynamicSupervisor {
            handle: ProcessHandle::new(actor.clone()),
            actor,
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
        ChildSpec::new(id, move || async move {
            DynamicSupervisor::start(flags)
                .map(|sup| sup.handle)
                .map_err(crate::StartError::failed)
        })
        .supervisor()
    }

    /// The supervisor behind a process handle, if it is a dynamic supervisor.
    pub fn from_handle(handle: &ProcessHandle) -> Option<Self> {
        handle
            .downcast::<DynamicSupervisorActor>()
            .map(|actor| DynamicSupervisor {
                actor,
                handle: handle.clone(),
            })
    }

    /// Starts a child from `spec` and returns its handle once its start has
    /// completed. A start error is returned and nothing is kept.
    pub async fn start_child(&self, spec: ChildSpec) -> Result<ProcessHandle, SupervisorError> {
        spec.validate()?;
        self.actor
            .ask(StartChild(spec))
            .await
            .map_err(from_send_error)
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

    /// Stops every child in reverse start order, each by its shutdown, then
    /// the supervisor; returns once all have stopped, with the supervisor's
    /// exit reason.
    pub async fn stop(&self) -> ExitReason {
        self.handle.stop().await
    }

    /// Waits until the supervisor has stopped (after its children) and
    /// returns why; an error when it gave up on its restart intensity.
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

/// A running child and what the supervisor keeps of it.
struct Child {
    /// Start order: reverse of it is stop order.
    seq: u64,
    handle: ProcessHandle,
    spec: ChildSpec,
}

/// The supervisor actor. Its exit reason, when it gives up, is the
/// `ExitReason` returned as its error.
pub(crate) struct DynamicSupervisorActor {
    restarts: RestartLog,
    max_children: Option<usize>,
    next_seq: u64,
    children: HashMap<ActorId, Child>,
    /// Children whose restart failed and is being retried, by ticket (the
    /// sequence number the retry will start them with).
    restarting: HashMap<u64, ChildSpec>,
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

    async fn on_link_died(
        &mut self,
        actor_ref: WeakActorRef<Self>,
        id: ActorId,
        reason: ActorStopReason,
    ) -> Result<ControlFlow<ActorStopReason>, ExitReason> {
        // A child terminated on purpose was removed first: nothing to do.
        let Some(child) = self.children.remove(&id) else {
            return Ok(ControlFlow::Continue(()));
        };
        let exit = child.handle.classify(&reason);
        if child.spec.restart.restarts_after(&exit)
            && let Some(actor_ref) = actor_ref.upgrade()
        {
            self.restart(child.spec, &actor_ref).await?;
        }
        Ok(ControlFlow::Continue(()))
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

impl LinkTarget for DynamicSupervisorActor {
    fn link_target(actor_ref: &ActorRef<Self>) -> LinkTargetRef<'_> {
        LinkTargetRef::Dynamic(actor_ref)
    }
}

impl DynamicSupervisorActor {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Keeps a started child and links it, so its exit reaches
    /// `on_link_died`.
    async fn adopt(
        &mut self,
        seq: u64,
        handle: ProcessHandle,
        spec: ChildSpec,
        actor_ref: &ActorRef<Self>,
    ) {
        link_child(&handle, actor_ref).await;
        self.children
            .insert(handle.id(), Child { seq, handle, spec });
    }

    /// Restarts a child from its spec, counting the restart. A failed start
    /// is retried through the mailbox (so admin calls keep answering), each
    /// retry counting too. Past the intensity: stops everything and returns
    /// the supervisor's exit reason.
    async fn restart(
        &mut self,
        spec: ChildSpec,
        actor_ref: &ActorRef<Self>,
    ) -> Result<(), ExitReason> {
        if !self.restarts.record(Instant::now()) {
            return Err(self.give_up().await);
        }
        let seq = self.seq();
        match spec.start().await {
            Ok(handle) => self.adopt(seq, handle, spec, actor_ref).await,
            Err(_start_error) => {
                self.restarting.insert(seq, spec);
                // Unbounded mailbox: this never waits.
                let _ = actor_ref.tell(RetryRestart(seq)).await;
            }
        }
        Ok(())
    }

    /// Stops every child and returns the exit reason of a supervisor that
    /// exceeded its restart intensity.
    async fn give_up(&mut self) -> ExitReason {
        self.shutdown_all().await;
        self.restarts.exceeded()
    }

    /// Stops every child in reverse start order, each by its shutdown.
    async fn shutdown_all(&mut self) {
        self.restarting.clear();
        let mut children: Vec<Child> = self.children.drain().map(|(_, child)| child).collect();
        children.sort_unstable_by_key(|child| std::cmp::Reverse(child.seq));
        for child in children {
            child.spec.shutdown.stop(&child.handle).await;
        }
    }
}

struct StartChild(ChildSpec);

impl Message<StartChild> for DynamicSupervisorActor {
    type Reply = Result<ProcessHandle, SupervisorError>;

    async fn handle(
        &mut self,
        StartChild(spec): StartChild,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if let Some(max) = self.max_children
            && self.children.len() + self.restarting.len() >= max
        {
            return Err(SupervisorError::MaxChildren(max));
        }
        let handle = spec.start().await?;
        let seq = self.seq();
        self.adopt(seq, handle.clone(), spec, ctx.actor_ref()).await;
        Ok(handle)
    }
}

struct TerminateChild(ActorId);

impl Message<TerminateChild> for DynamicSupervisorActor {
    type Reply = Result<(), SupervisorError>;

    async fn handle(
        &mut self,
        TerminateChild(id): TerminateChild,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let child = self.children.remove(&id).ok_or(SupervisorError::NotFound)?;
        child.handle.unlink_from(ctx.actor_ref()).await;
        child.spec.shutdown.stop(&child.handle).await;
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
            .map(|(seq, spec)| (*seq, spec, ChildState::Restarting));
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
        for spec in self.restarting.values() {
            counts.add(spec.kind, false);
        }
        Ok(counts)
    }
}

/// Retry the restart of the child with this ticket.
struct RetryRestart(u64);

impl Message<RetryRestart> for DynamicSupervisorActor {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        RetryRestart(ticket): RetryRestart,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match self.restarting.remove(&ticket) {
            Some(spec) => self.restart(spec, ctx.actor_ref()).await,
            None => Ok(()),
        }
    }
}

impl Message<ChildDown> for DynamicSupervisorActor {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        ChildDown(id, exit): ChildDown,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let Some(child) = self.children.remove(&id) else {
            return Ok(());
        };
        if child.spec.restart.restarts_after(&exit) {
            self.restart(child.spec, ctx.actor_ref()).await?;
        }
        Ok(())
    }
}
