//! `bench supervisor`: N minimal kameo actors started as children of one
//! DynamicSupervisor (each start awaited), then terminated one by one.

use std::time::Instant;

use anyhow::Result;
use kameo::prelude::*;
use mabeam_supervision_core::{
    ChildSpec, DynamicSupervisor, DynamicSupervisorFlags, ProcessHandle,
};
use serde_json::json;

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

pub(crate) async fn run(n: u64) -> Result<serde_json::Value> {
    let sup = DynamicSupervisor::start(DynamicSupervisorFlags::default()).await?;
    let mut children = Vec::with_capacity(n as usize);
    let mem0 = crate::rss_bytes()?;

    eprintln!("bench supervisor: starting {n} children");
    let t = Instant::now();
    for id in 0..n {
        let spec = ChildSpec::new("agent", move || ProcessHandle::spawn::<Minimal>(id));
        children.push(sup.start_child(spec).await?);
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
        "n": n,
        "start_s": start_s,
        "stop_s": stop_s,
        "bytes_per_agent": (mem1 - mem0) / n as i64,
    }))
}
