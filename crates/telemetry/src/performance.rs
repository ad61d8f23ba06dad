//! [`PerformanceMonitor`]: per-agent throughput, latency, error rate and
//! memory, fed by agent telemetry, with bounded history, statistics, alert
//! thresholds, JSON and CSV export; the [`AgentLoad`] a load balancer reads.

use std::{
    collections::{HashMap, VecDeque},
    fmt::{self, Write as _},
    sync::Arc,
    time::Duration,
};

use mabeam_supervision_core::{
    AgentId, AgentLoad, ChildSpec, Clock, LoadReport, MetaValue, Telemetry, TelemetryEvent, events,
};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::{
    Stats, TelemetryServiceError,
    process::{AttachArgs, Attachment, Tick},
};

/// `performance.alert.raised`: an agent's figure crossed its threshold
/// (measurements `value`, `bound`; metadata `agent`, `metric`).
pub const ALERT_RAISED: &[&str] = &["performance", "alert", "raised"];
/// `performance.alert.cleared`: a later sample is back within bounds
/// (measurements `value`, `bound`; metadata `agent`, `metric`).
pub const ALERT_CLEARED: &[&str] = &["performance", "alert", "cleared"];

/// The id under which the monitor's handler is attached.
pub const MONITOR_HANDLER_ID: &str = "performance_monitor";

/// A figure the monitor keeps per agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PerfMetric {
    /// Time to handle one message, in microseconds (the latest sample).
    LatencyUs,
    /// Messages per second over the window.
    Throughput,
    /// Share of failed messages in the history, 0.0 to 1.0.
    ErrorRate,
    /// Memory in bytes (the latest sample).
    MemoryBytes,
}

impl PerfMetric {
    /// The metric's name as events and exports show it.
    pub fn as_str(self) -> &'static str {
        match self {
            PerfMetric::LatencyUs => "latency_us",
            PerfMetric::Throughput => "throughput",
            PerfMetric::ErrorRate => "error_rate",
            PerfMetric::MemoryBytes => "memory_bytes",
        }
    }
}

/// Which side of a bound is in trouble.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// Alert when the figure is above this.
    Above(f64),
    /// Alert when the figure is below this.
    Below(f64),
}

impl Bound {
    fn value(self) -> f64 {
        match self {
            Bound::Above(v) | Bound::Below(v) => v,
        }
    }

    fn violated_by(self, value: f64) -> bool {
        match self {
            Bound::Above(bound) => value > bound,
            Bound::Below(bound) => value < bound,
        }
    }
}

/// The settings of a [`PerformanceMonitor`]. Defaults: 32 samples of
/// history per agent and figure, a 60-second throughput window, at most
/// 100,000 agents, an agent forgotten after an hour without a sample, a
/// sweep every 60 s, the system clock. Memory is about
/// `agents × history × 24` bytes, so at most about 77 MB.
#[derive(Debug, Clone)]
pub struct PerformanceConfig {
    /// Samples kept per agent, for messages and for memory each.
    pub history: usize,
    /// The window throughput is counted over.
    pub window: Duration,
    /// The most agents followed: a sample of a new agent beyond it
    /// forgets the agents seen longest ago (reason `capacity`).
    pub max_agents: usize,
    /// An agent without a sample for this long is forgotten at the next
    /// sweep (reason `idle`); `None`: never for being idle.
    pub idle_after: Option<Duration>,
    /// How often the monitor's process sweeps (idle agents, and agents
    /// the tracked directory no longer knows: see
    /// [`PerformanceMonitor::track_agents`]).
    pub sweep_every: Duration,
    /// Where time comes from.
    pub clock: Clock,
}

impl Default for PerformanceConfig {
    fn default() -> Self {
        PerformanceConfig {
            history: 32,
            window: Duration::from_secs(60),
            max_agents: 100_000,
            idle_after: Some(Duration::from_secs(3600)),
            sweep_every: Duration::from_secs(60),
            clock: Clock::system(),
        }
    }
}

/// Why an agent's figures were dropped, as `performance.agent.forgotten`
/// says in its `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForgetReason {
    /// No sample for `idle_after`.
    Idle,
    /// A new agent past `max_agents`: the agents seen longest ago go.
    Capacity,
    /// The tracked directory no longer knows the agent.
    Deregistered,
    /// [`PerformanceMonitor::forget`] was called.
    Request,
}

