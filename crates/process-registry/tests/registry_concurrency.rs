//! Consistency under concurrency: random interleavings of register,
//! lookup, unregister, join, leave and process death from several tasks,
//! checked against a model (property tests).

use std::collections::HashMap;

use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    Namespace, ProcessHandle, RegistryError, RegistryEvent, RegistryEvents, Telemetry,
    WeakProcessHandle,
};
use proptest::prelude::*;
use serde_json::json;

#[derive(kameo::Actor)]
struct Dummy;

const PROCESSES: usize = 4;
const NAMES: [&str; 3] = ["n0", "n1", "n2"];
const GROUPS: [&str; 2] = ["g0", "g1"];

#[derive(Debug, Clone)]
enum Op {
    Register(usize, usize),
    Unregister(usize),
    Lookup(usize),
    Join(usize, usize),
    Leave(usize, usize),
    Stop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PROCESSES;
    let n = 0..NAMES.len();
    let g = 0..GROUPS.len();
    prop_oneof![
        4 => (n.clone(), p.clone()).prop_map(|(n, p)| Op::Register(n, p)),
        2 => n.clone().prop_map(Op::Unregister),
        2 => n.prop_map(Op::Lookup),
        3 => (g.clone(), p.clone()).prop_map(|(g, p)| Op::Join(g, p)),
        2 => (g, p.clone()).prop_map(|(g, p)| Op::Leave(g, p)),
        1 => p.prop_map(Op::Stop),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn spawn_all() -> Vec<ProcessHandle> {
    let mut handles = Vec::new();
    for _ in 0..PROCESSES {
        handles.push(ProcessHandle::spawn::<Dummy>(Dummy).await.unwrap());
    }
    handles
}

/// The state as subscribers see it, built from events; every event is
/// checked against the state before it.
#[derive(Debug, Default, PartialEq)]
struct Model {
    names: HashMap<String, WeakProcessHandle>,
    groups: HashMap<String, Vec<WeakProcessHandle>>,
}

impl Model {
    fn apply(&mut self, event: RegistryEvent) -> Result<(), String> {
        match event {
            RegistryEvent::Registered { name, handle, .. } => {
                if let Some(holder) = self.names.get(&*name)
                    && *holder != handle
                {
                    return Err(format!(
                        "{name} registered to {handle:?} while held by {holder:?}"
                    ));
                }
                self.names.insert(name.to_string(), handle);
            }
            RegistryEvent::Unregistered { name, handle, .. } => {
                if self.names.get(&*name) != Some(&handle) {
                    return Err(format!(
                        "{name} unregistered from {handle:?}, not its holder"
                    ));
                }
                self.names.remove(&*name);
            }
            RegistryEvent::Joined { group, handle } => {
                self.groups
                    .entry(group.to_string())
                    .or_default()
                    .push(handle);
            }
            RegistryEvent::Left { group, handle, .. } => {
                let members = self.groups.get_mut(&*group).ok_or("left a missing group")?;
                let at = members
                    .iter()
                    .position(|m| *m == handle)
                    .ok_or("left by a non-member")?;
                members.remove(at);
                if members.is_empty() {
                    self.groups.remove(&*group);
                }
            }
            other => return Err(format!("unknown event {other:?}")),
        }
        Ok(())
    }

    /// The registry's state, read through its API, in the same shape
    /// (members sorted by id: only the multiset matters here).
    fn read(registry: &ProcessRegistry, ns: &Namespace) -> Model {
        let mut model = Model::default();
        for (name, handle, _) in registry.list(ns) {
            model.names.insert(name.to_string(), handle.downgrade());
        }
        for group in registry.groups(ns) {
            let members = registry.members(ns, &group);
            let members = members.iter().map(ProcessHandle::downgrade).collect();
            model.groups.insert(group.to_string(), members);
        }
        model.sort();
        model
    }

    fn sort(&mut self) {
        for members in self.groups.values_mut() {
            members.sort_by_key(|m| m.id());
        }
    }
}

/// Applies events until the model matches the registry (the cleanup
/// tasks of stopped processes send the last ones), failing after 10 s.
async fn converge(
    events: &mut RegistryEvents,
    model: &mut Model,
    registry: &ProcessRegistry,
    ns: &Namespace,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        while let Ok(event) = events.try_recv() {
            model.apply(event)?;
        }
        model.sort();
        let actual = Model::read(registry, ns);
        if *model == actual {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => model.apply(event)?,
            _ => {
                return Err(format!(
                    "never converged: events say {model:?}, registry says {actual:?}"
                ));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    // Several tasks run random operations at once; the event stream is a
    // consistent history, and it ends in the registry's final state, where
    // only live processes hold anything.
    #[test]
    fn concurrent_operations_match_the_event_model(
        tasks in proptest::collection::vec(proptest::collection::vec(op(), 1..16), 2..4)
    ) {
        let outcome: Result<(), String> = runtime().block_on(async move {
            let registry = ProcessRegistry::new(Telemetry::disabled());
            let ns = Namespace::unique_test();
            let mut events = registry.subscribe(&ns);
            let handles = spawn_all().await;
            let runs: Vec<_> = tasks.into_iter().map(|ops| {
                let (registry, handles) = (registry.clone(), handles.clone());
                tokio::spawn(async move {
                    let (mut registered, mut joined, mut left) = (0usize, 0usize, 0usize);
                    for op in ops {
                        match op {
                            Op::Register(n, p) => registered += usize::from(registry.register(&ns, NAMES[n], handles[p].clone(), json!(null)).is_ok()),
                            Op::Unregister(n) => { let _ = registry.unregister(&ns, NAMES[n]); }
                            Op::Lookup(n) => {
                                if let Some(holder) = registry.lookup(&ns, NAMES[n]) {
                                    assert!(handles.contains(&holder));
                                }
                            }
                            Op::Join(g, p) => joined += usize::from(registry.join(&ns, GROUPS[g], handles[p].clone()).is_ok()),
                            Op::Leave(g, p) => left += usize::from(registry.leave(&ns, GROUPS[g], &handles[p]).is_ok()),
                            Op::Stop(p) => { handles[p].stop().await; }
                        }
                        tokio::task::yield_now().await;
                    }
                    (registered, joined, left)
                })
            }).collect();
            let (mut registered, mut joined, mut left) = (0, 0, 0);
            for run in runs {
                let (r, j, l) = run.await.map_err(|e| e.to_string())?;
                registered += r; joined += j; left += l;
            }

            // Count what the events say about the calls while converging.
            let mut model = Model::default();
            let mut seen = Vec::new();
            while let Ok(event) = events.try_recv() {
                seen.push(event.clone());
                model.apply(event)?;
            }
            converge(&mut events, &mut model, &registry, &ns).await?;
            let registered_events = seen.iter().filter(|e| matches!(e, RegistryEvent::Registered { .. })).count();
            let joined_events = seen.iter().filter(|e| matches!(e, RegistryEvent::Joined { .. })).count();
            let left_by_call = seen.iter().filter(|e| matches!(e, RegistryEvent::Left { exit: None, .. })).count();
            if (registered_events, joined_events, left_by_call) != (registered, joined, left) {
                return Err(format!("calls succeeded {registered}/{joined}/{left} times, events say {registered_events}/{joined_events}/{left_by_call}"));
            }

            // Only live processes hold anything, and the index tracks
            // exactly them.
            let mut holders: Vec<_> = model.names.values().chain(model.groups.values().flatten()).cloned().collect();
            holders.sort_by_key(|h| h.id());
            holders.dedup();
            if let Some(dead) = holders.iter().find(|h| !h.is_alive()) {
                return Err(format!("dead {dead:?} still holds something"));
            }
            if registry.tracked_processes() != holders.len() {
                return Err(format!("index tracks {} processes, {} hold something", registry.tracked_processes(), holders.len()));
            }
            for handle in &handles {
                handle.stop().await;
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }

    // One task, random operations: every result is the one a sequential
    // model predicts.
    #[test]
    fn sequential_operations_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let outcome: Result<(), String> = runtime().block_on(async move {
            let registry = ProcessRegistry::new(Telemetry::disabled());
            let ns = Namespace::unique_test();
            let mut events = registry.subscribe(&ns);
            let handles = spawn_all().await;
            let mut names: HashMap<usize, usize> = HashMap::new();
            let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
            let mut alive = [true; PROCESSES];
            for op in ops {
                match op {
                    Op::Register(n, p) => {
                        let got = registry.register(&ns, NAMES[n], handles[p].clone(), json!(null));
                        let ok = match names.get(&n) {
                            _ if !alive[p] => matches!(got, Err(RegistryError::NotAlive)),
                            Some(&q) if q != p => matches!(&got, Err(RegistryError::AlreadyRegistered { holder, .. }) if *holder == handles[q]),
                            _ => { names.insert(n, p); got.is_ok() }
                        };
                        if !ok { return Err(format!("register {n} by {p}: {got:?}")); }
                    }
                    Op::Unregister(n) => {
                        let got = registry.unregister(&ns, NAMES[n]);
                        let ok = match names.remove(&n) {
                            Some(q) => got.as_ref().ok() == Some(&handles[q]),
                            None => matches!(got, Err(RegistryError::NotRegistered(_))),
                        };
                        if !ok { return Err(format!("unregister {n}: {got:?}")); }
                    }
                    Op::Lookup(n) => {
                        let got = registry.lookup(&ns, NAMES[n]);
                        if got != names.get(&n).map(|&q| handles[q].clone()) {
                            return Err(format!("lookup {n}: {got:?}"));
                        }
                    }
                    Op::Join(g, p) => {
                        let got = registry.join(&ns, GROUPS[g], handles[p].clone());
                        let ok = if alive[p] { groups.entry(g).or_default().push(p); got.is_ok() } else { matches!(got, Err(RegistryError::NotAlive)) };
                        if !ok { return Err(format!("join {g} by {p}: {got:?}")); }
                    }
                    Op::Leave(g, p) => {
                        let got = registry.leave(&ns, GROUPS[g], &handles[p]);
                        let members = groups.entry(g).or_default();
                        let ok = match members.iter().rposition(|&m| m == p) {
                            Some(at) => { members.remove(at); got.is_ok() }
                            None => matches!(got, Err(RegistryError::NotInGroup(_))),
                        };
                        if !ok { return Err(format!("leave {g} by {p}: {got:?}")); }
                    }
                    Op::Stop(p) => {
                        if !alive[p] { continue; }
                        // What p holds goes, each with an event from its
                        // cleanup task: wait for them all.
                        let held = names.values().filter(|&&q| q == p).count()
                            + groups.values().flatten().filter(|&&q| q == p).count();
                        names.retain(|_, q| *q != p);
                        groups.values_mut().for_each(|members| members.retain(|q| *q != p));
                        alive[p] = false;
                        handles[p].stop().await;
                        let mut gone = 0;
                        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
                        while gone < held {
                            let event = tokio::time::timeout_at(deadline, events.recv())
                                .await
                                .map_err(|_| format!("stop {p}: {gone} of {held} removals seen"))?;
                            match event {
                                Ok(RegistryEvent::Unregistered { handle, exit: Some(_), .. } | RegistryEvent::Left { handle, exit: Some(_), .. }) if handle == handles[p] => gone += 1,
                                Ok(_) => {}
                                Err(_) => return Err("event stream ended".into()),
                            }
                        }
                    }
                }
                let expected: usize = names.len();
                if registry.count(&ns) != expected {
                    return Err(format!("count {} != {expected}", registry.count(&ns)));
                }
            }
            for (g, members) in &groups {
                let got: Vec<_> = registry.members(&ns, GROUPS[*g]);
                let want: Vec<_> = members.iter().map(|&p| handles[p].clone()).collect();
                if got != want { return Err(format!("members of {g}: {got:?} != {want:?}")); }
            }
            for handle in &handles {
                handle.stop().await;
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
