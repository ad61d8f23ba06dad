//! Restart intensity: at most `max_restarts` restarts within `max_seconds`,
//! counted per supervisor over a sliding window, as OTP counts them.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

use crate::{ExitReason, FlagsError};

/// How many restarts a supervisor allows within a sliding window before it
/// gives up: stops all its children and exits, escalating to its parent.
///
/// Defaults, as OTP's: 3 restarts within 5 seconds. A restart counts while it
/// is less than `max_seconds` old; the `max_restarts + 1`-th restart within
/// the window is refused.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::Intensity;
///
/// let intensity = Intensity { max_restarts: 10, max_seconds: Duration::from_secs(1) };
/// assert!(intensity.validate().is_ok());
/// assert!(Intensity { max_restarts: 1, max_seconds: Duration::ZERO }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    /// Restarts allowed within the window (0 means: give up at the first).
    pub max_restarts: u32,
    /// The window's length; must be longer than zero.
    pub max_seconds: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 3,
            max_seconds: Duration::from_secs(5),
        }
    }
}

impl Intensity {
    /// Checks the window is longer than zero.
    pub fn validate(&self) -> Result<(), FlagsError> {
        if self.max_seconds.is_zero() {
            return Err(FlagsError::InvalidPeriod(self.max_seconds));
        }
        Ok(())
    }
}

/// The restarts of one supervisor within its window.
#[derive(Debug)]
pub(crate) struct RestartLog {
    intensity: Intensity,
    restarts: VecDeque<Instant>,
}

impl RestartLog {
    pub(crate) fn new(intensity: Intensity) -> Self {
        RestartLog {
            intensity,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; false if it exceeds the intensity, in which
    /// case the supervisor must give up.
    pub(crate) fn record(&mut self, now: Instant) -> bool {
        let window = self.intensity.max_seconds;
        while let Some(&oldest) = self.restarts.front() {
            if now.saturating_duration_since(oldest) >= window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
        self.restarts.push_back(now);
        self.restarts.len() <= self.intensity.max_restarts as usize
    }

    /// The restarts counted in the window at the last record.
    pub(crate) fn count(&self) -> usize {
        self.restarts.len()
    }

    /// The exit reason of a supervisor that exceeded this intensity:
    /// `shutdown` with the cause, as OTP's supervisor exits, so escalation
    /// follows the parent's restart type (a permanent parent restarts it, a
    /// transient or temporary one does not).
    pub(crate) fn exceeded(&self) -> ExitReason {
        ExitReason::Shutdown(Some(
            format!(
                "reached max restart intensity: more than {} restarts in {:?}",
                self.intensity.max_restarts, self.intensity.max_seconds
            )
            .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(max_restarts: u32, secs: u64) -> RestartLog {
        RestartLog::new(Intensity {
            max_restarts,
            max_seconds: Duration::from_secs(secs),
        })
    }

    #[test]
    fn refuses_the_restart_past_the_limit() {
        let mut log = log(2, 5);
        let t0 = Instant::now();
        assert!(log.record(t0));
        assert!(log.record(t0 + Duration::from_secs(1)));
        assert!(!log.record(t0 + Duration::from_secs(2)));
    }

    #[test]
    fn window_slides() {
        let mut log = log(2, 5);
        let t0 = Instant::now();
        assert!(log.record(t0));
        assert!(log.record(t0 + Duration::from_secs(3)));
        // The first restart has left the window: two remain counted.
        assert!(log.record(t0 + Duration::from_secs(5)));
        assert_eq!(log.count(), 2);
        // Still two in the window (3 s and 5 s), a third inside it fails.
        assert!(!log.record(t0 + Duration::from_secs(6)));
    }

    #[test]
    fn zero_restarts_gives_up_at_once() {
        let mut log = log(0, 5);
        assert!(!log.record(Instant::now()));
    }
}
