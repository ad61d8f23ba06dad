//! Calls to agents on other nodes over the sealed connections:
//! supervision-core's [`RemoteDelivery`] on the [`ConnectionManager`].
//!
//! A call is a `Call` frame (an id, the agent, the envelope's protocol and
//! body, the time left to its deadline, ask or tell); the receiver hands
//! it to the directory given to [`serve`](ConnectionManager::serve) and
//! sends an `Answer` with the same id. The caller waits until the
//! envelope's deadline ([`Timeout`](DirectoryError::Timeout)); a
//! connection that ends first fails its calls at once with
//! [`NodeDown`](DirectoryError::NodeDown), as does a node not connected.
//! A tell is answered once the receiver's directory took it, so an
//! acknowledged tell was queued at the owner.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures::future::BoxFuture;
use mabeam_supervision_core::{
    AgentDirectory, AgentId, DirectoryError, Envelope, ErrorCode, ExitReason,
    cluster::RemoteDelivery,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{ConnectionManager, Inner, wire::Frame};

/// A call's failure as it crosses the wire: its code, message and the
/// one detail its variant carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireError {
    code: u32,
    message: String,
    #[serde(default)]
    detail: Option<String>,
}

impl WireError {
    pub(crate) fn from_error(error: &DirectoryError) -> Self {
        let detail = match error {
            DirectoryError::Unsupported { protocol, .. } => Some(protocol.to_string()),
            DirectoryError::Rejected { reason, .. } => Some(reason.clone()),
            DirectoryError::Crashed { reason, .. } => Some(reason.to_string()),
            _ => None,
        };
        WireError {
            code: error.code(),
            message: error.to_string(),
            detail,
        }
    }

    /// An answer too large for the caller's frame limit.
    pub(crate) fn too_large(error: &super::ConnectionError) -> Self {
        WireError {
            code: 1906,
            message: error.to_string(),
            detail: Some(format!("the answer is too large: {error}")),
        }
    }

    /// The typed error again; a code this side does not know is a
    /// rejection carrying the message.
    pub(crate) fn into_error(self, agent: &AgentId) -> DirectoryError {
        let agent = agent.clone();
        let detail = self.detail.unwrap_or_else(|| self.message.clone());
        match self.code {
            1901 => DirectoryError::NotFound(agent),
            1903 => DirectoryError::Unsupported {
                agent,
                protocol: detail.into(),
            },
            1904 => DirectoryError::Timeout(agent),
            1905 => DirectoryError::Crashed {
                agent,
                reason: ExitReason::Error(detail.into()),
            },
            1906 => DirectoryError::Rejected {
                agent,
                reason: detail,
            },
            1907 => DirectoryError::MailboxFull(agent),
            1909 => DirectoryError::Restarting(agent),
            _ => DirectoryError::Rejected {
                agent,
                reason: self.message,
            },
        }
    }
}

/// A call waiting for its answer.
pub(super) struct Pending {
    node: Arc<str>,
    agent: AgentId,
    reply: oneshot::Sender<Result<serde_json::Value, DirectoryError>>,
}

impl ConnectionManager {
    /// Answers the calls other nodes send to this one from `directory`
    /// (the node's local agents). Until then a call is answered
    /// `NotFound`.
    pub fn serve(&self, directory: Arc<dyn AgentDirectory>) {
        *self.inner.directory.write() = Some(directory);
    }

