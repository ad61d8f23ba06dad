//! [`HealthMonitor`]: the health of every service of the application trees
//! in one place: per service, overall, and a telemetry event whenever
//! something changes state (the seed's alerting through the telemetry
//! pipeline).
//!
//! # Concepts
//!
//! - **Sources**: [`Application`]s ([`monitor_application`]: each of its
//!   services, by its own health check, within that check's timeout) and
//!   named checks ([`add_check`]: any async function, within its timeout).
//!   A check that does not answer in time is unhealthy.
//! - **A round** ([`check_now`]) asks every source at once and updates each
//!   service's [`ServiceDetail`]: its [`HealthState`], last answer, last
//!   error, and since when it has been in its state. The service
//!   ([`HealthMonitor::service`]) runs a round every check interval.
//! - **The summary** ([`SystemHealth`], from [`report`]): overall state,
//!   the failed and degraded lists, and recommendations.
//!
//! [`monitor_application`]: HealthMonitor::monitor_application
//! [`add_check`]: HealthMonitor::add_check
//! [`check_now`]: HealthMonitor::check_now
//! [`report`]: HealthMonitor::report
//!
//! # Telemetry
//!
//! | name                             | measurements | metadata |
//! |----------------------------------|--------------|----------|
//! | `health_monitor.service.changed` |              | `service`, `from`, `to`, `error` (empty when healthy), `critical` |
//! | `health_monitor.overall.changed` | `failed`, `degraded` | `from`, `to` |
//!
//! A service seen for the first time changes from `healthy` (the state
//! assumed before anything was known) only if it is not healthy; a
//! service whose source is removed is forgotten without an event.
//!
//! # Example
//!
//! ```
//! use std::{sync::{Arc, atomic::{AtomicBool, Ordering}}, time::Duration};
//! use mabeam_foundation_services::{HealthMonitor, HealthState};
//!
//! # #[tokio::main] async fn main() {
//! let monitor = HealthMonitor::builder().build().unwrap();
//! let up = Arc::new(AtomicBool::new(true));
//! let flag = up.clone();
//! monitor
//!     .add_check("database", Duration::from_secs(1), move || {
//!         let up = flag.load(Ordering::SeqCst);
//!         async move { if up { Ok(()) } else { Err("connection refused".to_owned()) } }
//!     })
//!     .unwrap();
//! monitor.set_critical("database");
//!
//! assert_eq!(monitor.check_now().await.overall, HealthState::Healthy);
//! up.store(false, Ordering::SeqCst);
//! let health = monitor.check_now().await;
//! assert_eq!(health.overall, HealthState::Unhealthy);
//! assert_eq!(health.failed, ["database".into()]);
//! assert_eq!(
//!     health.service("database").unwrap().last_error.as_deref(),
//!     Some("unhealthy: connection refused")
//! );
//! # }
//! ```

mod error;
mod report;

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::Arc,
    time::Duration,
};

pub use error::HealthMonitorError;
use futures::{
    FutureExt,
    future::{BoxFuture, join_all},
};
use mabeam_supervision_core::{
    Application, Clock, Health, MetaValue, ServiceDef, ServiceStatus, Telemetry, WeakApplication,
};
use parking_lot::Mutex;
pub use report::{HealthState, ServiceDetail, SystemHealth};
use tokio::time::Instant;

use crate::rounds::{self, Rounds};

/// `health_monitor.service.changed`: a service changed state.
pub const SERVICE_CHANGED: &[&str] = &["health_monitor", "service", "changed"];
/// `health_monitor.overall.changed`: the overall state changed.
pub const OVERALL_CHANGED: &[&str] = &["health_monitor", "overall", "changed"];

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// Where health answers come from.
#[derive(Clone)]
enum Source {
    /// Held weakly: a monitor running inside the application it watches
    /// must not keep that application alive.
    Application(WeakApplication),
    Check {
        name: Arc<str>,
        timeout: Duration,
        check: Arc<CheckFn>,
    },
}

impl Source {
    fn name(&self) -> &str {
        match self {
            Source::Application(app) => app.name(),
            Source::Check { name, .. } => name,
        }
    }
}

/// A service's change of state, to emit.
struct Change {
    name: Arc<str>,
    from: HealthState,
    to: HealthState,
    error: Option<String>,
    critical: bool,
}

