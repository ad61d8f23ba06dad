//! MABEAM Core's universal variables: named, typed, versioned values
//! shared by agents, with a conflict policy each, broadcast to their
//! subscribers in version order, and optionally bound to the configuration
//! of a kind of agents (orchestration variables).
//!
//! | policy | an update |
//! |---|---|
//! | [`ConflictPolicy::LastWriterWins`] | applies as given |
//! | [`ConflictPolicy::Consensus`] | applies only when a vote among the variable's subscribers passes (protocol [`VOTE_PROTOCOL`](crate::VOTE_PROTOCOL), body `{"variable", "current", "proposed", "version"}`) |
//! | [`ConflictPolicy::Merge`] | applies `merge(current, proposed)` |
//!
//! Every update may name the version it read (compare-and-set): if the
//! variable moved on, it gets [`CoordinationError::VersionConflict`] and
//! nothing changes. A value is checked against the variable's
//! [`ValueType`] (after merging) before it applies.
//!
//! Subscribers receive each new value by cast, protocol
//! [`CHANGED_PROTOCOL`], body `{"variable", "value", "version"}`: casts
//! for one variable are sent in version order, under the variable's lock,
//! and an agent's mailbox keeps their order. An orchestration variable
//! also asks every agent of its kind to apply the new value
//! ([`CONFIGURE_PROTOCOL`]) and waits at most its timeout: the update's
//! [`Applied`] says who applied it, who failed and who ran out of time.

use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};

use mabeam_supervision_core::{AgentId, AgentSelection, Envelope, ask_all};
use parking_lot::RwLock;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use tokio::sync::Mutex as AsyncMutex;

use crate::{CoordinationError, Coordinator, Proposal, Rule};

/// The protocol of change notifications to subscribers.
pub const CHANGED_PROTOCOL: &str = "coordination.variable.changed";
/// The protocol asking agents of a bound kind to apply a value.
pub const CONFIGURE_PROTOCOL: &str = "coordination.configure";

/// A variable's type, and its range where it has one.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueType {
    /// `true` or `false`.
    Bool,
    /// A whole number within the bounds (inclusive).
    Integer {
        /// The least.
        min: i64,
        /// The most.
        max: i64,
    },
    /// A finite number within the bounds (inclusive).
    Float {
        /// The least.
        min: f64,
        /// The most.
        max: f64,
    },
    /// A string.
    Text,
    /// Any JSON.
    Json,
}

impl ValueType {
    /// `Ok` if `value` is of this type and in range; otherwise the rule
    /// broken.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        match self {
            ValueType::Bool if value.is_boolean() => Ok(()),
            ValueType::Bool => Err("must be a boolean".into()),
            ValueType::Integer { min, max } => match value.as_i64() {
                Some(v) if (*min..=*max).contains(&v) => Ok(()),
                Some(v) => Err(format!("{v} is outside {min}..={max}")),
                None => Err("must be an integer".into()),
            },
            ValueType::Float { min, max } => match value.as_f64() {
                Some(v) if v.is_finite() && *min <= v && v <= *max => Ok(()),
                Some(v) => Err(format!("{v} is outside {min}..={max}")),
                None => Err("must be a number".into()),
            },
            ValueType::Text if value.is_string() => Ok(()),
            ValueType::Text => Err("must be a string".into()),
            ValueType::Json => Ok(()),
        }
    }
}

/// A merge of the current value and a proposed one into the new value.
pub type MergeFn = Arc<dyn Fn(&Value, &Value) -> Value + Send + Sync>;

/// How a variable settles concurrent or contested updates.
#[derive(Clone)]
pub enum ConflictPolicy {
    /// The update applies as given.
    LastWriterWins,
    /// The update applies only if a vote among the variable's subscribers
    /// by `rule` passes within `timeout`.
    Consensus {
        /// The rule.
        rule: Rule,
        /// How long the vote waits.
        timeout: Duration,
    },
    /// The new value is `merge(current, proposed)`.
    Merge(MergeFn),
}

