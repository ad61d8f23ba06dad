//! The observer: a live page of the node in the browser, as Erlang's
//! `observer` and Phoenix's LiveDashboard show a running system.
//!
//! `GET /` serves one page whose HTML, CSS and JavaScript are embedded in
//! the binary (`include_str!`, debug builds too): no CDN, no build step,
//! works offline. The page subscribes once to `GET /api/observer/stream`,
//! a Server-Sent Events stream, and updates in place:
//!
//! - a sampler task ([`Observer`]) builds one frame per tick (system,
//!   both trees, health with its history, metric samples, agent counts,
//!   cluster members) and publishes it to every open stream, serialized
//!   once however many streams are open;
//! - each stream also tails the EventStore: each stored event is an SSE
//!   message whose `id` is its position, so a browser that reconnects
//!   (after a node restart) sends `Last-Event-ID` and resumes right after
//!   it: nothing missed, nothing repeated. Frames carry no id (they are
//!   state, not history: the next one replaces them).
//!
//! The stream always answers 200, even while the node is unhealthy: an
//! `EventSource` gives up for good on any other status.
//!
//! Reads the page needs beside the stream: `GET /api/observer/agents`
//! (paged from the server, filtered by kind, status and id prefix,
//! sorted) and `GET /api/observer/agents/{id}` (details and recent
//! events). Actions, behind the bearer token and the `api.mutation` rate
//! rule like every mutation: `POST /api/agents/{id}/stop`,
//! `POST /api/agents/{id}/passivate`, `POST /api/agents/{id}/kill`,
//! `POST /api/observer/agents/batch` (start many agents of a kind at
//! once); restarting a service and starting one agent use the API's
//! existing endpoints.

mod agents;
mod assets;
mod index;
mod sampler;
mod stream;

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    routing::{get, post},
};
use mabeam::{FoundationApp, MabeamApp, System};
use mabeam_supervision_core::{MetaValue, events};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::{runtime::Handle, sync::watch, task::JoinHandle};

use crate::http::ApiState;

/// How often the sampler builds a frame.
pub const TICK: Duration = Duration::from_millis(500);
/// How many metric samples (one per second) the page can draw: 5 minutes.
pub const HISTORY: usize = 300;
/// How many health checks per service the page keeps.
pub const HEALTH_HISTORY: usize = 30;
/// How many stored events a fresh stream (no `Last-Event-ID`) replays.
pub const TAIL: u64 = 200;

/// What the System panel names: fixed at start.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node's name in its cluster.
    pub name: String,
    /// The binary's version.
    pub version: &'static str,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The event store's backend.
    pub store: &'static str,
}

/// Counters the telemetry handler bumps inline (atomics: the handler runs
/// on the emitting task and must not block).
#[derive(Debug, Default)]
struct Counters {
    agent_starts: AtomicU64,
    agent_restarts: AtomicU64,
    service_starts: AtomicU64,
    service_restarts: AtomicU64,
    asks: AtomicU64,
    /// Exits by reason (`normal`, `shutdown`, `killed`, `panic`, ...).
    exits: Mutex<BTreeMap<String, u64>>,
    /// Starts of each top-level service, by `(tree, service)`: an admin
    /// restart (terminate, then start) is no crash restart, so the tree's
    /// restart counts miss it; the page shows both.
    service_starts_by: Mutex<BTreeMap<(String, String), u64>>,
}

/// The class of an exit reason: its text before the first `:` or space.
fn reason_class(reason: &str) -> String {
    let class = reason
        .split([':', ' ', '('])
        .next()
        .unwrap_or("")
        .trim()
        .to_lowercase();
    if class.is_empty() {
        "unknown".to_owned()
    } else {
        class
    }
}

impl Counters {
    fn exit(&self, reason: &str) {
        *self.exits.lock().entry(reason_class(reason)).or_default() += 1;
    }
}

/// The observer's state, shared by the sampler and the streams. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Observer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    system: System,
    info: NodeInfo,
    started: Instant,
    /// Changes with every start of the node: the page resets its state
    /// when it sees a new one after reconnecting.
    boot: String,
    counters: Counters,
    agent_runtime: Option<Handle>,
    frames: watch::Sender<Arc<sampler::Frame>>,
    history: Mutex<VecDeque<Value>>,
    health: Mutex<BTreeMap<String, VecDeque<Value>>>,
    sampler: Mutex<Option<JoinHandle<()>>>,
    /// The agents as the table pages them, and the task keeping it.
    index: index::AgentIndex,
    indexer: Mutex<Option<JoinHandle<()>>>,
    /// Set when the node stops: open streams end (a graceful HTTP
    /// shutdown waits for every response, and a stream never ends).
    closed: watch::Sender<bool>,
}

