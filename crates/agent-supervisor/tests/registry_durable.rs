//! Durable agents (issue 22): what a registry acknowledges is in its store,
//! and a registry started on that store brings every agent back as it was.
#![allow(missing_docs)]

mod common;

use std::{sync::Arc, time::Duration};

use common::RefusingStore;
use mabeam_agent_supervisor::{
    Activation, Agent, AgentConfig, AgentContext, AgentError, AgentRecipes, AgentRegistry,
    AgentRegistryOptions, CheckpointPolicy,
};
use mabeam_supervision_core::{
    AgentRecord, AgentRegistration, AgentStatus, AgentStore, AgentStoreError, AgentWrite,
    Checkpoint, MemoryAgentStore, StartError,
};
use serde_json::{Value, json};

/// Fails the test if `future` takes longer than five seconds.
async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A counter whose count is its checkpoint.
#[derive(Debug)]
struct Counter {
    count: i64,
}

enum Msg {
    Add(i64),
    Crash,
}

impl Agent for Counter {
    type Args = i64;
    type Message = Msg;
    type Reply = i64;
    type Checkpoint = i64;

    async fn on_start(start: i64, checkpoint: Option<i64>) -> Result<Self, StartError> {
        Ok(Counter {
            count: checkpoint.unwrap_or(start),
        })
    }

    async fn handle(&mut self, msg: Msg, _: &mut AgentContext<'_>) -> i64 {
        match msg {
            Msg::Add(n) => self.count += n,
            Msg::Crash => panic!("crash on request"),
        }
        self.count
    }

    fn checkpoint(&self) -> Option<i64> {
        Some(self.count)
    }
}

/// `counter` args: `{"start": n, "on_demand": bool}`.
fn counter(args: &Value) -> Result<AgentConfig, String> {
    let start = args["start"].as_i64().ok_or("no start")?;
    let activation = if args["on_demand"].as_bool() == Some(true) {
        Activation::OnDemand
    } else {
        Activation::Eager
    };
    Ok(AgentConfig::new::<Counter>("counter", start)
        .with_checkpoints(CheckpointPolicy::after_each_message())
        .with_activation(activation)
        .durable(args.clone()))
}

fn options(store: Arc<dyn AgentStore>) -> AgentRegistryOptions {
    AgentRegistryOptions::default()
        .with_store(store)
        .with_recipes(AgentRecipes::new().with("counter", counter))
}

async fn registry(store: Arc<dyn AgentStore>) -> AgentRegistry {
    let registry = AgentRegistry::start(options(store)).await.unwrap();
    bounded("recovery", registry.recovered()).await;
    registry
}

async fn add(registry: &AgentRegistry, id: &str, n: i64) -> i64 {
    let agent = registry.agent_ref::<Counter>(id).unwrap();
    bounded("ask", agent.ask(Msg::Add(n))).await.unwrap()
}

