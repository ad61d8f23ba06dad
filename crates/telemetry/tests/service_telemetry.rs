//! TelemetryService: events kept as counters and histograms; handlers by
//! prefix, detached and reported when they panic; own counters, gauges and
//! histograms with quantiles; retention and pruning on the paused clock;
//! reset; snapshot; the service's process attaching and detaching.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mabeam_supervision_core::{
    Clock, ErrorCode, MetaValue, Telemetry, events,
    testkit::{TelemetryProbe, advance},
};
use mabeam_telemetry::{
    HANDLER_FAILED, MetricKey, SERVICE_HANDLER_ID, TelemetryConfig, TelemetryService,
    TelemetryServiceError,
};

const WAIT: Duration = Duration::from_secs(5);

fn key(name: &str) -> MetricKey {
    MetricKey::new(name, Vec::<(String, String)>::new())
}

#[test]
fn events_become_counters_and_histograms() {
    let telemetry = Telemetry::new();
    let service = TelemetryService::new(telemetry.clone());
    service.attach_collector().unwrap();
    for us in [10.0, 20.0, 30.0, 40.0] {
        telemetry.emit(events::CHILD_STARTED, &[("duration_us", us)], &[]);
    }
    telemetry.emit(events::GAVE_UP, &[("restarts", 3.0)], &[]);
    let snapshot = service.snapshot();
    assert_eq!(snapshot.counter("supervisor.child.started"), Some(4.0));
    assert_eq!(snapshot.counter("supervisor.gave_up"), Some(1.0));
    let h = snapshot
        .histogram("supervisor.child.started.duration_us")
        .unwrap();
    assert_eq!((h.count, h.sum), (4, 100.0));
    assert_eq!(
        (h.window.p50, h.window.p99, h.window.min),
        (20.0, 40.0, 10.0)
    );
}

