//! [`ProcessRegistry`]: the namespaced registry of unique names and groups,
//! implementing supervision-core's [`Registry`] contract.

use std::{
    collections::HashMap,
    fmt,
    ops::Deref,
    sync::{Arc, Weak},
    time::Duration,
};

use dashmap::mapref::entry::Entry;
use futures::FutureExt;
use kameo::actor::ActorId;
use supervision_core::{
    ExitReason, MetaValue, Metadata, Namespace, ProcessHandle, Registry, RegistryError,
    RegistryEvent, RegistryEvents, Telemetry,
};
use tokio::task::AbortHandle;

use crate::{
    Stopper,
    records::{Held, Kind, Records},
    table::{Map, Name, NameEntry, NsTable, map},
};

/// Shards of the production namespace's maps: many, so that two readers
/// rarely meet on one shard's lock word.
const PRODUCTION_SHARDS: usize = 128;
/// Shards of a test namespace's maps: tests hold few names.
const TEST_SHARDS: usize = 4;
/// Shards of the per-process index.
const RECORD_SHARDS: usize = 64;

/// How long [`ProcessRegistry::cleanup`] lets a process take to stop before
/// it is killed: 5 seconds, OTP's default shutdown of a worker.
pub const DEFAULT_CLEANUP_SHUTDOWN: Duration = Duration::from_secs(5);

/// A namespaced registry of processes: unique names with metadata, groups,
/// and change listeners. It implements [`Registry`]; hand it to other
/// crates as an `Arc<dyn Registry>`.
///
/// Cloning is cheap and every clone is the same registry. Each registry is
/// a value of its own: two registries share nothing.
///
/// # Liveness, and names of stopped processes
///
/// A holder counts as live while [`ProcessHandle::is_alive`] is true; that
/// turns false as soon as a stop is requested, before the process has run
/// its `on_stop`. So, like `Process.alive?` on the BEAM:
///
/// - [`lookup`](Self::lookup), [`list`](Self::list), [`count`](Self::count),
///   [`find`](Self::find) and [`members`](Self::members) never return a
///   holder that is stopping or stopped;
/// - a name whose holder is stopping or stopped is free:
///   [`register`](Self::register) takes it over at once, emitting
///   [`RegistryEvent::Unregistered`] for the old holder (with its exit
///   reason if it has already stopped, `None` while it is still stopping)
///   before [`RegistryEvent::Registered`];
/// - registering a handle that is not live fails with
///   [`RegistryError::NotAlive`].
///
/// Besides that, one tokio task per registered *process* (not per name)
/// awaits its exit and then removes every name and membership it held,
/// emitting `Unregistered` / `Left` with its exit reason. Correctness never
/// waits for that task; it only frees memory and tells listeners. The task
/// is spawned on the current tokio runtime, or on the one the registry was
/// created in; a registry used entirely outside any runtime has no such
/// task and relies on the rules above alone. The task ends when the
/// process stops or holds nothing any more.
///
/// # Costs
///
/// Lookups take one shard's read lock of the namespace's map and clone the
/// holder's handle (the production namespace needs no map lookup to find
/// its table; a test namespace needs one more). They emit no telemetry:
/// they are the hot path. Writes take the name's shard lock, then the
/// process's entry in the per-process index. A process that holds `k`
/// names pays O(`k`) to drop one of them.
///
/// # Example
///
/// ```
/// use kameo::Actor;
/// use process_registry::ProcessRegistry;
/// use serde_json::json;
/// use supervision_core::{Namespace, ProcessHandle, RegistryError, Telemetry};
///
/// #[derive(Actor)]
/// struct Worker;
///
/// # #[tokio::main] async fn main() {
/// let registry = ProcessRegistry::new(Telemetry::disabled());
/// let ns = Namespace::unique_test();
/// let a = ProcessHandle::spawn::<Worker>(Worker).await.unwrap();
/// let b = ProcessHandle::spawn::<Worker>(Worker).await.unwrap();
///
/// registry.register(&ns, "cache", a.clone(), json!({"shard": 1})).unwrap();
/// assert_eq!(registry.lookup(&ns, "cache"), Some(a.clone()));
/// assert!(matches!(
///     registry.register(&ns, "cache", b.clone(), json!(null)),
///     Err(RegistryError::AlreadyRegistered { .. })
/// ));
///
/// a.stop().await;
/// assert_eq!(registry.lookup(&ns, "cache"), None);
/// registry.register(&ns, "cache", b.clone(), json!(null)).unwrap(); // free at once
/// # b.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct ProcessRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    production: NsTable,
    tests: Map<u64, Arc<NsTable>>,
    records: Records,
    telemetry: Telemetry,
    runtime: Option<tokio::runtime::Handle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the watcher tasks, which hold their processes' handles.
        self.records.clear();
    }
}

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

