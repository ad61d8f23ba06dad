//! The cluster's contracts: who is a member ([`Membership`]), which node
//! should own an agent ([`rendezvous_owner`]), who owns it now
//! ([`Ownership`], a fenced compare-and-set record) and how a call reaches
//! an agent on another node ([`RemoteDelivery`]).
//!
//! foundation-services implements membership and transport, the stores
//! implement ownership (in memory here: [`MemoryOwnership`]),
//! agent-supervisor consumes ownership and delivery, and the umbrella
//! wires them: no service crate names another.
//!
//! # Terms
//!
//! - A **member** is one incarnation of a node: its name and its
//!   **generation** (a number that grows with each start of the node), so
//!   a node that restarts is a new member, never mistaken for the old one.
//! - A member's [`MemberState`] goes `joining` -> `up` -> `leaving` ->
//!   `down`; `down` is final for that generation.
//! - The **owner** of an agent is the one member allowed to run it. A
//!   [`Claim`] records it with an **epoch** that grows with every change
//!   of owner: the fencing token that lets a store refuse writes from a
//!   member that lost the agent.

use std::{collections::HashMap, fmt, net::SocketAddr, sync::Arc};

use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::broadcast;

use crate::{AgentId, DirectoryError, Envelope, ErrorCode};

/// Where a member is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Announced, not yet taking agents.
    Joining,
    /// Taking agents.
    Up,
    /// Handing its agents over before it stops.
    Leaving,
    /// Stopped or unreachable: final for this generation.
    Down,
}

impl MemberState {
    /// `joining`, `up`, `leaving` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Joining => "joining",
            MemberState::Up => "up",
            MemberState::Leaving => "leaving",
            MemberState::Down => "down",
        }
    }

    /// The state named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "joining" => MemberState::Joining,
            "up" => MemberState::Up,
            "leaving" => MemberState::Leaving,
            "down" => MemberState::Down,
            _ => return None,
        })
    }
}

impl fmt::Display for MemberState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One incarnation of a node, as the membership sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name, unique in the cluster.
    pub node: Arc<str>,
    /// Its incarnation: grows with each start.
    pub generation: u64,
    /// Where it is in its life.
    pub state: MemberState,
    /// The address of its node connection (where agents' calls go), once
    /// it announced one.
    pub addr: Option<SocketAddr>,
    /// Free-form facts it announces (its HTTP address, say).
    pub tags: Vec<(String, String)>,
}

impl Member {
    /// The tag `key`, if announced.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A member changed state (or appeared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipEvent {
    /// The member as it is now.
    pub member: Member,
    /// The state it left (`None` when it first appeared).
    pub previous: Option<MemberState>,
}

/// The receiving end of a membership subscription; a receiver that falls
/// behind gets `Lagged` with the count it missed, never a silent gap.
pub type MembershipEvents = broadcast::Receiver<MembershipEvent>;

/// Who is in the cluster: implemented on a membership engine
/// (foundation-services), read by the agent layer and the node.
pub trait Membership: Send + Sync + fmt::Debug {
    /// This node's own member.
    fn local(&self) -> Member;
    /// Every member known, this one included, `down` ones while
    /// remembered, sorted by name.
    fn members(&self) -> Vec<Member>;
    /// Every change from now on, in order.
    fn subscribe(&self) -> MembershipEvents;
    /// The members that take agents now (`up`), sorted by name.
    fn live(&self) -> Vec<Member> {
        self.members()
            .into_iter()
            .filter(|m| m.state == MemberState::Up)
            .collect()
    }
}

