//! The [`Auctioneer`]: runs auctions among agents reached through the
//! `AgentDirectory`, whose answers are the bids.
//!
//! # The bid protocol
//!
//! Each invitee receives an [`Envelope`] of protocol [`BID_PROTOCOL`]
//! (`economics.bid`) whose body says what is on sale:
//!
//! ```json
//! {"auction": 7, "kind": "vickrey", "items": ["gpu-hour"], "reserve": 10.0}
//! ```
//!
//! with, for an English auction, `"minimum"` (the least bid accepted now)
//! and `"high_bidder"`; for a Dutch auction, `"price"` (the standing
//! price); for a combinatorial one, `"items"` lists every item. An agent
//! answers:
//!
//! - sealed and English: `{"bid": 12.5}`, or `{"bid": null}` to pass;
//! - Dutch: `{"accept": true}` to buy at the standing price;
//! - combinatorial: `{"bids": [{"items": ["cpu", "gpu"], "amount": 10.0}]}`.
//!
//! An agent that does not answer by the envelope's deadline, has crashed,
//! or does not speak the protocol gives no bid; the outcome lists it with
//! the reason. A malformed or invalid bid is refused and listed too.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use mabeam_supervision_core::{
    AgentDirectory, AgentId, AgentReply, AgentSelection, Clock, Envelope, Event, EventSink,
    MetaValue, Namespace, Registry, SelectionError, Telemetry, ask_all,
};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    AuctionKind, AuctionOutcome, CombinatorialAuction, DutchAuction, EnglishAuction, PriceRule,
    SealedBidAuction,
};
use crate::AuctionError;

/// The protocol name of bid requests.
pub const BID_PROTOCOL: &str = "economics.bid";

/// A sealed-bid auction (first price or Vickrey) of one item.
#[derive(Debug, Clone)]
pub struct SealedSpec {
    /// The item.
    pub item: String,
    /// What the winner pays.
    pub rule: PriceRule,
    /// The least winning bid (0 for none).
    pub reserve: f64,
    /// Whom to invite.
    pub invitees: AgentSelection,
    /// How long bids are taken.
    pub bidding: Duration,
}

/// An English auction of one item.
#[derive(Debug, Clone)]
pub struct EnglishSpec {
    /// The item.
    pub item: String,
    /// The least first bid.
    pub reserve: f64,
    /// The least raise over the standing bid.
    pub min_increment: f64,
    /// How long the auction runs before any extension.
    pub duration: Duration,
    /// A bid this close to the deadline extends it...
    pub soft_close: Duration,
    /// ...to this long after the bid.
    pub extension: Duration,
    /// How long each round of calls for bids waits for answers.
    pub round: Duration,
    /// Whom to invite.
    pub invitees: AgentSelection,
}

/// A Dutch auction of one item.
#[derive(Debug, Clone)]
pub struct DutchSpec {
    /// The item.
    pub item: String,
    /// The opening price.
    pub start_price: f64,
    /// How much the price falls each tick.
    pub step: f64,
    /// How long each price stands.
    pub tick: Duration,
    /// The lowest price.
    pub reserve: f64,
    /// Whom to invite.
    pub invitees: AgentSelection,
}

/// A combinatorial auction of several items.
#[derive(Debug, Clone)]
pub struct CombinatorialSpec {
    /// The items and their reserve prices.
    pub items: Vec<(String, f64)>,
    /// Whom to invite.
    pub invitees: AgentSelection,
    /// How long bids are taken.
    pub bidding: Duration,
}

/// Runs auctions among agents: invites them through the directory, takes
/// their answers as bids in arrival order, closes by the auction's rules,
/// and records each outcome through the event sink when one is given.
///
/// Cheap to share (`Arc` it); auctions may run concurrently.
///
/// # Example
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use mabeam_economics::{Auctioneer, PriceRule, SealedSpec};
/// use serde_json::json;
/// use mabeam_supervision_core::{AgentSelection, Clock, testkit::{Answer, ScriptedDirectory}};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let agents = ScriptedDirectory::new();
/// agents.add("a", "bidder", |_| Answer::Reply(json!({"bid": 30.0})));
/// agents.add("b", "bidder", |_| Answer::Reply(json!({"bid": 25.0})));
/// let auctioneer = Auctioneer::new(Arc::new(agents), Clock::tokio());
/// let outcome = auctioneer.sealed(SealedSpec {
///     item: "gpu-hour".into(),
///     rule: PriceRule::SecondPrice,
///     reserve: 10.0,
///     invitees: AgentSelection::Kind("bidder".into()),
///     bidding: Duration::from_millis(100),
/// }).await.unwrap();
/// let award = outcome.award().unwrap();
/// assert_eq!((award.winner.as_str(), award.price), ("a", 25.0));
/// # }
/// ```
pub struct Auctioneer {
    directory: Arc<dyn AgentDirectory>,
    clock: Clock,
    telemetry: Telemetry,
    sink: Option<Arc<dyn EventSink>>,
    registry: Option<(Arc<dyn Registry>, Namespace)>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Auctioneer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auctioneer")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Auctioneer {
    /// An auctioneer reaching agents through `directory`, reading time from
    /// `clock`.
    pub fn new(directory: Arc<dyn AgentDirectory>, clock: Clock) -> Self {
        Auctioneer {
            directory,
            clock,
            telemetry: Telemetry::disabled(),
            sink: None,
            registry: None,
            next_id: AtomicU64::new(1),
        }
    }

