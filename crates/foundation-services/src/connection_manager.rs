//! [`ConnectionManager`]: the node's view of the cluster, the seed's
//! "network topology, node management": which other nodes this one is
//! connected to, since when, and a notice when one comes up or goes down
//! (Erlang's `net_kernel` with `monitor_nodes`).
//!
//! # Concepts
//!
//! - A **node** has a name (`name@host` style: 1-255 ASCII letters,
//!   digits, `_ . @ -`) and a **cookie**, a secret shared by the nodes of
//!   one cluster. Two nodes connect only if both prove they know the
//!   cookie with an HMAC-SHA256 keyed by it, so the cookie never crosses
//!   the wire. The dialer proves itself first, over a fresh nonce the
//!   listener committed to; the listener proves itself only to a dialer
//!   that did: a stranger who connects learns nothing to test cookie
//!   guesses against. Each proof binds both nonces and both names. A
//!   wrong cookie, the same node name or another protocol version is
//!   refused with a typed error ([`ConnectionError`]), and neither side
//!   records the connection. At most
//!   [`max_handshakes`](ConnectionManagerBuilder::max_handshakes)
//!   handshakes run at once (each bounded by the handshake timeout): a
//!   connection past them is closed at once.
//! - Each [`start`](ConnectionManager::start) is a new **incarnation** of
//!   the node, with a **generation** (its start time in ms, then random
//!   bits) sent in the handshake. A node that restarts while its old
//!   connection is silent but still open is let in within a tick
//!   interval (at most 1 s): the old connection is pinged and, having no
//!   answer, the newer generation replaces it (a down notice for the old
//!   incarnation, an up notice for the new), instead of being refused
//!   until the stale one times out. If the old connection answers, the
//!   name is taken by a live node: the newcomer is refused with that
//!   reason and the live node keeps its connection.
//! - [`start`](ConnectionManager::start) listens (TCP) and dials the
//!   configured **seeds**, redialling each with the
//!   [`Backoff`] while it is down; [`connect`](ConnectionManager::connect)
//!   dials one address now and answers the node's name;
//!   [`disconnect`](ConnectionManager::disconnect) closes.
//! - A connection is **alive** while frames arrive: both sides send a tick
//!   every `tick` interval; a side that hears nothing for `misses` ticks
//!   declares the other down (Erlang's `net_ticktime`), so a cut cable or
//!   a frozen peer is noticed, not only a closed socket.
//! - [`subscribe`](ConnectionManager::subscribe) receives every
//!   [`NodeEvent`] (up, down with its reason) in order; a receiver that
//!   falls more than 1,024 events behind is told so by the channel
//!   (`Lagged`), never silently skipped. [`nodes`](ConnectionManager::nodes)
//!   lists the nodes up now.
//! - At most one connection per pair of nodes: when two nodes dial each
//!   other at once, both keep the connection dialled by the node whose name
//!   sorts first and close the other, with no down notice. A side that had
//!   already taken the losing connection as the live one is told it was
//!   replaced, and waits (up to the handshake timeout) for the winning one
//!   instead of calling the node down: the node never flaps.
//!
//! - Calls to agents on other nodes: the manager implements
//!   supervision-core's `RemoteDelivery` (ask or tell an agent on a named
//!   node, with the envelope's deadline), and
//!   [`serve`](ConnectionManager::serve) answers the other nodes' calls
//!   from a directory. A connection that ends fails its waiting calls at
//!   once with `DirectoryError::NodeDown`.
//! - After the handshake every frame is sealed by a Noise session keyed
//!   from the cookie (see the wire's docs): authenticated and encrypted;
//!   each side announces the largest frame it reads
//!   ([`max_frame`](ConnectionManagerBuilder::max_frame)).
//!
//! Which node owns an agent, and membership with failure detection, are
//! not decided here: see the `cluster` module.
//!
//! # The service
//!
//! [`service`](ConnectionManager::service) is a supervised actor whose
//! start is [`start`](ConnectionManager::start) and whose stop is
//! [`stop`](ConnectionManager::stop): a restart binds the listener again
//! and redials the seeds; every connection closes with it.
//!
//! # Telemetry
//!
//! | name                          | metadata |
//! |-------------------------------|----------|
//! | `connection_manager.node.up`  | `node`, `peer`, `direction` |
//! | `connection_manager.node.down`| `node`, `peer`, `reason` |
//!
//! # Example
//!
//! ```
//! use mabeam_foundation_services::{ConnectionManager, NodeEvent};
//!
//! # #[tokio::main] async fn main() {
//! let a = ConnectionManager::builder("a@local", "cookie").build().unwrap();
//! let b = ConnectionManager::builder("b@local", "cookie").build().unwrap();
//! a.start().await.unwrap();
//! let b_addr = b.start().await.unwrap();
//! let mut b_events = b.subscribe();
//!
//! assert_eq!(&*a.connect(b_addr).await.unwrap(), "b@local");
//! assert!(matches!(b_events.recv().await.unwrap(), NodeEvent::Up(info) if &*info.node == "a@local"));
//!
//! a.stop().await;
//! assert!(matches!(b_events.recv().await.unwrap(), NodeEvent::Down { node, .. } if &*node == "a@local"));
//! b.stop().await;
//! # }
//! ```

