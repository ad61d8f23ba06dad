//! Votes among agents: proposals, the rules that decide them, and the
//! tallies, which are pure functions of the ballots.
//!
//! | rule | ballots | passes / wins |
//! |---|---|---|
//! | [`Rule::Majority`] | yes / no / abstain | more than half of all participants vote yes |
//! | [`Rule::Supermajority`] | yes / no / abstain | at least the threshold share of all participants vote yes |
//! | [`Rule::Unanimous`] | yes / no / abstain | every participant votes yes |
//! | [`Rule::Weighted`] | yes / no / abstain | the yes voters' weight reaches the threshold share of all participants' weight |
//! | [`Rule::RankedChoice`] | a ranking of the options | instant runoff: the option with more than half of the live ballots' first choices; the weakest is eliminated until one has |
//! | [`Rule::Approval`] | the options approved | the most approved option |
//! | [`Rule::Iterative`] | an estimate | rounds in which each agent sees the others' estimates, until their spread is within the tolerance |
//!
//! Shares count **all** participants: a silent or crashed agent is "no
//! answer", never a yes. Ties go to the option listed first. Each
//! [`Decision`] lists who voted what, who did not answer and why, and why
//! the outcome follows.
//!
//! # The vote protocol
//!
//! Each participant receives an envelope of protocol [`VOTE_PROTOCOL`]
//! with body `{"proposal": id, "topic": ..., "rule": ..., "options": [...],
//! "body": ...}` (and for iterative rounds `"round"` and `"estimates"`, the
//! previous round's estimates by agent) and answers `{"vote": "yes" | "no"
//! | "abstain"}` (or `true` / `false`), `{"ranking": [...]}`, `{"approve":
//! [...]}` or `{"estimate": x}`.

use std::{collections::HashMap, time::Duration};

use mabeam_supervision_core::{AgentId, AgentSelection};
use serde::Serialize;
use serde_json::Value;

use crate::CoordinationError;

/// The protocol name of vote requests.
pub const VOTE_PROTOCOL: &str = "coordination.vote";

/// How a proposal is decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// More than half of all participants vote yes.
    Majority,
    /// At least this share (in `(0, 1]`) of all participants vote yes.
    Supermajority(f64),
    /// Every participant votes yes.
    Unanimous,
    /// The yes voters' weight reaches `threshold` (in `(0, 1]`) of the
    /// participants' total weight; a participant not listed weighs 1.
    Weighted {
        /// Each agent's weight (not negative).
        weights: HashMap<AgentId, f64>,
        /// The share of weight needed.
        threshold: f64,
    },
    /// Instant runoff among the options.
    RankedChoice,
    /// The most approved option.
    Approval,
    /// Rounds of estimates until their spread (max - min) is at most
    /// `tolerance`, at most `max_rounds` rounds.
    Iterative {
        /// The spread at which the estimates have converged.
        tolerance: f64,
        /// The most rounds.
        max_rounds: u32,
    },
}

impl Rule {
    /// The rule's name in protocol bodies and records.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Majority => "majority",
            Rule::Supermajority(_) => "supermajority",
            Rule::Unanimous => "unanimous",
            Rule::Weighted { .. } => "weighted",
            Rule::RankedChoice => "ranked_choice",
            Rule::Approval => "approval",
            Rule::Iterative { .. } => "iterative",
        }
    }

    fn check(&self, options: &[String]) -> Result<(), CoordinationError> {
        let share = |t: f64| t > 0.0 && t <= 1.0;
        match self {
            Rule::Supermajority(t) if !share(*t) => Err(CoordinationError::Invalid(format!(
                "supermajority threshold {t}: must be above 0 and at most 1"
            ))),
            Rule::Weighted { threshold, .. } if !share(*threshold) => {
                Err(CoordinationError::Invalid(format!(
                    "weighted threshold {threshold}: must be above 0 and at most 1"
                )))
            }
            Rule::Weighted { weights, .. }
                if weights.values().any(|w| !(w.is_finite() && *w >= 0.0)) =>
            {
                Err(CoordinationError::Invalid(
                    "weights: must be finite and not negative".into(),
                ))
            }
            Rule::RankedChoice | Rule::Approval if options.is_empty() => Err(
                CoordinationError::Invalid(format!("options: {} needs at least one", self.name())),
            ),
            Rule::Iterative {
                tolerance,
                max_rounds,
            } if !(tolerance.is_finite() && *tolerance >= 0.0) || *max_rounds == 0 => Err(
                CoordinationError::Invalid("iterative: tolerance >= 0 and max_rounds >= 1".into()),
            ),
            _ => Ok(()),
        }
    }
}

