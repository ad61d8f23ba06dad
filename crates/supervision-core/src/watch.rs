//! How a supervisor learns that a child exited: one small watcher task per
//! child awaits [`ProcessHandle::exited`] and tells the supervisor.
//!
//! kameo's links do the same job, but linking costs two async locks and a
//! map insert on both sides per child, which measured at about a third of a
//! dynamic child's start time; a watcher costs one spawned task and can be
//! aborted when the supervisor stops the child itself.

use kameo::{
    actor::{Actor, ActorId, ActorRef},
    message::Message,
};
use tokio::task::AbortHandle;

use crate::{ExitReason, ProcessHandle};

/// A child exited by itself (or was stopped by someone other than its
/// supervisor). Stale notices, for children the supervisor no longer holds,
/// are ignored by the supervisors.
#[derive(Debug)]
pub(crate) struct ChildDown {
    pub(crate) id: ActorId,
    pub(crate) exit: ExitReason,
}

/// Watches `child` on behalf of `supervisor`; abort the returned handle when
/// the supervisor stops the child itself.
pub(crate) fn watch<S>(child: &ProcessHandle, supervisor: &ActorRef<S>) -> AbortHandle
where
    S: Actor + Message<ChildDown>,
{
    let child = child.clone();
    let supervisor = supervisor.downgrade();
    tokio::spawn(async move {
        let exit = child.exited().await;
        // Boxed: the watcher waits for a long time and should weigh little
        // meanwhile; the send's state is only needed once.
        Box::pin(async move {
            if let Some(supervisor) = supervisor.upgrade() {
                // A supervisor that has stopped has nothing left to restart.
                let _ = supervisor
                    .tell(ChildDown {
                        id: child.id(),
                        exit,
                    })
                    .await;
            }
        })
        .await
    })
    .abort_handle()
}
