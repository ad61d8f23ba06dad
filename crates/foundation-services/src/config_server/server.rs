//! [`ConfigServer`]: the cloneable handle. Reads are answered from the
//! shared cache (a read-locked lookup, never the server's mailbox), so
//! they work while the process is down; updates go to the process, and
//! are refused while it is down.

use std::{collections::VecDeque, fmt, path::PathBuf, sync::Arc};

use kameo::{actor::ActorRef, error::SendError};
use mabeam_supervision_core::{Event, EventSink};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{
    ConfigChange, ConfigError, ConfigSchema, ConfigSubscription,
    change::Subscriber,
    persist::{self, Overrides},
    process::{Apply, ConfigProcess},
    tree,
};

/// How a ConfigServer is set up.
///
/// Defaults: an empty schema, an empty default tree, no TOML file, no
/// event sink.
#[derive(Clone)]
pub struct ConfigServerConfig {
    /// Where `config.json` (the values changed at run time) is kept.
    pub data_dir: PathBuf,
    /// The known paths and their rules.
    pub schema: ConfigSchema,
    /// The built-in defaults.
    pub defaults: Value,
    /// A TOML file whose values are merged over the built-in defaults,
    /// read at each start of the process.
    pub defaults_file: Option<PathBuf>,
    /// Where every change is recorded as an event (with its previous
    /// value).
    pub events: Option<Arc<dyn EventSink>>,
}

impl ConfigServerConfig {
    /// The defaults, with `config.json` in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ConfigServerConfig {
            data_dir: data_dir.into(),
            schema: ConfigSchema::new(),
            defaults: Value::Object(serde_json::Map::new()),
            defaults_file: None,
            events: None,
        }
    }

    /// Sets the schema.
    pub fn with_schema(mut self, schema: ConfigSchema) -> Self {
        self.schema = schema;
        self
    }

    /// Sets the built-in defaults.
    pub fn with_defaults(mut self, defaults: Value) -> Self {
        self.defaults = defaults;
        self
    }

    /// Sets the TOML defaults file.
    pub fn with_defaults_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.defaults_file = Some(path.into());
        self
    }

    /// Records every change through `sink`.
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// The built-in defaults with the TOML file merged over them, checked
    /// against the schema.
    pub(crate) fn load_defaults(&self) -> Result<Value, ConfigError> {
        let mut defaults = self.defaults.clone();
        if let Some(file) = &self.defaults_file {
            tree::merge(&mut defaults, persist::load_toml(file)?);
        }
        self.schema
            .check_tree(&defaults)
            .map_err(|e| ConfigError::InvalidDefaults(e.to_string()))?;
        Ok(defaults)
    }
}

impl fmt::Debug for ConfigServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigServerConfig")
            .field("data_dir", &self.data_dir)
            .field("schema", &self.schema)
            .field("defaults_file", &self.defaults_file)
            .field("events", &self.events.is_some())
            .finish_non_exhaustive()
    }
}

/// An operation on the configuration, applied by the process.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Update { path: String, value: Value },
    Reset,
}

/// What an acknowledged [`ConfigServer::update`] did. An update is
/// acknowledged only once persisted; one that cannot be is refused with a
/// [`ConfigError`] (while the process is down,
/// [`ConfigError::Unavailable`]), never kept in memory to apply later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateOutcome {
    /// Persisted, then applied to the cache and notified.
    Applied,
}

/// The ConfigServer's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigHealth {
    /// The process runs and nothing is pending.
    Healthy,
    /// Reads are served from the cache, but something is wrong (updates
    /// are refused while the process is down).
    Degraded {
        /// What.
        reason: String,
    },
}

/// The running process, once it has loaded the persisted values.
#[derive(Debug, Default)]
pub(crate) struct Link {
    pub(crate) process: Option<ActorRef<ConfigProcess>>,
}

pub(crate) struct Shared {
    pub(crate) config: ConfigServerConfig,
    pub(crate) cache: RwLock<Arc<Value>>,
    pub(crate) link: Mutex<Link>,
    pub(crate) subscribers: Mutex<Vec<Subscriber>>,
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) unrecorded: Mutex<VecDeque<Event>>,
}

impl Shared {
    /// Sends each change to the subscribers that want it, in order,
    /// dropping those that are gone.
    pub(crate) fn notify(&self, changes: &[ConfigChange]) {
        let mut subscribers = self.subscribers.lock();
        for change in changes {
            subscribers.retain(|s| s.deliver(change));
        }
    }
}

/// The tree: `defaults` with the overrides replayed over them; an
/// override that no longer fits the schema (changed since it was set) is
/// left out.
pub(crate) fn build(defaults: &Value, overrides: &Overrides, schema: &ConfigSchema) -> Value {
    let mut tree = defaults.clone();
    for (path, value) in &overrides.entries {
        if schema.check_update(path, value).is_ok() {
            let _ = tree::set(&mut tree, path, value.clone());
        }
    }
    tree
}

/// The configuration server: a config tree with a schema, persisted, with
/// change notifications; a cheap, cloneable handle.
///
/// See the [module docs](super) for the design and an example.
#[derive(Clone)]
pub struct ConfigServer {
    pub(crate) shared: Arc<Shared>,
}

