//! Barriers and locks across a restart of the agent layer (their status
//! feed closes and a new one starts), a lagged feed, timeouts, re-entrant
//! locks and waiters that die while they wait.

mod common;

use std::{sync::Arc, time::Duration};

use common::{FlakyFeed, bounded};
use mabeam_coordination::{Barrier, Coordinator, LeaseLock};
use mabeam_supervision_core::{AgentId, Clock, ErrorCode, ExitReason, testkit::Answer};

const LIMIT: Duration = Duration::from_secs(600);
const LEASE: Duration = Duration::from_secs(10);

fn setup(capacity: usize, ids: &[&str]) -> (FlakyFeed, Coordinator) {
    let feed = FlakyFeed::new(capacity);
    for id in ids {
        feed.agents.add(*id, "worker", |_| Answer::Silent);
    }
    let coordinator = Coordinator::new(Arc::new(feed.clone()), Clock::tokio());
    (feed, coordinator)
}

fn ids(ids: &[&str]) -> Vec<AgentId> {
    ids.iter().map(|id| AgentId::from(*id)).collect()
}

// The agent layer restarts while c dies: the change is lost with the old
// feed, but the barrier subscribes to the new one and re-reads c.
#[tokio::test(start_paused = true)]
async fn a_barrier_survives_a_restart_of_the_agent_layer() {
    let (feed, coordinator) = setup(64, &["a", "b", "c"]);
    let barrier = Barrier::new(&coordinator, ids(&["a", "b", "c"]));
    let a = tokio::spawn({
        let barrier = barrier.clone();
        async move {
            barrier
                .arrive(&"a".into(), Duration::from_secs(3_600))
                .await
        }
    });
    tokio::task::yield_now().await;
    feed.go_down();
    feed.agents.crash(&"c".into(), ExitReason::Killed);
    feed.come_back();
    let err = bounded("the barrier to break after the restart", LIMIT, a)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), 6011, "{err}");
    assert!(
        Clock::tokio().now().elapsed() < Duration::from_secs(3_600),
        "broken, not timed out"
    );
}

// A lock's holder dies while the agent layer is down: the lock is free
// once the new feed is read, not at the end of the lease; and a death
// after the restart is seen on the new feed.
#[tokio::test(start_paused = true)]
async fn a_lock_survives_a_restart_of_the_agent_layer() {
    let (feed, coordinator) = setup(64, &["a", "b", "c"]);
    let clock = Clock::tokio();
    let lock = LeaseLock::new(&coordinator, LEASE);
    let c = lock.acquire(&"c".into(), Duration::ZERO).await.unwrap();
    let start = clock.now();
    // a waits first: only the watcher's word (or the lease's end) wakes it.
    let waiter = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire(&"a".into(), Duration::from_secs(60)).await }
    });
    tokio::task::yield_now().await;
    feed.go_down();
    feed.agents.crash(&"c".into(), ExitReason::Killed);
    feed.come_back();
    let a = bounded("a's grant after c died in the restart", LIMIT, waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(clock.now() - start < LEASE / 2, "freed by the re-read");
    assert!(a.token > c.token);

    let start = clock.now();
    let waiter = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire(&"b".into(), Duration::from_secs(60)).await }
    });
    tokio::task::yield_now().await;
    feed.agents.crash(&"a".into(), ExitReason::Killed);
    let b = bounded("b's grant after a died", LIMIT, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(clock.now(), start, "seen on the new feed at once");
    assert!(b.token > a.token);
}

// The barrier's feed lags (a buffer of one, two changes at once): the
// lost change was c's death; the barrier re-reads every participant.
#[tokio::test(start_paused = true)]
async fn a_lagged_barrier_rereads_every_status() {
    let (feed, coordinator) = setup(1, &["a", "b", "c"]);
    let barrier = Barrier::new(&coordinator, ids(&["a", "b", "c"]));
    let a = tokio::spawn({
        let barrier = barrier.clone();
        async move {
            barrier
                .arrive(&"a".into(), Duration::from_secs(3_600))
                .await
        }
    });
    tokio::task::yield_now().await;
    feed.agents.crash(&"c".into(), ExitReason::Killed);
    feed.agents.add("x", "other", |_| Answer::Silent);
    let err = bounded("the lagged barrier to break", LIMIT, a)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), 6011, "{err}");
}

// An arrival waits at most its timeout, then is withdrawn.
#[tokio::test(start_paused = true)]
async fn an_arrival_times_out_and_is_withdrawn() {
    let (_feed, coordinator) = setup(64, &["a", "b"]);
    let clock = Clock::tokio();
    let barrier = Barrier::new(&coordinator, ids(&["a", "b"]));
    let start = clock.now();
    let err = bounded(
        "a's arrival to time out",
        LIMIT,
        barrier.arrive(&"a".into(), Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), 6016, "{err}");
    assert_eq!(clock.now() - start, Duration::from_secs(5));
    assert_eq!(barrier.arrived(), 0, "withdrawn");
}

// The holder acquiring again gets its grant back at once (etcd's
// re-entrant session), not after its own lease.
#[tokio::test(start_paused = true)]
async fn the_holder_acquiring_again_gets_its_grant_at_once() {
    let (_feed, coordinator) = setup(64, &["a"]);
    let clock = Clock::tokio();
    let lock = LeaseLock::new(&coordinator, LEASE);
    let first = lock.acquire(&"a".into(), Duration::ZERO).await.unwrap();
    let start = clock.now();
    let again = bounded(
        "a's second acquire",
        LIMIT,
        lock.acquire(&"a".into(), Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(clock.now(), start, "no wait");
    assert_eq!(again, first, "the held grant");
}

// b waits for the lock and dies while it waits: it is dropped, never
// granted; the next live waiter gets the lock.
#[tokio::test(start_paused = true)]
async fn a_waiter_that_dies_is_never_granted() {
    let (feed, coordinator) = setup(64, &["a", "b", "c"]);
    let lock = LeaseLock::new(&coordinator, LEASE);
    let a = lock.acquire(&"a".into(), Duration::ZERO).await.unwrap();
    let b = tokio::spawn({
        let lock = lock.clone();
        async move { lock.acquire(&"b".into(), Duration::from_secs(60)).await }
    });
    tokio::task::yield_now().await;
    feed.agents.crash(&"b".into(), ExitReason::Killed);
    let b = bounded("b's acquire to end", LIMIT, b).await.unwrap();
    assert_eq!(b.unwrap_err().code(), 6017);
    lock.release(&"a".into(), a.token).unwrap();
    assert_eq!(lock.holder(), None, "not granted to the dead waiter");
    let c = lock.acquire(&"c".into(), Duration::ZERO).await.unwrap();
    assert!(c.token > a.token);
    // A stopped agent cannot acquire at all.
    let b = lock.acquire(&"b".into(), Duration::ZERO).await;
    assert_eq!(b.unwrap_err().code(), 6017);
}
