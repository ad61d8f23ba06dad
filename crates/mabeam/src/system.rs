//! [`System`] and [`SystemBuilder`]: both trees wired from one
//! [`Wiring`], started Foundation first and stopped MABEAM first; subsets
//! and one's own services.

#[cfg(feature = "foundation")]
use std::path::PathBuf;
#[cfg(feature = "economics")]
use std::time::Duration;
use std::{collections::HashSet, fmt, sync::Arc};

use futures::future::BoxFuture;
#[cfg(feature = "agents")]
use mabeam_agent_supervisor::{AgentRecipes, AgentRegistryOptions};
#[cfg(feature = "coordination")]
use mabeam_coordination::{Coordinator, VariableSpace};
#[cfg(feature = "economics")]
use mabeam_economics::{
    Auctioneer, BalanceStrategy, Ledger, LoadBalancer, Marketplace, Reputation,
};
#[cfg(feature = "foundation")]
use mabeam_foundation_services::{
    ConfigSchema, ConfigServer, ConfigServerConfig, ConfigServerService, ConnectionManager,
    ConnectionManagerBuilder, EventStore, EventStoreConfig, EventStoreService, HealthMonitor,
    RateLimiter, Rule, ServiceMonitor, TaskSupervisor, ValueRule,
};
#[cfg(all(feature = "foundation", feature = "agents"))]
use mabeam_foundation_services::{SqliteAgentStore, SqliteAgentStoreConfig};
use mabeam_process_registry::{ProcessRegistry, ServiceRegistry};
#[cfg(feature = "agents")]
use mabeam_supervision_core::{AgentStore, MemoryAgentStore};
use mabeam_supervision_core::{
    Application, ApplicationSpec, Clock, EventSink, GaugeReading, GaugeSource, HealthReport,
    MetaValue, Namespace, Service, Telemetry, events,
};
use mabeam_telemetry::{PerformanceConfig, PerformanceMonitor, TelemetryConfig, TelemetryService};
use serde::Serialize;

#[cfg(feature = "agents")]
use crate::Agents;
#[cfg(feature = "foundation")]
use crate::seed::NEED_DATA_DIR;
#[cfg(feature = "foundation")]
use crate::wiring::Stores;
use crate::{
    FOUNDATION_SEED, FoundationApp, MABEAM_SEED, MabeamApp, MabeamError, Wiring,
    seed::{self, CROSS_TREE},
    tree::{self, RestartCounts, TreeReport},
};

/// How long the marketplace's reputations take to halve.
#[cfg(feature = "economics")]
const REPUTATION_HALF_LIFE: Duration = Duration::from_secs(24 * 3600);

/// A service's build error as the umbrella's.
#[cfg(feature = "foundation")]
fn failed<E: fmt::Display>(service: &'static str) -> impl FnOnce(E) -> MabeamError {
    move |error| MabeamError::Service {
        service,
        message: error.to_string(),
    }
}

/// Whether keeping `name` needs the data directory (it keeps files, or
/// records to the event store).
#[cfg(feature = "foundation")]
fn needs_data_dir(name: &str) -> bool {
    NEED_DATA_DIR.contains(&name) || CROSS_TREE.iter().any(|(m, _)| *m == name)
}

/// Which tree a service of one's own joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// The Foundation tree (started first, stopped last).
    Foundation,
    /// The MABEAM tree (started after Foundation, stopped first).
    Mabeam,
}

/// Builds a [`System`]: the namespace, telemetry handle and clock to wire
/// with, a subset of the services, one's own services.
///
/// Defaults: the production namespace, a new enabled [`Telemetry`], the
/// system clock, every built service, the telemetry and performance
/// defaults, no data directory (needed by the event store and the config
/// server, and by the MABEAM services that record to the event store:
/// building a system that keeps one of them without it is
/// [`MabeamError::NoDataDir`]), no rate-limit rule, empty config defaults.
///
/// # Example
///
/// ```
/// use mabeam::{SystemBuilder, seed};
/// use mabeam_supervision_core::Namespace;
///
/// # #[tokio::main] async fn main() -> Result<(), mabeam::MabeamError> {
/// let system = SystemBuilder::new()
///     .namespace(Namespace::unique_test())
///     .only([seed::SERVICE_REGISTRY])
///     .build()?;
/// // The service registry needs the process registry: it came along.
/// assert_eq!(system.added(), [seed::PROCESS_REGISTRY.into()]);
/// system.start().await?;
/// assert_eq!(system.registry().count(system.namespace()), 2);
/// system.stop().await?;
/// assert_eq!(system.registry().count(system.namespace()), 0);
/// # Ok(()) }
/// ```
pub struct SystemBuilder {
    namespace: Namespace,
    telemetry: Telemetry,
    clock: Clock,
    only: Option<Vec<String>>,
    own: Vec<(Tree, Arc<dyn Service>)>,
    telemetry_config: TelemetryConfig,
    performance_config: PerformanceConfig,
    #[cfg(feature = "agents")]
    agent_runtime: Option<tokio::runtime::Handle>,
    #[cfg(feature = "foundation")]
    data_dir: Option<PathBuf>,
    #[cfg(feature = "foundation")]
    config_defaults: serde_json::Value,
    #[cfg(feature = "foundation")]
    rate_rules: Vec<(String, Rule)>,
    #[cfg(feature = "foundation")]
    cluster: Option<ConnectionManagerBuilder>,
    #[cfg(feature = "foundation")]
    event_store_postgres: Option<mabeam_foundation_services::PostgresConfig>,
    #[cfg(feature = "agents")]
    agent_store: Option<Arc<dyn AgentStore>>,
    #[cfg(feature = "agents")]
    agent_recipes: AgentRecipes,
    #[cfg(feature = "agents")]
    directory: Option<DirectoryLayer>,
}

