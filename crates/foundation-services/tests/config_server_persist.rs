//! ConfigServer persistence: values changed at run time survive a restart
//! and win over the TOML defaults; the file is replaced atomically, so a
//! crash mid-write (here a SIGKILLed child process) never leaves a torn or
//! empty file; an unreadable file is refused and left alone.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use mabeam_foundation_services::{
    ConfigError, ConfigSchema, ConfigServer, ConfigServerConfig, ValueRule,
    config_server::{CONFIG_FILE, ConfigProcess},
};
use mabeam_supervision_core::{ErrorCode, ProcessHandle};
use serde_json::json;

fn config(dir: &std::path::Path) -> ConfigServerConfig {
    ConfigServerConfig::new(dir)
        .with_schema(
            ConfigSchema::new()
                .updatable("limits.rate", ValueRule::integer(1, 1_000_000))
                .updatable("limits.burst", ValueRule::integer(1, 100))
                .fixed("node.name", ValueRule::string()),
        )
        .with_defaults(json!({"limits": {"rate": 10, "burst": 5}}))
}

async fn start(config: ConfigServerConfig) -> (ConfigServer, ProcessHandle) {
    let server = ConfigServer::new(config).unwrap();
    let process = ProcessHandle::spawn::<ConfigProcess>(server.clone())
        .await
        .unwrap();
    (server, process)
}

#[tokio::test]
async fn values_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (server, process) = start(config(dir.path())).await;
    server.update("limits.rate", json!(42)).await.unwrap();
    process.stop().await;
    // A new server on the same directory: loaded before its process runs.
    let server = ConfigServer::new(config(dir.path())).unwrap();
    assert_eq!(server.get("limits.rate").unwrap(), json!(42));
    assert_eq!(server.get("limits.burst").unwrap(), json!(5));
    assert!(!dir.path().join("config.json.tmp").exists());
}

// TOML defaults are merged over the built-in ones; values persisted at
// run time win over the file's.
#[tokio::test]
async fn toml_defaults_lose_to_persisted_values() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("defaults.toml");
    std::fs::write(
        &toml,
        "[limits]\nrate = 100\nburst = 20\n\n[node]\nname = \"n7\"\n",
    )
    .unwrap();
    let (server, process) = start(config(dir.path()).with_defaults_file(&toml)).await;
    assert_eq!(
        server.get("limits").unwrap(),
        json!({"rate": 100, "burst": 20})
    );
    assert_eq!(server.get("node.name").unwrap(), json!("n7"));
    server.update("limits.rate", json!(300)).await.unwrap();
    process.stop().await;
    // The file changes; the persisted rate still wins, the burst follows it.
    std::fs::write(&toml, "[limits]\nrate = 111\nburst = 30\n").unwrap();
    let (server, process) = start(config(dir.path()).with_defaults_file(&toml)).await;
    assert_eq!(
        server.get("limits").unwrap(),
        json!({"rate": 300, "burst": 30})
    );
    process.stop().await;
}

#[tokio::test]
async fn invalid_toml_defaults_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("defaults.toml");
    std::fs::write(&toml, "[limits]\nburst = 1000\n").unwrap();
    let error = ConfigServer::new(config(dir.path()).with_defaults_file(&toml)).unwrap_err();
    assert!(
        matches!(error, ConfigError::InvalidDefaults(ref m) if m.contains("limits.burst")),
        "{error}"
    );
    assert_eq!(error.code(), 3107);
    std::fs::write(&toml, "not = [toml").unwrap();
    assert!(matches!(
        ConfigServer::new(config(dir.path()).with_defaults_file(&toml)),
        Err(ConfigError::InvalidDefaults(_))
    ));
}

// A file that cannot be read as a configuration is refused, and left as
// it was (never overwritten).
#[tokio::test]
async fn an_unreadable_file_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(CONFIG_FILE);
    std::fs::write(&file, b"{\"format\": 1, \"entries\": [[\"limits.ra").unwrap();
    let error = ConfigServer::new(config(dir.path())).unwrap_err();
    assert!(matches!(error, ConfigError::CorruptedFile { .. }));
    assert_eq!(error.code(), 3106);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"{\"format\": 1, \"entries\": [[\"limits.ra"
    );
}

// A write cut short leaves its temporary file behind: the real file is
// intact, and the stray one is ignored.
#[tokio::test]
async fn a_stray_temporary_file_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (server, process) = start(config(dir.path())).await;
    server.update("limits.rate", json!(7)).await.unwrap();
    process.stop().await;
    std::fs::write(
        dir.path().join("config.json.tmp"),
        b"{\"format\": 1, \"entr",
    )
    .unwrap();
    let server = ConfigServer::new(config(dir.path())).unwrap();
    assert_eq!(server.get("limits.rate").unwrap(), json!(7));
}

const CHILD_ENV: &str = "CONFIG_CRASH_CHILD_DIR";

/// How long the parent waits for each acknowledgement before it gives up.
const ACK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The child's side: update `limits.rate` to 1, 2, 3... forever, printing
/// each acknowledged value. A plain function, run by the parent's own test
/// in the child process: no test of its own that would pass without
/// asserting anything.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child(dir: String) {
    let (server, _process) = start(config(dir.as_ref())).await;
    for rate in 1u64.. {
        println!("write {rate}");
        server.update("limits.rate", json!(rate)).await.unwrap();
        println!("ack {rate}");
    }
}

// SIGKILL mid-stream: the file left is whole and holds a value between
// the last one acknowledged before the kill and the last one the child
// began to write (it goes on writing until the kill lands).
#[test]
fn a_crash_mid_write_never_leaves_a_torn_file() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        return crash_child(dir);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_crash_mid_write_never_leaves_a_torn_file",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Lines are read on a thread of their own, so that a child that
    // stops acknowledging fails the test instead of hanging it.
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut last = 0u64;
    loop {
        let line = match lines.recv_timeout(ACK_WAIT) {
            Ok(line) => line.unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the child acknowledged nothing for {ACK_WAIT:?}");
            }
        };
        if let Some(rate) = line.strip_prefix("ack ") {
            last = rate.parse().unwrap();
            if last == 60 {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(last, 60, "the child stopped early");
    // What the child printed before the kill landed: the last write begun.
    let mut begun = last;
    while let Ok(Ok(line)) = lines.recv_timeout(ACK_WAIT) {
        if let Some(rate) = line.strip_prefix("write ") {
            begun = begun.max(rate.parse().unwrap());
        }
    }
    let server = ConfigServer::new(config(dir.path())).unwrap();
    let rate = server.get("limits.rate").unwrap().as_u64().unwrap();
    assert!(
        (last..=begun).contains(&rate),
        "found {rate} after acknowledging {last}, the last write begun {begun}"
    );
}
