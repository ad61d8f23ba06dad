//! Issue 21, item 12: the HTTP API's doors. The token is checked before a
//! body is read; headers, requests and connections are bounded; `/api/*`
//! reads need the token unless `http.public_reads = true` (`/health` and
//! `/metrics` stay open); `/health` answers from the health monitor's last
//! round; `POST /api/events` refuses the streams the node writes itself.

mod support;

use std::time::Duration;

use mabeam_node::client::{request, send};
use support::{WAIT, start, token};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Reads what the server sends until it closes (bounded).
async fn read_all(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut buf))
        .await
        .expect("the server answers or closes in time")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// A config file in `dir` with `[http]` lines.
fn config(dir: &std::path::Path, http: &str) -> String {
    let path = dir.join("node.toml");
    std::fs::write(&path, format!("[http]\n{http}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]).await;
    let mut stream = TcpStream::connect(&node.addr).await.unwrap();
    // Two megabytes announced, none sent: the answer must not wait for them.
    stream
        .write_all(
            b"POST /api/events HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n\
              Content-Length: 2000000\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut head))
        .await
        .expect("an answer before the body")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    node.kill().await;
}

#[tokio::test]
async fn a_client_slow_with_its_headers_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]).await;
    let mut stream = TcpStream::connect(&node.addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: node\r\n")
        .await
        .unwrap();
    // The default header timeout (10 s) closes it; WAIT bounds the test.
    read_all(&mut stream).await;
    node.kill().await;
}

#[tokio::test]
async fn a_request_past_its_timeout_is_408() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "request_timeout_ms = 300");
    let node = start(&dir.path().join("data"), &["--config", &file]).await;
    let token = token(&dir.path().join("data"));
    // A long poll for an event that never comes.
    let reply = request(
        &node.addr,
        "GET",
        "/api/events?after=1000000&wait_ms=30000",
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 408, "{}", reply.body);
    node.kill().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_to_be_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "max_connections = 2");
    let node = start(&dir.path().join("data"), &["--config", &file]).await;
    let first = TcpStream::connect(&node.addr).await.unwrap();
    let _second = TcpStream::connect(&node.addr).await.unwrap();
    let mut third = tokio::spawn({
        let addr = node.addr.clone();
        async move { request(&addr, "GET", "/health", None).await }
    });
    // Both connections held and idle: the third is not served meanwhile.
    let waited = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(waited.is_err(), "served past the cap: {waited:?}");
    drop(first);
    let reply = tokio::time::timeout(WAIT, third)
        .await
        .expect("served once a connection closes")
        .unwrap()
        .unwrap();
    assert_eq!(reply.status, 200);
    node.kill().await;
}

#[tokio::test]
async fn api_reads_need_the_token_and_probes_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]).await;
    let token = token(dir.path());
    for path in ["/api/tree", "/api/agents", "/api/events"] {
        let reply = request(&node.addr, "GET", path, None).await.unwrap();
        assert_eq!(reply.status, 401, "{path}: {}", reply.body);
        assert!(reply.body.contains("9101"), "{}", reply.body);
        let reply = request(&node.addr, "GET", path, Some(&token))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    for path in ["/health", "/metrics"] {
        let reply = request(&node.addr, "GET", path, None).await.unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    node.kill().await;

    let dir = tempfile::tempdir().unwrap();
    let file = config(dir.path(), "public_reads = true");
    let node = start(&dir.path().join("data"), &["--config", &file]).await;
    let reply = request(&node.addr, "GET", "/api/tree", None).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = send(
        &node.addr,
        "POST",
        "/api/events",
        None,
        Some(r#"{"stream": "orders", "kind": "placed"}"#),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 401, "mutations still need it");
    node.kill().await;
}

#[tokio::test]
async fn health_answers_from_the_monitors_last_round() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]).await;
    let reply = request(&node.addr, "GET", "/health", None).await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let health: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    let round = health["checked_at_unix_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no round in {health}"));
    assert!(round > 0);
    assert!(!health["services"].as_array().unwrap().is_empty());
    node.kill().await;
}

#[tokio::test]
async fn events_on_the_nodes_own_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]).await;
    let token = token(dir.path());
    for stream in [
        "config",
        "agent:w-1",
        "agents",
        "coordination.decisions",
        "economics.auctions",
    ] {
        let body = format!(r#"{{"stream": "{stream}", "kind": "config_changed", "data": {{}}}}"#);
        let reply = send(&node.addr, "POST", "/api/events", Some(&token), Some(&body))
            .await
            .unwrap();
        assert_eq!(reply.status, 403, "{stream}: {}", reply.body);
        assert!(reply.body.contains("9114"), "{}", reply.body);
    }
    let reply = send(
        &node.addr,
        "POST",
        "/api/events",
        Some(&token),
        Some(r#"{"stream": "configurations", "kind": "noted"}"#),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 201, "{}", reply.body);
    node.kill().await;
}

/// `mabeam tree` reads the tree with the token from the node's data
/// directory (reads of `/api/*` need it).
#[tokio::test]
async fn mabeam_tree_reads_with_the_nodes_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]).await;
    let output = tokio::time::timeout(
        WAIT,
        support::mabeam()
            .args(["tree", "--http", &node.addr, "--data-dir"])
            .arg(dir.path())
            .output(),
    )
    .await
    .expect("mabeam tree answers in time")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("foundation [application] running"),
        "{stdout}"
    );
    node.kill().await;
}
