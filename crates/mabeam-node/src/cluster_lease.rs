//! The node's lease in the shared store: what keeps a node that is cut
//! off from running its agents while survivors start them.
//!
//! # Why a lease table beside the gossip
//!
//! Gossip (chitchat) tells who answers; it cannot tell a node that *it*
//! is the one cut off, and a node cut from PostgreSQL alone still gossips
//! fine. Orleans answers this with a membership table in its shared
//! store; we keep one too, for the one decision that must be safe: who may
//! run an agent. Each node incarnation (node, generation) holds a row in
//! `node_leases` (foundation-services' `NodeLease`) that it renews every
//! `cluster.lease_renew_ms` (0.5 s); the row expires `cluster.lease_ms`
//! (2 s) after the server's `now()` of its last renewal. Expiries are the
//! database's clock only: no two machines' clocks are ever compared.
//!
//! - **The holder** (`hold`) stops its agents (the agents' runtime is
//!   shut down: a kill, no checkpoint: its writes are fenced anyway) when
//!   a renewal finds its row marked dead, or when no renewal has
//!   succeeded by its local deadline: the send time of its last renewal
//!   that succeeded + lease − `cluster.lease_margin_ms` (0.5 s). That
//!   send time precedes the server's `now()` of the renewal, so the
//!   deadline falls before the row's expiry by at least the margin (which
//!   absorbs timer lateness and clock rate skew). The node then leaves and
//!   starts again as a new generation ([`run`](crate::run)).
//! - **A survivor** (`await_lease_end`) that sees a member `down`
//!   records its suspicion in the store (`node_suspicions`); once more
//!   than half of the members whose leases run suspect it (Orleans' votes
//!   for a death declaration), it marks the member's row dead (its
//!   renewals are refused from then on, so its expiry stops moving) and
//!   waits until the row has expired by the server's clock before taking
//!   the claims. The votes keep one node's view from killing anyone: a
//!   node cut from the others (but not from the store) cannot declare the
//!   majority dead, and a member flapping in one view stays up.
//! - **Members dead before any survivor saw them** (`scan_expired`): at
//!   start and every lease length, a node that sees a majority of the
//!   leased members live takes over the claims whose holder's lease has
//!   expired and who is not live, each by the member it hashes to.
//! - **A node restarted on the far side of a partition** does not claim
//!   its older generation's agents back when the others declared that
//!   generation dead (its recovery's claim skips them): they take them.

use std::{sync::Arc, time::Duration};

use mabeam_foundation_services::{
    FencedAgentStore, NodeLease, PostgresAgentStore, Renewal, cluster::ClusterMembership,
};
use mabeam_supervision_core::cluster::{Member, MemberState, Membership};
use tokio::{sync::watch, task::JoinHandle, time::Instant};

use crate::NodeError;

/// The lease's timings (`[cluster]` `lease_ms`, `lease_renew_ms`,
/// `lease_margin_ms`). Defaults: a 2 s lease renewed every 0.5 s, agents
/// stopped 0.5 s before it can expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimings {
    /// How long a renewal keeps the lease, from the server's `now()`.
    pub length: Duration,
    /// How often it is renewed.
    pub renew: Duration,
    /// How long before the lease can expire the holder stops its agents
    /// when it could not renew.
    pub margin: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            length: Duration::from_millis(2000),
            renew: Duration::from_millis(500),
            margin: Duration::from_millis(500),
        }
    }
}

impl LeaseTimings {
    /// Whether the timings can hold a lease: a renewal must come before
    /// the holder's deadline (renew + margin < length).
    pub fn check(&self) -> Result<(), String> {
        if self.renew.is_zero() || self.margin.is_zero() {
            return Err("cluster.lease_renew_ms and lease_margin_ms must be at least 1".into());
        }
        if self.renew + self.margin >= self.length {
            return Err(format!(
                "cluster.lease_renew_ms ({}) + lease_margin_ms ({}) must be below lease_ms ({})",
                self.renew.as_millis(),
                self.margin.as_millis(),
                self.length.as_millis()
            ));
        }
        Ok(())
    }
}

