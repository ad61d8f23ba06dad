//! [`Reporter`]: where status changes go: telemetry, the status
//! subscription, and an [`EventSink`] when one is given.
//!
//! | event                  | measurements | metadata                              |
//! |------------------------|--------------|---------------------------------------|
//! | `agent.status`         | `restarts`   | `agent`, `kind`, `status` (the new one), `from`, `to` (= `status`), `reason` (the last exit, or empty) |
//! | `agent.message.handled`| `duration_us`| `agent`, `result` (`ok`, or `error` for a refused envelope) |
//! | `agent.passivated`     |              | `agent`, `kind`                       |
//! | `agent.woken`          |              | `agent`, `kind`                       |
//!
//! Status names are the snake_case forms of [`AgentStatus`] (`running`,
//! `restarting`...); `from` is `none` for a newly registered agent.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use supervision_core::{
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
    events: Option<mpsc::UnboundedSender<Event>>,
}

impl Reporter {
    pub(crate) fn new(
        telemetry: Telemetry,
        buffer: usize,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Self {
        let events = sink.map(|sink| {
            // One recorder task keeps the events in order without making
            // a status change wait for storage.
            let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    let _ = sink.record(event).await;
                }
            });
            tx
        });
        Reporter {
            telemetry,
            changes: broadcast::channel(buffer.max(1)).0,
            events,
        }
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
        if let Some(events) = &self.events {
            let _ = events.send(Event::new(
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
            ));
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
