//! The service monitor's service: an actor that runs a round every
//! interval, on a timer task of its own so its health check never waits
//! for a round.

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};
use supervision_core::{ChildSpec, ServiceDef};
use tokio::task::AbortHandle;

use super::ServiceMonitor;
use crate::ping::{HEALTH_TIMEOUT, Ping, ping_check};

/// The service monitor's actor: owns the round timer.
pub(crate) struct ServiceMonitorActor {
    rounds: AbortHandle,
}

impl Drop for ServiceMonitorActor {
    fn drop(&mut self) {
        self.rounds.abort();
    }
}

impl Actor for ServiceMonitorActor {
    type Args = ServiceMonitor;
    type Error = std::convert::Infallible;

    fn name() -> &'static str {
        "ServiceMonitor"
    }

    async fn on_start(monitor: ServiceMonitor, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        let rounds = tokio::spawn(async move {
            loop {
                monitor.clock().sleep(monitor.interval()).await;
                monitor.ping_all().await;
            }
        })
        .abort_handle();
        Ok(ServiceMonitorActor { rounds })
    }
}

impl Message<Ping> for ServiceMonitorActor {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.rounds.is_finished() {
            Err("the round timer stopped".to_owned())
        } else {
            Ok(())
        }
    }
}

pub(super) fn service_def(monitor: ServiceMonitor) -> ServiceDef {
    let name = monitor.name().to_owned();
    ServiceDef::child(ChildSpec::actor::<ServiceMonitorActor>(name, move || {
        monitor.clone()
    }))
    .with_health_check(ping_check::<ServiceMonitorActor>(HEALTH_TIMEOUT))
}
