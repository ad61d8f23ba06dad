//! [`Clock`]: the injectable source of time every component reads, so tests
//! run on tokio's paused clock.
//!
//! Two kinds of time are read in this system, and a test must control both:
//!
//! - **monotonic time** ([`Clock::now`], [`Clock::sleep`]): deadlines,
//!   windows, intervals, backoff. These are tokio's [`Instant`] and sleeps,
//!   so a test with `start_paused = true` moves them with
//!   `tokio::time::advance`.
//! - **wall-clock time** ([`Clock::wall`], [`Clock::unix_millis`]):
//!   timestamps stored or shown to people. `SystemTime` never pauses, so a
//!   component that stamps records takes a `Clock` and a test gives it
//!   [`Clock::tokio`], whose wall time moves with tokio's clock, or
//!   [`Clock::manual`] to set it by hand.
//!
//! A `Clock` is a cheap, cloneable value (an `Arc` inside), handed to each
//! component at construction like [`Telemetry`](crate::Telemetry); there is
//! no process-wide clock. [`Clock::default`] is [`Clock::system`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use mabeam_supervision_core::Clock;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let clock = Clock::tokio();
//! let (start, stamped) = (clock.now(), clock.unix_millis());
//! clock.sleep(Duration::from_secs(60)).await; // instant: the clock is paused
//! assert_eq!(clock.now() - start, Duration::from_secs(60));
//! assert_eq!(clock.unix_millis() - stamped, 60_000);
//! # }
//! ```

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::time::Instant;

/// Where a [`Clock`] reads time: implement it to drive time from elsewhere
/// (a simulation, a recorded trace). Most users need only the constructors
/// of [`Clock`].
pub trait TimeSource: Send + Sync + 'static {
    /// Monotonic time, on tokio's clock.
    fn now(&self) -> Instant;

    /// Wall-clock time.
    fn wall(&self) -> SystemTime;

    /// Completes at `deadline` of this source's monotonic time.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// The injectable clock: monotonic time and sleeps on tokio's clock, and a
/// wall clock that a test can control ([`Clock::tokio`] and [`Clock::manual`]
/// in tests).
#[derive(Clone)]
pub struct Clock {
    source: Arc<dyn TimeSource>,
}

impl Clock {
    /// Production time: tokio's monotonic clock and the system's wall clock.
    pub fn system() -> Self {
        Clock::from_source(SystemSource)
    }

    /// Production time read from the CPU's time-stamp counter (through
    /// `quanta`, calibrated against the system's monotonic clock at the
    /// first call), and the system's wall clock. Reading it costs a few
    /// nanoseconds where `clock_gettime` can cost 50 or more (on virtual
    /// machines), so it suits components that read time on every call,
    /// such as a rate limiter. Falls back to the system's monotonic clock
    /// where the counter is not usable. It does **not** follow tokio's
    /// paused clock: tests give such components [`Clock::system`] or
    /// [`Clock::tokio`] instead. Must be called inside a tokio runtime if
    /// tokio's clock is paused (its origin is tokio's now).
    pub fn fast() -> Self {
        let counter = quanta::Clock::new();
        Clock::from_source(CounterSource {
            origin_raw: counter.raw(),
            origin: Instant::now(),
            counter,
        })
    }

    /// Time that follows tokio's clock only: the wall clock starts at the
    /// system time of this call and advances exactly as tokio's clock does,
    /// so under a paused clock both stand still and both move with
    /// `tokio::time::advance`. Must be called inside a tokio runtime.
    pub fn tokio() -> Self {
        Clock::from_source(TokioSource {
            origin: Instant::now(),
            wall_origin: SystemTime::now(),
        })
    }

    /// A clock whose wall time is set by hand ([`ManualWall::set`],
    /// [`ManualWall::advance`]), starting at `start`; monotonic time and
    /// sleeps stay on tokio's clock.
    pub fn manual(start: SystemTime) -> (Self, ManualWall) {
        let wall = ManualWall(Arc::new(Mutex::new(start)));
        (Clock::from_source(ManualSource(wall.clone())), wall)
    }

    /// A clock reading `source`.
    pub fn from_source(source: impl TimeSource) -> Self {
        Clock {
            source: Arc::new(source),
        }
    }

    /// Monotonic now, on tokio's clock.
    pub fn now(&self) -> Instant {
        self.source.now()
    }

    /// Wall-clock now.
    pub fn wall(&self) -> SystemTime {
        self.source.wall()
    }

    /// Wall-clock now as milliseconds since the Unix epoch (0 before it).
    pub fn unix_millis(&self) -> u64 {
        self.wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64)
    }

    /// Completes after `duration` of this clock's monotonic time.
    pub fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.source.sleep_until(self.now() + duration)
    }

    /// Completes at `deadline` of this clock's monotonic time.
    pub fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        self.source.sleep_until(deadline)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock").finish_non_exhaustive()
    }
}

/// The handle that sets the wall time of a [`Clock::manual`].
#[derive(Debug, Clone)]
pub struct ManualWall(Arc<Mutex<SystemTime>>);

impl ManualWall {
    /// Sets the wall time.
    pub fn set(&self, time: SystemTime) {
        *self.0.lock() = time;
    }

    /// Moves the wall time forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.0.lock() += by;
    }
}

struct SystemSource;

impl TimeSource for SystemSource {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

struct CounterSource {
    counter: quanta::Clock,
    origin_raw: u64,
    origin: Instant,
}

impl TimeSource for CounterSource {
    fn now(&self) -> Instant {
        let since = self
            .counter
            .delta_as_nanos(self.origin_raw, self.counter.raw());
        self.origin + Duration::from_nanos(since)
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

struct TokioSource {
    origin: Instant,
    wall_origin: SystemTime,
}

impl TimeSource for TokioSource {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        self.wall_origin + (Instant::now() - self.origin)
    }
}

struct ManualSource(ManualWall);

impl TimeSource for ManualSource {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        *self.0.0.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_wall_time_follows_the_paused_clock() {
        let clock = Clock::tokio();
        let wall = clock.wall();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            clock.wall().duration_since(wall).unwrap(),
            Duration::from_secs(5)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn manual_wall_time_moves_only_when_set() {
        let (clock, wall) = Clock::manual(UNIX_EPOCH + Duration::from_secs(1_000));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.unix_millis(), 1_000_000);
        wall.advance(Duration::from_millis(1));
        assert_eq!(clock.unix_millis(), 1_000_001);
    }

    #[test]
    fn fast_clock_keeps_pace_with_the_system_clock() {
        let clock = Clock::fast();
        let (fast, system) = (clock.now(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (fast, system) = (clock.now() - fast, system.elapsed());
        assert!(fast >= Duration::from_millis(19), "{fast:?}");
        assert!(
            fast.abs_diff(system) < Duration::from_millis(5),
            "{fast:?} vs {system:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sleep_waits_for_the_clock() {
        let clock = Clock::system();
        let start = clock.now();
        let sleeping = tokio::spawn(clock.sleep(Duration::from_millis(250)));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(!sleeping.is_finished());
        sleeping.await.unwrap();
        assert_eq!(clock.now() - start, Duration::from_millis(250));
    }
}
