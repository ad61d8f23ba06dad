//! [`ExitNotice`]: how a child that reports its own exit tells its dynamic
//! supervisor, in place of the supervisor's watch of it.

use std::{fmt, sync::Arc};

use kameo::actor::{ActorId, WeakActorRef};

use super::actor::DynamicSupervisorActor;
use crate::{ExitReason, watch::ChildDown};

/// How a child started with
/// [`DynamicSupervisor::start_reporting_child`](super::DynamicSupervisor::start_reporting_child)
/// tells its supervisor that it has exited. The supervisor does not watch
/// such a child (a watch weighs about a hundred bytes per child, in the
/// supervisor's one watcher task; a notice, a pointer), so the child must
/// report every exit, however it ends: from its `on_stop`, which kameo runs after a panic and a kill too.
///
/// One notice serves every child of the supervisor (the report names the
/// child). Cheap to clone; holds the supervisor weakly.
#[derive(Clone)]
pub struct ExitNotice {
    pub(super) supervisor: Arc<WeakActorRef<DynamicSupervisorActor>>,
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
        if let Some(supervisor) = self.supervisor.upgrade() {
            let _ = supervisor.tell(ChildDown { id: child, exit }).try_send();
        }
    }
}

impl fmt::Debug for ExitNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExitNotice")
            .field("supervisor", &self.supervisor.id())
            .finish()
    }
}
