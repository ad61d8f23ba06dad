//! The EventStore (and the agent store) on PostgreSQL: what only a
//! server can show. Several stores on one schema (nodes sharing a store):
//! two writers expecting versions, a subscriber reading every event once
//! while 8 writers append; a client killed by `kill -9` mid-append; a
//! restart of PostgreSQL mid-traffic; a server down at open; a newer
//! schema.
//!
//! The tests that stop or restart the server start a private instance of
//! their own; the others share the tests' server (see `support/mod.rs`),
//! each in a schema of its own.

mod support;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use mabeam_foundation_services::{
    Appended, Durability, EventStore, EventStoreConfig, EventStoreError, ExpectedVersion,
    PostgresAgentStore, PostgresConfig, Retention,
};
use mabeam_supervision_core::{AgentStoreError, ErrorCode, Event};
use serde_json::json;
use support::{fresh_schema, instance::Instance, pg_config, pg_config_at};
use tokio_postgres::{AsyncMessage, NoTls};

/// Fails the test if `future` takes longer than `secs`.
async fn within<T>(secs: u64, what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s: {what}"))
}

async fn open(config: PostgresConfig) -> EventStore {
    EventStore::open(EventStoreConfig::postgres(config))
        .await
        .expect("opening the store on PostgreSQL")
}

/// Appends one event to `stream` and waits for its acknowledgement.
async fn append(store: &EventStore, stream: &str, value: u64) -> Appended {
    within(
        30,
        "an append",
        store.append(Event::new(stream, "k", json!(value))),
    )
    .await
    .expect("the append")
}

/// A session of its own on the tests' server, as another node's would
/// be.
async fn session() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&support::postgres_url(), NoTls)
        .await
        .expect("a session");
    tokio::spawn(connection);
    client
}

/// Takes (`lock`) or lets go (`unlock`) the write lease of the schema
/// whose channel is `channel`, from another session.
async fn lease(session: &tokio_postgres::Client, channel: &str, take: bool) {
    let sql = if take {
        "SELECT pg_advisory_lock(1835098732, hashtext($1))::text"
    } else {
        "SELECT pg_advisory_unlock(1835098732, hashtext($1))"
    };
    within(30, "the write lease", session.query(sql, &[&channel]))
        .await
        .expect("the lease's lock");
}

/// A private server, started off the async threads.
async fn private_instance() -> Arc<Instance> {
    tokio::task::spawn_blocking(|| Instance::start().map(Arc::new))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a private PostgreSQL did not start: {e}"))
}

async fn blocking(what: &'static str, f: impl FnOnce() -> Result<(), String> + Send + 'static) {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

// Two nodes append to one stream, each expecting the version it last
// saw: in every round exactly one wins, the other gets a typed conflict
// naming the version that won, and the stream has no hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_stream_with_expected_versions_one_wins() {
    let schema = fresh_schema();
    let a = open(pg_config(&schema)).await;
    let b = open(pg_config(&schema)).await;
    for round in 0..20u64 {
        let expected = if round == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(round)
        };
        let (ra, rb) = within(
            30,
            "two appends",
            futures::future::join(
                a.append_expecting(Event::new("acct", "a", json!(round)), expected),
                b.append_expecting(Event::new("acct", "b", json!(round)), expected),
            ),
        )
        .await;
        let (won, lost) = match (ra, rb) {
            (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
            other => panic!("round {round}: not exactly one winner: {other:?}"),
        };
        assert_eq!(won.stream_version, round + 1);
        assert_eq!(
            lost,
            EventStoreError::VersionConflict {
                stream: "acct".into(),
                expected: expected.to_string(),
                actual: round + 1,
            }
        );
        assert_eq!(lost.code(), 3003);
    }
    let all = a.read_from(1, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    a.stop().await;
    b.stop().await;
}

// Issue 23, the write lease: while another session holds the schema's
// lease, an append waits; the other session's own append (as another
// node's would be) is counted once the lease comes: the store reads the
// log's and the stream's heads after it takes the lease, not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_waits_for_the_write_lease_and_reads_the_heads_after_it() {
    let schema = fresh_schema();
    let store = open(pg_config(&schema)).await;
    let first = append(&store, "s", 1).await;
    assert_eq!((first.id, first.stream_version), (1, 1));
    let other = session().await;
    let channel = format!("mabeam_events_{schema}");
    // Taken once the store's slice is over and it let the lease go.
    lease(&other, &channel, true).await;
    let waiting = tokio::spawn(store.append(Event::new("s", "k", json!(3))));
    other
        .batch_execute(&format!(
            "INSERT INTO {schema}.events (id, stream, stream_version, kind, ts_ms, node, data) \
             VALUES (2, 's', 2, 'k', 0, 'other', '2')"
        ))
        .await
        .unwrap();
    assert!(
        !waiting.is_finished(),
        "appended while another held the lease"
    );
    lease(&other, &channel, false).await;
    let third = within(30, "the waiting append", waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((third.id, third.stream_version), (3, 3));
    store.stop().await;
}

// Issue 23, the write lease: a writer that takes its lease again after
// each slice (here after every append) keeps what it knew when nobody
// else appended, and reads the version of a stream it has not seen yet
// (another node wrote it before): never a version again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_taking_its_lease_again_reads_the_streams_it_does_not_know() {
    let schema = fresh_schema();
    let other = open(pg_config(&schema)).await;
    append(&other, "y", 0).await;
    other.stop().await;
    let store = open(pg_config(&schema).with_write_slice(Duration::from_micros(1))).await;
    let mut seen = Vec::new();
    for stream in ["z", "y", "z", "y"] {
        let appended = append(&store, stream, 0).await;
        seen.push((appended.id, appended.stream_version));
    }
    assert_eq!(seen, [(2, 1), (3, 2), (4, 2), (5, 3)]);
    store.stop().await;
}

