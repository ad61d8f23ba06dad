//! The connection manager's service: an actor whose start starts the
//! manager (listener, seeds) and whose stop stops it.

use kameo::{
    actor::{Actor, ActorRef, WeakActorRef},
    error::ActorStopReason,
    message::{Context, Message},
};
use mabeam_supervision_core::{ChildSpec, ServiceDef};

use super::{ConnectionError, ConnectionManager};
use crate::ping::{HEALTH_TIMEOUT, Ping, ping_check};

/// The owner of a running [`ConnectionManager`].
pub(crate) struct ConnectionManagerActor {
    manager: ConnectionManager,
}

impl Drop for ConnectionManagerActor {
    fn drop(&mut self) {
        // Killed (no on_stop): the listener and connections go with it.
        self.manager.abort();
    }
}

impl Actor for ConnectionManagerActor {
    type Args = ConnectionManager;
    type Error = ConnectionError;

    fn name() -> &'static str {
        "ConnectionManager"
    }

    async fn on_start(manager: ConnectionManager, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        manager.start().await?;
        Ok(ConnectionManagerActor { manager })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), Self::Error> {
        self.manager.stop().await;
        Ok(())
    }
}

impl Message<Ping> for ConnectionManagerActor {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        match self.manager.local_addr() {
            Some(_) => Ok(()),
            None => Err("not listening".to_owned()),
        }
    }
}

pub(super) fn service_def(manager: ConnectionManager) -> ServiceDef {
    let name = "connection_manager".to_owned();
    ServiceDef::child(ChildSpec::actor::<ConnectionManagerActor>(
        name,
        move || manager.clone(),
    ))
    .with_health_check(ping_check::<ConnectionManagerActor>(HEALTH_TIMEOUT))
}
