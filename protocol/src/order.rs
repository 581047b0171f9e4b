//! The order lifecycle as a pure state machine.
//!
//! `Draft → Submitted → Authorised | Declined → Accepted | Rejected → Printed → Shipped →
//! Delivered → Collected`, plus `Voided` and `Expired`. Every node applies
//! [`transition`] to the events it sees; [`fold`] orders a set of events canonically
//! first, so nodes holding the same events agree on the state whatever order gossip
//! delivered them in.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::messages::{EventKind, OrderEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OrderState {
    Draft,
    Submitted,
    Authorised,
    Declined,
    Accepted,
    Rejected,
    Printed,
    Shipped,
    Delivered,
    Collected,
    Voided,
    Expired,
}

impl OrderState {
    pub const ALL: [OrderState; 12] = [
        OrderState::Draft,
        OrderState::Submitted,
        OrderState::Authorised,
        OrderState::Declined,
        OrderState::Accepted,
        OrderState::Rejected,
        OrderState::Printed,
        OrderState::Shipped,
        OrderState::Delivered,
        OrderState::Collected,
        OrderState::Voided,
        OrderState::Expired,
    ];

    /// No event moves an order out of a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderState::Declined | OrderState::Collected | OrderState::Voided | OrderState::Expired
        )
    }
}

/// The event kinds without their data, for tables and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    Submit,
    Authorise,
    Decline,
    Accept,
    Reject,
    Print,
    Ship,
    Deliver,
    Collect,
    Void,
    Expire,
    /// The promised date moved; the state stays.
    Reschedule,
    /// The courier reports progress; the state stays.
    Track,
    /// The acquirer refunded a captured payment (a download's licence is revoked);
    /// the state stays.
    Refund,
}

impl Step {
    pub const ALL: [Step; 14] = [
        Step::Submit,
        Step::Authorise,
        Step::Decline,
        Step::Accept,
        Step::Reject,
        Step::Print,
        Step::Ship,
        Step::Deliver,
        Step::Collect,
        Step::Void,
        Step::Expire,
        Step::Reschedule,
        Step::Track,
        Step::Refund,
    ];

