//! TelemetryService (handlers, counters, gauges, histograms, Prometheus text)
//! and PerformanceMonitor.
//!
//! Placeholder: this crate has no code yet. Its issue builds the service as a
//! handler of `supervision-core`'s `Telemetry` contract.
