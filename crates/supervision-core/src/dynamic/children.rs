//! The children a dynamic supervisor keeps, in one table its actor and its
//! handles share, and `terminate_child` run in the caller's task.
//!
//! A `terminate_child` that finds the child in the table marks it
//! terminating under the table's lock, stops it by its
//! [`Shutdown`](crate::Shutdown) from the caller's own task and waits for
//! its exit there, then takes its record out: no message to the supervisor
//! and no wake of it (an ask per child, and the exit notice the supervisor
//! then ignored, were a third of a stop). The mark is what keeps OTP's
//! semantics: the supervisor does not restart a child marked terminating
//! (its exit is the terminating caller's), a second `terminate_child` of it
//! waits for that exit and answers `NotFound`, and the supervisor's own
//! stop waits for it as for any child. A child not in the table (queued by
//! `start_reporting_child`, or waiting for its restart) is the supervisor's
//! to find: those calls go to its mailbox as before.

use std::collections::HashMap;

use kameo::actor::ActorId;

use super::{actor::Shared, id_hash::ById};
use crate::{ChildSpec, ProcessHandle, Shutdown, backoff::BackoffState};

/// The table of running children, by actor id. Boxed: the map's buckets
/// stay small (a child's entry weighs about 190 bytes, and a map of a
/// million children has twice as many buckets as children after it grows).
pub(super) type Table = HashMap<ActorId, Box<Child>, ById>;

/// A child's start order (the order `which_children` lists), whether it
/// reports its own exit (and so does each restart of it), and whether a
/// caller is terminating it, in one word: a child's record then fits in
/// 192 bytes, an allocator size class below the next (224).
#[derive(Debug, Clone, Copy)]
pub(super) struct Order(u64);

impl Order {
    const REPORTS: u64 = 1 << 63;
    const TERMINATING: u64 = 1 << 62;

    pub(super) fn new(seq: u64, reports: bool) -> Self {
        Order(if reports { seq | Self::REPORTS } else { seq })
    }

    /// The start order.
    pub(super) fn seq(self) -> u64 {
        self.0 & !(Self::REPORTS | Self::TERMINATING)
    }

    /// Whether the child reports its own exit.
    pub(super) fn reports(self) -> bool {
        self.0 & Self::REPORTS != 0
    }

    /// Whether a `terminate_child` is stopping the child.
    pub(super) fn is_terminating(self) -> bool {
        self.0 & Self::TERMINATING != 0
    }

    fn terminating(self) -> Self {
        Order(self.0 | Self::TERMINATING)
    }
}

/// A running child and what the supervisor keeps of it.
pub(super) struct Child {
    pub(super) order: Order,
    pub(super) handle: ProcessHandle,
    /// A temporary child's spec has no start factory left (see
    /// [`ChildSpec::without_start`]): it is never restarted.
    pub(super) spec: ChildSpec,
    /// Only for a child with a backoff policy (boxed: most have none).
    pub(super) backoff: Option<Box<BackoffState>>,
}

/// What a `terminate_child` found of its child in the table.
pub(super) enum Claim {
    /// Marked terminating by this call: stop it by this shutdown.
    Stop(Shutdown),
    /// Another call is terminating it.
    Taken,
    /// Not in the table (or the supervisor is closing): the supervisor's
    /// to answer.
    Absent,
}

impl Shared {
    /// Marks the child `id` terminating, if it is in the table and no one
    /// else terminates it.
    pub(super) fn claim(&self, id: ActorId) -> Claim {
        let mut children = self.children.lock();
        if self.is_closing() {
            // The supervisor stops every child: its answer says so.
            return Claim::Absent;
        }
        match children.get_mut(&id) {
            Some(child) if child.order.is_terminating() => Claim::Taken,
            Some(child) => {
                child.order = child.order.terminating();
                Claim::Stop(child.spec.shutdown)
            }
            None => Claim::Absent,
        }
    }

    /// Stops `child`, claimed by this caller, by `shutdown` and waits for
    /// its exit, then takes its record out, reports it and gives its place
    /// back. If this future is dropped midway, the child is killed (the
    /// stop's own guard) and its record taken out all the same: a child
    /// marked terminating is never restarted.
    pub(super) async fn terminate_claimed(&self, child: &ProcessHandle, shutdown: Shutdown) {
        let mut release = Release {
            shared: self,
            id: child.id(),
            armed: true,
        };
        let exit = shutdown.stop_on(child, &self.deadlines).await;
        release.armed = false;
        // The supervisor's own stop may have taken it out meanwhile (and
        // reported it, and given its place back).
        let record = self.children.lock().remove(&child.id());
        if let Some(record) = record {
            self.reporter
                .terminated(&record.spec, &record.handle, &exit);
            self.places.release();
        }
    }
}

/// Takes a claimed child's record out if its `terminate_child` is dropped
/// before the child's exit (the child is being killed).
struct Release<'a> {
    shared: &'a Shared,
    id: ActorId,
    armed: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if self.armed && self.shared.children.lock().remove(&self.id).is_some() {
            self.shared.places.release();
        }
    }
}
