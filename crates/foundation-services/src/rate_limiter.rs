//! [`RateLimiter`]: token buckets keyed by (entity, operation), each
//! operation with its own [`Rule`] (rate and burst), checked without a
//! mailbox.
//!
//! # Concepts
//!
//! - A **rule** belongs to an operation (`"api_call"`, `"login"`): `limit`
//!   tokens per `period`, at most `burst` at once. Rules are given when the
//!   limiter is built and checked then ([`RateLimitError::InvalidRule`]).
//! - A **bucket** belongs to one (entity, operation) pair and starts full.
//!   [`check`](RateLimiter::check) takes a token or says how long until one
//!   is back ([`RateLimitError::Limited`], code 3201, with `retry_after`);
//!   [`status`](RateLimiter::status) reads the tokens left without taking
//!   one; [`reset`](RateLimiter::reset) refills the bucket.
//! - Checks run in the caller's thread on a sharded map (the seed's ETS
//!   table): no message, no actor on the path. The service actor
//!   ([`RateLimiter::service`]) only sweeps idle buckets on an interval and
//!   answers its health check; the table outlives its restarts.
//!
//! # Guarantees
//!
//! - **Never more than the budget.** Each bucket is one atomic word moved by
//!   compare-and-swap (GCRA, see the `bucket` module): whatever the number
//!   of threads, a bucket admits at most `burst + elapsed / interval`
//!   checks over any span of time.
//! - **A limit of 0 denies every check** (`retry_after: None`).
//! - **Memory follows the active keys, not all keys ever seen.** A bucket
//!   that has refilled is identical to an absent one, so the sweep
//!   ([`evict_idle`](RateLimiter::evict_idle)) removes it without changing
//!   any answer.
//! - **Time is the injected [`Clock`]**, so tests run on tokio's paused
//!   clock. The default is [`Clock::fast`]: every check reads the time,
//!   and `clock_gettime` costs about 60 ns on our virtual machines, more
//!   than the rest of a check. Tests give [`Clock::tokio`] or
//!   [`Clock::system`].
//!
//! Why not `governor`: its keyed limiter has one quota for all keys (one
//! limiter per rule would do), but no way to read a bucket's tokens without
//! taking one, no reset of one key, and no quota of 0 (its quotas are
//! non-zero by type). Its clock is its own trait, and its GCRA is the same
//! one-word CAS as ours. `cargo xtask bench ratelimit` runs both on the same
//! loop; see the README for the figures.
//!
//! # Telemetry
//!
//! | name                 | measurements           | metadata  |
//! |----------------------|------------------------|-----------|
//! | `rate_limiter.swept` | `evicted`, `buckets`   | `limiter` |
//! | `rate_limiter.reset` |                        | `limiter`, `entity`, `operation` |
//!
//! Checks emit nothing: they are the hot path.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use mabeam_foundation_services::{RateLimitError, RateLimiter, Rule};
//! use mabeam_supervision_core::{Clock, ErrorCode};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let limiter = RateLimiter::builder()
//!     .clock(Clock::tokio()) // tokio's paused clock, for this example
//!     .rule("login", Rule::per_minute(3))
//!     .rule("search", Rule::per_second(10).with_burst(20))
//!     .build()
//!     .unwrap();
//!
//! for left in [2, 1, 0] {
//!     assert_eq!(limiter.check("ada", "login").unwrap().remaining, left);
//! }
//! let refused = limiter.check("ada", "login").unwrap_err();
//! assert_eq!(refused.code(), 3201);
//! assert_eq!(refused, RateLimitError::Limited { retry_after: Some(Duration::from_secs(20)) });
//! // Other entities and operations have their own buckets.
//! assert!(limiter.check("bob", "login").is_ok());
//! assert_eq!(limiter.status("ada", "search").unwrap().remaining, 20);
//!
//! // Run something only when admitted.
//! let answer = limiter.execute_with_limit("ada", "search", || 6 * 7);
//! assert_eq!(answer, Ok(42));
//!
//! tokio::time::advance(Duration::from_secs(20)).await;
//! assert_eq!(limiter.status("ada", "login").unwrap().remaining, 1);
//! limiter.reset("ada", "login").unwrap();
//! assert_eq!(limiter.status("ada", "login").unwrap().remaining, 3);
//! # }
//! ```

mod bucket;
mod error;
mod rule;
mod service;

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use dashmap::DashMap;
use mabeam_supervision_core::{Clock, MetaValue, ServiceDef, Telemetry};
use tokio::time::Instant;

use bucket::{BucketKey, KeyView};
pub use error::RateLimitError;
use rule::Compiled;
pub use rule::Rule;