impl fmt::Debug for ConflictPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConflictPolicy::LastWriterWins => f.write_str("LastWriterWins"),
            ConflictPolicy::Consensus { rule, timeout } => f
                .debug_struct("Consensus")
                .field("rule", rule)
                .field("timeout", timeout)
                .finish(),
            ConflictPolicy::Merge(_) => f.write_str("Merge(..)"),
        }
    }
}

/// The definition of a variable.
#[derive(Debug, Clone)]
pub struct VariableSpec {
    /// Its name.
    pub name: String,
    /// Its type.
    pub value_type: ValueType,
    /// Its first value (version 1).
    pub initial: Value,
    /// How updates are settled.
    pub policy: ConflictPolicy,
    /// How many past values are kept.
    pub history: usize,
    /// Binds the configuration of agents of a kind: each change is applied
    /// by every agent of the kind within the timeout.
    pub binds: Option<(String, Duration)>,
}

impl VariableSpec {
    /// A last-writer-wins variable keeping 16 past values.
    pub fn new(name: impl Into<String>, value_type: ValueType, initial: Value) -> Self {
        VariableSpec {
            name: name.into(),
            value_type,
            initial,
            policy: ConflictPolicy::LastWriterWins,
            history: 16,
            binds: None,
        }
    }

    /// With this policy.
    pub fn policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Keeping this many past values.
    pub fn history(mut self, history: usize) -> Self {
        self.history = history;
        self
    }

    /// Binding the configuration of agents of `kind`, each change to be
    /// applied within `timeout`.
    pub fn binds(mut self, kind: impl Into<String>, timeout: Duration) -> Self {
        self.binds = Some((kind.into(), timeout));
        self
    }
}

/// A variable's value at a version.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Versioned {
    /// The value.
    pub value: Value,
    /// Its version, from 1, increasing by one per applied update.
    pub version: u64,
    /// When it was set (milliseconds since the Unix epoch).
    pub at_ms: u64,
}

/// What an orchestration variable's change achieved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Applied {
    /// Agents that applied the value.
    pub applied: Vec<AgentId>,
    /// Agents that refused or crashed, and why.
    pub failed: Vec<(AgentId, String)>,
    /// Agents that did not answer within the timeout.
    pub timed_out: Vec<AgentId>,
}

/// The answer to an applied update.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Updated {
    /// The new value and version.
    pub current: Versioned,
    /// For an orchestration variable, who applied it.
    pub applied: Option<Applied>,
}

struct Variable {
    spec: VariableSpec,
    current: RwLock<Versioned>,
    history: RwLock<VecDeque<Versioned>>,
    /// In subscription order, and as a set for the membership check.
    subscribers: RwLock<(Vec<AgentId>, HashSet<AgentId>)>,
    /// Orders updates (and their broadcasts) of this variable.
    writing: AsyncMutex<()>,
}

/// The universal variables of a node: see the [module docs](self).
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use mabeam_coordination::{Coordinator, ValueType, VariableSpace, VariableSpec};
/// use serde_json::json;
/// use mabeam_supervision_core::{Clock, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let agents = ScriptedDirectory::new();
/// agents.add("a", "worker", |_| Answer::Reply(json!(null)));
/// let space = VariableSpace::new(Arc::new(Coordinator::new(Arc::new(agents.clone()), Clock::tokio())));
/// space.define(VariableSpec::new("rate", ValueType::Integer { min: 1, max: 100 }, json!(10))).unwrap();
/// space.subscribe("rate", "a".into()).unwrap();
/// let updated = space.update("rate", json!(20), Some(1)).await.unwrap();
/// assert_eq!(updated.current.version, 2);
/// assert!(space.update("rate", json!(30), Some(1)).await.is_err()); // it moved on
/// assert!(space.update("rate", json!(500), None).await.is_err()); // out of range
/// let seen = agents.wait_received(&"a".into(), 1).await;
/// assert_eq!(seen[0].body["value"], json!(20));
/// # }
/// ```
pub struct VariableSpace {
    coordinator: Arc<Coordinator>,
    variables: RwLock<HashMap<String, Arc<Variable>>>,
}

