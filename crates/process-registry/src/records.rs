//! The per-process index: which names and group memberships each
//! registered process holds, its [`Stopper`], and the one task per process
//! that cleans up after it when it stops.

use std::sync::Arc;

use kameo::actor::ActorId;
use supervision_core::Namespace;
use tokio::task::AbortHandle;

use crate::{
    Stopper,
    table::{Map, map},
};

/// Whether a held key is a unique name or a group membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Name,
    Group,
}

/// One name, or one membership of a group, that a process holds.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) ns: Namespace,
    pub(crate) kind: Kind,
    /// The same `Arc` as the table's key.
    pub(crate) key: Arc<str>,
}

impl Held {
    fn is(&self, ns: &Namespace, kind: Kind, key: &str) -> bool {
        self.kind == kind && self.ns == *ns && *self.key == *key
    }
}

/// What the registry knows about one process that holds something.
#[derive(Debug)]
pub(crate) struct ProcRecord {
    /// Every name and membership it holds (a membership once per join).
    pub(crate) held: Vec<Held>,
    pub(crate) stopper: Option<Stopper>,
    /// The task awaiting its exit; aborted when the record goes away
    /// before the process stops.
    watcher: Option<AbortHandle>,
}

impl Drop for ProcRecord {
    fn drop(&mut self) {
        if let Some(watcher) = self.watcher.take() {
            watcher.abort();
        }
    }
}

/// The records of every process holding something, in any namespace.
///
/// Lock order: a table's shard, then this map's shard, never the other
/// way round ([`take`](Records::take) holds nothing else).
#[derive(Debug)]
pub(crate) struct Records {
    map: Map<ActorId, ProcRecord>,
}

impl Records {
    pub(crate) fn new(shards: usize) -> Self {
        Records { map: map(shards) }
    }

    /// Records that `id` holds `held`, replacing its stopper if one is
    /// given. A new record gets the watcher `spawn` starts.
    pub(crate) fn hold(
        &self,
        id: ActorId,
        held: Held,
        stopper: Option<&Stopper>,
        spawn: impl FnOnce() -> Option<AbortHandle>,
    ) {
        let mut record = self.map.entry(id).or_insert_with(|| ProcRecord {
            held: Vec::new(),
            stopper: None,
            watcher: spawn(),
        });
        record.held.push(held);
        if let Some(stopper) = stopper {
            record.stopper = Some(stopper.clone());
        }
    }

    /// Records that `id` no longer holds one `kind` `key` in `ns`; a record
    /// left empty is dropped and its watcher aborted.
    pub(crate) fn release(&self, id: ActorId, ns: &Namespace, kind: Kind, key: &str) {
        // The record is dropped (its watcher aborted) after the lock.
        let _removed = self.map.remove_if_mut(&id, |_, record| {
            // The most recent one: for a group that is the latest join.
            if let Some(at) = record.held.iter().rposition(|h| h.is(ns, kind, key)) {
                record.held.swap_remove(at);
            }
            record.held.is_empty()
        });
    }

    /// Removes the record of a process that stopped; its watcher is the
    /// caller and is not aborted.
    pub(crate) fn take(&self, id: ActorId) -> Option<ProcRecord> {
        let (_, mut record) = self.map.remove(&id)?;
        record.watcher = None;
        Some(record)
    }

    /// Replaces the stopper of `id`, if it holds anything.
    pub(crate) fn set_stopper(&self, id: ActorId, stopper: &Stopper) {
        if let Some(mut record) = self.map.get_mut(&id) {
            record.stopper = Some(stopper.clone());
        }
    }

    /// The stopper of `id`.
    pub(crate) fn stopper(&self, id: ActorId) -> Option<Stopper> {
        self.map.get(&id).and_then(|r| r.stopper.clone())
    }

    /// How many processes hold something.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Aborts every watcher (the registry is going away).
    pub(crate) fn clear(&self) {
        self.map.clear();
    }
}
