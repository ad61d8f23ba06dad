//! Issue 24, remote delivery: an ask or a tell by agent id reaches the
//! directory another node serves, over the sealed connection, with the
//! envelope's deadline and typed errors (`NotFound`, `Unsupported`,
//! `Timeout`, `NodeDown`). Every wait is bounded.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::BoxFuture;
use mabeam_foundation_services::ConnectionManager;
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatus, AgentStatusChanges, DirectoryError, Envelope,
    ErrorCode, ProcessHandle, cluster::RemoteDelivery,
};
use serde_json::{Value, json};

const COOKIE: &str = "monster";
const WAIT: Duration = Duration::from_secs(10);

/// Agents that answer by a function: `double` doubles, `hang` never
/// answers; tells are recorded.
#[derive(Debug, Default)]
struct Agents {
    told: Mutex<Vec<(AgentId, Value)>>,
}

impl AgentDirectory for Agents {
    fn agent(&self, _: &AgentId) -> Option<ProcessHandle> {
        None
    }
    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        ["double", "hang"]
            .contains(&id.as_str())
            .then(|| AgentInfo {
                id: id.clone(),
                kind: "test".into(),
                status: AgentStatus::Running,
                passivated: false,
                restarts: 0,
            })
    }
    fn agents(&self) -> Vec<AgentInfo> {
        ["double", "hang"]
            .iter()
            .filter_map(|id| self.info(&AgentId::new(*id)))
            .collect()
    }
    fn ask(
        &self,
        id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Value, DirectoryError>> {
        let id = id.clone();
        Box::pin(async move {
            match (id.as_str(), &*envelope.protocol) {
                ("double", "math.double") => Ok(json!(envelope.body.as_i64().unwrap_or(0) * 2)),
                ("double", protocol) => Err(DirectoryError::Unsupported {
                    agent: id,
                    protocol: protocol.into(),
                }),
                ("hang", _) => std::future::pending().await,
                // Between incarnations: the caller's choice decides.
                ("restarting", _) if envelope.fail_if_restarting => {
                    Err(DirectoryError::Restarting(id))
                }
                ("restarting", _) => Ok(json!("waited")),
                _ => Err(DirectoryError::NotFound(id)),
            }
        })
    }
    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        if self.info(id).is_none() {
            return Err(DirectoryError::NotFound(id.clone()));
        }
        self.told.lock().unwrap().push((id.clone(), envelope.body));
        Ok(())
    }
    fn subscribe(&self) -> AgentStatusChanges {
        tokio::sync::broadcast::channel(1).1
    }
}

/// `a` connected to `b`, which serves `agents`.
async fn pair(agents: Arc<Agents>) -> (ConnectionManager, ConnectionManager) {
    let a = ConnectionManager::builder("a@local", COOKIE)
        .build()
        .unwrap();
    let b = ConnectionManager::builder("b@local", COOKIE)
        .build()
        .unwrap();
    b.serve(agents);
    a.start().await.unwrap();
    let b_addr = b.start().await.unwrap();
    a.connect(b_addr).await.unwrap();
    (a, b)
}

fn envelope(protocol: &str, body: Value, timeout: Duration) -> Envelope {
    Envelope::new(protocol, body, timeout)
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not end within {WAIT:?}"))
}

#[tokio::test]
async fn an_ask_reaches_the_agent_on_the_other_node_with_typed_errors() {
    let agents = Arc::new(Agents::default());
    let (a, b) = pair(agents.clone()).await;
    let ask = |id: &str, protocol: &str| {
        a.ask(
            "b@local",
            &AgentId::new(id),
            envelope(protocol, json!(21), Duration::from_secs(5)),
        )
    };
    assert_eq!(
        bounded("ask", ask("double", "math.double")).await,
        Ok(json!(42))
    );
    let unsupported = bounded("ask", ask("double", "math.triple"))
        .await
        .unwrap_err();
    assert_eq!(
        unsupported,
        DirectoryError::Unsupported {
            agent: "double".into(),
            protocol: "math.triple".into()
        }
    );
    assert_eq!(
        bounded("ask", ask("nobody", "math.double")).await,
        Err(DirectoryError::NotFound("nobody".into()))
    );
    // The caller's choice not to wait through a restart crosses the wire.
    let restarting = AgentId::new("restarting");
    let fail_fast = envelope("any", json!(0), Duration::from_secs(5)).failing_if_restarting();
    assert_eq!(
        bounded("ask", a.ask("b@local", &restarting, fail_fast)).await,
        Err(DirectoryError::Restarting(restarting.clone()))
    );
    let waiting = envelope("any", json!(0), Duration::from_secs(5));
    assert_eq!(
        bounded("ask", a.ask("b@local", &restarting, waiting)).await,
        Ok(json!("waited"))
    );
    // Many at once on one connection, each with its own answer.
    let many: Vec<_> = (0..100)
        .map(|i| {
            a.ask(
                "b@local",
                &AgentId::new("double"),
                envelope("math.double", json!(i), Duration::from_secs(5)),
            )
        })
        .collect();
    let answers = bounded("asks", futures::future::join_all(many)).await;
    for (i, answer) in answers.into_iter().enumerate() {
        assert_eq!(answer, Ok(json!(2 * i as i64)));
    }
    // A tell is acknowledged once the other node's directory took it.
    let told = a.tell(
        "b@local",
        &AgentId::new("double"),
        envelope("note", json!("hi"), Duration::from_secs(5)),
    );
    bounded("tell", told).await.unwrap();
    assert_eq!(
        agents.told.lock().unwrap().as_slice(),
        &[(AgentId::new("double"), json!("hi"))]
    );
    a.stop().await;
    b.stop().await;
}

/// An agent that does not answer: `Timeout` at the envelope's deadline.
/// A node not connected: `NodeDown` at once. A node that goes away while
/// a call waits: `NodeDown` then, not at the deadline.
#[tokio::test]
async fn deadlines_and_dead_nodes_are_typed_errors() {
    let (a, b) = pair(Arc::new(Agents::default())).await;
    let hang = AgentId::new("hang");
    let timed_out = bounded(
        "ask",
        a.ask(
            "b@local",
            &hang,
            envelope("x", Value::Null, Duration::from_millis(200)),
        ),
    )
    .await;
    assert_eq!(timed_out, Err(DirectoryError::Timeout(hang.clone())));

    let nowhere = a
        .ask("c@local", &hang, envelope("x", Value::Null, WAIT))
        .await
        .unwrap_err();
    assert!(
        matches!(&nowhere, DirectoryError::NodeDown { node, .. } if &**node == "c@local"),
        "{nowhere:?}"
    );
    assert_eq!(nowhere.code(), 1908);

    // The deadline is far: only the node's end can end this call.
    let waiting = tokio::spawn({
        let a = a.clone();
        let hang = hang.clone();
        async move {
            a.ask(
                "b@local",
                &hang,
                envelope("x", Value::Null, Duration::from_secs(3600)),
            )
            .await
        }
    });
    // The call is on the wire once b holds it: b's stop ends it.
    tokio::task::yield_now().await;
    b.stop().await;
    let ended = bounded("the waiting call", waiting).await.unwrap();
    assert!(
        matches!(&ended, Err(DirectoryError::NodeDown { node, .. }) if &**node == "b@local"),
        "{ended:?}"
    );
    a.stop().await;
}
