//! Passivation: an idle agent gives up its process but keeps its state and
//! its address; the next message wakes it.

mod common;

use std::time::Duration;

use common::{Cmd, Worker, setup, setup_with, worker};
use mabeam_supervision_core::{
    AgentDirectory, AgentStatus, Clock, Envelope, testkit::TelemetryProbe,
};
use serde_json::json;

#[tokio::test(start_paused = true)]
async fn an_idle_agent_is_passivated_and_woken_by_the_next_message() {
    let s = setup_with(|o| {
        o.with_clock(Clock::tokio())
            .with_passivation_tick(Duration::from_secs(1))
    })
    .await;
    let mut probe = TelemetryProbe::attach(&s.telemetry, &["agent"]);
    s.agents
        .register_agent(
            "a",
            worker("k").with_passivate_after(Duration::from_secs(10)),
        )
        .unwrap();
    let first = s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    a.ask(Cmd::Add(3)).await.unwrap();

    // Busy: not passivated.
    tokio::time::advance(Duration::from_secs(6)).await;
    a.ask(Cmd::Add(1)).await.unwrap();
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(first.is_alive());

    // Idle for 10 s: passivated at the next check.
    probe
        .wait_for(&["agent", "passivated"], Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        first.exited().await,
        mabeam_supervision_core::ExitReason::Shutdown(None)
    );
    let details = s.agents.details("a").unwrap();
    assert_eq!(details.status, AgentStatus::Running);
    assert!(details.passivated);
    assert!(details.process.is_none());
    assert!(!s.registered("a"));
    assert_eq!(s.agents.counts().passivated, 1);
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );
    assert!(s.agents.info(&"a".into()).unwrap().passivated);

    // The next message wakes it, with its state, transparently.
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 4);
    let details = s.agents.details("a").unwrap();
    assert!(!details.passivated);
    assert!(details.process.unwrap().is_alive());
    assert!(s.registered("a"));
    assert_eq!(details.restarts, 0);
    probe
        .wait_for(&["agent", "woken"], Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn passivate_now_then_wake_by_envelope_then_stop() {
    let s = setup().await;
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    a.ask(Cmd::Add(9)).await.unwrap();
    s.agents.passivate("a").await.unwrap();
    assert!(s.agents.details("a").unwrap().passivated);
    assert!(s.agents.lookup("a").is_none());

    let get = Envelope::new("test.get", json!(null), Duration::from_secs(1));
    assert_eq!(s.agents.ask(&"a".into(), get).await, Ok(json!(9)));
    assert!(s.agents.lookup("a").is_some());

    // A passivated agent stops at once.
    s.agents.passivate("a").await.unwrap();
    s.agents.stop_agent("a").await.unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
    assert_eq!(s.agents.counts().passivated, 0);
}

#[tokio::test]
async fn messages_racing_a_passivation_are_all_handled() {
    let s = setup().await;
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    let mut senders = Vec::new();
    for _ in 0..4 {
        let a = a.clone();
        senders.push(tokio::spawn(async move {
            for _ in 0..250 {
                a.ask(Cmd::Add(1)).await.unwrap();
            }
        }));
    }
    for _ in 0..20 {
        let _ = s.agents.passivate("a").await;
        tokio::task::yield_now().await;
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 1_000);
}
