//! [`RestartTimer`]: the one way both supervisors wait out a backoff. A
//! timer task sleeps, then tells its supervisor a message; the supervisor
//! keeps the timer with the children waiting on it and cancels it when they
//! leave the wait (terminated, or the supervisor stops), so no sleeping task
//! outlives what it was for.

use std::time::Duration;

use futures::future::BoxFuture;
use kameo::{
    actor::{Actor, ActorRef},
    message::Message,
};
use tokio::task::JoinHandle;

/// A pending backoff: cancelled when dropped, or awaited to its end with
/// [`cancel`](Self::cancel).
#[derive(Debug)]
pub(crate) struct RestartTimer(JoinHandle<()>);

impl RestartTimer {
    /// Tells `supervisor` the message `fire` once `delay` is over. The task
    /// holds the supervisor weakly: it keeps nothing alive.
    pub(crate) fn start<S, M>(supervisor: &ActorRef<S>, delay: Duration, fire: M) -> Self
    where
        S: Actor + Message<M>,
        M: Send + 'static,
    {
        RestartTimer::after(supervisor, Box::pin(tokio::time::sleep(delay)), fire)
    }

    /// Tells `supervisor` the message `fire` once `wait` completes (a
    /// [`Clock`](crate::Clock)'s sleep). Holds the supervisor weakly.
    pub(crate) fn after<S, M>(
        supervisor: &ActorRef<S>,
        wait: BoxFuture<'static, ()>,
        fire: M,
    ) -> Self
    where
        S: Actor + Message<M>,
        M: Send + 'static,
    {
        let supervisor = supervisor.downgrade();
        RestartTimer(tokio::spawn(async move {
            wait.await;
            if let Some(supervisor) = supervisor.upgrade() {
                let _ = supervisor.tell(fire).await;
            }
        }))
    }

    /// Cancels the timer and returns once its task is gone.
    pub(crate) async fn cancel(mut self) {
        self.0.abort();
        let _ = (&mut self.0).await;
    }
}

impl Drop for RestartTimer {
    fn drop(&mut self) {
        self.0.abort();
    }
}
