//! MABEAM's economics: auctions among agents, a marketplace with budgets
//! and reputation, cost-optimal assignment of tasks, and the LoadBalancer.
//!
//! Every bid and offer comes from the agents themselves: the crate reaches
//! them through supervision-core's `AgentDirectory` contract (an envelope
//! of a protocol such as [`BID_PROTOCOL`], answered by the agent, within a
//! deadline), so it depends on no other service crate. Outcomes are
//! recorded through an injected `EventSink` and reported through
//! `Telemetry`.
//!
//! - [`auction`]: sealed first-price and Vickrey, English with soft close,
//!   Dutch, combinatorial with exact winner determination; the
//!   [`Auctioneer`] runs them among agents.
//! - [`market`]: the [`Marketplace`] of listings and requests over a
//!   [`Ledger`] of budgets (held at match, settled on completion, released
//!   on cancellation or failure; money conserved) and a [`Reputation`]
//!   that decays with time and cannot be inflated by self-dealing or
//!   repetition.
//! - cost models per resource ([`CostModel`]) and the least-cost
//!   assignment of tasks to agents under budgets ([`assign`], the
//!   Hungarian method).
//! - [`balancer`]: the [`LoadBalancer`] (round-robin, weighted,
//!   least-loaded, capability-aware, performance-weighted through the
//!   `AgentLoad` contract), which never picks an agent that is not running.
//!
//! It is not a payment system: amounts are numbers agents agree on, and
//! money lives only in the [`Ledger`]'s accounts.
//!
//! # Example
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use mabeam_economics::{Ledger, Marketplace, Request, Reputation};
//! use mabeam_supervision_core::Clock;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ledger = Arc::new(Ledger::new());
//! let reputation = Arc::new(Reputation::new(Clock::tokio(), Duration::from_secs(3600)));
//! let market = Marketplace::new(ledger.clone(), reputation);
//! ledger.grant(&"buyer".into(), 100)?;
//! market.list(&"seller".into(), "ocr", &["pdf"], 40, 0.9)?;
//! let deal = market.request(Request {
//!     buyer: "buyer".into(), service: "ocr".into(), capabilities: vec!["pdf".into()],
//!     max_price: 50, min_quality: 0.5, min_reputation: 0.0,
//! }).await?;
//! market.complete(deal.id, 1.0).await?;
//! assert_eq!(ledger.balance(&"buyer".into()).map(|b| b.spent), Some(40));
//! # Ok(()) }
//! ```
//!
//! # Examples
//!
//! The package's `examples/` folder: `auction_and_market` (agents bid in a
//! Vickrey auction; a marketplace round with budgets and reputation), run
//! with `cargo run -p mabeam-economics --example auction_and_market`.

pub mod auction;
pub mod balancer;
mod cost;
mod error;
pub mod market;

pub use auction::{
    Allocation, AuctionKind, AuctionOutcome, Auctioneer, Award, BID_PROTOCOL, BidRecord,
    CombinatorialAuction, CombinatorialSpec, DutchAuction, DutchSpec, EnglishAuction, EnglishSpec,
    PriceRule, SealedBidAuction, SealedSpec, Verdict, solve, solve_exact, solve_exact_within,
    solve_greedy,
};
pub use balancer::{BalanceStrategy, Lease, LoadBalancer, MemberSpec, Moved, Work};
pub use cost::{Assignment, CostModel, Placement, Task, Worker, assign, hungarian, task_cost};
pub use error::{AssignmentError, AuctionError, BalancerError, MarketError};
pub use market::{
    Balance, HoldId, Ledger, Listing, ListingId, Marketplace, PRIOR_SCORE, Reputation, Request,
    Totals, Transaction, TransactionId, TransactionState,
};
