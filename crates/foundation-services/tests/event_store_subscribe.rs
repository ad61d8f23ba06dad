//! EventStore subscriptions: stored events then live ones, with no gap and
//! no duplicate across the hand-over; a lagging subscriber is told where
//! to resume; a subscription ends when the store stops.

use mabeam_foundation_services::{EventStore, EventStoreConfig};
use mabeam_supervision_core::{ErrorCode, Event, EventReadError};
use serde_json::json;

/// Awaits `future`, failing the test if it takes more than 10 s (a wait
/// that could last for ever fails instead of hanging the run).
async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), future)
        .await
        .expect("no answer within 10 s")
}

fn ev(i: u64) -> Event {
    Event::new(format!("s{}", i % 4), "n", json!(i))
}

// A subscriber that falls more than its buffer behind is told so, with
// the position to resume from; resuming there loses nothing.
#[tokio::test]
async fn a_lagging_subscriber_is_told_where_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let store = EventStore::open(EventStoreConfig::new(dir.path()).with_subscriber_buffer(4))
        .await
        .unwrap();
    store.append(ev(1)).await.unwrap();
    let mut sub = store.subscribe(1);
    assert_eq!(within(sub.next()).await.unwrap().unwrap().id, 1);
    // Live now; 20 events arrive while it does not read.
    store
        .append_batch((2..=21).map(ev).collect())
        .await
        .unwrap();
    let lagged = within(sub.next()).await.unwrap().unwrap_err();
    assert_eq!(lagged, EventReadError::Lagged { resume_from: 2 });
    assert_eq!(lagged.code(), 1413);
    assert!(
        within(sub.next()).await.is_none(),
        "the subscription ends after the error"
    );

    let mut resumed = store.subscribe(2);
    for expected in 2..=21 {
        assert_eq!(within(resumed.next()).await.unwrap().unwrap().id, expected);
    }
    store.stop().await;
}
