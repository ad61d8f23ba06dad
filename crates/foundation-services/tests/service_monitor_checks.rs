//! ServiceMonitor: each service's health check runs under its own timeout
//! and counts only against itself (issue 21, item 3): a slow check inside
//! its timeout is healthy, a stuck one restarts its own service only, on
//! tokio's paused clock.

use std::time::Duration;

use mabeam_foundation_services::{Decision, ServiceMonitor};
use mabeam_supervision_core::{
    Application, ApplicationSpec, Backoff, Clock, HealthCheck, ServiceDef, testkit::TestKit,
};

/// A shop whose `db` check takes `db_check` (within a 5 s timeout) and
/// whose `cache` check answers at once.
async fn shop(kit: &TestKit, db_check: Duration) -> Application {
    ApplicationSpec::new("shop")
        .service(
            ServiceDef::child(kit.spec("db")).with_health_check(HealthCheck::new(
                Duration::from_secs(5),
                move |_| async move {
                    tokio::time::sleep(db_check).await;
                    Ok(())
                },
            )),
        )
        .service(
            ServiceDef::child(kit.spec("cache"))
                .with_health_check(HealthCheck::new(Duration::from_secs(5), |_| async {
                    Ok(())
                })),
        )
        .start()
        .await
        .unwrap()
}

fn monitor(app: &Application) -> ServiceMonitor {
    let monitor = ServiceMonitor::builder()
        .clock(Clock::tokio())
        .max_misses(3)
        .ping_timeout(Duration::from_secs(1))
        .backoff(Backoff::new(
            Duration::from_secs(10),
            Duration::from_secs(40),
        ))
        .build()
        .unwrap();
    monitor.watch(app, "db").unwrap();
    monitor.watch(app, "cache").unwrap();
    monitor
}

/// One round, bounded: the decisions by name.
async fn round(monitor: &ServiceMonitor) -> Vec<(String, Decision)> {
    tokio::time::timeout(Duration::from_secs(60), monitor.ping_all())
        .await
        .expect("a round did not end within 60 s")
        .into_iter()
        .map(|(name, decision)| (name.to_string(), decision))
        .collect()
}

// A check taking 2 s, inside its own 5 s timeout, is healthy however short
// the ping timeout (1 s); neither it nor its sibling is ever restarted.
#[tokio::test(start_paused = true)]
async fn a_slow_check_inside_its_own_timeout_restarts_nothing() {
    let (kit, _lifecycle) = TestKit::new();
    let app = shop(&kit, Duration::from_secs(2)).await;
    let monitor = monitor(&app);
    for _ in 0..4 {
        assert_eq!(
            round(&monitor).await,
            [
                ("shop/cache".to_owned(), Decision::Healthy),
                ("shop/db".to_owned(), Decision::Healthy),
            ]
        );
    }
    assert!(monitor.watched().iter().all(|w| w.restarts.is_empty()));
    app.stop().await.unwrap();
}

// A check that never answers times out at its own 5 s and, after three
// misses, restarts its own service; its healthy sibling is never touched.
#[tokio::test(start_paused = true)]
async fn a_stuck_check_counts_only_against_its_own_service() {
    let (kit, _lifecycle) = TestKit::new();
    let app = shop(&kit, Duration::from_secs(3600)).await;
    let monitor = monitor(&app);
    let missed = |misses| Decision::Missed {
        misses,
        reason: "timed out after 5s".to_owned(),
    };
    for misses in 1..=2 {
        assert_eq!(
            round(&monitor).await,
            [
                ("shop/cache".to_owned(), Decision::Healthy),
                ("shop/db".to_owned(), missed(misses)),
            ]
        );
    }
    assert_eq!(
        round(&monitor).await,
        [
            ("shop/cache".to_owned(), Decision::Healthy),
            ("shop/db".to_owned(), Decision::Restarted { attempt: 1 }),
        ]
    );
    let watched = monitor.watched();
    let restarts = |name: &str| {
        watched
            .iter()
            .find(|w| &*w.name == name)
            .map(|w| w.restarts.len())
    };
    assert_eq!(restarts("shop/cache"), Some(0));
    assert_eq!(restarts("shop/db"), Some(1));
    app.stop().await.unwrap();
}
