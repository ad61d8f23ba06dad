//! Fuzzing on stable Rust (proptest) of what a stranger can send the node:
//! HTTP bodies, query strings and path parameters of its API (driven
//! through the router in process), and the config file. Nothing panics;
//! every refusal is typed JSON with a code in the API's range
//! (9100-9199) or a [`NodeError`] with its code; a refused request changes
//! no agent and stores no event.
//!
//! Each property runs a bounded number of cases under `cargo test`;
//! `cargo xtask fuzz --minutes N` sets `MABEAM_FUZZ_SECS`, and each then
//! runs batches of fresh cases until that many seconds have passed.

use std::{
    fmt::Debug,
    path::Path,
    sync::{Arc, atomic::AtomicU64},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{Method, Request},
};
use http_body_util::BodyExt;
use mabeam::{System, SystemBuilder};
use mabeam_node::{
    NodeConfig,
    http::{API_MUTATION, ApiState, router},
    kinds::AgentKinds,
    observer::{NodeInfo, Observer},
};
use mabeam_supervision_core::ErrorCode;
use mabeam_telemetry::PrometheusExporter;
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";
/// The longest one request may take (a vote or an auction waits up to its
/// own bound, generated below 1 s).
const REQUEST_WAIT: Duration = Duration::from_secs(30);

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

/// A node's trees and router, in process, on a runtime of the test's own
/// (the mutation rate left unlimited, so generated requests reach the
/// body parsers rather than the rate limiter).
struct Api {
    runtime: tokio::runtime::Runtime,
    system: System,
    router: Router,
    _dir: tempfile::TempDir,
}

impl Api {
    fn start() -> Api {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (system, router) = runtime.block_on(async {
            let exporter = PrometheusExporter::with_per_process_labels(false);
            let system = SystemBuilder::new()
                .data_dir(dir.path())
                .config_defaults(NodeConfig::default().defaults())
                .rate_limit(
                    API_MUTATION,
                    mabeam_foundation_services::Rule::per_second(1_000_000).with_burst(1_000_000),
                )
                .build()
                .unwrap();
            system.start().await.unwrap();
            let router = router(ApiState {
                cluster: None,
                ownership: None,
                system: system.clone(),
                exporter,
                token: TOKEN.into(),
                public_reads: false,
                kinds: AgentKinds::builtin(),
                next_id: Arc::new(AtomicU64::new(1)),
                observer: Observer::new(
                    system.clone(),
                    NodeInfo {
                        name: "fuzz".to_owned(),
                        version: env!("CARGO_PKG_VERSION"),
                        data_dir: dir.path().to_owned(),
                        store: "sqlite",
                    },
                    None,
                ),
            });
            (system, router)
        });
        let api = Api {
            runtime,
            system,
            router,
            _dir: dir,
        };
        // Agents for generated requests to find: a counter and a worker.
        for body in [
            r#"{"kind": "counter", "id": "c1"}"#,
            r#"{"kind": "worker", "id": "w1"}"#,
        ] {
            let (status, reply) = api.send(Method::POST, "/api/agents", body.as_bytes().to_vec());
            assert_eq!(status, 201, "{reply}");
        }
        api
    }

    /// One request with the token; the status and the body as JSON
    /// (`Value::String` of the text when it is not JSON).
    fn send(&self, method: Method, uri: &str, body: Vec<u8>) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(body))
            .expect("generated URIs are valid");
        self.runtime.block_on(async {
            let response = tokio::time::timeout(REQUEST_WAIT, self.router.clone().oneshot(request))
                .await
                .unwrap_or_else(|_| panic!("{uri}: no answer within {REQUEST_WAIT:?}"))
                .unwrap();
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (status, body)
        })
    }

    /// What a refused request must leave as it was: every agent (id,
    /// status, restarts) and every event outside the streams the services
    /// record into themselves (agents' lifecycles, decisions, auctions,
    /// config changes: some recorded after the answer).
    fn state(&self) -> (Vec<(String, String, u64)>, Vec<u64>) {
        let registry = self
            .system
            .agents()
            .and_then(|agents| agents.registry())
            .expect("agents run");
        let mut agents: Vec<_> = registry
            .list()
            .into_iter()
            .map(|a| {
                (
                    a.id.to_string(),
                    format!("{:?}", a.status),
                    a.restarts as u64,
                )
            })
            .collect();
        agents.sort();
        let events = self.runtime.block_on(async {
            self.system
                .event_store()
                .expect("the node has an event store")
                .read_from(1, 1_000_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| {
                    !["agent:", "coordination.", "economics.", "config"]
                        .iter()
                        .any(|own| e.event.stream.starts_with(own))
                })
                .map(|e| e.id)
                .collect()
        });
        (agents, events)
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.system.stop());
    }
}

