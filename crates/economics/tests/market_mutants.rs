//! The marketplace's parts that `cargo xtask mutants economics` found no
//! test checking: each test here fails with the mutant it names (see the
//! README's testing section).

use std::{sync::Arc, time::Duration};

use mabeam_economics::{Ledger, Marketplace, Reputation, Request, TransactionState};
use mabeam_supervision_core::{AgentId, Clock, Telemetry, testkit::TelemetryProbe};

fn market() -> (Arc<Ledger>, Marketplace) {
    let ledger = Arc::new(Ledger::new());
    let reputation = Arc::new(Reputation::new(Clock::tokio(), Duration::from_secs(100)));
    let market = Marketplace::new(ledger.clone(), reputation);
    (ledger, market)
}

fn request(buyer: &str) -> Request {
    Request {
        buyer: buyer.into(),
        service: "ocr".into(),
        capabilities: vec![],
        max_price: 100,
        min_quality: 0.0,
        min_reputation: 0.0,
    }
}

// `listings` returns every listing, oldest first (mutant: `vec![]`).
#[tokio::test(start_paused = true)]
async fn listings_are_listed_oldest_first() {
    let (_, market) = market();
    let ids: Vec<u64> = ["a", "b", "c"]
        .into_iter()
        .map(|seller| {
            market
                .list(&seller.into(), "ocr", &["pdf"], 10, 0.5)
                .unwrap()
        })
        .collect();
    market.delist(ids[1]).unwrap();
    let listed: Vec<(u64, AgentId)> = market
        .listings()
        .into_iter()
        .map(|l| (l.id, l.seller))
        .collect();
    assert_eq!(listed, vec![(ids[0], "a".into()), (ids[2], "c".into())]);
}

// Each transaction gets an id of its own, and closing one leaves the
// others open (mutant: `next_id += 1` as `*= 1`, two deals under one id).
#[tokio::test(start_paused = true)]
async fn each_transaction_has_its_own_id() {
    let (ledger, market) = market();
    ledger.grant(&"buyer".into(), 100).unwrap();
    market.list(&"seller".into(), "ocr", &[], 10, 0.5).unwrap();
    let first = market.request(request("buyer")).await.unwrap();
    let second = market.request(request("buyer")).await.unwrap();
    assert_ne!(first.id, second.id);
    assert_eq!(ledger.balance(&"buyer".into()).unwrap().held, 20);

    market.complete(first.id, 1.0).await.unwrap();
    let second = market.transaction(second.id).expect("second deal recorded");
    assert_eq!(second.state, TransactionState::Open);
    market.cancel(second.id).await.unwrap();
    let buyer = ledger.balance(&"buyer".into()).unwrap();
    assert_eq!((buyer.free, buyer.held, buyer.spent), (90, 0, 10));
}

// The Debug form names what the marketplace holds (mutant: an empty
// `fmt`).
#[tokio::test(start_paused = true)]
async fn debug_shows_the_counts() {
    let (_, market) = market();
    market.list(&"seller".into(), "ocr", &[], 10, 0.5).unwrap();
    let debug = format!("{market:?}");
    assert!(
        debug.contains("Marketplace") && debug.contains("listings: 1"),
        "{debug}"
    );
}

// A rating's weight halves with each half-life: after one, the score is
// where half the rating's weight puts it (mutant: `age / half_life` as
// `age * half_life` in `Reputation::score`, which wiped the rating out).
#[tokio::test(start_paused = true)]
async fn a_rating_weighs_half_after_one_half_life() {
    let reputation = Reputation::new(Clock::tokio(), Duration::from_secs(100));
    let seller = AgentId::from("seller");
    reputation.rate(&"a".into(), &seller, 1.0).unwrap();
    // score = (0.5 + w) / (1 + w) for a rating of 1.0 of weight w.
    let fresh = reputation.score(&seller);
    let weight = (fresh - 0.5) / (1.0 - fresh);
    assert!(weight > 0.0, "the rating weighs nothing: {fresh}");
    tokio::time::advance(Duration::from_secs(100)).await;
    let half = weight / 2.0;
    let expected = (0.5 + half) / (1.0 + half);
    let score = reputation.score(&seller);
    assert!(
        (score - expected).abs() < 1e-9,
        "after one half-life: {score}, expected {expected}"
    );
}

// A listing of exactly the quality asked for matches (mutant: `<` as `<=`
// in `Marketplace::request`'s quality filter, which refused it); of two
// listings that score the same, the older is taken (mutant: `>` as `>=`
// in the best-score check, which took the newer).
#[tokio::test(start_paused = true)]
async fn the_minimum_quality_matches_and_the_older_of_equals_wins() {
    let (ledger, market) = market();
    ledger.grant(&"buyer".into(), 100).unwrap();
    let older = market.list(&"s1".into(), "ocr", &[], 10, 0.5).unwrap();
    market.list(&"s2".into(), "ocr", &[], 10, 0.5).unwrap();
    let deal = market
        .request(Request {
            min_quality: 0.5,
            ..request("buyer")
        })
        .await
        .unwrap();
    assert_eq!(deal.listing, older);
}

// Each transaction's change is reported (mutant: `Marketplace::report`
// -> (), which reported nothing).
#[tokio::test(start_paused = true)]
async fn each_transaction_is_reported() {
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["economics", "market", "transaction"]);
    let ledger = Arc::new(Ledger::new());
    let reputation = Arc::new(Reputation::new(Clock::tokio(), Duration::from_secs(100)));
    let market = Marketplace::new(ledger.clone(), reputation).with_telemetry(telemetry);
    ledger.grant(&"buyer".into(), 100).unwrap();
    market.list(&"seller".into(), "ocr", &[], 10, 0.5).unwrap();
    let deal = market.request(request("buyer")).await.unwrap();
    let event = probe.drain().pop().expect("the deal was not reported");
    assert_eq!(event.meta_str("state"), Some("open"));
    assert_eq!(event.measurement("price"), Some(deal.price as f64));
}

// A listing priced at exactly the request's maximum matches (mutant: `>`
// as `>=` in `Marketplace::request`'s price filter, which refused it).
#[tokio::test(start_paused = true)]
async fn a_listing_at_exactly_the_maximum_price_matches() {
    let (ledger, market) = market();
    ledger.grant(&"buyer".into(), 100).unwrap();
    let listing = market.list(&"seller".into(), "ocr", &[], 100, 0.5).unwrap();
    let deal = market.request(request("buyer")).await.unwrap();
    assert_eq!(deal.listing, listing);
    assert_eq!(deal.price, 100);
}

// A seller at exactly the request's minimum reputation matches (mutant:
// `<` as `<=` in `Marketplace::request`'s reputation filter, which
// refused it).
#[tokio::test(start_paused = true)]
async fn a_seller_at_exactly_the_minimum_reputation_matches() {
    let ledger = Arc::new(Ledger::new());
    let reputation = Arc::new(Reputation::new(Clock::tokio(), Duration::from_secs(100)));
    let market = Marketplace::new(ledger.clone(), reputation.clone());
    ledger.grant(&"buyer".into(), 100).unwrap();
    let listing = market.list(&"seller".into(), "ocr", &[], 10, 0.5).unwrap();
    let min_reputation = reputation.score(&"seller".into());
    let deal = market
        .request(Request {
            min_reputation,
            ..request("buyer")
        })
        .await
        .unwrap();
    assert_eq!(deal.listing, listing);
}
