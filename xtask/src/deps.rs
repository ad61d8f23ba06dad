//! The dependency rule: the six service crates have no normal dependency on
//! a workspace crate other than supervision-core.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The crates that may meet only through supervision-core.
pub(crate) const SERVICE_CRATES: [&str; 6] = [
    "mabeam-process-registry",
    "mabeam-foundation-services",
    "mabeam-agent-supervisor",
    "mabeam-coordination",
    "mabeam-economics",
    "mabeam-telemetry",
];

const CORE: &str = "mabeam-supervision-core";

pub(crate) fn metadata(root: &Path) -> Result<Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("parsing cargo metadata")
}

pub(crate) fn packages(meta: &Value) -> &[Value] {
    meta["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The names of the workspace's packages.
pub(crate) fn workspace_packages(root: &Path) -> Result<Vec<String>> {
    let meta = metadata(root)?;
    Ok(packages(&meta)
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect())
}

/// The packages with default features, each with its other features:
/// `cargo xtask test` checks each alone (and none), so that a program
/// depending on a subset builds.
pub(crate) fn feature_groups(root: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let meta = metadata(root)?;
    Ok(groups_of(&meta))
}

/// [`feature_groups`] of a `cargo metadata` document.
pub(crate) fn groups_of(meta: &Value) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for package in packages(meta) {
        let (Some(name), Some(features)) =
            (package["name"].as_str(), package["features"].as_object())
        else {
            continue;
        };
        if !features.contains_key("default") {
            continue;
        }
        let mut groups: Vec<String> = features
            .keys()
            .filter(|f| *f != "default")
            .cloned()
            .collect();
        groups.sort();
        found.push((name.to_owned(), groups));
    }
    found
}

/// The offending edges of `meta`: (service crate, workspace crate it names).
pub(crate) fn violations(meta: &Value) -> Vec<(String, String)> {
    let names: Vec<&str> = packages(meta)
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let mut found = Vec::new();
    for package in packages(meta) {
        let Some(name) = package["name"].as_str() else {
            continue;
        };
        if !SERVICE_CRATES.contains(&name) {
            continue;
        }
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let Some(dep_name) = dep["name"].as_str() else {
                continue;
            };
            // kind is null for normal dependencies, "dev" or "build" otherwise.
            let is_dev = dep["kind"].as_str() == Some("dev");
            if !is_dev && dep_name != CORE && names.contains(&dep_name) {
                found.push((name.to_owned(), dep_name.to_owned()));
            }
        }
    }
    found
}

/// Checks the rule, naming each offending edge.
pub(crate) fn check(root: &Path) -> Result<()> {
    let meta = metadata(root)?;
    let found = violations(&meta);
    if found.is_empty() {
        eprintln!("xtask: check-deps: the service crates meet only through {CORE}");
        return Ok(());
    }
    for (from, to) in &found {
        eprintln!(
            "xtask: check-deps: {from} depends on {to}: service crates may depend only on {CORE}"
        );
    }
    bail!("{} forbidden dependency edge(s)", found.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(deps: Value) -> Value {
        json!({ "packages": [
            { "name": "mabeam-supervision-core", "dependencies": [] },
            { "name": "mabeam-telemetry", "dependencies": [] },
            { "name": "mabeam-process-registry", "dependencies": deps },
        ]})
    }

    #[test]
    fn names_the_offending_edge() {
        let m = meta(json!([{ "name": "mabeam-telemetry", "kind": null }]));
        assert_eq!(
            violations(&m),
            vec![("mabeam-process-registry".into(), "mabeam-telemetry".into())]
        );
    }

    #[test]
    fn core_outside_crates_and_dev_dependencies_are_allowed() {
        let m = meta(json!([
            { "name": "mabeam-supervision-core", "kind": null },
            { "name": "tokio", "kind": null },
            { "name": "mabeam-telemetry", "kind": "dev" },
        ]));
        assert!(violations(&m).is_empty());
    }

    // Only packages with default features are checked feature by feature,
    // each of its other features named once.
    #[test]
    fn feature_groups_are_those_of_packages_with_defaults() {
        let m = json!({ "packages": [
            { "name": "mabeam", "features": {
                "default": ["foundation", "agents"], "foundation": [], "agents": [] } },
            { "name": "mabeam-supervision-core", "features": { "testkit": [] } },
            { "name": "mabeam-telemetry", "features": {} },
        ]});
        assert_eq!(
            groups_of(&m),
            vec![("mabeam".into(), vec!["agents".into(), "foundation".into()])]
        );
    }
}