// Issue 23, the write lease: a writer that never idles (appends always
// queued) still hands the lease on at the end of each slice, so another
// node's appends are not starved. Another session waiting for the lease
// is granted it while the store still has appends to commit, not once
// it has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_writer_hands_the_lease_on_at_each_slice() {
    let schema = fresh_schema();
    let mut config = EventStoreConfig::postgres(pg_config(&schema));
    // Many groups: many chances to hand the lease on.
    config.max_group = 256;
    let store = EventStore::open(config).await.unwrap();
    append(&store, "busy", 0).await;
    let other = session().await;
    let total = 20_000u64;
    // All queued now: the writer commits group after group.
    let queued: Vec<_> = (0..total)
        .map(|i| store.append(Event::new("busy", "k", json!(i))))
        .collect();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let acknowledging = tokio::spawn({
        let acknowledged = acknowledged.clone();
        async move {
            for append in queued {
                append.await.unwrap();
                acknowledged.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let channel = format!("mabeam_events_{schema}");
    lease(&other, &channel, true).await;
    // The writer waits for the lease now: what it stored so far.
    let stored: i64 = other
        .query_one(&format!("SELECT count(*) FROM {schema}.events"), &[])
        .await
        .unwrap()
        .get(0);
    lease(&other, &channel, false).await;
    within(60, "the queued appends", acknowledging)
        .await
        .unwrap();
    assert!(
        (stored as u64) < total + 1,
        "the lease was handed on only once the writer had nothing to write"
    );
    assert_eq!(acknowledged.load(Ordering::Relaxed), total);
    store.stop().await;
}

// Issue 23: pruning every event of the log keeps its heads. A store that
// takes the lease afterwards (another node, with nothing known) gives
// the next id and stream version, never one again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_every_event_keeps_the_heads_for_the_next_writer() {
    let schema = fresh_schema();
    let store = open(pg_config(&schema)).await;
    for i in 0..3u64 {
        append(&store, "s", i).await;
    }
    append(&store, "t", 0).await;
    let pruned = within(30, "pruning", store.prune_before(u64::MAX / 2))
        .await
        .unwrap();
    assert_eq!(pruned, 4);
    store.stop().await;
    let next = open(pg_config(&schema)).await;
    let appended = append(&next, "s", 3).await;
    assert_eq!((appended.id, appended.stream_version), (5, 4));
    let other = within(
        30,
        "an append expecting a version",
        next.append_expecting(Event::new("t", "k", json!(1)), ExpectedVersion::Exact(1)),
    )
    .await
    .unwrap();
    assert_eq!((other.id, other.stream_version), (6, 2));
    let stats = next.stats().await.unwrap();
    assert_eq!(
        (stats.events, stats.streams, stats.first_id, stats.last_id),
        (2, 2, Some(5), Some(6))
    );
    next.stop().await;
}

// Eight stores (eight nodes) append at once; a subscriber on a ninth,
// woken only by NOTIFY (no local writer), sees every event exactly once
// and in position order, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_every_event_exactly_once_in_order_while_8_writers_append() {
    const WRITERS: u64 = 8;
    const EACH: u64 = 300;
    let schema = fresh_schema();
    let reader = open(pg_config(&schema)).await;
    let mut subscription = reader.subscribe(1);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = open(pg_config(&schema)).await;
        writers.push(tokio::spawn(async move {
            // Pipelined in windows of 16, a batch now and then.
            let mut i = 0;
            while i < EACH {
                if i % 50 == 0 {
                    let batch = (i..i + 5)
                        .map(|j| Event::new(format!("w{w}"), "n", json!({"w": w, "i": j})))
                        .collect();
                    store.append_batch(batch).await.unwrap();
                    i += 5;
                    continue;
                }
                let window: Vec<_> = (i..(i + 16).min(EACH))
                    .map(|j| {
                        store.append(Event::new(format!("w{w}"), "n", json!({"w": w, "i": j})))
                    })
                    .collect();
                i += window.len() as u64;
                for pending in window {
                    pending.await.unwrap();
                }
            }
            store.stop().await;
        }));
    }
    let mut seen = Vec::new();
    let mut payloads = HashSet::new();
    while (seen.len() as u64) < WRITERS * EACH {
        let event = within(60, "the next event", subscription.next())
            .await
            .expect("the subscription ended")
            .expect("a subscription error");
        assert!(
            payloads.insert((
                event.event.data["w"].as_u64(),
                event.event.data["i"].as_u64()
            )),
            "event {} delivered twice",
            event.id
        );
        seen.push(event.id);
    }
    for writer in writers {
        within(60, "a writer", writer).await.unwrap();
    }
    assert_eq!(seen, (1..=WRITERS * EACH).collect::<Vec<_>>());
    // Nothing more: the next read finds nothing beyond.
    assert!(
        reader
            .read_from(WRITERS * EACH + 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    reader.stop().await;
}

// PostgreSQL restarts while four writers append with idempotency keys
// (each retrying an append refused while the server is away): every
// acknowledged append is stored, none twice, ids stay gap-free, and a
// subscriber started before the restart delivers every event once, in
// order, resuming where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_traffic_loses_nothing_acknowledged_and_stores_nothing_twice() {
    const WRITERS: u64 = 4;
    const EACH: u64 = 400;
    let server = private_instance().await;
    let config = pg_config_at(&server.url, &fresh_schema());
    let store = open(config.clone()).await;
    let observer = open(config.clone()).await;
    let mut subscription = observer.subscribe(1);
    let acked = Arc::new(AtomicU64::new(0));
    let (halfway_tx, halfway) = tokio::sync::oneshot::channel::<()>();
    let halfway_tx = Arc::new(parking_lot::Mutex::new(Some(halfway_tx)));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        let acked = acked.clone();
        let halfway_tx = halfway_tx.clone();
        writers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut refusals = 0u64;
            for i in 0..EACH {
                let key = format!("w{w}-{i}");
                loop {
                    let event =
                        Event::new(format!("w{w}"), "n", json!(key)).with_idempotency_key(&key);
                    match store.append(event).await {
                        Ok(appended) => {
                            answers.push((key.clone(), appended.id));
                            break;
                        }
                        Err(EventStoreError::Unavailable(_) | EventStoreError::Storage(_)) => {
                            refusals += 1;
                            assert!(refusals < 100_000, "the store never came back");
                            tokio::task::yield_now().await;
                        }
                        Err(other) => panic!("{key}: {other:?}"),
                    }
                }
                if acked.fetch_add(1, Ordering::Relaxed) + 1 == WRITERS * EACH / 3
                    && let Some(tx) = halfway_tx.lock().take()
                {
                    let _ = tx.send(());
                }
            }
            (answers, refusals)
        }));
    }
    within(60, "a third of the appends", halfway).await.unwrap();
    let restarting = server.clone();
    blocking("restarting PostgreSQL", move || restarting.restart()).await;
    let mut acknowledged: HashMap<String, u64> = HashMap::new();
    let mut refused = 0;
    for writer in writers {
        let (answers, refusals) = within(120, "a writer", writer).await.unwrap();
        refused += refusals;
        for (key, id) in answers {
            acknowledged.insert(key, id);
        }
    }
    assert_eq!(acknowledged.len() as u64, WRITERS * EACH);
    let stored = within(30, "reading the log", store.read_from(1, u64::MAX))
        .await
        .unwrap();
    assert_eq!(
        stored.iter().map(|e| e.id).collect::<Vec<_>>(),
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "ids have a hole"
    );
    let mut by_key: BTreeMap<String, u64> = BTreeMap::new();
    for event in &stored {
        let key = event.event.idempotency_key.clone().unwrap();
        assert!(
            by_key.insert(key.clone(), event.id).is_none(),
            "{key} stored twice"
        );
    }
    assert_eq!(by_key.len() as u64, WRITERS * EACH, "an append is missing");
    for (key, id) in &acknowledged {
        assert_eq!(by_key.get(key), Some(id), "{key} acknowledged as {id}");
    }
    let mut delivered = Vec::new();
    while delivered.len() < stored.len() {
        let event = within(60, "the subscriber after the restart", subscription.next())
            .await
            .expect("the subscription ended")
            .expect("the subscription failed");
        delivered.push(event.id);
    }
    assert_eq!(delivered, (1..=stored.len() as u64).collect::<Vec<_>>());
    eprintln!("restart test: {refused} appends refused while the server was away");
    store.stop().await;
    observer.stop().await;
}

