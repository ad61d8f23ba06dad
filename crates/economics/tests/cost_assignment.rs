//! Cost models and the least-cost assignment, against brute force.

use std::collections::HashMap;

use mabeam_economics::{CostModel, Task, Worker, assign, hungarian};
use mabeam_supervision_core::ErrorCode;
use proptest::prelude::*;

/// The least total over every injective assignment of rows to columns.
fn brute_force(costs: &[Vec<Option<f64>>]) -> Option<f64> {
    fn go(costs: &[Vec<Option<f64>>], row: usize, used: &mut Vec<bool>) -> Option<f64> {
        if row == costs.len() {
            return Some(0.0);
        }
        let mut best: Option<f64> = None;
        for j in 0..used.len() {
            if let (false, Some(c)) = (used[j], costs[row][j]) {
                used[j] = true;
                if let Some(rest) = go(costs, row + 1, used) {
                    best = Some(best.map_or(c + rest, |b: f64| b.min(c + rest)));
                }
                used[j] = false;
            }
        }
        best
    }
    let m = costs.first().map_or(0, Vec::len);
    go(costs, 0, &mut vec![false; m])
}

fn matrix() -> impl Strategy<Value = Vec<Vec<Option<f64>>>> {
    (1usize..6, 0usize..3).prop_flat_map(|(n, extra)| {
        let cell = prop_oneof![4 => (0u32..100).prop_map(|c| Some(c as f64)), 1 => Just(None)];
        proptest::collection::vec(proptest::collection::vec(cell, n + extra), n)
    })
}

proptest! {
    // The Hungarian method finds the brute-force optimum, using allowed
    // pairs only and each column once; it says None exactly when brute
    // force finds nothing.
    #[test]
    fn hungarian_matches_brute_force(costs in matrix()) {
        let expected = brute_force(&costs);
        let got = hungarian(&costs);
        prop_assert_eq!(got.is_some(), expected.is_some());
        if let Some(columns) = got {
            let mut seen = std::collections::HashSet::new();
            let mut total = 0.0;
            for (i, &j) in columns.iter().enumerate() {
                prop_assert!(seen.insert(j));
                total += costs[i][j].unwrap();
            }
            prop_assert_eq!(Some(total), expected);
        }
    }
}

fn worker(name: &str, models: &[(&str, f64, f64)], budget: f64) -> Worker {
    Worker {
        agent: name.into(),
        models: models
            .iter()
            .map(|(r, fixed, per_unit)| {
                ((*r).to_owned(), CostModel::new(*fixed, *per_unit).unwrap())
            })
            .collect(),
        budget,
    }
}

fn task(id: &str, demand: &[(&str, f64)]) -> Task {
    Task {
        id: id.into(),
        demand: demand
            .iter()
            .map(|(r, u)| ((*r).to_owned(), *u))
            .collect::<HashMap<_, _>>(),
    }
}

// Budgets and missing models forbid pairs; infeasible is a typed error.
#[test]
fn budgets_and_models_constrain_the_assignment() {
    let workers = [
        worker("gpu-box", &[("gpu", 5.0, 2.0), ("cpu", 0.0, 1.0)], 40.0),
        worker("cpu-box", &[("cpu", 1.0, 0.5)], 100.0),
        worker("tiny", &[("cpu", 0.0, 0.1)], 1.0),
    ];
    let tasks = [
        task("train", &[("gpu", 10.0), ("cpu", 2.0)]),
        task("etl", &[("cpu", 20.0)]),
    ];
    let plan = assign(&tasks, &workers).unwrap();
    let agents: Vec<&str> = plan.placements.iter().map(|p| p.agent.as_str()).collect();
    assert_eq!(agents, ["gpu-box", "cpu-box"]);
    assert_eq!(plan.total, 27.0 + 11.0);

    // Over budget everywhere: infeasible, naming the task.
    let err = assign(&[task("huge", &[("gpu", 100.0)])], &workers).unwrap_err();
    assert_eq!(err.code(), 7202);
    assert!(err.to_string().contains("huge"));
    // More tasks than agents; two tasks only one agent can take.
    assert_eq!(
        assign(
            &[
                task("a", &[]),
                task("b", &[]),
                task("c", &[]),
                task("d", &[])
            ],
            &workers
        )
        .unwrap_err()
        .code(),
        7202
    );
    assert_eq!(
        assign(
            &[task("g1", &[("gpu", 1.0)]), task("g2", &[("gpu", 1.0)])],
            &workers
        )
        .unwrap_err()
        .code(),
        7202
    );
    // Bad input.
    assert_eq!(
        assign(&[task("bad", &[("cpu", f64::NAN)])], &workers)
            .unwrap_err()
            .code(),
        7201
    );
    assert_eq!(CostModel::new(-1.0, 0.0).unwrap_err().code(), 7201);
}
