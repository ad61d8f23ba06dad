//! `bench lifecycle`: the anchors' agent lifecycle (../shared/anchors) on
//! the agent layer, with supervision, the process registry and status
//! tracking on: start N agents registered by id, look each up by id, one
//! request and reply each, stop each with its registration gone.
//!
//! `lookup_s` looks each up with `whereis` (the current process's id), as
//! the anchors do: OTP's `Registry.lookup` returns a pid, a value, and
//! kameo-raw reads its map without cloning a reference. `lookup_handle_s`
//! times `lookup`, which returns an owned handle (a reference count each).
//!
//! The agent table and the process registry's names are sized for the N
//! agents (`with_capacity`), as a node that knows its scale sizes them;
//! with `NOCAP` set they grow from empty. Each phase's start is marked on
//! stderr with the monotonic clock and the minor page faults so far, so
//! that `perf record -k CLOCK_MONOTONIC` profiles can be cut by phase
//! (`perf report --time A,B`).
//!
//! `bytes_per_agent` is the resident-set growth of the start phase per
//! live agent, as kameo-raw measures it. `bytes_per_passivated_agent` is
//! measured in a fresh child process (RSS growth cannot be read after
//! frees): N agents each started, then passivated (state kept, no
//! process), one after another.

use std::{sync::Arc, time::Instant};

use anyhow::{Result, ensure};
use mabeam_agent_supervisor::{
    Agent, AgentConfig, AgentContext, AgentRegistry, AgentRegistryOptions,
};
use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{AgentStatus, Namespace, StartError, Telemetry};
use serde_json::json;

/// The anchors' agent: a counter answering pings.
struct Counter {
    count: u64,
}

impl Agent for Counter {
    type Args = ();
    type Message = ();
    type Reply = u64;
    type Checkpoint = ();

    async fn on_start(_: (), _: Option<()>) -> Result<Self, StartError> {
        Ok(Counter { count: 0 })
    }

    async fn handle(&mut self, _: (), _: &mut AgentContext<'_>) -> u64 {
        self.count += 1;
        self.count
    }
}

/// The agent registry and the process registry, room made in their
/// tables for `n` agents (unless `NOCAP` is set: then they grow).
async fn agents(n: u64) -> Result<(AgentRegistry, ProcessRegistry)> {
    let capacity = if std::env::var("NOCAP").is_ok() {
        0
    } else {
        n as usize
    };
    let processes = ProcessRegistry::with_capacity(Telemetry::disabled(), capacity);
    let mut options = AgentRegistryOptions::default()
        .with_capacity(capacity)
        .with_registry(Arc::new(processes.clone()), Namespace::Production);
    if std::env::var("NOREG").is_ok() {
        options.registry = None;
    }
    Ok((AgentRegistry::start(options).await?, processes))
}

