//! [`MetricStore`]: counters, gauges and histograms kept in memory, with a
//! retention window, pruning, reset and a [`MetricsSnapshot`].

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use mabeam_supervision_core::Clock;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;

use crate::TelemetryServiceError;

/// A metric's identity: its name and its labels, sorted by label name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct MetricKey {
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
}

impl MetricKey {
    /// A key of `name` and `labels` (sorted here).
    pub fn new<K, V>(name: impl Into<String>, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut labels: Vec<(String, String)> = labels
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        labels.sort();
        MetricKey {
            name: name.into(),
            labels,
        }
    }
}

/// Checks a metric name: not empty, `[a-zA-Z_:][a-zA-Z0-9_:.]*`.
pub(crate) fn check_name(name: &str) -> Result<(), TelemetryServiceError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '.')) {
        Ok(())
    } else {
        Err(TelemetryServiceError::InvalidMetricName(name.to_owned()))
    }
}

struct Scalar {
    value: f64,
    updated: Instant,
}

struct Samples {
    /// (when, value), oldest first.
    values: VecDeque<(Instant, f64)>,
    /// Every value ever recorded since the last reset (not pruned).
    count: u64,
    sum: f64,
    updated: Instant,
}

#[derive(Default)]
struct Metrics {
    counters: BTreeMap<MetricKey, Scalar>,
    gauges: BTreeMap<MetricKey, Scalar>,
    histograms: BTreeMap<MetricKey, Samples>,
}

/// Counters, gauges and histograms in memory.
///
/// - A **counter** only goes up; a **gauge** is set; a **histogram** keeps
///   the samples of the retention window (at most `max_samples` per
///   histogram, the oldest dropped first) and answers quantiles over them,
///   besides a count and a sum of every sample since the last reset.
/// - **Retention**: [`prune`](Self::prune) drops histogram samples older
///   than the window, and forgets any metric not updated within it.
///   The [`TelemetryService`](crate::TelemetryService)'s process prunes
///   periodically.
/// - [`reset`](Self::reset) forgets everything.
pub struct MetricStore {
    metrics: Mutex<Metrics>,
    retention: Duration,
    max_samples: usize,
    clock: Clock,
}

impl std::fmt::Debug for MetricStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricStore")
            .field("retention", &self.retention)
            .field("max_samples", &self.max_samples)
            .finish_non_exhaustive()
    }
}

impl MetricStore {
    /// A store keeping `retention` of history, at most `max_samples` per
    /// histogram, reading time from `clock`.
    pub fn new(
        retention: Duration,
        max_samples: usize,
        clock: Clock,
    ) -> Result<Self, TelemetryServiceError> {
        if retention.is_zero() {
            return Err(TelemetryServiceError::InvalidSetting {
                name: "retention",
                reason: "must be longer than zero",
            });
        }
        if max_samples == 0 {
            return Err(TelemetryServiceError::InvalidSetting {
                name: "max_samples",
                reason: "must be at least 1",
            });
        }
        Ok(MetricStore {
            metrics: Mutex::new(Metrics::default()),
            retention,
            max_samples,
            clock,
        })
    }

    /// The retention window.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Adds `by` to the counter `key` (a negative or non-finite `by` is
    /// ignored: counters only go up).
    pub fn increment(&self, key: MetricKey, by: f64) {
        if !(by.is_finite() && by >= 0.0) {
            return;
        }
        let now = self.clock.now();
        let mut metrics = self.metrics.lock();
        let entry = metrics.counters.entry(key).or_insert(Scalar {
            value: 0.0,
            updated: now,
        });
        entry.value += by;
        entry.updated = now;
    }

    /// Sets the gauge `key` to `value` (non-finite values are ignored).
    pub fn set_gauge(&self, key: MetricKey, value: f64) {
        if !value.is_finite() {
            return;
        }
        let now = self.clock.now();
        self.metrics.lock().gauges.insert(
            key,
            Scalar {
                value,
                updated: now,
            },
        );
    }

    /// Records `value` in the histogram `key` (non-finite values are ignored).
    pub fn record(&self, key: MetricKey, value: f64) {
        if !value.is_finite() {
            return;
        }
        let now = self.clock.now();
        let mut metrics = self.metrics.lock();
        let samples = metrics.histograms.entry(key).or_insert_with(|| Samples {
            values: VecDeque::new(),
            count: 0,
            sum: 0.0,
            updated: now,
        });
        if samples.values.len() == self.max_samples {
            samples.values.pop_front();
        }
        samples.values.push_back((now, value));
        samples.count += 1;
        samples.sum += value;
        samples.updated = now;
    }

    /// The counter `key`'s value.
    pub fn counter(&self, key: &MetricKey) -> Option<f64> {
        self.metrics.lock().counters.get(key).map(|s| s.value)
    }