const CHILD_ENV: &str = "PG_CRASH_CHILD";
const KILL_AFTER: usize = 200;

/// The child: appends batches of 1 to 5, 8 in flight, printing each
/// acknowledgement, until it is killed.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child(target: String) {
    let (url, schema) = target.split_once('|').unwrap();
    let store = open(pg_config_at(url, schema)).await;
    let mut in_flight = std::collections::VecDeque::new();
    let mut stdout = std::io::stdout();
    for batch in 0u64.. {
        let size = batch % 5 + 1;
        let events = (0..size)
            .map(|index| {
                Event::new(
                    format!("stream-{}", batch % 3),
                    "appended",
                    json!({"batch": batch, "index": index, "size": size}),
                )
            })
            .collect();
        in_flight.push_back((batch, size, store.append_batch(events)));
        if in_flight.len() >= 8 {
            let (batch, size, pending) = in_flight.pop_front().unwrap();
            let appended = pending.await.unwrap();
            writeln!(stdout, "ack {batch} {} {size}", appended[0].id).unwrap();
            stdout.flush().unwrap();
        }
    }
}

// A client killed by SIGKILL mid-append: every batch it saw acknowledged
// is stored at its id, no batch is stored in part, ids have no hole, and
// the next client appends at once (the killed one's lock died with its
// connection).
#[test]
fn a_client_killed_mid_append_leaves_every_acknowledged_batch_and_no_partial_one() {
    if let Ok(target) = std::env::var(CHILD_ENV) {
        return crash_child(target);
    }
    let url = support::postgres_url();
    let schema = fresh_schema();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_client_killed_mid_append_leaves_every_acknowledged_batch_and_no_partial_one",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{url}|{schema}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Reap(child);
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    while acked.len() < KILL_AFTER {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the child acknowledged nothing for 60 s")
            .unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let f: Vec<u64> = rest.split(' ').map(|f| f.parse().unwrap()).collect();
            acked.push((f[0], f[1], f[2]));
        }
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = open(pg_config_at(&url, &schema)).await;
        let next = within(
            30,
            "an append after the kill",
            store.append(Event::new("after", "n", json!(0))),
        )
        .await
        .unwrap();
        let events = store.read_from(1, u64::MAX).await.unwrap();
        assert_eq!(next.id, events.len() as u64);
        let mut batches: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event.id, i as u64 + 1, "ids have a hole");
            if event.event.stream == "after" {
                continue;
            }
            let data = &event.event.data;
            batches
                .entry(data["batch"].as_u64().unwrap())
                .or_default()
                .push((event.id, data["index"].as_u64().unwrap()));
        }
        for (batch, events) in &batches {
            assert_eq!(
                events.len() as u64,
                batch % 5 + 1,
                "batch {batch} is partial"
            );
        }
        for (batch, first_id, size) in &acked {
            let stored = batches
                .get(batch)
                .unwrap_or_else(|| panic!("acknowledged batch {batch} lost"));
            assert_eq!((stored[0].0, stored.len() as u64), (*first_id, *size));
        }
        store.stop().await;
    });
}

