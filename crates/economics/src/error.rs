//! The errors of this crate, one enum per concept, each with stable codes in
//! economics' range (7000-7999).

use mabeam_supervision_core::{AgentId, DirectoryError, ErrorCode};
use thiserror::Error;

/// Why an auction could not be set up, or a bid was refused. A refused bid
/// leaves the auction as it was.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum AuctionError {
    /// An amount that is negative, NaN or infinite.
    #[error("invalid amount {0}: must be finite and not negative")]
    InvalidAmount(f64),
    /// A bid names an item the auction does not sell.
    #[error("unknown item {0:?}")]
    UnknownItem(String),
    /// The bid arrived after the auction closed.
    #[error("auction closed: late bid from {0}")]
    Closed(AgentId),
    /// The bid is below what the auction accepts now.
    #[error("bid {amount} from {bidder} too low: at least {minimum} needed")]
    TooLow {
        /// The bidder.
        bidder: AgentId,
        /// The bid.
        amount: f64,
        /// The least acceptable bid.
        minimum: f64,
    },
    /// The bidder already holds the highest bid (English) or has bid
    /// already (sealed).
    #[error("{0} has already bid")]
    AlreadyBid(AgentId),
    /// The auction's definition is invalid: names the field and the rule.
    #[error("invalid auction: {0}")]
    InvalidSpec(String),
    /// Nobody could be invited (no id, kind or group member resolved).
    #[error("no bidders to invite")]
    NoBidders,
    /// Invitation by group needs a registry, and none was given.
    #[error("inviting group {0:?} needs a registry")]
    NoRegistry(String),
    /// A bidder's answer was not a bid of this auction's shape.
    #[error("malformed answer from {bidder}: {reason}")]
    MalformedAnswer {
        /// The bidder.
        bidder: AgentId,
        /// What was wrong.
        reason: String,
    },
    /// Winner determination did not finish: its blocking task panicked
    /// or the runtime was shutting down.
    #[error("winner determination failed: {0}")]
    Determination(String),
}

impl ErrorCode for AuctionError {
    fn code(&self) -> u32 {
        match self {
            AuctionError::InvalidAmount(_) => 7001,
            AuctionError::UnknownItem(_) => 7002,
            AuctionError::Closed(_) => 7003,
            AuctionError::TooLow { .. } => 7004,
            AuctionError::AlreadyBid(_) => 7005,
            AuctionError::InvalidSpec(_) => 7006,
            AuctionError::NoBidders => 7007,
            AuctionError::NoRegistry(_) => 7008,
            AuctionError::MalformedAnswer { .. } => 7009,
            AuctionError::Determination(_) => 7010,
        }
    }
}

/// Why a marketplace, budget or reputation call was refused; a refused call
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MarketError {
    /// No account for this agent (grant it a budget first).
    #[error("no account for {0}")]
    UnknownAccount(AgentId),
    /// The free budget does not cover the amount.
    #[error("{agent} has {free} free, {needed} needed")]
    InsufficientFunds {
        /// The payer.
        agent: AgentId,
        /// The amount asked for.
        needed: u64,
        /// Its free budget.
        free: u64,
    },
    /// No such hold, or it was already settled or released.
    #[error("no open hold {0}")]
    UnknownHold(u64),
    /// No such listing.
    #[error("no listing {0}")]
    UnknownListing(u64),
    /// No such transaction, or it is already closed.
    #[error("no open transaction {0}")]
    UnknownTransaction(u64),
    /// No listing satisfies the request.
    #[error("no listing matches the request")]
    NoMatch,
    /// An agent cannot trade with or rate itself.
    #[error("{0} cannot trade with or rate itself")]
    SelfDealing(AgentId),
    /// A listing, request or rating is invalid: names the field and rule.
    #[error("invalid {0}")]
    Invalid(String),
    /// Granting would overflow the account.
    #[error("amount overflows the account of {0}")]
    Overflow(AgentId),
}

impl ErrorCode for MarketError {
    fn code(&self) -> u32 {
        match self {
            MarketError::UnknownAccount(_) => 7101,
            MarketError::InsufficientFunds { .. } => 7102,
            MarketError::UnknownHold(_) => 7103,
            MarketError::UnknownListing(_) => 7104,
            MarketError::UnknownTransaction(_) => 7105,
            MarketError::NoMatch => 7106,
            MarketError::SelfDealing(_) => 7107,
            MarketError::Invalid(_) => 7108,
            MarketError::Overflow(_) => 7109,
        }
    }
}

/// Why a cost model or an assignment was refused.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum AssignmentError {
    /// A cost model or budget is invalid: names the field and the rule.
    #[error("invalid {0}")]
    Invalid(String),
    /// No assignment gives every task an agent within the budgets.
    #[error("no assignment fits the budgets: {0}")]
    Infeasible(String),
}

impl ErrorCode for AssignmentError {
    fn code(&self) -> u32 {
        match self {
            AssignmentError::Invalid(_) => 7201,
            AssignmentError::Infeasible(_) => 7202,
        }
    }
}

/// Why the load balancer picked no agent, or refused a call.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum BalancerError {
    /// Every member is dead, overloaded, or lacks the capabilities asked.
    #[error("no agent available")]
    NoAgentAvailable,
    /// The agent is not a member of this balancer.
    #[error("{0} is not a member")]
    UnknownAgent(AgentId),
    /// A weight or capacity is invalid: names the field and rule.
    #[error("invalid {0}")]
    Invalid(String),
    /// The picked agent could not be reached.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl ErrorCode for BalancerError {
    fn code(&self) -> u32 {
        match self {
            BalancerError::NoAgentAvailable => 7301,
            BalancerError::UnknownAgent(_) => 7302,
            BalancerError::Invalid(_) => 7303,
            BalancerError::Directory(_) => 7304,
        }
    }
}
