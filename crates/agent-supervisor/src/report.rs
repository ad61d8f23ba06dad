//! [`Reporter`]: where status changes go: telemetry, the status
//! subscription, and an [`EventSink`] when one is given.
//!
//! | event                  | measurements | metadata                              |
//! |------------------------|--------------|---------------------------------------|
//! | `agent.status`         | `restarts`   | `agent`, `kind`, `status` (the new one), `from`, `to` (= `status`), `reason` (the last exit, or empty) |
//! | `agent.message.handled`| `duration_us`| `agent`, `result` (`ok`, or `error` for a refused envelope) |
//! | `agent.passivated`     |              | `agent`, `kind`                       |
//! | `agent.woken`          |              | `agent`, `kind`                       |
//! | `agent.events.dropped` | `count`      | `reason` (`full`: the queue to the event sink was full; `failed`: the sink refused the write) |
//! | `agent.messages.dropped` | `count`    | `agent`, `kind`, `reason` (the last exit): tells no incarnation will handle |
//!
//! Status changes reach the event sink through a bounded queue
//! (`AgentRegistryOptions::event_buffer`) and one recorder task, so a
//! slow sink never makes a status change wait nor grows memory without
//! bound; every change not recorded is counted (`agent.events.dropped`).
//!
//! Status names are the snake_case forms of [`AgentStatus`] (`running`,
//! `restarting`...); `from` is `none` for a newly registered agent.

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use mabeam_supervision_core::{
    AgentId, AgentStatus, AgentStatusChange, Event, EventSink, ExitReason, MetaValue, Telemetry,
    events,
};
use tokio::sync::{broadcast, mpsc};

/// Every status, in one order, for the counts.
pub(crate) const STATUSES: [AgentStatus; 9] = [
    AgentStatus::Registered,
    AgentStatus::Starting,
    AgentStatus::Running,
    AgentStatus::Stopping,
    AgentStatus::Stopped,
    AgentStatus::Completed,
    AgentStatus::Crashed,
    AgentStatus::Restarting,
    AgentStatus::Failed,
];

/// The snake_case name of a status.
pub fn status_name(status: AgentStatus) -> &'static str {
    match status {
        AgentStatus::Registered => "registered",
        AgentStatus::Starting => "starting",
        AgentStatus::Running => "running",
        AgentStatus::Stopping => "stopping",
        AgentStatus::Stopped => "stopped",
        AgentStatus::Completed => "completed",
        AgentStatus::Crashed => "crashed",
        AgentStatus::Restarting => "restarting",
        AgentStatus::Failed => "failed",
        _ => "unknown",
    }
}

fn index(status: AgentStatus) -> usize {
    STATUSES
        .iter()
        .position(|s| *s == status)
        .unwrap_or(STATUSES.len())
}

/// Agents per status (and how many are passivated), kept as they change so
/// counting costs no scan.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    per_status: [AtomicUsize; 10],
    pub(crate) passivated: AtomicUsize,
}

impl Counts {
    pub(crate) fn add(&self, status: AgentStatus) {
        self.per_status[index(status)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn remove(&self, status: AgentStatus) {
        self.per_status[index(status)].fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn get(&self, status: AgentStatus) -> usize {
        self.per_status[index(status)].load(Ordering::Relaxed)
    }
}

pub(crate) struct Reporter {
    pub(crate) telemetry: Telemetry,
    pub(crate) changes: broadcast::Sender<AgentStatusChange>,
    events: Option<mpsc::Sender<Event>>,
    /// Status changes not recorded in the event sink (queue full, or the
    /// write failed).
    pub(crate) events_dropped: Arc<AtomicU64>,
}

impl Reporter {
    pub(crate) fn new(
        telemetry: Telemetry,
        buffer: usize,
        sink: Option<Arc<dyn EventSink>>,
        event_buffer: usize,
    ) -> Self {
        let dropped_count = Arc::new(AtomicU64::new(0));
        let events = sink.map(|sink| {
            // One recorder task keeps the events in order without making
            // a status change wait for storage; the queue is bounded.
            let (tx, mut rx) = mpsc::channel::<Event>(event_buffer.max(1));
            let telemetry = telemetry.clone();
            let dropped = dropped_count.clone();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    if sink.record(event).await.is_err() {
                        events_dropped(&telemetry, &dropped, "failed");
                    }
                }
            });
            tx
        });
        Reporter {
            telemetry,
            changes: broadcast::channel(buffer.max(1)).0,
            events,
            events_dropped: dropped_count,
        }
    }

