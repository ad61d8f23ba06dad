//! Auctions among agents: bids come from scripted agents through the
//! AgentDirectory contract, on tokio's paused clock.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use mabeam_economics::{
    Auctioneer, CombinatorialSpec, DutchSpec, EnglishSpec, PriceRule, SealedSpec, Verdict,
};
use mabeam_supervision_core::{
    AgentSelection, Clock, Event, EventSeq, EventSink, EventSinkError, ExitReason, Namespace,
    ProcessHandle, Telemetry,
    testkit::{Answer, ScriptedDirectory},
};
use parking_lot::Mutex;
use serde_json::{Value, json};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn auctioneer(agents: &ScriptedDirectory) -> Auctioneer {
    Auctioneer::new(Arc::new(agents.clone()), Clock::tokio())
}

/// An agent that bids the standing minimum while it is at most `value`.
fn english_bidder(value: f64) -> impl FnMut(&mabeam_supervision_core::Envelope) -> Answer + Send {
    move |envelope| {
        let minimum = envelope.body["minimum"].as_f64().unwrap_or(f64::MAX);
        if minimum <= value {
            Answer::Reply(json!({"bid": minimum}))
        } else {
            Answer::Reply(json!({"bid": null}))
        }
    }
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

// A Vickrey auction among agents that bid, stay silent, crash, refuse the
// protocol or answer nonsense: the outcome says who bid what and why.
#[tokio::test(start_paused = true)]
async fn vickrey_among_agents_with_failures() {
    let agents = ScriptedDirectory::new();
    agents.add("high", "bidder", |_| Answer::Reply(json!({"bid": 90.0})));
    agents.add("second", "bidder", |_| Answer::Reply(json!({"bid": 70.0})));
    agents.add("silent", "bidder", |_| Answer::Silent);
    agents.add("crasher", "bidder", |_| {
        Answer::Crash(ExitReason::error("boom"))
    });
    agents.add("other", "bidder", |_| Answer::Unsupported);
    agents.add("nonsense", "bidder", |_| {
        Answer::Reply(json!({"bid": "lots"}))
    });
    agents.add("negative", "bidder", |_| Answer::Reply(json!({"bid": -5})));
    agents.add("late", "bidder", |_| {
        Answer::late(ms(500), json!({"bid": 1000.0}))
    });
    agents.add("passer", "bidder", |_| Answer::Reply(json!({"bid": null})));
    agents.add("not-invited", "seller", |_| {
        Answer::Reply(json!({"bid": 5000.0}))
    });
    let sink = Arc::new(Recorded::default());
    let auctioneer = auctioneer(&agents).with_event_sink(sink.clone());
    let outcome = auctioneer
        .sealed(SealedSpec {
            item: "gpu-hour".into(),
            rule: PriceRule::SecondPrice,
            reserve: 10.0,
            invitees: AgentSelection::Kind("bidder".into()),
            bidding: ms(100),
        })
        .await
        .unwrap();
    let award = outcome.award().unwrap();
    assert_eq!((award.winner.as_str(), award.price), ("high", 70.0));
    assert!(outcome.explanation.contains("second-highest bid 70"));

    let refused: Vec<&str> = outcome
        .bids
        .iter()
        .filter(|b| matches!(b.verdict, Verdict::Refused(_)))
        .map(|b| b.bidder.as_str())
        .collect();
    assert_eq!(refused.len(), 2);
    assert!(refused.contains(&"nonsense") && refused.contains(&"negative"));
    let reason = |who: &str| {
        outcome
            .no_answer
            .iter()
            .find(|(id, _)| id.as_str() == who)
            .map(|(_, why)| why.clone())
            .unwrap_or_default()
    };
    assert!(reason("silent").contains("in time"));
    assert!(
        reason("late").contains("in time"),
        "a bid after the close never counts"
    );
    assert!(reason("crasher").contains("crashed"));
    assert!(reason("other").contains("does not support"));
    assert_eq!(reason("passer"), "passed");
    assert!(
        outcome
            .bids
            .iter()
            .all(|b| b.bidder.as_str() != "not-invited")
    );

    let events = sink.0.lock();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "auction_closed");
    assert_eq!(events[0].data["awards"][0]["winner"], json!("high"));
}

// Equal bids arriving together: the first invited wins, every time.
#[tokio::test(start_paused = true)]
async fn simultaneous_equal_bids_resolve_deterministically() {
    for _ in 0..5 {
        let agents = ScriptedDirectory::new();
        for id in ["c", "a", "b"] {
            agents.add(id, "bidder", |_| Answer::Reply(json!({"bid": 10.0})));
        }
        let outcome = auctioneer(&agents)
            .sealed(SealedSpec {
                item: "x".into(),
                rule: PriceRule::FirstPrice,
                reserve: 0.0,
                invitees: AgentSelection::Ids(vec!["b".into(), "c".into(), "a".into()]),
                bidding: ms(10),
            })
            .await
            .unwrap();
        assert_eq!(outcome.award().unwrap().winner.as_str(), "b");
    }
}

