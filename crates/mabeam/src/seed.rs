//! The seed's two trees as lists: every service of the process hierarchy
//! the design started from (Foundation, then MABEAM), in its order, the crate that builds it, and
//! whether this build wires it. A service not built (its cargo feature is
//! off) is absent from its tree (never a stand-in) and listed here with the
//! feature that brings it.

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

/// `name`, wired when its `feature` is on (`on`), else absent with why.
const fn with_feature(
    name: &'static str,
    provided_by: &'static str,
    on: bool,
    why: &'static str,
) -> SeedService {
    if on {
        wired(name, provided_by)
    } else {
        absent(name, provided_by, why)
    }
}

const NO_FOUNDATION: &str = "not compiled: mabeam's `foundation` feature is off";
const NO_AGENTS: &str = "not compiled: mabeam's `agents` feature is off";
const NO_COORDINATION: &str = "not compiled: mabeam's `coordination` feature is off";
const NO_GROUPS: &str = "not compiled: mabeam's `coordination` and `economics` features are off";

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
/// when its feature is on (the connection manager joins the tree when the
/// system is given a cluster: a node name and a cookie, see
/// `SystemBuilder::cluster`).
pub const FOUNDATION_SEED: &[SeedService] = &[
    wired(PROCESS_REGISTRY, "process-registry"),
    wired(SERVICE_REGISTRY, "process-registry"),
    wired(TELEMETRY_SERVICE, "telemetry"),
    with_feature(
        CONFIG_SERVER,
        "foundation-services",
        FOUNDATION,
        NO_FOUNDATION,
    ),
    with_feature(
        EVENT_STORE,
        "foundation-services",
        FOUNDATION,
        NO_FOUNDATION,
    ),
    with_feature(
        CONNECTION_MANAGER,
        "foundation-services",
        FOUNDATION,
        NO_FOUNDATION,
    ),
    with_feature(
        RATE_LIMITER,
        "foundation-services",
        FOUNDATION,
        NO_FOUNDATION,
    ),
    with_feature(
        TASK_SUPERVISOR,
        "foundation-services",
        FOUNDATION,
        NO_FOUNDATION,
    ),
    with_feature(
        HEALTH_MONITOR,
        "foundation-services",
        FOUNDATION,
        NO_FOUNDATION,
    ),
    with_feature(
        SERVICE_MONITOR,
        "foundation-services",
        FOUNDATION,
        NO_FOUNDATION,
    ),
];

/// The MABEAM tree of the seed, in its order; every service is wired
/// when its feature is on.
///
/// One difference of order, on purpose: the application starts
/// `agent_supervisor` before `agent_registry` (the registry starts and
/// stops every agent through the supervisor, a dependency), so on stop the
/// registry goes first and stops each agent through the supervisor (each
/// ends `stopped`) before the supervisor itself stops.
/// `coordination_supervisor` is a one_for_one subtree of `coordination`,
/// `economics` and `load_balancer` (those whose features are on).
pub const MABEAM_SEED: &[SeedService] = &[
    with_feature(CORE, "coordination", COORDINATION_ON, NO_COORDINATION),
    with_feature(AGENT_REGISTRY, "agent-supervisor", AGENTS, NO_AGENTS),
    with_feature(AGENT_SUPERVISOR, "agent-supervisor", AGENTS, NO_AGENTS),
    with_feature(
        COORDINATION_SUPERVISOR,
        "coordination, economics",
        COORDINATION_ON || ECONOMICS_ON,
        NO_GROUPS,
    ),
    wired(PERFORMANCE_MONITOR, "telemetry"),
];

const FOUNDATION: bool = cfg!(feature = "foundation");
const AGENTS: bool = cfg!(feature = "agents");
const COORDINATION_ON: bool = cfg!(feature = "coordination");
const ECONOMICS_ON: bool = cfg!(feature = "economics");

/// The feature that compiles `name` in, when it is off: `Some("agents")`
/// for `agent_registry` without the `agents` feature; `None` when `name`
/// is compiled in (or is no seed service).
pub(crate) fn missing_feature(name: &str) -> Option<&'static str> {
    let off = |on: bool, feature: &'static str| (!on).then_some(feature);
    match name {
        CONFIG_SERVER | EVENT_STORE | CONNECTION_MANAGER | RATE_LIMITER | TASK_SUPERVISOR
        | HEALTH_MONITOR | SERVICE_MONITOR => off(FOUNDATION, "foundation"),
        AGENT_REGISTRY | AGENT_SUPERVISOR => off(AGENTS, "agents"),
        CORE | COORDINATION => off(COORDINATION_ON, "coordination"),
        ECONOMICS | LOAD_BALANCER => off(ECONOMICS_ON, "economics"),
        COORDINATION_SUPERVISOR => off(COORDINATION_ON || ECONOMICS_ON, "coordination"),
        _ => None,
    }
}

/// The MABEAM services that use a Foundation service of the other tree
/// (their records go to the event store): a subset keeping one of them
/// brings these along. Without the `foundation` feature there is no event
/// store, and they record nothing.
pub(crate) const CROSS_TREE: &[(&str, &[&str])] = if FOUNDATION {
    &[
        (CORE, &[EVENT_STORE]),
        (AGENT_SUPERVISOR, &[EVENT_STORE]),
        (AGENT_REGISTRY, &[EVENT_STORE]),
        (COORDINATION_SUPERVISOR, &[EVENT_STORE]),
    ]
} else {
    &[]
};

/// Why the connection manager is out of a system without a cluster.
#[cfg(feature = "foundation")]
pub(crate) const NO_CLUSTER: SeedService = absent(
    CONNECTION_MANAGER,
    "foundation-services",
    "no cluster configured: give the system a node name and a cookie (SystemBuilder::cluster)",
);

/// The Foundation services that keep files in the data directory.
#[cfg(feature = "foundation")]
pub(crate) const NEED_DATA_DIR: &[&str] = &[CONFIG_SERVER, EVENT_STORE];
