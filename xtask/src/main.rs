//! The workspace's automation, run as `cargo xtask <command>`:
//!
//! - `test`: everything CI checks (format, clippy, the dependency rule,
//!   packaging, docs without warnings, each crate building alone and
//!   with each of its features alone (the umbrella's service groups), every
//!   example run (each bounded), doc tests, the observer's page in headless
//!   Chromium, a private PostgreSQL for the store tests (src/postgres.rs),
//!   then every test under cargo-nextest with the per-test time
//!   limit of `.config/nextest.toml`, last so that its summary closes the
//!   output);
//! - `bench NAME [--n N] [--anchors] [--backend postgres [--store URL]]`: one benchmark in release mode (progress on stderr,
//!   one JSON object as the last line of stdout); with `--anchors`, ours and
//!   the anchors of `../shared/anchors` (the first `shared/anchors` beside a
//!   parent, or `MABEAM_ANCHORS`) run alternately three times (after
//!   a discarded warm-up), and each figure's median and the ratios of
//!   medians are printed; the last line is then our medians; each run
//!   keeps its figures, dated, in `docs/bench/NAME.json`;
//! - `bench --chart` (or `bench chart`): an SVG chart of the ratios of
//!   each `docs/bench/NAME.json`, `docs/bench/NAME.svg` (`bench NAME
//!   --anchors --chart` runs, then draws);
//! - `examples`: every crate's examples, built and run, each bounded;
//! - `check-publish [--verify]`: every publishable crate packages
//!   (`cargo package`, offline), in dependency order.
//! - `browser`: the observer's browser test alone (part of `test`);
//! - `fuzz [--minutes N]`: the fuzz property tests (bounded case counts in
//!   `test`) for about N minutes;
//! - `soak --minutes N [--rate R]`: the node binary (release) under mixed
//!   load through its API for N minutes, sampled each minute and checked
//!   at the end; the last line of stdout is JSON;
//! - `check-deps`: the dependency rule of docs/ARCHITECTURE.md;
//! - `mutants CRATE [--file GLOB]... [-- ARGS]`: mutation testing of a
//!   crate, or of some of its files, with cargo-mutants, in place (not part of CI:
//!   it takes long); prints the caught, missed, timeout and unviable counts.
//!
//! The cargo tools these need (cargo-nextest, cargo-mutants) are installed
//! from crates.io when missing, saying so; never skipped.
//!
//! This is a binary, not a library; the benchmarks themselves are the
//! `bench` binary of this package (src/bench/).