// English among agents with private values: the highest value wins at
// about the second value; the others drop out.
#[tokio::test(start_paused = true)]
async fn english_among_agents() {
    let agents = ScriptedDirectory::new();
    agents.add("a", "bidder", english_bidder(50.0));
    agents.add("b", "bidder", english_bidder(40.0));
    agents.add("c", "bidder", english_bidder(5.0));
    let outcome = auctioneer(&agents)
        .english(EnglishSpec {
            item: "slot".into(),
            reserve: 10.0,
            min_increment: 5.0,
            duration: ms(10_000),
            soft_close: ms(100),
            extension: ms(100),
            round: ms(50),
            invitees: AgentSelection::Kind("bidder".into()),
        })
        .await
        .unwrap();
    let award = outcome.award().unwrap();
    assert_eq!((award.winner.as_str(), award.price), ("a", 40.0));
    // b raised while the minimum was within its value, then passed at 45.
    let b_bids: Vec<f64> = outcome
        .bids
        .iter()
        .filter(|bid| bid.bidder.as_str() == "b" && bid.verdict == Verdict::Accepted)
        .map(|bid| bid.amount)
        .collect();
    assert_eq!(b_bids, [15.0, 25.0, 35.0]);
    assert_eq!(outcome.no_answer, [("c".into(), "passed".to_owned())]);
}

// A bid near the deadline extends it; an answer after the deadline is not
// a bid.
#[tokio::test(start_paused = true)]
async fn english_soft_close_and_late_bids() {
    let agents = ScriptedDirectory::new();
    let mut first = true;
    agents.add("early", "bidder", move |_| {
        let bid = if std::mem::take(&mut first) {
            json!(10.0)
        } else {
            Value::Null
        };
        Answer::Reply(json!({ "bid": bid }))
    });
    agents.add("sniper", "bidder", |env| {
        let minimum = env.body["minimum"].as_f64().unwrap();
        Answer::late(ms(900), json!({ "bid": minimum }))
    });
    agents.add("too-late", "bidder", |_| {
        Answer::late(ms(1100), json!({"bid": 99.0}))
    });
    let outcome = auctioneer(&agents)
        .english(EnglishSpec {
            item: "slot".into(),
            reserve: 10.0,
            min_increment: 1.0,
            duration: ms(1000),
            soft_close: ms(200),
            extension: ms(300),
            round: ms(5000),
            invitees: AgentSelection::Ids(vec!["early".into(), "sniper".into(), "too-late".into()]),
        })
        .await
        .unwrap();
    // Both answer the first call at the minimum 10: early's arrives at
    // 0 ms and stands; the sniper's 10 at 900 ms is under 10 + 1.
    let award = outcome.award().unwrap();
    assert_eq!(award.winner.as_str(), "early");
    let sniper = outcome
        .bids
        .iter()
        .find(|b| b.bidder.as_str() == "sniper")
        .unwrap();
    assert!(matches!(sniper.verdict, Verdict::Refused(_)), "{sniper:?}");
    assert!(
        outcome
            .no_answer
            .iter()
            .any(|(id, why)| id.as_str() == "too-late" && why.contains("in time"))
    );

    // Now the sniper raises properly in the window: the deadline moves.
    let agents = ScriptedDirectory::new();
    let mut first = true;
    agents.add("early", "bidder", move |_| {
        let bid = if std::mem::take(&mut first) {
            json!(10.0)
        } else {
            Value::Null
        };
        Answer::Reply(json!({ "bid": bid }))
    });
    agents.add("sniper", "bidder", |env| {
        let minimum = env.body["minimum"].as_f64().unwrap();
        Answer::late(ms(900), json!({ "bid": minimum + 5.0 }))
    });
    let outcome = auctioneer(&agents)
        .english(EnglishSpec {
            item: "slot".into(),
            reserve: 10.0,
            min_increment: 1.0,
            duration: ms(1000),
            soft_close: ms(200),
            extension: ms(300),
            round: ms(5000),
            invitees: AgentSelection::Ids(vec!["early".into(), "sniper".into()]),
        })
        .await
        .unwrap();
    let award = outcome.award().unwrap();
    // The sniper's 15 at 900 ms beats early's 10 (11 needed) and extends
    // the deadline to 1200 ms; early then passes and the auction ends.
    assert_eq!((award.winner.as_str(), award.price), ("sniper", 15.0));
    assert!(
        outcome.explanation.contains("extended the deadline 1"),
        "{}",
        outcome.explanation
    );
}