/// What the monitor keeps of one service between rounds.
#[derive(Debug, Clone)]
struct Record {
    /// Its source's name.
    source: Arc<str>,
    state: HealthState,
    health: Health,
    status: Option<ServiceStatus>,
    last_error: Option<String>,
    since: Instant,
    since_unix_ms: u64,
}

#[derive(Default)]
struct State {
    records: BTreeMap<Arc<str>, Record>,
    overall: Option<HealthState>,
    checked_at_unix_ms: u64,
}

/// Aggregates the health of applications and named checks: a cheap,
/// cloneable handle, every clone the same monitor. See the
/// [module docs](self).
#[derive(Clone)]
pub struct HealthMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    interval: Duration,
    clock: Clock,
    telemetry: Telemetry,
    sources: Mutex<Vec<Source>>,
    critical: Mutex<HashSet<Arc<str>>>,
    state: Mutex<State>,
    /// Serialises rounds, so their updates apply in order.
    round: tokio::sync::Mutex<()>,
}

/// Builds a [`HealthMonitor`]. Defaults: name `health_monitor`, a round
/// every 10 s, [`Clock::system`], telemetry disabled.
#[derive(Debug, Clone)]
pub struct HealthMonitorBuilder {
    name: Arc<str>,
    interval: Duration,
    clock: Clock,
    telemetry: Telemetry,
}

