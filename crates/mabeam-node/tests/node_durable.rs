//! Issue 22: what the node acknowledged survives `kill -9`. Clients
//! register counters and add to them while the node binary is killed
//! (SIGKILL); started again on the same data directory, every agent whose
//! registration was acknowledged exists, each counter holds at least its
//! last acknowledged count, a deregistered agent stays gone and a
//! passivated one comes back passivated and wakes on its first message.

#![cfg(unix)]

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use mabeam_node::client::{request, send};
use serde_json::{Value, json};
use support::{Running, WAIT, postgres_url, start, token};

use tokio::io::{AsyncBufReadExt, BufReader};

async fn call(
    node: &str,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    match send(node, method, path, Some(token), body.as_deref()).await {
        Ok(reply) => (
            reply.status,
            serde_json::from_str(&reply.body).unwrap_or(Value::Null),
        ),
        Err(_) => (0, Value::Null), // the node is gone
    }
}

/// Reads the node's log until `line` appears (bounded).
async fn wait_for_log(node: &mut Running, needle: &str) {
    let mut lines = BufReader::new(&mut node.stderr).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                return;
            }
        }
        panic!("the node's log ended before {needle:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in the node's log"));
}

/// One client: registers counters and adds to each, recording what the
/// node acknowledged, until the node is gone.
async fn client(
    addr: String,
    token: String,
    client: usize,
    acked: Arc<Mutex<BTreeMap<String, i64>>>,
    progress: tokio::sync::mpsc::UnboundedSender<()>,
) {
    for i in 0.. {
        let id = format!("c{client}-{i}");
        let body = json!({"kind": "counter", "id": id});
        let (status, _) = call(&addr, &token, "POST", "/api/agents", Some(body)).await;
        if status != 201 {
            return;
        }
        acked.lock().unwrap().insert(id.clone(), 0);
        for _ in 0..3 {
            let add = json!({"protocol": "counter.add", "body": {"by": 1}});
            let (status, reply) = call(
                &addr,
                &token,
                "POST",
                &format!("/api/agents/{id}/ask"),
                Some(add),
            )
            .await;
            if status != 200 {
                return;
            }
            let count = reply["reply"]["count"].as_i64().unwrap();
            acked.lock().unwrap().insert(id.clone(), count);
        }
        if progress.send(()).is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_agents_and_counts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]).await;
    let token = token(dir.path());
    let addr = node.addr.clone();

    // Before the clients: one agent deregistered, one passivated.
    for id in ["gone", "sleeper"] {
        let body = json!({"kind": "counter", "id": id, "args": {"start": 40}});
        let (status, reply) = call(&addr, &token, "POST", "/api/agents", Some(body)).await;
        assert_eq!(status, 201, "{reply}");
    }
    let add = json!({"protocol": "counter.add", "body": {"by": 2}});
    let (status, _) = call(&addr, &token, "POST", "/api/agents/sleeper/ask", Some(add)).await;
    assert_eq!(status, 200);
    let (status, _) = call(&addr, &token, "POST", "/api/agents/sleeper/passivate", None).await;
    assert_eq!(status, 200);
    let (status, _) = call(&addr, &token, "DELETE", "/api/agents/gone", None).await;
    assert_eq!(status, 200);

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let (progress, mut done) = tokio::sync::mpsc::unbounded_channel();
    let clients: Vec<_> = (0..4)
        .map(|n| {
            tokio::spawn(client(
                addr.clone(),
                token.clone(),
                n,
                acked.clone(),
                progress.clone(),
            ))
        })
        .collect();
    // Killed while the clients are busy, after some agents are through.
    tokio::time::timeout(WAIT, async {
        for _ in 0..24 {
            done.recv().await.unwrap();
        }
    })
    .await
    .expect("clients made progress");
    node.kill().await;
    for client in clients {
        tokio::time::timeout(WAIT, client)
            .await
            .expect("clients stop once the node is gone")
            .unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 24);

    let mut node = start(dir.path(), &[]).await;
    let addr = node.addr.clone();
    // It serves at once; /health says how far recovery is.
    let health = request(&addr, "GET", "/health", None).await.unwrap();
    let health: Value = serde_json::from_str(&health.body).unwrap();
    let state = health["recovery"]["state"].as_str().unwrap().to_owned();
    assert!(state == "recovering" || state == "done", "{health}");
    wait_for_log(&mut node, "agent recovery: done").await;
    let health = request(&addr, "GET", "/health", None).await.unwrap();
    let health: Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(health["recovery"]["state"], "done", "{health}");
    assert_eq!(health["recovery"]["failed"], 0, "{health}");
    assert!(health["recovery"]["restored"].as_u64().unwrap() > acked.len() as u64);

    for (id, count) in &acked {
        let get = json!({"protocol": "counter.get"});
        let (status, reply) = call(
            &addr,
            &token,
            "POST",
            &format!("/api/agents/{id}/ask"),
            Some(get),
        )
        .await;
        assert_eq!(status, 200, "{id}: {reply}");
        let now = reply["reply"]["count"].as_i64().unwrap();
        assert!(now >= *count, "{id}: {now} < acknowledged {count}");
    }
    let (status, _) = call(
        &addr,
        &token,
        "POST",
        "/api/agents/gone/ask",
        Some(json!({"protocol": "counter.get"})),
    )
    .await;
    assert_eq!(status, 404, "a deregistered agent stays gone");

    let (_, list) = call(&addr, &token, "GET", "/api/agents?limit=1000", None).await;
    let sleeper = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "sleeper")
        .cloned()
        .expect("the passivated agent is back");
    assert_eq!(sleeper["passivated"], true, "{sleeper}");
    let get = json!({"protocol": "counter.get"});
    let (status, reply) = call(&addr, &token, "POST", "/api/agents/sleeper/ask", Some(get)).await;
    assert_eq!(status, 200);
    assert_eq!(reply["reply"]["count"], 42, "woken with its checkpoint");
    node.kill().await;
}

