//! The node's built-in agent kinds: what `POST /api/agents` can start.
//!
//! Agents started through the API are durable: registered in the node's
//! agent store, and back after a restart of the node (a `kill -9`
//! included) on the same data directory.
//!
//! - `counter`: keeps a count (carried across restarts by its checkpoint,
//!   stored after each message: an answered `counter.add` survives a
//!   `kill -9`);
//!   answers `counter.add` (`{"by": n}`) and `counter.get` with
//!   `{"count": n}`; `counter.crash` panics in its handler (a fault on
//!   request, for soak and fault tests: the agent restarts with the count
//!   of its checkpoint). Args: `{"start": n}` (default 0).
//! - `worker`: takes part in coordination votes and economics auctions.
//!   It votes yes on a proposal whose body carries `{"value": x}` with
//!   `x <= approve_up_to`, no above it, and abstains without a value;
//!   ranks and approves options in the order given; estimates its
//!   valuation. It bids its valuation in sealed auctions (passing below
//!   the reserve), raises to the minimum in English ones while that is
//!   within its valuation, accepts a Dutch price at or below it, and bids
//!   its valuation for the whole bundle in combinatorial ones. It answers
//!   `worker.stats` with what it has handled. Args: `{"valuation": v,
//!   "approve_up_to": x}` (defaults 10 and 100).
//! - `probe`: records its activations, for fault tests of the cluster
//!   (at most one incarnation of an agent at a time): while an
//!   incarnation runs it appends a line `TAG ACTIVATION PID UNIX_MICROS`
//!   to the file `log` every `every_ms`, `ACTIVATION` unique to the
//!   incarnation; it answers `probe.get` with `{"activation": ...,
//!   "pid": ...}`. Args: `{"log": "/absolute/path.probe", "tag": "...",
//!   "every_ms": n}` (default 20; the file name must end in `.probe`, so
//!   no other file can be written through it).

use std::{collections::BTreeMap, fmt, sync::Arc};

use mabeam_agent_supervisor::{
    Agent, AgentConfig, AgentContext, AgentRecipes, CheckpointPolicy, EnvelopeError,
};
use mabeam_supervision_core::{Envelope, StartError};
use serde::Deserialize;
use serde_json::{Value, json};

/// Makes an agent configuration from a request's `args`.
type Make = fn(&Value) -> Result<AgentConfig, String>;

/// The agent kinds a node can start by name.
#[derive(Clone)]
pub struct AgentKinds {
    kinds: Arc<BTreeMap<&'static str, Make>>,
}

impl fmt::Debug for AgentKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKinds")
            .field("kinds", &self.names())
            .finish()
    }
}

impl Default for AgentKinds {
    fn default() -> Self {
        Self::builtin()
    }
}

/// Why a kind could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindError {
    /// No kind has this name.
    Unknown(String),
    /// The args do not fit the kind (what is wrong).
    InvalidArgs(String),
}

impl AgentKinds {
    /// The built-in kinds: `counter`, `worker` and `probe`.
    pub fn builtin() -> Self {
        let mut kinds: BTreeMap<&'static str, Make> = BTreeMap::new();
        kinds.insert(COUNTER, counter_config);
        kinds.insert(WORKER, worker_config);
        kinds.insert(PROBE, probe_config);
        AgentKinds {
            kinds: Arc::new(kinds),
        }
    }

    /// The kinds' names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    /// The recipes of every kind: how a node brings a stored agent back
    /// (the configuration [`config`](Self::config) makes, durable with
    /// its args).
    pub fn recipes(&self) -> AgentRecipes {
        self.kinds
            .iter()
            .fold(AgentRecipes::new(), |recipes, (name, make)| {
                let make = *make;
                recipes.with(*name, move |args: &Value| make(args))
            })
    }

    /// The configuration of an agent of `kind` with `args` (`null`: the
    /// defaults).
    pub fn config(&self, kind: &str, args: &Value) -> Result<AgentConfig, KindError> {
        let make = self
            .kinds
            .get(kind)
            .ok_or_else(|| KindError::Unknown(kind.to_owned()))?;
        make(args).map_err(KindError::InvalidArgs)
    }
}

