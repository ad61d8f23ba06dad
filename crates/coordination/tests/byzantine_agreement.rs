//! Byzantine agreement with adversarial agents.

mod common;

use std::{sync::Arc, time::Duration};

use mabeam_coordination::{ByzantineRound, CoordinationError, Coordinator};
use mabeam_supervision_core::{
    AgentSelection, Clock, ErrorCode,
    testkit::{Answer, ScriptedDirectory},
};
use serde_json::json;

fn round(f: usize) -> ByzantineRound {
    ByzantineRound {
        topic: "commit".into(),
        body: json!({"block": 7}),
        participants: AgentSelection::Kind("node".into()),
        faults: f,
        timeout: Duration::from_millis(200),
    }
}

fn honest(agents: &ScriptedDirectory, id: &str) {
    agents.add(id, "node", |_| Answer::Reply(json!({"value": "A"})));
}

#[tokio::test(start_paused = true)]
async fn too_few_participants_are_refused() {
    common::bounded(
        "the test too_few_participants_are_refused to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            for i in 0..3 {
                honest(&agents, &format!("n{i}"));
            }
            let coordinator = Coordinator::new(Arc::new(agents.clone()), Clock::tokio());
            let err = coordinator.byzantine(round(1)).await.unwrap_err();
            assert_eq!(
                err,
                CoordinationError::TooFewParticipants {
                    f: 1,
                    needed: 4,
                    got: 3
                }
            );
            assert!(
                agents.received(&"n0".into()).is_empty(),
                "refused before asking"
            );
        },
    )
    .await;
}

// n = 3f + 1 with f adversaries (one equivocates, the others lie late or
// differently): the honest value is decided and the equivocator caught.
#[tokio::test(start_paused = true)]
async fn f_adversaries_cannot_stop_agreement() {
    common::bounded(
        "the test f_adversaries_cannot_stop_agreement to finish",
        common::TEST_LIMIT,
        async {
            let f = 3;
            let agents = ScriptedDirectory::new();
            for i in 0..(2 * f + 1) {
                honest(&agents, &format!("h{i}"));
            }
            // Equivocates: a different answer to each phase (each asker).
            let mut calls = 0;
            agents.add("liar-equivocating", "node", move |_| {
                calls += 1;
                Answer::Reply(json!({ "value": if calls == 1 { "A" } else { "B" } }))
            });
            // Consistently lies.
            agents.add("liar-consistent", "node", |_| {
                Answer::Reply(json!({"value": "B"}))
            });
            // Answers after the deadline.
            agents.add("liar-late", "node", |_| {
                Answer::late(Duration::from_secs(1), json!({"value": "B"}))
            });
            let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
            let agreement = coordinator.byzantine(round(f)).await.unwrap();
            assert_eq!(agreement.value, json!("A"));
            assert_eq!(agreement.supporters.len(), 2 * f + 1);
            assert_eq!(agreement.faulty, ["liar-equivocating".into()]);
            assert_eq!(agreement.silent.len(), 1);
        },
    )
    .await;
}

// f + 1 colluding liars: the round fails; it never decides their value.
#[tokio::test(start_paused = true)]
async fn f_plus_one_liars_fail_the_round_not_the_decision() {
    common::bounded(
        "the test f_plus_one_liars_fail_the_round_not_the_decision to finish",
        common::TEST_LIMIT,
        async {
            let f = 2;
            let agents = ScriptedDirectory::new();
            for i in 0..(2 * f) {
                honest(&agents, &format!("h{i}"));
            }
            for i in 0..(f + 1) {
                agents.add(format!("liar{i}"), "node", |_| {
                    Answer::Reply(json!({"value": "B"}))
                });
            }
            let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
            // n = 7 >= 3f + 1 = 7, but f + 1 = 3 lie.
            let err = coordinator.byzantine(round(f)).await.unwrap_err();
            assert_eq!(err.code(), 6015);
            assert!(
                err.to_string()
                    .contains("no value reached the quorum ⌈(n + f + 1) / 2⌉ = 5"),
                "{err}"
            );
        },
    )
    .await;
}
