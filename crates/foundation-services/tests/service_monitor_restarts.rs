//! ServiceMonitor: missed pings, restarts through the application, the
//! backoff, never a restart while the supervisor restarts or after a stop
//! on request, ping timeouts, telemetry for every decision, and the
//! periodic service, on tokio's paused clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mabeam_foundation_services::{Decision, ServiceMonitor, ServiceMonitorError, SkipReason};
use mabeam_supervision_core::{
    Application, ApplicationSpec, Backoff, Clock, ErrorCode, HealthCheck, ServiceDef, Telemetry,
    events,
    testkit::{self, TelemetryProbe, TestKit},
};

const WAIT: Duration = Duration::from_secs(1);

/// A service of a test child whose check answers by `flag`.
fn service(kit: &TestKit, name: &str, flag: &Arc<AtomicBool>) -> ServiceDef {
    let flag = flag.clone();
    ServiceDef::child(kit.spec(name)).with_health_check(HealthCheck::new(
        Duration::from_millis(500),
        move |_| {
            let up = flag.load(Ordering::SeqCst);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("down on command".to_owned())
                }
            }
        },
    ))
}

async fn shop(telemetry: &Telemetry) -> (Application, Arc<AtomicBool>) {
    let (kit, _lifecycle) = TestKit::new();
    let db = Arc::new(AtomicBool::new(true));
    let app = ApplicationSpec::new("shop")
        .service(service(&kit, "db", &db))
        .with_telemetry(telemetry.clone())
        .start()
        .await
        .unwrap();
    (app, db)
}

fn monitor(telemetry: &Telemetry) -> ServiceMonitor {
    ServiceMonitor::builder()
        .clock(Clock::tokio())
        .telemetry(telemetry.clone())
        .max_misses(3)
        .ping_timeout(Duration::from_secs(1))
        .backoff(Backoff::new(
            Duration::from_secs(10),
            Duration::from_secs(40),
        ))
        .build()
        .unwrap()
}

async fn ping(monitor: &ServiceMonitor) -> Decision {
    let mut decisions = monitor.ping_all().await;
    assert_eq!(decisions.len(), 1);
    decisions.pop().unwrap().1
}

fn missed(misses: u32) -> Decision {
    Decision::Missed {
        misses,
        reason: "unhealthy: down on command".to_owned(),
    }
}

// After N missed pings the application restarts the service: a new
// process, a record, and an event for every decision.
#[tokio::test(start_paused = true)]
async fn n_missed_pings_restart_the_service() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["service_monitor"]);
    let (app, db) = shop(&telemetry).await;
    let monitor = monitor(&telemetry);
    monitor.watch(&app, "db").unwrap();
    assert_eq!(ping(&monitor).await, Decision::Healthy);
    let before = app
        .status()
        .await
        .service("db")
        .unwrap()
        .handle
        .clone()
        .unwrap();

    db.store(false, Ordering::SeqCst);
    assert_eq!(ping(&monitor).await, missed(1));
    assert_eq!(ping(&monitor).await, missed(2));
    assert_eq!(ping(&monitor).await, Decision::Restarted { attempt: 1 });
    let after = app
        .status()
        .await
        .service("db")
        .unwrap()
        .handle
        .clone()
        .unwrap();
    assert_ne!(before, after, "a new process");
    assert!(!before.is_alive());

    let event = probe
        .wait_for(&["service_monitor", "ping", "missed"], WAIT)
        .await
        .unwrap();
    assert_eq!(event.meta_str("service"), Some("db"));
    assert_eq!(event.meta_str("application"), Some("shop"));
    assert_eq!(event.measurement("misses"), Some(1.0));
    assert_eq!(event.meta_str("reason"), Some("unhealthy: down on command"));
    probe
        .wait_for(&["service_monitor", "restart", "requested"], WAIT)
        .await
        .unwrap();
    let event = probe
        .wait_for(&["service_monitor", "restart", "succeeded"], WAIT)
        .await
        .unwrap();
    assert_eq!(event.measurement("attempt"), Some(1.0));

    let watched = &monitor.watched()[0];
    assert_eq!(&*watched.name, "shop/db");
    assert_eq!(watched.restarts.len(), 1);
    assert_eq!(watched.restarts[0].result, Ok(()));
    assert_eq!(watched.attempts, 1);
    app.stop().await.unwrap();
}

