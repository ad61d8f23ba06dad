//! Fuzzing on stable Rust (proptest) of what a stranger can hand the
//! Foundation services: ConfigServer paths and values (and its persisted
//! file), cluster frames before and after the handshake, and the
//! EventStore's events and stored rows. Nothing panics; every refusal is a
//! typed error with its code; refused input changes nothing.
//!
//! Each property runs a bounded number of cases under `cargo test`;
//! `cargo xtask fuzz --minutes N` sets `MABEAM_FUZZ_SECS`, and each then
//! runs batches of fresh cases until that many seconds have passed.

use std::{
    fmt::Debug,
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use mabeam_foundation_services::{
    ConfigError, ConfigSchema, ConfigServer, ConfigServerConfig, ConfigServerService,
    ConnectionManager, EventStore, EventStoreConfig, NodeEvent, ValueRule,
    event_store::DATABASE_FILE,
};
use mabeam_supervision_core::{ApplicationSpec, ErrorCode, Event, EventQuery};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Map, Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Mutex, broadcast},
};

/// The longest any one step may take.
const WAIT: Duration = Duration::from_secs(20);

/// Runs `test` on `cases` generated inputs, or, with `MABEAM_FUZZ_SECS`
/// set, on batches of fresh ones until that many seconds have passed.
fn fuzz<S>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let budget = std::env::var("MABEAM_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|secs| Instant::now() + Duration::from_secs(secs));
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        if let Err(failure) = runner.run(&strategy, &test) {
            panic!("{failure}");
        }
        if budget.is_none_or(|deadline| Instant::now() >= deadline) {
            return;
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Any JSON, of bounded size.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5i64..1500).prop_map(Value::from),
        prop::num::f64::ANY.prop_map(|f| json!(f)),
        prop::sample::select(vec!["info", "debug", "fast", "", "*"]).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,8}", inner), 0..5)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

// ---------------------------------------------------------------- config

/// A dotted path: schema keys, wildcards, empty keys, odd characters.
fn config_path() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        4 => prop::sample::select(vec![
            "limits", "rate", "burst", "log", "level", "services", "billing", "timeout_ms",
            "node", "name", "flag", "*", "",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,6}",
    ];
    prop::collection::vec(key, 0..5).prop_map(|keys| keys.join("."))
}

fn schema() -> ConfigSchema {
    ConfigSchema::new()
        .updatable("limits.rate", ValueRule::integer(1, 1000))
        .updatable("limits.burst", ValueRule::number(0.5, 10.0))
        .updatable("log.level", ValueRule::one_of(["info", "debug"]))
        .updatable("flag", ValueRule::Bool)
        .updatable("services.*.timeout_ms", ValueRule::integer(1, 60_000))
        .updatable("node.extra", ValueRule::Any)
        .fixed("node.name", ValueRule::string())
}

fn defaults() -> Value {
    json!({
        "limits": {"rate": 10, "burst": 2.0},
        "log": {"level": "info"},
        "flag": false,
        "services": {"billing": {"timeout_ms": 100}, "scalar": 5},
        "node": {"name": "a"},
    })
}

#[test]
fn config_updates_apply_or_get_typed_refusals_that_change_nothing() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let service = ConfigServerService::new(
        ConfigServerConfig::new(dir.path())
            .with_schema(schema())
            .with_defaults(defaults()),
    )
    .unwrap();
    let config = service.server();
    let app = runtime
        .block_on(ApplicationSpec::new("fuzz").service(service).start())
        .unwrap();
    let file = dir
        .path()
        .join(mabeam_foundation_services::config_server::CONFIG_FILE);
    fuzz(256, (config_path(), json_value()), |(path, value)| {
        // Reads of any path answer or refuse, typed.
        match config.get(&path) {
            Ok(_) => {}
            Err(error) => prop_assert!(
                matches!(
                    error,
                    ConfigError::NotFound { .. } | ConfigError::InvalidPath { .. }
                ),
                "get {path:?}: {error}"
            ),
        }
        let before = config.snapshot();
        let file_before = std::fs::read(&file).ok();
        let outcome = runtime.block_on(async {
            tokio::time::timeout(WAIT, config.update(&path, value.clone()))
                .await
                .expect("an update answers")
        });
        match outcome {
            Ok(_) => prop_assert_eq!(config.get(&path).ok(), Some(value)),
            Err(error) => {
                prop_assert!((3101..=3199).contains(&error.code()), "{path:?}: {error}");
                prop_assert_eq!(
                    &config.snapshot(),
                    &before,
                    "{:?} refused yet changed",
                    path
                );
                prop_assert_eq!(std::fs::read(&file).ok(), file_before);
            }
        }
        Ok(())
    });
    runtime.block_on(app.stop()).unwrap();
}

