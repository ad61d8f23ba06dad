//! Linking a started child to its supervisor actor, shared by both
//! supervisors: kameo sends no exit notice for a child that died before the
//! link was made, so that case is reported by a [`ChildDown`] message.

use kameo::{
    actor::{ActorId, ActorRef},
    message::Message,
};

use crate::{ExitReason, ProcessHandle, handle::LinkTarget};

/// A child exited before it could be linked: its id and exit reason. A
/// supervisor handles it as it handles a link-died notice (and ignores the
/// duplicate, since the first one removes the child).
pub(crate) struct ChildDown(pub(crate) ActorId, pub(crate) ExitReason);

/// Links a started child with its supervisor, so the child's exit reaches the
/// supervisor's `on_link_died`; if the child already died, reports its exit
/// with a [`ChildDown`] message instead.
pub(crate) async fn link_child<S>(handle: &ProcessHandle, supervisor: &ActorRef<S>)
where
    S: LinkTarget + Message<ChildDown>,
{
    handle.link_with(supervisor).await;
    if !handle.is_alive() {
        // It may have died before the link was made, which sends no notice:
        // report its exit ourselves (a duplicate is ignored).
        let child = handle.clone();
        let supervisor = supervisor.downgrade();
        tokio::spawn(async move {
            let exit = child.exited().await;
            if let Some(supervisor) = supervisor.upgrade() {
                let _ = supervisor.tell(ChildDown(child.id(), exit)).await;
            }
        });
    }
}
