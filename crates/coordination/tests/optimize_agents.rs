//! Parameter optimisation evaluated by agents.

mod common;

use std::{sync::Arc, time::Duration};

use mabeam_coordination::{
    Coordinator, Method, OptimizeSpec, Param, ValueType, VariableSpace, VariableSpec,
};
use mabeam_supervision_core::{
    AgentSelection, Clock, ErrorCode, ExitReason,
    testkit::{Answer, ScriptedDirectory},
};
use serde_json::{Value, json};

/// Score: -(x - 3)^2 - (y - 7)^2 (best at x = 3, y = 7), plus the budget
/// as a bonus so deeper rungs score truer.
fn evaluator(env: &mabeam_supervision_core::Envelope) -> Answer {
    let p = &env.body["params"];
    let (x, y) = (p["x"].as_f64().unwrap(), p["y"].as_i64().unwrap() as f64);
    Answer::Reply(json!({"score": -(x - 3.0).powi(2) - (y - 7.0).powi(2)}))
}

fn agents(n: usize) -> ScriptedDirectory {
    let agents = ScriptedDirectory::new();
    for i in 0..n {
        agents.add(format!("eval{i}"), "evaluator", evaluator);
    }
    agents
}

fn spec(method: Method, seed: u64) -> OptimizeSpec {
    OptimizeSpec {
        space: vec![
            Param::Float {
                name: "x".into(),
                min: 0.0,
                max: 10.0,
            },
            Param::Int {
                name: "y".into(),
                min: 0,
                max: 10,
            },
        ],
        method,
        evaluators: AgentSelection::Kind("evaluator".into()),
        timeout: Duration::from_millis(100),
        retries: 2,
        seed,
        minimize: false,
    }
}

#[tokio::test(start_paused = true)]
async fn grid_finds_the_optimum_on_the_grid() {
    common::bounded(
        "the test grid_finds_the_optimum_on_the_grid to finish",
        common::TEST_LIMIT,
        async {
            let coordinator = Coordinator::new(Arc::new(agents(3)), Clock::tokio());
            let result = coordinator
                .optimize(spec(Method::Grid { points: 11 }, 0))
                .await
                .unwrap();
            assert_eq!(result.trials.len(), 121);
            let best = result.best.unwrap();
            assert_eq!(
                (best.params["x"].clone(), best.params["y"].clone()),
                (json!(3.0), json!(7))
            );
            assert_eq!(best.score, Some(0.0));
            // Spread over the agents.
            let by: std::collections::HashSet<_> = result
                .trials
                .iter()
                .filter_map(|t| t.agent.clone())
                .collect();
            assert_eq!(by.len(), 3);
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn random_search_is_reproducible_with_a_seed() {
    common::bounded(
        "the test random_search_is_reproducible_with_a_seed to finish",
        common::TEST_LIMIT,
        async {
            let run = |seed| async move {
                let coordinator = Coordinator::new(Arc::new(agents(2)), Clock::tokio());
                coordinator
                    .optimize(spec(Method::Random { trials: 30 }, seed))
                    .await
                    .unwrap()
            };
            let (a, b, c) = (run(5).await, run(5).await, run(6).await);
            let params = |r: &mabeam_coordination::OptimizationResult| {
                r.trials
                    .iter()
                    .map(|t| Value::Object(t.params.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(params(&a), params(&b));
            assert_ne!(params(&a), params(&c));
            let best = a.best.unwrap().score.unwrap();
            assert!(a.trials.iter().all(|t| t.score.unwrap() <= best));
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn successive_halving_narrows_with_growing_budgets() {
    common::bounded(
        "the test successive_halving_narrows_with_growing_budgets to finish",
        common::TEST_LIMIT,
        async {
            let coordinator = Coordinator::new(Arc::new(agents(4)), Clock::tokio());
            let method = Method::SuccessiveHalving {
                candidates: 27,
                min_budget: 1.0,
                eta: 3,
            };
            let result = coordinator.optimize(spec(method, 11)).await.unwrap();
            let budgets: Vec<f64> = result.trials.iter().map(|t| t.budget).collect();
            assert_eq!(budgets.iter().filter(|b| **b == 1.0).count(), 27);
            assert_eq!(budgets.iter().filter(|b| **b == 3.0).count(), 9);
            assert_eq!(budgets.iter().filter(|b| **b == 9.0).count(), 3);
            assert_eq!(budgets.iter().filter(|b| **b == 27.0).count(), 1);
            let best = result.best.unwrap();
            assert_eq!(best.budget, 27.0);
            // The survivor is the best of the first rung.
            let first_best = result
                .trials
                .iter()
                .filter(|t| t.budget == 1.0)
                .map(|t| t.score.unwrap())
                .fold(f64::MIN, f64::max);
            assert_eq!(best.score.unwrap(), first_best);
        },
    )
    .await;
}

// A crashed evaluator's trial is retried on another agent.
#[tokio::test(start_paused = true)]
async fn failed_evaluations_are_retried_elsewhere() {
    common::bounded(
        "the test failed_evaluations_are_retried_elsewhere to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            agents.add("crashy", "evaluator", |_| {
                Answer::Crash(ExitReason::error("segfault"))
            });
            agents.add("mute", "evaluator", |_| Answer::Silent);
            agents.add("good", "evaluator", evaluator);
            let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
            let result = coordinator
                .optimize(spec(Method::Random { trials: 6 }, 3))
                .await
                .unwrap();
            assert!(
                result.trials.iter().all(|t| t.score.is_some()),
                "{:?}",
                result.trials
            );
            assert!(
                result
                    .trials
                    .iter()
                    .all(|t| t.agent.as_ref().unwrap().as_str() == "good")
            );
            assert!(result.trials.iter().any(|t| t.attempts > 1));

            // No retries left: the trial keeps its error.
            let agents = ScriptedDirectory::new();
            agents.add("mute", "evaluator", |_| Answer::Silent);
            let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
            let result = coordinator
                .optimize(spec(Method::Random { trials: 2 }, 3))
                .await
                .unwrap();
            assert!(result.best.is_none());
            assert!(result.trials[0].error.as_ref().unwrap().contains("in time"));
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn best_parameters_apply_to_variables() {
    common::bounded(
        "the test best_parameters_apply_to_variables to finish",
        common::TEST_LIMIT,
        async {
            let agents = agents(2);
            let coordinator = Arc::new(Coordinator::new(Arc::new(agents), Clock::tokio()));
            let space = VariableSpace::new(coordinator.clone());
            space
                .define(VariableSpec::new(
                    "x",
                    ValueType::Float {
                        min: 0.0,
                        max: 10.0,
                    },
                    json!(0.0),
                ))
                .unwrap();
            space
                .define(VariableSpec::new(
                    "y",
                    ValueType::Integer { min: 0, max: 10 },
                    json!(0),
                ))
                .unwrap();
            let result = coordinator
                .optimize(spec(Method::Grid { points: 11 }, 0))
                .await
                .unwrap();
            let mut applied = result.apply(&space).await.unwrap();
            applied.sort();
            assert_eq!(applied, ["x", "y"]);
            assert_eq!(space.get("x").unwrap().value, json!(3.0));
            assert_eq!(space.get("y").unwrap().value, json!(7));

            let mut bad = spec(Method::Random { trials: 1 }, 0);
            bad.space = vec![Param::Int {
                name: "z".into(),
                min: 5,
                max: 1,
            }];
            assert_eq!(coordinator.optimize(bad).await.unwrap_err().code(), 6006);
        },
    )
    .await;
}
