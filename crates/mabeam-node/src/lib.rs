//! The node, binary `mabeam`: config file, data directory, HTTP (health,
//! metrics, tree) and CLI.
//!
//! Placeholder: this crate has no code yet; its issue adds the binary.
