//! The acquirer's double-entry, two-phase ledger, as pure functions.
//!
//! Every movement of value is a [`Transfer`] from one account (debited) to another
//! (credited) of the same unit, so debits equal credits by construction, and
//! [`audit`] checks it over any set of accounts. A transfer is either posted at once or
//! pending: an authorisation is a pending transfer (a hold) that is later posted
//! (capture), voided (release) or expired. Each account counts its pending and posted
//! debits and credits separately and may carry a limit, checked before anything moves.
//!
//! Transfer ids come from the order id and the step (`<order>:hold`), so a replayed
//! request finds the first transfer and changes nothing: [`apply`] returns it marked as
//! a replay. A hold resolves at most once.
//!
//! [`apply`] reads through [`Books`] and returns a [`Change`]: the accounts and the
//! transfer as they must be stored, in one transaction. It does no IO; the clock is an
//! argument.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ids::OrderId;
use crate::money::Currency;

/// What an account counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unit {
    /// Minor units of a currency.
    Money(Currency),
    /// Loyalty points.
    Points,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Money(c) => f.write_str(c.code()),
            Unit::Points => f.write_str("PTS"),
        }
    }
}

/// How far an account's debits may go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Limit {
    /// The acquirer's own books: no limit.
    None,
    /// Debits may not exceed credits: a debit card's balance, a points balance.
    DebitsWithinCredits,
    /// Debits may exceed credits by at most this much: a credit line.
    CreditLine(i64),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId(pub String);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub unit: Unit,
    pub limit: Limit,
    pub debits_pending: i64,
    pub debits_posted: i64,
    pub credits_pending: i64,
    pub credits_posted: i64,
}

impl Account {
    pub fn new(unit: Unit, limit: Limit) -> Account {
        Account {
            unit,
            limit,
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
        }
    }

    /// How much more may be debited (held or posted); `None` when unlimited.
    pub fn available(&self) -> Option<i64> {
        let used = self.debits_pending.saturating_add(self.debits_posted);
        match self.limit {
            Limit::None => None,
            Limit::DebitsWithinCredits => Some(self.credits_posted.saturating_sub(used)),
            Limit::CreditLine(line) => Some(
                line.saturating_add(self.credits_posted)
                    .saturating_sub(used),
            ),
        }
    }

    /// Posted credits minus posted debits.
    pub fn balance(&self) -> i64 {
        self.credits_posted.saturating_sub(self.debits_posted)
    }

    fn within_limit(&self) -> bool {
        self.available().is_none_or(|a| a >= 0)
    }

