//! Print jobs, intermediary → lab (`/printmesh/print/1`).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::order::OrderLine;
use super::{Role, Spec};
use crate::ids::{BlobId, OrderId, StoreId};

pub const ID: &str = "/printmesh/print/1";
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// Only intermediaries send a lab jobs.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_REQUEST_BYTES,
    max_response_bytes: MAX_RESPONSE_BYTES,
    from: &[Role::Intermediary],
    budgeted: true,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrintJob {
    pub order_id: OrderId,
    pub store: StoreId,
    pub lines: Vec<OrderLine>,
    pub submitted_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrintRequest {
    Job(PrintJob),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrintResponse {
    Accepted {
        order_id: OrderId,
        delivery_date: NaiveDate,
        lab: String,
    },
    Rejected {
        order_id: OrderId,
        reason: String,
    },
    MissingBlobs {
        order_id: OrderId,
        blobs: Vec<BlobId>,
    },
}
