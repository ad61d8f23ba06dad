//! RateLimiter: admission, retry-after, status, reset, a limit of 0, typed
//! errors on bad input, idle eviction and the supervised service, on
//! tokio's paused clock.

mod support;

use std::time::Duration;

use mabeam_foundation_services::{Allowed, BucketStatus, RateLimitError, RateLimiter, Rule};
use mabeam_supervision_core::{
    Clock, ErrorCode, Health, Telemetry, error_code_range, testkit::TelemetryProbe,
};

fn limiter() -> RateLimiter {
    RateLimiter::builder()
        .clock(Clock::tokio())
        .rule("api", Rule::per_second(10).with_burst(5))
        .rule("login", Rule::per_minute(3))
        .rule("closed", Rule::per_second(0))
        .build()
        .unwrap()
}

fn limited(after_ms: u64) -> RateLimitError {
    RateLimitError::Limited {
        retry_after: Some(Duration::from_millis(after_ms)),
    }
}

// A full bucket admits its burst, then refuses with the time until the
// next token; tokens come back one interval at a time.
#[tokio::test(start_paused = true)]
async fn burst_then_one_token_per_interval() {
    let limiter = limiter();
    for left in (0..5).rev() {
        assert_eq!(limiter.check("ada", "api"), Ok(Allowed { remaining: left }));
    }
    assert_eq!(limiter.check("ada", "api"), Err(limited(100)));
    tokio::time::advance(Duration::from_millis(40)).await;
    assert_eq!(limiter.check("ada", "api"), Err(limited(60)));
    tokio::time::advance(Duration::from_millis(60)).await;
    assert_eq!(limiter.check("ada", "api"), Ok(Allowed { remaining: 0 }));
    assert_eq!(limiter.check("ada", "api"), Err(limited(100)));
}

// Over a long run a bucket admits `burst + elapsed / interval`, no more.
#[tokio::test(start_paused = true)]
async fn sustained_rate_is_the_rule() {
    let limiter = limiter();
    let mut admitted = 0;
    for _ in 0..1_000 {
        for _ in 0..3 {
            admitted += u32::from(limiter.check("ada", "api").is_ok());
        }
        tokio::time::advance(Duration::from_millis(10)).await;
    }
    // 10 s at 10/s plus the burst of 5 (the last advance is not used).
    assert_eq!(admitted, 5 + 99);
}

// Each (entity, operation) has its own bucket, each operation its own rule.
#[tokio::test(start_paused = true)]
async fn buckets_are_per_entity_and_operation() {
    let limiter = limiter();
    for _ in 0..3 {
        limiter.check("ada", "login").unwrap();
    }
    assert_eq!(limiter.check("ada", "login"), Err(limited(20_000)));
    assert_eq!(limiter.check("bob", "login"), Ok(Allowed { remaining: 2 }));
    assert_eq!(limiter.check("ada", "api"), Ok(Allowed { remaining: 4 }));
    assert_eq!(limiter.bucket_count(), 3);
}

// A refused check has the stable code 3201, in the crate's range.
#[tokio::test(start_paused = true)]
async fn limited_has_a_stable_code() {
    let limiter = limiter();
    let error = limiter.check("ada", "closed").unwrap_err();
    assert_eq!(error.code(), 3201);
    assert!(error.is_limited());
    let range = error_code_range("foundation-services").unwrap();
    for error in [
        error,
        RateLimitError::UnknownOperation("x".into()),
        RateLimitError::DuplicateRule("x".into()),
        RateLimitError::InvalidSweepInterval(Duration::ZERO),
    ] {
        assert!((3201..=3299).contains(&error.code()) && range.contains(&error.code()));
    }
}

// A limit of 0 always denies, whatever the time, and never says when.
#[tokio::test(start_paused = true)]
async fn a_zero_limit_always_denies() {
    let limiter = limiter();
    for _ in 0..3 {
        assert_eq!(
            limiter.check("ada", "closed"),
            Err(RateLimitError::Limited { retry_after: None })
        );
        tokio::time::advance(Duration::from_secs(3_600)).await;
    }
    assert_eq!(limiter.status("ada", "closed").unwrap().remaining, 0);
    limiter.reset("ada", "closed").unwrap();
    assert!(limiter.check("ada", "closed").is_err());
}

// status reads the real tokens left without taking one.
#[tokio::test(start_paused = true)]
async fn status_peeks_without_taking() {
    let limiter = limiter();
    let full = BucketStatus {
        remaining: 5,
        burst: 5,
        full_after: Duration::ZERO,
    };
    assert_eq!(limiter.status("ada", "api"), Ok(full));
    assert_eq!(limiter.status("ada", "api"), Ok(full));
    assert_eq!(limiter.bucket_count(), 0, "a peek makes no bucket");
    limiter.check("ada", "api").unwrap();
    limiter.check("ada", "api").unwrap();
    let status = limiter.status("ada", "api").unwrap();
    assert_eq!(status.remaining, 3);
    assert_eq!(status.full_after, Duration::from_millis(200));
    tokio::time::advance(Duration::from_millis(150)).await;
    assert_eq!(limiter.status("ada", "api").unwrap().remaining, 4);
    assert_eq!(limiter.check("ada", "api"), Ok(Allowed { remaining: 3 }));
}

// reset really refills the bucket, and only that one.
#[tokio::test(start_paused = true)]
async fn reset_refills() {
    let limiter = limiter();
    for _ in 0..5 {
        limiter.check("ada", "api").unwrap();
        limiter.check("bob", "api").unwrap();
    }
    assert!(limiter.check("ada", "api").is_err());
    limiter.reset("ada", "api").unwrap();
    assert_eq!(limiter.status("ada", "api").unwrap().remaining, 5);
    for left in (0..5).rev() {
        assert_eq!(limiter.check("ada", "api"), Ok(Allowed { remaining: left }));
    }
    assert!(
        limiter.check("bob", "api").is_err(),
        "bob's bucket untouched"
    );
}

