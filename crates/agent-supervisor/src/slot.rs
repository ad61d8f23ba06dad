//! [`Slot`]: the registry's record of one agent, shared by the table, the
//! agent's [`AgentRef`](crate::AgentRef)s and its running incarnation. It
//! outlives incarnations: this is the agent's address.

use std::{
    any::Any,
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};

use kameo::actor::ActorId;
use mabeam_supervision_core::{AgentId, AgentStatus, ExitReason, ProcessHandle};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::{Agent, AgentConfig};

/// One agent's record. Laid out in order (`repr(C)`), what every lookup and
/// call reads first: the lock beside the current incarnation, the status
/// and the configuration, so a lookup touches one cache line of the record
/// (the compiler's own order put the lock and the incarnation apart).
#[repr(C)]
pub(crate) struct Slot {
    pub(crate) state: Mutex<SlotState>,
    pub(crate) id: AgentId,
    /// When it last handled a message, in milliseconds since the
    /// registry's origin (for passivation).
    pub(crate) last_active: AtomicU64,
}

/// What the slot's lock guards (the fields read on every call first).
#[repr(C)]
pub(crate) struct SlotState {
    /// The running incarnation.
    pub(crate) current: Option<ProcessHandle>,
    pub(crate) config: Arc<AgentConfig>,
    /// Counts incarnation changes, so a caller whose message bounced off a
    /// stopping incarnation waits for the next one.
    pub(crate) generation: u32,
    pub(crate) status: AgentStatus,
    /// State kept, no incarnation; wakes on the next message.
    pub(crate) passivated: bool,
    /// A wake (start from the kept state) is under way.
    pub(crate) waking: bool,
    /// Deregistered: every ref to it now says not found.
    pub(crate) removed: bool,
    /// A stop was asked for (stop_agent, deregister, update_config).
    pub(crate) stopping: bool,
    /// A passivation was asked for.
    pub(crate) passivating: bool,
    /// Its incarnation was taken down with its supervisor: it waits
    /// (status `Restarting`) for the next supervisor, which restarts it.
    pub(crate) orphaned: bool,
    /// Counts restart decisions, so a scheduled restart that was cancelled
    /// (the agent stopped meanwhile) does nothing.
    pub(crate) epoch: u32,
    pub(crate) restarts: u32,
    pub(crate) backoff_attempt: u32,
    /// Restarts within the current window (only allocated once it
    /// restarts; boxed, it weighs a pointer in every record).
    #[allow(clippy::box_collection)] // one pointer in every record, not four words
    pub(crate) window: Option<Box<VecDeque<Instant>>>,
    /// Boxed: most records never hold one.
    pub(crate) last_exit: Option<Box<ExitReason>>,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) started_mono: Option<Instant>,
    /// The passivated state, or the checkpoint for the next incarnation.
    /// (Boxed twice: a thin pointer in every record, allocated only
    /// while something is kept.)
    pub(crate) kept: Option<Box<Box<dyn Any + Send>>>,
    /// Tells its last incarnation did not handle, for the next one.
    pub(crate) mail: Option<Box<Mail>>,
}

/// Tells an incarnation left unhandled (type-erased: the host's boxed
/// messages), and how many.
pub(crate) struct Mail {
    pub(crate) messages: Box<dyn Any + Send>,
    pub(crate) len: usize,
}

/// Why an incarnation is stopping, as far as anyone asked it to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StopFlags {
    /// The registry stops the agent (stop, deregister, new config).
    pub(crate) stopping: bool,
    /// The registry passivates it.
    pub(crate) passivating: bool,
    /// A stop was requested through its handle, by the registry or by
    /// anyone else (its supervisor stopping it or itself).
    pub(crate) asked: bool,
}

/// What a stopped incarnation left for the next one.
pub(crate) enum Kept<A: Agent> {
    /// The state itself (passivation).
    Live(A),
    /// Its checkpoint.
    Checkpoint(A::Checkpoint),
    /// Its checkpoint as loaded from the store, with the stored bytes
    /// when small: what the store holds already.
    Loaded(A::Checkpoint, Option<Box<[u8]>>),
}

impl Slot {
    pub(crate) fn new(id: AgentId, config: Arc<AgentConfig>) -> Self {
        Slot {
            id,
            state: Mutex::new(SlotState {
                config,
                status: AgentStatus::Registered,
                passivated: false,
                waking: false,
                removed: false,
                current: None,
                generation: 0,
                stopping: false,
                passivating: false,
                orphaned: false,
                epoch: 0,
                restarts: 0,
                window: None,
                backoff_attempt: 0,
                last_exit: None,
                started_at: None,
                started_mono: None,
                kept: None,
                mail: None,
            }),
            last_active: AtomicU64::new(0),
        }
    }

    /// Takes what the previous incarnation left, if it is for type `A`.
    pub(crate) fn take_kept<A: Agent>(&self) -> Option<Kept<A>> {
        let kept = *self.state.lock().kept.take()?;
        kept.downcast::<Kept<A>>().ok().map(|kept| *kept)
    }

    /// Whether a stop or a passivation was asked for, of incarnation
    /// `actor`. `reached_stop`: the incarnation got to a stop signal,
    /// recorded in its handle here (under the lock this takes anyway).
    pub(crate) fn stop_flags(&self, actor: ActorId, reached_stop: bool) -> StopFlags {
        let state = self.state.lock();
        let handle = state.current.as_ref().filter(|handle| handle.id() == actor);
        if reached_stop && let Some(handle) = handle {
            handle.stop_reached();
        }
        StopFlags {
            stopping: state.stopping,
            passivating: state.passivating,
            asked: handle.is_some_and(ProcessHandle::stop_requested),
        }
    }

    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_active.store(now_ms, Ordering::Relaxed);
    }
}