mod anchors;
mod browser;
mod chart;
mod deps;
mod examples;
mod fuzz;
mod mutants;
mod postgres;
mod publish;
mod soak;
mod tools;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask test | examples | browser | bench NAME [--n N] [--anchors] [--chart] \
                     [--backend sqlite|postgres] [--store URL] | bench --chart \
                     | fuzz [--minutes N] | soak --minutes N [--rate R] | check-deps | check-publish [--verify] \
                     | mutants CRATE [--file GLOB]... [-- CARGO_MUTANTS_ARGS]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("test") => test(&root),
        Some("check-deps") => deps::check(&root),
        Some("browser") => browser::test(
            &root,
            &std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        ),
        Some("examples") => examples::run_all(&root),
        Some("check-publish") => publish::check(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        Some("fuzz") => fuzz::fuzz(&root, &args[1..]),
        Some("soak") => soak::soak(&root, &args[1..]),
        Some("mutants") => mutants::run(&root, &args[1..]),
        _ => bail!(USAGE),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Runs a command in the workspace root, failing if it fails.
pub(crate) fn run(root: &Path, program: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<()> {
    eprintln!("xtask: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed: {status}", args.join(" "));
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Before anything is built: a missing runner fails the run here, not
    // after twenty minutes of checks.
    tools::ensure(root, &cargo, tools::NEXTEST)?;
    run(root, &cargo, &["fmt", "--all", "--check"], &[])?;
    run(
        root,
        &cargo,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    deps::check(root)?;
    publish::check(root, &[])?;
    // What a user runs first: every crate's examples, each bounded.
    examples::run_all(root)?;
    // The observer's page in headless Chromium (an ignored test: it needs
    // chromedriver, which this installs if missing and starts).
    browser::test(root, &cargo)?;
    // PostgreSQL for the store tests: a private instance (installed from
    // Debian's packages if missing) on a free loopback port, its URL
    // handed to the tests; stopped and removed when this returns, even on
    // failure (its guard also cleans up if xtask is killed).
    let postgres = postgres::Instance::start_installing().map_err(anyhow::Error::msg)?;
    let postgres_env = [(postgres::URL_ENV, postgres.url.as_str())];
    run(
        root,
        &cargo,
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    // Users depend on single crates: each must build on its own features.
    for package in deps::workspace_packages(root)? {
        run(root, &cargo, &["check", "--quiet", "-p", &package], &[])?;
    }
    // A program that embeds a subset turns default features off: each
    // feature alone, and none, must build (the umbrella's service groups),
    // and the umbrella's own tests of a system without them pass.
    for (package, features) in deps::feature_groups(root)? {
        let base = ["check", "--quiet", "-p", &package, "--no-default-features"];
        run(root, &cargo, &base, &[])?;
        for feature in &features {
            let mut args = base.to_vec();
            args.extend(["--features", feature]);
            run(root, &cargo, &args, &[])?;
        }
        run(
            root,
            &cargo,
            &[
                "test",
                "--quiet",
                "-p",
                &package,
                "--lib",
                "--no-default-features",
            ],
            &[],
        )?;
    }
    // nextest does not run doc tests.
    run(
        root,
        &cargo,
        &["test", "--doc", "--workspace"],
        &postgres_env,
    )?;
    // Every test in its own process, under the per-test limit of
    // .config/nextest.toml: a hang fails in minutes and names the test.
    // Last, so that nextest's summary line closes the output.
    run(
        root,
        &cargo,
        &["nextest", "run", "--workspace", "--no-fail-fast"],
        &postgres_env,
    )
}

fn bench(root: &Path, args: &[String]) -> Result<()> {
    let with_chart = args.iter().any(|a| a == "--chart");
    let Some(name) = args.first() else {
        bail!(USAGE)
    };
    if name == "--chart" || name == "chart" {
        let written = chart::chart_all(root)?;
        eprintln!("xtask: {} charts in {}", written.len(), chart::BENCH_DIR);
        return Ok(());
    }
    let with_anchors = args.iter().any(|a| a == "--anchors");
    let forwarded: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--anchors" && *a != "--chart")
        .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd_args = vec![
        "run",
        "--quiet",
        "--release",
        "-p",
        "xtask",
        "--bin",
        "bench",
        "--",
    ];
    cmd_args.extend(&forwarded);
    let run_bench = || {
        eprintln!("xtask: cargo {}", cmd_args.join(" "));
        Command::new(&cargo)
            .args(&cmd_args)
            .current_dir(root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("running the bench binary")
    };
    // One run varies up to 2x on our machines: with --anchors, ours and
    // each anchor run alternately three times and medians are compared.
    let rounds = if with_anchors { 3 } else { 1 };
    if with_anchors {
        // On our VMs the first large allocation after other work (a build)
        // runs up to twice as slow; a discarded run puts ours and the
        // anchors that follow on the same footing.
        eprintln!("xtask: warm-up run, discarded");
        run_bench()?;
    }
    let (anchors, keys) = if with_anchors {
        anchors::for_bench(name)
    } else {
        (Vec::new(), &[][..])
    };
    let n = anchors::n_arg(&forwarded);
    let mut ours = Vec::new();
    let mut theirs: Vec<Vec<serde_json::Value>> = anchors.iter().map(|_| Vec::new()).collect();
    // A bar over every run (ours and each anchor, per round) on stderr; it
    // draws only on a terminal, where the lines below would scroll away.
    let progress = indicatif::ProgressBar::new((rounds * (1 + anchors.len())) as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for round in 1..=rounds {
        if rounds > 1 {
            progress.println(format!("xtask: round {round} of {rounds}"));
        }
        progress.set_message(format!("round {round}: ours"));
        let output = run_bench()?;
        progress.inc(1);
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            print!("{stdout}");
            bail!("bench {name} failed: {}", output.status);
        }
        let line = stdout.lines().last().unwrap_or_default();
        let value: serde_json::Value =
            serde_json::from_str(line).context("parsing the bench's JSON line")?;
        eprintln!("xtask: ours: {value}");
        let anchor_n = n.or_else(|| value["n"].as_u64()).unwrap_or(100_000);
        ours.push(value);
        for (anchor, runs) in anchors.iter().zip(&mut theirs) {
            progress.set_message(format!("round {round}: {}", anchor.label));
            runs.push(anchor.run(root, anchor_n)?);
            progress.inc(1);
        }
    }
    progress.finish_and_clear();
    let ours = anchors::median(&ours);
    let mut medians = Vec::new();
    if rounds > 1 {
        eprintln!("xtask: ours, median of {rounds}: {ours}");
        for (anchor, runs) in anchors.iter().zip(&theirs) {
            let median = anchors::median(runs);
            eprintln!("xtask: {}, median of {rounds}: {median}", anchor.label);
            anchors::ratios(anchor.label, &ours, &median, keys);
            medians.push((anchor.label, median));
        }
    }
    // The run's figures, dated, for docs/BENCHMARKS.md and its charts.
    let record = chart::record(name, rounds, &ours, &medians, keys);
    let saved = chart::save(root, &record)?;
    eprintln!("xtask: figures kept in {}", saved.display());
    if with_chart {
        chart::chart_all(root)?;
    }
    println!("{ours}");
    Ok(())
}
