//! The watcher: one task per run that waits for the application's
//! supervisor to exit and, if nobody asked it to (it gave up), marks the
//! application failed and reports `application.stopped`.

use std::sync::Arc;

use tokio::task::AbortHandle;

use super::{handle::Inner, phase::Phase};
use crate::Supervisor;

/// Waits for the supervisor of run `generation` to exit; if the
/// application is still running that run, it has failed. Holds the
/// application weakly (dropping its last handle stops it) and is aborted by
/// a stop.
pub(super) fn watch(inner: &Arc<Inner>, supervisor: &Supervisor, generation: u64) -> AbortHandle {
    let weak = Arc::downgrade(inner);
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        let reason = supervisor.exited().await;
        drop(supervisor);
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let failed = {
            let mut state = inner.state.lock();
            let current =
                state.generation == generation && matches!(state.phase, Phase::Running { .. });
            if current {
                state.phase = Phase::Failed;
                state.watcher = None;
            }
            current
        };
        if failed {
            inner.stopped(&reason);
        }
    })
    .abort_handle()
}
