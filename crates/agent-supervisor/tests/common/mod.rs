//! A test agent that obeys commands, one whose start waits at a gate, and
//! a registry wired to a process registry in a namespace of its own, with
//! the waits the tests share.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;

use mabeam_agent_supervisor::{
    Agent, AgentConfig, AgentContext, AgentRegistry, AgentRegistryOptions, EnvelopeError,
};
use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentStatus, AgentStore, AgentStoreError, AgentWrite, Backoff, Envelope,
    ExitReason, LoadedAgent, MemoryAgentStore, Namespace, ProcessHandle, RestartType, StartError,
    Telemetry,
};
use serde_json::json;
use tokio::sync::{Semaphore, broadcast::error::RecvError, mpsc};

/// Counts; obeys commands; carries its count across restarts.
#[derive(Debug)]
pub struct Worker {
    pub count: u64,
    pub blob: Vec<u8>,
    pub events: Option<tokio::sync::mpsc::UnboundedSender<&'static str>>,
}

/// A command to a [`Worker`].
#[derive(Debug)]
pub enum Cmd {
    Add(u64),
    Get,
    Grow(usize),
    Panic,
    Stop,
    Fail(&'static str),
    Sleep(Duration),
    Hang,
}

/// Arguments: the start count, and whether starts fail.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub start: u64,
    pub fail_start: bool,
    /// Told what the worker is doing (`"sleeping"` when it starts to wait
    /// forever in an envelope handler).
    pub events: Option<tokio::sync::mpsc::UnboundedSender<&'static str>>,
}

impl Agent for Worker {
    type Args = WorkerArgs;
    type Message = Cmd;
    type Reply = u64;
    type Checkpoint = u64;

    async fn on_start(args: WorkerArgs, checkpoint: Option<u64>) -> Result<Self, StartError> {
        let events = args.events.clone();
        if args.fail_start {
            return Err(StartError::failed("start refused"));
        }
        Ok(Worker {
            count: checkpoint.unwrap_or(args.start),
            blob: Vec::new(),
            events,
        })
    }

    async fn handle(&mut self, cmd: Cmd, ctx: &mut AgentContext<'_>) -> u64 {
        match cmd {
            Cmd::Add(n) => self.count += n,
            Cmd::Get => {}
            Cmd::Grow(n) => self.blob.resize(n, 0),
            Cmd::Panic => panic!("worker panics on command"),
            Cmd::Stop => ctx.stop(),
            Cmd::Fail(why) => ctx.stop_with(ExitReason::error(why)),
            Cmd::Sleep(d) => tokio::time::sleep(d).await,
            Cmd::Hang => std::future::pending().await,
        }
        self.count
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<serde_json::Value, EnvelopeError> {
        match &*envelope.protocol {
            "test.get" => Ok(json!(self.count)),
            "test.add" => {
                let n = envelope
                    .body
                    .as_u64()
                    .ok_or_else(|| EnvelopeError::Rejected("not a number".into()))?;
                self.count += n;
                Ok(json!(self.count))
            }
            "test.sleep" => {
                if let Some(events) = &self.events {
                    let _ = events.send("sleeping");
                }
                std::future::pending().await
            }
            _ => Err(EnvelopeError::Unsupported),
        }
    }

    fn checkpoint(&self) -> Option<u64> {
        Some(self.count)
    }

    fn state_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.blob.len()
    }
}

pub fn worker(kind: &str) -> AgentConfig {
    AgentConfig::new::<Worker>(
        kind,
        WorkerArgs {
            start: 0,
            fail_start: false,
            events: None,
        },
    )
}

/// A permanent worker restarted after a backoff from `min` to `max`.
pub fn backing_off(min: Duration, max: Duration) -> AgentConfig {
    worker("k")
        .with_restart(RestartType::Permanent)
        .with_backoff(Backoff::new(min, max))
}

