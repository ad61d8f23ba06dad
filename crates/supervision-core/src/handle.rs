//! [`ProcessHandle`]: a cheap, cloneable, type-erased handle to a running actor.

use std::{
    any::Any,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, LazyLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
};

use dashmap::{DashMap, mapref::entry::Entry};
use futures::future::BoxFuture;
use kameo::{
    actor::{Actor, ActorId, ActorRef, PreparedActor, Spawn, WeakActorRef},
    error::{ActorStopReason, HookError, PanicError},
    mailbox::Signal,
    message::Context as ActorContext,
};
use parking_lot::Mutex;
use tokio::{
    sync::Notify,
    task::{AbortHandle, JoinHandle},
};

use crate::{ExitReason, StartError};

/// What every handle to one actor shares, by actor id: the one place where
/// two handles made separately for one actor (one by its spawner, one by the
/// actor itself in `on_start`) find the same stop request and the same
/// recorded exit. An entry lives as long as a handle to its actor does. It
/// extends kameo's own per-actor state (ids are unique in the process) and
/// holds no names and no settings: tests side by side never meet in it.
static ACTORS: LazyLock<DashMap<ActorId, Weak<dyn ErasedCell>>> = LazyLock::new(DashMap::new);

tokio::task_local! {
    /// Actors whose start was abandoned midway (their start future dropped
    /// by a start timeout): killed, and awaited by the start that set the
    /// scope ([`ChildSpec::start`](crate::ChildSpec::start)) before it
    /// answers, so their registrations are released before a retry.
    pub(crate) static ABANDONED: Arc<Mutex<Vec<ProcessHandle>>>;
}

/// A cheap, cloneable, type-erased handle to a running kameo actor (or to
/// a task with a mailbox of its own, spawned with
/// [`spawn_process`](Self::spawn_process)): the `pid` of this crate.
///
/// Supervisors, registries and directories hold children of many actor types;
/// a `ProcessHandle` lets them treat all alike: ask whether it is alive, await
/// its [`ExitReason`], stop or kill it, and get the typed [`ActorRef`] back
/// with [`downcast`](Self::downcast).
///
/// Handles are compared by actor id: two handles to the same actor are equal.
/// A handle keeps its actor alive (it holds a strong `ActorRef`); a
/// [`WeakProcessHandle`] from [`downgrade`](Self::downgrade) does not.
///
/// # One actor, one exit reason
///
/// The exit reason is a fact about the actor, not about a handle: every
/// handle to one actor (clones, and handles made separately with
/// [`new`](Self::new), e.g. by the actor itself in its `on_start`, and weak
/// handles) shares
/// one stop request and one recorded exit. The reason is recorded once, by
/// the first to see the actor gone, and every later call, through any
/// handle, answers the same. A stop requested of an actor that already
/// stopped changes nothing: an actor that finished by itself stays
/// `Normal`, and so does one that stops by itself before it gets to a stop
/// request waiting in its mailbox (see
/// [`stop_handled`](Self::stop_handled)).
///
/// # Kill
///
/// For an actor started here ([`spawn`](Self::spawn), and the supervisors
/// of this crate), [`kill`](Self::kill) aborts the actor's whole task: its
/// message loop, its `on_start` if it is still starting, and its `on_stop`
/// if it is stopping, as OTP's `kill` runs no `terminate`. Its exit is
/// recorded once the task is gone. An actor spawned elsewhere and wrapped
/// with [`new`](Self::new) gets kameo's kill, which aborts the message loop
/// only (its `on_stop` still runs).
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ExitReason, ProcessHandle};
///
/// #[derive(Actor)]
/// struct Counter;
///
/// # #[tokio::main] async fn main() {
/// let handle = ProcessHandle::spawn::<Counter>(Counter).await.unwrap();
/// assert!(handle.is_alive());
/// let typed: ActorRef<Counter> = handle.downcast().unwrap();
/// assert_eq!(typed.id(), handle.id());
/// // A handle made separately shares the same facts.
/// let other = ProcessHandle::new(typed);
///
/// assert_eq!(handle.stop().await, ExitReason::Shutdown(None));
/// assert_eq!(other.exited().await, ExitReason::Shutdown(None));
/// assert!(!handle.is_alive());
/// # }
/// ```
#[derive(Clone)]
pub struct ProcessHandle {
    pub(crate) inner: Arc<dyn ErasedRef>,
}

