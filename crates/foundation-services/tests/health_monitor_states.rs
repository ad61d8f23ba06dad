//! HealthMonitor: per-service states from applications and named checks,
//! timeouts, the overall state, lists and recommendations, a telemetry
//! event on every change, and the periodic service, on tokio's paused
//! clock.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mabeam_foundation_services::{HealthMonitor, HealthMonitorError, HealthState};
use mabeam_supervision_core::{
    Application, ApplicationSpec, Clock, ErrorCode, Health, HealthCheck, ServiceDef, ServiceStatus,
    Telemetry,
    testkit::{TelemetryProbe, TestKit},
};

const WAIT: Duration = Duration::from_secs(1);
const CHANGED: &[&str] = &["health_monitor", "service", "changed"];
const OVERALL: &[&str] = &["health_monitor", "overall", "changed"];

/// A service of test children whose check answers by `flag`.
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

async fn app(telemetry: &Telemetry) -> (Application, Arc<AtomicBool>, Arc<AtomicBool>) {
    let (kit, _lifecycle) = TestKit::new();
    let (db, cache) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicBool::new(true)),
    );
    let app = ApplicationSpec::new("shop")
        .service(service(&kit, "db", &db))
        .service(service(&kit, "cache", &cache))
        .with_telemetry(telemetry.clone())
        .start()
        .await
        .unwrap();
    (app, db, cache)
}

fn monitor(telemetry: &Telemetry) -> HealthMonitor {
    HealthMonitor::builder()
        .clock(Clock::tokio())
        .telemetry(telemetry.clone())
        .interval(Duration::from_secs(10))
        .build()
        .unwrap()
}

// Each service of an application is followed; a change of state is an
// event, with the last error and since when.
#[tokio::test(start_paused = true)]
async fn a_failing_service_is_reported_with_its_error_and_since_when() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["health_monitor"]);
    let (app, db, _cache) = app(&telemetry).await;
    let monitor = monitor(&telemetry);
    monitor.monitor_application(&app).unwrap();

    let health = monitor.check_now().await;
    assert_eq!(health.overall, HealthState::Healthy);
    assert_eq!(health.services.len(), 2);
    assert!(health.failed.is_empty() && health.recommendations.is_empty());
    assert!(probe.drain().is_empty(), "nothing changed");

    db.store(false, Ordering::SeqCst);
    let health = monitor.check_now().await;
    let detail = health.service("shop/db").unwrap();
    assert_eq!(detail.state, HealthState::Unhealthy);
    assert_eq!(
        detail.last_error.as_deref(),
        Some("unhealthy: down on command")
    );
    assert_eq!(health.overall, HealthState::Degraded);
    assert_eq!(health.failed, ["shop/db".into()]);
    assert_eq!(health.recommendations.len(), 1);
    assert!(health.recommendations[0].starts_with("shop/db: unhealthy"));
    let event = probe.wait_for(CHANGED, WAIT).await.unwrap();
    assert_eq!(event.meta_str("service"), Some("shop/db"));
    assert_eq!(event.meta_str("from"), Some("healthy"));
    assert_eq!(event.meta_str("to"), Some("unhealthy"));
    assert_eq!(event.meta_str("error"), Some("unhealthy: down on command"));
    let event = probe.wait_for(OVERALL, WAIT).await.unwrap();
    assert_eq!(event.meta_str("to"), Some("degraded"));

    tokio::time::advance(Duration::from_secs(30)).await;
    let health = monitor.check_now().await;
    let detail = health.service("shop/db").unwrap();
    assert_eq!(
        detail.for_duration,
        Duration::from_secs(30),
        "still unhealthy since then"
    );
    assert!(probe.drain().is_empty(), "no change, no event");

    db.store(true, Ordering::SeqCst);
    let health = monitor.check_now().await;
    let detail = health.service("shop/db").unwrap();
    assert_eq!(detail.state, HealthState::Healthy);
    assert_eq!(detail.for_duration, Duration::ZERO);
    assert_eq!(
        detail.last_error.as_deref(),
        Some("unhealthy: down on command"),
        "kept"
    );
    assert_eq!(health.overall, HealthState::Healthy);
    let event = probe.wait_for(CHANGED, WAIT).await.unwrap();
    assert_eq!(event.meta_str("to"), Some("healthy"));
    app.stop().await.unwrap();
}

// A check that does not answer within its timeout is unhealthy.
#[tokio::test(start_paused = true)]
async fn a_check_that_does_not_answer_is_unhealthy() {
    let monitor = monitor(&Telemetry::new());
    monitor
        .add_check("stuck", Duration::from_secs(2), std::future::pending)
        .unwrap();
    monitor
        .add_check("fine", Duration::from_secs(2), || async { Ok(()) })
        .unwrap();
    let health = monitor.check_now().await;
    let stuck = health.service("stuck").unwrap();
    assert_eq!(stuck.health, Health::TimedOut(Duration::from_secs(2)));
    assert_eq!(stuck.state, HealthState::Unhealthy);
    assert!(health.recommendations[0].contains("no answer within 2s"));
    assert_eq!(health.overall, HealthState::Degraded);
}

