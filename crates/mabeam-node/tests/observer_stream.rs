//! The observer's server side without a browser: the page and its assets
//! are served from the binary with nothing fetched from elsewhere; the
//! event stream answers 200 with Server-Sent Events, resumes after
//! `Last-Event-ID` with nothing missed or repeated, keeps answering 200
//! while a service is down, and does not keep the node from stopping;
//! the agents' page is filtered, sorted and paged on the server; actions
//! without the token are refused and change nothing.

use std::time::Duration;

use mabeam_node::{Node, NodeConfig, client::send};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    net::{TcpStream, tcp::OwnedReadHalf},
};

const WAIT: Duration = Duration::from_secs(30);

/// A node whose `/api/*` reads are public, as the page's reads are
/// exercised here; `reads_need_the_token_unless_public` checks the rule.
async fn node(dir: &tempfile::TempDir) -> Node {
    node_with_reads(dir, true).await
}

async fn node_with_reads(dir: &tempfile::TempDir, public_reads: bool) -> Node {
    Node::start(NodeConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        public_reads,
        ..NodeConfig::default()
    })
    .await
    .expect("the node starts")
}

async fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let body = body.map(|b| b.to_string());
    let reply = send(addr, method, path, token, body.as_deref())
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let json = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
    (reply.status, json, reply.body)
}

/// An open stream: its status line, headers read, lines to come.
struct Stream {
    status: String,
    headers: Vec<String>,
    lines: Lines<BufReader<OwnedReadHalf>>,
    _write: tokio::net::tcp::OwnedWriteHalf,
}

async fn open_stream(addr: &str, last_event_id: Option<u64>) -> Stream {
    open_stream_with(addr, last_event_id, "").await
}

