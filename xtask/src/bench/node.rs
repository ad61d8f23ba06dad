//! `bench node`: the latency of `/health` over loopback while the node is
//! idle, then while N real agents (registered in the node's AgentRegistry,
//! supervised by its AgentSupervisor, on the node's agent runtime) burn
//! every core. The bar: loaded p99 at most 50 ms (goal 10 ms).
//!
//! Then the observer's stream: [`STREAMS`] `GET /api/observer/stream`
//! readers stay open while the agents burn and `/health` is sampled again
//! (`health_p99_ms_loaded_sse`; bar 50 ms, goal 10), and events appended
//! one at a time are timed from the append to their arrival on an open
//! stream (`sse_update_p99_ms`; bar 1,000 ms, goal 100).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use futures::StreamExt;
use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext};
use mabeam_node::{Node, NodeConfig, client};
use mabeam_supervision_core::{Event, ExitReason, StartError};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    sync::{mpsc, watch},
    task::{AbortHandle, JoinHandle},
};

/// How many agents are started (and stopped) at once.
const CONCURRENCY: usize = 256;

/// Requests per phase.
const REQUESTS: usize = 300;
/// Observer streams open during the SSE phase.
const STREAMS: usize = 10;
/// Events timed from append to arrival on a stream.
const UPDATES: usize = 200;
/// CPU burnt per turn of a busy child before it yields.
const TURN: Duration = Duration::from_micros(20);

/// An agent that burns CPU cooperatively while told to go (all start
/// first, and all idle before they stop: a start or a stop queued behind
/// busy agents would wait a whole round of them). Its burner runs on the
/// runtime its incarnation starts on: the node's agent runtime.
struct Busy(AbortHandle);

impl Agent for Busy {
    type Args = watch::Receiver<bool>;
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(mut go: Self::Args, _: Option<()>) -> Result<Self, StartError> {
        let burn = tokio::spawn(async move {
            loop {
                if !*go.borrow() && go.wait_for(|go| *go).await.is_err() {
                    return;
                }
                let began = Instant::now();
                while began.elapsed() < TURN {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
            }
        });
        Ok(Busy(burn.abort_handle()))
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) {}

    async fn on_stop(&mut self, _: &ExitReason) {
        self.0.abort();
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `REQUESTS` sequential `GET /health`; latencies in ms, sorted.
async fn sample(addr: &str) -> Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let began = Instant::now();
        let reply = client::request(addr, "GET", "/health", None).await?;
        if reply.status != 200 {
            bail!("/health answered {}: {}", reply.status, reply.body);
        }
        ms.push(began.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// Opens an observer stream and reads it until aborted, sending the id of
/// each stored event it carries to `ids` (if given).
async fn open_stream(
    addr: &str,
    token: &str,
    ids: Option<mpsc::UnboundedSender<u64>>,
) -> Result<JoinHandle<()>> {
    let mut stream = TcpStream::connect(addr).await?;
    // Reads under /api/ need the node's token (a browser sends it as the
    // `mabeam_token` cookie).
    stream
        .write_all(
            format!(
                "GET /api/observer/stream HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
                 Authorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next_line().await?.unwrap_or_default();
    if !status.contains(" 200 ") {
        bail!("the observer stream answered {status:?}");
    }
    Ok(tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let (Some(ids), Some(id)) = (&ids, line.strip_prefix("id: "))
                && let Ok(id) = id.trim().parse()
            {
                let _ = ids.send(id);
            }
        }
    }))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1]
}

pub(crate) async fn run(n: u64) -> Result<serde_json::Value> {
    let data_dir = std::env::temp_dir().join(format!("mabeam-bench-node-{}", std::process::id()));
    let config = NodeConfig {
        http: "127.0.0.1:0".parse()?,
        data_dir: data_dir.clone(),
        ..NodeConfig::default()
    };
    let node = Node::start(config).await?;
    let addr = node.addr().to_string();
    eprintln!("bench node: idle, {REQUESTS} requests");
    let idle = sample(&addr).await?;

    eprintln!("bench node: starting {n} busy agents on the agent runtime");
    let began = Instant::now();
    let agents = node
        .system()
        .agents()
        .and_then(|agents| agents.registry())
        .context("the node's agent registry runs")?;
    let (go, ready) = watch::channel(false);
    let config = Arc::new(AgentConfig::new::<Busy>("busy", ready));
    let started = futures::stream::iter(0..n)
        .map(|i| {
            let (agents, config) = (agents.clone(), config.clone());
            async move {
                let id = format!("busy-{i}");
                agents.register_agent(id.as_str(), config)?;
                agents.start_agent(&id).await.map(|_| ())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    if let Some(Err(error)) = started.into_iter().find(Result::is_err) {
        bail!("an agent did not start: {error}");
    }
    let start_s = began.elapsed().as_secs_f64();
    go.send_replace(true);
    eprintln!("bench node: started in {start_s:.2} s, all burning; loaded, {REQUESTS} requests");
    let loaded = sample(&addr).await?;

    eprintln!("bench node: {STREAMS} observer streams open; loaded, {REQUESTS} requests");
    let (ids_tx, mut ids) = mpsc::unbounded_channel();
    let token = node.token().to_owned();
    let mut readers = vec![open_stream(&addr, &token, Some(ids_tx)).await?];
    for _ in 1..STREAMS {
        readers.push(open_stream(&addr, &token, None).await?);
    }
    let loaded_sse = sample(&addr).await?;
    eprintln!("bench node: {UPDATES} events timed from append to an open stream");
    let store = node
        .system()
        .event_store()
        .context("the node has an event store")?
        .clone();
    let mut updates = Vec::with_capacity(UPDATES);
    for i in 0..UPDATES {
        let began = Instant::now();
        let appended = store
            .append(Event::new(
                "bench:sse",
                "tick",
                serde_json::json!({ "i": i }),
            ))
            .await?;
        let arrived = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(id) = ids.recv().await {
                if id >= appended.id {
                    return true;
                }
            }
            false
        })
        .await;
        if !matches!(arrived, Ok(true)) {
            bail!("event {} did not reach the stream within 30 s", appended.id);
        }
        updates.push(began.elapsed().as_secs_f64() * 1e3);
    }
    updates.sort_by(f64::total_cmp);
    for reader in &readers {
        reader.abort();
    }
    eprintln!(
        "bench node: /health p99 idle {:.2} ms, loaded {:.2} ms, loaded with streams {:.2} ms; \
         stream update p99 {:.2} ms; stopping",
        quantile(&idle, 0.99),
        quantile(&loaded, 0.99),
        quantile(&loaded_sse, 0.99),
        quantile(&updates, 0.99),
    );
    // Idle first: a stop queued behind busy agents would wait a round.
    go.send_replace(false);
    node.stop().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(serde_json::json!({
        "bench": "node",
        "n": n,
        "requests": REQUESTS,
        "start_s": start_s,
        "health_p50_ms_idle": quantile(&idle, 0.5),
        "health_p99_ms_idle": quantile(&idle, 0.99),
        "health_p50_ms_loaded": quantile(&loaded, 0.5),
        "health_p99_ms_loaded": quantile(&loaded, 0.99),
        "streams": STREAMS,
        "health_p50_ms_loaded_sse": quantile(&loaded_sse, 0.5),
        "health_p99_ms_loaded_sse": quantile(&loaded_sse, 0.99),
        "sse_update_p50_ms": quantile(&updates, 0.5),
        "sse_update_p99_ms": quantile(&updates, 0.99),
    }))
}
