//! The CLI that speaks to a running node, end to end: a node binary on a
//! free loopback port and a temporary data directory, and each command
//! (`status`, `agents list|start|ask|stop`, `events`, `events --follow`,
//! `services restart`, `completions`) run as a user runs it, with a table
//! for people and `--json` for scripts. A command with no node to speak
//! to names the address it tried.

use std::{path::Path, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const WAIT: Duration = Duration::from_secs(60);

fn mabeam() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mabeam"));
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Starts a node (killed when dropped) and returns it with its address.
async fn start(data_dir: &Path) -> (Child, String) {
    let mut child = mabeam()
        .args(["run", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the node says where it listens in time")
        .unwrap()
        .expect("a line on stdout");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

/// Runs `mabeam ARGS --http addr --data-dir dir`; (success, stdout, stderr).
async fn cli(addr: &str, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = tokio::time::timeout(
        WAIT,
        mabeam()
            .args(args)
            .args(["--http", addr, "--data-dir"])
            .arg(dir)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("`mabeam {}` did not finish in time", args.join(" ")))
    .expect("the binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// As [`cli`], expecting success and JSON on stdout.
async fn cli_json(addr: &str, dir: &Path, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (ok, out, err) = cli(addr, dir, &with_json).await;
    assert!(ok, "`mabeam {}` failed: {err}", args.join(" "));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, addr) = start(dir.path()).await;
    let d = dir.path();

    // status: a table for people, the health report for scripts.
    let (ok, out, err) = cli(&addr, d, &["status"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("healthy") && out.contains("SERVICE") && out.contains("event_store"),
        "{out}"
    );
    let health = cli_json(&addr, d, &["status"]).await;
    assert_eq!(health["healthy"], true, "{health}");

    // agents start / list / ask / stop.
    let started = cli_json(
        &addr,
        d,
        &[
            "agents",
            "start",
            "counter",
            "--id",
            "c-1",
            "--args",
            r#"{"start": 2}"#,
        ],
    )
    .await;
    assert_eq!(started["id"], "c-1", "{started}");
    let (ok, out, err) = cli(&addr, d, &["agents", "list"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains("c-1") && out.contains("counter") && out.contains("1 agent(s)"),
        "{out}"
    );
    let listed = cli_json(&addr, d, &["agents"]).await;
    assert_eq!(listed["total"], 1, "{listed}");
    let (ok, out, err) = cli(
        &addr,
        d,
        &[
            "agents",
            "ask",
            "c-1",
            "counter.add",
            "--body",
            r#"{"by": 3}"#,
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains('5'), "2 + 3 should show 5: {out}");
    let (ok, out, err) = cli(&addr, d, &["agents", "stop", "c-1"]).await;
    assert!(ok && out.contains("stopped c-1"), "{out} {err}");

    // A refusal carries the node's typed error.
    let (ok, _, err) = cli(&addr, d, &["agents", "start", "no_such_kind"]).await;
    assert!(!ok && err.contains("unknown_kind"), "{err}");

    // services restart.
    let (ok, out, err) = cli(&addr, d, &["services", "restart", "rate_limiter"]).await;
    assert!(ok && out.contains("restarted rate_limiter"), "{out} {err}");

    // events: the agent's lifecycle is in the log.
    let (ok, out, err) = cli(&addr, d, &["events"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("c-1"), "the agent's events: {out}");

    // events --follow prints the log, then an event appended after it
    // started.
    let mut follow = mabeam()
        .args([
            "events",
            "--follow",
            "--json",
            "--http",
            &addr,
            "--data-dir",
        ])
        .arg(d)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // Starting an agent appends its status changes.
    let _ = cli_json(&addr, d, &["agents", "start", "counter", "--id", "c-2"]).await;
    let seen = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("c-2") {
                return line;
            }
        }
        panic!("--follow ended before the new event");
    })
    .await
    .expect("--follow printed the new event in time");
    let event: Value = serde_json::from_str(&seen).unwrap();
    assert!(event["id"].as_u64().is_some(), "{seen}");
    follow.kill().await.unwrap();

    node.kill().await.unwrap();
}

#[tokio::test]
async fn no_node_says_which_address_was_tried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t").unwrap();
    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let (ok, _, err) = cli(&addr, dir.path(), &["status"]).await;
    assert!(!ok);
    assert!(err.contains(&addr) && err.contains("mabeam run"), "{err}");

    // No token where it was looked for: the error says where.
    let empty = tempfile::tempdir().unwrap();
    let (ok, _, err) = cli(&addr, empty.path(), &["status"]).await;
    assert!(!ok && err.contains("--data-dir"), "{err}");
}

#[tokio::test]
async fn completions_are_generated() {
    let output = mabeam()
        .args(["completions", "bash"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let script = String::from_utf8_lossy(&output.stdout);
    assert!(
        script.contains("agents") && script.contains("services"),
        "{script}"
    );
}