/// A namespace's table: the production one is a field, a test one is
/// shared.
enum TableRef<'a> {
    Production(&'a NsTable),
    Test(Arc<NsTable>),
}

impl Deref for TableRef<'_> {
    type Target = NsTable;

    fn deref(&self) -> &NsTable {
        match self {
            TableRef::Production(table) => table,
            TableRef::Test(table) => table,
        }
    }
}

/// The exit reason of a process that has stopped; `None` while it runs or
/// is still stopping.
fn exit_now(handle: &ProcessHandle) -> Option<ExitReason> {
    handle.exited().now_or_never()
}

/// Metadata must be a JSON object or `null`.
fn check_metadata(metadata: &Metadata) -> Result<(), RegistryError> {
    match metadata {
        Metadata::Null | Metadata::Object(_) => Ok(()),
        other => Err(RegistryError::InvalidMetadata(format!(
            "expected an object or null, got {other}"
        ))),
    }
}

/// A result as telemetry metadata shows it.
fn outcome<T>(result: &Result<T, RegistryError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(RegistryError::AlreadyRegistered { .. }) => "already_registered",
        Err(RegistryError::InvalidMetadata(_)) => "invalid_metadata",
        Err(RegistryError::NotRegistered(_)) => "not_registered",
        Err(RegistryError::NotInGroup(_)) => "not_in_group",
        Err(RegistryError::NotAlive) => "not_alive",
        Err(_) => "error",
    }
}

