//! Operations on a running application: the status of each service and of
//! the whole (starting, running, restarting, stopped, failed; degraded),
//! restart_service refused while a dependency is down and accepted
//! otherwise, stop_service, health checks (healthy, unhealthy, timed out,
//! panicked, not running), the supervisor giving up, start and stop twice,
//! and dropping the last handle. Outcomes no child reports itself are
//! awaited through the supervisor's telemetry events.

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::{
    Application, ApplicationError, ApplicationSpec, ApplicationStatus, ChildSpec, ErrorCode,
    Health, HealthCheck, RestartType, ServiceDef, ServiceStatus, StatusReport, SupervisorFlags,
    Telemetry, events,
    testkit::{self, Lifecycle, Ping, RecordedEvent, TelemetryProbe, TestChild, TestKit},
};
use tokio::sync::{Notify, mpsc::UnboundedReceiver};

const WAIT: Duration = Duration::from_secs(10);

fn service(kit: &TestKit, name: &str, deps: &[&str]) -> ServiceDef {
    ServiceDef::child(kit.spec(name)).depends_on(deps.iter().copied())
}

/// Waits for the supervisor's telemetry event `name` about the service
/// `service`. The supervisor emits it from the step that changes the
/// service, so a status asked afterwards is answered after that step.
async fn supervisor_event(
    probe: &mut TelemetryProbe,
    name: &[&str],
    service: &str,
) -> RecordedEvent {
    probe
        .wait_for_where(name, |e| e.meta_str("child") == Some(service), WAIT)
        .await
        .unwrap()
}

/// A telemetry handle and a probe on its supervisor events.
fn probed() -> (Telemetry, TelemetryProbe) {
    let telemetry = Telemetry::new();
    let probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    (telemetry, probe)
}

async fn next(lifecycle: &mut UnboundedReceiver<Lifecycle>) -> Lifecycle {
    tokio::time::timeout(WAIT, lifecycle.recv())
        .await
        .expect("a lifecycle report in time")
        .expect("the kit is alive")
}

/// db, then cache (needs db), then web (needs cache).
async fn chain(kit: &TestKit) -> Application {
    chain_reporting(kit, Telemetry::disabled()).await
}

/// The chain, reporting to `telemetry`.
async fn chain_reporting(kit: &TestKit, telemetry: Telemetry) -> Application {
    ApplicationSpec::new("shop")
        .with_telemetry(telemetry)
        .service(service(kit, "web", &["cache"]))
        .service(service(kit, "cache", &["db"]))
        .service(service(kit, "db", &[]))
        .start()
        .await
        .unwrap()
}

fn handle(status: &StatusReport, name: &str) -> mabeam_supervision_core::ProcessHandle {
    status
        .service(name)
        .and_then(|s| s.handle.clone())
        .unwrap_or_else(|| panic!("{name} is not running"))
}

// --- status ----------------------------------------------------------------

/// Before a start, every service is stopped; then running; after a stop,
/// stopped again.
#[tokio::test]
async fn status_follows_start_and_stop() {
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("shop")
        .service(service(&kit, "db", &[]))
        .service(service(&kit, "web", &["db"]))
        .build()
        .unwrap();
    let status = app.status().await;
    assert_eq!(status.application, ApplicationStatus::Stopped);
    assert!(
        status
            .services
            .iter()
            .all(|s| s.status == ServiceStatus::Stopped && s.handle.is_none())
    );
    assert!(app.supervisor().is_none());

    app.start().await.unwrap();
    let status = app.status().await;
    assert_eq!(status.application, ApplicationStatus::Running);
    assert!(status.services.iter().all(|s| s.status.is_running()));
    let supervisor = app.supervisor().unwrap();
    assert_eq!(supervisor.count_children().await.unwrap().active, 2);

    app.stop().await.unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Stopped);
    assert!(!supervisor.handle().is_alive());
}

/// While the application starts, the services the supervisor has not yet
/// reported started are starting, and so is the application; an admin
/// call made meanwhile runs once the start is done.
#[tokio::test]
async fn services_not_yet_started_are_starting() {
    let (kit, _lifecycle) = TestKit::new();
    let gate = Arc::new(Notify::new());
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let gated = {
        let (gate, kit) = (gate.clone(), kit.clone());
        ChildSpec::new("gated", move || {
            let (gate, entered, spec) = (gate.clone(), entered_tx.clone(), kit.spec("gated"));
            async move {
                let _ = entered.send(());
                gate.notified().await;
                spec.start().await
            }
        })
    };
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(ServiceDef::child(gated).depends_on(["db"]))
        .service(service(&kit, "web", &["gated"]))
        .build()
        .unwrap();
    let start = tokio::spawn({
        let app = app.clone();
        async move { app.start().await }
    });
    entered.recv().await.unwrap();
    // An admin call made meanwhile waits for the start.
    let mut restart = Box::pin(app.restart_service("db"));
    assert!(futures::poll!(&mut restart).is_pending());

    // The supervisor answers once the gated start is done: the question is
    // queued before the gate opens, so before web's start is asked for.
    let mut status = Box::pin(app.status());
    assert!(futures::poll!(&mut status).is_pending());
    gate.notify_one();
    let status = status.await;
    assert_eq!(status.application, ApplicationStatus::Starting);
    assert_eq!(status.status_of("db"), Some(ServiceStatus::Running));
    assert_eq!(status.status_of("gated"), Some(ServiceStatus::Running));
    assert_eq!(status.status_of("web"), Some(ServiceStatus::Starting));

    start.await.unwrap().unwrap();
    restart.await.unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
}

