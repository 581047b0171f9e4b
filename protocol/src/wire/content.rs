//! Content downloads (`/printmesh/content/1`, request-response): catalogues, and the
//! stream that fetches an item's bytes (`/printmesh/fetch/1`).
//!
//! A kiosk asks its intermediaries, and any content company it is connected to, for
//! the catalogues newer than those it holds; an intermediary asks the content
//! companies and answers kiosks from what it holds. Every catalogue is signed by its
//! company (`content::SignedCatalogue`), so whoever relays it cannot change it.
//!
//! Fetch, on a raw stream: the asker sends [`FetchRequest`] `{ blob, offset }`; the
//! holder answers [`FetchReply::Sending`] `{ len }` and then the bytes `offset..len`,
//! or says it does not hold it. The asker keeps what arrived in a partial file, so a
//! cut transfer resumes where it stopped, and stores the blob only once its BLAKE3
//! matches the catalogue's.

use serde::{Deserialize, Serialize};

use super::{Role, Spec};
use crate::content::{SignedCatalogue, CATALOGUE_MAX_BYTES};
use crate::ids::BlobId;

pub const ID: &str = "/printmesh/content/1";
/// Gossipsub topic on which a content company announces each catalogue it publishes
/// (a `content::SignedCatalogue` frame); every holder checks it before it is kept or
/// passed on.
pub const CATALOGUES_TOPIC: &str = "printmesh/catalogues/1";
pub const FETCH_ID: &str = "/printmesh/fetch/1";
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Most catalogues in one answer.
pub const MAX_CATALOGUES: usize = 8;
pub const MAX_RESPONSE_BYTES: usize = MAX_CATALOGUES * (CATALOGUE_MAX_BYTES + 4096);
/// A fetch stream's control frames.
pub const FETCH_CONTROL_MAX_BYTES: usize = 1024;
/// Kiosks and intermediaries ask for catalogues.
pub const SPEC: Spec = Spec {
    id: ID,
    max_request_bytes: MAX_REQUEST_BYTES,
    max_response_bytes: MAX_RESPONSE_BYTES,
    from: &[Role::Kiosk, Role::Intermediary],
    budgeted: true,
};

/// Who may fetch an item's bytes from whom: kiosks and intermediaries from a content
/// company, kiosks from an intermediary that holds them.
pub fn may_fetch(from: Role, to: Role) -> bool {
    matches!(
        (from, to),
        (Role::Kiosk | Role::Intermediary, Role::Content) | (Role::Kiosk, Role::Intermediary)
    )
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentRequest {
    /// The catalogues newer than these: (a company's PeerId bytes, the version held).
    Catalogues { known: Vec<(Vec<u8>, u64)> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentResponse {
    /// At most [`MAX_CATALOGUES`]; ask again for more.
    Catalogues(Vec<SignedCatalogue>),
    Refused {
        reason: String,
    },
}

/// First frame on a fetch stream, from the asker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub blob: BlobId,
    /// Where to start (the length of what the asker kept from a cut transfer).
    pub offset: u64,
}

/// The holder's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FetchReply {
    /// The blob is `len` bytes; `offset..len` follow.
    Sending {
        len: u64,
    },
    NotHere,
    Refused {
        reason: String,
    },
}
