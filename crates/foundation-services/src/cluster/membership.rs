//! [`ClusterMembership`]: supervision-core's `Membership` on chitchat.

use std::{
    collections::{BTreeMap, HashSet},
    fmt,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use chitchat::{
    ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState, ProtocolVersion,
    spawn_chitchat, transport::UdpTransport,
};
use hmac::{Hmac, Mac};
use mabeam_supervision_core::{
    Clock, MetaValue, Telemetry,
    cluster::{Member, MemberState, Membership, MembershipEvent, MembershipEvents},
};
use parking_lot::Mutex;
use sha2::Sha256;
use tokio::{sync::broadcast, task::JoinHandle};

use super::ClusterError;

/// `cluster.member.state`: a member entered a state (metadata `node`,
/// `member`, `state`; measurement `generation`).
pub const MEMBER_STATE: &[&str] = &["cluster", "member", "state"];

const KEY_STATE: &str = "state";
const KEY_ADDR: &str = "addr";
const TAG_PREFIX: &str = "tag:";
const EVENT_BUFFER: usize = 1024;

/// Builds a [`ClusterMembership`]: see [`ClusterMembership::builder`].
#[derive(Debug)]
pub struct ClusterMembershipBuilder {
    node: String,
    cookie: Vec<u8>,
    gossip: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    generation: Option<u64>,
    gossip_interval: Duration,
    phi_threshold: f64,
    node_addr: Option<SocketAddr>,
    tags: Vec<(String, String)>,
    clock: Clock,
    telemetry: Telemetry,
}

impl ClusterMembershipBuilder {
    /// The UDP address to gossip on (default `127.0.0.1:0`: a free port,
    /// chosen at start).
    pub fn gossip(mut self, addr: SocketAddr) -> Self {
        self.gossip = addr;
        self
    }

    /// The gossip address the others reach this node at, when it is not
    /// the one it binds (behind a proxy or a NAT); default: the bound one.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Gossip addresses of nodes to join through.
    pub fn seeds(mut self, seeds: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.seeds = seeds.into_iter().collect();
        self
    }

    /// This incarnation's generation (default: the start time in ms, then
    /// 16 random bits, as the connection manager's).
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = Some(generation);
        self
    }

    /// How often the node gossips (default 100 ms).
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// The phi above which a peer is down (default 12: about 12 mean
    /// heartbeat intervals of silence).
    pub fn phi_threshold(mut self, phi: f64) -> Self {
        self.phi_threshold = phi;
        self
    }

    /// The address of this node's connection listener, announced to the
    /// others (where agents' calls go).
    pub fn node_addr(mut self, addr: SocketAddr) -> Self {
        self.node_addr = Some(addr);
        self
    }

    /// A fact to announce (its HTTP address, say).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// The clock for generations (default the system's).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Where member changes are emitted.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// The membership, not started; a bad setting is named.
    pub fn build(self) -> Result<ClusterMembership, ClusterError> {
        let invalid = |setting, rule| Err(ClusterError::InvalidSetting { setting, rule });
        let node_ok = !self.node.is_empty()
            && self.node.len() <= 255
            && self
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
        if !node_ok {
            return invalid("node", "1-255 ASCII letters, digits, '_', '.', '@' or '-'");
        }
        if self.cookie.is_empty() {
            return invalid("cookie", "not empty");
        }
        if self.gossip_interval < Duration::from_millis(10)
            || self.gossip_interval > Duration::from_secs(10)
        {
            return invalid("gossip_interval", "10 ms to 10 s");
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold >= 2.0) {
            return invalid("phi_threshold", "a number of at least 2");
        }
        let generation = self
            .generation
            .unwrap_or_else(|| (self.clock.unix_millis() << 16) | u64::from(rand::random::<u16>()));
        Ok(ClusterMembership {
            inner: Arc::new(Inner {
                node: self.node.into(),
                generation,
                cluster_id: cluster_id(&self.cookie),
                gossip: self.gossip,
                advertise: self.advertise,
                seeds: self.seeds,
                gossip_interval: self.gossip_interval,
                phi_threshold: self.phi_threshold,
                node_addr: self.node_addr,
                tags: self.tags,
                telemetry: self.telemetry,
                view: Mutex::new(BTreeMap::new()),
                events: broadcast::channel(EVENT_BUFFER).0,
                running: Mutex::new(None),
            }),
        })
    }
}

