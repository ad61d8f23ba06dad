//! [`Attachment`]: the process behind a handler in a supervision tree. It
//! attaches a handler to a [`Telemetry`] handle when it starts, detaches it
//! when it stops, and runs an optional periodic task (pruning) meanwhile.

use std::{convert::Infallible, sync::Arc, time::Duration};

use kameo::{
    actor::{Actor, ActorRef, WeakActorRef},
    error::ActorStopReason,
};
use mabeam_supervision_core::{Clock, Telemetry, TelemetryEvent};
use tokio::task::AbortHandle;

pub(crate) type EventHandler = dyn Fn(&TelemetryEvent<'_>) + Send + Sync;

/// A periodic task: every `every`, call `run`.
#[derive(Clone)]
pub(crate) struct Tick {
    pub(crate) every: Duration,
    pub(crate) clock: Clock,
    pub(crate) run: Arc<dyn Fn() + Send + Sync>,
}

/// What an [`Attachment`] attaches.
#[derive(Clone)]
pub(crate) struct AttachArgs {
    pub(crate) telemetry: Telemetry,
    pub(crate) id: String,
    pub(crate) prefix: Vec<String>,
    pub(crate) handler: Arc<EventHandler>,
    pub(crate) tick: Option<Tick>,
}

/// The process: holds the attachment for as long as it runs.
pub(crate) struct Attachment {
    telemetry: Telemetry,
    id: String,
    tick: Option<AbortHandle>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment").field("id", &self.id).finish()
    }
}

impl Actor for Attachment {
    type Args = AttachArgs;
    type Error = Infallible;

    async fn on_start(args: AttachArgs, _: ActorRef<Self>) -> Result<Self, Infallible> {
        // A previous incarnation that was killed never ran on_stop.
        args.telemetry.detach(&args.id);
        let handler = args.handler.clone();
        let prefix: Vec<&str> = args.prefix.iter().map(String::as_str).collect();
        // A disabled handle has nothing to attach to: the process runs and
        // sees nothing, as everything else on that handle.
        let _ = args
            .telemetry
            .attach(args.id.clone(), &prefix, move |event| handler(event));
        let tick = args.tick.map(|tick| {
            tokio::spawn(async move {
                loop {
                    tick.clock.sleep(tick.every).await;
                    (tick.run)();
                }
            })
            .abort_handle()
        });
        Ok(Attachment {
            telemetry: args.telemetry,
            id: args.id,
            tick,
        })
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), Infallible> {
        self.telemetry.detach(&self.id);
        if let Some(tick) = self.tick.take() {
            tick.abort();
        }
        Ok(())
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Some(tick) = self.tick.take() {
            tick.abort();
        }
    }
}