type Hasher = foldhash::fast::RandomState;

/// `rate_limiter.swept`: the sweep removed idle buckets.
pub const SWEPT: &[&str] = &["rate_limiter", "swept"];
/// `rate_limiter.reset`: a bucket was reset.
pub const RESET: &[&str] = &["rate_limiter", "reset"];

/// An admitted check: the tokens left in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowed {
    /// Tokens left after this one was taken.
    pub remaining: u32,
}

/// What [`RateLimiter::status`] reads of a bucket, without taking a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketStatus {
    /// Tokens in the bucket now.
    pub remaining: u32,
    /// The most it holds (the rule's burst; 0 for a limit of 0).
    pub burst: u32,
    /// How long until it is full again (zero if it is).
    pub full_after: Duration,
}

/// Token buckets keyed by (entity, operation): a cheap, cloneable handle,
/// every clone the same limiter. See the [module docs](self).
#[derive(Clone)]
pub struct RateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    /// Operation name to rule index.
    operations: HashMap<Arc<str>, u32, Hasher>,
    /// By rule index.
    rules: Vec<(Arc<str>, Rule, Compiled)>,
    /// The theoretical arrival time of each bucket, in nanoseconds since
    /// `origin`.
    buckets: DashMap<BucketKey, AtomicU64, Hasher>,
    clock: Clock,
    origin: Instant,
    sweep_interval: Duration,
    telemetry: Telemetry,
}

/// Builds a [`RateLimiter`]. Defaults: name `rate_limiter`, no rules,
/// [`Clock::fast`] (which tokio's paused clock does not move: tests set
/// [`Clock::tokio`]), sweep every 60 s, telemetry disabled.
#[derive(Debug, Clone)]
pub struct RateLimiterBuilder {
    name: Arc<str>,
    rules: Vec<(Arc<str>, Rule)>,
    clock: Clock,
    sweep_interval: Duration,
    telemetry: Telemetry,
}

impl RateLimiterBuilder {
    /// Sets the service's name (its child id in an application).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds the rule of `operation`.
    pub fn rule(mut self, operation: impl Into<Arc<str>>, rule: Rule) -> Self {
        self.rules.push((operation.into(), rule));
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how often the service sweeps idle buckets.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Sets the telemetry handle.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Checks the rules ([`InvalidRule`](RateLimitError::InvalidRule),
    /// [`DuplicateRule`](RateLimitError::DuplicateRule)) and the sweep
    /// interval, and builds the limiter.
    pub fn build(self) -> Result<RateLimiter, RateLimitError> {
        if self.sweep_interval.is_zero() {
            return Err(RateLimitError::InvalidSweepInterval(self.sweep_interval));
        }
        let mut operations = HashMap::with_hasher(Hasher::default());
        let mut rules = Vec::with_capacity(self.rules.len());
        for (index, (operation, rule)) in self.rules.into_iter().enumerate() {
            rule.validate(&operation)?;
            if operations.insert(operation.clone(), index as u32).is_some() {
                return Err(RateLimitError::DuplicateRule(operation));
            }
            rules.push((operation, rule, rule.compile()));
        }
        let origin = self.clock.now();
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                name: self.name,
                operations,
                rules,
                buckets: DashMap::with_hasher(Hasher::default()),
                clock: self.clock,
                origin,
                sweep_interval: self.sweep_interval,
                telemetry: self.telemetry,
            }),
        })
    }
}

