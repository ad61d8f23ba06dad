//! `check-publish`: every publishable package of the workspace packages
//! (`cargo package`), together, so cargo orders them by their
//! dependencies and resolves the workspace's own crates locally.
//!
//! By default the packages are not verified (`--no-verify`: no rebuild of
//! each from its archive, which on a 2-core machine takes as long as the
//! whole test run); `--verify` builds each archive too. Either way the
//! check fails on what blocks a publish: a path dependency without a
//! version, missing metadata cargo requires, a file outside a package.

use std::path::Path;

use anyhow::{Result, bail};

use crate::deps;

/// The packages that may be published (`publish` not `false`).
pub(crate) fn publishable(root: &Path) -> Result<Vec<String>> {
    let meta = deps::metadata(root)?;
    Ok(deps::packages(&meta)
        .iter()
        .filter(|p| !p["publish"].as_array().is_some_and(Vec::is_empty))
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect())
}

/// Packages every publishable crate; `args` may hold `--verify`.
pub(crate) fn check(root: &Path, args: &[String]) -> Result<()> {
    let packages = publishable(root)?;
    if packages.is_empty() {
        bail!("no publishable package in the workspace");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd: Vec<&str> = vec!["package", "--offline", "--allow-dirty"];
    if !args.iter().any(|a| a == "--verify") {
        cmd.push("--no-verify");
    }
    for package in &packages {
        cmd.extend(["-p", package.as_str()]);
    }
    crate::run(root, &cargo, &cmd, &[])?;
    eprintln!("xtask: {} packages ready to publish", packages.len());
    Ok(())
}
