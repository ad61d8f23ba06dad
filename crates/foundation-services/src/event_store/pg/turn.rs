//! Leader/follower group commit: the queue of appends and the turn to
//! commit it. The first caller that finds no one committing commits on
//! its own task (no hand-off to a writer task and back); callers that
//! come meanwhile queue, and the writer task commits them as one group
//! once the turn ends (see the [module docs](super)).

use std::{collections::VecDeque, sync::Arc};

use tokio::{
    runtime::Handle,
    sync::{Mutex, Notify},
};

use super::writer::PgWriter;
use crate::event_store::{
    EventStoreError,
    append::{Drive, Lead},
    writer::AppendRequest,
};

/// The appends waiting to be committed, and who commits them.
pub(crate) struct Appends {
    queue: parking_lot::Mutex<Queue>,
    /// Wakes the writer task: an append was queued while no one held
    /// the turn, or a turn ended with appends waiting.
    pub(crate) writer_wake: Notify,
    /// The writer's connection and state: held by whoever commits (a
    /// leading caller or the writer task).
    pub(crate) writer: Arc<Mutex<PgWriter>>,
    runtime: Handle,
    max_group: usize,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<AppendRequest>,
    /// Someone holds the turn: took a group and commits it.
    committing: bool,
    /// The writer stopped taking appends.
    closed: bool,
}

impl std::fmt::Debug for Appends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appends").finish_non_exhaustive()
    }
}

impl Appends {
    /// The queue of a writer; call on the runtime the store runs on.
    pub(crate) fn new(writer: PgWriter, max_group: usize) -> Appends {
        Appends {
            queue: parking_lot::Mutex::new(Queue::default()),
            writer_wake: Notify::new(),
            writer: Arc::new(Mutex::new(writer)),
            runtime: Handle::current(),
            max_group,
        }
    }

    /// Queues `request` behind every append queued before; answers how
    /// its caller may lead the commit. Once the writer has stopped, the
    /// request is refused (answered) and so is the call.
    pub(crate) fn push(self: &Arc<Self>, request: AppendRequest) -> Result<Lead, EventStoreError> {
        let mut queue = self.queue.lock();
        if queue.closed {
            drop(queue);
            let error = EventStoreError::unavailable("the store is closed");
            let _ = request.reply.send(Err(error.clone()));
            return Err(error);
        }
        queue.pending.push_back(request);
        let idle = !queue.committing;
        drop(queue);
        // A caller that never polls its append (or polls it late) must
        // not hold up the queue: the writer commits it if no caller has.
        if idle {
            self.writer_wake.notify_one();
        }
        let appends = self.clone();
        Ok(Box::new(move || appends.lead()))
    }

    /// Takes the turn and the oldest group (whole requests, until it
    /// holds `max_group` events), unless someone holds the turn or
    /// nothing waits.
    fn take_turn(&self) -> Option<(Vec<AppendRequest>, usize)> {
        let mut queue = self.queue.lock();
        if queue.committing || queue.pending.is_empty() {
            return None;
        }
        queue.committing = true;
        let mut size = 0;
        let mut group = Vec::new();
        while size < self.max_group
            && let Some(request) = queue.pending.pop_front()
        {
            size += request.events.len();
            group.push(request);
        }
        Some((group, size))
    }

    /// Ends a turn; wakes the writer when appends wait (or it is
    /// closing and waits for the turn).
    fn end_turn(&self) {
        let mut queue = self.queue.lock();
        queue.committing = false;
        let wake = !queue.pending.is_empty() || queue.closed;
        drop(queue);
        if wake {
            self.writer_wake.notify_one();
        }
    }

    /// A caller's try at the turn: the commit of the oldest group (which
    /// holds its append, unless that one was taken already) on the
    /// caller's task, or `None` when someone else commits.
    fn lead(self: Arc<Self>) -> Option<Drive> {
        let (group, size) = self.take_turn()?;
        let runtime = self.runtime.clone();
        Some(Drive::new(
            async move {
                let turn = Turn(self);
                let mut writer = turn.0.writer.clone().lock_owned().await;
                writer.commit_group(group, size).await;
            },
            runtime,
        ))
    }

    /// The writer task's part: commits the waiting groups, one turn
    /// each, until none waits or a caller holds the turn (whose end
    /// wakes the writer again if appends wait).
    pub(crate) async fn drain(&self) {
        while let Some((group, size)) = self.take_turn() {
            self.writer.lock().await.commit_group(group, size).await;
            let mut queue = self.queue.lock();
            queue.committing = false;
        }
    }

    /// Takes no appends from now on.
    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
    }

    /// Whether no one commits and nothing waits.
    pub(crate) fn is_idle(&self) -> bool {
        let queue = self.queue.lock();
        !queue.committing && queue.pending.is_empty()
    }
}

/// A leader's turn: ends when its commit ends (or is dropped).
struct Turn(Arc<Appends>);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.end_turn();
    }
}
