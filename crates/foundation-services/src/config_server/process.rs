//! The ConfigServer's process: the one writer of the configuration. It
//! applies updates one at a time (persist, then the cache, then the
//! subscribers and the event sink), and on start reloads the defaults and
//! the persisted values before it takes updates. [`ConfigServerService`]
//! runs it as a supervised service.

use std::{sync::Arc, time::Duration};

use kameo::{
    Actor,
    actor::{ActorRef, WeakActorRef},
    error::ActorStopReason,
    message::{Context, Message},
};
use mabeam_supervision_core::{ChildSpec, Event, HealthCheck, Service, ServiceStart};
use serde_json::{Value, json};

use super::{
    ConfigChange, ConfigError, ConfigHealth, ConfigServer, ConfigServerConfig,
    persist::{self, Overrides},
    server::{Op, Shared, build},
    tree,
};

/// The default name of the service.
pub const CONFIG_SERVER_SERVICE: &str = "config_server";
/// The stream the changes are recorded on.
pub const CONFIG_EVENT_STREAM: &str = "config";
/// The kind of a recorded change.
pub const CONFIG_CHANGED: &str = "config_changed";

/// How many changes are kept for recording while the event sink is
/// unavailable.
const MAX_UNRECORDED: usize = 10_000;
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the process to apply an operation.
#[derive(Debug)]
pub(crate) struct Apply(pub(crate) Op);

/// Asks the process whether it answers.
#[derive(Debug)]
pub(crate) struct Ping;

/// The process owning the configuration while it runs.
pub struct ConfigProcess {
    shared: Arc<Shared>,
    defaults: Value,
    overrides: Overrides,
}

impl std::fmt::Debug for ConfigProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigProcess").finish_non_exhaustive()
    }
}

impl Actor for ConfigProcess {
    type Args = ConfigServer;
    type Error = ConfigError;

    async fn on_start(
        server: ConfigServer,
        actor_ref: ActorRef<Self>,
    ) -> Result<Self, ConfigError> {
        let shared = server.shared;
        let config = shared.config.clone();
        let (defaults, overrides) = tokio::task::spawn_blocking(move || {
            Ok::<_, ConfigError>((config.load_defaults()?, persist::load(&config.data_dir)?))
        })
        .await
        .map_err(|e| ConfigError::Persist(e.to_string()))??;
        *shared.cache.write() = Arc::new(build(&defaults, &overrides, &shared.config.schema));
        let process = ConfigProcess {
            shared,
            defaults,
            overrides,
        };
        // Updates reach it only now, with the values on disk loaded.
        process.shared.link.lock().process = Some(actor_ref);
        Ok(process)
    }

    async fn on_stop(
        &mut self,
        actor_ref: WeakActorRef<Self>,
        _reason: ActorStopReason,
    ) -> Result<(), ConfigError> {
        let mut link = self.shared.link.lock();
        if link
            .process
            .as_ref()
            .is_some_and(|p| p.id() == actor_ref.id())
        {
            link.process = None;
        }
        Ok(())
    }
}

impl ConfigProcess {
    /// Applies `op`: persists the new overrides, then swaps the cache,
    /// then notifies and records. A failed write changes nothing.
    async fn apply(&mut self, op: Op) -> Result<(), ConfigError> {
        let old = self.shared.cache.read().clone();
        let mut overrides = self.overrides.clone();
        let touched: Vec<String> = match &op {
            Op::Update { path, value } => {
                let mut check = (*old).clone();
                tree::set(&mut check, path, value.clone())?;
                overrides.set(path, value.clone());
                vec![path.clone()]
            }
            Op::Reset => {
                let paths = overrides.entries.iter().map(|(p, _)| p.clone()).collect();
                overrides = Overrides::default();
                paths
            }
        };
        let new = Arc::new(build(
            &self.defaults,
            &overrides,
            &self.shared.config.schema,
        ));
        let dir = self.shared.config.data_dir.clone();
        let saved = overrides.clone();
        let written = tokio::task::spawn_blocking(move || persist::save(&dir, &saved))
            .await
            .map_err(|e| ConfigError::Persist(e.to_string()))?;
        if let Err(error) = written {
            *self.shared.last_error.lock() = Some(error.to_string());
            return Err(error);
        }
        *self.shared.last_error.lock() = None;
        self.overrides = overrides;
        *self.shared.cache.write() = new.clone();
        let mut changes = Vec::new();
        for path in touched {
            let before = tree::get(&old, &path).ok().flatten().cloned();
            let after = tree::get(&new, &path).ok().flatten().cloned();
            if before != after && !changes.iter().any(|c: &ConfigChange| c.path == path) {
                changes.push(ConfigChange {
                    path,
                    old: before,
                    new: after,
                });
            }
        }
        self.shared.notify(&changes);
        self.record(&changes).await;
        Ok(())
    }

