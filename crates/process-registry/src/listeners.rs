//! The listeners of one namespace: channels that receive its
//! [`RegistryEvent`]s in the order the registry applied them.

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use supervision_core::{RegistryEvent, RegistryEvents};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

/// The subscribers of one namespace.
///
/// Events are sent while the writer still holds the lock of the name or
/// group it changed, so two changes of one name reach every listener in the
/// order they were applied. A listener whose receiver is gone (dropped, or
/// its owner stopped) is removed at the next event or subscription; it
/// never holds the registry up (the channels are unbounded).
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    /// How many senders are in `senders`, read without the lock so that a
    /// namespace without listeners pays one atomic load per change.
    count: AtomicUsize,
    senders: Mutex<Vec<UnboundedSender<RegistryEvent>>>,
}

impl Listeners {
    /// Adds a listener.
    pub(crate) fn subscribe(&self) -> RegistryEvents {
        let (tx, rx) = unbounded_channel();
        let mut senders = self.senders.lock();
        senders.retain(|tx| !tx.is_closed());
        senders.push(tx);
        self.count.store(senders.len(), Ordering::Release);
        rx
    }

    /// Sends the event made by `make` to every listener; `make` runs only
    /// if there is one.
    pub(crate) fn send(&self, make: impl FnOnce() -> RegistryEvent) {
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut senders = self.senders.lock();
        if senders.is_empty() {
            return;
        }
        let event = make();
        senders.retain(|tx| tx.send(event.clone()).is_ok());
        self.count.store(senders.len(), Ordering::Release);
    }

    /// How many listeners are subscribed (closed ones included until the
    /// next event).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn left(group: &str) -> impl FnOnce() -> RegistryEvent + '_ {
        move || RegistryEvent::Unregistered {
            name: Arc::from(group),
            handle: unreachable_handle(),
            exit: None,
        }
    }

    // Events are only made when a listener exists; a test that needs no
    // real handle never makes one.
    fn unreachable_handle() -> supervision_core::ProcessHandle {
        unreachable!("no listener, no event")
    }

    #[test]
    fn no_listener_makes_no_event() {
        let listeners = Listeners::default();
        listeners.send(left("g"));
    }

    #[test]
    fn dropped_receiver_is_removed() {
        let listeners = Listeners::default();
        let kept = listeners.subscribe();
        let dropped = listeners.subscribe();
        assert_eq!(listeners.len(), 2);
        drop(dropped);
        let _other = listeners.subscribe();
        assert_eq!(listeners.len(), 2, "the closed one is pruned on subscribe");
        drop(kept);
    }
}
