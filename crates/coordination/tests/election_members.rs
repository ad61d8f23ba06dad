//! Elections with real candidates: agents of agent-supervisor's
//! `AgentRegistry`, each embedding an `ElectionMember`, campaign by
//! themselves through the `AgentDirectory`; the coordinator's `Election`
//! only observes. Time runs on tokio's paused clock.

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::Duration,
};

use common::bounded;
use futures::future::BoxFuture;
use mabeam_agent_supervisor::{
    Agent, AgentConfig, AgentContext, AgentRegistry, AgentRegistryOptions, EnvelopeError,
};
use mabeam_coordination::{
    Coordinator, Election, ElectionConfig, ElectionMember, ElectionReporter, Leadership,
    MemberHandle, MemberMemory, MemberOptions,
};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatusChanges, Clock, DirectoryError, Envelope,
    ErrorCode, ExitReason, ProcessHandle, RestartType, StartError,
};
use parking_lot::Mutex;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(600);
const OK: u8 = 0;
const CUT: u8 = 1;
const SLOW: u8 = 2;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A member's way to its peers: through the registry, or cut off (asks
/// never arrive), or slow (asks arrive after twice their timeout); asks
/// to the `blocked` peers never arrive either (a partition).
struct Link {
    inner: Arc<dyn AgentDirectory>,
    mode: Arc<AtomicU8>,
    blocked: Arc<Mutex<HashSet<AgentId>>>,
}

impl AgentDirectory for Link {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.inner.agent(id)
    }
    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.inner.info(id)
    }
    fn agents(&self) -> Vec<AgentInfo> {
        self.inner.agents()
    }
    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Value, DirectoryError>> {
        let (inner, id) = (self.inner.clone(), id.clone());
        let blocked = self.blocked.lock().contains(&id);
        match self.mode.load(Ordering::SeqCst) {
            _ if blocked => Box::pin(async move {
                tokio::time::sleep_until(envelope.deadline).await;
                Err(DirectoryError::Timeout(id))
            }),
            CUT => Box::pin(async move {
                tokio::time::sleep_until(envelope.deadline).await;
                Err(DirectoryError::Timeout(id))
            }),
            SLOW => Box::pin(async move {
                let timeout = envelope.remaining();
                tokio::time::sleep(2 * timeout).await;
                let late = Envelope::new(envelope.protocol.clone(), envelope.body.clone(), timeout);
                inner.ask(&id, late).await
            }),
            _ => inner.ask(&id, envelope),
        }
    }
    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        self.inner.cast(id, envelope)
    }
    fn subscribe(&self) -> AgentStatusChanges {
        self.inner.subscribe()
    }
}

#[derive(Clone)]
struct NodeArgs {
    id: String,
    config: ElectionConfig,
    link: Arc<dyn AgentDirectory>,
    reporter: ElectionReporter,
    first_timeout: Option<Duration>,
    handles: Arc<Mutex<HashMap<String, MemberHandle>>>,
}

/// An agent that takes part in elections by embedding a member.
struct Node {
    member: ElectionMember,
}

/// Makes a node crash.
struct Crash;

impl Agent for Node {
    type Args = NodeArgs;
    type Message = Crash;
    type Reply = ();
    type Checkpoint = MemberMemory;

    async fn on_start(args: NodeArgs, memory: Option<MemberMemory>) -> Result<Self, StartError> {
        let member = ElectionMember::start(
            args.id.as_str().into(),
            args.config,
            args.link,
            Clock::tokio(),
            MemberOptions {
                reporter: Some(args.reporter),
                memory,
                first_timeout: args.first_timeout,
                persist: None,
            },
        )
        .map_err(|err| StartError::failed(err.to_string()))?;
        args.handles.lock().insert(args.id, member.handle());
        Ok(Node { member })
    }

    async fn handle(&mut self, Crash: Crash, ctx: &mut AgentContext<'_>) {
        ctx.stop_with(ExitReason::error("crash on command"));
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        self.member
            .answer(&envelope)
            .ok_or(EnvelopeError::Unsupported)
    }

    fn checkpoint(&self) -> Option<MemberMemory> {
        Some(self.member.memory())
    }
}

struct Cluster {
    agents: AgentRegistry,
    election: Election,
    config: ElectionConfig,
    links: HashMap<String, Arc<AtomicU8>>,
    blocked: HashMap<String, Arc<Mutex<HashSet<AgentId>>>>,
    handles: Arc<Mutex<HashMap<String, MemberHandle>>>,
}

impl Cluster {
    /// An election among `participants`; nothing started yet.
    async fn new(participants: &[&str], seed: u64) -> Self {
        let agents = AgentRegistry::start(AgentRegistryOptions::default())
            .await
            .unwrap();
        let directory: Arc<dyn AgentDirectory> = Arc::new(agents.clone());
        let coordinator = Arc::new(Coordinator::new(directory, Clock::tokio()));
        let config = ElectionConfig {
            participants: participants.iter().map(|id| AgentId::from(*id)).collect(),
            lease: ms(1_000),
            election_timeout: (ms(150), ms(300)),
            rpc_timeout: ms(50),
            seed,
        };
        let election = Election::observe(coordinator, config.clone()).unwrap();
        Cluster {
            agents,
            election,
            config,
            links: HashMap::new(),
            blocked: HashMap::new(),
            handles: Arc::default(),
        }
    }

