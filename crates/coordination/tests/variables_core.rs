//! Universal variables: types, compare-and-set, history, policies,
//! broadcast order, orchestration.

mod common;

use std::{sync::Arc, time::Duration};

use mabeam_coordination::{
    ConflictPolicy, Coordinator, Rule, ValueType, VariableSpace, VariableSpec,
};
use mabeam_supervision_core::{
    AgentId, Clock, ErrorCode,
    testkit::{Answer, ScriptedDirectory},
};
use serde_json::{Value, json};

fn space(agents: &ScriptedDirectory) -> VariableSpace {
    VariableSpace::new(Arc::new(Coordinator::new(
        Arc::new(agents.clone()),
        Clock::tokio(),
    )))
}

#[tokio::test(start_paused = true)]
async fn types_versions_and_history() {
    common::bounded(
        "the test types_versions_and_history to finish",
        common::TEST_LIMIT,
        async {
            let space = space(&ScriptedDirectory::new());
            let float = ValueType::Float { min: 0.0, max: 1.0 };
            assert_eq!(
                space
                    .define(VariableSpec::new("p", float.clone(), json!(2.0)))
                    .unwrap_err()
                    .code(),
                6003
            );
            space
                .define(VariableSpec::new("p", float, json!(0.5)).history(2))
                .unwrap();
            assert_eq!(
                space
                    .define(VariableSpec::new("p", ValueType::Bool, json!(true)))
                    .unwrap_err()
                    .code(),
                6002
            );

            for (value, code) in [(json!("x"), 6003), (json!(1.5), 6003), (json!(null), 6003)] {
                assert_eq!(
                    space.update("p", value, None).await.unwrap_err().code(),
                    code
                );
            }
            assert_eq!(
                space.get("p").unwrap().version,
                1,
                "refused updates change nothing"
            );
            for v in [0.1, 0.2, 0.3] {
                space.update("p", json!(v), None).await.unwrap();
            }
            let current = space.get("p").unwrap();
            assert_eq!((current.value.clone(), current.version), (json!(0.3), 4));
            let history: Vec<Value> = space
                .history("p")
                .unwrap()
                .into_iter()
                .map(|v| v.value)
                .collect();
            assert_eq!(history, [json!(0.1), json!(0.2)], "bounded to 2");

            // Compare-and-set.
            let conflict = space.update("p", json!(0.9), Some(3)).await.unwrap_err();
            assert_eq!(conflict.code(), 6004);
            assert!(conflict.to_string().contains("version 4"));
            assert_eq!(
                space
                    .update("p", json!(0.9), Some(4))
                    .await
                    .unwrap()
                    .current
                    .version,
                5
            );
            assert_eq!(
                space
                    .update("nope", json!(1), None)
                    .await
                    .unwrap_err()
                    .code(),
                6001
            );
        },
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn merge_policy() {
    common::bounded(
        "the test merge_policy to finish",
        common::TEST_LIMIT,
        async {
            let space = space(&ScriptedDirectory::new());
            let max = ConflictPolicy::Merge(Arc::new(|current: &Value, proposed: &Value| {
                json!(
                    current
                        .as_i64()
                        .unwrap_or(0)
                        .max(proposed.as_i64().unwrap_or(0))
                )
            }));
            space
                .define(
                    VariableSpec::new("high", ValueType::Integer { min: 0, max: 100 }, json!(10))
                        .policy(max),
                )
                .unwrap();
            assert_eq!(
                space
                    .update("high", json!(5), None)
                    .await
                    .unwrap()
                    .current
                    .value,
                json!(10)
            );
            assert_eq!(
                space
                    .update("high", json!(50), None)
                    .await
                    .unwrap()
                    .current
                    .value,
                json!(50)
            );
        },
    )
    .await;
}

// Consensus-gated: the subscribed agents vote on each update.
#[tokio::test(start_paused = true)]
async fn consensus_gated_updates() {
    common::bounded(
        "the test consensus_gated_updates to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            // Each agent approves values up to its own limit.
            for (id, limit) in [("a", 100), ("b", 50), ("c", 10)] {
                agents.add(id, "voter", move |env| match &*env.protocol {
                    "coordination.vote" => {
                        let proposed = env.body["body"]["proposed"].as_i64().unwrap_or(i64::MAX);
                        Answer::Reply(json!({ "vote": proposed <= limit }))
                    }
                    _ => Answer::Reply(Value::Null),
                });
            }
            let space = space(&agents);
            let policy = ConflictPolicy::Consensus {
                rule: Rule::Majority,
                timeout: Duration::from_secs(1),
            };
            space
                .define(
                    VariableSpec::new("limit", ValueType::Integer { min: 0, max: 1000 }, json!(5))
                        .policy(policy),
                )
                .unwrap();
            // No voters yet: rejected.
            assert_eq!(
                space
                    .update("limit", json!(6), None)
                    .await
                    .unwrap_err()
                    .code(),
                6005
            );
            for id in ["a", "b", "c"] {
                space.subscribe("limit", id.into()).unwrap();
            }
            assert_eq!(
                space
                    .update("limit", json!(40), None)
                    .await
                    .unwrap()
                    .current
                    .version,
                2
            ); // a, b
            let rejected = space.update("limit", json!(80), None).await.unwrap_err(); // only a
            assert_eq!(rejected.code(), 6005);
            assert!(rejected.to_string().contains("1 of 3"), "{rejected}");
            assert_eq!(space.get("limit").unwrap().value, json!(40));
        },
    )
    .await;
}

// Subscribers receive every value in version order, however many updates
// race.
#[tokio::test(start_paused = true)]
async fn broadcast_in_version_order() {
    common::bounded(
        "the test broadcast_in_version_order to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            for id in ["s1", "s2"] {
                agents.add(id, "sub", |_| Answer::Reply(Value::Null));
            }
            let space = Arc::new(space(&agents));
            space
                .define(VariableSpec::new(
                    "n",
                    ValueType::Integer { min: 0, max: 1_000 },
                    json!(0),
                ))
                .unwrap();
            space.subscribe("n", "s1".into()).unwrap();
            space.subscribe("n", "s2".into()).unwrap();
            let writers: Vec<_> = (1..=50)
                .map(|i| {
                    let space = space.clone();
                    tokio::spawn(async move { space.update("n", json!(i), None).await.unwrap() })
                })
                .collect();
            for writer in writers {
                writer.await.unwrap();
            }
            for id in ["s1", "s2"] {
                let seen = agents.wait_received(&AgentId::from(id), 50).await;
                let versions: Vec<u64> = seen
                    .iter()
                    .map(|e| e.body["version"].as_u64().unwrap())
                    .collect();
                assert_eq!(versions, (2..=51).collect::<Vec<_>>(), "{id}");
            }
            space.unsubscribe("n", &"s2".into()).unwrap();
            space.update("n", json!(1), None).await.unwrap();
            assert_eq!(agents.wait_received(&"s1".into(), 51).await.len(), 51);
            assert_eq!(agents.received(&"s2".into()).len(), 50);
        },
    )
    .await;
}

