//! Version 1 of every message printmesh nodes exchange, one file per protocol, each with
//! its protocol id, its size caps and the roles that may send it.
//!
//! Request–response protocols (one request, one answer, point to point) each have a
//! versioned protocol id and their own size caps; [`REQUEST_PROTOCOLS`] lists them all.
//! Order events travel over gossipsub ([`events`]). Blobs travel over a raw stream
//! protocol whose control frames are in [`blob`].
//!
//! Enum variants are append-only: never reorder or remove one, the variant index is on
//! the wire.
//!
//! Adding a request protocol: a file here with its `ID`, caps, types and `SPEC`, a line
//! in [`REQUEST_PROTOCOLS`], and its line in the runtime's protocol table
//! (`printmesh_runtime::net::protocols`).

pub mod auth;
pub mod blob;
pub mod content;
pub mod download;
pub mod events;
pub mod hello;
pub mod order;
pub mod print;
pub mod role;
pub mod settle;
pub mod ship;
pub mod sync;

pub use role::{BudgetClass, Role};

/// What the protocol says of a request-response protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The versioned protocol id, e.g. `/printmesh/order/1`.
    pub id: &'static str,
    /// A longer request is refused before anything is allocated for it.
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    /// The roles whose nodes may send this request; any other is refused unread.
    pub from: &'static [Role],
    /// Whether a request draws on the sender's request budget (a protocol with a
    /// budget of its own, like sync, does not).
    pub budgeted: bool,
}

impl Spec {
    /// Whether a node in `role` may send this request.
    pub fn may_send(&self, role: Role) -> bool {
        self.from.contains(&role)
    }
}

/// Every request-response protocol.
pub const REQUEST_PROTOCOLS: &[Spec] = &[
    hello::SPEC,
    order::SPEC,
    auth::SPEC,
    print::SPEC,
    settle::SPEC,
    ship::SPEC,
    sync::SPEC,
    content::SPEC,
    download::SPEC,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_has_its_own_versioned_id_and_caps() {
        let mut ids: Vec<&str> = REQUEST_PROTOCOLS.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), REQUEST_PROTOCOLS.len());
        for spec in REQUEST_PROTOCOLS {
            assert!(spec.id.starts_with("/printmesh/"), "{}", spec.id);
            let version = spec.id.rsplit('/').next().unwrap_or_default();
            assert!(version.parse::<u32>().is_ok(), "{} has no version", spec.id);
            assert!(spec.max_request_bytes > 0 && spec.max_response_bytes > 0);
            assert!(!spec.from.is_empty());
        }
    }
}
