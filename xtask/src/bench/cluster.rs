//! `bench cluster`: three nodes on loopback sharing a PostgreSQL store
//! (a private instance unless `--store URL`): node `a` runs in this
//! process (the driver's side), `b` and `c` are child processes (this
//! binary, `cluster-node`).
//!
//! - `remote_asks_per_s`, `remote_ask_p50_ms`, `remote_ask_p99_ms`: 64
//!   callers on `a`, each asking its own `worker` agent on `b` over the
//!   node connection (`ConnectionManager::ask`: sealed frames, the agent's
//!   reply), one ask after the other, for [`ASK_WINDOW`].
//! - `local_asks_per_s`: the same 64 callers asking 64 agents on `a`
//!   through its agent directory.
//! - `directory_asks_per_s`: the callers asking their agents on `b` by
//!   id alone, through `a`'s cluster directory (`System::directory`, what
//!   the HTTP API, coordination and economics use): the owner found from
//!   the claims (remembered after the first read), then the same ask.
//! - `bare_round_trips_per_s`: 64 callers over one bare tokio TCP
//!   connection with the same framing (a length-prefixed frame) and the
//!   same encryption (Noise `NNpsk0_25519_ChaChaPoly_BLAKE2s` from `snow`,
//!   stateless transport), a server echoing a reply of the same shape; in
//!   the same run. `remote_vs_bare` is the ratio (must: at least 0.3).
//! - `failover_10k_s`: 10,000 `counter` agents started on `c`, `c`
//!   killed (`SIGKILL`); the time from the kill until every one of them
//!   answers again (through `a`, from whichever survivor it hashes to),
//!   detection included (must: at most 5 s).
//!
//! `MABEAM_BENCH_LOG=1` shows the three nodes' logs on stderr.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use mabeam_node::{Node, NodeConfig, client};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, Envelope,
    cluster::{RemoteDelivery, rendezvous_owner},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{mpsc, oneshot},
};

use crate::eventstore_pg::postgres;

/// Concurrent callers.
const CALLERS: usize = 64;
/// How long each ask phase runs.
const ASK_WINDOW: Duration = Duration::from_secs(3);
/// Agents started on the node that is killed, by default (`--n`).
pub(crate) const FAILOVER_AGENTS: usize = 10_000;
const COOKIE: &str = "0123456789abcdef0123456789abcdef";
const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

fn config(
    name: &str,
    dir: &std::path::Path,
    url: &str,
    schema: &str,
    join: Option<SocketAddr>,
) -> NodeConfig {
    let mut config = NodeConfig {
        data_dir: dir.to_owned(),
        http: "127.0.0.1:0".parse().expect("an address"),
        cluster_node: name.to_owned(),
        cluster_listen: "127.0.0.1:0".parse().expect("an address"),
        cluster_seeds: join.into_iter().collect(),
        cookie: Some(COOKIE.to_owned()),
        token: Some("bench-token-0123456789abcdef".to_owned()),
        store: Some(
            mabeam_foundation_services::PostgresConfig::new(url)
                .with_schema(schema)
                .with_pool_size(16),
        ),
        ..NodeConfig::default()
    };
    config.log = mabeam_node::LogLevel::Warn;
    config
}

/// The child: a node named by the arguments, until it is killed. Prints
/// `ready` once it serves.
/// With `MABEAM_BENCH_LOG` set, each node's log (`RUST_LOG`, else info)
/// on stderr: where a failover's time went.
fn node_logs() {
    if std::env::var_os("MABEAM_BENCH_LOG").is_some() {
        let _ = mabeam_node::logging::init(mabeam_node::LogLevel::Info, Default::default());
    }
}

pub(crate) async fn child(args: &[String]) -> Result<Value> {
    let [name, dir, url, schema, join] = args else {
        bail!("cluster-node NAME DIR URL SCHEMA JOIN");
    };
    let join: SocketAddr = join.parse()?;
    node_logs();
    let node = Node::start(config(name, dir.as_ref(), url, schema, Some(join))).await?;
    println!("ready {}", node.addr());
    std::future::pending::<()>().await;
    drop(node);
    Ok(Value::Null)
}

