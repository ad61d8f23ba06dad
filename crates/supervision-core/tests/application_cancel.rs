//! Every admin call of an application is safe to cancel: a `start` whose
//! future is dropped (before its supervisor exists, between two services,
//! while a service's start hangs, while a failed start stops what it
//! started) leaves a stopped application that can be started again; a
//! dropped `stop` still stops everything; a dropped `restart_service` or
//! `stop_service` leaves the application answering. Nothing is left
//! `Starting` or `Stopping` for ever.

use std::{sync::Arc, time::Duration};

use mabeam_supervision_core::{
    Application, ApplicationError, ApplicationSpec, ApplicationStatus, ChildSpec, ServiceDef,
    ServiceStatus,
    testkit::{self, Lifecycle, TestKit},
};
use tokio::sync::{Semaphore, mpsc};

const WAIT: Duration = Duration::from_secs(10);

fn service(kit: &TestKit, name: &str, deps: &[&str]) -> ServiceDef {
    ServiceDef::child(kit.spec(name)).depends_on(deps.iter().copied())
}

/// A service named `name` whose start reports itself on `entered`, then
/// waits for a permit of `gate` (kept), then starts a test child of `kit`.
fn gated(
    kit: &TestKit,
    name: &str,
    gate: &Arc<Semaphore>,
    entered: mpsc::UnboundedSender<()>,
) -> ChildSpec {
    let (kit, gate, label) = (kit.clone(), gate.clone(), name.to_owned());
    ChildSpec::new(name.to_owned(), move || {
        let (gate, entered, spec) = (gate.clone(), entered.clone(), kit.spec(&label));
        async move {
            let _ = entered.send(());
            gate.acquire().await.expect("the gate stays open").forget();
            spec.start().await
        }
    })
}

/// The application answers `stop` (stopped, or stopping it) and `status`
/// in time, and is neither starting nor stopping afterwards.
async fn answers_and_is_stopped(app: &Application) {
    let stopped = tokio::time::timeout(WAIT, app.stop())
        .await
        .expect("stop answers in time");
    match stopped {
        Ok(reason) => assert!(reason.is_clean(), "{reason}"),
        Err(ApplicationError::NotRunning(status)) => {
            assert_eq!(status, ApplicationStatus::Stopped)
        }
        Err(other) => panic!("stop after a cancelled call: {other:?}"),
    }
    let status = tokio::time::timeout(WAIT, app.status())
        .await
        .expect("status answers in time");
    assert_eq!(status.application, ApplicationStatus::Stopped);
    assert!(app.supervisor().is_none());
}

/// A start dropped while a service's start hangs: the services already
/// started are stopped, `stop` and `status` answer, and the application
/// starts again from scratch.
#[tokio::test]
async fn start_dropped_while_a_service_start_hangs() {
    let (kit, _lifecycle) = TestKit::new();
    let gate = Arc::new(Semaphore::new(0));
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(ServiceDef::child(gated(&kit, "slow", &gate, entered_tx)).depends_on(["db"]))
        .service(service(&kit, "web", &["slow"]))
        .build()
        .unwrap();

    tokio::select! {
        started = app.start() => panic!("the start cannot finish: {started:?}"),
        _ = entered.recv() => {}
    }
    answers_and_is_stopped(&app).await;
    assert_eq!(kit.live(), 0);
    assert!(matches!(
        app.restart_service("db").await,
        Err(ApplicationError::NotRunning(ApplicationStatus::Stopped))
    ));

    // Started again: the gate is open now.
    gate.add_permits(1);
    tokio::time::timeout(WAIT, app.start())
        .await
        .expect("the start answers")
        .unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    assert_eq!(kit.live(), 3);
    app.stop().await.unwrap();
    assert_eq!(kit.live(), 0);
}

