//! The English auction: open, ascending bids with a soft close.

use std::time::Duration;

use mabeam_supervision_core::AgentId;
use tokio::time::Instant;

use super::{Arrival, AuctionKind, AuctionOutcome, Award, BidRecord, Verdict, validate_amount};
use crate::AuctionError;

/// An English (ascending) auction of one item. The first bid must reach
/// the reserve; each later one must beat the standing high bid by at least
/// the minimum increment. A bid arriving within the soft-close window
/// before the deadline pushes the deadline to `extension` after it, so
/// nobody wins by sniping. A bid after the deadline is refused.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_economics::EnglishAuction;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let t0 = Instant::now();
/// let s = Duration::from_secs;
/// let mut auction = EnglishAuction::new(1, "slot", 10.0, 1.0, t0, t0 + s(60), s(10), s(10)).unwrap();
/// auction.submit("a".into(), 10.0, t0).unwrap();
/// assert!(auction.submit("b".into(), 10.5, t0).is_err()); // below 10 + 1
/// auction.submit("b".into(), 12.0, t0 + s(55)).unwrap(); // in the window: deadline moves
/// assert_eq!(auction.deadline(), t0 + s(65));
/// let outcome = auction.close();
/// assert_eq!(outcome.award().unwrap().price, 12.0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct EnglishAuction {
    id: u64,
    item: String,
    reserve: f64,
    min_increment: f64,
    opened: Instant,
    deadline: Instant,
    soft_close: Duration,
    extension: Duration,
    high: Option<(f64, usize)>,
    bids: Vec<BidRecord>,
    seq: u64,
    extensions: u32,
}

impl EnglishAuction {
    /// An auction of `item` opening at `opened` with a deadline, a reserve
    /// (the least first bid), a minimum increment (more than 0), a
    /// soft-close window and the extension a late bid buys.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u64,
        item: impl Into<String>,
        reserve: f64,
        min_increment: f64,
        opened: Instant,
        deadline: Instant,
        soft_close: Duration,
        extension: Duration,
    ) -> Result<Self, AuctionError> {
        validate_amount(reserve).map_err(|_| {
            AuctionError::InvalidSpec(format!(
                "reserve {reserve}: must be finite and not negative"
            ))
        })?;
        if !(min_increment.is_finite() && min_increment > 0.0) {
            return Err(AuctionError::InvalidSpec(format!(
                "min_increment {min_increment}: must be finite and above 0"
            )));
        }
        if deadline <= opened {
            return Err(AuctionError::InvalidSpec(
                "deadline: must be after the opening".into(),
            ));
        }
        Ok(EnglishAuction {
            id,
            item: item.into(),
            reserve,
            min_increment,
            opened,
            deadline,
            soft_close,
            extension,
            high: None,
            bids: Vec::new(),
            seq: 0,
            extensions: 0,
        })
    }

    /// The current deadline (soft close may have moved it).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The least bid accepted now.
    pub fn minimum_bid(&self) -> f64 {
        match self.high {
            None => self.reserve,
            Some((amount, _)) => amount + self.min_increment,
        }
    }

    /// The standing high bidder and bid.
    pub fn high_bid(&self) -> Option<(&AgentId, f64)> {
        self.high
            .map(|(amount, index)| (&self.bids[index].bidder, amount))
    }

    /// Whether the auction is over at `now`.
    pub fn is_closed_at(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Takes `bidder`'s bid arriving at `at`. Refused (and nothing changes)
    /// if the amount is invalid, the deadline has passed, the bid is below
    /// [`minimum_bid`](Self::minimum_bid), or the bidder already holds the
    /// high bid.
    pub fn submit(
        &mut self,
        bidder: AgentId,
        amount: f64,
        at: Instant,
    ) -> Result<(), AuctionError> {
        validate_amount(amount)?;
        if at >= self.deadline {
            return Err(AuctionError::Closed(bidder));
        }
        if self.high_bid().is_some_and(|(high, _)| *high == bidder) {
            return Err(AuctionError::AlreadyBid(bidder));
        }
        let minimum = self.minimum_bid();
        if amount < minimum {
            return Err(AuctionError::TooLow {
                bidder,
                amount,
                minimum,
            });
        }
        let arrival = self.arrival(at);
        self.high = Some((amount, self.bids.len()));
        self.bids.push(BidRecord {
            bidder,
            amount,
            items: vec![self.item.clone()],
            at_ms: arrival.at_ms,
            verdict: Verdict::Accepted,
        });
        if self.deadline.saturating_duration_since(at) <= self.soft_close {
            let extended = at + self.extension;
            if extended > self.deadline {
                self.deadline = extended;
                self.extensions += 1;
            }
        }
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

    /// Closes the auction: the standing high bid wins and pays its bid.
    pub fn close(self) -> AuctionOutcome {
        let extended = match self.extensions {
            0 => String::new(),
            n => format!("; the soft close extended the deadline {n} time(s)"),
        };
        let (awards, explanation) = match self.high {
            None => (
                Vec::new(),
                format!(
                    "no bid reached the reserve {}: nothing sold{extended}",
                    self.reserve
                ),
            ),
            Some((amount, index)) => {
                let winner = self.bids[index].bidder.clone();
                (
                    vec![Award {
                        winner: winner.clone(),
                        items: vec![self.item.clone()],
                        price: amount,
                    }],
                    format!(
                        "{winner} held the high bid {amount} when bidding ended and pays it{extended}"
                    ),
                )
            }
        };
        AuctionOutcome {
            auction: self.id,
            kind: AuctionKind::English,
            awards,
            bids: self.bids,
            no_answer: Vec::new(),
            explanation,
            allocation: None,
        }
    }
}
