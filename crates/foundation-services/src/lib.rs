//! Foundation services: ConfigServer, EventStore, RateLimiter, TaskSupervisor,
//! HealthMonitor, ServiceMonitor and ConnectionManager.
//!
//! Each service is a cheap, cloneable handle whose `service()` gives the
//! supervised [`ServiceDef`](supervision_core::ServiceDef) (an actor with a
//! health check) to put in an application; the crate depends on
//! `supervision-core` only.
//!
//! - [`RateLimiter`]: token buckets keyed by (entity, operation), one
//!   [`Rule`] per operation, checked in the caller's thread.
//! - [`TaskSupervisor`]: ad-hoc tasks, fire-and-forget or awaited, not
//!   linked to their caller, every crash counted and reported, a bounded
//!   shutdown.
//! - [`HealthMonitor`]: the health of every service of the application
//!   trees (and named checks), overall and per service, with an event on
//!   every change.
//! - [`ServiceMonitor`]: periodic pings, and restarts through the
//!   application after missed pings, with a backoff, never while a
//!   supervisor is restarting.

pub mod health_monitor;
mod ping;
pub mod rate_limiter;
pub mod service_monitor;
pub mod task_supervisor;

pub use health_monitor::{
    HealthMonitor, HealthMonitorBuilder, HealthMonitorError, HealthState, ServiceDetail,
    SystemHealth,
};
pub use rate_limiter::{
    Allowed, BucketStatus, RateLimitError, RateLimiter, RateLimiterBuilder, Rule,
};
pub use service_monitor::{
    Decision, RestartRecord, ServiceMonitor, ServiceMonitorBuilder, ServiceMonitorError,
    SkipReason, WatchedService,
};
pub use task_supervisor::{
    ShutdownReport, TaskCounts, TaskError, TaskHandle, TaskId, TaskSupervisor,
    TaskSupervisorBuilder,
};
