//! Votes: the rules as tables, votes among agents with silences and
//! crashes, iterative consensus, sessions and records.

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use mabeam_coordination::{Ballot, Coordinator, Outcome, Proposal, Rule, SessionStatus, tally};
use mabeam_supervision_core::{
    AgentId, AgentSelection, Clock, ErrorCode, Event, EventSeq, EventSink, EventSinkError,
    ExitReason,
    testkit::{Answer, ScriptedDirectory},
};
use parking_lot::Mutex;
use serde_json::json;

fn ids(n: usize) -> Vec<AgentId> {
    (0..n).map(|i| AgentId::from(format!("a{i}"))).collect()
}

fn yes_no(pattern: &str) -> Vec<(AgentId, Ballot)> {
    pattern
        .chars()
        .enumerate()
        .filter_map(|(i, c)| {
            let ballot = match c {
                'y' => Ballot::Yes,
                'n' => Ballot::No,
                'a' => Ballot::Abstain,
                _ => return None, // '.' = no answer
            };
            Some((AgentId::from(format!("a{i}")), ballot))
        })
        .collect()
}

// Yes/no rules over all participants: silence is never a yes.
#[test]
fn yes_no_table() {
    let cases: &[(Rule, &str, bool)] = &[
        (Rule::Majority, "yyynn", true),
        (Rule::Majority, "yynnn", false),
        (Rule::Majority, "yy...", false), // 2 of 5 answered yes
        (Rule::Majority, "yyya.", true),
        (Rule::Majority, "yynn", false), // a tie is no majority
        (Rule::Supermajority(2.0 / 3.0), "yyyn..", false), // 4 needed of 6
        (Rule::Supermajority(2.0 / 3.0), "yyyyn.", true),
        (Rule::Supermajority(1.0), "yyyy", true),
        (Rule::Unanimous, "yyyy", true),
        (Rule::Unanimous, "yyy.", false),
        (Rule::Unanimous, "yyya", false),
    ];
    for (rule, pattern, passed) in cases {
        let n = pattern.len();
        let (outcome, why) = tally(rule, &[], &ids(n), &yes_no(pattern));
        let expected = if *passed {
            Outcome::Passed
        } else {
            Outcome::Rejected
        };
        assert_eq!(outcome, expected, "{rule:?} {pattern}: {why}");
    }
}

#[test]
fn weighted_approval_and_ranked_choice() {
    let weights = HashMap::from([(AgentId::from("a0"), 5.0), (AgentId::from("a1"), 1.0)]);
    let rule = Rule::Weighted {
        weights,
        threshold: 0.6,
    };
    // a0 (5) yes; a1 (1), a2 (1), a3 (1) no: 5 of 8 = 0.625.
    assert_eq!(
        tally(&rule, &[], &ids(4), &yes_no("ynnn")).0,
        Outcome::Passed
    );
    assert_eq!(
        tally(&rule, &[], &ids(4), &yes_no("nyyy")).0,
        Outcome::Rejected
    );

    let options: Vec<String> = ["red", "green", "blue"].map(String::from).to_vec();
    let approve = |lists: &[&[&str]]| -> Vec<(AgentId, Ballot)> {
        lists
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    AgentId::from(format!("a{i}")),
                    Ballot::Approve(l.iter().map(|s| s.to_string()).collect()),
                )
            })
            .collect()
    };
    let (outcome, _) = tally(
        &Rule::Approval,
        &options,
        &ids(3),
        &approve(&[&["red", "blue"], &["blue"], &["green", "blue"]]),
    );
    assert_eq!(outcome, Outcome::Chosen("blue".into()));
    // A tie goes to the option listed first.
    let (outcome, _) = tally(
        &Rule::Approval,
        &options,
        &ids(2),
        &approve(&[&["green"], &["red"]]),
    );
    assert_eq!(outcome, Outcome::Chosen("red".into()));

    let rank = |lists: &[&[&str]]| -> Vec<(AgentId, Ballot)> {
        lists
            .iter()
            .enumerate()
            .map(|(i, l)| {
                (
                    AgentId::from(format!("a{i}")),
                    Ballot::Ranking(l.iter().map(|s| s.to_string()).collect()),
                )
            })
            .collect()
    };
    // First choices red 2, green 2, blue 1: blue is eliminated and its
    // ballot goes to green, which then has 3 of 5.
    let ballots = rank(&[
        &["red"],
        &["red", "green"],
        &["green"],
        &["green", "red"],
        &["blue", "green"],
    ]);
    let (outcome, why) = tally(&Rule::RankedChoice, &options, &ids(5), &ballots);
    assert_eq!(outcome, Outcome::Chosen("green".into()), "{why}");
    assert!(why.contains("blue eliminated"));
}