    pub fn of(kind: &EventKind) -> Step {
        match kind {
            EventKind::Submitted { .. } => Step::Submit,
            EventKind::Authorised { .. } => Step::Authorise,
            EventKind::Declined { .. } => Step::Decline,
            EventKind::Accepted { .. } => Step::Accept,
            EventKind::Rejected { .. } => Step::Reject,
            EventKind::Printed => Step::Print,
            EventKind::Shipped => Step::Ship,
            EventKind::Delivered => Step::Deliver,
            EventKind::Collected => Step::Collect,
            EventKind::Voided => Step::Void,
            EventKind::Expired => Step::Expire,
            EventKind::Rescheduled { .. } => Step::Reschedule,
            EventKind::Tracking { .. } => Step::Track,
            EventKind::Refunded => Step::Refund,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid transition: {step:?} in state {from:?}")]
pub struct InvalidTransition {
    pub from: OrderState,
    pub step: Step,
}

/// The one transition function.
pub fn transition(from: OrderState, step: Step) -> Result<OrderState, InvalidTransition> {
    use OrderState as S;
    let to = match (from, step) {
        (S::Draft, Step::Submit) => S::Submitted,
        (S::Submitted, Step::Authorise) => S::Authorised,
        (S::Submitted, Step::Decline) => S::Declined,
        (S::Submitted, Step::Expire) => S::Expired,
        (S::Authorised, Step::Accept) => S::Accepted,
        (S::Authorised, Step::Reject) => S::Rejected,
        (S::Authorised, Step::Void) => S::Voided,
        (S::Authorised, Step::Expire) => S::Expired,
        (S::Accepted, Step::Print) => S::Printed,
        (S::Accepted, Step::Void) => S::Voided,
        (S::Accepted, Step::Expire) => S::Expired,
        (S::Rejected, Step::Void) => S::Voided,
        (S::Accepted, Step::Reject) => S::Rejected,
        (S::Printed, Step::Ship) => S::Shipped,
        (S::Shipped, Step::Deliver) => S::Delivered,
        (S::Delivered, Step::Collect) => S::Collected,
        (S::Accepted | S::Printed | S::Shipped, Step::Reschedule) => from,
        (S::Shipped, Step::Track) => S::Shipped,
        (S::Authorised | S::Shipped | S::Delivered, Step::Refund) => from,
        _ => return Err(InvalidTransition { from, step }),
    };
    Ok(to)
}

/// Canonical order of steps within one order's history: the lifecycle order.
fn rank(step: Step) -> u8 {
    match step {
        Step::Submit => 0,
        Step::Authorise | Step::Decline => 1,
        Step::Accept | Step::Reject => 2,
        Step::Print | Step::Reschedule => 3,
        Step::Ship | Step::Track => 4,
        Step::Deliver => 5,
        Step::Collect => 6,
        Step::Void | Step::Expire => 7,
        Step::Refund => 8,
    }
}

/// The state an order's events lead to. Events are sorted canonically (lifecycle rank,
/// then time, origin and sequence number) and applied in turn; an event that does not
/// apply (a duplicate, one from a branch already left) is skipped. Bounded by the
/// number of events.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a OrderEvent>) -> OrderState {
    let mut sorted: Vec<&OrderEvent> = events.into_iter().collect();
    sorted.sort_by(|a, b| {
        (rank(Step::of(&a.kind)), a.at_ms, &a.origin, a.seq).cmp(&(
            rank(Step::of(&b.kind)),
            b.at_ms,
            &b.origin,
            b.seq,
        ))
    });
    let mut state = OrderState::Draft;
    for event in sorted {
        if let Ok(next) = transition(state, Step::of(&event.kind)) {
            state = next;
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{AuthCode, OrderId};
    use crate::money::{Currency, Money};
    use OrderState as S;

    /// Every legal transition, written out once more as a table, independent of the
    /// match above.
    const LEGAL: &[(OrderState, Step, OrderState)] = &[
        (S::Draft, Step::Submit, S::Submitted),
        (S::Submitted, Step::Authorise, S::Authorised),
        (S::Submitted, Step::Decline, S::Declined),
        (S::Submitted, Step::Expire, S::Expired),
        (S::Authorised, Step::Accept, S::Accepted),
        (S::Authorised, Step::Reject, S::Rejected),
        (S::Authorised, Step::Void, S::Voided),
        (S::Authorised, Step::Expire, S::Expired),
        (S::Accepted, Step::Print, S::Printed),
        (S::Accepted, Step::Void, S::Voided),
        (S::Accepted, Step::Expire, S::Expired),
        (S::Rejected, Step::Void, S::Voided),
        (S::Accepted, Step::Reject, S::Rejected),
        (S::Printed, Step::Ship, S::Shipped),
        (S::Shipped, Step::Deliver, S::Delivered),
        (S::Delivered, Step::Collect, S::Collected),
        (S::Accepted, Step::Reschedule, S::Accepted),
        (S::Printed, Step::Reschedule, S::Printed),
        (S::Shipped, Step::Reschedule, S::Shipped),
        (S::Shipped, Step::Track, S::Shipped),
        (S::Authorised, Step::Refund, S::Authorised),
        (S::Shipped, Step::Refund, S::Shipped),
        (S::Delivered, Step::Refund, S::Delivered),
    ];

    #[test]
    fn every_pair_is_legal_or_illegal_as_the_table_says() {
        let mut checked = 0;
        for from in OrderState::ALL {
            for step in Step::ALL {
                let expected = LEGAL
                    .iter()
                    .find(|(f, s, _)| *f == from && *s == step)
                    .map(|(_, _, to)| *to);
                match expected {
                    Some(to) => assert_eq!(transition(from, step), Ok(to), "{from:?} {step:?}"),
                    None => assert_eq!(
                        transition(from, step),
                        Err(InvalidTransition { from, step }),
                        "{from:?} {step:?} should be illegal"
                    ),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 12 * 14);
    }

    #[test]
    fn terminal_states_accept_nothing() {
        for from in OrderState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for step in Step::ALL {
                assert!(transition(from, step).is_err(), "{from:?} {step:?}");
            }
        }
    }

    fn ev(seq: u64, at_ms: i64, kind: EventKind) -> OrderEvent {
        OrderEvent {
            origin: vec![seq as u8],
            seq,
            order_id: OrderId::from_parts(1, 1),
            at_ms,
            kind,
        }
    }

    fn happy_path() -> Vec<OrderEvent> {
        vec![
            ev(
                1,
                10,
                EventKind::Submitted {
                    store: "store-1".parse().unwrap(),
                    total: Money::new(100, Currency::Jpy),
                },
            ),
            ev(
                2,
                11,
                EventKind::Authorised {
                    auth_code: AuthCode::from_random(7),
                },
            ),
            ev(
                3,
                12,
                EventKind::Accepted {
                    delivery_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap(),
                    lab: "Lab".into(),
                },
            ),
            ev(4, 13, EventKind::Printed),
        ]
    }

    #[test]
    fn fold_is_independent_of_arrival_order() {
        let events = happy_path();
        assert_eq!(fold(&events), S::Printed);
        let mut reversed = events.clone();
        reversed.reverse();
        assert_eq!(fold(&reversed), S::Printed);
        // Clocks can disagree: an accept stamped before its authorisation still folds.
        let mut skewed = events.clone();
        skewed[2].at_ms = 0;
        assert_eq!(fold(&skewed), S::Printed);
    }

    #[test]
    fn fold_skips_duplicates_and_stray_events() {
        let mut events = happy_path();
        events.push(events[1].clone());
        events.push(ev(9, 5, EventKind::Collected));
        assert_eq!(fold(&events), S::Printed);
        assert_eq!(fold(&[]), S::Draft);
    }
}
