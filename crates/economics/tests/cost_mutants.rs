//! The assignment solver's parts that `cargo xtask mutants economics`
//! found no test checking: each test here fails with the mutant it names
//! (see the README's testing section).

use std::collections::HashMap;

use mabeam_economics::{CostModel, Task, Worker, assign, hungarian};

// Forbidden pairs must cost more than any allowed assignment even when
// the allowed costs are small: with costs of 1, the forbidden pair is
// never taken (mutant: its price `(max + 1) * (n + 1)` as `(max - 1) *
// (n + 1)`, free when the costs are 1, so the solver took it and found
// no assignment).
#[test]
fn small_costs_never_make_a_forbidden_pair_cheap() {
    let costs = vec![vec![Some(1.0), None], vec![Some(1.0), Some(1.0)]];
    assert_eq!(hungarian(&costs), Some(vec![0, 1]));
}

// Nothing used costs nothing, not even the fixed part (mutant: `units >
// 0.0` as `>=` in `CostModel::cost`, which charged the fixed part for 0
// units).
#[test]
fn nothing_used_costs_nothing() {
    let model = CostModel::new(5.0, 2.0).unwrap();
    assert_eq!(model.cost(0.0), 0.0);
    assert_eq!(model.cost(1.0), 7.0);
}

// A matrix with a row shorter than the first is refused (mutant: `||` as
// `&&` in `hungarian`'s shape check, which read past the short row).
#[test]
fn a_ragged_matrix_is_refused() {
    let ragged = vec![vec![Some(1.0), Some(2.0)], vec![Some(1.0)]];
    assert_eq!(hungarian(&ragged), None);
}

// With every allowed cost 0, a forbidden pair still costs more than the
// assignment that avoids it (mutant: `max + 1` as `max * 1` in the
// forbidden price, which made it free: the solver took it, and then
// found no assignment).
#[test]
fn free_allowed_pairs_never_make_a_forbidden_pair_free() {
    let costs = vec![vec![None, Some(0.0)], vec![Some(0.0), Some(0.0)]];
    assert_eq!(hungarian(&costs), Some(vec![1, 0]));
}

// As many tasks as agents: each agent takes one (mutant: `>` as `==` in
// `assign`'s count check, which refused exactly that case as more tasks
// than agents).
#[test]
fn as_many_tasks_as_agents_are_assigned() {
    let worker = |name: &str| Worker {
        agent: name.into(),
        models: HashMap::from([("cpu".to_owned(), CostModel::new(0.0, 1.0).unwrap())]),
        budget: 100.0,
    };
    let task = |id: &str| Task {
        id: id.into(),
        demand: HashMap::from([("cpu".to_owned(), 1.0)]),
    };
    let plan = assign(&[task("a"), task("b")], &[worker("x"), worker("y")]).unwrap();
    assert_eq!(plan.placements.len(), 2);
    assert_eq!(plan.total, 2.0);
}
