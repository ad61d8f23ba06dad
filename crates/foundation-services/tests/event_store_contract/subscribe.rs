//! EventStore subscriptions: stored events then live ones, with no gap and
//! no duplicate across the hand-over; a lagging subscriber is told where
//! to resume; a subscription ends when the store stops.

use crate::support::Place;
use mabeam_foundation_services::EventStore;
use mabeam_supervision_core::{Event, EventReadError};
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

// Subscribing from a position: the stored events from it, then live ones.
pub(crate) async fn a_subscriber_gets_stored_events_then_live_ones(place: Place) {
    let store = EventStore::open(place.config()).await.unwrap();
    for i in 1..=5 {
        store.append(ev(i)).await.unwrap();
    }
    let mut sub = store.subscribe(3);
    for expected in 3..=5 {
        assert_eq!(within(sub.next()).await.unwrap().unwrap().id, expected);
    }
    store.append(ev(6)).await.unwrap();
    let live = within(sub.next()).await.unwrap().unwrap();
    assert_eq!((live.id, live.event.data.clone()), (6, json!(6)));
    assert_eq!(live.event.node.as_deref(), Some("local"));
    store.stop().await;
}

// Appends run while the subscriber catches up over several pages and
// hands over to the live feed: it sees every id exactly once, in order.
pub(crate) async fn no_gap_and_no_duplicate_across_the_hand_over(place: Place) {
    const STORED: u64 = 1_500;
    const LIVE: u64 = 3_000;
    let store = EventStore::open(place.config().with_subscriber_buffer(100_000))
        .await
        .unwrap();
    store
        .append_batch((1..=STORED).map(ev).collect())
        .await
        .unwrap();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for chunk in (STORED + 1..=STORED + LIVE).collect::<Vec<_>>().chunks(7) {
                let pending: Vec<_> = chunk.iter().map(|i| store.append(ev(*i))).collect();
                for p in pending {
                    p.await.unwrap();
                }
            }
        })
    };
    let mut sub = store.subscribe(1);
    let mut seen = Vec::new();
    while (seen.len() as u64) < STORED + LIVE {
        let event = within(sub.next()).await.unwrap().unwrap();
        assert_eq!(event.event.data, json!(event.id));
        seen.push(event.id);
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=STORED + LIVE).collect::<Vec<_>>());
    store.stop().await;
}

pub(crate) async fn a_subscription_ends_when_the_store_stops(place: Place) {
    let store = EventStore::open(place.config()).await.unwrap();
    store.append(ev(1)).await.unwrap();
    let mut sub = store.subscribe(1);
    assert_eq!(within(sub.next()).await.unwrap().unwrap().id, 1);
    let waiting = tokio::spawn(async move { within(sub.next()).await });
    store.stop().await;
    let ended = waiting.await.unwrap().unwrap().unwrap_err();
    assert!(matches!(ended, EventReadError::Unavailable(_)), "{ended:?}");
    assert!(matches!(
        within(store.subscribe(1).next()).await,
        Some(Err(EventReadError::Unavailable(_)))
    ));
}
