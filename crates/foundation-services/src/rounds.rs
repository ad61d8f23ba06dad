//! The service of a monitor that runs a round every interval (the
//! [`HealthMonitor`](crate::health_monitor::HealthMonitor) and the
//! [`ServiceMonitor`](crate::service_monitor::ServiceMonitor)): an actor
//! whose timer task of its own runs the rounds, so its health check never
//! waits for a round.

use std::{future::Future, marker::PhantomData, time::Duration};

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};
use mabeam_supervision_core::{ChildSpec, Clock, ServiceDef};
use tokio::task::AbortHandle;

use crate::ping::{HEALTH_TIMEOUT, Ping, ping_check};

/// A monitor that runs a round every interval, on its clock.
pub(crate) trait Rounds: Clone + Send + Sync + 'static {
    /// The name of its actor type.
    const ACTOR: &'static str;

    /// The service's name (its child id).
    fn service_name(&self) -> &str;

    /// Its clock.
    fn round_clock(&self) -> &Clock;

    /// How long between two rounds.
    fn round_interval(&self) -> Duration;

    /// Runs one round.
    fn round(&self) -> impl Future<Output = ()> + Send;
}

/// The actor of a [`Rounds`] monitor: owns the round timer.
pub(crate) struct RoundsActor<R> {
    rounds: AbortHandle,
    monitor: PhantomData<fn() -> R>,
}

impl<R> Drop for RoundsActor<R> {
    fn drop(&mut self) {
        self.rounds.abort();
    }
}

impl<R: Rounds> Actor for RoundsActor<R> {
    type Args = R;
    type Error = std::convert::Infallible;

    fn name() -> &'static str {
        R::ACTOR
    }

    async fn on_start(monitor: R, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        let rounds = tokio::spawn(async move {
            loop {
                monitor.round_clock().sleep(monitor.round_interval()).await;
                monitor.round().await;
            }
        })
        .abort_handle();
        Ok(RoundsActor {
            rounds,
            monitor: PhantomData,
        })
    }
}

impl<R: Rounds> Message<Ping> for RoundsActor<R> {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if self.rounds.is_finished() {
            Err("the round timer stopped".to_owned())
        } else {
            Ok(())
        }
    }
}

/// The supervised service of `monitor`: its actor, with a ping health
/// check.
pub(crate) fn service_def<R: Rounds>(monitor: R) -> ServiceDef {
    let name = monitor.service_name().to_owned();
    ServiceDef::child(ChildSpec::actor::<RoundsActor<R>>(name, move || {
        monitor.clone()
    }))
    .with_health_check(ping_check::<RoundsActor<R>>(HEALTH_TIMEOUT))
}
