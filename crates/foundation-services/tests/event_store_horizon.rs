//! EventStore retention and its horizon (issue 21, items 5 and 6): reads
//! and subscriptions below the horizon fail as `Compacted`; the store
//! prunes by age and count by itself, reports each prune in telemetry,
//! and never reuses an id or a stream version. And the durability
//! settings the writer runs with (issue 28, item 1).

use std::time::{Duration, UNIX_EPOCH};

use foundation_services::{Durability, EventStore, EventStoreConfig, EventStoreError, Retention};
use serde_json::json;
use supervision_core::{
    Clock, ErrorCode, Event, EventReadError, EventReader, ManualWall, Telemetry, events,
};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const T0: Duration = Duration::from_secs(1_000_000);

fn config(dir: &tempfile::TempDir) -> (EventStoreConfig, ManualWall) {
    let (clock, wall) = Clock::manual(UNIX_EPOCH + T0);
    (EventStoreConfig::new(dir.path()).with_clock(clock), wall)
}

async fn append(store: &EventStore, stream: &str, n: usize) {
    for i in 0..n {
        store
            .append(Event::new(stream, "tick", json!(i)))
            .await
            .unwrap();
    }
}

/// The prunes reported on `telemetry`: (reason, events, first_available).
fn prunes(telemetry: &Telemetry) -> mpsc::UnboundedReceiver<(String, u64, u64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    telemetry
        .attach("prunes", events::EVENT_STORE_PRUNED, move |event| {
            let reason = match event.meta("reason") {
                Some(supervision_core::MetaValue::Str(reason)) => reason.to_owned(),
                other => format!("{other:?}"),
            };
            let _ = tx.send((
                reason,
                event.measurement("events").unwrap_or(-1.0) as u64,
                event.measurement("first_available").unwrap_or(-1.0) as u64,
            ));
        })
        .unwrap();
    rx
}

async fn next_prune(rx: &mut mpsc::UnboundedReceiver<(String, u64, u64)>) -> (String, u64, u64) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no event_store.pruned within 10 s")
        .expect("the telemetry handler was dropped")
}

// Bad retention settings are refused before anything opens.
#[tokio::test]
async fn bad_retention_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    for retention in [
        Retention {
            every: Duration::ZERO,
            ..Retention::default()
        },
        Retention {
            max_events: Some(0),
            ..Retention::default()
        },
        Retention {
            max_age: Some(Duration::ZERO),
            ..Retention::default()
        },
    ] {
        let error = EventStore::open(EventStoreConfig::new(dir.path()).with_retention(retention))
            .await
            .unwrap_err();
        assert_eq!(error.code(), 3013, "{error:?}");
    }
    assert!(
        !dir.path().join("events.db").exists(),
        "a refused config opened the file"
    );
}

// The writer's connection runs in WAL mode with synchronous=FULL: each
// acknowledged commit is synced, so a power loss loses nothing
// acknowledged. (A SIGKILL cannot tell NORMAL from FULL: the OS keeps the
// pages; only the settings can.)
#[tokio::test]
async fn the_writer_runs_with_wal_and_full_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(EventStoreConfig::new(dir.path()))
        .await
        .unwrap();
    assert_eq!(
        store.durability().await.unwrap(),
        Durability {
            journal_mode: "wal".into(),
            synchronous: "full".into(),
        }
    );
    store.stop().await;
}