/// A failed answer is typed: JSON with a code in the API's range, its
/// name and a message.
fn check_typed(what: &str, status: u16, body: &Value) -> Result<(), TestCaseError> {
    prop_assert!(status < 500 || status == 503, "{what}: {status} {body}");
    if status >= 400 {
        let code = body["code"].as_u64();
        prop_assert!(
            code.is_some_and(|c| (9100..=9199).contains(&c)),
            "{what}: {status} without a typed error: {body}"
        );
        prop_assert!(body["error"].is_string(), "{what}: {body}");
        prop_assert!(body["message"].is_string(), "{what}: {body}");
    }
    Ok(())
}

/// Keys the endpoints read, mixed with others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "kind", "id", "args", "protocol", "body", "timeout_ms", "stream", "data",
            "topic", "value", "agents", "rule", "share", "item", "reserve", "bidding_ms",
            "start", "by", "valuation", "approve_up_to",
        ])
        .prop_map(str::to_owned),
        1 => "\\PC{0,12}",
    ]
}

/// Leaves: strings the endpoints know, odd numbers, anything.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Small waits: a valid vote or auction must not stall the run.
        (0u64..800).prop_map(Value::from),
        prop::num::f64::ANY.prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "counter",
            "worker",
            "c1",
            "w1",
            "counter.add",
            "counter.get",
            "worker.stats",
            "majority",
            "unanimous",
            "supermajority",
            "vickrey",
            "first_price",
            "",
        ])
        .prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
    ]
}

/// Any JSON, shaped like the endpoints' bodies often enough to get past
/// the first check.
fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A body: generated JSON, JSON cut short, or bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
            let text = v.to_string().into_bytes();
            let at = cut.index(text.len() + 1);
            text[..at].to_vec()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// The mutating routes that read a body, with `{id}` to fill.
const POSTS: [&str; 6] = [
    "/api/agents",
    "/api/agents/{id}/ask",
    "/api/events",
    "/api/coordination/vote",
    "/api/economics/auction",
    "/api/services/{id}/restart",
];

/// A path parameter: a known name, or any bytes percent-encoded.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => prop::sample::select(vec!["c1", "w1", "nobody", "health_monitor"]).prop_map(str::to_owned),
        1 => prop::collection::vec(any::<u8>(), 1..12)
            .prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02X}")).collect()),
        1 => "[a-zA-Z0-9._~-]{1,12}",
    ]
}

#[test]
fn generated_bodies_get_typed_refusals_and_change_nothing() {
    let api = Api::start();
    fuzz(
        96,
        (prop::sample::select(POSTS.to_vec()), segment(), body()),
        |(route, id, body)| {
            let uri = route.replace("{id}", &id);
            let before = api.state();
            let (status, reply) = api.send(Method::POST, &uri, body.clone());
            check_typed(&uri, status, &reply)?;
            if (400..500).contains(&status) {
                prop_assert_eq!(
                    api.state(),
                    before,
                    "{} refused ({}) yet changed state: {}",
                    uri,
                    status,
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        },
    );
}

/// A query string of URI-legal characters: the endpoints' keys and
/// values, percent escapes (some invalid), separators.
fn query() -> impl Strategy<Value = String> {
    let pair = (
        prop_oneof![
            3 => prop::sample::select(vec!["after", "limit", "offset", "status", "kind", "wait_ms"])
                .prop_map(str::to_owned),
            1 => "[a-z%=&+]{0,6}",
        ],
        prop_oneof![
            Just(String::new()),
            // Waits stay short: a valid long poll at the end of the log waits.
            (0u64..50).prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec!["running", "stopped", "counter", "-1", "1e3", "0x10"])
                .prop_map(str::to_owned),
            "[a-zA-Z0-9%+._~-]{0,16}",
            prop::collection::vec(any::<u8>(), 1..8)
                .prop_map(|bytes| bytes.iter().map(|b| format!("%{b:02X}")).collect()),
        ],
    );
    prop::collection::vec(pair, 0..5).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    })
}

