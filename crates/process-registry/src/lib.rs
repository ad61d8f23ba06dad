//! ProcessRegistry (namespaced, unique and group keys, metadata, listeners)
//! and ServiceRegistry.
//!
//! Placeholder: this crate has no code yet.
