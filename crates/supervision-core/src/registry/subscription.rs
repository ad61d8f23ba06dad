//! Subscriptions to a registry's changes: what a subscriber asks for
//! ([`Topic`]), what it gets ([`Subscription`]: a [`Snapshot`] taken
//! atomically with the subscription, then [`RegistryEvents`]), and the
//! bounded channel between the registry and it.
//!
//! # Bounded, and never silently lossy
//!
//! Each subscription buffers at most [`EVENT_BUFFER`] events (or the
//! capacity its registry chose). A registry never waits on a subscriber:
//! when a subscriber's buffer is full, the registry ends that subscription
//! instead of dropping an event. The subscriber receives every event
//! buffered before that, then [`RecvError::Lagged`]: from there on it has
//! missed changes, and subscribes again ([`Registry::subscribe_to`] returns
//! a fresh snapshot with the new subscription). So memory stays bounded and
//! no subscriber ever believes it saw every change when it did not.
//!
//! [`Registry::subscribe_to`]: crate::Registry::subscribe_to

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use thiserror::Error;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{Metadata, ProcessHandle, RegistryEvent};

/// How many events a subscription buffers before it is ended as lagged:
/// 1024.
pub const EVENT_BUFFER: usize = 1024;

/// What a subscription receives: the changes of a whole namespace, of one
/// name, or of one group. A registry filters at the source, so a subscriber
/// to one name is not woken by the others.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Topic {
    /// Every change of the namespace.
    All,
    /// `Registered` and `Unregistered` of this name.
    Name(Arc<str>),
    /// `Joined` and `Left` of this group.
    Group(Arc<str>),
}

impl Topic {
    /// Whether `event` is about this topic.
    pub fn matches(&self, event: &RegistryEvent) -> bool {
        match (self, event) {
            (Topic::All, _) => true,
            (
                Topic::Name(name),
                RegistryEvent::Registered { name: n, .. }
                | RegistryEvent::Unregistered { name: n, .. },
            ) => name == n,
            (
                Topic::Group(group),
                RegistryEvent::Joined { group: g, .. } | RegistryEvent::Left { group: g, .. },
            ) => group == g,
            _ => false,
        }
    }
}

/// The state of a topic at the instant of subscribing: every event of the
/// subscription is a change applied after it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The names of the topic held by live processes, with holder and
    /// metadata, sorted by name (empty for a group topic).
    pub names: Vec<(Arc<str>, ProcessHandle, Metadata)>,
    /// The groups of the topic with their live members in join order,
    /// sorted by group (empty for a name topic).
    pub groups: Vec<(Arc<str>, Vec<ProcessHandle>)>,
}

/// A subscription: the topic's [`Snapshot`] and the changes after it, with
/// none lost in between and none counted twice.
#[derive(Debug)]
pub struct Subscription {
    /// The state when the subscription began.
    pub snapshot: Snapshot,
    /// The changes since, in the order the registry applied them.
    pub events: RegistryEvents,
}

impl Subscription {
    /// The next change after the snapshot: [`RegistryEvents::recv`] on
    /// [`events`](Self::events), so a subscriber need not reach into it.
    pub async fn recv(&mut self) -> Result<RegistryEvent, RecvError> {
        self.events.recv().await
    }

    /// The next change if one is buffered: [`RegistryEvents::try_recv`].
    pub fn try_recv(&mut self) -> Result<RegistryEvent, TryRecvError> {
        self.events.try_recv()
    }
}

/// Why [`RegistryEvents::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecvError {
    /// The subscription ended because its buffer was full: events after
    /// the last one received were not delivered. Subscribe again.
    #[error("subscriber lagged behind; the subscription ended")]
    Lagged,
    /// The registry (or this namespace's table) is gone.
    #[error("the registry closed the subscription")]
    Closed,
}

/// Why [`RegistryEvents::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TryRecvError {
    /// No event is buffered now.
    #[error("no event buffered")]
    Empty,
    /// As [`RecvError::Lagged`].
    #[error("subscriber lagged behind; the subscription ended")]
    Lagged,
    /// As [`RecvError::Closed`].
    #[error("the registry closed the subscription")]
    Closed,
}

/// The receiving end of a subscription: events arrive in the order the
/// registry applied them; dropping it ends the subscription. Bounded: a
/// subscriber that falls a full buffer behind receives what was buffered,
/// then [`RecvError::Lagged`], and subscribes again from a snapshot
/// ([`Registry::subscribe_to`](crate::Registry::subscribe_to)).
#[derive(Debug)]
pub struct RegistryEvents {
    rx: mpsc::Receiver<RegistryEvent>,
    lagged: Arc<AtomicBool>,
}

/// The registry's end of a subscription, for implementations of
/// [`Registry`](crate::Registry).
#[derive(Debug)]
pub struct RegistryEventSender {
    tx: mpsc::Sender<RegistryEvent>,
    lagged: Arc<AtomicBool>,
}

impl RegistryEvents {
    /// A subscription channel buffering at most `capacity` events (at
    /// least one).
    pub fn channel(capacity: usize) -> (RegistryEventSender, RegistryEvents) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        (
            RegistryEventSender {
                tx,
                lagged: lagged.clone(),
            },
            RegistryEvents { rx, lagged },
        )
    }

    fn ended(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    /// The next event; [`RecvError::Lagged`] once the buffered events are
    /// read if the subscription ended for lagging, [`RecvError::Closed`]
    /// if the registry ended it.
    pub async fn recv(&mut self) -> Result<RegistryEvent, RecvError> {
        match self.rx.recv().await {
            Some(event) => Ok(event),
            None if self.ended() => Err(RecvError::Lagged),
            None => Err(RecvError::Closed),
        }
    }

    /// The next event if one is buffered.
    pub fn try_recv(&mut self) -> Result<RegistryEvent, TryRecvError> {
        match self.rx.try_recv() {
            Ok(event) => Ok(event),
            Err(mpsc::error::TryRecvError::Empty) => Err(TryRecvError::Empty),
            Err(mpsc::error::TryRecvError::Disconnected) if self.ended() => {
                Err(TryRecvError::Lagged)
            }
            Err(mpsc::error::TryRecvError::Disconnected) => Err(TryRecvError::Closed),
        }
    }
}

impl RegistryEventSender {
    /// Buffers `event` without waiting. False when the subscription is
    /// over: the receiver is gone, or its buffer was full (then the
    /// receiver is told it lagged once this sender is dropped). Drop a
    /// sender that returned false.
    pub fn send(&self, event: RegistryEvent) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
