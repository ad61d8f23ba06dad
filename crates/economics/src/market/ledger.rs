//! The [`Ledger`]: agents' budgets, holds and settlements, with money
//! conserved.

use std::collections::HashMap;

use mabeam_supervision_core::AgentId;
use parking_lot::Mutex;
use serde::Serialize;

use crate::MarketError;

/// The id of a hold on a budget.
pub type HoldId = u64;

/// One agent's account, in whole credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// Spendable now.
    pub free: u64,
    /// Reserved by open holds.
    pub held: u64,
    /// Paid out by settled holds.
    pub spent: u64,
    /// Earned from others' settled holds (revenue is not budget: it cannot
    /// be spent unless granted back).
    pub earned: u64,
}

/// The ledger's totals: `free + held + spent == granted` and
/// `earned == spent`, always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Everything ever granted.
    pub granted: u128,
    /// Free across accounts.
    pub free: u128,
    /// Held across accounts.
    pub held: u128,
    /// Spent across accounts.
    pub spent: u128,
    /// Earned across accounts.
    pub earned: u128,
}

/// Budgets in whole credits (integers, so conservation is exact): grant,
/// hold at match time, settle on completion, release on cancellation or
/// failure. Every call either applies whole or changes nothing.
///
/// # Example
///
/// ```
/// use mabeam_economics::Ledger;
///
/// let ledger = Ledger::new();
/// ledger.grant(&"buyer".into(), 100).unwrap();
/// let hold = ledger.hold(&"buyer".into(), 30).unwrap();
/// assert!(ledger.hold(&"buyer".into(), 80).is_err()); // only 70 free
/// ledger.settle(hold, &"seller".into()).unwrap();
/// let totals = ledger.totals();
/// assert_eq!(totals.free + totals.held + totals.spent, totals.granted);
/// assert_eq!(ledger.balance(&"seller".into()).unwrap().earned, 30);
/// ```
#[derive(Debug, Default)]
pub struct Ledger {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<AgentId, Balance>,
    holds: HashMap<HoldId, (AgentId, u64)>,
    next_hold: HoldId,
    granted: u128,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Adds `amount` to `agent`'s free budget (opening its account).
    /// Refused if its budget, free and held together, would pass
    /// `u64::MAX` (so a release can always give a hold back).
    pub fn grant(&self, agent: &AgentId, amount: u64) -> Result<(), MarketError> {
        let mut state = self.state.lock();
        let account = state.accounts.entry(agent.clone()).or_default();
        let free = account
            .free
            .checked_add(amount)
            .filter(|free| free.checked_add(account.held).is_some())
            .ok_or_else(|| MarketError::Overflow(agent.clone()))?;
        account.free = free;
        state.granted += u128::from(amount);
        Ok(())
    }

    /// Reserves `amount` of `agent`'s free budget; refused if it has less.
    pub fn hold(&self, agent: &AgentId, amount: u64) -> Result<HoldId, MarketError> {
        let mut state = self.state.lock();
        let account = state
            .accounts
            .get_mut(agent)
            .ok_or_else(|| MarketError::UnknownAccount(agent.clone()))?;
        if account.free < amount {
            return Err(MarketError::InsufficientFunds {
                agent: agent.clone(),
                needed: amount,
                free: account.free,
            });
        }
        account.free -= amount;
        account.held += amount;
        state.next_hold += 1;
        let id = state.next_hold;
        state.holds.insert(id, (agent.clone(), amount));
        Ok(id)
    }

    /// Pays an open hold to `payee`: the payer's held becomes spent, the
    /// payee earns it. Refused, the hold left open, if the payer's spent
    /// or the payee's earned would pass `u64::MAX`.
    pub fn settle(&self, hold: HoldId, payee: &AgentId) -> Result<u64, MarketError> {
        let mut state = self.state.lock();
        let (payer, amount) = state
            .holds
            .get(&hold)
            .cloned()
            .ok_or(MarketError::UnknownHold(hold))?;
        // Checked before anything moves: a refusal changes nothing.
        let spent = state.accounts[&payer]
            .spent
            .checked_add(amount)
            .ok_or_else(|| MarketError::Overflow(payer.clone()))?;
        let earned = state
            .accounts
            .get(payee)
            .map_or(0, |account| account.earned)
            .checked_add(amount)
            .ok_or_else(|| MarketError::Overflow(payee.clone()))?;
        state.holds.remove(&hold);
        let account = state
            .accounts
            .get_mut(&payer)
            .expect("a hold's payer has an account");
        account.held -= amount;
        account.spent = spent;
        state.accounts.entry(payee.clone()).or_default().earned = earned;
        Ok(amount)
    }

    /// Gives an open hold back to its payer's free budget.
    pub fn release(&self, hold: HoldId) -> Result<u64, MarketError> {
        let mut state = self.state.lock();
        let (payer, amount) = state
            .holds
            .remove(&hold)
            .ok_or(MarketError::UnknownHold(hold))?;
        let account = state
            .accounts
            .get_mut(&payer)
            .expect("a hold's payer has an account");
        account.held -= amount;
        account.free += amount;
        Ok(amount)
    }

    /// `agent`'s account, if it has one.
    pub fn balance(&self, agent: &AgentId) -> Option<Balance> {
        self.state.lock().accounts.get(agent).copied()
    }

    /// The totals across all accounts.
    pub fn totals(&self) -> Totals {
        let state = self.state.lock();
        let mut totals = Totals {
            granted: state.granted,
            ..Totals::default()
        };
        for account in state.accounts.values() {
            totals.free += u128::from(account.free);
            totals.held += u128::from(account.held);
            totals.spent += u128::from(account.spent);
            totals.earned += u128::from(account.earned);
        }
        totals
    }
}
