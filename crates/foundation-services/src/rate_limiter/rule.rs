//! [`Rule`]: the rate and burst of one operation's buckets.

use std::time::Duration;

use super::RateLimitError;

/// How many checks one bucket admits: `limit` per `period` on average, and
/// at most `burst` at once (a full bucket holds `burst` tokens; one token
/// comes back every `period / limit`).
///
/// Defaults: `burst` = `limit`. A `limit` of 0 admits nothing, ever.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_foundation_services::Rule;
///
/// let api = Rule::per_second(100).with_burst(10);
/// assert_eq!(api.limit(), 100);
/// assert_eq!(api.burst(), 10);
/// assert_eq!(api.interval(), Some(Duration::from_millis(10)));
/// assert_eq!(Rule::new(0, Duration::from_secs(1)).interval(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule {
    limit: u32,
    period: Duration,
    burst: u32,
}

impl Rule {
    /// `limit` tokens per `period`, burst `limit`.
    pub fn new(limit: u32, period: Duration) -> Self {
        Rule {
            limit,
            period,
            burst: limit,
        }
    }

    /// `limit` tokens per second, burst `limit`.
    pub fn per_second(limit: u32) -> Self {
        Rule::new(limit, Duration::from_secs(1))
    }

    /// `limit` tokens per minute, burst `limit`.
    pub fn per_minute(limit: u32) -> Self {
        Rule::new(limit, Duration::from_secs(60))
    }

    /// Sets the burst: how many tokens a full bucket holds.
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Tokens per period.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// The period `limit` is counted over.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The most tokens a bucket holds.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long one token takes to come back (`period / limit`, at least a
    /// nanosecond); `None` for a limit of 0.
    pub fn interval(&self) -> Option<Duration> {
        (self.limit > 0).then(|| Duration::from_nanos(self.interval_ns()))
    }

    fn interval_ns(&self) -> u64 {
        let ns = self.period.as_nanos() / u128::from(self.limit.max(1));
        u64::try_from(ns).unwrap_or(u64::MAX).max(1)
    }

    /// Checks the rule of `operation`: a period longer than zero, a burst of
    /// at least one unless the limit is 0, and a bucket's span
    /// (`burst x interval`) that fits in 2^62 nanoseconds (about 146 years).
    pub fn validate(&self, operation: &str) -> Result<(), RateLimitError> {
        let invalid = |reason: &'static str| RateLimitError::InvalidRule {
            operation: operation.into(),
            reason,
        };
        if self.period.is_zero() {
            return Err(invalid("the period must be longer than zero"));
        }
        if self.limit == 0 {
            return Ok(());
        }
        if self.burst == 0 {
            return Err(invalid("the burst must be at least 1 (or the limit 0)"));
        }
        match self.interval_ns().checked_mul(u64::from(self.burst)) {
            Some(span) if span < 1 << 62 => Ok(()),
            _ => Err(invalid("burst x interval must be under 2^62 ns")),
        }
    }

    /// The rule in nanoseconds, for the buckets.
    pub(super) fn compile(&self) -> Compiled {
        if self.limit == 0 {
            return Compiled {
                interval: 0,
                span: 0,
                burst: 0,
            };
        }
        let interval = self.interval_ns();
        Compiled {
            interval,
            span: interval * u64::from(self.burst),
            burst: self.burst,
        }
    }
}

/// A validated rule in the units the buckets use.
#[derive(Debug, Clone, Copy)]
pub(super) struct Compiled {
    /// Nanoseconds per token; 0 for a rule that admits nothing.
    pub(super) interval: u64,
    /// `burst x interval`: how far ahead of now a bucket's theoretical
    /// arrival time may run.
    pub(super) span: u64,
    pub(super) burst: u32,
}
