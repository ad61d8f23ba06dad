//! The AgentDirectory contract as coordination and economics use it:
//! envelopes asked and cast by id, each error of the contract, status
//! subscriptions.

mod common;

use std::time::Duration;

use common::{Cmd, Worker, setup, worker};

use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentStatus, DirectoryError, Envelope, ExitReason,
};
use serde_json::json;

fn envelope(protocol: &str, body: serde_json::Value) -> Envelope {
    Envelope::new(protocol, body, Duration::from_secs(2))
}

#[tokio::test]
async fn envelopes_are_answered_refused_or_rejected() {
    let s = setup().await;
    s.agents.register_agent("a", worker("voter")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let dir: &dyn AgentDirectory = &s.agents;
    let a = AgentId::from("a");
    assert_eq!(
        dir.ask(&a, envelope("test.add", json!(4))).await,
        Ok(json!(4))
    );
    assert_eq!(
        dir.ask(&a, envelope("test.get", json!(null))).await,
        Ok(json!(4))
    );
    assert_eq!(
        dir.ask(&a, envelope("economics.bid", json!({}))).await,
        Err(DirectoryError::Unsupported {
            agent: a.clone(),
            protocol: "economics.bid".into()
        })
    );
    assert!(matches!(
        dir.ask(&a, envelope("test.add", json!("four"))).await,
        Err(DirectoryError::Rejected { .. })
    ));
    assert_eq!(
        dir.ask(&"nope".into(), envelope("test.get", json!(null)))
            .await,
        Err(DirectoryError::NotFound("nope".into()))
    );
    let info = dir.info(&a).unwrap();
    assert_eq!(
        (info.status, &*info.kind, info.passivated),
        (AgentStatus::Running, "voter", false)
    );
    assert_eq!(dir.agents_of_kind("voter"), vec![a.clone()]);
    assert!(dir.agent(&a).unwrap().is_alive());
}

#[tokio::test(start_paused = true)]
async fn a_silent_agent_times_out_by_the_deadline() {
    let s = setup().await;
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let started = tokio::time::Instant::now();
    let answer = s
        .agents
        .ask(
            &"a".into(),
            Envelope::new("test.sleep", json!(null), Duration::from_millis(300)),
        )
        .await;
    assert_eq!(answer, Err(DirectoryError::Timeout("a".into())));
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test]
async fn an_agent_that_is_not_running_says_so() {
    let s = setup().await;
    s.agents.register_agent("a", worker("k")).unwrap();
    assert_eq!(
        s.agents
            .ask(&"a".into(), envelope("test.get", json!(null)))
            .await,
        Err(DirectoryError::NotRunning {
            agent: "a".into(),
            status: AgentStatus::Registered
        })
    );
    assert!(matches!(
        s.agents.cast(&"a".into(), envelope("test.add", json!(1))),
        Err(DirectoryError::NotRunning { .. })
    ));
}

#[tokio::test]
async fn an_agent_killed_while_answering_is_crashed() {
    let s = setup().await;
    let (config, mut events) = common::worker_with_events("k");
    s.agents
        .register_agent(
            "a",
            config.with_restart(mabeam_supervision_core::RestartType::Temporary),
        )
        .unwrap();
    let pid = s.agents.start_agent("a").await.unwrap();
    let asking = tokio::spawn({
        let agents = s.agents.clone();
        async move {
            agents
                .ask(&"a".into(), envelope("test.sleep", json!(null)))
                .await
        }
    });
    assert_eq!(events.recv().await, Some("sleeping"));
    pid.kill();
    assert_eq!(
        asking.await.unwrap(),
        Err(DirectoryError::Crashed {
            agent: "a".into(),
            reason: ExitReason::Killed
        })
    );
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Crashed));
}

#[tokio::test]
async fn casts_are_queued_and_subscribers_see_status_changes() {
    let s = setup().await;
    let mut changes = AgentDirectory::subscribe(&s.agents);
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    s.agents
        .cast(&"a".into(), envelope("test.add", json!(5)))
        .unwrap();
    s.agents
        .cast(&"a".into(), envelope("unknown.protocol", json!(5)))
        .unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 5);
    assert_eq!(
        s.agents
            .cast(&"nope".into(), envelope("test.add", json!(1))),
        Err(DirectoryError::NotFound("nope".into()))
    );
    let seen: Vec<(Option<AgentStatus>, AgentStatus)> =
        std::iter::from_fn(|| changes.try_recv().ok())
            .map(|c| (c.from, c.to))
            .collect();
    assert_eq!(
        seen,
        [
            (None, AgentStatus::Registered),
            (Some(AgentStatus::Registered), AgentStatus::Starting),
            (Some(AgentStatus::Starting), AgentStatus::Running),
        ]
    );
}
