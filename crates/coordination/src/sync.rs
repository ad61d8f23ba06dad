//! Synchronisation among agents: a [`Barrier`] that a dead participant
//! breaks instead of hanging, and a [`LeaseLock`] released when its lease
//! runs out or its holder dies. Both learn of deaths from the directory's
//! status changes, never by polling.

use std::{collections::HashSet, sync::Arc, time::Duration};

use parking_lot::Mutex;
use supervision_core::{AgentId, AgentStatus};
use tokio::{
    sync::{Notify, broadcast::error::RecvError, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{CoordinationError, Coordinator};

#[derive(Debug, Clone, PartialEq, Eq)]
enum BarrierState {
    Waiting,
    Released,
    Broken(AgentId),
}

/// A barrier for a fixed set of agents: every
/// [`arrive`](Barrier::arrive) waits until all have arrived, then all are
/// released together. If a participant stops before arriving (its status
/// leaves running), every waiter gets
/// [`CoordinationError::BarrierBroken`] at once instead of waiting for
/// ever.
///
/// # Example
///
/// ```
/// use std::sync::Arc;
/// use coordination::{Barrier, Coordinator};
/// use serde_json::json;
/// use supervision_core::{Clock, ExitReason, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let agents = ScriptedDirectory::new();
/// for id in ["a", "b"] { agents.add(id, "worker", |_| Answer::Silent); }
/// let coordinator = Coordinator::new(Arc::new(agents.clone()), Clock::tokio());
/// let barrier = Barrier::new(&coordinator, vec!["a".into(), "b".into()]);
/// let a = tokio::spawn({ let barrier = barrier.clone(); async move { barrier.arrive(&"a".into()).await } });
/// agents.crash(&"b".into(), ExitReason::Killed); // b dies before arriving
/// assert!(a.await.unwrap().is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Arc<BarrierInner>,
}

struct BarrierInner {
    participants: Vec<AgentId>,
    arrived: Mutex<HashSet<AgentId>>,
    state: watch::Sender<BarrierState>,
    watcher: Watcher,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("participants", &self.inner.participants.len())
            .field("arrived", &self.inner.arrived.lock().len())
            .finish()
    }
}

impl Barrier {
    /// A barrier for `participants`, watching their status through the
    /// coordinator's directory. Broken at once if one is not running.
    pub fn new(coordinator: &Coordinator, participants: Vec<AgentId>) -> Self {
        let (state, _) = watch::channel(BarrierState::Waiting);
        let inner = Arc::new(BarrierInner {
            participants,
            arrived: Mutex::new(HashSet::new()),
            state,
            watcher: Watcher::default(),
        });
        let directory = coordinator.directory().clone();
        let mut changes = directory.subscribe();
        if let Some(dead) = inner
            .participants
            .iter()
            .find(|p| directory.status(p) != Some(AgentStatus::Running))
        {
            inner.state.send_replace(BarrierState::Broken(dead.clone()));
        }
        let weak = Arc::downgrade(&inner);
        let watcher = tokio::spawn(async move {
            loop {
                let change = match changes.recv().await {
                    Ok(change) => change,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                if change.to != AgentStatus::Running
                    && inner.participants.contains(&change.id)
                    && !inner.arrived.lock().contains(&change.id)
                {
                    inner.state.send_if_modified(|state| {
                        let waiting = *state == BarrierState::Waiting;
                        if waiting {
                            *state = BarrierState::Broken(change.id.clone());
                        }
                        waiting
                    });
                }
                if *inner.state.borrow() != BarrierState::Waiting {
                    return;
                }
            }
        });
        inner.watcher.set(watcher);
        Barrier { inner }
    }

    /// `agent` arrives, and waits until everyone has (`Ok`) or the barrier
    /// breaks (`Err`).
    pub async fn arrive(&self, agent: &AgentId) -> Result<(), CoordinationError> {
        if !self.inner.participants.contains(agent) {
            return Err(CoordinationError::NotParticipant(agent.clone()));
        }
        let mut state = self.inner.state.subscribe();
        {
            let mut arrived = self.inner.arrived.lock();
            arrived.insert(agent.clone());
            if arrived.len() == self.inner.participants.len() {
                self.inner.state.send_if_modified(|state| {
                    let waiting = *state == BarrierState::Waiting;
                    if waiting {
                        *state = BarrierState::Released;
                    }
                    waiting
                });
            }
        }
        let outcome = state
            .wait_for(|s| *s != BarrierState::Waiting)
            .await
            .map(|s| s.clone())
            .unwrap_or(BarrierState::Waiting);
        match outcome {
            BarrierState::Released => Ok(()),
            BarrierState::Broken(dead) => Err(CoordinationError::BarrierBroken(dead)),
            BarrierState::Waiting => unreachable!("the sender lives in self"),
        }
    }

    /// How many have arrived.
    pub fn arrived(&self) -> usize {
        self.inner.arrived.lock().len()
    }
}

/// A lock granted to one agent at a time, for a lease: its grant carries a
/// fencing token that increases with every grant. The lock frees itself
/// when the lease runs out or when the holder stops (its status leaves
/// running), so a dead holder never keeps it.
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use coordination::{Coordinator, LeaseLock};
/// use supervision_core::{Clock, ExitReason, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let agents = ScriptedDirectory::new();
/// for id in ["a", "b"] { agents.add(id, "worker", |_| Answer::Silent); }
/// let coordinator = Coordinator::new(Arc::new(agents.clone()), Clock::tokio());
/// let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
/// let first = lock.acquire(&"a".into(), Duration::ZERO).await.unwrap();
/// assert!(lock.acquire(&"b".into(), Duration::ZERO).await.is_err()); // held
/// agents.crash(&"a".into(), ExitReason::Killed);
/// let second = lock.acquire(&"b".into(), Duration::from_secs(1)).await.unwrap();
/// assert!(second.token > first.token);
/// # }
/// ```
#[derive(Clone)]
pub struct LeaseLock {
    inner: Arc<LockInner>,
}

/// A grant of a [`LeaseLock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGrant {
    /// Who holds it.
    pub holder: AgentId,
    /// The fencing token of this grant.
    pub token: u64,
    /// When the lease runs out unless renewed.
    pub until: Instant,
}

