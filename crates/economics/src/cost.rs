//! Cost models per resource, and the cost-optimal assignment of tasks to
//! agents under budgets.
//!
//! [`assign`] solves the assignment problem (each task to a different
//! agent, least total cost, no agent over its budget) with the Hungarian
//! method in its O(n²m) potentials form (Kuhn–Munkres as refined by
//! Jonker and Volgenant). It is written here rather than taken from a
//! crate: the crates at hand (`pathfinding`'s `kuhn_munkres`) maximise
//! integer weights over complete matrices, while costs here are real
//! numbers and some pairs are forbidden by budgets. A test checks it
//! against brute force on small cases.

use std::collections::HashMap;

use mabeam_supervision_core::AgentId;
use serde::Serialize;

use crate::AssignmentError;

/// What one unit of a resource costs on an agent: `fixed` once when a task
/// uses the resource at all, plus `per_unit` for each unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostModel {
    /// Paid once per task that uses the resource.
    pub fixed: f64,
    /// Paid per unit used.
    pub per_unit: f64,
}

impl CostModel {
    /// A model; both parts must be finite and not negative.
    pub fn new(fixed: f64, per_unit: f64) -> Result<Self, AssignmentError> {
        for (name, value) in [("fixed", fixed), ("per_unit", per_unit)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(AssignmentError::Invalid(format!(
                    "cost model {name} {value}: must be finite and not negative"
                )));
            }
        }
        Ok(CostModel { fixed, per_unit })
    }

    /// The cost of `units` of the resource.
    pub fn cost(&self, units: f64) -> f64 {
        if units > 0.0 {
            self.fixed + self.per_unit * units
        } else {
            0.0
        }
    }
}

/// An agent that can take a task: its cost model per resource and the
/// most one task may cost on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    /// The agent.
    pub agent: AgentId,
    /// What each resource costs on it; a task needing a resource it has no
    /// model for cannot go to it.
    pub models: HashMap<String, CostModel>,
    /// The most a task may cost on it.
    pub budget: f64,
}

/// A task: the units of each resource it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// Its name.
    pub id: String,
    /// Units needed per resource.
    pub demand: HashMap<String, f64>,
}

/// The cost of `task` on `worker`, if the worker can take it within its
/// budget.
pub fn task_cost(task: &Task, worker: &Worker) -> Option<f64> {
    let mut total = 0.0;
    for (resource, units) in &task.demand {
        total += worker.models.get(resource)?.cost(*units);
    }
    (total <= worker.budget).then_some(total)
}

/// One task given to one agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placement {
    /// The task.
    pub task: String,
    /// The agent.
    pub agent: AgentId,
    /// What it costs there.
    pub cost: f64,
}

/// A least-cost assignment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assignment {
    /// Each task's agent, in task order.
    pub placements: Vec<Placement>,
    /// The total cost.
    pub total: f64,
}

/// Gives each task a different agent at least total cost, within each
/// agent's budget per task. Refused when a task or cost is invalid, or
/// when no assignment fits ([`AssignmentError::Infeasible`] names a task
/// that cannot be placed).
///
/// # Example
///
/// ```
/// use std::collections::HashMap;
/// use mabeam_economics::{CostModel, Task, Worker, assign};
///
/// let worker = |name: &str, per_unit: f64| Worker {
///     agent: name.into(),
///     models: HashMap::from([("cpu".to_owned(), CostModel::new(0.0, per_unit).unwrap())]),
///     budget: 100.0,
/// };
/// let task = |id: &str, units: f64| Task { id: id.into(), demand: HashMap::from([("cpu".to_owned(), units)]) };
/// let plan = assign(&[task("big", 10.0), task("small", 1.0)], &[worker("fast", 1.0), worker("slow", 3.0)]).unwrap();
/// assert_eq!(plan.placements[0].agent.as_str(), "fast"); // 10 + 3 beats 30 + 1
/// assert_eq!(plan.total, 13.0);
/// ```
pub fn assign(tasks: &[Task], workers: &[Worker]) -> Result<Assignment, AssignmentError> {
    for task in tasks {
        if let Some((resource, units)) = task
            .demand
            .iter()
            .find(|(_, u)| !(u.is_finite() && **u >= 0.0))
        {
            return Err(AssignmentError::Invalid(format!(
                "task {} demand {resource} {units}: must be finite and not negative",
                task.id
            )));
        }
    }
    if tasks.is_empty() {
        return Ok(Assignment {
            placements: Vec::new(),
            total: 0.0,
        });
    }
    if tasks.len() > workers.len() {
        return Err(AssignmentError::Infeasible(format!(
            "{} tasks for {} agents",
            tasks.len(),
            workers.len()
        )));
    }
    let costs: Vec<Vec<Option<f64>>> = tasks
        .iter()
        .map(|task| {
            workers
                .iter()
                .map(|worker| task_cost(task, worker))
                .collect()
        })
        .collect();
    if let Some(i) = costs.iter().position(|row| row.iter().all(Option::is_none)) {
        return Err(AssignmentError::Infeasible(format!(
            "no agent can take task {} within its budget",
            tasks[i].id
        )));
    }
    let columns = hungarian(&costs).ok_or_else(|| {
        AssignmentError::Infeasible(
            "no assignment gives every task its own agent within budget".into(),
        )
    })?;
    let placements: Vec<Placement> = columns
        .iter()
        .enumerate()
        .map(|(i, &j)| Placement {
            task: tasks[i].id.clone(),
            agent: workers[j].agent.clone(),
            cost: costs[i][j].expect("the solver uses allowed pairs only"),
        })
        .collect();
    let total = placements.iter().map(|p| p.cost).sum();
    Ok(Assignment { placements, total })
}

/// The Hungarian method for an n x m cost matrix (n <= m), `None` marking
/// forbidden pairs: the column of each row in a least-cost assignment
/// using allowed pairs only, or `None` if there is none.
pub fn hungarian(costs: &[Vec<Option<f64>>]) -> Option<Vec<usize>> {
    let n = costs.len();
    let m = costs.first().map_or(0, Vec::len);
    if n == 0 {
        return Some(Vec::new());
    }
    if n > m || costs.iter().any(|row| row.len() != m) {
        return None;
    }
    // Forbidden pairs cost more than any allowed assignment in total.
    let allowed_max = costs
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, &c| a.max(c.abs()));
    let forbidden = (allowed_max + 1.0) * (n as f64 + 1.0);
    let cost = |i: usize, j: usize| costs[i][j].unwrap_or(forbidden);
    // 1-based potentials form: u rows, v columns, p[j] the row of column j.
    let (mut u, mut v) = (vec![0.0f64; n + 1], vec![0.0f64; m + 1]);
    let (mut p, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let (mut delta, mut j1) = (f64::INFINITY, 0);
            for j in 1..=m {
                if !used[j] {
                    let reduced = cost(i0 - 1, j - 1) - u[i0] - v[j];
                    if reduced < minv[j] {
                        minv[j] = reduced;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut columns = vec![0usize; n];
    for j in 1..=m {
        if p[j] != 0 {
            columns[p[j] - 1] = j - 1;
        }
    }
    columns
        .iter()
        .enumerate()
        .all(|(i, &j)| costs[i][j].is_some())
        .then_some(columns)
}
