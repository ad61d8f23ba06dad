//! The cargo subcommands xtask runs that rustup does not bring: found, or
//! installed from crates.io (`cargo install --locked`), never skipped.

use std::{path::Path, process::Command};

use anyhow::{Result, bail};

/// A cargo subcommand and the crate that provides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    /// The subcommand: `cargo <subcommand>`.
    pub(crate) subcommand: &'static str,
    /// The crates.io crate to install when it is missing.
    pub(crate) krate: &'static str,
}

/// The test runner of `cargo xtask test` (and its per-test time limit).
pub(crate) const NEXTEST: Tool = Tool {
    subcommand: "nextest",
    krate: "cargo-nextest",
};

/// The mutation tester of `cargo xtask mutants`.
pub(crate) const MUTANTS: Tool = Tool {
    subcommand: "mutants",
    krate: "cargo-mutants",
};

/// Whether `cargo <subcommand> --version` runs.
fn present(root: &Path, cargo: &str, tool: Tool) -> bool {
    Command::new(cargo)
        .args([tool.subcommand, "--version"])
        .current_dir(root)
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Makes sure `cargo <subcommand>` runs: installs its crate from crates.io
/// if it does not (a few minutes, once per machine), and fails if it still
/// does not run.
pub(crate) fn ensure(root: &Path, cargo: &str, tool: Tool) -> Result<()> {
    if present(root, cargo, tool) {
        return Ok(());
    }
    eprintln!(
        "xtask: `cargo {}` is missing: installing {} from crates.io (once per machine)",
        tool.subcommand, tool.krate
    );
    crate::run(root, cargo, &["install", tool.krate, "--locked"], &[])?;
    if !present(root, cargo, tool) {
        bail!(
            "{} was installed but `cargo {} --version` still fails (is cargo's bin directory on PATH?)",
            tool.krate,
            tool.subcommand
        );
    }
    Ok(())
}
