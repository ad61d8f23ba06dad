//! `bench coordination`: a majority vote among 1,000 agents, a Byzantine
//! round among 100 (f = 33), a variable update broadcast to 100,000
//! subscribed agents, and beside it bare kameo `tell` of the same message
//! to 100,000 actors.
//!
//! The agents are real agents ([`BenchAgent`](super::agents::BenchAgent))
//! started through agent-supervisor's `AgentRegistry`, reached through its
//! `AgentDirectory` as a user's are. The bare tells go to 100,000 plain
//! kameo actors that count the same message; the broadcast's cost over
//! them is what the variable space and the agent layer add.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use kameo::prelude::*;
use mabeam_coordination::{
    ByzantineRound, Coordinator, Proposal, Rule, ValueType, VariableSpace, VariableSpec,
};
use mabeam_supervision_core::{AgentDirectory, AgentId, AgentSelection, Clock, Envelope};
use serde_json::{Value, json};

use super::agents::{self, Seen};

const AGENTS: usize = 100_000;

/// The bare baseline: a kameo actor that counts what it is told.
struct BareActor {
    seen: Arc<Seen>,
}

impl Actor for BareActor {
    type Args = Arc<Seen>;
    type Error = kameo::error::Infallible;

    async fn on_start(seen: Arc<Seen>, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(BareActor { seen })
    }
}

/// An envelope told to a bare actor.
struct Deliver(Envelope);

impl Message<Deliver> for BareActor {
    type Reply = ();

    async fn handle(&mut self, Deliver(envelope): Deliver, _: &mut Context<Self, ()>) {
        // What the agent does with it: look at the protocol, count it.
        if &*envelope.protocol == mabeam_coordination::CHANGED_PROTOCOL {
            self.seen.one();
        }
    }
}

fn id(i: usize) -> AgentId {
    AgentId::from(agents::id(i))
}

pub(crate) async fn run() -> Result<Value> {
    let seen = Seen::new();
    eprintln!("bench coordination: starting {AGENTS} agents through an AgentRegistry");
    let registry = agents::start(AGENTS, "bench", &seen).await?;
    eprintln!("bench coordination: spawning {AGENTS} bare kameo actors");
    let bare_actors: Vec<ActorRef<BareActor>> = (0..AGENTS)
        .map(|_| BareActor::spawn(seen.clone()))
        .collect();
    let directory: Arc<dyn AgentDirectory> = Arc::new(registry.clone());
    let coordinator = Arc::new(Coordinator::new(directory, Clock::system()));

    eprintln!("bench coordination: majority vote among 1,000 agents");
    let voters: Vec<AgentId> = (0..1_000).map(id).collect();
    let t = Instant::now();
    let decision = coordinator
        .vote(Proposal::new(
            "bench",
            AgentSelection::Ids(voters),
            Rule::Majority,
            Duration::from_secs(10),
        ))
        .await?;
    let vote_1k_ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(
        decision.passed() && decision.votes.len() == 1_000,
        "every agent voted: {}",
        decision.explanation
    );

    eprintln!("bench coordination: Byzantine round among 100 (f = 33)");
    let t = Instant::now();
    let agreement = coordinator
        .byzantine(ByzantineRound {
            topic: "bench".into(),
            body: Value::Null,
            participants: AgentSelection::Ids((0..100).map(id).collect()),
            faults: 33,
            timeout: Duration::from_secs(10),
        })
        .await?;
    let byzantine_100_ms = t.elapsed().as_secs_f64() * 1e3;
    ensure!(agreement.value == json!("A"));

    let space = VariableSpace::new(coordinator.clone());
    space
        .define(VariableSpec::new(
            "rate",
            ValueType::Integer {
                min: 0,
                max: i64::MAX,
            },
            json!(0),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for i in 0..AGENTS {
        space
            .subscribe("rate", id(i))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let message = || {
        Envelope::new(
            mabeam_coordination::CHANGED_PROTOCOL,
            json!({"variable": "rate", "value": 1, "version": 2}),
            Duration::from_secs(5),
        )
    };

    // Alternate bare tells and broadcasts; keep the median of three each.
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for round in 0..3 {
        eprintln!("bench coordination: round {round}: bare tell to {AGENTS} actors");
        seen.expect(AGENTS);
        let t = Instant::now();
        for actor in &bare_actors {
            actor
                .tell(Deliver(message()))
                .try_send()
                .map_err(|_| anyhow::anyhow!("mailbox full"))?;
        }
        seen.all().await;
        bare.push(t.elapsed().as_secs_f64());

        eprintln!("bench coordination: round {round}: broadcast to {AGENTS} subscribed agents");
        seen.expect(AGENTS);
        let t = Instant::now();
        space
            .update("rate", json!(round + 1), None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        seen.all().await;
        ours.push(t.elapsed().as_secs_f64());
    }
    bare.sort_by(f64::total_cmp);
    ours.sort_by(f64::total_cmp);
    for actor in &bare_actors {
        actor.kill();
    }
    registry.stop().await;
    Ok(json!({
        "bench": "coordination",
        "agents": "agent-supervisor AgentRegistry",
        "vote_1k_ms": vote_1k_ms,
        "byzantine_100_ms": byzantine_100_ms,
        "broadcast_100k_s": ours[1],
        "bare_tell_100k_s": bare[1],
        "broadcast_over_bare": ours[1] / bare[1],
    }))
}
