//! `bench registry`: the phases of `../shared/anchors/beam/registry.exs` on
//! a [`ProcessRegistry`]: `n` registrations (1,000 owner processes with
//! `n / 1000` keys each), 1,000,000 lookups from 2 concurrent tasks (key
//! `(i * 7919 + w) % n + 1`), `n` unregistrations by the owners.
//!
//! `lookup_s` reads the holder's id and metadata borrowed
//! (`with_lookup`), as the anchor's `Registry.lookup` returns a pid and a
//! value; `lookup_handle_s` times the same lookups returning an owned
//! handle (`lookup`).
//!
//! As in the anchor, each owner is spawned inside the timed register phase
//! and registers its own keys. Our names are strings: each key is the
//! integer written in decimal into a stack buffer inside the timed loops,
//! as the anchor computes its integer key there. Everything goes through
//! the production namespace, as the anchor's single registry.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use kameo::Actor;
use mabeam_process_registry::ProcessRegistry;
use mabeam_supervision_core::{Namespace, ProcessHandle, Telemetry};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

const OWNERS: u64 = 1_000;
const LOOKUPS: u64 = 1_000_000;
const LOOKUP_TASKS: u64 = 2;

/// An owner process: it holds keys and does nothing else.
#[derive(Actor)]
struct Owner;

pub(crate) async fn run(n: u64) -> Result<serde_json::Value> {
    ensure!(
        n >= OWNERS && n.is_multiple_of(OWNERS),
        "n must be a multiple of {OWNERS}"
    );
    let chunk = n / OWNERS;
    let registry = ProcessRegistry::new(Telemetry::new());
    let ns = Namespace::Production;
    let mem0 = crate::rss_bytes()?;

    eprintln!("bench registry: {OWNERS} owners registering {chunk} keys each");
    let t = Instant::now();
    let (registered_tx, mut registered_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<()>>();
    for o in 0..OWNERS {
        let registry = registry.clone();
        let (registered_tx, done_tx) = (registered_tx.clone(), done_tx.clone());
        tokio::spawn(async move {
            let keys = o * chunk + 1..=o * chunk + chunk;
            let owner = async {
                let handle = ProcessHandle::spawn::<Owner>(Owner).await?;
                let mut buf = [0u8; 20];
                for k in keys.clone() {
                    registry.register(&ns, decimal(k, &mut buf), handle.clone(), json!(null))?;
                }
                anyhow::Ok(handle)
            }
            .await;
            let (unregister_tx, unregister_rx) = oneshot::channel::<()>();
            let failed = owner.is_err();
            let _ = registered_tx.send(owner.map(|handle| (handle, unregister_tx)));
            if failed || unregister_rx.await.is_err() {
                return;
            }
            let mut buf = [0u8; 20];
            let unregistered = keys.into_iter().try_for_each(|k| {
                registry.unregister(&ns, decimal(k, &mut buf))?;
                anyhow::Ok(())
            });
            let _ = done_tx.send(unregistered);
        });
    }
    drop(registered_tx);
    let mut owners = Vec::with_capacity(OWNERS as usize);
    while owners.len() < OWNERS as usize {
        let owner = registered_rx.recv().await.context("an owner task died")?;
        owners.push(owner?);
    }
    let register_s = t.elapsed().as_secs_f64();
    let mem1 = crate::rss_bytes()?;
    ensure!(
        registry.count(&ns) == n as usize,
        "not every key registered"
    );

    eprintln!("bench registry: {LOOKUPS} lookups from {LOOKUP_TASKS} tasks");
    // As the anchor's `Registry.lookup`, which returns the holder's pid
    // and value (values, no reference taken): `with_lookup` hands the
    // holder and metadata borrowed, read here as the id and the value.
    let lookup_s = lookups(&registry, n, |registry, key| {
        registry.with_lookup(&Namespace::Production, key, |holder, metadata| {
            std::hint::black_box((holder.id(), metadata.is_null()));
        })
    })
    .await?;
    eprintln!("bench registry: {LOOKUPS} lookups of an owned handle");
    let lookup_handle_s = lookups(&registry, n, |registry, key| {
        registry
            .lookup(&Namespace::Production, key)
            .map(|handle| drop(std::hint::black_box(handle)))
    })
    .await?;

    eprintln!("bench registry: {OWNERS} owners unregistering {chunk} keys each");
    let t = Instant::now();
    let mut handles = Vec::with_capacity(owners.len());
    for (handle, unregister) in owners {
        unregister
            .send(())
            .ok()
            .context("an owner task ended early")?;
        handles.push(handle);
    }
    drop(done_tx);
    while let Some(done) = done_rx.recv().await {
        done?;
    }
    let unregister_s = t.elapsed().as_secs_f64();
    ensure!(registry.count(&ns) == 0, "keys left after unregistering");

    for handle in &handles {
        handle.stop().await;
    }

    Ok(json!({
        "bench": "registry",
        "n": n,
        "lookups": LOOKUPS,
        "register_s": register_s,
        "lookup_s": lookup_s,
        "lookup_handle_s": lookup_handle_s,
        "unregister_s": unregister_s,
        "lookups_per_s": (LOOKUPS as f64 / lookup_s).round(),
        "bytes_per_key_with_owners": (mem1 - mem0) / n as i64,
    }))
}

/// The seconds [`LOOKUPS`] lookups of `n` keys take from [`LOOKUP_TASKS`]
/// concurrent tasks, each key `(i * 7919 + w) % n + 1` looked up with
/// `lookup` (which answers whether it found it).
async fn lookups(
    registry: &ProcessRegistry,
    n: u64,
    lookup: fn(&ProcessRegistry, &str) -> Option<()>,
) -> Result<f64> {
    let per = LOOKUPS / LOOKUP_TASKS;
    let t = Instant::now();
    let tasks: Vec<_> = (0..LOOKUP_TASKS)
        .map(|w| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let mut missing = 0u64;
                let mut buf = [0u8; 20];
                for i in 1..=per {
                    let k = (i * 7919 + w) % n + 1;
                    if lookup(&registry, decimal(k, &mut buf)).is_none() {
                        missing += 1;
                    }
                }
                missing
            })
        })
        .collect();
    let mut missing = 0;
    for task in tasks {
        missing += task.await?;
    }
    let seconds = t.elapsed().as_secs_f64();
    ensure!(missing == 0, "{missing} lookups found nothing");
    Ok(seconds)
}

/// `k` in decimal, written into `buf`.
fn decimal(mut k: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (k % 10) as u8;
        k /= 10;
        if k == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or_default()
}