// An orchestration variable: agents of the bound kind apply each value
// within its timeout; the answer says who did.
#[tokio::test(start_paused = true)]
async fn orchestration_binds_a_kind_with_a_timeout() {
    common::bounded(
        "the test orchestration_binds_a_kind_with_a_timeout to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            agents.add("w1", "worker", |_| Answer::Reply(json!({"applied": true})));
            agents.add("w2", "worker", |_| {
                Answer::late(Duration::from_secs(10), json!({"applied": true}))
            });
            agents.add("w3", "worker", |_| Answer::Reject("cannot".into()));
            agents.add("other", "db", |_| Answer::Reply(json!({"applied": true})));
            let space = space(&agents);
            space
                .define(
                    VariableSpec::new("batch", ValueType::Integer { min: 1, max: 64 }, json!(8))
                        .binds("worker", Duration::from_secs(1)),
                )
                .unwrap();
            let clock = Clock::tokio();
            let start = clock.now();
            let updated = space.update("batch", json!(16), None).await.unwrap();
            assert!(
                clock.now() - start <= Duration::from_secs(1),
                "bounded by the timeout"
            );
            let applied = updated.applied.unwrap();
            assert_eq!(applied.applied, [AgentId::from("w1")]);
            assert_eq!(applied.timed_out, [AgentId::from("w2")]);
            assert_eq!(applied.failed.len(), 1);
            assert!(agents.received(&"other".into()).is_empty());
            assert_eq!(agents.received(&"w1".into())[0].body["value"], json!(16));
        },
    )
    .await;
}
