//! Telemetry for a mabeam node: the [`TelemetryService`] behind
//! supervision-core's [`Telemetry`](mabeam_supervision_core::Telemetry) facade,
//! the [`PrometheusExporter`] that turns events into labelled metrics, and
//! the MABEAM [`PerformanceMonitor`] of per-agent figures.
//!
//! supervision-core's `Telemetry` is a synchronous handle, like Erlang's
//! `:telemetry`: components emit events (a name, measurements, metadata)
//! and attached handlers run inline. This crate is what listens.
//!
//! - [`TelemetryService`]: keeps every event as counters and histograms
//!   (with quantiles over a retention window), plus one's own counters,
//!   gauges and histograms; guards the handlers attached through it (one
//!   that panics is detached and reported, the service goes on); spans
//!   ([`Span`]); reset, prune and snapshot. It runs as a process of the
//!   Foundation tree ([`TelemetryService::child_spec`]).
//! - [`PrometheusExporter`]: supervision, registry, service and agent
//!   events become metrics as supervision-core's declarations
//!   (`mabeam_supervision_core::events::METRICS`) say, recorded through the
//!   [`metrics`] facade into a Prometheus recorder the exporter's owner
//!   holds. **No library installs a process-wide recorder**: the node makes
//!   the exporter and serves its text. Gauges that are states (live
//!   children, registered names) are read on scrape from
//!   [`GaugeSource`](mabeam_supervision_core::GaugeSource)s. No per-agent label by
//!   default.
//! - [`PerformanceMonitor`]: per-agent throughput, latency, error rate and
//!   memory, alerts that raise and clear, JSON and CSV export; it
//!   implements supervision-core's [`AgentLoad`](mabeam_supervision_core::AgentLoad),
//!   which a load balancer reads.
//!
//! It is not a time-series database: history is bounded (a window, a
//! number of samples) and lives in memory. Errors are
//! [`TelemetryServiceError`], codes 4000-4999.
//!
//! # Example
//!
//! ```
//! use mabeam_supervision_core::{MetaValue, Telemetry};
//! use mabeam_telemetry::PrometheusExporter;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let telemetry = Telemetry::new();
//! let exporter = PrometheusExporter::new();
//! exporter.attach(&telemetry)?;
//! telemetry.emit(
//!     mabeam_supervision_core::events::CHILD_RESTARTED,
//!     &[("count", 1.0)],
//!     &[("supervisor", MetaValue::Str("shop")), ("child", MetaValue::Str("web"))],
//! );
//! let text = exporter.render().await; // what a node serves on /metrics
//! assert!(text.contains(r#"mabeam_supervisor_child_restarted_total{supervisor="shop"} 1"#));
//! # Ok(()) }
//! ```
//!
//! # Examples
//!
//! The package's `examples/` folder: `prometheus_metrics` (a supervisor's
//! starts, crash and restart exported as Prometheus text beside one's own
//! counters), run with `cargo run -p mabeam-telemetry --example prometheus_metrics`.

mod error;
mod exporter;
mod performance;
mod process;
mod service;
mod span;
mod store;

pub use error::TelemetryServiceError;
pub use exporter::{EXPORTER_HANDLER_ID, PrometheusExporter, gauge_decl, record_event};
pub use performance::{
    ALERT_CLEARED, ALERT_RAISED, AgentPerformance, Alert, Bound, ForgetReason, MONITOR_HANDLER_ID,
    PerfMetric, PerformanceConfig, PerformanceMonitor,
};
pub use service::{
    FailedHandler, HANDLER_FAILED, SERVICE_HANDLER_ID, TelemetryConfig, TelemetryService,
};
pub use span::Span;
pub use store::{HistogramSummary, MetricKey, MetricStore, MetricsSnapshot, ScalarValue, Stats};