/// Makes the directory the services reach agents through from the agent
/// layer (see [`SystemBuilder::agent_directory`]).
#[cfg(feature = "agents")]
pub type DirectoryLayer =
    Arc<dyn Fn(Agents) -> Arc<dyn mabeam_supervision_core::AgentDirectory> + Send + Sync>;

impl fmt::Debug for SystemBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SystemBuilder")
            .field("namespace", &self.namespace)
            .field("only", &self.only)
            .field(
                "own",
                &self
                    .own
                    .iter()
                    .map(|(t, s)| (*t, s.name().to_owned()))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Default for SystemBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemBuilder {
    /// A builder with the defaults.
    pub fn new() -> Self {
        SystemBuilder {
            namespace: Namespace::Production,
            telemetry: Telemetry::new(),
            clock: Clock::system(),
            only: None,
            own: Vec::new(),
            telemetry_config: TelemetryConfig::default(),
            performance_config: PerformanceConfig::default(),
            #[cfg(feature = "agents")]
            agent_runtime: None,
            #[cfg(feature = "foundation")]
            data_dir: None,
            #[cfg(feature = "foundation")]
            config_defaults: serde_json::Value::Object(serde_json::Map::new()),
            #[cfg(feature = "foundation")]
            rate_rules: Vec::new(),
            #[cfg(feature = "foundation")]
            cluster: None,
            #[cfg(feature = "foundation")]
            event_store_postgres: None,
            #[cfg(feature = "agents")]
            agent_store: None,
            #[cfg(feature = "agents")]
            agent_recipes: AgentRecipes::new(),
            #[cfg(feature = "agents")]
            directory: None,
        }
    }

    /// Keeps the event store on PostgreSQL instead of SQLite in the data
    /// directory (the default): for nodes that share one store.
    #[cfg(feature = "foundation")]
    pub fn event_store_postgres(
        mut self,
        postgres: mabeam_foundation_services::PostgresConfig,
    ) -> Self {
        self.event_store_postgres = Some(postgres);
        self
    }

    /// The store durable agents are kept in and recovered from when the
    /// agent layer starts. Default: foundation-services'
    /// `SqliteAgentStore` (`agents.db`) in the data directory, or one in
    /// memory without a data directory (or without the `foundation`
    /// feature).
    #[cfg(feature = "agents")]
    pub fn agent_store(mut self, store: Arc<dyn AgentStore>) -> Self {
        self.agent_store = Some(store);
        self
    }

    /// How stored agents are built again, by kind (see agent-supervisor's
    /// `AgentRecipes`): an agent of a kind without a recipe comes back
    /// `Failed`.
    #[cfg(feature = "agents")]
    pub fn agent_recipes(mut self, recipes: AgentRecipes) -> Self {
        self.agent_recipes = recipes;
        self
    }

    /// The directory coordination, economics, the load balancer and the
    /// performance monitor reach agents through, made by `layer` from
    /// the agent layer. Default: the agent layer itself (this node's
    /// agents). A node in a cluster gives one that also reaches the
    /// agents other nodes own.
    #[cfg(feature = "agents")]
    pub fn agent_directory(
        mut self,
        layer: impl Fn(Agents) -> Arc<dyn mabeam_supervision_core::AgentDirectory>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.directory = Some(Arc::new(layer));
        self
    }

    /// The cluster this system's node belongs to: the connection
    /// manager's node name, cookie, listen address and seeds (its clock
    /// and telemetry are the system's). Without one, the connection
    /// manager is not in the tree (listed as absent, with the reason).
    #[cfg(feature = "foundation")]
    pub fn cluster(mut self, node: ConnectionManagerBuilder) -> Self {
        self.cluster = Some(node);
        self
    }

    /// The data directory: the event store's `events.db` (with its WAL
    /// and `events.lock`), the agent store's `agents.db` (with
    /// `agents.lock`) and the config server's `config.json` live there;
    /// each creates it if missing.
    #[cfg(feature = "foundation")]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// The config server's defaults (a JSON object; the node gives its
    /// config file's values). Values changed at run time (`services.*`,
    /// persisted in `config.json`) win over them.
    #[cfg(feature = "foundation")]
    pub fn config_defaults(mut self, defaults: serde_json::Value) -> Self {
        self.config_defaults = defaults;
        self
    }

    /// A rate-limit rule of the rate limiter, for `operation`.
    #[cfg(feature = "foundation")]
    pub fn rate_limit(mut self, operation: impl Into<String>, rule: Rule) -> Self {
        self.rate_rules.push((operation.into(), rule));
        self
    }

    /// The runtime agents run on, apart from the one the system services
    /// run on (see [`Wiring::on_agent_runtime`]). The node makes one.
    #[cfg(feature = "agents")]
    pub fn agent_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.agent_runtime = Some(runtime);
        self
    }

    /// The namespace every service registers in (tests: `Namespace::unique_test()`).
    pub fn namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// The one telemetry handle of the system (it must be enabled).
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The one clock of the system (also given to telemetry and the monitor).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps only these services (of either tree) and what they depend
    /// on; [`System::added`] says which came along. Services of one's own
    /// are always kept.
    pub fn only<I>(mut self, names: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Adds a service of one's own to `tree`, after the built-in ones (it
    /// may depend on them).
    pub fn service(mut self, tree: Tree, service: impl Service) -> Self {
        self.own.push((tree, Arc::new(service)));
        self
    }

    /// The telemetry service's settings (its clock is the system's).
    pub fn telemetry_config(mut self, config: TelemetryConfig) -> Self {
        self.telemetry_config = config;
        self
    }

    /// The performance monitor's settings (its clock is the system's).
    pub fn performance_config(mut self, config: PerformanceConfig) -> Self {
        self.performance_config = config;
        self
    }

    /// Wires both trees and checks them; nothing starts.
    pub fn build(mut self) -> Result<System, MabeamError> {
        if !self.telemetry.is_enabled() {
            return Err(MabeamError::Telemetry(
                mabeam_supervision_core::TelemetryError::Disabled.into(),
            ));
        }
        if let Some(only) = &self.only
            && let Some((service, feature)) = only
                .iter()
                .find_map(|n| seed::missing_feature(n).map(|f| (n, f)))
        {
            return Err(MabeamError::NotCompiled {
                service: service.as_str().into(),
                feature,
            });
        }
        #[cfg(feature = "foundation")]
        if self.data_dir.is_none() {
            let wanted = match &self.only {
                None => Some(seed::EVENT_STORE.to_owned()),
                Some(only) => only.iter().find(|n| needs_data_dir(n)).cloned(),
            };
            if let Some(name) = wanted {
                // Name the real dependency: a MABEAM service keeps no files
                // itself, the event store it records to does.
                return Err(if NEED_DATA_DIR.contains(&name.as_str()) {
                    MabeamError::NoDataDir(name.into())
                } else {
                    MabeamError::NeedsEventStore(name.into())
                });
            }
        }
        #[cfg(feature = "foundation")]
        if self.cluster.is_none()
            && let Some(only) = &self.only
            && only.iter().any(|n| n == seed::CONNECTION_MANAGER)
        {
            return Err(MabeamError::NoCluster(seed::CONNECTION_MANAGER.into()));
        }
        let wiring = self.wiring()?;
        let mut foundation = FoundationApp::spec(&wiring);
        let mut mabeam = MabeamApp::spec(&wiring);

        let mut added = Vec::new();
        if let Some(only) = &self.only {
            let builtin: HashSet<&str> = foundation
                .service_names()
                .into_iter()
                .chain(mabeam.service_names())
                .collect();
            if let Some(unknown) = only.iter().find(|n| !builtin.contains(n.as_str())) {
                return Err(MabeamError::UnknownService(unknown.as_str().into()));
            }
            let pick = |spec: &ApplicationSpec| -> Vec<String> {
                let names = spec.service_names();
                only.iter()
                    .filter(|n| names.contains(&n.as_str()))
                    .cloned()
                    .collect()
            };
            let (mut f, m) = (pick(&foundation), pick(&mabeam));
            let m = subset(&mabeam, &m, "mabeam")?;
            // The MABEAM services kept record to Foundation's event store:
            // it comes along, across the trees.
            let mut across: Vec<Arc<str>> = Vec::new();
            for kept in m.spec.service_names() {
                let needs = CROSS_TREE.iter().filter(|(s, _)| *s == kept);
                for need in needs.flat_map(|(_, needs)| needs.iter()) {
                    if !f.iter().any(|n| n == need) {
                        f.push((*need).to_owned());
                        across.push((*need).into());
                    }
                }
            }
            let f = subset(&foundation, &f, "foundation")?;
            added.extend(f.added.iter().cloned());
            added.extend(across);
            added.extend(m.added.iter().cloned());
            foundation = f.spec;
            mabeam = m.spec;
        }
        let mut names: HashSet<String> = foundation
            .service_names()
            .into_iter()
            .chain(mabeam.service_names())
            .map(str::to_owned)
            .collect();
        for (tree, service) in self.own {
            if !names.insert(service.name().to_owned()) {
                return Err(MabeamError::DuplicateService(service.name().into()));
            }
            match tree {
                Tree::Foundation => foundation = foundation.shared_service(service),
                Tree::Mabeam => mabeam = mabeam.shared_service(service),
            }
        }
        let foundation = foundation
            .build()
            .map_err(|error| MabeamError::Application {
                tree: FoundationApp::NAME,
                error,
            })?;
        let mabeam = mabeam.build().map_err(|error| MabeamError::Application {
            tree: MabeamApp::NAME,
            error,
        })?;

        // The monitors watch every service of both trees (the service
        // monitor all but itself), holding the applications weakly.
        #[cfg(feature = "foundation")]
        for app in [&foundation, &mabeam] {
            let _ = wiring.health_monitor.monitor_application(app);
            for service in app.services() {
                if &**service != seed::SERVICE_MONITOR {
                    let _ = wiring.service_monitor.watch(app, service);
                }
            }
        }

        let restarts = RestartCounts::default();
        let handler_id = format!("mabeam-restarts-{}", self.namespace);
        let counts = restarts.clone();
        self.telemetry
            .attach(handler_id.clone(), &["supervisor", "child"], move |event| {
                let (Some(MetaValue::Str(sup)), Some(MetaValue::Str(child))) =
                    (event.meta("supervisor"), event.meta("child"))
                else {
                    return;
                };
                if event.name == events::CHILD_RESTARTED {
                    counts.restarted(sup, child);
                } else if event.name == events::CHILD_TERMINATED {
                    counts.forget(sup, child);
                }
            })
            .map_err(|e| MabeamError::Telemetry(e.into()))?;

        Ok(System {
            inner: Arc::new(Inner {
                wiring,
                foundation,
                mabeam,
                added,
                restarts,
                handler_id,
            }),
        })
    }
}

impl SystemBuilder {
    /// Makes every service's value, each handed the contracts it takes
    /// (only those of the features compiled in).
    fn wiring(&mut self) -> Result<Wiring, MabeamError> {
        let telemetry = self.telemetry.clone();
        let clock = self.clock.clone();
        let namespace = self.namespace;
        let registry = ProcessRegistry::new(telemetry.clone());
        let registry_contract: Arc<dyn mabeam_supervision_core::Registry> =
            Arc::new(registry.clone());
        let services =
            ServiceRegistry::new(registry_contract.clone(), namespace, telemetry.clone());
        let telemetry_service = TelemetryService::with_config(
            telemetry.clone(),
            TelemetryConfig {
                clock: clock.clone(),
                ..self.telemetry_config.clone()
            },
        )?;
        let performance = PerformanceMonitor::with_config(
            telemetry.clone(),
            PerformanceConfig {
                clock: clock.clone(),
                ..self.performance_config.clone()
            },
        )?;

        // Foundation: the stores, then the operational services. Without
        // them, MABEAM's services record to no event store.
        #[cfg(feature = "foundation")]
        let foundation = self.foundation_wiring()?;
        #[cfg(feature = "foundation")]
        let sink: Option<Arc<dyn EventSink>> = Some(Arc::new(foundation.event_store.clone()));
        #[cfg(not(feature = "foundation"))]
        let sink: Option<Arc<dyn EventSink>> = None;

        // MABEAM: the agent layer, then what reaches agents through it.
        #[cfg(feature = "agents")]
        let agent_store: Arc<dyn AgentStore> = match &self.agent_store {
            Some(store) => store.clone(),
            None => self.default_agent_store()?,
        };
        #[cfg(feature = "agents")]
        let agents = {
            let mut options = AgentRegistryOptions {
                name: seed::AGENT_SUPERVISOR.into(),
                ..AgentRegistryOptions::default()
            }
            .with_store(agent_store.clone())
            .with_recipes(self.agent_recipes.clone())
            .with_registry(registry_contract.clone(), namespace)
            .with_telemetry(telemetry.clone())
            .with_clock(clock.clone());
            if let Some(sink) = &sink {
                options = options.with_event_sink(sink.clone());
            }
            if let Some(runtime) = &self.agent_runtime {
                options = options.with_runtime(runtime.clone());
            }
            Agents::new(options)
        };
        #[cfg(feature = "agents")]
        let directory: Arc<dyn mabeam_supervision_core::AgentDirectory> = match &self.directory {
            Some(layer) => layer(agents.clone()),
            None => Arc::new(agents.clone()),
        };
        #[cfg(feature = "agents")]
        {
            // The monitor forgets deregistered agents at its sweeps; held
            // weakly (agents feed the monitor through telemetry).
            let known = Arc::downgrade(&directory);
            performance
                .track_agents(move |id| known.upgrade().is_none_or(|d| d.info(id).is_some()));
        }
        #[cfg(feature = "coordination")]
        let coordinator = {
            let mut coordinator = Coordinator::new(directory.clone(), clock.clone())
                .with_telemetry(telemetry.clone())
                .with_registry(registry_contract.clone(), namespace);
            if let Some(sink) = &sink {
                coordinator = coordinator.with_event_sink(sink.clone());
            }
            Arc::new(coordinator)
        };
        #[cfg(feature = "coordination")]
        let variables = Arc::new(VariableSpace::new(coordinator.clone()));
        #[cfg(feature = "economics")]
        let (auctioneer, marketplace, load_balancer) = {
            let mut auctioneer = Auctioneer::new(directory.clone(), clock.clone())
                .with_telemetry(telemetry.clone())
                .with_registry(registry_contract.clone(), namespace);
            let mut marketplace = Marketplace::new(
                Arc::new(Ledger::new()),
                Arc::new(Reputation::new(clock.clone(), REPUTATION_HALF_LIFE)),
            )
            .with_telemetry(telemetry.clone());
            if let Some(sink) = &sink {
                auctioneer = auctioneer.with_event_sink(sink.clone());
                marketplace = marketplace.with_event_sink(sink.clone());
            }
            let load_balancer = Arc::new(
                LoadBalancer::new(directory.clone(), BalanceStrategy::PerformanceWeighted)
                    .with_load(Arc::new(performance.clone())),
            );
            (Arc::new(auctioneer), Arc::new(marketplace), load_balancer)
        };
        // Only the groups hold the sink; the base has nothing to record.
        let _ = &sink;

        Ok(Wiring {
            namespace,
            registry,
            services,
            telemetry,
            clock,
            telemetry_service,
            performance,
            #[cfg(feature = "agents")]
            agent_runtime: self.agent_runtime.clone(),
            #[cfg(feature = "foundation")]
            data_dir: foundation.data_dir,
            #[cfg(feature = "foundation")]
            event_store: foundation.event_store,
            #[cfg(feature = "foundation")]
            config: foundation.config.as_ref().map(ConfigServerService::server),
            #[cfg(feature = "foundation")]
            connections: foundation.connections,
            #[cfg(feature = "foundation")]
            rate_limiter: foundation.rate_limiter,
            #[cfg(feature = "foundation")]
            tasks: foundation.tasks,
            #[cfg(feature = "foundation")]
            health_monitor: foundation.health_monitor,
            #[cfg(feature = "foundation")]
            service_monitor: foundation.service_monitor,
            #[cfg(feature = "agents")]
            agents,
            #[cfg(feature = "agents")]
            directory: crate::wiring::Directory(directory),
            #[cfg(feature = "agents")]
            agent_store,
            #[cfg(feature = "coordination")]
            coordinator,
            #[cfg(feature = "coordination")]
            variables,
            #[cfg(feature = "economics")]
            auctioneer,
            #[cfg(feature = "economics")]
            marketplace,
            #[cfg(feature = "economics")]
            load_balancer,
            #[cfg(feature = "foundation")]
            stores: Stores {
                events: foundation.events,
                config: foundation.config,
            },
        })
    }

    /// Without a store of the user's: foundation-services'
    /// `SqliteAgentStore` in the data directory, else one in memory.
    #[cfg(feature = "agents")]
    fn default_agent_store(&self) -> Result<Arc<dyn AgentStore>, MabeamError> {
        #[cfg(feature = "foundation")]
        if let Some(dir) = &self.data_dir {
            return Ok(Arc::new(
                SqliteAgentStore::open_blocking(SqliteAgentStoreConfig::new(dir))
                    .map_err(failed(seed::AGENT_REGISTRY))?,
            ));
        }
        Ok(Arc::new(MemoryAgentStore::new()))
    }

    /// The Foundation services of foundation-services, made from the
    /// builder's settings (the `foundation` feature).
    #[cfg(feature = "foundation")]
    fn foundation_wiring(&mut self) -> Result<FoundationParts, MabeamError> {
        let (telemetry, clock) = (self.telemetry.clone(), self.clock.clone());
        let data_dir = self.data_dir.clone().unwrap_or_default();
        let events = EventStoreService::new(
            EventStoreConfig::new(&data_dir)
                .with_postgres(self.event_store_postgres.clone())
                .with_clock(clock.clone())
                .with_telemetry(telemetry.clone()),
        );
        let event_store: EventStore = events.store();
        let sink: Arc<dyn EventSink> = Arc::new(event_store.clone());
        // The config server reads its persisted file when made: only with a
        // data directory (without one, it is not in the tree).
        let config = match &self.data_dir {
            Some(dir) => Some(
                ConfigServerService::new(
                    ConfigServerConfig::new(dir)
                        .with_schema(ConfigSchema::new().updatable("services.*", ValueRule::Object))
                        .with_defaults(self.config_defaults.clone())
                        .with_event_sink(sink),
                )
                .map_err(failed(seed::CONFIG_SERVER))?,
            ),
            None => None,
        };
        let connections = match self.cluster.take() {
            Some(node) => Some(
                node.clock(clock.clone())
                    .telemetry(telemetry.clone())
                    .build()
                    .map_err(failed(seed::CONNECTION_MANAGER))?,
            ),
            None => None,
        };
        let mut limiter = RateLimiter::builder()
            .name(seed::RATE_LIMITER)
            .clock(clock.clone())
            .telemetry(telemetry.clone());
        for (operation, rule) in &self.rate_rules {
            limiter = limiter.rule(operation.clone(), *rule);
        }
        let rate_limiter = limiter.build().map_err(failed(seed::RATE_LIMITER))?;
        let tasks = TaskSupervisor::builder()
            .name(seed::TASK_SUPERVISOR)
            .clock(clock.clone())
            .telemetry(telemetry.clone())
            .build()
            .map_err(failed(seed::TASK_SUPERVISOR))?;
        let health_monitor = HealthMonitor::builder()
            .name(seed::HEALTH_MONITOR)
            .clock(clock.clone())
            .telemetry(telemetry.clone())
            .build()
            .map_err(failed(seed::HEALTH_MONITOR))?;
        let service_monitor = ServiceMonitor::builder()
            .name(seed::SERVICE_MONITOR)
            .clock(clock)
            .telemetry(telemetry)
            .build()
            .map_err(failed(seed::SERVICE_MONITOR))?;
        Ok(FoundationParts {
            data_dir,
            events,
            event_store,
            config,
            connections,
            rate_limiter,
            tasks,
            health_monitor,
            service_monitor,
        })
    }
}

/// What [`SystemBuilder::foundation_wiring`] makes.
#[cfg(feature = "foundation")]
struct FoundationParts {
    data_dir: PathBuf,
    events: EventStoreService,
    event_store: EventStore,
    config: Option<ConfigServerService>,
    connections: Option<ConnectionManager>,
    rate_limiter: RateLimiter,
    tasks: TaskSupervisor,
    health_monitor: HealthMonitor,
    service_monitor: ServiceMonitor,
}

fn subset(
    spec: &ApplicationSpec,
    names: &[String],
    tree: &'static str,
) -> Result<mabeam_supervision_core::Subset, MabeamError> {
    spec.subset(names.iter().map(String::as_str))
        .map_err(|error| MabeamError::Application { tree, error })
}

/// Both trees of a node, wired and checked: a cheap, cloneable handle.
///
/// [`start`](Self::start) starts Foundation, then MABEAM;
/// [`stop`](Self::stop) stops MABEAM, then Foundation, each in reverse
/// start order, and returns once every process has stopped. Every
/// service's process is registered under its name in the system's
/// namespace while it runs.
#[derive(Clone)]
pub struct System {
    inner: Arc<Inner>,
}

struct Inner {
    wiring: Wiring,
    foundation: Application,
    mabeam: Application,
    added: Vec<Arc<str>>,
    restarts: RestartCounts,
    handler_id: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wiring.telemetry.detach(&self.handler_id);
    }
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System")
            .field("namespace", &self.inner.wiring.namespace)
            .field("foundation", &self.inner.foundation.services())
            .field("mabeam", &self.inner.mabeam.services())
            .finish_non_exhaustive()
    }
}

