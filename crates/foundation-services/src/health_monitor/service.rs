//! The health monitor's service: an actor that runs a round every
//! interval, on a timer task of its own so its health check never waits
//! for a round.

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};
use supervision_core::{ChildSpec, ServiceDef};
use tokio::task::AbortHandle;

use super::HealthMonitor;
use crate::ping::{HEALTH_TIMEOUT, Ping, ping_check};

/// The health monitor's actor: owns the round timer.
pub(crate) struct HealthMonitorActor {
    rounds: AbortHandle,
}

impl Drop for HealthMonitorActor {
    fn drop(&mut self) {
        self.rounds.abort();
    }
}

impl Actor for HealthMonitorActor {
    type Args = HealthMonitor;
    type Error = std::convert::Infallible;

    fn name() -> &'static str {
        "HealthMonitor"
    }

    async fn on_start(monitor: HealthMonitor, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        let rounds = tokio::spawn(async move {
            loop {
                monitor.clock().sleep(monitor.interval()).await;
                monitor.check_now().await;
            }
        })
        .abort_handle();
        Ok(HealthMonitorActor { rounds })
    }
}

impl Message<Ping> for HealthMonitorActor {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.rounds.is_finished() {
            Err("the round timer stopped".to_owned())
        } else {
            Ok(())
        }
    }
}

pub(super) fn service_def(monitor: HealthMonitor) -> ServiceDef {
    let name = monitor.name().to_owned();
    ServiceDef::child(ChildSpec::actor::<HealthMonitorActor>(name, move || {
        monitor.clone()
    }))
    .with_health_check(ping_check::<HealthMonitorActor>(HEALTH_TIMEOUT))
}
