//! EventStore reads: queries by stream, type, time range and correlation
//! id with order, offset and limit; causation chains; pruning; stats; the
//! EventReader contract.

use crate::support::Place;
use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use futures::StreamExt;
use mabeam_foundation_services::{EventStore, EventStoreError};
use mabeam_supervision_core::{Clock, ErrorCode, Event, EventQuery, EventReader, ManualWall};
use serde_json::json;

/// A store whose clock starts at 1,000,000 ms, and 10 events, 10 ms apart:
/// streams "a" (even i) and "b" (odd i), kinds "even"/"odd" and "tick"
/// every third, correlation "c0"/"c1"/"c2" by i % 3.
async fn fixture(place: &Place) -> (EventStore, ManualWall) {
    let (clock, wall) = Clock::manual(UNIX_EPOCH + Duration::from_secs(1_000));
    let store = EventStore::open(place.config().with_clock(clock))
        .await
        .unwrap();
    for i in 0..10u64 {
        let stream = if i % 2 == 0 { "a" } else { "b" };
        let kind = if i % 3 == 0 {
            "tick"
        } else if i % 2 == 0 {
            "even"
        } else {
            "odd"
        };
        store
            .append(Event::new(stream, kind, json!(i)).with_correlation_id(format!("c{}", i % 3)))
            .await
            .unwrap();
        wall.advance(Duration::from_millis(10));
    }
    (store, wall)
}

fn data(events: &[mabeam_supervision_core::StoredEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.event.data.as_u64().unwrap())
        .collect()
}

pub(crate) async fn queries_filter_by_stream_kind_time_and_correlation(place: Place) {
    let (store, _wall) = fixture(&place).await;
    let q = |query| store.query(query);
    assert_eq!(
        data(&q(EventQuery::new()).await.unwrap()),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        data(&q(EventQuery::new().stream("a")).await.unwrap()),
        [0, 2, 4, 6, 8]
    );
    assert_eq!(
        data(&q(EventQuery::new().kind("tick")).await.unwrap()),
        [0, 3, 6, 9]
    );
    assert_eq!(
        data(&q(EventQuery::new().stream("b").kind("odd")).await.unwrap()),
        [1, 5, 7]
    );
    // [1,000,020, 1,000,050): events 2, 3, 4.
    assert_eq!(
        data(
            &q(EventQuery::new().between(1_000_020, 1_000_050))
                .await
                .unwrap()
        ),
        [2, 3, 4]
    );
    let mut since = EventQuery::new();
    since.since_ms = Some(1_000_080);
    assert_eq!(data(&q(since).await.unwrap()), [8, 9]);
    assert_eq!(
        data(&q(EventQuery::new().correlation_id("c1")).await.unwrap()),
        [1, 4, 7]
    );
    assert!(
        q(EventQuery::new().stream("none"))
            .await
            .unwrap()
            .is_empty()
    );
    store.stop().await;
}

pub(crate) async fn queries_order_offset_and_limit(place: Place) {
    let (store, _wall) = fixture(&place).await;
    let q = |query| store.query(query);
    assert_eq!(
        data(&q(EventQuery::new().descending().limit(3)).await.unwrap()),
        [9, 8, 7]
    );
    assert_eq!(
        data(&q(EventQuery::new().offset(7)).await.unwrap()),
        [7, 8, 9]
    );
    assert_eq!(
        data(
            &q(EventQuery::new()
                .stream("a")
                .descending()
                .offset(1)
                .limit(2))
            .await
            .unwrap()
        ),
        [6, 4]
    );
    assert!(q(EventQuery::new().limit(0)).await.unwrap().is_empty());
    let reversed = q(EventQuery::new().between(5, 4)).await.unwrap_err();
    assert!(matches!(reversed, EventStoreError::InvalidQuery(_)));
    assert_eq!(reversed.code(), 3010);
    assert!(matches!(
        q(EventQuery::new().offset(u64::MAX)).await,
        Err(EventStoreError::InvalidQuery(_))
    ));
    store.stop().await;
}

