//! The Ledger on its own, not through the marketplace (whose transaction
//! states would hide a hold that outlives its settlement or release): a
//! hold closes once, a second close is a typed error that moves nothing,
//! and money is conserved over any sequence of direct operations.

use std::collections::BTreeMap;

use mabeam_economics::{Balance, HoldId, Ledger, MarketError, Totals};
use mabeam_supervision_core::{AgentId, ErrorCode};
use proptest::prelude::*;

const AGENTS: [&str; 3] = ["a", "b", "c"];

fn agent(i: usize) -> AgentId {
    AGENTS[i % AGENTS.len()].into()
}

/// Every account and the totals: what a refused call must leave as it was.
fn snapshot(ledger: &Ledger) -> (Vec<Option<Balance>>, Totals) {
    let accounts = (0..AGENTS.len())
        .map(|i| ledger.balance(&agent(i)))
        .collect();
    (accounts, ledger.totals())
}

fn conserved(totals: &Totals) -> bool {
    totals.free + totals.held + totals.spent == totals.granted && totals.earned == totals.spent
}

#[test]
fn a_hold_released_twice_is_refused_the_second_time_and_moves_nothing() {
    let ledger = Ledger::new();
    ledger.grant(&agent(0), 100).unwrap();
    let hold = ledger.hold(&agent(0), 30).unwrap();
    assert_eq!(ledger.release(hold).unwrap(), 30);
    let before = snapshot(&ledger);

    let again = ledger.release(hold).unwrap_err();
    assert_eq!(again, MarketError::UnknownHold(hold));
    assert!(again.code() > 7100 && again.code() < 7200);
    assert_eq!(snapshot(&ledger), before);
    let balance = ledger.balance(&agent(0)).unwrap();
    assert_eq!((balance.free, balance.held), (100, 0));
    // Nor can it be settled afterwards.
    assert_eq!(
        ledger.settle(hold, &agent(1)).unwrap_err(),
        MarketError::UnknownHold(hold)
    );
    assert_eq!(snapshot(&ledger), before);
}

#[test]
fn a_hold_settled_twice_is_refused_the_second_time_and_moves_nothing() {
    let ledger = Ledger::new();
    ledger.grant(&agent(0), 100).unwrap();
    let hold = ledger.hold(&agent(0), 30).unwrap();
    assert_eq!(ledger.settle(hold, &agent(1)).unwrap(), 30);
    let before = snapshot(&ledger);

    assert_eq!(
        ledger.settle(hold, &agent(1)).unwrap_err(),
        MarketError::UnknownHold(hold)
    );
    assert_eq!(
        ledger.settle(hold, &agent(2)).unwrap_err(),
        MarketError::UnknownHold(hold)
    );
    assert_eq!(
        ledger.release(hold).unwrap_err(),
        MarketError::UnknownHold(hold)
    );
    assert_eq!(snapshot(&ledger), before);
    let payer = ledger.balance(&agent(0)).unwrap();
    assert_eq!((payer.free, payer.held, payer.spent), (70, 0, 30));
    assert_eq!(ledger.balance(&agent(1)).unwrap().earned, 30);
}

/// Amounts at the edge of `u64`: a grant, a settlement that would pass it
/// is a typed error that moves nothing (before: a grant on top of a full
/// hold was taken, and its release then overflowed and panicked).
#[test]
fn amounts_past_u64_are_refused_and_move_nothing() {
    let ledger = Ledger::new();
    let (a, b, c) = (agent(0), agent(1), agent(2));
    ledger.grant(&a, u64::MAX).unwrap();
    let full = ledger.hold(&a, u64::MAX).unwrap();
    let before = snapshot(&ledger);
    assert_eq!(
        ledger.grant(&a, 1).unwrap_err(),
        MarketError::Overflow(a.clone())
    );
    assert_eq!(snapshot(&ledger), before);
    assert_eq!(ledger.release(full).unwrap(), u64::MAX);

    // c earns u64::MAX; one more credit to c is refused, the hold kept.
    let full = ledger.hold(&a, u64::MAX).unwrap();
    ledger.settle(full, &c).unwrap();
    ledger.grant(&b, 1).unwrap();
    let one = ledger.hold(&b, 1).unwrap();
    let before = snapshot(&ledger);
    assert_eq!(
        ledger.settle(one, &c).unwrap_err(),
        MarketError::Overflow(c.clone())
    );
    assert_eq!(snapshot(&ledger), before);
    assert_eq!(ledger.settle(one, &a).unwrap(), 1);

    // a has spent u64::MAX; spending one more is refused.
    ledger.grant(&a, 5).unwrap();
    let more = ledger.hold(&a, 5).unwrap();
    let before = snapshot(&ledger);
    assert_eq!(
        ledger.settle(more, &b).unwrap_err(),
        MarketError::Overflow(a.clone())
    );
    assert_eq!(snapshot(&ledger), before);
    assert_eq!(ledger.release(more).unwrap(), 5);
    assert!(conserved(&ledger.totals()));
}

#[derive(Debug, Clone)]
enum Op {
    Grant(usize, u64),
    Hold(usize, u64),
    /// Settle the n-th hold ever made (open or not) to an agent.
    Settle(usize, usize),
    /// Release the n-th hold ever made (open or not).
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 0..200u64).prop_map(|(a, n)| Op::Grant(a, n)),
        (0..4usize, 0..150u64).prop_map(|(a, n)| Op::Hold(a, n)),
        (0..12usize, 0..3usize).prop_map(|(h, a)| Op::Settle(h, a)),
        (0..12usize).prop_map(Op::Release),
    ]
}

proptest! {
    /// Over any sequence of direct calls: money is conserved after each;
    /// a hold closes at most once (a second settle or release is refused
    /// with `UnknownHold`); and every refused call changes nothing.
    #[test]
    fn money_is_conserved_and_a_hold_closes_once(ops in prop::collection::vec(op(), 1..80)) {
        let ledger = Ledger::new();
        let mut holds: Vec<HoldId> = Vec::new();
        // The model: each open hold and its amount.
        let mut open: BTreeMap<HoldId, u64> = BTreeMap::new();
        for op in ops {
            let before = snapshot(&ledger);
            let result = match op {
                Op::Grant(a, n) => ledger.grant(&agent(a), n).map(|()| None),
                // Agent 3 has no account: refused.
                Op::Hold(a, n) => {
                    let who: AgentId = if a == 3 { "nobody".into() } else { agent(a) };
                    ledger.hold(&who, n).map(|id| {
                        holds.push(id);
                        open.insert(id, n);
                        None
                    })
                }
                Op::Settle(h, a) => match holds.get(h) {
                    Some(&id) => {
                        let settled = ledger.settle(id, &agent(a));
                        prop_assert_eq!(settled.is_ok(), open.remove(&id).is_some(), "settle of {}", id);
                        settled.map(|_| Some(id))
                    }
                    None => continue,
                },
                Op::Release(h) => match holds.get(h) {
                    Some(&id) => {
                        let released = ledger.release(id);
                        prop_assert_eq!(released.is_ok(), open.remove(&id).is_some(), "release of {}", id);
                        released.map(|_| Some(id))
                    }
                    None => continue,
                },
            };
            if let Err(err) = &result {
                prop_assert_eq!(snapshot(&ledger), before.clone(), "{:?} changed something", err);
            }
            let totals = ledger.totals();
            prop_assert!(conserved(&totals), "{:?}", totals);
            // What is held is exactly the open holds.
            prop_assert_eq!(totals.held, open.values().map(|&n| u128::from(n)).sum::<u128>());
        }
    }
}