// A service that keeps failing is restarted less and less often; once it
// has been healthy for the backoff's reset period, the count starts over.
#[tokio::test(start_paused = true)]
async fn a_service_that_keeps_failing_is_backed_off() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["service_monitor", "restart"]);
    let (app, db) = shop(&telemetry).await;
    let monitor = monitor(&telemetry);
    monitor.watch(&app, "db").unwrap();
    db.store(false, Ordering::SeqCst);
    for misses in 1..=2 {
        assert_eq!(ping(&monitor).await, missed(misses));
    }
    assert_eq!(ping(&monitor).await, Decision::Restarted { attempt: 1 });
    for misses in 1..=2 {
        assert_eq!(ping(&monitor).await, missed(misses));
    }
    // Three misses again, but the first restart's backoff (10 s) runs.
    assert_eq!(
        ping(&monitor).await,
        Decision::Deferred {
            retry_in: Duration::from_secs(10)
        }
    );
    let deferred = probe
        .wait_for(&["service_monitor", "restart", "deferred"], WAIT)
        .await
        .unwrap();
    assert_eq!(deferred.measurement("retry_in_ms"), Some(10_000.0));
    tokio::time::advance(Duration::from_secs(4)).await;
    assert_eq!(
        ping(&monitor).await,
        Decision::Deferred {
            retry_in: Duration::from_secs(6)
        }
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(ping(&monitor).await, Decision::Restarted { attempt: 2 });
    for misses in 1..=2 {
        assert_eq!(ping(&monitor).await, missed(misses));
    }
    // The second waits twice as long.
    assert_eq!(
        ping(&monitor).await,
        Decision::Deferred {
            retry_in: Duration::from_secs(20)
        }
    );

    db.store(true, Ordering::SeqCst);
    assert_eq!(ping(&monitor).await, Decision::Recovered);
    probe.drain();
    tokio::time::advance(Duration::from_secs(40)).await;
    assert_eq!(ping(&monitor).await, Decision::Healthy);
    assert_eq!(
        monitor.watched()[0].attempts,
        0,
        "healthy for reset_after: starts over"
    );
    db.store(false, Ordering::SeqCst);
    for misses in 1..=2 {
        assert_eq!(ping(&monitor).await, missed(misses));
    }
    assert_eq!(ping(&monitor).await, Decision::Restarted { attempt: 1 });
    assert_eq!(monitor.watched()[0].restarts.len(), 3);
    app.stop().await.unwrap();
}

// A service its supervisor is restarting (here waiting out a restart
// backoff) is never restarted by the monitor, however many pings it misses.
#[tokio::test(start_paused = true)]
async fn never_restarts_what_the_supervisor_is_restarting() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &[]);
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("shop")
        .service(ServiceDef::child(kit.spec("flaky").with_backoff(
            Backoff::new(Duration::from_secs(60), Duration::from_secs(60)),
        )))
        .with_telemetry(telemetry.clone())
        .start()
        .await
        .unwrap();
    let monitor = monitor(&telemetry);
    monitor.watch(&app, "flaky").unwrap();
    let child = app
        .status()
        .await
        .service("flaky")
        .unwrap()
        .handle
        .clone()
        .unwrap();
    testkit::crash(&child).await;
    probe
        .wait_for(events::BACKOFF_SCHEDULED, WAIT)
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            ping(&monitor).await,
            Decision::Skipped(SkipReason::SupervisorRestarting)
        );
    }
    let skipped = probe
        .wait_for(&["service_monitor", "restart", "skipped"], WAIT)
        .await
        .unwrap();
    assert_eq!(skipped.meta_str("reason"), Some("supervisor_restarting"));
    assert!(monitor.watched()[0].restarts.is_empty());
    assert!(
        !probe
            .drain()
            .iter()
            .any(|e| e.is(&["service_monitor", "restart", "requested"])),
        "no restart asked for"
    );

    tokio::time::advance(Duration::from_secs(60)).await;
    probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    assert_eq!(ping(&monitor).await, Decision::Healthy);
    app.stop().await.unwrap();
}