// A server that does not answer: opening fails with a typed error naming
// the URL without its password; the agent store says the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_open_is_a_typed_error_naming_the_url_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/events");
    let error = EventStore::open(EventStoreConfig::postgres(pg_config_at(&url, "down")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), 3016, "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains(&format!("postgres://app:***@127.0.0.1:{port}/events")),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    let error = PostgresAgentStore::open(pg_config_at(&url, "down"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, AgentStoreError::Unavailable(_)),
        "{error:?}"
    );
    assert!(!error.to_string().contains("s3cret"), "{error}");
    assert!(error.to_string().contains("app:***@"), "{error}");
}

// Configured to wait: the store opens with the server down, refuses
// appends and reports unhealthy, then works once the server comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_configured_to_wait_is_unhealthy_until_postgres_comes() {
    let server = private_instance().await;
    let stopping = server.clone();
    blocking("stopping PostgreSQL", move || stopping.stop()).await;
    let store = open(pg_config_at(&server.url, &fresh_schema()).with_wait_for_server(true)).await;
    let health = store.health().await.unwrap_err();
    assert!(health.contains("127.0.0.1"), "{health}");
    let refused = store
        .append(Event::new("s", "k", json!(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, EventStoreError::Unavailable(_)),
        "{refused:?}"
    );
    let starting = server.clone();
    blocking("starting PostgreSQL", move || starting.start_again()).await;
    // The writer connects with its backoff (at most 500 ms apart here).
    within(60, "the store becoming healthy", async {
        while store.health().await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        store
            .append(Event::new("s", "k", json!(1)))
            .await
            .unwrap()
            .id,
        1
    );
    store.stop().await;
    // A store that never saw its server closes too.
    let stopping = server.clone();
    blocking("stopping PostgreSQL", move || stopping.stop()).await;
    let waiting = open(pg_config_at(&server.url, &fresh_schema()).with_wait_for_server(true)).await;
    within(30, "closing a store still waiting", waiting.stop()).await;
}

/// What a [`counting_proxy`] counts over all its connections.
#[derive(Default)]
struct Counted {
    /// The times a client spoke after the server had answered it: the
    /// round trips clients wait for.
    turns: AtomicU64,
    /// The statements clients ran: `Execute` and simple `Query` messages
    /// (but `LISTEN`).
    statements: AtomicU64,
}

/// Counts the statements in a client's byte stream: after the untyped
/// startup message (and an `SSLRequest` before it), each message is a
/// type byte and a length that counts itself.
#[derive(Default)]
struct FrontendMessages {
    started: bool,
    pending: Vec<u8>,
}

impl FrontendMessages {
    /// The statements in the complete messages of `bytes` (and those
    /// before it).
    fn statements_in(&mut self, bytes: &[u8]) -> u64 {
        const SSL_REQUEST: u32 = 80_877_103;
        self.pending.extend_from_slice(bytes);
        let mut statements = 0;
        loop {
            let header = if self.started { 5 } else { 4 };
            if self.pending.len() < header {
                return statements;
            }
            let at = header - 4;
            let length = u32::from_be_bytes(self.pending[at..at + 4].try_into().unwrap());
            let total = at + length as usize;
            if self.pending.len() < total {
                return statements;
            }
            if self.started {
                // The listener's `LISTEN` (its connection may come late)
                // is not an append's.
                let listen =
                    self.pending[0] == b'Q' && self.pending[5..total].starts_with(b"LISTEN");
                statements += u64::from(matches!(self.pending[0], b'E' | b'Q') && !listen);
            } else {
                let code = u32::from_be_bytes(self.pending[4..8].try_into().unwrap());
                self.started = code != SSL_REQUEST;
            }
            self.pending.drain(..total);
        }
    }
}

/// A loopback proxy in front of the server at `port` that counts round
/// trips and statements ([`Counted`]). Its port and counts.
async fn counting_proxy(port: u16) -> (u16, Arc<Counted>, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let counts = Arc::new(Counted::default());
    let counted = counts.clone();
    let proxy = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((client, _)) = listener.accept().await {
            let counts = counted.clone();
            connections.spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    return;
                };
                let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let answered_up = answered.clone();
                let up = async move {
                    let mut buf = vec![0u8; 1 << 16];
                    let mut messages = FrontendMessages::default();
                    while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                        if answered_up.swap(false, Ordering::AcqRel) {
                            counts.turns.fetch_add(1, Ordering::Relaxed);
                        }
                        let statements = messages.statements_in(&buf[..n]);
                        counts.statements.fetch_add(statements, Ordering::Relaxed);
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n @ 1..) = server_read.read(&mut buf).await {
                        // Marked before it is forwarded: the client's
                        // next words come after it.
                        answered.store(true, Ordering::Release);
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::select! {
                    () = up => {}
                    () = down => {}
                }
            });
        }
    });
    (proxy_port, counts, proxy)
}

