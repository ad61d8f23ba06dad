//! [`EventStoreService`]: the EventStore as a supervised service. Its
//! process opens the store when it starts and closes it when it stops; the
//! [`EventStore`] handle it gives out reaches whichever incarnation runs.

use std::{sync::Arc, time::Duration};

use kameo::{
    Actor,
    actor::{ActorRef, WeakActorRef},
    error::ActorStopReason,
};
use mabeam_supervision_core::{ChildSpec, HealthCheck, Service, ServiceStart};

use super::{EventStore, EventStoreConfig, EventStoreError, core::StoreCore, store::Core};

/// The default name of the service.
pub const EVENT_STORE_SERVICE: &str = "event_store";

/// How long the health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The EventStore as a [`Service`] of an application: one process (a
/// kameo actor) that owns the open store.
///
/// When it starts it opens the store (a start error, such as a locked or
/// foreign file, fails the start); when it stops it commits what was
/// queued and closes the store; if the writer thread dies the process
/// exits abnormally, so its supervisor restarts it. [`store`](Self::store)
/// gives the handle for callers: it follows the store across restarts,
/// answering [`EventStoreError::Unavailable`] while none runs. The health
/// check asks a reader connection and reports a failed last commit.
///
/// # Example
///
/// ```
/// use mabeam_foundation_services::{EventStoreConfig, EventStoreService};
/// use mabeam_supervision_core::{ApplicationSpec, Event};
///
/// # #[tokio::main] async fn main() {
/// let dir = tempfile::tempdir().unwrap();
/// let service = EventStoreService::new(EventStoreConfig::new(dir.path()));
/// let store = service.store();
/// let app = ApplicationSpec::new("foundation").service(service).start().await.unwrap();
/// let appended = store.append(Event::new("s", "k", serde_json::json!(1))).await.unwrap();
/// assert_eq!(appended.id, 1);
/// app.stop().await.unwrap();
/// assert!(!store.is_running());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EventStoreService {
    name: Arc<str>,
    store: EventStore,
}

impl EventStoreService {
    /// The service, named [`EVENT_STORE_SERVICE`], for a store set up by
    /// `config`.
    pub fn new(config: EventStoreConfig) -> Self {
        EventStoreService {
            name: EVENT_STORE_SERVICE.into(),
            store: EventStore::detached(config),
        }
    }

    /// Renames the service.
    pub fn named(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The handle callers use; it reaches the running incarnation.
    pub fn store(&self) -> EventStore {
        self.store.clone()
    }
}

impl Service for EventStoreService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start_spec(&self) -> ServiceStart {
        let store = self.store.clone();
        ChildSpec::actor::<EventStoreProcess>(self.name.clone(), move || store.clone()).into()
    }

    fn health_check(&self) -> Option<HealthCheck> {
        let store = self.store.clone();
        Some(HealthCheck::new(HEALTH_TIMEOUT, move |_handle| {
            let store = store.clone();
            async move { store.health().await }
        }))
    }
}

/// The process that owns one incarnation of the store.
#[derive(Debug)]
pub struct EventStoreProcess {
    store: EventStore,
    core: Core,
}

impl std::fmt::Debug for StoreCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCore")
            .field("path", &self.readers.path())
            .finish_non_exhaustive()
    }
}

impl Actor for EventStoreProcess {
    type Args = EventStore;
    type Error = EventStoreError;

    async fn on_start(
        store: EventStore,
        actor_ref: ActorRef<Self>,
    ) -> Result<Self, EventStoreError> {
        // A previous incarnation that did not stop cleanly (killed: its
        // on_stop never ran) still holds the directory's lock: close it
        // first.
        let previous = store.slot.current.write().take();
        if let Some(previous) = previous {
            previous.close().await;
        }
        let core = store.open_core().await?;
        *store.slot.current.write() = Some(core.clone());
        let watched = core.clone();
        let process: WeakActorRef<Self> = actor_ref.downgrade();
        tokio::spawn(async move {
            watched.writer_ended().await;
            if !watched.is_closing()
                && let Some(process) = process.upgrade()
            {
                process.kill();
            }
        });
        Ok(EventStoreProcess { store, core })
    }

    async fn on_stop(
        &mut self,
        _actor_ref: WeakActorRef<Self>,
        _reason: ActorStopReason,
    ) -> Result<(), EventStoreError> {
        {
            let mut current = self.store.slot.current.write();
            if current.as_ref().is_some_and(|c| c.same(&self.core)) {
                *current = None;
            }
        }
        self.core.clone().close().await;
        Ok(())
    }
}
