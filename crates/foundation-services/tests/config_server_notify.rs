//! ConfigServer notifications: subscribers receive (path, old, new) for
//! every change, in order; one that is gone is dropped without harm; every
//! change is recorded through the EventSink with its previous value, and
//! changes the sink could not take are recorded later.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use futures::future::BoxFuture;
use mabeam_foundation_services::{
    ConfigChange, ConfigHealth, ConfigSchema, ConfigServer, ConfigServerConfig, EventStore,
    EventStoreConfig, ValueRule,
    config_server::{CONFIG_CHANGED, CONFIG_EVENT_STREAM, ConfigProcess},
};
use mabeam_supervision_core::{
    Event, EventQuery, EventSeq, EventSink, EventSinkError, ProcessHandle,
};
use parking_lot::Mutex;
use serde_json::json;

/// Awaits `future`, failing the test if it takes more than 10 s (a wait
/// that could last for ever fails instead of hanging the run).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .expect("no answer within 10 s")
}

fn config(dir: &std::path::Path) -> ConfigServerConfig {
    ConfigServerConfig::new(dir)
        .with_schema(
            ConfigSchema::new()
                .updatable("a.x", ValueRule::integer(0, 100))
                .updatable("a.y", ValueRule::integer(0, 100))
                .updatable("b", ValueRule::Any),
        )
        .with_defaults(json!({"a": {"x": 1, "y": 2}}))
}

fn change(
    path: &str,
    old: Option<serde_json::Value>,
    new: Option<serde_json::Value>,
) -> ConfigChange {
    ConfigChange {
        path: path.into(),
        old,
        new,
    }
}

#[tokio::test]
async fn subscribers_receive_every_change_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = ConfigServer::new(config(dir.path())).unwrap();
    let process = ProcessHandle::spawn::<ConfigProcess>(server.clone())
        .await
        .unwrap();
    let mut all = server.subscribe("");
    let mut only_a = server.subscribe("a");
    let mut only_b = server.subscribe("b");
    server.update("a.x", json!(10)).await.unwrap();
    server.update("b", json!("new")).await.unwrap();
    server.update("a.x", json!(11)).await.unwrap();
    server.update("a.y", json!(2)).await.unwrap(); // unchanged: no notification
    server.reset().await.unwrap();

    let expected_all = [
        change("a.x", Some(json!(1)), Some(json!(10))),
        change("b", None, Some(json!("new"))),
        change("a.x", Some(json!(10)), Some(json!(11))),
        // A reset reports its paths in the order they were last set.
        change("b", Some(json!("new")), None),
        change("a.x", Some(json!(11)), Some(json!(1))),
    ];
    for expected in &expected_all {
        assert_eq!(&within(all.next()).await.unwrap(), expected);
    }
    assert_eq!(all.try_next(), None);
    for expected in expected_all.iter().filter(|c| c.path.starts_with('a')) {
        assert_eq!(&within(only_a.next()).await.unwrap(), expected);
    }
    assert_eq!(only_a.try_next(), None);
    assert_eq!(within(only_b.next()).await.unwrap().path, "b");
    process.stop().await;
}

// A subscriber that stops (its end dropped) is removed at the next change;
// the others and the server go on.
#[tokio::test]
async fn a_subscriber_that_stops_is_dropped_without_harm() {
    let dir = tempfile::tempdir().unwrap();
    let server = ConfigServer::new(config(dir.path())).unwrap();
    let process = ProcessHandle::spawn::<ConfigProcess>(server.clone())
        .await
        .unwrap();
    let gone = server.subscribe("");
    let mut kept = server.subscribe("");
    // A subscriber task that ends (as a crashed consumer would).
    let task = tokio::spawn(async move { drop(gone) });
    task.await.unwrap();
    assert_eq!(server.subscriber_count(), 2);
    server.update("a.x", json!(5)).await.unwrap();
    assert_eq!(server.subscriber_count(), 1);
    assert_eq!(within(kept.next()).await.unwrap().new, Some(json!(5)));
    assert!(process.is_alive());
    server.update("a.x", json!(6)).await.unwrap();
    assert_eq!(within(kept.next()).await.unwrap().new, Some(json!(6)));
    process.stop().await;
}

// Every change is recorded on the `config` stream with its previous value
// (here into a real EventStore, through the EventSink contract).
#[tokio::test]
async fn every_change_is_recorded_with_its_previous_value() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(EventStoreConfig::new(dir.path().join("events")))
        .await
        .unwrap();
    let server = ConfigServer::new(
        config(&dir.path().join("config")).with_event_sink(Arc::new(store.clone())),
    )
    .unwrap();
    let process = ProcessHandle::spawn::<ConfigProcess>(server.clone())
        .await
        .unwrap();
    server.update("a.x", json!(10)).await.unwrap();
    server.update("a.x", json!(20)).await.unwrap();
    let events = store
        .query(EventQuery::new().stream(CONFIG_EVENT_STREAM))
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.event.kind == CONFIG_CHANGED));
    assert_eq!(
        events[0].event.data,
        json!({"path": "a.x", "old": 1, "new": 10})
    );
    assert_eq!(
        events[1].event.data,
        json!({"path": "a.x", "old": 10, "new": 20})
    );
    process.stop().await;
    store.stop().await;
}

/// A sink that refuses while `down` is set, and keeps what it accepts.
#[derive(Default)]
struct FlakySink {
    down: AtomicBool,
    events: Mutex<Vec<Event>>,
}

impl EventSink for FlakySink {
    fn record(&self, event: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(EventSinkError::Unavailable("down".into()));
            }
            let mut events = self.events.lock();
            events.push(event);
            Ok(events.len() as EventSeq)
        })
    }
}

// Changes made while the sink is unavailable are kept (the server is
// degraded meanwhile) and recorded, in order, once it takes them again.
#[tokio::test]
async fn changes_the_sink_refused_are_recorded_later_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(FlakySink::default());
    let server = ConfigServer::new(config(dir.path()).with_event_sink(sink.clone())).unwrap();
    let process = ProcessHandle::spawn::<ConfigProcess>(server.clone())
        .await
        .unwrap();
    sink.down.store(true, Ordering::SeqCst);
    server.update("a.x", json!(10)).await.unwrap();
    server.update("a.x", json!(20)).await.unwrap();
    assert_eq!(
        server.get("a.x").unwrap(),
        json!(20),
        "the update itself succeeded"
    );
    assert!(matches!(server.health(), ConfigHealth::Degraded { .. }));
    sink.down.store(false, Ordering::SeqCst);
    server.update("a.y", json!(3)).await.unwrap();
    let paths: Vec<_> = sink
        .events
        .lock()
        .iter()
        .map(|e| (e.data["path"].clone(), e.data["new"].clone()))
        .collect();
    assert_eq!(
        paths,
        [
            (json!("a.x"), json!(10)),
            (json!("a.x"), json!(20)),
            (json!("a.y"), json!(3))
        ]
    );
    assert_eq!(server.health(), ConfigHealth::Healthy);
    process.stop().await;
}
