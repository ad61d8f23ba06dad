//! Byzantine agreement: a value decided only when a Byzantine quorum of
//! ⌈(n + f + 1) / 2⌉ participants out of n >= 3f + 1 give it,
//! consistently (Malkhi and Reiter's masking quorum for f faulty
//! participants: any two such quorums share at least f + 1 participants,
//! so at least one honest participant is in both).
//!
//! A round has two phases, each asking every participant: **propose**
//! (protocol [`PROPOSE_PROTOCOL`], body `{"round", "topic", "body"}`) and
//! **confirm** ([`CONFIRM_PROTOCOL`], the same body plus `"proposals"`:
//! every phase-one answer by agent). An agent answers `{"value": ...}` both
//! times. A participant whose two answers differ has equivocated (told
//! different askers different things) and is set aside as faulty; a
//! silent or late one is no answer. The round decides the value that at
//! least the quorum of consistent participants gave: with at most f faulty
//! participants the n - f >= quorum honest ones carry it, and no other
//! value can reach the quorum too (two quorums would need more than n
//! participants). A value is never decided while another could still
//! reach the quorum with the silent and equivocating participants' help.
//! Otherwise the round fails with [`CoordinationError::NoAgreement`],
//! never a wrong decision.
//!
//! **What is trusted.** The participants may be Byzantine (up to f of
//! them: lying, equivocating, silent). The [`Coordinator`] is not: it is
//! one trusted process that asks, collects and counts on one node, so it
//! is trusted to deliver each participant's answers faithfully and to
//! tally honestly. This is agreement among possibly faulty *answerers*
//! under a trusted tallier, not a Byzantine fault-tolerant replication
//! protocol (PBFT and its kin tolerate a faulty leader; this does not).

use std::time::Duration;

use mabeam_supervision_core::{AgentId, AgentSelection, Envelope, ask_all};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{CoordinationError, Coordinator};

/// The protocol of the first phase.
pub const PROPOSE_PROTOCOL: &str = "coordination.byzantine.propose";
/// The protocol of the second phase.
pub const CONFIRM_PROTOCOL: &str = "coordination.byzantine.confirm";

/// A Byzantine round to run.
#[derive(Debug, Clone, PartialEq)]
pub struct ByzantineRound {
    /// What is being agreed.
    pub topic: String,
    /// Details for the agents.
    pub body: Value,
    /// Who takes part.
    pub participants: AgentSelection,
    /// How many faulty participants to tolerate (f).
    pub faults: usize,
    /// How long each phase waits.
    pub timeout: Duration,
}

/// A value agreed by a Byzantine round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// The round's id.
    pub id: u64,
    /// The value agreed.
    pub value: Value,
    /// The participants that gave it in both phases.
    pub supporters: Vec<AgentId>,
    /// The participants that answered differently in the two phases.
    pub faulty: Vec<AgentId>,
    /// The participants that gave no answer in some phase, and why.
    pub silent: Vec<(AgentId, String)>,
    /// Why the value is decided.
    pub explanation: String,
}

/// The Byzantine quorum ⌈(n + f + 1) / 2⌉ for `n` participants of which
/// `f` may be faulty: two quorums share at least f + 1 participants.
///
/// ```
/// assert_eq!(mabeam_coordination::byzantine::byzantine_quorum(4, 1), 3);
/// assert_eq!(mabeam_coordination::byzantine::byzantine_quorum(7, 1), 5); // not 2f + 1 = 3
/// ```
pub fn byzantine_quorum(n: usize, f: usize) -> usize {
    (n + f + 1).div_ceil(2)
}

