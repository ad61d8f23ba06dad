//! The HealthMonitor and the ServiceMonitor may run inside the application
//! they watch without keeping it alive: when its user drops the last
//! `Application`, the application stops, monitors and all.

use std::time::Duration;

use mabeam_foundation_services::{
    Decision, HealthMonitor, HealthState, ServiceMonitor, SkipReason,
};
use mabeam_supervision_core::{ApplicationSpec, Clock, ExitReason, ServiceDef, testkit::TestKit};

/// Bounds the wait for an exit that, before the fix, never came.
const EXIT_WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn monitors_inside_their_application_let_it_stop_with_its_last_handle() {
    let (kit, _lifecycle) = TestKit::new();
    let health = HealthMonitor::builder()
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let services = ServiceMonitor::builder()
        .clock(Clock::tokio())
        .build()
        .unwrap();
    let app = ApplicationSpec::new("shop")
        .service(ServiceDef::child(kit.spec("web")))
        .service(health.service())
        .service(services.service())
        .start()
        .await
        .unwrap();
    health.monitor_application(&app).unwrap();
    services.watch(&app, "web").unwrap();
    let status = app.status().await;
    let processes: Vec<_> = ["web", "health_monitor", "service_monitor"]
        .iter()
        .map(|name| status.service(name).unwrap().handle.clone().unwrap())
        .collect();
    assert_eq!(health.check_now().await.overall, HealthState::Healthy);

    drop(status);
    drop(app);
    for process in &processes {
        let exit = tokio::time::timeout(EXIT_WAIT, process.exited())
            .await
            .expect("every process of the dropped application stops");
        assert!(matches!(exit, ExitReason::Shutdown(_)), "{exit:?}");
    }

    // The monitors outlive it and say it is gone, restarting nothing.
    let report = health.check_now().await;
    assert_eq!(report.services.len(), 3);
    assert!(
        report
            .services
            .iter()
            .all(|s| s.health == mabeam_supervision_core::Health::NotRunning)
    );
    assert_eq!(
        services.ping_all().await,
        vec![(
            "shop/web".into(),
            Decision::Skipped(SkipReason::ApplicationDown)
        )]
    );
}
