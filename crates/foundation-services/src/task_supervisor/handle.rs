//! [`TaskHandle`]: the awaitable result of a task, which the task outlives.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::oneshot;

use super::{TaskError, TaskId};

/// The result of a task started with
/// [`TaskSupervisor::spawn_result`](crate::TaskSupervisor::spawn_result):
/// await it for `Ok(value)`, or [`TaskError::Panicked`] /
/// [`TaskError::Aborted`].
///
/// Dropping the handle does not stop the task (OTP's `async_nolink`: the
/// caller and the task do not take each other down).
#[derive(Debug)]
pub struct TaskHandle<T> {
    pub(super) id: TaskId,
    pub(super) result: oneshot::Receiver<Result<T, TaskError>>,
}

impl<T> TaskHandle<T> {
    /// The task's id.
    pub fn id(&self) -> TaskId {
        self.id
    }
}

impl<T> Future for TaskHandle<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.result)
            .poll(cx)
            // The task was dropped before it sent: aborted.
            .map(|answer| answer.unwrap_or(Err(TaskError::Aborted)))
    }
}
