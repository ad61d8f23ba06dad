//! The AgentRegistry's lifecycle calls: register (validated), start, stop,
//! deregister, update_config, listings and counts, and the seed's agent
//! lifecycle test.

mod common;

use std::{sync::Arc, time::Duration};

use common::{Cmd, Worker, setup, worker};
use mabeam_agent_supervisor::{AgentError, MAX_ID_BYTES};
use mabeam_supervision_core::{
    AgentStatus, ErrorCode, ExitReason, RegistryEvent, error_code_range,
};
use serde_json::json;

/// The seed's "complete agent lifecycle" test: start by id, alive; stop by
/// id, not alive at once when stop_agent returns.
#[tokio::test]
async fn seed_agent_lifecycle() {
    let s = setup().await;
    s.agents
        .register_agent("test_agent", worker("test"))
        .unwrap();
    let pid = s.agents.start_agent("test_agent").await.unwrap();
    assert!(pid.is_alive());
    s.agents.stop_agent("test_agent").await.unwrap();
    assert!(!pid.is_alive());
    assert_eq!(pid.exited().await, ExitReason::Shutdown(None));
    assert_eq!(s.agents.status("test_agent"), Some(AgentStatus::Stopped));
    assert!(!s.registered("test_agent"));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );
}

#[tokio::test]
async fn register_validates_id_and_config_and_keeps_nothing_on_error() {
    let s = setup().await;
    let err = s.agents.register_agent("", worker("k")).unwrap_err();
    assert!(matches!(err, AgentError::InvalidConfig { field: "id", .. }));
    let long = "x".repeat(MAX_ID_BYTES + 1);
    let err = s
        .agents
        .register_agent(long.as_str(), worker("k"))
        .unwrap_err();
    assert!(matches!(err, AgentError::InvalidConfig { field: "id", .. }));
    s.agents
        .register_agent("x".repeat(MAX_ID_BYTES).as_str(), worker("k"))
        .unwrap();

    let bad = [
        (worker(""), "kind"),
        (
            worker("k").with_max_restarts(3, Duration::ZERO),
            "max_seconds",
        ),
        (worker("k").with_mailbox_capacity(0), "mailbox_capacity"),
        (worker("k").with_memory_budget(0), "memory_budget"),
        (
            worker("k").with_passivate_after(Duration::ZERO),
            "passivate_after",
        ),
        (
            worker("k").with_backoff(mabeam_supervision_core::Backoff::new(
                Duration::from_secs(2),
                Duration::from_secs(1),
            )),
            "backoff",
        ),
    ];
    for (config, field) in bad {
        match s.agents.register_agent("a", config) {
            Err(AgentError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    assert_eq!(s.agents.status("a"), None);
    assert_eq!(s.agents.len(), 1);

    s.agents.register_agent("a", worker("k")).unwrap();
    let err = s.agents.register_agent("a", worker("k")).unwrap_err();
    assert!(matches!(err, AgentError::AlreadyRegistered(_)));
    assert_eq!(err.code(), 5002);
}

#[tokio::test]
async fn start_and_stop_refuse_the_wrong_state() {
    let s = setup().await;
    assert!(matches!(
        s.agents.start_agent("nope").await,
        Err(AgentError::NotFound(_))
    ));
    s.agents.register_agent("a", worker("k")).unwrap();
    assert!(matches!(
        s.agents.stop_agent("a").await,
        Err(AgentError::NotRunning {
            status: AgentStatus::Registered,
            ..
        })
    ));
    s.agents.start_agent("a").await.unwrap();
    assert!(matches!(
        s.agents.start_agent("a").await,
        Err(AgentError::AlreadyRunning(_))
    ));
    s.agents.stop_agent("a").await.unwrap();
    assert!(matches!(
        s.agents.stop_agent("a").await,
        Err(AgentError::NotRunning {
            status: AgentStatus::Stopped,
            ..
        })
    ));
    // Started again, from the checkpoint its last incarnation left.
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    s.agents.start_agent("a").await.unwrap();
    assert_eq!(a.ask(Cmd::Add(2)).await.unwrap(), 2);
    s.agents.stop_agent("a").await.unwrap();
    s.agents.start_agent("a").await.unwrap();
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 2);
}

#[tokio::test]
async fn a_failed_start_is_returned_and_leaves_the_agent_as_it_was() {
    let s = setup().await;
    let config = mabeam_agent_supervisor::AgentConfig::new::<Worker>(
        "k",
        common::WorkerArgs {
            start: 0,
            fail_start: true,
            events: None,
        },
    );
    s.agents.register_agent("a", config).unwrap();
    let err = s.agents.start_agent("a").await.unwrap_err();
    assert!(matches!(err, AgentError::StartFailed { .. }), "{err:?}");
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Registered));
    assert!(!s.registered("a"));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );
}