/// A start dropped at every point it can stop at, one after the other:
/// each time the application ends stopped (nothing left running) and the
/// next start succeeds.
#[tokio::test]
async fn start_dropped_at_each_step() {
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "a", &[]))
        .service(service(&kit, "b", &["a"]))
        .service(service(&kit, "c", &["b"]))
        .build()
        .unwrap();
    let mut finished = false;
    for steps in 0.. {
        let mut start = Box::pin(app.start());
        for _ in 0..steps {
            if futures::poll!(&mut start).is_ready() {
                finished = true;
                break;
            }
            // Lets the supervisor and the children take their next step.
            tokio::task::yield_now().await;
        }
        drop(start);
        if finished {
            break;
        }
        answers_and_is_stopped(&app).await;
        assert_eq!(kit.live(), 0, "after {steps} steps");
        app.start().await.unwrap();
        assert_eq!(app.status().await.application, ApplicationStatus::Running);
        app.stop().await.unwrap();
        assert!(steps < 1_000, "the start never finished");
    }
    // Let through whole, the start ran to the end: stop it.
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
    assert_eq!(kit.live(), 0);
}

/// A start that failed is dropped while it stops what it started: the
/// application is failed, not starting, and starts again.
#[tokio::test]
async fn start_dropped_while_a_failed_start_stops_the_others() {
    let (kit, mut lifecycle) = TestKit::new();
    let (broken_kit, _broken_lifecycle) = TestKit::new();
    broken_kit.fail_starts(true);
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(service(&broken_kit, "broken", &["db"]))
        .build()
        .unwrap();
    // db stops once broken failed: the start is then stopping it.
    let db_stopped = async {
        while let Some(report) = lifecycle.recv().await {
            if matches!(report, Lifecycle::Stopped { .. }) {
                return;
            }
        }
    };
    tokio::select! {
        // db's report comes before the supervisor's exit, which the start
        // waits for: checked first, it wins.
        biased;
        () = db_stopped => {}
        started = app.start() => panic!("the start is dropped first: {started:?}"),
    }
    let status = tokio::time::timeout(WAIT, app.status()).await.unwrap();
    assert_ne!(status.application, ApplicationStatus::Starting);
    assert!(matches!(
        tokio::time::timeout(WAIT, app.stop()).await.unwrap(),
        Err(ApplicationError::NotRunning(ApplicationStatus::Failed))
    ));
    assert_eq!(
        app.status().await.status_of("broken"),
        Some(ServiceStatus::Failed)
    );
    assert_eq!(kit.live(), 0);
    broken_kit.fail_starts(false);
    app.start().await.unwrap();
    app.stop().await.unwrap();
}

/// A stop dropped while a service takes its time to stop: the stop goes on,
/// a second stop waits for it and answers, and the application is stopped.
#[tokio::test(start_paused = true)]
async fn stop_dropped_midway_still_stops() {
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(service(&kit, "stuck", &["db"]))
        .start()
        .await
        .unwrap();
    let stuck = app.status().await.service("stuck").unwrap().handle.clone();
    testkit::hang(&stuck.unwrap()).await;

    // The stuck service ignores its stop until its 5 s shutdown runs out.
    let mut stop = Box::pin(app.stop());
    assert!(futures::poll!(&mut stop).is_pending());
    drop(stop);

    answers_and_is_stopped(&app).await;
    assert_eq!(kit.live(), 0);
    app.start().await.unwrap();
    assert_eq!(app.status().await.application, ApplicationStatus::Running);
    app.stop().await.unwrap();
}

/// A restart_service dropped between the stop and the start of the
/// service: the application keeps answering, the service can be restarted,
/// and the application stops.
#[tokio::test]
async fn restart_service_dropped_midway() {
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("app")
        .service(service(&kit, "db", &[]))
        .service(service(&kit, "web", &["db"]))
        .start()
        .await
        .unwrap();
    for steps in 0..8 {
        let mut restart = Box::pin(app.restart_service("db"));
        for _ in 0..steps {
            if futures::poll!(&mut restart).is_ready() {
                break;
            }
            tokio::task::yield_now().await;
        }
        drop(restart);
        let status = tokio::time::timeout(WAIT, app.status()).await.unwrap();
        assert!(
            matches!(
                status.status_of("db"),
                Some(ServiceStatus::Running | ServiceStatus::Stopped)
            ),
            "{status:?}"
        );
        tokio::time::timeout(WAIT, app.restart_service("db"))
            .await
            .unwrap()
            .unwrap();
        let status = app.status().await;
        assert_eq!(status.application, ApplicationStatus::Running);
    }
    app.stop().await.unwrap();
    assert_eq!(kit.live(), 0);
}
