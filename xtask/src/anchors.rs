//! The anchors of `../shared/anchors` (or `MABEAM_ANCHORS`) that a benchmark is compared with,
//! and the medians and ratios `cargo xtask bench NAME --anchors` prints on
//! stderr.

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

/// `MABEAM_ANCHORS` when set, else the first `shared/anchors` beside the
/// workspace or one of its parents (a git worktree may sit deeper than
/// the main checkout).
fn anchors_dir(root: &Path) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("MABEAM_ANCHORS") {
        let dir = PathBuf::from(dir);
        if !dir.is_dir() {
            bail!("MABEAM_ANCHORS={} is not a directory", dir.display());
        }
        return Ok(dir);
    }
    find_anchors(root).with_context(|| {
        format!(
            "no shared/anchors beside {} or its parents (set MABEAM_ANCHORS=DIR)",
            root.display()
        )
    })
}

fn find_anchors(root: &Path) -> Option<PathBuf> {
    root.ancestors()
        .skip(1)
        .map(|parent| parent.join("shared/anchors"))
        .find(|dir| dir.is_dir())
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

fn tokio_floor(root: &Path, anchors: &Path, n: u64) -> Result<Value> {
    let copy = root.join("target/anchors/tokio-floor");
    std::fs::create_dir_all(copy.join("src"))?;
    for file in ["Cargo.toml", "src/main.rs"] {
        std::fs::copy(anchors.join("tokio-floor").join(file), copy.join(file))?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "--quiet", "--release", "--"])
        .arg(n.to_string())
        .current_dir(&copy);
    run_json(&mut cmd)
}

/// One anchor a benchmark is compared with.
pub(crate) struct Anchor {
    /// Its name in the report.
    pub(crate) label: &'static str,
    run: fn(&Path, &Path, u64) -> Result<Value>,
}

impl Anchor {
    /// Runs the anchor once for `n` and returns its JSON line.
    pub(crate) fn run(&self, root: &Path, n: u64) -> Result<Value> {
        let value = (self.run)(root, &anchors_dir(root)?, n)?;
        eprintln!("xtask: {}: {value}", self.label);
        Ok(value)
    }
}

fn otp_lifecycle(_: &Path, anchors: &Path, n: u64) -> Result<Value> {
    otp(anchors, "agent_lifecycle.exs", &[n.to_string()])
}

fn otp_registry(_: &Path, anchors: &Path, n: u64) -> Result<Value> {
    otp(anchors, "registry.exs", &[n.to_string()])
}

const OTP_LIFECYCLE: Anchor = Anchor {
    label: "otp",
    run: otp_lifecycle,
};
const KAMEO_RAW: Anchor = Anchor {
    label: "kameo-raw",
    run: kameo_raw,
};
const TOKIO_FLOOR: Anchor = Anchor {
    label: "tokio-floor",
    run: tokio_floor,
};
const OTP_REGISTRY: Anchor = Anchor {
    label: "otp",
    run: otp_registry,
};

/// The anchors of bench `name` and the figures compared with them.
pub(crate) fn for_bench(name: &str) -> (Vec<Anchor>, &'static [&'static str]) {
    match name {
        "supervisor" => (
            vec![OTP_LIFECYCLE, KAMEO_RAW],
            &["start_s", "stop_s", "bytes_per_agent"],
        ),
        "lifecycle" => (
            vec![OTP_LIFECYCLE, KAMEO_RAW, TOKIO_FLOOR],
            &["start_s", "lookup_s", "call_s", "stop_s", "bytes_per_agent"],
        ),
        "registry" => (
            vec![OTP_REGISTRY],
            &["register_s", "lookup_s", "unregister_s", "lookups_per_s"],
        ),
        // Benches whose baseline runs inside the same process (bare
        // rusqlite, bare governor): repeated runs and medians only.
        _ => (Vec::new(), &[]),
    }
}

/// Each numeric field's median over `runs` (other fields from the first
/// run), as one JSON object.
pub(crate) fn median(runs: &[Value]) -> Value {
    let Some(Value::Object(first)) = runs.first() else {
        return Value::Null;
    };
    let mut out = first.clone();
    for (key, value) in out.iter_mut() {
        let mut figures: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
        if figures.len() != runs.len() || !value.is_number() {
            continue;
        }
        figures.sort_by(f64::total_cmp);
        if figures.first() == figures.last() {
            continue; // the same in every run (n, a count): kept as it is
        }
        let mid = figures.len() / 2;
        let m = if figures.len() % 2 == 1 {
            figures[mid]
        } else {
            (figures[mid - 1] + figures[mid]) / 2.0
        };
        *value = serde_json::json!(m);
    }
    Value::Object(out)
}

/// Prints ours / theirs for each of `keys`.
pub(crate) fn ratios(label: &str, ours: &Value, theirs: &Value, keys: &[&str]) {
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let (a, b) = (ours[*k].as_f64()?, theirs[*k].as_f64()?);
            Some(format!("{k} {:.2}x", a / b))
        })
        .collect();
    eprintln!(
        "xtask: ours / {label} (ratio of medians): {}",
        parts.join(", ")
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn anchors_are_found_beside_a_parent_of_the_workspace() {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(top.path().join("shared/anchors")).unwrap();
        let worktree = top.path().join("wt/branch");
        std::fs::create_dir_all(&worktree).unwrap();
        assert_eq!(
            find_anchors(&worktree),
            Some(top.path().join("shared/anchors"))
        );
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(find_anchors(elsewhere.path()), None);
    }

    use serde_json::json;

    use super::{find_anchors, median};

    #[test]
    fn median_per_numeric_field() {
        let runs = [
            json!({"n": 10, "start_s": 3.0, "tag": "a"}),
            json!({"n": 10, "start_s": 1.0, "tag": "b"}),
            json!({"n": 10, "start_s": 2.0, "tag": "c"}),
        ];
        assert_eq!(median(&runs), json!({"n": 10, "start_s": 2.0, "tag": "a"}));
        assert_eq!(
            median(&runs[..2]),
            json!({"n": 10, "start_s": 2.0, "tag": "a"})
        );
    }
}