#[tokio::test]
async fn running_agents_are_registered_with_their_kind() {
    let s = setup().await;
    s.agents.register_agent("a", worker("planner")).unwrap();
    let pid = s.agents.start_agent("a").await.unwrap();
    let (holder, metadata) = s.processes.lookup_with_metadata(&s.ns, "agent:a").unwrap();
    assert_eq!(holder, pid);
    assert_eq!(metadata, json!({"kind": "planner"}));
    s.agents.stop_agent("a").await.unwrap();
    assert!(!s.registered("a"));
}

#[tokio::test]
async fn deregister_stops_first_and_forgets() {
    let s = setup().await;
    s.agents.register_agent("a", worker("k")).unwrap();
    let pid = s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    s.agents.deregister_agent("a").await.unwrap();
    assert!(!pid.is_alive());
    assert_eq!(s.agents.status("a"), None);
    assert!(!s.registered("a"));
    assert!(matches!(
        a.ask(Cmd::Get).await,
        Err(AgentError::NotFound(_))
    ));
    assert!(matches!(
        s.agents.deregister_agent("a").await,
        Err(AgentError::NotFound(_))
    ));
    assert_eq!(s.agents.counts().total, 0);
    // The id is free again.
    s.agents.register_agent("a", worker("k")).unwrap();
}

#[tokio::test]
async fn update_config_restarts_a_running_agent_and_an_invalid_one_changes_nothing() {
    let s = setup().await;
    s.agents.register_agent("a", worker("old")).unwrap();
    let first = s.agents.start_agent("a").await.unwrap();
    let a = s.agents.agent_ref::<Worker>("a").unwrap();
    a.ask(Cmd::Add(5)).await.unwrap();

    let err = s
        .agents
        .update_config("a", worker("new").with_mailbox_capacity(0))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        AgentError::InvalidConfig {
            field: "mailbox_capacity",
            ..
        }
    ));
    assert!(first.is_alive());
    assert_eq!(s.agents.details("a").unwrap().kind.as_ref(), "old");

    s.agents.update_config("a", worker("new")).await.unwrap();
    assert!(!first.is_alive());
    let details = s.agents.details("a").unwrap();
    assert_eq!(details.status, AgentStatus::Running);
    assert_eq!(&*details.kind, "new");
    assert_ne!(details.process.as_ref(), Some(&first));
    // The checkpoint came along.
    assert_eq!(a.ask(Cmd::Get).await.unwrap(), 5);
    let (_, metadata) = s.processes.lookup_with_metadata(&s.ns, "agent:a").unwrap();
    assert_eq!(metadata, json!({"kind": "new"}));

    // A stopped agent's config is replaced without starting it.
    s.agents.stop_agent("a").await.unwrap();
    s.agents.update_config("a", worker("newer")).await.unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
}