// Issue 23: an append is one statement in its own transaction (no
// `BEGIN`, no `COMMIT`), and so one round trip, whether or not it
// expects a version. It was one round trip of six statements (`BEGIN`,
// the `$all` row, the rows, the streams' versions, `pg_notify`,
// `COMMIT`; seven with a guard): one task awaiting each append ran at
// 0.38x bare tokio-postgres on a fast disk. The write lease is taken by
// the first append and, with a slice longer than the test, kept: the
// hand-over at each slice's end is a round trip of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_is_one_statement_and_one_round_trip_whether_or_not_it_expects_a_version() {
    let url = support::postgres_url();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let port = config.get_ports()[0];
    let (proxy_port, counts, proxy) = counting_proxy(port).await;
    let proxied = url.replacen(&format!(":{port}/"), &format!(":{proxy_port}/"), 1);
    assert_ne!(proxied, url, "the proxy's URL");
    // No retention: its prunes would be round trips of their own.
    let mut config = EventStoreConfig::postgres(
        pg_config_at(&proxied, &fresh_schema()).with_write_slice(Duration::from_secs(600)),
    );
    config.retention = Retention::keep_all();
    let store = EventStore::open(config).await.unwrap();
    within(
        30,
        "a first append",
        store.append(Event::new("s", "k", json!(0))),
    )
    .await
    .unwrap();
    let counted = || {
        (
            counts.turns.load(Ordering::Relaxed),
            counts.statements.load(Ordering::Relaxed),
        )
    };
    let before = counted();
    for i in 1..=20u64 {
        let appended = within(
            30,
            "an append",
            store.append(Event::new("s", "k", json!(i))),
        )
        .await
        .unwrap();
        assert_eq!((appended.id, appended.stream_version), (i + 1, i + 1));
    }
    let after = counted();
    let any_version = (after.0 - before.0, after.1 - before.1);
    let before = after;
    for i in 21..=40u64 {
        let expecting =
            store.append_expecting(Event::new("s", "k", json!(i)), ExpectedVersion::Exact(i));
        let appended = within(30, "an append expecting a version", expecting)
            .await
            .unwrap();
        assert_eq!((appended.id, appended.stream_version), (i + 1, i + 1));
    }
    let after = counted();
    let expected_version = (after.0 - before.0, after.1 - before.1);
    within(30, "stopping the store", store.stop()).await;
    proxy.abort();
    // One round trip each, and a little room for a pipeline the kernel
    // split; exactly one statement each.
    assert!(
        any_version.0 <= 25 && expected_version.0 <= 25,
        "20 appends took {} round trips, 20 expecting a version {}",
        any_version.0,
        expected_version.0
    );
    assert_eq!(
        (any_version.1, expected_version.1),
        (20, 20),
        "statements for 20 appends, and for 20 expecting a version"
    );
}

