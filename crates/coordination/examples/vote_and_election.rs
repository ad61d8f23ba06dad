//! A vote and an election among agents: five agents of agent-supervisor's
//! registry vote on a proposal (each answers for itself through the
//! `AgentDirectory`), then elect a leader among themselves by Raft's
//! election rules; the leader crashes and the others elect another.
//!
//! Run it with `cargo run -p mabeam-coordination --example vote_and_election`.

use std::{sync::Arc, time::Duration};

use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentRegistry, EnvelopeError};
use mabeam_coordination::{
    Coordinator, Election, ElectionConfig, ElectionMember, ElectionReporter, MemberMemory,
    MemberOptions, Proposal, Rule, VOTE_PROTOCOL,
};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentSelection, Clock, Envelope, ExitReason, RestartType, StartError,
};
use serde_json::{Value, json};

const MEMBERS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// What each member starts from.
#[derive(Clone)]
struct MemberArgs {
    id: AgentId,
    approve_up_to: u64,
    election: ElectionConfig,
    peers: Arc<dyn AgentDirectory>,
    reporter: ElectionReporter,
}

/// An agent that votes on proposals and takes part in elections.
struct Member {
    approve_up_to: u64,
    election: ElectionMember,
}

/// Makes a member crash.
struct Crash;

impl Agent for Member {
    type Args = MemberArgs;
    type Message = Crash;
    type Reply = ();
    // The election memory (term, vote, promise) survives a restart.
    type Checkpoint = MemberMemory;

    async fn on_start(args: MemberArgs, memory: Option<MemberMemory>) -> Result<Self, StartError> {
        let options = MemberOptions {
            reporter: Some(args.reporter),
            memory,
            ..Default::default()
        };
        let election =
            ElectionMember::start(args.id, args.election, args.peers, Clock::tokio(), options)
                .map_err(|err| StartError::failed(err.to_string()))?;
        Ok(Member {
            approve_up_to: args.approve_up_to,
            election,
        })
    }

    async fn handle(&mut self, Crash: Crash, ctx: &mut AgentContext<'_>) {
        ctx.stop_with(ExitReason::error("crash on command"));
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        if envelope.protocol.as_ref() == VOTE_PROTOCOL {
            let value = envelope.body["body"]["value"].as_u64().unwrap_or(u64::MAX);
            let vote = if value <= self.approve_up_to {
                "yes"
            } else {
                "no"
            };
            return Ok(json!({ "vote": vote }));
        }
        // Vote requests and heartbeats of the election.
        self.election
            .answer(&envelope)
            .ok_or(EnvelopeError::Unsupported)
    }

    fn checkpoint(&self) -> Option<MemberMemory> {
        Some(self.election.memory())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agents = AgentRegistry::start(Default::default()).await?;
    let directory: Arc<dyn AgentDirectory> = Arc::new(agents.clone());
    let coordinator = Arc::new(Coordinator::new(directory.clone(), Clock::tokio()));

    let config = ElectionConfig {
        participants: MEMBERS.iter().map(|id| AgentId::from(*id)).collect(),
        lease: Duration::from_millis(600),
        election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
        rpc_timeout: Duration::from_millis(50),
        seed: 7,
    };
    let election = Election::observe(coordinator.clone(), config.clone())?;

    for (i, id) in MEMBERS.iter().enumerate() {
        let args = MemberArgs {
            id: AgentId::from(*id),
            approve_up_to: 10 * (i as u64 + 1), // a: 10, b: 20, ... e: 50
            election: config.clone(),
            peers: directory.clone(),
            reporter: election.reporter(),
        };
        // Temporary: a crashed member stays down, so another must lead.
        let member =
            AgentConfig::new::<Member>("member", args).with_restart(RestartType::Temporary);
        agents.register_agent(*id, member)?;
        agents.start_agent(id).await?;
    }

    // A vote: each member answers for itself.
    let proposal = Proposal::new(
        "raise",
        AgentSelection::Kind("member".into()),
        Rule::Majority,
        Duration::from_secs(2),
    )
    .with_body(json!({ "value": 25 }));
    let decision = coordinator.vote(proposal).await?;
    println!(
        "vote on raise to 25: passed = {} ({})",
        decision.passed(),
        decision.explanation
    );

    // An election: the members campaign by themselves.
    let wait = Duration::from_secs(10);
    let first = tokio::time::timeout(wait, election.wait_for_leader()).await?;
    println!(
        "leader: {} (term {}, fencing token {})",
        first.leader, first.term, first.token
    );

    // The leader crashes; once its lease runs out, another is elected.
    agents
        .agent_ref::<Member>(first.leader.as_str())?
        .tell(Crash)
        .await?;
    let mut changes = election.watch();
    let second = tokio::time::timeout(wait, async {
        loop {
            if let Some(leader) = election.leader().filter(|l| l.leader != first.leader) {
                return Ok::<_, Box<dyn std::error::Error>>(leader);
            }
            changes.changed().await?;
        }
    })
    .await??;
    println!(
        "new leader: {} (term {}, fencing token {})",
        second.leader, second.term, second.token
    );
    // A resource that saw the new token refuses the deposed leader's.
    println!("old token admitted after the new one: {}", {
        election.admit(second.token);
        election.admit(first.token)
    });

    drop(election);
    agents.stop().await;
    Ok(())
}
