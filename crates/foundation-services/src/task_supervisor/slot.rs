//! What every task runs inside: its slot, held until the task ends however
//! it ends (finished, panicked, failed, aborted), so the count, the
//! counters and the telemetry never miss one.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
};

use futures::FutureExt;
use mabeam_supervision_core::MetaValue;

use super::{ABORTED, CRASHED, FAILED, Inner, TaskError, TaskId};

/// How a task ended.
pub(super) enum Outcome {
    Completed,
    Panicked(Arc<str>),
    Failed(Arc<str>),
}

impl Outcome {
    /// The outcome of a task that did not complete.
    pub(super) fn from_error(error: TaskError) -> Self {
        match error {
            TaskError::Panicked(reason) => Outcome::Panicked(reason),
            other => Outcome::Failed(other.to_string().into()),
        }
    }
}

/// A running task's place in its supervisor. Dropped without
/// [`finish`](Slot::finish): the task was aborted.
pub(super) struct Slot {
    pub(super) inner: Arc<Inner>,
    pub(super) id: TaskId,
    pub(super) finished: bool,
}

impl Slot {
    /// Records how the task ended, emitting `crashed` or `failed`.
    pub(super) fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        let inner = &self.inner;
        match outcome {
            Outcome::Completed => {
                inner.counters.completed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Panicked(reason) => {
                inner.counters.crashed.fetch_add(1, Ordering::Relaxed);
                inner.report(CRASHED, self.id, &reason);
            }
            Outcome::Failed(reason) => {
                inner.counters.failed.fetch_add(1, Ordering::Relaxed);
                inner.report(FAILED, self.id, &reason);
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let inner = &self.inner;
        if !self.finished {
            inner.counters.aborted.fetch_add(1, Ordering::Relaxed);
            inner.telemetry.emit(
                ABORTED,
                &[],
                &[
                    ("supervisor", MetaValue::Str(&inner.name)),
                    ("task_id", MetaValue::U64(self.id.0)),
                ],
            );
        }
        inner.release(self.id);
    }
}

/// A slot whose task has not been polled yet.
///
/// Dropped unpolled while `spawn` runs (the runtime shut down and dropped
/// the task inside it), it records nothing and takes no lock: it only
/// says so, and the spawner gives the slot back and answers
/// [`TaskError::RuntimeShutDown`]. Dropped unpolled once spawned (aborted,
/// or its runtime shut down later), it is an aborted task like any other.
pub(super) struct Unpolled {
    /// The slot's parts: the slot itself exists once the task runs.
    parts: Option<(Arc<Inner>, TaskId)>,
    state: Arc<AtomicU8>,
}

/// [`Unpolled`]'s states.
const SPAWNING: u8 = 0;
const SPAWNED: u8 = 1;
const DROPPED_IN_SPAWN: u8 = 2;

/// The spawner's side of an [`Unpolled`].
pub(super) struct Spawning(Arc<AtomicU8>);

impl Spawning {
    /// After `spawn` returned: `true` if the task lives (from now on a
    /// drop counts as an abort), `false` if it was dropped inside `spawn`.
    pub(super) fn spawned(self) -> bool {
        self.0
            .compare_exchange(SPAWNING, SPAWNED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl Unpolled {
    pub(super) fn new(inner: Arc<Inner>, id: TaskId) -> (Self, Spawning) {
        let state = Arc::new(AtomicU8::new(SPAWNING));
        let unpolled = Unpolled {
            parts: Some((inner, id)),
            state: state.clone(),
        };
        (unpolled, Spawning(state))
    }

    /// The task runs: from now on its slot records how it ends.
    pub(super) fn start(mut self) -> Slot {
        let (inner, id) = self.parts.take().expect("a slot is started once");
        Slot {
            inner,
            id,
            finished: false,
        }
    }
}

impl Drop for Unpolled {
    fn drop(&mut self) {
        let Some((inner, id)) = self.parts.take() else {
            return;
        };
        let in_spawn = self
            .state
            .compare_exchange(
                SPAWNING,
                DROPPED_IN_SPAWN,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if !in_spawn {
            // Spawned, then dropped before its first poll: aborted.
            drop(Slot {
                inner,
                id,
                finished: false,
            });
        }
    }
}

/// Runs `future` in `slot`, catching a panic: the value, or the panic as
/// [`TaskError::Panicked`].
pub(super) async fn run<F: Future>(_slot: &Slot, future: F) -> Result<F::Output, TaskError> {
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|panic| TaskError::Panicked(panic_message(&*panic).into()))
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}