    /// Records each change as an event, after any left unrecorded while
    /// the sink was unavailable.
    async fn record(&self, changes: &[ConfigChange]) {
        let Some(sink) = &self.shared.config.events else {
            return;
        };
        {
            let mut unrecorded = self.shared.unrecorded.lock();
            for change in changes {
                if unrecorded.len() == MAX_UNRECORDED {
                    unrecorded.pop_front();
                }
                unrecorded.push_back(Event::new(
                    CONFIG_EVENT_STREAM,
                    CONFIG_CHANGED,
                    json!({"path": change.path, "old": change.old, "new": change.new}),
                ));
            }
        }
        loop {
            let Some(event) = self.shared.unrecorded.lock().front().cloned() else {
                return;
            };
            if sink.record(event).await.is_err() {
                return; // kept, retried at the next change
            }
            self.shared.unrecorded.lock().pop_front();
        }
    }
}

impl Message<Apply> for ConfigProcess {
    type Reply = Result<(), ConfigError>;

    async fn handle(
        &mut self,
        Apply(op): Apply,
        _: &mut Context<Self, Self::Reply>,
    ) -> Self::Reply {
        self.apply(op).await
    }
}

impl Message<Ping> for ConfigProcess {
    type Reply = ();

    async fn handle(&mut self, _: Ping, _: &mut Context<Self, Self::Reply>) {}
}

/// The ConfigServer as a [`Service`] of an application: one process that
/// applies updates. Its [`ConfigServer`] handle answers reads from the
/// cache whether or not the process runs, and refuses updates while it is
/// down. The health check asks the process and reports
/// [`ConfigHealth::Degraded`] as unhealthy, with the reason.
#[derive(Debug, Clone)]
pub struct ConfigServerService {
    name: Arc<str>,
    server: ConfigServer,
}

impl ConfigServerService {
    /// The service, named [`CONFIG_SERVER_SERVICE`]; fails as
    /// [`ConfigServer::new`] does.
    pub fn new(config: ConfigServerConfig) -> Result<Self, ConfigError> {
        Ok(ConfigServerService {
            name: CONFIG_SERVER_SERVICE.into(),
            server: ConfigServer::new(config)?,
        })
    }

    /// Renames the service.
    pub fn named(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The handle callers use.
    pub fn server(&self) -> ConfigServer {
        self.server.clone()
    }
}

impl Service for ConfigServerService {
    fn name(&self) -> &str {
        &self.name
    }

    fn start_spec(&self) -> ServiceStart {
        let server = self.server.clone();
        ChildSpec::actor::<ConfigProcess>(self.name.clone(), move || server.clone()).into()
    }

    fn health_check(&self) -> Option<HealthCheck> {
        let server = self.server.clone();
        Some(HealthCheck::new(HEALTH_TIMEOUT, move |handle| {
            let server = server.clone();
            async move {
                let process = handle
                    .downcast::<ConfigProcess>()
                    .ok_or("the service's process is not a ConfigProcess")?;
                process.ask(Ping).await.map_err(|e| e.to_string())?;
                match server.health() {
                    ConfigHealth::Healthy => Ok(()),
                    ConfigHealth::Degraded { reason, .. } => Err(format!("degraded: {reason}")),
                }
            }
        }))
    }
}
