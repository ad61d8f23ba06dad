//! The rate limiter's service: an actor that sweeps idle buckets on an
//! interval and answers its health check. Checks never go through it.

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};
use mabeam_supervision_core::{ChildSpec, ServiceDef};
use tokio::task::AbortHandle;

use super::RateLimiter;
use crate::ping::{HEALTH_TIMEOUT, Ping, ping_check};

/// The rate limiter's actor: owns the sweep timer.
pub(crate) struct RateLimiterActor {
    limiter: RateLimiter,
    sweeper: AbortHandle,
}

impl Drop for RateLimiterActor {
    fn drop(&mut self) {
        // Stopped or killed: the timer goes with it.
        self.sweeper.abort();
    }
}

impl Actor for RateLimiterActor {
    type Args = RateLimiter;
    type Error = std::convert::Infallible;

    fn name() -> &'static str {
        "RateLimiter"
    }

    async fn on_start(
        limiter: RateLimiter,
        actor_ref: ActorRef<Self>,
    ) -> Result<Self, Self::Error> {
        let weak = actor_ref.downgrade();
        let clock = limiter.clock().clone();
        let interval = limiter.sweep_interval();
        let sweeper = tokio::spawn(async move {
            loop {
                clock.sleep(interval).await;
                let Some(actor) = weak.upgrade() else { break };
                if actor.tell(Sweep).await.is_err() {
                    break;
                }
            }
        })
        .abort_handle();
        Ok(RateLimiterActor { limiter, sweeper })
    }
}

/// Time to sweep.
struct Sweep;

impl Message<Sweep> for RateLimiterActor {
    type Reply = ();

    async fn handle(&mut self, _: Sweep, _: &mut Context<Self, ()>) {
        self.limiter.evict_idle();
    }
}

impl Message<Ping> for RateLimiterActor {
    type Reply = Result<(), String>;

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        Ok(())
    }
}

pub(super) fn service_def(limiter: RateLimiter) -> ServiceDef {
    let name = limiter.name().to_owned();
    ServiceDef::child(ChildSpec::actor::<RateLimiterActor>(name, move || {
        limiter.clone()
    }))
    .with_health_check(ping_check::<RateLimiterActor>(HEALTH_TIMEOUT))
}
