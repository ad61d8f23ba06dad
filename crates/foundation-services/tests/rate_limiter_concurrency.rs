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

use mabeam_foundation_services::{RateLimiter, Rule};
use mabeam_supervision_core::{Clock, TimeSource};
use proptest::prelude::*;
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
    // burst + elapsed / interval, nor fewer than its refusals prove it
    // spent (see `hammer_moving`): a limiter that refuses what it holds
    // fails as surely as one that admits too much.
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
        let keys_seen = thread::scope(|scope| {
            let ticker = scope.spawn(|| {
                for _ in 0..steps {
                    offset.fetch_add(step_ns, Ordering::SeqCst);
                    thread::yield_now();
                }
            });
            let keys_seen = hammer_moving(&limiter, &offset, threads, attempts, keys);
            ticker.join().unwrap();
            keys_seen
        });
        let elapsed_ns = steps * step_ns;
        let interval_ns = Rule::per_second(per_second).interval().unwrap().as_nanos() as u64;
        let budget = u64::from(burst) + elapsed_ns / interval_ns;
        for (key, seen) in keys_seen.iter().enumerate() {
            let count = seen.admitted;
            prop_assert!(count <= budget, "key {} admitted {} > budget {}", key, count, budget);
            let tried = attempts_on(key, threads, attempts, keys);
            let least = match seen.tightest_refusal_ns {
                // Never refused: every check was admitted.
                None => tried,
                Some(window) => least_admitted(burst, interval_ns, window),
            };
            prop_assert!(
                count >= least,
                "key {} admitted {} < {} (tried {}, refusal window {:?} ns)",
                key, count, least, tried, seen.tightest_refusal_ns
            );
        }
    }
}

/// What one key saw in [`hammer_moving`].
#[derive(Debug, Default)]
struct KeySeen {
    admitted: u64,
    /// The shortest time that passed during a refused check (the clock
    /// read just before it and just after it), if any was refused.
    tightest_refusal_ns: Option<u64>,
}

/// As [`hammer`], while time moves: records for each key its admissions
/// and its most telling refusal.
fn hammer_moving(
    limiter: &RateLimiter,
    offset: &AtomicU64,
    threads: usize,
    attempts: usize,
    keys: usize,
) -> Vec<KeySeen> {
    let per_thread: Vec<Vec<KeySeen>> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut seen: Vec<KeySeen> = (0..keys).map(|_| KeySeen::default()).collect();
                    for i in 0..attempts {
                        let key = (i * 7 + t) % keys;
                        let before = offset.load(Ordering::SeqCst);
                        let answer = limiter.check(&format!("entity-{key}"), "op");
                        let after = offset.load(Ordering::SeqCst);
                        let seen = &mut seen[key];
                        if answer.is_ok() {
                            seen.admitted += 1;
                        } else {
                            let window = after - before;
                            seen.tightest_refusal_ns =
                                Some(seen.tightest_refusal_ns.map_or(window, |w| w.min(window)));
                        }
                    }
                    seen
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    (0..keys)
        .map(|key| {
            per_thread.iter().fold(KeySeen::default(), |mut all, seen| {
                all.admitted += seen[key].admitted;
                all.tightest_refusal_ns =
                    match (all.tightest_refusal_ns, seen[key].tightest_refusal_ns) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                all
            })
        })
        .collect()
}

/// The fewest admissions a key must have had before a check refused while
/// `window_ns` passed. A refusal at `now` means the bucket's theoretical
/// arrival time (TAT) was past `now + (burst - 1) x interval`; the TAT starts
/// at 0 and each admission moves it to `max(TAT, its now) + interval`, so
/// after `c` admissions it is at most `latest now + c x interval`, and the
/// latest now of those admissions is at most `window_ns` past the refusal's
/// own. Hence `c x interval > (burst - 1) x interval - window_ns`: whatever
/// the interleaving of the threads, with no slack for scheduling.
fn least_admitted(burst: u32, interval_ns: u64, window_ns: u64) -> u64 {
    let full = u64::from(burst - 1) * interval_ns;
    match full.checked_sub(window_ns) {
        Some(needed) => needed / interval_ns + 1,
        None => 0,
    }
}