    /// Starts node `id` (temporary: a crashed node stays down), its link
    /// in `mode`, its first timeout `first` (random if `None`).
    async fn start(&mut self, id: &str, mode: u8, first: Option<Duration>) {
        let mode = Arc::new(AtomicU8::new(mode));
        self.links.insert(id.to_owned(), mode.clone());
        let blocked = Arc::new(Mutex::new(HashSet::new()));
        self.blocked.insert(id.to_owned(), blocked.clone());
        let args = NodeArgs {
            id: id.to_owned(),
            config: self.config.clone(),
            link: Arc::new(Link {
                inner: Arc::new(self.agents.clone()),
                mode,
                blocked,
            }),
            reporter: self.election.reporter(),
            first_timeout: first,
            handles: self.handles.clone(),
        };
        let config = AgentConfig::new::<Node>("node", args).with_restart(RestartType::Temporary);
        self.agents.register_agent(id, config).unwrap();
        self.agents.start_agent(id).await.unwrap();
    }

    async fn crash(&self, id: &AgentId) {
        self.agents
            .agent_ref::<Node>(id.as_str())
            .unwrap()
            .tell(Crash)
            .await
            .unwrap();
    }

    fn handle(&self, id: &str) -> MemberHandle {
        self.handles.lock()[id].clone()
    }

    async fn next_leader(&self, other_than: Option<&AgentId>) -> Leadership {
        let mut changes = self.election.watch();
        bounded("a leader", LIMIT, async {
            loop {
                if let Some(l) = self.election.leader()
                    && Some(&l.leader) != other_than
                {
                    return l;
                }
                changes.changed().await.unwrap();
            }
        })
        .await
    }

    async fn stop(self) {
        drop(self.election);
        self.agents.stop().await;
    }
}

// a is cut off and b slow (its requests arrive after their timeout), and
// both time out first, campaign after campaign: neither ever leads; one
// of the others does.
#[tokio::test(start_paused = true)]
async fn a_slow_or_cut_off_candidate_does_not_win() {
    let ids = ["a", "b", "c", "d", "e"];
    let mut cluster = Cluster::new(&ids, 11).await;
    cluster.start("a", CUT, Some(ms(150))).await;
    cluster.start("b", SLOW, Some(ms(151))).await;
    // The others time out only after b's requests have reached them (at
    // 151 + 2 x 50 ms): they grant b their votes, too late for b to count.
    for (id, first) in [("c", 280), ("d", 290), ("e", 300)] {
        cluster.start(id, OK, Some(ms(first))).await;
    }
    let leader = cluster.next_leader(None).await;
    assert!(
        ["c", "d", "e"].contains(&leader.leader.as_str()),
        "{leader:?}"
    );
    tokio::time::sleep(ms(5_000)).await; // campaigns go on, on the paused clock
    let history = cluster.election.history();
    assert!(
        history
            .iter()
            .all(|t| !["a", "b"].contains(&t.leader.as_str())),
        "{history:?}"
    );
    assert!(cluster.handle("a").leadership().is_none());
    assert!(cluster.handle("b").leadership().is_none());
    cluster.stop().await;
}

// Two candidates time out at the same instant: each votes for itself and
// neither has a majority in term 1; with fresh random timeouts, exactly
// one leads in term 2.
#[tokio::test(start_paused = true)]
async fn two_candidates_timing_out_together_split_then_one_leads_a_term_later() {
    let ids = ["a", "b"];
    let mut cluster = Cluster::new(&ids, 3).await;
    cluster.start("a", OK, Some(ms(150))).await;
    cluster.start("b", OK, Some(ms(150))).await;
    let leader = cluster.next_leader(None).await;
    assert_eq!(leader.term, 2, "split in term 1, elected in term 2");
    let history = cluster.election.history();
    assert_eq!(history.len(), 1, "exactly one leader: {history:?}");
    let leaders = ["a", "b"]
        .iter()
        .filter(|id| cluster.handle(id).leadership().is_some())
        .count();
    assert_eq!(leaders, 1);
    cluster.stop().await;
}

// Four participants, two running: two votes of four elect no one, however
// long they campaign; a third brings a majority.
#[tokio::test(start_paused = true)]
async fn two_votes_of_four_do_not_elect() {
    let ids = ["a", "b", "c", "d"];
    let mut cluster = Cluster::new(&ids, 5).await;
    cluster.start("a", OK, None).await;
    cluster.start("b", OK, None).await;
    tokio::time::sleep(ms(5_000)).await; // campaigns go on, on the paused clock
    assert_eq!(cluster.election.leader(), None);
    assert!(cluster.election.history().is_empty());
    cluster.start("c", OK, None).await;
    let leader = cluster.next_leader(None).await;
    assert!(["a", "b", "c"].contains(&leader.leader.as_str()));
    cluster.stop().await;
}

