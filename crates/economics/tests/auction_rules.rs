//! The rules of each auction, as tables of known cases, and properties.

use std::time::Duration;

use mabeam_economics::{
    AuctionError, CombinatorialAuction, DutchAuction, EnglishAuction, PriceRule, SealedBidAuction,
    Verdict, solve_exact, solve_greedy,
};
use mabeam_supervision_core::ErrorCode;
use proptest::prelude::*;
use tokio::time::Instant;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Runs a sealed auction over (bidder, amount, arrival ms) and returns
/// (winner, price) if sold.
fn sealed(rule: PriceRule, reserve: f64, bids: &[(&str, f64, u64)]) -> Option<(String, f64)> {
    let t0 = Instant::now();
    let mut auction = SealedBidAuction::new(1, "item", rule, reserve, t0, t0 + ms(1000)).unwrap();
    for (bidder, amount, at) in bids {
        auction
            .submit((*bidder).into(), *amount, t0 + ms(*at))
            .unwrap();
    }
    auction
        .close()
        .award()
        .map(|award| (award.winner.to_string(), award.price))
}

// Sealed bids: who wins and what it pays, first price and Vickrey.
#[tokio::test]
async fn sealed_bid_table() {
    use PriceRule::{FirstPrice, SecondPrice};
    type Case<'a> = (
        PriceRule,
        f64,
        &'a [(&'a str, f64, u64)],
        Option<(&'a str, f64)>,
    );
    let cases: &[Case] = &[
        (FirstPrice, 0.0, &[], None),
        (
            FirstPrice,
            0.0,
            &[("a", 10.0, 0), ("b", 20.0, 1)],
            Some(("b", 20.0)),
        ),
        (
            SecondPrice,
            0.0,
            &[("a", 10.0, 0), ("b", 20.0, 1)],
            Some(("b", 10.0)),
        ),
        // A single bidder pays the reserve under Vickrey.
        (SecondPrice, 5.0, &[("a", 10.0, 0)], Some(("a", 5.0))),
        // The second bid is under the reserve: the reserve is the price.
        (
            SecondPrice,
            8.0,
            &[("a", 10.0, 0), ("b", 3.0, 0)],
            Some(("a", 8.0)),
        ),
        // Nothing reaches the reserve.
        (FirstPrice, 50.0, &[("a", 10.0, 0), ("b", 49.9, 0)], None),
        // Ties go to the earliest bid, by time then by order of receipt.
        (
            FirstPrice,
            0.0,
            &[("a", 10.0, 5), ("b", 10.0, 1)],
            Some(("b", 10.0)),
        ),
        (
            SecondPrice,
            0.0,
            &[("a", 10.0, 1), ("b", 10.0, 1)],
            Some(("a", 10.0)),
        ),
        (
            SecondPrice,
            0.0,
            &[("c", 7.0, 0), ("a", 10.0, 1), ("b", 9.0, 0)],
            Some(("a", 9.0)),
        ),
    ];
    for (rule, reserve, bids, expected) in cases {
        let got = sealed(*rule, *reserve, bids);
        let expected = expected.map(|(w, p)| (w.to_owned(), p));
        assert_eq!(got, expected, "{rule:?} reserve {reserve} bids {bids:?}");
    }
}

// Bad input is refused with a stable code and leaves the auction as it was.
#[tokio::test]
async fn sealed_refusals_change_nothing() {
    let t0 = Instant::now();
    let mut auction =
        SealedBidAuction::new(1, "item", PriceRule::FirstPrice, 0.0, t0, t0 + ms(100)).unwrap();
    auction.submit("a".into(), 10.0, t0).unwrap();
    let refusals = [
        (auction.submit("b".into(), -1.0, t0), 7001),
        (auction.submit("b".into(), f64::NAN, t0), 7001),
        (auction.submit("b".into(), f64::INFINITY, t0), 7001),
        (auction.submit("a".into(), 99.0, t0), 7005),
        (auction.submit("b".into(), 99.0, t0 + ms(101)), 7003),
    ];
    for (result, code) in refusals {
        assert_eq!(result.unwrap_err().code(), code);
    }
    let outcome = auction.close();
    assert_eq!(outcome.bids.len(), 1);
    assert_eq!(outcome.award().unwrap().price, 10.0);
    assert!(
        SealedBidAuction::new(1, "x", PriceRule::FirstPrice, f64::NAN, t0, t0).is_err(),
        "a NaN reserve is refused"
    );
}

