//! One bucket: GCRA (the generic cell rate algorithm) on one atomic word,
//! and the key buckets are found by.
//!
//! GCRA is a token bucket written as a single timestamp: the bucket's
//! *theoretical arrival time* (TAT), the instant at which it would be full
//! again. A check at `now` is admitted if `max(TAT, now) + interval` is no
//! more than `burst x interval` ahead of `now`, and then moves the TAT
//! there with a compare-and-swap. A bucket whose TAT is not ahead of now is
//! full: exactly what an absent bucket is, so evicting it loses nothing.
//! Time is in nanoseconds since the limiter's origin.

use std::{
    borrow::Borrow,
    hash::{Hash, Hasher},
    sync::atomic::{AtomicU64, Ordering},
};

use compact_str::CompactString;

use super::rule::Compiled;

/// A bucket's key as stored: the operation's rule index and the entity,
/// inline up to 24 bytes (no pointer to chase on a lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BucketKey {
    pub(super) operation: u32,
    pub(super) entity: CompactString,
}

/// A key as looked up, borrowed: `(operation, entity)`. The map finds a
/// stored [`BucketKey`] from it without building one (no allocation).
pub(super) trait KeyView {
    fn operation(&self) -> u32;
    fn entity(&self) -> &str;
}

impl KeyView for BucketKey {
    fn operation(&self) -> u32 {
        self.operation
    }

    fn entity(&self) -> &str {
        &self.entity
    }
}

impl KeyView for (u32, &str) {
    fn operation(&self) -> u32 {
        self.0
    }

    fn entity(&self) -> &str {
        self.1
    }
}

fn hash_view<H: Hasher>(view: &(impl KeyView + ?Sized), state: &mut H) {
    state.write_u32(view.operation());
    view.entity().hash(state);
}

impl Hash for BucketKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_view(self, state)
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        hash_view(self, state)
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.operation() == other.operation() && self.entity() == other.entity()
    }
}

impl Eq for dyn KeyView + '_ {}

impl<'a> Borrow<dyn KeyView + 'a> for BucketKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

/// Admits one token from the bucket whose TAT is `tat`, at `now`: `Ok` with
/// the tokens left, or `Err` with how many nanoseconds until one is back
/// (`None` for a rule that admits nothing).
#[inline]
pub(super) fn acquire(tat: &AtomicU64, rule: &Compiled, now: u64) -> Result<u32, Option<u64>> {
    if rule.interval == 0 {
        return Err(None);
    }
    let mut current = tat.load(Ordering::Acquire);
    loop {
        let next = current.max(now) + rule.interval;
        let ahead = next - now;
        if ahead > rule.span {
            return Err(Some(ahead - rule.span));
        }
        match tat.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(((rule.span - ahead) / rule.interval) as u32),
            Err(actual) => current = actual,
        }
    }
}

/// The tokens a bucket whose TAT is `tat` holds at `now`.
pub(super) fn remaining(tat: u64, rule: &Compiled, now: u64) -> u32 {
    if rule.interval == 0 {
        return 0;
    }
    let ahead = tat.saturating_sub(now);
    (rule.span.saturating_sub(ahead) / rule.interval) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rule;

    fn rule(limit: u32, period_ns: u64, burst: u32) -> Compiled {
        Rule::new(limit, std::time::Duration::from_nanos(period_ns))
            .with_burst(burst)
            .compile()
    }

    #[test]
    fn a_fresh_bucket_admits_its_burst_then_waits_one_interval() {
        let rule = rule(10, 1_000, 3); // a token per 100 ns, 3 at most
        let tat = AtomicU64::new(0);
        assert_eq!(acquire(&tat, &rule, 5_000), Ok(2));
        assert_eq!(acquire(&tat, &rule, 5_000), Ok(1));
        assert_eq!(acquire(&tat, &rule, 5_000), Ok(0));
        assert_eq!(acquire(&tat, &rule, 5_000), Err(Some(100)));
        assert_eq!(acquire(&tat, &rule, 5_040), Err(Some(60)));
        assert_eq!(acquire(&tat, &rule, 5_100), Ok(0));
        assert_eq!(remaining(tat.load(Ordering::Relaxed), &rule, 5_100), 0);
        assert_eq!(remaining(tat.load(Ordering::Relaxed), &rule, 5_300), 2);
        assert_eq!(remaining(tat.load(Ordering::Relaxed), &rule, 9_000), 3);
    }

    #[test]
    fn a_zero_limit_admits_nothing() {
        let rule = rule(0, 1_000, 5);
        let tat = AtomicU64::new(0);
        assert_eq!(acquire(&tat, &rule, 0), Err(None));
        assert_eq!(acquire(&tat, &rule, u64::MAX / 2), Err(None));
        assert_eq!(remaining(0, &rule, 0), 0);
    }
}
