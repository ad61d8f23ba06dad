//! What the coordinator keeps is bounded: past its retention the oldest
//! decision or finished session is dropped, and every drop is counted.

mod common;

use std::{sync::Arc, time::Duration};

use common::bounded;
use mabeam_coordination::{
    Coordinator, Election, ElectionConfig, Leadership, Proposal, Retention, Rule,
};
use mabeam_supervision_core::{
    AgentId, AgentSelection, Clock, ErrorCode, Telemetry, events,
    testkit::{Answer, ScriptedDirectory, TelemetryProbe},
};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(600);

fn setup(retention: Retention) -> (Arc<Coordinator>, TelemetryProbe) {
    let agents = ScriptedDirectory::new();
    agents.add("a", "voter", |_| Answer::Reply(json!({"vote": "yes"})));
    let telemetry = Telemetry::new();
    let probe = TelemetryProbe::attach(&telemetry, events::COORDINATION_DROPPED);
    let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio())
        .with_telemetry(telemetry)
        .with_retention(retention);
    (Arc::new(coordinator), probe)
}

fn proposal(topic: &str) -> Proposal {
    Proposal::new(
        topic,
        AgentSelection::Kind("voter".into()),
        Rule::Majority,
        Duration::from_millis(100),
    )
}

fn drops(probe: &mut TelemetryProbe, what: &str) -> usize {
    probe
        .drain()
        .iter()
        .filter(|e| e.meta_str("what") == Some(what))
        .count()
}

#[tokio::test(start_paused = true)]
async fn decisions_past_the_retention_are_dropped_and_counted() {
    let (coordinator, mut probe) = setup(Retention {
        decisions: 3,
        ..Retention::default()
    });
    for i in 0..5 {
        bounded(
            "a vote",
            LIMIT,
            coordinator.vote(proposal(&format!("t{i}"))),
        )
        .await
        .unwrap();
    }
    let kept: Vec<String> = coordinator
        .decisions()
        .into_iter()
        .map(|d| d.topic)
        .collect();
    assert_eq!(kept, ["t2", "t3", "t4"], "the latest three");
    assert_eq!(drops(&mut probe, "decisions"), 2);
}

#[tokio::test(start_paused = true)]
async fn finished_sessions_past_the_retention_are_dropped_and_counted() {
    let (coordinator, mut probe) = setup(Retention {
        sessions: 2,
        ..Retention::default()
    });
    let mut ids = Vec::new();
    for i in 0..4 {
        let id = coordinator.start_vote(proposal(&format!("s{i}")));
        bounded("a session", LIMIT, coordinator.wait(id))
            .await
            .unwrap();
        ids.push(id);
    }
    // A running session is never dropped, however many finish after it.
    let running = coordinator.start_vote(proposal("running"));
    assert!(coordinator.cancel(running).unwrap());
    assert_eq!(coordinator.status(ids[0]).unwrap_err().code(), 6009);
    assert_eq!(coordinator.status(ids[1]).unwrap_err().code(), 6009);
    assert_eq!(coordinator.status(ids[2]).unwrap_err().code(), 6009);
    assert!(coordinator.status(ids[3]).is_ok());
    assert!(coordinator.status(running).is_ok());
    assert_eq!(drops(&mut probe, "sessions"), 3);
}

#[test]
fn the_drops_are_declared_as_a_metric() {
    let decl = events::METRICS
        .iter()
        .find(|d| d.event == events::COORDINATION_DROPPED)
        .expect("declared, so the node's exporter shows it");
    assert_eq!(decl.metric, "mabeam_coordination_dropped_total");
}

// An election's history keeps the latest tenures; older ones are dropped
// and counted. Reports come from members through the reporter; here the
// test reports five successive leaderships itself.
#[tokio::test(start_paused = true)]
async fn an_elections_history_past_the_retention_is_dropped_and_counted() {
    let agents = ScriptedDirectory::new();
    let ids = ["a", "b", "c"];
    for id in ids {
        agents.add(id, "node", |_| Answer::Silent);
    }
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, events::COORDINATION_DROPPED);
    let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio())
        .with_telemetry(telemetry)
        .with_retention(Retention {
            election_history: 2,
            ..Retention::default()
        });
    let config = ElectionConfig {
        participants: ids.iter().map(|id| AgentId::from(*id)).collect(),
        lease: Duration::from_secs(1),
        election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
        rpc_timeout: Duration::from_millis(50),
        seed: 1,
    };
    let election = Election::observe(Arc::new(coordinator), config).unwrap();
    let reporter = election.reporter();
    let clock = Clock::tokio();
    for term in 1..=5u64 {
        let now = clock.now();
        let leadership = Leadership {
            leader: ids[term as usize % 3].into(),
            term,
            token: term,
            lease_until: now + Duration::from_secs(1),
        };
        reporter.leading(&leadership, now);
        tokio::time::advance(Duration::from_secs(2)).await;
    }
    let terms: Vec<u64> = election.history().iter().map(|t| t.term).collect();
    assert_eq!(terms, [4, 5], "the latest two");
    assert_eq!(drops(&mut probe, "election_history"), 3);
}