// English: increments, the soft close, late and too-low bids.
#[tokio::test]
async fn english_table() {
    let t0 = Instant::now();
    let mut auction =
        EnglishAuction::new(1, "item", 10.0, 2.0, t0, t0 + ms(1000), ms(100), ms(200)).unwrap();
    // (bidder, amount, at ms, accepted?, deadline ms after)
    type Step<'a> = (&'a str, f64, u64, Result<(), u32>, u64);
    let steps: &[Step] = &[
        ("a", 9.0, 0, Err(7004), 1000),   // under the reserve
        ("a", 10.0, 10, Ok(()), 1000),    // the reserve opens
        ("a", 15.0, 20, Err(7005), 1000), // already leading
        ("b", 11.0, 30, Err(7004), 1000), // under 10 + 2
        ("b", 12.0, 40, Ok(()), 1000),
        ("c", 20.0, 950, Ok(()), 1150), // in the window: extends to 950 + 200
        ("a", 22.0, 1100, Ok(()), 1300), // in the new window: extends again
        ("b", 30.0, 1300, Err(7003), 1300), // at the deadline: late
    ];
    for (bidder, amount, at, expected, deadline) in steps {
        let result = auction.submit((*bidder).into(), *amount, t0 + ms(*at));
        assert_eq!(
            result.map_err(|e| e.code()),
            *expected,
            "{bidder} {amount} at {at}"
        );
        assert_eq!(
            auction.deadline(),
            t0 + ms(*deadline),
            "deadline after {bidder} {amount}"
        );
    }
    let outcome = auction.close();
    let award = outcome.award().unwrap();
    assert_eq!((award.winner.as_str(), award.price), ("a", 22.0));
    assert!(outcome.explanation.contains("extended the deadline 2"));
}

// Dutch: the price falls per tick to the reserve; the first acceptance wins.
#[tokio::test]
async fn dutch_table() {
    let t0 = Instant::now();
    let auction = DutchAuction::new(1, "item", 100.0, 15.0, ms(100), 50.0, t0).unwrap();
    let prices = [
        (0, 100.0),
        (99, 100.0),
        (100, 85.0),
        (250, 70.0),
        (300, 55.0),
        (400, 50.0),
        (450, 50.0),
    ];
    for (at, price) in prices {
        assert_eq!(auction.price_at(t0 + ms(at)), price, "at {at} ms");
    }
    // 4 ticks reach the reserve; a fifth spent there closes it unsold.
    assert!(!auction.is_closed_at(t0 + ms(499)));
    assert!(auction.is_closed_at(t0 + ms(500)));
    let mut unsold = auction.clone();
    assert_eq!(
        unsold.accept("a".into(), t0 + ms(500)).unwrap_err().code(),
        7003
    );
    assert!(unsold.close().awards.is_empty());

    let mut sold = auction;
    assert_eq!(sold.accept("b".into(), t0 + ms(260)), Ok(70.0));
    assert_eq!(
        sold.accept("a".into(), t0 + ms(260)).unwrap_err().code(),
        7003
    );
    let outcome = sold.close();
    let award = outcome.award().unwrap();
    assert_eq!((award.winner.as_str(), award.price), ("b", 70.0));
    assert!(
        DutchAuction::new(1, "x", 10.0, 1.0, ms(1), 20.0, t0).is_err(),
        "reserve above start"
    );
}

// Combinatorial: known cases, and refusals that change nothing.
#[tokio::test]
async fn combinatorial_table() {
    let t0 = Instant::now();
    type Case<'a> = (
        &'a [(&'a str, f64)],
        &'a [(&'a str, &'a [&'a str], f64)],
        f64,
        &'a [&'a str],
    );
    let cases: &[Case] = &[
        // One bundle beats the parts.
        (
            &[("x", 0.0), ("y", 0.0)],
            &[
                ("a", &["x", "y"], 13.0),
                ("b", &["x"], 6.0),
                ("c", &["y"], 6.0),
            ],
            13.0,
            &["a"],
        ),
        // The parts beat the bundle.
        (
            &[("x", 0.0), ("y", 0.0)],
            &[
                ("a", &["x", "y"], 11.0),
                ("b", &["x"], 6.0),
                ("c", &["y"], 6.0),
            ],
            12.0,
            &["b", "c"],
        ),
        // Overlapping bundles: the best disjoint pair.
        (
            &[("x", 0.0), ("y", 0.0), ("z", 0.0)],
            &[
                ("a", &["x", "y"], 8.0),
                ("b", &["y", "z"], 8.0),
                ("c", &["z"], 3.0),
                ("d", &["x"], 4.0),
            ],
            12.0,
            &["b", "d"],
        ),
        // A tie in value goes to the allocation with the earlier bids.
        (
            &[("x", 0.0)],
            &[("a", &["x"], 5.0), ("b", &["x"], 5.0)],
            5.0,
            &["a"],
        ),
    ];
    for (items, bids, revenue, winners) in cases {
        let mut auction = CombinatorialAuction::new(1, items, t0, t0 + ms(10)).unwrap();
        for (bidder, bundle, amount) in *bids {
            auction
                .submit((*bidder).into(), bundle, *amount, t0)
                .unwrap();
        }
        let outcome = auction.close();
        assert_eq!(outcome.revenue(), *revenue, "{bids:?}");
        let mut got: Vec<&str> = outcome.awards.iter().map(|a| a.winner.as_str()).collect();
        got.sort();
        assert_eq!(got, *winners, "{bids:?}");
    }

    let mut auction =
        CombinatorialAuction::new(1, &[("x", 2.0), ("y", 3.0)], t0, t0 + ms(10)).unwrap();
    let refusals: [(Result<(), AuctionError>, u32); 5] = [
        (auction.submit("a".into(), &["w"], 9.0, t0), 7002),
        (auction.submit("a".into(), &["x", "y"], 4.0, t0), 7004), // under 2 + 3
        (auction.submit("a".into(), &["x"], -4.0, t0), 7001),
        (auction.submit("a".into(), &["x", "x"], 9.0, t0), 7006),
        (auction.submit("a".into(), &["x"], 9.0, t0 + ms(11)), 7003),
    ];
    for (result, code) in refusals {
        assert_eq!(result.unwrap_err().code(), code);
    }
    let outcome = auction.close();
    assert!(outcome.bids.is_empty() && outcome.awards.is_empty());
}

