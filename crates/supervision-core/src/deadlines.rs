//! [`Deadlines`]: many deadlines served by one timer of a [`Clock`], for
//! calls that each carry a timeout but almost always finish well before it.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    fmt,
    future::Future,
    hash::{BuildHasherDefault, Hasher},
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll, Waker},
};

use parking_lot::Mutex;
use tokio::{sync::Notify, time::Instant};

use crate::Clock;

/// Deadlines on one timer: [`at`](Self::at) gives a future that completes
/// at a deadline of the clock's monotonic time, like
/// [`Clock::sleep_until`], but arms no timer of its own.
///
/// A timer per call costs a registration in tokio's timer wheel, and
/// usually a wake of the runtime's parked thread that drives the timers (a
/// system call), only to be cancelled when the call answers. Here one task
/// sleeps until the earliest deadline pending; a deadline is armed with a
/// short lock and an insertion, and wakes the task only if it is earlier
/// than every deadline the task already sleeps towards (calls with one
/// timeout never do). Deadlines follow the clock, so a test on tokio's
/// paused clock times calls out exactly as with `Clock::sleep_until`.
///
/// Cheap to clone; every clone is the same set. The timer task starts at
/// the first deadline armed (inside a tokio runtime) and ends when the last
/// clone is dropped.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::{Clock, Deadlines};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let clock = Clock::tokio();
/// let deadlines = Deadlines::new(clock.clone());
/// let start = clock.now();
/// let answer = async { std::future::pending::<u32>().await }; // never answers
/// let outcome = tokio::select! {
///     n = answer => Some(n),
///     () = deadlines.at(start + Duration::from_secs(5)) => None,
/// };
/// assert_eq!(outcome, None);
/// assert_eq!(clock.now() - start, Duration::from_secs(5));
/// # }
/// ```
#[derive(Clone)]
pub struct Deadlines {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    state: Mutex<State>,
    /// Wakes the timer task: a deadline earlier than the one it sleeps
    /// towards, or the set dropped.
    rearm: Arc<Notify>,
}

/// Keys are handed out in sequence: multiplying spreads them over the
/// table (hashbrown reads the top bits), far cheaper than SipHash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8 | u64::from(*byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[derive(Default)]
struct State {
    /// Pending deadlines by time. One whose future is gone stays until it
    /// comes to the top (then it is dropped unfired).
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The waker of each pending deadline, by key.
    waiting: HashMap<u64, Waker, BuildHasherDefault<KeyHasher>>,
    next_key: u64,
    /// When the timer task wakes next; `None` while it waits to be rearmed.
    armed: Option<Instant>,
    /// Whether the timer task was started.
    started: bool,
}

impl State {
    /// Drops the deadlines at the top whose futures are gone; and all of
    /// them once they outnumber the pending ones by far (calls answered
    /// behind one that waits long), so the queue stays within a few times
    /// the calls pending.
    fn drop_stale(&mut self) {
        while let Some(Reverse((_, key))) = self.queue.peek() {
            if self.waiting.contains_key(key) {
                break;
            }
            self.queue.pop();
        }
        if self.queue.len() > 64 && self.queue.len() > 4 * self.waiting.len() {
            let waiting = &self.waiting;
            self.queue
                .retain(|Reverse((_, key))| waiting.contains_key(key));
        }
    }
}

impl Deadlines {
    /// A set of deadlines on `clock`.
    pub fn new(clock: Clock) -> Self {
        Deadlines {
            inner: Arc::new(Inner {
                clock,
                state: Mutex::new(State::default()),
                rearm: Arc::new(Notify::new()),
            }),
        }
    }

    /// The clock's monotonic now.
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// Completes at `deadline` of the clock's monotonic time (at once if
    /// it has passed). Armed when first polled; dropping it disarms it.
    pub fn at(&self, deadline: Instant) -> Deadline<'_> {
        Deadline {
            set: self,
            at: deadline,
            key: None,
            done: false,
        }
    }
}

impl Inner {
    /// Completes the deadlines that have come; returns the next one.
    fn fire(&self) -> Option<Instant> {
        let now = self.clock.now();
        let mut due = Vec::new();
        let mut state = self.state.lock();
        while let Some(Reverse((at, key))) = state.queue.peek().copied() {
            if at > now {
                break;
            }
            state.queue.pop();
            if let Some(waker) = state.waiting.remove(&key) {
                due.push(waker);
            }
        }
        state.drop_stale();
        let next = state.queue.peek().map(|Reverse((at, _))| *at);
        state.armed = next;
        drop(state);
        for waker in due {
            waker.wake();
        }
        next
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The timer task wakes, finds the set gone and ends.
        self.rearm.notify_one();
    }
}

/// Starts the timer task of `inner`. It holds the set weakly and sleeps
/// until the next deadline, or until rearmed.
fn start(inner: &Arc<Inner>) {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let rearm = inner.rearm.clone();
    let clock = inner.clock.clone();
    tokio::spawn(async move {
        let _restart = Restart(weak.clone());
        loop {
            let next = match weak.upgrade() {
                Some(inner) => inner.fire(),
                None => return,
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        () = clock.sleep_until(at) => {}
                        () = rearm.notified() => {}
                    }
                }
                None => rearm.notified().await,
            }
        }
    });
}

