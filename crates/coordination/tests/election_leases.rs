//! Leader election: Raft's rules, leases, fencing tokens, re-election
//! after a death, and never two valid leases at once.

use std::{sync::Arc, time::Duration};

use coordination::{Coordinator, Election, ElectionConfig, RaftVoter};
use proptest::prelude::*;
use supervision_core::{
    AgentId, Clock, ErrorCode, ExitReason,
    testkit::{Answer, ScriptedDirectory},
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An agent that votes by Raft's rules, answering after `delay`.
fn voter(agents: &ScriptedDirectory, id: &str, delay: Duration) {
    let mut voter = RaftVoter::default();
    agents.add(id, "node", move |env| match voter.answer(env) {
        Some(answer) if delay.is_zero() => Answer::Reply(answer),
        Some(answer) => Answer::late(delay, answer),
        None => Answer::Unsupported,
    });
}

fn config(ids: &[&str], seed: u64) -> ElectionConfig {
    ElectionConfig {
        participants: ids.iter().map(|id| AgentId::from(*id)).collect(),
        lease: ms(1_000),
        election_timeout: (ms(150), ms(300)),
        rpc_timeout: ms(50),
        seed,
    }
}

#[tokio::test(start_paused = true)]
async fn elects_renews_and_reelects_after_a_death() {
    let ids = ["a", "b", "c", "d", "e"];
    let agents = ScriptedDirectory::new();
    for id in ids {
        voter(&agents, id, Duration::ZERO);
    }
    let clock = Clock::tokio();
    let coordinator = Arc::new(Coordinator::new(Arc::new(agents.clone()), clock.clone()));
    let election = Election::start(coordinator, config(&ids, 7)).unwrap();
    let first = election.wait_for_leader().await;
    assert_eq!(first.token, first.term);

    // The lease is renewed by heartbeats: still the same leader much later.
    let mut changes = election.watch();
    for _ in 0..5 {
        changes.changed().await.unwrap();
    }
    assert_eq!(election.leader().unwrap().leader, first.leader);

    // The leader dies: a new one within one lease, with a higher token.
    let died = clock.now();
    agents.crash(&first.leader, ExitReason::Killed);
    let second = loop {
        changes.changed().await.unwrap();
        if let Some(l) = changes.borrow().clone()
            && l.leader != first.leader
        {
            break l;
        }
    };
    assert!(
        clock.now() - died <= ms(1_000),
        "re-elected within one lease"
    );
    assert!(second.token > first.token);
    let history = election.history();
    assert_eq!(
        history[0].until, died,
        "the dead leader's tenure ends at its death"
    );
    assert!(history[1].from >= died);

    // Fencing: the deposed leader's token is refused once a newer one is used.
    assert!(election.admit(second.token));
    assert!(!election.admit(first.token));
}

#[tokio::test(start_paused = true)]
async fn no_leader_without_a_majority() {
    let ids = ["a", "b", "c"];
    let agents = ScriptedDirectory::new();
    for id in ids {
        voter(&agents, id, Duration::ZERO);
    }
    agents.crash(&"b".into(), ExitReason::Killed);
    agents.crash(&"c".into(), ExitReason::Killed);
    let coordinator = Arc::new(Coordinator::new(Arc::new(agents.clone()), Clock::tokio()));
    let election = Election::start(coordinator, config(&ids, 1)).unwrap();
    tokio::time::sleep(ms(5_000)).await; // time passes on the paused clock
    assert_eq!(election.leader(), None);
    voter(&agents, "b", Duration::ZERO); // a majority again
    let leader = election.wait_for_leader().await;
    assert!(["a", "b"].contains(&leader.leader.as_str()));
}

#[tokio::test]
async fn config_is_validated() {
    let agents = ScriptedDirectory::new();
    let coordinator = Arc::new(Coordinator::new(Arc::new(agents), Clock::tokio()));
    let mut bad = config(&["a"], 1);
    bad.election_timeout = (ms(400), ms(600)); // does not fit half the lease
    assert_eq!(
        Election::start(coordinator.clone(), bad)
            .unwrap_err()
            .code(),
        6006
    );
    assert_eq!(
        Election::start(coordinator, config(&[], 1))
            .unwrap_err()
            .code(),
        6006
    );
}

/// A scripted disturbance: at `at_ms`, crash or revive agent `who`.
#[derive(Debug, Clone)]
struct Step {
    at_ms: u64,
    who: usize,
    revive: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (0u64..8_000, 0usize..5, any::<bool>()).prop_map(|(at_ms, who, revive)| Step {
            at_ms,
            who,
            revive,
        }),
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    // Over random crashes, revivals and vote delays, tenures never
    // overlap and terms (tokens) only increase.
    #[test]
    fn never_two_valid_leases(seed in any::<u64>(), delays in proptest::collection::vec(0u64..80, 5), mut plan in steps()) {
        plan.sort_by_key(|s| s.at_ms);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let history = rt.block_on(async {
            let ids = ["a", "b", "c", "d", "e"];
            let agents = ScriptedDirectory::new();
            for (id, delay) in ids.iter().zip(&delays) {
                voter(&agents, id, ms(*delay));
            }
            let clock = Clock::tokio();
            let coordinator = Arc::new(Coordinator::new(Arc::new(agents.clone()), clock.clone()));
            let election = Election::start(coordinator, config(&ids, seed)).unwrap();
            let start = clock.now();
            for step in plan {
                clock.sleep_until(start + ms(step.at_ms)).await;
                let id = ids[step.who];
                if step.revive {
                    voter(&agents, id, ms(delays[step.who]));
                } else {
                    agents.crash(&id.into(), ExitReason::Killed);
                }
            }
            clock.sleep_until(start + ms(10_000)).await;
            election.history()
        });
        for pair in history.windows(2) {
            prop_assert!(pair[0].until <= pair[1].from, "overlap: {:?}", pair);
            prop_assert!(pair[0].term < pair[1].term);
        }
        for tenure in &history {
            prop_assert!(tenure.from <= tenure.until);
        }
    }
}
