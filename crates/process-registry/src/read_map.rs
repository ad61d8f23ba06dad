//! [`ReadMap`]: the map of a namespace's names, sharded so that a reader
//! writes nothing another reader touches.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{LockResult, PoisonError},
};

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};

use crate::table::{Hasher, Name};

/// One shard: a plain hash map behind a lock whose read side is split per
/// thread.
pub(crate) type Shard<V> = HashMap<Name, V, Hasher>;

/// A concurrent map from names to `V` for a read-mostly workload: lookups.
///
/// Names are spread over shards by hash; each shard is a plain
/// [`HashMap`] behind a [`ShardedLock`], whose read lock is one of eight
/// per-thread lock words, each on its own cache line. A reader so writes
/// only a line its own thread writes (and a writer of the same shard, now
/// and then): two threads reading at once never pass a cache line back and
/// forth, as they do on the one lock word of a `dashmap` shard, and a read
/// costs what a read of an unshared `HashMap` costs, one cache miss for the
/// entry. A writer takes the eight lock words of its shard, so writes cost
/// a little more, and readers of that shard wait for it (never of another
/// shard).
///
/// Why not a lock-free map: an epoch-based map (`papaya`, `scc`'s
/// `HashIndex`, `flurry`) keeps each entry in an allocation of its own
/// behind a pointer array, one more cache miss per lookup than an inline
/// `HashMap`; with a hundred thousand names, lookups are bound by those
/// misses, and measured no faster than `dashmap` on our machines.
pub(crate) struct ReadMap<V> {
    shards: Box<[ShardedLock<Shard<V>>]>,
    hasher: Hasher,
}

/// A lock's guard, poisoned or not: nothing panics while one is held (no
/// user code runs under it), and the map stays consistent if something
/// did.
fn unpoisoned<G>(result: LockResult<G>) -> G {
    result.unwrap_or_else(PoisonError::into_inner)
}

impl<V> ReadMap<V> {
    /// An empty map of `shards` shards (a power of two).
    pub(crate) fn new(shards: usize) -> Self {
        let shards = shards.next_power_of_two();
        ReadMap {
            shards: (0..shards)
                .map(|_| ShardedLock::new(HashMap::with_hasher(Hasher::default())))
                .collect(),
            hasher: Hasher::default(),
        }
    }

    /// The shard of `name`.
    fn shard(&self, name: &str) -> &ShardedLock<Shard<V>> {
        // The high bits: the shard's own map uses the low ones (and its own
        // seed).
        let hash = self.hasher.hash_one(name);
        let index = (hash >> 40) as usize & (self.shards.len() - 1);
        &self.shards[index]
    }

    /// Read access to the shard of `name`.
    pub(crate) fn read(&self, name: &str) -> ShardedLockReadGuard<'_, Shard<V>> {
        unpoisoned(self.shard(name).read())
    }

    /// Write access to the shard of `name`: every change to `name` is made
    /// under it, which orders them.
    pub(crate) fn write(&self, name: &str) -> ShardedLockWriteGuard<'_, Shard<V>> {
        unpoisoned(self.shard(name).write())
    }

    /// Removes `name` if `remove` says so (called under the shard's write
    /// lock), and returns its entry.
    pub(crate) fn remove_if(
        &self,
        name: &str,
        remove: impl FnOnce(&Name, &V) -> bool,
    ) -> Option<(Name, V)> {
        let mut shard = self.write(name);
        let (key, value) = shard.get_key_value(name)?;
        if remove(key, value) {
            shard.remove_entry(name)
        } else {
            None
        }
    }

    /// Calls `f` with every entry, a shard at a time (each under its read
    /// lock: not a snapshot of the whole map).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Name, &V)) {
        for shard in self.shards.iter() {
            for (name, value) in unpoisoned(shard.read()).iter() {
                f(name, value);
            }
        }
    }

    /// How many entries the map holds.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| unpoisoned(shard.read()).len())
            .sum()
    }
}

impl<V> std::fmt::Debug for ReadMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadMap")
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn readers_always_find_a_name_that_stays_while_others_change() {
        // One shard: every write below takes the readers' shard.
        let map: ReadMap<u64> = ReadMap::new(1);
        for k in 0..100u64 {
            map.write(&k.to_string())
                .insert(Name::from(k.to_string()), k);
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut reads = 0u64;
                        while !done.load(Ordering::Acquire) || reads < 1000 {
                            let k = reads % 100;
                            let name = k.to_string();
                            assert_eq!(map.read(&name).get(name.as_str()), Some(&k));
                            reads += 1;
                        }
                    })
                })
                .collect();
            // Grows the shard well past its first capacity, then empties it
            // of everything but the stable names.
            for k in 100..5_000u64 {
                map.write(&k.to_string())
                    .insert(Name::from(k.to_string()), k);
            }
            for k in 100..5_000u64 {
                let name = k.to_string();
                assert_eq!(
                    map.remove_if(&name, |_, v| *v == k),
                    Some((Name::from(name), k))
                );
            }
            done.store(true, Ordering::Release);
            for reader in readers {
                reader.join().unwrap();
            }
        });
        assert_eq!(map.len(), 100);
        assert_eq!(map.remove_if("7", |_, v| *v == 8), None, "kept unless told");
        let mut sum = 0;
        map.for_each(|_, v| sum += v);
        assert_eq!(sum, (0..100).sum::<u64>());
    }
}
