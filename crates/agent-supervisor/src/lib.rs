//! AgentSupervisor (dynamic), AgentRegistry (lifecycle) and the `Agent` trait
//! that users implement.
//!
//! Placeholder: this crate has no code yet. Its issue builds it on
//! `supervision-core`'s `DynamicSupervisor` and `Registry` contract.