/// The best allocation by trying every subset of bids.
fn brute_force(n_items: usize, bids: &[(Vec<usize>, f64)]) -> f64 {
    let mut best = 0.0f64;
    for subset in 0u32..(1 << bids.len()) {
        let mut taken = vec![false; n_items];
        let mut value = 0.0;
        let mut ok = true;
        for (i, (items, amount)) in bids.iter().enumerate() {
            if subset & (1 << i) != 0 {
                for &item in items {
                    ok &= !std::mem::replace(&mut taken[item], true);
                }
                value += amount;
            }
        }
        if ok {
            best = best.max(value);
        }
    }
    best
}

fn bundle_bids() -> impl Strategy<Value = (usize, Vec<(Vec<usize>, f64)>)> {
    (1usize..8).prop_flat_map(|n_items| {
        let bid = (
            proptest::collection::btree_set(0..n_items, 1..=n_items.min(4)),
            1u32..100,
        )
            .prop_map(|(items, amount)| (items.into_iter().collect::<Vec<_>>(), amount as f64));
        (Just(n_items), proptest::collection::vec(bid, 0..12))
    })
}

proptest! {
    // Vickrey: the highest bidder wins (earliest among equals) and pays the
    // second-highest bid.
    #[test]
    fn vickrey_highest_wins_and_pays_second(amounts in proptest::collection::vec(0u32..1000, 2..40)) {
        let bids: Vec<(String, f64, u64)> = amounts
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("agent-{i:03}"), *a as f64, i as u64))
            .collect();
        let refs: Vec<(&str, f64, u64)> = bids.iter().map(|(b, a, t)| (b.as_str(), *a, *t)).collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let (winner, price) = rt.block_on(async { sealed(PriceRule::SecondPrice, 0.0, &refs) }).unwrap();
        let max = amounts.iter().max().copied().unwrap();
        let first_max = amounts.iter().position(|a| *a == max).unwrap();
        let mut sorted = amounts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        prop_assert_eq!(winner, format!("agent-{first_max:03}"));
        prop_assert_eq!(price, sorted[1] as f64);
    }

    // Branch and bound finds the brute-force optimum; greedy never beats
    // it and stays under its reported bound.
    #[test]
    fn exact_matches_brute_force((n_items, bids) in bundle_bids()) {
        let exact = solve_exact(n_items, &bids).unwrap();
        prop_assert!(exact.exact);
        prop_assert_eq!(exact.value, brute_force(n_items, &bids));
        let greedy = solve_greedy(n_items, &bids);
        prop_assert!(greedy.value <= exact.value);
        prop_assert!(exact.value <= greedy.upper_bound + 1e-9);
        // The winners are disjoint and add up to the value.
        let mut taken = vec![false; n_items];
        let mut total = 0.0;
        for &w in &exact.winners {
            for &item in &bids[w].0 {
                prop_assert!(!std::mem::replace(&mut taken[item], true));
            }
            total += bids[w].1;
        }
        prop_assert_eq!(total, exact.value);
    }
}

// A refused bid is shown in the outcome with its reason.
#[tokio::test]
async fn refused_bids_are_recorded() {
    let t0 = Instant::now();
    let mut auction =
        SealedBidAuction::new(1, "item", PriceRule::FirstPrice, 0.0, t0, t0 + ms(10)).unwrap();
    let err = auction.submit("a".into(), -5.0, t0).unwrap_err();
    auction.record_refused("a".into(), -5.0, t0, &err);
    let outcome = auction.close();
    assert!(
        matches!(&outcome.bids[0].verdict, Verdict::Refused(reason) if reason.contains("invalid amount"))
    );
    assert!(outcome.awards.is_empty());
}
