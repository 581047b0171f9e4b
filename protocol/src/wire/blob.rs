//! Blob push over a raw stream (`/printmesh/blob/1`): the control frames, the caps, and
//! who may push photos to whom.

use serde::{Deserialize, Serialize};

use super::Role;
use crate::ids::BlobId;

pub const ID: &str = "/printmesh/blob/1";
pub const CONTROL_MAX_BYTES: usize = 1024;
/// Largest blob a node accepts (a camera JPEG is 3-20 MB).
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Whether a node in role `to` takes photos pushed by a peer in role `from`: a
/// kiosk sends its intermediary the order's photos, the intermediary sends them on to
/// the lab. Nobody else pushes blobs to anyone.
pub fn takes_blobs(from: Role, to: Role) -> bool {
    matches!(
        (from, to),
        (Role::Kiosk, Role::Intermediary) | (Role::Intermediary, Role::Lab)
    )
}

/// First frame on a blob stream, from the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobOffer {
    pub blob: BlobId,
    pub len: u64,
}

/// The receiver's answer to an offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobReply {
    /// Send the bytes from `offset` to the end. `offset == len` means "I have it".
    SendFrom {
        offset: u64,
    },
    /// Another transfer of the same blob is in progress; try again later.
    Busy,
    Refused {
        reason: String,
    },
}

/// The receiver's verdict once the bytes are in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobVerdict {
    Stored,
    HashMismatch,
    Failed { reason: String },
}
