//! [`TelemetryService`]: the sink behind a [`Telemetry`] handle. It keeps
//! every event as metrics, guards the handlers attached through it, and
//! runs as a process of the Foundation tree.

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    time::Duration,
};

use mabeam_supervision_core::{ChildSpec, Clock, MetaValue, Telemetry, TelemetryEvent};
use parking_lot::Mutex;
use serde::Serialize;

use crate::{
    MetricKey, MetricStore, MetricsSnapshot, TelemetryServiceError,
    process::{AttachArgs, Attachment, Tick},
    store::check_name,
};

/// `telemetry.handler.failed`: a handler attached through a
/// [`TelemetryService`] panicked and was detached (metadata `handler`,
/// `message`).
pub const HANDLER_FAILED: &[&str] = &["telemetry", "handler", "failed"];

/// The id under which the service's own handler is attached.
pub const SERVICE_HANDLER_ID: &str = "telemetry_service";

/// The settings of a [`TelemetryService`]. Defaults: one hour of
/// retention, 1,024 samples per histogram, pruning every minute, the
/// system clock.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// How long histogram samples and idle metrics are kept.
    pub retention: Duration,
    /// The most samples one histogram keeps.
    pub max_samples: usize,
    /// How often the service's process prunes.
    pub prune_every: Duration,
    /// Where time comes from.
    pub clock: Clock,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            retention: Duration::from_secs(3600),
            max_samples: 1024,
            prune_every: Duration::from_secs(60),
            clock: Clock::system(),
        }
    }
}

/// A handler that panicked and was detached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedHandler {
    /// Its id.
    pub id: String,
    /// The panic's message.
    pub message: String,
}

/// The telemetry service: a cheap, cloneable handle (every clone is the
/// same service) over a [`MetricStore`] fed by a [`Telemetry`] handle.
///
/// - **Events become metrics**: while its process runs (see
///   [`child_spec`](Self::child_spec)), or after
///   [`attach_collector`](Self::attach_collector), every event counts once
///   in the counter named by the event (`supervisor.child.started`), and
///   each measurement goes into the histogram `EVENT.MEASUREMENT`
///   (`supervisor.child.started.duration_us`). No labels: the labelled,
///   exported view is the [`PrometheusExporter`](crate::PrometheusExporter)'s.
/// - **Own metrics**: [`increment`](Self::increment),
///   [`set_gauge`](Self::set_gauge), [`record`](Self::record) with labels.
/// - **Handlers** attached by prefix through [`attach`](Self::attach) are
///   guarded: one that panics is detached, listed in
///   [`failed_handlers`](Self::failed_handlers) and reported as a
///   [`HANDLER_FAILED`] event; the emitter and the service go on.
/// - **Retention**: the process prunes every `prune_every`;
///   [`prune`](Self::prune), [`reset`](Self::reset) and
///   [`snapshot`](Self::snapshot) are there to call as well.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{MetaValue, Telemetry, events};
/// use mabeam_telemetry::TelemetryService;
///
/// let telemetry = Telemetry::new();
/// let service = TelemetryService::new(telemetry.clone());
/// service.attach_collector().unwrap();
///
/// telemetry.emit(events::CHILD_STARTED, &[("duration_us", 40.0)], &[("child", MetaValue::Str("db"))]);
/// telemetry.emit(events::CHILD_STARTED, &[("duration_us", 60.0)], &[("child", MetaValue::Str("web"))]);
///
/// let snapshot = service.snapshot();
/// assert_eq!(snapshot.counter("supervisor.child.started"), Some(2.0));
/// let starts = snapshot.histogram("supervisor.child.started.duration_us").unwrap();
/// assert_eq!((starts.window.mean, starts.window.max), (50.0, 60.0));
/// ```
#[derive(Clone, Debug)]
pub struct TelemetryService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    telemetry: Telemetry,
    store: MetricStore,
    config: TelemetryConfig,
    failed: Mutex<Vec<FailedHandler>>,
}

impl TelemetryService {
    /// A service on `telemetry` with the default settings.
    pub fn new(telemetry: Telemetry) -> Self {
        Self::with_config(telemetry, TelemetryConfig::default())
            .expect("the default settings are valid")
    }