struct LockInner {
    coordinator_clock: supervision_core::Clock,
    directory: Arc<dyn supervision_core::AgentDirectory>,
    lease: Duration,
    state: Mutex<(Option<LockGrant>, u64)>,
    freed: Notify,
    watcher: Watcher,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("holder", &self.inner.state.lock().0)
            .finish()
    }
}

impl LeaseLock {
    /// A free lock whose grants last `lease`.
    pub fn new(coordinator: &Coordinator, lease: Duration) -> Self {
        let inner = Arc::new(LockInner {
            coordinator_clock: coordinator.clock().clone(),
            directory: coordinator.directory().clone(),
            lease,
            state: Mutex::new((None, 0)),
            freed: Notify::new(),
            watcher: Watcher::default(),
        });
        let mut changes = coordinator.directory().subscribe();
        let weak = Arc::downgrade(&inner);
        let watcher = tokio::spawn(async move {
            loop {
                let change = match changes.recv().await {
                    Ok(change) => change,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                if change.to != AgentStatus::Running {
                    let mut state = inner.state.lock();
                    if state.0.as_ref().is_some_and(|g| g.holder == change.id) {
                        state.0 = None;
                        inner.freed.notify_waiters();
                    }
                }
            }
        });
        inner.watcher.set(watcher);
        LeaseLock { inner }
    }

    /// The current grant, if the lock is held.
    pub fn holder(&self) -> Option<LockGrant> {
        let now = self.inner.coordinator_clock.now();
        self.inner.state.lock().0.clone().filter(|g| g.until > now)
    }

    /// Grants the lock to `agent`, waiting at most `wait` for it to be
    /// free; [`CoordinationError::LockHeld`] if it is not by then.
    pub async fn acquire(
        &self,
        agent: &AgentId,
        wait: Duration,
    ) -> Result<LockGrant, CoordinationError> {
        let clock = &self.inner.coordinator_clock;
        let deadline = clock.now() + wait;
        loop {
            let freed = self.inner.freed.notified();
            let wake_at = {
                let now = clock.now();
                let mut state = self.inner.state.lock();
                let held = state.0.clone().filter(|g| {
                    g.until > now
                        && self.inner.directory.status(&g.holder) == Some(AgentStatus::Running)
                });
                match held {
                    None => {
                        state.1 += 1;
                        let grant = LockGrant {
                            holder: agent.clone(),
                            token: state.1,
                            until: now + self.inner.lease,
                        };
                        state.0 = Some(grant.clone());
                        return Ok(grant);
                    }
                    Some(grant) if now >= deadline => {
                        return Err(CoordinationError::LockHeld {
                            holder: grant.holder,
                        });
                    }
                    Some(grant) => grant.until.min(deadline),
                }
            };
            tokio::select! {
                () = freed => {}
                () = clock.sleep_until(wake_at) => {}
            }
        }
    }

    /// Extends `agent`'s lease by another lease from now.
    pub fn renew(&self, agent: &AgentId, token: u64) -> Result<LockGrant, CoordinationError> {
        let now = self.inner.coordinator_clock.now();
        let mut state = self.inner.state.lock();
        match state.0.as_mut() {
            Some(grant) if grant.holder == *agent && grant.token == token && grant.until > now => {
                grant.until = now + self.inner.lease;
                Ok(grant.clone())
            }
            _ => Err(CoordinationError::NotHolder(agent.clone())),
        }
    }

    /// Releases `agent`'s grant `token`.
    pub fn release(&self, agent: &AgentId, token: u64) -> Result<(), CoordinationError> {
        let mut state = self.inner.state.lock();
        match &state.0 {
            Some(grant) if grant.holder == *agent && grant.token == token => {
                state.0 = None;
                self.inner.freed.notify_waiters();
                Ok(())
            }
            _ => Err(CoordinationError::NotHolder(agent.clone())),
        }
    }
}

/// The task that watches the participants' deaths for a barrier or a lock:
/// aborted when its owner goes.
#[derive(Default)]
struct Watcher(Mutex<Option<JoinHandle<()>>>);

impl Watcher {
    fn set(&self, task: JoinHandle<()>) {
        *self.0.lock() = Some(task);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(task) = self.0.lock().take() {
            task.abort();
        }
    }
}