    async fn call(
        &self,
        node: &str,
        agent: &AgentId,
        envelope: Envelope,
        tell: bool,
    ) -> Result<serde_json::Value, DirectoryError> {
        let inner = &self.inner;
        let node_down = |reason: &str| DirectoryError::NodeDown {
            agent: agent.clone(),
            node: node.into(),
            reason: reason.to_owned(),
        };
        let outbox = inner
            .peers
            .lock()
            .get(node)
            .map(|peer| peer.outbox.clone())
            .ok_or_else(|| node_down("not connected"))?;
        let id = inner.next_call.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        inner.pending.lock().insert(
            id,
            Pending {
                node: node.into(),
                agent: agent.clone(),
                reply,
            },
        );
        // Forgets the call however this ends (answer, deadline, drop).
        let _forget = Forget { inner, id };
        let fail_if_restarting = envelope.fail_if_restarting;
        let frame = Frame::Call {
            id,
            agent: agent.as_str().to_owned(),
            protocol: envelope.protocol.to_string(),
            body: envelope.body,
            timeout_ms: envelope
                .deadline
                .saturating_duration_since(tokio::time::Instant::now())
                .as_millis() as u64,
            tell,
            fail_if_restarting,
        };
        let sent = tokio::time::timeout_at(envelope.deadline, outbox.send(frame)).await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(node_down("its connection closed")),
            Err(_) => return Err(DirectoryError::Timeout(agent.clone())),
        }
        match tokio::time::timeout_at(envelope.deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(node_down("its connection closed")),
            Err(_) => Err(DirectoryError::Timeout(agent.clone())),
        }
    }
}

struct Forget<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.inner.pending.lock().remove(&self.id);
    }
}

impl RemoteDelivery for ConnectionManager {
    fn ask(
        &self,
        node: &str,
        agent: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
        let (this, node, agent) = (self.clone(), node.to_owned(), agent.clone());
        Box::pin(async move { this.call(&node, &agent, envelope, false).await })
    }

    fn tell(
        &self,
        node: &str,
        agent: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<(), DirectoryError>> {
        let (this, node, agent) = (self.clone(), node.to_owned(), agent.clone());
        Box::pin(async move { this.call(&node, &agent, envelope, true).await.map(|_| ()) })
    }
}

impl Inner {
    /// An answer arrived: hands it to its caller, if it still waits.
    pub(super) fn answer(&self, id: u64, result: Result<serde_json::Value, WireError>) {
        if let Some(pending) = self.pending.lock().remove(&id) {
            let result = result.map_err(|e| e.into_error(&pending.agent));
            let _ = pending.reply.send(result);
        }
    }

    /// A call could not be sent (over the peer's frame limit): its caller
    /// is told at once.
    pub(super) fn refuse_call(&self, id: u64, reason: String) {
        if let Some(pending) = self.pending.lock().remove(&id) {
            let agent = pending.agent.clone();
            let _ = pending
                .reply
                .send(Err(DirectoryError::Rejected { agent, reason }));
        }
    }

    /// The connection to `node` ended: its calls fail now, not at their
    /// deadlines.
    pub(super) fn fail_calls(&self, node: &str, reason: &str) {
        let failed: Vec<Pending> = {
            let mut pending = self.pending.lock();
            let ids: Vec<u64> = pending
                .iter()
                .filter(|(_, p)| &*p.node == node)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| pending.remove(&id))
                .collect()
        };
        for call in failed {
            let error = DirectoryError::NodeDown {
                agent: call.agent.clone(),
                node: call.node.clone(),
                reason: reason.to_owned(),
            };
            let _ = call.reply.send(Err(error));
        }
    }

    /// Runs a call from another node against the served directory and
    /// queues its answer on that connection.
    pub(super) fn handle_call(
        &self,
        outbox: mpsc::Sender<Frame>,
        call: (u64, String, String, serde_json::Value, u64, bool, bool),
    ) {
        let (id, agent, protocol, body, timeout_ms, tell, fail_if_restarting) = call;
        let directory = self.directory.read().clone();
        tokio::spawn(async move {
            let agent = AgentId::new(agent);
            let mut envelope = Envelope::new(protocol, body, Duration::from_millis(timeout_ms));
            envelope.fail_if_restarting = fail_if_restarting;
            let result = match directory {
                None => Err(DirectoryError::NotFound(agent.clone())),
                Some(directory) if tell => directory
                    .cast(&agent, envelope)
                    .map(|()| serde_json::Value::Null),
                Some(directory) => directory.ask(&agent, envelope).await,
            };
            let (ok, error) = match result {
                Ok(value) => (Some(value), None),
                Err(error) => (None, Some(WireError::from_error(&error))),
            };
            // The connection may have closed meanwhile: the caller hears
            // NodeDown from its side.
            let _ = outbox.send(Frame::Answer { id, ok, error }).await;
        });
    }
}
