//! Subscriptions: to a whole namespace, a name or a group, with a snapshot
//! taken atomically with the subscription.

use std::{sync::Arc, time::Duration};

use dashmap::mapref::entry::Entry;
use mabeam_supervision_core::{
    Metadata, Namespace, ProcessHandle, RegistryEvent, RegistryEvents, Snapshot, Subscription,
    Topic,
};

use super::{ProcessRegistry, live, names::names_of};

impl ProcessRegistry {
    /// Subscribes to every change of `namespace` from now on, in order.
    /// Drop the receiver to unsubscribe. Bounded: a subscriber that falls
    /// [`EVENT_BUFFER`](mabeam_supervision_core::EVENT_BUFFER) events behind is
    /// told it lagged (see [`RegistryEvents`]).
    pub fn subscribe(&self, namespace: &Namespace) -> RegistryEvents {
        self.table_or_new(namespace)
            .subscribers
            .subscribe(Topic::All)
    }

    /// Subscribes to `topic` in `namespace` and returns its current state
    /// with the subscription: every change applied after the snapshot
    /// arrives as an event, none applied before it does.
    ///
    /// A name or group topic locks only that name's or group's shard while
    /// it takes its snapshot, and receives only that name's or group's
    /// events. [`Topic::All`] waits for the changes in progress in the
    /// namespace and holds new ones back while it takes the snapshot of
    /// every name and group (O(namespace)).
    pub fn subscribe_to(&self, namespace: &Namespace, topic: Topic) -> Subscription {
        let table = self.table_or_new(namespace);
        let subscribers = &table.subscribers;
        let mut snapshot = Snapshot::default();
        let events = match topic {
            Topic::Name(name) => {
                // The name's stripe lock is held until the subscription is
                // made: no change of the name falls in between.
                let _writing = table.names.lock(&name);
                let guard = table.names.guard();
                if let Some(entry) = table.names.map.get(&*name, &guard)
                    && let Some(holder) = live(&entry.handle)
                {
                    snapshot.names.push((
                        Arc::clone(&name),
                        holder,
                        Metadata::clone(&entry.metadata),
                    ));
                }
                subscribers.subscribe(Topic::Name(name))
            }
            Topic::Group(group) => match table.groups.entry(group.clone()) {
                Entry::Occupied(slot) => {
                    let members: Vec<_> = slot.get().iter().filter_map(live).collect();
                    if !members.is_empty() {
                        snapshot.groups.push((group.clone(), members));
                    }
                    subscribers.subscribe(Topic::Group(group))
                }
                Entry::Vacant(_slot) => subscribers.subscribe(Topic::Group(group)),
            },
            other => table.quiet(|| {
                snapshot.names = names_of(&table, |_, _| true);
                let mut groups: Vec<(Arc<str>, Vec<_>)> = table
                    .groups
                    .iter()
                    .map(|entry| {
                        let members = entry.value().iter().filter_map(live).collect();
                        (entry.key().clone(), members)
                    })
                    .filter(|(_, members): &(_, Vec<_>)| !members.is_empty())
                    .collect();
                groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                snapshot.groups = groups;
                subscribers.subscribe(other)
            }),
        };
        Subscription { snapshot, events }
    }

    /// Waits until a live process holds `name` in `namespace` and returns
    /// it, or `None` once `timeout` has passed (or the registry ended the
    /// subscription). Returns at once when the name is held now.
    ///
    /// This is how a caller reaches a name again after its holder
    /// restarted (OTP's `{via, ...}` names come back with the new
    /// process): no polling loop, the registration itself wakes it.
    pub async fn wait_for(
        &self,
        namespace: &Namespace,
        name: &str,
        timeout: Duration,
    ) -> Option<ProcessHandle> {
        // Subscribing takes the snapshot and the subscription at once: a
        // registration between the two cannot be missed.
        let mut subscription = self.subscribe_to(namespace, Topic::Name(Arc::from(name)));
        if let Some((_, handle, _)) = subscription.snapshot.names.into_iter().next() {
            return Some(handle);
        }
        let registered = async {
            loop {
                match subscription.events.recv().await {
                    Ok(RegistryEvent::Registered { handle, .. }) => {
                        if let Some(handle) = handle.upgrade().filter(ProcessHandle::is_alive) {
                            return Some(handle);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        };
        tokio::time::timeout(timeout, registered)
            .await
            .ok()
            .flatten()
    }
}
