//! `bench recovery`: the agent store's durable registration and its
//! recovery after a `kill -9`, beside bare rusqlite reading the same rows.
//!
//! - `register_<n>_s`: a child process (this binary, `recovery-child`)
//!   registers `n` agents (100,000 by default; half passivated) from 64
//!   tasks through the SQLite agent store, each task awaiting each
//!   acknowledgement (every registration durable when acknowledged);
//!   `memory_register_<n>_s` the same into the in-memory store.
//! - `checkpoint_<n>_s`: the child then writes a 64-byte checkpoint into
//!   each, from 64 tasks; the parent kills it (`SIGKILL`) once it says so.
//! - `load_<n>_s`: the parent opens the store again and loads every record,
//!   page by page (10,000 a page), decoded and checked;
//!   `rusqlite_read_<n>_s`: bare rusqlite selecting the same rows and
//!   columns into owned values. Each is the best of two alternating runs;
//!   `load_vs_bare_read` their ratio (must: at most 5).
//! - `recover_<n>_s`: an agent registry starts on the killed child's store
//!   (opening it included) and recovers it, until every agent is reachable
//!   by id (in its table: passivated ones as they were, running ones
//!   started by their first message if it comes first);
//!   `recover_started_<n>_s` until the running half is started too;
//!   `recover_vs_bare_read` (must: at most 5; goal 2). Best of two.
//! - `registry_register_<n>_s`: 64 tasks register `n` durable agents
//!   through an agent registry on a fresh SQLite store, each awaiting
//!   each acknowledgement (must: at most 3 s);
//!   `registry_memory_register_<n>_s` the same agents in memory only
//!   (`register_agent`, today's registration).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context, Result, bail};
use mabeam_agent_supervisor::{
    Agent, AgentConfig, AgentContext, AgentRecipes, AgentRegistry, AgentRegistryOptions,
};
use mabeam_foundation_services::{SqliteAgentStore, SqliteAgentStoreConfig};
use mabeam_supervision_core::{
    AgentId, AgentRegistration, AgentStatus, AgentStore, Checkpoint, MemoryAgentStore, StartError,
};
use serde_json::json;

const TASKS: u64 = 64;
const PAGE: usize = 10_000;
/// The environment variable that hands the child its directory.
const DIR_ENV: &str = "MABEAM_RECOVERY_DIR";

fn registration(i: u64) -> AgentRegistration {
    AgentRegistration {
        args: json!({"start": i}),
        restart: json!({"type": "permanent"}),
        status: AgentStatus::Running,
        passivated: i.is_multiple_of(2),
        ..AgentRegistration::new(format!("agent-{i:08}"), "counter", json!({"step": 1}))
    }
}

/// The agent the recovered rows are: a counter whose checkpoint is eight
/// numbers (about 100 bytes of JSON).
struct BenchCounter {
    state: Vec<u64>,
}

impl Agent for BenchCounter {
    type Args = u64;
    type Message = u64;
    type Reply = u64;
    type Checkpoint = Vec<u64>;

    async fn on_start(start: u64, checkpoint: Option<Vec<u64>>) -> Result<Self, StartError> {
        Ok(BenchCounter {
            state: checkpoint.unwrap_or_else(|| vec![start; 8]),
        })
    }

    async fn handle(&mut self, by: u64, _: &mut AgentContext<'_>) -> u64 {
        self.state[0] += by;
        self.state[0]
    }

    fn checkpoint(&self) -> Option<Vec<u64>> {
        Some(self.state.clone())
    }
}

fn counter_config(args: &serde_json::Value) -> std::result::Result<AgentConfig, String> {
    let start = args["start"].as_u64().ok_or("no start")?;
    Ok(AgentConfig::new::<BenchCounter>("counter", start))
}

fn recipes() -> AgentRecipes {
    AgentRecipes::new().with("counter", counter_config)
}

/// An agent registry recovering the store in `dir`: seconds until every
/// agent is reachable, and until the running ones are started.
async fn recover(dir: &std::path::Path, n: u64) -> Result<(f64, f64)> {
    let t = Instant::now();
    let store = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir)).await?;
    let options = AgentRegistryOptions::default()
        .with_store(std::sync::Arc::new(store.clone()))
        .with_recipes(recipes());
    let registry = AgentRegistry::start(options).await?;
    let mut progress = registry.progress();
    progress.wait_for(|p| p.restored == n || p.done).await?;
    let reachable = t.elapsed().as_secs_f64();
    let done = registry.recovered().await;
    let started = t.elapsed().as_secs_f64();
    let counts = registry.counts();
    let check = (
        registry.len() as u64,
        done.failed,
        done.started,
        counts.passivated as u64,
    );
    registry.stop().await;
    store.stop().await;
    if check != (n, 0, n / 2, n / 2 + n % 2) {
        bail!("recovered (agents, failed, started, passivated) {check:?}");
    }
    Ok((reachable, started))
}

