//! The [`Registry`] contract: find processes by name within a [`Namespace`],
//! with metadata, groups and change events. process-registry implements it;
//! every other crate asks for an `Arc<dyn Registry>`.

mod subscription;

use std::sync::Arc;

use thiserror::Error;

use kameo::actor::ActorId;

use crate::{ErrorCode, ExitReason, Namespace, ProcessHandle, Stopper, WeakProcessHandle};

pub use subscription::{
    EVENT_BUFFER, RecvError, RegistryEventSender, RegistryEvents, Snapshot, Subscription, Topic,
    TryRecvError,
};

/// Metadata stored with a registration: a JSON object, or `null` for none.
pub type Metadata = serde_json::Value;

/// A change in a namespace of a registry, as subscribers receive it, in
/// the order the registry applied the changes.
///
/// Events carry [`WeakProcessHandle`]s: a buffered event never keeps a
/// process alive. [`upgrade`](WeakProcessHandle::upgrade) one to reach the
/// process; compare one with a [`ProcessHandle`] directly (`weak == handle`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// `name` was registered to `handle`.
    Registered {
        /// The name.
        name: Arc<str>,
        /// Its holder.
        handle: WeakProcessHandle,
        /// The metadata it was registered with.
        metadata: Metadata,
    },
    /// `name` is free again.
    Unregistered {
        /// The name.
        name: Arc<str>,
        /// Its former holder.
        handle: WeakProcessHandle,
        /// `None` when unregistered by a call, the holder's exit reason when
        /// it stopped. `None` too when a new holder took the name over from
        /// one that was stopping but had not stopped yet (its reason is not
        /// known then).
        exit: Option<ExitReason>,
    },
    /// `handle` joined `group` (once more, if it was already a member).
    Joined {
        /// The group.
        group: Arc<str>,
        /// The member.
        handle: WeakProcessHandle,
    },
    /// `handle` left `group` once.
    Left {
        /// The group.
        group: Arc<str>,
        /// The member.
        handle: WeakProcessHandle,
        /// `None` when it left by a call, its exit reason when it stopped.
        exit: Option<ExitReason>,
    },
}

/// Why a registry call failed.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is held by another live process, here is its holder.
    #[error("name {name:?} already registered")]
    AlreadyRegistered {
        /// The name.
        name: Arc<str>,
        /// Its current holder.
        holder: ProcessHandle,
    },
    /// Metadata must be a JSON object or `null`.
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    /// No live process holds this name.
    #[error("name {0:?} not registered")]
    NotRegistered(Arc<str>),
    /// The handle is not a member of this group.
    #[error("not a member of group {0:?}")]
    NotInGroup(Arc<str>),
    /// A process that has already stopped cannot be registered.
    #[error("process is not alive")]
    NotAlive,
}

impl ErrorCode for RegistryError {
    fn code(&self) -> u32 {
        match self {
            RegistryError::AlreadyRegistered { .. } => 1301,
            RegistryError::InvalidMetadata(_) => 1302,
            RegistryError::NotRegistered(_) => 1303,
            RegistryError::NotInGroup(_) => 1304,
            RegistryError::NotAlive => 1305,
        }
    }
}

