//! The watcher: one task per registered process that awaits its exit,
//! without holding it, and then removes every name and membership it had.

use std::sync::{Arc, Weak};

use mabeam_supervision_core::{
    ExitReason, Namespace, ProcessHandle, RegistryEvent, Stopper, WeakProcessHandle, events,
};
use tokio::task::AbortHandle;

use super::{Inner, ProcessRegistry, shared};
use crate::{
    records::{Key, Kind},
    subscribers::About,
    table::Name,
};

impl ProcessRegistry {
    /// Records that `handle` has `key` and starts its watcher if it has
    /// none yet; an owned key (not `watched`, released by its owner) is
    /// not recorded at all. Called with the key's shard lock held.
    pub(super) fn track(
        &self,
        namespace: &Namespace,
        kind: Kind,
        key: &str,
        handle: &ProcessHandle,
        stopper: Option<&Stopper>,
        watched: bool,
    ) {
        if !watched {
            return;
        }
        let key = Key {
            ns: *namespace,
            kind,
            key: Name::from(key),
        };
        self.inner
            .records
            .add(handle.id(), key, stopper, || self.spawn_watcher(handle));
    }

    /// The task that cleans up after `handle` once it has stopped. It holds
    /// the process weakly, and the registry weakly.
    fn spawn_watcher(&self, handle: &ProcessHandle) -> Option<AbortHandle> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone())?;
        let registry: Weak<Inner> = Arc::downgrade(&self.inner);
        let handle = handle.downgrade();
        let task = runtime.spawn(async move {
            let reason = handle.exited().await;
            if let Some(inner) = registry.upgrade() {
                ProcessRegistry { inner }.process_exited(&handle, reason);
            }
        });
        Some(task.abort_handle())
    }

    /// Removes every name and membership of a process that stopped.
    fn process_exited(&self, handle: &WeakProcessHandle, reason: ExitReason) {
        let Some(record) = self.inner.records.take(handle.id()) else {
            return;
        };
        let (mut names, mut memberships) = (0usize, 0usize);
        for key in &record.keys {
            let Some(table) = self.table(&key.ns) else {
                continue;
            };
            let _changing = table.changing();
            match key.kind {
                Kind::Name => {
                    let _writing = table.names.lock(&key.key);
                    let guard = table.names.guard();
                    // The predicate only decides (papaya may call it more
                    // than once); the event goes once, after the removal.
                    let removed = table.names.map.remove_if(
                        &*key.key,
                        // Taken over since: not ours to remove.
                        |_, entry| entry.handle == *handle,
                        &guard,
                    );
                    if let Ok(Some((name, _))) = removed {
                        table
                            .subscribers
                            .send(About::Name(name), || RegistryEvent::Unregistered {
                                name: shared(name),
                                handle: handle.clone(),
                                exit: Some(reason.clone()),
                            });
                    }
                    names += usize::from(matches!(removed, Ok(Some(_))));
                }
                Kind::Group => {
                    // Every membership of this group goes at the first key;
                    // the others find none left.
                    let _ = table.groups.remove_if_mut(&*key.key, |group, members| {
                        members.retain(|member| {
                            if member != handle {
                                return true;
                            }
                            memberships += 1;
                            table
                                .subscribers
                                .send(About::Group(group), || RegistryEvent::Left {
                                    group: group.clone(),
                                    handle: handle.clone(),
                                    exit: Some(reason.clone()),
                                });
                            false
                        });
                        members.is_empty()
                    });
                }
            }
        }
        let telemetry = &self.inner.telemetry;
        if telemetry.is_enabled() {
            telemetry.emit(
                events::REGISTRY_PROCESS_DOWN,
                &[("names", names as f64), ("memberships", memberships as f64)],
                &[],
            );
        }
    }
}