/// The node that should own `agent` among `nodes`, by rendezvous
/// (highest random weight) hashing: each node scores
/// `hash(node, agent)`, the highest wins. When a node leaves, only its own
/// agents move, each to the node that scored next; no table is shared.
/// `None` if `nodes` is empty.
///
/// The hash is FNV-1a (64 bits) finished by a mixer: fixed here and
/// forever, since every node of a cluster must compute the same owner.
///
/// ```
/// use mabeam_supervision_core::{AgentId, cluster::rendezvous_owner};
///
/// let nodes = ["a@h", "b@h", "c@h"];
/// let owner = rendezvous_owner(&AgentId::new("x"), nodes).unwrap();
/// let without: Vec<&str> = nodes.into_iter().filter(|n| *n != owner).collect();
/// // Removing another node never moves the agent.
/// for gone in &without {
///     let left: Vec<&str> = nodes.into_iter().filter(|n| n != gone).collect();
///     assert_eq!(rendezvous_owner(&AgentId::new("x"), left), Some(owner));
/// }
/// ```
pub fn rendezvous_owner<'a>(
    agent: &AgentId,
    nodes: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    nodes
        .into_iter()
        .map(|node| (score(node, agent.as_str()), node))
        // Ties (astronomically rare) go to the name that sorts last.
        .max()
        .map(|(_, node)| node)
}

fn score(node: &str, agent: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    // Length-prefixed parts: ("ab", "c") and ("a", "bc") differ.
    for part in [node.as_bytes(), agent.as_bytes()] {
        for byte in (part.len() as u64).to_le_bytes().iter().chain(part) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    // splitmix64's finaliser: FNV's low bits alone mix poorly.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Who owns an agent: a member (node and generation) and the epoch of the
/// record, which grows with every change of owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The agent.
    pub agent: AgentId,
    /// The owning node.
    pub node: Arc<str>,
    /// The owning node's generation.
    pub generation: u64,
    /// The fencing token: grows with each change of owner.
    pub epoch: u64,
}

/// What an [`Ownership`] call can answer instead of its result.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OwnershipError {
    /// Another member owns the agent (its claim is returned, to take it
    /// over once that member is down).
    #[error("agent {} is owned by {} (generation {})", .owner.agent, .owner.node, .owner.generation)]
    Conflict {
        /// The current claim.
        owner: Claim,
    },
    /// An older generation of a node that a newer one replaced.
    #[error("generation {generation} of {node} is older than the owner's")]
    Stale {
        /// The node.
        node: Arc<str>,
        /// The stale generation.
        generation: u64,
    },
    /// The caller does not own the agent (a release by a non-owner).
    #[error("{node} does not own agent {agent}")]
    NotOwner {
        /// The agent.
        agent: AgentId,
        /// The caller.
        node: Arc<str>,
    },
    /// The store that keeps the records cannot be reached.
    #[error("the ownership store is unavailable: {0}")]
    Unavailable(String),
}

impl ErrorCode for OwnershipError {
    fn code(&self) -> u32 {
        match self {
            OwnershipError::Conflict { .. } => 1801,
            OwnershipError::Stale { .. } => 1802,
            OwnershipError::NotOwner { .. } => 1803,
            OwnershipError::Unavailable(_) => 1804,
        }
    }
}

/// The fenced record of who owns each agent, kept in a store every node
/// shares: at most one member owns an agent at a time.
///
/// [`claim`](Self::claim) is a compare-and-set. It grants the agent to
/// (`node`, `generation`) when no one owns it, when the same node's older
/// generation does (the node restarted), or when `replacing` is exactly
/// the current claim (taking over from a member seen down); a claim by
/// the current owner answers its claim unchanged. Anything else is a
/// [`Conflict`](OwnershipError::Conflict) carrying the current claim.
pub trait Ownership: Send + Sync + fmt::Debug {
    /// Claims `agent` for (`node`, `generation`); see the trait docs.
    fn claim(
        &self,
        agent: &AgentId,
        node: &str,
        generation: u64,
        replacing: Option<&Claim>,
    ) -> BoxFuture<'static, Result<Claim, OwnershipError>>;
    /// The current claim on `agent`, if any.
    fn owner(&self, agent: &AgentId) -> BoxFuture<'static, Result<Option<Claim>, OwnershipError>>;
    /// Gives `agent` up (a node leaving hands its agents over): only the
    /// owner (same node and generation) may.
    fn release(
        &self,
        agent: &AgentId,
        node: &str,
        generation: u64,
    ) -> BoxFuture<'static, Result<(), OwnershipError>>;
}

/// [`Ownership`] in memory: for tests and for nodes that share one
/// process. The stores shared by real nodes (SQLite, PostgreSQL) implement
/// the same contract.
#[derive(Debug, Clone, Default)]
pub struct MemoryOwnership {
    /// Every claim, and the last epoch of each agent ever claimed (a
    /// released agent's next claim still gets a higher epoch).
    claims: Arc<Mutex<HashMap<AgentId, Record>>>,
}

