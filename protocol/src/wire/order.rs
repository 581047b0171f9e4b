//! Orders, kiosk → intermediary (`/printmesh/order/2`): submission, the sealed card,
//! and the one answer the kiosk acts on.
//!
//! Version 2 adds `Status` (can an authorisation be had now? the kiosk's stand-in
//! rules apply when not) and `Cancel` (the kiosk gives up an order: its hold is
//! reversed wherever it is, before or after it arrives, and the order is never
//! captured).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{Role, Spec};
use crate::card::CardData;
use crate::ids::{AuthCode, BlobId, OrderId, StoreId};
use crate::money::Money;
use crate::pinblock::EncryptedPinBlock;
use crate::pricing::{Fit, PrintSize};
use crate::seal::{KeyId, SealedCard};

pub const ID: &str = "/printmesh/order/2";
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// Most lines in one order.
pub const MAX_ORDER_LINES: usize = 500;
/// Only kiosks submit orders.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_REQUEST_BYTES,
    max_response_bytes: MAX_RESPONSE_BYTES,
    from: &[Role::Kiosk],
    budgeted: true,
};

/// How the customer pays (patent S505).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PaymentMethod {
    Credit,
    Debit,
    PointCard,
    IcCard,
}

/// One photo in an order: which blob, at what size, how many.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub blob: BlobId,
    /// Blob length in bytes, so the receiver knows what to expect.
    pub blob_len: u64,
    /// The file name on the memory card (`PMSH0001.JPG`), for the back print.
    pub file_name: String,
    pub size: PrintSize,
    pub quantity: u16,
    /// Crop to fill the paper, or the whole photo with a white border.
    pub fit: Fit,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitOrder {
    pub order_id: OrderId,
    pub store: StoreId,
    pub placed_at_ms: i64,
    pub lines: Vec<OrderLine>,
    /// The total the customer was shown; the intermediary recomputes it.
    pub total: Money,
    pub method: PaymentMethod,
    pub card: CardData,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderRequest {
    Submit(SubmitOrder),
    /// A submission whose cardholder entered a PIN on the kiosk's PIN pad. The block
    /// is format 4, encrypted at the PIN pad; the intermediary passes it on untouched.
    SubmitWithPin {
        order: SubmitOrder,
        pin_block: EncryptedPinBlock,
    },
    /// The card (and PIN) sealed to the acquirer's key. The only form accepted since
    /// sealing arrived; the unsealed forms above are refused.
    SubmitSealed(SealedOrder),
    /// Can this intermediary have a card authorised now ([`OrderResponse::Status`])?
    Status,
    /// The kiosk gives the order up (not authorised in time): whatever was held is
    /// released and the order is never captured. Answered
    /// [`OrderResponse::Cancelled`] once the acquirer of `key` has it.
    Cancel {
        order_id: OrderId,
        store: StoreId,
        /// The acquirer key the card was sealed to.
        key: KeyId,
        reason: String,
    },
}

impl OrderRequest {
    /// The order asked about (`Status` asks about none: the zero id).
    pub fn order_id(&self) -> OrderId {
        match self {
            OrderRequest::Submit(order) | OrderRequest::SubmitWithPin { order, .. } => {
                order.order_id
            }
            OrderRequest::SubmitSealed(order) => order.order_id,
            OrderRequest::Cancel { order_id, .. } => *order_id,
            OrderRequest::Status => OrderId::from_bytes([0; 16]),
        }
    }
}

/// An order whose card data is sealed to the acquirer: what kiosks send. The
/// intermediary sees the card's brand, last four digits and entry mode, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedOrder {
    pub order_id: OrderId,
    pub store: StoreId,
    pub placed_at_ms: i64,
    pub lines: Vec<OrderLine>,
    /// The total the customer was shown; the intermediary recomputes it. The sealed
    /// card is bound to it.
    pub total: Money,
    pub method: PaymentMethod,
    pub card: SealedCard,
}

/// An approved, accepted order: what the kiosk prints on the receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAccepted {
    pub order_id: OrderId,
    pub auth_code: AuthCode,
    pub amount: Money,
    pub delivery_date: NaiveDate,
    pub lab: String,
}

