//! [`ScriptedDirectory`]: an [`AgentDirectory`] of scripted agents whose
//! answers a test controls, for the crates that talk to agents through the
//! contract (coordination, economics) without depending on agent-supervisor.
//!
//! Each agent is a real concurrent process: a tokio task with a mailbox
//! that handles one envelope at a time, in arrival order, by calling the
//! agent's script. A script answers, rejects, refuses the protocol, stays
//! silent, answers late, or crashes; a crashed agent answers nothing more,
//! and every ask waiting on it fails with
//! [`DirectoryError::Crashed`]. What an agent received is recorded, and a
//! test awaits it with [`ScriptedDirectory::wait_received`] instead of
//! sleeping.

use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

use crate::{
    AgentDirectory, AgentId, AgentInfo, AgentStatus, AgentStatusChange, AgentStatusChanges,
    DirectoryError, Envelope, ExitReason, ProcessHandle,
};

/// What a scripted agent does with one envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Answers with this JSON value.
    Reply(serde_json::Value),
    /// Answers with a protocol error ([`DirectoryError::Rejected`]).
    Reject(String),
    /// Does not speak the protocol ([`DirectoryError::Unsupported`]).
    Unsupported,
    /// Never answers, but stays alive (its caller times out).
    Silent,
    /// Works for this long (on tokio's clock, its mailbox waiting
    /// meanwhile), then does the inner answer.
    After(Duration, Box<Answer>),
    /// Crashes with this reason instead of answering.
    Crash(ExitReason),
}

impl Answer {
    /// `Reply(value)` after `delay`.
    pub fn late(delay: Duration, value: serde_json::Value) -> Self {
        Answer::After(delay, Box::new(Answer::Reply(value)))
    }
}

/// A scripted agent's behaviour: called with each envelope in arrival
/// order, casts included (their answer is dropped, but a `Crash` or an
/// `After` still happens).
pub type Script = Box<dyn FnMut(&Envelope) -> Answer + Send>;

/// An [`AgentDirectory`] of scripted agents. Cheap to clone: clones share
/// the agents.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use serde_json::json;
/// use mabeam_supervision_core::{AgentDirectory, DirectoryError, Envelope, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let dir = ScriptedDirectory::new();
/// dir.add("yes", "voter", |_| Answer::Reply(json!("yes")));
/// dir.add("mute", "voter", |_| Answer::Silent);
///
/// let vote = || Envelope::new("coordination.vote", json!({}), Duration::from_millis(100));
/// assert_eq!(dir.ask(&"yes".into(), vote()).await, Ok(json!("yes")));
/// assert_eq!(dir.ask(&"mute".into(), vote()).await, Err(DirectoryError::Timeout("mute".into())));
/// assert_eq!(dir.received(&"mute".into()).len(), 1);
/// # }
/// ```
#[derive(Clone)]
pub struct ScriptedDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    agents: RwLock<HashMap<AgentId, Arc<Agent>>>,
    changes: broadcast::Sender<AgentStatusChange>,
}

struct Agent {
    kind: Arc<str>,
    state: Mutex<AgentState>,
    mailbox: mpsc::UnboundedSender<Job>,
    received_changed: Notify,
}

struct AgentState {
    status: AgentStatus,
    exit: Option<ExitReason>,
    received: Vec<Envelope>,
}

struct Job {
    envelope: Envelope,
    reply: Option<oneshot::Sender<Result<serde_json::Value, DirectoryError>>>,
}

