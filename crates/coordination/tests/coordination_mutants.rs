//! What `cargo xtask mutants coordination` found no test checking: each
//! test here fails with the mutants it names (see the README's testing
//! section).

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::{
    FlakyFeed, TEST_LIMIT, bounded, coordinator, election_config, first_timeout, grant, ids,
    member_a, observed_leader, refused_optimisation, silent, strings,
};
use futures::future::BoxFuture;
use mabeam_coordination::{
    Ballot, Barrier, ByzantineRound, ConflictPolicy, CoordinationError, Coordinator,
    ElectionConfig, ElectionMember, HEARTBEAT_PROTOCOL, LeaseLock, MemberMemory, MemberOptions,
    Method, OptimizeSpec, Outcome, PROPOSE_PROTOCOL, Param, Proposal, Rule, ValueType,
    VariableSpace, VariableSpec, tally,
};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentSelection, AgentStatusChanges, Clock, DirectoryError,
    Envelope, ExitReason, ProcessHandle, Telemetry, events,
    testkit::{Answer, ScriptedDirectory, TelemetryProbe},
};
use serde_json::json;

/// A Byzantine round on `commit` among the `node`s, tolerating `faults`,
/// each phase answered within 200 ms.
fn node_round(faults: usize) -> ByzantineRound {
    ByzantineRound {
        topic: "commit".into(),
        body: json!({}),
        participants: AgentSelection::Kind("node".into()),
        faults,
        timeout: Duration::from_millis(200),
    }
}

/// An optimisation of one float parameter `x` in `min..=max` by `method`.
fn spec_x(min: f64, max: f64, method: Method) -> OptimizeSpec {
    OptimizeSpec {
        space: vec![Param::Float {
            name: "x".into(),
            min,
            max,
        }],
        method,
        evaluators: AgentSelection::Kind("evaluator".into()),
        timeout: Duration::from_millis(100),
        retries: 0,
        seed: 1,
        minimize: false,
    }
}

fn proposal(rule: Rule) -> Proposal {
    Proposal::new(
        "t",
        AgentSelection::Kind("voter".into()),
        rule,
        Duration::from_secs(1),
    )
}

// Each rule's recorded name (mutant: `Rule::name` -> "").
#[test]
fn each_rule_has_its_name() {
    let weighted = Rule::Weighted {
        weights: HashMap::new(),
        threshold: 0.5,
    };
    let iterative = Rule::Iterative {
        tolerance: 0.1,
        max_rounds: 3,
    };
    let names: Vec<&str> = [
        Rule::Majority,
        Rule::Supermajority(0.7),
        Rule::Unanimous,
        weighted,
        Rule::RankedChoice,
        Rule::Approval,
        iterative,
    ]
    .iter()
    .map(Rule::name)
    .collect();
    assert_eq!(
        names,
        [
            "majority",
            "supermajority",
            "unanimous",
            "weighted",
            "ranked_choice",
            "approval",
            "iterative"
        ]
    );
}

// A weighted rule is valid with a share in (0, 1] and finite, non-negative
// weights, and only then (mutants of `Rule::check`: its threshold guard as
// `true`, or the `!` of its weight check deleted; both refused every
// weighted vote).
#[test]
fn a_weighted_rule_is_checked() {
    let weighted = |threshold: f64, weight: f64| {
        proposal(Rule::Weighted {
            weights: HashMap::from([(AgentId::from("a"), weight), (AgentId::from("b"), 1.0)]),
            threshold,
        })
        .validate()
    };
    assert_eq!(weighted(0.5, 2.0), Ok(()));
    assert_eq!(weighted(1.0, 0.0), Ok(()));
    for (threshold, weight) in [
        (0.0, 1.0),
        (1.5, 1.0),
        (f64::NAN, 1.0),
        (0.5, -1.0),
        (0.5, f64::INFINITY),
        (0.5, f64::NAN),
    ] {
        assert!(
            matches!(
                weighted(threshold, weight),
                Err(CoordinationError::Invalid(_))
            ),
            "threshold {threshold}, weight {weight} accepted"
        );
    }
}

// An approval vote says every option's approvals (mutant: `listing` ->
// an empty string).
#[test]
fn an_approval_vote_lists_the_approvals() {
    let options = strings(&["red", "green", "blue"]);
    let ids = ids(&["a0", "a1"]);
    let ballots = vec![
        (
            ids[0].clone(),
            Ballot::Approve(vec!["red".into(), "blue".into()]),
        ),
        (ids[1].clone(), Ballot::Approve(vec!["blue".into()])),
    ];
    let (outcome, why) = tally(&Rule::Approval, &options, &ids, &ballots);
    assert_eq!(outcome, Outcome::Chosen("blue".into()));
    assert!(
        why.ends_with("approvals: red 1, green 0, blue 2"),
        "the approvals are not listed: {why}"
    );
}

// The variable names, sorted (mutant: `VariableSpace::names` -> one
// empty name).
#[tokio::test(start_paused = true)]
async fn variable_names_are_listed_sorted() {
    let space = VariableSpace::new(coordinator(&ScriptedDirectory::new()));
    assert!(space.names().is_empty());
    for name in ["b", "a"] {
        space
            .define(VariableSpec::new(name, ValueType::Bool, json!(true)))
            .unwrap();
    }
    assert_eq!(space.names(), ["a", "b"]);
    // Its Debug output counts them (mutant: `<impl Debug for
    // VariableSpace>::fmt` -> `Ok(())`).
    assert_eq!(format!("{space:?}"), "VariableSpace { variables: 2, .. }");
}

// A float parameter's range is checked: finite bounds, min <= max
// (mutant: `&&` as `||` before `min <= max` in `Param::check`, which
// accepted an inverted range).
#[tokio::test(start_paused = true)]
async fn an_inverted_float_range_is_refused() {
    let coordinator = coordinator(&ScriptedDirectory::new());
    for (min, max) in [(2.0, 1.0), (f64::NEG_INFINITY, 1.0), (0.0, f64::NAN)] {
        let spec = spec_x(min, max, Method::Grid { points: 3 });
        let err = refused_optimisation(&coordinator, spec).await;
        assert!(
            matches!(&err, CoordinationError::Invalid(why) if why.contains("parameter x")),
            "range {min}..={max}: {err:?}"
        );
    }
}

// The lock's holder is the current grant (mutant: `LeaseLock::holder` ->
// None).
#[tokio::test(start_paused = true)]
async fn a_held_lock_names_its_holder() {
    let coordinator = coordinator(&silent("worker", &["a"]));
    let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
    assert_eq!(lock.holder(), None);
    let grant = grant(&lock, "a").await;
    assert_eq!(lock.holder(), Some(grant.clone()));
    lock.release(&"a".into(), grant.token).unwrap();
    assert_eq!(lock.holder(), None);
}

// Debug output names the type and what it counts (mutants: the `Debug`
// impls of `Coordinator`, `Barrier` and `MemberHandle` -> `Ok(())`).
#[tokio::test(start_paused = true)]
async fn debug_output_says_what_it_is() {
    let agents = silent("worker", &["a"]);
    let coordinator = coordinator(&agents);
    assert_eq!(
        format!("{coordinator:?}"),
        "Coordinator { decisions: 0, .. }"
    );
    let barrier = Barrier::new(&coordinator, vec!["a".into()]);
    assert_eq!(
        format!("{barrier:?}"),
        "Barrier { participants: 1, arrived: 0 }"
    );
    let member = member_a(election_config(&["a"]), &agents, MemberOptions::default());
    assert_eq!(format!("{:?}", member.handle()), "MemberHandle { .. }");
}

