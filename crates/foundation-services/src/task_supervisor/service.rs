//! The task supervisor's service: the actor that owns the tasks. It takes
//! tasks when it starts, shuts them down (bounded) when it stops, and
//! aborts them all if it is killed.

use std::time::Duration;

use kameo::{
    actor::{Actor, ActorRef, WeakActorRef},
    error::ActorStopReason,
    message::{Context, Message},
};
use mabeam_supervision_core::{ChildSpec, ServiceDef, Shutdown};

use super::TaskSupervisor;
use crate::ping::{HEALTH_TIMEOUT, Ping, ping_check};

/// The owner of a [`TaskSupervisor`]'s tasks.
pub(crate) struct TaskSupervisorActor {
    tasks: TaskSupervisor,
}

impl Drop for TaskSupervisorActor {
    fn drop(&mut self) {
        // Killed (no on_stop): the tasks die with their owner.
        self.tasks.abort_all();
    }
}

impl Actor for TaskSupervisorActor {
    type Args = TaskSupervisor;
    type Error = std::convert::Infallible;

    fn name() -> &'static str {
        "TaskSupervisor"
    }

    async fn on_start(tasks: TaskSupervisor, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        tasks.reopen();
        Ok(TaskSupervisorActor { tasks })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), Self::Error> {
        self.tasks.stop().await;
        Ok(())
    }
}

impl Message<Ping> for TaskSupervisorActor {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.tasks.is_accepting() {
            Ok(())
        } else {
            Err("not taking tasks".to_owned())
        }
    }
}

pub(super) fn service_def(tasks: TaskSupervisor) -> ServiceDef {
    let name = tasks.name().to_owned();
    let shutdown = Shutdown::Timeout(tasks.shutdown_timeout() + Duration::from_secs(1));
    ServiceDef::child(
        ChildSpec::actor::<TaskSupervisorActor>(name, move || tasks.clone())
            .with_shutdown(shutdown),
    )
    .with_health_check(ping_check::<TaskSupervisorActor>(HEALTH_TIMEOUT))
}