impl ForgetReason {
    /// The reason as events and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgetReason::Idle => "idle",
            ForgetReason::Capacity => "capacity",
            ForgetReason::Deregistered => "deregistered",
            ForgetReason::Request => "request",
        }
    }
}

/// Whether an agent is still known (registered), for
/// [`PerformanceMonitor::track_agents`].
type KnownAgent = Arc<dyn Fn(&AgentId) -> bool + Send + Sync>;

/// An alert that is raised now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The agent.
    pub agent: AgentId,
    /// Which figure.
    pub metric: PerfMetric,
    /// The figure when the alert was raised.
    pub value: f64,
    /// The bound it crossed.
    pub bound: Bound,
}

/// One agent's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentPerformance {
    /// The agent.
    pub agent: AgentId,
    /// Messages handled since it was first seen.
    pub messages: u64,
    /// Of which failed.
    pub errors: u64,
    /// Messages per second over the window.
    pub throughput_per_s: f64,
    /// Share of failed messages in the history.
    pub error_rate: f64,
    /// Latency statistics over the history, in microseconds.
    pub latency_us: Stats,
    /// Memory statistics over the history, in bytes.
    pub memory_bytes: Stats,
}

struct Message {
    at: Instant,
    duration_us: f64,
    ok: bool,
}

struct AgentState {
    /// When its last sample came.
    seen: Instant,
    messages: VecDeque<Message>,
    memory: VecDeque<f64>,
    total: u64,
    errors: u64,
    /// The alerts raised now, by metric.
    alerts: HashMap<PerfMetric, Alert>,
}

impl AgentState {
    fn new(seen: Instant) -> Self {
        AgentState {
            seen,
            messages: VecDeque::new(),
            memory: VecDeque::new(),
            total: 0,
            errors: 0,
            alerts: HashMap::new(),
        }
    }
}

/// A change of alert state found by a sample, emitted after the lock.
enum Change {
    Raised(Alert),
    Cleared(Alert, f64),
}

/// Per-agent performance (the seed's MABEAM PerformanceMonitor): a cheap,
/// cloneable handle; every clone is the same monitor.
///
/// - **Fed by agent telemetry**: [`events::AGENT_MESSAGE_HANDLED`]
///   (`duration_us`, `result` `ok`/`error`) and [`events::AGENT_MEMORY`]
///   (`bytes`), while its process runs ([`child_spec`](Self::child_spec))
///   or after [`attach`](Self::attach); or directly through
///   [`record_message`](Self::record_message) and
///   [`record_memory`](Self::record_memory).
/// - **Bounded history**: the last `history` samples per agent and figure.
/// - **Bounded agents**: at most `max_agents`; an agent idle for
///   `idle_after`, or gone from the directory it tracks
///   ([`track_agents`](Self::track_agents): a deregistered agent), is
///   forgotten by the sweep its process runs every `sweep_every`
///   ([`sweep`](Self::sweep)). Every agent dropped is counted:
///   [`events::PERFORMANCE_AGENT_FORGOTTEN`] (`agents`, `reason`), metric
///   `mabeam_performance_agents_forgotten_total{reason}`.
/// - **Statistics**: mean, p50, p90, p99, min, max ([`stats`](Self::stats)).
/// - **Alerts**: a [`Bound`] per [`PerfMetric`]; a sample whose figure
///   crosses it raises an alert ([`ALERT_RAISED`]), and a later sample
///   back within bounds clears it ([`ALERT_CLEARED`]). Latency and memory
///   are judged by the latest sample, the error rate over the history,
///   throughput over the window.
/// - **Export**: [`to_json`](Self::to_json), [`to_csv`](Self::to_csv).
/// - **Load**: implements [`AgentLoad`], which economics' LoadBalancer reads.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::{AgentId, AgentLoad, Telemetry};
/// use mabeam_telemetry::{Bound, PerfMetric, PerformanceMonitor};
///
/// let monitor = PerformanceMonitor::new(Telemetry::disabled());
/// monitor.set_threshold(PerfMetric::LatencyUs, Bound::Above(1_000.0)).unwrap();
/// let agent = AgentId::from("solver");
/// monitor.record_message(&agent, Duration::from_micros(300), true);
/// monitor.record_message(&agent, Duration::from_micros(5_000), true); // raises
/// assert_eq!(monitor.active_alerts().len(), 1);
/// monitor.record_message(&agent, Duration::from_micros(200), true); // clears
/// assert!(monitor.active_alerts().is_empty());
/// assert_eq!(monitor.load(&agent).unwrap().samples, 3);
/// ```
#[derive(Clone)]
pub struct PerformanceMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    telemetry: Telemetry,
    config: PerformanceConfig,
    thresholds: Mutex<HashMap<PerfMetric, Bound>>,
    agents: Mutex<HashMap<AgentId, AgentState>>,
    known: Mutex<Option<KnownAgent>>,
}

