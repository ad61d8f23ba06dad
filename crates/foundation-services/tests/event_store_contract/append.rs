//! EventStore appends: ids, stream versions, timestamps from the clock,
//! optimistic concurrency, all-or-nothing batches, idempotency keys and
//! bad input.

use crate::support::Place;
use std::time::{Duration, UNIX_EPOCH};

use mabeam_foundation_services::{EventStore, EventStoreError, ExpectedVersion};
use mabeam_supervision_core::{Clock, ErrorCode, Event, EventQuery, EventSink};
use serde_json::json;

fn ev(stream: &str, kind: &str, data: serde_json::Value) -> Event {
    Event::new(stream, kind, data)
}

// Ids increase strictly across streams; versions count per stream; every
// field given comes back as given, the node and the time as the store set.
pub(crate) async fn appended_events_come_back_with_ids_versions_and_fields(place: Place) {
    let (clock, wall) = Clock::manual(UNIX_EPOCH + Duration::from_secs(1_000));
    let store = EventStore::open(place.config().with_clock(clock).with_node("node-a"))
        .await
        .unwrap();
    let a1 = store
        .append(ev("a", "created", json!({"n": 1})))
        .await
        .unwrap();
    wall.advance(Duration::from_millis(5));
    let b1 = store
        .append(
            ev("b", "created", json!("x"))
                .with_correlation_id("req-1")
                .caused_by(a1.id)
                .with_metadata("user", "ops")
                .on_node("node-b"),
        )
        .await
        .unwrap();
    let a2 = store.append(ev("a", "renamed", json!(null))).await.unwrap();
    assert_eq!((a1.id, a1.stream_version), (1, 1));
    assert_eq!((b1.id, b1.stream_version), (2, 1));
    assert_eq!((a2.id, a2.stream_version), (3, 2));
    assert!(!a1.duplicate);

    let first = store.get(1).await.unwrap();
    assert_eq!(first.timestamp_ms, 1_000_000);
    assert_eq!(first.event.node.as_deref(), Some("node-a"));
    assert_eq!(first.event.data, json!({"n": 1}));
    let second = store.get(2).await.unwrap();
    assert_eq!(second.timestamp_ms, 1_000_005);
    assert_eq!(second.event.node.as_deref(), Some("node-b"));
    assert_eq!(second.event.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(second.event.causation_id, Some(1));
    assert_eq!(second.event.metadata["user"], "ops");
    assert_eq!(second.event.kind, "created");
    store.stop().await;
}

pub(crate) async fn get_of_an_unknown_id_is_not_found_with_a_stable_code(place: Place) {
    let store = place.open().await;
    let error = store.get(42).await.unwrap_err();
    assert_eq!(error, EventStoreError::NotFound(42));
    assert_eq!(error.code(), 3002);
    store.stop().await;
}

// Optimistic concurrency: an append expecting a version the stream has
// moved past fails with a typed conflict and writes nothing.
pub(crate) async fn expected_version_conflicts_when_the_stream_moved_on(place: Place) {
    let store = place.open().await;
    store
        .append_expecting(ev("acct", "opened", json!(0)), ExpectedVersion::NoStream)
        .await
        .unwrap();
    store
        .append_expecting(ev("acct", "deposited", json!(5)), ExpectedVersion::Exact(1))
        .await
        .unwrap();
    let stale = store
        .append_expecting(ev("acct", "deposited", json!(7)), ExpectedVersion::Exact(1))
        .await
        .unwrap_err();
    assert_eq!(
        stale,
        EventStoreError::VersionConflict {
            stream: "acct".into(),
            expected: "version 1".into(),
            actual: 2
        }
    );
    assert_eq!(stale.code(), 3003);
    let again = store
        .append_expecting(ev("acct", "opened", json!(0)), ExpectedVersion::NoStream)
        .await
        .unwrap_err();
    assert!(matches!(
        again,
        EventStoreError::VersionConflict { actual: 2, .. }
    ));
    assert_eq!(
        store
            .query(EventQuery::new().stream("acct"))
            .await
            .unwrap()
            .len(),
        2
    );
    // Expecting the stream to exist: refused for a stream with no event,
    // admitted at any version of one that has.
    let missing = store
        .append_expecting(ev("nobody", "x", json!(0)), ExpectedVersion::StreamExists)
        .await
        .unwrap_err();
    assert_eq!(
        missing,
        EventStoreError::VersionConflict {
            stream: "nobody".into(),
            expected: "an existing stream".into(),
            actual: 0
        }
    );
    assert!(
        store
            .read_from(1, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| e.event.stream != "nobody")
    );
    // A batch expecting the right version goes in whole.
    let batch = store
        .append_batch_expecting(
            vec![ev("acct", "a", json!(1)), ev("acct", "b", json!(2))],
            ExpectedVersion::Exact(2),
        )
        .await
        .unwrap();
    assert_eq!(
        batch.iter().map(|a| a.stream_version).collect::<Vec<_>>(),
        [3, 4]
    );
    let exists = store
        .append_expecting(ev("acct", "c", json!(3)), ExpectedVersion::StreamExists)
        .await
        .unwrap();
    assert_eq!(exists.stream_version, 5);
    store.stop().await;
}

// Concurrent writers expecting the same version: exactly one wins.
pub(crate) async fn of_concurrent_appends_expecting_one_version_exactly_one_wins(place: Place) {
    let store = place.open().await;
    let attempts: Vec<_> = (0..16)
        .map(|i| store.append_expecting(ev("race", "won", json!(i)), ExpectedVersion::NoStream))
        .collect();
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| matches!(e, EventStoreError::VersionConflict { .. }))
    );
    store.stop().await;
}

