//! Shared test helpers: bounded waits, a real-time watchdog for tests on
//! the paused clock, and a directory whose status feed a test can lag,
//! close and reopen (as a restart of the agent layer does).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::{future::Future, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatusChange, AgentStatusChanges, DirectoryError,
    Envelope, ProcessHandle, testkit::ScriptedDirectory,
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
