//! The [`Coordinator`]: runs votes and Byzantine rounds among agents,
//! synchronously or as sessions, and keeps and records every decision.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentSelection, Clock, Envelope, Event, EventSink, MetaValue,
    Namespace, Registry, Telemetry, ask_all, events::COORDINATION_DROPPED,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    CoordinationError,
    voting::{Ballot, Decision, Outcome, Proposal, Rule, VOTE_PROTOCOL, tally},
};

/// The id of an asynchronous vote.
pub type SessionId = u64;

/// Where an asynchronous vote stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "decision")]
pub enum SessionStatus {
    /// Still collecting ballots.
    Running,
    /// Decided.
    Decided(Box<Decision>),
    /// Refused before or while running (the error's message).
    Failed(String),
    /// Cancelled by a caller.
    Cancelled,
}

struct Session {
    status: watch::Sender<SessionStatus>,
    task: Option<JoinHandle<()>>,
}

/// How much coordination keeps, so that nothing grows for ever: past a
/// bound the oldest record is dropped, and each drop is counted (event
/// `coordination.retention.dropped`, metric
/// `mabeam_coordination_dropped_total{what}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Decisions kept by [`Coordinator::decisions`] (default 1,000).
    pub decisions: usize,
    /// Finished sessions (decided, failed or cancelled) whose status is
    /// kept (default 1,000); running sessions are always kept.
    pub sessions: usize,
    /// Tenures kept by an election's history (default 1,000).
    pub election_history: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            decisions: 1_000,
            sessions: 1_000,
            election_history: 1_000,
        }
    }
}

#[derive(Default)]
struct Sessions {
    by_id: HashMap<SessionId, Session>,
    /// Finished sessions, oldest first: the first to drop.
    finished: VecDeque<SessionId>,
}

/// Runs coordination among agents reached through an `AgentDirectory`:
/// votes ([`vote`](Self::vote), or [`start_vote`](Self::start_vote) as a
/// session), and keeps every decision ([`decisions`](Self::decisions)),
/// recording each through the event sink when one is given (stream
/// `coordination.decisions`) and reporting it through telemetry
/// (`coordination.vote.decided`). What it keeps is bounded by its
/// [`Retention`].
///
/// Cheap to share: clone the `Arc` it comes in.
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use mabeam_coordination::{Coordinator, Proposal, Rule};
/// use serde_json::json;
/// use mabeam_supervision_core::{AgentSelection, Clock, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let agents = ScriptedDirectory::new();
/// agents.add("a", "voter", |_| Answer::Reply(json!({"vote": "yes"})));
/// agents.add("b", "voter", |_| Answer::Reply(json!({"vote": "yes"})));
/// agents.add("c", "voter", |_| Answer::Silent);
/// let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
/// let proposal = Proposal::new("deploy", AgentSelection::Kind("voter".into()), Rule::Majority, Duration::from_millis(100));
/// let decision = coordinator.vote(proposal).await.unwrap();
/// assert!(decision.passed()); // 2 of 3; c gave no answer
/// assert_eq!(decision.no_answer.len(), 1);
/// # }
/// ```
pub struct Coordinator {
    directory: Arc<dyn AgentDirectory>,
    clock: Clock,
    telemetry: Telemetry,
    sink: Option<Arc<dyn EventSink>>,
    registry: Option<(Arc<dyn Registry>, Namespace)>,
    next_id: AtomicU64,
    retention: Retention,
    sessions: Mutex<Sessions>,
    decisions: Mutex<VecDeque<Decision>>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("decisions", &self.decisions.lock().len())
            .finish_non_exhaustive()
    }
}

impl Coordinator {
    /// A coordinator reaching agents through `directory`, reading time
    /// from `clock`.
    pub fn new(directory: Arc<dyn AgentDirectory>, clock: Clock) -> Self {
        Coordinator {
            directory,
            clock,
            telemetry: Telemetry::disabled(),
            sink: None,
            registry: None,
            next_id: AtomicU64::new(1),
            retention: Retention::default(),
            sessions: Mutex::new(Sessions::default()),
            decisions: Mutex::new(VecDeque::new()),
        }
    }

    /// Keeps at most what `retention` says (see [`Retention`]).
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// What it keeps.
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Counts one record dropped past its retention.
    pub(crate) fn dropped(&self, what: &'static str) {
        self.telemetry.emit(
            COORDINATION_DROPPED,
            &[("count", 1.0)],
            &[("what", MetaValue::Str(what))],
        );
    }

    /// Reports through `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Records decisions through `sink`.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Resolves [`AgentSelection::Group`] through `registry`.
    pub fn with_registry(mut self, registry: Arc<dyn Registry>, namespace: Namespace) -> Self {
        self.registry = Some((registry, namespace));
        self
    }