impl Observer {
    /// An observer of `system`, counting its telemetry from now on (make
    /// it before the system starts to count the services' first starts);
    /// [`start`](Self::start) begins sampling.
    pub fn new(system: System, info: NodeInfo, agent_runtime: Option<Handle>) -> Self {
        let boot = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let observer = Observer {
            inner: Arc::new(Inner {
                system,
                info,
                started: Instant::now(),
                boot,
                counters: Counters::default(),
                agent_runtime,
                frames: watch::channel(Arc::new(sampler::Frame::default())).0,
                history: Mutex::new(VecDeque::with_capacity(HISTORY)),
                health: Mutex::new(BTreeMap::new()),
                sampler: Mutex::new(None),
                index: index::AgentIndex::default(),
                indexer: Mutex::new(None),
                closed: watch::channel(false).0,
            }),
        };
        let weak = Arc::downgrade(&observer.inner);
        // The handler holds a weak reference: a detached or stopped
        // observer is not kept alive by the node's telemetry.
        let _ = observer
            .inner
            .system
            .telemetry()
            .attach("observer", &[], move |event| {
                if let Some(inner) = weak.upgrade() {
                    count(&inner.counters, event);
                }
            });
        observer
    }

    /// Starts the sampler task.
    pub fn start(&self) {
        let observer = self.clone();
        let task = tokio::spawn(async move { sampler::run(observer).await });
        *self.inner.sampler.lock() = Some(task);
        let indexer = tokio::spawn(index::run(self.inner.clone()));
        *self.inner.indexer.lock() = Some(indexer);
    }

    /// Stops the sampler and detaches the handler; open streams end.
    pub fn stop(&self) {
        self.inner.closed.send_replace(true);
        self.inner.system.telemetry().detach("observer");
        for task in [&self.inner.sampler, &self.inner.indexer] {
            if let Some(task) = task.lock().take() {
                task.abort();
            }
        }
    }

    /// The latest frame (what a new stream sends first).
    fn frames(&self) -> watch::Receiver<Arc<sampler::Frame>> {
        self.inner.frames.subscribe()
    }

    /// The routes of the page, its stream and its endpoints. The stream is
    /// long-lived: whoever mounts these keeps it outside any request
    /// timeout (see [`crate::http::router`]).
    pub(crate) fn routes() -> Router<ApiState> {
        Router::new()
            .route("/", get(assets::index))
            .route("/observer/{file}", get(assets::file))
            // Long-lived: must stay outside any request timeout layer.
            .route("/api/observer/stream", get(stream::stream))
            .route("/api/observer/agents", get(agents::page))
            .route("/api/observer/agents/batch", post(agents::batch))
            .route("/api/observer/agents/{id}", get(agents::detail))
            .route("/api/agents/{id}/stop", post(agents::stop))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in [self.sampler.get_mut(), self.indexer.get_mut()] {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }
}

/// Counts one telemetry event into the observer's counters.
fn count(counters: &Counters, event: &mabeam_supervision_core::TelemetryEvent<'_>) {
    let text = |key| match event.meta(key) {
        Some(MetaValue::Str(s)) => s.to_owned(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    if event.name == events::AGENT_STATUS {
        match text("to").as_str() {
            "running" => {
                counters.agent_starts.fetch_add(1, Ordering::Relaxed);
            }
            "restarting" => {
                counters.agent_restarts.fetch_add(1, Ordering::Relaxed);
            }
            "crashed" | "stopped" | "completed" | "failed" => {
                let reason = text("reason");
                counters.exit(if reason.is_empty() { "normal" } else { &reason });
            }
            _ => {}
        }
    } else if event.name == events::AGENT_MESSAGE_HANDLED {
        counters.asks.fetch_add(1, Ordering::Relaxed);
    } else if event.name == events::CHILD_STARTED {
        counters.service_starts.fetch_add(1, Ordering::Relaxed);
        let tree = text("supervisor");
        if tree == FoundationApp::NAME || tree == MabeamApp::NAME {
            *counters
                .service_starts_by
                .lock()
                .entry((tree, text("child")))
                .or_default() += 1;
        }
    } else if event.name == events::CHILD_RESTARTED {
        counters.service_restarts.fetch_add(1, Ordering::Relaxed);
    } else if event.name == events::CHILD_EXITED {
        counters.exit(&text("reason"));
    }
}

#[cfg(test)]
mod tests {
    use super::reason_class;

    #[test]
    fn reasons_are_classed_by_their_first_word() {
        assert_eq!(reason_class("panic: boom"), "panic");
        assert_eq!(reason_class("killed"), "killed");
        assert_eq!(reason_class("shutdown (stop requested)"), "shutdown");
        assert_eq!(reason_class(""), "unknown");
    }
}
