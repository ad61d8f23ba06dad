//! [`Process`]: a process that is not a kameo actor (a task its owner
//! spawns, with a mailbox of its own) behind the same [`ProcessHandle`]
//! contract: id, alive, one stop request, one recorded exit, a kill that
//! aborts the whole task.
//!
//! A kameo actor costs about 7 KB (its task, a mailbox block of 32
//! signals, its shared state); a crate that starts processes by the
//! hundred thousand (agent hosts) runs a smaller loop of its own and hands
//! its supervisors a [`ProcessHandle`] made here.

use std::{
    any::Any,
    future::Future,
    marker::PhantomData,
    ops::Deref,
    pin::Pin,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
};

use futures::future::BoxFuture;
use kameo::actor::ActorId;
use parking_lot::Mutex;
use tokio::{
    sync::Notify,
    task::{AbortHandle, JoinError, JoinHandle},
};

use crate::{
    ExitReason, ProcessHandle,
    handle::{ErasedCell, ErasedRef},
};

/// The mailbox side of a process spawned with
/// [`ProcessHandle::spawn_process`]: what its handles ask of it. The
/// process's task is the spawner's future; its end (the reason it returns)
/// is the process's exit, and a kill aborts it.
pub trait Process: Send + Sync + 'static {
    /// Whether it accepts messages: false once a stop was queued or its
    /// loop ended.
    fn is_accepting(&self) -> bool;

    /// Queues a stop behind the messages already in its mailbox and
    /// refuses new ones. The process calls
    /// [`ProcessHandle::stop_reached`] when its loop gets to it, so that a
    /// clean exit then reads as `Shutdown`.
    fn request_stop(&self);

    /// How many messages wait in its mailbox, if it counts them.
    fn mailbox_len(&self) -> Option<usize> {
        None
    }

    /// The process type's name, for diagnostics.
    fn type_name(&self) -> &'static str;

    /// Every strong handle to the process is gone: as a kameo actor whose
    /// last `ActorRef` is dropped, it should end once the messages already
    /// queued are handled (an exit of its own, not a stop request).
    fn handles_gone(&self);
}

impl ProcessHandle {
    /// Spawns the process whose mailbox is `process` and whose loop is
    /// the future `run` makes from its handle (given before the loop
    /// runs, so the loop can hand it on); returns that handle at once.
    /// The future's output is the process's exit reason; a kill aborts
    /// the future wherever it is (its exit is then `Killed`), and a panic
    /// that escapes it is the exit `Panic`. Every clone of the handle, and
    /// every handle upgraded from a [`WeakProcessHandle`](crate::WeakProcessHandle),
    /// shares one stop request and one exit; `id` must be unique in the
    /// process (e.g. `ActorId::generate()`).
    pub fn spawn_process<P, F>(
        id: ActorId,
        process: Arc<P>,
        run: impl FnOnce(&ProcessHandle) -> F,
    ) -> ProcessHandle
    where
        P: Process,
        F: Future<Output = ExitReason> + Send + 'static,
    {
        let cell = Arc::new(TaskCell {
            id,
            process: Arc::downgrade(&process),
            handles: AtomicUsize::new(1),
            stop_requested: AtomicBool::new(false),
            stop_handled: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            facts: Mutex::new(TaskFacts {
                exit: None,
                task: None,
                abort: None,
            }),
            changed: Notify::new(),
        });
        let handle = ProcessHandle {
            inner: Arc::new(TaskRef {
                process,
                cell: cell.clone(),
            }),
        };
        let task = tokio::spawn(run(&handle));
        {
            let mut facts = cell.facts.lock();
            facts.abort = Some(task.abort_handle());
            facts.task = Some(task);
        }
        handle
    }

    /// The mailbox of a process spawned with
    /// [`spawn_process`](Self::spawn_process), if it is of type `P`.
    pub fn process<P: Process>(&self) -> Option<&Arc<P>> {
        self.inner
            .as_any()
            .downcast_ref::<TaskRef<P>>()
            .map(|typed| &typed.process)
    }
}

/// A strong handle to a task process.
struct TaskRef<P: Process> {
    process: Arc<P>,
    cell: Arc<TaskCell<P>>,
}

impl<P: Process> Drop for TaskRef<P> {
    fn drop(&mut self) {
        if self.cell.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.process.handles_gone();
        }
    }
}

/// What every handle to one task process shares; holds its mailbox
/// weakly.
struct TaskCell<P: Process> {
    id: ActorId,
    process: Weak<P>,
    /// Strong handles alive (their shared halves, `TaskRef`s).
    handles: AtomicUsize,
    stop_requested: AtomicBool,
    stop_handled: AtomicBool,
    killed: AtomicBool,
    facts: Mutex<TaskFacts>,
    /// Wakes waiters when the exit is recorded or the task is given back.
    changed: Notify,
}

/// The exit and the task, under one lock.
struct TaskFacts {
    exit: Option<ExitReason>,
    /// Awaited by one waiter at a time, then dropped.
    task: Option<JoinHandle<ExitReason>>,
    abort: Option<AbortHandle>,
}

/// The exit of a task that ended: its output, or why it has none.
fn task_exit(result: Result<ExitReason, JoinError>) -> ExitReason {
    match result {
        Ok(reason) => reason,
        Err(err) if err.is_cancelled() => ExitReason::Killed,
        Err(err) => {
            let panic = err.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".to_owned());
            ExitReason::Panic(message.into())
        }
    }
}

impl<P: Process> TaskCell<P> {
    /// Records the exit; the first record wins. Returns the exit recorded.
    fn record(&self, reason: ExitReason) -> ExitReason {
        let (recorded, first) = {
            let mut facts = self.facts.lock();
            let first = facts.exit.is_none();
            (facts.exit.get_or_insert(reason).clone(), first)
        };
        if first {
            self.changed.notify_waiters();
        }
        recorded
    }

