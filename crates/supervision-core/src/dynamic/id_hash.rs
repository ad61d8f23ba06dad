//! [`ById`]: the hasher of the children map, which keeps children started
//! one after another in neighbouring buckets.

use std::hash::{BuildHasherDefault, Hasher};

/// Builds [`IdHasher`]s.
pub(super) type ById = BuildHasherDefault<IdHasher>;

/// Hashes an actor id (a sequence number) so that consecutive ids fall in
/// consecutive buckets: the low bits are the id itself, the top seven
/// bits (the tag the map compares before a key) are mixed. Children are
/// mostly started and stopped in order, so a hundred thousand of them are
/// inserted and removed a cache line at a time, not at random.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        const TAG_BITS: u64 = 0xFE00_0000_0000_0000;
        self.0 | (self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) & TAG_BITS)
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not an id alone (a remote actor's id hashes its peer too): mix.
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = self.0.rotate_left(32) ^ id;
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use kameo::actor::ActorId;

    use super::ById;

    #[test]
    fn consecutive_ids_land_in_consecutive_buckets_with_mixed_tags() {
        let hasher = ById::default();
        let hashes: Vec<u64> = (1000..1016)
            .map(|id| hasher.hash_one(ActorId::new(id)))
            .collect();
        let mask = (1 << 17) - 1;
        for pair in hashes.windows(2) {
            assert_eq!((pair[0] & mask) + 1, pair[1] & mask);
        }
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(tags.len() > 8, "tags barely vary: {tags:?}");
    }
}
