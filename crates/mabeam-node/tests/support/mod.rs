//! What the end-to-end tests of the binary share: run it on a free
//! loopback port and a temporary data directory, read where it listens,
//! run it to its exit. Every wait is bounded; every child is killed when
//! dropped (even when a test fails).

#![allow(dead_code, unreachable_pub)]

#[path = "../../../../xtask/src/postgres.rs"]
pub mod pg_instance;

use std::{path::Path, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, ChildStderr, Command},
};

/// Bounds every wait for something that must come.
pub const WAIT: Duration = Duration::from_secs(60);

/// The binary under test (`MABEAM_BIN` names another build, to run these
/// tests against an older one), with piped output, killed when dropped.
pub fn mabeam() -> Command {
    let binary =
        std::env::var_os("MABEAM_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_mabeam").into());
    let mut command = Command::new(binary);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A running node.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its HTTP address (`127.0.0.1:PORT`).
    pub addr: String,
    /// Its stderr (the log), not read yet.
    pub stderr: ChildStderr,
}

impl Running {
    /// Kills it and answers everything it logged.
    pub async fn kill(mut self) -> String {
        self.child.start_kill().unwrap();
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
        let mut log = String::new();
        let _ = tokio::time::timeout(WAIT, self.stderr.read_to_string(&mut log)).await;
        log
    }
}

/// Starts `mabeam run ARGS --http 127.0.0.1:0 --data-dir DIR` and waits
/// until it says where it listens.
pub async fn start(data_dir: &Path, args: &[&str]) -> Running {
    start_with(data_dir, args, &[]).await
}

/// [`start`] with environment variables.
pub async fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut command = mabeam();
    command
        .arg("run")
        .args(args)
        .args(["--http", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = match tokio::time::timeout(WAIT, lines.next_line()).await {
        Ok(Ok(Some(line))) => line,
        other => {
            let _ = child.start_kill();
            let mut log = String::new();
            let mut stderr = stderr;
            let _ = tokio::time::timeout(WAIT, stderr.read_to_string(&mut log)).await;
            panic!("the node did not say where it listens ({other:?}); its log:\n{log}");
        }
    };
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Running {
        child,
        addr,
        stderr,
    }
}

/// Runs `mabeam ARGS` to its exit (bounded); answers its exit code and
/// stderr.
pub async fn run_to_exit(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut command = mabeam();
    command.args(args).env_remove("RUST_LOG");
    let output = tokio::time::timeout(WAIT, command.output())
        .await
        .expect("the node exits in time")
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The token the node wrote in its data directory.
pub fn token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A free loopback port's address, known before a node takes it.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// The PostgreSQL server of this test run: the one `cargo xtask test`
/// started, or a private one for this process (never skipped).
pub fn postgres_url() -> String {
    use std::sync::OnceLock;
    if let Ok(url) = std::env::var(pg_instance::URL_ENV) {
        return url;
    }
    static PRIVATE: OnceLock<Result<pg_instance::Instance, String>> = OnceLock::new();
    match PRIVATE.get_or_init(pg_instance::Instance::start) {
        Ok(instance) => instance.url.clone(),
        Err(e) => panic!(
            "no PostgreSQL for this test: {} is not set and a private instance \
             did not start ({e}); run the tests with `cargo xtask test`",
            pg_instance::URL_ENV
        ),
    }
}
