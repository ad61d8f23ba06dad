//! Combinatorial auctions: bids on bundles, and winner determination.
//!
//! Winner determination (pick disjoint bundles of highest total) is
//! NP-hard. [`solve_exact`] is a branch and bound over items in the manner
//! of CASS (Fujishima et al.): at each step the lowest unallocated item is
//! given to one of the bids whose lowest item it is, or left unsold, and a
//! branch is cut when its value plus the best share every free item could
//! still fetch cannot beat the best found. It proves optimality within a
//! node budget. [`solve`] is what an auction closes with: the proven
//! optimum when there is one; past the budget, the better of the best
//! allocation the search found and [`solve_greedy`]'s (by amount over the
//! square root of the bundle size: Lehmann, O'Callaghan and Shoham),
//! marked not optimal and with the upper bound, so a caller sees how far
//! from optimal it can be; past 64 items, greedy's. Bundle bids stand
//! alone (OR bids): a bidder that wants at most one of two bundles bids on
//! one.

use std::collections::{HashMap, HashSet};

use mabeam_supervision_core::AgentId;
use serde::Serialize;
use tokio::time::Instant;

use super::{AuctionKind, AuctionOutcome, Award, BidRecord, Verdict, validate_amount};
use crate::AuctionError;

/// How many search nodes [`solve_exact`] visits before it settles for the
/// best allocation found and says it is not proven optimal.
pub const EXACT_NODE_BUDGET: u64 = 20_000_000;

/// A solution of winner determination.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    /// The indices of the winning bids, ascending.
    pub winners: Vec<usize>,
    /// Their total amount.
    pub value: f64,
    /// No allocation is worth more than this.
    pub upper_bound: f64,
    /// Whether `value` is proven optimal.
    pub exact: bool,
}

/// The highest share of its amount per item any bid offers for each item:
/// summed over free items, it bounds what they can still fetch.
fn best_shares(n_items: usize, bids: &[(Vec<usize>, f64)]) -> Vec<f64> {
    let mut shares = vec![0.0f64; n_items];
    for (items, amount) in bids {
        let share = amount / items.len().max(1) as f64;
        for &item in items {
            shares[item] = shares[item].max(share);
        }
    }
    shares
}

/// Finds the disjoint set of bids of highest total, proven optimal within
/// [`EXACT_NODE_BUDGET`] search nodes. Items are indices below `n_items`
/// (at most 64); each bid is its items and amount. `None` if there are
/// more than 64 items or a bid names an item out of range. Among
/// allocations of equal value the one found first wins: bids earlier in
/// the slice are tried first.
pub fn solve_exact(n_items: usize, bids: &[(Vec<usize>, f64)]) -> Option<Allocation> {
    solve_exact_within(n_items, bids, EXACT_NODE_BUDGET)
}

/// [`solve_exact`] within `node_budget` search nodes instead of
/// [`EXACT_NODE_BUDGET`]: past it, the best allocation found so far, not
/// marked exact, with the upper bound.
pub fn solve_exact_within(
    n_items: usize,
    bids: &[(Vec<usize>, f64)],
    node_budget: u64,
) -> Option<Allocation> {
    if n_items > 64
        || bids
            .iter()
            .any(|(items, _)| items.iter().any(|&i| i >= n_items))
    {
        return None;
    }
    let shares = best_shares(n_items, bids);
    let masks: Vec<u64> = bids
        .iter()
        .map(|(items, _)| items.iter().fold(0u64, |mask, &i| mask | 1 << i))
        .collect();
    // bins[i]: the bids whose lowest item is i, highest amount first.
    let mut bins: Vec<Vec<usize>> = vec![Vec::new(); n_items];
    for (index, mask) in masks.iter().enumerate() {
        if *mask != 0 {
            bins[mask.trailing_zeros() as usize].push(index);
        }
    }
    for bin in &mut bins {
        bin.sort_by(|&a, &b| bids[b].1.total_cmp(&bids[a].1).then(a.cmp(&b)));
    }
    let all = if n_items == 64 {
        u64::MAX
    } else {
        (1u64 << n_items) - 1
    };
    let mut search = Search {
        bids,
        masks: &masks,
        bins: &bins,
        shares: &shares,
        all,
        chosen: Vec::new(),
        best: (Vec::new(), 0.0),
        nodes: 0,
        budget: node_budget,
        exhausted: false,
    };
    search.run(0, 0.0);
    let upper_bound = shares.iter().sum::<f64>();
    let (mut winners, value) = search.best;
    winners.sort_unstable();
    Some(Allocation {
        winners,
        value,
        upper_bound: if search.exhausted { upper_bound } else { value },
        exact: !search.exhausted,
    })
}

struct Search<'a> {
    bids: &'a [(Vec<usize>, f64)],
    masks: &'a [u64],
    bins: &'a [Vec<usize>],
    shares: &'a [f64],
    all: u64,
    chosen: Vec<usize>,
    best: (Vec<usize>, f64),
    nodes: u64,
    budget: u64,
    exhausted: bool,
}

