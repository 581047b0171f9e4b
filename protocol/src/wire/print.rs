//! Print jobs, intermediary → lab (`/printmesh/print/2`).
//!
//! Version 2: a job carries its payment's [`HoldTerms`] (a lab promises no date it
//! cannot ship by before the payment lapses, and ships nothing whose hold has lapsed),
//! and the terms are updated when the hold is extended. A lab keeps its refusals: the
//! same job sent again is refused again, so the job can move to another lab safely.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::auth::HoldTerms;
use super::order::OrderLine;
use super::{Role, Spec};
use crate::ids::{BlobId, OrderId, StoreId};

pub const ID: &str = "/printmesh/print/2";
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
    /// A job without payment terms (version 1's form): printed whenever.
    Job(PrintJob),
    /// A job whose payment must be captured by `terms.pay_by_ms`.
    JobWithTerms { job: PrintJob, terms: HoldTerms },
    /// The order's hold was extended.
    Terms { order_id: OrderId, terms: HoldTerms },
}

impl PrintRequest {
    pub fn order_id(&self) -> OrderId {
        match self {
            PrintRequest::Job(job) | PrintRequest::JobWithTerms { job, .. } => job.order_id,
            PrintRequest::Terms { order_id, .. } => *order_id,
        }
    }
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
    /// The new terms are recorded.
    TermsNoted {
        order_id: OrderId,
    },
    /// Not a refusal: the lab cannot take the job now (it could not read what it
    /// holds); it keeps nothing, and the job stays with it, sent again later.
    NotNow {
        order_id: OrderId,
        reason: String,
    },
}
