//! `bench supervisor`: N minimal children started under one
//! DynamicSupervisor (each start awaited), then terminated one by one.
//! The children are kameo actors, or with `--child task` the smallest
//! task processes (`ProcessHandle::spawn_process`, the agent host's kind
//! of process): each waits for its stop, as a minimal gen_server waits in
//! `receive`.

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

    Ok(json!({
        "bench": "supervisor",
        "child": child,
        "n": n,
        "start_s": start_s,
        "stop_s": stop_s,
        "bytes_per_agent": (mem1 - mem0) / n as i64,
    }))
}
