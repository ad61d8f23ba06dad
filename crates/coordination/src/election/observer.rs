//! [`Election`]: the coordinator's view of an election it takes no part
//! in: members report to it, and it watches the participants' statuses.

use std::{
    collections::VecDeque,
    sync::{Arc, Weak},
};

use mabeam_supervision_core::{AgentId, AgentStatus, MetaValue};
use parking_lot::Mutex;
use serde_json::json;
use tokio::{sync::watch, time::Instant};

use super::{ElectionConfig, Leadership, Tenure};
use crate::{
    CoordinationError, Coordinator,
    feed::{FeedEvent, StatusFeed},
    sync::Watcher,
};

struct State {
    leader: Option<Leadership>,
    /// The highest term reported: older reports are stale.
    highest_term: u64,
    history: VecDeque<Tenure>,
    highest_admitted: u64,
}

struct Inner {
    coordinator: Arc<Coordinator>,
    config: ElectionConfig,
    state: Mutex<State>,
    changes: watch::Sender<Option<Leadership>>,
}

/// The observer of an election among agents that campaign themselves
/// (each with an [`ElectionMember`](super::ElectionMember)): see the
/// [module docs](super). It reports who leads, the changes, a history of
/// tenures bounded by the coordinator's
/// [`Retention::election_history`](crate::Retention) (each drop counted),
/// and admits fenced writes. Its watch of the participants stops when it
/// is dropped.
pub struct Election {
    inner: Arc<Inner>,
    _watcher: Watcher,
}

/// How members report to an [`Election`]: cheap to clone, holds the
/// observer weakly (a report to a dropped observer is ignored).
#[derive(Clone)]
pub struct ElectionReporter(Weak<Inner>);

impl std::fmt::Debug for Election {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Election")
            .field("leader", &self.leader())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ElectionReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectionReporter").finish_non_exhaustive()
    }
}

impl Election {
    /// Observes the election `config` describes, reporting through
    /// `coordinator` (its telemetry, event sink and retention). Hand
    /// [`reporter`](Self::reporter) to every member.
    pub fn observe(
        coordinator: Arc<Coordinator>,
        config: ElectionConfig,
    ) -> Result<Self, CoordinationError> {
        config.validate()?;
        let mut feed =
            StatusFeed::new(coordinator.directory().clone(), coordinator.clock().clone());
        let inner = Arc::new(Inner {
            coordinator,
            config,
            state: Mutex::new(State {
                leader: None,
                highest_term: 0,
                history: VecDeque::new(),
                highest_admitted: 0,
            }),
            changes: watch::channel(None).0,
        });
        let weak = Arc::downgrade(&inner);
        let task = tokio::spawn(async move {
            loop {
                let event = feed.next().await;
                let Some(inner) = weak.upgrade() else { return };
                let leader = inner.state.lock().leader.clone();
                let Some(leader) = leader else { continue };
                let stopped = match event {
                    FeedEvent::Change(change) => {
                        change.id == leader.leader && change.to != AgentStatus::Running
                    }
                    FeedEvent::Resync => {
                        inner.coordinator.directory().status(&leader.leader)
                            != Some(AgentStatus::Running)
                    }
                };
                if stopped {
                    let now = inner.coordinator.clock().now();
                    inner.vacate(&leader.leader, leader.term, now, "leader stopped");
                }
            }
        });
        let watcher = Watcher::default();
        watcher.set(task);
        Ok(Election {
            inner,
            _watcher: watcher,
        })
    }

    /// The handle members report through.
    pub fn reporter(&self) -> ElectionReporter {
        ElectionReporter(Arc::downgrade(&self.inner))
    }

