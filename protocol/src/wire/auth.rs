//! Authorisation, intermediary → acquirer (`/printmesh/auth/1`): authorise, capture,
//! void; the card travels sealed to the acquirer's key.

use serde::{Deserialize, Serialize};

use super::order::{DeclineCode, PaymentMethod};
use super::{Role, Spec};
use crate::card::CardData;
use crate::ids::{AuthCode, OrderId, StoreId};
use crate::money::Money;
use crate::pinblock::EncryptedPinBlock;
use crate::seal::SealedCard;

pub const ID: &str = "/printmesh/auth/1";
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
    /// Release the hold (job rejected, order cancelled).
    Void { order_id: OrderId },
    /// [`AuthRequest::Authorise`] with the PIN block the cardholder entered.
    AuthoriseWithPin {
        auth: Authorise,
        pin_block: EncryptedPinBlock,
    },
    /// The card (and PIN) sealed to the acquirer by the kiosk, passed on untouched.
    AuthoriseSealed(SealedAuthorise),
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
}
