//! What every task runs inside: its slot, held until the task ends however
//! it ends (finished, panicked, failed, aborted), so the count, the
//! counters and the telemetry never miss one.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::FutureExt;
use supervision_core::MetaValue;

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

/// A slot whose task has not been polled yet. Dropped unpolled (the
/// runtime shut down and dropped the task inside `spawn`), it records
/// nothing and takes no lock: it only raises its flag, and the spawner
/// gives the slot back and answers [`TaskError::RuntimeShutDown`].
pub(super) struct Unpolled {
    /// The slot's parts: the slot itself exists only once the task runs.
    parts: Option<(Arc<Inner>, TaskId)>,
    dropped: Arc<AtomicBool>,
}

impl Unpolled {
    pub(super) fn new(inner: Arc<Inner>, id: TaskId) -> Self {
        Unpolled {
            parts: Some((inner, id)),
            dropped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag raised if it is dropped unpolled.
    pub(super) fn dropped(&self) -> Arc<AtomicBool> {
        self.dropped.clone()
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
        if self.parts.take().is_some() {
            self.dropped.store(true, Ordering::Release);
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