/// The health of the whole system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemHealth {
    /// Whether every service of both trees is healthy.
    pub healthy: bool,
    /// Each service by tree: `healthy`, or why not.
    pub services: Vec<ServiceHealthLine>,
    /// Wall-clock milliseconds since the Unix epoch of the health
    /// monitor's round this comes from (`None`: checked on the spot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at_unix_ms: Option<u64>,
    /// How far the agent layer's recovery from its store is (`None`: no
    /// agent registry runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryHealth>,
}

/// The agent layer's recovery, as `/health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RecoveryHealth {
    /// `recovering` or `done`.
    pub state: &'static str,
    /// Agents restored so far.
    pub restored: u64,
    /// Agents in the store at the start.
    pub total: u64,
    /// Agents restored `Failed`.
    pub failed: u64,
}

impl RecoveryHealth {
    #[cfg(feature = "agents")]
    fn of(agents: &Agents) -> Option<Self> {
        let progress = agents.registry()?.recovery();
        Some(RecoveryHealth {
            state: if progress.done { "done" } else { "recovering" },
            restored: progress.restored,
            total: progress.total,
            failed: progress.failed,
        })
    }
}

/// One service's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceHealthLine {
    /// `foundation` or `mabeam`.
    pub tree: &'static str,
    /// The service.
    pub service: String,
    /// `healthy`, or what is wrong.
    pub health: String,
}

