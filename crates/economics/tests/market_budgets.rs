//! The marketplace, budgets and reputation.

use std::{sync::Arc, time::Duration};

use mabeam_economics::{Ledger, MarketError, Marketplace, Reputation, Request, TransactionState};
use mabeam_supervision_core::{AgentId, Clock, ErrorCode};
use proptest::prelude::*;

fn market() -> (Arc<Ledger>, Arc<Reputation>, Marketplace) {
    let ledger = Arc::new(Ledger::new());
    let reputation = Arc::new(Reputation::new(Clock::tokio(), Duration::from_secs(100)));
    let market = Marketplace::new(ledger.clone(), reputation.clone());
    (ledger, reputation, market)
}

fn request(buyer: &str, max_price: u64) -> Request {
    Request {
        buyer: buyer.into(),
        service: "ocr".into(),
        capabilities: vec!["pdf".into()],
        max_price,
        min_quality: 0.0,
        min_reputation: 0.0,
    }
}

// Matching: filters, then quality + reputation - relative price.
#[tokio::test(start_paused = true)]
async fn matching_by_price_quality_and_reputation() {
    let (ledger, reputation, market) = market();
    ledger.grant(&"buyer".into(), 1_000).unwrap();
    let cheap = market
        .list(&"cheap".into(), "ocr", &["pdf"], 10, 0.5)
        .unwrap();
    let good = market
        .list(&"good".into(), "ocr", &["pdf", "png"], 60, 0.95)
        .unwrap();
    market
        .list(&"no-pdf".into(), "ocr", &["png"], 1, 1.0)
        .unwrap();
    market
        .list(&"other".into(), "translate", &["pdf"], 1, 1.0)
        .unwrap();
    market
        .list(&"pricey".into(), "ocr", &["pdf"], 500, 1.0)
        .unwrap();
    market
        .list(&"buyer".into(), "ocr", &["pdf"], 1, 1.0)
        .unwrap(); // its own

    // cheap: 0.5 + 0.5 - 10/100 = 0.9; good: 0.95 + 0.5 - 0.6 = 0.85.
    let deal = market.request(request("buyer", 100)).await.unwrap();
    assert_eq!(deal.listing, cheap);
    market.cancel(deal.id).await.unwrap();

    // A better reputation tips it: good rated well by a third party.
    reputation
        .rate(&"rater".into(), &"good".into(), 1.0)
        .unwrap();
    assert!(reputation.score(&"good".into()) > 0.6); // (0.5 + 1.0 x 0.5) / 1.5
    let deal = market.request(request("buyer", 100)).await.unwrap();
    assert_eq!(deal.listing, good);
    assert!(
        deal.explanation.contains("scored best of 2"),
        "{}",
        deal.explanation
    );

    // Minimum quality and reputation filter; nothing left is NoMatch.
    let mut strict = request("buyer", 100);
    strict.min_quality = 0.99;
    assert_eq!(
        market.request(strict).await.unwrap_err(),
        MarketError::NoMatch
    );
    let mut strict = request("buyer", 100);
    strict.min_reputation = 0.9;
    assert_eq!(market.request(strict).await.unwrap_err().code(), 7106);
}

// Budgets: held at match, settled on completion, released on cancel or
// failure; a match the budget cannot cover holds nothing.
#[tokio::test(start_paused = true)]
async fn budgets_hold_settle_release() {
    let (ledger, reputation, market) = market();
    let buyer = AgentId::from("buyer");
    ledger.grant(&buyer, 100).unwrap();
    market
        .list(&"seller".into(), "ocr", &["pdf"], 70, 0.9)
        .unwrap();

    let first = market.request(request("buyer", 100)).await.unwrap();
    assert_eq!(ledger.balance(&buyer).unwrap().held, 70);
    let refused = market.request(request("buyer", 100)).await.unwrap_err();
    assert_eq!(
        refused,
        MarketError::InsufficientFunds {
            agent: buyer.clone(),
            needed: 70,
            free: 30
        }
    );
    assert_eq!(
        ledger.balance(&buyer).unwrap().held,
        70,
        "the refused match held nothing"
    );

    let done = market.complete(first.id, 0.9).await.unwrap();
    assert_eq!(done.state, TransactionState::Completed);
    let balance = ledger.balance(&buyer).unwrap();
    assert_eq!((balance.free, balance.held, balance.spent), (30, 0, 70));
    assert_eq!(ledger.balance(&"seller".into()).unwrap().earned, 70);
    assert_eq!(
        market.complete(first.id, 0.9).await.unwrap_err().code(),
        7105,
        "closed once"
    );

    ledger.grant(&buyer, 100).unwrap();
    let second = market.request(request("buyer", 100)).await.unwrap();
    let score = reputation.score(&"seller".into());
    market.fail(second.id).await.unwrap();
    assert!(
        reputation.score(&"seller".into()) < score,
        "a failure rates the seller down"
    );
    assert_eq!(ledger.balance(&buyer).unwrap().free, 130);
    assert_eq!(market.complete(999, 1.0).await.unwrap_err().code(), 7105);
    assert_eq!(
        market
            .request(request("nobody", 100))
            .await
            .unwrap_err()
            .code(),
        7101
    );
}

