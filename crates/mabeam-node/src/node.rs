//! [`Node`]: a running node: both trees, the exporter it owns, the HTTP
//! API; started from a [`NodeConfig`], stopped in reverse start order.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use mabeam::{FoundationApp, MabeamApp, System, SystemBuilder};
use mabeam_foundation_services::{PostgresAgentStore, SqliteAgentStore, SqliteAgentStoreConfig};
use mabeam_supervision_core::{MetaValue, Telemetry, events};
use mabeam_telemetry::{PrometheusExporter, TelemetryConfig};
use tokio::{net::TcpListener, runtime::Runtime, sync::oneshot, task::JoinHandle};

use mabeam_foundation_services::cluster::ClusterMembership;
use mabeam_supervision_core::cluster::MemberState;

use crate::{
    NodeConfig, NodeError,
    cluster::{self, MemberGauges},
    cluster_lease, cluster_reach,
    data_dir::{self, DirLock},
    http::{self, API_MUTATION, ApiState, Limits},
    kinds::AgentKinds,
    observer::{NodeInfo, Observer},
};

/// Mutating API requests admitted per second (the rate limiter's
/// `api.mutation` rule), with bursts up to [`API_BURST`].
pub const API_RATE: u32 = 200;
/// The burst of mutating API requests.
pub const API_BURST: u32 = 400;

/// A running node. Start order: the Foundation tree, the MABEAM tree, the
/// HTTP API; [`stop`](Self::stop) goes the other way.
#[derive(Debug)]
pub struct Node {
    system: System,
    exporter: PrometheusExporter,
    addr: SocketAddr,
    token: Arc<str>,
    observer: Observer,
    membership: Arc<ClusterMembership>,
    /// Dials the members as they come up.
    mesh: Option<JoinHandle<()>>,
    /// Takes over the agents of members seen down (a shared store only).
    failover: Option<JoinHandle<()>>,
    /// How the cluster's directory reaches other nodes (set once the
    /// membership runs); the hand-over at stop uses it.
    reach: Arc<std::sync::OnceLock<cluster_reach::Reach>>,
    /// Renews this incarnation's lease (a shared store only).
    lease: Option<cluster_lease::LeaseHolder>,
    /// Takes over the claims of members whose leases expired unseen.
    scan: Option<JoinHandle<()>>,
    /// The cluster address, resolved (a restart binds it again).
    listen: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _agents: AgentRuntime,
    /// The agent store (`agents.db`), closed after the trees stop.
    agent_store: NodeAgentStore,
    /// Held while the node lives: no other node uses the directory.
    _lock: DirLock,
}

/// The agents' runtime, shut down without blocking when dropped: a
/// runtime dropped the plain way inside an async context (a failed
/// [`Node::start`], a [`Node`] dropped in a task) panics.
#[derive(Debug)]
struct AgentRuntime {
    handle: Option<tokio::runtime::Handle>,
    /// Shared with the lease holder, which kills every agent at once by
    /// shutting it down.
    runtime: Arc<parking_lot::Mutex<Option<Runtime>>>,
}

/// How much nicer than the node's other threads the agents' threads run
/// (added to the process's nice value, at most 19).
///
/// Why: on a node whose cores the agents keep busy, the system's threads
/// (the HTTP API, supervisors, registry) wake up to runnable agent
/// threads on every core, and at equal priority the kernel lets a busy
/// thread finish its slice first (milliseconds): that wait was the tail
/// of `/health` under load. At nice 10 an agent thread weighs about a
/// tenth of a system thread, so the kernel switches to a system thread at
/// once when it wakes, and agents still have every core the system
/// leaves idle (nearly all of it). The seed's process priorities, at the
/// level where the cores are shared.
const AGENT_NICE: i32 = 10;

/// Lowers the calling thread's priority by [`AGENT_NICE`]; a failure (a
/// sandbox that forbids it) leaves the thread as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        // On Linux the nice value is per thread: this sets only ours.
        let thread = Some(rustix::thread::gettid());
        if let Ok(nice) = getpriority_process(thread) {
            let _ = setpriority_process(thread, (nice + AGENT_NICE).min(19));
        }
    }
}

