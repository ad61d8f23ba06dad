//! Restarts decided per agent: the policy table, the restart limit in its
//! window, backoff, checkpoints across restarts, the memory budget, and
//! every status change reported (telemetry, subscription, event sink).

mod common;

use std::{sync::Arc, time::Duration};

use common::{Cmd, Worker, setup, setup_with, worker};
use futures::future::BoxFuture;
use mabeam_agent_supervisor::{AgentConfig, AgentError};
use mabeam_supervision_core::{
    AgentStatus, AgentStatusChange, Backoff, Clock, Event, EventSeq, EventSink, EventSinkError,
    ExitReason, RestartType, testkit::TelemetryProbe,
};
use parking_lot::Mutex;

/// Runs `cmd` on a fresh agent of `restart` policy and returns its status
/// once its exit is decided, and its restart count.
async fn outcome(restart: RestartType, cmd: Cmd) -> (AgentStatus, u32) {
    let s = setup().await;
    s.agents
        .register_agent("a", worker("k").with_restart(restart))
        .unwrap();
    let first = s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    let _ = a.ask(cmd).await;
    first.exited().await;
    // The decision is taken in the incarnation's on_stop, before exited()
    // resolves; a restart runs in a task of its own: wait for it.
    let mut changes = s.agents.subscribe();
    let status = match s.agents.status("a").unwrap() {
        AgentStatus::Restarting => loop {
            let change = changes.recv().await.unwrap();
            if change.to != AgentStatus::Restarting {
                break change.to;
            }
        },
        status => status,
    };
    (status, s.agents.details("a").unwrap().restarts)
}

#[tokio::test]
async fn permanent_restarts_after_any_exit() {
    assert_eq!(
        outcome(RestartType::Permanent, Cmd::Stop).await,
        (AgentStatus::Running, 1)
    );
    assert_eq!(
        outcome(RestartType::Permanent, Cmd::Panic).await,
        (AgentStatus::Running, 1)
    );
}

#[tokio::test]
async fn transient_restarts_only_after_a_crash() {
    assert_eq!(
        outcome(RestartType::Transient, Cmd::Stop).await,
        (AgentStatus::Completed, 0)
    );
    assert_eq!(
        outcome(RestartType::Transient, Cmd::Panic).await,
        (AgentStatus::Running, 1)
    );
    assert_eq!(
        outcome(RestartType::Transient, Cmd::Fail("boom")).await,
        (AgentStatus::Running, 1)
    );
}

#[tokio::test]
async fn temporary_is_never_restarted() {
    assert_eq!(
        outcome(RestartType::Temporary, Cmd::Stop).await,
        (AgentStatus::Completed, 0)
    );
    assert_eq!(
        outcome(RestartType::Temporary, Cmd::Panic).await,
        (AgentStatus::Crashed, 0)
    );
}

#[tokio::test]
async fn a_killed_agent_is_restarted_with_its_checkpoint_and_its_address_still_works() {
    let s = setup().await;
    s.agents.register_agent("a", worker("k")).unwrap();
    let first = s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    assert_eq!(a.ask(Cmd::Add(7)).await.unwrap(), 7);
    let mut changes = s.agents.subscribe();
    first.kill();
    assert_eq!(first.exited().await, ExitReason::Killed);
    // A ref taken before the restart reaches the new incarnation.
    assert_eq!(a.ask(Cmd::Add(1)).await.unwrap(), 8);
    let details = s.agents.details("a").unwrap();
    assert_eq!(details.restarts, 1);
    assert_eq!(details.last_exit, Some(ExitReason::Killed));
    assert_ne!(details.process.as_ref(), Some(&first));
    assert!(s.registered("a"));
    let seen: Vec<AgentStatus> = std::iter::from_fn(|| changes.try_recv().ok())
        .map(|c: AgentStatusChange| c.to)
        .collect();
    assert_eq!(
        seen,
        [
            AgentStatus::Crashed,
            AgentStatus::Restarting,
            AgentStatus::Running
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn more_than_max_restarts_within_max_seconds_fails_the_agent() {
    let s = setup_with(|o| o.with_clock(Clock::tokio())).await;
    let config = worker("k").with_max_restarts(2, Duration::from_secs(10));
    s.agents.register_agent("a", config).unwrap();
    s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    // Two crashes within the window: restarted.
    for _ in 0..2 {
        let _ = a.ask(Cmd::Panic).await;
        assert_eq!(a.ask(Cmd::Get).await.unwrap(), 0);
    }
    // Outside the window, the count starts over.
    tokio::time::advance(Duration::from_secs(11)).await;
    let _ = a.ask(Cmd::Panic).await;
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 0);
    let _ = a.ask(Cmd::Panic).await;
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 0);
    // A third within 10 s: failed, not restarted.
    let last = s.agents.lookup("a").unwrap();
    let _ = a.ask(Cmd::Panic).await;
    last.exited().await;
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Failed));
    assert_eq!(s.agents.details("a").unwrap().restarts, 4);
    assert!(matches!(
        a.ask(Cmd::Get).await,
        Err(AgentError::NotRunning {
            status: AgentStatus::Failed,
            ..
        })
    ));
    assert!(!s.registered("a"));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );
    // A failed agent can be started again by hand.
    s.agents.start_agent("a").await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn backoff_delays_each_restart_and_a_stop_cancels_a_pending_one() {
    let s = setup_with(|o| o.with_clock(Clock::tokio())).await;
    let config = worker("k")
        .with_max_restarts(100, Duration::from_secs(1000))
        .with_backoff(Backoff::new(Duration::from_secs(1), Duration::from_secs(8)));
    s.agents.register_agent("a", config).unwrap();
    let first = s.agents.start_agent("a").await.unwrap();
    first.kill();
    first.exited().await;
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Restarting));
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    // A caller that will not wait is told so.
    let fail_fast = mabeam_agent_supervisor::CallOptions::default().fail_while_restarting();
    assert!(matches!(
        a.ask_with(Cmd::Get, fail_fast).await,
        Err(AgentError::Restarting(_))
    ));
    // So is one asking through the directory with an envelope that says
    // so (as a call from another node carries it).
    let envelope = mabeam_supervision_core::Envelope::new(
        "any",
        serde_json::Value::Null,
        Duration::from_secs(5),
    )
    .failing_if_restarting();
    assert!(matches!(
        mabeam_supervision_core::AgentDirectory::ask(
            &s.agents,
            &mabeam_supervision_core::AgentId::new("a"),
            envelope
        )
        .await,
        Err(mabeam_supervision_core::DirectoryError::Restarting(_))
    ));
    let mut changes = s.agents.subscribe();
    let started = tokio::time::Instant::now();
    assert_eq!(changes.recv().await.unwrap().to, AgentStatus::Running);
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    // The second restart in a row waits twice as long; stop_agent cancels it.
    s.agents.lookup("a").unwrap().kill();
    assert_eq!(changes.recv().await.unwrap().to, AgentStatus::Crashed);
    assert_eq!(changes.recv().await.unwrap().to, AgentStatus::Restarting);
    s.agents.stop_agent("a").await.unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
    tokio::time::advance(Duration::from_secs(10)).await;
    tokio::task::yield_now().await;
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );
}