/// A crashed permanent service is restarted by the supervisor: its status
/// is running again, with a new process; the others are untouched.
#[tokio::test]
async fn crashed_service_is_restarted_and_running_again() {
    let (kit, _lifecycle) = TestKit::new();
    let (telemetry, mut probe) = probed();
    let app = chain_reporting(&kit, telemetry).await;
    let before = app.status().await;
    let old = handle(&before, "cache");

    testkit::crash(&old).await;
    supervisor_event(&mut probe, events::CHILD_RESTARTED, "cache").await;
    let after = app.status().await;
    assert_eq!(after.application, ApplicationStatus::Running);
    assert_ne!(handle(&after, "cache"), old);
    assert_eq!(handle(&after, "db"), handle(&before, "db"));
    assert_eq!(handle(&after, "web"), handle(&before, "web"));
    app.stop().await.unwrap();
}

/// A service that is not running and was not stopped on request is failed:
/// a transient one that finished, a temporary one that crashed (removed
/// from the supervisor). The application is degraded.
#[tokio::test]
async fn service_that_exits_for_good_is_failed() {
    let (kit, _lifecycle) = TestKit::new();
    let (telemetry, mut probe) = probed();
    let app = ApplicationSpec::new("app")
        .with_telemetry(telemetry)
        .service(service(&kit, "db", &[]))
        .service(ServiceDef::child(
            kit.spec("job").with_restart(RestartType::Transient),
        ))
        .service(ServiceDef::child(
            kit.spec("probe").with_restart(RestartType::Temporary),
        ))
        .start()
        .await
        .unwrap();
    let status = app.status().await;

    testkit::exit_normally(&handle(&status, "job")).await;
    testkit::crash(&handle(&status, "probe")).await;
    supervisor_event(&mut probe, events::CHILD_EXITED, "job").await;
    supervisor_event(&mut probe, events::CHILD_EXITED, "probe").await;
    let status = app.status().await;
    assert_eq!(status.status_of("job"), Some(ServiceStatus::Failed));
    assert_eq!(status.status_of("probe"), Some(ServiceStatus::Failed));
    assert_eq!(status.application, ApplicationStatus::Degraded);
    assert_eq!(status.status_of("db"), Some(ServiceStatus::Running));

    // Both can be restarted by hand; the temporary one is added again.
    app.restart_service("job").await.unwrap();
    app.restart_service("probe").await.unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
    assert_eq!(kit.live(), 0);
}

/// A service whose restart fails is restarting (its supervisor retries
/// it) until a retry succeeds; meanwhile what depends on it cannot be
/// restarted by hand.
#[tokio::test]
async fn service_whose_restart_fails_is_restarting() {
    let (kit, _lifecycle) = TestKit::new();
    let (flaky_kit, _flaky_lifecycle) = TestKit::new();
    let (telemetry, mut probe) = probed();
    let app = ApplicationSpec::new("app")
        .with_flags(SupervisorFlags::default().with_intensity(1_000_000, Duration::from_secs(60)))
        .with_telemetry(telemetry)
        .service(service(&kit, "db", &[]))
        .service(service(&flaky_kit, "flaky", &["db"]))
        .service(service(&kit, "web", &["flaky"]))
        .start()
        .await
        .unwrap();
    let old = handle(&app.status().await, "flaky");

    flaky_kit.fail_starts(true);
    testkit::crash(&old).await;
    supervisor_event(&mut probe, events::CHILD_START_FAILED, "flaky").await;
    let status = app.status().await;
    assert_eq!(status.status_of("flaky"), Some(ServiceStatus::Restarting));
    assert_eq!(status.application, ApplicationStatus::Degraded);
    // A service that depends on it cannot be restarted by hand meanwhile.
    assert!(matches!(
        app.restart_service("web").await,
        Err(ApplicationError::DependencyDown {
            status: ServiceStatus::Restarting,
            ..
        })
    ));
    flaky_kit.fail_starts(false);
    supervisor_event(&mut probe, events::CHILD_RESTARTED, "flaky").await;
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
    assert_eq!(flaky_kit.live(), 0);
}