impl ScriptedDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        ScriptedDirectory {
            inner: Arc::new(Inner {
                agents: RwLock::new(HashMap::new()),
                changes: broadcast::channel(4096).0,
            }),
        }
    }

    /// Adds a running agent `id` of `kind` whose answers `script` gives,
    /// replacing any agent of that id (the old one is crashed with
    /// `Shutdown`). Must be called inside a tokio runtime.
    pub fn add(
        &self,
        id: impl Into<AgentId>,
        kind: &str,
        script: impl FnMut(&Envelope) -> Answer + Send + 'static,
    ) {
        let id = id.into();
        let (mailbox, jobs) = mpsc::unbounded_channel();
        let agent = Arc::new(Agent {
            kind: kind.into(),
            state: Mutex::new(AgentState {
                status: AgentStatus::Running,
                exit: None,
                received: Vec::new(),
            }),
            mailbox,
            received_changed: Notify::new(),
        });
        let previous = self.inner.agents.write().insert(id.clone(), agent.clone());
        if let Some(previous) = previous {
            self.end(&id, &previous, ExitReason::Shutdown(None));
        }
        let _ = self.inner.changes.send(AgentStatusChange {
            id: id.clone(),
            kind: agent.kind.clone(),
            from: None,
            to: AgentStatus::Running,
        });
        tokio::spawn(run_agent(self.clone(), id, agent, Box::new(script), jobs));
    }

    /// Crashes agent `id` now with `reason` (as a kill would): the asks
    /// waiting on it fail with [`DirectoryError::Crashed`]. Returns whether
    /// it was running.
    pub fn crash(&self, id: &AgentId, reason: ExitReason) -> bool {
        let Some(agent) = self.get(id) else {
            return false;
        };
        self.end(id, &agent, reason)
    }

    /// Sets the status agent `id` reports (e.g. `Restarting`, `Failed`)
    /// without touching its process.
    pub fn set_status(&self, id: &AgentId, status: AgentStatus) {
        if let Some(agent) = self.get(id) {
            let from = std::mem::replace(&mut agent.state.lock().status, status);
            self.changed(id, &agent, from, status);
        }
    }

    /// Every envelope agent `id` has received, asks and casts, in order.
    pub fn received(&self, id: &AgentId) -> Vec<Envelope> {
        self.get(id)
            .map(|agent| agent.state.lock().received.clone())
            .unwrap_or_default()
    }

    /// Waits until agent `id` has received at least `count` envelopes (for
    /// ever if it never does: bound it with a timeout).
    pub async fn wait_received(&self, id: &AgentId, count: usize) -> Vec<Envelope> {
        let Some(agent) = self.get(id) else {
            return std::future::pending().await;
        };
        loop {
            let notified = agent.received_changed.notified();
            {
                let state = agent.state.lock();
                if state.received.len() >= count {
                    return state.received.clone();
                }
            }
            notified.await;
        }
    }

    fn get(&self, id: &AgentId) -> Option<Arc<Agent>> {
        self.inner.agents.read().get(id).cloned()
    }

    /// Marks `agent` crashed; false if it had already ended.
    fn end(&self, id: &AgentId, agent: &Agent, reason: ExitReason) -> bool {
        let from = {
            let mut state = agent.state.lock();
            if state.exit.is_some() {
                return false;
            }
            state.exit = Some(reason.clone());
            let to = if reason.is_clean() {
                AgentStatus::Stopped
            } else {
                AgentStatus::Crashed
            };
            std::mem::replace(&mut state.status, to)
        };
        let to = agent.state.lock().status;
        self.changed(id, agent, from, to);
        // Wake the agent's task so it drops its mailbox (and the waiting
        // asks with it).
        let _ = agent.mailbox.send(Job {
            envelope: Envelope::new("testkit.stop", serde_json::Value::Null, Duration::ZERO),
            reply: None,
        });
        true
    }

    fn changed(&self, id: &AgentId, agent: &Agent, from: AgentStatus, to: AgentStatus) {
        if from != to {
            let _ = self.inner.changes.send(AgentStatusChange {
                id: id.clone(),
                kind: agent.kind.clone(),
                from: Some(from),
                to,
            });
        }
    }
}

impl Default for ScriptedDirectory {
    fn default() -> Self {
        ScriptedDirectory::new()
    }
}

impl fmt::Debug for ScriptedDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedDirectory")
            .field("agents", &self.inner.agents.read().len())
            .finish()
    }
}

/// One agent's process: handles its mailbox in order until it ends.
async fn run_agent(
    dir: ScriptedDirectory,
    id: AgentId,
    agent: Arc<Agent>,
    mut script: Script,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    // Asks left unanswered on purpose: held until the agent ends, so they
    // fail as a crash then, or time out before.
    let mut unanswered = Vec::new();
    while let Some(job) = jobs.recv().await {
        if agent.state.lock().exit.is_some() {
            return; // dropping `jobs` fails every waiting ask
        }
        {
            agent.state.lock().received.push(job.envelope.clone());
        }
        agent.received_changed.notify_waiters();
        let mut answer = script(&job.envelope);
        while let Answer::After(delay, next) = answer {
            tokio::time::sleep(delay).await;
            if agent.state.lock().exit.is_some() {
                return;
            }
            answer = *next;
        }
        let result = match answer {
            Answer::Reply(value) => Ok(value),
            Answer::Reject(reason) => Err(DirectoryError::Rejected {
                agent: id.clone(),
                reason,
            }),
            Answer::Unsupported => Err(DirectoryError::Unsupported {
                agent: id.clone(),
                protocol: job.envelope.protocol.clone(),
            }),
            Answer::Silent => {
                // Keep the caller waiting: its deadline decides.
                unanswered.extend(job.reply);
                continue;
            }
            Answer::Crash(reason) => {
                dir.end(&id, &agent, reason);
                return;
            }
            Answer::After(..) => unreachable!("unwrapped above"),
        };
        if let Some(reply) = job.reply {
            let _ = reply.send(result);
        }
    }
}

