//! `cargo xtask soak --minutes N [--rate R]`: the node binary (release)
//! under mixed load for N minutes, through its HTTP API only.
//!
//! The load, about R requests a second (20 by default) from a few client
//! tasks: counter agents started, asked (`counter.add`, `counter.get`),
//! crashed (`counter.crash`), killed, passivated and stopped; events
//! appended, and followed by a long-polling subscriber; votes and
//! auctions among a few worker agents; a service restarted every minute.
//! Each minute the node's resident set, open files, threads, registry
//! names and store size are sampled (stderr, one JSON line each).
//!
//! At the end every event the clients were told was stored (a 201) is
//! read back and compared, and must have reached the subscriber; every
//! agent the clients started and did not stop must be listed, with the
//! count its acknowledged additions add up to; every agent stopped must be
//! gone. The node's log is searched for panics (other than the crashes
//! asked for), and the node must stop cleanly on SIGTERM.
//!
//! The last line of stdout is JSON: `minutes`, `ops`, `errors`,
//! `rss_growth_after_warmup` (the resident set's growth from the sample
//! after the warm-up, five minutes or half the run if shorter, to the
//! last, as a fraction), `fd_growth` (open files, same samples), `lost`
//! (events or agents that differ from what the clients were told), and
//! the details. The command fails if anything was lost, the node panicked
//! or did not stop cleanly, or (in a run longer than five minutes) the
//! resident set grew more than 10% after the warm-up or open files grew.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, body::Bytes};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The panic message of a crash asked for (`counter.crash`), which is no
/// defect; the node's `kinds::COUNTER_CRASH`.
const ASKED_CRASH: &str = mabeam_node::kinds::COUNTER_CRASH;
/// The longest one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Client tasks sending the load.
const CLIENTS: usize = 4;
/// Counter agents alive at most (past that, a start becomes a stop).
const MAX_COUNTERS: usize = 200;
/// Worker agents, started first, that vote and bid.
const WORKERS: usize = 5;
/// Services restarted in turn, one a minute.
const RESTARTED: [&str; 5] = [
    "health_monitor",
    "telemetry_service",
    "rate_limiter",
    "event_store",
    "config_server",
];
/// Config paths each client updates in turn (`services.soak-C-K`, K below
/// this): a fixed set, so the soak itself does not grow `config.json`.
const CONFIG_PATHS: u64 = 4;

/// The parsed flags.
struct Options {
    minutes: u64,
    rate: u64,
}

fn options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        minutes: 2,
        rate: 20,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = |v: Option<&String>| -> Result<u64> {
            v.with_context(|| format!("{arg} needs a value"))?
                .parse()
                .with_context(|| format!("{arg} takes a positive integer"))
        };
        match arg.as_str() {
            "--minutes" => options.minutes = value(args.next())?,
            "--rate" => options.rate = value(args.next())?,
            other => bail!("unknown soak flag {other:?}; usage: soak --minutes N [--rate R]"),
        }
    }
    if options.minutes == 0 || options.rate == 0 {
        bail!("--minutes and --rate must be at least 1");
    }
    Ok(options)
}

/// Builds the node in release mode, then runs the soak.
pub(crate) fn soak(root: &Path, args: &[String]) -> Result<()> {
    let options = options(args)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    crate::run(
        root,
        &cargo,
        &["build", "--release", "-p", "mabeam-node", "--bin", "mabeam"],
        &[],
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("release").join("mabeam");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&binary, &options))?;
    println!("{report}");
    if report["ok"] != true {
        bail!("the soak failed (see the report)");
    }
    Ok(())
}

/// A client of the node's API (hyper's), which always sends the token.
#[derive(Clone)]
struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: String,
}

impl Api {
    /// One request; the status and the JSON body (`null` if none).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(body))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ))
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{path}: no answer within {REQUEST_TIMEOUT:?}"))?
    }
}

/// What the clients were told about one counter.
#[derive(Debug, Clone)]
struct Counter {
    /// The sum of the acknowledged additions.
    count: i64,
    /// False once an addition's outcome is unknown (no answer).
    certain: bool,
}

