//! The sampler: one task per node that builds a [`Frame`] every
//! [`TICK`](super::TICK) and publishes it to every open stream, so ten
//! open pages cost one tree walk and one serialization, not ten.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use mabeam::ProcessNode;
use mabeam_supervision_core::{EventQuery, StoredEvent};
use serde_json::{Value, json};

use super::{HEALTH_HISTORY, HISTORY, Inner, Observer, TICK};

/// How often health checks run (each service's check is real work).
const HEALTH_EVERY: Duration = Duration::from_secs(2);
/// How often a metric sample is taken.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// One frame: each panel's data as serialized JSON, ready to send.
#[derive(Debug, Default)]
pub(crate) struct Frame {
    /// `(SSE event name, JSON)` pairs, sent in this order.
    pub(crate) parts: Vec<(&'static str, String)>,
    /// The newest metric sample, if this frame took one.
    pub(crate) sample: Option<String>,
}

/// Counter values at the previous sample, to send rates and deltas.
#[derive(Debug, Default, Clone)]
struct Last {
    agent_starts: u64,
    agent_restarts: u64,
    service_starts: u64,
    service_restarts: u64,
    asks: u64,
    exits: std::collections::BTreeMap<String, u64>,
    last_event: u64,
}

/// The resident set size of this process in bytes (Linux; 0 elsewhere).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The 1-minute load average (Linux; null elsewhere).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn runtime(handle: &tokio::runtime::Handle) -> Value {
    let metrics = handle.metrics();
    json!({
        "workers": metrics.num_workers(),
        "tasks": metrics.num_alive_tasks(),
        "queue": metrics.global_queue_depth(),
    })
}

/// Sum and largest mailbox length over the tree.
fn mailboxes(node: &ProcessNode, sum: &mut u64, max: &mut u64) {
    if let Some(len) = node.mailbox_len {
        *sum += len as u64;
        *max = (*max).max(len as u64);
    }
    for child in &node.children {
        mailboxes(child, sum, max);
    }
}

/// The last stored event's position (0 when none or unreadable).
async fn last_event(inner: &Inner) -> u64 {
    let query = EventQuery::new().descending().limit(1);
    let Some(store) = inner.system.event_store() else {
        return 0;
    };
    match store.query(query).await {
        Ok(events) => events.first().map_or(0, |e: &StoredEvent| e.id),
        Err(_) => 0,
    }
}

/// Runs until aborted: a frame per tick.
pub(super) async fn run(observer: Observer) {
    let inner = &observer.inner;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = Last {
        last_event: last_event(inner).await,
        ..Last::default()
    };
    let mut last_sample = Instant::now();
    let mut last_health: Option<Instant> = None;
    let mut health = String::from("{}");
    loop {
        ticks.tick().await;
        let now = Instant::now();
        let tree = inner.system.tree().await;
        let (mut mailbox_sum, mut mailbox_max) = (0, 0);
        for app in &tree.applications {
            mailboxes(app, &mut mailbox_sum, &mut mailbox_max);
        }
        if last_health.is_none_or(|at| now.duration_since(at) >= HEALTH_EVERY) {
            last_health = Some(now);
            health = health_part(inner).await;
        }
        let counts = inner
            .system
            .agents()
            .and_then(|agents| agents.registry())
            .map(|r| r.counts());
        let agents = match &counts {
            Some(counts) => json!({
                "total": counts.total,
                "passivated": counts.passivated,
                "by_status": counts.per_status.iter()
                    .map(|(s, n)| (serde_json::to_value(s).unwrap_or_default()
                        .as_str().unwrap_or("unknown").to_owned(), json!(n)))
                    .collect::<serde_json::Map<_, _>>(),
            }),
            None => Value::Null,
        };
        let system = json!({
            "node": inner.info.name,
            "version": inner.info.version,
            "data_dir": inner.info.data_dir.display().to_string(),
            "store": inner.info.store,
            "boot": inner.boot,
            "uptime_s": inner.started.elapsed().as_secs_f64(),
            "rss_bytes": rss_bytes(),
            "load1": load_average(),
            "system_runtime": runtime(&tokio::runtime::Handle::current()),
            "agent_runtime": inner.agent_runtime.as_ref().map(runtime),
            "agents": agents,
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        });
        let mut members = vec![json!({
            "node": inner.info.name, "addr": inner.system.connections()
                .and_then(|c| c.local_addr()).map(|a| a.to_string()),
            "state": "up", "self": true,
        })];
        if let Some(connections) = inner.system.connections() {
            members.extend(connections.nodes().into_iter().map(|n| {
                json!({"node": &*n.node, "addr": n.addr.to_string(),
                       "state": "connected", "direction": n.direction.as_str(), "self": false})
            }));
        }
        let mut frame = Frame {
            parts: vec![
                ("system", system.to_string()),
                ("tree", tree_part(inner, &tree)),
                ("health", health.clone()),
                ("cluster", Value::Array(members).to_string()),
            ],
            sample: None,
        };
        let elapsed = now.duration_since(last_sample);
        if elapsed >= SAMPLE_EVERY {
            last_sample = now;
            let newest = last_event(inner).await.max(last.last_event);
            let sample = take_sample(inner, &mut last, newest, elapsed, mailbox_sum, mailbox_max);
            let text = sample.to_string();
            {
                let mut history = inner.history.lock();
                if history.len() == HISTORY {
                    history.pop_front();
                }
                history.push_back(sample);
            }
            frame.sample = Some(text);
        }
        inner.frames.send_replace(Arc::new(frame));
    }
}

