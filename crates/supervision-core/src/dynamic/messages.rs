//! What the [`DynamicSupervisor`](crate::DynamicSupervisor) handle, the
//! watchers and the restart timers send the supervisor actor.

use std::sync::Arc;

use kameo::{
    actor::ActorId,
    message::{Context, Message},
};
use tokio::time::Instant;

use super::actor::{DynamicSupervisorActor, Pending, Shared};
use crate::{
    ChildCounts, ChildInfo, ChildSpec, ChildState, ExitReason, ProcessHandle, SupervisorError,
    backoff::BackoffState, watch::ChildDown,
};

/// A child started by a caller, handed over to be kept and watched.
pub(super) struct Adopt {
    pub(super) handle: ProcessHandle,
    pub(super) spec: ChildSpec,
}

impl Message<Adopt> for DynamicSupervisorActor {
    type Reply = ();

    async fn handle(&mut self, Adopt { handle, spec }: Adopt, ctx: &mut Context<Self, ()>) {
        let backoff = BackoffState::new(Instant::now());
        self.adopt(handle, spec, backoff, ctx.actor_ref());
    }
}

/// Stop the child with this actor id.
pub(super) struct TerminateChild(pub(super) ActorId);

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

/// Every child in start order.
pub(super) struct WhichChildren;

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

/// The child counts.
pub(super) struct CountChildren;

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

/// Hands out the shared half, for a handle made by
/// [`DynamicSupervisor::from_handle`](crate::DynamicSupervisor::from_handle).
pub(super) struct GetShared;

impl Message<GetShared> for DynamicSupervisorActor {
    type Reply = Arc<Shared>;

    async fn handle(&mut self, _: GetShared, _: &mut Context<Self, Self::Reply>) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// The backoff delay of the child with this ticket is over: start it.
pub(super) struct StartRestart(pub(super) u64);

impl Message<StartRestart> for DynamicSupervisorActor {
    type Reply = ();

    async fn handle(&mut self, StartRestart(ticket): StartRestart, ctx: &mut Context<Self, ()>) {
        if let Some(Pending { spec, backoff }) = self.restarting.remove(&ticket) {
            self.start_restart(spec, backoff, ctx.actor_ref()).await;
        }
    }
}

/// The restart of the child with this ticket failed: decide it again.
pub(super) struct Reschedule(pub(super) u64);

impl Message<Reschedule> for DynamicSupervisorActor {
    type Reply = Result<(), ExitReason>;

    async fn handle(
        &mut self,
        Reschedule(ticket): Reschedule,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        match self.restarting.remove(&ticket) {
            Some(Pending { spec, backoff }) => {
                self.schedule_restart(spec, backoff, ctx.actor_ref()).await
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