#[test]
fn handlers_are_selected_by_prefix_and_detached() {
    let telemetry = Telemetry::new();
    let service = TelemetryService::new(telemetry.clone());
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    service
        .attach("sup", &["supervisor", "child"], move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    telemetry.emit(events::CHILD_STARTED, &[], &[]);
    telemetry.emit(events::GAVE_UP, &[], &[]);
    telemetry.emit(events::REGISTRY_REGISTER, &[], &[]);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(service.detach("sup"));
    telemetry.emit(events::CHILD_STARTED, &[], &[]);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert!(!service.detach("sup"));
}

#[test]
fn a_taken_handler_id_is_refused_and_changes_nothing() {
    let telemetry = Telemetry::new();
    let service = TelemetryService::new(telemetry.clone());
    service.attach("h", &[], |_| {}).unwrap();
    let err = service.attach("h", &["x"], |_| {}).unwrap_err();
    assert_eq!(err.code(), 4001);
    assert_eq!(telemetry.handler_ids(), ["h"]);
    let disabled = TelemetryService::new(Telemetry::disabled());
    assert!(matches!(
        disabled.attach_collector(),
        Err(TelemetryServiceError::Attach(_))
    ));
}

#[tokio::test]
async fn a_panicking_handler_is_detached_and_reported() {
    let telemetry = Telemetry::new();
    let service = TelemetryService::new(telemetry.clone());
    service.attach_collector().unwrap();
    let mut probe = TelemetryProbe::attach(&telemetry, HANDLER_FAILED);
    service
        .attach("bad", &["job"], |event| {
            if event.measurement("n") == Some(2.0) {
                panic!("bad handler at 2")
            }
        })
        .unwrap();
    telemetry.emit(&["job", "done"], &[("n", 1.0)], &[]);
    telemetry.emit(&["job", "done"], &[("n", 2.0)], &[]);
    let report = probe.wait_for(HANDLER_FAILED, WAIT).await.unwrap();
    assert_eq!(report.meta_str("handler"), Some("bad"));
    assert_eq!(report.meta_str("message"), Some("bad handler at 2"));
    assert!(!telemetry.handler_ids().contains(&"bad".to_owned()));
    assert_eq!(service.failed_handlers().len(), 1);
    // The service goes on collecting.
    telemetry.emit(&["job", "done"], &[("n", 3.0)], &[]);
    assert_eq!(service.snapshot().counter("job.done"), Some(3.0));
}

#[test]
fn own_metrics_with_labels_and_bad_names() {
    let service = TelemetryService::new(Telemetry::new());
    service.increment("jobs", &[("queue", "a")], 2.0).unwrap();
    service.increment("jobs", &[("queue", "a")], 1.0).unwrap();
    service.increment("jobs", &[("queue", "a")], -5.0).unwrap(); // ignored: counters go up
    service.set_gauge("depth", &[], 7.0).unwrap();
    service.set_gauge("depth", &[], 3.0).unwrap();
    for v in 1..=100 {
        service.record("latency", &[], f64::from(v)).unwrap();
    }
    let store = service.store();
    assert_eq!(
        store.counter(&MetricKey::new("jobs", [("queue", "a")])),
        Some(3.0)
    );
    assert_eq!(store.gauge(&key("depth")), Some(3.0));
    let latency = store.histogram(&key("latency")).unwrap();
    assert_eq!(
        (latency.window.p50, latency.window.p90, latency.window.p99),
        (50.0, 90.0, 99.0)
    );
    assert_eq!(latency.window.mean, 50.5);

    let before = service.snapshot();
    let err = service.increment("9bad name", &[], 1.0).unwrap_err();
    assert_eq!(err.code(), 4002);
    assert!(service.set_gauge("", &[], 1.0).is_err());
    assert_eq!(service.snapshot(), before);
}

#[test]
fn histograms_keep_at_most_max_samples() {
    let config = TelemetryConfig {
        max_samples: 10,
        ..TelemetryConfig::default()
    };
    let service = TelemetryService::with_config(Telemetry::new(), config).unwrap();
    for v in 1..=25 {
        service.record("h", &[], f64::from(v)).unwrap();
    }
    let h = service.store().histogram(&key("h")).unwrap();
    assert_eq!(h.count, 25);
    assert_eq!(
        (h.window.count, h.window.min, h.window.max),
        (10, 16.0, 25.0)
    );
}

#[test]
fn invalid_settings_are_refused() {
    for config in [
        TelemetryConfig {
            retention: Duration::ZERO,
            ..TelemetryConfig::default()
        },
        TelemetryConfig {
            max_samples: 0,
            ..TelemetryConfig::default()
        },
        TelemetryConfig {
            prune_every: Duration::ZERO,
            ..TelemetryConfig::default()
        },
    ] {
        let err = TelemetryService::with_config(Telemetry::new(), config).unwrap_err();
        assert_eq!(err.code(), 4004);
    }
}

#[tokio::test(start_paused = true)]
async fn pruning_drops_what_is_older_than_the_window() {
    let config = TelemetryConfig {
        retention: Duration::from_secs(60),
        clock: Clock::tokio(),
        ..TelemetryConfig::default()
    };
    let service = TelemetryService::with_config(Telemetry::new(), config).unwrap();
    service.record("h", &[], 1.0).unwrap();
    service.increment("old", &[], 1.0).unwrap();
    advance(Duration::from_secs(40)).await;
    service.record("h", &[], 2.0).unwrap();
    assert_eq!(service.prune(), 0);
    advance(Duration::from_secs(30)).await; // first sample and `old` are 70 s old
    assert_eq!(service.prune(), 2);
    let h = service.store().histogram(&key("h")).unwrap();
    assert_eq!((h.window.count, h.window.min), (1, 2.0));
    assert_eq!(service.store().counter(&key("old")), None);
}

#[test]
fn reset_forgets_every_metric_but_keeps_handlers() {
    let telemetry = Telemetry::new();
    let service = TelemetryService::new(telemetry.clone());
    service.attach_collector().unwrap();
    telemetry.emit(&["a"], &[("x", 1.0)], &[]);
    service.set_gauge("g", &[], 1.0).unwrap();
    service.reset();
    assert_eq!(service.snapshot(), Default::default());
    telemetry.emit(&["a"], &[], &[]);
    assert_eq!(service.snapshot().counter("a"), Some(1.0));
}

#[tokio::test(start_paused = true)]
async fn the_process_collects_while_it_runs_and_prunes_periodically() {
    let telemetry = Telemetry::new();
    let config = TelemetryConfig {
        retention: Duration::from_secs(10),
        prune_every: Duration::from_secs(5),
        clock: Clock::tokio(),
        ..TelemetryConfig::default()
    };
    let service = TelemetryService::with_config(telemetry.clone(), config).unwrap();
    let process = service.child_spec("telemetry").start().await.unwrap();
    assert!(
        telemetry
            .handler_ids()
            .contains(&SERVICE_HANDLER_ID.to_owned())
    );
    telemetry.emit(&["tick"], &[("v", 1.0)], &[("k", MetaValue::Str("x"))]);
    assert_eq!(service.snapshot().counter("tick"), Some(1.0));

    // 15 s later the process has pruned the 15 s old metrics by itself.
    advance(Duration::from_secs(15)).await;
    advance(Duration::from_millis(1)).await;
    assert_eq!(service.snapshot().counter("tick"), None);

    process.stop().await;
    assert!(
        !telemetry
            .handler_ids()
            .contains(&SERVICE_HANDLER_ID.to_owned())
    );
    telemetry.emit(&["tick"], &[], &[]);
    assert_eq!(service.snapshot().counter("tick"), None);
}
