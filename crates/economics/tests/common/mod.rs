//! Shared test helpers: worker agents that answer, the load figures a
//! test sets, how often a balancer picks each member, and the auctions'
//! usual specs.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{collections::HashMap, sync::Arc, time::Duration};

use mabeam_economics::{
    BalanceStrategy, DutchSpec, LoadBalancer, MemberSpec, PriceRule, SealedSpec,
};
use mabeam_supervision_core::{
    AgentId, AgentLoad, AgentSelection, LoadReport,
    testkit::{Answer, ScriptedDirectory},
};
use parking_lot::Mutex;
use serde_json::json;

/// Agents `ids` of kind `worker`, each answering with its own id.
pub fn workers(ids: &[&str]) -> ScriptedDirectory {
    let agents = ScriptedDirectory::new();
    for id in ids {
        let id = (*id).to_owned();
        agents.add(id.clone(), "worker", move |_| {
            Answer::Reply(json!(id.clone()))
        });
    }
    agents
}

/// A balancer over `agents` by `strategy`, with `members`.
pub fn balancer(
    agents: &ScriptedDirectory,
    strategy: BalanceStrategy,
    members: &[MemberSpec],
) -> LoadBalancer {
    let balancer = LoadBalancer::new(Arc::new(agents.clone()), strategy);
    for member in members {
        balancer.add(member.clone()).unwrap();
    }
    balancer
}

/// Load figures a test sets, by agent.
#[derive(Default)]
pub struct Loads(Mutex<HashMap<AgentId, LoadReport>>);

impl Loads {
    /// Sets `id`'s figures: `throughput` per second, every latency
    /// `latency_ms`, `error_rate`, over `samples` samples.
    pub fn set(&self, id: &str, throughput: f64, latency_ms: u64, error_rate: f64, samples: u64) {
        let latency = Duration::from_millis(latency_ms);
        self.0.lock().insert(
            id.into(),
            LoadReport {
                throughput_per_s: throughput,
                latency_mean: latency,
                latency_p50: latency,
                latency_p99: latency,
                error_rate,
                samples,
            },
        );
    }
}

impl AgentLoad for Loads {
    fn load(&self, agent: &AgentId) -> Option<LoadReport> {
        self.0.lock().get(agent).copied()
    }
}

/// How often each member is picked in `n` picks for `tags`, each lease
/// dropped at once.
pub fn counts(lb: &LoadBalancer, n: usize, tags: &[&str]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let lease = lb.pick(tags).unwrap();
        *counts.entry(lease.agent().to_string()).or_default() += 1;
    }
    counts
}

/// A first-price sealed auction of a `gpu-hour` among the `bidder`s, no
/// reserve, 100 ms of bidding.
pub fn sealed_spec() -> SealedSpec {
    SealedSpec {
        item: "gpu-hour".into(),
        rule: PriceRule::FirstPrice,
        reserve: 0.0,
        invitees: AgentSelection::Kind("bidder".into()),
        bidding: Duration::from_millis(100),
    }
}

/// A Dutch auction of a `slot` among the `bidder`s: from 100 down by 10
/// each 100 ms tick, to a reserve of 40.
pub fn dutch_spec() -> DutchSpec {
    DutchSpec {
        item: "slot".into(),
        start_price: 100.0,
        step: 10.0,
        tick: Duration::from_millis(100),
        reserve: 40.0,
        invitees: AgentSelection::Kind("bidder".into()),
    }
}