impl AgentRuntime {
    /// Threads: as many as cores, like the system's, each at
    /// [`AGENT_NICE`] below the others.
    fn new() -> Result<Self, NodeError> {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("mabeam-agents")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map(|runtime| AgentRuntime {
                handle: Some(runtime.handle().clone()),
                runtime: Arc::new(parking_lot::Mutex::new(Some(runtime))),
            })
            .map_err(|error| NodeError::Runtime(error.to_string()))
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.handle.as_ref()
    }

    /// Kills every agent at once: the runtime is shut down (each task
    /// dropped at its next `.await`), without waiting.
    fn killer(&self) -> Box<dyn FnOnce() + Send> {
        let runtime = self.runtime.clone();
        Box::new(move || {
            if let Some(runtime) = runtime.lock().take() {
                runtime.shutdown_background();
            }
        })
    }
}

impl Drop for AgentRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.lock().take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Node {
    /// A node dropped without [`Node::stop`] still ends its observer's
    /// sampler and streams.
    fn drop(&mut self) {
        self.observer.stop();
        // Its gossip tasks would outlive it.
        self.membership.kill();
        if let Some(mesh) = self.mesh.take() {
            mesh.abort();
        }
        if let Some(failover) = self.failover.take() {
            failover.abort();
        }
        if let Some(scan) = self.scan.take() {
            scan.abort();
        }
        if let Some(lease) = &self.lease {
            lease.stop();
        }
    }
}

impl Node {
    /// Checks `config`, binds the HTTP address, prepares and locks the
    /// data directory (and the secrets in it), starts both trees, then
    /// serves HTTP. Returns once it listens. A failure at any step is
    /// returned typed, with whatever was started stopped again: a taken
    /// port fails before the data directory is even made.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        config.check()?;
        let bind = |error| NodeError::Bind {
            addr: config.http,
            error,
        };
        let listener = TcpListener::bind(config.http).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        data_dir::ensure(&config.data_dir)?;
        let lock = data_dir::lock(&config.data_dir)?;
        let token: Arc<str> = data_dir::token(&config.data_dir, config.token.as_deref())?.into();
        let cookie = data_dir::cookie(&config.data_dir, config.cookie.as_deref())?;
        // The agents the node acknowledged: recovered as the agent layer
        // starts, in the background (`/health` shows how far).
        let agent_store = NodeAgentStore::open(&config).await?;
        // On a shared store the agent layer writes as this member (node
        // and generation), fenced by its claims; the generation is the
        // connection manager's, known once it starts (before the agents).
        let connections_cell = Arc::new(std::sync::OnceLock::<
            mabeam_foundation_services::ConnectionManager,
        >::new());
        let fenced = agent_store.fenced(&config.cluster_node, {
            let cell = connections_cell.clone();
            move || cell.get().map_or(0, |c| c.generation())
        });
        let kinds = AgentKinds::builtin();
        // Node connections (TCP) and gossip (UDP) share the address.
        let listen = cluster::resolve_listen(config.cluster_listen)?;

