//! `bench ratelimit`: checks per second of the foundation `RateLimiter`
//! beside bare governor's keyed limiter (its DashMap store and default
//! clock), on the same loop in the same run.
//!
//! Three loops, each timed for ours and for governor: 1 thread over
//! 1,000,000 distinct keys, 2 threads over the same keys, 2 threads on one
//! hot key. Both limiters get the same quota (1,000 per second, burst
//! 1,000: the keyed loops are admitted, the hot key mostly refused) and the
//! same pre-built `String` keys; both tables are filled by an untimed pass
//! first, so the loops time lookups and admissions, not first inserts.
//! Ours goes through its per-operation rule lookup on every check (one
//! operation, `"op"`), as a user's call does. The loops alternate, ours
//! then governor, three rounds; each figure is the median of its three.

use std::{
    num::NonZeroU32,
    sync::atomic::{AtomicU64, Ordering},
    thread,
    time::Instant,
};

use anyhow::{Result, ensure};
use mabeam_foundation_services::{RateLimiter, Rule};
use serde_json::json;

const KEYS: usize = 1_000_000;
/// Checks per thread in each timed loop.
const CHECKS: usize = 2_000_000;
/// A step coprime with `KEYS`, so a thread visits the keys in a scattered
/// order, as unrelated callers would.
const STRIDE: usize = 7_919;
const QUOTA: u32 = 1_000;
const ROUNDS: usize = 3;

type Governor = governor::DefaultKeyedRateLimiter<String>;

/// One limiter under test: `check` answers whether the key was admitted.
/// Keys are `&String` because governor's keyed limiter takes `&K`.
#[allow(clippy::ptr_arg)]
trait Limiter: Sync {
    fn check(&self, key: &String) -> bool;
}

#[allow(clippy::ptr_arg)]
impl Limiter for RateLimiter {
    #[inline]
    fn check(&self, key: &String) -> bool {
        RateLimiter::check(self, key, "op").is_ok()
    }
}

#[allow(clippy::ptr_arg)]
impl Limiter for Governor {
    #[inline]
    fn check(&self, key: &String) -> bool {
        self.check_key(key).is_ok()
    }
}

/// `threads` threads each make `CHECKS` checks, over every key (thread `t`
/// starting at its own offset) or on the first key only; returns checks per
/// second and how many were admitted.
fn timed(limiter: &impl Limiter, keys: &[String], threads: usize, hot: bool) -> (f64, u64) {
    let admitted = AtomicU64::new(0);
    let start = Instant::now();
    thread::scope(|scope| {
        for t in 0..threads {
            let admitted = &admitted;
            scope.spawn(move || {
                let mut ok = 0;
                let mut at = t * (KEYS / 2);
                for _ in 0..CHECKS {
                    let key = if hot { &keys[0] } else { &keys[at] };
                    ok += u64::from(limiter.check(key));
                    at += STRIDE;
                    if at >= KEYS {
                        at -= KEYS;
                    }
                }
                admitted.fetch_add(ok, Ordering::Relaxed);
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    ((threads * CHECKS) as f64 / secs, admitted.into_inner())
}

fn fill(limiter: &impl Limiter, keys: &[String]) {
    for key in keys {
        limiter.check(key);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) async fn run() -> Result<serde_json::Value> {
    tokio::task::spawn_blocking(run_blocking).await?
}

fn run_blocking() -> Result<serde_json::Value> {
    let keys: Vec<String> = (0..KEYS).map(|k| format!("entity-{k}")).collect();
    let quota = NonZeroU32::new(QUOTA).expect("non-zero quota");
    // (loop name, ours, governor) per round.
    let mut figures: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("1t_keys", vec![], vec![]),
        ("2t_keys", vec![], vec![]),
        ("2t_hot", vec![], vec![]),
        ("1t_hot", vec![], vec![]),
    ];
    for round in 1..=ROUNDS {
        eprintln!("bench ratelimit: round {round} of {ROUNDS}");
        let ours = RateLimiter::builder()
            .rule("op", Rule::per_second(QUOTA))
            .build()?;
        let theirs = Governor::keyed(governor::Quota::per_second(quota));
        fill(&ours, &keys);
        fill(&theirs, &keys);
        for (name, mine, gov) in &mut figures {
            let (threads, hot) = match *name {
                "1t_keys" => (1, false),
                "2t_keys" => (2, false),
                "1t_hot" => (1, true),
                _ => (2, true),
            };
            let (ours_rate, ours_ok) = timed(&ours, &keys, threads, hot);
            let (gov_rate, gov_ok) = timed(&theirs, &keys, threads, hot);
            eprintln!(
                "  {name}: ours {ours_rate:.0}/s ({ours_ok} admitted), governor {gov_rate:.0}/s ({gov_ok} admitted)"
            );
            if !hot {
                ensure!(
                    ours_ok == gov_ok,
                    "{name}: ours admitted {ours_ok}, governor {gov_ok}"
                );
            }
            mine.push(ours_rate);
            gov.push(gov_rate);
        }
    }
    let mut out = serde_json::Map::new();
    out.insert("bench".into(), json!("ratelimit"));
    out.insert("keys".into(), json!(KEYS));
    out.insert("checks_per_thread".into(), json!(CHECKS));
    for (name, mine, gov) in figures {
        let (mine, gov) = (median(mine), median(gov));
        out.insert(format!("limiter_{name}_per_s"), json!(mine.round()));
        out.insert(format!("governor_{name}_per_s"), json!(gov.round()));
        out.insert(
            format!("ratio_{name}"),
            json!((mine / gov * 100.0).round() / 100.0),
        );
    }
    Ok(serde_json::Value::Object(out))
}
