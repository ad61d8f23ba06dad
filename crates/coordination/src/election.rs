//! Leader election among agents, by Raft's election rules, with leases and
//! fencing tokens: the candidates campaign themselves; the coordinator only
//! observes and reports.
//!
//! **Members.** Each agent that may lead embeds an [`ElectionMember`]: its
//! own randomised election timer (on the injectable `Clock`, seeded), its
//! current term and its vote, as Raft keeps them. When its timer runs out
//! it becomes a candidate: it starts a new term, votes for itself and asks
//! every peer for its vote through the `AgentDirectory`
//! ([`REQUEST_VOTE_PROTOCOL`], body `{"term", "candidate"}`, answer
//! `{"granted", "term"}`). A member grants at most one vote per term, to
//! the first candidate that asks in a term at least its own. A candidate
//! with the votes of more than half of all participants (itself included,
//! answers within `rpc_timeout` only) leads for the term; otherwise it
//! waits a fresh random timeout and tries again in a later term, so split
//! votes resolve as in Raft. The agent hands every election envelope to
//! [`ElectionMember::answer`].
//!
//! **Leases.** A leader heartbeats every quarter of a lease
//! ([`HEARTBEAT_PROTOCOL`], body `{"term", "leader"}`, answer `{"ack",
//! "term"}`). A member that acknowledges a heartbeat promises the leader
//! not to vote for anyone else for one lease from then; a leader whose
//! round started at `s` was acknowledged by a majority holds its lease
//! until `s + lease`. Any majority that elects another leader shares a
//! member with that majority, and that member votes only once its promise
//! has run out: **two leaders never hold a valid lease at once** (on one
//! clock: leases assume the members' clocks advance at the same rate, as
//! they do on one node). A leader whose lease lapses without a majority's
//! acknowledgement steps down. A leader that dies is replaced within its
//! lease plus one election timeout (`election_timeout.1`) plus two
//! `rpc_timeout`s (a campaign and the first heartbeat).
//!
//! **Fencing tokens.** Each leadership carries a token, its term, which
//! increases with every term; a resource that remembers the highest token
//! it has seen ([`Election::admit`]) refuses a deposed leader's writes.
//!
//! **The observer.** [`Election`] takes no part: members report to it
//! through an [`ElectionReporter`] (taking office, renewing, stepping
//! down), and it watches the participants' statuses, so it reports the
//! current leader, its changes and a bounded history of tenures.
//!
//! **What is trusted.** Members follow the protocol (crash faults only:
//! a member that lies can break safety, as in Raft); the directory
//! delivers envelopes unaltered; a member's term, vote and promise
//! survive its restarts when they are persisted as they change
//! ([`MemberOptions::persist`]) or carried in the agent's checkpoint
//! ([`ElectionMember::memory`]) and handed back
//! ([`MemberOptions::memory`]): a member started afresh could vote twice
//! in one term, or against a lease it promised.

mod member;
mod observer;

use std::time::Duration;

use mabeam_supervision_core::AgentId;
use tokio::time::Instant;

use crate::CoordinationError;

pub use member::{ElectionMember, MemberHandle, MemberMemory, MemberOptions, Persist};
pub use observer::{Election, ElectionReporter};

/// The protocol of vote requests.
pub const REQUEST_VOTE_PROTOCOL: &str = "coordination.election.request_vote";
/// The protocol of a leader's heartbeats.
pub const HEARTBEAT_PROTOCOL: &str = "coordination.election.heartbeat";

/// How an election runs: shared by its members and its observer.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectionConfig {
    /// Who votes and may lead.
    pub participants: Vec<AgentId>,
    /// How long a leadership lasts unless renewed (heartbeats every
    /// quarter of it).
    pub lease: Duration,
    /// The range election timeouts are drawn from.
    pub election_timeout: (Duration, Duration),
    /// How long a vote request or heartbeat waits for answers.
    pub rpc_timeout: Duration,
    /// The seed of the timeouts (each member mixes in its id).
    pub seed: u64,
}

impl ElectionConfig {
    /// Checks the participants and the timings: a heartbeat round fits
    /// between two heartbeats, and a campaign ends before the shortest
    /// election timeout.
    pub fn validate(&self) -> Result<(), CoordinationError> {
        let invalid = |why: &str| Err(CoordinationError::Invalid(format!("election: {why}")));
        let (min, max) = self.election_timeout;
        if self.participants.is_empty() {
            return invalid("no participants");
        }
        if min.is_zero() || min > max {
            return invalid("election_timeout must be a range above 0");
        }
        if self.rpc_timeout.is_zero() || self.rpc_timeout >= self.heartbeat() {
            return invalid("rpc_timeout must be above 0 and under a quarter of the lease");
        }
        if self.rpc_timeout >= min {
            return invalid("rpc_timeout must be under the shortest election timeout");
        }
        Ok(())
    }

    /// The interval between a leader's heartbeats: a quarter of the lease.
    pub fn heartbeat(&self) -> Duration {
        self.lease / 4
    }

    /// Whether `votes` of the participants are a majority (more than half:
    /// two of four are not).
    pub fn is_majority(&self, votes: usize) -> bool {
        2 * votes > self.participants.len()
    }
}

/// A leadership: who leads, for which term, with which fencing token,
/// until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The leader.
    pub leader: AgentId,
    /// Its term.
    pub term: u64,
    /// Its fencing token (increases with each term).
    pub token: u64,
    /// When its lease runs out unless renewed.
    pub lease_until: Instant,
}

/// A past or present leadership, for audits: `[from, until)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenure {
    /// The leader.
    pub leader: AgentId,
    /// Its term.
    pub term: u64,
    /// When it took office (as reported).
    pub from: Instant,
    /// When its lease ended (lapsed, stepped down, or its death), or the
    /// lease's end while it still holds it.
    pub until: Instant,
}