/// A worker config whose workers report what they do.
pub fn worker_with_events(
    kind: &str,
) -> (
    AgentConfig,
    tokio::sync::mpsc::UnboundedReceiver<&'static str>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let config = AgentConfig::new::<Worker>(
        kind,
        WorkerArgs {
            start: 0,
            fail_start: false,
            events: Some(tx),
        },
    );
    (config, rx)
}

pub struct Setup {
    pub agents: AgentRegistry,
    pub processes: ProcessRegistry,
    pub ns: Namespace,
    pub telemetry: Telemetry,
}

pub async fn setup() -> Setup {
    setup_with(|o| o).await
}

pub async fn setup_with(f: impl FnOnce(AgentRegistryOptions) -> AgentRegistryOptions) -> Setup {
    let processes = ProcessRegistry::new(Telemetry::disabled());
    let ns = Namespace::unique_test();
    let telemetry = Telemetry::new();
    let options = AgentRegistryOptions::default()
        .with_registry(Arc::new(processes.clone()), ns)
        .with_telemetry(telemetry.clone());
    let agents = AgentRegistry::start(f(options)).await.unwrap();
    Setup {
        agents,
        processes,
        ns,
        telemetry,
    }
}

impl Setup {
    pub fn registered(&self, id: &str) -> bool {
        mabeam_supervision_core::Registry::lookup(&self.processes, &self.ns, &format!("agent:{id}"))
            .is_some()
    }

    /// Registers agent `id` with `config` and starts it.
    pub async fn run(&self, id: &str, config: AgentConfig) -> ProcessHandle {
        self.agents.register_agent(id, config).unwrap();
        self.agents.start_agent(id).await.unwrap()
    }

