//! Synchronisation among agents: a [`Barrier`] that a dead participant
//! breaks instead of hanging, and a [`LeaseLock`] released when its lease
//! runs out or its holder dies. Both learn of deaths from the directory's
//! status changes, never by polling; when the feed lagged, or closed
//! because the agent layer restarted, they subscribe again and re-read
//! every status that matters, so no death is missed.

use std::{collections::HashSet, sync::Arc, time::Duration};

use mabeam_supervision_core::{AgentDirectory, AgentId, AgentStatus, Clock};
use parking_lot::Mutex;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};

use crate::{
    CoordinationError, Coordinator,
    feed::{FeedEvent, StatusFeed},
};

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
/// ever; an arrival that waits longer than its timeout gets
/// [`CoordinationError::TimedOut`] and is withdrawn.
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use mabeam_coordination::{Barrier, Coordinator};
/// use serde_json::json;
/// use mabeam_supervision_core::{Clock, ExitReason, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let agents = ScriptedDirectory::new();
/// for id in ["a", "b"] { agents.add(id, "worker", |_| Answer::Silent); }
/// let coordinator = Coordinator::new(Arc::new(agents.clone()), Clock::tokio());
/// let barrier = Barrier::new(&coordinator, vec!["a".into(), "b".into()]);
/// let a = tokio::spawn({
///     let barrier = barrier.clone();
///     async move { barrier.arrive(&"a".into(), Duration::from_secs(60)).await }
/// });
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
    clock: Clock,
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

impl BarrierInner {
    /// Breaks the barrier if `agent` is a participant that has not arrived.
    fn lost(&self, agent: &AgentId) {
        if self.participants.contains(agent) && !self.arrived.lock().contains(agent) {
            self.state.send_if_modified(|state| {
                let waiting = *state == BarrierState::Waiting;
                if waiting {
                    *state = BarrierState::Broken(agent.clone());
                }
                waiting
            });
        }
    }

    /// Re-reads every participant's status (at the start, and after
    /// changes were lost).
    fn check_all(&self, directory: &dyn AgentDirectory) {
        for participant in &self.participants {
            if directory.status(participant) != Some(AgentStatus::Running) {
                self.lost(participant);
            }
        }
    }
}

impl Barrier {
    /// A barrier for `participants`, watching their status through the
    /// coordinator's directory. Broken at once if one is not running.
    pub fn new(coordinator: &Coordinator, participants: Vec<AgentId>) -> Self {
        let (state, _) = watch::channel(BarrierState::Waiting);
        let clock = coordinator.clock().clone();
        let inner = Arc::new(BarrierInner {
            participants,
            arrived: Mutex::new(HashSet::new()),
            state,
            clock: clock.clone(),
            watcher: Watcher::default(),
        });
        let directory = coordinator.directory().clone();
        let mut feed = StatusFeed::new(directory.clone(), clock);
        inner.check_all(directory.as_ref());
        let weak = Arc::downgrade(&inner);
        let watcher = tokio::spawn(async move {
            loop {
                let event = feed.next().await;
                let Some(inner) = weak.upgrade() else { return };
                match event {
                    FeedEvent::Change(change) if change.to != AgentStatus::Running => {
                        inner.lost(&change.id);
                    }
                    FeedEvent::Change(_) => {}
                    FeedEvent::Resync => inner.check_all(directory.as_ref()),
                }
                if *inner.state.borrow() != BarrierState::Waiting {
                    return;
                }
            }
        });
        inner.watcher.set(watcher);
        Barrier { inner }
    }

    /// `agent` arrives, and waits until everyone has (`Ok`), the barrier
    /// breaks ([`CoordinationError::BarrierBroken`]) or `timeout` passes
    /// ([`CoordinationError::TimedOut`]: the arrival is withdrawn).
    pub async fn arrive(
        &self,
        agent: &AgentId,
        timeout: Duration,
    ) -> Result<(), CoordinationError> {
        if !self.inner.participants.contains(agent) {
            return Err(CoordinationError::NotParticipant(agent.clone()));
        }
        let mut state = self.inner.state.subscribe();
        let first = {
            let mut arrived = self.inner.arrived.lock();
            let first = arrived.insert(agent.clone());
            if arrived.len() == self.inner.participants.len() {
                self.inner.state.send_if_modified(|state| {
                    let waiting = *state == BarrierState::Waiting;
                    if waiting {
                        *state = BarrierState::Released;
                    }
                    waiting
                });
            }
            first
        };
        let outcome = tokio::select! {
            outcome = state.wait_for(|s| *s != BarrierState::Waiting) => {
                outcome.map(|s| s.clone()).unwrap_or(BarrierState::Waiting)
            }
            () = self.inner.clock.sleep(timeout) => {
                let mut arrived = self.inner.arrived.lock();
                let outcome = self.inner.state.borrow().clone();
                if outcome == BarrierState::Waiting {
                    // Withdrawn: only the call that added the arrival removes it.
                    if first {
                        arrived.remove(agent);
                    }
                    return Err(CoordinationError::TimedOut {
                        what: format!("barrier arrival of {agent}"),
                        after: timeout,
                    });
                }
                outcome
            }
        };
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
/// running), so a dead holder never keeps it. The holder acquiring again
/// gets its grant back at once (a re-entrant session, as etcd's); a waiter
/// that stops while it waits is dropped and never granted the lock.
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use mabeam_coordination::{Coordinator, LeaseLock};
/// use mabeam_supervision_core::{Clock, ExitReason, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let agents = ScriptedDirectory::new();
/// for id in ["a", "b"] { agents.add(id, "worker", |_| Answer::Silent); }
/// let coordinator = Coordinator::new(Arc::new(agents.clone()), Clock::tokio());
/// let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
/// let first = lock.acquire(&"a".into(), Duration::ZERO).await.unwrap();
/// assert_eq!(lock.acquire(&"a".into(), Duration::ZERO).await.unwrap(), first); // re-entrant
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

struct LockState {
    grant: Option<LockGrant>,
    last_token: u64,
}

struct LockInner {
    clock: Clock,
    directory: Arc<dyn AgentDirectory>,
    lease: Duration,
    state: Mutex<LockState>,
    freed: Notify,
    watcher: Watcher,
}

impl std::fmt::Debug for LeaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseLock")
            .field("holder", &self.inner.state.lock().grant)
            .finish()
    }
}