/// This node's membership of its cluster, on chitchat: a cheap, cloneable
/// handle. See the [module docs](super).
///
/// ```
/// use std::time::Duration;
/// use mabeam_foundation_services::cluster::ClusterMembership;
/// use mabeam_supervision_core::cluster::{MemberState, Membership};
///
/// # #[tokio::main] async fn main() {
/// let a = ClusterMembership::builder("a@local", "cookie").build().unwrap();
/// let a_gossip = a.start().await.unwrap();
/// let b = ClusterMembership::builder("b@local", "cookie")
///     .seeds([a_gossip])
///     .build()
///     .unwrap();
/// let mut events = a.subscribe();
/// b.start().await.unwrap();
/// b.set_state(MemberState::Up).await.unwrap();
/// // a learns of b, then sees it up.
/// tokio::time::timeout(Duration::from_secs(10), async {
///     while let Ok(event) = events.recv().await {
///         if &*event.member.node == "b@local" && event.member.state == MemberState::Up {
///             break;
///         }
///     }
/// })
/// .await
/// .unwrap();
/// b.stop().await;
/// a.stop().await;
/// # }
/// ```
#[derive(Clone)]
pub struct ClusterMembership {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<str>,
    generation: u64,
    cluster_id: String,
    gossip: SocketAddr,
    advertise: Option<SocketAddr>,
    seeds: Vec<SocketAddr>,
    gossip_interval: Duration,
    phi_threshold: f64,
    node_addr: Option<SocketAddr>,
    tags: Vec<(String, String)>,
    telemetry: Telemetry,
    /// The last known incarnation of each node, by name.
    view: Mutex<BTreeMap<Arc<str>, Member>>,
    events: broadcast::Sender<MembershipEvent>,
    running: Mutex<Option<Running>>,
}

struct Running {
    handle: Arc<ChitchatHandle>,
    gossip: SocketAddr,
    watcher: JoinHandle<()>,
}