    /// Waits (a minute of tokio's clock at most) until agent `id` is
    /// `want`.
    pub async fn wait_status(&self, id: &str, want: AgentStatus) {
        let mut changes = self.agents.subscribe();
        tokio::time::timeout(Duration::from_secs(60), async {
            while self.agents.status(id) != Some(want) {
                match changes.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => panic!("the registry is gone"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "agent {id} never became {want:?} (it is {:?})",
                self.agents.status(id)
            )
        });
    }
}

/// The next thing an agent says (within 10 s of tokio's clock).
pub async fn next_event(events: &mut mpsc::UnboundedReceiver<&'static str>) -> &'static str {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("no event from the agent")
        .expect("events closed")
}

/// An agent whose `on_start` waits for a permit of its gate, and that
/// says when it is starting, has started, has left its `on_start`
/// (returned or aborted; if its gate says so) and is dropped. `true` as a
/// message crashes it.
pub struct Gated {
    events: mpsc::UnboundedSender<&'static str>,
}

/// A [`Gated`] agent's arguments.
#[derive(Clone)]
pub struct Gate {
    pub permits: Arc<Semaphore>,
    pub events: mpsc::UnboundedSender<&'static str>,
    /// Say `"left on_start"` when `on_start` is left.
    pub say_left: bool,
}

impl Agent for Gated {
    type Args = Gate;
    type Message = bool;
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(gate: Gate, _: Option<()>) -> Result<Self, StartError> {
        let _ = gate.events.send("starting");
        let _leaving = gate.say_left.then(|| Leaving(gate.events.clone()));
        gate.permits.acquire().await.unwrap().forget();
        let _ = gate.events.send("started");
        Ok(Gated {
            events: gate.events,
        })
    }

    async fn handle(&mut self, crash: bool, _: &mut AgentContext<'_>) {
        assert!(!crash, "crashes on command");
    }
}

/// Says when `on_start` is left, however (returned, or its task aborted).
struct Leaving(mpsc::UnboundedSender<&'static str>);

impl Drop for Leaving {
    fn drop(&mut self) {
        let _ = self.0.send("left on_start");
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        let _ = self.events.send("dropped");
    }
}

/// A [`Gated`] agent's config (kind `gated`) whose starts wait for
/// `permits`, and what its agents say.
pub fn gated(
    permits: &Arc<Semaphore>,
    say_left: bool,
) -> (AgentConfig, mpsc::UnboundedReceiver<&'static str>) {
    let (events, said) = mpsc::unbounded_channel();
    let config = AgentConfig::new::<Gated>(
        "gated",
        Gate {
            permits: permits.clone(),
            events,
            say_left,
        },
    );
    (config, said)
}

/// A memory store that refuses, as full, the writes its rule picks while
/// `refusing` is set (first waiting at its gate, if it has one), and may
/// load one row as corrupt, or take the other writes without keeping
/// them: the faulty stores the durable tests need, in one shape.
#[derive(Debug)]
pub struct RefusingStore {
    /// The store that takes every write not refused.
    pub inner: MemoryAgentStore,
    /// Which writes are refused.
    rule: fn(&AgentWrite) -> bool,
    /// Whether the rule applies now.
    pub refusing: AtomicBool,
    /// Where a refused write waits first (one permit per write).
    gate: Option<Arc<Semaphore>>,
    /// The id whose row loads as corrupt.
    corrupt: Option<&'static str>,
    /// Whether the writes not refused reach `inner` (else each is
    /// answered `Ok` and dropped).
    keeps: bool,
}

impl RefusingStore {
    /// Refuses the writes `rule` picks, from now on.
    pub fn new(inner: MemoryAgentStore, rule: fn(&AgentWrite) -> bool) -> Self {
        RefusingStore {
            inner,
            rule,
            refusing: AtomicBool::new(true),
            gate: None,
            corrupt: None,
            keeps: true,
        }
    }

    /// Each refused write first waits for a permit of `gate`.
    pub fn gated(mut self, gate: Arc<Semaphore>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Loads `id`'s row as corrupt.
    pub fn corrupting(mut self, id: &'static str) -> Self {
        self.corrupt = Some(id);
        self
    }

    /// Answers every write not refused `Ok` and keeps none (nothing is
    /// registered, so no other write could apply).
    pub fn keeping_nothing(mut self) -> Self {
        self.keeps = false;
        self
    }

    /// A registration (new or replaced).
    pub fn registrations(write: &AgentWrite) -> bool {
        matches!(write, AgentWrite::Register { .. })
    }

    /// A removal.
    pub fn removals(write: &AgentWrite) -> bool {
        matches!(write, AgentWrite::Remove { .. })
    }
}

impl AgentStore for RefusingStore {
    fn write(&self, write: AgentWrite) -> BoxFuture<'static, Result<(), AgentStoreError>> {
        if !(self.refusing.load(Ordering::SeqCst) && (self.rule)(&write)) {
            if !self.keeps {
                return Box::pin(async { Ok(()) });
            }
            return self.inner.write(write);
        }
        let gate = self.gate.clone();
        Box::pin(async move {
            if let Some(gate) = gate {
                gate.acquire().await.expect("the gate stays open").forget();
            }
            Err(AgentStoreError::StorageFull("disk full".into()))
        })
    }

    fn get(
        &self,
        id: &AgentId,
    ) -> BoxFuture<'static, Result<Option<AgentRecord>, AgentStoreError>> {
        self.inner.get(id)
    }

    fn load_page(
        &self,
        after: Option<&AgentId>,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<LoadedAgent>, AgentStoreError>> {
        let page = self.inner.load_page(after, limit);
        let corrupt = self.corrupt;
        Box::pin(async move {
            let mut page = page.await?;
            for row in &mut page {
                if Some(row.id.as_str()) == corrupt {
                    row.record = Err(AgentStoreError::Corrupt {
                        id: row.id.clone(),
                        detail: "bad bytes".into(),
                    });
                }
            }
            Ok(page)
        })
    }

    fn count(&self) -> BoxFuture<'static, Result<u64, AgentStoreError>> {
        self.inner.count()
    }
}
