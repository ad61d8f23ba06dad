//! The order of an application's admin calls, and services stopped on
//! purpose during a group restart.
//!
//! Admin calls (`start`, `stop`, `stop_service`, `restart_service`) run
//! one at a time, in the order they were made: a `stop_service(x)` made
//! while a `restart_service(x)` runs takes effect after it, and the other
//! way round. Under one_for_all and rest_for_one, a group restart starts
//! every member of the group again, services stopped with `stop_service`
//! included (OTP's rule); such a service counts as running again, and if it
//! later exits for good it is failed, not stopped.

use std::time::Duration;

use supervision_core::{
    Application, ApplicationSpec, ApplicationStatus, RestartType, ServiceDef, ServiceStatus,
    Strategy, SupervisorFlags, Telemetry, events,
    testkit::{self, TelemetryProbe, TestKit},
};

const WAIT: Duration = Duration::from_secs(10);

fn service(kit: &TestKit, name: &str, deps: &[&str]) -> ServiceDef {
    ServiceDef::child(kit.spec(name)).depends_on(deps.iter().copied())
}

async fn two(kit: &TestKit) -> Application {
    ApplicationSpec::new("app")
        .service(service(kit, "db", &[]))
        .service(service(kit, "web", &["db"]))
        .start()
        .await
        .unwrap()
}

/// A stop_service made while a restart_service of the same service runs
/// takes effect after it: the service ends stopped, and the process the
/// restart returned has stopped.
#[tokio::test]
async fn stop_service_during_restart_service_wins() {
    let (kit, _lifecycle) = TestKit::new();
    let app = two(&kit).await;
    let (restarted, stopped) = tokio::join!(app.restart_service("web"), app.stop_service("web"));
    let restarted = restarted.unwrap();
    stopped.unwrap();
    assert!(!restarted.is_alive());
    let status = app.status().await;
    assert_eq!(status.status_of("web"), Some(ServiceStatus::Stopped));
    assert_eq!(status.application, ApplicationStatus::Degraded);
    assert_eq!(kit.live(), 1);
    app.stop().await.unwrap();
}

/// A restart_service made while a stop_service of the same service runs
/// takes effect after it: the service ends running.
#[tokio::test]
async fn restart_service_during_stop_service_wins() {
    let (kit, _lifecycle) = TestKit::new();
    let app = two(&kit).await;
    let (stopped, restarted) = tokio::join!(app.stop_service("web"), app.restart_service("web"));
    stopped.unwrap();
    let restarted = restarted.unwrap();
    assert!(restarted.is_alive());
    let status = app.status().await;
    assert_eq!(status.status_of("web"), Some(ServiceStatus::Running));
    assert_eq!(status.service("web").unwrap().handle, Some(restarted));
    assert_eq!(status.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
}

/// A stop of the application made while a restart_service runs waits for
/// it, then stops everything.
#[tokio::test]
async fn stop_during_restart_service_stops_everything() {
    let (kit, _lifecycle) = TestKit::new();
    let app = two(&kit).await;
    let (restarted, stopped) = tokio::join!(app.restart_service("web"), app.stop());
    let restarted = restarted.unwrap();
    stopped.unwrap();
    assert!(!restarted.is_alive());
    assert_eq!(kit.live(), 0);
    assert_eq!(app.status().await.application, ApplicationStatus::Stopped);
}

/// Under one_for_all and rest_for_one, a crash restarts the group, and a
/// service of the group that was stopped with stop_service starts again
/// with it (OTP's rule). It is then running; when it later exits for good
/// (transient, normal exit), it is failed, no longer "stopped on request".
#[tokio::test]
async fn group_restart_starts_services_stopped_on_purpose() {
    for (strategy, observe) in [
        (Strategy::OneForAll, false),
        (Strategy::OneForAll, true),
        (Strategy::RestForOne, false),
        (Strategy::RestForOne, true),
    ] {
        let telemetry = Telemetry::new();
        let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
        let (kit, _lifecycle) = TestKit::new();
        let app = ApplicationSpec::new("app")
            .with_flags(SupervisorFlags::new(strategy).with_intensity(10, Duration::from_secs(5)))
            .with_telemetry(telemetry.clone())
            .service(service(&kit, "db", &[]))
            .service(ServiceDef::child(
                kit.spec("job").with_restart(RestartType::Transient),
            ))
            .start()
            .await
            .unwrap();
        app.stop_service("job").await.unwrap();
        assert_eq!(
            app.status().await.status_of("job"),
            Some(ServiceStatus::Stopped),
            "{strategy:?}"
        );

        let db = app.status().await.service("db").unwrap().handle.clone();
        testkit::crash(&db.unwrap()).await;
        let job = probe
            .wait_for_where(
                events::CHILD_RESTARTED,
                |e| e.meta_str("child") == Some("job"),
                WAIT,
            )
            .await
            .unwrap();
        // Asked of the supervisor itself, so that on odd runs nothing asks
        // the application's status between the group restart and the exit.
        let children = app.supervisor().unwrap().which_children().await.unwrap();
        let handle = children
            .iter()
            .find(|c| &*c.id == "job")
            .and_then(|c| c.state.handle().cloned())
            .expect("job runs again");
        if observe {
            let status = app.status().await;
            assert_eq!(
                status.application,
                ApplicationStatus::Running,
                "{strategy:?}"
            );
            assert_eq!(status.service("job").unwrap().handle, Some(handle.clone()));
        }
        assert_eq!(
            job.meta("actor_id"),
            Some(&testkit::OwnedMeta::U64(handle.id().sequence_id()))
        );

        testkit::exit_normally(&handle).await;
        probe
            .wait_for_where(
                events::CHILD_EXITED,
                |e| e.meta_str("child") == Some("job"),
                WAIT,
            )
            .await
            .unwrap();
        let status = app.status().await;
        assert_eq!(
            status.status_of("job"),
            Some(ServiceStatus::Failed),
            "{strategy:?}"
        );
        app.stop().await.unwrap();
        assert_eq!(kit.live(), 0);
    }
}
