//! `bench coordination`: a majority vote among 1,000 agents, a Byzantine
//! round among 100 (f = 33), a variable update broadcast to 100,000
//! subscribed agents, and beside it bare kameo `tell` of the same message
//! to 100,000 actors.
//!
//! The agents are kameo actors reached through a small `AgentDirectory`
//! over their `ActorRef`s (the shape agent-supervisor's directory has), so
//! the broadcast and the bare tells reach the same actors by the same
//! mailboxes; the difference is what the variable space adds.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use coordination::{
    ByzantineRound, Coordinator, Proposal, Rule, ValueType, VariableSpace, VariableSpec,
};
use futures::future::BoxFuture;
use kameo::prelude::*;
use serde_json::{Value, json};
use supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentSelection, AgentStatus, AgentStatusChanges, Clock,
    DirectoryError, Envelope, ProcessHandle,
};
use tokio::sync::{Notify, broadcast};

const AGENTS: usize = 100_000;

/// Counts what it was told; answers votes yes and Byzantine rounds "A".
struct BenchAgent {
    seen: Arc<Seen>,
}

struct Seen {
    count: AtomicUsize,
    target: AtomicUsize,
    done: Notify,
}

impl Actor for BenchAgent {
    type Args = Arc<Seen>;
    type Error = kameo::error::Infallible;

    async fn on_start(seen: Arc<Seen>, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(BenchAgent { seen })
    }
}

/// A message carrying an envelope, told or asked.
struct Deliver(Envelope);

impl Message<Deliver> for BenchAgent {
    type Reply = Result<Value, String>;

    async fn handle(
        &mut self,
        Deliver(envelope): Deliver,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        Ok(match &*envelope.protocol {
            coordination::VOTE_PROTOCOL => json!({"vote": "yes"}),
            coordination::PROPOSE_PROTOCOL | coordination::CONFIRM_PROTOCOL => {
                json!({"value": "A"})
            }
            _ => {
                let seen = self.seen.count.fetch_add(1, Ordering::AcqRel) + 1;
                if seen == self.seen.target.load(Ordering::Acquire) {
                    self.seen.done.notify_one();
                }
                Value::Null
            }
        })
    }
}

struct KameoDirectory {
    agents: HashMap<AgentId, ActorRef<BenchAgent>>,
    changes: broadcast::Sender<supervision_core::AgentStatusChange>,
}

impl AgentDirectory for KameoDirectory {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.agents.get(id).map(|a| ProcessHandle::new(a.clone()))
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.agents.get(id).map(|_| AgentInfo {
            id: id.clone(),
            kind: "bench".into(),
            status: AgentStatus::Running,
            passivated: false,
            restarts: 0,
        })
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.agents.keys().filter_map(|id| self.info(id)).collect()
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Value, DirectoryError>> {
        let agent = self.agents.get(id).cloned();
        let id = id.clone();
        Box::pin(async move {
            let agent = agent.ok_or_else(|| DirectoryError::NotFound(id.clone()))?;
            let remaining = envelope.remaining();
            match tokio::time::timeout(remaining, agent.ask(Deliver(envelope)).send()).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(_)) => Err(DirectoryError::Crashed {
                    agent: id,
                    reason: supervision_core::ExitReason::Killed,
                }),
                Err(_) => Err(DirectoryError::Timeout(id)),
            }
        })
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        let agent = self
            .agents
            .get(id)
            .ok_or_else(|| DirectoryError::NotFound(id.clone()))?;
        agent
            .tell(Deliver(envelope))
            .try_send()
            .map_err(|_| DirectoryError::MailboxFull(id.clone()))
    }

    fn subscribe(&self) -> AgentStatusChanges {
        self.changes.subscribe()
    }
}

fn id(i: usize) -> AgentId {
    AgentId::from(format!("agent-{i:06}"))
}

async fn all_seen(seen: &Seen, n: usize) {
    while seen.count.load(Ordering::Acquire) < n {
        let notified = seen.done.notified();
        if seen.count.load(Ordering::Acquire) >= n {
            break;
        }
        notified.await;
    }
}

pub(crate) async fn run() -> Result<Value> {
    let seen = Arc::new(Seen {
        count: AtomicUsize::new(0),
        target: AtomicUsize::new(usize::MAX),
        done: Notify::new(),
    });
    eprintln!("bench coordination: spawning {AGENTS} agents");
    let mut agents = HashMap::with_capacity(AGENTS);
    let mut refs = Vec::with_capacity(AGENTS);
    for i in 0..AGENTS {
        let actor = BenchAgent::spawn(seen.clone());
        refs.push(actor.clone());
        agents.insert(id(i), actor);
    }
    let directory = Arc::new(KameoDirectory {
        agents,
        changes: broadcast::channel(16).0,
    });
    let coordinator = Arc::new(Coordinator::new(directory.clone(), Clock::system()));

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
        "every agent voted"
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
            coordination::CHANGED_PROTOCOL,
            json!({"variable": "rate", "value": 1, "version": 2}),
            Duration::from_secs(5),
        )
    };

    // Alternate bare tells and broadcasts; keep the median of three each.
    let (mut bare, mut ours) = (Vec::new(), Vec::new());
    for round in 0..3 {
        eprintln!("bench coordination: round {round}: bare tell to {AGENTS} actors");
        seen.count.store(0, Ordering::Release);
        seen.target.store(AGENTS, Ordering::Release);
        let t = Instant::now();
        for actor in &refs {
            actor
                .tell(Deliver(message()))
                .try_send()
                .map_err(|_| anyhow::anyhow!("mailbox full"))?;
        }
        all_seen(&seen, AGENTS).await;
        bare.push(t.elapsed().as_secs_f64());

        eprintln!("bench coordination: round {round}: broadcast to {AGENTS} subscribers");
        seen.count.store(0, Ordering::Release);
        let t = Instant::now();
        space
            .update("rate", json!(round + 1), None)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        all_seen(&seen, AGENTS).await;
        ours.push(t.elapsed().as_secs_f64());
    }
    bare.sort_by(f64::total_cmp);
    ours.sort_by(f64::total_cmp);
    for actor in &refs {
        actor.kill();
    }
    Ok(json!({
        "bench": "coordination",
        "vote_1k_ms": vote_1k_ms,
        "byzantine_100_ms": byzantine_100_ms,
        "broadcast_100k_s": ours[1],
        "bare_tell_100k_s": bare[1],
        "broadcast_over_bare": ours[1] / bare[1],
    }))
}
