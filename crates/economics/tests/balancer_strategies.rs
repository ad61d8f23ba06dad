//! The LoadBalancer's strategies, and that it never picks a dead agent.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::{Loads, balancer, counts, workers as agents};
use mabeam_economics::{BalanceStrategy, LoadBalancer, MemberSpec};
use mabeam_supervision_core::{AgentStatus, Envelope, ErrorCode, testkit::ScriptedDirectory};
use proptest::prelude::*;
use serde_json::json;

#[tokio::test]
async fn round_robin_skips_unavailable_members_at_once() {
    let agents = agents(&["a", "b", "c"]);
    let lb = balancer(
        &agents,
        BalanceStrategy::RoundRobin,
        &["a", "b", "c"].map(MemberSpec::new),
    );
    assert_eq!(
        counts(&lb, 300, &[]),
        HashMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 100)])
    );
    agents.set_status(&"b".into(), AgentStatus::Restarting);
    assert_eq!(counts(&lb, 300, &[]).get("b"), None);
    agents.set_status(&"b".into(), AgentStatus::Running);
    assert_eq!(counts(&lb, 300, &[]).get("b"), Some(&100));
    for id in ["a", "b", "c"] {
        agents.set_status(&id.into(), AgentStatus::Failed);
    }
    assert_eq!(lb.pick(&[]).unwrap_err().code(), 7301);
}

#[tokio::test]
async fn weighted_picks_in_proportion() {
    let agents = agents(&["a", "b", "c"]);
    let members = [
        MemberSpec::new("a").weight(1),
        MemberSpec::new("b").weight(2),
        MemberSpec::new("c").weight(3),
    ];
    let lb = balancer(&agents, BalanceStrategy::Weighted, &members);
    assert_eq!(
        counts(&lb, 600, &[]),
        HashMap::from([("a".into(), 100), ("b".into(), 200), ("c".into(), 300)])
    );
    // Spread, not in bursts: c never takes more than 2 picks in a row.
    let picks: Vec<String> = (0..60)
        .map(|_| lb.pick(&[]).unwrap().agent().to_string())
        .collect();
    assert!(
        picks
            .windows(3)
            .all(|w| !(w[0] == "c" && w[1] == "c" && w[2] == "c")),
        "{picks:?}"
    );
    assert_eq!(
        lb.add(MemberSpec::new("z").weight(0)).unwrap_err().code(),
        7303
    );
}

#[tokio::test]
async fn least_loaded_prefers_the_idle_and_respects_capacity() {
    let agents = agents(&["a", "b"]);
    let lb = balancer(
        &agents,
        BalanceStrategy::LeastLoaded,
        &[
            MemberSpec::new("a").capacity(3),
            MemberSpec::new("b").capacity(3),
        ],
    );
    let mut held = Vec::new();
    for _ in 0..6 {
        held.push(lb.pick(&[]).unwrap());
        // With two members, each pick goes to the less busy one.
        let (a, b) = (
            lb.in_flight(&"a".into()).unwrap(),
            lb.in_flight(&"b".into()).unwrap(),
        );
        assert!(a.abs_diff(b) <= 1, "a {a} b {b}");
    }
    // Both at capacity: nobody is available until a lease ends.
    assert_eq!(lb.pick(&[]).unwrap_err().code(), 7301);
    let released = held.pop().unwrap().agent().clone();
    assert_eq!(lb.pick(&[]).unwrap().agent(), &released);
}

#[tokio::test]
async fn capability_aware_picks_only_capable_members() {
    let agents = agents(&["gpu1", "gpu2", "cpu", "both"]);
    let members = [
        MemberSpec::new("gpu1").capabilities(&["gpu"]),
        MemberSpec::new("gpu2").capabilities(&["gpu"]),
        MemberSpec::new("cpu").capabilities(&["cpu"]),
        MemberSpec::new("both").capabilities(&["cpu", "gpu"]),
    ];
    let lb = balancer(&agents, BalanceStrategy::CapabilityAware, &members);
    let gpu = counts(&lb, 300, &["gpu"]);
    assert_eq!(
        gpu,
        HashMap::from([
            ("gpu1".into(), 100),
            ("gpu2".into(), 100),
            ("both".into(), 100)
        ])
    );
    assert_eq!(
        counts(&lb, 10, &["gpu", "cpu"]),
        HashMap::from([("both".into(), 10)])
    );
    assert_eq!(lb.pick(&["tpu"]).unwrap_err().code(), 7301);
    agents.set_status(&"both".into(), AgentStatus::Crashed);
    assert_eq!(lb.pick(&["gpu", "cpu"]).unwrap_err().code(), 7301);
}