/// The counter kind's name.
pub const COUNTER: &str = "counter";
/// The panic message of `counter.crash` (a deliberate crash, which a soak
/// tells apart from a real panic in the node's log).
pub const COUNTER_CRASH: &str = "counter.crash requested";
/// The worker kind's name.
pub const WORKER: &str = "worker";
/// The probe kind's name.
pub const PROBE: &str = "probe";

/// `args` read as `T` (`null` is `T`'s defaults); unknown fields refused.
fn args<T: for<'de> Deserialize<'de> + Default>(args: &Value) -> Result<T, String> {
    if args.is_null() {
        return Ok(T::default());
    }
    serde_json::from_value(args.clone()).map_err(|e| e.to_string())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CounterArgs {
    #[serde(default)]
    start: i64,
}

fn counter_config(value: &Value) -> Result<AgentConfig, String> {
    let CounterArgs { start } = args(value)?;
    // Every answered add is durable: its checkpoint is stored first.
    Ok(AgentConfig::new::<Counter>(COUNTER, start)
        .with_checkpoints(CheckpointPolicy::after_each_message()))
}

/// A counter agent (see the [module docs](self)).
#[derive(Debug)]
pub struct Counter {
    count: i64,
}

impl Agent for Counter {
    type Args = i64;
    type Message = i64;
    type Reply = i64;
    type Checkpoint = i64;

    async fn on_start(start: i64, checkpoint: Option<i64>) -> Result<Self, StartError> {
        Ok(Counter {
            count: checkpoint.unwrap_or(start),
        })
    }

    async fn handle(&mut self, by: i64, _: &mut AgentContext<'_>) -> i64 {
        self.count = self.count.saturating_add(by);
        self.count
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        match &*envelope.protocol {
            "counter.add" => {
                let by = envelope.body["by"]
                    .as_i64()
                    .ok_or_else(|| EnvelopeError::Rejected("\"by\" must be an integer".into()))?;
                self.count = self.count.saturating_add(by);
                Ok(json!({ "count": self.count }))
            }
            "counter.get" => Ok(json!({ "count": self.count })),
            // A crash on request: the reply never comes, the agent restarts.
            "counter.crash" => panic!("{COUNTER_CRASH}"),
            _ => Err(EnvelopeError::Unsupported),
        }
    }

    fn checkpoint(&self) -> Option<i64> {
        Some(self.count)
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct WorkerArgs {
    valuation: f64,
    approve_up_to: f64,
}

impl Default for WorkerArgs {
    fn default() -> Self {
        WorkerArgs {
            valuation: 10.0,
            approve_up_to: 100.0,
        }
    }
}

fn worker_config(value: &Value) -> Result<AgentConfig, String> {
    let args: WorkerArgs = args(value)?;
    if !args.valuation.is_finite() || args.valuation < 0.0 {
        return Err(format!(
            "valuation must be a finite number of at least 0, not {}",
            args.valuation
        ));
    }
    if !args.approve_up_to.is_finite() {
        return Err("approve_up_to must be a finite number".to_owned());
    }
    Ok(AgentConfig::new::<Worker>(
        WORKER,
        (args.valuation, args.approve_up_to),
    ))
}

/// A worker agent (see the [module docs](self)).
#[derive(Debug)]
pub struct Worker {
    valuation: f64,
    approve_up_to: f64,
    votes: u64,
    bids: u64,
}

impl Worker {
    fn vote(&mut self, body: &Value) -> Value {
        self.votes += 1;
        let options: Vec<&str> = body["options"]
            .as_array()
            .map(|o| o.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match body["rule"].as_str().unwrap_or("majority") {
            "ranked_choice" => json!({ "ranking": options }),
            "approval" => json!({ "approve": options.first().into_iter().collect::<Vec<_>>() }),
            "iterative" => json!({ "estimate": self.valuation }),
            _ => match body["body"]["value"].as_f64() {
                Some(value) if value <= self.approve_up_to => json!({ "vote": "yes" }),
                Some(_) => json!({ "vote": "no" }),
                None => json!({ "vote": "abstain" }),
            },
        }
    }

    fn bid(&mut self, body: &Value, me: &str) -> Value {
        self.bids += 1;
        let v = self.valuation;
        match body["kind"].as_str().unwrap_or_default() {
            "dutch" => json!({ "accept": body["price"].as_f64().is_some_and(|p| p <= v) }),
            "english" => {
                let minimum = body["minimum"].as_f64().unwrap_or(f64::INFINITY);
                if body["high_bidder"].as_str() == Some(me) || minimum > v {
                    json!({ "bid": null })
                } else {
                    json!({ "bid": minimum })
                }
            }
            "combinatorial" => {
                json!({ "bids": [{ "items": body["items"].clone(), "amount": v }] })
            }
            _ => {
                let reserve = body["reserve"].as_f64().unwrap_or(0.0);
                if v >= reserve && v > 0.0 {
                    json!({ "bid": v })
                } else {
                    json!({ "bid": null })
                }
            }
        }
    }
}

impl Agent for Worker {
    type Args = (f64, f64);
    type Message = ();
    type Reply = (u64, u64);
    type Checkpoint = ();

    async fn on_start(
        (valuation, approve_up_to): (f64, f64),
        _: Option<()>,
    ) -> Result<Self, StartError> {
        Ok(Worker {
            valuation,
            approve_up_to,
            votes: 0,
            bids: 0,
        })
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) -> (u64, u64) {
        (self.votes, self.bids)
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        ctx: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        match &*envelope.protocol {
            "coordination.vote" => Ok(self.vote(&envelope.body)),
            "economics.bid" => Ok(self.bid(&envelope.body, ctx.id().as_str())),
            "worker.stats" => Ok(json!({
                "votes": self.votes,
                "bids": self.bids,
                "valuation": self.valuation,
                "approve_up_to": self.approve_up_to,
            })),
            _ => Err(EnvelopeError::Unsupported),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeArgs {
    log: std::path::PathBuf,
    tag: String,
    #[serde(default = "probe_every_ms")]
    every_ms: u64,
}

fn probe_every_ms() -> u64 {
    20
}

fn probe_config(value: &Value) -> Result<AgentConfig, String> {
    let args: ProbeArgs = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    if !args.log.is_absolute() || args.log.extension().is_none_or(|e| e != "probe") {
        return Err(format!(
            "log must be an absolute path ending in .probe, not {:?}",
            args.log
        ));
    }
    if args.tag.is_empty() || args.tag.chars().any(char::is_whitespace) {
        return Err("tag must be non-empty, without whitespace".to_owned());
    }
    if !(1..=60_000).contains(&args.every_ms) {
        return Err(format!(
            "every_ms must be 1 to 60000, not {}",
            args.every_ms
        ));
    }
    Ok(AgentConfig::new::<Probe>(
        PROBE,
        (Arc::new(args.log), args.tag.into(), args.every_ms),
    ))
}

/// A probe agent (see the [module docs](self)): its ticker ends with the
/// incarnation (dropped, killed, or its runtime shut down).
#[derive(Debug)]
pub struct Probe {
    activation: String,
    ticker: tokio::task::AbortHandle,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

impl Agent for Probe {
    type Args = (Arc<std::path::PathBuf>, Arc<str>, u64);
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start((log, tag, every_ms): Self::Args, _: Option<()>) -> Result<Self, StartError> {
        use std::io::Write;
        let micros = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros())
        };
        let pid = std::process::id();
        let activation = format!("{pid}-{}", micros());
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*log)
            .map_err(|e| StartError::Failed(format!("probe log {}: {e}", log.display()).into()))?;
        let id = activation.clone();
        let ticker = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(std::time::Duration::from_millis(every_ms));
            loop {
                ticks.tick().await;
                // One write per line: appends of whole lines stay whole.
                let line = format!("{tag} {id} {pid} {}\n", micros());
                if file.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
        })
        .abort_handle();
        Ok(Probe { activation, ticker })
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) {}

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        match &*envelope.protocol {
            "probe.get" => Ok(json!({
                "activation": self.activation,
                "pid": std::process::id(),
            })),
            _ => Err(EnvelopeError::Unsupported),
        }
    }
}