pub(crate) async fn run(n: u64) -> Result<serde_json::Value> {
    let (agents, processes) = agents(n).await?;
    let config = Arc::new(AgentConfig::new::<Counter>("counter", ()));
    let ids: Vec<String> = (1..=n).map(|i| format!("agent-{i}")).collect();
    // The names checked gone after the stop phase.
    let names: Vec<String> = ids.iter().map(|id| format!("agent:{id}")).collect();
    let registered = std::env::var("NOREG").is_err();
    let mem0 = crate::rss_bytes()?;

    eprintln!("bench lifecycle: starting {n} agents");
    mark("start");
    let t = Instant::now();
    for id in &ids {
        agents.register_agent(id.as_str(), config.clone())?;
        agents.start_agent(id).await?;
    }
    let start_s = t.elapsed().as_secs_f64();
    mark("lookup");
    let mem1 = crate::rss_bytes()?;

    // As the anchors look up: OTP's Registry.lookup returns a pid (a
    // value), kameo-raw reads its map without cloning a reference.
    let t = Instant::now();
    for id in &ids {
        ensure!(agents.whereis(id).is_some(), "{id} not found");
    }
    let lookup_s = t.elapsed().as_secs_f64();
    // An owned handle each: one more reference count (a cache miss) each.
    let t = Instant::now();
    for id in &ids {
        ensure!(agents.lookup(id).is_some(), "{id} not found");
    }
    let lookup_handle_s = t.elapsed().as_secs_f64();

    mark("call");
    let t = Instant::now();
    for id in &ids {
        let reply = agents.agent_ref::<Counter>(id)?.ask(()).await?;
        ensure!(reply == 1, "{id} answered {reply}");
    }
    let call_s = t.elapsed().as_secs_f64();

    mark("stop");
    eprintln!("bench lifecycle: stopping {n} agents");
    let t = Instant::now();
    for id in &ids {
        agents.stop_agent(id).await?;
    }
    let stop_s = t.elapsed().as_secs_f64();
    mark("end");
    // Checked after the timing, as kameo-raw's removal is not checked.
    for (id, name) in ids.iter().zip(&names) {
        ensure!(
            agents.status(id) == Some(AgentStatus::Stopped),
            "{id} is not stopped"
        );
        ensure!(
            !registered || processes.lookup(&Namespace::Production, name).is_none(),
            "{id} still registered"
        );
    }
    let left = agents.supervisor().count_children().await?.active;
    ensure!(left == 0, "{left} agent processes still running");
    ensure!(processes.count(&Namespace::Production) == 0, "names left");
    agents.stop().await;

    let passivated = passivated_bytes(n)?;
    Ok(json!({
        "bench": "lifecycle",
        "n": n,
        "start_s": start_s,
        "lookup_s": lookup_s,
        "lookup_handle_s": lookup_handle_s,
        "call_s": call_s,
        "stop_s": stop_s,
        "bytes_per_agent": (mem1 - mem0) / n as i64,
        "bytes_per_passivated_agent": passivated,
    }))
}

/// Marks the beginning of a phase on stderr: the monotonic clock (as
/// `perf record -k CLOCK_MONOTONIC` stamps its samples, for `perf report
/// --time`) and the process's minor page faults so far (fresh memory
/// faulted in), so that each phase can be profiled and counted apart.
fn mark(phase: &str) {
    let faults = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            // Fields after the command's closing parenthesis; minflt is
            // the 10th field of the line, the 8th after it.
            let rest = stat.rsplit_once(')')?.1;
            rest.split_whitespace().nth(7)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    eprintln!(
        "bench lifecycle: phase {phase} at {:?}, {faults} minor faults",
        Instant::now()
    );
}

/// Runs `bench lifecycle-passivated` in a child process and returns its
/// bytes per passivated agent.
fn passivated_bytes(n: u64) -> Result<i64> {
    let exe = std::env::current_exe()?;
    let output = std::process::Command::new(exe)
        .args(["lifecycle-passivated", "--n", &n.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    ensure!(output.status.success(), "lifecycle-passivated failed");
    let line = String::from_utf8_lossy(&output.stdout);
    let value: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or_default())?;
    value["bytes_per_passivated_agent"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no bytes_per_passivated_agent"))
}

/// `bench lifecycle-passivated`: N agents started and passivated one after
/// another; the resident-set growth per agent.
pub(crate) async fn run_passivated(n: u64) -> Result<serde_json::Value> {
    let (agents, _processes) = agents(n).await?;
    let config = Arc::new(AgentConfig::new::<Counter>("counter", ()));
    let ids: Vec<String> = (1..=n).map(|i| format!("agent-{i}")).collect();
    let mem0 = crate::rss_bytes()?;
    eprintln!("bench lifecycle: {n} agents started and passivated");
    for id in &ids {
        agents.register_agent(id.as_str(), config.clone())?;
        agents.start_agent(id).await?;
        agents.passivate(id).await?;
    }
    let mem1 = crate::rss_bytes()?;
    let counts = agents.counts();
    ensure!(
        counts.passivated == n as usize,
        "{} passivated",
        counts.passivated
    );
    Ok(json!({
        "n": n,
        "bytes_per_passivated_agent": (mem1 - mem0) / n as i64,
    }))
}
