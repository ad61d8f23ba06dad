//! Issue 24: nodes in a cluster, as real `mabeam` processes on free
//! loopback ports (each killed when dropped, even when a test fails).
//! `--join` without a shared store is refused and says so; three nodes
//! joined through the first (membership tests lift the store check with
//! `cluster.test_only_without_shared_store`) see each other up on
//! `GET /api/cluster` and `/metrics`; `kill -9` of one is `down` on the
//! others within 2 s; 300 agents started through the three nodes answer
//! from each node; any node lists every agent with its `node` and starts
//! one on the member a request names, or else on the member its id
//! hashes to; a second node under a taken name leaves the cluster
//! unharmed.
//!
//! The other processes are observed over HTTP only: the waits poll
//! `GET /api/cluster` (every 20 ms, bounded), the one observation channel
//! a separate process offers.

mod support;

use std::{
    ffi::OsStr,
    path::Path,
    time::{Duration, Instant},
};

use mabeam_node::client::{request, send};
use mabeam_supervision_core::{AgentId, cluster::rendezvous_owner};
use serde_json::Value;
use support::{Running, WAIT, postgres_url, run_to_exit, start, token};

/// `mabeam run` for `node` on a cluster address the node picks (port 0:
/// a port picked here and bound later could be taken meanwhile by the
/// many connections of tests running beside), joining `join`.
async fn node(dir: &Path, name: &str, join: Option<&str>) -> (Running, String) {
    node_on(dir, name, join, None).await
}

/// [`node`] with its stores on PostgreSQL schema `store` of the tests'
/// server (the shared store a real cluster runs on), or without a shared
/// store (membership alone) when `None`.
async fn node_on(
    dir: &Path,
    name: &str,
    join: Option<&str>,
    store: Option<&str>,
) -> (Running, String) {
    let listen = "127.0.0.1:0";
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join(format!("{name}.toml"));
    let cookie = "[cluster]\ncookie = \"0123456789abcdef0123456789abcdef\"\n";
    let text = match store {
        Some(schema) => format!(
            "{cookie}[store]\nurl = \"{}\"\nschema = \"{schema}\"\n",
            postgres_url()
        ),
        None => format!("{cookie}test_only_without_shared_store = true\n"),
    };
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut args = vec!["--config", &config, "--node", name, "--listen", listen];
    if let Some(seed) = join {
        args.extend(["--join", seed]);
    }
    let running = start(&data, &args).await;
    let token = token(&data);
    (running, token)
}

/// Nodes a, b and c (b and c joining a), stores as in [`node_on`], once
/// each sees all three `up`; and a's cluster address.
async fn three_nodes_up(dir: &Path, store: Option<&str>) -> ([(Running, String); 3], String) {
    let (mut a, a_token) = node_on(dir, "a@local", None, store).await;
    let a_listen = listen_addr(&mut a).await;
    let b = node_on(dir, "b@local", Some(&a_listen), store).await;
    let c = node_on(dir, "c@local", Some(&a_listen), store).await;
    let nodes = [(a, a_token), b, c];
    let all_up = |view: &[(String, String)]| {
        ["a@local", "b@local", "c@local"]
            .iter()
            .all(|n| has(view, n, "up"))
    };
    for (running, token) in &nodes {
        until(&running.addr, token, WAIT, "three members up", all_up).await;
    }
    (nodes, a_listen)
}

/// The cluster address `node` listens on, from the line its log writes
/// once it listens (`cluster listening ... cluster=ADDR`).
async fn listen_addr(node: &mut Running) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(&mut node.stderr).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if !line.contains("cluster listening") {
                continue;
            }
            let addr = line
                .split_whitespace()
                .find_map(|field| field.strip_prefix("cluster="))
                .unwrap_or_else(|| panic!("no cluster= in {line:?}"));
            return addr.to_owned();
        }
        panic!("the node's log ended before it listened");
    })
    .await
    .unwrap_or_else(|_| panic!("no \"cluster listening\" in the node's log within {WAIT:?}"))
}