impl Search<'_> {
    fn run(&mut self, covered: u64, value: f64) {
        self.nodes += 1;
        if self.nodes > self.budget {
            self.exhausted = true;
            return;
        }
        if value > self.best.1 {
            self.best = (self.chosen.clone(), value);
        }
        let free = self.all & !covered;
        if free == 0 {
            return;
        }
        let mut bound = value;
        let mut rest = free;
        while rest != 0 {
            bound += self.shares[rest.trailing_zeros() as usize];
            rest &= rest - 1;
        }
        if bound <= self.best.1 {
            return;
        }
        let item = free.trailing_zeros() as usize;
        for &bid in &self.bins[item] {
            if self.masks[bid] & covered == 0 {
                self.chosen.push(bid);
                self.run(covered | self.masks[bid], value + self.bids[bid].1);
                self.chosen.pop();
                if self.exhausted {
                    return;
                }
            }
        }
        self.run(covered | 1 << item, value);
    }
}

/// Winner determination as an auction closes: [`solve_exact_within`]'s
/// proven optimum; past `node_budget`, whichever is worth more of the
/// best allocation the search found and [`solve_greedy`]'s (the search's
/// on a tie), not exact, with the upper bound; past 64 items, greedy's.
///
/// CPU-bound (up to the node budget): run it off the async workers, as
/// the [`Auctioneer`](crate::Auctioneer) does on a blocking thread.
pub fn solve(n_items: usize, bids: &[(Vec<usize>, f64)], node_budget: u64) -> Allocation {
    let Some(searched) = solve_exact_within(n_items, bids, node_budget) else {
        return solve_greedy(n_items, bids);
    };
    if searched.exact {
        return searched;
    }
    let greedy = solve_greedy(n_items, bids);
    let upper_bound = searched.upper_bound.max(greedy.upper_bound);
    let best = if greedy.value > searched.value {
        greedy
    } else {
        searched
    };
    Allocation {
        upper_bound,
        exact: false,
        ..best
    }
}

/// Allocates greedily by amount over the square root of the bundle size,
/// for any number of items; reports the upper bound any allocation has.
pub fn solve_greedy(n_items: usize, bids: &[(Vec<usize>, f64)]) -> Allocation {
    let valid = |items: &Vec<usize>| !items.is_empty() && items.iter().all(|&i| i < n_items);
    let mut order: Vec<usize> = (0..bids.len()).filter(|&i| valid(&bids[i].0)).collect();
    let score = |i: usize| bids[i].1 / (bids[i].0.len() as f64).sqrt();
    order.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
    let mut taken = vec![false; n_items];
    let mut winners = Vec::new();
    let mut value = 0.0;
    for index in order {
        let (items, amount) = &bids[index];
        if items.iter().all(|&i| !taken[i]) {
            items.iter().for_each(|&i| taken[i] = true);
            winners.push(index);
            value += amount;
        }
    }
    winners.sort_unstable();
    let shares = best_shares(
        n_items,
        &bids
            .iter()
            .filter(|(items, _)| valid(items))
            .cloned()
            .collect::<Vec<_>>(),
    );
    Allocation {
        winners,
        value,
        upper_bound: shares.iter().sum::<f64>().max(value),
        exact: false,
    }
}

/// A combinatorial auction: items with reserve prices, bundle bids until
/// the close, then winner determination. A bundle bid must offer at least
/// the sum of its items' reserves.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_economics::CombinatorialAuction;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let t0 = Instant::now();
/// let items = [("cpu", 0.0), ("gpu", 0.0)];
/// let mut auction = CombinatorialAuction::new(1, &items, t0, t0 + Duration::from_secs(1)).unwrap();
/// auction.submit("a".into(), &["cpu", "gpu"], 10.0, t0).unwrap();
/// auction.submit("b".into(), &["cpu"], 6.0, t0).unwrap();
/// auction.submit("c".into(), &["gpu"], 6.0, t0).unwrap();
/// assert!(auction.submit("d".into(), &["tpu"], 1.0, t0).is_err()); // unknown item
/// let outcome = auction.close();
/// assert_eq!(outcome.revenue(), 12.0); // b and c together beat a
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CombinatorialAuction {
    id: u64,
    items: Vec<String>,
    index: HashMap<String, usize>,
    reserves: Vec<f64>,
    opened: Instant,
    closes: Instant,
    bids: Vec<BidRecord>,
    accepted: Vec<(usize, Vec<usize>, f64)>,
    node_budget: u64,
}

