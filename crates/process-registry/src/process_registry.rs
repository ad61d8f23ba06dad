//! [`ProcessRegistry`]: the namespaced registry of unique names and groups,
//! implementing supervision-core's [`Registry`] contract. The type and its
//! namespaces' tables are here; its calls are split by concept:
//! `names.rs` (unique names), `groups.rs` (groups), `subscriptions.rs`
//! (subscribers and snapshots), `watchers.rs` (the task that cleans up after
//! a process that stopped), `cleanup.rs` (stopping a namespace) and
//! `contract.rs` (the [`Registry`] impl, forwarding to the calls).

mod cleanup;
mod contract;
mod groups;
mod names;
mod subscriptions;
mod watchers;

use std::{fmt, ops::Deref, sync::Arc};

use futures::FutureExt;
use mabeam_supervision_core::{
    EVENT_BUFFER, ExitReason, MetaValue, Metadata, Namespace, ProcessHandle, Registry,
    RegistryError, Telemetry, WeakProcessHandle,
};

pub use cleanup::{CleanupReport, DEFAULT_CLEANUP_SHUTDOWN};

use crate::{
    records::Records,
    table::{Map, Name, NsTable, map},
};

/// Shards of the production namespace's maps: many, so that two readers
/// rarely meet on one shard's lock word.
const PRODUCTION_SHARDS: usize = 128;
/// Shards of a test namespace's maps: tests hold few names.
const TEST_SHARDS: usize = 4;
/// Shards of the per-process index.
const RECORD_SHARDS: usize = 64;

/// A namespaced registry of processes: unique names with metadata, groups,
/// and change subscriptions. It implements [`Registry`]; hand it to other
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
///   [`find`](Self::find), [`keys`](Self::keys) and [`members`](Self::members)
///   never return a holder that is stopping or stopped;
/// - a name whose holder is stopping or stopped is free:
///   [`register`](Self::register) takes it over at once, emitting
///   [`RegistryEvent::Unregistered`](mabeam_supervision_core::RegistryEvent::Unregistered)
///   for the old holder (with its exit reason if it has already stopped,
///   `None` while it is still stopping) before `Registered`;
/// - registering a handle that is not live fails with
///   [`RegistryError::NotAlive`].
///
/// # Registration never keeps a process alive
///
/// The registry holds every process weakly ([`WeakProcessHandle`]), its
/// events carry weak handles, and a [`Stopper`](mabeam_supervision_core::Stopper)
/// holds its supervisor weakly. A registered kameo actor whose other
/// references all drop stops as it would unregistered, and its names go.
///
/// One tokio task per registered *process* (not per name) awaits its exit,
/// without holding it, and then removes every name and membership it had,
/// emitting `Unregistered` / `Left` with its exit reason. Correctness never
/// waits for that task; it only frees memory and tells subscribers. The
/// task is spawned on the current tokio runtime, or on the one the registry
/// was created in; a registry used entirely outside any runtime has no
/// such task and relies on the rules above alone. The task ends when the
/// process stops or has no key any more. Names registered with
/// [`register_owned`](Self::register_owned) are released by their owner
/// instead: no task and no per-process record for them.
///
/// # Costs
///
/// Lookups take one shard's read lock of the namespace's map and upgrade
/// the holder's weak handle (an atomic increment while some clone of the
/// registered handle lives; else a new handle is allocated). The production
/// namespace needs no map lookup to find its table; a test namespace needs
/// one more. Lookups emit no telemetry: they are the hot path. Writes take
/// the namespace's change gate (shared), the name's shard lock, then the
/// process's entry in the per-process index. A process that has `k` keys
/// pays O(`k`) to drop one of them.
///
/// # Example
///
/// ```
/// use kameo::Actor;
/// use mabeam_process_registry::ProcessRegistry;
/// use serde_json::json;
/// use mabeam_supervision_core::{Namespace, ProcessHandle, RegistryError, Telemetry};
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
    /// Each subscription's buffer.
    event_buffer: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Ends the watcher tasks.
        self.records.clear();
    }
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
fn exit_now(handle: &WeakProcessHandle) -> Option<ExitReason> {
    handle.exited().now_or_never()
}

/// The process behind `handle`, if it is live.
fn live(handle: &WeakProcessHandle) -> Option<ProcessHandle> {
    handle.upgrade().filter(ProcessHandle::is_alive)
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

/// A map key as the `Arc<str>` that events and records carry.
fn shared(name: &Name) -> Arc<str> {
    Arc::from(name.as_str())
}

impl ProcessRegistry {
    /// An empty registry emitting its telemetry through `telemetry`, each
    /// subscription buffering [`EVENT_BUFFER`] events.
    ///
    /// Telemetry events (measurement `count` = 1 unless said otherwise;
    /// metadata `namespace` and `result`, e.g. `ok`, `already_registered`):
    /// `process_registry.register`, `.unregister`, `.update_metadata`,
    /// `.join`, `.leave`; `process_registry.process.down` when the cleanup
    /// task of a stopped process ran (measurements `names`, `memberships`);
    /// `process_registry.cleanup` (measurements `stopped`, `killed`,
    /// `unregistered`, `duration_us`). Lookups emit nothing.
    pub fn new(telemetry: Telemetry) -> Self {
        ProcessRegistry::with_event_buffer(telemetry, EVENT_BUFFER)
    }

    /// [`new`](Self::new), with each subscription buffering at most
    /// `events` events (at least one) before it ends as lagged (see
    /// [`RegistryEvents`](mabeam_supervision_core::RegistryEvents)).
    pub fn with_event_buffer(telemetry: Telemetry, events: usize) -> Self {
        ProcessRegistry::build(telemetry, events, 0)
    }

    /// [`new`](Self::new), with room made at once for `names` unique names
    /// in the production namespace (it grows past them as needed). For a
    /// node that knows its scale (a million agents): the names map then
    /// never grows under load, where each growth copies every name to a
    /// table twice the size, spread over the writes that follow (a cost
    /// that grows faster than the names once the map outgrows the caches).
    pub fn with_capacity(telemetry: Telemetry, names: usize) -> Self {
        ProcessRegistry::build(telemetry, EVENT_BUFFER, names)
    }

    fn build(telemetry: Telemetry, events: usize, names: usize) -> Self {
        let event_buffer = events.max(1);
        ProcessRegistry {
            inner: Arc::new(Inner {
                production: NsTable::new(PRODUCTION_SHARDS, names, event_buffer),
                tests: map(TEST_SHARDS),
                records: Records::new(RECORD_SHARDS),
                telemetry,
                runtime: tokio::runtime::Handle::try_current().ok(),
                event_buffer,
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
                    .or_insert_with(|| {
                        Arc::new(NsTable::new(TEST_SHARDS, 0, self.inner.event_buffer))
                    })
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

    /// How many processes have a name or membership in any namespace, as
    /// far as the per-process index knows: a stopped process counts until
    /// its cleanup task has run; owned names
    /// ([`register_owned`](Self::register_owned)) are not in the index.
    /// For diagnostics and tests.
    pub fn tracked_processes(&self) -> usize {
        self.inner.records.len()
    }
}

impl fmt::Debug for ProcessRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessRegistry")
            .field("production_names", &self.inner.production.names.map.len())
            .field("test_namespaces", &self.inner.tests.len())
            .field("tracked_processes", &self.inner.records.len())
            .finish_non_exhaustive()
    }
}

/// Compile-time check that the registry is the contract.
const _: fn(ProcessRegistry) -> Arc<dyn Registry> = |registry| Arc::new(registry);