// The leader dies: another leads within the dead one's lease plus one
// election timeout (and a campaign and a heartbeat round), with a higher
// fencing token, and the tenures do not overlap.
#[tokio::test(start_paused = true)]
async fn a_dead_leader_is_replaced_within_its_lease_plus_one_timeout() {
    let ids = ["a", "b", "c", "d", "e"];
    let mut cluster = Cluster::new(&ids, 7).await;
    for id in ids {
        cluster.start(id, OK, None).await;
    }
    let first = cluster.next_leader(None).await;
    let clock = Clock::tokio();
    let died = clock.now();
    cluster.crash(&first.leader).await;
    let second = cluster.next_leader(Some(&first.leader)).await;
    let config = &cluster.config;
    let bound = config.lease + config.election_timeout.1 + 2 * config.rpc_timeout;
    assert!(
        clock.now() - died <= bound,
        "replaced after {:?}, over {bound:?}",
        clock.now() - died
    );
    assert!(second.token > first.token);
    let history = cluster.election.history();
    for pair in history.windows(2) {
        assert!(pair[0].until <= pair[1].from, "overlap: {pair:?}");
    }
    cluster.stop().await;
}

// The leader is cut off from its peers: its lease lapses and it steps
// down; the others elect a new leader. The resource has seen the new
// leader's token and refuses the stale one.
#[tokio::test(start_paused = true)]
async fn a_stale_leaders_fencing_token_is_refused() {
    let ids = ["a", "b", "c"];
    let mut cluster = Cluster::new(&ids, 9).await;
    for id in ids {
        cluster.start(id, OK, None).await;
    }
    let first = cluster.next_leader(None).await;
    assert!(cluster.election.admit(first.token));
    cluster.links[first.leader.as_str()].store(CUT, Ordering::SeqCst);
    let second = cluster.next_leader(Some(&first.leader)).await;
    assert!(second.token > first.token);
    let history = cluster.election.history();
    assert!(
        history[0].until <= history[1].from,
        "the new lease starts after the old one ends: {history:?}"
    );
    assert!(
        cluster.handle(first.leader.as_str()).leadership().is_none(),
        "the cut-off leader's lease has lapsed"
    );
    assert!(cluster.election.admit(second.token));
    assert!(
        !cluster.election.admit(first.token),
        "the stale leader's write is refused"
    );
    cluster.stop().await;
}

// A leader campaigning again gets its lease back at once (etcd's
// re-entrant campaign); a follower campaigning while that lease holds
// does not take over.
#[tokio::test(start_paused = true)]
async fn a_leader_campaigning_again_gets_its_lease_at_once() {
    let ids = ["a", "b", "c"];
    let mut cluster = Cluster::new(&ids, 13).await;
    for id in ids {
        cluster.start(id, OK, None).await;
    }
    let leader = cluster.next_leader(None).await;
    let clock = Clock::tokio();
    let asked = clock.now();
    let again = bounded(
        "the leader's second campaign",
        LIMIT,
        cluster.handle(leader.leader.as_str()).campaign(ms(5_000)),
    )
    .await
    .unwrap();
    assert_eq!(clock.now(), asked, "at once");
    assert_eq!(
        (again.leader.clone(), again.term),
        (leader.leader.clone(), leader.term)
    );

    let follower = ids
        .iter()
        .find(|id| **id != leader.leader.as_str())
        .unwrap();
    let err = bounded(
        "a follower's campaign",
        LIMIT,
        cluster.handle(follower).campaign(ms(300)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), 6016, "{err}");
    assert_eq!(cluster.election.leader().unwrap().leader, leader.leader);
    cluster.stop().await;
}

// The leader's heartbeats stop reaching one follower (a partition between
// the two only). That follower campaigns in higher terms, but the leader
// and the other follower promised the leader's lease and refuse their
// votes: it never deposes a leader whose lease a majority keeps.
#[tokio::test(start_paused = true)]
async fn a_partitioned_follower_cannot_depose_a_leased_leader() {
    let ids = ["a", "b", "c"];
    let mut cluster = Cluster::new(&ids, 17).await;
    for id in ids {
        cluster.start(id, OK, None).await;
    }
    let leader = cluster.next_leader(None).await;
    let cut = ids
        .iter()
        .find(|id| **id != leader.leader.as_str())
        .unwrap();
    cluster.blocked[leader.leader.as_str()]
        .lock()
        .insert(AgentId::from(*cut));
    tokio::time::sleep(ms(5_000)).await; // campaigns go on, on the paused clock
    let history = cluster.election.history();
    assert_eq!(history.len(), 1, "one leader throughout: {history:?}");
    assert_eq!(cluster.election.leader().unwrap().leader, leader.leader);
    assert!(cluster.handle(cut).leadership().is_none());
    cluster.stop().await;
}