impl fmt::Debug for PerformanceMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerformanceMonitor")
            .field("config", &self.inner.config)
            .field("agents", &self.inner.agents.lock().len())
            .finish_non_exhaustive()
    }
}

impl PerformanceMonitor {
    /// A monitor with the default settings, emitting alerts on `telemetry`.
    pub fn new(telemetry: Telemetry) -> Self {
        Self::with_config(telemetry, PerformanceConfig::default())
            .expect("the default settings are valid")
    }

    /// A monitor with `config`;
    /// [`InvalidSetting`](TelemetryServiceError::InvalidSetting) for a zero
    /// history or window.
    pub fn with_config(
        telemetry: Telemetry,
        config: PerformanceConfig,
    ) -> Result<Self, TelemetryServiceError> {
        if config.history == 0 {
            return Err(TelemetryServiceError::InvalidSetting {
                name: "history",
                reason: "must be at least 1",
            });
        }
        if config.window.is_zero() {
            return Err(TelemetryServiceError::InvalidSetting {
                name: "window",
                reason: "must be longer than zero",
            });
        }
        if config.max_agents == 0 {
            return Err(TelemetryServiceError::InvalidSetting {
                name: "max_agents",
                reason: "must be at least 1",
            });
        }
        if config.sweep_every.is_zero() || config.idle_after.is_some_and(|d| d.is_zero()) {
            return Err(TelemetryServiceError::InvalidSetting {
                name: if config.sweep_every.is_zero() {
                    "sweep_every"
                } else {
                    "idle_after"
                },
                reason: "must be longer than zero",
            });
        }
        Ok(PerformanceMonitor {
            inner: Arc::new(Inner {
                telemetry,
                config,
                thresholds: Mutex::new(HashMap::new()),
                agents: Mutex::new(HashMap::new()),
                known: Mutex::new(None),
            }),
        })
    }

    /// Sets the alert bound of `metric` (replacing any);
    /// [`InvalidThreshold`](TelemetryServiceError::InvalidThreshold) for a
    /// bound that is negative or not finite.
    pub fn set_threshold(
        &self,
        metric: PerfMetric,
        bound: Bound,
    ) -> Result<(), TelemetryServiceError> {
        let value = bound.value();
        if !value.is_finite() || value < 0.0 {
            return Err(TelemetryServiceError::InvalidThreshold {
                metric: metric.as_str(),
                value,
            });
        }
        self.inner.thresholds.lock().insert(metric, bound);
        Ok(())
    }

    /// Removes the bound of `metric`; its alerts raised now are cleared at
    /// once (with [`ALERT_CLEARED`] events).
    pub fn clear_threshold(&self, metric: PerfMetric) {
        self.inner.thresholds.lock().remove(&metric);
        let mut cleared = Vec::new();
        for state in self.inner.agents.lock().values_mut() {
            if let Some(alert) = state.alerts.remove(&metric) {
                let value = alert.value;
                cleared.push(Change::Cleared(alert, value));
            }
        }
        self.emit(cleared);
    }

    /// The bounds set now.
    pub fn thresholds(&self) -> Vec<(PerfMetric, Bound)> {
        self.inner
            .thresholds
            .lock()
            .iter()
            .map(|(m, b)| (*m, *b))
            .collect()
    }

