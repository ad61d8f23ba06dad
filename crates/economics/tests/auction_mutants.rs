//! The auctions' parts that `cargo xtask mutants economics` found no test
//! checking: each test here fails with the mutant it names (see the
//! README's testing section).

mod common;

use std::{sync::Arc, time::Duration};

use common::{dutch_spec, sealed_spec};
use futures::future::BoxFuture;
use mabeam_economics::{AuctionKind, Auctioneer, PriceRule, SealedBidAuction, SealedSpec};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentInfo, AgentStatus, AgentStatusChanges, Clock, DirectoryError,
    Envelope, ProcessHandle, Telemetry,
    testkit::{Answer, ScriptedDirectory, TelemetryProbe},
};
use serde_json::{Value, json};

// Each auction of one auctioneer has an id of its own, in the outcome and
// in the invitation (mutant: `Auctioneer::next_id` always 1).
#[tokio::test(start_paused = true)]
async fn each_auction_has_its_own_id() {
    let agents = ScriptedDirectory::new();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let record = seen.clone();
    agents.add("a", "bidder", move |envelope| {
        record.lock().push(envelope.body["auction"].as_u64());
        Answer::Reply(json!({"bid": 5.0}))
    });
    let auctioneer = Auctioneer::new(Arc::new(agents.clone()), Clock::tokio());
    let first = auctioneer.sealed(sealed_spec()).await.unwrap();
    let second = auctioneer.sealed(sealed_spec()).await.unwrap();
    assert_ne!(first.auction, second.auction);
    assert_eq!(
        *seen.lock(),
        vec![Some(first.auction), Some(second.auction)]
    );
}

/// A directory whose agents accept, each answer landing exactly at its
/// envelope's deadline (as a remote answer may): the edge of a tick.
struct AtTheDeadline(ScriptedDirectory);

impl AgentDirectory for AtTheDeadline {
    fn agent(&self, id: &AgentId) -> Option<ProcessHandle> {
        self.0.agent(id)
    }

    fn info(&self, id: &AgentId) -> Option<AgentInfo> {
        self.0.info(id)
    }

    fn agents(&self) -> Vec<AgentInfo> {
        self.0.agents()
    }

    fn status(&self, id: &AgentId) -> Option<AgentStatus> {
        self.0.status(id)
    }

    fn ask(
        &self,
        _: &AgentId,
        envelope: Envelope,
    ) -> BoxFuture<'static, Result<Value, DirectoryError>> {
        Box::pin(async move {
            tokio::time::sleep_until(envelope.deadline).await;
            Ok(json!({"accept": true}))
        })
    }

    fn cast(&self, id: &AgentId, envelope: Envelope) -> Result<(), DirectoryError> {
        self.0.cast(id, envelope)
    }

    fn subscribe(&self) -> AgentStatusChanges {
        self.0.subscribe()
    }
}

// A Dutch acceptance that arrives as its tick ends counts at that tick's
// price, not the next one's (mutant: the tick's last instant taken as
// `tick_end + 1 ns`, so an answer at the edge paid the next tick's price).
#[tokio::test(start_paused = true)]
async fn a_dutch_acceptance_at_the_end_of_its_tick_pays_that_ticks_price() {
    let agents = ScriptedDirectory::new();
    agents.add("edge", "bidder", |_| Answer::Silent);
    let outcome = Auctioneer::new(Arc::new(AtTheDeadline(agents.clone())), Clock::tokio())
        .dutch(dutch_spec())
        .await
        .unwrap();
    let award = outcome.award().expect("the bidder accepted");
    assert_eq!((award.winner.as_str(), award.price), ("edge", 100.0));
    assert_eq!(outcome.bids[0].at_ms, 99, "{:?}", outcome.bids);
}