impl System {
    /// A builder.
    pub fn builder() -> SystemBuilder {
        SystemBuilder::new()
    }

    /// Starts Foundation, then MABEAM. If MABEAM fails to start,
    /// Foundation is stopped again and the error returned.
    pub async fn start(&self) -> Result<(), MabeamError> {
        self.inner
            .foundation
            .start()
            .await
            .map_err(|error| MabeamError::Application {
                tree: FoundationApp::NAME,
                error,
            })?;
        if let Err(error) = self.inner.mabeam.start().await {
            let _ = self.inner.foundation.stop().await;
            return Err(MabeamError::Application {
                tree: MabeamApp::NAME,
                error,
            });
        }
        Ok(())
    }

    /// Stops MABEAM, then Foundation; returns once every process below
    /// both has stopped. A tree that was not running is skipped.
    pub async fn stop(&self) -> Result<(), MabeamError> {
        let mabeam = self.inner.mabeam.stop().await;
        let foundation = self.inner.foundation.stop().await;
        mabeam.map_err(|error| MabeamError::Application {
            tree: MabeamApp::NAME,
            error,
        })?;
        foundation.map_err(|error| MabeamError::Application {
            tree: FoundationApp::NAME,
            error,
        })?;
        Ok(())
    }

    /// The Foundation application.
    pub fn foundation(&self) -> &Application {
        &self.inner.foundation
    }

