//! `cargo xtask mutants CRATE [--file GLOB]... [-- ARGS]`: mutation testing
//! with cargo-mutants. Each mutant (a function body replaced, an operator
//! flipped) is built and the crate's tests run against it: a mutant no
//! test fails on is *missed*, a sign of code no test checks.
//!
//! One mutant at a time, in place (`--in-place`): each mutant is written
//! into the work tree, built on the compiled dependencies of `target/`, and
//! the file restored after it (also when the run is interrupted). A copy
//! of the tree, cargo-mutants' default, rebuilds every dependency whose
//! build script records its absolute path, which costs more than a small
//! crate's whole run on our 2 cores. So: edit nothing in the crate while it
//! runs. Results under `target/mutants/NAME/mutants.out` (`missed.txt`
//! lists what to look at). Not part of CI: a crate takes from minutes to
//! hours. Arguments after `--` go to cargo-mutants, e.g.
//! `--cargo-test-arg=--test=rate_limiter_buckets` to run only the test
//! targets that cover the files under test (a mutant they miss may still be
//! caught by another: the count is then a floor).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::tools;

const USAGE: &str = "usage: cargo xtask mutants CRATE [--file GLOB]... [-- CARGO_MUTANTS_ARGS]";

/// What cargo-mutants found, read from its `outcomes.json`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    caught: u64,
    missed: u64,
    timeout: u64,
    unviable: u64,
}

impl Counts {
    fn from_outcomes(outcomes: &Value) -> Result<Counts> {
        let count = |key: &str| {
            outcomes[key]
                .as_u64()
                .with_context(|| format!("outcomes.json has no count `{key}`"))
        };
        Ok(Counts {
            caught: count("caught")?,
            missed: count("missed")?,
            timeout: count("timeout")?,
            unviable: count("unviable")?,
        })
    }

    /// Caught (or timed out: a hang is a test failing) among the viable
    /// mutants, in percent.
    fn caught_percent(&self) -> f64 {
        let viable = self.caught + self.missed + self.timeout;
        if viable == 0 {
            return 100.0;
        }
        100.0 * (self.caught + self.timeout) as f64 / viable as f64
    }
}

/// The arguments: the crate, its files, and what goes to cargo-mutants.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    krate: String,
    files: Vec<String>,
    extra: Vec<String>,
}

impl Target {
    fn parse(args: &[String]) -> Result<Target> {
        let mut args = args.iter();
        let mut target = Target {
            krate: String::new(),
            files: Vec::new(),
            extra: Vec::new(),
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--file" => match args.next() {
                    Some(file) => target.files.push(file.clone()),
                    None => bail!("--file needs a path or glob\n{USAGE}"),
                },
                "--" => {
                    target.extra.extend(args.by_ref().cloned());
                }
                flag if flag.starts_with('-') => bail!("unknown flag {flag}\n{USAGE}"),
                krate if target.krate.is_empty() => target.krate = krate.to_owned(),
                other => bail!("one crate at a time (got {other} too)\n{USAGE}"),
            }
        }
        if target.krate.is_empty() {
            bail!(USAGE);
        }
        Ok(target)
    }

    /// The package cargo knows the crate by: every service crate is
    /// published with the `mabeam-` prefix, and its folder name is accepted.
    fn package(&self) -> String {
        if self.krate.starts_with("mabeam") || self.krate == "xtask" || self.krate == "tests" {
            self.krate.clone()
        } else {
            format!("mabeam-{}", self.krate)
        }
    }

    /// The output folder's name: the crate, and its files if any.
    fn slug(&self) -> String {
        let mut slug = self.krate.clone();
        for file in &self.files {
            slug.push('-');
            slug.extend(file.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            }));
        }
        slug
    }
}

/// The directory of the target's results, `target/mutants/SLUG`, made
/// if missing: cargo-mutants makes its `mutants.out` in it but not the
/// directory itself (on a clean clone it refused to start).
fn output_dir(root: &Path, target: &Target) -> Result<PathBuf> {
    let output = root.join("target").join("mutants").join(target.slug());
    std::fs::create_dir_all(&output).with_context(|| format!("creating {}", output.display()))?;
    Ok(output)
}

