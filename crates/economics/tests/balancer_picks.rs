//! The LoadBalancer's picks under contention and its weighted spacing:
//! capacity is never over-admitted by concurrent picks (the check and the
//! count in flight are one atomic step), and weighted picks are spaced as
//! nginx's smooth weighted round-robin spaces them.

use std::{
    sync::{
        Arc, Barrier,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
};

use futures::future::BoxFuture;
use mabeam_economics::{BalanceStrategy, LoadBalancer, MemberSpec};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatus, AgentStatusChanges, DirectoryError, Envelope,
    ProcessHandle,
    testkit::{Answer, ScriptedDirectory},
};
use serde_json::{Value, json};

/// A directory whose status reads take a while (the thread yields a few
/// times first), as a real directory's may under load: it widens the
/// window between a pick's reading of a member and its taking the place,
/// so that racing picks meet in it.
struct SlowStatus(ScriptedDirectory);

impl AgentDirectory for SlowStatus {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.0.agent(id)
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.0.info(id)
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.0.agents()
    }

    fn status(&self, id: &AgentId) -> Option<AgentStatus> {
        for _ in 0..20 {
            thread::yield_now();
        }
        self.0.status(id)
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Value, DirectoryError>> {
        self.0.ask(id, envelope)
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        self.0.cast(id, envelope)
    }

    fn subscribe(&self) -> AgentStatusChanges {
        self.0.subscribe()
    }
}

fn balancer(strategy: BalanceStrategy, members: &[MemberSpec]) -> LoadBalancer {
    let agents = ScriptedDirectory::new();
    for member in members {
        agents.add(member.id.clone(), "worker", |_| {
            Answer::Reply(json!("done"))
        });
    }
    let lb = LoadBalancer::new(Arc::new(SlowStatus(agents)), strategy);
    for member in members {
        lb.add(member.clone()).unwrap();
    }
    lb
}

const STRATEGIES: [BalanceStrategy; 5] = [
    BalanceStrategy::RoundRobin,
    BalanceStrategy::Weighted,
    BalanceStrategy::LeastLoaded,
    BalanceStrategy::CapabilityAware,
    BalanceStrategy::PerformanceWeighted,
];

/// Many threads pick at once, round after round, against members of
/// capacity 1 and 2, holding their leases until all have picked: the
/// leases granted never exceed the capacity. (The scripted directory
/// needs a runtime to be built; the picks themselves are synchronous, on
/// plain threads.) Before, each pick read the
/// count, then added to it, so two picks could both take the last place.
#[tokio::test]
async fn concurrent_picks_never_exceed_capacity() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 150;
    for strategy in STRATEGIES {
        let lb = balancer(
            strategy,
            &[
                MemberSpec::new("a").capacity(1),
                MemberSpec::new("b").capacity(2),
            ],
        );
        let granted = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS);
        thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for _ in 0..ROUNDS {
                        barrier.wait();
                        let lease = lb.pick(&[]).ok();
                        if lease.is_some() {
                            granted.fetch_add(1, Ordering::SeqCst);
                        }
                        // Everyone has picked: count, then let go.
                        barrier.wait();
                        most.fetch_max(granted.load(Ordering::SeqCst), Ordering::SeqCst);
                        let in_flight = lb.in_flight(&"a".into()).unwrap();
                        assert!(in_flight <= 1, "{strategy:?}: a has {in_flight} in flight");
                        let in_flight = lb.in_flight(&"b".into()).unwrap();
                        assert!(in_flight <= 2, "{strategy:?}: b has {in_flight} in flight");
                        barrier.wait();
                        drop(lease);
                        granted.store(0, Ordering::SeqCst);
                        barrier.wait();
                    }
                });
            }
        });
        let most = most.load(Ordering::SeqCst);
        assert!(
            most <= 3,
            "{strategy:?}: {most} leases granted at once, capacity 3"
        );
        assert_eq!(lb.in_flight(&"a".into()), Some(0));
        assert_eq!(lb.in_flight(&"b".into()), Some(0));
    }
}

fn picks(lb: &LoadBalancer, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| lb.pick(&[]).unwrap().agent().to_string())
        .collect()
}

/// nginx's example: weights 5, 1, 1 give `a a b a c a a`, cycle after
/// cycle. Before: `a a a b c a a`.
#[tokio::test]
async fn weighted_picks_are_spaced_as_nginx_spaces_them() {
    let lb = balancer(
        BalanceStrategy::Weighted,
        &[
            MemberSpec::new("a").weight(5),
            MemberSpec::new("b").weight(1),
            MemberSpec::new("c").weight(1),
        ],
    );
    let cycle = ["a", "a", "b", "a", "c", "a", "a"];
    assert_eq!(picks(&lb, 14), [cycle, cycle].concat());
}

/// The same rule against a plain simulation of nginx's algorithm, for
/// several weight sets (equal weights among others included).
#[tokio::test]
async fn weighted_picks_follow_nginx_for_mixed_weights() {
    for weights in [
        vec![4u32, 2, 1],
        vec![3, 3, 1],
        vec![1, 1, 1, 1],
        vec![2, 5, 2, 7],
        vec![10, 1],
    ] {
        let members: Vec<MemberSpec> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| MemberSpec::new(format!("m{i}")).weight(w))
            .collect();
        let lb = balancer(BalanceStrategy::Weighted, &members);
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut current = vec![0i64; weights.len()];
        let expected: Vec<String> = (0..2 * total)
            .map(|_| {
                let mut best = 0;
                for (i, &w) in weights.iter().enumerate() {
                    current[i] += i64::from(w);
                    if current[i] > current[best] {
                        best = i;
                    }
                }
                current[best] -= total;
                format!("m{best}")
            })
            .collect();
        assert_eq!(picks(&lb, expected.len()), expected, "weights {weights:?}");
    }
}
