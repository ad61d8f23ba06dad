//! Issue 21, item 2: log lines a person can read. By default each line is
//! time, level, message, fields, without kameo's actor spans in front;
//! `--log json` writes one JSON object a line; `RUST_LOG` rules the level.

mod support;

use support::{start, start_with};

/// The log up to the node serving, then killed.
async fn log_of(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with(dir.path(), args, env).await;
    node.kill().await
}

#[tokio::test]
async fn default_lines_are_time_level_message_fields_without_spans() {
    let dir = tempfile::tempdir().unwrap();
    let log = start(dir.path(), &[]).await.kill().await;
    assert!(!log.contains("actor.handle_message"), "{log}");
    assert!(!log.contains("actor.name"), "{log}");
    let started = log
        .lines()
        .find(|line| line.contains("started service"))
        .unwrap_or_else(|| panic!("no service start logged:\n{log}"));
    // `2026-12-07T03:30:00.123456Z  INFO started service tree="foundation" ...`
    let (time, rest) = started.split_once(' ').unwrap();
    assert!(
        time.starts_with(|c: char| c.is_ascii_digit()) && time.ends_with('Z'),
        "{started}"
    );
    let rest = rest.trim_start();
    assert!(rest.starts_with("INFO started service"), "{started}");
    assert!(rest.contains("service="), "{started}");
}

#[tokio::test]
async fn log_json_writes_one_object_a_line() {
    let log = log_of(&["--log", "json"], &[]).await;
    let mut starts = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{log}"));
        assert!(value["level"].is_string(), "{line}");
        assert!(value["timestamp"].is_string(), "{line}");
        assert!(
            value.get("span").is_none() && value.get("spans").is_none(),
            "{line}"
        );
        if value["message"] == "started service" {
            assert!(value["service"].is_string(), "{line}");
            starts += 1;
        }
    }
    assert!(starts > 0, "no service start logged:\n{log}");
}

#[tokio::test]
async fn rust_log_rules_the_level() {
    let quiet = log_of(&[], &[("RUST_LOG", "warn")]).await;
    assert!(!quiet.contains("INFO"), "{quiet}");
    // Its directives rule each crate: the node's lines, not the agent
    // layer's.
    let node_only = log_of(&[], &[("RUST_LOG", "warn,mabeam_node=info")]).await;
    assert!(node_only.contains("both trees started"), "{node_only}");
    assert!(!node_only.contains("agent recovery: done"), "{node_only}");
}
