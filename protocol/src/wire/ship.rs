//! Shipments, lab → courier (`/printmesh/ship/1`): a shipment's manifest at hand-over.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{Role, Spec};
use crate::ids::{OrderId, StoreId};

pub const ID: &str = "/printmesh/ship/1";
pub const MAX_BYTES: usize = 256 * 1024;
/// Most parcels in one shipment.
pub const MAX_PARCELS: usize = 2_000;
/// Only labs hand parcels to a courier.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_BYTES,
    max_response_bytes: MAX_BYTES,
    from: &[Role::Lab],
    budgeted: true,
};

/// One order's prints, packed for one store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub order_id: OrderId,
    pub store: StoreId,
    pub prints: u32,
    /// The delivery date the lab promised.
    pub delivery_date: NaiveDate,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipRequest {
    /// The lab hands these parcels to the courier.
    Manifest {
        /// The lab's id for the hand-over (idempotent: sent again, answered again).
        shipment: String,
        lab: String,
        parcels: Vec<Parcel>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShipResponse {
    /// The courier has the parcels; they are on its manifest.
    PickedUp {
        shipment: String,
        parcels: u32,
    },
    Refused {
        shipment: String,
        reason: String,
    },
}
