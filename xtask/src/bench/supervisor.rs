//! `bench supervisor`: N minimal children started under one
//! DynamicSupervisor (each start awaited), then terminated one by one.
//! The children are kameo actors, or with `--child task` the smallest
//! task processes (`ProcessHandle::spawn_process`, the agent host's kind
//! of process): each waits for its stop, as a minimal gen_server waits in
//! `receive`.
//!
//! The same process then measures the floors of the stop, with as many
//! children of the same kind started without a supervisor: `handle_stop_s`
//! stops each through its `ProcessHandle` (the stop a supervisor requests,
//! without the supervisor), and for kameo children `bare_stop_s` by kameo
//! alone (`stop_gracefully`, then `wait_for_shutdown`, as the kameo-raw
//! anchor stops).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use anyhow::{Result, bail};
use kameo::prelude::*;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ExitReason, Process, ProcessHandle,
    StartFuture,
};
use serde_json::json;
use tokio::sync::Notify;

/// The smallest useful agent: one counter.
struct Minimal {
    _count: u64,
}

impl Actor for Minimal {
    type Args = u64;
    type Error = kameo::error::Infallible;

    async fn on_start(_id: u64, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(Minimal { _count: 0 })
    }
}

/// The smallest task process: no mailbox, a wake-up for its stop.
struct Idle {
    accepting: AtomicBool,
    wake: Notify,
}

impl Process for Idle {
    fn is_accepting(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
    }

    fn request_stop(&self) {
        self.accepting.store(false, Ordering::Release);
        self.wake.notify_one();
    }

    fn type_name(&self) -> &'static str {
        "Idle"
    }

    fn handles_gone(&self) {
        self.request_stop();
    }
}

fn spawn_idle() -> StartFuture {
    let idle = Arc::new(Idle {
        accepting: AtomicBool::new(true),
        wake: Notify::new(),
    });
    let handle = ProcessHandle::spawn_process(ActorId::generate(), idle.clone(), |handle| {
        let handle = handle.clone();
        async move {
            idle.wake.notified().await;
            handle.stop_reached();
            ExitReason::Normal
        }
    });
    Box::pin(async move { Ok(handle) })
}

/// Which kind of child the bench starts.
fn child_spec(child: &str, id: u64) -> Result<ChildSpec> {
    Ok(match child {
        "kameo" => ChildSpec::new("agent", move || ProcessHandle::spawn::<Minimal>(id)),
        "task" => ChildSpec::new("agent", spawn_idle),
        other => bail!("unknown --child {other:?}; known: kameo, task"),
    })
}

pub(crate) async fn run(n: u64, child: &str) -> Result<serde_json::Value> {
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default()).await?;
    let mut children = Vec::with_capacity(n as usize);
    let mem0 = crate::rss_bytes()?;

    eprintln!("bench supervisor: starting {n} children");
    let t = Instant::now();
    for id in 0..n {
        children.push(sup.start_child(child_spec(child, id)?).await?);
    }
    let start_s = t.elapsed().as_secs_f64();
    let mem1 = crate::rss_bytes()?;

    eprintln!("bench supervisor: terminating {n} children");
    let t = Instant::now();
    for child in &children {
        sup.terminate_child(child).await?;
    }
    let stop_s = t.elapsed().as_secs_f64();
    drop(children);
    let left = sup.count_children().await?.active;
    anyhow::ensure!(left == 0, "{left} children still running");
    sup.stop().await;

    eprintln!("bench supervisor: the floors, without a supervisor");
    let handle_stop_s = handle_stop(n, child).await?;
    let bare_stop_s = match child {
        "kameo" => json!(bare_kameo_stop(n).await),
        _ => serde_json::Value::Null,
    };

    Ok(json!({
        "bench": "supervisor",
        "child": child,
        "n": n,
        "start_s": start_s,
        "stop_s": stop_s,
        "handle_stop_s": handle_stop_s,
        "bare_stop_s": bare_stop_s,
        "bytes_per_agent": (mem1 - mem0) / n as i64,
    }))
}

/// Starts `n` children of the kind without a supervisor and times their
/// stops through their handles, one by one.
async fn handle_stop(n: u64, child: &str) -> Result<f64> {
    let mut handles = Vec::with_capacity(n as usize);
    for id in 0..n {
        let spec = child_spec(child, id)?;
        handles.push(spec.start().await?);
    }
    let t = Instant::now();
    for handle in &handles {
        handle.stop().await;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Spawns `n` bare kameo actors and times kameo's own stop of each, one by
/// one, as the kameo-raw anchor does.
async fn bare_kameo_stop(n: u64) -> f64 {
    let mut refs = Vec::with_capacity(n as usize);
    for id in 0..n {
        let actor_ref = Minimal::spawn(id);
        actor_ref.wait_for_startup().await;
        refs.push(actor_ref);
    }
    let t = Instant::now();
    for actor_ref in &refs {
        let _ = actor_ref.stop_gracefully().await;
        actor_ref.wait_for_shutdown().await;
    }
    t.elapsed().as_secs_f64()
}
