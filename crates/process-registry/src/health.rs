//! Health checks of services: the [`CheckHealth`] message a service actor
//! answers, the [`HealthCheck`] that asks it, and the [`HealthStatus`] a
//! check comes to.

use std::{fmt, future::Future, sync::Arc};

use futures::future::BoxFuture;
use kameo::{Actor, error::SendError, message::Message};
use supervision_core::ProcessHandle;

/// The message a service actor answers to report its health: `Ok(())` when
/// healthy, `Err(reason)` when it is running but cannot serve.
///
/// ```
/// use kameo::{Actor, message::{Context, Message}};
/// use process_registry::CheckHealth;
///
/// #[derive(Actor)]
/// struct Database { connected: bool }
///
/// impl Message<CheckHealth> for Database {
///     type Reply = Result<(), String>;
///
///     async fn handle(&mut self, _: CheckHealth, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
///         if self.connected { Ok(()) } else { Err("no connection".into()) }
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckHealth;

/// What a health check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthStatus {
    /// The process answered that it is healthy.
    Healthy,
    /// The process is not running (stopped, stopping, or it died while
    /// answering).
    Dead,
    /// The process did not answer within the timeout.
    TimedOut,
    /// The process answered that it is unhealthy, with its reason, or the
    /// check itself could not be made (e.g. the process is not of the
    /// actor type the check expects).
    Failed(Arc<str>),
}

impl HealthStatus {
    /// Whether this is [`HealthStatus::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, HealthStatus::Healthy)
    }
}

type CheckFn = dyn Fn(ProcessHandle) -> BoxFuture<'static, HealthStatus> + Send + Sync;

/// How the [`ServiceRegistry`](crate::ServiceRegistry) asks a service
/// whether it is healthy; given at registration.
///
/// A check talks to the live process: [`HealthCheck::message`] sends it
/// [`CheckHealth`], [`HealthCheck::new`] runs any async closure with its
/// handle (e.g. to send a message the actor already has). The registry
/// adds the liveness test before and the timeout around it. A service
/// registered without a check is judged by liveness alone.
#[derive(Clone)]
pub struct HealthCheck {
    check: Arc<CheckFn>,
}

impl HealthCheck {
    /// A check running `check` with the service's handle: `Ok(())` is
    /// healthy, `Err(reason)` is [`HealthStatus::Failed`]. A check that
    /// ends after the process has stopped counts as [`HealthStatus::Dead`].
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn(ProcessHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        HealthCheck {
            check: Arc::new(move |handle: ProcessHandle| {
                let answer = check(handle.clone());
                Box::pin(async move {
                    match answer.await {
                        Ok(()) => HealthStatus::Healthy,
                        Err(_) if !handle.is_alive() => HealthStatus::Dead,
                        Err(reason) => HealthStatus::Failed(reason.into()),
                    }
                })
            }),
        }
    }

    /// A check that asks the actor, of type `A`, [`CheckHealth`].
    pub fn message<A>() -> Self
    where
        A: Actor + Message<CheckHealth, Reply = Result<(), String>>,
    {
        HealthCheck {
            check: Arc::new(|handle: ProcessHandle| {
                Box::pin(async move {
                    let Some(actor) = handle.downcast::<A>() else {
                        return HealthStatus::Failed(
                            format!("process is not a {}", <A as Actor>::name()).into(),
                        );
                    };
                    match actor.ask(CheckHealth).await {
                        Ok(()) => HealthStatus::Healthy,
                        Err(SendError::HandlerError(reason)) => HealthStatus::Failed(reason.into()),
                        Err(SendError::ActorNotRunning(_) | SendError::ActorStopped) => {
                            HealthStatus::Dead
                        }
                        Err(SendError::Timeout(_)) => HealthStatus::TimedOut,
                        Err(other) => HealthStatus::Failed(other.to_string().into()),
                    }
                })
            }),
        }
    }

    /// Runs the check (without liveness test or timeout).
    pub(crate) fn run(&self, handle: ProcessHandle) -> BoxFuture<'static, HealthStatus> {
        (self.check)(handle)
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck").finish_non_exhaustive()
    }
}