    /// The MABEAM application.
    pub fn mabeam(&self) -> &Application {
        &self.inner.mabeam
    }

    /// The services that came along with a subset (dependencies not asked for).
    pub fn added(&self) -> &[Arc<str>] {
        &self.inner.added
    }

    /// What the trees are wired from.
    pub fn wiring(&self) -> &Wiring {
        &self.inner.wiring
    }

    /// The namespace the services register in.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.wiring.namespace
    }

    /// Whether the service `name` is in either tree (asked for, or brought
    /// along by a subset, and compiled in).
    pub fn has_service(&self, name: &str) -> bool {
        [&self.inner.foundation, &self.inner.mabeam]
            .iter()
            .any(|app| app.services().iter().any(|s| &**s == name))
    }

    /// `value` when the service `name` is in the trees: a service left out
    /// of a subset hands out no handle (it would reach nothing).
    fn kept<'a, T>(&self, name: &str, value: &'a T) -> Option<&'a T> {
        self.has_service(name).then_some(value)
    }

    /// The process registry. Always there, whether the `process_registry`
    /// service is in a subset or not: the system names every process in it.
    pub fn registry(&self) -> &ProcessRegistry {
        &self.inner.wiring.registry
    }

    /// The telemetry handle (always there: every service emits through it).
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.wiring.telemetry
    }

    /// The telemetry service, when `telemetry_service` is in the trees.
    pub fn telemetry_service(&self) -> Option<&TelemetryService> {
        self.kept(
            seed::TELEMETRY_SERVICE,
            &self.inner.wiring.telemetry_service,
        )
    }

    /// The performance monitor, when `performance_monitor` is in the trees.
    pub fn performance(&self) -> Option<&PerformanceMonitor> {
        self.kept(seed::PERFORMANCE_MONITOR, &self.inner.wiring.performance)
    }

    /// The event store (its handle reaches the running incarnation), when
    /// `event_store` is in the trees.
    #[cfg(feature = "foundation")]
    pub fn event_store(&self) -> Option<&EventStore> {
        self.kept(seed::EVENT_STORE, &self.inner.wiring.event_store)
    }

    /// The config server, when `config_server` is in the trees (the system
    /// has a data directory).
    #[cfg(feature = "foundation")]
    pub fn config(&self) -> Option<&ConfigServer> {
        self.inner
            .wiring
            .config
            .as_ref()
            .filter(|_| self.has_service(seed::CONFIG_SERVER))
    }

    /// The connection manager, when `connection_manager` is in the trees
    /// (the system has a cluster).
    #[cfg(feature = "foundation")]
    pub fn connections(&self) -> Option<&ConnectionManager> {
        self.inner
            .wiring
            .connections
            .as_ref()
            .filter(|_| self.has_service(seed::CONNECTION_MANAGER))
    }

    /// The rate limiter, when `rate_limiter` is in the trees.
    #[cfg(feature = "foundation")]
    pub fn rate_limiter(&self) -> Option<&RateLimiter> {
        self.kept(seed::RATE_LIMITER, &self.inner.wiring.rate_limiter)
    }

    /// The agent layer (the running agent registry; the `AgentDirectory`),
    /// when `agent_supervisor` is in the trees.
    #[cfg(feature = "agents")]
    pub fn agents(&self) -> Option<&Agents> {
        self.kept(seed::AGENT_SUPERVISOR, &self.inner.wiring.agents)
    }

    /// The directory the services reach agents through (see
    /// [`SystemBuilder::agent_directory`]), when `agent_supervisor` is in
    /// the trees.
    #[cfg(feature = "agents")]
    pub fn directory(&self) -> Option<&Arc<dyn mabeam_supervision_core::AgentDirectory>> {
        self.kept(seed::AGENT_SUPERVISOR, &self.inner.wiring.directory.0)
    }

    /// Coordination's coordinator, when `coordination_supervisor` is in
    /// the trees.
    #[cfg(feature = "coordination")]
    pub fn coordinator(&self) -> Option<&Arc<Coordinator>> {
        self.kept(
            seed::COORDINATION_SUPERVISOR,
            &self.inner.wiring.coordinator,
        )
    }

    /// Economics' auctioneer, when `coordination_supervisor` is in the
    /// trees.
    #[cfg(feature = "economics")]
    pub fn auctioneer(&self) -> Option<&Arc<Auctioneer>> {
        self.kept(seed::COORDINATION_SUPERVISOR, &self.inner.wiring.auctioneer)
    }

    /// Restarts the service `name` of either tree (refused while a
    /// dependency is down).
    pub async fn restart_service(&self, name: &str) -> Result<(), MabeamError> {
        for app in [&self.inner.foundation, &self.inner.mabeam] {
            if app.services().iter().any(|s| &**s == name) {
                return app
                    .restart_service(name)
                    .await
                    .map(|_| ())
                    .map_err(|error| MabeamError::Application {
                        tree: if app.name() == FoundationApp::NAME {
                            FoundationApp::NAME
                        } else {
                            MabeamApp::NAME
                        },
                        error,
                    });
            }
        }
        Err(MabeamError::UnknownService(name.into()))
    }

    /// The agent layer's recovery, when it runs.
    fn recovery(&self) -> Option<RecoveryHealth> {
        #[cfg(feature = "agents")]
        return self.agents().and_then(RecoveryHealth::of);
        #[cfg(not(feature = "agents"))]
        None
    }

    /// Runs every service's health check.
    pub async fn health(&self) -> SystemHealth {
        let (foundation, mabeam) =
            futures::join!(self.inner.foundation.health(), self.inner.mabeam.health());
        let mut services = Vec::new();
        let mut healthy = true;
        for (tree, report) in [(FoundationApp::NAME, foundation), (MabeamApp::NAME, mabeam)] {
            let report: HealthReport = report;
            healthy &= report.is_healthy();
            services.extend(report.services.into_iter().map(|s| ServiceHealthLine {
                tree,
                service: s.name.to_string(),
                health: s.health.to_string(),
            }));
        }
        SystemHealth {
            healthy,
            services,
            checked_at_unix_ms: None,
            recovery: self.recovery(),
        }
    }

    /// The health as of the health monitor's last round, in the shape of
    /// [`health`](Self::health), without running a check: what a probe
    /// polling `/health` should read. Before the monitor's first round it
    /// runs one. Healthy when the monitor's overall state is.
    pub async fn last_health(&self) -> SystemHealth {
        #[cfg(not(feature = "foundation"))]
        return self.health().await;
        #[cfg(feature = "foundation")]
        self.last_monitored_health().await
    }

    /// [`last_health`](Self::last_health) from the health monitor.
    #[cfg(feature = "foundation")]
    async fn last_monitored_health(&self) -> SystemHealth {
        let monitor = &self.inner.wiring.health_monitor;
        let mut report = monitor.report();
        if report.checked_at_unix_ms == 0 {
            report = monitor.check_now().await;
        }
        let services = report
            .services
            .iter()
            .map(|detail| {
                let (tree, service) = detail.name.split_once('/').unwrap_or(("", &detail.name));
                ServiceHealthLine {
                    tree: if tree == MabeamApp::NAME {
                        MabeamApp::NAME
                    } else if tree == FoundationApp::NAME {
                        FoundationApp::NAME
                    } else {
                        "check"
                    },
                    service: service.to_owned(),
                    health: detail.health.to_string(),
                }
            })
            .collect();
        SystemHealth {
            healthy: report.overall == mabeam_foundation_services::HealthState::Healthy,
            services,
            checked_at_unix_ms: Some(report.checked_at_unix_ms),
            recovery: self.recovery(),
        }
    }

    /// The live tree: both applications, every process with its kind,
    /// status and restart count, and the seed's services absent from this
    /// system, each with why.
    pub async fn tree(&self) -> TreeReport {
        let restarts = &self.inner.restarts;
        let foundation = tree::application_node(&self.inner.foundation, restarts).await;
        let mabeam = tree::application_node(&self.inner.mabeam, restarts).await;
        TreeReport {
            namespace: self.inner.wiring.namespace.to_string(),
            applications: vec![foundation, mabeam],
            absent: FOUNDATION_SEED
                .iter()
                .chain(MABEAM_SEED)
                .filter(|s| !s.wired)
                .copied()
                .chain(self.no_cluster())
                .collect(),
        }
    }
}

