//! The LoadBalancer's parts that `cargo xtask mutants economics` found no
//! test checking: each test here fails with the mutant it names (see the
//! README's testing section).

use std::{collections::HashMap, sync::Arc, time::Duration};

use mabeam_economics::{BalanceStrategy, LoadBalancer, MemberSpec};
use mabeam_supervision_core::{
    AgentId, AgentLoad, LoadReport,
    testkit::{Answer, ScriptedDirectory},
};
use parking_lot::Mutex;
use serde_json::json;

fn balancer(ids: &[&str]) -> LoadBalancer {
    let agents = ScriptedDirectory::new();
    for id in ids {
        agents.add(*id, "worker", |_| Answer::Reply(json!("done")));
    }
    LoadBalancer::new(Arc::new(agents), BalanceStrategy::RoundRobin)
}

// A lease's Debug form names its agent (mutant: an empty `fmt`).
#[tokio::test]
async fn a_lease_shows_its_agent() {
    let lb = balancer(&["a"]);
    lb.add(MemberSpec::new("a")).unwrap();
    let lease = lb.pick(&[]).unwrap();
    let debug = format!("{lease:?}");
    assert!(
        debug.contains("Lease") && debug.contains("\"a\""),
        "{debug}"
    );
}

// `add_all` refuses a member of weight 0 or of capacity 0, each alone,
// and adds nothing (mutant: the two checks joined with `&&`).
#[tokio::test]
async fn add_all_refuses_a_zero_weight_or_a_zero_capacity() {
    let lb = balancer(&["a", "b"]);
    assert!(
        lb.add_all([MemberSpec::new("a"), MemberSpec::new("b").weight(0)])
            .is_err()
    );
    assert!(
        lb.add_all([MemberSpec::new("a"), MemberSpec::new("b").capacity(0)])
            .is_err()
    );
    assert_eq!(lb.len(), 0, "all or nothing");
    lb.add_all([MemberSpec::new("a"), MemberSpec::new("b")])
        .unwrap();
    assert_eq!(lb.len(), 2);
}

// `add_kind` adds every agent of the kind with the template's settings
// and says how many (mutant: `Ok(1)`, adding nothing).
#[tokio::test]
async fn add_kind_adds_every_agent_of_the_kind() {
    let agents = ScriptedDirectory::new();
    for id in ["w1", "w2"] {
        agents.add(id, "worker", |_| Answer::Reply(json!("done")));
    }
    agents.add("x", "other", |_| Answer::Reply(json!("done")));
    let lb = LoadBalancer::new(Arc::new(agents), BalanceStrategy::RoundRobin);
    let template = MemberSpec::new("template").capacity(1);
    assert_eq!(lb.add_kind("worker", &template).unwrap(), 2);
    assert_eq!(lb.len(), 2);
    let first = lb.pick(&[]).unwrap();
    let second = lb.pick(&[]).unwrap();
    let mut picked = vec![first.agent().to_string(), second.agent().to_string()];
    picked.sort();
    assert_eq!(picked, ["w1", "w2"]);
    // The template's capacity of 1: both are busy now.
    assert!(lb.pick(&[]).is_err());
}

// `remove` takes the member out and keeps the others (mutant: the filter
// inverted, keeping only the removed one); `is_empty` says so once none
// is left (mutant: always `false`).
#[tokio::test]
async fn remove_keeps_the_others_and_empty_is_empty() {
    let lb = balancer(&["a", "b", "c"]);
    assert!(lb.is_empty());
    for id in ["a", "b", "c"] {
        lb.add(MemberSpec::new(id)).unwrap();
    }
    assert!(!lb.is_empty());
    lb.remove(&"b".into()).unwrap();
    assert_eq!(lb.len(), 2);
    let picks: Vec<String> = (0..4)
        .map(|_| lb.pick(&[]).unwrap().agent().to_string())
        .collect();
    assert_eq!(picks, ["a", "c", "a", "c"]);
    lb.remove(&"a".into()).unwrap();
    lb.remove(&"c".into()).unwrap();
    assert!(lb.is_empty());
}

/// Loads a test sets.
#[derive(Default)]
struct Loads(Mutex<HashMap<AgentId, LoadReport>>);

impl AgentLoad for Loads {
    fn load(&self, agent: &AgentId) -> Option<LoadReport> {
        self.0.lock().get(agent).copied()
    }
}

// With no throughput measured, performance weighs by the inverse of the
// latency: four times as fast, four times the picks (mutants: `> 0.0` as
// `>= 0.0`, taking the zero throughput; `1.0 / latency` as `*`).
#[tokio::test]
async fn without_throughput_the_faster_member_weighs_more() {
    let agents = ScriptedDirectory::new();
    for id in ["quick", "slow"] {
        agents.add(id, "worker", |_| Answer::Reply(json!("done")));
    }
    let loads = Arc::new(Loads::default());
    for (id, latency_ms) in [("quick", 10), ("slow", 40)] {
        let latency = Duration::from_millis(latency_ms);
        loads.0.lock().insert(
            id.into(),
            LoadReport {
                throughput_per_s: 0.0,
                latency_mean: latency,
                latency_p50: latency,
                latency_p99: latency,
                error_rate: 0.0,
                samples: 10,
            },
        );
    }
    let lb =
        LoadBalancer::new(Arc::new(agents), BalanceStrategy::PerformanceWeighted).with_load(loads);
    lb.add(MemberSpec::new("quick")).unwrap();
    lb.add(MemberSpec::new("slow")).unwrap();
    lb.refresh();
    // Weights 1000 : 250 over a cycle of 1250 picks.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1250 {
        *counts
            .entry(lb.pick(&[]).unwrap().agent().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        counts,
        HashMap::from([("quick".into(), 1000), ("slow".into(), 250)])
    );
}