// --- stop_service and restart_service ----------------------------------------

/// restart_service is refused, before anything is stopped, while a service
/// it depends on (directly or not) is down; the error names the first such
/// dependency in start order and its status.
#[tokio::test]
async fn restart_service_refused_while_a_dependency_is_down() {
    let (kit, _lifecycle) = TestKit::new();
    let app = chain(&kit).await;
    let web = handle(&app.status().await, "web");

    app.stop_service("db").await.unwrap();
    let status = app.status().await;
    assert_eq!(status.status_of("db"), Some(ServiceStatus::Stopped));
    assert_eq!(status.application, ApplicationStatus::Degraded);

    // web needs cache (running) which needs db (stopped).
    let err = app.restart_service("web").await.unwrap_err();
    match &err {
        ApplicationError::DependencyDown {
            service,
            dependency,
            status,
        } => {
            assert_eq!(&**service, "web");
            assert_eq!(&**dependency, "db");
            assert_eq!(*status, ServiceStatus::Stopped);
        }
        other => panic!("expected a dependency down, got {other:?}"),
    }
    assert_eq!(err.code(), 1610);
    assert_eq!(
        err.to_string(),
        "service \"web\" depends on \"db\", which is stopped"
    );
    // Nothing was touched.
    assert!(web.is_alive());
    assert_eq!(handle(&app.status().await, "web"), web);

    // With db back, the restart is accepted.
    app.restart_service("db").await.unwrap();
    let new = app.restart_service("web").await.unwrap();
    assert_ne!(new, web);
    app.stop().await.unwrap();
}

/// restart_service stops the running service and starts it again; it
/// returns the new process, the old one has stopped, and the services
/// around it keep theirs.
#[tokio::test]
async fn restart_service_accepted_returns_the_new_process() {
    let (kit, mut lifecycle) = TestKit::new();
    let app = chain(&kit).await;
    for _ in 0..3 {
        next(&mut lifecycle).await;
    }
    let before = app.status().await;
    let old = handle(&before, "cache");

    let new = app.restart_service("cache").await.unwrap();
    assert_ne!(new, old);
    assert!(!old.is_alive());
    assert!(new.is_alive());
    assert!(
        matches!(next(&mut lifecycle).await, Lifecycle::Stopped { label, .. } if &*label == "cache")
    );
    assert!(
        matches!(next(&mut lifecycle).await, Lifecycle::Started { label, id } if &*label == "cache" && id == new.id())
    );

    let after = app.status().await;
    assert_eq!(after.application, ApplicationStatus::Running);
    assert_eq!(handle(&after, "cache"), new);
    assert_eq!(handle(&after, "db"), handle(&before, "db"));
    assert_eq!(handle(&after, "web"), handle(&before, "web"));

    // A service that was stopped on request is started again.
    app.stop_service("web").await.unwrap();
    assert_eq!(
        app.status().await.status_of("web"),
        Some(ServiceStatus::Stopped)
    );
    app.restart_service("web").await.unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
}

/// Admin calls name an unknown service, and need a running application.
#[tokio::test]
async fn admin_calls_on_unknown_service_or_stopped_application() {
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .build()
        .unwrap();
    assert!(matches!(
        app.restart_service("db").await,
        Err(ApplicationError::NotRunning(ApplicationStatus::Stopped))
    ));
    assert!(matches!(
        app.stop_service("db").await,
        Err(ApplicationError::NotRunning(ApplicationStatus::Stopped))
    ));
    let err = app.stop().await.unwrap_err();
    assert_eq!(err.code(), 1608);

    app.start().await.unwrap();
    let err = app.restart_service("nope").await.unwrap_err();
    assert!(matches!(err, ApplicationError::UnknownService(ref s) if &**s == "nope"));
    assert!(matches!(
        app.stop_service("nope").await,
        Err(ApplicationError::UnknownService(_))
    ));
    assert!(matches!(
        app.start().await,
        Err(ApplicationError::AlreadyStarted)
    ));
    app.stop().await.unwrap();
    assert!(matches!(
        app.stop().await,
        Err(ApplicationError::NotRunning(ApplicationStatus::Stopped))
    ));
}

// --- health ------------------------------------------------------------------

fn ping_check(timeout: Duration) -> HealthCheck {
    HealthCheck::new(timeout, |handle| async move {
        let child = handle
            .downcast::<TestChild>()
            .ok_or_else(|| "not a test child".to_owned())?;
        child.ask(Ping).await.map(|_| ()).map_err(|e| e.to_string())
    })
}

