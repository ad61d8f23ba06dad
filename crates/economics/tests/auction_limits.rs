//! Auctions at their limits: winner determination past its node budget
//! keeps the best allocation its search found (not greedy's when that is
//! worse) and runs on a blocking thread; the Dutch clock past 2^32 ticks.

use std::{
    sync::Arc,
    thread::{self, ThreadId},
    time::Duration,
};

use mabeam_economics::{
    Auctioneer, CombinatorialAuction, CombinatorialSpec, DutchAuction, solve, solve_exact_within,
    solve_greedy,
};
use mabeam_supervision_core::{
    AgentSelection, Clock, MetaValue, Telemetry,
    testkit::{Answer, ScriptedDirectory},
};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;

/// One bid on all four items (10, the best greedy score: 10 / sqrt 4 = 5)
/// and one on each item alone (4.9 each, 19.6 together).
fn bids() -> Vec<(Vec<usize>, f64)> {
    let mut bids = vec![(vec![0, 1, 2, 3], 10.0)];
    bids.extend((0..4).map(|i| (vec![i], 4.9)));
    bids
}

/// A node budget the search runs out of after it has found singles worth
/// more than greedy's bundle, before it has proven the best.
fn tight_budget() -> u64 {
    let greedy = solve_greedy(4, &bids());
    (1..100)
        .find(|&budget| {
            let searched = solve_exact_within(4, &bids(), budget).unwrap();
            !searched.exact && searched.value > greedy.value
        })
        .expect("a budget the search runs out of after beating greedy")
}

#[test]
fn past_its_node_budget_winner_determination_keeps_the_best_found() {
    let greedy = solve_greedy(4, &bids());
    assert_eq!(greedy.value, 10.0);
    let budget = tight_budget();

    let searched = solve_exact_within(4, &bids(), budget).unwrap();
    let allocation = solve(4, &bids(), budget);
    assert!(!allocation.exact, "not proven optimal");
    // The search's allocation (singles only), not greedy's bundle.
    assert_eq!(allocation.value, searched.value);
    assert!(allocation.value > greedy.value, "{allocation:?}");
    assert!(!allocation.winners.contains(&0), "{allocation:?}");
    assert!(
        (allocation.upper_bound - 19.6).abs() < 1e-9,
        "{allocation:?}"
    );
    // With room to finish, the same is proven.
    let proven = solve(4, &bids(), 1_000);
    assert!(proven.exact && (proven.value - 19.6).abs() < 1e-9);
    // Whatever the budget, never worse than greedy nor than the search.
    for budget in 0..50 {
        let allocation = solve(4, &bids(), budget);
        let searched = solve_exact_within(4, &bids(), budget).unwrap();
        assert!(allocation.value >= greedy.value.max(searched.value));
        assert!(allocation.upper_bound >= allocation.value);
    }

    // An auction closed on that budget: singles win; before, greedy's
    // bundle (10) did.
    let t0 = Instant::now();
    let items = [("w", 0.0), ("x", 0.0), ("y", 0.0), ("z", 0.0)];
    let mut auction = CombinatorialAuction::new(1, &items, t0, t0 + Duration::from_secs(1))
        .unwrap()
        .with_node_budget(budget);
    auction
        .submit("bundle".into(), &["w", "x", "y", "z"], 10.0, t0)
        .unwrap();
    for item in ["w", "x", "y", "z"] {
        auction.submit(item.into(), &[item], 4.9, t0).unwrap();
    }
    let outcome = auction.close();
    assert_eq!(outcome.revenue(), searched.value, "{outcome:?}");
    assert!(outcome.awards.iter().all(|award| award.items.len() == 1));
    let allocation = outcome.allocation.expect("a combinatorial outcome");
    assert!(!allocation.exact);
    assert!(
        outcome.explanation.contains("not proven optimal"),
        "{}",
        outcome.explanation
    );
}

/// The Auctioneer determines winners on a blocking thread: on a
/// current-thread runtime, the determination's event comes from another
/// thread than the runtime's.
#[tokio::test]
async fn winner_determination_runs_on_a_blocking_thread() {
    let agents = ScriptedDirectory::new();
    agents.add("pair", "bidder", |_| {
        Answer::Reply(json!({"bids": [{"items": ["cpu", "gpu"], "amount": 10.0}]}))
    });
    agents.add("cpu", "bidder", |_| {
        Answer::Reply(json!({"bids": [{"items": ["cpu"], "amount": 6.0}]}))
    });
    let telemetry = Telemetry::new();
    let threads: Arc<Mutex<Vec<(ThreadId, bool)>>> = Arc::default();
    telemetry
        .attach("test", &["economics", "auction", "determined"], {
            let threads = threads.clone();
            move |event| {
                let optimal = matches!(event.meta("optimal"), Some(MetaValue::Bool(true)));
                threads.lock().push((thread::current().id(), optimal));
            }
        })
        .unwrap();
    let outcome = Auctioneer::new(Arc::new(agents), Clock::tokio())
        .with_telemetry(telemetry)
        .combinatorial(CombinatorialSpec {
            items: vec![("cpu".into(), 1.0), ("gpu".into(), 1.0)],
            invitees: AgentSelection::Kind("bidder".into()),
            bidding: Duration::from_millis(100),
        })
        .await
        .unwrap();
    assert_eq!(outcome.revenue(), 10.0);
    let threads = threads.lock().clone();
    assert_eq!(threads.len(), 1, "one determination");
    let (determined_on, optimal) = threads[0];
    assert!(optimal);
    assert_ne!(
        determined_on,
        thread::current().id(),
        "winner determination ran on the runtime's thread"
    );
}

/// Past 2^32 ticks the clock's next change is still after now: before,
/// the tick count was cut to 32 bits and the end fell in the past.
#[test]
fn the_dutch_clock_does_not_wrap_past_2_pow_32_ticks() {
    let t0 = Instant::now();
    let tick = Duration::from_nanos(1);
    let auction = DutchAuction::new(1, "item", 1e12, 1.0, tick, 0.0, t0).unwrap();
    let ticks = (1u64 << 32) + 5;
    let at = t0 + Duration::from_nanos(ticks);
    let end = auction.tick_end(at);
    assert!(end > at, "the next price change is in the past");
    assert_eq!(end, t0 + Duration::from_nanos(ticks + 1));
    assert_eq!(auction.price_at(at), 1e12 - ticks as f64);
    assert!(!auction.is_closed_at(at));
    // Mid-tick, on a longer tick.
    let auction =
        DutchAuction::new(2, "item", 1e12, 1.0, Duration::from_nanos(3), 0.0, t0).unwrap();
    let at = t0 + Duration::from_nanos(3 * ticks + 1);
    assert_eq!(
        auction.tick_end(at),
        t0 + Duration::from_nanos(3 * (ticks + 1))
    );
}
