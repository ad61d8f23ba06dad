//! The LoadBalancer's parts that `cargo xtask mutants economics` found no
//! test checking: each test here fails with the mutant it names (see the
//! README's testing section).

mod common;

use std::{collections::HashMap, sync::Arc};

use common::{Loads, balancer, counts, workers};
use mabeam_economics::{BalanceStrategy, LoadBalancer, MemberSpec};
use mabeam_supervision_core::{AgentStatus, testkit::Answer};
use serde_json::json;

/// A round-robin balancer over workers `ids`, no member yet.
fn round_robin(ids: &[&str]) -> LoadBalancer {
    balancer(&workers(ids), BalanceStrategy::RoundRobin, &[])
}

/// A performance-weighted balancer of workers `ids`, every one a member,
/// weighed by `loads`.
fn weighed(ids: &[&str], loads: Loads) -> LoadBalancer {
    let members: Vec<MemberSpec> = ids.iter().map(|id| MemberSpec::new(*id)).collect();
    let lb = balancer(
        &workers(ids),
        BalanceStrategy::PerformanceWeighted,
        &members,
    )
    .with_load(Arc::new(loads));
    lb.refresh();
    lb
}

/// `(id, count)` pairs as a map of counts.
fn expected<const N: usize>(pairs: [(&str, usize); N]) -> HashMap<String, usize> {
    pairs.map(|(id, n)| (id.to_owned(), n)).into()
}

// A lease's Debug form names its agent (mutant: an empty `fmt`).
#[tokio::test]
async fn a_lease_shows_its_agent() {
    let lb = round_robin(&["a"]);
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
    let lb = round_robin(&["a", "b"]);
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
    let agents = workers(&["w1", "w2"]);
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
    let lb = round_robin(&["a", "b", "c"]);
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

// With no throughput measured, performance weighs by the inverse of the
// latency: four times as fast, four times the picks (mutants: `> 0.0` as
// `>= 0.0`, taking the zero throughput; `1.0 / latency` as `*`).
#[tokio::test]
async fn without_throughput_the_faster_member_weighs_more() {
    let loads = Loads::default();
    loads.set("quick", 0.0, 10, 0.0, 10);
    loads.set("slow", 0.0, 40, 0.0, 10);
    let lb = weighed(&["quick", "slow"], loads);
    // Weights 1000 : 250 over a cycle of 1250 picks.
    assert_eq!(
        counts(&lb, 1250, &[]),
        expected([("quick", 1000), ("slow", 250)])
    );
}

// A report of no samples is no figure: its member is not judged slow
// (mutant: `samples > 0` as `>= 0`, judging it by an empty window).
#[tokio::test]
async fn a_report_without_samples_does_not_make_a_member_slow() {
    let ids = ["a", "b", "c"];
    let loads = Arc::new(Loads::default());
    loads.set("a", 1.0, 10, 0.0, 10);
    loads.set("b", 1.0, 1_000, 0.0, 0);
    loads.set("c", 1.0, 10, 0.0, 10);
    let lb = balancer(
        &workers(&ids),
        BalanceStrategy::RoundRobin,
        &ids.map(MemberSpec::new),
    )
    .with_load(loads);
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
    let lb = balancer(
        &workers(&ids),
        BalanceStrategy::LeastLoaded,
        &ids.map(MemberSpec::new),
    );
    // Each lease dropped at once: every member idle at every pick.
    let counts = counts(&lb, 1_000, &[]);
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
    let loads = Loads::default();
    for (id, throughput) in [("quick", 100.0), ("mid", 50.0), ("slow", 25.0)] {
        loads.set(id, throughput, 10, 0.0, 10);
    }
    let lb = weighed(&["quick", "mid", "slow", "unmeasured"], loads);
    // Weights 1000 : 500 : 250 : 500 (the median) over 2250 picks.
    assert_eq!(
        counts(&lb, 2_250, &[]),
        expected([
            ("quick", 1000),
            ("mid", 500),
            ("slow", 250),
            ("unmeasured", 500)
        ])
    );
}

// The median of an even number of measured members is the upper middle
// one (mutant: the median read at `len % 2`, index 0 of four: the
// slowest, so the unmeasured member weighed a quarter as much).
#[tokio::test]
async fn the_median_of_an_even_count_is_the_upper_middle() {
    let loads = Loads::default();
    for (id, throughput) in [
        ("quick", 100.0),
        ("mid", 50.0),
        ("slow", 25.0),
        ("slowest", 12.5),
    ] {
        loads.set(id, throughput, 10, 0.0, 10);
    }
    let lb = weighed(&["quick", "mid", "slow", "slowest", "unmeasured"], loads);
    // Weights 1000 : 500 : 250 : 125 : 500 (the median, 50) over 2375
    // picks.
    assert_eq!(
        counts(&lb, 2_375, &[]),
        expected([
            ("quick", 1000),
            ("mid", 500),
            ("slow", 250),
            ("slowest", 125),
            ("unmeasured", 500)
        ])
    );
}

// A member's picks in flight are the leases it holds: each pick adds one,
// each lease dropped takes it back; a stranger has none (mutant:
// `LoadBalancer::in_flight` -> `Some(0)`).
#[tokio::test]
async fn in_flight_counts_the_leases_held() {
    let lb = round_robin(&["a"]);
    lb.add(MemberSpec::new("a")).unwrap();
    let first = lb.pick(&[]).unwrap();
    let second = lb.pick(&[]).unwrap();
    assert_eq!(lb.in_flight(&"a".into()), Some(2));
    drop(first);
    assert_eq!(lb.in_flight(&"a".into()), Some(1));
    drop(second);
    assert_eq!(lb.in_flight(&"a".into()), Some(0));
    assert_eq!(lb.in_flight(&"x".into()), None);
}

// Least-loaded's second member is never its first: of two members, one
// busy and one idle, every pick goes to the idle one (mutant: `%` as `+`
// in the second draw of `LoadBalancer::two_choices`, which drew the
// first member again about half the time, and then took the busy one).
#[tokio::test]
async fn least_loaded_of_two_always_takes_the_idle_one() {
    let lb = balancer(
        &workers(&["a", "b"]),
        BalanceStrategy::LeastLoaded,
        &["a", "b"].map(MemberSpec::new),
    );
    let held = lb.pick(&[]).unwrap();
    let busy = held.agent().to_string();
    // Each lease dropped at once: the held one stays the only busy one.
    let picks = counts(&lb, 100, &[]);
    assert_eq!(
        picks.get(&busy),
        None,
        "the busy member was picked: {picks:?}"
    );
}

// Among capabilities that as many members hold, a pick walks the members
// of the first one named, and those it skips there cost the plain walk
// their turns (mutant: `<` as `<=` in `LoadBalancer::capable`, which
// walked the last one's members, from another place). Members a {x},
// b {x, y}, c {y}: only b holds both; the plain picks show where the
// cursor stands.
#[tokio::test]
async fn a_capability_tie_walks_the_first_named_capabilitys_members() {
    let lb = balancer(
        &workers(&["a", "b", "c"]),
        BalanceStrategy::CapabilityAware,
        &[
            MemberSpec::new("a").capabilities(&["x"]),
            MemberSpec::new("b").capabilities(&["x", "y"]),
            MemberSpec::new("c").capabilities(&["y"]),
        ],
    );
    let picks: Vec<String> = [&["x", "y"][..], &[], &["x", "y"], &[]]
        .iter()
        .map(|tags| lb.pick(tags).unwrap().agent().to_string())
        .collect();
    assert_eq!(picks, ["b", "c", "b", "b"]);
}

// The balancer's Debug form names its strategy and how many members it
// has (mutant: an empty `fmt`).
#[tokio::test]
async fn a_balancer_shows_its_strategy_and_members() {
    let lb = balancer(
        &workers(&["a", "b"]),
        BalanceStrategy::RoundRobin,
        &["a", "b"].map(MemberSpec::new),
    );
    let debug = format!("{lb:?}");
    assert!(
        debug.contains("LoadBalancer")
            && debug.contains("RoundRobin")
            && debug.contains("members: 2"),
        "{debug}"
    );
}

// A member at its capacity is no target of a rebalance: a dead member's
// work goes to the idle member, not to the full one before it (mutant:
// `<` as `<=` in `LoadBalancer::usable`, which took the member at its
// capacity as usable).
#[tokio::test]
async fn rebalance_moves_no_work_to_a_member_at_its_capacity() {
    let agents = workers(&["a", "b", "c"]);
    let lb = balancer(
        &agents,
        BalanceStrategy::RoundRobin,
        &[
            MemberSpec::new("a").capacity(1),
            MemberSpec::new("b"),
            MemberSpec::new("c"),
        ],
    );
    let full = lb.pick(&[]).unwrap();
    assert_eq!(full.agent().as_str(), "a");
    let (_, to) = lb.enqueue(json!({ "job": 0 }), &[]).unwrap();
    assert_eq!(to.as_str(), "b");
    agents.set_status(&"b".into(), AgentStatus::Crashed);
    let moves = lb.rebalance(3.0);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].to.as_str(), "c", "{moves:?}");
    drop(full);
}

