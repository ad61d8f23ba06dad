//! The table of one namespace: its unique names, its groups and its
//! subscribers.

use std::sync::{Arc, atomic::AtomicBool};

use dashmap::DashMap;
use mabeam_supervision_core::{Metadata, WeakProcessHandle};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

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
/// process alive) and metadata. Never changed in place: a change puts a
/// new entry in the map, as readers may still hold the old one.
#[derive(Debug, Clone)]
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

/// The unique names of a namespace: a map that readers search without a
/// lock and without writing anything shared (papaya: epoch-based
/// reclamation, so a lookup only pins its own thread's epoch), and locks
/// by which writers of one name take turns.
///
/// Why both: a write is a read, a decision and a change (is the holder
/// live? then refuse; else take over and tell subscribers, in order).
/// papaya makes each single change atomic, not the three together, so a
/// writer holds the lock of its name's stripe around them; readers never
/// take it. Every change of a name's entry happens under its stripe lock.
pub(crate) struct Names {
    /// Name to entry; grows incrementally (papaya's default resize copies a
    /// chunk per write), so no single insert pays for moving the table.
    pub(crate) map: papaya::HashMap<Name, NameEntry, Hasher>,
    /// Writers' locks, a name's chosen by its hash.
    stripes: Box<[Mutex<()>]>,
    /// Picks a name's stripe.
    stripe_hasher: Hasher,
}

impl Names {
    /// An empty map, room made for `capacity` names, whose writers spread
    /// over `stripes` locks.
    fn new(stripes: usize, capacity: usize) -> Self {
        Names {
            map: papaya::HashMap::builder()
                .hasher(Hasher::default())
                .capacity(capacity)
                .build(),
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            stripe_hasher: Hasher::default(),
        }
    }

    /// Held while reading, deciding and changing `name`'s entry.
    pub(crate) fn lock(&self, name: &str) -> MutexGuard<'_, ()> {
        use std::hash::BuildHasher;
        let at = self.stripe_hasher.hash_one(name) as usize % self.stripes.len();
        self.stripes[at].lock()
    }

    /// A guard for reading the map: what it returns stays valid while the
    /// guard lives. Hold none across an `.await`.
    pub(crate) fn guard(&self) -> papaya::LocalGuard<'_> {
        self.map.guard()
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names")
            .field("len", &self.map.len())
            .finish_non_exhaustive()
    }
}

/// One namespace.
#[derive(Debug)]
pub(crate) struct NsTable {
    /// Unique names.
    pub(crate) names: Names,
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
    /// Lookups never take it. Lock order: gate, then a name's stripe or a
    /// group's shard, then the subscribers or the per-process index.
    gate: RwLock<()>,
}

impl NsTable {
    /// A table with `shards` shards per map, room for `names` names (it
    /// grows past them), each subscription buffering `event_buffer` events.
    pub(crate) fn new(shards: usize, names: usize, event_buffer: usize) -> Self {
        NsTable {
            names: Names::new(shards, names),
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