impl CombinatorialAuction {
    /// An auction of `items` (name, reserve) open from `opened` to `closes`.
    pub fn new(
        id: u64,
        items: &[(&str, f64)],
        opened: Instant,
        closes: Instant,
    ) -> Result<Self, AuctionError> {
        if items.is_empty() {
            return Err(AuctionError::InvalidSpec("items: none".into()));
        }
        let mut index = HashMap::new();
        let mut reserves = Vec::new();
        for (i, (name, reserve)) in items.iter().enumerate() {
            validate_amount(*reserve)
                .map_err(|_| AuctionError::InvalidSpec(format!("reserve of {name}: {reserve}")))?;
            if index.insert((*name).to_owned(), i).is_some() {
                return Err(AuctionError::InvalidSpec(format!("items: {name} twice")));
            }
            reserves.push(*reserve);
        }
        if closes < opened {
            return Err(AuctionError::InvalidSpec("closes before it opens".into()));
        }
        Ok(CombinatorialAuction {
            id,
            items: items.iter().map(|(name, _)| (*name).to_owned()).collect(),
            index,
            reserves,
            opened,
            closes,
            bids: Vec::new(),
            accepted: Vec::new(),
            node_budget: EXACT_NODE_BUDGET,
        })
    }

    /// Sets how many search nodes winner determination may visit before
    /// it settles (see [`solve`]); [`EXACT_NODE_BUDGET`] by default.
    pub fn with_node_budget(mut self, node_budget: u64) -> Self {
        self.node_budget = node_budget;
        self
    }

    /// When the auction closes.
    pub fn closes(&self) -> Instant {
        self.closes
    }

    /// Takes `bidder`'s bid of `amount` on the bundle `items`, arriving at
    /// `at`. Refused (nothing changes) for an invalid amount, an empty
    /// bundle, an unknown or repeated item, an amount under the bundle's
    /// reserves, or a bid after the close.
    pub fn submit<S: AsRef<str>>(
        &mut self,
        bidder: AgentId,
        items: &[S],
        amount: f64,
        at: Instant,
    ) -> Result<(), AuctionError> {
        validate_amount(amount)?;
        if at > self.closes {
            return Err(AuctionError::Closed(bidder));
        }
        if items.is_empty() {
            return Err(AuctionError::UnknownItem(String::new()));
        }
        let mut bundle = Vec::with_capacity(items.len());
        let mut seen = HashSet::new();
        for item in items {
            let item = item.as_ref();
            let &i = self
                .index
                .get(item)
                .ok_or_else(|| AuctionError::UnknownItem(item.to_owned()))?;
            if !seen.insert(i) {
                return Err(AuctionError::InvalidSpec(format!(
                    "bundle names {item} twice"
                )));
            }
            bundle.push(i);
        }
        let minimum: f64 = bundle.iter().map(|&i| self.reserves[i]).sum();
        if amount < minimum {
            return Err(AuctionError::TooLow {
                bidder,
                amount,
                minimum,
            });
        }
        bundle.sort_unstable();
        self.accepted.push((self.bids.len(), bundle, amount));
        self.bids.push(BidRecord {
            bidder,
            amount,
            items: items.iter().map(|i| i.as_ref().to_owned()).collect(),
            at_ms: at.saturating_duration_since(self.opened).as_millis() as u64,
            verdict: Verdict::Accepted,
        });
        Ok(())
    }

    /// Records a bid that was refused, so the outcome shows it.
    pub fn record_refused(
        &mut self,
        bidder: AgentId,
        items: Vec<String>,
        amount: f64,
        at: Instant,
        error: &AuctionError,
    ) {
        self.bids.push(BidRecord {
            bidder,
            amount,
            items,
            at_ms: at.saturating_duration_since(self.opened).as_millis() as u64,
            verdict: Verdict::Refused(error.to_string()),
        });
    }

    /// Closes the auction: the disjoint bundles of highest total win, each
    /// paying its bid (proven optimal when the search completes within its
    /// node budget; otherwise the best allocation found, with its bound:
    /// see [`solve`]). The outcome's `allocation` says which.
    ///
    /// CPU-bound: call it off the async workers (`spawn_blocking`), as
    /// the [`Auctioneer`](crate::Auctioneer) does.
    pub fn close(self) -> AuctionOutcome {
        let bids: Vec<(Vec<usize>, f64)> = self
            .accepted
            .iter()
            .map(|(_, bundle, amount)| (bundle.clone(), *amount))
            .collect();
        let allocation = solve(self.items.len(), &bids, self.node_budget);
        let awards: Vec<Award> = allocation
            .winners
            .iter()
            .map(|&w| {
                let (record, _, amount) = &self.accepted[w];
                Award {
                    winner: self.bids[*record].bidder.clone(),
                    items: self.bids[*record].items.clone(),
                    price: *amount,
                }
            })
            .collect();
        let explanation = if awards.is_empty() {
            "no acceptable bundle bids: nothing sold".to_owned()
        } else if allocation.exact {
            format!(
                "{} disjoint bundles worth {} in total, the most any allocation of the {} bids reaches (proven by branch and bound); each winner pays its bid",
                awards.len(),
                allocation.value,
                bids.len()
            )
        } else {
            format!(
                "allocation worth {} found within the search budget, not proven optimal (no allocation is worth more than {}); each winner pays its bid",
                allocation.value, allocation.upper_bound
            )
        };
        AuctionOutcome {
            auction: self.id,
            kind: AuctionKind::Combinatorial,
            awards,
            bids: self.bids,
            no_answer: Vec::new(),
            explanation,
            allocation: Some(allocation),
        }
    }
}