// A pick needing several capabilities walks the members of the rarest
// one: those it skips cost the plain walk their turns, so the plain
// picks show which list was walked (mutant: `<` as `>` in
// `LoadBalancer::capable`, which walked the most common capability's
// members). Members a {x}, b {x}, c {x, y}: only c holds both.
#[tokio::test]
async fn a_pick_walks_the_rarest_capabilitys_members() {
    let lb = balancer(
        &workers(&["a", "b", "c"]),
        BalanceStrategy::CapabilityAware,
        &[
            MemberSpec::new("a").capabilities(&["x"]),
            MemberSpec::new("b").capabilities(&["x"]),
            MemberSpec::new("c").capabilities(&["x", "y"]),
        ],
    );
    let picks: Vec<String> = [&["x", "y"][..], &[], &["x", "y"], &[]]
        .iter()
        .map(|tags| lb.pick(tags).unwrap().agent().to_string())
        .collect();
    assert_eq!(picks, ["c", "b", "c", "a"]);
}

// A member exactly `slow_factor` times the median latency is not slow:
// only above it (mutant: `>` as `>=` in `LoadBalancer::rebalance`).
// Doubling is exact in floating point, so 20 ms is exactly twice 10 ms.
#[tokio::test]
async fn a_member_at_exactly_the_slow_factor_is_not_slow() {
    let ids = ["a", "b", "c"];
    let loads = Arc::new(Loads::default());
    loads.set("a", 1.0, 10, 0.0, 10);
    loads.set("b", 1.0, 10, 0.0, 10);
    loads.set("c", 1.0, 20, 0.0, 10);
    let lb = balancer(
        &workers(&ids),
        BalanceStrategy::RoundRobin,
        &ids.map(MemberSpec::new),
    )
    .with_load(loads.clone());
    for n in 0..3 {
        lb.enqueue(json!({ "job": n }), &[]).unwrap();
    }
    assert_eq!(lb.queued(&"c".into()), 1);
    assert!(lb.rebalance(2.0).is_empty());
    assert_eq!(lb.queued(&"c".into()), 1);
    // Just above it, c is slow and its work moves.
    loads.set("c", 1.0, 21, 0.0, 10);
    assert_eq!(lb.rebalance(2.0).len(), 1);
}