/// A question put to a set of agents.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// What it is about (free text, recorded).
    pub topic: String,
    /// Details for the agents (any JSON).
    pub body: Value,
    /// The options, for ranked-choice and approval votes.
    pub options: Vec<String>,
    /// Who votes.
    pub participants: AgentSelection,
    /// How it is decided.
    pub rule: Rule,
    /// How long each round waits for ballots.
    pub timeout: Duration,
}

impl Proposal {
    /// A yes/no proposal on `topic` decided by `rule`, answered within
    /// `timeout`.
    pub fn new(
        topic: impl Into<String>,
        participants: AgentSelection,
        rule: Rule,
        timeout: Duration,
    ) -> Self {
        Proposal {
            topic: topic.into(),
            body: Value::Null,
            options: Vec::new(),
            participants,
            rule,
            timeout,
        }
    }

    /// With these details for the agents.
    pub fn with_body(mut self, body: Value) -> Self {
        self.body = body;
        self
    }

    /// With these options.
    pub fn with_options<S: Into<String>>(mut self, options: impl IntoIterator<Item = S>) -> Self {
        self.options = options.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the rule and options.
    pub fn validate(&self) -> Result<(), CoordinationError> {
        if self.timeout.is_zero() {
            return Err(CoordinationError::Invalid(
                "proposal timeout: must be above 0".into(),
            ));
        }
        self.rule.check(&self.options)
    }
}

/// One agent's ballot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ballot {
    /// For.
    Yes,
    /// Against.
    No,
    /// Neither (counts as not yes).
    Abstain,
    /// Options in order of preference.
    Ranking(Vec<String>),
    /// Options approved.
    Approve(Vec<String>),
    /// A number, for iterative consensus.
    Estimate(f64),
}

impl Ballot {
    /// Reads an agent's answer for `rule`; `Err` names what was wrong.
    pub fn read(rule: &Rule, options: &[String], answer: &Value) -> Result<Ballot, String> {
        let known = |list: &Value| -> Result<Vec<String>, String> {
            let items = list.as_array().ok_or("not a list")?;
            let mut out = Vec::new();
            for item in items {
                let option = item.as_str().ok_or("an option that is not a string")?;
                if !options.iter().any(|o| o == option) {
                    return Err(format!("unknown option {option:?}"));
                }
                if !out.iter().any(|o: &String| o == option) {
                    out.push(option.to_owned());
                }
            }
            Ok(out)
        };
        match rule {
            Rule::RankedChoice => known(&answer["ranking"]).map(Ballot::Ranking),
            Rule::Approval => known(&answer["approve"]).map(Ballot::Approve),
            Rule::Iterative { .. } => answer["estimate"]
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Ballot::Estimate)
                .ok_or_else(|| "no finite estimate".to_owned()),
            _ => match &answer["vote"] {
                Value::Bool(true) => Ok(Ballot::Yes),
                Value::Bool(false) => Ok(Ballot::No),
                Value::String(s) if s == "yes" => Ok(Ballot::Yes),
                Value::String(s) if s == "no" => Ok(Ballot::No),
                Value::String(s) if s == "abstain" => Ok(Ballot::Abstain),
                other => Err(format!("not a vote: {other}")),
            },
        }
    }
}

/// What a vote decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "value")]
pub enum Outcome {
    /// The proposal passed.
    Passed,
    /// The proposal failed.
    Rejected,
    /// This option won.
    Chosen(String),
    /// No option won (no ballots).
    NoWinner,
    /// The estimates converged on this value (their mean).
    Converged(f64),
    /// The rounds ran out; the last mean.
    NotConverged(f64),
}

/// A decided vote: the outcome, every ballot, every silence, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The vote's id (unique per coordinator).
    pub id: u64,
    /// The proposal's topic.
    pub topic: String,
    /// The rule's name.
    pub rule: &'static str,
    /// What was decided.
    pub outcome: Outcome,
    /// Who voted what (the last round's, for iterative votes), in
    /// participant order.
    pub votes: Vec<(AgentId, Ballot)>,
    /// Who gave no valid ballot, and why.
    pub no_answer: Vec<(AgentId, String)>,
    /// How many participants were asked.
    pub participants: usize,
    /// Rounds run (1 except for iterative votes).
    pub rounds: u32,
    /// Why the outcome follows from the ballots.
    pub explanation: String,
}

impl Decision {
    /// Whether a yes/no proposal passed.
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }
}

