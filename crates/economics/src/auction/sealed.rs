//! Sealed-bid auctions: first price and Vickrey (second price).

use std::collections::HashSet;

use mabeam_supervision_core::AgentId;
use tokio::time::Instant;

use super::{Arrival, AuctionKind, AuctionOutcome, Award, BidRecord, Verdict, validate_amount};
use crate::AuctionError;

/// What the winner of a sealed-bid auction pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceRule {
    /// Its own bid.
    FirstPrice,
    /// The second-highest bid, or the reserve if that is higher (Vickrey):
    /// bidding one's true value is then the best strategy.
    SecondPrice,
}

/// A sealed-bid auction of one item: each bidder bids once before the
/// close; the highest bid at or above the reserve wins, ties to the
/// earliest.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_economics::{PriceRule, SealedBidAuction};
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let opened = Instant::now();
/// let mut auction = SealedBidAuction::new(1, "gpu-hour", PriceRule::SecondPrice, 10.0, opened, opened + Duration::from_secs(1)).unwrap();
/// auction.submit("a".into(), 30.0, opened).unwrap();
/// auction.submit("b".into(), 25.0, opened).unwrap();
/// assert!(auction.submit("c".into(), f64::NAN, opened).is_err()); // refused, nothing changed
/// let outcome = auction.close();
/// let award = outcome.award().unwrap();
/// assert_eq!((award.winner.as_str(), award.price), ("a", 25.0));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SealedBidAuction {
    id: u64,
    item: String,
    rule: PriceRule,
    reserve: f64,
    opened: Instant,
    closes: Instant,
    bids: Vec<BidRecord>,
    /// Accepted bids: (amount, arrival, index into `bids`).
    accepted: Vec<(f64, Arrival, usize)>,
    bidders: HashSet<AgentId>,
    seq: u64,
}

impl SealedBidAuction {
    /// An auction of `item` open from `opened` until `closes`, with a
    /// reserve price (0 for none).
    pub fn new(
        id: u64,
        item: impl Into<String>,
        rule: PriceRule,
        reserve: f64,
        opened: Instant,
        closes: Instant,
    ) -> Result<Self, AuctionError> {
        validate_amount(reserve).map_err(|_| {
            AuctionError::InvalidSpec(format!(
                "reserve {reserve}: must be finite and not negative"
            ))
        })?;
        if closes < opened {
            return Err(AuctionError::InvalidSpec("closes before it opens".into()));
        }
        Ok(SealedBidAuction {
            id,
            item: item.into(),
            rule,
            reserve,
            opened,
            closes,
            bids: Vec::new(),
            accepted: Vec::new(),
            bidders: HashSet::new(),
            seq: 0,
        })
    }

    /// When the auction closes.
    pub fn closes(&self) -> Instant {
        self.closes
    }

    /// Takes `bidder`'s sealed bid arriving at `at`. Refused (and nothing
    /// changes) if the amount is invalid, the auction has closed, or the
    /// bidder has bid already.
    pub fn submit(
        &mut self,
        bidder: AgentId,
        amount: f64,
        at: Instant,
    ) -> Result<(), AuctionError> {
        validate_amount(amount)?;
        if at > self.closes {
            return Err(AuctionError::Closed(bidder));
        }
        if self.bidders.contains(&bidder) {
            return Err(AuctionError::AlreadyBid(bidder));
        }
        let arrival = self.arrival(at);
        self.bidders.insert(bidder.clone());
        self.accepted.push((amount, arrival, self.bids.len()));
        self.bids.push(BidRecord {
            bidder,
            amount,
            items: vec![self.item.clone()],
            at_ms: arrival.at_ms,
            verdict: Verdict::Accepted,
        });
        Ok(())
    }

    /// Records a bid that was refused, so the outcome shows it.
    pub fn record_refused(
        &mut self,
        bidder: AgentId,
        amount: f64,
        at: Instant,
        error: &AuctionError,
    ) {
        let arrival = self.arrival(at);
        super::push_refused(&mut self.bids, arrival, bidder, amount, &self.item, error);
    }

    fn arrival(&mut self, at: Instant) -> Arrival {
        Arrival::next(self.opened, &mut self.seq, at)
    }

    /// Closes the auction and says who won and what it pays.
    pub fn close(self) -> AuctionOutcome {
        let kind = match self.rule {
            PriceRule::FirstPrice => AuctionKind::FirstPrice,
            PriceRule::SecondPrice => AuctionKind::Vickrey,
        };
        let mut ranked = self.accepted.clone();
        // Highest amount first; among equal amounts the earliest arrival.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let (awards, explanation) = match ranked.first() {
            None => (Vec::new(), "no bids: nothing sold".to_owned()),
            Some(&(best, _, _)) if best < self.reserve => (
                Vec::new(),
                format!(
                    "highest bid {best} is below the reserve {}: nothing sold",
                    self.reserve
                ),
            ),
            Some(&(best, _, index)) => {
                let winner = self.bids[index].bidder.clone();
                let tie = ranked.get(1).is_some_and(|second| second.0 == best);
                let tie_note = if tie {
                    " (tied; the earliest bid wins)"
                } else {
                    ""
                };
                let (price, why) = match self.rule {
                    PriceRule::FirstPrice => (best, format!("pays its own bid {best}")),
                    PriceRule::SecondPrice => {
                        let second = ranked.get(1).map_or(0.0, |s| s.0);
                        let price = second.max(self.reserve);
                        let why = if second >= self.reserve && ranked.len() > 1 {
                            format!("pays the second-highest bid {second}")
                        } else {
                            format!("pays the reserve {}", self.reserve)
                        };
                        (price, why)
                    }
                };
                (
                    vec![Award {
                        winner: winner.clone(),
                        items: vec![self.item.clone()],
                        price,
                    }],
                    format!("{winner} bid highest with {best}{tie_note} and {why}"),
                )
            }
        };
        AuctionOutcome {
            auction: self.id,
            kind,
            awards,
            bids: self.bids,
            no_answer: Vec::new(),
            explanation,
            allocation: None,
        }
    }
}