/// The persisted file: overrides as the server writes them with generated
/// paths and values, JSON cut short, or bytes.
fn persisted_file() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (any::<u32>(), prop::collection::vec((config_path(), json_value()), 0..5))
            .prop_map(|(format, entries)| {
                json!({"format": format % 3, "entries": entries}).to_string().into_bytes()
            }),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..80),
    ]
}

#[test]
fn a_persisted_config_file_loads_or_is_refused_untouched() {
    fuzz(256, persisted_file(), |bytes| {
        let dir = tempfile::tempdir().unwrap();
        let file = dir
            .path()
            .join(mabeam_foundation_services::config_server::CONFIG_FILE);
        std::fs::write(&file, &bytes).unwrap();
        let server = ConfigServer::new(
            ConfigServerConfig::new(dir.path())
                .with_schema(schema())
                .with_defaults(defaults()),
        );
        match server {
            // Whatever it loaded, the fixed values are the defaults'.
            Ok(server) => prop_assert_eq!(server.get("node.name").ok(), Some(json!("a"))),
            Err(error) => prop_assert!(
                matches!(error, ConfigError::CorruptedFile { .. }),
                "{error} (code {})",
                error.code()
            ),
        }
        prop_assert_eq!(std::fs::read(&file).unwrap(), bytes);
        Ok(())
    });
}

// --------------------------------------------------------------- cluster

const COOKIE: &str = "fuzz-cookie";

/// Bytes a stranger sends: frames (a length, then JSON shaped like the
/// protocol's or not), lengths that lie, or noise.
fn wire_bytes() -> impl Strategy<Value = Vec<u8>> {
    let frame_json = prop_oneof![
        3 => (
            prop::sample::select(vec![
                "hello", "welcome", "proof", "accepted", "refused", "tick", "bye", "replaced",
                "other",
            ]),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "version", "node", "challenge", "proof", "reason", "generation", "x",
                    ]),
                    json_value(),
                ),
                0..4,
            ),
        )
            .prop_map(|(kind, fields)| {
                let mut object: Map<String, Value> =
                    fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                object.insert("type".into(), Value::from(kind));
                Value::Object(object).to_string().into_bytes()
            }),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
    ];
    let framed = prop::collection::vec(
        (
            frame_json,
            prop_oneof![4 => Just(None), 1 => any::<u32>().prop_map(Some)],
        ),
        1..4,
    )
    .prop_map(|frames| {
        let mut bytes = Vec::new();
        for (body, lie) in frames {
            let len = lie.unwrap_or(body.len() as u32);
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(&body);
        }
        bytes
    });
    prop_oneof![4 => framed, 1 => prop::collection::vec(any::<u8>(), 0..64)]
}

/// Waits for `node`'s next up (`up`) or down notice on `events`; answers
/// the down reason.
async fn notice(
    events: &mut broadcast::Receiver<NodeEvent>,
    node: &str,
    up: bool,
) -> Result<String, TestCaseError> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Up(info)) if up && &*info.node == node => return String::new(),
                Ok(NodeEvent::Down { node: n, reason }) if !up && &*n == node => return reason,
                Ok(_) => {}
                Err(error) => panic!("the notices ended: {error}"),
            }
        }
    };
    tokio::time::timeout(WAIT, wait).await.map_err(|_| {
        TestCaseError::fail(format!(
            "no {} notice of {node}",
            if up { "up" } else { "down" }
        ))
    })
}

#[test]
fn bytes_before_the_handshake_are_refused_and_record_no_node() {
    let runtime = runtime();
    let b = ConnectionManager::builder("b@fuzz", COOKIE)
        .handshake_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let b_addr: SocketAddr = runtime.block_on(b.start()).unwrap();
    fuzz(64, wire_bytes(), |bytes| {
        runtime.block_on(async {
            let mut stream = TcpStream::connect(b_addr).await.unwrap();
            // The node may close before reading it all: a refusal.
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
            let mut answer = Vec::new();
            let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
            prop_assert!(read.is_ok(), "the node kept a stranger's connection open");
            // Whatever it answered is frames of JSON objects.
            let mut rest = &answer[..];
            while rest.len() >= 4 {
                let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                prop_assert!(rest.len() >= 4 + len, "a torn frame: {answer:?}");
                let frame: Value = serde_json::from_slice(&rest[4..4 + len])
                    .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
                prop_assert!(frame["type"].is_string(), "{frame}");
                rest = &rest[4 + len..];
            }
            prop_assert!(rest.is_empty(), "trailing bytes: {answer:?}");
            prop_assert!(
                b.nodes().is_empty(),
                "a stranger was recorded: {:?}",
                b.nodes()
            );
            Ok(())
        })
    });
    // The node still takes a real peer.
    runtime.block_on(async {
        let a = ConnectionManager::builder("a@fuzz", COOKIE)
            .build()
            .unwrap();
        a.start().await.unwrap();
        assert_eq!(&*a.connect(b_addr).await.unwrap(), "b@fuzz");
        a.stop().await;
        b.stop().await;
    });
}

