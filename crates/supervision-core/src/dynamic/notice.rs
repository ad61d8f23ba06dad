//! [`ExitNotice`]: how a child that reports its own exit tells its dynamic
//! supervisor, in place of the supervisor's watch of it.

use std::{fmt, sync::Arc};

use kameo::actor::{ActorId, WeakActorRef};

use super::{
    actor::{DynamicSupervisorActor, Shared},
    messages::CollectEnded,
};
use crate::{ExitReason, WeakProcessHandle, watch::ChildDown};

/// How many exits [`ExitNotice::ended`] queues before it wakes the
/// supervisor to collect them: the records of children that ended wait at
/// most this many deep, and the supervisor wakes once per this many exits
/// instead of once per exit.
pub(super) const ENDED_BATCH: usize = 256;

/// How a child started with
/// [`DynamicSupervisor::start_reporting_child`](super::DynamicSupervisor::start_reporting_child)
/// tells its supervisor that it has exited. The supervisor does not watch
/// such a child (a watch weighs about a hundred bytes per child, in the
/// supervisor's one watcher task; a notice, a pointer), so the child must
/// report every exit, however it ends: from its `on_stop`, which kameo runs
/// after a panic and a kill too.
///
/// One notice serves every child of the supervisor (the report names the
/// child). Cheap to clone; holds the supervisor weakly.
#[derive(Clone)]
pub struct ExitNotice {
    pub(super) inner: Arc<NoticeInner>,
}

pub(super) struct NoticeInner {
    pub(super) supervisor: WeakActorRef<DynamicSupervisorActor>,
    pub(super) shared: Arc<Shared>,
    /// The supervisor's process, weakly: its kill shows at once (before
    /// its task is gone), so `is_closing` is true for the children it
    /// kills as it goes.
    pub(super) process: WeakProcessHandle,
}

impl ExitNotice {
    /// Tells the supervisor that its child `child` exited with `exit`.
    /// Report once the child will do nothing more that a new incarnation
    /// could collide with (the end of its `on_stop`): a child whose restart
    /// type says so is restarted at once. Never waits (the supervisor's
    /// mailbox is unbounded). A report of a child the supervisor no longer
    /// holds (one it stopped itself) is ignored, and a supervisor that has
    /// stopped is not told.
    pub fn exited(&self, child: ActorId, exit: ExitReason) {
        if let Some(supervisor) = self.inner.supervisor.upgrade() {
            let _ = supervisor.tell(ChildDown { id: child, exit }).try_send();
        }
    }

    /// [`exited`](Self::exited), for an exit after which the child is not
    /// restarted (every exit of a temporary child): the supervisor is not
    /// woken for it. The exit is queued; the supervisor collects the queue
    /// before it handles its next message (so `count_children`,
    /// `which_children`, `terminate_child` and its own stop see every exit
    /// reported before them), and when the queue grows past a bound. A
    /// `start_child` refused by `max_children` while exits wait has the
    /// supervisor collect them, and tries again.
    ///
    /// Thousands of children stopping then wake their supervisor a few
    /// times, not thousands. A supervisor that reports to telemetry is
    /// told at once, as by `exited` (its `child_exited` event names the
    /// child's spec, which the supervisor holds). Should the child be
    /// restarted after all (its restart type says so), it is restarted
    /// when the supervisor collects the exit.
    pub fn ended(&self, child: ActorId, exit: ExitReason) {
        let shared = &self.inner.shared;
        if shared.reporter.telemetry.is_enabled() {
            return self.exited(child, exit);
        }
        if shared.is_closing() {
            return; // the supervisor stops every child it holds itself
        }
        let queued = {
            let mut ended = shared.ended.lock();
            ended.push((child, exit));
            ended.len()
        };
        if queued % ENDED_BATCH == 0
            && let Some(supervisor) = self.inner.supervisor.upgrade()
        {
            let _ = supervisor.tell(CollectEnded).try_send();
        }
    }

    /// Whether the supervisor this notice reports to is stopping, giving
    /// up, or gone: a child that exits now was most likely taken down with
    /// it, not ended by itself (a child reads it in its `on_stop` to tell
    /// the two apart).
    pub fn is_closing(&self) -> bool {
        self.inner.shared.is_closing()
            || !self.inner.process.is_alive()
            || !self
                .inner
                .supervisor
                .upgrade()
                .is_some_and(|supervisor| supervisor.is_alive())
    }
}

impl fmt::Debug for ExitNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitNotice")
            .field("supervisor", &self.inner.supervisor.id())
            .finish()
    }
}