/// The node's view of its cluster: member name -> state.
async fn members(addr: &str, token: &str) -> Vec<(String, String)> {
    let reply = tokio::time::timeout(WAIT, request(addr, "GET", "/api/cluster", Some(token)))
        .await
        .expect("the node answers in time")
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let view: Value = serde_json::from_str(&reply.body).unwrap();
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["node"].as_str().unwrap().to_owned(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Polls `addr`'s view until `done` holds; fails with the last view after
/// `within`.
async fn until(
    addr: &str,
    token: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&[(String, String)]) -> bool,
) {
    let started = Instant::now();
    loop {
        let view = members(addr, token).await;
        if done(&view) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{what} not seen by {addr} within {within:?}: {view:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn has(view: &[(String, String)], node: &str, state: &str) -> bool {
    view.iter().any(|(n, s)| n == node && s == state)
}

/// A node that joins another without a shared store is refused at start,
/// with the reason and the flag to fix it, before it binds anything.
#[tokio::test]
async fn joining_without_a_shared_store_is_refused_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, stderr) = run_to_exit(&[
        OsStr::new("run"),
        OsStr::new("--http"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--join"),
        OsStr::new("127.0.0.1:9"),
    ])
    .await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("error 9021"), "{stderr}");
    assert!(
        stderr.contains("needs a shared store") && stderr.contains("--store postgres://"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing is made");
}

/// Three nodes joined through the first: each sees all three up, with
/// their HTTP addresses; `/metrics` shows them. `kill -9` of the third:
/// the two others see it down within 2 s.
#[tokio::test]
async fn three_nodes_see_each_other_and_a_killed_one_is_down_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (b, b_token), (c, _)], _) = three_nodes_up(dir.path(), None).await;
    let reply = request(&a.addr, "GET", "/api/cluster", Some(&a_token))
        .await
        .unwrap();
    let view: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(view["node"], "a@local");
    let c_record = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == "c@local")
        .unwrap()
        .clone();
    assert_eq!(c_record["http"], c.addr.as_str(), "{c_record}");
    assert!(c_record["generation"].as_u64().unwrap() > 0, "{c_record}");
    let metrics = request(&a.addr, "GET", "/metrics", None).await.unwrap();
    assert!(
        metrics
            .body
            .contains(r#"mabeam_cluster_member{member="c@local",state="up"} 1"#),
        "{}",
        metrics.body
    );

    let killed = Instant::now();
    let _log = c.kill().await;
    let two = Duration::from_secs(2);
    for (running, token) in [(&a, &a_token), (&b, &b_token)] {
        until(&running.addr, token, two, "c down", |view| {
            has(view, "c@local", "down")
        })
        .await;
    }
    let took = killed.elapsed();
    assert!(took < two, "down after {took:?}");
    // The survivors stay up in each other's view.
    let view = members(&a.addr, &a_token).await;
    assert!(has(&view, "b@local", "up"), "{view:?}");
    drop((a, b));
}

/// 300 agents started through the three nodes (100 each, where the
/// request lands): each answers an ask sent to any node.
#[tokio::test]
async fn three_hundred_agents_started_through_three_nodes_answer_from_each_node() {
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (b, b_token), (c, c_token)], _) = three_nodes_up(dir.path(), None).await;
    let nodes = [(&a, &a_token), (&b, &b_token), (&c, &c_token)];
    for i in 0..300 {
        let (running, token) = nodes[i % 3];
        let body = format!(r#"{{"kind": "counter", "id": "agent-{i}"}}"#);
        let reply = tokio::time::timeout(
            WAIT,
            send(
                &running.addr,
                "POST",
                "/api/agents",
                Some(token),
                Some(&body),
            ),
        )
        .await
        .expect("the node answers in time")
        .unwrap();
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    // Each node reaches every agent: its own directly, the others' over
    // the node connections.
    let asks = nodes.iter().map(|(running, token)| async move {
        for i in 0..300 {
            let path = format!("/api/agents/agent-{i}/ask");
            let reply = tokio::time::timeout(
                WAIT,
                send(
                    &running.addr,
                    "POST",
                    &path,
                    Some(token),
                    Some(r#"{"protocol": "counter.get"}"#),
                ),
            )
            .await
            .expect("the node answers in time")
            .unwrap();
            assert_eq!(
                reply.status, 200,
                "agent-{i} from {}: {}",
                running.addr, reply.body
            );
            let answer: Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(answer["reply"]["count"], 0, "{answer}");
        }
    });
    futures::future::join_all(asks).await;
    // An id no node holds is still a 404.
    let reply = send(
        &a.addr,
        "POST",
        "/api/agents/nobody/ask",
        Some(&a_token),
        Some(r#"{"protocol": "counter.get"}"#),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 404, "{}", reply.body);
    drop((a, b, c));
}

/// `GET /api/agents` on `addr` (`query` appended): the listing.
async fn list(addr: &str, token: &str, query: &str) -> Value {
    let path = format!("/api/agents?limit=1000{query}");
    let reply = tokio::time::timeout(WAIT, request(addr, "GET", &path, Some(token)))
        .await
        .expect("the node answers in time")
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_str(&reply.body).unwrap()
}

/// `POST /api/agents` on `addr` with `body`: status and answer.
async fn post_agent(addr: &str, token: &str, body: &str) -> (u16, Value) {
    let reply = tokio::time::timeout(
        WAIT,
        send(addr, "POST", "/api/agents", Some(token), Some(body)),
    )
    .await
    .expect("the node answers in time")
    .unwrap();
    (reply.status, serde_json::from_str(&reply.body).unwrap())
}

/// Agents started through one node on the members `node` names: each
/// lives there (`scope=local` on that member lists it), every node lists
/// all of them with their `node`, and each answers from any node. A
/// refusal on the named member comes back with its status and code; a
/// node that is not a member is refused with 503 and code 9140. Without
/// a `node`, an agent lives on the member its id hashes to.
#[tokio::test]
async fn any_node_lists_every_agent_and_starts_one_on_the_member_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (b, b_token), (c, c_token)], _) = three_nodes_up(dir.path(), None).await;
    let nodes = [
        ("a@local", &a, &a_token),
        ("b@local", &b, &b_token),
        ("c@local", &c, &c_token),
    ];
    // Thirty agents, all through a, placed on the three in turn.
    for i in 0..30 {
        let on = nodes[i % 3].0;
        let body = format!(r#"{{"kind": "counter", "id": "placed-{i:02}", "node": "{on}"}}"#);
        let (status, record) = post_agent(&a.addr, &a_token, &body).await;
        assert_eq!(status, 201, "{record}");
        assert_eq!(record["id"], format!("placed-{i:02}"), "{record}");
        assert_eq!(record["node"], on, "{record}");
    }
    // A generated id on another member names that member.
    let (status, record) = post_agent(
        &a.addr,
        &a_token,
        r#"{"kind": "counter", "node": "c@local"}"#,
    )
    .await;
    assert_eq!(status, 201, "{record}");
    assert_eq!(record["node"], "c@local", "{record}");
    let generated = record["id"].as_str().unwrap().to_owned();
    assert!(generated.contains("c@local"), "{generated}");

    for (name, running, token) in nodes {
        let all = list(&running.addr, token, "").await;
        assert_eq!(all["total"], 31, "{name}: {all}");
        assert_eq!(all["unreachable"], serde_json::json!([]), "{name}: {all}");
        for agent in all["agents"].as_array().unwrap() {
            let id = agent["id"].as_str().unwrap();
            let expected = match id.strip_prefix("placed-") {
                Some(i) => nodes[i.parse::<usize>().unwrap() % 3].0,
                None => "c@local",
            };
            assert_eq!(agent["node"], expected, "{name}: {agent}");
        }
        let local = list(&running.addr, token, "&scope=local").await;
        let expected = if name == "c@local" { 11 } else { 10 };
        assert_eq!(local["total"], expected, "{name}: {local}");
        assert!(
            local["agents"]
                .as_array()
                .unwrap()
                .iter()
                .all(|agent| agent["node"] == name),
            "{name}: {local}"
        );
        // Each answers from this node.
        for id in (0..30)
            .map(|i| format!("placed-{i:02}"))
            .chain([generated.clone()])
        {
            let reply = tokio::time::timeout(
                WAIT,
                send(
                    &running.addr,
                    "POST",
                    &format!("/api/agents/{id}/ask"),
                    Some(token),
                    Some(r#"{"protocol": "counter.get"}"#),
                ),
            )
            .await
            .expect("the node answers in time")
            .unwrap();
            assert_eq!(reply.status, 200, "{id} from {name}: {}", reply.body);
        }
    }

    // The named member's refusal, as it gives it: the id exists there.
    let (status, error) = post_agent(
        &a.addr,
        &a_token,
        r#"{"kind": "counter", "id": "placed-01", "node": "b@local"}"#,
    )
    .await;
    assert_eq!(status, 409, "{error}");
    assert_eq!(error["code"], 9106, "{error}");
    // An unknown kind is refused there too, and nothing is started.
    let (status, error) = post_agent(
        &a.addr,
        &a_token,
        r#"{"kind": "nonsense", "id": "never", "node": "b@local"}"#,
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["code"], 9104, "{error}");
    // A node that is no member.
    let (status, error) = post_agent(
        &a.addr,
        &a_token,
        r#"{"kind": "counter", "id": "never", "node": "nobody@local"}"#,
    )
    .await;
    assert_eq!(status, 503, "{error}");
    assert_eq!(error["code"], 9140, "{error}");
    assert_eq!(error["error"], "node_unreachable", "{error}");
    assert_eq!(list(&b.addr, &b_token, "").await["total"], 31);
    // Without a `node`, each id goes to the member it hashes to over the
    // live members, wherever it was started through; a generated id too.
    let names = ["a@local", "b@local", "c@local"];
    let mut placed_on = std::collections::HashMap::<String, usize>::new();
    for i in 0..30 {
        let id = format!("hashed-{i:02}");
        let body = format!(r#"{{"kind": "counter", "id": "{id}"}}"#);
        let (status, record) = post_agent(&b.addr, &b_token, &body).await;
        assert_eq!(status, 201, "{record}");
        let owner = rendezvous_owner(&AgentId::new(id.as_str()), names).unwrap();
        assert_eq!(record["node"], owner, "{record}");
        *placed_on.entry(owner.to_owned()).or_default() += 1;
    }
    assert_eq!(placed_on.len(), 3, "spread over the three: {placed_on:?}");
    let (status, record) = post_agent(&c.addr, &c_token, r#"{"kind": "counter"}"#).await;
    assert_eq!(status, 201, "{record}");
    let id = record["id"].as_str().unwrap();
    assert_eq!(
        record["node"],
        rendezvous_owner(&AgentId::new(id), names).unwrap(),
        "{record}"
    );
    for (name, running, token) in nodes {
        let local = list(&running.addr, token, "&scope=local").await;
        let hashed = local["agents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|agent| agent["id"].as_str().unwrap().starts_with("hashed-"))
            .count();
        assert_eq!(
            hashed,
            placed_on.get(name).copied().unwrap_or(0),
            "{name}: {local}"
        );
    }
    assert_eq!(list(&a.addr, &a_token, "").await["total"], 62);
    // A bad scope is refused.
    let reply = request(
        &a.addr,
        "GET",
        "/api/agents?scope=everywhere",
        Some(&a_token),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.body);
    drop((a, b, c));
}

/// `GET /api/cluster`'s generation of `node` as `addr` sees it, if listed.
async fn generation_of(addr: &str, token: &str, node: &str) -> Option<(u64, String)> {
    let reply = tokio::time::timeout(WAIT, request(addr, "GET", "/api/cluster", Some(token)))
        .await
        .expect("the node answers in time")
        .unwrap();
    let view: Value = serde_json::from_str(&reply.body).unwrap();
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["node"] == node)
        .map(|m| {
            (
                m["generation"].as_u64().unwrap(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
}

/// A second node started under a live node's name (b@local) joins a:
/// the cluster is unharmed. c, joined through the twin alone, comes up
/// on a (so a has had the twin's gossip), yet a still holds the first
/// b's generation up, and an agent on the first b answers through a.
#[tokio::test]
async fn a_second_node_under_a_taken_name_leaves_the_cluster_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, a_token) = node(dir.path(), "a@local", None).await;
    let a_listen = listen_addr(&mut a).await;
    let (b, b_token) = node(dir.path(), "b@local", Some(&a_listen)).await;
    until(&a.addr, &a_token, WAIT, "b up", |v| has(v, "b@local", "up")).await;
    let (b_generation, _) = generation_of(&b.addr, &b_token, "b@local").await.unwrap();
    let (status, record) = post_agent(
        &a.addr,
        &a_token,
        r#"{"kind": "counter", "id": "on-b", "node": "b@local"}"#,
    )
    .await;
    assert_eq!(status, 201, "{record}");

    let twin_dir = dir.path().join("twin");
    std::fs::create_dir_all(&twin_dir).unwrap();
    let (mut twin, _) = node(&twin_dir, "b@local", Some(&a_listen)).await;
    let twin_listen = listen_addr(&mut twin).await;
    let (c, _c_token) = node(dir.path(), "c@local", Some(&twin_listen)).await;
    until(&a.addr, &a_token, WAIT, "c up", |v| has(v, "c@local", "up")).await;

    assert_eq!(
        generation_of(&a.addr, &a_token, "b@local").await,
        Some((b_generation, "up".to_owned())),
        "a holds the first b"
    );
    let reply = tokio::time::timeout(
        WAIT,
        send(
            &a.addr,
            "POST",
            "/api/agents/on-b/ask",
            Some(&a_token),
            Some(r#"{"protocol": "counter.get"}"#),
        ),
    )
    .await
    .expect("the node answers in time")
    .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    drop((a, b, twin, c));
}

/// A schema no other test uses.
fn fresh_schema(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{what}_{}_{nanos}", std::process::id())
}

/// Every claim in `schema`'s ownership table: agent -> (node, generation).
async fn claims(schema: &str) -> std::collections::BTreeMap<String, (String, i64)> {
    let (client, connection) = tokio_postgres::connect(&postgres_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the tests' PostgreSQL");
    let driver = tokio::spawn(connection);
    let rows = client
        .query(
            &format!(
                "SELECT agent, node, generation FROM {schema}.agent_owners WHERE node IS NOT NULL"
            ),
            &[],
        )
        .await
        .expect("read the claims");
    drop(client);
    let _ = driver.await;
    rows.iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect()
}

/// An ask of `protocol` (with `body`) to agent `id` through `addr`:
/// status and answer.
async fn ask(addr: &str, token: &str, id: &str, protocol: &str, body: Value) -> (u16, Value) {
    let request = serde_json::json!({"protocol": protocol, "body": body});
    post(addr, token, &format!("/api/agents/{id}/ask"), request).await
}

/// Failover on a shared store (PostgreSQL): thirty counters placed on c
/// (each claimed by c in the store), added to through a; `kill -9` of c.
/// c is down on a and b within 2 s; within 3 s of that every counter
/// answers through a and through b with its acknowledged count, started
/// again from its checkpoint by the survivor its id hashes to over {a, b}.
/// Never two incarnations: each agent's claim names one survivor, and
/// that survivor alone holds it. c started again (a new generation, on a
/// fresh data directory, the same store) runs none of them: its recovery
/// finds them claimed by others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_agents_answer_from_survivors_with_their_checkpoints() {
    let schema = fresh_schema("failover");
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (b, b_token), (c, _)], a_listen) =
        three_nodes_up(dir.path(), Some(&schema)).await;
    let ids: Vec<String> = (0..30).map(|i| format!("fo-{i:02}")).collect();
    let mut acked = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let body = format!(r#"{{"kind": "counter", "id": "{id}", "node": "c@local"}}"#);
        let (status, record) = post_agent(&a.addr, &a_token, &body).await;
        assert_eq!(status, 201, "{record}");
        let by = i as i64 + 1;
        for _ in 0..2 {
            let (status, answer) = ask(
                &a.addr,
                &a_token,
                id,
                "counter.add",
                serde_json::json!({ "by": by }),
            )
            .await;
            assert_eq!(status, 200, "{answer}");
        }
        acked.push(2 * by);
    }
    let before = claims(&schema).await;
    assert!(
        ids.iter().all(|id| before[id].0 == "c@local"),
        "claimed by c: {before:?}"
    );

    let killed = Instant::now();
    let _log = c.kill().await;
    for (running, token) in [(&a, &a_token), (&b, &b_token)] {
        until(
            &running.addr,
            token,
            Duration::from_secs(2),
            "c down",
            |view| has(view, "c@local", "down"),
        )
        .await;
    }
    let down = killed.elapsed();
    assert!(down < Duration::from_secs(2), "down after {down:?}");
    let down_at = Instant::now();
    for (running, token) in [(&a, &a_token), (&b, &b_token)] {
        for (id, count) in ids.iter().zip(&acked) {
            loop {
                let (status, answer) =
                    ask(&running.addr, token, id, "counter.get", Value::Null).await;
                if status == 200 {
                    assert_eq!(answer["reply"]["count"], *count, "{id}: {answer}");
                    break;
                }
                assert!(
                    down_at.elapsed() < Duration::from_secs(3),
                    "{id} not answering through {} within 3 s of c down: {status} {answer}",
                    running.addr
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    let survivors = ["a@local", "b@local"];
    let after = claims(&schema).await;
    let held = held_by([("a@local", &a, &a_token), ("b@local", &b, &b_token)]).await;
    for id in &ids {
        let (owner, _) = &after[id];
        let expected = rendezvous_owner(&AgentId::new(id.as_str()), survivors).unwrap();
        assert_eq!(
            owner, expected,
            "{id}: claimed by the survivor it hashes to"
        );
        for name in survivors {
            assert_eq!(
                held[name].contains(id),
                name == owner,
                "{id} held by {name}? claims: {after:?}, held: {held:?}"
            );
        }
    }

    // c again, a new generation on the same store: it runs none of them.
    let again = dir.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    let (c2, c2_token) = node_on(&again, "c@local", Some(&a_listen), Some(&schema)).await;
    until(&c2.addr, &c2_token, WAIT, "c up again", |view| {
        has(view, "c@local", "up")
    })
    .await;
    let recovered = tokio::time::timeout(WAIT, async {
        loop {
            let reply = request(&c2.addr, "GET", "/health", Some(&c2_token))
                .await
                .unwrap();
            let health: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
            if health["recovery"]["state"] == "done" {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("c's recovery done in time");
    let local = list(&c2.addr, &c2_token, "&scope=local").await;
    assert_eq!(local["total"], 0, "{local} (health: {recovered})");
    assert_eq!(claims(&schema).await, after, "the claims unchanged");
    drop((a, b, c2));
}

/// The ids each of `nodes` holds itself (`scope=local`), by node name.
async fn held_by<'a>(
    nodes: [(&'a str, &Running, &String); 2],
) -> std::collections::HashMap<&'a str, Vec<String>> {
    let mut held = std::collections::HashMap::new();
    for (name, running, token) in nodes {
        let local = list(&running.addr, token, "&scope=local").await;
        let mine = local["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|agent| agent["id"].as_str().unwrap().to_owned())
            .collect();
        held.insert(name, mine);
    }
    held
}

/// A request with a JSON body to `path` through `addr`: status and answer.
async fn post(addr: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let body = body.to_string();
    let reply = tokio::time::timeout(WAIT, send(addr, "POST", path, Some(token), Some(&body)))
        .await
        .expect("the node answers in time")
        .unwrap();
    (
        reply.status,
        serde_json::from_str(&reply.body).unwrap_or(Value::Null),
    )
}

/// Issue 24, location transparency on a shared store: an ask or a tell
/// for an agent another member owns goes to the owner its claim names.
/// Tells through a are acknowledged (202) once c took them, so an ask
/// through b right after sees them all; a broadcast by ids reaches the
/// agents of all three nodes and names the id no one holds. `kill -9`
/// of the owner: until a survivor took the agent over, an ask answers
/// `agent_node_down` (503, 9141) at once, never "not found" (asking the
/// members in turn would find no one), then the count again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asks_and_tells_go_to_the_owner_its_claim_names() {
    let schema = fresh_schema("reach");
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (b, b_token), (c, c_token)], _) =
        three_nodes_up(dir.path(), Some(&schema)).await;
    let nodes = [
        ("a@local", &a, &a_token),
        ("b@local", &b, &b_token),
        ("c@local", &c, &c_token),
    ];
    for (name, _, _) in nodes {
        let body = format!(r#"{{"kind": "counter", "id": "on-{name}", "node": "{name}"}}"#);
        let (status, record) = post_agent(&a.addr, &a_token, &body).await;
        assert_eq!(status, 201, "{record}");
    }
    // Five tells through a to c's counter, each acknowledged by c.
    for _ in 0..5 {
        let (status, answer) = post(
            &a.addr,
            &a_token,
            "/api/agents/on-c@local/tell",
            serde_json::json!({"protocol": "counter.add", "body": {"by": 1}}),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    }
    let (status, answer) = ask(&b.addr, &b_token, "on-c@local", "counter.get", Value::Null).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reply"]["count"], 5, "{answer}");
    // A broadcast by ids spans the three nodes.
    let (status, outcome) = post(
        &b.addr,
        &b_token,
        "/api/broadcast",
        serde_json::json!({
            "ids": ["on-a@local", "on-b@local", "on-c@local", "nobody"],
            "protocol": "counter.add",
            "body": {"by": 10},
        }),
    )
    .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        outcome["accepted"],
        serde_json::json!(["on-a@local", "on-b@local", "on-c@local"]),
        "{outcome}"
    );
    assert_eq!(outcome["refused"][0]["id"], "nobody", "{outcome}");
    assert_eq!(outcome["refused"][0]["code"], 9107, "{outcome}");
    for ((name, _, _), count) in nodes.iter().zip([10, 10, 15]) {
        let (status, answer) = ask(
            &a.addr,
            &a_token,
            &format!("on-{name}"),
            "counter.get",
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["reply"]["count"], count, "{name}: {answer}");
    }
    // A tell to no agent is a 404 with its code.
    let (status, answer) = post(
        &a.addr,
        &a_token,
        "/api/agents/nobody/tell",
        serde_json::json!({"protocol": "counter.add", "body": {"by": 1}}),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(answer["code"], 9107, "{answer}");

    // A delete through a stops b's agent on b and frees its id: the same
    // id starts again on c (its claim was released), from a fresh count.
    let delete = |addr: String, token: String| async move {
        let reply = tokio::time::timeout(
            WAIT,
            request(&addr, "DELETE", "/api/agents/on-b@local", Some(&token)),
        )
        .await
        .expect("the node answers in time")
        .unwrap();
        let body: Value = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
        (reply.status, body)
    };
    let (status, answer) = delete(a.addr.clone(), a_token.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["stopped"], true, "{answer}");
    let (status, answer) = ask(&b.addr, &b_token, "on-b@local", "counter.get", Value::Null).await;
    assert_eq!(status, 404, "{answer}");
    let (status, answer) = delete(c.addr.clone(), c_token.clone()).await;
    assert_eq!(status, 404, "deleted twice: {answer}");
    assert_eq!(answer["code"], 9107, "{answer}");
    let (status, record) = post_agent(
        &a.addr,
        &a_token,
        r#"{"kind": "counter", "id": "on-b@local", "node": "c@local"}"#,
    )
    .await;
    assert_eq!(status, 201, "the id is free again: {record}");
    // a asked b for it before: a's remembered owner is stale, and the ask
    // still reaches c.
    let (status, answer) = ask(&a.addr, &a_token, "on-b@local", "counter.get", Value::Null).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reply"]["count"], 0, "{answer}");

    // The owner dies: its agent is NodeDown until taken over.
    let _log = c.kill().await;
    let killed = Instant::now();
    let mut node_down = 0;
    loop {
        let (status, answer) =
            ask(&a.addr, &a_token, "on-c@local", "counter.get", Value::Null).await;
        if status == 200 {
            assert_eq!(answer["reply"]["count"], 15, "{answer}");
            break;
        }
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["code"], 9141, "{answer}");
        assert_eq!(answer["error"], "agent_node_down", "{answer}");
        node_down += 1;
        assert!(
            killed.elapsed() < Duration::from_secs(6),
            "on-c@local not taken over within 6 s: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node_down > 0, "the first asks after the kill found c down");
    drop((a, b));
}

/// Issue 24, coordination across nodes: a vote through a among workers
/// on a, b and c counts each one's real ballot (a votes no above 10, b
/// and c yes up to 100): the majority passes, and no worker is among
/// those that gave no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_through_one_node_counts_the_agents_of_all_three() {
    let schema = fresh_schema("vote");
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (b, _), (c, _)], _) = three_nodes_up(dir.path(), Some(&schema)).await;
    for (name, up_to) in [("a@local", 10), ("b@local", 100), ("c@local", 100)] {
        let body = format!(
            r#"{{"kind": "worker", "id": "w-{name}", "node": "{name}", "args": {{"approve_up_to": {up_to}}}}}"#
        );
        let (status, record) = post_agent(&a.addr, &a_token, &body).await;
        assert_eq!(status, 201, "{record}");
    }
    let (status, decision) = post(
        &a.addr,
        &a_token,
        "/api/coordination/vote",
        serde_json::json!({
            "topic": "raise",
            "value": 50,
            "agents": ["w-a@local", "w-b@local", "w-c@local"],
        }),
    )
    .await;
    assert_eq!(status, 200, "{decision}");
    assert_eq!(decision["no_answer"], serde_json::json!([]), "{decision}");
    assert_eq!(decision["participants"], 3, "{decision}");
    assert_eq!(decision["votes"].as_array().unwrap().len(), 3, "{decision}");
    assert_eq!(decision["outcome"]["outcome"], "passed", "{decision}");
    // Each worker counted its vote where it lives.
    for name in ["a@local", "b@local", "c@local"] {
        let (status, answer) = ask(
            &a.addr,
            &a_token,
            &format!("w-{name}"),
            "worker.stats",
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["reply"]["votes"], 1, "{name}: {answer}");
    }
    drop((a, b, c));
}

/// Issue 24, hand-over on SIGTERM: twenty counters on c, each added to
/// (acknowledged); c gets SIGTERM. Each survivor runs its share (the ids
/// that hash to it over {a, b}) before a has seen c down (no failure
/// detection was needed), every counter answers through a and through b
/// with its acknowledged count, and c exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_by_sigterm_hands_its_agents_over_before_any_down() {
    let schema = fresh_schema("handover");
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (b, b_token), (mut c, _)], _) =
        three_nodes_up(dir.path(), Some(&schema)).await;
    let ids: Vec<String> = (0..20).map(|i| format!("ho-{i:02}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let body = format!(r#"{{"kind": "counter", "id": "{id}", "node": "c@local"}}"#);
        let (status, record) = post_agent(&a.addr, &a_token, &body).await;
        assert_eq!(status, 201, "{record}");
        let (status, answer) = ask(
            &a.addr,
            &a_token,
            id,
            "counter.add",
            serde_json::json!({ "by": i + 1 }),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }

    let pid = c.child.id().unwrap().to_string();
    let termed = Instant::now();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    // Each survivor holds its share (rendezvous over {a, b}): when?
    let survivors = [("a@local", &a, &a_token), ("b@local", &b, &b_token)];
    let holds = survivors.map(|(name, running, token)| {
        let share: Vec<&String> = ids
            .iter()
            .filter(|id| {
                rendezvous_owner(&AgentId::new(id.as_str()), ["a@local", "b@local"]) == Some(name)
            })
            .collect();
        async move {
            loop {
                let local = list(&running.addr, token, "&scope=local").await;
                let held: Vec<&str> = local["agents"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|agent| agent["status"] == "running")
                    .filter_map(|agent| agent["id"].as_str())
                    .collect();
                if share.iter().all(|id| held.contains(&id.as_str())) {
                    return termed.elapsed();
                }
                assert!(
                    termed.elapsed() < Duration::from_secs(10),
                    "{name} does not hold its share within 10 s of SIGTERM: {local}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    // Meanwhile: when does a see c down (c leaves after its hand-over)?
    let seen_down = async {
        until(&a.addr, &a_token, WAIT, "c down", |view| {
            has(view, "c@local", "down")
        })
        .await;
        termed.elapsed()
    };
    let (held, down) = tokio::join!(futures::future::join_all(holds), seen_down);
    let all_answered = held.into_iter().max().unwrap();
    // Each answers through both with its acknowledged count.
    for (_, running, token) in survivors {
        for (i, id) in ids.iter().enumerate() {
            let (status, answer) = ask(&running.addr, token, id, "counter.get", Value::Null).await;
            assert_eq!(status, 200, "{id}: {answer}");
            assert_eq!(answer["reply"]["count"], i + 1, "{id}: {answer}");
        }
    }
    let status = tokio::time::timeout(WAIT, c.child.wait())
        .await
        .expect("c exits after SIGTERM")
        .unwrap();
    let mut log = String::new();
    let _ = tokio::time::timeout(
        WAIT,
        tokio::io::AsyncReadExt::read_to_string(&mut c.stderr, &mut log),
    )
    .await;
    assert!(
        all_answered < down,
        "survivors held all {all_answered:?} after SIGTERM, c seen down after {down:?}; c's log:\n{log}"
    );
    assert_eq!(status.code(), Some(0), "{log}");
    let after = claims(&schema).await;
    for id in &ids {
        let owner = rendezvous_owner(&AgentId::new(id.as_str()), ["a@local", "b@local"]).unwrap();
        assert_eq!(after[id].0, owner, "{id}: {after:?}");
    }
    drop((a, b));
}

/// Issue 24, a rolling restart under steady traffic: six counters spread
/// over three nodes on a shared store; a driver sends tells and asks
/// through the nodes that are up while c, b and a in turn get SIGTERM
/// (handing their agents over), start again (a new generation, a fresh
/// data directory, the same store) and are up on every node. Every ask
/// gets a reply or a typed error (a JSON body with a code), and each
/// counter's count equals the tells acknowledged for it (202), give or
/// take those whose outcome the caller could not know (a timeout or a
/// node lost mid-call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_asks_and_tells_loses_no_acknowledged_tell() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    let schema = fresh_schema("rolling");
    let dir = tempfile::tempdir().unwrap();
    let ([(a, a_token), (mut b, b_token), (mut c, c_token)], a_listen) =
        three_nodes_up(dir.path(), Some(&schema)).await;
    let b_listen = listen_addr(&mut b).await;
    let c_listen = listen_addr(&mut c).await;
    let ids: Vec<String> = (0..6).map(|i| format!("roll-{i}")).collect();
    for id in &ids {
        let body = format!(r#"{{"kind": "counter", "id": "{id}"}}"#);
        let (status, record) = post_agent(&a.addr, &a_token, &body).await;
        assert_eq!(status, 201, "{record}");
    }
    // Who takes traffic: (addr, token) per node, None while it restarts;
    // a request holds the read side, so a restart waits for those in
    // flight before it sends SIGTERM.
    type Entry = Option<(String, String)>;
    let up: Arc<tokio::sync::RwLock<[Entry; 3]>> = Arc::new(tokio::sync::RwLock::new([
        Some((a.addr.clone(), a_token.clone())),
        Some((b.addr.clone(), b_token.clone())),
        Some((c.addr.clone(), c_token.clone())),
    ]));
    let stop = Arc::new(AtomicBool::new(false));
    let driver = tokio::spawn({
        let (up, stop, ids) = (up.clone(), stop.clone(), ids.clone());
        async move {
            let mut acked = vec![0i64; ids.len()];
            let mut unknown = vec![0i64; ids.len()];
            let mut asks = 0u64;
            let mut k = 0usize;
            while !stop.load(Ordering::Acquire) {
                k += 1;
                let nodes = up.read().await;
                let Some((addr, token)) = nodes[k % 3].clone() else {
                    continue;
                };
                let j = k % ids.len();
                let id = &ids[j];
                let is_ask = k.is_multiple_of(4);
                let (status, answer) = if is_ask {
                    asks += 1;
                    ask(&addr, &token, id, "counter.get", Value::Null).await
                } else {
                    post(
                        &addr,
                        &token,
                        &format!("/api/agents/{id}/tell"),
                        serde_json::json!({"protocol": "counter.add", "body": {"by": 1}, "timeout_ms": 2000}),
                    )
                    .await
                };
                drop(nodes);
                match status {
                    200 if is_ask => {}
                    202 => acked[j] += 1,
                    _ => {
                        let code = answer["code"].as_u64();
                        assert!(
                            status >= 400 && code.is_some(),
                            "{id} through {addr}: {status} {answer}"
                        );
                        // Taken or not: the caller cannot know.
                        if matches!(code, Some(9141 | 9143)) && !is_ask {
                            unknown[j] += 1;
                        }
                    }
                }
            }
            (acked, unknown, asks)
        }
    });

    let mut nodes = [
        (Some(a), a_listen),
        (Some(b), b_listen),
        (Some(c), c_listen),
    ];
    let names = ["a@local", "b@local", "c@local"];
    for restart in [2usize, 1, 0] {
        let name = names[restart];
        up.write().await[restart] = None;
        let mut running = nodes[restart].0.take().unwrap();
        let pid = running.child.id().unwrap().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(WAIT, running.child.wait())
            .await
            .expect("the node exits after SIGTERM")
            .unwrap();
        assert_eq!(status.code(), Some(0), "{name}");
        let seed = nodes[(restart + 1) % 3].1.clone();
        let again = dir.path().join(format!("again-{restart}"));
        std::fs::create_dir_all(&again).unwrap();
        let (mut started, token) = node_on(&again, name, Some(&seed), Some(&schema)).await;
        let listen = listen_addr(&mut started).await;
        let all_up = |view: &[(String, String)]| names.iter().all(|n| has(view, n, "up"));
        until(&started.addr, &token, WAIT, "three members up", all_up).await;
        for (other, _) in nodes.iter().filter_map(|(r, l)| r.as_ref().map(|r| (r, l))) {
            let view_token = {
                let view = up.read().await;
                view.iter()
                    .flatten()
                    .find(|(addr, _)| *addr == other.addr)
                    .map(|(_, t)| t.clone())
                    .unwrap()
            };
            until(&other.addr, &view_token, WAIT, "three members up", all_up).await;
        }
        up.write().await[restart] = Some((started.addr.clone(), token));
        nodes[restart] = (Some(started), listen);
    }
    stop.store(true, Ordering::Release);
    let (acked, unknown, asks) = tokio::time::timeout(WAIT, driver)
        .await
        .expect("the driver ends")
        .unwrap();
    assert!(
        asks > 0 && acked.iter().sum::<i64>() > 0,
        "{acked:?} {asks}"
    );
    let (addr, token) = up.read().await[0].clone().unwrap();
    for (j, id) in ids.iter().enumerate() {
        let (status, answer) = ask(&addr, &token, id, "counter.get", Value::Null).await;
        assert_eq!(status, 200, "{id}: {answer}");
        let count = answer["reply"]["count"].as_i64().unwrap();
        assert!(
            acked[j] <= count && count <= acked[j] + unknown[j],
            "{id}: count {count}, acknowledged tells {}, unknown {}",
            acked[j],
            unknown[j]
        );
    }
    drop(nodes);
}

/// Forwards each connection made to `listener` to the current target
/// (none yet: refused), until cut: a cut closes every open connection and
/// refuses new ones until healed. Its links end when this future is
/// dropped.
async fn forward_tcp(
    listener: tokio::net::TcpListener,
    target_rx: tokio::sync::watch::Receiver<Option<std::net::SocketAddr>>,
    cut_rx: tokio::sync::watch::Receiver<bool>,
) {
    let mut links = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                let target = *target_rx.borrow();
                let (Some(target), false) = (target, *cut_rx.borrow()) else {
                    continue;
                };
                let mut cut = cut_rx.clone();
                links.spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
            Some(_) = links.join_next(), if !links.is_empty() => {}
        }
    }
}

/// A TCP fault proxy for one link: forwards each connection made to
/// `addr` to the target until [`cut`](Self::cut), which closes every open
/// connection and refuses new ones until [`heal`](Self::heal). Its tasks
/// end when it is dropped.
struct FaultProxy {
    addr: std::net::SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    async fn start(target: std::net::SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        // A fixed target: the receiver keeps its value once the sender is
        // gone. Every link ends with the task, so with the proxy.
        let (_, target_rx) = tokio::sync::watch::channel(Some(target));
        let task = tokio::spawn(forward_tcp(listener, target_rx, cut_rx));
        FaultProxy { addr, cut, task }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` (`postgres://USER@HOST:PORT/DB...`) with its server's address,
/// or with `via` in its place.
fn server_of(url: &str) -> std::net::SocketAddr {
    let rest = url.split_once('@').map_or(url, |(_, rest)| rest);
    let host = rest.split(['/', '?']).next().unwrap();
    std::net::ToSocketAddrs::to_socket_addrs(host)
        .unwrap_or_else(|e| panic!("the tests' PostgreSQL address {host:?}: {e}"))
        .next()
        .unwrap()
}

fn via(url: &str, via: std::net::SocketAddr) -> String {
    let (user, rest) = url.split_once('@').unwrap();
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    format!("{user}@{via}{}", &rest[host_end..])
}

/// `mabeam run` for `node` with its stores on schema `schema` of the
/// PostgreSQL at `url` (a proxy's, to cut it off), `extra` appended to
/// its `[cluster]` section.
async fn node_at(
    dir: &Path,
    name: &str,
    join: Option<&str>,
    url: &str,
    schema: &str,
    extra: &str,
) -> (Running, String) {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.join(format!("{name}.toml"));
    let text = format!(
        "[cluster]\ncookie = \"0123456789abcdef0123456789abcdef\"\n{extra}\n\
         [store]\nurl = \"{url}\"\nschema = \"{schema}\"\n"
    );
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut args = vec![
        "--config",
        &config,
        "--node",
        name,
        "--listen",
        "127.0.0.1:0",
    ];
    if let Some(seed) = join {
        args.extend(["--join", seed]);
    }
    let running = start(&data, &args).await;
    let token = token(&data);
    (running, token)
}

/// `addr`'s view of `node` (generation, state), or `None` while `addr`
/// does not answer (a node starting again) or does not list it.
async fn view_of(addr: &str, token: &str, node: &str) -> Option<(u64, String)> {
    let reply = tokio::time::timeout(WAIT, request(addr, "GET", "/api/cluster", Some(token)))
        .await
        .expect("a node answers or refuses in time")
        .ok()?;
    let view: Value = serde_json::from_str(&reply.body).ok()?;
    view["members"]
        .as_array()?
        .iter()
        .find(|m| m["node"] == node)
        .map(|m| {
            (
                m["generation"].as_u64().unwrap(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
}

/// One incarnation of a probe agent, from its lines in the probe log:
/// the process it ran in, its first and last tick (unix µs).
#[derive(Debug, Clone, Copy)]
struct Activation {
    pid: u32,
    first: u128,
    last: u128,
}

/// The probe log at `log`: tag -> its activations, by first tick.
fn activations(log: &Path) -> std::collections::BTreeMap<String, Vec<Activation>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by_activation = std::collections::BTreeMap::<(String, String), Activation>::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let [tag, activation, pid, micros] = fields[..] else {
            panic!("a torn probe line {line:?}");
        };
        let (pid, at): (u32, u128) = (pid.parse().unwrap(), micros.parse().unwrap());
        let entry = by_activation
            .entry((tag.to_owned(), activation.to_owned()))
            .or_insert(Activation {
                pid,
                first: at,
                last: at,
            });
        entry.first = entry.first.min(at);
        entry.last = entry.last.max(at);
    }
    let mut by_tag = std::collections::BTreeMap::<String, Vec<Activation>>::new();
    for ((tag, _), activation) in by_activation {
        by_tag.entry(tag).or_default().push(activation);
    }
    for list in by_tag.values_mut() {
        list.sort_by_key(|a| a.first);
    }
    by_tag
}

/// Asserts that no two activations of one probe overlap in time.
fn assert_no_overlap(by_tag: &std::collections::BTreeMap<String, Vec<Activation>>) {
    for (tag, list) in by_tag {
        for pair in list.windows(2) {
            assert!(
                pair[0].last < pair[1].first,
                "{tag}: two incarnations overlap: {:?} ran until {} µs, {:?} from {} µs",
                pair[0].pid,
                pair[0].last,
                pair[1].pid,
                pair[1].first
            );
        }
    }
}

/// Issue 24, a partition: node c cut from PostgreSQL (through a fault
/// proxy on its store link alone; its gossip and node connections are
/// untouched). c cannot renew its lease and stops its agents before the
/// lease can expire; the survivors wait for that expiry (by the
/// database's clock) before they claim the agents: the probes' ticks
/// show no two incarnations of one agent running at once, and every
/// probe answers from a survivor. Healed, c starts again as a new
/// generation (same HTTP address) and rejoins; every id lives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_the_store_stops_its_agents_before_survivors_start_them() {
    let schema = fresh_schema("cut_store");
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_url();
    let store_link = FaultProxy::start(server_of(&url)).await;
    let c_url = via(&url, store_link.addr);
    let (mut a, a_token) = node_at(dir.path(), "a@local", None, &url, &schema, "").await;
    let a_listen = listen_addr(&mut a).await;
    let (b, b_token) = node_at(dir.path(), "b@local", Some(&a_listen), &url, &schema, "").await;
    let (c, c_token) = node_at(dir.path(), "c@local", Some(&a_listen), &c_url, &schema, "").await;
    let nodes = [(&a, &a_token), (&b, &b_token), (&c, &c_token)];
    let probes = probes_on_c(dir.path(), nodes).await;

    let cut = Instant::now();
    store_link.cut();
    // Each probe answers through a from a survivor (a process not c's).
    let took = match answered_by_survivors(&a, &a_token, &probes, cut).await {
        Ok(took) => took,
        Err(late) => fail_with_logs(&late, [a, b, c]).await,
    };
    eprintln!("cut from the store: all probes answer from survivors {took:?} after the cut");

    // Healed: c starts again as a new generation and rejoins.
    store_link.heal();
    let nodes = [(&a, &a_token), (&b, &b_token), (&c, &c_token)];
    rejoins_with_unique_ids(nodes, probes.c_generation, &probes.ids, &probes.log).await;
    drop((a, b, c));
}

/// Probes started on c, each seen ticking there.
struct Probes {
    /// Where each activation is recorded.
    log: std::path::PathBuf,
    ids: Vec<String>,
    /// c's process and generation before the cut.
    c_pid: u32,
    c_generation: u64,
}

/// Waits until each of `nodes` (a, b, c) sees the three up, then starts
/// twelve probes on c through a and waits until each ticks there.
async fn probes_on_c(dir: &Path, nodes: [(&Running, &String); 3]) -> Probes {
    let all_up = |view: &[(String, String)]| {
        ["a@local", "b@local", "c@local"]
            .iter()
            .all(|n| has(view, n, "up"))
    };
    for (running, token) in nodes {
        until(&running.addr, token, WAIT, "three members up", all_up).await;
    }
    let [(a, a_token), _, (c, c_token)] = nodes;
    let c_pid = c.child.id().unwrap();
    let (c_generation, _) = view_of(&c.addr, c_token, "c@local").await.unwrap();
    let log = dir.join("activations.probe");
    let ids: Vec<String> = (0..12).map(|i| format!("probe-{i:02}")).collect();
    for id in &ids {
        let body = serde_json::json!({
            "kind": "probe", "id": id, "node": "c@local",
            "args": {"log": log, "tag": id},
        })
        .to_string();
        let (status, record) = post_agent(&a.addr, a_token, &body).await;
        assert_eq!(status, 201, "{record}");
    }
    tokio::time::timeout(WAIT, async {
        loop {
            let seen = activations(&log);
            if ids
                .iter()
                .all(|id| seen.get(id).is_some_and(|l| !l.is_empty()))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every probe ticks on c");
    Probes {
        log,
        ids,
        c_pid,
        c_generation,
    }
}

/// After c was cut off at `cut`: each probe answers through a from a
/// survivor (a process not c's) within 15 s, and the activations show no
/// overlap, each probe first on c and then on survivors only. Returns how
/// long after the cut the last one answered, or the probe still late at
/// 15 s.
async fn answered_by_survivors(
    a: &Running,
    a_token: &str,
    probes: &Probes,
    cut: Instant,
) -> Result<Duration, String> {
    for id in &probes.ids {
        loop {
            let (status, answer) = ask(&a.addr, a_token, id, "probe.get", Value::Null).await;
            if status == 200 && answer["reply"]["pid"] != probes.c_pid {
                break;
            }
            if cut.elapsed() > Duration::from_secs(15) {
                return Err(format!("{id}: {status} {answer}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let took = cut.elapsed();
    let seen = activations(&probes.log);
    assert_no_overlap(&seen);
    for id in &probes.ids {
        let list = &seen[id];
        assert_eq!(list[0].pid, probes.c_pid, "{id} first ran on c: {list:?}");
        assert!(
            list.len() >= 2 && list[1..].iter().all(|a| a.pid != probes.c_pid),
            "{id}: on c, then on survivors only: {list:?}"
        );
    }
    Ok(took)
}

/// Fails the test with `late` and the three nodes' logs.
async fn fail_with_logs(late: &str, nodes: [Running; 3]) -> ! {
    let [a, b, c] = nodes;
    let logs = [a.kill().await, b.kill().await, c.kill().await];
    panic!(
        "not answering from a survivor within 15 s of the cut: {late}\n\
         a:\n{}\nb:\n{}\nc:\n{}",
        logs[0], logs[1], logs[2]
    );
}

/// After a partition healed: c (the third of `nodes`) rejoins as a newer
/// generation than `c_generation`, seen up by a and by itself, and sees
/// all three up; every one of `ids` is listed once and held by one
/// member; the probe log shows no overlap.
async fn rejoins_with_unique_ids(
    nodes: [(&Running, &String); 3],
    c_generation: u64,
    ids: &[String],
    log: &Path,
) {
    let [(a, a_token), _, (c, c_token)] = nodes;
    let rejoined = tokio::time::timeout(WAIT, async {
        loop {
            if let Some((generation, state)) = view_of(&a.addr, a_token, "c@local").await
                && generation != c_generation
                && state == "up"
                && let Some((own, own_state)) = view_of(&c.addr, c_token, "c@local").await
                && own == generation
                && own_state == "up"
            {
                return generation;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("c rejoins as a new generation once healed");
    assert!(rejoined > c_generation, "{rejoined} after {c_generation}");
    let all_up = |view: &[(String, String)]| {
        ["a@local", "b@local", "c@local"]
            .iter()
            .all(|n| has(view, n, "up"))
    };
    until(&c.addr, c_token, WAIT, "three members up on c", all_up).await;
    // Every id lives once: listed once (once c reaches both others),
    // held by one member.
    let all = tokio::time::timeout(WAIT, async {
        loop {
            let all = list(&c.addr, c_token, "").await;
            if all["unreachable"] == serde_json::json!([]) && all["total"] == ids.len() {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("c lists every member's agents");
    let mut listed: Vec<&str> = all["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| agent["id"].as_str().unwrap())
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        ids.iter().map(String::as_str).collect::<Vec<_>>(),
        "{all}"
    );
    let mut held = 0;
    for (running, token) in nodes {
        held += list(&running.addr, token, "&scope=local").await["total"]
            .as_u64()
            .unwrap();
    }
    assert_eq!(held, ids.len() as u64);
    assert_no_overlap(&activations(log));
}

/// A node's front for partition tests: what the others reach it at
/// (`cluster.advertise`), forwarding TCP (node connections) and UDP
/// (gossip) on one port to the node's `listen` address once known.
/// [`cut`](Self::cut) drops everything through it; [`block`](Self::block)
/// drops the gossip from and to one node's address (its UDP socket is its
/// `listen`). Its tasks end when it is dropped.
struct NodeFront {
    addr: std::net::SocketAddr,
    target: tokio::sync::watch::Sender<Option<std::net::SocketAddr>>,
    cut: tokio::sync::watch::Sender<bool>,
    blocked: std::sync::Arc<parking_lot::Mutex<Vec<std::net::SocketAddr>>>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl NodeFront {
    async fn start() -> NodeFront {
        let (tcp, udp) = loop {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            if let Ok(udp) = tokio::net::UdpSocket::bind(tcp.local_addr().unwrap()).await {
                break (tcp, udp);
            }
        };
        let addr = tcp.local_addr().unwrap();
        let (target, target_rx) = tokio::sync::watch::channel(None);
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let blocked = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let tcp_task = tokio::spawn(forward_tcp(tcp, target_rx.clone(), cut_rx.clone()));
        let udp_task = {
            let blocked = blocked.clone();
            tokio::spawn(async move {
                let udp = std::sync::Arc::new(udp);
                let mut sessions = std::collections::HashMap::<
                    std::net::SocketAddr,
                    std::sync::Arc<tokio::net::UdpSocket>,
                >::new();
                let mut replies = tokio::task::JoinSet::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, from)) = udp.recv_from(&mut buf).await else {
                        continue;
                    };
                    let target = *target_rx.borrow();
                    let Some(target) = target else { continue };
                    if *cut_rx.borrow() || blocked.lock().contains(&from) {
                        continue;
                    }
                    if let std::collections::hash_map::Entry::Vacant(vacant) = sessions.entry(from)
                    {
                        // One socket per sender: the node answers to it,
                        // and the answer goes back to that sender.
                        let session = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                        session.connect(target).await.unwrap();
                        let session = std::sync::Arc::new(session);
                        let (back, udp, blocked, cut) = (
                            session.clone(),
                            udp.clone(),
                            blocked.clone(),
                            cut_rx.clone(),
                        );
                        replies.spawn(async move {
                            let mut buf = vec![0u8; 65536];
                            while let Ok(n) = back.recv(&mut buf).await {
                                if !*cut.borrow() && !blocked.lock().contains(&from) {
                                    let _ = udp.send_to(&buf[..n], from).await;
                                }
                            }
                        });
                        vacant.insert(session);
                    }
                    let _ = sessions[&from].send(&buf[..n]).await;
                }
            })
        };
        NodeFront {
            addr,
            target,
            cut,
            blocked,
            tasks: [tcp_task, udp_task],
        }
    }

    fn forward_to(&self, target: &str) {
        self.target.send_replace(Some(target.parse().unwrap()));
    }

    fn cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }

    fn block(&self, node: &str) {
        self.blocked.lock().push(node.parse().unwrap());
    }

    fn unblock(&self) {
        self.blocked.lock().clear();
    }
}

impl Drop for NodeFront {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Issue 24, a partition: node c cut from a and b (each node reached
/// through its front, `cluster.advertise`; c's front cut, and a's and
/// b's fronts dropping c's gossip) but not from PostgreSQL. a and b, a
/// majority of the leased members, see c down, mark its lease dead and
/// wait for it to expire before they claim its agents; c, a minority,
/// declares no one dead, finds its lease dead at its next renewal and
/// stops its agents: no two incarnations of a probe at once, every probe
/// answers from a survivor, a and b keep their leases. Healed, c rejoins
/// as a new generation; every id lives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_from_the_others_stops_its_agents_once_declared_dead() {
    let schema = fresh_schema("cut_peers");
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_url();
    let fronts = [
        NodeFront::start().await,
        NodeFront::start().await,
        NodeFront::start().await,
    ];
    let seed = fronts[0].addr.to_string();
    let mut started = Vec::new();
    for (i, name) in ["a@local", "b@local", "c@local"].into_iter().enumerate() {
        let join = (i > 0).then_some(seed.as_str());
        // Renewals 1 s apart: c learns it was declared dead up to 1 s
        // after; the survivors must wait out its lease, not just mark it.
        let extra = format!(
            "advertise = \"{}\"\nlease_ms = 3000\nlease_renew_ms = 1000\n",
            fronts[i].addr
        );
        let (mut running, token) = node_at(dir.path(), name, join, &url, &schema, &extra).await;
        let listen = listen_addr(&mut running).await;
        fronts[i].forward_to(&listen);
        started.push((running, token, listen));
    }
    let (c, c_token, c_listen) = started.pop().unwrap();
    let (b, b_token, _) = started.pop().unwrap();
    let (a, a_token, _) = started.pop().unwrap();
    let nodes = [(&a, &a_token), (&b, &b_token), (&c, &c_token)];
    let probes = probes_on_c(dir.path(), nodes).await;

    let cut = Instant::now();
    fronts[2].cut(true);
    fronts[0].block(&c_listen);
    fronts[1].block(&c_listen);
    let took = match answered_by_survivors(&a, &a_token, &probes, cut).await {
        Ok(took) => took,
        Err(late) => fail_with_logs(&late, [a, b, c]).await,
    };
    eprintln!("cut from the others: all probes answer from survivors {took:?} after the cut");

    fronts[2].cut(false);
    fronts[0].unblock();
    fronts[1].unblock();
    let nodes = [(&a, &a_token), (&b, &b_token), (&c, &c_token)];
    rejoins_with_unique_ids(nodes, probes.c_generation, &probes.ids, &probes.log).await;
    let c_log = c.kill().await;
    assert!(
        c_log.contains("another member declared this one dead"),
        "c learnt from the store that it was declared dead:\n{c_log}"
    );
    for (name, running) in [("a", a), ("b", b)] {
        let log = running.kill().await;
        assert!(!log.contains("lease lost"), "{name} kept its lease:\n{log}");
    }
}

/// Issue 24: a member dead before any survivor was up. c alone holds ten
/// counters (claimed by c in the store), added to, then is killed
/// (`kill -9`); a and b start afterwards on the same store, so no one
/// ever sees c go down. Once c's lease has expired by the database's
/// clock, the scan of expired leases takes its claims over: each counter
/// answers through b with its acknowledged count, claimed by a or b and
/// held by that one alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_dead_before_any_survivor_was_up_is_taken_over() {
    let schema = fresh_schema("dead_before");
    let dir = tempfile::tempdir().unwrap();
    let url = postgres_url();
    let (c, c_token) = node_at(dir.path(), "c@local", None, &url, &schema, "").await;
    let ids: Vec<String> = (0..10).map(|i| format!("early-{i:02}")).collect();
    let mut acked = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let body = format!(r#"{{"kind": "counter", "id": "{id}"}}"#);
        let (status, record) = post_agent(&c.addr, &c_token, &body).await;
        assert_eq!(status, 201, "{record}");
        let by = i as i64 + 1;
        let (status, answer) = ask(
            &c.addr,
            &c_token,
            id,
            "counter.add",
            serde_json::json!({ "by": by }),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        acked.push(by);
    }
    assert!(
        claims(&schema)
            .await
            .values()
            .all(|(node, _)| node == "c@local")
    );
    let _log = c.kill().await;

    let (mut a, a_token) = node_at(dir.path(), "a@local", None, &url, &schema, "").await;
    let a_listen = listen_addr(&mut a).await;
    let (b, b_token) = node_at(dir.path(), "b@local", Some(&a_listen), &url, &schema, "").await;
    for (running, token) in [(&a, &a_token), (&b, &b_token)] {
        until(&running.addr, token, WAIT, "a and b up", |view| {
            has(view, "a@local", "up") && has(view, "b@local", "up")
        })
        .await;
    }
    let up = Instant::now();
    for (id, count) in ids.iter().zip(&acked) {
        loop {
            let (status, answer) = ask(&b.addr, &b_token, id, "counter.get", Value::Null).await;
            if status == 200 {
                assert_eq!(answer["reply"]["count"], *count, "{id}: {answer}");
                break;
            }
            assert!(
                up.elapsed() < Duration::from_secs(15),
                "{id} not taken over within 15 s of a and b up: {status} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let after = claims(&schema).await;
    let held = held_by([("a@local", &a, &a_token), ("b@local", &b, &b_token)]).await;
    for id in &ids {
        let (owner, _) = &after[id];
        assert!(owner == "a@local" || owner == "b@local", "{id}: {after:?}");
        for name in ["a@local", "b@local"] {
            assert_eq!(
                held[name].contains(id),
                name == owner,
                "{id} held by {name}? claims: {after:?}, held: {held:?}"
            );
        }
    }
    drop((a, b));
}
