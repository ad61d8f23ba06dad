//! The seed's two trees as lists: every service of the process hierarchy
//! the design started from (Foundation, then MABEAM), in its order, the crate that builds it, and
//! whether this build wires it. A service not built is absent from its
//! tree (never a stand-in) and listed here with the reason.

use serde::Serialize;

/// One service of the seed's trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeedService {
    /// Its name in the tree (and in the registry).
    pub name: &'static str,
    /// The crate that provides it.
    pub provided_by: &'static str,
    /// Whether this build wires it into its tree.
    pub wired: bool,
    /// Why it is absent (`None` when wired).
    pub absent_because: Option<&'static str>,
}

const fn wired(name: &'static str, provided_by: &'static str) -> SeedService {
    SeedService {
        name,
        provided_by,
        wired: true,
        absent_because: None,
    }
}

/// A seed service this system leaves out, and why.
pub(crate) const fn absent(
    name: &'static str,
    provided_by: &'static str,
    why: &'static str,
) -> SeedService {
    SeedService {
        name,
        provided_by,
        wired: false,
        absent_because: Some(why),
    }
}

/// `process_registry`: namespaced names of processes.
pub const PROCESS_REGISTRY: &str = "process_registry";
/// `service_registry`: service lookups, health, fallbacks (needs the process registry).
pub const SERVICE_REGISTRY: &str = "service_registry";
/// `telemetry_service`: metrics collection.
pub const TELEMETRY_SERVICE: &str = "telemetry_service";
/// `config_server`: configuration with a schema, persisted in the data directory.
pub const CONFIG_SERVER: &str = "config_server";
/// `event_store`: the durable event log (SQLite in the data directory).
pub const EVENT_STORE: &str = "event_store";
/// `connection_manager`: the node's connections to the other nodes of its
/// cluster (in the tree when the system has a cluster).
pub const CONNECTION_MANAGER: &str = "connection_manager";
/// `rate_limiter`: token buckets by (entity, operation).
pub const RATE_LIMITER: &str = "rate_limiter";
/// `task_supervisor`: ad-hoc tasks.
pub const TASK_SUPERVISOR: &str = "task_supervisor";
/// `health_monitor`: the health of every service of both trees.
pub const HEALTH_MONITOR: &str = "health_monitor";
/// `service_monitor`: periodic pings and restarts after missed ones.
pub const SERVICE_MONITOR: &str = "service_monitor";

/// `core`: MABEAM's universal variables (coordination's `VariableSpace`).
pub const CORE: &str = "core";
/// `agent_registry`: agents by id, their lifecycle and restarts.
pub const AGENT_REGISTRY: &str = "agent_registry";
/// `agent_supervisor`: the dynamic supervisor of agent processes.
pub const AGENT_SUPERVISOR: &str = "agent_supervisor";
/// `coordination_supervisor`: the subtree of coordination, economics and
/// the load balancer (one_for_one).
pub const COORDINATION_SUPERVISOR: &str = "coordination_supervisor";
/// `coordination`: votes and consensus among agents (in the coordination subtree).
pub const COORDINATION: &str = "coordination";
/// `economics`: auctions and the marketplace (in the coordination subtree).
pub const ECONOMICS: &str = "economics";
/// `load_balancer`: work across agents (in the coordination subtree).
pub const LOAD_BALANCER: &str = "load_balancer";
/// `performance_monitor`: per-agent performance.
pub const PERFORMANCE_MONITOR: &str = "performance_monitor";

/// The Foundation tree of the seed, in its order; every service is wired
/// (the connection manager joins the tree when the system is given a
/// cluster: a node name and a cookie, see `SystemBuilder::cluster`).
pub const FOUNDATION_SEED: &[SeedService] = &[
    wired(PROCESS_REGISTRY, "process-registry"),
    wired(SERVICE_REGISTRY, "process-registry"),
    wired(TELEMETRY_SERVICE, "telemetry"),
    wired(CONFIG_SERVER, "foundation-services"),
    wired(EVENT_STORE, "foundation-services"),
    wired(CONNECTION_MANAGER, "foundation-services"),
    wired(RATE_LIMITER, "foundation-services"),
    wired(TASK_SUPERVISOR, "foundation-services"),
    wired(HEALTH_MONITOR, "foundation-services"),
    wired(SERVICE_MONITOR, "foundation-services"),
];

/// The MABEAM tree of the seed, in its order; every service is wired.
///
/// One difference of order, on purpose: the application starts
/// `agent_supervisor` before `agent_registry` (the registry starts and
/// stops every agent through the supervisor, a dependency), so on stop the
/// registry goes first and stops each agent through the supervisor (each
/// ends `stopped`) before the supervisor itself stops.
/// `coordination_supervisor` is a one_for_one subtree of `coordination`,
/// `economics` and `load_balancer`.
pub const MABEAM_SEED: &[SeedService] = &[
    wired(CORE, "coordination"),
    wired(AGENT_REGISTRY, "agent-supervisor"),
    wired(AGENT_SUPERVISOR, "agent-supervisor"),
    wired(COORDINATION_SUPERVISOR, "coordination, economics"),
    wired(PERFORMANCE_MONITOR, "telemetry"),
];

/// The MABEAM services that use a Foundation service of the other tree
/// (their records go to the event store): a subset keeping one of them
/// brings these along.
pub(crate) const CROSS_TREE: &[(&str, &[&str])] = &[
    (CORE, &[EVENT_STORE]),
    (AGENT_SUPERVISOR, &[EVENT_STORE]),
    (AGENT_REGISTRY, &[EVENT_STORE]),
    (COORDINATION_SUPERVISOR, &[EVENT_STORE]),
];

/// Why the connection manager is out of a system without a cluster.
pub(crate) const NO_CLUSTER: SeedService = absent(
    CONNECTION_MANAGER,
    "foundation-services",
    "no cluster configured: give the system a node name and a cookie (SystemBuilder::cluster)",
);

/// The Foundation services that keep files in the data directory.
pub(crate) const NEED_DATA_DIR: &[&str] = &[CONFIG_SERVER, EVENT_STORE];