// A candidate whose vote requests are refused in a newer term follows
// that term at once (mutants: `>` as `==` in the member's `round`, which
// ignored the newer term, and `ElectionMember::term` -> 0).
#[tokio::test(start_paused = true)]
async fn a_candidate_follows_the_newer_term_its_peers_answer() {
    let agents = ScriptedDirectory::new();
    for peer in ["b", "c"] {
        agents.add(peer, "node", |_| {
            Answer::Reply(json!({"granted": false, "term": 50}))
        });
    }
    let member = member_a(
        election_config(&["a", "b", "c"]),
        &agents,
        first_timeout(Duration::from_millis(10)),
    );
    assert_eq!(member.term(), 0);
    // Its campaign (at 10 ms) ends within its rpc timeout; the next one
    // could start no sooner than a second later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !agents.received(&"b".into()).is_empty(),
        "the member never campaigned"
    );
    assert_eq!(member.term(), 50, "the newer term was not followed");
    assert!(member.leadership().is_none());
}

// A member stepping down ends its tenure at the observer (mutant:
// `ElectionReporter::stepped_down` -> ()).
#[tokio::test(start_paused = true)]
async fn a_leader_stepping_down_leaves_the_office_vacant() {
    let now = tokio::time::Instant::now();
    let (_agents, election, leadership) = observed_leader(3, Duration::from_secs(1));
    assert_eq!(election.leader(), Some(leadership));
    let later = now + Duration::from_millis(200);
    election.reporter().stepped_down(&"a".into(), 3, later);
    assert_eq!(election.leader(), None);
    let history = election.history();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].until, later);
}

// A yes/no answer reads as what it says; any other word is no vote
// (mutant: the guard of the `"no"` arm of `Ballot::read` made `true`,
// which read "abstain" and any word as a no).
#[test]
fn a_yes_no_answer_reads_as_what_it_says() {
    let read =
        |vote: serde_json::Value| Ballot::read(&Rule::Majority, &[], &json!({ "vote": vote }));
    assert_eq!(read(json!("yes")), Ok(Ballot::Yes));
    assert_eq!(read(json!("no")), Ok(Ballot::No));
    assert_eq!(read(json!(false)), Ok(Ballot::No));
    assert_eq!(read(json!("abstain")), Ok(Ballot::Abstain));
    assert!(read(json!("maybe")).is_err());
    assert!(read(json!(1)).is_err());
}

// An approval vote in which nobody approved anything chooses nothing
// (mutant: the guard `counts[i] > 0` of the approval tally made `true`,
// which chose the first option with no approval).
#[test]
fn an_approval_vote_without_approvals_chooses_nothing() {
    let options = strings(&["red", "green"]);
    let ids = ids(&["a0", "a1"]);
    let ballots: Vec<(AgentId, Ballot)> = ids
        .iter()
        .map(|id| (id.clone(), Ballot::Approve(Vec::new())))
        .collect();
    let (outcome, why) = tally(&Rule::Approval, &options, &ids, &ballots);
    assert_eq!(outcome, Outcome::NoWinner, "{why}");
}

// A ranked-choice option with a majority of first choices wins in the
// first round, nothing eliminated (mutant: `||` as `&&` in
// `instant_runoff`, which eliminated options until one was left).
#[test]
fn a_first_round_majority_wins_at_once() {
    let options = strings(&["red", "green", "blue"]);
    let ids = ids(&["a0", "a1", "a2"]);
    let ballots: Vec<(AgentId, Ballot)> = [&["red"][..], &["red"], &["green", "red"]]
        .iter()
        .zip(&ids)
        .map(|(ranking, id)| {
            let ranking = ranking.iter().map(|s| s.to_string()).collect();
            (id.clone(), Ballot::Ranking(ranking))
        })
        .collect();
    let (outcome, why) = tally(&Rule::RankedChoice, &options, &ids, &ballots);
    assert_eq!(outcome, Outcome::Chosen("red".into()));
    assert_eq!(why, "red has 2 of 3 first choices");
}

// An election timeout range must be above zero and not inverted (mutant:
// `||` as `&&` in `ElectionConfig::validate`, which accepted either).
#[test]
fn an_election_timeout_range_is_checked() {
    let with = |min: u64, max: u64| ElectionConfig {
        election_timeout: (Duration::from_millis(min), Duration::from_millis(max)),
        ..election_config(&["a"])
    };
    assert_eq!(with(1_000, 1_000).validate(), Ok(()));
    for (min, max) in [(0, 1_000), (2_000, 1_000)] {
        assert!(
            matches!(
                with(min, max).validate(),
                Err(CoordinationError::Invalid(_))
            ),
            "{min}..{max} ms accepted"
        );
    }
}

// A heartbeat of an older term, or one claiming to come from the member
// itself, is refused and changes nothing (mutant: `||` as `&&` in the
// member's answer to heartbeats, which acked both).
#[tokio::test(start_paused = true)]
async fn a_stale_or_self_heartbeat_is_refused() {
    let member = member_a(
        election_config(&["a", "b"]),
        &ScriptedDirectory::new(),
        MemberOptions {
            memory: Some(MemberMemory {
                term: 5,
                ..MemberMemory::default()
            }),
            ..first_timeout(Duration::from_secs(3_600))
        },
    );
    let heartbeat = |term: u64, leader: &str| {
        member.answer(&Envelope::new(
            HEARTBEAT_PROTOCOL,
            json!({"term": term, "leader": leader}),
            Duration::from_millis(50),
        ))
    };
    assert_eq!(heartbeat(3, "b"), Some(json!({"ack": false, "term": 5})));
    assert_eq!(heartbeat(6, "a"), Some(json!({"ack": false, "term": 5})));
    assert_eq!(member.term(), 5);
    assert_eq!(heartbeat(5, "b"), Some(json!({"ack": true, "term": 5})));
    // What it carries across restarts (mutant: `ElectionMember::memory`
    // -> the default).
    let memory = member.memory();
    assert_eq!(memory.term, 5);
    assert_eq!(
        memory.promised.map(|(leader, _)| leader),
        Some(AgentId::from("b"))
    );
}

// A dropped lock stops watching the agents' deaths at once (mutant:
// `Watcher::set` -> (), which left the watching task running, subscribed
// to the status feed, until the next change came).
#[tokio::test(start_paused = true)]
async fn a_dropped_lock_stops_watching() {
    // No agent: no status change that would end the watching task by
    // itself.
    let feed = FlakyFeed::new(16);
    let coordinator = Coordinator::new(Arc::new(feed.clone()), Clock::tokio());
    let before = feed.subscribers();
    let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
    subscribers_reach(&feed, "the lock to watch", |n| n > before).await;
    drop(lock);
    subscribers_reach(&feed, "the lock to stop watching", |n| n == before).await;
}

