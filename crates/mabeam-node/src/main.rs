//! The `mabeam` binary (being built: see the crate docs).

fn main() {}
