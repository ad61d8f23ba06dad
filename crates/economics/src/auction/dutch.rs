//! The Dutch auction: a descending price clock.

use std::time::Duration;

use mabeam_supervision_core::AgentId;
use tokio::time::Instant;

use super::{AuctionKind, AuctionOutcome, Award, BidRecord, Verdict, validate_amount};
use crate::AuctionError;

/// A Dutch auction of one item: the price starts high and falls by `step`
/// every `tick` down to the reserve; the first bidder to accept wins at the
/// price standing when it accepted. Once the clock has spent a tick at the
/// reserve with no taker, the auction closes unsold.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use mabeam_economics::DutchAuction;
/// use tokio::time::Instant;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let t0 = Instant::now();
/// let mut auction = DutchAuction::new(1, "slot", 100.0, 10.0, Duration::from_secs(1), 50.0, t0).unwrap();
/// assert_eq!(auction.price_at(t0 + Duration::from_millis(2500)), 80.0);
/// auction.accept("a".into(), t0 + Duration::from_millis(2500)).unwrap();
/// assert!(auction.accept("b".into(), t0 + Duration::from_millis(2600)).is_err()); // sold
/// assert_eq!(auction.close().award().unwrap().price, 80.0);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DutchAuction {
    id: u64,
    item: String,
    start_price: f64,
    step: f64,
    tick: Duration,
    reserve: f64,
    opened: Instant,
    winner: Option<(AgentId, f64)>,
    bids: Vec<BidRecord>,
}

impl DutchAuction {
    /// An auction of `item` whose price starts at `start_price` at
    /// `opened` and falls by `step` (above 0) every `tick` (above 0) down
    /// to `reserve`.
    pub fn new(
        id: u64,
        item: impl Into<String>,
        start_price: f64,
        step: f64,
        tick: Duration,
        reserve: f64,
        opened: Instant,
    ) -> Result<Self, AuctionError> {
        let invalid = |what: String| AuctionError::InvalidSpec(what);
        validate_amount(start_price).map_err(|_| invalid(format!("start_price {start_price}")))?;
        validate_amount(reserve).map_err(|_| invalid(format!("reserve {reserve}")))?;
        if !(step.is_finite() && step > 0.0) {
            return Err(invalid(format!("step {step}: must be finite and above 0")));
        }
        if tick.is_zero() {
            return Err(invalid("tick: must be above 0".into()));
        }
        if reserve > start_price {
            return Err(invalid(format!(
                "reserve {reserve}: above the start price {start_price}"
            )));
        }
        Ok(DutchAuction {
            id,
            item: item.into(),
            start_price,
            step,
            tick,
            reserve,
            opened,
            winner: None,
            bids: Vec::new(),
        })
    }

    /// Whole ticks elapsed from the opening to `at` (saturating: a
    /// clock that ran past `u64::MAX` ticks stands at the last).
    fn ticks_at(&self, at: Instant) -> u64 {
        let ticks = at.saturating_duration_since(self.opened).as_nanos() / self.tick.as_nanos();
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// How many ticks the price takes to reach the reserve.
    fn ticks_to_reserve(&self) -> u64 {
        ((self.start_price - self.reserve) / self.step).ceil() as u64
    }

    /// The price standing at `at`.
    pub fn price_at(&self, at: Instant) -> f64 {
        (self.start_price - self.step * self.ticks_at(at) as f64).max(self.reserve)
    }

    /// When the tick that contains `at` ends (the next price change):
    /// always after `at`, however many ticks have passed. Where that
    /// instant is past what `Instant` can hold, `at` plus one tick (or
    /// `at` itself, at the very end of time).
    pub fn tick_end(&self, at: Instant) -> Instant {
        // In u128 nanoseconds: `ticks + 1` ticks, never wrapped (a u32
        // count wrapped after 2^32 ticks and put the end in the past).
        let nanos = (u128::from(self.ticks_at(at)) + 1).saturating_mul(self.tick.as_nanos());
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let offset = Duration::new(secs, (nanos % 1_000_000_000) as u32);
        self.opened
            .checked_add(offset)
            .filter(|end| *end > at)
            .or_else(|| at.checked_add(self.tick))
            .unwrap_or(at)
    }

    /// Whether the auction is over at `at`: sold, or a full tick spent at
    /// the reserve.
    pub fn is_closed_at(&self, at: Instant) -> bool {
        self.winner.is_some() || self.ticks_at(at) > self.ticks_to_reserve()
    }

    /// `bidder` accepts the price standing at `at`. Refused if the item is
    /// sold or the clock ran out.
    pub fn accept(&mut self, bidder: AgentId, at: Instant) -> Result<f64, AuctionError> {
        if self.is_closed_at(at) {
            return Err(AuctionError::Closed(bidder));
        }
        let price = self.price_at(at);
        self.bids.push(BidRecord {
            bidder: bidder.clone(),
            amount: price,
            items: vec![self.item.clone()],
            at_ms: at.saturating_duration_since(self.opened).as_millis() as u64,
            verdict: Verdict::Accepted,
        });
        self.winner = Some((bidder, price));
        Ok(price)
    }

    /// Records an acceptance that was refused, so the outcome shows it.
    pub fn record_refused(&mut self, bidder: AgentId, at: Instant, error: &AuctionError) {
        self.bids.push(BidRecord {
            bidder,
            amount: self.price_at(at),
            items: vec![self.item.clone()],
            at_ms: at.saturating_duration_since(self.opened).as_millis() as u64,
            verdict: Verdict::Refused(error.to_string()),
        });
    }

    /// Closes the auction.
    pub fn close(self) -> AuctionOutcome {
        let (awards, explanation) = match &self.winner {
            Some((winner, price)) => (
                vec![Award {
                    winner: winner.clone(),
                    items: vec![self.item.clone()],
                    price: *price,
                }],
                format!("{winner} accepted first, at the standing price {price}"),
            ),
            None => (
                Vec::new(),
                format!(
                    "nobody accepted down to the reserve {}: nothing sold",
                    self.reserve
                ),
            ),
        };
        AuctionOutcome {
            auction: self.id,
            kind: AuctionKind::Dutch,
            awards,
            bids: self.bids,
            no_answer: Vec::new(),
            explanation,
            allocation: None,
        }
    }
}
