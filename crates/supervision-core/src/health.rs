//! Health checks: a [`HealthCheck`] asks whether a process (or anything
//! else) can serve, within its timeout, and comes to a [`Health`]. One
//! type for every user: an [`Application`](crate::Application) checks its
//! services with it, process-registry's `ServiceRegistry` its registered
//! services, and anyone can run one on a [`ProcessHandle`] or on its own.
//!
//! Words: a check's answer is a *health* ([`Health`]); where a service of
//! an application stands is its *status*
//! ([`ServiceStatus`](crate::ServiceStatus)). A health says nothing about
//! restarts, a status nothing about whether the service can serve.

use std::{fmt, future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::{
    FutureExt,
    future::{self, BoxFuture, Either},
};
use kameo::{Actor, error::SendError, message::Message};

use crate::{Clock, ProcessHandle, child::panic_message};

/// What one health check came to.
///
/// Only [`Healthy`](Self::Healthy) is healthy: a check that timed out, or a
/// process that is not running, counts as unhealthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// The check passed (a running process without a check is healthy).
    Healthy,
    /// The check failed with this reason, panicked (the reason is the panic
    /// message), or could not be made (e.g. the process is not of the actor
    /// type the check expects).
    Unhealthy(Arc<str>),
    /// The check did not answer within its timeout (this one).
    TimedOut(Duration),
    /// The process is not running: it had stopped before the check, or it
    /// stopped while the check ran.
    NotRunning,
}

impl Health {
    /// Whether this is [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        *self == Health::Healthy
    }

    /// A short lowercase label, for telemetry and metrics: `healthy`,
    /// `unhealthy`, `timed_out`, `not_running`.
    pub fn label(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy(_) => "unhealthy",
            Health::TimedOut(_) => "timed_out",
            Health::NotRunning => "not_running",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Healthy => f.write_str("healthy"),
            Health::Unhealthy(reason) => write!(f, "unhealthy: {reason}"),
            Health::TimedOut(timeout) => write!(f, "timed out after {timeout:?}"),
            Health::NotRunning => f.write_str("not running"),
        }
    }
}

/// The message an actor answers to report its health, for
/// [`HealthCheck::message`]: `Ok(())` when healthy, `Err(reason)` when it
/// runs but cannot serve.
///
/// ```
/// use kameo::{Actor, message::{Context, Message}};
/// use mabeam_supervision_core::CheckHealth;
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

type ProcessCheck = dyn Fn(ProcessHandle) -> BoxFuture<'static, Health> + Send + Sync;
type AloneCheck = dyn Fn() -> BoxFuture<'static, Health> + Send + Sync;

#[derive(Clone)]
enum Check {
    /// Needs the process it checks.
    Process(Arc<ProcessCheck>),
    /// Checks something else (a connection, a file); runs without a process.
    Alone(Arc<AloneCheck>),
}

/// A health check: an async function that answers `Ok(())` or
/// `Err(reason)`, given a timeout to answer.
///
/// Three kinds, one type:
///
/// - [`HealthCheck::new`]: a function of the checked process's
///   [`ProcessHandle`] (to ask it something);
/// - [`HealthCheck::message`]: asks the actor [`CheckHealth`];
/// - [`HealthCheck::standalone`]: a function of nothing (a dependency
///   outside any process: a socket, a disk).
///
/// [`run`](Self::run) checks a process: one that is not alive is
/// [`Health::NotRunning`] without running the check, and a check that fails
/// because its process stopped meanwhile is `NotRunning` too.
/// [`run_alone`](Self::run_alone) runs a check without a process. Either
/// way, a check that does not answer within the timeout is
/// [`Health::TimedOut`], one that panics is [`Health::Unhealthy`] with the
/// panic message. A zero timeout times out at once (an
/// [`ApplicationSpec`](crate::ApplicationSpec) refuses it).
///
/// Cheap to clone: clones share the function.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kameo::Actor;
/// use mabeam_supervision_core::{Health, HealthCheck, ProcessHandle};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let alive = HealthCheck::new(Duration::from_millis(500), |handle| async move {
///     if handle.is_alive() { Ok(()) } else { Err("not alive".to_owned()) }
/// });
/// let worker = ProcessHandle::spawn::<Worker>(Worker).await.unwrap();
/// assert_eq!(alive.run(&worker).await, Health::Healthy);
///
/// let disk = HealthCheck::standalone(Duration::from_millis(500), || async {
///     Err("disk full".to_owned())
/// });
/// assert_eq!(disk.run_alone().await, Health::Unhealthy("disk full".into()));
///
/// worker.stop().await;
/// assert_eq!(alive.run(&worker).await, Health::NotRunning);
/// # }
/// ```
#[derive(Clone)]
pub struct HealthCheck {
    timeout: Duration,
    check: Check,
}