    /// Records that `agent` handled a message in `duration`, successfully
    /// or not.
    pub fn record_message(&self, agent: &AgentId, duration: Duration, ok: bool) {
        let now = self.inner.config.clock.now();
        let duration_us = duration.as_secs_f64() * 1e6;
        let thresholds = self.inner.thresholds.lock().clone();
        let (changes, evicted) = {
            let mut agents = self.inner.agents.lock();
            let evicted = self.make_room(&mut agents, agent);
            let state = agents
                .entry(agent.clone())
                .or_insert_with(|| AgentState::new(now));
            state.seen = now;
            if state.messages.len() == self.inner.config.history {
                state.messages.pop_front();
            }
            state.messages.push_back(Message {
                at: now,
                duration_us,
                ok,
            });
            state.total += 1;
            state.errors += u64::from(!ok);
            let mut changes = Vec::new();
            for metric in [
                PerfMetric::LatencyUs,
                PerfMetric::ErrorRate,
                PerfMetric::Throughput,
            ] {
                let value = match metric {
                    PerfMetric::LatencyUs => duration_us,
                    PerfMetric::ErrorRate => error_rate(state),
                    _ => self.throughput(state, now),
                };
                judge(agent, state, &thresholds, metric, value, &mut changes);
            }
            (changes, evicted)
        };
        self.emit(changes);
        self.forgotten(ForgetReason::Capacity, evicted);
    }

    /// Records a sample of `agent`'s memory.
    pub fn record_memory(&self, agent: &AgentId, bytes: u64) {
        let now = self.inner.config.clock.now();
        let thresholds = self.inner.thresholds.lock().clone();
        let (changes, evicted) = {
            let mut agents = self.inner.agents.lock();
            let evicted = self.make_room(&mut agents, agent);
            let state = agents
                .entry(agent.clone())
                .or_insert_with(|| AgentState::new(now));
            state.seen = now;
            if state.memory.len() == self.inner.config.history {
                state.memory.pop_front();
            }
            state.memory.push_back(bytes as f64);
            let mut changes = Vec::new();
            judge(
                agent,
                state,
                &thresholds,
                PerfMetric::MemoryBytes,
                bytes as f64,
                &mut changes,
            );
            (changes, evicted)
        };
        self.emit(changes);
        self.forgotten(ForgetReason::Capacity, evicted);
    }

    /// Before a sample of `agent`: if it is new and the monitor is full,
    /// forgets the agents seen longest ago (a tenth of `max_agents` at
    /// once, so that a stream of new agents costs one scan per tenth, not
    /// one per agent). Answers how many.
    fn make_room(&self, agents: &mut HashMap<AgentId, AgentState>, agent: &AgentId) -> usize {
        let max = self.inner.config.max_agents;
        if agents.len() < max || agents.contains_key(agent) {
            return 0;
        }
        let count = (max / 10).max(1).min(agents.len());
        let mut seen: Vec<(Instant, AgentId)> = agents
            .iter()
            .map(|(id, state)| (state.seen, id.clone()))
            .collect();
        seen.select_nth_unstable_by_key(count - 1, |(at, _)| *at);
        for (_, id) in &seen[..count] {
            agents.remove(id);
        }
        count
    }

    /// Emits one `performance.agent.forgotten` for `count` agents.
    fn forgotten(&self, reason: ForgetReason, count: usize) {
        if count == 0 {
            return;
        }
        self.inner.telemetry.emit(
            events::PERFORMANCE_AGENT_FORGOTTEN,
            &[("agents", count as f64)],
            &[("reason", MetaValue::Str(reason.as_str()))],
        );
    }

    /// Follows which agents still exist: `is_known` answers whether an
    /// agent is registered (the umbrella passes its agent directory's
    /// `info(id).is_some()`); each [`sweep`](Self::sweep) forgets the
    /// agents it no longer knows (reason `deregistered`). Replaces any
    /// earlier one.
    pub fn track_agents(&self, is_known: impl Fn(&AgentId) -> bool + Send + Sync + 'static) {
        *self.inner.known.lock() = Some(Arc::new(is_known));
    }

    /// Forgets the agents idle for `idle_after` and those the tracked
    /// directory no longer knows, emitting one
    /// `performance.agent.forgotten` per reason; answers how many went.
    /// The monitor's process runs it every `sweep_every`.
    pub fn sweep(&self) -> usize {
        let now = self.inner.config.clock.now();
        let idle_since = self
            .inner
            .config
            .idle_after
            .and_then(|idle| now.checked_sub(idle));
        let known = self.inner.known.lock().clone();
        // Ask the directory outside the monitor's lock: it may take its
        // own locks.
        let ids: Vec<(AgentId, Instant)> = self
            .inner
            .agents
            .lock()
            .iter()
            .map(|(id, state)| (id.clone(), state.seen))
            .collect();
        let mut idle = Vec::new();
        let mut gone = Vec::new();
        for (id, seen) in ids {
            if idle_since.is_some_and(|since| seen < since) {
                idle.push(id);
            } else if known.as_ref().is_some_and(|known| !known(&id)) {
                gone.push(id);
            }
        }
        let (mut idle_n, mut gone_n) = (0, 0);
        {
            let mut agents = self.inner.agents.lock();
            for id in &idle {
                // Seen again meanwhile: kept.
                if agents
                    .get(id)
                    .is_some_and(|s| idle_since.is_some_and(|since| s.seen < since))
                {
                    agents.remove(id);
                    idle_n += 1;
                }
            }
            for id in &gone {
                if agents.remove(id).is_some() {
                    gone_n += 1;
                }
            }
        }
        self.forgotten(ForgetReason::Idle, idle_n);
        self.forgotten(ForgetReason::Deregistered, gone_n);
        idle_n + gone_n
    }