impl Coordinator {
    /// Runs a Byzantine round. Refused up front with
    /// [`CoordinationError::TooFewParticipants`] when n < 3f + 1.
    pub async fn byzantine(&self, round: ByzantineRound) -> Result<Agreement, CoordinationError> {
        if round.timeout.is_zero() {
            return Err(CoordinationError::Invalid(
                "byzantine timeout: must be above 0".into(),
            ));
        }
        let participants = self.resolve(&round.participants)?;
        let (n, f) = (participants.len(), round.faults);
        if n < 3 * f + 1 {
            return Err(CoordinationError::TooFewParticipants {
                f,
                needed: 3 * f + 1,
                got: n,
            });
        }
        let id = self.next_id();
        let base = json!({"round": id, "topic": round.topic, "body": round.body});
        let ask = |protocol: &'static str, body: Value| {
            let envelope = Envelope::new(protocol, body, round.timeout);
            let participants = &participants;
            async move {
                let mut replies = ask_all(
                    self.directory().as_ref(),
                    participants,
                    &envelope,
                    self.clock(),
                )
                .await;
                replies.sort_by_key(|r| r.index);
                replies
                    .into_iter()
                    .map(|r| match r.answer {
                        Ok(answer) => match answer.get("value") {
                            Some(value) => Ok(value.clone()),
                            None => Err("answered without a value".to_owned()),
                        },
                        Err(err) => Err(err.to_string()),
                    })
                    .collect::<Vec<Result<Value, String>>>()
            }
        };
        let proposed = ask(PROPOSE_PROTOCOL, base.clone()).await;
        let mut confirm = base;
        confirm["proposals"] = participants
            .iter()
            .zip(&proposed)
            .filter_map(|(agent, value)| Some((agent.to_string(), value.as_ref().ok()?.clone())))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let confirmed = ask(CONFIRM_PROTOCOL, confirm).await;

        let mut faulty = Vec::new();
        let mut silent = Vec::new();
        // (value, its consistent supporters), in order of first support.
        let mut groups: Vec<(Value, Vec<AgentId>)> = Vec::new();
        for ((agent, first), second) in participants.iter().zip(proposed).zip(confirmed) {
            match (first, second) {
                (Ok(a), Ok(b)) if a == b => match groups.iter_mut().find(|(v, _)| *v == a) {
                    Some((_, supporters)) => supporters.push(agent.clone()),
                    None => groups.push((a, vec![agent.clone()])),
                },
                (Ok(_), Ok(_)) => faulty.push(agent.clone()),
                (Err(why), _) | (_, Err(why)) => silent.push((agent.clone(), why)),
            }
        }
        let quorum = byzantine_quorum(n, f);
        // Participants whose value is unknown or untrustworthy: any of
        // them might have given another value to someone else.
        let uncertain = faulty.len() + silent.len();
        let summary = groups
            .iter()
            .map(|(v, s)| format!("{v} from {}", s.len()))
            .collect::<Vec<_>>()
            .join(", ");
        let decided = groups.iter().find(|(value, s)| {
            s.len() >= quorum
                && groups
                    .iter()
                    .all(|(other, o)| other == value || o.len() + uncertain < quorum)
        });
        let outcome = match decided {
            Some((value, supporters)) => Ok(Agreement {
                id,
                value: value.clone(),
                supporters: supporters.clone(),
                faulty: faulty.clone(),
                silent: silent.clone(),
                explanation: format!(
                    "{} of {n} participants gave {value} in both phases, at least the quorum ⌈(n + f + 1) / 2⌉ = {quorum} (f = {f}); answers: {summary}; {} equivocated, {} silent",
                    supporters.len(),
                    faulty.len(),
                    silent.len()
                ),
            }),
            None => Err(CoordinationError::NoAgreement {
                explanation: format!(
                    "no value reached the quorum ⌈(n + f + 1) / 2⌉ = {quorum} of {n} alone (f = {f}); consistent answers: {}; {} equivocated, {} silent",
                    if summary.is_empty() {
                        "none".into()
                    } else {
                        summary
                    },
                    faulty.len(),
                    silent.len()
                ),
                faulty: faulty.clone(),
            }),
        };
        let data = match &outcome {
            Ok(agreement) => json!({"agreed": agreement}),
            Err(err) => json!({"failed": err.to_string(), "faulty": faulty}),
        };
        self.telemetry().emit(
            &["coordination", "byzantine", "round"],
            &[("participants", n as f64), ("faulty", faulty.len() as f64)],
            &[(
                "agreed",
                mabeam_supervision_core::MetaValue::Bool(outcome.is_ok()),
            )],
        );
        self.record("coordination.byzantine", "round", data).await;
        outcome
    }
}