fn stored(store: &MemoryAgentStore, id: &str) -> AgentRecord {
    store
        .snapshot()
        .get(id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not in the store"))
}

fn count_of(record: &AgentRecord) -> Option<i64> {
    record
        .checkpoint
        .as_ref()
        .map(|c| serde_json::from_slice(&c.data).unwrap())
}

// Each acknowledged call is in the store when it returns.
#[tokio::test]
async fn acknowledged_calls_are_in_the_store() {
    let store = MemoryAgentStore::new();
    let registry = registry(Arc::new(store.clone())).await;
    registry
        .register_durable_agent("c", counter(&json!({"start": 2})).unwrap())
        .await
        .unwrap();
    assert_eq!(
        stored(&store, "c").registration.status,
        AgentStatus::Registered
    );
    bounded("start", registry.start_agent("c")).await.unwrap();
    assert_eq!(
        stored(&store, "c").registration.status,
        AgentStatus::Running
    );
    // The answer comes after the checkpoint it follows is stored.
    assert_eq!(add(&registry, "c", 3).await, 5);
    assert_eq!(count_of(&stored(&store, "c")), Some(5));
    bounded("stop", registry.stop_agent("c")).await.unwrap();
    assert_eq!(
        stored(&store, "c").registration.status,
        AgentStatus::Stopped
    );
    bounded("deregister", registry.deregister_agent("c"))
        .await
        .unwrap();
    assert!(store.snapshot().is_empty());
    registry.stop().await;
}

// A durable config through the in-memory call is refused: it would not be
// acknowledged by the store.
#[tokio::test]
async fn register_agent_refuses_a_durable_config() {
    let store = MemoryAgentStore::new();
    let registry = registry(Arc::new(store.clone())).await;
    let err = registry
        .register_agent("c", counter(&json!({"start": 0})).unwrap())
        .unwrap_err();
    assert!(matches!(
        err,
        AgentError::InvalidConfig {
            field: "durable",
            ..
        }
    ));
    assert!(registry.is_empty());
    registry.stop().await;
}

// Running, passivated, stopped, deregistered and restarted agents come
// back as they were, each from its last checkpoint.
#[tokio::test]
async fn a_registry_started_on_the_store_brings_every_agent_back() {
    let store = MemoryAgentStore::new();
    let first = registry(Arc::new(store.clone())).await;
    for id in ["running", "passivated", "stopped", "gone", "crashed"] {
        first
            .register_durable_agent(id, counter(&json!({"start": 0})).unwrap())
            .await
            .unwrap();
        bounded("start", first.start_agent(id)).await.unwrap();
    }
    first
        .register_durable_agent("registered", counter(&json!({"start": 7})).unwrap())
        .await
        .unwrap();
    add(&first, "running", 5).await;
    add(&first, "passivated", 6).await;
    add(&first, "stopped", 7).await;
    add(&first, "crashed", 8).await;
    bounded("passivate", first.passivate("passivated"))
        .await
        .unwrap();
    bounded("stop", first.stop_agent("stopped")).await.unwrap();
    bounded("deregister", first.deregister_agent("gone"))
        .await
        .unwrap();
    // A crash: restarted by its policy, the restart counted.
    let mut changes = first.subscribe();
    let agent = first.agent_ref::<Counter>("crashed").unwrap();
    assert!(bounded("crash", agent.ask(Msg::Crash)).await.is_err());
    bounded("restart", async {
        loop {
            let change = changes.recv().await.unwrap();
            if change.id.as_str() == "crashed" && change.to == AgentStatus::Running {
                break;
            }
        }
    })
    .await;
    // Restart counts are written without anyone waiting: wait for it.
    bounded("restart count stored", async {
        while stored(&store, "crashed").registration.restart_count != 1 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    // The node stops (its stops are not recorded).
    first.stop().await;

    let second = registry(Arc::new(store.clone())).await;
    let progress = second.recovery();
    assert!(progress.done);
    assert_eq!(
        (progress.total, progress.restored, progress.failed),
        (5, 5, 0)
    );
    let details = |id: &str| second.details(id).unwrap();
    assert_eq!(details("running").status, AgentStatus::Running);
    assert!(!details("running").passivated);
    assert!(details("running").process.is_some());
    assert_eq!(add(&second, "running", 1).await, 6);
    // Passivated stays passivated until its first message.
    assert_eq!(details("passivated").status, AgentStatus::Running);
    assert!(details("passivated").passivated);
    assert!(details("passivated").process.is_none());
    assert_eq!(add(&second, "passivated", 1).await, 7);
    assert!(!details("passivated").passivated);
    assert_eq!(details("stopped").status, AgentStatus::Stopped);
    assert!(second.details("gone").is_none());
    assert_eq!(details("registered").status, AgentStatus::Registered);
    assert_eq!(details("crashed").restarts, 1);
    assert_eq!(add(&second, "crashed", 1).await, 9);
    // A stopped one starts from its stop checkpoint.
    bounded("start", second.start_agent("stopped"))
        .await
        .unwrap();
    assert_eq!(add(&second, "stopped", 1).await, 8);
    assert_eq!(second.counts().get(AgentStatus::Running), 4);
    second.stop().await;
}

// `OnDemand`: a running agent comes back passivated and starts on its
// first message.
#[tokio::test]
async fn on_demand_agents_start_on_their_first_message() {
    let store = MemoryAgentStore::new();
    let first = registry(Arc::new(store.clone())).await;
    let config = counter(&json!({"start": 1, "on_demand": true})).unwrap();
    first.register_durable_agent("lazy", config).await.unwrap();
    bounded("start", first.start_agent("lazy")).await.unwrap();
    add(&first, "lazy", 1).await;
    first.stop().await;

    let second = registry(Arc::new(store.clone())).await;
    let lazy = second.details("lazy").unwrap();
    assert!(lazy.passivated && lazy.process.is_none());
    assert_eq!(add(&second, "lazy", 1).await, 3);
    second.stop().await;
}

/// A stored running agent of `kind`, written as another build would.
fn record(id: &str, kind: &str) -> AgentWrite {
    let mut registration = AgentRegistration::new(id, kind, Value::Null);
    registration.args = json!({"start": 0});
    registration.status = AgentStatus::Running;
    AgentWrite::Register {
        registration,
        generation: 0,
    }
}

// A checkpoint of a newer format, or a kind this build has no recipe for,
// fails that agent (the reason as its last exit), keeps its row, and the
// others come back.
#[tokio::test]
async fn unreadable_agents_fail_alone() {
    let store = MemoryAgentStore::new();
    for (id, kind) in [
        ("newer", "counter"),
        ("unknown", "teapot"),
        ("fine", "counter"),
    ] {
        store.write(record(id, kind)).await.unwrap();
    }
    let newer = Checkpoint {
        format: 99,
        data: b"{}".to_vec(),
    };
    store
        .checkpoint("newer".into(), newer.clone(), 0)
        .await
        .unwrap();
    let registry = registry(Arc::new(store.clone())).await;
    assert_eq!(registry.recovery().failed, 2);
    let newer_agent = registry.details("newer").unwrap();
    assert_eq!(newer_agent.status, AgentStatus::Failed);
    let reason = newer_agent.last_exit.unwrap().to_string();
    assert!(reason.contains("format 99"), "{reason}");
    let unknown = registry.details("unknown").unwrap();
    assert_eq!(unknown.status, AgentStatus::Failed);
    assert!(unknown.last_exit.unwrap().to_string().contains("teapot"));
    assert_eq!(registry.status("fine"), Some(AgentStatus::Running));
    // The unreadable rows are kept as they were, for a build that reads them.
    assert_eq!(stored(&store, "newer").checkpoint, Some(newer));
    registry.stop().await;
}

// A corrupt row fails that agent only; a full store refuses a new
// registration with a typed error, registers nothing, and the registry
// keeps serving.
#[tokio::test]
async fn a_corrupt_row_and_a_full_store() {
    let inner = MemoryAgentStore::new();
    for id in ["corrupt", "fine"] {
        inner.write(record(id, "counter")).await.unwrap();
    }
    let registry = registry(Arc::new(
        RefusingStore::new(inner, RefusingStore::registrations).corrupting("corrupt"),
    ))
    .await;
    assert_eq!(registry.status("corrupt"), Some(AgentStatus::Failed));
    assert_eq!(registry.status("fine"), Some(AgentStatus::Running));

    let err = registry
        .register_durable_agent("new", counter(&json!({"start": 0})).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::Store(AgentStoreError::StorageFull(_))),
        "{err:?}"
    );
    assert!(registry.details("new").is_none());
    assert_eq!(registry.len(), 2);
    assert_eq!(add(&registry, "fine", 2).await, 2);
    registry.stop().await;
}

/// Counts the checkpoint writes that reach `inner`.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn AgentStore>,
    checkpoints: std::sync::atomic::AtomicUsize,
}

impl AgentStore for CountingStore {
    fn write(
        &self,
        write: AgentWrite,
    ) -> futures::future::BoxFuture<'static, Result<(), AgentStoreError>> {
        if matches!(write, AgentWrite::Checkpoint { .. }) {
            self.checkpoints
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.write(write)
    }

    fn get(
        &self,
        id: &mabeam_supervision_core::AgentId,
    ) -> futures::future::BoxFuture<'static, Result<Option<AgentRecord>, AgentStoreError>> {
        self.inner.get(id)
    }

    fn load_page(
        &self,
        after: Option<&mabeam_supervision_core::AgentId>,
        limit: usize,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Vec<mabeam_supervision_core::LoadedAgent>, AgentStoreError>,
    > {
        self.inner.load_page(after, limit)
    }

    fn count(&self) -> futures::future::BoxFuture<'static, Result<u64, AgentStoreError>> {
        self.inner.count()
    }
}