    /// How many agents the monitor follows now.
    pub fn agent_count(&self) -> usize {
        self.inner.agents.lock().len()
    }

    /// Keeps an agent event ([`events::AGENT_MESSAGE_HANDLED`],
    /// [`events::AGENT_MEMORY`]); others are ignored, as are events without
    /// an `agent`.
    pub fn handle_event(&self, event: &TelemetryEvent<'_>) {
        let Some(MetaValue::Str(agent)) = event.meta("agent") else {
            return;
        };
        if event.name == events::AGENT_MESSAGE_HANDLED {
            let Some(us) = event
                .measurement("duration_us")
                .filter(|v| v.is_finite() && *v >= 0.0)
            else {
                return;
            };
            let ok = !matches!(event.meta("result"), Some(MetaValue::Str("error")));
            self.record_message(&AgentId::from(agent), Duration::from_secs_f64(us / 1e6), ok);
        } else if event.name == events::AGENT_MEMORY
            && let Some(bytes) = event
                .measurement("bytes")
                .filter(|v| v.is_finite() && *v >= 0.0)
        {
            self.record_memory(&AgentId::from(agent), bytes as u64);
        }
    }

    /// Attaches the monitor to its telemetry's `agent.*` events, without a
    /// process (the process of [`child_spec`](Self::child_spec) does it
    /// itself).
    pub fn attach(&self) -> Result<(), TelemetryServiceError> {
        let monitor = self.clone();
        self.inner
            .telemetry
            .attach(MONITOR_HANDLER_ID, &["agent"], move |event| {
                monitor.handle_event(event)
            })?;
        Ok(())
    }

    /// The monitor's process: attached to `agent.*` events while it runs,
    /// and sweeping every `sweep_every` ([`sweep`](Self::sweep)).
    pub fn child_spec(&self, id: impl Into<Arc<str>>) -> ChildSpec {
        let monitor = self.clone();
        ChildSpec::actor::<Attachment>(id, move || {
            let handler = monitor.clone();
            let sweeper = monitor.clone();
            AttachArgs {
                telemetry: monitor.inner.telemetry.clone(),
                id: MONITOR_HANDLER_ID.to_owned(),
                prefix: vec!["agent".to_owned()],
                handler: Arc::new(move |event| handler.handle_event(event)),
                tick: Some(Tick {
                    every: monitor.inner.config.sweep_every,
                    clock: monitor.inner.config.clock.clone(),
                    run: Arc::new(move || {
                        sweeper.sweep();
                    }),
                }),
            }
        })
    }

    /// Forgets `agent` (its history and alerts, without alert events;
    /// counted as `performance.agent.forgotten`, reason `request`).
    pub fn forget(&self, agent: &AgentId) -> bool {
        let forgotten = self.inner.agents.lock().remove(agent).is_some();
        self.forgotten(ForgetReason::Request, usize::from(forgotten));
        forgotten
    }

    /// `agent`'s figures.
    pub fn stats(&self, agent: &AgentId) -> Option<AgentPerformance> {
        let now = self.inner.config.clock.now();
        let agents = self.inner.agents.lock();
        agents
            .get(agent)
            .map(|state| self.figures(agent, state, now))
    }

    /// Every agent's figures, sorted by agent id.
    pub fn all(&self) -> Vec<AgentPerformance> {
        let now = self.inner.config.clock.now();
        let agents = self.inner.agents.lock();
        let mut all: Vec<_> = agents
            .iter()
            .map(|(agent, state)| self.figures(agent, state, now))
            .collect();
        all.sort_by(|a, b| a.agent.cmp(&b.agent));
        all
    }