    /// The directory agents are reached through.
    pub fn directory(&self) -> &Arc<dyn AgentDirectory> {
        &self.directory
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The telemetry handle.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The agents `selection` names.
    pub fn resolve(&self, selection: &AgentSelection) -> Result<Vec<AgentId>, CoordinationError> {
        let registry = self.registry.as_ref().map(|(r, ns)| (r.as_ref(), ns));
        Ok(selection.resolve(self.directory.as_ref(), registry)?)
    }

    /// Puts `proposal` to its participants and decides it by its rule.
    pub async fn vote(&self, proposal: Proposal) -> Result<Decision, CoordinationError> {
        proposal.validate()?;
        let participants = self.resolve(&proposal.participants)?;
        let id = self.next_id();
        let decision = self.decide(id, &proposal, &participants).await;
        self.keep(&decision).await;
        Ok(decision)
    }

    /// Asks `participants` for their ballots once; returns the valid
    /// ballots in participant order and the silences.
    async fn round(
        &self,
        id: u64,
        proposal: &Proposal,
        participants: &[AgentId],
        extra: Option<(u32, &[(AgentId, Ballot)])>,
    ) -> (Vec<(AgentId, Ballot)>, Vec<(AgentId, String)>) {
        let mut body = json!({
            "proposal": id,
            "topic": proposal.topic,
            "rule": proposal.rule.name(),
            "options": proposal.options,
            "body": proposal.body,
        });
        if let Some((round, previous)) = extra {
            body["round"] = json!(round);
            body["estimates"] = previous
                .iter()
                .filter_map(|(agent, b)| match b {
                    Ballot::Estimate(x) => Some((agent.to_string(), json!(x))),
                    _ => None,
                })
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let envelope = Envelope::new(VOTE_PROTOCOL, body, proposal.timeout);
        let mut replies = ask_all(
            self.directory.as_ref(),
            participants,
            &envelope,
            &self.clock,
        )
        .await;
        replies.sort_by_key(|r| r.index);
        let mut ballots = Vec::new();
        let mut silent = Vec::new();
        for reply in replies {
            match reply.answer {
                Ok(answer) => match Ballot::read(&proposal.rule, &proposal.options, &answer) {
                    Ok(ballot) => ballots.push((reply.agent, ballot)),
                    Err(why) => silent.push((reply.agent, format!("invalid ballot: {why}"))),
                },
                Err(err) => silent.push((reply.agent, err.to_string())),
            }
        }
        (ballots, silent)
    }

    async fn decide(&self, id: u64, proposal: &Proposal, participants: &[AgentId]) -> Decision {
        let rule = &proposal.rule;
        let (outcome, votes, no_answer, rounds, explanation) = match rule {
            Rule::Iterative {
                tolerance,
                max_rounds,
            } => {
                let mut previous: Vec<(AgentId, Ballot)> = Vec::new();
                let mut last = (Vec::new(), Vec::new());
                let mut outcome = Outcome::NoWinner;
                let mut explanation = "no estimates".to_owned();
                let mut rounds = 0;
                for round in 1..=*max_rounds {
                    rounds = round;
                    let (ballots, silent) = self
                        .round(id, proposal, participants, Some((round, &previous)))
                        .await;
                    let estimates: Vec<f64> = ballots
                        .iter()
                        .filter_map(|(_, b)| match b {
                            Ballot::Estimate(x) => Some(*x),
                            _ => None,
                        })
                        .collect();
                    if estimates.is_empty() {
                        last = (ballots, silent);
                        break;
                    }
                    let mean = estimates.iter().sum::<f64>() / estimates.len() as f64;
                    let spread = estimates.iter().cloned().fold(f64::MIN, f64::max)
                        - estimates.iter().cloned().fold(f64::MAX, f64::min);
                    previous = ballots.clone();
                    last = (ballots, silent);
                    if spread <= *tolerance {
                        outcome = Outcome::Converged(mean);
                        explanation = format!(
                            "round {round}: {} estimates within {spread} of each other (tolerance {tolerance}); mean {mean}",
                            estimates.len()
                        );
                        break;
                    }
                    outcome = Outcome::NotConverged(mean);
                    explanation = format!(
                        "after {round} rounds the estimates still spread {spread} (tolerance {tolerance}); last mean {mean}"
                    );
                }
                (outcome, last.0, last.1, rounds, explanation)
            }
            _ => {
                let (ballots, silent) = self.round(id, proposal, participants, None).await;
                let (outcome, explanation) = tally(rule, &proposal.options, participants, &ballots);
                (outcome, ballots, silent, 1, explanation)
            }
        };
        Decision {
            id,
            topic: proposal.topic.clone(),
            rule: rule.name(),
            outcome,
            votes,
            no_answer,
            participants: participants.len(),
            rounds,
            explanation,
        }
    }

    /// Keeps, reports and records a decision.
    pub(crate) async fn keep(&self, decision: &Decision) {
        let dropped = {
            let mut decisions = self.decisions.lock();
            decisions.push_back(decision.clone());
            let over = decisions.len().saturating_sub(self.retention.decisions);
            decisions.drain(..over);
            over
        };
        for _ in 0..dropped {
            self.dropped("decisions");
        }
        self.telemetry.emit(
            &["coordination", "vote", "decided"],
            &[
                ("participants", decision.participants as f64),
                ("ballots", decision.votes.len() as f64),
                ("rounds", f64::from(decision.rounds)),
            ],
            &[
                ("rule", MetaValue::Str(decision.rule)),
                ("topic", MetaValue::Str(&decision.topic)),
                ("passed", MetaValue::Bool(decision.passed())),
            ],
        );
        self.record("coordination.decisions", "decided", json!(decision))
            .await;
    }

    pub(crate) async fn record(&self, stream: &str, kind: &str, data: Value) {
        if let Some(sink) = &self.sink
            && let Err(err) = sink.record(Event::new(stream, kind, data)).await
        {
            let reason = err.to_string();
            self.telemetry.emit(
                &["coordination", "record_failed"],
                &[],
                &[("reason", MetaValue::Str(&reason))],
            );
        }
    }

    /// The decisions kept (the latest [`Retention::decisions`]), oldest
    /// first.
    pub fn decisions(&self) -> Vec<Decision> {
        self.decisions.lock().iter().cloned().collect()
    }

    /// Session `id` has finished: it joins the finished ones, and the
    /// oldest past the retention are dropped.
    fn finished(&self, id: SessionId) {
        let dropped = {
            let mut sessions = self.sessions.lock();
            sessions.finished.push_back(id);
            let mut dropped = 0;
            while sessions.finished.len() > self.retention.sessions {
                if let Some(old) = sessions.finished.pop_front() {
                    sessions.by_id.remove(&old);
                    dropped += 1;
                }
            }
            dropped
        };
        for _ in 0..dropped {
            self.dropped("sessions");
        }
    }

    /// Starts `proposal` as a session and returns its id at once; follow it
    /// with [`status`](Self::status) or [`wait`](Self::wait), stop it with
    /// [`cancel`](Self::cancel).
    pub fn start_vote(self: &Arc<Self>, proposal: Proposal) -> SessionId {
        let id = self.next_id();
        let (status, _) = watch::channel(SessionStatus::Running);
        self.sessions.lock().by_id.insert(
            id,
            Session {
                status: status.clone(),
                task: None,
            },
        );
        let coordinator = self.clone();
        let task = tokio::spawn(async move {
            let result = match proposal
                .validate()
                .and_then(|()| coordinator.resolve(&proposal.participants))
            {
                Ok(participants) => {
                    let decision = coordinator.decide(id, &proposal, &participants).await;
                    coordinator.keep(&decision).await;
                    SessionStatus::Decided(Box::new(decision))
                }
                Err(err) => SessionStatus::Failed(err.to_string()),
            };
            let ended_here = status.send_if_modified(|current| {
                let running = *current == SessionStatus::Running;
                if running {
                    *current = result;
                }
                running
            });
            if ended_here {
                coordinator.finished(id);
            }
        });
        if let Some(session) = self.sessions.lock().by_id.get_mut(&id) {
            session.task = Some(task);
        }
        id
    }

    /// Where session `id` stands.
    pub fn status(&self, id: SessionId) -> Result<SessionStatus, CoordinationError> {
        self.sessions
            .lock()
            .by_id
            .get(&id)
            .map(|s| s.status.borrow().clone())
            .ok_or(CoordinationError::UnknownSession(id))
    }

    /// Waits until session `id` is decided, failed or cancelled.
    pub async fn wait(&self, id: SessionId) -> Result<Decision, CoordinationError> {
        let mut status = self
            .sessions
            .lock()
            .by_id
            .get(&id)
            .map(|s| s.status.subscribe())
            .ok_or(CoordinationError::UnknownSession(id))?;
        let status = status
            .wait_for(|s| *s != SessionStatus::Running)
            .await
            .map(|s| s.clone())
            .unwrap_or(SessionStatus::Cancelled);
        match status {
            SessionStatus::Decided(decision) => Ok(*decision),
            SessionStatus::Failed(why) => Err(CoordinationError::Invalid(why)),
            _ => Err(CoordinationError::Cancelled(id)),
        }
    }

    /// Cancels session `id` if it is still running (its pending asks are
    /// dropped); returns whether it was.
    pub fn cancel(&self, id: SessionId) -> Result<bool, CoordinationError> {
        let cancelled = {
            let sessions = self.sessions.lock();
            let session = sessions
                .by_id
                .get(&id)
                .ok_or(CoordinationError::UnknownSession(id))?;
            let cancelled = session.status.send_if_modified(|current| {
                let running = *current == SessionStatus::Running;
                if running {
                    *current = SessionStatus::Cancelled;
                }
                running
            });
            if cancelled && let Some(task) = &session.task {
                task.abort();
            }
            cancelled
        };
        if cancelled {
            self.finished(id);
        }
        Ok(cancelled)
    }
}
