//! The benchmarks behind `cargo xtask bench NAME [--n N]`: progress on
//! stderr, one JSON object as the last line of stdout. Each runs as a task
//! on a multi-threaded runtime (driving from `block_on`'s thread slows
//! kameo's message passing several times).

mod agents;
mod cluster;
mod coordination;
mod economics;
mod eventstore;
mod eventstore_pg;
mod lifecycle;
mod node;
mod ratelimit;
mod recovery;
mod registry;
mod supervisor;

/// mimalloc, as the node uses: with glibc's allocator, starting
/// 100,000 actors spends about half its time growing the heap (kameo's
/// actors weigh 7 KB each); mimalloc halves the start phase for about 600
/// bytes more per actor. Built without transparent huge pages (`no_thp`):
/// with them, a fresh process's first gigabyte faults in 2 MiB pages whose
/// direct compaction made the start phase bimodal on our VMs (0.4 s right
/// after another run of ours, 2.0 s after anything else).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Result, bail};

/// The resident set size of this process, in bytes, as the kameo-raw anchor
/// measures it.
pub(crate) fn rss_bytes() -> Result<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("malformed /proc/self/statm"))?
        .parse()?;
    Ok(pages * 4096)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().cloned().unwrap_or_default();
    let n = args
        .windows(2)
        .find(|w| w[0] == "--n")
        .map(|w| w[1].parse::<u64>())
        .transpose()?;
    // `eventstore --backend postgres [--store URL]`.
    let option = |name: &str| args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone());
    let backend = option("--backend").unwrap_or_else(|| "sqlite".into());
    let store = option("--store");
    let child = option("--child").unwrap_or_else(|| "kameo".into());
    let rest: Vec<String> = args.iter().skip(1).cloned().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let line = runtime.block_on(async move {
        tokio::spawn(async move {
            match name.as_str() {
                "supervisor" => {
                    supervisor::run(n.unwrap_or(100_000), &child).await
                }
                "registry" => registry::run(n.unwrap_or(100_000)).await,
                "node" => node::run(n.unwrap_or(100_000)).await,
                "lifecycle" => lifecycle::run(n.unwrap_or(100_000)).await,
                "lifecycle-passivated" => lifecycle::run_passivated(n.unwrap_or(100_000)).await,
                "economics" => economics::run().await,
                "coordination" => coordination::run().await,
                "eventstore" if backend == "postgres" => {
                    eventstore_pg::run(n.unwrap_or(200_000), store).await
                }
                "eventstore" if backend == "sqlite" => eventstore::run(n.unwrap_or(1_000_000)).await,
                "eventstore" => bail!("unknown backend {backend:?}; known: sqlite, postgres"),
                "ratelimit" => ratelimit::run().await,
                "cluster" => {
                    let agents = n.map_or(cluster::FAILOVER_AGENTS, |n| n as usize);
                    cluster::run(store, agents).await
                }
                "cluster-node" => cluster::child(&rest).await,
                "recovery" => recovery::run(n.unwrap_or(100_000)).await,
                "recovery-child" => recovery::child(n.unwrap_or(100_000)).await,
                other => bail!(
                    "unknown bench {other:?}; known: supervisor, registry, node, lifecycle, economics, coordination, eventstore, ratelimit, recovery, cluster"
                ),
            }
        })
        .await?
    })?;
    println!("{line}");
    Ok(())
}
