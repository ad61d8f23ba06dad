//! The checks and the start order of an application's services, computed
//! before anything starts: duplicate names, missing dependencies, cycles;
//! then Kahn's algorithm, ties broken by declaration order. Also the
//! dependency closure of a subset.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use super::{ApplicationError, Service};

/// The start order of a list of services and what each needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// Indices into the declared services, in start order.
    pub(super) order: Vec<usize>,
    /// For each position of `order`: the positions (in `order`) of every
    /// service it depends on, directly or not, ascending.
    pub(super) needs: Vec<Vec<usize>>,
}

/// Names to indices; a duplicate name is an error.
fn index(services: &[Arc<dyn Service>]) -> Result<HashMap<&str, usize>, ApplicationError> {
    let mut index = HashMap::with_capacity(services.len());
    for (i, service) in services.iter().enumerate() {
        if index.insert(service.name(), i).is_some() {
            return Err(ApplicationError::DuplicateService(service.name().into()));
        }
    }
    Ok(index)
}

/// The direct dependencies of each service, as indices, without repeats;
/// a dependency that is not defined is an error.
fn dependencies(
    services: &[Arc<dyn Service>],
    index: &HashMap<&str, usize>,
) -> Result<Vec<Vec<usize>>, ApplicationError> {
    services
        .iter()
        .map(|service| {
            let mut deps: Vec<usize> = Vec::new();
            for name in service.dependencies() {
                let Some(&d) = index.get(name) else {
                    return Err(ApplicationError::MissingDependency {
                        service: service.name().into(),
                        dependency: name.into(),
                    });
                };
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
            Ok(deps)
        })
        .collect()
}

/// Checks the services and computes their start order: each service after
/// all it depends on; among those ready at once, the one declared first.
pub(super) fn plan(services: &[Arc<dyn Service>]) -> Result<Plan, ApplicationError> {
    let index = index(services)?;
    let deps = dependencies(services, &index)?;
    let n = services.len();

    // Kahn's algorithm: `waiting[i]` counts the dependencies of i not yet
    // placed; the ready set is ordered by declaration.
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &j in &dependents[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.insert(j);
            }
        }
    }
    if order.len() < n {
        return Err(ApplicationError::DependencyCycle(cycle(
            services, &deps, &waiting,
        )));
    }

    let mut position = vec![0; n];
    for (p, &i) in order.iter().enumerate() {
        position[i] = p;
    }
    let mut needs: Vec<Vec<usize>> = Vec::with_capacity(n);
    for &i in &order {
        let mut all = BTreeSet::new();
        for &d in &deps[i] {
            let p = position[d];
            all.insert(p);
            // `p` comes earlier in the order, so its needs are known.
            all.extend(needs[p].iter().copied());
        }
        needs.push(all.into_iter().collect());
    }
    Ok(Plan { order, needs })
}

/// A cycle among the services Kahn's algorithm could not place: each of
/// them still waits on a dependency that is itself unplaced, so following
/// those from the first one declared must come back to a service already
/// seen. Returns the cycle in dependency order, starting at that service.
fn cycle(services: &[Arc<dyn Service>], deps: &[Vec<usize>], waiting: &[usize]) -> Vec<Arc<str>> {
    let unplaced = |i: usize| waiting[i] > 0;
    let Some(mut current) = (0..services.len()).find(|&i| unplaced(i)) else {
        return Vec::new();
    };
    let mut path: Vec<usize> = Vec::new();
    loop {
        if let Some(start) = path.iter().position(|&i| i == current) {
            return path[start..]
                .iter()
                .map(|&i| services[i].name().into())
                .collect();
        }
        path.push(current);
        match deps[current].iter().copied().find(|&d| unplaced(d)) {
            Some(next) => current = next,
            // Cannot happen (an unplaced service waits on an unplaced
            // dependency); answer with the path rather than panic.
            None => return path.iter().map(|&i| services[i].name().into()).collect(),
        }
    }
}