impl ProcessRegistry {
    /// An empty registry emitting its telemetry through `telemetry`.
    ///
    /// Telemetry events (measurement `count` = 1 unless said otherwise;
    /// metadata `namespace` and `result`, e.g. `ok`, `already_registered`):
    /// `process_registry.register`, `.unregister`, `.update_metadata`,
    /// `.join`, `.leave`; `process_registry.process.down` when the cleanup
    /// task of a stopped process ran (measurements `names`, `memberships`);
    /// `process_registry.cleanup` (measurements `stopped`, `killed`,
    /// `unregistered`, `duration_us`). Lookups emit nothing.
    pub fn new(telemetry: Telemetry) -> Self {
        ProcessRegistry {
            inner: Arc::new(Inner {
                production: NsTable::new(PRODUCTION_SHARDS),
                tests: map(TEST_SHARDS),
                records: Records::new(RECORD_SHARDS),
                telemetry,
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// The table of `namespace`, if it has one.
    fn table(&self, namespace: &Namespace) -> Option<TableRef<'_>> {
        match namespace {
            Namespace::Production => Some(TableRef::Production(&self.inner.production)),
            Namespace::Test(id) => self
                .inner
                .tests
                .get(id)
                .map(|table| TableRef::Test(table.clone())),
        }
    }

    /// The table of `namespace`, made if needed. A namespace's table stays
    /// once made (an empty one weighs well under a kilobyte).
    fn table_or_new(&self, namespace: &Namespace) -> TableRef<'_> {
        match namespace {
            Namespace::Production => TableRef::Production(&self.inner.production),
            Namespace::Test(id) => TableRef::Test(
                self.inner
                    .tests
                    .entry(*id)
                    .or_insert_with(|| Arc::new(NsTable::new(TEST_SHARDS)))
                    .clone(),
            ),
        }
    }

    fn emit(&self, event: &[&str], namespace: &Namespace, result: &'static str) {
        let telemetry = &self.inner.telemetry;
        if !telemetry.is_enabled() {
            return;
        }
        let label = namespace.to_string();
        telemetry.emit(
            event,
            &[("count", 1.0)],
            &[
                ("namespace", MetaValue::Str(&label)),
                ("result", MetaValue::Str(result)),
            ],
        );
    }

    /// Records that `handle` holds `key`, starting its watcher if it is
    /// new to the index. Called with the key's shard lock held.
    fn hold(
        &self,
        namespace: &Namespace,
        kind: Kind,
        key: Arc<str>,
        handle: &ProcessHandle,
        stopper: Option<&Stopper>,
    ) {
        let held = Held {
            ns: *namespace,
            kind,
            key,
        };
        self.inner
            .records
            .hold(handle.id(), held, stopper, || self.spawn_watcher(handle));
    }

    /// The task that cleans up after `handle` once it has stopped.
    fn spawn_watcher(&self, handle: &ProcessHandle) -> Option<AbortHandle> {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone())?;
        let registry: Weak<Inner> = Arc::downgrade(&self.inner);
        let handle = handle.clone();
        let task = runtime.spawn(async move {
            let reason = handle.exited().await;
            if let Some(inner) = registry.upgrade() {
                ProcessRegistry { inner }.process_exited(&handle, reason);
            }
        });
        Some(task.abort_handle())
    }

    /// Removes every name and membership of a process that stopped.
    fn process_exited(&self, handle: &ProcessHandle, reason: ExitReason) {
        let Some(record) = self.inner.records.take(handle.id()) else {
            return;
        };
        let (mut names, mut memberships) = (0usize, 0usize);
        for held in &record.held {
            let Some(table) = self.table(&held.ns) else {
                continue;
            };
            match held.kind {
                Kind::Name => {
                    let removed = table.names.remove_if(&*held.key, |name, entry| {
                        if entry.handle != *handle {
                            return false; // taken over since
                        }
                        table.listeners.send(|| RegistryEvent::Unregistered {
                            name: shared(name),
                            handle: handle.clone(),
                            exit: Some(reason.clone()),
                        });
                        true
                    });
                    names += usize::from(removed.is_some());
                }
                Kind::Group => {
                    // Every membership of this group goes at the first held
                    // one; the others find none left.
                    let _ = table.groups.remove_if_mut(&*held.key, |group, members| {
                        members.retain(|member| {
                            if member != handle {
                                return true;
                            }
                            memberships += 1;
                            table.listeners.send(|| RegistryEvent::Left {
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
                &["process_registry", "process", "down"],
                &[("names", names as f64), ("memberships", memberships as f64)],
                &[],
            );
        }
    }

    /// Registers `handle` under `name` in `namespace` with `metadata` (a
    /// JSON object, or `null` for none).
    ///
    /// - `Ok` if the name was free, or held by a process that is not live
    ///   (it is taken over), or already held by this same handle (the
    ///   metadata is replaced and `Registered` is emitted again);
    /// - [`RegistryError::AlreadyRegistered`] with the holder if another
    ///   live process holds it;
    /// - [`RegistryError::InvalidMetadata`] if `metadata` is not an object
    ///   or `null`;
    /// - [`RegistryError::NotAlive`] if `handle` is not live.
    pub fn register(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        let result = self.insert(namespace, name, handle, metadata, None);
        self.emit(
            &["process_registry", "register"],
            namespace,
            outcome(&result),
        );
        result
    }

    /// [`register`](Self::register), with the [`Stopper`] that
    /// [`cleanup`](Self::cleanup) uses to stop this process (for a
    /// supervised process: through its supervisor).
    pub fn register_with_stopper(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
        stopper: Stopper,
    ) -> Result<(), RegistryError> {
        let result = self.insert(namespace, name, handle, metadata, Some(&stopper));
        self.emit(
            &["process_registry", "register"],
            namespace,
            outcome(&result),
        );
        result
    }

    fn insert(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
        stopper: Option<&Stopper>,
    ) -> Result<(), RegistryError> {
        check_metadata(&metadata)?;
        if !handle.is_alive() {
            return Err(RegistryError::NotAlive);
        }
        let table = self.table_or_new(namespace);
        match table.names.entry(Name::from(name)) {
            Entry::Occupied(mut slot) => {
                let holder = slot.get().handle.clone();
                if holder == handle {
                    slot.get_mut().metadata = metadata;
                    if let Some(stopper) = stopper {
                        // Re-registering holds nothing new, but may bring
                        // a new stopper.
                        self.inner.records.set_stopper(handle.id(), stopper);
                    }
                    table.listeners.send(|| RegistryEvent::Registered {
                        name: shared(slot.key()),
                        handle,
                        metadata: slot.get().metadata.clone(),
                    });
                    return Ok(());
                }
                if holder.is_alive() {
                    return Err(RegistryError::AlreadyRegistered {
                        name: shared(slot.key()),
                        holder,
                    });
                }
                // The holder is stopping or stopped: the name is free.
                *slot.get_mut() = NameEntry {
                    handle: handle.clone(),
                    metadata,
                };
                self.released_name(namespace, &table, name, &holder, exit_now(&holder));
                table.listeners.send(|| RegistryEvent::Registered {
                    name: shared(slot.key()),
                    handle: handle.clone(),
                    metadata: slot.get().metadata.clone(),
                });
                self.hold(namespace, Kind::Name, shared(slot.key()), &handle, stopper);
            }
            Entry::Vacant(slot) => {
                let slot = slot.insert_entry(NameEntry {
                    handle: handle.clone(),
                    metadata,
                });
                table.listeners.send(|| RegistryEvent::Registered {
                    name: shared(slot.key()),
                    handle: handle.clone(),
                    metadata: slot.get().metadata.clone(),
                });
                self.hold(namespace, Kind::Name, shared(slot.key()), &handle, stopper);
            }
        }
        Ok(())
    }

    /// Frees `name` and returns its former holder;
    /// [`RegistryError::NotRegistered`] if no live process held it (a
    /// holder that is not live is removed all the same).
    pub fn unregister(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<ProcessHandle, RegistryError> {
        let result = self.remove_name(namespace, name);
        self.emit(
            &["process_registry", "unregister"],
            namespace,
            outcome(&result),
        );
        result
    }

    /// Frees `name` only if `handle` holds it (alive or not); returns
    /// whether it did. A name taken over by another process is left alone,
    /// so an incarnation that stops can never free its successor's name.
    pub fn unregister_if(&self, namespace: &Namespace, name: &str, handle: &ProcessHandle) -> bool {
        let Some(table) = self.table(namespace) else {
            return false;
        };
        let removed = table.names.remove_if(name, |key, entry| {
            if entry.handle != *handle {
                return false;
            }
            let exit = if entry.handle.is_alive() {
                None
            } else {
                exit_now(&entry.handle)
            };
            self.released_name(namespace, &table, key, &entry.handle, exit);
            true
        });
        let freed = removed.is_some();
        self.emit(
            &["process_registry", "unregister"],
            namespace,
            if freed { "ok" } else { "not_registered" },
        );
        freed
    }

    fn remove_name(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<ProcessHandle, RegistryError> {
        let not_registered = || RegistryError::NotRegistered(Arc::from(name));
        let table = self.table(namespace).ok_or_else(not_registered)?;
        let mut was_live = false;
        let removed = table.names.remove_if(name, |key, entry| {
            was_live = entry.handle.is_alive();
            let exit = if was_live {
                None
            } else {
                exit_now(&entry.handle)
            };
            self.released_name(namespace, &table, key, &entry.handle, exit);
            true
        });
        match removed {
            Some((_, entry)) if was_live => Ok(entry.handle),
            _ => Err(not_registered()),
        }
    }

    /// The live holder of `name`.
    pub fn lookup(&self, namespace: &Namespace, name: &str) -> Option<ProcessHandle> {
        let table = self.table(namespace)?;
        let entry = table.names.get(name)?;
        entry.handle.is_alive().then(|| entry.handle.clone())
    }

    /// The live holder of `name` and its metadata.
    pub fn lookup_with_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Option<(ProcessHandle, Metadata)> {
        let table = self.table(namespace)?;
        let entry = table.names.get(name)?;
        entry
            .handle
            .is_alive()
            .then(|| (entry.handle.clone(), entry.metadata.clone()))
    }

    /// The metadata of `name`, if a live process holds it.
    pub fn metadata(&self, namespace: &Namespace, name: &str) -> Option<Metadata> {
        self.lookup_with_metadata(namespace, name)
            .map(|(_, metadata)| metadata)
    }

    /// Replaces the metadata of `name`: [`RegistryError::NotRegistered`] if
    /// no live process holds it, [`RegistryError::InvalidMetadata`] if
    /// `metadata` is not an object or `null`. Listeners are not told
    /// (there is no such event); telemetry is.
    pub fn update_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        let result = check_metadata(&metadata).and_then(|()| {
            let table = self.table(namespace);
            let mut entry = table
                .as_ref()
                .and_then(|table| table.names.get_mut(name))
                .filter(|entry| entry.handle.is_alive())
                .ok_or_else(|| RegistryError::NotRegistered(Arc::from(name)))?;
            entry.metadata = metadata;
            Ok(())
        });
        self.emit(
            &["process_registry", "update_metadata"],
            namespace,
            outcome(&result),
        );
        result
    }

    /// Every name of `namespace` held by a live process, with holder and
    /// metadata, sorted by name.
    pub fn list(&self, namespace: &Namespace) -> Vec<(Arc<str>, ProcessHandle, Metadata)> {
        self.find(namespace, |_, _| true)
    }

    /// The names of `namespace` whose live holder's metadata satisfies
    /// `predicate` (called with the name and the metadata), sorted by name.
    pub fn find(
        &self,
        namespace: &Namespace,
        mut predicate: impl FnMut(&str, &Metadata) -> bool,
    ) -> Vec<(Arc<str>, ProcessHandle, Metadata)> {
        let Some(table) = self.table(namespace) else {
            return Vec::new();
        };
        let mut found: Vec<_> = table
            .names
            .iter()
            .filter(|entry| entry.handle.is_alive() && predicate(entry.key(), &entry.metadata))
            .map(|entry| {
                (
                    shared(entry.key()),
                    entry.handle.clone(),
                    entry.metadata.clone(),
                )
            })
            .collect();
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// How many names of `namespace` live processes hold.
    pub fn count(&self, namespace: &Namespace) -> usize {
        self.table(namespace).map_or(0, |table| {
            table
                .names
                .iter()
                .filter(|entry| entry.handle.is_alive())
                .count()
        })
    }

    /// Adds `handle` to `group` (once more if it is a member already);
    /// [`RegistryError::NotAlive`] if it is not live.
    pub fn join(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: ProcessHandle,
    ) -> Result<(), RegistryError> {
        let result = if handle.is_alive() {
            let table = self.table_or_new(namespace);
            let mut members = table.groups.entry(Arc::from(group)).or_default();
            members.push(handle.clone());
            table.listeners.send(|| RegistryEvent::Joined {
                group: members.key().clone(),
                handle: handle.clone(),
            });
            self.hold(namespace, Kind::Group, members.key().clone(), &handle, None);
            Ok(())
        } else {
            Err(RegistryError::NotAlive)
        };
        self.emit(&["process_registry", "join"], namespace, outcome(&result));
        result
    }

    /// Removes one membership of `handle` in `group`;
    /// [`RegistryError::NotInGroup`] if it has none. A group left empty
    /// disappears.
    pub fn leave(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: &ProcessHandle,
    ) -> Result<(), RegistryError> {
        let mut left = false;
        if let Some(table) = self.table(namespace) {
            let _ = table.groups.remove_if_mut(group, |key, members| {
                if let Some(at) = members.iter().rposition(|member| member == handle) {
                    members.remove(at);
                    left = true;
                    table.listeners.send(|| RegistryEvent::Left {
                        group: key.clone(),
                        handle: handle.clone(),
                        exit: None,
                    });
                    self.inner
                        .records
                        .release(handle.id(), namespace, Kind::Group, key);
                }
                members.is_empty()
            });
        }
        let result = if left {
            Ok(())
        } else {
            Err(RegistryError::NotInGroup(Arc::from(group)))
        };
        self.emit(&["process_registry", "leave"], namespace, outcome(&result));
        result
    }

    /// The live members of `group`, in join order, each as often as it
    /// joined.
    pub fn members(&self, namespace: &Namespace, group: &str) -> Vec<ProcessHandle> {
        let Some(table) = self.table(namespace) else {
            return Vec::new();
        };
        table.groups.get(group).map_or_else(Vec::new, |members| {
            members
                .iter()
                .filter(|member| member.is_alive())
                .cloned()
                .collect()
        })
    }

    /// The groups of `namespace` with at least one live member, sorted.
    pub fn groups(&self, namespace: &Namespace) -> Vec<Arc<str>> {
        let Some(table) = self.table(namespace) else {
            return Vec::new();
        };
        let mut groups: Vec<_> = table
            .groups
            .iter()
            .filter(|group| group.iter().any(ProcessHandle::is_alive))
            .map(|group| group.key().clone())
            .collect();
        groups.sort_unstable();
        groups
    }

    /// Subscribes to the changes of `namespace`: every change applied after
    /// this call arrives, in order. Drop the receiver to unsubscribe.
    pub fn subscribe(&self, namespace: &Namespace) -> RegistryEvents {
        self.table_or_new(namespace).listeners.subscribe()
    }

    /// How many processes hold a name or membership in any namespace, as
    /// far as the per-process index knows: a stopped process counts until
    /// its cleanup task has run. For diagnostics and tests.
    pub fn tracked_processes(&self) -> usize {
        self.inner.records.len()
    }

    /// [`cleanup_with_timeout`](Self::cleanup_with_timeout) with
    /// [`DEFAULT_CLEANUP_SHUTDOWN`] (5 seconds).
    pub async fn cleanup(&self, namespace: &Namespace) -> CleanupReport {
        self.cleanup_with_timeout(namespace, DEFAULT_CLEANUP_SHUTDOWN)
            .await
    }

    /// Stops every live process that holds a name or membership in
    /// `namespace`, then leaves the namespace empty; returns once all have
    /// stopped.
    ///
    /// Each process is stopped by its [`Stopper`] if it was registered with
    /// one (a supervised process through its supervisor, so it is not
    /// restarted), else by [`ProcessHandle::stop`]; all at once. One that
    /// has not stopped within `shutdown` is killed. A process registered in
    /// other namespaces too is stopped all the same, and so leaves them.
    ///
    /// Names and memberships still present once the processes have stopped
    /// are removed, with their events; a process that registered while the
    /// cleanup ran is unregistered, not stopped. Listeners stay subscribed.
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
        for entry in table.names.iter() {
            if entry.handle.is_alive() {
                processes.insert(entry.handle.id(), entry.handle.clone());
            }
        }
        for group in table.groups.iter() {
            for member in group.iter().filter(|member| member.is_alive()) {
                processes.insert(member.id(), member.clone());
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
                &["process_registry", "cleanup"],
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

    /// Tells listeners that `holder` no longer holds `name` and forgets the
    /// hold in its process record; the caller removes or replaces the entry.
    fn released_name(
        &self,
        namespace: &Namespace,
        table: &NsTable,
        name: &str,
        holder: &ProcessHandle,
        exit: Option<ExitReason>,
    ) {
        table.listeners.send(|| RegistryEvent::Unregistered {
            name: Arc::from(name),
            handle: holder.clone(),
            exit,
        });
        self.inner
            .records
            .release(holder.id(), namespace, Kind::Name, name);
    }

    /// Removes every name and membership of a namespace; returns how many.
    fn clear(&self, namespace: &Namespace, table: &NsTable) -> usize {
        let mut removed = 0;
        let names: Vec<Name> = table.names.iter().map(|e| e.key().clone()).collect();
        for name in names {
            let gone = table.names.remove_if(&*name, |key, entry| {
                self.released_name(
                    namespace,
                    table,
                    key,
                    &entry.handle,
                    exit_now(&entry.handle),
                );
                true
            });
            removed += usize::from(gone.is_some());
        }
        let groups: Vec<Arc<str>> = table.groups.iter().map(|e| e.key().clone()).collect();
        for group in groups {
            let _ = table.groups.remove_if(&*group, |key, members| {
                for member in members {
                    let exit = exit_now(member);
                    table.listeners.send(|| RegistryEvent::Left {
                        group: key.clone(),
                        handle: member.clone(),
                        exit,
                    });
                    self.inner
                        .records
                        .release(member.id(), namespace, Kind::Group, key);
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

impl fmt::Debug for ProcessRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessRegistry")
            .field("production_names", &self.inner.production.names.len())
            .field("test_namespaces", &self.inner.tests.len())
            .field("tracked_processes", &self.inner.records.len())
            .finish_non_exhaustive()
    }
}

impl Registry for ProcessRegistry {
    fn register(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::register(self, namespace, name, handle, metadata)
    }

    fn unregister(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<ProcessHandle, RegistryError> {
        ProcessRegistry::unregister(self, namespace, name)
    }

    fn unregister_if(&self, namespace: &Namespace, name: &str, handle: &ProcessHandle) -> bool {
        ProcessRegistry::unregister_if(self, namespace, name, handle)
    }

    fn lookup(&self, namespace: &Namespace, name: &str) -> Option<ProcessHandle> {
        ProcessRegistry::lookup(self, namespace, name)
    }

    fn lookup_with_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Option<(ProcessHandle, Metadata)> {
        ProcessRegistry::lookup_with_metadata(self, namespace, name)
    }

    fn update_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
        metadata: Metadata,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::update_metadata(self, namespace, name, metadata)
    }

    fn list(&self, namespace: &Namespace) -> Vec<(Arc<str>, ProcessHandle, Metadata)> {
        ProcessRegistry::list(self, namespace)
    }

    fn count(&self, namespace: &Namespace) -> usize {
        ProcessRegistry::count(self, namespace)
    }

    fn join(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: ProcessHandle,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::join(self, namespace, group, handle)
    }

    fn leave(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: &ProcessHandle,
    ) -> Result<(), RegistryError> {
        ProcessRegistry::leave(self, namespace, group, handle)
    }

    fn members(&self, namespace: &Namespace, group: &str) -> Vec<ProcessHandle> {
        ProcessRegistry::members(self, namespace, group)
    }

    fn subscribe(&self, namespace: &Namespace) -> RegistryEvents {
        ProcessRegistry::subscribe(self, namespace)
    }
}

/// A map key as the `Arc<str>` that events and records carry.
fn shared(name: &Name) -> Arc<str> {
    Arc::from(name.as_str())
}