#[test]
fn generated_query_strings_get_pages_or_typed_refusals() {
    let api = Api::start();
    fuzz(
        96,
        (
            prop::sample::select(vec!["/api/agents", "/api/events"]),
            query(),
        ),
        |(route, query)| {
            let uri = format!("{route}?{query}");
            let (status, reply) = api.send(Method::GET, &uri, Vec::new());
            check_typed(&uri, status, &reply)?;
            prop_assert!(status == 200 || status == 400, "{uri}: {status} {reply}");
            Ok(())
        },
    );
}

#[test]
fn generated_path_parameters_get_typed_refusals() {
    let api = Api::start();
    fuzz(
        64,
        (
            prop::sample::select(vec![
                (Method::DELETE, "/api/agents/{id}"),
                (Method::POST, "/api/agents/{id}/ask"),
                (Method::POST, "/api/agents/{id}/kill"),
                (Method::POST, "/api/agents/{id}/passivate"),
                (Method::POST, "/api/services/{id}/restart"),
                (Method::GET, "/api/{id}"),
                (Method::PUT, "/api/agents"),
            ]),
            segment(),
        ),
        |((method, route), id)| {
            let uri = route.replace("{id}", &id);
            let body = br#"{"protocol": "counter.get"}"#.to_vec();
            let (status, reply) = api.send(method, &uri, body);
            check_typed(&uri, status, &reply)
        },
    );
}

/// TOML text: the file's keys with generated values, or any text.
fn config_text() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        "\\PC{0,20}".prop_map(|s| format!("{s:?}")),
        prop::sample::select(vec![
            "\"127.0.0.1:0\"",
            "\"[::1]:4000\"",
            "\"0.0.0.0:1\"",
            "\"info\"",
            "[\"127.0.0.1:1\", 3]",
            "{ a = 1 }",
            "\"\"",
            "\"   \"",
            "1e999",
            "nan",
        ])
        .prop_map(str::to_owned),
    ];
    let line = (
        prop::sample::select(vec![
            "data_dir",
            "log",
            "[http]",
            "addr",
            "allow_non_loopback",
            "token",
            "[telemetry]",
            "retention_secs",
            "per_agent_labels",
            "[cluster]",
            "node",
            "listen",
            "seeds",
            "cookie",
            "unknown",
        ]),
        value,
    )
        .prop_map(|(key, value)| {
            if key.starts_with('[') {
                key.to_owned()
            } else {
                format!("{key} = {value}")
            }
        });
    prop_oneof![
        3 => prop::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n")),
        1 => "\\PC{0,200}",
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
    ]
}

#[test]
fn generated_config_files_load_or_get_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mabeam.toml");
    fuzz(256, config_text(), |text| {
        match NodeConfig::from_toml(&text, &path) {
            Ok(config) => {
                // A loaded config is one the node can check and describe.
                if let Err(error) = config.check() {
                    prop_assert!((9000..=9999).contains(&error.code()), "{error}");
                }
                let _ = config.defaults();
            }
            Err(error) => {
                prop_assert!((9000..=9999).contains(&error.code()), "{error}");
                prop_assert!(!error.to_string().is_empty());
            }
        }
        // The same text read from a file answers the same.
        std::fs::write(&path, &text).unwrap();
        prop_assert_eq!(
            NodeConfig::from_file(Path::new(&path)).map_err(|e| e.code()),
            NodeConfig::from_toml(&text, &path).map_err(|e| e.code())
        );
        Ok(())
    });
}