        let telemetry = Telemetry::new();
        let node_telemetry = telemetry.clone();
        log_supervision(&telemetry);
        // The node owns its recorder: made here, served on /metrics.
        let exporter = PrometheusExporter::with_per_process_labels(config.per_agent_labels);
        exporter
            .attach(&telemetry)
            .map_err(|e| NodeError::System(e.into()))?;
        // Agents get a runtime of their own: busy agents cannot starve the
        // supervisors, the registry or /health (the seed's priorities).
        let agents = AgentRuntime::new()?;
        let mut builder = SystemBuilder::new()
            .telemetry(telemetry)
            .data_dir(&config.data_dir)
            .agent_store(match &fenced {
                Some(fenced) => Arc::new(fenced.clone()),
                None => agent_store.shared(),
            })
            .agent_recipes(kinds.recipes())
            .config_defaults(config.defaults())
            .rate_limit(
                API_MUTATION,
                mabeam_foundation_services::Rule::per_second(API_RATE).with_burst(API_BURST),
            )
            .cluster(
                mabeam_foundation_services::ConnectionManager::builder(
                    &config.cluster_node,
                    &cookie,
                )
                .listen(listen)
                .seeds(config.cluster_seeds.iter().copied()),
            )
            .telemetry_config(TelemetryConfig {
                retention: Duration::from_secs(config.retention_secs),
                ..TelemetryConfig::default()
            });
        if let Some(handle) = agents.handle() {
            builder = builder.agent_runtime(handle.clone());
        }
        if let Some(postgres) = &config.store {
            builder = builder.event_store_postgres(postgres.clone());
        }
        // The services reach every agent of the cluster: this node's
        // first, then the owner's (once the membership runs).
        let reach = Arc::new(std::sync::OnceLock::<cluster_reach::Reach>::new());
        builder = builder.agent_directory({
            let reach = reach.clone();
            move |agents| Arc::new(cluster_reach::ClusterDirectory::new(agents, reach.clone()))
        });
        let system = builder.build()?;
        if let Some(connections) = system.connections() {
            let _ = connections_cell.set(connections.clone());
        }
        exporter.add_source(Arc::new(system.clone()));
        // Made before the trees start: it counts each service's starts.
        let observer = Observer::new(
            system.clone(),
            NodeInfo {
                name: config.cluster_node.clone(),
                version: env!("CARGO_PKG_VERSION"),
                data_dir: config.data_dir.clone(),
                store: "sqlite",
            },
            agents.handle().cloned(),
        );
        system.start().await?;
        if let Err(error) = data_dir::restrict(&config.data_dir) {
            let _ = system.stop().await;
            return Err(error);
        }
        tracing::info!(data_dir = %config.data_dir.display(), "both trees started");
        // The lease, once the connection manager has its generation (it
        // starts first): the agents' recovery may have claimed some as
        // this member just before; a claim whose holder has no lease row
        // is never taken by the scan of expired leases, and a member seen
        // down without one is taken over as before leases.
        let lease = match (&agent_store, system.connections()) {
            (NodeAgentStore::Postgres(store), Some(connections)) => {
                match cluster_lease::acquire(
                    store,
                    &config.cluster_node,
                    connections.generation(),
                    config.cluster_lease,
                )
                .await
                {
                    Ok((lease, taken)) => Some(cluster_lease::hold(
                        lease,
                        taken,
                        config.cluster_lease,
                        agents.killer(),
                    )),
                    Err(error) => {
                        let _ = system.stop().await;
                        return Err(error);
                    }
                }
            }
            _ => None,
        };
        if let Some(cluster) = system.connections().and_then(|c| c.local_addr()) {
            tracing::info!(node = %config.cluster_node, %cluster, "cluster listening");
        }
        // One generation for the incarnation: the handshake's and the
        // membership's.
        let generation = system.connections().map(|c| c.generation());
        let membership = match cluster::start_membership(
            &config,
            &cookie,
            listen,
            addr,
            generation,
            node_telemetry,
        )
        .await
        {
            Ok(membership) => Arc::new(membership),
            Err(error) => {
                let _ = system.stop().await;
                return Err(error);
            }
        };
        exporter.add_source(Arc::new(MemberGauges(membership.clone())));

