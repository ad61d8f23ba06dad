//! What a load balancer needs to know of an agent: the [`AgentLoad`]
//! contract (an agent's recent throughput, latency and errors), implemented
//! by telemetry's PerformanceMonitor and used by economics' LoadBalancer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::AgentId;

/// An agent's recent load, over the window its monitor keeps.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// Messages handled per second over the window.
    pub throughput_per_s: f64,
    /// Mean time to handle a message.
    pub latency_mean: Duration,
    /// Median time to handle a message.
    pub latency_p50: Duration,
    /// 99th percentile of the time to handle a message.
    pub latency_p99: Duration,
    /// Share of messages that failed, 0.0 to 1.0.
    pub error_rate: f64,
    /// How many messages the figures are made of.
    pub samples: u64,
}

/// Reads an agent's recent load: what a load balancer weighs agents by.
///
/// Object safe, used as `Arc<dyn AgentLoad>`; calls are synchronous and
/// quick (they read figures kept up to date as agents work).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_supervision_core::{AgentId, AgentLoad, LoadReport};
///
/// struct Fixed;
///
/// impl AgentLoad for Fixed {
///     fn load(&self, agent: &AgentId) -> Option<LoadReport> {
///         (agent.as_str() == "a").then(|| LoadReport { samples: 1, ..LoadReport::default() })
///     }
/// }
///
/// let least_loaded = ["a", "b"]
///     .into_iter()
///     .map(AgentId::from)
///     .filter_map(|id| Fixed.load(&id).map(|load| (id, load)))
///     .min_by_key(|(_, load)| load.latency_p99);
/// assert_eq!(least_loaded.map(|(id, _)| id), Some(AgentId::from("a")));
/// # let _ = Duration::ZERO;
/// ```
pub trait AgentLoad: Send + Sync + 'static {
    /// The agent's recent load; `None` if nothing is known of it.
    fn load(&self, agent: &AgentId) -> Option<LoadReport>;
}