impl HealthMonitorBuilder {
    /// Sets the service's name (its child id in an application).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets how often the service runs a round.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the clock (rounds' timing, timeouts of named checks, "since").
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the telemetry handle the changes are emitted on.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Builds the monitor, with no source yet.
    /// [`InvalidInterval`](HealthMonitorError::InvalidInterval) for a zero
    /// interval.
    pub fn build(self) -> Result<HealthMonitor, HealthMonitorError> {
        if self.interval.is_zero() {
            return Err(HealthMonitorError::InvalidInterval(self.interval));
        }
        Ok(HealthMonitor {
            inner: Arc::new(Inner {
                name: self.name,
                interval: self.interval,
                clock: self.clock,
                telemetry: self.telemetry,
                sources: Mutex::new(Vec::new()),
                critical: Mutex::new(HashSet::new()),
                state: Mutex::new(State::default()),
                round: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

impl HealthMonitor {
    /// A builder with the defaults of [`HealthMonitorBuilder`].
    pub fn builder() -> HealthMonitorBuilder {
        HealthMonitorBuilder {
            name: "health_monitor".into(),
            interval: Duration::from_secs(10),
            clock: Clock::system(),
            telemetry: Telemetry::disabled(),
        }
    }

    /// Monitors every service of `app`, each named `app/service`.
    /// [`DuplicateSource`](HealthMonitorError::DuplicateSource) if a source
    /// of the application's name is already monitored.
    pub fn monitor_application(&self, app: &Application) -> Result<(), HealthMonitorError> {
        self.add_source(Source::Application(app.downgrade()))
    }

    /// Monitors a named check: `check()` answers `Ok(())` or `Err(reason)`
    /// within `timeout` (else it is [`Health::TimedOut`]; a panic is
    /// [`Health::Unhealthy`]).
    pub fn add_check<F, Fut>(
        &self,
        name: impl Into<Arc<str>>,
        timeout: Duration,
        check: F,
    ) -> Result<(), HealthMonitorError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let name = name.into();
        if timeout.is_zero() {
            return Err(HealthMonitorError::ZeroTimeout { name, timeout });
        }
        self.add_source(Source::Check {
            name,
            timeout,
            check: Arc::new(move || Box::pin(check())),
        })
    }

    /// Stops monitoring the source `name` (an application or a named
    /// check) and forgets its services.
    pub fn remove(&self, name: &str) -> Result<(), HealthMonitorError> {
        let mut sources = self.inner.sources.lock();
        let position = sources
            .iter()
            .position(|s| s.name() == name)
            .ok_or_else(|| HealthMonitorError::UnknownSource(name.into()))?;
        sources.remove(position);
        drop(sources);
        self.inner
            .state
            .lock()
            .records
            .retain(|_, record| &*record.source != name);
        Ok(())
    }

    /// Marks the service `name` (`app/service`, or a check's name) as
    /// critical: while it is unhealthy, the system is.
    pub fn set_critical(&self, name: impl Into<Arc<str>>) {
        self.inner.critical.lock().insert(name.into());
    }

    /// The names of the monitored sources.
    pub fn sources(&self) -> Vec<String> {
        self.inner
            .sources
            .lock()
            .iter()
            .map(|s| s.name().to_owned())
            .collect()
    }

    /// Runs one round now: asks every source at once, updates each
    /// service, emits the changes, and returns the summary.
    pub async fn check_now(&self) -> SystemHealth {
        let inner = &*self.inner;
        let _round = inner.round.lock().await;
        let sources = inner.sources.lock().clone();
        let answers = join_all(sources.iter().map(|source| inner.ask(source))).await;
        let now = inner.clock.now();
        let wall = inner.clock.unix_millis();
        let critical = inner.critical.lock().clone();
        // A source removed during the round is not recorded again.
        let current: HashSet<String> = self.sources().into_iter().collect();
        let mut changes = Vec::new();
        let (summary, overall_change) = {
            let mut state = inner.state.lock();
            state.checked_at_unix_ms = wall;
            for (source, services) in sources.iter().zip(answers) {
                if !current.contains(source.name()) {
                    continue;
                }
                let source_name: Arc<str> = source.name().into();
                for (name, health, status) in services {
                    changes.extend(inner.update(
                        &mut state,
                        &source_name,
                        (name, health, status),
                        now,
                        wall,
                        &critical,
                    ));
                }
            }
            let summary = inner.summary(&state, now, &critical);
            let from = state.overall.replace(summary.overall);
            let from = from.unwrap_or(HealthState::Healthy);
            let changed = (from != summary.overall).then_some(from);
            (summary, changed)
        };
        for change in &changes {
            inner.emit(change);
        }
        if let Some(from) = overall_change {
            inner.telemetry.emit(
                OVERALL_CHANGED,
                &[
                    ("failed", summary.failed.len() as f64),
                    ("degraded", summary.degraded.len() as f64),
                ],
                &[
                    ("from", MetaValue::Str(from.as_str())),
                    ("to", MetaValue::Str(summary.overall.as_str())),
                ],
            );
        }
        summary
    }

    /// The summary as of the last round (everything healthy and no service
    /// before the first).
    pub fn report(&self) -> SystemHealth {
        let inner = &*self.inner;
        let critical = inner.critical.lock().clone();
        let state = inner.state.lock();
        inner.summary(&state, inner.clock.now(), &critical)
    }

    /// The monitor's (and its service's) name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How often the service runs a round.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// The supervised service of this monitor, to put in an application:
    /// an actor that runs a round every interval. Monitoring its own
    /// application is fine: its health check answers without waiting for a
    /// round.
    pub fn service(&self) -> ServiceDef {
        rounds::service_def(self.clone())
    }

    fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    fn add_source(&self, source: Source) -> Result<(), HealthMonitorError> {
        let mut sources = self.inner.sources.lock();
        if sources.iter().any(|s| s.name() == source.name()) {
            return Err(HealthMonitorError::DuplicateSource(source.name().into()));
        }
        sources.push(source);
        Ok(())
    }
}

impl Inner {
    /// The answers of one source: (service name, health, status) triples.
    async fn ask(&self, source: &Source) -> Vec<(Arc<str>, Health, Option<ServiceStatus>)> {
        match source {
            Source::Application(weak) => match weak.upgrade() {
                Some(app) => app
                    .health()
                    .await
                    .services
                    .into_iter()
                    .map(|s| {
                        let name = format!("{}/{}", app.name(), s.name).into();
                        (name, s.health, Some(s.status))
                    })
                    .collect(),
                // Every handle dropped: the application stopped with the
                // last; its services answer as stopped.
                None => self.services_of(weak.name()),
            },
            Source::Check {
                name,
                timeout,
                check,
            } => {
                let run = AssertUnwindSafe(check()).catch_unwind();
                let health = tokio::select! {
                    answer = run => match answer {
                        Ok(Ok(())) => Health::Healthy,
                        Ok(Err(reason)) => Health::Unhealthy(reason.into()),
                        Err(_panic) => Health::Unhealthy("health check panicked".into()),
                    },
                    () = self.clock.sleep(*timeout) => Health::TimedOut(*timeout),
                };
                vec![(name.clone(), health, None)]
            }
        }
    }

    /// The services recorded for a source, as not running: what an
    /// application whose every handle is gone answers.
    fn services_of(&self, source: &str) -> Vec<(Arc<str>, Health, Option<ServiceStatus>)> {
        self.state
            .lock()
            .records
            .iter()
            .filter(|(_, record)| &*record.source == source)
            .map(|(name, _)| {
                (
                    name.clone(),
                    Health::NotRunning,
                    Some(ServiceStatus::Stopped),
                )
            })
            .collect()
    }

    /// Records one answer, emitting `service.changed` on a change of state.
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        state: &mut State,
        source: &Arc<str>,
        (name, health, status): (Arc<str>, Health, Option<ServiceStatus>),
        now: Instant,
        wall: u64,
        critical: &HashSet<Arc<str>>,
    ) -> Option<Change> {
        let new_state = HealthState::of(&health, status);
        let error = (!health.is_healthy()).then(|| health.to_string());
        let from = match state.records.get_mut(&name) {
            Some(record) => {
                let from = record.state;
                if from != new_state {
                    record.state = new_state;
                    record.since = now;
                    record.since_unix_ms = wall;
                }
                if error.is_some() {
                    record.last_error = error.clone();
                }
                record.health = health;
                record.status = status;
                from
            }
            None => {
                state.records.insert(
                    name.clone(),
                    Record {
                        source: source.clone(),
                        state: new_state,
                        health,
                        status,
                        last_error: error.clone(),
                        since: now,
                        since_unix_ms: wall,
                    },
                );
                HealthState::Healthy
            }
        };
        (from != new_state).then(|| Change {
            critical: critical.contains(&name),
            name,
            from,
            to: new_state,
            error,
        })
    }

    /// Emits a change (with no lock held: a handler may call the monitor).
    fn emit(&self, change: &Change) {
        self.telemetry.emit(
            SERVICE_CHANGED,
            &[],
            &[
                ("service", MetaValue::Str(&change.name)),
                ("from", MetaValue::Str(change.from.as_str())),
                ("to", MetaValue::Str(change.to.as_str())),
                (
                    "error",
                    MetaValue::Str(change.error.as_deref().unwrap_or("")),
                ),
                ("critical", MetaValue::Bool(change.critical)),
            ],
        );
    }

    fn summary(&self, state: &State, now: Instant, critical: &HashSet<Arc<str>>) -> SystemHealth {
        let services: Vec<ServiceDetail> = state
            .records
            .iter()
            .map(|(name, record)| ServiceDetail {
                name: name.clone(),
                state: record.state,
                health: record.health.clone(),
                status: record.status,
                critical: critical.contains(name),
                last_error: record.last_error.clone(),
                since_unix_ms: record.since_unix_ms,
                for_duration: now.saturating_duration_since(record.since),
            })
            .collect();
        let named = |wanted: HealthState| -> Vec<Arc<str>> {
            services
                .iter()
                .filter(|s| s.state == wanted)
                .map(|s| s.name.clone())
                .collect()
        };
        let (failed, degraded) = (named(HealthState::Unhealthy), named(HealthState::Degraded));
        let overall = if services
            .iter()
            .any(|s| s.critical && s.state == HealthState::Unhealthy)
            || (!services.is_empty() && failed.len() == services.len())
        {
            HealthState::Unhealthy
        } else if failed.is_empty() && degraded.is_empty() {
            HealthState::Healthy
        } else {
            HealthState::Degraded
        };
        let recommendations = services
            .iter()
            .filter_map(|s| report::recommendation(&s.name, &s.health, s.status))
            .collect();
        SystemHealth {
            overall,
            services,
            failed,
            degraded,
            recommendations,
            checked_at_unix_ms: state.checked_at_unix_ms,
        }
    }
}

impl fmt::Debug for HealthMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthMonitor")
            .field("name", &self.inner.name)
            .field("sources", &self.sources())
            .finish()
    }
}

impl Rounds for HealthMonitor {
    const ACTOR: &'static str = "HealthMonitor";

    fn service_name(&self) -> &str {
        self.name()
    }

    fn round_clock(&self) -> &Clock {
        self.clock()
    }

    fn round_interval(&self) -> Duration {
        self.interval()
    }

    async fn round(&self) {
        self.check_now().await;
    }
}
