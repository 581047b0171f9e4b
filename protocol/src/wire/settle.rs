//! Settlement (`/printmesh/settle/1`): acquirers settle with intermediaries,
//! intermediaries pay labs.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{Role, Spec};
use crate::ids::OrderId;
use crate::money::Money;

pub const ID: &str = "/printmesh/settle/1";
pub const MAX_BYTES: usize = 512 * 1024;
/// Most orders in one settlement message.
pub const MAX_SETTLE_LINES: usize = 10_000;
/// Acquirers settle with intermediaries; intermediaries pay labs. Each role checks
/// which of the two asked.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_BYTES,
    max_response_bytes: MAX_BYTES,
    from: &[Role::Acquirer, Role::Intermediary],
    budgeted: true,
};

/// A settlement batch: the acquirer's closing date and its number that day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BatchId {
    pub date: NaiveDate,
    pub seq: u32,
}

impl std::fmt::Display for BatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{:03}", self.date, self.seq)
    }
}

/// One order in a bill or a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleLine {
    pub order_id: OrderId,
    pub amount: Money,
}

/// Patent [0064]-[0065]: the intermediary bills the acquirer for captured orders, the
/// acquirer pays it, and the intermediary pays each lab its print fees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleRequest {
    /// Acquirer → intermediary: send the bill of captured orders not yet paid.
    BillPlease { batch: BatchId },
    /// Acquirer → intermediary: these orders of the bill are paid.
    Payment {
        batch: BatchId,
        lines: Vec<SettleLine>,
        total: Money,
    },
    /// Intermediary → lab: the lab's print fees for these orders are paid.
    LabPayment {
        batch: BatchId,
        lines: Vec<SettleLine>,
        total: Money,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettleResponse {
    Bill {
        batch: BatchId,
        lines: Vec<SettleLine>,
        total: Money,
    },
    Received {
        batch: BatchId,
        total: Money,
    },
    Refused {
        batch: BatchId,
        reason: String,
    },
}
