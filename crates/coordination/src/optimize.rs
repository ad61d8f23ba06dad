//! Parameter optimisation across agents: candidate parameter sets drawn
//! from a search space are evaluated by agents in parallel, and the best
//! is kept and can be applied to the universal variables.
//!
//! Each evaluation is an ask of protocol [`EVALUATE_PROTOCOL`] with body
//! `{"params": {...}, "budget": b}`, answered `{"score": x}` (higher is
//! better unless the spec minimises). An evaluation whose agent crashes,
//! times out or answers nonsense is retried on the next agent, up to
//! `retries` times; a trial that never gets a score is kept with its
//! error. Draws come from a seeded generator: the same seed, space and
//! answers give the same trials.
//!
//! | method | candidates |
//! |---|---|
//! | [`Method::Random`] | `trials` points drawn uniformly |
//! | [`Method::Grid`] | every combination of `points` values per parameter (choices: every option) |
//! | [`Method::SuccessiveHalving`] | `candidates` random points at budget `min_budget`; the best `1/eta` go on with `eta` times the budget, until one is left (Jamieson and Talwalkar) |

use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use mabeam_supervision_core::{AgentId, AgentSelection, Envelope};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{CoordinationError, Coordinator, VariableSpace};

/// The protocol of evaluation requests.
pub const EVALUATE_PROTOCOL: &str = "coordination.evaluate";

/// One dimension of a search space.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// A real number in `[min, max]`.
    Float {
        /// The parameter's (and variable's) name.
        name: String,
        /// The least.
        min: f64,
        /// The most.
        max: f64,
    },
    /// A whole number in `[min, max]`.
    Int {
        /// The name.
        name: String,
        /// The least.
        min: i64,
        /// The most.
        max: i64,
    },
    /// One of these values.
    Choice {
        /// The name.
        name: String,
        /// The options.
        options: Vec<Value>,
    },
}

impl Param {
    fn name(&self) -> &str {
        match self {
            Param::Float { name, .. } | Param::Int { name, .. } | Param::Choice { name, .. } => {
                name
            }
        }
    }

    fn check(&self) -> Result<(), CoordinationError> {
        let bad = |why: String| {
            Err(CoordinationError::Invalid(format!(
                "parameter {}: {why}",
                self.name()
            )))
        };
        match self {
            Param::Float { min, max, .. }
                if !(min.is_finite() && max.is_finite() && min <= max) =>
            {
                bad(format!("range {min}..={max}"))
            }
            Param::Int { min, max, .. } if min > max => bad(format!("range {min}..={max}")),
            Param::Choice { options, .. } if options.is_empty() => bad("no options".into()),
            _ => Ok(()),
        }
    }

    fn draw(&self, rng: &mut StdRng) -> Value {
        match self {
            Param::Float { min, max, .. } => json!(if min == max {
                *min
            } else {
                rng.random_range(*min..=*max)
            }),
            Param::Int { min, max, .. } => json!(rng.random_range(*min..=*max)),
            Param::Choice { options, .. } => options[rng.random_range(0..options.len())].clone(),
        }
    }

    fn grid(&self, points: usize) -> Vec<Value> {
        match self {
            Param::Float { min, max, .. } => {
                if points <= 1 || min == max {
                    return vec![json!((min + max) / 2.0)];
                }
                (0..points)
                    .map(|i| json!(min + (max - min) * i as f64 / (points - 1) as f64))
                    .collect()
            }
            Param::Int { min, max, .. } => {
                let span = (max - min) as u64 + 1;
                let points = (points as u64).clamp(1, span);
                let mut values: Vec<i64> = (0..points)
                    .map(|i| {
                        if points == 1 {
                            *min
                        } else {
                            min + ((max - min) as f64 * i as f64 / (points - 1) as f64).round()
                                as i64
                        }
                    })
                    .collect();
                values.dedup();
                values.into_iter().map(|v| json!(v)).collect()
            }
            Param::Choice { options, .. } => options.clone(),
        }
    }
}

