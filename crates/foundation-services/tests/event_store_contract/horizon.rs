//! EventStore retention and its horizon (issue 21, items 5 and 6): reads
//! and subscriptions below the horizon fail as `Compacted`; the store
//! prunes by age and count by itself, reports each prune in telemetry,
//! and never reuses an id or a stream version. And the durability
//! settings the writer runs with (issue 28, item 1).

use crate::support::Place;
use std::time::{Duration, UNIX_EPOCH};

use mabeam_foundation_services::{EventStore, EventStoreConfig, EventStoreError, Retention};
use mabeam_supervision_core::{
    Clock, ErrorCode, Event, EventReadError, EventReader, ManualWall, Telemetry, events,
};
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
const T0: Duration = Duration::from_secs(1_000_000);

fn config(place: &Place) -> (EventStoreConfig, ManualWall) {
    let (clock, wall) = Clock::manual(UNIX_EPOCH + T0);
    (place.config().with_clock(clock), wall)
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
                Some(mabeam_supervision_core::MetaValue::Str(reason)) => reason.to_owned(),
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

// Reading or subscribing from a pruned position fails with `Compacted`
// naming the first available position, through the store and through the
// `EventReader` contract; from the horizon on, reads work.
pub(crate) async fn reads_and_subscriptions_below_the_horizon_are_compacted(place: Place) {
    let (config, wall) = config(&place);
    let store = EventStore::open(config.with_retention(Retention::keep_all()))
        .await
        .unwrap();
    append(&store, "a", 5).await;
    wall.advance(Duration::from_secs(10));
    append(&store, "a", 5).await;
    // Never pruned: reading from 0 or 1 is reading from the start.
    assert_eq!(store.read_from(0, 100).await.unwrap().len(), 10);
    let cutoff = (T0 + Duration::from_secs(5)).as_millis() as u64;
    assert_eq!(store.prune_before(cutoff).await.unwrap(), 5);

    let compacted = EventStoreError::Compacted { first_available: 6 };
    assert_eq!(store.read_from(1, 100).await.unwrap_err(), compacted);
    assert_eq!(store.read_from(5, 100).await.unwrap_err(), compacted);
    assert_eq!(compacted.code(), 3014);
    let from_six = store.read_from(6, 100).await.unwrap();
    assert_eq!(from_six.first().map(|e| e.id), Some(6));
    assert_eq!(from_six.len(), 5);

    let reader: &dyn EventReader = &store;
    let through_contract = reader.read_from(2, 100).await.unwrap_err();
    assert_eq!(
        through_contract,
        EventReadError::Compacted { first_available: 6 }
    );
    assert_eq!(through_contract.code(), 1416);

    for from in [0, 3] {
        let mut subscription = store.subscribe(from);
        let first = tokio::time::timeout(WAIT, subscription.next())
            .await
            .expect("the subscription answered nothing within 10 s");
        assert_eq!(
            first,
            Some(Err(EventReadError::Compacted { first_available: 6 })),
            "subscribing from {from}"
        );
    }
    let mut subscription = store.subscribe(6);
    let first = tokio::time::timeout(WAIT, subscription.next())
        .await
        .expect("the subscription answered nothing within 10 s");
    assert_eq!(first.unwrap().unwrap().id, 6);
    assert_eq!(store.stats().await.unwrap().first_available, 6);
    store.stop().await;
}

// The retention prunes by age, then by count, as a prefix of the log;
// each prune is one telemetry event; ids and stream versions go on after
// it, also across a restart, and the horizon is kept in the file.
pub(crate) async fn retention_prunes_by_age_and_count_and_reports_each_prune(place: Place) {
    let telemetry = Telemetry::new();
    let mut pruned = prunes(&telemetry);
    let (config, wall) = config(&place);
    let retention = Retention {
        max_age: Some(Duration::from_secs(3600)),
        max_events: Some(3),
        // Long: this test applies it by hand.
        every: Duration::from_secs(24 * 3600),
    };
    let config = config
        .with_retention(retention)
        .with_telemetry(telemetry.clone());
    let store = EventStore::open(config.clone()).await.unwrap();
    append(&store, "a", 2).await;
    wall.advance(Duration::from_secs(2 * 3600));
    append(&store, "a", 4).await;

    assert_eq!(store.enforce_retention().await.unwrap(), 3);
    assert_eq!(next_prune(&mut pruned).await, ("age".to_owned(), 2, 3));
    assert_eq!(next_prune(&mut pruned).await, ("size".to_owned(), 1, 4));
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.events, stats.first_id, stats.first_available),
        (3, Some(4), 4)
    );
    assert_eq!(store.enforce_retention().await.unwrap(), 0);

    let next = store
        .append(Event::new("a", "tick", json!("next")))
        .await
        .unwrap();
    assert_eq!((next.id, next.stream_version), (7, 7));
    store.stop().await;

    let store = EventStore::open(config.with_retention(Retention::keep_all()))
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().first_available, 4);
    assert_eq!(
        store.read_from(1, 10).await.unwrap_err(),
        EventStoreError::Compacted { first_available: 4 }
    );
    let next = store
        .append(Event::new("a", "tick", json!("after restart")))
        .await
        .unwrap();
    assert_eq!((next.id, next.stream_version), (8, 8));
    store.stop().await;
}

// Nobody asks: the writer applies the retention on its own, every
// `retention.every`.
pub(crate) async fn the_store_prunes_by_itself(place: Place) {
    let telemetry = Telemetry::new();
    let mut pruned = prunes(&telemetry);
    let (config, wall) = config(&place);
    let retention = Retention {
        max_age: Some(Duration::from_secs(60)),
        max_events: None,
        every: Duration::from_millis(20),
    };
    let store = EventStore::open(
        config
            .with_retention(retention)
            .with_telemetry(telemetry.clone()),
    )
    .await
    .unwrap();
    append(&store, "a", 4).await;
    wall.advance(Duration::from_secs(120));
    assert_eq!(next_prune(&mut pruned).await, ("age".to_owned(), 4, 5));
    assert_eq!(store.stats().await.unwrap().events, 0);
    store.stop().await;
}

// A large backlog is pruned in steps of at most 50,000 events, each its
// own transaction and its own report; the prune asked for answers once
// whole.
pub(crate) async fn a_large_backlog_is_pruned_in_steps(place: Place) {
    let telemetry = Telemetry::new();
    let mut pruned = prunes(&telemetry);
    let (config, _wall) = config(&place);
    let store = EventStore::open(
        config
            .with_retention(Retention::keep_all())
            .with_telemetry(telemetry.clone()),
    )
    .await
    .unwrap();
    let batches: Vec<_> = (0..15)
        .map(|b| {
            store.append_batch(
                (0..4_000)
                    .map(|i| Event::new("bulk", "tick", json!(b * 4_000 + i)))
                    .collect(),
            )
        })
        .collect();
    for batch in batches {
        batch.await.unwrap();
    }
    assert_eq!(store.prune_before(u64::MAX).await.unwrap(), 60_000);
    assert_eq!(
        next_prune(&mut pruned).await,
        ("request".to_owned(), 50_000, 50_001)
    );
    assert_eq!(
        next_prune(&mut pruned).await,
        ("request".to_owned(), 10_000, 60_001)
    );
    assert_eq!(store.stats().await.unwrap().first_available, 60_001);
    store.stop().await;
}