/// Opens the stream with `extra` header lines (each ending in `\r\n`).
async fn open_stream_with(addr: &str, last_event_id: Option<u64>, extra: &str) -> Stream {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let resume = last_event_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write
        .write_all(
            format!(
                "GET /api/observer/stream HTTP/1.1\r\nHost: {addr}\r\n\
                 Accept: text/event-stream\r\n{resume}{extra}\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut lines = BufReader::new(read).lines();
    let status = lines.next_line().await.unwrap().unwrap();
    let mut headers = Vec::new();
    loop {
        let line = lines.next_line().await.unwrap().unwrap();
        if line.is_empty() {
            break;
        }
        headers.push(line.to_lowercase());
    }
    Stream {
        status,
        headers,
        lines,
        _write: write,
    }
}

impl Stream {
    /// The next message with an SSE `event` name of `name`: its id and data.
    async fn next(&mut self, name: &str) -> (Option<u64>, String) {
        let want = format!("event: {name}");
        let mut found = false;
        let mut id = None;
        let mut data = String::new();
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no {name} message within {WAIT:?}"))
                .unwrap()
                .expect("the stream stays open");
            // Chunked transfer: size lines are not SSE; SSE lines are.
            let line = line.trim_end();
            if line == want {
                found = true;
            } else if let Some(rest) = line.strip_prefix("id: ") {
                id = rest.parse().ok();
            } else if let Some(rest) = line.strip_prefix("data: ") {
                data = rest.to_owned();
            } else if line.is_empty() && found {
                return (id, data);
            } else if line.starts_with("event: ") {
                found = false;
                id = None;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_come_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let addr = node.addr().to_string();
    let (status, _, html) = call(&addr, "GET", "/", None, None).await;
    assert_eq!(status, 200);
    assert!(html.contains("<title>mabeam observer</title>"), "{html}");
    for asset in ["/observer/observer.css", "/observer/observer.js"] {
        assert!(html.contains(asset), "the page links {asset}");
        let (status, _, text) = call(&addr, "GET", asset, None, None).await;
        assert_eq!(status, 200, "{asset}");
        assert!(text.len() > 1000, "{asset} is served");
    }
    // Nothing loads from elsewhere: no absolute URL in src or href.
    for needle in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(needle), "the page loads {needle}...");
    }
    let (status, _, _) = call(&addr, "GET", "/observer/nothing.js", None, None).await;
    assert_eq!(status, 404);
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_resumes_after_last_event_id_with_nothing_missed_or_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let addr = node.addr().to_string();
    let token = node.token().to_owned();
    let mut ids = Vec::new();
    for i in 0..5 {
        let (status, reply, _) = call(
            &addr,
            "POST",
            "/api/events",
            Some(&token),
            Some(json!({"stream": "resume:test", "kind": "tick", "data": {"i": i}})),
        )
        .await;
        assert_eq!(status, 201, "{reply}");
        ids.push(reply["id"].as_u64().unwrap());
    }
    let mut stream = open_stream(&addr, Some(ids[1])).await;
    assert!(stream.status.contains(" 200 "), "{}", stream.status);
    assert!(
        stream
            .headers
            .iter()
            .any(|h| h.starts_with("content-type: text/event-stream")),
        "{:?}",
        stream.headers
    );
    let (_, hello) = stream.next("hello").await;
    assert!(hello.contains("boot"), "{hello}");
    // The events after the one named, in order, each once.
    for expected in &ids[2..] {
        let (id, data) = stream.next("event").await;
        assert_eq!(id, Some(*expected), "{data}");
    }
    // And a live one after them.
    let (status, reply, _) = call(
        &addr,
        "POST",
        "/api/events",
        Some(&token),
        Some(json!({"stream": "resume:test", "kind": "live", "data": {}})),
    )
    .await;
    assert_eq!(status, 201);
    let (id, data) = stream.next("event").await;
    assert_eq!(id, reply["id"].as_u64(), "{data}");
    assert!(data.contains("\"live\""), "{data}");
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_answers_200_while_a_service_is_down_and_frames_keep_coming() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let addr = node.addr().to_string();
    node.system()
        .foundation()
        .stop_service("event_store")
        .await
        .expect("the event store stops");
    let mut stream = open_stream(&addr, None).await;
    assert!(stream.status.contains(" 200 "), "{}", stream.status);
    let (_, first) = stream.next("system").await;
    let (_, second) = stream.next("system").await;
    assert_ne!(first, second, "frames keep coming (uptime moves)");
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_does_not_keep_the_node_from_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let addr = node.addr().to_string();
    let mut stream = open_stream(&addr, None).await;
    stream.next("system").await;
    tokio::time::timeout(Duration::from_secs(10), node.stop())
        .await
        .expect("the node stops within 10 s with a stream open")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_paged_filtered_and_sorted_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let addr = node.addr().to_string();
    let token = node.token().to_owned();
    let (status, reply, _) = call(
        &addr,
        "POST",
        "/api/observer/agents/batch",
        Some(&token),
        Some(json!({"kind": "counter", "count": 120, "prefix": "c"})),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["started"], 120);
    let (status, reply, _) = call(
        &addr,
        "POST",
        "/api/agents",
        Some(&token),
        Some(json!({"kind": "worker", "id": "w-1"})),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    let (status, reply, _) = call(&addr, "POST", "/api/agents/c-7/kill", Some(&token), None).await;
    assert_eq!(status, 200, "{reply}");
    // The index follows changes within a moment: wait for the kill's
    // restart to show (bounded).
    let page = |query: &'static str| {
        let addr = addr.clone();
        async move {
            let (status, reply, _) = call(
                &addr,
                "GET",
                &format!("/api/observer/agents?{query}"),
                None,
                None,
            )
            .await;
            assert_eq!(status, 200, "{reply}");
            reply
        }
    };
    let began = std::time::Instant::now();
    loop {
        let top = page("sort=restarts&desc=1&limit=1").await;
        if top["agents"][0]["id"] == "c-7" && top["agents"][0]["restarts"] == 1 {
            break;
        }
        assert!(began.elapsed() < WAIT, "the killed agent's restart: {top}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = page("limit=50").await;
    assert_eq!(all["total"], 121);
    assert_eq!(all["agents"].as_array().unwrap().len(), 50);
    assert_eq!(all["agents"][0]["id"], "c-0", "id order by default");
    let second = page("limit=50&offset=50").await;
    assert_eq!(second["offset"], 50);
    let last = page("limit=50&offset=100").await;
    assert_eq!(last["agents"].as_array().unwrap().len(), 21);
    let workers = page("kind=worker").await;
    assert_eq!(workers["total"], 1);
    assert_eq!(workers["agents"][0]["id"], "w-1");
    let prefixed = page("prefix=c-11").await;
    assert_eq!(prefixed["total"], 11, "c-11 and c-110..c-119");
    let running = page("status=running").await;
    assert_eq!(running["total"], 121);
    let (status, reply, _) = call(&addr, "GET", "/api/observer/agents?sort=age", None, None).await;
    assert_eq!((status, reply["code"].as_u64()), (400, Some(9103)));
    let (status, reply, _) = call(
        &addr,
        "GET",
        "/api/observer/agents?status=sleepy",
        None,
        None,
    )
    .await;
    assert_eq!((status, reply["code"].as_u64()), (400, Some(9103)));
    // Its details, with its recent events.
    let (status, detail, _) = call(&addr, "GET", "/api/observer/agents/c-7", None, None).await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["restarts"], 1);
    assert!(!detail["events"].as_array().unwrap().is_empty(), "{detail}");
    let (status, _, _) = call(&addr, "GET", "/api/observer/agents/nobody", None, None).await;
    assert_eq!(status, 404);
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_without_the_token_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(&dir).await;
    let addr = node.addr().to_string();
    let token = node.token().to_owned();
    let (status, _, _) = call(
        &addr,
        "POST",
        "/api/agents",
        Some(&token),
        Some(json!({"kind": "counter", "id": "a"})),
    )
    .await;
    assert_eq!(status, 201);
    for path in [
        "/api/agents/a/stop",
        "/api/agents/a/passivate",
        "/api/agents/a/kill",
    ] {
        let (status, reply, _) = call(&addr, "POST", path, None, None).await;
        assert_eq!(
            (status, reply["code"].as_u64()),
            (401, Some(9101)),
            "{path}"
        );
        let (status, reply, _) = call(&addr, "POST", path, Some("wrong"), None).await;
        assert_eq!(
            (status, reply["code"].as_u64()),
            (401, Some(9101)),
            "{path}"
        );
    }
    let (status, reply, _) = call(
        &addr,
        "POST",
        "/api/observer/agents/batch",
        None,
        Some(json!({"kind": "counter", "count": 3})),
    )
    .await;
    assert_eq!((status, reply["code"].as_u64()), (401, Some(9101)));
    let registry = node
        .system()
        .agents()
        .and_then(|agents| agents.registry())
        .unwrap();
    let details = registry.details("a").unwrap();
    assert_eq!(registry.len(), 1, "no agent started");
    assert_eq!(details.restarts, 0, "not killed");
    assert!(!details.passivated, "not passivated");
    assert!(details.status.is_running(), "not stopped");
    // Bad input: a typed error, nothing started.
    for body in [
        json!({"kind": "counter", "count": 0}),
        json!({"kind": "counter", "count": 1_000_000}),
        json!({"kind": "nothing", "count": 2}),
        json!({"kind": "counter", "count": 2, "extra": true}),
    ] {
        let (status, reply, _) = call(
            &addr,
            "POST",
            "/api/observer/agents/batch",
            Some(&token),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 400, "{body}: {reply}");
    }
    assert_eq!(registry.len(), 1, "no agent started");
    // With the token, each action does what it says.
    let (status, reply, _) =
        call(&addr, "POST", "/api/agents/a/passivate", Some(&token), None).await;
    assert_eq!(status, 200, "{reply}");
    assert!(registry.details("a").unwrap().passivated);
    let (status, reply, _) = call(&addr, "POST", "/api/agents/a/stop", Some(&token), None).await;
    assert_eq!(status, 200, "{reply}");
    assert!(!registry.details("a").unwrap().status.is_running());
    let (status, _, _) = call(&addr, "POST", "/api/agents/nobody/kill", Some(&token), None).await;
    assert_eq!(status, 404);
    node.stop().await.unwrap();
}

/// The page's reads follow the node's rule for `/api/*` reads: without
/// `public_reads` the stream needs the token, as a bearer header or as the
/// `mabeam_token` cookie the page sets (an `EventSource` sends no header);
/// a wrong cookie is refused, and a cookie never authorizes a mutation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_the_token_unless_public() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_reads(&dir, false).await;
    let addr = node.addr().to_string();
    let token = node.token().to_owned();

    let refused = open_stream_with(&addr, None, "").await;
    assert!(refused.status.contains(" 401 "), "{}", refused.status);
    let wrong = open_stream_with(&addr, None, "Cookie: mabeam_token=nope\r\n").await;
    assert!(wrong.status.contains(" 401 "), "{}", wrong.status);
    let by_cookie = open_stream_with(
        &addr,
        None,
        &format!("Cookie: a=b; mabeam_token={token}\r\n"),
    )
    .await;
    assert!(by_cookie.status.contains(" 200 "), "{}", by_cookie.status);
    let by_header =
        open_stream_with(&addr, None, &format!("Authorization: Bearer {token}\r\n")).await;
    assert!(by_header.status.contains(" 200 "), "{}", by_header.status);
    drop((by_cookie, by_header));

    let (status, _, _) = call(&addr, "GET", "/api/observer/agents", None, None).await;
    assert_eq!(status, 401, "a page of agents needs the token too");
    // A mutation with only the cookie is refused.
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    write
        .write_all(
            format!(
                "POST /api/services/config_server/restart HTTP/1.1\r\nHost: {addr}\r\n\
                 Cookie: mabeam_token={token}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let status = BufReader::new(read)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.contains(" 401 "),
        "a cookie authorizes no mutation: {status}"
    );
    node.stop().await.unwrap();
}