impl RateLimiter {
    /// A builder with the defaults of [`RateLimiterBuilder`].
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            name: "rate_limiter".into(),
            rules: Vec::new(),
            clock: Clock::fast(),
            sweep_interval: Duration::from_secs(60),
            telemetry: Telemetry::disabled(),
        }
    }

    /// Takes a token from the bucket of (`entity`, `operation`): `Ok` with
    /// the tokens left, or [`Limited`](RateLimitError::Limited) with how
    /// long until one is back. A refused check takes nothing.
    /// [`UnknownOperation`](RateLimitError::UnknownOperation) for an
    /// operation without a rule (no bucket is made).
    #[inline]
    pub fn check(&self, entity: &str, operation: &str) -> Result<Allowed, RateLimitError> {
        let inner = &*self.inner;
        let (index, compiled) = inner.rule(operation)?;
        let now = inner.now();
        let view = (index, entity);
        let answer = match inner.buckets.get(&view as &dyn KeyView) {
            Some(tat) => bucket::acquire(&tat, compiled, now),
            None => {
                let key = BucketKey {
                    operation: index,
                    entity: entity.into(),
                };
                let tat = inner.buckets.entry(key).or_insert(AtomicU64::new(0));
                bucket::acquire(&tat, compiled, now)
            }
        };
        match answer {
            Ok(remaining) => Ok(Allowed { remaining }),
            Err(retry_ns) => Err(RateLimitError::Limited {
                retry_after: retry_ns.map(Duration::from_nanos),
            }),
        }
    }

    /// Runs `f` only if a check of (`entity`, `operation`) is admitted, and
    /// returns what it returns; otherwise returns the check's error and does
    /// not run it. For async work, `f` returns the future to await.
    pub fn execute_with_limit<T>(
        &self,
        entity: &str,
        operation: &str,
        f: impl FnOnce() -> T,
    ) -> Result<T, RateLimitError> {
        self.check(entity, operation)?;
        Ok(f())
    }

    /// The bucket of (`entity`, `operation`) as it stands now, without
    /// taking a token (a bucket never checked is full).
    pub fn status(&self, entity: &str, operation: &str) -> Result<BucketStatus, RateLimitError> {
        let inner = &*self.inner;
        let (index, compiled) = inner.rule(operation)?;
        let now = inner.now();
        let view = (index, entity);
        let tat = inner
            .buckets
            .get(&view as &dyn KeyView)
            .map_or(0, |tat| tat.load(std::sync::atomic::Ordering::Acquire));
        Ok(BucketStatus {
            remaining: bucket::remaining(tat, compiled, now),
            burst: compiled.burst,
            full_after: Duration::from_nanos(tat.saturating_sub(now)),
        })
    }

    /// Refills the bucket of (`entity`, `operation`) (forgets it: a bucket
    /// never checked is full).
    pub fn reset(&self, entity: &str, operation: &str) -> Result<(), RateLimitError> {
        let inner = &*self.inner;
        let (index, _) = inner.rule(operation)?;
        let view = (index, entity);
        inner.buckets.remove(&view as &dyn KeyView);
        inner.telemetry.emit(
            RESET,
            &[],
            &[
                ("limiter", MetaValue::Str(&inner.name)),
                ("entity", MetaValue::Str(entity)),
                ("operation", MetaValue::Str(operation)),
            ],
        );
        Ok(())
    }

    /// Removes every bucket that is full again (it answers exactly as an
    /// absent one would) and returns how many; emits `rate_limiter.swept`.
    /// The service runs it every sweep interval.
    pub fn evict_idle(&self) -> usize {
        let inner = &*self.inner;
        let now = inner.now();
        let before = inner.buckets.len();
        inner.buckets.retain(|_, tat| *tat.get_mut() > now);
        let after = inner.buckets.len();
        let evicted = before.saturating_sub(after);
        inner.telemetry.emit(
            SWEPT,
            &[("evicted", evicted as f64), ("buckets", after as f64)],
            &[("limiter", MetaValue::Str(&inner.name))],
        );
        evicted
    }

    /// How many buckets are held (those checked and not yet evicted).
    pub fn bucket_count(&self) -> usize {
        self.inner.buckets.len()
    }

    /// The rule of `operation`.
    pub fn rule(&self, operation: &str) -> Option<Rule> {
        let (index, _) = self.inner.rule(operation).ok()?;
        Some(self.inner.rules[index as usize].1)
    }

    /// The limiter's (and its service's) name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How often the service sweeps idle buckets.
    pub fn sweep_interval(&self) -> Duration {
        self.inner.sweep_interval
    }

    /// The supervised service of this limiter, to put in an application:
    /// an actor that sweeps idle buckets every sweep interval and answers
    /// its health check. The buckets belong to this handle and outlive the
    /// actor's restarts.
    pub fn service(&self) -> ServiceDef {
        service::service_def(self.clone())
    }

    pub(crate) fn clock(&self) -> &Clock {
        &self.inner.clock
    }
}

impl Inner {
    #[inline]
    fn rule(&self, operation: &str) -> Result<(u32, &Compiled), RateLimitError> {
        match self.operations.get(operation) {
            Some(&index) => Ok((index, &self.rules[index as usize].2)),
            None => Err(RateLimitError::UnknownOperation(operation.into())),
        }
    }

    /// Nanoseconds since the origin, on the injected clock.
    #[inline]
    fn now(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.origin)
            .as_nanos() as u64
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("name", &self.inner.name)
            .field(
                "rules",
                &self
                    .inner
                    .rules
                    .iter()
                    .map(|(op, rule, _)| (op, rule))
                    .collect::<Vec<_>>(),
            )
            .field("buckets", &self.inner.buckets.len())
            .finish()
    }
}