// The chain runs from the root cause to the event itself.
pub(crate) async fn the_causation_chain_runs_from_the_root_to_the_event(place: Place) {
    let store = EventStore::open(place.config()).await.unwrap();
    let root = store
        .append(Event::new("w", "requested", json!(0)))
        .await
        .unwrap();
    let other = store
        .append(Event::new("w", "unrelated", json!(0)))
        .await
        .unwrap();
    let mid = store
        .append(Event::new("w", "approved", json!(0)).caused_by(root.id))
        .await
        .unwrap();
    let leaf = store
        .append(Event::new("w", "shipped", json!(0)).caused_by(mid.id))
        .await
        .unwrap();
    let chain = store.causation_chain(leaf.id).await.unwrap();
    assert_eq!(
        chain.iter().map(|e| e.id).collect::<Vec<_>>(),
        [root.id, mid.id, leaf.id]
    );
    assert_eq!(store.causation_chain(other.id).await.unwrap().len(), 1);
    assert_eq!(
        store.causation_chain(99).await.unwrap_err(),
        EventStoreError::NotFound(99)
    );
    store.stop().await;
}

// Pruning deletes what is older, answers the count, and never lets an id
// or a stream version be given again.
pub(crate) async fn prune_before_deletes_old_events_and_ids_are_never_reused(place: Place) {
    let (store, _wall) = fixture(&place).await;
    assert_eq!(store.prune_before(1_000_050).await.unwrap(), 5);
    assert_eq!(store.prune_before(1_000_050).await.unwrap(), 0);
    assert_eq!(
        store.get(3).await.unwrap_err(),
        EventStoreError::NotFound(3)
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(
        (stats.events, stats.first_id, stats.last_id),
        (5, Some(6), Some(10))
    );
    // Everything pruned, then the store restarted: ids go on from 11.
    assert_eq!(store.prune_before(u64::MAX).await.unwrap(), 5);
    store.stop().await;
    let store = EventStore::open(place.config()).await.unwrap();
    let next = store
        .append(Event::new("a", "even", json!(10)))
        .await
        .unwrap();
    assert_eq!((next.id, next.stream_version), (11, 6));
    store.stop().await;
}

pub(crate) async fn stats_count_events_streams_and_commits(place: Place) {
    let (store, _wall) = fixture(&place).await;
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.events, 10);
    assert_eq!(stats.streams, 2);
    assert_eq!((stats.first_id, stats.last_id), (Some(1), Some(10)));
    assert_eq!(stats.appended, 10);
    assert!(stats.commits >= 1 && stats.commits <= 10);
    assert!(stats.file_bytes > 0);
    store.stop().await;
}

// Other crates read through the contract, without naming this crate's
// types: read from a position, replay as a stream, query, get.
pub(crate) async fn the_store_is_an_event_reader(place: Place) {
    let store = EventStore::open(place.config()).await.unwrap();
    let batch: Vec<_> = (0..1_200u64)
        .map(|i| Event::new("r", "n", json!(i)))
        .collect();
    store.append_batch(batch).await.unwrap();
    let reader: Arc<dyn EventReader> = Arc::new(store.clone());
    let page = reader.read_from(1_000, 10).await.unwrap();
    assert_eq!(page.first().map(|e| e.id), Some(1_000));
    assert_eq!(page.len(), 10);
    // Replay across several pages, from a position.
    let replayed: Vec<_> = reader.stream_from(100).collect().await;
    let ids: Vec<u64> = replayed.into_iter().map(|e| e.unwrap().id).collect();
    assert_eq!(ids, (100..=1_200).collect::<Vec<_>>());
    assert_eq!(reader.get(7).await.unwrap().event.data, json!(6));
    assert_eq!(
        reader.get(5_000).await.unwrap_err(),
        mabeam_supervision_core::EventReadError::NotFound(5_000)
    );
    assert_eq!(
        reader
            .query(EventQuery::new().limit(3))
            .await
            .unwrap()
            .len(),
        3
    );
    store.stop().await;
}