mod connection;
mod delivery;
mod error;
mod noise;
mod service;
mod wire;

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use error::ConnectionError;
use mabeam_supervision_core::{AgentDirectory, Backoff, Clock, MetaValue, ServiceDef, Telemetry};
use parking_lot::{Mutex, RwLock};
use tokio::{
    net::TcpListener,
    sync::{Notify, Semaphore, broadcast, mpsc},
    task::JoinSet,
};

/// `connection_manager.node.up`: a node connected.
pub const NODE_UP: &[&str] = &["connection_manager", "node", "up"];
/// `connection_manager.node.down`: a node's connection ended.
pub const NODE_DOWN: &[&str] = &["connection_manager", "node", "down"];

/// How many events a subscriber may fall behind before it is told.
const EVENT_BUFFER: usize = 1024;

/// Who dialled a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// This node dialled.
    Outgoing,
    /// The other node dialled.
    Incoming,
}

impl Direction {
    /// `outgoing` or `incoming`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outgoing => "outgoing",
            Direction::Incoming => "incoming",
        }
    }
}

/// A node this one is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name.
    pub node: Arc<str>,
    /// Its address (the one dialled, or the one it dialled from).
    pub addr: SocketAddr,
    /// Who dialled.
    pub direction: Direction,
    /// Wall-clock milliseconds since the Unix epoch when it came up.
    pub up_since_unix_ms: u64,
}

/// A change in the cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node connected.
    Up(NodeInfo),
    /// A node's connection ended.
    Down {
        /// The node.
        node: Arc<str>,
        /// Why: closed by the peer (with its reason), no tick, disconnected
        /// on request, a network or protocol error, the manager stopping.
        reason: String,
    },
}

/// Builds a [`ConnectionManager`]: see [`ConnectionManager::builder`].
#[derive(Debug)]
pub struct ConnectionManagerBuilder {
    node: String,
    cookie: Vec<u8>,
    listen: SocketAddr,
    seeds: Vec<SocketAddr>,
    tick: Duration,
    misses: u32,
    handshake_timeout: Duration,
    max_handshakes: usize,
    max_frame: usize,
    reconnect: Backoff,
    clock: Clock,
    telemetry: Telemetry,
}

impl ConnectionManagerBuilder {
    /// The largest frame (JSON bytes) this node reads from a peer (default
    /// and most 65,518, at least 1,024); announced in the handshake, so
    /// peers send nothing larger. A larger frame received closes the
    /// connection.
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// How many incoming handshakes may run at once (default 64, at least
    /// 1); a connection past them is closed at once.
    pub fn max_handshakes(mut self, max: usize) -> Self {
        self.max_handshakes = max;
        self
    }

    /// The address to listen on (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Nodes to dial at start, and to redial while they are down.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// How often each side sends a tick (default 1 s).
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// How many tick intervals without a frame make a node down (default
    /// 4, at least 2).
    pub fn misses(mut self, misses: u32) -> Self {
        self.misses = misses;
        self
    }

    /// The bound on a handshake (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The delays between redials of a seed that is down (default 100 ms
    /// doubling up to 10 s).
    pub fn reconnect(mut self, backoff: Backoff) -> Self {
        self.reconnect = backoff;
        self
    }

