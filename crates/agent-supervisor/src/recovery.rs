//! Recovery: a registry that starts on a store brings back every agent in
//! it, in a task of its own, a page at a time, while it already serves.
//!
//! Each stored agent comes back as it was: registered, stopped, completed,
//! crashed and failed ones with that status; passivated ones passivated
//! (their checkpoint kept for their first message); running ones started
//! from their checkpoint (or restored passivated when their configuration
//! asks for [`Activation::OnDemand`](crate::Activation::OnDemand)); restart
//! counts as stored. An agent that cannot be brought back (a corrupt row, a
//! kind without a recipe, args its recipe refuses, a checkpoint this build
//! cannot read) is restored `Failed` with the reason as its last exit, and
//! its row is left as it is; the others come back.
//!
//! Two phases: every agent is put back in the table first, page by page
//! (from then on it is reachable: a message to one that is not started
//! yet starts it, as it wakes a passivated one), then the agents that
//! were running are started, a few hundred at a time.
//!
//! Progress: [`AgentRegistry::recovery`](crate::AgentRegistry::recovery),
//! the telemetry event [`RECOVERY_PROGRESS`] after every page and a log
//! line every [`LOG_EVERY`] agents and at the end.

use std::sync::Arc;

use futures::StreamExt;
use mabeam_supervision_core::{
    AgentId, AgentRecord, AgentStatus, ExitReason, LoadedAgent, RestartType, StartError,
};

use crate::{
    Agent, AgentConfig, AgentContext, AgentError,
    durable::Activation,
    shared::{Entry, Shared, TableKey},
    slot::Slot,
};

/// How far a registry's recovery from its store is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryProgress {
    /// Agents in the store when the recovery began.
    pub total: u64,
    /// Agents restored so far (the failed ones included).
    pub restored: u64,
    /// Agents restored `Failed` (unreadable, no recipe, a start failed).
    pub failed: u64,
    /// Agents started again so far (of those that were running and
    /// activate eagerly).
    pub started: u64,
    /// Whether the recovery is over.
    pub done: bool,
}

/// The telemetry event of recovery progress: measurements `total`,
/// `restored`, `failed`, and `done` (0 or 1).
pub const RECOVERY_PROGRESS: &[&str] = &["agent", "recovery", "progress"];

/// Agents read from the store at once.
const PAGE: usize = 2048;
/// Pages read ahead of the one being restored.
const READ_AHEAD: usize = 2;
/// Agents started at once.
const START_CONCURRENCY: usize = 256;
/// A progress log line every this many agents.
pub const LOG_EVERY: u64 = 100_000;

/// Starts the recovery of `shared`'s store in a task of its own.
pub(crate) fn spawn(shared: Arc<Shared>) {
    tokio::spawn(recover(shared));
}

async fn recover(shared: Arc<Shared>) {
    let store = shared.durable.store.clone();
    let total = match store.count().await {
        Ok(total) => total,
        Err(error) => {
            tracing::error!(%error, "agent recovery: the store cannot be counted");
            0
        }
    };
    let mut progress = RecoveryProgress {
        total,
        ..RecoveryProgress::default()
    };
    if total > 0 {
        tracing::info!(total, "agent recovery: started");
    }
    shared.durable.recovery.send_replace(progress);
    let mut starts = Vec::new();
    // The store reads (and decodes) the next pages while this task puts
    // the last one back in the table: on two cores, reading and restoring
    // overlap instead of taking turns.
    let (pages, mut read) = tokio::sync::mpsc::channel(READ_AHEAD);
    // An empty store: nothing to read (a page would say so too).
    if total > 0 {
        tokio::spawn(read_pages(store, pages));
    } else {
        drop(pages);
    }
    while let Some(page) = read.recv().await {
        for row in page {
            progress.restored += 1;
            match restore(&shared, row) {
                Restored::Start(slot) => starts.push(slot),
                Restored::Kept => {}
                Restored::Failed => progress.failed += 1,
            }
            if progress.restored.is_multiple_of(LOG_EVERY) {
                tracing::info!(
                    restored = progress.restored,
                    total,
                    failed = progress.failed,
                    "agent recovery: in progress"
                );
            }
        }
        report(&shared, progress);
    }
    if !starts.is_empty() {
        tracing::info!(
            restored = progress.restored,
            to_start = starts.len(),
            "agent recovery: every agent reachable; starting the running ones"
        );
    }
    let shared_ref = &shared;
    let mut started = futures::stream::iter(starts)
        .map(|slot| async move { activate(shared_ref, slot).await })
        .buffer_unordered(START_CONCURRENCY);
    while let Some(ok) = started.next().await {
        if ok {
            progress.started += 1;
        } else {
            progress.failed += 1;
        }
        if (progress.started + progress.failed).is_multiple_of(PAGE as u64) {
            report(shared_ref, progress);
        }
    }
    drop(started);
    progress.done = true;
    report(&shared, progress);
    {
        tracing::info!(
            restored = progress.restored,
            started = progress.started,
            failed = progress.failed,
            "agent recovery: done"
        );
    }
}

