//! The built `mabeam` binary end to end, over loopback only: it starts on
//! a free port and a temporary data directory, answers /health, /metrics
//! (Prometheus text with supervision metrics) and /api/tree, refuses a
//! mutation without the token and accepts it with the token, starts,
//! lists, asks and stops agents, reads their lifecycle from /api/events,
//! and on SIGTERM stops every service in reverse start order and exits 0.
//! An event acknowledged before a SIGKILL is there after a restart on the
//! same data directory. Bad configuration exits 2 naming the key and its
//! line.

use std::{process::Stdio, time::Duration};

use mabeam_node::client::{request, send};
use serde_json::Value;
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

/// Every top-level service of both trees, in start order.
const START_ORDER: [&str; 15] = [
    "process_registry",
    "service_registry",
    "telemetry_service",
    "config_server",
    "event_store",
    "connection_manager",
    "rate_limiter",
    "task_supervisor",
    "health_monitor",
    "service_monitor",
    "core",
    "agent_supervisor",
    "agent_registry",
    "coordination_supervisor",
    "performance_monitor",
];

/// A request with a JSON body; the reply's status and JSON body.
async fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    let reply = send(addr, method, path, token, body).await.unwrap();
    let json = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status, json)
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
    assert_eq!(health["services"].as_array().unwrap().len(), 15);

    let metrics = request(&addr, "GET", "/metrics", None).await.unwrap();
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_child_started_total{supervisor="foundation"}"#
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"mabeam_supervisor_children{supervisor="foundation",state="active"}"#
        ),
        Some(10.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"mabeam_registry_names{namespace="production"}"#),
        Some(18.0),
        "{text}"
    );
    assert!(text.contains("# TYPE mabeam_supervisor_child_started_total counter"));
    // The registry's own events, and the services' mailboxes read on scrape.
    assert_eq!(
        value(
            &text,
            r#"mabeam_registry_register_total{namespace="production",result="ok"}"#
        ),
        Some(18.0),
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

    // Reads of /api/* need the token too (http.public_reads is off).
    let read_token = std::fs::read_to_string(data_dir.join("token")).unwrap();
    let tree = request(&addr, "GET", "/api/tree", Some(read_token.trim()))
        .await
        .unwrap();
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
    assert_eq!(services, START_ORDER[..10]);
    for service in apps[0]["children"].as_array().unwrap() {
        assert_eq!(service["status"], "running");
        assert_eq!(service["kind"], "worker");
        assert_eq!(service["restarts"], 0);
    }
    assert!(tree["absent"].as_array().unwrap().is_empty(), "{tree}");

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
        for secret in [&token_file, &data_dir.join("cookie")] {
            let mode = std::fs::metadata(secret).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
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
        Some(11.0),
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
    let token = token.trim();

    agents_events_and_votes(&addr, token).await;

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
    let mut reverse = START_ORDER;
    reverse.reverse();
    assert_eq!(stopped, reverse, "{log}");
    let http_stopped = shutdown.find("HTTP API stopped").expect("HTTP stopped");
    let first_service = shutdown.find("stopped service").unwrap();
    assert!(http_stopped < first_service, "{log}");
    assert!(log.contains("both trees stopped"));
    assert!(request(&addr, "GET", "/health", None).await.is_err());
}

/// Agents over HTTP: refused without the token (nothing changes), started
/// with it, listed, asked, voting and bidding; their lifecycle read back
/// from /api/events; stopped.
async fn agents_events_and_votes(addr: &str, token: &str) {
    let worker =
        r#"{"kind": "worker", "id": "w-1", "args": {"valuation": 12.5, "approve_up_to": 50}}"#;
    let (status, refused) = call(addr, "POST", "/api/agents", None, Some(worker)).await;
    assert_eq!(status, 401);
    assert_eq!(refused["code"], 9101);
    let (status, listed) = call(addr, "GET", "/api/agents", Some(token), None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["total"], 0, "a refused start changed nothing");

    let (status, started) = call(addr, "POST", "/api/agents", Some(token), Some(worker)).await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(started["id"], "w-1");
    assert_eq!(started["status"], "running");
    let (status, counter) = call(
        addr,
        "POST",
        "/api/agents",
        Some(token),
        Some(r#"{"kind": "counter"}"#),
    )
    .await;
    assert_eq!(status, 201, "{counter}");
    let counter_id = counter["id"].as_str().unwrap().to_owned();
    assert!(counter_id.starts_with("counter-"), "{counter}");

    // Bad input: typed errors with stable codes, nothing registered.
    for (body, code, status) in [
        (r#"{"kind": "nope"}"#, 9104, 400),
        (
            r#"{"kind": "worker", "args": {"valuation": -1}}"#,
            9105,
            400,
        ),
        (r#"{"kind": "worker", "colour": "red"}"#, 9102, 400),
        ("not json", 9102, 400),
        (worker, 9106, 409),
    ] {
        let (got, error) = call(addr, "POST", "/api/agents", Some(token), Some(body)).await;
        assert_eq!(
            (got, error["code"].as_u64()),
            (status, Some(code)),
            "{body}: {error}"
        );
        assert!(error["message"].is_string());
    }
    let (_, listed) = call(addr, "GET", "/api/agents?limit=1", Some(token), None).await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["agents"].as_array().unwrap().len(), 1);
    assert_eq!(listed["next_offset"], 1);
    let (_, workers) = call(
        addr,
        "GET",
        "/api/agents?kind=worker&status=running",
        Some(token),
        None,
    )
    .await;
    assert_eq!(workers["agents"][0]["id"], "w-1");
    assert_eq!(workers["agents"][0]["status"], "running");
    let (status, _) = call(addr, "GET", "/api/agents?status=dancing", Some(token), None).await;
    assert_eq!(status, 400);

    // The counter counts; the worker votes and bids.
    let (status, reply) = call(
        addr,
        "POST",
        &format!("/api/agents/{counter_id}/ask"),
        Some(token),
        Some(r#"{"protocol": "counter.add", "body": {"by": 5}}"#),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"]["count"], 5);
    let (status, decision) = call(
        addr,
        "POST",
        "/api/coordination/vote",
        Some(token),
        Some(r#"{"topic": "raise", "value": 40}"#),
    )
    .await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["outcome"]["outcome"], "passed", "{decision}");
    let (status, outcome) = call(
        addr,
        "POST",
        "/api/economics/auction",
        Some(token),
        Some(r#"{"item": "gpu-hour", "reserve": 1.0, "bidding_ms": 500}"#),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["awards"].as_array().unwrap().len(), 1, "{outcome}");

    // The agent's start is in the event log (recorded as it happens: read
    // on, each read waiting for the next event).
    let mut after = 0;
    let mut seen = false;
    while !seen {
        let (status, page) = call(
            addr,
            "GET",
            &format!("/api/events?after={after}&wait_ms=10000"),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert!(!events.is_empty(), "no event for w-1's start: {page}");
        seen = events
            .iter()
            .any(|e| e["stream"] == "agent:w-1" && e["data"]["to"] == "running");
        after = page["next"].as_u64().unwrap();
    }

    // Stop (and forget) the worker; again: not found.
    let (status, _) = call(addr, "DELETE", "/api/agents/w-1", None, None).await;
    assert_eq!(status, 401);
    let (status, stopped) = call(addr, "DELETE", "/api/agents/w-1", Some(token), None).await;
    assert_eq!(status, 200, "{stopped}");
    let (status, missing) = call(addr, "DELETE", "/api/agents/w-1", Some(token), None).await;
    assert_eq!((status, missing["code"].as_u64()), (404, Some(9107)));
    let (_, listed) = call(addr, "GET", "/api/agents", Some(token), None).await;
    assert_eq!(listed["total"], 1);
}

#[tokio::test]
async fn an_event_acknowledged_before_a_sigkill_is_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (mut child, addr) = start(&data_dir).await;
    let token = std::fs::read_to_string(data_dir.join("token")).unwrap();
    let (status, appended) = call(
        &addr,
        "POST",
        "/api/events",
        Some(token.trim()),
        Some(r#"{"stream": "orders", "kind": "placed", "data": {"n": 1}}"#),
    )
    .await;
    assert_eq!(status, 201, "{appended}");
    let id = appended["id"].as_u64().unwrap();
    let (status, refused) = call(
        &addr,
        "POST",
        "/api/events",
        Some(token.trim()),
        Some(r#"{"stream": "orders"}"#),
    )
    .await;
    assert_eq!((status, refused["code"].as_u64()), (400, Some(9102)));

    child.start_kill().unwrap(); // SIGKILL
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the node dies")
        .unwrap();

    let (mut again, addr) = start(&data_dir).await;
    let (status, page) = call(
        &addr,
        "GET",
        &format!("/api/events?after={}", id - 1),
        Some(
            std::fs::read_to_string(data_dir.join("token"))
                .unwrap()
                .trim(),
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let first = &page["events"][0];
    assert_eq!(first["id"], id);
    assert_eq!(first["stream"], "orders");
    assert_eq!(first["data"]["n"], 1);
    again.start_kill().unwrap();
    let _ = again.wait().await;
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
