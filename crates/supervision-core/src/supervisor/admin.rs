//! The static supervisor's admin calls, as messages to its actor.

use std::{mem, sync::Arc};

use kameo::message::{Context, Message};

use super::actor::{Child, Slot, SupervisorActor};
use crate::{
    ChildCounts, ChildInfo, ChildSpec, ChildState, ProcessHandle, RestartType, StartError,
    SupervisorError,
    supervisor_ref::{ChildList, child_info, child_list_messages},
};

/// Start the initial children in order; on a failure, stop those started in
/// reverse order and keep nothing.
pub(super) struct StartChildren(pub(super) Vec<ChildSpec>);

impl Message<StartChildren> for SupervisorActor {
    type Reply = Result<(), SupervisorError>;

    async fn handle(
        &mut self,
        StartChildren(specs): StartChildren,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.children.reserve(specs.len());
        for spec in specs {
            match Self::start(&self.reporter, &spec, ctx.actor_ref()).await {
                Ok(handle) => self
                    .children
                    .push(Child::running(spec, handle, self.clock.now())),
                // OTP's `ignore`: the spec is kept, not running; a
                // temporary child's is dropped (it never restarts).
                Err(StartError::Ignored) => {
                    if spec.restart != RestartType::Temporary {
                        self.children
                            .push(Child::not_running(spec, self.clock.now()));
                    }
                }
                Err(error) => {
                    self.shutdown_all().await;
                    self.children.clear();
                    return Err(SupervisorError::ChildStart {
                        id: spec.id.clone(),
                        error,
                    });
                }
            }
        }
        Ok(())
    }
}

pub(super) struct StartChild(pub(super) ChildSpec);

impl Message<StartChild> for SupervisorActor {
    type Reply = Result<ProcessHandle, SupervisorError>;

    async fn handle(
        &mut self,
        StartChild(spec): StartChild,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        if let Some(index) = self.position(&spec.id) {
            return Err(match &self.children[index].slot {
                Slot::Running(handle) => SupervisorError::AlreadyStarted(handle.clone()),
                Slot::Restarting(_) => SupervisorError::Restarting,
                Slot::NotRunning | Slot::Terminated => SupervisorError::AlreadyPresent,
            });
        }
        self.check_significant(&spec)?;
        match Self::start(&self.reporter, &spec, ctx.actor_ref()).await {
            Ok(handle) => {
                self.children
                    .push(Child::running(spec, handle.clone(), self.clock.now()));
                Ok(handle)
            }
            Err(StartError::Ignored) => {
                // OTP's `ignore`: the spec is kept, not running; a
                // temporary child's is dropped (it never restarts).
                if spec.restart != RestartType::Temporary {
                    self.children
                        .push(Child::not_running(spec, self.clock.now()));
                }
                Err(StartError::Ignored.into())
            }
            Err(error) => Err(error.into()),
        }
    }
}

pub(super) struct TerminateChild(pub(super) Arc<str>);

impl Message<TerminateChild> for SupervisorActor {
    type Reply = Result<(), SupervisorError>;

    async fn handle(
        &mut self,
        TerminateChild(id): TerminateChild,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let index = self.position(&id).ok_or(SupervisorError::NotFound)?;
        let child = &mut self.children[index];
        if let Some(handle) = child.slot.take_running() {
            Self::stop_child(&self.reporter, &child.spec, handle).await;
        }
        // A pending restart is cancelled too, and its group's backoff timer
        // once no member waits on it. The child is terminated on request,
        // whatever it was doing.
        if let Slot::Restarting(ticket) = mem::replace(&mut child.slot, Slot::Terminated)
            && self.waiting_on(ticket).is_empty()
            && let Some(timer) = self.timers.remove(&ticket)
        {
            timer.cancel().await;
        }
        if self.children[index].spec.restart == RestartType::Temporary {
            self.children.remove(index);
        }
        Ok(())
    }
}

pub(super) struct RestartChild(pub(super) Arc<str>);

impl Message<RestartChild> for SupervisorActor {
    type Reply = Result<ProcessHandle, SupervisorError>;

    async fn handle(
        &mut self,
        RestartChild(id): RestartChild,
        ctx: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let index = self.position(&id).ok_or(SupervisorError::NotFound)?;
        match self.children[index].slot {
            Slot::Running(_) => return Err(SupervisorError::Running),
            Slot::Restarting(_) => return Err(SupervisorError::Restarting),
            Slot::NotRunning | Slot::Terminated => {}
        }
        let started =
            Self::start(&self.reporter, &self.children[index].spec, ctx.actor_ref()).await;
        let handle = started.inspect_err(|_| {
            // Tried and not started (a start error, or `ignore`): it no
            // longer stands as terminated on request.
            self.children[index].slot = Slot::NotRunning;
        })?;
        self.children[index].restarted(handle.clone(), self.clock.now());
        Ok(handle)
    }
}

pub(super) struct DeleteChild(pub(super) Arc<str>);

impl Message<DeleteChild> for SupervisorActor {
    type Reply = Result<(), SupervisorError>;

    async fn handle(
        &mut self,
        DeleteChild(id): DeleteChild,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        let index = self.position(&id).ok_or(SupervisorError::NotFound)?;
        match self.children[index].slot {
            Slot::Running(_) => Err(SupervisorError::Running),
            Slot::Restarting(_) => Err(SupervisorError::Restarting),
            Slot::NotRunning | Slot::Terminated => {
                self.children.remove(index);
                Ok(())
            }
        }
    }
}

impl ChildList for SupervisorActor {
    fn which_children(&self) -> Vec<ChildInfo> {
        self.children
            .iter()
            .map(|child| {
                let state = match &child.slot {
                    Slot::Running(handle) => ChildState::Running(handle.clone()),
                    Slot::Restarting(_) => ChildState::Restarting,
                    Slot::NotRunning => ChildState::NotRunning,
                    Slot::Terminated => ChildState::Terminated,
                };
                child_info(&child.spec, state)
            })
            .collect()
    }

    fn count_children(&self) -> ChildCounts {
        let mut counts = ChildCounts::default();
        for child in &self.children {
            counts.add(child.spec.kind, matches!(child.slot, Slot::Running(_)));
        }
        counts
    }
}

child_list_messages!(SupervisorActor);