    /// The clock for ticks, timeouts and timestamps (default the system's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Where node events are emitted.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The manager, not started; a bad setting is named.
    pub fn build(self) -> Result<ConnectionManager, ConnectionError> {
        let node = valid_node_name(&self.node)?;
        let invalid = |setting, rule| Err(ConnectionError::InvalidSetting { setting, rule });
        if self.cookie.is_empty() {
            return invalid("cookie", "not empty");
        }
        if self.tick.is_zero() {
            return invalid("tick", "more than zero");
        }
        if self.misses < 2 {
            return invalid("misses", "at least 2");
        }
        if self.handshake_timeout.is_zero() {
            return invalid("handshake_timeout", "more than zero");
        }
        if self.max_handshakes == 0 {
            return invalid("max_handshakes", "at least 1");
        }
        if self.max_frame < connection::MIN_FRAME_LIMIT as usize
            || self.max_frame > noise::MAX_SEALED_FRAME
        {
            return invalid("max_frame", "1024 to 65518 bytes");
        }
        if self.reconnect.validate().is_err() {
            return invalid("reconnect", "a valid backoff (min <= max, factor >= 1)");
        }
        Ok(ConnectionManager {
            inner: Arc::new(Inner {
                node,
                cookie: self.cookie.into(),
                listen: self.listen,
                seeds: self.seeds,
                tick: self.tick,
                misses: self.misses,
                handshake_timeout: self.handshake_timeout,
                handshakes: Arc::new(Semaphore::new(self.max_handshakes)),
                max_frame: self.max_frame,
                generation: AtomicU64::new(0),
                reconnect: self.reconnect,
                clock: self.clock,
                telemetry: self.telemetry,
                peers: Mutex::new(HashMap::new()),
                events: broadcast::channel(EVENT_BUFFER).0,
                next_conn: AtomicU64::new(0),
                running: Mutex::new(None),
                directory: RwLock::new(None),
                pending: Mutex::new(HashMap::new()),
                next_call: AtomicU64::new(0),
            }),
        })
    }
}

/// The node's connections to the other nodes of its cluster: a cheap,
/// cloneable handle, every clone the same manager. See the
/// [module docs](self).
#[derive(Clone)]
pub struct ConnectionManager {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    node: Arc<str>,
    cookie: Arc<[u8]>,
    listen: SocketAddr,
    seeds: Vec<SocketAddr>,
    tick: Duration,
    misses: u32,
    handshake_timeout: Duration,
    /// One permit per incoming handshake running.
    handshakes: Arc<Semaphore>,
    /// The largest sealed frame this node reads.
    max_frame: usize,
    /// This incarnation's generation (set by each start).
    generation: AtomicU64,
    reconnect: Backoff,
    clock: Clock,
    telemetry: Telemetry,
    peers: Mutex<HashMap<Arc<str>, Peer>>,
    events: broadcast::Sender<NodeEvent>,
    next_conn: AtomicU64,
    /// The listener's address and every task of the running incarnation.
    running: Mutex<Option<Running>>,
    /// Answers the calls of other nodes (see `serve`).
    directory: RwLock<Option<Arc<dyn AgentDirectory>>>,
    /// Calls sent, waiting for their answers, by id.
    pending: Mutex<HashMap<u64, delivery::Pending>>,
    next_call: AtomicU64,
}

/// The live connection to one node.
struct Peer {
    /// Tells a replaced connection's end from the live one's.
    conn: u64,
    info: NodeInfo,
    /// The node that dialled this connection.
    initiator: Arc<str>,
    /// The peer's incarnation.
    generation: u64,
    /// Asks the connection to close.
    close: Arc<Closer>,
    /// Frames (calls, answers) for the connection's task to send.
    outbox: mpsc::Sender<wire::Frame>,
}

/// How a live connection is asked to close: on request (a goodbye), or
/// because another connection to the same node replaced it (the peer is
/// told so, and waits for that one).
#[derive(Default)]
struct Closer {
    notify: Notify,
    /// A `Pong` arrived on the connection (see `Inner::answers_ping`).
    pong: Notify,
    replaced: std::sync::atomic::AtomicBool,
    superseded: std::sync::atomic::AtomicBool,
}

impl Closer {
    fn close(&self) {
        self.notify.notify_one();
    }

