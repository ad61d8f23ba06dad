//! Faults on request through the API, as the soak uses them: an agent
//! crashed (`counter.crash`), killed (`POST /api/agents/{id}/kill`) and
//! passivated (`POST /api/agents/{id}/passivate`) keeps its address and
//! its count (its checkpoint); each needs the token, and an unknown agent
//! is a typed 404. Framework-level refusals (no route, a method the route
//! does not take, a path parameter that is not UTF-8) are typed too.

use std::time::Duration;

use mabeam_node::{Node, NodeConfig, client::send};
use mabeam_supervision_core::AgentStatus;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

async fn node() -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data_dir: dir.path().join("data"),
        http: "127.0.0.1:0".parse().unwrap(),
        ..NodeConfig::default()
    };
    (Node::start(config).await.unwrap(), dir)
}

/// A request over loopback; its status and JSON body.
async fn call(
    node: &Node,
    method: &str,
    path: &str,
    token: bool,
    body: Option<&str>,
) -> (u16, Value) {
    let addr = node.addr().to_string();
    let token = token.then(|| node.token());
    let reply = tokio::time::timeout(WAIT, send(&addr, method, path, token, body))
        .await
        .expect("the node answers")
        .unwrap();
    (
        reply.status,
        serde_json::from_str(&reply.body).unwrap_or(Value::Null),
    )
}

async fn count(node: &Node, id: &str) -> Value {
    let (status, reply) = call(
        node,
        "POST",
        &format!("/api/agents/{id}/ask"),
        true,
        Some(r#"{"protocol": "counter.get"}"#),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply["reply"]["count"].clone()
}

fn restarts(node: &Node, id: &str) -> u32 {
    let registry = node
        .system()
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    registry.details(id).unwrap().restarts
}

/// Waits until agent `id` runs again after its incarnation ended.
async fn back_to_running(changes: &mut mabeam_supervision_core::AgentStatusChanges, id: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            let change = changes.recv().await.unwrap();
            if change.id.as_str() == id && change.to == AgentStatus::Running {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{id} did not run again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_killed_and_passivated_agents_keep_their_count() {
    let (node, _dir) = node().await;
    let registry = node
        .system()
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    let (status, _) = call(
        &node,
        "POST",
        "/api/agents",
        true,
        Some(r#"{"kind": "counter", "id": "c"}"#),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &node,
        "POST",
        "/api/agents/c/ask",
        true,
        Some(r#"{"protocol": "counter.add", "body": {"by": 5}}"#),
    )
    .await;
    assert_eq!(status, 200);

    // A crash on request: the ask fails, the agent restarts with its count.
    let mut changes = registry.subscribe();
    let (status, crashed) = call(
        &node,
        "POST",
        "/api/agents/c/ask",
        true,
        Some(r#"{"protocol": "counter.crash"}"#),
    )
    .await;
    assert_eq!(
        (status, crashed["code"].as_u64()),
        (409, Some(9108)),
        "{crashed}"
    );
    back_to_running(&mut changes, "c").await;
    assert_eq!(restarts(&node, "c"), 1);
    assert_eq!(count(&node, "c").await, 5);

    // A kill: answered once the incarnation is gone; restarted likewise.
    let (status, _) = call(&node, "POST", "/api/agents/c/kill", false, None).await;
    assert_eq!(status, 401);
    assert_eq!(restarts(&node, "c"), 1, "a refused kill changed nothing");
    let (status, killed) = call(&node, "POST", "/api/agents/c/kill", true, None).await;
    assert_eq!(status, 200, "{killed}");
    assert_eq!(killed["killed"], true);
    back_to_running(&mut changes, "c").await;
    assert_eq!(restarts(&node, "c"), 2);
    assert_eq!(count(&node, "c").await, 5);

    // Passivation: no process, state and address kept; a second is refused.
    let (status, _) = call(&node, "POST", "/api/agents/c/passivate", true, None).await;
    assert_eq!(status, 200);
    assert!(registry.details("c").unwrap().passivated);
    let (status, again) = call(&node, "POST", "/api/agents/c/passivate", true, None).await;
    assert_eq!(
        (status, again["code"].as_u64()),
        (409, Some(9108)),
        "{again}"
    );
    let (status, no_process) = call(&node, "POST", "/api/agents/c/kill", true, None).await;
    assert_eq!(
        (status, no_process["code"].as_u64()),
        (409, Some(9108)),
        "{no_process}"
    );
    assert_eq!(
        count(&node, "c").await,
        5,
        "a passivated agent wakes on a message"
    );

    for path in ["/api/agents/nobody/kill", "/api/agents/nobody/passivate"] {
        let (status, missing) = call(&node, "POST", path, true, None).await;
        assert_eq!(
            (status, missing["code"].as_u64()),
            (404, Some(9107)),
            "{path}: {missing}"
        );
    }
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_refusals_are_typed() {
    let (node, _dir) = node().await;
    for (method, path, status, code) in [
        ("GET", "/api/nothing", 404, 9151),
        ("PUT", "/api/agents", 405, 9152),
        ("POST", "/api/agents/%FF/kill", 400, 9150),
    ] {
        let (got, error) = call(&node, method, path, true, None).await;
        assert_eq!(
            (got, error["code"].as_u64()),
            (status, Some(code)),
            "{method} {path}: {error}"
        );
        assert!(error["message"].is_string());
    }
    node.stop().await.unwrap();
}
