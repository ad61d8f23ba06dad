//! The table of one namespace: its unique names, its groups and its
//! listeners.

use std::sync::Arc;

use dashmap::DashMap;
use supervision_core::{Metadata, ProcessHandle};

use crate::listeners::Listeners;

/// The hasher of every map of this crate: foldhash, seeded per map. Names
/// are short strings and SipHash would cost more than the rest of a lookup.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// A concurrent map with this crate's hasher.
pub(crate) type Map<K, V> = DashMap<K, V, Hasher>;

/// A registered name as the map keeps it: inline up to 24 bytes, so a
/// lookup compares the name without following a pointer.
pub(crate) type Name = compact_str::CompactString;

/// A new map with `shards` shards (a power of two).
pub(crate) fn map<K: Eq + std::hash::Hash, V>(shards: usize) -> Map<K, V> {
    DashMap::with_hasher_and_shard_amount(Hasher::default(), shards)
}

/// A registered name's holder and metadata.
#[derive(Debug)]
pub(crate) struct NameEntry {
    pub(crate) handle: ProcessHandle,
    pub(crate) metadata: Metadata,
}

/// One namespace.
#[derive(Debug)]
pub(crate) struct NsTable {
    /// Unique names.
    pub(crate) names: Map<Name, NameEntry>,
    /// Groups: members in join order, a member once per join. A group with
    /// no member is not kept.
    pub(crate) groups: Map<Arc<str>, Vec<ProcessHandle>>,
    /// Subscribers to this namespace's changes.
    pub(crate) listeners: Listeners,
}

impl NsTable {
    pub(crate) fn new(shards: usize) -> Self {
        NsTable {
            names: map(shards),
            groups: map(shards),
            listeners: Listeners::default(),
        }
    }
}
