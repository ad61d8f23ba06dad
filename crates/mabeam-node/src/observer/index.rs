//! The agents' index: every agent as a small row, in id order, rebuilt off
//! the request path when agents change, so a page of 100,000 agents is a
//! slice, not a walk of the registry per request.
//!
//! A rebuild follows a status change (coalesced over [`SETTLE`]), an
//! action that changes no status (passivation), and every [`REFRESH`]
//! in case a change went unseen (a lagged subscription, a restarted
//! registry). A request reads the last index built.

use std::{sync::Arc, time::Duration};

use mabeam_agent_supervisor::AgentDetails;
use mabeam_supervision_core::{AgentId, AgentStatus};
use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast::error::RecvError};

use super::Inner;

/// How long changes are gathered before a rebuild, at least (twice the
/// last rebuild's time when that is longer).
const SETTLE: Duration = Duration::from_millis(100);
/// The longest an index is kept without a rebuild.
const REFRESH: Duration = Duration::from_secs(5);

/// One agent, as the table shows it.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) id: AgentId,
    pub(super) kind: Arc<str>,
    pub(super) status: AgentStatus,
    pub(super) passivated: bool,
    pub(super) restarts: u32,
    pub(super) last_exit: Option<Arc<str>>,
}

impl From<&AgentDetails> for Row {
    fn from(a: &AgentDetails) -> Self {
        Row {
            id: a.id.clone(),
            kind: a.kind.clone(),
            status: a.status,
            passivated: a.passivated,
            restarts: a.restarts,
            last_exit: a.last_exit.as_ref().map(|e| e.to_string().into()),
        }
    }
}

/// The last index built, and a bell to rebuild it.
#[derive(Debug, Default)]
pub(super) struct AgentIndex {
    rows: Mutex<Arc<Vec<Row>>>,
    stale: Notify,
}

impl AgentIndex {
    /// The rows, in id order.
    pub(super) fn rows(&self) -> Arc<Vec<Row>> {
        self.rows.lock().clone()
    }

    /// Asks for a rebuild (after an action that changes no status).
    pub(super) fn touch(&self) {
        self.stale.notify_one();
    }
}

/// Keeps `inner.index` current until aborted.
pub(super) async fn run(inner: Arc<Inner>) {
    loop {
        let Some(registry) = inner.system.agents().and_then(|agents| agents.registry()) else {
            tokio::select! {
                () = inner.index.stale.notified() => {}
                () = tokio::time::sleep(REFRESH) => {}
            }
            continue;
        };
        // Subscribed before the walk: a change during it rebuilds again.
        let mut changes = registry.subscribe();
        let began = std::time::Instant::now();
        let rows: Vec<Row> = registry.list().iter().map(Row::from).collect();
        // At most a third of a core on rebuilds, however many agents.
        let settle = SETTLE.max(began.elapsed() * 2);
        *inner.index.rows.lock() = Arc::new(rows);
        drop(registry);
        let changed = async {
            loop {
                match changes.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => return,
                    // The registry stopped: a new one may come.
                    Err(RecvError::Closed) => std::future::pending::<()>().await,
                }
            }
        };
        tokio::select! {
            () = changed => tokio::time::sleep(settle).await,
            () = inner.index.stale.notified() => {}
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}