/// Why a node lost its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLost {
    /// Another member marked its row dead.
    Dead,
    /// No renewal succeeded before its deadline (the store unreachable).
    Expired,
}

impl std::fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaseLost::Dead => "another member declared this one dead",
            LeaseLost::Expired => "the lease could not be renewed in time",
        })
    }
}

/// Takes the lease of (`node`, `generation`) (its first renewal, bounded
/// by the lease's length): a node that cannot does not start. Answers the
/// lease and the send time of that renewal.
pub(crate) async fn acquire(
    store: &PostgresAgentStore,
    node: &str,
    generation: u64,
    timings: LeaseTimings,
) -> Result<(NodeLease, Instant), NodeError> {
    let mut lease = store.lease(node, generation, timings.length);
    let sent = Instant::now();
    match tokio::time::timeout(timings.length, lease.renew()).await {
        Ok(Ok(Renewal::Renewed)) => Ok((lease, sent)),
        Ok(Ok(Renewal::Dead)) => Err(NodeError::Cluster(format!(
            "the lease of {node} (generation {generation}) is marked dead"
        ))),
        Ok(Err(error)) => Err(NodeError::Cluster(format!("no lease taken: {error}"))),
        Err(_) => Err(NodeError::Cluster(format!(
            "no lease taken: the store did not answer within {:?}",
            timings.length
        ))),
    }
}

/// The task renewing a node's lease, and what it found once lost.
#[derive(Debug)]
pub(crate) struct LeaseHolder {
    task: JoinHandle<()>,
    lost: watch::Receiver<Option<LeaseLost>>,
}