    /// The gauge `key`'s value.
    pub fn gauge(&self, key: &MetricKey) -> Option<f64> {
        self.metrics.lock().gauges.get(key).map(|s| s.value)
    }

    /// The histogram `key`'s summary over the retained samples.
    pub fn histogram(&self, key: &MetricKey) -> Option<HistogramSummary> {
        self.metrics
            .lock()
            .histograms
            .get(key)
            .map(|samples| summarise(key, samples))
    }

    /// Drops what is older than the retention window; returns how many
    /// samples and metrics went.
    pub fn prune(&self) -> usize {
        let now = self.clock.now();
        let Some(horizon) = now.checked_sub(self.retention) else {
            return 0;
        };
        let mut metrics = self.metrics.lock();
        let mut pruned = 0;
        for samples in metrics.histograms.values_mut() {
            while samples.values.front().is_some_and(|(at, _)| *at < horizon) {
                samples.values.pop_front();
                pruned += 1;
            }
        }
        let before = metrics.counters.len() + metrics.gauges.len() + metrics.histograms.len();
        metrics.counters.retain(|_, s| s.updated >= horizon);
        metrics.gauges.retain(|_, s| s.updated >= horizon);
        metrics.histograms.retain(|_, s| s.updated >= horizon);
        let after = metrics.counters.len() + metrics.gauges.len() + metrics.histograms.len();
        pruned + (before - after)
    }

    /// Forgets every metric.
    pub fn reset(&self) {
        *self.metrics.lock() = Metrics::default();
    }

    /// Every metric now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let metrics = self.metrics.lock();
        MetricsSnapshot {
            counters: metrics
                .counters
                .iter()
                .map(|(key, s)| ScalarValue {
                    key: key.clone(),
                    value: s.value,
                })
                .collect(),
            gauges: metrics
                .gauges
                .iter()
                .map(|(key, s)| ScalarValue {
                    key: key.clone(),
                    value: s.value,
                })
                .collect(),
            histograms: metrics
                .histograms
                .iter()
                .map(|(key, samples)| summarise(key, samples))
                .collect(),
        }
    }
}

fn summarise(key: &MetricKey, samples: &Samples) -> HistogramSummary {
    let mut values: Vec<f64> = samples.values.iter().map(|(_, v)| *v).collect();
    values.sort_by(f64::total_cmp);
    let stats = Stats::of_sorted(&values);
    HistogramSummary {
        key: key.clone(),
        count: samples.count,
        sum: samples.sum,
        window: stats,
    }
}

/// Statistics over a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Stats {
    /// How many values.
    pub count: usize,
    /// The smallest (0 when there are none).
    pub min: f64,
    /// The largest (0 when there are none).
    pub max: f64,
    /// The mean (0 when there are none).
    pub mean: f64,
    /// The median.
    pub p50: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 99th percentile.
    pub p99: f64,
}

impl Stats {
    /// The statistics of `sorted` (ascending). Quantiles are nearest-rank:
    /// the value at rank ⌈q·n⌉.
    pub fn of_sorted(sorted: &[f64]) -> Stats {
        let n = sorted.len();
        if n == 0 {
            return Stats::default();
        }
        let rank = |q: f64| sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            count: n,
            min: sorted[0],
            max: sorted[n - 1],
            mean: sorted.iter().sum::<f64>() / n as f64,
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
        }
    }

    /// The statistics of `values`, in any order.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stats {
        let mut sorted: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        Stats::of_sorted(&sorted)
    }
}

/// A counter's or gauge's value in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalarValue {
    /// The metric.
    pub key: MetricKey,
    /// Its value.
    pub value: f64,
}

/// A histogram in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramSummary {
    /// The metric.
    pub key: MetricKey,
    /// Samples recorded since the last reset.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Statistics over the samples still retained.
    pub window: Stats,
}

/// Every metric of a [`MetricStore`] at one moment, sorted by key.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MetricsSnapshot {
    /// The counters.
    pub counters: Vec<ScalarValue>,
    /// The gauges.
    pub gauges: Vec<ScalarValue>,
    /// The histograms.
    pub histograms: Vec<HistogramSummary>,
}

impl MetricsSnapshot {
    /// The counter named `name` with no labels.
    pub fn counter(&self, name: &str) -> Option<f64> {
        self.counters
            .iter()
            .find(|c| c.key.name == name && c.key.labels.is_empty())
            .map(|c| c.value)
    }

    /// The histogram named `name` with no labels.
    pub fn histogram(&self, name: &str) -> Option<&HistogramSummary> {
        self.histograms
            .iter()
            .find(|h| h.key.name == name && h.key.labels.is_empty())
    }
}