// execute_with_limit runs the closure only when admitted.
#[tokio::test(start_paused = true)]
async fn execute_with_limit_runs_only_when_admitted() {
    let limiter = limiter();
    let mut runs = 0;
    for _ in 0..4 {
        let _ = limiter.execute_with_limit("ada", "login", || runs += 1);
    }
    assert_eq!(runs, 3);
    let refused = limiter.execute_with_limit("ada", "login", || runs += 1);
    assert_eq!(refused, Err(limited(20_000)));
    assert_eq!(runs, 3);
    // Async work: the closure returns the future to await.
    tokio::time::advance(Duration::from_secs(20)).await;
    let answer = limiter
        .execute_with_limit("ada", "login", || async { 7 })
        .unwrap()
        .await;
    assert_eq!(answer, 7);
}

// Bad input gets a typed error and changes nothing.
#[tokio::test(start_paused = true)]
async fn bad_input_is_a_typed_error() {
    let limiter = limiter();
    let unknown = RateLimitError::UnknownOperation("upload".into());
    assert_eq!(limiter.check("ada", "upload"), Err(unknown.clone()));
    assert_eq!(limiter.status("ada", "upload"), Err(unknown.clone()));
    assert_eq!(limiter.reset("ada", "upload"), Err(unknown.clone()));
    assert_eq!(
        limiter.execute_with_limit("ada", "upload", || ()),
        Err(unknown.clone())
    );
    assert_eq!(unknown.code(), 3202);
    assert_eq!(limiter.bucket_count(), 0);

    let build = |rule: Rule| {
        RateLimiter::builder()
            .clock(Clock::tokio())
            .rule("op", rule)
            .build()
            .map(|_| ())
    };
    let invalid = build(Rule::new(1, Duration::ZERO)).unwrap_err();
    assert!(
        matches!(&invalid, RateLimitError::InvalidRule { operation, .. } if &**operation == "op")
    );
    assert_eq!(invalid.code(), 3203);
    assert!(build(Rule::per_second(5).with_burst(0)).is_err());
    assert!(build(Rule::new(1, Duration::from_secs(u64::MAX / 2))).is_err());
    assert!(build(Rule::per_second(0).with_burst(0)).is_ok());
    let duplicate = RateLimiter::builder()
        .clock(Clock::tokio())
        .rule("op", Rule::per_second(1))
        .rule("op", Rule::per_second(2))
        .build()
        .unwrap_err();
    assert_eq!(duplicate, RateLimitError::DuplicateRule("op".into()));
    assert_eq!(duplicate.code(), 3204);
    let sweep = RateLimiter::builder()
        .clock(Clock::tokio())
        .sweep_interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(sweep.code(), 3205);
}

// Memory follows the active keys: refilled buckets are evicted, and an
// evicted bucket answers as it would have.
#[tokio::test(start_paused = true)]
async fn idle_buckets_are_evicted() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["rate_limiter"]);
    let limiter = RateLimiter::builder()
        .clock(Clock::tokio())
        .rule("api", Rule::per_second(10).with_burst(5))
        .telemetry(telemetry)
        .build()
        .unwrap();
    for key in 0..10_000 {
        limiter.check(&key.to_string(), "api").unwrap();
    }
    limiter.check("hot", "api").unwrap();
    limiter.check("hot", "api").unwrap();
    assert_eq!(limiter.bucket_count(), 10_001);
    assert_eq!(limiter.evict_idle(), 0, "every bucket is still refilling");

    tokio::time::advance(Duration::from_millis(100)).await;
    // One token back everywhere: the 10,000 are full, "hot" is not.
    assert_eq!(limiter.evict_idle(), 10_000);
    assert_eq!(limiter.bucket_count(), 1);
    let swept = probe
        .wait_for(&["rate_limiter", "swept"], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(swept.measurement("evicted"), Some(0.0));
    let swept = probe
        .wait_for(&["rate_limiter", "swept"], Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(swept.measurement("evicted"), Some(10_000.0));
    assert_eq!(swept.measurement("buckets"), Some(1.0));
    assert_eq!(limiter.status("hot", "api").unwrap().remaining, 4);
    assert_eq!(limiter.check("7", "api"), Ok(Allowed { remaining: 4 }));
}

// As a supervised service, the limiter sweeps on its interval, is healthy,
// and its buckets outlive a restart of its actor.
#[tokio::test(start_paused = true)]
async fn the_service_sweeps_on_its_interval() {
    let (limiter, app, mut probe) =
        support::sweeping_limiter(Clock::tokio(), Rule::per_second(1).with_burst(2)).await;
    assert_eq!(
        app.health().await.of("rate_limiter"),
        Some(&Health::Healthy)
    );
    limiter.check("ada", "api").unwrap();
    assert_eq!(limiter.bucket_count(), 1);

    let swept = probe
        .wait_for(&["rate_limiter", "swept"], Duration::from_secs(31))
        .await
        .unwrap();
    assert_eq!(swept.measurement("evicted"), Some(1.0));
    assert_eq!(limiter.bucket_count(), 0);

    limiter.check("ada", "api").unwrap();
    limiter.check("ada", "api").unwrap();
    app.restart_service("rate_limiter").await.unwrap();
    assert!(
        limiter.check("ada", "api").is_err(),
        "the table survived the restart"
    );
    app.stop().await.unwrap();
}
