//! The Byzantine quorum ⌈(n + f + 1) / 2⌉ (Malkhi–Reiter), not 2f + 1:
//! two disjoint groups of consistent answers never both decide.

use std::{sync::Arc, time::Duration};

use mabeam_coordination::{ByzantineRound, Coordinator, byzantine::byzantine_quorum};
use mabeam_supervision_core::{
    AgentSelection, Clock, ErrorCode,
    testkit::{Answer, ScriptedDirectory},
};
use serde_json::json;

fn round(f: usize) -> ByzantineRound {
    ByzantineRound {
        topic: "commit".into(),
        body: json!({}),
        participants: AgentSelection::Kind("node".into()),
        faults: f,
        timeout: Duration::from_millis(200),
    }
}

fn answering(agents: &ScriptedDirectory, id: &str, value: &'static str) {
    agents.add(id, "node", move |_| {
        Answer::Reply(json!({ "value": value }))
    });
}

/// Bounds a round: a round that hangs fails the test with a message.
async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within 60 s"))
}

#[test]
fn the_quorum_is_a_byzantine_masking_quorum() {
    assert_eq!(byzantine_quorum(4, 1), 3);
    assert_eq!(byzantine_quorum(7, 1), 5);
    assert_eq!(byzantine_quorum(7, 2), 5);
    assert_eq!(byzantine_quorum(10, 3), 7);
    // Two quorums share at least f + 1 participants, for every n >= 3f + 1.
    for f in 0..6 {
        for n in (3 * f + 1)..40 {
            let q = byzantine_quorum(n, f);
            // 2q - n >= f + 1: the overlap of two quorums.
            assert!(2 * q > n + f, "n = {n}, f = {f}");
            assert!(n - f >= q, "the honest can reach it: n = {n}, f = {f}");
        }
    }
}

// n = 7, f = 1: three agents answer X, four answer Y. With 2f + 1 = 3, X
// was decided though Y had more support; the quorum is 5 and neither has it.
#[tokio::test(start_paused = true)]
async fn two_disjoint_groups_decide_nothing() {
    let agents = ScriptedDirectory::new();
    for i in 0..3 {
        answering(&agents, &format!("x{i}"), "X");
    }
    for i in 0..4 {
        answering(&agents, &format!("y{i}"), "Y");
    }
    let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
    let err = bounded("the round", coordinator.byzantine(round(1)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), 6015, "{err}");
    assert!(err.to_string().contains("= 5 of 7"), "{err}");
}

// n = 7, f = 1: five give X, one gives Y, one is silent: X has the quorum
// and Y could not reach it even with the silent one.
#[tokio::test(start_paused = true)]
async fn a_quorum_decides() {
    let agents = ScriptedDirectory::new();
    for i in 0..5 {
        answering(&agents, &format!("x{i}"), "X");
    }
    answering(&agents, "y0", "Y");
    agents.add("mute", "node", |_| Answer::Silent);
    let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
    let agreement = bounded("the round", coordinator.byzantine(round(1)))
        .await
        .unwrap();
    assert_eq!(agreement.value, json!("X"));
    assert_eq!(agreement.supporters.len(), 5);
    assert_eq!(agreement.silent.len(), 1);
}