impl ProcessHandle {
    /// Wraps a typed actor reference. Every handle to the same actor shares
    /// one stop request and one exit, however it was made.
    pub fn new<A: Actor>(actor_ref: ActorRef<A>) -> Self {
        let cell = Cell::of(&actor_ref);
        ProcessHandle {
            inner: Arc::new(TypedRef { actor_ref, cell }),
        }
    }

    /// Wraps a typed actor reference as [`new`](Self::new) does, for an
    /// actor whose every other handle will be a clone of this one (or come
    /// from its weak handles): the caller makes no other handle from the
    /// actor's reference. It skips the side table in which `new` finds the
    /// facts an actor's handles share (an insertion when made, a removal
    /// when dropped), for actors started by the hundred thousand (agent
    /// hosts). A handle made later with `new` for the same actor would not
    /// share this one's stop request and exit.
    pub fn new_sole<A: Actor>(actor_ref: ActorRef<A>) -> Self {
        ProcessHandle::sole(actor_ref, false)
    }

    /// A sole handle; `own_stop` if the actor reports reaching its stop
    /// itself (see [`spawn_sole_seeing_stop`](Self::spawn_sole_seeing_stop)).
    fn sole<A: Actor>(actor_ref: ActorRef<A>, own_stop: bool) -> Self {
        let cell = Arc::new(Cell::fresh(&actor_ref, false, own_stop));
        ProcessHandle {
            inner: Arc::new(TypedRef { actor_ref, cell }),
        }
    }

    /// Spawns a prepared actor with the arguments `args` makes from its
    /// handle, and returns that handle at once (the actor's `on_start` may
    /// still run): a sole handle, as [`new_sole`](Self::new_sole) makes,
    /// that keeps the actor's task, so that [`kill`](Self::kill) aborts the
    /// whole task (`on_start` and `on_stop` included) as it does for actors
    /// started by [`spawn`](Self::spawn). For actors started by the hundred
    /// thousand that hand their own handle over from their `on_start`
    /// (agent hosts).
    pub fn spawn_sole<A: Actor>(
        prepared: PreparedActor<A>,
        args: impl FnOnce(&ProcessHandle) -> A::Args,
    ) -> Self {
        ProcessHandle::spawn_sole_with(prepared, false, args)
    }

    /// [`spawn_sole`](Self::spawn_sole), for an actor that sees kameo's
    /// stop signal itself: it overrides kameo's `Actor::next`, and when
    /// `next` yields [`Signal::Stop`] it calls
    /// [`stop_reached`](Self::stop_reached) on its handle before its
    /// `on_stop` ends. A stop request then queues kameo's stop signal
    /// alone, without the mark that otherwise runs just ahead of it: one
    /// mailbox message per stop, not two (agent hosts, stopped by the
    /// hundred thousand). [`stop_handled`](Self::stop_handled) and the
    /// exit read as for any actor.
    pub fn spawn_sole_seeing_stop<A: Actor>(
        prepared: PreparedActor<A>,
        args: impl FnOnce(&ProcessHandle) -> A::Args,
    ) -> Self {
        ProcessHandle::spawn_sole_with(prepared, true, args)
    }

    fn spawn_sole_with<A: Actor>(
        prepared: PreparedActor<A>,
        own_stop: bool,
        args: impl FnOnce(&ProcessHandle) -> A::Args,
    ) -> Self {
        let handle = ProcessHandle::sole(prepared.actor_ref().clone(), own_stop);
        let task = prepared.spawn(args(&handle));
        if let Some(typed) = handle.typed::<A>() {
            typed.cell.adopt_task(task);
        }
        handle
    }

    /// Spawns an actor of type `A` with `args` and returns its handle once its
    /// `on_start` has completed; an error or panic in `on_start` is returned as
    /// a [`StartError`].
    ///
    /// If this future is dropped before the start completes (a start
    /// timeout), the actor is killed: its `on_start` does not run on.
    pub async fn spawn<A>(args: A::Args) -> Result<Self, StartError>
    where
        A: Actor + Spawn,
    {
        let handle = ProcessHandle::spawn_prepared(A::prepare(), args);
        let guard = KillOnDrop::new(&handle);
        let result = startup::<A>(handle.typed::<A>()).await;
        guard.disarm();
        result.map(|()| handle)
    }

    /// Spawns a prepared actor in its own task, keeping the task so that
    /// [`kill`](Self::kill) can abort it whole. The handle exists before the
    /// actor's `on_start` runs, so a handle the actor makes of itself there
    /// shares its facts.
    pub(crate) fn spawn_prepared<A: Actor>(prepared: PreparedActor<A>, args: A::Args) -> Self {
        let handle = ProcessHandle::new(prepared.actor_ref().clone());
        let task = prepared.spawn(args);
        if let Some(typed) = handle.typed::<A>() {
            typed.cell.adopt_task(task);
        }
        handle
    }

