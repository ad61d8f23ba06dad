//! Cross-crate scenarios: the workspace's crates together, as a user sees
//! them. One test binary (`autotests = false`); modules by topic.

#[path = "child_registration.rs"]
mod child_registration;
#[path = "registry_with_supervisors.rs"]
mod registry_with_supervisors;
#[path = "supervision.rs"]
mod supervision;