        observer.start();
        let api = ApiState {
            system: system.clone(),
            exporter: exporter.clone(),
            token: token.clone(),
            public_reads: config.public_reads,
            kinds,
            next_id: Arc::new(AtomicU64::new(1)),
            observer: observer.clone(),
            cluster: Some(membership.clone()),
            ownership: fenced.clone(),
        };
        if let Some(connections) = system.connections() {
            let _ = reach.set(cluster_reach::Reach {
                membership: membership.clone(),
                delivery: connections.clone(),
                ownership: fenced.clone(),
                gate: Arc::default(),
                owners: cluster_reach::Owners::default(),
            });
        }
        let failover = fenced.clone().map(|store| {
            cluster::fail_over(
                membership.clone(),
                store,
                system.clone(),
                config.cluster_lease,
            )
        });
        // Other nodes' calls reach this node's agents and the node
        // itself, over a connection to each member.
        let mesh = system.connections().map(|connections| {
            if let Some(agents) = system.agents() {
                let served: Arc<dyn mabeam_supervision_core::AgentDirectory> =
                    Arc::new(cluster::Served {
                        api: api.clone(),
                        agents: agents.clone(),
                    });
                // Closed while the node hands its agents over.
                connections.serve(match reach.get() {
                    Some(reach) => Arc::new(cluster_reach::Gated::new(served, reach.gate.clone())),
                    None => served,
                });
            }
            cluster::connect_members(membership.clone(), connections.clone())
        });
        let app = http::router(api);
        let limits = Limits {
            max_connections: config.max_connections,
            header_timeout: Duration::from_millis(config.header_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
        };
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(http::serve(listener, app, limits, async {
            let _ = stopped.await;
        }));
        tracing::info!(%addr, "HTTP API listening");
        // Serving: the others may route to it now.
        let _ = membership.set_state(MemberState::Up).await;
        let scan = fenced.map(|store| {
            cluster_lease::scan_expired(
                membership.clone(),
                store,
                system.clone(),
                config.cluster_lease.length,
            )
        });
        Ok(Node {
            system,
            exporter,
            addr,
            token,
            observer,
            membership,
            mesh,
            failover,
            reach,
            lease,
            scan,
            listen,
            shutdown: Some(shutdown),
            server: Some(server),
            _agents: agents,
            agent_store,
            _lock: lock,
        })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Resolves once this node lost its lease in the shared store (its
    /// agents are stopped by then); never without a shared store.
    pub async fn lease_lost(&self) -> cluster_lease::LeaseLost {
        match &self.lease {
            Some(lease) => lease.lost().await,
            None => std::future::pending().await,
        }
    }

    /// The trees.
    pub fn system(&self) -> &System {
        &self.system
    }

    /// The node's exporter.
    pub fn exporter(&self) -> &PrometheusExporter {
        &self.exporter
    }

    /// The bearer token of mutating endpoints.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops the HTTP API (requests in flight finish), then the MABEAM
    /// tree, then the Foundation tree.
    pub async fn stop(mut self) -> Result<(), NodeError> {
        // Open event streams end first: the server's graceful shutdown
        // waits for every response, and a stream never ends by itself.
        self.observer.stop();
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        tracing::info!("HTTP API stopped");
        // The others see it leaving at once, not after their detectors.
        if let Some(mesh) = self.mesh.take() {
            mesh.abort();
        }
        if let Some(failover) = self.failover.take() {
            failover.abort();
        }
        if let Some(scan) = self.scan.take() {
            scan.abort();
        }
        // Its agents to the survivors first, with no detection delay.
        if let (Some(reach), Some(agents)) = (self.reach.get(), self.system.agents()) {
            cluster_reach::hand_over(reach, agents).await;
        }
        self.membership.leave().await;
        let stopped = self.system.stop().await;
        // Its agents stopped: its lease ends now, so the others take its
        // claims over without waiting it out (bounded: a store cut off
        // leaves it to expire).
        if let Some(lease) = &self.lease {
            lease.stop();
            if let (NodeAgentStore::Postgres(store), Some(connections)) =
                (&self.agent_store, self.system.connections())
            {
                let (node, generation) = (self.membership.node(), connections.generation());
                let release = store.release_lease(node, generation);
                let _ = tokio::time::timeout(Duration::from_secs(2), release).await;
            }
        }
        // Its queued writes (the agents' stop checkpoints) committed.
        self.agent_store.stop().await;
        stopped?;
        tracing::info!("both trees stopped");
        Ok(())
    }
}

/// Logs the trees' lifecycle through `tracing`: each service started and
/// stopped, crashes, restarts, supervisors giving up.
fn log_supervision(telemetry: &Telemetry) {
    let _ = telemetry.attach("node-log", &["supervisor"], |event| {
        let text = |key| match event.meta(key) {
            Some(MetaValue::Str(s)) => s.to_owned(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let (tree, service) = (text("supervisor"), text("child"));
        let top = tree == FoundationApp::NAME || tree == MabeamApp::NAME;
        if event.name == events::CHILD_STARTED && top {
            tracing::info!(%tree, %service, "started service");
        } else if event.name == events::CHILD_TERMINATED && top {
            tracing::info!(%tree, %service, "stopped service");
        } else if event.name == events::CHILD_EXITED {
            tracing::warn!(supervisor = %tree, child = %service, reason = %text("reason"), "child exited");
        } else if event.name == events::CHILD_RESTARTED {
            tracing::warn!(supervisor = %tree, child = %service, "child restarted");
        } else if event.name == events::GAVE_UP {
            tracing::error!(supervisor = %tree, reason = %text("reason"), "supervisor gave up");
        }
    });
}

/// Runs a node until Ctrl-C or SIGTERM, then stops it in reverse start
/// order. Prints `listening on http://ADDR` on stdout once it serves.
///
/// A node that loses its lease in the shared store (its agents already
/// stopped) stops and starts again as a new generation, on the same HTTP
/// and cluster addresses, trying every second while it cannot (the store
/// still unreachable); one whose stop does not end within 15 s exits
/// with an error instead.
pub async fn run(mut config: NodeConfig) -> Result<(), NodeError> {
    let node = Node::start(config.clone()).await?;
    println!("listening on http://{}", node.addr());
    config.http = node.addr();
    config.cluster_listen = node.listen;
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut node = Some(node);
    loop {
        let Some(running) = node.take() else {
            // Between incarnations: start again, unless told to stop.
            tokio::select! {
                () = &mut signal => return Ok(()),
                () = tokio::time::sleep(REJOIN_EVERY) => {}
            }
            match Node::start(config.clone()).await {
                Ok(started) => {
                    tracing::info!("rejoined as a new generation");
                    node = Some(started);
                }
                Err(error) => tracing::warn!(%error, "rejoin: the node cannot start yet"),
            }
            continue;
        };
        tokio::select! {
            () = &mut signal => {
                tracing::info!("shutting down");
                return running.stop().await;
            }
            why = running.lease_lost() => {
                tracing::error!(reason = %why, "lease lost: stopping, to start again as a new generation");
                match tokio::time::timeout(REJOIN_STOP_WAIT, running.stop()).await {
                    Ok(_) => {}
                    Err(_) => {
                        return Err(NodeError::Cluster(format!(
                            "lease lost ({why}) and the node did not stop within {REJOIN_STOP_WAIT:?}"
                        )));
                    }
                }
            }
        }
    }
}

/// How often a node that lost its lease tries to start again.
const REJOIN_EVERY: Duration = Duration::from_secs(1);
/// How long a node that lost its lease may take to stop before it exits.
const REJOIN_STOP_WAIT: Duration = Duration::from_secs(15);

/// Resolves on Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agents' threads run [`AGENT_NICE`] below the thread that made
    /// the runtime (`/health` under load waited on busy agent threads at
    /// equal priority).
    #[cfg(target_os = "linux")]
    #[test]
    fn agent_threads_run_at_a_lower_priority() {
        let nice = || rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        let ours = nice().expect("our nice value");
        let agents = AgentRuntime::new().expect("the agents' runtime");
        let handle = agents.handle().expect("a runtime").clone();
        let theirs = handle
            .block_on(async move { tokio::spawn(async move { nice() }).await })
            .expect("the task ran")
            .expect("its nice value");
        // A task spawned from `block_on` runs on a worker thread.
        assert_eq!(theirs, (ours + AGENT_NICE).min(19));
    }
}

/// Where the node keeps its agents: SQLite in the data directory, or the
/// PostgreSQL store the event store is on (`[store] url`, `--store`), so
/// that nodes sharing a store share their agent table.
#[derive(Debug, Clone)]
enum NodeAgentStore {
    Sqlite(SqliteAgentStore),
    Postgres(PostgresAgentStore),
}

impl NodeAgentStore {
    async fn open(config: &NodeConfig) -> Result<Self, NodeError> {
        Ok(match &config.store {
            Some(postgres) => NodeAgentStore::Postgres(
                PostgresAgentStore::open(postgres.clone())
                    .await
                    .map_err(NodeError::AgentStore)?,
            ),
            None => NodeAgentStore::Sqlite(
                SqliteAgentStore::open(SqliteAgentStoreConfig::new(&config.data_dir))
                    .await
                    .map_err(NodeError::AgentStore)?,
            ),
        })
    }

    /// The fenced view for member `node` of a shared (PostgreSQL) store.
    fn fenced(
        &self,
        node: &str,
        generation: impl Fn() -> u64 + Send + Sync + 'static,
    ) -> Option<mabeam_foundation_services::FencedAgentStore> {
        match self {
            NodeAgentStore::Sqlite(_) => None,
            NodeAgentStore::Postgres(store) => Some(store.fenced(node, generation)),
        }
    }

    fn shared(&self) -> Arc<dyn mabeam_supervision_core::AgentStore> {
        match self {
            NodeAgentStore::Sqlite(store) => Arc::new(store.clone()),
            NodeAgentStore::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Commits its queued writes and closes it.
    async fn stop(&self) {
        match self {
            NodeAgentStore::Sqlite(store) => store.stop().await,
            NodeAgentStore::Postgres(store) => store.stop().await,
        }
    }
}