    /// The typed half of a handle known to be of type `A`.
    fn typed<A: Actor>(&self) -> Option<&TypedRef<A>> {
        self.inner.as_any().downcast_ref::<TypedRef<A>>()
    }

    /// The actor's id, unique within this node.
    pub fn id(&self) -> ActorId {
        self.inner.id()
    }

    /// Whether the actor is running and accepting messages. Turns false as
    /// soon as a stop or a kill has been requested.
    pub fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    /// Waits until the actor has stopped and returns why. Resolves at once
    /// if it has already stopped; any number of callers may wait. Every
    /// handle to the actor answers the same, every time.
    pub async fn exited(&self) -> ExitReason {
        self.inner.exited().await
    }

    /// Whether a stop was requested of the actor through any of its
    /// handles ([`stop`](Self::stop), [`request_stop`](Self::request_stop),
    /// a supervisor stopping it by its [`Shutdown`](crate::Shutdown)); a
    /// kill is not a stop request. A request does not say the stop ended
    /// the actor: see [`stop_handled`](Self::stop_handled).
    pub fn stop_requested(&self) -> bool {
        self.inner.stop_requested()
    }

    /// Whether the actor got to a stop request in its mailbox: it handled
    /// every message queued before the request, so the request is what
    /// ends it, and a normal exit is `Shutdown`. False for an actor that
    /// ended by itself first (it stopped in a handler, or finished before
    /// the request came), even with a stop requested: its exit stays
    /// `Normal`, as OTP's child that exits `normal` before it handles its
    /// supervisor's `shutdown`. An actor reads it in its `on_stop` to tell
    /// a stop asked of it from an exit of its own.
    pub fn stop_handled(&self) -> bool {
        self.inner.stop_handled()
    }

    /// Records, from inside an actor started with
    /// [`spawn_sole_seeing_stop`](Self::spawn_sole_seeing_stop), that it
    /// got to a stop request: its `next` yielded kameo's
    /// [`Signal::Stop`]. Counts only once a stop was requested through a
    /// handle (a stop signal sent by kameo's own `stop_gracefully` is no
    /// stop request, as for any actor), and only for such an actor: for
    /// any other, the mark queued by the request says it.
    pub fn stop_reached(&self) {
        self.inner.stop_reached()
    }

    /// Asks the actor to stop after the messages already in its mailbox,
    /// without waiting for it. Its exit reason becomes `Shutdown` once it
    /// gets to the request, unless it fails while stopping or chooses
    /// another reason in its `on_stop`. An actor that stops by itself
    /// before it gets to the request (it stops in the handler it is in)
    /// keeps the reason it stopped with, `Normal` included.
    pub async fn request_stop(&self) {
        self.inner.request_stop().await
    }

    /// Asks the actor to stop and waits until it has stopped. An actor that
    /// never gets to its stop request (stuck in a handler) makes this wait
    /// forever: supervisors bound it with a [`Shutdown`](crate::Shutdown).
    pub async fn stop(&self) -> ExitReason {
        self.request_stop().await;
        self.exited().await
    }

    /// Kills the actor: for an actor started here, its whole task is
    /// aborted at its next `.await` (message loop, `on_start` or `on_stop`
    /// alike); see the type's docs. Its exit reason becomes `Killed` unless
    /// it had already stopped. An actor spinning in synchronous code cannot
    /// be killed; keep children cooperative.
    pub fn kill(&self) {
        self.inner.kill()
    }

    /// The typed reference, if the actor is of type `A`.
    pub fn downcast<A: Actor>(&self) -> Option<ActorRef<A>> {
        self.typed::<A>().map(|typed| typed.actor_ref.clone())
    }

    /// The actor type's name, for diagnostics.
    pub fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }

    /// How many messages wait in the actor's mailbox, if it is bounded
    /// (kameo's default); `None` for an unbounded mailbox (supervisors'),
    /// whose length kameo does not expose.
    pub fn mailbox_len(&self) -> Option<usize> {
        self.inner.mailbox_len()
    }

    /// The actor's id and exit, as a future that holds neither the actor
    /// nor a handle, for a supervisor watching its children by the
    /// thousand: for an actor spawned here whose task no one awaits yet, a
    /// 16-byte box that takes the task over (and gives it back if dropped
    /// before the end). It records the exit as [`exited`](Self::exited)
    /// does: every handle answers the same.
    pub(crate) fn exit_watch(&self) -> BoxFuture<'static, (ActorId, ExitReason)> {
        self.inner.exit_watch()
    }

    /// A handle that does not keep the actor alive, for those that must
    /// find or watch a process without owning it (a registry, a stopper).
    /// It shares the actor's stop request and exit like any handle.
    pub fn downgrade(&self) -> WeakProcessHandle {
        WeakProcessHandle {
            handle: Arc::downgrade(&self.inner),
            cell: self.inner.cell(),
        }
    }
}