// Issue 23: a commit notifies only while some store has subscribers (its
// listener holds the listeners' lock): `pg_notify` takes a queue lock
// at every commit of the server. A connection listening on the channel
// without the lock hears nothing of the first append; once it holds
// the lock it hears the second. Before, every commit notified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_notifies_only_while_a_listener_is_registered() {
    let schema = fresh_schema();
    let store = open(pg_config(&schema)).await;
    let (client, mut connection) = tokio_postgres::connect(&support::postgres_url(), NoTls)
        .await
        .unwrap();
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    let driving = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = heard.send(n.payload().to_owned());
            }
        }
    });
    let channel = format!("mabeam_events_{schema}");
    client
        .batch_execute(&format!("LISTEN \"{channel}\""))
        .await
        .unwrap();
    let first = within(
        30,
        "an append",
        store.append(Event::new("s", "k", json!(1))),
    )
    .await
    .unwrap();
    // Registered as a store's listener registers.
    client
        .query(
            "SELECT pg_advisory_lock_shared(1835098725, hashtext($1))::text",
            &[&channel],
        )
        .await
        .unwrap();
    let second = within(
        30,
        "an append",
        store.append(Event::new("s", "k", json!(2))),
    )
    .await
    .unwrap();
    assert_eq!((first.id, second.id), (1, 2));
    // Notifications arrive in commit order: the first heard is the
    // second commit's.
    let payload = within(30, "a notification", hearing.recv())
        .await
        .expect("the listening connection ended");
    assert_eq!(payload, "2", "the first notification heard");
    store.stop().await;
    drop(client);
    within(30, "the listening connection", driving)
        .await
        .unwrap();
}

