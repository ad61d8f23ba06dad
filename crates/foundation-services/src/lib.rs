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

mod ping;
pub mod rate_limiter;

pub use rate_limiter::{
    Allowed, BucketStatus, RateLimitError, RateLimiter, RateLimiterBuilder, Rule,
};
