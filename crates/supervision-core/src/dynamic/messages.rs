//! What the [`DynamicSupervisor`](crate::DynamicSupervisor) handle, the
//! watchers and the restart timers send the supervisor actor.

use std::sync::Arc;

use super::actor::{DynamicSupervisorActor, Shared};
use crate::{
    ChildCounts, ChildInfo, ChildSpec, ChildState, ExitReason, ProcessHandle, SupervisorError,
    supervisor_ref::{ChildList, child_info, child_list_messages},
    watch::ChildDown,
};
use kameo::{
    actor::ActorId,
    message::{Context, Message},
};

/// A child started by a caller, handed over to be kept and watched.
///
/// A hand-over never leaves a child unsupervised: if the message is dropped
/// unhandled (the supervisor stopped between the caller's check and the
/// hand-over), dropping it stops the child.
pub(super) struct Adopt {
    child: Option<(ProcessHandle, ChildSpec)>,
    /// The child reports its own exit (no watcher).
    reports: bool,
}

impl std::fmt::Debug for Adopt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adopt")
            .field("child", &self.child.as_ref().map(|(handle, _)| handle.id()))
            .field("reports", &self.reports)
            .finish()
    }
}

impl Adopt {
    pub(super) fn new(handle: ProcessHandle, spec: ChildSpec, reports: bool) -> Self {
        Adopt {
            child: Some((handle, spec)),
            reports,
        }
    }

    /// The child, now someone else's to keep or stop.
    pub(super) fn take(&mut self) -> Option<(ProcessHandle, ChildSpec)> {
        self.child.take()
    }

    /// Whether the child reports its own exit.
    pub(super) fn reports(&self) -> bool {
        self.reports
    }
}

impl Drop for Adopt {
    fn drop(&mut self) {
        let Some((handle, spec)) = self.child.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    spec.shutdown.stop(&handle).await;
                });
            }
            Err(_) => handle.kill(),
        }
    }
}

impl Message<Adopt> for DynamicSupervisorActor {
    type Reply = ();

    async fn handle(&mut self, mut adopt: Adopt, ctx: &mut Context<Self, ()>) {
        let reports = adopt.reports;
        if let Some((handle, spec)) = adopt.take() {
            self.adopt_new(handle, spec, reports, Some(ctx.actor_ref()));
        }
    }
}

/// Stop the child with this actor id: a running child, or one waiting for
/// its restart whose last incarnation had this id (the wait is cancelled).
pub(super) struct TerminateChild(pub(super) ActorId);

impl Message<TerminateChild> for DynamicSupervisorActor {
    type Reply = Result<(), SupervisorError>;

    async fn handle(
        &mut self,
        TerminateChild(id): TerminateChild,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if let Some(child) = self.shared.take_running(id) {
            self.terminate(*child).await;
            return Ok(());
        }
        let ticket = self
            .restarting_ticket(id)
            .ok_or(SupervisorError::NotFound)?;
        if let Some(pending) = self.restarting.remove(&ticket) {
            self.cancel_restart(pending).await;
        }
        Ok(())
    }
}

impl ChildList for DynamicSupervisorActor {
    fn which_children(&self) -> Vec<ChildInfo> {
        let children = self.shared.children.lock();
        let running = children.values().map(|child| {
            (
                child.order.seq(),
                &child.spec,
                ChildState::Running(child.handle.clone()),
            )
        });
        let restarting = self
            .restarting
            .values()
            .map(|pending| (pending.order.seq(), &pending.spec, ChildState::Restarting));
        let mut all: Vec<_> = running.chain(restarting).collect();
        all.sort_unstable_by_key(|(seq, ..)| *seq);
        all.into_iter()
            .map(|(_, spec, state)| child_info(spec, state))
            .collect()
    }

    fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts::default();
        for child in self.shared.children.lock().values() {
            counts.add(child.spec.kind, true);
        }
        for pending in self.restarting.values() {
            counts.add(pending.spec.kind, false);
        }
        counts
    }
}

child_list_messages!(DynamicSupervisorActor);

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
        if let Some(pending) = self.restarting.remove(&ticket) {
            self.start_restart(pending, ctx.actor_ref()).await;
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
            Some(pending) => self.schedule_restart(pending, ctx.actor_ref()).await,
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
        // A child a `terminate_child` is stopping is left to it: its exit
        // is that call's, and it is not restarted.
        match self.shared.take_running(id) {
            // Not restarted (every temporary child): done here, so this
            // handler's future (which kameo boxes for every message) stays
            // small; the restart path is boxed apart.
            Some(child) if !child.spec.restart.restarts_after(&exit) => {
                self.child_ended(&child, &exit);
                Ok(())
            }
            Some(child) => Box::pin(self.child_exited(*child, exit, ctx.actor_ref())).await,
            None => Ok(()),
        }
    }
}

/// Sent by [`ExitNotice::ended`](super::ExitNotice::ended) when its queue
/// passes a bound, and by a `start_child` that `max_children` refused
/// while exits wait: nothing to do but wake the supervisor, which collects
/// the queue before it handles any message.
pub(super) struct CollectEnded;

impl Message<CollectEnded> for DynamicSupervisorActor {
    type Reply = ();

    async fn handle(&mut self, _: CollectEnded, _: &mut Context<Self, ()>) {}
}
