//! An application reads time on the [`Clock`] it is given
//! (`ApplicationSpec::with_clock`): its supervisor's restart window, its
//! health checks' timeouts, and the `duration_us` of `application.started`.
//! Each test moves the application's clock apart from tokio's (paused)
//! clock, so an application reading tokio's clock directly fails it.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    Application, ApplicationSpec, ApplicationStatus, ChildSpec, Clock, Health, HealthCheck,
    ProcessHandle, ServiceDef, Strategy, SupervisorFlags, Telemetry, TimeSource, events,
    testkit::{self, TelemetryProbe, TestChild, TestKit},
};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

/// Tokio's clock moved forward by an offset the test sets: the test moves
/// this clock without moving tokio's.
#[derive(Clone, Default)]
struct Skewed(Arc<Mutex<Duration>>);

impl Skewed {
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn offset(&self) -> Duration {
        *self.0.lock().unwrap()
    }
}

impl TimeSource for Skewed {
    fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + self.offset()
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        let on_tokio = deadline
            .checked_sub(self.offset())
            .unwrap_or_else(Instant::now);
        Box::pin(tokio::time::sleep_until(on_tokio))
    }
}

/// A clock whose sleeps are over at once: every timeout runs out
/// immediately, while tokio's clock stands still.
struct Hurried;

impl TimeSource for Hurried {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }

    fn sleep_until(&self, _: Instant) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

async fn handle_of(app: &Application, service: &str) -> ProcessHandle {
    app.status()
        .await
        .service(service)
        .and_then(|s| s.handle.clone())
        .expect("the service runs")
}

/// The restart window (1 restart in 5 s) is counted on the application's
/// clock: once that clock has moved 6 s, a second crash is a first restart
/// in a new window, though tokio's clock has not moved; a third crash
/// within the window is one too many.
#[tokio::test(start_paused = true)]
async fn the_restart_window_reads_the_applications_clock() {
    let skew = Skewed::default();
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["supervisor"]);
    let (kit, _lifecycle) = TestKit::new();
    let app = ApplicationSpec::new("app")
        .with_clock(Clock::from_source(skew.clone()))
        .with_flags(
            SupervisorFlags::new(Strategy::OneForOne).with_intensity(1, Duration::from_secs(5)),
        )
        .with_telemetry(telemetry)
        .service(ServiceDef::child(kit.spec("w")))
        .start()
        .await
        .unwrap();
    let tokio_began = Instant::now();

    testkit::crash(&handle_of(&app, "w").await).await;
    probe.wait_for(events::CHILD_RESTARTED, WAIT).await.unwrap();
    skew.advance(Duration::from_secs(6));
    testkit::crash(&handle_of(&app, "w").await).await;
    probe
        .wait_for(events::CHILD_RESTARTED, WAIT)
        .await
        .expect("the first restart left the window on the application's clock");
    assert_eq!(Instant::now(), tokio_began, "tokio's clock did not move");
    assert_eq!(app.status().await.application, ApplicationStatus::Running);

    testkit::crash(&handle_of(&app, "w").await).await;
    probe.wait_for(events::GAVE_UP, WAIT).await.unwrap();
    if let Some(supervisor) = app.supervisor() {
        supervisor.exited().await;
    }
    assert_eq!(app.status().await.application, ApplicationStatus::Failed);
}

/// `application.started` measures the start on the application's clock:
/// a service start during which that clock moves 2 s takes 2 s, though
/// tokio's (paused) clock stands still.
#[tokio::test(start_paused = true)]
async fn the_start_is_timed_on_the_applications_clock() {
    let skew = Skewed::default();
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["application"]);
    let (kit, _lifecycle) = TestKit::new();
    let slow = {
        let skew = skew.clone();
        ChildSpec::new("slow", move || {
            skew.advance(Duration::from_secs(2));
            ProcessHandle::spawn::<TestChild>((kit.clone(), "slow".into()))
        })
    };
    let app = ApplicationSpec::new("app")
        .with_clock(Clock::from_source(skew))
        .with_telemetry(telemetry)
        .service(ServiceDef::child(slow))
        .start()
        .await
        .unwrap();
    let started = probe
        .wait_for(events::APPLICATION_STARTED, WAIT)
        .await
        .unwrap();
    assert_eq!(started.measurement("duration_us"), Some(2_000_000.0));
    app.stop().await.unwrap();
}

/// A health check's timeout runs on the application's clock: with a clock
/// whose sleeps end at once, a check that never answers times out at once,
/// and tokio's clock does not move (on tokio's clock it would have waited
/// its hour).
#[tokio::test(start_paused = true)]
async fn health_timeouts_run_on_the_applications_clock() {
    let (kit, _lifecycle) = TestKit::new();
    let hangs = HealthCheck::new(Duration::from_secs(3600), |_| {
        std::future::pending::<Result<(), String>>()
    });
    let app = ApplicationSpec::new("app")
        .with_clock(Clock::from_source(Hurried))
        .service(ServiceDef::child(kit.spec("w")).with_health_check(hangs))
        .start()
        .await
        .unwrap();
    let began = Instant::now();
    let health = app.health().await;
    assert_eq!(
        health.of("w"),
        Some(&Health::TimedOut(Duration::from_secs(3600)))
    );
    assert_eq!(Instant::now(), began, "tokio's clock did not move");
    app.stop().await.unwrap();
}

/// The flags given with `with_flags` keep the application's clock, in
/// either order of the calls.
#[tokio::test(start_paused = true)]
async fn with_flags_keeps_the_applications_clock() {
    let skew = Skewed::default();
    skew.advance(Duration::from_secs(42));
    for spec in [
        ApplicationSpec::new("a")
            .with_clock(Clock::from_source(skew.clone()))
            .with_flags(SupervisorFlags::new(Strategy::OneForAll)),
        ApplicationSpec::new("a")
            .with_flags(SupervisorFlags::new(Strategy::OneForAll))
            .with_clock(Clock::from_source(skew.clone())),
    ] {
        assert_eq!(spec.flags().strategy, Strategy::OneForAll);
        assert_eq!(
            spec.flags().clock.now() - Instant::now(),
            Duration::from_secs(42)
        );
    }
}
