//! Cross-crate scenario: real agents (agent-supervisor's `Agent`, started
//! through an `AgentRegistry`) reached by coordination and economics only
//! through the `AgentDirectory` contract the registry implements, as the
//! umbrella wires them.
//!
//! - a majority vote decided from the agents' own answers, one agent
//!   killed while it holds its ballot and counted as silent;
//! - a sealed-bid auction won by the rule (Vickrey: the highest bidder
//!   pays the second price), one agent passing;
//! - a leader election among members that campaign themselves (each
//!   embeds an `ElectionMember`; the coordinator's `Election` observes)
//!   whose leader crashes: a new leader takes office in a later term, and
//!   the old leader's fencing token is refused.

use std::{sync::Arc, time::Duration};

use mabeam_agent_supervisor::{
    Agent, AgentConfig, AgentContext, AgentRegistry, AgentRegistryOptions, EnvelopeError,
};
use mabeam_coordination::{
    Ballot, Coordinator, Election, ElectionConfig, ElectionMember, ElectionReporter,
    HEARTBEAT_PROTOCOL, MemberOptions, Proposal, REQUEST_VOTE_PROTOCOL, Rule, VOTE_PROTOCOL,
};
use mabeam_economics::{Auctioneer, BID_PROTOCOL, PriceRule, SealedSpec};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentSelection, AgentStatus, Clock, Envelope, ExitReason, RestartType,
    StartError,
};
use serde_json::{Value, json};
use tokio::sync::Notify;

const WAIT: Duration = Duration::from_secs(30);

/// What a member agent starts from.
#[derive(Clone, Default)]
struct MemberArgs {
    /// Votes yes on proposals whose `amount` is below this.
    threshold: u64,
    /// Its sealed bid; `None` passes.
    bid: Option<f64>,
    /// If set, a vote request is received (this is told) and never
    /// answered.
    holds_ballot: Option<Arc<Notify>>,
    /// If set, it takes part in this election.
    election: Option<ElectionArgs>,
}

/// How a member takes part in an election: as `id`, reaching its peers
/// through `peers`, reporting to the observer.
#[derive(Clone)]
struct ElectionArgs {
    id: AgentId,
    config: ElectionConfig,
    peers: Arc<dyn AgentDirectory>,
    reporter: ElectionReporter,
}

/// A member agent: votes by its threshold, bids its amount, and takes part
/// in elections by Raft's rules (campaigning itself).
struct Member {
    args: MemberArgs,
    election: Option<ElectionMember>,
}

/// Makes a member crash.
struct Crash;

impl Agent for Member {
    type Args = MemberArgs;
    type Message = Crash;
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(args: MemberArgs, _: Option<()>) -> Result<Self, StartError> {
        let election = match args.election.clone() {
            Some(e) => Some(
                ElectionMember::start(
                    e.id,
                    e.config,
                    e.peers,
                    Clock::tokio(),
                    MemberOptions {
                        reporter: Some(e.reporter),
                        ..MemberOptions::default()
                    },
                )
                .map_err(|err| StartError::failed(err.to_string()))?,
            ),
            None => None,
        };
        Ok(Member { args, election })
    }

    async fn handle(&mut self, Crash: Crash, ctx: &mut AgentContext<'_>) {
        ctx.stop_with(ExitReason::error("crash on command"));
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        match &*envelope.protocol {
            VOTE_PROTOCOL => {
                if let Some(received) = &self.args.holds_ballot {
                    received.notify_one();
                    std::future::pending::<()>().await;
                }
                let amount = envelope.body["body"]["amount"]
                    .as_u64()
                    .ok_or_else(|| EnvelopeError::Rejected("no amount".into()))?;
                let yes = amount < self.args.threshold;
                Ok(json!({"vote": if yes { "yes" } else { "no" }}))
            }
            BID_PROTOCOL => Ok(json!({"bid": self.args.bid})),
            REQUEST_VOTE_PROTOCOL | HEARTBEAT_PROTOCOL => self
                .election
                .as_ref()
                .ok_or(EnvelopeError::Unsupported)?
                .answer(&envelope)
                .ok_or_else(|| EnvelopeError::Rejected("malformed election message".into())),
            _ => Err(EnvelopeError::Unsupported),
        }
    }
}

/// A registry with the members `(id, kind, args)` started, each temporary
/// (a crashed member stays down).
async fn members(list: &[(&str, &str, MemberArgs)]) -> AgentRegistry {
    let agents = AgentRegistry::start(AgentRegistryOptions::default())
        .await
        .unwrap();
    for (id, kind, args) in list {
        let config =
            AgentConfig::new::<Member>(*kind, args.clone()).with_restart(RestartType::Temporary);
        agents.register_agent(*id, config).unwrap();
        agents.start_agent(id).await.unwrap();
    }
    agents
}

fn ids(list: &[&str]) -> Vec<AgentId> {
    list.iter().map(|id| AgentId::from(*id)).collect()
}

fn voter(threshold: u64) -> MemberArgs {
    MemberArgs {
        threshold,
        ..MemberArgs::default()
    }
}

