//! Cleanup: stop every process of a namespace, each through its
//! [`Stopper`] (so a supervised one is not restarted), and leave the
//! namespace empty.

use std::{collections::HashMap, time::Duration};

use kameo::actor::ActorId;
use mabeam_supervision_core::{
    MetaValue, Namespace, ProcessHandle, RegistryEvent, Stopper, events,
};

use super::{ProcessRegistry, exit_now, live};
use crate::{
    records::Kind,
    subscribers::About,
    table::{Name, NsTable},
};

/// How long [`ProcessRegistry::cleanup`] lets a process take to stop before
/// it is killed: 5 seconds, OTP's default shutdown of a worker.
pub const DEFAULT_CLEANUP_SHUTDOWN: Duration = Duration::from_secs(5);

/// What [`ProcessRegistry::cleanup`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// Processes that stopped when asked (by their stopper or their handle).
    pub stopped: usize,
    /// Processes killed because they outlasted the shutdown timeout.
    pub killed: usize,
    /// Names and memberships removed after the processes stopped (those
    /// their cleanup task had not removed yet, and those of processes that
    /// registered while the cleanup ran).
    pub unregistered: usize,
}

impl ProcessRegistry {
    /// [`cleanup_with_timeout`](Self::cleanup_with_timeout) with
    /// [`DEFAULT_CLEANUP_SHUTDOWN`] (5 seconds).
    pub async fn cleanup(&self, namespace: &Namespace) -> CleanupReport {
        self.cleanup_with_timeout(namespace, DEFAULT_CLEANUP_SHUTDOWN)
            .await
    }

    /// Stops every live process that has a name or membership in
    /// `namespace`, then leaves the namespace empty; returns once all have
    /// stopped.
    ///
    /// Each process is stopped by its [`Stopper`] if it was registered with
    /// one (a supervised process through its supervisor, so it is not
    /// restarted; a child spec
    /// [`registered_as`](mabeam_supervision_core::ChildSpec::registered_as) a name
    /// always has one), else by [`ProcessHandle::stop`]; all at once. One
    /// that has not stopped within `shutdown` is killed. A process
    /// registered in other namespaces too is stopped all the same, and so
    /// leaves them.
    ///
    /// Names and memberships still present once the processes have stopped
    /// are removed, with their events; a process that registered while the
    /// cleanup ran is unregistered, not stopped. Subscribers stay
    /// subscribed.
    pub async fn cleanup_with_timeout(
        &self,
        namespace: &Namespace,
        shutdown: Duration,
    ) -> CleanupReport {
        let started = tokio::time::Instant::now();
        let Some(table) = self.table(namespace) else {
            return CleanupReport::default();
        };
        let mut processes: HashMap<ActorId, ProcessHandle> = HashMap::new();
        {
            let guard = table.names.guard();
            for entry in table.names.map.values(&guard) {
                if let Some(handle) = live(&entry.handle) {
                    processes.insert(handle.id(), handle);
                }
            }
        }
        for group in table.groups.iter() {
            for member in group.iter().filter_map(live) {
                processes.insert(member.id(), member);
            }
        }
        let stops = processes.into_values().map(|handle| {
            let stopper = self.inner.records.stopper(handle.id());
            stop_one(handle, stopper, shutdown)
        });
        let outcomes = futures::future::join_all(stops).await;
        let killed = outcomes.iter().filter(|killed| **killed).count();
        let mut report = CleanupReport {
            stopped: outcomes.len() - killed,
            killed,
            unregistered: 0,
        };
        report.unregistered = self.clear(namespace, &table);

        let telemetry = &self.inner.telemetry;
        if telemetry.is_enabled() {
            let label = namespace.to_string();
            telemetry.emit(
                events::REGISTRY_CLEANUP,
                &[
                    ("stopped", report.stopped as f64),
                    ("killed", report.killed as f64),
                    ("unregistered", report.unregistered as f64),
                    ("duration_us", started.elapsed().as_micros() as f64),
                ],
                &[("namespace", MetaValue::Str(&label))],
            );
        }
        report
    }

    /// Removes every name and membership of a namespace; returns how many.
    fn clear(&self, namespace: &Namespace, table: &NsTable) -> usize {
        let _changing = table.changing();
        let mut removed = 0;
        let guard = table.names.guard();
        let names: Vec<Name> = table.names.map.keys(&guard).cloned().collect();
        for name in names {
            let _writing = table.names.lock(&name);
            // The event goes after the removal, once (papaya may call a
            // predicate more than once).
            let gone = table.names.map.remove(&*name, &guard);
            if let Some(entry) = gone {
                self.released_name(
                    namespace,
                    table,
                    &name,
                    &entry.handle,
                    exit_now(&entry.handle),
                );
            }
            removed += usize::from(gone.is_some());
        }
        drop(guard);
        let groups: Vec<_> = table.groups.iter().map(|e| e.key().clone()).collect();
        for group in groups {
            let _ = table.groups.remove_if(&*group, |key, members| {
                for member in members {
                    let exit = exit_now(member);
                    table
                        .subscribers
                        .send(About::Group(key), || RegistryEvent::Left {
                            group: key.clone(),
                            handle: member.clone(),
                            exit,
                        });
                    self.inner
                        .records
                        .remove(member.id(), namespace, Kind::Group, key);
                    removed += 1;
                }
                true
            });
        }
        removed
    }
}

/// Stops one process for a cleanup; true if it had to be killed.
async fn stop_one(handle: ProcessHandle, stopper: Option<Stopper>, shutdown: Duration) -> bool {
    let graceful = async {
        if let Some(stopper) = stopper {
            stopper.stop(handle.clone()).await;
        }
        if handle.is_alive() {
            handle.stop().await
        } else {
            handle.exited().await
        }
    };
    match tokio::time::timeout(shutdown, graceful).await {
        Ok(_) => false,
        Err(_elapsed) => {
            handle.kill();
            handle.exited().await;
            true
        }
    }
}
