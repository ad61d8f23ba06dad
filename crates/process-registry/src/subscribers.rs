//! The subscribers of one namespace, indexed by [`Topic`], each a bounded
//! channel that receives its topic's [`RegistryEvent`]s in the order the
//! registry applied them.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use mabeam_supervision_core::{RegistryEvent, RegistryEventSender, RegistryEvents, Topic};
use parking_lot::Mutex;

/// The subscribers of one namespace.
///
/// Events are sent while the writer still holds the lock of the name or
/// group it changed, so two changes of one name reach every subscriber in
/// the order they were applied. Sending never waits: a subscriber whose
/// buffer is full is removed, and its receiver reports that it lagged
/// (see [`RegistryEvents`]); one whose receiver is gone is removed at the
/// next event of its topic or the next subscription.
#[derive(Debug)]
pub(crate) struct Subscribers {
    /// How many subscribers there are, read without the lock so that a
    /// namespace without subscribers pays one atomic load per change.
    count: AtomicUsize,
    /// Each subscription's buffer.
    capacity: usize,
    inner: Mutex<ByTopic>,
}

/// The subscribers by topic.
#[derive(Debug, Default)]
struct ByTopic {
    all: Vec<RegistryEventSender>,
    names: HashMap<Arc<str>, Vec<RegistryEventSender>>,
    groups: HashMap<Arc<str>, Vec<RegistryEventSender>>,
}

impl ByTopic {
    fn len(&self) -> usize {
        self.all.len()
            + self.names.values().map(Vec::len).sum::<usize>()
            + self.groups.values().map(Vec::len).sum::<usize>()
    }

    /// Drops the subscribers whose receiver is gone.
    fn prune(&mut self) {
        self.all.retain(|tx| !tx.is_closed());
        for senders in [&mut self.names, &mut self.groups] {
            senders.retain(|_, txs| {
                txs.retain(|tx| !tx.is_closed());
                !txs.is_empty()
            });
        }
    }
}

/// What a change is about: a name or a group.
#[derive(Debug, Clone, Copy)]
pub(crate) enum About<'a> {
    Name(&'a str),
    Group(&'a str),
}

impl Subscribers {
    pub(crate) fn new(capacity: usize) -> Self {
        Subscribers {
            count: AtomicUsize::new(0),
            capacity,
            inner: Mutex::new(ByTopic::default()),
        }
    }

    /// Adds a subscriber to `topic`. Call it with the lock of the topic's
    /// name or group held (or with no change in progress, for
    /// [`Topic::All`]) to subscribe atomically with a snapshot.
    pub(crate) fn subscribe(&self, topic: Topic) -> RegistryEvents {
        let (tx, rx) = RegistryEvents::channel(self.capacity);
        let mut inner = self.inner.lock();
        inner.prune();
        match topic {
            Topic::Name(name) => inner.names.entry(name).or_default().push(tx),
            Topic::Group(group) => inner.groups.entry(group).or_default().push(tx),
            // `Topic::All`, and any topic added later, gets everything.
            _ => inner.all.push(tx),
        }
        self.count.store(inner.len(), Ordering::Release);
        rx
    }

    /// Sends the event made by `make`, about `about`, to the subscribers of
    /// its topic and of the whole namespace; `make` runs only if there is
    /// one.
    pub(crate) fn send(&self, about: About<'_>, make: impl FnOnce() -> RegistryEvent) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut inner = self.inner.lock();
        let ByTopic { all, names, groups } = &mut *inner;
        let topic = match about {
            About::Name(name) => names.get_mut(name),
            About::Group(group) => groups.get_mut(group),
        };
        if all.is_empty() && topic.is_none() {
            return;
        }
        let event = make();
        all.retain(|tx| tx.send(event.clone()));
        if let Some(txs) = topic {
            txs.retain(|tx| tx.send(event.clone()));
            if txs.is_empty() {
                match about {
                    About::Name(name) => names.remove(name),
                    About::Group(group) => groups.remove(group),
                };
            }
        }
        self.count.store(inner.len(), Ordering::Release);
    }

    /// How many subscribers there are (closed ones included until they
    /// are pruned).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unregistered(name: &str) -> impl FnOnce() -> RegistryEvent + '_ {
        move || -> RegistryEvent { unreachable!("no subscriber of {name:?}, no event") }
    }

    #[test]
    fn no_subscriber_makes_no_event() {
        let subscribers = Subscribers::new(4);
        subscribers.send(About::Name("g"), unregistered("g"));
        let _other = subscribers.subscribe(Topic::Name("other".into()));
        subscribers.send(About::Name("g"), unregistered("g"));
        subscribers.send(About::Group("other"), unregistered("other"));
    }

    #[test]
    fn dropped_receiver_is_removed() {
        let subscribers = Subscribers::new(4);
        let kept = subscribers.subscribe(Topic::All);
        let dropped = subscribers.subscribe(Topic::Name("n".into()));
        assert_eq!(subscribers.len(), 2);
        drop(dropped);
        let _other = subscribers.subscribe(Topic::All);
        assert_eq!(
            subscribers.len(),
            2,
            "the closed one is pruned on subscribe"
        );
        drop(kept);
    }
}
