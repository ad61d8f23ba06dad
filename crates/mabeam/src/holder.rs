//! [`Holder`]: the process of a service that is a shared value (the
//! process registry, the service registry): it keeps the value alive in the
//! tree and answers a health check against it.

use std::{any::Any, convert::Infallible, fmt, sync::Arc};

use kameo::{
    actor::{Actor, ActorRef},
    message::{Context, Message},
};

/// Holds a shared value for as long as it runs.
pub(crate) struct Holder {
    value: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Holder").finish_non_exhaustive()
    }
}

impl Actor for Holder {
    type Args = Arc<dyn Any + Send + Sync>;
    type Error = Infallible;

    async fn on_start(value: Self::Args, _: ActorRef<Self>) -> Result<Self, Infallible> {
        Ok(Holder { value })
    }
}

/// Asks a holder whether it still holds its value (its health check:
/// the process answers).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Get;

impl Message<Get> for Holder {
    type Reply = bool;

    async fn handle(&mut self, _: Get, _: &mut Context<Self, Self::Reply>) -> bool {
        Arc::strong_count(&self.value) > 0
    }
}
