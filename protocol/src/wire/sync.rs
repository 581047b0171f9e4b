//! Anti-entropy (`/printmesh/sync/1`): a node asks a peer for the order events it took
//! in after a point in its log (a node that was away, or missed a gossip, catches up).

use serde::{Deserialize, Serialize};

use super::{Role, Spec};

pub const ID: &str = "/printmesh/sync/1";
pub const MAX_REQUEST_BYTES: usize = 1024;
/// Room for [`MAX_EVENTS`] frames of a usual size, or a few of the largest
/// ([`super::events::MAX_BYTES`] each); the answering node stops adding frames before it.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024;
/// Most event frames in one sync answer.
pub const MAX_EVENTS: usize = 256;
/// Most stored events one sync answer looks through (a kiosk's answer passes over
/// other stores' orders), so an answer costs the same however the log is made up.
pub const MAX_SCAN: usize = 2048;
/// Any member may ask what it missed; what it is shown depends on its role (one that
/// belongs to a store sees that store's orders only).
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_REQUEST_BYTES,
    max_response_bytes: MAX_RESPONSE_BYTES,
    from: &Role::ALL,
    budgeted: false,
};

/// What a node asks a peer that may have events it missed: the events the peer stored
/// after `after` in its own log. Each node numbers the events it stores, from 1, in the
/// order it stores them; `log` names that numbering (it is drawn anew with a new
/// database), so a cursor into a log that is gone is not used on its successor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncRequest {
    Since { log: u64, after: u64 },
}

/// A page of a peer's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncResponse {
    /// `frames` are encoded [`SignedEvent`]s, as gossiped, oldest first; the asker
    /// checks each as it checks gossip. Ask from `next` in `log` next time; `more`
    /// says there is more to read now. A `log` other than the one asked about means
    /// the page starts at the beginning of the peer's log.
    Events {
        log: u64,
        frames: Vec<Vec<u8>>,
        next: u64,
        more: bool,
    },
    /// The peer cannot read its log now; ask again later.
    Unavailable { reason: String },
}