#[tokio::test]
async fn performance_weighted_follows_the_monitor() {
    let agents = agents(&["fast", "slow", "flaky"]);
    let loads = Arc::new(Loads::default());
    loads.set("fast", 300.0, 5, 0.0, 100);
    loads.set("slow", 100.0, 50, 0.0, 100);
    loads.set("flaky", 300.0, 5, 0.5, 100);
    let lb = LoadBalancer::new(
        Arc::new(agents.clone()),
        BalanceStrategy::PerformanceWeighted,
    )
    .with_load(loads.clone());
    for id in ["fast", "slow", "flaky"] {
        lb.add(MemberSpec::new(id)).unwrap();
    }
    lb.refresh();
    // Weights 1000 : 333 : 500 over a cycle of 1833 picks.
    let picks = counts(&lb, 1833, &[]);
    assert_eq!(
        picks,
        HashMap::from([
            ("fast".into(), 1000),
            ("slow".into(), 333),
            ("flaky".into(), 500)
        ])
    );
    // The monitor changes its mind; the balancer follows on refresh.
    loads.set("slow", 600.0, 1, 0.0, 100);
    lb.refresh();
    let picks = counts(&lb, 1000, &[]);
    assert!(picks["slow"] > picks["fast"], "{picks:?}");
}

#[tokio::test]
async fn rebalance_moves_work_from_slow_and_dead_agents() {
    let agents = agents(&["a", "b", "c"]);
    let loads = Arc::new(Loads::default());
    for id in ["a", "b", "c"] {
        loads.set(id, 100.0, 10, 0.0, 100);
    }
    let lb = LoadBalancer::new(Arc::new(agents.clone()), BalanceStrategy::RoundRobin)
        .with_load(loads.clone());
    for id in ["a", "b", "c"] {
        lb.add(MemberSpec::new(id)).unwrap();
    }
    for n in 0..9 {
        lb.enqueue(json!({ "job": n }), &[]).unwrap();
    }
    assert_eq!(
        (
            lb.queued(&"a".into()),
            lb.queued(&"b".into()),
            lb.queued(&"c".into())
        ),
        (3, 3, 3)
    );
    assert!(lb.rebalance(3.0).is_empty(), "nobody is slow");

    loads.set("b", 100.0, 100, 0.0, 100); // ten times the median
    agents.set_status(&"c".into(), AgentStatus::Crashed);
    let moves = lb.rebalance(3.0);
    assert_eq!(moves.len(), 6);
    assert!(moves.iter().all(|m| m.to.as_str() == "a"));
    assert_eq!(
        (
            lb.queued(&"a".into()),
            lb.queued(&"b".into()),
            lb.queued(&"c".into())
        ),
        (9, 0, 0)
    );
    // Order kept: a takes its own work first, then what it received.
    assert_eq!(
        lb.next_work(&"a".into()).unwrap().payload,
        json!({"job": 0})
    );
}

#[tokio::test]
async fn ask_through_the_balancer_holds_the_pick_until_answered() {
    let agents = agents(&["a"]);
    let lb = balancer(
        &agents,
        BalanceStrategy::RoundRobin,
        &[MemberSpec::new("a")],
    );
    let (agent, answer) = lb
        .ask(
            Envelope::new("work.do", json!(null), Duration::from_secs(1)),
            &[],
        )
        .await
        .unwrap();
    assert_eq!((agent.as_str(), answer), ("a", json!("a")));
    assert_eq!(lb.in_flight(&"a".into()), Some(0));
}

fn strategy() -> impl Strategy<Value = BalanceStrategy> {
    prop_oneof![
        Just(BalanceStrategy::RoundRobin),
        Just(BalanceStrategy::Weighted),
        Just(BalanceStrategy::LeastLoaded),
        Just(BalanceStrategy::CapabilityAware),
        Just(BalanceStrategy::PerformanceWeighted),
    ]
}

fn status() -> impl Strategy<Value = AgentStatus> {
    prop_oneof![
        3 => Just(AgentStatus::Running),
        1 => Just(AgentStatus::Crashed),
        1 => Just(AgentStatus::Restarting),
        1 => Just(AgentStatus::Failed),
        1 => Just(AgentStatus::Stopped),
    ]
}

proptest! {
    // Whatever the strategy and however statuses change between picks,
    // a pick is a running agent, and NoAgentAvailable means none is.
    #[test]
    fn never_picks_a_dead_agent(
        strategy in strategy(),
        weights in proptest::collection::vec(1u32..5, 1..12),
        changes in proptest::collection::vec((0usize..12, status()), 0..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ids: Vec<String> = (0..weights.len()).map(|i| format!("agent-{i}")).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            let agents = agents(&refs);
            let members: Vec<MemberSpec> = ids
                .iter()
                .zip(&weights)
                .map(|(id, w)| MemberSpec::new(id.as_str()).weight(*w).capabilities(&["work"]))
                .collect();
            let lb = balancer(&agents, strategy, &members);
            for (index, status) in changes {
                agents.set_status(&ids[index % ids.len()].as_str().into(), status);
                let running = ids.iter().any(|id| agents_status(&agents, id) == Some(AgentStatus::Running));
                match lb.pick(&["work"]) {
                    Ok(lease) => prop_assert_eq!(agents_status(&agents, lease.agent().as_str()), Some(AgentStatus::Running)),
                    Err(_) => prop_assert!(!running),
                }
            }
            Ok(())
        })?;
    }
}

fn agents_status(agents: &ScriptedDirectory, id: &str) -> Option<AgentStatus> {
    mabeam_supervision_core::AgentDirectory::status(agents, &id.into())
}
