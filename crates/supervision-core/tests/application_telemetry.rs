//! What an application reports through telemetry: `application.started`
//! and `application.stopped` (its own events), and a crash and restart of
//! a service as the supervisor reports it (`supervisor.child.exited`, then
//! `supervisor.child.started` and `supervisor.child.restarted`).

use std::time::Duration;

use mabeam_supervision_core::{
    Application, ApplicationSpec, ChildSpec, ServiceDef, StartError, Telemetry, events,
    testkit::{self, OwnedMeta, TelemetryProbe, TestKit},
};

const WAIT: Duration = Duration::from_secs(10);

/// db and cache stand alone, web needs db.
fn three_services(kit: &TestKit, telemetry: &Telemetry) -> ApplicationSpec {
    ApplicationSpec::new("shop")
        .with_telemetry(telemetry.clone())
        .service(ServiceDef::child(kit.spec("db")))
        .service(ServiceDef::child(kit.spec("cache")))
        .service(ServiceDef::child(kit.spec("web")).depends_on(["db"]))
}

/// `application.started` once every service has started, with the count
/// and the time it took; `application.stopped` with the reason once all
/// have stopped.
#[tokio::test]
async fn started_and_stopped_events() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["application"]);
    let (kit, _lifecycle) = TestKit::new();
    let app = three_services(&kit, &telemetry).build().unwrap();
    assert!(
        probe.drain().is_empty(),
        "nothing is emitted before a start"
    );

    app.start().await.unwrap();
    let started = probe
        .wait_for(events::APPLICATION_STARTED, WAIT)
        .await
        .unwrap();
    assert_eq!(started.meta_str("application"), Some("shop"));
    assert_eq!(started.meta("services"), Some(&OwnedMeta::U64(3)));
    assert!(started.measurement("duration_us").unwrap() >= 0.0);
    // Emitted once all had started.
    assert_eq!(kit.live(), 3);

    app.stop().await.unwrap();
    let stopped = probe.next(WAIT).await.unwrap();
    assert!(stopped.is(events::APPLICATION_STOPPED));
    assert_eq!(stopped.meta_str("application"), Some("shop"));
    assert_eq!(stopped.meta_str("reason"), Some("shutdown"));
    assert_eq!(kit.live(), 0);
}

/// A start that fails emits neither event: the application never started.
#[tokio::test]
async fn failed_start_emits_nothing() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["application"]);
    let (kit, _lifecycle) = TestKit::new();
    let err = three_services(&kit, &telemetry)
        .service(ServiceDef::child(ChildSpec::new("broken", || async {
            Err::<mabeam_supervision_core::ProcessHandle, _>(StartError::failed("no"))
        })))
        .start()
        .await;
    assert!(err.is_err());
    assert_eq!(kit.live(), 0);
    assert!(probe.drain().is_empty());
}

async fn handle_of(app: &Application, name: &str) -> mabeam_supervision_core::ProcessHandle {
    app.status()
        .await
        .service(name)
        .and_then(|s| s.handle.clone())
        .expect("the service runs")
}

/// A crash of web, seen through telemetry: the supervisor reports the exit
/// (to be restarted), then the new start and the restart, in that order,
/// for web alone; the application's status then shows the new process.
#[tokio::test]
async fn crash_and_restart_seen_through_telemetry() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &[]);
    let (kit, _lifecycle) = TestKit::new();
    let app = three_services(&kit, &telemetry).start().await.unwrap();
    probe
        .wait_for(events::APPLICATION_STARTED, WAIT)
        .await
        .unwrap();
    let old = handle_of(&app, "web").await;

    testkit::crash(&old).await;
    let exited = probe.next(WAIT).await.unwrap();
    assert!(exited.is(events::CHILD_EXITED), "got {exited:?}");
    assert_eq!(exited.meta_str("child"), Some("web"));
    assert_eq!(exited.meta_bool("restart"), Some(true));
    assert_eq!(
        exited.meta("actor_id"),
        Some(&OwnedMeta::U64(old.id().sequence_id()))
    );

    let started = probe.next(WAIT).await.unwrap();
    assert!(started.is(events::CHILD_STARTED), "got {started:?}");
    assert_eq!(started.meta_str("child"), Some("web"));
    let restarted = probe.next(WAIT).await.unwrap();
    assert!(restarted.is(events::CHILD_RESTARTED), "got {restarted:?}");
    assert_eq!(restarted.meta_str("child"), Some("web"));

    let new = handle_of(&app, "web").await;
    assert_ne!(new, old);
    assert_eq!(
        restarted.meta("actor_id"),
        Some(&OwnedMeta::U64(new.id().sequence_id()))
    );

    app.stop().await.unwrap();
    probe
        .wait_for(events::APPLICATION_STOPPED, WAIT)
        .await
        .unwrap();
}
