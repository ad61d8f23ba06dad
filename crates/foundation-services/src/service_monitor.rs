//! [`ServiceMonitor`]: periodic pings of the services of applications, and
//! automatic restart coordination: after N missed pings in a row it asks
//! the service's application to restart it, never while the service's
//! supervisor is restarting it, and with a growing wait between restarts
//! of a service that keeps failing.
//!
//! # A round, per watched service
//!
//! Each round ([`ping_all`]; the service runs one every interval) asks each
//! application once for its status, within the ping timeout (no answer in
//! time: every watched service of it misses a ping), then runs each
//! watched service's health check, all at once, each under its own
//! check's timeout: a slow or stuck check counts only against its own
//! service, never against its siblings. Then for each watched service:
//!
//! | it is                                   | decision |
//! |-----------------------------------------|----------|
//! | its application is not running          | skipped (`application_down`), misses reset |
//! | restarting or starting (its supervisor is on it) | skipped (`supervisor_restarting`), misses reset |
//! | stopped on request                      | skipped (`stopped_on_request`), misses reset |
//! | healthy                                 | healthy (or recovered after misses), misses reset |
//! | unhealthy, timed out, or failed, fewer than `max_misses` in a row | missed |
//! | the same, `max_misses` in a row, within the backoff | deferred |
//! | the same, `max_misses` in a row, past the backoff   | restart asked of its application |
//!
//! A new process since the last ping (its supervisor restarted it in
//! between) starts its count of misses over. The status is read again just
//! before a restart: if the supervisor has started restarting it
//! meanwhile, the restart is skipped. After the n-th consecutive restart
//! (from 0) the next waits at least the backoff's `delay(n)`; the count
//! resets once the service has been healthy for the backoff's
//! `reset_after`.
//!
//! [`ping_all`]: ServiceMonitor::ping_all
//!
//! # Telemetry
//!
//! Every decision but a plain healthy ping is an event, with metadata
//! `application` and `service`:
//!
//! | name                                | measurements | more metadata |
//! |-------------------------------------|--------------|---------------|
//! | `service_monitor.ping.missed`       | `misses`     | `reason` |
//! | `service_monitor.service.recovered` | `misses` (before) | |
//! | `service_monitor.restart.skipped`   |              | `reason` |
//! | `service_monitor.restart.deferred`  | `retry_in_ms`, `attempt` | |
//! | `service_monitor.restart.requested` | `attempt`    | |
//! | `service_monitor.restart.succeeded` | `attempt`    | |
//! | `service_monitor.restart.failed`    | `attempt`    | `error` |
//!
//! # Example
//!
//! ```
//! use kameo::prelude::*;
//! use mabeam_supervision_core::{ApplicationSpec, ChildSpec, ServiceDef};
//! use mabeam_foundation_services::{Decision, ServiceMonitor};
//!
//! #[derive(Actor)]
//! struct Worker;
//!
//! # #[tokio::main] async fn main() {
//! let app = ApplicationSpec::new("shop")
//!     .service(ServiceDef::child(ChildSpec::actor::<Worker>("db", || Worker)))
//!     .start()
//!     .await
//!     .unwrap();
//! let monitor = ServiceMonitor::builder().max_misses(3).build().unwrap();
//! monitor.watch(&app, "db").unwrap();
//! assert_eq!(monitor.ping_all().await, [("shop/db".into(), Decision::Healthy)]);
//! app.stop().await.unwrap();
//! # }
//! ```

mod decision;
mod error;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

pub use decision::{Decision, RestartRecord, SkipReason, WatchedService};
pub use error::ServiceMonitorError;
use futures::future::join_all;
use kameo::actor::ActorId;
use mabeam_supervision_core::{
    Application, ApplicationStatus, Backoff, Clock, Health, MetaValue, ServiceDef, ServiceStatus,
    StatusReport, Telemetry, WeakApplication,
};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::rounds::{self, Rounds};

