//! A supervised pool of three workers: one crashes, its supervisor starts
//! it again, the others keep running, and the pool stops in reverse order.
//!
//! Run it with `cargo run -p mabeam-supervision-core --example worker_pool`.

use std::time::Duration;

use kameo::prelude::*;
use mabeam_supervision_core::{
    ChildSpec, Strategy, Supervisor, SupervisorFlags, Telemetry, events,
};
use tokio::sync::mpsc;

/// A worker that answers jobs and crashes on a poisoned one.
#[derive(Actor)]
struct Worker {
    done: u64,
}

/// A job: `poison` makes the worker fail, as a bug would.
#[derive(Debug)]
struct Job {
    poison: bool,
}

/// The error a poisoned job ends in; returning it crashes the worker.
#[derive(Debug)]
struct Poisoned;

impl std::fmt::Display for Poisoned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("poisoned job")
    }
}

impl std::error::Error for Poisoned {}

impl Message<Job> for Worker {
    type Reply = Result<u64, Poisoned>;

    async fn handle(&mut self, job: Job, _: &mut Context<Self, Self::Reply>) -> Self::Reply {
        if job.poison {
            return Err(Poisoned);
        }
        self.done += 1;
        Ok(self.done)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Telemetry tells us when a child was restarted: no sleeping, no polling.
    let telemetry = Telemetry::new();
    let (restarts, mut restarted) = mpsc::unbounded_channel();
    telemetry.attach("restarts", &[], move |event| {
        if event.name == events::CHILD_RESTARTED {
            let child = event.meta("child").map(|child| child.to_string());
            let _ = restarts.send(child);
        }
    })?;

    let flags = SupervisorFlags::new(Strategy::OneForOne)
        .with_name("pool")
        .with_intensity(3, Duration::from_secs(5))
        .with_telemetry(telemetry);
    let workers =
        (1..=3).map(|i| ChildSpec::actor::<Worker>(format!("worker-{i}"), || Worker { done: 0 }));
    let pool = Supervisor::start(flags, workers).await?;
    println!(
        "pool started: {} workers",
        pool.count_children().await?.active
    );

    let second = worker(&pool, 1).await?;
    println!(
        "worker-2 did {} job(s)",
        second.ask(Job { poison: false }).await?
    );
    // An error that no one awaits (a `tell`) crashes the actor, as in Erlang.
    second.tell(Job { poison: true }).await?;
    let child = tokio::time::timeout(Duration::from_secs(5), restarted.recv())
        .await?
        .flatten();
    println!("restarted: {}", child.as_deref().unwrap_or("?"));

    // The new incarnation starts from a fresh state.
    let second = worker(&pool, 1).await?;
    println!(
        "worker-2 (new) did {} job(s)",
        second.ask(Job { poison: false }).await?
    );

    pool.stop().await; // worker-3, worker-2, then worker-1
    println!("pool stopped");
    Ok(())
}

/// The running worker at position `index` of the pool.
async fn worker(
    pool: &Supervisor,
    index: usize,
) -> Result<ActorRef<Worker>, Box<dyn std::error::Error>> {
    let children = pool.which_children().await?;
    let handle = children
        .get(index)
        .and_then(|child| child.state.handle())
        .ok_or("worker not running")?;
    Ok(handle.downcast::<Worker>().ok_or("not a worker")?)
}
