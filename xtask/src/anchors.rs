//! Runs the anchors of `../shared/anchors` beside a benchmark and prints
//! ours / theirs ratios on stderr.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The `--n` value of the forwarded arguments.
pub(crate) fn n_arg(args: &[&str]) -> Option<u64> {
    args.windows(2)
        .find(|w| w[0] == "--n")
        .and_then(|w| w[1].parse().ok())
}

fn anchors_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join("../shared/anchors");
    if !dir.is_dir() {
        bail!("no anchors at {}", dir.display());
    }
    Ok(dir)
}

fn last_json_line(output: &[u8]) -> Result<Value> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
    serde_json::from_str(line.context("anchor printed no JSON line")?)
        .context("parsing anchor JSON")
}

fn run_json(cmd: &mut Command) -> Result<Value> {
    eprintln!("xtask: anchor: {cmd:?}");
    let output = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    last_json_line(&output.stdout)
}

fn otp(anchors: &Path, script: &str, args: &[String]) -> Result<Value> {
    let mut cmd = Command::new("elixir");
    cmd.args(["--erl", "+P 2000000"])
        .arg(anchors.join("beam").join(script))
        .args(args);
    run_json(&mut cmd)
}

fn kameo_raw(root: &Path, anchors: &Path, n: u64) -> Result<Value> {
    // Built in a copy under target/, as the anchor is its own workspace.
    let copy = root.join("target/anchors/kameo-raw");
    std::fs::create_dir_all(copy.join("src"))?;
    for file in ["Cargo.toml", "src/main.rs"] {
        std::fs::copy(anchors.join("kameo-raw").join(file), copy.join(file))?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--quiet", "--release", "--"])
        .arg(n.to_string())
        .current_dir(&copy);
    run_json(&mut cmd)
}

fn ratios(label: &str, ours: &Value, theirs: &Value, keys: &[&str]) {
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let (a, b) = (ours[*k].as_f64()?, theirs[*k].as_f64()?);
            Some(format!("{k} {:.2}x", a / b))
        })
        .collect();
    eprintln!("xtask: ours / {label}: {}", parts.join(", "));
}

/// Runs the anchors matching bench `name` and prints the ratios.
pub(crate) fn compare(root: &Path, name: &str, n: Option<u64>, ours: &str) -> Result<()> {
    let ours: Value = serde_json::from_str(ours).context("parsing our bench line")?;
    let anchors = anchors_dir(root)?;
    let n = n.or_else(|| ours["n"].as_u64()).unwrap_or(100_000);
    match name {
        "supervisor" => {
            let beam = otp(&anchors, "agent_lifecycle.exs", &[n.to_string()])?;
            eprintln!("xtask: otp: {beam}");
            let raw = kameo_raw(root, &anchors, n)?;
            eprintln!("xtask: kameo-raw: {raw}");
            let keys = ["start_s", "stop_s", "bytes_per_agent"];
            ratios("otp", &ours, &beam, &keys);
            ratios("kameo-raw", &ours, &raw, &keys);
        }
        "registry" => {
            let beam = otp(&anchors, "registry.exs", &[n.to_string()])?;
            eprintln!("xtask: otp: {beam}");
            ratios(
                "otp",
                &ours,
                &beam,
                &["register_s", "lookup_s", "unregister_s", "lookups_per_s"],
            );
        }
        other => eprintln!("xtask: no anchor for bench {other}"),
    }
    Ok(())
}