/// `service_monitor.ping.missed`
pub const PING_MISSED: &[&str] = &["service_monitor", "ping", "missed"];
/// `service_monitor.service.recovered`
pub const RECOVERED: &[&str] = &["service_monitor", "service", "recovered"];
/// `service_monitor.restart.skipped`
pub const RESTART_SKIPPED: &[&str] = &["service_monitor", "restart", "skipped"];
/// `service_monitor.restart.deferred`
pub const RESTART_DEFERRED: &[&str] = &["service_monitor", "restart", "deferred"];
/// `service_monitor.restart.requested`
pub const RESTART_REQUESTED: &[&str] = &["service_monitor", "restart", "requested"];
/// `service_monitor.restart.succeeded`
pub const RESTART_SUCCEEDED: &[&str] = &["service_monitor", "restart", "succeeded"];
/// `service_monitor.restart.failed`
pub const RESTART_FAILED: &[&str] = &["service_monitor", "restart", "failed"];

/// Pings services and coordinates their restarts: a cheap, cloneable
/// handle, every clone the same monitor. See the [module docs](self).
#[derive(Clone)]
pub struct ServiceMonitor {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    interval: Duration,
    ping_timeout: Duration,
    max_misses: u32,
    backoff: Backoff,
    clock: Clock,
    telemetry: Telemetry,
    watched: Mutex<BTreeMap<Arc<str>, Watch>>,
    /// Serialises rounds.
    round: tokio::sync::Mutex<()>,
}

/// One watched service.
struct Watch {
    /// Held weakly: a monitor running inside the application it watches
    /// must not keep that application alive.
    app: WeakApplication,
    service: Arc<str>,
    misses: u32,
    attempts: u32,
    /// No restart before this (the backoff after the last one).
    not_before: Option<Instant>,
    /// The process seen at the last ping.
    last_process: Option<ActorId>,
    /// Healthy without a break since.
    healthy_since: Option<Instant>,
    restarts: Vec<RestartRecord>,
}

/// Builds a [`ServiceMonitor`]. Defaults: name `service_monitor`, a round
/// every 5 s, ping timeout 1 s (for an application's status; each health
/// check runs under its own timeout), a restart after 3 missed pings, restart
/// backoff from 1 s to 60 s (doubling, reset after 60 s healthy),
/// [`Clock::system`], telemetry disabled.
#[derive(Debug, Clone)]
pub struct ServiceMonitorBuilder {
    name: Arc<str>,
    interval: Duration,
    ping_timeout: Duration,
    max_misses: u32,
    backoff: Backoff,
    clock: Clock,
    telemetry: Telemetry,
}

impl ServiceMonitorBuilder {
    /// Sets the service's name (its child id in an application).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets how often the service pings.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets how long an application may take to answer a ping (its
    /// status; each service's health check has its own timeout).
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// Sets how many pings in a row a service may miss before a restart.
    pub fn max_misses(mut self, misses: u32) -> Self {
        self.max_misses = misses;
        self
    }

