//! The crates' examples, as a user runs them (`cargo run -p CRATE
//! --example NAME`): each is built, run, and must finish by itself,
//! successfully, within [`EXAMPLE_LIMIT`].

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::deps;

/// How long one example may run: each finishes in seconds; a hang fails.
pub(crate) const EXAMPLE_LIMIT: Duration = Duration::from_secs(60);

/// Every example of the workspace: (package, example name).
pub(crate) fn list(root: &Path) -> Result<(PathBuf, Vec<(String, String)>)> {
    let meta = deps::metadata(root)?;
    let target = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let mut found = Vec::new();
    for package in deps::packages(&meta) {
        let name = package["name"].as_str().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_example = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "example"));
            if is_example && let Some(example) = target["name"].as_str() {
                found.push((name.to_owned(), example.to_owned()));
            }
        }
    }
    Ok((target, found))
}

/// Builds every example, then runs each, bounded by [`EXAMPLE_LIMIT`].
pub(crate) fn run_all(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    crate::run(root, &cargo, &["build", "--workspace", "--examples"], &[])?;
    let (target, examples) = list(root)?;
    for (package, example) in &examples {
        let binary = target
            .join("debug")
            .join("examples")
            .join(format!("{example}{}", std::env::consts::EXE_SUFFIX));
        eprintln!("xtask: example {package}/{example}");
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .current_dir(root)
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > EXAMPLE_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "example {example} of {package} still running after {EXAMPLE_LIMIT:?}: killed"
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            bail!("example {example} of {package} failed: {status}");
        }
    }
    eprintln!("xtask: {} examples ran", examples.len());
    Ok(())
}
