//! An auction and a marketplace round among agents: three bidders (agents
//! of agent-supervisor's registry) answer a sealed-bid Vickrey auction
//! with their own valuations; then a buyer with a budget meets the best
//! of two sellers in the marketplace, pays on completion and rates the
//! seller.
//!
//! Run it with `cargo run -p mabeam-economics --example auction_and_market`.

use std::{sync::Arc, time::Duration};

use mabeam_agent_supervisor::{Agent, AgentConfig, AgentContext, AgentRegistry, EnvelopeError};
use mabeam_economics::{
    Auctioneer, BID_PROTOCOL, Ledger, Marketplace, PriceRule, Reputation, Request, SealedSpec,
};
use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentSelection, Clock, Envelope, StartError,
};
use serde_json::{Value, json};

/// A bidder: bids its valuation for anything on sale.
struct Bidder {
    valuation: f64,
}

impl Agent for Bidder {
    type Args = f64;
    type Message = ();
    type Reply = f64;
    type Checkpoint = ();

    async fn on_start(valuation: f64, _: Option<()>) -> Result<Self, StartError> {
        Ok(Bidder { valuation })
    }

    async fn handle(&mut self, (): (), _: &mut AgentContext<'_>) -> f64 {
        self.valuation
    }

    async fn handle_envelope(
        &mut self,
        envelope: Envelope,
        _: &mut AgentContext<'_>,
    ) -> Result<Value, EnvelopeError> {
        match &*envelope.protocol {
            BID_PROTOCOL => Ok(json!({ "bid": self.valuation })),
            _ => Err(EnvelopeError::Unsupported),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let agents = AgentRegistry::start(Default::default()).await?;
    for (id, valuation) in [("alice", 30.0), ("bob", 25.0), ("carol", 12.0)] {
        agents.register_agent(id, AgentConfig::new::<Bidder>("bidder", valuation))?;
        agents.start_agent(id).await?;
    }

    // A sealed-bid auction: the highest bidder wins and pays the second price.
    let directory: Arc<dyn AgentDirectory> = Arc::new(agents.clone());
    let auctioneer = Auctioneer::new(directory, Clock::tokio());
    let outcome = auctioneer
        .sealed(SealedSpec {
            item: "gpu-hour".into(),
            rule: PriceRule::SecondPrice,
            reserve: 10.0,
            invitees: AgentSelection::Kind("bidder".into()),
            bidding: Duration::from_millis(500),
        })
        .await?;
    let award = outcome.award().ok_or("no winner")?;
    println!(
        "gpu-hour goes to {} for {} (Vickrey: the second bid)",
        award.winner, award.price
    );

    // A marketplace round: budgets in a ledger, reputation that decays.
    let ledger = Arc::new(Ledger::new());
    let reputation = Arc::new(Reputation::new(Clock::tokio(), Duration::from_secs(3_600)));
    let market = Marketplace::new(ledger.clone(), reputation.clone());
    let (buyer, cheap, good) = (
        AgentId::from("alice"),
        AgentId::from("bob"),
        AgentId::from("carol"),
    );
    ledger.grant(&buyer, 100)?;
    market.list(&cheap, "ocr", &["pdf"], 30, 0.6)?;
    market.list(&good, "ocr", &["pdf", "scan"], 45, 0.95)?;
    let deal = market
        .request(Request {
            buyer: buyer.clone(),
            service: "ocr".into(),
            capabilities: vec!["scan".into()],
            max_price: 50,
            min_quality: 0.8,
            min_reputation: 0.0,
        })
        .await?;
    println!(
        "matched: {} sells ocr to {} for {} ({})",
        deal.seller, deal.buyer, deal.price, deal.explanation
    );
    let held = ledger.balance(&buyer).ok_or("no account")?;
    println!(
        "alice's budget while the deal runs: {} free, {} held",
        held.free, held.held
    );

    market.complete(deal.id, 1.0).await?; // the seller is paid, and rated
    let (spent, earned) = (
        ledger.balance(&buyer).map(|b| b.spent),
        ledger.balance(&good).map(|b| b.earned),
    );
    println!("after completion: alice spent {spent:?}, carol earned {earned:?}");
    println!("carol's reputation: {:.2}", reputation.score(&good));

    agents.stop().await;
    Ok(())
}
