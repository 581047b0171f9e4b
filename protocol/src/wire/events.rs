//! Order events over gossipsub (`printmesh/order-events/3`), signed by their origin, and
//! the root's revocations (`printmesh/revocations/1`).
//!
//! Version 3 adds `Refunded`: the acquirer gave a captured payment back (a refund or a
//! chargeback); a download's licences are revoked with it.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::order::DeclineCode;
use super::Role;
use crate::ids::{AuthCode, OrderId, StoreId};
use crate::money::Money;

/// Gossipsub topic for order events.
pub const TOPIC: &str = "printmesh/order-events/3";
/// Gossipsub topic for the root's revocations (`membership::SignedRevocation`).
pub const REVOCATIONS_TOPIC: &str = "printmesh/revocations/1";
pub const MAX_BYTES: usize = 16 * 1024;

/// What happened to an order. The state machine in [`crate::order`] gives them meaning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Submitted {
        store: StoreId,
        total: Money,
    },
    Authorised {
        auth_code: AuthCode,
    },
    Declined {
        code: DeclineCode,
    },
    Accepted {
        delivery_date: NaiveDate,
        lab: String,
    },
    Rejected {
        reason: String,
    },
    Printed,
    Shipped,
    Delivered,
    Collected,
    Voided,
    Expired,
    /// The lab cannot keep its promised date: the prints reach the store on this one.
    Rescheduled {
        delivery_date: NaiveDate,
        reason: String,
    },
    /// Where the courier has the parcel (delivery itself is [`EventKind::Delivered`]).
    Tracking {
        stage: TrackingStage,
        courier: String,
    },
    /// The acquirer gave a captured payment back (refund or chargeback): the order's
    /// download licences no longer count, wherever they are shown.
    Refunded,
}

/// A courier's tracking stages before delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackingStage {
    PickedUp,
    InTransit,
}

/// An order event as its origin numbered it. Carries no card data, no image bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// The emitting node's PeerId bytes.
    pub origin: Vec<u8>,
    /// Per-origin sequence number, from 1.
    pub seq: u64,
    pub order_id: OrderId,
    pub at_ms: i64,
    pub kind: EventKind,
}

/// An encoded [`OrderEvent`] signed by its origin's identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedEvent {
    /// The codec's encoding of the [`OrderEvent`].
    pub event: Vec<u8>,
    /// The origin's public key (libp2p protobuf encoding).
    pub public_key: Vec<u8>,
    pub signature: Vec<u8>,
    /// In an enrolled network, the origin's membership certificate (an encoded
    /// `membership::SignedCertificate`): every node checks the origin may emit this
    /// kind of event, however many hops away it is.
    pub certificate: Option<Vec<u8>>,
}

impl EventKind {
    /// The role whose nodes emit this kind of event.
    pub fn emitted_by(&self) -> Role {
        match self {
            EventKind::Submitted { .. } => Role::Intermediary,
            EventKind::Authorised { .. }
            | EventKind::Declined { .. }
            | EventKind::Voided
            | EventKind::Expired
            | EventKind::Refunded => Role::Acquirer,
            EventKind::Accepted { .. }
            | EventKind::Rejected { .. }
            | EventKind::Printed
            | EventKind::Shipped
            | EventKind::Rescheduled { .. } => Role::Lab,
            EventKind::Tracking { .. } | EventKind::Delivered => Role::Courier,
            EventKind::Collected => Role::Kiosk,
        }
    }
}
