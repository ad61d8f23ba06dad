//! The observer's browser test: Debian's `chromium` and `chromium-driver`
//! installed if missing (`apt-get`, as root), `chromedriver` started on a
//! free loopback port, and the ignored test
//! `mabeam-node/tests/observer_browser.rs` run against it with
//! `MABEAM_CHROMEDRIVER` set. chromedriver is killed afterwards, also when
//! the test fails.

use std::{
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// The command that installs what the browser test needs.
const INSTALL: &str = "apt-get update && apt-get install -y chromium chromium-driver";

/// Whether `program --version` runs.
fn present(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installs Chromium and chromedriver from Debian's packages if either is
/// missing; fails naming the command when it cannot.
fn ensure_installed() -> Result<()> {
    if present("chromedriver") && present("chromium") {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "the observer's browser test needs Chromium and chromedriver: run `sudo sh -c '{INSTALL}'`"
        );
    }
    eprintln!("xtask: installing chromium and chromium-driver (Debian packages)");
    for args in [
        &["update", "-q"][..],
        &["install", "-y", "-q", "chromium", "chromium-driver"][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .with_context(|| format!("running apt-get; install by hand: `{INSTALL}`"))?;
        if !status.success() {
            bail!(
                "`apt-get {}` failed ({status}); install by hand: `{INSTALL}`",
                args.join(" ")
            );
        }
    }
    if !present("chromedriver") {
        bail!("chromedriver is still missing after `{INSTALL}`");
    }
    Ok(())
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts chromedriver on a free loopback port; returns it once it accepts
/// connections.
fn start_driver() -> Result<(Driver, u16)> {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting chromedriver")?;
    let driver = Driver(child);
    let began = Instant::now();
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        if began.elapsed() > Duration::from_secs(20) {
            bail!("chromedriver did not listen on port {port} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((driver, port))
}

/// Installs what is missing, starts chromedriver, runs the browser test.
pub(crate) fn test(root: &Path, cargo: &str) -> Result<()> {
    ensure_installed()?;
    let (driver, port) = start_driver()?;
    let url = format!("http://127.0.0.1:{port}");
    let result = crate::run(
        root,
        cargo,
        &[
            "test",
            "-p",
            "mabeam-node",
            "--test",
            "observer_browser",
            "--",
            "--ignored",
            "--nocapture",
        ],
        &[("MABEAM_CHROMEDRIVER", &url)],
    );
    drop(driver);
    result
}