    /// A service on `telemetry` with `config`;
    /// [`InvalidSetting`](TelemetryServiceError::InvalidSetting) for a zero
    /// retention, capacity or pruning period.
    pub fn with_config(
        telemetry: Telemetry,
        config: TelemetryConfig,
    ) -> Result<Self, TelemetryServiceError> {
        if config.prune_every.is_zero() {
            return Err(TelemetryServiceError::InvalidSetting {
                name: "prune_every",
                reason: "must be longer than zero",
            });
        }
        let store = MetricStore::new(config.retention, config.max_samples, config.clock.clone())?;
        Ok(TelemetryService {
            inner: Arc::new(Inner {
                telemetry,
                store,
                config,
                failed: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The handle the service collects from.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// The store of metrics.
    pub fn store(&self) -> &MetricStore {
        &self.inner.store
    }

    /// Keeps one event as metrics (what the service's handler does for
    /// each event).
    pub fn collect(&self, event: &TelemetryEvent<'_>) {
        let name = event.dotted_name();
        let store = &self.inner.store;
        for (measurement, value) in event.measurements {
            store.record(
                MetricKey::new(format!("{name}.{measurement}"), no_labels()),
                *value,
            );
        }
        store.increment(MetricKey::new(name, no_labels()), 1.0);
    }

    /// Attaches the service's own handler (id [`SERVICE_HANDLER_ID`]) to
    /// every event, without a process. The process of
    /// [`child_spec`](Self::child_spec) does this itself.
    pub fn attach_collector(&self) -> Result<(), TelemetryServiceError> {
        let service = self.clone();
        self.inner
            .telemetry
            .attach(SERVICE_HANDLER_ID, &[], move |event| service.collect(event))?;
        Ok(())
    }

    /// The service's process: attaches the collecting handler while it
    /// runs, prunes every `prune_every`, detaches when it stops.
    pub fn child_spec(&self, id: impl Into<Arc<str>>) -> ChildSpec {
        let service = self.clone();
        ChildSpec::actor::<Attachment>(id, move || {
            let collector = service.clone();
            let pruner = service.clone();
            AttachArgs {
                telemetry: service.inner.telemetry.clone(),
                id: SERVICE_HANDLER_ID.to_owned(),
                prefix: Vec::new(),
                handler: Arc::new(move |event| collector.collect(event)),
                tick: Some(Tick {
                    every: service.inner.config.prune_every,
                    clock: service.inner.config.clock.clone(),
                    run: Arc::new(move || {
                        pruner.prune();
                    }),
                }),
            }
        })
    }

    /// Adds `by` to the counter `name` with `labels`.
    pub fn increment(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        by: f64,
    ) -> Result<(), TelemetryServiceError> {
        self.write(name, labels, |store, key| store.increment(key, by))
    }

    /// Sets the gauge `name` with `labels` to `value`.
    pub fn set_gauge(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), TelemetryServiceError> {
        self.write(name, labels, |store, key| store.set_gauge(key, value))
    }

    /// Records `value` in the histogram `name` with `labels`.
    pub fn record(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), TelemetryServiceError> {
        self.write(name, labels, |store, key| store.record(key, value))
    }

    /// Checks the metric's name, then applies `write` to its key in the
    /// store; a bad name changes nothing.
    fn write(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        write: impl FnOnce(&MetricStore, MetricKey),
    ) -> Result<(), TelemetryServiceError> {
        check_name(name)?;
        write(
            &self.inner.store,
            MetricKey::new(name, labels.iter().copied()),
        );
        Ok(())
    }

    /// Attaches `handler` under `id` to every event whose name starts with
    /// `prefix`. If it panics, it is detached, listed in
    /// [`failed_handlers`](Self::failed_handlers), and a
    /// [`HANDLER_FAILED`] event is emitted.
    pub fn attach(
        &self,
        id: &str,
        prefix: &[&str],
        handler: impl Fn(&TelemetryEvent<'_>) + Send + Sync + 'static,
    ) -> Result<(), TelemetryServiceError> {
        let service = Arc::downgrade(&self.inner);
        let own_id = id.to_owned();
        self.inner.telemetry.attach(id, prefix, move |event| {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| handler(event))) {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                if let Some(inner) = service.upgrade() {
                    inner.telemetry.detach(&own_id);
                    inner.failed.lock().push(FailedHandler {
                        id: own_id.clone(),
                        message: message.clone(),
                    });
                    inner.telemetry.emit(
                        HANDLER_FAILED,
                        &[("count", 1.0)],
                        &[
                            ("handler", MetaValue::Str(&own_id)),
                            ("message", MetaValue::Str(&message)),
                        ],
                    );
                }
            }
        })?;
        Ok(())
    }

    /// Detaches the handler `id`; false if none was attached.
    pub fn detach(&self, id: &str) -> bool {
        self.inner.telemetry.detach(id)
    }

    /// The handlers that panicked and were detached, oldest first.
    pub fn failed_handlers(&self) -> Vec<FailedHandler> {
        self.inner.failed.lock().clone()
    }

    /// Every metric now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.inner.store.snapshot()
    }

    /// Drops samples and idle metrics older than the retention window.
    pub fn prune(&self) -> usize {
        self.inner.store.prune()
    }

    /// Forgets every metric (handlers stay attached).
    pub fn reset(&self) {
        self.inner.store.reset();
    }
}

fn no_labels() -> [(&'static str, &'static str); 0] {
    []
}
