//! RateLimiter under concurrency: many threads hammering the same keys never
//! get more than the budget (property tests on OS threads, with a clock the
//! test moves).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    thread,
    time::{Duration, SystemTime},
};

use foundation_services::{RateLimiter, Rule};
use proptest::prelude::*;
use supervision_core::{Clock, TimeSource};
use tokio::time::Instant;

/// Time that moves only when the test says: a base instant plus an offset.
struct SteppedTime {
    base: Instant,
    offset_ns: Arc<AtomicU64>,
}

impl TimeSource for SteppedTime {
    fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
}

fn stepped_clock() -> (Clock, Arc<AtomicU64>) {
    let offset_ns = Arc::new(AtomicU64::new(0));
    let clock = Clock::from_source(SteppedTime {
        base: Instant::now(),
        offset_ns: offset_ns.clone(),
    });
    (clock, offset_ns)
}

/// `threads` threads each make `attempts` checks spread over `keys` keys;
/// returns the admitted count per key.
fn hammer(limiter: &RateLimiter, threads: usize, attempts: usize, keys: usize) -> Vec<u64> {
    let admitted: Vec<AtomicU64> = (0..keys).map(|_| AtomicU64::new(0)).collect();
    thread::scope(|scope| {
        for t in 0..threads {
            let (limiter, admitted) = (limiter, &admitted);
            scope.spawn(move || {
                for i in 0..attempts {
                    let key = (i * 7 + t) % keys;
                    if limiter.check(&format!("entity-{key}"), "op").is_ok() {
                        admitted[key].fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    admitted.into_iter().map(AtomicU64::into_inner).collect()
}

fn attempts_on(key: usize, threads: usize, attempts: usize, keys: usize) -> u64 {
    (0..threads)
        .flat_map(|t| (0..attempts).map(move |i| (i * 7 + t) % keys))
        .filter(|&k| k == key)
        .count() as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    // Time stands still: each key admits exactly min(attempts, burst).
    #[test]
    fn frozen_time_admits_exactly_the_burst(
        threads in 2usize..6,
        attempts in 1usize..400,
        keys in 1usize..4,
        burst in 1u32..60,
    ) {
        let (clock, _offset) = stepped_clock();
        let limiter = RateLimiter::builder()
            .rule("op", Rule::per_second(10).with_burst(burst))
            .clock(clock)
            .build()
            .unwrap();
        let admitted = hammer(&limiter, threads, attempts, keys);
        for (key, &count) in admitted.iter().enumerate() {
            let tried = attempts_on(key, threads, attempts, keys);
            prop_assert_eq!(count, tried.min(u64::from(burst)), "key {}", key);
            let status = limiter.status(&format!("entity-{key}"), "op").unwrap();
            prop_assert_eq!(u64::from(status.remaining), u64::from(burst) - count);
        }
    }

    // Time moves while the threads hammer: no key ever admits more than
    // burst + elapsed / interval.
    #[test]
    fn moving_time_never_exceeds_the_budget(
        threads in 2usize..5,
        attempts in 100usize..2_000,
        keys in 1usize..3,
        burst in 1u32..20,
        per_second in 1u32..1_000,
        steps in 1u64..200,
    ) {
        let (clock, offset) = stepped_clock();
        let limiter = RateLimiter::builder()
            .rule("op", Rule::per_second(per_second).with_burst(burst))
            .clock(clock)
            .build()
            .unwrap();
        let step_ns = 1_000_000; // 1 ms per step
        let admitted = thread::scope(|scope| {
            let ticker = scope.spawn(|| {
                for _ in 0..steps {
                    offset.fetch_add(step_ns, Ordering::SeqCst);
                    thread::yield_now();
                }
            });
            let admitted = hammer(&limiter, threads, attempts, keys);
            ticker.join().unwrap();
            admitted
        });
        let elapsed_ns = steps * step_ns;
        let interval_ns = Rule::per_second(per_second).interval().unwrap().as_nanos() as u64;
        let budget = u64::from(burst) + elapsed_ns / interval_ns;
        for (key, &count) in admitted.iter().enumerate() {
            prop_assert!(count <= budget, "key {} admitted {} > budget {}", key, count, budget);
        }
    }
}