/// How candidates are chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Random points.
    Random {
        /// How many.
        trials: usize,
    },
    /// A grid.
    Grid {
        /// Values per numeric parameter.
        points: usize,
    },
    /// Successive halving.
    SuccessiveHalving {
        /// Points at the first rung.
        candidates: usize,
        /// The first rung's budget.
        min_budget: f64,
        /// The reduction factor (at least 2).
        eta: usize,
    },
}

/// An optimisation to run.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizeSpec {
    /// The search space.
    pub space: Vec<Param>,
    /// How candidates are chosen.
    pub method: Method,
    /// The agents that evaluate.
    pub evaluators: AgentSelection,
    /// How long one evaluation may take.
    pub timeout: Duration,
    /// How many other agents a failed evaluation is retried on.
    pub retries: usize,
    /// The seed of the draws.
    pub seed: u64,
    /// Lower scores are better.
    pub minimize: bool,
}

/// One evaluated (or failed) candidate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// The parameters.
    pub params: Map<String, Value>,
    /// The budget it was evaluated with.
    pub budget: f64,
    /// Its score, if an agent gave one.
    pub score: Option<f64>,
    /// The agent that scored it.
    pub agent: Option<AgentId>,
    /// How many agents were tried.
    pub attempts: usize,
    /// Why it has no score.
    pub error: Option<String>,
}

/// The outcome of an optimisation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizationResult {
    /// The best trial, if any scored.
    pub best: Option<Trial>,
    /// Every trial, in the order run.
    pub trials: Vec<Trial>,
}

impl OptimizationResult {
    /// Writes the best parameters to the variables of the same names
    /// (last-writer-wins or by their policies); returns the variables set.
    pub async fn apply(&self, space: &VariableSpace) -> Result<Vec<String>, CoordinationError> {
        let Some(best) = &self.best else {
            return Ok(Vec::new());
        };
        let mut applied = Vec::new();
        for (name, value) in &best.params {
            space.update(name, value.clone(), None).await?;
            applied.push(name.clone());
        }
        Ok(applied)
    }
}