// Reputation decays, weighs raters by their standing, and is not inflated
// by self-rating or repetition.
#[tokio::test(start_paused = true)]
async fn reputation_rules() {
    let reputation = Reputation::new(Clock::tokio(), Duration::from_secs(100));
    let seller = AgentId::from("seller");
    assert_eq!(
        reputation.rate(&seller, &seller, 1.0).unwrap_err().code(),
        7107
    );
    assert_eq!(
        reputation
            .rate(&"a".into(), &seller, 1.5)
            .unwrap_err()
            .code(),
        7108
    );

    reputation.rate(&"a".into(), &seller, 1.0).unwrap();
    let once = reputation.score(&seller);
    for _ in 0..50 {
        reputation.rate(&"a".into(), &seller, 1.0).unwrap();
    }
    assert_eq!(
        reputation.score(&seller),
        once,
        "repeating a rating adds nothing"
    );
    assert_eq!(reputation.raters(&seller), 1);

    // Decay: after many half-lives the score returns to the prior.
    tokio::time::advance(Duration::from_secs(2_000)).await;
    assert!((reputation.score(&seller) - 0.5).abs() < 1e-3);

    // A poorly rated rater's praise weighs less than a well rated one's.
    let (poor, rich) = (AgentId::from("poor"), AgentId::from("rich"));
    for rater in ["x1", "x2", "x3"] {
        reputation.rate(&rater.into(), &poor, 0.0).unwrap();
        reputation.rate(&rater.into(), &rich, 1.0).unwrap();
    }
    reputation.rate(&poor, &"t1".into(), 1.0).unwrap();
    reputation.rate(&rich, &"t2".into(), 1.0).unwrap();
    assert!(reputation.score(&"t2".into()) > reputation.score(&"t1".into()));
}

/// One operation of the conservation property.
#[derive(Debug, Clone)]
enum Op {
    Grant(usize, u64),
    Request(usize, u64),
    Complete(usize),
    Cancel(usize),
    Fail(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..4, 0u64..200).prop_map(|(a, n)| Op::Grant(a, n)),
        (0usize..4, 1u64..150).prop_map(|(a, n)| Op::Request(a, n)),
        (0usize..20).prop_map(Op::Complete),
        (0usize..20).prop_map(Op::Cancel),
        (0usize..20).prop_map(Op::Fail),
    ]
}

proptest! {
    // Money is conserved and no budget is exceeded, whatever happens.
    #[test]
    fn money_is_conserved(ops in proptest::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async {
            let (ledger, _, market) = market();
            let agents: Vec<AgentId> = (0..4).map(|i| AgentId::from(format!("agent-{i}"))).collect();
            for (i, agent) in agents.iter().enumerate() {
                market.list(agent, "ocr", &["pdf"], 10 + 20 * i as u64, 0.8).unwrap();
            }
            let mut deals = Vec::new();
            for op in ops {
                match op {
                    Op::Grant(a, n) => ledger.grant(&agents[a], n).unwrap(),
                    Op::Request(a, n) => {
                        let before = ledger.balance(&agents[a]);
                        match market.request(request(agents[a].as_str(), n)).await {
                            Ok(deal) => {
                                prop_assert!(deal.price <= n);
                                prop_assert!(before.unwrap().free >= deal.price);
                                deals.push(deal.id);
                            }
                            Err(_) => prop_assert_eq!(ledger.balance(&agents[a]), before),
                        }
                    }
                    Op::Complete(i) => if let Some(id) = deals.get(i) { let _ = market.complete(*id, 0.7).await; },
                    Op::Cancel(i) => if let Some(id) = deals.get(i) { let _ = market.cancel(*id).await; },
                    Op::Fail(i) => if let Some(id) = deals.get(i) { let _ = market.fail(*id).await; },
                }
                let totals = ledger.totals();
                prop_assert_eq!(totals.free + totals.held + totals.spent, totals.granted);
                prop_assert_eq!(totals.earned, totals.spent);
            }
            Ok(())
        })?;
    }
}
