//! `bench economics`: a sealed-bid auction among 10,000 agent bidders end
//! to end (each bidder a real agent started through agent-supervisor's
//! `AgentRegistry`, with its own process and mailbox, reached through the
//! registry's `AgentDirectory` and answering `economics.bid`), exact combinatorial winner determination with
//! 20 items and 200 bundle bids, and LoadBalancer picks per second over
//! 10,000 agents for each strategy, on one thread.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use mabeam_economics::{
    Auctioneer, BalanceStrategy, LoadBalancer, MemberSpec, PriceRule, SealedSpec, solve_exact,
};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentLoad, AgentSelection, Clock, LoadReport,
};
use serde_json::json;

use super::agents::{self, Seen};

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
    eprintln!("bench economics: starting {BIDDERS} agents through an AgentRegistry");
    let registry = agents::start(BIDDERS as usize, "bidder", &Seen::new()).await?;
    let directory: Arc<dyn AgentDirectory> = Arc::new(registry.clone());
    // The rule's winner and price, from the bids the agents will give.
    let mut ranked: Vec<(f64, u64)> = (0..BIDDERS).map(|i| (agents::bid_of(i), i)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (winner, price) = (AgentId::from(agents::id(ranked[0].1 as usize)), ranked[1].0);

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
    let award = outcome
        .award()
        .ok_or_else(|| anyhow::anyhow!("the auction did not sell"))?;
    ensure!(
        award.winner == winner && award.price == price,
        "the highest bidder wins at the second price: {}",
        outcome.explanation
    );

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
        "agents": "agent-supervisor AgentRegistry",
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
            MemberSpec::new(agents::id(i as usize))
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
    registry.stop().await;
    Ok(line)
}