impl LeaseHolder {
    /// Resolves once the lease is lost (the agents are stopped by then).
    pub(crate) async fn lost(&self) -> LeaseLost {
        let mut lost = self.lost.clone();
        match lost.wait_for(Option::is_some).await {
            Ok(why) => why.unwrap_or(LeaseLost::Expired),
            // The task ended without losing it (stopped): never.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops renewing (the node stops).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

/// Renews `lease` (taken at `taken`) every `timings.renew`, and on loss
/// calls `kill` (which stops every agent of the node at once) before it
/// says so. See the [module docs](self).
pub(crate) fn hold(
    mut lease: NodeLease,
    taken: Instant,
    timings: LeaseTimings,
    kill: Box<dyn FnOnce() + Send>,
) -> LeaseHolder {
    let (report, lost) = watch::channel(None);
    let task = tokio::spawn(async move {
        let mut deadline = taken + timings.length - timings.margin;
        let mut next = taken + timings.renew;
        let why = loop {
            tokio::time::sleep_until(next.min(deadline)).await;
            if Instant::now() >= deadline {
                break LeaseLost::Expired;
            }
            let sent = Instant::now();
            match tokio::time::timeout_at(deadline, lease.renew()).await {
                Ok(Ok(Renewal::Renewed)) => {
                    deadline = sent + timings.length - timings.margin;
                    next = sent + timings.renew;
                }
                Ok(Ok(Renewal::Dead)) => break LeaseLost::Dead,
                Ok(Err(error)) => {
                    tracing::warn!(%error, "lease: renewal failed; retrying");
                    // Soon again, while the deadline allows.
                    next = Instant::now() + timings.renew / 5;
                }
                Err(_) => break LeaseLost::Expired,
            }
        };
        kill();
        let (node, generation) = lease.member();
        tracing::error!(%node, generation, reason = %why, "lease lost: every agent of this node stopped");
        let _ = report.send(Some(why));
    });
    LeaseHolder { task, lost }
}

/// Whether this node may take over `dead`'s claims now, waiting as long
/// as its lease still runs. This node records its suspicion of `dead` in
/// the store, and `dead` is declared dead (its lease marked, renewed no
/// more) only once more than half of the members whose leases run
/// suspect it, within twice the lease's length; `false` if that does not
/// come within that time, if `dead` is seen live again meanwhile, or if
/// the store cannot be reached (the periodic scan takes its claims over
/// once its lease expires).
pub(crate) async fn await_lease_end(
    store: &PostgresAgentStore,
    membership: &ClusterMembership,
    dead: &Member,
    timings: LeaseTimings,
) -> bool {
    let me = membership.local();
    let window = timings.length * 2;
    let started = Instant::now();
    loop {
        let (votes, voters) = match store
            .suspect(&dead.node, dead.generation, &me.node, me.generation, window)
            .await
        {
            Ok(count) => count,
            Err(error) => {
                tracing::warn!(dead = %dead.node, %error, "failover: the suspicion cannot be recorded");
                return false;
            }
        };
        if votes * 2 > voters {
            break;
        }
        let back = membership.members().iter().any(|m| {
            m.node == dead.node && m.generation == dead.generation && m.state == MemberState::Up
        });
        if back || started.elapsed() > window {
            tracing::warn!(
                dead = %dead.node,
                votes,
                voters,
                back,
                "failover: no majority suspects it; not declaring it dead"
            );
            return false;
        }
        tokio::time::sleep(timings.renew / 5).await;
    }
    let mut remaining = match store.mark_dead(&dead.node, dead.generation).await {
        Ok(Some(remaining)) => remaining,
        // It never held a lease (a build before leases): nothing to wait.
        Ok(None) => return true,
        Err(error) => {
            tracing::warn!(dead = %dead.node, %error, "failover: its lease cannot be marked dead");
            return false;
        }
    };
    loop {
        // Its expiry no longer moves: wait it out, then check by the
        // server's clock.
        tokio::time::sleep(remaining + Duration::from_millis(5)).await;
        match store.lease_expired(&dead.node, dead.generation).await {
            Ok(true) => return true,
            Ok(false) => remaining = Duration::from_millis(20),
            Err(error) => {
                tracing::warn!(dead = %dead.node, %error, "failover: its lease cannot be read");
                return false;
            }
        }
    }
}

/// At start and every `every`: takes over this node's share of the
/// claims held by members whose leases have expired and who are not live
/// (members dead before any survivor saw them go).
pub(crate) fn scan_expired(
    membership: Arc<ClusterMembership>,
    store: FencedAgentStore,
    system: mabeam::System,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let holders = match store.store().expired_holders().await {
                Ok(holders) => holders,
                Err(error) => {
                    tracing::debug!(%error, "lease scan: the store cannot be read");
                    continue;
                }
            };
            let me = membership.local();
            if me.state != MemberState::Up || holders.is_empty() {
                continue;
            }
            let live = membership.live();
            // Only a node that sees a majority of the leased members live
            // takes anything: one on the far side of a partition must not
            // pull agents there.
            let voters = match store.store().leased_members().await {
                Ok(voters) => voters,
                Err(_) => continue,
            };
            let seen = voters
                .iter()
                .filter(|(n, g)| {
                    (me.node == *n && me.generation == *g)
                        || live.iter().any(|m| m.node == *n && m.generation == *g)
                })
                .count();
            if seen * 2 <= voters.len() {
                tracing::debug!(seen, voters = voters.len(), "lease scan: not in a majority");
                continue;
            }
            for (node, generation) in holders {
                let is_live = (me.node == node && me.generation == generation)
                    || live
                        .iter()
                        .any(|m| m.node == node && m.generation == generation);
                if is_live {
                    continue;
                }
                let dead = Member {
                    node,
                    generation,
                    state: MemberState::Down,
                    addr: None,
                    tags: Vec::new(),
                };
                crate::cluster::take_over(&membership, &store, &system, &dead).await;
            }
        }
    })
}