/// A handle to an actor that does not keep it alive: when every
/// [`ProcessHandle`] (and kameo `ActorRef`) of the actor is gone, the actor
/// stops, whatever weak handles remain.
///
/// [`upgrade`](Self::upgrade) gives a [`ProcessHandle`] back while the actor
/// has one somewhere; [`exited`](Self::exited) waits for its exit without
/// holding it, and answers as every strong handle does. Compared by actor
/// id, like [`ProcessHandle`].
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use mabeam_supervision_core::{ExitReason, ProcessHandle};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let handle = ProcessHandle::spawn::<Worker>(Worker).await.unwrap();
/// let weak = handle.downgrade();
/// assert_eq!(weak.upgrade(), Some(handle.clone()));
///
/// drop(handle); // the last strong handle: the actor stops
/// assert_eq!(weak.exited().await, ExitReason::Normal);
/// assert_eq!(weak.upgrade(), None);
/// # }
/// ```
#[derive(Clone)]
pub struct WeakProcessHandle {
    /// The handle it was made from: upgraded without allocating while some
    /// clone of that handle lives.
    handle: Weak<dyn ErasedRef>,
    /// What every handle to the actor shares; holds the actor weakly.
    cell: Arc<dyn ErasedCell>,
}

impl WeakProcessHandle {
    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.cell.id()
    }

    /// A strong handle, if the actor still has one somewhere (it may be
    /// stopping: check [`ProcessHandle::is_alive`]).
    pub fn upgrade(&self) -> Option<ProcessHandle> {
        match self.handle.upgrade() {
            Some(inner) => Some(ProcessHandle { inner }),
            None => self.cell.clone().upgrade(),
        }
    }

    /// Whether the actor is running and accepting messages, as
    /// [`ProcessHandle::is_alive`]. Allocates nothing.
    pub fn is_alive(&self) -> bool {
        self.cell.is_alive()
    }

    /// Waits until the actor has stopped and returns why, without keeping
    /// it alive meanwhile.
    pub async fn exited(&self) -> ExitReason {
        self.cell.exited().await
    }

    /// Kills the actor, as [`ProcessHandle::kill`].
    pub fn kill(&self) {
        self.cell.kill()
    }
}

impl PartialEq for WeakProcessHandle {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for WeakProcessHandle {}

impl std::hash::Hash for WeakProcessHandle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state)
    }
}

impl PartialEq<ProcessHandle> for WeakProcessHandle {
    fn eq(&self, other: &ProcessHandle) -> bool {
        self.id() == other.id()
    }
}

impl fmt::Debug for WeakProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakProcessHandle")
            .field("id", &self.id())
            .finish()
    }
}

/// Waits for the start of a just spawned actor.
async fn startup<A: Actor>(typed: Option<&TypedRef<A>>) -> Result<(), StartError> {
    let Some(typed) = typed else {
        return Ok(());
    };
    let actor_ref = &typed.actor_ref;
    tokio::select! {
        biased;
        result = actor_ref.wait_for_startup_with_result(startup_outcome::<A>) => result,
        // kameo handles the messages an actor sent itself in on_start
        // before it reports the start; an actor those stop never reports
        // it. A start that failed did report (before the mailbox closed);
        // otherwise it started, then died: return it and let watchers see
        // the exit.
        () = actor_ref.wait_for_shutdown() => {
            match actor_ref.with_startup_result(startup_outcome::<A>) {
                Some(result) => result,
                None => Ok(()),
            }
        }
    }
}

impl PartialEq for ProcessHandle {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for ProcessHandle {}

impl std::hash::Hash for ProcessHandle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.id().hash(state)
    }
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("id", &self.id())
            .field("type", &self.type_name())
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl<A: Actor> From<ActorRef<A>> for ProcessHandle {
    fn from(actor_ref: ActorRef<A>) -> Self {
        ProcessHandle::new(actor_ref)
    }
}