#[derive(Default)]
struct Recorded(Mutex<Vec<Event>>);

impl EventSink for Recorded {
    fn record(&self, event: Event) -> BoxFuture<'_, Result<EventSeq, EventSinkError>> {
        Box::pin(async move {
            let mut events = self.0.lock();
            events.push(event);
            Ok(events.len() as EventSeq)
        })
    }
}

// A vote among real (scripted) agents: ballots, silences, a crash, an
// invalid ballot; recorded and kept.
#[tokio::test(start_paused = true)]
async fn vote_among_agents() {
    common::bounded(
        "the test vote_among_agents to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            agents.add("yes1", "voter", |_| Answer::Reply(json!({"vote": "yes"})));
            agents.add("yes2", "voter", |_| Answer::Reply(json!({"vote": true})));
            agents.add("no", "voter", |_| Answer::Reply(json!({"vote": "no"})));
            agents.add("silent", "voter", |_| Answer::Silent);
            agents.add("crash", "voter", |_| {
                Answer::Crash(ExitReason::error("boom"))
            });
            agents.add("garbage", "voter", |_| Answer::Reply(json!({"vote": 7})));
            agents.add("late", "voter", |_| {
                Answer::late(Duration::from_secs(5), json!({"vote": "yes"}))
            });
            let sink = Arc::new(Recorded::default());
            let coordinator = Coordinator::new(Arc::new(agents.clone()), Clock::tokio())
                .with_event_sink(sink.clone());
            let proposal = Proposal::new(
                "scale up",
                AgentSelection::Kind("voter".into()),
                Rule::Majority,
                Duration::from_secs(1),
            )
            .with_body(json!({"replicas": 3}));
            let decision = coordinator.vote(proposal).await.unwrap();
            // 2 yes of 7 participants: rejected, though more yes than no answered.
            assert_eq!(decision.outcome, Outcome::Rejected);
            assert_eq!(decision.participants, 7);
            assert_eq!(decision.votes.len(), 3);
            let why: HashMap<&str, &str> = decision
                .no_answer
                .iter()
                .map(|(a, w)| (a.as_str(), w.as_str()))
                .collect();
            assert!(why["silent"].contains("in time") && why["late"].contains("in time"));
            assert!(why["crash"].contains("crashed"));
            assert!(why["garbage"].contains("invalid ballot"));
            // The agents saw the proposal.
            let seen = agents.received(&"yes1".into());
            assert_eq!(seen[0].body["body"], json!({"replicas": 3}));
            assert_eq!(coordinator.decisions(), std::slice::from_ref(&decision));
            assert_eq!(
                sink.0.lock()[0].data["outcome"]["outcome"],
                json!("rejected")
            );

            // Bad input is refused with a code.
            let bad = Proposal::new(
                "x",
                AgentSelection::Kind("voter".into()),
                Rule::Supermajority(1.5),
                Duration::from_secs(1),
            );
            assert_eq!(coordinator.vote(bad).await.unwrap_err().code(), 6006);
            let nobody = Proposal::new(
                "x",
                AgentSelection::Kind("ghost".into()),
                Rule::Majority,
                Duration::from_secs(1),
            );
            assert_eq!(coordinator.vote(nobody).await.unwrap_err().code(), 6007);
        },
    )
    .await;
}