    /// Reports each outcome through `telemetry` (`economics.auction.closed`;
    /// for a combinatorial auction also `economics.auction.determined`, from
    /// the blocking thread its winner determination ran on: measurements
    /// `value` and `upper_bound`, metadata `auction` and `optimal`).
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Records each outcome through `sink` (stream `economics.auctions`,
    /// type `auction_closed`).
    pub fn with_event_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Resolves [`AgentSelection::Group`] through `registry`: its group members
    /// that hold a name in `namespace` are invited by that name.
    pub fn with_registry(mut self, registry: Arc<dyn Registry>, namespace: Namespace) -> Self {
        self.registry = Some((registry, namespace));
        self
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The agents `invitees` names, each once, in a deterministic order.
    pub fn resolve(&self, invitees: &AgentSelection) -> Result<Vec<AgentId>, AuctionError> {
        let registry = self
            .registry
            .as_ref()
            .map(|(registry, namespace)| (registry.as_ref(), namespace));
        invitees
            .resolve(self.directory.as_ref(), registry)
            .map_err(|err| match err {
                SelectionError::NoRegistry(group) => AuctionError::NoRegistry(group),
                _ => AuctionError::NoBidders,
            })
    }

    /// Asks each of `bidders` with `body` until `deadline`.
    async fn gather(&self, bidders: &[AgentId], body: Value, deadline: Instant) -> Vec<AgentReply> {
        let envelope = Envelope::with_deadline(BID_PROTOCOL, body, deadline);
        ask_all(self.directory.as_ref(), bidders, &envelope, &self.clock).await
    }

    /// Runs a sealed-bid auction: one call for bids, answered by the close.
    pub async fn sealed(&self, spec: SealedSpec) -> Result<AuctionOutcome, AuctionError> {
        let bidders = self.resolve(&spec.invitees)?;
        let opened = self.clock.now();
        let closes = opened + spec.bidding;
        let id = self.next_id();
        let mut auction = SealedBidAuction::new(
            id,
            spec.item.clone(),
            spec.rule,
            spec.reserve,
            opened,
            closes,
        )?;
        let kind = match spec.rule {
            PriceRule::FirstPrice => AuctionKind::FirstPrice,
            PriceRule::SecondPrice => AuctionKind::Vickrey,
        };
        let body =
            json!({"auction": id, "kind": kind, "items": [spec.item], "reserve": spec.reserve});
        let mut no_answer = Vec::new();
        for reply in self.gather(&bidders, body, closes).await {
            match read_bid(&reply) {
                Ok(Some(amount)) => {
                    if let Err(err) = auction.submit(reply.agent.clone(), amount, reply.at) {
                        auction.record_refused(reply.agent, amount, reply.at, &err);
                    }
                }
                Ok(None) => no_answer.push((reply.agent, "passed".to_owned())),
                Err(Silence(reason)) => no_answer.push((reply.agent, reason)),
            }
        }
        let mut outcome = auction.close();
        outcome.no_answer = no_answer;
        self.report(&outcome).await;
        Ok(outcome)
    }

    /// Runs an English auction: rounds of calls for bids at the standing
    /// minimum until a round brings no valid bid or the (soft-closing)
    /// deadline passes.
    pub async fn english(&self, spec: EnglishSpec) -> Result<AuctionOutcome, AuctionError> {
        let bidders = self.resolve(&spec.invitees)?;
        if spec.round.is_zero() {
            return Err(AuctionError::InvalidSpec("round: must be above 0".into()));
        }
        let opened = self.clock.now();
        let id = self.next_id();
        let mut auction = EnglishAuction::new(
            id,
            spec.item.clone(),
            spec.reserve,
            spec.min_increment,
            opened,
            opened + spec.duration,
            spec.soft_close,
            spec.extension,
        )?;
        let mut silent: HashMap<AgentId, String> = HashMap::new();
        loop {
            let now = self.clock.now();
            if auction.is_closed_at(now) {
                break;
            }
            let high = auction.high_bid().map(|(bidder, _)| bidder.clone());
            let called: Vec<AgentId> = bidders
                .iter()
                .filter(|bidder| Some(*bidder) != high.as_ref())
                .cloned()
                .collect();
            if called.is_empty() {
                break;
            }
            let body = json!({
                "auction": id,
                "kind": AuctionKind::English,
                "items": [spec.item],
                "reserve": spec.reserve,
                "minimum": auction.minimum_bid(),
                "high_bidder": high,
            });
            let round_end = auction.deadline().min(now + spec.round);
            let mut raised = false;
            for reply in self.gather(&called, body, round_end).await {
                match read_bid(&reply) {
                    Ok(Some(amount)) => {
                        match auction.submit(reply.agent.clone(), amount, reply.at) {
                            Ok(()) => {
                                raised = true;
                                silent.remove(&reply.agent);
                            }
                            Err(err) => auction.record_refused(reply.agent, amount, reply.at, &err),
                        }
                    }
                    Ok(None) => {
                        silent.insert(reply.agent, "passed".to_owned());
                    }
                    Err(Silence(reason)) => {
                        silent.insert(reply.agent, reason);
                    }
                }
            }
            if !raised {
                break;
            }
        }
        Ok(self
            .close_with_silences(auction.close(), &bidders, silent, "not called")
            .await)
    }

    /// Runs a Dutch auction: at each tick every invitee is offered the
    /// standing price; the earliest acceptance wins at that price.
    pub async fn dutch(&self, spec: DutchSpec) -> Result<AuctionOutcome, AuctionError> {
        let bidders = self.resolve(&spec.invitees)?;
        let opened = self.clock.now();
        let id = self.next_id();
        let mut auction = DutchAuction::new(
            id,
            spec.item.clone(),
            spec.start_price,
            spec.step,
            spec.tick,
            spec.reserve,
            opened,
        )?;
        let mut silent: HashMap<AgentId, String> = HashMap::new();
        loop {
            let now = self.clock.now();
            if auction.is_closed_at(now) {
                break;
            }
            let tick_end = auction.tick_end(now);
            let body = json!({
                "auction": id,
                "kind": AuctionKind::Dutch,
                "items": [spec.item],
                "reserve": spec.reserve,
                "price": auction.price_at(now),
            });
            for reply in self.gather(&bidders, body, tick_end).await {
                match &reply.answer {
                    Ok(value) if value.get("accept").and_then(Value::as_bool) == Some(true) => {
                        // Answers that arrived in this tick count at its price.
                        let at = reply.at.min(tick_end - Duration::from_nanos(1));
                        if let Err(err) = auction.accept(reply.agent.clone(), at) {
                            auction.record_refused(reply.agent, at, &err);
                        }
                    }
                    Ok(_) => {
                        silent.insert(reply.agent, "declined".to_owned());
                    }
                    Err(err) => {
                        silent.insert(reply.agent, err.to_string());
                    }
                }
            }
            if auction.is_closed_at(self.clock.now()) {
                break;
            }
            self.clock.sleep_until(tick_end).await;
        }
        Ok(self
            .close_with_silences(auction.close(), &bidders, silent, "declined")
            .await)
    }

    /// Runs a combinatorial auction: one call for bundle bids, then winner
    /// determination.
    pub async fn combinatorial(
        &self,
        spec: CombinatorialSpec,
    ) -> Result<AuctionOutcome, AuctionError> {
        let bidders = self.resolve(&spec.invitees)?;
        let opened = self.clock.now();
        let closes = opened + spec.bidding;
        let id = self.next_id();
        let items: Vec<(&str, f64)> = spec.items.iter().map(|(n, r)| (n.as_str(), *r)).collect();
        let mut auction = CombinatorialAuction::new(id, &items, opened, closes)?;
        let body = json!({
            "auction": id,
            "kind": AuctionKind::Combinatorial,
            "items": spec.items.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            "reserves": spec.items.iter().map(|(_, reserve)| reserve).collect::<Vec<_>>(),
        });
        let mut no_answer = Vec::new();
        for reply in self.gather(&bidders, body, closes).await {
            let value = match reply.answer {
                Ok(value) => value,
                Err(err) => {
                    no_answer.push((reply.agent, err.to_string()));
                    continue;
                }
            };
            let Some(bids) = value.get("bids").and_then(Value::as_array) else {
                no_answer.push((reply.agent, "passed".to_owned()));
                continue;
            };
            for bid in bids {
                let items: Vec<String> = bid
                    .get("items")
                    .and_then(Value::as_array)
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let amount = bid.get("amount").and_then(Value::as_f64);
                let result = match amount {
                    Some(amount) => auction.submit(reply.agent.clone(), &items, amount, reply.at),
                    None => Err(AuctionError::MalformedAnswer {
                        bidder: reply.agent.clone(),
                        reason: "bundle bid without a numeric amount".into(),
                    }),
                };
                if let Err(err) = result {
                    auction.record_refused(
                        reply.agent.clone(),
                        items,
                        amount.unwrap_or(f64::NAN),
                        reply.at,
                        &err,
                    );
                }
            }
        }
        // Winner determination is CPU-bound (a search of up to its node
        // budget): on a blocking thread, never a tokio worker.
        let telemetry = self.telemetry.clone();
        let determined = tokio::task::spawn_blocking(move || {
            let outcome = auction.close();
            if let Some(allocation) = &outcome.allocation {
                telemetry.emit(
                    &["economics", "auction", "determined"],
                    &[
                        ("value", allocation.value),
                        ("upper_bound", allocation.upper_bound),
                    ],
                    &[
                        ("auction", MetaValue::U64(id)),
                        ("optimal", MetaValue::Bool(allocation.exact)),
                    ],
                );
            }
            outcome
        })
        .await;
        let mut outcome = determined.map_err(|err| AuctionError::Determination(err.to_string()))?;
        outcome.no_answer = no_answer;
        self.report(&outcome).await;
        Ok(outcome)
    }

    /// Completes an outcome with every invitee that placed no bid and why
    /// (`otherwise` for one that never answered), and reports it.
    async fn close_with_silences(
        &self,
        mut outcome: AuctionOutcome,
        bidders: &[AgentId],
        mut silent: HashMap<AgentId, String>,
        otherwise: &str,
    ) -> AuctionOutcome {
        let bid: HashSet<AgentId> = outcome.bids.iter().map(|b| b.bidder.clone()).collect();
        outcome.no_answer = bidders
            .iter()
            .filter(|b| !bid.contains(*b))
            .map(|b| {
                let reason = silent.remove(b).unwrap_or_else(|| otherwise.to_owned());
                (b.clone(), reason)
            })
            .collect();
        self.report(&outcome).await;
        outcome
    }

    async fn report(&self, outcome: &AuctionOutcome) {
        let kind = outcome.kind.to_string();
        self.telemetry.emit(
            &["economics", "auction", "closed"],
            &[
                ("bids", outcome.bids.len() as f64),
                ("revenue", outcome.revenue()),
                ("no_answer", outcome.no_answer.len() as f64),
            ],
            &[
                ("kind", MetaValue::Str(&kind)),
                ("auction", MetaValue::U64(outcome.auction)),
                ("sold", MetaValue::Bool(!outcome.awards.is_empty())),
            ],
        );
        if let Some(sink) = &self.sink {
            let data = serde_json::to_value(outcome).unwrap_or(Value::Null);
            if let Err(err) = sink
                .record(Event::new("economics.auctions", "auction_closed", data))
                .await
            {
                let reason = err.to_string();
                self.telemetry.emit(
                    &["economics", "auction", "record_failed"],
                    &[],
                    &[
                        ("auction", MetaValue::U64(outcome.auction)),
                        ("reason", MetaValue::Str(&reason)),
                    ],
                );
            }
        }
    }
}

/// Why an invitee gave no bid.
struct Silence(String);

/// The amount of a sealed or English bid: `Some` to bid, `None` to pass.
/// A non-numeric bid is read as NaN so the auction refuses and records it.
fn read_bid(reply: &AgentReply) -> Result<Option<f64>, Silence> {
    match &reply.answer {
        Err(err) => Err(Silence(err.to_string())),
        Ok(Value::Null) => Ok(None),
        Ok(value) => match value.get("bid") {
            None | Some(Value::Null) => Ok(None),
            Some(bid) => Ok(Some(bid.as_f64().unwrap_or(f64::NAN))),
        },
    }
}