impl LockInner {
    fn running(&self, agent: &AgentId) -> bool {
        self.directory.status(agent) == Some(AgentStatus::Running)
    }

    /// Frees the lock if its holder is `agent` (or, for `None`, if its
    /// holder is not running), and wakes every waiter: one of them may be
    /// the agent that stopped, to be dropped.
    fn stopped(&self, agent: Option<&AgentId>) {
        {
            let mut state = self.state.lock();
            let free = state.grant.as_ref().is_some_and(|g| match agent {
                Some(agent) => g.holder == *agent,
                None => !self.running(&g.holder),
            });
            if free {
                state.grant = None;
            }
        }
        self.freed.notify_waiters();
    }
}

impl LeaseLock {
    /// A free lock whose grants last `lease`.
    pub fn new(coordinator: &Coordinator, lease: Duration) -> Self {
        let inner = Arc::new(LockInner {
            clock: coordinator.clock().clone(),
            directory: coordinator.directory().clone(),
            lease,
            state: Mutex::new(LockState {
                grant: None,
                last_token: 0,
            }),
            freed: Notify::new(),
            watcher: Watcher::default(),
        });
        let mut feed = StatusFeed::new(inner.directory.clone(), inner.clock.clone());
        let weak = Arc::downgrade(&inner);
        let watcher = tokio::spawn(async move {
            loop {
                let event = feed.next().await;
                let Some(inner) = weak.upgrade() else { return };
                match event {
                    FeedEvent::Change(change) if change.to != AgentStatus::Running => {
                        inner.stopped(Some(&change.id));
                    }
                    FeedEvent::Change(_) => {}
                    FeedEvent::Resync => inner.stopped(None),
                }
            }
        });
        inner.watcher.set(watcher);
        LeaseLock { inner }
    }

    /// The current grant, if the lock is held.
    pub fn holder(&self) -> Option<LockGrant> {
        let now = self.inner.clock.now();
        self.inner
            .state
            .lock()
            .grant
            .clone()
            .filter(|g| g.until > now)
    }

    /// Grants the lock to `agent`, waiting at most `wait` for it to be
    /// free; [`CoordinationError::LockHeld`] if it is not by then. If
    /// `agent` holds it already, its grant is returned at once
    /// (re-entrant). An agent that is not running, or stops while it
    /// waits, is refused with [`CoordinationError::AgentStopped`].
    pub async fn acquire(
        &self,
        agent: &AgentId,
        wait: Duration,
    ) -> Result<LockGrant, CoordinationError> {
        let clock = &self.inner.clock;
        let deadline = clock.now() + wait;
        loop {
            let freed = self.inner.freed.notified();
            let wake_at = {
                let now = clock.now();
                if !self.inner.running(agent) {
                    return Err(CoordinationError::AgentStopped(agent.clone()));
                }
                let mut state = self.inner.state.lock();
                let held = state
                    .grant
                    .clone()
                    .filter(|g| g.until > now && self.inner.running(&g.holder));
                match held {
                    Some(grant) if grant.holder == *agent => return Ok(grant),
                    None => {
                        state.last_token += 1;
                        let grant = LockGrant {
                            holder: agent.clone(),
                            token: state.last_token,
                            until: now + self.inner.lease,
                        };
                        state.grant = Some(grant.clone());
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
        let now = self.inner.clock.now();
        let mut state = self.inner.state.lock();
        match state.grant.as_mut() {
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
        match &state.grant {
            Some(grant) if grant.holder == *agent && grant.token == token => {
                state.grant = None;
                self.inner.freed.notify_waiters();
                Ok(())
            }
            _ => Err(CoordinationError::NotHolder(agent.clone())),
        }
    }
}

/// The task that watches the participants' deaths for a barrier, a lock
/// or an election: aborted when its owner goes.
#[derive(Default)]
pub(crate) struct Watcher(Mutex<Option<JoinHandle<()>>>);

impl Watcher {
    pub(crate) fn set(&self, task: JoinHandle<()>) {
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