/// Runs cargo-mutants on the target and prints its counts.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let target = Target::parse(args)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    tools::ensure(root, &cargo, tools::MUTANTS)?;
    let output = output_dir(root, &target)?;
    let output_arg = output.to_string_lossy().into_owned();
    let package = target.package();
    let mut cmd_args: Vec<&str> = vec![
        "mutants",
        "--package",
        package.as_str(),
        "--in-place",
        "--output",
        output_arg.as_str(),
    ];
    for file in &target.files {
        cmd_args.extend(["--file", file.as_str()]);
    }
    cmd_args.extend(target.extra.iter().map(String::as_str));
    eprintln!("xtask: {cargo} {}", cmd_args.join(" "));
    let status = Command::new(&cargo)
        .args(&cmd_args)
        .current_dir(root)
        .status()
        .context("running cargo mutants")?;
    // cargo-mutants exits 2 when mutants were missed and 3 on timeouts:
    // results all the same. Anything else (a failing baseline, bad
    // arguments) left no counts to print.
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        bail!("cargo mutants failed: {status}");
    }
    let outcomes_path = output.join("mutants.out").join("outcomes.json");
    let outcomes: Value = serde_json::from_str(
        &std::fs::read_to_string(&outcomes_path)
            .with_context(|| format!("reading {}", outcomes_path.display()))?,
    )
    .context("parsing outcomes.json")?;
    let counts = Counts::from_outcomes(&outcomes)?;
    println!(
        "mutants {}: {} caught, {} missed, {} timeout, {} unviable ({:.1}% of viable caught)",
        target.slug(),
        counts.caught,
        counts.missed,
        counts.timeout,
        counts.unviable,
        counts.caught_percent()
    );
    if counts.missed > 0 {
        let missed = output.join("mutants.out").join("missed.txt");
        println!("missed: {}", missed.display());
        if let Ok(text) = std::fs::read_to_string(&missed) {
            print!("{text}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_crate_its_files_and_the_rest_for_cargo_mutants() {
        let target = Target::parse(&strings(&[
            "economics",
            "--file",
            "src/market/*.rs",
            "--",
            "--re",
            "ledger",
        ]))
        .unwrap();
        assert_eq!(
            target,
            Target {
                krate: "economics".into(),
                files: vec!["src/market/*.rs".into()],
                extra: strings(&["--re", "ledger"]),
            }
        );
        assert_eq!(target.slug(), "economics-src_market___rs");
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Target::parse(&[]).is_err());
        assert!(Target::parse(&strings(&["a", "b"])).is_err());
        assert!(Target::parse(&strings(&["a", "--file"])).is_err());
        assert!(Target::parse(&strings(&["a", "--jobs", "2"])).is_err());
    }

    #[test]
    fn counts_come_from_outcomes_json() {
        let outcomes = serde_json::json!({
            "total_mutants": 12, "caught": 8, "missed": 1, "timeout": 1, "unviable": 2,
        });
        let counts = Counts::from_outcomes(&outcomes).unwrap();
        assert_eq!(
            counts,
            Counts {
                caught: 8,
                missed: 1,
                timeout: 1,
                unviable: 2
            }
        );
        assert_eq!(counts.caught_percent(), 90.0);
        assert!(Counts::from_outcomes(&serde_json::json!({})).is_err());
    }

    // A clean clone has no `target/mutants`: its results' directory is
    // made, parents and all (cargo-mutants refused to start without it).
    #[test]
    fn the_results_directory_is_made_on_a_clean_clone() {
        let root = tempfile::tempdir().unwrap();
        let target = Target::parse(&strings(&["economics"])).unwrap();
        let output = output_dir(root.path(), &target).unwrap();
        assert_eq!(output, root.path().join("target/mutants/economics"));
        assert!(output.is_dir(), "{} not made", output.display());
        // Made again when it is there already.
        assert_eq!(output_dir(root.path(), &target).unwrap(), output);
    }
}