/// Waits (a minute of paused time at most) until the feed's subscribers
/// are `done`.
async fn subscribers_reach(feed: &FlakyFeed, what: &str, done: impl Fn(usize) -> bool) {
    bounded(what, Duration::from_secs(60), async {
        while !done(feed.subscribers()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

// A boolean variable holds booleans only (mutant: the guard of
// `ValueType::check`'s boolean arm made `true`).
#[test]
fn a_boolean_holds_booleans_only() {
    assert_eq!(ValueType::Bool.check(&json!(true)), Ok(()));
    for value in [json!(1), json!("true"), json!(null)] {
        assert!(ValueType::Bool.check(&value).is_err(), "{value} accepted");
    }
}

// A float variable whose range has a NaN bound is refused as such, not
// for its initial value (mutant: the first `||` of `define`'s range check
// as `&&`).
#[tokio::test(start_paused = true)]
async fn a_float_range_with_a_nan_bound_is_refused() {
    let space = VariableSpace::new(coordinator(&ScriptedDirectory::new()));
    for (min, max) in [(f64::NAN, 1.0), (0.0, f64::NAN), (2.0, 1.0)] {
        let err = space
            .define(VariableSpec::new(
                "x",
                ValueType::Float { min, max },
                json!(0.5),
            ))
            .unwrap_err();
        assert!(
            matches!(&err, CoordinationError::Invalid(why) if why.contains("range of x")),
            "{min}..={max}: {err:?}"
        );
    }
}

// Successive halving needs eta >= 2, a candidate, and a first budget above
// 0 (mutants of `Coordinator::optimize`'s check: its second `||` as `&&`,
// and `> 0.0` as `>= 0.0`).
#[tokio::test(start_paused = true)]
async fn successive_halving_settings_are_checked() {
    let coordinator = coordinator(&silent("evaluator", &["e"]));
    for (candidates, min_budget, eta) in [(0, 1.0, 2), (4, 0.0, 2), (4, f64::NAN, 2), (4, 1.0, 1)] {
        let method = Method::SuccessiveHalving {
            candidates,
            min_budget,
            eta,
        };
        let err = refused_optimisation(&coordinator, spec_x(0.0, 1.0, method)).await;
        assert!(
            matches!(&err, CoordinationError::Invalid(why) if why.contains("successive halving")),
            "{candidates} candidates, budget {min_budget}, eta {eta}: {err:?}"
        );
    }
}

// A leadership's lease is over at its end: no leader from that instant
// (mutant: `>` as `>=` in `Election::leader`).
#[tokio::test(start_paused = true)]
async fn a_lease_is_over_at_its_end() {
    let (_agents, election, leadership) = observed_leader(1, Duration::from_secs(1));
    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(election.leader(), Some(leadership));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(election.leader(), None);
}

// A Byzantine value with a quorum is agreed when no other value could
// reach one, counting the uncertain participants with it: 16 participants
// (f = 1, quorum 9), 9 for A, 4 for B, 3 silent: 4 + 3 < 9 (mutant: `+`
// as `*`, 4 * 3 = 12, which refused the agreement).
#[tokio::test(start_paused = true)]
async fn a_quorum_is_agreed_against_a_minority_and_silence() {
    let agents = ScriptedDirectory::new();
    for i in 0..16 {
        let answer = match i {
            0..9 => Some("A"),
            9..13 => Some("B"),
            _ => None,
        };
        agents.add(format!("n{i:02}"), "node", move |_| match answer {
            Some(value) => Answer::Reply(json!({ "value": value })),
            None => Answer::Silent,
        });
    }
    let coordinator = coordinator(&agents);
    let round = node_round(1);
    let agreement = bounded("the round", TEST_LIMIT, coordinator.byzantine(round))
        .await
        .unwrap();
    assert_eq!(agreement.value, json!("A"));
    assert_eq!(agreement.supporters.len(), 9);
    assert_eq!(agreement.silent.len(), 3);
}

// Approval and ranking ballots name known options only (mutant: the `!`
// of `Ballot::read`'s option check deleted, which refused the known and
// took the unknown).
#[test]
fn a_ballot_names_known_options_only() {
    let options = strings(&["red", "green"]);
    let read = |approve: serde_json::Value| {
        Ballot::read(&Rule::Approval, &options, &json!({ "approve": approve }))
    };
    assert_eq!(
        read(json!(["green", "red", "green"])),
        Ok(Ballot::Approve(vec!["green".into(), "red".into()]))
    );
    assert!(read(json!(["purple"])).is_err());
    assert!(read(json!(["red", "purple"])).is_err());
}

// A leader that stops leaves the office vacant at once, long before its
// lease ends (mutant: `!=` as `==` in the observer's watch of the leader's
// status, which vacated it only when it ran again).
#[tokio::test(start_paused = true)]
async fn a_leader_that_stops_leaves_the_office_vacant() {
    let now = tokio::time::Instant::now();
    let (agents, election, leadership) = observed_leader(1, Duration::from_secs(3_600));
    assert_eq!(election.leader(), Some(leadership));
    agents.crash(&"a".into(), ExitReason::Killed);
    bounded(
        "the office to fall vacant",
        Duration::from_secs(60),
        async {
            while election.leader().is_some() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        },
    )
    .await;
    assert!(now.elapsed() < Duration::from_secs(60));
}

// A Byzantine round needs n >= 3f + 1 participants, and no more (mutant:
// `3 * f` as `3 + f` in the check, which refused 4 for f = 1 and took 6
// for f = 2).
#[tokio::test(start_paused = true)]
async fn a_byzantine_round_needs_three_f_plus_one() {
    let with = |n: usize| {
        let agents = ScriptedDirectory::new();
        for i in 0..n {
            agents.add(format!("n{i}"), "node", |_| {
                Answer::Reply(json!({ "value": "A" }))
            });
        }
        coordinator(&agents)
    };
    let four = with(4);
    let agreement = bounded("a round of 4", TEST_LIMIT, four.byzantine(node_round(1)))
        .await
        .unwrap();
    assert_eq!(agreement.value, json!("A"));
    let six = with(6);
    let refused = bounded("a round of 6", TEST_LIMIT, six.byzantine(node_round(2))).await;
    assert_eq!(
        refused.unwrap_err(),
        CoordinationError::TooFewParticipants {
            f: 2,
            needed: 7,
            got: 6
        }
    );
}

// Only a participant that has not arrived breaks a barrier by dying: not a
// stranger, not one already waiting (mutant: `&&` as `||` in
// `BarrierInner::lost`).
#[tokio::test(start_paused = true)]
async fn a_stranger_or_an_arrived_participant_dying_breaks_no_barrier() {
    let agents = silent("worker", &["a", "b", "x"]);
    let coordinator = coordinator(&agents);
    let barrier = Barrier::new(&coordinator, vec!["a".into(), "b".into()]);
    let first = tokio::spawn({
        let barrier = barrier.clone();
        async move { barrier.arrive(&"a".into(), Duration::from_secs(300)).await }
    });
    bounded("a to arrive", TEST_LIMIT, async {
        while barrier.arrived() < 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    agents.crash(&"x".into(), ExitReason::Killed);
    agents.crash(&"a".into(), ExitReason::Killed);
    // The barrier's watcher sees both deaths meanwhile.
    tokio::time::sleep(Duration::from_millis(100)).await;
    bounded(
        "b's arrival",
        TEST_LIMIT,
        barrier.arrive(&"b".into(), Duration::from_secs(300)),
    )
    .await
    .expect("the barrier was broken");
    bounded("a's release", TEST_LIMIT, first)
        .await
        .unwrap()
        .expect("a was not released");
}

// A lease is over at its end: renewing it then is refused (mutant: `>` as
// `>=` in `LeaseLock::renew`).
#[tokio::test(start_paused = true)]
async fn a_lock_lease_cannot_be_renewed_at_its_end() {
    let coordinator = coordinator(&silent("worker", &["a"]));
    let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
    let grant = grant(&lock, "a").await;
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        lock.renew(&"a".into(), grant.token),
        Err(CoordinationError::NotHolder("a".into()))
    );
}

// A member's own lease is over at its end: from that instant it no longer
// leads, although its next heartbeat round (which steps it down) has not
// ended yet (mutant: `>` as `>=` in the member's `Shared::leadership`,
// which still gave the lease at its very end).
#[tokio::test(start_paused = true)]
async fn a_members_lease_is_over_at_its_end() {
    let agents = ScriptedDirectory::new();
    let acking = Arc::new(std::sync::atomic::AtomicBool::new(true));
    for peer in ["b", "c"] {
        let acking = acking.clone();
        agents.add(peer, "node", move |envelope| {
            let term = envelope.body["term"].clone();
            if envelope.protocol.as_ref() == HEARTBEAT_PROTOCOL {
                if acking.load(std::sync::atomic::Ordering::SeqCst) {
                    Answer::Reply(json!({"ack": true, "term": term}))
                } else {
                    Answer::Silent
                }
            } else {
                Answer::Reply(json!({"granted": true, "term": term}))
            }
        });
    }
    let member = member_a(
        election_config(&["a", "b", "c"]),
        &agents,
        first_timeout(Duration::from_millis(10)),
    );
    let handle = member.handle();
    bounded(
        "a's election",
        TEST_LIMIT,
        member.campaign(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    // No more acknowledgements: the lease it holds now is its last.
    acking.store(false, std::sync::atomic::Ordering::SeqCst);
    let until = member.leadership().expect("a leads").lease_until;
    tokio::time::sleep_until(until - Duration::from_millis(1)).await;
    assert!(member.leadership().is_some(), "the lease ended early");
    tokio::time::sleep_until(until).await;
    assert_eq!(member.leadership(), None, "a lease valid at its end");
    assert_eq!(handle.leadership(), None, "a lease valid at its end");
}

// A failed campaign's next one comes one election timeout after it began,
// not after its vote requests timed out (mutant: `>` as `>=` in the
// member's `Shared::round`, which re-armed the timer at the end of every
// round as if a newer term had been answered). The timeout range is one
// value so that both timers would draw the same.
#[tokio::test(start_paused = true)]
async fn a_failed_campaign_does_not_delay_the_next() {
    let agents = silent("node", &["b", "c"]);
    let config = ElectionConfig {
        election_timeout: (Duration::from_secs(1), Duration::from_secs(1)),
        ..election_config(&["a", "b", "c"])
    };
    let started = tokio::time::Instant::now();
    let _member = member_a(config, &agents, first_timeout(Duration::from_millis(10)));
    // The first campaign at 10 ms; its round ends unanswered at 60 ms.
    bounded(
        "the first campaign",
        TEST_LIMIT,
        agents.wait_received(&"b".into(), 1),
    )
    .await;
    // The next is due at 1,010 ms (the mutant's at 1,060 ms).
    tokio::time::sleep_until(started + Duration::from_millis(1_030)).await;
    assert_eq!(
        agents.received(&"b".into()).len(),
        2,
        "the second campaign did not come one election timeout after the first"
    );
}

// Equivocators and silent participants are counted together as uncertain,
// not multiplied: 16 participants (f = 1, quorum 9), 9 for A, 1 for B, 3
// equivocating, 3 silent: B could reach 1 + 6 = 7 < 9, so A is agreed
// (mutant: `+` as `*` in the uncertain count, 3 * 3 = 9, which gave B a
// possible quorum and refused the agreement).
#[tokio::test(start_paused = true)]
async fn equivocators_and_silent_ones_add_up() {
    let agents = ScriptedDirectory::new();
    for i in 0..16 {
        let id = format!("n{i:02}");
        match i {
            0..9 => agents.add(id, "node", |_| Answer::Reply(json!({ "value": "A" }))),
            9 => agents.add(id, "node", |_| Answer::Reply(json!({ "value": "B" }))),
            10..13 => agents.add(id, "node", |envelope| {
                // One value proposed, another confirmed.
                let value = if envelope.protocol.as_ref() == PROPOSE_PROTOCOL {
                    "A"
                } else {
                    "C"
                };
                Answer::Reply(json!({ "value": value }))
            }),
            _ => agents.add(id, "node", |_| Answer::Silent),
        }
    }
    let round = node_round(1);
    let agreement = bounded(
        "the round",
        TEST_LIMIT,
        coordinator(&agents).byzantine(round),
    )
    .await
    .expect("A has a quorum no other value could reach");
    assert_eq!(agreement.value, json!("A"));
    assert_eq!((agreement.faulty.len(), agreement.silent.len()), (3, 3));
}

// An integer grid spreads its points over the range from its least
// value, and takes each integer once when it asks for more points than
// there are; a range of one value is one point (mutants: `max - min` as
// `max + min` in `Param::grid`'s points, which stepped past a range not
// starting at 0, and in its span, which overflowed for -1..=0; `min >
// max` as `>=` in `Param::check`, which refused a range of one).
#[tokio::test(start_paused = true)]
async fn an_integer_grid_spans_its_range() {
    let agents = ScriptedDirectory::new();
    agents.add("e", "evaluator", |envelope| {
        Answer::Reply(json!({ "score": envelope.body["params"]["n"] }))
    });
    let coordinator = coordinator(&agents);
    for (min, max, points, expected) in [
        (10, 20, 3, vec![10, 15, 20]),
        (-1, 0, 3, vec![-1, 0]),
        (5, 5, 3, vec![5]),
    ] {
        let spec = OptimizeSpec {
            space: vec![Param::Int {
                name: "n".into(),
                min,
                max,
            }],
            ..spec_x(0.0, 1.0, Method::Grid { points })
        };
        let result = bounded("the grid", TEST_LIMIT, coordinator.optimize(spec))
            .await
            .unwrap();
        let mut tried: Vec<i64> = result
            .trials
            .iter()
            .map(|t| t.params["n"].as_i64().expect("an integer"))
            .collect();
        tried.sort_unstable();
        assert_eq!(tried, expected, "{min}..={max} in {points} points");
    }
}

// A text variable holds strings only (mutant: the guard of
// `ValueType::check`'s text arm made `true`).
#[test]
fn a_text_holds_strings_only() {
    assert_eq!(ValueType::Text.check(&json!("x")), Ok(()));
    for value in [json!(1), json!(true), json!(null)] {
        assert!(ValueType::Text.check(&value).is_err(), "{value} accepted");
    }
}

// A lock's Debug form names its holder, and a conflict policy's its kind
// (mutants: the `Debug` impls of `LeaseLock` and `ConflictPolicy` ->
// `Ok(())`).
#[tokio::test(start_paused = true)]
async fn a_lock_and_a_policy_say_what_they_are() {
    let coordinator = coordinator(&silent("worker", &["a"]));
    let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
    assert_eq!(format!("{lock:?}"), "LeaseLock { holder: None }");
    grant(&lock, "a").await;
    let held = format!("{lock:?}");
    assert!(
        held.starts_with("LeaseLock { holder: Some(") && held.contains("\"a\""),
        "{held}"
    );
    assert_eq!(
        format!("{:?}", ConflictPolicy::LastWriterWins),
        "LastWriterWins"
    );
    let merge = ConflictPolicy::Merge(Arc::new(
        |_: &serde_json::Value, new: &serde_json::Value| new.clone(),
    ));
    assert_eq!(format!("{merge:?}"), "Merge(..)");
    let consensus = ConflictPolicy::Consensus {
        rule: Rule::Majority,
        timeout: Duration::from_secs(1),
    };
    assert_eq!(
        format!("{consensus:?}"),
        "Consensus { rule: Majority, timeout: 1s }"
    );
}

// An iterative rule needs a tolerance of at least 0 and a round, either
// missing alone is refused (mutant: `||` as `&&` in `Rule::check`, which
// refused only both missing).
#[test]
fn an_iterative_rule_is_checked() {
    let iterative = |tolerance: f64, max_rounds: u32| {
        proposal(Rule::Iterative {
            tolerance,
            max_rounds,
        })
        .validate()
    };
    assert_eq!(iterative(0.1, 3), Ok(()));
    for (tolerance, max_rounds) in [(0.1, 0), (-1.0, 3), (f64::NAN, 3)] {
        assert!(
            matches!(
                iterative(tolerance, max_rounds),
                Err(CoordinationError::Invalid(_))
            ),
            "tolerance {tolerance}, {max_rounds} rounds accepted"
        );
    }
}

// A leadership reported for a stranger, or for a participant that is not
// running, counts for nothing (mutant: `||` as `&&` in the observer's
// check, which took either).
#[tokio::test(start_paused = true)]
async fn a_stranger_or_a_stopped_member_is_not_made_leader() {
    let agents = silent("node", &["a", "b", "x"]);
    agents.set_status(&"b".into(), mabeam_supervision_core::AgentStatus::Stopped);
    let election =
        mabeam_coordination::Election::observe(coordinator(&agents), election_config(&["a", "b"]))
            .unwrap();
    let now = tokio::time::Instant::now();
    for leader in ["x", "b"] {
        let leadership = mabeam_coordination::Leadership {
            leader: leader.into(),
            term: 1,
            token: 1,
            lease_until: now + Duration::from_secs(1),
        };
        election.reporter().leading(&leadership, now);
        assert_eq!(election.leader(), None, "{leader} was made leader");
    }
}

// A lock's holder is gone at the very end of its lease (mutant: `>` as
// `>=` in `LeaseLock::holder`).
#[tokio::test(start_paused = true)]
async fn a_lock_has_no_holder_at_the_end_of_its_lease() {
    let coordinator = coordinator(&silent("worker", &["a"]));
    let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
    grant(&lock, "a").await;
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(lock.holder().is_some());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(lock.holder(), None);
}

// Ranked-choice and approval votes with options are valid (mutant: the
// guard `options.is_empty()` of `Rule::check` made `true`, which refused
// them all).
#[test]
fn a_ranked_or_approval_vote_with_options_is_valid() {
    for rule in [Rule::RankedChoice, Rule::Approval] {
        let mut proposal = proposal(rule.clone());
        assert!(proposal.validate().is_err(), "{rule:?} without options");
        proposal.options = strings(&["red", "green"]);
        assert_eq!(proposal.validate(), Ok(()), "{rule:?}");
    }
}

// A weighted vote in which nobody weighs anything does not pass, however
// small its threshold (mutant: `total > 0.0` as `>=` in `tally`, which
// passed it at a threshold under the rounding slack).
#[test]
fn a_weighted_vote_of_no_weight_does_not_pass() {
    let ids = ids(&["a0", "a1"]);
    let rule = Rule::Weighted {
        weights: ids.iter().map(|id| (id.clone(), 0.0)).collect(),
        threshold: 1e-13,
    };
    let ballots: Vec<(AgentId, Ballot)> = ids.iter().map(|id| (id.clone(), Ballot::Yes)).collect();
    let (outcome, why) = tally(&rule, &[], &ids, &ballots);
    assert_eq!(outcome, Outcome::Rejected, "{why}");
}

// Exactly half the first choices is no majority: the runoff goes on
// (mutant: `>` as `>=` in `instant_runoff`). Six voters: red 3, green 2,
// blue 1 (then green). Blue goes; green and red tie at 3, and red, listed
// after green, goes: green wins.
#[test]
fn half_the_first_choices_is_no_majority() {
    let options = strings(&["green", "red", "blue"]);
    let ids = ids(&["a0", "a1", "a2", "a3", "a4", "a5"]);
    let rankings: [&[&str]; 6] = [
        &["red"],
        &["red"],
        &["red"],
        &["green"],
        &["green"],
        &["blue", "green"],
    ];
    let ballots: Vec<(AgentId, Ballot)> = ids
        .iter()
        .zip(rankings)
        .map(|(id, ranking)| (id.clone(), Ballot::Ranking(strings(ranking))))
        .collect();
    let (outcome, why) = tally(&Rule::RankedChoice, &options, &ids, &ballots);
    assert_eq!(outcome, Outcome::Chosen("green".into()), "{why}");
}

// An integer variable holds integers in its range only (mutant: the
// range guard of `ValueType::check`'s integer arm made `true`); a float
// range of one value is a range (mutant: `min > max` as `>=` in
// `VariableSpace::define`).
#[tokio::test(start_paused = true)]
async fn variable_ranges_hold_their_ends_only() {
    let integer = ValueType::Integer { min: 0, max: 10 };
    assert_eq!(integer.check(&json!(10)), Ok(()));
    assert!(integer.check(&json!(11)).is_err());
    assert!(integer.check(&json!(-1)).is_err());
    let space = VariableSpace::new(coordinator(&ScriptedDirectory::new()));
    space
        .define(VariableSpec::new(
            "one",
            ValueType::Float { min: 1.0, max: 1.0 },
            json!(1.0),
        ))
        .expect("a range of one value");
}

// Successive halving with eta 2 (the least) runs (mutant: `eta < 2` as
// `<=` in `Coordinator::optimize`'s check).
#[tokio::test(start_paused = true)]
async fn successive_halving_with_eta_two_runs() {
    let agents = ScriptedDirectory::new();
    agents.add("e", "evaluator", |_| Answer::Reply(json!({ "score": 1.0 })));
    let method = Method::SuccessiveHalving {
        candidates: 2,
        min_budget: 1.0,
        eta: 2,
    };
    let result = bounded(
        "successive halving",
        TEST_LIMIT,
        coordinator(&agents).optimize(spec_x(0.0, 1.0, method)),
    )
    .await
    .expect("eta 2 is valid");
    assert!(result.best.is_some());
}

// An election's rpc timeout must be above zero and under the heartbeat,
// each refused alone (mutant: `||` as `&&` in `ElectionConfig::validate`).
#[test]
fn an_rpc_timeout_is_checked() {
    let with = |rpc_ms: u64| ElectionConfig {
        rpc_timeout: Duration::from_millis(rpc_ms),
        ..election_config(&["a"])
    };
    assert_eq!(with(50).validate(), Ok(()));
    for rpc_ms in [0, 250, 300] {
        assert!(
            matches!(with(rpc_ms).validate(), Err(CoordinationError::Invalid(_))),
            "an rpc timeout of {rpc_ms} ms accepted"
        );
    }
}

// A member that has just voted for a candidate waits a whole election
// timeout before it campaigns itself (mutant: `Shared::reset_timer` ->
// (), which left its timer as it was: it campaigned at once).
#[tokio::test(start_paused = true)]
async fn a_vote_given_restarts_the_election_timer() {
    let agents = silent("node", &["b", "c"]);
    let member = member_a(
        election_config(&["a", "b", "c"]),
        &agents,
        first_timeout(Duration::from_millis(100)),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let vote = member.answer(&Envelope::new(
        mabeam_coordination::REQUEST_VOTE_PROTOCOL,
        json!({"term": 1, "candidate": "b"}),
        Duration::from_millis(50),
    ));
    assert_eq!(vote, Some(json!({"granted": true, "term": 1})));
    // Its first timeout (100 ms) has passed; the next is 1 to 2 s after
    // the vote.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(member.term(), 1, "it campaigned right after voting");
    assert!(agents.received(&"c".into()).is_empty());
}

// A leader that goes away (its member dropped with its agent) steps down
// at once: the observer's office is vacant before its lease ends
// (mutant: `Shared::step_down` -> (), which left the observer waiting for
// the lease to run out).
#[tokio::test(start_paused = true)]
async fn a_dropped_leader_steps_down_at_once() {
    let agents = silent("node", &["a"]);
    let election =
        mabeam_coordination::Election::observe(coordinator(&agents), election_config(&["a"]))
            .unwrap();
    let member = member_a(
        election_config(&["a"]),
        &agents,
        MemberOptions {
            reporter: Some(election.reporter()),
            ..first_timeout(Duration::from_millis(10))
        },
    );
    let leadership = bounded(
        "a's election",
        TEST_LIMIT,
        member.campaign(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert_eq!(election.leader().map(|l| l.leader), Some("a".into()));
    drop(member);
    assert!(tokio::time::Instant::now() < leadership.lease_until);
    assert_eq!(election.leader(), None, "the dropped leader still leads");
}

// A majority of first choices wins at once, with no elimination: 3 of 5
// (mutant: `2 * count` as `2 + count` in `instant_runoff`, 5 > 5 false,
// which eliminated options first).
#[test]
fn three_of_five_first_choices_win_at_once() {
    let options = strings(&["red", "green", "blue"]);
    let ids = ids(&["a0", "a1", "a2", "a3", "a4"]);
    let rankings: [&[&str]; 5] = [&["red"], &["red"], &["red"], &["green"], &["blue"]];
    let ballots: Vec<(AgentId, Ballot)> = ids
        .iter()
        .zip(rankings)
        .map(|(id, ranking)| (id.clone(), Ballot::Ranking(strings(ranking))))
        .collect();
    let (outcome, why) = tally(&Rule::RankedChoice, &options, &ids, &ballots);
    assert_eq!(outcome, Outcome::Chosen("red".into()));
    assert_eq!(why, "red has 3 of 5 first choices");
}

// A step-down reported for another term, or by another member, leaves the
// current leader in office (mutant: `&&` as `||` in the observer's
// `vacate`, which emptied the office for either).
#[tokio::test(start_paused = true)]
async fn a_step_down_of_another_tenure_leaves_the_leader_in_office() {
    let (_agents, election, leadership) = observed_leader(3, Duration::from_secs(1));
    let later = tokio::time::Instant::now() + Duration::from_millis(200);
    election.reporter().stepped_down(&"a".into(), 2, later);
    election.reporter().stepped_down(&"b".into(), 3, later);
    assert_eq!(election.leader(), Some(leadership.clone()));
    assert_eq!(election.history()[0].until, leadership.lease_until);
}

// A trial answered at its first attempt took one attempt (mutant: `+` as
// `*` in `Coordinator::evaluate`, which counted none).
#[tokio::test(start_paused = true)]
async fn a_trial_answered_at_once_took_one_attempt() {
    let agents = ScriptedDirectory::new();
    agents.add("e", "evaluator", |_| Answer::Reply(json!({ "score": 1.0 })));
    let result = bounded(
        "the optimisation",
        TEST_LIMIT,
        coordinator(&agents).optimize(spec_x(0.0, 1.0, Method::Random { trials: 2 })),
    )
    .await
    .unwrap();
    assert_eq!(result.trials.len(), 2);
    assert!(
        result.trials.iter().all(|t| t.attempts == 1),
        "{:?}",
        result.trials
    );
}

/// Peers `b` and `c` that grant every vote and acknowledge every
/// heartbeat, `ack_after` late.
fn agreeing_peers(ack_after: Duration) -> ScriptedDirectory {
    let agents = ScriptedDirectory::new();
    for peer in ["b", "c"] {
        agents.add(peer, "node", move |envelope| {
            let term = envelope.body["term"].clone();
            if envelope.protocol.as_ref() == HEARTBEAT_PROTOCOL {
                Answer::late(ack_after, json!({"ack": true, "term": term}))
            } else {
                Answer::Reply(json!({"granted": true, "term": term}))
            }
        });
    }
    agents
}

/// `member`, in term 1, hears a heartbeat of leader `c` of that term and
/// acknowledges it (it follows `c`).
fn hears_of_leader_c_in_term_one(member: &ElectionMember) {
    let term = member.term();
    assert_eq!(term, 1);
    let ack = member.answer(&Envelope::new(
        HEARTBEAT_PROTOCOL,
        json!({"term": term, "leader": "c"}),
        Duration::from_millis(50),
    ));
    assert_eq!(ack, Some(json!({"ack": true, "term": term})));
}

// A new leader that hears of another leader of its own term while its
// first heartbeat round runs follows it, and does not take the lease when
// the round ends (mutant: `&&` as `||` in the leader's check after its
// round, which renewed the lease of a member no longer leading).
#[tokio::test(start_paused = true)]
async fn a_leader_following_another_during_its_round_takes_no_lease() {
    let agents = agreeing_peers(Duration::from_millis(20));
    let member = member_a(
        election_config(&["a", "b", "c"]),
        &agents,
        first_timeout(Duration::from_millis(10)),
    );
    // Its vote request, then its first heartbeat (acknowledged 20 ms late).
    bounded(
        "a's first heartbeat",
        TEST_LIMIT,
        agents.wait_received(&"b".into(), 2),
    )
    .await;
    hears_of_leader_c_in_term_one(&member);
    // The round has ended, both acknowledgements in.
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        member.leadership(),
        None,
        "a took a lease while following c"
    );
}

// A candidate that hears of a leader of its own term while its vote
// requests are out follows it, and does not lead when its votes come in
// (mutant: `&&` as `||` in the candidate's check after its campaign,
// which made a follower leader on a majority of the same term).
#[tokio::test(start_paused = true)]
async fn a_candidate_following_a_leader_does_not_lead_on_its_votes() {
    let agents = ScriptedDirectory::new();
    agents.add("b", "node", |envelope| {
        let term = envelope.body["term"].clone();
        if envelope.protocol.as_ref() == HEARTBEAT_PROTOCOL {
            Answer::Reply(json!({"ack": true, "term": term}))
        } else {
            Answer::late(
                Duration::from_millis(20),
                json!({"granted": true, "term": term}),
            )
        }
    });
    agents.add("c", "node", |_| Answer::Silent);
    let member = member_a(
        election_config(&["a", "b", "c"]),
        &agents,
        first_timeout(Duration::from_millis(10)),
    );
    // Its vote request is out, granted 20 ms late.
    bounded(
        "a's campaign",
        TEST_LIMIT,
        agents.wait_received(&"b".into(), 1),
    )
    .await;
    hears_of_leader_c_in_term_one(&member);
    // Its round has ended (and a leader's first heartbeat round would
    // have too).
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(member.leadership(), None, "a leads while following c");
    assert!(
        agents
            .received(&"b".into())
            .iter()
            .all(|e| e.protocol.as_ref() != HEARTBEAT_PROTOCOL),
        "a sent heartbeats"
    );
}

// A ranked-choice answer reads as its ranking, each option once (mutant:
// the `RankedChoice` arm of `Ballot::read` deleted, which read it as a
// yes/no vote and refused it).
#[test]
fn a_ranking_reads_as_its_options_in_order() {
    let options = strings(&["red", "green"]);
    let read = Ballot::read(
        &Rule::RankedChoice,
        &options,
        &json!({ "ranking": ["green", "red", "green"] }),
    );
    assert_eq!(read, Ok(Ballot::Ranking(strings(&["green", "red"]))));
}

// A weighted vote whose yes share is exactly its threshold passes (mutant:
// `-` as `+` in `tally`'s rounding slack, which asked for a hair more):
// one of two equal weights, threshold one half.
#[test]
fn a_weighted_share_at_its_threshold_passes() {
    let ids = ids(&["a0", "a1"]);
    let rule = Rule::Weighted {
        weights: HashMap::new(),
        threshold: 0.5,
    };
    let ballots = vec![(ids[0].clone(), Ballot::Yes), (ids[1].clone(), Ballot::No)];
    let (outcome, why) = tally(&rule, &[], &ids, &ballots);
    assert_eq!(outcome, Outcome::Passed, "{why}");
}

// A session whose proposal is refused fails saying why, not as cancelled
// (mutant: the `Failed` arm of `Coordinator::wait` deleted).
#[tokio::test(start_paused = true)]
async fn a_refused_session_fails_with_why() {
    let agents = silent("voter", &["v"]);
    let coordinator = coordinator(&agents);
    let mut refused = proposal(Rule::Majority);
    refused.timeout = Duration::ZERO;
    let id = coordinator.start_vote(refused);
    let result = bounded("the session's end", TEST_LIMIT, coordinator.wait(id)).await;
    assert!(
        matches!(&result, Err(CoordinationError::Invalid(why)) if why.contains("timeout")),
        "{result:?}"
    );
}

// A choice among options is a valid parameter (mutant: the guard
// `options.is_empty()` of `Param::check` made `true`, which refused every
// choice).
#[tokio::test(start_paused = true)]
async fn a_choice_among_options_is_searched() {
    let agents = ScriptedDirectory::new();
    agents.add("e", "evaluator", |_| Answer::Reply(json!({ "score": 1.0 })));
    let spec = OptimizeSpec {
        space: vec![Param::Choice {
            name: "kind".into(),
            options: vec![json!("a"), json!("b")],
        }],
        ..spec_x(0.0, 1.0, Method::Random { trials: 2 })
    };
    let result = bounded(
        "the optimisation",
        TEST_LIMIT,
        coordinator(&agents).optimize(spec),
    )
    .await
    .unwrap();
    let kind = &result.best.expect("a best trial").params["kind"];
    assert!(*kind == json!("a") || *kind == json!("b"), "{kind}");
}

// A follower whose timer ends exactly as the lease it promised ends
// campaigns then (mutant: `until > now` as `>=` in the member's timer,
// which waited another election timeout). The timeout range is one value,
// the lease's length: the timer and the promise end together.
#[tokio::test(start_paused = true)]
async fn a_promise_ending_with_the_timer_delays_no_campaign() {
    let agents = silent("node", &["b", "c"]);
    let config = ElectionConfig {
        election_timeout: (Duration::from_secs(1), Duration::from_secs(1)),
        ..election_config(&["a", "b", "c"])
    };
    let member = member_a(config, &agents, first_timeout(Duration::from_secs(3_600)));
    let ack = member.answer(&Envelope::new(
        HEARTBEAT_PROTOCOL,
        json!({"term": 1, "leader": "b"}),
        Duration::from_millis(50),
    ));
    assert_eq!(ack, Some(json!({"ack": true, "term": 1})));
    // Both end 1 s from now; the mutant's campaign would come 1 s later.
    tokio::time::sleep(Duration::from_millis(1_010)).await;
    assert_eq!(
        agents.received(&"c".into()).len(),
        1,
        "no campaign when the promise ended"
    );
    assert_eq!(member.term(), 2);
}

// The coordinator's clock is the one it was given (mutant:
// `Coordinator::clock` -> a default clock, the system's).
#[tokio::test]
async fn the_coordinator_keeps_the_clock_it_was_given() {
    let start = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let (clock, _wall) = Clock::manual(start);
    let coordinator = Coordinator::new(Arc::new(ScriptedDirectory::new()), clock);
    assert_eq!(coordinator.clock().unix_millis(), 1_000_000);
}

// A promise to a leader binds until its lease ends, not at its end: a
// vote asked for exactly then is granted (mutant: `*until > now` as `>=`
// in the member's answer to vote requests, which refused it).
#[tokio::test(start_paused = true)]
async fn a_promise_binds_no_vote_at_the_end_of_its_lease() {
    let config = ElectionConfig {
        // Its own timer (restarted by the heartbeat) ends after the lease.
        election_timeout: (Duration::from_secs(2), Duration::from_secs(2)),
        ..election_config(&["a", "b", "c"])
    };
    let member = member_a(
        config,
        &silent("node", &["b", "c"]),
        first_timeout(Duration::from_secs(3_600)),
    );
    let ack = member.answer(&Envelope::new(
        HEARTBEAT_PROTOCOL,
        json!({"term": 1, "leader": "b"}),
        Duration::from_millis(50),
    ));
    assert_eq!(ack, Some(json!({"ack": true, "term": 1})));
    // The promised lease (1 s) ends now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let vote = member.answer(&Envelope::new(
        mabeam_coordination::REQUEST_VOTE_PROTOCOL,
        json!({"term": 2, "candidate": "c"}),
        Duration::from_millis(50),
    ));
    assert_eq!(vote, Some(json!({"granted": true, "term": 2})));
}

/// A directory of the election peers `b` and `c` that grant every vote
/// and acknowledge every heartbeat at the very deadline of the request.
#[derive(Clone)]
struct AnswersAtTheDeadline(ScriptedDirectory);

impl AgentDirectory for AnswersAtTheDeadline {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.0.agent(id)
    }
    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.0.info(id)
    }
    fn agents(&self) -> Vec<AgentInfo> {
        self.0.agents()
    }
    fn ask(
        &self,
        _id: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<serde_json::Value, DirectoryError>> {
        Box::pin(async move {
            tokio::time::sleep_until(envelope.deadline).await;
            let term = envelope.body["term"].clone();
            Ok(json!({"granted": true, "ack": true, "term": term}))
        })
    }
    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        self.0.cast(id, envelope)
    }
    fn subscribe(&self) -> AgentStatusChanges {
        self.0.subscribe()
    }
}

// An answer arriving at the very end of the rpc timeout counts (mutant:
// `reply.at > deadline` as `>=` in the member's `round`, which dropped
// every vote and heartbeat answered then: it never led).
#[tokio::test(start_paused = true)]
async fn answers_at_the_rpc_deadline_count() {
    let peers = AnswersAtTheDeadline(silent("node", &["b", "c"]));
    let member = ElectionMember::start(
        "a".into(),
        election_config(&["a", "b", "c"]),
        Arc::new(peers),
        Clock::tokio(),
        first_timeout(Duration::from_millis(10)),
    )
    .unwrap();
    let leadership = bounded(
        "a's election",
        TEST_LIMIT,
        member.campaign(Duration::from_secs(60)),
    )
    .await;
    assert!(leadership.is_ok(), "{leadership:?}");
}

// A choice among no options is refused up front (mutant: the guard
// `options.is_empty()` of `Param::check` made `false`, which accepted it).
#[tokio::test(start_paused = true)]
async fn a_choice_among_no_options_is_refused() {
    let agents = silent("evaluator", &["e"]);
    let spec = OptimizeSpec {
        space: vec![Param::Choice {
            name: "kind".into(),
            options: Vec::new(),
        }],
        ..spec_x(0.0, 1.0, Method::Random { trials: 2 })
    };
    let error = refused_optimisation(&coordinator(&agents), spec).await;
    assert!(
        matches!(&error, CoordinationError::Invalid(why) if why.contains("no options")),
        "{error:?}"
    );
}

// The coordinator's telemetry is the one it was given (mutant:
// `Coordinator::telemetry` -> a default one, which reached no handler).
#[tokio::test]
async fn the_coordinator_keeps_the_telemetry_it_was_given() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, events::COORDINATION_DROPPED);
    let coordinator = Coordinator::new(Arc::new(ScriptedDirectory::new()), Clock::tokio())
        .with_telemetry(telemetry);
    coordinator
        .telemetry()
        .emit(events::COORDINATION_DROPPED, &[], &[]);
    assert_eq!(probe.drain().len(), 1);
}

// A supermajority in (0, 1] is a valid rule (mutant: the guard
// `!share(*t)` of `Rule::check` made `true`, which refused every
// supermajority).
#[test]
fn a_supermajority_rule_is_checked() {
    assert_eq!(proposal(Rule::Supermajority(2.0 / 3.0)).validate(), Ok(()));
    assert_eq!(proposal(Rule::Supermajority(1.0)).validate(), Ok(()));
    for threshold in [0.0, 1.5, f64::NAN] {
        assert!(
            matches!(
                proposal(Rule::Supermajority(threshold)).validate(),
                Err(CoordinationError::Invalid(_))
            ),
            "threshold {threshold} accepted"
        );
    }
}

// A rejected proposal did not pass (mutant: `Decision::passed` -> true);
// a weighted vote of no weight says its share is nothing (mutant: `total
// > 0.0` as `>=` before the share's division, which said NaN).
#[tokio::test(start_paused = true)]
async fn a_rejected_vote_did_not_pass_and_says_its_share() {
    let agents = ScriptedDirectory::new();
    agents.add("v", "voter", |_| Answer::Reply(json!({ "vote": "no" })));
    let decision = bounded(
        "the vote",
        TEST_LIMIT,
        coordinator(&agents).vote(proposal(Rule::Majority)),
    )
    .await
    .unwrap();
    assert_eq!(decision.outcome, Outcome::Rejected);
    assert!(!decision.passed());
    let ids = ids(&["a0"]);
    let rule = Rule::Weighted {
        weights: HashMap::from([(ids[0].clone(), 0.0)]),
        threshold: 0.5,
    };
    let (outcome, why) = tally(&rule, &[], &ids, &[(ids[0].clone(), Ballot::Yes)]);
    assert_eq!(outcome, Outcome::Rejected);
    assert!(why.contains("(0.000)"), "{why}");
}

// A grid over a float range of one value has one point, and a grid of one
// point is the range's middle (mutant: `||` as `&&` in `Param::grid`,
// which drew the one value three times, and 0 / 0 for the middle).
#[tokio::test(start_paused = true)]
async fn a_grid_of_one_value_or_one_point_has_one_trial() {
    let agents = ScriptedDirectory::new();
    agents.add("e", "evaluator", |_| Answer::Reply(json!({ "score": 1.0 })));
    let coordinator = coordinator(&agents);
    for (min, max, points, x) in [(2.0, 2.0, 3, 2.0), (0.0, 1.0, 1, 0.5)] {
        let result = bounded(
            "the grid search",
            TEST_LIMIT,
            coordinator.optimize(spec_x(min, max, Method::Grid { points })),
        )
        .await
        .unwrap();
        let xs: Vec<_> = result
            .trials
            .iter()
            .map(|t| t.params["x"].clone())
            .collect();
        assert_eq!(xs, [json!(x)], "{min}..={max}, {points} points");
    }
}

// A lock whose status feed is replaced (the agent layer restarted) keeps
// its grant while its holder still runs (mutant: the `!` of the holder
// check deleted in `LockInner::stopped`, which freed the lock of every
// running holder at a resync).
#[tokio::test(start_paused = true)]
async fn a_resync_keeps_the_lock_of_a_running_holder() {
    let feed = FlakyFeed::new(16);
    feed.agents.add("h", "worker", |_| Answer::Silent);
    let coordinator = Coordinator::new(Arc::new(feed.clone()), Clock::tokio());
    let lock = LeaseLock::new(&coordinator, Duration::from_secs(10));
    subscribers_reach(&feed, "the lock to watch", |n| n > 0).await;
    let held = grant(&lock, "h").await;
    feed.go_down();
    feed.come_back();
    subscribers_reach(&feed, "the lock to watch the new feed", |n| n > 0).await;
    // The resync that follows the new subscription.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(lock.holder(), Some(held), "a running holder lost the lock");
}

// A vote request of the term the member already voted in, from another
// candidate, is refused (mutant: `>` as `>=` in the member's `adopt`,
// which forgot its vote and gave a second one in the same term).
#[tokio::test(start_paused = true)]
async fn one_vote_per_term() {
    let member = member_a(
        election_config(&["a", "b", "c"]),
        &silent("node", &["b", "c"]),
        first_timeout(Duration::from_secs(3_600)),
    );
    let vote = |candidate: &str| {
        member.answer(&Envelope::new(
            mabeam_coordination::REQUEST_VOTE_PROTOCOL,
            json!({"term": 1, "candidate": candidate}),
            Duration::from_millis(50),
        ))
    };
    assert_eq!(vote("b"), Some(json!({"granted": true, "term": 1})));
    assert_eq!(vote("c"), Some(json!({"granted": false, "term": 1})));
    assert_eq!(vote("b"), Some(json!({"granted": true, "term": 1})));
}
