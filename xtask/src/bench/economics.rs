//! `bench economics`: a sealed-bid auction among 10,000 agent bidders end
//! to end (each bidder a task with its own mailbox, reached through the
//! AgentDirectory contract), exact combinatorial winner determination with
//! 20 items and 200 bundle bids, and LoadBalancer picks per second over
//! 10,000 agents for each strategy, on one thread.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use economics::{
    Auctioneer, BalanceStrategy, LoadBalancer, MemberSpec, PriceRule, SealedSpec, solve_exact,
};
use serde_json::json;
use supervision_core::{
    AgentId, AgentLoad, AgentSelection, Clock, LoadReport,
    testkit::{Answer, ScriptedDirectory},
};

const BIDDERS: u64 = 10_000;
const PICKS: u64 = 2_000_000;

/// A deterministic pseudo-random sequence (splitmix64).
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Every agent has a recent load; latency varies by agent.
struct Loads;

impl AgentLoad for Loads {
    fn load(&self, agent: &AgentId) -> Option<LoadReport> {
        let n: u64 = agent.as_str().trim_start_matches("agent-").parse().ok()?;
        Some(LoadReport {
            throughput_per_s: 100.0 + (n % 50) as f64,
            latency_p50: Duration::from_micros(500 + n % 1000),
            samples: 100,
            ..LoadReport::default()
        })
    }
}

pub(crate) async fn run() -> Result<serde_json::Value> {
    let agents = ScriptedDirectory::new();
    for i in 0..BIDDERS {
        let bid = (i * 7919) % 100_000;
        agents.add(format!("agent-{i:05}"), "bidder", move |_| {
            Answer::Reply(json!({ "bid": bid as f64 }))
        });
    }
    let directory = Arc::new(agents.clone());

    eprintln!("bench economics: sealed-bid auction among {BIDDERS} agents");
    let auctioneer = Auctioneer::new(directory.clone(), Clock::system());
    let t = Instant::now();
    let outcome = auctioneer
        .sealed(SealedSpec {
            item: "slot".into(),
            rule: PriceRule::SecondPrice,
            reserve: 0.0,
            invitees: AgentSelection::Kind("bidder".into()),
            bidding: Duration::from_secs(10),
        })
        .await?;
    let sealed_10k_ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(outcome.bids.len() as u64 == BIDDERS, "every agent bid");
    ensure!(outcome.award().is_some(), "the auction sold");

    eprintln!("bench economics: combinatorial winner determination, 20 items x 200 bids");
    let mut seed = 42;
    let bids: Vec<(Vec<usize>, f64)> = (0..200)
        .map(|_| {
            let size = 1 + (next(&mut seed) % 4) as usize;
            let mut items: Vec<usize> =
                (0..size).map(|_| (next(&mut seed) % 20) as usize).collect();
            items.sort_unstable();
            items.dedup();
            let amount = items.len() as f64 * (50.0 + (next(&mut seed) % 100) as f64);
            (items, amount)
        })
        .collect();
    let t = Instant::now();
    let allocation = solve_exact(20, &bids).expect("20 items fit");
    let combinatorial_20x200_ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(allocation.exact, "proven optimal within the node budget");

    let mut line = json!({
        "bench": "economics",
        "sealed_10k_ms": sealed_10k_ms,
        "combinatorial_20x200_ms": combinatorial_20x200_ms,
        "combinatorial_value": allocation.value,
    });
    let strategies = [
        ("round_robin", BalanceStrategy::RoundRobin),
        ("weighted", BalanceStrategy::Weighted),
        ("least_loaded", BalanceStrategy::LeastLoaded),
        ("capability", BalanceStrategy::CapabilityAware),
        ("performance", BalanceStrategy::PerformanceWeighted),
    ];
    for (name, strategy) in strategies {
        let balancer = LoadBalancer::new(directory.clone(), strategy).with_load(Arc::new(Loads));
        balancer.add_all((0..BIDDERS).map(|i| {
            MemberSpec::new(format!("agent-{i:05}"))
                .weight(1 + (i % 5) as u32)
                .capabilities(if i % 2 == 0 {
                    &["gpu", "cpu"]
                } else {
                    &["cpu"]
                })
        }))?;
        balancer.refresh();
        let capabilities: &[&str] = if strategy == BalanceStrategy::CapabilityAware {
            &["gpu"]
        } else {
            &[]
        };
        eprintln!("bench economics: {PICKS} picks, {name}");
        let t = Instant::now();
        for _ in 0..PICKS {
            let lease = balancer.pick(capabilities)?;
            std::hint::black_box(&lease);
        }
        let per_s = PICKS as f64 / t.elapsed().as_secs_f64();
        line[format!("lb_{name}_picks_per_s")] = json!(per_s.round());
    }
    Ok(line)
}
