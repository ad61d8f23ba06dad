//! [`PrometheusExporter`]: supervision, registry, service and agent events
//! as labelled metrics, recorded through the `metrics` facade into a
//! Prometheus recorder that its owner (the node) holds, and rendered as
//! Prometheus text.

use std::{collections::HashSet, fmt, sync::Arc};

use mabeam_supervision_core::{
    GaugeSource, MetaValue, Telemetry, TelemetryEvent,
    events::{self, GaugeDecl, LabelForm, MetricDecl, MetricKind, MetricUnit},
};
use metrics::{Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use parking_lot::Mutex;

use crate::TelemetryServiceError;

/// The id under which the exporter's handler is attached.
pub const EXPORTER_HANDLER_ID: &str = "prometheus_exporter";

const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Turns events into metrics as supervision-core's declarations
/// ([`events::METRICS`]) say, and renders them as Prometheus text.
///
/// **The recorder is a value, not a process-wide global.** The exporter
/// builds a `metrics_exporter_prometheus` recorder and records into it
/// through the `metrics::Recorder` trait; it never installs a global
/// recorder, so two exporters (two nodes, two tests) run side by side.
/// Whoever makes the exporter owns the recorder: the node makes one and
/// serves [`render`](Self::render) on `/metrics`.
///
/// **Labels**: those of the declaration, from the event's metadata. Labels
/// that name one process or agent ([`LabelForm::PerProcess`]: `child`,
/// `agent`) are dropped unless [`with_per_process_labels`](Self::with_per_process_labels)
/// keeps them: a million agents would make a million series. Per-agent
/// figures live in the [`PerformanceMonitor`](crate::PerformanceMonitor).
///
/// **Gauges read on scrape** ([`events::GAUGES`]: live children, registered
/// names, mailbox lengths) come from the [`GaugeSource`]s added with
/// [`add_source`](Self::add_source), read at each [`render`](Self::render).
/// A series a source stops reporting is set to 0.
///
/// # Example
///
/// ```
/// use mabeam_supervision_core::{MetaValue, Telemetry, events};
/// use mabeam_telemetry::PrometheusExporter;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let telemetry = Telemetry::new();
/// let exporter = PrometheusExporter::new();
/// exporter.attach(&telemetry).unwrap();
///
/// telemetry.emit(
///     events::CHILD_EXITED,
///     &[],
///     &[
///         ("supervisor", MetaValue::Str("shop")),
///         ("child", MetaValue::Str("web")),
///         ("reason", MetaValue::Str("panic: lost its socket")),
///     ],
/// );
/// let text = exporter.render().await;
/// assert!(text.contains(r#"mabeam_supervisor_child_exited_total{supervisor="shop",reason="panic"} 1"#));
/// # }
/// ```
#[derive(Clone)]
pub struct PrometheusExporter {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    per_process: bool,
    sources: Mutex<Vec<Arc<dyn GaugeSource>>>,
    /// The gauge series set at the last render.
    last_gauges: Mutex<HashSet<Key>>,
}

impl fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusExporter")
            .field("per_process_labels", &self.inner.per_process)
            .field("sources", &self.inner.sources.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for PrometheusExporter {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusExporter {
    /// An exporter with its own recorder, every declared metric described,
    /// per-process labels dropped.
    pub fn new() -> Self {
        Self::build(false)
    }

    /// The same, keeping per-process labels (`child`, `agent`) if `keep`.
    /// Only for small systems: each process makes series of its own.
    pub fn with_per_process_labels(keep: bool) -> Self {
        Self::build(keep)
    }

    fn build(per_process: bool) -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        for decl in events::METRICS {
            let (name, unit, help) = (
                metrics::KeyName::from_const_str(decl.metric),
                Some(unit(decl.unit)),
                SharedString::const_str(decl.help),
            );
            match decl.kind {
                MetricKind::Gauge => recorder.describe_gauge(name, unit, help),
                MetricKind::Histogram => recorder.describe_histogram(name, unit, help),
                _ => recorder.describe_counter(name, unit, help),
            }
        }
        for decl in events::GAUGES {
            recorder.describe_gauge(
                metrics::KeyName::from_const_str(decl.metric),
                Some(unit(decl.unit)),
                SharedString::const_str(decl.help),
            );
        }
        PrometheusExporter {
            inner: Arc::new(Inner {
                recorder,
                handle,
                per_process,
                sources: Mutex::new(Vec::new()),
                last_gauges: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Attaches the exporter to `telemetry` (handler id
    /// [`EXPORTER_HANDLER_ID`]).
    pub fn attach(&self, telemetry: &Telemetry) -> Result<(), TelemetryServiceError> {
        let exporter = self.clone();
        telemetry.attach(EXPORTER_HANDLER_ID, &[], move |event| {
            exporter.record_event(event)
        })?;
        Ok(())
    }

    /// Records `event` as each declaration for it says; events without a
    /// declaration are ignored.
    pub fn record_event(&self, event: &TelemetryEvent<'_>) {
        record_event(&self.inner.recorder, self.inner.per_process, event);
    }

    /// Adds a source of gauges read at each render.
    pub fn add_source(&self, source: Arc<dyn GaugeSource>) {
        self.inner.sources.lock().push(source);
    }

    /// Reads the gauge sources, then renders every metric as Prometheus
    /// text (format 0.0.4).
    pub async fn render(&self) -> String {
        let sources: Vec<_> = self.inner.sources.lock().clone();
        let mut seen = HashSet::new();
        for source in sources {
            for reading in source.read().await {
                let labels: Vec<Label> = reading
                    .labels
                    .into_iter()
                    .map(|(k, v)| Label::new(k, v))
                    .collect();
                let key = Key::from_parts(reading.metric, labels);
                self.inner
                    .recorder
                    .register_gauge(&key, &METADATA)
                    .set(reading.value);
                seen.insert(key);
            }
        }
        {
            let mut last = self.inner.last_gauges.lock();
            for gone in last.difference(&seen) {
                self.inner.recorder.register_gauge(gone, &METADATA).set(0.0);
            }
            *last = seen;
        }
        self.inner.handle.render()
    }
}

/// Records `event` into any `metrics` recorder as supervision-core's
/// declarations say (the exporter's work, for a recorder of one's own).
pub fn record_event<R: Recorder + ?Sized>(
    recorder: &R,
    per_process: bool,
    event: &TelemetryEvent<'_>,
) {
    for decl in events::METRICS.iter().filter(|d| d.event == event.name) {
        record_one(recorder, per_process, decl, event);
    }
}

fn record_one<R: Recorder + ?Sized>(
    recorder: &R,
    per_process: bool,
    decl: &MetricDecl,
    event: &TelemetryEvent<'_>,
) {
    let value = match decl.measurement {
        Some(measurement) => match event.measurement(measurement) {
            Some(value) if value.is_finite() => value,
            _ => return,
        },
        None => 1.0,
    };
    let labels: Vec<Label> = decl
        .labels
        .iter()
        .filter(|label| per_process || label.form != LabelForm::PerProcess)
        .map(|label| {
            let text = event.meta(label.key).map_or_else(String::new, meta_text);
            let value = match label.form {
                LabelForm::Kind => kind_of(&text).to_owned(),
                _ => text,
            };
            Label::new(label.key, value)
        })
        .collect();
    let key = Key::from_parts(decl.metric, labels);
    match decl.kind {
        MetricKind::Gauge => recorder.register_gauge(&key, &METADATA).set(value),
        MetricKind::Histogram => recorder.register_histogram(&key, &METADATA).record(value),
        _ => recorder
            .register_counter(&key, &METADATA)
            .increment(value.max(0.0).round() as u64),
    }
}

fn meta_text(value: MetaValue<'_>) -> String {
    value.to_string()
}

/// The text before the first `:`, trimmed.
fn kind_of(text: &str) -> &str {
    text.split(':').next().unwrap_or(text).trim()
}

fn unit(unit: MetricUnit) -> Unit {
    match unit {
        MetricUnit::Microseconds => Unit::Microseconds,
        MetricUnit::Milliseconds => Unit::Milliseconds,
        MetricUnit::Seconds => Unit::Seconds,
        MetricUnit::Bytes => Unit::Bytes,
        _ => Unit::Count,
    }
}

/// The declaration of the gauge named `metric`, if any.
pub fn gauge_decl(metric: &str) -> Option<&'static GaugeDecl> {
    events::GAUGES.iter().find(|d| d.metric == metric)
}