/// Kills an actor when dropped, unless disarmed: a start or a stop that is
/// abandoned midway (its future dropped by a timeout, or with a supervisor
/// being killed) leaves nothing running. Inside a start scope
/// ([`ABANDONED`]) the killed actor is also handed over to be awaited.
pub(crate) struct KillOnDrop<'a> {
    handle: Option<&'a ProcessHandle>,
}

impl<'a> KillOnDrop<'a> {
    pub(crate) fn new(handle: &'a ProcessHandle) -> Self {
        KillOnDrop {
            handle: Some(handle),
        }
    }

    /// The start or stop completed: nothing to kill.
    pub(crate) fn disarm(mut self) {
        self.handle = None;
    }
}

impl Drop for KillOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.kill();
            let _ = ABANDONED.try_with(|abandoned| abandoned.lock().push(handle.clone()));
        }
    }
}

/// Runs a start future in a scope that collects the actors its abandoned
/// starts killed (see [`KillOnDrop`]); returns them with the outcome.
pub(crate) async fn start_scope<F: Future>(start: F) -> (F::Output, Vec<ProcessHandle>) {
    let abandoned = Arc::new(Mutex::new(Vec::new()));
    let output = ABANDONED.scope(abandoned.clone(), start).await;
    let killed = std::mem::take(&mut *abandoned.lock());
    (output, killed)
}

pub(crate) trait ErasedRef: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    fn is_alive(&self) -> bool;
    fn stop_requested(&self) -> bool;
    fn stop_handled(&self) -> bool;
    fn stop_reached(&self);
    fn exited(&self) -> BoxFuture<'_, ExitReason>;
    fn request_stop(&self) -> BoxFuture<'_, ()>;
    fn exit_watch(&self) -> BoxFuture<'static, (ActorId, ExitReason)>;
    fn kill(&self);
    fn as_any(&self) -> &dyn Any;
    fn type_name(&self) -> &'static str;
    fn mailbox_len(&self) -> Option<usize>;
    fn cell(&self) -> Arc<dyn ErasedCell>;
}

/// The per-actor facts, type-erased, as weak handles and the side table
/// hold them.
pub(crate) trait ErasedCell: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    fn is_alive(&self) -> bool;
    fn exited(&self) -> BoxFuture<'_, ExitReason>;
    fn kill(&self);
    fn upgrade(self: Arc<Self>) -> Option<ProcessHandle>;
    /// The cell as `Any`, to get its type back.
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A strong handle: the actor's reference and its shared facts.
struct TypedRef<A: Actor> {
    actor_ref: ActorRef<A>,
    cell: Arc<Cell<A>>,
}

type TaskOutput<A> = Result<(A, ActorStopReason), PanicError>;

/// What every handle to one actor shares (strong and weak alike); holds the
/// actor weakly, so it never keeps it alive.
struct Cell<A: Actor> {
    actor: WeakActorRef<A>,
    /// A stop was requested while the actor ran.
    stop_requested: AtomicBool,
    /// The actor got to a stop request in its mailbox (set from inside it,
    /// by the mark queued just before the stop): its normal exit is
    /// `Shutdown`.
    stop_handled: AtomicBool,
    /// A kill was requested.
    killed: AtomicBool,
    /// In the side table (made by [`ProcessHandle::new`], not
    /// [`ProcessHandle::new_sole`]).
    listed: bool,
    /// The actor marks reaching its stop itself
    /// ([`ProcessHandle::spawn_sole_seeing_stop`]): a stop request queues
    /// no mark.
    own_stop: bool,
    /// The exit and the task, under one lock.
    facts: Mutex<Facts<A>>,
    /// Wakes the waiters when the exit is recorded, when the task's waiter
    /// gave it back (its wait was cancelled), or when the task became
    /// known.
    changed: Notify,
}

/// What a [`Cell`] keeps under its lock, together (a cell weighs 192
/// bytes, an allocator size class below 224, where each in a once-cell of
/// its own and a `SetOnce` for the exit weighed 256).
struct Facts<A: Actor> {
    /// The exit reason, recorded once: the first to see the actor gone
    /// writes it, every later call reads it.
    exit: Option<ExitReason>,
    /// For an actor spawned here: its task, awaited by one waiter at a time
    /// (its end is the actor's exit), then dropped.
    task: Option<JoinHandle<TaskOutput<A>>>,
    /// For an actor spawned here: aborts its whole task.
    abort: Option<AbortHandle>,
}