/// What the clients were told about one config path.
#[derive(Debug, Clone, Default)]
struct ConfigPath {
    /// The value of the last update answered 200, if any.
    acknowledged: Option<Value>,
    /// Values of later updates whose outcome is unknown (no answer, or a
    /// 500 `config_not_persisted`): the path may hold one of them.
    unknown: Vec<Value>,
    /// Updates answered 200.
    updates: u64,
}

/// What the clients were told, and what they counted.
#[derive(Default)]
struct Ledger {
    /// Counters started and not stopped; taken out while a client works
    /// on one, so two clients never race on one agent.
    idle: Vec<String>,
    counters: HashMap<String, Counter>,
    /// Counters stopped (a 200 to their DELETE).
    stopped: Vec<String>,
    /// Events acknowledged (a 201): id -> the event sent.
    events: BTreeMap<u64, Value>,
    /// Config updates by path (`services.soak-C-K`).
    config: BTreeMap<String, ConfigPath>,
    /// Count mismatches seen in replies while running.
    wrong_replies: u64,
    /// Operations by name.
    ops: BTreeMap<&'static str, u64>,
    /// Unexpected answers by operation.
    errors: BTreeMap<&'static str, u64>,
    /// The first few unexpected answers, for the report.
    first_errors: Vec<String>,
}

impl Ledger {
    fn op(&mut self, name: &'static str) {
        *self.ops.entry(name).or_default() += 1;
    }

    fn error(&mut self, name: &'static str, what: String) {
        *self.errors.entry(name).or_default() += 1;
        if self.first_errors.len() < 20 {
            self.first_errors.push(format!("{name}: {what}"));
        }
    }
}

type Shared = Arc<Mutex<Ledger>>;