/// Decides a yes/no, ranked or approval vote from the ballots of
/// `participants` (all of them; those without a ballot count as no
/// answer). Returns the outcome and its explanation.
pub fn tally(
    rule: &Rule,
    options: &[String],
    participants: &[AgentId],
    ballots: &[(AgentId, Ballot)],
) -> (Outcome, String) {
    let n = participants.len();
    let yes = ballots.iter().filter(|(_, b)| *b == Ballot::Yes).count();
    let answered = ballots.len();
    let verdict = |passed: bool, why: String| {
        (
            if passed {
                Outcome::Passed
            } else {
                Outcome::Rejected
            },
            why,
        )
    };
    match rule {
        Rule::Majority => verdict(
            2 * yes > n,
            format!(
                "{yes} of {n} participants voted yes ({answered} answered); a majority needs more than {}",
                n / 2
            ),
        ),
        Rule::Supermajority(threshold) => {
            let needed = (threshold * n as f64 - 1e-9).ceil() as usize;
            verdict(
                yes >= needed,
                format!("{yes} of {n} voted yes; {threshold} of {n} needs {needed}"),
            )
        }
        Rule::Unanimous => verdict(
            yes == n,
            format!("{yes} of {n} voted yes; unanimity needs all {n}"),
        ),
        Rule::Weighted { weights, threshold } => {
            let weight = |id: &AgentId| weights.get(id).copied().unwrap_or(1.0);
            let total: f64 = participants.iter().map(weight).sum();
            let for_: f64 = ballots
                .iter()
                .filter(|(_, b)| *b == Ballot::Yes)
                .map(|(id, _)| weight(id))
                .sum();
            let share = if total > 0.0 { for_ / total } else { 0.0 };
            verdict(
                total > 0.0 && share >= *threshold - 1e-12,
                format!("yes weighed {for_} of {total} ({share:.3}); needed {threshold}"),
            )
        }
        Rule::Approval => {
            let mut counts = vec![0usize; options.len()];
            for (_, ballot) in ballots {
                if let Ballot::Approve(approved) = ballot {
                    for option in approved {
                        if let Some(i) = options.iter().position(|o| o == option) {
                            counts[i] += 1;
                        }
                    }
                }
            }
            match best(&counts) {
                Some(i) if counts[i] > 0 => (
                    Outcome::Chosen(options[i].clone()),
                    format!(
                        "{} has the most approvals ({}); approvals: {}",
                        options[i],
                        counts[i],
                        listing(options, &counts)
                    ),
                ),
                _ => (Outcome::NoWinner, "no option was approved".to_owned()),
            }
        }
        Rule::RankedChoice => instant_runoff(options, ballots),
        Rule::Iterative { .. } => (
            Outcome::NoWinner,
            "iterative votes are decided by rounds".into(),
        ),
    }
}

/// The first index of the largest count.
fn best(counts: &[usize]) -> Option<usize> {
    let max = counts.iter().max()?;
    counts.iter().position(|c| c == max)
}

fn listing(options: &[String], counts: &[usize]) -> String {
    options
        .iter()
        .zip(counts)
        .map(|(o, c)| format!("{o} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn instant_runoff(options: &[String], ballots: &[(AgentId, Ballot)]) -> (Outcome, String) {
    let rankings: Vec<&Vec<String>> = ballots
        .iter()
        .filter_map(|(_, b)| match b {
            Ballot::Ranking(r) => Some(r),
            _ => None,
        })
        .collect();
    let mut live: Vec<bool> = vec![true; options.len()];
    let mut steps = Vec::new();
    loop {
        let mut counts = vec![0usize; options.len()];
        let mut active = 0;
        for ranking in &rankings {
            if let Some(i) = ranking
                .iter()
                .filter_map(|o| options.iter().position(|x| x == o))
                .find(|&i| live[i])
            {
                counts[i] += 1;
                active += 1;
            }
        }
        if active == 0 {
            return (
                Outcome::NoWinner,
                "no ranking named a remaining option".into(),
            );
        }
        let leader = (0..options.len())
            .filter(|&i| live[i])
            .max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
            .unwrap();
        let remaining = live.iter().filter(|l| **l).count();
        if 2 * counts[leader] > active || remaining == 1 {
            steps.push(format!(
                "{} has {} of {active} first choices",
                options[leader], counts[leader]
            ));
            return (Outcome::Chosen(options[leader].clone()), steps.join("; "));
        }
        // Eliminate the weakest; among equals, the one listed last.
        let weakest = (0..options.len())
            .filter(|&i| live[i])
            .min_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a)))
            .unwrap();
        steps.push(format!(
            "{} eliminated with {}",
            options[weakest], counts[weakest]
        ));
        live[weakest] = false;
    }
}