/// A name registry of processes, per [`Namespace`]: unique names with
/// metadata, groups (a process may join a group several times, as in
/// Erlang's `pg`), and change events.
///
/// Object-safe: used as `Arc<dyn Registry>`. Every call is synchronous and
/// never waits on another process; lookups do not wait on writers.
/// A process that stops is removed from its names and groups by the
/// registry itself; lookups only ever return live holders.
///
/// A registry holds its processes weakly: registering a process never
/// keeps it alive (a kameo actor stops when its last strong reference
/// goes, registered or not), and never keeps its supervisor alive through
/// a [`Stopper`].
pub trait Registry: Send + Sync + 'static {
    /// Registers `handle` under `name`. Registering the same handle under
    /// the same name again is `Ok` (and updates the metadata).
    fn register(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
    ) -> Result<(), RegistryError>;

    /// [`register`](Self::register), with the [`Stopper`] the registry uses
    /// when it must stop this process itself (a namespace cleanup): for a
    /// supervised process, one that asks its supervisor, so it is not
    /// restarted. The last stopper given for a process applies.
    fn register_with_stopper(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Metadata,
        stopper: Stopper,
    ) -> Result<(), RegistryError>;

    /// [`register`](Self::register) for an owner that releases the name
    /// itself: it calls [`unregister_if`](Self::unregister_if) when the
    /// process stops (as an agent's incarnation does from its own stop
    /// path), so the registry need not watch the process (process-registry
    /// then runs no cleanup task for it). Until released, a stopped holder
    /// is treated as every stopped holder is: never returned by lookups,
    /// and its name free to take over. `metadata` may be shared by many
    /// registrations (one `Arc` per kind of process, not one JSON object
    /// per process).
    ///
    /// The default forwards to [`register`](Self::register) with a copy of
    /// the metadata.
    fn register_owned(
        &self,
        namespace: &Namespace,
        name: &str,
        handle: ProcessHandle,
        metadata: Arc<Metadata>,
    ) -> Result<(), RegistryError> {
        self.register(namespace, name, handle, Metadata::clone(&metadata))
    }

    /// Frees `name` and returns its former holder.
    fn unregister(&self, namespace: &Namespace, name: &str)
    -> Result<ProcessHandle, RegistryError>;

    /// Frees `name` only if `handle` holds it (alive or not), and returns
    /// whether it did. A name since taken over by another process is left
    /// alone: this is how an incarnation that stops releases its name
    /// without ever freeing its successor's (OTP's `{via, ..}`
    /// registration).
    fn unregister_if(&self, namespace: &Namespace, name: &str, handle: &ProcessHandle) -> bool;

    /// The live holder of `name`.
    fn lookup(&self, namespace: &Namespace, name: &str) -> Option<ProcessHandle>;

    /// Runs `f` on the live holder of `name` and its metadata, borrowed
    /// from the registry, and returns whether a live process held the
    /// name (`f` ran). For callers that need no owned handle: a registry
    /// may serve it without taking a lock or a reference count
    /// (process-registry does), so lookups from many threads never
    /// contend. Keep `f` short.
    ///
    /// The default forwards to
    /// [`lookup_with_metadata`](Self::lookup_with_metadata).
    fn with_lookup(
        &self,
        namespace: &Namespace,
        name: &str,
        f: &mut dyn FnMut(&WeakProcessHandle, &Metadata),
    ) -> bool {
        match self.lookup_with_metadata(namespace, name) {
            Some((holder, metadata)) => {
                f(&holder.downgrade(), &metadata);
                true
            }
            None => false,
        }
    }

    /// The id of the live holder of `name` (OTP's `whereis`): a value to
    /// compare or log, without an owned handle (see
    /// [`with_lookup`](Self::with_lookup)).
    ///
    /// The default forwards to [`lookup`](Self::lookup).
    fn whereis(&self, namespace: &Namespace, name: &str) -> Option<ActorId> {
        self.lookup(namespace, name).map(|holder| holder.id())
    }

    /// The live holder of `name` and its metadata.
    fn lookup_with_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Option<(ProcessHandle, Metadata)>;

    /// Replaces the metadata of `name`.
    fn update_metadata(
        &self,
        namespace: &Namespace,
        name: &str,
        metadata: Metadata,
    ) -> Result<(), RegistryError>;

    /// Every registered name of the namespace, with holder and metadata.
    fn list(&self, namespace: &Namespace) -> Vec<(Arc<str>, ProcessHandle, Metadata)>;

    /// How many names the namespace holds.
    fn count(&self, namespace: &Namespace) -> usize;

    /// Adds `handle` to `group` (once more, if already a member).
    fn join(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: ProcessHandle,
    ) -> Result<(), RegistryError>;

    /// Removes `handle` from `group` once.
    fn leave(
        &self,
        namespace: &Namespace,
        group: &str,
        handle: &ProcessHandle,
    ) -> Result<(), RegistryError>;

    /// The members of `group`, a member appearing as often as it joined.
    fn members(&self, namespace: &Namespace, group: &str) -> Vec<ProcessHandle>;

    /// Removes every membership of `handle` in every group of the
    /// namespace (Erlang's `pg:leave/2` of all groups at once); returns how
    /// many it removed (0 is not an error).
    fn leave_all(&self, namespace: &Namespace, handle: &ProcessHandle) -> usize;

    /// The names `handle` holds in the namespace, sorted (Elixir's
    /// `Registry.keys/2`); empty if it is not live.
    fn keys(&self, namespace: &Namespace, handle: &ProcessHandle) -> Vec<Arc<str>>;

    /// Subscribes to every change of the namespace, from now on. Bounded:
    /// see [`RegistryEvents`].
    fn subscribe(&self, namespace: &Namespace) -> RegistryEvents;

    /// Subscribes to the changes of `topic` and returns its current state
    /// with the subscription, atomically: every change applied after the
    /// snapshot arrives as an event, none applied before it does. Events
    /// of other topics are not sent to this subscriber at all.
    fn subscribe_to(&self, namespace: &Namespace, topic: Topic) -> Subscription;
}