impl System {
    /// The connection manager's absence, when the system has no cluster.
    #[cfg(feature = "foundation")]
    fn no_cluster(&self) -> Option<seed::SeedService> {
        self.inner
            .wiring
            .connections
            .is_none()
            .then_some(seed::NO_CLUSTER)
    }

    /// Without Foundation the connection manager is absent as uncompiled.
    #[cfg(not(feature = "foundation"))]
    fn no_cluster(&self) -> Option<seed::SeedService> {
        None
    }
}

impl GaugeSource for System {
    fn read(&self) -> BoxFuture<'_, Vec<GaugeReading>> {
        Box::pin(async move {
            let report = self.tree().await;
            let mut out = Vec::new();
            for app in &report.applications {
                tree::gauges(app, &mut out);
            }
            let ns = self.namespace().to_string();
            let kind = ns.split(':').next().unwrap_or("production").to_owned();
            out.push(GaugeReading::new(
                &events::GAUGE_REGISTRY_NAMES,
                [kind],
                self.registry().count(self.namespace()) as f64,
            ));
            out
        })
    }
}

/// What a system compiled with some features off does (run with `cargo
/// test -p mabeam --lib --no-default-features`; `cargo xtask test` does).
#[cfg(all(test, not(feature = "foundation")))]
mod without_features {
    use mabeam_supervision_core::{ErrorCode, Namespace};