/// health() runs every running service's check: healthy, unhealthy with
/// its reason, a panic reported as unhealthy; a service without a check is
/// healthy while it runs; a stopped service is not checked.
#[tokio::test]
async fn health_reports_each_service() {
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]).with_health_check(ping_check(WAIT)))
        .service(
            service(&kit, "cache", &[]).with_health_check(HealthCheck::new(WAIT, |_| async {
                Err("cache is cold".to_owned())
            })),
        )
        .service(
            service(&kit, "web", &[])
                .with_health_check(HealthCheck::new(WAIT, |_| async { panic!("check bug") })),
        )
        .service(service(&kit, "plain", &[]))
        .service(service(&kit, "idle", &[]).with_health_check(ping_check(WAIT)))
        .start()
        .await
        .unwrap();
    app.stop_service("idle").await.unwrap();

    let health = app.health().await;
    assert!(!health.is_healthy());
    assert_eq!(health.of("db"), Some(&Health::Healthy));
    assert_eq!(
        health.of("cache"),
        Some(&Health::Unhealthy("cache is cold".into()))
    );
    assert!(
        matches!(health.of("web"), Some(Health::Unhealthy(reason)) if reason.contains("check bug"))
    );
    assert_eq!(health.of("plain"), Some(&Health::Healthy));
    assert_eq!(health.of("idle"), Some(&Health::NotRunning));
    assert_eq!(
        health.service("idle").unwrap().status,
        ServiceStatus::Stopped
    );
    app.stop().await.unwrap();
}

/// A check that does not answer within its timeout is timed out; the other
/// checks still answer (they run at once, not one after the other).
#[tokio::test(start_paused = true)]
async fn health_check_that_hangs_times_out() {
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]).with_health_check(ping_check(Duration::from_secs(1))))
        .service(service(&kit, "stuck", &[]).with_health_check(ping_check(Duration::from_secs(2))))
        .start()
        .await
        .unwrap();
    testkit::hang(&handle(&app.status().await, "stuck")).await;

    let began = tokio::time::Instant::now();
    let health = app.health().await;
    assert_eq!(health.of("db"), Some(&Health::Healthy));
    assert_eq!(
        health.of("stuck"),
        Some(&Health::TimedOut(Duration::from_secs(2)))
    );
    assert_eq!(began.elapsed(), Duration::from_secs(2));
    // The stuck service is killed after its 5 s shutdown.
    app.stop().await.unwrap();
    assert_eq!(kit.live(), 0);
}

// --- failure ---------------------------------------------------------------

/// Past its restart intensity the supervisor gives up: every service is
/// stopped, the application is failed, `application.stopped` says why, and
/// admin calls are refused. It can be started again.
#[tokio::test]
async fn supervisor_giving_up_fails_the_application() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["application"]);
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("fragile")
        .with_telemetry(telemetry.clone())
        .with_flags(SupervisorFlags::default().with_intensity(0, Duration::from_secs(5)))
        .service(service(&kit, "db", &[]))
        .service(service(&kit, "web", &["db"]))
        .start()
        .await
        .unwrap();
    probe
        .wait_for(events::APPLICATION_STARTED, WAIT)
        .await
        .unwrap();

    testkit::crash(&handle(&app.status().await, "db")).await;
    let event = probe
        .wait_for(events::APPLICATION_STOPPED, WAIT)
        .await
        .unwrap();
    assert_eq!(event.meta_str("application"), Some("fragile"));
    assert!(event.meta_str("reason").unwrap().contains("intensity"));
    assert_eq!(kit.live(), 0);

    let status = app.status().await;
    assert_eq!(status.application, ApplicationStatus::Failed);
    assert!(
        status
            .services
            .iter()
            .all(|s| s.status == ServiceStatus::Failed)
    );
    assert!(matches!(
        app.restart_service("web").await,
        Err(ApplicationError::NotRunning(ApplicationStatus::Failed))
    ));
    assert!(app.supervisor().is_none());

    app.start().await.unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
}

/// Dropping the last handle stops the services, in reverse order.
#[tokio::test]
async fn dropping_the_last_handle_stops_the_services() {
    let (kit, mut lifecycle) = TestKit::new();
    let app = chain(&kit).await;
    for _ in 0..3 {
        next(&mut lifecycle).await;
    }
    let clone = app.clone();
    drop(app);
    assert_eq!(clone.status().await.application, ApplicationStatus::Running);
    drop(clone);
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(next(&mut lifecycle).await.label().to_owned());
    }
    assert_eq!(order, ["web", "cache", "db"]);
}

/// The public handles can be shared across tasks, and the futures of the
/// application's calls can be spawned.
#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Application>();
    send_sync::<ApplicationSpec>();
    send_sync::<ServiceDef>();
    send_sync::<HealthCheck>();
    send_sync::<ApplicationError>();

    let app = ApplicationSpec::new("app").build().unwrap();
    send(&app.start());
    send(&app.stop());
    send(&app.status());
    send(&app.health());
    send(&app.restart_service("x"));
    send(&app.stop_service("x"));
}
