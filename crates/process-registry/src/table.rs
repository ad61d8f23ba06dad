//! The table of one namespace: its unique names, its groups and its
//! subscribers.

use std::sync::{Arc, atomic::AtomicBool};

use dashmap::DashMap;
use parking_lot::{RwLock, RwLockReadGuard};
use supervision_core::{Metadata, WeakProcessHandle};

use crate::subscribers::Subscribers;

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

/// A registered name's holder (held weakly: a registration never keeps a
/// process alive) and metadata.
#[derive(Debug)]
pub(crate) struct NameEntry {
    pub(crate) handle: WeakProcessHandle,
    pub(crate) metadata: Meta,
}

// A name's key and entry fill one 64-byte bucket (see `Meta`).
const _: () = assert!(size_of::<(Name, NameEntry)>() == 64);

/// A name's metadata: nothing for `null` (the common case costs no
/// allocation), else an `Arc`, shared by many names for owned
/// registrations (one per kind of process). One word, so that a name's
/// entry and its key fill one 64-byte bucket of the map, and a lookup
/// reads one cache line of it.
#[derive(Debug, Clone)]
pub(crate) struct Meta(Option<Arc<Metadata>>);

/// What a name without metadata shows.
const NULL: &Metadata = &Metadata::Null;

impl Meta {
    /// The name's own metadata.
    pub(crate) fn own(metadata: Metadata) -> Self {
        match metadata {
            Metadata::Null => Meta(None),
            metadata => Meta(Some(Arc::new(metadata))),
        }
    }

    /// Metadata shared with other names.
    pub(crate) fn shared(metadata: Arc<Metadata>) -> Self {
        Meta(Some(metadata).filter(|metadata| !metadata.is_null()))
    }
}

impl std::ops::Deref for Meta {
    type Target = Metadata;

    fn deref(&self) -> &Metadata {
        self.0.as_deref().unwrap_or(NULL)
    }
}

/// One namespace.
#[derive(Debug)]
pub(crate) struct NsTable {
    /// Unique names.
    pub(crate) names: Map<Name, NameEntry>,
    /// Groups: members in join order, a member once per join. A group with
    /// no member is not kept.
    pub(crate) groups: Map<Arc<str>, Vec<WeakProcessHandle>>,
    /// Subscribers to this namespace's changes.
    pub(crate) subscribers: Subscribers,
    /// Whether an owned name (`register_owned`) was ever registered here:
    /// only then must `keys` look for them among all names.
    pub(crate) had_owned: AtomicBool,
    /// Taken shared by every change (around the change and its event), and
    /// exclusively by a subscription to the whole namespace while it takes
    /// its snapshot: so no change falls between snapshot and subscription.
    /// Lookups never take it. Lock order: gate, then a shard, then the
    /// subscribers or the per-process index.
    gate: RwLock<()>,
}

impl NsTable {
    /// A table with `shards` shards per map, each subscription buffering
    /// `event_buffer` events.
    pub(crate) fn new(shards: usize, event_buffer: usize) -> Self {
        NsTable {
            names: map(shards),
            groups: map(shards),
            subscribers: Subscribers::new(event_buffer),
            had_owned: AtomicBool::new(false),
            gate: RwLock::new(()),
        }
    }

    /// Held while changing the table; never taken twice by one thread.
    pub(crate) fn changing(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read()
    }

    /// Runs `snapshot` with no change in progress.
    pub(crate) fn quiet<T>(&self, snapshot: impl FnOnce() -> T) -> T {
        let _quiet = self.gate.write();
        snapshot()
    }
}