/// An agent's current claim, and the last epoch it was ever given.
type Record = (Option<Claim>, u64);

impl MemoryOwnership {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    fn claim_now(
        &self,
        agent: &AgentId,
        node: &str,
        generation: u64,
        replacing: Option<&Claim>,
    ) -> Result<Claim, OwnershipError> {
        let mut claims = self.claims.lock();
        let (current, epoch) = claims.entry(agent.clone()).or_insert((None, 0));
        if let Some(owner) = current.as_ref() {
            let same_node = &*owner.node == node;
            if same_node && owner.generation == generation {
                return Ok(owner.clone());
            }
            if same_node && generation < owner.generation {
                return Err(OwnershipError::Stale {
                    node: node.into(),
                    generation,
                });
            }
            let takeover = same_node || replacing == Some(owner);
            if !takeover {
                return Err(OwnershipError::Conflict {
                    owner: owner.clone(),
                });
            }
        }
        *epoch += 1;
        let claim = Claim {
            agent: agent.clone(),
            node: node.into(),
            generation,
            epoch: *epoch,
        };
        *current = Some(claim.clone());
        Ok(claim)
    }
}

impl Ownership for MemoryOwnership {
    fn claim(
        &self,
        agent: &AgentId,
        node: &str,
        generation: u64,
        replacing: Option<&Claim>,
    ) -> BoxFuture<'static, Result<Claim, OwnershipError>> {
        let result = self.claim_now(agent, node, generation, replacing);
        Box::pin(async move { result })
    }

    fn owner(&self, agent: &AgentId) -> BoxFuture<'static, Result<Option<Claim>, OwnershipError>> {
        let owner = self
            .claims
            .lock()
            .get(agent)
            .and_then(|(claim, _)| claim.clone());
        Box::pin(async move { Ok(owner) })
    }

    fn release(
        &self,
        agent: &AgentId,
        node: &str,
        generation: u64,
    ) -> BoxFuture<'static, Result<(), OwnershipError>> {
        let mut claims = self.claims.lock();
        let result = match claims.get_mut(agent) {
            Some((current @ Some(_), _))
                if current
                    .as_ref()
                    .is_some_and(|c| &*c.node == node && c.generation == generation) =>
            {
                *current = None;
                Ok(())
            }
            _ => Err(OwnershipError::NotOwner {
                agent: agent.clone(),
                node: node.into(),
            }),
        };
        Box::pin(async move { result })
    }
}

/// Carries agent calls to another node: the transport implements it
/// (foundation-services), the agent directory uses it for agents another
/// node owns. Each call keeps its envelope's deadline; a node that is not
/// reachable is [`NodeDown`](DirectoryError::NodeDown).
pub trait RemoteDelivery: Send + Sync + fmt::Debug {
    /// Asks `agent` on `node`; answers within the envelope's deadline.
    fn ask(
        &self,
        node: &str,
        agent: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>>;
    /// Tells `agent` on `node`; `Ok` once the owner accepted it.
    fn tell(
        &self,
        node: &str,
        agent: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<(), DirectoryError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_spreads_agents_and_moves_only_the_leavers() {
        let nodes = ["a@h", "b@h", "c@h"];
        let mut counts = HashMap::new();
        let mut moved = 0;
        for i in 0..3000 {
            let id = AgentId::new(format!("agent-{i}"));
            let owner = rendezvous_owner(&id, nodes).unwrap();
            *counts.entry(owner).or_insert(0) += 1;
            let after = rendezvous_owner(&id, ["a@h", "c@h"]).unwrap();
            if owner != "b@h" {
                assert_eq!(after, owner, "{id} moved though its owner stayed");
            } else {
                moved += 1;
            }
        }
        for node in nodes {
            let n = counts[node];
            assert!((800..1200).contains(&n), "{node} got {n} of 3000");
        }
        assert_eq!(moved, counts["b@h"]);
        assert_eq!(rendezvous_owner(&AgentId::new("x"), []), None);
    }
}
