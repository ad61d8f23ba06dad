//! The marketplace: agents list services, requests are matched by price,
//! quality and reputation, budgets are held at match time and settled on
//! completion, and completed transactions feed reputation.

mod ledger;
mod reputation;

use std::{collections::HashMap, sync::Arc};

use mabeam_supervision_core::{AgentId, Event, EventSink, MetaValue, Telemetry};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;

pub use ledger::{Balance, HoldId, Ledger, Totals};
pub use reputation::{PRIOR_SCORE, Reputation};

use crate::MarketError;

/// The id of a listing.
pub type ListingId = u64;
/// The id of a transaction.
pub type TransactionId = u64;

/// A service an agent offers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    /// The listing's id.
    pub id: ListingId,
    /// Who offers it.
    pub seller: AgentId,
    /// What service.
    pub service: String,
    /// The capabilities it brings.
    pub capabilities: Vec<String>,
    /// Its price, in credits.
    pub price: u64,
    /// Its advertised quality, in `[0, 1]`.
    pub quality: f64,
}

/// What a buyer wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Who buys (and pays from its budget).
    pub buyer: AgentId,
    /// What service.
    pub service: String,
    /// Capabilities the listing must have.
    pub capabilities: Vec<String>,
    /// The most it pays.
    pub max_price: u64,
    /// The least quality it accepts.
    pub min_quality: f64,
    /// The least seller reputation it accepts.
    pub min_reputation: f64,
}

/// How a transaction ended, or that it is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionState {
    /// Matched; the buyer's budget is held.
    Open,
    /// Done: the seller was paid.
    Completed,
    /// Called off: the hold went back to the buyer.
    Cancelled,
    /// The seller failed: the hold went back to the buyer.
    Failed,
}

/// A matched request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transaction {
    /// Its id.
    pub id: TransactionId,
    /// The listing matched.
    pub listing: ListingId,
    /// The buyer.
    pub buyer: AgentId,
    /// The seller.
    pub seller: AgentId,
    /// The price held, paid on completion.
    pub price: u64,
    /// Where it stands.
    pub state: TransactionState,
    /// Why this listing: its score against the others.
    pub explanation: String,
    #[serde(skip)]
    hold: HoldId,
}

/// A marketplace over a [`Ledger`] of budgets and a [`Reputation`].
///
/// Matching ranks the listings that satisfy a request (service,
/// capabilities, price, quality, reputation, not the buyer's own) by
/// `quality + reputation - price / max_price`, best first, ties to the
/// older listing; the buyer's budget is held for the price at once, so a
/// match never outruns the budget.
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use mabeam_economics::{Ledger, Marketplace, Request, Reputation};
/// use mabeam_supervision_core::Clock;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let ledger = Arc::new(Ledger::new());
/// let reputation = Arc::new(Reputation::new(Clock::tokio(), Duration::from_secs(3600)));
/// let market = Marketplace::new(ledger.clone(), reputation.clone());
/// ledger.grant(&"buyer".into(), 100).unwrap();
/// market.list(&"seller".into(), "ocr", &["pdf"], 40, 0.9).unwrap();
/// let deal = market.request(Request {
///     buyer: "buyer".into(), service: "ocr".into(), capabilities: vec!["pdf".into()],
///     max_price: 50, min_quality: 0.5, min_reputation: 0.0,
/// }).await.unwrap();
/// market.complete(deal.id, 1.0).await.unwrap();
/// assert_eq!(ledger.balance(&"buyer".into()).unwrap().spent, 40);
/// assert!(reputation.score(&"seller".into()) > 0.5);
/// # }
/// ```
pub struct Marketplace {
    ledger: Arc<Ledger>,
    reputation: Arc<Reputation>,
    telemetry: Telemetry,
    sink: Option<Arc<dyn EventSink>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    listings: HashMap<ListingId, Listing>,
    transactions: HashMap<TransactionId, Transaction>,
    next_id: u64,
}

impl std::fmt::Debug for Marketplace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Marketplace")
            .field("listings", &state.listings.len())
            .field("transactions", &state.transactions.len())
            .finish_non_exhaustive()
    }
}

impl Marketplace {
    /// A marketplace paying through `ledger` and rating into `reputation`.
    pub fn new(ledger: Arc<Ledger>, reputation: Arc<Reputation>) -> Self {
        Marketplace {
            ledger,
            reputation,
            telemetry: Telemetry::disabled(),
            sink: None,
            state: Mutex::new(State::default()),
        }
    }

    /// Reports matches and settlements through `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Records each transaction's changes through `sink` (stream
    /// `economics.market`).
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// `seller` offers `service` with `capabilities` at `price` and
    /// `quality` (in `[0, 1]`).
    pub fn list(
        &self,
        seller: &AgentId,
        service: &str,
        capabilities: &[&str],
        price: u64,
        quality: f64,
    ) -> Result<ListingId, MarketError> {
        if service.is_empty() {
            return Err(MarketError::Invalid("listing service: empty".into()));
        }
        if !(0.0..=1.0).contains(&quality) {
            return Err(MarketError::Invalid(format!(
                "listing quality {quality}: must be within 0 and 1"
            )));
        }
        let mut state = self.state.lock();
        state.next_id += 1;
        let id = state.next_id;
        state.listings.insert(
            id,
            Listing {
                id,
                seller: seller.clone(),
                service: service.to_owned(),
                capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
                price,
                quality,
            },
        );
        Ok(id)
    }