/// Reads the store page by page into `pages` until the last page (or
/// a page that cannot be read: the recovery stops there), or until the
/// recovery is gone.
async fn read_pages(
    store: Arc<dyn mabeam_supervision_core::AgentStore>,
    pages: tokio::sync::mpsc::Sender<Vec<LoadedAgent>>,
) {
    let mut after: Option<AgentId> = None;
    loop {
        let page = match store.load_page(after.as_ref(), PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, "agent recovery: a page cannot be read; stopped");
                return;
            }
        };
        let last = page.len() < PAGE;
        after = page.last().map(|row| row.id.clone());
        if pages.send(page).await.is_err() || last {
            return;
        }
    }
}

/// What [`AgentRegistry::adopt`](crate::AgentRegistry::adopt) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Adopted {
    /// Agents put in the table (the failed ones included).
    pub restored: u64,
    /// Of those, agents started (they were running).
    pub started: u64,
    /// Agents restored `Failed`, or whose start failed.
    pub failed: u64,
    /// Agents not in the store, or registered here already (left as
    /// they are).
    pub skipped: u64,
}

/// Brings the stored agents `ids` into `shared`'s table as a recovery
/// does, and starts those that were running: an agent taken over from
/// another node that stopped.
pub(crate) async fn adopt(shared: &Arc<Shared>, ids: Vec<AgentId>) -> Adopted {
    let store = shared.durable.store.clone();
    let mut adopted = Adopted::default();
    let mut starts = Vec::new();
    for chunk in ids.chunks(PAGE) {
        // Read together: one query on a store that can.
        let rows = match store.get_many(chunk).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "adopting agents: their records cannot be read");
                adopted.failed += chunk.len() as u64;
                continue;
            }
        };
        adopted.skipped += (chunk.len() - rows.len()) as u64;
        for row in rows {
            if shared.table.contains_key(&TableKey::from(row.id.as_str())) {
                adopted.skipped += 1;
                continue;
            }
            match restore(shared, row) {
                Restored::Start(slot) => starts.push(slot),
                Restored::Kept => {}
                Restored::Failed => adopted.failed += 1,
            }
            adopted.restored += 1;
        }
    }
    let mut started = futures::stream::iter(starts)
        .map(|slot| async move { activate(shared, slot).await })
        .buffer_unordered(START_CONCURRENCY);
    while let Some(ok) = started.next().await {
        if ok {
            adopted.started += 1;
        } else {
            adopted.failed += 1;
        }
    }
    adopted
}

/// Starts a restored agent that was running (restored passivated, so a
/// message may have woken it first); `false` if its start failed (it is
/// then handled as a failed wake: a crash, restarted by its policy).
async fn activate(shared: &Arc<Shared>, slot: Arc<Slot>) -> bool {
    {
        let mut state = slot.state.lock();
        if state.status != AgentStatus::Running
            || !state.passivated
            || state.waking
            || state.current.is_some()
        {
            return true; // woken by a message already, or stopped
        }
        state.waking = true;
    }
    match shared.spawn_incarnation(&slot).await {
        Ok(_) => true,
        Err(error) => {
            shared.start_failed(&slot, None, error);
            false
        }
    }
}

fn report(shared: &Shared, progress: RecoveryProgress) {
    shared.durable.recovery.send_replace(progress);
    shared.reporter.telemetry.emit(
        RECOVERY_PROGRESS,
        &[
            ("total", progress.total as f64),
            ("restored", progress.restored as f64),
            ("failed", progress.failed as f64),
            ("done", if progress.done { 1.0 } else { 0.0 }),
        ],
        &[],
    );
}

enum Restored {
    /// Restored; start it now.
    Start(Arc<Slot>),
    /// Restored as stored.
    Kept,
    /// Restored `Failed`.
    Failed,
}

