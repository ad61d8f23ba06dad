//! Auctions: the rules of each kind as a state machine that takes bids and
//! closes on an outcome, and the [`Auctioneer`] that invites agents through
//! the `AgentDirectory` and feeds their answers to those rules.
//!
//! | kind | bids | winner | price |
//! |---|---|---|---|
//! | [`SealedBidAuction`] first price | one sealed bid per bidder | highest at or above the reserve | its own bid |
//! | [`SealedBidAuction`] Vickrey | one sealed bid per bidder | highest at or above the reserve | the second-highest bid, or the reserve if higher |
//! | [`EnglishAuction`] | rising, each at least the minimum increment over the last | the last standing high bid at or above the reserve | its bid |
//! | [`DutchAuction`] | acceptances of a falling price | the first acceptance | the price when accepted |
//! | [`CombinatorialAuction`] | bids on bundles of items | the set of disjoint bundles of highest total | each winner its bid |
//!
//! Ties go to the earliest bid (the earlier arrival time on the auction's
//! clock, then the order the auction received them): the outcome is a
//! function of the bids and their order alone. A refused bid
//! ([`AuctionError`]) leaves the auction unchanged. Every [`AuctionOutcome`]
//! lists each bid with whether it counted and why not, the invitees that
//! gave no answer, and an explanation of the winner and price.

mod auctioneer;
mod combinatorial;
mod dutch;
mod english;
mod sealed;

use std::fmt;

use mabeam_supervision_core::AgentId;
use serde::Serialize;
use tokio::time::Instant;

pub use auctioneer::{
    Auctioneer, BID_PROTOCOL, CombinatorialSpec, DutchSpec, EnglishSpec, SealedSpec,
};
pub use combinatorial::{
    Allocation, CombinatorialAuction, EXACT_NODE_BUDGET, solve, solve_exact, solve_exact_within,
    solve_greedy,
};
pub use dutch::DutchAuction;
pub use english::EnglishAuction;
pub use sealed::{PriceRule, SealedBidAuction};

use crate::AuctionError;

/// Checks that `amount` is a usable price: finite and not negative.
pub fn validate_amount(amount: f64) -> Result<f64, AuctionError> {
    if amount.is_finite() && amount >= 0.0 {
        Ok(amount)
    } else {
        Err(AuctionError::InvalidAmount(amount))
    }
}

/// Which auction an outcome is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuctionKind {
    /// Sealed bids, the winner pays its bid.
    FirstPrice,
    /// Sealed bids, the winner pays the second price.
    Vickrey,
    /// Ascending, open bids.
    English,
    /// Descending price clock.
    Dutch,
    /// Bids on bundles.
    Combinatorial,
}

impl fmt::Display for AuctionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuctionKind::FirstPrice => "first_price",
            AuctionKind::Vickrey => "vickrey",
            AuctionKind::English => "english",
            AuctionKind::Dutch => "dutch",
            AuctionKind::Combinatorial => "combinatorial",
        })
    }
}

/// One bid as the auction saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BidRecord {
    /// Who bid.
    pub bidder: AgentId,
    /// The amount (for a Dutch auction, the price accepted).
    pub amount: f64,
    /// The items bid on (the auction's item, or a bundle).
    pub items: Vec<String>,
    /// Milliseconds after the auction opened that the bid arrived.
    pub at_ms: u64,
    /// Whether the bid counted, and why not.
    pub verdict: Verdict,
}

/// Whether a bid counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// The bid was accepted (it may still lose).
    Accepted,
    /// The bid was refused, with the error's message.
    Refused(String),
}

/// A winner, what it won and what it pays.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Award {
    /// The winner.
    pub winner: AgentId,
    /// The items won.
    pub items: Vec<String>,
    /// The price it pays.
    pub price: f64,
}

/// How an auction ended: every bid, every silence, the awards and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuctionOutcome {
    /// The auction's id (unique per [`Auctioneer`]).
    pub auction: u64,
    /// Its kind.
    pub kind: AuctionKind,
    /// The awards (empty when nothing was sold).
    pub awards: Vec<Award>,
    /// Every bid received, in arrival order.
    pub bids: Vec<BidRecord>,
    /// Invitees that gave no bid, with why (timeout, crashed, declined...).
    pub no_answer: Vec<(AgentId, String)>,
    /// Why the awards follow from the bids and the rules.
    pub explanation: String,
    /// For a combinatorial auction, its winner determination: the value,
    /// the upper bound no allocation exceeds, and whether the value is
    /// proven optimal (`exact`); `None` for the other kinds.
    pub allocation: Option<Allocation>,
}

impl AuctionOutcome {
    /// The single award of a one-item auction, if something was sold.
    pub fn award(&self) -> Option<&Award> {
        self.awards.first()
    }

    /// The sum the winners pay.
    pub fn revenue(&self) -> f64 {
        self.awards.iter().map(|award| award.price).sum()
    }
}

/// Where a bid stands in arrival order: time first, then the order of
/// receipt, so ties resolve the same way every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Arrival {
    pub(crate) at_ms: u64,
    pub(crate) seq: u64,
}

impl Arrival {
    /// The next arrival of an auction opened at `opened`: `seq` counts
    /// the bids received so far.
    pub(crate) fn next(opened: Instant, seq: &mut u64, at: Instant) -> Arrival {
        *seq += 1;
        Arrival {
            at_ms: at.saturating_duration_since(opened).as_millis() as u64,
            seq: *seq,
        }
    }
}

/// Appends a refused single-item bid to `bids`, so the outcome shows it.
pub(crate) fn push_refused(
    bids: &mut Vec<BidRecord>,
    arrival: Arrival,
    bidder: AgentId,
    amount: f64,
    item: &str,
    error: &AuctionError,
) {
    bids.push(BidRecord {
        bidder,
        amount,
        items: vec![item.to_owned()],
        at_ms: arrival.at_ms,
        verdict: Verdict::Refused(error.to_string()),
    });
}
