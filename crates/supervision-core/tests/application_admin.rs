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

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kameo::{
    actor::{Actor, ActorRef, WeakActorRef},
    error::ActorStopReason,
};
use mabeam_supervision_core::{
    Application, ApplicationSpec, ApplicationStatus, ChildSpec, ChildState, ExitReason,
    ProcessHandle, RestartType, ServiceDef, ServiceStatus, Shutdown, Strategy, SupervisorFlags,
    Telemetry, events,
    testkit::{self, RecordedEvent, TelemetryProbe, TestKit},
};
use tokio::sync::Notify;

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

/// Waits for the supervisor's event `name` about the child `id`.
async fn child_event(probe: &mut TelemetryProbe, name: &[&str], id: &str) -> RecordedEvent {
    probe
        .wait_for_where(name, |e| e.meta_str("child") == Some(id), WAIT)
        .await
        .unwrap()
}

/// The process of the service `id`, asked of the application's supervisor
/// itself (a status asked of the application would drop a stale "stopped"
/// mark of a service it sees running).
async fn supervisor_handle(app: &Application, id: &str) -> Option<ProcessHandle> {
    app.supervisor()?
        .which_children()
        .await
        .ok()?
        .into_iter()
        .find(|c| &*c.id == id)
        .and_then(|c| c.state.handle().cloned())
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
        let job = child_event(&mut probe, events::CHILD_RESTARTED, "job").await;
        // Asked of the supervisor itself, so that on odd runs nothing asks
        // the application's status between the group restart and the exit.
        let handle = supervisor_handle(&app, "job")
            .await
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
        child_event(&mut probe, events::CHILD_EXITED, "job").await;
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

/// What a [`Gated`] service's first stop waits on.
#[derive(Clone, Default)]
struct Gate {
    /// Told when the first stop begins.
    stopping: Arc<Notify>,
    /// The first stop ends once told.
    release: Arc<Notify>,
    /// Whether the next stop is the first.
    armed: Arc<AtomicBool>,
}

/// A service whose first stop waits for the test.
struct Gated(Gate);

impl Actor for Gated {
    type Args = Gate;
    type Error = ExitReason;

    async fn on_start(gate: Gate, _: ActorRef<Self>) -> Result<Self, ExitReason> {
        Ok(Gated(gate))
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), ExitReason> {
        if self.0.armed.swap(false, Ordering::SeqCst) {
            self.0.stopping.notify_one();
            self.0.release.notified().await;
        }
        Ok(())
    }
}

/// stop_service racing a group restart leaves no stale "stopped" mark: the
/// supervisor stops `job` on request, then a crash of `db` restarts the
/// rest_for_one group, which starts `job` again, and only then does
/// stop_service return. `job` then runs like the others; when it exits for
/// good (transient, clean exit), it is failed: the application follows the
/// supervisor's fact (`job` ran again and exited by itself), not the mark
/// it set when the stop began.
#[tokio::test]
async fn stop_service_racing_a_group_restart_leaves_no_stale_mark() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let gate = Gate::default();
    gate.armed.store(true, Ordering::SeqCst);
    let job = {
        let gate = gate.clone();
        ChildSpec::actor::<Gated>("job", move || gate.clone())
            .with_restart(RestartType::Transient)
            .with_shutdown(Shutdown::Infinity)
    };
    let app = ApplicationSpec::new("app")
        .with_flags(
            SupervisorFlags::new(Strategy::RestForOne).with_intensity(10, Duration::from_secs(5)),
        )
        .with_telemetry(telemetry.clone())
        .service(service(&kit, "db", &[]))
        .service(ServiceDef::child(job))
        .start()
        .await
        .unwrap();
    let db = app.status().await.service("db").unwrap().handle.clone();

    // stop_service runs until job's stop has begun, then is left unpolled:
    // it goes on only when the test awaits it again.
    let stop = app.stop_service("job");
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => panic!("job's stop waits for the test"),
        () = gate.stopping.notified() => {}
    }
    // db crashes while the supervisor stops job: the supervisor handles
    // the crash after the stop, and restarts db and job (rest_for_one).
    testkit::crash(&db.unwrap()).await;
    gate.release.notify_one();
    child_event(&mut probe, events::CHILD_RESTARTED, "job").await;
    stop.await.unwrap();

    let handle = supervisor_handle(&app, "job")
        .await
        .expect("job runs again");
    handle.stop().await;
    child_event(&mut probe, events::CHILD_EXITED, "job").await;
    let status = app.status().await;
    assert_eq!(status.status_of("job"), Some(ServiceStatus::Failed));
    assert_eq!(status.status_of("db"), Some(ServiceStatus::Running));
    app.stop().await.unwrap();
    assert_eq!(kit.live(), 0);
}

/// A service stopped on request stays stopped in the application's view
/// because its supervisor says it was terminated, and is failed when a
/// restart_service of it cannot start it.
#[tokio::test]
async fn stopped_and_failed_follow_the_supervisor() {
    let (kit, _lifecycle) = TestKit::new();
    let app = two(&kit).await;
    app.stop_service("web").await.unwrap();
    let children = app.supervisor().unwrap().which_children().await.unwrap();
    assert_eq!(children[1].state, ChildState::Terminated);
    assert_eq!(
        app.status().await.status_of("web"),
        Some(ServiceStatus::Stopped)
    );
    kit.fail_starts(true);
    assert!(app.restart_service("web").await.is_err());
    assert_eq!(
        app.status().await.status_of("web"),
        Some(ServiceStatus::Failed)
    );
    app.stop().await.unwrap();
}
