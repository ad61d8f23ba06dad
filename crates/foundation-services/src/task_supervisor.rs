//! [`TaskSupervisor`]: ad-hoc tasks under a supervised owner, as OTP's
//! `Task.Supervisor`: fire-and-forget or awaited, never linked to the
//! caller, every crash reported and counted, a bounded shutdown.
//!
//! # Concepts
//!
//! - [`spawn`](TaskSupervisor::spawn) runs a future and forgets it; a panic
//!   is caught, counted (`crashed`) and emitted
//!   (`task_supervisor.task.crashed`), never lost.
//!   [`spawn_fallible`](TaskSupervisor::spawn_fallible) does the same for a
//!   future returning `Result<(), E>`: an `Err` is counted (`failed`) and
//!   emitted.
//! - [`spawn_result`](TaskSupervisor::spawn_result) returns a
//!   [`TaskHandle`] to await: `Ok(value)`, or a panic as
//!   [`TaskError::Panicked`] (a value, not a crash of the caller).
//! - **No link, either way** (OTP's `async_nolink`): a caller that panics or
//!   drops its handle does not stop the task, and a task that panics does
//!   not touch the caller.
//! - [`running`](TaskSupervisor::running) counts the tasks running;
//!   `max_children` bounds it ([`TaskError::MaxChildren`], nothing
//!   spawned).
//! - [`shutdown`](TaskSupervisor::shutdown) takes no new task, waits for the
//!   running ones up to the shutdown timeout, then aborts the rest and
//!   waits for them to go. The service ([`TaskSupervisor::service`]) shuts
//!   down this way when its application stops it, and takes tasks again
//!   when it starts.
//!
//! # Why tokio tasks, not a `DynamicSupervisor` of actors
//!
//! A task is a future with no mailbox and nothing to restart: OTP's task
//! supervisor starts its children `temporary`. Making each one a kameo
//! actor under a `DynamicSupervisor` would cost a mailbox, a watcher and
//! about 7 KB per task, and a message round trip per spawn, to use none of
//! the restart machinery. So each task is a tokio task holding a *slot* in
//! its owner: the slot's drop (however the task ends: finished, panicked,
//! or aborted) updates the count and the counters and emits the event, so
//! no ending is missed. The owner is the supervised service actor, which
//! gives the tasks OTP's lifetime: they stop when it is stopped.
//!
//! Aborting a task stops it at its next `.await`: a task spinning in
//! synchronous code cannot be aborted, and shutdown waits for it. Run
//! CPU-bound work with `tokio::task::spawn_blocking`.
//!
//! # Telemetry
//!
//! | name                           | measurements           | metadata |
//! |--------------------------------|------------------------|----------|
//! | `task_supervisor.task.crashed` |                        | `supervisor`, `task_id`, `reason` |
//! | `task_supervisor.task.failed`  |                        | `supervisor`, `task_id`, `reason` |
//! | `task_supervisor.task.aborted` |                        | `supervisor`, `task_id` |
//! | `task_supervisor.shutdown`     | `aborted`, `duration_ms` | `supervisor` |
//!
//! # Example
//!
//! ```
//! use mabeam_foundation_services::{TaskError, TaskSupervisor};
//!
//! # #[tokio::main] async fn main() {
//! let tasks = TaskSupervisor::builder().max_children(100).build().unwrap();
//! let answer = tasks.spawn_result(async { 6 * 7 }).unwrap();
//! assert_eq!(answer.await, Ok(42));
//!
//! let crashed = tasks.spawn_result(async { panic!("boom") }).unwrap();
//! assert_eq!(crashed.await, Err::<(), _>(TaskError::Panicked("boom".into())));
//! assert_eq!(tasks.counts().crashed, 1);
//!
//! let report = tasks.stop().await;
//! assert_eq!(report.aborted, 0);
//! assert_eq!(tasks.spawn(async {}), Err(TaskError::ShutDown));
//! # }
//! ```

mod error;
mod handle;
mod service;
mod slot;

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