// The closing report says whether the item sold (mutant: `sold` negated).
#[tokio::test(start_paused = true)]
async fn the_closing_report_says_whether_it_sold() {
    let agents = ScriptedDirectory::new();
    agents.add("a", "bidder", |_| Answer::Reply(json!({"bid": 5.0})));
    let telemetry = Telemetry::new();
    let mut probe = TelemetryProbe::attach(&telemetry, &["economics", "auction"]);
    let auctioneer =
        Auctioneer::new(Arc::new(agents.clone()), Clock::tokio()).with_telemetry(telemetry);
    let closed = ["economics", "auction", "closed"];
    auctioneer.sealed(sealed_spec()).await.unwrap();
    let sold = probe
        .wait_for(&closed, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(sold.meta_bool("sold"), Some(true));
    assert_eq!(sold.measurement("revenue"), Some(5.0));

    let unsold = SealedSpec {
        reserve: 10.0,
        ..sealed_spec()
    };
    auctioneer.sealed(unsold).await.unwrap();
    let unsold = probe
        .wait_for(&closed, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(unsold.meta_bool("sold"), Some(false));
}

// Past 64 items the exact search declines (its masks are 64 bits); at 64
// it still runs (mutant: `n_items > 64` as `== 64`).
#[test]
fn the_exact_search_takes_up_to_64_items() {
    let at_most = mabeam_economics::solve_exact(64, &[(vec![63], 1.0), (vec![0, 1], 2.0)])
        .expect("64 items fit the search");
    assert!(at_most.exact);
    assert_eq!((at_most.winners.clone(), at_most.value), (vec![0, 1], 3.0));
    assert_eq!(mabeam_economics::solve_exact(65, &[(vec![0], 1.0)]), None);
}

// A node budget of 0 explores nothing, so proves nothing (mutant: the
// budget checked with `==`, which a budget of 0 never meets).
#[test]
fn a_search_past_its_node_budget_is_not_exact() {
    let bids = [(vec![0], 1.0), (vec![1], 1.0)];
    let none = mabeam_economics::solve_exact_within(2, &bids, 0).unwrap();
    assert!(!none.exact, "{none:?}");
    let full = mabeam_economics::solve_exact_within(2, &bids, 1_000).unwrap();
    assert!(full.exact);
    assert_eq!(full.value, 2.0);
}

// Greedy ranks bids by amount over the square root of the bundle size
// (Lehmann, O'Callaghan and Shoham): a small bid of better value per item
// goes first (mutant: `/` as `*`, which favours the big bundle).
#[test]
fn greedy_ranks_by_amount_over_the_root_of_the_size() {
    // 3 / sqrt(4) = 1.5 for the bundle, 2 / 1 = 2 for the single item.
    let bids = [(vec![0, 1, 2, 3], 3.0), (vec![0], 2.0)];
    let greedy = mabeam_economics::solve_greedy(4, &bids);
    assert_eq!((greedy.winners, greedy.value), (vec![1], 2.0));
}

// Two acceptances in one tick: the first wins, the second is refused and
// the outcome still lists it (mutant: `DutchAuction::record_refused`
// records nothing).
#[tokio::test(start_paused = true)]
async fn a_dutch_acceptance_after_the_winner_is_listed_as_refused() {
    let agents = ScriptedDirectory::new();
    agents.add("first", "bidder", |_| {
        Answer::Reply(json!({"accept": true}))
    });
    agents.add("second", "bidder", |_| {
        Answer::late(Duration::from_millis(10), json!({"accept": true}))
    });
    let outcome = Auctioneer::new(Arc::new(agents.clone()), Clock::tokio())
        .dutch(dutch_spec())
        .await
        .unwrap();
    assert_eq!(outcome.award().unwrap().winner.as_str(), "first");
    let bids: Vec<(&str, bool)> = outcome
        .bids
        .iter()
        .map(|b| {
            (
                b.bidder.as_str(),
                b.verdict == mabeam_economics::Verdict::Accepted,
            )
        })
        .collect();
    assert_eq!(bids, [("first", true), ("second", false)]);
}

// A sealed bid arriving at the closing instant still counts (mutant:
// `at > closes` as `>=`), and a bid equal to the reserve sells (mutant:
// `best < reserve` as `<=`).
#[test]
fn sealed_bids_at_the_close_and_at_the_reserve_count() {
    use tokio::time::Instant;

    let opened = Instant::now();
    let closes = opened + Duration::from_millis(100);
    let mut auction =
        SealedBidAuction::new(1, "gpu", PriceRule::FirstPrice, 10.0, opened, closes).unwrap();
    auction.submit("a".into(), 10.0, closes).unwrap();
    let outcome = auction.close();
    let award = outcome.award().expect("a bid at the reserve sells");
    assert_eq!((award.winner.as_str(), award.price), ("a", 10.0));
}

// A combinatorial bid arriving at the closing instant is taken, and so is
// one of exactly its bundle's reserves (mutants of
// `CombinatorialAuction::submit`: `at > closes` as `>=`, and `amount <
// minimum` as `<=`).
#[test]
fn combinatorial_bids_at_the_close_and_at_the_reserves_count() {
    use mabeam_economics::CombinatorialAuction;
    use tokio::time::Instant;

    let opened = Instant::now();
    let closes = opened + Duration::from_millis(100);
    let mut auction =
        CombinatorialAuction::new(1, &[("cpu", 2.0), ("gpu", 3.0)], opened, closes).unwrap();
    auction
        .submit("late".into(), &["cpu"], 4.0, closes)
        .expect("a bid at the close counts");
    auction
        .submit("exact".into(), &["cpu", "gpu"], 5.0, opened)
        .expect("a bid of the reserves counts");
}

// A bundle naming an item twice is a bid on that item (mutant: `|` as `^`
// in `solve_exact_within`'s bundle masks, which cancelled the repeated
// item and dropped the bid).
#[test]
fn a_bundle_naming_an_item_twice_is_a_bid_on_it() {
    let allocation =
        mabeam_economics::solve_exact(2, &[(vec![0, 0], 5.0), (vec![1], 1.0)]).unwrap();
    assert_eq!(allocation.value, 6.0, "{allocation:?}");
}

// An English auction is over at its deadline, not before (mutant:
// `EnglishAuction::is_closed_at` -> false).
#[test]
fn an_english_auction_is_over_at_its_deadline() {
    use mabeam_economics::EnglishAuction;
    use tokio::time::Instant;

    let opened = Instant::now();
    let deadline = opened + Duration::from_millis(100);
    let auction = EnglishAuction::new(
        1,
        "gpu",
        0.0,
        1.0,
        opened,
        deadline,
        Duration::ZERO,
        Duration::ZERO,
    )
    .unwrap();
    assert!(!auction.is_closed_at(deadline - Duration::from_millis(1)));
    assert!(auction.is_closed_at(deadline));
}

// A sealed auction's explanation says when the best bid was tied (the
// earliest wins), and only then (mutant: `==` as `!=` in
// `SealedBidAuction::close`'s tie check).
#[test]
fn a_tie_is_explained_as_such() {
    use tokio::time::Instant;

    let explained = |second: f64| {
        let opened = Instant::now();
        let closes = opened + Duration::from_millis(100);
        let mut auction =
            SealedBidAuction::new(1, "gpu", PriceRule::FirstPrice, 0.0, opened, closes).unwrap();
        auction.submit("a".into(), 10.0, opened).unwrap();
        auction
            .submit("b".into(), second, opened + Duration::from_millis(1))
            .unwrap();
        auction.close().explanation
    };
    let tied = explained(10.0);
    assert!(tied.contains("tied; the earliest bid wins"), "{tied}");
    let untied = explained(9.0);
    assert!(!untied.contains("tied"), "{untied}");
}

// Each auction kind displays as the name it is serialised under (mutant:
// `<impl Display for AuctionKind>::fmt` -> `Ok(())`, which displayed
// nothing).
#[test]
fn each_auction_kind_displays_its_name() {
    for (kind, name) in [
        (AuctionKind::FirstPrice, "first_price"),
        (AuctionKind::Vickrey, "vickrey"),
        (AuctionKind::English, "english"),
        (AuctionKind::Dutch, "dutch"),
        (AuctionKind::Combinatorial, "combinatorial"),
    ] {
        assert_eq!(kind.to_string(), name);
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(name));
    }
}

// A search that needs exactly its node budget finishes, exact: one bid on
// one item takes three nodes (the root, the bid taken, the item left
// free) (mutant: `>` as `>=` in `Search::run`'s budget check, which
// stopped at the last node allowed).
#[test]
fn a_search_within_exactly_its_node_budget_is_exact() {
    let bids = [(vec![0], 1.0)];
    let within = mabeam_economics::solve_exact_within(1, &bids, 3).unwrap();
    assert!(within.exact, "{within:?}");
    assert_eq!((within.winners, within.value), (vec![0], 1.0));
    let short = mabeam_economics::solve_exact_within(1, &bids, 2).unwrap();
    assert!(!short.exact, "{short:?}");
}

// An auctioneer's Debug form names it and the next auction's id (mutant:
// an empty `fmt`).
#[tokio::test(start_paused = true)]
async fn an_auctioneer_shows_its_next_id() {
    let auctioneer = Auctioneer::new(Arc::new(ScriptedDirectory::new()), Clock::tokio());
    let debug = format!("{auctioneer:?}");
    assert!(
        debug.contains("Auctioneer") && debug.contains("next_id: 1"),
        "{debug}"
    );
}
