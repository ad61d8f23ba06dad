//! Issue 20 item 5: an AgentSupervisor crash or restart loses no agent.
//! The registry outlives its supervisor: a new supervisor replaces a
//! killed one (by the registry itself, or through `replace_supervisor`, as
//! a supervision tree does), and the agents taken down with the old one
//! are restarted under the new one from their checkpoints, without
//! counting against their restart limits.

mod common;

use std::time::Duration;

use common::{Cmd, Worker, setup, setup_with, worker};
use mabeam_supervision_core::{AgentStatus, RestartType};

const IDS: [(&str, RestartType); 3] = [
    ("p", RestartType::Permanent),
    ("t", RestartType::Transient),
    ("x", RestartType::Temporary),
];

/// Registers and starts one agent per restart type, each with count 7 and
/// no restart allowed (`max_restarts` 0: any crash would fail it).
async fn start_all(s: &common::Setup) {
    for (id, restart) in IDS {
        s.agents
            .register_agent(
                id,
                worker("k")
                    .with_restart(restart)
                    .with_max_restarts(0, Duration::from_secs(60)),
            )
            .unwrap();
        s.agents.start_agent(id).await.unwrap();
        let agent = s.agents.agent_ref::<Worker>(id).unwrap();
        agent.ask(Cmd::Add(7)).await.unwrap();
    }
}

/// Waits until every agent runs again under a live supervisor holding them.
async fn all_running_again(s: &common::Setup) {
    let mut changes = s.agents.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let running = IDS.iter().all(|(id, _)| {
                s.agents.status(id) == Some(AgentStatus::Running)
                    && s.agents.lookup(id).is_some_and(|p| p.is_alive())
            });
            if running {
                return;
            }
            let _ = changes.recv().await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "agents not running again: {:?}",
            IDS.map(|(id, _)| s.agents.status(id))
        )
    });
}

async fn check_restored(s: &common::Setup) {
    for (id, _) in IDS {
        let agent = s.agents.agent_ref::<Worker>(id).unwrap();
        assert_eq!(
            agent.ask(Cmd::Get).await.unwrap(),
            7,
            "{id}: its checkpoint"
        );
        assert!(s.registered(id), "{id}");
    }
    let supervisor = s.agents.supervisor();
    assert!(supervisor.supervisor().handle().is_alive());
    assert_eq!(supervisor.count_children().await.unwrap().active, IDS.len());
}

#[tokio::test]
async fn a_killed_agent_supervisor_is_replaced_and_its_agents_restarted() {
    let s = setup().await;
    start_all(&s).await;
    let old = s.agents.supervisor();
    let old_handle = old.supervisor().handle().clone();

    old_handle.kill();
    old_handle.exited().await;
    all_running_again(&s).await;
    assert_ne!(
        s.agents.supervisor().supervisor().handle().id(),
        old_handle.id()
    );
    check_restored(&s).await;
    // Not counted as crashes: a crash now would be over the limit of 0.
    for (id, _) in IDS {
        assert_ne!(s.agents.status(id), Some(AgentStatus::Failed), "{id}");
    }
    s.agents.stop().await;
    for (id, _) in IDS {
        assert_eq!(s.agents.status(id), Some(AgentStatus::Stopped), "{id}");
    }
    assert_eq!(s.processes.count(&s.ns), 0);
}

#[tokio::test]
async fn replace_supervisor_restarts_the_agents_of_a_stopped_supervisor() {
    // As a supervision tree that restarts the agent supervisor does.
    let s = setup_with(|o| o.with_replace_supervisor(false)).await;
    start_all(&s).await;

    s.agents.supervisor().stop().await;
    for (id, _) in IDS {
        assert_eq!(s.agents.status(id), Some(AgentStatus::Stopped), "{id}");
    }
    s.agents.replace_supervisor().await.unwrap();
    all_running_again(&s).await;
    check_restored(&s).await;
}

#[tokio::test]
async fn replace_supervisor_moves_running_agents_to_the_new_supervisor() {
    let s = setup_with(|o| o.with_replace_supervisor(false)).await;
    start_all(&s).await;
    let old = s.agents.supervisor();

    let new = s.agents.replace_supervisor().await.unwrap();
    assert!(!old.supervisor().handle().is_alive());
    all_running_again(&s).await;
    check_restored(&s).await;
    assert_eq!(new.count_children().await.unwrap().active, IDS.len());
}

#[tokio::test]
async fn an_agent_stopped_on_purpose_stays_stopped_under_the_next_supervisor() {
    let s = setup_with(|o| o.with_replace_supervisor(false)).await;
    start_all(&s).await;
    s.agents.stop_agent("x").await.unwrap();

    s.agents.supervisor().stop().await;
    s.agents.replace_supervisor().await.unwrap();
    let mut changes = s.agents.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !["p", "t"]
            .iter()
            .all(|id| s.agents.status(id) == Some(AgentStatus::Running))
        {
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("p and t not running again");
    assert_eq!(s.agents.status("x"), Some(AgentStatus::Stopped));
}