impl<A: Actor> Cell<A> {
    /// The cell of this actor: the one its other handles share, or a new
    /// one.
    fn of(actor_ref: &ActorRef<A>) -> Arc<Self> {
        let fresh = || Arc::new(Cell::fresh(actor_ref, true, false));
        let erased = |cell: &Arc<Self>| -> Weak<dyn ErasedCell> {
            let cell: Arc<dyn ErasedCell> = cell.clone();
            Arc::downgrade(&cell)
        };
        match ACTORS.entry(actor_ref.id()) {
            Entry::Occupied(mut entry) => {
                let shared = entry.get().upgrade().and_then(|cell| {
                    let any: Arc<dyn Any + Send + Sync> = cell.into_any();
                    any.downcast::<Self>().ok()
                });
                match shared {
                    Some(cell) => cell,
                    // Its last handle is being dropped: a new start.
                    None => {
                        let cell = fresh();
                        entry.insert(erased(&cell));
                        cell
                    }
                }
            }
            Entry::Vacant(entry) => {
                let cell = fresh();
                entry.insert(erased(&cell));
                cell
            }
        }
    }

    /// A cell of `actor_ref` with nothing recorded; `listed` if it goes in
    /// the side table, `own_stop` if the actor marks its stop itself.
    fn fresh(actor_ref: &ActorRef<A>, listed: bool, own_stop: bool) -> Self {
        Cell {
            actor: actor_ref.downgrade(),
            stop_requested: AtomicBool::new(false),
            stop_handled: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            listed,
            own_stop,
            facts: Mutex::new(Facts {
                exit: None,
                task: None,
                abort: None,
            }),
            changed: Notify::new(),
        }
    }

    /// Takes the task of an actor spawned here.
    fn adopt_task(&self, task: JoinHandle<TaskOutput<A>>) {
        {
            let mut facts = self.facts.lock();
            facts.abort = Some(task.abort_handle());
            facts.task = Some(task);
        }
        // Waiters that started before the task was known look again.
        self.changed.notify_waiters();
    }

    /// Classifies kameo's shutdown result.
    fn classify(&self, result: Result<&ActorStopReason, HookError<&A::Error>>) -> ExitReason {
        match result {
            Ok(reason) => ExitReason::from_kameo(reason, self.stop_handled.load(Ordering::Acquire)),
            // An error returned by on_stop: an `ExitReason` is kept as given
            // (a clean exit stays clean).
            Err(HookError::Error(err)) => error_reason(err),
            Err(HookError::Panicked(panic)) => ExitReason::from_panic_error(&panic),
        }
    }

    /// Records the exit; the first record wins. Returns the exit recorded.
    fn record(&self, reason: ExitReason) -> ExitReason {
        let (recorded, first) = {
            let mut facts = self.facts.lock();
            let first = facts.exit.is_none();
            (facts.exit.get_or_insert(reason).clone(), first)
        };
        if first {
            self.changed.notify_waiters();
        }
        recorded
    }

    /// The exit, once recorded.
    fn exit(&self) -> Option<ExitReason> {
        self.facts.lock().exit.clone()
    }

    fn has_exited(&self) -> bool {
        self.facts.lock().exit.is_some()
    }

    /// Takes the actor's task, if it was spawned here and no other waiter
    /// holds it.
    fn take_task(&self) -> Option<JoinHandle<TaskOutput<A>>> {
        self.facts.lock().task.take()
    }

    /// Gives the task back (its waiter stopped waiting): another takes
    /// over.
    fn give_back(&self, task: JoinHandle<TaskOutput<A>>) {
        self.facts.lock().task = Some(task);
        self.changed.notify_waiters();
    }

    /// Awaits the actor's task (if no one else does) and records its end.
    /// Returns false if there is no task to await here.
    async fn await_task(&self) -> bool {
        let Some(task) = self.take_task() else {
            return false;
        };
        self.await_taken(task).await;
        true
    }

    /// Awaits the actor's task, taken from the cell, and records its end
    /// (giving the task back if dropped midway); returns the exit recorded.
    async fn await_taken(&self, task: JoinHandle<TaskOutput<A>>) -> ExitReason {
        let mut waiter = TaskWaiter {
            cell: self,
            task: Some(task),
        };
        if let Some(task) = waiter.task.as_mut() {
            // Its output (the actor's state) is dropped here.
            let _ = task.await;
        }
        waiter.task = None;
        self.task_ended()
    }

