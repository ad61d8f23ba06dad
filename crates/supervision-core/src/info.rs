//! What supervisors report about their children: [`ChildInfo`] and
//! [`ChildCounts`].

use std::sync::Arc;

use crate::{ChildKind, ProcessHandle, RestartType};

/// Whether a child is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildState {
    /// Running, with its handle.
    Running(ProcessHandle),
    /// Being restarted (its last start failed, or it waits out a backoff).
    Restarting,
    /// Not running, by itself: a static supervisor's child that exited and
    /// is not restarted, whose start answered `ignore`, or whose
    /// `restart_child` failed. Its spec is kept.
    NotRunning,
    /// Not running, on request: a static supervisor's child stopped by
    /// `terminate_child` and not started since (by `restart_child`, or by a
    /// group restart, which starts it again as OTP does). Its spec is kept.
    /// OTP shows both this and [`NotRunning`](Self::NotRunning) as
    /// `undefined`; the difference lets a caller tell a stop it asked for
    /// from an exit.
    Terminated,
}

impl ChildState {
    /// The handle, if running.
    pub fn handle(&self) -> Option<&ProcessHandle> {
        match self {
            ChildState::Running(handle) => Some(handle),
            _ => None,
        }
    }
}

/// One child, as `which_children` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    /// The child's id from its spec.
    pub id: Arc<str>,
    /// Whether it runs.
    pub state: ChildState,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: RestartType,
}

/// Child counts, as OTP's `count_children` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildCounts {
    /// All child specs, running or not.
    pub specs: usize,
    /// Children running now.
    pub active: usize,
    /// Children that are supervisors, running or not.
    pub supervisors: usize,
    /// Children that are workers, running or not.
    pub workers: usize,
}

impl ChildCounts {
    /// Counts one child.
    pub(crate) fn add(&mut self, kind: ChildKind, running: bool) {
        self.specs += 1;
        self.active += usize::from(running);
        match kind {
            ChildKind::Worker => self.workers += 1,
            ChildKind::Supervisor => self.supervisors += 1,
        }
    }
}
