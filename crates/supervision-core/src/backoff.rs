//! Opt-in restart backoff per child ([`Backoff`]), as Akka's
//! `BackoffSupervisor` offers: consecutive restarts of a child wait longer
//! and longer, up to a cap, and the count resets once the child has run
//! quietly for a while.

use std::{
    collections::hash_map::RandomState,
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use tokio::time::Instant;

use crate::FlagsError;

/// How long a child's restarts wait.
///
/// The n-th consecutive restart (counting from 0) waits
/// `min * factor^n`, capped at `max`, plus up to `jitter * delay` at random
/// (still capped at `max`). Restarts are consecutive while the child never
/// ran for `reset_after` in between; a child that did starts over at `min`.
/// Restart intensity still applies: each restart counts when it is decided,
/// before its wait. While it waits, the child shows as restarting.
///
/// Defaults from [`Backoff::new`]: factor 2, no jitter, reset after `max`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(backoff.delay(0), Duration::from_millis(100));
/// assert_eq!(backoff.delay(1), Duration::from_millis(200));
/// assert_eq!(backoff.delay(2), Duration::from_millis(400));
/// assert_eq!(backoff.delay(10), Duration::from_secs(1)); // capped
/// assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(1)); // no overflow
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first restart's wait.
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
    /// How much each consecutive restart multiplies the wait; at least 1.
    pub factor: f64,
    /// Random extra, as a fraction of the wait, in `0.0..=1.0`.
    pub jitter: f64,
    /// A child that ran this long since its last restart starts over at `min`.
    pub reset_after: Duration,
}

impl Backoff {
    /// Exponential backoff from `min` to `max`: factor 2, no jitter, reset
    /// after `max` of quiet running.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            factor: 2.0,
            jitter: 0.0,
            reset_after: max,
        }
    }

    /// Sets the factor.
    pub fn with_factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// Sets the jitter fraction.
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the quiet period after which the count resets.
    pub fn with_reset_after(mut self, reset_after: Duration) -> Self {
        self.reset_after = reset_after;
        self
    }

    /// Checks the settings: `min <= max`, a finite factor of at least 1, a
    /// jitter within `0..=1`, a reset period longer than zero.
    pub fn validate(&self) -> Result<(), FlagsError> {
        let invalid = |what: &'static str| Err(FlagsError::InvalidBackoff(what));
        if self.min > self.max {
            return invalid("min is longer than max");
        }
        if !self.factor.is_finite() || self.factor < 1.0 {
            return invalid("factor must be finite and at least 1");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return invalid("jitter must be within 0 and 1");
        }
        if self.reset_after.is_zero() {
            return invalid("reset_after must be longer than zero");
        }
        Ok(())
    }

    /// The wait before the `attempt`-th consecutive restart (from 0),
    /// without jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let max = self.max.as_secs_f64();
        // powf of a huge exponent is infinite, which min() caps: no overflow.
        let secs = (self.min.as_secs_f64() * self.factor.powf(f64::from(attempt))).min(max);
        Duration::from_secs_f64(if secs.is_nan() { max } else { secs })
    }

    /// The wait with jitter applied.
    pub(crate) fn jittered_delay(&self, attempt: u32) -> Duration {
        let delay = self.delay(attempt);
        if self.jitter == 0.0 {
            return delay;
        }
        let extra = delay.mul_f64(self.jitter * unit_random());
        (delay + extra).min(self.max)
    }
}

/// A random number in `0.0..1.0`, from std's randomly seeded hasher (no
/// random-number crate needed for jitter).
fn unit_random() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(1);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Where one child is in its backoff: kept by the supervisor with the child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BackoffState {
    /// Consecutive restarts so far.
    attempt: u32,
    /// When the current incarnation started.
    started_at: Instant,
}

impl BackoffState {
    pub(crate) fn new(started_at: Instant) -> Self {
        BackoffState {
            attempt: 0,
            started_at,
        }
    }

    /// The wait before restarting a child that exits at `now`, and the
    /// attempt it is; counts the attempt.
    pub(crate) fn next_delay(&mut self, backoff: &Backoff, now: Instant) -> (Duration, u32) {
        if now.saturating_duration_since(self.started_at) >= backoff.reset_after {
            self.attempt = 0;
        }
        let attempt = self.attempt;
        self.attempt = self.attempt.saturating_add(1);
        (backoff.jittered_delay(attempt), attempt)
    }

    /// The child started again at `now`.
    pub(crate) fn started(&mut self, now: Instant) {
        self.started_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap() {
        let backoff =
            Backoff::new(Duration::from_millis(100), Duration::from_millis(250)).with_jitter(0.5);
        for attempt in 0..4 {
            let plain = backoff.delay(attempt);
            let jittered = backoff.jittered_delay(attempt);
            assert!(jittered >= plain && jittered <= plain.mul_f64(1.5).min(backoff.max));
        }
    }

    #[test]
    fn invalid_settings_are_named() {
        let ok = Backoff::new(Duration::from_millis(1), Duration::from_secs(1));
        assert!(ok.validate().is_ok());
        assert!(ok.with_factor(0.5).validate().is_err());
        assert!(ok.with_factor(f64::NAN).validate().is_err());
        assert!(ok.with_jitter(2.0).validate().is_err());
        assert!(ok.with_reset_after(Duration::ZERO).validate().is_err());
        assert!(
            Backoff::new(Duration::from_secs(2), Duration::from_secs(1))
                .validate()
                .is_err()
        );
    }

    #[test]
    fn consecutive_count_resets_after_quiet_running() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60))
            .with_reset_after(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut state = BackoffState::new(t0);
        assert_eq!(state.next_delay(&backoff, t0), (Duration::from_secs(1), 0));
        state.started(t0 + Duration::from_secs(1));
        assert_eq!(
            state.next_delay(&backoff, t0 + Duration::from_secs(2)),
            (Duration::from_secs(2), 1)
        );
        state.started(t0 + Duration::from_secs(4));
        // Ran 10 s quietly: back to the first delay.
        assert_eq!(
            state.next_delay(&backoff, t0 + Duration::from_secs(14)),
            (Duration::from_secs(1), 0)
        );
    }
}
