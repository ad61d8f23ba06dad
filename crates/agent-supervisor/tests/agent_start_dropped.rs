//! Issue 20 item 2: a dropped `start_agent` leaves nothing unsupervised.
//! Dropping the start while the incarnation is in its `on_start` (a client
//! gone, a caller's timeout) must not leave a running agent that its
//! supervisor never adopted: the registry and the supervisor agree.

mod common;

use std::sync::Arc;

use common::{gated, next_event, setup, setup_with};
use mabeam_agent_supervisor::AgentRegistryOptions;
use mabeam_supervision_core::AgentStatus;
use tokio::sync::Semaphore;

async fn drops_a_start_in_on_start(
    options: impl FnOnce(AgentRegistryOptions) -> AgentRegistryOptions,
) {
    let s = setup_with(options).await;
    let permits = Arc::new(Semaphore::new(0));
    let (config, mut events) = gated(&permits, true);
    s.agents.register_agent("a", config).unwrap();

    // The start is dropped while the incarnation waits in its on_start.
    {
        let start = s.agents.start_agent("a");
        tokio::pin!(start);
        tokio::select! {
            result = &mut start => panic!("started without a permit: {result:?}"),
            event = next_event(&mut events) => assert_eq!(event, "starting"),
        }
    }
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Registered));

    // The incarnation is killed in its on_start: it never runs.
    assert_eq!(next_event(&mut events).await, "left on_start");
    permits.add_permits(1);
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Registered));
    assert!(s.agents.lookup("a").is_none());
    assert!(!s.registered("a"));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        0
    );

    // A start now works, and the supervisor holds what the registry runs.
    let process = s.agents.start_agent("a").await.unwrap();
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Running));
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        1
    );
    s.agents.stop().await;
    assert!(!process.is_alive());
    assert_eq!(s.agents.status("a"), Some(AgentStatus::Stopped));
}

#[tokio::test]
async fn a_start_dropped_in_on_start_leaves_no_agent_running() {
    drops_a_start_in_on_start(|o| o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_dropped_in_on_start_leaves_no_agent_running_on_an_agent_runtime() {
    let agent_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let handle = agent_runtime.handle().clone();
    drops_a_start_in_on_start(move |o| o.with_runtime(handle)).await;
    agent_runtime.shutdown_background();
}

#[tokio::test]
async fn the_registry_and_the_supervisor_agree_after_many_dropped_starts() {
    let s = setup().await;
    let permits = Arc::new(Semaphore::new(0));
    let (config, mut events) = gated(&permits, true);
    let config = Arc::new(config);
    let mut left = 0;
    for i in 0..20 {
        let id = format!("a{i}");
        s.agents
            .register_agent(id.as_str(), config.clone())
            .unwrap();
        let start = s.agents.start_agent(&id);
        tokio::pin!(start);
        loop {
            tokio::select! {
                result = &mut start => panic!("started without a permit: {result:?}"),
                event = next_event(&mut events) => match event {
                    "starting" => break,
                    "left on_start" => left += 1,
                    other => panic!("{other}"),
                },
            }
        }
    }
    while left < 20 {
        assert_eq!(next_event(&mut events).await, "left on_start");
        left += 1;
    }
    permits.add_permits(20);
    let running = s.agents.list_by_status(AgentStatus::Running).len();
    assert_eq!(running, 0);
    assert_eq!(
        s.agents.supervisor().count_children().await.unwrap().active,
        running
    );
}