struct ChildNode {
    child: Child,
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_child(
    name: &str,
    dir: &std::path::Path,
    url: &str,
    schema: &str,
    join: SocketAddr,
) -> Result<ChildNode> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["cluster-node", name])
        .arg(dir)
        .args([url, schema, &join.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a child node")?;
    let stdout = child.stdout.take().context("its stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if !line.starts_with("ready") {
        let _ = child.kill();
        bail!("node {name} did not start: {line:?}");
    }
    Ok(ChildNode { child })
}

/// Waits until `a` sees `n` members up.
async fn until_up(node: &Node, n: usize) -> Result<()> {
    let addr = node.addr().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = client::request(&addr, "GET", "/api/cluster", Some(node.token())).await?;
        let view: Value = serde_json::from_str(&reply.body)?;
        let up = view["members"]
            .as_array()
            .map_or(0, |m| m.iter().filter(|m| m["state"] == "up").count());
        if up >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} members not up within 60 s: {view}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts agent `id` of `kind` on member `on` through the node-level
/// start request over `a`'s connection (the API's rate limit aside).
async fn start_on(node: &Node, on: &str, kind: &str, id: &str) -> Result<()> {
    let connections = node.system().connections().context("no connections")?;
    let envelope = Envelope::new(
        "mabeam.node.start",
        json!({"kind": kind, "id": id}),
        Duration::from_secs(60),
    );
    let answer = if on == connections.node() {
        let body = json!({"kind": kind, "id": id, "node": on}).to_string();
        let reply = client::send(
            &node.addr().to_string(),
            "POST",
            "/api/agents",
            Some(node.token()),
            Some(&body),
        )
        .await?;
        if reply.status != 201 {
            bail!("start {id} on {on}: {} {}", reply.status, reply.body);
        }
        return Ok(());
    } else {
        connections.ask(on, &AgentId::new(""), envelope).await?
    };
    if answer.get("ok").is_none() {
        bail!("start {id} on {on}: {answer}");
    }
    Ok(())
}

/// One ask phase: asks per second and the sorted latencies.
type Phase = (f64, Vec<Duration>);
/// One round: remote, local, bare.
type Round = (Phase, Phase, Phase, Phase);

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs `ask` from [`CALLERS`] tasks for [`ASK_WINDOW`]: asks per second
/// and the sorted latencies.
async fn drive<F, Fut>(ask: F) -> Result<(f64, Vec<Duration>)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let ask = Arc::new(ask);
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let ask = ask.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < ASK_WINDOW {
                    let t = Instant::now();
                    ask(caller).await?;
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let took = started.elapsed().as_secs_f64();
    all.sort();
    Ok((all.len() as f64 / took, all))
}

// ---- The bare round trip: tokio TCP, length-prefixed Noise frames -------

async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u32().await? as usize;
    let mut frame = vec![0; len];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame(
    stream: &mut (impl AsyncWriteExt + Unpin),
    frame: &[u8],
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
    stream.write_all(&out).await
}

/// The handshake of one side; the session after it.
async fn handshake(
    stream: &mut TcpStream,
    initiator: bool,
) -> Result<snow::StatelessTransportState> {
    let builder = snow::Builder::new(NOISE.parse()?).psk(0, &[7u8; 32])?;
    let mut state = if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    };
    let mut buf = vec![0u8; 1024];
    while !state.is_handshake_finished() {
        if state.is_my_turn() {
            let len = state.write_message(&[], &mut buf)?;
            write_frame(stream, &buf[..len]).await?;
        } else {
            let message = read_frame(stream).await?;
            state.read_message(&message, &mut buf)?;
        }
    }
    Ok(state.into_stateless_transport_mode()?)
}

fn seal(session: &snow::StatelessTransportState, nonce: u64, plain: &[u8]) -> Result<Vec<u8>> {
    let mut sealed = vec![0; plain.len() + 16];
    let len = session.write_message(nonce, plain, &mut sealed)?;
    sealed.truncate(len);
    Ok(sealed)
}

fn open(session: &snow::StatelessTransportState, nonce: u64, sealed: &[u8]) -> Result<Vec<u8>> {
    let mut plain = vec![0; sealed.len()];
    let len = session.read_message(nonce, sealed, &mut plain)?;
    plain.truncate(len);
    Ok(plain)
}