fn lock(ledger: &Shared) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the node on a free loopback port and `data_dir`; answers it and
/// its address.
async fn start_node(binary: &Path, data_dir: &Path, log: &Path) -> Result<(Child, String)> {
    let mut child = Command::new(binary)
        .args(["run", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("the node's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the node did not say where it listens within 60 s")??
        .context("the node closed its stdout")?;
    let addr = line
        .strip_prefix("listening on http://")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .to_owned();
    Ok((child, addr))
}

async fn run(binary: &Path, options: &Options) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let log = dir.path().join("node.log");
    let (mut child, addr) = start_node(binary, &data_dir, &log).await?;
    let pid = child.id().context("the node's pid")?;
    let token = std::fs::read_to_string(data_dir.join("token"))?
        .trim()
        .to_owned();
    let api = Api {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base: format!("http://{addr}"),
        token,
    };
    eprintln!(
        "soak: node {pid} on {addr}, {} minutes at {} requests/s",
        options.minutes, options.rate
    );

    let ledger: Shared = Arc::default();
    let workers = start_workers(&api).await?;
    // Counters to work on from the first second (a crash or a kill is
    // then spread over many, within each one's restart limits).
    for _ in 0..20 {
        if let Err((name, what)) = start_counter(&api, &ledger, &mut Dice(1)).await {
            bail!("{name}: {what}");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The subscriber stops on its own flag, raised only once every client
    // has its last answer: on the clients' flag, its final read to the end
    // could run before an append still in flight is acknowledged, and
    // that event would count as lost though stored (a 10-minute run
    // reported one so).
    let subscriber_stop = Arc::new(AtomicBool::new(false));
    let subscriber = tokio::spawn(subscribe(api.clone(), subscriber_stop.clone()));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        clients.push(tokio::spawn(load(
            api.clone(),
            ledger.clone(),
            stop.clone(),
            client,
            options.rate,
            workers.clone(),
        )));
    }

    // One sample a minute, and a service restarted after each.
    let began = Instant::now();
    let mut samples = vec![sample(&api, pid, &data_dir, 0).await];
    for minute in 1..=options.minutes {
        tokio::time::sleep_until((began + Duration::from_secs(60 * minute)).into()).await;
        let s = sample(&api, pid, &data_dir, minute).await;
        eprintln!("soak: {s}");
        samples.push(s);
        if minute < options.minutes {
            let service = RESTARTED[(minute as usize - 1) % RESTARTED.len()];
            let path = format!("/api/services/{service}/restart");
            lock(&ledger).op("restart_service");
            let answer = api.call(Method::POST, &path, None).await;
            if let Err((name, what)) = expect("restart_service", answer, &[200]) {
                lock(&ledger).error(name, what);
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await?;
    }
    subscriber_stop.store(true, Ordering::SeqCst);
    let seen = subscriber.await??;

    let verdict = verify(&api, &ledger, &seen).await?;
    let panics = panics(&std::fs::read_to_string(&log).unwrap_or_default());
    let exit = stop_node(&mut child, pid).await;

    let warmup = (options.minutes / 2).clamp(1, 5) as usize;
    let rss = |i: usize| samples[i]["rss_kb"].as_f64().unwrap_or(0.0);
    let fds = |i: usize| samples[i]["fds"].as_i64().unwrap_or(0);
    let last = samples.len() - 1;
    let rss_growth = (rss(last) - rss(warmup)) / rss(warmup).max(1.0);
    let fd_growth = fds(last) - fds(warmup);
    let ledger = lock(&ledger);
    let ops: u64 = ledger.ops.values().sum();
    let errors: u64 = ledger.errors.values().sum();
    let lost = verdict["lost"].as_u64().unwrap_or(u64::MAX);
    // The bar (for runs longer than the warm-up): the resident set within
    // 10% of its value after the warm-up, open files flat (a few client
    // connections come and go).
    let rss_within_10_percent = rss_growth.abs() <= 0.10;
    let fds_flat = fd_growth <= 2;
    let ok = lost == 0
        && panics == 0
        && exit.as_deref() == Ok("exit status: 0")
        && (options.minutes <= 5 || (rss_within_10_percent && fds_flat));
    Ok(json!({
        "ok": ok,
        "panics": panics,
        "exit": exit.unwrap_or_else(|e| e),
        "ops_by_kind": ledger.ops,
        "errors_by_kind": ledger.errors,
        "first_errors": ledger.first_errors,
        "wrong_replies": ledger.wrong_replies,
        "rss_within_10_percent": rss_within_10_percent,
        "fds_flat": fds_flat,
        "verify": verdict,
        "samples": samples,
        "minutes": options.minutes,
        "ops": ops,
        "errors": errors,
        "rss_growth_after_warmup": (rss_growth * 1e4).round() / 1e4,
        "fd_growth": fd_growth,
        "lost": lost,
    }))
}

/// Starts the worker agents that vote and bid; answers their ids.
async fn start_workers(api: &Api) -> Result<Arc<Vec<String>>> {
    let mut ids = Vec::new();
    for i in 0..WORKERS {
        let id = format!("soak-worker-{i}");
        let body = json!({"kind": "worker", "id": id, "args": {"valuation": 5 + i}});
        let (status, reply) = api.call(Method::POST, "/api/agents", Some(body)).await?;
        if status != 201 {
            bail!("starting {id}: {status} {reply}");
        }
        ids.push(id);
    }
    Ok(Arc::new(ids))
}

/// A small deterministic generator (xorshift), one per client: the load
/// is the same mix on every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One client: an operation every `CLIENTS / rate` seconds until told to
/// stop.
async fn load(
    api: Api,
    ledger: Shared,
    stop: Arc<AtomicBool>,
    client: usize,
    rate: u64,
    workers: Arc<Vec<String>>,
) {
    let period = Duration::from_secs_f64(CLIENTS as f64 / rate as f64);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1));
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        ticks.tick().await;
        seq += 1;
        let roll = dice.below(100);
        let result = match roll {
            0..=24 => append(&api, &ledger, client, seq).await,
            25..=34 => start_counter(&api, &ledger, &mut dice).await,
            35..=79 => on_counter(&api, &ledger, &mut dice).await,
            80..=84 => vote(&api, &ledger, &workers, &mut dice).await,
            85..=89 => auction(&api, &ledger, &workers, &mut dice).await,
            90..=94 => update_config(&api, &ledger, client, seq, &mut dice).await,
            _ => read(&api, &ledger, &mut dice).await,
        };
        if let Err((name, what)) = result {
            lock(&ledger).error(name, what);
        }
    }
}

type Outcome = std::result::Result<(), (&'static str, String)>;

/// `Ok` when `status` is one of `expected`, the operation's error
/// otherwise.
fn expect(name: &'static str, answer: Result<(u16, Value)>, expected: &[u16]) -> Outcome {
    match answer {
        Ok((status, _)) if expected.contains(&status) => Ok(()),
        Ok((status, body)) => Err((name, format!("{status} {body}"))),
        Err(error) => Err((name, format!("{error:#}"))),
    }
}

async fn append(api: &Api, ledger: &Shared, client: usize, seq: u64) -> Outcome {
    lock(ledger).op("append_event");
    let event = json!({
        "stream": format!("soak-{client}"),
        "kind": "soak.tick",
        "data": {"client": client, "seq": seq, "pad": "x".repeat((seq % 64) as usize)},
    });
    match api
        .call(Method::POST, "/api/events", Some(event.clone()))
        .await
    {
        Ok((201, reply)) => match reply["id"].as_u64() {
            Some(id) => {
                lock(ledger).events.insert(id, event);
                Ok(())
            }
            None => Err(("append_event", format!("201 without an id: {reply}"))),
        },
        // The event store restarting: refused, not acknowledged.
        other => expect("append_event", other, &[]),
    }
}

/// Updates one of this client's config paths (`PUT /api/config/...`);
/// only this client writes it, so the last 200 is what the node must hold
/// (or a later update whose answer never came).
async fn update_config(
    api: &Api,
    ledger: &Shared,
    client: usize,
    seq: u64,
    dice: &mut Dice,
) -> Outcome {
    lock(ledger).op("update_config");
    let path = format!("services.soak-{client}-{}", dice.below(CONFIG_PATHS));
    let value = json!({"client": client, "seq": seq});
    let answer = api
        .call(
            Method::PUT,
            &format!("/api/config/{path}"),
            Some(value.clone()),
        )
        .await;
    let mut ledger = lock(ledger);
    let entry = ledger.config.entry(path).or_default();
    match answer {
        Ok((200, _)) => {
            entry.acknowledged = Some(value);
            entry.unknown.clear();
            entry.updates += 1;
            Ok(())
        }
        // The config process restarting: refused, nothing changed.
        Ok((503, _)) => Ok(()),
        other => {
            if !matches!(other, Ok((status, _)) if status < 500) {
                entry.unknown.push(value);
            }
            drop(ledger);
            expect("update_config", other, &[])
        }
    }
}

async fn start_counter(api: &Api, ledger: &Shared, dice: &mut Dice) -> Outcome {
    let full = {
        let ledger = lock(ledger);
        ledger.counters.len() >= MAX_COUNTERS
    };
    if full {
        return stop_counter(api, ledger, dice).await;
    }
    lock(ledger).op("start_agent");
    match api
        .call(
            Method::POST,
            "/api/agents",
            Some(json!({"kind": "counter", "args": {"start": 0}})),
        )
        .await
    {
        Ok((201, reply)) => {
            let Some(id) = reply["id"].as_str() else {
                return Err(("start_agent", format!("201 without an id: {reply}")));
            };
            let mut ledger = lock(ledger);
            ledger.counters.insert(
                id.to_owned(),
                Counter {
                    count: 0,
                    certain: true,
                },
            );
            ledger.idle.push(id.to_owned());
            Ok(())
        }
        other => expect("start_agent", other, &[]),
    }
}

/// Takes an idle counter out of the pool (a client works on it alone).
fn take(ledger: &Shared, dice: &mut Dice) -> Option<String> {
    let mut ledger = lock(ledger);
    if ledger.idle.is_empty() {
        return None;
    }
    let i = dice.below(ledger.idle.len() as u64) as usize;
    Some(ledger.idle.swap_remove(i))
}

fn put_back(ledger: &Shared, id: String) {
    lock(ledger).idle.push(id);
}

async fn stop_counter(api: &Api, ledger: &Shared, dice: &mut Dice) -> Outcome {
    let Some(id) = take(ledger, dice) else {
        return Ok(());
    };
    lock(ledger).op("stop_agent");
    match api
        .call(Method::DELETE, &format!("/api/agents/{id}"), None)
        .await
    {
        Ok((200, _)) => {
            let mut ledger = lock(ledger);
            ledger.counters.remove(&id);
            ledger.stopped.push(id);
            Ok(())
        }
        other => {
            put_back(ledger, id);
            expect("stop_agent", other, &[])
        }
    }
}

/// Asks, crashes, kills, passivates or stops one counter.
async fn on_counter(api: &Api, ledger: &Shared, dice: &mut Dice) -> Outcome {
    let roll = dice.below(100);
    if roll < 8 {
        return stop_counter(api, ledger, dice).await;
    }
    let Some(id) = take(ledger, dice) else {
        return Ok(());
    };
    let ask = |protocol: &str, body: Value| {
        let path = format!("/api/agents/{id}/ask");
        let body = json!({"protocol": protocol, "body": body, "timeout_ms": 5000});
        async move { api.call(Method::POST, &path, Some(body)).await }
    };
    let outcome = match roll {
        8..=59 => {
            lock(ledger).op("ask_add");
            let by = dice.below(5) as i64 + 1;
            match ask("counter.add", json!({"by": by})).await {
                Ok((200, reply)) => {
                    let mut ledger = lock(ledger);
                    let counter = ledger.counters.get_mut(&id).expect("taken from the pool");
                    counter.count += by;
                    let (expected, certain) = (counter.count, counter.certain);
                    if certain && reply["reply"]["count"].as_i64() != Some(expected) {
                        ledger.wrong_replies += 1;
                        ledger.error("ask_add", format!("{id}: {reply}, expected {expected}"));
                    }
                    Ok(())
                }
                other => {
                    // Whether the addition happened is unknown.
                    if let Some(counter) = lock(ledger).counters.get_mut(&id) {
                        counter.certain = false;
                    }
                    expect("ask_add", other, &[])
                }
            }
        }
        60..=79 => {
            lock(ledger).op("ask_get");
            match ask("counter.get", Value::Null).await {
                Ok((200, reply)) => {
                    let mut ledger = lock(ledger);
                    let counter = ledger.counters[&id].clone();
                    if counter.certain && reply["reply"]["count"].as_i64() != Some(counter.count) {
                        ledger.wrong_replies += 1;
                        ledger.error(
                            "ask_get",
                            format!("{id}: {reply}, expected {}", counter.count),
                        );
                    }
                    Ok(())
                }
                other => expect("ask_get", other, &[]),
            }
        }
        80..=85 => {
            lock(ledger).op("crash_agent");
            // The crash answers 409 (the agent failed the ask).
            expect(
                "crash_agent",
                ask("counter.crash", Value::Null).await,
                &[409],
            )
        }
        86..=91 => {
            lock(ledger).op("kill_agent");
            let answer = api
                .call(Method::POST, &format!("/api/agents/{id}/kill"), None)
                .await;
            // 409: no process to kill (passivated).
            expect("kill_agent", answer, &[200, 409])
        }
        _ => {
            lock(ledger).op("passivate_agent");
            let answer = api
                .call(Method::POST, &format!("/api/agents/{id}/passivate"), None)
                .await;
            // 409: already passivated or restarting.
            expect("passivate_agent", answer, &[200, 409])
        }
    };
    put_back(ledger, id);
    outcome
}

/// A subset of the workers, one to all.
fn some_workers(workers: &[String], dice: &mut Dice) -> Vec<String> {
    let n = 1 + dice.below(workers.len() as u64) as usize;
    workers[..n].to_vec()
}

async fn vote(api: &Api, ledger: &Shared, workers: &[String], dice: &mut Dice) -> Outcome {
    lock(ledger).op("vote");
    let body = json!({
        "topic": "soak",
        "value": dice.below(200) as f64,
        "agents": some_workers(workers, dice),
        "timeout_ms": 2000,
    });
    let answer = api
        .call(Method::POST, "/api/coordination/vote", Some(body))
        .await;
    expect("vote", answer, &[200])
}

async fn auction(api: &Api, ledger: &Shared, workers: &[String], dice: &mut Dice) -> Outcome {
    lock(ledger).op("auction");
    let body = json!({
        "item": "soak",
        "reserve": dice.below(8) as f64,
        "agents": some_workers(workers, dice),
        "bidding_ms": 500,
    });
    let answer = api
        .call(Method::POST, "/api/economics/auction", Some(body))
        .await;
    expect("auction", answer, &[200])
}

async fn read(api: &Api, ledger: &Shared, dice: &mut Dice) -> Outcome {
    let (name, path) = match dice.below(3) {
        0 => ("read_health", "/health".to_owned()),
        1 => (
            "read_agents",
            format!("/api/agents?limit={}", 1 + dice.below(50)),
        ),
        _ => ("read_tree", "/api/tree".to_owned()),
    };
    lock(ledger).op(name);
    // 503: a service restarting right now.
    expect(name, api.call(Method::GET, &path, None).await, &[200, 503])
}

/// Follows the event log with long polls from the first event until told
/// to stop (then reads to the end); answers every event seen, by id.
async fn subscribe(api: Api, stop: Arc<AtomicBool>) -> Result<HashMap<u64, Value>> {
    let mut seen = HashMap::new();
    let mut after = 0u64;
    let failures = AtomicU64::new(0);
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let wait = if stopping { 0 } else { 1000 };
        let path = format!("/api/events?after={after}&limit=1000&wait_ms={wait}");
        match api.call(Method::GET, &path, None).await {
            Ok((200, page)) => {
                let events = page["events"].as_array().cloned().unwrap_or_default();
                for event in &events {
                    if let Some(id) = event["id"].as_u64() {
                        seen.insert(id, event.clone());
                        after = after.max(id);
                    }
                }
                if stopping && events.is_empty() {
                    return Ok(seen);
                }
            }
            // The store restarting: poll again.
            _ => {
                if failures.fetch_add(1, Ordering::Relaxed) > 10_000 {
                    bail!("the subscriber failed 10,000 times");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One sample of the node: resident set (anonymous and file-backed), open
/// files, threads, registry names, agents and store size.
async fn sample(api: &Api, pid: u32, data_dir: &Path, minute: u64) -> Value {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let status = std::fs::read_to_string(proc_dir.join("status")).unwrap_or_default();
    // A `status` field in kB: the resident set, and its anonymous (heaps:
    // mimalloc's and the C allocator's) and file-backed parts.
    let kb = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let (rss_kb, rss_anon_kb, rss_file_kb) = (kb("VmRSS:"), kb("RssAnon:"), kb("RssFile:"));
    let count = |dir: &str| std::fs::read_dir(proc_dir.join(dir)).map_or(0, |d| d.count());
    let store_bytes: u64 = std::fs::read_dir(data_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("events.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let names = registry_names(api).await;
    let agents = match api.call(Method::GET, "/api/agents?limit=1", None).await {
        Ok((200, page)) => page["total"].as_u64(),
        _ => None,
    };
    json!({
        "minute": minute,
        "rss_kb": rss_kb,
        "rss_anon_kb": rss_anon_kb,
        "rss_file_kb": rss_file_kb,
        "fds": count("fd"),
        "threads": count("task"),
        "registry_names": names,
        "agents": agents,
        "store_bytes": store_bytes,
    })
}

/// The process registry's name count, from the Prometheus text.
async fn registry_names(api: &Api) -> Option<f64> {
    let request = Request::builder()
        .uri(format!("{}/metrics", api.base))
        .body(Full::new(Bytes::new()))
        .ok()?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, api.client.request(request))
        .await
        .ok()?
        .ok()?;
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter(|l| l.starts_with("mabeam_registry_names"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(|a, b| a + b)
}

/// Checks what the node holds against what the clients were told.
async fn verify(api: &Api, ledger: &Shared, seen: &HashMap<u64, Value>) -> Result<Value> {
    // Every event, paged.
    let mut stored: HashMap<u64, Value> = HashMap::new();
    let mut after = 0u64;
    loop {
        let path = format!("/api/events?after={after}&limit=1000");
        let (status, page) = api.call(Method::GET, &path, None).await?;
        if status != 200 {
            bail!("reading events: {status} {page}");
        }
        let events = page["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            break;
        }
        for event in events {
            let id = event["id"].as_u64().context("an event without an id")?;
            after = after.max(id);
            stored.insert(id, event);
        }
    }
    let same = |sent: &Value, got: &Value| {
        got["stream"] == sent["stream"]
            && got["kind"] == sent["kind"]
            && got["data"] == sent["data"]
    };
    let (events, counters, stopped, config) = {
        let ledger = lock(ledger);
        (
            ledger.events.clone(),
            ledger.counters.clone(),
            ledger.stopped.clone(),
            ledger.config.clone(),
        )
    };
    let mut missing_events = Vec::new();
    let mut unseen = Vec::new();
    for (id, sent) in &events {
        if !stored.get(id).is_some_and(|got| same(sent, got)) {
            missing_events.push(*id);
        }
        if !seen.get(id).is_some_and(|got| same(sent, got)) {
            unseen.push(*id);
        }
    }

    // Every agent, paged.
    let mut listed: HashMap<String, Value> = HashMap::new();
    let mut offset = 0u64;
    loop {
        let path = format!("/api/agents?offset={offset}&limit=1000");
        let (status, page) = api.call(Method::GET, &path, None).await?;
        if status != 200 {
            bail!("listing agents: {status} {page}");
        }
        for agent in page["agents"].as_array().cloned().unwrap_or_default() {
            if let Some(id) = agent["id"].as_str() {
                listed.insert(id.to_owned(), agent);
            }
        }
        match page["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    let mut missing_agents = Vec::new();
    let mut wrong_counts = Vec::new();
    let mut failed_agents = Vec::new();
    for (id, counter) in &counters {
        let Some(agent) = listed.get(id) else {
            missing_agents.push(id.clone());
            continue;
        };
        if agent["status"] == "failed" {
            failed_agents.push(id.clone());
            continue;
        }
        let body = json!({"protocol": "counter.get", "timeout_ms": 5000});
        let (status, reply) = api
            .call(Method::POST, &format!("/api/agents/{id}/ask"), Some(body))
            .await?;
        let count = reply["reply"]["count"].as_i64();
        if status != 200 || (counter.certain && count != Some(counter.count)) {
            wrong_counts
                .push(json!({"id": id, "told": counter.count, "has": count, "status": status}));
        }
    }
    let resurrected: Vec<&String> = stopped
        .iter()
        .filter(|id| listed.contains_key(*id))
        .collect();
    let uncertain = counters.values().filter(|c| !c.certain).count();

    // Every config path: the last acknowledged value (or a later one whose
    // answer never came).
    let mut wrong_config = Vec::new();
    for (path, told) in &config {
        let (status, reply) = api
            .call(Method::GET, &format!("/api/config/{path}"), None)
            .await?;
        let held = (status == 200).then(|| reply["value"].clone());
        let fine = match (&held, &told.acknowledged) {
            (Some(held), Some(acked)) => held == acked || told.unknown.contains(held),
            (Some(held), None) => told.unknown.contains(held),
            (None, None) => status == 404,
            (None, Some(_)) => false,
        };
        if !fine {
            wrong_config.push(json!({
                "path": path, "told": told.acknowledged, "has": held, "status": status,
            }));
        }
    }
    let config_updates: u64 = config.values().map(|c| c.updates).sum();

    let lost = missing_events.len()
        + unseen.len()
        + missing_agents.len()
        + wrong_counts.len()
        + resurrected.len()
        + wrong_config.len();
    Ok(json!({
        "lost": lost,
        "events_acknowledged": events.len(),
        "events_stored": stored.len(),
        "events_missing": missing_events.iter().take(20).collect::<Vec<_>>(),
        "events_unseen_by_subscriber": unseen.len(),
        "events_unseen_ids": unseen.iter().take(20).collect::<Vec<_>>(),
        "counters_alive": counters.len(),
        "counters_uncertain": uncertain,
        "counters_missing": missing_agents,
        "counters_failed": failed_agents,
        "counters_wrong": wrong_counts,
        "counters_stopped": stopped.len(),
        "stopped_but_listed": resurrected,
        "config_updates_acknowledged": config_updates,
        "config_paths": config.len(),
        "config_wrong": wrong_config,
    }))
}

/// Panics in the node's log, other than the crashes asked for.
fn panics(log: &str) -> usize {
    let lines: Vec<&str> = log.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(i, line)| {
            line.contains("panicked at")
                && !line.contains(ASKED_CRASH)
                && !lines
                    .get(i + 1)
                    .is_some_and(|next| next.contains(ASKED_CRASH))
        })
        .count()
}

/// SIGTERM, then the exit status (a kill after 60 s).
async fn stop_node(child: &mut Child, pid: u32) -> std::result::Result<String, String> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(Ok(status)) => Ok(status.to_string()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => {
            let _ = child.kill().await;
            Err("no exit within 60 s of SIGTERM".to_owned())
        }
    }
}