// Dutch among agents: the agent whose threshold the falling price reaches
// first wins at that price.
#[tokio::test(start_paused = true)]
async fn dutch_among_agents() {
    let agents = ScriptedDirectory::new();
    let at_most = |limit: f64| {
        move |env: &mabeam_supervision_core::Envelope| {
            Answer::Reply(json!({"accept": env.body["price"].as_f64().unwrap() <= limit}))
        }
    };
    agents.add("a", "bidder", at_most(60.0));
    agents.add("b", "bidder", at_most(70.0));
    agents.add("c", "bidder", |_| Answer::Silent);
    let clock = Clock::tokio();
    let start = clock.now();
    let outcome = Auctioneer::new(Arc::new(agents.clone()), clock.clone())
        .dutch(DutchSpec {
            item: "slot".into(),
            start_price: 100.0,
            step: 10.0,
            tick: ms(100),
            reserve: 40.0,
            invitees: AgentSelection::Kind("bidder".into()),
        })
        .await
        .unwrap();
    let award = outcome.award().unwrap();
    assert_eq!((award.winner.as_str(), award.price), ("b", 70.0));
    assert!(clock.now() - start >= ms(300) && clock.now() - start <= ms(400));
    // Nobody below the reserve: unsold.
    let agents = ScriptedDirectory::new();
    agents.add("cheap", "bidder", at_most(10.0));
    let outcome = auctioneer(&agents)
        .dutch(DutchSpec {
            item: "slot".into(),
            start_price: 100.0,
            step: 30.0,
            tick: ms(100),
            reserve: 40.0,
            invitees: AgentSelection::Kind("bidder".into()),
        })
        .await
        .unwrap();
    assert!(outcome.awards.is_empty());
    assert_eq!(outcome.no_answer, [("cheap".into(), "declined".to_owned())]);
}

// Combinatorial among agents: bundle bids, invalid ones refused.
#[tokio::test(start_paused = true)]
async fn combinatorial_among_agents() {
    let agents = ScriptedDirectory::new();
    agents.add("pair", "bidder", |_| {
        Answer::Reply(json!({"bids": [{"items": ["cpu", "gpu"], "amount": 10.0}]}))
    });
    agents.add("cpu", "bidder", |_| {
        Answer::Reply(json!({"bids": [{"items": ["cpu"], "amount": 6.0}]}))
    });
    agents.add("gpu", "bidder", |_| {
        Answer::Reply(json!({"bids": [{"items": ["gpu"], "amount": 6.0}, {"items": ["tpu"], "amount": 50.0}]}))
    });
    let outcome = auctioneer(&agents)
        .combinatorial(CombinatorialSpec {
            items: vec![("cpu".into(), 1.0), ("gpu".into(), 1.0)],
            invitees: AgentSelection::Kind("bidder".into()),
            bidding: ms(100),
        })
        .await
        .unwrap();
    assert_eq!(outcome.revenue(), 12.0);
    let mut winners: Vec<&str> = outcome.awards.iter().map(|a| a.winner.as_str()).collect();
    winners.sort();
    assert_eq!(winners, ["cpu", "gpu"]);
    assert!(
        outcome
            .bids
            .iter()
            .any(|b| b.items == ["tpu"] && matches!(b.verdict, Verdict::Refused(_)))
    );
}

#[derive(kameo::Actor)]
struct Member;

// Invitation by registry group: the group's members, by their names.
#[tokio::test(start_paused = true)]
async fn invite_a_registry_group() {
    let registry = Arc::new(mabeam_process_registry::ProcessRegistry::new(
        Telemetry::disabled(),
    ));
    let ns = Namespace::unique_test();
    let agents = ScriptedDirectory::new();
    let mut handles = Vec::new();
    for (id, bid, member) in [
        ("g1", 5.0, true),
        ("g2", 8.0, true),
        ("outsider", 100.0, false),
    ] {
        agents.add(id, "bidder", move |_| Answer::Reply(json!({ "bid": bid })));
        let handle = ProcessHandle::spawn::<Member>(Member).await.unwrap();
        registry
            .register(&ns, id, handle.clone(), Value::Null)
            .unwrap();
        if member {
            registry.join(&ns, "pool", handle.clone()).unwrap();
        }
        handles.push(handle);
    }
    let auctioneer = auctioneer(&agents).with_registry(registry.clone(), ns);
    let outcome = auctioneer
        .sealed(SealedSpec {
            item: "x".into(),
            rule: PriceRule::FirstPrice,
            reserve: 0.0,
            invitees: AgentSelection::Group("pool".into()),
            bidding: ms(10),
        })
        .await
        .unwrap();
    assert_eq!(outcome.award().unwrap().winner.as_str(), "g2");
    assert_eq!(outcome.bids.len(), 2);
    // Without a registry a group cannot be resolved; an empty group has
    // no bidders.
    use mabeam_supervision_core::ErrorCode;
    let spec = |group: &str| SealedSpec {
        item: "x".into(),
        rule: PriceRule::FirstPrice,
        reserve: 0.0,
        invitees: AgentSelection::Group(group.into()),
        bidding: ms(10),
    };
    assert_eq!(
        self::auctioneer(&agents)
            .sealed(spec("pool"))
            .await
            .unwrap_err()
            .code(),
        7008
    );
    assert_eq!(
        auctioneer.sealed(spec("empty")).await.unwrap_err().code(),
        7007
    );
    for handle in handles {
        handle.stop().await;
    }
}