    use crate::{MabeamError, System, seed};

    fn builder() -> super::SystemBuilder {
        System::builder().namespace(Namespace::unique_test())
    }

    // A service whose feature is off is a typed refusal that names the
    // feature, and nothing is built.
    #[test]
    fn a_service_not_compiled_in_names_its_feature() {
        let err = builder().only([seed::EVENT_STORE]).build().unwrap_err();
        assert_eq!(err.code(), 8009, "{err}");
        assert!(
            matches!(&err, MabeamError::NotCompiled { service, feature: "foundation" }
                if &**service == seed::EVENT_STORE),
            "{err}"
        );
        assert!(err.to_string().contains("foundation"), "{err}");
    }

    // The base (no feature) starts, lists what is left out with the
    // feature that brings it, and stops with its namespace empty.
    #[tokio::test]
    async fn the_base_runs_and_lists_the_rest_as_not_compiled() {
        let system = builder().build().expect("the base needs no data directory");
        let limit = std::time::Duration::from_secs(30);
        tokio::time::timeout(limit, system.start())
            .await
            .expect("the base did not start within 30 s")
            .unwrap();
        assert!(system.health().await.healthy);
        assert!(system.has_service(seed::PROCESS_REGISTRY));
        assert!(!system.has_service(seed::EVENT_STORE));
        let tree = system.tree().await;
        let store = tree
            .absent
            .iter()
            .find(|s| s.name == seed::EVENT_STORE)
            .expect("the event store is listed as absent");
        assert!(store.absent_because.unwrap().contains("`foundation`"));
        #[cfg(not(feature = "agents"))]
        assert!(tree.absent.iter().any(|s| s.name == seed::AGENT_REGISTRY));
        tokio::time::timeout(limit, system.stop())
            .await
            .expect("the base did not stop within 30 s")
            .unwrap();
        assert_eq!(system.registry().count(system.namespace()), 0);
    }
}