    fn has_exited(&self) -> bool {
        self.facts.lock().exit.is_some()
    }

    fn give_back(&self, task: JoinHandle<ExitReason>) {
        self.facts.lock().task = Some(task);
        self.changed.notify_waiters();
    }

    /// Awaits the task taken from the cell and records its end (giving
    /// the task back if dropped midway).
    async fn await_taken(&self, task: JoinHandle<ExitReason>) -> ExitReason {
        TaskWatch::new(self, task).await
    }

    async fn exited(&self) -> ExitReason {
        loop {
            // Listening before looking: a change after the look wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            let task = {
                let mut facts = self.facts.lock();
                if let Some(reason) = &facts.exit {
                    return reason.clone();
                }
                facts.task.take()
            };
            if let Some(task) = task {
                return self.await_taken(task).await;
            }
            // Another waiter holds the task.
            changed.as_mut().enable();
            if let Some(reason) = self.facts.lock().exit.clone() {
                return reason;
            }
            changed.await;
        }
    }

    fn is_alive(&self, process: &P) -> bool {
        !self.killed.load(Ordering::Acquire)
            && !self.stop_requested.load(Ordering::Acquire)
            && process.is_accepting()
            && !self.has_exited()
    }

    fn request_stop(&self, process: &P) {
        if self.has_exited() || self.killed.load(Ordering::Acquire) || !process.is_accepting() {
            return;
        }
        self.stop_requested.store(true, Ordering::Release);
        process.request_stop();
    }

    fn kill(&self) {
        let abort = {
            let facts = self.facts.lock();
            if facts.exit.is_some() {
                return;
            }
            facts.abort.clone()
        };
        self.killed.store(true, Ordering::Release);
        if let Some(abort) = abort {
            abort.abort();
        }
    }
}

/// A task taken from its cell and awaited to its end; gives it back if
/// dropped before, so that another waiter takes over.
struct TaskWatch<P: Process, C: Deref<Target = TaskCell<P>> + Unpin> {
    cell: C,
    task: Option<JoinHandle<ExitReason>>,
    _process: PhantomData<fn() -> P>,
}

impl<P: Process, C: Deref<Target = TaskCell<P>> + Unpin> TaskWatch<P, C> {
    fn new(cell: C, task: JoinHandle<ExitReason>) -> Self {
        TaskWatch {
            cell,
            task: Some(task),
            _process: PhantomData,
        }
    }
}

impl<P: Process, C: Deref<Target = TaskCell<P>> + Unpin> Future for TaskWatch<P, C> {
    type Output = ExitReason;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ExitReason> {
        let this = &mut *self;
        let reason = match this.task.as_mut() {
            Some(task) => {
                let result = ready!(Pin::new(task).poll(cx));
                this.task = None;
                task_exit(result)
            }
            None => ExitReason::Killed,
        };
        Poll::Ready(this.cell.record(reason))
    }
}

impl<P: Process, C: Deref<Target = TaskCell<P>> + Unpin> Drop for TaskWatch<P, C> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            self.cell.give_back(task);
        }
    }
}

impl<P: Process> ErasedCell for TaskCell<P> {
    fn id(&self) -> ActorId {
        self.id
    }

    fn is_alive(&self) -> bool {
        self.process
            .upgrade()
            .is_some_and(|process| TaskCell::is_alive(self, &process))
    }

    fn exited(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(TaskCell::exited(self))
    }

    fn kill(&self) {
        TaskCell::kill(self)
    }

    fn upgrade(self: Arc<Self>) -> Option<ProcessHandle> {
        let process = self.process.upgrade()?;
        // No handle back once every strong one is gone (as a kameo
        // `WeakActorRef`): the process is ending.
        self.handles
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n > 0).then_some(n + 1)
            })
            .ok()?;
        Some(ProcessHandle {
            inner: Arc::new(TaskRef {
                process,
                cell: self,
            }),
        })
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl<P: Process> ErasedRef for TaskRef<P> {
    fn id(&self) -> ActorId {
        self.cell.id
    }

    fn is_alive(&self) -> bool {
        self.cell.is_alive(&self.process)
    }

    fn stop_requested(&self) -> bool {
        self.cell.stop_requested.load(Ordering::Acquire)
    }

    fn stop_handled(&self) -> bool {
        self.cell.stop_handled.load(Ordering::Acquire)
    }

    fn stop_reached(&self) {
        if self.cell.stop_requested.load(Ordering::Acquire) {
            self.cell.stop_handled.store(true, Ordering::Release);
        }
    }

    fn exited(&self) -> BoxFuture<'_, ExitReason> {
        Box::pin(self.cell.exited())
    }

    fn request_stop(&self) -> BoxFuture<'_, ()> {
        self.cell.request_stop(&self.process);
        Box::pin(std::future::ready(()))
    }

    fn exit_watch(&self) -> BoxFuture<'static, (ActorId, ExitReason)> {
        let cell = self.cell.clone();
        let task = cell.facts.lock().task.take();
        match task {
            Some(task) => {
                let id = cell.id;
                let watch = TaskWatch::new(cell, task);
                Box::pin(async move { (id, watch.await) })
            }
            None => Box::pin(async move { (cell.id, cell.exited().await) }),
        }
    }

    fn kill(&self) {
        self.cell.kill()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        self.process.type_name()
    }

    fn mailbox_len(&self) -> Option<usize> {
        self.process.mailbox_len()
    }

    fn cell(&self) -> Arc<dyn ErasedCell> {
        self.cell.clone()
    }
}
