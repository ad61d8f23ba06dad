//! The EventStore as a supervised service: its handle and the sink made
//! from it reach the running incarnation across restarts; its health
//! check; a failed open fails the start; stopping releases the store.

use std::{sync::Arc, time::Duration};

use mabeam_foundation_services::{EventStore, EventStoreConfig, EventStoreService};
use mabeam_supervision_core::{
    ApplicationError, ApplicationSpec, Event, EventReader, EventSink, EventSinkError, Health,
    Telemetry, events, testkit::TelemetryProbe,
};
use serde_json::json;

/// Awaits `future`, failing the test if it takes more than 10 s (a wait
/// that could last for ever fails instead of hanging the run).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .expect("no answer within 10 s")
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_reaches_the_store_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &[]);
    let service = EventStoreService::new(EventStoreConfig::new(dir.path()));
    let sink: Arc<dyn EventSink> = Arc::new(service.store());
    let reader: Arc<dyn EventReader> = Arc::new(service.store());
    let app = ApplicationSpec::new("foundation")
        .with_telemetry(telemetry)
        .service(service)
        .start()
        .await
        .unwrap();
    assert_eq!(sink.record(Event::new("s", "k", json!(1))).await, Ok(1));

    // Kill the store's process: its supervisor starts a new incarnation.
    let first = app
        .status()
        .await
        .service("event_store")
        .unwrap()
        .handle
        .clone()
        .unwrap();
    first.kill();
    within(first.exited()).await;
    probe
        .wait_for_where(
            events::CHILD_RESTARTED,
            |e| e.meta_str("child") == Some("event_store"),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(sink.record(Event::new("s", "k", json!(2))).await, Ok(2));
    let stored = reader.read_from(1, 10).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|e| e.event.data.clone())
            .collect::<Vec<_>>(),
        [json!(1), json!(2)]
    );

    let health = app.health().await;
    assert_eq!(health.services[0].health, Health::Healthy);

    app.stop().await.unwrap();
    let refused = sink
        .record(Event::new("s", "k", json!(3)))
        .await
        .unwrap_err();
    assert!(matches!(refused, EventSinkError::Unavailable(_)));
    // Stopped means closed: the directory can be opened again.
    let reopened = EventStore::open(EventStoreConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(reopened.stats().await.unwrap().events, 2);
    reopened.stop().await;
}

// A store that cannot open (its directory is held by another store)
// fails the service's start, and so the application's.
#[tokio::test]
async fn a_store_that_cannot_open_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let holder = EventStore::open(EventStoreConfig::new(dir.path()))
        .await
        .unwrap();
    let service = EventStoreService::new(EventStoreConfig::new(dir.path()));
    let error = ApplicationSpec::new("foundation")
        .service(service)
        .start()
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ApplicationError::StartFailed { service, .. } if &**service == "event_store"),
        "{error:?}"
    );
    holder.stop().await;
}

// The health check fails once the store behind the handle is gone.
#[tokio::test]
async fn the_health_check_reports_a_store_that_is_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let service = EventStoreService::new(EventStoreConfig::new(dir.path()));
    let store = service.store();
    let check = mabeam_supervision_core::Service::health_check(&service).unwrap();
    let app = ApplicationSpec::new("foundation")
        .service(service)
        .start()
        .await
        .unwrap();
    let handle = app.status().await.services[0].handle.clone().unwrap();
    assert_eq!(check.run(&handle).await, Health::Healthy);
    store.stop().await;
    assert!(matches!(check.run(&handle).await, Health::Unhealthy(_)));
    app.stop().await.unwrap();
}
