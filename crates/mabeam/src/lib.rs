//! The umbrella: wires the service crates into the Foundation and MABEAM
//! application trees, with a builder for subsets and a prelude.
//!
//! Placeholder: this crate has no code yet; the service crates come first.
