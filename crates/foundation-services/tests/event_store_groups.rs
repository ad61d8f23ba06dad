//! The EventStore's writer, group by group: a group never holds more than
//! `max_group` events; a batch that fails after its first insert is undone
//! alone, in the file and in the versions and keys the group has seen; a
//! failed commit fails its whole group and leaves nothing behind; a
//! retried append is published live once. (Found wanting by `cargo xtask
//! mutants foundation-services --file event_store/writer.rs`.)
//!
//! To make groups deterministic, a test holds SQLite's write lock from a
//! connection of its own and queues a prune first: the writer takes the
//! prune alone and waits on the lock while the test queues the appends
//! behind it, so that they are all queued when it forms the next group.

use std::{future::Future, pin::Pin, task::Poll, time::Duration};

use mabeam_foundation_services::{EventStore, EventStoreConfig, EventStoreError};
use mabeam_supervision_core::Event;
use rusqlite::Connection;
use serde_json::json;

/// Every wait in these tests: far above any commit, even on a loaded
/// machine.
const PATIENCE: Duration = Duration::from_secs(30);

fn ev(stream: &str, n: u64) -> Event {
    Event::new(stream, "n", json!(n))
}

async fn open(dir: &tempfile::TempDir, max_group: usize) -> EventStore {
    let mut config = EventStoreConfig::new(dir.path());
    config.max_group = max_group;
    EventStore::open(config).await.unwrap()
}

/// A connection of the test's own to the store's file, holding the write
/// lock until it is committed (the writer waits on it: its busy timeout
/// is 5 s).
fn hold_write_lock(store: &EventStore) -> Connection {
    let conn = Connection::open(store.config().database_path()).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

/// Queues a prune (of nothing) and returns it unawaited: the writer
/// stops at it while the test holds the write lock.
async fn queue_prune(
    store: &EventStore,
) -> Pin<Box<impl Future<Output = Result<u64, EventStoreError>>>> {
    let mut prune = Box::pin(store.prune_before(0));
    // One poll sends the request.
    std::future::poll_fn(|cx| {
        let _ = prune.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    prune
}

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not complete within {PATIENCE:?}"))
}

// Eight appends (one of them a batch of two) queued behind a prune: they
// are all queued when the writer forms its next group, and it takes 3
// events a group at most: 3, 3, then the batch and the last.
#[tokio::test]
async fn a_group_holds_at_most_max_group_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 3).await;
    let lock = hold_write_lock(&store);
    let prune = queue_prune(&store).await;
    let mut pending = Vec::new();
    for n in 0..6 {
        pending.push(store.append(ev("s", n)));
    }
    let batch = store.append_batch(vec![ev("t", 1), ev("t", 2)]);
    pending.push(store.append(ev("s", 6)));
    lock.execute_batch("COMMIT").unwrap();
    assert_eq!(within("the prune", prune).await.unwrap(), 0);
    for (n, append) in pending.into_iter().enumerate() {
        within("an append", append)
            .await
            .unwrap_or_else(|e| panic!("append {n}: {e}"));
    }
    within("the batch", batch).await.unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!((stats.appended, stats.events), (9, 9), "{stats:?}");
    assert_eq!((stats.largest_group, stats.commits), (3, 3), "{stats:?}");
    store.stop().await;
}

// In one group: two appends to a stream, a batch to it that fails at its
// second insert (a trigger of the test's own refuses the kind `poison`),
// then two more appends, the last with the idempotency key the failed
// batch had used. The batch is undone alone: the appends after it number
// on from the two before, and the key is free again.
#[tokio::test]
async fn a_batch_failing_after_its_first_insert_is_undone_within_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 4096).await;
    let lock = hold_write_lock(&store);
    lock.execute_batch(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON events WHEN NEW.kind = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let prune = queue_prune(&store).await;
    let first = store.append(Event::new("s", "a", json!(1)));
    let second = store.append(Event::new("s", "a", json!(2)));
    let failing = store.append_batch(vec![
        Event::new("s", "b", json!(3)).with_idempotency_key("k"),
        Event::new("s", "poison", json!(4)),
    ]);
    let third = store.append(Event::new("s", "c", json!(5)));
    let keyed = store.append(Event::new("s", "d", json!(6)).with_idempotency_key("k"));
    lock.execute_batch("COMMIT").unwrap();
    within("the prune", prune).await.unwrap();
    let failing = within("the failing batch", failing).await;
    assert!(
        matches!(failing, Err(EventStoreError::Storage(_))),
        "{failing:?}"
    );
    let versions = [
        within("the first", first).await.unwrap(),
        within("the second", second).await.unwrap(),
        within("the third", third).await.unwrap(),
        within("the keyed one", keyed).await.unwrap(),
    ];
    assert_eq!(
        versions.map(|a| (a.stream_version, a.duplicate)),
        [(1, false), (2, false), (3, false), (4, false)]
    );
    let kinds: Vec<String> = store
        .read_from(1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.kind)
        .collect();
    assert_eq!(kinds, ["a", "a", "c", "d"]);
    store.stop().await;
}

// A retried append (same idempotency key) is acknowledged as a duplicate
// and not published again: a live subscriber sees each stored event once.
#[tokio::test]
async fn a_retried_append_is_published_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 4096).await;
    let mut live = store.subscribe(1);
    let first = within(
        "the first append",
        store.append(ev("pay", 1).with_idempotency_key("k")),
    )
    .await
    .unwrap();
    let retry = within(
        "the retry",
        store.append(ev("pay", 1).with_idempotency_key("k")),
    )
    .await
    .unwrap();
    assert!(retry.duplicate);
    let other = within("another append", store.append(ev("pay", 2)))
        .await
        .unwrap();
    let seen_first = within("the first event", live.next())
        .await
        .unwrap()
        .unwrap();
    let seen_next = within("the next event", live.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (seen_first.id, seen_next.id),
        (first.id, other.id),
        "the retry was published again"
    );
    store.stop().await;
}

// A commit that fails (a trigger of the test's own refuses the new
// stream's row at commit time) fails every append of its group, and
// the store goes on: versions come from what is stored, not from the
// failed group.
#[tokio::test]
async fn a_failed_commit_fails_its_group_and_nothing_of_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, 4096).await;
    within("the first append", store.append(ev("a", 1)))
        .await
        .unwrap();
    let lock = hold_write_lock(&store);
    lock.execute_batch(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON streams WHEN NEW.stream = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .unwrap();
    let on_a = store.append(ev("a", 2));
    let poisoned = store.append(ev("poison", 1));
    lock.execute_batch("COMMIT").unwrap();
    // The two may or may not share a group; the poisoned one fails either
    // way, and whatever failed left nothing behind.
    let poisoned = within("the poisoned append", poisoned).await;
    assert!(
        matches!(poisoned, Err(EventStoreError::Storage(_))),
        "{poisoned:?}"
    );
    let on_a = within("the append beside it", on_a).await;
    lock.execute_batch("DROP TRIGGER refuse_poison").unwrap();
    let stored_a = store
        .read_from(1, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.stream == "a")
        .count() as u64;
    assert_eq!(stored_a, 1 + u64::from(on_a.is_ok()));
    // The next appends number on from what is stored.
    let next_a = within("the next append on a", store.append(ev("a", 3)))
        .await
        .unwrap();
    assert_eq!(next_a.stream_version, stored_a + 1);
    let next_poison = within("the retried stream", store.append(ev("poison", 2)))
        .await
        .unwrap();
    assert_eq!(next_poison.stream_version, 1);
    store.stop().await;
}
