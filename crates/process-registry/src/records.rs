//! The per-process index: the keys (names and group memberships) each
//! registered process has, its [`Stopper`], and the one watcher task per
//! process that cleans up after it when it stops.

use std::sync::Arc;

use kameo::actor::ActorId;
use mabeam_supervision_core::{Namespace, Stopper};
use tokio::task::AbortHandle;

use crate::table::{Map, Name, map};

/// Whether a key is a unique name or a group membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Name,
    Group,
}

/// One name, or one membership of a group, that a process has.
#[derive(Debug)]
pub(crate) struct Key {
    pub(crate) ns: Namespace,
    pub(crate) kind: Kind,
    /// The name or group, inline up to 24 bytes (no allocation of its
    /// own for a typical name).
    pub(crate) key: Name,
}

impl Key {
    fn is(&self, ns: &Namespace, kind: Kind, key: &str) -> bool {
        self.kind == kind && self.ns == *ns && self.key == key
    }
}

/// What the registry knows about one process that has a key.
#[derive(Debug)]
pub(crate) struct ProcRecord {
    /// Every name and membership it has (a membership once per join).
    pub(crate) keys: Vec<Key>,
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

/// The records of every process that has a key, in any namespace.
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

    /// Records that `id` has `key`, replacing its stopper if one is
    /// given. A record without a watcher gets the one `spawn` starts.
    pub(crate) fn add(
        &self,
        id: ActorId,
        key: Key,
        stopper: Option<&Stopper>,
        spawn: impl FnOnce() -> Option<AbortHandle>,
    ) {
        let mut record = self.map.entry(id).or_insert_with(|| ProcRecord {
            // Most processes hold one key: room for exactly one.
            keys: Vec::with_capacity(1),
            stopper: None,
            watcher: None,
        });
        if record.watcher.is_none() {
            record.watcher = spawn();
        }
        record.keys.push(key);
        if let Some(stopper) = stopper {
            record.stopper = Some(stopper.clone());
        }
    }

    /// Whether `id` has the `kind` `key` in `ns`.
    pub(crate) fn has(&self, id: ActorId, ns: &Namespace, kind: Kind, key: &str) -> bool {
        self.map
            .get(&id)
            .is_some_and(|record| record.keys.iter().any(|k| k.is(ns, kind, key)))
    }

    /// Records that `id` no longer has one `kind` `key` in `ns`; a record
    /// left empty is dropped and its watcher aborted.
    pub(crate) fn remove(&self, id: ActorId, ns: &Namespace, kind: Kind, key: &str) {
        // The record is dropped (its watcher aborted) after the lock.
        let _removed = self.map.remove_if_mut(&id, |_, record| {
            // The most recent one: for a group that is the latest join.
            if let Some(at) = record.keys.iter().rposition(|k| k.is(ns, kind, key)) {
                record.keys.swap_remove(at);
            }
            record.keys.is_empty()
        });
    }

    /// The distinct `kind` keys `id` has in `ns`, sorted.
    pub(crate) fn keys(&self, id: ActorId, ns: &Namespace, kind: Kind) -> Vec<Arc<str>> {
        let mut keys: Vec<Arc<str>> = self.map.get(&id).map_or_else(Vec::new, |record| {
            record
                .keys
                .iter()
                .filter(|k| k.kind == kind && k.ns == *ns)
                .map(|k| Arc::from(k.key.as_str()))
                .collect()
        });
        keys.sort_unstable();
        keys.dedup();
        keys
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

    /// How many processes have a key.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Aborts every watcher (the registry is going away).
    pub(crate) fn clear(&self) {
        self.map.clear();
    }
}
