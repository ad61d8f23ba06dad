//! Leader election among scripted agents that each embed an
//! `ElectionMember`: Raft's rules, leases, fencing tokens, re-election
//! after a death, and never two valid leases at once.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::bounded;
use mabeam_coordination::{
    Coordinator, Election, ElectionConfig, ElectionMember, MemberMemory, MemberOptions, Persist,
};
use mabeam_supervision_core::{
    AgentId, Clock, ErrorCode, ExitReason,
    testkit::{Answer, ScriptedDirectory},
};
use parking_lot::Mutex;
use proptest::prelude::*;

const LIMIT: Duration = Duration::from_secs(600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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

/// Scripted agents, each embedding a member whose memory survives its
/// restarts (a store, as an agent's checkpoint), and the observer.
struct Cluster {
    agents: ScriptedDirectory,
    election: Election,
    config: ElectionConfig,
    store: Arc<Mutex<HashMap<String, MemberMemory>>>,
}

impl Cluster {
    fn new(ids: &[&str], seed: u64) -> Self {
        let agents = ScriptedDirectory::new();
        let coordinator = Arc::new(Coordinator::new(Arc::new(agents.clone()), Clock::tokio()));
        let config = config(ids, seed);
        let election = Election::observe(coordinator, config.clone()).unwrap();
        Cluster {
            agents,
            election,
            config,
            store: Arc::default(),
        }
    }

    /// Starts (or restarts) agent `id`, answering after `delay`.
    fn start(&self, id: &str, delay: Duration) {
        let store = self.store.clone();
        let key = id.to_owned();
        let persist: Persist = Arc::new(move |memory: &MemberMemory| {
            store.lock().insert(key.clone(), memory.clone());
        });
        let member = ElectionMember::start(
            id.into(),
            self.config.clone(),
            Arc::new(self.agents.clone()),
            Clock::tokio(),
            MemberOptions {
                reporter: Some(self.election.reporter()),
                memory: self.store.lock().get(id).cloned(),
                persist: Some(persist),
                ..MemberOptions::default()
            },
        )
        .unwrap();
        self.agents
            .add(id, "node", move |env| match member.answer(env) {
                Some(answer) if delay.is_zero() => Answer::Reply(answer),
                Some(answer) => Answer::late(delay, answer),
                None => Answer::Unsupported,
            });
    }
}

#[tokio::test(start_paused = true)]
async fn elects_renews_and_reelects_after_a_death() {
    let ids = ["a", "b", "c", "d", "e"];
    let cluster = Cluster::new(&ids, 7);
    for id in ids {
        cluster.start(id, Duration::ZERO);
    }
    let clock = Clock::tokio();
    let election = &cluster.election;
    let first = bounded("a first leader", LIMIT, election.wait_for_leader()).await;
    assert_eq!(first.token, first.term);

    // The lease is renewed by heartbeats: still the same leader much later.
    let mut changes = election.watch();
    for _ in 0..5 {
        bounded("a renewal", LIMIT, changes.changed())
            .await
            .unwrap();
    }
    assert_eq!(election.leader().unwrap().leader, first.leader);

    // The leader dies: a new one within its lease plus one timeout.
    let died = clock.now();
    cluster.agents.crash(&first.leader, ExitReason::Killed);
    let second = bounded("a second leader", LIMIT, async {
        loop {
            changes.changed().await.unwrap();
            if let Some(l) = changes.borrow().clone()
                && l.leader != first.leader
            {
                break l;
            }
        }
    })
    .await;
    let config = &cluster.config;
    let bound = config.lease + config.election_timeout.1 + 2 * config.rpc_timeout;
    assert!(
        clock.now() - died <= bound,
        "re-elected in {:?}, over {bound:?}",
        clock.now() - died
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
    let cluster = Cluster::new(&ids, 1);
    cluster.start("a", Duration::ZERO);
    // b and c are not running: a alone campaigns, term after term.
    tokio::time::sleep(ms(5_000)).await; // time passes on the paused clock
    assert_eq!(cluster.election.leader(), None);
    assert!(cluster.election.history().is_empty());
    cluster.start("b", Duration::ZERO); // a majority again
    let leader = bounded("a leader", LIMIT, cluster.election.wait_for_leader()).await;
    assert!(["a", "b"].contains(&leader.leader.as_str()));
}

#[tokio::test]
async fn config_is_validated() {
    let agents = ScriptedDirectory::new();
    let coordinator = Arc::new(Coordinator::new(Arc::new(agents), Clock::tokio()));
    let mut bad = config(&["a"], 1);
    bad.rpc_timeout = ms(400); // over a quarter of the lease
    assert_eq!(
        Election::observe(coordinator.clone(), bad)
            .unwrap_err()
            .code(),
        6006
    );
    assert_eq!(
        Election::observe(coordinator, config(&[], 1))
            .unwrap_err()
            .code(),
        6006
    );
}

/// A scripted disturbance: at `at_ms`, crash or restart agent `who`.
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

    // Over random crashes, restarts and answer delays, tenures never
    // overlap and terms (tokens) only increase.
    #[test]
    fn never_two_valid_leases(seed in any::<u64>(), delays in proptest::collection::vec(0u64..80, 5), mut plan in steps()) {
        plan.sort_by_key(|s| s.at_ms);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let history = rt.block_on(async {
            let ids = ["a", "b", "c", "d", "e"];
            let cluster = Cluster::new(&ids, seed);
            for (id, delay) in ids.iter().zip(&delays) {
                cluster.start(id, ms(*delay));
            }
            let clock = Clock::tokio();
            let start = clock.now();
            for step in plan {
                clock.sleep_until(start + ms(step.at_ms)).await;
                let id = ids[step.who];
                if step.revive {
                    cluster.start(id, ms(delays[step.who]));
                } else {
                    cluster.agents.crash(&id.into(), ExitReason::Killed);
                }
            }
            clock.sleep_until(start + ms(10_000)).await;
            cluster.election.history()
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
