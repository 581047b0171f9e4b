//! Downloads bought at a kiosk, kiosk → intermediary (`/printmesh/download/1`).
//!
//! 1. `Buy`: the items (each as the company's signed catalogue describes it) and the
//!    card sealed to the acquirer, as for prints. The intermediary checks every line
//!    against the catalogue it holds and has the card authorised: `Authorised` (the
//!    amount is held), `Declined`, `Rejected`, or `Unavailable` (ask again). A download
//!    is never taken offline: nothing is written before an approval.
//! 2. The kiosk writes the items onto the customer's card and verifies them.
//! 3. `Written`: the hold is captured (answered `Captured` once the capture is on the
//!    intermediary's disk; it is retried until the acquirer confirms it). `Failed`:
//!    the hold is released (`Released`), whoever holds it. Each is idempotent; a kiosk
//!    that restarts sends the one its record says.
//!
//! One order's items come from one content company (the kiosk places one order per
//! company); the company is paid its prices at settlement, less the intermediary's
//! commission.

use serde::{Deserialize, Serialize};

use super::order::{DeclineCode, PaymentMethod};
use super::{Role, Spec};
use crate::content::ItemId;
use crate::ids::{AuthCode, BlobId, OrderId, StoreId};
use crate::money::Money;
use crate::seal::{KeyId, SealedCard};

pub const ID: &str = "/printmesh/download/1";
pub const MAX_BYTES: usize = 64 * 1024;
/// Most items in one order (Nintendo Power took seven games a cartridge).
pub const MAX_ITEMS: usize = 20;
/// Only kiosks buy downloads.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_BYTES,
    max_response_bytes: MAX_BYTES,
    from: &[Role::Kiosk],
    budgeted: true,
};

/// One item bought, as the company's catalogue describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadLine {
    pub item: ItemId,
    pub blob: BlobId,
    pub size: u64,
    pub price: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedDownload {
    pub order_id: OrderId,
    pub store: StoreId,
    pub placed_at_ms: i64,
    /// The content company (its PeerId bytes, the catalogue's signer).
    pub company: Vec<u8>,
    pub lines: Vec<DownloadLine>,
    /// The total the customer was shown; the sealed card is bound to it.
    pub total: Money,
    pub method: PaymentMethod,
    pub card: SealedCard,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownloadRequest {
    Buy(SealedDownload),
    /// The items are on the card, read back and verified: capture.
    Written {
        order_id: OrderId,
        store: StoreId,
        /// The card's volume serial, for the intermediary's records.
        card_serial: u32,
    },
    /// The items could not be written (the card was pulled, full, write-protected):
    /// release the hold. `key` is the acquirer key the card was sealed to.
    Failed {
        order_id: OrderId,
        store: StoreId,
        key: KeyId,
        reason: String,
    },
}

impl DownloadRequest {
    pub fn order_id(&self) -> OrderId {
        match self {
            DownloadRequest::Buy(b) => b.order_id,
            DownloadRequest::Written { order_id, .. }
            | DownloadRequest::Failed { order_id, .. } => *order_id,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DownloadResponse {
    /// The amount is held: write the items.
    Authorised {
        order_id: OrderId,
        auth_code: AuthCode,
        amount: Money,
    },
    /// Final: nothing is held.
    Declined {
        order_id: OrderId,
        code: DeclineCode,
    },
    /// Final: the order cannot be sold (a price that is not the catalogue's, an item
    /// withdrawn); any hold was released.
    Rejected { order_id: OrderId, reason: String },
    /// Not final: ask again.
    Unavailable { order_id: OrderId, reason: String },
    /// Final: the capture is recorded.
    Captured { order_id: OrderId },
    /// Final: the hold is released; the customer pays nothing.
    Released { order_id: OrderId },
}
