//! A status feed that outlives the agent layer's restarts: when the
//! directory's subscription closes (the `agent_registry` or
//! `agent_supervisor` restarted), it subscribes again to the new feed;
//! when it lagged or was replaced, it tells its reader to re-read the
//! statuses it cares about, since changes were lost.

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::{AgentDirectory, AgentStatusChange, AgentStatusChanges, Clock};
use tokio::sync::broadcast::error::RecvError;

/// The first wait before subscribing again to a closed feed; doubled up to
/// [`MAX_RETRY`] while the new feed keeps closing at once (the agent layer
/// is still down), reset by the first change received.
const FIRST_RETRY: Duration = Duration::from_millis(10);
const MAX_RETRY: Duration = Duration::from_secs(1);

/// What a [`StatusFeed`] yields.
#[derive(Debug)]
pub(crate) enum FeedEvent {
    /// One change, in order.
    Change(AgentStatusChange),
    /// Changes may have been lost (lag, or a new feed after a restart):
    /// re-read every status that matters.
    Resync,
}

/// The directory's status changes, across lags and restarts.
pub(crate) struct StatusFeed {
    directory: Arc<dyn AgentDirectory>,
    clock: Clock,
    changes: AgentStatusChanges,
    retry: Duration,
}

impl StatusFeed {
    /// Subscribes now (before the caller reads any status, so nothing
    /// between the read and the subscription is lost).
    pub(crate) fn new(directory: Arc<dyn AgentDirectory>, clock: Clock) -> Self {
        let changes = directory.subscribe();
        StatusFeed {
            directory,
            clock,
            changes,
            retry: FIRST_RETRY,
        }
    }

    /// The next change, or [`FeedEvent::Resync`]. Never ends: a closed
    /// feed is replaced by a new subscription (after a short wait, so a
    /// directory that is down is not spun on).
    pub(crate) async fn next(&mut self) -> FeedEvent {
        match self.changes.recv().await {
            Ok(change) => {
                self.retry = FIRST_RETRY;
                FeedEvent::Change(change)
            }
            Err(RecvError::Lagged(_)) => FeedEvent::Resync,
            Err(RecvError::Closed) => {
                self.clock.sleep(self.retry).await;
                self.retry = (self.retry * 2).min(MAX_RETRY);
                self.changes = self.directory.subscribe();
                FeedEvent::Resync
            }
        }
    }
}