impl ConfigServer {
    /// A server set up by `config`: the schema is checked, the defaults
    /// (built in, then the TOML file) are loaded and checked against it,
    /// and the persisted values are loaded over them, so reads answer
    /// before the process first starts.
    pub fn new(config: ConfigServerConfig) -> Result<Self, ConfigError> {
        config.schema.validate()?;
        let defaults = config.load_defaults()?;
        let overrides = persist::load(&config.data_dir)?;
        let tree = build(&defaults, &overrides, &config.schema);
        Ok(ConfigServer {
            shared: Arc::new(Shared {
                config,
                cache: RwLock::new(Arc::new(tree)),
                link: Mutex::new(Link::default()),
                subscribers: Mutex::new(Vec::new()),
                last_error: Mutex::new(None),
                unrecorded: Mutex::new(VecDeque::new()),
            }),
        })
    }

    /// The value at `path` (dot-separated; the empty path is the whole
    /// tree), from the cache.
    pub fn get(&self, path: &str) -> Result<Value, ConfigError> {
        let tree = self.snapshot();
        tree::get(&tree, path)?
            .cloned()
            .ok_or_else(|| ConfigError::NotFound {
                path: path.to_owned(),
            })
    }

    /// The whole tree as it is now.
    pub fn snapshot(&self) -> Arc<Value> {
        self.shared.cache.read().clone()
    }

    /// The configuration of `service` (the tree at `services.<service>`),
    /// from the cache: the seed's `get_fallback_config`, what a service
    /// registry answers for a service that is not running.
    pub fn get_fallback_config(&self, service: &str) -> Option<Value> {
        if service.is_empty() || service.contains('.') {
            return None;
        }
        tree::get(&self.snapshot(), &format!("services.{service}"))
            .ok()
            .flatten()
            .cloned()
    }

    /// Sets `path` to `value`: only a path the schema marks updatable
    /// ([`ConfigError::Forbidden`] otherwise), with a value that follows
    /// its rule ([`ConfigError::InvalidValue`]); missing parents are
    /// created. Applied by the process (persisted, then the cache, then
    /// subscribers and the event sink) and acknowledged once persisted;
    /// while the process is down it is refused
    /// ([`ConfigError::Unavailable`]) and changes nothing: retry once the
    /// process is back.
    pub async fn update(&self, path: &str, value: Value) -> Result<UpdateOutcome, ConfigError> {
        self.shared.config.schema.check_update(path, &value)?;
        self.submit(Op::Update {
            path: path.to_owned(),
            value,
        })
        .await
    }

    /// Drops every value changed at run time: back to the defaults
    /// (persisted, notified, recorded); refused as
    /// [`update`](Self::update) is while the process is down.
    pub async fn reset(&self) -> Result<UpdateOutcome, ConfigError> {
        self.submit(Op::Reset).await
    }

    async fn submit(&self, op: Op) -> Result<UpdateOutcome, ConfigError> {
        let process = self
            .shared
            .link
            .lock()
            .process
            .clone()
            .filter(ActorRef::is_alive)
            .ok_or_else(|| ConfigError::Unavailable("the config process is not running".into()))?;
        match process.ask(Apply(op)).await {
            Ok(()) => Ok(UpdateOutcome::Applied),
            Err(SendError::HandlerError(error)) => Err(error),
            // Not delivered: nothing was applied.
            Err(
                SendError::ActorNotRunning(_)
                | SendError::ActorRestarting(_)
                | SendError::MailboxFull(_)
                | SendError::Timeout(Some(_)),
            ) => Err(ConfigError::Unavailable(
                "the config process stopped before taking the update".into(),
            )),
            Err(SendError::ActorStopped | SendError::Timeout(None)) => {
                // The process died while applying it: whether it was
                // persisted is unknown, and the process, once back, has
                // the truth on disk. Say so rather than guess.
                Err(ConfigError::Persist(
                    "the config process stopped while applying the update".into(),
                ))
            }
        }
    }

    /// Every change from now on whose path is `prefix`, under it, or above
    /// it (the empty prefix: every change).
    pub fn subscribe(&self, prefix: &str) -> ConfigSubscription {
        let (sender, changes) = mpsc::unbounded_channel();
        self.shared.subscribers.lock().push(Subscriber {
            prefix: prefix.to_owned(),
            sender,
        });
        ConfigSubscription { changes }
    }

    /// How many subscribers are registered (those gone are dropped at the
    /// next change).
    pub fn subscriber_count(&self) -> usize {
        self.shared.subscribers.lock().len()
    }

    /// Healthy while the process runs with no failed write and no change
    /// left unrecorded; degraded otherwise (reads still answer from the
    /// cache).
    pub fn health(&self) -> ConfigHealth {
        let reason = if !self.is_running() {
            Some("the config process is not running".to_owned())
        } else if let Some(error) = self.shared.last_error.lock().clone() {
            Some(error)
        } else {
            let unrecorded = self.shared.unrecorded.lock().len();
            (unrecorded > 0).then(|| format!("{unrecorded} changes not yet recorded as events"))
        };
        match reason {
            None => ConfigHealth::Healthy,
            Some(reason) => ConfigHealth::Degraded { reason },
        }
    }

    /// Whether the process runs.
    pub fn is_running(&self) -> bool {
        self.shared
            .link
            .lock()
            .process
            .as_ref()
            .is_some_and(ActorRef::is_alive)
    }
}

impl fmt::Debug for ConfigServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigServer")
            .field("data_dir", &self.shared.config.data_dir)
            .field("running", &self.is_running())
            .finish()
    }
}