impl ClusterMembership {
    /// A membership for the node `node`, in the cluster whose secret is
    /// `cookie`.
    pub fn builder(node: impl Into<String>, cookie: impl AsRef<[u8]>) -> ClusterMembershipBuilder {
        ClusterMembershipBuilder {
            node: node.into(),
            cookie: cookie.as_ref().to_vec(),
            gossip: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            seeds: Vec::new(),
            generation: None,
            gossip_interval: Duration::from_millis(100),
            phi_threshold: 12.0,
            node_addr: None,
            tags: Vec::new(),
            clock: Clock::system(),
            telemetry: Telemetry::disabled(),
        }
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// This incarnation's generation.
    pub fn generation(&self) -> u64 {
        self.inner.generation
    }

    /// The gossip address, while running.
    pub fn gossip_addr(&self) -> Option<SocketAddr> {
        self.inner.running.lock().as_ref().map(|r| r.gossip)
    }

    /// Starts gossiping as a `joining` member; answers the gossip address.
    pub async fn start(&self) -> Result<SocketAddr, ClusterError> {
        if self.inner.running.lock().is_some() {
            return Err(ClusterError::AlreadyRunning);
        }
        let gossip = resolve(self.inner.gossip)?;
        let advertised = self.inner.advertise.unwrap_or(gossip);
        let id = ChitchatId::new(self.inner.node.clone(), self.inner.generation, advertised);
        let failure_detector_config = FailureDetectorConfig {
            phi_threshold: self.inner.phi_threshold,
            sampling_window_size: 1_000,
            max_interval: Duration::from_secs(2),
            initial_interval: self.inner.gossip_interval,
            dead_node_grace_period: Duration::from_secs(3600),
        };
        let config = ChitchatConfig {
            chitchat_id: id,
            cluster_id: self.inner.cluster_id.clone(),
            gossip_interval: self.inner.gossip_interval,
            listen_addr: gossip,
            seed_nodes: self.inner.seeds.iter().map(|s| s.to_string()).collect(),
            failure_detector_config,
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let mut keys = vec![(KEY_STATE.to_owned(), MemberState::Joining.to_string())];
        if let Some(addr) = self.inner.node_addr {
            keys.push((KEY_ADDR.to_owned(), addr.to_string()));
        }
        for (k, v) in &self.inner.tags {
            keys.push((format!("{TAG_PREFIX}{k}"), v.clone()));
        }
        let handle = spawn_chitchat(config, keys, &UdpTransport)
            .await
            .map_err(|e| ClusterError::Gossip {
                addr: gossip.to_string(),
                detail: e.to_string(),
            })?;
        let handle = Arc::new(handle);
        let mut live = handle.chitchat().lock().await.live_nodes_watcher();
        let inner = self.inner.clone();
        let watcher = tokio::spawn(async move {
            loop {
                let snapshot = live.borrow_and_update().clone();
                inner.reconcile(&snapshot);
                if live.changed().await.is_err() {
                    return;
                }
            }
        });
        let mut running = self.inner.running.lock();
        if running.is_some() {
            watcher.abort();
            handle.abort();
            return Err(ClusterError::AlreadyRunning);
        }
        *running = Some(Running {
            handle,
            gossip,
            watcher,
        });
        Ok(gossip)
    }

    /// Announces this member's state (`up` once the node takes agents,
    /// `leaving` before it stops).
    pub async fn set_state(&self, state: MemberState) -> Result<(), ClusterError> {
        let handle = self.handle().ok_or(ClusterError::NotRunning)?;
        handle
            .with_chitchat(|c| c.self_node_state().set(KEY_STATE, state.as_str()))
            .await;
        Ok(())
    }

    /// Leaves the cluster in order: announces `leaving`, lets it spread
    /// for a few gossip rounds, then stops.
    pub async fn leave(&self) {
        if self.set_state(MemberState::Leaving).await.is_ok() {
            tokio::time::sleep(self.inner.gossip_interval * 3).await;
        }
        self.stop().await;
    }

    /// Stops gossiping (the others see this member down once their
    /// detectors time out) and marks this member down here.
    pub async fn stop(&self) {
        let Some(running) = self.inner.running.lock().take() else {
            return;
        };
        running.watcher.abort();
        let _ = running.handle.initiate_shutdown();
        let _ = running.handle.termination_watcher().await;
        self.inner.all_down();
    }

    /// Stops gossiping at once, as a crash would: no `leaving`, no
    /// goodbye (tests play crashes with it).
    pub fn kill(&self) {
        if let Some(running) = self.inner.running.lock().take() {
            running.watcher.abort();
            running.handle.abort();
            self.inner.all_down();
        }
    }

    fn handle(&self) -> Option<Arc<ChitchatHandle>> {
        self.inner.running.lock().as_ref().map(|r| r.handle.clone())
    }
}

impl Membership for ClusterMembership {
    fn local(&self) -> Member {
        self.inner
            .view
            .lock()
            .get(&self.inner.node)
            .filter(|m| m.generation == self.inner.generation)
            .cloned()
            .unwrap_or_else(|| Member {
                node: self.inner.node.clone(),
                generation: self.inner.generation,
                state: if self.inner.running.lock().is_some() {
                    MemberState::Joining
                } else {
                    MemberState::Down
                },
                addr: self.inner.node_addr,
                tags: self.inner.tags.clone(),
            })
    }

    fn members(&self) -> Vec<Member> {
        self.inner.view.lock().values().cloned().collect()
    }

    fn subscribe(&self) -> MembershipEvents {
        self.inner.events.subscribe()
    }
}

impl fmt::Debug for ClusterMembership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterMembership")
            .field("node", &self.inner.node)
            .field("generation", &self.inner.generation)
            .field("gossip", &self.gossip_addr())
            .field("members", &self.inner.view.lock().len())
            .finish()
    }
}

