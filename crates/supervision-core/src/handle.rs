//! [`ProcessHandle`]: a cheap, cloneable, type-erased handle to a running actor.

use std::{
    any::Any,
    fmt,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::future::BoxFuture;
use kameo::{
    actor::{Actor, ActorId, ActorRef, Spawn, WeakActorRef},
    error::{ActorStopReason, HookError},
};

use crate::{ExitReason, StartError};

/// A cheap, cloneable, type-erased handle to a running kameo actor: the `pid`
/// of this crate.
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
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use supervision_core::{ExitReason, ProcessHandle};
///
/// #[derive(Actor)]
/// struct Counter;
///
/// # #[tokio::main] async fn main() {
/// let handle = ProcessHandle::spawn::<Counter>(Counter).await.unwrap();
/// assert!(handle.is_alive());
/// let typed: ActorRef<Counter> = handle.downcast().unwrap();
/// assert_eq!(typed.id(), handle.id());
///
/// assert_eq!(handle.stop().await, ExitReason::Shutdown(None));
/// assert!(!handle.is_alive());
/// # }
/// ```
#[derive(Clone)]
pub struct ProcessHandle {
    inner: Arc<dyn ErasedRef>,
}

impl ProcessHandle {
    /// Wraps a typed actor reference.
    pub fn new<A: Actor>(actor_ref: ActorRef<A>) -> Self {
        ProcessHandle {
            inner: Arc::new(TypedRef {
                actor_ref,
                stop_requested: Arc::new(AtomicBool::new(false)),
            }),
        }
    }

    /// Spawns an actor of type `A` with `args` and returns its handle once its
    /// `on_start` has completed; an error or panic in `on_start` is returned as
    /// a [`StartError`].
    pub async fn spawn<A>(args: A::Args) -> Result<Self, StartError>
    where
        A: Actor + Spawn,
    {
        let actor_ref = A::spawn(args);
        tokio::select! {
            biased;
            result = actor_ref.wait_for_startup_with_result(startup_outcome::<A>) => result?,
            // kameo handles the messages an actor sent itself in on_start
            // before it reports the start; an actor those stop never reports
            // it. A start that failed did report (before the mailbox closed);
            // otherwise it started, then died: return it and let watchers see
            // the exit.
            () = actor_ref.wait_for_shutdown() => {
                if let Some(result) = actor_ref.with_startup_result(startup_outcome::<A>) {
                    result?;
                }
            }
        }
        Ok(ProcessHandle::new(actor_ref))
    }

    /// The actor's id, unique within this node.
    pub fn id(&self) -> ActorId {
        self.inner.id()
    }

    /// Whether the actor is running and accepting messages. Turns false as
    /// soon as a stop has been requested.
    pub fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    /// Waits until the actor has stopped and returns why. Resolves at once
    /// if it has already stopped; any number of callers may wait.
    pub async fn exited(&self) -> ExitReason {
        self.inner.exited().await
    }

    /// Asks the actor to stop after the messages already in its mailbox,
    /// without waiting for it. Its exit reason becomes `Shutdown` unless it
    /// fails while stopping.
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

    /// Kills the actor: its task is aborted at its next `.await`. An actor
    /// spinning in synchronous code cannot be killed; keep children cooperative.
    pub fn kill(&self) {
        self.inner.kill()
    }

    /// The typed reference, if the actor is of type `A`.
    pub fn downcast<A: Actor>(&self) -> Option<ActorRef<A>> {
        self.inner
            .as_any()
            .downcast_ref::<TypedRef<A>>()
            .map(|typed| typed.actor_ref.clone())
    }

    /// The actor type's name, for diagnostics.
    pub fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }

    /// A handle that does not keep the actor alive, for those that must
    /// find or watch a process without owning it (a registry, a stopper).
    pub fn downgrade(&self) -> WeakProcessHandle {
        WeakProcessHandle {
            handle: Arc::downgrade(&self.inner),
            actor: self.inner.downgrade(),
        }
    }
}

/// A handle to an actor that does not keep it alive: when every
/// [`ProcessHandle`] (and kameo `ActorRef`) of the actor is gone, the actor
/// stops, whatever weak handles remain.
///
/// [`upgrade`](Self::upgrade) gives a [`ProcessHandle`] back while the actor
/// has one somewhere; [`exited`](Self::exited) waits for its exit without
/// holding it. Compared by actor id, like [`ProcessHandle`].
///
/// # Example
///
/// ```
/// use kameo::prelude::*;
/// use supervision_core::{ExitReason, ProcessHandle};
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
    /// The actor itself, for when that handle is gone but the actor runs.
    actor: Arc<dyn ErasedWeak>,
}