#[tokio::test]
async fn lists_filters_and_counts() {
    let s = setup().await;
    for (id, kind) in [("c", "x"), ("a", "x"), ("b", "y")] {
        s.agents.register_agent(id, worker(kind)).unwrap();
    }
    s.agents.start_agent("a").await.unwrap();
    s.agents.start_agent("b").await.unwrap();
    let ids = |v: Vec<mabeam_agent_supervisor::AgentDetails>| {
        v.into_iter().map(|d| d.id.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(ids(s.agents.list()), ["a", "b", "c"]);
    assert_eq!(ids(s.agents.list_by_kind("x")), ["a", "c"]);
    assert_eq!(
        ids(s.agents.list_by_status(AgentStatus::Running)),
        ["a", "b"]
    );
    let counts = s.agents.counts();
    assert_eq!(counts.get(AgentStatus::Running), 2);
    assert_eq!(counts.get(AgentStatus::Registered), 1);
    assert_eq!(counts.total, 3);
    let details = s.agents.details("a").unwrap();
    assert!(details.started_at.is_some());
    assert_eq!(details.restarts, 0);
}

#[tokio::test]
async fn error_codes_are_stable_and_in_range() {
    let range = error_code_range("agent-supervisor").unwrap();
    let id = mabeam_supervision_core::AgentId::from("a");
    let errors = [
        AgentError::NotFound(id.clone()),
        AgentError::AlreadyRegistered(id.clone()),
        AgentError::AlreadyRunning(id.clone()),
        AgentError::NotRunning {
            agent: id.clone(),
            status: AgentStatus::Stopped,
        },
        AgentError::InvalidConfig {
            field: "kind",
            reason: "empty".into(),
        },
        AgentError::Restarting(id.clone()),
        AgentError::MailboxFull(id.clone()),
        AgentError::Timeout(id.clone()),
        AgentError::Crashed {
            agent: id.clone(),
            reason: ExitReason::Killed,
        },
        AgentError::StartFailed {
            agent: id.clone(),
            error: mabeam_supervision_core::StartError::failed("x"),
        },
        AgentError::WrongType {
            agent: id.clone(),
            expected: "T",
        },
        AgentError::SupervisorGone,
        AgentError::Stopping(id.clone()),
    ];
    let codes: Vec<u32> = errors.iter().map(ErrorCode::code).collect();
    assert_eq!(codes, (5001..=5013).collect::<Vec<_>>());
    assert!(codes.iter().all(|c| range.contains(c)));
    let envelope = [
        mabeam_agent_supervisor::EnvelopeError::Unsupported.code(),
        mabeam_agent_supervisor::EnvelopeError::Rejected(Arc::from("x")).code(),
    ];
    assert!(envelope.iter().all(|c| range.contains(c)));
}

/// The next `Unregistered` event's name.
async fn released(events: &mut mabeam_supervision_core::RegistryEvents) -> String {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a registry event in time")
            .unwrap();
        if let RegistryEvent::Unregistered { name, .. } = event {
            return name.to_string();
        }
    }
}

/// Each incarnation releases its own name (the process registry runs no
/// cleanup task per agent), on a stop and on a crash.
#[tokio::test]
async fn names_are_released_by_the_incarnations_themselves() {
    let s = setup().await;
    for id in ["a", "b", "c"] {
        s.agents.register_agent(id, worker("k")).unwrap();
        s.agents.start_agent(id).await.unwrap();
    }
    // Owned names: nothing in the per-process index, no cleanup task.
    assert_eq!(s.processes.tracked_processes(), 0);
    let mut events = s.processes.subscribe(&s.ns);

    s.agents.stop_agent("a").await.unwrap();
    assert_eq!(released(&mut events).await, "agent:a");

    // A crash: the old incarnation's name goes, the new one's comes.
    let mut changes = s.agents.subscribe();
    let old = s.agents.lookup("b").unwrap();
    let b = s.agents.agent_ref::<Worker>("b").unwrap();
    let _ = b.ask(Cmd::Panic).await;
    assert_eq!(released(&mut events).await, "agent:b");
    loop {
        let change = changes.recv().await.unwrap();
        if change.id.as_str() == "b" && change.to == AgentStatus::Running {
            break;
        }
    }
    // The table's copy is updated with the record: a subscriber told of
    // the new incarnation finds it.
    let new = s.agents.lookup("b").unwrap();
    assert_ne!(new, old);
    assert_eq!(s.agents.whereis("b"), Some(new.id()));
    assert_eq!(s.agents.whereis("a"), None); // stopped
    assert_eq!(s.agents.whereis("nobody"), None);
    assert_eq!(
        mabeam_supervision_core::Registry::lookup(&s.processes, &s.ns, "agent:b"),
        Some(new)
    );
}

/// Names of agents still running when the agent registry goes are
/// released with it: no registration outlives it.
#[tokio::test]
async fn names_are_released_when_the_registry_goes() {
    let s = setup().await;
    for id in ["a", "b"] {
        s.agents.register_agent(id, worker("k")).unwrap();
        s.agents.start_agent(id).await.unwrap();
    }
    let mut events = s.processes.subscribe(&s.ns);
    let common::Setup { agents, .. } = s;
    drop(agents);
    let mut names = vec![released(&mut events).await, released(&mut events).await];
    names.sort();
    assert_eq!(names, ["agent:a", "agent:b"]);
}