/// Five members vote on spending 50: three have thresholds above it (yes),
/// one below (no), and one receives the request, holds its ballot and is
/// killed. The majority rule counts all five: three yes of five passes;
/// the killed member is listed as silent, and nothing waited for the
/// vote's timeout.
#[tokio::test(start_paused = true)]
async fn a_majority_vote_counts_real_answers_and_a_killed_voter_as_silent() {
    let received = Arc::new(Notify::new());
    let holder = MemberArgs {
        holds_ballot: Some(received.clone()),
        ..voter(100)
    };
    let agents = members(&[
        ("a", "voter", voter(100)),
        ("b", "voter", voter(60)),
        ("c", "voter", voter(51)),
        ("d", "voter", voter(50)),
        ("e", "voter", holder),
    ])
    .await;
    let directory: Arc<dyn AgentDirectory> = Arc::new(agents.clone());
    let coordinator = Coordinator::new(directory, Clock::tokio());
    let began = tokio::time::Instant::now();
    let timeout = Duration::from_secs(60);

    let vote = coordinator.vote(
        Proposal::new(
            "spend",
            AgentSelection::Ids(ids(&["a", "b", "c", "d", "e"])),
            Rule::Majority,
            timeout,
        )
        .with_body(json!({"amount": 50})),
    );
    let kill = async {
        received.notified().await;
        agents.lookup("e").expect("e runs").kill();
    };
    let (decision, ()) = tokio::time::timeout(WAIT, async { tokio::join!(vote, kill) })
        .await
        .expect("the vote ends");
    let decision = decision.unwrap();

    assert!(decision.passed(), "{}", decision.explanation);
    assert_eq!(decision.participants, 5);
    assert_eq!(
        decision.votes,
        [
            (AgentId::from("a"), Ballot::Yes),
            (AgentId::from("b"), Ballot::Yes),
            (AgentId::from("c"), Ballot::Yes),
            (AgentId::from("d"), Ballot::No),
        ]
    );
    assert_eq!(decision.no_answer.len(), 1);
    assert_eq!(decision.no_answer[0].0, AgentId::from("e"));
    assert!(
        decision.no_answer[0].1.contains("crashed"),
        "{:?}",
        decision.no_answer
    );
    assert!(
        began.elapsed() < timeout,
        "the killed voter was not waited for"
    );
    assert_ne!(agents.status("e"), Some(AgentStatus::Running));
    agents.stop().await;
}

/// Four members are invited to a sealed-bid (Vickrey) auction: three bid,
/// one passes. The highest bidder wins and pays the second-highest bid.
#[tokio::test(start_paused = true)]
async fn a_sealed_auction_among_real_agents_is_won_by_the_rule() {
    let bidder = |bid: Option<f64>| MemberArgs {
        bid,
        ..MemberArgs::default()
    };
    let agents = members(&[
        ("p", "bidder", bidder(Some(30.0))),
        ("q", "bidder", bidder(Some(45.0))),
        ("r", "bidder", bidder(Some(25.0))),
        ("s", "bidder", bidder(None)),
        ("t", "voter", voter(10)),
    ])
    .await;
    let auctioneer = Auctioneer::new(Arc::new(agents.clone()), Clock::tokio());
    let outcome = auctioneer
        .sealed(SealedSpec {
            item: "gpu-hour".into(),
            rule: PriceRule::SecondPrice,
            reserve: 10.0,
            invitees: AgentSelection::Kind("bidder".into()),
            bidding: Duration::from_secs(1),
        })
        .await
        .unwrap();
    let award = outcome.award().expect("sold");
    assert_eq!((award.winner.as_str(), award.price), ("q", 30.0));
    assert_eq!(outcome.bids.len(), 3, "{outcome:?}");
    assert_eq!(
        outcome.no_answer,
        [(AgentId::from("s"), "passed".to_owned())]
    );
    agents.stop().await;
}

/// Five members elect a leader; the leader crashes (and, temporary, stays
/// down). The observer ends its tenure at once, and a new leader among the four left
/// takes office in a later term with a higher fencing token; a write
/// fenced by the old token is refused once the new one is admitted, and
/// the two tenures do not overlap.
#[tokio::test(start_paused = true)]
async fn a_leader_election_survives_the_leaders_crash() {
    let names = ["m1", "m2", "m3", "m4", "m5"];
    let agents = AgentRegistry::start(AgentRegistryOptions::default())
        .await
        .unwrap();
    let directory: Arc<dyn AgentDirectory> = Arc::new(agents.clone());
    let coordinator = Arc::new(Coordinator::new(directory.clone(), Clock::tokio()));
    let config = ElectionConfig {
        participants: ids(&names),
        lease: Duration::from_secs(2),
        election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
        rpc_timeout: Duration::from_millis(100),
        seed: 7,
    };
    let election = Election::observe(coordinator, config.clone()).unwrap();
    for id in names {
        let args = MemberArgs {
            election: Some(ElectionArgs {
                id: id.into(),
                config: config.clone(),
                peers: directory.clone(),
                reporter: election.reporter(),
            }),
            ..MemberArgs::default()
        };
        let member =
            AgentConfig::new::<Member>("member", args).with_restart(RestartType::Temporary);
        agents.register_agent(id, member).unwrap();
        agents.start_agent(id).await.unwrap();
    }
    let first = tokio::time::timeout(WAIT, election.wait_for_leader())
        .await
        .expect("a first leader");
    assert!(election.admit(first.token));

    let mut changes = election.watch();
    agents
        .agent_ref::<Member>(first.leader.as_str())
        .unwrap()
        .tell(Crash)
        .await
        .unwrap();
    let second = tokio::time::timeout(WAIT, async {
        loop {
            changes.changed().await.expect("the election runs");
            let current = changes.borrow_and_update().clone();
            if let Some(leader) = current
                && leader.leader != first.leader
            {
                return leader;
            }
        }
    })
    .await
    .expect("a new leader after the crash");

    assert_ne!(
        agents.status(first.leader.as_str()),
        Some(AgentStatus::Running)
    );
    assert!(second.term > first.term);
    assert!(second.token > first.token);
    assert!(election.admit(second.token));
    assert!(
        !election.admit(first.token),
        "the deposed leader is fenced off"
    );
    let history = election.history();
    let tenure = |term| history.iter().find(|t| t.term == term).unwrap();
    assert!(tenure(first.term).until <= tenure(second.term).from);
    drop(election);
    agents.stop().await;
}