// An append is queued when `append` returns: one never awaited is
// committed all the same and reaches a subscriber (a guard for any
// design where callers commit on their own task, as leader/follower
// group commit does: the writer must still commit what no caller
// awaits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_queued_and_never_awaited_is_committed_all_the_same() {
    let store = open(pg_config(&fresh_schema())).await;
    let mut subscription = store.subscribe(1);
    let held = store.append(Event::new("s", "k", json!(1)));
    let first = within(
        30,
        "the held append reaching a subscriber",
        subscription.next(),
    )
    .await
    .expect("the subscription ended")
    .expect("the subscription failed");
    assert_eq!((first.id, first.stream_version), (1, 1));
    drop(held);
    within(30, "stopping the store", store.stop()).await;
}

// Every commit is acknowledged with `synchronous_commit=on` (the WAL
// flushed), as the store sets on its connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_commits_with_synchronous_commit_on() {
    let store = open(pg_config(&fresh_schema())).await;
    assert_eq!(
        store.durability().await.unwrap(),
        Durability {
            journal_mode: "postgres (fsync on)".into(),
            synchronous: "full".into(),
        }
    );
    store.stop().await;
}

// A schema migrated by a newer build is refused, by both stores, and
// left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let schema = fresh_schema();
    let config = pg_config(&schema);
    open(config.clone()).await.stop().await;
    PostgresAgentStore::open(config.clone())
        .await
        .unwrap()
        .stop()
        .await;
    let (client, connection) = tokio_postgres::connect(&config.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!(
            "INSERT INTO {schema}.schema_migrations (component, version) \
             VALUES ('event_store', 7), ('agent_store', 9)"
        ))
        .await
        .unwrap();
    let error = EventStore::open(EventStoreConfig::postgres(config.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        error,
        EventStoreError::NewerSchema {
            found: 7,
            supported: 2
        }
    );
    assert_eq!(error.code(), 3009);
    let error = PostgresAgentStore::open(config).await.unwrap_err();
    assert_eq!(
        error,
        AgentStoreError::NewerSchema {
            found: 9,
            supported: 3
        }
    );
}

// Two clusters share one database: each store sees only its schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schemas_in_one_database_are_two_stores() {
    let a = open(pg_config(&fresh_schema())).await;
    let b = open(pg_config(&fresh_schema())).await;
    a.append(Event::new("s", "k", json!("a"))).await.unwrap();
    let in_b = b.append(Event::new("s", "k", json!("b"))).await.unwrap();
    assert_eq!(in_b.id, 1);
    assert_eq!(a.read_from(1, 10).await.unwrap()[0].event.data, json!("a"));
    a.stop().await;
    b.stop().await;
}
