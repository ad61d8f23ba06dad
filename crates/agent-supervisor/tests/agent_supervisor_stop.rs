//! Agents stopped by their supervisor rather than by the registry (the
//! AgentSupervisor stopped under the registry, or an agent terminated
//! through it): the seed's `:shutdown -> :stopped`, whatever the policy,
//! and no restart into a supervisor that is gone.

mod common;

use common::{setup, worker};
use mabeam_agent_supervisor::AgentError;
use mabeam_supervision_core::{AgentStatus, ExitReason, RestartType};

#[tokio::test]
async fn agents_stopped_with_their_supervisor_end_stopped_and_are_not_restarted() {
    let s = setup().await;
    let policies = [
        ("p", RestartType::Permanent),
        ("t", RestartType::Transient),
        ("x", RestartType::Temporary),
    ];
    let mut processes = Vec::new();
    for (id, restart) in policies {
        s.agents
            .register_agent(id, worker("k").with_restart(restart))
            .unwrap();
        processes.push(s.agents.start_agent(id).await.unwrap());
    }

    s.agents.supervisor().stop().await;
    for process in &processes {
        assert_eq!(process.exited().await, ExitReason::Shutdown(None));
    }
    for (id, _) in policies {
        assert_eq!(s.agents.status(id), Some(AgentStatus::Stopped), "{id}");
        assert_eq!(s.agents.details(id).unwrap().restarts, 0, "{id}");
    }
    assert_eq!(s.processes.count(&s.ns), 0);
    // A start now fails with a typed error and changes nothing.
    assert!(matches!(
        s.agents.start_agent("p").await,
        Err(AgentError::SupervisorGone)
    ));
    assert_eq!(s.agents.status("p"), Some(AgentStatus::Stopped));
}

#[tokio::test]
async fn an_agent_terminated_through_the_supervisor_ends_stopped() {
    let s = setup().await;
    s.agents
        .register_agent("p", worker("k").with_restart(RestartType::Permanent))
        .unwrap();
    let process = s.agents.start_agent("p").await.unwrap();
    s.agents
        .supervisor()
        .terminate_child(&process)
        .await
        .unwrap();
    assert_eq!(process.exited().await, ExitReason::Shutdown(None));
    assert_eq!(s.agents.status("p"), Some(AgentStatus::Stopped));
    assert_eq!(s.agents.details("p").unwrap().restarts, 0);
    // The registry starts it again on request.
    s.agents.start_agent("p").await.unwrap();
    assert_eq!(s.agents.status("p"), Some(AgentStatus::Running));
}