/// The echo server: each request (call id, JSON envelope) answered with
/// the call id and a JSON reply, as a node answers an agent call.
async fn bare_server(listener: TcpListener) -> Result<()> {
    let (mut stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let session = handshake(&mut stream, false).await?;
    let (mut read, write) = stream.into_split();
    let mut write = tokio::io::BufWriter::new(write);
    for nonce in 0u64.. {
        let Ok(frame) = read_frame(&mut read).await else {
            return Ok(());
        };
        let plain = open(&session, nonce, &frame)?;
        let (id, body) = plain.split_at(8);
        let envelope: Value = serde_json::from_slice(body)?;
        let mut reply = id.to_vec();
        serde_json::to_writer(&mut reply, &json!({"ok": {"handled": envelope["body"]}}))?;
        write_frame(&mut write, &seal(&session, nonce, &reply)?).await?;
        // Flushed when no request waits: replies to a burst go together.
        if read.peek(&mut [0u8; 1]).now_or_never_ready() {
            continue;
        }
        write.flush().await?;
    }
    Ok(())
}

/// Whether a read would not block (data waiting): a zero-timeout poll.
trait NowOrNever {
    fn now_or_never_ready(self) -> bool;
}

impl<F: std::future::Future> NowOrNever for F {
    fn now_or_never_ready(self) -> bool {
        futures::FutureExt::now_or_never(self).is_some()
    }
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// The bare client: one connection, a writer task and a reader task, the
/// callers' replies matched by call id (as the node connection does).
async fn bare_round_trips() -> Result<(f64, Vec<Duration>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(bare_server(listener));
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let session = Arc::new(handshake(&mut stream, true).await?);
    let (mut read, mut write) = stream.into_split();
    let pending: Pending = Arc::default();
    let (outbox, mut queue) = mpsc::channel::<Vec<u8>>(1024);
    let writer = {
        let session = session.clone();
        tokio::spawn(async move {
            let mut nonce = 0u64;
            let mut batch = Vec::new();
            while let Some(first) = queue.recv().await {
                batch.clear();
                for plain in
                    std::iter::once(first).chain(std::iter::from_fn(|| queue.try_recv().ok()))
                {
                    let sealed = seal(&session, nonce, &plain)?;
                    nonce += 1;
                    batch.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
                    batch.extend_from_slice(&sealed);
                }
                write.write_all(&batch).await?;
            }
            anyhow::Ok(())
        })
    };
    let reader = {
        let (session, pending) = (session.clone(), pending.clone());
        tokio::spawn(async move {
            let mut read = tokio::io::BufReader::new(&mut read);
            for nonce in 0u64.. {
                let Ok(frame) = read_frame(&mut read).await else {
                    break;
                };
                let plain = open(&session, nonce, &frame)?;
                let id = u64::from_be_bytes(plain[..8].try_into()?);
                if let Some(reply) = pending.lock().expect("pending").remove(&id) {
                    let _ = reply.send(plain[8..].to_vec());
                }
            }
            anyhow::Ok(())
        })
    };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let result = drive(move |caller| {
        let (pending, next, outbox) = (pending.clone(), next.clone(), outbox.clone());
        async move {
            let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (reply, answer) = oneshot::channel();
            pending.lock().expect("pending").insert(id, reply);
            let mut plain = id.to_be_bytes().to_vec();
            serde_json::to_writer(
                &mut plain,
                &json!({"protocol": "worker.stats", "body": {"caller": caller}, "timeout_ms": 5000}),
            )?;
            outbox.send(plain).await?;
            let body = answer.await?;
            let _: Value = serde_json::from_slice(&body)?;
            Ok(())
        }
    })
    .await;
    writer.abort();
    reader.abort();
    server.abort();
    result
}

// ---- The run ------------------------------------------------------------

pub(crate) async fn run(store: Option<String>, failover_agents: usize) -> Result<Value> {
    let private = match store {
        Some(_) => None,
        None => {
            eprintln!("bench cluster: starting a private PostgreSQL");
            Some(
                tokio::task::spawn_blocking(postgres::Instance::start_installing)
                    .await?
                    .map_err(anyhow::Error::msg)?,
            )
        }
    };
    let url = store.unwrap_or_else(|| private.as_ref().map(|p| p.url.clone()).unwrap_or_default());
    let schema = format!("bench_cluster_{}", std::process::id());
    node_logs();
    let dir = tempfile::tempdir()?;
    for name in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.path().join(name))?;
    }
    let a = Node::start(config(
        "a@bench",
        &dir.path().join("a"),
        &url,
        &schema,
        None,
    ))
    .await?;
    let listen = a
        .system()
        .connections()
        .and_then(|c| c.local_addr())
        .context("a's cluster address")?;
    let b = spawn_child("b@bench", &dir.path().join("b"), &url, &schema, listen)?;
    let c = spawn_child("c@bench", &dir.path().join("c"), &url, &schema, listen)?;
    until_up(&a, 3).await?;
    eprintln!("bench cluster: three nodes up");

    for i in 0..CALLERS {
        start_on(&a, "a@bench", "worker", &format!("local-{i}")).await?;
        start_on(&a, "b@bench", "worker", &format!("remote-{i}")).await?;
    }
    let envelope = |caller: usize| {
        Envelope::new(
            "worker.stats",
            json!({"caller": caller}),
            Duration::from_secs(5),
        )
    };
    let connections = a.system().connections().context("connections")?.clone();
    let agents = a.system().agents().context("agents")?.clone();
    let directory = a.system().directory().context("directory")?.clone();
    let remote_ids: Arc<Vec<AgentId>> = Arc::new(
        (0..CALLERS)
            .map(|i| AgentId::new(format!("remote-{i}")))
            .collect(),
    );
    let local_ids: Arc<Vec<AgentId>> = Arc::new(
        (0..CALLERS)
            .map(|i| AgentId::new(format!("local-{i}")))
            .collect(),
    );

    let mut runs = Vec::new();
    // Alternating, twice each: the best of two of each.
    for _ in 0..2 {
        let (connections, ids) = (connections.clone(), remote_ids.clone());
        let remote = drive(move |caller| {
            let ask = connections.ask("b@bench", &ids[caller], envelope(caller));
            async move {
                ask.await?;
                Ok(())
            }
        })
        .await?;
        let (agents_, ids) = (agents.clone(), local_ids.clone());
        let local = drive(move |caller| {
            let ask = agents_.ask(&ids[caller], envelope(caller));
            async move {
                ask.await?;
                Ok(())
            }
        })
        .await?;
        let (directory_, ids) = (directory.clone(), remote_ids.clone());
        let routed = drive(move |caller| {
            let ask = directory_.ask(&ids[caller], envelope(caller));
            async move {
                ask.await?;
                Ok(())
            }
        })
        .await?;
        let bare = bare_round_trips().await?;
        eprintln!(
            "bench cluster: remote {:.0}/s, through the directory {:.0}/s, local {:.0}/s, bare {:.0}/s",
            remote.0, routed.0, local.0, bare.0
        );
        runs.push((remote, local, bare, routed));
    }
    let best = |pick: fn(&Round) -> &Phase| {
        runs.iter()
            .map(pick)
            .max_by(|x, y| x.0.total_cmp(&y.0))
            .expect("two runs")
            .clone()
    };
    let remote = best(|r| &r.0);
    let local = best(|r| &r.1);
    let bare = best(|r| &r.2);
    let routed = best(|r| &r.3);

    // Failover: 10,000 counters on c, c killed.
    eprintln!("bench cluster: starting {failover_agents} agents on c");
    let ids: Vec<String> = (0..failover_agents).map(|i| format!("fo-{i:05}")).collect();
    let a = Arc::new(a);
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids_shared = Arc::new(ids.clone());
    let starters: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (a, next, ids) = (a.clone(), next.clone(), ids_shared.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(id) = ids.get(i) else {
                        return anyhow::Ok(());
                    };
                    start_on(&a, "c@bench", "counter", id).await?;
                }
            })
        })
        .collect();
    for starter in starters {
        starter.await??;
    }
    eprintln!(
        "bench cluster: {failover_agents} started on c in {:.1} s; killing c",
        started.elapsed().as_secs_f64()
    );
    let killed = Instant::now();
    drop(c);
    let survivors = ["a@bench", "b@bench"];
    let mut waiting: Vec<AgentId> = ids.iter().map(|id| AgentId::new(id.as_str())).collect();
    while !waiting.is_empty() {
        if killed.elapsed() > Duration::from_secs(60) {
            bail!(
                "{} agents still not answering 60 s after the kill",
                waiting.len()
            );
        }
        let mut asks = Vec::with_capacity(waiting.len());
        for id in &waiting {
            let owner = rendezvous_owner(id, survivors).unwrap_or("a@bench");
            let envelope = Envelope::new("counter.get", Value::Null, Duration::from_secs(5));
            asks.push(if owner == "a@bench" {
                agents.ask(id, envelope)
            } else {
                connections.ask(owner, id, envelope)
            });
        }
        let mut answered = Vec::with_capacity(asks.len());
        let mut asks = asks.into_iter().peekable();
        while asks.peek().is_some() {
            let chunk: Vec<_> = asks.by_ref().take(512).collect();
            for result in futures::future::join_all(chunk).await {
                answered.push(result.is_ok());
            }
        }
        waiting = waiting
            .into_iter()
            .zip(answered)
            .filter_map(|(id, ok)| (!ok).then_some(id))
            .collect();
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let failover = killed.elapsed().as_secs_f64();
    eprintln!("bench cluster: every agent answered {failover:.2} s after the kill");

    drop(b);
    if let Ok(a) = Arc::try_unwrap(a) {
        let _ = a.stop().await;
    }
    drop(private);
    Ok(json!({
        "remote_asks_per_s": remote.0.round(),
        "remote_ask_p50_ms": percentile(&remote.1, 0.5),
        "remote_ask_p99_ms": percentile(&remote.1, 0.99),
        "local_asks_per_s": local.0.round(),
        "local_ask_p50_ms": percentile(&local.1, 0.5),
        "bare_round_trips_per_s": bare.0.round(),
        "bare_p50_ms": percentile(&bare.1, 0.5),
        "remote_vs_bare": remote.0 / bare.0,
        "directory_asks_per_s": routed.0.round(),
        "directory_ask_p50_ms": percentile(&routed.1, 0.5),
        "directory_vs_bare": routed.0 / bare.0,
        "failover_10k_s": failover,
        "failover_agents": failover_agents,
        "callers": CALLERS,
    }))
}
