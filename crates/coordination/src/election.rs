//! Leader election among agents, by Raft's election rules, with leases and
//! fencing tokens.
//!
//! The agents vote: a candidate asks every participant for its vote in a
//! new term (protocol [`REQUEST_VOTE_PROTOCOL`], body `{"term",
//! "candidate"}`, answer `{"granted": bool}`), and each participant grants
//! at most one vote per term ([`RaftVoter`] implements the rule for an
//! agent to embed). A candidate with the votes of more than half of all
//! participants leads for the term. Candidates come forward after a
//! randomised election timeout drawn on the injectable clock (seeded, so a
//! run can be replayed): the participant whose timeout ends first
//! campaigns, and those within one vote timeout of it campaign in the same
//! term, so split votes happen and are retried with fresh timeouts, as in
//! Raft.
//!
//! **Leases.** A leader holds a lease measured from the start of its
//! campaign; it renews it at half-time with a heartbeat
//! ([`HEARTBEAT_PROTOCOL`], answer `{"ack": bool}`) acknowledged by a
//! majority, or lets it lapse. No election starts while a lease is valid
//! and its holder runs, so **two leaders never hold a valid lease at
//! once**. A leader's death is noticed from the directory's status
//! changes (not by polling): its lease ends at once and a new leader is
//! elected within one lease (the election timeouts and the vote timeout
//! must fit in the lease; [`ElectionConfig::validate`] checks).
//!
//! **Fencing tokens.** Each leadership carries a token, its term, which
//! increases with every term; a resource that remembers the highest token
//! it has seen ([`Election::admit`]) refuses a deposed leader's writes.

