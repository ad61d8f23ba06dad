//! `cargo xtask fuzz --minutes N`: the property tests that throw generated
//! input at every parser a stranger can reach, run for about N minutes
//! instead of their bounded CI case counts.
//!
//! Each fuzz test runs batches of generated cases until its budget
//! (`MABEAM_FUZZ_SECS`, read by the tests) is spent; the budget is the
//! minutes split evenly over the test files below (the tests of one file
//! run in parallel, each with the file's whole budget).

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The fuzz test files: (package, test target).
const TARGETS: [(&str, &str); 2] = [
    ("mabeam-node", "fuzz_api"),
    ("mabeam-foundation-services", "fuzz_services"),
];

/// Runs every fuzz test file with its share of `--minutes N` (1 by
/// default).
pub(crate) fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let minutes: u64 = match args {
        [] => 1,
        [flag, n] if flag == "--minutes" => n.parse().context("--minutes takes an integer")?,
        _ => bail!("usage: cargo xtask fuzz [--minutes N]"),
    };
    if minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    let secs = (minutes * 60 / TARGETS.len() as u64).max(1).to_string();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, test) in TARGETS {
        crate::run(
            root,
            &cargo,
            &["test", "-p", package, "--test", test],
            &[("MABEAM_FUZZ_SECS", &secs)],
        )?;
    }
    eprintln!("xtask: fuzzing for {minutes} minute(s) found nothing");
    Ok(())
}