    /// Withdraws a listing (open transactions on it go on).
    pub fn delist(&self, id: ListingId) -> Result<Listing, MarketError> {
        self.state
            .lock()
            .listings
            .remove(&id)
            .ok_or(MarketError::UnknownListing(id))
    }

    /// The listings, oldest first.
    pub fn listings(&self) -> Vec<Listing> {
        let mut listings: Vec<Listing> = self.state.lock().listings.values().cloned().collect();
        listings.sort_by_key(|l| l.id);
        listings
    }

    /// Matches `request` with the best listing and holds its price from
    /// the buyer's budget. Refused (nothing held) when nothing matches or
    /// the budget does not cover the best match.
    pub async fn request(&self, request: Request) -> Result<Transaction, MarketError> {
        if request.max_price == 0 {
            return Err(MarketError::Invalid(
                "request max_price: must be above 0".into(),
            ));
        }
        let transaction = {
            let mut state = self.state.lock();
            let mut best: Option<(f64, &Listing, f64)> = None;
            let mut candidates = 0;
            let mut ids: Vec<&ListingId> = state.listings.keys().collect();
            ids.sort();
            for id in ids {
                let listing = &state.listings[id];
                if listing.service != request.service
                    || listing.price > request.max_price
                    || listing.quality < request.min_quality
                    || listing.seller == request.buyer
                    || !request
                        .capabilities
                        .iter()
                        .all(|c| listing.capabilities.contains(c))
                {
                    continue;
                }
                let reputation = self.reputation.score(&listing.seller);
                if reputation < request.min_reputation {
                    continue;
                }
                candidates += 1;
                let score =
                    listing.quality + reputation - listing.price as f64 / request.max_price as f64;
                if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                    best = Some((score, listing, reputation));
                }
            }
            let Some((score, listing, reputation)) = best else {
                return Err(MarketError::NoMatch);
            };
            let listing = listing.clone();
            let hold = self.ledger.hold(&request.buyer, listing.price)?;
            state.next_id += 1;
            let id = state.next_id;
            let transaction = Transaction {
                id,
                listing: listing.id,
                buyer: request.buyer.clone(),
                seller: listing.seller.clone(),
                price: listing.price,
                state: TransactionState::Open,
                explanation: format!(
                    "listing {} of {} scored best of {candidates}: quality {} + reputation {reputation:.3} - price {}/{} = {score:.3}",
                    listing.id, listing.seller, listing.quality, listing.price, request.max_price
                ),
                hold,
            };
            state.transactions.insert(id, transaction.clone());
            transaction
        };
        self.report(&transaction).await;
        Ok(transaction)
    }

    /// The transaction `id`.
    pub fn transaction(&self, id: TransactionId) -> Option<Transaction> {
        self.state.lock().transactions.get(&id).cloned()
    }

    /// Completes an open transaction: the seller is paid and the buyer's
    /// `rating` (in `[0, 1]`) of it counts towards the seller's
    /// reputation.
    pub async fn complete(
        &self,
        id: TransactionId,
        rating: f64,
    ) -> Result<Transaction, MarketError> {
        if !(0.0..=1.0).contains(&rating) {
            return Err(MarketError::Invalid(format!(
                "rating {rating}: must be within 0 and 1"
            )));
        }
        let transaction = self.close(id, TransactionState::Completed)?;
        self.reputation
            .rate(&transaction.buyer, &transaction.seller, rating)?;
        self.report(&transaction).await;
        Ok(transaction)
    }

    /// Calls off an open transaction: the hold goes back to the buyer.
    pub async fn cancel(&self, id: TransactionId) -> Result<Transaction, MarketError> {
        let transaction = self.close(id, TransactionState::Cancelled)?;
        self.report(&transaction).await;
        Ok(transaction)
    }

    /// Marks an open transaction failed by the seller: the hold goes back
    /// to the buyer and the failure rates the seller 0.
    pub async fn fail(&self, id: TransactionId) -> Result<Transaction, MarketError> {
        let transaction = self.close(id, TransactionState::Failed)?;
        self.reputation
            .rate(&transaction.buyer, &transaction.seller, 0.0)?;
        self.report(&transaction).await;
        Ok(transaction)
    }

    fn close(&self, id: TransactionId, to: TransactionState) -> Result<Transaction, MarketError> {
        let mut state = self.state.lock();
        let transaction = state
            .transactions
            .get_mut(&id)
            .filter(|t| t.state == TransactionState::Open)
            .ok_or(MarketError::UnknownTransaction(id))?;
        match to {
            TransactionState::Completed => {
                self.ledger.settle(transaction.hold, &transaction.seller)?
            }
            _ => self.ledger.release(transaction.hold)?,
        };
        transaction.state = to;
        Ok(transaction.clone())
    }

    async fn report(&self, transaction: &Transaction) {
        let state = serde_json::to_value(transaction.state).unwrap_or_default();
        let state = state.as_str().unwrap_or("unknown");
        self.telemetry.emit(
            &["economics", "market", "transaction"],
            &[("price", transaction.price as f64)],
            &[
                ("state", MetaValue::Str(state)),
                ("transaction", MetaValue::U64(transaction.id)),
            ],
        );
        if let Some(sink) = &self.sink {
            let data = json!(transaction);
            let _ = sink
                .record(Event::new(
                    "economics.market",
                    format!("transaction_{state}"),
                    data,
                ))
                .await;
        }
    }
}