// Iterative consensus: agents move halfway to the mean of the last round
// until their estimates converge.
#[tokio::test(start_paused = true)]
async fn iterative_consensus_converges() {
    common::bounded(
        "the test iterative_consensus_converges to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            for (id, start) in [("a", 10.0), ("b", 20.0), ("c", 60.0)] {
                let mut estimate: f64 = start;
                agents.add(id, "estimator", move |env| {
                    let others: Vec<f64> = env.body["estimates"]
                        .as_object()
                        .map(|m| m.values().filter_map(|v| v.as_f64()).collect())
                        .unwrap_or_default();
                    if !others.is_empty() {
                        let mean = others.iter().sum::<f64>() / others.len() as f64;
                        estimate = (estimate + mean) / 2.0;
                    }
                    Answer::Reply(json!({ "estimate": estimate }))
                });
            }
            let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
            let rule = Rule::Iterative {
                tolerance: 0.5,
                max_rounds: 20,
            };
            let decision = coordinator
                .vote(Proposal::new(
                    "estimate load",
                    AgentSelection::Kind("estimator".into()),
                    rule,
                    Duration::from_millis(100),
                ))
                .await
                .unwrap();
            match decision.outcome {
                Outcome::Converged(mean) => assert!((mean - 30.0).abs() < 0.5, "{mean}"),
                other => panic!("{other:?}: {}", decision.explanation),
            }
            assert!(decision.rounds > 2 && decision.rounds < 20);
            // With too few rounds it says it did not converge.
            let agents = ScriptedDirectory::new();
            agents.add("x", "e", |_| Answer::Reply(json!({"estimate": 0.0})));
            agents.add("y", "e", |_| Answer::Reply(json!({"estimate": 100.0})));
            let coordinator = Coordinator::new(Arc::new(agents), Clock::tokio());
            let rule = Rule::Iterative {
                tolerance: 1.0,
                max_rounds: 3,
            };
            let decision = coordinator
                .vote(Proposal::new(
                    "stubborn",
                    AgentSelection::Kind("e".into()),
                    rule,
                    Duration::from_millis(100),
                ))
                .await
                .unwrap();
            assert_eq!(decision.outcome, Outcome::NotConverged(50.0));
            assert_eq!(decision.rounds, 3);
        },
    )
    .await;
}

// Sessions: asynchronous votes with status, wait and cancel.
#[tokio::test(start_paused = true)]
async fn sessions_run_wait_and_cancel() {
    common::bounded(
        "the test sessions_run_wait_and_cancel to finish",
        common::TEST_LIMIT,
        async {
            let agents = ScriptedDirectory::new();
            agents.add("quick", "voter", |_| Answer::Reply(json!({"vote": "yes"})));
            agents.add("slow", "voter", |_| {
                Answer::late(Duration::from_secs(30), json!({"vote": "yes"}))
            });
            let coordinator = Arc::new(Coordinator::new(Arc::new(agents), Clock::tokio()));
            let proposal = |timeout| {
                Proposal::new(
                    "t",
                    AgentSelection::Kind("voter".into()),
                    Rule::Unanimous,
                    timeout,
                )
            };

            let id = coordinator.start_vote(proposal(Duration::from_secs(60)));
            assert_eq!(coordinator.status(id).unwrap(), SessionStatus::Running);
            let decision = coordinator.wait(id).await.unwrap();
            assert!(decision.passed());
            assert!(matches!(
                coordinator.status(id).unwrap(),
                SessionStatus::Decided(_)
            ));

            let id = coordinator.start_vote(proposal(Duration::from_secs(60)));
            assert!(coordinator.cancel(id).unwrap());
            assert_eq!(coordinator.status(id).unwrap(), SessionStatus::Cancelled);
            assert_eq!(coordinator.wait(id).await.unwrap_err().code(), 6010);
            assert!(!coordinator.cancel(id).unwrap(), "cancelled once");
            assert_eq!(coordinator.status(9999).unwrap_err().code(), 6009);
            assert_eq!(
                coordinator.decisions().len(),
                1,
                "the cancelled vote decided nothing"
            );
        },
    )
    .await;
}