/// The tree as JSON, each top-level service with `starts`: how often it
/// was started (an admin restart counts; the tree's `restarts` counts
/// crash restarts only).
fn tree_part(inner: &Inner, tree: &mabeam::TreeReport) -> String {
    let mut value = serde_json::to_value(tree).unwrap_or_default();
    let starts = inner.counters.service_starts_by.lock();
    if let Some(apps) = value["applications"].as_array_mut() {
        for app in apps {
            let name = app["name"].as_str().unwrap_or_default().to_owned();
            if let Some(services) = app["children"].as_array_mut() {
                for service in services {
                    let key = (
                        name.clone(),
                        service["name"].as_str().unwrap_or_default().to_owned(),
                    );
                    service["starts"] = json!(starts.get(&key).copied().unwrap_or(0));
                }
            }
        }
    }
    value.to_string()
}

/// One metric sample: counts over the last interval, rates per second.
fn take_sample(
    inner: &Inner,
    last: &mut Last,
    newest_event: u64,
    elapsed: Duration,
    mailbox_sum: u64,
    mailbox_max: u64,
) -> Value {
    let c = &inner.counters;
    let secs = elapsed.as_secs_f64().max(1e-3);
    let now = Last {
        agent_starts: c.agent_starts.load(Ordering::Relaxed),
        agent_restarts: c.agent_restarts.load(Ordering::Relaxed),
        service_starts: c.service_starts.load(Ordering::Relaxed),
        service_restarts: c.service_restarts.load(Ordering::Relaxed),
        asks: c.asks.load(Ordering::Relaxed),
        exits: c.exits.lock().clone(),
        last_event: newest_event,
    };
    let exits: serde_json::Map<String, Value> = now
        .exits
        .iter()
        .map(|(reason, n)| {
            let before = last.exits.get(reason).copied().unwrap_or(0);
            (reason.clone(), json!(n - before))
        })
        .collect();
    let sample = json!({
        "t": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "starts": (now.agent_starts - last.agent_starts) + (now.service_starts - last.service_starts),
        "restarts": (now.agent_restarts - last.agent_restarts) + (now.service_restarts - last.service_restarts),
        "exits": exits,
        "asks_per_s": (now.asks - last.asks) as f64 / secs,
        "appends_per_s": now.last_event.saturating_sub(last.last_event) as f64 / secs,
        "mailbox_sum": mailbox_sum,
        "mailbox_max": mailbox_max,
    });
    *last = now;
    sample
}

/// Runs every service's check and appends it to each one's history.
async fn health_part(inner: &Inner) -> String {
    let report = inner.system.health().await;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut history = inner.health.lock();
    let mut services = Vec::new();
    for line in &report.services {
        let key = format!("{}/{}", line.tree, line.service);
        let past = history.entry(key).or_default();
        if past.len() == HEALTH_HISTORY {
            past.pop_front();
        }
        past.push_back(json!({"t": at, "health": line.health}));
        services.push(json!({
            "tree": line.tree,
            "service": line.service,
            "health": line.health,
            "checked_ms": at,
            "history": past.iter().collect::<Vec<_>>(),
        }));
    }
    json!({"healthy": report.healthy, "services": services}).to_string()
}

/// Every sample kept, oldest first (what a new stream sends first).
pub(super) fn history(inner: &Inner) -> String {
    Value::Array(inner.history.lock().iter().cloned().collect()).to_string()
}