/// Lets the next deadline start a new timer task if this one is dropped
/// without the set (its runtime shut down).
struct Restart(Weak<Inner>);

impl Drop for Restart {
    fn drop(&mut self) {
        if let Some(inner) = self.0.upgrade() {
            let mut state = inner.state.lock();
            state.started = false;
            state.armed = None;
        }
    }
}

impl fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.state.lock();
        f.debug_struct("Deadlines")
            .field("pending", &state.waiting.len())
            .field("armed", &state.armed)
            .finish()
    }
}

/// A deadline of [`Deadlines`]: a future that completes at its time.
pub struct Deadline<'a> {
    set: &'a Deadlines,
    at: Instant,
    /// Its key while armed.
    key: Option<u64>,
    done: bool,
}

impl Future for Deadline<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(());
        }
        let inner = &this.set.inner;
        let mut state = inner.state.lock();
        if let Some(key) = this.key {
            return match state.waiting.get_mut(&key) {
                Some(waker) => {
                    if !waker.will_wake(cx.waker()) {
                        *waker = cx.waker().clone();
                    }
                    Poll::Pending
                }
                // Fired.
                None => {
                    this.key = None;
                    this.done = true;
                    Poll::Ready(())
                }
            };
        }
        let key = state.next_key;
        state.next_key = state.next_key.wrapping_add(1);
        state.queue.push(Reverse((this.at, key)));
        state.waiting.insert(key, cx.waker().clone());
        this.key = Some(key);
        if state.armed.is_none_or(|armed| this.at < armed) {
            // Earlier than anything the timer task sleeps towards.
            state.armed = Some(this.at);
            let started = std::mem::replace(&mut state.started, true);
            drop(state);
            if started {
                inner.rearm.notify_one();
            } else {
                start(inner);
            }
        }
        Poll::Pending
    }
}

impl Drop for Deadline<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut state = self.set.inner.state.lock();
            state.waiting.remove(&key);
            state.drop_stale();
        }
    }
}

impl fmt::Debug for Deadline<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline")
            .field("at", &self.at)
            .field("armed", &self.key.is_some())
            .field("done", &self.done)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_complete_at_their_time_in_any_order() {
        let clock = Clock::tokio();
        let deadlines = Deadlines::new(clock.clone());
        let start = clock.now();
        let mut done = Vec::new();
        let mut waits: futures::stream::FuturesUnordered<_> = [300u64, 100, 200]
            .into_iter()
            .map(|ms| {
                let deadlines = &deadlines;
                async move {
                    deadlines.at(start + Duration::from_millis(ms)).await;
                    ms
                }
            })
            .collect();
        use futures::StreamExt;
        while let Some(ms) = waits.next().await {
            assert_eq!(clock.now() - start, Duration::from_millis(ms));
            done.push(ms);
        }
        assert_eq!(done, [100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_rearms_the_timer() {
        let clock = Clock::tokio();
        let deadlines = Deadlines::new(clock.clone());
        let start = clock.now();
        // The timer task sleeps towards 10 s...
        let late = deadlines.at(start + Duration::from_secs(10));
        tokio::pin!(late);
        assert!(futures::poll!(late.as_mut()).is_pending());
        // ...and is woken for one at 1 s.
        deadlines.at(start + Duration::from_secs(1)).await;
        assert_eq!(clock.now() - start, Duration::from_secs(1));
        late.await;
        assert_eq!(clock.now() - start, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_dropped_behind_a_pending_one_do_not_pile_up() {
        let clock = Clock::tokio();
        let deadlines = Deadlines::new(clock.clone());
        let start = clock.now();
        let first = deadlines.at(start + Duration::from_secs(5));
        tokio::pin!(first);
        assert!(futures::poll!(first.as_mut()).is_pending());
        for ms in 0..10_000 {
            let later = deadlines.at(start + Duration::from_millis(5_001 + ms));
            tokio::pin!(later);
            assert!(futures::poll!(later.as_mut()).is_pending());
        }
        let queued = deadlines.inner.state.lock().queue.len();
        assert!(queued <= 65, "{queued} deadlines queued for 1 pending");
        first.await;
        assert_eq!(clock.now() - start, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_deadline_never_fires_and_a_passed_one_completes() {
        let clock = Clock::tokio();
        let deadlines = Deadlines::new(clock.clone());
        let start = clock.now();
        {
            let dropped = deadlines.at(start + Duration::from_secs(1));
            tokio::pin!(dropped);
            assert!(futures::poll!(dropped.as_mut()).is_pending());
        }
        assert_eq!(deadlines.inner.state.lock().waiting.len(), 0);
        deadlines.at(start + Duration::from_secs(2)).await;
        assert_eq!(clock.now() - start, Duration::from_secs(2));
        // A deadline in the past completes without waiting.
        deadlines.at(start).await;
        assert_eq!(clock.now() - start, Duration::from_secs(2));
    }
}
