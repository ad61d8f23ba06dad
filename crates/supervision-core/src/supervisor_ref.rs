//! What both supervisors share, so that [`Supervisor`](crate::Supervisor)
//! and [`DynamicSupervisor`](crate::DynamicSupervisor) start, stop and
//! answer the same way: [`SupervisorRef`] (the actor reference and process
//! handle behind each handle, the spawn of the actor, and the calls both
//! answer alike), and [`ChildList`], from which every supervisor actor
//! answers `which_children` and `count_children`.

use std::fmt;

use kameo::{
    actor::{Actor, ActorRef, Spawn},
    mailbox,
    message::Message,
};

use crate::{
    ChildCounts, ChildInfo, ChildSpec, ChildState, ExitReason, ProcessHandle, SupervisorError,
    error::from_send_error,
};

/// What a supervisor actor reports of its children.
pub(crate) trait ChildList {
    /// Every child in order (start order, or list order), with its state.
    fn which_children(&self) -> Vec<ChildInfo>;

    /// The child counts.
    fn count_children(&self) -> ChildCounts;
}

/// A child as `which_children` reports it.
pub(crate) fn child_info(spec: &ChildSpec, state: ChildState) -> ChildInfo {
    ChildInfo {
        id: spec.id.clone(),
        state,
        kind: spec.kind,
        restart: spec.restart,
    }
}

/// Every child in order.
pub(crate) struct WhichChildren;

/// The child counts.
pub(crate) struct CountChildren;

/// Implements [`WhichChildren`] and [`CountChildren`] for a supervisor
/// actor from its [`ChildList`] (a macro: the orphan rule forbids one
/// generic impl of kameo's `Message` over every such actor).
macro_rules! child_list_messages {
    ($actor:ty) => {
        impl ::kameo::message::Message<$crate::supervisor_ref::WhichChildren> for $actor {
            type Reply = Result<Vec<$crate::ChildInfo>, $crate::SupervisorError>;

            async fn handle(
                &mut self,
                _: $crate::supervisor_ref::WhichChildren,
                _: &mut ::kameo::message::Context<Self, Self::Reply>,
            ) -> Self::Reply {
                Ok($crate::supervisor_ref::ChildList::which_children(self))
            }
        }

        impl ::kameo::message::Message<$crate::supervisor_ref::CountChildren> for $actor {
            type Reply = Result<$crate::ChildCounts, $crate::SupervisorError>;

            async fn handle(
                &mut self,
                _: $crate::supervisor_ref::CountChildren,
                _: &mut ::kameo::message::Context<Self, Self::Reply>,
            ) -> Self::Reply {
                Ok($crate::supervisor_ref::ChildList::count_children(self))
            }
        }
    };
}
pub(crate) use child_list_messages;

/// The actor reference and process handle behind a supervisor's handle.
pub(crate) struct SupervisorRef<A: Actor> {
    pub(crate) actor: ActorRef<A>,
    pub(crate) handle: ProcessHandle,
}

impl<A: Actor> Clone for SupervisorRef<A> {
    fn clone(&self) -> Self {
        SupervisorRef {
            actor: self.actor.clone(),
            handle: self.handle.clone(),
        }
    }
}

impl<A> SupervisorRef<A>
where
    A: Actor<Args = A>
        + Spawn
        + Message<WhichChildren, Reply = Result<Vec<ChildInfo>, SupervisorError>>
        + Message<CountChildren, Reply = Result<ChildCounts, SupervisorError>>,
{
    /// Spawns a supervisor actor. Its mailbox is unbounded: a supervisor
    /// tells itself retries from its handlers, which must never wait on its
    /// own mailbox.
    pub(crate) fn spawn(actor: A) -> Self {
        let prepared = A::prepare_with_mailbox(mailbox::unbounded());
        let actor_ref = prepared.actor_ref().clone();
        SupervisorRef {
            handle: ProcessHandle::spawn_prepared(prepared, actor),
            actor: actor_ref,
        }
    }

    /// The supervisor behind `handle`, if its actor is an `A`.
    pub(crate) fn from_handle(handle: &ProcessHandle) -> Option<Self> {
        handle.downcast::<A>().map(|actor| SupervisorRef {
            actor,
            handle: handle.clone(),
        })
    }

    pub(crate) async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        self.actor.ask(WhichChildren).await.map_err(from_send_error)
    }

    pub(crate) async fn count_children(&self) -> Result<ChildCounts, SupervisorError> {
        self.actor.ask(CountChildren).await.map_err(from_send_error)
    }

    pub(crate) async fn stop(&self) -> ExitReason {
        self.handle.stop().await
    }

    pub(crate) async fn exited(&self) -> ExitReason {
        self.handle.exited().await
    }

    /// The `Debug` of a supervisor handle named `name`.
    pub(crate) fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name).field("handle", &self.handle).finish()
    }
}
