//! Authorisation, intermediary → acquirer (`/printmesh/auth/2`): authorise, capture,
//! void; the card travels sealed to the acquirer's key.
//!
//! Version 2 makes the hold the order's anchor across intermediaries: the lab an order
//! goes to is bound at the acquirer once (`BindLab`, first binding wins; replaced only
//! by naming the lab that refused it), any enrolled intermediary may capture, void or
//! extend it, and one that lost its records adopts a shipped order (`Adopt`).

use serde::{Deserialize, Serialize};

use super::order::{DeclineCode, PaymentMethod};
use super::{Role, Spec};
use crate::card::CardData;
use crate::ids::{AuthCode, OrderId, StoreId};
use crate::money::Money;
use crate::pinblock::EncryptedPinBlock;
use crate::seal::{KeyId, SealedCard};

pub const ID: &str = "/printmesh/auth/2";
pub const MAX_BYTES: usize = 16 * 1024;
/// Only intermediaries ask an acquirer.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_BYTES,
    max_response_bytes: MAX_BYTES,
    from: &[Role::Intermediary],
    budgeted: true,
};

/// The acquirer's token for a card: its keyed hash of the PAN, cut to 16 bytes. It
/// stands for the card everywhere outside the acquirer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CardToken(pub [u8; 16]);

impl std::fmt::Display for CardToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for CardToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CardToken({self})")
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorise {
    pub order_id: OrderId,
    pub amount: Money,
    pub method: PaymentMethod,
    pub card: CardData,
    /// The store the sale happened at (merchant location).
    pub store: StoreId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthRequest {
    /// Place a hold for the amount.
    Authorise(Authorise),
    /// Post the hold (the lab shipped).
    Capture { order_id: OrderId },
    /// Release the hold of an order no lab has (cancelled, or approved for another
    /// amount). Refused (`HoldClosed`) once a lab is bound: only that lab's refusal
    /// releases it then ([`AuthRequest::VoidRefused`]).
    Void { order_id: OrderId },
    /// [`AuthRequest::Authorise`] with the PIN block the cardholder entered.
    AuthoriseWithPin {
        auth: Authorise,
        pin_block: EncryptedPinBlock,
    },
    /// The card (and PIN) sealed to the acquirer by the kiosk, passed on untouched.
    AuthoriseSealed(SealedAuthorise),
    /// Bind the order's job to `lab` (a peer id), unless a lab is bound already: the
    /// answer ([`AuthResponse::LabBound`]) names the lab bound, the first one asked for.
    /// With `replacing`, the binding moves to `lab` only if it is still `replacing`
    /// (that lab refused the job; labs keep their refusals).
    BindLab {
        order_id: OrderId,
        lab: Vec<u8>,
        lab_name: String,
        replacing: Option<Vec<u8>>,
    },
    /// Keep the hold alive for another hold period, no later than its last day
    /// ([`AuthResponse::Extended`]).
    Extend { order_id: OrderId },
    /// Capture a shipped order whose record the asking intermediary does not have (it
    /// lost its disk, or another intermediary took the order): the answer
    /// ([`AuthResponse::Adopted`]) carries what it needs to bill and pay the lab.
    /// `shipped_by`: the lab whose `Shipped` event the intermediary holds; it must be
    /// the lab bound to the order.
    Adopt {
        order_id: OrderId,
        shipped_by: Vec<u8>,
    },
    /// Release the hold because `lab`, the lab bound to the order, refused or could
    /// not print the job.
    VoidRefused { order_id: OrderId, lab: Vec<u8> },
    /// [`AuthRequest::Void`] for the acquirer of sealing key `key` only: another
    /// answers `NotMine` and keeps nothing, so a cancel's tombstone lands where the
    /// order's authorisation will (the card was sealed to that key).
    VoidFor { order_id: OrderId, key: KeyId },
}

/// The `HoldClosed` reason a second intermediary hears when it captures an order
/// another one captured (and bills).
pub const CAPTURED_ELSEWHERE: &str = "captured by another intermediary";
/// The `HoldClosed` reason of a plain `Void` once a lab has the order.
pub const LAB_HAS_IT: &str = "a lab has the order: only its refusal releases the hold";

/// How long an order's payment can wait for its prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldTerms {
    /// When the hold lapses unless extended.
    pub expires_at_ms: i64,
    /// The last moment any extension can reach: prints must ship before it.
    pub pay_by_ms: i64,
}