// A message that leaves the checkpoint as it was stored writes nothing;
// one that changes it writes it. A refused write is not taken for
// stored: the same checkpoint is written at the next message.
#[tokio::test]
async fn an_unchanged_checkpoint_is_not_written_again() {
    let memory = MemoryAgentStore::new();
    let refusing = Arc::new(RefusingStore::new(memory.clone(), |write| {
        matches!(write, AgentWrite::Checkpoint { .. })
    }));
    refusing
        .refusing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let counting = Arc::new(CountingStore {
        inner: refusing.clone(),
        checkpoints: Default::default(),
    });
    let first = registry(counting.clone()).await;
    first
        .register_durable_agent("c", counter(&json!({"start": 2})).unwrap())
        .await
        .unwrap();
    bounded("start", first.start_agent("c")).await.unwrap();
    let written = || {
        counting
            .checkpoints
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    assert_eq!(add(&first, "c", 3).await, 5);
    let after_change = written();
    assert_eq!(count_of(&stored(&memory, "c")), Some(5));
    for _ in 0..5 {
        assert_eq!(add(&first, "c", 0).await, 5);
    }
    assert_eq!(written(), after_change, "unchanged: nothing written");
    assert_eq!(add(&first, "c", 1).await, 6);
    assert_eq!(written(), after_change + 1, "changed: written");
    assert_eq!(count_of(&stored(&memory, "c")), Some(6));

    // Refused: 7 is not stored, and is written at the next message
    // although that one changes nothing.
    refusing
        .refusing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(add(&first, "c", 1).await, 7);
    assert_eq!(count_of(&stored(&memory, "c")), Some(6));
    refusing
        .refusing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(add(&first, "c", 0).await, 7);
    assert_eq!(count_of(&stored(&memory, "c")), Some(7));
    first.suspend().await;

    // Brought back from the store: its checkpoint is what the store
    // holds, so a read writes nothing there either.
    let counting = Arc::new(CountingStore {
        inner: Arc::new(memory.clone()),
        checkpoints: Default::default(),
    });
    let again = registry(counting.clone()).await;
    let written = || {
        counting
            .checkpoints
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = written();
    assert_eq!(add(&again, "c", 0).await, 7);
    assert_eq!(written(), before, "loaded and unchanged: nothing written");
    assert_eq!(add(&again, "c", 1).await, 8);
    assert_eq!(count_of(&stored(&memory, "c")), Some(8));
    again.stop().await;
}

// A supervisor that dies takes its agents down; they are restarted under
// the next one and the store still holds every registration, running.
#[tokio::test]
async fn a_supervisor_restart_loses_no_registration() {
    let store = MemoryAgentStore::new();
    let registry = registry(Arc::new(store.clone())).await;
    for i in 0..5 {
        let id = format!("a{i}");
        registry
            .register_durable_agent(id.as_str(), counter(&json!({"start": i})).unwrap())
            .await
            .unwrap();
        bounded("start", registry.start_agent(&id)).await.unwrap();
    }
    let old = registry.supervisor();
    old.supervisor().handle().kill();
    old.supervisor().handle().exited().await;
    bounded("restarted", async {
        while registry.counts().get(AgentStatus::Running) != 5
            || registry.supervisor().supervisor().handle().id() == old.supervisor().handle().id()
        {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let snapshot = store.snapshot();
    assert_eq!(snapshot.len(), 5);
    assert!(
        snapshot
            .values()
            .all(|r| r.registration.status == AgentStatus::Running)
    );
    registry.stop().await;
    let second = registry_again(&store).await;
    assert_eq!(second.counts().get(AgentStatus::Running), 5);
    second.stop().await;
}

// The registry's service restarted (a suspend) while the agents its
// supervisor took down wait for the next one, or are on their way back
// under it: their rows keep saying running (a restart is owed), never
// `Stopped`, so a registry started on the store brings them back. In the
// tree this was a race (1 run in 15 stored one agent `Stopped`): the
// orphan's exit stored `Stopped` and the restart that would have stored
// `Running` again was cancelled by the suspend. Here the suspend comes
// before the restarts are installed (a single-threaded runtime runs the
// scheduled restarts only once the test yields).
#[tokio::test]
async fn a_suspend_during_a_supervisor_restart_keeps_the_agents_stored_running() {
    let store = MemoryAgentStore::new();
    // As the tree runs it: the registry does not replace its supervisor.
    let options = options(Arc::new(store.clone())).with_replace_supervisor(false);
    let registry = AgentRegistry::start(options).await.unwrap();
    bounded("recovery", registry.recovered()).await;
    let ids = ["a", "b", "c"];
    for id in ids {
        registry
            .register_durable_agent(id, counter(&json!({"start": 0})).unwrap())
            .await
            .unwrap();
        bounded("start", registry.start_agent(id)).await.unwrap();
        assert_eq!(add(&registry, id, 5).await, 5);
    }
    // The tree stops the supervisor: its agents wait for the next one.
    bounded("supervisor stop", registry.supervisor().stop()).await;
    for id in ids {
        assert_eq!(
            stored(&store, id).registration.status,
            AgentStatus::Running,
            "{id}: taken down with its supervisor, a restart owed"
        );
    }
    // The next supervisor schedules their restarts; the registry's service
    // is restarted before any is installed.
    bounded("new supervisor", registry.replace_supervisor())
        .await
        .unwrap();
    bounded("suspend", registry.suspend()).await;
    for id in ids {
        assert_eq!(registry.status(id), Some(AgentStatus::Stopped), "{id}");
        assert_eq!(
            stored(&store, id).registration.status,
            AgentStatus::Running,
            "{id}: a suspend records no stop"
        );
    }
    registry.stop().await;
    let second = registry_again(&store).await;
    for id in ids {
        assert_eq!(second.status(id), Some(AgentStatus::Running), "{id}");
        assert_eq!(add(&second, id, 1).await, 6, "{id}: its count, then one");
    }
    second.stop().await;
}

// A deregistration the store refuses changes nothing but the stop: the
// agent stays registered (stopped, as its row says) and a restarted
// registry would agree; once the store takes removals, it goes.
#[tokio::test]
async fn a_refused_removal_keeps_the_agent_registered() {
    let inner = MemoryAgentStore::new();
    let store = Arc::new(RefusingStore::new(inner.clone(), RefusingStore::removals));
    let registry = registry(store.clone()).await;
    registry
        .register_durable_agent("kept", counter(&json!({"start": 1})).unwrap())
        .await
        .unwrap();
    bounded("start", registry.start_agent("kept"))
        .await
        .unwrap();
    assert_eq!(add(&registry, "kept", 2).await, 3);

    let err = bounded("deregister", registry.deregister_agent("kept"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, AgentError::Store(AgentStoreError::StorageFull(_))),
        "{err:?}"
    );
    assert_eq!(registry.status("kept"), Some(AgentStatus::Stopped));
    assert_eq!(registry.len(), 1);
    assert_eq!(
        stored(&inner, "kept").registration.status,
        AgentStatus::Stopped
    );
    // Still registered: it starts again from its checkpoint.
    bounded("start again", registry.start_agent("kept"))
        .await
        .unwrap();
    assert_eq!(add(&registry, "kept", 1).await, 4);

    store
        .refusing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    bounded("deregister", registry.deregister_agent("kept"))
        .await
        .unwrap();
    assert!(registry.details("kept").is_none());
    assert!(inner.snapshot().is_empty());
    registry.stop().await;
}

async fn registry_again(store: &MemoryAgentStore) -> AgentRegistry {
    registry(Arc::new(store.clone())).await
}

mod replay {
    //! Any sequence of register / start / add / stop / deregister, replayed
    //! from the store by a new registry, gives the same table.
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Register(u8),
        Start(u8),
        Add(u8, i64),
        Stop(u8),
        Passivate(u8),
        Update(u8, i64),
        Deregister(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = 0u8..4;
        prop_oneof![
            id.clone().prop_map(Op::Register),
            id.clone().prop_map(Op::Start),
            (id.clone(), -5i64..5).prop_map(|(i, n)| Op::Add(i, n)),
            id.clone().prop_map(Op::Stop),
            id.clone().prop_map(Op::Passivate),
            (id.clone(), 0i64..100).prop_map(|(i, n)| Op::Update(i, n)),
            id.prop_map(Op::Deregister),
        ]
    }

    /// The count of every running agent that has a process (asking
    /// wakes none).
    async fn counts(registry: &AgentRegistry) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for details in registry.list() {
            if details.status == AgentStatus::Running && !details.passivated {
                out.push((
                    details.id.to_string(),
                    add(registry, details.id.as_str(), 0).await,
                ));
            }
        }
        out
    }

    async fn run(ops: Vec<Op>) {
        let store = MemoryAgentStore::new();
        let first = registry(Arc::new(store.clone())).await;
        for op in ops {
            match op {
                Op::Register(i) => {
                    let config = counter(&json!({"start": i})).unwrap();
                    let _ = first.register_durable_agent(format!("a{i}"), config).await;
                }
                Op::Start(i) => {
                    let _ = bounded("start", first.start_agent(&format!("a{i}"))).await;
                }
                Op::Add(i, n) => {
                    if let Ok(agent) = first.agent_ref::<Counter>(&format!("a{i}")) {
                        let _ = bounded("ask", agent.ask(Msg::Add(n))).await;
                    }
                }
                Op::Stop(i) => {
                    let _ = bounded("stop", first.stop_agent(&format!("a{i}"))).await;
                }
                Op::Passivate(i) => {
                    let _ = bounded("passivate", first.passivate(&format!("a{i}"))).await;
                }
                Op::Update(i, start) => {
                    let config = counter(&json!({"start": start})).unwrap();
                    let _ = bounded("update", first.update_config(&format!("a{i}"), config)).await;
                }
                Op::Deregister(i) => {
                    let _ = bounded("deregister", first.deregister_agent(&format!("a{i}"))).await;
                }
            }
        }
        let expected: Vec<_> = first
            .list()
            .into_iter()
            .map(|d| (d.id.to_string(), d.status, d.passivated, d.restarts))
            .collect();
        let expected_counts = counts(&first).await;
        first.stop().await;
        let second = registry(Arc::new(store.clone())).await;
        let replayed: Vec<_> = second
            .list()
            .into_iter()
            .map(|d| (d.id.to_string(), d.status, d.passivated, d.restarts))
            .collect();
        assert_eq!(replayed, expected);
        assert_eq!(counts(&second).await, expected_counts);
        second.stop().await;
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn replay_equals_the_table(ops in proptest::collection::vec(op(), 0..24)) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(run(ops));
        }
    }
}
