//! The built `mabeam` binary end to end, over loopback only: it starts on
//! a free port and a temporary data directory, answers /health, /metrics
//! (Prometheus text with supervision metrics) and /api/tree, refuses a
//! mutation without the token and accepts it with the token, and on
//! SIGTERM stops every service in reverse start order and exits 0. Bad
//! configuration exits 2 naming the key and its line.

use std::{process::Stdio, time::Duration};

use mabeam_node::client::request;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    process::{Child, Command},
};

const WAIT: Duration = Duration::from_secs(60);

fn mabeam() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mabeam"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Starts a node and returns it with its address, read from its stdout.
async fn start(data_dir: &std::path::Path) -> (Child, String) {
    let mut child = mabeam()
        .args(["run", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the node says where it listens")
        .unwrap()
        .expect("a line on stdout");
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_node_serves_health_metrics_tree_and_stops_in_order_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data"); // does not exist yet
    let (mut child, addr) = start(&data_dir).await;
    assert!(addr.starts_with("127.0.0.1:"), "loopback only: {addr}");

    let health = request(&addr, "GET", "/health", None).await.unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    let health: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["healthy"], true);
    assert_eq!(health["services"].as_array().unwrap().len(), 4);

    let metrics = request(&addr, "GET", "/metrics", None).await.unwrap();
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_child_started_total{supervisor="foundation"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_children{supervisor="foundation",state="active"}"#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"mabeam_registry_names{namespace="production"}"#),
        Some(4.0),
        "{text}"
    );
    assert!(text.contains("# TYPE mabeam_supervisor_child_started_total counter"));
    // The registry's own events, and the services' mailboxes read on scrape.
    assert_eq!(
        value(
            &text,
            r#"mabeam_registry_register_total{namespace="production",result="ok"}"#
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"mabeam_mailbox_length{process="telemetry_service"}"#
        ),
        Some(0.0),
        "{text}"
    );

    let tree = request(&addr, "GET", "/api/tree", None).await.unwrap();
    assert_eq!(tree.status, 200);
    let tree: serde_json::Value = serde_json::from_str(&tree.body).unwrap();
    let apps = tree["applications"].as_array().unwrap();
    assert_eq!(apps[0]["name"], "foundation");
    assert_eq!(apps[1]["name"], "mabeam");
    let services: Vec<&str> = apps[0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["process_registry", "service_registry", "telemetry_service"]
    );
    for service in apps[0]["children"].as_array().unwrap() {
        assert_eq!(service["status"], "running");
        assert_eq!(service["kind"], "worker");
        assert_eq!(service["restarts"], 0);
        assert_eq!(service["mailbox_len"], 0);
    }

    // A mutation: refused without the token (or with a wrong one), and
    // nothing changes; accepted with the token from the data directory.
    let path = "/api/services/telemetry_service/restart";
    assert_eq!(
        request(&addr, "POST", path, None).await.unwrap().status,
        401
    );
    assert_eq!(
        request(&addr, "POST", path, Some("wrong"))
            .await
            .unwrap()
            .status,
        401
    );
    let token_file = data_dir.join("token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let unchanged = request(&addr, "GET", "/metrics", None).await.unwrap().body;
    assert_eq!(
        value(
            &unchanged,
            r#"mabeam_supervisor_child_terminated_total{supervisor="foundation",reason="shutdown"}"#
        ),
        None,
        "a refused mutation changed nothing"
    );
    let token = std::fs::read_to_string(&token_file).unwrap();
    let accepted = request(&addr, "POST", path, Some(token.trim()))
        .await
        .unwrap();
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let after = request(&addr, "GET", "/metrics", None).await.unwrap().body;
    assert_eq!(
        value(
            &after,
            r#"mabeam_supervisor_child_started_total{supervisor="foundation"}"#
        ),
        Some(4.0),
        "{after}"
    );
    let unknown = request(
        &addr,
        "POST",
        "/api/services/nope/restart",
        Some(token.trim()),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status, 404);

    // SIGTERM: exit 0, HTTP first, then every service in reverse start order.
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the node exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .await
        .unwrap();
    let shutdown = &log[log
        .find("shutting down")
        .expect("the node logs its shutdown")..];
    let stopped: Vec<&str> = shutdown
        .lines()
        .filter(|l| l.contains("stopped service"))
        .filter_map(|l| l.split("service=").nth(1))
        .collect();
    assert_eq!(
        stopped,
        [
            "performance_monitor",
            "telemetry_service",
            "service_registry",
            "process_registry"
        ],
        "{log}"
    );
    let http_stopped = shutdown.find("HTTP API stopped").expect("HTTP stopped");
    let first_service = shutdown.find("stopped service").unwrap();
    assert!(http_stopped < first_service, "{log}");
    assert!(log.contains("both trees stopped"));
    assert!(request(&addr, "GET", "/health", None).await.is_err());
}

#[tokio::test]
async fn a_bad_config_names_the_key_and_line_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        "log = \"info\"\n\n[http]\nadr = \"127.0.0.1:4000\"\n",
    )
    .unwrap();
    let output = mabeam()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("node.toml:4:"), "{stderr}");
    assert!(stderr.contains("adr"), "{stderr}");
}

#[tokio::test]
async fn a_non_loopback_address_needs_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let output = mabeam()
        .args(["run", "--http", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--allow-non-loopback"), "{stderr}");
    assert!(!dir.path().join("token").exists(), "nothing was started");
}