    /// The election's configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.inner.config
    }

    /// The leadership with a valid lease now, if any.
    pub fn leader(&self) -> Option<Leadership> {
        let now = self.inner.coordinator.clock().now();
        self.inner
            .state
            .lock()
            .leader
            .clone()
            .filter(|l| l.lease_until > now)
    }

    /// Changes of leadership: `Some` when a leader takes office (or renews),
    /// `None` when the office falls vacant.
    pub fn watch(&self) -> watch::Receiver<Option<Leadership>> {
        self.inner.changes.subscribe()
    }

    /// Waits until a leader holds a valid lease, and returns it (for ever
    /// if none does: bound it with a timeout).
    pub async fn wait_for_leader(&self) -> Leadership {
        let mut changes = self.watch();
        loop {
            if let Some(leader) = self.leader() {
                return leader;
            }
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// The tenures kept (the latest
    /// [`Retention::election_history`](crate::Retention)), oldest first.
    pub fn history(&self) -> Vec<Tenure> {
        self.inner.state.lock().history.iter().cloned().collect()
    }

    /// Admits a write fenced by `token` at a resource this election
    /// guards: `true` if no higher token was admitted before (then this
    /// one becomes the highest), `false` for a deposed leader's token.
    pub fn admit(&self, token: u64) -> bool {
        let mut state = self.inner.state.lock();
        if token >= state.highest_admitted && token > 0 {
            state.highest_admitted = token;
            true
        } else {
            false
        }
    }

    /// Stops observing.
    pub fn stop(self) {}
}

impl ElectionReporter {
    /// A member leads (took office, or renewed its lease) as of `now`.
    pub fn leading(&self, leadership: &Leadership, now: Instant) {
        if let Some(inner) = self.0.upgrade() {
            inner.leading(leadership, now);
        }
    }

    /// Member `leader` stopped leading in `term` at `now`.
    pub fn stepped_down(&self, leader: &AgentId, term: u64, now: Instant) {
        if let Some(inner) = self.0.upgrade() {
            inner.vacate(leader, term, now, "stepped down");
        }
    }
}

impl Inner {
    fn leading(&self, leadership: &Leadership, now: Instant) {
        if !self.config.participants.contains(&leadership.leader)
            || self.coordinator.directory().status(&leadership.leader) != Some(AgentStatus::Running)
        {
            return; // a report from a stranger or a stopped agent counts for nothing
        }
        let mut state = self.state.lock();
        if leadership.term < state.highest_term {
            return; // stale
        }
        if let Some(current) = state.leader.as_mut()
            && current.term == leadership.term
            && current.leader == leadership.leader
        {
            current.lease_until = leadership.lease_until;
            if let Some(tenure) = state.history.back_mut() {
                tenure.until = leadership.lease_until;
            }
            drop(state);
            self.changes.send_replace(Some(leadership.clone()));
            return;
        }
        if state.leader.take().is_some()
            && let Some(tenure) = state.history.back_mut()
        {
            tenure.until = tenure.until.min(now);
        }
        state.highest_term = leadership.term;
        state.leader = Some(leadership.clone());
        state.history.push_back(Tenure {
            leader: leadership.leader.clone(),
            term: leadership.term,
            from: now,
            until: leadership.lease_until,
        });
        let retention = self.coordinator.retention().election_history;
        let over = state.history.len().saturating_sub(retention);
        state.history.drain(..over);
        drop(state);
        for _ in 0..over {
            self.coordinator.dropped("election_history");
        }
        self.changes.send_replace(Some(leadership.clone()));
        self.coordinator.telemetry().emit(
            &["coordination", "election", "elected"],
            &[("term", leadership.term as f64)],
            &[("leader", MetaValue::Str(leadership.leader.as_str()))],
        );
        let coordinator = self.coordinator.clone();
        let data = json!({"leader": leadership.leader, "term": leadership.term});
        tokio::spawn(async move {
            coordinator
                .record("coordination.election", "elected", data)
                .await;
        });
    }

    /// Ends `leader`'s tenure of `term` at `at`, if it is the current one.
    fn vacate(&self, leader: &AgentId, term: u64, at: Instant, why: &str) {
        let mut state = self.state.lock();
        let current = state
            .leader
            .as_ref()
            .is_some_and(|l| l.leader == *leader && l.term == term);
        if !current {
            return;
        }
        state.leader = None;
        if let Some(tenure) = state.history.back_mut() {
            tenure.until = tenure.until.min(at);
        }
        drop(state);
        self.changes.send_replace(None);
        self.coordinator.telemetry().emit(
            &["coordination", "election", "vacant"],
            &[("term", term as f64)],
            &[
                ("leader", MetaValue::Str(leader.as_str())),
                ("why", MetaValue::Str(why)),
            ],
        );
    }
}
