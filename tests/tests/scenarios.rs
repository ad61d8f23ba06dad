//! Cross-crate scenarios: the workspace's crates together, as a user sees
//! them. One test binary (`autotests = false`); modules by topic.

#[path = "supervision.rs"]
mod supervision;