// One invalid event rejects its whole batch; nothing of it is written, and
// the ids after it show no hole.
pub(crate) async fn a_batch_with_one_invalid_event_writes_nothing(place: Place) {
    let store = place.open().await;
    let refused = store
        .append_batch(vec![
            ev("s", "ok", json!(1)),
            ev("s", "", json!(2)),
            ev("s", "ok", json!(3)),
        ])
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        EventStoreError::InvalidEvent { index: 1, .. }
    ));
    assert_eq!(refused.code(), 3004);
    assert!(store.read_from(1, 100).await.unwrap().is_empty());

    let written = store
        .append_batch(vec![ev("s", "ok", json!(1)), ev("t", "ok", json!(2))])
        .await
        .unwrap();
    assert_eq!(written.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2]);
    assert!(store.append_batch(Vec::new()).await.unwrap().is_empty());
    store.stop().await;
}

// A batch that fails inside the writer (a version conflict) is rolled back
// whole, while appends committed in the same group stay.
pub(crate) async fn a_batch_failing_in_the_writer_is_rolled_back_alone(place: Place) {
    let store = place.open().await;
    store.append(ev("x", "first", json!(1))).await.unwrap();
    // Queued together: the writer may commit them in one group.
    let ok = store.append(ev("y", "fine", json!(1)));
    let conflicting = store.append_batch_expecting(
        vec![ev("x", "second", json!(2)), ev("x", "third", json!(3))],
        ExpectedVersion::Exact(5),
    );
    let also_ok = store.append(ev("y", "fine", json!(2)));
    assert!(matches!(
        conflicting.await,
        Err(EventStoreError::VersionConflict { actual: 1, .. })
    ));
    assert_eq!(ok.await.unwrap().stream_version, 1);
    assert_eq!(also_ok.await.unwrap().stream_version, 2);
    let all = store.read_from(1, 100).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.event.kind.as_str())
            .collect::<Vec<_>>(),
        ["first", "fine", "fine"]
    );
    store.stop().await;
}