/// ISO 8583 response codes a decline can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeclineCode {
    /// 05
    DoNotHonour,
    /// 13
    InvalidAmount,
    /// 14
    InvalidCardNumber,
    /// 51
    InsufficientFunds,
    /// 54
    ExpiredCard,
    /// 57
    NotPermitted,
    /// 62
    RestrictedCard,
    /// 55
    IncorrectPin,
    /// 75
    PinTriesExceeded,
    /// 30: the sealed card data does not open for this order.
    FormatError,
}

impl DeclineCode {
    /// The two-digit ISO 8583 field 39 code.
    pub fn iso8583(self) -> &'static str {
        match self {
            DeclineCode::DoNotHonour => "05",
            DeclineCode::InvalidAmount => "13",
            DeclineCode::InvalidCardNumber => "14",
            DeclineCode::InsufficientFunds => "51",
            DeclineCode::ExpiredCard => "54",
            DeclineCode::NotPermitted => "57",
            DeclineCode::RestrictedCard => "62",
            DeclineCode::IncorrectPin => "55",
            DeclineCode::PinTriesExceeded => "75",
            DeclineCode::FormatError => "30",
        }
    }

    /// Plain words for the customer.
    pub fn describe(self) -> &'static str {
        match self {
            DeclineCode::DoNotHonour => "the card issuer declined the payment",
            DeclineCode::InvalidAmount => "the amount cannot be charged to this card",
            DeclineCode::InvalidCardNumber => "the card number is not recognised",
            DeclineCode::InsufficientFunds => "the card's limit does not cover this amount",
            DeclineCode::ExpiredCard => "the card has expired",
            DeclineCode::NotPermitted => "this card cannot be used for this payment",
            DeclineCode::RestrictedCard => "the card is blocked",
            DeclineCode::IncorrectPin => "the PIN was not correct",
            DeclineCode::PinTriesExceeded => {
                "the PIN was wrong too many times; the card is blocked"
            }
            DeclineCode::FormatError => "the card data could not be read by the card issuer",
        }
    }
}

impl std::fmt::Display for DeclineCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.iso8583(), self.describe())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderResponse {
    /// Final: paid and promised.
    Accepted(OrderAccepted),
    /// Final: the card was declined; nothing is held.
    Declined {
        order_id: OrderId,
        code: DeclineCode,
    },
    /// Final: the order cannot be made (bad total, no lab could take it); any hold was
    /// released.
    Rejected { order_id: OrderId, reason: String },
    /// Not final: upload these blobs, then submit again.
    MissingBlobs {
        order_id: OrderId,
        blobs: Vec<BlobId>,
    },
    /// Not final: a party behind the intermediary is unreachable; submit again later.
    Unavailable { order_id: OrderId, reason: String },
    /// Whether an authorisation can be had now.
    Status { can_authorise: bool },
    /// Final: the order is given up and its hold (if any) released.
    Cancelled { order_id: OrderId },
}

impl OrderResponse {
    pub fn order_id(&self) -> OrderId {
        match self {
            OrderResponse::Accepted(a) => a.order_id,
            OrderResponse::Declined { order_id, .. }
            | OrderResponse::Rejected { order_id, .. }
            | OrderResponse::MissingBlobs { order_id, .. }
            | OrderResponse::Unavailable { order_id, .. }
            | OrderResponse::Cancelled { order_id } => *order_id,
            OrderResponse::Status { .. } => OrderId::from_bytes([0; 16]),
        }
    }

    /// A final answer ends the kiosk's retries.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OrderResponse::Accepted(_)
                | OrderResponse::Declined { .. }
                | OrderResponse::Rejected { .. }
                | OrderResponse::Cancelled { .. }
        )
    }
}

impl OrderResponse {
    /// One line for a log or a report: "approved … delivery …", "declined 51", ….
    pub fn summary(&self) -> String {
        match self {
            OrderResponse::Accepted(a) => {
                format!("approved {} delivery {}", a.auth_code, a.delivery_date)
            }
            OrderResponse::Declined { code, .. } => format!("declined {code}"),
            OrderResponse::Rejected { reason, .. } => format!("rejected: {reason}"),
            OrderResponse::MissingBlobs { blobs, .. } => format!("missing {} images", blobs.len()),
            OrderResponse::Unavailable { reason, .. } => format!("unavailable: {reason}"),
            OrderResponse::Status { can_authorise } => {
                format!("can authorise: {can_authorise}")
            }
            OrderResponse::Cancelled { .. } => "cancelled: nothing is charged".into(),
        }
    }
}