// A service stopped on request, or a stopped application, is left alone.
#[tokio::test(start_paused = true)]
async fn stopped_services_and_applications_are_left_alone() {
    let telemetry = Telemetry::new();
    let (app, _db) = shop(&telemetry).await;
    let monitor = monitor(&telemetry);
    monitor.watch(&app, "db").unwrap();
    app.stop_service("db").await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            ping(&monitor).await,
            Decision::Skipped(SkipReason::StoppedOnRequest)
        );
    }
    app.stop().await.unwrap();
    for _ in 0..5 {
        assert_eq!(
            ping(&monitor).await,
            Decision::Skipped(SkipReason::ApplicationDown)
        );
    }
    assert!(monitor.watched()[0].restarts.is_empty());
}

// A check that does not answer within its own timeout is a miss (the
// ping timeout bounds only the application's status).
#[tokio::test(start_paused = true)]
async fn a_check_without_an_answer_in_its_timeout_is_a_miss() {
    let telemetry = Telemetry::new();
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("shop")
        .service(
            ServiceDef::child(kit.spec("stuck"))
                .with_health_check(HealthCheck::new(Duration::from_secs(60), |_| {
                    std::future::pending()
                })),
        )
        .start()
        .await
        .unwrap();
    let monitor = monitor(&telemetry);
    monitor.watch(&app, "stuck").unwrap();
    assert_eq!(
        ping(&monitor).await,
        Decision::Missed {
            misses: 1,
            reason: "timed out after 60s".to_owned()
        }
    );
    app.stop().await.unwrap();
}

// Bad input gets a typed error and changes nothing.
#[tokio::test(start_paused = true)]
async fn bad_input_is_a_typed_error() {
    let telemetry = Telemetry::new();
    let (app, _db) = shop(&telemetry).await;
    let monitor = monitor(&telemetry);
    let unknown = monitor.watch(&app, "nope").unwrap_err();
    assert!(
        matches!(&unknown, ServiceMonitorError::UnknownService { service, .. } if &**service == "nope")
    );
    assert_eq!(unknown.code(), 3501);
    monitor.watch(&app, "db").unwrap();
    assert_eq!(monitor.watch(&app, "db").unwrap_err().code(), 3502);
    assert_eq!(monitor.unwatch("shop/nope").unwrap_err().code(), 3503);
    let builder = || ServiceMonitor::builder().clock(Clock::tokio());
    assert_eq!(
        builder()
            .interval(Duration::ZERO)
            .build()
            .unwrap_err()
            .code(),
        3504
    );
    assert_eq!(
        builder()
            .ping_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .code(),
        3504
    );
    assert_eq!(builder().max_misses(0).build().unwrap_err().code(), 3505);
    let inverted = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
    assert_eq!(
        builder().backoff(inverted).build().unwrap_err().code(),
        3506
    );
    assert_eq!(monitor.watched().len(), 1);
    monitor.unwatch("shop/db").unwrap();
    assert!(monitor.ping_all().await.is_empty());
    app.stop().await.unwrap();
}

// As a service in the application it watches, the monitor pings on its
// interval and restarts a failing sibling by itself.
#[tokio::test(start_paused = true)]
async fn the_service_pings_on_its_interval() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["service_monitor"]);
    let monitor = ServiceMonitor::builder()
        .clock(Clock::tokio())
        .telemetry(telemetry.clone())
        .interval(Duration::from_secs(5))
        .build()
        .unwrap();
    let (kit, _lifecycle) = TestKit::new();
    let db = Arc::new(AtomicBool::new(true));
    let app = ApplicationSpec::new("foundation")
        .service(service(&kit, "db", &db))
        .service(monitor.service())
        .start()
        .await
        .unwrap();
    monitor.watch(&app, "db").unwrap();
    db.store(false, Ordering::SeqCst);
    let restarted = probe
        .wait_for(
            &["service_monitor", "restart", "succeeded"],
            Duration::from_secs(16),
        )
        .await
        .unwrap();
    assert_eq!(restarted.meta_str("service"), Some("db"));
    app.stop().await.unwrap();
}