pub use error::TaskError;
pub use handle::TaskHandle;
use mabeam_supervision_core::{Clock, MetaValue, ServiceDef, Telemetry};
use parking_lot::Mutex;
use slot::{Outcome, Slot};
use tokio::{
    sync::{Notify, oneshot},
    task::AbortHandle,
};

/// `task_supervisor.task.crashed`: a task panicked.
pub const CRASHED: &[&str] = &["task_supervisor", "task", "crashed"];
/// `task_supervisor.task.failed`: a fire-and-forget task returned an error.
pub const FAILED: &[&str] = &["task_supervisor", "task", "failed"];
/// `task_supervisor.task.aborted`: a shutdown aborted a task.
pub const ABORTED: &[&str] = &["task_supervisor", "task", "aborted"];
/// `task_supervisor.shutdown`: a shutdown finished.
pub const SHUTDOWN: &[&str] = &["task_supervisor", "shutdown"];

/// A task's id, unique within its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId(pub u64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.0)
    }
}

/// The counts of a [`TaskSupervisor`]: running now, and how every task
/// that ended, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskCounts {
    /// Tasks running now.
    pub running: usize,
    /// Tasks spawned.
    pub spawned: u64,
    /// Tasks that finished (an `Err` of a fallible task counts as failed).
    pub completed: u64,
    /// Tasks that panicked.
    pub crashed: u64,
    /// Fire-and-forget tasks that returned an error.
    pub failed: u64,
    /// Tasks aborted by a shutdown.
    pub aborted: u64,
}

/// What a [`shutdown`](TaskSupervisor::shutdown) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks aborted because the timeout ran out.
    pub aborted: u64,
    /// How long the shutdown took.
    pub duration: Duration,
}

/// Ad-hoc tasks under one owner: a cheap, cloneable handle, every clone the
/// same supervisor. See the [module docs](self).
///
/// Spawning needs a tokio runtime ([`TaskError::NoRuntime`] outside one).
#[derive(Clone)]
pub struct TaskSupervisor {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Counters {
    spawned: AtomicU64,
    completed: AtomicU64,
    crashed: AtomicU64,
    failed: AtomicU64,
    aborted: AtomicU64,
}

struct Inner {
    name: Arc<str>,
    max_children: Option<usize>,
    shutdown_timeout: Duration,
    clock: Clock,
    telemetry: Telemetry,
    running: AtomicUsize,
    tasks: Mutex<HashMap<TaskId, AbortHandle>>,
    next_id: AtomicU64,
    accepting: AtomicBool,
    /// Woken when `running` drops to 0.
    idle: Notify,
    counters: Counters,
}

/// Builds a [`TaskSupervisor`]. Defaults: name `task_supervisor`, no
/// limit on tasks (OTP's `:infinity`), shutdown timeout 5 s,
/// [`Clock::system`], telemetry disabled.
#[derive(Debug, Clone)]
pub struct TaskSupervisorBuilder {
    name: Arc<str>,
    max_children: Option<usize>,
    shutdown_timeout: Duration,
    clock: Clock,
    telemetry: Telemetry,
}

impl TaskSupervisorBuilder {
    /// Sets the service's name (its child id in an application).
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Allows at most `max` tasks at once (at least 1).
    pub fn max_children(mut self, max: usize) -> Self {
        self.max_children = Some(max);
        self
    }

    /// Sets how long a shutdown waits for running tasks before aborting
    /// them.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets the clock the shutdown timeout runs on.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the telemetry handle.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Builds the supervisor, taking tasks at once.
    /// [`MaxChildren(0)`](TaskError::MaxChildren) for a limit of 0.
    pub fn build(self) -> Result<TaskSupervisor, TaskError> {
        if self.max_children == Some(0) {
            return Err(TaskError::MaxChildren(0));
        }
        Ok(TaskSupervisor {
            inner: Arc::new(Inner {
                name: self.name,
                max_children: self.max_children,
                shutdown_timeout: self.shutdown_timeout,
                clock: self.clock,
                telemetry: self.telemetry,
                running: AtomicUsize::new(0),
                tasks: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                accepting: AtomicBool::new(true),
                idle: Notify::new(),
                counters: Counters::default(),
            }),
        })
    }
}

impl TaskSupervisor {
    /// A builder with the defaults of [`TaskSupervisorBuilder`].
    pub fn builder() -> TaskSupervisorBuilder {
        TaskSupervisorBuilder {
            name: "task_supervisor".into(),
            max_children: None,
            shutdown_timeout: Duration::from_secs(5),
            clock: Clock::system(),
            telemetry: Telemetry::disabled(),
        }
    }