impl HealthCheck {
    /// A check of a process, run as `check(handle)`, given `timeout` to
    /// answer.
    pub fn new<F, Fut>(timeout: Duration, check: F) -> Self
    where
        F: Fn(ProcessHandle) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        HealthCheck {
            timeout,
            check: Check::Process(Arc::new(move |handle: ProcessHandle| {
                let answer = check(handle.clone());
                Box::pin(async move {
                    match answer.await {
                        Ok(()) => Health::Healthy,
                        Err(_) if !handle.is_alive() => Health::NotRunning,
                        Err(reason) => Health::Unhealthy(reason.into()),
                    }
                })
            })),
        }
    }

    /// A check that asks the actor, of type `A`, [`CheckHealth`], given
    /// `timeout` to answer. A process of another type is
    /// [`Health::Unhealthy`] ("process is not a ...").
    pub fn message<A>(timeout: Duration) -> Self
    where
        A: Actor + Message<CheckHealth, Reply = Result<(), String>>,
    {
        HealthCheck {
            timeout,
            check: Check::Process(Arc::new(move |handle: ProcessHandle| {
                Box::pin(async move {
                    let Some(actor) = handle.downcast::<A>() else {
                        return Health::Unhealthy(
                            format!("process is not a {}", <A as Actor>::name()).into(),
                        );
                    };
                    match actor.ask(CheckHealth).await {
                        Ok(()) => Health::Healthy,
                        Err(SendError::HandlerError(reason)) => Health::Unhealthy(reason.into()),
                        Err(SendError::ActorNotRunning(_) | SendError::ActorStopped) => {
                            Health::NotRunning
                        }
                        Err(SendError::Timeout(_)) => Health::TimedOut(timeout),
                        Err(other) => Health::Unhealthy(other.to_string().into()),
                    }
                })
            })),
        }
    }

    /// A check of something outside any process, run as `check()`, given
    /// `timeout` to answer. Run on a process, it runs the same way (once
    /// the process is found alive).
    pub fn standalone<F, Fut>(timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        HealthCheck {
            timeout,
            check: Check::Alone(Arc::new(move || {
                let answer = check();
                Box::pin(async move {
                    match answer.await {
                        Ok(()) => Health::Healthy,
                        Err(reason) => Health::Unhealthy(reason.into()),
                    }
                })
            })),
        }
    }

    /// How long the check may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The same check with another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the check needs a process ([`new`](Self::new),
    /// [`message`](Self::message)) or runs on its own
    /// ([`standalone`](Self::standalone)).
    pub fn needs_process(&self) -> bool {
        matches!(self.check, Check::Process(_))
    }

    /// Checks the process `handle`, within the timeout:
    /// [`Health::NotRunning`] at once if it is not alive, else the check's
    /// answer (see the [type docs](Self)). The timeout runs on the system
    /// clock; [`run_on`](Self::run_on) takes another.
    pub async fn run(&self, handle: &ProcessHandle) -> Health {
        self.run_on(handle, &Clock::system()).await
    }

    /// [`run`](Self::run), the timeout read on `clock`.
    pub async fn run_on(&self, handle: &ProcessHandle, clock: &Clock) -> Health {
        if !handle.is_alive() {
            return Health::NotRunning;
        }
        match &self.check {
            Check::Process(check) => self.bounded(check(handle.clone()), clock).await,
            Check::Alone(check) => self.bounded(check(), clock).await,
        }
    }

    /// Runs the check without a process, within the timeout (on the system
    /// clock). A check that needs one ([`needs_process`](Self::needs_process))
    /// is [`Health::Unhealthy`] ("this check needs a process").
    pub async fn run_alone(&self) -> Health {
        self.run_alone_on(&Clock::system()).await
    }

    /// [`run_alone`](Self::run_alone), the timeout read on `clock`.
    pub async fn run_alone_on(&self, clock: &Clock) -> Health {
        match &self.check {
            Check::Alone(check) => self.bounded(check(), clock).await,
            Check::Process(_) => Health::Unhealthy("this check needs a process".into()),
        }
    }

    async fn bounded(&self, check: BoxFuture<'static, Health>, clock: &Clock) -> Health {
        let answer = AssertUnwindSafe(check).catch_unwind();
        // The check first, as `tokio::time::timeout` polls it: a check ready
        // at once answers even with a zero timeout.
        match future::select(answer, clock.sleep(self.timeout)).await {
            Either::Right(((), _)) => Health::TimedOut(self.timeout),
            Either::Left((Ok(health), _)) => health,
            Either::Left((Err(panic), _)) => Health::Unhealthy(
                format!("health check panicked: {}", panic_message(&*panic)).into(),
            ),
        }
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("timeout", &self.timeout)
            .field("needs_process", &self.needs_process())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kameo::message::Context;

    #[derive(kameo::Actor)]
    struct Db {
        connected: bool,
    }

    impl Message<CheckHealth> for Db {
        type Reply = Result<(), String>;

        async fn handle(
            &mut self,
            _: CheckHealth,
            _: &mut Context<Self, Self::Reply>,
        ) -> Self::Reply {
            if self.connected {
                Ok(())
            } else {
                Err("no connection".into())
            }
        }
    }

    #[derive(kameo::Actor)]
    struct Other;

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test]
    async fn message_check_asks_the_actor() {
        let up = ProcessHandle::spawn::<Db>(Db { connected: true })
            .await
            .unwrap();
        let down = ProcessHandle::spawn::<Db>(Db { connected: false })
            .await
            .unwrap();
        let other = ProcessHandle::spawn::<Other>(Other).await.unwrap();
        let check = HealthCheck::message::<Db>(SECOND);
        assert!(check.needs_process());
        assert_eq!(check.run(&up).await, Health::Healthy);
        assert_eq!(
            check.run(&down).await,
            Health::Unhealthy("no connection".into())
        );
        assert!(matches!(check.run(&other).await, Health::Unhealthy(r) if r.contains("not a")));
        assert!(!check.run_alone().await.is_healthy());
        up.stop().await;
        assert_eq!(check.run(&up).await, Health::NotRunning);
        down.stop().await;
        other.stop().await;
    }

    /// A check that never answers times out, and a zero timeout at once.
    #[tokio::test(start_paused = true)]
    async fn check_that_hangs_times_out() {
        let hangs = HealthCheck::standalone(SECOND, std::future::pending);
        let began = tokio::time::Instant::now();
        assert_eq!(hangs.run_alone().await, Health::TimedOut(SECOND));
        assert_eq!(began.elapsed(), SECOND);
        let zero = hangs.with_timeout(Duration::ZERO);
        assert_eq!(zero.run_alone().await, Health::TimedOut(Duration::ZERO));
        assert!(!Health::TimedOut(SECOND).is_healthy());
    }

    /// A panicking check is unhealthy with the panic message; a standalone
    /// check runs on a live process too, but not on a dead one.
    #[tokio::test]
    async fn panics_and_standalone_checks_on_processes() {
        let panics = HealthCheck::standalone(SECOND, || async { panic!("check bug") });
        assert!(
            matches!(panics.run_alone().await, Health::Unhealthy(r) if r.contains("check bug"))
        );
        let fine = HealthCheck::standalone(SECOND, || async { Ok(()) });
        let db = ProcessHandle::spawn::<Db>(Db { connected: true })
            .await
            .unwrap();
        assert_eq!(fine.run(&db).await, Health::Healthy);
        db.stop().await;
        assert_eq!(fine.run(&db).await, Health::NotRunning);
        assert_eq!(Health::NotRunning.label(), "not_running");
        assert_eq!(Health::Unhealthy("x".into()).to_string(), "unhealthy: x");
    }
}
