//! Barriers and lease locks: a death breaks a barrier and frees a lock.
//! Every wait is bounded: a broken feature fails with a message, and the
//! tests that could spin run under a real-time watchdog.

mod common;

use std::{sync::Arc, time::Duration};

use common::{bounded, paused_within};
use mabeam_coordination::{Barrier, Coordinator, LeaseLock};
use mabeam_supervision_core::{
    AgentId, Clock, ErrorCode, ExitReason,
    testkit::{Answer, ScriptedDirectory},
};

const LIMIT: Duration = Duration::from_secs(600);
const ARRIVE: Duration = Duration::from_secs(300);

fn setup(ids: &[&str]) -> (ScriptedDirectory, Coordinator) {
    let agents = ScriptedDirectory::new();
    for id in ids {
        agents.add(*id, "worker", |_| Answer::Silent);
    }
    let coordinator = Coordinator::new(Arc::new(agents.clone()), Clock::tokio());
    (agents, coordinator)
}

#[test]
fn barrier_releases_everyone_together() {
    paused_within(30, "barrier_releases_everyone_together", || async {
        let (_agents, coordinator) = setup(&["a", "b", "c"]);
        let ids: Vec<AgentId> = ["a", "b", "c"].map(AgentId::from).to_vec();
        let barrier = Barrier::new(&coordinator, ids.clone());
        let mut waiting = Vec::new();
        for id in &ids[..2] {
            let (barrier, id) = (barrier.clone(), id.clone());
            waiting.push(tokio::spawn(
                async move { barrier.arrive(&id, ARRIVE).await },
            ));
        }
        tokio::task::yield_now().await;
        assert!(waiting.iter().all(|w| !w.is_finished()));
        assert_eq!(barrier.arrived(), 2);
        bounded("the last arrival", LIMIT, barrier.arrive(&ids[2], ARRIVE))
            .await
            .unwrap();
        for w in waiting {
            bounded("a release", LIMIT, w).await.unwrap().unwrap();
        }
        assert_eq!(
            barrier
                .arrive(&"stranger".into(), ARRIVE)
                .await
                .unwrap_err()
                .code(),
            6012
        );
    });
}

#[test]
fn a_dead_participant_breaks_the_barrier() {
    paused_within(30, "a_dead_participant_breaks_the_barrier", || async {
        let (agents, coordinator) = setup(&["a", "b", "c"]);
        let barrier = Barrier::new(&coordinator, ["a", "b", "c"].map(AgentId::from).to_vec());
        let a = tokio::spawn({
            let barrier = barrier.clone();
            // No timeout of its own: the death alone must end the wait.
            async move {
                barrier
                    .arrive(&"a".into(), Duration::from_secs(365 * 86_400))
                    .await
            }
        });
        agents.crash(&"c".into(), ExitReason::error("lost"));
        let err = bounded("the broken barrier's answer to a", LIMIT, a)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code(), 6011);
        assert!(err.to_string().contains('c'));
        // Later arrivals see it broken too, at once.
        let b = bounded("b's arrival", LIMIT, barrier.arrive(&"b".into(), ARRIVE)).await;
        assert_eq!(b.unwrap_err().code(), 6011);
        // A barrier over a participant already dead is broken from the start.
        let broken = Barrier::new(&coordinator, ["a", "c"].map(AgentId::from).to_vec());
        let a = bounded("a's arrival", LIMIT, broken.arrive(&"a".into(), ARRIVE)).await;
        assert_eq!(a.unwrap_err().code(), 6011);
    });
}

#[test]
fn lock_lease_expiry_release_and_death() {
    paused_within(30, "lock_lease_expiry_release_and_death", || async {
        let (agents, coordinator) = setup(&["a", "b", "c"]);
        let clock = Clock::tokio();
        let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
        let a = lock.acquire(&"a".into(), Duration::ZERO).await.unwrap();
        let held = bounded(
            "a refused acquire",
            LIMIT,
            lock.acquire(&"b".into(), Duration::from_secs(1)),
        )
        .await;
        assert_eq!(held.unwrap_err().code(), 6013);

        // b waits; a releases; b gets it with a higher token.
        let waiter = tokio::spawn({
            let lock = lock.clone();
            async move { lock.acquire(&"b".into(), Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(lock.release(&"b".into(), a.token).unwrap_err().code(), 6014);
        lock.release(&"a".into(), a.token).unwrap();
        let b = bounded("b's grant", LIMIT, waiter).await.unwrap().unwrap();
        assert!(b.token > a.token);

        // b's lease runs out without renewal: c gets it after the lease.
        let start = clock.now();
        let c = bounded(
            "c's grant after b's lease",
            LIMIT,
            lock.acquire(&"c".into(), Duration::from_secs(60)),
        )
        .await
        .unwrap();
        assert!(clock.now() - start >= Duration::from_secs(8));
        assert_eq!(lock.renew(&"b".into(), b.token).unwrap_err().code(), 6014);
        tokio::time::advance(Duration::from_secs(1)).await;
        let renewed = lock.renew(&"c".into(), c.token).unwrap();
        assert!(renewed.until > c.until);

        // c dies: the lock is free at once.
        let start = clock.now();
        let waiter = tokio::spawn({
            let lock = lock.clone();
            async move { lock.acquire(&"a".into(), Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        agents.crash(&"c".into(), ExitReason::Killed);
        let a2 = bounded("a's grant after c's death", LIMIT, waiter)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(clock.now(), start, "no wait for the lease");
        assert!(a2.token > c.token);
    });
}