/// Reads one frame (length and body) from `from`.
async fn frame(from: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = from.read_u32().await?;
    if len > 1 << 20 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut bytes = len.to_be_bytes().to_vec();
    let start = bytes.len();
    bytes.resize(start + len as usize, 0);
    from.read_exact(&mut bytes[start..]).await?;
    Ok(bytes)
}

/// Node `a` dials `b` through a proxy that passes the handshake on frame
/// by frame; once `b` has the connection up, the proxy sends `b` the
/// generated bytes in place of a's next frames, then cuts both sides.
/// `b` must call `a` down, typed, and keep serving.
#[test]
fn bytes_after_the_handshake_end_the_connection_cleanly() {
    let runtime = runtime();
    let (a, b, proxy, b_addr) = runtime.block_on(async {
        let a = ConnectionManager::builder("a@fuzz", COOKIE)
            .build()
            .unwrap();
        let b = ConnectionManager::builder("b@fuzz", COOKIE)
            .build()
            .unwrap();
        a.start().await.unwrap();
        let b_addr = b.start().await.unwrap();
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        (a, b, proxy, b_addr)
    });
    let proxy_addr = proxy.local_addr().unwrap();
    fuzz(48, wire_bytes(), |bytes| {
        runtime.block_on(async {
            let mut a_events = a.subscribe();
            let mut b_events = b.subscribe();
            let dialling = tokio::spawn({
                let a = a.clone();
                async move { a.connect(proxy_addr).await }
            });
            let (from_a, _) = proxy.accept().await.unwrap();
            let to_b = TcpStream::connect(b_addr).await.unwrap();
            let (mut a_read, mut a_write) = from_a.into_split();
            let (mut b_read, b_write) = to_b.into_split();
            let b_write = Arc::new(Mutex::new(Some(b_write)));
            let b_to_a = tokio::spawn(async move {
                let _ = tokio::io::copy(&mut b_read, &mut a_write).await;
            });
            let a_to_b = tokio::spawn({
                let b_write = b_write.clone();
                async move {
                    while let Ok(frame) = frame(&mut a_read).await {
                        match b_write.lock().await.as_mut() {
                            Some(w) => {
                                if w.write_all(&frame).await.is_err() {
                                    return;
                                }
                            }
                            None => return,
                        }
                    }
                }
            });
            notice(&mut b_events, "a@fuzz", true).await?;
            let dialled = tokio::time::timeout(WAIT, dialling).await;
            prop_assert!(matches!(dialled, Ok(Ok(Ok(_)))), "a's dial: {dialled:?}");
            // From here b hears the generated bytes instead of a.
            {
                let mut writer = b_write.lock().await;
                if let Some(w) = writer.as_mut() {
                    let _ = w.write_all(&bytes).await;
                }
                *writer = None;
            }
            a_to_b.abort();
            b_to_a.abort();
            let _ = a_to_b.await;
            let _ = b_to_a.await;
            let reason = notice(&mut b_events, "a@fuzz", false).await?;
            prop_assert!(!reason.is_empty());
            notice(&mut a_events, "b@fuzz", false).await?;
            prop_assert!(b.nodes().is_empty(), "{:?}", b.nodes());
            Ok(())
        })
    });
    runtime.block_on(async {
        // Both still connect directly.
        assert_eq!(&*a.connect(b_addr).await.unwrap(), "b@fuzz");
        a.stop().await;
        b.stop().await;
    });
}

// ----------------------------------------------------------- event store

/// An event as a caller could send it: any stream, kind and data.
fn event() -> impl Strategy<Value = (String, String, Value)> {
    (
        prop_oneof![3 => "[a-z.:-]{1,12}", 1 => "\\PC{0,16}", 1 => Just(String::new())],
        prop_oneof![3 => "[a-z._]{1,12}", 1 => "\\PC{0,16}", 1 => Just(String::new())],
        json_value(),
    )
}

/// Found by the property below: a number read back from the store was
/// one unit in the last place off (serde_json's fast float parsing), so an
/// acknowledged event was not the event sent.
#[test]
fn a_number_in_an_event_reads_back_exactly() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let store = EventStore::open(EventStoreConfig::new(dir.path()))
            .await
            .unwrap();
        let data = json!({"x": -3.3021986805634177e-174, "y": 0.1, "z": 1.7976931348623157e308});
        let appended = store
            .append(Event::new("s", "k", data.clone()))
            .await
            .unwrap();
        assert_eq!(store.get(appended.id).await.unwrap().event.data, data);
        store.stop().await;
    });
}