// A critical service that is unhealthy makes the system unhealthy; so
// does every service being unhealthy.
#[tokio::test(start_paused = true)]
async fn critical_services_and_total_failure_make_the_system_unhealthy() {
    let telemetry = Telemetry::new();
    let (app, db, cache) = app(&telemetry).await;
    let monitor = monitor(&telemetry);
    monitor.monitor_application(&app).unwrap();
    monitor.set_critical("shop/db");
    cache.store(false, Ordering::SeqCst);
    assert_eq!(monitor.check_now().await.overall, HealthState::Degraded);
    db.store(false, Ordering::SeqCst);
    cache.store(true, Ordering::SeqCst);
    let health = monitor.check_now().await;
    assert_eq!(health.overall, HealthState::Unhealthy);
    assert!(health.service("shop/db").unwrap().critical);
    monitor.set_critical("nothing");
    db.store(true, Ordering::SeqCst);
    cache.store(false, Ordering::SeqCst);
    assert_eq!(monitor.check_now().await.overall, HealthState::Degraded);

    let all_down = HealthMonitor::builder()
        .clock(Clock::tokio())
        .build()
        .unwrap();
    all_down
        .add_check("a", WAIT, || async { Err("no".to_owned()) })
        .unwrap();
    all_down
        .add_check("b", WAIT, || async { Err("no".to_owned()) })
        .unwrap();
    assert_eq!(all_down.check_now().await.overall, HealthState::Unhealthy);
    app.stop().await.unwrap();
}

// A service stopped on request is degraded, a service failed for good is
// unhealthy; both listed, each with a recommendation.
#[tokio::test(start_paused = true)]
async fn stopped_and_failed_services() {
    let telemetry = Telemetry::new();
    let (app, _db, _cache) = app(&telemetry).await;
    let monitor = monitor(&telemetry);
    monitor.monitor_application(&app).unwrap();
    app.stop_service("cache").await.unwrap();
    let health = monitor.check_now().await;
    let cache = health.service("shop/cache").unwrap();
    assert_eq!(cache.health, Health::NotRunning);
    assert_eq!(cache.status, Some(ServiceStatus::Stopped));
    assert_eq!(cache.state, HealthState::Degraded);
    assert_eq!(health.degraded, ["shop/cache".into()]);
    assert!(health.recommendations[0].contains("stopped"));
    app.stop().await.unwrap();
    let health = monitor.check_now().await;
    // A stopped application's services are stopped: degraded, not failed.
    assert_eq!(health.degraded.len(), 2);
}

// Bad input gets a typed error and changes nothing; removing a source
// forgets its services.
#[tokio::test(start_paused = true)]
async fn sources_are_checked() {
    let telemetry = Telemetry::new();
    let (app, _db, _cache) = app(&telemetry).await;
    let monitor = monitor(&telemetry);
    monitor.monitor_application(&app).unwrap();
    let duplicate = monitor.monitor_application(&app).unwrap_err();
    assert_eq!(
        duplicate,
        HealthMonitorError::DuplicateSource("shop".into())
    );
    assert_eq!(duplicate.code(), 3401);
    let duplicate = monitor
        .add_check("shop", WAIT, || async { Ok(()) })
        .unwrap_err();
    assert_eq!(duplicate.code(), 3401);
    assert_eq!(monitor.remove("nope").unwrap_err().code(), 3402);
    let zero = monitor
        .add_check("x", Duration::ZERO, || async { Ok(()) })
        .unwrap_err();
    assert_eq!(zero.code(), 3404);
    assert_eq!(monitor.sources(), ["shop"]);
    let interval = HealthMonitor::builder()
        .interval(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(interval.code(), 3403);

    assert_eq!(monitor.check_now().await.services.len(), 2);
    monitor.remove("shop").unwrap();
    assert!(monitor.report().services.is_empty());
    assert!(monitor.check_now().await.services.is_empty());
    app.stop().await.unwrap();
}

// As a service, the monitor runs a round every interval by itself, and can
// watch the application it belongs to.
#[tokio::test(start_paused = true)]
async fn the_service_checks_on_its_interval() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["health_monitor"]);
    let monitor = monitor(&telemetry);
    let (kit, _lifecycle) = TestKit::new();
    let db = Arc::new(AtomicBool::new(true));
    let app = ApplicationSpec::new("foundation")
        .service(service(&kit, "db", &db))
        .service(monitor.service())
        .start()
        .await
        .unwrap();
    monitor.monitor_application(&app).unwrap();
    db.store(false, Ordering::SeqCst);
    let event = probe
        .wait_for(CHANGED, Duration::from_secs(11))
        .await
        .unwrap();
    assert_eq!(event.meta_str("service"), Some("foundation/db"));
    let report = monitor.report();
    assert_eq!(
        report.service("foundation/health_monitor").unwrap().state,
        HealthState::Healthy
    );
    assert_eq!(report.failed, ["foundation/db".into()]);
    app.stop().await.unwrap();
}

// Events are emitted with no lock held: a handler may read the monitor.
// The round runs on a thread (and runtime) of its own: were an event
// emitted under the monitor's lock, that thread would deadlock in the
// handler, and this test fails after 10 s instead of hanging.
#[test]
fn a_handler_may_read_the_monitor() {
    let telemetry = Telemetry::new();
    let monitor = monitor(&telemetry);
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = monitor.clone();
    telemetry
        .attach("reader", CHANGED, move |_| {
            let _ = tx.send(reader.report().failed.len());
        })
        .unwrap();
    monitor
        .add_check("down", WAIT, || async { Err("no".to_owned()) })
        .unwrap();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(monitor.check_now());
    });
    let failed = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no change event read the monitor within 10 s (emitted under its lock?)");
    assert_eq!(failed, 1);
}