impl WeakProcessHandle {
    /// The actor's id.
    pub fn id(&self) -> ActorId {
        self.actor.id()
    }

    /// A strong handle, if the actor still has one somewhere (it may be
    /// stopping: check [`ProcessHandle::is_alive`]).
    pub fn upgrade(&self) -> Option<ProcessHandle> {
        match self.handle.upgrade() {
            Some(inner) => Some(ProcessHandle { inner }),
            None => self.actor.upgrade(),
        }
    }

    /// Whether the actor is running and accepting messages, as
    /// [`ProcessHandle::is_alive`]. Allocates nothing.
    pub fn is_alive(&self) -> bool {
        match self.handle.upgrade() {
            Some(inner) => inner.is_alive(),
            None => self.actor.is_alive(),
        }
    }

    /// Waits until the actor has stopped and returns why, without keeping
    /// it alive meanwhile.
    pub async fn exited(&self) -> ExitReason {
        self.actor.exited().await
    }

    /// Kills the actor, as [`ProcessHandle::kill`].
    pub fn kill(&self) {
        self.actor.kill()
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

trait ErasedRef: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    fn is_alive(&self) -> bool;
    fn exited(&self) -> BoxFuture<'_, ExitReason>;
    fn request_stop(&self) -> BoxFuture<'_, ()>;
    fn kill(&self);
    fn as_any(&self) -> &dyn Any;
    fn type_name(&self) -> &'static str;
    fn downgrade(&self) -> Arc<dyn ErasedWeak>;
}

trait ErasedWeak: Send + Sync + 'static {
    fn id(&self) -> ActorId;
    fn upgrade(&self) -> Option<ProcessHandle>;
    fn is_alive(&self) -> bool;
    fn exited(&self) -> BoxFuture<'_, ExitReason>;
    fn kill(&self);
}

struct TypedRef<A: Actor> {
    actor_ref: ActorRef<A>,
    /// Shared with the weak handles made from this one.
    stop_requested: Arc<AtomicBool>,
}

struct TypedWeak<A: Actor> {
    actor_ref: WeakActorRef<A>,
    stop_requested: Arc<AtomicBool>,
}

/// The exit reason of an actor from kameo's shutdown result.
fn exit_reason<A: Actor>(
    result: Result<&ActorStopReason, HookError<&A::Error>>,
    stop_requested: &AtomicBool,
) -> ExitReason {
    match result {
        Ok(reason) => ExitReason::from_kameo(reason, stop_requested.load(Ordering::Acquire)),
        Err(HookError::Error(err)) => ExitReason::Error(error_message(err).into()),
        Err(HookError::Panicked(panic)) => ExitReason::from_panic_error(&panic),
    }
}

impl<A: Actor> ErasedWeak for TypedWeak<A> {
    fn id(&self) -> ActorId {
        self.actor_ref.id()
    }

    fn upgrade(&self) -> Option<ProcessHandle> {
        self.actor_ref.upgrade().map(|actor_ref| ProcessHandle {
            inner: Arc::new(TypedRef {
                actor_ref,
                stop_requested: self.stop_requested.clone(),
            }),
        })
    }

    fn is_alive(&self) -> bool {
        self.actor_ref
            .upgrade()
            .is_some_and(|actor_ref| actor_ref.is_alive())
    }

    fn exited(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(async move {
            self.actor_ref
                .wait_for_shutdown_with_result(|result| {
                    exit_reason::<A>(result, &self.stop_requested)
                })
                .await
        })
    }

    fn kill(&self) {
        self.actor_ref.kill()
    }
}

impl<A: Actor> ErasedRef for TypedRef<A> {
    fn id(&self) -> ActorId {
        self.actor_ref.id()
    }

    fn is_alive(&self) -> bool {
        self.actor_ref.is_alive()
    }

    fn exited(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(async move {
            self.actor_ref
                .wait_for_shutdown_with_result(|result| {
                    exit_reason::<A>(result, &self.stop_requested)
                })
                .await
        })
    }

    fn request_stop(&self) -> BoxFuture<'_, ()> {
        self.stop_requested.store(true, Ordering::Release);
        Box::pin(async move {
            // An actor that already stopped has nothing left to stop.
            let _ = self.actor_ref.stop_gracefully().await;
        })
    }

    fn kill(&self) {
        self.actor_ref.kill()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        A::name()
    }

    fn downgrade(&self) -> Arc<dyn ErasedWeak> {
        Arc::new(TypedWeak {
            actor_ref: self.actor_ref.downgrade(),
            stop_requested: self.stop_requested.clone(),
        })
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