    /// Sets the wait between consecutive restarts of one service.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the telemetry handle the decisions are emitted on.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Checks the settings and builds the monitor, watching nothing yet.
    pub fn build(self) -> Result<ServiceMonitor, ServiceMonitorError> {
        for (what, value) in [
            ("interval", self.interval),
            ("ping timeout", self.ping_timeout),
        ] {
            if value.is_zero() {
                return Err(ServiceMonitorError::InvalidDuration { what, value });
            }
        }
        if self.max_misses == 0 {
            return Err(ServiceMonitorError::InvalidMaxMisses);
        }
        self.backoff
            .validate()
            .map_err(ServiceMonitorError::InvalidBackoff)?;
        Ok(ServiceMonitor {
            inner: Arc::new(Inner {
                name: self.name,
                interval: self.interval,
                ping_timeout: self.ping_timeout,
                max_misses: self.max_misses,
                backoff: self.backoff,
                clock: self.clock,
                telemetry: self.telemetry,
                watched: Mutex::new(BTreeMap::new()),
                round: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// What one application answered to a ping: its status (each watched
/// service's health is checked apart, under its own timeout).
enum Answer {
    Answered(StatusReport),
    TimedOut(Duration),
    /// Every handle to the application is gone: it stopped with the last.
    Gone,
}

/// What to do about one service after its ping.
enum Action {
    Decided(Decision),
    Restart { attempt: u32 },
}

impl ServiceMonitor {
    /// A builder with the defaults of [`ServiceMonitorBuilder`].
    pub fn builder() -> ServiceMonitorBuilder {
        ServiceMonitorBuilder {
            name: "service_monitor".into(),
            interval: Duration::from_secs(5),
            ping_timeout: Duration::from_secs(1),
            max_misses: 3,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
            clock: Clock::system(),
            telemetry: Telemetry::disabled(),
        }
    }

    /// Watches the service `service` of `app`, named `app/service`.
    pub fn watch(&self, app: &Application, service: &str) -> Result<(), ServiceMonitorError> {
        if !app.services().iter().any(|s| &**s == service) {
            return Err(ServiceMonitorError::UnknownService {
                application: app.name().into(),
                service: service.into(),
            });
        }
        let name: Arc<str> = format!("{}/{service}", app.name()).into();
        let mut watched = self.inner.watched.lock();
        if watched.contains_key(&name) {
            return Err(ServiceMonitorError::AlreadyWatched(name));
        }
        watched.insert(
            name,
            Watch {
                app: app.downgrade(),
                service: service.into(),
                misses: 0,
                attempts: 0,
                not_before: None,
                last_process: None,
                healthy_since: None,
                restarts: Vec::new(),
            },
        );
        Ok(())
    }

    /// Stops watching `name` (`application/service`).
    pub fn unwatch(&self, name: &str) -> Result<(), ServiceMonitorError> {
        self.inner
            .watched
            .lock()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| ServiceMonitorError::NotWatched(name.into()))
    }

    /// The watched services, by name.
    pub fn watched(&self) -> Vec<WatchedService> {
        self.inner
            .watched
            .lock()
            .iter()
            .map(|(name, watch)| WatchedService {
                name: name.clone(),
                misses: watch.misses,
                attempts: watch.attempts,
                restarts: watch.restarts.clone(),
            })
            .collect()
    }

    /// Runs one round now (see the [module docs](self)) and returns each
    /// watched service's decision, by name.
    pub async fn ping_all(&self) -> Vec<(Arc<str>, Decision)> {
        let inner = &*self.inner;
        let _round = inner.round.lock().await;
        // Group the watched services by application (by name).
        let mut apps: BTreeMap<Arc<str>, (WeakApplication, Vec<Arc<str>>)> = BTreeMap::new();
        for (name, watch) in inner.watched.lock().iter() {
            apps.entry(watch.app.name().into())
                .or_insert_with(|| (watch.app.clone(), Vec::new()))
                .1
                .push(name.clone());
        }
        let rounds = apps.into_values().map(|(weak, names)| async move {
            let app = weak.upgrade();
            let answer = match &app {
                Some(app) => inner.ask(app).await,
                None => Answer::Gone,
            };
            // Each watched service's own check, under its own timeout.
            let healths = join_all(names.iter().map(|name| {
                let service = inner.watched.lock().get(name).map(|w| w.service.clone());
                let (app, answer) = (&app, &answer);
                async move {
                    match (app, answer, service) {
                        (Some(app), Answer::Answered(status), Some(service)) => {
                            match status.service(&service) {
                                Some(report) => Some(app.service_health(report).await),
                                None => None,
                            }
                        }
                        _ => None,
                    }
                }
            }))
            .await;
            let mut decisions = Vec::with_capacity(names.len());
            for (name, health) in names.into_iter().zip(healths) {
                if let Some(decision) = inner
                    .decide(&weak, app.as_ref(), &name, &answer, health.as_ref())
                    .await
                {
                    decisions.push((name, decision));
                }
            }
            decisions
        });
        join_all(rounds).await.into_iter().flatten().collect()
    }

    /// The monitor's (and its service's) name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How often the service pings.
    pub fn interval(&self) -> Duration {
        self.inner.interval
    }

    /// The supervised service of this monitor, to put in an application:
    /// an actor that runs a round every interval. It may watch the other
    /// services of its own application.
    pub fn service(&self) -> ServiceDef {
        rounds::service_def(self.clone())
    }

    fn clock(&self) -> &Clock {
        &self.inner.clock
    }
}

impl Inner {
    /// The application's status, within the ping timeout.
    async fn ask(&self, app: &Application) -> Answer {
        tokio::select! {
            status = app.status() => Answer::Answered(status),
            () = self.clock.sleep(self.ping_timeout) => Answer::TimedOut(self.ping_timeout),
        }
    }

    /// Decides about the watched service `name` from its application's
    /// answer and its own check's (`None`: not checked), restarting it if
    /// that is the decision. `None` if it is no longer watched.
    async fn decide(
        &self,
        weak: &WeakApplication,
        app: Option<&Application>,
        name: &Arc<str>,
        answer: &Answer,
        health: Option<&Health>,
    ) -> Option<Decision> {
        let action = {
            let mut watched = self.watched.lock();
            let watch = watched.get_mut(name)?;
            self.judge(watch, answer, health)
        };
        let decision = match (action, app) {
            (Action::Decided(decision), _) => decision,
            (Action::Restart { attempt }, Some(app)) => self.restart(app, name, attempt).await?,
            // `judge` restarts nothing of an application that is gone.
            (Action::Restart { .. }, None) => Decision::Skipped(SkipReason::ApplicationDown),
        };
        self.emit(weak.name(), name, &decision);
        Some(decision)
    }

    /// The decision from the answer, before any restart.
    fn judge(&self, watch: &mut Watch, answer: &Answer, health: Option<&Health>) -> Action {
        let now = self.clock.now();
        let status = match answer {
            Answer::TimedOut(timeout) => {
                return self.missed(watch, format!("no answer within {timeout:?}"), now);
            }
            Answer::Answered(status) => status,
            Answer::Gone => {
                watch.misses = 0;
                watch.healthy_since = None;
                return Action::Decided(Decision::Skipped(SkipReason::ApplicationDown));
            }
        };
        let service = status.service(&watch.service);
        let skip = |watch: &mut Watch, reason| {
            watch.misses = 0;
            watch.healthy_since = None;
            Action::Decided(Decision::Skipped(reason))
        };
        if matches!(
            status.application,
            ApplicationStatus::Stopped | ApplicationStatus::Stopping | ApplicationStatus::Failed
        ) {
            return skip(watch, SkipReason::ApplicationDown);
        }
        match service.map(|s| s.status) {
            Some(ServiceStatus::Restarting | ServiceStatus::Starting) => {
                return skip(watch, SkipReason::SupervisorRestarting);
            }
            Some(ServiceStatus::Stopped) => return skip(watch, SkipReason::StoppedOnRequest),
            _ => {}
        }
        // A new process since the last ping: its supervisor restarted it.
        let process = service.and_then(|s| s.handle.as_ref()).map(|h| h.id());
        if process.is_some() && process != watch.last_process {
            watch.misses = 0;
        }
        watch.last_process = process;
        match health {
            Some(Health::Healthy) => {
                let since = *watch.healthy_since.get_or_insert(now);
                if watch.attempts > 0 && now - since >= self.backoff.reset_after {
                    watch.attempts = 0;
                    watch.not_before = None;
                }
                let recovered = watch.misses > 0;
                watch.misses = 0;
                Action::Decided(if recovered {
                    Decision::Recovered
                } else {
                    Decision::Healthy
                })
            }
            Some(other) => self.missed(watch, other.to_string(), now),
            None => self.missed(watch, "not in its application's answer".to_owned(), now),
        }
    }

    /// A missed ping: counted, and past the limit a restart or a deferral.
    fn missed(&self, watch: &mut Watch, reason: String, now: Instant) -> Action {
        watch.healthy_since = None;
        watch.misses += 1;
        if watch.misses < self.max_misses {
            return Action::Decided(Decision::Missed {
                misses: watch.misses,
                reason,
            });
        }
        match watch.not_before {
            Some(not_before) if not_before > now => Action::Decided(Decision::Deferred {
                retry_in: not_before - now,
            }),
            _ => {
                watch.attempts += 1;
                watch.misses = 0;
                watch.not_before = Some(now + self.backoff.delay(watch.attempts - 1));
                Action::Restart {
                    attempt: watch.attempts,
                }
            }
        }
    }

    /// Asks the application to restart the service, unless its supervisor
    /// has begun to meanwhile; records the restart.
    async fn restart(&self, app: &Application, name: &Arc<str>, attempt: u32) -> Option<Decision> {
        let service = self.watched.lock().get(name)?.service.clone();
        let status = app.status().await.status_of(&service);
        if matches!(
            status,
            Some(ServiceStatus::Restarting | ServiceStatus::Starting)
        ) {
            // Not ours to restart after all: give the attempt back.
            if let Some(watch) = self.watched.lock().get_mut(name) {
                watch.attempts -= 1;
                watch.not_before = None;
            }
            return Some(Decision::Skipped(SkipReason::SupervisorRestarting));
        }
        self.event(
            RESTART_REQUESTED,
            app.name(),
            name,
            &[("attempt", f64::from(attempt))],
            &[],
        );
        let at_unix_ms = self.clock.unix_millis();
        let result = app.restart_service(&service).await;
        let mut watched = self.watched.lock();
        let watch = watched.get_mut(name)?;
        let (decision, result) = match result {
            Ok(handle) => {
                watch.last_process = Some(handle.id());
                (Decision::Restarted { attempt }, Ok(()))
            }
            Err(error) => {
                let error = error.to_string();
                (
                    Decision::RestartFailed {
                        attempt,
                        error: error.clone(),
                    },
                    Err(error),
                )
            }
        };
        watch.restarts.push(RestartRecord {
            at_unix_ms,
            attempt,
            result,
        });
        Some(decision)
    }

    fn emit(&self, app: &str, name: &str, decision: &Decision) {
        match decision {
            Decision::Healthy => {}
            Decision::Recovered => self.event(RECOVERED, app, name, &[], &[]),
            Decision::Missed { misses, reason } => self.event(
                PING_MISSED,
                app,
                name,
                &[("misses", f64::from(*misses))],
                &[("reason", MetaValue::Str(reason))],
            ),
            Decision::Skipped(reason) => self.event(
                RESTART_SKIPPED,
                app,
                name,
                &[],
                &[("reason", MetaValue::Str(reason.as_str()))],
            ),
            Decision::Deferred { retry_in } => self.event(
                RESTART_DEFERRED,
                app,
                name,
                &[("retry_in_ms", retry_in.as_secs_f64() * 1e3)],
                &[],
            ),
            Decision::Restarted { attempt } => self.event(
                RESTART_SUCCEEDED,
                app,
                name,
                &[("attempt", f64::from(*attempt))],
                &[],
            ),
            Decision::RestartFailed { attempt, error } => self.event(
                RESTART_FAILED,
                app,
                name,
                &[("attempt", f64::from(*attempt))],
                &[("error", MetaValue::Str(error))],
            ),
        }
    }

    fn event(
        &self,
        event: &[&str],
        app: &str,
        name: &str,
        measurements: &[(&str, f64)],
        extra: &[(&str, MetaValue<'_>)],
    ) {
        if !self.telemetry.is_enabled() {
            return;
        }
        let service = name.rsplit_once('/').map_or(name, |(_, s)| s);
        let mut metadata = vec![
            ("application", MetaValue::Str(app)),
            ("service", MetaValue::Str(service)),
        ];
        metadata.extend_from_slice(extra);
        self.telemetry.emit(event, measurements, &metadata);
    }
}

impl fmt::Debug for ServiceMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceMonitor")
            .field("name", &self.inner.name)
            .field(
                "watched",
                &self.inner.watched.lock().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Rounds for ServiceMonitor {
    const ACTOR: &'static str = "ServiceMonitor";

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
        self.ping_all().await;
    }
}
