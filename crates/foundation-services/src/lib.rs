//! Foundation services: ConfigServer, EventStore, RateLimiter, TaskSupervisor,
//! HealthMonitor, ServiceMonitor and ConnectionManager.
//!
//! Placeholder: this crate has no code yet. Its issue builds each service as a
//! supervised kameo actor that depends only on `supervision-core`.
