//! RateLimiter: what `cargo xtask mutants foundation-services --file
//! 'rate_limiter*'` found no test for: a rule read back as built and by
//! its operation, the largest span, one entity's buckets per operation, which error is
//! "limited", the Debug output, and the service sweeping on the injected
//! clock (not on whatever clock the runtime has).

mod support;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::future::BoxFuture;
use mabeam_foundation_services::{RateLimitError, RateLimiter, Rule};
use mabeam_supervision_core::{Clock, TimeSource};
use tokio::{sync::watch, time::Instant};

// Each operation's rule reads back as given; an operation without one has
// none.
#[test]
fn a_rule_reads_back_by_its_operation() {
    let login = Rule::per_minute(3);
    let search = Rule::per_second(10).with_burst(20);
    let limiter = RateLimiter::builder()
        .rule("login", login)
        .rule("search", search)
        .build()
        .unwrap();
    assert_eq!(limiter.rule("login"), Some(login));
    assert_eq!(limiter.rule("search"), Some(search));
    assert_eq!(limiter.rule("upload"), None);
}

// A rule reads back as built; a limit of 0 has no interval (a token never
// comes back). (The doc tests say so too; the mutants run counts only
// these test files.)
#[test]
fn a_rule_reads_back_as_built() {
    let rule = Rule::new(100, Duration::from_secs(2)).with_burst(10);
    assert_eq!(
        (rule.limit(), rule.period(), rule.burst()),
        (100, Duration::from_secs(2), 10)
    );
    assert_eq!(rule.interval(), Some(Duration::from_millis(20)));
    let closed = Rule::per_second(0);
    assert_eq!((closed.limit(), closed.burst()), (0, 0));
    assert_eq!(closed.interval(), None);
    assert_eq!(Rule::per_minute(3).period(), Duration::from_secs(60));
}

// A bucket's span (burst x interval) must stay under 2^62 ns: exactly
// 2^62 is refused, one interval less is fine.
#[test]
fn a_span_of_2_pow_62_ns_is_refused() {
    let interval = Duration::from_nanos(1 << 31);
    let at_limit = Rule::new(1, interval).with_burst(1 << 31);
    let under = Rule::new(1, interval).with_burst((1 << 31) - 1);
    assert!(matches!(
        at_limit.validate("op"),
        Err(RateLimitError::InvalidRule { .. })
    ));
    assert_eq!(under.validate("op"), Ok(()));
}

// One entity's buckets of two operations are two buckets, however they
// are reached: status and reset of the second never touch the first
// (both look a bucket up by a borrowed key, with no allocation).
#[test]
fn one_entitys_operations_have_their_own_buckets() {
    let limiter = RateLimiter::builder()
        .rule("first", Rule::per_minute(5))
        .rule("second", Rule::per_minute(7))
        .build()
        .unwrap();
    limiter.check("ada", "first").unwrap();
    limiter.check("ada", "first").unwrap();
    assert_eq!(limiter.status("ada", "second").unwrap().remaining, 7);
    assert_eq!(limiter.check("ada", "second").unwrap().remaining, 6);
    assert_eq!(limiter.status("ada", "second").unwrap().remaining, 6);
    limiter.reset("ada", "second").unwrap();
    assert_eq!(limiter.status("ada", "second").unwrap().remaining, 7);
    assert_eq!(limiter.status("ada", "first").unwrap().remaining, 3);
    assert_eq!(limiter.bucket_count(), 1);
}

// `is_limited` says "the budget is spent", and nothing else: bad input is
// not limited.
#[test]
fn only_a_refused_check_is_limited() {
    let limiter = RateLimiter::builder()
        .rule("login", Rule::per_minute(1))
        .build()
        .unwrap();
    limiter.check("ada", "login").unwrap();
    assert!(limiter.check("ada", "login").unwrap_err().is_limited());
    assert!(!limiter.check("ada", "upload").unwrap_err().is_limited());
    let invalid = RateLimiter::builder()
        .sweep_interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(!invalid.is_limited());
}

// Debug output names the limiter, its rules and how many buckets it holds.
#[test]
fn debug_shows_the_name_the_rules_and_the_buckets() {
    let limiter = RateLimiter::builder()
        .name("edge")
        .rule("login", Rule::per_minute(3))
        .build()
        .unwrap();
    limiter.check("ada", "login").unwrap();
    let shown = format!("{limiter:?}");
    for part in [r#"name: "edge""#, r#""login""#, "limit: 3", "buckets: 1"] {
        assert!(shown.contains(part), "{part} missing from {shown}");
    }
}

/// Time that moves only when the test moves it, sleeps included: tokio's
/// paused clock moving on does not wake them.
struct SteppedTime {
    base: Instant,
    offset: Arc<watch::Sender<Duration>>,
}

impl TimeSource for SteppedTime {
    fn now(&self) -> Instant {
        self.base + *self.offset.borrow()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + *self.offset.borrow()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let mut offset = self.offset.subscribe();
        let base = self.base;
        Box::pin(async move {
            let _ = offset.wait_for(|offset| base + *offset >= deadline).await;
        })
    }
}

// The service sweeps when the limiter's clock says so: tokio's clock
// running a day ahead sweeps nothing; the limiter's clock passing the
// interval does.
#[tokio::test(start_paused = true)]
async fn the_service_sweeps_on_the_limiters_clock() {
    let stepped = Arc::new(watch::Sender::new(Duration::ZERO));
    let clock = Clock::from_source(SteppedTime {
        base: Instant::now(),
        offset: stepped.clone(),
    });
    let (limiter, app, mut probe) = support::sweeping_limiter(clock, Rule::per_second(1)).await;
    limiter.check("ada", "api").unwrap();

    // A day on tokio's clock: `next` times out on it, and no sweep came.
    let nothing = probe.next(Duration::from_secs(86_400)).await;
    assert!(nothing.is_err(), "swept on tokio's clock: {nothing:?}");
    assert_eq!(limiter.bucket_count(), 1);

    stepped.send_replace(Duration::from_secs(30));
    let swept = probe
        .wait_for(&["rate_limiter", "swept"], Duration::from_secs(60))
        .await
        .expect("no sweep once the limiter's clock passed the interval");
    assert_eq!(swept.measurement("evicted"), Some(1.0));
    assert_eq!(limiter.bucket_count(), 0);
    app.stop().await.unwrap();
}
