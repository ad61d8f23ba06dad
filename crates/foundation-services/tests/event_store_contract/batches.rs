//! EventStore batches as units: a retry is the same batch or no retry at
//! all (issue 21, item 4), and a batch that fails after its first insert,
//! inside a group with other batches, is rolled back alone (issue 28,
//! item 4).

use crate::support::Place;
use mabeam_foundation_services::{EventStore, EventStoreError, ExpectedVersion};
use mabeam_supervision_core::{ErrorCode, Event};
use serde_json::json;

fn ev(stream: &str, kind: &str) -> Event {
    Event::new(stream, kind, json!({}))
}

async fn kinds(store: &EventStore) -> Vec<String> {
    store
        .read_from(1, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.kind)
        .collect()
}

// A retried `NoStream` batch whose first event carries a key, and whose
// second carries none, is answered as the stored batch: two events, not
// three.
pub(crate) async fn a_retried_batch_is_answered_whole_and_writes_nothing(place: Place) {
    let store = place.open().await;
    let batch = || {
        vec![
            ev("order", "placed").with_idempotency_key("order-1"),
            ev("order", "noted"),
        ]
    };
    let first = store
        .append_batch_expecting(batch(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    let retry = store
        .append_batch_expecting(batch(), ExpectedVersion::NoStream)
        .await
        .unwrap();
    assert!(retry.iter().all(|a| a.duplicate));
    assert_eq!(
        retry
            .iter()
            .map(|a| (a.id, a.stream_version))
            .collect::<Vec<_>>(),
        first
            .iter()
            .map(|a| (a.id, a.stream_version))
            .collect::<Vec<_>>()
    );
    assert_eq!(kinds(&store).await, ["placed", "noted"]);
    store.stop().await;
}

// A batch that starts with a stored key but is not the same batch is
// checked like any other: its expected version first, then its keys.
pub(crate) async fn another_batch_with_a_stored_key_is_checked_like_any_other(place: Place) {
    let store = place.open().await;
    store
        .append_batch_expecting(
            vec![
                ev("order", "placed").with_idempotency_key("order-1"),
                ev("order", "noted"),
            ],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap();
    // Longer than the stored batch: not a retry, so its version counts.
    let longer = store
        .append_batch_expecting(
            vec![
                ev("order", "placed").with_idempotency_key("order-1"),
                ev("order", "noted"),
                ev("order", "extra"),
            ],
            ExpectedVersion::NoStream,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(longer, EventStoreError::VersionConflict { actual: 2, .. }),
        "{longer:?}"
    );
    // Any version admitted: the stored key is refused, nothing written.
    let taken = store
        .append_batch(vec![
            ev("order", "placed").with_idempotency_key("order-1"),
            ev("order", "shipped"),
        ])
        .await
        .unwrap_err();
    assert_eq!(
        taken,
        EventStoreError::KeyTaken {
            index: 0,
            key: "order-1".into()
        }
    );
    assert_eq!(taken.code(), 3015);
    // A single append reusing the key for another kind is no retry either.
    let reused = store
        .append(ev("order", "cancelled").with_idempotency_key("order-1"))
        .await
        .unwrap_err();
    assert!(matches!(reused, EventStoreError::KeyTaken { .. }));
    assert_eq!(kinds(&store).await, ["placed", "noted"]);
    store.stop().await;
}

// A batch failing after its first insert (its second event's key is
// taken), committed in one group with batches before and after it on the
// same stream: its insert is rolled back (the savepoint) and the stream's
// version it took is given back (the undo), so the batch after it gets the
// next version and nothing of it is stored.
pub(crate) async fn a_batch_failing_after_its_first_insert_is_rolled_back_alone_in_its_group(
    place: Place,
) {
    let store = place.open().await;
    store
        .append(ev("keys", "taken").with_idempotency_key("taken"))
        .await
        .unwrap();
    // The writer groups what is queued while it commits: a large batch
    // keeps it busy while the three are queued. Try until the failing
    // batch shared its group (at most two commits for the four).
    let mut grouped = false;
    for round in 0..50 {
        let stream = format!("s{round}");
        let commits = store.stats().await.unwrap().commits;
        let blocker = store.append_batch(
            (0..2_000)
                .map(|i| Event::new("blocker", "filler", json!(i)))
                .collect(),
        );
        let before = store.append(ev(&stream, "before"));
        let failing = store.append_batch(vec![
            ev(&stream, "failing-1"),
            ev(&stream, "failing-2").with_idempotency_key("taken"),
        ]);
        let after = store.append(ev(&stream, "after"));
        blocker.await.unwrap();
        assert_eq!(before.await.unwrap().stream_version, 1);
        assert!(matches!(
            failing.await,
            Err(EventStoreError::KeyTaken { index: 1, .. })
        ));
        assert_eq!(
            after.await.unwrap().stream_version,
            2,
            "the failed batch's version was not given back"
        );
        let stored = store
            .query(mabeam_supervision_core::EventQuery::new().stream(stream.clone()))
            .await
            .unwrap();
        assert_eq!(
            stored
                .iter()
                .map(|e| (e.event.kind.as_str(), e.stream_version))
                .collect::<Vec<_>>(),
            [("before", 1), ("after", 2)],
            "a part of the failed batch was stored"
        );
        if store.stats().await.unwrap().commits - commits <= 2 {
            grouped = true;
            break;
        }
    }
    assert!(grouped, "the failing batch never shared a group");
    store.stop().await;
}