/// A config file in `dir` putting the node's stores on `schema`.
fn postgres_config(dir: &Path, schema: &str) -> PathBuf {
    let path = dir.join("node.toml");
    let url = postgres_url();
    std::fs::write(
        &path,
        format!("[store]\nurl = \"{url}\"\nschema = \"{schema}\"\n"),
    )
    .unwrap();
    path
}

/// Issue 23: with `[store] url` the agent table is on PostgreSQL, not in
/// the data directory: a node killed and started again on another, empty
/// data directory brings the acknowledged agent back with its count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_agents_live_in_the_shared_store_not_the_data_directory() {
    let schema = format!(
        "node_durable_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let first = tempfile::tempdir().unwrap();
    let config = postgres_config(first.path(), &schema);
    let node = start(first.path(), &["--config", config.to_str().unwrap()]).await;
    let token_a = token(first.path());
    let body = json!({"kind": "counter", "id": "pg-counter"});
    let (status, reply) = call(&node.addr, &token_a, "POST", "/api/agents", Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    let add = json!({"protocol": "counter.add", "body": {"by": 5}});
    let (status, reply) = call(
        &node.addr,
        &token_a,
        "POST",
        "/api/agents/pg-counter/ask",
        Some(add),
    )
    .await;
    assert_eq!(
        (status, &reply["reply"]["count"]),
        (200, &json!(5)),
        "{reply}"
    );
    node.kill().await;
    assert!(
        !first.path().join("agents.db").exists(),
        "no SQLite agent table beside a PostgreSQL store"
    );

    let second = tempfile::tempdir().unwrap();
    let config = postgres_config(second.path(), &schema);
    let mut node = start(second.path(), &["--config", config.to_str().unwrap()]).await;
    wait_for_log(&mut node, "agent recovery: done").await;
    let get = json!({"protocol": "counter.get"});
    let (status, reply) = call(
        &node.addr,
        &token(second.path()),
        "POST",
        "/api/agents/pg-counter/ask",
        Some(get),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["reply"]["count"], 5, "{reply}");
    node.kill().await;
}