    fn counters_sane(&self) -> bool {
        self.debits_pending >= 0
            && self.debits_posted >= 0
            && self.credits_pending >= 0
            && self.credits_posted >= 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TransferId(pub String);

impl TransferId {
    /// The id of an order's transfer for one step: `<order id>:<step>`.
    pub fn of(order_id: OrderId, step: &str) -> TransferId {
        TransferId(format!("{order_id}:{step}"))
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransferState {
    /// A hold, until it is posted, voided or expires.
    Pending {
        expires_at_ms: i64,
    },
    Posted,
    Voided,
    Expired,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: i64,
    pub unit: Unit,
    pub state: TransferState,
    /// Made as a hold (pending first), not posted at once.
    pub hold: bool,
    pub created_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A pending transfer (an authorisation hold).
    Hold {
        id: TransferId,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
        expires_at_ms: i64,
    },
    /// Post a pending transfer (capture).
    Post { id: TransferId },
    /// Release a pending transfer.
    Void { id: TransferId },
    /// Release a pending transfer whose time is up.
    Expire { id: TransferId },
    /// A transfer posted at once.
    Transfer {
        id: TransferId,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
    },
}

impl Op {
    pub fn id(&self) -> &TransferId {
        match self {
            Op::Hold { id, .. }
            | Op::Post { id }
            | Op::Void { id }
            | Op::Expire { id }
            | Op::Transfer { id, .. } => id,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error("no account {0}")]
    UnknownAccount(AccountId),
    #[error("accounts {0} and {1} count different units")]
    UnitMismatch(AccountId, AccountId),
    #[error("a transfer moves a positive amount, not {0}")]
    NotPositive(i64),
    #[error("a transfer needs two different accounts")]
    SameAccount,
    #[error("{account} can take {available} more, not {amount}")]
    ExceedsLimit {
        account: AccountId,
        available: i64,
        amount: i64,
    },
    #[error("no transfer {0}")]
    UnknownTransfer(TransferId),
    #[error("transfer {id} is already {state:?}")]
    AlreadyResolved {
        id: TransferId,
        state: TransferState,
    },
    #[error("transfer {0} is not pending")]
    NotPending(TransferId),
    #[error("transfer {0} has not expired yet")]
    NotExpired(TransferId),
    #[error("transfer {0} exists with other accounts or amount")]
    Conflict(TransferId),
    #[error("amounts overflow")]
    Overflow,
    #[error("the books do not balance: {0}")]
    Unbalanced(String),
}

/// Where [`apply`] reads accounts and transfers from.
pub trait Books {
    fn account(&self, id: &AccountId) -> Option<Account>;
    fn transfer(&self, id: &TransferId) -> Option<Transfer>;
}

/// What an operation changes, to be stored together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub accounts: Vec<(AccountId, Account)>,
    pub transfer: Transfer,
    /// The operation had already been done: nothing changes, here is its transfer.
    pub replay: bool,
}

fn replay(t: Transfer) -> Change {
    Change {
        accounts: Vec::new(),
        transfer: t,
        replay: true,
    }
}

fn add(a: i64, b: i64) -> Result<i64, LedgerError> {
    a.checked_add(b).ok_or(LedgerError::Overflow)
}

fn sub(a: i64, b: i64) -> Result<i64, LedgerError> {
    a.checked_sub(b).ok_or(LedgerError::Overflow)
}

/// The pair of accounts a new transfer moves between, checked.
fn pair(
    books: &impl Books,
    debit: &AccountId,
    credit: &AccountId,
    amount: i64,
) -> Result<(Account, Account), LedgerError> {
    if amount <= 0 {
        return Err(LedgerError::NotPositive(amount));
    }
    if debit == credit {
        return Err(LedgerError::SameAccount);
    }
    let d = books
        .account(debit)
        .ok_or_else(|| LedgerError::UnknownAccount(debit.clone()))?;
    let c = books
        .account(credit)
        .ok_or_else(|| LedgerError::UnknownAccount(credit.clone()))?;
    if d.unit != c.unit {
        return Err(LedgerError::UnitMismatch(debit.clone(), credit.clone()));
    }
    if let Some(available) = d.available() {
        if amount > available {
            return Err(LedgerError::ExceedsLimit {
                account: debit.clone(),
                available,
                amount,
            });
        }
    }
    Ok((d, c))
}

/// A new transfer: a hold (pending until `pending`'s expiry) or posted at once.
fn open(
    books: &impl Books,
    id: &TransferId,
    debit: &AccountId,
    credit: &AccountId,
    amount: i64,
    pending: Option<i64>,
    now_ms: i64,
) -> Result<Change, LedgerError> {
    let (mut d, mut c) = pair(books, debit, credit, amount)?;
    let state = match pending {
        Some(expires_at_ms) => {
            d.debits_pending = add(d.debits_pending, amount)?;
            c.credits_pending = add(c.credits_pending, amount)?;
            TransferState::Pending { expires_at_ms }
        }
        None => {
            d.debits_posted = add(d.debits_posted, amount)?;
            c.credits_posted = add(c.credits_posted, amount)?;
            TransferState::Posted
        }
    };
    Ok(Change {
        transfer: Transfer {
            id: id.clone(),
            debit: debit.clone(),
            credit: credit.clone(),
            amount,
            unit: d.unit,
            state,
            hold: pending.is_some(),
            created_at_ms: now_ms,
            resolved_at_ms: pending.is_none().then_some(now_ms),
        },
        accounts: vec![(debit.clone(), d), (credit.clone(), c)],
        replay: false,
    })
}

/// Works out what `op` changes. Pure: nothing is written; the caller stores the
/// [`Change`] (all of it, in one transaction) unless it is a replay.
pub fn apply(books: &impl Books, op: &Op, now_ms: i64) -> Result<Change, LedgerError> {
    let existing = books.transfer(op.id());
    let change = match op {
        Op::Hold {
            id,
            debit,
            credit,
            amount,
            expires_at_ms,
        } => {
            let pending = Some(*expires_at_ms);
            if let Some(t) = existing {
                return same_or_conflict(t, debit, credit, *amount, true);
            }
            open(books, id, debit, credit, *amount, pending, now_ms)?
        }
        Op::Transfer {
            id,
            debit,
            credit,
            amount,
        } => {
            if let Some(t) = existing {
                return same_or_conflict(t, debit, credit, *amount, false);
            }
            open(books, id, debit, credit, *amount, None, now_ms)?
        }
        Op::Post { id } | Op::Void { id } | Op::Expire { id } => {
            let t = existing.ok_or_else(|| LedgerError::UnknownTransfer(id.clone()))?;
            let target = match op {
                Op::Post { .. } => TransferState::Posted,
                Op::Void { .. } => TransferState::Voided,
                _ => TransferState::Expired,
            };
            let expires_at_ms = match t.state {
                TransferState::Pending { expires_at_ms } => expires_at_ms,
                state if state == target => return Ok(replay(t)),
                TransferState::Posted if matches!(op, Op::Post { .. }) => {
                    return Err(LedgerError::NotPending(id.clone()))
                }
                state => {
                    return Err(LedgerError::AlreadyResolved {
                        id: id.clone(),
                        state,
                    })
                }
            };
            if target == TransferState::Expired && now_ms < expires_at_ms {
                return Err(LedgerError::NotExpired(id.clone()));
            }
            let mut d = books
                .account(&t.debit)
                .ok_or_else(|| LedgerError::UnknownAccount(t.debit.clone()))?;
            let mut c = books
                .account(&t.credit)
                .ok_or_else(|| LedgerError::UnknownAccount(t.credit.clone()))?;
            d.debits_pending = sub(d.debits_pending, t.amount)?;
            c.credits_pending = sub(c.credits_pending, t.amount)?;
            if target == TransferState::Posted {
                d.debits_posted = add(d.debits_posted, t.amount)?;
                c.credits_posted = add(c.credits_posted, t.amount)?;
            }
            let mut transfer = t.clone();
            transfer.state = target;
            transfer.resolved_at_ms = Some(now_ms);
            Change {
                accounts: vec![(t.debit.clone(), d), (t.credit.clone(), c)],
                transfer,
                replay: false,
            }
        }
    };
    check(books, &change)?;
    Ok(change)
}

fn same_or_conflict(
    t: Transfer,
    debit: &AccountId,
    credit: &AccountId,
    amount: i64,
    pending: bool,
) -> Result<Change, LedgerError> {
    if t.debit == *debit && t.credit == *credit && t.amount == amount && t.hold == pending {
        Ok(replay(t))
    } else {
        Err(LedgerError::Conflict(t.id))
    }
}

/// The invariants every change must keep: counters never negative, no account beyond
/// its limit, and the change itself moves as much in debits as in credits.
fn check(books: &impl Books, change: &Change) -> Result<(), LedgerError> {
    // What this change moves: pending and posted debits must grow exactly as much as
    // pending and posted credits.
    let mut delta = [0i128; 4];
    for (id, after) in &change.accounts {
        let before = books
            .account(id)
            .unwrap_or_else(|| Account::new(after.unit, after.limit));
        delta[0] += i128::from(after.debits_pending) - i128::from(before.debits_pending);
        delta[1] += i128::from(after.credits_pending) - i128::from(before.credits_pending);
        delta[2] += i128::from(after.debits_posted) - i128::from(before.debits_posted);
        delta[3] += i128::from(after.credits_posted) - i128::from(before.credits_posted);
    }
    if delta[0] != delta[1] || delta[2] != delta[3] {
        return Err(LedgerError::Unbalanced(format!(
            "transfer {} would move debits and credits unequally",
            change.transfer.id
        )));
    }
    for (id, a) in &change.accounts {
        if !a.counters_sane() {
            return Err(LedgerError::Unbalanced(format!(
                "{id} has a negative counter"
            )));
        }
        if !a.within_limit() {
            return Err(LedgerError::ExceedsLimit {
                account: id.clone(),
                available: a.available().unwrap_or(0),
                amount: 0,
            });
        }
    }
    Ok(())
}

/// Checks that a complete set of books balances: for every unit, pending debits equal
/// pending credits and posted debits equal posted credits, and no account is negative
/// or over its limit.
pub fn audit<'a>(
    accounts: impl IntoIterator<Item = (&'a AccountId, &'a Account)>,
) -> Result<(), LedgerError> {
    let mut sums: BTreeMap<Unit, [i128; 4]> = BTreeMap::new();
    for (id, a) in accounts {
        if !a.counters_sane() {
            return Err(LedgerError::Unbalanced(format!(
                "{id} has a negative counter"
            )));
        }
        if !a.within_limit() {
            return Err(LedgerError::Unbalanced(format!("{id} is over its limit")));
        }
        let s = sums.entry(a.unit).or_insert([0; 4]);
        s[0] += i128::from(a.debits_pending);
        s[1] += i128::from(a.credits_pending);
        s[2] += i128::from(a.debits_posted);
        s[3] += i128::from(a.credits_posted);
    }
    for (unit, [dp, cp, dpo, cpo]) in sums {
        if dp != cp || dpo != cpo {
            return Err(LedgerError::Unbalanced(format!(
                "{unit}: pending debits {dp} vs credits {cp}, posted debits {dpo} vs credits {cpo}"
            )));
        }
    }
    Ok(())
}

/// Books in memory: for tests, simulations and a batch's view over stored books.
#[derive(Clone, Debug, Default)]
pub struct MemBooks {
    pub accounts: BTreeMap<AccountId, Account>,
    pub transfers: BTreeMap<TransferId, Transfer>,
}

impl Books for MemBooks {
    fn account(&self, id: &AccountId) -> Option<Account> {
        self.accounts.get(id).cloned()
    }
    fn transfer(&self, id: &TransferId) -> Option<Transfer> {
        self.transfers.get(id).cloned()
    }
}

impl MemBooks {
    pub fn open(&mut self, id: &str, unit: Unit, limit: Limit) -> AccountId {
        let id = AccountId(id.to_string());
        self.accounts.insert(id.clone(), Account::new(unit, limit));
        id
    }

    /// Stores a change.
    pub fn commit(&mut self, change: Change) {
        if change.replay {
            return;
        }
        for (id, a) in change.accounts {
            self.accounts.insert(id, a);
        }
        self.transfers
            .insert(change.transfer.id.clone(), change.transfer);
    }

    /// Applies and stores.
    pub fn run(&mut self, op: &Op, now_ms: i64) -> Result<Change, LedgerError> {
        let change = apply(self, op, now_ms)?;
        self.commit(change.clone());
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const JPY: Unit = Unit::Money(Currency::Jpy);

    fn tid(s: &str) -> TransferId {
        TransferId(s.to_string())
    }

    fn books() -> (MemBooks, AccountId, AccountId, AccountId, AccountId) {
        let mut b = MemBooks::default();
        let credit = b.open("card:credit", JPY, Limit::CreditLine(1000));
        let debit = b.open("card:debit", JPY, Limit::DebitsWithinCredits);
        let bank = b.open("bank:deposits", JPY, Limit::None);
        let due = b.open("acquirer:due", JPY, Limit::None);
        b.run(
            &Op::Transfer {
                id: tid("open-debit"),
                debit: bank.clone(),
                credit: debit.clone(),
                amount: 500,
            },
            0,
        )
        .unwrap();
        (b, credit, debit, bank, due)
    }

    fn hold(id: &str, from: &AccountId, to: &AccountId, amount: i64) -> Op {
        Op::Hold {
            id: tid(id),
            debit: from.clone(),
            credit: to.clone(),
            amount,
            expires_at_ms: 100,
        }
    }

    #[test]
    fn a_hold_is_captured_once_and_a_replay_changes_nothing() {
        let (mut b, credit, _, _, due) = books();
        b.run(&hold("o1:hold", &credit, &due, 600), 1).unwrap();
        assert_eq!(b.accounts[&credit].available(), Some(400));
        let again = b.run(&hold("o1:hold", &credit, &due, 600), 2).unwrap();
        assert!(again.replay);
        assert_eq!(b.accounts[&credit].debits_pending, 600);
        assert!(matches!(
            b.run(&hold("o1:hold", &credit, &due, 601), 2),
            Err(LedgerError::Conflict(_))
        ));
        b.run(&Op::Post { id: tid("o1:hold") }, 3).unwrap();
        assert_eq!(b.accounts[&credit].debits_posted, 600);
        assert_eq!(b.accounts[&due].credits_posted, 600);
        assert!(b.run(&Op::Post { id: tid("o1:hold") }, 4).unwrap().replay);
        assert!(matches!(
            b.run(&Op::Void { id: tid("o1:hold") }, 4),
            Err(LedgerError::AlreadyResolved { .. })
        ));
        audit(&b.accounts).unwrap();
    }

    #[test]
    fn limits_decline_and_voids_and_expiry_release() {
        let (mut b, credit, debit, _, due) = books();
        assert!(matches!(
            b.run(&hold("o1:hold", &debit, &due, 501), 1),
            Err(LedgerError::ExceedsLimit { available: 500, .. })
        ));
        b.run(&hold("o1:hold", &debit, &due, 500), 1).unwrap();
        assert_eq!(b.accounts[&debit].available(), Some(0));
        b.run(&Op::Void { id: tid("o1:hold") }, 2).unwrap();
        assert_eq!(b.accounts[&debit].available(), Some(500));
        b.run(&hold("o2:hold", &credit, &due, 1000), 3).unwrap();
        assert!(matches!(
            b.run(&Op::Expire { id: tid("o2:hold") }, 99),
            Err(LedgerError::NotExpired(_))
        ));
        b.run(&Op::Expire { id: tid("o2:hold") }, 100).unwrap();
        assert_eq!(b.accounts[&credit].available(), Some(1000));
        assert!(matches!(
            b.run(&Op::Post { id: tid("o2:hold") }, 101),
            Err(LedgerError::AlreadyResolved {
                state: TransferState::Expired,
                ..
            })
        ));
        audit(&b.accounts).unwrap();
    }

    #[test]
    fn units_must_match_and_amounts_be_positive() {
        let (mut b, credit, _, _, _) = books();
        let points = b.open("points:redeemed", Unit::Points, Limit::None);
        assert!(matches!(
            b.run(&hold("x", &credit, &points, 1), 1),
            Err(LedgerError::UnitMismatch(..))
        ));
        assert!(matches!(
            b.run(&hold("y", &credit, &points, 0), 1),
            Err(LedgerError::NotPositive(0))
        ));
    }

    #[derive(Clone, Debug)]
    enum Step {
        Hold(usize, usize, i64),
        Post(usize),
        Void(usize),
        Expire(usize),
        Direct(usize, usize, i64),
        Replay(usize),
        Tick(i64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..4, 0usize..4, 1i64..800).prop_map(|(a, b, n)| Step::Hold(a, b, n)),
            (0usize..40).prop_map(Step::Post),
            (0usize..40).prop_map(Step::Void),
            (0usize..40).prop_map(Step::Expire),
            (0usize..4, 0usize..4, 1i64..300).prop_map(|(a, b, n)| Step::Direct(a, b, n)),
            (0usize..40).prop_map(Step::Replay),
            (1i64..50).prop_map(Step::Tick),
        ]
    }

    proptest! {
        /// Random authorise / capture / void / expire / replay sequences keep every
        /// invariant: the books balance, no account goes past its limit, and a hold
        /// resolves at most once.
        #[test]
        fn every_sequence_keeps_the_invariants(steps in proptest::collection::vec(step(), 1..120)) {
            let (mut b, credit, debit, bank, due) = books();
            let accounts = [credit, debit, bank, due];
            let mut now = 10i64;
            let mut ops: Vec<Op> = Vec::new();
            let mut resolved: BTreeMap<TransferId, TransferState> = BTreeMap::new();
            for (n, s) in steps.into_iter().enumerate() {
                let op = match s {
                    Step::Hold(a, c, amount) => Op::Hold {
                        id: tid(&format!("h{n}")),
                        debit: accounts[a].clone(),
                        credit: accounts[c].clone(),
                        amount,
                        expires_at_ms: now + 30,
                    },
                    Step::Direct(a, c, amount) => Op::Transfer {
                        id: tid(&format!("t{n}")),
                        debit: accounts[a].clone(),
                        credit: accounts[c].clone(),
                        amount,
                    },
                    Step::Post(i) => Op::Post { id: tid(&format!("h{i}")) },
                    Step::Void(i) => Op::Void { id: tid(&format!("h{i}")) },
                    Step::Expire(i) => Op::Expire { id: tid(&format!("h{i}")) },
                    Step::Replay(i) => match ops.get(i % ops.len().max(1)) {
                        Some(op) => op.clone(),
                        None => continue,
                    },
                    Step::Tick(dt) => {
                        now += dt;
                        continue;
                    }
                };
                let before = b.clone();
                match b.run(&op, now) {
                    Ok(change) => {
                        let t = &change.transfer;
                        if let Some(first) = resolved.get(&t.id) {
                            // Once resolved, a hold never changes again.
                            prop_assert!(change.replay, "{:?} resolved twice", t.id);
                            prop_assert_eq!(*first, t.state);
                        }
                        if !matches!(t.state, TransferState::Pending { .. }) && t.id.0.starts_with('h') {
                            resolved.entry(t.id.clone()).or_insert(t.state);
                        }
                        if change.replay {
                            prop_assert_eq!(&before.accounts, &b.accounts);
                        }
                    }
                    Err(_) => prop_assert_eq!(&before.accounts, &b.accounts, "a refused op changed the books"),
                }
                prop_assert!(audit(&b.accounts).is_ok(), "{:?}", audit(&b.accounts));
                ops.push(op);
            }
        }
    }
}
