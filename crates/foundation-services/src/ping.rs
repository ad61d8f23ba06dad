//! The liveness ping the operational services' actors answer, and the
//! health check that sends it.

use std::time::Duration;

use kameo::{Actor, error::SendError, message::Message};
use mabeam_supervision_core::HealthCheck;

/// How long a service's actor may take to answer its health check.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// Asks a service actor whether it can serve: `Ok(())`, or why not.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ping;

/// A health check that asks the actor, of type `A`, [`Ping`]: healthy if it
/// answers `Ok(())` within `timeout`.
pub(crate) fn ping_check<A>(timeout: Duration) -> HealthCheck
where
    A: Actor + Message<Ping, Reply = Result<(), String>>,
{
    HealthCheck::new(timeout, |handle| async move {
        let actor = handle
            .downcast::<A>()
            .ok_or_else(|| format!("process is not a {}", <A as Actor>::name()))?;
        match actor.ask(Ping).await {
            Ok(()) => Ok(()),
            Err(SendError::HandlerError(reason)) => Err(reason),
            Err(other) => Err(other.to_string()),
        }
    })
}