#[tokio::test]
async fn an_agent_over_its_memory_budget_is_stopped_as_a_crash_and_restarted() {
    let s = setup().await;
    s.agents
        .register_agent("a", worker("k").with_memory_budget(1_000))
        .unwrap();
    let first = s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    a.ask(Cmd::Add(3)).await.unwrap();
    a.ask(Cmd::Grow(500)).await.unwrap();
    assert!(first.is_alive());
    // This message is answered, then the agent is over budget.
    assert_eq!(a.ask(Cmd::Grow(2_000)).await.unwrap(), 3);
    let exit = first.exited().await;
    assert!(
        matches!(exit, ExitReason::MemoryLimit { budget: 1_000, .. }),
        "{exit:?}"
    );
    assert!(!exit.is_clean());
    // Restarted from its checkpoint, with a fresh (empty) blob.
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 3);
    let details = s.agents.details("a").unwrap();
    assert_eq!(details.restarts, 1);
    assert!(matches!(
        details.last_exit,
        Some(ExitReason::MemoryLimit { .. })
    ));
}

#[tokio::test]
async fn status_changes_are_telemetry_events() {
    let s = setup().await;
    let mut probe = TelemetryProbe::attach(&s.telemetry, &["agent", "status"]);
    s.agents.register_agent("a", worker("k")).unwrap();
    s.agents.start_agent("a").await.unwrap();
    s.agents.stop_agent("a").await.unwrap();
    let seen: Vec<(String, String)> = probe
        .drain()
        .iter()
        .map(|e| {
            (
                e.meta_str("from").unwrap().to_owned(),
                e.meta_str("to").unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("none", "registered"),
        ("registered", "starting"),
        ("starting", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
    ];
    assert_eq!(
        seen,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    notify: tokio::sync::Notify,
}

impl EventSink for Recorder {
    fn record(&self, event: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>> {
        Box::pin(async move {
            let mut events = self.events.lock();
            events.push(event);
            self.notify.notify_waiters();
            Ok(events.len() as EventSeq)
        })
    }
}

#[tokio::test]
async fn status_changes_are_recorded_in_the_event_sink() {
    let sink = Arc::new(Recorder::default());
    let s = setup_with(|o| o.with_event_sink(sink.clone())).await;
    s.agents.register_agent("a", worker("k")).unwrap();
    let pid = s.agents.start_agent("a").await.unwrap();
    pid.kill();
    // Registered, starting, running, crashed, restarting, running.
    loop {
        let notified = sink.notify.notified();
        if sink.events.lock().len() >= 6 {
            break;
        }
        notified.await;
    }
    let events = sink.events.lock().clone();
    let to: Vec<&str> = events
        .iter()
        .map(|e| e.data["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        to,
        [
            "registered",
            "starting",
            "running",
            "crashed",
            "restarting",
            "running"
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.stream == "agent:a" && e.kind == "status_changed")
    );
    assert_eq!(events[3].data["reason"], "killed");
}

#[tokio::test]
async fn thousands_of_crashes_never_stop_the_agent_supervisor() {
    let s = setup().await;
    let config = Arc::new(
        AgentConfig::clone(&worker("k")).with_max_restarts(1_000, Duration::from_secs(60)),
    );
    for i in 0..50 {
        s.agents
            .register_agent(format!("a{i}"), config.clone())
            .unwrap();
        s.agents.start_agent(&format!("a{i}")).await.unwrap();
    }
    for round in 0..20 {
        for i in 0..50 {
            let a = s.agents.agent_ref::<Worker>(&format!("a{i}")).unwrap();
            let _ = a.ask(Cmd::Panic).await;
            assert_eq!(a.ask(Cmd::Get).await.unwrap(), 0, "round {round}");
        }
    }
    assert!(s.agents.supervisor().supervisor().handle().is_alive());
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        50
    );
    assert_eq!(s.agents.counts().get(AgentStatus::Running), 50);
}