/// The services `wanted` and everything they depend on, directly or not:
/// their indices in declaration order, and which of them were not asked
/// for (the dependencies that came along), in declaration order too.
pub(super) fn closure(
    services: &[Arc<dyn Service>],
    wanted: &[&str],
) -> Result<(Vec<usize>, Vec<usize>), ApplicationError> {
    let index = index(services)?;
    let mut asked = vec![false; services.len()];
    let mut included = vec![false; services.len()];
    let mut stack = Vec::new();
    for name in wanted {
        let &i = index
            .get(name)
            .ok_or_else(|| ApplicationError::UnknownService((*name).into()))?;
        asked[i] = true;
        stack.push(i);
    }
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut included[i], true) {
            continue;
        }
        for name in services[i].dependencies() {
            let &d = index
                .get(name)
                .ok_or_else(|| ApplicationError::MissingDependency {
                    service: services[i].name().into(),
                    dependency: name.into(),
                })?;
            if !included[d] {
                stack.push(d);
            }
        }
    }
    let selected = (0..services.len()).filter(|&i| included[i]).collect();
    let added = (0..services.len())
        .filter(|&i| included[i] && !asked[i])
        .collect();
    Ok((selected, added))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ServiceStart, Supervisor, SupervisorFlags};

    struct S(&'static str, Vec<&'static str>);

    impl Service for S {
        fn name(&self) -> &str {
            self.0
        }
        fn dependencies(&self) -> Vec<&str> {
            self.1.clone()
        }
        fn start_spec(&self) -> ServiceStart {
            Supervisor::child_spec(self.0, SupervisorFlags::default(), []).into()
        }
    }

    fn services(list: &[(&'static str, &[&'static str])]) -> Vec<Arc<dyn Service>> {
        list.iter()
            .map(|(name, deps)| Arc::new(S(name, deps.to_vec())) as Arc<dyn Service>)
            .collect()
    }

    fn names(services: &[Arc<dyn Service>], plan: &Plan) -> Vec<String> {
        plan.order
            .iter()
            .map(|&i| services[i].name().to_owned())
            .collect()
    }

    #[test]
    fn ties_are_broken_by_declaration_order() {
        let s = services(&[("c", &[]), ("b", &[]), ("a", &["c"]), ("d", &[])]);
        let plan = plan(&s).unwrap();
        assert_eq!(names(&s, &plan), ["c", "b", "a", "d"]);
    }

    #[test]
    fn dependencies_declared_later_start_first() {
        let s = services(&[("web", &["db", "cache"]), ("cache", &["db"]), ("db", &[])]);
        let plan = plan(&s).unwrap();
        assert_eq!(names(&s, &plan), ["db", "cache", "web"]);
        // web (position 2) needs db (0) and cache (1); cache needs db.
        assert_eq!(plan.needs, [vec![], vec![0], vec![0, 1]]);
    }

    #[test]
    fn repeated_dependency_counts_once() {
        let s = services(&[("a", &[]), ("b", &["a", "a"])]);
        assert_eq!(names(&s, &plan(&s).unwrap()), ["a", "b"]);
    }

    #[test]
    fn self_dependency_is_a_cycle_of_one() {
        let s = services(&[("a", &["a"])]);
        match plan(&s) {
            Err(ApplicationError::DependencyCycle(cycle)) => assert_eq!(cycle, ["a".into()]),
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn cycle_behind_a_tail_names_only_the_cycle() {
        // x waits on the cycle a -> b -> c -> a without being part of it.
        let s = services(&[("x", &["a"]), ("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        match plan(&s) {
            Err(ApplicationError::DependencyCycle(cycle)) => {
                let cycle: Vec<&str> = cycle.iter().map(|s| &**s).collect();
                assert_eq!(cycle, ["a", "b", "c"]);
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn closure_of_nothing_is_empty() {
        let s = services(&[("a", &[])]);
        assert_eq!(closure(&s, &[]).unwrap(), (vec![], vec![]));
    }
}