impl AuthRequest {
    pub fn order_id(&self) -> OrderId {
        match self {
            AuthRequest::Authorise(a) | AuthRequest::AuthoriseWithPin { auth: a, .. } => a.order_id,
            AuthRequest::AuthoriseSealed(a) => a.order_id,
            AuthRequest::Capture { order_id }
            | AuthRequest::Void { order_id }
            | AuthRequest::BindLab { order_id, .. }
            | AuthRequest::Extend { order_id }
            | AuthRequest::Adopt { order_id, .. }
            | AuthRequest::VoidRefused { order_id, .. }
            | AuthRequest::VoidFor { order_id, .. } => *order_id,
        }
    }
}

/// An authorisation request whose card data only the acquirer can open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedAuthorise {
    pub order_id: OrderId,
    pub amount: Money,
    pub method: PaymentMethod,
    pub store: StoreId,
    pub card: SealedCard,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthResponse {
    Approved {
        order_id: OrderId,
        auth_code: AuthCode,
        amount: Money,
    },
    Declined {
        order_id: OrderId,
        code: DeclineCode,
    },
    Captured {
        order_id: OrderId,
    },
    Voided {
        order_id: OrderId,
    },
    /// The request could not be carried out (no such hold, already voided, …).
    Refused {
        order_id: OrderId,
        reason: String,
    },
    /// Approved, with the token that stands for the card outside the acquirer.
    ApprovedCard {
        order_id: OrderId,
        auth_code: AuthCode,
        amount: Money,
        token: CardToken,
    },
    /// Declined; the token when the card is known.
    DeclinedCard {
        order_id: OrderId,
        code: DeclineCode,
        token: Option<CardToken>,
    },
    /// The card data is sealed to another acquirer's key: ask another acquirer.
    NotMine {
        order_id: OrderId,
    },
    /// A capture or void that can never succeed: there is no such hold, it belongs to
    /// another intermediary, or it was declined, already settled the other way, or has
    /// expired. Asking again is pointless (unlike `Refused`, which may pass).
    HoldClosed {
        order_id: OrderId,
        reason: String,
    },
    /// The lab the order's job is bound to, and the hold's terms.
    LabBound {
        order_id: OrderId,
        lab: Vec<u8>,
        lab_name: String,
        terms: HoldTerms,
    },
    /// The hold lives on to `terms.expires_at_ms`.
    Extended {
        order_id: OrderId,
        terms: HoldTerms,
    },
    /// Captured for the asking intermediary (which bills it): the order's amount, its
    /// store and the lab bound to it.
    Adopted {
        order_id: OrderId,
        amount: Money,
        store: StoreId,
        lab: Option<(Vec<u8>, String)>,
    },
}

impl AuthResponse {
    pub fn order_id(&self) -> OrderId {
        match self {
            AuthResponse::ApprovedCard { order_id, .. }
            | AuthResponse::DeclinedCard { order_id, .. }
            | AuthResponse::Approved { order_id, .. }
            | AuthResponse::Declined { order_id, .. }
            | AuthResponse::Captured { order_id }
            | AuthResponse::Voided { order_id }
            | AuthResponse::Refused { order_id, .. }
            | AuthResponse::NotMine { order_id }
            | AuthResponse::HoldClosed { order_id, .. }
            | AuthResponse::LabBound { order_id, .. }
            | AuthResponse::Extended { order_id, .. }
            | AuthResponse::Adopted { order_id, .. } => *order_id,
        }
    }
}