// A retried append with the same idempotency key is stored once and
// answers the first one's id, even after a restart of the store.
pub(crate) async fn an_idempotency_key_stores_a_retried_append_once(place: Place) {
    let store = place.open().await;
    let first = store
        .append(ev("pay", "charged", json!(10)).with_idempotency_key("charge-1"))
        .await
        .unwrap();
    let retry = store
        .append(ev("pay", "charged", json!(10)).with_idempotency_key("charge-1"))
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (retry.id, retry.stream_version),
        (first.id, first.stream_version)
    );
    // A retry with an expected version answers the stored event too.
    let retried_expecting = store
        .append_expecting(
            ev("pay", "charged", json!(10)).with_idempotency_key("charge-1"),
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    assert_eq!(retried_expecting.id, first.id);
    // Twice in one batch: bad input, nothing written.
    let twice = store
        .append_batch(vec![
            ev("pay", "refunded", json!(1)).with_idempotency_key("r-1"),
            ev("pay", "refunded", json!(1)).with_idempotency_key("r-1"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(twice, EventStoreError::InvalidEvent { index: 1, .. }),
        "{twice:?}"
    );
    store.stop().await;

    let store = place.open().await;
    let after_restart = store
        .append(ev("pay", "charged", json!(10)).with_idempotency_key("charge-1"))
        .await
        .unwrap();
    assert_eq!(after_restart.id, first.id);
    assert_eq!(store.stats().await.unwrap().events, 1);
    store.stop().await;
}

// One idempotency key queued twice (most likely in one commit group) is
// stored once: the second append answers the first one's event.
pub(crate) async fn one_key_queued_twice_together_is_stored_once(place: Place) {
    let store = place.open().await;
    let plain = store.append(ev("pay", "noted", json!(0)));
    let first = store.append(ev("pay", "charged", json!(10)).with_idempotency_key("charge-2"));
    let retry = store.append(ev("pay", "charged", json!(10)).with_idempotency_key("charge-2"));
    let (plain, first, retry) = (
        plain.await.unwrap(),
        first.await.unwrap(),
        retry.await.unwrap(),
    );
    assert!(!plain.duplicate && !first.duplicate && retry.duplicate);
    assert_eq!((plain.id, first.id), (1, 2));
    assert_eq!(
        (retry.id, retry.stream_version),
        (first.id, first.stream_version)
    );
    assert_eq!(store.stats().await.unwrap().events, 2);
    store.stop().await;
}

// Bad input gets a typed error and changes nothing.
pub(crate) async fn bad_events_are_refused_with_typed_errors(place: Place) {
    let store = EventStore::open(place.config().with_max_event_bytes(64))
        .await
        .unwrap();
    let too_big = store
        .append(ev("s", "k", json!("x".repeat(100))))
        .await
        .unwrap_err();
    assert!(matches!(
        too_big,
        EventStoreError::TooLarge {
            index: 0,
            size: 102,
            limit: 64
        }
    ));
    assert_eq!(too_big.code(), 3005);
    let cases = [
        ev("", "k", json!(1)),
        ev("s", "", json!(1)),
        ev("s", "has space", json!(1)),
        ev("s", &"k".repeat(300), json!(1)),
        ev("s\n", "k", json!(1)),
        ev("s", "k", json!(1)).with_idempotency_key(""),
    ];
    for bad in cases {
        let error = store.append(bad.clone()).await.unwrap_err();
        assert!(
            matches!(error, EventStoreError::InvalidEvent { index: 0, .. }),
            "{bad:?} gave {error:?}"
        );
    }
    let mixed = store
        .append_batch_expecting(
            vec![ev("a", "k", json!(1)), ev("b", "k", json!(1))],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap_err();
    assert!(matches!(
        mixed,
        EventStoreError::InvalidEvent { index: 1, .. }
    ));
    assert_eq!(store.stats().await.unwrap().events, 0);
    store.stop().await;
}

// The EventSink contract records through the store, durably, and says
// unavailable once it is closed.
pub(crate) async fn the_store_is_an_event_sink(place: Place) {
    let store = place.open().await;
    let sink: std::sync::Arc<dyn EventSink> = std::sync::Arc::new(store.clone());
    assert_eq!(sink.record(ev("s", "k", json!(1))).await, Ok(1));
    assert_eq!(sink.record(ev("s", "k", json!(2))).await, Ok(2));
    store.stop().await;
    let error = sink.record(ev("s", "k", json!(3))).await.unwrap_err();
    assert!(matches!(
        error,
        mabeam_supervision_core::EventSinkError::Unavailable(_)
    ));
    assert_eq!(
        store
            .append(ev("s", "k", json!(3)))
            .await
            .unwrap_err()
            .code(),
        3001
    );
}

// Pipelining: many appends queued, only the last awaited; all are durable
// in queue order when it is acknowledged.
pub(crate) async fn queued_appends_are_durable_when_the_last_is_acknowledged(place: Place) {
    let store = place.open().await;
    let mut queued: Vec<_> = (0..500)
        .map(|i| store.append(ev("p", "n", json!(i))))
        .collect();
    let last = queued.pop().unwrap().await.unwrap();
    assert_eq!(last.id, 500);
    drop(queued);
    store.stop().await;
    let store = place.open().await;
    let all = store.read_from(1, 1_000).await.unwrap();
    assert_eq!(all.len(), 500);
    assert!(
        all.iter()
            .enumerate()
            .all(|(i, e)| e.event.data == json!(i))
    );
    store.stop().await;
}