    fn replace(&self) {
        self.replaced.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn was_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    /// A newer incarnation of the peer connected: this connection is stale.
    fn supersede(&self) {
        self.superseded.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    fn was_superseded(&self) -> bool {
        self.superseded.load(Ordering::Acquire)
    }
}

struct Running {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl ConnectionManager {
    /// A manager for the node `node`, in the cluster whose secret is
    /// `cookie`.
    pub fn builder(node: impl Into<String>, cookie: impl AsRef<[u8]>) -> ConnectionManagerBuilder {
        ConnectionManagerBuilder {
            node: node.into(),
            cookie: cookie.as_ref().to_vec(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seeds: Vec::new(),
            tick: Duration::from_secs(1),
            misses: 4,
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 64,
            max_frame: noise::MAX_SEALED_FRAME,
            reconnect: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
            clock: Clock::system(),
            telemetry: Telemetry::disabled(),
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The generation of the running incarnation, sent in each handshake
    /// (0 before the first start); the cluster membership announces the
    /// same one.
    pub fn generation(&self) -> u64 {
        self.inner.generation()
    }

    /// Listens and dials the seeds; answers the address it listens on.
    /// [`AlreadyRunning`](ConnectionError::AlreadyRunning) if started.
    pub async fn start(&self) -> Result<SocketAddr, ConnectionError> {
        let listener = TcpListener::bind(self.inner.listen)
            .await
            .map_err(|e| ConnectionError::io(format!("binding {}", self.inner.listen), &e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ConnectionError::io("reading the listener's address", &e))?;
        let mut running = self.inner.running.lock();
        if running.is_some() {
            return Err(ConnectionError::AlreadyRunning);
        }
        // A new incarnation: later than the last one's (its start time),
        // random below the millisecond.
        let generation = (self.inner.clock.unix_millis() << 16) | u64::from(rand::random::<u16>());
        self.inner.generation.store(generation, Ordering::Relaxed);
        let mut tasks = JoinSet::new();
        tasks.spawn(connection::accept_loop(self.inner.clone(), listener));
        for &seed in &self.inner.seeds {
            tasks.spawn(connection::seed_loop(self.inner.clone(), seed));
        }
        *running = Some(Running { addr, tasks });
        Ok(addr)
    }

    /// Says goodbye to every node, waits for the connections to close (up
    /// to the handshake timeout), and stops listening. Each node gets a
    /// down notice.
    pub async fn stop(&self) {
        let Some(mut running) = self.inner.running.lock().take() else {
            return;
        };
        for peer in self.inner.peers.lock().values() {
            peer.close.close();
        }
        let closing = async {
            // The accept and seed loops never end by themselves: stop them
            // once every connection is gone.
            while !self.inner.peers.lock().is_empty() {
                if running.tasks.join_next().await.is_none() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(self.inner.handshake_timeout, closing).await;
        running.tasks.shutdown().await;
        self.inner.drop_all_peers("the connection manager stopped");
    }

    /// Stops at once, without goodbyes (the service's actor was killed).
    pub(crate) fn abort(&self) {
        if let Some(running) = self.inner.running.lock().take() {
            drop(running.tasks);
        }
        self.inner
            .drop_all_peers("the connection manager was killed");
    }

    /// The address it listens on, while running.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.running.lock().as_ref().map(|r| r.addr)
    }

    /// Dials `addr`, proves the cookie, and answers the node's name once
    /// connected (at once if that node is already connected).
    pub async fn connect(&self, addr: SocketAddr) -> Result<Arc<str>, ConnectionError> {
        connection::connect(&self.inner, addr).await
    }

    /// Closes the connection to `node` (it gets a goodbye; a down notice
    /// follows).
    pub fn disconnect(&self, node: &str) -> Result<(), ConnectionError> {
        let peers = self.inner.peers.lock();
        let peer = peers
            .get(node)
            .ok_or_else(|| ConnectionError::NotConnected(node.into()))?;
        peer.close.close();
        Ok(())
    }

    /// The nodes connected now, by name.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let mut nodes: Vec<NodeInfo> = self
            .inner
            .peers
            .lock()
            .values()
            .map(|p| p.info.clone())
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        nodes
    }

    /// Whether `node` is connected now.
    pub fn is_connected(&self, node: &str) -> bool {
        self.inner.peers.lock().contains_key(node)
    }

    /// Every node event from now on, in order.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.inner.events.subscribe()
    }

    /// The supervised service: an actor that starts the manager and stops
    /// it (see the [module docs](self)).
    pub fn service(&self) -> ServiceDef {
        service::service_def(self.clone())
    }
}

impl fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("node", &self.inner.node)
            .field("listening", &self.local_addr())
            .field("nodes", &self.inner.peers.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Inner {
    fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Spawns a task of the running incarnation; `false` if not running.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> bool {
        let mut running = self.running.lock();
        let Some(running) = running.as_mut() else {
            return false;
        };
        // Reap the finished ones, so a long-lived node keeps no results.
        while running.tasks.try_join_next().is_some() {}
        running.tasks.spawn(task);
        true
    }

    /// The live connection to `node` if it is of an older incarnation
    /// than `generation`: its outbox and closer.
    fn older_peer(
        &self,
        node: &str,
        generation: u64,
    ) -> Option<(mpsc::Sender<wire::Frame>, Arc<Closer>)> {
        self.peers
            .lock()
            .get(node)
            .filter(|peer| peer.generation < generation)
            .map(|peer| (peer.outbox.clone(), peer.close.clone()))
    }

    /// Whether the connection behind `outbox` and `close` answers a ping
    /// within a tick interval (at least 200 ms, at most 1 s): a live
    /// peer does, a frozen or vanished one does not. Real time, not the
    /// injected clock: it bounds a wait on the network.
    async fn answers_ping(&self, outbox: mpsc::Sender<wire::Frame>, close: &Closer) -> bool {
        let wait = self
            .tick
            .clamp(Duration::from_millis(200), Duration::from_secs(1));
        let pong = close.pong.notified();
        tokio::pin!(pong);
        // Registered before the ping leaves, so its pong is not missed.
        pong.as_mut().enable();
        tokio::time::timeout(wait, async {
            if outbox.send(wire::Frame::Ping).await.is_err() {
                // The connection ended: nobody is there.
                return false;
            }
            pong.await;
            true
        })
        .await
        .unwrap_or(false)
    }

    /// This incarnation's generation.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Records a connection that finished its handshake with the
    /// incarnation `generation` of its node. `None` if another connection
    /// to the same node wins (see the module docs): the caller closes this
    /// one. A newer incarnation wins over a live connection to an older
    /// one at once: the old one is down, the new one up.
    fn register(
        &self,
        conn: u64,
        info: NodeInfo,
        initiator: Arc<str>,
        generation: u64,
        outbox: mpsc::Sender<wire::Frame>,
    ) -> Option<Arc<Closer>> {
        let close = Arc::new(Closer::default());
        let (was_up, restarted) = {
            let mut peers = self.peers.lock();
            let existing = peers.get(&info.node);
            let mut restarted = false;
            if let Some(existing) = existing {
                if generation > existing.generation {
                    existing.close.supersede();
                    restarted = true;
                } else if generation < existing.generation || existing.initiator <= initiator {
                    return None;
                } else {
                    existing.close.replace();
                }
            }
            let was_up = existing.is_some() && !restarted;
            peers.insert(
                info.node.clone(),
                Peer {
                    conn,
                    info: info.clone(),
                    initiator,
                    generation,
                    close: close.clone(),
                    outbox,
                },
            );
            (was_up, restarted)
        };
        if restarted {
            self.node_down(
                info.node.clone(),
                "restarted: a newer incarnation connected".to_owned(),
            );
        }
        if !was_up {
            self.telemetry.emit(
                NODE_UP,
                &[],
                &[
                    ("node", MetaValue::Str(&self.node)),
                    ("peer", MetaValue::Str(&info.node)),
                    ("direction", MetaValue::Str(info.direction.as_str())),
                ],
            );
            let _ = self.events.send(NodeEvent::Up(info));
        }
        Some(close)
    }

    /// Forgets a connection that ended, if it is still the live one, and
    /// tells the subscribers.
    fn unregister(&self, node: &Arc<str>, conn: u64, reason: String) {
        let removed = {
            let mut peers = self.peers.lock();
            match peers.get(node) {
                Some(peer) if peer.conn == conn => peers.remove(node).is_some(),
                _ => false,
            }
        };
        if removed {
            self.fail_calls(node, &reason);
            self.node_down(node.clone(), reason);
        }
    }

    fn drop_all_peers(&self, reason: &str) {
        let gone: Vec<Arc<str>> = self.peers.lock().drain().map(|(node, _)| node).collect();
        for node in gone {
            self.fail_calls(&node, reason);
            self.node_down(node, reason.to_owned());
        }
    }

    fn node_down(&self, node: Arc<str>, reason: String) {
        self.telemetry.emit(
            NODE_DOWN,
            &[],
            &[
                ("node", MetaValue::Str(&self.node)),
                ("peer", MetaValue::Str(&node)),
                ("reason", MetaValue::Str(&reason)),
            ],
        );
        let _ = self.events.send(NodeEvent::Down { node, reason });
    }
}

/// Checks a node name (see the module docs).
fn valid_node_name(name: &str) -> Result<Arc<str>, ConnectionError> {
    let valid = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
    if valid {
        Ok(name.into())
    } else {
        Err(ConnectionError::InvalidNodeName(name.to_owned()))
    }
}
