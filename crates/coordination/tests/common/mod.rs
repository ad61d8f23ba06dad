//! Shared test helpers: bounded waits, a real-time watchdog for tests on
//! the paused clock, a directory whose status feed a test can lag, close
//! and reopen (as a restart of the agent layer does), and the setups the
//! tests share (a coordinator, silent agents, an election and its member).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{future::Future, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use mabeam_coordination::{
    CoordinationError, Coordinator, Election, ElectionConfig, ElectionMember, Leadership,
    LeaseLock, LockGrant, MemberOptions,
};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatusChange, AgentStatusChanges, Clock,
    DirectoryError, Envelope, ProcessHandle,
    testkit::{Answer, ScriptedDirectory},
};
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// The bound of a whole test's body on tokio's clock (paused tests jump to
/// it at once when they hang idle).
pub const TEST_LIMIT: Duration = Duration::from_secs(3_600);

/// Awaits `future` for at most `limit` (of tokio's clock): a wait that
/// would last for ever fails the test with a message naming it.
pub async fn bounded<T>(what: &str, limit: Duration, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {limit:?}"))
}

/// A coordinator reaching `agents`, on tokio's clock.
pub fn coordinator(agents: &ScriptedDirectory) -> Arc<Coordinator> {
    Arc::new(Coordinator::new(Arc::new(agents.clone()), Clock::tokio()))
}

/// A directory of agents `ids` of `kind` that never answer (alive, so
/// that they can be watched and crashed).
pub fn silent(kind: &str, ids: &[&str]) -> ScriptedDirectory {
    let agents = ScriptedDirectory::new();
    for id in ids {
        agents.add(*id, kind, |_| Answer::Silent);
    }
    agents
}

/// Strings, from string slices.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Agent ids, from string slices.
pub fn ids(items: &[&str]) -> Vec<AgentId> {
    items.iter().map(|s| AgentId::from(*s)).collect()
}

/// An election among `ids`: a lease of 1 s, election timeouts of 1 to
/// 2 s, vote and heartbeat requests answered within 50 ms.
pub fn election_config(ids: &[&str]) -> ElectionConfig {
    ElectionConfig {
        participants: ids.iter().map(|id| AgentId::from(*id)).collect(),
        lease: Duration::from_secs(1),
        election_timeout: (Duration::from_secs(1), Duration::from_secs(2)),
        rpc_timeout: Duration::from_millis(50),
        seed: 7,
    }
}

/// Member options whose first election timeout is `first`.
pub fn first_timeout(first: Duration) -> MemberOptions {
    MemberOptions {
        first_timeout: Some(first),
        ..MemberOptions::default()
    }
}

/// Starts member `a` of `config`, reaching its peers through `agents`.
pub fn member_a(
    config: ElectionConfig,
    agents: &ScriptedDirectory,
    options: MemberOptions,
) -> ElectionMember {
    ElectionMember::start(
        "a".into(),
        config,
        Arc::new(agents.clone()),
        Clock::tokio(),
        options,
    )
    .expect("member a starts")
}

/// An observed election of the one participant `a` (a silent agent),
/// told that `a` leads in `term` from now, its lease running for
/// `lease`.
pub fn observed_leader(term: u64, lease: Duration) -> (ScriptedDirectory, Election, Leadership) {
    let agents = silent("node", &["a"]);
    let election = Election::observe(coordinator(&agents), election_config(&["a"]))
        .expect("the election is observed");
    let now = tokio::time::Instant::now();
    let leadership = Leadership {
        leader: "a".into(),
        term,
        token: term,
        lease_until: now + lease,
    };
    election.reporter().leading(&leadership, now);
    (agents, election, leadership)
}

/// `agent`'s grant of `lock`, taken without waiting.
pub async fn grant(lock: &LeaseLock, agent: &str) -> LockGrant {
    bounded(
        &format!("{agent}'s grant"),
        TEST_LIMIT,
        lock.acquire(&agent.into(), Duration::ZERO),
    )
    .await
    .expect("the lock is free")
}

/// The error of an optimisation its settings refuse.
pub async fn refused_optimisation(
    coordinator: &Coordinator,
    spec: mabeam_coordination::OptimizeSpec,
) -> CoordinationError {
    bounded(
        "a refused optimisation",
        TEST_LIMIT,
        coordinator.optimize(spec),
    )
    .await
    .expect_err("the optimisation was not refused")
}

/// Runs `body` on a current-thread runtime with a paused clock, on a
/// thread of its own, and fails the test with a message if it has not
/// finished after `real` seconds of real time. A paused clock only moves
/// when the runtime is idle, so a body that spins never reaches its
/// `bounded` timeouts; this watchdog bounds it anyway.
pub fn paused_within<F>(real: u64, what: &str, body: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()>,
{
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(body());
        }));
        let _ = done.send(outcome);
    });
    match finished.recv_timeout(Duration::from_secs(real)) {
        Ok(Ok(())) => {}
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // The spinning thread is left behind; the test binary ends it.
        Err(_) => panic!("{what}: still running after {real} s of real time (a spin or a hang)"),
    }
}

/// A [`ScriptedDirectory`] whose status feed the test controls: `capacity`
/// bounds each subscriber's buffer (to make it lag), `go_down` closes
/// every subscription and drops changes until `come_back` (an agent layer
/// restarting).
#[derive(Clone)]
pub struct FlakyFeed {
    pub agents: ScriptedDirectory,
    feed: Arc<Mutex<Option<broadcast::Sender<AgentStatusChange>>>>,
    capacity: usize,
}

impl FlakyFeed {
    /// Must be called inside a runtime: forwards the agents' changes.
    pub fn new(capacity: usize) -> Self {
        let agents = ScriptedDirectory::new();
        let feed = Arc::new(Mutex::new(Some(broadcast::channel(capacity).0)));
        let mut changes = agents.subscribe();
        let forward = feed.clone();
        tokio::spawn(async move {
            while let Ok(change) = changes.recv().await {
                if let Some(sender) = forward.lock().as_ref() {
                    let _ = sender.send(change);
                }
            }
        });
        FlakyFeed {
            agents,
            feed,
            capacity,
        }
    }

    /// Closes every subscription; later ones end at once until
    /// [`come_back`](Self::come_back).
    pub fn go_down(&self) {
        *self.feed.lock() = None;
    }

    /// A new feed, as a restarted agent layer gives.
    pub fn come_back(&self) {
        *self.feed.lock() = Some(broadcast::channel(self.capacity).0);
    }

    /// How many subscribe to the current feed.
    pub fn subscribers(&self) -> usize {
        self.feed
            .lock()
            .as_ref()
            .map_or(0, broadcast::Sender::receiver_count)
    }
}

impl AgentDirectory for FlakyFeed {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.agents.agent(id)
    }
    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.agents.info(id)
    }
    fn agents(&self) -> Vec<AgentInfo> {
        self.agents.agents()
    }
    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
        self.agents.ask(id, envelope)
    }
    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        self.agents.cast(id, envelope)
    }
    fn subscribe(&self) -> AgentStatusChanges {
        match self.feed.lock().as_ref() {
            Some(sender) => sender.subscribe(),
            None => broadcast::channel(1).1,
        }
    }
}