impl fmt::Debug for VariableSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VariableSpace")
            .field("variables", &self.variables.read().len())
            .finish_non_exhaustive()
    }
}

impl VariableSpace {
    /// An empty space whose votes and broadcasts go through `coordinator`.
    pub fn new(coordinator: Arc<Coordinator>) -> Self {
        VariableSpace {
            coordinator,
            variables: RwLock::new(HashMap::new()),
        }
    }

    fn get_variable(&self, name: &str) -> Result<Arc<Variable>, CoordinationError> {
        self.variables
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| CoordinationError::UnknownVariable(name.to_owned()))
    }

    /// Defines a variable at version 1 with its initial value.
    pub fn define(&self, spec: VariableSpec) -> Result<Versioned, CoordinationError> {
        if spec.name.is_empty() {
            return Err(CoordinationError::Invalid("variable name: empty".into()));
        }
        if let ValueType::Float { min, max } = spec.value_type
            && (min.is_nan() || max.is_nan() || min > max)
        {
            return Err(CoordinationError::Invalid(format!(
                "range of {}: min above max",
                spec.name
            )));
        }
        spec.value_type
            .check(&spec.initial)
            .map_err(|rule| CoordinationError::InvalidValue {
                variable: spec.name.clone(),
                rule,
            })?;
        let mut variables = self.variables.write();
        if variables.contains_key(&spec.name) {
            return Err(CoordinationError::VariableExists(spec.name));
        }
        let current = Versioned {
            value: spec.initial.clone(),
            version: 1,
            at_ms: self.coordinator.clock().unix_millis(),
        };
        variables.insert(
            spec.name.clone(),
            Arc::new(Variable {
                spec,
                current: RwLock::new(current.clone()),
                history: RwLock::new(VecDeque::new()),
                subscribers: RwLock::new((Vec::new(), HashSet::new())),
                writing: AsyncMutex::new(()),
            }),
        );
        Ok(current)
    }

    /// The current value and version.
    pub fn get(&self, name: &str) -> Result<Versioned, CoordinationError> {
        Ok(self.get_variable(name)?.current.read().clone())
    }

    /// The past values, oldest first (at most the spec's `history`).
    pub fn history(&self, name: &str) -> Result<Vec<Versioned>, CoordinationError> {
        Ok(self
            .get_variable(name)?
            .history
            .read()
            .iter()
            .cloned()
            .collect())
    }

    /// The variable names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.variables.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// `agent` receives every later value of `name` (once, however often
    /// it subscribes).
    pub fn subscribe(&self, name: &str, agent: AgentId) -> Result<(), CoordinationError> {
        let variable = self.get_variable(name)?;
        let mut subscribers = variable.subscribers.write();
        if subscribers.1.insert(agent.clone()) {
            subscribers.0.push(agent);
        }
        Ok(())
    }

    /// `agent` no longer receives `name`'s values.
    pub fn unsubscribe(&self, name: &str, agent: &AgentId) -> Result<(), CoordinationError> {
        let variable = self.get_variable(name)?;
        let mut subscribers = variable.subscribers.write();
        if subscribers.1.remove(agent) {
            subscribers.0.retain(|a| a != agent);
        }
        Ok(())
    }

    /// Updates `name` to `value` by its policy. With `expected_version`,
    /// only if the variable is still at that version.
    pub async fn update(
        &self,
        name: &str,
        value: Value,
        expected_version: Option<u64>,
    ) -> Result<Updated, CoordinationError> {
        let variable = self.get_variable(name)?;
        let _writing = variable.writing.lock().await;
        let current = variable.current.read().clone();
        if let Some(expected) = expected_version
            && expected != current.version
        {
            return Err(CoordinationError::VersionConflict {
                variable: name.to_owned(),
                expected,
                current: current.version,
            });
        }
        let invalid = |rule| CoordinationError::InvalidValue {
            variable: name.to_owned(),
            rule,
        };
        let new_value = match &variable.spec.policy {
            ConflictPolicy::Merge(merge) => merge(&current.value, &value),
            _ => value,
        };
        variable
            .spec
            .value_type
            .check(&new_value)
            .map_err(invalid)?;
        if let ConflictPolicy::Consensus { rule, timeout } = &variable.spec.policy {
            let voters = variable.subscribers.read().0.clone();
            if voters.is_empty() {
                return Err(CoordinationError::UpdateRejected {
                    variable: name.to_owned(),
                    explanation: "no subscribed agents to vote".into(),
                });
            }
            let proposal = Proposal::new(format!("update {name}"), AgentSelection::Ids(voters), rule.clone(), *timeout)
                .with_body(json!({"variable": name, "current": current.value, "proposed": new_value, "version": current.version}));
            let decision = self.coordinator.vote(proposal).await?;
            if !decision.passed() {
                return Err(CoordinationError::UpdateRejected {
                    variable: name.to_owned(),
                    explanation: decision.explanation,
                });
            }
        }
        let next = Versioned {
            value: new_value,
            version: current.version + 1,
            at_ms: self.coordinator.clock().unix_millis(),
        };
        {
            let mut history = variable.history.write();
            history.push_back(current);
            while history.len() > variable.spec.history {
                history.pop_front();
            }
            *variable.current.write() = next.clone();
        }
        self.broadcast(name, &variable, &next);
        let applied = match &variable.spec.binds {
            Some((kind, timeout)) => Some(self.configure(name, kind, &next, *timeout).await),
            None => None,
        };
        self.coordinator.telemetry().emit(
            &["coordination", "variable", "updated"],
            &[("version", next.version as f64)],
            &[("variable", mabeam_supervision_core::MetaValue::Str(name))],
        );
        self.coordinator
            .record(
                "coordination.variables",
                "updated",
                json!({"variable": name, "value": next.value, "version": next.version}),
            )
            .await;
        Ok(Updated {
            current: next,
            applied,
        })
    }

    /// Casts the new value to every subscriber, under the variable's write
    /// order. A subscriber that cannot be reached is skipped (it is told
    /// the next value if it is back).
    fn broadcast(&self, name: &str, variable: &Variable, next: &Versioned) {
        let subscribers = variable.subscribers.read();
        let subscribers = &subscribers.0;
        if subscribers.is_empty() {
            return;
        }
        let envelope = Envelope::new(
            CHANGED_PROTOCOL,
            json!({"variable": name, "value": next.value, "version": next.version}),
            Duration::from_secs(5),
        );
        let directory = self.coordinator.directory();
        for agent in subscribers.iter() {
            let _ = directory.cast(agent, envelope.clone());
        }
    }

    /// Asks every agent of `kind` to apply the value, within `timeout`.
    async fn configure(
        &self,
        name: &str,
        kind: &str,
        next: &Versioned,
        timeout: Duration,
    ) -> Applied {
        let agents = self.coordinator.directory().agents_of_kind(kind);
        let envelope = Envelope::new(
            CONFIGURE_PROTOCOL,
            json!({"variable": name, "value": next.value, "version": next.version}),
            timeout,
        );
        let mut applied = Applied::default();
        let replies = ask_all(
            self.coordinator.directory().as_ref(),
            &agents,
            &envelope,
            self.coordinator.clock(),
        )
        .await;
        for reply in replies {
            match reply.answer {
                Ok(_) => applied.applied.push(reply.agent),
                Err(mabeam_supervision_core::DirectoryError::Timeout(_)) => {
                    applied.timed_out.push(reply.agent)
                }
                Err(err) => applied.failed.push((reply.agent, err.to_string())),
            }
        }
        applied.applied.sort();
        applied.timed_out.sort();
        applied
    }
}