/// Puts one stored agent back in the table.
fn restore(shared: &Shared, row: LoadedAgent) -> Restored {
    let id = row.id;
    let record = match row.record {
        Ok(record) => record,
        Err(error) => {
            let reason = AgentError::Unrecoverable {
                agent: id.clone(),
                reason: error.to_string(),
            };
            return insert_failed(shared, &id, "unreadable", reason);
        }
    };
    match rebuild(&id, &record, shared) {
        Ok((config, kept)) => {
            let registration = &record.registration;
            let running = matches!(
                registration.status,
                AgentStatus::Running | AgentStatus::Starting | AgentStatus::Restarting
            );
            let eager =
                running && !registration.passivated && config.activation == Activation::Eager;
            let status = match registration.status {
                AgentStatus::Starting | AgentStatus::Restarting => AgentStatus::Running,
                AgentStatus::Stopping => AgentStatus::Stopped,
                status => status,
            };
            let passivates = config.passivate_after.is_some();
            let slot = Arc::new(Slot::new(id.clone(), Arc::new(config)));
            {
                let mut state = slot.state.lock();
                state.restarts = registration.restart_count;
                state.status = status;
                // A running agent waits, passivated, for its first message
                // or its eager start; its checkpoint is what it wakes with.
                if status == AgentStatus::Running {
                    state.passivated = true;
                }
                // What the next start begins from, as in memory.
                state.kept = kept.map(Box::new);
            }
            if !insert(shared, &slot) {
                return Restored::Kept;
            }
            if passivates {
                shared.ensure_sweeper();
            }
            if eager {
                Restored::Start(slot)
            } else {
                Restored::Kept
            }
        }
        Err(reason) => insert_failed(shared, &id, &record.registration.kind, reason),
    }
}

/// The configuration and the kept checkpoint of a stored agent.
fn rebuild(
    id: &AgentId,
    record: &AgentRecord,
    shared: &Shared,
) -> Result<(AgentConfig, Option<Box<dyn std::any::Any + Send>>), AgentError> {
    let registration = &record.registration;
    let unrecoverable = |reason: String| AgentError::Unrecoverable {
        agent: id.clone(),
        reason,
    };
    let recipe = shared
        .durable
        .recipes
        .get(&registration.kind)
        .ok_or_else(|| unrecoverable(format!("no recipe for kind {:?}", registration.kind)))?;
    let config = recipe(&registration.args)
        .map_err(|reason| unrecoverable(format!("its recipe refused its args: {reason}")))?
        .durable(registration.args.clone());
    config.validate()?;
    let kept =
        match &record.checkpoint {
            Some(checkpoint) => Some(config.factory.decode(checkpoint).map_err(|reason| {
                AgentError::Checkpoint {
                    agent: id.clone(),
                    reason,
                }
            })?),
            None => None,
        };
    Ok((config, kept))
}

/// Adds `slot` to the table (and its status to the counts); `false` if
/// an agent of its id was registered meanwhile (that one stays).
fn insert(shared: &Shared, slot: &Arc<Slot>) -> bool {
    let (status, passivated) = {
        let state = slot.state.lock();
        (state.status, state.passivated)
    };
    match shared.table.entry(TableKey::from(slot.id.as_str())) {
        dashmap::Entry::Occupied(_) => {
            tracing::warn!(agent = %slot.id, "agent recovery: registered meanwhile; the stored one is skipped");
            false
        }
        dashmap::Entry::Vacant(vacant) => {
            vacant.insert(Entry::new(slot.clone()));
            shared.counts.add(status);
            if passivated {
                shared
                    .counts
                    .passivated
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            true
        }
    }
}

/// Restores an agent that cannot be brought back: `Failed`, `reason` as
/// its last exit, a configuration that cannot start (its row is kept for
/// a build that can read it; deregistering it removes the row).
fn insert_failed(shared: &Shared, id: &AgentId, kind: &str, reason: AgentError) -> Restored {
    tracing::warn!(agent = %id, %reason, "agent recovery: restored failed");
    let kind = if kind.is_empty() { "unreadable" } else { kind };
    let config = AgentConfig::new::<Unrecovered>(kind, Arc::from(reason.to_string()))
        .with_restart(RestartType::Temporary)
        .durable(serde_json::Value::Null);
    let slot = Arc::new(Slot::new(id.clone(), Arc::new(config)));
    {
        let mut state = slot.state.lock();
        state.status = AgentStatus::Failed;
        state.last_exit = Some(Box::new(ExitReason::error(reason)));
    }
    insert(shared, &slot);
    Restored::Failed
}

/// What an agent that cannot be brought back is registered as: every
/// start fails with why.
struct Unrecovered;

impl Agent for Unrecovered {
    type Args = Arc<str>;
    type Message = ();
    type Reply = ();
    type Checkpoint = ();

    async fn on_start(reason: Arc<str>, _: Option<()>) -> Result<Self, StartError> {
        Err(StartError::failed(reason))
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) {}
}
