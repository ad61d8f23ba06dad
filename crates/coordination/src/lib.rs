//! MABEAM's Core and Coordination: universal variables shared by agents,
//! parameter optimisation across agents, and the protocols by which agents
//! decide together (votes, Byzantine agreement, leader election, barriers,
//! locks).
//!
//! Every answer comes from the agents themselves: the crate reaches them
//! through supervision-core's `AgentDirectory` contract (an envelope of a
//! protocol such as [`VOTE_PROTOCOL`], answered by the agent within a
//! deadline). A crashed or silent agent is "no answer" by its deadline,
//! never a vote. It depends on no other service crate; decisions are
//! recorded through an injected `EventSink` and reported through
//! `Telemetry`.
//!
//! - [`variables`]: the [`VariableSpace`] of typed, versioned variables
//!   with compare-and-set, a conflict policy each (last writer wins,
//!   consensus-gated, merge), broadcast to subscribers in version order,
//!   and orchestration variables bound to a kind of agents.
//! - [`optimize`]: random, grid and successive-halving search, evaluated
//!   by agents in parallel with retries, seeded.
//! - [`voting`]: proposals decided by majority, supermajority, unanimity,
//!   weights, ranked choice, approval or iterative consensus; the
//!   [`Coordinator`] runs them synchronously or as sessions and keeps
//!   every [`Decision`].
//! - [`byzantine`]: agreement among n >= 3f + 1 with equivocation caught.
//! - [`election`]: Raft's election rules with leases and fencing tokens,
//!   run by the candidates themselves ([`ElectionMember`]); the
//!   [`Election`] observes and reports.
//! - [`sync`]: a [`Barrier`] that a death breaks and a [`LeaseLock`] that a
//!   death frees.
//!
//! # Example
//!
//! A majority vote among agents (here scripted ones; any `AgentDirectory`,
//! such as agent-supervisor's registry, will do):
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use mabeam_coordination::{Coordinator, Proposal, Rule};
//! use serde_json::json;
//! use mabeam_supervision_core::{AgentSelection, Clock, testkit::{Answer, ScriptedDirectory}};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let agents = ScriptedDirectory::new();
//! agents.add("a", "voter", |_| Answer::Reply(json!({"vote": "yes"})));
//! agents.add("b", "voter", |_| Answer::Reply(json!({"vote": "yes"})));
//! agents.add("c", "voter", |_| Answer::Reply(json!({"vote": "no"})));
//! let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
//! let proposal = Proposal::new(
//!     "raise", AgentSelection::Kind("voter".into()), Rule::Majority, Duration::from_secs(1),
//! );
//! assert!(coordinator.vote(proposal).await?.passed());
//! # Ok(()) }
//! ```
//!
//! # Examples
//!
//! The package's `examples/` folder: `vote_and_election` (real agents vote,
//! then elect a leader by Raft's rules; the leader crashes and another is
//! elected), run with `cargo run -p mabeam-coordination --example vote_and_election`.

pub mod byzantine;
mod coordinator;
pub mod election;
mod error;
mod feed;
pub mod optimize;
pub mod sync;
pub mod variables;
pub mod voting;

pub use byzantine::{Agreement, ByzantineRound, CONFIRM_PROTOCOL, PROPOSE_PROTOCOL};
pub use coordinator::{Coordinator, Retention, SessionId, SessionStatus};
pub use election::{
    Election, ElectionConfig, ElectionMember, ElectionReporter, HEARTBEAT_PROTOCOL, Leadership,
    MemberHandle, MemberMemory, MemberOptions, Persist, REQUEST_VOTE_PROTOCOL, Tenure,
};
pub use error::CoordinationError;
pub use optimize::{EVALUATE_PROTOCOL, Method, OptimizationResult, OptimizeSpec, Param, Trial};
pub use sync::{Barrier, LeaseLock, LockGrant};
pub use variables::{
    Applied, CHANGED_PROTOCOL, CONFIGURE_PROTOCOL, ConflictPolicy, MergeFn, Updated, ValueType,
    VariableSpace, VariableSpec, Versioned,
};
pub use voting::{Ballot, Decision, Outcome, Proposal, Rule, VOTE_PROTOCOL, tally};
