//! `bench eventstore`: durable appends per second into the EventStore,
//! beside bare rusqlite doing the same inserts with the same durability
//! (WAL, `synchronous=FULL`, the store's own table and indexes), in the
//! same run and the same directory's file system.
//!
//! - `store_1_task_per_s`: 10,000 appends by one task, each awaited,
//!   alternating in chunks of 500 with `rusqlite_per_txn_per_s`'s inserts.
//! - `store_64_tasks_per_s`: `n` appends (1,000,000 by default) by 64
//!   tasks, each awaiting each acknowledgement (so a commit holds at most
//!   64 events).
//! - `store_64_tasks_pipelined_per_s`: the same, each task keeping 256
//!   appends in flight and awaiting the oldest (the design the store
//!   offers for throughput: every acknowledgement is still durable).
//! - `rusqlite_per_txn_per_s`: 10,000 inserts, one transaction each.
//! - `rusqlite_batched_per_s`: `n` inserts, 50,000 per transaction.

use std::{
    collections::VecDeque,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mabeam_foundation_services::{EventStore, EventStoreConfig};
use mabeam_supervision_core::Event;
use serde_json::json;

const SINGLE: u64 = 10_000;
const CHUNK: u64 = 500;
pub(crate) const TASKS: u64 = 64;
const WINDOW: usize = 256;
const BATCH_ROWS: u64 = 50_000;

pub(crate) fn event(task: u64, i: u64) -> Event {
    Event::new(
        format!("stream-{task}"),
        "bench_appended",
        json!({"task": task, "i": i}),
    )
}

/// A fresh directory for one phase, under the system's temporary directory.
fn fresh_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("mabeam-bench-eventstore")
        .tempdir()
        .context("creating a temporary directory")
}

async fn store_in(dir: &Path) -> Result<EventStore> {
    Ok(EventStore::open(EventStoreConfig::new(dir)).await?)
}

/// One task appending [`SINGLE`] events, each awaited, and bare rusqlite
/// doing as many inserts with one transaction each: alternated in chunks
/// of [`CHUNK`], so both meet the same disk (a sync's latency drifts by 2x
/// within a minute here). Answers (store, rusqlite) per second.
async fn single_vs_per_txn() -> Result<(f64, f64)> {
    let store_dir = fresh_dir()?;
    let store = store_in(store_dir.path()).await?;
    let bare_dir = fresh_dir()?;
    let mut conn = Some(bare_connection(bare_dir.path()).await?);
    let (mut store_time, mut bare_time) = (Duration::ZERO, Duration::ZERO);
    for chunk in 0..SINGLE / CHUNK {
        let t = Instant::now();
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            store.append(event(0, i)).await?;
        }
        store_time += t.elapsed();
        let mut bare = conn.take().context("the bare connection")?;
        let (bare, elapsed) = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            for i in chunk * CHUNK..(chunk + 1) * CHUNK {
                let tx = bare.transaction()?;
                insert(&mut tx.prepare_cached(INSERT)?, i)?;
                tx.commit()?;
            }
            anyhow::Ok((bare, t.elapsed()))
        })
        .await??;
        bare_time += elapsed;
        conn = Some(bare);
    }
    store.stop().await;
    let rate = |time: Duration| SINGLE as f64 / time.as_secs_f64();
    Ok((rate(store_time), rate(bare_time)))
}

async fn many_tasks(n: u64, window: usize) -> Result<f64> {
    let dir = fresh_dir()?;
    many_tasks_on(store_in(dir.path()).await?, n, window).await
}

/// `TASKS` tasks appending `n` events to `store` with `window` appends in
/// flight each; appends/s. Stops the store. (Both backends' bench.)
pub(crate) async fn many_tasks_on(store: EventStore, n: u64, window: usize) -> Result<f64> {
    let per_task = n / TASKS;
    let t = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut in_flight = VecDeque::with_capacity(window);
                for i in 0..per_task {
                    in_flight.push_back(store.append(event(task, i)));
                    if in_flight.len() >= window
                        && let Some(oldest) = in_flight.pop_front()
                    {
                        oldest.await?;
                    }
                }
                for pending in in_flight {
                    pending.await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let rate = (per_task * TASKS) as f64 / t.elapsed().as_secs_f64();
    let stats = store.stats().await?;
    eprintln!(
        "bench eventstore:   {} commits, largest group {}",
        stats.commits, stats.largest_group
    );
    store.stop().await;
    Ok(rate)
}

/// A bare rusqlite connection on a file with the store's schema and
/// durability: the schema made by opening (and closing) a store there.
async fn bare_connection(dir: &Path) -> Result<rusqlite::Connection> {
    store_in(dir).await?.stop().await;
    let conn = rusqlite::Connection::open(
        dir.join(mabeam_foundation_services::event_store::DATABASE_FILE),
    )?;
    let _: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

const INSERT: &str = "INSERT INTO events (stream, stream_version, kind, ts_ms, node, \
                      correlation_id, causation_id, idempotency_key, metadata, data) \
                      VALUES (?1, ?2, ?3, ?4, ?5, NULL, NULL, NULL, NULL, ?6)";

fn insert(stmt: &mut rusqlite::CachedStatement<'_>, i: u64) -> Result<()> {
    let task = i % TASKS;
    let data = serde_json::to_string(&json!({"task": task, "i": i}))?;
    stmt.execute(rusqlite::params![
        format!("stream-{task}"),
        (i / TASKS + 1) as i64,
        "bench_appended",
        i as i64,
        "local",
        data
    ])?;
    Ok(())
}

async fn rusqlite_batched(n: u64) -> Result<f64> {
    let dir = fresh_dir()?;
    let mut conn = bare_connection(dir.path()).await?;
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let mut i = 0;
        while i < n {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(INSERT)?;
                for _ in 0..BATCH_ROWS.min(n - i) {
                    insert(&mut stmt, i)?;
                    i += 1;
                }
            }
            tx.commit()?;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    })
    .await?
}

pub(crate) async fn run(n: u64) -> Result<serde_json::Value> {
    eprintln!(
        "bench eventstore: store, {SINGLE} appends from 1 task, alternating with \
         rusqlite, {SINGLE} inserts, one transaction each"
    );
    let (store_1_task, rusqlite_per_txn) = single_vs_per_txn().await?;
    eprintln!("bench eventstore: rusqlite, {n} inserts, {BATCH_ROWS} per transaction");
    let rusqlite_batched = rusqlite_batched(n).await?;
    eprintln!("bench eventstore: store, {n} appends from {TASKS} tasks, each awaited");
    let store_64 = many_tasks(n, 1).await?;
    eprintln!("bench eventstore: store, {n} appends from {TASKS} tasks, {WINDOW} in flight each");
    let store_64_pipelined = many_tasks(n, WINDOW).await?;
    let round = |x: f64| x.round();
    Ok(json!({
        "bench": "eventstore",
        "n": n,
        "store_1_task_per_s": round(store_1_task),
        "store_64_tasks_per_s": round(store_64),
        "store_64_tasks_pipelined_per_s": round(store_64_pipelined),
        "rusqlite_per_txn_per_s": round(rusqlite_per_txn),
        "rusqlite_batched_per_s": round(rusqlite_batched),
        "single_vs_per_txn": (store_1_task / rusqlite_per_txn * 100.0).round() / 100.0,
        "pipelined_vs_batched": (store_64_pipelined / rusqlite_batched * 100.0).round() / 100.0,
    }))
}