/// 64 tasks register `n` agents through a registry: durable on a fresh
/// SQLite store in `dir`, or in memory only.
async fn registry_register(dir: Option<&std::path::Path>, n: u64) -> Result<f64> {
    let mut options = AgentRegistryOptions::default().with_recipes(recipes());
    let store = match dir {
        Some(dir) => {
            let store = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir)).await?;
            options = options.with_store(std::sync::Arc::new(store.clone()));
            Some(store)
        }
        None => None,
    };
    let registry = AgentRegistry::start(options).await?;
    registry.recovered().await;
    let durable = dir.is_some();
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let registry = registry.clone();
            tokio::spawn(async move {
                for i in (task..n).step_by(TASKS as usize) {
                    let id = format!("agent-{i:08}");
                    let config = AgentConfig::new::<BenchCounter>("counter", i);
                    if durable {
                        let config = config.durable(json!({"start": i}));
                        registry.register_durable_agent(id, config).await?;
                    } else {
                        registry.register_agent(id, config)?;
                    }
                }
                Ok::<_, mabeam_agent_supervisor::AgentError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = t.elapsed().as_secs_f64();
    if registry.len() as u64 != n {
        bail!("registered {} of {n}", registry.len());
    }
    registry.stop().await;
    if let Some(store) = store {
        store.stop().await;
    }
    Ok(elapsed)
}

/// Registers `n` agents from [`TASKS`] tasks, each awaiting each write;
/// answers the seconds taken.
async fn register_all(store: std::sync::Arc<dyn AgentStore>, n: u64) -> Result<f64> {
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (task..n).step_by(TASKS as usize) {
                    store.register(registration(i), 1).await?;
                }
                Ok::<_, mabeam_supervision_core::AgentStoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The child's side: register, checkpoint, say so, and wait to be killed.
pub(crate) async fn child(n: u64) -> Result<serde_json::Value> {
    let dir = std::env::var(DIR_ENV).context("recovery-child runs under bench recovery")?;
    let store = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir)).await?;
    let shared: std::sync::Arc<dyn AgentStore> = std::sync::Arc::new(store.clone());
    let register_s = register_all(shared.clone(), n).await?;
    println!("register_s {register_s}");
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = shared.clone();
            tokio::spawn(async move {
                for i in (task..n).step_by(TASKS as usize) {
                    let checkpoint = Checkpoint {
                        format: 1,
                        data: serde_json::to_vec(&vec![i; 8])?,
                    };
                    store
                        .checkpoint(AgentId::new(format!("agent-{i:08}")), checkpoint, 1)
                        .await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    println!("checkpoint_s {}", t.elapsed().as_secs_f64());
    println!("ready");
    // Killed here, the store open.
    futures::future::pending::<()>().await;
    unreachable!()
}

/// Loads every record through the store; checks what it read.
async fn load(dir: &std::path::Path, n: u64) -> Result<f64> {
    let t = Instant::now();
    let store = SqliteAgentStore::open(SqliteAgentStoreConfig::new(dir)).await?;
    let mut after: Option<AgentId> = None;
    let (mut count, mut passivated, mut checkpoints) = (0u64, 0u64, 0u64);
    loop {
        let page = store.load_page(after.as_ref(), PAGE).await?;
        let last = page.len() < PAGE;
        after = page.last().map(|l| l.id.clone());
        for loaded in page {
            let record = loaded.record?;
            count += 1;
            passivated += u64::from(record.registration.passivated);
            checkpoints += u64::from(record.checkpoint.is_some());
        }
        if last {
            break;
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    store.stop().await;
    if (count, passivated, checkpoints) != (n, n / 2 + n % 2, n) {
        bail!("loaded {count} agents, {passivated} passivated, {checkpoints} checkpoints");
    }
    Ok(elapsed)
}

/// Bare rusqlite reading the same rows and columns into owned values.
async fn bare_read(dir: &std::path::Path, n: u64) -> Result<f64> {
    let path = dir.join(mabeam_foundation_services::agent_store::DATABASE_FILE);
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let conn = rusqlite::Connection::open(path)?;
        let mut stmt = conn.prepare(
            "SELECT id, version, generation, kind, config, args, restart, status, \
             restart_count, passivated, checkpoint_format, checkpoint FROM agents ORDER BY id",
        )?;
        type Row = (
            String,
            i64,
            i64,
            String,
            String,
            String,
            String,
            String,
            i64,
            i64,
            Option<i64>,
            Option<Vec<u8>>,
        );
        let rows = stmt.query_map([], |r| {
            Ok::<Row, _>((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })?;
        let mut count = 0u64;
        for row in rows {
            let row = row?;
            count += u64::from(row.11.is_some());
        }
        let elapsed = t.elapsed().as_secs_f64();
        if count != n {
            bail!("bare read found {count} checkpoints");
        }
        Ok(elapsed)
    })
    .await?
}

pub(crate) async fn run(n: u64) -> Result<serde_json::Value> {
    eprintln!("bench recovery: in-memory store, {n} registrations from {TASKS} tasks");
    let memory_register = register_all(std::sync::Arc::new(MemoryAgentStore::new()), n).await?;
    let dir = tempfile::Builder::new()
        .prefix("mabeam-bench-recovery")
        .tempdir()
        .context("creating a temporary directory")?;
    eprintln!("bench recovery: child registers {n} agents from {TASKS} tasks, then checkpoints");
    let mut child = Command::new(std::env::current_exe()?)
        .arg("recovery-child")
        .args(["--n", &n.to_string()])
        .env(DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the child")?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    let (mut register_s, mut checkpoint_s, mut ready) = (None, None, false);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match line.split_once(' ') {
            Some(("register_s", v)) => register_s = Some(v.parse::<f64>()?),
            Some(("checkpoint_s", v)) => checkpoint_s = Some(v.parse::<f64>()?),
            _ if line == "ready" => {
                ready = true;
                break;
            }
            _ => {}
        }
    }
    child.kill()?; // SIGKILL, the store open
    child.wait()?;
    let (Some(register_s), Some(checkpoint_s), true) = (register_s, checkpoint_s, ready) else {
        bail!("the child ended before it was ready");
    };
    eprintln!("bench recovery: killed; load and bare read, alternating, twice each");
    let mut loads = Vec::new();
    let mut reads = Vec::new();
    for _ in 0..2 {
        reads.push(bare_read(dir.path(), n).await?);
        loads.push(load(dir.path(), n).await?);
    }
    eprintln!("bench recovery: an agent registry recovers the store, twice");
    let mut recovers = Vec::new();
    let mut recovers_started = Vec::new();
    for _ in 0..2 {
        let (reachable, started) = recover(dir.path(), n).await?;
        recovers.push(reachable);
        recovers_started.push(started);
    }
    eprintln!("bench recovery: registration through a registry, durable and in memory");
    let fresh = tempfile::Builder::new()
        .prefix("mabeam-bench-register")
        .tempdir()
        .context("creating a temporary directory")?;
    let registry_register_s = registry_register(Some(fresh.path()), n).await?;
    let registry_memory_s = registry_register(None, n).await?;
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (load_s, read_s) = (best(&loads), best(&reads));
    let (recover_s, recover_started_s) = (best(&recovers), best(&recovers_started));
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let mut line = serde_json::Map::new();
    line.insert("bench".into(), json!("recovery"));
    line.insert("n".into(), json!(n));
    let k = if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    };
    line.insert(format!("register_{k}_s"), json!(round(register_s)));
    line.insert(
        format!("memory_register_{k}_s"),
        json!(round(memory_register)),
    );
    line.insert(format!("checkpoint_{k}_s"), json!(round(checkpoint_s)));
    line.insert(format!("load_{k}_s"), json!(round(load_s)));
    line.insert(format!("rusqlite_read_{k}_s"), json!(round(read_s)));
    line.insert(
        "load_vs_bare_read".into(),
        json!((load_s / read_s * 100.0).round() / 100.0),
    );
    line.insert(format!("recover_{k}_s"), json!(round(recover_s)));
    line.insert(
        format!("recover_started_{k}_s"),
        json!(round(recover_started_s)),
    );
    line.insert(
        "recover_vs_bare_read".into(),
        json!((recover_s / read_s * 100.0).round() / 100.0),
    );
    line.insert(
        format!("registry_register_{k}_s"),
        json!(round(registry_register_s)),
    );
    line.insert(
        format!("registry_memory_register_{k}_s"),
        json!(round(registry_memory_s)),
    );
    Ok(serde_json::Value::Object(line))
}
