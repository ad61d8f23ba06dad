//! How a supervisor learns that a child exited. A static supervisor runs
//! one small watcher task per child; a dynamic supervisor, whose children
//! come by the hundred thousand, one watcher task for all its children
//! ([`Watchers`]). Either awaits each child's
//! [`exit_watch`](ProcessHandle::exit_watch) (the child's own task, taken
//! over from its handle: a 16-byte box) and tells the supervisor.
//!
//! kameo's links do the same job, but linking costs two async locks and a
//! map insert on both sides per child, which measured at about a third of a
//! dynamic child's start time, and kameo tells linked actors before the
//! child's `on_stop` has run (a restart would overlap it).

use std::fmt;

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use kameo::{
    actor::{Actor, ActorId, ActorRef, WeakActorRef},
    message::Message,
};
use tokio::{sync::mpsc, task::AbortHandle};

use crate::{ExitReason, ProcessHandle};

/// A child exited by itself (or was stopped by someone other than its
/// supervisor). Stale notices, for children the supervisor no longer holds,
/// are ignored by the supervisors.
#[derive(Debug)]
pub(crate) struct ChildDown {
    pub(crate) id: ActorId,
    pub(crate) exit: ExitReason,
}

/// Watches `child` on behalf of `supervisor` in a task of its own; abort
/// the returned handle to stop watching.
pub(crate) fn watch<S>(child: &ProcessHandle, supervisor: &ActorRef<S>) -> AbortHandle
where
    S: Actor + Message<ChildDown>,
{
    let exit = child.exit_watch();
    let supervisor = supervisor.downgrade();
    tokio::spawn(async move {
        let (id, exit) = exit.await;
        tell(&supervisor, id, exit);
    })
    .abort_handle()
}

/// Tells `supervisor`, if it still runs, that its child `id` exited.
/// Never waits: supervisors' mailboxes are unbounded.
fn tell<S>(supervisor: &WeakActorRef<S>, id: ActorId, exit: ExitReason)
where
    S: Actor + Message<ChildDown>,
{
    if let Some(supervisor) = supervisor.upgrade() {
        // A supervisor that has stopped has nothing left to restart.
        let _ = supervisor.tell(ChildDown { id, exit }).try_send();
    }
}

/// One child's exit, named by its id
/// ([`exit_watch`](ProcessHandle::exit_watch)).
type Watched = BoxFuture<'static, (ActorId, ExitReason)>;

/// One task watching every child of a supervisor: each child costs an
/// entry in a [`FuturesUnordered`] (about a hundred bytes), not a task of
/// its own (about 650). The task runs until the supervisor drops this
/// handle, then stops watching: the children's tasks go back to their
/// handles, whose waiters take over.
///
/// There is no unwatching one child; the supervisor's `wanted` filter
/// says, as each child exits, whether it is told (a child it no longer
/// holds, or one stopped on its behalf, costs it no wake), and it ignores
/// the notice of a child it no longer holds.
pub(crate) struct Watchers {
    add: mpsc::UnboundedSender<Watched>,
}

impl Watchers {
    /// Starts the watcher task of `supervisor` (held weakly), which tells
    /// it of each exit whose child's id `wanted` accepts.
    pub(crate) fn start<S>(
        supervisor: &ActorRef<S>,
        wanted: impl Fn(ActorId) -> bool + Send + 'static,
    ) -> Self
    where
        S: Actor + Message<ChildDown>,
    {
        let (add, mut added) = mpsc::unbounded_channel::<Watched>();
        let supervisor = supervisor.downgrade();
        tokio::spawn(async move {
            let mut watched = FuturesUnordered::new();
            loop {
                tokio::select! {
                    biased;
                    new = added.recv() => match new {
                        Some(new) => watched.push(new),
                        None => break,
                    },
                    Some((id, exit)) = watched.next(), if !watched.is_empty() => {
                        if wanted(id) {
                            tell(&supervisor, id, exit);
                        }
                    }
                }
            }
        });
        Watchers { add }
    }

    /// Watches `child` until it exits or the watchers are dropped.
    pub(crate) fn watch(&self, child: &ProcessHandle) {
        // The task ends only once this sender is dropped.
        let _ = self.add.send(child.exit_watch());
    }
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers").finish_non_exhaustive()
    }
}