#[test]
fn events_are_stored_as_sent_or_refused_typed_and_not_stored() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime
        .block_on(EventStore::open(
            EventStoreConfig::new(dir.path()).with_max_event_bytes(512),
        ))
        .unwrap();
    fuzz(256, event(), |(stream, kind, data)| {
        runtime.block_on(async {
            let before = store.stats().await.unwrap().events;
            let sent = Event::new(stream.clone(), kind.clone(), data.clone());
            match store.append(sent).await {
                Ok(appended) => {
                    let got = store.get(appended.id).await.unwrap();
                    prop_assert_eq!(&got.event.stream, &stream);
                    prop_assert_eq!(&got.event.kind, &kind);
                    prop_assert_eq!(&got.event.data, &data);
                }
                Err(error) => {
                    prop_assert!((3001..=3099).contains(&error.code()), "{error}");
                    prop_assert_eq!(store.stats().await.unwrap().events, before);
                }
            }
            Ok(())
        })
    });
    runtime.block_on(store.stop());
}

/// What a damaged row's column may hold.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Sql};
        Ok(ToSqlOutput::Owned(match self {
            Cell::Null => Sql::Null,
            Cell::Integer(i) => Sql::Integer(*i),
            Cell::Real(f) => Sql::Real(*f),
            Cell::Text(s) => Sql::Text(s.clone()),
            Cell::Blob(b) => Sql::Blob(b.clone()),
        }))
    }
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        Just(Cell::Null),
        any::<i64>().prop_map(Cell::Integer),
        prop::num::f64::ANY.prop_map(Cell::Real),
        json_value().prop_map(|v| Cell::Text(v.to_string())),
        "\\PC{0,24}".prop_map(Cell::Text),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Cell::Blob),
    ]
}

/// Folds the WAL into the main file, so the test may edit it.
fn fold_wal(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
}

#[test]
fn a_damaged_stored_row_reads_as_a_typed_error_and_spoils_no_other() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join(DATABASE_FILE);
    let originals = runtime.block_on(async {
        let store = EventStore::open(EventStoreConfig::new(dir.path()))
            .await
            .unwrap();
        for i in 1..=3 {
            let event = Event::new("s", "k", json!({"n": i})).with_metadata("m", json!(i));
            store.append(event).await.unwrap();
        }
        let all = store.read_from(1, 10).await.unwrap();
        store.stop().await;
        all
    });
    fold_wal(&db);
    let columns = [
        "stream",
        "stream_version",
        "kind",
        "ts_ms",
        "node",
        "correlation_id",
        "causation_id",
        "idempotency_key",
        "metadata",
        "data",
    ];
    fuzz(
        64,
        (prop::sample::select(columns.to_vec()), cell()),
        |(column, cell)| {
            {
                let conn = rusqlite::Connection::open(&db).unwrap();
                // Constraints (NOT NULL, unique indexes) may refuse the damage.
                let damaged = conn.execute(
                    &format!("UPDATE events SET {column} = ?1 WHERE id = 2"),
                    [&cell],
                );
                prop_assume!(damaged.is_ok());
            }
            let result: Result<(), TestCaseError> = runtime.block_on(async {
                let store = EventStore::open(EventStoreConfig::new(dir.path()))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("open: {e}")))?;
                let typed = |error: &mabeam_foundation_services::EventStoreError| {
                    (3001..=3099).contains(&error.code())
                };
                if let Err(error) = store.get(2).await {
                    prop_assert!(typed(&error), "{error}");
                }
                if let Err(error) = store.read_from(1, 10).await {
                    prop_assert!(typed(&error), "{error}");
                }
                if let Err(error) = store.query(EventQuery::new()).await {
                    prop_assert!(typed(&error), "{error}");
                }
                let _ = store.causation_chain(2).await;
                // The rows around it read as they were stored.
                for original in [&originals[0], &originals[2]] {
                    let got = store.get(original.id).await;
                    prop_assert_eq!(got.as_ref().ok(), Some(original));
                }
                store.stop().await;
                Ok(())
            });
            // Undo the damage for the next case.
            let conn = rusqlite::Connection::open(&db).unwrap();
            let original = &originals[1];
            conn.execute(
                "UPDATE events SET stream = ?1, stream_version = ?2, kind = ?3, ts_ms = ?4, \
                 node = ?5, correlation_id = ?6, causation_id = ?7, idempotency_key = ?8, \
                 metadata = ?9, data = ?10 WHERE id = 2",
                rusqlite::params![
                    original.event.stream,
                    original.stream_version as i64,
                    original.event.kind,
                    original.timestamp_ms as i64,
                    original.event.node.as_deref(),
                    original.event.correlation_id,
                    original.event.causation_id.map(|c| c as i64),
                    original.event.idempotency_key,
                    serde_json::to_string(&original.event.metadata).unwrap(),
                    original.event.data.to_string(),
                ],
            )
            .unwrap();
            result
        },
    );
}