// A report of no samples is no figure: its member is not judged slow
// (mutant: `samples > 0` as `>= 0`, judging it by an empty window).
#[tokio::test]
async fn a_report_without_samples_does_not_make_a_member_slow() {
    let agents = ScriptedDirectory::new();
    for id in ["a", "b", "c"] {
        agents.add(id, "worker", |_| Answer::Reply(json!("done")));
    }
    let loads = Arc::new(Loads::default());
    for (id, latency_ms, samples) in [("a", 10, 10), ("b", 1_000, 0), ("c", 10, 10)] {
        let latency = Duration::from_millis(latency_ms);
        loads.0.lock().insert(
            id.into(),
            LoadReport {
                throughput_per_s: 1.0,
                latency_mean: latency,
                latency_p50: latency,
                latency_p99: latency,
                error_rate: 0.0,
                samples,
            },
        );
    }
    let lb = LoadBalancer::new(Arc::new(agents), BalanceStrategy::RoundRobin).with_load(loads);
    for id in ["a", "b", "c"] {
        lb.add(MemberSpec::new(id)).unwrap();
    }
    for n in 0..3 {
        lb.enqueue(json!({ "job": n }), &[]).unwrap();
    }
    assert_eq!(lb.queued(&"b".into()), 1);
    assert!(lb.rebalance(3.0).is_empty());
    assert_eq!(lb.queued(&"b".into()), 1);
}

// Least-loaded draws its two members pseudo-randomly: among idle members
// every one is drawn, about as often (mutants of `mix`, the draw's hash:
// a constant draws one member only).
#[tokio::test]
async fn least_loaded_draws_every_member_about_as_often() {
    let ids = ["a", "b", "c", "d"];
    let agents = ScriptedDirectory::new();
    for id in ids {
        agents.add(id, "worker", |_| Answer::Reply(json!("done")));
    }
    let lb = LoadBalancer::new(Arc::new(agents), BalanceStrategy::LeastLoaded);
    for id in ids {
        lb.add(MemberSpec::new(id)).unwrap();
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..1_000 {
        // Each lease dropped at once: every member idle at every pick.
        *counts
            .entry(lb.pick(&[]).unwrap().agent().to_string())
            .or_default() += 1;
    }
    for id in ids {
        let n = counts.get(id).copied().unwrap_or(0);
        assert!((150..=350).contains(&n), "{id} drawn {n} times: {counts:?}");
    }
}

// A member with no figures weighs as the median member (mutant: the
// median read at `len * 2`, past the end, so it weighed as 1.0 against
// scores in the tens: next to nothing).
#[tokio::test]
async fn a_member_without_figures_weighs_as_the_median() {
    let ids = ["quick", "mid", "slow", "unmeasured"];
    let agents = ScriptedDirectory::new();
    for id in ids {
        agents.add(id, "worker", |_| Answer::Reply(json!("done")));
    }
    let loads = Arc::new(Loads::default());
    for (id, throughput) in [("quick", 100.0), ("mid", 50.0), ("slow", 25.0)] {
        let latency = Duration::from_millis(10);
        loads.0.lock().insert(
            id.into(),
            LoadReport {
                throughput_per_s: throughput,
                latency_mean: latency,
                latency_p50: latency,
                latency_p99: latency,
                error_rate: 0.0,
                samples: 10,
            },
        );
    }
    let lb =
        LoadBalancer::new(Arc::new(agents), BalanceStrategy::PerformanceWeighted).with_load(loads);
    for id in ids {
        lb.add(MemberSpec::new(id)).unwrap();
    }
    lb.refresh();
    // Weights 1000 : 500 : 250 : 500 (the median) over 2250 picks.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..2_250 {
        *counts
            .entry(lb.pick(&[]).unwrap().agent().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        counts,
        HashMap::from([
            ("quick".into(), 1000),
            ("mid".into(), 500),
            ("slow".into(), 250),
            ("unmeasured".into(), 500)
        ])
    );
}

// The median of an even number of measured members is the upper middle
// one (mutant: the median read at `len % 2`, index 0 of four: the
// slowest, so the unmeasured member weighed a quarter as much).
#[tokio::test]
async fn the_median_of_an_even_count_is_the_upper_middle() {
    let ids = ["quick", "mid", "slow", "slowest", "unmeasured"];
    let agents = ScriptedDirectory::new();
    for id in ids {
        agents.add(id, "worker", |_| Answer::Reply(json!("done")));
    }
    let loads = Arc::new(Loads::default());
    for (id, throughput) in [
        ("quick", 100.0),
        ("mid", 50.0),
        ("slow", 25.0),
        ("slowest", 12.5),
    ] {
        let latency = Duration::from_millis(10);
        loads.0.lock().insert(
            id.into(),
            LoadReport {
                throughput_per_s: throughput,
                latency_mean: latency,
                latency_p50: latency,
                latency_p99: latency,
                error_rate: 0.0,
                samples: 10,
            },
        );
    }
    let lb =
        LoadBalancer::new(Arc::new(agents), BalanceStrategy::PerformanceWeighted).with_load(loads);
    for id in ids {
        lb.add(MemberSpec::new(id)).unwrap();
    }
    lb.refresh();
    // Weights 1000 : 500 : 250 : 125 : 500 (the median, 50) over 2375
    // picks.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..2_375 {
        *counts
            .entry(lb.pick(&[]).unwrap().agent().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        counts,
        HashMap::from([
            ("quick".into(), 1000),
            ("mid".into(), 500),
            ("slow".into(), 250),
            ("slowest".into(), 125),
            ("unmeasured".into(), 500)
        ])
    );
}