    /// The alerts raised now, sorted by agent.
    pub fn active_alerts(&self) -> Vec<Alert> {
        let agents = self.inner.agents.lock();
        let mut alerts: Vec<Alert> = agents
            .values()
            .flat_map(|state| state.alerts.values().cloned())
            .collect();
        alerts.sort_by(|a, b| {
            a.agent
                .cmp(&b.agent)
                .then(a.metric.as_str().cmp(b.metric.as_str()))
        });
        alerts
    }

    /// Every agent's figures and the active alerts as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "agents": self.all(),
            "alerts": self.active_alerts(),
        })
    }

    /// Every agent's figures as CSV, one line per agent after a header.
    /// Agent ids are quoted as RFC 4180 says.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(
            "agent,messages,errors,throughput_per_s,error_rate,latency_mean_us,latency_p50_us,latency_p99_us,memory_mean_bytes,memory_max_bytes\n",
        );
        for p in self.all() {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{},{},{}",
                csv_field(p.agent.as_str()),
                p.messages,
                p.errors,
                p.throughput_per_s,
                p.error_rate,
                p.latency_us.mean,
                p.latency_us.p50,
                p.latency_us.p99,
                p.memory_bytes.mean,
                p.memory_bytes.max,
            );
        }
        csv
    }

    fn figures(&self, agent: &AgentId, state: &AgentState, now: Instant) -> AgentPerformance {
        AgentPerformance {
            agent: agent.clone(),
            messages: state.total,
            errors: state.errors,
            throughput_per_s: self.throughput(state, now),
            error_rate: error_rate(state),
            latency_us: Stats::of(state.messages.iter().map(|m| m.duration_us)),
            memory_bytes: Stats::of(state.memory.iter().copied()),
        }
    }

    /// Messages in the window per second of window.
    fn throughput(&self, state: &AgentState, now: Instant) -> f64 {
        let window = self.inner.config.window;
        let since = now.checked_sub(window);
        let within = state
            .messages
            .iter()
            .rev()
            .take_while(|m| since.is_none_or(|since| m.at >= since))
            .count();
        within as f64 / window.as_secs_f64()
    }

    fn emit(&self, changes: Vec<Change>) {
        let telemetry = &self.inner.telemetry;
        for change in changes {
            let (name, alert, value) = match &change {
                Change::Raised(alert) => (ALERT_RAISED, alert, alert.value),
                Change::Cleared(alert, value) => (ALERT_CLEARED, alert, *value),
            };
            telemetry.emit(
                name,
                &[("value", value), ("bound", alert.bound.value())],
                &[
                    ("agent", MetaValue::Str(alert.agent.as_str())),
                    ("metric", MetaValue::Str(alert.metric.as_str())),
                ],
            );
        }
    }
}

impl AgentLoad for PerformanceMonitor {
    fn load(&self, agent: &AgentId) -> Option<LoadReport> {
        let p = self.stats(agent)?;
        let us = |v: f64| Duration::from_secs_f64(v.max(0.0) / 1e6);
        Some(LoadReport {
            throughput_per_s: p.throughput_per_s,
            latency_mean: us(p.latency_us.mean),
            latency_p50: us(p.latency_us.p50),
            latency_p99: us(p.latency_us.p99),
            error_rate: p.error_rate,
            samples: p.messages,
        })
    }
}

fn error_rate(state: &AgentState) -> f64 {
    if state.messages.is_empty() {
        return 0.0;
    }
    let failed = state.messages.iter().filter(|m| !m.ok).count();
    failed as f64 / state.messages.len() as f64
}

/// Raises or clears the alert of `metric` for `value`.
fn judge(
    agent: &AgentId,
    state: &mut AgentState,
    thresholds: &HashMap<PerfMetric, Bound>,
    metric: PerfMetric,
    value: f64,
    changes: &mut Vec<Change>,
) {
    let Some(bound) = thresholds.get(&metric).copied() else {
        return;
    };
    let violated = bound.violated_by(value);
    match (violated, state.alerts.contains_key(&metric)) {
        (true, false) => {
            let alert = Alert {
                agent: agent.clone(),
                metric,
                value,
                bound,
            };
            state.alerts.insert(metric, alert.clone());
            changes.push(Change::Raised(alert));
        }
        (false, true) => {
            if let Some(alert) = state.alerts.remove(&metric) {
                changes.push(Change::Cleared(alert, value));
            }
        }
        _ => {}
    }
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