    /// Records the exit of an actor whose task has ended; returns the
    /// reason recorded (the first record wins).
    fn task_ended(&self) -> ExitReason {
        let reason = self
            .actor
            .with_shutdown_result(|result| self.classify(result))
            // The task ended without a shutdown result: it was aborted.
            .unwrap_or(ExitReason::Killed);
        self.record(reason)
    }

    async fn exited(&self) -> ExitReason {
        // The usual case first, in one look under the lock and without
        // listening: the exit is known, or this caller takes the task and
        // awaits its end (a stop waits so, once per agent).
        let task = {
            let mut facts = self.facts.lock();
            if let Some(reason) = &facts.exit {
                return reason.clone();
            }
            facts.task.take()
        };
        if let Some(task) = task {
            return self.await_taken(task).await;
        }
        loop {
            // Listening before looking: a change after the look wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(reason) = self.exit() {
                return reason;
            }
            if self.await_task().await {
                continue;
            }
            if self.facts.lock().abort.is_some() {
                // Spawned here, and another waiter holds the task.
                changed.await;
            } else {
                tokio::select! {
                    reason = self.actor.wait_for_shutdown_with_result(|r| self.classify(r)) => {
                        self.record(reason);
                    }
                    () = changed => {}
                }
            }
        }
    }

    /// Whether the actor runs and accepts messages; without a strong
    /// reference at hand (a weak handle), through a short-lived one.
    fn is_alive(&self) -> bool {
        // A stop requested counts at once, before kameo's own flag turns
        // (the request queues its mark first, which may wait on a full
        // mailbox).
        !self.killed.load(Ordering::Acquire)
            && !self.stop_requested.load(Ordering::Acquire)
            && self
                .actor
                .upgrade()
                .is_some_and(|actor_ref| actor_ref.is_alive())
    }

    async fn request_stop(self: &Arc<Self>, actor_ref: &ActorRef<A>) {
        // An actor that already stopped (or is being killed) keeps the exit
        // it has.
        if self.has_exited()
            || self.killed.load(Ordering::Acquire)
            || actor_ref.mailbox_sender().is_closed()
        {
            return;
        }
        self.stop_requested.store(true, Ordering::Release);
        if self.own_stop {
            // The actor marks it as its `next` yields the stop signal.
            let _ = actor_ref.stop_gracefully().await;
            return;
        }
        // A mark just ahead of kameo's stop signal: run by the actor only if
        // it gets that far, so an actor that stops by itself in the handler
        // it is in (the mark then dropped unrun) keeps its `Normal`, as OTP
        // tells `normal` from `shutdown`. kameo's stop signal itself leaves
        // no trace we could read.
        let mark = Signal::Callback {
            actor_ref: actor_ref.clone(),
            callback: mark_stop_handled(self.clone()),
        };
        let _ = actor_ref.mailbox_sender().send(mark).await;
        let _ = actor_ref.stop_gracefully().await;
    }

    fn kill(&self) {
        let abort = {
            let facts = self.facts.lock();
            if facts.exit.is_some() {
                return;
            }
            facts.abort.clone()
        };
        self.killed.store(true, Ordering::Release);
        match abort {
            Some(abort) => abort.abort(),
            None => self.actor.kill(),
        }
    }
}

/// The continuation [`Cell::request_stop`] queues ahead of the stop: it
/// records, from inside the actor, that the actor got to the stop.
#[allow(clippy::type_complexity)]
fn mark_stop_handled<A: Actor>(
    cell: Arc<Cell<A>>,
) -> Box<dyn for<'a> FnOnce(&'a mut A, &'a mut ActorContext<A, ()>) -> BoxFuture<'a, ()> + Send> {
    Box::new(move |_, _| {
        cell.stop_handled.store(true, Ordering::Release);
        // A zero-sized future: boxing it allocates nothing.
        Box::pin(std::future::ready(()))
    })
}

/// Gives the task back if its waiter is cancelled midway.
struct TaskWaiter<'a, A: Actor> {
    cell: &'a Cell<A>,
    task: Option<JoinHandle<TaskOutput<A>>>,
}

impl<A: Actor> Drop for TaskWaiter<'_, A> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.cell.give_back(task);
        }
    }
}

/// The lean exit future of [`ProcessHandle::exit_watch`]: the actor's
/// task, taken over from its cell, awaited to its end. Gives the task back
/// to the cell if dropped before (its watcher stopped watching), so that
/// another waiter takes over.
struct TaskWatch<A: Actor> {
    cell: Arc<Cell<A>>,
    task: Option<JoinHandle<TaskOutput<A>>>,
}