    /// Runs `future` as a task and forgets it. A panic is caught, counted
    /// and emitted (`task_supervisor.task.crashed`).
    ///
    /// Spawns on the caller's tokio runtime; nothing is spawned (and no
    /// count changes) outside one ([`TaskError::NoRuntime`]), on one that
    /// has shut down ([`TaskError::RuntimeShutDown`]), past
    /// `max_children` or after a shutdown. The same holds for every
    /// `spawn_*`.
    pub fn spawn<F>(&self, future: F) -> Result<TaskId, TaskError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.start(|slot| async move {
            let outcome = match slot::run(&slot, future).await {
                Ok(()) => Outcome::Completed,
                Err(error) => Outcome::from_error(error),
            };
            slot.finish(outcome);
        })
    }

    /// Runs `future` as a task and forgets it; an `Err` it returns is
    /// counted and emitted (`task_supervisor.task.failed`), a panic as in
    /// [`spawn`](Self::spawn).
    pub fn spawn_fallible<F, E>(&self, future: F) -> Result<TaskId, TaskError>
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display,
    {
        self.start(|slot| async move {
            let outcome = match slot::run(&slot, future).await {
                Ok(Ok(())) => Outcome::Completed,
                Ok(Err(error)) => Outcome::Failed(error.to_string().into()),
                Err(error) => Outcome::from_error(error),
            };
            slot.finish(outcome);
        })
    }