impl AgentDirectory for ScriptedDirectory {
    fn agent(&self, _: &AgentId) -> Option<ProcessHandle> {
        None // scripted agents are tasks, not actors
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        let agent = self.get(id)?;
        let status = agent.state.lock().status;
        Some(AgentInfo {
            id: id.clone(),
            kind: agent.kind.clone(),
            status,
            passivated: false,
            restarts: 0,
        })
    }

    fn agents(&self) -> Vec<AgentInfo> {
        let ids: Vec<AgentId> = self.inner.agents.read().keys().cloned().collect();
        ids.iter().filter_map(|id| self.info(id)).collect()
    }

    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
        let id = id.clone();
        let agent = self.get(&id);
        Box::pin(async move {
            let agent = agent.ok_or_else(|| DirectoryError::NotFound(id.clone()))?;
            let deadline = envelope.deadline;
            let (reply, answer) = oneshot::channel();
            let sent = agent.mailbox.send(Job {
                envelope,
                reply: Some(reply),
            });
            let crashed = || {
                let state = agent.state.lock();
                match &state.exit {
                    Some(reason) if reason.is_clean() => DirectoryError::NotRunning {
                        agent: id.clone(),
                        status: state.status,
                    },
                    Some(reason) => DirectoryError::Crashed {
                        agent: id.clone(),
                        reason: reason.clone(),
                    },
                    None => DirectoryError::Timeout(id.clone()),
                }
            };
            if sent.is_err() || agent.state.lock().exit.is_some() {
                return Err(crashed());
            }
            match tokio::time::timeout_at(deadline, answer).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(crashed()),
                Err(_) => Err(DirectoryError::Timeout(id.clone())),
            }
        })
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        let agent = self
            .get(id)
            .ok_or_else(|| DirectoryError::NotFound(id.clone()))?;
        let status = agent.state.lock().status;
        if agent.state.lock().exit.is_some() {
            return Err(DirectoryError::NotRunning {
                agent: id.clone(),
                status,
            });
        }
        agent
            .mailbox
            .send(Job {
                envelope,
                reply: None,
            })
            .map_err(|_| DirectoryError::NotRunning {
                agent: id.clone(),
                status,
            })
    }

    fn subscribe(&self) -> AgentStatusChanges {
        self.inner.changes.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ask(ms: u64) -> Envelope {
        Envelope::new("test.ask", json!(null), Duration::from_millis(ms))
    }

    #[tokio::test(start_paused = true)]
    async fn answers_in_order_late_and_crashed() {
        let dir = ScriptedDirectory::new();
        let mut n = 0;
        dir.add("a", "k", move |_| {
            n += 1;
            Answer::Reply(json!(n))
        });
        dir.add("slow", "k", |_| {
            Answer::late(Duration::from_secs(2), json!(1))
        });
        dir.add("boom", "k", |_| Answer::Crash(ExitReason::error("boom")));
        dir.add("no", "k", |_| Answer::Unsupported);
        let a = AgentId::from("a");
        assert_eq!(dir.ask(&a, ask(10)).await, Ok(json!(1)));
        assert_eq!(dir.ask(&a, ask(10)).await, Ok(json!(2)));
        assert_eq!(
            dir.ask(&"slow".into(), ask(1000)).await,
            Err(DirectoryError::Timeout("slow".into()))
        );
        assert!(matches!(
            dir.ask(&"boom".into(), ask(10)).await,
            Err(DirectoryError::Crashed { .. })
        ));
        assert_eq!(dir.status(&"boom".into()), Some(AgentStatus::Crashed));
        assert!(matches!(
            dir.ask(&"no".into(), ask(10)).await,
            Err(DirectoryError::Unsupported { .. })
        ));
        assert_eq!(
            dir.ask(&"none".into(), ask(10)).await,
            Err(DirectoryError::NotFound("none".into()))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_fails_the_waiting_asks() {
        let dir = ScriptedDirectory::new();
        dir.add("a", "k", |_| Answer::Silent);
        let mut changes = dir.subscribe();
        let waiting = tokio::spawn(dir.ask(&"a".into(), ask(60_000)));
        dir.wait_received(&"a".into(), 1).await;
        assert!(dir.crash(&"a".into(), ExitReason::Killed));
        assert_eq!(
            waiting.await.unwrap(),
            Err(DirectoryError::Crashed {
                agent: "a".into(),
                reason: ExitReason::Killed
            })
        );
        let change = changes.recv().await.unwrap();
        assert_eq!(change.to, AgentStatus::Crashed);
        assert!(dir.cast(&"a".into(), ask(1)).is_err());
    }
}