impl Coordinator {
    /// Runs an optimisation: see the [module docs](crate::optimize).
    pub async fn optimize(
        &self,
        spec: OptimizeSpec,
    ) -> Result<OptimizationResult, CoordinationError> {
        if spec.space.is_empty() {
            return Err(CoordinationError::Invalid("search space: empty".into()));
        }
        for param in &spec.space {
            param.check()?;
        }
        if spec.timeout.is_zero() {
            return Err(CoordinationError::Invalid(
                "evaluation timeout: must be above 0".into(),
            ));
        }
        let evaluators = self.resolve(&spec.evaluators)?;
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let draw = |rng: &mut StdRng| -> Map<String, Value> {
            spec.space
                .iter()
                .map(|p| (p.name().to_owned(), p.draw(rng)))
                .collect()
        };
        let mut trials = Vec::new();
        match &spec.method {
            Method::Random { trials: n } => {
                let candidates: Vec<_> = (0..*n).map(|_| draw(&mut rng)).collect();
                trials = self.evaluate(&spec, &evaluators, candidates, 1.0).await;
            }
            Method::Grid { points } => {
                let mut candidates = vec![Map::new()];
                for param in &spec.space {
                    let values = param.grid(*points);
                    candidates = candidates
                        .into_iter()
                        .flat_map(|c| {
                            values.iter().map(move |v| {
                                let mut c = c.clone();
                                c.insert(param.name().to_owned(), v.clone());
                                c
                            })
                        })
                        .collect();
                }
                trials = self.evaluate(&spec, &evaluators, candidates, 1.0).await;
            }
            Method::SuccessiveHalving {
                candidates,
                min_budget,
                eta,
            } => {
                if *eta < 2 || *candidates == 0 || !(min_budget.is_finite() && *min_budget > 0.0) {
                    return Err(CoordinationError::Invalid(
                        "successive halving: eta >= 2, candidates >= 1, min_budget > 0".into(),
                    ));
                }
                let mut rung: Vec<Map<String, Value>> =
                    (0..*candidates).map(|_| draw(&mut rng)).collect();
                let mut budget = *min_budget;
                loop {
                    let mut scored = self.evaluate(&spec, &evaluators, rung, budget).await;
                    trials.extend(scored.iter().cloned());
                    scored.retain(|t| t.score.is_some());
                    sort_best_first(&mut scored, spec.minimize);
                    let keep = (scored.len() / eta).max(1);
                    if scored.len() <= 1 {
                        break;
                    }
                    rung = scored.into_iter().take(keep).map(|t| t.params).collect();
                    budget *= *eta as f64;
                }
            }
        }
        let mut scored: Vec<&Trial> = trials.iter().filter(|t| t.score.is_some()).collect();
        // The best at the highest budget it reached, earliest among equals.
        scored.sort_by(|a, b| {
            b.budget.total_cmp(&a.budget).then_with(|| {
                let (x, y) = (a.score.unwrap(), b.score.unwrap());
                if spec.minimize {
                    x.total_cmp(&y)
                } else {
                    y.total_cmp(&x)
                }
            })
        });
        let best = scored.first().map(|t| (*t).clone());
        self.telemetry().emit(
            &["coordination", "optimize", "done"],
            &[
                ("trials", trials.len() as f64),
                (
                    "best",
                    best.as_ref().and_then(|t| t.score).unwrap_or(f64::NAN),
                ),
            ],
            &[],
        );
        self.record(
            "coordination.optimizations",
            "done",
            json!({"best": best, "trials": trials.len()}),
        )
        .await;
        Ok(OptimizationResult { best, trials })
    }

    /// Evaluates every candidate in parallel, candidate `i` first on
    /// evaluator `i mod n`, then on the next ones after a failure.
    async fn evaluate(
        &self,
        spec: &OptimizeSpec,
        evaluators: &[AgentId],
        candidates: Vec<Map<String, Value>>,
        budget: f64,
    ) -> Vec<Trial> {
        let directory = self.directory().clone();
        let runs = candidates.into_iter().enumerate().map(|(i, params)| {
            let directory: Arc<dyn mabeam_supervision_core::AgentDirectory> = directory.clone();
            async move {
                let mut error = None;
                let attempts = (spec.retries + 1).min(evaluators.len().max(1));
                for attempt in 0..attempts {
                    let agent = &evaluators[(i + attempt) % evaluators.len()];
                    let envelope = Envelope::new(
                        EVALUATE_PROTOCOL,
                        json!({"params": params, "budget": budget}),
                        spec.timeout,
                    );
                    match directory.ask(agent, envelope).await {
                        Ok(answer) => match answer["score"].as_f64().filter(|s| s.is_finite()) {
                            Some(score) => {
                                return Trial {
                                    params,
                                    budget,
                                    score: Some(score),
                                    agent: Some(agent.clone()),
                                    attempts: attempt + 1,
                                    error: None,
                                };
                            }
                            None => error = Some(format!("{agent} answered no finite score")),
                        },
                        Err(err) => error = Some(err.to_string()),
                    }
                }
                Trial {
                    params,
                    budget,
                    score: None,
                    agent: None,
                    attempts,
                    error,
                }
            }
        });
        join_all(runs).await
    }
}

fn sort_best_first(trials: &mut [Trial], minimize: bool) {
    trials.sort_by(|a, b| {
        let (x, y) = (a.score.unwrap_or(f64::NAN), b.score.unwrap_or(f64::NAN));
        if minimize {
            x.total_cmp(&y)
        } else {
            y.total_cmp(&x)
        }
    });
}
