//! Economics (auctions, markets, reputation, budgets) and LoadBalancer.
//!
//! Placeholder: this crate has no code yet.