    /// Reports tells dropped: no incarnation of agent `id` will handle
    /// them.
    pub(crate) fn dropped(&self, id: &AgentId, count: usize, reason: &str) {
        self.telemetry.emit(
            events::AGENT_MESSAGES_DROPPED,
            &[("count", count as f64)],
            &[
                ("agent", MetaValue::Str(id.as_str())),
                ("reason", MetaValue::Str(reason)),
            ],
        );
    }

    /// Reports a status change (called with the agent's lock held, so
    /// changes of one agent are reported in order).
    pub(crate) fn status(
        &self,
        id: &AgentId,
        kind: &Arc<str>,
        from: Option<AgentStatus>,
        to: AgentStatus,
        restarts: u32,
        last_exit: Option<&ExitReason>,
    ) {
        if self.telemetry.is_enabled() {
            let reason = last_exit.map(ToString::to_string).unwrap_or_default();
            self.telemetry.emit(
                events::AGENT_STATUS,
                &[("restarts", f64::from(restarts))],
                &[
                    ("agent", MetaValue::Str(id.as_str())),
                    ("kind", MetaValue::Str(kind)),
                    ("status", MetaValue::Str(status_name(to))),
                    ("from", MetaValue::Str(from.map_or("none", status_name))),
                    ("to", MetaValue::Str(status_name(to))),
                    ("reason", MetaValue::Str(&reason)),
                ],
            );
        }
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(AgentStatusChange {
                id: id.clone(),
                kind: kind.clone(),
                from,
                to,
            });
        }
        if let Some(events) = &self.events
            && events
                .try_send(Event::new(
                    format!("agent:{id}"),
                    "status_changed",
                    serde_json::json!({
                        "agent": id.as_str(),
                        "kind": &**kind,
                        "from": from.map(status_name),
                        "to": status_name(to),
                        "restarts": restarts,
                        "reason": last_exit.map(ToString::to_string),
                    }),
                ))
                .is_err()
        {
            events_dropped(&self.telemetry, &self.events_dropped, "full");
        }
    }

    /// Reports a handled message.
    pub(crate) fn handled(&self, id: &AgentId, duration_us: f64, ok: bool) {
        self.telemetry.emit(
            events::AGENT_MESSAGE_HANDLED,
            &[("duration_us", duration_us)],
            &[
                ("agent", MetaValue::Str(id.as_str())),
                ("result", MetaValue::Str(if ok { "ok" } else { "error" })),
            ],
        );
    }

    /// Reports a passivation (`woken: false`) or a wake.
    pub(crate) fn passivation(&self, id: &AgentId, kind: &str, woken: bool) {
        let name: &[&str] = if woken {
            &["agent", "woken"]
        } else {
            &["agent", "passivated"]
        };
        self.telemetry.emit(
            name,
            &[],
            &[
                ("agent", MetaValue::Str(id.as_str())),
                ("kind", MetaValue::Str(kind)),
            ],
        );
    }
}

/// Counts one status change not recorded in the event sink.
fn events_dropped(telemetry: &Telemetry, dropped: &AtomicU64, reason: &str) {
    dropped.fetch_add(1, Ordering::Relaxed);
    telemetry.emit(
        events::AGENT_EVENTS_DROPPED,
        &[("count", 1.0)],
        &[("reason", MetaValue::Str(reason))],
    );
}