impl Inner {
    /// Brings the view in line with chitchat's live nodes, and tells the
    /// subscribers each change. `down` is final for a generation: a
    /// generation seen down is not taken back (it must restart, as Akka
    /// requires of a downed node), and an older generation's late gossip
    /// is ignored once a newer one is known. A name has one live
    /// generation: while the generation the view holds is still live, a
    /// newer one under the same name is a twin taking a live node's name
    /// and is not let in; a restart's newer generation takes over once
    /// the old one is no longer live (down within 2 s of a crash).
    fn reconcile(&self, live: &BTreeMap<ChitchatId, NodeState>) {
        let mut changes = Vec::new();
        {
            let mut view = self.view.lock();
            let mut seen = HashSet::new();
            let held_live: HashSet<(Arc<str>, u64)> = live
                .keys()
                .filter_map(|id| {
                    let known = view.get(&*id.node_id)?;
                    (known.generation == id.generation_id && known.state != MemberState::Down)
                        .then(|| (known.node.clone(), known.generation))
                })
                .collect();
            for (id, state) in live {
                let member = member_of(id, state);
                if held_live.iter().any(|(node, generation)| {
                    *node == member.node && *generation < member.generation
                }) {
                    continue;
                }
                if let Some(known) = view.get(&member.node) {
                    if known.generation > member.generation
                        || (known.generation == member.generation
                            && known.state == MemberState::Down)
                    {
                        continue;
                    }
                    if known.generation < member.generation && known.state != MemberState::Down {
                        let mut old = known.clone();
                        let previous = old.state;
                        old.state = MemberState::Down;
                        changes.push(MembershipEvent {
                            member: old,
                            previous: Some(previous),
                        });
                    }
                }
                seen.insert(member.node.clone());
                let previous = view
                    .get(&member.node)
                    .filter(|known| known.generation == member.generation)
                    .map(|known| known.state);
                if previous != Some(member.state) {
                    changes.push(MembershipEvent {
                        member: member.clone(),
                        previous,
                    });
                }
                view.insert(member.node.clone(), member);
            }
            for member in view.values_mut() {
                if !seen.contains(&member.node) && member.state != MemberState::Down {
                    let previous = member.state;
                    member.state = MemberState::Down;
                    changes.push(MembershipEvent {
                        member: member.clone(),
                        previous: Some(previous),
                    });
                }
            }
        }
        self.tell(changes);
    }

    /// This node stopped: every member is down as far as it knows.
    fn all_down(&self) {
        let mut changes = Vec::new();
        for member in self.view.lock().values_mut() {
            if member.state != MemberState::Down {
                let previous = member.state;
                member.state = MemberState::Down;
                changes.push(MembershipEvent {
                    member: member.clone(),
                    previous: Some(previous),
                });
            }
        }
        self.tell(changes);
    }

    fn tell(&self, changes: Vec<MembershipEvent>) {
        for change in changes {
            self.telemetry.emit(
                MEMBER_STATE,
                &[("generation", change.member.generation as f64)],
                &[
                    ("node", MetaValue::Str(&self.node)),
                    ("member", MetaValue::Str(&change.member.node)),
                    ("state", MetaValue::Str(change.member.state.as_str())),
                ],
            );
            let _ = self.events.send(change);
        }
    }
}

fn member_of(id: &ChitchatId, state: &NodeState) -> Member {
    Member {
        node: id.node_id.clone(),
        generation: id.generation_id,
        state: state
            .get(KEY_STATE)
            .and_then(MemberState::parse)
            .unwrap_or(MemberState::Joining),
        addr: state.get(KEY_ADDR).and_then(|a| a.parse().ok()),
        tags: state
            .key_values()
            .filter_map(|(k, v)| Some((k.strip_prefix(TAG_PREFIX)?.to_owned(), v.to_owned())))
            .collect(),
    }
}

/// The cluster id gossip carries: derived from the cookie, so clusters of
/// other cookies ignore each other, and the cookie is not sent.
fn cluster_id(cookie: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(cookie).expect("HMAC accepts every key length");
    mac.update(b"mabeam cluster id");
    mac.finalize().into_bytes()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A concrete gossip address: port 0 becomes a free port (chitchat
/// announces the address it is given, so it must be the real one).
fn resolve(addr: SocketAddr) -> Result<SocketAddr, ClusterError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::UdpSocket::bind(addr)
        .and_then(|socket| socket.local_addr())
        .map_err(|e| ClusterError::Gossip {
            addr: addr.to_string(),
            detail: e.to_string(),
        })
}