impl<A: Actor> Future for TaskWatch<A> {
    type Output = (ActorId, ExitReason);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(task) = this.task.as_mut() {
            // Its output (the actor's state) is dropped here.
            let _ = ready!(Pin::new(task).poll(cx));
            this.task = None;
        }
        Poll::Ready((this.cell.actor.id(), this.cell.task_ended()))
    }
}

impl<A: Actor> Drop for TaskWatch<A> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.cell.give_back(task);
        }
    }
}

impl<A: Actor> Drop for Cell<A> {
    fn drop(&mut self) {
        if self.listed {
            let id = self.actor.id();
            ACTORS.remove_if(&id, |_, shared| shared.strong_count() == 0);
        }
    }
}

impl<A: Actor> ErasedCell for Cell<A> {
    fn id(&self) -> ActorId {
        self.actor.id()
    }

    fn is_alive(&self) -> bool {
        Cell::is_alive(self)
    }

    fn exited(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(Cell::exited(self))
    }

    fn kill(&self) {
        Cell::kill(self)
    }

    fn upgrade(self: Arc<Self>) -> Option<ProcessHandle> {
        let actor_ref = self.actor.upgrade()?;
        Some(ProcessHandle {
            inner: Arc::new(TypedRef {
                actor_ref,
                cell: self,
            }),
        })
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl<A: Actor> ErasedRef for TypedRef<A> {
    fn id(&self) -> ActorId {
        self.actor_ref.id()
    }

    fn is_alive(&self) -> bool {
        !self.cell.killed.load(Ordering::Acquire)
            && !self.cell.stop_requested.load(Ordering::Acquire)
            && self.actor_ref.is_alive()
    }

    fn stop_requested(&self) -> bool {
        self.cell.stop_requested.load(Ordering::Acquire)
    }

    fn stop_handled(&self) -> bool {
        self.cell.stop_handled.load(Ordering::Acquire)
    }

    fn stop_reached(&self) {
        let cell = &self.cell;
        if cell.own_stop && cell.stop_requested.load(Ordering::Acquire) {
            cell.stop_handled.store(true, Ordering::Release);
        }
    }

    fn exited(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(self.cell.exited())
    }

    fn request_stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.cell.request_stop(&self.actor_ref))
    }

    fn exit_watch(&self) -> BoxFuture<'static, (ActorId, ExitReason)> {
        let cell = self.cell.clone();
        let task = cell.take_task();
        match task {
            Some(task) => Box::pin(TaskWatch {
                cell,
                task: Some(task),
            }),
            // Not spawned here, or another waiter holds the task.
            None => Box::pin(async move { (cell.actor.id(), cell.exited().await) }),
        }
    }

    fn kill(&self) {
        self.cell.kill()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        A::name()
    }

    fn mailbox_len(&self) -> Option<usize> {
        let sender = self.actor_ref.mailbox_sender();
        Some(sender.max_capacity()?.saturating_sub(sender.capacity()?))
    }

    fn cell(&self) -> Arc<dyn ErasedCell> {
        self.cell.clone()
    }
}

/// A start result of kameo's as ours.
fn startup_outcome<A: Actor>(result: Result<(), HookError<&A::Error>>) -> Result<(), StartError> {
    match result {
        Ok(()) => Ok(()),
        Err(HookError::Error(err)) => Err(StartError::failed(error_message(err))),
        // kameo found no `A::Error` inside: a panic in on_start.
        Err(HookError::Panicked(panic)) => Err(StartError::Panicked(
            panic
                .with_str(|s| s.into())
                .unwrap_or_else(|| panic.to_string().into()),
        )),
    }
}

/// The exit reason of an actor whose hook returned `err`: an `ExitReason`
/// as it is, anything else an `Error` with its message.
fn error_reason<E: fmt::Debug + 'static>(err: &E) -> ExitReason {
    match (err as &dyn Any).downcast_ref::<ExitReason>() {
        Some(reason) => reason.clone(),
        None => ExitReason::Error(error_message(err).into()),
    }
}

/// The message of an actor's error: an `ExitReason` or a string as it is,
/// anything else by its `Debug` form (kameo only requires `Debug` of errors).
fn error_message<E: fmt::Debug + 'static>(err: &E) -> String {
    let any = err as &dyn Any;
    if let Some(reason) = any.downcast_ref::<ExitReason>() {
        return reason.to_string();
    }
    if let Some(s) = any.downcast_ref::<String>() {
        return s.clone();
    }
    if let Some(s) = any.downcast_ref::<&str>() {
        return (*s).to_owned();
    }
    format!("{err:?}")
}
