//! `bench eventstore --backend postgres [--store URL]`: durable appends
//! per second into the EventStore on PostgreSQL, beside bare
//! tokio-postgres doing the same inserts into the same table with the
//! same durability (`synchronous_commit=on`), in the same run and on the
//! same server. Without `--store`, the bench starts a private PostgreSQL
//! as the tests do (src/postgres.rs) and removes it at the end. Its
//! directory (data and socket) goes under the temporary directory,
//! `TMPDIR` when set: `TMPDIR=/dev/shm cargo xtask bench eventstore
//! --backend postgres` puts its WAL on tmpfs, where a commit's flush is
//! free and what remains is the client's and the server's work.
//!
//! - `store_1_task_per_s`: 5,000 appends by one task, each awaited,
//!   alternating in chunks of 500 with `bare_per_txn_per_s`'s inserts.
//! - `store_64_tasks_per_s`: `n` appends (200,000 by default) by 64
//!   tasks, each awaiting each acknowledgement.
//! - `store_64_tasks_pipelined_per_s`: the same, each task keeping 256
//!   appends in flight and awaiting the oldest.
//! - `bare_per_txn_per_s`: 5,000 single-row inserts, one transaction
//!   each (a prepared statement in autocommit: one round trip, one flush).
//! - `bare_batched_per_s`: `n` inserts, 10,000 per transaction, each
//!   transaction one multi-row `INSERT ... SELECT FROM unnest(...)`.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use mabeam_foundation_services::{EventStore, EventStoreConfig, PostgresConfig};
use serde_json::json;

use crate::eventstore::{TASKS, event};

#[path = "../postgres.rs"]
pub(crate) mod postgres;

const SINGLE: u64 = 5_000;
const CHUNK: u64 = 500;
const WINDOW: usize = 256;
const BATCH_ROWS: u64 = 10_000;

/// A schema of its own for each phase.
fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn store_in(url: &str, schema: &str) -> Result<EventStore> {
    let config = PostgresConfig::new(url).with_schema(schema);
    Ok(EventStore::open(EventStoreConfig::postgres(config)).await?)
}

/// A bare connection on a schema with the store's table, indexes and
/// durability: the schema made by opening (and closing) a store there.
async fn bare_client(url: &str, schema: &str) -> Result<tokio_postgres::Client> {
    store_in(url, schema).await?.stop().await;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("connecting the bare client")?;
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "SET search_path TO {schema}; SET synchronous_commit = on"
        ))
        .await?;
    Ok(client)
}

const INSERT: &str = "INSERT INTO events (id, stream, stream_version, kind, ts_ms, node, data) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7)";

const INSERT_MANY: &str = "INSERT INTO events (id, stream, stream_version, kind, ts_ms, node, data) \
                           SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], \
                           $4::text[], $5::bigint[], $6::text[], $7::text[])";

fn row(i: u64) -> (i64, String, i64, String, i64, String, String) {
    let task = i % TASKS;
    (
        i as i64 + 1,
        format!("stream-{task}"),
        (i / TASKS + 1) as i64,
        "bench_appended".into(),
        i as i64,
        "local".into(),
        json!({"task": task, "i": i}).to_string(),
    )
}

async fn single_vs_per_txn(url: &str) -> Result<(f64, f64)> {
    let store = store_in(url, &fresh_schema()).await?;
    let bare = bare_client(url, &fresh_schema()).await?;
    let insert = bare.prepare(INSERT).await?;
    let (mut store_time, mut bare_time) = (Duration::ZERO, Duration::ZERO);
    for chunk in 0..SINGLE / CHUNK {
        let t = Instant::now();
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            store.append(event(0, i)).await?;
        }
        store_time += t.elapsed();
        let t = Instant::now();
        for i in chunk * CHUNK..(chunk + 1) * CHUNK {
            let r = row(i);
            bare.execute(&insert, &[&r.0, &r.1, &r.2, &r.3, &r.4, &r.5, &r.6])
                .await?;
        }
        bare_time += t.elapsed();
    }
    store.stop().await;
    let rate = |time: Duration| SINGLE as f64 / time.as_secs_f64();
    Ok((rate(store_time), rate(bare_time)))
}

async fn many_tasks(url: &str, n: u64, window: usize) -> Result<f64> {
    let store = store_in(url, &fresh_schema()).await?;
    crate::eventstore::many_tasks_on(store, n, window).await
}

async fn bare_batched(url: &str, n: u64) -> Result<f64> {
    let bare = bare_client(url, &fresh_schema()).await?;
    let insert = bare.prepare(INSERT_MANY).await?;
    let t = Instant::now();
    let mut i = 0;
    while i < n {
        let rows: Vec<_> = (i..(i + BATCH_ROWS).min(n)).map(row).collect();
        i += rows.len() as u64;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let streams: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
        let versions: Vec<i64> = rows.iter().map(|r| r.2).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
        let ts: Vec<i64> = rows.iter().map(|r| r.4).collect();
        let nodes: Vec<&str> = rows.iter().map(|r| r.5.as_str()).collect();
        let data: Vec<&str> = rows.iter().map(|r| r.6.as_str()).collect();
        bare.execute(
            &insert,
            &[&ids, &streams, &versions, &kinds, &ts, &nodes, &data],
        )
        .await?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Runs the bench against `store` (a server URL), or a private server.
pub(crate) async fn run(n: u64, store: Option<String>) -> Result<serde_json::Value> {
    let private = match store {
        Some(_) => None,
        None => {
            eprintln!("bench eventstore: starting a private PostgreSQL");
            Some(
                tokio::task::spawn_blocking(postgres::Instance::start_installing)
                    .await?
                    .map_err(anyhow::Error::msg)?,
            )
        }
    };
    let url = store.unwrap_or_else(|| private.as_ref().map(|p| p.url.clone()).unwrap_or_default());
    eprintln!(
        "bench eventstore: store, {SINGLE} appends from 1 task, alternating with \
         tokio-postgres, {SINGLE} inserts, one transaction each"
    );
    let (store_1_task, bare_per_txn) = single_vs_per_txn(&url).await?;
    eprintln!("bench eventstore: tokio-postgres, {n} inserts, {BATCH_ROWS} per transaction");
    let bare_batched = bare_batched(&url, n).await?;
    eprintln!("bench eventstore: store, {n} appends from {TASKS} tasks, each awaited");
    let store_64 = many_tasks(&url, n, 1).await?;
    eprintln!("bench eventstore: store, {n} appends from {TASKS} tasks, {WINDOW} in flight each");
    let store_64_pipelined = many_tasks(&url, n, WINDOW).await?;
    if let Some(private) = private {
        tokio::task::spawn_blocking(move || drop(private)).await?;
    }
    let round = |x: f64| x.round();
    let ratio = |a: f64, b: f64| (a / b * 100.0).round() / 100.0;
    Ok(json!({
        "bench": "eventstore",
        "backend": "postgres",
        "n": n,
        "store_1_task_per_s": round(store_1_task),
        "store_64_tasks_per_s": round(store_64),
        "store_64_tasks_pipelined_per_s": round(store_64_pipelined),
        "bare_per_txn_per_s": round(bare_per_txn),
        "bare_batched_per_s": round(bare_batched),
        "single_vs_per_txn": ratio(store_1_task, bare_per_txn),
        "pipelined_vs_batched": ratio(store_64_pipelined, bare_batched),
    }))
}
