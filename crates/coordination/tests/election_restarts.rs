//! The election's observer across a restart of the agent layer: its
//! status feed closes, it subscribes to the new one and re-reads the
//! leader's status, so a leader that died meanwhile is reported at once.

mod common;

use std::{sync::Arc, time::Duration};

use common::{FlakyFeed, bounded};
use mabeam_coordination::{Coordinator, Election, ElectionConfig, ElectionMember, MemberOptions};
use mabeam_supervision_core::{AgentId, AgentStatus, Clock, testkit::Answer};

const LIMIT: Duration = Duration::from_secs(600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn the_observer_survives_a_restart_of_the_agent_layer() {
    let ids = ["a", "b", "c"];
    let feed = FlakyFeed::new(64);
    let clock = Clock::tokio();
    let coordinator = Arc::new(Coordinator::new(Arc::new(feed.clone()), clock.clone()));
    let config = ElectionConfig {
        participants: ids.iter().map(|id| AgentId::from(*id)).collect(),
        lease: ms(1_000),
        election_timeout: (ms(150), ms(300)),
        rpc_timeout: ms(50),
        seed: 21,
    };
    let election = Election::observe(coordinator, config.clone()).unwrap();
    for id in ids {
        let member = ElectionMember::start(
            id.into(),
            config.clone(),
            Arc::new(feed.clone()),
            clock.clone(),
            MemberOptions {
                reporter: Some(election.reporter()),
                ..MemberOptions::default()
            },
        )
        .unwrap();
        feed.agents
            .add(id, "node", move |env| match member.answer(env) {
                Some(answer) => Answer::Reply(answer),
                None => Answer::Unsupported,
            });
    }
    let leader = bounded("a leader", LIMIT, election.wait_for_leader()).await;
    let mut changes = election.watch();
    changes.borrow_and_update();

    // The leader is reported crashed while the feed is down (its member
    // keeps running: only the status tells the observer).
    feed.go_down();
    let died = clock.now();
    feed.agents.set_status(&leader.leader, AgentStatus::Crashed);
    feed.come_back();
    bounded("the vacancy to be reported", LIMIT, async {
        loop {
            changes.changed().await.unwrap();
            if changes.borrow().is_none() {
                return;
            }
        }
    })
    .await;
    assert!(
        clock.now() - died < config.lease / 2,
        "seen by the re-read after the restart, not at the lease's end"
    );
    assert_eq!(
        election.leader(),
        None,
        "no report of a crashed agent counts"
    );
}