use std::{sync::Arc, time::Duration};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use supervision_core::{AgentId, AgentStatus, Envelope, MetaValue, ask_all};
use tokio::{
    sync::{broadcast::error::RecvError, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{CoordinationError, Coordinator};

/// The protocol of vote requests.
pub const REQUEST_VOTE_PROTOCOL: &str = "coordination.election.request_vote";
/// The protocol of a leader's heartbeats.
pub const HEARTBEAT_PROTOCOL: &str = "coordination.election.heartbeat";

/// How an election runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ElectionConfig {
    /// Who votes and may lead.
    pub participants: Vec<AgentId>,
    /// How long a leadership lasts unless renewed.
    pub lease: Duration,
    /// The range election timeouts are drawn from.
    pub election_timeout: (Duration, Duration),
    /// How long a vote request or heartbeat waits for answers.
    pub rpc_timeout: Duration,
    /// The seed of the timeouts.
    pub seed: u64,
}

impl ElectionConfig {
    /// Checks the participants and that an election fits in one lease.
    pub fn validate(&self) -> Result<(), CoordinationError> {
        let invalid = |why: &str| Err(CoordinationError::Invalid(format!("election: {why}")));
        let (min, max) = self.election_timeout;
        if self.participants.is_empty() {
            return invalid("no participants");
        }
        if min.is_zero() || min > max {
            return invalid("election_timeout must be a range above 0");
        }
        if self.rpc_timeout.is_zero() || max + self.rpc_timeout >= self.lease / 2 {
            return invalid(
                "the longest election timeout plus rpc_timeout must be under half the lease",
            );
        }
        Ok(())
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
    /// When it took office.
    pub from: Instant,
    /// When its lease ended (lapsed, or its death), or the lease's end
    /// while it still holds it.
    pub until: Instant,
}

/// The vote of one participant, by Raft's rules: at most one vote per
/// term, to the first candidate that asks in a term at least its own.
/// An agent keeps one and answers the election protocols with it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use coordination::{RaftVoter, REQUEST_VOTE_PROTOCOL};
/// use serde_json::json;
/// use supervision_core::Envelope;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut voter = RaftVoter::default();
/// let ask = |term: u64, who: &str| Envelope::new(REQUEST_VOTE_PROTOCOL, json!({"term": term, "candidate": who}), Duration::from_secs(1));
/// assert_eq!(voter.answer(&ask(1, "a")), Some(json!({"granted": true, "term": 1})));
/// assert_eq!(voter.answer(&ask(1, "b")), Some(json!({"granted": false, "term": 1}))); // one vote per term
/// assert_eq!(voter.answer(&ask(2, "b")), Some(json!({"granted": true, "term": 2})));
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftVoter {
    term: u64,
    voted_for: Option<String>,
}

impl RaftVoter {
    /// The answer to an election envelope, or `None` if it is not one.
    pub fn answer(&mut self, envelope: &Envelope) -> Option<Value> {
        let term = envelope.body["term"].as_u64()?;
        match &*envelope.protocol {
            REQUEST_VOTE_PROTOCOL => {
                let candidate = envelope.body["candidate"].as_str()?.to_owned();
                if term > self.term {
                    self.term = term;
                    self.voted_for = None;
                }
                let granted =
                    term == self.term && self.voted_for.as_ref().is_none_or(|v| *v == candidate);
                if granted {
                    self.voted_for = Some(candidate);
                }
                Some(json!({"granted": granted, "term": self.term}))
            }
            HEARTBEAT_PROTOCOL => {
                if term > self.term {
                    self.term = term;
                    self.voted_for = None;
                }
                Some(json!({"ack": term >= self.term, "term": self.term}))
            }
            _ => None,
        }
    }
}

struct State {
    term: u64,
    leader: Option<Leadership>,
    history: Vec<Tenure>,
    highest_admitted: u64,
}

struct Inner {
    coordinator: Arc<Coordinator>,
    config: ElectionConfig,
    state: Mutex<State>,
    changes: watch::Sender<Option<Leadership>>,
}

/// A running election: see the [module docs](self). Stops when dropped
/// or [`stop`](Self::stop)ped.
pub struct Election {
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

impl Drop for Election {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Election {
    /// Starts electing among `config.participants` through `coordinator`.
    pub fn start(
        coordinator: Arc<Coordinator>,
        config: ElectionConfig,
    ) -> Result<Self, CoordinationError> {
        config.validate()?;
        let inner = Arc::new(Inner {
            coordinator,
            config,
            state: Mutex::new(State {
                term: 0,
                leader: None,
                history: Vec::new(),
                highest_admitted: 0,
            }),
            changes: watch::channel(None).0,
        });
        let task = tokio::spawn(drive(inner.clone()));
        Ok(Election { inner, task })
    }

    /// The leadership with a valid lease now, if any.
    pub fn leader(&self) -> Option<Leadership> {
        let now = self.inner.coordinator.clock().now();
        self.inner
            .state
            .lock()
            .leader
            .clone()
            .filter(|l| l.lease_until > now)
    }

    /// Changes of leadership: `Some` when a leader takes office (or renews),
    /// `None` when the office falls vacant.
    pub fn watch(&self) -> watch::Receiver<Option<Leadership>> {
        self.inner.changes.subscribe()
    }

    /// Waits until a leader holds a valid lease, and returns it.
    pub async fn wait_for_leader(&self) -> Leadership {
        let mut changes = self.watch();
        loop {
            if let Some(leader) = self.leader() {
                return leader;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Every leadership so far, oldest first.
    pub fn history(&self) -> Vec<Tenure> {
        self.inner.state.lock().history.clone()
    }

    /// Admits a write fenced by `token` at a resource this election
    /// guards: `true` if no higher token was admitted before (then this
    /// one becomes the highest), `false` for a deposed leader's token.
    pub fn admit(&self, token: u64) -> bool {
        let mut state = self.inner.state.lock();
        if token >= state.highest_admitted && token > 0 {
            state.highest_admitted = token;
            true
        } else {
            false
        }
    }

    /// Stops the election (the current lease, if any, runs out by itself).
    pub fn stop(self) {}
}

fn running(inner: &Inner, agent: &AgentId) -> bool {
    inner.coordinator.directory().status(agent) == Some(AgentStatus::Running)
}

/// Ends the current leadership at `at` (lapsed or dead) and says so.
fn vacate(inner: &Inner, at: Instant, why: &str) {
    let mut state = inner.state.lock();
    if let Some(leader) = state.leader.take() {
        if let Some(tenure) = state.history.last_mut() {
            tenure.until = tenure.until.min(at);
        }
        drop(state);
        inner.changes.send_replace(None);
        inner.coordinator.telemetry().emit(
            &["coordination", "election", "vacant"],
            &[("term", leader.term as f64)],
            &[
                ("leader", MetaValue::Str(leader.leader.as_str())),
                ("why", MetaValue::Str(why)),
            ],
        );
    }
}

async fn drive(inner: Arc<Inner>) {
    let clock = inner.coordinator.clock().clone();
    let directory = inner.coordinator.directory().clone();
    let mut statuses = directory.subscribe();
    let mut rng = StdRng::seed_from_u64(inner.config.seed);
    let n = inner.config.participants.len();
    let (min, max) = inner.config.election_timeout;
    loop {
        let leader = inner.state.lock().leader.clone();
        match leader {
            Some(leadership) => {
                let now = clock.now();
                if leadership.lease_until <= now || !running(&inner, &leadership.leader) {
                    vacate(&inner, now.min(leadership.lease_until), "lease ended");
                    continue;
                }
                let renew_at = leadership.lease_until - inner.config.lease / 2;
                tokio::select! {
                    () = clock.sleep_until(renew_at.max(now)) => {
                        let started = clock.now();
                        let envelope = Envelope::new(
                            HEARTBEAT_PROTOCOL,
                            json!({"term": leadership.term, "leader": leadership.leader}),
                            inner.config.rpc_timeout,
                        );
                        let replies = ask_all(directory.as_ref(), &inner.config.participants, &envelope, &clock).await;
                        let acks = replies
                            .iter()
                            .filter(|r| r.answer.as_ref().is_ok_and(|a| a["ack"] == json!(true)))
                            .count();
                        let renewed = {
                            let mut state = inner.state.lock();
                            let still = state.leader.as_ref().is_some_and(|l| l.term == leadership.term);
                            if still && 2 * acks > n && running(&inner, &leadership.leader) && clock.now() < leadership.lease_until {
                                let until = started + inner.config.lease;
                                if let Some(l) = state.leader.as_mut() {
                                    l.lease_until = until;
                                }
                                if let Some(tenure) = state.history.last_mut() {
                                    tenure.until = until;
                                }
                                state.leader.clone()
                            } else {
                                None
                            }
                        };
                        match renewed {
                            Some(renewed) => {
                                inner.changes.send_replace(Some(renewed));
                            }
                            // Not renewed: the lease runs out at its time.
                            None => clock.sleep_until(leadership.lease_until).await,
                        }
                    }
                    change = statuses.recv() => match change {
                        Ok(change) if change.id == leadership.leader && change.to != AgentStatus::Running => {
                            vacate(&inner, clock.now(), "leader stopped");
                        }
                        Err(RecvError::Closed) => return,
                        // Lagged: the loop re-checks the leader's status.
                        _ => {}
                    }
                }
            }
            None => {
                let live: Vec<&AgentId> = inner
                    .config
                    .participants
                    .iter()
                    .filter(|p| running(&inner, p))
                    .collect();
                if 2 * live.len() <= n {
                    // No majority can vote: wait for a status change.
                    if let Err(RecvError::Closed) = statuses.recv().await {
                        return;
                    }
                    continue;
                }
                let mut timeouts: Vec<(Duration, &AgentId)> = live
                    .iter()
                    .map(|p| (rng.random_range(min..=max), *p))
                    .collect();
                timeouts.sort();
                let first = timeouts[0].0;
                clock.sleep(first).await;
                let campaign_start = clock.now();
                // Everyone timing out within one vote timeout campaigns in
                // the same term.
                let candidates: Vec<AgentId> = timeouts
                    .iter()
                    .take_while(|(t, _)| *t <= first + inner.config.rpc_timeout)
                    .map(|(_, p)| (*p).clone())
                    .collect();
                let term = {
                    let mut state = inner.state.lock();
                    state.term += 1;
                    state.term
                };
                let campaigns = candidates.iter().map(|candidate| {
                    let envelope = Envelope::new(
                        REQUEST_VOTE_PROTOCOL,
                        json!({"term": term, "candidate": candidate}),
                        inner.config.rpc_timeout,
                    );
                    let directory = directory.clone();
                    let clock = clock.clone();
                    let participants = inner.config.participants.clone();
                    async move {
                        let replies =
                            ask_all(directory.as_ref(), &participants, &envelope, &clock).await;
                        let granted = replies
                            .iter()
                            .filter(|r| {
                                r.answer.as_ref().is_ok_and(|a| a["granted"] == json!(true))
                            })
                            .count();
                        (candidate.clone(), granted)
                    }
                });
                let results = futures::future::join_all(campaigns).await;
                // Voters grant one vote per term, so at most one candidate
                // can have a majority; take the first if several claim it.
                let winner = results.into_iter().find(|(_, granted)| 2 * granted > n);
                let Some((leader, votes)) = winner else {
                    inner.coordinator.telemetry().emit(
                        &["coordination", "election", "split"],
                        &[
                            ("term", term as f64),
                            ("candidates", candidates.len() as f64),
                        ],
                        &[],
                    );
                    continue;
                };
                let lease_until = campaign_start + inner.config.lease;
                if !running(&inner, &leader) || clock.now() >= lease_until {
                    continue;
                }
                let leadership = Leadership {
                    leader: leader.clone(),
                    term,
                    token: term,
                    lease_until,
                };
                {
                    let mut state = inner.state.lock();
                    state.leader = Some(leadership.clone());
                    state.history.push(Tenure {
                        leader: leader.clone(),
                        term,
                        from: clock.now(),
                        until: lease_until,
                    });
                }
                inner.changes.send_replace(Some(leadership));
                inner.coordinator.telemetry().emit(
                    &["coordination", "election", "elected"],
                    &[("term", term as f64), ("votes", votes as f64)],
                    &[("leader", MetaValue::Str(leader.as_str()))],
                );
                inner
                    .coordinator
                    .record(
                        "coordination.election",
                        "elected",
                        json!({"leader": leader, "term": term, "votes": votes}),
                    )
                    .await;
            }
        }
    }
}
