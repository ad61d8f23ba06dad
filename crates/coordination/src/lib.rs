//! MABEAM Core (universal variables, orchestration) and Coordination
//! (consensus, voting, leader election).
//!
//! Placeholder: this crate has no code yet.