    /// Runs `future` as a task and returns a [`TaskHandle`] to await its
    /// value; a panic comes back as [`TaskError::Panicked`] (and is counted
    /// and emitted as a crash). Dropping the handle does not stop the task.
    pub fn spawn_result<F>(&self, future: F) -> Result<TaskHandle<F::Output>, TaskError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let id = self.start(|slot| async move {
            let result = slot::run(&slot, future).await;
            slot.finish(match &result {
                Ok(_) => Outcome::Completed,
                Err(error) => Outcome::from_error(error.clone()),
            });
            let _ = tx.send(result);
        })?;
        Ok(TaskHandle { id, result: rx })
    }

    /// How many tasks are running.
    pub fn running(&self) -> usize {
        self.inner.running.load(Ordering::Acquire)
    }

    /// The counts: running now, and how the others ended.
    pub fn counts(&self) -> TaskCounts {
        let c = &self.inner.counters;
        TaskCounts {
            running: self.running(),
            spawned: c.spawned.load(Ordering::Acquire),
            completed: c.completed.load(Ordering::Acquire),
            crashed: c.crashed.load(Ordering::Acquire),
            failed: c.failed.load(Ordering::Acquire),
            aborted: c.aborted.load(Ordering::Acquire),
        }
    }

    /// The limit on running tasks, if any.
    pub fn max_children(&self) -> Option<usize> {
        self.inner.max_children
    }

    /// Whether new tasks are taken (false from a shutdown until the service
    /// starts again).
    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::Acquire)
    }

    /// Takes no new task ([`TaskError::ShutDown`]), waits for the running
    /// ones up to the shutdown timeout (on the clock), aborts the rest and
    /// waits until they are gone; emits `task_supervisor.shutdown`.
    pub async fn stop(&self) -> ShutdownReport {
        let inner = &self.inner;
        inner.accepting.store(false, Ordering::Release);
        let began = inner.clock.now();
        let aborted_before = inner.counters.aborted.load(Ordering::Acquire);
        let in_time = tokio::select! {
            () = inner.wait_idle() => true,
            () = inner.clock.sleep(inner.shutdown_timeout) => false,
        };
        if !in_time {
            for task in inner.tasks.lock().values() {
                task.abort();
            }
            inner.wait_idle().await;
        }
        let report = ShutdownReport {
            aborted: inner.counters.aborted.load(Ordering::Acquire) - aborted_before,
            duration: inner.clock.now() - began,
        };
        inner.telemetry.emit(
            SHUTDOWN,
            &[
                ("aborted", report.aborted as f64),
                ("duration_ms", report.duration.as_secs_f64() * 1e3),
            ],
            &[("supervisor", MetaValue::Str(&inner.name))],
        );
        report
    }

    /// The old name of [`stop`](Self::stop) (stopping is `stop` everywhere).
    #[deprecated(since = "0.1.0", note = "renamed to `stop`")]
    pub async fn shutdown(&self) -> ShutdownReport {
        self.stop().await
    }

    /// Takes tasks again after a shutdown (the service does this when it
    /// starts).
    pub fn reopen(&self) {
        self.inner.accepting.store(true, Ordering::Release);
    }

    /// The supervisor's (and its service's) name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// How long a shutdown waits before aborting.
    pub fn shutdown_timeout(&self) -> Duration {
        self.inner.shutdown_timeout
    }

    /// The supervised service of this supervisor, to put in an application:
    /// an actor that owns the tasks. Its start takes tasks again; its stop
    /// is a [`shutdown`](Self::shutdown) (its child shutdown is the
    /// shutdown timeout plus a second); if it is killed, every task is
    /// aborted.
    pub fn service(&self) -> ServiceDef {
        service::service_def(self.clone())
    }

    /// Aborts every running task at once, without waiting.
    pub(crate) fn abort_all(&self) {
        for task in self.inner.tasks.lock().values() {
            task.abort();
        }
    }

    /// Takes a slot and spawns the task `make` builds around it.
    fn start<F>(&self, make: impl FnOnce(Slot) -> F + Send + 'static) -> Result<TaskId, TaskError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let inner = &self.inner;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TaskError::NoRuntime)?;
        inner.reserve()?;
        let id = TaskId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        // The slot is made by the task's first poll. A runtime that has
        // shut down drops the task unpolled inside `spawn`, with the lock
        // below held: that drop must take no lock (the slot's would), so
        // it only says so.
        let (unpolled, spawning) = slot::Unpolled::new(inner.clone(), id);
        let task = async move { make(unpolled.start()).await };
        // Under the lock: the task's slot removes its entry under it too,
        // so a task that ends at once never leaves a stale entry.
        inner.counters.spawned.fetch_add(1, Ordering::Relaxed);
        let mut tasks = inner.tasks.lock();
        let task = runtime.spawn(task);
        if !spawning.spawned() {
            drop(tasks);
            inner.counters.spawned.fetch_sub(1, Ordering::Relaxed);
            inner.unreserve();
            return Err(TaskError::RuntimeShutDown);
        }
        tasks.insert(id, task.abort_handle());
        Ok(id)
    }
}

impl Inner {
    fn reserve(&self) -> Result<(), TaskError> {
        if !self.accepting.load(Ordering::Acquire) {
            return Err(TaskError::ShutDown);
        }
        match self.max_children {
            None => {
                self.running.fetch_add(1, Ordering::AcqRel);
            }
            Some(max) => {
                self.running
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < max).then_some(n + 1)
                    })
                    .map_err(|_| TaskError::MaxChildren(max))?;
            }
        }
        Ok(())
    }

    /// Gives back a slot taken by [`reserve`](Self::reserve) for a task
    /// that never ran.
    fn unreserve(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// A task ended: forget it, free its slot, wake a waiting shutdown.
    fn release(&self, id: TaskId) {
        self.tasks.lock().remove(&id);
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn report(&self, event: &[&str], id: TaskId, reason: &str) {
        self.telemetry.emit(
            event,
            &[],
            &[
                ("supervisor", MetaValue::Str(&self.name)),
                ("task_id", MetaValue::U64(id.0)),
                ("reason", MetaValue::Str(reason)),
            ],
        );
    }
}

impl fmt::Debug for TaskSupervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskSupervisor")
            .field("name", &self.inner.name)
            .field("counts", &self.counts())
            .field("accepting", &self.is_accepting())
            .finish()
    }
}
